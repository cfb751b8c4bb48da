//! The model: a plain in-memory picture of the store, what it predicts for each commit, and
//! the comparisons of an engine state with it.

use super::steps::{COp, Expect, GenOp, Target};
use super::{CONTEXTS, KEYS, LABELS};
use ctxlog::error::Error;
use ctxlog::event::Labels;
use ctxlog::state::State;
use ctxlog::Offset;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value as Json;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelContext {
    pub values: BTreeMap<String, Json>,
    pub labels: BTreeMap<String, String>,
    pub deleted: bool,
    pub version: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Every context ever created, deleted ones included.
    pub contexts: BTreeMap<String, ModelContext>,
    pub points: BTreeMap<String, u64>,
    pub offset: u64,
    /// Offsets of the commits that hold an event about each context (what `history` returns).
    pub touched: BTreeMap<String, Vec<u64>>,
}

/// Why a commit was refused, as the model predicts it and as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
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

pub fn failure_of(e: &Error) -> Failure {
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

pub fn label_map(pairs: &[(usize, u8)]) -> Labels {
    pairs
        .iter()
        .map(|&(l, v)| (LABELS[l].to_string(), format!("v{v}")))
        .collect()
}

impl Model {
    pub fn live(&self, name: &str) -> Option<&ModelContext> {
        self.contexts.get(name).filter(|c| !c.deleted)
    }

    pub fn live_mut(&mut self, name: &str) -> Result<&mut ModelContext, Failure> {
        self.contexts
            .get_mut(name)
            .filter(|c| !c.deleted)
            .ok_or_else(|| Failure::NotFound(name.to_string()))
    }

    pub fn version(&self, name: &str) -> u64 {
        self.contexts.get(name).map_or(0, |c| c.version)
    }

    pub fn touch(&mut self, name: &str, offset: u64) {
        let offsets = self.touched.entry(name.to_string()).or_default();
        if offsets.last() != Some(&offset) {
            offsets.push(offset);
        }
    }

    /// The expected versions an `Expect` list stands for, given this model.
    pub fn expectations(&self, expect: &[Expect]) -> BTreeMap<String, u64> {
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
    pub fn pick_context(&self, t: Target, absent: bool) -> String {
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
    pub fn pick_key(&self, name: &str, t: Target) -> String {
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
    pub fn resolve(&self, ops: &[GenOp]) -> Vec<COp> {
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
    pub fn commit(&self, ops: &[COp], expect: &BTreeMap<String, u64>) -> Result<Model, Failure> {
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

    pub fn apply(&mut self, op: &COp, offset: u64) -> Result<(), Failure> {
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
    pub fn restore(&self, target: &Model) -> Model {
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
    pub fn changed_at(&self, offset: u64) -> BTreeMap<String, Offset> {
        self.contexts
            .iter()
            .filter(|(_, c)| c.version == offset)
            .map(|(n, _)| (n.clone(), Offset(offset)))
            .collect()
    }
}

/// Asserts that an engine state is the model: offset, every context (deleted ones too), their
/// values, labels and versions, and the recovery points.
pub fn check_state(state: &State, model: &Model) -> Result<(), TestCaseError> {
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
pub fn same_state(a: &State, b: &State, what: &str) -> Result<(), TestCaseError> {
    match super::state_diff::state_diff(a, b) {
        None => Ok(()),
        Some(d) => Err(TestCaseError::fail(format!("{what}: states differ: {d}"))),
    }
}
