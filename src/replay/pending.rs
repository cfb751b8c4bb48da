//! Values set during replay, gathered by context and applied a context at a time.
//!
//! Applying a `ValueSet` costs a lookup of its context and an insert into that context's map.
//! A log interleaves many contexts, so event by event both land on cold memory: the applying
//! thread spent most of its time waiting for cache misses in the maps' binary searches. Gathered
//! here, a context's sets go in one after another while its map is in cache, and the context
//! is looked up once per flush instead of once per event.
//!
//! This is only a reordering across contexts, never within one: a context's sets are applied
//! in log order, and every event that is not a `ValueSet` (a create, a delete, a restore...)
//! flushes what is pending first. So the state after a flush is exactly the state that
//! applying every event in order gives, and a set on a context that is not live fails with the
//! offset of that context's first pending set, the first failure an in-order replay would meet.

use super::batch::Batch;
use super::slabs::{Contexts, Slabs};
use super::{inconsistent, Replayed};
use crate::blob::Blob;
use crate::error::Result;
use crate::offset::Offset;
use crate::state::{ApplyError, Name, Stamp, State};
use std::collections::HashMap;

/// Sets gathered before a flush: bounds the memory they hold (about 60 B each besides values;
/// see [`ROOM_WINDOWS`] for the room kept between flushes).
const WINDOW: usize = 256 * 1024;

/// Heap room made per set before each flush and for the first window (`crate::heap`): about
/// what a new key costs the state's maps (nodes of 16 entries of 48 bytes, most not full)
/// and, in the first window, the gathering's lists.
const ROOM_PER_SET: usize = 96;

/// A flush makes heap room again after applying this many sets. Small steps: room made past
/// the end of a glibc heap is lost (see `heap`), so the steps bound the growth that a new heap
/// makes a page at a time.
const ROOM_SETS: usize = 16 * 1024;

/// One gathered set.
#[derive(Debug)]
pub(super) struct Set {
    pub(super) stamp: Stamp,
    pub(super) key: Name,
    pub(super) value: Blob,
}

/// A context's list of gathered sets keeps its room across flushes up to this many sets; a
/// longer one (a burst on one context) is freed at the flush.
const KEEP_ROOM: usize = 256;

/// Contexts remembered across flushes. A replay over more contexts than this forgets them all
/// at the next flush and starts again, so that the names kept stay bounded.
const SLOTS_MAX: usize = 64 * 1024;

/// Room (in sets) that the lists may keep in all, in windows: past it, a flush forgets every
/// context. Without it, 64 Ki contexts each keeping up to [`KEEP_ROOM`] could hold ~0.9 GiB
/// of empty room; with it, the gathering holds at most a window of sets plus twice that room.
const ROOM_WINDOWS: usize = 2;

/// Sets not yet applied, by context, each context's in log order.
#[derive(Debug)]
pub(super) struct Pending {
    /// Each context seen during this replay, to its slot in `contexts`. Kept across flushes:
    /// a replay meets the same contexts window after window, and emptying the map at every
    /// flush meant inserting every name again and growing every list again (keeping them:
    /// 2.7% fewer instructions for the whole open of the bench's 1 M events, cachegrind).
    /// foldhash: SipHash cost as much as the rest of the gathering, and nothing here needs its
    /// resistance to chosen keys beyond the per-process seed foldhash keeps.
    slots: HashMap<Name, u32, foldhash::fast::RandomState>,
    /// The gathered sets of each context (empty when none is pending), with its name.
    contexts: Vec<(Name, Vec<Set>)>,
    /// Slots with sets pending, in the order they were first gathered since the last flush.
    touched: Vec<u32>,
    /// Capacity of every list in `contexts`, in sets.
    room: usize,
    len: usize,
    /// Sets gathered before a flush ([`WINDOW`]; tests use small ones).
    window: usize,
    /// Every context this replay has applied sets to (kept for `slabs`: only their values can
    /// be in a slab).
    changed: Contexts,
    /// [`KEEP_ROOM`] and [`SLOTS_MAX`], or the window if smaller (so that the tests' small
    /// windows go through both).
    keep_room: usize,
    slots_max: usize,
}

impl Pending {
    pub(super) fn with_window(window: usize) -> Pending {
        assert!(window > 0, "a window holds at least one set");
        Pending {
            slots: HashMap::default(),
            contexts: Vec::new(),
            touched: Vec::new(),
            room: 0,
            len: 0,
            window,
            changed: Contexts::default(),
            keep_room: KEEP_ROOM.min(window),
            slots_max: SLOTS_MAX.min(window),
        }
    }

    /// Gathers a set; applies everything gathered once the window is full.
    pub(super) fn push(
        &mut self,
        state: &mut State,
        slabs: &mut Slabs,
        context: Name,
        set: Set,
    ) -> Result<(), (Offset, ApplyError)> {
        let contexts = &mut self.contexts;
        let slot = *self.slots.entry(context).or_insert_with_key(|name| {
            contexts.push((name.clone(), Vec::new()));
            u32::try_from(contexts.len() - 1).expect("fewer than 2^32 contexts")
        });
        let sets = &mut self.contexts[slot as usize].1;
        if sets.is_empty() {
            self.touched.push(slot);
        }
        let before = sets.capacity();
        sets.push(set);
        self.room += sets.capacity() - before;
        self.len += 1;
        if self.len >= self.window {
            self.flush(state, slabs)?;
        }
        Ok(())
    }

    /// Applies every gathered set, then sweeps `slabs` if due: right after a flush, only the
    /// state holds their values. On error, returns the earliest offset whose set fails.
    pub(super) fn flush(
        &mut self,
        state: &mut State,
        slabs: &mut Slabs,
    ) -> Result<(), (Offset, ApplyError)> {
        if self.len == 0 {
            return Ok(());
        }
        self.len = 0;
        let mut first_failure: Option<(Offset, ApplyError)> = None;
        // Sets applied in this flush, and how many the heap room made so far is for.
        let (mut applied_sets, mut room_for) = (0, 0);
        for slot in self.touched.drain(..) {
            let (context, sets) = &mut self.contexts[slot as usize];
            if applied_sets >= room_for {
                crate::heap::make_room(ROOM_SETS * ROOM_PER_SET);
                room_for = applied_sets + ROOM_SETS;
            }
            applied_sets += sets.len();
            if !self.changed.contains(context) {
                self.changed.insert(context.clone());
            }
            let first = sets.first().map(|s| s.stamp.offset).unwrap_or_default();
            let applied =
                state.set_values(context, sets.drain(..).map(|s| (s.stamp, s.key, s.value)));
            if sets.capacity() > self.keep_room {
                self.room -= sets.capacity();
                *sets = Vec::new();
            }
            if let Err(e) = applied {
                if first_failure.as_ref().is_none_or(|(at, _)| first < *at) {
                    first_failure = Some((first, e));
                }
            }
        }
        if self.contexts.len() > self.slots_max || self.room > ROOM_WINDOWS * self.window {
            self.slots = HashMap::default();
            self.contexts = Vec::new();
            self.room = 0;
        }
        if first_failure.is_none() && slabs.due() {
            slabs.sweep(state, &self.changed);
        }
        first_failure.map_or(Ok(()), Err)
    }
}

/// Applies decoded batches to a state through a [`Pending`], and counts what it applied: the
/// one way replay (inline or pipelined) and `apply_payloads` bring a state forward.
pub(super) struct Applier<'s> {
    state: &'s mut State,
    pending: Pending,
    slabs: Slabs,
    applied: Replayed,
}

impl<'s> Applier<'s> {
    pub(super) fn new(state: &'s mut State) -> Self {
        Applier::with_limits(state, WINDOW, Slabs::default())
    }

    /// An applier with a smaller window and slab limits (tests).
    pub(super) fn with_limits(state: &'s mut State, window: usize, slabs: Slabs) -> Self {
        Applier {
            state,
            pending: Pending::with_window(window),
            slabs,
            applied: Replayed::default(),
        }
    }

    /// Makes heap room for the first window of a replay of about `commits` commits.
    pub(super) fn expect(&self, commits: u64) {
        let sets = usize::try_from(commits)
            .unwrap_or(usize::MAX)
            .min(self.pending.window);
        crate::heap::make_room(sets * ROOM_PER_SET);
    }

    /// Applies a batch, leaving it empty for reuse.
    pub(super) fn apply(&mut self, batch: &mut Batch) -> Result<()> {
        self.applied += batch.apply_to(self.state, &mut self.pending, &mut self.slabs)?;
        Ok(())
    }

    /// Applies what is still gathered, sweeps the slabs a last time; returns what was applied
    /// in all.
    pub(super) fn finish(mut self) -> Result<Replayed> {
        self.pending
            .flush(self.state, &mut self.slabs)
            .map_err(|(offset, e)| inconsistent(offset, e))?;
        self.slabs.finish(self.state, &self.pending.changed);
        Ok(self.applied)
    }
}
