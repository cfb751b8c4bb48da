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
    if layout.chain_hash {
        let seed = read_seed(bytes).unwrap_or_default();
        if expected_seed.is_some_and(|e| e != seed) {
            let stop = Stop::Corrupt {
                position: HEADER_LEN as u64,
                offset: first,
                kind: CorruptionKind::ChainMismatch,
            };
            return ((Some(stop), first, start as u64, None), None);
        }
        reader = reader.with_chain(seed);
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
