//! Decoded commits on their way from the decoding thread to the applying one.
//!
//! Everything that can happen before an event reaches the state happens on the decoding thread,
//! so that the applying thread only gathers and inserts (see `pending`). A `ValueSet` commit
//! (nearly every commit of a real log) is parsed here straight from the record's bytes by
//! [`parse_value_sets`], with no allocation at all: its context name and key become inline
//! [`Name`]s and its value is staged for the batch's slab (`staging`). Any other commit goes
//! through [`Commit::decode`], the one full decoder, and is applied by [`State::apply`].

use super::pending::{Pending, Set};
use super::slabs::Slabs;
use super::staging::{Staged, Staging};
use super::{inconsistent, Replayed};
use crate::error::{RecoveryError, Result};
use crate::event::{Commit, Event, SCHEMA_VERSION};
use crate::offset::Offset;
use crate::state::{Name, Stamp, State};

/// One event, ready to apply.
#[derive(Debug)]
enum Op {
    /// `Event::ValueSet`, already in the form the state stores.
    Set {
        context: Name,
        key: Name,
        value: Staged,
    },
    /// Any other event.
    Other(Event),
}

/// Where one commit's events end in [`Batch::ops`], and what seals it.
#[derive(Debug)]
struct Mark {
    offset: Offset,
    ts: u64,
    chain: Option<[u8; 32]>,
    ops_end: usize,
}

/// A run of consecutive decoded commits.
#[derive(Debug)]
pub(super) struct Batch {
    /// Commits, and events, that fill the batch (a commit is never split: one with more
    /// events fills it alone).
    limit: usize,
    ops: Vec<Op>,
    commits: Vec<Mark>,
    bytes: u64,
    /// The values of the sets in `ops`.
    values: Staging,
}

impl Batch {
    /// A batch of up to `limit` commits and `limit` events (plus the events of the commit
    /// that crosses it).
    pub(super) fn with_capacity(limit: usize) -> Batch {
        Batch {
            limit,
            ops: Vec::with_capacity(limit),
            commits: Vec::with_capacity(limit),
            bytes: 0,
            values: Staging::default(),
        }
    }

    /// Roughly the bytes the batch holds: its records' payloads (its values are copies of
    /// them) and its decoded events and commits.
    pub(super) fn weight(&self) -> usize {
        self.bytes as usize
            + self.ops.len() * std::mem::size_of::<Op>()
            + self.commits.len() * std::mem::size_of::<Mark>()
    }

    /// Whether the batch holds its limit of commits or of events.
    pub(super) fn is_full(&self) -> bool {
        self.commits.len() >= self.limit || self.ops.len() >= self.limit
    }

    /// Decodes the record at `offset` and adds its commit.
    pub(super) fn push(
        &mut self,
        offset: Offset,
        payload: &[u8],
        chain: Option<[u8; 32]>,
    ) -> std::result::Result<(), RecoveryError> {
        let staged = self.values.mark();
        let ts = match parse_value_sets(payload, |context, key, value| {
            self.ops.push(Op::Set {
                context: Name::new(context),
                key: Name::new(key),
                value: self.values.stage(value),
            })
        }) {
            Some(ts) => ts,
            None => {
                // Undo a fast parse that stopped part-way, then decode the commit whole.
                let start = self.commits.last().map_or(0, |m| m.ops_end);
                self.ops.truncate(start);
                self.values.undo(staged);
                let commit = Commit::decode(offset, payload)?;
                self.ops.extend(commit.events.into_iter().map(Op::Other));
                commit.ts
            }
        };
        self.values.end_commit();
        self.bytes += payload.len() as u64;
        self.commits.push(Mark {
            offset,
            ts,
            chain,
            ops_end: self.ops.len(),
        });
        Ok(())
    }

    /// Copies the values still staged into a slab. The decoding thread seals each batch
    /// before handing it over, so that the copy is its work.
    pub(super) fn seal(&mut self) {
        self.values.seal();
    }

    /// Hands this (sealed) batch over, leaving `next` in its place with this batch's staging
    /// buffer: a batch waiting to be applied holds its slabs, not a 260 KiB buffer.
    pub(super) fn hand_over(&mut self, mut next: Batch) -> Batch {
        next.values.adopt_buffer(&mut self.values);
        std::mem::replace(self, next)
    }

    /// Applies every commit in order, leaving the batch empty (and its memory for the next
    /// one). Value sets may wait in `pending` (see there) until its next flush. On error
    /// `state` may hold part of a commit.
    pub(super) fn apply_to(
        &mut self,
        state: &mut State,
        pending: &mut Pending,
        slabs: &mut Slabs,
    ) -> Result<Replayed> {
        self.seal();
        let mut ops = self.ops.drain(..);
        let mut at = 0;
        let mut applied = 0;
        for mark in self.commits.drain(..) {
            let stamp = Stamp {
                offset: mark.offset,
                ts_ms: mark.ts,
            };
            for op in ops.by_ref().take(mark.ops_end - at) {
                match op {
                    Op::Set {
                        context,
                        key,
                        value,
                    } => {
                        let value = self.values.resolve(value);
                        pending.push(state, slabs, context, Set { stamp, key, value })
                    }
                    Op::Other(event) => pending
                        .flush(state, slabs)
                        .and_then(|()| state.apply(stamp, &event).map_err(|e| (mark.offset, e))),
                }
                .map_err(|(offset, e)| inconsistent(offset, e))?;
            }
            at = mark.ops_end;
            state.seal(mark.offset, mark.chain);
            applied += 1;
        }
        drop(ops);
        for (slab, values) in self.values.take_slabs() {
            slabs.add(slab, values);
        }
        // A commit of many events grew the batch past its limit: the batch goes back to the
        // decoding thread for reuse, and need not keep that room.
        if self.ops.capacity() > 4 * self.limit {
            self.ops = Vec::with_capacity(self.limit);
        }
        Ok(Replayed {
            commits: applied,
            bytes: std::mem::take(&mut self.bytes),
        })
    }
}

/// Parses a commit made only of `ValueSet` events, exactly as this build encodes it
/// (`[v, ts, [{"ValueSet": [context, key, bin]}, ...]]`), calling `set` per event and returning
/// the commit's time. Returns `None` for anything else (another event, another encoding, a
/// schema version this build does not write, trailing bytes), which [`Commit::decode`] then
/// decodes or rejects: this parser accepts a subset of what that one accepts and reads it the
/// same way (tests/replay_fast_decode.rs holds it to that).
pub(crate) fn parse_value_sets(
    payload: &[u8],
    mut set: impl FnMut(&str, &str, &[u8]),
) -> Option<u64> {
    use rmp::decode::{
        read_array_len, read_bin_len, read_int, read_map_len, read_str_from_slice, read_str_len,
    };
    let mut rest = payload;
    if read_array_len(&mut rest).ok()? != 3 {
        return None;
    }
    let v: u16 = read_int(&mut rest).ok()?;
    if v == 0 || v > SCHEMA_VERSION {
        return None;
    }
    let ts: u64 = read_int(&mut rest).ok()?;
    let events = read_array_len(&mut rest).ok()?;
    for _ in 0..events {
        if read_map_len(&mut rest).ok()? != 1 {
            return None;
        }
        // The variant name, compared as bytes (no UTF-8 check for a constant).
        let name_len = usize::try_from(read_str_len(&mut rest).ok()?).ok()?;
        if rest.get(..name_len)? != b"ValueSet" {
            return None;
        }
        rest = rest.get(name_len..)?;
        if read_array_len(&mut rest).ok()? != 3 {
            return None;
        }
        let (context, tail) = read_str_from_slice(rest).ok()?;
        let (key, tail) = read_str_from_slice(tail).ok()?;
        rest = tail;
        let len = usize::try_from(read_bin_len(&mut rest).ok()?).ok()?;
        let value = rest.get(..len)?;
        rest = rest.get(len..)?;
        set(context, key, value);
    }
    rest.is_empty().then_some(ts)
}
