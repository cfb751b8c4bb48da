//! The summary table printed at the end of the run: every figure, the baseline it is compared
//! with, the ratio and the target, plus where the files were and how loaded the machine was.

use crate::bulk::{BULK_BATCH, BULK_THREADS};
use crate::durable::SLICE;
use crate::figures::{figure, ids};
use crate::{
    bulk_records, leaf, wal_frame_len, BULK, DURABLE_1, DURABLE_16, DURABLE_64, PAYLOAD_LEN, RAW_A,
    RAW_A_AGAIN, RAW_B, READ, SAMPLES,
};
use std::fmt::Write as _;
use std::path::Path;

/// The mount (device, file system type, mount point) holding `path`.
fn mount_of(path: &Path) -> Option<(String, String, String)> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, fs) = (f.next()?, f.next()?, f.next()?);
            Some((dev.to_string(), fs.to_string(), at.to_string()))
        })
        .filter(|(_, _, at)| path.starts_with(at))
        .max_by_key(|(_, _, at)| at.len())
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_opt(v: Option<f64>, prec: usize, suffix: &str) -> String {
    let prec = if v.is_some_and(|v| v >= 1000.0) {
        0
    } else {
        prec
    };
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.prec$}{suffix}"))
}

/// The scheduling priority (nice value) the benchmark runs at.
fn niceness() -> String {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which ends with the last ')'); nice is field 19.
            let rest = stat.rsplit_once(')')?.1;
            rest.split_whitespace().nth(16).map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// One line of the summary table.
#[derive(Default)]
struct Row {
    label: String,
    value: String,
    /// The paired baseline's rate, formatted.
    base: Option<String>,
    /// The ratio the target is judged on.
    ratio: Option<f64>,
    /// The same ratio aggregated per sample (durable rows).
    per_sample: Option<f64>,
    /// The ratio to the stand-alone baseline row of the run.
    vs_run: Option<f64>,
    target: Option<f64>,
    per_sync: Option<f64>,
    per_write: Option<f64>,
}

pub(crate) fn summary(root: &Path, load_at_start: &str) -> String {
    let records = bulk_records();
    let raw_a = figure(RAW_A);
    let raw_b = figure(RAW_B);
    let mut rows = Vec::new();
    if let Some(f) = &raw_a {
        rows.push(Row {
            label: "A raw pwrite 208 B + fdatasync".into(),
            value: format!("{} syncs/s", fmt_rate(f.ops_per_s)),
            ..Row::default()
        });
    }
    if let Some(f) = &raw_b {
        rows.push(Row {
            label: format!(
                "B raw write {:.0} MB + fdatasync",
                f.bytes_per_s / f.ops_per_s / 1e6
            ),
            value: format!("{:.0} MB/s", f.bytes_per_s / 1e6),
            ..Row::default()
        });
    }
    let mut slice_counts = Vec::new();
    for (id, label, target) in [
        (DURABLE_1, "WAL Always, 1 writer", 0.95),
        (DURABLE_16, "WAL Always, 16 writers", 9.0),
        (DURABLE_64, "WAL Always, 64 writers", 25.0),
    ] {
        if let Some(f) = figure(id) {
            slice_counts.push(format!("{}={}", leaf(id), f.slice_count));
            rows.push(Row {
                label: label.into(),
                value: format!("{} commits/s", fmt_rate(f.ops_per_s)),
                base: f.slices.map(|(r, _)| format!("{} syncs/s", fmt_rate(r))),
                ratio: f.slices.map(|(_, x)| x),
                per_sample: f.paired.map(|(_, x)| x),
                vs_run: raw_a.map(|a| f.ops_per_s / a.ops_per_s),
                target: Some(target),
                per_sync: f.ops_per_sync,
                per_write: f.ops_per_write,
            });
        }
    }
    if let Some(f) = figure(BULK) {
        rows.push(Row {
            label: "WAL Never bulk (batches) + close".into(),
            value: format!(
                "{:.0} MB/s {}rec/s",
                f.bytes_per_s / 1e6,
                fmt_rate(f.ops_per_s)
            ),
            base: f.paired.map(|(r, _)| format!("{:.0} MB/s", r / 1e6)),
            ratio: f.paired.map(|(_, x)| x),
            vs_run: raw_b.map(|b| f.bytes_per_s / b.bytes_per_s),
            target: Some(0.5),
            per_sync: f.ops_per_sync,
            per_write: f.ops_per_write,
            ..Row::default()
        });
    }
    if let Some(f) = figure(READ) {
        rows.push(Row {
            label: "WAL scan all, reopened".into(),
            value: format!(
                "{}rec/s {:.0} MB/s",
                fmt_rate(f.ops_per_s),
                f.bytes_per_s / 1e6
            ),
            ..Row::default()
        });
    }
    if let Some(f) = figure(RAW_A_AGAIN) {
        rows.push(Row {
            label: "A again, at the end (drift)".into(),
            value: format!("{} syncs/s", fmt_rate(f.ops_per_s)),
            vs_run: raw_a.map(|a| f.ops_per_s / a.ops_per_s),
            ..Row::default()
        });
    }

    let mut out = String::new();
    let _ = writeln!(out, "\n==== ctxlog WAL benchmark summary ====");
    let place = mount_of(root).map_or_else(String::new, |(dev, fs, at)| {
        format!(" on {dev} ({fs}, mounted at {at})")
    });
    let _ = writeln!(out, "files in {}{place}", root.display());
    let _ = writeln!(
        out,
        "load average (1/5/15 min) at start {load_at_start}, at end {}; nice {}",
        loadavg(),
        niceness()
    );
    let _ = writeln!(
        out,
        "payload {PAYLOAD_LEN} B (frame {} B), segment_bytes 64 MiB (default), bulk/read {records} \
         records; values are medians of {SAMPLES} criterion samples",
        wal_frame_len()
    );
    let _ = writeln!(
        out,
        "durable rows: base = baseline A interleaved in {} ms slices (median), ratio = median \
         slice ratio, per-sample = median of per-sample ratios",
        SLICE.as_millis()
    );
    let _ = writeln!(
        out,
        "bulk row: {BULK_THREADS} threads x append_batch_blocking of {BULK_BATCH} records; base \
         = baseline B (same bytes) next to each load, ratio = median of payload MB/s / raw \
         MB/s; vs-run = ratio to the stand-alone A or B row\n"
    );
    let _ = writeln!(
        out,
        "{:<32} {:>26} {:>15} {:>8} {:>10} {:>8} {:>7} {:>5} {:>9} {:>9}",
        "figure",
        "value",
        "base",
        "ratio",
        "per-sample",
        "vs-run",
        "target",
        "holds",
        "rec/sync",
        "rec/write"
    );
    for r in &rows {
        let holds = match (r.ratio, r.target) {
            (Some(x), Some(t)) if x >= t => "yes",
            (Some(_), Some(_)) => "NO",
            _ => "-",
        };
        let _ = writeln!(
            out,
            "{:<32} {:>26} {:>15} {:>8} {:>10} {:>8} {:>7} {:>5} {:>9} {:>9}",
            r.label,
            r.value,
            r.base.as_deref().unwrap_or("-"),
            fmt_opt(r.ratio, 2, "x"),
            fmt_opt(r.per_sample, 2, "x"),
            fmt_opt(r.vs_run, 2, "x"),
            r.target.map_or_else(|| "-".into(), |t| format!(">={t}x")),
            holds,
            fmt_opt(r.per_sync, 1, ""),
            fmt_opt(r.per_write, 1, ""),
        );
    }
    if let Some(f) = figure(READ) {
        let holds = if f.ops_per_s >= 10e6 { "yes" } else { "NO" };
        let _ = writeln!(
            out,
            "\nread target >= 10 M rec/s: {holds} ({} rec/s)",
            fmt_rate(f.ops_per_s)
        );
    }
    if !slice_counts.is_empty() {
        let _ = writeln!(out, "slice pairs: {}", slice_counts.join(" "));
    }
    let counts: Vec<String> = ids()
        .into_iter()
        .map(|id| format!("{}={}", leaf(id), figure(id).map_or(0, |f| f.samples)))
        .collect();
    let _ = writeln!(out, "samples used: {}", counts.join(" "));
    out
}
