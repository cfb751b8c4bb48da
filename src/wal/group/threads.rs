//! The threads of a group commit: the writer thread (`writer_loop`), which owns the active
//! segment for the queue's requests, and its helpers: in `Always` mode the sync thread
//! (`sync_loop`, which waits for the task cohort) and the ack thread (`ack_loop`); in
//! `Batched` and `Never` modes the background sync or writeback thread
//! (`background_sync_loop`). See the parent module for how they fit together.

use super::{
    complete_synced, complete_written, join, sync_batches, Batch, Completer, Log, Pipeline, Queued,
    Stage, Writer,
};
use crate::wal::shared::Shared;
use crate::wal::writer::{LogWriter, Written};
use crate::wal::WalError;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

/// Where the writer sends what it wrote.
pub(super) enum ToSync<A> {
    /// `Always`: batches to sync, then acknowledge.
    Batches(mpsc::Sender<Batch<A>>),
    /// `Batched` and `Never`: what is written and not yet synced, once `every` bytes were
    /// written since the last one sent (`Batched`: 0, every write).
    Written {
        tx: mpsc::Sender<Written>,
        every: u64,
    },
}

/// `Never` mode: bytes written between two background `fdatasync`s. Without them a bulk load
/// leaves a whole segment dirty in the page cache, and the rotation's `fdatasync` (the one that
/// keeps a crash from tearing a sealed segment) stalls the writer thread while 64 MiB reach the
/// disk (24 ms of every 64 MiB on the bench machine). Syncing as it goes, on another thread,
/// leaves the rotation (and close) only the last few MiB to wait for.
pub(super) const WRITEBACK_BYTES: u64 = 8 << 20;

/// Whether `written` is `every` bytes past the last write sent to the background sync
/// (`sent`: its segment and end).
fn sync_due(sent: &mut (u64, u64), written: &Written, every: u64) -> bool {
    let from = if sent.0 == written.segment_first {
        sent.1
    } else {
        0
    };
    let due = written.end - from >= every;
    if due {
        *sent = (written.segment_first, written.end);
    }
    due
}

/// The writer thread's sync, ack and writeback threads. Stopping them closes the channel to
/// them first and then joins them, once the writer thread leaves its loop, normally or by
/// unwinding (`Drop`): no sync of theirs may run (or poison the log) after the writer thread
/// has released the store, and a panic on it would otherwise detach them.
struct Helpers<A> {
    to_sync: Option<ToSync<A>>,
    threads: Vec<JoinHandle<()>>,
}

impl<A> Helpers<A> {
    fn stop(&mut self) {
        drop(self.to_sync.take());
        join(std::mem::take(&mut self.threads));
    }
}

impl<A> Drop for Helpers<A> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Armed for the writer thread's life: if it unwinds (a bug in a `Stage` or `Completer`, a
/// panicking `Storage`), then, after its helpers are joined (`Helpers`, dropped first), the
/// write group is drained and the log taken as at close, so that no appender can append
/// through the write-group path once `close` returned, and the store's lock goes with it.
struct TakeLogOnUnwind<'a, S: Stage, C: Completer<Ack = S::Ack>>(&'a Writer<S, C>);

impl<S: Stage, C: Completer<Ack = S::Ack>> Drop for TakeLogOnUnwind<'_, S, C> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Caught: a second panic while unwinding (the storage again) would abort.
            let drained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drop(self.0.drain_group().core.take());
            }));
            if drained.is_err() {
                tracing::error!("draining the write group after a writer thread panic panicked");
            }
        }
    }
}

pub(super) fn writer_loop<S: Stage, C: Completer<Ack = S::Ack>>(
    writer: Arc<Writer<S, C>>,
    rx: tokio::sync::mpsc::Receiver<Queued<S::Request>>,
    to_sync: ToSync<S::Ack>,
    threads: Vec<JoinHandle<()>>,
) {
    // Declared first, dropped last: after the helpers are joined.
    let _take_log = TakeLogOnUnwind(&writer);
    let mut helpers = Helpers {
        to_sync: Some(to_sync),
        threads,
    };
    if let Some(to_sync) = &helpers.to_sync {
        write_loop(&writer, rx, to_sync);
    }
    // Closing. First the helper threads finish what they were given (synced, acknowledged).
    helpers.stop();
    // Then commit what a write group has pending, make everything written durable, whatever
    // the mode, and release the log (and with it the store's lock) so that no appender can
    // append any more.
    let core = writer.drain_group().core.take();
    if let Some(mut core) = core {
        if core.log.shared.check_poison().is_ok() {
            if let Err(e) = core.log.flush_and_sync() {
                tracing::error!(error = %e, "final sync at close failed");
            }
        }
    }
}

/// Takes requests until the queue closes (or the sync thread is gone): writes them in
/// batches, and hands each batch on to be synced and acknowledged.
fn write_loop<S: Stage, C: Completer<Ack = S::Ack>>(
    writer: &Writer<S, C>,
    mut rx: tokio::sync::mpsc::Receiver<Queued<S::Request>>,
    to_sync: &ToSync<S::Ack>,
) {
    let pipeline = &writer.pipeline;
    let mut sent_to_sync = (0, 0);
    while let Some(first) = rx.blocking_recv() {
        let mut guard = writer.lock();
        let Log { core, group } = &mut *guard;
        let Some(core) = core.as_mut() else { break };
        let batch_bytes_max = core.log.config.batch_bytes_max;
        // A write group is committing: what is queued joins its pending generation, and this
        // thread waits for it like a blocking appender (see `leader`).
        let joins = group.active();
        let before = if joins { group.enter(None) } else { 0 };
        let mut acks = Vec::new();
        let acks = if joins { group.pending() } else { &mut acks };
        // The tasks of the requests written, for the cohort (`Always`; a request refused at
        // once is answered already, and a group's generation has no cohort of tasks).
        let track = !joins && matches!(to_sync, ToSync::Batches(_));
        let mut tasks = Vec::new();
        let mut next = Some(first);
        while let Some(q) = next {
            let before = acks.len();
            core.take(q.request, acks);
            if track && acks.len() > before {
                tasks.extend(q.task);
            }
            next = (core.log.buffered_bytes() < batch_bytes_max)
                .then(|| rx.try_recv().ok())
                .flatten();
        }
        if joins {
            if let Some(gen) = group.joined(before) {
                writer.await_generation(guard, gen);
            }
            continue;
        }
        let acks = std::mem::take(acks);
        let batch = core.write(acks, tasks);
        let sent = match to_sync {
            ToSync::Batches(tx) => {
                // Alone: nothing else queued, nothing in the pipeline, and no cohort of tasks
                // due back (see `cohort`): the writer syncs and acknowledges itself.
                let now = Instant::now();
                let mut cohort = pipeline.cohort();
                cohort.arrived(&batch.tasks, now);
                let alone = rx.is_empty()
                    && pipeline.in_flight.load(Ordering::Acquire) == 0
                    && !cohort.due(now);
                drop(cohort);
                if alone {
                    pipeline.sync_and_complete(vec![batch]);
                    true
                } else {
                    pipeline.in_flight.fetch_add(1, Ordering::AcqRel);
                    tx.send(batch).is_ok()
                }
            }
            ToSync::Written { tx, every } => {
                let due = (batch.written.as_ref())
                    .filter(|w| sync_due(&mut sent_to_sync, w, *every))
                    .cloned();
                complete_written(pipeline, batch);
                due.is_none_or(|w| tx.send(w).is_ok())
            }
        };
        drop(guard);
        if !sent {
            break;
        }
    }
}

type Synced<A> = (Vec<Batch<A>>, Result<Option<Written>, WalError>);

/// `Always`: takes every batch that has arrived and, while a cohort of tasks is due back (see
/// `cohort`), those that arrive until it is; syncs once, hands them to the ack thread.
pub(super) fn sync_loop<C: Completer>(
    pipeline: &Pipeline<C>,
    rx: mpsc::Receiver<Batch<C::Ack>>,
    acks: mpsc::Sender<Synced<C::Ack>>,
) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        batches.extend(rx.try_iter());
        loop {
            let now = Instant::now();
            let Some(until) = pipeline.cohort().waiting(now) else {
                break;
            };
            match rx.recv_timeout(until.saturating_duration_since(now)) {
                Ok(batch) => {
                    batches.push(batch);
                    batches.extend(rx.try_iter());
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let synced = sync_batches(&pipeline.shared, &batches);
        pipeline.released(&batches, started);
        if acks.send((batches, synced)).is_err() {
            break;
        }
    }
}

/// `Always`: publishes and acknowledges synced batches while the next sync runs.
pub(super) fn ack_loop<C: Completer>(
    pipeline: Arc<Pipeline<C>>,
    rx: mpsc::Receiver<Synced<C::Ack>>,
) {
    while let Ok((batches, synced)) = rx.recv() {
        let n = batches.len();
        complete_synced(&pipeline, batches, synced);
        pipeline.in_flight.fetch_sub(n, Ordering::AcqRel);
    }
}

/// `Batched`: syncs at most `max_delay` after the first unsynced write. `Never`: syncs what
/// the writer sends (`max_delay` zero), the latest of what has arrived when a sync starts.
pub(super) fn background_sync_loop(
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Written>,
    max_delay: std::time::Duration,
) {
    while let Ok(first) = rx.recv() {
        let since = Instant::now();
        let mut latest = first;
        loop {
            match rx.recv_timeout(max_delay.saturating_sub(since.elapsed())) {
                Ok(w) => latest = w,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = LogWriter::sync(&shared, &latest);
    }
}
