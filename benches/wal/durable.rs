//! Durable appends (`Durability::Always`) from 1, 16 and 64 writers, interleaved in 50 ms
//! slices with baseline A on its own file, so that each ratio compares the log and the disk
//! under the same conditions.

use crate::baselines::RawSyncFile;
use crate::counting::{Counters, Counting};
use crate::figures::{record, Call};
use crate::{
    config, group_settings, leaf, payload, DURABLE_1, DURABLE_16, DURABLE_64, PAYLOAD_LEN,
};
use criterion::{Criterion, Throughput};
use ctxlog::wal::{Durability, Wal};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Length of one slice of the durable benchmarks: WAL and baseline A take turns at this
/// granularity, because the shared disk's `fdatasync` rate swings several-fold within seconds.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// What one call of a durable benchmark did: WAL slices and baseline A slices, interleaved.
#[derive(Debug, Default)]
struct Interleaved {
    wal_time: Duration,
    raw_time: Duration,
    raw_syncs: u64,
    /// (WAL commits/s, baseline syncs/s) of each slice pair.
    slices: Vec<(f64, f64)>,
}

/// The commits of the next slice: about [`SLICE`] at the rate seen so far.
fn slice_budget(done: u64, took: Duration, remaining: u64, writers: usize) -> u64 {
    let guess = if done == 0 {
        4 * writers as u64
    } else {
        (done as f64 / took.as_secs_f64() * SLICE.as_secs_f64()) as u64
    };
    guess.max(writers as u64).min(remaining)
}

/// `iters` durable commits from `writers` threads in a closed loop (each appends, waits for its
/// acknowledgement, appends again), cut into slices of about [`SLICE`]; after each slice,
/// baseline A runs on `raw` for as long as the slice took. Spawning the threads is outside the
/// clock; a slice is timed from the release of the writers to the last acknowledgement.
fn durable_interleaved(
    wal: &Wal,
    writers: usize,
    iters: u64,
    payload: &[u8],
    raw: &mut RawSyncFile,
) -> Interleaved {
    let mut out = Interleaved::default();
    let mut raw_slice = |out: &mut Interleaved, commits: u64, wal_slice: Duration| {
        let start = Instant::now();
        let mut syncs = 0u64;
        while syncs == 0 || start.elapsed() < wal_slice {
            raw.write_and_sync();
            syncs += 1;
        }
        let took = start.elapsed();
        out.raw_syncs += syncs;
        out.raw_time += took;
        out.slices.push((
            commits as f64 / wal_slice.as_secs_f64(),
            syncs as f64 / took.as_secs_f64(),
        ));
    };
    let mut remaining = iters;
    let mut done = 0;
    if writers == 1 {
        while remaining > 0 {
            let n = slice_budget(done, out.wal_time, remaining, 1);
            let start = Instant::now();
            for _ in 0..n {
                wal.append_blocking(payload.to_vec()).expect("append");
            }
            let took = start.elapsed();
            out.wal_time += took;
            (remaining, done) = (remaining - n, done + n);
            raw_slice(&mut out, n, took);
        }
        return out;
    }
    let budget = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start_slice = Barrier::new(writers + 1);
    let end_slice = Barrier::new(writers + 1);
    let claim = || {
        budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
            .is_ok()
    };
    std::thread::scope(|s| {
        for _ in 0..writers {
            s.spawn(|| loop {
                start_slice.wait();
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                while claim() {
                    wal.append_blocking(payload.to_vec()).expect("append");
                }
                end_slice.wait();
            });
        }
        while remaining > 0 {
            let n = slice_budget(done, out.wal_time, remaining, writers);
            budget.store(n, Ordering::Relaxed);
            start_slice.wait();
            let start = Instant::now();
            end_slice.wait();
            let took = start.elapsed();
            out.wal_time += took;
            (remaining, done) = (remaining - n, done + n);
            raw_slice(&mut out, n, took);
        }
        stop.store(true, Ordering::Relaxed);
        start_slice.wait();
    });
    out
}

/// Durable appends (`Durability::Always`), interleaved in slices with baseline A on its own
/// file in the same directory (see [`durable_interleaved`]).
pub(crate) fn bench_durable(c: &mut Criterion, root: &Path) {
    let mut g = c.benchmark_group("wal_durable");
    group_settings(&mut g);
    g.measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    let payload = payload();
    for (id, writers) in [(DURABLE_1, 1), (DURABLE_16, 16), (DURABLE_64, 64)] {
        let mut state: Option<(Wal, Arc<Counters>, RawSyncFile)> = None;
        g.bench_function(leaf(id), |b| {
            let (wal, counters, raw) = state.get_or_insert_with(|| {
                let storage = Counting::default();
                let counters = Arc::clone(&storage.counters);
                let dir = root.join(leaf(id));
                let wal =
                    Wal::open(Arc::new(storage), &dir, config(Durability::Always)).expect("open");
                let raw = RawSyncFile::create(&root.join(format!("{}.raw", leaf(id))));
                (wal, counters, raw)
            });
            b.iter_custom(|iters| {
                let before = counters.snapshot();
                let run = durable_interleaved(wal, writers, iters, &payload, raw);
                let after = counters.snapshot();
                let raw_rate = run.raw_syncs as f64 / run.raw_time.as_secs_f64();
                let rate = iters as f64 / run.wal_time.as_secs_f64();
                record(
                    id,
                    Call {
                        ops: iters,
                        bytes: iters * PAYLOAD_LEN as u64,
                        elapsed: run.wal_time,
                        syncs: after.0 - before.0,
                        writes: after.1 - before.1,
                        paired: Some((raw_rate, rate / raw_rate)),
                        slices: run.slices,
                    },
                );
                run.wal_time
            })
        });
        if let Some((wal, _, _)) = state.take() {
            wal.close();
        }
    }
    g.finish();
}
