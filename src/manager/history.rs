//! Reading the log: a context's history, commits from an offset, recovery points,
//! point-in-time reads and restores.

use super::ops::Action;
use super::{blocking, At, ContextManager, Receipt};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::model::{check_context_name, check_point_label};
use crate::offset::Offset;
use crate::replay::for_each_commit;
use crate::state::State;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

/// One event of a context's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The commit's offset.
    pub offset: Offset,
    /// The commit's time, ms since the Unix epoch.
    pub ts_ms: u64,
    /// The event.
    pub event: Event,
}

/// One commit as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    /// Its offset.
    pub offset: Offset,
    /// Its time, ms since the Unix epoch.
    pub ts_ms: u64,
    /// Its events.
    pub events: Vec<Event>,
}

impl ContextManager {
    /// Every event that concerns `context`, oldest first, with offsets and times
    /// ([`Error::NotFound`] for a context the store has never had).
    pub async fn history(&self, context: &str) -> Result<Vec<HistoryEntry>> {
        check_context_name(context)?;
        // A context the store has never seen (deleted ones included) has no history.
        if self.state().context_any(context).is_none() {
            return Err(Error::NotFound {
                context: context.to_string(),
            });
        }
        let reader = self.inner.reader.clone();
        let (name, to) = (context.to_string(), self.last_offset());
        let from = reader.first_offset();
        blocking(move || {
            let mut out = Vec::new();
            for_each_commit(&reader, from, to, |offset, commit| {
                let ts_ms = commit.ts;
                out.extend(
                    commit
                        .events
                        .into_iter()
                        .filter(|e| e.concerns(&name))
                        .map(|event| HistoryEntry {
                            offset,
                            ts_ms,
                            event,
                        }),
                );
                Ok(ControlFlow::Continue(()))
            })?;
            Ok(out)
        })
        .await
    }

    /// Every commit from `from` to the last acknowledged one.
    pub async fn events(&self, from: Offset) -> Result<Vec<CommitRecord>> {
        self.events_range(from, self.last_offset()).await
    }

    /// Every commit in `from..=to`.
    pub async fn events_range(&self, from: Offset, to: Offset) -> Result<Vec<CommitRecord>> {
        let reader = self.inner.reader.clone();
        let to = to.min(self.last_offset());
        blocking(move || {
            let mut out = Vec::new();
            for_each_commit(&reader, from.max(Offset::FIRST), to, |offset, commit| {
                out.push(CommitRecord {
                    offset,
                    ts_ms: commit.ts,
                    events: commit.events,
                });
                Ok(ControlFlow::Continue(()))
            })?;
            Ok(out)
        })
        .await
    }

    // ---- recovery points, point-in-time reads, restore ----

    /// Names the current end of the log; returns the offset of the commit that records it.
    pub async fn create_recovery_point(&self, label: &str) -> Result<Offset> {
        check_point_label(label)?;
        let receipt = self
            .submit(vec![Action::Point(label.to_string())], BTreeMap::new())
            .await?;
        Ok(receipt.offset)
    }

    /// Resolves a label or checks an offset against what is committed.
    pub fn resolve(&self, at: &At) -> Result<Offset> {
        let state = self.state();
        let offset = match at {
            At::Offset(o) => *o,
            At::Label(l) => state
                .recovery_point(l)
                .ok_or_else(|| Error::UnknownRecoveryPoint { label: l.clone() })?,
        };
        let first = state.compacted_before().max(Offset::FIRST).prev();
        if offset > state.offset() || offset < first {
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                first,
                last: state.offset(),
            });
        }
        Ok(offset)
    }

    /// A read-only view of every context as of `at`: the nearest snapshot at or before it,
    /// then replay. Its cost is bounded by the snapshot interval, not the log's length.
    pub async fn state_at(&self, at: impl Into<At>) -> Result<State> {
        let offset = self.resolve(&at.into())?;
        let current = self.state();
        if offset == current.offset() {
            return Ok((*current).clone());
        }
        let (config, reader) = (self.inner.config.clone(), self.inner.reader.clone());
        blocking(move || super::open::rebuild(&config, &reader, offset).map(|(s, ..)| s)).await
    }

    /// Brings every context back to its state as of `at` by appending one commit of
    /// `ContextRestored` events (history is never rewritten). Contexts created after `at` are
    /// deleted; contexts deleted since are brought back.
    pub async fn restore(&self, at: impl Into<At>) -> Result<Receipt> {
        let target = self.state_at(at).await?;
        self.submit(vec![Action::Restore(Arc::new(target))], BTreeMap::new())
            .await
    }
}
