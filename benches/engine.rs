//! Engine benchmarks (issue: the context engine), reported as ratios from one run.
//!
//! - open + rebuild, no snapshot: 1 M ValueSet events (200 B values over 10,000 contexts), one
//!   event per commit: events/s (target >= 3 M/s);
//! - open with the default snapshots: a 10 M-event log against a 1 M-event log with the same
//!   live state (10,000 contexts x 10 keys), each closed cleanly (so each opens from the
//!   snapshot `close` wrote): time ratio (target <= 1.2);
//! - `state_at(random offset)` with the default snapshot interval: p50 and p99;
//! - `get` p99 on an idle store and while 16 writers commit durably (reads never wait on fsync);
//! - peak RSS while opening against steady-state RSS and the live data size (measured in a
//!   child process, see `rss_probe`).
//!
//! Data lives under `target/bench-data/` (the real disk, not a tmpfs) and is reused between
//! runs; delete the folder to regenerate. `CTXLOG_BENCH_QUICK=1` shrinks every size by 10x.

use criterion::{criterion_group, Criterion};
use ctxlog::{create_manager_with_config, Config, ContextManager, Durability, Offset, Update};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CONTEXTS: u64 = 10_000;
const VALUE_BYTES: usize = 200;

fn scale() -> u64 {
    if std::env::var_os("CTXLOG_BENCH_QUICK").is_some() {
        10
    } else {
        1
    }
}

fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-data")
        .join(format!("{name}-{}", scale()))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn config(dir: &Path, snapshots: bool) -> Config {
    let mut c = Config::new(dir);
    c.durability = Durability::Never;
    if !snapshots {
        c.snapshot_every_commits = None;
        c.snapshot_every_bytes = None;
    }
    c
}

fn value(i: u64) -> String {
    let mut v = format!("{i:020}");
    v.push_str(&"v".repeat(VALUE_BYTES - 20 - 3)); // ~200 B of MessagePack with the header
    v
}

/// Writes `events` ValueSet events over CONTEXTS contexts x `keys` keys, `per_commit` events a
/// commit, with up to 256 commits in flight (group commit in `Never` mode).
async fn fill(m: &ContextManager, events: u64, keys: u64, per_commit: u64) {
    let mut batch = Update::new();
    for c in 0..CONTEXTS {
        batch = batch.create(format!("ctx-{c:05}"));
        if (c + 1) % 1000 == 0 {
            m.update(std::mem::take(&mut batch)).await.expect("create");
        }
    }
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0;
    while i < events {
        let mut u = Update::new();
        for _ in 0..per_commit.min(events - i) {
            let ctx = format!("ctx-{:05}", i % CONTEXTS);
            let key = format!("k{}", (i / CONTEXTS) % keys);
            u = u.set(ctx, key, &value(i)).expect("encode");
            i += 1;
        }
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let m = m.clone();
        tasks.spawn(async move {
            m.update(u).await.expect("update");
            drop(permit);
        });
        while tasks.len() > 1024 {
            tasks.join_next().await;
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Creates the store once (reused across runs).
fn prepared(name: &str, events: u64, keys: u64, per_commit: u64, snapshots: bool) -> PathBuf {
    let dir = data_dir(name);
    if dir.join("READY").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    rt().block_on(async {
        let m = create_manager_with_config(config(&dir, snapshots))
            .await
            .expect("open");
        fill(&m, events, keys, per_commit).await;
        m.close().await.expect("close");
    });
    std::fs::write(dir.join("READY"), b"").expect("marker");
    eprintln!(
        "prepared {name}: {events} events in {:?}",
        started.elapsed()
    );
    dir
}

fn open_time(dir: &Path, snapshots: bool) -> (Duration, u64) {
    let rt = rt();
    let started = Instant::now();
    let m = rt
        .block_on(create_manager_with_config(config(dir, snapshots)))
        .expect("open");
    let took = started.elapsed();
    let replayed = m.open_report().replayed;
    rt.block_on(m.close()).expect("close");
    (took, replayed)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Summary(Mutex<Vec<String>>);

impl Summary {
    fn line(&self, s: String) {
        eprintln!("{s}");
        self.0.lock().expect("summary").push(s);
    }
}

static SUMMARY: Summary = Summary(Mutex::new(Vec::new()));

fn bench_open(c: &mut Criterion) {
    let n = 1_000_000 / scale();
    let plain = prepared("replay-1m", n, 100, 1, false);
    let mut g = c.benchmark_group("open");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let mut rates = Vec::new();
    g.bench_function("rebuild_1m_events_no_snapshot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (took, replayed) = open_time(&plain, false);
                rates.push(replayed as f64 / took.as_secs_f64());
                total += took;
            }
            total
        })
    });
    g.finish();
    rates.sort_by(f64::total_cmp);
    let rate = rates[rates.len() / 2];
    SUMMARY.line(format!(
        "open+rebuild, no snapshot: {:.2} M events/s (target >= 3 M/s: {})",
        rate / 1e6,
        if rate >= 3e6 { "met" } else { "missed" }
    ));

    // Same live state (10,000 contexts x 10 keys), 1 M and 10 M events, default snapshots.
    let small = prepared("snap-1m", n, 10, 100, true);
    let large = prepared("snap-10m", 10 * n, 10, 100, true);
    let t_small = median((0..5).map(|_| open_time(&small, true).0).collect());
    let t_large = median((0..5).map(|_| open_time(&large, true).0).collect());
    let ratio = t_large.as_secs_f64() / t_small.as_secs_f64();
    SUMMARY.line(format!(
        "open with snapshots: 1 M events {t_small:?}, 10 M events {t_large:?}: ratio {ratio:.2} (target <= 1.2: {})",
        if ratio <= 1.2 { "met" } else { "missed" }
    ));
}

fn bench_state_at(c: &mut Criterion) {
    let dir = prepared("snap-1m", 1_000_000 / scale(), 10, 100, true);
    let rt = rt();
    let m = rt
        .block_on(create_manager_with_config(config(&dir, true)))
        .expect("open");
    let last = m.last_offset().0;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut samples = Vec::new();
    let mut g = c.benchmark_group("state_at");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("random_offset", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let at = Offset(1 + next() % last);
                let started = Instant::now();
                let state = rt.block_on(m.state_at(at)).expect("state_at");
                let took = started.elapsed();
                assert_eq!(state.offset(), at);
                samples.push(took);
                total += took;
            }
            total
        })
    });
    g.finish();
    samples.sort();
    SUMMARY.line(format!(
        "state_at(random offset) over {} commits: p50 {:?}, p99 {:?} ({} samples)",
        last,
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len()
    ));
    rt.block_on(m.close()).expect("close");
}

fn get_latencies(m: &ContextManager, rounds: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let ctx = format!("ctx-{:05}", i as u64 % 100);
        let started = Instant::now();
        let v = m.get_value(&ctx, "k").expect("get");
        out.push(started.elapsed());
        std::hint::black_box(v);
    }
    out.sort();
    out
}

fn bench_get_under_load(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .expect("tempdir");
    let rt = rt();
    let mut cfg = Config::new(dir.path());
    cfg.durability = Durability::Always;
    let m = rt.block_on(create_manager_with_config(cfg)).expect("open");
    rt.block_on(async {
        for i in 0..100u64 {
            let ctx = format!("ctx-{i:05}");
            m.update(
                Update::new()
                    .create(&ctx)
                    .set(&ctx, "k", &value(i))
                    .expect("encode"),
            )
            .await
            .expect("seed");
        }
    });
    let mut g = c.benchmark_group("get");
    g.bench_function("idle", |b| {
        b.iter(|| m.get_value("ctx-00007", "k").expect("get"))
    });
    g.finish();
    let idle = get_latencies(&m, 200_000);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (m, stop) = (m.clone(), stop.clone());
            rt.spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let ctx = format!("ctx-{:05}", (w * 7 + n) % 100);
                    m.set(&ctx, "w", &n).await.expect("durable write");
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let busy = get_latencies(&m, 200_000);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let commits: u64 = writers
        .into_iter()
        .map(|w| rt.block_on(w).expect("writer"))
        .sum();
    SUMMARY.line(format!(
        "get: idle p50 {:?} p99 {:?}; with 16 durable writers ({commits} commits meanwhile) p50 {:?} p99 {:?}",
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        percentile(&busy, 0.5),
        percentile(&busy, 0.99)
    ));
    rt.block_on(m.close()).expect("close");
}

/// Peak and steady RSS while opening the 1 M-event store, measured in a child process (this
/// bench binary re-run with `CTXLOG_RSS_PROBE=dir`), against the live data size.
fn bench_rss(_c: &mut Criterion) {
    let dir = prepared("snap-1m", 1_000_000 / scale(), 10, 100, true);
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env("CTXLOG_RSS_PROBE", &dir)
        .output()
        .expect("rss probe");
    SUMMARY.line(String::from_utf8_lossy(&out.stdout).trim().to_string());
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_probe(dir: &str) {
    let rt = rt();
    let base = status_kib("VmRSS:");
    let m = rt
        .block_on(create_manager_with_config(config(Path::new(dir), true)))
        .expect("open");
    let peak = status_kib("VmHWM:");
    let steady = status_kib("VmRSS:");
    let state = m.state();
    let live: u64 = state
        .contexts()
        .map(|(n, c)| {
            n.len() as u64
                + c.values()
                    .map(|(k, v)| (k.len() + v.as_bytes().len()) as u64)
                    .sum::<u64>()
        })
        .sum();
    let (peak, steady) = ((peak - base) * 1024, (steady - base) * 1024);
    println!(
        "RSS while opening (above the empty process): peak {:.1} MiB, steady {:.1} MiB, live data {:.1} MiB: peak/steady {:.2} (target <= 1.5), steady/live {:.2} (target <= 3)",
        peak as f64 / 1048576.0,
        steady as f64 / 1048576.0,
        live as f64 / 1048576.0,
        peak as f64 / steady as f64,
        steady as f64 / live as f64
    );
}

fn summary(_c: &mut Criterion) {
    eprintln!("\n== ctxlog engine summary (one run) ==");
    for line in SUMMARY.0.lock().expect("summary").iter() {
        eprintln!("{line}");
    }
}

criterion_group!(
    benches,
    bench_open,
    bench_state_at,
    bench_get_under_load,
    bench_rss,
    summary
);

fn main() {
    if let Ok(dir) = std::env::var("CTXLOG_RSS_PROBE") {
        rss_probe(&dir);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
