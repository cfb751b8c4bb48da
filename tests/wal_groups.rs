//! Write groups (`Durability::Always`, blocking appenders committing each other's records on
//! their own threads), under concurrency, on `MemStorage`:
//! - every ack is `Synced`, its offset unique, each thread's offsets increase, and a power loss
//!   right after keeps every acknowledged record at its offset;
//! - blocking and async appenders together (the writer thread joining the groups);
//! - a failed `fdatasync` inside a group fails that group's acks and every later one, and
//!   every earlier ack survives.

use ctxlog::storage::{CrashMode, FaultKind, FaultOp, MemStorage};
use ctxlog::wal::{Appended, Durability, Reached, Wal, WalConfig, WalError};
use ctxlog::Offset;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

const DIR: &str = "store";

fn open(mem: &MemStorage) -> Wal {
    let config = WalConfig {
        segment_bytes: 256 * 1024,
        record_bytes_max: 4096,
        durability: Durability::Always,
        ..WalConfig::default()
    };
    Wal::open(Arc::new(mem.clone()), Path::new(DIR), config).expect("open")
}

/// Payload `seq` of appender `who`, 40–290 bytes, so that groups cross segment rotations.
fn payload(who: usize, seq: usize) -> Vec<u8> {
    let mut p = format!("appender {who} record {seq};").into_bytes();
    p.resize(40 + (who * 31 + seq * 17) % 250, b'a' + (who % 26) as u8);
    p
}

fn read_all(wal: &Wal) -> BTreeMap<u64, Vec<u8>> {
    let mut out = BTreeMap::new();
    wal.reader()
        .scan(Offset(1), Offset(u64::MAX), |r| {
            out.insert(r.offset.0, r.payload.to_vec());
            ControlFlow::Continue(())
        })
        .expect("scan");
    out
}

/// What a power loss right now would leave.
fn after_power_loss(mem: &MemStorage) -> BTreeMap<u64, Vec<u8>> {
    let wal = open(&mem.crash_image(CrashMode::DropUnsynced));
    let recs = read_all(&wal);
    wal.close();
    recs
}

/// Checks the acks of every appender (`acked[who]`: (seq, ack) in call order): synced, unique,
/// increasing per appender, and each one's payload at its offset in `recs`.
fn check_acked(acked: &[Vec<(usize, Appended)>], recs: &BTreeMap<u64, Vec<u8>>) -> usize {
    let mut seen = BTreeMap::new();
    for (who, acks) in acked.iter().enumerate() {
        let mut last = 0;
        for (seq, a) in acks {
            assert_eq!(a.reached, Reached::Synced, "appender {who} record {seq}");
            assert!(
                a.offset.0 > last,
                "appender {who}: offsets go back at {seq}"
            );
            last = a.offset.0;
            if let Some(other) = seen.insert(a.offset.0, (who, *seq)) {
                panic!(
                    "offset {} acked twice: {other:?} and {:?}",
                    a.offset.0,
                    (who, seq)
                );
            }
            let got = recs.get(&a.offset.0).unwrap_or_else(|| {
                panic!(
                    "acked record {seq} of appender {who} at {} lost",
                    a.offset.0
                )
            });
            assert_eq!(*got, payload(who, *seq), "offset {}", a.offset.0);
        }
    }
    seen.len()
}

#[test]
fn blocking_appenders_get_unique_synced_offsets_that_survive_a_power_loss() {
    const THREADS: usize = 24;
    const EACH: usize = 150;
    let mem = MemStorage::new();
    let wal = Arc::new(open(&mem));
    let acked: Vec<Vec<(usize, Appended)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|who| {
                let wal = &wal;
                s.spawn(move || {
                    (0..EACH)
                        .map(|seq| (seq, wal.append_blocking(payload(who, seq)).expect("append")))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("appender"))
            .collect()
    });
    let recs = after_power_loss(&mem);
    assert_eq!(check_acked(&acked, &recs), THREADS * EACH);
    assert_eq!(recs.len(), THREADS * EACH, "nothing but the acked records");
    assert_eq!(
        recs.keys().copied().collect::<Vec<_>>(),
        (1..=(THREADS * EACH) as u64).collect::<Vec<_>>()
    );
    let wal = Arc::into_inner(wal).expect("last handle");
    assert_eq!(read_all(&wal), recs, "the live log holds the same");
    wal.close();
}

#[test]
fn blocking_and_async_appenders_share_the_log() {
    const BLOCKING: usize = 12;
    const TASKS: usize = 48;
    const EACH: usize = 60;
    let mem = MemStorage::new();
    let wal = Arc::new(open(&mem));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let acked: Vec<Vec<(usize, Appended)>> = std::thread::scope(|s| {
        let blocking: Vec<_> = (0..BLOCKING)
            .map(|who| {
                let wal = &wal;
                s.spawn(move || {
                    (0..EACH)
                        .map(|seq| (seq, wal.append_blocking(payload(who, seq)).expect("append")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let tasks: Vec<_> = (BLOCKING..BLOCKING + TASKS)
            .map(|who| {
                let wal = Arc::clone(&wal);
                rt.spawn(async move {
                    let mut acks = Vec::new();
                    for seq in 0..EACH {
                        acks.push((seq, wal.append(payload(who, seq)).await.expect("append")));
                    }
                    acks
                })
            })
            .collect();
        let mut all: Vec<_> = blocking
            .into_iter()
            .map(|h| h.join().expect("appender"))
            .collect();
        for t in tasks {
            all.push(rt.block_on(t).expect("task"));
        }
        all
    });
    let n = (BLOCKING + TASKS) * EACH;
    let recs = after_power_loss(&mem);
    assert_eq!(check_acked(&acked, &recs), n);
    assert_eq!(recs.len(), n);
    drop(rt);
    Arc::into_inner(wal).expect("last handle").close();
}

#[test]
fn a_failed_sync_in_a_group_fails_it_and_everything_after_and_keeps_what_was_acked() {
    const THREADS: usize = 16;
    for nth in [1, 2, 7, 30] {
        let mem = MemStorage::new();
        let wal = Arc::new(open(&mem));
        mem.inject(FaultOp::Sync, nth, FaultKind::Eio, false);
        let results: Vec<Vec<(usize, Result<Appended, WalError>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|who| {
                    let wal = &wal;
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for seq in 0..200 {
                            let r = wal.append_blocking(payload(who, seq));
                            let failed = r.is_err();
                            out.push((seq, r));
                            if failed {
                                break;
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("appender"))
                .collect()
        });
        let ctx = format!("sync #{nth} after open fails");
        let mut acked = Vec::new();
        let mut errors = 0;
        for (who, rs) in results.into_iter().enumerate() {
            let mut ok = Vec::new();
            for (seq, r) in rs {
                match r {
                    Ok(a) => ok.push((seq, a)),
                    Err(WalError::Io { .. } | WalError::Poisoned { .. }) => errors += 1,
                    Err(e) => panic!("{ctx}: appender {who}: unexpected {e}"),
                }
            }
            acked.push(ok);
        }
        assert_eq!(errors, THREADS, "{ctx}: every appender ends with an error");
        let again = wal.append_blocking(b"after".to_vec());
        assert!(
            matches!(again, Err(WalError::Poisoned { .. })),
            "{ctx}: {again:?}"
        );
        let recs = after_power_loss(&mem);
        let n = check_acked(&acked, &recs);
        // No ack after the failed sync: the acks are exactly the records before it.
        let max_acked = acked
            .iter()
            .flatten()
            .map(|(_, a)| a.offset.0)
            .max()
            .unwrap_or(0);
        assert_eq!(n as u64, max_acked, "{ctx}: acked offsets are a prefix");
        Arc::into_inner(wal).expect("last handle").close();
    }
}
