//! Reading records back: from any offset, across sealed (mapped) and active (read through the
//! file, in windows) segments.

use super::segment::read_seed;
use super::shared::{SegmentEntry, Shared, Visible};
use super::WalError;
use crate::offset::Offset;
use ctxlog_format::layout::{body_start, HEADER_LEN};
use ctxlog_format::{chain_genesis, CorruptionKind, FrameLayout, FrameReader, Stop};
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
    /// Its chain hash (tamper-evident stores).
    pub chain: Option<[u8; 32]>,
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
    /// order. Every frame's CRC and offset are checked on the way, and in a tamper-evident
    /// store every chain hash, from the seed of the segment where the scan starts; consecutive
    /// segments must follow each other in offsets and chain. A failure is a
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
        let layout = self.shared.layout;
        let genesis = chain_genesis(&self.shared.store_id);
        // The segment holding `from` is the last one whose first offset is <= from.
        let start = segments
            .partition_point(|s| s.first <= from.0)
            .saturating_sub(1);
        let mut expected: Option<(u64, Option<[u8; 32]>)> = None;
        for (i, seg) in segments.iter().enumerate().skip(start) {
            if seg.first > to {
                break;
            }
            let window = Window {
                from: from.0,
                to,
                layout,
            };
            let mut cursor = match &seg.sealed {
                Some(map) => Cursor::new(seg, map.bytes(), layout)?,
                None => match active_end(seg, visible, i + 1 == segments.len())? {
                    Some(end) => Cursor::new_active(seg, end, layout)?,
                    None => break,
                },
            };
            // Segments follow each other without a gap, and the chain runs on from one to the
            // next (open checks only the names of segments it does not replay).
            let expected_seed = match expected {
                Some((next, _)) if next != seg.first => {
                    return Err(WalError::SegmentGap {
                        file: seg.path.clone(),
                        expected: next,
                        found: seg.first,
                    })
                }
                Some((_, chain)) => chain,
                None if seg.first == 1 => layout.chain_hash.then_some(genesis),
                None => None,
            };
            if let (Some(want), Some(seed)) = (expected_seed, cursor.chain) {
                if want != seed {
                    return Err(WalError::Corruption {
                        file: seg.path.clone(),
                        position: HEADER_LEN as u64,
                        offset: seg.first,
                        kind: CorruptionKind::ChainMismatch,
                    });
                }
            }
            match cursor.run(window, &mut f)? {
                ControlFlow::Break(()) => break,
                ControlFlow::Continue(()) => {
                    // A scan that goes on past a sealed segment is a long sequential read
                    // (replay, verify, history): its pages need not stay in this process.
                    if let Some(map) = &seg.sealed {
                        map.release(0, map.bytes().len());
                    }
                    expected = Some((cursor.next, cursor.chain))
                }
            }
        }
        Ok(())
    }

    /// The chain hash of the record at `offset` (`None` unless the store is tamper-evident).
    pub fn chain_at(&self, offset: Offset) -> Result<Option<[u8; 32]>, WalError> {
        if !self.shared.layout.chain_hash {
            return Ok(None);
        }
        if offset == Offset::ZERO {
            return Ok(Some(chain_genesis(&self.shared.store_id)));
        }
        // Just before the first record kept after compaction: that segment's seed.
        let first = self.shared.read_table().segments.first().cloned();
        if let Some(seg) = first.filter(|s| s.first == offset.0 + 1) {
            let mut seed = [0u8; 32];
            seg.file
                .read_exact_at(&mut seed, HEADER_LEN as u64)
                .map_err(WalError::io("read", &seg.path))?;
            return Ok(Some(seed));
        }
        let mut found = None;
        self.scan(offset, offset, |r| {
            found = r.chain;
            ControlFlow::Break(())
        })?;
        Ok(found)
    }

    /// True if records carry a chain hash (a tamper-evident store).
    pub fn tamper_evident(&self) -> bool {
        self.shared.layout.chain_hash
    }

    /// The last visible offset and its chain hash (`None` unless tamper-evident).
    pub fn digest(&self) -> (Offset, Option<[u8; 32]>) {
        let table = self.shared.read_table();
        (Offset(table.visible.last), table.visible.chain)
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
            kind: CorruptionKind::Truncated,
        },
    }
}

/// Where the readable part of a segment that is not sealed ends, or `None` if nothing in it
/// is visible yet.
fn active_end(
    seg: &SegmentEntry,
    visible: Visible,
    is_last: bool,
) -> Result<Option<u64>, WalError> {
    if visible.segment_first == seg.first {
        Ok(Some(visible.end))
    } else if is_last || visible.segment_first < seg.first {
        Ok(None)
    } else {
        seg.file
            .len()
            .map(Some)
            .map_err(WalError::io("stat", &seg.path))
    }
}

#[derive(Clone, Copy)]
struct Window {
    from: u64,
    to: u64,
    layout: FrameLayout,
}

/// Walks one segment's frames: from its mapping, or through its file in windows of
/// [`WINDOW_BYTES`] up to the visible end (only visible bytes are ever read, so a concurrent
/// write is never observed half done).
struct Cursor<'s> {
    seg: &'s SegmentEntry,
    mapped: Option<&'s [u8]>,
    start: u64,
    end: u64,
    next: u64,
    chain: Option<[u8; 32]>,
}

impl<'s> Cursor<'s> {
    fn new(seg: &'s SegmentEntry, bytes: &'s [u8], layout: FrameLayout) -> Result<Self, WalError> {
        let chain = layout
            .chain_hash
            .then(|| read_seed(bytes).unwrap_or_default());
        let start = body_start(layout.chain_hash) as u64;
        let end = bytes.len() as u64;
        Ok(Cursor {
            seg,
            mapped: Some(bytes),
            start,
            end,
            next: seg.first,
            chain,
        })
    }

    fn new_active(seg: &'s SegmentEntry, end: u64, layout: FrameLayout) -> Result<Self, WalError> {
        let chain = if layout.chain_hash {
            let mut seed = [0u8; 32];
            seg.file
                .read_exact_at(&mut seed, HEADER_LEN as u64)
                .map_err(WalError::io("read", &seg.path))?;
            Some(seed)
        } else {
            None
        };
        let start = body_start(layout.chain_hash) as u64;
        Ok(Cursor {
            seg,
            mapped: None,
            start,
            end,
            next: seg.first,
            chain,
        })
    }

    fn run<F>(&mut self, w: Window, f: &mut F) -> Result<ControlFlow<()>, WalError>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        if let Some(bytes) = self.mapped {
            let body = bytes.get(self.start as usize..).unwrap_or_default();
            return self
                .frames(body, self.start, true, w, f)
                .map(|(flow, _)| flow);
        }
        let mut pos = self.start;
        let mut window_len = WINDOW_BYTES as u64;
        let mut buf = Vec::new();
        while pos < self.end {
            let reaches_end = window_len >= self.end - pos;
            buf.resize(window_len.min(self.end - pos) as usize, 0);
            self.seg
                .file
                .read_exact_at(&mut buf, pos)
                .map_err(WalError::io("read", &self.seg.path))?;
            let (flow, read_to) = self.frames(&buf, pos, reaches_end, w, f)?;
            if flow.is_break() || reaches_end {
                return Ok(flow);
            }
            if read_to == pos {
                // One frame larger than the window: grow the window until it holds it.
                window_len *= 2;
            }
            pos = read_to;
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Yields the frames of `body` (file position `base`); a frame cut by the end of a window
    /// that does not reach the segment's end is left for the next window. Returns the flow
    /// and where the last whole frame ended.
    fn frames<F>(
        &mut self,
        body: &[u8],
        base: u64,
        reaches_end: bool,
        w: Window,
        f: &mut F,
    ) -> Result<(ControlFlow<()>, u64), WalError>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        let mut reader = FrameReader::new(body, base, self.next, w.layout);
        if let Some(seed) = self.chain {
            reader = reader.with_chain(seed);
        }
        let mut flow = ControlFlow::Continue(());
        for frame in reader.by_ref() {
            let frame = match frame {
                Ok(frame) => frame,
                Err(Stop::TornTail { .. }) if !reaches_end => break,
                Err(stop) => return Err(stop_error(self.seg, stop)),
            };
            if frame.offset > w.to {
                flow = ControlFlow::Break(());
                break;
            }
            if frame.offset >= w.from {
                let rec = Record {
                    offset: Offset(frame.offset),
                    payload: frame.payload,
                    chain: frame.chain_hash.copied(),
                    file: &self.seg.path,
                    position: frame.position,
                };
                if f(rec).is_break() {
                    flow = ControlFlow::Break(());
                    break;
                }
            }
        }
        self.next = reader.next_offset();
        self.chain = reader.chain_value().or(self.chain);
        Ok((flow, reader.file_position()))
    }
}
