//! Recovery: `point create|list`, `restore`, `snapshot`, `compact`, and `stats`.

use super::args::Cli;
use super::contexts::parse_at;
use super::output::{fmt_bytes, CliResult, Out};
use super::{close, open};
use ctxlog::event::Event;
use serde_json::{json, Value as Json};
use std::fmt::Write as _;
use std::path::Path;

pub async fn point_create(cli: &Cli, out: Out, label: &str) -> CliResult {
    ctxlog::model::check_point_label(label)?;
    let m = open(cli, out, false).await?;
    let offset = m.create_recovery_point(label).await?;
    close(m).await?;
    out.emit(&json!({ "label": label, "offset": offset.0 }), || {
        offset.to_string()
    });
    Ok(())
}

pub async fn point_list(cli: &Cli, out: Out) -> CliResult {
    let m = open(cli, out, false).await?;
    let points = m.recovery_points();
    close(m).await?;
    let mut rows: Vec<(&String, u64)> = points.iter().map(|(l, o)| (l, o.0)).collect();
    rows.sort_by_key(|r| (r.1, r.0.clone()));
    let json = Json::Array(
        rows.iter()
            .map(|(l, o)| json!({ "label": l, "offset": o }))
            .collect(),
    );
    out.emit(&json, || {
        rows.iter().map(|(l, o)| format!("{o:>8}  {l}\n")).collect()
    });
    Ok(())
}

pub async fn restore(cli: &Cli, out: Out, at: &str) -> CliResult {
    let m = open(cli, out, false).await?;
    let at = parse_at(at);
    let target_offset = m.resolve(&at)?;
    let target = m.state_at(at.clone()).await?;
    let current = m.state();
    let events = current.restore_events(&target);
    let mut restored = Vec::new();
    let mut deleted = Vec::new();
    for e in &events {
        if let Event::ContextRestored { context, image, .. } = e {
            match image {
                Some(_) => restored.push(json!({
                    "context": context,
                    "was_deleted": current.context(context).is_none(),
                })),
                None => deleted.push(context.clone()),
            }
        }
    }
    let offset = if events.is_empty() {
        None
    } else {
        Some(m.restore(at).await?.offset.0)
    };
    close(m).await?;
    let report = json!({
        "target": target_offset.0,
        "offset": offset,
        "restored": restored,
        "deleted": deleted,
    });
    out.emit(&report, || {
        let mut s = String::new();
        if events.is_empty() {
            let _ = writeln!(
                s,
                "nothing to restore: every context is as it was at offset {target_offset}"
            );
            return s;
        }
        for r in &restored {
            let name = r["context"].as_str().unwrap_or_default();
            if r["was_deleted"] == json!(true) {
                let _ = writeln!(s, "restored {name} (it had been deleted)");
            } else {
                let _ = writeln!(s, "restored {name} to its state at offset {target_offset}");
            }
        }
        for d in &deleted {
            let _ = writeln!(
                s,
                "deleted {d} (it did not exist at offset {target_offset})"
            );
        }
        if let Some(o) = offset {
            let _ = writeln!(
                s,
                "restore committed at offset {o}; the history before it is kept"
            );
        }
        s
    });
    Ok(())
}

pub async fn snapshot(cli: &Cli, out: Out) -> CliResult {
    let m = open(cli, out, false).await?;
    let offset = m.snapshot_now().await?;
    close(m).await?;
    let file = ctxlog::snapshot::snapshot_dir(&cli.store_dir())
        .join(ctxlog::snapshot::snapshot_name(offset));
    out.emit(
        &json!({ "offset": offset.0, "file": file.display().to_string() }),
        || format!("snapshot as of offset {offset}: {}", file.display()),
    );
    Ok(())
}

pub async fn compact(cli: &Cli, out: Out, before: u64) -> CliResult {
    let m = open(cli, out, false).await?;
    let removed = m.compact(ctxlog::Offset(before)).await?;
    let first = m.log().first_offset();
    close(m).await?;
    let files: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
    out.emit(
        &json!({ "removed": files, "first_offset": first.0 }),
        || {
            if files.is_empty() {
                format!("nothing removed (segments go whole, only those that a snapshot before the offset covers, and never past the oldest recovery point); the log starts at offset {first}")
            } else {
                let mut s: String = files.iter().map(|f| format!("removed {f}\n")).collect();
                let _ = write!(s, "the log now starts at offset {first}");
                s
            }
        },
    );
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_bytes(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

pub async fn stats(cli: &Cli, out: Out) -> CliResult {
    let m = open(cli, out, false).await?;
    let stats = m.stats();
    let report = m.open_report().clone();
    let segments = m.log().segments().len();
    let first = m.log().first_offset();
    let points = m.recovery_points().len();
    close(m).await?;
    let disk = dir_bytes(&cli.store_dir());
    let json = json!({
        "last_offset": stats.current_offset.0,
        "first_offset": first.0,
        "contexts": stats.contexts,
        "recovery_points": points,
        "segments": segments,
        "disk_bytes": disk,
        "open": report,
        "since_open": stats,
    });
    out.emit(&json, || {
        let mut s = String::new();
        let _ = writeln!(s, "last offset      {}", stats.current_offset);
        let _ = writeln!(s, "first offset     {first}");
        let _ = writeln!(s, "contexts         {}", stats.contexts);
        let _ = writeln!(s, "recovery points  {points}");
        let _ = writeln!(s, "segments         {segments}");
        let _ = writeln!(s, "on disk          {}", fmt_bytes(disk));
        let from = report.snapshot.map_or_else(
            || "the log start".to_string(),
            |o| format!("the snapshot at offset {o}"),
        );
        let _ = writeln!(
            s,
            "open             {} ms: from {from}, {} commits replayed",
            report.open_ms, report.replayed
        );
        if let Some(t) = &report.log.torn_tail {
            let _ = writeln!(
                s,
                "torn tail        {} bytes dropped at byte {} of {}",
                t.bytes_dropped,
                t.position,
                t.file.display()
            );
        }
        for k in &report.skipped_snapshots {
            let _ = writeln!(s, "skipped snapshot {}: {}", k.file.display(), k.reason);
        }
        s
    });
    Ok(())
}
