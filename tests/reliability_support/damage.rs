//! Stores to damage, for `tests/reliability_corruption.rs`: a pristine store on `MemStorage`
//! with the state after every offset and the layout of its files (frames of every segment,
//! offsets of the snapshots), copies of it with one bit flipped or one file cut, and an open
//! followed by a verify pass.

#![allow(dead_code)]

use ctxlog::error::Error;
use ctxlog::manager::OpenReport;
use ctxlog::state::State;
use ctxlog::storage::{CrashMode, MemStorage, OpenMode, Storage};
use ctxlog::{create_manager_with_config, snapshot, Config, Offset, Update};
use ctxlog_format::layout::HEADER_LEN;
use ctxlog_format::{FrameLayout, FrameReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::mem_config;

// ---------------------------------------------------------------- the stores

/// One file of a pristine store.
pub struct FileInfo {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// Segments: first offset and frames (start, end, offset).
    pub first: u64,
    pub frames: Vec<(u64, u64, u64)>,
    /// Segments: the last one (preallocated, zero fill after its records).
    pub active: bool,
    /// Snapshots: the offset it is as of.
    pub snap: Option<u64>,
}

impl FileInfo {
    /// End of the records (segments).
    pub fn end(&self) -> u64 {
        self.frames.last().map_or(HEADER_LEN as u64, |f| f.1)
    }
}

pub struct Pristine {
    pub mem: MemStorage,
    pub cfg: Config,
    /// The state after every offset.
    pub states: Vec<State>,
    pub segments: Vec<FileInfo>,
    pub snapshots: Vec<FileInfo>,
}

impl Pristine {
    pub fn last(&self) -> u64 {
        self.states.len() as u64 - 1
    }

    /// The newest snapshot's offset (open starts from it when it is intact).
    pub fn newest_snap(&self) -> u64 {
        self.snapshots
            .iter()
            .filter_map(|s| s.snap)
            .max()
            .unwrap_or(0)
    }
}

pub fn read(mem: &MemStorage, path: &Path) -> Vec<u8> {
    mem.durable_bytes(path).expect("file exists")
}

pub fn frames_of(bytes: &[u8], first: u64) -> Vec<(u64, u64, u64)> {
    let body = &bytes[HEADER_LEN..];
    FrameReader::new(body, HEADER_LEN as u64, first, FrameLayout::default())
        .map(|f| {
            let f = f.expect("pristine frames are intact");
            (f.position, f.end(FrameLayout::default()), f.offset)
        })
        .collect()
}

pub fn value(i: u64, big: bool) -> String {
    let pad = if big { 3000 } else { 8 };
    format!("v{i}-{}", "p".repeat(pad))
}

/// Commits, with snapshots taken after the offsets in `snaps`; `big` values make segments
/// rotate. Returns the store, closed, with the state after every offset.
pub async fn build(n: u64, snaps: &[u64], big: bool) -> Pristine {
    let mem = MemStorage::new();
    let cfg = mem_config(&mem);
    let m = create_manager_with_config(cfg.clone()).await.expect("open");
    let mut states = vec![State::default()];
    for i in 1..=n {
        let c = format!("c{}", i % 3);
        let r = match i {
            1..=3 => m.create(&c).await.map(|_| ()),
            _ if i % 11 == 0 => m.create_recovery_point(&format!("p{i}")).await.map(|_| ()),
            _ if i % 7 == 0 => m.remove(&c, &format!("k{}", (i + 1) % 4)).await.map(|_| ()),
            _ => {
                let u = Update::new()
                    .set(&c, format!("k{}", i % 4), &value(i, big))
                    .and_then(|u| u.set(format!("c{}", (i + 1) % 3), "n", &i))
                    .expect("encodes");
                m.update(u).await.map(|_| ())
            }
        };
        if let Err(e) = r {
            // A remove of a key not set yet: no commit; keep offsets dense with a set instead.
            assert!(matches!(e, Error::KeyNotFound { .. }), "{e}");
            m.set(&c, "fill", &i).await.expect("set");
        }
        assert_eq!(m.last_offset().0, i);
        states.push((*m.state()).clone());
        if snaps.contains(&i) {
            m.snapshot_now().await.expect("snapshot");
        }
    }
    m.close().await.expect("close");
    let segs = m.log().segments();
    let segments = segs
        .iter()
        .enumerate()
        .map(|(i, (first, path))| {
            let bytes = read(&mem, path);
            let frames = frames_of(&bytes, first.0);
            FileInfo {
                path: path.clone(),
                bytes,
                first: first.0,
                frames,
                active: i + 1 == segs.len(),
                snap: None,
            }
        })
        .collect();
    let (snap_files, _) = snapshot::list(&mem, Path::new("store")).expect("list");
    let snapshots = snap_files
        .into_iter()
        .map(|(o, path)| FileInfo {
            bytes: read(&mem, &path),
            path,
            first: 0,
            frames: Vec::new(),
            active: false,
            snap: Some(o.0),
        })
        .collect();
    Pristine {
        mem,
        cfg,
        states,
        segments,
        snapshots,
    }
}

// ---------------------------------------------------------------- opening damaged copies

pub enum Outcome {
    Refused(Error),
    Opened {
        report: Box<OpenReport>,
        state: Arc<State>,
        /// The first failure of the verify pass.
        verify: Option<Error>,
    },
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Refused(e) => write!(f, "refused: {e:?}"),
            Outcome::Opened {
                report,
                state,
                verify,
            } => write!(
                f,
                "opened at offset {} (torn {:?}, skipped {:?}, set aside {:?}, repaired {:?}), \
                 verify {verify:?}",
                state.offset(),
                report.log.torn_tail,
                report.skipped_snapshots,
                report.set_aside_snapshots,
                report.log.repaired_segment
            ),
        }
    }
}

pub async fn open_and_verify(img: &MemStorage, cfg: &Config) -> Outcome {
    let mut cfg = cfg.clone();
    cfg.storage = Arc::new(img.clone());
    let m = match create_manager_with_config(cfg).await {
        Ok(m) => m,
        Err(e) => return Outcome::Refused(e),
    };
    let mut verify = m.events(Offset(1)).await.err();
    if verify.is_none() {
        let id = m.log().store_id();
        let (snaps, _) = snapshot::list(img, Path::new("store")).expect("list");
        verify = snaps
            .iter()
            .find_map(|(_, p)| snapshot::load(img, p, id).err())
            .map(Error::Recovery);
    }
    let (report, state) = (Box::new(m.open_report().clone()), m.state());
    m.close().await.expect("close");
    Outcome::Opened {
        report,
        state,
        verify,
    }
}

/// A copy of the pristine store with one byte changed.
pub fn flipped(p: &Pristine, file: &FileInfo, pos: u64, bit: u32) -> MemStorage {
    let img = p.mem.crash_image(CrashMode::ProcessKill);
    let b = file.bytes[pos as usize] ^ (1 << bit);
    img.corrupt(&file.path, pos, &[b]).expect("corrupt");
    img
}

/// A copy of the pristine store with one file cut to `len` bytes.
pub fn truncated(p: &Pristine, file: &FileInfo, len: u64) -> MemStorage {
    let img = p.mem.crash_image(CrashMode::ProcessKill);
    cut(&img, &file.path, len);
    img
}

/// The segment file names of the store in `mem`, in order.
pub fn segments(mem: &MemStorage) -> Vec<String> {
    let names = mem.list(Path::new("store/wal")).expect("list");
    names.into_iter().filter(|n| n.ends_with(".seg")).collect()
}

/// Creates a file with `bytes`, durably.
pub fn put(mem: &MemStorage, path: &Path, bytes: &[u8]) {
    let f = mem.open(path, OpenMode::CreateNew).expect("create");
    f.write_all_at(bytes, 0).expect("write");
    f.sync_data().expect("sync");
}

/// Cuts a file to `len` bytes, durably.
pub fn cut(mem: &MemStorage, path: &Path, len: u64) {
    let f = mem.open(path, OpenMode::ReadWrite).expect("open");
    f.set_len(len).expect("truncate");
    f.sync_data().expect("sync");
}
