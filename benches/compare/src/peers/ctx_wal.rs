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
        Box::new(Wal::open(Arc::new(FsStorage), dir, config).expect("open"))
    }
}
