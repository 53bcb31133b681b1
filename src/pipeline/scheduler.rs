//! The one subtask scheduler, shared by `dbhaul run` ([`super::job_runner::JobRunner`]) and
//! an agent's supervisor: slots, a first-in first-out queue, the subtasks running, and runs
//! again after a fault that may pass, each after a wait that doubles.
//!
//! It is a plain state machine: no actor, no I/O, no clock read inside. Whoever drives it
//! turns what happens into an [`Event`] (with the time it happened) and carries out the
//! [`Action`]s it answers: start a subtask, set a timer for a run again, report an end. So
//! every rule — slots are never exceeded, the queue is served in order, a stop clears what
//! waits to run again, a failure that may not pass is final at once — is tested here without
//! actix (the table tests below).
//!
//! It never decides what a failure means: the caller says whether a failed run may be
//! retried ([`Retry`]), from the subtask's own report.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Runs again of a subtask after a fault that may pass (the job's `retries` and
/// `retry_wait_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub retries: u32,
    pub first_wait: Duration,
}

impl RetryPolicy {
    /// No run again.
    pub const NONE: RetryPolicy = RetryPolicy {
        retries: 0,
        first_wait: Duration::ZERO,
    };

    /// The wait before run again number `retry` (1, 2, …): the first wait, doubling (at most
    /// 64 times the first).
    pub fn wait(&self, retry: u32) -> Duration {
        self.first_wait
            .saturating_mul(1 << retry.saturating_sub(1).min(6))
    }
}

/// Whether a failed run may be run again, as the caller judged it from the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A fault that may pass (a lost connection, a full working folder).
    MayPass,
    /// Running it again would fail the same way, or it was stopped.
    Never,
}

/// What happened, told to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<K> {
    /// The subtask wants to run: it joins the back of the queue. `earlier_attempts` counts
    /// runs before this one (from an earlier process); its runs again are counted from here.
    /// A subtask the scheduler already holds is left as it is.
    Queued {
        key: K,
        earlier_attempts: u32,
        policy: RetryPolicy,
    },
    /// The subtask's run ended well.
    Succeeded(K),
    /// The subtask's run failed; `retry` says whether it may run again.
    Failed { key: K, retry: Retry },
    /// The subtask is not to run any more: out of the queue or of its wait, and, if it is
    /// running (the caller stops it), its failure is final.
    Withdrawn(K),
    /// There are now this many slots (at least one).
    SlotsChanged(usize),
    /// Start nothing more: the queue and the runs again that wait are cleared; what runs
    /// ends as it ends, with no run again.
    Stopped,
    /// Time passed (a timer set for an [`Action::RetryAt`] fired).
    TimeAdvanced,
}

/// How a subtask ended for the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Succeeded,
    /// Its last run failed and no run again is left (or allowed).
    Failed,
    /// Taken out before it ran (again): by a stop, or withdrawn.
    Cleared,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<K> {
    /// Start the subtask now; `attempt` is 1 for its first run ever.
    Start { key: K, attempt: u32 },
    /// It failed on a fault that may pass: it runs again once the time is `at` (tell the
    /// scheduler [`Event::TimeAdvanced`] then). This is run again `retry` of `retries`.
    RetryAt {
        key: K,
        at: Instant,
        wait: Duration,
        retry: u32,
        retries: u32,
    },
    /// The subtask is done with: it will not start again.
    Final { key: K, end: End },
}

/// What the scheduler keeps of a subtask it holds.
#[derive(Debug, Clone, Copy)]
struct Entry {
    policy: RetryPolicy,
    /// Runs started, this one included (with those of earlier processes).
    attempts: u32,
    /// Runs again used since it was queued.
    retries: u32,
}

/// Slots, queue, running subtasks and runs again; see the module's doc.
#[derive(Debug)]
pub struct Scheduler<K> {
    slots: usize,
    entries: HashMap<K, Entry>,
    queue: VecDeque<K>,
    running: HashSet<K>,
    /// Runs again that wait, by the time they may start (then by key, for a stable order).
    waiting: BTreeMap<(Instant, u64), K>,
    /// Order of arrival of the waits, so that two due at the same instant keep it.
    waits: u64,
    /// Running subtasks withdrawn: their end is final.
    withdrawn: HashSet<K>,
    stopped: bool,
}

impl<K: Clone + Eq + Hash> Scheduler<K> {
    /// A scheduler with `slots` slots (at least one).
    pub fn new(slots: usize) -> Scheduler<K> {
        Scheduler {
            slots: slots.max(1),
            entries: HashMap::new(),
            queue: VecDeque::new(),
            running: HashSet::new(),
            waiting: BTreeMap::new(),
            waits: 0,
            withdrawn: HashSet::new(),
            stopped: false,
        }
    }

    /// Apply `event`, which happened at `now`, and say what to do; every queued subtask may
    /// start.
    pub fn handle(&mut self, now: Instant, event: Event<K>) -> Vec<Action<K>> {
        self.handle_when(now, event, |_| true)
    }

    /// As [`Scheduler::handle`], but a queued subtask starts only once `ready` says so (an
    /// agent's task not yet prepared): the others keep their place and do not take a slot.
    pub fn handle_when(
        &mut self,
        now: Instant,
        event: Event<K>,
        ready: impl FnMut(&K) -> bool,
    ) -> Vec<Action<K>> {
        let mut actions = Vec::new();
        self.apply(now, event, &mut actions);
        self.due(now);
        self.fill(ready, &mut actions);
        actions
    }

    /// Subtasks running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Subtasks waiting for a slot, or for the time of their run again.
    pub fn queued(&self) -> usize {
        self.queue.len() + self.waiting.len()
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn is_running(&self, key: &K) -> bool {
        self.running.contains(key)
    }

    /// Nothing runs and nothing waits to: after a stop, or once the queue is empty.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty() && self.queue.is_empty()
    }

    fn apply(&mut self, now: Instant, event: Event<K>, actions: &mut Vec<Action<K>>) {
        match event {
            Event::Queued {
                key,
                earlier_attempts,
                policy,
            } => {
                if self.stopped || self.entries.contains_key(&key) {
                    return;
                }
                self.entries.insert(
                    key.clone(),
                    Entry {
                        policy,
                        attempts: earlier_attempts,
                        retries: 0,
                    },
                );
                self.queue.push_back(key);
            }
            Event::Succeeded(key) => {
                if self.finish(&key).is_some() {
                    self.entries.remove(&key);
                    actions.push(Action::Final {
                        key,
                        end: End::Succeeded,
                    });
                }
            }
            Event::Failed { key, retry } => {
                let Some(withdrawn) = self.finish(&key) else {
                    return;
                };
                let entry = self.entries.get(&key).copied();
                match entry {
                    Some(mut entry)
                        if retry == Retry::MayPass
                            && !self.stopped
                            && !withdrawn
                            && entry.retries < entry.policy.retries =>
                    {
                        entry.retries += 1;
                        let wait = entry.policy.wait(entry.retries);
                        let at = now + wait;
                        self.entries.insert(key.clone(), entry);
                        self.waits += 1;
                        self.waiting.insert((at, self.waits), key.clone());
                        actions.push(Action::RetryAt {
                            key,
                            at,
                            wait,
                            retry: entry.retries,
                            retries: entry.policy.retries,
                        });
                    }
                    _ => {
                        self.entries.remove(&key);
                        actions.push(Action::Final {
                            key,
                            end: End::Failed,
                        });
                    }
                }
            }
            Event::Withdrawn(key) => {
                if self.running.contains(&key) {
                    self.withdrawn.insert(key);
                } else if self.clear(&key) {
                    actions.push(Action::Final {
                        key,
                        end: End::Cleared,
                    });
                }
            }
            Event::SlotsChanged(slots) => self.slots = slots.max(1),
            Event::Stopped => {
                self.stopped = true;
                let queued: Vec<K> = self.queue.drain(..).collect();
                let waiting: Vec<K> = std::mem::take(&mut self.waiting).into_values().collect();
                for key in queued.into_iter().chain(waiting) {
                    self.entries.remove(&key);
                    actions.push(Action::Final {
                        key,
                        end: End::Cleared,
                    });
                }
            }
            Event::TimeAdvanced => {}
        }
    }

    /// A run of `key` ended: its slot is free. None if it was not running, else whether it
    /// had been withdrawn.
    fn finish(&mut self, key: &K) -> Option<bool> {
        if !self.running.remove(key) {
            return None;
        }
        Some(self.withdrawn.remove(key))
    }

    /// Take a subtask that does not run out of the queue or its wait. False if not held.
    fn clear(&mut self, key: &K) -> bool {
        if self.entries.remove(key).is_none() {
            return false;
        }
        self.queue.retain(|k| k != key);
        self.waiting.retain(|_, k| k != key);
        true
    }

    /// Runs again whose time has come go to the front of the queue, the earliest first.
    fn due(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        for key in due.into_iter().rev() {
            self.queue.push_front(key);
        }
    }

    /// Start queued subtasks, in order, while slots are free.
    fn fill(&mut self, mut ready: impl FnMut(&K) -> bool, actions: &mut Vec<Action<K>>) {
        if self.stopped {
            return;
        }
        let mut at = 0;
        while self.running.len() < self.slots && at < self.queue.len() {
            if !ready(&self.queue[at]) {
                at += 1;
                continue;
            }
            let Some(key) = self.queue.remove(at) else {
                break;
            };
            let attempt = match self.entries.get_mut(&key) {
                Some(entry) => {
                    entry.attempts += 1;
                    entry.attempts
                }
                None => 1,
            };
            debug_assert!(!self.running.contains(&key));
            self.running.insert(key.clone());
            actions.push(Action::Start { key, attempt });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Action::{Final, RetryAt, Start};
    use Event::{Failed, Stopped, Succeeded, TimeAdvanced, Withdrawn};

    const POLICY: RetryPolicy = RetryPolicy {
        retries: 2,
        first_wait: Duration::from_secs(10),
    };

    fn queued(key: &'static str) -> Event<&'static str> {
        Event::Queued {
            key,
            earlier_attempts: 0,
            policy: POLICY,
        }
    }

    fn failed(key: &'static str, retry: Retry) -> Event<&'static str> {
        Failed { key, retry }
    }

    fn start(key: &'static str, attempt: u32) -> Action<&'static str> {
        Start { key, attempt }
    }

    fn end(key: &'static str, end: End) -> Action<&'static str> {
        Final { key, end }
    }

    /// A row of a table: at this second from the start, this event gives these actions.
    type Row = (u64, Event<&'static str>, Vec<Action<&'static str>>);

    /// Run the table: at each row's second, its event gives exactly its actions; no start
    /// goes above the slots.
    fn check(slots: usize, table: Vec<Row>) {
        let t0 = Instant::now();
        let mut scheduler = Scheduler::new(slots);
        for (row, (second, event, expected)) in table.into_iter().enumerate() {
            let told = format!("{event:?}");
            let actions = scheduler.handle(t0 + Duration::from_secs(second), event);
            let expected: Vec<Action<&str>> = expected
                .into_iter()
                .map(|action| match action {
                    // The tables write a run again's time in seconds from t0 in `wait`'s
                    // place: here it becomes the instant.
                    RetryAt {
                        key,
                        at: _,
                        wait,
                        retry,
                        retries,
                    } => RetryAt {
                        key,
                        at: t0 + Duration::from_secs(second) + wait,
                        wait,
                        retry,
                        retries,
                    },
                    other => other,
                })
                .collect();
            let started = actions.iter().any(|a| matches!(a, Start { .. }));
            assert_eq!(actions, expected, "row {row}, at {second} s: {told}");
            // Fewer slots stop nothing that runs, but nothing starts above them.
            assert!(
                !started || scheduler.running() <= scheduler.slots(),
                "row {row}: slots exceeded"
            );
        }
    }

    fn retry_in(key: &'static str, wait_s: u64, retry: u32) -> Action<&'static str> {
        RetryAt {
            key,
            at: Instant::now(), // replaced by `check`
            wait: Duration::from_secs(wait_s),
            retry,
            retries: POLICY.retries,
        }
    }

    #[test]
    fn slots_are_never_exceeded_and_the_queue_is_served_first_in_first_out() {
        check(
            2,
            vec![
                (0, queued("a"), vec![start("a", 1)]),
                (0, queued("b"), vec![start("b", 1)]),
                (0, queued("c"), vec![]),
                (0, queued("d"), vec![]),
                (0, queued("e"), vec![]),
                (
                    1,
                    Succeeded("b"),
                    vec![end("b", End::Succeeded), start("c", 1)],
                ),
                (
                    2,
                    Succeeded("a"),
                    vec![end("a", End::Succeeded), start("d", 1)],
                ),
                (
                    3,
                    failed("d", Retry::Never),
                    vec![end("d", End::Failed), start("e", 1)],
                ),
                (4, Succeeded("c"), vec![end("c", End::Succeeded)]),
                (5, Succeeded("e"), vec![end("e", End::Succeeded)]),
            ],
        );
    }

    #[test]
    fn a_subtask_already_held_is_not_queued_twice() {
        check(
            1,
            vec![
                (0, queued("a"), vec![start("a", 1)]),
                (0, queued("a"), vec![]),
                (0, queued("b"), vec![]),
                (0, queued("b"), vec![]),
                (
                    1,
                    Succeeded("a"),
                    vec![end("a", End::Succeeded), start("b", 1)],
                ),
                (2, Succeeded("b"), vec![end("b", End::Succeeded)]),
                // An end told twice, or of a subtask never started, changes nothing.
                (3, Succeeded("b"), vec![]),
                (3, failed("z", Retry::MayPass), vec![]),
            ],
        );
    }

    #[test]
    fn a_fault_that_may_pass_runs_again_after_waits_that_double_then_fails() {
        check(
            1,
            vec![
                (0, queued("a"), vec![start("a", 1)]),
                (0, queued("b"), vec![]),
                // The slot is free while "a" waits: "b" takes it.
                (
                    5,
                    failed("a", Retry::MayPass),
                    vec![retry_in("a", 10, 1), start("b", 1)],
                ),
                (6, Succeeded("b"), vec![end("b", End::Succeeded)]),
                (14, TimeAdvanced, vec![]),
                (15, TimeAdvanced, vec![start("a", 2)]),
                (20, failed("a", Retry::MayPass), vec![retry_in("a", 20, 2)]),
                (39, TimeAdvanced, vec![]),
                (40, TimeAdvanced, vec![start("a", 3)]),
                (41, failed("a", Retry::MayPass), vec![end("a", End::Failed)]),
            ],
        );
    }

    #[test]
    fn a_run_again_goes_before_the_queue_once_due() {
        check(
            1,
            vec![
                (0, queued("a"), vec![start("a", 1)]),
                (1, failed("a", Retry::MayPass), vec![retry_in("a", 10, 1)]),
                (2, queued("b"), vec![start("b", 1)]),
                (3, queued("c"), vec![]),
                (11, TimeAdvanced, vec![]),
                (
                    12,
                    Succeeded("b"),
                    vec![end("b", End::Succeeded), start("a", 2)],
                ),
                (
                    13,
                    Succeeded("a"),
                    vec![end("a", End::Succeeded), start("c", 1)],
                ),
            ],
        );
    }

    #[test]
    fn a_failure_that_may_not_pass_is_never_run_again() {
        check(
            1,
            vec![
                (0, queued("a"), vec![start("a", 1)]),
                (1, failed("a", Retry::Never), vec![end("a", End::Failed)]),
                (100, TimeAdvanced, vec![]),
            ],
        );
        let none = Event::Queued {
            key: "a",
            earlier_attempts: 0,
            policy: RetryPolicy::NONE,
        };
        check(
            1,
            vec![
                (0, none, vec![start("a", 1)]),
                (1, failed("a", Retry::MayPass), vec![end("a", End::Failed)]),
            ],
        );
    }

    #[test]
    fn a_stop_clears_the_queue_and_the_runs_again_that_wait() {
        check(
            2,
            vec![
                (0, queued("a"), vec![start("a", 1)]),
                (0, queued("b"), vec![start("b", 1)]),
                (0, queued("c"), vec![]),
                (
                    1,
                    failed("a", Retry::MayPass),
                    vec![retry_in("a", 10, 1), start("c", 1)],
                ),
                (2, Stopped, vec![end("a", End::Cleared)]),
                // What ran ends with no run again, and nothing more starts.
                (3, failed("b", Retry::MayPass), vec![end("b", End::Failed)]),
                (3, queued("d"), vec![]),
                (20, TimeAdvanced, vec![]),
                (21, Succeeded("c"), vec![end("c", End::Succeeded)]),
            ],
        );
    }

    #[test]
    fn a_freed_slot_starts_the_next_queued_and_more_slots_start_more() {
        check(
            1,
            vec![
                (0, queued("a"), vec![start("a", 1)]),
                (0, queued("b"), vec![]),
                (0, queued("c"), vec![]),
                (0, queued("d"), vec![]),
                (
                    1,
                    failed("a", Retry::Never),
                    vec![end("a", End::Failed), start("b", 1)],
                ),
                (
                    2,
                    Event::SlotsChanged(3),
                    vec![start("c", 1), start("d", 1)],
                ),
                (3, Event::SlotsChanged(1), vec![]),
                (4, queued("e"), vec![]),
                (5, Succeeded("b"), vec![end("b", End::Succeeded)]),
                (6, Succeeded("c"), vec![end("c", End::Succeeded)]),
                (
                    7,
                    Succeeded("d"),
                    vec![end("d", End::Succeeded), start("e", 1)],
                ),
            ],
        );
    }

    #[test]
    fn a_withdrawn_subtask_leaves_the_queue_and_its_failure_is_final() {
        check(
            1,
            vec![
                (0, queued("a"), vec![start("a", 1)]),
                (0, queued("b"), vec![]),
                (0, queued("c"), vec![]),
                (1, Withdrawn("b"), vec![end("b", End::Cleared)]),
                (1, Withdrawn("a"), vec![]),
                (
                    2,
                    failed("a", Retry::MayPass),
                    vec![end("a", End::Failed), start("c", 1)],
                ),
                (3, failed("c", Retry::MayPass), vec![retry_in("c", 10, 1)]),
                (4, Withdrawn("c"), vec![end("c", End::Cleared)]),
                (20, TimeAdvanced, vec![]),
                // Queued again by its owner, it runs at once, its attempts as it is told.
                (21, queued("c"), vec![start("c", 1)]),
            ],
        );
    }

    #[test]
    fn attempts_count_the_runs_of_earlier_processes() {
        check(
            1,
            vec![
                (
                    0,
                    Event::Queued {
                        key: "a",
                        earlier_attempts: 3,
                        policy: POLICY,
                    },
                    vec![start("a", 4)],
                ),
                (1, failed("a", Retry::MayPass), vec![retry_in("a", 10, 1)]),
                (11, TimeAdvanced, vec![start("a", 5)]),
            ],
        );
    }

    #[test]
    fn a_subtask_not_ready_keeps_its_place_and_takes_no_slot() {
        let t0 = Instant::now();
        let mut scheduler = Scheduler::new(1);
        let mut ready = false;
        for key in ["x", "y"] {
            let actions = scheduler.handle_when(
                t0,
                Event::Queued {
                    key,
                    earlier_attempts: 0,
                    policy: POLICY,
                },
                |k| *k != "x" || ready,
            );
            if key == "y" {
                assert_eq!(actions, vec![start("y", 1)]);
            }
        }
        ready = true;
        let actions = scheduler.handle_when(t0, Succeeded("y"), |k| *k != "x" || ready);
        assert_eq!(actions, vec![end("y", End::Succeeded), start("x", 1)]);
    }

    #[test]
    fn the_wait_doubles_up_to_sixty_four_times_the_first() {
        let waits: Vec<u64> = (1..=9).map(|n| POLICY.wait(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 640, 640]);
    }
}
