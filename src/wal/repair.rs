//! What open changes on disk: a torn tail cut off, a poisoned segment written again, and
//! point-in-time recovery's cut, which keeps every byte it drops in `*.dropped` files.

use super::recovery::{DroppedReport, RecoveryReport, Scanned, TornTailReport};
use super::segment::now_ms;
use super::WalError;
use crate::storage::{OpenMode, Storage};
use std::path::{Path, PathBuf};

/// Where point-in-time recovery cuts the log: in segment `index`, at `position` (or the whole
/// segment when `None`).
pub(super) struct Cut {
    pub index: usize,
    pub position: Option<u64>,
    pub reason: String,
}

impl Cut {
    pub(super) fn new(index: usize, position: Option<u64>, reason: String) -> Cut {
        Cut {
            index,
            position,
            reason,
        }
    }
}

/// Writes a segment's header and records (as read, which is what readers saw) again and
/// syncs them.
pub(super) fn rewrite_records(storage: &dyn Storage, seg: &mut Scanned) -> Result<u64, WalError> {
    // From byte 0: the header (and chain seed) of a segment whose creation's sync failed is
    // in the same situation as its records.
    let records = seg.map.bytes().get(..seg.end as usize).unwrap_or_default();
    // It may have been opened read-only (a sealed segment that became the last one).
    seg.file = storage
        .open(&seg.path, OpenMode::ReadWrite)
        .map_err(WalError::io("open", &seg.path))?;
    seg.file
        .write_all_at(records, 0)
        .map_err(WalError::io("write", &seg.path))?;
    seg.file
        .sync_data()
        .map_err(WalError::io("fdatasync", &seg.path))?;
    tracing::warn!(file = %seg.path.display(), bytes = records.len(), "rewrote the active segment after a poisoned run");
    Ok(records.len() as u64)
}

/// End of the last non-zero byte at or after `from`.
fn nonzero_end(bytes: &[u8], from: usize) -> usize {
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(from, |p| (p + 1).max(from))
}

/// Zeroes a torn tail so that new records can follow the last good one.
pub(super) fn truncate_tail(
    seg: Option<&mut Scanned>,
    position: u64,
) -> Result<TornTailReport, WalError> {
    let Some(seg) = seg else {
        unreachable!("the torn segment was just pushed")
    };
    let end = nonzero_end(seg.map.bytes(), position as usize) as u64;
    cut_at(seg, position)?;
    tracing::warn!(file = %seg.path.display(), position, bytes = end - position, "truncated a torn tail");
    Ok(TornTailReport {
        file: seg.path.clone(),
        position,
        bytes_dropped: end - position,
    })
}

/// Cuts a segment at `at`: `set_len` then `fdatasync`. Cutting (rather than zeroing in place)
/// leaves a file that ends at a frame boundary whatever a crash interrupts: either the cut
/// happened or the bytes are all still there. `reopen_active` preallocates the space again.
fn cut_at(seg: &mut Scanned, at: u64) -> Result<(), WalError> {
    seg.file
        .set_len(at)
        .map_err(WalError::io("truncate", &seg.path))?;
    seg.file
        .sync_data()
        .map_err(WalError::io("fdatasync", &seg.path))
}

/// Point-in-time recovery: keeps the bytes after the cut in `*.dropped` files, then cuts.
pub(super) fn apply_cut(
    storage: &dyn Storage,
    wal_dir: &Path,
    segs: &[(u64, PathBuf)],
    scanned: &mut Vec<Scanned>,
    cut: Cut,
    report: &mut RecoveryReport,
) -> Result<(), WalError> {
    let stamp = now_ms();
    for (_, path) in segs
        .iter()
        .skip(cut.index + usize::from(cut.position.is_some()))
    {
        let kept_as = path.with_extension(format!("seg.{stamp}.dropped"));
        storage
            .rename(path, &kept_as)
            .map_err(WalError::io("rename", path))?;
        let bytes = storage
            .open(&kept_as, OpenMode::Read)
            .and_then(|f| f.len())
            .unwrap_or(0);
        report.dropped.push(DroppedReport {
            file: path.clone(),
            position: 0,
            bytes,
            reason: cut.reason.clone(),
            kept_as,
        });
    }
    if let (Some(position), Some(seg)) = (cut.position, scanned.get_mut(cut.index)) {
        // Reopen for writing: a segment that was not the last was opened read-only.
        seg.file = storage
            .open(&seg.path, OpenMode::ReadWrite)
            .map_err(WalError::io("open", &seg.path))?;
        let bytes = seg.map.bytes();
        let end = nonzero_end(bytes, position as usize);
        let tail = bytes.get(position as usize..end).unwrap_or_default();
        let kept_as = seg
            .path
            .with_extension(format!("seg.{position}.{stamp}.dropped"));
        let copy = storage
            .open(&kept_as, OpenMode::CreateNew)
            .map_err(WalError::io("create", &kept_as))?;
        copy.write_all_at(tail, 0)
            .map_err(WalError::io("write", &kept_as))?;
        copy.sync_data()
            .map_err(WalError::io("fdatasync", &kept_as))?;
        storage
            .sync_dir(wal_dir)
            .map_err(WalError::io("sync directory", wal_dir))?;
        report.dropped.push(DroppedReport {
            file: seg.path.clone(),
            position,
            bytes: tail.len() as u64,
            reason: cut.reason,
            kept_as,
        });
        cut_at(seg, position)?;
    }
    scanned.truncate(cut.index + usize::from(cut.position.is_some()));
    storage
        .sync_dir(wal_dir)
        .map_err(WalError::io("sync directory", wal_dir))?;
    for d in &report.dropped {
        tracing::warn!(file = %d.file.display(), position = d.position, bytes = d.bytes, kept_as = %d.kept_as.display(), "point-in-time recovery set bytes aside");
    }
    Ok(())
}
