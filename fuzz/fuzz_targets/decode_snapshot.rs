//! Arbitrary bytes read as a snapshot. The decoder must never panic, and a snapshot has one
//! encoding: whatever decodes re-encodes, from its header and concatenated chunks, to exactly
//! the input.
//!
//! Each input is checked as it is and with every checksum rewritten to match
//! (`repair_snapshot`), so that the checks behind the checksums see mutated structures.
#![no_main]

use ctxlog_format::layout::KNOWN_FLAGS;
use ctxlog_format::{decode_snapshot, encode_snapshot};
use ctxlog_fuzz::repair_snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    check(&repair_snapshot(data));
});

fn check(data: &[u8]) {
    let strict = decode_snapshot(data, 0);
    let lenient = decode_snapshot(data, KNOWN_FLAGS);
    if let Ok(s) = &strict {
        // Supporting more flags never refuses what fewer accepted.
        let l = lenient
            .as_ref()
            .expect("accepted with flags 0, refused with all flags");
        assert_eq!(l.header, s.header);
        assert_eq!(l.chunks, s.chunks);
    }
    if let Ok(s) = lenient {
        let body = s.chunks.concat();
        assert_eq!(
            encode_snapshot(&s.header, &body),
            data,
            "non-canonical snapshot accepted"
        );
    }
}
