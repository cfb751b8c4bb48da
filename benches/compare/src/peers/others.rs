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
// fjall 3.

pub(super) struct Fjall;

pub(super) struct FjallStore {
    pub(super) db: fjall::Database,
    pub(super) ks: fjall::Keyspace,
}

pub(super) fn fjall_open(dir: &Path) -> FjallStore {
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

pub(super) struct Redb;

pub(super) const REDB_TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");

pub(super) fn redb_key(thread: usize, seq: u64) -> u64 {
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

pub(super) struct Sqlite;

pub(super) fn sqlite_open(dir: &Path) -> rusqlite::Connection {
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

pub(super) struct SqliteAppender {
    /// One connection per writer thread.
    pub(super) conns: Vec<Mutex<rusqlite::Connection>>,
}

impl Appender for SqliteAppender {
    fn append(&self, thread: usize, seq: u64, payload: &[u8; PAYLOAD]) {
        let c = self.conns[thread].lock().unwrap();
        c.prepare_cached("INSERT INTO log (k, v) VALUES (?1, ?2)")
            .expect("prepare")
            .execute(rusqlite::params![
                redb_key(thread, seq) as i64,
                &payload[..]
            ])
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

pub(super) struct Sled;

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

pub(super) struct CommitLogPeer;

pub(super) fn commitlog_open(dir: &Path) -> commitlog::CommitLog {
    commitlog::CommitLog::new(commitlog::LogOptions::new(dir)).expect("open")
}

pub(super) struct CommitLogAppender(Mutex<commitlog::CommitLog>);

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
