//! Round trips of every header and frame field, the field positions of FORMAT.md, and the
//! encoder's refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use ctxlog_format::layout::*;
use ctxlog_format::{
    encode_frame, frame_crc, EncodeError, FileHeader, FileKind, FrameLayout, FrameReader,
    HeaderError,
};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = FileKind> {
    prop_oneof![Just(FileKind::Segment), Just(FileKind::Snapshot)]
}

fn header() -> impl Strategy<Value = FileHeader> {
    (
        kind(),
        prop_oneof![Just(0u32), Just(FLAG_CHAIN_HASH)],
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 16]>(),
    )
        .prop_map(
            |(kind, flags, first_offset, created_ms, store_id)| FileHeader {
                kind,
                flags,
                first_offset,
                created_ms,
                store_id,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every field survives encode/decode, sits where FORMAT.md says, and trailing bytes
    /// after the header do not matter.
    #[test]
    fn header_round_trip(h in header(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let b = h.encode();
        prop_assert_eq!(b.len(), 64);
        prop_assert_eq!(&b[0..8], b"\x89CTXLOG\n");
        prop_assert_eq!(&b[8..10], &[1u8, 0]);
        prop_assert_eq!(b[10], h.kind as u8);
        prop_assert_eq!(b[11], 0);
        prop_assert_eq!(&b[12..16], &h.flags.to_le_bytes());
        prop_assert_eq!(&b[16..24], &h.first_offset.to_le_bytes());
        prop_assert_eq!(&b[24..32], &h.created_ms.to_le_bytes());
        prop_assert_eq!(&b[32..48], &h.store_id);
        prop_assert_eq!(&b[48..60], &[0u8; 12]);
        prop_assert_eq!(&b[60..64], &crc32fast::hash(&b[..60]).to_le_bytes());

        prop_assert_eq!(FileHeader::decode(&b, KNOWN_FLAGS), Ok(h));
        let mut longer = b.to_vec();
        longer.extend_from_slice(&tail);
        prop_assert_eq!(FileHeader::decode(&longer, KNOWN_FLAGS), Ok(h));
        prop_assert_eq!(FileHeader::decode_kind(&b, h.kind, KNOWN_FLAGS), Ok(h));
        if h.flags != 0 {
            let refused = FileHeader::decode(&b, 0);
            let is_refused = matches!(
                refused,
                Err(HeaderError::UnsupportedFlags { unsupported: FLAG_CHAIN_HASH, .. })
            );
            prop_assert!(is_refused, "{:?}", refused);
        }
    }

    /// Flags this crate does not know are refused whatever the caller says it supports.
    #[test]
    fn unknown_flags_are_refused(h in header(), unknown in 1u32..=u32::MAX >> 1) {
        let flags = h.flags | (unknown << 1);
        let b = FileHeader { flags, ..h }.encode();
        let expected = flags & !KNOWN_FLAGS;
        for supported in [0, KNOWN_FLAGS, u32::MAX] {
            let got = FileHeader::decode(&b, supported);
            let Err(HeaderError::UnsupportedFlags { unsupported, .. }) = got else {
                return Err(TestCaseError::fail(format!("accepted flags {flags:#x}: {got:?}")));
            };
            prop_assert_eq!(unsupported & !KNOWN_FLAGS, expected);
        }
    }

    /// Every frame field survives encode/read, in both layouts, with or without zero fill.
    #[test]
    fn frames_round_trip(
        first in 1u64..u64::MAX - 64,
        chain_hash in any::<bool>(),
        records in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..300), any::<[u8; 32]>()),
            0..8,
        ),
        zero_fill in 0usize..100,
    ) {
        let layout = FrameLayout { chain_hash };
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for (offset, (payload, chain)) in (first..).zip(&records) {
            let start = buf.len();
            encode_frame(&mut buf, layout, offset, chain_hash.then_some(chain), payload).unwrap();
            // The frame's fields, where FORMAT.md puts them.
            let f = &buf[start..];
            prop_assert_eq!(f.len(), layout.frame_len(payload.len()));
            prop_assert_eq!(&f[0..4], &(payload.len() as u32).to_le_bytes());
            prop_assert_eq!(&f[8..16], &offset.to_le_bytes());
            let at = if chain_hash {
                prop_assert_eq!(&f[16..48], chain.as_slice());
                48
            } else {
                16
            };
            prop_assert_eq!(&f[at..], payload.as_slice());
            let crc = frame_crc(payload.len() as u32, offset, chain_hash.then_some(&chain[..]), payload);
            prop_assert_eq!(&f[4..8], &crc.to_le_bytes());
            // The CRC is over every byte but the CRC field, in file order.
            let mut covered = f[0..4].to_vec();
            covered.extend_from_slice(&f[8..]);
            prop_assert_eq!(crc, crc32fast::hash(&covered));
            ends.push(buf.len());
        }
        let end_of_frames = buf.len() as u64;
        buf.extend(std::iter::repeat_n(0u8, zero_fill));

        let base = 64;
        let mut reader = FrameReader::new(&buf, base, first, layout);
        let mut n = 0;
        for (i, item) in reader.by_ref().enumerate() {
            let frame = item.unwrap();
            let (payload, chain) = &records[i];
            prop_assert_eq!(frame.offset, first + i as u64);
            prop_assert_eq!(frame.payload, payload.as_slice());
            prop_assert_eq!(frame.chain_hash, chain_hash.then_some(chain));
            let start = if i == 0 { 0 } else { ends[i - 1] };
            prop_assert_eq!(frame.position, base + start as u64);
            prop_assert_eq!(frame.end(layout), base + ends[i] as u64);
            n += 1;
        }
        prop_assert_eq!(n, records.len());
        prop_assert_eq!(reader.file_position(), base + end_of_frames);
        prop_assert_eq!(reader.next_offset(), first + records.len() as u64);
    }
}

#[test]
fn crc_is_crc32_ieee() {
    // The standard check value of CRC-32 (IEEE 802.3), as FORMAT.md says.
    assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
    // frame_crc is that CRC over len, offset, chain hash, payload.
    let mut covered = Vec::new();
    covered.extend_from_slice(&5u32.to_le_bytes());
    covered.extend_from_slice(&7u64.to_le_bytes());
    covered.extend_from_slice(&[0xaa; 32]);
    covered.extend_from_slice(b"hello");
    assert_eq!(
        frame_crc(5, 7, Some(&[0xaa; 32]), b"hello"),
        crc32fast::hash(&covered)
    );
}

#[test]
fn layout_sizes() {
    assert_eq!(FrameLayout::default().overhead(), 16);
    assert_eq!(FrameLayout { chain_hash: true }.overhead(), 48);
    assert_eq!(FrameLayout::default().frame_len(5), 21);
    assert_eq!(FrameLayout { chain_hash: true }.frame_len(5), 53);
    assert_eq!(FrameLayout::from_flags(0), FrameLayout::default());
    assert_eq!(
        FrameLayout::from_flags(FLAG_CHAIN_HASH | 0x8000_0000),
        FrameLayout { chain_hash: true }
    );
}

#[test]
fn encode_refuses_offset_zero() {
    let mut out = Vec::new();
    let r = encode_frame(&mut out, FrameLayout::default(), 0, None, b"x");
    assert_eq!(r, Err(EncodeError::ZeroOffset));
    assert!(out.is_empty(), "nothing written on error");
}

#[test]
fn encode_refuses_a_chain_hash_that_does_not_match_the_layout() {
    let mut out = Vec::new();
    let chained = FrameLayout { chain_hash: true };
    assert_eq!(
        encode_frame(&mut out, chained, 1, None, b"x"),
        Err(EncodeError::ChainHashMismatch)
    );
    assert_eq!(
        encode_frame(&mut out, FrameLayout::default(), 1, Some(&[0; 32]), b"x"),
        Err(EncodeError::ChainHashMismatch)
    );
    assert!(out.is_empty());
}

#[test]
fn encode_refuses_a_payload_over_the_limit() {
    // vec![0; n] is allocated zeroed and lazily, so this costs no 256 MiB of writes; the
    // encoder refuses before reading the payload.
    let big = vec![0u8; RECORD_PAYLOAD_MAX as usize + 1];
    let mut out = Vec::new();
    assert_eq!(
        encode_frame(&mut out, FrameLayout::default(), 1, None, &big),
        Err(EncodeError::PayloadTooLarge {
            len: 268_435_457,
            max: 268_435_456
        })
    );
    assert!(out.is_empty());
}

#[test]
fn every_header_truncation_is_too_short() {
    let b = common::segment_header(1, 0).encode();
    for len in 0..64 {
        assert_eq!(
            FileHeader::decode(&b[..len], KNOWN_FLAGS),
            Err(HeaderError::TooShort {
                len: len as u64,
                need: 64
            }),
            "header cut to {len} bytes"
        );
    }
}

#[test]
fn every_header_bit_flip_is_refused() {
    // Magic and version are checked before the checksum, so a flip there names them; a flip
    // anywhere else fails the checksum (CRC-32 catches every single-bit error).
    let b = common::segment_header(1, FLAG_CHAIN_HASH).encode();
    for byte in 0..64 {
        for bit in 0..8 {
            let mut d = b;
            d[byte] ^= 1 << bit;
            let got = FileHeader::decode(&d, KNOWN_FLAGS);
            match byte {
                0..=7 => assert!(matches!(got, Err(HeaderError::BadMagic { .. })), "{got:?}"),
                8..=9 => assert!(
                    matches!(got, Err(HeaderError::UnsupportedVersion { found, supported: 1 }) if found != 1),
                    "{got:?}"
                ),
                _ => assert!(matches!(got, Err(HeaderError::Checksum { .. })), "{got:?}"),
            }
        }
    }
}

#[test]
fn fields_checked_after_the_checksum() {
    // Headers with a valid CRC but a bad kind or non-zero reserved bytes.
    let fix_crc = |b: &mut [u8; 64]| {
        let crc = crc32fast::hash(&b[..60]);
        b[60..].copy_from_slice(&crc.to_le_bytes());
    };
    let good = common::segment_header(1, 0).encode();
    for kind in [0u8, 3, 0xff] {
        let mut b = good;
        b[10] = kind;
        fix_crc(&mut b);
        assert_eq!(
            FileHeader::decode(&b, 0),
            Err(HeaderError::UnknownKind { found: kind })
        );
    }
    for pos in std::iter::once(11).chain(48..60) {
        let mut b = good;
        b[pos] = 1;
        fix_crc(&mut b);
        assert_eq!(
            FileHeader::decode(&b, 0),
            Err(HeaderError::ReservedNotZero),
            "byte {pos}"
        );
    }
}
