//! `log [--from OFFSET] [--context NAME] [--follow]`: commits read from the segment files.
//!
//! The files are read directly, without the store's lock (see [`super::files`]), so `log
//! --follow` runs beside the process that has the store open: it polls the files every 100 ms
//! and prints each commit once it is in the file. A record that is being written reads as a
//! torn tail and is printed on a later poll, once whole. Under `--durability always` a commit
//! is in the file shortly before its fdatasync returns, so `--follow` may print a commit a
//! moment before its writer is told it is durable.

use super::files::{list_segments, read_segment_header, walk_frames, End, SegmentFile};
use super::output::{event_json, event_text, fmt_time, println_flush, CliError, CliResult, Out};
use super::require_store;
use ctxlog::event::Commit;
use ctxlog::offset::Offset;
use serde_json::{json, Value as Json};
use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the reader is: a segment, a position in it (0: its first record), the offset expected
/// there.
#[derive(Debug, Clone, Default)]
struct Cursor {
    segment: Option<SegmentFile>,
    position: u64,
    next: u64,
    /// The next offset to print: a segment read again from its start (after the one being
    /// read was compacted away) prints nothing twice.
    print_from: u64,
}

/// Why reading stopped.
#[derive(Debug)]
enum Pumped {
    /// Everything in the files was read (or the rest is being written).
    CaughtUp,
    /// Damage: the file, the position, what failed.
    Damaged(PathBuf, u64, String),
}

/// How commits are printed.
struct Printer<'a> {
    out: Out,
    context: Option<&'a str>,
    follow: bool,
    printed: u64,
}

impl Printer<'_> {
    fn print(&mut self, offset: u64, commit: &Commit) {
        let events: Vec<_> = commit
            .events
            .iter()
            .filter(|e| self.context.is_none_or(|c| e.concerns(c)))
            .collect();
        if events.is_empty() {
            return;
        }
        if self.out.json {
            let item = json!({
                "offset": offset,
                "ts_ms": commit.ts,
                "time": fmt_time(commit.ts),
                "events": events.iter().map(|e| event_json(e)).collect::<Vec<Json>>(),
            });
            if self.follow {
                println_flush(&item.to_string());
            } else {
                let sep = if self.printed == 0 { "[" } else { "," };
                println_flush(&format!("{sep}{item}"));
            }
        } else {
            let time = fmt_time(commit.ts);
            let mut text = String::new();
            for (i, e) in events.iter().enumerate() {
                if i == 0 {
                    text += &format!("{offset:>8}  {time}  {}", event_text(e));
                } else {
                    text += &format!("\n{:>8}  {:>24}  {}", "", "", event_text(e));
                }
            }
            println_flush(&text);
        }
        self.printed += 1;
    }
}

/// The segment to start from for offset `next`: the last one whose first offset is at or
/// before it (or the first one, after a compaction).
fn segment_for(segs: &[SegmentFile], next: u64) -> Option<&SegmentFile> {
    segs.iter()
        .rev()
        .find(|s| s.first <= next)
        .or_else(|| segs.first())
}

/// Reads and prints every commit from the cursor on, as far as the files go.
fn pump(dir: &Path, cursor: &mut Cursor, printer: &mut Printer<'_>) -> CliResult<Pumped> {
    loop {
        let (segs, _) = list_segments(dir)?;
        let Some(seg) = cursor
            .segment
            .as_ref()
            .filter(|s| s.path.exists())
            .cloned()
            .or_else(|| {
                let s = segment_for(&segs, cursor.print_from)?.clone();
                if s.first > cursor.print_from {
                    eprintln!(
                        "note: offsets {}..{} were compacted away; the log continues at {}",
                        cursor.print_from, s.first, s.first
                    );
                    cursor.print_from = s.first;
                }
                cursor.position = 0;
                cursor.next = s.first;
                Some(s)
            })
        else {
            return Ok(Pumped::CaughtUp);
        };
        let is_last = segs.last().is_some_and(|l| l.first == seg.first);
        let file = match File::open(&seg.path) {
            Ok(f) => f,
            Err(_) if is_last => return Ok(Pumped::CaughtUp),
            Err(e) => return Err(CliError::new(format!("{}: {e}", seg.path.display()))),
        };
        let sh = match read_segment_header(&file) {
            Ok(sh) => sh,
            // A segment being created: its header is not written yet.
            Err(_) if is_last => return Ok(Pumped::CaughtUp),
            Err(e) => {
                let why = format!("bad header: {e}");
                return Ok(Pumped::Damaged(seg.path.clone(), 0, why));
            }
        };
        if cursor.position == 0 {
            cursor.position = sh.body;
        }
        cursor.segment = Some(seg.clone());
        let mut bad = None;
        let mut print_from = cursor.print_from;
        let walk = walk_frames(
            &file,
            cursor.position,
            cursor.next,
            sh.layout,
            false,
            |frame, _| {
                if frame.offset < print_from {
                    return ControlFlow::Continue(());
                }
                match Commit::decode(Offset(frame.offset), frame.payload) {
                    Ok(commit) => {
                        printer.print(frame.offset, &commit);
                        print_from = frame.offset + 1;
                        ControlFlow::Continue(())
                    }
                    Err(e) => {
                        bad = Some((frame.position, e.to_string()));
                        ControlFlow::Break(())
                    }
                }
            },
        )?;
        cursor.print_from = print_from;
        if let Some((position, reason)) = bad {
            return Ok(Pumped::Damaged(seg.path.clone(), position, reason));
        }
        cursor.position = walk.position;
        cursor.next = walk.next_offset;
        match walk.end {
            End::Clean => match segs.iter().find(|s| s.first > seg.first) {
                Some(n) if n.first == cursor.next => {
                    cursor.segment = Some(n.clone());
                    cursor.position = 0;
                }
                Some(n) => {
                    return Ok(Pumped::Damaged(
                        n.path.clone(),
                        0,
                        format!(
                            "offset gap: expected offset {}, segment starts at {}",
                            cursor.next, n.first
                        ),
                    ))
                }
                None => return Ok(Pumped::CaughtUp),
            },
            End::Torn { .. } => return Ok(Pumped::CaughtUp),
            End::Corrupt {
                position,
                offset,
                kind,
            } => {
                return Ok(Pumped::Damaged(
                    seg.path.clone(),
                    position,
                    format!("offset {offset}: {kind}"),
                ))
            }
        }
    }
}

fn damaged(path: &Path, position: u64, reason: &str) -> CliError {
    CliError::corrupt(format!(
        "corruption in {} at byte {position}: {reason}",
        path.display()
    ))
}

pub async fn log(
    dir: &Path,
    out: Out,
    from: Option<u64>,
    context: Option<&str>,
    follow: bool,
) -> CliResult {
    require_store(dir)?;
    let from = from.unwrap_or(1).max(1);
    let mut cursor = Cursor {
        next: from,
        print_from: from,
        ..Cursor::default()
    };
    let mut printer = Printer {
        out,
        context,
        follow,
        printed: 0,
    };
    if !follow {
        let pumped = pump(dir, &mut cursor, &mut printer);
        if out.json {
            println_flush(if printer.printed == 0 { "[]" } else { "]" });
        }
        return match pumped? {
            Pumped::CaughtUp => Ok(()),
            Pumped::Damaged(path, position, reason) => Err(damaged(&path, position, &reason)),
        };
    }
    // Damage at the same place for a second is damage, not a write in progress.
    let mut suspect: Option<(PathBuf, u64, Instant)> = None;
    loop {
        match pump(dir, &mut cursor, &mut printer)? {
            Pumped::CaughtUp => suspect = None,
            Pumped::Damaged(path, position, reason) => match &suspect {
                Some((p, pos, since)) if *p == path && *pos == position => {
                    if since.elapsed() >= Duration::from_secs(1) {
                        return Err(damaged(&path, position, &reason));
                    }
                }
                _ => suspect = Some((path, position, Instant::now())),
            },
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
