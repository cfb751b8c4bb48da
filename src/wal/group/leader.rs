//! Write groups: in `Always` mode, blocking appenders commit each other's records on their own
//! threads, with no writer, sync or ack thread in between.
//!
//! An appender prepares its request into the log's buffer under the log's mutex, which puts it
//! in the *pending generation*. The first to join *claims* it; the others sleep. Once the
//! generation is ready (no other generation is being written, and its cohort, below, is done),
//! one participant leads it: it writes the whole generation with one write, releases the
//! mutex, `fdatasync`s, completes every ack of the generation in order, and publishes the
//! generation as done, waking every waiter with one `futex` wake on a shared word (one per
//! generation parity).
//!
//! Why a shared word and not one wake-up per appender (`oneshot`, `park`): a woken appender
//! returns without touching any lock, and the leader makes one system call for the whole
//! generation. In a prototype on the bench machine (2 vCPUs, ~100 µs `fdatasync`; see
//! `docs/PERFORMANCE.md`, "Write groups"), per-appender wake-ups, or a condition variable that
//! makes every woken appender take the mutex again, did 15–18x and 7–8x the raw sync rate with
//! 64 closed-loop writers; the shared word did 20–21x.
//!
//! **The cohort.** Closed-loop appenders released together come back together, just after
//! the next generation started its sync: they then wait out a whole sync before theirs starts,
//! so the writers split into two cohorts that take turns and a sync carries at most half of
//! them. So when a generation is done, the pending one expects the appenders it released
//! (plus those already pending), until a deadline: [`COHORT_WAIT_PERCENT`] of the sync just
//! done, at most [`COHORT_WAIT_MAX`]. One sync then carries all of them: with 16 writers, 16
//! records per sync instead of 8. It expects only the share of them that came back before the
//! deadline last time: appenders that do other work between appends (a request each, say) come
//! back later or not at all, and a generation that waited for them would only add the wait to
//! every append (16 threads appending every millisecond: 330–350 µs instead of 180–200 µs on
//! average on the bench machine).
//!
//! **Who leads: the claimant, or whoever finds the generation ready.** The claimant sleeps on
//! a condition variable until the generation is ready. But a thread woken on a machine busy
//! with the appenders just released waits its turn for a CPU while the disk idles (on the
//! bench machine, a cohort wait bounded at ~55 µs took 120 µs). So a participant that joins
//! a ready generation, the one that completes the cohort or the first one past the deadline,
//! takes it over and writes it at once, on the CPU it already has; the claimant notices when
//! it wakes and waits like any participant. Counting the deadline from the moment the last
//! generation was done, not from when a sleeping leader woke, has the same aim. With 16
//! writers this took the bench from 7.1–8.4x to 8.9–10.4x the raw sync rate (same runs,
//! alternating). Sleeping, not yielding: yielding was 10% faster on a quiet machine and 7x
//! slower next to two CPU-bound processes, since a yield can give the CPU away for a whole
//! slice.
//!
//! **Order and the pipeline.** A group only forms while no batch of the writer thread's
//! pipeline awaits its sync or acknowledgement, and the writer thread adds the requests it
//! takes to the pending generation, and waits for it, instead of writing them while a group
//! is active. So group
//! and pipeline batches are never in flight at the same time, one leader at a time writes,
//! syncs and completes, and acknowledgements stay in offset order. A failed sync poisons the
//! log through the same call as the sync thread's, before anyone is answered.

use super::cohort::cohort_wait;
#[cfg(doc)]
use super::cohort::{COHORT_WAIT_MAX, COHORT_WAIT_PERCENT};
use super::{Completer, Log, Stage, Writer};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

thread_local! {
    /// The write group (its writer's address) and generation the thread last joined.
    static LAST_JOINED: std::cell::Cell<(usize, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// The bit of a generation word that hands the lead to a waiter of that generation.
const LEAD: u32 = 1 << 31;

/// The bit of a generation word that says a thread sleeps on it, or is about to: a leader
/// that finds it clear makes no wake-up call (a lone appender: `pwrite` + `fdatasync` and no
/// other system call).
const WAITERS: u32 = 1 << 30;

/// The bits of a generation word that hold a generation (its low 30 bits).
const GEN_BITS: u32 = WAITERS - 1;

/// The group's state, under the log's mutex.
pub(super) struct Group<A> {
    /// Acks of requests prepared into the log's buffer and not yet written: generation `gen`.
    pending: Vec<A>,
    /// Participants waiting for `pending`: blocking appenders, and the writer thread for the
    /// queued requests it added. Each may lead it.
    blocking: usize,
    /// The pending generation. Generations start at 1 and are done in order.
    gen: u64,
    /// The last generation done: written, synced and completed.
    done: u64,
    /// A leader is between taking generation `gen - 1` and publishing it done.
    leading: bool,
    /// A participant claimed the lead of the pending generation (see [`Lead::Claim`]).
    claimed: bool,
    /// Participants the pending generation may expect: those already pending when the last
    /// generation was done, plus the share `back` of those it released.
    want: usize,
    /// The share of the participants a generation released that joined again within the wait
    /// it allowed them (last measured): about 1 for closed-loop appenders, which come back at
    /// once, and near 0 for appenders that do other work between appends, whose generations
    /// then wait for no one.
    back: f64,
    /// Participants the last generation done released.
    released: usize,
    /// Participants of the last generation done that joined again before `deadline`.
    returned: usize,
    /// When the pending generation stops waiting for `want` participants, and what `back` is
    /// measured against: [`COHORT_WAIT_PERCENT`] of the last sync after the last generation
    /// was done (`None` after a panic). When it expects no one, `want` is already met.
    deadline: Option<Instant>,
    /// Threads asleep on `Writer::cohort`: the claimant, and a claimant of the last generation
    /// that was taken over and has not noticed yet.
    sleepers: u32,
}

impl<A> Default for Group<A> {
    fn default() -> Self {
        Group {
            pending: Vec::new(),
            blocking: 0,
            gen: 1,
            done: 0,
            leading: false,
            claimed: false,
            want: 0,
            back: 1.0,
            released: 0,
            returned: 0,
            deadline: None,
            sleepers: 0,
        }
    }
}

impl<A> Group<A> {
    /// A generation is being committed or waits for its leader.
    pub(super) fn active(&self) -> bool {
        self.leading || !self.pending.is_empty()
    }

    /// Where the writer thread puts what it prepares while the group is active.
    pub(super) fn pending(&mut self) -> &mut Vec<A> {
        &mut self.pending
    }

    /// Counts a participant about to prepare requests into the pending generation, so that a
    /// pending generation always has one to lead it, even if preparing panics halfway.
    /// `last`: the generation the participant last joined, if known. Returns the number of
    /// pending acks before, for [`Group::joined`].
    pub(super) fn enter(&mut self, last: Option<u64>) -> usize {
        self.blocking += 1;
        let back_in_time = || self.deadline.is_some_and(|d| Instant::now() <= d);
        if last == Some(self.done) && back_in_time() {
            self.returned += 1;
        }
        self.pending.len()
    }

    /// After [`Group::enter`] and preparing: the generation the participant waits for, or
    /// `None` (and it is not counted) if nothing it prepared is pending (every request refused
    /// and answered).
    pub(super) fn joined(&mut self, pending_before: usize) -> Option<u64> {
        if self.pending.len() == pending_before {
            self.blocking -= 1;
            return None;
        }
        Some(self.gen)
    }

    /// A generation that released `released` participants is done: measures how many of the
    /// last one's came back in time, and sets whom the pending generation expects, and until
    /// when (`wait` from now; `None`: no one).
    fn expect_cohort(&mut self, released: usize, wait: Option<Duration>) {
        if self.released > 0 {
            self.back = (self.returned as f64 / self.released as f64).min(1.0);
        }
        self.released = released;
        self.returned = 0;
        let expected = (released as f64 * self.back).round() as usize;
        self.want = self.blocking + expected;
        self.deadline = wait.map(|w| Instant::now() + w);
    }

    /// The pending generation has the participants it expects, or has waited long enough.
    fn cohort_done(&self) -> bool {
        self.blocking >= self.want || self.deadline.is_none_or(|d| Instant::now() >= d)
    }

    /// The pending generation may be written now: no other is, and its cohort is done.
    fn ready(&self) -> bool {
        !self.leading && self.cohort_done()
    }
}

/// How a thread comes to lead the pending generation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lead {
    /// The first participant: sleeps until the generation is ready, then writes it, unless
    /// another participant took it over meanwhile.
    Claim,
    /// A participant that joined a ready generation while its claimant sleeps: it writes at
    /// once, on the CPU it already has. The claimant would first have to be scheduled, behind
    /// the appenders the last generation woke, while the disk idles.
    TakeOver,
    /// The writer thread draining the group at close: waits for the generation being written,
    /// not for a cohort.
    Close,
}

/// One word per generation parity (a waiter of generation `g` sleeps on word `g % 2`): the low
/// 30 bits of the last generation of that parity that is done, [`LEAD`] while the lead of the
/// pending generation is handed to its waiters, and [`WAITERS`]. Two are enough: only the
/// generation being committed and the pending one have waiters.
#[derive(Default)]
pub(super) struct Words([AtomicU32; 2]);

fn low(gen: u64) -> u32 {
    gen as u32 & GEN_BITS
}

impl Words {
    fn word(&self, gen: u64) -> &AtomicU32 {
        &self.0[(gen & 1) as usize]
    }

    /// Whether `value` (of `gen`'s word) says `gen` is done: its generation is `gen` or later
    /// (compared modulo 2^30; at most one generation apart in practice).
    fn done(value: u32, gen: u64) -> bool {
        ((value & GEN_BITS).wrapping_sub(low(gen)) & GEN_BITS) < 1 << 29
    }

    /// Records `gen` done, and says whether a thread sleeps on its word (then
    /// [`Words::wake_all`]). Called under the log's mutex, in generation order, so that a word
    /// only moves forward: a late store could otherwise erase the lead handed to `gen + 2`
    /// (same word) or set the word back.
    #[must_use]
    fn mark_done(&self, gen: u64) -> bool {
        let before = self.word(gen).swap(low(gen), Ordering::AcqRel);
        // The word said the previous generation of this parity (or nothing yet), and no lead.
        debug_assert!(
            before & !WAITERS == low(gen.saturating_sub(2)),
            "generation {gen} done over word {before:#x}"
        );
        before & WAITERS != 0
    }

    /// Wakes every waiter of `gen`'s word (after [`Words::mark_done`] said there are some,
    /// outside the mutex).
    fn wake_all(&self, gen: u64) {
        atomic_wait::wake_all(self.word(gen));
    }

    /// Hands the lead of pending generation `gen` to its waiters (under the log's mutex).
    fn hand_lead(&self, gen: u64) {
        self.word(gen).fetch_or(LEAD, Ordering::AcqRel);
    }

    /// Wakes one waiter of `gen`'s word to take the lead (after [`Words::hand_lead`]).
    fn wake_one(&self, gen: u64) {
        atomic_wait::wake_one(self.word(gen));
    }

    /// Sleeps until `gen` is done or its lead is handed out. Sets [`WAITERS`] first: the
    /// `futex` wait sleeps only while the word still holds the value with the bit, so a
    /// leader that swapped the word before seeing the bit has already changed the value.
    fn wait(&self, gen: u64) {
        let word = self.word(gen);
        let mut value = word.load(Ordering::Acquire);
        loop {
            if Self::done(value, gen) || value & LEAD != 0 {
                return;
            }
            if value & WAITERS == 0 {
                let flagged = value | WAITERS;
                let set =
                    word.compare_exchange(value, flagged, Ordering::AcqRel, Ordering::Acquire);
                if let Err(now) = set {
                    value = now;
                    continue;
                }
                value = flagged;
            }
            atomic_wait::wait(word, value);
            value = word.load(Ordering::Acquire);
        }
    }
}

/// Armed while a thread leads generation `gen`: if it panics, the group is left usable. A
/// generation not taken yet goes back to its participants (one of them leads it); a taken one
/// is marked done (its acks went with the unwinding: their appenders get `Closed`) and the log
/// is poisoned, since what reached the file is unknown.
struct Leading<'a, S: Stage, C> {
    writer: &'a Writer<S, C>,
    gen: u64,
    /// This thread claimed the generation (a take-over leaves the claim to its claimant).
    claimant: bool,
    /// This thread took the generation: it is being written or synced.
    taken: bool,
}

impl<S: Stage, C> Drop for Leading<'_, S, C> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut log = self.writer.lock();
        if !self.taken {
            if !self.claimant || log.group.gen != self.gen {
                return;
            }
            log.group.claimed = false;
            let waiting = !log.group.pending.is_empty();
            if waiting {
                self.writer.words.hand_lead(self.gen);
            }
            drop(log);
            if waiting {
                self.writer.words.wake_one(self.gen);
            }
        } else {
            self.writer.pipeline.shared.poison_unwinding("write");
            self.writer.finish(log, self.gen, 0, None);
        }
    }
}

impl<S: Stage, C> Writer<S, C> {
    /// Marks `gen` done, wakes its waiters, and starts the pending generation's wait for its
    /// cohort (woken, its claimant waits for it or writes at once). `released`: blocking
    /// participants of `gen`; `took`: its sync (`None`: no cohort wait).
    fn finish(
        &self,
        mut log: MutexGuard<'_, Log<S>>,
        gen: u64,
        released: usize,
        took: Option<Duration>,
    ) {
        let group = &mut log.group;
        group.done = gen;
        group.leading = false;
        let wait = took.map(cohort_wait);
        group.expect_cohort(released, wait);
        // Whoever put requests in the pending generation is counted before it prepares them,
        // and claims it or waits for it (a claimant that panicked handed the lead on).
        debug_assert!(
            group.pending.is_empty() || group.blocking > 0,
            "a pending generation has a participant to lead it"
        );
        if group.sleepers > 0 {
            self.cohort.notify_all();
        }
        let waiting = self.words.mark_done(gen);
        drop(log);
        if waiting {
            self.words.wake_all(gen);
        }
    }
}

impl<S, C> Writer<S, C>
where
    S: Stage,
    C: Completer<Ack = S::Ack>,
{
    /// Commits `request` in a write group on the calling thread: returns once it is synced and
    /// completed (or refused). Hands the request back when the log is closed or the pipeline
    /// has batches in flight.
    pub(super) fn join_group(&self, request: S::Request) -> Result<(), S::Request> {
        let mut log = self.lock();
        let Log { core, group } = &mut *log;
        let Some(core) = core.as_mut() else {
            return Err(request);
        };
        if self.pipeline.in_flight.load(Ordering::Acquire) != 0 {
            return Err(request);
        }
        // The generation this thread last joined, in this log: is it coming back?
        let me = self as *const Self as usize;
        let last = LAST_JOINED.get();
        let before = group.enter((last.0 == me).then_some(last.1));
        core.take(request, &mut group.pending);
        if let Some(gen) = group.joined(before) {
            LAST_JOINED.set((me, gen));
            self.await_generation(log, gen);
        }
        Ok(())
    }

    /// Returns once generation `gen`, which the caller joined, is done: claims its lead if no
    /// one has, takes it over if it is ready, or sleeps.
    pub(super) fn await_generation<'a>(&'a self, mut log: MutexGuard<'a, Log<S>>, gen: u64) {
        loop {
            if log.group.done >= gen {
                return;
            }
            if log.group.gen == gen {
                let how = match (log.group.claimed, log.group.ready()) {
                    (false, _) => Some(Lead::Claim),
                    (true, true) => Some(Lead::TakeOver),
                    (true, false) => None,
                };
                if let Some(how) = how {
                    match self.lead(log, how) {
                        None => return,
                        Some(taken_over) => log = taken_over,
                    }
                    continue;
                }
            }
            drop(log);
            self.words.wait(gen);
            log = self.lock();
        }
    }

    /// Closing (the writer thread, once the queue is closed): waits for a leader at work or a
    /// claimant, commits what is still pending itself, and returns the log's guard with the
    /// group idle, so that the log can be taken from under any later appender.
    pub(super) fn drain_group(&self) -> MutexGuard<'_, Log<S>> {
        loop {
            let log = self.lock();
            let group = &log.group;
            if group.leading || group.claimed {
                let awaited = if group.leading {
                    group.gen - 1
                } else {
                    group.gen
                };
                drop(log);
                self.words.wait(awaited);
            } else if group.active() {
                drop(self.lead(log, Lead::Close));
            } else {
                return log;
            }
        }
    }

    /// Commits the pending generation once it is ready, and marks it done. Returns the guard,
    /// without having led, if another participant took the generation over meanwhile.
    fn lead<'a>(
        &'a self,
        log: MutexGuard<'a, Log<S>>,
        how: Lead,
    ) -> Option<MutexGuard<'a, Log<S>>> {
        let gen = log.group.gen;
        // Declared before `log` so that, unwinding, the mutex is released before it runs.
        let mut leading = Leading {
            writer: self,
            gen,
            claimant: how != Lead::TakeOver,
            taken: false,
        };
        let mut log = log;
        if how != Lead::TakeOver {
            log.group.claimed = true;
            self.words.word(gen).fetch_and(!LEAD, Ordering::AcqRel);
            match self.wait_for_turn(log, gen, how == Lead::Close) {
                Ok(ready) => log = ready,
                Err(taken_over) => {
                    std::mem::forget(leading);
                    return Some(taken_over);
                }
            }
        }
        let Log { core, group } = &mut *log;
        debug_assert!(!group.leading && group.gen == gen, "one leader at a time");
        group.leading = true;
        group.claimed = false;
        leading.taken = true;
        let acks = std::mem::take(&mut group.pending);
        let released = std::mem::take(&mut group.blocking);
        group.gen += 1;
        let core = core
            .as_mut()
            .expect("the log closes only once its write group is done");
        let batch = core.write(acks, Vec::new());
        drop(log);

        let started = Instant::now();
        self.pipeline.sync_and_complete(vec![batch]);
        let took = started.elapsed();
        std::mem::forget(leading);
        self.finish(self.lock(), gen, released, Some(took));
        None
    }

    /// The claimant of generation `gen` (or the closing writer thread) sleeps until no other
    /// generation is being written and (unless `closing`) the cohort is done: the appenders
    /// the last generation released joined, or its deadline passed. `Err` if a participant
    /// took the generation over meanwhile. Sleeping (not yielding) keeps the bound on a loaded
    /// machine, where a yield can hand the CPU to another process for a whole slice.
    fn wait_for_turn<'a>(
        &'a self,
        mut log: MutexGuard<'a, Log<S>>,
        gen: u64,
        closing: bool,
    ) -> Result<MutexGuard<'a, Log<S>>, MutexGuard<'a, Log<S>>> {
        loop {
            let group = &mut log.group;
            if group.gen != gen {
                return Err(log);
            }
            if !group.leading && (closing || group.cohort_done()) {
                return Ok(log);
            }
            // While a generation is being written, its leader's `finish` wakes this thread;
            // otherwise the cohort is not done, so a deadline is set and ahead.
            let until = group.deadline.filter(|_| !group.leading);
            group.sleepers += 1;
            log = match until {
                None => self.cohort.wait(log).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let waited = self.cohort.wait_timeout(log, left);
                    waited.unwrap_or_else(|e| e.into_inner()).0
                }
            };
            log.group.sleepers -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_is_done_from_its_own_value_on() {
        for gen in [
            1u64,
            2,
            3,
            (1 << 30) - 1,
            1 << 30,
            (1 << 30) + 1,
            (1 << 31) - 1,
            1 << 31,
            (1 << 31) + 1,
            u64::MAX - 1,
        ] {
            assert!(Words::done(low(gen), gen), "{gen}");
            assert!(Words::done(low(gen) | WAITERS, gen), "{gen}, waited for");
            assert!(Words::done(low(gen.wrapping_add(2)), gen), "{gen} + 2");
            assert!(!Words::done(low(gen.wrapping_sub(2)), gen), "{gen} - 2");
            assert!(
                !Words::done(low(gen.wrapping_sub(2)) | LEAD | WAITERS, gen),
                "lead {gen}"
            );
        }
        // The initial words (0) say neither generation 1 nor 2 is done.
        assert!(!Words::done(0, 1));
        assert!(!Words::done(0, 2));
    }

    #[test]
    fn a_cohort_expects_only_the_appenders_that_came_back_in_time() {
        let long = Some(Duration::from_secs(3600));
        // Generation 1 released 3 appenders: the first time, all are expected.
        let mut g = Group::<()> {
            done: 1,
            ..Group::default()
        };
        g.expect_cohort(3, long);
        assert_eq!((g.want, g.deadline.is_some()), (3, true));
        for _ in 0..3 {
            assert!(!g.cohort_done());
            g.enter(Some(1));
        }
        assert!(g.cohort_done());
        // They came back in time: generation 2's 3 are expected too. One comes back in time,
        // one after the deadline, one from an older generation, and a new appender joins.
        (g.blocking, g.done) = (0, 2);
        g.expect_cohort(3, long);
        assert_eq!((g.back, g.want), (1.0, 3));
        g.enter(Some(2));
        g.enter(Some(1));
        g.enter(None);
        g.deadline = Some(Instant::now() - Duration::from_millis(1));
        g.enter(Some(2));
        // One of 3 came back in time: of generation 3's 3, one is expected.
        (g.blocking, g.done) = (0, 3);
        g.expect_cohort(3, long);
        assert_eq!(g.want, 1);
        assert!(g.deadline.is_some() && !g.cohort_done());
        // Past its deadline, it waits no more; nor does the late one count as back.
        g.deadline = Some(Instant::now() - Duration::from_millis(1));
        assert!(g.cohort_done(), "past its deadline, a cohort waits no more");
        g.enter(Some(3));
        // None of them came back in time: generation 4's cohort waits for no one.
        (g.blocking, g.done) = (0, 4);
        g.expect_cohort(3, long);
        assert_eq!((g.back, g.want), (0.0, 0));
        assert!(g.cohort_done());
        // Nor does a generation after a panic (no sync time).
        g.expect_cohort(3, None);
        assert!(g.deadline.is_none() && g.cohort_done());
    }

    /// Spins until `cond` holds, failing after 10 s instead of hanging.
    fn until(cond: impl Fn() -> bool) {
        let started = Instant::now();
        while !cond() {
            assert!(started.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::yield_now();
        }
    }

    #[test]
    fn wait_returns_once_done_or_led() {
        let words = Words::default();
        assert!(!words.mark_done(1), "no one waits");
        assert!(!words.mark_done(3), "no one waits");
        words.wait(3);
        words.wait(1);
        words.word(4).fetch_or(LEAD, Ordering::AcqRel);
        words.wait(4);
        // A waiter sets the bit, and the next generation done on its word says so.
        let flagged = |gen| until(|| words.word(gen).load(Ordering::Acquire) & WAITERS != 0);
        std::thread::scope(|s| {
            s.spawn(|| words.wait(5));
            flagged(5);
            assert!(words.mark_done(5), "a thread waits for generation 5");
            words.wake_all(5);
        });
        assert!(!words.mark_done(7), "no one waits any more");
        // The lead handed out and taken back (a claimant that panicked, and the waiter that
        // claims after it) keeps the bit: the waiters still asleep are woken when the
        // generation is done.
        words.word(4).fetch_and(!LEAD, Ordering::AcqRel);
        assert!(!words.mark_done(2) && !words.mark_done(4));
        std::thread::scope(|s| {
            s.spawn(|| words.wait(6));
            s.spawn(|| words.wait(6));
            flagged(6);
            words.hand_lead(6);
            words.wake_one(6);
            words.word(6).fetch_and(!LEAD, Ordering::AcqRel);
            assert!(words.mark_done(6), "the bit outlived the lead");
            words.wake_all(6);
        });
    }
}
