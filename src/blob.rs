//! Value bytes as the state keeps them: all of a reference-counted buffer, or a range of one
//! shared with other values (the slabs replay fills, see `replay::staging`). Cloning never
//! copies; comparing and hashing see only the bytes. A range keeps its whole buffer alive.

use std::sync::Arc;

/// `len` of a blob that is all of its buffer (a range is at most a slab long, far less).
const WHOLE: u32 = u32::MAX;

/// Bytes shared by reference count: all of `buf`, or `len` bytes of it from `start`.
#[derive(Clone)]
pub(crate) struct Blob {
    buf: Arc<[u8]>,
    start: u32,
    len: u32,
}

impl Blob {
    /// All of `buf`, whatever its size.
    pub(crate) fn whole(buf: Arc<[u8]>) -> Blob {
        Blob {
            buf,
            start: 0,
            len: WHOLE,
        }
    }

    /// `buf[start..start + len]`.
    pub(crate) fn range(buf: &Arc<[u8]>, start: u32, len: u32) -> Blob {
        assert!(
            len != WHOLE && start as usize + len as usize <= buf.len(),
            "a value lies inside its slab"
        );
        Blob {
            buf: Arc::clone(buf),
            start,
            len,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self.len {
            WHOLE => &self.buf,
            len => &self.buf[self.start as usize..][..len as usize],
        }
    }

    /// The buffer this blob is all or part of.
    pub(crate) fn buffer(&self) -> &Arc<[u8]> {
        &self.buf
    }

    /// Whether this blob is all of its buffer: it keeps alive nothing but its own bytes.
    pub(crate) fn is_whole(&self) -> bool {
        self.len == WHOLE
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
        // A range of all of a slab is still a range; an empty one reads as empty.
        assert!(!Blob::range(&slab, 0, 6).is_whole());
        assert_eq!(Blob::range(&slab, 6, 0).as_bytes(), b"");
        assert_eq!(Blob::whole(slab.clone()).as_bytes(), b"abcdef");
    }

    #[test]
    #[should_panic(expected = "a value lies inside its slab")]
    fn a_range_past_its_slab_is_refused() {
        let slab: Arc<[u8]> = b"abc".as_slice().into();
        let _ = Blob::range(&slab, 2, 2);
    }
}
