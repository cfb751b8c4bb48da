//! The whole engine driven by an arbitrary sequence of operations on `MemStorage`, checked
//! against a `BTreeMap` model after every step (after redb's `fuzz_redb`): creates, sets,
//! removes, deletes, multi-key commits, recovery points, restores, snapshots and compactions,
//! with clean reopens, crash images (power loss, torn writes, process kill) and I/O faults
//! (`EIO`/`ENOSPC`, once or for good, on any write, sync, directory sync, rename or open)
//! injected part-way.
//!
//! Checked: each operation succeeds or fails exactly as the model says (a failure writes
//! nothing); after an I/O error the log is poisoned (every later commit `Poisoned`) and the
//! commit that hit the error may or may not survive a reopen, nothing else is uncertain; after
//! every reopen and crash image, the store is exactly the model (every acknowledged commit, and
//! recovery points). Nothing panics.
#![no_main]

use arbitrary::Arbitrary;
use ctxlog::error::{Error, InvalidInput, RecoveryError};
use ctxlog::state::State;
use ctxlog::storage::{CrashMode, FaultKind, FaultOp, MemStorage};
use ctxlog::wal::WalError;
use ctxlog::{create_manager_with_config, At, Config, ContextManager, Offset, Update};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

#[derive(Arbitrary, Debug, Clone)]
enum FOp {
    Create(u8),
    Set {
        ctx: u8,
        key: u8,
        val: u16,
        big: bool,
    },
    Remove {
        ctx: u8,
        key: u8,
    },
    Delete(u8),
    Multi(Vec<(u8, u8, u16)>),
    Point(u8),
    Restore(u8),
    Snapshot,
    Compact,
    Reopen,
    Crash {
        mode: u8,
        seed: u64,
    },
    Fault {
        op: u8,
        nth: u8,
        enospc: bool,
        sticky: bool,
    },
}

type Contents = BTreeMap<String, BTreeMap<String, String>>;
type Points = BTreeMap<String, Contents>;

fn ctx(n: u8) -> String {
    format!("c{}", n % 4)
}
fn key(n: u8) -> String {
    format!("k{}", n % 6)
}
fn label(n: u8) -> String {
    format!("p{}", n % 4)
}
fn value(v: u16, big: bool) -> String {
    format!("{v}:{}", if big { "x".repeat(3000) } else { String::new() })
}

/// The refusals the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotFound,
    AlreadyExists,
    KeyNotFound,
    PointExists,
    UnknownPoint,
    Empty,
}

fn refusal(e: &Error) -> Option<Refusal> {
    Some(match e {
        Error::NotFound { .. } => Refusal::NotFound,
        Error::AlreadyExists { .. } => Refusal::AlreadyExists,
        Error::KeyNotFound { .. } => Refusal::KeyNotFound,
        Error::RecoveryPointExists { .. } => Refusal::PointExists,
        Error::UnknownRecoveryPoint { .. } => Refusal::UnknownPoint,
        Error::InvalidInput(InvalidInput::EmptyUpdate) => Refusal::Empty,
        _ => return None,
    })
}

#[derive(Debug, Clone, Default)]
struct Model {
    live: Contents,
    points: Points,
}

impl Model {
    /// The model after `op` commits, or the refusal.
    fn after(&self, op: &FOp) -> Result<Model, Refusal> {
        let mut next = self.clone();
        let live = |m: &Model, c: &str| m.live.contains_key(c);
        match op {
            FOp::Create(c) => {
                if live(self, &ctx(*c)) {
                    return Err(Refusal::AlreadyExists);
                }
                next.live.insert(ctx(*c), BTreeMap::new());
            }
            FOp::Set {
                ctx: c,
                key: k,
                val,
                big,
            } => {
                let m = next.live.get_mut(&ctx(*c)).ok_or(Refusal::NotFound)?;
                m.insert(key(*k), value(*val, *big));
            }
            FOp::Remove { ctx: c, key: k } => {
                let m = next.live.get_mut(&ctx(*c)).ok_or(Refusal::NotFound)?;
                m.remove(&key(*k)).ok_or(Refusal::KeyNotFound)?;
            }
            FOp::Delete(c) => {
                next.live.remove(&ctx(*c)).ok_or(Refusal::NotFound)?;
            }
            FOp::Multi(sets) => {
                if sets.is_empty() {
                    return Err(Refusal::Empty);
                }
                for (c, k, v) in sets.iter().take(4) {
                    let m = next.live.get_mut(&ctx(*c)).ok_or(Refusal::NotFound)?;
                    m.insert(key(*k), value(*v, false));
                }
            }
            FOp::Point(l) => {
                if self.points.contains_key(&label(*l)) {
                    return Err(Refusal::PointExists);
                }
                next.points.insert(label(*l), self.live.clone());
            }
            FOp::Restore(l) => {
                next.live = self
                    .points
                    .get(&label(*l))
                    .ok_or(Refusal::UnknownPoint)?
                    .clone();
            }
            _ => unreachable!("not a commit"),
        }
        Ok(next)
    }
}

fn contents(s: &State) -> Contents {
    s.contexts()
        .map(|(n, c)| {
            let values = c
                .values()
                .map(|(k, v)| (k.to_string(), v.decode::<String>().expect("a string")));
            (n.to_string(), values.collect())
        })
        .collect()
}

fn config(mem: &MemStorage) -> Config {
    let mut c = Config::new("store");
    c.storage = Arc::new(mem.clone());
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 16 * 1024;
    c.snapshot_every_commits = None;
    c.snapshot_every_bytes = None;
    c.snapshots_kept = 2;
    c
}

async fn commit(m: &ContextManager, op: &FOp) -> ctxlog::Result<()> {
    match op {
        FOp::Create(c) => m.create(&ctx(*c)).await.map(drop),
        FOp::Set {
            ctx: c,
            key: k,
            val,
            big,
        } => m
            .set(&ctx(*c), &key(*k), &value(*val, *big))
            .await
            .map(drop),
        FOp::Remove { ctx: c, key: k } => m.remove(&ctx(*c), &key(*k)).await.map(drop),
        FOp::Delete(c) => m.delete(&ctx(*c)).await.map(drop),
        FOp::Multi(sets) => {
            let mut u = Update::new();
            for (c, k, v) in sets.iter().take(4) {
                u = u.set(ctx(*c), key(*k), &value(*v, false))?;
            }
            m.update(u).await.map(drop)
        }
        FOp::Point(l) => m.create_recovery_point(&label(*l)).await.map(drop),
        FOp::Restore(l) => m.restore(At::Label(label(*l))).await.map(drop),
        _ => unreachable!("not a commit"),
    }
}

/// The model and what is uncertain about it.
struct Run {
    model: Model,
    /// The model if the commit that hit an I/O error survived (it may, or not).
    maybe: Option<Model>,
    /// `Some(true)` once a commit failed with an I/O error; `None` when unknown (a compaction
    /// failed: its own commit or its segment removal).
    poisoned: Option<bool>,
    /// A fault was injected since the last reopen.
    faulted: bool,
    /// The offset the commit that hit an I/O error would have had.
    uncertain_offset: Option<u64>,
}

/// Opens and checks the store against the model.
async fn open(mem: &MemStorage, run: &mut Run, what: &str) -> ContextManager {
    let m = match create_manager_with_config(config(mem)).await {
        Ok(m) => m,
        Err(e) => panic!("{what}: reopen failed: {e:?}"),
    };
    let got = contents(&m.state());
    let points: Vec<String> = m.recovery_points().into_keys().collect();
    let matches = |c: &Model| got == c.live && points.iter().eq(c.points.keys());
    if !matches(&run.model) {
        match run.maybe.take() {
            Some(maybe) if matches(&maybe) => run.model = maybe,
            maybe => panic!(
                "{what}: reopened store differs from the model\n engine {got:?} {points:?}\n model {:?}\n or {maybe:?}",
                run.model
            ),
        }
    }
    run.maybe = None;
    run.uncertain_offset = None;
    run.poisoned = Some(false);
    run.faulted = false;
    m
}

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

async fn drive(ops: Vec<FOp>) {
    let mut mem = MemStorage::new();
    let mut run = Run {
        model: Model::default(),
        maybe: None,
        poisoned: Some(false),
        faulted: false,
        uncertain_offset: None,
    };
    let mut m = open(&mem, &mut run, "first open").await;
    for (i, op) in ops.into_iter().take(96).enumerate() {
        let what = format!("step {i} {op:?}");
        match &op {
            FOp::Snapshot => match m.snapshot_now().await {
                Ok(_) => {}
                Err(Error::Recovery(RecoveryError::SnapshotIo { .. })) if run.faulted => {}
                Err(e) => panic!("{what}: {e:?}"),
            },
            FOp::Compact => {
                let next_offset = m.last_offset().0 + 1;
                match m.compact(Offset(u64::MAX)).await {
                    // Nothing to remove: nothing recorded either.
                    Ok(removed) if removed.is_empty() => {}
                    Ok(_) => {
                        assert_ne!(
                            run.poisoned,
                            Some(true),
                            "{what}: compaction recorded after the poison"
                        );
                    }
                    Err(Error::Persistence(WalError::Poisoned { .. }))
                        if run.poisoned != Some(false) => {}
                    Err(
                        Error::Persistence(WalError::Io { .. })
                        | Error::Recovery(RecoveryError::SnapshotIo { .. }),
                    ) if run.faulted => {
                        if run.poisoned == Some(false) {
                            run.poisoned = None;
                            // Its Compacted commit may have hit the error: uncertain too (it
                            // changes no content).
                            run.maybe = Some(run.model.clone());
                            run.uncertain_offset = Some(next_offset);
                        }
                    }
                    Err(e) => panic!("{what}: {e:?}"),
                }
            }
            FOp::Reopen => {
                m.close().await.expect("close");
                mem.clear_faults();
                m = open(&mem, &mut run, &what).await;
            }
            FOp::Crash { mode, seed } => {
                let mode = match mode % 3 {
                    0 => CrashMode::DropUnsynced,
                    1 => CrashMode::Torn(*seed),
                    _ => CrashMode::ProcessKill,
                };
                let image = mem.crash_image(mode);
                m.close().await.expect("close");
                mem = image;
                m = open(&mem, &mut run, &what).await;
            }
            FOp::Fault {
                op,
                nth,
                enospc,
                sticky,
            } => {
                let op = [
                    FaultOp::Write,
                    FaultOp::Sync,
                    FaultOp::SyncDir,
                    FaultOp::Rename,
                    FaultOp::Open,
                ][*op as usize % 5];
                let kind = if *enospc {
                    FaultKind::Enospc
                } else {
                    FaultKind::Eio
                };
                mem.inject(op, 1 + u64::from(*nth % 16), kind, *sticky);
                run.faulted = true;
            }
            op => {
                let expected = run.model.after(op);
                let next_offset = m.last_offset().0 + 1;
                let got = commit(&m, op).await;
                match (got, expected) {
                    (Ok(()), Ok(next)) => {
                        assert_ne!(
                            run.poisoned,
                            Some(true),
                            "{what}: committed after the poison"
                        );
                        run.poisoned = Some(false);
                        run.model = next;
                    }
                    (Err(Error::Persistence(WalError::Poisoned { .. })), _) => {
                        assert_ne!(
                            run.poisoned,
                            Some(false),
                            "{what}: poisoned without a cause"
                        );
                        run.poisoned = Some(true);
                    }
                    (Err(Error::Persistence(WalError::Io { .. })), Ok(next)) if run.faulted => {
                        assert_ne!(
                            run.poisoned,
                            Some(true),
                            "{what}: an I/O error after the poison"
                        );
                        run.poisoned = Some(true);
                        run.maybe = Some(next);
                        run.uncertain_offset = Some(next_offset);
                    }
                    // A restore reads a snapshot first: a fault there fails it before any write.
                    (Err(Error::Recovery(RecoveryError::SnapshotIo { .. })), Ok(_))
                        if run.faulted && matches!(op, FOp::Restore(_)) => {}
                    (Err(e), Err(want)) if refusal(&e) == Some(want) => {}
                    (got, want) => panic!("{what}: engine {got:?}, model {want:?}"),
                }
            }
        }
        // Reads never see a commit that failed.
        let live = contents(&m.state());
        assert_eq!(
            live, run.model.live,
            "{what}: live state differs from the model"
        );
    }
    m.close().await.expect("close");
}

fuzz_target!(|ops: Vec<FOp>| {
    rt().block_on(drive(ops));
});
