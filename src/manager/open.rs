//! Opening a store: lock and recover the log, load the newest valid snapshot, replay the rest,
//! start the writer, completion and snapshot threads.

use super::hub::{Counters, Hub};
use super::stage::{CommitCompleter, CommitStage, SnapshotTrigger};
use super::{ContextManager, Inner};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::offset::Offset;
use crate::replay::{replay_into, Replayed};
use crate::snapshot::{self, SkippedSnapshot};
use crate::state::State;
use crate::wal::{open_log, GroupCommit, LogReader, RecoveryReport};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

/// What open found and did.
#[derive(Debug, Clone, Serialize)]
pub struct OpenReport {
    /// The log's recovery report (torn tail, dropped ranges, foreign files).
    pub log: RecoveryReport,
    /// The snapshot open started from (`None`: the log start).
    pub snapshot: Option<Offset>,
    /// Snapshots skipped because they failed a check.
    pub skipped_snapshots: Vec<SkippedSnapshot>,
    /// Snapshots past the log's end, set aside (renamed `*.ahead-of-log`).
    pub set_aside_snapshots: Vec<PathBuf>,
    /// Files in `snapshots/` that are not snapshots; left alone.
    pub foreign_snapshot_files: Vec<PathBuf>,
    /// Commits replayed after the snapshot.
    pub replayed: u64,
    /// Time from open to ready, in milliseconds.
    pub open_ms: u64,
}

/// Rebuilds the state as of `at` from the newest usable snapshot at or before it, plus replay.
pub(crate) fn rebuild(
    config: &Config,
    reader: &LogReader,
    at: Offset,
) -> Result<(State, Option<Offset>, Vec<SkippedSnapshot>, Replayed)> {
    let first = reader.first_offset();
    // In a tamper-evident store a snapshot must carry the log's chain hash at its offset.
    let accept = |state: &State| -> std::result::Result<(), String> {
        if !reader.tamper_evident() {
            return Ok(());
        }
        let logged = reader.chain_at(state.offset()).map_err(|e| e.to_string())?;
        if logged.is_some() && logged == state.chain() {
            Ok(())
        } else {
            Err(format!(
                "its chain hash does not match the log's at offset {}",
                state.offset()
            ))
        }
    };
    let (snap, skipped) = snapshot::newest_accepted(
        &*config.storage,
        &config.dir,
        reader.store_id(),
        first.prev(),
        at,
        &accept,
    )?;
    let from = snap.as_ref().map(State::offset);
    let mut state = match snap {
        Some(state) => state,
        None if first > Offset::FIRST => {
            return Err(Error::OffsetOutOfRange {
                requested: at,
                first,
                last: reader.last_offset(),
            })
        }
        None => State::default(),
    };
    let replayed = replay_into(reader, &mut state, at)?;
    Ok((state, from, skipped, replayed))
}

pub(crate) fn open_blocking(config: Config) -> Result<ContextManager> {
    config.validate()?;
    let started = Instant::now();
    let _span = tracing::info_span!("open", dir = %config.dir.display()).entered();
    let (writer, reader, log_report) =
        open_log(Arc::clone(&config.storage), &config.dir, config.wal())?;
    let last = reader.last_offset();
    let set_aside = snapshot::set_aside_ahead(&*config.storage, &config.dir, last)?;
    let (_, foreign) = snapshot::list(&*config.storage, &config.dir)?;
    let replay_started = Instant::now();
    let (state, from, skipped, replayed) = rebuild(&config, &reader, last)?;
    metrics::histogram!(crate::telemetry::REPLAY_SECONDS)
        .record(replay_started.elapsed().as_secs_f64());
    debug_assert_eq!(state.offset(), last, "replay reaches the log's end");
    let hub = Arc::new(Hub::new(state.clone()));
    let (snap_tx, snap_rx) = mpsc::sync_channel::<Arc<State>>(1);
    let snapshotter = Arc::new(Snapshotter {
        config: config.clone(),
        store_id: reader.store_id(),
        hub: Arc::clone(&hub),
        lock: Mutex::new(()),
    });
    let snap_thread = {
        let snapshotter = Arc::clone(&snapshotter);
        let hub = Arc::clone(&hub);
        std::thread::Builder::new()
            .name("ctxlog-snapshot".into())
            .spawn(move || {
                for state in snap_rx {
                    snapshotter.write_counted(&state, &hub.counters);
                }
            })
            .map_err(|e| {
                Error::Persistence(crate::wal::WalError::Io {
                    op: "spawn snapshot thread",
                    path: config.dir.clone(),
                    source: e,
                })
            })?
    };
    let completer = CommitCompleter {
        hub: Arc::clone(&hub),
        snapshots: SnapshotTrigger {
            every_commits: config.snapshot_every_commits,
            every_bytes: config.snapshot_every_bytes,
            at_close: config.snapshot_at_close,
            commits: replayed.commits,
            bytes: replayed.bytes,
            tx: Some(snap_tx),
        },
    };
    let commit = GroupCommit::start(writer, CommitStage::new(state), completer);
    let report = OpenReport {
        log: log_report,
        snapshot: from,
        skipped_snapshots: skipped,
        set_aside_snapshots: set_aside,
        foreign_snapshot_files: foreign,
        replayed: replayed.commits,
        open_ms: started.elapsed().as_millis() as u64,
    };
    tracing::info!(
        replayed = replayed.commits,
        open_ms = report.open_ms,
        last = last.0,
        "store open"
    );
    Ok(ContextManager {
        inner: Arc::new(Inner {
            config,
            commit,
            reader,
            hub,
            snapshotter,
            snap_thread: Mutex::new(Some(snap_thread)),
            report,
        }),
    })
}

/// Writes snapshots, one at a time (the background thread and `snapshot_now` share it).
#[derive(Debug)]
pub(crate) struct Snapshotter {
    pub config: Config,
    pub store_id: [u8; 16],
    hub: Arc<Hub>,
    /// Held while a snapshot is written and pruned, and while a compaction chooses its base
    /// snapshot and removes segments.
    pub lock: Mutex<()>,
}

impl Snapshotter {
    pub fn write(&self, state: &State) -> Result<PathBuf> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _span = tracing::info_span!("snapshot", offset = state.offset().0).entered();
        let storage = &*self.config.storage;
        let started = Instant::now();
        let path = snapshot::write(storage, &self.config.dir, self.store_id, state)?;
        metrics::histogram!(crate::telemetry::SNAPSHOT_SECONDS)
            .record(started.elapsed().as_secs_f64());
        // The newest state knows the latest compaction (compact holds this lock until its
        // commit is published, so no compaction can slip in between).
        let compacted = self
            .hub
            .state()
            .compacted_before()
            .max(state.compacted_before());
        let protect = (compacted > Offset::ZERO).then(|| compacted.prev());
        snapshot::prune(
            storage,
            &self.config.dir,
            self.config.snapshots_kept,
            protect,
        )?;
        Ok(path)
    }

    fn write_counted(&self, state: &State, counters: &Counters) {
        match self.write(state) {
            Ok(_) => {
                Counters::add(&counters.snapshots, 1);
                counters
                    .last_snapshot
                    .store(state.offset().0, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                Counters::add(&counters.snapshot_failures, 1);
                tracing::warn!(error = %e, "background snapshot failed; the log still holds everything");
            }
        }
    }
}
