//! Crash harness for the whole engine (`ContextManager` + `ContextAdapter`) on `MemStorage`.
//!
//! Per seed: four writer tasks run a random mix of commits (creates, sets, removes, multi-key
//! multi-context updates, label changes, deletes, restores by label and by offset, recovery
//! points, activate / deactivate / switch) into 64 KiB segments with a background snapshot
//! every few commits, so that rotation and snapshots happen while they run. A crash thread
//! takes a crash image at an instant chosen by the seed (after the k-th acknowledgement, plus a
//! few scheduler yields), in `CrashMode::Torn(seed)` (each file's and directory's unsynced
//! operations kept as a random prefix, the last one torn at any byte), `DropUnsynced` or
//! `ProcessKill`. The writers run to the end on the live store; the image is then reopened and
//! checked against a model:
//!
//! - every commit acknowledged before the image was taken is there (acks are recorded under
//!   the lock the crash thread holds while it takes the image);
//! - the log holds commits `1..=last` with `last` at least the last acknowledged offset, and
//!   each commit's events are exactly those of the operations submitted for that offset (the
//!   live run gives every commit a receipt; the image's commits are read back with
//!   `events()`), so nothing is half applied: a commit is whole or absent;
//! - the reopened state equals the model's state after replaying the submitted operations of
//!   commits `1..=last` (an independent, naive model of every rule: restores, adapter, points);
//! - the reopened store takes the next commit at `last + 1`.
//!
//! Default: seeds `0..1000`. `CTXLOG_LONG=1`: `0..10000`. `CTXLOG_SEEDS=n`: `0..n`.
//! `CTXLOG_SEED=n`: that seed alone. A failure prints its seed and the command to rerun it.

mod reliability_support;

use ctxlog::event::Labels;
use ctxlog::model::Value;
use ctxlog::state::State;
use ctxlog::storage::{CrashMode, FaultOp, MemStorage};
use ctxlog::{
    create_adapter, create_manager_with_config, At, ContextAdapter, ContextManager, Offset, Op,
    Update,
};
use reliability_support::model::{ev_of, Act, Ev, MOp, Model};
use reliability_support::{
    figure, for_each_seed, mem_config, runtime, seeds, single_seed, state_diff, Rng,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const TEST: &str = "reliability_crash";
const WRITERS: usize = 4;

/// One submission and its outcome: the offset (and receipt versions) or the error.
#[derive(Debug)]
struct Attempt {
    act: Act,
    outcome: Result<(u64, Option<BTreeMap<String, Offset>>), String>,
}

// ---------------------------------------------------------------- the writers

fn value(w: usize, seq: usize, j: usize, rng: &mut Rng) -> Vec<u8> {
    // Mostly small values; about one in three large, so that 64 KiB segments rotate.
    let pad = if rng.chance(30) {
        rng.range(1500, 4000)
    } else {
        rng.range(10, 300)
    };
    let text = format!("w{w}s{seq}v{j}:{}", "x".repeat(pad as usize));
    Value::encode(&text)
        .expect("a string encodes")
        .as_bytes()
        .to_vec()
}

fn labels(rng: &mut Rng) -> Labels {
    let mut l = Labels::new();
    if rng.chance(50) {
        l.insert(format!("l{}", rng.below(3)), format!("v{}", rng.below(100)));
    }
    l
}

/// The next submission of writer `w`, chosen against the published state so that most
/// succeed (those that fail write nothing and do not matter).
fn choose(rng: &mut Rng, w: usize, seq: usize, s: &State, points: &[String], ok: u64) -> Act {
    let own: Vec<String> = (0..3).map(|i| format!("w{w}c{i}")).collect();
    let live: Vec<&String> = own.iter().filter(|c| s.context(c).is_some()).collect();
    let dead: Vec<&String> = own.iter().filter(|c| s.context(c).is_none()).collect();
    let keys_of = |c: &str| -> Vec<String> {
        s.context(c)
            .map(|x| x.keys().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let r = rng.below(100);
    if live.is_empty() || (!dead.is_empty() && r < 12) {
        let c = (*rng.pick(&dead)).clone();
        let mut ops = vec![MOp::Create(c.clone(), labels(rng))];
        for j in 0..rng.below(3) as usize {
            let v = value(w, seq, j, rng);
            ops.push(MOp::Set(c.clone(), format!("k{}", rng.below(6)), v));
        }
        return Act::Update(ops);
    }
    let c = (*rng.pick(&live)).clone();
    match r {
        0..=54 => {
            // Several keys of one to three contexts, sometimes a remove and a label change.
            let mut ops = Vec::new();
            for j in 0..rng.range(2, 5) as usize {
                let c = rng.pick(&live).to_string();
                let v = value(w, seq, j, rng);
                ops.push(MOp::Set(c, format!("k{}", rng.below(6)), v));
            }
            let keys = keys_of(&c);
            if !keys.is_empty() && rng.chance(30) {
                ops.push(MOp::Remove(c.clone(), rng.pick(&keys).clone()));
            }
            if rng.chance(15) {
                ops.push(MOp::Meta(
                    c,
                    labels(rng),
                    vec![format!("l{}", rng.below(3))],
                ));
            }
            Act::Update(ops)
        }
        55..=61 => Act::Update(vec![MOp::Set(c, "solo".into(), value(w, seq, 0, rng))]),
        62..=66 => match keys_of(&c).as_slice() {
            [] => Act::Update(vec![MOp::Set(c, "k0".into(), value(w, seq, 0, rng))]),
            keys => Act::Update(vec![MOp::Remove(c, rng.pick(keys).clone())]),
        },
        67..=69 => Act::Update(vec![MOp::Delete(c)]),
        70..=75 => Act::Update(vec![MOp::Meta(c, labels(rng), vec![])]),
        76..=80 => Act::Activate(c),
        81..=84 => Act::Deactivate(rng.pick(&own).clone()),
        85..=89 => Act::Switch(c),
        90..=94 => Act::Point(format!("w{w}p{seq}")),
        95..=96 if !points.is_empty() => Act::RestoreLabel(rng.pick(points).clone()),
        _ if ok > 0 => Act::RestoreOffset(ok),
        _ => Act::Point(format!("w{w}p{seq}")),
    }
}

async fn submit(m: &ContextManager, a: &ContextAdapter, act: &Act) -> ctxlog::Result<Attempted> {
    let receipt = match act {
        Act::Update(ops) => {
            let mut u = Update::new();
            for op in ops {
                u = u.op(match op.clone() {
                    MOp::Create(context, labels) => Op::Create { context, labels },
                    MOp::Set(context, key, v) => Op::Set {
                        context,
                        key,
                        value: Value::from_msgpack(v),
                    },
                    MOp::Remove(context, key) => Op::Remove { context, key },
                    MOp::Meta(context, set, removed) => Op::Meta {
                        context,
                        set,
                        removed,
                    },
                    MOp::Delete(context) => Op::Delete { context },
                });
            }
            m.update(u).await?
        }
        Act::Activate(c) => a.activate(c).await?,
        Act::Deactivate(c) => a.deactivate(c).await?,
        Act::Switch(c) => a.switch_to(c).await?,
        Act::Point(l) => return Ok((m.create_recovery_point(l).await?.0, None)),
        Act::RestoreLabel(l) => m.restore(At::Label(l.clone())).await?,
        Act::RestoreOffset(o) => m.restore(Offset(*o)).await?,
    };
    Ok((receipt.offset.0, Some(receipt.versions)))
}

type Attempted = (u64, Option<BTreeMap<String, Offset>>);

/// What the writers share with the crash thread: every attempt, recorded under a lock the
/// crash thread holds while it takes an image, and a condition variable signalled after each
/// record, so that the crash thread wakes at its instant even on a loaded machine.
#[derive(Default)]
struct Shared {
    attempts: Mutex<Vec<Attempt>>,
    recorded: Condvar,
    acks: AtomicUsize,
    done: AtomicUsize,
}

async fn writer(w: usize, seed: u64, n: usize, m: ContextManager, sh: Arc<Shared>) {
    let a = create_adapter(&m).await.expect("adapter");
    let mut rng = Rng::new(seed.wrapping_mul(0x1000_0001).wrapping_add(w as u64));
    let (mut points, mut ok) = (Vec::new(), 0);
    for seq in 0..n {
        let act = choose(&mut rng, w, seq, &m.state(), &points, ok);
        let outcome = submit(&m, &a, &act).await.map_err(|e| e.to_string());
        if let (Ok((o, _)), Act::Point(l)) = (&outcome, &act) {
            points.push(l.clone());
            ok = *o;
        } else if let Ok((o, _)) = &outcome {
            ok = *o;
        }
        let acked = outcome.is_ok();
        {
            let mut attempts = sh.attempts.lock().unwrap();
            attempts.push(Attempt { act, outcome });
            if acked {
                sh.acks.fetch_add(1, Ordering::SeqCst);
            }
        }
        sh.recorded.notify_all();
        for _ in 0..rng.below(3) {
            tokio::task::yield_now().await;
        }
    }
}

// ---------------------------------------------------------------- one seed

/// What the images saw, counted over images.
#[derive(Default, Debug)]
struct Seen {
    commits: u64,
    images: u64,
    mid_run: u64,
    torn: u64,
    from_snapshot: u64,
    rotated: u64,
    with_unacked: u64,
    unacked_present: u64,
    before_end: u64,
    restarts_then_power_loss: u64,
}

/// Crash images per seed, taken at increasing instants of the same run.
const IMAGES: usize = 3;

fn run_seed(rt: &Runtime, seed: u64) -> Seen {
    let mut rng = Rng::new(seed);
    let ctx = format!("seed {seed}");
    let mem = MemStorage::new();
    let mut cfg = mem_config(&mem);
    cfg.snapshot_every_commits = Some(rng.range(3, 15));
    let per_writer: Vec<usize> = (0..WRITERS).map(|_| rng.range(6, 24) as usize).collect();
    // Each image: after how many acks, how (half right after some write reached the storage,
    // so that unsynced data is in flight, the others after a few scheduler yields), and the
    // crash mode.
    let total = per_writer.iter().sum::<usize>() as u64;
    let mut plan: Vec<(usize, bool, u64, CrashMode)> = (0..IMAGES as u64)
        .map(|k| {
            let mode = match rng.below(10) {
                0..=1 => CrashMode::DropUnsynced,
                2 => CrashMode::ProcessKill,
                _ => CrashMode::Torn(seed * IMAGES as u64 + k),
            };
            let after = rng.below(total * 3 / 4 + 1) as usize;
            (after, rng.chance(50), rng.below(200), mode)
        })
        .collect();
    plan.sort_by_key(|p| p.0);

    let m = rt
        .block_on(create_manager_with_config(cfg.clone()))
        .unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
    let sh = Arc::new(Shared::default());
    let crash = {
        let (sh, mem) = (Arc::clone(&sh), mem.clone());
        std::thread::spawn(move || {
            let running = || sh.done.load(Ordering::SeqCst) < WRITERS;
            let mut images = Vec::new();
            for (after, after_write, spins, mode) in plan {
                // Wait for the k-th ack, then keep the record locked: acks recorded so far
                // completed before the image, and none is recorded until it is taken, while
                // the engine's threads go on writing and syncing what was submitted.
                let mut attempts = sh.attempts.lock().unwrap();
                while sh.acks.load(Ordering::SeqCst) < after && running() {
                    let wait = Duration::from_millis(5);
                    attempts = sh.recorded.wait_timeout(attempts, wait).unwrap().0;
                }
                if after_write {
                    // Right after some write reached the storage (up to 2 ms).
                    let (writes, since) = (mem.op_count(FaultOp::Write), Instant::now());
                    while mem.op_count(FaultOp::Write) == writes
                        && since.elapsed() < Duration::from_millis(2)
                    {
                        std::hint::spin_loop();
                    }
                } else {
                    for _ in 0..spins {
                        std::thread::yield_now();
                    }
                }
                let acked: Vec<u64> = attempts
                    .iter()
                    .filter_map(|a| a.outcome.as_ref().ok().map(|(o, _)| *o))
                    .collect();
                images.push((mode, acked, mem.crash_image(mode)));
            }
            images
        })
    };
    rt.block_on(async {
        let tasks: Vec<_> = per_writer
            .iter()
            .enumerate()
            .map(|(w, &n)| {
                let (m, sh) = (m.clone(), Arc::clone(&sh));
                tokio::spawn(async move {
                    writer(w, seed, n, m, Arc::clone(&sh)).await;
                    sh.done.fetch_add(1, Ordering::SeqCst);
                    sh.recorded.notify_all();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap_or_else(|e| panic!("{ctx}: writer: {e}"));
        }
    });
    let images = crash.join().expect("crash thread");
    let attempts = std::mem::take(&mut *sh.attempts.lock().unwrap());

    // Every commit of the live run has a receipt: offsets 1..=last, each once.
    let mut by_offset: BTreeMap<u64, &Attempt> = BTreeMap::new();
    for a in &attempts {
        if let Ok((o, _)) = &a.outcome {
            assert!(by_offset.insert(*o, a).is_none(), "{ctx}: offset {o} twice");
        }
    }
    let live_last = m.last_offset().0;
    assert!(
        by_offset.keys().copied().eq(1..=live_last),
        "{ctx}: receipts are not 1..={live_last}"
    );

    // The model after every offset, and the events each commit must hold.
    let mut history = vec![Model::default()];
    let mut expected: Vec<Vec<Ev>> = vec![Vec::new()];
    for (&o, a) in &by_offset {
        let prev = history.last().expect("the empty model");
        let evs = prev
            .expected(&a.act, &history)
            .unwrap_or_else(|e| panic!("{ctx}: offset {o}: {e}"));
        let mut next = prev.clone();
        next.apply(o, &evs)
            .unwrap_or_else(|e| panic!("{ctx}: offset {o} ({:?}): {e}", a.act));
        if let Ok((_, Some(versions))) = &a.outcome {
            let changed: BTreeMap<String, Offset> = evs
                .iter()
                .filter_map(|e| match e {
                    Ev::Created(c, _)
                    | Ev::Set(c, ..)
                    | Ev::Removed(c, _)
                    | Ev::Meta(c, ..)
                    | Ev::Deleted(c)
                    | Ev::Restored(c, ..) => Some((c.clone(), Offset(o))),
                    _ => None,
                })
                .collect();
            assert_eq!(versions, &changed, "{ctx}: receipt versions at {o}");
        }
        history.push(next);
        expected.push(evs);
    }
    if let Some(d) = history[live_last as usize].diff(&m.state()) {
        panic!("{ctx}: the live store differs from the model: {d}");
    }
    rt.block_on(m.close()).expect("close");

    let mut seen = Seen {
        commits: live_last,
        ..Seen::default()
    };
    for (k, (mode, acked, image)) in images.into_iter().enumerate() {
        let ctx = format!("{ctx}, image {k} ({mode:?})");
        let check = Check {
            ctx: &ctx,
            cfg: &cfg,
            history: &history,
            expected: &expected,
            live_last,
            twice: seed.is_multiple_of(10) && k == 0,
        };
        let killed = mode == CrashMode::ProcessKill;
        rt.block_on(check.image(image, killed, &acked, &mut seen));
    }
    seen
}

/// What the images of a seed are checked against.
struct Check<'a> {
    ctx: &'a str,
    cfg: &'a ctxlog::Config,
    history: &'a [Model],
    expected: &'a [Vec<Ev>],
    live_last: u64,
    /// Reopen once more after a commit on the reopened image.
    twice: bool,
}

impl Check<'_> {
    /// Reopens a crash image taken when the commits `acked` were acknowledged, and checks it.
    async fn image(&self, image: MemStorage, killed: bool, acked: &[u64], seen: &mut Seen) {
        let ctx = self.ctx;
        let mut cfg = self.cfg.clone();
        cfg.storage = Arc::new(image.clone());
        let m2 = create_manager_with_config(cfg.clone())
            .await
            .unwrap_or_else(|e| panic!("{ctx}: reopening the crash image: {e}"));
        let last = m2.last_offset().0;
        let max_acked = acked.iter().copied().max().unwrap_or(0);
        assert!(
            last >= max_acked,
            "{ctx}: acknowledged commit {max_acked} lost: the image ends at {last}"
        );
        assert!(
            last <= self.live_last,
            "{ctx}: {last} > live {}",
            self.live_last
        );
        let commits = m2.events(Offset(1)).await.expect("read the log back");
        assert_eq!(commits.len() as u64, last, "{ctx}: commits in the image");
        for (i, c) in commits.iter().enumerate() {
            let o = i as u64 + 1;
            assert_eq!(c.offset.0, o, "{ctx}");
            let got: Vec<Ev> = c.events.iter().map(ev_of).collect();
            assert_eq!(
                got, self.expected[o as usize],
                "{ctx}: commit {o} is not whole"
            );
        }
        if let Some(d) = self.history[last as usize].diff(&m2.state()) {
            panic!("{ctx}: reopened state is not the model at {last}: {d}");
        }
        let r = m2.create("after-crash").await.expect("commit after reopen");
        assert_eq!(r.offset.0, last + 1, "{ctx}: offset after reopen");
        let report = m2.open_report().clone();
        let rotated = m2.log().segments().len() > 1;
        let after = m2.state();
        m2.close().await.expect("close");
        if self.twice {
            // And once more: the repaired store reopens to the same state.
            let m3 = create_manager_with_config(cfg.clone())
                .await
                .expect("reopen");
            reliability_support::assert_same_state(&after, &m3.state(), ctx);
            m3.close().await.expect("close");
        }
        if killed {
            // The process was killed and restarted in the same boot; then the power goes. The
            // restarted store must have made what it showed, and the commit it acknowledged,
            // durable (open syncs wal/: a kill between a new segment's creation and its
            // directory sync once lost the segment here).
            cfg.storage = Arc::new(image.crash_image(CrashMode::DropUnsynced));
            let m3 = create_manager_with_config(cfg)
                .await
                .unwrap_or_else(|e| panic!("{ctx}: power loss after the restart: {e}"));
            if let Some(d) = state_diff(&after, &m3.state()) {
                panic!("{ctx}: power loss after the restart: {d}");
            }
            m3.close().await.expect("close");
            seen.restarts_then_power_loss += 1;
        }
        let acked: BTreeSet<u64> = acked.iter().copied().collect();
        let unacked = (1..=last).filter(|o| !acked.contains(o)).count() as u64;
        seen.images += 1;
        seen.mid_run += u64::from((acked.len() as u64) < self.live_last);
        seen.torn += u64::from(report.log.torn_tail.is_some());
        seen.from_snapshot += u64::from(report.snapshot.is_some());
        seen.rotated += u64::from(rotated);
        seen.with_unacked += u64::from(unacked > 0);
        seen.unacked_present += unacked;
        seen.before_end += u64::from(last < self.live_last);
    }
}

#[test]
fn crash_images_keep_every_acknowledged_commit_whole() {
    let rt = runtime();
    let seeds = seeds(1_000, 10_000);
    let n = seeds.end - seeds.start;
    let started = std::time::Instant::now();
    let mut t = Seen::default();
    for_each_seed(TEST, seeds, |seed| {
        let s = run_seed(&rt, seed);
        t.commits += s.commits;
        t.images += s.images;
        t.mid_run += s.mid_run;
        t.torn += s.torn;
        t.from_snapshot += s.from_snapshot;
        t.rotated += s.rotated;
        t.with_unacked += s.with_unacked;
        t.unacked_present += s.unacked_present;
        t.before_end += s.before_end;
        t.restarts_then_power_loss += s.restarts_then_power_loss;
    });
    let time = started.elapsed();
    eprintln!(
        "{n} seeds, {} crash images in {time:.1?}: {} commits; images: {} taken before the \
         last ack, {} with a torn tail repaired, {} reopened from a snapshot, {} rotated, {} \
         with unacknowledged commits recovered ({} in all), {} before the run's last commit",
        t.images,
        t.commits,
        t.mid_run,
        t.torn,
        t.from_snapshot,
        t.rotated,
        t.with_unacked,
        t.unacked_present,
        t.before_end
    );
    figure(TEST, "seeds", n);
    figure(TEST, "crash_images", t.images);
    figure(TEST, "commits", t.commits);
    figure(TEST, "images_before_last_ack", t.mid_run);
    figure(TEST, "images_torn_tail_repaired", t.torn);
    figure(TEST, "images_reopened_from_snapshot", t.from_snapshot);
    figure(TEST, "images_rotated", t.rotated);
    figure(TEST, "unacked_commits_recovered_whole", t.unacked_present);
    figure(TEST, "kills_then_power_loss", t.restarts_then_power_loss);
    figure(TEST, "seconds", format!("{:.1}", time.as_secs_f64()));
    if n >= 200 && !single_seed() {
        let i = t.images;
        // Coverage floors, not targets: how far the writers get before a crash depends on the
        // machine's speed, so these only guard against a harness that stopped exercising a path.
        assert!(
            t.mid_run * 10 >= i,
            "only {} of {i} images mid-run",
            t.mid_run
        );
        assert!(t.torn > 0, "no torn tail in {i} images");
        assert!(
            t.from_snapshot * 10 >= i,
            "only {} of {i} from a snapshot",
            t.from_snapshot
        );
        assert!(t.rotated * 10 >= i, "only {} of {i} rotated", t.rotated);
        assert!(
            t.with_unacked > 0,
            "no unacknowledged commit survived in {i} images"
        );
        assert!(t.before_end > 0, "no image lost an unacknowledged commit");
    }
}
