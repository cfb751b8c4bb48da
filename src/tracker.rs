//! Versions and waiting: a context's version is the offset of the last commit that changed it.
//!
//! [`ContextTracker`] reads versions from the published state (so a version it reports is
//! acknowledged, and in `Always` mode durable), checks expected versions, waits for an offset,
//! and watches a context. [`ContextTrackerFactory`] builds preconfigured trackers.

use crate::error::{Error, Result, SyncError};
use crate::manager::ContextManager;
use crate::offset::Offset;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Tracks versions of a store's contexts.
#[derive(Debug, Clone)]
pub struct ContextTracker {
    manager: ContextManager,
    scope: Option<Arc<BTreeSet<String>>>,
    timeout: Option<Duration>,
}

impl ContextTracker {
    /// A tracker over every context, with no timeout on waits.
    pub fn new(manager: &ContextManager) -> Self {
        ContextTracker {
            manager: manager.clone(),
            scope: None,
            timeout: None,
        }
    }

    fn in_scope(&self, context: &str) -> Result<()> {
        match &self.scope {
            Some(scope) if !scope.contains(context) => Err(SyncError::OutOfScope {
                context: context.to_string(),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// The context's version (0: never existed).
    pub fn version(&self, context: &str) -> Result<Offset> {
        self.in_scope(context)?;
        Ok(self.manager.state().version(context))
    }

    /// `Ok` if the context is at `expected`, else [`Error::VersionConflict`].
    pub fn check(&self, context: &str, expected: Offset) -> Result<()> {
        let actual = self.version(context)?;
        if actual != expected {
            return Err(Error::VersionConflict {
                context: context.to_string(),
                expected,
                actual,
            });
        }
        Ok(())
    }

    /// Resolves once `offset` is acknowledged (in `Always` mode: durable). Fails with
    /// [`SyncError::Timeout`] after the tracker's timeout, if it has one.
    pub async fn wait_for(&self, offset: Offset) -> Result<Offset> {
        let mut rx = self.manager.watch_offset();
        let wait = rx.wait_for(|&at| at >= offset);
        let reached = match self.timeout {
            None => wait.await.map(|v| *v),
            Some(limit) => match tokio::time::timeout(limit, wait).await {
                Ok(r) => r.map(|v| *v),
                Err(_) => {
                    return Err(SyncError::Timeout {
                        offset,
                        waited: limit,
                    }
                    .into())
                }
            },
        };
        reached.map_err(|_| Error::Closed)
    }

    /// A watch of the context's version: changes whenever a commit changes the context.
    pub fn watch(&self, context: &str) -> Result<watch::Receiver<Offset>> {
        self.in_scope(context)?;
        Ok(self.manager.watch_context(context))
    }
}

/// Builds trackers with preset scope and timeout.
#[derive(Debug, Clone)]
pub struct ContextTrackerFactory {
    manager: ContextManager,
    scope: Option<BTreeSet<String>>,
    timeout: Option<Duration>,
}

impl ContextTrackerFactory {
    /// A factory over `manager`'s store.
    pub fn new(manager: &ContextManager) -> Self {
        ContextTrackerFactory {
            manager: manager.clone(),
            scope: None,
            timeout: None,
        }
    }

    /// Trackers only answer for these contexts (others get [`SyncError::OutOfScope`]).
    pub fn scoped<I, S>(mut self, contexts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scope = Some(contexts.into_iter().map(Into::into).collect());
        self
    }

    /// Waits give up after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A tracker with this factory's settings.
    pub fn build(&self) -> ContextTracker {
        ContextTracker {
            manager: self.manager.clone(),
            scope: self.scope.clone().map(Arc::new),
            timeout: self.timeout,
        }
    }
}
