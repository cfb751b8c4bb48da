//! The slabs a replay has made (`staging`), and when to copy the survivors of sparse ones out.
//!
//! A slab stays allocated while any of its values lives. A log that overwrites some keys often
//! and others seldom leaves slabs that one small value in a hundred keeps alive, where values
//! allocated one by one would have been freed. So the replay keeps every slab it made, with
//! how many values it holds, and sweeps the list at the first flush of the gathered sets
//! (`pending`) after it has grown by an eighth (at least [`FIRST_SWEEP`] slabs):
//! - a slab that only this list still holds is dropped (and freed);
//! - a slab that has lost a value since it was last measured is a *candidate*. Once they hold
//!   [`REHOME_AT`] bytes or a quarter of all the slabs' bytes (at the end of the replay: once
//!   they hold [`FINAL_SLACK`]), the values of the contexts this replay changed are walked to
//!   add up each candidate's live bytes, and every value of a slab less than half of whose
//!   bytes are live is copied into a buffer of its own ([`State::detach_values`]), which frees
//!   the slab.
//!
//! So when a replay ends, the slabs hold at most twice the bytes of the values in them, plus
//! [`FINAL_SLACK`]: a slab that is not a candidate was at least half used when last measured
//! and has lost nothing since. While a replay runs, dead slabs wait for an eighth of the
//! list's length and a flush (at most a window of sets) to be dropped, and sparse ones for a
//! quarter of all the slabs' bytes (or [`REHOME_AT`]). A walk only happens once candidates have
//! piled up, and it covers the contexts the replay changed, not the whole state: a short tail
//! after a snapshot walks a few contexts at most.
//!
//! After the replay, values overwritten by new writes can leave a slab sparser again: a slab
//! never grows, so the slabs never hold more than the open left them, and the next open (from
//! a snapshot, whose values are loaded one by one) starts afresh.
//!
//! Reference counts are exact here: sweeps follow a flush, when nothing but the state and
//! this list holds a slab. Copying out only ever changes where bytes live, never what is read.

use crate::state::{Name, State};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Candidate bytes that make a replay copy values out before it ends.
const REHOME_AT: usize = 64 << 20;

/// Candidate bytes left alone at the end of a replay: walking the contexts for less is not
/// worth it.
const FINAL_SLACK: usize = 1 << 20;

/// The list is swept once it holds this many slabs, then each time it grows by an eighth.
const FIRST_SWEEP: usize = 64;

/// Contexts, as replay's gathering records the ones it changed.
pub(super) type Contexts = HashSet<Name, foldhash::fast::RandomState>;

/// Every slab this replay made that may still hold a live value, with the number of values
/// it held when last measured (at first, all of them).
#[derive(Debug)]
pub(super) struct Slabs {
    held: Vec<(Arc<[u8]>, u32)>,
    held_bytes: usize,
    /// `held.len()` at which the next sweep is due.
    sweep_at: usize,
    /// [`FIRST_SWEEP`], [`REHOME_AT`] and [`FINAL_SLACK`] (tests use small ones).
    limits: (usize, usize, usize),
}

impl Default for Slabs {
    fn default() -> Self {
        Slabs::with_limits(FIRST_SWEEP, REHOME_AT, FINAL_SLACK)
    }
}

impl Slabs {
    pub(super) fn with_limits(first_sweep: usize, rehome_at: usize, final_slack: usize) -> Slabs {
        Slabs {
            held: Vec::new(),
            held_bytes: 0,
            sweep_at: first_sweep,
            limits: (first_sweep, rehome_at, final_slack),
        }
    }

    /// Records a slab of `values` values.
    pub(super) fn add(&mut self, slab: Arc<[u8]>, values: u32) {
        self.held_bytes += slab.len();
        self.held.push((slab, values));
    }

    /// Whether a sweep is due (the gathering sweeps after a flush).
    pub(super) fn due(&self) -> bool {
        self.held.len() >= self.sweep_at
    }

    /// A sweep during the replay; `changed` are the contexts it has changed.
    pub(super) fn sweep(&mut self, state: &mut State, changed: &Contexts) {
        let (first_sweep, rehome_at, _) = self.limits;
        self.sweep_over(state, changed, rehome_at.max(self.held_bytes / 4));
        self.sweep_at = self.held.len() + first_sweep.max(self.held.len() / 8);
    }

    /// The sweep at the end of the replay, which then lets go of every slab.
    pub(super) fn finish(mut self, state: &mut State, changed: &Contexts) {
        let final_slack = self.limits.2;
        self.sweep_over(state, changed, final_slack);
    }

    /// Drops dead slabs; copies out the values of sparse ones if the candidates hold at least
    /// `at_least` bytes.
    fn sweep_over(&mut self, state: &mut State, changed: &Contexts, at_least: usize) {
        self.drop_dead();
        // Each candidate (a slab that lost a value since it was last measured): its length,
        // and its live bytes.
        let mut candidates: HashMap<*const u8, (usize, usize), foldhash::fast::RandomState> =
            HashMap::default();
        let mut candidate_bytes = 0;
        for (slab, measured) in &self.held {
            if Arc::strong_count(slab) - 1 < *measured as usize {
                candidates.insert(Arc::as_ptr(slab) as *const u8, (slab.len(), 0));
                candidate_bytes += slab.len();
            }
        }
        if candidates.is_empty() || candidate_bytes < at_least {
            return;
        }
        for blob in state.blobs_in(changed).filter(|b| !b.is_whole()) {
            if let Some((_, live)) = candidates.get_mut(&(Arc::as_ptr(blob.buffer()) as *const u8))
            {
                *live += blob.len();
            }
        }
        // The candidates that stay are measured: they are candidates again only once they
        // lose another value, so that a slab half used does not make every sweep walk.
        for (slab, measured) in &mut self.held {
            if candidates.contains_key(&(Arc::as_ptr(slab) as *const u8)) {
                *measured = (Arc::strong_count(slab) - 1) as u32;
            }
        }
        let sparse: HashSet<*const u8, foldhash::fast::RandomState> = candidates
            .into_iter()
            .filter(|(_, (len, live))| 2 * live < *len)
            .map(|(slab, _)| slab)
            .collect();
        if sparse.is_empty() {
            return;
        }
        let copied = state.detach_values(changed, |buf| {
            sparse.contains(&(Arc::as_ptr(buf) as *const u8))
        });
        tracing::debug!(
            slabs = sparse.len(),
            candidate_bytes,
            copied,
            "replay copied the values of sparse slabs out"
        );
        self.drop_dead();
    }

    fn drop_dead(&mut self) {
        self.held.retain(|(slab, _)| Arc::strong_count(slab) > 1);
        self.held_bytes = self.held.iter().map(|(slab, _)| slab.len()).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Blob;
    use crate::event::{Event, Labels};
    use crate::state::Stamp;
    use std::sync::Weak;

    fn value(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|b| (i * 31 + b) as u8).collect()
    }

    /// A state with context "c" holding `sizes.len()` values `k0...` in one slab, recorded in
    /// `slabs`; returns the slab.
    fn one_slab(state: &mut State, slabs: &mut Slabs, sizes: &[usize]) -> Weak<[u8]> {
        state
            .apply(
                Stamp::default(),
                &Event::ContextCreated {
                    context: "c".into(),
                    labels: Labels::new(),
                },
            )
            .expect("create");
        let bytes: Vec<u8> = sizes
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| value(i, n))
            .collect();
        let slab: Arc<[u8]> = bytes.into();
        let mut start = 0;
        let sets: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let blob = Blob::range(&slab, start, n as u32);
                start += n as u32;
                (Stamp::default(), Name::from(format!("k{i}")), blob)
            })
            .collect();
        state.set_values("c", sets).expect("sets");
        let weak = Arc::downgrade(&slab);
        slabs.add(slab, sizes.len() as u32);
        weak
    }

    fn overwrite(state: &mut State, keys: impl Iterator<Item = usize>) {
        let sets: Vec<_> = keys
            .map(|i| {
                (
                    Stamp::default(),
                    Name::from(format!("k{i}")),
                    Blob::from(&b"new"[..]),
                )
            })
            .collect();
        state.set_values("c", sets).expect("sets");
    }

    fn changed() -> Contexts {
        Contexts::from_iter([Name::from("c")])
    }

    fn assert_values(state: &State, sizes: &[usize], overwritten: impl Fn(usize) -> bool) {
        let c = state.context("c").expect("context");
        for (i, &n) in sizes.iter().enumerate() {
            let want = if overwritten(i) {
                b"new".to_vec()
            } else {
                value(i, n)
            };
            assert_eq!(c.get(&format!("k{i}")).expect("value").as_bytes(), want);
        }
    }

    #[test]
    fn the_survivors_of_a_sparse_slab_are_copied_out_and_it_is_freed() {
        let (mut state, mut slabs) = (State::default(), Slabs::with_limits(1, 1, 1));
        let sizes = vec![100; 100];
        let slab = one_slab(&mut state, &mut slabs, &sizes);
        slabs.sweep(&mut state, &changed());
        assert!(
            slab.upgrade().is_some(),
            "every value is live: the slab stays"
        );
        overwrite(&mut state, 0..60);
        slabs.finish(&mut state, &changed());
        assert!(slab.upgrade().is_none(), "copied out and freed");
        assert_values(&state, &sizes, |i| i < 60);
    }

    /// Sparse is by bytes: the few large values that died held most of the slab.
    #[test]
    fn a_slab_whose_large_values_died_is_sparse_however_many_small_ones_live() {
        let (mut state, mut slabs) = (State::default(), Slabs::with_limits(1, 1, 1));
        let sizes: Vec<usize> = (0..20).map(|i| if i < 4 { 4096 } else { 1 }).collect();
        let slab = one_slab(&mut state, &mut slabs, &sizes);
        overwrite(&mut state, 0..4);
        slabs.finish(&mut state, &changed());
        assert!(
            slab.upgrade().is_none(),
            "16 of 20 values live, but 16 of 16,400 bytes"
        );
        assert_values(&state, &sizes, |i| i < 4);
    }

    #[test]
    fn a_slab_at_least_half_used_is_kept() {
        let (mut state, mut slabs) = (State::default(), Slabs::with_limits(1, 1, 1));
        let sizes = vec![50; 10];
        let slab = one_slab(&mut state, &mut slabs, &sizes);
        overwrite(&mut state, 0..5);
        slabs.finish(&mut state, &changed());
        assert_eq!(
            slab.upgrade().map(|s| Arc::strong_count(&s)),
            Some(6),
            "five values share it"
        );
        assert_values(&state, &sizes, |i| i < 5);
    }

    /// A candidate found at least half used is measured: it is not a candidate (and makes no
    /// walk) until it loses another value.
    #[test]
    fn a_measured_slab_is_a_candidate_again_only_once_it_loses_a_value() {
        let (mut state, mut slabs) = (State::default(), Slabs::with_limits(1, 1, 1));
        let sizes = vec![50; 10];
        let slab = one_slab(&mut state, &mut slabs, &sizes);
        overwrite(&mut state, 0..4);
        slabs.sweep(&mut state, &changed());
        assert_eq!(slabs.held[0].1, 6, "measured: six values live");
        overwrite(&mut state, 4..5);
        slabs.sweep(&mut state, &changed());
        assert_eq!(slabs.held[0].1, 5, "a candidate again, measured again");
        overwrite(&mut state, 5..6);
        slabs.sweep(&mut state, &changed());
        assert!(slab.upgrade().is_none(), "four of ten live: copied out");
        assert_values(&state, &sizes, |i| i < 6);
    }

    /// During a replay, candidates are left until they hold enough bytes; then copied out
    /// without waiting for the end.
    #[test]
    fn a_sweep_during_the_replay_waits_for_enough_candidate_bytes() {
        let (mut state, mut slabs) = (State::default(), Slabs::with_limits(1, 2000, 1));
        let sizes = vec![100; 10];
        let slab = one_slab(&mut state, &mut slabs, &sizes);
        overwrite(&mut state, 0..8);
        assert!(slabs.due());
        slabs.sweep(&mut state, &changed());
        assert!(slab.upgrade().is_some(), "1,000 candidate bytes: not yet");
        slabs.limits.1 = 1000;
        slabs.sweep(&mut state, &changed());
        assert!(
            slab.upgrade().is_none(),
            "copied out before the end of the replay"
        );
        assert_values(&state, &sizes, |i| i < 8);
    }

    #[test]
    fn a_dead_slab_is_dropped_at_the_next_sweep() {
        let (mut state, mut slabs) = (State::default(), Slabs::with_limits(1, usize::MAX, 1));
        let sizes = vec![100; 10];
        let slab = one_slab(&mut state, &mut slabs, &sizes);
        overwrite(&mut state, 0..10);
        assert!(slab.upgrade().is_some(), "the list still holds it");
        slabs.sweep(&mut state, &changed());
        assert!(slab.upgrade().is_none());
        assert!(slabs.held.is_empty() && slabs.held_bytes == 0);
    }
}
