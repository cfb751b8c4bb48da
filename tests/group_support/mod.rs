//! What the write-group tests share: a storage that delays syncs and panics on demand, a
//! timeout for code that could hang, and a stage that drives `GroupCommit` directly (its
//! `close` takes `&self`) and checks that acknowledgements come in offset order.

#![allow(dead_code)]

use ctxlog::storage::{LockFailure, LockGuard, Mapped, MemStorage, OpenMode, Storage, StorageFile};
use ctxlog::wal::{Completer, GroupCommit, LogWriter, Reached, Stage, WalError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

impl Tuned {
    /// `inner`, with knobs that start at no delay and no panic.
    pub fn new(inner: MemStorage) -> (Arc<Tuned>, Arc<Knobs>) {
        let knobs = Arc::new(Knobs::default());
        let storage = Arc::new(Tuned {
            inner,
            knobs: Arc::clone(&knobs),
        });
        (storage, knobs)
    }
}

/// What the wrapped storage does to every file.
#[derive(Debug, Default)]
pub struct Knobs {
    /// Each `sync_data` sleeps this long (µs), but the `POISONED` marker's: a poisoning
    /// writer thread writes that one while the sync thread may be syncing ...
    pub sync_us: AtomicU64,
    /// ... plus up to this much more, pseudo-random (µs).
    pub jitter_us: AtomicU64,
    pub seed: AtomicU64,
    pub panic_sync: AtomicBool,
    pub panic_write: AtomicBool,
    /// Panics in the next `set_len` (a rotation's seal, among others).
    pub panic_set_len: AtomicBool,
    /// Syncs in progress (in their sleep) now ...
    pub syncing: AtomicUsize,
    /// ... and those of them on the log's sync thread (named `ctxlog-sync`).
    pub syncing_on_sync_thread: AtomicUsize,
    /// Syncs begun so far.
    pub syncs: AtomicUsize,
}

impl Knobs {
    fn sync_delay(&self) -> Duration {
        let base = self.sync_us.load(Ordering::Relaxed);
        let jitter = self.jitter_us.load(Ordering::Relaxed);
        let r = if jitter == 0 {
            0
        } else {
            let mut z = self
                .seed
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
                .wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % (jitter + 1)
        };
        Duration::from_micros(base + r)
    }
}

/// `MemStorage` whose files sleep in each sync, and panic in a write, a sync or a `set_len`
/// when told (a buggy `Storage`: the trait is public).
#[derive(Debug)]
pub struct Tuned {
    pub inner: MemStorage,
    pub knobs: Arc<Knobs>,
}

#[derive(Debug)]
struct TunedFile {
    inner: Arc<dyn StorageFile>,
    knobs: Arc<Knobs>,
    /// The `POISONED` marker: no sync delay.
    marker: bool,
}

impl StorageFile for TunedFile {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> std::io::Result<()> {
        if self.knobs.panic_write.swap(false, Ordering::AcqRel) {
            panic!("storage write panics");
        }
        self.inner.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        let k = &self.knobs;
        let on_sync_thread = std::thread::current().name() == Some("ctxlog-sync");
        k.syncs.fetch_add(1, Ordering::AcqRel);
        k.syncing.fetch_add(1, Ordering::AcqRel);
        if on_sync_thread {
            k.syncing_on_sync_thread.fetch_add(1, Ordering::AcqRel);
        }
        let d = k.sync_delay();
        if !d.is_zero() && !self.marker {
            std::thread::sleep(d);
        }
        if on_sync_thread {
            k.syncing_on_sync_thread.fetch_sub(1, Ordering::AcqRel);
        }
        k.syncing.fetch_sub(1, Ordering::AcqRel);
        if self.knobs.panic_sync.swap(false, Ordering::AcqRel) {
            panic!("storage sync panics");
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        if self.knobs.panic_set_len.swap(false, Ordering::AcqRel) {
            panic!("storage set_len panics");
        }
        self.inner.set_len(len)
    }
    fn map(&self) -> std::io::Result<Mapped> {
        self.inner.map()
    }
}

impl Storage for Tuned {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Arc<dyn StorageFile>> {
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(TunedFile {
            inner,
            knobs: Arc::clone(&self.knobs),
            marker: path.file_name().is_some_and(|n| n == "POISONED"),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>, LockFailure> {
        self.inner.lock(path, holder)
    }
    fn lock_holder(&self, path: &Path) -> Option<String> {
        self.inner.lock_holder(path)
    }
}
/// The tests' runtime for async appenders: two workers, as on the bench machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `f` on a thread and waits at most `secs` for it: a hang fails the test instead of
/// stalling the run.
pub fn within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what} hung for {secs} s"),
    }
}
/// Where a request's outcome goes.
pub type Reply = mpsc::Sender<Result<u64, String>>;

/// A request of [`RecStage`]: one record, and where to answer.
pub struct Req {
    pub payload: Vec<u8>,
    pub reply: Reply,
}

/// Appends each request's payload as one record, and panics on [`PANIC_IN_PREPARE`] (a bug
/// in a `Stage`).
pub struct RecStage;

/// The payload [`RecStage`] panics on.
pub const PANIC_IN_PREPARE: &[u8] = b"the stage panics on this payload";

impl Stage for RecStage {
    type Request = Req;
    type Ack = (u64, Vec<u8>, Reply);

    fn prepare(&mut self, r: Req, log: &mut LogWriter) -> Option<Self::Ack> {
        if r.payload == PANIC_IN_PREPARE {
            panic!("the stage panics");
        }
        match log.append(&r.payload) {
            Ok(o) => Some((o.0, r.payload, r.reply)),
            Err(e) => {
                let _ = r.reply.send(Err(format!("prepare: {e}")));
                None
            }
        }
    }

    fn refuse(&mut self, r: Req, e: WalError) {
        let _ = r.reply.send(Err(format!("refused: {e}")));
    }
}

/// Counts completions out of offset order (offsets of successful acks must increase).
pub struct RecCompleter {
    pub last_ok: u64,
    pub out_of_order: Arc<AtomicUsize>,
}

impl Completer for RecCompleter {
    type Ack = (u64, Vec<u8>, Reply);

    fn complete(&mut self, acks: Vec<Self::Ack>, result: Result<Reached, &WalError>) {
        for (o, _, reply) in acks {
            match result {
                Ok(_) => {
                    if o <= self.last_ok {
                        self.out_of_order.fetch_add(1, Ordering::AcqRel);
                    }
                    self.last_ok = o;
                    let _ = reply.send(Ok(o));
                }
                Err(e) => {
                    let _ = reply.send(Err(format!("complete: {e}")));
                }
            }
        }
    }
}
/// Submits from a blocking thread (a write group in `Always` mode) and waits for the answer.
pub fn blocking_append(gc: &GroupCommit<Req>, payload: Vec<u8>) -> Result<u64, String> {
    let (tx, rx) = mpsc::channel();
    gc.submit_blocking(Req { payload, reply: tx })
        .map_err(|e| format!("submit: {e}"))?;
    rx.recv().map_err(|_| "reply dropped".to_string())?
}

/// Submits from a task (the writer thread's queue) and waits for the answer.
pub async fn async_append(gc: &GroupCommit<Req>, payload: Vec<u8>) -> Result<u64, String> {
    let (tx, rx) = mpsc::channel();
    gc.submit(Req { payload, reply: tx })
        .await
        .map_err(|e| format!("submit: {e}"))?;
    // The reply comes from another thread; wait for it off the runtime's worker.
    tokio::task::spawn_blocking(move || rx.recv().map_err(|_| "reply dropped".to_string()))
        .await
        .unwrap()?
}
