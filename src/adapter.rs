//! The context adapter: which contexts are active, which one is current, a default for when
//! none is. Its state is made of events like everything else, so after a restart the same
//! contexts are active and the same one is current.

use crate::error::{Error, Result};
use crate::manager::{ContextManager, Receipt};
use crate::model::check_context_name;
use crate::offset::Offset;
use crate::state::Stamp;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::manager::ops_internal::Action;

/// Adapter settings.
#[derive(Debug, Clone, Default)]
pub struct AdapterConfig {
    /// Make this context the default when the adapter is created (created if missing).
    pub default_context: Option<String>,
    /// Create a context on `activate`/`switch_to` if it does not exist. Default false.
    pub create_missing: bool,
}

/// Where a context stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Activity {
    /// Active.
    Active,
    /// Exists, not active.
    Inactive,
    /// Deleted.
    Deleted,
}

/// A context's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextStatus {
    /// The context.
    pub context: String,
    /// Active, inactive or deleted.
    pub activity: Activity,
    /// True if it is the current context.
    pub current: bool,
    /// Its version.
    pub version: Offset,
    /// Its last change.
    pub last_change: Stamp,
}

/// Activates, deactivates and switches contexts of a store.
#[derive(Debug, Clone)]
pub struct ContextAdapter {
    manager: ContextManager,
    config: AdapterConfig,
}

/// An adapter with default settings.
pub async fn create_adapter(manager: &ContextManager) -> Result<ContextAdapter> {
    create_adapter_with_config(manager, AdapterConfig::default()).await
}

/// An adapter; applies `config.default_context` if set and different from the stored one.
pub async fn create_adapter_with_config(
    manager: &ContextManager,
    config: AdapterConfig,
) -> Result<ContextAdapter> {
    let adapter = ContextAdapter {
        manager: manager.clone(),
        config,
    };
    if let Some(default) = adapter.config.default_context.clone() {
        if manager.state().default_context() != Some(default.as_str()) {
            adapter.set_default(Some(&default)).await?;
        }
    }
    Ok(adapter)
}

impl ContextAdapter {
    async fn run(&self, context: Option<&str>, action: Action) -> Result<Receipt> {
        let mut actions = Vec::new();
        if let Some(c) = context {
            check_context_name(c)?;
            if self.config.create_missing && self.manager.state().context(c).is_none() {
                actions.push(Action::Op(crate::manager::Op::Create {
                    context: c.to_string(),
                    labels: BTreeMap::new(),
                }));
            }
        }
        actions.push(action);
        self.manager.submit(actions, BTreeMap::new()).await
    }

    /// Marks a context active.
    pub async fn activate(&self, context: &str) -> Result<Receipt> {
        self.run(Some(context), Action::Activate(context.to_string()))
            .await
    }

    /// Marks a context inactive (no longer current, if it was).
    pub async fn deactivate(&self, context: &str) -> Result<Receipt> {
        check_context_name(context)?;
        self.manager
            .submit(
                vec![Action::Deactivate(context.to_string())],
                BTreeMap::new(),
            )
            .await
    }

    /// Makes `context` current: the old current one is deactivated and the new one activated
    /// in one commit, so a crash leaves either the old or the new, never neither.
    pub async fn switch_to(&self, context: &str) -> Result<Receipt> {
        self.run(Some(context), Action::Switch(context.to_string()))
            .await
    }

    /// Sets (or clears) the default context, used when none is current.
    pub async fn set_default(&self, context: Option<&str>) -> Result<Receipt> {
        let action = Action::SetDefault(context.map(str::to_string));
        self.run(context, action).await
    }

    /// The current context, or the default one when none is current.
    pub fn current(&self) -> Option<String> {
        let state = self.manager.state();
        state
            .current()
            .or_else(|| {
                state
                    .default_context()
                    .filter(|d| state.context(d).is_some())
            })
            .map(str::to_string)
    }

    /// Active contexts.
    pub fn active(&self) -> Vec<String> {
        self.manager.state().active().map(str::to_string).collect()
    }

    /// One context's status.
    pub fn status(&self, context: &str) -> Result<ContextStatus> {
        let state = self.manager.state();
        let c = state.context_any(context).ok_or_else(|| Error::NotFound {
            context: context.to_string(),
        })?;
        let activity = if c.is_deleted() {
            Activity::Deleted
        } else if state.is_active(context) {
            Activity::Active
        } else {
            Activity::Inactive
        };
        Ok(ContextStatus {
            context: context.to_string(),
            activity,
            current: state.current() == Some(context),
            version: c.version(),
            last_change: c.updated(),
        })
    }

    /// The status of every context ever created.
    pub fn statuses(&self) -> Vec<ContextStatus> {
        let state = self.manager.state();
        let names: Vec<String> = state.all_contexts().map(|(n, _)| n.to_string()).collect();
        names.iter().filter_map(|n| self.status(n).ok()).collect()
    }
}
