//! Errors: bad input writes nothing, limits are typed errors, unknown recovery points and
//! offsets out of range are refused, a second opener is locked out, an I/O failure loses no
//! acknowledged commit, and a closed handle refuses writes. Damaged and failed snapshots are in
//! `engine_snapshots`, compaction in `engine_compaction`.

mod engine_errors_support;

use ctxlog::error::{Error, InvalidInput};
use ctxlog::event::Labels;
use ctxlog::storage::{CrashMode, FaultKind, FaultOp, MemStorage, Storage};
use ctxlog::wal::WalError;
use ctxlog::{create_manager, create_manager_with_config, Offset, Update};
use engine_errors_support::{assert_same, config, fill, open};
use std::path::Path;

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
