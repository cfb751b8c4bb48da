//! Compaction keeps what it promises: the oldest snapshot and recovery point stay readable,
//! offsets before the first kept record are refused, and the compacted range stays readable
//! after later snapshots prune the one compaction relied on.

mod engine_errors_support;

use ctxlog::error::Error;
use ctxlog::storage::MemStorage;
use ctxlog::wal::WalError;
use ctxlog::{ContextManager, Offset};
use engine_errors_support::{assert_same, fill, open};

fn segment_firsts(m: &ContextManager) -> Vec<u64> {
    m.log().segments().iter().map(|(o, _)| o.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_keeps_the_oldest_snapshot_and_point() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let at = fill(&m, 250).await;
    let segments = segment_firsts(&m);
    assert!(segments.len() >= 4, "{segments:?}");

    // No snapshot yet: nothing can go.
    assert!(m.compact(m.last_offset()).await.unwrap().is_empty());

    let snap = m.snapshot_now().await.unwrap(); // 250
    let point = m.create_recovery_point("keep").await.unwrap(); // 251
    m.set("c", "after", &1).await.unwrap();
    let mut at = at;
    for k in at.len() as u64..=m.last_offset().0 {
        at.push(m.state_at(Offset(k)).await.unwrap());
    }
    let limit = (snap.0 + 1).min(point.0);

    // `before` bounds it too: no snapshot at or before `before - 1`, so nothing can go (the
    // compacted log must start right after a snapshot).
    let early = Offset(segments[1] + 1);
    let removed = m.compact(early).await.unwrap();
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(segment_firsts(&m)[0], segments[0]);

    let removed = m.compact(m.last_offset()).await.unwrap();
    assert!(!removed.is_empty(), "compaction removed nothing");
    let first = segment_firsts(&m)[0];
    assert!(
        first <= limit,
        "removed records at or after {limit}: first is {first}"
    );
    // Exactly the segments wholly before the limit went.
    let kept: Vec<u64> = segments
        .iter()
        .zip(segments.iter().skip(1).map(Some).chain([None]))
        .filter(|(_, next)| next.is_none_or(|n| *n > limit))
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(segment_firsts(&m)[..kept.len()], kept[..]);
    // The compaction point is right after its base snapshot; the first kept segment may start
    // a little earlier (segments go whole).
    assert_eq!(m.state().compacted_before(), snap.next());

    // Offsets from the snapshot on are still readable, from the snapshot, the point and the log.
    for k in snap.0..at.len() as u64 {
        let s = m.state_at(Offset(k)).await.unwrap();
        assert_same(&s, &at[k as usize], &format!("state_at({k})"));
    }
    assert_eq!(m.state_at("keep").await.unwrap().offset(), point);
    m.restore("keep").await.unwrap();
    // Offsets before the first kept record are refused.
    assert!(matches!(
        m.state_at(Offset(1)).await,
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(!m.history("c").await.unwrap().is_empty());
    // Reading commits that are gone is refused (the log's error, not a silent gap).
    let gone = m.events(Offset(1)).await;
    assert!(
        matches!(
            gone,
            Err(Error::OffsetOutOfRange { .. })
                | Err(Error::Persistence(WalError::OffsetOutOfRange { .. }))
        ),
        "{:?}",
        gone.map(|c| c.len())
    );
    let kept_commits = m.events(Offset(first)).await.unwrap();
    assert_eq!(kept_commits.first().map(|c| c.offset), Some(Offset(first)));

    let state = m.state();
    m.close().await.unwrap();
    let m = open(&mem).await;
    assert_same(&m.state(), &state, "reopen");
    assert_eq!(segment_firsts(&m)[0], first);
    for k in snap.0..at.len() as u64 {
        let s = m.state_at(Offset(k)).await.unwrap();
        assert_same(&s, &at[k as usize], &format!("after reopen: state_at({k})"));
    }
}

/// A recovery point older than the oldest snapshot: compaction must keep what `state_at` of
/// that point needs (a snapshot at or before it, or the log from the start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_keeps_old_recovery_points_readable() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let at = fill(&m, 100).await;
    let point = m.create_recovery_point("old").await.unwrap(); // 101
    let at_point = m.state_at(point).await.unwrap();
    let _ = fill_more(&m, 150).await;
    m.snapshot_now().await.unwrap(); // ~251, newer than the point
                                     // No snapshot at or before the point: compaction keeps everything.
    let removed = m.compact(m.last_offset()).await.unwrap();
    assert!(removed.is_empty(), "{removed:?}");
    let s = m.state_at("old").await;
    assert!(
        s.as_ref().is_ok_and(|s| *s == at_point),
        "state_at(recovery point {point}) after compaction: {:?}",
        s.map(|s| s.offset())
    );
    let r = m.restore("old").await;
    assert!(r.is_ok(), "restore to a kept recovery point: {r:?}");
    // The restored values are those of the point (the restore itself is a newer change).
    let values = |c: &ctxlog::state::ContextState| {
        c.values()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        values(&m.get("c").unwrap()),
        values(at[100].context("c").unwrap())
    );
}

/// Later snapshots prune the one compaction kept: `state_at` must still serve the offsets the
/// store says it has (`resolve` accepts them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_range_stays_readable_after_snapshot_pruning() {
    let mem = MemStorage::new();
    let m = open(&mem).await;
    let mut at = fill(&m, 250).await;
    let snap = m.snapshot_now().await.unwrap();
    let removed = m.compact(m.last_offset()).await.unwrap();
    assert!(!removed.is_empty());
    at.push((*m.state()).clone()); // the compaction's own commit
                                   // Three more snapshots; the store keeps three, so the one compaction relied on goes.
    for round in 0..3 {
        for i in 0..5 {
            m.set("c", &format!("r{round}"), &i).await.unwrap();
            // The live state is the state at its offset.
            at.push((*m.state()).clone());
        }
        m.snapshot_now().await.unwrap();
    }
    assert_eq!(at.len() as u64, m.last_offset().0 + 1);
    for k in snap.0..=m.last_offset().0 {
        let s = m.state_at(Offset(k)).await;
        assert!(
            s.as_ref().is_ok_and(|s| *s == at[k as usize]),
            "state_at({k}) after compaction at {snap} and pruning: {:?}",
            s.map(|s| s.offset())
        );
    }
}

async fn fill_more(m: &ContextManager, n: u64) -> Offset {
    for i in 0..n {
        m.set("c", &format!("m{}", i % 7), &format!("{i:>1000}"))
            .await
            .unwrap();
    }
    m.last_offset()
}
