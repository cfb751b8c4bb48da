//! In-memory state: every context, the adapter's status, the recovery points. Persistent maps
//! (imbl) make a clone O(1), so readers, snapshots and point-in-time views share structure
//! with the live state instead of copying it.
//!
//! [`State::apply`] is the one place where an event changes state: replay on open, `state_at`,
//! verification, the writer's validation and the tests all go through it.

use crate::event::{Commit, ContextImage, Event, Labels};
use crate::model::Value;
use crate::offset::Offset;
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// When something happened: the commit's offset and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stamp {
    /// The commit's offset.
    pub offset: Offset,
    /// The commit's time, milliseconds since the Unix epoch.
    pub ts_ms: u64,
}

/// One context: values, labels, and when it was created and last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextState {
    values: OrdMap<String, StoredValue>,
    labels: OrdMap<String, String>,
    created: Stamp,
    updated: Stamp,
    deleted: bool,
    /// JSON Schema text governing the values (schema 2; absent in older snapshots).
    #[serde(default)]
    schema: Option<String>,
}

/// A value as snapshots store it (bytes, not an array of numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
struct StoredValue(#[serde(with = "serde_bytes")] Vec<u8>);

impl ContextState {
    fn new(stamp: Stamp) -> Self {
        ContextState {
            values: OrdMap::new(),
            labels: OrdMap::new(),
            created: stamp,
            updated: stamp,
            deleted: false,
            schema: None,
        }
    }

    /// The JSON Schema attached to the context, as JSON text.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The context's version: the offset of the last commit that changed it.
    pub fn version(&self) -> Offset {
        self.updated.offset
    }

    /// When it was created.
    pub fn created(&self) -> Stamp {
        self.created
    }

    /// When it last changed.
    pub fn updated(&self) -> Stamp {
        self.updated
    }

    /// True once deleted (and not restored or created again since).
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// One value.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.values
            .get(key)
            .map(|v| Value::from_msgpack(v.0.as_slice()))
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Every key and value, in key order.
    pub fn values(&self) -> impl Iterator<Item = (&str, Value)> {
        self.values
            .iter()
            .map(|(k, v)| (k.as_str(), Value::from_msgpack(v.0.as_slice())))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True with no key.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The labels.
    pub fn labels(&self) -> Labels {
        self.labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The whole context as a restore carries it.
    pub fn image(&self) -> ContextImage {
        ContextImage {
            values: self
                .values
                .iter()
                .map(|(k, v)| (k.clone(), serde_bytes::ByteBuf::from(v.0.clone())))
                .collect(),
            labels: self.labels(),
            schema: self.schema.clone(),
        }
    }

    fn same_content(&self, image: &ContextImage) -> bool {
        !self.deleted
            && self.schema == image.schema
            && self.values.len() == image.values.len()
            && self.labels() == image.labels
            && self
                .values
                .iter()
                .all(|(k, v)| image.values.get(k).is_some_and(|i| i.as_slice() == v.0))
    }
}

/// Everything the log describes, as of one offset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    contexts: OrdMap<String, ContextState>,
    active: OrdSet<String>,
    current: Option<String>,
    default: Option<String>,
    points: OrdMap<String, Offset>,
    offset: Offset,
    compacted_before: Offset,
    /// Chain hash of the commit at `offset` (tamper-evident stores): snapshots record it, and
    /// open rejects a snapshot whose hash does not match the log's.
    #[serde(default)]
    chain: Option<[u8; 32]>,
    /// Durable consumers' positions (schema 2).
    #[serde(default)]
    consumers: OrdMap<String, Offset>,
}

/// Why an event does not apply (the caller turns it into a typed error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The context does not exist or is deleted.
    NotFound(String),
    /// The context exists.
    AlreadyExists(String),
    /// The key does not exist.
    KeyNotFound(String, String),
    /// The recovery point label is taken.
    PointExists(String, Offset),
}

type Applied = Result<(), ApplyError>;

impl State {
    /// The offset of the last commit applied.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// A live (not deleted) context.
    pub fn context(&self, name: &str) -> Option<&ContextState> {
        self.contexts.get(name).filter(|c| !c.deleted)
    }

    /// A context, deleted or not (for status and version checks).
    pub fn context_any(&self, name: &str) -> Option<&ContextState> {
        self.contexts.get(name)
    }

    /// A context's version: 0 if it never existed; the delete's offset if deleted.
    pub fn version(&self, name: &str) -> Offset {
        self.contexts
            .get(name)
            .map_or(Offset::ZERO, |c| c.version())
    }

    /// Live contexts, in name order.
    pub fn contexts(&self) -> impl Iterator<Item = (&str, &ContextState)> {
        self.contexts
            .iter()
            .filter(|(_, c)| !c.deleted)
            .map(|(n, c)| (n.as_str(), c))
    }

    /// Every context ever created, deleted ones included.
    pub fn all_contexts(&self) -> impl Iterator<Item = (&str, &ContextState)> {
        self.contexts.iter().map(|(n, c)| (n.as_str(), c))
    }

    /// Active contexts.
    pub fn active(&self) -> impl Iterator<Item = &str> {
        self.active.iter().map(String::as_str)
    }

    /// True if the context is active.
    pub fn is_active(&self, name: &str) -> bool {
        self.active.contains(name)
    }

    /// The current context, if one was switched to.
    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// The default context.
    pub fn default_context(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// Recovery points, by label.
    pub fn recovery_points(&self) -> BTreeMap<String, Offset> {
        self.points.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// One recovery point.
    pub fn recovery_point(&self, label: &str) -> Option<Offset> {
        self.points.get(label).copied()
    }

    /// Chain hash of the commit at [`State::offset`] (`None` unless tamper-evident).
    pub fn chain(&self) -> Option<[u8; 32]> {
        self.chain
    }

    pub(crate) fn set_chain(&mut self, chain: Option<[u8; 32]>) {
        self.chain = chain;
    }

    /// The last offset a durable consumer acknowledged (0: none).
    pub fn consumer(&self, name: &str) -> Offset {
        self.consumers.get(name).copied().unwrap_or_default()
    }

    /// Every durable consumer's position.
    pub fn consumer_positions(&self) -> impl Iterator<Item = Offset> + '_ {
        self.consumers.values().copied()
    }

    /// Offsets before this were compacted away.
    pub fn compacted_before(&self) -> Offset {
        self.compacted_before
    }

    /// Marks every event of the commit at `offset` applied (the writer applies events one by
    /// one as it checks them, then seals the commit with this).
    pub(crate) fn set_offset(&mut self, offset: Offset) {
        debug_assert!(offset > self.offset, "offsets only grow");
        self.offset = offset;
    }

    /// Applies a whole commit at `offset`. On error the state may hold part of the commit:
    /// callers that must stay whole apply to a clone (O(1)) and keep it only on success.
    pub fn apply_commit(&mut self, offset: Offset, commit: &Commit) -> Result<(), ApplyError> {
        let stamp = Stamp {
            offset,
            ts_ms: commit.ts,
        };
        for event in &commit.events {
            self.apply(stamp, event)?;
        }
        self.offset = offset;
        Ok(())
    }

    /// Applies a whole commit at `offset`, taking its events by value: replay's path, which
    /// moves keys and values into the maps instead of copying them.
    pub fn apply_commit_owned(&mut self, offset: Offset, commit: Commit) -> Result<(), ApplyError> {
        let stamp = Stamp {
            offset,
            ts_ms: commit.ts,
        };
        for event in commit.events {
            match event {
                Event::ValueSet {
                    context,
                    key,
                    value,
                } => {
                    let c = self.live_mut(&context)?;
                    c.values.insert(key, StoredValue(value.into_vec()));
                    c.updated = stamp;
                }
                event => self.apply(stamp, &event)?,
            }
        }
        self.offset = offset;
        Ok(())
    }

    fn live_mut(&mut self, name: &str) -> Result<&mut ContextState, ApplyError> {
        self.contexts
            .get_mut(name)
            .filter(|c| !c.deleted)
            .ok_or_else(|| ApplyError::NotFound(name.to_string()))
    }

    fn require_live(&self, name: &str) -> Applied {
        match self.context(name) {
            Some(_) => Ok(()),
            None => Err(ApplyError::NotFound(name.to_string())),
        }
    }

    /// Applies one event of the commit stamped `stamp`.
    pub fn apply(&mut self, stamp: Stamp, event: &Event) -> Applied {
        match event {
            Event::ContextCreated { context, labels } => {
                if self.context(context).is_some() {
                    return Err(ApplyError::AlreadyExists(context.clone()));
                }
                let mut c = ContextState::new(stamp);
                c.labels = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                self.contexts.insert(context.clone(), c);
            }
            Event::ValueSet {
                context,
                key,
                value,
            } => {
                let c = self.live_mut(context)?;
                c.values.insert(key.clone(), StoredValue(value.to_vec()));
                c.updated = stamp;
            }
            Event::ValueRemoved { context, key } => {
                let c = self.live_mut(context)?;
                if c.values.remove(key).is_none() {
                    return Err(ApplyError::KeyNotFound(context.clone(), key.clone()));
                }
                c.updated = stamp;
            }
            Event::MetadataChanged {
                context,
                set,
                removed,
            } => {
                let c = self.live_mut(context)?;
                for (k, v) in set {
                    c.labels.insert(k.clone(), v.clone());
                }
                for k in removed {
                    c.labels.remove(k);
                }
                c.updated = stamp;
            }
            Event::ContextDeleted { context } => {
                let c = self.live_mut(context)?;
                c.values = OrdMap::new();
                c.labels = OrdMap::new();
                c.deleted = true;
                c.updated = stamp;
                self.forget_adapter(context);
            }
            Event::ContextRestored { context, image, .. } => {
                self.restore(stamp, context, image.as_ref())
            }
            Event::Activated { context } => {
                self.require_live(context)?;
                self.active.insert(context.clone());
            }
            Event::Deactivated { context } => {
                self.active.remove(context);
                if self.current.as_deref() == Some(context) {
                    self.current = None;
                }
            }
            Event::Switched { from, to } => {
                self.require_live(to)?;
                if let Some(from) = from {
                    self.active.remove(from);
                }
                self.active.insert(to.clone());
                self.current = Some(to.clone());
            }
            Event::DefaultChanged { context } => {
                if let Some(c) = context {
                    self.require_live(c)?;
                }
                self.default = context.clone();
            }
            Event::RecoveryPointCreated { label } => {
                if let Some(&at) = self.points.get(label) {
                    return Err(ApplyError::PointExists(label.clone(), at));
                }
                self.points.insert(label.clone(), stamp.offset);
            }
            Event::ConsumerAcked { consumer, offset } => {
                let at = self.consumers.get(consumer).copied().unwrap_or_default();
                self.consumers.insert(consumer.clone(), at.max(*offset));
            }
            Event::SchemaAttached { context, schema } => {
                let c = self.live_mut(context)?;
                c.schema = Some(schema.clone());
                c.updated = stamp;
            }
            Event::SchemaRemoved { context } => {
                let c = self.live_mut(context)?;
                c.schema = None;
                c.updated = stamp;
            }
            Event::Compacted { before } => {
                self.compacted_before = self.compacted_before.max(*before)
            }
        }
        Ok(())
    }

    fn forget_adapter(&mut self, context: &str) {
        self.active.remove(context);
        if self.current.as_deref() == Some(context) {
            self.current = None;
        }
    }

    fn restore(&mut self, stamp: Stamp, context: &str, image: Option<&ContextImage>) {
        match image {
            None => {
                if let Some(c) = self.contexts.get_mut(context).filter(|c| !c.deleted) {
                    c.values = OrdMap::new();
                    c.labels = OrdMap::new();
                    c.deleted = true;
                    c.updated = stamp;
                    self.forget_adapter(context);
                }
            }
            Some(image) => {
                let created = self.context(context).map_or(stamp, |c| c.created);
                let c = ContextState {
                    values: image
                        .values
                        .iter()
                        .map(|(k, v)| (k.clone(), StoredValue(v.to_vec())))
                        .collect(),
                    labels: image
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    created,
                    updated: stamp,
                    deleted: false,
                    schema: image.schema.clone(),
                };
                self.contexts.insert(context.to_string(), c);
            }
        }
    }

    /// The `ContextRestored` events that bring this state's contexts to `target`'s (as of
    /// `target.offset()`): one per context whose content differs.
    pub fn restore_events(&self, target: &State) -> Vec<Event> {
        let mut names: Vec<&String> = self.contexts.keys().chain(target.contexts.keys()).collect();
        names.sort();
        names.dedup();
        let mut events = Vec::new();
        for name in names {
            let want = target.context(name).map(ContextState::image);
            let differs = match (self.context(name), &want) {
                (None, None) => false,
                (Some(c), Some(img)) => !c.same_content(img),
                _ => true,
            };
            if differs {
                events.push(Event::ContextRestored {
                    context: name.clone(),
                    from_offset: target.offset,
                    image: want,
                });
            }
        }
        events
    }
}
