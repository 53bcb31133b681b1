//! The JobRunner runs a job's subtasks on this machine, at most `parallel` at a time,
//! and reports to an observer (the progress display of `dbhaul run`). A failed subtask
//! does not stop the others: the job goes on and its summary says what failed. A subtask
//! that failed on a fault that may pass (a lost connection, a full working folder) runs
//! again by itself, `retries` times, after `retry_wait` doubling each time, as an agent's
//! supervisor does.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

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

/// Runs again of a subtask after a fault that may pass (the job's `retries` and
/// `retry_wait_s`).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub retries: u32,
    pub first_wait: Duration,
}

impl RetryPolicy {
    /// The wait before run again number `retry` (1, 2, …): the first wait, doubling.
    pub fn wait(&self, retry: u32) -> Duration {
        self.first_wait
            .saturating_mul(1 << retry.saturating_sub(1).min(6))
    }
}

pub struct JobRunner {
    context: Arc<SubtaskContext>,
    /// What is to run, with the attempt it is (1 for a first run).
    pending: VecDeque<(SubtaskSpec, u32)>,
    running: Vec<(SubtaskSpec, u32, Addr<SubtaskActor>)>,
    /// Subtasks waiting to run again, with the outcome that failed them (reported if the
    /// job stops meanwhile).
    waiting: HashMap<String, SubtaskOutcome>,
    retry: RetryPolicy,
    /// Runs again used so far, by subtask.
    retried: HashMap<String, u32>,
    parallel: usize,
    outcomes: Vec<SubtaskOutcome>,
    observer: Box<dyn JobObserver>,
    done: Option<oneshot::Sender<Vec<SubtaskOutcome>>>,
    stopping: bool,
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
        // A folder whose extraction did not finish (no manifest): this is a run again.
        let pending = subtasks
            .into_iter()
            .map(|spec| {
                let attempt = if context.work.interrupted(&spec.id()) {
                    2
                } else {
                    1
                };
                (spec, attempt)
            })
            .collect();
        let runner = JobRunner {
            context,
            pending,
            running: Vec::new(),
            waiting: HashMap::new(),
            retry,
            retried: HashMap::new(),
            parallel: parallel.max(1),
            outcomes: Vec::new(),
            observer,
            done: Some(tx),
            stopping: false,
        };
        (runner.start(), rx)
    }

    fn fill(&mut self, ctx: &mut Context<Self>) {
        while !self.stopping && self.running.len() < self.parallel {
            let Some((spec, attempt)) = self.pending.pop_front() else {
                break;
            };
            let actor = SubtaskActor::new(
                self.context.clone(),
                spec.clone(),
                ctx.address().recipient(),
                attempt,
            );
            self.running.push((spec, attempt, actor.start()));
        }
        if self.stopping {
            // Runs again that were waiting end as they failed.
            for (_, outcome) in self.waiting.drain() {
                self.observer.finished(&outcome);
                self.outcomes.push(outcome);
            }
        }
        let idle = self.running.is_empty() && self.waiting.is_empty();
        if idle && (self.pending.is_empty() || self.stopping) {
            if let Some(done) = self.done.take() {
                let _ = done.send(std::mem::take(&mut self.outcomes));
            }
            ctx.stop();
        }
    }

    /// Whether a subtask that ended with `outcome` runs again; if so, it is set to.
    fn run_again(
        &mut self,
        spec: SubtaskSpec,
        attempt: u32,
        outcome: SubtaskOutcome,
        ctx: &mut Context<Self>,
    ) -> Option<SubtaskOutcome> {
        let Err(error) = &outcome.manifest else {
            return Some(outcome);
        };
        let used = self.retried.entry(outcome.id.clone()).or_default();
        if !outcome.is_retryable() || self.stopping || *used >= self.retry.retries {
            return Some(outcome);
        }
        *used += 1;
        let (retry, wait) = (*used, self.retry.wait(*used));
        tracing::warn!(
            task = %self.context.task,
            subtask = %outcome.id,
            "subtask runs again in {} s (retry {retry} of {}) after a fault that may pass: {error}",
            wait.as_secs(),
            self.retry.retries
        );
        crate::telemetry::metrics::retry("subtask");
        let id = outcome.id.clone();
        self.waiting.insert(id.clone(), outcome);
        ctx.run_later(wait, move |runner, ctx| {
            if runner.waiting.remove(&id).is_some() {
                runner.pending.push_front((spec, attempt + 1));
            }
            runner.fill(ctx);
        });
        None
    }
}

impl Actor for JobRunner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.fill(ctx);
    }
}

impl Handler<SubtaskEvent> for JobRunner {
    type Result = ();

    fn handle(&mut self, event: SubtaskEvent, ctx: &mut Context<Self>) {
        match event {
            SubtaskEvent::Started { id } => self.observer.started(&id),
            SubtaskEvent::Progress { id, progress } => self.observer.progress(&id, &progress),
            SubtaskEvent::Finished(outcome) => {
                let Some(at) = self.running.iter().position(|(s, ..)| s.id() == outcome.id) else {
                    return;
                };
                let (spec, attempt, _) = self.running.remove(at);
                if let Some(outcome) = self.run_again(spec, attempt, outcome, ctx) {
                    self.observer.finished(&outcome);
                    self.outcomes.push(outcome);
                }
                self.fill(ctx);
            }
        }
    }
}

impl Handler<StopJob> for JobRunner {
    type Result = ();

    fn handle(&mut self, _: StopJob, ctx: &mut Context<Self>) {
        self.stopping = true;
        for (.., actor) in &self.running {
            actor.do_send(StopSubtask);
        }
        self.fill(ctx);
    }
}
