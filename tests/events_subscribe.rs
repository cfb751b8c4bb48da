//! Subscriptions: catch-up from the log then live, with no gap and no duplicate across the
//! switch; a slow subscriber never blocks writers; the stream ends when the store closes or
//! after a read error. Filters are in `events_filters`, durable consumers in `events_durable`.
//!
//! Every subscription is checked against the log itself (`events()`), filtered by a reference
//! filter (`subscribe_support::Spec`) written from `Filter`'s documentation, not by
//! `Filter::matches`.

mod subscribe_support;

use ctxlog::error::Error;
use ctxlog::manager::{Filter, SubscribedEvent, Subscription};
use ctxlog::storage::MemStorage;
use ctxlog::{create_adapter, ContextManager, Offset, Update};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subscribe_support::{assert_same, drain_to_end, expected, open_mem, take, Spec, PATIENCE};
use tokio::sync::watch;

// ---- catch-up to live under concurrent writers: a property ----

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

// ---- a slow subscriber never blocks writers ----

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

// ---- the stream ends when the store closes ----

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
