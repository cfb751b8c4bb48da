//! Replay: the one loop that turns log records back into state. Open, `state_at`, `verify`,
//! history queries and the tests all read the log through here.

use crate::error::{Error, RecoveryError, Result};
use crate::event::Commit;
use crate::offset::Offset;
use crate::state::{ApplyError, State};
use crate::wal::LogReader;
use batch::Batch;
use pending::Applier;
use std::ops::ControlFlow;

mod batch;
mod pending;
mod slabs;
mod staging;
#[cfg(test)]
mod tests;

/// Calls `f` with every commit in `from..=to`, decoded, in order. Every record's CRC and
/// offset are checked by the reader; every payload's schema version here.
pub fn for_each_commit<F>(reader: &LogReader, from: Offset, to: Offset, mut f: F) -> Result<()>
where
    F: FnMut(Offset, Commit) -> Result<ControlFlow<()>>,
{
    for_each_chained(reader, from, to, |offset, commit, _| f(offset, commit))
}

/// [`for_each_commit`], with each record's chain hash (tamper-evident stores).
pub fn for_each_chained<F>(reader: &LogReader, from: Offset, to: Offset, mut f: F) -> Result<()>
where
    F: FnMut(Offset, Commit, Option<[u8; 32]>) -> Result<ControlFlow<()>>,
{
    let mut failed = None;
    reader.scan(from, to, |rec| {
        let step = Commit::decode(rec.offset, rec.payload)
            .map_err(Error::from)
            .and_then(|commit| f(rec.offset, commit, rec.chain));
        match step {
            Ok(flow) => flow,
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// Turns an apply failure during replay into the error that says the log contradicts itself.
pub fn inconsistent(offset: Offset, e: ApplyError) -> Error {
    Error::Recovery(RecoveryError::Inconsistent {
        offset,
        reason: format!("{e:?}"),
    })
}

/// Commits (and events) decoded per hand-off between the decoding and the applying thread.
const REPLAY_BATCH: usize = 1024;

/// Batches decoded ahead of the applying thread. A flush of the gathered sets (`pending`)
/// keeps the applying thread busy for a few dozen milliseconds at a time; with room for only
/// 4 batches the decoding thread spent those blocked, and each thread waited for the other a
/// third of the replay (115-125 ms each of a 340 ms open). 128 batches let it decode through
/// a flush.
const REPLAY_AHEAD: usize = 128;

/// Bytes of batches ([`Batch::weight`]) the decoding thread may have handed over and not had
/// back: 128 batches of the bench's 200-byte sets weigh ~48 MB, but 128 batches of large
/// values or of commits of many events could weigh gigabytes.
const REPLAY_AHEAD_BYTES: usize = 64 << 20;

/// Calls `f` with every full batch of the commits in `from..=to`, and with the last one.
///
/// If a record fails to read or decode, the commits before it are still handed to `f` (a set
/// among them that fails comes first in the log, and is the error an in-order replay
/// reports; the caller checks what it gathered before returning this one), then its error is
/// returned. An error from `f` is returned at once.
fn for_each_batch<F>(reader: &LogReader, from: Offset, to: Offset, mut f: F) -> Result<()>
where
    F: FnMut(&mut Batch) -> Result<ControlFlow<()>>,
{
    let mut batch = Batch::with_capacity(REPLAY_BATCH);
    let (mut unreadable, mut failed) = (None, None);
    let scanned = reader.scan(from, to, |rec| {
        if let Err(e) = batch.push(rec.offset, rec.payload, rec.chain) {
            unreadable = Some(Error::from(e));
            return ControlFlow::Break(());
        }
        if !batch.is_full() {
            return ControlFlow::Continue(());
        }
        batch.seal();
        f(&mut batch).unwrap_or_else(|e| {
            failed = Some(e);
            ControlFlow::Break(())
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    batch.seal();
    // The last batch: whether `f` would stop after it changes nothing.
    let _last: ControlFlow<()> = f(&mut batch)?;
    match unreadable {
        Some(e) => Err(e),
        None => scanned.map_err(Error::from),
    }
}

/// What a replay applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Commits applied.
    pub commits: u64,
    /// Their payloads' bytes.
    pub bytes: u64,
}

impl std::ops::AddAssign for Replayed {
    fn add_assign(&mut self, other: Replayed) {
        self.commits += other.commits;
        self.bytes += other.bytes;
    }
}

/// Brings `state` forward to `to` by applying every commit after `state.offset()`.
///
/// Long replays run as a two-stage pipeline: one thread reads, checks (CRC, offset, chain) and
/// decodes records into [`Batch`]es while this one applies them. Short ones (a `state_at` near
/// a snapshot) run inline, through the same batches.
pub fn replay_into(reader: &LogReader, state: &mut State, to: Offset) -> Result<Replayed> {
    replay_ahead(reader, state, to, REPLAY_AHEAD_BYTES)
}

/// [`replay_into`], with the decoding thread at most `ahead_bytes` ahead (tests use tiny ones).
fn replay_ahead(
    reader: &LogReader,
    state: &mut State,
    to: Offset,
    ahead_bytes: usize,
) -> Result<Replayed> {
    let from = state.offset().next();
    if to.0.saturating_sub(from.0) < 4 * REPLAY_BATCH as u64 {
        let mut applier = Applier::new(state);
        let scanned = for_each_batch(reader, from, to, |batch| {
            applier.apply(batch).map(|()| ControlFlow::Continue(()))
        });
        return finish(applier, scanned);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(REPLAY_AHEAD);
    // Applied batches go back to the decoder, so that their memory is reused and the bytes
    // in flight are known.
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            // The weights of the batches handed over and not yet back, oldest first (the
            // applying thread returns them in order).
            let mut ahead = std::collections::VecDeque::new();
            let mut in_flight = 0;
            for_each_batch(reader, from, to, |batch| {
                let weight = batch.weight();
                let mut empty = None;
                loop {
                    let over = in_flight + weight > ahead_bytes && !ahead.is_empty();
                    let back = if over {
                        back_rx.recv().ok()
                    } else {
                        back_rx.try_recv().ok()
                    };
                    let Some(applied) = back else { break };
                    in_flight -= ahead.pop_front().expect("one weight per batch handed over");
                    empty.get_or_insert(applied);
                }
                let empty = empty.unwrap_or_else(|| Batch::with_capacity(REPLAY_BATCH));
                match tx.send(batch.hand_over(empty)) {
                    Ok(()) => {
                        ahead.push_back(weight);
                        in_flight += weight;
                        Ok(ControlFlow::Continue(()))
                    }
                    // The receiver is gone only if applying failed: that error is reported.
                    Err(_) => Ok(ControlFlow::Break(())),
                }
            })
        });
        let mut applier = Applier::new(state);
        applier.expect(to.0 - from.0 + 1);
        let mut failed = None;
        for mut batch in rx.iter() {
            if let Err(e) = applier.apply(&mut batch) {
                failed = Some(e);
                break;
            }
            let _ = back_tx.send(batch);
        }
        // Both gone, so that a decoder waiting to send, or for a batch back, stops.
        drop(rx);
        drop(back_tx);
        let decoded: Result<()> = decoder
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        match failed {
            Some(e) => Err(e),
            None => finish(applier, decoded),
        }
    })
}

/// Applies what `applier` still gathers, then reports the first failure in log order: a set
/// failing there comes before the record whose error `scanned` may hold.
fn finish(applier: Applier<'_>, scanned: Result<()>) -> Result<Replayed> {
    let replayed = applier.finish()?;
    scanned.map(|()| replayed)
}

/// Applies commit payloads to `state` exactly as replay does (the fast `ValueSet` decoder,
/// sets gathered per context), without a log: the fuzz target `decode_event` holds this path
/// to [`State::apply_commit`] on arbitrary bytes.
#[doc(hidden)]
pub fn apply_payloads<'a>(
    state: &mut State,
    records: impl IntoIterator<Item = (Offset, &'a [u8])>,
) -> Result<Replayed> {
    let mut applier = Applier::new(state);
    let mut batch = Batch::with_capacity(REPLAY_BATCH);
    let mut decoded = Ok(());
    for (offset, payload) in records {
        if let Err(e) = batch.push(offset, payload, None) {
            decoded = Err(e.into());
            break;
        }
        if batch.is_full() {
            applier.apply(&mut batch)?;
        }
    }
    applier.apply(&mut batch)?;
    finish(applier, decoded)
}
