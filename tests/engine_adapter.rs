//! The context adapter: active set, current and default contexts survive restarts and crashes,
//! switches are atomic, statuses are right.

use ctxlog::adapter::{Activity, ContextStatus};
use ctxlog::error::{Error, InvalidInput};
use ctxlog::event::Event;
use ctxlog::storage::{CrashMode, MemStorage};
use ctxlog::{
    create_adapter, create_adapter_with_config, create_manager_with_config, AdapterConfig, Config,
    ContextAdapter, ContextManager, Offset,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn config(mem: &MemStorage) -> Config {
    let mut c = Config::new("store");
    c.storage = Arc::new(mem.clone());
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c.snapshot_every_commits = Some(25);
    c
}

async fn open(mem: &MemStorage) -> ContextManager {
    create_manager_with_config(config(mem))
        .await
        .expect("open the store")
}

/// What the adapter shows: active set, current context, stored default, every status.
#[derive(Debug, PartialEq)]
struct View {
    active: Vec<String>,
    current: Option<String>,
    default: Option<String>,
    statuses: Vec<ContextStatus>,
}

fn view(m: &ContextManager, a: &ContextAdapter) -> View {
    View {
        active: a.active(),
        current: a.current(),
        default: m.state().default_context().map(str::to_string),
        statuses: a.statuses(),
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_state_survives_restart() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    for c in ["a", "b", "c", "d"] {
        m.create(c).await.unwrap();
    }
    let with_default_a = AdapterConfig {
        default_context: Some("a".into()),
        create_missing: false,
    };
    let before = m.last_offset();
    let adapter = create_adapter_with_config(&m, with_default_a.clone())
        .await
        .unwrap();
    assert_eq!(m.last_offset(), before.next(), "the default is a commit");
    assert_eq!(
        adapter.current().as_deref(),
        Some("a"),
        "none current: default"
    );
    assert_eq!(m.state().current(), None);

    adapter.activate("b").await.unwrap();
    adapter.activate("c").await.unwrap();
    adapter.switch_to("d").await.unwrap();
    assert_eq!(adapter.active(), strings(&["b", "c", "d"]));
    adapter.deactivate("c").await.unwrap();
    adapter.switch_to("b").await.unwrap();
    assert_eq!(
        adapter.active(),
        strings(&["b"]),
        "the switch deactivated d"
    );
    adapter.activate("d").await.unwrap();
    adapter.set_default(Some("c")).await.unwrap();
    let want = View {
        active: strings(&["b", "d"]),
        current: Some("b".into()),
        default: Some("c".into()),
        statuses: adapter.statuses(),
    };
    assert_eq!(view(&m, &adapter), want);
    assert_eq!(want.statuses.len(), 4);

    let torn = mem.crash_image(CrashMode::Torn(7));
    let power = mem.crash_image(CrashMode::DropUnsynced);
    m.close().await.unwrap();
    for (what, storage) in [("reopen", mem.clone()), ("torn", torn), ("power", power)] {
        let m2 = open(&storage).await;
        let last = m2.last_offset();
        let a2 = create_adapter(&m2).await.unwrap();
        assert_eq!(view(&m2, &a2), want, "{what}");
        // The stored default is kept by an adapter configured with the same one, without a
        // commit; one configured with another default records it.
        let same = AdapterConfig {
            default_context: Some("c".into()),
            create_missing: false,
        };
        create_adapter_with_config(&m2, same).await.unwrap();
        assert_eq!(
            m2.last_offset(),
            last,
            "{what}: no commit for the same default"
        );
        let a3 = create_adapter_with_config(&m2, with_default_a.clone())
            .await
            .unwrap();
        assert_eq!(m2.state().default_context(), Some("a"), "{what}");
        assert_eq!(a3.current().as_deref(), Some("b"), "{what}: current wins");
        m2.close().await.unwrap();
    }

    // Deleting the current context falls back to the default; deleting the default leaves none.
    let m = open(&mem).await;
    let adapter = create_adapter(&m).await.unwrap();
    assert_eq!(adapter.current().as_deref(), Some("b"));
    m.delete("b").await.unwrap();
    assert_eq!(m.state().current(), None);
    assert_eq!(adapter.active(), strings(&["d"]));
    assert_eq!(
        adapter.current().as_deref(),
        Some("a"),
        "falls back to the default"
    );
    m.delete("a").await.unwrap();
    assert_eq!(adapter.current(), None);
    let want = view(&m, &adapter);
    m.close().await.unwrap();
    let m = open(&mem).await;
    let adapter = create_adapter(&m).await.unwrap();
    assert_eq!(view(&m, &adapter), want);
}

const SWITCH_CONTEXTS: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];

/// The context switch number `k` (0-based) goes to.
fn switch_target(k: u64) -> &'static str {
    SWITCH_CONTEXTS[((k * 7 + 3) % 11 % 6) as usize]
}

/// Crash images taken while switches run: after reopen exactly one context is current, it is
/// active, the context it replaced is not (unless it is the same), the pinned context stays
/// active, and the current one is the target of the last switch in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_is_atomic_under_crash() {
    const SWITCHES: u64 = 200;
    let mem = MemStorage::new();
    let m = open(&mem).await;
    for c in SWITCH_CONTEXTS.iter().chain(&["pinned"]) {
        m.create(c).await.unwrap();
    }
    let adapter = create_adapter(&m).await.unwrap();
    adapter.activate("pinned").await.unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let switcher = {
        let (adapter, acked) = (adapter.clone(), Arc::clone(&acked));
        tokio::spawn(async move {
            for k in 0..SWITCHES {
                let r = adapter.switch_to(switch_target(k)).await.unwrap();
                acked.store(r.offset.0, Ordering::SeqCst);
            }
        })
    };
    let mut images = Vec::new();
    let mut seed = 0x5EED_u64;
    loop {
        let finished = switcher.is_finished();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let before = acked.load(Ordering::SeqCst);
        images.push((before, seed, mem.crash_image(CrashMode::Torn(seed))));
        images.push((before, 0, mem.crash_image(CrashMode::DropUnsynced)));
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_micros(100 + seed % 400));
        tokio::task::yield_now().await;
    }
    switcher.await.unwrap();

    for (before, seed, image) in images {
        let what = format!("seed {seed}, {before} acknowledged");
        let m2 = open(&image).await;
        assert!(m2.last_offset().0 >= before, "{what}: lost a switch");
        let state = m2.state();
        let switches: Vec<(Option<String>, String)> = m2
            .events(Offset(1))
            .await
            .unwrap()
            .into_iter()
            .flat_map(|c| c.events)
            .filter_map(|e| match e {
                Event::Switched { from, to } => Some((from, to)),
                _ => None,
            })
            .collect();
        let mut active: Vec<&str> = state.active().collect();
        active.sort();
        match switches.last() {
            None => {
                assert_eq!(state.current(), None, "{what}");
                assert_eq!(active, ["pinned"], "{what}");
            }
            Some((from, to)) => {
                let current = state.current().expect("a current context");
                assert_eq!(current, to, "{what}");
                assert_eq!(current, switch_target(switches.len() as u64 - 1), "{what}");
                assert!(
                    state.is_active(current),
                    "{what}: current {current} inactive"
                );
                if let Some(from) = from.as_deref().filter(|f| *f != current) {
                    assert!(!state.is_active(from), "{what}: {from} still active");
                }
                let mut want = vec![current, "pinned"];
                want.sort();
                assert_eq!(active, want, "{what}");
            }
        }
        let a2 = create_adapter(&m2).await.unwrap();
        assert_eq!(a2.current().as_deref(), state.current(), "{what}");
        m2.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_activity_and_version() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let adapter = create_adapter(&m).await.unwrap();
    m.create("a").await.unwrap();
    let b_created = m.create("b").await.unwrap().offset;
    let a_set = m.set("a", "k", &1).await.unwrap().offset;

    let status = |c: &str| adapter.status(c).unwrap();
    assert_eq!(status("a").activity, Activity::Inactive);
    assert_eq!(status("a").version, a_set);
    assert_eq!(status("a").last_change.offset, a_set);
    assert_eq!(status("b").version, b_created);
    assert!(!status("a").current);

    // Activation is adapter state, not content: the context's version does not move.
    adapter.activate("a").await.unwrap();
    assert_eq!(status("a").activity, Activity::Active);
    assert_eq!(status("a").version, a_set);
    assert_eq!(status("a").version, m.state().version("a"));
    assert_eq!(status("b").activity, Activity::Inactive);

    adapter.switch_to("b").await.unwrap();
    assert_eq!(status("b").activity, Activity::Active);
    assert!(status("b").current);
    assert_eq!(status("a").activity, Activity::Active, "a was not current");
    adapter.switch_to("a").await.unwrap();
    assert!(status("a").current && !status("b").current);
    assert_eq!(
        status("b").activity,
        Activity::Inactive,
        "switched away from"
    );

    let b_deleted = m.delete("b").await.unwrap().offset;
    assert_eq!(status("b").activity, Activity::Deleted);
    assert_eq!(status("b").version, b_deleted);
    let a_deleted = m.delete("a").await.unwrap().offset;
    let a = status("a");
    assert_eq!(
        (a.activity, a.current, a.version),
        (Activity::Deleted, false, a_deleted)
    );
    assert_eq!(adapter.current(), None);
    assert!(adapter.active().is_empty());
    assert!(matches!(
        adapter.status("never"),
        Err(Error::NotFound { context }) if context == "never"
    ));

    // A restore brings the contexts back, inactive, at the restore's offset.
    let restored = m.restore(a_set).await.unwrap().offset;
    for c in ["a", "b"] {
        let s = status(c);
        assert_eq!(
            (s.activity, s.version),
            (Activity::Inactive, restored),
            "{c}"
        );
    }
    adapter.switch_to("b").await.unwrap();
    let statuses = adapter.statuses();
    assert_eq!(
        statuses
            .iter()
            .map(|s| s.context.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    m.close().await.unwrap();
    let m2 = open(&mem).await;
    let a2 = create_adapter(&m2).await.unwrap();
    assert_eq!(a2.statuses(), statuses, "statuses after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_refusals_write_nothing() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    m.create("a").await.unwrap();
    let adapter = create_adapter(&m).await.unwrap();
    let last = m.last_offset();
    let not_found = |r: Result<ctxlog::Receipt, Error>| match r {
        Err(Error::NotFound { context }) => context,
        other => panic!("expected NotFound, got {other:?}"),
    };
    assert_eq!(not_found(adapter.switch_to("missing").await), "missing");
    assert_eq!(not_found(adapter.activate("missing").await), "missing");
    assert_eq!(not_found(adapter.deactivate("missing").await), "missing");
    assert_eq!(
        not_found(adapter.set_default(Some("missing")).await),
        "missing"
    );
    assert!(matches!(
        adapter.switch_to("bad\nname").await,
        Err(Error::InvalidInput(InvalidInput::ContextName { .. }))
    ));
    assert!(matches!(
        create_adapter_with_config(
            &m,
            AdapterConfig {
                default_context: Some("missing".into()),
                create_missing: false
            }
        )
        .await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(m.last_offset(), last, "refusals wrote something");
    assert_eq!(m.state().current(), None);

    // With create_missing, a switch to a new context creates it in the same commit.
    let creating = create_adapter_with_config(
        &m,
        AdapterConfig {
            default_context: None,
            create_missing: true,
        },
    )
    .await
    .unwrap();
    let r = creating.switch_to("fresh").await.unwrap();
    assert_eq!(r.offset, last.next(), "one commit");
    assert_eq!(r.versions.get("fresh"), Some(&r.offset));
    let s = creating.status("fresh").unwrap();
    assert_eq!((s.activity, s.current), (Activity::Active, true));
    assert!(m.get("fresh").unwrap().is_empty());
}
