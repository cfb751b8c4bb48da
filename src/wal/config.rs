//! Configuration of the log: every field documents its default and bounds.

use super::WalError;
use ctxlog_format::layout::{body_start, RECORD_PAYLOAD_MAX};
use ctxlog_format::FrameLayout;
use std::time::Duration;

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged means on stable storage: the record was written and `fdatasync`ed. No crash
    /// at any instant loses an acknowledged record. The default.
    #[default]
    Always,
    /// Acknowledged once written to the OS; `fdatasync` runs at most `max_delay` after the first
    /// unsynced write. A power loss may lose the last `max_delay` of acknowledged records (never
    /// corrupt them); a process crash loses nothing.
    Batched {
        /// Longest time an acknowledged record stays unsynced.
        max_delay: Duration,
    },
    /// Acknowledged once written to the OS; synced at rotation and close, and in the
    /// background every 8 MiB written (so that a rotation does not stall on a whole segment
    /// of dirty pages). For tests and bulk loads.
    Never,
}

/// What durability an acknowledged append reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reached {
    /// Written and `fdatasync`ed.
    Synced,
    /// Written to the OS, not yet synced.
    Written,
}

/// How much damage open tolerates, after RocksDB's WAL recovery modes. Whatever a mode drops is
/// reported in [`RecoveryReport`](super::RecoveryReport); nothing is deleted silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// A torn record at the end of the last segment (a crash mid-write) is truncated and
    /// reported; anything else that fails a check is a corruption error. The default.
    #[default]
    TolerateCorruptedTail,
    /// Any failed check, a torn tail included, is an error: open changes nothing.
    AbsoluteConsistency,
    /// Recover up to the first failed check anywhere and drop everything after it, keeping the
    /// dropped bytes aside (`*.dropped` files in `wal/`) and reporting them.
    PointInTime,
}

/// How a new segment's space is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preallocate {
    /// `Zeroed` in `Always` and `Batched` modes, `Sparse` in `Never` mode. The default.
    #[default]
    Auto,
    /// Zeros written and synced when the segment is created: an append's `fdatasync` then
    /// persists data blocks only, never a size or extent change (cheapest durable appends).
    Zeroed,
    /// The file is only extended (`set_len`): no bytes written up front (cheapest bulk loads),
    /// at the price of a metadata update in each later `fdatasync`.
    Sparse,
}

/// Configuration of the write-ahead log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Size a segment is preallocated to; a segment rotates when the next record does not fit.
    /// Default 64 MiB; bounds 64 KiB ..= 4 GiB.
    pub segment_bytes: u64,
    /// Largest record payload accepted; larger appends fail with
    /// [`WalError::RecordTooLarge`] before anything is written. Default 32 MiB; bounds
    /// 1 ..= 256 MiB, and a record must fit in an empty segment.
    pub record_bytes_max: u64,
    /// When appends are acknowledged. Default [`Durability::Always`].
    pub durability: Durability,
    /// What open tolerates. Default [`RecoveryMode::TolerateCorruptedTail`].
    pub recovery: RecoveryMode,
    /// Appends that may wait for the writer before new appenders wait for room. Default 8192;
    /// bounds 1 ..= 1,048,576.
    pub queue_depth: usize,
    /// Most payload bytes gathered into one write. Default 8 MiB; bounds 4 KiB ..= 256 MiB.
    pub batch_bytes_max: usize,
    /// Check every record of every sealed segment at open (default true). The engine turns
    /// it off: it checks every record it replays (everything after its snapshot), so open
    /// time does not grow with the length of the history; `verify` checks the rest.
    /// Headers, names and the last segment are always checked.
    pub verify_sealed_on_open: bool,
    /// Create new stores tamper-evident: every record carries a BLAKE3 chain hash over the
    /// previous one, its offset and its payload (log-format/FORMAT.md). Chosen once, when the
    /// store is created; an existing store keeps what its segment headers say. Default false.
    pub chain_hash: bool,
    /// How new segments reserve their space. Default [`Preallocate::Auto`].
    pub preallocate: Preallocate,
}

impl WalConfig {
    /// True if new segments are zero-filled (see [`Preallocate`]).
    pub fn zero_fill(&self) -> bool {
        match self.preallocate {
            Preallocate::Zeroed => true,
            Preallocate::Sparse => false,
            Preallocate::Auto => self.durability != Durability::Never,
        }
    }
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_bytes: 64 * 1024 * 1024,
            record_bytes_max: 32 * 1024 * 1024,
            durability: Durability::Always,
            recovery: RecoveryMode::TolerateCorruptedTail,
            queue_depth: 8192,
            batch_bytes_max: 8 * 1024 * 1024,
            verify_sealed_on_open: true,
            chain_hash: false,
            preallocate: Preallocate::Auto,
        }
    }
}

fn check(ok: bool, field: &'static str, reason: impl FnOnce() -> String) -> Result<(), WalError> {
    if ok {
        Ok(())
    } else {
        Err(WalError::InvalidConfig {
            field,
            reason: reason(),
        })
    }
}

impl WalConfig {
    /// Checks every bound; open calls this first.
    pub fn validate(&self) -> Result<(), WalError> {
        let seg = self.segment_bytes;
        check((64 << 10..=4 << 30).contains(&seg), "segment_bytes", || {
            format!("{seg} is outside 64 KiB ..= 4 GiB")
        })?;
        let rec = self.record_bytes_max;
        check(
            (1..=u64::from(RECORD_PAYLOAD_MAX)).contains(&rec),
            "record_bytes_max",
            || format!("{rec} is outside 1 ..= {RECORD_PAYLOAD_MAX}"),
        )?;
        let chain = self.chain_hash;
        let largest_frame = FrameLayout { chain_hash: chain }.frame_len(rec as usize) as u64;
        check(
            body_start(chain) as u64 + largest_frame <= seg,
            "record_bytes_max",
            || format!("a {rec}-byte record does not fit in a {seg}-byte segment"),
        )?;
        let depth = self.queue_depth;
        check((1..=1 << 20).contains(&depth), "queue_depth", || {
            format!("{depth} is outside 1 ..= 1048576")
        })?;
        let batch = self.batch_bytes_max;
        check(
            (4 << 10..=256 << 20).contains(&batch),
            "batch_bytes_max",
            || format!("{batch} is outside 4 KiB ..= 256 MiB"),
        )?;
        if let Durability::Batched { max_delay } = self.durability {
            check(max_delay <= Duration::from_secs(60), "durability", || {
                format!("batched max_delay {max_delay:?} exceeds 60 s")
            })?;
        }
        Ok(())
    }
}
