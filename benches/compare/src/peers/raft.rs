#![allow(unused_imports)]
//! Peers: see the parent module.

use super::*;
use crate::common::{key, Payloads, Section, BULK_BATCH, PAYLOAD, RAW_FRAME};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// raft-engine 0.4 (default features off).

/// Entries are protobuf `BytesValue`s whose bytes are the payload; the entry index is the
/// payload's first 8 bytes (the record's sequence number).
pub(super) struct Entries;

impl raft_engine::MessageExt for Entries {
    type Entry = protobuf::well_known_types::BytesValue;

    fn index(e: &Self::Entry) -> u64 {
        u64::from_le_bytes(e.value[..8].try_into().expect("8 bytes"))
    }
}

pub(super) fn entry(payload: &[u8; PAYLOAD]) -> protobuf::well_known_types::BytesValue {
    let mut e = protobuf::well_known_types::BytesValue::new();
    e.value = payload.to_vec();
    e
}

pub(super) struct RaftEngine {
    pub(super) compress: bool,
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

pub(super) struct RaftAppender {
    pub(super) engine: raft_engine::Engine,
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
