//! Subscriptions: catch-up from the log then live, with no gap and no duplicate across the
//! switch; filters; lifecycle events; a slow subscriber never blocks writers; the stream ends
//! when the store closes; durable consumers resume after their acknowledged offset.
//!
//! Every subscription is checked against the log itself (`events()`), filtered by a reference
//! filter written here from `Filter`'s documentation, not by `Filter::matches`.

use ctxlog::error::{Error, InvalidInput};
use ctxlog::event::Event;
use ctxlog::manager::{Filter, SubscribedEvent, Subscription};
use ctxlog::storage::MemStorage;
use ctxlog::{create_adapter, create_manager_with_config, Config, ContextManager, Offset, Update};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Longest any single wait in this file may take before the test fails (not hangs).
const PATIENCE: Duration = Duration::from_secs(30);

fn mem_config(mem: &MemStorage) -> Config {
    let mut c = Config::new("store");
    c.storage = Arc::new(mem.clone());
    // Small segments: catch-up reads cross many of them.
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c
}

async fn open_mem(mem: &MemStorage) -> ContextManager {
    create_manager_with_config(mem_config(mem))
        .await
        .expect("open the store")
}

/// What a subscriber should see: every event of the log from `from` on that `spec` matches.
async fn expected(m: &ContextManager, from: Offset, spec: &Spec) -> Vec<SubscribedEvent> {
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
async fn take(sub: &mut Subscription, n: usize) -> Vec<SubscribedEvent> {
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
async fn drain_to_end(sub: &mut Subscription) -> Vec<SubscribedEvent> {
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
fn assert_same(who: &str, got: &[SubscribedEvent], want: &[SubscribedEvent]) {
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
enum Spec {
    All,
    Context(&'static str),
    Prefix(&'static str),
    Kinds(Vec<&'static str>),
    ContextKinds(&'static str, Vec<&'static str>),
    Both(&'static str, &'static str),
}

/// The contexts an event concerns, per `Filter`'s documentation (a switch concerns both).
fn concerned(event: &Event) -> Vec<&str> {
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
    fn filter(&self) -> Filter {
        match self {
            Spec::All => Filter::all(),
            Spec::Context(c) => Filter::all().context(*c),
            Spec::Prefix(p) => Filter::all().prefix(*p),
            Spec::Kinds(k) => Filter::all().kinds(k.iter().copied()),
            Spec::ContextKinds(c, k) => Filter::all().context(*c).kinds(k.iter().copied()),
            Spec::Both(c, p) => Filter::all().context(*c).prefix(*p),
        }
    }

    fn matches(&self, event: &Event) -> bool {
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

// ---- (a) catch-up to live under concurrent writers: a property ----

const CONTEXTS: [&str; 3] = ["a1", "a2", "b1"];

#[derive(Debug, Clone)]
enum WOp {
    Set(usize, u8, u32),
    Remove(usize, u8),
    /// One commit setting a key in two contexts.
    Multi(usize, usize, u32),
    Meta(usize, u8),
    /// One commit deleting and creating the context again.
    Recreate(usize),
    Point,
    Ack(u8),
    /// Through the adapter: the old current context deactivated, this one activated.
    Switch(usize),
}

fn wop() -> impl Strategy<Value = WOp> {
    let ctx = 0..CONTEXTS.len();
    prop_oneof![
        4 => (ctx.clone(), 0..4u8, any::<u32>()).prop_map(|(c, k, v)| WOp::Set(c, k, v)),
        2 => (ctx.clone(), 0..4u8).prop_map(|(c, k)| WOp::Remove(c, k)),
        2 => (ctx.clone(), ctx.clone(), any::<u32>()).prop_map(|(a, b, v)| WOp::Multi(a, b, v)),
        1 => (ctx.clone(), 0..3u8).prop_map(|(c, l)| WOp::Meta(c, l)),
        1 => ctx.prop_map(WOp::Recreate),
        1 => Just(WOp::Point),
        1 => (0..2u8).prop_map(WOp::Ack),
        1 => (0..CONTEXTS.len()).prop_map(WOp::Switch),
    ]
}

static POINTS: AtomicU64 = AtomicU64::new(0);

/// Commits one operation; `true` if it was acknowledged (refusals are part of the game).
async fn run_op(m: &ContextManager, op: &WOp) -> bool {
    let result = match op {
        WOp::Set(c, k, v) => m.set(CONTEXTS[*c], &format!("k{k}"), v).await,
        WOp::Remove(c, k) => m.remove(CONTEXTS[*c], &format!("k{k}")).await,
        WOp::Multi(a, b, v) => {
            let u = Update::new()
                .set(CONTEXTS[*a], "m", v)
                .and_then(|u| u.set(CONTEXTS[*b], "n", v))
                .expect("encodable");
            m.update(u).await
        }
        WOp::Meta(c, l) => {
            let set = BTreeMap::from([(format!("l{l}"), "x".to_string())]);
            m.set_metadata(CONTEXTS[*c], set, vec![]).await
        }
        WOp::Recreate(c) => {
            m.update(Update::new().delete(CONTEXTS[*c]).create(CONTEXTS[*c]))
                .await
        }
        WOp::Point => {
            let n = POINTS.fetch_add(1, Ordering::Relaxed);
            return m.create_recovery_point(&format!("p{n}")).await.is_ok();
        }
        WOp::Ack(n) => {
            let at = m.last_offset();
            m.ack_consumer(&format!("c{n}"), at).await
        }
        WOp::Switch(c) => match create_adapter(m).await {
            Ok(adapter) => adapter.switch_to(CONTEXTS[*c]).await,
            Err(e) => Err(e),
        },
    };
    result.is_ok()
}

#[derive(Debug, Clone)]
enum StartAt {
    Zero,
    /// This percentage of the way into the log.
    Mid(u8),
    /// Right after the last commit.
    End,
    /// A few offsets past the end (the subscription waits for them).
    Ahead(u8),
}

impl StartAt {
    fn offset(&self, last: Offset) -> Offset {
        match self {
            StartAt::Zero => Offset::ZERO,
            StartAt::Mid(pct) => Offset(1 + last.0 * u64::from(*pct) / 100),
            StartAt::End => last.next(),
            StartAt::Ahead(n) => Offset(last.0 + 1 + u64::from(*n)),
        }
    }
}

fn start_at() -> impl Strategy<Value = StartAt> {
    prop_oneof![
        Just(StartAt::Zero),
        (1..100u8).prop_map(StartAt::Mid),
        Just(StartAt::End),
        (1..4u8).prop_map(StartAt::Ahead),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        3 => Just(Spec::All),
        1 => Just(Spec::Context("a1")),
        1 => Just(Spec::Prefix("a")),
        1 => Just(Spec::Kinds(vec!["ValueSet", "ContextCreated"])),
        1 => Just(Spec::ContextKinds("b1", vec!["ValueSet", "ContextDeleted"])),
        1 => Just(Spec::Both("b1", "a2")),
        1 => Just(Spec::Kinds(vec!["Switched", "ContextDeleted"])),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    prefill: Vec<WOp>,
    /// Per writer task: operations, each after this many yields.
    writers: Vec<Vec<(WOp, u8)>>,
    /// Subscribers that start before the writers.
    early: Vec<(StartAt, Spec)>,
    /// Subscribers that start once this many writer commits are in.
    late: Vec<(u8, StartAt, Spec)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(wop(), 0..25),
        prop::collection::vec(prop::collection::vec((wop(), 0..4u8), 0..20), 1..4),
        prop::collection::vec((start_at(), spec()), 1..4),
        prop::collection::vec((0..30u8, start_at(), spec()), 0..3),
    )
        .prop_map(|(prefill, writers, early, late)| Case {
            prefill,
            writers,
            early,
            late,
        })
}

/// A subscriber reading as events arrive, until told how many to expect and holding that many.
struct Reader {
    from: Offset,
    spec: Spec,
    want: watch::Sender<Option<usize>>,
    task: tokio::task::JoinHandle<(Vec<SubscribedEvent>, Subscription)>,
}

fn start_reader(m: &ContextManager, from: Offset, spec: Spec) -> Reader {
    let mut sub = m.subscribe(from, spec.filter()).expect("subscribe");
    let (want, mut want_rx) = watch::channel(None::<usize>);
    let task = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            if want_rx.borrow().is_some_and(|n| got.len() >= n) {
                break;
            }
            tokio::select! {
                item = sub.next() => match item {
                    Some(Ok(e)) => got.push(e),
                    Some(Err(e)) => panic!("subscription failed: {e}"),
                    None => break,
                },
                changed = want_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        (got, sub)
    });
    Reader {
        from,
        spec,
        want,
        task,
    }
}

async fn check_case(case: Case) {
    let mem = MemStorage::new();
    let m = open_mem(&mem).await;
    let mut setup = Update::new();
    for c in CONTEXTS {
        setup = setup.create(c);
    }
    m.update(setup).await.expect("create the contexts");
    let mut acknowledged = 1;
    for op in &case.prefill {
        acknowledged += u64::from(run_op(&m, op).await);
    }
    let base = m.last_offset();
    assert_eq!(
        base,
        Offset(acknowledged),
        "one offset per acknowledged commit"
    );

    let mut readers: Vec<Reader> = case
        .early
        .iter()
        .map(|(at, spec)| start_reader(&m, at.offset(base), spec.clone()))
        .collect();

    let done = Arc::new(AtomicBool::new(false));
    let late: Vec<_> = case
        .late
        .iter()
        .cloned()
        .map(|(after, at, spec)| {
            let (m, done) = (m.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let target = base.0 + u64::from(after);
                while m.last_offset().0 < target && !done.load(Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                start_reader(&m, at.offset(m.last_offset()), spec)
            })
        })
        .collect();

    let writers: Vec<_> = case
        .writers
        .iter()
        .cloned()
        .map(|ops| {
            let m = m.clone();
            tokio::spawn(async move {
                let mut ok = 0u64;
                for (op, yields) in ops {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                    ok += u64::from(run_op(&m, &op).await);
                }
                ok
            })
        })
        .collect();
    for w in writers {
        acknowledged += w.await.expect("writer task");
    }
    done.store(true, Ordering::Release);
    for l in late {
        readers.push(l.await.expect("late subscriber"));
    }
    let last = m.last_offset();
    assert_eq!(
        last,
        Offset(acknowledged),
        "one offset per acknowledged commit"
    );

    let mut subs = Vec::new();
    for r in readers {
        let want = expected(&m, r.from, &r.spec).await;
        r.want.send_replace(Some(want.len()));
        // Shorter than PATIENCE: shrinking a failure reruns this many times.
        let (got, sub) = tokio::time::timeout(Duration::from_secs(10), r.task)
            .await
            .unwrap_or_else(|_| panic!("subscriber from {} ({:?}) stalled", r.from, r.spec))
            .expect("subscriber task");
        let who = format!("subscriber from {} with {:?}", r.from, r.spec);
        assert_same(&who, &got, &want);
        subs.push((who, sub));
    }
    // Nothing more may come: the store is closed, so every stream ends, and any event still
    // in one would be a duplicate.
    m.close().await.expect("close");
    for (who, mut sub) in subs {
        let rest = drain_to_end(&mut sub).await;
        assert!(
            rest.is_empty(),
            "{who}: extra events after the last: {rest:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn catch_up_then_live_has_no_gap_and_no_duplicate(case in case()) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(check_case(case));
    }
}

// ---- (b) filters and lifecycle events ----

fn kinds_of(events: &[SubscribedEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.event.kind()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_by_context_prefix_and_kind_and_lifecycle_events_come_through() {
    let mem = MemStorage::new();
    let m = open_mem(&mem).await;
    let specs = [
        ("users", Spec::Context("users")),
        ("team-", Spec::Prefix("team-")),
        (
            "created/deleted",
            Spec::Kinds(vec!["ContextCreated", "ContextDeleted"]),
        ),
        (
            "adapter",
            Spec::Kinds(vec![
                "Activated",
                "Deactivated",
                "Switched",
                "DefaultChanged",
            ]),
        ),
        (
            "team-a values",
            Spec::ContextKinds("team-a", vec!["ValueSet"]),
        ),
        ("all", Spec::All),
    ];
    // Every subscription starts before the first commit, so all of it arrives live.
    let mut subs: Vec<_> = specs
        .iter()
        .map(|(who, spec)| {
            let sub = m
                .subscribe(Offset::FIRST, spec.filter())
                .expect("subscribe");
            (*who, spec.clone(), sub)
        })
        .collect();

    for c in ["users", "team-a", "team-b", "other"] {
        m.create(c).await.unwrap();
    }
    m.set("users", "x", &1u8).await.unwrap();
    m.set("team-a", "k", &2u8).await.unwrap();
    m.update(
        Update::new()
            .set("team-b", "k", &3u8)
            .unwrap()
            .set("other", "k", &4u8)
            .unwrap(),
    )
    .await
    .unwrap();
    let adapter = create_adapter(&m).await.unwrap();
    adapter.activate("team-a").await.unwrap();
    adapter.switch_to("users").await.unwrap();
    adapter.switch_to("team-b").await.unwrap();
    adapter.deactivate("team-b").await.unwrap();
    adapter.set_default(Some("users")).await.unwrap();
    m.delete("other").await.unwrap();
    m.create_recovery_point("p1").await.unwrap();
    m.create("other").await.unwrap();
    m.ack_consumer("audit", Offset(3)).await.unwrap();
    m.set("team-a", "k", &5u8).await.unwrap();

    let switched = |from: Option<&str>, to: &str| Event::Switched {
        from: from.map(str::to_string),
        to: to.to_string(),
    };
    for (who, spec, sub) in &mut subs {
        let want = expected(&m, Offset::FIRST, spec).await;
        let got = take(sub, want.len()).await;
        assert_same(who, &got, &want);
        // Hand-written expectations, so that a reference filter that agrees with a wrong
        // engine filter cannot hide it.
        match *who {
            "users" => {
                assert_eq!(
                    kinds_of(&got),
                    [
                        "ContextCreated",
                        "ValueSet",
                        "Switched",
                        "Switched",
                        "DefaultChanged"
                    ]
                );
                assert_eq!(got[2].event, switched(None, "users"));
                // The switch away from "users" concerns it too.
                assert_eq!(got[3].event, switched(Some("users"), "team-b"));
            }
            "team-" => {
                assert_eq!(
                    kinds_of(&got),
                    [
                        "ContextCreated",
                        "ContextCreated",
                        "ValueSet",
                        "ValueSet",
                        "Activated",
                        "Switched",
                        "Deactivated",
                        "ValueSet"
                    ]
                );
                // The multi-context commit: only its "team-b" event, at index 0.
                assert_eq!(got[3].index, 0);
                assert!(
                    matches!(&got[3].event, Event::ValueSet { context, .. } if context == "team-b")
                );
            }
            "created/deleted" => {
                let names: Vec<(&str, &str)> = got
                    .iter()
                    .map(|e| (e.event.kind(), e.event.context().unwrap()))
                    .collect();
                assert_eq!(
                    names,
                    [
                        ("ContextCreated", "users"),
                        ("ContextCreated", "team-a"),
                        ("ContextCreated", "team-b"),
                        ("ContextCreated", "other"),
                        ("ContextDeleted", "other"),
                        ("ContextCreated", "other"),
                    ]
                );
            }
            "adapter" => {
                let events: Vec<Event> = got.iter().map(|e| e.event.clone()).collect();
                assert_eq!(
                    events,
                    [
                        Event::Activated {
                            context: "team-a".into()
                        },
                        switched(None, "users"),
                        switched(Some("users"), "team-b"),
                        Event::Deactivated {
                            context: "team-b".into()
                        },
                        Event::DefaultChanged {
                            context: Some("users".into())
                        },
                    ]
                );
            }
            "team-a values" => {
                assert_eq!(got.len(), 2);
                assert!(got.iter().all(|e| e.event.kind() == "ValueSet"));
            }
            "all" => {
                // Events with no context come through only unfiltered.
                let kinds = kinds_of(&got);
                assert!(kinds.contains(&"RecoveryPointCreated"));
                assert!(kinds.contains(&"ConsumerAcked"));
                let commits = m.events(Offset::FIRST).await.unwrap();
                let total: usize = commits.iter().map(|c| c.events.len()).sum();
                assert_eq!(got.len(), total);
            }
            other => unreachable!("{other}"),
        }
    }
    m.close().await.unwrap();
    for (who, _, mut sub) in subs {
        let rest = drain_to_end(&mut sub).await;
        assert!(rest.is_empty(), "{who}: extra events {rest:?}");
    }
}

#[test]
fn filter_matches_follows_its_documentation() {
    let set = |c: &str| Event::ValueSet {
        context: c.into(),
        key: "k".into(),
        value: Default::default(),
    };
    let switch = Event::Switched {
        from: Some("old".into()),
        to: "new".into(),
    };
    let point = Event::RecoveryPointCreated { label: "p".into() };
    assert!(Filter::all().matches(&point));
    assert!(!Filter::all().context("x").matches(&point));
    assert!(Filter::all().context("old").matches(&switch));
    assert!(Filter::all().context("new").matches(&switch));
    assert!(Filter::all().prefix("ol").matches(&switch));
    assert!(
        !Filter::all().context("ne").matches(&switch),
        "names are exact"
    );
    assert!(Filter::all().context("a").context("b").matches(&set("b")));
    assert!(Filter::all().context("a").prefix("b").matches(&set("bc")));
    assert!(!Filter::all().context("a").prefix("b").matches(&set("cb")));
    assert!(Filter::all().kinds(["ValueSet"]).matches(&set("x")));
    assert!(!Filter::all().kinds(["ValueSet"]).matches(&switch));
    assert!(
        !Filter::all()
            .context("x")
            .kinds(["Switched"])
            .matches(&set("x")),
        "kind and context must both match"
    );
    assert!(Filter::all()
        .kinds(["ValueRemoved"])
        .kinds(["ValueSet"])
        .matches(&set("x")));
}

// ---- (c) a slow subscriber never blocks writers ----

/// Far more than the live buffer (`LIVE_BUFFER_BATCHES` = 1024 batches) plus the subscription's
/// own channel (1024 events).
const MANY: u64 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_never_blocks_writers_and_catches_up_from_the_log() {
    let mem = MemStorage::new();
    let m = open_mem(&mem).await;
    m.create("c").await.unwrap();
    let mut slow = m.subscribe(Offset::FIRST, Filter::all()).unwrap();
    // A filtered one too: it skips most commits, so its channel never fills, yet it lags.
    let mut sparse = m
        .subscribe(Offset::FIRST, Filter::all().context("rare"))
        .unwrap();
    m.create("rare").await.unwrap();

    let started = Instant::now();
    let writes = async {
        for i in 0..MANY {
            // Each commit awaited: one batch each.
            m.set("c", "k", &i).await.unwrap();
            if i == MANY / 2 {
                m.set("rare", "k", &i).await.unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), writes)
        .await
        .expect("writers finish although a subscriber reads nothing (no deadlock)");
    let write_time = started.elapsed();
    let last = m.last_offset();
    assert_eq!(last, Offset(MANY + 3));
    let log = m.stats().log;
    assert!(
        log.writes as usize > 2 * 1024,
        "each commit its own batch, so that the live buffer overflows: {log:?}"
    );

    let want = expected(&m, Offset::FIRST, &Spec::All).await;
    assert_eq!(want.len() as u64, last.0);
    let got = take(&mut slow, want.len()).await;
    assert_same("slow subscriber", &got, &want);
    let offsets: Vec<u64> = got.iter().map(|e| e.offset.0).collect();
    assert_eq!(offsets, (1..=last.0).collect::<Vec<_>>(), "no gap");

    let want_sparse = expected(&m, Offset::FIRST, &Spec::Context("rare")).await;
    assert_eq!(want_sparse.len(), 2);
    let got_sparse = take(&mut sparse, want_sparse.len()).await;
    assert_same("sparse subscriber", &got_sparse, &want_sparse);

    // Caught up, it is live again.
    let r = m.set("rare", "k", &0u8).await.unwrap();
    let next = take(&mut slow, 1).await;
    assert_eq!(next[0].offset, r.offset);
    let next = take(&mut sparse, 1).await;
    assert_eq!(next[0].offset, r.offset);
    m.close().await.unwrap();
    assert!(drain_to_end(&mut slow).await.is_empty());
    assert!(drain_to_end(&mut sparse).await.is_empty());
    eprintln!("{MANY} commits past a stalled subscriber in {write_time:?}");
}

// ---- (d) the stream ends when the store closes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_after_close() {
    let mem = MemStorage::new();
    let m = open_mem(&mem).await;
    let mut live = m.subscribe(Offset::FIRST, Filter::all()).unwrap();
    m.create("c").await.unwrap();
    for i in 0..5u8 {
        m.set("c", "k", &i).await.unwrap();
    }
    let got = take(&mut live, 6).await;
    assert_eq!(got.last().unwrap().offset, Offset(6));
    // One that has read nothing yet.
    let mut unread = m.subscribe(Offset::FIRST, Filter::all()).unwrap();
    let pending = m.subscribe(m.last_offset().next(), Filter::all()).unwrap();

    m.close().await.unwrap();
    assert!(drain_to_end(&mut live).await.is_empty());
    // Whatever it delivers is the log's start, in order, and then it ends.
    let rest = drain_to_end(&mut unread).await;
    assert!(rest.len() <= 6, "{rest:?}");
    assert_same("unread", &rest, &got[..rest.len()]);
    let mut pending = pending;
    assert!(drain_to_end(&mut pending).await.is_empty());

    // A subscription asked for after close ends at once (or is refused).
    match m.subscribe(Offset::FIRST, Filter::all()) {
        Err(Error::Closed) => {}
        Ok(mut sub) => {
            let items = drain_to_end(&mut sub).await;
            assert!(items.len() <= 6, "{items:?}");
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
    assert!(matches!(m.set("c", "k", &9u8).await, Err(Error::Closed)));
}

// ---- (e) durable consumers ----

fn fs_config(dir: &std::path::Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_consumer_resumes_after_its_acknowledged_offset_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let m = create_manager_with_config(fs_config(tmp.path()))
        .await
        .unwrap();
    m.create("orders").await.unwrap();
    for i in 0..9u32 {
        m.set("orders", &format!("o{i}"), &i).await.unwrap();
    }
    assert_eq!(m.last_offset(), Offset(10));
    assert_eq!(m.consumer_position("billing"), Offset::ZERO);

    // A new consumer starts at the beginning.
    let mut sub = m.subscribe_durable("billing", Filter::all()).unwrap();
    let first = take(&mut sub, 6).await;
    assert_eq!(first[0].offset, Offset::FIRST);
    let processed = first.last().unwrap().offset;
    assert_eq!(processed, Offset(6));
    let ack = m.ack_consumer("billing", processed).await.unwrap();
    assert_eq!(m.consumer_position("billing"), processed);
    // Positions never move backwards: an older acknowledgement is logged, and ignored.
    let stale = m.ack_consumer("billing", Offset(3)).await.unwrap();
    assert_eq!(m.consumer_position("billing"), processed);
    // Consumers are independent.
    m.ack_consumer("mailer", Offset(2)).await.unwrap();
    assert_eq!(m.consumer_position("mailer"), Offset(2));
    assert_eq!(m.consumer_position("billing"), processed);
    // Invalid names are refused, like recovery point labels.
    assert!(matches!(
        m.ack_consumer("", Offset(1)).await,
        Err(Error::InvalidInput(InvalidInput::RecoveryPointLabel { .. }))
    ));
    assert!(matches!(
        m.subscribe_durable("", Filter::all()),
        Err(Error::InvalidInput(_))
    ));
    drop(sub);
    m.set("orders", "late", &1u8).await.unwrap();
    let last_before_close = m.last_offset();
    m.close().await.unwrap();

    let m = create_manager_with_config(fs_config(tmp.path()))
        .await
        .unwrap();
    assert_eq!(
        m.consumer_position("billing"),
        processed,
        "survives a restart"
    );
    assert_eq!(m.consumer_position("mailer"), Offset(2));
    let mut sub = m.subscribe_durable("billing", Filter::all()).unwrap();
    let rest = take(&mut sub, (last_before_close.0 - processed.0) as usize).await;
    assert_eq!(
        rest[0].offset,
        processed.next(),
        "resumes right after the ack"
    );
    assert_same(
        "resumed billing",
        &rest,
        &expected(&m, processed.next(), &Spec::All).await,
    );
    // The acknowledgements are events in the log, the stale one included.
    let acks: Vec<(Offset, Event)> = m
        .events(Offset::FIRST)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|c| {
            let offset = c.offset;
            c.events
                .into_iter()
                .filter(|e| e.kind() == "ConsumerAcked")
                .map(move |e| (offset, e))
        })
        .collect();
    let acked = |consumer: &str, offset: u64| Event::ConsumerAcked {
        consumer: consumer.into(),
        offset: Offset(offset),
    };
    assert_eq!(
        acks,
        [
            (ack.offset, acked("billing", 6)),
            (stale.offset, acked("billing", 3)),
            (stale.offset.next(), acked("mailer", 2)),
        ]
    );

    // A newer ack moves it on; it survives a snapshot too.
    let now = m.last_offset();
    m.ack_consumer("billing", now).await.unwrap();
    assert_eq!(m.consumer_position("billing"), now);
    let snap = m.snapshot_now().await.unwrap();
    m.close().await.unwrap();
    let m = create_manager_with_config(fs_config(tmp.path()))
        .await
        .unwrap();
    assert_eq!(m.open_report().snapshot, Some(snap));
    assert_eq!(m.open_report().replayed, 0);
    assert_eq!(m.consumer_position("billing"), now);
    let mut sub = m.subscribe_durable("billing", Filter::all()).unwrap();
    let next = take(&mut sub, 1).await;
    assert_eq!(next[0].offset, now.next(), "the ack commit itself");
    assert!(matches!(next[0].event, Event::ConsumerAcked { .. }));
    m.close().await.unwrap();
}

/// Acknowledging an offset the log has not reached would make the consumer skip commits that
/// do not exist yet the next time it subscribes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_past_the_end_is_refused() {
    let mem = MemStorage::new();
    let m = open_mem(&mem).await;
    m.create("c").await.unwrap();
    let last = m.last_offset();
    let result = m.ack_consumer("billing", Offset(last.0 + 100)).await;
    assert!(
        matches!(result, Err(Error::OffsetOutOfRange { .. })),
        "accepted an ack of an offset that does not exist: {result:?}"
    );
    // What would go wrong otherwise: the next commits never delivered to the consumer. With
    // the ack refused, the consumer (with no position yet) gets everything from the start.
    m.set("c", "k", &1u8).await.unwrap();
    let mut sub = m.subscribe_durable("billing", Filter::all()).unwrap();
    let got = take(&mut sub, 2).await;
    let offsets: Vec<Offset> = got.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![last, last.next()]);
}

// ---- a read error ends the stream ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_error_is_delivered_once_then_the_stream_ends() {
    let mem = MemStorage::new();
    let m = open_mem(&mem).await;
    m.create("c").await.unwrap();
    // Enough to seal the first 64 KiB segment.
    let filler = "x".repeat(1000);
    while m.stats().log.bytes < 100 * 1024 {
        m.set("c", "k", &filler).await.unwrap();
    }
    let snap = m.snapshot_now().await.unwrap();
    m.close().await.unwrap();
    // Damage a record in the middle of the sealed segment; open starts from the snapshot, so
    // it does not read that record (sealed segments are not verified at open).
    let seg = std::path::Path::new("store/wal/00000000000000000001.seg");
    let pos = 32 * 1024;
    let byte = mem.durable_bytes(seg).unwrap()[pos];
    mem.corrupt(seg, pos as u64, &[byte ^ 0x5a]).unwrap();
    let m = open_mem(&mem).await;
    assert_eq!(m.open_report().snapshot, Some(snap));

    let mut sub = m.subscribe(Offset::FIRST, Filter::all()).unwrap();
    let mut delivered = Vec::new();
    let error = loop {
        match tokio::time::timeout(PATIENCE, sub.next()).await {
            Ok(Some(Ok(e))) => delivered.push(e.offset),
            Ok(Some(Err(e))) => break e,
            Ok(None) => panic!("ended without the error, after {delivered:?}"),
            Err(_) => panic!("stalled after {} events", delivered.len()),
        }
    };
    assert!(error.is_corruption(), "{error}");
    // What came before it is the log's start, in order, with no gap. (It may be nothing: a
    // catch-up step reads up to 1024 commits and delivers none of them if one fails.)
    let n = delivered.len() as u64;
    assert!(n < snap.0, "{n} of {}", snap.0);
    assert_eq!(delivered, (1..=n).map(Offset).collect::<Vec<_>>());
    assert!(
        tokio::time::timeout(PATIENCE, sub.next())
            .await
            .expect("ends")
            .is_none(),
        "one error, then the end"
    );
    // The live end of the log is still served to a subscription that starts past the damage.
    let mut tail = m.subscribe(snap, Filter::all()).unwrap();
    assert_eq!(take(&mut tail, 1).await[0].offset, snap);
    m.close().await.unwrap();
}
