//! Write-ahead-log benchmarks, each set against a raw-disk baseline measured on the same disk in
//! the same run (method and figures: `docs/PERFORMANCE.md`).
//!
//! | benchmark                  | one criterion iteration                                          |
//! | -------------------------- | ---------------------------------------------------------------- |
//! | `raw/fdatasync_208B`       | baseline A: `pwrite` 208 B to a preallocated file, fdatasync     |
//! | `wal_durable/1_writer`     | one `append_blocking` of 200 B, `Durability::Always`             |
//! | `wal_durable/16_writers`   | one commit, 16 threads appending in a closed loop                |
//! | `wal_durable/64_writers`   | one commit, 64 threads appending in a closed loop                |
//! | `raw/seq_write`            | baseline B: the bulk bytes in 8 MiB writes, one fdatasync        |
//! | `wal_bulk/never_close`     | the bulk load: N x 200 B in `Durability::Never` through          |
//! |                            | `append_batch_blocking` (4 threads, 1,024 per call), then close  |
//! | `wal_read/scan_all`        | a scan of every record of a reopened N-record log                |
//! | `raw/fdatasync_208B_again` | baseline A again, to see how far the disk drifted                |
//!
//! Every benchmark times exactly its section with `iter_custom` (opening logs, preallocating
//! files and spawning threads are outside the clock), and keeps its own figures so that the run
//! ends with one summary table of every figure and its ratio to the baseline of the same run.
//! The logs run on a storage that wraps `FsStorage` and counts `fdatasync`s and writes
//! ([`counting`]), which gives records per `fdatasync` without touching the engine.
//!
//! Files go to a temporary directory under `./target` (the real disk, not a tmpfs `/tmp`), or
//! under `$CTXLOG_BENCH_DIR`. `$CTXLOG_BENCH_RECORDS` sets N (default 1,000,000).
//!
//! On a shared machine, other processes' CPU use shows up as scheduling delay after every
//! `fdatasync` (in 4 ms ticks), in the baseline and the log alike; `cargo bench --no-run` then
//! `nice -n -15 cargo bench --bench wal` (as root) keeps that out of the figures. The durable
//! cases interleave the log with baseline A in 50 ms slices so that their ratios compare the
//! two under the same disk conditions.
//!
//! Modules: [`baselines`] (raw A and B), [`counting`] (the counting storage), [`figures`] (what
//! each benchmark measured), [`durable`], [`bulk`] (bulk load and read), [`summary`].

mod baselines;
mod bulk;
mod counting;
mod durable;
mod figures;
mod summary;

use criterion::{Criterion, SamplingMode};
use ctxlog::wal::{Durability, WalConfig};
use ctxlog_format::FrameLayout;
use std::path::PathBuf;
use std::time::Duration;

/// Payload of every WAL record.
const PAYLOAD_LEN: usize = 200;
/// Samples criterion takes of every benchmark (its minimum), and the ones the summary uses.
const SAMPLES: usize = 10;

const RAW_A: &str = "raw/fdatasync_208B";
const RAW_A_AGAIN: &str = "raw/fdatasync_208B_again";
const RAW_B: &str = "raw/seq_write";
const DURABLE_1: &str = "wal_durable/1_writer";
const DURABLE_16: &str = "wal_durable/16_writers";
const DURABLE_64: &str = "wal_durable/64_writers";
const BULK: &str = "wal_bulk/never_close";
const READ: &str = "wal_read/scan_all";

/// Records of the bulk and read logs: `$CTXLOG_BENCH_RECORDS`, default 1,000,000.
fn bulk_records() -> u64 {
    std::env::var("CTXLOG_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= bulk::BULK_THREADS as u64)
        .unwrap_or(1_000_000)
}

/// Bytes of one WAL frame carrying a [`PAYLOAD_LEN`]-byte payload.
fn wal_frame_len() -> u64 {
    FrameLayout::default().frame_len(PAYLOAD_LEN) as u64
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN).map(|i| (i * 31 + 7) as u8).collect()
}

/// The default configuration (64 MiB segments, `Preallocate::Auto`) with `durability`.
fn config(durability: Durability) -> WalConfig {
    WalConfig {
        durability,
        ..WalConfig::default()
    }
}

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
    let load_at_start = summary::loadavg();
    let mut c = Criterion::default().configure_from_args();
    baselines::bench_raw_fdatasync(&mut c, root.path(), RAW_A);
    durable::bench_durable(&mut c, root.path());
    baselines::bench_raw_seq_write(&mut c, root.path());
    bulk::bench_bulk(&mut c, root.path());
    bulk::bench_read(&mut c, root.path());
    baselines::bench_raw_fdatasync(&mut c, root.path(), RAW_A_AGAIN);
    c.final_summary();
    // `cargo test` runs each benchmark once, unoptimised: no figures worth a summary.
    let measuring = std::env::args().any(|a| a == "--bench");
    if measuring && figures::any() {
        println!("{}", summary::summary(root.path(), &load_at_start));
    }
}
