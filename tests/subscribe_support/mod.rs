//! Shared by the subscription tests (`events_subscribe`, `events_filters`, `events_durable`):
//! stores on `MemStorage`, reading a subscription with a deadline, and what a subscriber should
//! see.
//!
//! Every subscription is checked against the log itself (`events()`), filtered by a reference
//! filter written here from `Filter`'s documentation, not by `Filter::matches`.

#![allow(dead_code)]

use ctxlog::event::Event;
use ctxlog::manager::{Filter, SubscribedEvent, Subscription};
use ctxlog::storage::MemStorage;
use ctxlog::{create_manager_with_config, Config, ContextManager, Offset};
use std::sync::Arc;
use std::time::Duration;

/// Longest any single wait in these tests may take before the test fails (not hangs).
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn mem_config(mem: &MemStorage) -> Config {
    let mut c = Config::new("store");
    c.storage = Arc::new(mem.clone());
    // Small segments: catch-up reads cross many of them.
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c
}

pub async fn open_mem(mem: &MemStorage) -> ContextManager {
    create_manager_with_config(mem_config(mem))
        .await
        .expect("open the store")
}

/// What a subscriber should see: every event of the log from `from` on that `spec` matches.
pub async fn expected(m: &ContextManager, from: Offset, spec: &Spec) -> Vec<SubscribedEvent> {
    let mut out = Vec::new();
    for commit in m
        .events(from.max(Offset::FIRST))
        .await
        .expect("read the log")
    {
        for (index, event) in commit.events.into_iter().enumerate() {
            if spec.matches(&event) {
                out.push(SubscribedEvent {
                    offset: commit.offset,
                    ts_ms: commit.ts_ms,
                    index,
                    event,
                });
            }
        }
    }
    out
}

/// Reads exactly `n` events (fails on an error, an early end, or a timeout).
pub async fn take(sub: &mut Subscription, n: usize) -> Vec<SubscribedEvent> {
    let mut got = Vec::with_capacity(n);
    let read = async {
        while got.len() < n {
            match sub.next().await {
                Some(Ok(e)) => got.push(e),
                Some(Err(e)) => panic!("subscription failed after {} events: {e}", got.len()),
                None => panic!("subscription ended after {} of {n} events", got.len()),
            }
        }
    };
    if tokio::time::timeout(PATIENCE, read).await.is_err() {
        panic!("timed out: {} of {n} events", got.len());
    }
    got
}

/// Everything a subscription still delivers until it ends (fails if it does not end).
pub async fn drain_to_end(sub: &mut Subscription) -> Vec<SubscribedEvent> {
    let mut rest = Vec::new();
    let read = async {
        while let Some(item) = sub.next().await {
            rest.push(item.expect("no error while draining"));
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the subscription ends once the store is closed");
    rest
}

/// Checks a delivered sequence against the expected one, naming the first difference.
pub fn assert_same(who: &str, got: &[SubscribedEvent], want: &[SubscribedEvent]) {
    let key = |e: &SubscribedEvent| (e.offset, e.index);
    for w in got.windows(2) {
        assert!(
            key(&w[0]) < key(&w[1]),
            "{who}: out of order or duplicate: {:?} then {:?}",
            key(&w[0]),
            key(&w[1])
        );
    }
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!(
            "{who}: event {i} differs:\n got  {:?}\n want {:?}",
            got[i], want[i]
        );
    }
    assert_eq!(got.len(), want.len(), "{who}: number of events");
}

/// A filter, as both the engine's [`Filter`] and a reference matcher.
#[derive(Debug, Clone)]
pub enum Spec {
    All,
    Context(&'static str),
    Prefix(&'static str),
    Kinds(Vec<&'static str>),
    ContextKinds(&'static str, Vec<&'static str>),
    Both(&'static str, &'static str),
}

/// The contexts an event concerns, per `Filter`'s documentation (a switch concerns both).
pub fn concerned(event: &Event) -> Vec<&str> {
    match event {
        Event::Switched { from, to } => std::iter::once(to.as_str())
            .chain(from.as_deref())
            .collect(),
        Event::ContextCreated { context, .. }
        | Event::ValueSet { context, .. }
        | Event::ValueRemoved { context, .. }
        | Event::MetadataChanged { context, .. }
        | Event::ContextDeleted { context }
        | Event::ContextRestored { context, .. }
        | Event::Activated { context }
        | Event::Deactivated { context }
        | Event::SchemaAttached { context, .. }
        | Event::SchemaRemoved { context } => vec![context.as_str()],
        Event::DefaultChanged { context } => context.as_deref().into_iter().collect(),
        Event::RecoveryPointCreated { .. }
        | Event::Compacted { .. }
        | Event::ConsumerAcked { .. } => vec![],
    }
}

impl Spec {
    pub fn filter(&self) -> Filter {
        match self {
            Spec::All => Filter::all(),
            Spec::Context(c) => Filter::all().context(*c),
            Spec::Prefix(p) => Filter::all().prefix(*p),
            Spec::Kinds(k) => Filter::all().kinds(k.iter().copied()),
            Spec::ContextKinds(c, k) => Filter::all().context(*c).kinds(k.iter().copied()),
            Spec::Both(c, p) => Filter::all().context(*c).prefix(*p),
        }
    }

    pub fn matches(&self, event: &Event) -> bool {
        let names = concerned(event);
        let kind_ok = |k: &[&str]| k.contains(&event.kind());
        match self {
            Spec::All => true,
            Spec::Context(c) => names.contains(c),
            Spec::Prefix(p) => names.iter().any(|n| n.starts_with(p)),
            Spec::Kinds(k) => kind_ok(k),
            Spec::ContextKinds(c, k) => names.contains(c) && kind_ok(k),
            Spec::Both(c, p) => names.iter().any(|n| n == c || n.starts_with(p)),
        }
    }
}
