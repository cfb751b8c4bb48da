//! Bad, foreign and failed snapshots: a damaged snapshot or one from another store is skipped
//! (an older one or full replay used instead, `state_at` too), and a snapshot that fails to
//! write is reported and changes nothing else. Close snapshots a long tail, so that a clean
//! restart replays next to nothing.

mod engine_errors_support;

use ctxlog::state::State;
use ctxlog::storage::{CrashMode, FaultKind, FaultOp, MemStorage, OpenMode, Storage};
use ctxlog::Offset;
use engine_errors_support::{assert_same, config, open, snapshot_files};
use std::path::Path;

fn read_file(storage: &dyn Storage, path: &Path) -> Vec<u8> {
    let file = storage.open(path, OpenMode::Read).unwrap();
    file.map().unwrap().bytes().to_vec()
}

fn write_file(storage: &dyn Storage, path: &Path, bytes: &[u8]) {
    let file = storage.open(path, OpenMode::CreateNew).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_data().unwrap();
    storage.sync_dir(path.parent().unwrap()).unwrap();
}

/// A store with two manual snapshots: returns the storage, the snapshot offsets, the final
/// state, and the state at every offset.
async fn store_with_snapshots(values: &str) -> (MemStorage, [Offset; 2], State, Vec<State>) {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.create("c").await.unwrap();
    for i in 0..10 {
        m.set("c", &format!("k{}", i % 4), &format!("{values}{i}"))
            .await
            .unwrap();
    }
    let first = m.snapshot_now().await.unwrap();
    for i in 10..20 {
        m.set("c", &format!("k{}", i % 4), &format!("{values}{i}"))
            .await
            .unwrap();
    }
    let second = m.snapshot_now().await.unwrap();
    for i in 20..25 {
        m.set("c", &format!("k{}", i % 4), &format!("{values}{i}"))
            .await
            .unwrap();
    }
    let mut at = Vec::new();
    for k in 0..=m.last_offset().0 {
        at.push(m.state_at(Offset(k)).await.unwrap());
    }
    let state = (*m.state()).clone();
    m.close().await.unwrap();
    (mem, [first, second], state, at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_snapshot_is_skipped() {
    let (mem, [first, second], state, at) = store_with_snapshots("v").await;
    let files = snapshot_files(&mem);
    assert_eq!(files.len(), 2);
    let newest = files[1].clone();
    let len = read_file(&mem, &newest).len() as u64;
    assert!(newest.ends_with(format!("{:020}.snap", second.0)));

    // Flip one byte: in the header, in the body, in the trailer.
    for pos in [3, 40, len / 2, len - 5, len - 1] {
        let copy = mem.crash_image(CrashMode::ProcessKill);
        let byte = read_file(&copy, &newest)[pos as usize];
        copy.corrupt(&newest, pos, &[byte ^ 0x40]).unwrap();
        let m = open(&copy).await;
        let report = m.open_report();
        assert!(
            report.skipped_snapshots.iter().any(|s| s.file == newest),
            "byte {pos}: {report:?}"
        );
        assert_eq!(
            report.snapshot,
            Some(first),
            "byte {pos}: the older one is used"
        );
        assert_same(&m.state(), &state, &format!("byte {pos}"));
        for k in [first.0, second.0, second.0 + 2] {
            let s = m.state_at(Offset(k)).await.unwrap();
            assert_same(&s, &at[k as usize], &format!("byte {pos}: state_at({k})"));
        }
        m.close().await.unwrap();
    }

    // Both damaged: full replay.
    let copy = mem.crash_image(CrashMode::ProcessKill);
    for f in &files {
        copy.corrupt(f, 50, b"garbage").unwrap();
    }
    let m = open(&copy).await;
    assert_eq!(m.open_report().snapshot, None);
    assert_eq!(m.open_report().skipped_snapshots.len(), 2);
    assert_same(&m.state(), &state, "reopen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_from_another_store_is_skipped() {
    let (ours, [first, second], state, _) = store_with_snapshots("ours").await;
    let (theirs, [_, their_second], _, _) = store_with_snapshots("theirs").await;
    assert_eq!(second, their_second, "the same offsets, different contents");
    // Replace our newest snapshot by theirs, under the same name.
    let name = snapshot_files(&ours)[1].clone();
    let foreign = read_file(&theirs, &snapshot_files(&theirs)[1]);
    ours.remove(&name).unwrap();
    write_file(&ours, &name, &foreign);

    let m = open(&ours).await;
    let report = m.open_report();
    let skipped = report
        .skipped_snapshots
        .iter()
        .find(|s| s.file == name)
        .unwrap_or_else(|| panic!("not skipped: {report:?}"));
    assert!(skipped.reason.contains("another store"), "{skipped:?}");
    assert_eq!(report.snapshot, Some(first));
    assert_same(&m.state(), &state, "reopen");
    assert_eq!(m.get_as::<String>("c", "k0").unwrap(), "ours24");
    // state_at skips it too.
    let at = m.state_at(second).await.unwrap();
    assert_eq!(
        at.context("c")
            .unwrap()
            .get("k3")
            .unwrap()
            .decode::<String>()
            .unwrap(),
        "ours19"
    );
}

/// A snapshot that fails to write is reported and changes nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_snapshot_changes_nothing() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.create("c").await.unwrap();
    m.set("c", "k", &1).await.unwrap();
    for op in [FaultOp::Write, FaultOp::Sync, FaultOp::Rename] {
        mem.inject(op, 1, FaultKind::Enospc, false);
        let r = m.snapshot_now().await;
        assert!(r.is_err(), "{op:?}: {r:?}");
        mem.clear_faults();
        m.set("c", "k", &2).await.unwrap();
    }
    assert!(
        snapshot_files(&mem).is_empty(),
        "a failed snapshot left a file"
    );
    let state = m.state();
    m.close().await.unwrap();
    let m = open(&mem).await;
    assert_eq!(m.open_report().snapshot, None);
    assert_same(&m.state(), &state, "reopen after failed snapshots");
}

/// Snapshot files, none if the folder was never made.
fn snapshots(mem: &MemStorage) -> usize {
    match mem.list(Path::new("store/snapshots")) {
        Ok(_) => snapshot_files(mem).len(),
        Err(_) => 0,
    }
}

/// Opens with snapshots every 160 commits (close snapshots a tail of 10 or more).
async fn open_every_160(mem: &MemStorage, at_close: bool) -> ctxlog::ContextManager {
    let mut c = config(mem);
    c.snapshot_every_commits = Some(160);
    c.snapshot_at_close = at_close;
    ctxlog::create_manager_with_config(c).await.unwrap()
}

/// [`open_every_160`], then context `c` created and `n` commits of sets to it.
async fn filled(mem: &MemStorage, at_close: bool, n: u64) -> ctxlog::ContextManager {
    let m = open_every_160(mem, at_close).await;
    m.create("c").await.unwrap();
    for i in 0..n {
        m.set("c", &format!("k{}", i % 3), &i).await.unwrap();
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_snapshots_a_long_tail_and_reopen_replays_nothing() {
    let mem = MemStorage::new();
    let m = filled(&mem, true, 12).await;
    let (state, last) = ((*m.state()).clone(), m.last_offset());
    m.close().await.unwrap();
    assert_eq!(snapshots(&mem), 1, "close wrote one snapshot");
    let m = open_every_160(&mem, true).await;
    assert_eq!(m.open_report().snapshot, Some(last));
    assert_eq!(m.open_report().replayed, 0);
    assert_same(&m.state(), &state, "reopen from the close snapshot");
    // Nothing new since: the next close writes nothing.
    m.close().await.unwrap();
    assert_eq!(snapshots(&mem), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_leaves_a_short_tail_or_a_disabled_option_alone() {
    for (n, at_close) in [(5, true), (12, false)] {
        let mem = MemStorage::new();
        let m = filled(&mem, at_close, n).await;
        let state = (*m.state()).clone();
        m.close().await.unwrap();
        assert!(snapshots(&mem) == 0, "{n} commits, at_close {at_close}");
        let m = open_every_160(&mem, at_close).await;
        assert_eq!(m.open_report().replayed, n + 1);
        assert_same(&m.state(), &state, "reopen by replay");
        m.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_after_a_failed_commit_writes_no_snapshot() {
    let mem = MemStorage::new();
    let m = filled(&mem, true, 12).await;
    mem.inject(FaultOp::Sync, 1, FaultKind::Eio, false);
    assert!(
        m.set("c", "k", &"lost").await.is_err(),
        "the failed sync is reported"
    );
    m.close().await.unwrap();
    mem.clear_faults();
    assert!(snapshots(&mem) == 0, "a failed log got a snapshot at close");
}
