//! The JobRunner runs a job's subtasks on this machine, at most `parallel` at a time,
//! and reports to an observer (the progress display of `dbhaul run`). A failed subtask
//! does not stop the others: the job goes on and its summary says what failed.

use std::collections::VecDeque;
use std::sync::Arc;

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

pub struct JobRunner {
    context: Arc<SubtaskContext>,
    pending: VecDeque<SubtaskSpec>,
    running: Vec<(String, Addr<SubtaskActor>)>,
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
        observer: Box<dyn JobObserver>,
    ) -> (Addr<JobRunner>, oneshot::Receiver<Vec<SubtaskOutcome>>) {
        let (tx, rx) = oneshot::channel();
        let runner = JobRunner {
            context,
            pending: subtasks.into(),
            running: Vec::new(),
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
            let Some(spec) = self.pending.pop_front() else {
                break;
            };
            let id = spec.id();
            // A folder whose extraction did not finish (no manifest): this is a run again.
            let attempt = if self.context.work.interrupted(&id) {
                2
            } else {
                1
            };
            let actor = SubtaskActor::new(
                self.context.clone(),
                spec,
                ctx.address().recipient(),
                attempt,
            );
            self.running.push((id, actor.start()));
        }
        if self.running.is_empty() && (self.pending.is_empty() || self.stopping) {
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
                self.observer.finished(&outcome);
                self.running.retain(|(id, _)| *id != outcome.id);
                self.outcomes.push(outcome);
                self.fill(ctx);
            }
        }
    }
}

impl Handler<StopJob> for JobRunner {
    type Result = ();

    fn handle(&mut self, _: StopJob, ctx: &mut Context<Self>) {
        self.stopping = true;
        for (_, actor) in &self.running {
            actor.do_send(StopSubtask);
        }
        self.fill(ctx);
    }
}
