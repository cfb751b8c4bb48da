//! Bit flips and truncations of a real store's files, each followed by an open and, when open
//! succeeds, a verify pass (every commit read back with `events(1)`, every snapshot loaded with
//! `snapshot::load`). Every damage must end in exactly one of:
//!
//! - **refused**: open fails with a typed error naming the damaged file and the position of
//!   the damaged frame (`WalError::BadHeader`, `Corruption`, `TornTail`, `SegmentGap`);
//! - **reported**: open succeeds, says what it did (`torn_tail`, `skipped_snapshots`,
//!   `set_aside_snapshots`, `repaired_segment`) and the state is the undamaged state at the
//!   offset the log now ends at;
//! - **detected by verify**: open succeeds with the undamaged state (the damage is in a file
//!   open does not read: a sealed segment before the snapshot, an older snapshot) and the
//!   verify pass fails naming the file;
//! - **harmless**: open and verify succeed with the undamaged state (only for bytes that hold
//!   nothing: zero fill cut off a segment).
//!
//! Never a silently wrong state. The exact rule for each place is asserted below (see
//! `expect_flip`), and the counts are printed as figures.
//!
//! The small store (six commits in one segment, one snapshot) gets every bit of every byte of
//! the segment header and records, of the snapshot, and of the first 64 bytes of zero fill,
//! plus a sample of the rest of the zero fill; and a truncation at every length of the
//! snapshot and of the segment up to past its records (a sample of the zero fill), under
//! `TolerateCorruptedTail` and `AbsoluteConsistency`. The larger store (four segments, three
//! snapshots) gets a seeded sample of flips and truncations (`CTXLOG_LONG=1`: ten times more).

mod reliability_support;

use ctxlog::error::{Error, RecoveryError};
use ctxlog::manager::OpenReport;
use ctxlog::wal::WalError;
use ctxlog::{Config, RecoveryMode};
use ctxlog_format::layout::HEADER_LEN;
use ctxlog_format::CorruptionKind;
use reliability_support::damage::{
    build, flipped, open_and_verify, truncated, FileInfo, Outcome, Pristine,
};
use reliability_support::{figure, long, runtime, state_diff, Rng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::runtime::Runtime;

const TEST: &str = "reliability_corruption";

// ---------------------------------------------------------------- the rules

/// How a damage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Refused,
    /// A torn tail cut off: `n` acknowledged commits dropped (reported).
    TornTail(u64),
    SnapshotSkipped,
    /// The store opens as an older one (reported by a snapshot set aside, or a repaired
    /// segment, or not at all for a cut at a record boundary).
    Shorter(u64),
    VerifyDetected,
    Harmless,
}

#[track_caller]
fn refused_naming(out: &Outcome, file: &Path, position: Option<u64>, what: &str) -> Class {
    let Outcome::Refused(e) = out else {
        panic!(
            "{what}: expected a refusal naming {}, got {out:?}",
            file.display()
        );
    };
    let (f, pos) = match e {
        Error::Persistence(WalError::BadHeader { file, .. }) => (file, None),
        Error::Persistence(WalError::Corruption { file, position, .. }) => (file, Some(*position)),
        Error::Persistence(WalError::TornTail { file, position }) => (file, Some(*position)),
        Error::Persistence(WalError::SegmentGap { file, .. }) => (file, None),
        other => panic!("{what}: refused with an untyped error: {other:?}"),
    };
    assert_eq!(f, file, "{what}: the error names another file: {e}");
    if let (Some(want), Some(got)) = (position, pos) {
        assert_eq!(got, want, "{what}: the error names another position: {e}");
    }
    Class::Refused
}

/// Open succeeded with the pristine state at `offset`.
#[track_caller]
fn opened_at<'a>(out: &'a Outcome, p: &Pristine, offset: u64, what: &str) -> &'a OpenReport {
    let Outcome::Opened { report, state, .. } = out else {
        panic!("{what}: expected open to succeed, got {out:?}");
    };
    if let Some(d) = state_diff(state, &p.states[offset as usize]) {
        panic!("{what}: opened with a wrong state (want offset {offset}): {d}");
    }
    report
}

fn verify_error(out: &Outcome) -> Option<&Error> {
    match out {
        Outcome::Opened { verify, .. } => verify.as_ref(),
        Outcome::Refused(_) => None,
    }
}

/// True if the open's replay reads the records of `seg` (it starts at the segment holding
/// the offset after the snapshot it loaded).
fn replay_reads(p: &Pristine, seg: &FileInfo, snap: u64) -> bool {
    let next_first = p
        .segments
        .iter()
        .map(|s| s.first)
        .find(|&f| f > seg.first)
        .unwrap_or(u64::MAX);
    next_first > snap + 1 || seg.active
}

/// A flip at `pos` of segment `seg`: the rule.
fn expect_segment_damage(
    p: &Pristine,
    seg: &FileInfo,
    pos: u64,
    out: &Outcome,
    what: &str,
) -> Class {
    let end = seg.end();
    if pos < HEADER_LEN as u64 {
        return refused_naming(out, &seg.path, None, what);
    }
    if let Some(&(start, _, offset)) = seg.frames.iter().find(|f| f.0 <= pos && pos < f.1) {
        if !replay_reads(p, seg, p.newest_snap()) {
            // Open starts from the snapshot and never reads this segment: verify does.
            opened_at(out, p, p.last(), what);
            match verify_error(out) {
                Some(Error::Persistence(WalError::Corruption { file, position, .. })) => {
                    assert_eq!((file, *position), (&seg.path, start), "{what}: {out:?}");
                }
                other => panic!("{what}: verify missed the damage: {other:?}"),
            }
            return Class::VerifyDetected;
        }
        if let Outcome::Opened { report, .. } = out {
            // Only the last record of the last segment may be taken for a torn write (nothing
            // but zeros after it): a damaged record followed by an intact one is corruption,
            // so damage never drops acknowledged records behind it.
            assert!(
                seg.active,
                "{what}: damage in a sealed segment opened: {out:?}"
            );
            assert_eq!(
                offset,
                p.last(),
                "{what}: a torn tail before the last record: {out:?}"
            );
            let torn = report.log.torn_tail.as_ref();
            assert_eq!(
                torn.map(|t| (&t.file, t.position)),
                Some((&seg.path, start)),
                "{what}: {out:?}"
            );
            opened_at(out, p, offset - 1, what);
            assert!(verify_error(out).is_none(), "{what}: {out:?}");
            return Class::TornTail(p.last() - (offset - 1));
        }
        return refused_naming(out, &seg.path, Some(start), what);
    }
    assert!(
        seg.active && pos >= end,
        "{what}: sealed segments have no zero fill"
    );
    if pos < end + 16 {
        // The next frame header is no longer all zeros: a torn tail of nothing, cut off; or,
        // if the flip made its length larger than any record may be, corruption.
        if let Outcome::Refused(Error::Persistence(WalError::Corruption { kind, .. })) = out {
            assert!(
                matches!(kind, CorruptionKind::LengthTooLarge { .. }) && pos < end + 4,
                "{what}: {out:?}"
            );
            return refused_naming(out, &seg.path, Some(end), what);
        }
        let report = opened_at(out, p, p.last(), what);
        let torn = report.log.torn_tail.as_ref().map(|t| (&t.file, t.position));
        assert_eq!(torn, Some((&seg.path, end)), "{what}: {out:?}");
        assert!(verify_error(out).is_none(), "{what}: {out:?}");
        Class::TornTail(0)
    } else {
        // Data after a zero frame header: never a crash's doing.
        refused_naming(out, &seg.path, Some(end), what);
        if let Outcome::Refused(Error::Persistence(WalError::Corruption { kind, .. })) = out {
            assert_eq!(*kind, CorruptionKind::DataAfterZeros, "{what}");
        }
        Class::Refused
    }
}

/// Damage (a flip or a cut) of snapshot `snap`: skipped and reported if it is the one open
/// would load, else unread by open and found by verify. The state never changes.
fn expect_snapshot_damage(p: &Pristine, snap: &FileInfo, out: &Outcome, what: &str) -> Class {
    let report = opened_at(out, p, p.last(), what);
    let is_bad = |e: Option<&Error>| matches!(e, Some(Error::Recovery(RecoveryError::BadSnapshot { file, .. })) if *file == snap.path);
    assert!(is_bad(verify_error(out)), "{what}: verify: {out:?}");
    if snap.snap == Some(p.newest_snap()) {
        let skipped: Vec<&PathBuf> = report.skipped_snapshots.iter().map(|s| &s.file).collect();
        assert_eq!(skipped, [&snap.path], "{what}: {out:?}");
        Class::SnapshotSkipped
    } else {
        assert!(report.skipped_snapshots.is_empty(), "{what}: {out:?}");
        Class::VerifyDetected
    }
}

#[derive(Default)]
struct Tally(BTreeMap<String, u64>);

impl Tally {
    fn add(&mut self, what: &str, class: Class) {
        let name = match class {
            Class::TornTail(0) => "torn_tail_nothing_lost".to_string(),
            Class::TornTail(1) => "torn_tail_last_commit_dropped".to_string(),
            Class::TornTail(_) => "torn_tail_several_commits_dropped".to_string(),
            Class::Shorter(_) => "opened_shorter".to_string(),
            c => format!("{c:?}").to_lowercase(),
        };
        *self.0.entry(format!("{what}_{name}")).or_default() += 1;
        *self.0.entry(format!("{what}_total")).or_default() += 1;
    }

    fn print(&self) {
        for (k, v) in &self.0 {
            figure(TEST, k, v);
        }
    }
}

/// A cut of segment `seg` at `len`: the rule, under `mode`.
fn expect_segment_cut(
    p: &Pristine,
    seg: &FileInfo,
    len: u64,
    mode: RecoveryMode,
    out: &Outcome,
    what: &str,
) -> Class {
    let full = seg.bytes.len() as u64;
    if len >= seg.end() {
        // Only zero fill (or nothing) cut: nothing to see.
        let report = opened_at(out, p, p.last(), what);
        assert!(report.log.torn_tail.is_none(), "{what}: {out:?}");
        assert!(verify_error(out).is_none(), "{what}: {out:?}");
        return Class::Harmless;
    }
    assert!(len < full);
    // The last whole frame before the cut, and whether the cut falls on a frame boundary.
    let whole: Vec<&(u64, u64, u64)> = seg.frames.iter().filter(|f| f.1 <= len).collect();
    let kept = whole.last().map_or(seg.first - 1, |f| f.2);
    let boundary = whole.last().map_or(HEADER_LEN as u64, |f| f.1) == len;
    let cut_frame = seg.frames.get(whole.len()).map(|f| f.0);
    if !seg.active {
        if len < HEADER_LEN as u64 {
            return refused_naming(out, &seg.path, None, what);
        }
        let next = p
            .segments
            .iter()
            .find(|s| s.first > seg.first)
            .expect("a next");
        if replay_reads(p, seg, p.newest_snap()) {
            return if boundary {
                refused_naming(out, &next.path, None, what)
            } else {
                refused_naming(out, &seg.path, cut_frame, what)
            };
        }
        opened_at(out, p, p.last(), what);
        assert!(
            verify_error(out).is_some(),
            "{what}: verify missed the cut: {out:?}"
        );
        return Class::VerifyDetected;
    }
    if len < HEADER_LEN as u64 {
        // No header left: taken for a segment whose creation a crash interrupted (it held no
        // record), made anew and reported; snapshots past the log's new end are set aside.
        let report = opened_at(out, p, seg.first - 1, what);
        assert_eq!(
            report.log.repaired_segment.as_ref(),
            Some(&seg.path),
            "{what}"
        );
        let ahead = p.snapshots.iter().filter(|s| s.snap > Some(kept)).count();
        assert_eq!(report.set_aside_snapshots.len(), ahead, "{what}: {out:?}");
        return Class::Shorter(p.last() - kept);
    }
    if boundary {
        // A log that ends at a record boundary is a shorter history, not damage: nothing can
        // tell them apart. Only snapshots past the new end show it (set aside, reported).
        let report = opened_at(out, p, kept, what);
        assert!(report.log.torn_tail.is_none(), "{what}: {out:?}");
        let ahead = p.snapshots.iter().filter(|s| s.snap > Some(kept)).count();
        assert_eq!(report.set_aside_snapshots.len(), ahead, "{what}: {out:?}");
        return Class::Shorter(p.last() - kept);
    }
    if mode == RecoveryMode::AbsoluteConsistency {
        return refused_naming(out, &seg.path, cut_frame, what);
    }
    let report = opened_at(out, p, kept, what);
    let torn = report.log.torn_tail.as_ref().map(|t| (&t.file, t.position));
    assert_eq!(
        torn,
        Some((&seg.path, cut_frame.expect("cut inside a frame"))),
        "{what}"
    );
    Class::TornTail(p.last() - kept)
}

fn with_mode(p: &Pristine, mode: RecoveryMode) -> Config {
    let mut cfg = p.cfg.clone();
    cfg.recovery = mode;
    cfg
}

fn small_store(rt: &Runtime) -> Pristine {
    let p = rt.block_on(build(6, &[3], false));
    assert_eq!(p.segments.len(), 1, "the small store has one segment");
    assert_eq!(p.snapshots.len(), 1, "and one snapshot");
    p
}

#[test]
fn every_bit_flip_of_a_small_store_is_refused_reported_or_found_by_verify() {
    let rt = runtime();
    let p = small_store(&rt);
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    let seg = &p.segments[0];
    let end = seg.end();
    // Every bit of the header, the records and 64 bytes of zero fill; one bit of every 61st
    // byte of the rest.
    let mut flips: Vec<(u64, u32)> = (0..end + 64)
        .flat_map(|pos| (0..8).map(move |bit| (pos, bit)))
        .collect();
    flips.extend(
        (end + 64..seg.bytes.len() as u64)
            .step_by(61)
            .map(|pos| (pos, (pos % 8) as u32)),
    );
    for (pos, bit) in flips {
        let what = format!("segment byte {pos} bit {bit}");
        let out = rt.block_on(open_and_verify(&flipped(&p, seg, pos, bit), &p.cfg));
        tally.add(
            "small_segment_flip",
            expect_segment_damage(&p, seg, pos, &out, &what),
        );
    }
    let snap = &p.snapshots[0];
    for pos in 0..snap.bytes.len() as u64 {
        for bit in 0..8 {
            let what = format!("snapshot byte {pos} bit {bit}");
            let out = rt.block_on(open_and_verify(&flipped(&p, snap, pos, bit), &p.cfg));
            tally.add(
                "small_snapshot_flip",
                expect_snapshot_damage(&p, snap, &out, &what),
            );
        }
    }
    tally.print();
    figure(
        TEST,
        "small_flip_seconds",
        format!("{:.1}", started.elapsed().as_secs_f64()),
    );
}

#[test]
fn every_truncation_of_a_small_store_is_handled_as_the_recovery_mode_says() {
    let rt = runtime();
    let p = small_store(&rt);
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    let seg = &p.segments[0];
    let snap = &p.snapshots[0];
    let mut lens: Vec<u64> = (0..=seg.end() + 32).collect();
    lens.extend((seg.end() + 33..seg.bytes.len() as u64).step_by(997));
    for mode in [
        RecoveryMode::TolerateCorruptedTail,
        RecoveryMode::AbsoluteConsistency,
    ] {
        let cfg = with_mode(&p, mode);
        let name = format!("{mode:?}").to_lowercase();
        for &len in &lens {
            let what = format!("{mode:?}: segment cut to {len}");
            let out = rt.block_on(open_and_verify(&truncated(&p, seg, len), &cfg));
            let class = expect_segment_cut(&p, seg, len, mode, &out, &what);
            tally.add(&format!("small_segment_cut_{name}"), class);
        }
        for len in 0..snap.bytes.len() as u64 {
            let what = format!("{mode:?}: snapshot cut to {len}");
            let out = rt.block_on(open_and_verify(&truncated(&p, snap, len), &cfg));
            tally.add(
                &format!("small_snapshot_cut_{name}"),
                expect_snapshot_damage(&p, snap, &out, &what),
            );
        }
    }
    tally.print();
    figure(
        TEST,
        "small_cut_seconds",
        format!("{:.1}", started.elapsed().as_secs_f64()),
    );
}

#[test]
fn sampled_flips_and_cuts_of_a_larger_store() {
    let rt = runtime();
    let p = rt.block_on(build(150, &[40, 90, 130], true));
    assert!(p.segments.len() >= 4, "{} segments", p.segments.len());
    assert_eq!(p.snapshots.len(), 3);
    let started = std::time::Instant::now();
    let (flips, cuts) = if long() { (3000, 1500) } else { (300, 150) };
    let mut rng = Rng::new(0xC0DE);
    let mut tally = Tally::default();
    let files: Vec<&FileInfo> = p.segments.iter().chain(&p.snapshots).collect();
    for i in 0..flips + cuts {
        let file = *rng.pick(&files);
        let span = if file.active {
            file.end() + 64
        } else {
            file.bytes.len() as u64
        };
        let pos = rng.below(span);
        let is_flip = i < flips;
        let (img, what) = if is_flip {
            let bit = rng.below(8) as u32;
            let what = format!("{} byte {pos} bit {bit}", file.path.display());
            (flipped(&p, file, pos, bit), what)
        } else {
            (
                truncated(&p, file, pos),
                format!("{} cut to {pos}", file.path.display()),
            )
        };
        let out = rt.block_on(open_and_verify(&img, &p.cfg));
        let (kind, class) = match (file.snap.is_some(), is_flip) {
            (true, true) => (
                "large_snapshot_flip",
                expect_snapshot_damage(&p, file, &out, &what),
            ),
            (true, false) => (
                "large_snapshot_cut",
                expect_snapshot_damage(&p, file, &out, &what),
            ),
            (false, true) => (
                "large_segment_flip",
                expect_segment_damage(&p, file, pos, &out, &what),
            ),
            (false, false) => {
                let mode = RecoveryMode::TolerateCorruptedTail;
                (
                    "large_segment_cut",
                    expect_segment_cut(&p, file, pos, mode, &out, &what),
                )
            }
        };
        tally.add(kind, class);
    }
    tally.print();
    figure(
        TEST,
        "large_seconds",
        format!("{:.1}", started.elapsed().as_secs_f64()),
    );
}
