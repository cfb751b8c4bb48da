//! Snapshot files (FORMAT.md, "Snapshot file"): the round trip at every chunk boundary, and
//! refusal of every truncation, every bit flip, and every non-canonical cut.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::{segment_header, CREATED_MS, STORE_ID};
use ctxlog_format::layout::*;
use ctxlog_format::{
    decode_snapshot, encode_frame, encode_snapshot, CorruptionKind, FileHeader, FileKind,
    FrameLayout, HeaderError, SnapshotError, Stop,
};

fn snapshot_header(as_of: u64, flags: u32) -> FileHeader {
    FileHeader {
        kind: FileKind::Snapshot,
        flags,
        first_offset: as_of,
        created_ms: CREATED_MS,
        store_id: STORE_ID,
    }
}

/// Deterministic, non-repeating-looking body bytes.
fn body(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A snapshot file built by hand from any chunk frames: the header, `body` as given, and a
/// trailer with a valid CRC that counts `chunks` and the body's bytes.
fn hand_made(header: &FileHeader, body: &[u8], chunks: u64) -> Vec<u8> {
    let mut file = header.encode().to_vec();
    file.extend_from_slice(body);
    let mut trailer = Vec::new();
    trailer.extend_from_slice(b"CTXLSEND");
    trailer.extend_from_slice(&chunks.to_le_bytes());
    trailer.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let crc = crc32fast::hash(&trailer);
    trailer.extend_from_slice(&crc.to_le_bytes());
    trailer.extend_from_slice(&[0; 4]);
    file.extend_from_slice(&trailer);
    file
}

fn chunk(offset: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    encode_frame(&mut f, FrameLayout::default(), offset, None, payload).unwrap();
    f
}

#[test]
fn round_trip_at_every_chunk_boundary() {
    const M: usize = SNAPSHOT_CHUNK_MAX;
    assert_eq!(M, 4 * 1024 * 1024);
    for (len, chunks) in [
        (0, 0),
        (1, 1),
        (20, 1),
        (M - 1, 1),
        (M, 1),
        (M + 1, 2),
        (2 * M + 7, 3),
    ] {
        let h = snapshot_header(1234, 0);
        let b = body(len);
        let file = encode_snapshot(&h, &b);
        assert_eq!(file.len(), 64 + chunks * 16 + len + 32, "len {len}");
        let s = decode_snapshot(&file, 0).unwrap();
        assert_eq!(s.header, h);
        assert_eq!(s.chunks.len(), chunks, "len {len}");
        for (i, c) in s.chunks.iter().enumerate() {
            let expected = if i + 1 < chunks { M } else { len - i * M };
            assert_eq!(c.len(), expected, "len {len} chunk {i}");
        }
        assert_eq!(s.chunks.concat(), b);
        // The trailer says what the file holds.
        let t = &file[file.len() - 32..];
        assert_eq!(&t[..8], b"CTXLSEND");
        assert_eq!(
            u64::from_le_bytes(t[8..16].try_into().unwrap()),
            chunks as u64
        );
        assert_eq!(
            u64::from_le_bytes(t[16..24].try_into().unwrap()),
            (file.len() - 96) as u64
        );
        assert_eq!(encode_snapshot(&s.header, &s.chunks.concat()), file);
    }
}

fn small_snapshots() -> Vec<Vec<u8>> {
    vec![
        encode_snapshot(&snapshot_header(2, 0), b"state as of offset 2"),
        encode_snapshot(&snapshot_header(1, 0), b""),
        encode_snapshot(&snapshot_header(9, FLAG_CHAIN_HASH), b"x"),
    ]
}

#[test]
fn every_truncation_fails() {
    for file in small_snapshots() {
        for len in 0..file.len() {
            let got = decode_snapshot(&file[..len], KNOWN_FLAGS);
            if len < 64 {
                assert_eq!(
                    got.unwrap_err(),
                    SnapshotError::Header(HeaderError::TooShort {
                        len: len as u64,
                        need: 64
                    })
                );
            } else {
                assert_eq!(
                    got.unwrap_err(),
                    SnapshotError::Trailer { len: len as u64 },
                    "cut to {len}"
                );
            }
        }
    }
}

#[test]
fn anything_appended_fails() {
    for file in small_snapshots() {
        for extra in [&[0u8][..], &[0; 32], b"CTXLSEND"] {
            let mut longer = file.clone();
            longer.extend_from_slice(extra);
            assert!(matches!(
                decode_snapshot(&longer, KNOWN_FLAGS),
                Err(SnapshotError::Trailer { .. })
            ));
        }
    }
}

#[test]
fn every_bit_flip_fails() {
    for file in small_snapshots() {
        let trailer = file.len() - 32;
        for byte in 0..file.len() {
            for bit in 0..8 {
                let mut d = file.clone();
                d[byte] ^= 1 << bit;
                let got = decode_snapshot(&d, KNOWN_FLAGS);
                let ok = match byte {
                    0..=7 => matches!(
                        got,
                        Err(SnapshotError::Header(HeaderError::BadMagic { .. }))
                    ),
                    8..=9 => matches!(
                        got,
                        Err(SnapshotError::Header(
                            HeaderError::UnsupportedVersion { .. }
                        ))
                    ),
                    10..=63 => matches!(
                        got,
                        Err(SnapshotError::Header(HeaderError::Checksum { .. }))
                    ),
                    // A damaged chunk: the frame reader stops (torn, since nothing follows the
                    // last chunk in the body, or corrupt).
                    b if b < trailer => matches!(got, Err(SnapshotError::Chunk { .. })),
                    _ => matches!(got, Err(SnapshotError::Trailer { .. })),
                };
                assert!(ok, "byte {byte} bit {bit}: {got:?}");
            }
        }
    }
}

#[test]
fn a_segment_is_not_a_snapshot() {
    let mut seg = segment_header(1, 0).encode().to_vec();
    seg.extend_from_slice(&[0; 64]);
    assert_eq!(
        decode_snapshot(&seg, 0).unwrap_err(),
        SnapshotError::Header(HeaderError::WrongKind {
            found: FileKind::Segment,
            expected: FileKind::Snapshot,
        })
    );
}

#[test]
fn the_chain_hash_flag_must_be_supported_but_chunks_never_carry_one() {
    let h = snapshot_header(5, FLAG_CHAIN_HASH);
    let file = encode_snapshot(&h, b"abc");
    assert_eq!(file.len(), 64 + 16 + 3 + 32, "no chain hash in chunks");
    assert!(matches!(
        decode_snapshot(&file, 0),
        Err(SnapshotError::Header(HeaderError::UnsupportedFlags {
            unsupported: 1,
            ..
        }))
    ));
    let s = decode_snapshot(&file, FLAG_CHAIN_HASH).unwrap();
    assert_eq!(s.header, h);
    assert_eq!(s.chunks, [b"abc".as_slice()]);
}

#[test]
fn the_chunk_count_must_match_the_trailer() {
    let h = snapshot_header(1, 0);
    let file = hand_made(&h, &chunk(1, b"abc"), 2);
    assert_eq!(
        decode_snapshot(&file, 0).unwrap_err(),
        SnapshotError::ChunkCount {
            expected: 2,
            found: 1
        }
    );
    // A chunk that was zeroed out entirely is missing, not free space.
    let mut body = chunk(1, b"abc");
    body.extend_from_slice(&[0; 19]);
    let file = hand_made(&h, &body, 2);
    assert_eq!(
        decode_snapshot(&file, 0).unwrap_err(),
        SnapshotError::ChunkCount {
            expected: 2,
            found: 1
        }
    );
}

#[test]
fn chunks_must_count_from_one() {
    let file = hand_made(&snapshot_header(1, 0), &chunk(2, b"abc"), 1);
    assert_eq!(
        decode_snapshot(&file, 0).unwrap_err(),
        SnapshotError::Chunk {
            stop: Stop::Corrupt {
                position: 64,
                offset: 1,
                kind: CorruptionKind::OffsetMismatch {
                    expected: 1,
                    found: 2
                },
            }
        }
    );
}

#[test]
fn a_hand_made_canonical_snapshot_is_accepted() {
    // The hand-made builder itself is right: canonical input decodes.
    let h = snapshot_header(3, 0);
    let file = hand_made(&h, &chunk(1, b"abc"), 1);
    assert_eq!(file, encode_snapshot(&h, b"abc"));
    assert_eq!(
        decode_snapshot(&file, 0).unwrap().chunks,
        [b"abc".as_slice()]
    );
}

// Regressions: decode_snapshot used to accept each of the following, none of which
// encode_snapshot writes, so a decoded snapshot did not always re-encode to its own bytes.

#[test]
fn regression_zeros_after_the_last_chunk_are_refused() {
    let h = snapshot_header(1, 0);
    for zeros in [1, 15, 16, 100] {
        let mut body = chunk(1, b"abc");
        body.extend(std::iter::repeat_n(0u8, zeros));
        let file = hand_made(&h, &body, 1);
        assert_eq!(
            decode_snapshot(&file, 0).unwrap_err(),
            SnapshotError::Trailer {
                len: file.len() as u64
            },
            "{zeros} zeros"
        );
    }
}

#[test]
fn regression_an_empty_chunk_is_refused() {
    let file = hand_made(&snapshot_header(1, 0), &chunk(1, b""), 1);
    assert_eq!(
        decode_snapshot(&file, 0).unwrap_err(),
        SnapshotError::Chunk {
            stop: Stop::Corrupt {
                position: 64,
                offset: 1,
                kind: CorruptionKind::Truncated
            }
        }
    );
}

#[test]
fn regression_a_short_chunk_before_the_last_is_refused() {
    let mut body = chunk(1, b"ab");
    body.extend_from_slice(&chunk(2, b"cd"));
    let file = hand_made(&snapshot_header(1, 0), &body, 2);
    assert_eq!(
        decode_snapshot(&file, 0).unwrap_err(),
        SnapshotError::Chunk {
            stop: Stop::Corrupt {
                position: 64,
                offset: 1,
                kind: CorruptionKind::Truncated
            }
        }
    );
}

#[test]
fn regression_a_chunk_over_4_mib_is_refused() {
    let big = body(SNAPSHOT_CHUNK_MAX + 1);
    let file = hand_made(&snapshot_header(1, 0), &chunk(1, &big), 1);
    assert_eq!(
        decode_snapshot(&file, 0).unwrap_err(),
        SnapshotError::Chunk {
            stop: Stop::Corrupt {
                position: 64,
                offset: 1,
                kind: CorruptionKind::LengthTooLarge {
                    len: 4_194_305,
                    max: 4_194_304
                },
            }
        }
    );
}
