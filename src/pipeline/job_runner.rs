//! The JobRunner runs a job's subtasks on this machine, at most `parallel` at a time,
//! and reports to an observer (the progress display of `dbhaul run`). A failed subtask
//! does not stop the others: the job goes on and its summary says what failed. A subtask
//! that failed on a fault that may pass (a lost connection, a full working folder) runs
//! again by itself, `retries` times, after `retry_wait` doubling each time, as an agent's
//! supervisor does: both follow the same [`Scheduler`]. This actor only turns a subtask's
//! events into the scheduler's, and its actions into effects (a [`SubtaskActor`] started, a
//! timer, a line for the observer).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

pub use super::scheduler::RetryPolicy;
use super::scheduler::{Action, Event, Retry, Scheduler};
use super::subtask::{StopSubtask, SubtaskActor};
use super::{SubtaskContext, SubtaskEvent, SubtaskOutcome, SubtaskProgress};
use crate::model::SubtaskSpec;

/// Sees a job's progress; implemented by the command line's display.
pub trait JobObserver {
    fn started(&mut self, id: &str);
    fn progress(&mut self, id: &str, progress: &SubtaskProgress);
    fn finished(&mut self, outcome: &SubtaskOutcome);
}

/// Stop every running subtask and start no more.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopJob;

pub struct JobRunner {
    context: Arc<SubtaskContext>,
    /// Slots, queue and runs again, by subtask id.
    scheduler: Scheduler<String>,
    specs: HashMap<String, SubtaskSpec>,
    /// The job's subtasks in its order, with the runs each had before (one if a folder of
    /// theirs shows an extraction that did not finish): queued once the runner starts.
    first: Vec<(String, u32)>,
    running: HashMap<String, Addr<SubtaskActor>>,
    /// Each subtask's last outcome until it is reported: a run that waits to run again
    /// ends with it if the job stops meanwhile.
    ended: HashMap<String, SubtaskOutcome>,
    retry: RetryPolicy,
    outcomes: Vec<SubtaskOutcome>,
    observer: Box<dyn JobObserver>,
    done: Option<oneshot::Sender<Vec<SubtaskOutcome>>>,
}

impl JobRunner {
    /// Start the runner; the receiver yields every subtask's outcome when all have ended.
    pub fn start(
        context: Arc<SubtaskContext>,
        subtasks: Vec<SubtaskSpec>,
        parallel: usize,
        retry: RetryPolicy,
        observer: Box<dyn JobObserver>,
    ) -> (Addr<JobRunner>, oneshot::Receiver<Vec<SubtaskOutcome>>) {
        let (tx, rx) = oneshot::channel();
        let first = subtasks
            .iter()
            .map(|spec| {
                let id = spec.id();
                let earlier = u32::from(context.work.interrupted(&id));
                (id, earlier)
            })
            .collect();
        let runner = JobRunner {
            context,
            scheduler: Scheduler::new(parallel),
            specs: subtasks.into_iter().map(|spec| (spec.id(), spec)).collect(),
            first,
            running: HashMap::new(),
            ended: HashMap::new(),
            retry,
            outcomes: Vec::new(),
            observer,
            done: Some(tx),
        };
        (runner.start(), rx)
    }

    /// Tell the scheduler what happened and carry out what it answers.
    fn step(&mut self, now: Instant, event: Event<String>, ctx: &mut Context<Self>) {
        for action in self.scheduler.handle(now, event) {
            match action {
                Action::Start { key, attempt } => {
                    let Some(spec) = self.specs.get(&key) else {
                        continue;
                    };
                    let actor = SubtaskActor::new(
                        self.context.clone(),
                        spec.clone(),
                        ctx.address().recipient(),
                        attempt,
                    );
                    self.running.insert(key, actor.start());
                }
                Action::RetryAt {
                    key,
                    at,
                    wait,
                    retry,
                    retries,
                } => {
                    let error = match self.ended.get(&key).map(|o| &o.manifest) {
                        Some(Err(error)) => error.to_string(),
                        _ => String::new(),
                    };
                    tracing::warn!(
                        task = %self.context.task,
                        subtask = %key,
                        "subtask runs again in {} s (retry {retry} of {retries}) after a fault \
                         that may pass: {error}",
                        wait.as_secs(),
                    );
                    crate::telemetry::metrics::retry("subtask");
                    ctx.run_later(wait, move |runner, ctx| {
                        runner.step(Instant::now().max(at), Event::TimeAdvanced, ctx);
                    });
                }
                Action::Final { key, .. } => {
                    // A subtask cleared before it ran has nothing to report; one cleared
                    // while it waited to run again ends as it failed.
                    if let Some(outcome) = self.ended.remove(&key) {
                        self.observer.finished(&outcome);
                        self.outcomes.push(outcome);
                    }
                }
            }
        }
        if self.scheduler.is_idle() {
            if let Some(done) = self.done.take() {
                let _ = done.send(std::mem::take(&mut self.outcomes));
            }
            ctx.stop();
        }
    }
}

impl Actor for JobRunner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for (key, earlier_attempts) in std::mem::take(&mut self.first) {
            let queued = Event::Queued {
                key,
                earlier_attempts,
                policy: self.retry,
            };
            self.step(now, queued, ctx);
        }
        // A job with no subtask ends here.
        self.step(now, Event::TimeAdvanced, ctx);
    }
}

impl Handler<SubtaskEvent> for JobRunner {
    type Result = ();

    fn handle(&mut self, event: SubtaskEvent, ctx: &mut Context<Self>) {
        match event {
            SubtaskEvent::Started { id } => self.observer.started(&id),
            SubtaskEvent::Progress { id, progress } => self.observer.progress(&id, &progress),
            SubtaskEvent::Finished(outcome) => {
                if self.running.remove(&outcome.id).is_none() {
                    return;
                }
                let key = outcome.id.clone();
                // The one place a run's result is judged: a fault that may pass runs again.
                let event = match (&outcome.manifest, outcome.is_retryable()) {
                    (Ok(_), _) => Event::Succeeded(key),
                    (Err(_), true) => Event::Failed {
                        key,
                        retry: Retry::MayPass,
                    },
                    (Err(_), false) => Event::Failed {
                        key,
                        retry: Retry::Never,
                    },
                };
                self.ended.insert(outcome.id.clone(), outcome);
                self.step(Instant::now(), event, ctx);
            }
        }
    }
}

impl Handler<StopJob> for JobRunner {
    type Result = ();

    fn handle(&mut self, _: StopJob, ctx: &mut Context<Self>) {
        for actor in self.running.values() {
            actor.do_send(StopSubtask);
        }
        self.step(Instant::now(), Event::Stopped, ctx);
    }
}
