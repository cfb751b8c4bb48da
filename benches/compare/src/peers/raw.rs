#![allow(unused_imports)]
//! Peers: see the parent module.

use super::*;
use crate::common::{key, Payloads, Section, BULK_BATCH, PAYLOAD, RAW_FRAME};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// The raw baseline.

/// Bytes of the raw durable file (cycled through, as a preallocated segment would be).
pub(super) const RAW_AREA: u64 = 64 << 20;
/// Size of the raw bulk writes (ctxlog's default `batch_bytes_max`).
pub(super) const RAW_CHUNK: usize = 8 << 20;

pub(super) struct Raw;

pub(super) fn raw_frame(i: u64, p: &[u8; PAYLOAD]) -> [u8; RAW_FRAME] {
    let mut f = [0u8; RAW_FRAME];
    f[..8].copy_from_slice(&i.to_le_bytes());
    f[8..].copy_from_slice(p);
    f
}

pub(super) fn preallocate(file: &std::fs::File, len: u64) {
    let zeros = vec![0u8; RAW_CHUNK];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(RAW_CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at).expect("preallocate");
        at += n as u64;
    }
    file.sync_data().expect("fdatasync");
}

/// The raw durable baseline interleaved with a durable case: single-writer `pwrite` 208 B +
/// `fdatasync` on a small preallocated file in the case's directory, run in slices between
/// the case's own slices (outside the timed sections' markers), so that both see the same
/// state of the disk. This machine's virtual disk drifts by 10-40x within seconds (it behaves
/// like a throttled device with burst credits): only a baseline taken in the same moments is
/// comparable.
pub struct RawBurst {
    pub(super) a: RawAppender,
    pub(super) p: Payloads,
    pub(super) n: u64,
    pub(super) syncs: u64,
    pub(super) elapsed: Duration,
}

impl RawBurst {
    pub fn new(dir: &Path) -> RawBurst {
        std::fs::create_dir_all(dir).unwrap();
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("paired.raw"))
            .expect("create");
        preallocate(&file, 4 << 20);
        RawBurst {
            a: RawAppender {
                file,
                pos: AtomicU64::new(0),
                slots: (4 << 20) / RAW_FRAME as u64,
            },
            p: Payloads::new(),
            n: 0,
            syncs: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Writes and syncs for `dur` (at least `min` times).
    pub fn run(&mut self, dur: Duration, min: u64) {
        let start = std::time::Instant::now();
        let mut k = 0;
        while k < min || start.elapsed() < dur {
            self.n += 1;
            k += 1;
            self.a.append(0, self.n, &self.p.get(self.n));
        }
        self.syncs += k;
        self.elapsed += start.elapsed();
    }

    /// Syncs per second over every slice.
    pub fn rate(&self) -> f64 {
        self.syncs as f64 / self.elapsed.as_secs_f64()
    }
}

pub(super) struct RawAppender {
    pub(super) file: std::fs::File,
    pub(super) pos: AtomicU64,
    /// Frames that fit in the preallocated file (cycled through).
    pub(super) slots: u64,
}

impl Appender for RawAppender {
    fn append(&self, _thread: usize, seq: u64, payload: &[u8; PAYLOAD]) {
        let at = (self.pos.fetch_add(1, Ordering::Relaxed) % self.slots) * RAW_FRAME as u64;
        self.file
            .write_all_at(&raw_frame(seq, payload), at)
            .expect("pwrite");
        self.file.sync_data().expect("fdatasync");
    }
}

impl System for Raw {
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        std::fs::create_dir_all(dir).unwrap();
        let total = n * RAW_FRAME as u64;
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("raw.dat"))
            .expect("create");
        preallocate(&file, total);
        // One chunk of frames, written over and over (building it is outside the clock).
        let per_chunk = RAW_CHUNK / RAW_FRAME;
        let mut chunk = Vec::with_capacity(per_chunk * RAW_FRAME);
        for i in 0..per_chunk as u64 {
            chunk.extend_from_slice(&raw_frame(i, &p.get(i)));
        }
        let t = Section::start();
        let mut at = 0;
        while at < total {
            let len = (total - at).min(chunk.len() as u64) as usize;
            file.write_all_at(&chunk[..len], at).expect("pwrite");
            at += len as u64;
        }
        file.sync_data().expect("fdatasync");
        t.stop()
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let t = Section::start();
        let file = std::fs::File::open(dir.join("raw.dat")).expect("open");
        let len = file.metadata().unwrap().len();
        let chunk_len = RAW_CHUNK / RAW_FRAME * RAW_FRAME;
        let mut buf = vec![0u8; chunk_len];
        let (mut at, mut count, mut sum) = (0u64, 0u64, 0u64);
        while at < len {
            let want = (len - at).min(chunk_len as u64) as usize;
            file.read_exact_at(&mut buf[..want], at).expect("read");
            for f in buf[..want].chunks_exact(RAW_FRAME) {
                let payload = black_box(&f[8..]);
                sum = sum.wrapping_add(u64::from(payload[0]));
                count += 1;
            }
            at += want as u64;
        }
        black_box(sum);
        (t.stop(), count)
    }

    fn open_durable(&self, dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        std::fs::create_dir_all(dir).unwrap();
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("raw.dat"))
            .expect("create");
        preallocate(&file, RAW_AREA);
        Box::new(RawAppender {
            file,
            pos: AtomicU64::new(0),
            slots: RAW_AREA / RAW_FRAME as u64,
        })
    }
}
