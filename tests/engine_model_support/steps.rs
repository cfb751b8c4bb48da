//! What the generator produces: steps of a case, and the strategies that make them.

use super::{CONTEXTS, KEYS, LABELS, POINTS};
use ctxlog::event::Labels;
use proptest::prelude::*;
use serde_json::{json, Value as Json};

#[derive(Debug, Clone)]
pub enum Val {
    Int(i64),
    Text(String),
    Obj(i64, Vec<bool>),
    /// A long string (length, fill letter): makes segments rotate.
    Big(u16, u8),
}

impl Val {
    pub fn json(&self) -> Json {
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
pub struct Target {
    pub idx: usize,
    pub raw: bool,
}

#[derive(Debug, Clone)]
pub enum GenOp {
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
pub enum COp {
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
pub enum Expect {
    /// The context's actual version.
    Right(usize),
    /// Some other version: the commit must fail with `VersionConflict` and write nothing.
    Stale(usize, u8),
}

#[derive(Debug, Clone)]
pub enum Step {
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

pub fn target_strategy() -> impl Strategy<Value = Target> + Clone {
    (0..12usize, prop::bool::weighted(0.1)).prop_map(|(idx, raw)| Target { idx, raw })
}

pub fn labels_strategy() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((0..LABELS.len(), 0u8..4), 0..3)
}

pub fn val_strategy() -> impl Strategy<Value = Val> {
    prop_oneof![
        3 => any::<i64>().prop_map(Val::Int),
        2 => "[a-z ]{0,12}".prop_map(Val::Text),
        1 => (any::<i64>(), prop::collection::vec(any::<bool>(), 0..4))
            .prop_map(|(n, f)| Val::Obj(n, f)),
        3 => (1500u16..4500, any::<u8>()).prop_map(|(n, c)| Val::Big(n, c)),
    ]
}

pub fn op_strategy() -> impl Strategy<Value = GenOp> {
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

pub fn expect_strategy() -> impl Strategy<Value = Vec<Expect>> {
    let one = prop_oneof![
        3 => (0..CONTEXTS.len()).prop_map(Expect::Right),
        1 => (0..CONTEXTS.len(), any::<u8>()).prop_map(|(c, d)| Expect::Stale(c, d)),
    ];
    prop_oneof![
        2 => Just(Vec::new()),
        1 => prop::collection::vec(one, 1..=2),
    ]
}

pub fn step_strategy() -> impl Strategy<Value = Step> {
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
