//! The slabs a replay has handed out, and when to let go of the sparse ones.
//!
//! Each decoded batch copies its values into one slab (`batch`, `crate::blob`), and a slab
//! stays allocated while any of its values lives. A log that overwrites some keys often and
//! others seldom leaves slabs where one value in a hundred is still live: per-value buffers
//! would have freed the rest. So the replay keeps a reference to every slab it made, with how
//! many values it held, and checks them from time to time:
//! - a slab only this list still holds is dropped from it (and freed);
//! - a slab that less than half its values still use is *sparse*. Once the sparse slabs hold
//!   [`REHOME_AT`] bytes, and always at the end of the replay, the state's values in them are
//!   copied into buffers of their own ([`State::detach_values`]), which frees those slabs.
//!
//! After a replay, then, every slab is at least half used: slabs hold at most twice the live
//! bytes of the values they serve. During one, at most [`REHOME_AT`] bytes of sparse slabs,
//! plus the dead slabs not yet dropped (the list is checked each time it doubles).
//!
//! Reference counts are an upper bound on the values the state holds (a gathered set not yet
//! applied, or a clone of the state, counts too), so a check can find a slab less sparse than
//! it is, never more: copying out is only ever a matter of memory, never of what is read.

use crate::blob::Blob;
use crate::state::State;
use std::collections::HashSet;
use std::sync::Arc;

/// A slab is cut once it holds this many bytes: the finer the slabs, the fewer bytes one live
/// value holds on to, and the more allocations.
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

/// The values of one decoded batch, on their way into slabs: staged as the decoding thread
/// parses them, copied into a slab each time [`SLAB_BYTES`] are staged (and when it seals the
/// batch), handed out as the applying thread applies it, then recorded in the replay's
/// [`Slabs`]. Staging a slab at a time keeps the buffer that travels with each batch small
/// and in cache, however large the batch's commits.
#[derive(Debug, Default)]
pub(super) struct Staging {
    /// The bytes of the slab being filled.
    bytes: Vec<u8>,
    /// The slabs filled so far, each with how many values were handed out from it.
    sealed: Vec<(Arc<[u8]>, u32)>,
}

/// What [`Staging::undo`] goes back to.
#[derive(Debug, Clone, Copy)]
pub(super) struct StagingMark {
    bytes: usize,
    sealed: usize,
}

impl Staging {
    /// Stages a value's bytes.
    pub(super) fn stage(&mut self, value: &[u8]) -> Staged {
        if value.len() > SLAB_VALUE_MAX {
            return Staged::Own(value.into());
        }
        if self.bytes.len() + value.len() > SLAB_BYTES {
            self.seal();
        }
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        Staged::At {
            slab: self.sealed.len() as u32,
            start,
            len: value.len() as u32,
        }
    }

    pub(super) fn mark(&self) -> StagingMark {
        StagingMark {
            bytes: self.bytes.len(),
            sealed: self.sealed.len(),
        }
    }

    /// Forgets what was staged since `mark` (a commit the fast parser gave up on part-way).
    /// Bytes already copied into a slab stay there, unused: the slab also holds values staged
    /// before the mark.
    pub(super) fn undo(&mut self, mark: StagingMark) {
        if self.sealed.len() == mark.sealed {
            self.bytes.truncate(mark.bytes);
        } else {
            self.bytes.clear();
        }
    }

    /// Copies the bytes staged since the last slab into a new one: one allocation for them all.
    pub(super) fn seal(&mut self) {
        if !self.bytes.is_empty() {
            self.sealed.push((self.bytes.as_slice().into(), 0));
            self.bytes.clear();
        }
    }

    /// The value `staged` stands for (its slab is sealed).
    pub(super) fn resolve(&mut self, staged: Staged) -> Blob {
        match staged {
            Staged::At { slab, start, len } => {
                let (slab, handed) = &mut self.sealed[slab as usize];
                *handed += 1;
                Blob::range(slab, start, len)
            }
            Staged::Own(value) => value,
        }
    }

    /// Records the batch's slabs in `slabs`, leaving this staging empty for the next batch.
    pub(super) fn hand_over(&mut self, slabs: &mut Slabs, state: &mut State) {
        debug_assert!(self.bytes.is_empty(), "the batch was sealed");
        for (slab, handed) in self.sealed.drain(..) {
            slabs.add(slab, handed, state);
        }
    }
}

/// Bytes of sparse slabs that make a replay copy their values out before it ends.
const REHOME_AT: usize = 64 << 20;

/// The list is first checked at this many slabs, then each time it doubles.
const FIRST_CHECK: usize = 64;

/// Every slab this replay made that may still hold a live value, with its number of values.
#[derive(Debug)]
pub(super) struct Slabs {
    held: Vec<(Arc<[u8]>, u32)>,
    check_at: usize,
    /// [`FIRST_CHECK`] and [`REHOME_AT`] (tests use small ones).
    first_check: usize,
    rehome_at: usize,
}

impl Default for Slabs {
    fn default() -> Self {
        Slabs::with_limits(FIRST_CHECK, REHOME_AT)
    }
}

impl Slabs {
    pub(super) fn with_limits(first_check: usize, rehome_at: usize) -> Slabs {
        Slabs {
            held: Vec::new(),
            check_at: first_check,
            first_check,
            rehome_at,
        }
    }

    /// Records a slab of `values` values, and checks the list if it has doubled.
    pub(super) fn add(&mut self, slab: Arc<[u8]>, values: u32, state: &mut State) {
        self.held.push((slab, values));
        if self.held.len() >= self.check_at {
            self.check(state, self.rehome_at);
            self.check_at = (2 * self.held.len()).max(self.first_check);
        }
    }

    /// The end of the replay: copies out the values of every sparse slab, and lets go of all.
    pub(super) fn finish(mut self, state: &mut State) {
        self.check(state, 1);
    }

    /// Drops dead slabs; copies out the values of sparse ones if they hold `at_least` bytes.
    fn check(&mut self, state: &mut State, at_least: usize) {
        self.held.retain(|(slab, _)| Arc::strong_count(slab) > 1);
        let sparse: HashSet<*const u8, foldhash::fast::RandomState> = self
            .held
            .iter()
            .filter(|(slab, values)| 2 * (Arc::strong_count(slab) - 1) < *values as usize)
            .map(|(slab, _)| Arc::as_ptr(slab) as *const u8)
            .collect();
        let bytes: usize = self
            .held
            .iter()
            .filter(|(slab, _)| sparse.contains(&(Arc::as_ptr(slab) as *const u8)))
            .map(|(slab, _)| slab.len())
            .sum();
        if sparse.is_empty() || bytes < at_least {
            return;
        }
        let copied = state.detach_values(|buf| sparse.contains(&(Arc::as_ptr(buf) as *const u8)));
        tracing::debug!(
            slabs = sparse.len(),
            bytes,
            copied,
            "replay copied the values of sparse slabs out"
        );
        self.held.retain(|(slab, _)| Arc::strong_count(slab) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Labels};
    use crate::state::{Name, Stamp};

    fn value(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|b| (i * 31 + b) as u8).collect()
    }

    #[test]
    fn staged_values_come_back_byte_for_byte_across_slab_cuts() {
        let mut staging = Staging::default();
        let sizes = [0, 1, 200, SLAB_VALUE_MAX, SLAB_VALUE_MAX + 1, 100_000, 3000];
        let mut want = Vec::new();
        let mut staged = Vec::new();
        // Enough bytes for several slabs, and values too large to share one.
        for i in 0..1200 {
            let v = value(i, sizes[i % sizes.len()]);
            staged.push(staging.stage(&v));
            want.push(v);
        }
        // A commit the fast parser gives up on, across a cut: forgotten whole.
        let mark = staging.mark();
        for i in 0..200 {
            staging.stage(&value(i, 3000));
        }
        staging.undo(mark);
        for i in 0..50 {
            let v = value(i + 5000, 150);
            staged.push(staging.stage(&v));
            want.push(v);
        }
        staging.seal();
        assert!(staging.sealed.len() > 3, "values spread over several slabs");
        assert!(staging.sealed.iter().all(|(s, _)| s.len() <= SLAB_BYTES));
        for (s, want) in staged.into_iter().zip(&want) {
            let got = staging.resolve(s);
            assert_eq!(got.as_bytes(), want.as_slice());
            let in_a_slab = staging
                .sealed
                .iter()
                .any(|(slab, _)| Arc::ptr_eq(slab, got.buffer()));
            assert_eq!(
                in_a_slab,
                want.len() <= SLAB_VALUE_MAX,
                "{} bytes",
                want.len()
            );
        }
        let handed: u32 = staging.sealed.iter().map(|(_, n)| n).sum();
        let own = want.iter().filter(|v| v.len() > SLAB_VALUE_MAX).count();
        assert_eq!(handed as usize, want.len() - own);
    }

    #[test]
    fn a_sparse_slab_is_copied_out_and_freed() {
        let mut state = State::default();
        let stamp = Stamp::default();
        state
            .apply(
                stamp,
                &Event::ContextCreated {
                    context: "c".into(),
                    labels: Labels::new(),
                },
            )
            .expect("create");
        let key = |i: usize| Name::from(format!("k{i}"));
        let mut staging = Staging::default();
        let staged: Vec<Staged> = (0..100).map(|i| staging.stage(&value(i, 100))).collect();
        staging.seal();
        let sets: Vec<_> = staged
            .into_iter()
            .enumerate()
            .map(|(i, s)| (stamp, key(i), staging.resolve(s)))
            .collect();
        state.set_values("c", sets).expect("sets");
        let slab = Arc::downgrade(&staging.sealed[0].0);
        let mut slabs = Slabs::with_limits(1, 1);
        staging.hand_over(&mut slabs, &mut state);
        assert!(
            slab.upgrade().is_some(),
            "every value is live: the slab stays"
        );

        // Overwrite 60 of the 100 values with values of their own: 40 live, under half.
        let again: Vec<_> = (0..60)
            .map(|i| (stamp, key(i), Blob::from(value(i + 1000, 100).as_slice())))
            .collect();
        state.set_values("c", again).expect("sets");
        assert!(slab.upgrade().is_some(), "not checked yet");
        slabs.finish(&mut state);
        assert!(slab.upgrade().is_none(), "copied out and freed");
        let c = state.context("c").expect("context");
        for i in 0..100 {
            let want = if i < 60 {
                value(i + 1000, 100)
            } else {
                value(i, 100)
            };
            assert_eq!(c.get(&format!("k{i}")).expect("value").as_bytes(), want);
        }
    }

    #[test]
    fn a_slab_at_least_half_used_is_kept() {
        let mut state = State::default();
        let stamp = Stamp::default();
        state
            .apply(
                stamp,
                &Event::ContextCreated {
                    context: "c".into(),
                    labels: Labels::new(),
                },
            )
            .expect("create");
        let mut staging = Staging::default();
        let staged: Vec<Staged> = (0..10).map(|i| staging.stage(&value(i, 50))).collect();
        staging.seal();
        let sets: Vec<_> = staged
            .into_iter()
            .enumerate()
            .map(|(i, s)| (stamp, Name::from(format!("k{i}")), staging.resolve(s)))
            .collect();
        state.set_values("c", sets).expect("sets");
        let slab = Arc::downgrade(&staging.sealed[0].0);
        let mut slabs = Slabs::with_limits(1, 1);
        staging.hand_over(&mut slabs, &mut state);
        let again: Vec<_> = (0..5)
            .map(|i| (stamp, Name::from(format!("k{i}")), Blob::from(&b"new"[..])))
            .collect();
        state.set_values("c", again).expect("sets");
        slabs.finish(&mut state);
        assert_eq!(
            slab.upgrade().map(|s| Arc::strong_count(&s)),
            Some(6),
            "five values still share it"
        );
    }
}
