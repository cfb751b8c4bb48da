//! What readers see: the published state, swapped atomically once a batch is durable, and the
//! notifications that trackers wait on.

use crate::event::Commit;
use crate::offset::Offset;
use crate::state::State;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{broadcast, watch};

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
    /// The last published offset; `None` once closed, which ends every wait.
    last: Mutex<Option<watch::Sender<Offset>>>,
    watchers: Mutex<HashMap<String, watch::Sender<Offset>>>,
    /// Every acknowledged batch of commits, for live subscribers; `None` once closed.
    commits: Mutex<Option<broadcast::Sender<LiveBatch>>>,
    pub counters: Counters,
}

/// One acknowledged commit as live subscribers receive it.
#[derive(Debug)]
pub(crate) struct LiveCommit {
    pub offset: Offset,
    pub commit: Arc<Commit>,
}

/// The commits of one acknowledged batch, in offset order.
pub(crate) type LiveBatch = Arc<Vec<LiveCommit>>;

/// Batches a live subscriber may fall behind before it reads the log instead.
pub(crate) const LIVE_BUFFER_BATCHES: usize = 1024;

impl Hub {
    pub fn new(state: State) -> Hub {
        let last = Mutex::new(Some(watch::channel(state.offset()).0));
        Hub {
            published: RwLock::new(Arc::new(state)),
            last,
            watchers: Mutex::new(HashMap::new()),
            commits: Mutex::new(Some(broadcast::channel(LIVE_BUFFER_BATCHES).0)),
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
        if let Some(last) = self.last.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            last.send_replace(offset);
        }
    }

    /// Hands an acknowledged batch to live subscribers (never waits: a subscriber that falls
    /// more than [`LIVE_BUFFER_BATCHES`] behind reads the log instead).
    pub fn broadcast(&self, batch: impl FnOnce() -> Vec<LiveCommit>) {
        let commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = commits.as_ref().filter(|tx| tx.receiver_count() > 0) {
            let _ = tx.send(Arc::new(batch()));
        }
    }

    /// Receives the batches acknowledged from now on (`None` once the store is closed).
    pub fn subscribe_commits(&self) -> Option<broadcast::Receiver<LiveBatch>> {
        let commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        commits.as_ref().map(broadcast::Sender::subscribe)
    }

    /// Ends every live subscription, offset wait and context watch (the store is closing).
    pub fn close(&self) {
        self.commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.last.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Follows the last published offset.
    pub fn subscribe_offset(&self) -> watch::Receiver<Offset> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.as_ref() {
            Some(tx) => tx.subscribe(),
            // Closed: a receiver whose sender is gone, so that every wait ends at once.
            None => watch::channel(self.state().offset()).1,
        }
    }

    /// Follows one context's version.
    pub fn watch(&self, context: &str) -> watch::Receiver<Offset> {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        // Read the version under the watchers lock, so that no publish slips between.
        let version = self.state().version(context);
        if self.is_closed() {
            return watch::channel(version).1;
        }
        watchers.retain(|_, tx| tx.receiver_count() > 0);
        watchers
            .entry(context.to_string())
            .or_insert_with(|| watch::channel(version).0)
            .subscribe()
    }
}
