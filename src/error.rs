//! The engine's errors: one enum, structured per layer (state, input, persistence, recovery,
//! synchronization, lock). Callers match variants, never messages.

use crate::offset::Offset;
use crate::wal::WalError;
use std::path::PathBuf;
use std::time::Duration;

/// A value given to the engine that it refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// A context name outside the rules (1-255 bytes of UTF-8, no control characters).
    #[error("invalid context name {name:?}: {reason}")]
    ContextName {
        /// The name given.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A key outside the rules (1 B - 1 KiB of UTF-8, no control characters).
    #[error("invalid key {key:?} in context {context:?}: {reason}")]
    Key {
        /// The context.
        context: String,
        /// The key given (cut to 64 characters).
        key: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A value larger than the configured limit.
    #[error("value of {len} bytes for {context:?}/{key:?} exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// The context.
        context: String,
        /// The key.
        key: String,
        /// The encoded length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A value serde could not encode.
    #[error("value for {context:?}/{key:?} cannot be encoded: {reason}")]
    Unencodable {
        /// The context.
        context: String,
        /// The key.
        key: String,
        /// The encoder's message.
        reason: String,
    },
    /// A stored value that does not decode into the type asked for (or that no upcaster
    /// brings to it).
    #[error("value at {context:?}/{key:?} cannot be read as asked: {reason}")]
    Undecodable {
        /// The context.
        context: String,
        /// The key.
        key: String,
        /// The decoder's or upcaster's message.
        reason: String,
    },
    /// A label key or value outside the rules.
    #[error("invalid label {label:?} on {context:?}: {reason}")]
    Label {
        /// The context.
        context: String,
        /// The label key.
        label: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A recovery point label outside the rules.
    #[error("invalid recovery point label {label:?}: {reason}")]
    RecoveryPointLabel {
        /// The label.
        label: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A JSON Schema that does not parse or compile.
    #[error("invalid JSON Schema for {context:?}: {reason}")]
    Schema {
        /// The context.
        context: String,
        /// The parser's or compiler's message.
        reason: String,
    },
    /// An update with no operation.
    #[error("empty update: a commit needs at least one operation")]
    EmptyUpdate,
    /// A configuration value out of bounds.
    #[error("invalid config {field}: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The context does not exist (or is deleted).
    #[error("context {context:?} not found")]
    NotFound {
        /// The context.
        context: String,
    },
    /// The key does not exist in the context.
    #[error("key {key:?} not found in context {context:?}")]
    KeyNotFound {
        /// The context.
        context: String,
        /// The key.
        key: String,
    },
    /// The context exists already.
    #[error("context {context:?} already exists")]
    AlreadyExists {
        /// The context.
        context: String,
    },
    /// Optimistic concurrency: the context changed since the version the caller read.
    #[error("version conflict on {context:?}: expected version {expected}, actual {actual}")]
    VersionConflict {
        /// The context.
        context: String,
        /// The version the caller expected.
        expected: Offset,
        /// The context's version now.
        actual: Offset,
    },
    /// The commit would leave the context's state invalid under its JSON Schema; nothing was
    /// written.
    #[error("commit refused: context {context:?} would break its schema at key {key:?} (rule {rule}): {message}")]
    SchemaViolation {
        /// The context.
        context: String,
        /// The first key of the failing value's path ("" for the whole object, e.g. a
        /// missing required key: the message names it).
        key: String,
        /// The JSON Schema keyword that failed (`type`, `minimum`, `required`, ...).
        rule: String,
        /// The validator's message.
        message: String,
    },
    /// A recovery point label that does not exist.
    #[error("no recovery point named {label:?}")]
    UnknownRecoveryPoint {
        /// The label.
        label: String,
    },
    /// A recovery point label that is taken.
    #[error("recovery point {label:?} exists already (offset {offset})")]
    RecoveryPointExists {
        /// The label.
        label: String,
        /// Its offset.
        offset: Offset,
    },
    /// An offset the store cannot serve (past its end, or compacted away).
    #[error("offset {requested} is outside the store ({first}..={last})")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: Offset,
        /// First offset available.
        first: Offset,
        /// Last offset committed.
        last: Offset,
    },
    /// Bad input; nothing was written.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// Another handle, in this process or another, has the store open.
    #[error("store {path} is locked{}", holder.as_deref().map(|h| format!(" by {}", h.trim())).unwrap_or_default())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, when known.
        holder: Option<String>,
    },
    /// The log failed: I/O, corruption found while reading, a poisoned writer.
    #[error("persistence: {0}")]
    Persistence(WalError),
    /// Open or a point-in-time read could not rebuild state.
    #[error("recovery: {0}")]
    Recovery(#[from] RecoveryError),
    /// A wait gave up.
    #[error("synchronization: {0}")]
    Synchronization(#[from] SyncError),
    /// The manager was closed.
    #[error("the store is closed")]
    Closed,
    /// The local history does not produce the digest it was checked against: it was
    /// rewritten after the digest was taken.
    #[error("history does not match the digest at offset {offset}: expected chain hash {expected}, found {found}")]
    Tampered {
        /// The digest's offset.
        offset: Offset,
        /// The digest's chain hash, hex.
        expected: String,
        /// The local chain hash at that offset, hex (empty if none).
        found: String,
    },
    /// A tamper-evidence call on a store created without it.
    #[error("store {dir} is not tamper-evident (it was created without chain hashes)")]
    NotTamperEvident {
        /// The store.
        dir: PathBuf,
    },
}

/// Why state could not be rebuilt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// A commit's payload did not decode.
    #[error("commit at offset {offset} does not decode: {reason}")]
    BadCommit {
        /// Its offset.
        offset: Offset,
        /// The decoder's message.
        reason: String,
    },
    /// A commit written by a newer ctxlog.
    #[error(
        "commit at offset {offset} has schema version {found}; this build reads up to {supported}"
    )]
    UnsupportedSchema {
        /// Its offset.
        offset: Offset,
        /// The version found.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// A commit that does not apply to the state before it (the log contradicts itself).
    #[error("commit at offset {offset} does not apply: {reason}")]
    Inconsistent {
        /// Its offset.
        offset: Offset,
        /// What did not fit.
        reason: String,
    },
    /// A snapshot file failed its checks; open skipped it (reported, not fatal).
    #[error("snapshot {file}: {reason}")]
    BadSnapshot {
        /// The file.
        file: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Snapshot I/O failed.
    #[error("snapshot {op} {file}: {source}")]
    SnapshotIo {
        /// The operation.
        op: &'static str,
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why a wait failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The offset was not committed in time.
    #[error("offset {offset} not committed within {waited:?}")]
    Timeout {
        /// The offset waited for.
        offset: Offset,
        /// How long.
        waited: Duration,
    },
    /// A tracker scoped to some contexts was asked about another.
    #[error("context {context:?} is outside this tracker's scope")]
    OutOfScope {
        /// The context.
        context: String,
    },
}

impl From<WalError> for Error {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Locked { path, holder } => Error::Locked { path, holder },
            WalError::Closed => Error::Closed,
            e => Error::Persistence(e),
        }
    }
}

impl Error {
    /// True when the error means data on disk failed a check.
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Persistence(e) => e.is_corruption(),
            Error::Recovery(
                RecoveryError::BadCommit { .. } | RecoveryError::Inconsistent { .. },
            ) => true,
            Error::Tampered { .. } => true,
            _ => false,
        }
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
