//! Reading a store's files directly, read-only and without taking its lock, so that `log`,
//! `inspect` and `verify` work while another process has the store open.
//!
//! Segments are read through plain `pread`s in windows (never mapped: the writer truncates the
//! active segment when it seals it, which would fault a mapping). A record being written by
//! another process may be seen half done: it reads as a torn tail, and callers that follow a
//! live store wait and read again.

use ctxlog::event::Commit;
use ctxlog::offset::Offset;
use ctxlog::snapshot;
use ctxlog::state::State;
use ctxlog::storage::{FsStorage, Storage};
use ctxlog::wal::parse_segment_name;
use ctxlog_format::layout::{body_start, FRAME_HEADER_LEN, HEADER_LEN, KNOWN_FLAGS};
use ctxlog_format::{CorruptionKind, FileHeader, FileKind, Frame, FrameLayout, FrameReader, Stop};
use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes read at a time.
const WINDOW: u64 = 1 << 20;

/// One segment file, by name.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    /// The first offset its name stands for.
    pub first: u64,
    /// The file.
    pub path: PathBuf,
}

/// The segments in `DIR/wal`, oldest first, and the other files there.
pub fn list_segments(dir: &Path) -> io::Result<(Vec<SegmentFile>, Vec<PathBuf>)> {
    let wal = dir.join("wal");
    let mut segs = Vec::new();
    let mut foreign = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&wal)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        match parse_segment_name(&name) {
            Some(first) => segs.push(SegmentFile {
                first,
                path: wal.join(name),
            }),
            None => foreign.push(wal.join(name)),
        }
    }
    segs.sort_by_key(|s| s.first);
    Ok((segs, foreign))
}

/// Why a header could not be read.
#[derive(Debug)]
pub enum HeaderProblem {
    /// The file could not be read.
    Io(io::Error),
    /// The header failed a check.
    Bad(ctxlog_format::HeaderError),
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderProblem::Io(e) => write!(f, "{e}"),
            HeaderProblem::Bad(e) => write!(f, "{e}"),
        }
    }
}

/// Reads and checks the 64-byte header of a file of `kind` (every flag this build knows is
/// accepted: a tamper-evident store's files carry the chain-hash flag).
pub fn read_header(file: &File, kind: FileKind) -> Result<FileHeader, HeaderProblem> {
    let len = file.metadata().map_err(HeaderProblem::Io)?.len();
    let mut buf = vec![0u8; (HEADER_LEN as u64).min(len) as usize];
    file.read_exact_at(&mut buf, 0).map_err(HeaderProblem::Io)?;
    FileHeader::decode_kind(&buf, kind, KNOWN_FLAGS).map_err(HeaderProblem::Bad)
}

/// A segment's header, its record layout, and where its first record starts.
#[derive(Debug, Clone, Copy)]
pub struct SegmentHeader {
    /// The header.
    pub header: FileHeader,
    /// Whether records carry a chain hash.
    pub layout: FrameLayout,
    /// Position of the first record: after the header and, with the chain-hash flag, the
    /// 32-byte chain seed.
    pub body: u64,
}

/// Reads and checks a segment's header.
pub fn read_segment_header(file: &File) -> Result<SegmentHeader, HeaderProblem> {
    let header = read_header(file, FileKind::Segment)?;
    let layout = FrameLayout::from_flags(header.flags);
    Ok(SegmentHeader {
        header,
        layout,
        body: body_start(layout.chain_hash) as u64,
    })
}

/// Where a walk over a segment's frames ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The file ends, or only zeros (preallocated space) follow, at `end`.
    Clean,
    /// A record cut short (a crash mid-write, or a write in progress) at `position`.
    Torn {
        /// Where the torn record begins.
        position: u64,
    },
    /// A record failed a check and data follows: damage.
    Corrupt {
        /// Where the damaged frame begins.
        position: u64,
        /// The offset expected there.
        offset: u64,
        /// What failed.
        kind: CorruptionKind,
    },
}

/// The result of a walk: how it ended, where the last good frame ends, the next offset.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    /// How it ended.
    pub end: End,
    /// File position just past the last good frame.
    pub position: u64,
    /// The offset the next frame would carry.
    pub next_offset: u64,
}

/// Walks the frames (of `layout`) of a segment from file position `start` (expecting offset
/// `next_offset` there), calling `f` for each good frame with its length in bytes. With `strict`, a clean
/// end is confirmed by checking that every remaining byte of the file is zero (else the walk
/// ends `Corrupt` with `DataAfterZeros`).
pub fn walk_frames(
    file: &File,
    start: u64,
    next_offset: u64,
    layout: FrameLayout,
    strict: bool,
    mut f: impl FnMut(&Frame<'_>, u64) -> ControlFlow<()>,
) -> io::Result<Walk> {
    let len = file.metadata()?.len();
    let (mut pos, mut next) = (start, next_offset);
    let mut window_len = WINDOW;
    let mut buf = Vec::new();
    let walk = |end, position, next_offset| Walk {
        end,
        position,
        next_offset,
    };
    while pos < len {
        let n = window_len.min(len - pos);
        let reaches_end = pos + n == len;
        buf.resize(n as usize, 0);
        file.read_exact_at(&mut buf, pos)?;
        let mut reader = FrameReader::new(&buf, pos, next, layout);
        let mut stop = None;
        for item in reader.by_ref() {
            match item {
                Ok(frame) => {
                    let flen = layout.frame_len(frame.payload.len()) as u64;
                    if f(&frame, flen).is_break() {
                        return Ok(walk(End::Clean, frame.position + flen, frame.offset + 1));
                    }
                }
                Err(s) => {
                    stop = Some(s);
                    break;
                }
            }
        }
        let at = reader.file_position();
        let offset = reader.next_offset();
        match stop {
            // A frame cut by the window's end: read on from its start.
            Some(Stop::TornTail { .. }) if !reaches_end => {}
            Some(Stop::TornTail { position }) => {
                return Ok(walk(End::Torn { position }, at, offset))
            }
            Some(Stop::Corrupt {
                position,
                offset: o,
                kind,
            }) => {
                return Ok(walk(
                    End::Corrupt {
                        position,
                        offset: o,
                        kind,
                    },
                    at,
                    offset,
                ))
            }
            None if reaches_end => return Ok(walk(End::Clean, at, offset)),
            // The window was used up exactly, or ends inside a (zero-looking) frame header.
            None if pos + n - at < FRAME_HEADER_LEN as u64 => {}
            None => {
                // Zeros to the window's end: the frames end here if the rest is zeros too.
                if strict {
                    if let Some(p) = first_nonzero(file, pos + n, len)? {
                        let end = End::Corrupt {
                            position: p,
                            offset,
                            kind: CorruptionKind::DataAfterZeros,
                        };
                        return Ok(walk(end, at, offset));
                    }
                }
                return Ok(walk(End::Clean, at, offset));
            }
        }
        if at == pos {
            // One frame larger than the window: grow the window until it holds it.
            window_len = window_len.saturating_mul(2);
        }
        pos = at;
        next = offset;
    }
    Ok(walk(End::Clean, pos, next))
}

/// The position of the first non-zero byte in `from..to`, if any.
pub fn first_nonzero(file: &File, from: u64, to: u64) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; WINDOW as usize];
    let mut pos = from;
    while pos < to {
        let n = WINDOW.min(to - pos) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
            return Ok(Some(pos + i as u64));
        }
        pos += n as u64;
    }
    Ok(None)
}

/// The state rebuilt from the files alone (newest valid snapshot, then every commit after it),
/// without the lock. Stops quietly at a torn or damaged tail; returns the state and how many
/// commits were replayed.
pub fn offline_state(dir: &Path) -> Result<(State, u64), String> {
    let (segs, _) = list_segments(dir).map_err(|e| format!("list {}: {e}", dir.display()))?;
    let Some(first) = segs.first() else {
        return Ok((State::default(), 0));
    };
    let file = File::open(&first.path).map_err(|e| format!("{}: {e}", first.path.display()))?;
    let header = read_segment_header(&file)
        .map_err(|e| format!("{}: {e}", first.path.display()))?
        .header;
    let (snap, _) = snapshot::newest_valid(
        &FsStorage as &dyn Storage,
        dir,
        header.store_id,
        Offset(first.first.saturating_sub(1)),
        Offset(u64::MAX),
    )
    .map_err(|e| e.to_string())?;
    if snap.is_none() && first.first > 1 {
        return Err(format!(
            "the log starts at offset {} and no snapshot covers what was compacted",
            first.first
        ));
    }
    let mut state = snap.unwrap_or_default();
    let mut replayed = 0;
    let mut failed = None;
    for seg in &segs {
        let Ok(file) = File::open(&seg.path) else {
            continue;
        };
        let Ok(sh) = read_segment_header(&file) else {
            break;
        };
        let walk = walk_frames(&file, sh.body, seg.first, sh.layout, false, |frame, _| {
            if frame.offset <= state.offset().0 {
                return ControlFlow::Continue(());
            }
            let offset = Offset(frame.offset);
            let applied = Commit::decode(offset, frame.payload)
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    state
                        .apply_commit(offset, &c)
                        .map_err(|e| format!("commit at offset {offset} does not apply: {e:?}"))
                });
            match applied {
                Ok(()) => {
                    replayed += 1;
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            }
        })
        .map_err(|e| format!("{}: {e}", seg.path.display()))?;
        if failed.is_some() || walk.end != End::Clean {
            break;
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok((state, replayed)),
    }
}

/// Who holds the store's lock (`pid=.. since_ms=..`), if anyone.
pub fn lock_holder(dir: &Path) -> Option<String> {
    let lock = dir.join("LOCK");
    if !lock.exists() {
        return None;
    }
    FsStorage
        .lock_holder(&lock)
        .map(|h| h.trim().to_string())
        .map(|h| if h.is_empty() { "unknown".into() } else { h })
}
