//! The 64-byte file header at the start of every segment and snapshot (FORMAT.md, "File header").

use crate::error::HeaderError;
use crate::layout::*;
use crate::le;

/// What a file holds. Stored as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A log segment: a header, then record frames.
    Segment = 1,
    /// A snapshot: a header, chunk frames, then a trailer.
    Snapshot = 2,
}

impl TryFrom<u8> for FileKind {
    type Error = HeaderError;
    fn try_from(found: u8) -> Result<Self, HeaderError> {
        match found {
            1 => Ok(FileKind::Segment),
            2 => Ok(FileKind::Snapshot),
            _ => Err(HeaderError::UnknownKind { found }),
        }
    }
}

/// A decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// What the file holds.
    pub kind: FileKind,
    /// Feature flags ([`FLAG_CHAIN_HASH`]).
    pub flags: u32,
    /// A segment's first record offset; a snapshot's as-of offset.
    pub first_offset: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The store this file belongs to.
    pub store_id: [u8; STORE_ID_LEN],
}

impl FileHeader {
    /// True when records of this file carry a chain hash.
    pub fn has_chain_hash(&self) -> bool {
        self.flags & FLAG_CHAIN_HASH != 0
    }

    /// Encodes the header into its 64 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        le::put(&mut b, HDR_MAGIC_POS, &MAGIC);
        le::put(&mut b, HDR_VERSION_POS, &FORMAT_VERSION.to_le_bytes());
        le::put(&mut b, HDR_KIND_POS, &[self.kind as u8]);
        le::put(&mut b, HDR_FLAGS_POS, &self.flags.to_le_bytes());
        le::put(
            &mut b,
            HDR_FIRST_OFFSET_POS,
            &self.first_offset.to_le_bytes(),
        );
        le::put(&mut b, HDR_CREATED_MS_POS, &self.created_ms.to_le_bytes());
        le::put(&mut b, HDR_STORE_ID_POS, &self.store_id);
        let crc = crc32fast::hash(b.get(..HDR_CRC_POS).unwrap_or_default());
        le::put(&mut b, HDR_CRC_POS, &crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header from the start of `buf`, accepting only the flags in
    /// `supported_flags` (a reader that does not verify chain hashes passes 0).
    ///
    /// The checks run in a fixed order: length, magic, version, checksum, then the fields.
    /// Magic and version sit at the same place in every format version, so a newer file is
    /// reported as such even if the rest of its header has another layout.
    pub fn decode(buf: &[u8], supported_flags: u32) -> Result<FileHeader, HeaderError> {
        let too_short = HeaderError::TooShort {
            len: buf.len() as u64,
            need: HEADER_LEN as u64,
        };
        let magic: [u8; 8] = le::array(buf, HDR_MAGIC_POS).ok_or(too_short.clone())?;
        if magic != MAGIC {
            return Err(HeaderError::BadMagic { found: magic });
        }
        let version = le::u16_at(buf, HDR_VERSION_POS).ok_or(too_short.clone())?;
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let head = buf.get(..HDR_CRC_POS).ok_or(too_short.clone())?;
        let stored = le::u32_at(buf, HDR_CRC_POS).ok_or(too_short)?;
        let computed = crc32fast::hash(head);
        if stored != computed {
            return Err(HeaderError::Checksum { stored, computed });
        }
        let kind_byte = le::array::<1>(buf, HDR_KIND_POS).unwrap_or_default();
        let kind = FileKind::try_from(kind_byte[0])?;
        let reserved_a = le::array::<1>(buf, HDR_RESERVED_A_POS).unwrap_or_default();
        let reserved_b = le::array::<12>(buf, HDR_RESERVED_B_POS).unwrap_or_default();
        if reserved_a != [0] || reserved_b != [0; 12] {
            return Err(HeaderError::ReservedNotZero);
        }
        let flags = le::u32_at(buf, HDR_FLAGS_POS).unwrap_or_default();
        let unsupported = flags & !(supported_flags & KNOWN_FLAGS);
        if unsupported != 0 {
            return Err(HeaderError::UnsupportedFlags {
                unsupported,
                names: flag_names(unsupported),
            });
        }
        Ok(FileHeader {
            kind,
            flags,
            first_offset: le::u64_at(buf, HDR_FIRST_OFFSET_POS).unwrap_or_default(),
            created_ms: le::u64_at(buf, HDR_CREATED_MS_POS).unwrap_or_default(),
            store_id: le::array(buf, HDR_STORE_ID_POS).unwrap_or_default(),
        })
    }

    /// Decodes a header and checks that it is of the `expected` kind.
    pub fn decode_kind(
        buf: &[u8],
        expected: FileKind,
        supported_flags: u32,
    ) -> Result<FileHeader, HeaderError> {
        let header = Self::decode(buf, supported_flags)?;
        if header.kind != expected {
            return Err(HeaderError::WrongKind {
                found: header.kind,
                expected,
            });
        }
        Ok(header)
    }
}

fn flag_names(flags: u32) -> &'static str {
    if flags == FLAG_CHAIN_HASH {
        "chain-hash: tamper-evident records, not verified by this reader"
    } else if flags & FLAG_CHAIN_HASH != 0 {
        "chain-hash and flags unknown to this reader"
    } else {
        "flags unknown to this reader"
    }
}
