//! Exhaustive single-bit damage: every bit of every byte of every record of a small log is
//! flipped in turn. The reader must never yield a wrong record: it yields exactly the records
//! before the damaged frame, then stops at the damaged frame's position.
//!
//! How it stops is fixed by the rules of FORMAT.md ("Reading a segment"), and this test
//! predicts it exactly:
//!
//! - a flip in the CRC, offset, chain hash or payload fails the frame's CRC (CRC-32 catches
//!   every single-bit error). If any intact record follows, that is `Corrupt { Checksum }`.
//!   In the last record it is a `TornTail` by design: a damaged last record is
//!   indistinguishable from a torn write.
//! - a flip in the length field that sets a bit above 2^28 gives a length over
//!   `RECORD_PAYLOAD_MAX`: `Corrupt { LengthTooLarge }`.
//! - any other flip in the length field moves the frame's end. In the last record that is a
//!   `TornTail`. Elsewhere the reader finds the intact record that follows and reports
//!   corruption: `LengthPastEnd` if the new end lies past the input, else `Checksum`.
//!
//! An offset flip never shows up as `OffsetMismatch`: the offset is covered by the CRC.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::{build_segment, read_segment};
use ctxlog_format::layout::RECORD_PAYLOAD_MAX;
use ctxlog_format::{all_zero, CorruptionKind, FrameLayout, Stop};

fn flip_every_bit(layout: FrameLayout, zero_fill: usize) -> [usize; 3] {
    let long = [0x3cu8; 40];
    let payloads: [&[u8]; 4] = [b"a", b"", &long, b"world!"];
    let (file, written) = build_segment(1, layout, &payloads, zero_fill);
    // [torn tails, checksum corruptions, length corruptions]
    let mut seen = [0usize; 3];
    for (index, record) in written.iter().enumerate() {
        let pos = record.position as usize;
        let frame_len = layout.frame_len(record.payload.len());
        for byte in pos..pos + frame_len {
            for bit in 0..8 {
                let mut damaged = file.clone();
                damaged[byte] ^= 1 << bit;
                let got = read_segment(&damaged);
                let what =
                    format!("{layout:?}, fill {zero_fill}, record {index}, byte {byte}, bit {bit}");

                // Never a wrong record: exactly the ones before the damaged frame.
                assert_eq!(got.frames, written[..index].to_vec(), "{what}");

                let in_len_field = byte < pos + 4;
                let len = u32::from_le_bytes(damaged[pos..pos + 4].try_into().unwrap());
                let end = pos + layout.overhead() + len as usize;
                let expected = if in_len_field && len > RECORD_PAYLOAD_MAX {
                    seen[2] += 1;
                    Stop::Corrupt {
                        position: record.position,
                        offset: record.offset,
                        kind: CorruptionKind::LengthTooLarge {
                            len,
                            max: RECORD_PAYLOAD_MAX,
                        },
                    }
                } else if index + 1 == written.len()
                    && (end > damaged.len() || all_zero(&damaged[end..]))
                {
                    seen[0] += 1;
                    Stop::TornTail {
                        position: record.position,
                    }
                } else if end > damaged.len() {
                    seen[1] += 1;
                    Stop::Corrupt {
                        position: record.position,
                        offset: record.offset,
                        kind: CorruptionKind::LengthPastEnd {
                            len,
                            available: (damaged.len() - pos) as u64,
                        },
                    }
                } else {
                    seen[1] += 1;
                    let stored = u32::from_le_bytes(damaged[pos + 4..pos + 8].try_into().unwrap());
                    let Some(Stop::Corrupt {
                        kind:
                            CorruptionKind::Checksum {
                                stored: s,
                                computed,
                            },
                        ..
                    }) = got.stop
                    else {
                        panic!("{what}: expected a checksum corruption, got {:?}", got.stop);
                    };
                    assert_eq!(s, stored, "{what}");
                    assert_ne!(computed, stored, "{what}");
                    Stop::Corrupt {
                        position: record.position,
                        offset: record.offset,
                        kind: CorruptionKind::Checksum { stored, computed },
                    }
                };
                assert_eq!(got.stop, Some(expected), "{what}");
            }
        }
    }
    seen
}

#[test]
fn every_bit_flip_is_caught_at_its_frame() {
    for layout in [
        FrameLayout { chain_hash: false },
        FrameLayout { chain_hash: true },
    ] {
        for zero_fill in [0, 64, 4096] {
            let [torn, checksum, length] = flip_every_bit(layout, zero_fill);
            // Each kind of outcome occurs: the test exercises every rule it documents.
            assert!(
                torn > 0 && checksum > 0 && length > 0,
                "{torn} {checksum} {length}"
            );
            // Bits 28..=31 of the 4 length fields, except bit 28 of the empty record's length:
            // that makes it exactly 2^28 = RECORD_PAYLOAD_MAX, allowed, and past the input.
            assert_eq!(length, 4 * 4 - 1, "{layout:?}");
        }
    }
}

#[test]
fn a_flip_in_the_last_record_is_a_torn_tail_and_elsewhere_corruption() {
    // The two common cases, spelled out on one log without zero fill: a payload flip in
    // record 1 of 2 is corruption, the same flip in record 2 a torn tail.
    let (file, written) = build_segment(1, FrameLayout::default(), &[b"hello", b"world!"], 0);
    let mut first = file.clone();
    first[written[0].position as usize + 16] ^= 0x01;
    let got = read_segment(&first);
    assert!(got.frames.is_empty());
    assert!(matches!(
        got.stop,
        Some(Stop::Corrupt {
            position: 64,
            offset: 1,
            kind: CorruptionKind::Checksum { .. }
        })
    ));

    let mut second = file;
    second[written[1].position as usize + 16] ^= 0x01;
    let got = read_segment(&second);
    assert_eq!(got.frames, written[..1].to_vec());
    assert_eq!(got.stop, Some(Stop::TornTail { position: 85 }));
}
