//! The values of a decoded batch, on their way into slabs.
//!
//! Allocated one by one on the decoding thread, a million 200-byte values made glibc grow that
//! thread's arena a page at a time: one `mprotect` per 4 KiB (57 k of them for the bench's
//! 1 M-event open), each taking the address-space lock that the applying thread's page faults
//! wait for. So the decoding thread stages the values of a batch (those up to
//! [`SLAB_VALUE_MAX`]) in one buffer and copies it into a slab, one allocation, once a commit
//! ends with at least [`SLAB_BYTES`] staged and when the batch is sealed; each value becomes a
//! range of its slab ([`Blob::range`]). Slabs are cut between commits only, so a commit the
//! fast parser gives up on part-way is undone by truncating the buffer.
//!
//! A slab stays allocated while any of its values lives: the replay's [`super::slabs`] keeps
//! track of them and copies the survivors of sparse ones out.

use crate::blob::Blob;
use std::sync::Arc;

/// A slab is cut once a commit ends with this many bytes staged: the finer the slabs, the
/// fewer bytes one live value holds on to, and the more allocations.
const SLAB_BYTES: usize = 256 << 10;

/// Values up to this size share a slab; a larger one gets its own buffer.
const SLAB_VALUE_MAX: usize = 4096;

/// Where a decoded value waits until its batch is applied.
#[derive(Debug)]
pub(super) enum Staged {
    /// `len` bytes at `start` in the batch's slab number `slab`.
    At { slab: u32, start: u32, len: u32 },
    /// A value too large to share a slab, in a buffer of its own.
    Own(Blob),
}

/// The staged values of one batch: filled by the decoding thread, sealed before the batch is
/// handed over, resolved by the applying thread.
#[derive(Debug, Default)]
pub(super) struct Staging {
    /// The bytes of the slab being filled.
    bytes: Vec<u8>,
    /// Values staged in `bytes` (some may be empty, so `bytes` may be too).
    open: u32,
    /// The slabs filled so far, each with how many values it holds.
    sealed: Vec<(Arc<[u8]>, u32)>,
}

/// What [`Staging::undo`] goes back to: the staging at the start of a commit.
#[derive(Debug, Clone, Copy)]
pub(super) struct StagingMark {
    bytes: usize,
    open: u32,
}

impl Staging {
    /// Stages a value's bytes.
    pub(super) fn stage(&mut self, value: &[u8]) -> Staged {
        if value.len() > SLAB_VALUE_MAX {
            return Staged::Own(value.into());
        }
        if self.bytes.capacity() == 0 {
            self.bytes.reserve(SLAB_BYTES + SLAB_VALUE_MAX);
        }
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        self.open += 1;
        Staged::At {
            slab: self.sealed.len() as u32,
            start,
            len: value.len() as u32,
        }
    }

    /// Where a commit starts.
    pub(super) fn mark(&self) -> StagingMark {
        StagingMark {
            bytes: self.bytes.len(),
            open: self.open,
        }
    }

    /// Forgets what was staged since `mark` (a commit the fast parser gave up on part-way).
    pub(super) fn undo(&mut self, mark: StagingMark) {
        self.bytes.truncate(mark.bytes);
        self.open = mark.open;
    }

    /// A commit ended: cuts the slab if it is full.
    pub(super) fn end_commit(&mut self) {
        if self.bytes.len() >= SLAB_BYTES {
            self.seal();
        }
    }

    /// Copies what was staged since the last cut into a new slab. A buffer a large commit
    /// grew is freed rather than kept for the next batch (the decoding thread keeps one
    /// buffer, which `adopt_buffer` passes from batch to batch).
    pub(super) fn seal(&mut self) {
        if self.open > 0 {
            self.sealed.push((self.bytes.as_slice().into(), self.open));
            self.bytes.clear();
            self.open = 0;
        }
        if self.bytes.capacity() > 4 * SLAB_BYTES {
            self.bytes = Vec::new();
        }
    }

    /// Takes over `from`'s staging buffer (empty: `from` is sealed), so that the buffer stays
    /// with the decoding thread while `from` travels on with its slabs.
    pub(super) fn adopt_buffer(&mut self, from: &mut Staging) {
        debug_assert!(from.open == 0 && from.bytes.is_empty(), "sealed");
        self.bytes = std::mem::take(&mut from.bytes);
    }

    /// The value `staged` stands for (the batch is sealed).
    pub(super) fn resolve(&self, staged: Staged) -> Blob {
        match staged {
            Staged::At { slab, start, len } => {
                Blob::range(&self.sealed[slab as usize].0, start, len)
            }
            Staged::Own(value) => value,
        }
    }

    /// The sealed slabs with how many values each holds, leaving this staging empty for the
    /// next batch.
    pub(super) fn take_slabs(&mut self) -> impl Iterator<Item = (Arc<[u8]>, u32)> + '_ {
        debug_assert_eq!(self.open, 0, "the batch was sealed");
        self.sealed.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|b| (i * 31 + b) as u8).collect()
    }

    #[test]
    fn staged_values_come_back_byte_for_byte() {
        let mut staging = Staging::default();
        let sizes = [
            0,
            1,
            200,
            SLAB_VALUE_MAX,
            SLAB_VALUE_MAX + 1,
            100_000,
            3000,
            0,
        ];
        let mut want = Vec::new();
        let mut staged = Vec::new();
        for commit in 0..300 {
            // A commit of four values, then one the fast parser gives up on part-way.
            for i in commit * 4..commit * 4 + 4 {
                let v = value(i, sizes[i % sizes.len()]);
                staged.push(staging.stage(&v));
                want.push(v);
            }
            staging.end_commit();
            let mark = staging.mark();
            staging.stage(&value(commit, 3000));
            staging.stage(&value(commit, 0));
            staging.undo(mark);
        }
        staging.seal();
        assert!(staging.sealed.len() > 3, "values spread over several slabs");
        let small = want.iter().filter(|v| v.len() <= SLAB_VALUE_MAX).count();
        let held: u32 = staging.sealed.iter().map(|(_, n)| n).sum();
        assert_eq!(held as usize, small, "undone values are not counted");
        let staged_bytes: usize = want
            .iter()
            .map(|v| v.len())
            .filter(|&n| n <= SLAB_VALUE_MAX)
            .sum();
        let slab_bytes: usize = staging.sealed.iter().map(|(s, _)| s.len()).sum();
        assert_eq!(
            slab_bytes, staged_bytes,
            "undone values leave no bytes behind"
        );
        for (s, want) in staged.into_iter().zip(&want) {
            let got = staging.resolve(s);
            assert_eq!(got.as_bytes(), want.as_slice());
            assert_eq!(
                got.is_whole(),
                want.len() > SLAB_VALUE_MAX,
                "{} bytes",
                want.len()
            );
        }
        let slabs = staging.sealed.len();
        assert_eq!(staging.take_slabs().count(), slabs);
        assert!(staging.sealed.is_empty(), "taken, ready for the next batch");
    }

    /// A batch whose only small values are empty still gets its (empty) slab.
    #[test]
    fn empty_values_resolve() {
        let mut staging = Staging::default();
        let a = staging.stage(b"");
        let b = staging.stage(b"");
        staging.seal();
        assert_eq!(staging.resolve(a).as_bytes(), b"");
        assert_eq!(staging.resolve(b).as_bytes(), b"");
        let slabs: Vec<_> = staging.take_slabs().collect();
        assert_eq!(slabs.len(), 1);
        assert_eq!(slabs[0].1, 2);
    }
}
