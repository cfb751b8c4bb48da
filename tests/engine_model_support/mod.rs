//! Shared by `engine_model` (the model-based property) and `engine_model_crash` (crashes while
//! commits are in flight): the store configuration, and the generator, model and harness the
//! property runs.

#![allow(dead_code)]

pub mod harness;
pub mod model;
#[path = "../state_diff/mod.rs"]
mod state_diff;
pub mod steps;

use ctxlog::storage::MemStorage;
use ctxlog::{create_manager_with_config, Config, ContextManager};
use std::sync::Arc;

pub const CONTEXTS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
pub const KEYS: [&str; 3] = ["k0", "k1", "k2"];
pub const LABELS: [&str; 3] = ["env", "team", "tier"];
pub const POINTS: [&str; 3] = ["p0", "p1", "p2"];

/// Small segments and frequent snapshots, so that rotation and snapshots happen within a
/// few dozen commits. The largest possible commit (a restore of 4 contexts x 3 keys of
/// 4500-byte values) stays below `record_bytes_max`.
pub fn config(mem: &MemStorage) -> Config {
    let mut c = Config::new("store");
    c.storage = Arc::new(mem.clone());
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 60 * 1024;
    c.value_bytes_max = 8 * 1024;
    c.snapshot_every_commits = Some(7);
    c.snapshots_kept = 4;
    c
}

pub async fn open(mem: &MemStorage) -> ContextManager {
    create_manager_with_config(config(mem))
        .await
        .expect("open the store")
}
