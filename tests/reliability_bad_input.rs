//! Bad input, one test per row of the table in `docs/RELIABILITY.md` ("Bad input"): what the
//! engine answers to invalid names and keys, oversized values and records, files it did not
//! write or that are damaged, a second opener, a read-only directory, a full disk, and a future
//! dropped mid-commit. Each test asserts the exact error variant the table names, and that a
//! refusal wrote nothing.

#[macro_use]
mod reliability_support;

use ctxlog::error::{Error, InvalidInput, RecoveryError};
use ctxlog::storage::{CrashMode, FaultKind, FaultOp, MemStorage, Storage};
use ctxlog::wal::WalError;
use ctxlog::{create_manager, create_manager_with_config, ContextManager, Offset, Update};
use ctxlog_format::{encode_frame, FrameLayout, HeaderError};
use reliability_support::damage::{cut, put, segments};
use reliability_support::{chmod, describe, fs_config, mem_config, run_probe};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::task::Poll;

fn wal(name: &str) -> PathBuf {
    Path::new("store/wal").join(name)
}

const SEG1: &str = "00000000000000000001.seg";

async fn open(mem: &MemStorage) -> ctxlog::Result<ContextManager> {
    create_manager_with_config(mem_config(mem)).await
}

/// A closed store of `n` commits of ~`pad`-byte values (c/k1 ..= c/k{n-1}).
async fn store(n: u64, pad: usize) -> MemStorage {
    let mem = MemStorage::new();
    let m = open(&mem).await.expect("open");
    m.create("c").await.expect("create");
    for i in 1..n {
        m.set("c", &format!("k{i}"), &"x".repeat(pad))
            .await
            .expect("set");
    }
    m.close().await.expect("close");
    mem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_context_names_and_keys() {
    let mem = MemStorage::new();
    let m = open(&mem).await.expect("open");
    m.create("ok").await.expect("create");
    let last = m.last_offset();
    for (name, reason) in [
        ("", "empty"),
        (&"n".repeat(256)[..], "too long"),
        ("a\tb", "contains a control character"),
    ] {
        let r = m.create(name).await;
        assert_matches!(r, Err(Error::InvalidInput(InvalidInput::ContextName { reason: why, .. })) if *why == reason, "{name:?}");
    }
    for (key, reason) in [
        ("", "empty"),
        (&"k".repeat(1025)[..], "too long"),
        ("a\nb", "contains a control character"),
    ] {
        let r = m.set("ok", key, &1).await;
        assert_matches!(r, Err(Error::InvalidInput(InvalidInput::Key { reason: why, .. })) if *why == reason, "{key:?}");
    }
    let r = m.create_recovery_point("").await;
    assert_matches!(
        r,
        Err(Error::InvalidInput(InvalidInput::RecoveryPointLabel { .. }))
    );
    let r = m.update(Update::new()).await;
    assert_matches!(r, Err(Error::InvalidInput(InvalidInput::EmptyUpdate)));
    assert_eq!(m.last_offset(), last, "a refusal wrote nothing");
    m.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_values_and_records() {
    let mem = MemStorage::new();
    let mut cfg = mem_config(&mem);
    cfg.value_bytes_max = 4096;
    let m = create_manager_with_config(cfg).await.expect("open");
    m.create("c").await.expect("create");
    let r = m.set("c", "big", &"x".repeat(5000)).await;
    assert_matches!(
        r,
        Err(Error::InvalidInput(InvalidInput::ValueTooLarge {
            max: 4096,
            ..
        }))
    );
    // Every value under the limit, the commit over `record_bytes_max` (16 KiB).
    let mut u = Update::new();
    for i in 0..5 {
        u = u
            .set("c", format!("k{i}"), &"x".repeat(4000))
            .expect("encodes");
    }
    let r = m.update(u).await;
    assert_matches!(
        r,
        Err(Error::Persistence(WalError::RecordTooLarge {
            max: 16384,
            ..
        }))
    );
    // Neither wrote anything nor poisoned the log.
    assert_eq!(m.last_offset(), Offset(1));
    m.set("c", "k", &1)
        .await
        .expect("the log still takes commits");
    m.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration() {
    let mem = MemStorage::new();
    let mut cfg = mem_config(&mem);
    cfg.snapshots_kept = 0;
    let r = create_manager_with_config(cfg).await;
    assert_matches!(
        r,
        Err(Error::InvalidInput(InvalidInput::Config {
            field: "snapshots_kept",
            ..
        }))
    );
    let mut cfg = mem_config(&mem);
    cfg.segment_bytes = 1000;
    let r = create_manager_with_config(cfg).await;
    assert_matches!(
        r,
        Err(Error::Persistence(WalError::InvalidConfig {
            field: "segment_bytes",
            ..
        }))
    );
    assert!(!mem.exists(Path::new("store/wal")), "nothing created");
}

/// A segment header rewritten with `f`, the header CRC left as it was.
async fn with_header(f: impl Fn(&mut [u8])) -> ctxlog::Result<ContextManager> {
    let mem = store(3, 10).await;
    let mut header = mem.durable_bytes(&wal(SEG1)).expect("read")[..64].to_vec();
    f(&mut header);
    mem.corrupt(&wal(SEG1), 0, &header).expect("corrupt");
    open(&mem).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_format_version_and_wrong_magic() {
    let r = with_header(|h| h[8] = 2).await;
    assert_matches!(r, Err(Error::Persistence(WalError::BadHeader { source: HeaderError::UnsupportedVersion { found: 2, supported: 1 }, file })) if file.ends_with(SEG1));
    let r = with_header(|h| h[..8].copy_from_slice(b"SQLite f")).await;
    assert_matches!(
        r,
        Err(Error::Persistence(WalError::BadHeader {
            source: HeaderError::BadMagic { .. },
            ..
        }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_of_a_newer_schema_or_that_do_not_decode() {
    for (payload, newer) in [
        (&[0x93, 0x63, 0x00, 0x90][..], true),
        (&[0xc1, 0xff][..], false),
    ] {
        let mem = store(3, 10).await;
        // A well-formed record (valid CRC, next offset) after the last one.
        let bytes = mem.durable_bytes(&wal(SEG1)).expect("read");
        let end = 64 + {
            let body = &bytes[64..];
            ctxlog_format::FrameReader::new(body, 64, 1, FrameLayout::default())
                .map(|f| f.expect("intact").end(FrameLayout::default()) - 64)
                .last()
                .expect("records")
        };
        let mut frame = Vec::new();
        encode_frame(&mut frame, FrameLayout::default(), 4, None, payload).expect("encode");
        mem.corrupt(&wal(SEG1), end, &frame).expect("corrupt");
        let r = open(&mem).await;
        if newer {
            assert_matches!(
                r,
                Err(Error::Recovery(RecoveryError::UnsupportedSchema {
                    offset: Offset(4),
                    found: 99,
                    ..
                }))
            );
        } else {
            assert_matches!(
                r,
                Err(Error::Recovery(RecoveryError::BadCommit {
                    offset: Offset(4),
                    ..
                }))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_files_in_wal_and_snapshots_are_reported_and_left_alone() {
    let mem = store(3, 10).await;
    let foreign = [
        wal("notes.txt"),
        wal("1.seg"),
        wal("00000000000000000001.seg.bak"),
    ];
    let snaps = Path::new("store/snapshots");
    mem.create_dir_all(snaps).expect("mkdir");
    let foreign_snaps = [
        snaps.join("README"),
        snaps.join("00000000000000000002.snap.old"),
    ];
    for p in foreign.iter().chain(&foreign_snaps) {
        put(&mem, p, b"not ctxlog's");
    }
    // A leftover temporary snapshot is neither used nor reported.
    put(
        &mem,
        &snaps.join("00000000000000000002.snap.tmp"),
        b"half a snapshot",
    );
    let m = open(&mem).await.expect("opens");
    let sorted = |mut v: Vec<PathBuf>| {
        v.sort();
        v
    };
    let report = m.open_report();
    assert_eq!(
        sorted(report.log.foreign_files.clone()),
        sorted(foreign.to_vec())
    );
    assert_eq!(
        sorted(report.foreign_snapshot_files.clone()),
        sorted(foreign_snaps.to_vec())
    );
    assert_eq!(m.last_offset(), Offset(3));
    m.close().await.expect("close");
    for p in foreign.iter().chain(&foreign_snaps) {
        assert_eq!(mem.durable_bytes(p).expect("still there"), b"not ctxlog's");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_length_and_truncated_segments() {
    // Four segments of ~3 KiB commits.
    let mem = store(60, 3000).await;
    let segs = segments(&mem);
    assert!(segs.len() >= 3, "{segs:?}");
    let last = wal(segs.last().expect("last"));
    // The last segment empty: taken for a creation a crash interrupted, made anew, reported.
    let img = mem.crash_image(CrashMode::ProcessKill);
    cut(&img, &last, 0);
    let m = open(&img).await.expect("opens");
    assert_eq!(m.open_report().log.repaired_segment.as_ref(), Some(&last));
    let first_of_last: u64 = segs.last().expect("last")[..20].parse().expect("name");
    assert_eq!(m.last_offset().0, first_of_last - 1);
    m.close().await.expect("close");
    // A segment in the middle empty: its header is missing.
    let img = mem.crash_image(CrashMode::ProcessKill);
    cut(&img, &wal(&segs[1]), 0);
    let r = open(&img).await;
    assert_matches!(r, Err(Error::Persistence(WalError::BadHeader { source: HeaderError::TooShort { len: 0, .. }, file })) if *file == wal(&segs[1]));
    // The last segment cut inside its last record: a torn tail, cut off and reported.
    let img = mem.crash_image(CrashMode::ProcessKill);
    let end = 64 + 3000;
    cut(&img, &last, end);
    let m = open(&img).await.expect("opens");
    let torn = m.open_report().log.torn_tail.clone().expect("reported");
    assert_eq!((torn.file, torn.position), (last.clone(), 64));
    m.close().await.expect("close");
    // A sealed segment cut inside a record: corruption when replay reads it.
    let img = mem.crash_image(CrashMode::ProcessKill);
    cut(&img, &wal(&segs[1]), end);
    let r = open(&img).await;
    assert_matches!(r, Err(Error::Persistence(WalError::Corruption { file, position: 64, .. })) if *file == wal(&segs[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_from_another_store_is_skipped() {
    let (ours, theirs) = (store(3, 10).await, store(5, 10).await);
    let m = open(&theirs).await.expect("open");
    let theirs_snap = m.snapshot_now().await.expect("snapshot");
    m.close().await.expect("close");
    let name = format!("{:020}.snap", theirs_snap.0);
    let path = Path::new("store/snapshots").join(&name);
    // Offset 5 is past our log's end (3): give our store two more commits first.
    let m = open(&ours).await.expect("open");
    m.set("c", "a", &1).await.expect("set");
    m.set("c", "b", &2).await.expect("set");
    let want = m.state();
    m.close().await.expect("close");
    ours.create_dir_all(path.parent().expect("dir"))
        .expect("mkdir");
    put(&ours, &path, &theirs.durable_bytes(&path).expect("read"));
    let m = open(&ours).await.expect("opens");
    let skipped = &m.open_report().skipped_snapshots;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].file, path);
    assert!(
        skipped[0].reason.contains("belongs to another store"),
        "{skipped:?}"
    );
    assert_eq!(m.open_report().snapshot, None);
    reliability_support::assert_same_state(&m.state(), &want, "replayed from the log");
    m.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_missing_in_the_middle() {
    let mem = store(60, 3000).await;
    let segs = segments(&mem);
    let second = wal(&segs[1]);
    // Without a snapshot, replay crosses the gap: refused.
    let img = mem.crash_image(CrashMode::ProcessKill);
    img.remove(&second).expect("remove");
    let r = open(&img).await;
    assert_matches!(r, Err(Error::Persistence(WalError::SegmentGap { file, .. })) if *file == wal(&segs[2]));
    // With a snapshot after the gap, open starts there and does not read the gap: the state
    // is whole; reading the history finds the gap.
    let m = open(&mem).await.expect("open");
    m.snapshot_now().await.expect("snapshot");
    let want = m.state();
    m.close().await.expect("close");
    mem.remove(&second).expect("remove");
    let m = open(&mem).await.expect("opens from the snapshot");
    reliability_support::assert_same_state(&m.state(), &want, "state from the snapshot");
    let r = m.events(Offset(1)).await;
    assert_matches!(r, Err(Error::Persistence(WalError::SegmentGap { file, .. })) if *file == wal(&segs[2]));
    m.close().await.expect("close");
}

/// The other process. `locked`: tries to open. `readonly`: opens, commits, snapshots, and
/// commits until a segment rotates. Prints one `PROBE` line per step, with the error's
/// variant and its OS error kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe() {
    let Ok(spec) = std::env::var(reliability_support::PROBE_ENV) else {
        return;
    };
    let (mode, dir) = spec.split_once(':').expect("mode:dir");
    let say = |what: &str, r: &ctxlog::Result<()>| println!("PROBE {what}: {}", describe(r));
    let m = match create_manager_with_config(fs_config(Path::new(dir))).await {
        Ok(m) => m,
        Err(e) => return say("open", &Err(e)),
    };
    say("open", &Ok(()));
    if mode == "readonly" {
        // (c exists: the store was made by the parent.)
        say("commit", &m.set("c", "probe", &1).await.map(|_| ()));
        say("snapshot", &m.snapshot_now().await.map(|_| ()));
        let mut last = Ok(());
        for i in 0..40 {
            last = m
                .set("c", &format!("big{i}"), &"x".repeat(4000))
                .await
                .map(|_| ());
            if last.is_err() {
                say("rotation", &last);
                break;
            }
        }
        say("after", &m.set("c", "after", &1).await.map(|_| ()));
        if last.is_ok() {
            say("rotation", &last);
        }
    }
    m.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_opened_twice_in_one_process_and_from_another() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let m = create_manager(&dir).await.expect("open");
    m.create("c").await.expect("create");
    let r = create_manager(&dir).await;
    let me = format!("pid={}", std::process::id());
    assert_matches!(r, Err(Error::Locked { path, holder: Some(h) }) if *path == dir.join("LOCK") && h.contains(&me));
    let lines = run_probe("probe", "locked", &dir, false);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("open: Locked by {me} ")),
        "{lines:?}"
    );
    m.set("c", "k", &1).await.expect("the first handle goes on");
    m.close().await.expect("close");
    assert_eq!(run_probe("probe", "locked", &dir, false), ["open: ok"]);
}

/// As root, permissions do not stop writes: the probe then runs as `nobody` through
/// `setpriv`, with the store chowned to it. Where `nobody` cannot run the probe (no `setpriv`,
/// a private target directory), root's unhindered behaviour is asserted instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    chmod(tmp.path(), 0o755);
    let dir = tmp.path().join("store");
    let m = create_manager_with_config(fs_config(&dir))
        .await
        .expect("open");
    m.create("c").await.expect("create");
    m.close().await.expect("close");
    let ro_parent = tmp.path().join("ro");
    std::fs::create_dir(&ro_parent).expect("mkdir");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    // `nobody` must be able to run this binary and reach the directory (a target directory
    // or a temporary directory under a private home may not allow it).
    let exe = std::env::current_exe().expect("current_exe");
    let setpriv = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["--exact", "probe", "--list"])
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ls"])
            .arg(tmp.path())
            .output()
            .is_ok_and(|o| o.status.success());
    let as_nobody = root && setpriv;
    if as_nobody {
        for entry in ["", "LOCK", "wal"].iter().map(|e| dir.join(e)) {
            std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).expect("chown");
        }
        for seg in std::fs::read_dir(dir.join("wal")).expect("ls") {
            std::os::unix::fs::chown(seg.expect("entry").path(), Some(65534), Some(65534))
                .expect("chown");
        }
    }
    chmod(&dir.join("wal"), 0o555);
    chmod(&dir, 0o555);
    chmod(&ro_parent, 0o555);
    let existing = run_probe("probe", "readonly", &dir, as_nobody);
    let new_store = run_probe("probe", "create", &ro_parent.join("new"), as_nobody);
    chmod(&dir, 0o755);
    chmod(&dir.join("wal"), 0o755);
    chmod(&ro_parent, 0o755);
    if root && !setpriv {
        eprintln!(
            "as root, and nobody cannot run the probe: a read-only directory does not stop root"
        );
        assert_eq!(
            existing,
            [
                "open: ok",
                "commit: ok",
                "snapshot: ok",
                "after: ok",
                "rotation: ok"
            ]
        );
        assert_eq!(new_store, ["open: ok"]);
        return;
    }
    // Open needs to create nothing in an existing store: it opens, and commits go on until a
    // file must be created (the snapshot directory, the next segment).
    assert_eq!(
        existing,
        [
            "open: ok",
            "commit: ok",
            "snapshot: Recovery(SnapshotIo) create PermissionDenied",
            "rotation: Persistence(Io) create PermissionDenied",
            "after: Persistence(Poisoned) create",
        ]
    );
    assert_eq!(
        new_store,
        ["open: Persistence(Io) create directory PermissionDenied"]
    );
}

/// A device that fails every write (simulated: sticky `EIO` on every `MemStorage` write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_refusing_writes_and_full_disk() {
    for (kind, code) in [(FaultKind::Eio, 5), (FaultKind::Enospc, 28)] {
        let mem = store(3, 10).await;
        mem.inject(FaultOp::Write, 1, kind, true);
        let m = open(&mem).await.expect("open needs no write");
        assert_eq!(m.get_as::<String>("c", "k1").expect("reads work").len(), 10);
        let r = m.set("c", "k", &1).await;
        assert_matches!(r, Err(Error::Persistence(WalError::Io { op: "write", source, .. })) if source.raw_os_error() == Some(code), "{kind:?}");
        let r = m.set("c", "k", &2).await;
        assert_matches!(
            r,
            Err(Error::Persistence(WalError::Poisoned { op: "write", .. }))
        );
        let r = m.snapshot_now().await;
        assert_matches!(r, Err(Error::Recovery(RecoveryError::SnapshotIo { source, .. })) if source.raw_os_error() == Some(code));
        assert_eq!(m.last_offset(), Offset(3), "{kind:?}");
        m.close().await.expect("close");
        // A new store on such a device: open fails writing the first segment's header.
        let fresh = MemStorage::new();
        fresh.inject(FaultOp::Write, 1, kind, true);
        let r = open(&fresh).await;
        assert_matches!(r, Err(Error::Persistence(WalError::Io { op: "write", source, .. })) if source.raw_os_error() == Some(code), "{kind:?}");
        // Space freed (the fault cleared): everything acknowledged is there, commits resume.
        mem.clear_faults();
        let m = open(&mem).await.expect("reopen");
        assert_eq!(m.last_offset(), Offset(3));
        m.set("c", "k", &3).await.expect("commits again");
        m.close().await.expect("close");
    }
}

/// Polls `fut` once.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match std::pin::Pin::new(&mut *fut).poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

/// An update polled once and dropped: the first poll queues it, so it commits whole; never a
/// part of it. Checked live, after a process kill and after a power loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_dropped_mid_commit() {
    let mem = MemStorage::new();
    let m = open(&mem).await.expect("open");
    m.update(Update::new().create("x").create("y"))
        .await
        .expect("create");
    let whole = |i: u64| {
        let mut u = Update::new();
        for k in 0..8 {
            u = u.set("x", format!("k{k}"), &i).expect("encodes");
        }
        u.set("y", "i", &i).expect("encodes")
    };
    for i in 0..200 {
        let mut fut = Box::pin(m.update(whole(i)));
        let _ = poll_once(&mut fut).await;
        drop(fut);
    }
    // A commit queued after them is answered after them. A first poll usually queues the
    // update (then it commits whole); when tokio's cooperative budget is spent it does not
    // (then the update is absent).
    let last = m.set("y", "done", &true).await.expect("set").offset;
    let committed = last.0 - 2;
    let images = [
        ("process kill", mem.crash_image(CrashMode::ProcessKill)),
        ("power loss", mem.crash_image(CrashMode::DropUnsynced)),
    ];
    m.close().await.expect("close");
    for (what, img) in images.into_iter().chain([("reopen", mem)]) {
        let m = open(&img).await.expect("open");
        let x = m.get("x").expect("x");
        let values: std::collections::BTreeSet<u64> =
            x.values().map(|(_, v)| v.decode().expect("u64")).collect();
        assert_eq!(
            (x.len(), values.len()),
            (8, 1),
            "{what}: x is a mix of commits: {values:?}"
        );
        assert_eq!(
            values.first(),
            m.get_as::<u64>("y", "i").ok().as_ref(),
            "{what}"
        );
        for c in m.events(Offset(2)).await.expect("read back") {
            assert!(
                c.events.len() == 9 || c.offset == last,
                "{what}: commit {} is partial",
                c.offset
            );
        }
        m.close().await.expect("close");
    }
    let figure = reliability_support::figure;
    figure("reliability_bad_input", "dropped_futures", 200);
    figure(
        "reliability_bad_input",
        "dropped_futures_committed_whole",
        committed,
    );
    assert!(
        committed > 0,
        "no dropped update was committed: the test tests nothing"
    );
}
