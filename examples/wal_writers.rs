//! Closed-loop durable writers on a real directory: N threads each append 200 B with
//! `Wal::append_blocking` (`Durability::Always`) for S seconds. Prints commits/s, records per
//! `fdatasync` and syncs/s. `docs/PERFORMANCE.md` ("Write groups") quotes it under
//! `perf stat` and next to CPU-bound processes.
//!
//! ```text
//! cargo run --release --example wal_writers -- DIR THREADS SECONDS
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
    let (dir, threads, secs): (_, usize, f64) = match args.as_slice() {
        [] => (scratch.path().join("store"), 16, 1.0),
        [dir, threads, secs] => (
            std::path::PathBuf::from(dir),
            (threads.parse()).map_err(|e| format!("THREADS {threads:?}: {e}"))?,
            (secs.parse()).map_err(|e| format!("SECONDS {secs:?}: {e}"))?,
        ),
        _ => return Err("usage: wal_writers [DIR THREADS SECONDS]".into()),
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
    let commits: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        wal.append_blocking(vec![7u8; 200]).expect("append");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().expect("writer")).sum()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let stats = wal.reader().stats();
    println!(
        "{threads} writers: {:.1} k commits/s, {:.1} records/sync, {:.2} k syncs/s",
        commits as f64 / elapsed / 1e3,
        stats.records as f64 / stats.syncs.max(1) as f64,
        stats.syncs as f64 / elapsed / 1e3
    );
    Arc::into_inner(wal).expect("last handle").close();
    Ok(())
}
