//! Crash simulation on `MemStorage`: several writer threads append with `Durability::Always`
//! into small segments (so that rotation happens), half of them from blocking threads (write
//! groups) and half through the async path (the writer thread's pipeline), another thread takes a crash image at a
//! pseudo-random moment while they still run, and the image is reopened and checked:
//! - every append acknowledged before the image was taken is there, byte-identical, at its
//!   offset;
//! - offsets are `1..=last` with no gap, and every payload was submitted (nothing invented,
//!   nothing duplicated);
//! - the reopened log takes a new append at `last + 1`.
//!
//! Default run: seeds `0..1000`. `CTXLOG_LONG=1`: seeds `0..10000` (or `CTXLOG_SEEDS=n`).
//! `CTXLOG_SEED=n`: only seed `n`. A failure names its seed.

use ctxlog::storage::{CrashMode, MemStorage};
use ctxlog::wal::{Durability, Reached, Wal, WalConfig};
use ctxlog::Offset;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const WRITERS: usize = 4;
const DIR: &str = "store";

/// SplitMix64: a tiny deterministic generator, one per seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n == 0`).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 * 1024,
        record_bytes_max: 4096,
        durability: Durability::Always,
        ..WalConfig::default()
    }
}

/// What one seed does: payload lengths per writer, when to crash and how.
struct Plan {
    lengths: Vec<Vec<usize>>,
    crash_after: usize,
    mode: CrashMode,
}

impl Plan {
    fn new(seed: u64) -> Plan {
        let mut rng = SplitMix(seed);
        let per_writer = 6 + rng.below(30) as usize;
        let lengths: Vec<Vec<usize>> = (0..WRITERS)
            .map(|_| {
                (0..per_writer)
                    .map(|_| match rng.below(8) {
                        0 => 1 + rng.below(64) as usize,
                        1 => 4096,
                        _ => 256 + rng.below(3841) as usize,
                    })
                    .collect()
            })
            .collect();
        let total = WRITERS * per_writer;
        let crash_after = rng.below(total as u64 * 3 / 4 + 1) as usize;
        let mode = match seed % 10 {
            0 | 1 => CrashMode::DropUnsynced,
            2 => CrashMode::ProcessKill,
            _ => CrashMode::Torn(seed),
        };
        Plan {
            lengths,
            crash_after,
            mode,
        }
    }

    fn total(&self) -> usize {
        self.lengths.iter().map(Vec::len).sum()
    }
}

/// A payload unique to (writer, seq), at least as long as its tag: a readable tag, then bytes derived from both (zeros
/// included, so that torn writes that cut inside zero runs are exercised).
fn payload(writer: usize, seq: usize, len: usize) -> Vec<u8> {
    let mut p = format!("w{writer}s{seq}.").into_bytes();
    let mut x = (writer as u64) << 32 | seq as u64;
    while p.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let b = (x >> 56) as u8;
        p.push(if b < 32 { 0 } else { b });
    }
    // Short lengths keep the whole tag: payloads stay unique.
    p
}

fn read_all(wal: &Wal, seed: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    wal.reader()
        .scan(Offset(1), Offset(u64::MAX), |r| {
            out.push((r.offset.0, r.payload.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap_or_else(|e| panic!("seed {seed}: scan failed: {e} (rerun: CTXLOG_SEED={seed})"));
    out
}

/// An acknowledged append: its offset and payload.
type Acked = (u64, Vec<u8>);

/// Counts a writer as finished even when it panics, so the crash thread never waits forever.
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// What one seed saw, to check that the seeds exercise what they are meant to.
#[derive(Default)]
struct Seen {
    /// The image was taken before the last ack.
    mid_run: bool,
    /// Recovery truncated a torn tail.
    torn_tail: bool,
    /// The image held more than one segment.
    rotated: bool,
    /// Records recovered beyond the acks counted.
    unacked_recovered: bool,
}

/// Runs one seed; panics with the seed in the message on any violation.
fn run_seed(seed: u64) -> Seen {
    let plan = Plan::new(seed);
    let ctx = format!("seed {seed} ({:?}; rerun: CTXLOG_SEED={seed})", plan.mode);
    let mem = MemStorage::new();
    let wal = Wal::open(Arc::new(mem.clone()), Path::new(DIR), config())
        .unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
    let submitted: HashSet<Vec<u8>> = plan
        .lengths
        .iter()
        .enumerate()
        .flat_map(|(w, lens)| {
            lens.iter()
                .enumerate()
                .map(move |(s, &len)| payload(w, s, len))
        })
        .collect();
    assert_eq!(submitted.len(), plan.total(), "{ctx}: payloads not unique");

    let acked: Mutex<Vec<Acked>> = Mutex::new(Vec::new());
    let ack_count = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let mut image: Option<(MemStorage, Vec<Acked>)> = None;
    std::thread::scope(|s| {
        for (w, lens) in plan.lengths.iter().enumerate() {
            let (wal, acked, ack_count, finished, ctx) =
                (&wal, &acked, &ack_count, &finished, &ctx);
            s.spawn(move || {
                let _done = Finished(finished);
                // Even writers append from blocking threads (write groups), odd ones through
                // the async path (the writer thread's pipeline, or joining a group).
                let rt = (w % 2 == 1).then(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .build()
                        .expect("runtime")
                });
                for (seq, &len) in lens.iter().enumerate() {
                    let p = payload(w, seq, len);
                    let a = match &rt {
                        None => wal.append_blocking(p.clone()),
                        Some(rt) => rt.block_on(wal.append(p.clone())),
                    }
                    .unwrap_or_else(|e| panic!("{ctx}: append failed: {e}"));
                    assert_eq!(a.reached, Reached::Synced, "{ctx}");
                    acked.lock().unwrap().push((a.offset.0, p));
                    ack_count.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let (mem, acked, ack_count, finished, image) =
            (&mem, &acked, &ack_count, &finished, &mut image);
        s.spawn(move || {
            while ack_count.load(Ordering::SeqCst) < plan.crash_after
                && finished.load(Ordering::SeqCst) < WRITERS
            {
                std::thread::yield_now();
            }
            // A torn image needs a write in flight, and a write group syncs right after it
            // writes: hold the syncs until a write is pending (or 200 ms passed).
            let torn = matches!(plan.mode, CrashMode::Torn(_));
            if torn {
                mem.hold_syncs();
                let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
                while !mem.has_unsynced_writes()
                    && finished.load(Ordering::SeqCst) < WRITERS
                    && std::time::Instant::now() < until
                {
                    std::thread::yield_now();
                }
            }
            // Only acks recorded before the image is taken count: copy them first.
            let before = acked.lock().unwrap().clone();
            *image = Some((mem.crash_image(plan.mode), before));
            if torn {
                mem.release_syncs();
            }
        });
    });

    // The live log holds every append, each at the offset its ack named.
    let mut live = read_all(&wal, seed);
    let mut all_acked = acked.into_inner().unwrap();
    all_acked.sort();
    assert_eq!(live.len(), plan.total(), "{ctx}: live log length");
    assert_eq!(live, all_acked, "{ctx}: live log differs from the acks");
    wal.close();
    live.clear();

    let (img, acked_before) = image.unwrap_or_else(|| panic!("{ctx}: no crash image"));
    let re = Wal::open(Arc::new(img), Path::new(DIR), config())
        .unwrap_or_else(|e| panic!("{ctx}: reopening the crash image failed: {e}"));
    let recovered = read_all(&re, seed);
    let last = recovered.len() as u64;
    for (i, (off, p)) in recovered.iter().enumerate() {
        assert_eq!(*off, i as u64 + 1, "{ctx}: offsets not 1..=last");
        assert!(
            submitted.contains(p),
            "{ctx}: offset {off} holds a payload never submitted ({} bytes)",
            p.len()
        );
    }
    let distinct: HashSet<&Vec<u8>> = recovered.iter().map(|(_, p)| p).collect();
    assert_eq!(distinct.len(), recovered.len(), "{ctx}: duplicated payload");
    assert_eq!(re.recovery_report().last_offset, last, "{ctx}: report");
    assert_eq!(re.reader().last_offset(), Offset(last), "{ctx}");
    for (off, p) in &acked_before {
        let got = recovered.get(*off as usize - 1).map(|(_, p)| p);
        assert!(
            got == Some(p),
            "{ctx}: acknowledged offset {off} lost or changed after the crash \
             ({} acks before the image, {last} records recovered)",
            acked_before.len()
        );
    }
    let a = re
        .append_blocking(b"after the crash".to_vec())
        .unwrap_or_else(|e| panic!("{ctx}: append after reopen failed: {e}"));
    assert_eq!(a.offset, Offset(last + 1), "{ctx}: offset after reopen");
    let tail = read_all(&re, seed);
    assert_eq!(
        tail.last().map(|(o, p)| (*o, p.as_slice())),
        Some((last + 1, b"after the crash".as_slice())),
        "{ctx}: new record not readable"
    );
    let report = re.recovery_report().clone();
    re.close();
    Seen {
        mid_run: acked_before.len() < plan.total(),
        torn_tail: report.torn_tail.is_some(),
        rotated: report.segments > 1,
        unacked_recovered: last as usize > acked_before.len(),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

fn seeds() -> std::ops::Range<u64> {
    if let Some(seed) = env_u64("CTXLOG_SEED") {
        return seed..seed + 1;
    }
    let long = std::env::var("CTXLOG_LONG").is_ok_and(|v| v == "1");
    let n = env_u64("CTXLOG_SEEDS").unwrap_or(if long { 10_000 } else { 1_000 });
    0..n
}

#[test]
fn crash_images_keep_every_acknowledged_append() {
    let seeds = seeds();
    let count = seeds.end - seeds.start;
    let (mut mid_run, mut torn, mut rotated, mut unacked) = (0, 0, 0, 0);
    let started = std::time::Instant::now();
    for seed in seeds {
        let seen = run_seed(seed);
        mid_run += u64::from(seen.mid_run);
        torn += u64::from(seen.torn_tail);
        rotated += u64::from(seen.rotated);
        unacked += u64::from(seen.unacked_recovered);
    }
    eprintln!(
        "{count} seeds in {:?}: {mid_run} crashed mid-run, {torn} torn tails, \
         {rotated} rotated, {unacked} recovered unacked records",
        started.elapsed()
    );
    assert!(count >= 1, "no seed ran");
    if count >= 100 {
        // Thread timing varies, but over many seeds every situation must show up (floors,
        // not quotas: a faster or slower machine shifts the mix).
        assert!(
            mid_run * 10 >= count,
            "only {mid_run} of {count} crashed mid-run"
        );
        assert!(torn > 0, "no torn tail in {count} seeds");
        assert!(rotated * 10 >= count, "only {rotated} of {count} rotated");
        assert!(
            unacked > 0,
            "no unacknowledged record survived in {count} seeds"
        );
    }
}

#[test]
fn plans_crash_while_writers_run_and_rotate() {
    // The default seeds must exercise what the crash test is about: rotation (more than one
    // segment's worth of data), crashes before the last ack, and every crash mode.
    let mut rotating = 0;
    let mut early = 0;
    let mut modes = HashSet::new();
    for seed in 0..1000 {
        let plan = Plan::new(seed);
        let bytes: usize = plan.lengths.iter().flatten().map(|l| l + 16).sum();
        rotating += usize::from(bytes as u64 > config().segment_bytes);
        early += usize::from(plan.crash_after < plan.total());
        modes.insert(std::mem::discriminant(&plan.mode));
    }
    assert!(rotating > 500, "only {rotating} of 1000 seeds rotate");
    assert_eq!(early, 1000, "every crash is planned before the last ack");
    assert_eq!(modes.len(), 3, "all crash modes are used");
}
