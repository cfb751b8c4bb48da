//! The reader's rules one by one (FORMAT.md, "Reading a segment"): clean ends, torn tails,
//! each kind of corruption, offset checks, and the edges of the offset range.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::{build_segment, read_segment, segment_header, Written};
use ctxlog_format::layout::*;
use ctxlog_format::{
    encode_frame, frame_crc, CorruptionKind, FileHeader, FileKind, FrameLayout, FrameReader, Stop,
};

const PLAIN: FrameLayout = FrameLayout { chain_hash: false };

/// A frame with any offset (including 0, which `encode_frame` refuses) and a valid CRC.
fn raw_frame(offset: u64, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::new();
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&frame_crc(len, offset, None, payload).to_le_bytes());
    f.extend_from_slice(&offset.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// A segment whose header says `first_offset` and whose frames carry `offsets`.
fn segment_with_offsets(
    first_offset: u64,
    offsets: &[u64],
    zero_fill: usize,
) -> (Vec<u8>, Vec<u64>) {
    let mut file = segment_header(first_offset, 0).encode().to_vec();
    let mut positions = Vec::new();
    for &offset in offsets {
        positions.push(file.len() as u64);
        file.extend_from_slice(&raw_frame(offset, format!("record {offset}").as_bytes()));
    }
    file.extend(std::iter::repeat_n(0u8, zero_fill));
    (file, positions)
}

fn offsets_read(file: &[u8]) -> (Vec<u64>, Option<Stop>) {
    let got = read_segment(file);
    (got.frames.iter().map(|w| w.offset).collect(), got.stop)
}

#[test]
fn a_gap_in_the_offsets_is_an_offset_mismatch() {
    for zero_fill in [0, 100] {
        let (file, pos) = segment_with_offsets(10, &[10, 11, 13, 14], zero_fill);
        let (offsets, stop) = offsets_read(&file);
        assert_eq!(offsets, [10, 11]);
        assert_eq!(
            stop,
            Some(Stop::Corrupt {
                position: pos[2],
                offset: 12,
                kind: CorruptionKind::OffsetMismatch {
                    expected: 12,
                    found: 13
                },
            })
        );
    }
}

#[test]
fn a_repeated_offset_is_an_offset_mismatch() {
    let (file, pos) = segment_with_offsets(1, &[1, 2, 2], 0);
    let (offsets, stop) = offsets_read(&file);
    assert_eq!(offsets, [1, 2]);
    assert_eq!(
        stop,
        Some(Stop::Corrupt {
            position: pos[2],
            offset: 3,
            kind: CorruptionKind::OffsetMismatch {
                expected: 3,
                found: 2
            },
        })
    );
}

#[test]
fn a_first_frame_that_disagrees_with_the_header_is_an_offset_mismatch() {
    // The header promises offset 5; the frames start at 1 (a segment renamed or misplaced).
    let (file, _) = segment_with_offsets(5, &[1, 2], 0);
    assert_eq!(
        offsets_read(&file),
        (
            vec![],
            Some(Stop::Corrupt {
                position: 64,
                offset: 5,
                kind: CorruptionKind::OffsetMismatch {
                    expected: 5,
                    found: 1
                },
            })
        )
    );
}

#[test]
fn an_intact_last_frame_with_the_wrong_offset_is_never_a_torn_tail() {
    // Only zeros follow, but the frame passed its CRC: damage, not a crash.
    let (file, pos) = segment_with_offsets(1, &[1, 3], 4096);
    let (offsets, stop) = offsets_read(&file);
    assert_eq!(offsets, [1]);
    assert!(matches!(
        stop,
        Some(Stop::Corrupt { position, kind: CorruptionKind::OffsetMismatch { expected: 2, found: 3 }, .. })
            if position == pos[1]
    ));
}

#[test]
fn offset_zero_is_never_a_record() {
    // Regression: a reader started at offset 0 (a header saying first_offset 0) used to accept
    // a frame carrying offset 0, which `encode_frame` can never write.
    let (file, _) = segment_with_offsets(0, &[0, 1], 0);
    assert_eq!(
        offsets_read(&file),
        (
            vec![],
            Some(Stop::Corrupt {
                position: 64,
                offset: 0,
                kind: CorruptionKind::OffsetMismatch {
                    expected: 0,
                    found: 0
                },
            })
        )
    );
}

#[test]
fn regression_offset_u64_max_does_not_overflow() {
    // Regression (found reading the code, reachable from file contents): the reader did
    // `next_offset += 1` after yielding a frame at offset u64::MAX, which panics in debug
    // builds. Now nothing can follow u64::MAX: the next expected offset wraps to 0, and offset
    // 0 is refused.
    let (file, pos) = segment_with_offsets(u64::MAX, &[u64::MAX, 0], 0);
    let header = FileHeader::decode_kind(&file, FileKind::Segment, 0).unwrap();
    let mut reader = FrameReader::new(&file[64..], 64, header.first_offset, PLAIN);
    let first = reader.next().unwrap().unwrap();
    assert_eq!(first.offset, u64::MAX);
    assert_eq!(reader.next_offset(), 0);
    assert_eq!(
        reader.next(),
        Some(Err(Stop::Corrupt {
            position: pos[1],
            offset: 0,
            kind: CorruptionKind::OffsetMismatch {
                expected: 0,
                found: 0
            },
        }))
    );
    assert_eq!(reader.next(), None);

    let (file, _) = segment_with_offsets(u64::MAX, &[u64::MAX, u64::MAX], 0);
    let (offsets, stop) = offsets_read(&file);
    assert_eq!(offsets, [u64::MAX]);
    assert!(matches!(
        stop,
        Some(Stop::Corrupt {
            kind: CorruptionKind::OffsetMismatch {
                expected: 0,
                found: u64::MAX
            },
            ..
        })
    ));
}

#[test]
fn clean_ends() {
    let payloads: [&[u8]; 2] = [b"hello", b"world!"];
    // Exactly at a frame boundary, after fewer than 16 zeros, after many zeros.
    for zero_fill in [0, 1, 15, 16, 17, 4096] {
        let (file, written) = build_segment(1, PLAIN, &payloads, zero_fill);
        let got = read_segment(&file);
        assert_eq!(got.frames, written, "zero fill {zero_fill}");
        assert_eq!(got.stop, None, "zero fill {zero_fill}");
    }
    // An empty segment: a header and zeros, or a header alone.
    for zero_fill in [0, 7, 4096] {
        let (file, _) = build_segment(1, PLAIN, &[], zero_fill);
        assert_eq!(read_segment(&file).frames, Vec::<Written>::new());
        assert_eq!(read_segment(&file).stop, None);
    }
}

#[test]
fn a_short_non_zero_tail_is_a_torn_tail() {
    // Fewer than 16 bytes after the last frame, not all zero: a frame header cut short.
    for tail in [&[1u8][..], &[0, 0, 0, 7], &[9; 15]] {
        let (mut file, written) = build_segment(1, PLAIN, &[b"hello"], 0);
        file.extend_from_slice(tail);
        let got = read_segment(&file);
        assert_eq!(got.frames, written);
        assert_eq!(got.stop, Some(Stop::TornTail { position: 85 }), "{tail:?}");
    }
}

#[test]
fn data_after_a_zero_frame_header_is_corruption() {
    // A hole (16 or more zeros where a frame should be) with a record after it.
    for hole in [16, 17, 100] {
        let (mut file, written) = build_segment(1, PLAIN, &[b"hello"], hole);
        encode_frame(&mut file, PLAIN, 2, None, b"after the hole").unwrap();
        let got = read_segment(&file);
        assert_eq!(got.frames, written);
        assert_eq!(
            got.stop,
            Some(Stop::Corrupt {
                position: 85,
                offset: 2,
                kind: CorruptionKind::DataAfterZeros
            }),
            "hole {hole}"
        );
    }
    // A single non-zero byte far into the zero fill is enough.
    let (mut file, _) = build_segment(1, PLAIN, &[b"hello"], 4096);
    *file.last_mut().unwrap() = 1;
    assert!(matches!(
        read_segment(&file).stop,
        Some(Stop::Corrupt {
            position: 85,
            kind: CorruptionKind::DataAfterZeros,
            ..
        })
    ));
}

#[test]
fn a_length_over_the_limit_is_corruption_even_at_the_tail() {
    for zero_fill in [0, 4096] {
        let (mut file, written) = build_segment(1, PLAIN, &[b"hello", b"world!"], zero_fill);
        let at = written[1].position as usize;
        file[at..at + 4].copy_from_slice(&(RECORD_PAYLOAD_MAX + 1).to_le_bytes());
        let got = read_segment(&file);
        assert_eq!(got.frames, written[..1].to_vec());
        assert_eq!(
            got.stop,
            Some(Stop::Corrupt {
                position: 85,
                offset: 2,
                kind: CorruptionKind::LengthTooLarge {
                    len: 268_435_457,
                    max: 268_435_456
                },
            })
        );
    }
}

#[test]
fn a_length_past_the_input_with_a_record_after_it_is_corruption() {
    // RECORD_PAYLOAD_MAX itself is a legal length; the frame cannot be checked, but an intact
    // record follows it, so the length was damaged: never a torn tail that would drop it.
    let (mut file, written) = build_segment(1, PLAIN, &[b"hello", b"world!", b"third"], 0);
    let at = written[1].position as usize;
    file[at..at + 4].copy_from_slice(&RECORD_PAYLOAD_MAX.to_le_bytes());
    let got = read_segment(&file);
    assert_eq!(got.frames, written[..1].to_vec());
    let kind = CorruptionKind::LengthPastEnd {
        len: RECORD_PAYLOAD_MAX,
        available: (file.len() - at) as u64,
    };
    let stop = Stop::Corrupt {
        position: 85,
        offset: 2,
        kind,
    };
    assert_eq!(got.stop, Some(stop));
}

#[test]
fn a_length_past_the_input_in_the_last_record_is_a_torn_tail() {
    let (mut file, written) = build_segment(1, PLAIN, &[b"hello", b"world!"], 0);
    let at = written[1].position as usize;
    file[at..at + 4].copy_from_slice(&RECORD_PAYLOAD_MAX.to_le_bytes());
    let got = read_segment(&file);
    assert_eq!(got.frames, written[..1].to_vec());
    assert_eq!(got.stop, Some(Stop::TornTail { position: 85 }));
}

#[test]
fn garbage_in_the_middle_is_a_checksum_corruption() {
    let (mut file, written) = build_segment(1, PLAIN, &[b"one", b"two", b"three"], 64);
    let at = written[1].position as usize;
    file[at + 4..at + 8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    let got = read_segment(&file);
    assert_eq!(got.frames, written[..1].to_vec());
    assert!(matches!(
        got.stop,
        Some(Stop::Corrupt {
            position: 83,
            offset: 2,
            kind: CorruptionKind::Checksum {
                stored: 0xefbe_adde,
                ..
            }
        })
    ));
}

#[test]
fn frames_read_with_the_wrong_layout_are_refused() {
    let chained = FrameLayout { chain_hash: true };
    let (file, _) = build_segment(1, chained, &[b"hello", b"world!"], 0);
    let mut as_plain = FrameReader::new(&file[64..], 64, 1, PLAIN);
    assert!(matches!(
        as_plain.next(),
        Some(Err(Stop::Corrupt { position: 64, .. }))
    ));

    let (file, _) = build_segment(1, PLAIN, &[b"hello", b"world!"], 0);
    let mut as_chained = FrameReader::new(&file[64..], 64, 1, chained);
    assert!(matches!(as_chained.next(), Some(Err(_))));
}

#[test]
fn positions_count_from_the_base() {
    // A reader over a slice that starts at file position 1000 reports file positions.
    let mut buf = Vec::new();
    encode_frame(&mut buf, PLAIN, 3, None, b"abc").unwrap();
    encode_frame(&mut buf, PLAIN, 5, None, b"def").unwrap();
    let mut reader = FrameReader::new(&buf, 1000, 3, PLAIN);
    assert_eq!(reader.file_position(), 1000);
    assert_eq!(reader.next().unwrap().unwrap().position, 1000);
    assert_eq!(reader.file_position(), 1019);
    assert_eq!(
        reader.next(),
        Some(Err(Stop::Corrupt {
            position: 1019,
            offset: 4,
            kind: CorruptionKind::OffsetMismatch {
                expected: 4,
                found: 5
            },
        }))
    );
    assert_eq!(
        reader.file_position(),
        1019,
        "a stop does not move the position"
    );
    assert_eq!(reader.next(), None);
}

#[test]
fn a_deferred_zero_check_ends_at_the_zero_header_and_says_where() {
    // Zeros only, and zeros with data after them: the deferring reader ends cleanly at the
    // first zero header either way, reads nothing past it, and leaves the check to the caller.
    for garbage in [false, true] {
        let (mut file, written) = build_segment(1, PLAIN, &[b"hello", b"world"], 4096);
        if garbage {
            *file.last_mut().unwrap() = 1;
        }
        let body = &file[HEADER_LEN..];
        let mut reader = FrameReader::new(body, HEADER_LEN as u64, 1, PLAIN).defer_zero_check();
        let frames: Vec<_> = reader.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(frames.len(), written.len());
        let end = HEADER_LEN as u64 + (body.len() - 4096) as u64;
        assert_eq!(reader.file_position(), end);
        assert_eq!(reader.unchecked_zeros(), Some(end), "garbage {garbage}");
        // Without deferring, the same bytes keep their verdict.
        let undeferred = read_segment(&file).stop;
        assert_eq!(undeferred.is_some(), garbage);
    }
    // A clean end that is not at zeros (the slice ends at a frame boundary) defers nothing.
    let (file, _) = build_segment(1, PLAIN, &[b"hello"], 0);
    let mut reader =
        FrameReader::new(&file[HEADER_LEN..], HEADER_LEN as u64, 1, PLAIN).defer_zero_check();
    assert!(reader.by_ref().all(|f| f.is_ok()));
    assert_eq!(reader.unchecked_zeros(), None);
}
