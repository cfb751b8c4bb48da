//! Replay: the one loop that turns log records back into state. Open, `state_at`, `verify`,
//! history queries and the tests all read the log through here.

use crate::error::{Error, RecoveryError, Result};
use crate::event::Commit;
use crate::offset::Offset;
use crate::state::{ApplyError, State};
use crate::wal::LogReader;
use std::ops::ControlFlow;

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

/// Commits decoded per hand-off between the decoding and the applying thread.
const REPLAY_BATCH: usize = 1024;

/// Brings `state` forward to `to` by applying every commit after `state.offset()`. Returns the
/// number of commits applied.
///
/// Long replays run as a two-stage pipeline: one thread reads, checks (CRC, offset) and
/// decodes records while this one applies them, which roughly halves open time on a machine
/// with two cores. Short ones (a `state_at` near a snapshot) run inline.
pub fn replay_into(reader: &LogReader, state: &mut State, to: Offset) -> Result<u64> {
    let from = state.offset().next();
    if to.0.saturating_sub(from.0) < 4 * REPLAY_BATCH as u64 {
        return replay_inline(reader, state, from, to);
    }
    type Decoded = (Offset, Commit, Option<[u8; 32]>);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(4);
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            let mut batch = Vec::with_capacity(REPLAY_BATCH);
            for_each_chained(reader, from, to, |offset, commit, chain| {
                batch.push((offset, commit, chain));
                if batch.len() == REPLAY_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(REPLAY_BATCH));
                    if tx.send(full).is_err() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                Ok(ControlFlow::Continue(()))
            })?;
            // The receiver is gone only if applying failed; that error is the one to report.
            let _ = tx.send(batch);
            Ok(())
        });
        let mut applied = 0;
        let mut failed = None;
        for batch in rx.iter() {
            for (offset, commit, chain) in batch {
                if let Err(e) = state.apply_commit_owned(offset, commit) {
                    failed = Some(inconsistent(offset, e));
                    break;
                }
                state.set_chain(chain);
                applied += 1;
            }
            if failed.is_some() {
                break;
            }
        }
        drop(rx);
        let decoded: Result<()> = decoder
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        match failed {
            Some(e) => Err(e),
            None => decoded.map(|()| applied),
        }
    })
}

fn replay_inline(reader: &LogReader, state: &mut State, from: Offset, to: Offset) -> Result<u64> {
    let mut applied = 0;
    for_each_chained(reader, from, to, |offset, commit, chain| {
        state
            .apply_commit_owned(offset, commit)
            .map_err(|e| inconsistent(offset, e))?;
        state.set_chain(chain);
        applied += 1;
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(applied)
}
