//! Little-endian field access on byte slices, without panics: every read is bounds-checked and
//! returns `None` past the end. The only integer encoding ctxlog puts on disk.

pub(crate) fn array<const N: usize>(buf: &[u8], pos: usize) -> Option<[u8; N]> {
    buf.get(pos..pos.checked_add(N)?)?.try_into().ok()
}

pub(crate) fn u16_at(buf: &[u8], pos: usize) -> Option<u16> {
    array(buf, pos).map(u16::from_le_bytes)
}

pub(crate) fn u32_at(buf: &[u8], pos: usize) -> Option<u32> {
    array(buf, pos).map(u32::from_le_bytes)
}

pub(crate) fn u64_at(buf: &[u8], pos: usize) -> Option<u64> {
    array(buf, pos).map(u64::from_le_bytes)
}

/// Copies `src` into `buf[pos..]`; the caller sized `buf`, so a miss is a bug in this crate.
pub(crate) fn put(buf: &mut [u8], pos: usize, src: &[u8]) {
    if let Some(dst) = buf.get_mut(pos..pos + src.len()) {
        dst.copy_from_slice(src);
    } else {
        debug_assert!(false, "field write out of bounds at {pos}");
    }
}

/// True when every byte of `buf` is zero (the preallocated space after the last record).
pub fn all_zero(buf: &[u8]) -> bool {
    // Compare word-sized chunks first: this runs over megabytes of preallocated space on open.
    let (chunks, rest) = buf.split_at(buf.len() - buf.len() % 8);
    chunks
        .chunks_exact(8)
        .all(|c| c.iter().fold(0u8, |acc, b| acc | b) == 0)
        && rest.iter().all(|&b| b == 0)
}
