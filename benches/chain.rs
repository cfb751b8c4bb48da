//! The cost of tamper evidence: the BLAKE3 chain hash on durable and on bulk appends, as a
//! ratio to the same run without it (targets: at most 10% slower on durable appends, 25% on
//! bulk). Both variants run interleaved, round after round, on the same disk (a folder under
//! `target/`, not a tmpfs), so that drift on a shared machine hits both alike.
//!
//! `cargo bench --bench chain`; `CTXLOG_BENCH_QUICK=1` for a short run.

use criterion::{criterion_group, Criterion};
use ctxlog::storage::FsStorage;
use ctxlog::wal::{Durability, Wal, WalConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 200;

fn quick() -> bool {
    std::env::var_os("CTXLOG_BENCH_QUICK").is_some()
}

fn open(dir: &Path, chain: bool, durability: Durability) -> Wal {
    let config = WalConfig {
        chain_hash: chain,
        durability,
        ..WalConfig::default()
    };
    Wal::open(Arc::new(FsStorage), dir, config).expect("open")
}

fn scratch() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    tempfile::tempdir_in(base).expect("tempdir under target/")
}

/// Durable single writer: `n` appends, each waiting for its fdatasync.
fn durable(chain: bool, n: usize) -> Duration {
    let dir = scratch();
    let wal = open(dir.path(), chain, Durability::Always);
    let payload = vec![0x5au8; PAYLOAD];
    let started = Instant::now();
    for _ in 0..n {
        wal.append_blocking(payload.clone()).expect("append");
    }
    let took = started.elapsed();
    wal.close();
    took
}

/// Bulk: `n` appends from 8 threads in `Never` mode, then close (one final sync).
fn bulk(chain: bool, n: usize) -> Duration {
    let dir = scratch();
    let wal = open(dir.path(), chain, Durability::Never);
    let payload = vec![0x5au8; PAYLOAD];
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (wal, payload) = (&wal, &payload);
            s.spawn(move || {
                for _ in 0..n / 8 {
                    wal.append_blocking(payload.clone()).expect("append");
                }
            });
        }
    });
    wal.close();
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs `f(false)` and `f(true)` back to back for `rounds` rounds (alternating which goes
/// first); returns the medians (plain, chained) and the median of the per-round cost ratios,
/// which cancels the drift of a shared machine better than a ratio of medians.
fn paired(rounds: usize, f: impl Fn(bool) -> Duration) -> (Duration, Duration, f64) {
    let (mut plain, mut chained, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (p, c) = if round % 2 == 0 {
            let p = f(false);
            (p, f(true))
        } else {
            let c = f(true);
            (f(false), c)
        };
        ratios.push(c.as_secs_f64() / p.as_secs_f64());
        plain.push(p);
        chained.push(c);
    }
    ratios.sort_by(f64::total_cmp);
    (median(plain), median(chained), ratios[ratios.len() / 2])
}

fn bench_chain(c: &mut Criterion) {
    let (durable_n, bulk_n, rounds) = if quick() {
        (300, 20_000, 5)
    } else {
        (2_000, 400_000, 9)
    };
    let mut g = c.benchmark_group("chain");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("blake3_chain_next_200B", |b| {
        let payload = [0x5au8; PAYLOAD];
        let mut prev = [0u8; 32];
        let mut offset = 0u64;
        b.iter(|| {
            offset += 1;
            prev = ctxlog_format::chain_next(&prev, offset, &payload);
            prev
        })
    });
    g.finish();

    let (plain, chained, ratio) = paired(rounds, |chain| durable(chain, durable_n));
    let durable_cost = ratio - 1.0;
    let (bplain, bchained, bratio) = paired(rounds, |chain| bulk(chain, bulk_n));
    let bulk_cost = bratio - 1.0;
    let verdict = |cost: f64, max: f64| if cost <= max { "met" } else { "missed" };
    eprintln!("\n== ctxlog chain-hash cost (one run; cost = median of {rounds} paired rounds) ==");
    eprintln!(
        "durable single writer, {durable_n} appends: plain {:.0}/s, chained {:.0}/s: cost {:+.1}% (target <= +10%: {})",
        durable_n as f64 / plain.as_secs_f64(),
        durable_n as f64 / chained.as_secs_f64(),
        durable_cost * 100.0,
        verdict(durable_cost, 0.10)
    );
    eprintln!(
        "bulk, {bulk_n} appends of {PAYLOAD} B: plain {:.0}/s, chained {:.0}/s: cost {:+.1}% (target <= +25%: {})",
        bulk_n as f64 / bplain.as_secs_f64(),
        bulk_n as f64 / bchained.as_secs_f64(),
        bulk_cost * 100.0,
        verdict(bulk_cost, 0.25)
    );
}

criterion_group!(benches, bench_chain);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
