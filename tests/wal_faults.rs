//! I/O error injection on `MemStorage`: every write, sync, directory sync, open and rename of a
//! small scenario (appends across two rotations, or the creation of a new store) fails in turn
//! with `EIO` and with `ENOSPC`, once or for good. The fault points are enumerated with
//! `op_count` from a fault-free dry run.
//!
//! Checked each time: the failing call gets a typed error (`WalError::Io` with the injected OS
//! error), every later append gets `WalError::Poisoned`, nothing panics, and the power-loss and
//! process-kill images (and the live store, reopened) hold every acknowledged record, nothing
//! else but the failed one, and take new appends.

use ctxlog::storage::{CrashMode, FaultKind, FaultOp, MemStorage};
use ctxlog::wal::{Durability, Wal, WalConfig, WalError};
use ctxlog::Offset;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

const DIR: &str = "store";
/// Appends of the scenario: about 21 records of ~3 KiB fill a 64 KiB segment, so 50 appends
/// rotate twice.
const APPENDS: usize = 50;
const OPS: [FaultOp; 5] = [
    FaultOp::Write,
    FaultOp::Sync,
    FaultOp::SyncDir,
    FaultOp::Open,
    FaultOp::Rename,
];
const KINDS: [(FaultKind, i32); 2] = [(FaultKind::Eio, 5), (FaultKind::Enospc, 28)];

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 * 1024,
        record_bytes_max: 8192,
        durability: Durability::Always,
        ..WalConfig::default()
    }
}

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("record {i}:").into_bytes();
    p.resize(3000 + i, b'a' + (i % 26) as u8);
    p
}

fn counts(mem: &MemStorage) -> BTreeMap<String, u64> {
    OPS.iter()
        .map(|&op| (format!("{op:?}"), mem.op_count(op)))
        .collect()
}

fn open(mem: &MemStorage) -> Result<Wal, WalError> {
    Wal::open(Arc::new(mem.clone()), Path::new(DIR), config())
}

fn read_all(wal: &Wal, ctx: &str) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    wal.reader()
        .scan(Offset(1), Offset(u64::MAX), |r| {
            out.push((r.offset.0, r.payload.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap_or_else(|e| panic!("{ctx}: scan failed: {e}"));
    out
}

/// What the scenario saw: how many appends were acknowledged, and the errors after that.
struct Outcome {
    acked: usize,
    errors: Vec<WalError>,
}

/// Appends `APPENDS` payloads one after the other. Acks must come first, in order, each at
/// the next offset; once an append fails, no later one may succeed.
fn scenario(wal: &Wal, ctx: &str) -> Outcome {
    let mut out = Outcome {
        acked: 0,
        errors: Vec::new(),
    };
    for i in 0..APPENDS {
        match wal.append_blocking(payload(i)) {
            Ok(a) => {
                assert!(
                    out.errors.is_empty(),
                    "{ctx}: append {i} succeeded after a failure: {:?}",
                    out.errors
                );
                assert_eq!(a.offset, Offset(i as u64 + 1), "{ctx}: ack offset");
                out.acked += 1;
            }
            Err(e) => out.errors.push(e),
        }
    }
    out
}

/// The first error is the injected one, typed; every later one is `Poisoned` with its kind.
fn check_errors(errors: &[WalError], code: i32, ctx: &str) {
    let Some(WalError::Io { source, op, path }) = errors.first() else {
        panic!("{ctx}: first error is not WalError::Io: {errors:?}");
    };
    assert_eq!(
        source.raw_os_error(),
        Some(code),
        "{ctx}: {op} {}: wrong OS error {source}",
        path.display()
    );
    for e in &errors[1..] {
        match e {
            WalError::Poisoned { kind, .. } => assert_eq!(*kind, source.kind(), "{ctx}: {e}"),
            other => panic!("{ctx}: expected Poisoned after the failure, got {other:?}"),
        }
    }
}

/// Reopens `mem` and checks it holds the `acked` first records, at most the one that failed
/// after them, nothing else; then that it takes an append at the next offset.
fn check_reopen(mem: &MemStorage, acked: usize, ctx: &str) {
    let wal = open(mem).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    let recs = read_all(&wal, ctx);
    assert!(
        (acked..=acked + 1).contains(&recs.len()),
        "{ctx}: {} records after reopen, {acked} acknowledged",
        recs.len()
    );
    for (i, (off, p)) in recs.iter().enumerate() {
        assert_eq!(*off, i as u64 + 1, "{ctx}: offset gap");
        assert!(
            *p == payload(i),
            "{ctx}: offset {off} holds the wrong bytes"
        );
    }
    let next = recs.len() as u64 + 1;
    let a = wal
        .append_blocking(b"after".to_vec())
        .unwrap_or_else(|e| panic!("{ctx}: append after reopen failed: {e}"));
    assert_eq!(a.offset, Offset(next), "{ctx}: offset after reopen");
    wal.close();
}

/// Ops the scenario makes after open, per kind, from a fault-free run.
fn dry_run_appends() -> BTreeMap<String, u64> {
    let mem = MemStorage::new();
    let wal = open(&mem).expect("dry run: open");
    let before = counts(&mem);
    let out = scenario(&wal, "dry run");
    assert_eq!(out.acked, APPENDS, "dry run failed: {:?}", out.errors);
    let after = counts(&mem);
    wal.close();
    let reopened = open(&mem).expect("dry run: reopen");
    assert_eq!(
        reopened.recovery_report().segments,
        3,
        "dry run rotates twice"
    );
    reopened.close();
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before[k]))
        .collect()
}

#[test]
fn every_append_fault_point_fails_typed_poisons_and_recovers() {
    let points = dry_run_appends();
    // The scenario makes every kind of call the append path has: writes and syncs of records,
    // and the open, preallocation, syncs and directory sync of two new segments.
    assert!(points["Write"] > APPENDS as u64, "{points:?}");
    assert!(points["Sync"] > APPENDS as u64, "{points:?}");
    assert_eq!(points["Open"], 2, "{points:?}");
    assert_eq!(points["SyncDir"], 2, "{points:?}");
    let mut cases = 0;
    for op in OPS {
        for (kind, code) in KINDS {
            for sticky in [false, true] {
                for k in 1..=points[&format!("{op:?}")] {
                    let ctx = format!("{op:?} call #{k} fails with {kind:?} (sticky: {sticky})");
                    let mem = MemStorage::new();
                    let wal = open(&mem).unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
                    mem.inject(op, k, kind, sticky);
                    let out = scenario(&wal, &ctx);
                    assert!(!out.errors.is_empty(), "{ctx}: the fault never surfaced");
                    check_errors(&out.errors, code, &ctx);
                    // Still poisoned after the scenario, whatever else happened.
                    let again = wal.append_blocking(b"x".to_vec());
                    assert!(
                        matches!(again, Err(WalError::Poisoned { .. })),
                        "{ctx}: {again:?}"
                    );
                    wal.close();
                    for mode in [CrashMode::DropUnsynced, CrashMode::ProcessKill] {
                        let img = mem.crash_image(mode);
                        check_reopen(&img, out.acked, &format!("{ctx}, {mode:?} image"));
                    }
                    // The store itself, reopened as the Poisoned error advises.
                    mem.clear_faults();
                    check_reopen(&mem, out.acked, &format!("{ctx}, live store"));
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 400, "only {cases} fault cases ran");
}

/// Ops opening a new store makes, per kind, from a fault-free run.
fn dry_run_create() -> BTreeMap<String, u64> {
    let mem = MemStorage::new();
    let wal = open(&mem).expect("dry run: open");
    let points = counts(&mem);
    wal.close();
    points
}

/// Injects a fault at every call of creating a new store; open must fail typed, and every
/// image (and the live store) must then open as an empty store.
fn create_faults(skip: impl Fn(FaultOp, u64) -> bool) -> usize {
    let points = dry_run_create();
    assert!(points["Write"] >= 2 && points["Open"] >= 1, "{points:?}");
    let mut cases = 0;
    for op in OPS {
        for (kind, code) in KINDS {
            for k in 1..=points[&format!("{op:?}")] {
                if skip(op, k) {
                    continue;
                }
                let ctx = format!("creating a store, {op:?} call #{k} fails with {kind:?}");
                let mem = MemStorage::new();
                mem.inject(op, k, kind, false);
                match open(&mem) {
                    Ok(_) => panic!("{ctx}: open succeeded"),
                    Err(e) => check_errors(&[e], code, &ctx),
                }
                for mode in [CrashMode::DropUnsynced, CrashMode::ProcessKill] {
                    let img = mem.crash_image(mode);
                    check_reopen(&img, 0, &format!("{ctx}, {mode:?} image"));
                }
                mem.clear_faults();
                check_reopen(&mem, 0, &format!("{ctx}, live store"));
                cases += 1;
            }
        }
    }
    cases
}

/// The first `Write` of creating a store is the first segment's header.
fn is_header_write(op: FaultOp, k: u64) -> bool {
    op == FaultOp::Write && k == 1
}

#[test]
fn every_create_fault_point_fails_typed_and_recovers() {
    let cases = create_faults(is_header_write);
    assert!(cases >= 8, "only {cases} fault cases ran");
}

#[test]
fn failed_header_write_of_a_new_store_recovers() {
    let cases = create_faults(|op, k| !is_header_write(op, k));
    assert_eq!(cases, 2, "EIO and ENOSPC on the header write");
}

#[test]
fn sticky_full_disk_refuses_everything_without_panic() {
    // A disk that is full for good: every later append is refused, closing does not hang or
    // panic, and what was acknowledged survives a power loss.
    let mem = MemStorage::new();
    let wal = open(&mem).expect("open");
    for i in 0..5 {
        wal.append_blocking(payload(i))
            .expect("append before the fault");
    }
    for op in [
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::Open,
        FaultOp::SyncDir,
    ] {
        mem.inject(op, 1, FaultKind::Enospc, true);
    }
    let errors: Vec<WalError> = (5..40)
        .map(|i| {
            wal.append_blocking(payload(i))
                .expect_err("append on a full disk")
        })
        .collect();
    check_errors(&errors, 28, "sticky ENOSPC");
    wal.close();
    check_reopen(
        &mem.crash_image(CrashMode::DropUnsynced),
        5,
        "sticky ENOSPC",
    );
}

/// A closed store of 30 records over two segments whose active segment ends in a torn frame
/// (written durably by hand): open has to zero the torn bytes.
fn store_with_torn_tail() -> MemStorage {
    let mem = MemStorage::new();
    let wal = open(&mem).expect("open");
    for i in 0..30 {
        wal.append_blocking(payload(i)).expect("append");
    }
    let mut last = None;
    wal.reader()
        .scan(Offset(30), Offset(30), |r| {
            let end = r.position + 16 + r.payload.len() as u64;
            last = Some((r.file.to_path_buf(), end));
            ControlFlow::Continue(())
        })
        .expect("scan");
    wal.close();
    let (file, end) = last.expect("record 30");
    let mut frame = Vec::new();
    ctxlog_format::encode_frame(
        &mut frame,
        ctxlog_format::FrameLayout::default(),
        31,
        None,
        &[0xAB; 200],
    )
    .expect("encode");
    mem.corrupt(&file, end, &frame[..120]).expect("tear");
    mem
}

/// Injects a fault at every call of opening a store with a torn tail (but those `skip`
/// excludes); open must fail typed, then every image and the live store must open with the
/// 30 records. Returns the number of cases run.
fn repair_faults(skip: impl Fn(FaultOp, u64) -> bool) -> usize {
    let dry = store_with_torn_tail();
    let before = counts(&dry);
    let wal = open(&dry).expect("dry run: reopen");
    assert!(
        wal.recovery_report().torn_tail.is_some(),
        "dry run: no torn tail"
    );
    let after = counts(&dry);
    wal.close();
    let mut cases = 0;
    for op in OPS {
        let n = after[&format!("{op:?}")] - before[&format!("{op:?}")];
        for (kind, code) in KINDS {
            for k in (1..=n).filter(|&k| !skip(op, k)) {
                let ctx = format!("repairing a torn tail, {op:?} call #{k} fails with {kind:?}");
                let mem = store_with_torn_tail();
                mem.inject(op, k, kind, false);
                match open(&mem) {
                    Ok(_) => panic!("{ctx}: open succeeded"),
                    Err(e) => check_errors(&[e], code, &ctx),
                }
                for mode in [CrashMode::DropUnsynced, CrashMode::ProcessKill] {
                    check_reopen(&mem.crash_image(mode), 30, &format!("{ctx}, {mode:?}"));
                }
                mem.clear_faults();
                check_reopen(&mem, 30, &format!("{ctx}, live store"));
                cases += 1;
            }
        }
    }
    cases
}

#[test]
fn every_fault_point_of_torn_tail_repair_fails_typed_and_recovers() {
    let cases = repair_faults(|op, _| op == FaultOp::Write);
    assert!(cases >= 2, "only {cases} fault cases ran");
}

#[test]
fn failed_write_while_zeroing_a_torn_tail_recovers() {
    let cases = repair_faults(|op, _| op != FaultOp::Write);
    assert!(cases >= 2, "only {cases} fault cases ran");
}
