//! A storage that wraps `FsStorage` and counts `fdatasync`s and writes, so that the summary can
//! give records per `fdatasync` and per write without touching the engine.

use ctxlog::storage::{FsStorage, LockFailure, LockGuard, Mapped, OpenMode, Storage, StorageFile};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// `fdatasync`s and writes counted so far, over every file of one storage.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    syncs: AtomicU64,
    writes: AtomicU64,
}

impl Counters {
    /// (`fdatasync`s, writes) so far.
    pub(crate) fn snapshot(&self) -> (u64, u64) {
        (
            self.syncs.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}

/// `FsStorage`, counting.
#[derive(Debug, Default)]
pub(crate) struct Counting {
    pub(crate) counters: Arc<Counters>,
}

#[derive(Debug)]
struct CountingFile {
    inner: Arc<dyn StorageFile>,
    counters: Arc<Counters>,
}

impl StorageFile for CountingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, pos)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.write_all_at(buf, pos)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn map(&self) -> io::Result<Mapped> {
        self.inner.map()
    }
}

impl Storage for Counting {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        FsStorage.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        FsStorage.list(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        FsStorage.exists(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(CountingFile {
            inner: FsStorage.open(path, mode)?,
            counters: Arc::clone(&self.counters),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FsStorage.sync_dir(dir)
    }

    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>, LockFailure> {
        FsStorage.lock(path, holder)
    }

    fn lock_holder(&self, path: &Path) -> Option<String> {
        FsStorage.lock_holder(path)
    }
}
