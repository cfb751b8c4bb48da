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
// okaywal 0.3.

/// Counts the chunks recovered; checkpoints nothing (the durable runs keep okaywal's default
/// checkpointing, so this is where an application would persist the entries).
#[derive(Debug, Default)]
pub(super) struct OkayManager {
    pub(super) chunks: Arc<AtomicU64>,
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

pub(super) struct OkayWal;

/// For the bulk load and its reopen: never checkpoint, so that reopen recovers every entry.
pub(super) fn okay_no_checkpoint(dir: &Path) -> okaywal::Configuration {
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
