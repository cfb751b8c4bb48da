//! Arbitrary bytes read as a segment: the file header, then the frames after it. The format
//! layer must never panic on input, and every frame it yields must be a slice of the input at
//! the place the frame stream says, in increasing positions.
//!
//! Each input is read three ways: as it is; with every checksum rewritten to match
//! (`repair_segment`), so that the checks behind the checksums see mutated structures; and, as
//! most inputs have no valid header, the whole input as a headerless frame stream.
#![no_main]

use ctxlog_format::layout::{HEADER_LEN, KNOWN_FLAGS};
use ctxlog_format::{FileHeader, FileKind, FrameLayout, FrameReader, Stop};
use ctxlog_fuzz::repair_segment;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if !read_segment(data) {
        check_frames(data, 0, 1, FrameLayout { chain_hash: false });
        check_frames(data, 0, 1, FrameLayout { chain_hash: true });
    }
    read_segment(&repair_segment(data));
});

/// Decodes the header and checks the frames after it; false if the header is refused.
fn read_segment(file: &[u8]) -> bool {
    let Ok(header) = FileHeader::decode_kind(file, FileKind::Segment, KNOWN_FLAGS) else {
        return false;
    };
    assert_eq!(header.encode().as_slice(), &file[..HEADER_LEN]);
    let layout = FrameLayout::from_flags(header.flags);
    check_frames(file, HEADER_LEN, header.first_offset, layout);
    true
}

/// Reads `file[start..]` as frames and checks every promise of `FrameReader`.
fn check_frames(file: &[u8], start: usize, first_offset: u64, layout: FrameLayout) {
    let body = &file[start..];
    let base = start as u64;
    let mut reader = FrameReader::new(body, base, first_offset, layout);
    let mut expected_position = base;
    let mut expected_offset = first_offset;
    let mut stopped = false;
    while let Some(item) = reader.next() {
        assert!(!stopped, "an item after a stop");
        match item {
            Ok(frame) => {
                // Contiguous and increasing.
                assert_eq!(frame.position, expected_position);
                let end = frame.end(layout);
                assert!(end > frame.position);
                assert!(end <= base + body.len() as u64, "frame past the input");
                assert_eq!(frame.offset, expected_offset);
                assert_ne!(frame.offset, 0);
                // The payload is the input's own bytes, where the frame puts them.
                let payload_at = (frame.position - base) as usize + layout.overhead();
                let in_input = &body[payload_at..payload_at + frame.payload.len()];
                assert_eq!(in_input.as_ptr(), frame.payload.as_ptr());
                assert_eq!(frame.chain_hash.is_some(), layout.chain_hash);
                if let Some(chain) = frame.chain_hash {
                    let chain_at = (frame.position - base) as usize + 16;
                    assert_eq!(body[chain_at..chain_at + 32].as_ptr(), chain.as_ptr());
                }
                expected_position = end;
                expected_offset = expected_offset.wrapping_add(1);
                assert_eq!(reader.file_position(), expected_position);
            }
            Err(stop) => {
                stopped = true;
                let position = match stop {
                    Stop::TornTail { position } => position,
                    Stop::Corrupt {
                        position, offset, ..
                    } => {
                        assert_eq!(offset, expected_offset);
                        position
                    }
                };
                assert_eq!(
                    position, expected_position,
                    "a stop names the failing frame"
                );
            }
        }
    }
    assert_eq!(reader.file_position(), expected_position);
    if !stopped {
        // A clean end: only zeros (or nothing) after the last frame.
        let rest = &body[(expected_position - base) as usize..];
        assert!(
            ctxlog_format::all_zero(rest),
            "clean end before non-zero bytes"
        );
    }
}
