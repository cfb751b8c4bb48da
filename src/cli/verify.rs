//! `verify`: reads every record of every segment and every snapshot, without the lock, and
//! lists each problem with its file, byte position and offset. Exit code 3 if any.
//!
//! Checks: segment headers (magic, version, CRC, kind, flags, store id, first offset against
//! the file name), the offsets running on from one segment to the next, every frame's CRC and
//! offset, zeros after the last record, every commit's decoding and that it applies to the
//! state before it (a replay from offset 1, or from the oldest snapshot after a compaction),
//! every snapshot file (header, chunks, trailer, body) and that it equals the replayed state
//! at its offset.

use super::files::{
    list_segments, lock_holder, read_segment_header, walk_frames, End, HeaderProblem,
};
use super::output::{fmt_bytes, CliError, CliResult, Out, Progress};
use super::require_store;
use ctxlog::event::Commit;
use ctxlog::offset::Offset;
use ctxlog::snapshot;
use ctxlog::state::State;
use ctxlog::storage::{FsStorage, Storage};
use ctxlog_format::layout::{HEADER_LEN, KNOWN_FLAGS, TRAILER_LEN};
use ctxlog_format::{chain_genesis, chain_next, decode_snapshot, Frame, SnapshotError, Stop};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// Byte position in it, when known.
    pub position: Option<u64>,
    /// The offset concerned, when known.
    pub offset: Option<u64>,
    /// A stable name for the kind of problem.
    pub kind: &'static str,
    /// What failed.
    pub message: String,
}

/// The state of the walk through the segments.
struct Checker<'a> {
    problems: Vec<Problem>,
    records: u64,
    last_offset: u64,
    /// The replayed state, while replay is possible.
    replay: Option<State>,
    /// Replayed states at the snapshots' offsets, to compare with the snapshots.
    captured: BTreeMap<u64, State>,
    wanted: Vec<u64>,
    progress: Progress,
    path: &'a Path,
    /// The chain hash of the last record checked (tamper-evident stores).
    chain: Option<[u8; 32]>,
}

impl Checker<'_> {
    fn problem(
        &mut self,
        position: Option<u64>,
        offset: Option<u64>,
        kind: &'static str,
        message: String,
    ) {
        self.problems.push(Problem {
            file: self.path.display().to_string(),
            position,
            offset,
            kind,
            message,
        });
    }

    fn frame(&mut self, frame: &Frame<'_>, len: u64) -> ControlFlow<()> {
        self.progress.inc(len);
        self.records += 1;
        self.last_offset = frame.offset;
        if let (Some(prev), Some(stored)) = (self.chain, frame.chain_hash) {
            if chain_next(&prev, frame.offset, frame.payload) != *stored {
                let msg =
                    "chain hash does not follow from the previous record: history was rewritten"
                        .to_string();
                self.problem(
                    Some(frame.position),
                    Some(frame.offset),
                    "chain_mismatch",
                    msg,
                );
            }
            // Go on from the stored value, so that one rewrite is reported once.
            self.chain = Some(*stored);
        }
        let offset = Offset(frame.offset);
        let commit = match Commit::decode(offset, frame.payload) {
            Ok(c) => c,
            Err(e) => {
                self.problem(
                    Some(frame.position),
                    Some(frame.offset),
                    "bad_commit",
                    e.to_string(),
                );
                self.replay = None;
                return ControlFlow::Continue(());
            }
        };
        if let Some(state) = self.replay.as_mut() {
            if frame.offset > state.offset().0 {
                if let Err(e) = state.apply_commit(offset, &commit) {
                    let msg = format!("commit does not apply to the state before it: {e:?}");
                    self.problem(
                        Some(frame.position),
                        Some(frame.offset),
                        "inconsistent",
                        msg,
                    );
                    self.replay = None;
                } else if self.wanted.contains(&frame.offset) {
                    self.captured.insert(frame.offset, state.clone());
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Compares what a snapshot holds with the replayed state, by their public parts (the chain
/// hash a tamper-evident snapshot records is the engine's to check: open refuses a snapshot
/// whose hash differs from the log's).
fn same_state(a: &State, b: &State) -> bool {
    a.offset() == b.offset()
        && a.compacted_before() == b.compacted_before()
        && a.all_contexts().eq(b.all_contexts())
        && a.active().eq(b.active())
        && a.current() == b.current()
        && a.default_context() == b.default_context()
        && a.recovery_points() == b.recovery_points()
}

fn snapshot_problem_position(e: &SnapshotError, len: u64) -> Option<u64> {
    match e {
        SnapshotError::Header(_) => Some(0),
        SnapshotError::Trailer { .. } => Some(len.saturating_sub(TRAILER_LEN as u64)),
        SnapshotError::Chunk {
            stop: Stop::Corrupt { position, .. } | Stop::TornTail { position },
        } => Some(*position),
        // `ChunkCount`, and any kind a later format version adds: no single position.
        _ => None,
    }
}

/// The state to start the consistency replay from: empty if the log starts at offset 1, else
/// the oldest snapshot that loads and covers what was compacted.
fn replay_start(
    first: u64,
    store_id: [u8; 16],
    snaps: &[(Offset, std::path::PathBuf)],
) -> Option<State> {
    if first <= 1 {
        return Some(State::default());
    }
    snaps
        .iter()
        .filter(|(o, _)| o.0 + 1 >= first)
        .find_map(|(_, p)| snapshot::load(&FsStorage as &dyn Storage, p, store_id).ok())
}

pub fn verify(dir: &Path, out: Out) -> CliResult {
    require_store(dir)?;
    let live = lock_holder(dir).is_some();
    let (segs, _) = list_segments(dir)?;
    let (snaps, _) = snapshot::list(&FsStorage as &dyn Storage, dir)
        .map_err(|e| CliError::new(e.to_string()))?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let total: u64 = segs
        .iter()
        .map(|s| size(&s.path))
        .chain(snaps.iter().map(|s| size(&s.1)))
        .sum();
    let mut store_id: Option<[u8; 16]> = None;
    let mut expected_next: Option<u64> = None;
    let mut c = Checker {
        problems: Vec::new(),
        records: 0,
        last_offset: 0,
        replay: None,
        captured: BTreeMap::new(),
        wanted: snaps.iter().map(|(o, _)| o.0).collect(),
        progress: Progress::new(out, "verifying", Some(total)),
        path: dir,
        chain: None,
    };
    for (i, seg) in segs.iter().enumerate() {
        let is_last = i + 1 == segs.len();
        let len = size(&seg.path);
        c.path = &seg.path;
        let file = match File::open(&seg.path) {
            Ok(f) => f,
            Err(e) => {
                c.problem(None, None, "io", e.to_string());
                (expected_next, c.replay) = (None, None);
                continue;
            }
        };
        let sh = match read_segment_header(&file) {
            Ok(sh) => sh,
            Err(e) => {
                let kind = if matches!(e, HeaderProblem::Io(_)) {
                    "io"
                } else {
                    "bad_header"
                };
                c.problem(
                    Some(0),
                    Some(seg.first),
                    kind,
                    format!("segment header: {e}"),
                );
                c.progress.inc(len);
                (expected_next, c.replay) = (None, None);
                continue;
            }
        };
        let header = sh.header;
        match store_id {
            None => {
                store_id = Some(header.store_id);
                c.replay = replay_start(seg.first, header.store_id, &snaps);
            }
            Some(id) if id != header.store_id => {
                c.problem(
                    Some(0),
                    Some(seg.first),
                    "foreign_store",
                    "belongs to another store (store id differs)".into(),
                );
            }
            Some(_) => {}
        }
        if header.first_offset != seg.first {
            let msg = format!(
                "named for offset {} but its header says {}",
                seg.first, header.first_offset
            );
            c.problem(Some(0), Some(seg.first), "misnamed_segment", msg);
        }
        if let Some(e) = expected_next.filter(|&e| e != seg.first) {
            let msg = format!(
                "offset gap: expected offset {e}, segment starts at {}",
                seg.first
            );
            c.problem(Some(0), Some(e), "offset_gap", msg);
            c.replay = None;
        }
        c.progress.inc(sh.body);
        if sh.layout.chain_hash {
            let mut seed = [0u8; 32];
            file.read_exact_at(&mut seed, HEADER_LEN as u64)?;
            let expected = match (c.chain, seg.first) {
                (Some(prev), _) => Some(prev),
                (None, 1) => Some(chain_genesis(&header.store_id)),
                (None, _) => None,
            };
            if expected.is_some_and(|e| e != seed) {
                let msg = "chain seed does not continue the previous segment's chain".to_string();
                c.problem(
                    Some(HEADER_LEN as u64),
                    Some(seg.first),
                    "chain_mismatch",
                    msg,
                );
            }
            c.chain = Some(seed);
        }
        let mut walk = walk_frames(&file, sh.body, seg.first, sh.layout, true, |f, n| {
            c.frame(f, n)
        })?;
        // With a writer at work, the last record may be half written: read it again.
        let mut retries = 0;
        while live && is_last && walk.end != End::Clean && retries < 20 {
            std::thread::sleep(Duration::from_millis(50));
            walk = walk_frames(
                &file,
                walk.position,
                walk.next_offset,
                sh.layout,
                true,
                |f, n| c.frame(f, n),
            )?;
            retries += 1;
        }
        match walk.end {
            End::Clean => {}
            End::Torn { position } => {
                let cut = len.saturating_sub(position);
                let (kind, msg) = if is_last {
                    ("torn_tail", format!("record cut short at the end of the log (a crash mid-write); the next open drops these {cut} bytes"))
                } else {
                    (
                        "torn_record",
                        format!("record cut short inside a sealed segment ({cut} bytes)"),
                    )
                };
                c.problem(Some(position), Some(walk.next_offset), kind, msg);
            }
            End::Corrupt {
                position,
                offset,
                kind,
            } => {
                let unread = len.saturating_sub(position);
                let msg =
                    format!("{kind}; the rest of this segment ({unread} bytes) cannot be read");
                c.problem(Some(position), Some(offset), "corrupt_record", msg);
                c.replay = None;
            }
        }
        c.progress.inc(len.saturating_sub(walk.position));
        expected_next = Some(walk.next_offset);
    }
    let last_offset = c.last_offset;
    for (offset, path) in &snaps {
        c.path = path;
        let len = size(path);
        c.progress.inc(len);
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                c.problem(None, Some(offset.0), "io", e.to_string());
                continue;
            }
        };
        let header = match decode_snapshot(&bytes, KNOWN_FLAGS) {
            Ok(s) => s.header,
            Err(e) => {
                c.problem(
                    snapshot_problem_position(&e, len),
                    Some(offset.0),
                    "bad_snapshot",
                    e.to_string(),
                );
                continue;
            }
        };
        drop(bytes);
        if header.first_offset != offset.0 {
            let msg = format!(
                "named for offset {offset} but its header says {}",
                header.first_offset
            );
            c.problem(Some(0), Some(offset.0), "misnamed_snapshot", msg);
        }
        let id = store_id.unwrap_or(header.store_id);
        if header.store_id != id {
            c.problem(
                Some(0),
                Some(offset.0),
                "foreign_store",
                "belongs to another store (store id differs)".into(),
            );
            continue;
        }
        if !segs.is_empty() && offset.0 > last_offset {
            let msg = format!("as of offset {offset}, past the log's last offset {last_offset}; open sets it aside");
            c.problem(None, Some(offset.0), "snapshot_ahead_of_log", msg);
        }
        match snapshot::load(&FsStorage as &dyn Storage, path, id) {
            Err(e) => c.problem(
                Some(HEADER_LEN as u64),
                Some(offset.0),
                "bad_snapshot",
                e.to_string(),
            ),
            Ok(state) => {
                if c.captured
                    .get(&offset.0)
                    .is_some_and(|r| !same_state(r, &state))
                {
                    let msg =
                        "differs from the state replayed from the log at its offset".to_string();
                    c.problem(None, Some(offset.0), "snapshot_mismatch", msg);
                }
            }
        }
    }
    c.progress.finish();
    let problems = std::mem::take(&mut c.problems);
    let report = json!({
        "ok": problems.is_empty(),
        "dir": dir.display().to_string(),
        "segments": segs.len(),
        "records": c.records,
        "last_offset": last_offset,
        "snapshots": snaps.len(),
        "bytes": total,
        "replay_checked": c.replay.is_some(),
        "store_open_elsewhere": live,
        "problems": problems,
    });
    out.emit(&report, || {
        let mut s = String::new();
        for p in &problems {
            let pos = p
                .position
                .map_or_else(String::new, |p| format!(" at byte {p}"));
            let off = p
                .offset
                .map_or_else(String::new, |o| format!(" (offset {o})"));
            s += &format!("PROBLEM {}{pos}{off}: {} [{}]\n", p.file, p.message, p.kind);
        }
        s += &format!(
            "checked {} segments ({} records, last offset {last_offset}), {} snapshots, {}: {}\n",
            segs.len(),
            c.records,
            snaps.len(),
            fmt_bytes(total),
            if problems.is_empty() {
                "ok".to_string()
            } else {
                format!("{} problem(s)", problems.len())
            }
        );
        s
    });
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::corrupt(format!(
            "verify found {} problem(s) in {}",
            problems.len(),
            dir.display()
        )))
    }
}
