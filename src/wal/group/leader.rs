//! Write groups: in `Always` mode, blocking appenders commit each other's records on their own
//! threads, with no writer, sync or ack thread in between.
//!
//! An appender prepares its request into the log's buffer under the log's mutex, which puts it
//! in the *pending generation*. If no one is leading, it leads: it writes the whole generation
//! with one write, releases the mutex, `fdatasync`s, completes every ack of the generation in
//! order, and publishes the generation as done. Appenders that arrive meanwhile join the next
//! generation and sleep; when the leader is done it wakes them all with one `futex` wake on a
//! shared word (one per generation parity), and hands the lead of the next generation to one
//! of its waiters (a bit in that generation's word), unless an appender it just released gets
//! there first.
//!
//! Why a shared word and not one wake-up per appender (`oneshot`, `park`): a woken appender
//! returns without touching any lock, and the leader makes one system call for the whole
//! generation. In a prototype on the bench machine (2 vCPUs, ~100 µs `fdatasync`; see
//! `docs/PERFORMANCE.md`, "Write groups"), per-appender wake-ups, or a condition variable that
//! makes every woken appender take the mutex again, did 15–18x and 7–8x the raw sync rate with
//! 64 closed-loop writers; the shared word did 20–21x.
//!
//! **The cohort wait.** Closed-loop appenders released together come back together, just after
//! the next generation started its sync: they then wait out a whole sync before theirs starts,
//! so the writers split into two cohorts that take turns and a sync carries at most half of
//! them. A leader that knows more appenders are on their way (as many as the last generation
//! released, plus those already pending) waits for them on a condition variable, for at most
//! half of the last sync's duration (and never more than [`COHORT_WAIT_MAX`]), before it
//! writes; the participant that completes the cohort wakes it. One sync then carries all of
//! them: with 16 writers, from 8 to 16 records per sync and from 7x to 8–9x the raw sync rate
//! on the bench machine. (Yielding instead of sleeping was 10% faster on a quiet machine and 7x
//! slower next to two CPU-bound processes: a yield can give the CPU away for a whole slice.)
//!
//! **Order and the pipeline.** A group only forms while no batch of the writer thread's
//! pipeline awaits its sync or acknowledgement, and the writer thread adds the requests it
//! takes to the pending generation, and waits for it, instead of writing them while a group
//! is active. So group
//! and pipeline batches are never in flight at the same time, one leader at a time writes,
//! syncs and completes, and acknowledgements stay in offset order. A failed sync poisons the
//! log through the same call as the sync thread's, before anyone is answered.

use super::{sync_and_complete, Completer, Log, Stage, Writer};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, MutexGuard};
use std::time::{Duration, Instant};

/// The bit of a generation word that hands the lead to a waiter of that generation.
const LEAD: u32 = 1 << 31;

/// The longest a leader waits for the appenders the previous generation released.
const COHORT_WAIT_MAX: Duration = Duration::from_micros(200);

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
    /// Participants the next leader may expect: those already pending when the last generation
    /// was done, plus those it released (closed-loop appenders come back at once).
    want: usize,
    /// How long the last sync took: bounds the cohort wait.
    last_sync: Duration,
    /// A leader waits on `Writer::cohort` for `want` participants.
    awaiting_cohort: bool,
}

impl<A> Default for Group<A> {
    fn default() -> Self {
        Group {
            pending: Vec::new(),
            blocking: 0,
            gen: 1,
            done: 0,
            leading: false,
            want: 0,
            last_sync: Duration::ZERO,
            awaiting_cohort: false,
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
    /// Returns the number of pending acks before, for [`Group::joined`].
    pub(super) fn enter(&mut self) -> usize {
        self.blocking += 1;
        self.pending.len()
    }

    /// After [`Group::enter`] and preparing: the generation the participant waits for, or
    /// `None` (and it is not counted) if nothing it prepared is pending (every request refused
    /// and answered). `cohort`: what a leader waiting for its cohort sleeps on, woken once the
    /// last expected participant joined.
    pub(super) fn joined(&mut self, pending_before: usize, cohort: &Condvar) -> Option<u64> {
        if self.pending.len() == pending_before {
            self.blocking -= 1;
            return None;
        }
        if self.awaiting_cohort && self.blocking == self.want {
            cohort.notify_one();
        }
        Some(self.gen)
    }
}

/// One word per generation parity (a waiter of generation `g` sleeps on word `g % 2`): the low
/// 31 bits of the last generation of that parity that is done, and [`LEAD`] while the lead of
/// the pending generation is handed to its waiters. Two are enough: only the generation being
/// committed and the pending one have waiters.
#[derive(Default)]
pub(super) struct Words([AtomicU32; 2]);

fn low(gen: u64) -> u32 {
    gen as u32 & !LEAD
}

impl Words {
    fn word(&self, gen: u64) -> &AtomicU32 {
        &self.0[(gen & 1) as usize]
    }

    /// Whether `value` (of `gen`'s word) says `gen` is done: its generation is `gen` or later
    /// (compared modulo 2^31; at most one generation apart in practice).
    fn done(value: u32, gen: u64) -> bool {
        ((value & !LEAD).wrapping_sub(low(gen)) & !LEAD) < 1 << 30
    }

    /// Records `gen` done. Called under the log's mutex, in generation order, so that a word
    /// only moves forward: a late store could otherwise erase the lead handed to `gen + 2`
    /// (same word) or set the word back.
    fn mark_done(&self, gen: u64) {
        let before = self.word(gen).swap(low(gen), Ordering::AcqRel);
        // The word said the previous generation of this parity (or nothing yet), and no lead.
        debug_assert!(
            before == low(gen.saturating_sub(2)),
            "generation {gen} done over word {before:#x}"
        );
    }

    /// Wakes every waiter of `gen`'s word (after [`Words::mark_done`], outside the mutex).
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

    /// Sleeps until `gen` is done or its lead is handed out.
    fn wait(&self, gen: u64) {
        let word = self.word(gen);
        loop {
            let value = word.load(Ordering::Acquire);
            if Self::done(value, gen) || value & LEAD != 0 {
                return;
            }
            atomic_wait::wait(word, value);
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
}

impl<S: Stage, C> Drop for Leading<'_, S, C> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut log = self.writer.lock();
        if log.group.gen == self.gen {
            log.group.leading = false;
            let waiting = !log.group.pending.is_empty();
            if waiting {
                self.writer.words.hand_lead(self.gen);
            }
            drop(log);
            if waiting {
                self.writer.words.wake_one(self.gen);
            }
        } else {
            self.writer
                .pipeline
                .shared
                .poison("write", std::io::ErrorKind::Other);
            self.writer.finish(log, self.gen, 0, None);
        }
    }
}

impl<S: Stage, C> Writer<S, C> {
    /// Marks `gen` done, wakes its waiters and hands the lead of the pending generation, if
    /// any, to its waiters. `released`: blocking participants of `gen`; `took`: its sync.
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
        group.want = group.blocking + released;
        if let Some(took) = took {
            group.last_sync = took;
        }
        let next = group.gen;
        let waiting = !group.pending.is_empty();
        // Whoever put requests in the pending generation is counted before it prepares them,
        // waits for it and may take the lead.
        debug_assert!(
            !waiting || group.blocking > 0,
            "a pending generation has a participant to lead it"
        );
        if waiting {
            self.words.hand_lead(next);
        }
        self.words.mark_done(gen);
        drop(log);
        self.words.wake_all(gen);
        if waiting {
            self.words.wake_one(next);
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
        let before = group.enter();
        core.take(request, &mut group.pending);
        if let Some(gen) = group.joined(before, &self.cohort) {
            self.await_generation(log, gen);
        }
        Ok(())
    }

    /// Returns once generation `gen`, which the caller joined, is done: sleeps, or leads it
    /// when no one else does.
    pub(super) fn await_generation<'a>(&'a self, mut log: MutexGuard<'a, Log<S>>, gen: u64) {
        loop {
            if log.group.done >= gen {
                return;
            }
            if !log.group.leading && log.group.gen == gen {
                return self.lead(log, false);
            }
            drop(log);
            self.words.wait(gen);
            log = self.lock();
        }
    }

    /// Closing (the writer thread, once the queue is closed): waits for a leader at work,
    /// commits what is still pending itself, and returns the log's guard with the group idle,
    /// so that the log can be taken from under any later appender.
    pub(super) fn drain_group(&self) -> MutexGuard<'_, Log<S>> {
        loop {
            let log = self.lock();
            if log.group.leading {
                let taken = log.group.gen - 1;
                drop(log);
                self.words.wait(taken);
            } else if log.group.active() {
                self.lead(log, true);
            } else {
                return log;
            }
        }
    }

    /// Commits the pending generation, and hands the lead of the next one to its waiters.
    /// `closing`: the writer thread draining the group at close, which waits for no one.
    fn lead<'a>(&'a self, log: MutexGuard<'a, Log<S>>, closing: bool) {
        let gen = log.group.gen;
        // Declared before `log` so that, unwinding, the mutex is released before it runs.
        let leading = Leading { writer: self, gen };
        let mut log = log;
        log.group.leading = true;
        self.words.word(gen).fetch_and(!LEAD, Ordering::AcqRel);
        if !closing {
            log = self.wait_for_cohort(log);
        }
        let Log { core, group } = &mut *log;
        let acks = std::mem::take(&mut group.pending);
        let released = std::mem::take(&mut group.blocking);
        group.gen += 1;
        let core = core
            .as_mut()
            .expect("the log closes only once its write group is done");
        let batch = core.write(acks);
        drop(log);

        let started = Instant::now();
        sync_and_complete(&self.pipeline, vec![batch]);
        let took = started.elapsed();
        std::mem::forget(leading);
        self.finish(self.lock(), gen, released, Some(took));
    }

    /// Waits for the appenders the last generation released to join, for at most half the
    /// last sync ([`COHORT_WAIT_MAX`] at most). Sleeping (not yielding) keeps the bound on a
    /// loaded machine, where a yield can hand the CPU to another process for a whole slice.
    fn wait_for_cohort<'a>(&'a self, mut log: MutexGuard<'a, Log<S>>) -> MutexGuard<'a, Log<S>> {
        if log.group.blocking >= log.group.want {
            return log;
        }
        let deadline = Instant::now() + (log.group.last_sync / 2).min(COHORT_WAIT_MAX);
        log.group.awaiting_cohort = true;
        while log.group.blocking < log.group.want {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            log = (self.cohort.wait_timeout(log, left))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        log.group.awaiting_cohort = false;
        log
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
            (1 << 31) - 1,
            1 << 31,
            (1 << 31) + 1,
            u64::MAX - 1,
        ] {
            assert!(Words::done(low(gen), gen), "{gen}");
            assert!(Words::done(low(gen.wrapping_add(2)), gen), "{gen} + 2");
            assert!(!Words::done(low(gen.wrapping_sub(2)), gen), "{gen} - 2");
            assert!(
                !Words::done(low(gen.wrapping_sub(2)) | LEAD, gen),
                "lead {gen}"
            );
        }
        // The initial words (0) say neither generation 1 nor 2 is done.
        assert!(!Words::done(0, 1));
        assert!(!Words::done(0, 2));
    }

    #[test]
    fn wait_returns_once_done_or_led() {
        let words = Words::default();
        words.mark_done(1);
        words.mark_done(3);
        words.wait(3);
        words.wait(1);
        words.word(4).fetch_or(LEAD, Ordering::AcqRel);
        words.wait(4);
    }
}
