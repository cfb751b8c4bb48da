//! `bench`: a quick benchmark in a temporary directory under the current directory (not
//! /tmp, which may be a tmpfs where fdatasync costs nothing).
//!
//! The raw fdatasync rate of the disk (a 208-byte pwrite + fdatasync into a preallocated file)
//! is measured first; every figure after it is printed beside its ratio to that rate: a durable
//! single writer, 16 concurrent durable writers (group commit), a bulk load under
//! `Durability::Never` (also in MB/s of log), and a reopen (open + replay of the bulk store,
//! with snapshots off so that every commit is replayed).

use super::args::Cli;
use super::output::{CliResult, Out};
use ctxlog::{create_manager_with_config, Config, ContextManager, Durability};
use serde_json::{json, Value as Json};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Concurrent writers in the group-commit phase.
const WRITERS: usize = 16;
/// Concurrent tasks in the bulk phase.
const BULK_TASKS: u64 = 64;

/// pwrite 208 bytes + fdatasync, again and again, for `secs`: syncs per second.
fn raw_fsync_rate(dir: &Path, secs: f64) -> std::io::Result<f64> {
    const FILE_BYTES: u64 = 16 << 20;
    let path = dir.join("raw-fsync");
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let zeros = vec![0u8; 1 << 20];
    for i in 0..FILE_BYTES / zeros.len() as u64 {
        file.write_all_at(&zeros, i * zeros.len() as u64)?;
    }
    file.sync_all()?;
    let record = [0xa5u8; 208];
    let (start, mut n, mut pos) = (Instant::now(), 0u64, 0u64);
    while start.elapsed().as_secs_f64() < secs || n < 3 {
        file.write_all_at(&record, pos)?;
        file.sync_data()?;
        n += 1;
        pos = (pos + 208) % (FILE_BYTES - 208);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

fn store(cli: &Cli, dir: &Path, durability: Durability) -> Config {
    let mut c = Config::new(dir);
    c.durability = durability;
    super::set_segment_bytes(&mut c, cli.segment_bytes);
    c
}

/// `writers` tasks set keys of their own context until `secs` have passed: commits per second.
async fn durable_writers(m: &ContextManager, writers: usize, secs: f64) -> CliResult<f64> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let m = m.clone();
            tokio::spawn(async move {
                let ctx = format!("w{writers}-{w}");
                m.create(&ctx).await?;
                let mut n = 0u64;
                while Instant::now() < deadline || n == 0 {
                    m.set(&ctx, &format!("k{}", n % 1000), &n).await?;
                    n += 1;
                }
                Ok::<u64, ctxlog::Error>(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t
            .await
            .map_err(|e| super::output::CliError::new(e.to_string()))??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// `n` commits of ~100-byte values by [`BULK_TASKS`] tasks: (commits/s, log MB/s).
async fn bulk(m: &ContextManager, n: u64) -> CliResult<(f64, f64)> {
    m.create("bulk").await?;
    let bytes0 = m.stats().log.bytes;
    let start = Instant::now();
    let tasks: Vec<_> = (0..BULK_TASKS)
        .map(|t| {
            let m = m.clone();
            tokio::spawn(async move {
                let value = "v".repeat(100);
                let mut i = t;
                while i < n {
                    m.set("bulk", &format!("key-{i:08}"), &value).await?;
                    i += BULK_TASKS;
                }
                Ok::<(), ctxlog::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await
            .map_err(|e| super::output::CliError::new(e.to_string()))??;
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (m.stats().log.bytes - bytes0) as f64 / 1e6;
    Ok((n as f64 / secs, mb / secs))
}

pub async fn bench(cli: &Cli, out: Out, secs: f64, bulk_commits: u64) -> CliResult {
    let tmp = tempfile::Builder::new()
        .prefix(".ctxlog-bench-")
        .tempdir_in(std::env::current_dir()?)?;
    let say = |s: String| {
        if !out.json {
            super::output::println_flush(&s);
        }
    };
    say(format!(
        "ctxlog bench in {} ({secs} s per timed phase)",
        tmp.path().display()
    ));
    let raw = raw_fsync_rate(tmp.path(), secs)?;
    let ratio = |x: f64| x / raw;
    say(format!(
        "{:<34} {:>14}  {:>9}",
        "phase", "result", "vs fsync"
    ));
    say(format!(
        "{:<34} {:>10.0} /s  {:>8.2}x",
        "raw fdatasync (208 B pwrite)", raw, 1.0
    ));

    let m = create_manager_with_config(store(cli, &tmp.path().join("durable"), Durability::Always))
        .await?;
    let single = durable_writers(&m, 1, secs).await?;
    say(format!(
        "{:<34} {:>10.0} /s  {:>8.2}x",
        "durable commits, 1 writer",
        single,
        ratio(single)
    ));
    let many = durable_writers(&m, WRITERS, secs).await?;
    let stats = m.stats();
    say(format!(
        "{:<34} {:>10.0} /s  {:>8.2}x",
        format!("durable commits, {WRITERS} writers"),
        many,
        ratio(many)
    ));
    m.close().await?;

    let mut cfg = store(cli, &tmp.path().join("bulk"), Durability::Never);
    cfg.snapshot_every_commits = None;
    cfg.snapshot_every_bytes = None;
    let m = create_manager_with_config(cfg.clone()).await?;
    let (bulk_rate, mbps) = bulk(&m, bulk_commits).await?;
    say(format!(
        "{:<34} {:>10.0} /s  {:>8.2}x  ({mbps:.1} MB/s of log)",
        format!("bulk, never, {bulk_commits} commits"),
        bulk_rate,
        ratio(bulk_rate)
    ));
    m.close().await?;

    let start = Instant::now();
    let m = create_manager_with_config(cfg).await?;
    let open_s = start.elapsed().as_secs_f64();
    let replayed = m.open_report().replayed;
    let replay_rate = replayed as f64 / open_s;
    m.close().await?;
    say(format!(
        "{:<34} {:>10.0} /s  {:>8.2}x  ({replayed} commits replayed in {:.0} ms)",
        "reopen (open + replay)",
        replay_rate,
        ratio(replay_rate),
        open_s * 1000.0
    ));
    say(format!(
        "group commit: {} commits in {} fdatasyncs ({:.1} commits per write) in the durable phases",
        stats.commits, stats.log.syncs, stats.avg_batch
    ));
    let report: Json = json!({
        "dir": tmp.path().display().to_string(),
        "raw_fsync_per_s": raw,
        "durable_1_writer": { "commits_per_s": single, "vs_fsync": ratio(single) },
        "durable_16_writers": { "commits_per_s": many, "vs_fsync": ratio(many) },
        "bulk_never": { "commits": bulk_commits, "commits_per_s": bulk_rate, "vs_fsync": ratio(bulk_rate), "mb_per_s": mbps },
        "reopen": { "ms": open_s * 1000.0, "replayed": replayed, "commits_per_s": replay_rate, "vs_fsync": ratio(replay_rate) },
        "durable_avg_batch": stats.avg_batch,
    });
    if out.json {
        super::output::println_flush(&report.to_string());
    }
    Ok(())
}
