//! Segment files: naming, creation (header, preallocation, syncs) and sealing.

use super::WalError;
use crate::storage::{write_zeros, OpenMode, Storage, StorageFile};
use ctxlog_format::layout::{body_start, FLAG_CHAIN_HASH, HEADER_LEN};
use ctxlog_format::{FileHeader, FileKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// `<first offset as 20 zero-padded digits>.seg`.
pub fn segment_name(first: u64) -> String {
    format!("{first:020}{SEGMENT_SUFFIX}")
}

/// The first offset a segment file name stands for, or `None` for a foreign name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Creates `wal/<first>.seg`: header, the chain seed of a tamper-evident store (the chain hash
/// before the segment's first record), zeros up to `capacity`, `fdatasync`, directory sync.
/// Until the directory sync returns, a crash may leave no file or an incomplete one; recovery
/// recognises an incomplete last segment that holds no record.
pub fn create_segment(
    storage: &dyn Storage,
    wal_dir: &Path,
    first: u64,
    store_id: [u8; 16],
    capacity: u64,
    chain_seed: Option<[u8; 32]>,
    zero_fill: bool,
) -> Result<(PathBuf, Arc<dyn StorageFile>), WalError> {
    let path = wal_dir.join(segment_name(first));
    let file = storage
        .open(&path, OpenMode::CreateNew)
        .map_err(WalError::io("create", &path))?;
    let header = FileHeader {
        kind: FileKind::Segment,
        flags: if chain_seed.is_some() {
            FLAG_CHAIN_HASH
        } else {
            0
        },
        first_offset: first,
        created_ms: now_ms(),
        store_id,
    };
    let written = (|| {
        file.write_all_at(&header.encode(), 0)
            .map_err(WalError::io("write", &path))?;
        let start = body_start(chain_seed.is_some()) as u64;
        if let Some(seed) = chain_seed {
            file.write_all_at(&seed, HEADER_LEN as u64)
                .map_err(WalError::io("write", &path))?;
        }
        reserve(&*file, start, capacity, zero_fill).map_err(WalError::io("preallocate", &path))?;
        file.sync_data().map_err(WalError::io("fdatasync", &path))
    })();
    if let Err(e) = written {
        // A header whose sync failed may stay readable yet never reach the disk (fsyncgate):
        // take the file away rather than let a later open append behind it.
        if let Err(rm) = storage.remove(&path) {
            tracing::error!(file = %path.display(), error = %rm, "could not remove a segment whose creation failed");
        }
        return Err(e);
    }
    storage
        .sync_dir(wal_dir)
        .map_err(WalError::io("sync directory", wal_dir))?;
    Ok((path, file))
}

/// Reserves a segment's space from `from` to `capacity`: written zeros, or a sparse extension.
pub fn reserve(
    file: &dyn StorageFile,
    from: u64,
    capacity: u64,
    zero_fill: bool,
) -> std::io::Result<()> {
    if zero_fill {
        write_zeros(file, from, capacity - from)
    } else {
        file.set_len(capacity)
    }
}

/// Seals a full segment: cuts the preallocated space after its last record, so that sealed
/// segments hold only records and are read (mapped) without scanning zeros. The caller syncs
/// the cut (through the log's one-at-a-time sync).
pub fn seal_segment(path: &Path, file: &dyn StorageFile, end: u64) -> Result<(), WalError> {
    file.set_len(end).map_err(WalError::io("truncate", path))
}

/// The chain seed stored after the header of a tamper-evident segment.
pub fn read_seed(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.get(HEADER_LEN..body_start(true))?.try_into().ok()
}
