//! Model-based tests of the engine: random sequences of commits against a plain in-memory
//! model, checked live, after reopen, after crashes, with and without snapshots, and at every
//! past offset.
//!
//! The model is deliberately naive (`BTreeMap`s of JSON values); every rule it encodes is a
//! rule of the public API: which operations fail and with what error, what a restore brings
//! back, what a version is (the offset of the last commit that changed the context).

use ctxlog::error::Error;
use ctxlog::event::Labels;
use ctxlog::state::State;
use ctxlog::storage::{CrashMode, MemStorage, Storage};
use ctxlog::{
    create_manager_with_config, At, Config, ContextManager, Durability, Offset, Op, Receipt, Update,
};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as RunnerConfig, FileFailurePersistence, TestCaseError, TestRunner,
};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CONTEXTS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
const KEYS: [&str; 3] = ["k0", "k1", "k2"];
const LABELS: [&str; 3] = ["env", "team", "tier"];
const POINTS: [&str; 3] = ["p0", "p1", "p2"];

/// Small segments and frequent snapshots, so that rotation and snapshots happen within a
/// few dozen commits. The largest possible commit (a restore of 4 contexts x 3 keys of
/// 4500-byte values) stays below `record_bytes_max`.
fn config(mem: &MemStorage) -> Config {
    let mut c = Config::new("store");
    c.storage = Arc::new(mem.clone());
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 60 * 1024;
    c.value_bytes_max = 8 * 1024;
    c.snapshot_every_commits = Some(7);
    c.snapshots_kept = 4;
    c
}

async fn open(mem: &MemStorage) -> ContextManager {
    create_manager_with_config(config(mem))
        .await
        .expect("open the store")
}

// ---------------------------------------------------------------------------------------------
// What the generator produces
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Val {
    Int(i64),
    Text(String),
    Obj(i64, Vec<bool>),
    /// A long string (length, fill letter): makes segments rotate.
    Big(u16, u8),
}

impl Val {
    fn json(&self) -> Json {
        match self {
            Val::Int(n) => json!(n),
            Val::Text(s) => json!(s),
            Val::Obj(n, flags) => json!({ "n": n, "flags": flags }),
            Val::Big(len, c) => {
                let letter = char::from(b'a' + c % 26);
                json!(std::iter::repeat_n(letter, usize::from(*len)).collect::<String>())
            }
        }
    }
}

/// Which context (or key) an operation is about, resolved against the model when the step
/// runs: usually one for which the operation can succeed (a live context to set, an absent one
/// to create, an existing key to remove), sometimes (`raw`) a fixed name whatever its state,
/// so that operations that must fail are generated too.
#[derive(Debug, Clone, Copy)]
struct Target {
    idx: usize,
    raw: bool,
}

#[derive(Debug, Clone)]
enum GenOp {
    Create {
        ctx: Target,
        labels: Vec<(usize, u8)>,
    },
    Set {
        ctx: Target,
        key: usize,
        val: Val,
    },
    Remove {
        ctx: Target,
        key: Target,
    },
    Meta {
        ctx: Target,
        set: Vec<(usize, u8)>,
        removed: Vec<usize>,
    },
    Delete {
        ctx: Target,
    },
}

/// An operation with names resolved: what the model and the engine both run.
#[derive(Debug, Clone)]
enum COp {
    Create {
        name: String,
        labels: Labels,
    },
    Set {
        name: String,
        key: String,
        val: Json,
    },
    Remove {
        name: String,
        key: String,
    },
    Meta {
        name: String,
        set: Labels,
        removed: Vec<String>,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Clone)]
enum Expect {
    /// The context's actual version.
    Right(usize),
    /// Some other version: the commit must fail with `VersionConflict` and write nothing.
    Stale(usize, u8),
}

#[derive(Debug, Clone)]
enum Step {
    Commit {
        ops: Vec<GenOp>,
        expect: Vec<Expect>,
    },
    /// `count` commits, each setting key `k0` of one live context (created first if there is
    /// none) to a 4400-byte value: makes segments rotate.
    Fill {
        ctx: Target,
        count: u8,
        letter: u8,
    },
    /// Restore to offset `pct * last / 255`.
    Restore {
        pct: u8,
    },
    /// Restore to `back` commits ago.
    RestoreBack {
        back: u8,
    },
    /// Restore to a recovery point (which may not exist).
    RestoreLabel {
        point: usize,
    },
    Point {
        point: usize,
    },
    Snapshot,
    /// Power loss (torn) right after the last acknowledgement: reopen a copy.
    Crash {
        seed: u64,
    },
    /// Close and reopen (`kill`: continue on the image a process kill leaves instead).
    Reopen {
        kill: bool,
    },
}

fn target_strategy() -> impl Strategy<Value = Target> + Clone {
    (0..12usize, prop::bool::weighted(0.1)).prop_map(|(idx, raw)| Target { idx, raw })
}

fn labels_strategy() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((0..LABELS.len(), 0u8..4), 0..3)
}

fn val_strategy() -> impl Strategy<Value = Val> {
    prop_oneof![
        3 => any::<i64>().prop_map(Val::Int),
        2 => "[a-z ]{0,12}".prop_map(Val::Text),
        1 => (any::<i64>(), prop::collection::vec(any::<bool>(), 0..4))
            .prop_map(|(n, f)| Val::Obj(n, f)),
        3 => (1500u16..4500, any::<u8>()).prop_map(|(n, c)| Val::Big(n, c)),
    ]
}

fn op_strategy() -> impl Strategy<Value = GenOp> {
    let ctx = target_strategy();
    prop_oneof![
        4 => (ctx.clone(), labels_strategy())
            .prop_map(|(ctx, labels)| GenOp::Create { ctx, labels }),
        6 => (ctx.clone(), 0..KEYS.len(), val_strategy())
            .prop_map(|(ctx, key, val)| GenOp::Set { ctx, key, val }),
        2 => (ctx.clone(), target_strategy()).prop_map(|(ctx, key)| GenOp::Remove { ctx, key }),
        2 => (
            ctx.clone(),
            labels_strategy(),
            prop::collection::vec(0..LABELS.len(), 0..2)
        )
            .prop_map(|(ctx, set, removed)| GenOp::Meta { ctx, set, removed }),
        1 => ctx.prop_map(|ctx| GenOp::Delete { ctx }),
    ]
}

fn expect_strategy() -> impl Strategy<Value = Vec<Expect>> {
    let one = prop_oneof![
        3 => (0..CONTEXTS.len()).prop_map(Expect::Right),
        1 => (0..CONTEXTS.len(), any::<u8>()).prop_map(|(c, d)| Expect::Stale(c, d)),
    ];
    prop_oneof![
        2 => Just(Vec::new()),
        1 => prop::collection::vec(one, 1..=2),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        14 => (prop::collection::vec(op_strategy(), 1..=3), expect_strategy())
            .prop_map(|(ops, expect)| Step::Commit { ops, expect }),
        2 => (target_strategy(), 3u8..10, any::<u8>())
            .prop_map(|(ctx, count, letter)| Step::Fill { ctx, count, letter }),
        1 => any::<u8>().prop_map(|pct| Step::Restore { pct }),
        2 => (0u8..8).prop_map(|back| Step::RestoreBack { back }),
        1 => (0..POINTS.len()).prop_map(|point| Step::RestoreLabel { point }),
        2 => (0..POINTS.len()).prop_map(|point| Step::Point { point }),
        1 => Just(Step::Snapshot),
        1 => any::<u64>().prop_map(|seed| Step::Crash { seed }),
        1 => any::<bool>().prop_map(|kill| Step::Reopen { kill }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct ModelContext {
    values: BTreeMap<String, Json>,
    labels: BTreeMap<String, String>,
    deleted: bool,
    version: u64,
}

#[derive(Debug, Clone, Default)]
struct Model {
    /// Every context ever created, deleted ones included.
    contexts: BTreeMap<String, ModelContext>,
    points: BTreeMap<String, u64>,
    offset: u64,
    /// Offsets of the commits that hold an event about each context (what `history` returns).
    touched: BTreeMap<String, Vec<u64>>,
}

/// Why a commit was refused, as the model predicts it and as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    Conflict {
        context: String,
        expected: u64,
        actual: u64,
    },
    NotFound(String),
    AlreadyExists(String),
    KeyNotFound(String, String),
    UnknownPoint(String),
    PointExists(String, u64),
    /// Anything the model never predicts.
    Other(String),
}

fn failure_of(e: &Error) -> Failure {
    match e {
        Error::VersionConflict {
            context,
            expected,
            actual,
        } => Failure::Conflict {
            context: context.clone(),
            expected: expected.0,
            actual: actual.0,
        },
        Error::NotFound { context } => Failure::NotFound(context.clone()),
        Error::AlreadyExists { context } => Failure::AlreadyExists(context.clone()),
        Error::KeyNotFound { context, key } => Failure::KeyNotFound(context.clone(), key.clone()),
        Error::UnknownRecoveryPoint { label } => Failure::UnknownPoint(label.clone()),
        Error::RecoveryPointExists { label, offset } => {
            Failure::PointExists(label.clone(), offset.0)
        }
        other => Failure::Other(format!("{other:?}")),
    }
}

fn label_map(pairs: &[(usize, u8)]) -> Labels {
    pairs
        .iter()
        .map(|&(l, v)| (LABELS[l].to_string(), format!("v{v}")))
        .collect()
}

impl Model {
    fn live(&self, name: &str) -> Option<&ModelContext> {
        self.contexts.get(name).filter(|c| !c.deleted)
    }

    fn live_mut(&mut self, name: &str) -> Result<&mut ModelContext, Failure> {
        self.contexts
            .get_mut(name)
            .filter(|c| !c.deleted)
            .ok_or_else(|| Failure::NotFound(name.to_string()))
    }

    fn version(&self, name: &str) -> u64 {
        self.contexts.get(name).map_or(0, |c| c.version)
    }

    fn touch(&mut self, name: &str, offset: u64) {
        let offsets = self.touched.entry(name.to_string()).or_default();
        if offsets.last() != Some(&offset) {
            offsets.push(offset);
        }
    }

    /// The expected versions an `Expect` list stands for, given this model.
    fn expectations(&self, expect: &[Expect]) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for e in expect {
            let (name, version) = match *e {
                Expect::Right(c) => (CONTEXTS[c], self.version(CONTEXTS[c])),
                Expect::Stale(c, d) => {
                    let actual = self.version(CONTEXTS[c]);
                    let stale = if d % 2 == 0 && actual > 0 {
                        actual - 1 - u64::from(d) % actual
                    } else {
                        actual + 1 + u64::from(d)
                    };
                    (CONTEXTS[c], stale)
                }
            };
            out.insert(name.to_string(), version);
        }
        out
    }

    /// Resolves a target to a live context (an absent one if `absent`).
    fn pick_context(&self, t: Target, absent: bool) -> String {
        let fits: Vec<&str> = CONTEXTS
            .into_iter()
            .filter(|c| self.live(c).is_some() != absent)
            .collect();
        if t.raw || fits.is_empty() {
            CONTEXTS[t.idx % CONTEXTS.len()].to_string()
        } else {
            fits[t.idx % fits.len()].to_string()
        }
    }

    /// Resolves a target to an existing key of `name`.
    fn pick_key(&self, name: &str, t: Target) -> String {
        let keys: Vec<&String> = self
            .live(name)
            .map(|c| c.values.keys().collect())
            .unwrap_or_default();
        if t.raw || keys.is_empty() {
            KEYS[t.idx % KEYS.len()].to_string()
        } else {
            keys[t.idx % keys.len()].clone()
        }
    }

    /// Resolves the names of a generated batch, each operation against the model as the
    /// operations before it in the batch leave it.
    fn resolve(&self, ops: &[GenOp]) -> Vec<COp> {
        let mut scratch = self.clone();
        let mut out = Vec::new();
        for op in ops {
            let cop = match op {
                GenOp::Create { ctx, labels } => COp::Create {
                    name: scratch.pick_context(*ctx, true),
                    labels: label_map(labels),
                },
                GenOp::Set { ctx, key, val } => COp::Set {
                    name: scratch.pick_context(*ctx, false),
                    key: KEYS[*key].to_string(),
                    val: val.json(),
                },
                GenOp::Remove { ctx, key } => {
                    let name = scratch.pick_context(*ctx, false);
                    let key = scratch.pick_key(&name, *key);
                    COp::Remove { name, key }
                }
                GenOp::Meta { ctx, set, removed } => COp::Meta {
                    name: scratch.pick_context(*ctx, false),
                    set: label_map(set),
                    removed: removed.iter().map(|&l| LABELS[l].to_string()).collect(),
                },
                GenOp::Delete { ctx } => COp::Delete {
                    name: scratch.pick_context(*ctx, false),
                },
            };
            // A failure fails the whole commit anyway; later operations resolve regardless.
            let _ = scratch.apply(&cop, self.offset + 1);
            out.push(cop);
        }
        out
    }

    /// The model after a user commit, or why the engine must refuse it.
    fn commit(&self, ops: &[COp], expect: &BTreeMap<String, u64>) -> Result<Model, Failure> {
        for (name, &expected) in expect {
            let actual = self.version(name);
            if actual != expected {
                return Err(Failure::Conflict {
                    context: name.clone(),
                    expected,
                    actual,
                });
            }
        }
        let offset = self.offset + 1;
        let mut next = self.clone();
        for op in ops {
            next.apply(op, offset)?;
        }
        next.offset = offset;
        Ok(next)
    }

    fn apply(&mut self, op: &COp, offset: u64) -> Result<(), Failure> {
        let name = match op {
            COp::Create { name, labels } => {
                if self.live(name).is_some() {
                    return Err(Failure::AlreadyExists(name.clone()));
                }
                let fresh = ModelContext {
                    values: BTreeMap::new(),
                    labels: labels.clone(),
                    deleted: false,
                    version: offset,
                };
                self.contexts.insert(name.clone(), fresh);
                name
            }
            COp::Set { name, key, val } => {
                let c = self.live_mut(name)?;
                c.values.insert(key.clone(), val.clone());
                c.version = offset;
                name
            }
            COp::Remove { name, key } => {
                let c = self.live_mut(name)?;
                if c.values.remove(key).is_none() {
                    return Err(Failure::KeyNotFound(name.clone(), key.clone()));
                }
                c.version = offset;
                name
            }
            COp::Meta { name, set, removed } => {
                let c = self.live_mut(name)?;
                c.labels.extend(set.clone());
                for l in removed {
                    c.labels.remove(l);
                }
                c.version = offset;
                name
            }
            COp::Delete { name } => {
                let c = self.live_mut(name)?;
                c.values.clear();
                c.labels.clear();
                c.deleted = true;
                c.version = offset;
                name
            }
        };
        self.touch(name, offset);
        Ok(())
    }

    /// The model after a restore to `target` (the model as of an earlier offset): every context
    /// whose content differs is brought back (or deleted), in one commit.
    fn restore(&self, target: &Model) -> Model {
        let offset = self.offset + 1;
        let mut next = self.clone();
        let names: std::collections::BTreeSet<&String> =
            self.contexts.keys().chain(target.contexts.keys()).collect();
        for name in names {
            let want = target.live(name);
            let differs = match (self.live(name), want) {
                (None, None) => false,
                (Some(c), Some(w)) => c.values != w.values || c.labels != w.labels,
                _ => true,
            };
            if !differs {
                continue;
            }
            match want {
                Some(w) => {
                    let back = ModelContext {
                        values: w.values.clone(),
                        labels: w.labels.clone(),
                        deleted: false,
                        version: offset,
                    };
                    next.contexts.insert(name.clone(), back);
                }
                None => {
                    let c = next.contexts.get_mut(name).expect("a live context");
                    c.values.clear();
                    c.labels.clear();
                    c.deleted = true;
                    c.version = offset;
                }
            }
            next.touch(name, offset);
        }
        next.offset = offset;
        next
    }

    /// The contexts a commit to this model changed (what its receipt lists).
    fn changed_at(&self, offset: u64) -> BTreeMap<String, Offset> {
        self.contexts
            .iter()
            .filter(|(_, c)| c.version == offset)
            .map(|(n, _)| (n.clone(), Offset(offset)))
            .collect()
    }
}

/// Asserts that an engine state is the model: offset, every context (deleted ones too), their
/// values, labels and versions, and the recovery points.
fn check_state(state: &State, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(state.offset(), Offset(model.offset));
    let names: Vec<&str> = state.all_contexts().map(|(n, _)| n).collect();
    let want: Vec<&str> = model.contexts.keys().map(String::as_str).collect();
    prop_assert_eq!(names, want, "contexts ever created");
    let live: Vec<&str> = state.contexts().map(|(n, _)| n).collect();
    let want_live: Vec<&str> = model
        .contexts
        .iter()
        .filter(|(_, c)| !c.deleted)
        .map(|(n, _)| n.as_str())
        .collect();
    prop_assert_eq!(live, want_live, "live contexts");
    for name in CONTEXTS {
        prop_assert_eq!(
            state.version(name),
            Offset(model.version(name)),
            "version of {}",
            name
        );
    }
    for (name, mc) in &model.contexts {
        let c = state.context_any(name).expect("listed above");
        prop_assert_eq!(c.is_deleted(), mc.deleted, "deleted flag of {}", name);
        prop_assert_eq!(state.context(name).is_none(), mc.deleted);
        let values: BTreeMap<String, Json> = c
            .values()
            .map(|(k, v)| (k.to_string(), v.decode::<Json>().expect("decodes")))
            .collect();
        prop_assert_eq!(&values, &mc.values, "values of {}", name);
        prop_assert_eq!(&c.labels(), &mc.labels, "labels of {}", name);
    }
    let points: BTreeMap<String, Offset> = model
        .points
        .iter()
        .map(|(l, &o)| (l.clone(), Offset(o)))
        .collect();
    prop_assert_eq!(state.recovery_points(), points);
    Ok(())
}

/// Full equality of two states (timestamps, adapter state, everything), reported briefly.
fn same_state(a: &State, b: &State, what: &str) -> Result<(), TestCaseError> {
    if a == b {
        return Ok(());
    }
    let names: std::collections::BTreeSet<&str> = a
        .all_contexts()
        .chain(b.all_contexts())
        .map(|(n, _)| n)
        .collect();
    let differ: Vec<&str> = names
        .into_iter()
        .filter(|n| a.context_any(n) != b.context_any(n))
        .collect();
    Err(TestCaseError::fail(format!(
        "{what}: states differ: offsets {} / {}, contexts {differ:?}, points {:?} / {:?}",
        a.offset(),
        b.offset(),
        a.recovery_points(),
        b.recovery_points()
    )))
}

// ---------------------------------------------------------------------------------------------
// Driving the engine
// ---------------------------------------------------------------------------------------------

fn engine_op(op: &COp) -> Op {
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
async fn run_commit(
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

struct Harness {
    mem: MemStorage,
    m: ContextManager,
    model: Model,
    /// `history[k]`: the model after commit `k` (`history[0]`: empty).
    history: Vec<Model>,
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
struct CaseStats {
    rotated: AtomicUsize,
    from_snapshot: AtomicUsize,
}

async fn run_case(steps: Vec<Step>, stats: &CaseStats) -> Result<(), TestCaseError> {
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

// ---------------------------------------------------------------------------------------------
// Crashes while commits are in flight
// ---------------------------------------------------------------------------------------------

const IN_FLIGHT_COMMITS: u64 = 260;
const IN_FLIGHT_CONTEXTS: [&str; 3] = ["c0", "c1", "c2"];

type Contents = BTreeMap<String, BTreeMap<String, Json>>;

/// The commit at `offset` of the in-flight workload, applied to `model` (and run on `m` if
/// given). Offsets 1-3 create the contexts; every 10th commit sets a key of two contexts in one
/// batch; the others set one key to a ~700-byte value, so that segments rotate.
async fn in_flight_commit(offset: u64, model: &mut Contents, m: Option<&ContextManager>) {
    if offset <= 3 {
        let name = IN_FLIGHT_CONTEXTS[offset as usize - 1];
        model.insert(name.to_string(), BTreeMap::new());
        if let Some(m) = m {
            let r = m.create(name).await.expect("create");
            assert_eq!(r.offset, Offset(offset));
        }
    } else if offset.is_multiple_of(10) {
        for name in ["c0", "c1"] {
            model
                .get_mut(name)
                .expect("created")
                .insert("batch".into(), json!(offset));
        }
        if let Some(m) = m {
            let update = Update::new()
                .set("c0", "batch", &offset)
                .and_then(|u| u.set("c1", "batch", &offset))
                .expect("encodes");
            let r = m.update(update).await.expect("update");
            assert_eq!(r.offset, Offset(offset));
        }
    } else {
        let name = IN_FLIGHT_CONTEXTS[(offset % 3) as usize];
        let key = format!("k{}", offset % 5);
        let value = json!({ "o": offset, "pad": "x".repeat(700) });
        model
            .get_mut(name)
            .expect("created")
            .insert(key.clone(), value.clone());
        if let Some(m) = m {
            let r = m.set(name, &key, &value).await.expect("set");
            assert_eq!(r.offset, Offset(offset));
        }
    }
}

fn contents(state: &State) -> Contents {
    state
        .contexts()
        .map(|(n, c)| {
            let values = c
                .values()
                .map(|(k, v)| (k.to_string(), v.decode::<Json>().expect("decodes")))
                .collect();
            (n.to_string(), values)
        })
        .collect()
}

async fn crash_while_in_flight(durability: Durability) {
    let mut expected = vec![Contents::new()];
    for offset in 1..=IN_FLIGHT_COMMITS {
        let mut next = expected.last().cloned().unwrap_or_default();
        in_flight_commit(offset, &mut next, None).await;
        expected.push(next);
    }

    let mem = MemStorage::new();
    let mut cfg = config(&mem);
    cfg.durability = durability;
    cfg.snapshot_every_commits = Some(20);
    let m = create_manager_with_config(cfg.clone()).await.expect("open");
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (m, acked) = (m.clone(), Arc::clone(&acked));
        tokio::spawn(async move {
            let mut scratch = Contents::new();
            for offset in 1..=IN_FLIGHT_COMMITS {
                in_flight_commit(offset, &mut scratch, Some(&m)).await;
                acked.store(offset, Ordering::SeqCst);
            }
        })
    };
    // Crash images at moments the writer does not control: (acknowledged before, seed, image).
    let mut images = Vec::new();
    let mut seed = 0xC0FFEE_u64;
    loop {
        let finished = writer.is_finished();
        let before = acked.load(Ordering::SeqCst);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        images.push((before, seed, mem.crash_image(CrashMode::Torn(seed))));
        images.push((before, 0, mem.crash_image(CrashMode::ProcessKill)));
        if finished {
            break;
        }
        // Block this worker briefly (the writer runs on the other one and on the engine's
        // threads), so that images land at many different points of the pipeline.
        std::thread::sleep(Duration::from_micros(100 + seed % 500));
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    m.close().await.expect("close");
    assert!(
        m.log().segments().len() > 2,
        "the workload rotates segments"
    );

    for (before, seed, image) in images {
        let what = format!("{durability:?}, seed {seed}, {before} acknowledged");
        let mut cfg = cfg.clone();
        cfg.storage = Arc::new(image.clone());
        let m2 = create_manager_with_config(cfg.clone()).await.expect(&what);
        let n = m2.last_offset().0;
        assert!(n <= IN_FLIGHT_COMMITS, "{what}: offset {n}");
        if durability == Durability::Always || seed == 0 {
            // Always: acknowledged means durable. A process kill keeps everything written.
            assert!(n >= before, "{what}: only {n} commits survived");
        }
        assert_eq!(
            contents(&m2.state()),
            expected[n as usize],
            "{what}: the store is not the first {n} commits"
        );
        // New commits after the crash reuse the lost offsets; a snapshot taken before the
        // crash must never stand in for them.
        let r = m2.create("after-crash").await.expect(&what);
        assert_eq!(r.offset, Offset(n + 1));
        let after = m2.state();
        m2.close().await.expect("close");
        let m3 = create_manager_with_config(cfg).await.expect(&what);
        assert_eq!(*m3.state(), *after, "{what}: reopen after a commit");
        m3.close().await.expect("close");
    }
}

/// Always mode: a crash at any moment keeps at least every acknowledged commit, and the store
/// is always a prefix of the commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_commits_in_flight_always() {
    crash_while_in_flight(Durability::Always).await;
}

/// Batched mode: a power loss may take back acknowledged commits but leaves a prefix (and a
/// snapshot of lost commits is set aside, never used); a process kill loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_commits_in_flight_batched() {
    crash_while_in_flight(Durability::Batched {
        max_delay: Duration::from_millis(5),
    })
    .await;
}
