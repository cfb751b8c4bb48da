//! The log on real files (`FsStorage` in a temporary directory): the store lock (in one
//! process and across processes), reopening, rotation and the segment files, reading from
//! every offset, and what open does with damage: a torn tail, a flipped byte, a missing
//! segment, a foreign file; plus the refusals of oversized records and invalid configs.

use ctxlog::storage::FsStorage;
use ctxlog::wal::{Durability, RecoveryMode, TornTailReport, Wal, WalConfig, WalError};
use ctxlog::Offset;
use ctxlog_format::{encode_frame, CorruptionKind, FrameLayout};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const SEGMENT: u64 = 64 * 1024;
const FRAME_HEADER: u64 = 16;
/// Set in the environment of the re-executed test binary: the store it tries to open.
const PROBE_ENV: &str = "CTXLOG_WAL_LOCK_PROBE";
const EXIT_OK: i32 = 0;
const EXIT_LOCKED: i32 = 3;
const EXIT_OTHER: i32 = 4;

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: SEGMENT,
        record_bytes_max: 4096,
        ..WalConfig::default()
    }
}

fn recovering(recovery: RecoveryMode) -> WalConfig {
    WalConfig {
        recovery,
        ..config()
    }
}

fn open_with(dir: &Path, config: WalConfig) -> Result<Wal, WalError> {
    Wal::open(Arc::new(FsStorage), dir, config)
}

fn open(dir: &Path) -> Wal {
    open_with(dir, config()).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("record {i} ").into_bytes();
    p.resize(1500 + (i * 53) % 1500, b'a' + (i % 26) as u8);
    p
}

/// One record as read back: offset, payload, file, frame position.
type Rec = (u64, Vec<u8>, PathBuf, u64);

fn read_from(wal: &Wal, from: u64) -> Vec<Rec> {
    let mut out = Vec::new();
    wal.reader()
        .scan(Offset(from), Offset(u64::MAX), |r| {
            let rec = (
                r.offset.0,
                r.payload.to_vec(),
                r.file.to_path_buf(),
                r.position,
            );
            out.push(rec);
            ControlFlow::Continue(())
        })
        .expect("scan");
    out
}

fn check_records(recs: &[Rec], n: usize) {
    assert_eq!(recs.len(), n, "record count");
    for (i, (off, p, ..)) in recs.iter().enumerate() {
        assert_eq!(*off, i as u64 + 1);
        assert!(*p == payload(i), "payload of offset {off}");
    }
}

/// A store in `dir` with `n` records; returns the records with their files and positions.
fn build(dir: &Path, n: usize) -> Vec<Rec> {
    let wal = open(dir);
    for i in 0..n {
        let a = wal.append_blocking(payload(i)).expect("append");
        assert_eq!(a.offset, Offset(i as u64 + 1));
    }
    let recs = read_from(&wal, 1);
    wal.close();
    check_records(&recs, n);
    recs
}

fn end_of(rec: &Rec) -> u64 {
    rec.3 + FRAME_HEADER + rec.1.len() as u64
}

/// The segment files of `dir/wal`, sorted.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .expect("list wal/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

fn write_at(path: &Path, pos: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for damage");
    f.write_all_at(bytes, pos).expect("write damage");
    f.sync_all().expect("sync damage");
}

fn read_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn second_handle_in_process_is_locked_out_and_first_keeps_working() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let first = open(dir);
    first.append_blocking(payload(0)).expect("append");
    match open_with(dir, config()) {
        Err(WalError::Locked { path, holder }) => {
            assert_eq!(path, dir.join("LOCK"));
            let holder = holder.expect("the holder is recorded");
            let me = format!("pid={}", std::process::id());
            assert!(holder.contains(&me), "{holder}");
        }
        other => panic!("second open: expected Locked, got {other:?}"),
    }
    let a = first.append_blocking(payload(1)).expect("still appends");
    assert_eq!(a.offset, Offset(2));
    check_records(&read_from(&first, 1), 2);
    first.close();
    let again = open(dir);
    check_records(&read_from(&again, 1), 2);
    again.close();
}

/// Runs this test's binary again, as a second process that only tries to open `dir`.
fn probe(dir: &Path) -> (i32, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args(["--exact", "second_process_is_locked_out_until_close"])
        .args(["--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, dir)
        .output()
        .expect("run the probe");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().expect("the probe exited"), stderr)
}

#[test]
fn second_process_is_locked_out_until_close() {
    if let Some(dir) = std::env::var_os(PROBE_ENV) {
        // The probe: try to open and report how it went through the exit code.
        let code = match open_with(Path::new(&dir), config()) {
            Ok(wal) => {
                wal.close();
                EXIT_OK
            }
            Err(WalError::Locked { holder, .. }) => {
                eprintln!("probe: locked by {}", holder.unwrap_or_default().trim());
                EXIT_LOCKED
            }
            Err(e) => {
                eprintln!("probe: {e}");
                EXIT_OTHER
            }
        };
        std::process::exit(code);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let wal = open(dir);
    wal.append_blocking(payload(0)).expect("append");
    let (code, stderr) = probe(dir);
    assert_eq!(code, EXIT_LOCKED, "probe while held: {stderr}");
    let me = format!("locked by pid={}", std::process::id());
    assert!(stderr.contains(&me), "the probe names the holder: {stderr}");
    let a = wal.append_blocking(payload(1)).expect("still appends");
    assert_eq!(a.offset, Offset(2));
    wal.close();
    let (code, stderr) = probe(dir);
    assert_eq!(code, EXIT_OK, "probe after close: {stderr}");
    // The probe's open and close changed nothing.
    let wal = open(dir);
    check_records(&read_from(&wal, 1), 2);
    wal.close();
}

#[test]
fn rotation_files_reopen_and_reads_from_every_offset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let n = 120;
    let recs = build(dir, n);
    let segs = segments(dir);
    assert!(segs.len() >= 4, "{} segments", segs.len());
    let entries = std::fs::read_dir(dir.join("wal")).expect("list").count();
    assert_eq!(entries, segs.len(), "only segments in wal/");
    for (i, seg) in segs.iter().enumerate() {
        let name = seg.file_name().unwrap_or_default().to_string_lossy();
        let digits = name.strip_suffix(".seg").unwrap_or_default();
        assert_eq!(digits.len(), 20, "{name}");
        let first: u64 = digits.parse().unwrap_or_else(|_| panic!("{name}"));
        let in_seg: Vec<&Rec> = recs.iter().filter(|r| r.2 == *seg).collect();
        assert!(!in_seg.is_empty(), "{name} holds records");
        assert_eq!(in_seg[0].0, first, "{name} is named for its first record");
        let len = std::fs::metadata(seg).expect("stat").len();
        if i + 1 < segs.len() {
            let end = end_of(in_seg[in_seg.len() - 1]);
            assert_eq!(len, end, "sealed {name} is cut to its data");
        } else {
            assert_eq!(len, SEGMENT, "active {name} is preallocated");
        }
    }
    let wal = open(dir);
    let report = wal.recovery_report().clone();
    assert!(!report.created);
    assert_eq!(report.segments, segs.len());
    assert_eq!((report.records, report.last_offset), (n as u64, n as u64));
    assert_eq!(report.torn_tail, None);
    assert!(report.foreign_files.is_empty() && report.dropped.is_empty());
    let reread = read_from(&wal, 1);
    assert_eq!(reread, recs, "reopen keeps every record in place");
    for from in 1..=n as u64 + 1 {
        let suffix = &recs[from as usize - 1..];
        assert_eq!(read_from(&wal, from), suffix, "scan from {from}");
    }
    let a = wal.append_blocking(payload(n)).expect("append");
    assert_eq!(a.offset, Offset(n as u64 + 1));
    wal.close();
}

/// A store of 10 records (one segment) with the first 150 bytes of record 11's frame written
/// by hand after the last record. Returns the segment, where the torn frame starts, and its
/// bytes.
fn torn_store(dir: &Path) -> (PathBuf, u64, Vec<u8>) {
    let recs = build(dir, 10);
    let (seg, end) = (recs[9].2.clone(), end_of(&recs[9]));
    let mut frame = Vec::new();
    encode_frame(&mut frame, FrameLayout::default(), 11, None, &[0xAB; 300]).expect("encode");
    frame.truncate(150);
    write_at(&seg, end, &frame);
    (seg, end, frame)
}

#[test]
fn torn_tail_is_truncated_and_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (seg, end, torn) = torn_store(dir);
    let wal = open(dir);
    let expected = TornTailReport {
        file: seg.clone(),
        position: end,
        bytes_dropped: torn.len() as u64,
    };
    assert_eq!(wal.recovery_report().torn_tail, Some(expected));
    assert_eq!(wal.recovery_report().last_offset, 10);
    let bytes = read_file(&seg);
    assert!(bytes[end as usize..].iter().all(|&b| b == 0), "tail zeroed");
    check_records(&read_from(&wal, 1), 10);
    let a = wal.append_blocking(payload(10)).expect("append");
    assert_eq!(a.offset, Offset(11));
    wal.close();
    let wal = open(dir);
    assert_eq!(wal.recovery_report().torn_tail, None, "repaired for good");
    check_records(&read_from(&wal, 1), 11);
    wal.close();
}

#[test]
fn absolute_consistency_refuses_a_torn_tail_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (seg, end, _) = torn_store(dir);
    let before = read_file(&seg);
    match open_with(dir, recovering(RecoveryMode::AbsoluteConsistency)) {
        Err(WalError::TornTail { file, position }) => {
            assert_eq!((file, position), (seg.clone(), end));
        }
        other => panic!("expected TornTail, got {other:?}"),
    }
    assert!(read_file(&seg) == before, "the refused open wrote");
    // The default mode still repairs it, and the lock was released.
    let wal = open(dir);
    assert!(wal.recovery_report().torn_tail.is_some());
    wal.close();
}

/// A store of 120 records over several segments with one byte of record 5's payload flipped
/// (in the first, sealed, segment). Returns the damaged record.
fn flipped_store(dir: &Path) -> Rec {
    let recs = build(dir, 120);
    assert!(segments(dir).len() >= 3);
    let victim = recs[4].clone();
    assert_eq!(victim.2, segments(dir)[0], "record 5 is in segment 1");
    let at = victim.3 + FRAME_HEADER + 10;
    let byte = read_file(&victim.2)[at as usize];
    write_at(&victim.2, at, &[byte ^ 0x40]);
    victim
}

#[test]
fn flipped_byte_in_sealed_segment_is_corruption_naming_file_and_position() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let victim = flipped_store(dir);
    use RecoveryMode::{AbsoluteConsistency, TolerateCorruptedTail};
    for mode in [TolerateCorruptedTail, AbsoluteConsistency] {
        match open_with(dir, recovering(mode)) {
            Err(WalError::Corruption {
                file,
                position,
                offset,
                kind,
            }) => {
                let expected = (&victim.2, victim.3, 5);
                assert_eq!((&file, position, offset), expected, "{mode:?}");
                assert!(matches!(kind, CorruptionKind::Checksum { .. }), "{kind:?}");
            }
            other => panic!("{mode:?}: expected Corruption, got {other:?}"),
        }
    }
}

/// Segments are checked ahead of recovery's in-order pass on helper threads: with damage in
/// two segments, whichever is checked first, open reports the earlier one.
#[test]
fn the_first_damaged_segment_is_reported_whatever_is_checked_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let recs = build(dir, 120);
    let segs = segments(dir);
    assert!(segs.len() >= 4, "{} segments", segs.len());
    let later = recs
        .iter()
        .find(|r| r.2 == segs[segs.len() - 2])
        .expect("a record");
    for rec in [&recs[4], later] {
        let at = rec.3 + FRAME_HEADER + 10;
        let byte = read_file(&rec.2)[at as usize];
        write_at(&rec.2, at, &[byte ^ 0x40]);
    }
    let victim = &recs[4];
    assert_eq!(victim.2, segs[0]);
    for round in 0..20 {
        match open_with(dir, recovering(RecoveryMode::TolerateCorruptedTail)) {
            Err(WalError::Corruption { file, offset, .. }) => {
                assert_eq!((&file, offset), (&victim.2, 5), "round {round}");
            }
            other => panic!("round {round}: expected Corruption, got {other:?}"),
        }
    }
}

#[test]
fn point_in_time_recovery_cuts_at_the_damage_and_keeps_the_dropped_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let victim = flipped_store(dir);
    let segs = segments(dir);
    let originals: Vec<Vec<u8>> = segs.iter().map(|s| read_file(s)).collect();
    let pit = recovering(RecoveryMode::PointInTime);
    let wal = open_with(dir, pit).expect("point-in-time open");
    let report = wal.recovery_report().clone();
    assert_eq!(report.last_offset, 4, "the log ends before the damage");
    assert_eq!(report.dropped.len(), segs.len(), "{:?}", report.dropped);
    for (seg, original) in segs.iter().zip(&originals) {
        let d = report
            .dropped
            .iter()
            .find(|d| d.file == *seg)
            .unwrap_or_else(|| panic!("nothing reported for {}", seg.display()));
        let from = if *seg == victim.2 { victim.3 } else { 0 };
        assert_eq!(d.position, from, "{}", seg.display());
        let name = d.kept_as.file_name().unwrap_or_default().to_string_lossy();
        assert!(name.ends_with(".dropped"), "{name}");
        let kept = read_file(&d.kept_as);
        assert_eq!(d.bytes, kept.len() as u64, "{name}");
        let expect = &original[from as usize..];
        assert!(kept == expect, "{name} keeps the dropped bytes");
    }
    check_records(&read_from(&wal, 1), 4);
    let a = wal.append_blocking(payload(4)).expect("append");
    assert_eq!(a.offset, Offset(5));
    wal.close();
    assert_eq!(segments(dir), vec![segs[0].clone()], "one segment left");
    // A plain reopen now finds a sound log and leaves the kept bytes alone.
    let wal = open(dir);
    check_records(&read_from(&wal, 1), 5);
    assert_eq!(wal.recovery_report().foreign_files.len(), segs.len());
    wal.close();
}

#[test]
fn missing_middle_segment_is_a_segment_gap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let recs = build(dir, 120);
    let segs = segments(dir);
    assert!(segs.len() >= 3);
    let first_of = |seg: &PathBuf| recs.iter().find(|r| r.2 == *seg).expect("records").0;
    let (missing, after) = (first_of(&segs[1]), first_of(&segs[2]));
    std::fs::remove_file(&segs[1]).expect("remove");
    match open_with(dir, config()) {
        Err(WalError::SegmentGap {
            file,
            expected,
            found,
        }) => assert_eq!((file, expected, found), (segs[2].clone(), missing, after)),
        other => panic!("expected SegmentGap, got {other:?}"),
    }
}

#[test]
fn foreign_files_are_reported_and_left_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    build(dir, 30);
    let notes = dir.join("wal").join("notes.txt");
    let short = dir.join("wal").join("123.seg");
    std::fs::write(&notes, b"not a segment").expect("write");
    std::fs::write(&short, b"not 20 digits").expect("write");
    let wal = open(dir);
    let mut foreign = wal.recovery_report().foreign_files.clone();
    foreign.sort();
    assert_eq!(foreign, vec![short.clone(), notes.clone()]);
    check_records(&read_from(&wal, 1), 30);
    wal.append_blocking(payload(30)).expect("append");
    wal.close();
    assert_eq!(read_file(&notes), b"not a segment");
    assert_eq!(read_file(&short), b"not 20 digits");
}

#[test]
fn oversized_record_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let wal = open(dir);
    wal.append_blocking(payload(0)).expect("append");
    let seg = segments(dir)[0].clone();
    let before = read_file(&seg);
    match wal.append_blocking(vec![7; 4097]) {
        Err(WalError::RecordTooLarge { len, max }) => assert_eq!((len, max), (4097, 4096)),
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert!(read_file(&seg) == before, "the refused record wrote");
    assert_eq!(wal.reader().last_offset(), Offset(1));
    let a = wal.append_blocking(vec![8; 4096]).expect("at the limit");
    assert_eq!(a.offset, Offset(2), "the refusal used no offset");
    wal.close();
}

#[test]
fn invalid_configs_are_refused_before_touching_the_disk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let batched = |secs| Durability::Batched {
        max_delay: Duration::from_secs(secs),
    };
    type Edit = Box<dyn Fn(&mut WalConfig)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "segment_bytes",
            Box::new(|c| c.segment_bytes = 64 * 1024 - 1),
        ),
        (
            "segment_bytes",
            Box::new(|c| c.segment_bytes = (4 << 30) + 1),
        ),
        ("record_bytes_max", Box::new(|c| c.record_bytes_max = 0)),
        (
            "record_bytes_max",
            Box::new(|c| c.record_bytes_max = SEGMENT),
        ),
        (
            "record_bytes_max",
            Box::new(|c| c.record_bytes_max = (256 << 20) + 1),
        ),
        ("queue_depth", Box::new(|c| c.queue_depth = 0)),
        ("queue_depth", Box::new(|c| c.queue_depth = (1 << 20) + 1)),
        ("batch_bytes_max", Box::new(|c| c.batch_bytes_max = 4095)),
        (
            "batch_bytes_max",
            Box::new(|c| c.batch_bytes_max = (256 << 20) + 1),
        ),
        ("durability", Box::new(move |c| c.durability = batched(61))),
    ];
    for (i, (field, edit)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("store{i}"));
        let mut cfg = config();
        edit(&mut cfg);
        match open_with(&dir, cfg) {
            Err(WalError::InvalidConfig { field: f, reason }) => {
                assert_eq!(f, field, "case {i}: {reason}");
                assert!(!reason.is_empty(), "case {i}");
            }
            other => panic!("case {i} ({field}): expected InvalidConfig, got {other:?}"),
        }
        assert!(
            !dir.exists(),
            "case {i}: the refused open created {}",
            dir.display()
        );
    }
    // The bounds themselves are accepted.
    let edge = WalConfig {
        segment_bytes: 64 * 1024,
        record_bytes_max: 64 * 1024 - 64 - 16,
        queue_depth: 1,
        batch_bytes_max: 4096,
        ..config()
    };
    let wal = open_with(&tmp.path().join("edge"), edge).expect("bounds are valid");
    wal.append_blocking(vec![1; 64 * 1024 - 80])
        .expect("the largest record fits");
    wal.close();
}
