//! Shared by `engine_errors`, `engine_snapshots` and `engine_compaction`: a store on
//! `MemStorage` with small segments and no automatic snapshots, a state comparison that says
//! what differs, and helpers that fill a store and list its snapshots.

#![allow(dead_code)]

#[path = "../state_diff/mod.rs"]
mod state_diff;

use ctxlog::state::State;
use ctxlog::storage::{MemStorage, Storage};
use ctxlog::{create_manager_with_config, Config, ContextManager, Offset};
use state_diff::state_diff;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn config(mem: &MemStorage) -> Config {
    let mut c = Config::new("store");
    c.storage = Arc::new(mem.clone());
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c.value_bytes_max = 4096;
    c.snapshot_every_commits = None;
    c.snapshot_every_bytes = None;
    c
}

pub async fn open(mem: &MemStorage) -> ContextManager {
    create_manager_with_config(config(mem))
        .await
        .expect("open the store")
}

/// Panics with a short description (not two whole states) if `a != b`.
#[track_caller]
pub fn assert_same(a: &State, b: &State, what: &str) {
    if let Some(d) = state_diff(a, b) {
        panic!("{what}: states differ: {d}");
    }
}

pub fn snapshot_files(mem: &MemStorage) -> Vec<PathBuf> {
    let dir = Path::new("store/snapshots");
    let mut files: Vec<PathBuf> = mem
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".snap"))
        .map(|n| dir.join(n))
        .collect();
    files.sort();
    files
}

/// Fills a store with `n` commits of ~1 KiB (about 60 per 64 KiB segment); returns the state
/// at every offset.
pub async fn fill(m: &ContextManager, n: u64) -> Vec<State> {
    m.create("c").await.unwrap();
    for i in 1..n {
        m.set("c", &format!("k{}", i % 7), &format!("{i:>1000}"))
            .await
            .unwrap();
    }
    let mut at = Vec::new();
    for k in 0..=m.last_offset().0 {
        at.push(m.state_at(Offset(k)).await.unwrap());
    }
    at
}
