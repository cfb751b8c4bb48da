#![allow(unused_imports)]
//! Peers: see the parent module.

use super::*;
use crate::common::{key, Payloads, Section, BULK_BATCH, PAYLOAD, RAW_FRAME};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// ctxlog, through the Wal API.

use ctxlog::storage::FsStorage;
use ctxlog::wal::{Durability, RecordBatch, Wal, WalConfig};

/// Threads calling `append_batch_blocking` in the ctxlog bulk load (as `benches/wal` does).
pub(super) const CTX_BULK_THREADS: usize = 4;

pub(super) struct CtxWal {
    /// `Durability::Always` for the durable cases (false: `Never`, a diagnostic).
    pub(super) sync: bool,
    /// Durable appends from tokio tasks (`Wal::append().await`) instead of threads.
    pub(super) tasks: bool,
}

impl Appender for Wal {
    fn append(&self, _thread: usize, _seq: u64, payload: &[u8; PAYLOAD]) {
        self.append_blocking(payload.to_vec()).expect("append");
    }
}

impl System for CtxWal {
    /// `Wal::append_batch_blocking` with [`BULK_BATCH`] records per call from
    /// [`CTX_BULK_THREADS`] threads (the writer thread is pipelined: one caller alone would
    /// wait for every batch's write), `Durability::Never`, then `close`, which writes and
    /// syncs what is left: the bulk load's sync.
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        let config = WalConfig {
            durability: Durability::Never,
            ..WalConfig::default()
        };
        let wal = Wal::open(Arc::new(FsStorage), dir, config).expect("open");
        let batches = n.div_ceil(BULK_BATCH as u64);
        let next = AtomicU64::new(0);
        let t = Section::start();
        std::thread::scope(|s| {
            for _ in 0..CTX_BULK_THREADS {
                s.spawn(|| loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        break;
                    }
                    let first = b * BULK_BATCH as u64;
                    let last = (first + BULK_BATCH as u64).min(n);
                    let mut batch = RecordBatch::with_capacity(BULK_BATCH, BULK_BATCH * PAYLOAD);
                    for i in first..last {
                        batch.push(&p.get(i));
                    }
                    wal.append_batch_blocking(batch).expect("append batch");
                });
            }
        });
        wal.close();
        t.stop()
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let t = Section::start();
        let wal = Wal::open(Arc::new(FsStorage), dir, WalConfig::default()).expect("reopen");
        let mut count = 0u64;
        wal.reader()
            .scan(ctxlog::Offset(1), ctxlog::Offset(u64::MAX), |r| {
                black_box(r.payload);
                count += 1;
                std::ops::ControlFlow::Continue(())
            })
            .expect("scan");
        let took = t.stop();
        wal.close();
        (took, count)
    }

    fn open_durable(&self, dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        let config = WalConfig {
            durability: if self.sync {
                Durability::Always
            } else {
                Durability::Never
            },
            ..WalConfig::default()
        };
        let wal = Wal::open(Arc::new(FsStorage), dir, config).expect("open");
        if !self.tasks {
            return Box::new(wal);
        }
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Box::new(TaskAppender {
            wal: Arc::new(wal),
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .build()
                .expect("runtime"),
            payloads: Arc::new(Payloads::new()),
        })
    }
}

/// Durable appends from tokio tasks on a multi-thread runtime with one worker per CPU: the
/// group cases run one task per writer instead of one thread.
pub(super) struct TaskAppender {
    /// Dropped (closed) before the runtime: fields drop in order, and every task holding a
    /// clone was joined.
    wal: Arc<Wal>,
    runtime: tokio::runtime::Runtime,
    /// The tasks' own copy of the (deterministic) payload pool: a spawned task outlives the
    /// harness's borrow.
    payloads: Arc<Payloads>,
}

impl Appender for TaskAppender {
    fn append(&self, _thread: usize, _seq: u64, payload: &[u8; PAYLOAD]) {
        let append = self.wal.append(payload.to_vec());
        self.runtime.block_on(append).expect("append");
    }

    fn run_group(&self, dur: Duration, next_seq: &mut [u64]) -> Option<(Duration, u64)> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let t = Section::start();
        let tasks: Vec<_> = next_seq
            .iter()
            .map(|&first| {
                let (wal, payloads, stop) = (self.wal.clone(), self.payloads.clone(), stop.clone());
                self.runtime.spawn(async move {
                    let mut seq = first;
                    while !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        wal.append(payloads.get(seq).to_vec())
                            .await
                            .expect("append");
                    }
                    seq
                })
            })
            .collect();
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for (task, seq) in tasks.into_iter().zip(next_seq.iter_mut()) {
            let last = self.runtime.block_on(task).expect("task");
            total += last - *seq;
            *seq = last;
        }
        Some((t.stop(), total))
    }
}
