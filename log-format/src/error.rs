//! Typed errors of the format layer. Every variant carries the values that failed the check, so
//! that no caller ever has to read a message.

/// Why a file header (or snapshot trailer) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer bytes than a header holds.
    #[error("file too short for a header: {len} bytes, need {need}")]
    TooShort {
        /// Bytes available.
        len: u64,
        /// Bytes needed.
        need: u64,
    },
    /// The file does not start with the ctxlog magic: not a ctxlog file.
    #[error("wrong magic {found:02x?}: not a ctxlog file")]
    BadMagic {
        /// The first 8 bytes found.
        found: [u8; 8],
    },
    /// A format version this reader does not know (written by a newer ctxlog, or damaged).
    #[error("format version {found} is not supported (this reader knows version {supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
        /// The version this reader supports.
        supported: u16,
    },
    /// The header's checksum does not match its bytes.
    #[error("header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the header bytes.
        computed: u32,
    },
    /// A file kind this reader does not know.
    #[error("unknown file kind {found}")]
    UnknownKind {
        /// The kind byte found.
        found: u8,
    },
    /// The file is of another kind than the caller expected (a snapshot where a segment was due).
    #[error("file kind {found:?} where {expected:?} was expected")]
    WrongKind {
        /// The kind found.
        found: crate::FileKind,
        /// The kind expected.
        expected: crate::FileKind,
    },
    /// Feature flags this reader does not implement (for example the chain hash of
    /// tamper-evident stores, when read by a version-1 reader).
    #[error("unsupported feature flags {unsupported:#x} ({names})")]
    UnsupportedFlags {
        /// The flags this reader does not support.
        unsupported: u32,
        /// Their names, for people.
        names: &'static str,
    },
    /// Reserved bytes that must be zero are not.
    #[error("reserved header bytes are not zero")]
    ReservedNotZero,
    /// The snapshot trailer is missing or damaged.
    #[error("snapshot trailer damaged")]
    BadTrailer,
}

/// What failed when a record frame was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The CRC stored in the frame does not match its bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC stored in the frame.
        stored: u32,
        /// CRC computed over the frame.
        computed: u32,
    },
    /// The length field is larger than any record may be.
    #[error("record length {len} exceeds the limit {max}")]
    LengthTooLarge {
        /// The length found.
        len: u32,
        /// The largest length allowed.
        max: u32,
    },
    /// The frame is intact but carries another offset than the next one expected.
    #[error("offset {found} where {expected} was expected")]
    OffsetMismatch {
        /// The offset the reader expected.
        expected: u64,
        /// The offset found in the frame.
        found: u64,
    },
    /// The frame claims more bytes than the input holds, yet an intact record follows it: its
    /// length field was damaged.
    #[error(
        "record length {len} runs past the end ({available} bytes left) with records after it"
    )]
    LengthPastEnd {
        /// The length found.
        len: u32,
        /// Bytes from the frame to the end of the input.
        available: u64,
    },
    /// The record is intact but its chain hash does not follow from the previous record's:
    /// history was rewritten (or a segment's seed altered).
    #[error("chain hash does not follow from the previous record")]
    ChainMismatch,
    /// An all-zero frame header followed by non-zero bytes: data after a hole.
    #[error("zero-filled frame header followed by data")]
    DataAfterZeros,
    /// The bytes run out inside a record that is followed by more data (a body cut short); in
    /// a snapshot, a chunk shorter than its place requires (empty, or short but not the last).
    #[error("truncated record")]
    Truncated,
}

/// A failed encode: the caller handed something the format cannot represent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload is larger than [`crate::layout::RECORD_PAYLOAD_MAX`].
    #[error("payload of {len} bytes exceeds the record limit of {max} bytes")]
    PayloadTooLarge {
        /// Payload length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Offset 0 is reserved for "nothing".
    #[error("offset 0 is not a record offset")]
    ZeroOffset,
    /// A chain hash was given for a layout without one, or missing for a layout with one.
    #[error("chain hash presence does not match the file's layout")]
    ChainHashMismatch,
}
