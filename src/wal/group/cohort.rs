//! The pipeline's cohort: the tokio tasks one sync released, waited for by the next sync.
//!
//! Closed-loop async appenders (a task that appends, awaits the ack, appends again) have the
//! write groups' problem (see `leader`): the tasks one sync releases come back while the next
//! sync runs, wait out all of it, and the tasks split into two halves that take turns, each
//! sync carrying half of them. Worse, the first task back finds the pipeline empty and the
//! writer thread syncs it *alone*, by itself. On the bench machine 16 tasks made 10 records
//! per sync and 7.7x the raw sync rate, where 16 blocking threads in write groups made 16.
//!
//! So, as in a write group, the sync after a sync that released a cohort of tasks waits for
//! the share of them that came back in time last time, until [`COHORT_WAIT_PERCENT`] of the
//! sync just done, at most [`COHORT_WAIT_MAX`], and the writer thread does not sync alone
//! while such a cohort is due (it hands its batch to the sync thread, which waits). A lone task
//! is no cohort: it keeps the writer thread's own sync, two thread hand-offs per commit, not
//! four.
//!
//! A blocking appender tells a returner by the generation it last joined, in a thread-local.
//! A task has no thread of its own; it is told by its `tokio::task::Id` instead, carried with
//! each request. A request not from a task (`block_on`, a plain thread) is never a returner.
//! The writer thread counts the tasks of each batch it writes (`Cohort::arrived`), whether
//! it syncs the batch alone or hands it on; whoever syncs calls `Cohort::released` before
//! acknowledging, so that no returner can arrive before it is expected. Only a task with no
//! other request written and not yet synced is released: one with a second request still on
//! its way (`join!` of two appends, a batch split across syncs) cannot come back before that
//! one is synced too, and waiting for it would only cost the deadline. Requests a stage
//! refuses at once (a version conflict, say) are answered without being written, and not
//! counted: their task may be back before the sync that holds nothing of it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::task::Id;

/// How long a generation or a sync waits for the appenders the last one released, after that
/// one was done, in percent of its sync: long enough for closed-loop appenders to come back
/// (they take about one sync with 16 or 64 writers on the bench machine), short enough to
/// bound what a sync pays when they do not.
pub(super) const COHORT_WAIT_PERCENT: u32 = 200;

/// The longest a generation or a sync waits for its cohort.
pub(super) const COHORT_WAIT_MAX: Duration = Duration::from_micros(300);

/// How long to wait for a cohort after a sync that took `took`.
pub(super) fn cohort_wait(took: Duration) -> Duration {
    (took * COHORT_WAIT_PERCENT / 100).min(COHORT_WAIT_MAX)
}

/// The pipeline's cohort, under its own mutex: taken once per batch by the writer thread, and
/// by the sync thread once per batch it receives and once per sync.
#[derive(Debug)]
pub(super) struct Cohort {
    /// Requests of each task written and not yet released (no entry: none).
    written: HashMap<Id, u32>,
    /// Tasks the last sync released that have not come back before `deadline` (yet).
    away: HashSet<Id>,
    /// How many tasks the last sync released: those no longer `away` came back in time.
    released: usize,
    /// The share of released tasks that came back in time, last measured (see `leader`'s
    /// `Group::back`): about 1 for closed-loop tasks, near 0 for tasks that do other work
    /// between appends, which then cost no wait.
    back: f64,
    /// Returners the next sync waits for.
    want: usize,
    /// Until when (`None`: no one is due).
    deadline: Option<Instant>,
}

impl Default for Cohort {
    fn default() -> Self {
        Cohort {
            written: HashMap::new(),
            away: HashSet::new(),
            released: 0,
            back: 1.0,
            want: 0,
            deadline: None,
        }
    }
}

impl Cohort {
    /// A sync that took `took`, done at `now`, is about to acknowledge the requests of
    /// `tasks` (one entry per request): measures how many of the last cohort came back in
    /// time, and sets whom the next sync waits for. A sync that holds no task's request (a
    /// write group's, a `block_on`'s) changes nothing.
    pub(super) fn released(&mut self, tasks: &[Id], took: Duration, now: Instant) {
        if tasks.is_empty() {
            return;
        }
        if self.released > 0 {
            self.back = self.returned() as f64 / self.released as f64;
        }
        self.away.clear();
        for id in tasks {
            let left = self.written.get_mut(id).map(|n| {
                *n -= 1;
                *n
            });
            debug_assert!(left.is_some(), "task {id} released without being written");
            if left.unwrap_or(0) == 0 {
                self.written.remove(id);
                self.away.insert(*id);
            }
        }
        self.released = self.away.len();
        self.want = (self.released as f64 * self.back).round() as usize;
        self.deadline = Some(now + cohort_wait(took));
    }

    /// The writer thread wrote a request of each of `tasks` at `now`: counts those the last
    /// sync released that came back before the deadline.
    pub(super) fn arrived(&mut self, tasks: &[Id], now: Instant) {
        let in_time = self.deadline.is_some_and(|d| now <= d);
        for id in tasks {
            *self.written.entry(*id).or_default() += 1;
            if in_time {
                self.away.remove(id);
            }
        }
    }

    /// Tasks of the last cohort that came back before the deadline.
    fn returned(&self) -> usize {
        self.released - self.away.len()
    }

    /// Until when the next sync still waits for returners (`None`: go).
    pub(super) fn waiting(&self, now: Instant) -> Option<Instant> {
        self.deadline
            .filter(|&d| self.returned() < self.want && now < d)
    }

    /// Whether a cohort of two or more is due back: the writer thread then hands its batch to
    /// the sync thread (which waits for the rest) instead of syncing it alone.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.want >= 2 && self.waiting(now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Task ids, from tasks of a throwaway runtime (an `Id` cannot be made otherwise).
    fn ids(n: usize) -> Vec<Id> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(tokio::spawn(async { tokio::task::id() }).await.unwrap());
            }
            out
        })
    }

    /// A sync of 100 µs: the next one waits until 200 µs after it.
    const SYNC: Duration = Duration::from_micros(100);

    fn us(t: Instant, us: u64) -> Instant {
        t + Duration::from_micros(us)
    }

    /// `tasks` written at `t` and released by a sync done at `t`.
    fn round(c: &mut Cohort, tasks: &[Id], t: Instant) {
        c.arrived(tasks, t);
        c.released(tasks, SYNC, t);
    }

    #[test]
    fn the_next_sync_waits_for_the_tasks_released_until_they_are_back() {
        let (t, t0) = (ids(4), Instant::now());
        let mut c = Cohort::default();
        assert!(c.waiting(t0).is_none(), "no cohort before the first sync");
        round(&mut c, &t, t0);
        let now = us(t0, 50);
        assert_eq!(c.waiting(now), Some(us(t0, 200)));
        assert!(c.due(now));
        c.arrived(&t[..3], now);
        assert!(c.due(now), "one is still away");
        c.arrived(&t[..1], now);
        assert!(c.due(now), "a task counts once");
        c.arrived(&t[3..], now);
        assert!(c.waiting(now).is_none() && !c.due(now), "all four are back");
    }

    #[test]
    fn a_lone_task_is_no_cohort_and_no_one_is_waited_for_past_the_deadline() {
        let (t, t0) = (ids(3), Instant::now());
        let mut c = Cohort::default();
        round(&mut c, &t[..1], t0);
        assert!(
            c.waiting(t0).is_some() && !c.due(t0),
            "one task: the writer syncs alone"
        );
        c.arrived(&t[..1], t0);
        round(&mut c, &t, t0);
        let late = us(t0, 201);
        assert!(c.waiting(late).is_none() && !c.due(late));
        c.arrived(&t, late);
        assert_eq!(c.returned(), 0, "late returners are not counted");
        assert_eq!(cohort_wait(Duration::from_millis(5)), COHORT_WAIT_MAX);
    }

    #[test]
    fn a_cohort_expects_only_the_share_that_came_back_in_time() {
        let (t, t0) = (ids(4), Instant::now());
        let mut c = Cohort::default();
        round(&mut c, &t, t0);
        c.arrived(&t[..2], t0);
        c.arrived(&t[2..], us(t0, 300));
        // Half came back in time: the next sync of four waits for two.
        c.released(&t, SYNC, us(t0, 400));
        assert_eq!(c.want, 2);
        c.arrived(&t[..1], us(t0, 450));
        assert!(c.waiting(us(t0, 450)).is_some());
        c.arrived(&t[1..2], us(t0, 450));
        assert!(c.waiting(us(t0, 450)).is_none());
        // None came back in time: no wait at all, until they come back in time again.
        let mut c = Cohort::default();
        round(&mut c, &t, t0);
        c.arrived(&t, us(t0, 300));
        c.released(&t, SYNC, us(t0, 400));
        assert_eq!(c.want, 0);
        assert!(c.waiting(us(t0, 400)).is_none() && !c.due(us(t0, 400)));
        c.arrived(&t, us(t0, 410));
        c.released(&t, SYNC, us(t0, 500));
        assert_eq!(
            c.want, 4,
            "all came back within the wait allowed: expected again"
        );
    }

    #[test]
    fn a_task_with_a_request_still_unsynced_is_not_released() {
        let (t, t0) = (ids(2), Instant::now());
        let mut c = Cohort::default();
        // Task 0 has two requests written, in two batches synced one after the other.
        c.arrived(&[t[0], t[1]], t0);
        c.arrived(&[t[0]], t0);
        c.released(&[t[0], t[1]], SYNC, t0);
        assert_eq!((c.released, c.want), (1, 1), "only task 1 can come back");
        c.released(&[t[0]], SYNC, t0);
        assert_eq!(c.released, 1, "now task 0 can");
        assert!(
            c.written.is_empty(),
            "nothing of theirs is written and unsynced"
        );
    }

    #[test]
    fn a_sync_of_no_task_changes_nothing() {
        let (t, t0) = (ids(3), Instant::now());
        let mut c = Cohort::default();
        round(&mut c, &t, t0);
        c.released(&[], SYNC, us(t0, 10));
        assert_eq!((c.released, c.want), (3, 3));
        assert_eq!(c.waiting(us(t0, 10)), Some(us(t0, 200)));
    }
}
