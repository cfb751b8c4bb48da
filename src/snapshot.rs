//! Snapshots: the whole state as of one offset, in `DIR/snapshots/<offset>.snap`.
//!
//! Written to a temporary file, synced, renamed into place, and the directory synced, so that
//! a snapshot file is either whole or absent. The file format (header, checked chunks,
//! trailer) is `ctxlog-format`'s; the body is the [`State`] in MessagePack. A snapshot that
//! fails any check is skipped with a warning and an older one, or the log start, is used.

use crate::error::RecoveryError;
use crate::offset::Offset;
use crate::state::State;
use crate::storage::{Mapped, OpenMode, Storage};
use ctxlog_format::{decode_snapshot, encode_snapshot, FileHeader, FileKind};
use std::io::Read;
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".snap.tmp";

/// The snapshots directory of the store in `dir`.
pub fn snapshot_dir(dir: &Path) -> PathBuf {
    dir.join("snapshots")
}

/// `<offset as 20 digits>.snap`.
pub fn snapshot_name(offset: Offset) -> String {
    format!("{:020}{SUFFIX}", offset.0)
}

fn parse_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok().map(Offset))
        .flatten()
}

fn io_err(op: &'static str, file: &Path) -> impl FnOnce(std::io::Error) -> RecoveryError {
    let file = file.to_path_buf();
    move |source| RecoveryError::SnapshotIo { op, file, source }
}

/// A snapshot that open or `state_at` passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedSnapshot {
    /// The file.
    pub file: PathBuf,
    /// The failed check.
    pub reason: String,
}

/// Snapshot files by offset, oldest first.
pub type SnapshotFiles = Vec<(Offset, PathBuf)>;

/// The snapshots on disk, oldest first, and the files in the directory that are not snapshots.
pub fn list(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<(SnapshotFiles, Vec<PathBuf>), RecoveryError> {
    let sdir = snapshot_dir(dir);
    if !storage.exists(&sdir) {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut snaps = Vec::new();
    let mut foreign = Vec::new();
    for name in storage.list(&sdir).map_err(io_err("list", &sdir))? {
        match parse_name(&name) {
            Some(offset) => snaps.push((offset, sdir.join(name))),
            None if name.ends_with(TMP_SUFFIX) => {}
            None => foreign.push(sdir.join(name)),
        }
    }
    snaps.sort();
    Ok((snaps, foreign))
}

/// Writes a snapshot of `state`; returns its file.
pub fn write(
    storage: &dyn Storage,
    dir: &Path,
    store_id: [u8; 16],
    state: &State,
) -> Result<PathBuf, RecoveryError> {
    let sdir = snapshot_dir(dir);
    if !storage.exists(&sdir) {
        storage
            .create_dir_all(&sdir)
            .map_err(io_err("create", &sdir))?;
        storage
            .sync_dir(dir)
            .map_err(io_err("sync directory", dir))?;
    }
    let body = rmp_serde::to_vec(state).map_err(|e| RecoveryError::BadSnapshot {
        file: sdir.clone(),
        reason: format!("state does not encode: {e}"),
    })?;
    let header = FileHeader {
        kind: FileKind::Snapshot,
        flags: 0,
        first_offset: state.offset().0,
        created_ms: crate::wal::now_ms(),
        store_id,
    };
    let bytes = encode_snapshot(&header, &body);
    drop(body);
    let path = sdir.join(snapshot_name(state.offset()));
    let tmp = sdir.join(format!("{:020}{TMP_SUFFIX}", state.offset().0));
    if storage.exists(&tmp) {
        storage.remove(&tmp).map_err(io_err("remove", &tmp))?;
    }
    let file = storage
        .open(&tmp, OpenMode::CreateNew)
        .map_err(io_err("create", &tmp))?;
    file.write_all_at(&bytes, 0)
        .map_err(io_err("write", &tmp))?;
    file.sync_data().map_err(io_err("fdatasync", &tmp))?;
    drop(file);
    storage
        .rename(&tmp, &path)
        .map_err(io_err("rename", &tmp))?;
    storage
        .sync_dir(&sdir)
        .map_err(io_err("sync directory", &sdir))?;
    Ok(path)
}

/// Reads and checks one snapshot file.
pub fn load(
    storage: &dyn Storage,
    path: &Path,
    store_id: [u8; 16],
) -> Result<State, RecoveryError> {
    let bad = |reason: String| RecoveryError::BadSnapshot {
        file: path.to_path_buf(),
        reason,
    };
    let file = storage
        .open(path, OpenMode::Read)
        .map_err(io_err("open", path))?;
    let map = file.map().map_err(io_err("map", path))?;
    let snap = decode_snapshot(map.bytes(), 0).map_err(|e| bad(e.to_string()))?;
    if snap.header.store_id != store_id {
        return Err(bad("belongs to another store".into()));
    }
    // The check above read every byte through the map; decoding reads them once more, a
    // chunk at a time, and lets each go when done, so that the file's pages do not sit in
    // RSS beside the state being built from them.
    map.release(0, map.bytes().len());
    let reader = ChunkReader {
        chunks: &snap.chunks,
        pos: 0,
        map: &map,
    };
    // Decoding allocates every value and map node on this thread: about twice the body's
    // bytes (see `heap`; 8,025 `mprotect` calls to 448 for the bench's 20 MB snapshot).
    crate::heap::make_room(2 * map.bytes().len());
    let state: State =
        rmp_serde::from_read(reader).map_err(|e| bad(format!("body does not decode: {e}")))?;
    if state.offset().0 != snap.header.first_offset {
        return Err(bad(format!(
            "body is as of offset {}, header says {}",
            state.offset(),
            snap.header.first_offset
        )));
    }
    Ok(state)
}

/// The newest snapshot at or before `at_most` and at or after `at_least` that passes every
/// check, with the ones skipped on the way.
pub fn newest_valid(
    storage: &dyn Storage,
    dir: &Path,
    store_id: [u8; 16],
    at_least: Offset,
    at_most: Offset,
) -> Result<(Option<State>, Vec<SkippedSnapshot>), RecoveryError> {
    newest_accepted(storage, dir, store_id, at_least, at_most, &|_| Ok(()))
}

/// [`newest_valid`], also passing each candidate through `accept` (which says why it refuses).
pub fn newest_accepted(
    storage: &dyn Storage,
    dir: &Path,
    store_id: [u8; 16],
    at_least: Offset,
    at_most: Offset,
    accept: &dyn Fn(&State) -> Result<(), String>,
) -> Result<(Option<State>, Vec<SkippedSnapshot>), RecoveryError> {
    let (snaps, _) = list(storage, dir)?;
    let mut skipped = Vec::new();
    for (offset, path) in snaps.into_iter().rev() {
        if offset > at_most {
            skipped.push(SkippedSnapshot {
                file: path,
                reason: format!("as of offset {offset}, past the log's last offset {at_most}"),
            });
            continue;
        }
        if offset < at_least {
            continue;
        }
        let checked = load(storage, &path, store_id).and_then(|state| {
            accept(&state)
                .map(|()| state)
                .map_err(|reason| RecoveryError::BadSnapshot {
                    file: path.clone(),
                    reason,
                })
        });
        match checked {
            Ok(state) => return Ok((Some(state), skipped)),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping a snapshot that fails its checks");
                skipped.push(SkippedSnapshot {
                    file: path,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok((None, skipped))
}

/// Removes all but the newest `keep` snapshots (and `protect`, the base of a compacted log);
/// returns the oldest of the newest `keep` offsets.
pub fn prune(
    storage: &dyn Storage,
    dir: &Path,
    keep: usize,
    protect: Option<Offset>,
) -> Result<Option<Offset>, RecoveryError> {
    let (snaps, _) = list(storage, dir)?;
    let cut = snaps.len().saturating_sub(keep);
    for (offset, path) in &snaps[..cut] {
        // The snapshot a compacted log starts from is the only way to rebuild its state.
        if Some(*offset) == protect {
            continue;
        }
        storage.remove(path).map_err(io_err("remove", path))?;
    }
    if cut > 0 {
        let sdir = snapshot_dir(dir);
        storage
            .sync_dir(&sdir)
            .map_err(io_err("sync directory", &sdir))?;
    }
    Ok(snaps.get(cut).map(|(o, _)| *o))
}

/// Reads a snapshot body chunk after chunk, without joining the chunks.
struct ChunkReader<'a> {
    chunks: &'a [&'a [u8]],
    pos: usize,
    /// The map the chunks borrow from: each chunk is released once read.
    map: &'a Mapped,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some((first, rest)) = self.chunks.split_first() {
            if self.pos < first.len() {
                let n = buf.len().min(first.len() - self.pos);
                buf[..n].copy_from_slice(&first[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            let at = (first.as_ptr() as usize).saturating_sub(self.map.bytes().as_ptr() as usize);
            self.map.release(at, first.len());
            self.chunks = rest;
            self.pos = 0;
        }
        Ok(0)
    }
}

/// Sets aside (renames to `*.ahead-of-log`) snapshots taken after the log's last offset: a
/// power loss in a non-`Always` durability mode can take back commits a snapshot had seen, and
/// such a snapshot must never be mistaken for the state of the new commits that reuse those
/// offsets. Returns the files set aside.
pub fn set_aside_ahead(
    storage: &dyn Storage,
    dir: &Path,
    last: Offset,
) -> Result<Vec<PathBuf>, RecoveryError> {
    let (snaps, _) = list(storage, dir)?;
    let mut moved = Vec::new();
    for (offset, path) in snaps.into_iter().filter(|(o, _)| *o > last) {
        let to = path.with_extension(format!("snap.{}.ahead-of-log", crate::wal::now_ms()));
        storage
            .rename(&path, &to)
            .map_err(io_err("rename", &path))?;
        tracing::warn!(file = %path.display(), offset = offset.0, "set aside a snapshot ahead of the log");
        moved.push(to);
    }
    if !moved.is_empty() {
        let sdir = snapshot_dir(dir);
        storage
            .sync_dir(&sdir)
            .map_err(io_err("sync directory", &sdir))?;
    }
    Ok(moved)
}
