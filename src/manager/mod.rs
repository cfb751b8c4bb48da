//! The context manager: create, read, update and delete contexts; history; recovery points;
//! point-in-time reads and restores; snapshots.

mod audit;
mod history;
mod hub;
mod maintenance;
mod open;
mod ops;
mod stage;
mod subscribe;

pub use history::{CommitRecord, HistoryEntry};
pub use open::OpenReport;
pub use ops::{Op, Receipt, Update};
pub use subscribe::{Filter, SubscribedEvent, Subscription};

/// Engine actions for the adapter (not part of the public API).
pub(crate) mod ops_internal {
    pub(crate) use super::ops::Action;
}

use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::Labels;
use crate::model::{check_context_name, check_key, Value};
use crate::offset::Offset;
use crate::state::{ContextState, State};
use crate::wal::{GroupCommit, LogReader, WalStats};
use hub::{Counters, Hub};
use open::Snapshotter;
use ops::Action;
use serde::{de::DeserializeOwned, Serialize};
use stage::Request;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, watch};

/// Opens (or creates) the store in `dir` with the default configuration.
pub async fn create_manager(dir: impl AsRef<Path>) -> Result<ContextManager> {
    create_manager_with_config(Config::new(dir.as_ref())).await
}

/// Opens (or creates) a store.
pub async fn create_manager_with_config(config: Config) -> Result<ContextManager> {
    blocking(move || open::open_blocking(config)).await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// A point in the log: an offset or a recovery point's label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// An offset.
    Offset(Offset),
    /// A recovery point.
    Label(String),
}

impl From<Offset> for At {
    fn from(o: Offset) -> At {
        At::Offset(o)
    }
}

impl From<u64> for At {
    fn from(o: u64) -> At {
        At::Offset(Offset(o))
    }
}

impl From<&str> for At {
    fn from(l: &str) -> At {
        At::Label(l.to_string())
    }
}

/// What the store has done since open.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Commits acknowledged.
    pub commits: u64,
    /// Events in them.
    pub events: u64,
    /// The log's counters: writes, bytes, fsyncs, records.
    pub log: WalStats,
    /// Average commits per write (group commit at work).
    pub avg_batch: f64,
    /// Snapshots written by this handle.
    pub snapshots: u64,
    /// Snapshots that failed (the log still has everything).
    pub snapshot_failures: u64,
    /// Offset of the last snapshot written by this handle (0: none).
    pub last_snapshot: Offset,
    /// Time open took, ms.
    pub recovery_ms: u64,
    /// Last committed offset.
    pub current_offset: Offset,
    /// Live contexts.
    pub contexts: usize,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) commit: GroupCommit<Request>,
    pub(crate) reader: LogReader,
    pub(crate) hub: Arc<Hub>,
    snapshotter: Arc<Snapshotter>,
    snap_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    report: OpenReport,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    fn shutdown(&self) {
        // Closing the pipeline drops the completer and with it the snapshot sender, which ends
        // the snapshot thread after the snapshot in hand.
        self.commit.close();
        self.hub.close();
        if let Some(t) = self
            .snap_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.join();
        }
    }
}

/// The handle to an open store. Cheap to clone; all clones share the store.
#[derive(Clone)]
pub struct ContextManager {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ContextManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextManager")
            .field("dir", &self.inner.config.dir)
            .field("offset", &self.last_offset())
            .finish()
    }
}

impl ContextManager {
    // ---- commits ----

    pub(crate) async fn submit(
        &self,
        actions: Vec<Action>,
        expect: BTreeMap<String, Offset>,
    ) -> Result<Receipt> {
        let (reply, rx) = oneshot::channel();
        let request = Request {
            actions,
            expect,
            reply,
            submitted: std::time::Instant::now(),
        };
        self.inner.commit.submit(request).await?;
        // Dropping this future from here on leaves the commit whole: it is queued, and the
        // writer commits or rejects it as a unit whether or not anyone waits for the answer.
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Applies a batch atomically: all operations or none, and none if any expected version
    /// differs ([`Error::VersionConflict`]).
    pub async fn update(&self, update: Update) -> Result<Receipt> {
        if update.ops.is_empty() {
            return Err(crate::error::InvalidInput::EmptyUpdate.into());
        }
        let max = self.inner.config.value_bytes_max;
        for op in &update.ops {
            op.validate(max)?;
        }
        for context in update.expect.keys() {
            check_context_name(context)?;
        }
        let (reply, rx) = oneshot::channel();
        self.inner
            .commit
            .submit(Request::new(update, reply))
            .await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Creates a context.
    pub async fn create(&self, context: &str) -> Result<Receipt> {
        self.update(Update::new().create(context)).await
    }

    /// Creates a context with labels.
    pub async fn create_with_labels(&self, context: &str, labels: Labels) -> Result<Receipt> {
        let op = Op::Create {
            context: context.to_string(),
            labels,
        };
        self.update(Update::new().op(op)).await
    }

    /// Sets a key to any serde value.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        context: &str,
        key: &str,
        value: &T,
    ) -> Result<Receipt> {
        self.update(Update::new().set(context, key, value)?).await
    }

    /// Sets a key to a value that is already MessagePack.
    pub async fn set_value(&self, context: &str, key: &str, value: Value) -> Result<Receipt> {
        let op = Op::Set {
            context: context.into(),
            key: key.into(),
            value,
        };
        self.update(Update::new().op(op)).await
    }

    /// Removes a key.
    pub async fn remove(&self, context: &str, key: &str) -> Result<Receipt> {
        self.update(Update::new().remove(context, key)).await
    }

    /// Sets and removes labels.
    pub async fn set_metadata(
        &self,
        context: &str,
        set: Labels,
        removed: Vec<String>,
    ) -> Result<Receipt> {
        let op = Op::Meta {
            context: context.into(),
            set,
            removed,
        };
        self.update(Update::new().op(op)).await
    }

    /// Deletes a context. Its history stays in the log, and a restore can bring it back.
    pub async fn delete(&self, context: &str) -> Result<Receipt> {
        self.update(Update::new().delete(context)).await
    }

    /// Attaches a JSON Schema to a context (replacing any): from this commit on, a commit that
    /// would leave the context's state invalid is refused with [`Error::SchemaViolation`]. The
    /// current state must already satisfy it.
    pub async fn attach_schema(
        &self,
        context: &str,
        schema: &serde_json::Value,
    ) -> Result<Receipt> {
        check_context_name(context)?;
        let action = Action::Schema(context.to_string(), Some(schema.to_string()));
        self.submit(vec![action], BTreeMap::new()).await
    }

    /// Removes a context's JSON Schema.
    pub async fn remove_schema(&self, context: &str) -> Result<Receipt> {
        check_context_name(context)?;
        self.submit(
            vec![Action::Schema(context.to_string(), None)],
            BTreeMap::new(),
        )
        .await
    }

    // ---- reads (from memory: never wait for the writer or an fsync) ----

    /// The state as of the last acknowledged commit: every context, adapter status, recovery
    /// points. O(1); later commits do not change it.
    pub fn state(&self) -> Arc<State> {
        self.inner.hub.state()
    }

    /// The last acknowledged offset.
    pub fn last_offset(&self) -> Offset {
        self.state().offset()
    }

    /// A context's whole state.
    pub fn get(&self, context: &str) -> Result<ContextState> {
        check_context_name(context)?;
        self.state()
            .context(context)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                context: context.to_string(),
            })
    }

    /// One value, raw.
    pub fn get_value(&self, context: &str, key: &str) -> Result<Value> {
        check_key(context, key)?;
        self.get(context)?
            .get(key)
            .ok_or_else(|| Error::KeyNotFound {
                context: context.to_string(),
                key: key.to_string(),
            })
    }

    /// One value, decoded.
    pub fn get_as<T: DeserializeOwned>(&self, context: &str, key: &str) -> Result<T> {
        self.get_value(context, key)?.decode().map_err(|e| {
            Error::InvalidInput(crate::error::InvalidInput::Unencodable {
                context: context.to_string(),
                key: key.to_string(),
                reason: e.to_string(),
            })
        })
    }

    /// One versioned value, brought to the current version of its kind by the configured
    /// upcasters ([`Config::upcasters`]), decoded into `T`.
    pub fn get_versioned<T: DeserializeOwned>(&self, context: &str, key: &str) -> Result<T> {
        let value = self.get_value(context, key)?;
        self.inner.config.upcasters.decode(&value).map_err(|e| {
            Error::InvalidInput(crate::error::InvalidInput::Undecodable {
                context: context.to_string(),
                key: key.to_string(),
                reason: e.to_string(),
            })
        })
    }

    /// Sets a key to `data` stored as the current version of `kind`.
    pub async fn set_versioned<T: Serialize>(
        &self,
        context: &str,
        key: &str,
        kind: &str,
        data: &T,
    ) -> Result<Receipt> {
        let value = self
            .inner
            .config
            .upcasters
            .encode(kind, data)
            .map_err(|e| crate::error::InvalidInput::Unencodable {
                context: context.to_string(),
                key: key.to_string(),
                reason: e.to_string(),
            })?;
        self.set_value(context, key, value).await
    }

    /// Live context names, in order.
    pub fn list(&self) -> Vec<String> {
        self.state()
            .contexts()
            .map(|(n, _)| n.to_string())
            .collect()
    }

    /// Recovery points by label.
    pub fn recovery_points(&self) -> BTreeMap<String, Offset> {
        self.state().recovery_points()
    }

    // ---- the rest ----

    /// What the store has done since open.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.hub.counters;
        let log = self.inner.reader.stats();
        let state = self.state();
        Stats {
            commits: Counters::get(&c.commits),
            events: Counters::get(&c.events),
            avg_batch: if log.writes == 0 {
                0.0
            } else {
                log.records as f64 / log.writes as f64
            },
            log,
            snapshots: Counters::get(&c.snapshots),
            snapshot_failures: Counters::get(&c.snapshot_failures),
            last_snapshot: Offset(Counters::get(&c.last_snapshot)),
            recovery_ms: self.inner.report.open_ms,
            current_offset: state.offset(),
            contexts: state.contexts().count(),
        }
    }

    /// What open found and did.
    pub fn open_report(&self) -> &OpenReport {
        &self.inner.report
    }

    /// The store's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A reader over the raw log.
    pub fn log(&self) -> LogReader {
        self.inner.reader.clone()
    }

    /// Follows the last acknowledged offset.
    pub fn watch_offset(&self) -> watch::Receiver<Offset> {
        self.inner.hub.subscribe_offset()
    }

    /// Follows one context's version.
    pub fn watch_context(&self, context: &str) -> watch::Receiver<Offset> {
        self.inner.hub.watch(context)
    }

    /// Finishes every queued commit (written, synced, acknowledged), stops the threads and
    /// releases the store's lock. Later calls on any clone fail with [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            inner.shutdown();
            Ok(())
        })
        .await
    }
}
