//! Real process kills: the real binary runs `ctxlog --dir D --durability always import`, a
//! thread feeds it JSON Lines commits through stdin, another reads its acknowledgements
//! (`{"line":N,"offset":O}`) from stdout, and the test sends SIGKILL (`Child::kill`) 5-50 ms
//! after the first acknowledgement. Then the store is reopened with the library and checked:
//!
//! - the log holds, after the offsets of earlier runs, exactly the first `k` lines of this
//!   run, each as one whole commit (import queues lines in order and every line is valid), with
//!   `k` at least the last acknowledged line;
//! - every acknowledged line is at the offset its ack named, and every value of every line
//!   kept is readable;
//! - `ctxlog verify` exits 0.
//!
//! Ten kill-and-restart cycles share a store, so recovery also runs on recovered stores.
//! Default: 50 kills. `CTXLOG_LONG=1`: 1,000. `CTXLOG_SEED=n`: that kill alone (with a fresh
//! store).

mod reliability_support;

use ctxlog::event::Event;
use ctxlog::model::Value;
use ctxlog::{create_manager_with_config, Config, Offset};
use reliability_support::{figure, for_each_seed, long, runtime, seeds, Rng};
use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TEST: &str = "reliability_kill";
const SEGMENT_BYTES: u64 = 64 * 1024;
/// Kill-and-restart cycles per store.
const CYCLES: u64 = 10;

/// The contexts of run `run`.
fn ctx(run: u64, j: u64) -> String {
    format!("r{run}c{}", j % 4)
}

/// Line `n` (from 1) of run `run`: line 1 creates the run's four contexts; every other line
/// sets one to three keys, each in another context, with values of 10-600 bytes.
fn line_ops(run: u64, n: u64) -> Vec<Json> {
    if n == 1 {
        return (0..4)
            .map(|j| json!({"op": "create", "context": ctx(run, j)}))
            .collect();
    }
    let mut rng = Rng::new(run << 32 | n);
    (0..rng.range(1, 3))
        .map(|j| {
            let pad = "x".repeat(rng.range(10, 600) as usize);
            let value = json!({"run": run, "n": n, "j": j, "pad": pad});
            json!({"op": "set", "context": ctx(run, n + j), "key": format!("n{n}j{j}"), "value": value})
        })
        .collect()
}

fn line_text(run: u64, n: u64) -> String {
    json!({ "ops": line_ops(run, n) }).to_string()
}

/// The events line `n` must be committed as.
fn line_matches(run: u64, n: u64, events: &[Event]) -> bool {
    let ops = line_ops(run, n);
    ops.len() == events.len()
        && ops.iter().zip(events).all(|(op, e)| match e {
            Event::ContextCreated { context, labels } => {
                op["op"] == "create" && op["context"] == *context && labels.is_empty()
            }
            Event::ValueSet {
                context,
                key,
                value,
            } => {
                let v: Option<Json> = Value::from_msgpack(value.to_vec()).decode().ok();
                op["op"] == "set"
                    && op["context"] == *context
                    && op["key"] == *key
                    && v.as_ref() == Some(&op["value"])
            }
            _ => false,
        })
}

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_bytes = SEGMENT_BYTES;
    c.record_bytes_max = 16 * 1024;
    c
}

/// What one kill saw.
struct Killed {
    acked: Vec<(u64, u64)>,
    kept: u64,
    first_ack_ms: u64,
}

/// Runs `import` on `dir` as run `run`, kills it after `delay` past the first ack, checks the
/// store. `base` is the store's last offset before the run.
fn kill_once(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    run: u64,
    delay: Duration,
    base: u64,
) -> Killed {
    let what = format!("run {run} (killed {delay:?} after the first ack)");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ctxlog"))
        .env_remove("CTXLOG_DIR")
        .arg("--dir")
        .arg(dir)
        .args(["--durability", "always", "--segment-bytes"])
        .arg(SEGMENT_BYTES.to_string())
        .arg("import")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ctxlog import");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        // Until the pipe breaks (the child died) or a generous limit.
        for n in 1..=200_000 {
            let mut text = line_text(run, n);
            text.push('\n');
            if stdin.write_all(text.as_bytes()).is_err() {
                break;
            }
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let ack: Json = serde_json::from_str(&line).expect("an ack is JSON");
            let pair = (
                ack["line"].as_u64().expect("line"),
                ack["offset"].as_u64().expect("offset"),
            );
            if tx.send(pair).is_err() {
                break;
            }
        }
    });
    // Every ack printed before the kill was printed after its commit was acknowledged: collect
    // all of them, including those still in the pipe when the process dies.
    let mut acked = Vec::new();
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("{what}: no acknowledgement from ctxlog import within 30 s: {e}")
        });
    let first_ack_ms = started.elapsed().as_millis() as u64;
    acked.push(first);
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "{what}: import finished before the kill");
    reader.join().expect("reader");
    feeder.join().expect("feeder");
    acked.extend(rx.try_iter());

    let kept = rt.block_on(async {
        let m = create_manager_with_config(config(dir))
            .await
            .unwrap_or_else(|e| panic!("{what}: reopen after the kill: {e}"));
        let last = m.last_offset().0;
        let commits = m.events(Offset(base + 1)).await.expect("read back");
        assert_eq!(commits.len() as u64, last - base, "{what}");
        // A prefix of the lines, each whole.
        for (i, c) in commits.iter().enumerate() {
            let n = i as u64 + 1;
            assert_eq!(c.offset.0, base + n, "{what}");
            assert!(
                line_matches(run, n, &c.events),
                "{what}: offset {} is not line {n} whole: {:?}",
                c.offset,
                c.events.iter().map(Event::kind).collect::<Vec<_>>()
            );
        }
        for &(line, offset) in &acked {
            assert!(
                offset <= last,
                "{what}: acknowledged line {line} (offset {offset}) lost; the log ends at {last}"
            );
            assert_eq!(
                offset,
                base + line,
                "{what}: line {line} acknowledged at {offset}"
            );
        }
        for n in 2..=last - base {
            for op in line_ops(run, n) {
                let key = op["key"].as_str().expect("key");
                let got: Json = m
                    .get_as(op["context"].as_str().expect("context"), key)
                    .unwrap_or_else(|e| panic!("{what}: line {n} {key}: {e}"));
                assert_eq!(got, op["value"], "{what}: line {n} {key}");
            }
        }
        m.close().await.expect("close");
        last - base
    });
    let verify = Command::new(env!("CARGO_BIN_EXE_ctxlog"))
        .env_remove("CTXLOG_DIR")
        .arg("--dir")
        .arg(dir)
        .arg("verify")
        .output()
        .expect("run ctxlog verify");
    assert!(
        verify.status.success(),
        "{what}: ctxlog verify exited {:?}: {}{}",
        verify.status.code(),
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    Killed {
        acked,
        kept,
        first_ack_ms,
    }
}

#[test]
fn sigkill_during_import_loses_no_acknowledged_line() {
    let rt = runtime();
    let seeds = seeds(50, 1_000);
    let n = seeds.end - seeds.start;
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut acks, mut kept, mut unacked, mut rotated, mut first_ack) = (0, 0, 0, 0, 0);
    let mut base = 0;
    for_each_seed(TEST, seeds, |seed| {
        // A store per CYCLES kills (a fresh one for a seed run alone).
        let dir = tmp.path().join(format!("store{}", seed / CYCLES));
        if seed % CYCLES == 0 || n == 1 {
            base = 0;
        }
        let delay = Duration::from_millis(Rng::new(seed).range(5, 50));
        let k = kill_once(&rt, &dir, seed, delay, base);
        base += k.kept;
        let max_acked = k.acked.iter().map(|a| a.0).max().unwrap_or(0);
        acks += k.acked.len() as u64;
        kept += k.kept;
        unacked += k.kept - max_acked;
        first_ack += k.first_ack_ms;
        let segments = std::fs::read_dir(dir.join("wal")).map_or(0, |d| d.count());
        rotated += u64::from(segments > 1);
    });
    let t = started.elapsed();
    eprintln!(
        "{n} kills in {t:.1?}: {acks} acknowledged lines, all kept; {kept} lines kept in all, \
         {unacked} of them unacknowledged; {rotated} stores had rotated; first ack after \
         {} ms on average",
        first_ack / n.max(1)
    );
    figure(TEST, "kills", n);
    figure(TEST, "acked_lines_checked", acks);
    figure(TEST, "lines_kept", kept);
    figure(TEST, "unacked_lines_kept_whole", unacked);
    figure(TEST, "seconds", format!("{:.1}", t.as_secs_f64()));
    if n >= 50 && !long() {
        assert!(rotated > 0, "no store rotated a segment");
    }
}
