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

/// Sets gathered before a flush: bounds the memory they hold (64 B each besides values, plus
/// 8 B of order; [`WINDOW_BYTES`] bounds their values). The larger the window, the more sets each context gets per flush, but the
/// longer the decoding thread must run ahead of a flush (`REPLAY_AHEAD`): with the bench's
/// 10,000 contexts, 128 Ki sets and 128 batches ahead rebuilt as fast as 256 Ki and 256
/// batches, for 23 MB less peak memory.
const WINDOW: usize = 128 * 1024;

/// Bytes of values gathered before a flush: the sets waiting hold their values (and large
/// ones are their own buffers), so a window of overwrites of large values would otherwise
/// hold up to 128 Ki of them.
const WINDOW_BYTES: usize = 64 << 20;

/// Heap room made per set before each flush and for the first window (`crate::heap`): about
/// what a new key costs the state's maps (nodes of 16 entries of 48 bytes, most not full).
/// With 128 Ki-set windows the bench's flushes grow more than this: its open still makes
/// ~5,300 one-page `mprotect` calls on the applying thread. 192 bytes cut them to ~250
/// (~2,500 calls in all against ~7,500), but the open was no faster (3.26 against 3.24 M
/// events/s, medians of 8 alternating opens), so it stays at 96.
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

/// Contexts remembered across flushes. A replay over more contexts than this forgets them all
/// at the next flush and starts again, so that the names kept stay bounded.
const SLOTS_MAX: usize = 64 * 1024;

/// A context's sets are copied out of the arrival order into a buffer before they are
/// applied; a buffer a burst on one context grew past this many sets is freed after it.
const KEEP_GATHERED: usize = 4096;

/// Sets not yet applied, in arrival order, with the context each is for.
///
/// Sets are kept in the order they arrive and sorted by context only at the flush. The first
/// version kept a list per context and pushed each set onto its context's list: with 10,000
/// contexts that is a store to a different cold cache line per set, and those misses cost the
/// applying thread about 150 ns per set, more than applying them. Appending is a sequential
/// write; the flush sorts the sets' positions by context (a counting sort over an array of 4
/// bytes per set, which stays in cache) and copies each context's sets out in one tight loop,
/// whose loads overlap.
#[derive(Debug)]
pub(super) struct Pending {
    /// Each context seen during this replay, to its slot in `names` and `counts`. Kept across
    /// flushes: a replay meets the same contexts window after window, and forgetting them at
    /// every flush meant inserting every name again. foldhash: SipHash cost as much as the
    /// rest of the gathering, and nothing here needs its resistance to chosen keys beyond the
    /// per-process seed foldhash keeps.
    slots: HashMap<Name, u32, foldhash::fast::RandomState>,
    /// Each slot's context.
    names: Vec<Name>,
    /// Each slot's count of sets pending (0 when none is).
    counts: Vec<u32>,
    /// Slots with sets pending, in the order they were first gathered since the last flush.
    touched: Vec<u32>,
    /// The sets pending, in arrival order (each taken at the flush), and the slot of each.
    arrived: Vec<Option<Set>>,
    arrived_slots: Vec<u32>,
    /// The bytes of the values in `arrived`.
    arrived_bytes: usize,
    /// Scratch of the flush: positions in `arrived` sorted by context, and one context's sets.
    order: Vec<u32>,
    gathered: Vec<Set>,
    /// Sets and value bytes gathered before a flush ([`WINDOW`] and [`WINDOW_BYTES`]; tests use
    /// small windows, with 256 bytes a set, so that they flush on bytes too).
    window: usize,
    window_bytes: usize,
    /// Every context this replay has applied sets to (kept for `slabs`: only their values can
    /// be in a slab).
    changed: Contexts,
    /// [`SLOTS_MAX`], or the window if smaller (so that the tests' small windows go through
    /// it).
    slots_max: usize,
}

impl Pending {
    pub(super) fn with_window(window: usize) -> Pending {
        assert!(window > 0, "a window holds at least one set");
        assert!(
            u32::try_from(window).is_ok(),
            "a window's positions fit in u32"
        );
        Pending {
            slots: HashMap::default(),
            names: Vec::new(),
            counts: Vec::new(),
            touched: Vec::new(),
            arrived: Vec::new(),
            arrived_slots: Vec::new(),
            arrived_bytes: 0,
            order: Vec::new(),
            gathered: Vec::new(),
            window,
            window_bytes: WINDOW_BYTES.min(window.saturating_mul(256)),
            changed: Contexts::default(),
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
        let (names, counts) = (&mut self.names, &mut self.counts);
        let slot = *self.slots.entry(context).or_insert_with_key(|name| {
            names.push(name.clone());
            counts.push(0);
            u32::try_from(names.len() - 1).expect("fewer than 2^32 contexts")
        });
        let count = &mut self.counts[slot as usize];
        if *count == 0 {
            self.touched.push(slot);
        }
        *count += 1;
        self.arrived_bytes += set.value.len();
        self.arrived.push(Some(set));
        self.arrived_slots.push(slot);
        if self.arrived.len() >= self.window || self.arrived_bytes >= self.window_bytes {
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
        if self.arrived.is_empty() {
            return Ok(());
        }
        // Counting sort of the positions by context, contexts in the order first gathered:
        // each slot's count becomes where its positions start, then where they end.
        let mut at = 0;
        for &slot in &self.touched {
            let count = std::mem::replace(&mut self.counts[slot as usize], at);
            at += count;
        }
        self.order.clear();
        self.order.resize(self.arrived.len(), 0);
        for (position, &slot) in self.arrived_slots.iter().enumerate() {
            let next = &mut self.counts[slot as usize];
            self.order[*next as usize] = position as u32;
            *next += 1;
        }
        let mut first_failure: Option<(Offset, ApplyError)> = None;
        let mut start = 0;
        // How many sets the heap room made so far is for.
        let mut room_for = 0;
        for slot in self.touched.drain(..) {
            let end = std::mem::take(&mut self.counts[slot as usize]) as usize;
            if start >= room_for {
                // For what this flush still applies: a flush of a few sets (before every
                // event that is not a `ValueSet`) makes none.
                let coming = self.arrived.len() - start;
                crate::heap::make_room(coming.min(ROOM_SETS) * ROOM_PER_SET);
                room_for = start + ROOM_SETS;
            }
            self.gathered
                .extend(self.order[start..end].iter().map(|&position| {
                    self.arrived[position as usize]
                        .take()
                        .expect("each position is sorted once")
                }));
            start = end;
            let context = &self.names[slot as usize];
            if !self.changed.contains(context) {
                self.changed.insert(context.clone());
            }
            let first = self.gathered[0].stamp.offset;
            let applied = state.set_values(
                context,
                self.gathered.drain(..).map(|s| (s.stamp, s.key, s.value)),
            );
            if self.gathered.capacity() > KEEP_GATHERED {
                self.gathered = Vec::new();
            }
            if let Err(e) = applied {
                if first_failure.as_ref().is_none_or(|(at, _)| first < *at) {
                    first_failure = Some((first, e));
                }
            }
        }
        debug_assert_eq!(start, self.arrived.len(), "every set was applied");
        self.arrived.clear();
        self.arrived_slots.clear();
        self.arrived_bytes = 0;
        if self.names.len() > self.slots_max {
            self.slots = HashMap::default();
            self.names = Vec::new();
            self.counts = Vec::new();
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
