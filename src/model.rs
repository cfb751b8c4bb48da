//! The data model's rules: context names, keys, labels, values.

use crate::blob::Blob;
use crate::error::InvalidInput;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;

/// Longest context name, in bytes.
pub const CONTEXT_NAME_BYTES_MAX: usize = 255;
/// Longest key, in bytes.
pub const KEY_BYTES_MAX: usize = 1024;
/// Longest label key or value, in bytes.
pub const LABEL_BYTES_MAX: usize = 1024;
/// Default largest value, in bytes of MessagePack.
pub const VALUE_BYTES_MAX_DEFAULT: u64 = 16 * 1024 * 1024;

fn text_rule(s: &str, max: usize) -> Option<&'static str> {
    if s.is_empty() {
        Some("empty")
    } else if s.len() > max {
        Some("too long")
    } else if s.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    }
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Checks a context name: 1-255 bytes of UTF-8, no control characters.
pub fn check_context_name(name: &str) -> Result<(), InvalidInput> {
    match text_rule(name, CONTEXT_NAME_BYTES_MAX) {
        None => Ok(()),
        Some(reason) => Err(InvalidInput::ContextName {
            name: cut(name),
            reason,
        }),
    }
}

/// Checks a key: 1 B - 1 KiB of UTF-8, no control characters.
pub fn check_key(context: &str, key: &str) -> Result<(), InvalidInput> {
    match text_rule(key, KEY_BYTES_MAX) {
        None => Ok(()),
        Some(reason) => Err(InvalidInput::Key {
            context: cut(context),
            key: cut(key),
            reason,
        }),
    }
}

/// Checks a label key and value.
pub fn check_label(context: &str, label: &str, value: Option<&str>) -> Result<(), InvalidInput> {
    let rule = text_rule(label, LABEL_BYTES_MAX)
        .or_else(|| value.and_then(|v| (v.len() > LABEL_BYTES_MAX).then_some("value too long")));
    match rule {
        None => Ok(()),
        Some(reason) => Err(InvalidInput::Label {
            context: cut(context),
            label: cut(label),
            reason,
        }),
    }
}

/// Checks a recovery point label: same rules as a context name.
pub fn check_point_label(label: &str) -> Result<(), InvalidInput> {
    match text_rule(label, CONTEXT_NAME_BYTES_MAX) {
        None => Ok(()),
        Some(reason) => Err(InvalidInput::RecoveryPointLabel {
            label: cut(label),
            reason,
        }),
    }
}

/// A stored value: MessagePack bytes, shared (cloning is a reference count).
///
/// A value read from a store shares its bytes with the state. Values that the store's open
/// replayed from the log share a buffer of about 256 KiB (more after a large commit) with
/// other values, and a `Value` kept keeps that buffer allocated; copy the bytes out
/// (`as_bytes().to_vec()`) to keep a value long after the state has moved on.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Value(Blob);

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value({} bytes)", self.0.len())
    }
}

impl Value {
    /// Encodes any serde value as MessagePack (maps with field names, so that values stay
    /// readable as they evolve).
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Value, rmp_serde::encode::Error> {
        Ok(Value(Blob::whole(rmp_serde::to_vec_named(value)?.into())))
    }

    /// Wraps bytes that are already MessagePack.
    pub fn from_msgpack(bytes: impl Into<Arc<[u8]>>) -> Value {
        Value(Blob::whole(bytes.into()))
    }

    /// Decodes into any serde type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, rmp_serde::decode::Error> {
        rmp_serde::from_slice(&self.0)
    }

    /// The MessagePack bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// A value read from the state: shares its bytes.
    pub(crate) fn shared(blob: &Blob) -> Value {
        Value(blob.clone())
    }
}
