//! The storage seam: everything ctxlog does to a disk goes through [`Storage`] and
//! [`StorageFile`], so that the same engine runs on real files ([`FsStorage`]) and on an
//! in-memory store that knows which bytes are durable and can simulate a power loss or inject
//! I/O errors ([`MemStorage`]).
//!
//! The seam is deliberately small: positional reads and writes, `fdatasync`, `set_len`, a
//! read-only mapping, directory listing, rename, remove, directory sync and an exclusive lock.

mod fs;
mod mem;

pub use fs::FsStorage;
pub use mem::{CrashMode, FaultKind, FaultOp, MemStorage};

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Create a new file for reading and writing; fails if it exists.
    CreateNew,
}

/// A read-only view of a whole file: a memory map for real files, a copy for memory files.
#[derive(Clone)]
pub struct Mapped {
    bytes: Arc<dyn AsRef<[u8]> + Send + Sync>,
    /// The same bytes, when they are a memory map (see [`Mapped::release`]).
    map: Option<Arc<memmap2::Mmap>>,
}

impl Mapped {
    /// Wraps any byte owner.
    pub fn new(bytes: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Self {
        Mapped { bytes, map: None }
    }

    /// Wraps a memory map.
    pub fn from_map(map: memmap2::Mmap) -> Self {
        let map = Arc::new(map);
        Mapped {
            bytes: map.clone(),
            map: Some(map),
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        (*self.bytes).as_ref()
    }

    /// Says that `bytes()[at..at + len]` will not be read again soon: a memory map drops those
    /// pages from the process (they stay in the page cache, and a later read maps them
    /// again), so that reading a large file once through the map does not leave all of it in
    /// the process's resident memory. No effect on other byte owners.
    pub fn release(&self, at: usize, len: usize) {
        let Some(map) = &self.map else { return };
        if at.checked_add(len).is_none_or(|end| end > map.len()) || len == 0 {
            return;
        }
        // SAFETY: ctxlog maps files read-only, and only files it no longer writes (see
        // `FsStorage`'s `map`). MADV_DONTNEED on such a mapping only drops page-table
        // entries: the next read of those bytes faults the same file pages back in, so no
        // reference into the map ever sees different bytes. memmap2 aligns the range down to
        // a page boundary, which at worst drops a page that is read again.
        let advised =
            unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, at, len) };
        if let Err(e) = advised {
            tracing::debug!(error = %e, "madvise(DONTNEED) failed; the pages stay mapped");
        }
    }
}

impl fmt::Debug for Mapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mapped({} bytes)", self.bytes().len())
    }
}

/// One open file.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from position `pos`; an error if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Writes all of `buf` at position `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Makes every byte written so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Sets the length (truncates or extends with zeros); durable after the next `sync_data`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// A read-only view of the whole file as it is now. Meant for files no longer written
    /// (sealed segments, snapshots).
    fn map(&self) -> io::Result<Mapped>;
}

/// A held lock; dropping it releases the lock.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum LockFailure {
    /// Another handle (in this process or another) holds it.
    Held,
    /// The lock file could not be opened or locked.
    Io(io::Error),
}

/// A file system, real or simulated.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of a directory, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// True if the path names an existing file or directory.
    fn exists(&self, path: &Path) -> bool;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// Renames a file, replacing any file at `to`; durable after `sync_dir` of both parents.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file; durable after `sync_dir` of its parent.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of a directory (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing) and records `holder` in it.
    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>, LockFailure>;
    /// Reads who holds the lock at `path`, as recorded by [`Storage::lock`].
    fn lock_holder(&self, path: &Path) -> Option<String>;
}

/// Writes `len` zero bytes from `pos`, in chunks of at most 1 MiB, so that the blocks are
/// allocated and initialised and later `fdatasync`s need not persist a size or extent change.
pub fn write_zeros(file: &dyn StorageFile, pos: u64, len: u64) -> io::Result<()> {
    const CHUNK: u64 = 1024 * 1024;
    let zeros = vec![0u8; CHUNK.min(len) as usize];
    let mut at = pos;
    while at < pos + len {
        let n = CHUNK.min(pos + len - at);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    Ok(())
}
