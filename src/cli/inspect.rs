//! `inspect`: segments (sizes, offset ranges), snapshots, recovery points and who holds the
//! lock, read from the files directly so that it works while another process has the store
//! open.

use super::files::{
    lock_holder, offline_state, read_header, read_segment_header, walk_frames, End,
};
use super::output::{fmt_bytes, fmt_time, CliError, CliResult, Out};
use super::require_store;
use ctxlog::snapshot;
use ctxlog::storage::{FsStorage, Storage};
use ctxlog_format::FileKind;
use serde_json::{json, Value as Json};
use std::fmt::Write as _;
use std::fs::File;
use std::ops::ControlFlow;
use std::path::Path;

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock_json(dir: &Path) -> Json {
    match lock_holder(dir) {
        None => json!({ "held": false }),
        Some(holder) => {
            let field = |name: &str| {
                holder
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            json!({
                "held": true,
                "holder": holder,
                "pid": field("pid"),
                "since": field("since_ms").map(fmt_time),
            })
        }
    }
}

fn segment_json(path: &Path, first: u64, is_last: bool, store_id: &mut Option<String>) -> Json {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut row = json!({
        "file": path.display().to_string(),
        "first_offset": first,
        "size": size,
        "state": if is_last { "active" } else { "sealed" },
    });
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            row["error"] = json!(e.to_string());
            return row;
        }
    };
    let sh = match read_segment_header(&file) {
        Ok(sh) => sh,
        Err(e) => {
            row["error"] = json!(format!("bad header: {e}"));
            return row;
        }
    };
    row["created"] = json!(fmt_time(sh.header.created_ms));
    row["chain_hash"] = json!(sh.layout.chain_hash);
    store_id.get_or_insert_with(|| hex(&sh.header.store_id));
    let mut records = 0u64;
    let mut last = None;
    let walk = walk_frames(&file, sh.body, first, sh.layout, false, |frame, _| {
        records += 1;
        last = Some(frame.offset);
        ControlFlow::Continue(())
    });
    row["records"] = json!(records);
    row["last_offset"] = json!(last);
    match walk {
        Ok(w) => {
            row["used"] = json!(w.position);
            row["end"] = match w.end {
                End::Clean => json!("clean"),
                End::Torn { position } => json!(format!("torn record at byte {position}")),
                End::Corrupt {
                    position,
                    offset,
                    kind,
                } => json!(format!(
                    "damaged at byte {position} (offset {offset}): {kind}"
                )),
            };
        }
        Err(e) => row["error"] = json!(e.to_string()),
    }
    row
}

pub fn inspect(dir: &Path, out: Out) -> CliResult {
    require_store(dir)?;
    let (segs, foreign) = super::files::list_segments(dir)?;
    let mut store_id = None;
    let segments: Vec<Json> = segs
        .iter()
        .enumerate()
        .map(|(i, s)| segment_json(&s.path, s.first, i + 1 == segs.len(), &mut store_id))
        .collect();
    let (snaps, snap_foreign) = snapshot::list(&FsStorage as &dyn Storage, dir)
        .map_err(|e| CliError::new(e.to_string()))?;
    let snapshots: Vec<Json> = snaps
        .iter()
        .map(|(offset, path)| {
            let mut row = json!({
                "file": path.display().to_string(),
                "offset": offset.0,
                "size": std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            });
            match File::open(path).map_err(|e| e.to_string()).and_then(|f| {
                read_header(&f, FileKind::Snapshot).map_err(|e| format!("bad header: {e}"))
            }) {
                Ok(h) => row["created"] = json!(fmt_time(h.created_ms)),
                Err(e) => row["error"] = json!(e),
            }
            row
        })
        .collect();
    let mut report = json!({
        "dir": dir.display().to_string(),
        "lock": lock_json(dir),
        "store_id": store_id,
        "segments": segments,
        "snapshots": snapshots,
        "foreign_files": foreign.iter().chain(&snap_foreign).map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    match offline_state(dir) {
        Ok((state, _)) => {
            report["last_offset"] = json!(state.offset().0);
            report["contexts"] = json!(state.contexts().count());
            report["recovery_points"] = Json::Array(
                state
                    .recovery_points()
                    .iter()
                    .map(|(l, o)| json!({ "label": l, "offset": o.0 }))
                    .collect(),
            );
        }
        Err(e) => report["state_error"] = json!(e),
    }
    out.emit(&report, || plain(&report));
    Ok(())
}

fn plain(r: &Json) -> String {
    let mut s = String::new();
    let str_of = |v: &Json| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    let _ = writeln!(s, "store      {}", str_of(&r["dir"]));
    let _ = writeln!(s, "store id   {}", str_of(&r["store_id"]));
    let lock = &r["lock"];
    if lock["held"] == json!(true) {
        let _ = writeln!(
            s,
            "lock       held by pid {} since {}",
            lock["pid"],
            str_of(&lock["since"])
        );
    } else {
        let _ = writeln!(s, "lock       free (no process has the store open)");
    }
    let empty = Vec::new();
    let segs = r["segments"].as_array().unwrap_or(&empty);
    let _ = writeln!(s, "segments   {}", segs.len());
    for g in segs {
        let name = Path::new(g["file"].as_str().unwrap_or_default())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let range = match g["last_offset"].as_u64() {
            Some(l) => format!("offsets {}..={l}", g["first_offset"]),
            None => format!("offsets {}.. (empty)", g["first_offset"]),
        };
        let _ = write!(
            s,
            "  {name}  {:<6}  {range:<24}  {} records  {} ({} used)",
            str_of(&g["state"]),
            g["records"].as_u64().unwrap_or(0),
            fmt_bytes(g["size"].as_u64().unwrap_or(0)),
            fmt_bytes(g["used"].as_u64().unwrap_or(0)),
        );
        if let Some(e) = g["error"].as_str() {
            let _ = write!(s, "  ERROR {e}");
        } else if g["end"] != json!("clean") {
            let _ = write!(s, "  {}", str_of(&g["end"]));
        }
        s.push('\n');
    }
    let snaps = r["snapshots"].as_array().unwrap_or(&empty);
    let _ = writeln!(s, "snapshots  {}", snaps.len());
    for n in snaps {
        let _ = write!(
            s,
            "  offset {:<10}  {}  created {}",
            n["offset"],
            fmt_bytes(n["size"].as_u64().unwrap_or(0)),
            str_of(&n["created"])
        );
        if let Some(e) = n["error"].as_str() {
            let _ = write!(s, "  ERROR {e}");
        }
        s.push('\n');
    }
    match r["recovery_points"].as_array() {
        Some(points) => {
            let _ = writeln!(s, "points     {}", points.len());
            for p in points {
                let _ = writeln!(s, "  {:<24}  offset {}", str_of(&p["label"]), p["offset"]);
            }
            let _ = writeln!(
                s,
                "state      {} live contexts, last offset {}",
                r["contexts"], r["last_offset"]
            );
        }
        None => {
            let _ = writeln!(s, "state      unreadable: {}", str_of(&r["state_error"]));
        }
    }
    if let Some(f) = r["foreign_files"].as_array().filter(|f| !f.is_empty()) {
        let _ = writeln!(s, "other files {}", f.len());
        for p in f {
            let _ = writeln!(s, "  {}", str_of(p));
        }
    }
    s
}
