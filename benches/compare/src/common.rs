//! What every system and case shares: payloads, keys, the timed-section markers, sizes.

use std::path::Path;
use std::time::{Duration, Instant};

/// Payload of every record.
pub const PAYLOAD: usize = 200;
/// Frame of the raw baseline: an 8-byte header (the record's index) and the payload.
pub const RAW_FRAME: usize = 208;
/// Distinct pseudo-random payloads cycled through (819 KB: more than any compressor's window
/// in the peers, so that no peer gains from compression on this data).
const POOL: usize = 4096;
/// Records per batch in the bulk loads of the peers that have a batch call.
pub const BULK_BATCH: usize = 128;

/// Sizes for one child run (passed on its command line).
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Records in the bulk load (and read back at reopen).
    pub records: u64,
    /// Durable appends of the single writer.
    pub appends: u64,
    /// Length of each group run, in seconds.
    pub group_secs: f64,
}

/// The payload pool; record `i` is `pool[i % POOL]` with its first 8 bytes replaced by `i`.
pub struct Payloads {
    pool: Vec<[u8; PAYLOAD]>,
}

impl Payloads {
    pub fn new() -> Payloads {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let pool = (0..POOL)
            .map(|_| {
                let mut p = [0u8; PAYLOAD];
                for c in p.chunks_mut(8) {
                    let v = next().to_le_bytes();
                    c.copy_from_slice(&v[..c.len()]);
                }
                p
            })
            .collect();
        Payloads { pool }
    }

    /// Record `i`'s payload (its first 8 bytes are `i`, little-endian).
    pub fn get(&self, i: u64) -> [u8; PAYLOAD] {
        let mut p = self.pool[(i % POOL as u64) as usize];
        p[..8].copy_from_slice(&i.to_le_bytes());
        p
    }
}

/// Key of record `seq` of writer `thread` in the key-value peers (big-endian: in order).
pub fn key(thread: usize, seq: u64) -> [u8; 8] {
    (((thread as u64) << 40) | seq).to_be_bytes()
}

/// Marks the start and end of a timed section in the strace log: `fsync(-7001)` and
/// `fsync(-7002)` fail with EBADF and touch nothing, but strace records them in order with
/// every sync call of every thread, so the parent counts the calls between them.
fn marker(n: i32) {
    // SAFETY: fsync on a negative descriptor only returns EBADF.
    unsafe {
        libc::fsync(-n);
    }
}

pub const MARK_START: i32 = 7001;
pub const MARK_END: i32 = 7002;

/// A timed section: [`Section::start`] marks and starts the clock, [`Section::stop`] stops it
/// and marks.
pub struct Section(Instant);

impl Section {
    pub fn start() -> Section {
        marker(MARK_START);
        Section(Instant::now())
    }

    pub fn stop(self) -> Duration {
        let d = self.0.elapsed();
        marker(MARK_END);
        d
    }
}

/// Bytes allocated on disk under `dir` (st_blocks x 512, as `du` counts).
pub fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if m.is_dir() {
            total += disk_bytes(&e.path());
        } else {
            total += m.blocks() * 512;
        }
    }
    total
}

/// A field of `/proc/self/status`, in KiB.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
