//! Helpers of the fuzz targets.
//!
//! Random bytes almost never carry valid CRC-32s, so a fuzzer that only mutates bytes spends
//! nearly all its time on the first checksum check. The `repair_*` functions rewrite every
//! checksum of an input (header, frames, snapshot trailer) to match its bytes, so that the
//! targets can also run the checks that come after the checksums on mutated structures.

use ctxlog_format::frame_crc;

const HEADER_LEN: usize = 64;
const HEADER_CRC_POS: usize = 60;
const FRAME_HEADER_LEN: usize = 16;
const CHAIN_HASH_LEN: usize = 32;
const TRAILER_LEN: usize = 32;
const TRAILER_CRC_POS: usize = 24;

fn u32_at(b: &[u8], pos: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], pos: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(pos..pos + 8)?.try_into().ok()?))
}

fn repair_header(b: &mut [u8]) {
    if b.len() >= HEADER_LEN {
        let crc = crc32fast::hash(&b[..HEADER_CRC_POS]);
        b[HEADER_CRC_POS..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Rewrites the CRC of every frame found walking `b[from..to]` by the length fields.
fn repair_frames(b: &mut [u8], from: usize, to: usize, chain_hash: bool) {
    let overhead = FRAME_HEADER_LEN + if chain_hash { CHAIN_HASH_LEN } else { 0 };
    let mut pos = from;
    while pos + FRAME_HEADER_LEN <= to {
        let (Some(len), Some(offset)) = (u32_at(b, pos), u64_at(b, pos + 8)) else {
            return;
        };
        let Some(end) = (pos + overhead)
            .checked_add(len as usize)
            .filter(|&e| e <= to)
        else {
            return;
        };
        let chain = chain_hash.then(|| &b[pos + FRAME_HEADER_LEN..pos + overhead]);
        let crc = frame_crc(len, offset, chain, &b[pos + overhead..end]);
        b[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

/// `data` with a valid header CRC and valid CRCs on every frame the length fields lead to.
pub fn repair_segment(data: &[u8]) -> Vec<u8> {
    let mut b = data.to_vec();
    repair_header(&mut b);
    let chain_hash = b.get(12).is_some_and(|f| f & 1 != 0);
    let len = b.len();
    repair_frames(&mut b, HEADER_LEN, len, chain_hash);
    b
}

/// `data` with a valid header CRC, chunk CRCs and trailer CRC.
pub fn repair_snapshot(data: &[u8]) -> Vec<u8> {
    let mut b = data.to_vec();
    repair_header(&mut b);
    if b.len() >= HEADER_LEN + TRAILER_LEN {
        let trailer = b.len() - TRAILER_LEN;
        repair_frames(&mut b, HEADER_LEN, trailer, false);
        let crc = crc32fast::hash(&b[trailer..trailer + TRAILER_CRC_POS]);
        b[trailer + TRAILER_CRC_POS..trailer + TRAILER_CRC_POS + 4]
            .copy_from_slice(&crc.to_le_bytes());
    }
    b
}
