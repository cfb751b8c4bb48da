//! In-memory state: every context, the adapter's status, the recovery points. Persistent maps
//! (imbl) make a clone O(1), so readers, snapshots and point-in-time views share structure
//! with the live state instead of copying it.
//!
//! [`State::apply`] is the one place where an event changes state: replay on open, `state_at`,
//! verification, the writer's validation and the tests all go through it.

use crate::blob::Blob;
use crate::event::{Commit, ContextImage, Event, Labels};
use crate::model::Value;
use crate::offset::Offset;
use compact_str::CompactString;
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    values: OrdMap<Name, StoredValue>,
    labels: OrdMap<String, String>,
    created: Stamp,
    updated: Stamp,
    deleted: bool,
    /// JSON Schema text governing the values (schema 2; absent in older snapshots).
    #[serde(default)]
    schema: Option<String>,
}

/// Context names and keys in the maps. Names up to 24 bytes live inline, in the map's node:
/// no allocation per key, and a lookup compares bytes next to each other instead of chasing a
/// pointer per comparison (replay spent a fifth of its time in those cache misses). Snapshots
/// encode it as a string, exactly as they encoded `String`.
pub(crate) type Name = CompactString;

/// A stored value, shared with every [`Value`] read from it (a read is a reference count, not
/// a copy). Snapshots store it as bytes, not as an array of numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredValue(Blob);

impl Serialize for StoredValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::Bytes::new(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for StoredValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_bytes::ByteBuf::deserialize(d).map(|b| StoredValue(Blob::whole(b.into_vec().into())))
    }
}

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
        self.values.get(key).map(|v| Value::shared(&v.0))
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(Name::as_str)
    }

    /// Every key and value, in key order.
    pub fn values(&self) -> impl Iterator<Item = (&str, Value)> {
        self.values
            .iter()
            .map(|(k, v)| (k.as_str(), Value::shared(&v.0)))
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
                .map(|(k, v)| (k.to_string(), serde_bytes::ByteBuf::from(v.0.to_vec())))
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
            && self.values.iter().all(|(k, v)| {
                image
                    .values
                    .get(k.as_str())
                    .is_some_and(|i| i.as_slice() == &*v.0)
            })
    }
}

/// Everything the log describes, as of one offset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    /// Each context behind its own `Arc`: a map node holds 32-byte entries instead of whole
    /// contexts (a lookup's binary search touches a few cache lines, not a few pages), and a
    /// writer copying a node that a reader shares copies pointers, not contexts.
    contexts: OrdMap<Name, Arc<ContextState>>,
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
        self.contexts
            .get(name)
            .map(Arc::as_ref)
            .filter(|c| !c.deleted)
    }

    /// A context, deleted or not (for status and version checks).
    pub fn context_any(&self, name: &str) -> Option<&ContextState> {
        self.contexts.get(name).map(Arc::as_ref)
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
            .map(|(n, c)| (n.as_str(), c.as_ref()))
    }

    /// Every context ever created, deleted ones included.
    pub fn all_contexts(&self) -> impl Iterator<Item = (&str, &ContextState)> {
        self.contexts.iter().map(|(n, c)| (n.as_str(), c.as_ref()))
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

    /// Sets keys of one live context in order, the last stamp becoming its version: the one
    /// place values enter the state ([`State::apply`] with one set, replay with the sets it
    /// gathered per context, see `replay::pending`).
    pub(crate) fn set_values(
        &mut self,
        context: &str,
        sets: impl IntoIterator<Item = (Stamp, Name, Blob)>,
    ) -> Applied {
        let c = self.live_mut(context)?;
        for (stamp, key, value) in sets {
            c.values.insert(key, StoredValue(value));
            c.updated = stamp;
        }
        Ok(())
    }

    /// The stored values of the named contexts (replay's count of its slabs' live bytes).
    pub(crate) fn blobs_in<'a>(
        &'a self,
        contexts: impl IntoIterator<Item = &'a Name> + 'a,
    ) -> impl Iterator<Item = &'a Blob> + 'a {
        contexts
            .into_iter()
            .filter_map(|name| self.contexts.get(name.as_str()))
            .flat_map(|c| c.values.values().map(|v| &v.0))
    }

    /// Gives every value of the named contexts that is part of a buffer `doomed` picks a
    /// buffer of its own, and returns how many it copied: replay's way to let go of slabs that
    /// few live values still hold (see `replay::slabs`). Contexts and values it does not copy
    /// keep sharing their nodes.
    pub(crate) fn detach_values<'a>(
        &mut self,
        contexts: impl IntoIterator<Item = &'a Name>,
        doomed: impl Fn(&Arc<[u8]>) -> bool,
    ) -> usize {
        let picked = |v: &StoredValue| !v.0.is_whole() && doomed(v.0.buffer());
        let mut copied = 0;
        for name in contexts {
            let Some(c) = self.contexts.get(name.as_str()) else {
                continue;
            };
            let keys: Vec<Name> = c
                .values
                .iter()
                .filter(|(_, v)| picked(v))
                .map(|(k, _)| k.clone())
                .collect();
            if keys.is_empty() {
                continue;
            }
            let c = Arc::make_mut(self.contexts.get_mut(name.as_str()).expect("found above"));
            for key in keys {
                let v = c.values.get_mut(&key).expect("found above");
                v.0 = v.0.detached();
                copied += 1;
            }
        }
        copied
    }

    /// Every stored value's bytes, as the state shares them (tests of replay's slabs).
    #[cfg(test)]
    pub(crate) fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.blobs_in(self.contexts.keys())
    }

    /// Marks the commit at `offset` wholly applied, with its chain hash (replay).
    pub(crate) fn seal(&mut self, offset: Offset, chain: Option<[u8; 32]>) {
        self.set_offset(offset);
        self.chain = chain;
    }

    fn live_mut(&mut self, name: &str) -> Result<&mut ContextState, ApplyError> {
        self.contexts
            .get_mut(name)
            .filter(|c| !c.deleted)
            .map(Arc::make_mut)
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
                self.contexts.insert(Name::new(context), Arc::new(c));
            }
            Event::ValueSet {
                context,
                key,
                value,
            } => self.set_values(context, [(stamp, Name::new(key), value.as_slice().into())])?,
            Event::ValueRemoved { context, key } => {
                let c = self.live_mut(context)?;
                if c.values.remove(key.as_str()).is_none() {
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
                    let c = Arc::make_mut(c);
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
                        .map(|(k, v)| (Name::new(k), StoredValue(v.as_slice().into())))
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
                self.contexts.insert(Name::new(context), Arc::new(c));
            }
        }
    }

    /// The `ContextRestored` events that bring this state's contexts to `target`'s (as of
    /// `target.offset()`): one per context whose content differs.
    pub fn restore_events(&self, target: &State) -> Vec<Event> {
        let mut names: Vec<&Name> = self.contexts.keys().chain(target.contexts.keys()).collect();
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
                    context: name.to_string(),
                    from_offset: target.offset,
                    image: want,
                });
            }
        }
        events
    }
}
