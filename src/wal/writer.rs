//! The owner of the active segment: encodes records into a batch buffer, writes each batch with
//! one positional write, rotates full segments. Used by one thread only.

use super::segment::{create_segment, seal_segment};
use super::shared::{Counters, SegmentEntry, Shared};
use super::{WalConfig, WalError};
use crate::offset::Offset;
use crate::storage::{LockGuard, StorageFile};
use ctxlog_format::{chain_next, encode_frame};
use std::path::PathBuf;
use std::sync::Arc;

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct Active {
    pub first: u64,
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    /// Bytes the file was preallocated to.
    pub capacity: u64,
    /// End of the last record written.
    pub pos: u64,
}

/// A batch that reached the OS: what the completion thread syncs and publishes.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub file: Arc<dyn StorageFile>,
    pub path: PathBuf,
    pub segment_first: u64,
    /// End of the batch in the file.
    pub end: u64,
    /// Offset of the batch's last record.
    pub last: u64,
    /// Chain hash of that record (tamper-evident stores).
    pub chain: Option<[u8; 32]>,
}

/// One counted, timed `fdatasync`; a failure poisons the log. Syncs of a log run one at a
/// time (`Shared::sync_lock`), and none starts once the log is poisoned.
fn timed_sync(
    shared: &Shared,
    file: &dyn StorageFile,
    path: &std::path::Path,
) -> Result<(), WalError> {
    let _one_at_a_time = shared.sync_lock.lock().unwrap_or_else(|e| e.into_inner());
    shared.check_poison()?;
    Counters::add(&shared.counters.syncs, 1);
    metrics::counter!(crate::telemetry::FSYNCS).increment(1);
    let started = std::time::Instant::now();
    let result = {
        let _unknown = shared.poison_on_unwind("fdatasync");
        file.sync_data()
    };
    metrics::histogram!(crate::telemetry::FSYNC_LATENCY).record(started.elapsed().as_secs_f64());
    result.map_err(|e| shared.poison_with(WalError::io("fdatasync", path)(e)))
}

/// Appends records to the log. Owned by the writer thread.
#[derive(Debug)]
pub struct LogWriter {
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: WalConfig,
    pub(crate) active: Active,
    next_offset: u64,
    /// Chain hash of the last record appended (tamper-evident stores).
    chain: Option<[u8; 32]>,
    buf: Vec<u8>,
    /// Records in `buf`.
    buf_records: u32,
    _lock: Box<dyn LockGuard>,
}

impl LogWriter {
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: WalConfig,
        active: Active,
        next_offset: u64,
        chain: Option<[u8; 32]>,
        lock: Box<dyn LockGuard>,
    ) -> Self {
        let buf = Vec::with_capacity(config.batch_bytes_max.min(1 << 20));
        LogWriter {
            shared,
            config,
            active,
            next_offset,
            chain,
            buf,
            buf_records: 0,
            _lock: lock,
        }
    }

    /// The offset the next appended record gets.
    pub fn next_offset(&self) -> Offset {
        Offset(self.next_offset)
    }

    /// Chain hash of the last record appended (`None` unless the store is tamper-evident).
    pub fn chain(&self) -> Option<[u8; 32]> {
        self.chain
    }

    /// Bytes encoded but not yet written.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Checks that a payload of `len` bytes may be appended, without appending it.
    pub fn check_size(&self, len: usize) -> Result<(), WalError> {
        // A record must also fit in an empty segment of this store's layout.
        let layout = self.shared.layout;
        let room = self.config.segment_bytes
            - ctxlog_format::layout::body_start(layout.chain_hash) as u64
            - layout.overhead() as u64;
        let max = self.config.record_bytes_max.min(room);
        if len as u64 > max {
            return Err(WalError::RecordTooLarge {
                len: len as u64,
                max,
            });
        }
        Ok(())
    }

    /// Encodes one record into the batch buffer and returns its offset. Nothing reaches the
    /// file until [`LogWriter::flush`], except when the segment is full: then the records
    /// buffered so far are written and synced, the segment is sealed and a new one created.
    pub fn append(&mut self, payload: &[u8]) -> Result<Offset, WalError> {
        self.shared.check_poison()?;
        self.check_size(payload.len())?;
        let layout = self.shared.layout;
        let frame_len = layout.frame_len(payload.len()) as u64;
        if self.active.pos + self.buf.len() as u64 + frame_len > self.active.capacity {
            self.rotate()?;
        }
        let offset = self.next_offset;
        let chain = self.chain.map(|prev| chain_next(&prev, offset, payload));
        // Size, offset and chain presence were checked above: the only ways an encode fails.
        encode_frame(&mut self.buf, layout, offset, chain.as_ref(), payload).map_err(|_| {
            WalError::RecordTooLarge {
                len: payload.len() as u64,
                max: self.config.record_bytes_max,
            }
        })?;
        self.next_offset += 1;
        self.buf_records += 1;
        self.chain = chain;
        Counters::add(&self.shared.counters.records, 1);
        Ok(Offset(offset))
    }

    /// Writes the buffered records with one write. Returns what was written, or `None` if
    /// nothing was buffered. A failure poisons the log.
    pub(crate) fn flush(&mut self) -> Result<Option<Written>, WalError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        self.shared.check_poison()?;
        let a = &mut self.active;
        let result = {
            let _unknown = self.shared.poison_on_unwind("write");
            a.file.write_all_at(&self.buf, a.pos)
        };
        if let Err(e) = result {
            self.buf.clear();
            return Err(self.shared.poison_with(WalError::io("write", &a.path)(e)));
        }
        a.pos += self.buf.len() as u64;
        let counters = &self.shared.counters;
        Counters::add(&counters.writes, 1);
        Counters::add(&counters.bytes, self.buf.len() as u64);
        metrics::counter!(crate::telemetry::LOG_BYTES).increment(self.buf.len() as u64);
        metrics::histogram!(crate::telemetry::BATCH_RECORDS).record(self.buf_records as f64);
        self.buf_records = 0;
        self.buf.clear();
        Ok(Some(Written {
            file: Arc::clone(&a.file),
            path: a.path.clone(),
            segment_first: a.first,
            end: a.pos,
            last: self.next_offset - 1,
            chain: self.chain,
        }))
    }

    /// `fdatasync`s what was written; a failure poisons the log.
    pub(crate) fn sync(shared: &Shared, written: &Written) -> Result<(), WalError> {
        timed_sync(shared, &*written.file, &written.path)
    }

    /// Flushes and syncs everything appended so far, whether this call wrote it or an earlier
    /// flush did (at close, in `Batched` and `Never` modes, nothing else may have synced it).
    pub(crate) fn flush_and_sync(&mut self) -> Result<(), WalError> {
        self.flush()?;
        timed_sync(&self.shared, &*self.active.file, &self.active.path)
    }

    /// Writes and syncs what is buffered, seals the active segment and starts the next one.
    fn rotate(&mut self) -> Result<(), WalError> {
        let shared = Arc::clone(&self.shared);
        let result = {
            // A panic half-way leaves a segment sealed, or one created, that the table and
            // `active` do not know of.
            let _unknown = shared.poison_on_unwind("rotate");
            self.try_rotate()
        };
        result.map_err(|e| shared.poison_with(e))
    }

    fn try_rotate(&mut self) -> Result<(), WalError> {
        self.flush()?;
        let a = &self.active;
        timed_sync(&self.shared, &*a.file, &a.path)?;
        seal_segment(&a.path, &*a.file, a.pos)?;
        timed_sync(&self.shared, &*a.file, &a.path)?;
        let map = a.file.map().map_err(WalError::io("map", &a.path))?;
        let first = self.next_offset;
        let capacity = self.config.segment_bytes;
        let shared = &self.shared;
        let (path, file) = create_segment(
            &*shared.storage,
            &shared.wal_dir,
            first,
            shared.store_id,
            capacity,
            self.chain,
            self.config.zero_fill(),
        )?;
        {
            let mut table = shared.write_table();
            if let Some(old) = table.segments.last_mut() {
                old.sealed = Some(map);
            }
            table.segments.push(SegmentEntry {
                first,
                path: path.clone(),
                file: Arc::clone(&file),
                sealed: None,
            });
        }
        tracing::debug!(segment = %path.display(), "rotated to a new segment");
        self.active = Active {
            first,
            path,
            file,
            capacity,
            pos: ctxlog_format::layout::body_start(shared.layout.chain_hash) as u64,
        };
        Ok(())
    }
}
