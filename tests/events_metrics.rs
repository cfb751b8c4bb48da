//! Metrics: known work gives exactly known counts.
//!
//! The engine records from its own threads (writer, completion, snapshot) and from tokio
//! tasks, so a thread-local recorder would miss most of it: this binary installs a global
//! `DebuggingRecorder` once, and its tests take turns (`SERIAL`). The debugging recorder's
//! snapshots drain what they read, so each test drains first and then adds snapshots up.

use ctxlog::manager::Filter;
use ctxlog::telemetry as t;
use ctxlog::{create_manager_with_config, Config, ContextManager, Offset, Update};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use tokio::sync::{Mutex, MutexGuard};

static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Installs the recorder (once per process), waits for our turn, and drains what is there.
async fn exclusive() -> (MutexGuard<'static, ()>, &'static Snapshotter) {
    let guard = SERIAL.lock().await;
    let snapshotter = SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only global recorder of this test binary");
        snapshotter
    });
    let _ = snapshotter.snapshot();
    (guard, snapshotter)
}

/// Counters and histogram samples added up over snapshots, with units and descriptions.
#[derive(Debug, Default)]
struct Totals {
    counters: HashMap<String, u64>,
    histograms: HashMap<String, Vec<f64>>,
    described: HashMap<String, Option<&'static str>>,
}

impl Totals {
    fn take(&mut self, s: &Snapshotter) {
        for (key, unit, description, value) in s.snapshot().into_vec() {
            let name = key.key().name().to_string();
            if description.is_some() {
                self.described
                    .insert(name.clone(), unit.map(|u| u.as_str()));
            }
            match value {
                DebugValue::Counter(n) => *self.counters.entry(name).or_default() += n,
                DebugValue::Histogram(v) => self
                    .histograms
                    .entry(name)
                    .or_default()
                    .extend(v.into_iter().map(|f| f.0)),
                DebugValue::Gauge(_) => {}
            }
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn samples(&self, name: &str) -> &[f64] {
        self.histograms.get(name).map_or(&[], Vec::as_slice)
    }
}

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c
}

async fn open(dir: &Path) -> ContextManager {
    create_manager_with_config(config(dir))
        .await
        .expect("open the store")
}

/// Commits.
const N: u64 = 24;
/// Events per commit.
const M: u64 = 3;

fn commit_of_m(i: u64) -> Update {
    (0..M).fold(Update::new(), |u, j| {
        u.set("c", format!("k{j}"), &(i * M + j)).unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_the_work_done() {
    let (_serial, s) = exclusive().await;
    let mut totals = Totals::default();
    t::describe();
    let tmp = tempfile::tempdir().unwrap();

    // ---- first open: N commits of M events, one refused, a snapshot, a subscription ----
    let m = open(tmp.path()).await;
    let create = Update::new().create("c");
    let create = (1..M).fold(create, |u, j| u.set("c", format!("k{j}"), &j).unwrap());
    m.update(create).await.unwrap();
    for i in 1..N / 2 {
        m.update(commit_of_m(i)).await.unwrap();
    }
    // The other half at once, so that group commit batches some of them.
    let concurrent: Vec<_> = (N / 2..N)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move { m.update(commit_of_m(i)).await.unwrap() })
        })
        .collect();
    for c in concurrent {
        c.await.unwrap();
    }
    assert_eq!(m.last_offset(), Offset(N));
    assert!(m
        .update(Update::new().remove("c", "no-such-key"))
        .await
        .is_err());
    let snap = m.snapshot_now().await.unwrap();
    assert_eq!(snap, Offset(N));
    let mut sub = m.subscribe(Offset::FIRST, Filter::all()).unwrap();
    for _ in 0..N * M {
        sub.next().await.unwrap().unwrap();
    }

    // Everything is counted by the time it is acknowledged, so the counts are exact now.
    let stats = m.stats();
    totals.take(s);
    assert_eq!(totals.counter(t::COMMITS), N);
    assert_eq!(stats.commits, N);
    assert_eq!(totals.counter(t::EVENTS), N * M);
    assert_eq!(stats.events, N * M);
    assert_eq!(totals.counter(t::COMMITS_REJECTED), 1);
    assert_eq!(
        totals.counter(t::FSYNCS),
        stats.log.syncs,
        "ctxlog_fsyncs_total and stats().log.syncs count the same calls: {stats:?}"
    );
    assert!(stats.log.syncs >= 1);
    assert_eq!(
        totals.samples(t::FSYNC_LATENCY).len() as u64,
        stats.log.syncs,
        "one latency sample per fsync"
    );
    assert_eq!(totals.counter(t::LOG_BYTES), stats.log.bytes);
    assert!(stats.log.bytes > 0);
    let batches = totals.samples(t::BATCH_RECORDS);
    assert_eq!(
        batches.len() as u64,
        stats.log.writes,
        "one sample per write"
    );
    assert_eq!(batches.iter().sum::<f64>() as u64, stats.log.records);
    assert_eq!(stats.log.records, N);
    let latency = totals.samples(t::COMMIT_LATENCY);
    assert_eq!(latency.len() as u64, N);
    assert!(latency.iter().all(|s| s.is_finite() && *s >= 0.0));
    assert!(!totals.samples(t::SNAPSHOT_SECONDS).is_empty());
    assert_eq!(totals.samples(t::REPLAY_SECONDS).len(), 1, "one open");
    let lag = totals.samples(t::SUBSCRIBER_LAG);
    assert_eq!(lag.len() as u64, N * M, "one sample per delivered event");
    assert!(lag.iter().all(|l| (0.0..N as f64).contains(l)));

    // describe() gave each metric its unit and description.
    for (name, unit) in [
        (t::COMMITS, "count"),
        (t::EVENTS, "count"),
        (t::COMMITS_REJECTED, "count"),
        (t::FSYNCS, "count"),
        (t::LOG_BYTES, "bytes"),
        (t::COMMIT_LATENCY, "seconds"),
        (t::FSYNC_LATENCY, "seconds"),
        (t::BATCH_RECORDS, "count"),
        (t::SNAPSHOT_SECONDS, "seconds"),
        (t::REPLAY_SECONDS, "seconds"),
        (t::SUBSCRIBER_LAG, "count"),
    ] {
        assert_eq!(
            totals.described.get(name),
            Some(&Some(unit)),
            "{name} described with its unit"
        );
    }

    drop(sub);
    m.close().await.unwrap();
    totals.take(s);
    let stats = m.stats();
    assert_eq!(totals.counter(t::COMMITS), N);
    assert_eq!(stats.commits, N);
    assert_eq!(totals.counter(t::EVENTS), N * M);
    assert_eq!(stats.events, N * M);
    assert_eq!(
        totals.counter(t::LOG_BYTES),
        stats.log.bytes,
        "close writes no bytes"
    );
    let (fsyncs_after_first, bytes_after_first) =
        (totals.counter(t::FSYNCS), totals.counter(t::LOG_BYTES));

    // ---- second open: replay counts as an open, not as commits ----
    let m = open(tmp.path()).await;
    assert_eq!(m.open_report().snapshot, Some(snap));
    totals.take(s);
    assert_eq!(totals.samples(t::REPLAY_SECONDS).len(), 2, "two opens");
    assert_eq!(totals.counter(t::COMMITS), N, "replay is not a commit");
    assert_eq!(m.stats().commits, 0);
    m.update(commit_of_m(N)).await.unwrap();
    totals.take(s);
    let stats = m.stats();
    assert_eq!(
        totals.counter(t::FSYNCS) - fsyncs_after_first,
        stats.log.syncs,
        "this handle's fsyncs: {stats:?}"
    );
    assert_eq!(
        totals.counter(t::LOG_BYTES) - bytes_after_first,
        stats.log.bytes
    );
    assert_eq!(totals.samples(t::COMMIT_LATENCY).len() as u64, N + 1);
    m.close().await.unwrap();
    totals.take(s);
    assert_eq!(totals.counter(t::COMMITS), N + 1);
    assert_eq!(totals.counter(t::EVENTS), (N + 1) * M);
    assert_eq!(totals.counter(t::COMMITS_REJECTED), 1);
    assert_eq!(totals.samples(t::REPLAY_SECONDS).len(), 2);
}

/// A caller holding its receipt reads counts that include its commit (the completion thread
/// once sent the acknowledgements before counting, and about half the receipts came early).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_counted_by_the_time_it_is_acknowledged() {
    let (_serial, s) = exclusive().await;
    let mut totals = Totals::default();
    let tmp = tempfile::tempdir().unwrap();
    let m = open(tmp.path()).await;
    let mut lagging = Vec::new();
    for i in 0..100u64 {
        let r = if i == 0 {
            m.create("c").await.unwrap()
        } else {
            m.set("c", "k", &i).await.unwrap()
        };
        totals.take(s);
        let (stats, metric) = (m.stats().commits, totals.counter(t::COMMITS));
        if stats != r.offset.0 || metric != r.offset.0 {
            lagging.push((r.offset.0, stats, metric));
        }
    }
    m.close().await.unwrap();
    assert!(
        lagging.is_empty(),
        "{} of 100 receipts came before their commit was counted; (offset, stats, metric): {:?}",
        lagging.len(),
        &lagging[..lagging.len().min(5)]
    );
}

/// The final `fdatasync` at close (`LogWriter::flush_and_sync`) adds to `stats().log.syncs`
/// but not to `ctxlog_fsyncs_total` (nor to the fsync latency histogram).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fsync_at_close_is_counted_like_any_other() {
    let (_serial, s) = exclusive().await;
    let mut totals = Totals::default();
    let tmp = tempfile::tempdir().unwrap();
    let m = open(tmp.path()).await;
    m.create("c").await.unwrap();
    m.set("c", "k", &1u8).await.unwrap();
    m.close().await.unwrap();
    totals.take(s);
    let stats = m.stats();
    assert_eq!(
        totals.counter(t::FSYNCS),
        stats.log.syncs,
        "after close: {stats:?}"
    );
    assert_eq!(
        totals.samples(t::FSYNC_LATENCY).len() as u64,
        stats.log.syncs
    );
}

/// A commit whose record exceeds `record_bytes_max` is refused by the writer before it reaches
/// the log, like a conflict, but `ctxlog_commits_rejected_total` does not count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_refused_as_too_large_is_counted_as_rejected() {
    let (_serial, s) = exclusive().await;
    let mut totals = Totals::default();
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.record_bytes_max = 1024;
    let m = create_manager_with_config(c).await.unwrap();
    m.create("c").await.unwrap();
    let big = "x".repeat(4096);
    let refused = m.set("c", "big", &big).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(m.last_offset(), Offset(1), "nothing written");
    totals.take(s);
    assert_eq!(totals.counter(t::COMMITS), 1);
    assert_eq!(totals.counter(t::COMMITS_REJECTED), 1, "{refused:?}");
    m.close().await.unwrap();
}
