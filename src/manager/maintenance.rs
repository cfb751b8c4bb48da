//! Snapshots on demand and compaction.

use super::hub::Counters;
use super::ops::Action;
use super::stage::Request;
use super::{blocking, ContextManager};
use crate::error::{Error, Result};
use crate::offset::Offset;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;

impl ContextManager {
    /// Writes a snapshot of the current state now; returns its offset.
    pub async fn snapshot_now(&self) -> Result<Offset> {
        self.check_open()?;
        let state = self.state();
        let snapshotter = Arc::clone(&self.inner.snapshotter);
        let counters_hub = Arc::clone(&self.inner.hub);
        blocking(move || {
            snapshotter.write(&state)?;
            Counters::add(&counters_hub.counters.snapshots, 1);
            counters_hub
                .counters
                .last_snapshot
                .store(state.offset().0, std::sync::atomic::Ordering::Relaxed);
            Ok(state.offset())
        })
        .await
    }

    /// Removes log segments whose records all lie at or before the newest snapshot at or
    /// before both `before` and the oldest recovery point, so that the state at every recovery
    /// point and at every offset from `before` on stays readable (from that snapshot). Records the compaction as an event first (so a crash can leave extra
    /// segments, never missing ones), then removes the files. Returns the files removed; none
    /// if no snapshot qualifies.
    pub async fn compact(&self, before: Offset) -> Result<Vec<PathBuf>> {
        self.check_open()?;
        let this = self.clone();
        blocking(move || this.compact_blocking(before)).await
    }

    fn compact_blocking(&self, before: Offset) -> Result<Vec<PathBuf>> {
        // No snapshot is written or pruned while the base is chosen and the segments go.
        let _no_snapshots = self
            .inner
            .snapshotter
            .lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let state = self.state();
        // Recovery points must stay restorable and durable consumers able to resume.
        let oldest_point = state
            .recovery_points()
            .values()
            .copied()
            .chain(state.consumer_positions())
            .min();
        let bound = before
            .min(oldest_point.unwrap_or(Offset(u64::MAX)))
            .min(state.offset());
        let config = &self.inner.config;
        let (snaps, _) = crate::snapshot::list(&*config.storage, &config.dir)?;
        let Some(base) = snaps.iter().rev().map(|(o, _)| *o).find(|o| *o <= bound) else {
            return Ok(Vec::new());
        };
        // The base must survive a power loss before the log it replaces goes: a snapshot
        // whose rename was not yet made durable (a failed directory sync) could vanish.
        let sdir = crate::snapshot::snapshot_dir(&config.dir);
        config.storage.sync_dir(&sdir).map_err(|source| {
            Error::Recovery(crate::error::RecoveryError::SnapshotIo {
                op: "sync directory",
                file: sdir.clone(),
                source,
            })
        })?;
        let start = base.next();
        if start > state.compacted_before() {
            let (reply, rx) = oneshot::channel();
            let request = Request {
                actions: vec![Action::Compacted(start)],
                expect: BTreeMap::new(),
                reply,
                submitted: std::time::Instant::now(),
            };
            self.inner.commit.submit_blocking(request)?;
            rx.blocking_recv().map_err(|_| Error::Closed)??;
        }
        Ok(self.inner.reader.remove_segments_before(start)?)
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.hub.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }
}
