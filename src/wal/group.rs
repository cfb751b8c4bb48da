//! Group commit: one writer thread owns the active segment, one completion thread syncs and
//! acknowledges.
//!
//! Appenders hand their request to the writer through a bounded queue and wait for an
//! acknowledgement. The writer drains everything pending, lets the [`Stage`] turn each request
//! into records (or reject it), writes the batch with one write, and passes it on. The
//! completion thread takes every batch that has arrived, issues one `fdatasync` for all of them
//! and acknowledges them in order. Because the writer does not wait for that sync, the next
//! batch is gathered and written while the current one syncs: under load each sync serves the
//! records of every writer that arrived meanwhile, well past the N/2 records per sync that a
//! writer waiting on its own sync gets.

use super::shared::{Shared, Visible};
use super::writer::{LogWriter, Written};
use super::{Durability, Reached, WalError};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

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
}

/// Handle to a running group-commit pipeline.
pub struct GroupCommit<R: Send + 'static> {
    tx: Mutex<Option<tokio::sync::mpsc::Sender<R>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl<R: Send + 'static> std::fmt::Debug for GroupCommit<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<R: Send + 'static> GroupCommit<R> {
    /// Starts the writer and completion threads.
    pub fn start<S, C>(log: LogWriter, stage: S, completer: C) -> GroupCommit<R>
    where
        S: Stage<Request = R>,
        C: Completer<Ack = S::Ack>,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(log.config.queue_depth);
        let (done_tx, done_rx) = mpsc::channel::<Batch<S::Ack>>();
        let durability = log.config.durability;
        let shared = Arc::clone(&log.shared);
        let writer = std::thread::Builder::new()
            .name("ctxlog-writer".into())
            .spawn(move || writer_loop(log, stage, rx, done_tx))
            .unwrap_or_else(|e| panic!("cannot spawn the ctxlog writer thread: {e}"));
        let completion = std::thread::Builder::new()
            .name("ctxlog-sync".into())
            .spawn(move || completion_loop(shared, completer, done_rx, durability))
            .unwrap_or_else(|e| panic!("cannot spawn the ctxlog sync thread: {e}"));
        GroupCommit {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(vec![writer, completion]),
        }
    }

    fn sender(&self) -> Result<tokio::sync::mpsc::Sender<R>, WalError> {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        tx.clone().ok_or(WalError::Closed)
    }

    /// Queues a request, waiting for room in the queue. Cancel-safe: if this future is dropped,
    /// the request was either queued whole or not at all.
    pub async fn submit(&self, request: R) -> Result<(), WalError> {
        let tx = self.sender()?;
        tx.send(request).await.map_err(|_| WalError::Closed)
    }

    /// Queues a request from a thread that is not running async code.
    pub fn submit_blocking(&self, request: R) -> Result<(), WalError> {
        let tx = self.sender()?;
        tx.blocking_send(request).map_err(|_| WalError::Closed)
    }

    /// Stops taking requests, lets the threads finish everything queued (written, synced,
    /// acknowledged), and waits for them. Idempotent.
    pub fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a ctxlog log thread panicked");
            }
        }
    }
}

impl<R: Send + 'static> Drop for GroupCommit<R> {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_loop<S: Stage>(
    mut log: LogWriter,
    mut stage: S,
    mut rx: tokio::sync::mpsc::Receiver<S::Request>,
    done: mpsc::Sender<Batch<S::Ack>>,
) {
    let batch_bytes_max = log.config.batch_bytes_max;
    while let Some(first) = rx.blocking_recv() {
        let mut acks = Vec::new();
        let mut take = |request, log: &mut LogWriter, acks: &mut Vec<S::Ack>| match log
            .shared
            .check_poison()
        {
            Err(e) => stage.refuse(request, e),
            Ok(()) => acks.extend(stage.prepare(request, log)),
        };
        take(first, &mut log, &mut acks);
        while log.buffered_bytes() < batch_bytes_max {
            match rx.try_recv() {
                Ok(request) => take(request, &mut log, &mut acks),
                Err(_) => break,
            }
        }
        let (written, error) = match log.flush() {
            Ok(w) => (w, None),
            Err(e) => (None, Some(e)),
        };
        // The poison of a failed rotation or write reaches the acks of this batch too.
        let error = error.or_else(|| log.shared.check_poison().err());
        if done
            .send(Batch {
                written,
                acks,
                error,
            })
            .is_err()
        {
            break;
        }
    }
    // Closing: make everything written durable, whatever the mode.
    if log.shared.check_poison().is_ok() {
        if let Err(e) = log.flush_and_sync() {
            tracing::error!(error = %e, "final sync at close failed");
        }
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

fn completion_loop<C: Completer>(
    shared: Arc<Shared>,
    mut completer: C,
    rx: mpsc::Receiver<Batch<C::Ack>>,
    durability: Durability,
) {
    let mut unsynced: Option<(Written, Instant)> = None;
    loop {
        let first = match (&unsynced, durability) {
            (Some((_, since)), Durability::Batched { max_delay }) => {
                let wait = max_delay.saturating_sub(since.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(b) => Some(b),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            _ => match rx.recv() {
                Ok(b) => Some(b),
                Err(_) => break,
            },
        };
        let mut batches: Vec<Batch<C::Ack>> = first.into_iter().collect();
        batches.extend(rx.try_iter());
        match durability {
            Durability::Always => complete_synced(&shared, &mut completer, batches),
            Durability::Batched { max_delay } => {
                complete_written(&shared, &mut completer, batches, &mut unsynced);
                if let Some((w, since)) = &unsynced {
                    if since.elapsed() >= max_delay {
                        let _ = LogWriter::sync(&shared, w);
                        unsynced = None;
                    }
                }
            }
            Durability::Never => {
                complete_written(&shared, &mut completer, batches, &mut unsynced);
            }
        }
    }
}

/// `Always`: one `fdatasync` for every batch gathered, then acknowledge them all.
fn complete_synced<C: Completer>(shared: &Shared, completer: &mut C, batches: Vec<Batch<C::Ack>>) {
    // Batches written before a rotation were synced by the rotation; the last batch's file
    // holds everything else.
    let last_written = batches.iter().rev().find_map(|b| b.written.clone());
    let synced = match &last_written {
        Some(w) => LogWriter::sync(shared, w),
        None => Ok(()),
    };
    if let (Ok(()), Some(w)) = (&synced, &last_written) {
        publish(shared, w);
    }
    for batch in batches {
        let result = match (&batch.error, &synced) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(Reached::Synced),
        };
        completer.complete(batch.acks, result);
    }
}

/// `Batched` and `Never`: acknowledge as written; remember what is unsynced.
fn complete_written<C: Completer>(
    shared: &Shared,
    completer: &mut C,
    batches: Vec<Batch<C::Ack>>,
    unsynced: &mut Option<(Written, Instant)>,
) {
    for batch in batches {
        if let Some(w) = &batch.written {
            publish(shared, w);
            let since = unsynced.as_ref().map_or_else(Instant::now, |(_, t)| *t);
            *unsynced = Some((w.clone(), since));
        }
        let result = match &batch.error {
            Some(e) => Err(e),
            None => Ok(Reached::Written),
        };
        completer.complete(batch.acks, result);
    }
}
