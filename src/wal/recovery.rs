//! Opening the log: lock, scan every segment, check every frame, repair a torn tail, and report
//! whatever was dropped. Nothing is deleted silently. What open changes on disk is in
//! `repair`; the checks that run ahead of this in-order pass, in `ahead`.

use super::ahead::{Ahead, Plan};
use super::repair::{apply_cut, rewrite_records, truncate_tail, Cut};
use super::scan::{scan_records, seed_mismatch};
use super::segment::{create_segment, now_ms, parse_segment_name, reserve};
use super::shared::{SegmentEntry, Shared, Table, Visible, POISON_MARKER};
use super::writer::{Active, LogWriter};
use super::{RecoveryMode, WalConfig, WalError};
use crate::storage::{LockFailure, Mapped, OpenMode, Storage, StorageFile};
use ctxlog_format::layout::{body_start, FLAG_CHAIN_HASH, HEADER_LEN};
use ctxlog_format::{
    all_zero, chain_genesis, CorruptionKind, FileHeader, FileKind, FrameLayout, Stop,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A torn record cut off the end of the log at open.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TornTailReport {
    /// The segment.
    pub file: PathBuf,
    /// Where the torn record began (the log now ends there).
    pub position: u64,
    /// Bytes zeroed.
    pub bytes_dropped: u64,
}

/// Bytes or segments set aside by [`RecoveryMode::PointInTime`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DroppedReport {
    /// The segment.
    pub file: PathBuf,
    /// Where the dropped bytes began.
    pub position: u64,
    /// How many bytes.
    pub bytes: u64,
    /// Why: the failed check.
    pub reason: String,
    /// Where the dropped bytes were kept.
    pub kept_as: PathBuf,
}

/// What open found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    /// True if open created a new, empty store.
    pub created: bool,
    /// Segments in the log after open.
    pub segments: usize,
    /// Records in the log after open.
    pub records: u64,
    /// First offset in the log.
    pub first_offset: u64,
    /// Last offset in the log (0 if empty).
    pub last_offset: u64,
    /// A torn tail that was truncated.
    pub torn_tail: Option<TornTailReport>,
    /// What [`RecoveryMode::PointInTime`] set aside.
    pub dropped: Vec<DroppedReport>,
    /// Files in `wal/` that are not segments; left alone.
    pub foreign_files: Vec<PathBuf>,
    /// A last segment whose creation a crash interrupted (it held no record), made anew.
    pub repaired_segment: Option<PathBuf>,
    /// The log had been poisoned (a failed write or sync): the active segment's records were
    /// written again and synced, so that records the kernel may have dropped after the failed
    /// sync, while still returning them to reads, are on disk before anything follows them.
    pub rewrote_after_poison: Option<u64>,
}

/// A segment as open's scan left it.
pub(super) struct Scanned {
    pub first: u64,
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    pub map: Mapped,
    /// Next offset after its last record.
    pub next: u64,
    /// End of its last record.
    pub end: u64,
    /// Chain hash after its last record, when scanned (tamper-evident stores).
    pub chain: Option<[u8; 32]>,
    /// Every record was checked (false: only the header, see `verify_sealed_on_open`).
    pub checked: bool,
}

/// Bytes of checked segments that open leaves mapped: the newest ones, which a reader (a
/// replay, a tail, a full scan) is likeliest to read next.
const RESIDENT_AFTER_CHECK: u64 = 256 << 20;

/// Releases the pages of the oldest checked segments once more than [`RESIDENT_AFTER_CHECK`]
/// bytes of them are mapped. Checking a long log through its maps would otherwise leave all of
/// it in the process's resident memory; releasing every segment right after its check bounded
/// that, but made the read that usually follows an open map every page a second time (peer
/// harness, a 200 MB log: reopen and full read 12.8 M records/s keeping the pages, 10.0 M
/// releasing them).
#[derive(Default)]
struct Resident {
    /// Checked bytes still mapped, in `scanned[oldest..]` and the segment being checked
    /// (helpers may have read up to `Plan::ahead` more segments, within the same budget again:
    /// see `ahead`).
    bytes: u64,
    /// First entry of `scanned` not yet released.
    oldest: usize,
}

impl Resident {
    /// Counts `end` bytes just checked (the segment after `scanned`), releasing the oldest
    /// checked segments that no longer fit.
    fn checked(&mut self, scanned: &[Scanned], end: u64) {
        self.bytes += end;
        while self.bytes > RESIDENT_AFTER_CHECK && self.oldest < scanned.len() {
            let seg = &scanned[self.oldest];
            self.oldest += 1;
            if seg.checked {
                seg.map.release(0, seg.end as usize);
                self.bytes -= seg.end;
            }
        }
    }
}

/// Stops the helpers of [`Ahead`] however the in-order pass ends (an error, a cut, a panic),
/// so that the scope joining them does not wait for segments nobody will take.
struct StopHelpers<'a, 'b>(&'a Ahead<'b>);

impl Drop for StopHelpers<'_, '_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

pub(crate) fn lock_path(dir: &Path) -> PathBuf {
    dir.join("LOCK")
}

fn holder() -> String {
    format!("pid={} since_ms={}\n", std::process::id(), now_ms())
}

/// Opens (or creates) the log of the store in `dir`.
pub(crate) fn open_log(
    storage: Arc<dyn Storage>,
    dir: &Path,
    config: WalConfig,
) -> Result<(LogWriter, Arc<Shared>, RecoveryReport), WalError> {
    config.validate()?;
    storage
        .create_dir_all(dir)
        .map_err(WalError::io("create directory", dir))?;
    let lock_file = lock_path(dir);
    let lock = storage.lock(&lock_file, &holder()).map_err(|e| match e {
        LockFailure::Held => WalError::Locked {
            holder: storage.lock_holder(&lock_file),
            path: lock_file.clone(),
        },
        LockFailure::Io(source) => WalError::Io {
            op: "lock",
            path: lock_file.clone(),
            source,
        },
    })?;
    let wal_dir = dir.join("wal");
    if !storage.exists(&wal_dir) {
        storage
            .create_dir_all(&wal_dir)
            .map_err(WalError::io("create directory", &wal_dir))?;
        storage
            .sync_dir(dir)
            .map_err(WalError::io("sync directory", dir))?;
    }
    // Make every entry already in wal/ durable before appending to any of it: a segment whose
    // creation's directory sync failed would otherwise vanish at the next power loss, with
    // whatever is acknowledged in it from now on.
    storage
        .sync_dir(&wal_dir)
        .map_err(WalError::io("sync directory", &wal_dir))?;
    let mut report = RecoveryReport::default();
    let mut poisoned = false;
    let mut segs = Vec::new();
    for name in storage
        .list(&wal_dir)
        .map_err(WalError::io("list", &wal_dir))?
    {
        match parse_segment_name(&name) {
            Some(first) => segs.push((first, wal_dir.join(name))),
            None if name == POISON_MARKER => poisoned = true,
            None => report.foreign_files.push(wal_dir.join(name)),
        }
    }
    segs.sort();
    let (store_id, layout, scanned) = if segs.is_empty() {
        report.created = true;
        let layout = FrameLayout {
            chain_hash: config.chain_hash,
        };
        (new_store_id(dir)?, layout, Vec::new())
    } else {
        scan_all(&*storage, &wal_dir, &segs, &config, &mut report)?
    };
    let mut scanned = scanned;
    if poisoned {
        if let Some(last) = scanned.last_mut() {
            report.rewrote_after_poison = Some(rewrite_records(&*storage, last)?);
        }
        let marker = wal_dir.join(POISON_MARKER);
        storage
            .remove(&marker)
            .map_err(WalError::io("remove", &marker))?;
        storage
            .sync_dir(&wal_dir)
            .map_err(WalError::io("sync directory", &wal_dir))?;
    }
    let identity = (store_id, layout);
    finish(storage, wal_dir, identity, scanned, config, lock, report)
}

fn new_store_id(dir: &Path) -> Result<[u8; 16], WalError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| WalError::Io {
        op: "generate store id",
        path: dir.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(id)
}

/// Scans every segment in order; returns the store id and the segments kept.
fn scan_all(
    storage: &dyn Storage,
    wal_dir: &Path,
    segs: &[(u64, PathBuf)],
    config: &WalConfig,
    report: &mut RecoveryReport,
) -> Result<([u8; 16], FrameLayout, Vec<Scanned>), WalError> {
    let mut scanned: Vec<Scanned> = Vec::with_capacity(segs.len());
    let mut resident = Resident::default();
    let mut store_id = None;
    let mut layout = None;
    let mut cut = None;
    // Helper threads open and check the next segments while this loop decides, in order.
    let ahead = Ahead::new(Plan {
        storage,
        segs,
        check_sealed: config.verify_sealed_on_open,
        ahead: Plan::ahead(RESIDENT_AFTER_CHECK, config.segment_bytes),
    });
    std::thread::scope(|scope| {
        let _stop = StopHelpers(&ahead);
        for _ in 0..ahead.helpers() {
            // A helper that cannot start is one fewer: recovery does its segments itself.
            let _ = std::thread::Builder::new()
                .name("ctxlog-open".into())
                .spawn_scoped(scope, || ahead.help());
        }
        for (index, (first, path)) in segs.iter().enumerate() {
            let is_last = index + 1 == segs.len();
            let opened = ahead.take(index);
            let file = opened.file.map_err(WalError::io("open", path))?;
            let map = opened.map.map_err(WalError::io("map", path))?;
            let bytes = map.bytes();
            let header = match FileHeader::decode_kind(bytes, FileKind::Segment, FLAG_CHAIN_HASH) {
                Ok(h) => h,
                Err(_) if is_last && no_records(bytes) => {
                    // A crash interrupted the creation of this segment: it never held a record.
                    drop((map, file));
                    storage.remove(path).map_err(WalError::io("remove", path))?;
                    report.repaired_segment = Some(path.clone());
                    break;
                }
                Err(source) => {
                    let reason = format!("bad header: {source}");
                    if config.recovery == RecoveryMode::PointInTime && index > 0 {
                        cut = Some(Cut::new(index, None, reason));
                        break;
                    }
                    return Err(WalError::BadHeader {
                        file: path.clone(),
                        source,
                    });
                }
            };
            if header.first_offset != *first {
                return Err(WalError::MisnamedSegment {
                    file: path.clone(),
                    named: *first,
                    header: header.first_offset,
                });
            }
            let id = *store_id.get_or_insert(header.store_id);
            if header.store_id != id {
                return Err(WalError::ForeignStore {
                    file: path.clone(),
                    expected: hex(&id),
                    found: hex(&header.store_id),
                });
            }
            let seg_layout = FrameLayout::from_flags(header.flags);
            if *layout.get_or_insert(seg_layout) != seg_layout {
                return Err(WalError::LayoutMismatch { file: path.clone() });
            }
            if let Some(prev) = scanned.last() {
                if prev.next != *first {
                    if config.recovery == RecoveryMode::PointInTime {
                        let reason = format!("offset gap: expected {}, found {first}", prev.next);
                        cut = Some(Cut::new(index, None, reason));
                        break;
                    }
                    return Err(WalError::SegmentGap {
                        file: path.clone(),
                        expected: prev.next,
                        found: *first,
                    });
                }
            }
            let (stop, next, end, chain, checked) = if !is_last && !config.verify_sealed_on_open {
                // Header checked; the records are checked whenever they are read (replay reads
                // everything after the snapshot) and by `verify`.
                let next = segs.get(index + 1).map_or(*first, |(n, _)| *n);
                (None, next, bytes.len() as u64, None, false)
            } else {
                let expected_seed = match scanned.last() {
                    Some(prev) => prev.chain,
                    None if *first == 1 => Some(chain_genesis(&header.store_id)),
                    None => None,
                };
                let (stop, next, end, chain) = match opened.scan {
                    Some(found) => {
                        seed_mismatch(bytes, *first, seg_layout, expected_seed).unwrap_or(found)
                    }
                    None => {
                        let tail = is_last.then_some(&*file);
                        scan_records(bytes, *first, seg_layout, expected_seed, tail)
                    }
                };
                resident.checked(&scanned, end);
                (stop, next, end, chain, true)
            };
            report.records += next - first;
            scanned.push(Scanned {
                first: *first,
                path: path.clone(),
                file,
                map,
                next,
                end,
                chain,
                checked,
            });
            match stop {
                None => {}
                Some(Stop::TornTail { position }) if is_last => {
                    if config.recovery == RecoveryMode::AbsoluteConsistency {
                        return Err(WalError::TornTail {
                            file: path.clone(),
                            position,
                        });
                    }
                    report.torn_tail = Some(truncate_tail(scanned.last_mut(), position)?);
                }
                Some(stop) => {
                    let (position, offset, kind) = stop_parts(stop, next);
                    if config.recovery == RecoveryMode::PointInTime {
                        let reason = format!("offset {offset}: {kind}");
                        cut = Some(Cut::new(index, Some(position), reason));
                        break;
                    }
                    return Err(WalError::Corruption {
                        file: path.clone(),
                        position,
                        offset,
                        kind,
                    });
                }
            }
        }
        Ok(())
    })?;
    drop(ahead);
    if let Some(cut) = cut {
        apply_cut(storage, wal_dir, segs, &mut scanned, cut, report)?;
    }
    // No header survived: the only segment's creation was interrupted; the store is new.
    let id = match store_id {
        Some(id) => id,
        None => new_store_id(wal_dir)?,
    };
    let layout = layout.unwrap_or(FrameLayout {
        chain_hash: config.chain_hash,
    });
    // The segment that becomes the active one must have been scanned, for its end and its
    // chain (it was skipped as sealed if the segment after it was a repaired one).
    if let Some(last) = scanned.last_mut() {
        if !last.checked {
            let (stop, next, end, chain) = scan_records(
                last.map.bytes(),
                last.first,
                layout,
                None,
                Some(&*last.file),
            );
            if let Some(stop) = stop {
                return Err(stop_error(&last.path, stop, next));
            }
            report.records = report.records + next - last.next;
            (last.next, last.end, last.chain, last.checked) = (next, end, chain, true);
        }
    }
    Ok((id, layout, scanned))
}

/// Where a scan stopped: byte position, offset and what failed (a torn record where a whole
/// one was due, at `next`, is a truncated one).
fn stop_parts(stop: Stop, next: u64) -> (u64, u64, CorruptionKind) {
    match stop {
        Stop::Corrupt {
            position,
            offset,
            kind,
        } => (position, offset, kind),
        Stop::TornTail { position } => (position, next, CorruptionKind::Truncated),
    }
}

fn stop_error(file: &Path, stop: Stop, next: u64) -> WalError {
    let (position, offset, kind) = stop_parts(stop, next);
    WalError::Corruption {
        file: file.to_path_buf(),
        position,
        offset,
        kind,
    }
}

/// True when a segment file holds no record: shorter than a header, or only zeros after it.
fn no_records(bytes: &[u8]) -> bool {
    // A chain seed may follow the header: records start at body_start(true) at the latest.
    bytes.len() <= HEADER_LEN || all_zero(bytes.get(body_start(true)..).unwrap_or_default())
}

/// Builds the writer and the shared table from what the scan kept.
fn finish(
    storage: Arc<dyn Storage>,
    wal_dir: PathBuf,
    (store_id, layout): ([u8; 16], FrameLayout),
    mut scanned: Vec<Scanned>,
    config: WalConfig,
    lock: Box<dyn crate::storage::LockGuard>,
    mut report: RecoveryReport,
) -> Result<(LogWriter, Arc<Shared>, RecoveryReport), WalError> {
    let (active, chain) = match scanned.pop() {
        Some(last) => {
            let chain = last.chain;
            (reopen_active(&*storage, last, &config)?, chain)
        }
        None => {
            // A new store, or one whose only segment's creation was interrupted.
            let first = report
                .repaired_segment
                .as_deref()
                .and_then(|p| p.file_name())
                .and_then(|n| parse_segment_name(&n.to_string_lossy()))
                .unwrap_or(1);
            let capacity = config.segment_bytes;
            let seed = layout.chain_hash.then(|| chain_genesis(&store_id));
            let zero = config.zero_fill();
            let (path, file) =
                create_segment(&*storage, &wal_dir, first, store_id, capacity, seed, zero)?;
            let pos = body_start(layout.chain_hash) as u64;
            let active = Active {
                first,
                path,
                file,
                capacity,
                pos,
            };
            ((active, first), seed)
        }
    };
    let (active, next) = active;
    let mut segments: Vec<SegmentEntry> = scanned
        .into_iter()
        .map(|s| SegmentEntry {
            first: s.first,
            path: s.path,
            file: s.file,
            sealed: Some(s.map),
        })
        .collect();
    segments.push(SegmentEntry {
        first: active.first,
        path: active.path.clone(),
        file: Arc::clone(&active.file),
        sealed: None,
    });
    report.segments = segments.len();
    report.first_offset = segments.first().map_or(1, |s| s.first);
    report.last_offset = next - 1;
    let visible = Visible {
        last: next - 1,
        segment_first: active.first,
        end: active.pos,
        chain,
    };
    let table = Table { segments, visible };
    let shared = Arc::new(Shared::new(storage, wal_dir, store_id, layout, table));
    let writer = LogWriter::new(Arc::clone(&shared), config, active, next, chain, lock);
    tracing::info!(
        segments = report.segments,
        records = report.records,
        last_offset = report.last_offset,
        "write-ahead log open"
    );
    Ok((writer, shared, report))
}

/// Makes the last segment appendable again: back to its preallocated size if it was sealed or
/// cut short.
fn reopen_active(
    storage: &dyn Storage,
    last: Scanned,
    config: &WalConfig,
) -> Result<(Active, u64), WalError> {
    let Scanned {
        first,
        path,
        file,
        map,
        next,
        end,
        ..
    } = last;
    drop(map);
    let len = file.len().map_err(WalError::io("stat", &path))?;
    let file = if len < config.segment_bytes {
        let file = storage
            .open(&path, OpenMode::ReadWrite)
            .map_err(WalError::io("open", &path))?;
        reserve(&*file, len, config.segment_bytes, config.zero_fill())
            .map_err(WalError::io("preallocate", &path))?;
        file.sync_data().map_err(WalError::io("fdatasync", &path))?;
        file
    } else {
        file
    };
    let capacity = len.max(config.segment_bytes);
    Ok((
        Active {
            first,
            path,
            file,
            capacity,
            pos: end,
        },
        next,
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
