//! Digests of a tamper-evident history: `(offset, chain hash)`, a small value an application
//! publishes or keeps elsewhere, and later checks the local history against.

use crate::offset::Offset;
use std::fmt;
use std::str::FromStr;

/// The chain hash of a tamper-evident store at one offset. Written `OFFSET:HEX` (64 hex
/// digits), e.g. `42:9f1c…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Digest {
    /// The offset.
    pub offset: Offset,
    /// The chain hash of the record at that offset (BLAKE3, see log-format/FORMAT.md).
    pub hash: [u8; 32],
}

/// Hex of bytes, lowercase.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.offset, hex(&self.hash))
    }
}

/// Why a digest string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("digest {input:?} is not OFFSET:HASH (a decimal offset, a colon, 64 hex digits)")]
pub struct DigestParseError {
    /// The input, cut to 100 characters.
    pub input: String,
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Digest, DigestParseError> {
        let bad = || DigestParseError {
            input: s.chars().take(100).collect(),
        };
        let (offset, hash) = s.trim().split_once(':').ok_or_else(bad)?;
        let offset: u64 = offset.parse().map_err(|_| bad())?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hash[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Digest {
            offset: Offset(offset),
            hash: out,
        })
    }
}
