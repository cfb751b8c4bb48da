//! Write groups (`Durability::Always`, blocking appenders committing each other's records on
//! their own threads), under concurrency, on `MemStorage`:
//! - every ack is `Synced`, its offset unique, each thread's offsets increase, and a power loss
//!   right after keeps every acknowledged record at its offset;
//! - blocking and async appenders together (the writer thread joining the groups);
//! - a failed `fdatasync` inside a group fails that group's acks and every later one, and
//!   every earlier ack survives;
//! - `close` while blocking and async appenders run: nothing hangs, nothing is appended after
//!   it returned, every ack survives a power loss and acks go out in offset order;
//! - a panic in the leader's write (a `Storage` is user code) poisons the log and leaves no
//!   appender, and not close, waiting; a panic on the writer thread leaves no sync running
//!   once close returned.

mod group_support;

use ctxlog::storage::{CrashMode, FaultKind, FaultOp, MemStorage};
use ctxlog::wal::{open_log, Appended, Durability, GroupCommit, Reached, Wal, WalConfig, WalError};
use ctxlog::Offset;
use group_support::{
    async_append, blocking_append, runtime, within, Knobs, RecCompleter, RecStage, Req, Tuned,
    PANIC_IN_PREPARE,
};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DIR: &str = "store";

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 256 * 1024,
        record_bytes_max: 4096,
        durability: Durability::Always,
        ..WalConfig::default()
    }
}

fn open(mem: &MemStorage) -> Wal {
    Wal::open(Arc::new(mem.clone()), Path::new(DIR), config()).expect("open")
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
    let rt = runtime();
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

#[test]
fn a_panic_in_the_leaders_write_poisons_the_log_and_hangs_no_one() {
    let mem = MemStorage::new();
    let (storage, knobs) = Tuned::new(mem.clone());
    let config = WalConfig {
        durability: Durability::Always,
        ..WalConfig::default()
    };
    let wal = Arc::new(Wal::open(storage, Path::new(DIR), config).expect("open"));
    wal.append_blocking(b"before".to_vec()).expect("append");
    knobs.panic_write.store(true, Ordering::Release);
    let w = Arc::clone(&wal);
    let first = within(30, "the panicking append", move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            w.append_blocking(b"panics".to_vec())
        }))
    });
    assert!(first.is_err(), "the leader's write panicked");
    refuses_appends_then_closes(wal, &mem, "a panicked leader's write");
    assert_eq!(after_power_loss(&mem).len(), 1, "the acknowledged record");
}

/// A panic on the writer thread (its write) while the sync thread is inside an `fdatasync`:
/// `close` returns only once that sync is over and the sync and ack threads are gone, so none
/// of them can touch the store after its lock is released. Before, the panic detached them.
#[test]
fn a_panic_on_the_writer_thread_leaves_no_sync_running_after_close() {
    let mem = MemStorage::new();
    let (storage, knobs) = Tuned::new(mem.clone());
    let config = WalConfig {
        // One request per batch (the records are bigger than the smallest batch): the writer
        // thread writes the next while the sync thread syncs the one before.
        batch_bytes_max: 4096,
        record_bytes_max: 8192,
        segment_bytes: 1 << 20,
        ..config()
    };
    let (writer, _reader, _report) = open_log(storage, Path::new(DIR), config).expect("open_log");
    let completer = RecCompleter {
        last_ok: 0,
        out_of_order: Arc::new(AtomicUsize::new(0)),
    };
    let gc = Arc::new(GroupCommit::start(writer, RecStage, completer));
    knobs.sync_us.store(200_000, Ordering::Release);
    let runtime = runtime();
    // Appends arrive one per millisecond, not waiting for each other's acks, so that the
    // writer thread always has the next one to write while the sync thread syncs.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = runtime.spawn({
        let (gc, stop) = (Arc::clone(&gc), Arc::clone(&stop));
        async move {
            let mut tasks = Vec::new();
            for i in 0..20_000u32 {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let gc = Arc::clone(&gc);
                tasks.push(tokio::spawn(async move {
                    async_append(&gc, vec![i as u8; 4100]).await
                }));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tasks
        }
    });
    let wait_for = |what: &'static str, done: fn(&Knobs) -> bool| {
        let knobs = Arc::clone(&knobs);
        within(30, what, move || {
            while !done(&knobs) {
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    // While the sync thread syncs, the writer thread does not sync itself: it writes.
    wait_for("a sync on the sync thread", |k| {
        k.syncing_on_sync_thread.load(Ordering::Acquire) > 0
    });
    knobs.panic_write.store(true, Ordering::Release);
    wait_for("the writer thread's panic", |k| {
        !k.panic_write.load(Ordering::Acquire)
    });
    stop.store(true, Ordering::Release);
    assert!(
        knobs.syncing_on_sync_thread.load(Ordering::Acquire) > 0,
        "the writer thread panicked while the sync thread synced"
    );
    let g = Arc::clone(&gc);
    within(30, "close after the writer thread's panic", move || {
        g.close()
    });
    assert_eq!(
        knobs.syncing.load(Ordering::Acquire),
        0,
        "no sync is in progress once close returned"
    );
    let syncs = knobs.syncs.load(Ordering::Acquire);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        knobs.syncs.load(Ordering::Acquire),
        syncs,
        "and none begins after it"
    );
    let outcomes = runtime.block_on(async {
        let mut out = Vec::new();
        for t in producer.await.expect("producer") {
            out.push(t.await.expect("task"));
        }
        out
    });
    assert!(
        outcomes.iter().any(|r| r.is_err()),
        "the appends the panic caught failed"
    );
    let recs = after_power_loss(&mem);
    for o in outcomes.iter().flatten() {
        assert!(recs.contains_key(o), "ack {o} survives a power loss");
    }
}

/// A panic on the writer thread that is not the storage's (a bug in a `Stage`): as it unwinds,
/// the writer thread takes the log as close does, so blocking appenders, which commit on their
/// own threads, are refused as the async ones are, instead of appending on without it; close
/// returns and the store's lock is released.
#[test]
fn a_panic_in_the_writer_threads_stage_closes_the_log_to_every_appender() {
    let mem = MemStorage::new();
    let (gc, _) = start(&mem);
    let gc = Arc::new(gc);
    blocking_append(&gc, b"before".to_vec()).expect("a blocking append");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let panicked = rt.block_on(async_append(&gc, PANIC_IN_PREPARE.to_vec()));
    assert!(panicked.is_err(), "{panicked:?}");
    let g = Arc::clone(&gc);
    let appended = within(10, "a blocking append refused", move || {
        let mut appended = 0;
        while blocking_append(&g, b"after".to_vec()).is_ok() {
            appended += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        appended
    });
    let g = Arc::clone(&gc);
    within(30, "close after the stage's panic", move || g.close());
    let recs = after_power_loss(&mem);
    assert_eq!(
        recs.len(),
        1 + appended,
        "what was acknowledged, and nothing else"
    );
}

/// After a storage panic: the log refuses appends (what reached the files is unknown), left
/// its `POISONED` marker (the next open writes the active segment again before it trusts what
/// reads return), and closes without hanging.
fn refuses_appends_then_closes(wal: Arc<Wal>, mem: &MemStorage, ctx: &str) {
    let w = Arc::clone(&wal);
    let later = within(30, "an append after the panic", move || {
        w.append_blocking(b"later".to_vec())
    });
    assert!(
        matches!(later, Err(WalError::Poisoned { .. })),
        "{ctx}: the log refuses appends ({later:?})"
    );
    let marker = Path::new(DIR).join("wal").join("POISONED");
    assert!(
        ctxlog::storage::Storage::exists(mem, &marker),
        "{ctx}: the poison marker was left"
    );
    within(30, "close after the panic", move || {
        Arc::into_inner(wal).expect("last handle").close()
    });
}

/// Payload `i` of the rotation tests: 4,000 bytes, so that a segment holds a few dozen.
fn big(i: usize) -> Vec<u8> {
    let mut p = format!("record {i};").into_bytes();
    p.resize(4000, b'r');
    p
}

/// How many [`big`] records the first segment of a fresh log takes: the next one rotates.
fn records_per_segment() -> usize {
    let wal = open(&MemStorage::new());
    let mut n = 0;
    while wal.reader().segments().len() == 1 {
        wal.append_blocking(big(n)).expect("append");
        n += 1;
    }
    wal.close();
    n - 1
}

/// Where a rotation's storage panics.
#[derive(Debug, Clone, Copy)]
enum RotationPanic {
    /// The `fdatasync` of the full segment, before it is sealed.
    Sync,
    /// The seal (`set_len`), between two syncs: only the rotation's own guard sees it.
    Seal,
    /// That `fdatasync`, and again the write of the poison marker: a second panic while the
    /// thread unwinds, which would abort the process if it escaped the guard.
    SyncThenMarker,
}

/// A `Storage` that panics in a rotation, from a blocking appender (`blocking`) or from the
/// writer thread (an async appender): the log is poisoned and leaves its marker, so that
/// nothing is appended to a segment that the rotation left in a state nobody knows; nothing
/// acknowledged is lost.
fn panic_in_rotation(blocking: bool, at: RotationPanic) {
    let ctx = format!("{} {at:?}", if blocking { "blocking" } else { "async" });
    let k = records_per_segment();
    let mem = MemStorage::new();
    let (storage, knobs) = Tuned::new(mem.clone());
    let wal = Arc::new(Wal::open(storage, Path::new(DIR), config()).expect("open"));
    for i in 0..k {
        wal.append_blocking(big(i)).expect("append");
    }
    assert_eq!(
        wal.reader().segments().len(),
        1,
        "{ctx}: the next record rotates"
    );
    let knob = match at {
        RotationPanic::Sync | RotationPanic::SyncThenMarker => &knobs.panic_sync,
        RotationPanic::Seal => &knobs.panic_set_len,
    };
    knob.store(true, Ordering::Release);
    // The rotation writes nothing before its sync (this appender's record is not encoded
    // yet), so the next write is the marker's.
    let twice = matches!(at, RotationPanic::SyncThenMarker);
    knobs.panic_write.store(twice, Ordering::Release);
    let w = Arc::clone(&wal);
    let rotating = within(30, "the append that rotates", move || {
        if blocking {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                w.append_blocking(big(k))
            }));
            r.map_err(|_| "panicked".to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        } else {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            rt.block_on(w.append(big(k))).map_err(|e| e.to_string())
        }
    });
    assert!(rotating.is_err(), "{ctx}: the rotating append failed");
    assert!(!knob.load(Ordering::Acquire), "{ctx}: the storage panicked");
    assert!(
        !knobs.panic_write.load(Ordering::Acquire),
        "{ctx}: and the marker's write panicked, if asked to"
    );
    assert_eq!(
        wal.reader().segments().len(),
        1,
        "{ctx}: no segment created"
    );
    refuses_appends_then_closes(wal, &mem, &ctx);
    let recs = after_power_loss(&mem);
    let want: BTreeMap<u64, Vec<u8>> = (0..k).map(|i| (i as u64 + 1, big(i))).collect();
    assert_eq!(
        recs, want,
        "{ctx}: exactly the acknowledged records survive"
    );
}

#[test]
fn a_panic_in_a_blocking_appenders_rotation_poisons_the_log() {
    panic_in_rotation(true, RotationPanic::Sync);
    panic_in_rotation(true, RotationPanic::Seal);
    panic_in_rotation(true, RotationPanic::SyncThenMarker);
}

#[test]
fn a_panic_in_the_writer_threads_rotation_poisons_the_log() {
    panic_in_rotation(false, RotationPanic::Sync);
    panic_in_rotation(false, RotationPanic::Seal);
    panic_in_rotation(false, RotationPanic::SyncThenMarker);
}

/// An append from a `Drop` that runs while the application unwinds from its own panic
/// commits, and poisons nothing: the log's unwind guards count only panics of its storage.
#[test]
fn an_append_from_a_drop_during_an_unrelated_panic_poisons_nothing() {
    struct AppendOnDrop(Arc<Wal>, Arc<Mutex<Option<Result<Appended, WalError>>>>);
    impl Drop for AppendOnDrop {
        fn drop(&mut self) {
            let r = self.0.append_blocking(b"from a drop".to_vec());
            *self.1.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        }
    }
    let mem = MemStorage::new();
    let wal = Arc::new(open(&mem));
    let got = Arc::new(Mutex::new(None));
    let (w, g) = (Arc::clone(&wal), Arc::clone(&got));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _guard = AppendOnDrop(w, g);
        panic!("the application panics");
    }));
    assert!(unwound.is_err());
    let in_drop = got.lock().unwrap_or_else(|e| e.into_inner()).take();
    assert!(matches!(in_drop, Some(Ok(_))), "{in_drop:?}");
    wal.append_blocking(b"after".to_vec())
        .expect("the log is not poisoned");
    Arc::into_inner(wal).expect("last handle").close();
    assert_eq!(after_power_loss(&mem).len(), 2);
}

fn start(mem: &MemStorage) -> (GroupCommit<Req>, Arc<AtomicUsize>) {
    let (writer, _reader, _report) =
        open_log(Arc::new(mem.clone()), Path::new(DIR), config()).expect("open_log");
    let ooo = Arc::new(AtomicUsize::new(0));
    let completer = RecCompleter {
        last_ok: 0,
        out_of_order: Arc::clone(&ooo),
    };
    (GroupCommit::start(writer, RecStage, completer), ooo)
}

/// `close()` while blocking and async appenders run: close returns, every appender ends (no
/// hang), nothing is appended after close returned, every Ok survives a power loss, acks went
/// out in offset order, and the store's lock is released.
#[test]
fn close_while_blocking_and_async_appenders_run_loses_and_hangs_nothing() {
    within(600, "close racing with appenders", || {
        for iter in 0..300 {
            close_while_appending(iter);
        }
    });
}

/// Acknowledged (offset, payload) pairs.
type Acked = Vec<(u64, Vec<u8>)>;

/// Records an append's outcome: an ack goes to `oks`; the log closing ends the appender
/// (false); any other error fails the test.
fn keep_going(oks: &Mutex<Acked>, who: usize, p: Vec<u8>, r: Result<u64, String>) -> bool {
    match r {
        Ok(o) => {
            oks.lock().unwrap().push((o, p));
            true
        }
        Err(e) if e.contains("closed") || e.contains("Closed") || e.contains("dropped") => false,
        Err(e) => panic!("appender {who}: {e}"),
    }
}

fn close_while_appending(iter: usize) {
    {
        let mem = MemStorage::new();
        let (gc, ooo) = start(&mem);
        let gc = Arc::new(gc);
        let rt = runtime();
        let oks: Arc<Mutex<Acked>> = Arc::default();
        let mut handles = Vec::new();
        for who in 0..32 {
            let (gc, oks) = (Arc::clone(&gc), Arc::clone(&oks));
            handles.push(std::thread::spawn(move || {
                for seq in 0.. {
                    let p = payload(who, seq);
                    if !keep_going(&oks, who, p.clone(), blocking_append(&gc, p)) {
                        break;
                    }
                }
            }));
        }
        let tasks: Vec<_> = (100..116)
            .map(|who| {
                let (gc, oks) = (Arc::clone(&gc), Arc::clone(&oks));
                rt.spawn(async move {
                    for seq in 0.. {
                        let p = payload(who, seq);
                        if !keep_going(&oks, who, p.clone(), async_append(&gc, p).await) {
                            break;
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5 + (iter as u64 * 7) % 40));
        gc.close();
        // What the live log holds once close returned: nothing may be added after this.
        let image_at_close = mem.crash_image(CrashMode::ProcessKill);
        for h in handles {
            h.join().expect("appender");
        }
        for t in tasks {
            rt.block_on(t).expect("task");
        }
        drop(rt);
        let at_close = {
            let wal = open(&image_at_close);
            let r = read_all(&wal);
            wal.close();
            r
        };
        let live_after = {
            let wal = open(&mem.crash_image(CrashMode::ProcessKill));
            let r = read_all(&wal);
            wal.close();
            r
        };
        assert_eq!(
            at_close, live_after,
            "iter {iter}: appended after close returned"
        );
        let recs = after_power_loss(&mem);
        let oks = oks.lock().unwrap();
        for (o, p) in oks.iter() {
            assert_eq!(recs.get(o), Some(p), "iter {iter}: acked offset {o} lost");
        }
        assert_eq!(
            ooo.load(Ordering::Acquire),
            0,
            "iter {iter}: acks out of offset order"
        );
        // The store's lock is released: the live store opens again.
        let wal = open(&mem);
        wal.close();
        drop(gc);
    }
}
