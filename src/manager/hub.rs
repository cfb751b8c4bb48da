//! What readers see: the published state, swapped atomically once a batch is durable, and the
//! notifications that trackers wait on.

use crate::offset::Offset;
use crate::state::State;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;

/// Counters of the engine (the log keeps its own).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub events: AtomicU64,
    pub snapshots: AtomicU64,
    pub snapshot_failures: AtomicU64,
    pub last_snapshot: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Shared by the completion thread (which publishes) and every reader.
#[derive(Debug)]
pub(crate) struct Hub {
    published: RwLock<Arc<State>>,
    last: watch::Sender<Offset>,
    watchers: Mutex<HashMap<String, watch::Sender<Offset>>>,
    pub counters: Counters,
}

impl Hub {
    pub fn new(state: State) -> Hub {
        let (last, _) = watch::channel(state.offset());
        Hub {
            published: RwLock::new(Arc::new(state)),
            last,
            watchers: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
    }

    /// The state as of the last published commit. The lock is held for one `Arc` clone.
    pub fn state(&self) -> Arc<State> {
        Arc::clone(&self.published.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Publishes a new state, then notifies the watchers of what changed and of the offset.
    pub fn publish(&self, state: State, touched: impl Iterator<Item = (String, Offset)>) {
        let offset = state.offset();
        *self.published.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
        {
            let watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
            if !watchers.is_empty() {
                for (name, version) in touched {
                    if let Some(tx) = watchers.get(&name) {
                        tx.send_replace(version);
                    }
                }
            }
        }
        self.last.send_replace(offset);
    }

    /// Follows the last published offset.
    pub fn subscribe_offset(&self) -> watch::Receiver<Offset> {
        self.last.subscribe()
    }

    /// Follows one context's version.
    pub fn watch(&self, context: &str) -> watch::Receiver<Offset> {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        // Read the version under the watchers lock, so that no publish slips between.
        let version = self.state().version(context);
        watchers.retain(|_, tx| tx.receiver_count() > 0);
        watchers
            .entry(context.to_string())
            .or_insert_with(|| watch::channel(version).0)
            .subscribe()
    }
}
