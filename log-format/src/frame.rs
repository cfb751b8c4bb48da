//! Record frames: `length u32 | crc u32 | offset u64 | [chain hash 32] | payload`
//! (FORMAT.md, "Record frame").

use crate::error::EncodeError;
use crate::layout::*;
use crate::le;

/// Whether frames of a file carry the chain hash (from the file header's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameLayout {
    /// Frames carry a [`CHAIN_HASH_LEN`]-byte chain hash after the fixed header.
    pub chain_hash: bool,
}

impl FrameLayout {
    /// The layout that the given header flags call for.
    pub fn from_flags(flags: u32) -> FrameLayout {
        FrameLayout {
            chain_hash: flags & FLAG_CHAIN_HASH != 0,
        }
    }

    /// Bytes before the payload.
    pub const fn overhead(self) -> usize {
        if self.chain_hash {
            FRAME_HEADER_LEN + CHAIN_HASH_LEN
        } else {
            FRAME_HEADER_LEN
        }
    }

    /// Total frame length for a payload of `payload_len` bytes.
    pub const fn frame_len(self, payload_len: usize) -> usize {
        self.overhead() + payload_len
    }
}

/// One decoded, checked record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Position of the frame's first byte in its file.
    pub position: u64,
    /// The record's offset.
    pub offset: u64,
    /// The chain hash, when the layout has one.
    pub chain_hash: Option<&'a [u8; CHAIN_HASH_LEN]>,
    /// The payload, borrowed from the input.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Position just past this frame.
    pub fn end(&self, layout: FrameLayout) -> u64 {
        self.position + layout.frame_len(self.payload.len()) as u64
    }
}

/// The CRC of a frame: over the length field, the offset field, the chain hash (if any) and
/// the payload, in that order (the CRC field itself is skipped).
pub fn frame_crc(len: u32, offset: u64, chain_hash: Option<&[u8]>, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&offset.to_le_bytes());
    if let Some(chain) = chain_hash {
        h.update(chain);
    }
    h.update(payload);
    h.finalize()
}

/// The chain value before a store's first record: BLAKE3's key derivation over the store id,
/// so that two stores never share a chain.
pub fn chain_genesis(store_id: &[u8; STORE_ID_LEN]) -> [u8; CHAIN_HASH_LEN] {
    blake3::derive_key(CHAIN_GENESIS_CONTEXT, store_id)
}

/// The chain hash of a record: `BLAKE3(previous chain hash || offset (u64 LE) || payload)`.
pub fn chain_next(
    prev: &[u8; CHAIN_HASH_LEN],
    offset: u64,
    payload: &[u8],
) -> [u8; CHAIN_HASH_LEN] {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(&offset.to_le_bytes());
    h.update(payload);
    *h.finalize().as_bytes()
}

/// Appends one frame to `out`. Allocates only if `out` has to grow.
pub fn encode_frame(
    out: &mut Vec<u8>,
    layout: FrameLayout,
    offset: u64,
    chain_hash: Option<&[u8; CHAIN_HASH_LEN]>,
    payload: &[u8],
) -> Result<(), EncodeError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= RECORD_PAYLOAD_MAX)
        .ok_or(EncodeError::PayloadTooLarge {
            len: payload.len() as u64,
            max: u64::from(RECORD_PAYLOAD_MAX),
        })?;
    if offset == 0 {
        return Err(EncodeError::ZeroOffset);
    }
    if layout.chain_hash != chain_hash.is_some() {
        return Err(EncodeError::ChainHashMismatch);
    }
    let chain = chain_hash.map(|c| c.as_slice());
    let crc = frame_crc(len, offset, chain, payload);
    out.reserve(layout.frame_len(payload.len()));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    if let Some(chain) = chain {
        out.extend_from_slice(chain);
    }
    out.extend_from_slice(payload);
    Ok(())
}

/// The raw fields of a frame header, before any check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub len: u32,
    pub crc: u32,
    pub offset: u64,
}

pub(crate) fn raw_header(buf: &[u8], pos: usize) -> Option<RawHeader> {
    Some(RawHeader {
        len: le::u32_at(buf, pos + FRAME_LEN_POS)?,
        crc: le::u32_at(buf, pos + FRAME_CRC_POS)?,
        offset: le::u64_at(buf, pos + FRAME_OFFSET_POS)?,
    })
}
