//! The frame reader: walks a byte slice of records and tells a clean end, a torn tail and
//! corruption apart (FORMAT.md, "Reading").

use crate::error::CorruptionKind;
use crate::frame::{frame_crc, raw_header, Frame, FrameLayout};
use crate::layout::*;
use crate::le::all_zero;

/// Why a reader stopped before the end of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The input ends inside a record, or a record fails its check and only zeros follow it:
    /// the signature of a write cut short by a crash. Nothing valid follows.
    TornTail {
        /// File position of the torn record's first byte.
        position: u64,
    },
    /// A check failed and data follows: damage, not a crash.
    Corrupt {
        /// File position of the damaged frame.
        position: u64,
        /// The offset the reader expected at that position.
        offset: u64,
        /// What failed.
        kind: CorruptionKind,
    },
}

/// Reads record frames from a byte slice.
///
/// Yields `Ok(frame)` for each record that passes every check, then ends with `None` at a clean
/// end (the slice is exhausted exactly at a frame boundary, or only zeros remain: preallocated
/// space), or with one `Err(Stop)` after which it yields nothing more.
#[derive(Debug, Clone)]
pub struct FrameReader<'a> {
    buf: &'a [u8],
    base: u64,
    pos: usize,
    next_offset: u64,
    layout: FrameLayout,
    payload_max: u32,
    done: bool,
}

impl<'a> FrameReader<'a> {
    /// A reader over `buf`, whose first byte is at file position `base`, expecting the first
    /// frame to carry `first_offset` and each later one the next offset.
    pub fn new(buf: &'a [u8], base: u64, first_offset: u64, layout: FrameLayout) -> Self {
        FrameReader {
            buf,
            base,
            pos: 0,
            next_offset: first_offset,
            layout,
            payload_max: RECORD_PAYLOAD_MAX,
            done: false,
        }
    }

    /// File position just past the last frame returned (where the next record would go).
    pub fn file_position(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The offset the next frame must carry.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    fn stop(&mut self, stop: Stop) -> Option<Result<Frame<'a>, Stop>> {
        self.done = true;
        Some(Err(stop))
    }

    fn torn(&mut self) -> Option<Result<Frame<'a>, Stop>> {
        let position = self.file_position();
        self.stop(Stop::TornTail { position })
    }

    fn corrupt(&mut self, kind: CorruptionKind) -> Option<Result<Frame<'a>, Stop>> {
        let stop = Stop::Corrupt {
            position: self.file_position(),
            offset: self.next_offset,
            kind,
        };
        self.stop(stop)
    }

    fn rest(&self, from: usize) -> &'a [u8] {
        self.buf.get(from..).unwrap_or_default()
    }
}

impl<'a> Iterator for FrameReader<'a> {
    type Item = Result<Frame<'a>, Stop>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.rest(self.pos);
        if rest.is_empty() {
            self.done = true;
            return None;
        }
        let Some(raw) = raw_header(self.buf, self.pos) else {
            // Fewer bytes than a frame header: zeros are free space, anything else a cut write.
            if all_zero(rest) {
                self.done = true;
                return None;
            }
            return self.torn();
        };
        if raw.len == 0 && raw.crc == 0 && raw.offset == 0 {
            if all_zero(rest) {
                self.done = true;
                return None;
            }
            return self.corrupt(CorruptionKind::DataAfterZeros);
        }
        if raw.len > self.payload_max {
            let kind = CorruptionKind::LengthTooLarge {
                len: raw.len,
                max: self.payload_max,
            };
            return self.corrupt(kind);
        }
        let overhead = self.layout.overhead();
        let end = self.pos + overhead + raw.len as usize;
        let (Some(chain), Some(payload)) = (
            self.buf
                .get(self.pos + FRAME_HEADER_LEN..self.pos + overhead),
            self.buf.get(self.pos + overhead..end),
        ) else {
            return self.torn();
        };
        let chain = self.layout.chain_hash.then_some(chain);
        let computed = frame_crc(raw.len, raw.offset, chain, payload);
        if computed != raw.crc {
            if all_zero(self.rest(end)) {
                return self.torn();
            }
            let kind = CorruptionKind::Checksum {
                stored: raw.crc,
                computed,
            };
            return self.corrupt(kind);
        }
        // Offset 0 is never a record offset; it is also what `next_offset` wraps to after
        // u64::MAX, so that nothing can follow the last representable offset.
        if raw.offset != self.next_offset || raw.offset == 0 {
            let kind = CorruptionKind::OffsetMismatch {
                expected: self.next_offset,
                found: raw.offset,
            };
            return self.corrupt(kind);
        }
        let frame = Frame {
            position: self.file_position(),
            offset: raw.offset,
            chain_hash: chain.and_then(|c| c.try_into().ok()),
            payload,
        };
        self.pos = end;
        self.next_offset = self.next_offset.wrapping_add(1);
        Some(Ok(frame))
    }
}
