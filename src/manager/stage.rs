//! The commit pipeline's two halves: [`CommitStage`] on the writer thread (checks expected
//! versions, turns operations into events against the working state, encodes the commit) and
//! [`CommitCompleter`] on the completion thread (publishes state once durable, acknowledges).
//! Checks and offsets are assigned in one place, in order, so two commits can never both pass
//! a check against the same version.

use super::hub::{Counters, Hub, LiveCommit};
use super::ops::{Action, Op, Receipt, Update};
use crate::error::{Error, Result};
use crate::event::{Commit, Event, SCHEMA_VERSION};
use crate::offset::Offset;
use crate::state::{ApplyError, Stamp, State};
use crate::wal::{now_ms, Completer, LogWriter, Reached, Stage, WalError};
use std::collections::BTreeMap;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use tokio::sync::oneshot;

pub(crate) type Reply = oneshot::Sender<Result<Receipt>>;

/// One commit on its way to the writer.
pub(crate) struct Request {
    pub actions: Vec<Action>,
    pub expect: BTreeMap<String, Offset>,
    pub reply: Reply,
    pub submitted: std::time::Instant,
}

impl Request {
    pub fn new(update: Update, reply: Reply) -> Request {
        Request {
            actions: update.ops.into_iter().map(Action::Op).collect(),
            expect: update.expect,
            reply,
            submitted: std::time::Instant::now(),
        }
    }
}

/// Waits for its batch to be durable.
pub(crate) struct Ack {
    reply: Reply,
    receipt: Receipt,
    state: State,
    events: u64,
    bytes: u64,
    submitted: std::time::Instant,
    commit: Arc<Commit>,
}

pub(crate) struct CommitStage {
    /// State after every commit the writer accepted (published or not yet durable).
    state: State,
    buf: Vec<u8>,
    schemas: crate::schema::SchemaCache,
}

impl CommitStage {
    pub fn new(state: State) -> Self {
        CommitStage {
            state,
            buf: Vec::with_capacity(4096),
            schemas: Default::default(),
        }
    }

    fn build(&mut self, request: &Request, stamp: Stamp) -> Result<(State, Vec<Event>)> {
        for (context, &expected) in &request.expect {
            let actual = self.state.version(context);
            if actual != expected {
                return Err(Error::VersionConflict {
                    context: context.clone(),
                    expected,
                    actual,
                });
            }
        }
        let mut scratch = self.state.clone();
        let mut events = Vec::new();
        for action in &request.actions {
            if let Action::Schema(context, Some(schema)) = action {
                crate::schema::compile(context, schema)?;
            }
            for event in events_for(action, &scratch)? {
                scratch.apply(stamp, &event).map_err(apply_error)?;
                events.push(event);
            }
        }
        // Every context the commit touches must still satisfy its schema.
        let mut touched: Vec<&str> = events.iter().filter_map(Event::context).collect();
        touched.sort_unstable();
        touched.dedup();
        for name in touched {
            if let Some(context) = scratch.context(name) {
                self.schemas.check(name, context)?;
            }
        }
        Ok((scratch, events))
    }
}

fn apply_error(e: ApplyError) -> Error {
    match e {
        ApplyError::NotFound(context) => Error::NotFound { context },
        ApplyError::AlreadyExists(context) => Error::AlreadyExists { context },
        ApplyError::KeyNotFound(context, key) => Error::KeyNotFound { context, key },
        ApplyError::PointExists(label, offset) => Error::RecoveryPointExists { label, offset },
    }
}

/// The events one action stands for, checked against `state` (the state before it).
fn events_for(action: &Action, state: &State) -> Result<Vec<Event>> {
    let live = |c: &String| match state.context(c) {
        Some(_) => Ok(()),
        None => Err(Error::NotFound { context: c.clone() }),
    };
    let event = match action {
        Action::Op(op) => match op.clone() {
            Op::Create { context, labels } => Event::ContextCreated { context, labels },
            Op::Set {
                context,
                key,
                value,
            } => Event::ValueSet {
                context,
                key,
                value: serde_bytes::ByteBuf::from(value.as_bytes().to_vec()),
            },
            Op::Remove { context, key } => Event::ValueRemoved { context, key },
            Op::Meta {
                context,
                set,
                removed,
            } => Event::MetadataChanged {
                context,
                set,
                removed,
            },
            Op::Delete { context } => Event::ContextDeleted { context },
        },
        Action::Activate(c) => Event::Activated { context: c.clone() },
        Action::Deactivate(c) => {
            if state.context_any(c).is_none() {
                return Err(Error::NotFound { context: c.clone() });
            }
            Event::Deactivated { context: c.clone() }
        }
        Action::Switch(to) => {
            live(to)?;
            let from = state.current().filter(|f| *f != to).map(str::to_string);
            Event::Switched {
                from,
                to: to.clone(),
            }
        }
        Action::SetDefault(c) => Event::DefaultChanged { context: c.clone() },
        Action::Point(label) => Event::RecoveryPointCreated {
            label: label.clone(),
        },
        Action::Restore(target) => return Ok(state.restore_events(target)),
        Action::Compacted(before) => Event::Compacted { before: *before },
        Action::AckConsumer(_, offset) if *offset > state.offset() => {
            return Err(Error::OffsetOutOfRange {
                requested: *offset,
                first: Offset::ZERO,
                last: state.offset(),
            })
        }
        Action::AckConsumer(consumer, offset) => Event::ConsumerAcked {
            consumer: consumer.clone(),
            offset: *offset,
        },
        Action::Schema(context, Some(schema)) => Event::SchemaAttached {
            context: context.clone(),
            schema: schema.clone(),
        },
        Action::Schema(context, None) => Event::SchemaRemoved {
            context: context.clone(),
        },
    };
    Ok(vec![event])
}

impl Stage for CommitStage {
    type Request = Request;
    type Ack = Ack;

    fn prepare(&mut self, request: Request, log: &mut LogWriter) -> Option<Ack> {
        let offset = log.next_offset();
        let stamp = Stamp {
            offset,
            ts_ms: now_ms(),
        };
        let (mut state, events) = match self.build(&request, stamp) {
            Ok(built) => built,
            Err(e) => {
                metrics::counter!(crate::telemetry::COMMITS_REJECTED).increment(1);
                let _ = request.reply.send(Err(e));
                return None;
            }
        };
        let commit = Commit {
            v: SCHEMA_VERSION,
            ts: stamp.ts_ms,
            events,
        };
        self.buf.clear();
        commit.encode_into(&mut self.buf);
        if let Err(e) = log.append(&self.buf) {
            metrics::counter!(crate::telemetry::COMMITS_REJECTED).increment(1);
            let _ = request.reply.send(Err(e.into()));
            return None;
        }
        state.set_offset(offset);
        state.set_chain(log.chain());
        self.state = state.clone();
        let versions = commit
            .events
            .iter()
            .filter_map(Event::context)
            .filter_map(|c| {
                let v = self.state.version(c);
                (v == offset).then(|| (c.to_string(), v))
            })
            .collect();
        Some(Ack {
            reply: request.reply,
            receipt: Receipt {
                offset,
                versions,
                durability: Reached::Synced,
            },
            state,
            events: commit.events.len() as u64,
            bytes: self.buf.len() as u64,
            submitted: request.submitted,
            commit: Arc::new(commit),
        })
    }

    fn refuse(&mut self, request: Request, error: WalError) {
        let _ = request.reply.send(Err(error.into()));
    }
}

pub(crate) struct CommitCompleter {
    pub hub: Arc<Hub>,
    pub snapshots: SnapshotTrigger,
}

/// Decides when the completion thread hands a state to the snapshot thread.
pub(crate) struct SnapshotTrigger {
    pub every_commits: Option<u64>,
    pub every_bytes: Option<u64>,
    /// [`Config::snapshot_at_close`](crate::Config::snapshot_at_close).
    pub at_close: bool,
    pub commits: u64,
    pub bytes: u64,
    pub tx: Option<SyncSender<Arc<State>>>,
}

/// Fraction of a snapshot interval past which close writes a snapshot.
const AT_CLOSE_FRACTION: u64 = 16;

impl SnapshotTrigger {
    /// True once the log since the last snapshot holds `1 / fraction` of an interval.
    fn past(&self, fraction: u64) -> bool {
        self.every_commits
            .is_some_and(|n| self.commits >= (n / fraction).max(1))
            || self
                .every_bytes
                .is_some_and(|n| self.bytes >= (n / fraction).max(1))
    }

    fn observe(&mut self, commits: u64, bytes: u64, hub: &Hub) {
        self.commits += commits;
        self.bytes += bytes;
        if !self.past(1) {
            return;
        }
        if let Some(tx) = &self.tx {
            // A snapshot still being written: try again after the next batch.
            if tx.try_send(hub.state()).is_ok() {
                self.commits = 0;
                self.bytes = 0;
            }
        }
    }

    /// At close: hands the last state to the snapshot thread (which writes it before it ends,
    /// and close waits for that) if the log since the last snapshot is long enough to matter.
    fn at_close(&mut self, hub: &Hub) {
        let worth = self.past(AT_CLOSE_FRACTION);
        if let Some(tx) = self.tx.take().filter(|_| self.at_close && worth) {
            // Blocks while a snapshot is being written; the thread ends after this one.
            let _ = tx.send(hub.state());
        }
    }
}

/// The completer is dropped once the pipeline has finished: every commit acknowledged, and
/// the log synced whatever the durability mode.
impl Drop for CommitCompleter {
    fn drop(&mut self) {
        self.snapshots.at_close(&self.hub);
    }
}

impl Completer for CommitCompleter {
    type Ack = Ack;

    fn complete(&mut self, acks: Vec<Ack>, result: std::result::Result<Reached, &WalError>) {
        let reached = match result {
            Ok(reached) => reached,
            Err(e) => {
                // A log that failed may hold less than the published state: no snapshot at close.
                self.snapshots.at_close = false;
                for ack in acks {
                    let _ = ack.reply.send(Err(e.clone_shallow().into()));
                }
                return;
            }
        };
        let Some(last) = acks.last() else { return };
        let touched: Vec<(String, Offset)> = acks
            .iter()
            .flat_map(|a| a.receipt.versions.iter().map(|(c, v)| (c.clone(), *v)))
            .collect();
        self.hub.publish(last.state.clone(), touched.into_iter());
        self.hub.broadcast(|| {
            acks.iter()
                .map(|a| LiveCommit {
                    offset: a.receipt.offset,
                    commit: Arc::clone(&a.commit),
                })
                .collect()
        });
        let counters = &self.hub.counters;
        let n = acks.len() as u64;
        let latency = metrics::histogram!(crate::telemetry::COMMIT_LATENCY);
        let events: u64 = acks.iter().map(|a| a.events).sum();
        let bytes: u64 = acks.iter().map(|a| a.bytes).sum();
        // Count before acknowledging, so that stats() never lags an acknowledged commit.
        Counters::add(&counters.commits, n);
        Counters::add(&counters.events, events);
        metrics::counter!(crate::telemetry::COMMITS).increment(n);
        metrics::counter!(crate::telemetry::EVENTS).increment(events);
        for ack in acks {
            latency.record(ack.submitted.elapsed().as_secs_f64());
            let mut receipt = ack.receipt;
            receipt.durability = reached;
            let _ = ack.reply.send(Ok(receipt));
        }
        self.snapshots.observe(n, bytes, &self.hub);
    }
}
