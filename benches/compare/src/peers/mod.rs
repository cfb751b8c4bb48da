//! Every system under test behind one small interface: a bulk load, a reopen with a full read,
//! and durable appends from one or many threads.
//!
//! Each peer is driven through its own documented API, in the way its docs suggest for the
//! job; what each "durable" call really does is in [`SYSTEMS`] (checked with strace by the
//! harness itself: the sync-call columns of the results).

use crate::common::{Payloads, PAYLOAD};
use std::path::Path;
use std::time::Duration;

/// One durable append (or the peer's closest call) from writer `thread`, its `seq`-th (from 1).
pub trait Appender: Sync {
    fn append(&self, thread: usize, seq: u64, payload: &[u8; PAYLOAD]);

    /// A group case run by the appender itself, in place of `writers` threads each calling
    /// [`Appender::append`] (None: the threads). Same contract as the harness's own group run:
    /// closed-loop writers for `dur`, each going on from its sequence number in `next_seq`;
    /// returns the time from the start to the last acknowledgement, and the appends.
    fn run_group(&self, _dur: Duration, _next_seq: &mut [u64]) -> Option<(Duration, u64)> {
        None
    }
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
        durable_call: "Wal::append_blocking, Durability::Always: write groups on the appenders' threads; the leader writes the group, 1 fdatasync, wakes the rest with one futex wake",
        runs_durable: true,
        runs_bulk: true,
        default: true,
    },
    Info {
        name: "ctxlog-async",
        durable: true,
        durable_call: "Wal::append().await, Durability::Always, from 16 or 64 tokio tasks (not threads) on a multi-thread runtime with one worker per CPU (1 writer: block_on on the harness's thread): the writer thread writes each batch; 1 fdatasync, after waiting (at most 2x the last sync, 300 us) for the tasks the last sync released; acknowledgements wake tasks, not threads. Not the issue's workload (threads); shown for what the design does without a parked thread per commit",
        runs_durable: true,
        runs_bulk: false,
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
        "ctxlog" => Box::new(CtxWal {
            sync: true,
            tasks: false,
        }),
        "ctxlog-async" => Box::new(CtxWal {
            sync: true,
            tasks: true,
        }),
        "ctxlog-nosync" => Box::new(CtxWal {
            sync: false,
            tasks: false,
        }),
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

mod raw;
pub use raw::RawBurst;
use raw::*;
mod ctx_wal;
use ctx_wal::*;
mod ctx_engine;
use ctx_engine::*;
mod raft;
use raft::*;
mod okay;
use okay::*;
mod rocks;
use rocks::*;
mod others;
use others::*;
