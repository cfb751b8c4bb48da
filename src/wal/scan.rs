//! The recovery scan of one segment's records.

use super::segment::read_seed;
use crate::storage::StorageFile;
use ctxlog_format::layout::{body_start, HEADER_LEN};
use ctxlog_format::{all_zero, CorruptionKind, FrameLayout, FrameReader, Stop};

/// What a scan found: where it stopped (`None`: a clean end), the next offset, the end of the
/// last good record and the chain hash after it.
pub(super) type ScanEnd = (Option<Stop>, u64, u64, Option<[u8; 32]>);

/// Bytes read at a time when checking the zeros after the last record.
const ZERO_CHECK_CHUNK: usize = 1 << 20;

/// Checks every record of one segment: offsets, CRCs and, for tamper-evident stores, the
/// chain from the segment's stored seed, which must equal `expected_seed` when that is known
/// (the genesis value, or the previous segment's last chain hash). Returns where it stopped,
/// the next offset, the end of the last good record and the chain hash after it.
///
/// With `file` (the file `bytes` maps), the zeros after the last record are checked by reading
/// the file in 1 MiB pieces instead of through the map: reading the preallocated tail of the
/// active segment through the map made its tens of megabytes of zeros the peak of the
/// process's RSS at open. A non-zero byte there (or a failed read) sends the scan back through
/// the map, which classifies the damage exactly as before.
pub(super) fn scan_records(
    bytes: &[u8],
    first: u64,
    layout: FrameLayout,
    expected_seed: Option<[u8; 32]>,
    file: Option<&dyn StorageFile>,
) -> ScanEnd {
    if let Some(file) = file {
        let (end, unchecked) = scan(bytes, first, layout, expected_seed, true);
        match unchecked {
            Some(from) if !zeros_from(file, from, bytes.len() as u64) => {}
            _ => return end,
        }
    }
    scan(bytes, first, layout, expected_seed, false).0
}

/// What [`scan_records`] finds, before reading any record, when a tamper-evident segment's
/// stored seed is not `expected_seed`: a chain mismatch at its first record. `None` if the
/// seed is as expected (or unknown, or the store is not tamper-evident); recovery applies this
/// to segments checked ahead without an expected seed (see `ahead`).
pub(super) fn seed_mismatch(
    bytes: &[u8],
    first: u64,
    layout: FrameLayout,
    expected_seed: Option<[u8; 32]>,
) -> Option<ScanEnd> {
    if !layout.chain_hash {
        return None;
    }
    let seed = read_seed(bytes).unwrap_or_default();
    if expected_seed.is_none_or(|e| e == seed) {
        return None;
    }
    let stop = Stop::Corrupt {
        position: HEADER_LEN as u64,
        offset: first,
        kind: CorruptionKind::ChainMismatch,
    };
    Some((Some(stop), first, body_start(true) as u64, None))
}

/// True if every byte of `file` in `from..len` reads as zero.
fn zeros_from(file: &dyn StorageFile, from: u64, len: u64) -> bool {
    let mut buf = vec![0u8; ZERO_CHECK_CHUNK.min(len.saturating_sub(from) as usize)];
    let mut pos = from;
    while pos < len {
        let n = buf.len().min((len - pos) as usize);
        let Some(piece) = buf.get_mut(..n) else {
            return false;
        };
        if file.read_exact_at(piece, pos).is_err() || !all_zero(piece) {
            return false;
        }
        pos += n as u64;
    }
    true
}

/// The scan, with the reader's zero check deferred or not; returns where deferred zeros
/// start.
fn scan(
    bytes: &[u8],
    first: u64,
    layout: FrameLayout,
    expected_seed: Option<[u8; 32]>,
    defer_zeros: bool,
) -> (ScanEnd, Option<u64>) {
    let start = body_start(layout.chain_hash);
    let body = bytes.get(start..).unwrap_or_default();
    let mut reader = FrameReader::new(body, start as u64, first, layout);
    if defer_zeros {
        reader = reader.defer_zero_check();
    }
    if let Some(mismatch) = seed_mismatch(bytes, first, layout, expected_seed) {
        return (mismatch, None);
    }
    if layout.chain_hash {
        reader = reader.with_chain(read_seed(bytes).unwrap_or_default());
    }
    let stop = reader.by_ref().find_map(Result::err);
    let end = (
        stop,
        reader.next_offset(),
        reader.file_position(),
        reader.chain_value(),
    );
    (end, reader.unchecked_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctxlog_format::layout::FLAG_CHAIN_HASH;
    use ctxlog_format::{chain_next, encode_frame, FileHeader, FileKind};

    const CHAIN: FrameLayout = FrameLayout { chain_hash: true };

    /// A tamper-evident segment of `n` records from `first`, chained from `seed`, with `zeros`
    /// bytes of preallocated tail.
    fn segment(first: u64, seed: [u8; 32], n: u64, zeros: usize) -> (Vec<u8>, [u8; 32]) {
        let header = FileHeader {
            kind: FileKind::Segment,
            flags: FLAG_CHAIN_HASH,
            first_offset: first,
            created_ms: 0,
            store_id: [7; 16],
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(&seed);
        let mut chain = seed;
        for offset in first..first + n {
            let payload = offset.to_le_bytes().repeat(3);
            chain = chain_next(&chain, offset, &payload);
            encode_frame(&mut bytes, CHAIN, offset, Some(&chain), &payload).expect("frame");
        }
        bytes.resize(bytes.len() + zeros, 0);
        (bytes, chain)
    }

    /// Recovery checks segments ahead with no expected seed and applies `seed_mismatch` after
    /// (`ahead`): that must be the check with the expected seed, whatever the seeds and tails.
    #[test]
    fn a_check_without_the_seed_then_seed_mismatch_is_the_check_with_it() {
        let (right, wrong) = ([1u8; 32], [2u8; 32]);
        let mut torn = segment(10, right, 5, 0).0;
        torn.truncate(torn.len() - 3);
        let cases = [
            segment(10, right, 5, 0).0,
            segment(10, right, 5, 4096).0,
            torn,
        ];
        for bytes in &cases {
            for expected in [None, Some(right), Some(wrong)] {
                let direct = scan_records(bytes, 10, CHAIN, expected, None);
                let ahead = seed_mismatch(bytes, 10, CHAIN, expected)
                    .unwrap_or_else(|| scan_records(bytes, 10, CHAIN, None, None));
                assert_eq!(ahead, direct, "expected seed {expected:?}");
            }
        }
        let mismatch = seed_mismatch(&cases[0], 10, CHAIN, Some(wrong)).expect("a mismatch");
        assert!(matches!(
            mismatch.0,
            Some(Stop::Corrupt {
                kind: CorruptionKind::ChainMismatch,
                offset: 10,
                ..
            })
        ));
        let plain = FrameLayout { chain_hash: false };
        assert_eq!(seed_mismatch(&cases[0], 10, plain, Some(wrong)), None);
    }
}
