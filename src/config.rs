//! Configuration of a store: every field documents its default and bounds.

use crate::error::InvalidInput;
use crate::model::VALUE_BYTES_MAX_DEFAULT;
use crate::storage::{FsStorage, Storage};
use crate::wal::{Durability, RecoveryMode, WalConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// Configuration for [`create_manager_with_config`](crate::create_manager_with_config).
#[derive(Debug, Clone)]
pub struct Config {
    /// The store's directory. Created if missing.
    pub dir: PathBuf,
    /// When a commit is acknowledged. Default [`Durability::Always`]: acknowledged means on
    /// stable storage.
    pub durability: Durability,
    /// Log segment size. Default 64 MiB; bounds 64 KiB ..= 4 GiB.
    pub segment_bytes: u64,
    /// Take a snapshot after this many commits since the last one (`None`: never by count).
    /// Default 100,000; bounds 1 ..= 10^9.
    pub snapshot_every_commits: Option<u64>,
    /// Take a snapshot after this many bytes of log since the last one (`None`: never by size).
    /// Default 64 MiB; bounds 64 KiB ..= 64 GiB.
    pub snapshot_every_bytes: Option<u64>,
    /// On close, write a snapshot if the log since the last one holds at least a sixteenth of
    /// a snapshot interval (`snapshot_every_commits` or `snapshot_every_bytes`), so that a
    /// clean restart replays next to nothing, however long the log. Costs one snapshot write
    /// at close. Default true.
    pub snapshot_at_close: bool,
    /// Snapshots kept; older ones are removed after each new one. Default 3; bounds 1 ..= 1000.
    pub snapshots_kept: usize,
    /// What open tolerates in the log. Default [`RecoveryMode::TolerateCorruptedTail`].
    pub recovery: RecoveryMode,
    /// Largest value, in bytes of MessagePack. Default 16 MiB; bounds 1 ..= 128 MiB.
    pub value_bytes_max: u64,
    /// Largest commit record, in bytes. Default 32 MiB; bounds 1 KiB ..= 256 MiB and at most
    /// a segment.
    pub record_bytes_max: u64,
    /// Create the store tamper-evident: every record carries a BLAKE3 chain hash over the
    /// previous one, so that [`digest`](crate::ContextManager::digest) and
    /// [`verify_against`](crate::ContextManager::verify_against) can prove history was not
    /// rewritten. Chosen when the store is created (an existing store keeps its choice).
    /// Default false.
    pub tamper_evident: bool,
    /// The application's upcasters for its versioned payloads
    /// ([`set_versioned`](crate::ContextManager::set_versioned),
    /// [`get_versioned`](crate::ContextManager::get_versioned)). Default none.
    pub upcasters: crate::upcast::Upcasters,
    /// The file system. Default the real one; tests pass a
    /// [`MemStorage`](crate::storage::MemStorage).
    pub storage: Arc<dyn Storage>,
}

impl Config {
    /// The defaults, for a store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Config {
        Config {
            dir: dir.into(),
            durability: Durability::Always,
            segment_bytes: 64 * 1024 * 1024,
            snapshot_every_commits: Some(100_000),
            snapshot_every_bytes: Some(64 * 1024 * 1024),
            snapshot_at_close: true,
            snapshots_kept: 3,
            recovery: RecoveryMode::TolerateCorruptedTail,
            value_bytes_max: VALUE_BYTES_MAX_DEFAULT,
            record_bytes_max: 32 * 1024 * 1024,
            tamper_evident: false,
            upcasters: crate::upcast::Upcasters::new(),
            storage: Arc::new(FsStorage),
        }
    }

    /// The log's part of the configuration.
    pub fn wal(&self) -> WalConfig {
        WalConfig {
            segment_bytes: self.segment_bytes,
            record_bytes_max: self.record_bytes_max,
            durability: self.durability,
            recovery: self.recovery,
            verify_sealed_on_open: false,
            chain_hash: self.tamper_evident,
            ..WalConfig::default()
        }
    }

    /// Checks every bound (the log's own are checked when it opens).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let bad = |field: &'static str, reason: String| Err(InvalidInput::Config { field, reason });
        if let Some(n) = self.snapshot_every_commits {
            if !(1..=1_000_000_000).contains(&n) {
                return bad(
                    "snapshot_every_commits",
                    format!("{n} is outside 1 ..= 10^9"),
                );
            }
        }
        if let Some(n) = self.snapshot_every_bytes {
            if !(64 << 10..=64 << 30).contains(&n) {
                return bad(
                    "snapshot_every_bytes",
                    format!("{n} is outside 64 KiB ..= 64 GiB"),
                );
            }
        }
        if !(1..=1000).contains(&self.snapshots_kept) {
            return bad(
                "snapshots_kept",
                format!("{} is outside 1 ..= 1000", self.snapshots_kept),
            );
        }
        if !(1..=128 << 20).contains(&self.value_bytes_max) {
            return bad(
                "value_bytes_max",
                format!("{} is outside 1 ..= 128 MiB", self.value_bytes_max),
            );
        }
        if self.record_bytes_max < 1024 {
            return bad(
                "record_bytes_max",
                format!("{} is below 1 KiB", self.record_bytes_max),
            );
        }
        Ok(())
    }
}
