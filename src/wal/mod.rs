//! The write-ahead log: segments of checksummed records, group commit, recovery.
//!
//! ```text
//! DIR/LOCK                      exclusive lock of the process that has the store open
//! DIR/wal/<first-offset>.seg    segments, named by their first offset (20 digits)
//! ```
//!
//! [`Wal`] is the log on its own: append payloads, read them back. The context engine drives
//! the same pieces ([`LogWriter`], [`GroupCommit`], [`LogReader`]) with its own [`Stage`], so
//! that optimistic-concurrency checks and offset assignment happen on the writer thread.

mod ahead;
mod batch;
mod config;
mod error;
mod group;
mod reader;
mod recovery;
mod repair;
mod scan;
mod segment;
mod shared;
mod writer;

pub use batch::RecordBatch;
pub use config::{Durability, Preallocate, Reached, RecoveryMode, WalConfig};
pub use error::WalError;
pub use group::{Completer, GroupCommit, Stage};
pub use reader::{LogReader, Record};
pub use recovery::{DroppedReport, RecoveryReport, TornTailReport};
pub use segment::{now_ms, parse_segment_name, segment_name};
pub use shared::WalStats;
pub use writer::LogWriter;

use crate::offset::Offset;
use crate::storage::Storage;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Opens (or creates) the log of the store in `dir`: takes `DIR/LOCK`, scans and checks every
/// segment, repairs a torn tail as `config.recovery` says. Returns the writer (for a
/// [`GroupCommit`]), a reader, and what recovery found.
pub fn open_log(
    storage: Arc<dyn Storage>,
    dir: &Path,
    config: WalConfig,
) -> Result<(LogWriter, LogReader, RecoveryReport), WalError> {
    let (writer, shared, report) = recovery::open_log(storage, dir, config)?;
    Ok((writer, LogReader { shared }, report))
}

/// An acknowledged append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The record's offset.
    pub offset: Offset,
    /// The durability it reached.
    pub reached: Reached,
}

type Reply = oneshot::Sender<Result<Appended, WalError>>;

/// A request to append one payload, or several as consecutive records.
pub struct AppendRequest {
    payloads: Payloads,
    reply: Reply,
}

enum Payloads {
    One(Vec<u8>),
    Batch(RecordBatch),
}

impl Payloads {
    fn batch(batch: RecordBatch) -> Result<Payloads, WalError> {
        if batch.is_empty() {
            return Err(WalError::EmptyBatch);
        }
        Ok(Payloads::Batch(batch))
    }
}

struct RecordStage;

impl Stage for RecordStage {
    type Request = AppendRequest;
    type Ack = (Offset, Reply);

    fn prepare(&mut self, request: AppendRequest, log: &mut LogWriter) -> Option<Self::Ack> {
        let appended = match &request.payloads {
            Payloads::One(payload) => log.append(payload),
            Payloads::Batch(batch) => {
                // Taken or refused whole: every size is checked before the first record is
                // encoded (a rotation inside the batch may still leave a prefix on disk).
                let checked = batch.iter().try_for_each(|p| log.check_size(p.len()));
                checked.and_then(|()| {
                    let first = log.next_offset();
                    batch.iter().try_for_each(|p| log.append(p).map(drop))?;
                    Ok(first)
                })
            }
        };
        match appended {
            Ok(offset) => Some((offset, request.reply)),
            Err(e) => {
                let _ = request.reply.send(Err(e));
                None
            }
        }
    }

    fn refuse(&mut self, request: AppendRequest, error: WalError) {
        let _ = request.reply.send(Err(error));
    }
}

struct RecordCompleter;

impl Completer for RecordCompleter {
    type Ack = (Offset, Reply);

    fn complete(&mut self, acks: Vec<Self::Ack>, result: Result<Reached, &WalError>) {
        for (offset, reply) in acks {
            let answer = match result {
                Ok(reached) => Ok(Appended { offset, reached }),
                Err(e) => Err(e.clone_shallow()),
            };
            // The appender may have gone (a dropped future): the record stays committed.
            let _ = reply.send(answer);
        }
    }
}

/// The log on its own: concurrent appends through group commit, reads from any offset.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ctxlog::storage::MemStorage;
/// use ctxlog::wal::{Wal, WalConfig};
/// use std::sync::Arc;
/// let wal = Wal::open(Arc::new(MemStorage::new()), "store".as_ref(), WalConfig::default())?;
/// let a = wal.append_blocking(b"first".to_vec())?;
/// assert_eq!(a.offset.0, 1);
/// let mut seen = Vec::new();
/// wal.reader().scan(a.offset, a.offset, |r| { seen.push(r.payload.to_vec()); std::ops::ControlFlow::Continue(()) })?;
/// assert_eq!(seen, [b"first".to_vec()]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Wal {
    commit: GroupCommit<AppendRequest>,
    reader: LogReader,
    report: RecoveryReport,
}

impl Wal {
    /// Opens (or creates) a log in `dir`.
    pub fn open(storage: Arc<dyn Storage>, dir: &Path, config: WalConfig) -> Result<Wal, WalError> {
        let (writer, reader, report) = open_log(storage, dir, config)?;
        let commit = GroupCommit::start(writer, RecordStage, RecordCompleter);
        Ok(Wal {
            commit,
            reader,
            report,
        })
    }

    /// What open found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// A reader over the log.
    pub fn reader(&self) -> LogReader {
        self.reader.clone()
    }

    /// Appends a payload; resolves once it reached the configured durability.
    pub async fn append(&self, payload: Vec<u8>) -> Result<Appended, WalError> {
        self.submit(Payloads::One(payload)).await
    }

    /// Appends a payload from a thread that is not running async code.
    pub fn append_blocking(&self, payload: Vec<u8>) -> Result<Appended, WalError> {
        self.submit_blocking(Payloads::One(payload))
    }

    /// Appends a batch's payloads as consecutive records with one request (bulk loads).
    /// Resolves to the first record's offset (the others follow it) once the batch reached the
    /// configured durability. The batch is taken or refused whole: every size is checked
    /// before the first record is encoded, and an empty batch is refused
    /// ([`WalError::EmptyBatch`]). It is not atomic on disk: a batch that crosses into a new
    /// segment has its first part written and synced by the rotation, so a failed rotation
    /// (an error returned) or a crash may leave a prefix of it in the log, as with separate
    /// appends.
    pub async fn append_batch(&self, batch: RecordBatch) -> Result<Appended, WalError> {
        self.submit(Payloads::batch(batch)?).await
    }

    /// [`Wal::append_batch`] from a thread that is not running async code.
    pub fn append_batch_blocking(&self, batch: RecordBatch) -> Result<Appended, WalError> {
        self.submit_blocking(Payloads::batch(batch)?)
    }

    async fn submit(&self, payloads: Payloads) -> Result<Appended, WalError> {
        let (reply, rx) = oneshot::channel();
        self.commit
            .submit(AppendRequest { payloads, reply })
            .await?;
        rx.await.map_err(|_| WalError::Closed)?
    }

    fn submit_blocking(&self, payloads: Payloads) -> Result<Appended, WalError> {
        let (reply, rx) = oneshot::channel();
        self.commit
            .submit_blocking(AppendRequest { payloads, reply })?;
        rx.blocking_recv().map_err(|_| WalError::Closed)?
    }

    /// Writes and syncs everything queued, then releases the store.
    pub fn close(self) {
        self.commit.close();
    }
}
