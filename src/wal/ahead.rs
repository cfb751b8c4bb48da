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
//! most [`AHEAD_MAX`] segments ahead of recovery, and fewer when segments are large: the pages
//! they read count on top of recovery's budget of mapped pages (`recovery::Resident`), by at
//! most that budget again. They stop when recovery stops early; the segments they opened
//! ahead are then closed unused. So an open that stops early may have opened up to
//! [`AHEAD_MAX`] more segments than recovery looked at (which `MemStorage`'s fault
//! countdowns see, in no fixed order). A helper that panics leaves its segment to recovery,
//! which opens it itself; the panic is raised when the helpers are joined.

use super::scan::{scan_records, ScanEnd};
use crate::storage::{Mapped, OpenMode, Storage, StorageFile};
use ctxlog_format::layout::FLAG_CHAIN_HASH;
use ctxlog_format::{FileHeader, FileKind, FrameLayout};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// Segments a helper may work on ahead of the one recovery is at, at most.
const AHEAD_MAX: u64 = 2;

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
    /// Segments helpers may work on ahead of recovery.
    pub ahead: usize,
}

impl<'a> Plan<'a> {
    /// How far ahead helpers may work: [`AHEAD_MAX`] segments, or fewer so that what they
    /// read ahead stays within `budget` bytes with segments of `segment_bytes`.
    pub(super) fn ahead(budget: u64, segment_bytes: u64) -> usize {
        (budget / segment_bytes.max(1)).min(AHEAD_MAX) as usize
    }

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

/// Where each segment is: not started, being opened by a helper, opened, or left by a helper
/// that panicked.
enum Slot {
    Waiting,
    Taken,
    Done(Opened),
    Failed,
}

struct Progress {
    slots: Vec<Slot>,
    /// The segment recovery is at (helpers stay within `Plan::ahead` of it).
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

    /// How many helpers are worth starting on this machine for this log: none when only the
    /// last segment's records are checked (opening the others is cheap) or nothing may be
    /// read ahead.
    pub(super) fn helpers(&self) -> usize {
        if !self.plan.check_sealed || self.plan.ahead == 0 {
            return 0;
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        (cpus - 1)
            .min(HELPERS_MAX)
            .min(self.plan.segs.len().saturating_sub(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the first segment within reach of recovery that nobody has started, if any.
    fn claim(&self, p: &mut Progress) -> Option<usize> {
        let reach = (p.at + self.plan.ahead + 1).min(p.slots.len());
        let i = (p.at..reach).find(|&i| matches!(p.slots[i], Slot::Waiting))?;
        p.slots[i] = Slot::Taken;
        Some(i)
    }

    /// Opens segment `index` (claimed) and leaves it for recovery; if that panics, leaves it
    /// `Failed` (recovery would otherwise wait for it forever).
    fn open_claimed(&self, index: usize) {
        struct Unwinding<'s, 'a>(&'s Ahead<'a>, usize);
        impl Drop for Unwinding<'_, '_> {
            fn drop(&mut self) {
                self.0.lock().slots[self.1] = Slot::Failed;
                self.0.changed.notify_all();
            }
        }
        let unwinding = Unwinding(self, index);
        let opened = self.plan.open(index);
        std::mem::forget(unwinding);
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
                    if let Some(i) = self.claim(&mut p) {
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
                Slot::Waiting | Slot::Failed => {
                    drop(p);
                    return self.plan.open(index);
                }
                Slot::Taken => match self.claim(&mut p) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{LockFailure, LockGuard, MemStorage};
    use std::path::Path;
    use std::thread::ThreadId;
    use std::time::Duration;

    /// `MemStorage`, where opens are slowed, and those from any thread but `main` slowed more,
    /// or panic.
    #[derive(Debug)]
    struct Helpers {
        inner: MemStorage,
        main: ThreadId,
        panic: bool,
    }

    impl Storage for Helpers {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.inner.create_dir_all(dir)
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            self.inner.list(dir)
        }
        fn exists(&self, path: &Path) -> bool {
            self.inner.exists(path)
        }
        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
            if std::thread::current().id() == self.main {
                // Slow enough that helpers get segments to open.
                std::thread::sleep(Duration::from_millis(5));
            } else {
                assert!(!self.panic, "a helper fails");
                std::thread::sleep(Duration::from_millis(20));
            }
            self.inner.open(path, mode)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.inner.rename(from, to)
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            self.inner.remove(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.inner.sync_dir(dir)
        }
        fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>, LockFailure> {
            self.inner.lock(path, holder)
        }
        fn lock_holder(&self, path: &Path) -> Option<String> {
            self.inner.lock_holder(path)
        }
    }

    /// Six "segments" (not valid ones: only which is which matters here), segment `i` being
    /// `i + 1` bytes long; takes them all in order with `helpers` helper threads.
    fn take_all(panic: bool, helpers: usize) -> std::thread::Result<Vec<u64>> {
        let storage = Helpers {
            inner: MemStorage::new(),
            main: std::thread::current().id(),
            panic,
        };
        let segs: Vec<(u64, PathBuf)> = (0..6u64)
            .map(|i| (i * 10 + 1, PathBuf::from(format!("/s/{i}"))))
            .collect();
        storage.create_dir_all(Path::new("/s")).expect("dir");
        for (i, (_, path)) in segs.iter().enumerate() {
            let file = storage.open(path, OpenMode::CreateNew).expect("create");
            file.write_all_at(&vec![9; i + 1], 0).expect("write");
        }
        let ahead = Ahead::new(Plan {
            storage: &storage,
            segs: &segs,
            check_sealed: true,
            ahead: AHEAD_MAX as usize,
        });
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|scope| {
                for _ in 0..helpers {
                    scope.spawn(|| ahead.help());
                }
                let lens = (0..segs.len())
                    .map(|i| {
                        let opened = ahead.take(i);
                        assert!(opened.scan.is_none(), "no valid header: not checked");
                        opened.file.expect("opened").len().expect("len")
                    })
                    .collect();
                ahead.stop();
                lens
            })
        }))
    }

    /// Helpers slower than recovery: whoever opens each segment, recovery gets them in order.
    #[test]
    fn segments_come_back_in_order_whoever_opens_them() {
        for helpers in [0, 1, 3] {
            let lens = take_all(false, helpers).expect("no panic");
            assert_eq!(lens, vec![1, 2, 3, 4, 5, 6], "{helpers} helpers");
        }
    }

    /// A helper that panics leaves its segment to recovery, which opens it itself; the panic
    /// comes out when the helpers are joined, instead of recovery waiting for ever.
    #[test]
    fn a_helper_that_panics_does_not_hang_the_open() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(take_all(true, 2).is_err());
        });
        let panicked = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the open ends");
        assert!(panicked, "the helper's panic is raised");
    }
}
