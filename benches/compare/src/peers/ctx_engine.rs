#![allow(unused_imports)]
//! Peers: see the parent module.

use super::*;
use crate::common::{key, Payloads, Section, BULK_BATCH, PAYLOAD, RAW_FRAME};
use ctxlog::wal::Durability;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// ctxlog, the engine: open and rebuild the state from 1 M ValueSet events.

pub(super) struct CtxEngine;

/// As benches/engine.rs: 10,000 contexts, 100 keys each, ~200 B values, one event a commit.
pub(super) const CONTEXTS: u64 = 10_000;
pub(super) const KEYS: u64 = 100;

pub(super) fn engine_config(dir: &Path) -> ctxlog::Config {
    let mut c = ctxlog::Config::new(dir);
    c.durability = Durability::Never;
    c.snapshot_every_commits = None;
    c.snapshot_every_bytes = None;
    c
}

pub(super) fn engine_value(i: u64) -> String {
    let mut v = format!("{i:020}");
    v.push_str(&"v".repeat(PAYLOAD - 20 - 3));
    v
}

pub(super) fn engine_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

impl System for CtxEngine {
    /// Fills the store (timed, shown as a note): 10,000 creates, then `n` ValueSet commits
    /// with up to 256 in flight, `Durability::Never`, then close.
    fn bulk(&self, dir: &Path, n: u64, _p: &Payloads) -> Duration {
        use ctxlog::Update;
        let rt = engine_runtime();
        let m = rt
            .block_on(ctxlog::create_manager_with_config(engine_config(dir)))
            .expect("open");
        let t = Section::start();
        rt.block_on(async {
            let mut batch = Update::new();
            for c in 0..CONTEXTS {
                batch = batch.create(format!("ctx-{c:05}"));
                if (c + 1) % 1000 == 0 {
                    m.update(std::mem::take(&mut batch)).await.expect("create");
                }
            }
            let sem = Arc::new(tokio::sync::Semaphore::new(256));
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..n {
                let ctx = format!("ctx-{:05}", i % CONTEXTS);
                let key = format!("k{}", (i / CONTEXTS) % KEYS);
                let u = Update::new()
                    .set(ctx, key, &engine_value(i))
                    .expect("encode");
                let permit = sem.clone().acquire_owned().await.expect("semaphore");
                let m = m.clone();
                tasks.spawn(async move {
                    m.update(u).await.expect("update");
                    drop(permit);
                });
                while tasks.len() > 1024 {
                    tasks.join_next().await;
                }
            }
            while tasks.join_next().await.is_some() {}
            m.close().await.expect("close");
        });
        t.stop()
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let rt = engine_runtime();
        let t = Section::start();
        let m = rt
            .block_on(ctxlog::create_manager_with_config(engine_config(dir)))
            .expect("open");
        let took = t.stop();
        // Events replayed: every ValueSet (plus 10 commits of creates).
        let replayed = m.open_report().replayed;
        black_box(m.list().len());
        rt.block_on(m.close()).expect("close");
        (took, replayed)
    }

    fn open_durable(&self, _dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        unreachable!("ctxlog-engine runs the reopen column only")
    }
}
