//! What a commit is made of: operations, the batch builder, and the receipt.

use crate::error::{InvalidInput, Result};
use crate::event::Labels;
use crate::model::{check_context_name, check_key, check_label, Value};
use crate::offset::Offset;
use crate::state::State;
use crate::wal::Reached;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One operation of a commit.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create a context (fails if it exists and is not deleted).
    Create {
        /// The context.
        context: String,
        /// Its initial labels.
        labels: Labels,
    },
    /// Set a key.
    Set {
        /// The context.
        context: String,
        /// The key.
        key: String,
        /// The value.
        value: Value,
    },
    /// Remove a key (fails if it does not exist).
    Remove {
        /// The context.
        context: String,
        /// The key.
        key: String,
    },
    /// Set and remove labels.
    Meta {
        /// The context.
        context: String,
        /// Labels to set.
        set: Labels,
        /// Labels to remove.
        removed: Vec<String>,
    },
    /// Delete a context (its history stays in the log).
    Delete {
        /// The context.
        context: String,
    },
}

impl Op {
    /// Checks names, keys, labels and the value size.
    pub fn validate(&self, value_bytes_max: u64) -> Result<(), InvalidInput> {
        match self {
            Op::Create { context, labels } => {
                check_context_name(context)?;
                labels
                    .iter()
                    .try_for_each(|(k, v)| check_label(context, k, Some(v)))
            }
            Op::Set {
                context,
                key,
                value,
            } => {
                check_context_name(context)?;
                check_key(context, key)?;
                let len = value.as_bytes().len() as u64;
                if len > value_bytes_max {
                    return Err(InvalidInput::ValueTooLarge {
                        context: context.clone(),
                        key: key.clone(),
                        len,
                        max: value_bytes_max,
                    });
                }
                Ok(())
            }
            Op::Remove { context, key } => {
                check_context_name(context)?;
                check_key(context, key)
            }
            Op::Meta {
                context,
                set,
                removed,
            } => {
                check_context_name(context)?;
                set.iter()
                    .try_for_each(|(k, v)| check_label(context, k, Some(v)))?;
                removed
                    .iter()
                    .try_for_each(|k| check_label(context, k, None))
            }
            Op::Delete { context } => check_context_name(context),
        }
    }
}

/// An atomic batch of operations on one or more contexts, with optional expected versions.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub(crate) ops: Vec<Op>,
    pub(crate) expect: BTreeMap<String, Offset>,
}

impl Update {
    /// An empty batch.
    pub fn new() -> Update {
        Update::default()
    }

    /// Adds an operation.
    pub fn op(mut self, op: Op) -> Update {
        self.ops.push(op);
        self
    }

    /// Creates a context.
    pub fn create(self, context: impl Into<String>) -> Update {
        self.op(Op::Create {
            context: context.into(),
            labels: Labels::new(),
        })
    }

    /// Sets a key to any serde value.
    pub fn set<T: Serialize + ?Sized>(
        self,
        context: impl Into<String>,
        key: impl Into<String>,
        value: &T,
    ) -> Result<Update> {
        let (context, key) = (context.into(), key.into());
        let value = Value::encode(value).map_err(|e| InvalidInput::Unencodable {
            context: context.clone(),
            key: key.clone(),
            reason: e.to_string(),
        })?;
        Ok(self.op(Op::Set {
            context,
            key,
            value,
        }))
    }

    /// Removes a key.
    pub fn remove(self, context: impl Into<String>, key: impl Into<String>) -> Update {
        self.op(Op::Remove {
            context: context.into(),
            key: key.into(),
        })
    }

    /// Deletes a context.
    pub fn delete(self, context: impl Into<String>) -> Update {
        self.op(Op::Delete {
            context: context.into(),
        })
    }

    /// Commits only if `context` is still at `version` (0: it must never have existed).
    pub fn expect(mut self, context: impl Into<String>, version: Offset) -> Update {
        self.expect.insert(context.into(), version);
        self
    }

    /// The operations so far.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

/// What the writer thread executes for one commit: user operations or engine actions.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Op(Op),
    Activate(String),
    Deactivate(String),
    Switch(String),
    SetDefault(Option<String>),
    Point(String),
    Restore(Arc<State>),
    Compacted(Offset),
    AckConsumer(String, Offset),
    /// Attach (Some) or remove (None) a context's JSON Schema.
    Schema(String, Option<String>),
}

/// Proof of an acknowledged commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The commit's offset.
    pub offset: Offset,
    /// The version of every context the commit changed (= `offset`).
    pub versions: BTreeMap<String, Offset>,
    /// The durability it reached before the acknowledgement.
    pub durability: Reached,
}
