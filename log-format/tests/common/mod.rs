//! Helpers shared by the integration tests: building small segments, reading them back, and
//! the hex text format of the golden vectors.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use ctxlog_format::layout::*;
use ctxlog_format::{encode_frame, FileHeader, FileKind, FrameLayout, FrameReader, Stop};

/// The store id of every test file: 00 01 02 .. 0f.
pub const STORE_ID: [u8; STORE_ID_LEN] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];

/// 2026-01-01T00:00:00Z in milliseconds since the Unix epoch.
pub const CREATED_MS: u64 = 1_767_225_600_000;

/// A segment header with the test store id and creation time.
pub fn segment_header(first_offset: u64, flags: u32) -> FileHeader {
    FileHeader {
        kind: FileKind::Segment,
        flags,
        first_offset,
        created_ms: CREATED_MS,
        store_id: STORE_ID,
    }
}

/// A deterministic 32-byte chain hash for record `offset` (the real one will be BLAKE3; the
/// format only carries the bytes).
pub fn fake_chain_hash(offset: u64) -> [u8; CHAIN_HASH_LEN] {
    let mut h = [0u8; CHAIN_HASH_LEN];
    for (i, b) in h.iter_mut().enumerate() {
        *b = (offset as u8).wrapping_mul(31).wrapping_add(i as u8) | 0x40;
    }
    h
}

/// One record as written: where its frame starts in the file, its offset and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub position: u64,
    pub offset: u64,
    pub payload: Vec<u8>,
}

/// A whole segment file: header, then `payloads` at offsets `first_offset..`, then
/// `zero_fill` zero bytes. Returns the file and where each record went.
pub fn build_segment(
    first_offset: u64,
    layout: FrameLayout,
    payloads: &[&[u8]],
    zero_fill: usize,
) -> (Vec<u8>, Vec<Written>) {
    let flags = if layout.chain_hash {
        FLAG_CHAIN_HASH
    } else {
        0
    };
    let mut file = segment_header(first_offset, flags).encode().to_vec();
    let mut written = Vec::new();
    for (offset, payload) in (first_offset..).zip(payloads) {
        let position = file.len() as u64;
        let chain = layout.chain_hash.then(|| fake_chain_hash(offset));
        encode_frame(&mut file, layout, offset, chain.as_ref(), payload).unwrap();
        written.push(Written {
            position,
            offset,
            payload: payload.to_vec(),
        });
    }
    file.extend(std::iter::repeat_n(0u8, zero_fill));
    (file, written)
}

/// What reading a segment produced: every frame yielded, then how it ended (`None` = clean).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    pub frames: Vec<Written>,
    pub stop: Option<Stop>,
}

/// Reads a segment file the way the WAL does: header (kind Segment, chain hash allowed), then
/// frames from `HEADER_LEN`. Also checks the reader's own invariants: frames are contiguous,
/// nothing is yielded after a stop.
pub fn read_segment(file: &[u8]) -> ReadOutcome {
    let header = FileHeader::decode_kind(file, FileKind::Segment, KNOWN_FLAGS).unwrap();
    let layout = FrameLayout::from_flags(header.flags);
    let body = &file[HEADER_LEN..];
    let mut reader = FrameReader::new(body, HEADER_LEN as u64, header.first_offset, layout);
    let mut frames = Vec::new();
    let mut stop = None;
    let mut expected_position = HEADER_LEN as u64;
    for item in reader.by_ref() {
        match item {
            Ok(frame) => {
                assert_eq!(frame.position, expected_position, "frames are contiguous");
                assert_eq!(frame.chain_hash.is_some(), layout.chain_hash);
                if let Some(chain) = frame.chain_hash {
                    assert_eq!(*chain, fake_chain_hash(frame.offset));
                }
                expected_position = frame.end(layout);
                frames.push(Written {
                    position: frame.position,
                    offset: frame.offset,
                    payload: frame.payload.to_vec(),
                });
            }
            Err(s) => {
                assert!(stop.is_none(), "at most one stop");
                stop = Some(s);
            }
        }
    }
    assert_eq!(reader.next(), None, "the reader is fused");
    assert_eq!(reader.file_position(), expected_position);
    ReadOutcome { frames, stop }
}

/// Parses the hex text of a golden vector: `#` starts a comment, tokens ending in `:` are
/// position labels, every other token is one byte as two hex digits.
pub fn parse_hex(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let data = line.split('#').next().unwrap_or("");
        for token in data.split_whitespace() {
            if token.ends_with(':') {
                continue;
            }
            assert_eq!(token.len(), 2, "line {}: bad byte {token:?}", n + 1);
            let byte = u8::from_str_radix(token, 16)
                .unwrap_or_else(|_| panic!("line {}: bad byte {token:?}", n + 1));
            out.push(byte);
        }
    }
    out
}

/// The directory of the golden vectors.
pub fn vectors_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// The bytes of a checked-in golden vector.
pub fn vector(name: &str) -> Vec<u8> {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_hex(&text)
}
