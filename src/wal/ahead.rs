//! Opening and checking segments ahead of recovery's in-order pass, on helper threads.
//!
//! Checking every record of a long log at open is CRC work over all of it, segment after
//! segment, on one thread. Each segment's check depends only on its own bytes (its first
//! offset, its layout, its stored chain seed; for the last one, its file), so helper threads
//! open, map and check the next segments while recovery (`recovery::scan_all`) goes through
//! them in order and decides, exactly as before, what each result means. Recovery takes each
//! segment from here in order; one nobody has started yet it opens and checks itself.
//!
//! A helper checks a segment as if the seed it expects were unknown; recovery then compares
//! the stored seed with the previous segment's last chain hash (`scan::seed_mismatch`), which
//! is what the check with the expected seed does before reading any record. Helpers stay at
//! most [`AHEAD`] segments ahead of recovery, so that the pages mapped and not yet released by
//! recovery's budget stay bounded, and stop when recovery stops early.

use super::scan::{scan_records, ScanEnd};
use crate::storage::{Mapped, OpenMode, Storage, StorageFile};
use ctxlog_format::layout::FLAG_CHAIN_HASH;
use ctxlog_format::{FileHeader, FileKind, FrameLayout};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// Segments a helper may work on ahead of the one recovery is at.
const AHEAD: usize = 2;

/// Helper threads at most (besides the thread that opens the log).
const HELPERS_MAX: usize = 3;

/// A segment opened (and, when recovery will check its records, checked) ahead.
pub(super) struct Opened {
    pub file: io::Result<Arc<dyn StorageFile>>,
    pub map: io::Result<Mapped>,
    /// The check of its records, with no expected seed; `None` when not checked here (a bad
    /// header, or a sealed segment recovery does not check).
    pub scan: Option<ScanEnd>,
}

/// What a helper (or recovery itself) needs to open and check segment `index`.
pub(super) struct Plan<'a> {
    pub storage: &'a dyn Storage,
    pub segs: &'a [(u64, PathBuf)],
    /// Whether sealed segments' records are checked (the last one's always are).
    pub check_sealed: bool,
}

impl Plan<'_> {
    /// Opens, maps and checks segment `index` as recovery would.
    fn open(&self, index: usize) -> Opened {
        let (first, path) = &self.segs[index];
        let is_last = index + 1 == self.segs.len();
        let mode = if is_last {
            OpenMode::ReadWrite
        } else {
            OpenMode::Read
        };
        let file = self.storage.open(path, mode);
        let map = match &file {
            Ok(file) => file.map(),
            Err(_) => Err(io::Error::other("not opened")),
        };
        let scan = match (&file, &map) {
            (Ok(file), Ok(map)) if is_last || self.check_sealed => {
                let bytes = map.bytes();
                FileHeader::decode_kind(bytes, FileKind::Segment, FLAG_CHAIN_HASH)
                    .ok()
                    .map(|header| {
                        let layout = FrameLayout::from_flags(header.flags);
                        let tail = is_last.then_some(&**file);
                        scan_records(bytes, *first, layout, None, tail)
                    })
            }
            _ => None,
        };
        Opened { file, map, scan }
    }
}

/// Where each segment is: not started, being opened by a helper, or opened.
enum Slot {
    Waiting,
    Taken,
    Done(Opened),
}

struct Progress {
    slots: Vec<Slot>,
    /// The segment recovery is at (helpers stay within [`AHEAD`] of it).
    at: usize,
    stopped: bool,
}

/// The segments of one open, opened ahead by helper threads.
pub(super) struct Ahead<'a> {
    plan: Plan<'a>,
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl<'a> Ahead<'a> {
    pub(super) fn new(plan: Plan<'a>) -> Self {
        let slots = (0..plan.segs.len()).map(|_| Slot::Waiting).collect();
        Ahead {
            plan,
            progress: Mutex::new(Progress {
                slots,
                at: 0,
                stopped: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// How many helpers are worth starting on this machine for this log.
    pub(super) fn helpers(&self) -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        (cpus - 1)
            .min(HELPERS_MAX)
            .min(self.plan.segs.len().saturating_sub(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the first segment within reach of recovery that nobody has started, if any.
    fn claim(p: &mut Progress) -> Option<usize> {
        let reach = (p.at + AHEAD + 1).min(p.slots.len());
        let i = (p.at..reach).find(|&i| matches!(p.slots[i], Slot::Waiting))?;
        p.slots[i] = Slot::Taken;
        Some(i)
    }

    /// Opens segment `index` (claimed) and leaves it for recovery.
    fn open_claimed(&self, index: usize) {
        let opened = self.plan.open(index);
        self.lock().slots[index] = Slot::Done(opened);
        self.changed.notify_all();
    }

    /// A helper thread: opens the next segment nobody has taken, within reach, until none is
    /// left or recovery stops.
    pub(super) fn help(&self) {
        loop {
            let index = {
                let mut p = self.lock();
                loop {
                    let left = (p.at..p.slots.len()).any(|i| matches!(p.slots[i], Slot::Waiting));
                    if p.stopped || !left {
                        return;
                    }
                    if let Some(i) = Self::claim(&mut p) {
                        break i;
                    }
                    p = self.changed.wait(p).unwrap_or_else(|e| e.into_inner());
                }
            };
            self.open_claimed(index);
        }
    }

    /// Segment `index`, for recovery, which takes them in order: opened by a helper, or here.
    /// While a helper is still on it, recovery opens a later one rather than wait idle.
    pub(super) fn take(&self, index: usize) -> Opened {
        let mut p = self.lock();
        p.at = index;
        self.changed.notify_all();
        loop {
            match std::mem::replace(&mut p.slots[index], Slot::Taken) {
                Slot::Done(opened) => return opened,
                Slot::Waiting => {
                    drop(p);
                    return self.plan.open(index);
                }
                Slot::Taken => match Self::claim(&mut p) {
                    Some(later) => {
                        drop(p);
                        self.open_claimed(later);
                        p = self.lock();
                    }
                    None => p = self.changed.wait(p).unwrap_or_else(|e| e.into_inner()),
                },
            }
        }
    }

    /// Recovery is done with the segments (finished, or stopped early): helpers stop.
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }
}
