//! Every system under test behind one small interface: a bulk load, a reopen with a full read,
//! and durable appends from one or many threads.
//!
//! Each peer is driven through its own documented API, in the way its docs suggest for the
//! job; what each "durable" call really does is in [`SYSTEMS`] (checked with strace by the
//! harness itself: the sync-call columns of the results).

use crate::common::{key, Payloads, Section, BULK_BATCH, PAYLOAD, RAW_FRAME};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One durable append (or the peer's closest call) from writer `thread`, its `seq`-th (from 1).
pub trait Appender: Sync {
    fn append(&self, thread: usize, seq: u64, payload: &[u8; PAYLOAD]);
}

/// A system under test. `bulk` and `reopen` time their own section (opening a fresh store for
/// the bulk load is outside it; the reopen is inside).
pub trait System: Sync {
    /// Creates a store in `dir`, loads `n` records, makes them durable with one sync (as far as
    /// the peer allows) and closes it. Returns the timed section: first append to synced.
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration;
    /// Opens the store the bulk load left and reads every record. Returns (time, records).
    fn reopen(&self, dir: &Path, n: u64) -> (Duration, u64);
    /// Opens a fresh store for durable appends from `threads` writers.
    fn open_durable(&self, dir: &Path, threads: usize) -> Box<dyn Appender + '_>;
}

/// A system's name, how it is driven and what its durable call does.
pub struct Info {
    pub name: &'static str,
    /// False for peers whose "durable" call does not reach stable storage.
    pub durable: bool,
    /// What its durable call does (shown in the table).
    pub durable_call: &'static str,
    /// Runs the durable columns (the compression variant of raft-engine shares them).
    pub runs_durable: bool,
    /// Runs the bulk and reopen columns.
    pub runs_bulk: bool,
    /// Part of a run that names no systems (diagnostics are not).
    pub default: bool,
}

pub const SYSTEMS: &[Info] = &[
    Info {
        name: "raw",
        durable: true,
        durable_call: "pwrite 208 B + fdatasync (bulk: 8 MiB pwrites + 1 fdatasync)",
        runs_durable: true,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "ctxlog",
        durable: true,
        durable_call: "Wal::append_blocking, Durability::Always: lone writer syncs inline; under load a sync thread, 1 fdatasync per group, and an ack thread",
        runs_durable: true,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "ctxlog-engine",
        durable: true,
        durable_call: "ContextManager open = recovery + replay of every commit (reopen column only)",
        runs_durable: false,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "raft-engine",
        durable: true,
        durable_call: "Engine::write(batch, sync=true): write group, 1 fdatasync per group",
        runs_durable: true,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "raft-engine-nolz4",
        durable: true,
        durable_call: "as raft-engine, batch_compression_threshold = 0 (no LZ4)",
        runs_durable: false,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "okaywal",
        durable: true,
        durable_call: "EntryWriter::commit: fdatasync, one syncing thread at a time covers the others",
        runs_durable: true,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "rocksdb",
        durable: true,
        durable_call: "put with WriteOptions::set_sync(true): write group, fdatasync of the WAL",
        runs_durable: true,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "fjall",
        durable: true,
        durable_call: "WriteBatch durability SyncData: fdatasync under the journal lock (no grouping)",
        runs_durable: true,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "redb",
        durable: true,
        durable_call: "write transaction commit (Durability::Immediate): one writer at a time, fsyncs",
        runs_durable: true,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "sqlite",
        durable: true,
        durable_call: "INSERT autocommit, WAL mode, synchronous=FULL: fsync of the WAL per commit",
        runs_durable: true,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "sled",
        durable: false,
        durable_call: "insert + Db::flush: sync_file_range only (no fsync: not durable on power loss)",
        runs_durable: true,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "commitlog",
        durable: false,
        durable_call: "append_msg + flush: File::flush on the segment (no sync: not durable); msync of the index only per filled page",
        runs_durable: true,
        runs_bulk: true,
        default: true,
    },
];

/// Diagnostics, run only when named with `--systems`.
pub const DIAGNOSTICS: &[Info] = &[Info {
    name: "ctxlog-nosync",
    durable: false,
    durable_call: "diagnostic: Wal::append_blocking with Durability::Never: the pipeline's own \
                   latency (queue, writer thread, completion thread, reply) without fdatasync",
    runs_durable: true,
    runs_bulk: false,
    default: false,
}];

pub fn all() -> impl Iterator<Item = &'static Info> {
    SYSTEMS.iter().chain(DIAGNOSTICS)
}

pub fn info(name: &str) -> Option<&'static Info> {
    all().find(|s| s.name == name)
}

pub fn system(name: &str) -> Box<dyn System> {
    match name {
        "raw" => Box::new(Raw),
        "ctxlog" => Box::new(CtxWal { sync: true }),
        "ctxlog-nosync" => Box::new(CtxWal { sync: false }),
        "ctxlog-engine" => Box::new(CtxEngine),
        "raft-engine" => Box::new(RaftEngine { compress: true }),
        "raft-engine-nolz4" => Box::new(RaftEngine { compress: false }),
        "okaywal" => Box::new(OkayWal),
        "rocksdb" => Box::new(Rocks),
        "fjall" => Box::new(Fjall),
        "redb" => Box::new(Redb),
        "sqlite" => Box::new(Sqlite),
        "sled" => Box::new(Sled),
        "commitlog" => Box::new(CommitLogPeer),
        other => panic!("unknown system {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The raw baseline.

/// Bytes of the raw durable file (cycled through, as a preallocated segment would be).
const RAW_AREA: u64 = 64 << 20;
/// Size of the raw bulk writes (ctxlog's default `batch_bytes_max`).
const RAW_CHUNK: usize = 8 << 20;

struct Raw;

fn raw_frame(i: u64, p: &[u8; PAYLOAD]) -> [u8; RAW_FRAME] {
    let mut f = [0u8; RAW_FRAME];
    f[..8].copy_from_slice(&i.to_le_bytes());
    f[8..].copy_from_slice(p);
    f
}

fn preallocate(file: &std::fs::File, len: u64) {
    let zeros = vec![0u8; RAW_CHUNK];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(RAW_CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at).expect("preallocate");
        at += n as u64;
    }
    file.sync_data().expect("fdatasync");
}

/// The raw durable baseline interleaved with a durable case: single-writer `pwrite` 208 B +
/// `fdatasync` on a small preallocated file in the case's directory, run in slices between
/// the case's own slices (outside the timed sections' markers), so that both see the same
/// state of the disk. This machine's virtual disk drifts by 10-40x within seconds (it behaves
/// like a throttled device with burst credits): only a baseline taken in the same moments is
/// comparable.
pub struct RawBurst {
    a: RawAppender,
    p: Payloads,
    n: u64,
    syncs: u64,
    elapsed: Duration,
}

impl RawBurst {
    pub fn new(dir: &Path) -> RawBurst {
        std::fs::create_dir_all(dir).unwrap();
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("paired.raw"))
            .expect("create");
        preallocate(&file, 4 << 20);
        RawBurst {
            a: RawAppender {
                file,
                pos: AtomicU64::new(0),
                slots: (4 << 20) / RAW_FRAME as u64,
            },
            p: Payloads::new(),
            n: 0,
            syncs: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Writes and syncs for `dur` (at least `min` times).
    pub fn run(&mut self, dur: Duration, min: u64) {
        let start = std::time::Instant::now();
        let mut k = 0;
        while k < min || start.elapsed() < dur {
            self.n += 1;
            k += 1;
            self.a.append(0, self.n, &self.p.get(self.n));
        }
        self.syncs += k;
        self.elapsed += start.elapsed();
    }

    /// Syncs per second over every slice.
    pub fn rate(&self) -> f64 {
        self.syncs as f64 / self.elapsed.as_secs_f64()
    }
}

struct RawAppender {
    file: std::fs::File,
    pos: AtomicU64,
    /// Frames that fit in the preallocated file (cycled through).
    slots: u64,
}

impl Appender for RawAppender {
    fn append(&self, _thread: usize, seq: u64, payload: &[u8; PAYLOAD]) {
        let at = (self.pos.fetch_add(1, Ordering::Relaxed) % self.slots) * RAW_FRAME as u64;
        self.file
            .write_all_at(&raw_frame(seq, payload), at)
            .expect("pwrite");
        self.file.sync_data().expect("fdatasync");
    }
}

impl System for Raw {
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        std::fs::create_dir_all(dir).unwrap();
        let total = n * RAW_FRAME as u64;
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("raw.dat"))
            .expect("create");
        preallocate(&file, total);
        // One chunk of frames, written over and over (building it is outside the clock).
        let per_chunk = RAW_CHUNK / RAW_FRAME;
        let mut chunk = Vec::with_capacity(per_chunk * RAW_FRAME);
        for i in 0..per_chunk as u64 {
            chunk.extend_from_slice(&raw_frame(i, &p.get(i)));
        }
        let t = Section::start();
        let mut at = 0;
        while at < total {
            let len = (total - at).min(chunk.len() as u64) as usize;
            file.write_all_at(&chunk[..len], at).expect("pwrite");
            at += len as u64;
        }
        file.sync_data().expect("fdatasync");
        t.stop()
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let t = Section::start();
        let file = std::fs::File::open(dir.join("raw.dat")).expect("open");
        let len = file.metadata().unwrap().len();
        let chunk_len = RAW_CHUNK / RAW_FRAME * RAW_FRAME;
        let mut buf = vec![0u8; chunk_len];
        let (mut at, mut count, mut sum) = (0u64, 0u64, 0u64);
        while at < len {
            let want = (len - at).min(chunk_len as u64) as usize;
            file.read_exact_at(&mut buf[..want], at).expect("read");
            for f in buf[..want].chunks_exact(RAW_FRAME) {
                let payload = black_box(&f[8..]);
                sum = sum.wrapping_add(u64::from(payload[0]));
                count += 1;
            }
            at += want as u64;
        }
        black_box(sum);
        (t.stop(), count)
    }

    fn open_durable(&self, dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        std::fs::create_dir_all(dir).unwrap();
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("raw.dat"))
            .expect("create");
        preallocate(&file, RAW_AREA);
        Box::new(RawAppender {
            file,
            pos: AtomicU64::new(0),
            slots: RAW_AREA / RAW_FRAME as u64,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// ctxlog, through the Wal API.

use ctxlog::storage::FsStorage;
use ctxlog::wal::{Durability, Wal, WalConfig};

/// Threads calling `append_batch_blocking` in the ctxlog bulk load (as `benches/wal` does).
const CTX_BULK_THREADS: usize = 4;

struct CtxWal {
    /// `Durability::Always` for the durable cases (false: `Never`, a diagnostic).
    sync: bool,
}

impl Appender for Wal {
    fn append(&self, _thread: usize, _seq: u64, payload: &[u8; PAYLOAD]) {
        self.append_blocking(payload.to_vec()).expect("append");
    }
}

impl System for CtxWal {
    /// `Wal::append_batch_blocking` with [`BULK_BATCH`] records per call from
    /// [`CTX_BULK_THREADS`] threads (the writer thread is pipelined: one caller alone would
    /// wait for every batch's write), `Durability::Never`, then `close`, which writes and
    /// syncs what is left: the bulk load's sync.
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        let config = WalConfig {
            durability: Durability::Never,
            ..WalConfig::default()
        };
        let wal = Wal::open(Arc::new(FsStorage), dir, config).expect("open");
        let batches = n.div_ceil(BULK_BATCH as u64);
        let next = AtomicU64::new(0);
        let t = Section::start();
        std::thread::scope(|s| {
            for _ in 0..CTX_BULK_THREADS {
                s.spawn(|| loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        break;
                    }
                    let first = b * BULK_BATCH as u64;
                    let last = (first + BULK_BATCH as u64).min(n);
                    let batch: Vec<Vec<u8>> = (first..last).map(|i| p.get(i).to_vec()).collect();
                    wal.append_batch_blocking(batch).expect("append batch");
                });
            }
        });
        wal.close();
        t.stop()
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let t = Section::start();
        let wal = Wal::open(Arc::new(FsStorage), dir, WalConfig::default()).expect("reopen");
        let mut count = 0u64;
        wal.reader()
            .scan(ctxlog::Offset(1), ctxlog::Offset(u64::MAX), |r| {
                black_box(r.payload);
                count += 1;
                std::ops::ControlFlow::Continue(())
            })
            .expect("scan");
        let took = t.stop();
        wal.close();
        (took, count)
    }

    fn open_durable(&self, dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        let config = WalConfig {
            durability: if self.sync {
                Durability::Always
            } else {
                Durability::Never
            },
            ..WalConfig::default()
        };
        Box::new(Wal::open(Arc::new(FsStorage), dir, config).expect("open"))
    }
}

// ---------------------------------------------------------------------------------------------
// ctxlog, the engine: open and rebuild the state from 1 M ValueSet events.

struct CtxEngine;

/// As benches/engine.rs: 10,000 contexts, 100 keys each, ~200 B values, one event a commit.
const CONTEXTS: u64 = 10_000;
const KEYS: u64 = 100;

fn engine_config(dir: &Path) -> ctxlog::Config {
    let mut c = ctxlog::Config::new(dir);
    c.durability = Durability::Never;
    c.snapshot_every_commits = None;
    c.snapshot_every_bytes = None;
    c
}

fn engine_value(i: u64) -> String {
    let mut v = format!("{i:020}");
    v.push_str(&"v".repeat(PAYLOAD - 20 - 3));
    v
}

fn engine_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

impl System for CtxEngine {
    /// Fills the store (timed, shown as a note): 10,000 creates, then `n` ValueSet commits
    /// with up to 256 in flight, `Durability::Never`, then close.
    fn bulk(&self, dir: &Path, n: u64, _p: &Payloads) -> Duration {
        use ctxlog::Update;
        let rt = engine_runtime();
        let m = rt
            .block_on(ctxlog::create_manager_with_config(engine_config(dir)))
            .expect("open");
        let t = Section::start();
        rt.block_on(async {
            let mut batch = Update::new();
            for c in 0..CONTEXTS {
                batch = batch.create(format!("ctx-{c:05}"));
                if (c + 1) % 1000 == 0 {
                    m.update(std::mem::take(&mut batch)).await.expect("create");
                }
            }
            let sem = Arc::new(tokio::sync::Semaphore::new(256));
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..n {
                let ctx = format!("ctx-{:05}", i % CONTEXTS);
                let key = format!("k{}", (i / CONTEXTS) % KEYS);
                let u = Update::new().set(ctx, key, &engine_value(i)).expect("encode");
                let permit = sem.clone().acquire_owned().await.expect("semaphore");
                let m = m.clone();
                tasks.spawn(async move {
                    m.update(u).await.expect("update");
                    drop(permit);
                });
                while tasks.len() > 1024 {
                    tasks.join_next().await;
                }
            }
            while tasks.join_next().await.is_some() {}
            m.close().await.expect("close");
        });
        t.stop()
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let rt = engine_runtime();
        let t = Section::start();
        let m = rt
            .block_on(ctxlog::create_manager_with_config(engine_config(dir)))
            .expect("open");
        let took = t.stop();
        // Events replayed: every ValueSet (plus 10 commits of creates).
        let replayed = m.open_report().replayed;
        black_box(m.list().len());
        rt.block_on(m.close()).expect("close");
        (took, replayed)
    }

    fn open_durable(&self, _dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        unreachable!("ctxlog-engine runs the reopen column only")
    }
}

// ---------------------------------------------------------------------------------------------
// raft-engine 0.4 (default features off).

/// Entries are protobuf `BytesValue`s whose bytes are the payload; the entry index is the
/// payload's first 8 bytes (the record's sequence number).
struct Entries;

impl raft_engine::MessageExt for Entries {
    type Entry = protobuf::well_known_types::BytesValue;

    fn index(e: &Self::Entry) -> u64 {
        u64::from_le_bytes(e.value[..8].try_into().expect("8 bytes"))
    }
}

fn entry(payload: &[u8; PAYLOAD]) -> protobuf::well_known_types::BytesValue {
    let mut e = protobuf::well_known_types::BytesValue::new();
    e.value = payload.to_vec();
    e
}

struct RaftEngine {
    compress: bool,
}

impl RaftEngine {
    fn config(&self, dir: &Path) -> raft_engine::Config {
        let mut c = raft_engine::Config {
            dir: dir.to_string_lossy().into_owned(),
            ..Default::default()
        };
        if !self.compress {
            c.batch_compression_threshold = raft_engine::ReadableSize(0);
        }
        c
    }
}

struct RaftAppender {
    engine: raft_engine::Engine,
}

impl Appender for RaftAppender {
    fn append(&self, thread: usize, _seq: u64, payload: &[u8; PAYLOAD]) {
        let mut batch = raft_engine::LogBatch::with_capacity(1);
        batch
            .add_entries::<Entries>(thread as u64 + 1, &[entry(payload)])
            .expect("add");
        self.engine.write(&mut batch, true).expect("write");
    }
}

impl System for RaftEngine {
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        let engine = raft_engine::Engine::open(self.config(dir)).expect("open");
        let t = Section::start();
        let mut i = 1;
        while i <= n {
            let end = (i + BULK_BATCH as u64).min(n + 1);
            let entries: Vec<_> = (i..end).map(|j| entry(&p.get(j))).collect();
            let mut batch = raft_engine::LogBatch::with_capacity(entries.len());
            batch.add_entries::<Entries>(1, &entries).expect("add");
            // Engine::sync() writes an empty batch, which 0.4 skips: the last write syncs.
            engine.write(&mut batch, end > n).expect("write");
            i = end;
        }
        let took = t.stop();
        drop(engine);
        took
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let t = Section::start();
        let engine = raft_engine::Engine::open(self.config(dir)).expect("open");
        let (first, last) = (
            engine.first_index(1).expect("entries"),
            engine.last_index(1).expect("entries"),
        );
        let mut count = 0u64;
        let mut buf = Vec::with_capacity(16_384);
        let mut at = first;
        while at <= last {
            let end = (at + 16_384).min(last + 1);
            engine
                .fetch_entries_to::<Entries>(1, at, end, None, &mut buf)
                .expect("fetch");
            count += buf.len() as u64;
            black_box(&buf);
            buf.clear();
            at = end;
        }
        let took = t.stop();
        drop(engine);
        (took, count)
    }

    fn open_durable(&self, dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        Box::new(RaftAppender {
            engine: raft_engine::Engine::open(self.config(dir)).expect("open"),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// okaywal 0.3.

/// Counts the chunks recovered; checkpoints nothing (the durable runs keep okaywal's default
/// checkpointing, so this is where an application would persist the entries).
#[derive(Debug, Default)]
struct OkayManager {
    chunks: Arc<AtomicU64>,
}

impl okaywal::LogManager for OkayManager {
    fn recover(&mut self, entry: &mut okaywal::Entry<'_>) -> std::io::Result<()> {
        loop {
            match entry.read_chunk()? {
                okaywal::ReadChunkResult::Chunk(mut chunk) => {
                    let data = chunk.read_all()?;
                    assert!(chunk.check_crc()?, "okaywal chunk crc");
                    black_box(data);
                    self.chunks.fetch_add(1, Ordering::Relaxed);
                }
                okaywal::ReadChunkResult::EndOfEntry | okaywal::ReadChunkResult::AbortedEntry => {
                    return Ok(())
                }
            }
        }
    }

    fn checkpoint_to(
        &mut self,
        _last: okaywal::EntryId,
        _entries: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

struct OkayWal;

/// For the bulk load and its reopen: never checkpoint, so that reopen recovers every entry.
fn okay_no_checkpoint(dir: &Path) -> okaywal::Configuration {
    okaywal::Configuration::default_for(dir).checkpoint_after_bytes(u64::MAX)
}

impl Appender for okaywal::WriteAheadLog {
    fn append(&self, _thread: usize, _seq: u64, payload: &[u8; PAYLOAD]) {
        let mut e = self.begin_entry().expect("begin");
        e.write_chunk(payload).expect("chunk");
        e.commit().expect("commit");
    }
}

impl System for OkayWal {
    /// One entry of `n` chunks, one commit (its one fdatasync).
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        let wal = okay_no_checkpoint(dir)
            .open(OkayManager::default())
            .expect("open");
        let t = Section::start();
        let mut e = wal.begin_entry().expect("begin");
        for i in 0..n {
            e.write_chunk(&p.get(i)).expect("chunk");
        }
        e.commit().expect("commit");
        let took = t.stop();
        wal.shutdown().expect("shutdown");
        took
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let manager = OkayManager::default();
        let chunks = Arc::clone(&manager.chunks);
        let t = Section::start();
        let wal = okay_no_checkpoint(dir).open(manager).expect("recover");
        let took = t.stop();
        wal.shutdown().expect("shutdown");
        (took, chunks.load(Ordering::Relaxed))
    }

    fn open_durable(&self, dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        Box::new(
            okaywal::Configuration::default_for(dir)
                .open(OkayManager::default())
                .expect("open"),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// RocksDB (Debian's librocksdb through the rocksdb crate).

struct Rocks;

fn rocks_open(dir: &Path) -> rocksdb::DB {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    rocksdb::DB::open(&o, dir).expect("open")
}

struct RocksAppender {
    db: rocksdb::DB,
    sync: rocksdb::WriteOptions,
}

// WriteOptions holds a raw pointer; it is only read by concurrent puts.
unsafe impl Sync for RocksAppender {}

impl Appender for RocksAppender {
    fn append(&self, thread: usize, seq: u64, payload: &[u8; PAYLOAD]) {
        self.db
            .put_opt(key(thread, seq), payload, &self.sync)
            .expect("put");
    }
}

impl System for Rocks {
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        let db = rocks_open(dir);
        let t = Section::start();
        let mut i = 0;
        while i < n {
            let mut batch = rocksdb::WriteBatch::default();
            let end = (i + BULK_BATCH as u64).min(n);
            for j in i..end {
                batch.put(key(0, j), p.get(j));
            }
            db.write(batch).expect("write");
            i = end;
        }
        db.flush_wal(true).expect("sync the WAL");
        let took = t.stop();
        drop(db);
        took
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let t = Section::start();
        let db = rocks_open(dir);
        let mut count = 0u64;
        for kv in db.iterator(rocksdb::IteratorMode::Start) {
            black_box(kv.expect("read"));
            count += 1;
        }
        let took = t.stop();
        drop(db);
        (took, count)
    }

    fn open_durable(&self, dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        Box::new(RocksAppender {
            db: rocks_open(dir),
            sync,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// fjall 3.

struct Fjall;

struct FjallStore {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

fn fjall_open(dir: &Path) -> FjallStore {
    let db = fjall::Database::builder(dir).open().expect("open");
    let ks = db
        .keyspace("log", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    FjallStore { db, ks }
}

impl Appender for FjallStore {
    fn append(&self, thread: usize, seq: u64, payload: &[u8; PAYLOAD]) {
        let mut b = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        b.insert(&self.ks, key(thread, seq).to_vec(), payload.to_vec());
        b.commit().expect("commit");
    }
}

impl System for Fjall {
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        let s = fjall_open(dir);
        let t = Section::start();
        let mut i = 0;
        while i < n {
            let mut b = s.db.batch();
            let end = (i + BULK_BATCH as u64).min(n);
            for j in i..end {
                b.insert(&s.ks, key(0, j).to_vec(), p.get(j).to_vec());
            }
            b.commit().expect("commit");
            i = end;
        }
        s.db.persist(fjall::PersistMode::SyncData).expect("persist");
        let took = t.stop();
        drop(s);
        took
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let t = Section::start();
        let s = fjall_open(dir);
        let mut count = 0u64;
        for kv in s.ks.iter() {
            black_box(kv.into_inner().expect("read"));
            count += 1;
        }
        let took = t.stop();
        drop(s);
        (took, count)
    }

    fn open_durable(&self, dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        Box::new(fjall_open(dir))
    }
}

// ---------------------------------------------------------------------------------------------
// redb.

struct Redb;

const REDB_TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");

fn redb_key(thread: usize, seq: u64) -> u64 {
    ((thread as u64) << 40) | seq
}

impl Appender for redb::Database {
    fn append(&self, thread: usize, seq: u64, payload: &[u8; PAYLOAD]) {
        let tx = self.begin_write().expect("begin");
        {
            let mut table = tx.open_table(REDB_TABLE).expect("table");
            table
                .insert(redb_key(thread, seq), payload.as_slice())
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
}

impl System for Redb {
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        std::fs::create_dir_all(dir).unwrap();
        let db = redb::Database::create(dir.join("redb.db")).expect("create");
        let t = Section::start();
        let tx = db.begin_write().expect("begin");
        {
            let mut table = tx.open_table(REDB_TABLE).expect("table");
            for i in 0..n {
                table.insert(i, p.get(i).as_slice()).expect("insert");
            }
        }
        tx.commit().expect("commit");
        let took = t.stop();
        drop(db);
        took
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        use redb::{ReadableDatabase, ReadableTable};
        let t = Section::start();
        let db = redb::Database::open(dir.join("redb.db")).expect("open");
        let tx = db.begin_read().expect("read");
        let table = tx.open_table(REDB_TABLE).expect("table");
        let mut count = 0u64;
        for kv in table.iter().expect("iter") {
            let (k, v) = kv.expect("read");
            black_box((k.value(), v.value()));
            count += 1;
        }
        let took = t.stop();
        drop(table);
        drop(tx);
        drop(db);
        (took, count)
    }

    fn open_durable(&self, dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        std::fs::create_dir_all(dir).unwrap();
        Box::new(redb::Database::create(dir.join("redb.db")).expect("create"))
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite (rusqlite, bundled), WAL mode, synchronous=FULL.

struct Sqlite;

fn sqlite_open(dir: &Path) -> rusqlite::Connection {
    std::fs::create_dir_all(dir).unwrap();
    let c = rusqlite::Connection::open(dir.join("db.sqlite")).expect("open");
    c.busy_timeout(Duration::from_secs(120)).expect("busy");
    c.pragma_update(None, "journal_mode", "WAL")
        .expect("journal_mode");
    c.pragma_update(None, "synchronous", "FULL")
        .expect("synchronous");
    c.execute(
        "CREATE TABLE IF NOT EXISTS log (k INTEGER PRIMARY KEY, v BLOB NOT NULL)",
        [],
    )
    .expect("create table");
    c
}

struct SqliteAppender {
    /// One connection per writer thread.
    conns: Vec<Mutex<rusqlite::Connection>>,
}

impl Appender for SqliteAppender {
    fn append(&self, thread: usize, seq: u64, payload: &[u8; PAYLOAD]) {
        let c = self.conns[thread].lock().unwrap();
        c.prepare_cached("INSERT INTO log (k, v) VALUES (?1, ?2)")
            .expect("prepare")
            .execute(rusqlite::params![redb_key(thread, seq) as i64, &payload[..]])
            .expect("insert");
    }
}

impl System for Sqlite {
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        let mut c = sqlite_open(dir);
        let t = Section::start();
        let tx = c.transaction().expect("begin");
        {
            let mut st = tx
                .prepare("INSERT INTO log (k, v) VALUES (?1, ?2)")
                .expect("prepare");
            for i in 0..n {
                st.execute(rusqlite::params![i as i64, &p.get(i)[..]])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
        let took = t.stop();
        drop(c);
        took
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let t = Section::start();
        let c = sqlite_open(dir);
        let mut count = 0u64;
        {
            let mut st = c.prepare("SELECT k, v FROM log").expect("prepare");
            let mut rows = st.query([]).expect("query");
            while let Some(row) = rows.next().expect("row") {
                let k: i64 = row.get(0).expect("k");
                let v = row.get_ref(1).expect("v").as_blob().expect("blob");
                black_box((k, v));
                count += 1;
            }
        }
        let took = t.stop();
        drop(c);
        (took, count)
    }

    fn open_durable(&self, dir: &Path, threads: usize) -> Box<dyn Appender + '_> {
        Box::new(SqliteAppender {
            conns: (0..threads).map(|_| Mutex::new(sqlite_open(dir))).collect(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// sled 0.34.

struct Sled;

impl Appender for sled::Db {
    fn append(&self, thread: usize, seq: u64, payload: &[u8; PAYLOAD]) {
        self.insert(key(thread, seq), payload.as_slice())
            .expect("insert");
        self.flush().expect("flush");
    }
}

impl System for Sled {
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        let db = sled::open(dir).expect("open");
        let t = Section::start();
        let mut i = 0;
        while i < n {
            let mut b = sled::Batch::default();
            let end = (i + BULK_BATCH as u64).min(n);
            for j in i..end {
                b.insert(&key(0, j), p.get(j).as_slice());
            }
            db.apply_batch(b).expect("batch");
            i = end;
        }
        db.flush().expect("flush");
        let took = t.stop();
        drop(db);
        took
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        let t = Section::start();
        let db = sled::open(dir).expect("open");
        let mut count = 0u64;
        for kv in db.iter() {
            black_box(kv.expect("read"));
            count += 1;
        }
        let took = t.stop();
        drop(db);
        (took, count)
    }

    fn open_durable(&self, dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        Box::new(sled::open(dir).expect("open"))
    }
}

// ---------------------------------------------------------------------------------------------
// commitlog 0.2.

struct CommitLogPeer;

fn commitlog_open(dir: &Path) -> commitlog::CommitLog {
    commitlog::CommitLog::new(commitlog::LogOptions::new(dir)).expect("open")
}

struct CommitLogAppender(Mutex<commitlog::CommitLog>);

impl Appender for CommitLogAppender {
    fn append(&self, _thread: usize, _seq: u64, payload: &[u8; PAYLOAD]) {
        let mut log = self.0.lock().unwrap();
        log.append_msg(payload).expect("append");
        log.flush().expect("flush");
    }
}

impl System for CommitLogPeer {
    fn bulk(&self, dir: &Path, n: u64, p: &Payloads) -> Duration {
        let mut log = commitlog_open(dir);
        let t = Section::start();
        for i in 0..n {
            log.append_msg(p.get(i)).expect("append");
        }
        log.flush().expect("flush");
        let took = t.stop();
        drop(log);
        took
    }

    fn reopen(&self, dir: &Path, _n: u64) -> (Duration, u64) {
        use commitlog::message::MessageSet;
        let t = Section::start();
        let log = commitlog_open(dir);
        let mut count = 0u64;
        let mut at = 0;
        loop {
            let buf = log
                .read(at, commitlog::ReadLimit::max_bytes(8 << 20))
                .expect("read");
            let mut last = None;
            for m in buf.iter() {
                black_box(m.payload());
                last = Some(m.offset());
                count += 1;
            }
            match last {
                Some(o) => at = o + 1,
                None => break,
            }
        }
        let took = t.stop();
        drop(log);
        (took, count)
    }

    fn open_durable(&self, dir: &Path, _threads: usize) -> Box<dyn Appender + '_> {
        Box::new(CommitLogAppender(Mutex::new(commitlog_open(dir))))
    }
}
