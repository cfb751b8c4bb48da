//! Errors of the write-ahead log layer.

use ctxlog_format::{CorruptionKind, HeaderError};
use std::io;
use std::path::PathBuf;

/// What went wrong in the log. Every variant names the file, position and offset it concerns,
/// so that no caller ever has to parse a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation (`"open"`, `"write"`, `"fdatasync"`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another handle, in this process or another, holds the store.
    #[error("store {path} is locked by another handle{}", holder.as_deref().map(|h| format!(" ({})", h.trim())).unwrap_or_default())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, when known.
        holder: Option<String>,
    },
    /// A record failed a check.
    #[error("corruption in {file} at byte {position} (offset {offset}): {kind}")]
    Corruption {
        /// The segment.
        file: PathBuf,
        /// Byte position of the damaged frame.
        position: u64,
        /// The offset expected there.
        offset: u64,
        /// What failed.
        kind: CorruptionKind,
    },
    /// A segment's file header failed a check.
    #[error("bad segment header in {file}: {source}")]
    BadHeader {
        /// The segment.
        file: PathBuf,
        /// What failed.
        source: HeaderError,
    },
    /// The offsets of consecutive segments do not follow each other: a segment is missing or
    /// misnamed.
    #[error("offset gap before {file}: expected offset {expected}, segment starts at {found}")]
    SegmentGap {
        /// The segment after the gap.
        file: PathBuf,
        /// The offset expected.
        expected: u64,
        /// The segment's first offset.
        found: u64,
    },
    /// A segment whose header names another first offset than its file name.
    #[error("segment {file} is named for offset {named} but its header says {header}")]
    MisnamedSegment {
        /// The segment.
        file: PathBuf,
        /// Offset in the file name.
        named: u64,
        /// Offset in the header.
        header: u64,
    },
    /// A file that belongs to another store.
    #[error("{file} belongs to another store (id {found}, this store is {expected})")]
    ForeignStore {
        /// The file.
        file: PathBuf,
        /// This store's id, hex.
        expected: String,
        /// The file's store id, hex.
        found: String,
    },
    /// Segments of one store disagree on their layout (chain hash or not).
    #[error("segment {file} has another record layout (chain hash) than the segments before it")]
    LayoutMismatch {
        /// The segment.
        file: PathBuf,
    },
    /// A torn tail found under [`RecoveryMode::AbsoluteConsistency`](super::RecoveryMode).
    #[error("torn record at the tail of {file} at byte {position} (absolute-consistency mode)")]
    TornTail {
        /// The segment.
        file: PathBuf,
        /// Byte position of the torn record.
        position: u64,
    },
    /// A record larger than the configured limit; nothing was written.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Payload length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A batch append with no payload in it; nothing was written.
    #[error("a record batch must hold at least one payload")]
    EmptyBatch,
    /// An earlier write or sync failed; the log refuses appends until it is reopened.
    #[error("log is poisoned by an earlier failed {op} ({kind}); reopen the store")]
    Poisoned {
        /// The operation that failed.
        op: &'static str,
        /// The error kind it failed with.
        kind: io::ErrorKind,
    },
    /// The log was closed.
    #[error("log is closed")]
    Closed,
    /// A configuration value out of bounds.
    #[error("invalid config {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The offsets asked for are not in the log (compacted away, or not written yet).
    #[error("offset {requested} is outside the log ({first}..={last})")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: u64,
        /// The first offset still in the log.
        first: u64,
        /// The last offset in the log.
        last: u64,
    },
}

impl WalError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> WalError {
        let path = path.into();
        move |source| WalError::Io { op, path, source }
    }

    /// True for errors that mean the data on disk failed a check.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            WalError::Corruption { .. }
                | WalError::BadHeader { .. }
                | WalError::SegmentGap { .. }
                | WalError::MisnamedSegment { .. }
                | WalError::ForeignStore { .. }
                | WalError::LayoutMismatch { .. }
                | WalError::TornTail { .. }
        )
    }
}

impl WalError {
    /// A copy of the error for the second and later waiters of a failed batch. I/O errors keep
    /// their kind and OS code; the message of a custom error is not kept.
    pub fn clone_shallow(&self) -> WalError {
        use WalError::*;
        match self {
            Io { op, path, source } => Io {
                op,
                path: path.clone(),
                source: source.raw_os_error().map_or_else(
                    || io::Error::from(source.kind()),
                    io::Error::from_raw_os_error,
                ),
            },
            Locked { path, holder } => Locked {
                path: path.clone(),
                holder: holder.clone(),
            },
            Corruption {
                file,
                position,
                offset,
                kind,
            } => Corruption {
                file: file.clone(),
                position: *position,
                offset: *offset,
                kind: *kind,
            },
            BadHeader { file, source } => BadHeader {
                file: file.clone(),
                source: source.clone(),
            },
            SegmentGap {
                file,
                expected,
                found,
            } => SegmentGap {
                file: file.clone(),
                expected: *expected,
                found: *found,
            },
            MisnamedSegment {
                file,
                named,
                header,
            } => MisnamedSegment {
                file: file.clone(),
                named: *named,
                header: *header,
            },
            ForeignStore {
                file,
                expected,
                found,
            } => ForeignStore {
                file: file.clone(),
                expected: expected.clone(),
                found: found.clone(),
            },
            LayoutMismatch { file } => LayoutMismatch { file: file.clone() },
            TornTail { file, position } => TornTail {
                file: file.clone(),
                position: *position,
            },
            RecordTooLarge { len, max } => RecordTooLarge {
                len: *len,
                max: *max,
            },
            Poisoned { op, kind } => Poisoned { op, kind: *kind },
            EmptyBatch => EmptyBatch,
            Closed => Closed,
            InvalidConfig { field, reason } => InvalidConfig {
                field,
                reason: reason.clone(),
            },
            OffsetOutOfRange {
                requested,
                first,
                last,
            } => OffsetOutOfRange {
                requested: *requested,
                first: *first,
                last: *last,
            },
        }
    }
}
