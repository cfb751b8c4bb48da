//! I/O faults injected into an engine scenario on `MemStorage`: `EIO` and `ENOSPC`, once and
//! for good (sticky), at every write, sync, rename/remove, open and directory sync the
//! scenario makes, one fault point per run. The scenario: open a new store, 25 commits of
//! ~5 KiB (two segment rotations), `snapshot_now`, 5 commits, `compact` (removes the segments
//! before the snapshot and records a `Compacted` commit), 5 commits, close. Fault points are
//! enumerated with `op_count` from a fault-free dry run, which also says in which phase each
//! one falls.
//!
//! Checked for every run:
//! - every error is typed and carries the injected OS error: `Persistence(Io)` (log, open,
//!   compaction), `Recovery(SnapshotIo)` (snapshot), or `Persistence(Poisoned)`;
//! - the fault is seen by the caller (except a fault in close's final sync, which nobody waits
//!   for and which loses nothing: every commit was synced before its ack);
//! - a failed log write or sync poisons the writer: the commit that hit it gets the I/O error,
//!   every later commit `Poisoned`; faults outside the log (snapshot, segment removal) poison
//!   nothing and later commits succeed;
//! - nothing panics (a panicking engine thread would show up as `Error::Closed`);
//! - the power-loss image (`DropUnsynced`) and the process-kill image (`ProcessKill`) taken
//!   before close, and the store itself after close, reopen and hold every acknowledged
//!   commit with its value, and take a new commit;
//! - a power loss after that last reopen (a process restarted in the same boot, then the power
//!   went) keeps every commit acknowledged before and after the reopen.

mod reliability_support;

use ctxlog::error::{Error, RecoveryError};
use ctxlog::storage::{CrashMode, FaultKind, FaultOp, MemStorage};
use ctxlog::wal::WalError;
use ctxlog::{create_manager_with_config, ContextManager, Offset, Update};
use reliability_support::{figure, mem_config};
use std::collections::BTreeMap;

const TEST: &str = "reliability_faults";
const OPS: [FaultOp; 5] = [
    FaultOp::Write,
    FaultOp::Sync,
    FaultOp::SyncDir,
    FaultOp::Rename,
    FaultOp::Open,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Open,
    Commits1,
    Snapshot,
    Commits2,
    Compact,
    Commits3,
    Close,
}

fn value(i: u64) -> String {
    format!("{i}:{}", "v".repeat(5000))
}

fn code(kind: FaultKind) -> i32 {
    match kind {
        FaultKind::Eio => 5,
        FaultKind::Enospc => 28,
    }
}

/// What one run saw.
#[derive(Default, Debug)]
struct Run {
    /// (offset, i) of every acknowledged commit.
    acked: Vec<(u64, u64)>,
    /// Errors, by phase.
    errors: Vec<(Phase, String)>,
    /// An error carried the injected OS error.
    fault_seen: bool,
    /// The log was poisoned (a commit failed with the I/O error).
    poisoned: bool,
    /// Commits refused as `Poisoned`.
    refused_poisoned: u64,
}

/// Checks that `e` is one of the typed errors a fault may cause; notes whether it carries the
/// injected OS error.
fn check_typed(e: &Error, code: Option<i32>, run: &mut Run, what: &str) {
    let os = match e {
        Error::Persistence(WalError::Io { source, .. }) => source.raw_os_error(),
        Error::Recovery(RecoveryError::SnapshotIo { source, .. }) => source.raw_os_error(),
        Error::Persistence(WalError::Poisoned { .. }) => return,
        other => panic!("{what}: untyped or unexpected error: {other:?}"),
    };
    assert_eq!(
        os, code,
        "{what}: the error does not carry the injected fault: {e:?}"
    );
    run.fault_seen = true;
}

/// One commit: a create (first) or a ~5 KiB value. Enforces the poison rule.
async fn commit(m: &ContextManager, i: u64, run: &mut Run, code: Option<i32>, what: &str) {
    let update = if i == 1 {
        Update::new().create("c").set("c", "k1", &value(1))
    } else {
        Update::new().set("c", format!("k{i}"), &value(i))
    };
    let r = m.update(update.expect("encodes")).await;
    let what = format!("{what}: commit {i}");
    match r {
        Ok(r) => {
            assert!(
                !run.poisoned,
                "{what}: acknowledged after the log was poisoned"
            );
            run.acked.push((r.offset.0, i));
        }
        Err(e) => {
            check_typed(&e, code, run, &what);
            if matches!(e, Error::Persistence(WalError::Poisoned { .. })) {
                assert!(run.poisoned, "{what}: poisoned without an I/O error first");
                run.refused_poisoned += 1;
            } else {
                assert!(
                    !run.poisoned,
                    "{what}: an I/O error after the poison: {e:?}"
                );
                run.poisoned = true;
            }
        }
    }
}

/// The scenario; `mark` is called at the end of each phase. Returns the open manager (if open
/// succeeded) and what happened. `code` is the injected OS error (`None`: the dry run).
async fn scenario(
    mem: &MemStorage,
    code: Option<i32>,
    what: &str,
    mut mark: impl FnMut(Phase),
) -> (Option<ContextManager>, Run) {
    let mut run = Run::default();
    let m = match create_manager_with_config(mem_config(mem)).await {
        Ok(m) => m,
        Err(e) => {
            check_typed(&e, code, &mut run, &format!("{what}: open"));
            run.errors.push((Phase::Open, e.to_string()));
            return (None, run);
        }
    };
    mark(Phase::Open);
    for i in 1..=25 {
        commit(&m, i, &mut run, code, what).await;
    }
    mark(Phase::Commits1);
    if let Err(e) = m.snapshot_now().await {
        check_typed(&e, code, &mut run, &format!("{what}: snapshot"));
        run.errors.push((Phase::Snapshot, e.to_string()));
    }
    mark(Phase::Snapshot);
    for i in 26..=30 {
        commit(&m, i, &mut run, code, what).await;
    }
    mark(Phase::Commits2);
    match m.compact(Offset(u64::MAX)).await {
        Ok(removed) => assert!(code.is_some() || removed.len() == 2, "{removed:?}"),
        Err(e) => {
            check_typed(&e, code, &mut run, &format!("{what}: compact"));
            // Removing segments and syncing the directory touch no record; the Compacted
            // commit is a commit like any other.
            let log_op = match &e {
                Error::Persistence(WalError::Io { op, .. }) => {
                    !matches!(*op, "remove" | "sync directory")
                }
                _ => false,
            };
            if log_op && !run.poisoned {
                run.poisoned = true;
            } else if matches!(e, Error::Persistence(WalError::Poisoned { .. })) {
                assert!(run.poisoned, "{what}: compact poisoned without a cause");
            }
            run.errors.push((Phase::Compact, e.to_string()));
        }
    }
    mark(Phase::Compact);
    for i in 31..=35 {
        commit(&m, i, &mut run, code, what).await;
    }
    mark(Phase::Commits3);
    (Some(m), run)
}

type Counts = BTreeMap<String, u64>;

fn counts(mem: &MemStorage) -> Counts {
    OPS.iter()
        .map(|op| (format!("{op:?}"), mem.op_count(*op)))
        .collect()
}

/// Op counts at the end of each phase of a fault-free run.
async fn dry_run() -> Vec<(Phase, Counts)> {
    let mem = MemStorage::new();
    let mut marks = Vec::new();
    let (m, run) = scenario(&mem, None, "dry run", |p| marks.push((p, counts(&mem)))).await;
    let m = m.expect("the dry run opens");
    assert_eq!(run.acked.len(), 35, "{run:?}");
    assert!(run.errors.is_empty(), "{run:?}");
    m.close().await.expect("close");
    marks.push((Phase::Close, counts(&mem)));
    marks
}

/// Reopens `storage`, checks it holds every acknowledged commit (and the context `had`, if
/// given), then creates the context `new`. Returns that commit's offset, or what failed.
async fn try_reopen(
    storage: MemStorage,
    acked: &[(u64, u64)],
    had: Option<&str>,
    new: &str,
) -> Result<u64, String> {
    let mut cfg = mem_config(&storage);
    cfg.storage = std::sync::Arc::new(storage);
    let m = create_manager_with_config(cfg)
        .await
        .map_err(|e| format!("reopen failed: {e:?}"))?;
    let (last, max) = (m.last_offset().0, acked.iter().map(|a| a.0).max());
    if last < max.unwrap_or(0) {
        return Err(format!("ends at {last} < {max:?}"));
    }
    for (offset, i) in acked {
        let got: Result<String, _> = m.get_as("c", &format!("k{i}"));
        if got.ok().as_deref() != Some(value(*i).as_str()) {
            return Err(format!("acknowledged commit {offset} (k{i}) lost"));
        }
    }
    if let Some(had) = had.filter(|h| m.get(h).is_err()) {
        return Err(format!("the acknowledged commit {had} was lost"));
    }
    let r = m
        .create(new)
        .await
        .map_err(|e| format!("no commit after reopen: {e:?}"))?;
    m.close().await.expect("close");
    Ok(r.offset.0)
}

/// [`try_reopen`], panicking with `what` on a failure.
async fn check_reopen(
    storage: MemStorage,
    acked: &[(u64, u64)],
    had: Option<&str>,
    new: &str,
    what: &str,
) {
    if let Err(e) = try_reopen(storage, acked, had, new).await {
        panic!("{what}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_point_fails_typed_poisons_the_log_and_loses_no_ack() {
    let marks = dry_run().await;
    let total = &marks.last().expect("close").1;
    let started = std::time::Instant::now();
    let mut tally: BTreeMap<String, u64> = BTreeMap::new();
    for op in OPS {
        let name = format!("{op:?}");
        for nth in 1..=total[&name] {
            // The phase the fault falls in.
            let phase = marks
                .iter()
                .find(|(_, c)| c[&name] >= nth)
                .map(|(p, _)| *p)
                .expect("within the run");
            for kind in [FaultKind::Eio, FaultKind::Enospc] {
                for sticky in [false, true] {
                    let what = format!("{op:?} #{nth} ({phase:?}) {kind:?} sticky={sticky}");
                    let mem = MemStorage::new();
                    mem.inject(op, nth, kind, sticky);
                    let (m, run) = scenario(&mem, Some(code(kind)), &what, |_| {}).await;
                    let images = [
                        ("power loss", mem.crash_image(CrashMode::DropUnsynced)),
                        ("process kill", mem.crash_image(CrashMode::ProcessKill)),
                    ];
                    if let Some(m) = m {
                        m.close().await.expect("close");
                    }
                    assert!(
                        run.fault_seen || phase == Phase::Close,
                        "{what}: the fault went unnoticed: {run:?}"
                    );
                    if !sticky && matches!(phase, Phase::Snapshot) {
                        assert!(!run.poisoned, "{what}: a snapshot fault poisoned the log");
                        assert_eq!(run.acked.len(), 35, "{what}: commits refused: {run:?}");
                    }
                    if !sticky
                        && matches!(phase, Phase::Commits1 | Phase::Commits2 | Phase::Commits3)
                    {
                        assert!(run.poisoned, "{what}: a log fault did not poison: {run:?}");
                    }
                    for (img_name, img) in images {
                        let what = format!("{what}, {img_name}");
                        check_reopen(img, &run.acked, None, "after", &what).await;
                    }
                    mem.clear_faults();
                    let reopened = format!("{what}, after close");
                    check_reopen(mem.clone(), &run.acked, None, "after", &reopened).await;
                    // And a power loss after that reopen (a process restarted in the same boot,
                    // then the power goes): it must keep what the reopened store showed and
                    // acknowledged.
                    let image = mem.crash_image(CrashMode::DropUnsynced);
                    let lost = format!("{reopened}, then a power loss");
                    check_reopen(image, &run.acked, Some("after"), "again", &lost).await;
                    *tally.entry("runs".into()).or_default() += 1;
                    *tally.entry(format!("points_{name}")).or_default() +=
                        u64::from(!sticky && kind == FaultKind::Eio);
                    *tally.entry("runs_poisoned".into()).or_default() += u64::from(run.poisoned);
                    *tally.entry("commits_refused_poisoned".into()).or_default() +=
                        run.refused_poisoned;
                    *tally
                        .entry("acked_commits_checked_after_reopen".into())
                        .or_default() += 3 * run.acked.len() as u64;
                }
            }
        }
    }
    for (k, v) in &tally {
        figure(TEST, k, v);
    }
    figure(
        TEST,
        "seconds",
        format!("{:.1}", started.elapsed().as_secs_f64()),
    );
}

/// A snapshot whose last step, the sync of `snapshots/` after the rename, failed is not durable:
/// `snapshot_now` said so. Compaction must not count on it. Found by the sweep above: the
/// compaction removed the segments before it, durably, and after a power loss the store had
/// neither those segments nor the snapshot, and open failed (`OffsetOutOfRange`). Fixed:
/// `compact` now syncs `snapshots/` before it relies on a snapshot (and holds the snapshot
/// lock, so that no snapshot is between its rename and its directory sync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_never_relies_on_a_snapshot_that_is_not_durable() {
    let mem = MemStorage::new();
    let m = create_manager_with_config(mem_config(&mem))
        .await
        .expect("open");
    let mut run = Run::default();
    for i in 1..=25 {
        commit(&m, i, &mut run, None, "setup").await;
    }
    // snapshot::write syncs the store directory (creating snapshots/), then snapshots/ after
    // the rename: fail the second.
    mem.inject(FaultOp::SyncDir, 2, FaultKind::Eio, false);
    let snap = m.snapshot_now().await;
    assert!(
        snap.is_err(),
        "the snapshot reports the failed directory sync: {snap:?}"
    );
    let removed = m.compact(Offset(u64::MAX)).await;
    for i in 26..=30 {
        commit(&m, i, &mut run, None, "after").await;
    }
    let image = mem.crash_image(CrashMode::DropUnsynced);
    m.close().await.expect("close");
    eprintln!("compaction removed {removed:?}");
    let what = "power loss after compacting behind a non-durable snapshot";
    check_reopen(image, &run.acked, None, "after", what).await;
}

/// Found by the sweep's power loss after a reopen: a new segment is created (`create`, header,
/// zeros, `fdatasync`) and only then its directory entry synced. When that directory sync
/// failed (here when open creates the first segment; the same at a rotation, or when the
/// process is killed between the two), a reopen in the same boot took the segment as the
/// active one and appended to it, each commit's `fdatasync` making its bytes durable but never
/// the file's directory entry: after a power loss the segment was gone with every acknowledged
/// commit in it. Fixed: open syncs `wal/` before appending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopen_makes_the_segment_it_appends_to_durable() {
    let mem = MemStorage::new();
    // Open syncs the store directory (for wal/), then wal/ after creating the first segment.
    mem.inject(FaultOp::SyncDir, 2, FaultKind::Eio, false);
    let r = create_manager_with_config(mem_config(&mem)).await;
    assert!(
        matches!(
            &r,
            Err(Error::Persistence(WalError::Io {
                op: "sync directory",
                ..
            }))
        ),
        "{r:?}"
    );
    // The process restarts; the disk is healthy again. Commits are acknowledged.
    let run = Run::default();
    check_reopen(mem.clone(), &run.acked, None, "after", "reopen").await;
    let image = mem.crash_image(CrashMode::DropUnsynced);
    check_reopen(image, &run.acked, Some("after"), "again", "power loss").await;
}

/// Found by the sweep's power loss after a reopen, after the fix for records whose sync failed
/// (a poisoned run leaves a marker; the next open writes the active segment's records again):
/// when the `fdatasync` that fails is the one of a new segment's header and preallocation (the
/// first segment, at open; or the next one, at a rotation), the header bytes stay readable but
/// never reach the disk. A reopen in the same boot reads the header, appends acknowledged
/// commits after it and syncs them; after a power loss the header is zeros and open refuses the
/// store (`BadHeader { source: BadMagic { found: [0; 8] } }`), its acknowledged commits with it.
/// Fixed: a segment whose creation fails is removed again, and a poisoned run's marker makes
/// the next open write the active segment's header and records again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_whose_creation_sync_failed_survives_a_reopen() {
    let mem = MemStorage::new();
    // The first fdatasync of a new store is the first segment's (header and zeros).
    mem.inject(FaultOp::Sync, 1, FaultKind::Eio, false);
    let r = create_manager_with_config(mem_config(&mem)).await;
    assert!(
        matches!(
            &r,
            Err(Error::Persistence(WalError::Io {
                op: "fdatasync",
                ..
            }))
        ),
        "{r:?}"
    );
    let run = Run::default();
    check_reopen(mem.clone(), &run.acked, None, "after", "reopen").await;
    let image = mem.crash_image(CrashMode::DropUnsynced);
    check_reopen(image, &run.acked, Some("after"), "again", "power loss").await;
}
