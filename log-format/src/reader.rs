//! The frame reader: walks a byte slice of records and tells a clean end, a torn tail and
//! corruption apart (FORMAT.md, "Reading").

use crate::error::CorruptionKind;
use crate::frame::{chain_next, frame_crc, raw_header, Frame, FrameLayout};
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
    chain: Option<[u8; CHAIN_HASH_LEN]>,
    done: bool,
    /// See [`FrameReader::defer_zero_check`].
    defer_zeros: bool,
    /// Where the zeros the reader did not check begin.
    unchecked_zeros: Option<u64>,
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
            chain: None,
            done: false,
            defer_zeros: false,
            unchecked_zeros: None,
        }
    }

    /// Leaves the check that only zeros follow the last record to the caller: at a frame
    /// header of zeros the reader ends without reading the rest of the slice, and
    /// [`FrameReader::unchecked_zeros`] says from where the caller must check. A caller that
    /// holds the slice as a memory map and can read the file otherwise (recovery, over the
    /// active segment's preallocated tail) keeps those megabytes of zeros out of its RSS. If
    /// the caller finds a non-zero byte there, it must read again without this option, which
    /// classifies the damage.
    pub fn defer_zero_check(mut self) -> Self {
        self.defer_zeros = true;
        self
    }

    /// With [`FrameReader::defer_zero_check`], after a clean end at a frame header of zeros:
    /// the file position from which the caller must check that every byte is zero.
    pub fn unchecked_zeros(&self) -> Option<u64> {
        self.unchecked_zeros
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

    /// A frame that fails in a way a crash mid-write could explain is a torn tail only if no
    /// intact record follows it: a crash persists a prefix of what was written, so a valid
    /// next record after a failed one means the failed one was damaged after it was written
    /// (a flipped length bit must not silently drop the acknowledged records after it).
    fn torn_unless_followed(&mut self, kind: CorruptionKind) -> Option<Result<Frame<'a>, Stop>> {
        let next = self.next_offset.wrapping_add(1);
        if next != 0 && self.valid_frame_after(self.pos + 1, next) {
            return self.corrupt(kind);
        }
        self.torn()
    }

    /// True if an intact frame carrying `offset` starts anywhere at or after `from`. Only
    /// runs on the failure path (recovery after a crash), never per record.
    fn valid_frame_after(&self, from: usize, offset: u64) -> bool {
        let needle = offset.to_le_bytes();
        let overhead = self.layout.overhead();
        let last = self.buf.len().saturating_sub(FRAME_HEADER_LEN);
        (from..=last).any(|at| {
            let Some(field) = self
                .buf
                .get(at + FRAME_OFFSET_POS..at + FRAME_OFFSET_POS + 8)
            else {
                return false;
            };
            if field != needle {
                return false;
            }
            let Some(raw) = raw_header(self.buf, at) else {
                return false;
            };
            if raw.len > self.payload_max {
                return false;
            }
            let end = at + overhead + raw.len as usize;
            let (Some(chain), Some(payload)) = (
                self.buf.get(at + FRAME_HEADER_LEN..at + overhead),
                self.buf.get(at + overhead..end),
            ) else {
                return false;
            };
            let chain = self.layout.chain_hash.then_some(chain);
            frame_crc(raw.len, raw.offset, chain, payload) == raw.crc
        })
    }

    /// Verifies the chain hash of every frame, starting from `seed` (the chain value before the
    /// first frame: a segment's stored seed). Only meaningful for a layout with a chain hash.
    pub fn with_chain(mut self, seed: [u8; CHAIN_HASH_LEN]) -> Self {
        self.chain = Some(seed);
        self
    }

    /// The chain value after the last frame returned (the seed if none), when verifying.
    pub fn chain_value(&self) -> Option<[u8; CHAIN_HASH_LEN]> {
        self.chain
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
            if self.defer_zeros {
                self.unchecked_zeros = Some(self.file_position());
                self.done = true;
                return None;
            }
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
            let kind = CorruptionKind::LengthPastEnd {
                len: raw.len,
                available: (self.buf.len() - self.pos) as u64,
            };
            return self.torn_unless_followed(kind);
        };
        let chain = self.layout.chain_hash.then_some(chain);
        let computed = frame_crc(raw.len, raw.offset, chain, payload);
        if computed != raw.crc {
            let kind = CorruptionKind::Checksum {
                stored: raw.crc,
                computed,
            };
            if all_zero(self.rest(end)) {
                return self.torn_unless_followed(kind);
            }
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
        let chain_hash: Option<&[u8; CHAIN_HASH_LEN]> = chain.and_then(|c| c.try_into().ok());
        if let (Some(prev), Some(stored)) = (&self.chain, chain_hash) {
            let expected = chain_next(prev, raw.offset, payload);
            if &expected != stored {
                return self.corrupt(CorruptionKind::ChainMismatch);
            }
            self.chain = Some(expected);
        }
        let frame = Frame {
            position: self.file_position(),
            offset: raw.offset,
            chain_hash,
            payload,
        };
        self.pos = end;
        self.next_offset = self.next_offset.wrapping_add(1);
        Some(Ok(frame))
    }
}
