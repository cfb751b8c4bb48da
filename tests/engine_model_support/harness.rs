//! Driving the engine: each step run on the engine and on the model, the outcomes compared,
//! and the end-of-case checks.

use super::model::{check_state, failure_of, same_state, Failure, Model};
use super::steps::{COp, Step, Val};
use super::{open, CONTEXTS, KEYS, POINTS};
use ctxlog::error::Error;
use ctxlog::event::Labels;
use ctxlog::state::State;
use ctxlog::storage::{CrashMode, MemStorage, Storage};
use ctxlog::{At, ContextManager, Offset, Op, Receipt, Update};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn engine_op(op: &COp) -> Op {
    match op.clone() {
        COp::Create { name, labels } => Op::Create {
            context: name,
            labels,
        },
        COp::Set { name, key, val } => Op::Set {
            context: name,
            key,
            value: ctxlog::model::Value::encode(&val).expect("encodes"),
        },
        COp::Remove { name, key } => Op::Remove { context: name, key },
        COp::Meta { name, set, removed } => Op::Meta {
            context: name,
            set,
            removed,
        },
        COp::Delete { name } => Op::Delete { context: name },
    }
}

/// Runs a commit; single operations without expectations go through the convenience methods,
/// the rest through `update` (with `Update`'s builder methods where it has one).
pub async fn run_commit(
    m: &ContextManager,
    ops: &[COp],
    expect: &BTreeMap<String, u64>,
) -> Result<Receipt, Error> {
    if let ([op], true) = (ops, expect.is_empty()) {
        return match op {
            COp::Create { name, labels } if labels.is_empty() => m.create(name).await,
            COp::Create { name, labels } => m.create_with_labels(name, labels.clone()).await,
            COp::Set { name, key, val } => m.set(name, key, val).await,
            COp::Remove { name, key } => m.remove(name, key).await,
            COp::Meta { name, set, removed } => {
                m.set_metadata(name, set.clone(), removed.clone()).await
            }
            COp::Delete { name } => m.delete(name).await,
        };
    }
    let mut update = Update::new();
    for op in ops {
        update = match op {
            COp::Create { name, labels } if labels.is_empty() => update.create(name),
            COp::Set { name, key, val } => update.set(name, key, val).expect("encodes"),
            COp::Remove { name, key } => update.remove(name, key),
            COp::Delete { name } => update.delete(name),
            other => update.op(engine_op(other)),
        };
    }
    for (name, &version) in expect {
        update = update.expect(name.clone(), Offset(version));
    }
    m.update(update).await
}

pub struct Harness {
    pub mem: MemStorage,
    pub m: ContextManager,
    pub model: Model,
    /// `history[k]`: the model after commit `k` (`history[0]`: empty).
    pub history: Vec<Model>,
}

impl Harness {
    /// Compares an outcome with the model's prediction and moves the model on.
    fn settle(
        &mut self,
        what: &str,
        before: &State,
        predicted: Result<Model, Failure>,
        outcome: Result<Offset, Error>,
    ) -> Result<(), TestCaseError> {
        let state = self.m.state();
        match (predicted, outcome) {
            (Ok(next), Ok(offset)) => {
                prop_assert_eq!(offset, Offset(next.offset), "{}: offset", what);
                self.model = next;
                self.history.push(self.model.clone());
                prop_assert_eq!(self.history.len() as u64, self.model.offset + 1);
            }
            (Err(want), Err(got)) => {
                prop_assert_eq!(failure_of(&got), want, "{}: error", what);
                same_state(
                    &state,
                    before,
                    &format!("{what}: a refused commit changed the state"),
                )?;
            }
            (Ok(_), Err(got)) => {
                return Err(TestCaseError::fail(format!(
                    "{what}: the model accepts, the engine refused: {got:?}"
                )))
            }
            (Err(want), Ok(offset)) => {
                return Err(TestCaseError::fail(format!(
                    "{what}: the model refuses ({want:?}), the engine committed at {offset}"
                )))
            }
        }
        check_state(&state, &self.model)
    }

    async fn commit(
        &mut self,
        ops: &[COp],
        expect: &BTreeMap<String, u64>,
    ) -> Result<(), TestCaseError> {
        let before = self.m.state();
        let predicted = self.model.commit(ops, expect);
        let outcome = run_commit(&self.m, ops, expect).await;
        if let (Ok(next), Ok(receipt)) = (&predicted, &outcome) {
            prop_assert_eq!(
                &receipt.versions,
                &next.changed_at(next.offset),
                "receipt versions"
            );
        }
        let outcome = outcome.map(|r| r.offset);
        let what = format!("commit {ops:?} expecting {expect:?}");
        self.settle(&what, &before, predicted, outcome)
    }

    async fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let before = self.m.state();
        match step {
            Step::Commit { ops, expect } => {
                let ops = self.model.resolve(ops);
                let expect = self.model.expectations(expect);
                self.commit(&ops, &expect).await?;
            }
            Step::Fill { ctx, count, letter } => {
                let name = self.model.pick_context(*ctx, false);
                if self.model.live(&name).is_none() {
                    let create = COp::Create {
                        name: name.clone(),
                        labels: Labels::new(),
                    };
                    self.commit(&[create], &BTreeMap::new()).await?;
                }
                for i in 0..*count {
                    let name = name.clone();
                    let val = Val::Big(4400, letter.wrapping_add(i)).json();
                    let key = KEYS[0].to_string();
                    self.commit(&[COp::Set { name, key, val }], &BTreeMap::new())
                        .await?;
                }
            }
            Step::Restore { .. } | Step::RestoreBack { .. } => {
                let to = match step {
                    Step::Restore { pct } => u64::from(*pct) * self.model.offset / 255,
                    Step::RestoreBack { back } => self.model.offset.saturating_sub((*back).into()),
                    _ => unreachable!(),
                };
                let predicted = Ok(self.model.restore(&self.history[to as usize]));
                let outcome = self.m.restore(Offset(to)).await.map(|r| r.offset);
                self.settle("restore", &before, predicted, outcome)?;
            }
            Step::RestoreLabel { point } => {
                let label = POINTS[*point];
                let predicted = match self.model.points.get(label) {
                    Some(&to) => Ok(self.model.restore(&self.history[to as usize])),
                    None => Err(Failure::UnknownPoint(label.to_string())),
                };
                let outcome = self
                    .m
                    .restore(At::Label(label.into()))
                    .await
                    .map(|r| r.offset);
                self.settle("restore to a label", &before, predicted, outcome)?;
            }
            Step::Point { point } => {
                let label = POINTS[*point];
                let predicted = match self.model.points.get(label) {
                    Some(&at) => Err(Failure::PointExists(label.to_string(), at)),
                    None => {
                        let mut next = self.model.clone();
                        next.offset += 1;
                        next.points.insert(label.to_string(), next.offset);
                        Ok(next)
                    }
                };
                let outcome = self.m.create_recovery_point(label).await;
                self.settle("recovery point", &before, predicted, outcome)?;
            }
            Step::Snapshot => {
                let at = self.m.snapshot_now().await.expect("snapshot");
                prop_assert_eq!(at, Offset(self.model.offset));
            }
            Step::Crash { seed } => {
                let image = self.mem.crash_image(CrashMode::Torn(*seed));
                let m2 = open(&image).await;
                // Always mode: every acknowledged commit survives, and nothing else was in
                // flight, so the store is exactly the acknowledged prefix.
                check_state(&m2.state(), &self.model)?;
                same_state(&m2.state(), &before, &format!("torn crash image {seed}"))?;
                m2.close().await.expect("close");
            }
            Step::Reopen { kill } => {
                let image = kill.then(|| self.mem.crash_image(CrashMode::ProcessKill));
                self.m.close().await.expect("close");
                if let Some(image) = image {
                    self.mem = image;
                }
                self.m = open(&self.mem).await;
                check_state(&self.m.state(), &self.model)?;
                same_state(&self.m.state(), &before, &format!("reopen (kill: {kill})"))?;
            }
        }
        Ok(())
    }

    /// The checks at the end of a case: the log, every past offset, reopen in every way, and
    /// snapshot-plus-replay against full replay.
    async fn finish(mut self, stats: &CaseStats) -> Result<(), TestCaseError> {
        let n = self.model.offset;
        let m = &self.m;

        // The log holds one record per commit, and each context's history names exactly the
        // commits that touched it.
        let events = m.events(Offset(1)).await.expect("events");
        let offsets: Vec<u64> = events.iter().map(|c| c.offset.0).collect();
        prop_assert_eq!(offsets, (1..=n).collect::<Vec<_>>());
        for name in CONTEXTS {
            let want = self.model.touched.get(name).cloned().unwrap_or_default();
            // A context the store never had has no history: NotFound, not an empty list.
            let history = match m.history(name).await {
                Err(Error::NotFound { .. }) if want.is_empty() => Vec::new(),
                other => other.expect("history"),
            };
            let mut seen: Vec<u64> = history.iter().map(|h| h.offset.0).collect();
            seen.dedup();
            prop_assert_eq!(seen, want, "history of {}", name);
        }
        let past_end = m.state_at(Offset(n + 1)).await;
        prop_assert!(
            matches!(past_end, Err(Error::OffsetOutOfRange { .. })),
            "state_at past the end: {:?}",
            past_end
        );
        if m.log().segments().len() > 1 {
            stats.rotated.fetch_add(1, Ordering::Relaxed);
        }

        // Images of the store as it is now.
        let killed = self.mem.crash_image(CrashMode::ProcessKill);
        let power_lost = self.mem.crash_image(CrashMode::DropUnsynced);
        let no_snapshots = self.mem.crash_image(CrashMode::ProcessKill);
        let snapshot_dir = Path::new("store/snapshots");
        if no_snapshots.exists(snapshot_dir) {
            for name in no_snapshots.list(snapshot_dir).expect("list") {
                no_snapshots
                    .remove(&snapshot_dir.join(name))
                    .expect("remove");
            }
        }

        let last = m.state();
        m.close().await.expect("close");
        let reopened = open(&self.mem).await;
        same_state(&reopened.state(), &last, "close then reopen")?;
        if reopened.open_report().snapshot.is_some() {
            stats.from_snapshot.fetch_add(1, Ordering::Relaxed);
        }
        for (what, image) in [("process kill", killed), ("power loss", power_lost)] {
            let m2 = open(&image).await;
            same_state(&m2.state(), &last, &format!("reopen after a {what}"))?;
            m2.close().await.expect("close");
        }
        let replayed = open(&no_snapshots).await;
        prop_assert_eq!(replayed.open_report().snapshot, None);
        prop_assert_eq!(replayed.open_report().replayed, n);
        same_state(&replayed.state(), &last, "full replay = snapshot + replay")?;

        // Every past offset, from snapshots and replay, and from replay alone.
        for k in 0..=n {
            let at = reopened.state_at(Offset(k)).await.expect("state_at");
            check_state(&at, &self.history[k as usize])
                .map_err(|e| TestCaseError::fail(format!("state_at({k}): {e}")))?;
            let full = replayed.state_at(Offset(k)).await.expect("state_at");
            same_state(
                &at,
                &full,
                &format!("state_at({k}) with and without snapshots"),
            )?;
        }
        for (label, &at) in &self.model.points {
            let by_label = reopened.state_at(label.as_str()).await.expect("state_at");
            prop_assert_eq!(by_label.offset(), Offset(at));
        }
        reopened.close().await.expect("close");
        replayed.close().await.expect("close");
        self.m = reopened;
        Ok(())
    }
}

#[derive(Default)]
pub struct CaseStats {
    pub rotated: AtomicUsize,
    pub from_snapshot: AtomicUsize,
}

pub async fn run_case(steps: Vec<Step>, stats: &CaseStats) -> Result<(), TestCaseError> {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let mut h = Harness {
        mem,
        m,
        model: Model::default(),
        history: vec![Model::default()],
    };
    check_state(&h.m.state(), &h.model)?;
    for (i, step) in steps.iter().enumerate() {
        h.step(step)
            .await
            .map_err(|e| TestCaseError::fail(format!("step {i} {step:?}: {e}")))?;
    }
    h.finish(stats).await
}
