use ctxlog::storage::{CrashMode, MemStorage, Storage};
use ctxlog::wal::{Wal, WalConfig};
use std::ops::ControlFlow;
use std::sync::Arc;

/// A `Durability::Never` log in `dir` of `mem`, and its configuration (to reopen it).
fn never_wal(mem: &MemStorage, dir: &str) -> (Wal, WalConfig) {
    let cfg = WalConfig {
        durability: ctxlog::wal::Durability::Never,
        ..WalConfig::default()
    };
    let wal = Wal::open(Arc::new(mem.clone()), dir.as_ref(), cfg.clone()).unwrap();
    (wal, cfg)
}

/// 256 copies of a 4 KiB payload: 1 MiB of payload in one batch.
fn one_mib(payload: &[u8]) -> ctxlog::wal::RecordBatch {
    assert_eq!(payload.len(), 4096);
    std::iter::repeat_n(payload, 256).collect()
}

fn read_all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    wal.reader()
        .scan(ctxlog::Offset(1), ctxlog::Offset(u64::MAX), |r| {
            out.push((r.offset.0, r.payload.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

#[test]
fn append_rotate_reopen_crash() {
    let mem = MemStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(mem.clone());
    let cfg = WalConfig {
        segment_bytes: 64 * 1024,
        record_bytes_max: 1000,
        ..WalConfig::default()
    };
    let wal = Wal::open(storage.clone(), "s".as_ref(), cfg.clone()).unwrap();
    for i in 0..1000u32 {
        let a = wal
            .append_blocking(format!("rec-{i}-{}", "x".repeat(100)).into_bytes())
            .unwrap();
        assert_eq!(a.offset.0, u64::from(i) + 1);
    }
    let all = read_all(&wal);
    assert_eq!(all.len(), 1000);
    assert!(storage.list("s/wal".as_ref()).unwrap().len() > 1, "rotated");
    // Crash with nothing unsynced lost.
    let img = mem.crash_image(CrashMode::DropUnsynced);
    drop(wal);
    let wal2 = Wal::open(Arc::new(img), "s".as_ref(), cfg.clone()).unwrap();
    assert_eq!(read_all(&wal2).len(), 1000);
    let a = wal2.append_blocking(b"after".to_vec()).unwrap();
    assert_eq!(a.offset.0, 1001);
    wal2.close();
    let wal3 = Wal::open(storage, "s".as_ref(), cfg).unwrap();
    let all = read_all(&wal3);
    assert_eq!(all.len(), 1000, "original store unaffected by the image");
}

#[test]
fn batches_append_all_or_none_and_never_mode_reserves_sparsely() {
    use ctxlog::wal::{Durability, RecordBatch, WalError};
    let mem = MemStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(mem.clone());
    let cfg = WalConfig {
        segment_bytes: 64 * 1024,
        record_bytes_max: 1000,
        durability: Durability::Never,
        ..WalConfig::default()
    };
    let wal = Wal::open(storage.clone(), "b".as_ref(), cfg).unwrap();
    let first = wal
        .append_batch_blocking((0..100u8).map(|i| vec![i; 10]).collect())
        .unwrap();
    assert_eq!(first.offset.0, 1);
    // One oversized payload refuses the whole batch: nothing of it is written.
    let refused = wal.append_batch_blocking([vec![1; 10], vec![2; 2000]].iter().collect());
    assert!(
        matches!(refused, Err(WalError::RecordTooLarge { .. })),
        "{refused:?}"
    );
    // An empty batch is refused by name, and appends nothing.
    let empty = wal.append_batch_blocking(RecordBatch::new());
    assert!(matches!(empty, Err(WalError::EmptyBatch)), "{empty:?}");
    let next = wal.append_blocking(b"after".to_vec()).unwrap();
    assert_eq!(next.offset.0, 101);
    // The async form appends the same way.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let tail = rt
        .block_on(wal.append_batch([b"x".as_slice(), b"yz"].into_iter().collect()))
        .unwrap();
    assert_eq!(tail.offset.0, 102);
    let all = read_all(&wal);
    assert_eq!(all.len(), 103);
    assert_eq!(all[101..], [(102, b"x".to_vec()), (103, b"yz".to_vec())]);
    assert!(all[..100]
        .iter()
        .enumerate()
        .all(|(i, (o, p))| *o == i as u64 + 1 && *p == vec![i as u8; 10]));
    wal.close();
    // Never mode reserves the segment with set_len (Preallocate::Auto): still its full size.
    let segment = std::path::Path::new("b/wal/00000000000000000001.seg");
    let bytes = mem.crash_image(CrashMode::ProcessKill);
    let file = bytes
        .open(segment, ctxlog::storage::OpenMode::Read)
        .unwrap();
    assert_eq!(file.len().unwrap(), 64 * 1024);
}

#[test]
fn never_mode_syncs_in_the_background_every_8_mib() {
    use std::time::{Duration, Instant};
    let mem = MemStorage::new();
    let (wal, cfg) = never_wal(&mem, "n");
    let synced_at_open = wal.reader().stats().syncs;
    // 9 batches of 1 MiB of payload, well inside the first 64 MiB segment: no rotation, no
    // close, so only the writeback thread can sync them.
    let payload = vec![7u8; 4096];
    for _ in 0..9 {
        wal.append_batch_blocking(one_mib(&payload)).unwrap();
    }
    // Soon a power loss keeps at least the first 8 MiB of records. (The sync counter moves
    // as a sync starts, so the image is taken again until the sync has landed.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let kept = loop {
        let started = wal.reader().stats().syncs > synced_at_open;
        if started {
            let image = mem.crash_image(CrashMode::DropUnsynced);
            let reopened = Wal::open(Arc::new(image), "n".as_ref(), cfg.clone()).unwrap();
            let kept = read_all(&reopened);
            reopened.close();
            if kept.len() * payload.len() >= 8 << 20 {
                break kept;
            }
        }
        assert!(
            Instant::now() < deadline,
            "9 MiB appended, yet a power loss keeps less than 8 MiB (sync started: {started})"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(kept.iter().all(|(_, p)| *p == payload));
    wal.close();
}

#[test]
fn a_failed_background_sync_poisons_the_log() {
    use ctxlog::storage::{FaultKind, FaultOp};
    use ctxlog::wal::WalError;
    use std::time::{Duration, Instant};
    let mem = MemStorage::new();
    let (wal, cfg) = never_wal(&mem, "p");
    // The next sync is the writeback thread's, after 8 MiB (no rotation in 9 MiB): it fails.
    mem.inject(FaultOp::Sync, 1, FaultKind::Eio, false);
    let payload = vec![3u8; 4096];
    // Soon every append is refused, naming the failed fdatasync (the sync may fail, and
    // poison the log, before the 9th MiB is appended).
    let mut accepted = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match wal.append_batch_blocking(one_mib(&payload)) {
            Err(WalError::Poisoned {
                op: "fdatasync", ..
            }) => break,
            Ok(_) => accepted += 256,
            Err(e) => panic!("expected the log poisoned by the failed sync, got {e:?}"),
        }
        if accepted >= 9 * 256 {
            assert!(
                Instant::now() < deadline,
                "a failed background sync did not poison the log"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(
        accepted >= 8 * 256,
        "poisoned after only {accepted} records"
    );
    wal.close();
    // The next open rewrites what the failed sync may have dropped, and keeps every record.
    let reopened = Wal::open(Arc::new(mem), "p".as_ref(), cfg).unwrap();
    assert!(reopened.recovery_report().rewrote_after_poison.is_some());
    let kept = read_all(&reopened);
    // A batch written just as the poison landed is answered with the poison yet is in the
    // file, like any append whose reply is an error: its outcome is unknown, not "not written".
    assert!(
        kept.len() == accepted || kept.len() == accepted + 256,
        "{} records kept, {accepted} acknowledged",
        kept.len()
    );
    assert!(kept.iter().all(|(_, p)| *p == payload));
}

/// Close waits for the background sync thread, then syncs what is left, before it releases the
/// store: in `Batched` mode with a long delay, close returns at once (it does not wait out the
/// delay), everything appended survives a power loss right after, and the store opens again.
#[test]
fn batched_close_syncs_everything_without_waiting_out_the_delay() {
    use ctxlog::wal::Durability;
    use std::time::{Duration, Instant};
    let mem = MemStorage::new();
    let cfg = WalConfig {
        durability: Durability::Batched {
            max_delay: Duration::from_secs(60),
        },
        ..WalConfig::default()
    };
    let wal = Wal::open(Arc::new(mem.clone()), "b".as_ref(), cfg.clone()).unwrap();
    for i in 0..100u8 {
        wal.append_blocking(vec![i; 100]).unwrap();
    }
    let started = Instant::now();
    wal.close();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "close waited {:?}",
        started.elapsed()
    );
    let image = mem.crash_image(CrashMode::DropUnsynced);
    let reopened = Wal::open(Arc::new(image), "b".as_ref(), cfg.clone()).unwrap();
    assert_eq!(read_all(&reopened).len(), 100);
    // The lock was released: the store itself opens again.
    Wal::open(Arc::new(mem), "b".as_ref(), cfg).unwrap().close();
}
