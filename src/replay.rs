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
    let mut failed = None;
    reader.scan(from, to, |rec| {
        let step = Commit::decode(rec.offset, rec.payload)
            .map_err(Error::from)
            .and_then(|commit| f(rec.offset, commit));
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

/// Brings `state` forward to `to` by applying every commit after `state.offset()`. Returns the
/// number of commits applied.
pub fn replay_into(reader: &LogReader, state: &mut State, to: Offset) -> Result<u64> {
    let mut applied = 0;
    for_each_commit(reader, state.offset().next(), to, |offset, commit| {
        state
            .apply_commit(offset, &commit)
            .map_err(|e| inconsistent(offset, e))?;
        applied += 1;
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(applied)
}
