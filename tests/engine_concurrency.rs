//! Concurrency: optimistic updates from many tasks, waiting for offsets, watching versions,
//! scoped trackers, and cancellation of in-flight updates.

use ctxlog::error::{Error, SyncError};
use ctxlog::event::Event;
use ctxlog::storage::{CrashMode, MemStorage};
use ctxlog::{
    create_manager_with_config, Config, ContextManager, ContextTracker, ContextTrackerFactory,
    Offset, Update,
};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::time::timeout;

fn config(mem: &MemStorage) -> Config {
    let mut c = Config::new("store");
    c.storage = Arc::new(mem.clone());
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c.snapshot_every_commits = Some(64);
    c
}

async fn open(mem: &MemStorage) -> ContextManager {
    create_manager_with_config(config(mem))
        .await
        .expect("open the store")
}

/// Generous bound for anything that should happen promptly; a hang fails instead of blocking.
const PROMPT: Duration = Duration::from_secs(20);

/// 32 tasks increment one counter with read-version / update-with-expect / retry on conflict:
/// no increment is lost, every refusal is a `VersionConflict`, and the commits form one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimistic_increments_lose_nothing() {
    const TASKS: u64 = 32;
    const PER_TASK: u64 = 8;
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.create("counter").await.unwrap();
    let base = m.set("counter", "n", &0u64).await.unwrap().offset;

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut conflicts) = (0u64, 0u64);
            let mut offsets = Vec::new();
            while ok < PER_TASK {
                let state = m.state();
                let version = state.version("counter");
                let n: u64 = state
                    .context("counter")
                    .and_then(|c| c.get("n"))
                    .expect("the counter exists")
                    .decode()
                    .unwrap();
                let update = Update::new()
                    .set("counter", "n", &(n + 1))
                    .and_then(|u| u.set("counter", format!("by-{t}"), &(ok + 1)))
                    .unwrap()
                    .expect("counter", version);
                match m.update(update).await {
                    Ok(r) => {
                        assert_eq!(r.versions.get("counter"), Some(&r.offset));
                        assert!(r.offset > version);
                        offsets.push(r.offset);
                        ok += 1;
                    }
                    Err(Error::VersionConflict {
                        context,
                        expected,
                        actual,
                    }) => {
                        assert_eq!(context, "counter");
                        assert_eq!(expected, version);
                        assert!(actual > expected, "{actual} after {expected}");
                        conflicts += 1;
                        if t % 2 == 0 {
                            // The conflicting version is committed, so it becomes visible.
                            let tracker = ContextTracker::new(&m);
                            timeout(PROMPT, tracker.wait_for(actual))
                                .await
                                .expect("the conflicting commit becomes visible")
                                .unwrap();
                            assert!(m.state().version("counter") >= actual);
                        }
                    }
                    Err(e) => panic!("task {t}: expected a version conflict, got {e:?}"),
                }
            }
            (conflicts, offsets)
        }));
    }
    let mut conflicts = 0;
    let mut offsets = BTreeSet::new();
    for task in tasks {
        let (c, o) = timeout(PROMPT, task).await.expect("in time").unwrap();
        conflicts += c;
        for offset in o {
            assert!(offsets.insert(offset), "offset {offset} acknowledged twice");
        }
    }
    let total = TASKS * PER_TASK;
    assert_eq!(m.get_as::<u64>("counter", "n").unwrap(), total);
    assert!(conflicts > 0, "32 tasks on one counter never conflicted");
    // Refused commits write nothing: the log holds exactly the successful ones, right after
    // the setup, and each one incremented the value the one before it wrote.
    let want: BTreeSet<Offset> = (base.0 + 1..=base.0 + total).map(Offset).collect();
    assert_eq!(offsets, want);
    assert_eq!(m.last_offset(), Offset(base.0 + total));
    let commits = m.events(base.next()).await.unwrap();
    for (i, commit) in commits.iter().enumerate() {
        let n = commit.events.iter().find_map(|e| match e {
            Event::ValueSet { key, value, .. } if key == "n" => {
                Some(rmp_serde_decode_u64(value.as_slice()))
            }
            _ => None,
        });
        assert_eq!(n, Some(i as u64 + 1), "commit {}", commit.offset);
    }
    for t in 0..TASKS {
        let by: u64 = m.get_as("counter", &format!("by-{t}")).unwrap();
        assert_eq!(by, PER_TASK);
    }

    let before = m.state();
    m.close().await.unwrap();
    let m2 = open(&mem).await;
    assert_eq!(*m2.state(), *before);
    assert_eq!(m2.get_as::<u64>("counter", "n").unwrap(), total);
}

/// Decodes a MessagePack unsigned integer (what `Value::encode(&u64)` writes).
fn rmp_serde_decode_u64(bytes: &[u8]) -> u64 {
    ctxlog::model::Value::from_msgpack(bytes.to_vec())
        .decode()
        .expect("an integer")
}

/// `wait_for(offset)` never resolves before the offset is visible in `state()`; it resolves for
/// offsets already reached; with a timeout it fails with `SyncError::Timeout` for an offset
/// nobody commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wait_for_resolves_only_once_visible() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.create("w").await.unwrap();
    let base = m.last_offset();
    const WRITERS: u64 = 4;
    const EACH: u64 = 15;
    let tracker = ContextTracker::new(&m);

    let mut waiters = Vec::new();
    for i in 1..=WRITERS * EACH {
        let (m, tracker) = (m.clone(), tracker.clone());
        let target = Offset(base.0 + i);
        waiters.push(tokio::spawn(async move {
            let got = tracker.wait_for(target).await.unwrap();
            let visible = m.state().offset();
            assert!(got >= target, "wait_for({target}) returned {got}");
            assert!(
                visible >= target,
                "wait_for({target}) resolved while state() is at {visible}"
            );
        }));
    }
    tokio::task::yield_now().await;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let m = m.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                m.set("w", &format!("w{w}"), &i).await.unwrap();
            }
        }));
    }
    for task in writers.into_iter().chain(waiters) {
        timeout(PROMPT, task).await.expect("in time").unwrap();
    }
    let last = m.last_offset();
    assert_eq!(last, Offset(base.0 + WRITERS * EACH));

    // Already reached: resolves at once, with the current offset.
    let got = timeout(PROMPT, tracker.wait_for(base)).await.unwrap();
    assert_eq!(got.unwrap(), last);

    // A timeout, for an offset nobody commits.
    let limit = Duration::from_millis(50);
    let impatient = ContextTrackerFactory::new(&m).with_timeout(limit).build();
    let far = Offset(last.0 + 1000);
    let started = std::time::Instant::now();
    match impatient.wait_for(far).await {
        Err(Error::Synchronization(SyncError::Timeout { offset, waited })) => {
            assert_eq!(offset, far);
            assert_eq!(waited, limit);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= limit);
    assert_eq!(m.last_offset(), last, "waiting wrote nothing");

    // With a timeout, an offset that does come in time resolves.
    let patient = ContextTrackerFactory::new(&m).with_timeout(PROMPT).build();
    let next = Offset(last.0 + 1);
    let waiter = tokio::spawn(async move { patient.wait_for(next).await });
    tokio::task::yield_now().await;
    m.set("w", "late", &1).await.unwrap();
    let got = timeout(PROMPT, waiter).await.unwrap().unwrap().unwrap();
    assert!(got >= next);
}

/// A watch on a context sees each change of its version (and only changes to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_version_changes() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let tracker = ContextTracker::new(&m);
    let mut rx = tracker.watch("w").unwrap();
    assert_eq!(*rx.borrow_and_update(), Offset::ZERO, "never existed");

    let created = m.create("w").await.unwrap().offset;
    timeout(PROMPT, rx.changed()).await.unwrap().unwrap();
    assert_eq!(*rx.borrow_and_update(), created);
    assert_eq!(tracker.version("w").unwrap(), created);

    // Commits to other contexts leave the watch alone.
    m.create("other").await.unwrap();
    m.set("other", "k", &1).await.unwrap();
    assert!(!rx.has_changed().unwrap(), "a commit to another context");

    let set = m.set("w", "k", &1).await.unwrap().offset;
    timeout(PROMPT, rx.changed()).await.unwrap().unwrap();
    assert_eq!(*rx.borrow_and_update(), set);
    tracker.check("w", set).unwrap();
    assert!(matches!(
        tracker.check("w", created),
        Err(Error::VersionConflict { expected, actual, .. }) if expected == created && actual == set
    ));

    let deleted = m.delete("w").await.unwrap().offset;
    timeout(PROMPT, rx.changed()).await.unwrap().unwrap();
    assert_eq!(*rx.borrow_and_update(), deleted);

    let restored = m.restore(set).await.unwrap().offset;
    timeout(PROMPT, rx.changed()).await.unwrap().unwrap();
    assert_eq!(*rx.borrow_and_update(), restored);
    assert_eq!(m.get_as::<i32>("w", "k").unwrap(), 1);

    // A follower that only reads the latest value sees versions grow up to the last one.
    let mut follower = tracker.watch("w").unwrap();
    let follow = tokio::spawn(async move {
        let mut seen = vec![*follower.borrow_and_update()];
        while follower.changed().await.is_ok() {
            let v = *follower.borrow_and_update();
            seen.push(v);
            if seen.len() > 1000 || v.0 == u64::MAX {
                break;
            }
            if v >= Offset(restored.0 + 50) {
                break;
            }
        }
        seen
    });
    let mut last = restored;
    for i in 0..50 {
        last = m.set("w", "k", &i).await.unwrap().offset;
    }
    let seen = timeout(PROMPT, follow).await.unwrap().unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&last));
}

/// A scoped tracker answers for its contexts and refuses the others with `OutOfScope`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tracker_rejects_other_contexts() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let a = m.create("a").await.unwrap().offset;
    m.create("b").await.unwrap();
    let scoped = ContextTrackerFactory::new(&m)
        .scoped(["a", "never"])
        .with_timeout(Duration::from_millis(20))
        .build();
    assert_eq!(scoped.version("a").unwrap(), a);
    assert_eq!(scoped.version("never").unwrap(), Offset::ZERO);
    scoped.check("a", a).unwrap();
    assert!(matches!(
        scoped.check("a", Offset(a.0 + 7)),
        Err(Error::VersionConflict { .. })
    ));
    let out = |r: Result<(), Error>| match r {
        Err(Error::Synchronization(SyncError::OutOfScope { context })) => context,
        other => panic!("expected OutOfScope, got {other:?}"),
    };
    assert_eq!(out(scoped.version("b").map(drop)), "b");
    assert_eq!(out(scoped.check("b", Offset::ZERO)), "b");
    assert_eq!(out(scoped.watch("b").map(drop)), "b");
    assert_eq!(out(scoped.version("").map(drop)), "");
    // Unscoped trackers from the same store answer for everything.
    let all = ContextTrackerFactory::new(&m).build();
    assert!(all.version("b").unwrap() > a);
}

/// Polls a future once; `Some` if it finished.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *f).poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

const CANCEL_KEYS: usize = 8;

/// One multi-key, multi-context update: every key of `x` and key `i` of `y` set to `i`.
fn whole(i: u64) -> Update {
    let mut u = Update::new();
    for k in 0..CANCEL_KEYS {
        u = u.set("x", format!("k{k}"), &i).unwrap();
    }
    u.set("y", "i", &i).unwrap()
}

/// Dropping an update future at any point leaves the store with the whole commit or none of
/// it: dropped before its first poll, after one poll (`select!` with a ready branch, a zero
/// timeout, a manual poll), or after several.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_updates_commit_whole_or_not_at_all() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.update(Update::new().create("x").create("y"))
        .await
        .unwrap();
    m.update(whole(0)).await.unwrap();
    let base = m.last_offset();

    let (mut polled, mut finished) = (0u64, 0u64);
    let noise = {
        // Concurrent commits to another context keep the writer busy, so that drops land at
        // different points of the pipeline.
        let m = m.clone();
        tokio::spawn(async move {
            m.create("noise").await.unwrap();
            for i in 0..300u64 {
                m.set("noise", "i", &i).await.unwrap();
            }
        })
    };
    for i in 1..=300u64 {
        match i % 5 {
            0 => {
                // Never polled: nothing may happen.
                drop(m.update(whole(i)));
            }
            1 => {
                polled += 1;
                tokio::select! {
                    biased;
                    r = m.update(whole(i)) => { r.unwrap(); finished += 1; }
                    _ = std::future::ready(()) => {}
                }
            }
            2 => {
                polled += 1;
                if let Ok(r) = timeout(Duration::ZERO, m.update(whole(i))).await {
                    r.unwrap();
                    finished += 1;
                }
            }
            n => {
                polled += 1;
                let mut fut = Box::pin(m.update(whole(i)));
                for _ in 0..n {
                    if let Some(r) = poll_once(&mut fut).await {
                        r.unwrap();
                        finished += 1;
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
    }
    timeout(PROMPT, noise).await.unwrap().unwrap();
    let image = mem.crash_image(CrashMode::ProcessKill);
    m.close().await.unwrap();
    let live = m.state();

    for (what, storage) in [("reopen", mem.clone()), ("process kill", image)] {
        let m2 = open(&storage).await;
        if what == "reopen" {
            assert_eq!(*m2.state(), *live);
        }
        // The state: every key of x and y's key hold the same value.
        let x = m2.get("x").unwrap();
        let values: BTreeSet<u64> = x.values().map(|(_, v)| v.decode().unwrap()).collect();
        assert_eq!(x.len(), CANCEL_KEYS, "{what}");
        assert_eq!(values.len(), 1, "{what}: x is a mix of commits: {values:?}");
        let y: u64 = m2.get_as("y", "i").unwrap();
        assert_eq!(
            values.into_iter().next(),
            Some(y),
            "{what}: x and y disagree"
        );

        // The log: each of these commits holds all 9 sets of one update, never fewer.
        let mut committed = 0;
        for commit in m2.events(base.next()).await.unwrap() {
            let mine: Vec<&Event> = commit
                .events
                .iter()
                .filter(|e| e.concerns("x") || e.concerns("y"))
                .collect();
            if mine.is_empty() {
                continue;
            }
            committed += 1;
            assert_eq!(
                mine.len(),
                CANCEL_KEYS + 1,
                "{what}: commit {}",
                commit.offset
            );
            assert_eq!(commit.events.len(), CANCEL_KEYS + 1);
            let never_polled = commit.events.iter().any(|e| match e {
                Event::ValueSet { context, value, .. } if context == "y" => {
                    rmp_serde_decode_u64(value.as_slice()).is_multiple_of(5)
                }
                _ => false,
            });
            assert!(
                !never_polled,
                "{what}: an update that was never polled committed"
            );
        }
        assert!(
            (finished..=polled).contains(&committed),
            "{what}: {committed} commits, {finished} finished, {polled} polled"
        );
        m2.close().await.unwrap();
    }
}

/// Many tasks waiting and writing while the store closes: every waiter and writer gets an
/// answer (a value or `Closed`), none hangs, and every acknowledged commit survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_under_load_answers_everyone() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.create("c").await.unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let (m, acked) = (m.clone(), Arc::clone(&acked));
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                match m.set("c", &format!("w{w}"), &i).await {
                    Ok(r) => {
                        acked.fetch_max(r.offset.0, Ordering::SeqCst);
                    }
                    Err(Error::Closed) => return i,
                    Err(e) => panic!("writer {w}: {e:?}"),
                }
            }
            unreachable!()
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    m.close().await.unwrap();
    for w in writers {
        timeout(PROMPT, w).await.expect("a writer hangs").unwrap();
    }
    assert!(matches!(m.set("c", "after", &1).await, Err(Error::Closed)));
    let last = acked.load(Ordering::SeqCst);
    assert!(last > 1, "nothing was written");
    let m2 = open(&mem).await;
    assert!(
        m2.last_offset().0 >= last,
        "an acknowledged commit was lost"
    );
}

/// A waiter for an offset that will never come, when the store closes: it must get an answer
/// (`Closed`) instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_returns_when_the_store_closes() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.create("c").await.unwrap();
    let tracker = ContextTracker::new(&m);
    let never = Offset(m.last_offset().0 + 5);
    let waiter = tokio::spawn(async move { tracker.wait_for(never).await });
    tokio::task::yield_now().await;
    m.close().await.unwrap();
    let answer = timeout(Duration::from_secs(2), waiter).await;
    assert!(
        matches!(answer, Ok(Ok(Err(Error::Closed)))),
        "wait_for after close: {answer:?}"
    );
}
