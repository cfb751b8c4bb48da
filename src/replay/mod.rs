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
/// third of the replay (115-125 ms each of a 340 ms open). 128 batches, at most 1,024 events
/// each (~170 KB), let it decode through a flush.
const REPLAY_AHEAD: usize = 128;

/// Calls `f` with every full batch of the commits in `from..=to`, and with the last one.
fn for_each_batch<F>(reader: &LogReader, from: Offset, to: Offset, mut f: F) -> Result<()>
where
    F: FnMut(&mut Batch) -> Result<ControlFlow<()>>,
{
    let mut batch = Batch::with_capacity(REPLAY_BATCH);
    let mut failed = None;
    reader.scan(from, to, |rec| {
        let step = batch
            .push(rec.offset, rec.payload, rec.chain)
            .map_err(Error::from)
            .and_then(|()| {
                if batch.is_full() {
                    batch.seal();
                    f(&mut batch)
                } else {
                    Ok(ControlFlow::Continue(()))
                }
            });
        step.unwrap_or_else(|e| {
            failed = Some(e);
            ControlFlow::Break(())
        })
    })?;
    match failed {
        Some(e) => Err(e),
        None => {
            batch.seal();
            f(&mut batch).map(|_| ())
        }
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
    let from = state.offset().next();
    if to.0.saturating_sub(from.0) < 4 * REPLAY_BATCH as u64 {
        let mut applier = Applier::new(state);
        for_each_batch(reader, from, to, |batch| {
            applier.apply(batch).map(|()| ControlFlow::Continue(()))
        })?;
        return applier.finish();
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(REPLAY_AHEAD);
    // Applied batches go back to the decoder, so that their memory is reused.
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            for_each_batch(reader, from, to, |batch| {
                let empty = back_rx
                    .try_recv()
                    .unwrap_or_else(|_| Batch::with_capacity(REPLAY_BATCH));
                match tx.send(batch.hand_over(empty)) {
                    Ok(()) => Ok(ControlFlow::Continue(())),
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
        drop(rx);
        let decoded: Result<()> = decoder
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        match failed {
            Some(e) => Err(e),
            None => decoded.and_then(|()| applier.finish()),
        }
    })
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
    for (offset, payload) in records {
        batch.push(offset, payload, None)?;
        if batch.is_full() {
            applier.apply(&mut batch)?;
        }
    }
    applier.apply(&mut batch)?;
    applier.finish()
}
