//! [`Storage`] in memory, for tests: it knows which bytes are durable, builds the image a power
//! loss would leave, and injects I/O errors.
//!
//! The model (after redb's crash tests and ext4's ordered journal):
//! - A file's bytes are durable as of its last successful `sync_data`. Writes and `set_len`s
//!   since then are pending. A power loss keeps a prefix of the pending operations, the last
//!   one possibly torn at any byte ([`CrashMode::Torn`]), or none of them
//!   ([`CrashMode::DropUnsynced`]).
//! - Directory entries (create, rename, remove) are durable as of the directory's last
//!   `sync_dir`; a power loss keeps a prefix of the pending ones, in order.
//! - A failed `sync_data` drops the pending writes from what can ever become durable, while
//!   reads still see them: Linux's behaviour after a failed `fsync` ("fsyncgate").
//! - A process kill ([`CrashMode::ProcessKill`]) keeps everything written: the page cache
//!   survives.

use super::{LockFailure, LockGuard, Mapped, OpenMode, Storage, StorageFile};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// An operation at which a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// `write_all_at` and `set_len`.
    Write,
    /// `sync_data`.
    Sync,
    /// `sync_dir`.
    SyncDir,
    /// `rename` and `remove`.
    Rename,
    /// `open` (every mode).
    Open,
}

/// The error a fault produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `EIO`: the device failed.
    Eio,
    /// `ENOSPC`: no space left.
    Enospc,
}

impl FaultKind {
    fn error(self) -> io::Error {
        match self {
            FaultKind::Eio => io::Error::from_raw_os_error(5),
            FaultKind::Enospc => io::Error::from_raw_os_error(28),
        }
    }
}

/// What a simulated crash keeps of the bytes that were not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Power loss: nothing unsynced survives.
    DropUnsynced,
    /// Power loss: a pseudo-random prefix of each file's and directory's pending operations
    /// survives, the last write torn at a pseudo-random byte. The seed makes it reproducible.
    Torn(u64),
    /// The process died but the machine did not: everything written survives.
    ProcessKill,
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<FileOp>,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(String, u64),
    Unlink(String),
}

#[derive(Debug, Clone, Default)]
struct Dir {
    live: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    pending: Vec<DirOp>,
}

#[derive(Debug, Clone)]
struct Fault {
    op: FaultOp,
    countdown: u64,
    kind: FaultKind,
    sticky: bool,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
    next_inode: u64,
    locks: HashSet<PathBuf>,
    lock_holders: HashMap<PathBuf, String>,
    faults: Vec<Fault>,
    counts: HashMap<FaultOp, u64>,
}

/// The in-memory file system. Clones share the same files.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    state: Arc<Mutex<State>>,
    /// While true, every `sync_data` waits (see [`MemStorage::hold_syncs`]).
    syncs_held: Arc<(Mutex<bool>, Condvar)>,
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Ok((parent, name.to_string_lossy().into_owned()))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

/// A tiny deterministic generator (SplitMix64) so that crash images are reproducible by seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn apply(data: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { pos, bytes } => {
            let end = *pos as usize + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[*pos as usize..end].copy_from_slice(bytes);
        }
        FileOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

impl State {
    /// Counts the operation and fails it if a fault is due.
    fn check(&mut self, op: FaultOp) -> io::Result<()> {
        *self.counts.entry(op).or_default() += 1;
        let mut failed = None;
        for fault in self.faults.iter_mut().filter(|f| f.op == op) {
            if fault.countdown <= 1 {
                failed = Some(fault.kind);
                fault.countdown = 0;
            } else {
                fault.countdown -= 1;
            }
        }
        self.faults.retain(|f| f.countdown > 0 || f.sticky);
        match failed {
            Some(kind) => Err(kind.error()),
            None => Ok(()),
        }
    }

    fn dir(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| not_found(dir))
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (parent, name) = split(path)?;
        self.dirs
            .get(&parent)
            .and_then(|d| d.live.get(&name))
            .copied()
            .ok_or_else(|| not_found(path))
    }

    fn link(&mut self, path: &Path, ino: u64) -> io::Result<()> {
        let (parent, name) = split(path)?;
        let dir = self.dir(&parent)?;
        dir.live.insert(name.clone(), ino);
        dir.pending.push(DirOp::Link(name, ino));
        Ok(())
    }

    fn unlink(&mut self, path: &Path) -> io::Result<u64> {
        let (parent, name) = split(path)?;
        let dir = self.dir(&parent)?;
        let ino = dir.live.remove(&name).ok_or_else(|| not_found(path))?;
        dir.pending.push(DirOp::Unlink(name));
        Ok(ino)
    }
}

impl MemStorage {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock is a test failure already; keep going with the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails the `nth` (1 = the next) future call of `op` with `kind`. With `sticky`, every
    /// call from then on fails too (a dead device, a full disk).
    pub fn inject(&self, op: FaultOp, nth: u64, kind: FaultKind, sticky: bool) {
        let fault = Fault {
            op,
            countdown: nth.max(1),
            kind,
            sticky,
        };
        self.lock_state().faults.push(fault);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.lock_state().faults.clear();
    }

    /// Makes every `sync_data` wait until [`MemStorage::release_syncs`], so that a test can
    /// take a crash image while a write is in flight (a writer that syncs right after it
    /// writes leaves almost no moment for that otherwise).
    pub fn hold_syncs(&self) {
        *self.syncs_held.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    /// Lets the syncs [`MemStorage::hold_syncs`] held go on.
    pub fn release_syncs(&self) {
        *self.syncs_held.0.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.syncs_held.1.notify_all();
    }

    fn wait_while_syncs_held(&self) {
        let (held, released) = &*self.syncs_held;
        let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
        while *held {
            held = released.wait(held).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Whether some file has a write that is not yet synced (a crash now could tear it).
    pub fn has_unsynced_writes(&self) -> bool {
        let state = self.lock_state();
        (state.inodes.values())
            .any(|inode| (inode.pending.iter()).any(|op| matches!(op, FileOp::Write { .. })))
    }

    /// How many times `op` was called so far (to enumerate every fault point of a scenario).
    pub fn op_count(&self, op: FaultOp) -> u64 {
        self.lock_state().counts.get(&op).copied().unwrap_or(0)
    }

    /// The durable bytes of a file, as a power loss right now would leave them with
    /// [`CrashMode::DropUnsynced`] (for assertions).
    pub fn durable_bytes(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock_state();
        let ino = st.lookup(path)?;
        Ok(st.inodes[&ino].durable.clone())
    }

    /// Overwrites bytes of a file in place, durably, bypassing fault injection: for tests that
    /// damage a store on purpose.
    pub fn corrupt(&self, path: &Path, pos: u64, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.lock_state();
        let ino = st.lookup(path)?;
        let inode = st.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
        let op = FileOp::Write {
            pos,
            bytes: bytes.to_vec(),
        };
        apply(&mut inode.data, &op);
        apply(&mut inode.durable, &op);
        Ok(())
    }

    /// The file system a crash of kind `mode` would leave behind, as a new, independent
    /// store with no locks and no faults.
    pub fn crash_image(&self, mode: CrashMode) -> MemStorage {
        let st = self.lock_state();
        let mut rng = SplitMix(match mode {
            CrashMode::Torn(seed) => seed,
            _ => 0,
        });
        let mut inodes = HashMap::new();
        for (&ino, inode) in &st.inodes {
            let image = match mode {
                CrashMode::ProcessKill => inode.data.clone(),
                CrashMode::DropUnsynced => inode.durable.clone(),
                CrashMode::Torn(_) => torn_image(inode, &mut rng),
            };
            let file = Inode {
                data: image.clone(),
                durable: image,
                pending: Vec::new(),
            };
            inodes.insert(ino, file);
        }
        let mut dirs = BTreeMap::new();
        for (path, dir) in &st.dirs {
            let keep = match mode {
                CrashMode::ProcessKill => dir.pending.len(),
                CrashMode::DropUnsynced => 0,
                CrashMode::Torn(_) => rng.below(dir.pending.len() as u64 + 1) as usize,
            };
            let mut entries = dir.durable.clone();
            for op in &dir.pending[..keep] {
                match op {
                    DirOp::Link(name, ino) => entries.insert(name.clone(), *ino),
                    DirOp::Unlink(name) => entries.remove(name),
                };
            }
            let image = Dir {
                live: entries.clone(),
                durable: entries,
                pending: Vec::new(),
            };
            dirs.insert(path.clone(), image);
        }
        let state = State {
            inodes,
            dirs,
            next_inode: st.next_inode,
            ..State::default()
        };
        MemStorage {
            state: Arc::new(Mutex::new(state)),
            syncs_held: Arc::default(),
        }
    }
}

fn torn_image(inode: &Inode, rng: &mut SplitMix) -> Vec<u8> {
    let mut image = inode.durable.clone();
    let keep = rng.below(inode.pending.len() as u64 + 1) as usize;
    for (i, op) in inode.pending.iter().take(keep).enumerate() {
        match op {
            FileOp::Write { pos, bytes } if i + 1 == keep => {
                let cut = rng.below(bytes.len() as u64 + 1) as usize;
                let torn = FileOp::Write {
                    pos: *pos,
                    bytes: bytes[..cut].to_vec(),
                };
                apply(&mut image, &torn);
            }
            op => apply(&mut image, op),
        }
    }
    image
}

#[derive(Debug)]
struct MemFile {
    storage: MemStorage,
    ino: u64,
    writable: bool,
}

impl MemFile {
    fn with_inode<T>(
        &self,
        op: Option<FaultOp>,
        f: impl FnOnce(&mut Inode) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut st = self.storage.lock_state();
        if let Some(op) = op {
            st.check(op)?;
        }
        let inode = st
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file removed"))?;
        f(inode)
    }

    fn writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ))
        }
    }
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        self.with_inode(None, |i| Ok(i.data.len() as u64))
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.with_inode(None, |i| {
            let src = i
                .data
                .get(pos as usize..pos as usize + buf.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        })
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.writable()?;
        let mut st = self.storage.lock_state();
        let fault = st.check(FaultOp::Write);
        let inode = st
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file removed"))?;
        // A failed write may still have written a part: keep the first half.
        let written = if fault.is_err() {
            buf.len() / 2
        } else {
            buf.len()
        };
        let op = FileOp::Write {
            pos,
            bytes: buf[..written].to_vec(),
        };
        apply(&mut inode.data, &op);
        inode.pending.push(op);
        fault
    }

    fn sync_data(&self) -> io::Result<()> {
        self.storage.wait_while_syncs_held();
        self.with_inode(None, |_| Ok(()))?;
        let mut st = self.storage.lock_state();
        let fault = st.check(FaultOp::Sync);
        let inode = st
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file removed"))?;
        match fault {
            Ok(()) => {
                // Only what was written since the last sync attempt becomes durable: writes
                // lost by a failed sync stay lost even though reads still see them.
                for op in inode.pending.drain(..) {
                    apply(&mut inode.durable, &op);
                }
                Ok(())
            }
            Err(e) => {
                // fsyncgate: the pending writes will never reach the disk, yet stay readable.
                inode.pending.clear();
                Err(e)
            }
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        self.with_inode(Some(FaultOp::Write), |i| {
            let op = FileOp::SetLen(len);
            apply(&mut i.data, &op);
            i.pending.push(op);
            Ok(())
        })
    }

    fn map(&self) -> io::Result<Mapped> {
        let bytes = self.with_inode(None, |i| Ok(i.data.clone()))?;
        Ok(Mapped::new(Arc::new(bytes)))
    }
}

#[derive(Debug)]
struct MemLock {
    storage: MemStorage,
    path: PathBuf,
}

impl LockGuard for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.storage.lock_state().locks.remove(&self.path);
    }
}

impl Storage for MemStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        for ancestor in dir.ancestors() {
            st.dirs.entry(ancestor.to_path_buf()).or_default();
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut st = self.lock_state();
        let mut names: Vec<String> = st.dir(dir)?.live.keys().cloned().collect();
        let subdirs = st
            .dirs
            .keys()
            .filter(|p| p.parent() == Some(dir) && p.as_path() != dir)
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        names.extend(subdirs);
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.lock_state();
        st.dirs.contains_key(path) || st.lookup(path).is_ok()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut st = self.lock_state();
        st.check(FaultOp::Open)?;
        let ino = match mode {
            OpenMode::Read | OpenMode::ReadWrite => st.lookup(path)?,
            OpenMode::CreateNew => {
                if st.lookup(path).is_ok() {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                }
                st.next_inode += 1;
                let ino = st.next_inode;
                st.link(path, ino)?;
                st.inodes.insert(ino, Inode::default());
                ino
            }
        };
        Ok(Arc::new(MemFile {
            storage: self.clone(),
            ino,
            writable: mode != OpenMode::Read,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        st.check(FaultOp::Rename)?;
        let ino = st.lookup(from)?;
        if st.lookup(to).is_ok() {
            st.unlink(to)?;
        }
        st.link(to, ino)?;
        st.unlink(from)?;
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        st.check(FaultOp::Rename)?;
        st.unlink(path).map(|_| ())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        st.check(FaultOp::SyncDir)?;
        let d = st.dir(dir)?;
        d.durable = d.live.clone();
        d.pending.clear();
        Ok(())
    }

    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn LockGuard>, LockFailure> {
        let mut st = self.lock_state();
        if !st.locks.insert(path.to_path_buf()) {
            return Err(LockFailure::Held);
        }
        st.lock_holders
            .insert(path.to_path_buf(), holder.to_string());
        Ok(Box::new(MemLock {
            storage: self.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn lock_holder(&self, path: &Path) -> Option<String> {
        let st = self.lock_state();
        st.locks
            .contains(path)
            .then(|| st.lock_holders.get(path).cloned())
            .flatten()
    }
}
