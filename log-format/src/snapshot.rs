//! Snapshot files: `file header (kind 2) | chunk frame* | trailer` (FORMAT.md, "Snapshot file").
//!
//! Chunks are ordinary record frames (no chain hash) whose offsets count the chunks from 1. The
//! fixed trailer at the end says how many chunks and body bytes precede it, so that a file cut
//! short anywhere is detected. The body is cut into chunks in exactly one way (every chunk but
//! the last holds [`SNAPSHOT_CHUNK_MAX`] bytes), and the decoder accepts only that cut, so a
//! snapshot has exactly one encoding.

use crate::error::{CorruptionKind, HeaderError};
use crate::frame::{encode_frame, FrameLayout};
use crate::header::{FileHeader, FileKind};
use crate::layout::*;
use crate::le;
use crate::reader::{FrameReader, Stop};

/// Why a snapshot file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The file header is bad.
    #[error("snapshot header: {0}")]
    Header(#[from] HeaderError),
    /// The trailer is missing, damaged or disagrees with the file length.
    #[error("snapshot trailer missing or damaged (file length {len})")]
    Trailer {
        /// File length.
        len: u64,
    },
    /// A chunk failed its check.
    #[error("snapshot chunk damaged: {stop:?}")]
    Chunk {
        /// Where and how.
        stop: Stop,
    },
    /// The chunks do not add up to what the trailer promises.
    #[error("snapshot has {found} chunks, trailer says {expected}")]
    ChunkCount {
        /// Chunks the trailer announces.
        expected: u64,
        /// Chunks found.
        found: u64,
    },
}

/// Encodes a whole snapshot file: header, `body` cut into chunks, trailer.
pub fn encode_snapshot(header: &FileHeader, body: &[u8]) -> Vec<u8> {
    let chunks = body.chunks(SNAPSHOT_CHUNK_MAX);
    let count = chunks.len() as u64;
    let mut out = Vec::with_capacity(
        HEADER_LEN + body.len() + (count as usize) * FRAME_HEADER_LEN + TRAILER_LEN,
    );
    out.extend_from_slice(&header.encode());
    for (index, chunk) in (1u64..).zip(chunks) {
        // A chunk is at most SNAPSHOT_CHUNK_MAX < RECORD_PAYLOAD_MAX and its index is >= 1,
        // which are the only two ways an encode can fail.
        let encoded = encode_frame(&mut out, FrameLayout::default(), index, None, chunk);
        debug_assert!(encoded.is_ok());
    }
    let body_len = (out.len() - HEADER_LEN) as u64;
    out.extend_from_slice(&encode_trailer(count, body_len));
    out
}

fn encode_trailer(chunks: u64, body_len: u64) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    le::put(&mut t, TRL_MAGIC_POS, &TRAILER_MAGIC);
    le::put(&mut t, TRL_CHUNKS_POS, &chunks.to_le_bytes());
    le::put(&mut t, TRL_BODY_LEN_POS, &body_len.to_le_bytes());
    let crc = crc32fast::hash(t.get(..TRL_CRC_POS).unwrap_or_default());
    le::put(&mut t, TRL_CRC_POS, &crc.to_le_bytes());
    t
}

/// A checked snapshot: its header and the chunk payloads, borrowed from the input in order.
#[derive(Debug, Clone)]
pub struct DecodedSnapshot<'a> {
    /// The file header (`first_offset` is the offset the state is as of).
    pub header: FileHeader,
    /// The body, piece by piece.
    pub chunks: Vec<&'a [u8]>,
}

/// Decodes and checks a whole snapshot file.
pub fn decode_snapshot(
    buf: &[u8],
    supported_flags: u32,
) -> Result<DecodedSnapshot<'_>, SnapshotError> {
    let header = FileHeader::decode_kind(buf, FileKind::Snapshot, supported_flags)?;
    let len = buf.len() as u64;
    let bad_trailer = SnapshotError::Trailer { len };
    let trailer_pos = buf
        .len()
        .checked_sub(TRAILER_LEN)
        .ok_or(bad_trailer.clone())?;
    let trailer = buf.get(trailer_pos..).ok_or(bad_trailer.clone())?;
    let (Some(magic), Some(count), Some(body_len), Some(crc)) = (
        le::array::<8>(trailer, TRL_MAGIC_POS),
        le::u64_at(trailer, TRL_CHUNKS_POS),
        le::u64_at(trailer, TRL_BODY_LEN_POS),
        le::u32_at(trailer, TRL_CRC_POS),
    ) else {
        return Err(bad_trailer);
    };
    let reserved = le::u32_at(trailer, TRL_RESERVED_POS);
    let crc_ok = crc32fast::hash(trailer.get(..TRL_CRC_POS).unwrap_or_default()) == crc;
    if magic != TRAILER_MAGIC || !crc_ok || reserved != Some(0) {
        return Err(bad_trailer);
    }
    if trailer_pos < HEADER_LEN || (trailer_pos - HEADER_LEN) as u64 != body_len {
        return Err(bad_trailer);
    }
    let body = buf.get(HEADER_LEN..trailer_pos).ok_or(bad_trailer)?;
    let mut frames = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 16));
    let mut reader = FrameReader::new(body, HEADER_LEN as u64, 1, FrameLayout::default());
    for frame in reader.by_ref() {
        frames.push(frame.map_err(|stop| SnapshotError::Chunk { stop })?);
    }
    if frames.len() as u64 != count {
        return Err(SnapshotError::ChunkCount {
            expected: count,
            found: frames.len() as u64,
        });
    }
    // Every body byte belongs to a chunk frame: the reader's clean end at zeros is free space
    // in a segment, but a snapshot has none (its trailer counts the body bytes).
    if reader.file_position() != trailer_pos as u64 {
        return Err(SnapshotError::Trailer { len });
    }
    // Chunks are cut as `encode_snapshot` cuts them: none empty, none larger than
    // SNAPSHOT_CHUNK_MAX, and every one but the last exactly SNAPSHOT_CHUNK_MAX. So a snapshot
    // has exactly one encoding.
    let last = frames.len().saturating_sub(1);
    for (index, frame) in frames.iter().enumerate() {
        let chunk_len = frame.payload.len();
        let kind = if chunk_len > SNAPSHOT_CHUNK_MAX {
            CorruptionKind::LengthTooLarge {
                len: chunk_len as u32,
                max: SNAPSHOT_CHUNK_MAX as u32,
            }
        } else if chunk_len == 0 || (index < last && chunk_len != SNAPSHOT_CHUNK_MAX) {
            CorruptionKind::Truncated
        } else {
            continue;
        };
        let stop = Stop::Corrupt {
            position: frame.position,
            offset: frame.offset,
            kind,
        };
        return Err(SnapshotError::Chunk { stop });
    }
    let chunks = frames.iter().map(|f| f.payload).collect();
    Ok(DecodedSnapshot { header, chunks })
}
