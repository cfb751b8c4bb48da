//! The three durability modes on `MemStorage`: what an ack reports, and what a power loss
//! (`CrashMode::DropUnsynced`) keeps.
//! - `Always`: acks report `Synced`; an image taken right after an ack holds it.
//! - `Batched`: acks report `Written`; once `max_delay` has passed the background sync has made
//!   them durable.
//! - `Never`: acks report `Written`; close + reopen keeps everything.

use ctxlog::storage::{CrashMode, FaultOp, MemStorage};
use ctxlog::wal::{Durability, Reached, Wal, WalConfig};
use ctxlog::Offset;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIR: &str = "store";
const BATCHED: Durability = Durability::Batched {
    max_delay: Duration::from_millis(10),
};

fn config(durability: Durability) -> WalConfig {
    WalConfig {
        segment_bytes: 64 * 1024,
        record_bytes_max: 4096,
        durability,
        ..WalConfig::default()
    }
}

fn open(mem: &MemStorage, durability: Durability) -> Wal {
    Wal::open(Arc::new(mem.clone()), Path::new(DIR), config(durability))
        .unwrap_or_else(|e| panic!("open ({durability:?}): {e}"))
}

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("payload {i} ").into_bytes();
    p.resize(100 + (i * 37) % 900, b'0' + (i % 10) as u8);
    p
}

fn read_all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    wal.reader()
        .scan(Offset(1), Offset(u64::MAX), |r| {
            out.push((r.offset.0, r.payload.to_vec()));
            ControlFlow::Continue(())
        })
        .expect("scan");
    out
}

fn expected(n: usize) -> Vec<(u64, Vec<u8>)> {
    (0..n).map(|i| (i as u64 + 1, payload(i))).collect()
}

/// Checks that `got` is exactly records `1..=n` with their payloads, with a short message.
fn assert_records(got: &[(u64, Vec<u8>)], n: usize, ctx: &str) {
    assert_eq!(got.len(), n, "{ctx}: record count");
    if let Some((off, _)) = got
        .iter()
        .zip(expected(n))
        .find(|(g, e)| **g != *e)
        .map(|p| p.0)
    {
        panic!("{ctx}: record at offset {off} differs");
    }
}

/// Appends `n` payloads, checking each ack's offset and durability.
fn append_n(wal: &Wal, n: usize, reached: Reached) {
    for i in 0..n {
        let a = wal.append_blocking(payload(i)).expect("append");
        assert_eq!(a.offset, Offset(i as u64 + 1));
        assert_eq!(a.reached, reached, "ack {i}");
    }
}

/// The records a power loss right now would leave.
fn after_power_loss(mem: &MemStorage, durability: Durability) -> Vec<(u64, Vec<u8>)> {
    let img = mem.crash_image(CrashMode::DropUnsynced);
    let wal = open(&img, durability);
    let recs = read_all(&wal);
    wal.close();
    recs
}

#[test]
fn always_acks_synced_and_a_power_loss_right_after_keeps_each_ack() {
    let mem = MemStorage::new();
    let wal = open(&mem, Durability::Always);
    for i in 0..40 {
        let a = wal.append_blocking(payload(i)).expect("append");
        assert_eq!(a.reached, Reached::Synced, "ack {i}");
        assert_eq!(a.offset, Offset(i as u64 + 1));
        if i % 8 == 0 || i == 39 {
            let recs = after_power_loss(&mem, Durability::Always);
            assert_records(&recs, i + 1, &format!("power loss right after ack {i}"));
        }
    }
    wal.close();
}

#[test]
fn always_async_appends_from_many_tasks_are_synced() {
    let mem = MemStorage::new();
    let wal = Arc::new(open(&mem, Durability::Always));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let mut offsets: Vec<u64> = rt.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let wal = Arc::clone(&wal);
                tokio::spawn(async move {
                    let a = wal.append(payload(i)).await.expect("append");
                    assert_eq!(a.reached, Reached::Synced);
                    a.offset.0
                })
            })
            .collect();
        let mut offsets = Vec::new();
        for t in tasks {
            offsets.push(t.await.expect("task"));
        }
        offsets
    });
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (1..=64).collect::<Vec<u64>>(),
        "one offset per ack"
    );
    let recs = after_power_loss(&mem, Durability::Always);
    assert_eq!(recs.len(), 64, "every synced ack survives a power loss");
    drop(rt);
    Arc::into_inner(wal).expect("last handle").close();
}

#[test]
fn never_acks_written_and_close_reopen_keeps_everything() {
    let mem = MemStorage::new();
    let wal = open(&mem, Durability::Never);
    // ~550 bytes a record: 300 records rotate about twice.
    append_n(&wal, 300, Reached::Written);
    assert_records(&read_all(&wal), 300, "before close");
    wal.close();
    let wal = open(&mem, Durability::Never);
    assert!(wal.recovery_report().segments > 1, "the test rotates");
    assert_records(&read_all(&wal), 300, "after reopen");
    let a = wal.append_blocking(b"next".to_vec()).expect("append");
    assert_eq!(a.offset, Offset(301));
    wal.close();
}

#[test]
fn never_does_not_sync_appends() {
    // What makes the close tests below meaningful: in Never mode, appends within a segment
    // are not synced, so a power loss before close loses them.
    let mem = MemStorage::new();
    let wal = open(&mem, Durability::Never);
    let syncs = mem.op_count(FaultOp::Sync);
    append_n(&wal, 20, Reached::Written);
    assert_eq!(
        mem.op_count(FaultOp::Sync),
        syncs,
        "Never mode synced an append"
    );
    assert!(after_power_loss(&mem, Durability::Never).is_empty());
    wal.close();
}

#[test]
fn never_close_makes_everything_durable() {
    let mem = MemStorage::new();
    let wal = open(&mem, Durability::Never);
    append_n(&wal, 20, Reached::Written);
    wal.close();
    let recs = after_power_loss(&mem, Durability::Never);
    assert_records(
        &recs,
        20,
        "power loss after close (Never promises a sync at close)",
    );
}

#[test]
fn batched_acks_written_and_close_reopen_keeps_everything() {
    let mem = MemStorage::new();
    let wal = open(&mem, BATCHED);
    append_n(&wal, 100, Reached::Written);
    assert_records(&read_all(&wal), 100, "readable once acked");
    wal.close();
    let wal = open(&mem, BATCHED);
    assert_records(&read_all(&wal), 100, "after reopen");
    wal.close();
}

#[test]
fn batched_background_sync_runs_within_max_delay() {
    let mem = MemStorage::new();
    let wal = open(&mem, BATCHED);
    for round in 1..=3 {
        let n = round * 10;
        for i in n - 10..n {
            let a = wal.append_blocking(payload(i)).expect("append");
            assert_eq!(a.reached, Reached::Written);
        }
        // The sync is due 10 ms after the first unsynced write; give a loaded machine
        // plenty of slack, but no more: the writer is idle, only the timer can sync.
        std::thread::sleep(Duration::from_millis(30));
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let recs = after_power_loss(&mem, BATCHED);
            if recs.len() == n {
                assert_records(&recs, n, &format!("round {round}"));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: {} of {n} records durable 3 s after the last ack",
                recs.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    wal.close();
}

#[test]
fn batched_close_makes_everything_durable() {
    let mem = MemStorage::new();
    let wal = open(
        &mem,
        Durability::Batched {
            max_delay: Duration::from_secs(30),
        },
    );
    append_n(&wal, 20, Reached::Written);
    wal.close();
    let recs = after_power_loss(&mem, BATCHED);
    assert_records(&recs, 20, "power loss after close (Batched)");
}
