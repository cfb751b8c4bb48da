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
// RocksDB (Debian's librocksdb through the rocksdb crate).

pub(super) struct Rocks;

pub(super) fn rocks_open(dir: &Path) -> rocksdb::DB {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    rocksdb::DB::open(&o, dir).expect("open")
}

pub(super) struct RocksAppender {
    pub(super) db: rocksdb::DB,
    pub(super) sync: rocksdb::WriteOptions,
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
