//! Subscriptions: a stream of committed events from any offset, catch-up from the log first,
//! then live, with no gap and no duplicate across the switch; durable consumers whose position
//! is stored in the log.
//!
//! A subscription is a task that feeds a bounded channel. It subscribes to the live batches
//! *before* reading the log, so every commit published after its log read is in the live
//! feed; commits it already delivered from the log are skipped there by offset. Writers never
//! wait for subscribers: a subscriber more than `LIVE_BUFFER_BATCHES` batches behind loses its
//! place in the live feed and reads the log from its next offset instead, then rejoins.

use super::hub::{Hub, LiveBatch};
use super::ContextManager;
use crate::error::{Error, Result};
use crate::event::{Commit, Event};
use crate::offset::Offset;
use crate::replay::for_each_commit;
use crate::wal::LogReader;
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{broadcast, mpsc};

/// Which events a subscription delivers. Offsets advance over everything; only matching
/// events are delivered.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    names: Vec<String>,
    prefixes: Vec<String>,
    kinds: BTreeSet<String>,
}

impl Filter {
    /// Every event.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Also events concerning this context (a switch concerns both of its contexts).
    pub fn context(mut self, name: impl Into<String>) -> Filter {
        self.names.push(name.into());
        self
    }

    /// Also events concerning contexts whose name starts with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Filter {
        self.prefixes.push(prefix.into());
        self
    }

    /// Only events of these kinds ([`Event::kind`] names, e.g. `"ValueSet"`).
    pub fn kinds<I: IntoIterator<Item = S>, S: Into<String>>(mut self, kinds: I) -> Filter {
        self.kinds.extend(kinds.into_iter().map(Into::into));
        self
    }

    /// True if the filter delivers `event`.
    pub fn matches(&self, event: &Event) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(event.kind()) {
            return false;
        }
        if self.names.is_empty() && self.prefixes.is_empty() {
            return true;
        }
        let concerns = |c: &str| {
            self.names.iter().any(|n| n == c)
                || self.prefixes.iter().any(|p| c.starts_with(p.as_str()))
        };
        match event {
            Event::Switched { from, to } => concerns(to) || from.as_deref().is_some_and(concerns),
            e => e.context().is_some_and(concerns),
        }
    }
}

/// One event delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedEvent {
    /// The commit's offset.
    pub offset: Offset,
    /// The commit's time, ms since the Unix epoch.
    pub ts_ms: u64,
    /// The event's place in its commit.
    pub index: usize,
    /// The event.
    pub event: Event,
}

/// A stream of committed events (implements `tokio_stream::Stream`). Dropping it ends the
/// subscription. It ends by itself when the store closes; a read error is delivered once,
/// then it ends.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Result<SubscribedEvent>>,
}

impl Subscription {
    /// The next event, or `None` once the subscription ended.
    pub async fn next(&mut self) -> Option<Result<SubscribedEvent>> {
        self.rx.recv().await
    }
}

impl tokio_stream::Stream for Subscription {
    type Item = Result<SubscribedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Events buffered between the subscription task and its consumer.
const CHANNEL_EVENTS: usize = 1024;
/// Commits read from the log per step of a catch-up.
const CATCH_UP_COMMITS: u64 = 1024;

struct Feed {
    hub: Arc<Hub>,
    reader: LogReader,
    filter: Filter,
    next: Offset,
    tx: mpsc::Sender<Result<SubscribedEvent>>,
}

enum Step {
    Continue,
    Stop,
}

impl Feed {
    /// Sends the matching events of one commit; `Stop` once the consumer is gone.
    async fn deliver(&mut self, offset: Offset, commit: &Commit) -> Step {
        debug_assert_eq!(offset, self.next, "no gap, no duplicate");
        let lag = self.hub.state().offset().0.saturating_sub(offset.0);
        for (index, event) in commit.events.iter().enumerate() {
            if self.filter.matches(event) {
                metrics::histogram!(crate::telemetry::SUBSCRIBER_LAG).record(lag as f64);
                let item = SubscribedEvent {
                    offset,
                    ts_ms: commit.ts,
                    index,
                    event: event.clone(),
                };
                if self.tx.send(Ok(item)).await.is_err() {
                    return Step::Stop;
                }
            }
        }
        self.next = offset.next();
        Step::Continue
    }

    /// Reads the log from `next` up to what is published now.
    async fn catch_up(&mut self) -> Result<Step> {
        loop {
            let last = self.hub.state().offset();
            if self.next > last {
                return Ok(Step::Continue);
            }
            let to = Offset(last.0.min(self.next.0 + CATCH_UP_COMMITS - 1));
            let (reader, from) = (self.reader.clone(), self.next);
            let (commits, failed) = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let read = for_each_commit(&reader, from, to, |offset, commit| {
                    out.push((offset, commit));
                    Ok(ControlFlow::Continue(()))
                });
                (out, read.err())
            })
            .await
            .map_err(|_| Error::Closed)?;
            // Everything read before a failure is delivered, then the failure.
            for (offset, commit) in commits {
                if let Step::Stop = self.deliver(offset, &commit).await {
                    return Ok(Step::Stop);
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }

    /// Delivers live batches until the consumer leaves (`Stop`), the store closes (`Stop`),
    /// or the feed falls behind or skips (`Continue`: catch up from the log).
    async fn live(&mut self, rx: &mut broadcast::Receiver<LiveBatch>) -> Step {
        loop {
            let batch = tokio::select! {
                batch = rx.recv() => batch,
                () = self.tx.closed() => return Step::Stop,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(broadcast::error::RecvError::Lagged(_)) => return Step::Continue,
                Err(broadcast::error::RecvError::Closed) => return Step::Stop,
            };
            for live in batch.iter() {
                if live.offset < self.next {
                    continue;
                }
                if live.offset > self.next {
                    return Step::Continue;
                }
                if let Step::Stop = self.deliver(live.offset, &live.commit).await {
                    return Step::Stop;
                }
            }
        }
    }

    async fn run(mut self) {
        loop {
            // Subscribe first, then read the log: nothing published in between is missed.
            let Some(mut rx) = self.hub.subscribe_commits() else {
                return;
            };
            match self.catch_up().await {
                Ok(Step::Continue) => {}
                Ok(Step::Stop) => return,
                Err(e) => {
                    let _ = self.tx.send(Err(e)).await;
                    return;
                }
            }
            if let Step::Stop = self.live(&mut rx).await {
                return;
            }
        }
    }
}

impl ContextManager {
    /// Committed events from `from` on (catch-up from the log, then live), filtered. Must be
    /// called inside a tokio runtime (the subscription runs as a task).
    pub fn subscribe(&self, from: Offset, filter: Filter) -> Result<Subscription> {
        let first = self.inner.reader.first_offset();
        let from = from.max(Offset::FIRST);
        if from < first {
            let last = self.last_offset();
            return Err(Error::OffsetOutOfRange {
                requested: from,
                first,
                last,
            });
        }
        let (tx, rx) = mpsc::channel(CHANNEL_EVENTS);
        let feed = Feed {
            hub: Arc::clone(&self.inner.hub),
            reader: self.inner.reader.clone(),
            filter,
            next: from,
            tx,
        };
        tokio::spawn(feed.run());
        Ok(Subscription { rx })
    }

    /// A durable consumer: resumes after the last offset it acknowledged with
    /// [`ack_consumer`](Self::ack_consumer) (which is stored in the log, so it survives
    /// restarts), or from the start for a new name.
    pub fn subscribe_durable(&self, consumer: &str, filter: Filter) -> Result<Subscription> {
        crate::model::check_point_label(consumer)?;
        let from = self.consumer_position(consumer).next();
        self.subscribe(from, filter)
    }

    /// The last offset a durable consumer acknowledged (0: none).
    pub fn consumer_position(&self, consumer: &str) -> Offset {
        self.state().consumer(consumer)
    }

    /// Records that `consumer` has processed everything up to `offset` (a commit of a
    /// `ConsumerAcked` event). Positions only move forward.
    pub async fn ack_consumer(&self, consumer: &str, offset: Offset) -> Result<super::Receipt> {
        crate::model::check_point_label(consumer)?;
        let action = super::ops::Action::AckConsumer(consumer.to_string(), offset);
        self.submit(vec![action], Default::default()).await
    }
}
