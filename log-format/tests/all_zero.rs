//! `all_zero` decides where preallocated space starts, so a wrong answer turns data into free
//! space (or free space into corruption). It works on 8-byte words plus a tail; these tests
//! cover every length from 0 to 63, every position of a non-zero byte, and every alignment.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use ctxlog_format::all_zero;

#[test]
fn zeros_are_all_zero_at_every_length_and_alignment() {
    let buf = [0u8; 64 + 8];
    for start in 0..8 {
        for len in 0..64 {
            assert!(
                all_zero(&buf[start..start + len]),
                "start {start} len {len}"
            );
        }
    }
}

#[test]
fn one_non_zero_byte_anywhere_is_seen() {
    for start in 0..8 {
        for len in 1..64 {
            for at in 0..len {
                for value in [0x01u8, 0x80, 0xff] {
                    let mut buf = [0u8; 64 + 8];
                    buf[start + at] = value;
                    assert!(
                        !all_zero(&buf[start..start + len]),
                        "start {start} len {len} byte {at} = {value:#04x}"
                    );
                }
            }
        }
    }
}

#[test]
fn bytes_outside_the_slice_do_not_count() {
    let mut buf = [0xffu8; 80];
    for len in 0..64 {
        buf[8..8 + len].fill(0);
        assert!(all_zero(&buf[8..8 + len]), "len {len}");
        buf.fill(0xff);
    }
}

#[test]
fn agrees_with_the_obvious_definition() {
    // A byte pattern with sparse non-zero bytes, sliced every way up to 64 bytes.
    let mut buf = [0u8; 128];
    for (i, b) in buf.iter_mut().enumerate() {
        if i % 29 == 7 {
            *b = i as u8;
        }
    }
    for start in 0..64 {
        for len in 0..64 {
            let s = &buf[start..start + len];
            assert_eq!(
                all_zero(s),
                s.iter().all(|&b| b == 0),
                "start {start} len {len}"
            );
        }
    }
}
