//! Value bytes as the state keeps them: a range of a shared, reference-counted buffer.
//!
//! A value written through the API owns its buffer (the range is all of it). Replay instead
//! copies the values of each decoded batch of commits into one buffer, a *slab*, and every
//! value of the batch is a range of it (`replay::batch`). Allocating a million 200-byte values
//! one by one on the decoding thread made glibc grow that thread's arena a page at a time, one
//! `mprotect` per 4 KiB (57 k of them for the bench's 1 M-event open), each taking the
//! address-space lock that the other replay thread's page faults need. A slab is one
//! allocation per ~1,000 values.
//!
//! A slab lives as long as any value in it: replay keeps a slab only when at least half of its
//! values are still in the state when replay ends, and copies the values of sparser ones out
//! ([`crate::replay`], `rehome`), so that slabs hold at most twice the live bytes they serve.

use std::sync::Arc;

/// Bytes shared by reference count: cloning never copies.
#[derive(Clone)]
pub(crate) struct Blob {
    buf: Arc<[u8]>,
    start: u32,
    len: u32,
}

impl Blob {
    /// All of `buf`.
    pub(crate) fn whole(buf: Arc<[u8]>) -> Blob {
        let len = u32::try_from(buf.len()).expect("a value is under 4 GiB");
        Blob { buf, start: 0, len }
    }

    /// `buf[start..start + len]`.
    pub(crate) fn range(buf: &Arc<[u8]>, start: u32, len: u32) -> Blob {
        assert!(
            start as usize + len as usize <= buf.len(),
            "a value lies inside its slab"
        );
        Blob {
            buf: Arc::clone(buf),
            start,
            len,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start as usize..][..self.len as usize]
    }

    /// The buffer this value is a range of, for replay's count of each slab's live values.
    pub(crate) fn buffer(&self) -> &Arc<[u8]> {
        &self.buf
    }

    /// Whether this value is all of its buffer (no slab is kept alive through it).
    pub(crate) fn is_whole(&self) -> bool {
        self.len as usize == self.buf.len()
    }

    /// The same bytes in a buffer of their own.
    pub(crate) fn detached(&self) -> Blob {
        Blob::whole(self.as_bytes().into())
    }
}

impl From<&[u8]> for Blob {
    fn from(bytes: &[u8]) -> Blob {
        Blob::whole(bytes.into())
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_bytes().fmt(f)
    }
}

impl std::ops::Deref for Blob {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Blob {
    fn eq(&self, other: &Blob) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Blob {}

impl std::hash::Hash for Blob {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_reads_its_bytes_and_compares_by_them() {
        let slab: Arc<[u8]> = b"abcdef".as_slice().into();
        let cd = Blob::range(&slab, 2, 2);
        assert_eq!(cd.as_bytes(), b"cd");
        assert!(!cd.is_whole());
        assert_eq!(cd, Blob::from(b"cd".as_slice()));
        let own = cd.detached();
        assert!(own.is_whole());
        assert_eq!(own, cd);
        assert!(!Arc::ptr_eq(own.buffer(), &slab));
        assert_eq!(Arc::strong_count(&slab), 2);
    }

    #[test]
    #[should_panic(expected = "a value lies inside its slab")]
    fn a_range_past_its_slab_is_refused() {
        let slab: Arc<[u8]> = b"abc".as_slice().into();
        let _ = Blob::range(&slab, 2, 2);
    }
}
