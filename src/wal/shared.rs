//! State the writer shares with readers: the segment table, what is visible, and the poison.

use super::WalError;
use crate::storage::{Mapped, Storage, StorageFile};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Name of the marker a poisoned log leaves in `wal/`.
pub(crate) const POISON_MARKER: &str = "POISONED";

/// One segment as readers see it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentEntry {
    /// Offset of its first record.
    pub first: u64,
    /// Its file.
    pub path: PathBuf,
    /// The open file (the active segment is read through it).
    pub file: Arc<dyn StorageFile>,
    /// The mapping of a sealed segment; `None` for the active one.
    pub sealed: Option<Mapped>,
}

/// What readers may see: records up to `last`, which ends at byte `end` of the segment whose
/// first offset is `segment_first`. Published only once a batch reached the durability the
/// configuration promises, so that no reader sees a record a crash could take back.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Visible {
    pub last: u64,
    pub segment_first: u64,
    pub end: u64,
    /// Chain hash of record `last` (tamper-evident stores; the genesis value for an empty log).
    pub chain: Option<[u8; 32]>,
}

#[derive(Debug, Default)]
pub(crate) struct Table {
    pub segments: Vec<SegmentEntry>,
    pub visible: Visible,
}

/// Shared between the writer, the completion thread and every reader.
#[derive(Debug)]
pub(crate) struct Shared {
    pub storage: Arc<dyn Storage>,
    pub wal_dir: PathBuf,
    pub store_id: [u8; 16],
    /// Frames carry a chain hash (a tamper-evident store).
    pub layout: ctxlog_format::FrameLayout,
    pub table: RwLock<Table>,
    poisoned: AtomicBool,
    poison: Mutex<Option<(&'static str, io::ErrorKind)>>,
    /// Held across every `fdatasync` of a segment, with the poison check before it and the
    /// poisoning after a failure (`writer::timed_sync`). Linux reports a writeback error to
    /// one `fsync` of a file and marks the failed pages clean, so a second thread syncing the
    /// same file at the same moment (a rotation on the writer thread while the sync or
    /// writeback thread syncs) could see success for lost pages and seal the segment; one
    /// sync at a time, each refusing to start once the log is poisoned, closes that window.
    pub sync_lock: Mutex<()>,
    pub counters: Counters,
}

/// What the log has done since open.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub writes: AtomicU64,
    pub bytes: AtomicU64,
    pub syncs: AtomicU64,
    pub records: AtomicU64,
}

/// A copy of the log's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WalStats {
    /// Batches written (one write each).
    pub writes: u64,
    /// Bytes written to segments.
    pub bytes: u64,
    /// `fdatasync` calls on segments.
    pub syncs: u64,
    /// Records appended.
    pub records: u64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> WalStats {
        WalStats {
            writes: self.writes.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    pub fn new(
        storage: Arc<dyn Storage>,
        wal_dir: PathBuf,
        store_id: [u8; 16],
        layout: ctxlog_format::FrameLayout,
        table: Table,
    ) -> Self {
        Shared {
            storage,
            wal_dir,
            store_id,
            layout,
            table: RwLock::new(table),
            poisoned: AtomicBool::new(false),
            poison: Mutex::new(None),
            sync_lock: Mutex::new(()),
            counters: Counters::default(),
        }
    }

    pub fn read_table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the log unusable after a failed write or sync; the first cause wins. Also leaves
    /// a `POISONED` marker in `wal/` (best effort): after a failed `fdatasync` the kernel may
    /// have dropped dirty pages that reads still return, so the next open must write the
    /// active segment's records again before it trusts them (see recovery).
    pub fn poison(&self, op: &'static str, kind: io::ErrorKind) {
        let first = {
            let mut p = self.poison.lock().unwrap_or_else(|e| e.into_inner());
            let first = p.is_none();
            if first {
                tracing::error!(op, ?kind, "write-ahead log poisoned");
                *p = Some((op, kind));
            }
            first
        };
        self.poisoned.store(true, Ordering::Release);
        if first {
            self.leave_poison_marker(op, kind);
        }
    }

    /// Poisons the log if dropped while its thread unwinds from a panic that started after
    /// this call: a `Storage` (the trait is public) that panicked part-way through `op` left
    /// the files in a state nobody knows, and a sync that panicked may have lost pages that
    /// reads still return, as a failed one does. So it leaves the `POISONED` marker too (see
    /// [`Shared::poison_unwinding`]). A guard made while the thread already unwinds (an append
    /// from a `Drop` during an application's panic) poisons nothing.
    pub fn poison_on_unwind(&self, op: &'static str) -> PoisonOnUnwind<'_> {
        PoisonOnUnwind {
            shared: self,
            op,
            armed: !std::thread::panicking(),
        }
    }

    /// [`Shared::poison`] from a thread that is unwinding. The flag is raised before the
    /// marker is written, so a storage that panics again in the marker's write leaves the log
    /// poisoned all the same; that panic is caught here (one escaping a `Drop` mid-unwind
    /// would abort the process).
    pub fn poison_unwinding(&self, op: &'static str) {
        let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.poison(op, io::ErrorKind::Other)
        }));
        if poisoned.is_err() {
            tracing::error!(
                op,
                "the storage panicked again while leaving the poison marker"
            );
        }
    }

    fn leave_poison_marker(&self, op: &'static str, kind: io::ErrorKind) {
        let path = self.wal_dir.join(POISON_MARKER);
        let text = format!("{op} failed: {kind:?}\n");
        let written = self
            .storage
            .open(&path, crate::storage::OpenMode::CreateNew)
            .and_then(|f| {
                f.write_all_at(text.as_bytes(), 0)
                    .and_then(|()| f.sync_data())
            })
            .and_then(|()| self.storage.sync_dir(&self.wal_dir));
        if let Err(e) = written {
            tracing::error!(error = %e, "could not leave the poison marker");
        }
    }

    /// `Err(Poisoned)` once the log is poisoned.
    pub fn check_poison(&self) -> Result<(), WalError> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(self.poison_error())
    }

    pub fn poison_error(&self) -> WalError {
        let p = self.poison.lock().unwrap_or_else(|e| e.into_inner());
        let (op, kind) = p.unwrap_or(("write", io::ErrorKind::Other));
        WalError::Poisoned { op, kind }
    }

    /// Poisons the log with an I/O error's kind and hands the error back.
    pub fn poison_with(&self, err: WalError) -> WalError {
        match &err {
            WalError::Io { op, source, .. } => self.poison(op, source.kind()),
            _ => self.poison("write", io::ErrorKind::Other),
        }
        err
    }
}

/// See [`Shared::poison_on_unwind`].
pub struct PoisonOnUnwind<'a> {
    shared: &'a Shared,
    op: &'static str,
    /// The thread was not unwinding when the guard was made.
    armed: bool,
}

impl Drop for PoisonOnUnwind<'_> {
    fn drop(&mut self) {
        if self.armed && std::thread::panicking() {
            self.shared.poison_unwinding(self.op);
        }
    }
}
