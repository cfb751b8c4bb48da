//! Crashes while commits are in flight: crash images taken at moments the writer does not
//! control, each reopened and checked to be a prefix of the commits (every acknowledged one
//! included when the durability mode promises it), and usable afterwards.

mod engine_model_support;

use ctxlog::state::State;
use ctxlog::storage::{CrashMode, MemStorage};
use ctxlog::{create_manager_with_config, ContextManager, Durability, Offset, Update};
use engine_model_support::config;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const IN_FLIGHT_COMMITS: u64 = 260;
const IN_FLIGHT_CONTEXTS: [&str; 3] = ["c0", "c1", "c2"];

type Contents = BTreeMap<String, BTreeMap<String, Json>>;

/// The commit at `offset` of the in-flight workload, applied to `model` (and run on `m` if
/// given). Offsets 1-3 create the contexts; every 10th commit sets a key of two contexts in one
/// batch; the others set one key to a ~700-byte value, so that segments rotate.
async fn in_flight_commit(offset: u64, model: &mut Contents, m: Option<&ContextManager>) {
    if offset <= 3 {
        let name = IN_FLIGHT_CONTEXTS[offset as usize - 1];
        model.insert(name.to_string(), BTreeMap::new());
        if let Some(m) = m {
            let r = m.create(name).await.expect("create");
            assert_eq!(r.offset, Offset(offset));
        }
    } else if offset.is_multiple_of(10) {
        for name in ["c0", "c1"] {
            model
                .get_mut(name)
                .expect("created")
                .insert("batch".into(), json!(offset));
        }
        if let Some(m) = m {
            let update = Update::new()
                .set("c0", "batch", &offset)
                .and_then(|u| u.set("c1", "batch", &offset))
                .expect("encodes");
            let r = m.update(update).await.expect("update");
            assert_eq!(r.offset, Offset(offset));
        }
    } else {
        let name = IN_FLIGHT_CONTEXTS[(offset % 3) as usize];
        let key = format!("k{}", offset % 5);
        let value = json!({ "o": offset, "pad": "x".repeat(700) });
        model
            .get_mut(name)
            .expect("created")
            .insert(key.clone(), value.clone());
        if let Some(m) = m {
            let r = m.set(name, &key, &value).await.expect("set");
            assert_eq!(r.offset, Offset(offset));
        }
    }
}

fn contents(state: &State) -> Contents {
    state
        .contexts()
        .map(|(n, c)| {
            let values = c
                .values()
                .map(|(k, v)| (k.to_string(), v.decode::<Json>().expect("decodes")))
                .collect();
            (n.to_string(), values)
        })
        .collect()
}

async fn crash_while_in_flight(durability: Durability) {
    let mut expected = vec![Contents::new()];
    for offset in 1..=IN_FLIGHT_COMMITS {
        let mut next = expected.last().cloned().unwrap_or_default();
        in_flight_commit(offset, &mut next, None).await;
        expected.push(next);
    }

    let mem = MemStorage::new();
    let mut cfg = config(&mem);
    cfg.durability = durability;
    cfg.snapshot_every_commits = Some(20);
    let m = create_manager_with_config(cfg.clone()).await.expect("open");
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (m, acked) = (m.clone(), Arc::clone(&acked));
        tokio::spawn(async move {
            let mut scratch = Contents::new();
            for offset in 1..=IN_FLIGHT_COMMITS {
                in_flight_commit(offset, &mut scratch, Some(&m)).await;
                acked.store(offset, Ordering::SeqCst);
            }
        })
    };
    // Crash images at moments the writer does not control: (acknowledged before, seed, image).
    let mut images = Vec::new();
    let mut seed = 0xC0FFEE_u64;
    loop {
        let finished = writer.is_finished();
        let before = acked.load(Ordering::SeqCst);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        images.push((before, seed, mem.crash_image(CrashMode::Torn(seed))));
        images.push((before, 0, mem.crash_image(CrashMode::ProcessKill)));
        if finished {
            break;
        }
        // Block this worker briefly (the writer runs on the other one and on the engine's
        // threads), so that images land at many different points of the pipeline.
        std::thread::sleep(Duration::from_micros(100 + seed % 500));
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    m.close().await.expect("close");
    assert!(
        m.log().segments().len() > 2,
        "the workload rotates segments"
    );

    for (before, seed, image) in images {
        let what = format!("{durability:?}, seed {seed}, {before} acknowledged");
        let mut cfg = cfg.clone();
        cfg.storage = Arc::new(image.clone());
        let m2 = create_manager_with_config(cfg.clone()).await.expect(&what);
        let n = m2.last_offset().0;
        assert!(n <= IN_FLIGHT_COMMITS, "{what}: offset {n}");
        if durability == Durability::Always || seed == 0 {
            // Always: acknowledged means durable. A process kill keeps everything written.
            assert!(n >= before, "{what}: only {n} commits survived");
        }
        assert_eq!(
            contents(&m2.state()),
            expected[n as usize],
            "{what}: the store is not the first {n} commits"
        );
        // New commits after the crash reuse the lost offsets; a snapshot taken before the
        // crash must never stand in for them.
        let r = m2.create("after-crash").await.expect(&what);
        assert_eq!(r.offset, Offset(n + 1));
        let after = m2.state();
        m2.close().await.expect("close");
        let m3 = create_manager_with_config(cfg).await.expect(&what);
        assert_eq!(*m3.state(), *after, "{what}: reopen after a commit");
        m3.close().await.expect("close");
    }
}

/// Always mode: a crash at any moment keeps at least every acknowledged commit, and the store
/// is always a prefix of the commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_commits_in_flight_always() {
    crash_while_in_flight(Durability::Always).await;
}

/// Batched mode: a power loss may take back acknowledged commits but leaves a prefix (and a
/// snapshot of lost commits is set aside, never used); a process kill loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_commits_in_flight_batched() {
    crash_while_in_flight(Durability::Batched {
        max_delay: Duration::from_millis(5),
    })
    .await;
}
