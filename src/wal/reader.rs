//! Reading records back: from any offset, across sealed (mapped) and active (read through the
//! file, in windows) segments.

use super::shared::{SegmentEntry, Shared, Visible};
use super::WalError;
use crate::offset::Offset;
use ctxlog_format::layout::HEADER_LEN;
use ctxlog_format::{Frame, FrameLayout, FrameReader, Stop};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

/// Window size for reading the active segment through its file.
const WINDOW_BYTES: usize = 1 << 20;

/// A read handle on the log. Cheap to clone; usable from any thread; never waits for the writer.
#[derive(Debug, Clone)]
pub struct LogReader {
    pub(crate) shared: Arc<Shared>,
}

/// One record handed to a scan callback.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The record's offset.
    pub offset: Offset,
    /// Its payload, borrowed for the duration of the callback.
    pub payload: &'a [u8],
    /// Its segment file.
    pub file: &'a Path,
    /// Byte position of its frame in the file.
    pub position: u64,
}

impl LogReader {
    /// The id shared by every file of this store.
    pub fn store_id(&self) -> [u8; 16] {
        self.shared.store_id
    }

    /// What the log has done since open.
    pub fn stats(&self) -> super::WalStats {
        self.shared.counters.snapshot()
    }

    /// The segments, oldest first: (first offset, file).
    pub fn segments(&self) -> Vec<(Offset, std::path::PathBuf)> {
        let table = self.shared.read_table();
        table
            .segments
            .iter()
            .map(|s| (Offset(s.first), s.path.clone()))
            .collect()
    }

    /// Removes the sealed segments whose records all lie before `before` (never the active
    /// one), durably, and returns their files. The caller records the compaction as an event.
    pub fn remove_segments_before(
        &self,
        before: Offset,
    ) -> Result<Vec<std::path::PathBuf>, WalError> {
        let removed: Vec<SegmentEntry> = {
            let mut table = self.shared.write_table();
            let keep_from = table
                .segments
                .windows(2)
                .take_while(|w| w[1].first <= before.0)
                .count();
            table.segments.drain(..keep_from).collect()
        };
        let storage = &self.shared.storage;
        for seg in &removed {
            storage
                .remove(&seg.path)
                .map_err(WalError::io("remove", &seg.path))?;
        }
        if !removed.is_empty() {
            let dir = &self.shared.wal_dir;
            storage
                .sync_dir(dir)
                .map_err(WalError::io("sync directory", dir))?;
        }
        Ok(removed.into_iter().map(|s| s.path).collect())
    }

    /// The last offset readers can see (0 for an empty log).
    pub fn last_offset(&self) -> Offset {
        Offset(self.shared.read_table().visible.last)
    }

    /// The first offset still in the log (after compaction it may be above 1).
    pub fn first_offset(&self) -> Offset {
        let table = self.shared.read_table();
        Offset(table.segments.first().map_or(1, |s| s.first))
    }

    /// Calls `f` for every record with offset in `from..=to` (bounded by what is visible), in
    /// order. Every frame's CRC and offset are checked on the way; a failure is a
    /// [`WalError::Corruption`] naming the file and position.
    pub fn scan<F>(&self, from: Offset, to: Offset, mut f: F) -> Result<(), WalError>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        let (segments, visible) = {
            let table = self.shared.read_table();
            (table.segments.clone(), table.visible)
        };
        let to = to.0.min(visible.last);
        let first = segments.first().map_or(1, |s| s.first);
        if from.0 < first && from.0 <= to {
            return Err(WalError::OffsetOutOfRange {
                requested: from.0,
                first,
                last: visible.last,
            });
        }
        if from.0 > to {
            return Ok(());
        }
        // The segment holding `from` is the last one whose first offset is <= from.
        let start = segments
            .partition_point(|s| s.first <= from.0)
            .saturating_sub(1);
        let mut expected = None;
        for (i, seg) in segments.iter().enumerate().skip(start) {
            if seg.first > to {
                break;
            }
            // Segments must follow each other without a gap (open checks only the names of
            // segments it does not replay).
            if let Some(expected) = expected.filter(|&e| e != seg.first) {
                return Err(WalError::SegmentGap {
                    file: seg.path.clone(),
                    expected,
                    found: seg.first,
                });
            }
            let flow = match &seg.sealed {
                Some(map) => {
                    let body = map.bytes().get(HEADER_LEN..).unwrap_or_default();
                    scan_slice(seg, body, HEADER_LEN as u64, seg.first, from.0, to, &mut f)?
                }
                None => scan_active(seg, visible, i + 1 == segments.len(), from.0, to, &mut f)?,
            };
            match flow {
                ControlFlow::Break(()) => break,
                ControlFlow::Continue(next) => expected = Some(next),
            }
        }
        Ok(())
    }
}

fn stop_error(seg: &SegmentEntry, stop: Stop) -> WalError {
    match stop {
        Stop::Corrupt {
            position,
            offset,
            kind,
        } => WalError::Corruption {
            file: seg.path.clone(),
            position,
            offset,
            kind,
        },
        Stop::TornTail { position } => WalError::Corruption {
            file: seg.path.clone(),
            position,
            offset: 0,
            kind: ctxlog_format::CorruptionKind::Truncated,
        },
    }
}

/// Scans the frames of `body` (file position `base`, first offset `first_offset`); returns
/// `Break` once past `to`, and where the frames stopped.
fn scan_slice<F>(
    seg: &SegmentEntry,
    body: &[u8],
    base: u64,
    first_offset: u64,
    from: u64,
    to: u64,
    f: &mut F,
) -> Result<ControlFlow<(), u64>, WalError>
where
    F: FnMut(Record<'_>) -> ControlFlow<()>,
{
    let mut reader = FrameReader::new(body, base, first_offset, FrameLayout::default());
    for frame in reader.by_ref() {
        let frame: Frame<'_> = frame.map_err(|stop| stop_error(seg, stop))?;
        if frame.offset > to {
            return Ok(ControlFlow::Break(()));
        }
        if frame.offset >= from {
            let rec = Record {
                offset: Offset(frame.offset),
                payload: frame.payload,
                file: &seg.path,
                position: frame.position,
            };
            if f(rec).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
    }
    Ok(ControlFlow::Continue(reader.next_offset()))
}

/// Scans the active segment through its file, in windows of [`WINDOW_BYTES`], up to the
/// visible end (only bytes that are visible are ever read, so a concurrent write is never
/// observed half done).
fn scan_active<F>(
    seg: &SegmentEntry,
    visible: Visible,
    is_last: bool,
    from: u64,
    to: u64,
    f: &mut F,
) -> Result<ControlFlow<(), u64>, WalError>
where
    F: FnMut(Record<'_>) -> ControlFlow<()>,
{
    let end = if visible.segment_first == seg.first {
        visible.end
    } else if is_last || visible.segment_first < seg.first {
        return Ok(ControlFlow::Break(()));
    } else {
        seg.file.len().map_err(WalError::io("stat", &seg.path))?
    };
    let mut pos = HEADER_LEN as u64;
    let mut next_offset = seg.first;
    let mut window_len = WINDOW_BYTES as u64;
    let mut window = Vec::new();
    while pos < end {
        let reaches_end = window_len >= end - pos;
        window.resize(window_len.min(end - pos) as usize, 0);
        seg.file
            .read_exact_at(&mut window, pos)
            .map_err(WalError::io("read", &seg.path))?;
        let mut reader = FrameReader::new(&window, pos, next_offset, FrameLayout::default());
        let mut progressed = false;
        for frame in reader.by_ref() {
            let frame = match frame {
                Ok(frame) => frame,
                // A frame cut by the window's end: read the next window from its start.
                Err(Stop::TornTail { .. }) if !reaches_end => break,
                Err(stop) => return Err(stop_error(seg, stop)),
            };
            progressed = true;
            if frame.offset > to {
                return Ok(ControlFlow::Break(()));
            }
            if frame.offset >= from {
                let rec = Record {
                    offset: Offset(frame.offset),
                    payload: frame.payload,
                    file: &seg.path,
                    position: frame.position,
                };
                if f(rec).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        if reaches_end {
            break;
        }
        if !progressed {
            // One frame larger than the window: grow the window until it holds it.
            window_len *= 2;
        }
        pos = reader.file_position();
        next_offset = reader.next_offset();
    }
    Ok(ControlFlow::Continue(next_offset))
}
