//! Errors and damaged files: bad input writes nothing, limits are typed errors, a second opener
//! is locked out, bad or foreign snapshots are skipped, compaction keeps what it promises.

use ctxlog::error::{Error, InvalidInput};
use ctxlog::event::Labels;
use ctxlog::state::State;
use ctxlog::storage::{CrashMode, FaultKind, FaultOp, MemStorage, OpenMode, Storage};
use ctxlog::wal::WalError;
use ctxlog::{create_manager, create_manager_with_config, Config, ContextManager, Offset, Update};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn config(mem: &MemStorage) -> Config {
    let mut c = Config::new("store");
    c.storage = Arc::new(mem.clone());
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c.value_bytes_max = 4096;
    c.snapshot_every_commits = None;
    c.snapshot_every_bytes = None;
    c
}

async fn open(mem: &MemStorage) -> ContextManager {
    create_manager_with_config(config(mem))
        .await
        .expect("open the store")
}

/// Panics with a short description (not two whole states) if `a != b`.
#[track_caller]
fn assert_same(a: &State, b: &State, what: &str) {
    if a == b {
        return;
    }
    let names: std::collections::BTreeSet<&str> = a
        .all_contexts()
        .chain(b.all_contexts())
        .map(|(n, _)| n)
        .collect();
    let differ: Vec<&str> = names
        .into_iter()
        .filter(|n| a.context_any(n) != b.context_any(n))
        .collect();
    panic!(
        "{what}: states differ: offsets {} / {}, contexts {differ:?}, points {:?} / {:?}, \
         current {:?} / {:?}",
        a.offset(),
        b.offset(),
        a.recovery_points(),
        b.recovery_points(),
        a.current(),
        b.current()
    );
}

fn snapshot_files(mem: &MemStorage) -> Vec<PathBuf> {
    let dir = Path::new("store/snapshots");
    let mut files: Vec<PathBuf> = mem
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".snap"))
        .map(|n| dir.join(n))
        .collect();
    files.sort();
    files
}

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

fn is_context_name(r: &Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(
        r,
        Err(Error::InvalidInput(InvalidInput::ContextName { .. }))
    )
}

fn is_key(r: &Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(r, Err(Error::InvalidInput(InvalidInput::Key { .. })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_keys_and_labels_write_nothing() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.create("ok").await.unwrap();
    m.set("ok", "k", &1).await.unwrap();
    let before = m.state();
    let last = m.last_offset();

    let bad_names = [
        String::new(),
        "n".repeat(256),
        "é".repeat(128), // 256 bytes
        "nul\0".to_string(),
        "tab\tname".to_string(),
        "line\nbreak".to_string(),
        "del\u{7f}".to_string(),
    ];
    for name in &bad_names {
        let n = name.as_str();
        assert!(is_context_name(&m.create(n).await), "create {n:?}");
        assert!(is_context_name(&m.set(n, "k", &1).await), "set {n:?}");
        assert!(is_context_name(&m.remove(n, "k").await), "remove {n:?}");
        assert!(is_context_name(&m.delete(n).await), "delete {n:?}");
        let meta = m.set_metadata(n, Labels::new(), vec![]).await;
        assert!(is_context_name(&meta), "set_metadata {n:?}");
        let expecting = Update::new()
            .set("ok", "k", &2)
            .unwrap()
            .expect(n, Offset::ZERO);
        assert!(is_context_name(&m.update(expecting).await), "expect {n:?}");
        assert!(is_context_name(&m.get(n)), "get {n:?}");
        assert!(is_context_name(&m.history(n).await), "history {n:?}");
    }
    let bad_keys = [String::new(), "k".repeat(1025), "bell\u{7}".to_string()];
    for key in &bad_keys {
        let k = key.as_str();
        assert!(is_key(&m.set("ok", k, &1).await), "set key {k:?}");
        assert!(is_key(&m.remove("ok", k).await), "remove key {k:?}");
        assert!(is_key(&m.get_value("ok", k)), "get key {k:?}");
        // A bad operation anywhere in a batch refuses the whole batch.
        let batch = Update::new()
            .set("ok", "k", &3)
            .and_then(|u| u.set("ok", k, &3))
            .unwrap();
        assert!(is_key(&m.update(batch).await), "batch with key {k:?}");
    }
    let long = "v".repeat(1025);
    let bad_labels: [(&str, &str); 3] = [("", "v"), ("l", &long), ("ctl\u{1b}", "v")];
    for (label, value) in bad_labels {
        let labels = Labels::from([(label.to_string(), value.to_string())]);
        let r = m.set_metadata("ok", labels.clone(), vec![]).await;
        assert!(
            matches!(r, Err(Error::InvalidInput(InvalidInput::Label { .. }))),
            "{r:?}"
        );
        let r = m.create_with_labels("new", labels).await;
        assert!(
            matches!(r, Err(Error::InvalidInput(InvalidInput::Label { .. }))),
            "{r:?}"
        );
    }
    assert!(matches!(
        m.update(Update::new()).await,
        Err(Error::InvalidInput(InvalidInput::EmptyUpdate))
    ));
    for label in ["", "bad\nlabel"] {
        assert!(matches!(
            m.create_recovery_point(label).await,
            Err(Error::InvalidInput(InvalidInput::RecoveryPointLabel { .. }))
        ));
    }
    assert_eq!(m.last_offset(), last, "refused input reached the log");
    assert_eq!(m.log().last_offset(), last);
    assert_same(&m.state(), &before, "refusals");

    // The limits themselves are allowed.
    let longest = "n".repeat(255);
    m.create(&longest).await.unwrap();
    m.set(&longest, &"k".repeat(1024), &1).await.unwrap();
    m.create("ünïcødé name with spaces").await.unwrap();
    assert_eq!(m.last_offset(), Offset(last.0 + 3));
    let after = m.state();
    m.close().await.unwrap();
    assert_same(&open(&mem).await.state(), &after, "reopen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_and_record_limits() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.create("c").await.unwrap();
    let last = m.last_offset();

    // A MessagePack string of n >= 256 bytes takes n + 3 bytes.
    match m.set("c", "big", &"x".repeat(4094)).await {
        Err(Error::InvalidInput(InvalidInput::ValueTooLarge {
            context,
            key,
            len,
            max,
        })) => {
            assert_eq!((context.as_str(), key.as_str()), ("c", "big"));
            assert_eq!((len, max), (4097, 4096));
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    assert_eq!(m.last_offset(), last);
    m.set("c", "largest", &"x".repeat(4093)).await.unwrap();
    let last = m.last_offset();
    let before = m.state();

    // Each value fits, the commit does not: a typed error from the log, nothing written, and
    // the log is not poisoned.
    let mut batch = Update::new();
    for i in 0..5 {
        batch = batch.set("c", format!("v{i}"), &"y".repeat(4000)).unwrap();
    }
    match m.update(batch).await {
        Err(Error::Persistence(WalError::RecordTooLarge { len, max })) => {
            assert_eq!(max, 16 * 1024);
            assert!(len > max, "{len}");
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert_eq!(m.last_offset(), last);
    assert_same(&m.state(), &before, "refusals");
    let r = m.set("c", "after", &1).await.unwrap();
    assert_eq!(r.offset, last.next(), "the refused commit took no offset");

    // A restore whose one commit would exceed the limit fails the same way, cleanly.
    let point = m.create_recovery_point("full").await.unwrap();
    for i in 0..4 {
        m.set("c", &format!("w{i}"), &"z".repeat(4000))
            .await
            .unwrap();
    }
    m.delete("c").await.unwrap();
    let last = m.last_offset();
    let restore = m.restore(Offset(point.0 + 4)).await;
    assert!(
        matches!(
            restore,
            Err(Error::Persistence(WalError::RecordTooLarge { .. }))
        ),
        "{restore:?}"
    );
    assert_eq!(m.last_offset(), last);
    m.restore("full").await.unwrap();
    assert_eq!(m.get_as::<String>("c", "largest").unwrap().len(), 4093);

    let after = m.state();
    m.close().await.unwrap();
    assert_same(&open(&mem).await.state(), &after, "reopen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_points_and_offsets_out_of_range() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.create("c").await.unwrap();
    let p = m.create_recovery_point("p").await.unwrap();
    m.set("c", "k", &1).await.unwrap();
    let last = m.last_offset();

    for r in [
        m.state_at("nope").await.map(|s| s.offset()),
        m.restore("nope").await.map(|r| r.offset),
    ] {
        assert!(
            matches!(&r, Err(Error::UnknownRecoveryPoint { label }) if label == "nope"),
            "{r:?}"
        );
    }
    for at in [last.0 + 1, last.0 + 100, u64::MAX] {
        let r = m.state_at(Offset(at)).await.map(|s| s.offset());
        match r {
            Err(Error::OffsetOutOfRange {
                requested, last: l, ..
            }) => {
                assert_eq!((requested, l), (Offset(at), last));
            }
            other => panic!("state_at({at}): expected OffsetOutOfRange, got {other:?}"),
        }
        assert!(matches!(
            m.restore(Offset(at)).await,
            Err(Error::OffsetOutOfRange { .. })
        ));
    }
    match m.create_recovery_point("p").await {
        Err(Error::RecoveryPointExists { label, offset }) => {
            assert_eq!((label.as_str(), offset), ("p", p));
        }
        other => panic!("expected RecoveryPointExists, got {other:?}"),
    }
    assert_eq!(m.last_offset(), last, "refusals wrote something");
    assert_eq!(m.state_at("p").await.unwrap().offset(), p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_in_one_process_is_locked() {
    // Simulated storage.
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.create("c").await.unwrap();
    match create_manager_with_config(config(&mem)).await {
        Err(Error::Locked { path, .. }) => assert!(path.ends_with("LOCK"), "{path:?}"),
        other => panic!("expected Locked, got {other:?}"),
    }
    m.set("c", "k", &1).await.unwrap();
    m.close().await.unwrap();
    let again = open(&mem).await;
    assert_eq!(again.get_as::<i32>("c", "k").unwrap(), 1);
    again.close().await.unwrap();

    // Real files: the lock is per open file, so a second handle in the same process is refused.
    let dir = tempfile::tempdir().unwrap();
    let m = create_manager(dir.path()).await.unwrap();
    m.create("c").await.unwrap();
    match create_manager(dir.path()).await {
        Err(Error::Locked { path, holder }) => {
            assert_eq!(path, dir.path().join("LOCK"));
            let holder = holder.expect("the holder is recorded");
            assert!(
                holder.contains(&format!("pid={}", std::process::id())),
                "{holder}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    m.set("c", "k", &2).await.unwrap();
    m.close().await.unwrap();
    let again = create_manager(dir.path()).await.unwrap();
    assert_eq!(again.get_as::<i32>("c", "k").unwrap(), 2);
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

/// Fills a store with `n` commits of ~1 KiB (about 60 per 64 KiB segment); returns the state
/// at every offset.
async fn fill(m: &ContextManager, n: u64) -> Vec<State> {
    m.create("c").await.unwrap();
    for i in 1..n {
        m.set("c", &format!("k{}", i % 7), &format!("{i:>1000}"))
            .await
            .unwrap();
    }
    let mut at = Vec::new();
    for k in 0..=m.last_offset().0 {
        at.push(m.state_at(Offset(k)).await.unwrap());
    }
    at
}

fn segment_firsts(m: &ContextManager) -> Vec<u64> {
    m.log().segments().iter().map(|(o, _)| o.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_keeps_the_oldest_snapshot_and_point() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let at = fill(&m, 250).await;
    let segments = segment_firsts(&m);
    assert!(segments.len() >= 4, "{segments:?}");

    // No snapshot yet: nothing can go.
    assert!(m.compact(m.last_offset()).await.unwrap().is_empty());

    let snap = m.snapshot_now().await.unwrap(); // 250
    let point = m.create_recovery_point("keep").await.unwrap(); // 251
    m.set("c", "after", &1).await.unwrap();
    let mut at = at;
    for k in at.len() as u64..=m.last_offset().0 {
        at.push(m.state_at(Offset(k)).await.unwrap());
    }
    let limit = (snap.0 + 1).min(point.0);

    // `before` bounds it too: no snapshot at or before `before - 1`, so nothing can go (the
    // compacted log must start right after a snapshot).
    let early = Offset(segments[1] + 1);
    let removed = m.compact(early).await.unwrap();
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(segment_firsts(&m)[0], segments[0]);

    let removed = m.compact(m.last_offset()).await.unwrap();
    assert!(!removed.is_empty(), "compaction removed nothing");
    let first = segment_firsts(&m)[0];
    assert!(
        first <= limit,
        "removed records at or after {limit}: first is {first}"
    );
    // Exactly the segments wholly before the limit went.
    let kept: Vec<u64> = segments
        .iter()
        .zip(segments.iter().skip(1).map(Some).chain([None]))
        .filter(|(_, next)| next.is_none_or(|n| *n > limit))
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(segment_firsts(&m)[..kept.len()], kept[..]);
    // The compaction point is right after its base snapshot; the first kept segment may start
    // a little earlier (segments go whole).
    assert_eq!(m.state().compacted_before(), snap.next());

    // Offsets from the snapshot on are still readable, from the snapshot, the point and the log.
    for k in snap.0..at.len() as u64 {
        let s = m.state_at(Offset(k)).await.unwrap();
        assert_same(&s, &at[k as usize], &format!("state_at({k})"));
    }
    assert_eq!(m.state_at("keep").await.unwrap().offset(), point);
    m.restore("keep").await.unwrap();
    // Offsets before the first kept record are refused.
    assert!(matches!(
        m.state_at(Offset(1)).await,
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(!m.history("c").await.unwrap().is_empty());
    // Reading commits that are gone is refused (the log's error, not a silent gap).
    let gone = m.events(Offset(1)).await;
    assert!(
        matches!(
            gone,
            Err(Error::OffsetOutOfRange { .. })
                | Err(Error::Persistence(WalError::OffsetOutOfRange { .. }))
        ),
        "{:?}",
        gone.map(|c| c.len())
    );
    let kept_commits = m.events(Offset(first)).await.unwrap();
    assert_eq!(kept_commits.first().map(|c| c.offset), Some(Offset(first)));

    let state = m.state();
    m.close().await.unwrap();
    let m = open(&mem).await;
    assert_same(&m.state(), &state, "reopen");
    assert_eq!(segment_firsts(&m)[0], first);
    for k in snap.0..at.len() as u64 {
        let s = m.state_at(Offset(k)).await.unwrap();
        assert_same(&s, &at[k as usize], &format!("after reopen: state_at({k})"));
    }
}

/// A recovery point older than the oldest snapshot: compaction must keep what `state_at` of
/// that point needs (a snapshot at or before it, or the log from the start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_keeps_old_recovery_points_readable() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let at = fill(&m, 100).await;
    let point = m.create_recovery_point("old").await.unwrap(); // 101
    let at_point = m.state_at(point).await.unwrap();
    let _ = fill_more(&m, 150).await;
    m.snapshot_now().await.unwrap(); // ~251, newer than the point
                                     // No snapshot at or before the point: compaction keeps everything.
    let removed = m.compact(m.last_offset()).await.unwrap();
    assert!(removed.is_empty(), "{removed:?}");
    let s = m.state_at("old").await;
    assert!(
        s.as_ref().is_ok_and(|s| *s == at_point),
        "state_at(recovery point {point}) after compaction: {:?}",
        s.map(|s| s.offset())
    );
    let r = m.restore("old").await;
    assert!(r.is_ok(), "restore to a kept recovery point: {r:?}");
    // The restored values are those of the point (the restore itself is a newer change).
    let values = |c: &ctxlog::state::ContextState| {
        c.values()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        values(&m.get("c").unwrap()),
        values(at[100].context("c").unwrap())
    );
}

/// Later snapshots prune the one compaction kept: `state_at` must still serve the offsets the
/// store says it has (`resolve` accepts them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_range_stays_readable_after_snapshot_pruning() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let mut at = fill(&m, 250).await;
    let snap = m.snapshot_now().await.unwrap();
    let removed = m.compact(m.last_offset()).await.unwrap();
    assert!(!removed.is_empty());
    at.push((*m.state()).clone()); // the compaction's own commit
                                   // Three more snapshots; the store keeps three, so the one compaction relied on goes.
    for round in 0..3 {
        for i in 0..5 {
            m.set("c", &format!("r{round}"), &i).await.unwrap();
            // The live state is the state at its offset.
            at.push((*m.state()).clone());
        }
        m.snapshot_now().await.unwrap();
    }
    assert_eq!(at.len() as u64, m.last_offset().0 + 1);
    for k in snap.0..=m.last_offset().0 {
        let s = m.state_at(Offset(k)).await;
        assert!(
            s.as_ref().is_ok_and(|s| *s == at[k as usize]),
            "state_at({k}) after compaction at {snap} and pruning: {:?}",
            s.map(|s| s.offset())
        );
    }
}

async fn fill_more(m: &ContextManager, n: u64) -> Offset {
    for i in 0..n {
        m.set("c", &format!("m{}", i % 7), &format!("{i:>1000}"))
            .await
            .unwrap();
    }
    m.last_offset()
}

/// An I/O failure at any write or sync of the commit path: the commit that hit it fails with a
/// persistence error, later ones are refused (the log is poisoned) instead of acknowledged,
/// readers never see the failed commit, and a power loss afterwards keeps every acknowledged
/// commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_failure_loses_no_acknowledged_commit() {
    for op in [FaultOp::Sync, FaultOp::Write] {
        let mut failures = 0;
        for nth in 1..=30 {
            let what = format!("{op:?} #{nth}");
            let mem = MemStorage::new();
            let m = open(&mem).await;
            m.create("c").await.unwrap();
            mem.inject(op, nth, FaultKind::Eio, false);
            let mut acked = Vec::new();
            let mut failed = false;
            for i in 0..25u64 {
                let value = format!("{i:>2000}"); // ~30 commits per segment: rotations too
                match m.set("c", &format!("k{i}"), &value).await {
                    Ok(r) => acked.push((r.offset, i)),
                    Err(Error::Persistence(_)) => {
                        failed = true;
                        break;
                    }
                    Err(e) => panic!("{what}: expected a persistence error, got {e:?}"),
                }
            }
            let last_acked = acked.last().map_or(Offset(1), |(o, _)| *o);
            assert_eq!(
                m.last_offset(),
                last_acked,
                "{what}: readers see a failed commit"
            );
            if failed {
                failures += 1;
                let later = m.set("c", "later", &1).await;
                assert!(
                    matches!(later, Err(Error::Persistence(WalError::Poisoned { .. }))),
                    "{what}: after a failure: {later:?}"
                );
            }
            let image = mem.crash_image(CrashMode::DropUnsynced);
            m.close().await.unwrap();
            let m2 = open(&image).await;
            assert!(
                m2.last_offset() >= last_acked,
                "{what}: acknowledged commit lost"
            );
            for (offset, i) in &acked {
                let v: String = m2.get_as("c", &format!("k{i}")).unwrap();
                assert_eq!(v.trim_start(), i.to_string(), "{what}: offset {offset}");
            }
            // The store works again after reopening.
            m2.set("c", "again", &1).await.unwrap();
            m2.close().await.unwrap();
        }
        assert!(failures >= 20, "{op:?}: only {failures} runs hit the fault");
    }
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

fn listing(mem: &MemStorage) -> Vec<String> {
    let mut names = Vec::new();
    for dir in ["store/wal", "store/snapshots"] {
        if mem.exists(Path::new(dir)) {
            for name in mem.list(Path::new(dir)).unwrap() {
                names.push(format!("{dir}/{name}"));
            }
        }
    }
    names
}

/// Writes through a closed handle are refused and leave the files alone (another handle may own
/// the store by then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_handle_refuses_writes() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let _ = fill(&m, 150).await;
    m.snapshot_now().await.unwrap();
    m.close().await.unwrap();
    let files = listing(&mem);
    let closed = |r: &Result<ctxlog::Receipt, Error>| matches!(r, Err(Error::Closed));
    assert!(closed(&m.set("c", "k", &1).await));
    assert!(closed(&m.restore(Offset(3)).await));
    assert!(matches!(
        m.create_recovery_point("p").await,
        Err(Error::Closed)
    ));
    assert_eq!(listing(&mem), files, "refused commits changed files");
    // Reads still answer from memory and the log.
    assert!(m.get("c").is_ok());
    assert!(m.state_at(Offset(3)).await.is_ok());
}

/// Compaction and snapshots through a closed handle: they touch files directly, so they must be
/// refused once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_handle_refuses_compaction_and_snapshots() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let _ = fill(&m, 150).await;
    m.snapshot_now().await.unwrap();
    m.close().await.unwrap();
    // Another handle owns the store now.
    let owner = open(&mem).await;
    let files = listing(&mem);
    let compacted = m.compact(m.last_offset()).await;
    let after_compact = listing(&mem);
    let snapshot = m.snapshot_now().await;
    let after_snapshot = listing(&mem);
    let gone: Vec<&String> = files
        .iter()
        .filter(|f| !after_compact.contains(f))
        .collect();
    let added: Vec<&String> = after_snapshot
        .iter()
        .filter(|f| !after_compact.contains(f))
        .collect();
    assert!(
        matches!(compacted, Err(Error::Closed)) && matches!(snapshot, Err(Error::Closed)),
        "compact: {compacted:?} (removed {gone:?}), snapshot_now: {snapshot:?} (added {added:?})"
    );
    assert!(
        gone.is_empty() && added.is_empty(),
        "removed {gone:?}, added {added:?}"
    );
    // The owner can still serve what its log had.
    assert!(owner.events(Offset(1)).await.is_ok());
    owner.close().await.unwrap();
}
