//! The bulk load (`Durability::Never` through `Wal::append_batch_blocking`, then close), paired
//! with baseline B, and the scan of a reopened log.

use crate::baselines::{raw_chunk, raw_seq_write};
use crate::counting::Counting;
use crate::figures::{record, Call};
use crate::{
    bulk_records, config, group_settings, leaf, payload, wal_frame_len, BULK, PAYLOAD_LEN, READ,
};
use criterion::{Criterion, Throughput};
use ctxlog::storage::FsStorage;
use ctxlog::wal::{Durability, Wal, WalConfig};
use ctxlog::Offset;
use std::hint::black_box;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Threads appending concurrently in the bulk load, each with one batch in flight.
pub(crate) const BULK_THREADS: usize = 4;
/// Records per `append_batch_blocking` call in the bulk load.
pub(crate) const BULK_BATCH: u64 = 1024;

/// Appends `records` payloads in `Durability::Never` to a new log in `dir` and closes it.
/// Opening (which creates and reserves the first segment) and spawning the threads are outside
/// the clock; the appends, the rotations they cause and the close (which writes and
/// `fdatasync`s what is left) are timed. Returns the time and the counted (syncs, writes).
///
/// The appends come from [`BULK_THREADS`] threads, each calling `Wal::append_batch_blocking`
/// with [`BULK_BATCH`] payloads at a time: one request and one acknowledgement per call, which
/// is the log's bulk path. Building each call's `RecordBatch` (one buffer of payloads) is inside
/// the clock, as it is for any caller.
fn bulk_load(dir: &Path, records: u64) -> (Duration, (u64, u64)) {
    let storage = Counting::default();
    let counters = Arc::clone(&storage.counters);
    let wal = Wal::open(Arc::new(storage), dir, config(Durability::Never)).expect("open");
    let payload = payload();
    let ready = Barrier::new(BULK_THREADS + 1);
    let before = counters.snapshot();
    let start = std::thread::scope(|s| {
        let threads = BULK_THREADS as u64;
        for t in 0..threads {
            let share = records / threads + u64::from(t < records % threads);
            let (wal, payload, ready) = (&wal, &payload, &ready);
            s.spawn(move || {
                ready.wait();
                let mut left = share;
                while left > 0 {
                    let n = left.min(BULK_BATCH);
                    left -= n;
                    let batch = std::iter::repeat_n(payload.as_slice(), n as usize).collect();
                    wal.append_batch_blocking(batch).expect("append batch");
                }
            });
        }
        ready.wait();
        Instant::now()
    });
    wal.close();
    let elapsed = start.elapsed();
    let after = counters.snapshot();
    (elapsed, (after.0 - before.0, after.1 - before.1))
}

/// The bulk load, each one paired with baseline B (the same bytes) run next to it; which of
/// the two goes first alternates.
pub(crate) fn bench_bulk(c: &mut Criterion, root: &Path) {
    let records = bulk_records();
    let payload_bytes = records * PAYLOAD_LEN as u64;
    let raw_bytes = records * wal_frame_len();
    let mut g = c.benchmark_group("wal_bulk");
    group_settings(&mut g);
    g.measurement_time(Duration::from_secs(8))
        .throughput(Throughput::BytesDecimal(payload_bytes));
    let dir = root.join("bulk");
    let raw_path = root.join("bulk.raw");
    let chunk = raw_chunk();
    let mut round = 0u64;
    g.bench_function(leaf(BULK), |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let raw_first = round.is_multiple_of(2);
                let raw = raw_first.then(|| raw_seq_write(&raw_path, raw_bytes, &chunk));
                let (took, (syncs, writes)) = bulk_load(&dir, records);
                std::fs::remove_dir_all(&dir).expect("remove the log");
                let raw = raw.unwrap_or_else(|| raw_seq_write(&raw_path, raw_bytes, &chunk));
                let raw_rate = raw_bytes as f64 / raw.as_secs_f64();
                let rate = payload_bytes as f64 / took.as_secs_f64();
                record(
                    BULK,
                    Call {
                        ops: records,
                        bytes: payload_bytes,
                        elapsed: took,
                        syncs,
                        writes,
                        paired: Some((raw_rate, rate / raw_rate)),
                        ..Call::default()
                    },
                );
                elapsed += took;
            }
            elapsed
        })
    });
    g.finish();
}

/// Reads every record of a reopened log of `bulk_records()` records: sealed segments through
/// their mappings, the last (active) one through its file.
pub(crate) fn bench_read(c: &mut Criterion, root: &Path) {
    let records = bulk_records();
    let mut g = c.benchmark_group("wal_read");
    group_settings(&mut g);
    g.measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(records));
    let mut state: Option<Wal> = None;
    g.bench_function(leaf(READ), |b| {
        let wal = state.get_or_insert_with(|| {
            let dir = root.join("read");
            bulk_load(&dir, records);
            // Open runs recovery, which maps and checks every segment: outside the clock.
            Wal::open(Arc::new(FsStorage), &dir, WalConfig::default()).expect("reopen")
        });
        let reader = wal.reader();
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let (mut n, mut bytes) = (0u64, 0u64);
                let start = Instant::now();
                reader
                    .scan(Offset(1), Offset(u64::MAX), |r| {
                        n += 1;
                        bytes += black_box(r.payload).len() as u64;
                        ControlFlow::Continue(())
                    })
                    .expect("scan");
                let took = start.elapsed();
                assert_eq!(n, records, "every record read back");
                record(
                    READ,
                    Call {
                        ops: n,
                        bytes,
                        elapsed: took,
                        ..Call::default()
                    },
                );
                elapsed += took;
            }
            elapsed
        })
    });
    if let Some(wal) = state.take() {
        wal.close();
    }
    g.finish();
}
