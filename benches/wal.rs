//! Write-ahead-log benchmarks, each set against a raw-disk baseline measured on the same disk in
//! the same run (method and figures: `docs/PERFORMANCE.md`).
//!
//! | benchmark                     | one criterion iteration                                      |
//! | ----------------------------- | ------------------------------------------------------------ |
//! | `raw/fdatasync_208B`          | baseline A: `pwrite` 208 B to a preallocated file, fdatasync |
//! | `wal_durable/1_writer`        | one `append_blocking` of 200 B, `Durability::Always`         |
//! | `wal_durable/16_writers`      | one commit, 16 threads appending in a closed loop            |
//! | `wal_durable/64_writers`      | one commit, 64 threads appending in a closed loop            |
//! | `raw/seq_write`               | baseline B: the bulk bytes in 8 MiB writes, one fdatasync    |
//! | `wal_bulk/never_close`        | the bulk load: N x 200 B in `Durability::Never`, then close  |
//! | `wal_bulk/diag_stage_batches` | diagnostic: the same load, 1024 records per request          |
//! | `wal_read/scan_all`           | a scan of every record of a reopened N-record log            |
//! | `raw/fdatasync_208B_again`    | baseline A again, to see how far the disk drifted            |
//!
//! Every benchmark times exactly its section with `iter_custom` (opening logs, preallocating
//! files and spawning threads are outside the clock), and keeps its own figures so that the run
//! ends with one summary table of every figure and its ratio to the baseline of the same run.
//! The logs run on a [`Storage`] that wraps [`FsStorage`] and counts `fdatasync`s and writes,
//! which gives records per `fdatasync` without touching the engine.
//!
//! Files go to a temporary directory under `./target` (the real disk, not a tmpfs `/tmp`), or
//! under `$CTXLOG_BENCH_DIR`. `$CTXLOG_BENCH_RECORDS` sets N (default 1,000,000).
//!
//! On a shared machine, other processes' CPU use shows up as scheduling delay after every
//! `fdatasync` (in 4 ms ticks), in the baseline and the log alike; `cargo bench --no-run` then
//! `nice -n -15 cargo bench --bench wal` (as root) keeps that out of the figures. The durable
//! cases interleave the log with baseline A in 50 ms slices so that their ratios compare the
//! two under the same disk conditions.

use criterion::{Criterion, SamplingMode, Throughput};
use ctxlog::storage::{
    write_zeros, FsStorage, LockFailure, LockGuard, Mapped, OpenMode, Storage, StorageFile,
};
use ctxlog::wal::{
    open_log, Completer, Durability, GroupCommit, LogWriter, Reached, Stage, Wal, WalConfig,
    WalError,
};
use ctxlog::Offset;
use ctxlog_format::FrameLayout;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Payload of every WAL record.
const PAYLOAD_LEN: usize = 200;
/// Size of baseline A's raw frames.
const RAW_FRAME_LEN: usize = 208;
/// Space baseline A cycles through (preallocated once, like a segment).
const RAW_AREA: u64 = 64 << 20;
/// Size of baseline B's writes (the WAL's default `batch_bytes_max`).
const RAW_CHUNK: usize = 8 << 20;
/// Tasks appending concurrently in the bulk load (each keeps one append in flight).
const BULK_TASKS: u64 = 4096;
/// Samples criterion takes of every benchmark (its minimum), and the ones the summary uses.
const SAMPLES: usize = 10;

fn bulk_records() -> u64 {
    std::env::var("CTXLOG_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= BULK_TASKS)
        .unwrap_or(1_000_000)
}

/// Bytes of one WAL frame carrying a [`PAYLOAD_LEN`]-byte payload.
fn wal_frame_len() -> u64 {
    FrameLayout::default().frame_len(PAYLOAD_LEN) as u64
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN).map(|i| (i * 31 + 7) as u8).collect()
}

fn config(durability: Durability) -> WalConfig {
    WalConfig {
        durability,
        ..WalConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// A storage that counts fdatasyncs and writes.

#[derive(Debug, Default)]
struct Counters {
    syncs: AtomicU64,
    writes: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> (u64, u64) {
        (
            self.syncs.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug, Default)]
struct Counting {
    counters: Arc<Counters>,
}

#[derive(Debug)]
struct CountingFile {
    inner: Arc<dyn StorageFile>,
    counters: Arc<Counters>,
}

impl StorageFile for CountingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, pos)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.write_all_at(buf, pos)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn map(&self) -> io::Result<Mapped> {
        self.inner.map()
    }
}

impl Storage for Counting {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        FsStorage.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        FsStorage.list(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        FsStorage.exists(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(CountingFile {
            inner: FsStorage.open(path, mode)?,
            counters: Arc::clone(&self.counters),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FsStorage.sync_dir(dir)
    }

    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>, LockFailure> {
        FsStorage.lock(path, holder)
    }

    fn lock_holder(&self, path: &Path) -> Option<String> {
        FsStorage.lock_holder(path)
    }
}

// ---------------------------------------------------------------------------------------------
// What every benchmark measured, for the summary.

/// One call of an `iter_custom` routine (or one bulk load).
#[derive(Debug, Clone, Default)]
struct Call {
    /// Operations done (syncs, commits, records).
    ops: u64,
    /// Payload (or raw) bytes written or read.
    bytes: u64,
    elapsed: Duration,
    /// `fdatasync`s and writes the log issued meanwhile.
    syncs: u64,
    writes: u64,
    /// The rate of the raw baseline run right next to this call on the same disk (syncs/s for
    /// the durable cases, bytes/s for the bulk load), and this call's rate divided by it.
    paired: Option<(f64, f64)>,
    /// For the durable cases: (WAL commits/s, baseline A syncs/s) of each pair of slices.
    slices: Vec<(f64, f64)>,
}

static CALLS: Mutex<Vec<(&'static str, Vec<Call>)>> = Mutex::new(Vec::new());

fn record(id: &'static str, call: Call) {
    let mut calls = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    match calls.iter_mut().find(|(name, _)| *name == id) {
        Some((_, v)) => v.push(call),
        None => calls.push((id, vec![call])),
    }
}

/// A benchmark's figures over its measured samples: the last [`SAMPLES`] calls (criterion's
/// warm-up calls come before them).
#[derive(Debug, Clone, Copy)]
struct Figure {
    /// Median over the samples of operations per second.
    ops_per_s: f64,
    /// Median over the samples of bytes per second.
    bytes_per_s: f64,
    /// Operations per `fdatasync` over the samples (`None` if none was counted).
    ops_per_sync: Option<f64>,
    /// Operations per write over the samples.
    ops_per_write: Option<f64>,
    /// Medians over the samples of the paired baseline's rate and of the ratio to it.
    paired: Option<(f64, f64)>,
    /// Over every slice pair of the samples: the median baseline rate and the median ratio.
    slices: Option<(f64, f64)>,
    /// Slice pairs behind `slices`.
    slice_count: usize,
    samples: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn figure(id: &str) -> Option<Figure> {
    let calls = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    let (_, all) = calls.iter().find(|(name, _)| *name == id)?;
    let measured = &all[all.len().saturating_sub(SAMPLES)..];
    let secs = |c: &Call| c.elapsed.as_secs_f64();
    let ops: u64 = measured.iter().map(|c| c.ops).sum();
    let syncs: u64 = measured.iter().map(|c| c.syncs).sum();
    let writes: u64 = measured.iter().map(|c| c.writes).sum();
    let per = |n: u64| (n > 0).then(|| ops as f64 / n as f64);
    let paired: Vec<(f64, f64)> = measured.iter().filter_map(|c| c.paired).collect();
    let slices: Vec<(f64, f64)> = measured.iter().flat_map(|c| c.slices.clone()).collect();
    Some(Figure {
        ops_per_s: median(measured.iter().map(|c| c.ops as f64 / secs(c)).collect()),
        bytes_per_s: median(measured.iter().map(|c| c.bytes as f64 / secs(c)).collect()),
        ops_per_sync: per(syncs),
        ops_per_write: per(writes),
        paired: (!paired.is_empty()).then(|| {
            (
                median(paired.iter().map(|p| p.0).collect()),
                median(paired.iter().map(|p| p.1).collect()),
            )
        }),
        slices: (!slices.is_empty()).then(|| {
            (
                median(slices.iter().map(|p| p.1).collect()),
                median(slices.iter().map(|p| p.0 / p.1).collect()),
            )
        }),
        slice_count: slices.len(),
        samples: measured.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// The raw baselines.

/// Baseline A's file: 208-byte frames written one after another into a file preallocated with
/// zeros (written, then `fdatasync`ed, as a segment is), `fdatasync` after each.
struct RawSyncFile {
    file: Arc<dyn StorageFile>,
    pos: u64,
    frame: [u8; RAW_FRAME_LEN],
}

impl RawSyncFile {
    fn create(path: &Path) -> RawSyncFile {
        let file = FsStorage.open(path, OpenMode::CreateNew).expect("create");
        write_zeros(&*file, 0, RAW_AREA).expect("preallocate");
        file.sync_data().expect("fdatasync");
        RawSyncFile {
            file,
            pos: 0,
            frame: [0x5a; RAW_FRAME_LEN],
        }
    }

    fn write_and_sync(&mut self) {
        if self.pos + RAW_FRAME_LEN as u64 > RAW_AREA {
            self.pos = 0;
        }
        self.file
            .write_all_at(&self.frame, self.pos)
            .expect("pwrite");
        self.file.sync_data().expect("fdatasync");
        self.pos += RAW_FRAME_LEN as u64;
    }
}

/// Baseline B: `total` bytes in [`RAW_CHUNK`] writes into a new file at `path` preallocated
/// with zeros, then one `fdatasync`. Only the writes and the sync are timed.
fn raw_seq_write(path: &Path, total: u64, chunk: &[u8]) -> Duration {
    let file = FsStorage.open(path, OpenMode::CreateNew).expect("create");
    write_zeros(&*file, 0, total).expect("preallocate");
    file.sync_data().expect("fdatasync");
    let start = Instant::now();
    let mut at = 0;
    while at < total {
        let n = (total - at).min(chunk.len() as u64);
        file.write_all_at(&chunk[..n as usize], at).expect("pwrite");
        at += n;
    }
    file.sync_data().expect("fdatasync");
    let elapsed = start.elapsed();
    drop(file);
    std::fs::remove_file(path).expect("remove");
    elapsed
}

fn raw_chunk() -> Vec<u8> {
    (0..RAW_CHUNK).map(|i| (i * 13 + 1) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// The benchmarks.

const RAW_A: &str = "raw/fdatasync_208B";
const RAW_A_AGAIN: &str = "raw/fdatasync_208B_again";
const RAW_B: &str = "raw/seq_write";
const DURABLE_1: &str = "wal_durable/1_writer";
const DURABLE_16: &str = "wal_durable/16_writers";
const DURABLE_64: &str = "wal_durable/64_writers";
const BULK: &str = "wal_bulk/never_close";
const READ: &str = "wal_read/scan_all";
const BULK_BATCHED: &str = "wal_bulk/diag_stage_batches";

/// The part of a benchmark id after its group.
fn leaf(id: &'static str) -> &'static str {
    id.split_once('/').map_or(id, |(_, leaf)| leaf)
}

fn group_settings(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .nresamples(10_000);
}

/// Baseline A on its own.
fn bench_raw_fdatasync(c: &mut Criterion, root: &Path, id: &'static str) {
    let mut g = c.benchmark_group("raw");
    group_settings(&mut g);
    g.measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    let mut state: Option<RawSyncFile> = None;
    g.bench_function(leaf(id), |b| {
        let raw = state.get_or_insert_with(|| RawSyncFile::create(&root.join(leaf(id))));
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                raw.write_and_sync();
            }
            let elapsed = start.elapsed();
            record(
                id,
                Call {
                    ops: iters,
                    bytes: iters * RAW_FRAME_LEN as u64,
                    elapsed,
                    syncs: iters,
                    writes: iters,
                    ..Call::default()
                },
            );
            elapsed
        })
    });
    g.finish();
}

/// Length of one slice of the durable benchmarks: WAL and baseline A take turns at this
/// granularity, because the shared disk's `fdatasync` rate swings several-fold within seconds.
const SLICE: Duration = Duration::from_millis(50);

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
    let stop = std::sync::atomic::AtomicBool::new(false);
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
fn bench_durable(c: &mut Criterion, root: &Path) {
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

/// Baseline B on its own: the bulk load's bytes (records x frame length).
fn bench_raw_seq_write(c: &mut Criterion, root: &Path) {
    let total = bulk_records() * wal_frame_len();
    let mut g = c.benchmark_group("raw");
    group_settings(&mut g);
    // One write of the bulk bytes takes well under 1 s, but each also preallocates a fresh file
    // outside the clock: keep criterion to one per sample.
    g.measurement_time(Duration::from_secs(1))
        .throughput(Throughput::BytesDecimal(total));
    let chunk = raw_chunk();
    let path = root.join("seq_write.dat");
    g.bench_function(leaf(RAW_B), |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let took = raw_seq_write(&path, total, &chunk);
                record(
                    RAW_B,
                    Call {
                        ops: 1,
                        bytes: total,
                        elapsed: took,
                        syncs: 1,
                        writes: 0,
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

/// Appends `records` payloads in `Durability::Never` to a new log in `dir` and closes it.
/// Opening (which creates and preallocates the first segment) and building the runtime are
/// outside the clock; the appends, the rotations they cause and the close (which writes and
/// `fdatasync`s what is left) are timed. Returns the time and the counted (syncs, writes).
///
/// The appends come from [`BULK_TASKS`] tokio tasks on one runtime thread, each awaiting its
/// `append` before the next: that keeps the writer's queue full (the log has no batch-append
/// call; one thread calling `append_blocking` would wait for one write per record).
fn bulk_load(dir: &Path, records: u64) -> (Duration, (u64, u64)) {
    let storage = Counting::default();
    let counters = Arc::clone(&storage.counters);
    let wal = Wal::open(Arc::new(storage), dir, config(Durability::Never)).expect("open");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let payload: Arc<[u8]> = payload().into();
    let before = counters.snapshot();
    let start = Instant::now();
    let wal = Arc::new(wal);
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..BULK_TASKS {
            let share = records / BULK_TASKS + u64::from(t < records % BULK_TASKS);
            let wal = Arc::clone(&wal);
            let payload = Arc::clone(&payload);
            tasks.spawn(async move {
                for _ in 0..share {
                    wal.append(payload.to_vec()).await.expect("append");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("append task");
        }
    });
    Arc::into_inner(wal).expect("every task is done").close();
    let elapsed = start.elapsed();
    let after = counters.snapshot();
    (elapsed, (after.0 - before.0, after.1 - before.1))
}

/// The bulk load, each one paired with baseline B (the same bytes) run next to it; which of
/// the two goes first alternates.
fn bench_bulk(c: &mut Criterion, root: &Path) {
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

/// Records per request in the diagnostic bulk load.
const DIAG_BATCH: u64 = 1024;
/// Requests the diagnostic bulk load keeps in flight.
const DIAG_IN_FLIGHT: usize = 8;

/// A stage whose requests carry many payloads: what a batch-append call on [`Wal`] would do.
struct BatchStage;

impl Stage for BatchStage {
    type Request = (
        Vec<Vec<u8>>,
        tokio::sync::oneshot::Sender<Result<(), WalError>>,
    );
    type Ack = tokio::sync::oneshot::Sender<Result<(), WalError>>;

    fn prepare(
        &mut self,
        (payloads, reply): Self::Request,
        log: &mut LogWriter,
    ) -> Option<Self::Ack> {
        for p in &payloads {
            if let Err(e) = log.append(p) {
                let _ = reply.send(Err(e));
                return None;
            }
        }
        Some(reply)
    }

    fn refuse(&mut self, (_, reply): Self::Request, error: WalError) {
        let _ = reply.send(Err(error));
    }
}

struct BatchDone;

impl Completer for BatchDone {
    type Ack = tokio::sync::oneshot::Sender<Result<(), WalError>>;

    fn complete(&mut self, acks: Vec<Self::Ack>, result: Result<Reached, &WalError>) {
        for reply in acks {
            let _ = reply.send(result.map(|_| ()).map_err(WalError::clone_shallow));
        }
    }
}

/// Diagnostic: the bulk load of [`bulk_load`] through the log's public pipeline pieces
/// ([`open_log`], [`GroupCommit`] and a [`Stage`]) with [`DIAG_BATCH`] payloads per request
/// instead of one, from one thread keeping [`DIAG_IN_FLIGHT`] requests in flight. It shows what
/// the per-record request and acknowledgement cost of [`Wal::append`] is (same writer, same
/// segments and rotations, same close).
fn bulk_load_batched(dir: &Path, records: u64) -> (Duration, (u64, u64)) {
    let storage = Counting::default();
    let counters = Arc::clone(&storage.counters);
    let (writer, _reader, _report) =
        open_log(Arc::new(storage), dir, config(Durability::Never)).expect("open");
    let commit = GroupCommit::start(writer, BatchStage, BatchDone);
    let payload = payload();
    let before = counters.snapshot();
    let start = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    let mut left = records;
    while left > 0 {
        let n = left.min(DIAG_BATCH);
        left -= n;
        let (reply, rx) = tokio::sync::oneshot::channel();
        let payloads = (0..n).map(|_| payload.clone()).collect();
        commit.submit_blocking((payloads, reply)).expect("submit");
        in_flight.push_back(rx);
        if in_flight.len() > DIAG_IN_FLIGHT {
            let rx = in_flight.pop_front().expect("in flight");
            rx.blocking_recv().expect("ack").expect("append");
        }
    }
    for rx in in_flight {
        rx.blocking_recv().expect("ack").expect("append");
    }
    commit.close();
    let elapsed = start.elapsed();
    let after = counters.snapshot();
    (elapsed, (after.0 - before.0, after.1 - before.1))
}

fn bench_bulk_batched(c: &mut Criterion, root: &Path) {
    let records = bulk_records();
    let payload_bytes = records * PAYLOAD_LEN as u64;
    let mut g = c.benchmark_group("wal_bulk");
    group_settings(&mut g);
    g.measurement_time(Duration::from_secs(4))
        .throughput(Throughput::BytesDecimal(payload_bytes));
    let dir = root.join("bulk-batched");
    g.bench_function(leaf(BULK_BATCHED), |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let (took, (syncs, writes)) = bulk_load_batched(&dir, records);
                std::fs::remove_dir_all(&dir).expect("remove the log");
                record(
                    BULK_BATCHED,
                    Call {
                        ops: records,
                        bytes: payload_bytes,
                        elapsed: took,
                        syncs,
                        writes,
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
fn bench_read(c: &mut Criterion, root: &Path) {
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

// ---------------------------------------------------------------------------------------------
// Where the files are, and the summary.

/// The mount (device, file system type, mount point) holding `path`.
fn mount_of(path: &Path) -> Option<(String, String, String)> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, fs) = (f.next()?, f.next()?, f.next()?);
            Some((dev.to_string(), fs.to_string(), at.to_string()))
        })
        .filter(|(_, _, at)| path.starts_with(at))
        .max_by_key(|(_, _, at)| at.len())
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_opt(v: Option<f64>, prec: usize, suffix: &str) -> String {
    let prec = if v.is_some_and(|v| v >= 1000.0) {
        0
    } else {
        prec
    };
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.prec$}{suffix}"))
}

/// The scheduling priority (nice value) the benchmark runs at.
fn niceness() -> String {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which ends with the last ')'); nice is field 19.
            let rest = stat.rsplit_once(')')?.1;
            rest.split_whitespace().nth(16).map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// One line of the summary table.
#[derive(Default)]
struct Row {
    label: String,
    value: String,
    /// The paired baseline's rate, formatted.
    base: Option<String>,
    /// The ratio the target is judged on.
    ratio: Option<f64>,
    /// The same ratio aggregated per sample (durable rows).
    per_sample: Option<f64>,
    /// The ratio to the stand-alone baseline row of the run.
    vs_run: Option<f64>,
    target: Option<f64>,
    per_sync: Option<f64>,
    per_write: Option<f64>,
}

fn summary(root: &Path, load_at_start: &str) -> String {
    let records = bulk_records();
    let raw_a = figure(RAW_A);
    let raw_b = figure(RAW_B);
    let mut rows = Vec::new();
    if let Some(f) = &raw_a {
        rows.push(Row {
            label: "A raw pwrite 208 B + fdatasync".into(),
            value: format!("{} syncs/s", fmt_rate(f.ops_per_s)),
            ..Row::default()
        });
    }
    if let Some(f) = &raw_b {
        rows.push(Row {
            label: format!(
                "B raw write {:.0} MB + fdatasync",
                f.bytes_per_s / f.ops_per_s / 1e6
            ),
            value: format!("{:.0} MB/s", f.bytes_per_s / 1e6),
            ..Row::default()
        });
    }
    let mut slice_counts = Vec::new();
    for (id, label, target) in [
        (DURABLE_1, "WAL Always, 1 writer", 0.9),
        (DURABLE_16, "WAL Always, 16 writers", 9.0),
        (DURABLE_64, "WAL Always, 64 writers", 25.0),
    ] {
        if let Some(f) = figure(id) {
            slice_counts.push(format!("{}={}", leaf(id), f.slice_count));
            rows.push(Row {
                label: label.into(),
                value: format!("{} commits/s", fmt_rate(f.ops_per_s)),
                base: f.slices.map(|(r, _)| format!("{} syncs/s", fmt_rate(r))),
                ratio: f.slices.map(|(_, x)| x),
                per_sample: f.paired.map(|(_, x)| x),
                vs_run: raw_a.map(|a| f.ops_per_s / a.ops_per_s),
                target: Some(target),
                per_sync: f.ops_per_sync,
                per_write: f.ops_per_write,
            });
        }
    }
    if let Some(f) = figure(BULK) {
        rows.push(Row {
            label: "WAL Never bulk + close".into(),
            value: format!(
                "{:.0} MB/s {}rec/s",
                f.bytes_per_s / 1e6,
                fmt_rate(f.ops_per_s)
            ),
            base: f.paired.map(|(r, _)| format!("{:.0} MB/s", r / 1e6)),
            ratio: f.paired.map(|(_, x)| x),
            vs_run: raw_b.map(|b| f.bytes_per_s / b.bytes_per_s),
            target: Some(0.5),
            per_sync: f.ops_per_sync,
            per_write: f.ops_per_write,
            ..Row::default()
        });
    }
    if let Some(f) = figure(BULK_BATCHED) {
        rows.push(Row {
            label: "diag: bulk, 1024 rec/request".into(),
            value: format!(
                "{:.0} MB/s {}rec/s",
                f.bytes_per_s / 1e6,
                fmt_rate(f.ops_per_s)
            ),
            vs_run: raw_b.map(|b| f.bytes_per_s / b.bytes_per_s),
            per_sync: f.ops_per_sync,
            per_write: f.ops_per_write,
            ..Row::default()
        });
    }
    if let Some(f) = figure(READ) {
        rows.push(Row {
            label: "WAL scan all, reopened".into(),
            value: format!(
                "{}rec/s {:.0} MB/s",
                fmt_rate(f.ops_per_s),
                f.bytes_per_s / 1e6
            ),
            ..Row::default()
        });
    }
    if let Some(f) = figure(RAW_A_AGAIN) {
        rows.push(Row {
            label: "A again, at the end (drift)".into(),
            value: format!("{} syncs/s", fmt_rate(f.ops_per_s)),
            vs_run: raw_a.map(|a| f.ops_per_s / a.ops_per_s),
            ..Row::default()
        });
    }

    let mut out = String::new();
    let _ = writeln!(out, "\n==== ctxlog WAL benchmark summary ====");
    let place = mount_of(root).map_or_else(String::new, |(dev, fs, at)| {
        format!(" on {dev} ({fs}, mounted at {at})")
    });
    let _ = writeln!(out, "files in {}{place}", root.display());
    let _ = writeln!(
        out,
        "load average (1/5/15 min) at start {load_at_start}, at end {}; nice {}",
        loadavg(),
        niceness()
    );
    let _ = writeln!(
        out,
        "payload {PAYLOAD_LEN} B (frame {} B), segment_bytes 64 MiB (default), bulk/read {records} \
         records; values are medians of {SAMPLES} criterion samples",
        wal_frame_len()
    );
    let _ = writeln!(
        out,
        "durable rows: base = baseline A interleaved in {} ms slices (median), ratio = median \
         slice ratio, per-sample = median of per-sample ratios",
        SLICE.as_millis()
    );
    let _ = writeln!(
        out,
        "bulk row: base = baseline B (same bytes) next to each load, ratio = median of payload \
         MB/s / raw MB/s; vs-run = ratio to the stand-alone A or B row\n"
    );
    let _ = writeln!(
        out,
        "{:<32} {:>26} {:>15} {:>8} {:>10} {:>8} {:>7} {:>5} {:>9} {:>9}",
        "figure",
        "value",
        "base",
        "ratio",
        "per-sample",
        "vs-run",
        "target",
        "holds",
        "rec/sync",
        "rec/write"
    );
    for r in &rows {
        let holds = match (r.ratio, r.target) {
            (Some(x), Some(t)) if x >= t => "yes",
            (Some(_), Some(_)) => "NO",
            _ => "-",
        };
        let _ = writeln!(
            out,
            "{:<32} {:>26} {:>15} {:>8} {:>10} {:>8} {:>7} {:>5} {:>9} {:>9}",
            r.label,
            r.value,
            r.base.as_deref().unwrap_or("-"),
            fmt_opt(r.ratio, 2, "x"),
            fmt_opt(r.per_sample, 2, "x"),
            fmt_opt(r.vs_run, 2, "x"),
            r.target.map_or_else(|| "-".into(), |t| format!(">={t}x")),
            holds,
            fmt_opt(r.per_sync, 1, ""),
            fmt_opt(r.per_write, 1, ""),
        );
    }
    if let Some(f) = figure(READ) {
        let holds = if f.ops_per_s >= 10e6 { "yes" } else { "NO" };
        let _ = writeln!(
            out,
            "\nread target >= 10 M rec/s: {holds} ({} rec/s)",
            fmt_rate(f.ops_per_s)
        );
    }
    if !slice_counts.is_empty() {
        let _ = writeln!(out, "slice pairs: {}", slice_counts.join(" "));
    }
    let ids: Vec<&'static str> = CALLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(id, _)| *id)
        .collect();
    let counts: Vec<String> = ids
        .iter()
        .map(|id| format!("{}={}", leaf(id), figure(id).map_or(0, |f| f.samples)))
        .collect();
    let _ = writeln!(out, "samples used: {}", counts.join(" "));
    out
}

fn bench_root() -> tempfile::TempDir {
    let base =
        std::env::var_os("CTXLOG_BENCH_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    std::fs::create_dir_all(&base).expect("create the bench directory");
    tempfile::Builder::new()
        .prefix("ctxlog-bench-")
        .tempdir_in(&base)
        .expect("create a temporary directory")
}

fn main() {
    let root = bench_root();
    let load_at_start = loadavg();
    let mut c = Criterion::default().configure_from_args();
    bench_raw_fdatasync(&mut c, root.path(), RAW_A);
    bench_durable(&mut c, root.path());
    bench_raw_seq_write(&mut c, root.path());
    bench_bulk(&mut c, root.path());
    bench_bulk_batched(&mut c, root.path());
    bench_read(&mut c, root.path());
    bench_raw_fdatasync(&mut c, root.path(), RAW_A_AGAIN);
    c.final_summary();
    // `cargo test` runs each benchmark once, unoptimised: no figures worth a summary.
    let measuring = std::env::args().any(|a| a == "--bench");
    if measuring && !CALLS.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        println!("{}", summary(root.path(), &load_at_start));
    }
}
