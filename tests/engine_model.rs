//! Model-based tests of the engine: random sequences of commits against a plain in-memory
//! model, checked live, after reopen, after crashes, with and without snapshots, and at every
//! past offset.
//!
//! The model is deliberately naive (`BTreeMap`s of JSON values); every rule it encodes is a
//! rule of the public API: which operations fail and with what error, what a restore brings
//! back, what a version is (the offset of the last commit that changed the context).
//!
//! The generator, model and harness are in `engine_model_support`; crashes while commits are
//! in flight are in `engine_model_crash`.

mod engine_model_support;

use engine_model_support::harness::{run_case, CaseStats};
use engine_model_support::steps::step_strategy;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, FileFailurePersistence, TestRunner};
use std::sync::atomic::Ordering;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Live state, reopen, crash images, snapshots and `state_at`, all against the model.
#[test]
fn engine_matches_model() {
    let config = RunnerConfig {
        cases: cases(64),
        max_shrink_iters: 400,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/engine_model.txt",
        ))),
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let stats = CaseStats::default();
    let strategy = prop::collection::vec(step_strategy(), 1..40);
    let result = runner.run(&strategy, |steps| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run_case(steps, &stats))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The sequences are meant to exercise rotation and snapshot loading; make sure they do.
    let (rotated, from_snapshot) = (
        stats.rotated.load(Ordering::Relaxed),
        stats.from_snapshot.load(Ordering::Relaxed),
    );
    assert!(rotated > 0, "no case rotated a segment");
    assert!(from_snapshot > 0, "no case reopened from a snapshot");
}
