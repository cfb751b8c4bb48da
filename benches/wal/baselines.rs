//! The raw-disk baselines, on the same file system as the logs:
//!
//! - **A**: a 208-byte `pwrite` at the next position of a file preallocated with zeros, then
//!   `fdatasync` (what one durable commit of one small record costs the disk);
//! - **B**: the bulk load's bytes in 8 MiB `pwrite`s into a new file preallocated with zeros,
//!   then one `fdatasync`.

use crate::figures::{record, Call};
use crate::{bulk_records, group_settings, leaf, wal_frame_len, RAW_B};
use criterion::{Criterion, Throughput};
use ctxlog::storage::{write_zeros, FsStorage, OpenMode, Storage, StorageFile};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of baseline A's raw frames.
const RAW_FRAME_LEN: usize = 208;
/// Space baseline A cycles through (preallocated once, like a segment).
const RAW_AREA: u64 = 64 << 20;
/// Size of baseline B's writes (the WAL's default `batch_bytes_max`).
const RAW_CHUNK: usize = 8 << 20;

/// Baseline A's file: 208-byte frames written one after another into a file preallocated with
/// zeros (written, then `fdatasync`ed, as a segment is), `fdatasync` after each.
pub(crate) struct RawSyncFile {
    file: Arc<dyn StorageFile>,
    pos: u64,
    frame: [u8; RAW_FRAME_LEN],
}

impl RawSyncFile {
    pub(crate) fn create(path: &Path) -> RawSyncFile {
        let file = FsStorage.open(path, OpenMode::CreateNew).expect("create");
        write_zeros(&*file, 0, RAW_AREA).expect("preallocate");
        file.sync_data().expect("fdatasync");
        RawSyncFile {
            file,
            pos: 0,
            frame: [0x5a; RAW_FRAME_LEN],
        }
    }

    pub(crate) fn write_and_sync(&mut self) {
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
pub(crate) fn raw_seq_write(path: &Path, total: u64, chunk: &[u8]) -> Duration {
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

/// The data baseline B writes, one [`RAW_CHUNK`].
pub(crate) fn raw_chunk() -> Vec<u8> {
    (0..RAW_CHUNK).map(|i| (i * 13 + 1) as u8).collect()
}

/// Baseline A on its own (run first as `RAW_A`, and last as `RAW_A_AGAIN` to measure drift).
pub(crate) fn bench_raw_fdatasync(c: &mut Criterion, root: &Path, id: &'static str) {
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

/// Baseline B on its own: the bulk load's bytes (records x frame length).
pub(crate) fn bench_raw_seq_write(c: &mut Criterion, root: &Path) {
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
