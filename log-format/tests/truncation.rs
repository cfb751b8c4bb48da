//! A crash during an append leaves a prefix of the last frame, followed either by nothing (the
//! file ends there) or by the preallocated zeros. Every such prefix must read as a torn tail at
//! the last frame's position, after every earlier record, in both frame layouts. Two cuts are
//! not torn tails, by design: one that keeps only zero bytes (nothing to tell from free
//! space), and one whose lost bytes were zeros anyway while zero fill follows (the frame is
//! whole again and reads back exactly as written).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::{build_segment, read_segment, ReadOutcome, Written};
use ctxlog_format::{all_zero, FrameLayout, Stop};

const LAYOUTS: [FrameLayout; 2] = [
    FrameLayout { chain_hash: false },
    FrameLayout { chain_hash: true },
];
const ZERO_FILLS: [usize; 8] = [0, 1, 8, 15, 16, 17, 64, 4096];

/// Cuts the last frame of a segment of `payloads` to every length from 0 to whole, appends
/// every zero fill, and checks the outcome. Returns how many cuts read as a torn tail.
fn cut_last_record(payloads: &[&[u8]], layout: FrameLayout) -> usize {
    let (file, written) = build_segment(1, layout, payloads, 0);
    let last: &Written = written.last().unwrap();
    let earlier = &written[..written.len() - 1];
    let start = last.position as usize;
    let frame_len = file.len() - start;
    assert_eq!(frame_len, layout.frame_len(last.payload.len()));
    let mut torn = 0;
    for keep in 0..=frame_len {
        let prefix = &file[start..start + keep];
        for zero_fill in ZERO_FILLS {
            let mut cut = file[..start + keep].to_vec();
            cut.extend(std::iter::repeat_n(0u8, zero_fill));
            let got = read_segment(&cut);
            let missing = &file[start + keep..];
            let expected = if keep == frame_len || (zero_fill >= missing.len() && all_zero(missing))
            {
                // The whole frame made it, or the bytes that did not are zeros and the zero
                // fill supplies them: the record reads back exactly as written, clean end.
                ReadOutcome {
                    frames: written.clone(),
                    stop: None,
                }
            } else if all_zero(prefix) {
                // Nothing but zeros of the last frame made it (keep = 0, or a cut inside a
                // zero-valued leading field): indistinguishable from free space.
                ReadOutcome {
                    frames: earlier.to_vec(),
                    stop: None,
                }
            } else {
                ReadOutcome {
                    frames: earlier.to_vec(),
                    stop: Some(Stop::TornTail {
                        position: last.position,
                    }),
                }
            };
            assert_eq!(
                got, expected,
                "kept {keep} of {frame_len} bytes, zero fill {zero_fill}"
            );
            if expected.stop.is_some() {
                torn += 1;
            }
        }
    }
    torn
}

#[test]
fn every_cut_of_the_last_record_is_a_torn_tail() {
    let filler = [0x5au8; 40];
    let payloads: [&[u8]; 4] = [b"first", b"", &filler, b"last record!"];
    for layout in LAYOUTS {
        let frame_len = layout.frame_len(12);
        let torn = cut_last_record(&payloads, layout);
        // The last payload has a non-zero length byte first, so every cut from 1 byte to one
        // byte short is a torn tail, with every zero fill.
        assert_eq!(torn, (frame_len - 1) * ZERO_FILLS.len(), "{layout:?}");
    }
}

#[test]
fn every_cut_of_a_single_record_segment_is_a_torn_tail() {
    for layout in LAYOUTS {
        let torn = cut_last_record(&[b"only"], layout);
        assert_eq!(torn, (layout.frame_len(4) - 1) * ZERO_FILLS.len());
    }
}

#[test]
fn a_cut_inside_a_zero_length_field_reads_as_free_space() {
    // The last record has an empty payload, so its frame starts 00 00 00 00: a cut that keeps
    // only those zeros leaves nothing to tell from preallocated space, and the reader ends
    // cleanly before it (nothing acknowledged is lost: the record was never complete).
    for layout in LAYOUTS {
        let torn = cut_last_record(&[b"one", b"two", b""], layout);
        let frame_len = layout.frame_len(0);
        // Cuts keeping 1..=4 bytes are all-zero. Of the others (5 .. frame_len-1), those that
        // lose only the zero high bytes of the offset 3 (keeping 9..=15 bytes; the chain hash
        // follows in the other layout) are made whole again by zero fill of at least that
        // many bytes. All the rest are torn tails.
        let all_cuts = (frame_len - 1 - 4) * ZERO_FILLS.len();
        let healed: usize = if layout.chain_hash {
            0
        } else {
            (9..16)
                .map(|keep| ZERO_FILLS.iter().filter(|&&z| z >= 16 - keep).count())
                .sum()
        };
        assert_eq!(torn, all_cuts - healed);
    }
}

#[test]
fn a_cut_inside_an_earlier_record_is_a_torn_tail_there() {
    // Cutting the file inside record 2 of 4 (everything after it lost) reads as a torn tail at
    // record 2: records 3 and 4 were never durable.
    let (file, written) = build_segment(
        7,
        FrameLayout::default(),
        &[b"aa", b"bbbb", b"cc", b"dd"],
        0,
    );
    let start = written[1].position as usize;
    for keep in 1..FrameLayout::default().frame_len(4) {
        let got = read_segment(&file[..start + keep]);
        assert_eq!(got.frames, written[..1].to_vec());
        assert_eq!(
            got.stop,
            Some(Stop::TornTail {
                position: written[1].position
            })
        );
    }
}
