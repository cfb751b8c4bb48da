//! Schema evolution of application payloads: values stored with their type's name and
//! version, and upcasters that turn an old version into the next one on read.
//!
//! ```
//! use ctxlog::upcast::{Upcasters, Versioned};
//! use serde_json::json;
//! // Version 1 of "user" had "name"; version 2 splits it into "first" and "last".
//! let upcasters = Upcasters::new().register("user", 1, |mut v| {
//!     let name = v["name"].as_str().unwrap_or_default().to_string();
//!     let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
//!     v = json!({"first": first, "last": last});
//!     Ok(v)
//! });
//! assert_eq!(upcasters.current("user"), 2);
//! let old = Versioned::encode("user", 1, &json!({"name": "Ada Lovelace"})).unwrap();
//! let now: serde_json::Value = upcasters.decode(&old).unwrap();
//! assert_eq!(now, json!({"first": "Ada", "last": "Lovelace"}));
//! ```

use crate::model::Value;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

/// One step: the payload of version `n`, as JSON, into the payload of version `n + 1`.
pub type Upcaster =
    Arc<dyn Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync>;

/// The envelope of a versioned value, as stored (MessagePack map with these field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// The application's name for the payload's type.
    #[serde(rename = "$type")]
    pub kind: String,
    /// The payload's version (1 and up).
    #[serde(rename = "$v")]
    pub version: u32,
    /// The payload.
    pub data: T,
}

impl Versioned<()> {
    /// Encodes `data` as a stored value of `kind` at `version`.
    pub fn encode<T: Serialize>(
        kind: &str,
        version: u32,
        data: &T,
    ) -> Result<Value, rmp_serde::encode::Error> {
        Value::encode(&Versioned {
            kind: kind.to_string(),
            version,
            data,
        })
    }
}

/// Why a versioned value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpcastError {
    /// The value is not a versioned envelope, or its data does not decode.
    #[error("value is not a versioned {expected:?} payload: {reason}")]
    NotVersioned {
        /// The kind asked for, if any.
        expected: Option<String>,
        /// The decoder's message.
        reason: String,
    },
    /// No upcaster from this version, and it is not the current one.
    #[error("no upcaster for {kind:?} from version {version} (current is {current})")]
    Missing {
        /// The payload's kind.
        kind: String,
        /// The version with no way forward.
        version: u32,
        /// The newest version known.
        current: u32,
    },
    /// A version newer than any this application knows.
    #[error("{kind:?} version {version} is newer than this application's {current}")]
    FromTheFuture {
        /// The payload's kind.
        kind: String,
        /// The version found.
        version: u32,
        /// The newest version known.
        current: u32,
    },
    /// An upcaster refused the payload.
    #[error("upcaster for {kind:?} from version {version} failed: {reason}")]
    Failed {
        /// The payload's kind.
        kind: String,
        /// The version it upcast from.
        version: u32,
        /// Its message.
        reason: String,
    },
}

/// The upcasters of an application, by payload kind.
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: HashMap<String, BTreeMap<u32, Upcaster>>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: BTreeMap<&str, Vec<u32>> = self
            .steps
            .iter()
            .map(|(k, s)| (k.as_str(), s.keys().copied().collect()))
            .collect();
        f.debug_struct("Upcasters")
            .field("from_versions", &kinds)
            .finish()
    }
}

impl Upcasters {
    /// No upcasters: every kind is at version 1.
    pub fn new() -> Upcasters {
        Upcasters::default()
    }

    /// Registers the step from `from_version` to `from_version + 1` of `kind`.
    pub fn register<F>(mut self, kind: &str, from_version: u32, step: F) -> Upcasters
    where
        F: Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync + 'static,
    {
        self.steps
            .entry(kind.to_string())
            .or_default()
            .insert(from_version, Arc::new(step));
        self
    }

    /// The current version of `kind`: one past its newest upcaster (1 with none).
    pub fn current(&self, kind: &str) -> u32 {
        self.steps
            .get(kind)
            .and_then(|s| s.keys().next_back())
            .map_or(1, |v| v + 1)
    }

    /// Brings a payload of `kind` from `version` to the current version.
    pub fn upcast(
        &self,
        kind: &str,
        mut version: u32,
        mut data: serde_json::Value,
    ) -> Result<serde_json::Value, UpcastError> {
        let current = self.current(kind);
        if version > current {
            return Err(UpcastError::FromTheFuture {
                kind: kind.into(),
                version,
                current,
            });
        }
        while version < current {
            let step = self
                .steps
                .get(kind)
                .and_then(|s| s.get(&version))
                .ok_or_else(|| UpcastError::Missing {
                    kind: kind.into(),
                    version,
                    current,
                })?;
            data = step(data).map_err(|reason| UpcastError::Failed {
                kind: kind.into(),
                version,
                reason,
            })?;
            version += 1;
        }
        Ok(data)
    }

    /// Reads a stored versioned value as the current version of its kind, decoded into `T`.
    pub fn decode<T: DeserializeOwned>(&self, value: &Value) -> Result<T, UpcastError> {
        let stored: Versioned<serde_json::Value> =
            value.decode().map_err(|e| UpcastError::NotVersioned {
                expected: None,
                reason: e.to_string(),
            })?;
        let data = self.upcast(&stored.kind, stored.version, stored.data)?;
        serde_json::from_value(data).map_err(|e| UpcastError::NotVersioned {
            expected: Some(stored.kind),
            reason: e.to_string(),
        })
    }

    /// Encodes `data` as the current version of `kind`.
    pub fn encode<T: Serialize>(
        &self,
        kind: &str,
        data: &T,
    ) -> Result<Value, rmp_serde::encode::Error> {
        Versioned::encode(kind, self.current(kind), data)
    }
}
