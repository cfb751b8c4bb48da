//! Side by side: ctxlog against other embedded logs and stores, in one run, on the same data
//! and disk, as absolute figures and as ratios to a raw-disk baseline measured in the same run.
//!
//! ```text
//! cargo run --release                 # full run: 1 M records, 2,000 durable appends, 3 rounds
//! cargo run --release -- --quick      # 10x smaller, 1 round: for trying things out
//! cargo run --release -- --help       # every option
//! ```
//!
//! Every (system, case, round) runs in its own child process (this binary re-run with
//! `child ...`). A first pass (round 0) runs each case once under
//! `strace -f --seccomp-bpf -e trace=fsync,fdatasync,sync_file_range,msync` when strace is
//! installed, for the sync counts only (the figures come from the untraced rounds): the child
//! marks the start and end of its timed section with two
//! failing `fsync(-7001)` / `fsync(-7002)` calls, and the parent counts the sync calls of every
//! thread between them. The child also reports its peak RSS (`VmHWM`) and, after a bulk load,
//! the bytes allocated on disk. The durable cases run in slices interleaved with slices of the
//! raw baseline (see `peers::RawBurst`). Results: printed, and appended to `RESULTS.md` (the
//! history of runs; a `--quick` run to `target/RESULTS-quick.md` instead).

mod common;
mod machine;
mod peers;
mod report;

use common::{disk_bytes, status_kib, Payloads, Section, Sizes};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::Duration;

/// The cases, in the order they run within a round.
pub const CASES: &[&str] = &["bulk", "reopen", "w1", "w16", "w64"];

/// What a child reports.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChildResult {
    /// Operations in the timed section (records, appends).
    pub ops: u64,
    pub secs: f64,
    /// Peak resident set of the child, KiB.
    pub hwm_kib: u64,
    /// Bytes allocated under the store's directory after the bulk load.
    pub disk_bytes: Option<u64>,
    /// Durable cases: the raw baseline (`pwrite` 208 B + `fdatasync`, one writer) run in
    /// slices interleaved with the case's own slices, in the same directory: syncs/s.
    #[serde(default)]
    pub paired_raw: Option<f64>,
}

/// One child run as the parent saw it.
#[derive(Debug, Clone)]
pub struct Run {
    pub result: ChildResult,
    /// Sync calls between the markers, by syscall (None: not traced).
    pub syncs: Option<BTreeMap<String, u64>>,
}

fn usage() -> ! {
    eprintln!(
        "usage: ctxlog-compare [--quick] [--rounds R] [--records N] [--appends N] \
         [--group-secs S] [--systems a,b,..] [--cases bulk,reopen,w1,w16,w64] [--data DIR] \
         [--out FILE] [--no-strace]\n\
         systems: {}",
        peers::all().map(|s| s.name).collect::<Vec<_>>().join(",")
    );
    std::process::exit(2)
}

pub struct Options {
    pub quick: bool,
    pub rounds: usize,
    pub sizes: Sizes,
    pub systems: Vec<String>,
    pub cases: Vec<String>,
    pub data: PathBuf,
    pub out: PathBuf,
    pub strace: bool,
}

fn parse_options(args: &[String]) -> Options {
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Options {
        quick,
        rounds: if quick { 1 } else { 3 },
        sizes: Sizes {
            records: if quick { 100_000 } else { 1_000_000 },
            appends: if quick { 200 } else { 2_000 },
            group_secs: if quick { 1.0 } else { 3.0 },
        },
        systems: peers::SYSTEMS
            .iter()
            .filter(|s| s.default)
            .map(|s| s.name.to_string())
            .collect(),
        cases: CASES.iter().map(|c| c.to_string()).collect(),
        data: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/data"),
        // A quick run is for trying things out: it never lands in the published history.
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join(if quick {
            "target/RESULTS-quick.md"
        } else {
            "RESULTS.md"
        }),
        strace: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| usage());
        match a.as_str() {
            "--quick" => {}
            "--rounds" => o.rounds = val().parse().unwrap_or_else(|_| usage()),
            "--records" => o.sizes.records = val().parse().unwrap_or_else(|_| usage()),
            "--appends" => o.sizes.appends = val().parse().unwrap_or_else(|_| usage()),
            "--group-secs" => o.sizes.group_secs = val().parse().unwrap_or_else(|_| usage()),
            "--systems" => o.systems = val().split(',').map(str::to_string).collect(),
            "--cases" => o.cases = val().split(',').map(str::to_string).collect(),
            "--data" => o.data = PathBuf::from(val()),
            "--out" => o.out = PathBuf::from(val()),
            "--no-strace" => o.strace = false,
            _ => usage(),
        }
    }
    for s in &o.systems {
        if peers::info(s).is_none() {
            eprintln!("unknown system {s}");
            usage();
        }
    }
    for c in &o.cases {
        if !CASES.contains(&c.as_str()) {
            eprintln!("unknown case {c}");
            usage();
        }
    }
    if o.rounds == 0 || o.sizes.records == 0 || o.sizes.appends == 0 {
        usage();
    }
    o
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        child(&args[1..]);
        return;
    }
    let o = parse_options(&args);
    std::fs::create_dir_all(&o.data).expect("create the data directory");
    let strace = o.strace && strace_available();
    if o.strace && !strace {
        eprintln!("strace not found (apt-get install -y strace): sync calls will not be counted");
    }
    let machine = machine::describe(&o.data);
    eprintln!("{}", machine.lines().collect::<Vec<_>>().join("\n"));
    if machine.contains("tmpfs") {
        eprintln!("WARNING: the data directory is on a tmpfs: fsync costs nothing there");
    }
    let mut runs: BTreeMap<(String, String), Vec<Run>> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    // Round 0 runs every case once under strace, for the sync counts only: strace slows some
    // CPU-bound cases (up to 2x for the engine's open, malloc-heavy), so every figure comes
    // from the untraced rounds 1..=rounds.
    let mut traced: BTreeMap<(String, String), Vec<Run>> = BTreeMap::new();
    let first_round = if strace { 0 } else { 1 };
    for round in first_round..=o.rounds {
        let trace_this = round == 0;
        for case in &o.cases {
            // The bulk load leaves its store for the reopen case (when both run).
            if case == "reopen" && o.cases.iter().any(|c| c == "bulk") {
                continue;
            }
            // Every other round runs the systems in reverse order, so that no system always
            // runs right after the same neighbour or at the same point of the round.
            let mut order: Vec<&String> = o.systems.iter().collect();
            if round % 2 == 0 {
                order.reverse();
            }
            for sys in order {
                let info = peers::info(sys).expect("checked");
                let runs_it = match case.as_str() {
                    "bulk" | "reopen" => info.runs_bulk,
                    _ => info.runs_durable,
                };
                if !runs_it {
                    continue;
                }
                let dir = o.data.join(format!("{sys}-{case}"));
                let _ = std::fs::remove_dir_all(&dir);
                let mut chain = vec![case.as_str()];
                if case == "bulk" && o.cases.iter().any(|c| c == "reopen") {
                    chain.push("reopen");
                }
                if case == "reopen" {
                    // Reopen alone: it needs a store; load one, outside the results.
                    chain.insert(0, "bulk-setup");
                }
                for step in chain {
                    let real = if step == "bulk-setup" { "bulk" } else { step };
                    eprint!(
                        "[{:>6.1}s] round {round}/{} {sys:<18} {real:<6} ",
                        started.elapsed().as_secs_f64(),
                        o.rounds
                    );
                    match run_child(sys, real, &dir, o.sizes, trace_this, &o.data) {
                        Ok(run) => {
                            eprintln!(
                                "{:>10} ops in {:>8.3}s  hwm {:>7} KiB  paired raw {:>8}  syncs {}",
                                run.result.ops,
                                run.result.secs,
                                run.result.hwm_kib,
                                run.result
                                    .paired_raw
                                    .map_or("-".into(), |r| format!("{r:.0}/s")),
                                run.syncs.as_ref().map_or("-".into(), report::fmt_syncs)
                            );
                            if step != "bulk-setup" {
                                let to = if trace_this { &mut traced } else { &mut runs };
                                to.entry((sys.clone(), real.to_string()))
                                    .or_default()
                                    .push(run);
                            }
                        }
                        Err(e) => {
                            eprintln!("FAILED: {e}");
                            failures.push(format!("{sys} {real} (round {round}): {e}"));
                            break;
                        }
                    }
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    let md = report::render(
        &o,
        &machine,
        strace,
        &runs,
        &traced,
        &failures,
        started.elapsed(),
    );
    println!("{md}");
    append_run(&o.out, &md);
    eprintln!("appended to {}", o.out.display());
}

/// Appends a run's report to `out` (created if missing), after a blank line if it has runs.
fn append_run(out: &Path, md: &str) {
    use std::io::Write;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).expect("create the results' folder");
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap_or_else(|e| panic!("open {}: {e}", out.display()));
    let sep = if f.metadata().map_or(0, |m| m.len()) > 0 {
        "\n"
    } else {
        ""
    };
    write!(f, "{sep}{md}").unwrap_or_else(|e| panic!("append to {}: {e}", out.display()));
}

fn strace_available() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn run_child(
    sys: &str,
    case: &str,
    dir: &Path,
    sizes: Sizes,
    strace: bool,
    data: &Path,
) -> Result<Run, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let trace_file = data.join(format!("strace-{sys}-{case}.txt"));
    let child_args = [
        "child".to_string(),
        sys.to_string(),
        case.to_string(),
        dir.display().to_string(),
        sizes.records.to_string(),
        sizes.appends.to_string(),
        sizes.group_secs.to_string(),
    ];
    let mut cmd = if strace {
        let mut c = Command::new("strace");
        c.args([
            "-f",
            "--seccomp-bpf",
            "-qq",
            "-e",
            "signal=none",
            "-e",
            "trace=fsync,fdatasync,sync_file_range,msync",
            "-o",
        ])
        .arg(&trace_file)
        .arg("--")
        .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(child_args);
    let out = cmd.output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "));
    let Some(line) = line else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        return Err(format!(
            "{} | {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    };
    let result: ChildResult = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let syncs = if strace {
        let text = std::fs::read_to_string(&trace_file).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&trace_file);
        Some(count_syncs(&text))
    } else {
        None
    };
    Ok(Run { result, syncs })
}

/// Counts the sync calls that start between the markers of the child's timed section(s).
fn count_syncs(trace: &str) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = ["fsync", "fdatasync", "sync_file_range", "msync"]
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    let mut inside = false;
    for line in trace.lines() {
        if line.contains("resumed>") {
            continue;
        }
        // "PID name(args..."
        let rest = line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if name == "fsync" && args.starts_with("-7001") {
            inside = true;
            continue;
        }
        if name == "fsync" && args.starts_with("-7002") {
            inside = false;
            continue;
        }
        if inside {
            if let Some(c) = counts.get_mut(name) {
                *c += 1;
            }
        }
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// The child: one system, one case.

fn child(args: &[String]) {
    let [sys, case, dir, records, appends, group_secs] = args else {
        panic!("child SYSTEM CASE DIR RECORDS APPENDS GROUP_SECS");
    };
    let dir = Path::new(dir);
    let n: u64 = records.parse().expect("records");
    let appends: u64 = appends.parse().expect("appends");
    let group_secs: f64 = group_secs.parse().expect("group secs");
    let system = peers::system(sys);
    let payloads = Payloads::new();
    let mut disk = None;
    let mut paired = None;
    let (took, ops) = match case.as_str() {
        "bulk" => {
            let took = system.bulk(dir, n, &payloads);
            disk = Some(disk_bytes(dir));
            (took, n)
        }
        "reopen" => system.reopen(dir, n),
        "w1" => {
            let a = system.open_durable(dir, 1);
            let mut raw = peers::RawBurst::new(dir);
            let per_slice = (appends / SLICES).max(1);
            let (mut took, mut seq) = (Duration::ZERO, 0);
            while seq < appends {
                let t = Section::start();
                for _ in 0..per_slice.min(appends - seq) {
                    seq += 1;
                    a.append(0, seq, &payloads.get(seq));
                }
                let slice = t.stop();
                took += slice;
                raw.run(slice, 5);
            }
            drop(a);
            paired = Some(raw.rate());
            (took, appends)
        }
        w => {
            let threads: usize = w.trim_start_matches('w').parse().expect("case");
            let a = system.open_durable(dir, threads);
            let mut raw = peers::RawBurst::new(dir);
            let slice = Duration::from_secs_f64(group_secs / SLICES as f64);
            let (mut took, mut ops) = (Duration::ZERO, 0);
            let mut next_seq = vec![0u64; threads];
            for _ in 0..SLICES {
                let (t, n) = a
                    .run_group(slice, &mut next_seq)
                    .unwrap_or_else(|| group(&*a, threads, slice, &payloads, &mut next_seq));
                took += t;
                ops += n;
                raw.run(t, 5);
            }
            drop(a);
            paired = Some(raw.rate());
            (took, ops)
        }
    };
    let result = ChildResult {
        ops,
        secs: took.as_secs_f64(),
        hwm_kib: status_kib("VmHWM:"),
        disk_bytes: disk,
        paired_raw: paired,
    };
    println!(
        "RESULT {}",
        serde_json::to_string(&result).expect("serialize")
    );
}

/// Slices of every durable case, each followed by a slice of the raw baseline as long.
const SLICES: u64 = 10;

/// `threads` writers in a closed loop (append, wait, append) for `dur`; returns the time from
/// the start to the last writer's last acknowledgement, and the appends acknowledged. Each
/// writer goes on from its sequence number in `next_seq`.
fn group(
    a: &dyn peers::Appender,
    threads: usize,
    dur: Duration,
    payloads: &Payloads,
    next_seq: &mut [u64],
) -> (Duration, u64) {
    let ready = Barrier::new(threads + 1);
    let stop = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    // The scope joins every writer before it returns: the clock stops after the last one.
    let section = std::thread::scope(|s| {
        for (t, seq) in next_seq.iter_mut().enumerate() {
            let (ready, stop, total) = (&ready, &stop, &total);
            s.spawn(move || {
                ready.wait();
                let first = *seq;
                while !stop.load(Ordering::Relaxed) {
                    *seq += 1;
                    a.append(t, *seq, &payloads.get(*seq));
                }
                total.fetch_add(*seq - first, Ordering::Relaxed);
            });
        }
        ready.wait();
        let t = Section::start();
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
        t
    });
    (section.stop(), total.load(Ordering::Relaxed))
}
