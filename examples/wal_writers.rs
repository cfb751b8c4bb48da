//! Durable writers on a real directory: N threads each append 200 B with
//! `Wal::append_blocking` (`Durability::Always`) for S seconds, in a closed loop or sleeping
//! THINK_US microseconds after each append (appenders that do other work between appends).
//! Prints commits/s, records per `fdatasync`, syncs/s, and the mean and 99th percentile of an
//! append. `docs/PERFORMANCE.md` ("Write groups", "Claim and take over") quotes it.
//!
//! ```text
//! cargo run --release --example wal_writers -- DIR THREADS SECONDS [THINK_US]
//! cargo run --release --example wal_writers        # 16 writers, 1 s, in a temporary directory
//! ```
//!
//! DIR is removed first: point it at a scratch directory on the disk to measure.

use ctxlog::storage::FsStorage;
use ctxlog::wal::{Durability, Wal, WalConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scratch = tempfile::tempdir()?;
    let (dir, threads, secs, think): (_, usize, f64, u64) = match args.as_slice() {
        [] => (scratch.path().join("store"), 16, 1.0, 0),
        [dir, threads, secs, think @ ..] if think.len() <= 1 => (
            std::path::PathBuf::from(dir),
            (threads.parse()).map_err(|e| format!("THREADS {threads:?}: {e}"))?,
            (secs.parse()).map_err(|e| format!("SECONDS {secs:?}: {e}"))?,
            match think {
                [us] => (us.parse()).map_err(|e| format!("THINK_US {us:?}: {e}"))?,
                _ => 0,
            },
        ),
        _ => return Err("usage: wal_writers [DIR THREADS SECONDS [THINK_US]]".into()),
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let config = WalConfig {
        durability: Durability::Always,
        ..WalConfig::default()
    };
    let wal = Arc::new(Wal::open(Arc::new(FsStorage), &dir, config)?);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    // Each append's time, in tenths of a microsecond.
    let mut took: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut took = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        wal.append_blocking(vec![7u8; 200]).expect("append");
                        took.push((t.elapsed().as_nanos() / 100).min(u32::MAX as u128) as u32);
                        if think > 0 {
                            std::thread::sleep(Duration::from_micros(think));
                        }
                    }
                    took
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        (handles.into_iter())
            .flat_map(|h| h.join().expect("writer"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let stats = wal.reader().stats();
    took.sort_unstable();
    let commits = took.len().max(1);
    let mean = took.iter().map(|&t| t as f64).sum::<f64>() / commits as f64 / 10.0;
    let p99 = took.get(commits * 99 / 100).copied().unwrap_or(0) as f64 / 10.0;
    println!(
        "{threads} writers, think {think} us: {:.1} k commits/s, {:.1} records/sync, \
         {:.2} k syncs/s, append mean {mean:.0} us, p99 {p99:.0} us",
        took.len() as f64 / elapsed / 1e3,
        stats.records as f64 / stats.syncs.max(1) as f64,
        stats.syncs as f64 / elapsed / 1e3
    );
    Arc::into_inner(wal).expect("last handle").close();
    Ok(())
}
