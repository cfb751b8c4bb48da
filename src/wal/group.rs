//! Group commit: one writer thread owns the active segment for async appenders; in `Always`
//! mode blocking appenders commit in write groups on their own threads, and a sync thread and
//! an ack thread serve the writer thread's batches.
//!
//! - **write groups** (`Always`, blocking appenders; `leader`): an appender prepares its
//!   request into the log's buffer under the log's mutex, joining the pending generation; the
//!   participant that finds it ready writes it, `fdatasync`s and completes it on its own
//!   thread; the others sleep on a shared futex word and are woken together. A lone blocking
//!   appender is a group of one: `pwrite` + `fdatasync` on its own thread, no hand-off (bench:
//!   1 writer at 1.0x a raw `pwrite` + `fdatasync` loop; 16 writers from 6.6–6.7x to
//!   9.4–10.1x, 64 writers from 12.6–15.9x to 17.7–22.1x; see `docs/PERFORMANCE.md`). A group
//!   forms only while no batch of the pipeline below is in flight; while one is active, the
//!   writer thread adds what it takes from the queue to the group's pending generation and
//!   waits for it;
//! - **alone** (the writer thread finds nothing else queued, nothing in the pipeline, and no
//!   cohort of tasks due back): the writer syncs and acknowledges itself, so a lone async
//!   appender pays two thread hand-offs per commit, not four;
//! - **under load** (async appenders): the batch goes to the sync thread, which takes every
//!   batch that has arrived, and those of the tasks the last sync released that come back
//!   before a deadline (`cohort`), issues one `fdatasync` for all of them and passes them to
//!   the ack thread. The writer gathers and writes the next batch while the current one
//!   syncs, and the ack thread wakes the appenders while the next sync runs.
//!
//! In `Batched` and `Never` modes the writer acknowledges as soon as a batch is written; in
//! `Batched` the sync thread syncs at most `max_delay` after the first unsynced write, and in
//! `Never` a writeback thread syncs every 8 MiB written, so that a rotation's `fdatasync`
//! finds little left to write.
//! Acknowledgements are always given in offset order: group and pipeline batches are never in
//! flight together, one leader at a time commits a generation, and every `fdatasync`, the
//! leader's included, goes through the same checks (a failure poisons the log before anyone
//! is answered, and every later request is refused).

mod cohort;
mod leader;
mod threads;

use super::shared::{Shared, Visible};
use super::writer::{LogWriter, Written};
use super::{Durability, Reached, WalError};
use cohort::Cohort;
use leader::{Group, Words};
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;
use threads::{ack_loop, background_sync_loop, sync_loop, writer_loop, ToSync, WRITEBACK_BYTES};

/// Turns requests into records, on the writer thread, in arrival order.
pub trait Stage: Send + 'static {
    /// What appenders submit.
    type Request: Send + 'static;
    /// What waits for the batch to be durable, then is completed.
    type Ack: Send + 'static;

    /// Appends the request's records through `log` (or none), returning what to complete once
    /// they are durable. A rejected request is answered here and returns `None`.
    fn prepare(&mut self, request: Self::Request, log: &mut LogWriter) -> Option<Self::Ack>;

    /// Answers a request the writer cannot take (the log is poisoned).
    fn refuse(&mut self, request: Self::Request, error: WalError);
}

/// Completes acknowledgements, on the completion thread, in commit order.
pub trait Completer: Send + 'static {
    /// What the stage produced.
    type Ack: Send + 'static;

    /// Called once per batch with its acks, after the batch reached `result`.
    fn complete(&mut self, acks: Vec<Self::Ack>, result: Result<Reached, &WalError>);
}

struct Batch<A> {
    written: Option<Written>,
    acks: Vec<A>,
    error: Option<WalError>,
    /// The tokio tasks whose requests it holds (see `cohort`).
    tasks: Vec<tokio::task::Id>,
}

/// A request in the writer thread's queue, with the task that submitted it (`None`: not
/// from a task), which tells a returning cohort (see `cohort`).
struct Queued<R> {
    request: R,
    task: Option<tokio::task::Id>,
}

/// What the writer, sync and ack threads share.
struct Pipeline<C> {
    completer: Mutex<C>,
    /// Batches handed to the sync thread and not yet acknowledged. The writer acknowledges a
    /// batch itself only when this is 0, which keeps acknowledgements in order.
    in_flight: AtomicUsize,
    shared: Arc<Shared>,
    /// `Always`: the tasks the last sync released, which the next one waits for.
    cohort: Mutex<Cohort>,
}

impl<C: Completer> Pipeline<C> {
    fn complete(&self, acks: Vec<C::Ack>, result: Result<Reached, &WalError>) {
        self.completer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .complete(acks, result);
    }

    fn cohort(&self) -> MutexGuard<'_, Cohort> {
        self.cohort.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Syncs and completes batches on the calling thread, the tasks they release expected
    /// back by the next sync.
    fn sync_and_complete(&self, batches: Vec<Batch<C::Ack>>) {
        let started = Instant::now();
        let synced = sync_batches(&self.shared, &batches);
        self.released(&batches, started);
        complete_synced(self, batches, synced);
    }

    /// `batches`, synced since `started`, are about to be acknowledged: their tasks are the
    /// next sync's cohort.
    fn released(&self, batches: &[Batch<C::Ack>], started: Instant) {
        let tasks: Vec<_> = batches
            .iter()
            .flat_map(|b| b.tasks.iter().copied())
            .collect();
        if !tasks.is_empty() {
            let now = Instant::now();
            self.cohort().released(&tasks, now - started, now);
        }
    }
}

/// What the writer thread owns while it runs: the active segment and the stage. `None` once
/// the writer thread has closed the log.
struct Core<S> {
    log: LogWriter,
    stage: S,
}

impl<S: Stage> Core<S> {
    /// Turns one request into buffered records, or answers it.
    fn take(&mut self, request: S::Request, acks: &mut Vec<S::Ack>) {
        match self.log.shared.check_poison() {
            Err(e) => self.stage.refuse(request, e),
            Ok(()) => acks.extend(self.stage.prepare(request, &mut self.log)),
        }
    }

    /// Writes what `take` buffered with one write: the requests of `tasks`.
    fn write(&mut self, acks: Vec<S::Ack>, tasks: Vec<tokio::task::Id>) -> Batch<S::Ack> {
        let (written, error) = match self.log.flush() {
            Ok(w) => (w, None),
            Err(e) => (None, Some(e)),
        };
        // The poison of a failed rotation or write reaches the acks of this batch too.
        let error = error.or_else(|| self.log.shared.check_poison().err());
        Batch {
            written,
            acks,
            error,
            tasks,
        }
    }
}

/// The log (`None` once the writer thread has closed it) and the write group, behind the
/// mutex that the writer thread holds for each batch and an appender holds to prepare its
/// request or to write its group's generation.
struct Log<S: Stage> {
    core: Option<Core<S>>,
    group: Group<S::Ack>,
}

struct Writer<S: Stage, C> {
    log: Mutex<Log<S>>,
    /// What the write group's appenders sleep on (see `leader`).
    words: Words,
    /// What a write group's claimant sleeps on, with `log` (see `leader`).
    cohort: Condvar,
    pipeline: Arc<Pipeline<C>>,
}

impl<S: Stage, C> Writer<S, C> {
    fn lock(&self) -> MutexGuard<'_, Log<S>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The write-group path (`Always` only): an appender on a blocking thread commits its request,
/// and those of whoever joins it, on its own thread (see `leader`).
trait Lead<R>: Send + Sync {
    /// Commits `request` in a write group, or hands it back when the log is closed or the
    /// pipeline has batches awaiting their sync or acknowledgement.
    fn lead(&self, request: R) -> Result<(), R>;
}

impl<S, C> Lead<S::Request> for Writer<S, C>
where
    S: Stage,
    C: Completer<Ack = S::Ack>,
{
    fn lead(&self, request: S::Request) -> Result<(), S::Request> {
        self.join_group(request)
    }
}

/// Handle to a running group-commit pipeline.
pub struct GroupCommit<R: Send + 'static> {
    tx: RwLock<Option<tokio::sync::mpsc::Sender<Queued<R>>>>,
    /// Why the writer thread stopped taking requests, if the log is poisoned.
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// `Always` mode: commits blocking appenders' requests in write groups on their own
    /// threads. Dropped at close with the queue, so that the stage and completer go with the
    /// threads.
    leader: RwLock<Option<Arc<dyn Lead<R>>>>,
}

impl<R: Send + 'static> std::fmt::Debug for GroupCommit<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

fn join(threads: Vec<JoinHandle<()>>) {
    for t in threads {
        if t.join().is_err() {
            tracing::error!("a ctxlog log thread panicked");
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap_or_else(|e| panic!("cannot spawn the {name} thread: {e}"))
}

impl<R: Send + 'static> GroupCommit<R> {
    /// Starts the writer thread, and the sync and ack threads the durability mode needs.
    pub fn start<S, C>(log: LogWriter, stage: S, completer: C) -> GroupCommit<R>
    where
        S: Stage<Request = R>,
        C: Completer<Ack = S::Ack>,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(log.config.queue_depth);
        let pipeline_shared = Arc::clone(&log.shared);
        let durability = log.config.durability;
        let pipeline = Arc::new(Pipeline {
            completer: Mutex::new(completer),
            in_flight: AtomicUsize::new(0),
            shared: Arc::clone(&log.shared),
            cohort: Mutex::default(),
        });
        // The sync, ack and writeback threads belong to the writer thread, which joins them
        // at close before it releases the log.
        let mut helpers = Vec::new();
        let to_sync = match durability {
            Durability::Always => {
                let (sync_tx, sync_rx) = mpsc::channel::<Batch<S::Ack>>();
                let (ack_tx, ack_rx) = mpsc::channel();
                let p = Arc::clone(&pipeline);
                helpers.push(spawn("ctxlog-sync", move || sync_loop(&p, sync_rx, ack_tx)));
                let p = Arc::clone(&pipeline);
                helpers.push(spawn("ctxlog-ack", move || ack_loop(p, ack_rx)));
                ToSync::Batches(sync_tx)
            }
            Durability::Batched { .. } | Durability::Never => {
                // `Batched`: every write, synced at most `max_delay` after the first unsynced
                // one. `Never`: every `WRITEBACK_BYTES`, synced at once.
                let (max_delay, every) = match durability {
                    Durability::Batched { max_delay } => (max_delay, 0),
                    _ => (std::time::Duration::ZERO, WRITEBACK_BYTES),
                };
                let (tx, sync_rx) = mpsc::channel::<Written>();
                let shared = Arc::clone(&log.shared);
                helpers.push(spawn("ctxlog-sync", move || {
                    background_sync_loop(shared, sync_rx, max_delay)
                }));
                ToSync::Written { tx, every }
            }
        };
        let leads = matches!(to_sync, ToSync::Batches(_));
        let writer = Arc::new(Writer {
            log: Mutex::new(Log {
                core: Some(Core { log, stage }),
                group: Group::default(),
            }),
            words: Words::default(),
            cohort: Condvar::new(),
            pipeline,
        });
        let leader = leads.then(|| Arc::clone(&writer) as Arc<dyn Lead<R>>);
        let threads = vec![spawn("ctxlog-writer", move || {
            writer_loop(writer, rx, to_sync, helpers)
        })];
        GroupCommit {
            tx: RwLock::new(Some(tx)),
            shared: Arc::clone(&pipeline_shared),
            threads: Mutex::new(threads),
            leader: RwLock::new(leader),
        }
    }

    fn sender(&self) -> Result<tokio::sync::mpsc::Sender<Queued<R>>, WalError> {
        let tx = self.tx.read().unwrap_or_else(|e| e.into_inner());
        tx.clone().ok_or(WalError::Closed)
    }

    /// Queues a request, waiting for room in the queue. Cancel-safe: if this future is dropped,
    /// the request was either queued whole or not at all.
    pub async fn submit(&self, request: R) -> Result<(), WalError> {
        let tx = self.sender()?;
        let task = tokio::task::try_id();
        (tx.send(Queued { request, task }).await).map_err(|_| self.stopped())
    }

    /// Queues a request from a thread that is not running async code. In `Always` mode, unless
    /// the writer thread's batches are in flight, commits it in a write group on this thread
    /// instead: it is then written, synced and completed when this returns.
    pub fn submit_blocking(&self, request: R) -> Result<(), WalError> {
        let leader = (self.leader.read())
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let request = match leader {
            Some(leader) => match leader.lead(request) {
                Ok(()) => return Ok(()),
                Err(request) => request,
            },
            None => request,
        };
        let tx = self.sender()?;
        let queued = Queued {
            request,
            task: None,
        };
        tx.blocking_send(queued).map_err(|_| self.stopped())
    }

    /// What a request gets once the writer thread has stopped: the poison if the log is
    /// poisoned (a failed or panicking storage: the writer thread may have taken the log as it
    /// unwound), else `Closed`.
    fn stopped(&self) -> WalError {
        self.shared.check_poison().err().unwrap_or(WalError::Closed)
    }

    /// Stops taking requests, lets the threads finish everything queued (written, synced,
    /// acknowledged), and waits for them. Idempotent.
    pub fn close(&self) {
        drop(self.tx.write().unwrap_or_else(|e| e.into_inner()).take());
        drop(
            self.leader
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        join(std::mem::take(
            &mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()),
        ));
    }
}

impl<R: Send + 'static> Drop for GroupCommit<R> {
    fn drop(&mut self) {
        self.close();
    }
}

fn publish(shared: &Shared, written: &Written) {
    let mut table = shared.write_table();
    table.visible = Visible {
        last: written.last,
        segment_first: written.segment_first,
        end: written.end,
        chain: written.chain,
    };
}

/// One `fdatasync` for every batch given. Batches written before a rotation were synced by the
/// rotation; the last batch's file holds everything else.
fn sync_batches<A>(shared: &Shared, batches: &[Batch<A>]) -> Result<Option<Written>, WalError> {
    let last_written = batches.iter().rev().find_map(|b| b.written.clone());
    if let Some(w) = &last_written {
        LogWriter::sync(shared, w)?;
    }
    Ok(last_written)
}

/// Publishes and acknowledges synced batches, in order.
fn complete_synced<C: Completer>(
    pipeline: &Pipeline<C>,
    batches: Vec<Batch<C::Ack>>,
    synced: Result<Option<Written>, WalError>,
) {
    if let Ok(Some(w)) = &synced {
        publish(&pipeline.shared, w);
    }
    for batch in batches {
        let result = match (&batch.error, &synced) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(_)) => Ok(Reached::Synced),
        };
        pipeline.complete(batch.acks, result);
    }
}

/// `Batched` and `Never`: acknowledge as written.
fn complete_written<C: Completer>(pipeline: &Pipeline<C>, batch: Batch<C::Ack>) {
    if let Some(w) = &batch.written {
        publish(&pipeline.shared, w);
    }
    let result = match &batch.error {
        Some(e) => Err(e),
        None => Ok(Reached::Written),
    };
    pipeline.complete(batch.acks, result);
}
