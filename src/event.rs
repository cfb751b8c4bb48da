//! Events and the commit envelope: what one log record holds.
//!
//! A record's payload is one [`Commit`], encoded with rmp-serde. The envelope carries a schema
//! version; this build writes [`SCHEMA_VERSION`] and reads every version up to it. Events are
//! facts, never rewritten: a restore is a new commit of `ContextRestored` events.

use crate::error::RecoveryError;
use crate::offset::Offset;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u16 = 2;

// Version history of the event schema (readers accept every version up to SCHEMA_VERSION):
// 1: ContextCreated .. Compacted.
// 2: adds ConsumerAcked, SchemaAttached, SchemaRemoved (version-1 commits read unchanged).

/// Labels of a context (string -> string).
pub type Labels = BTreeMap<String, String>;

/// A context's whole state, as carried by a [`Event::ContextRestored`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextImage {
    /// Key -> MessagePack value.
    pub values: BTreeMap<String, serde_bytes::ByteBuf>,
    /// Labels.
    pub labels: Labels,
    /// The JSON Schema attached then (schema 2; absent in version-1 events).
    #[serde(default)]
    pub schema: Option<String>,
}

/// One immutable fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A context came into existence (or back, after a delete).
    ContextCreated {
        /// The context.
        context: String,
        /// Its initial labels.
        labels: Labels,
    },
    /// A key was set.
    ValueSet {
        /// The context.
        context: String,
        /// The key.
        key: String,
        /// The value, MessagePack.
        value: serde_bytes::ByteBuf,
    },
    /// A key was removed.
    ValueRemoved {
        /// The context.
        context: String,
        /// The key.
        key: String,
    },
    /// Labels were set or removed.
    MetadataChanged {
        /// The context.
        context: String,
        /// Labels set.
        set: Labels,
        /// Labels removed.
        removed: Vec<String>,
    },
    /// The context was deleted (its history stays).
    ContextDeleted {
        /// The context.
        context: String,
    },
    /// The context was brought back to its state as of `from_offset` (`None`: it did not exist
    /// then, so it is deleted now).
    ContextRestored {
        /// The context.
        context: String,
        /// The offset whose state was restored.
        from_offset: Offset,
        /// The state restored.
        image: Option<ContextImage>,
    },
    /// Adapter: a context became active.
    Activated {
        /// The context.
        context: String,
    },
    /// Adapter: a context became inactive.
    Deactivated {
        /// The context.
        context: String,
    },
    /// Adapter: the current context changed (the old one deactivated, the new one activated).
    Switched {
        /// The previous current context.
        from: Option<String>,
        /// The new current context.
        to: String,
    },
    /// Adapter: the default context changed.
    DefaultChanged {
        /// The new default (None: no default).
        context: Option<String>,
    },
    /// A named recovery point at this commit's offset.
    RecoveryPointCreated {
        /// Its label.
        label: String,
    },
    /// Segments wholly before `before` were removed from the log.
    Compacted {
        /// The first offset kept.
        before: Offset,
    },
    /// A durable consumer processed everything up to `offset` (schema 2).
    ConsumerAcked {
        /// The consumer's name.
        consumer: String,
        /// Its new position.
        offset: Offset,
    },
    /// A JSON Schema now governs the context's state (schema 2).
    SchemaAttached {
        /// The context.
        context: String,
        /// The JSON Schema, as JSON text.
        schema: String,
    },
    /// The context's JSON Schema was removed (schema 2).
    SchemaRemoved {
        /// The context.
        context: String,
    },
}

impl Event {
    /// The context the event concerns, if one.
    pub fn context(&self) -> Option<&str> {
        match self {
            Event::ContextCreated { context, .. }
            | Event::ValueSet { context, .. }
            | Event::ValueRemoved { context, .. }
            | Event::MetadataChanged { context, .. }
            | Event::ContextDeleted { context }
            | Event::ContextRestored { context, .. }
            | Event::Activated { context }
            | Event::Deactivated { context }
            | Event::SchemaAttached { context, .. }
            | Event::SchemaRemoved { context } => Some(context),
            Event::Switched { to, .. } => Some(to),
            Event::DefaultChanged { context } => context.as_deref(),
            Event::RecoveryPointCreated { .. }
            | Event::Compacted { .. }
            | Event::ConsumerAcked { .. } => None,
        }
    }

    /// True if the event concerns `name` (a switch concerns both contexts).
    pub fn concerns(&self, name: &str) -> bool {
        match self {
            Event::Switched { from, to } => to == name || from.as_deref() == Some(name),
            e => e.context() == Some(name),
        }
    }

    /// The event's kind, as a stable name.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ContextCreated { .. } => "ContextCreated",
            Event::ValueSet { .. } => "ValueSet",
            Event::ValueRemoved { .. } => "ValueRemoved",
            Event::MetadataChanged { .. } => "MetadataChanged",
            Event::ContextDeleted { .. } => "ContextDeleted",
            Event::ContextRestored { .. } => "ContextRestored",
            Event::Activated { .. } => "Activated",
            Event::Deactivated { .. } => "Deactivated",
            Event::Switched { .. } => "Switched",
            Event::DefaultChanged { .. } => "DefaultChanged",
            Event::RecoveryPointCreated { .. } => "RecoveryPointCreated",
            Event::Compacted { .. } => "Compacted",
            Event::ConsumerAcked { .. } => "ConsumerAcked",
            Event::SchemaAttached { .. } => "SchemaAttached",
            Event::SchemaRemoved { .. } => "SchemaRemoved",
        }
    }
}

/// One commit: the payload of one log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Schema version of this envelope and its events.
    pub v: u16,
    /// Commit time, milliseconds since the Unix epoch (for people; offsets are the clock).
    pub ts: u64,
    /// The events, applied in order, all or none.
    pub events: Vec<Event>,
}

impl Commit {
    /// Encodes into `out` (appending; no allocation once `out` is large enough).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail, and every field type is serializable.
        let r = rmp_serde::encode::write(out, self);
        debug_assert!(r.is_ok(), "commit encoding failed: {r:?}");
    }

    /// Decodes a record payload, checking the schema version.
    pub fn decode(offset: Offset, payload: &[u8]) -> Result<Commit, RecoveryError> {
        // The envelope is an array whose first element is the schema version, in every
        // version: read it first, so that a newer commit is reported as such.
        let mut peek = payload;
        let version = rmp::decode::read_array_len(&mut peek)
            .ok()
            .and_then(|_| rmp::decode::read_int::<u16, _>(&mut peek).ok());
        if let Some(found) = version.filter(|&v| v > SCHEMA_VERSION || v == 0) {
            return Err(RecoveryError::UnsupportedSchema {
                offset,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let commit: Commit =
            rmp_serde::from_slice(payload).map_err(|e| RecoveryError::BadCommit {
                offset,
                reason: e.to_string(),
            })?;
        if commit.v > SCHEMA_VERSION || commit.v == 0 {
            return Err(RecoveryError::UnsupportedSchema {
                offset,
                found: commit.v,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(commit)
    }
}
