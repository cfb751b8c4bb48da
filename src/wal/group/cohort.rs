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
//! it syncs the batch alone or hands it on; whoever syncs, `released` before acknowledging,
//! so that no returner can arrive before it is expected.

use std::collections::HashSet;
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

/// The pipeline's cohort, under its own mutex: taken once per batch by the writer thread and
/// once per sync.
#[derive(Debug)]
pub(super) struct Cohort {
    /// Tasks the last sync released that have not come back yet.
    away: HashSet<Id>,
    /// How many tasks the last sync released ...
    released: usize,
    /// ... and how many of them came back before `deadline`.
    returned: usize,
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
            away: HashSet::new(),
            released: 0,
            returned: 0,
            back: 1.0,
            want: 0,
            deadline: None,
        }
    }
}

impl Cohort {
    /// A sync that took `took` is about to acknowledge the requests of `tasks`: measures how
    /// many of the last cohort came back in time, and sets whom the next sync waits for.
    pub(super) fn released(&mut self, tasks: impl IntoIterator<Item = Id>, took: Duration) {
        if self.released > 0 {
            self.back = (self.returned as f64 / self.released as f64).min(1.0);
        }
        self.away.clear();
        self.away.extend(tasks);
        self.released = self.away.len();
        self.returned = 0;
        self.want = (self.released as f64 * self.back).round() as usize;
        self.deadline = Some(Instant::now() + cohort_wait(took));
    }

    /// The writer thread wrote a request of each of `tasks`: counts those the last sync
    /// released that came back before the deadline.
    pub(super) fn arrived(&mut self, tasks: &[Id], now: Instant) {
        if self.deadline.is_some_and(|d| now <= d) {
            for id in tasks {
                self.returned += usize::from(self.away.remove(id));
            }
        }
    }

    /// Until when the next sync still waits for returners (`None`: go).
    pub(super) fn waiting(&self, now: Instant) -> Option<Instant> {
        self.deadline
            .filter(|&d| self.returned < self.want && now < d)
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

    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn the_next_sync_waits_for_the_tasks_released_until_they_are_back() {
        let t = ids(4);
        let mut c = Cohort::default();
        let now = Instant::now();
        assert!(c.waiting(now).is_none(), "no cohort before the first sync");
        c.released(t.clone(), LONG);
        assert!(c.due(now) && c.waiting(now).is_some());
        c.arrived(&t[..3], now);
        assert!(c.due(now), "one is still away");
        c.arrived(&t[..1], now);
        assert!(c.due(now), "a task counts once");
        c.arrived(&t[3..], now);
        assert!(c.waiting(now).is_none() && !c.due(now), "all four are back");
    }

    #[test]
    fn a_lone_task_is_no_cohort_and_no_one_is_waited_for_past_the_deadline() {
        let t = ids(3);
        let mut c = Cohort::default();
        let now = Instant::now();
        c.released([t[0]], LONG);
        assert!(
            c.waiting(now).is_some() && !c.due(now),
            "one task: the writer syncs alone"
        );
        c.released(t.clone(), Duration::ZERO);
        let later = Instant::now() + Duration::from_millis(1);
        assert!(c.waiting(later).is_none() && !c.due(later));
        c.arrived(&t, later);
        assert_eq!(c.returned, 0, "late returners are not counted");
    }

    #[test]
    fn a_cohort_expects_only_the_share_that_came_back_in_time() {
        let t = ids(4);
        let mut c = Cohort::default();
        let now = Instant::now();
        c.released(t.clone(), LONG);
        c.arrived(&t[..2], now);
        // Half came back: the next sync of four waits for two.
        c.released(t.clone(), LONG);
        assert_eq!(c.want, 2);
        c.arrived(&t[..1], now);
        assert!(c.waiting(now).is_some());
        c.arrived(&t[1..2], now);
        assert!(c.waiting(now).is_none());
        // None came back: no wait at all, until they come back again.
        let mut c = Cohort::default();
        c.released(t.clone(), LONG);
        c.released(t.clone(), LONG);
        assert_eq!(c.want, 0);
        assert!(c.waiting(now).is_none() && !c.due(now));
        c.arrived(&t, now);
        c.released(t.clone(), LONG);
        assert_eq!(
            c.want, 4,
            "all came back within the wait allowed: expected again"
        );
    }

    #[test]
    fn the_wait_is_twice_the_sync_at_most_300_us() {
        assert_eq!(
            cohort_wait(Duration::from_micros(100)),
            Duration::from_micros(200)
        );
        assert_eq!(cohort_wait(Duration::from_millis(5)), COHORT_WAIT_MAX);
    }
}
