//! The AgentSupervisor owns execution on an agent: the subtasks it was given, their status,
//! and its capacity. Every change of state is written to the agent's store before it is
//! reported, so a subtask outlives a restart of the controller, of the agent or of the
//! machine: at start the supervisor reads the store and runs again every subtask that was
//! running or waiting to run. A subtask that runs again starts a new run; the copy stage
//! replaces what earlier runs loaded, so the warehouse ends with each row once.
//!
//! It never waits for a controller: once started, a subtask runs to its end whether or not
//! anyone polls.
//!
//! This file is the actor: it turns the API's messages and its subtasks' events into
//! [`Event`]s of the one [`Scheduler`] (slots, queue, runs again with a growing wait, as
//! `dbhaul run` has them) and its answers into effects — a [`SubtaskActor`] started, a
//! timer, a record written. Beside it: [`super::assignments`] (the records and their
//! store), [`super::prepare`] (a task made ready to run here) and [`super::views`] (the
//! statuses and counts it reports).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::assignments::{self, Assignment, PERSIST_EVERY};
use super::config::AgentPaths;
use super::prepare::{TaskRuntime, prepare_task, retry_policy, runtime_mode, watch_log};
use super::views::{self, apply_outcome, apply_progress, key_subtask, now, set_stages};
use crate::config::Task;
use crate::model::{Leg, LogLevel, SubtaskSpec, TableRef};
use crate::model::{StageStatus, State, SubtaskStatus};
use crate::pipeline::scheduler::{self, End, Event, Retry, Scheduler};
use crate::pipeline::subtask::{StopSubtask, SubtaskActor};
use crate::pipeline::{SubtaskEvent, SubtaskOutcome};
use crate::remote::wire::{Assign, SubtaskSelection};
use crate::store::Store;
use crate::store::schema::{
    AGENT_ASSIGNMENTS, AGENT_TASKS, AgentTaskRecord, AssignmentRecord, assignment_key,
};

/// Why the supervisor refused or could not do what it was asked; the API maps each kind to
/// its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No such task or subtask on this agent.
    #[error("{0}")]
    NotFound(String),
    /// What was sent cannot be taken (an invalid job, a bad name).
    #[error("{0}")]
    Invalid(String),
    /// It conflicts with what runs (a subtask of an earlier task still running).
    #[error("{0}")]
    Conflict(String),
    /// The agent's store could not record it.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub struct AgentSupervisor {
    store: Arc<Store>,
    paths: AgentPaths,
    tasks: HashMap<String, TaskRuntime>,
    assignments: BTreeMap<String, Assignment>,
    running: HashMap<String, Addr<SubtaskActor>>,
    /// Slots, queue and runs again, by assignment key: what starts when.
    scheduler: Scheduler<String>,
    /// A run's outcome, until the scheduler says whether it runs again or is final.
    ended: HashMap<String, SubtaskOutcome>,
    /// The one long-lived arbiter of every uploader and copier (each arbiter is a runtime of
    /// its own, and the S3 client's pool belongs to the runtime that opened it).
    io: Arbiter,
    /// The drivers a task may load: the agent's settings, kept current by its API.
    drivers: SharedDriverPolicy,
}

/// The agent's driver settings, shared by its API (which re-reads them) and its supervisor.
pub type SharedDriverPolicy = Arc<std::sync::RwLock<crate::source::DriverPolicy>>;

impl AgentSupervisor {
    pub fn new(
        store: Arc<Store>,
        paths: AgentPaths,
        capacity: usize,
        drivers: SharedDriverPolicy,
    ) -> AgentSupervisor {
        AgentSupervisor {
            drivers,
            store,
            paths,
            tasks: HashMap::new(),
            assignments: BTreeMap::new(),
            running: HashMap::new(),
            scheduler: Scheduler::new(capacity),
            ended: HashMap::new(),
            io: Arbiter::new(),
        }
    }

    fn persist(&mut self, key: &str) {
        if let Some(assignment) = self.assignments.get_mut(key) {
            assignments::persist(&self.store, key, assignment);
        }
    }

    fn task_runtime(
        &mut self,
        definition: Task,
        log_level: Option<LogLevel>,
        leg: Option<Leg>,
        ctx: &mut Context<Self>,
    ) {
        watch_log(&definition, log_level);
        let name = definition.name.clone();
        match self.tasks.get_mut(&name) {
            Some(runtime) if runtime.definition == definition && runtime.leg == leg => {}
            Some(runtime) => {
                // A changed definition (a new password, another bucket) is prepared again.
                runtime.definition = definition;
                runtime.leg = leg;
                runtime.context = None;
                runtime.prepared.clear();
            }
            None => {
                let relay = Relay {
                    task: name.clone(),
                    supervisor: ctx.address(),
                }
                .start()
                .recipient();
                self.tasks.insert(
                    name,
                    TaskRuntime {
                        definition,
                        leg,
                        context: None,
                        prepared: Vec::new(),
                        preparing: false,
                        relay,
                    },
                );
            }
        }
    }

    /// The subtask wants to run: it joins the queue, with its runs again counted afresh.
    fn queue(&mut self, key: &str, ctx: &mut Context<Self>) {
        let Some(a) = self.assignments.get(key) else {
            return;
        };
        let queued = Event::Queued {
            key: key.to_string(),
            earlier_attempts: a.record.status.attempts,
            policy: retry_policy(&self.tasks, &a.record.task),
        };
        self.step(Instant::now(), queued, ctx);
    }

    /// Tell the scheduler what happened and carry out what it answers. A subtask whose
    /// task is not prepared for its table keeps its place; its task is prepared.
    fn step(&mut self, now: Instant, event: Event<String>, ctx: &mut Context<Self>) {
        let mut unprepared = Vec::new();
        let (tasks, assignments) = (&self.tasks, &self.assignments);
        let actions = self.scheduler.handle_when(now, event, |key| {
            let Some(a) = assignments.get(key) else {
                return false;
            };
            let Some(runtime) = tasks.get(&a.record.task) else {
                return false;
            };
            let ready =
                runtime.context.is_some() && runtime.prepared.contains(&a.record.spec.table);
            if !ready && !unprepared.contains(&a.record.task) {
                unprepared.push(a.record.task.clone());
            }
            ready
        });
        for task in unprepared {
            if let Some(runtime) = self.tasks.get_mut(&task)
                && !runtime.preparing
            {
                runtime.preparing = true;
                self.prepare(task, ctx);
            }
        }
        for action in actions {
            match action {
                scheduler::Action::Start { key, attempt } => self.start(key, attempt),
                scheduler::Action::RetryAt {
                    key,
                    at,
                    wait,
                    retry,
                    retries,
                } => {
                    self.wait_to_run_again(&key, wait, retry, retries);
                    ctx.run_later(wait, move |actor, ctx| {
                        actor.step(Instant::now().max(at), Event::TimeAdvanced, ctx);
                    });
                }
                scheduler::Action::Final { key, end } => self.ended(&key, end),
            }
        }
    }

    /// Start a subtask the scheduler gave a slot to (its task is prepared).
    fn start(&mut self, key: String, attempt: u32) {
        let Some(a) = self.assignments.get(&key) else {
            return;
        };
        let task = a.record.task.clone();
        let Some(runtime) = self.tasks.get(&task) else {
            return;
        };
        let Some(context) = runtime.context.clone() else {
            return;
        };
        let relay = runtime.relay.clone();
        let spec = a.record.spec.clone();
        let actor = SubtaskActor::new(context, spec, relay, attempt).start();
        self.running.insert(key.clone(), actor);
        let mode = runtime_mode(&self.tasks, &task);
        if let Some(a) = self.assignments.get_mut(&key) {
            a.record.status.state = State::Running;
            a.record.status.error = None;
            a.record.status.attempts = attempt;
            a.record.status.started_at = Some(now());
            a.record.status.finished_at = None;
            a.stop_requested = false;
            a.record.status.extract = StageStatus::default();
            a.record.status.upload = mode.0.then(StageStatus::default);
            a.record.status.copy = mode.1.then(StageStatus::default);
            a.record.status.chunks = 0;
            set_stages(&mut a.record.status, State::Running);
        }
        self.persist(&key);
        tracing::info!(task = %task, subtask = %key_subtask(&key), "subtask started");
    }

    /// Open the source, connect to the bucket and prepare the warehouse for a task's
    /// subtasks on this agent; then run them.
    fn prepare(&mut self, task: String, ctx: &mut Context<Self>) {
        let Some(runtime) = self.tasks.get(&task) else {
            return;
        };
        let definition = runtime.definition.clone();
        let leg = runtime.leg;
        let specs: Vec<SubtaskSpec> = self
            .assignments
            .values()
            .filter(|a| a.record.task == task)
            .map(|a| a.record.spec.clone())
            .collect();
        let mut tables: Vec<TableRef> = Vec::new();
        for spec in &specs {
            if !tables.contains(&spec.table) {
                tables.push(spec.table.clone());
            }
        }
        let work = self.paths.work();
        let io = self.io.handle();
        let drivers = self
            .drivers
            .read()
            .map(|policy| policy.clone())
            .unwrap_or_default();
        let fut = async move { prepare_task(definition, leg, specs, work, io, drivers).await };
        ctx.spawn(fut.into_actor(self).map(move |result, actor, ctx| {
            let Some(runtime) = actor.tasks.get_mut(&task) else {
                return;
            };
            runtime.preparing = false;
            match result {
                Ok(context) => {
                    runtime.context = Some(context);
                    runtime.prepared = tables;
                }
                Err(error) => {
                    tracing::error!(task = %task, "cannot prepare the task: {error}");
                    let keys: Vec<String> = actor
                        .assignments
                        .iter()
                        .filter(|(_, a)| {
                            a.record.task == task
                                && a.record.wanted
                                && a.record.status.state == State::Pending
                        })
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in keys {
                        actor.step(Instant::now(), Event::Withdrawn(key.clone()), ctx);
                        if let Some(a) = actor.assignments.get_mut(&key) {
                            a.record.wanted = false;
                            a.record.status.state = State::Failed;
                            a.record.status.error = Some(error.clone());
                            a.record.status.finished_at = Some(now());
                            set_stages(&mut a.record.status, State::Failed);
                        }
                        actor.persist(&key);
                    }
                }
            }
            actor.step(Instant::now(), Event::TimeAdvanced, ctx);
        }));
    }

    fn statuses(&self, task: Option<&str>) -> Vec<SubtaskStatus> {
        views::statuses(&self.assignments, task)
    }

    fn selected_keys(
        &self,
        task: &str,
        selection: &SubtaskSelection,
    ) -> Result<Vec<String>, SupervisorError> {
        if !self.tasks.contains_key(task) {
            return Err(SupervisorError::NotFound(format!(
                "this agent has no subtask of task `{task}`"
            )));
        }
        match &selection.subtasks {
            None => Ok(self
                .assignments
                .iter()
                .filter(|(_, a)| a.record.task == task)
                .map(|(k, _)| k.clone())
                .collect()),
            Some(ids) => ids
                .iter()
                .map(|id| {
                    let key = assignment_key(task, id);
                    if self.assignments.contains_key(&key) {
                        Ok(key)
                    } else {
                        Err(SupervisorError::NotFound(format!(
                            "task `{task}` has no subtask `{id}` on this agent"
                        )))
                    }
                })
                .collect(),
        }
    }
}

impl Actor for AgentSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (tasks, assignments) = assignments::load(&self.store);
        for task in tasks {
            self.task_runtime(task.definition, task.log_level, task.leg, ctx);
        }
        self.assignments = assignments;
        let wanted: Vec<String> = self
            .assignments
            .iter()
            .filter(|(_, a)| a.record.wanted && a.record.status.state == State::Pending)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &wanted {
            self.queue(key, ctx);
        }
    }
}

/// Forwards a subtask's events with its task's name: subtask ids are unique within a task,
/// not across tasks.
struct Relay {
    task: String,
    supervisor: Addr<AgentSupervisor>,
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<SubtaskEvent> for Relay {
    type Result = ();

    fn handle(&mut self, event: SubtaskEvent, _: &mut Context<Self>) {
        self.supervisor.do_send(TaskEvent {
            task: self.task.clone(),
            event,
        });
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct TaskEvent {
    task: String,
    event: SubtaskEvent,
}

impl Handler<TaskEvent> for AgentSupervisor {
    type Result = ();

    fn handle(&mut self, TaskEvent { task, event }: TaskEvent, ctx: &mut Context<Self>) {
        match event {
            SubtaskEvent::Started { .. } => {}
            SubtaskEvent::Progress { id, progress } => {
                let key = assignment_key(&task, &id);
                let Some(a) = self.assignments.get_mut(&key) else {
                    return;
                };
                apply_progress(&mut a.record.status, &progress);
                if a.persisted.elapsed() >= PERSIST_EVERY {
                    self.persist(&key);
                }
            }
            SubtaskEvent::Finished(outcome) => self.finished(&task, outcome, ctx),
        }
    }
}

impl AgentSupervisor {
    fn finished(&mut self, task: &str, outcome: SubtaskOutcome, ctx: &mut Context<Self>) {
        let key = assignment_key(task, &outcome.id);
        self.running.remove(&key);
        let Some(a) = self.assignments.get_mut(&key) else {
            return;
        };
        apply_outcome(&mut a.record.status, &outcome);
        // The one place a run's result is judged: a fault that may pass runs again, unless
        // the user stopped it.
        let event = match (
            &outcome.manifest,
            outcome.is_retryable() && !a.stop_requested,
        ) {
            (Ok(_), _) => Event::Succeeded(key.clone()),
            (Err(_), true) => Event::Failed {
                key: key.clone(),
                retry: Retry::MayPass,
            },
            (Err(_), false) => Event::Failed {
                key: key.clone(),
                retry: Retry::Never,
            },
        };
        self.ended.insert(key, outcome);
        self.step(Instant::now(), event, ctx);
    }

    /// A failed run runs again after `wait`: the subtask waits, and says why.
    fn wait_to_run_again(&mut self, key: &str, wait: Duration, retry: u32, retries: u32) {
        let Some(a) = self.assignments.get_mut(key) else {
            return;
        };
        let error = match self.ended.remove(key).map(|o| o.manifest) {
            Some(Err(error)) => error.to_string(),
            _ => String::new(),
        };
        let status = &mut a.record.status;
        status.state = State::Pending;
        status.error = Some(format!(
            "{error} (runs again in {} s, retry {retry} of {retries})",
            wait.as_secs(),
        ));
        set_stages(status, State::Pending);
        let task = a.record.task.clone();
        self.persist(key);
        crate::telemetry::metrics::retry("subtask");
        tracing::warn!(
            task = %task,
            subtask = %key_subtask(key),
            "subtask runs again in {} s (retry {retry} of {retries}) after a fault that may \
             pass: {error}",
            wait.as_secs(),
        );
    }

    /// The scheduler is done with a subtask: its run's end is recorded. One taken out of
    /// the queue was recorded by whoever took it out.
    fn ended(&mut self, key: &str, end: End) {
        let outcome = self.ended.remove(key);
        let (Some(outcome), End::Succeeded | End::Failed) = (outcome, end) else {
            return;
        };
        let Some(a) = self.assignments.get_mut(key) else {
            return;
        };
        a.record.wanted = false;
        let (state, line) = match &outcome.manifest {
            Ok(_) => (
                State::Completed,
                format!(
                    "subtask completed: {} rows, {} chunks in {:.1} s",
                    outcome.rows, outcome.chunks, outcome.seconds
                ),
            ),
            Err(_) if a.stop_requested => (State::Stopped, "subtask stopped".to_string()),
            Err(e) => (State::Failed, format!("subtask failed: {e}")),
        };
        let status = &mut a.record.status;
        status.state = state;
        status.error = match (&outcome.manifest, state) {
            (Err(e), State::Failed) => Some(e.to_string()),
            _ => None,
        };
        set_stages(status, state);
        a.stop_requested = false;
        let task = a.record.task.clone();
        self.persist(key);
        if state == State::Failed {
            tracing::error!(task = %task, subtask = %outcome.id, "{line}");
        } else {
            tracing::info!(task = %task, subtask = %outcome.id, "{line}");
        }
    }
}

/// Take subtasks of a task (and start them, unless told not to).
#[derive(Message)]
#[rtype(result = "Result<Vec<SubtaskStatus>, SupervisorError>")]
pub struct Take(pub Assign, pub Task);

impl Handler<Take> for AgentSupervisor {
    type Result = Result<Vec<SubtaskStatus>, SupervisorError>;

    /// `parsed` is the assignment's task, its job parsed for its leg.
    fn handle(&mut self, Take(assign, parsed): Take, ctx: &mut Context<Self>) -> Self::Result {
        let job = parsed.shared_job();
        if job.name.as_str() != assign.task.name {
            return Err(SupervisorError::Invalid(format!(
                "the task is named `{}` but its job file says `{}`",
                assign.task.name, job.name
            )));
        }
        // Table and partition names become folders under the task's: a name that would
        // leave it (`../../tmp/x`) is refused before anything is stored or created.
        for spec in &assign.subtasks {
            spec.check_names().map_err(|e| {
                SupervisorError::Invalid(format!(
                    "subtask {} of task {}: {e}; this agent refuses it",
                    spec.id().escape_debug(),
                    assign.task.name
                ))
            })?;
        }
        let task = assign.task.name.clone();
        // Another task under a known name (deleted and created again on the controller):
        // what the agent kept of the old one goes.
        let replaced = self
            .tasks
            .get(&task)
            .is_some_and(|runtime| runtime.definition.id != assign.task.id);
        if replaced {
            let old: Vec<String> = self
                .assignments
                .iter()
                .filter(|(_, a)| a.record.task == task)
                .map(|(k, _)| k.clone())
                .collect();
            if let Some(key) = old.iter().find(|k| self.running.contains_key(*k)) {
                return Err(SupervisorError::Conflict(format!(
                    "subtask {} of an earlier task `{task}` still runs on this agent; stop it \
                     first",
                    key_subtask(key)
                )));
            }
            self.store.remove(AGENT_ASSIGNMENTS, &old)?;
            // Removed, not overwritten: its sealed record's key goes with it, so the old
            // task's passwords left in freed pages of the store cannot be opened.
            self.store
                .remove(AGENT_TASKS, std::slice::from_ref(&task))?;
            for key in &old {
                self.step(Instant::now(), Event::Withdrawn(key.clone()), ctx);
                self.assignments.remove(key);
            }
            self.tasks.remove(&task);
        }
        self.store.put(
            AGENT_TASKS,
            &task,
            &AgentTaskRecord {
                definition: parsed.clone(),
                log_level: assign.log_level,
                leg: assign.leg,
            },
        )?;
        self.task_runtime(parsed, assign.log_level, assign.leg, ctx);
        // A subtask this agent already holds is kept as it is: a controller that sends the
        // same subtasks again (it was killed before it recorded that they were taken)
        // changes nothing.
        let (uploads, copies) = (job.mode.uploads(), job.mode.copies());
        let mut statuses = Vec::with_capacity(assign.subtasks.len());
        let mut records = Vec::new();
        for spec in assign.subtasks {
            let key = assignment_key(&task, &spec.id());
            match self.assignments.get_mut(&key) {
                Some(held) => {
                    if assign.start && held.record.status.state == State::Pending {
                        held.record.wanted = true;
                    }
                    statuses.push(held.record.status.clone());
                    records.push(held.record.clone());
                }
                None => {
                    let record = AssignmentRecord {
                        task: task.clone(),
                        status: SubtaskStatus::pending(&spec, uploads, copies),
                        spec,
                        wanted: assign.start,
                    };
                    statuses.push(record.status.clone());
                    records.push(record);
                }
            }
        }
        let keyed: Vec<(String, &AssignmentRecord)> =
            records.iter().map(|r| (r.key(), r)).collect();
        let refs: Vec<(&str, &AssignmentRecord)> =
            keyed.iter().map(|(k, r)| (k.as_str(), *r)).collect();
        self.store.put_many(AGENT_ASSIGNMENTS, &refs)?;
        let taken = records.len();
        let mut wanted = Vec::new();
        for record in records {
            let key = record.key();
            if record.wanted && record.status.state == State::Pending {
                wanted.push(key.clone());
            }
            match self.assignments.get_mut(&key) {
                Some(held) => held.record = record,
                None => {
                    self.assignments.insert(key, Assignment::new(record));
                }
            }
        }
        tracing::info!(task = %task, "took {taken} subtasks");
        for key in wanted {
            self.queue(&key, ctx);
        }
        Ok(statuses)
    }
}

/// What a user asks of a task's subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Resume,
}

#[derive(Message)]
#[rtype(result = "Result<Vec<SubtaskStatus>, SupervisorError>")]
pub struct Control {
    pub task: String,
    pub action: Action,
    pub selection: SubtaskSelection,
}

impl Handler<Control> for AgentSupervisor {
    type Result = Result<Vec<SubtaskStatus>, SupervisorError>;

    fn handle(&mut self, control: Control, ctx: &mut Context<Self>) -> Self::Result {
        let keys = self.selected_keys(&control.task, &control.selection)?;
        let (mut queue, mut withdraw) = (Vec::new(), Vec::new());
        for key in &keys {
            let running = self.running.get(key).cloned();
            let Some(a) = self.assignments.get_mut(key) else {
                continue;
            };
            let state = a.record.status.state;
            match control.action {
                Action::Start if state == State::Pending => {
                    a.record.wanted = true;
                    queue.push(key.clone());
                }
                Action::Resume if matches!(state, State::Failed | State::Stopped) => {
                    a.record.wanted = true;
                    queue.push(key.clone());
                    a.record.status.state = State::Pending;
                    a.record.status.error = None;
                    set_stages(&mut a.record.status, State::Pending);
                }
                Action::Stop => match running {
                    Some(actor) => {
                        a.stop_requested = true;
                        actor.do_send(StopSubtask);
                        withdraw.push(key.clone());
                    }
                    None if state == State::Pending => {
                        withdraw.push(key.clone());
                        a.record.wanted = false;
                        a.record.status.state = State::Stopped;
                        set_stages(&mut a.record.status, State::Stopped);
                    }
                    None => {}
                },
                _ => continue,
            }
            self.persist(key);
        }
        let verb = match control.action {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Resume => "resume",
        };
        tracing::info!(task = %control.task, "{verb} of {} subtasks asked", keys.len());
        for key in withdraw {
            self.step(Instant::now(), Event::Withdrawn(key), ctx);
        }
        for key in &queue {
            self.queue(key, ctx);
        }
        Ok(self.statuses(Some(&control.task)))
    }
}

/// The status of a task's subtasks, or of every subtask.
#[derive(Message)]
#[rtype(result = "Result<Vec<SubtaskStatus>, SupervisorError>")]
pub struct Query {
    pub task: Option<String>,
}

impl Handler<Query> for AgentSupervisor {
    type Result = Result<Vec<SubtaskStatus>, SupervisorError>;

    fn handle(&mut self, query: Query, _: &mut Context<Self>) -> Self::Result {
        if let Some(task) = &query.task
            && !self.tasks.contains_key(task)
        {
            return Err(SupervisorError::NotFound(format!(
                "this agent has no subtask of task `{task}`"
            )));
        }
        Ok(self.statuses(query.task.as_deref()))
    }
}

/// Forget a task whose subtasks have all ended.
#[derive(Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct Forget {
    pub task: String,
}

impl Handler<Forget> for AgentSupervisor {
    type Result = Result<(), SupervisorError>;

    fn handle(&mut self, forget: Forget, ctx: &mut Context<Self>) -> Self::Result {
        let keys = self.selected_keys(&forget.task, &SubtaskSelection::default())?;
        if let Some(key) = keys.iter().find(|k| self.running.contains_key(*k)) {
            return Err(SupervisorError::Conflict(format!(
                "subtask {} of task `{}` is running; stop the task first",
                key_subtask(key),
                forget.task
            )));
        }
        self.store.remove(AGENT_ASSIGNMENTS, &keys).and_then(|()| {
            self.store
                .remove(AGENT_TASKS, std::slice::from_ref(&forget.task))
        })?;
        for key in &keys {
            self.step(Instant::now(), Event::Withdrawn(key.clone()), ctx);
            self.assignments.remove(key);
        }
        self.tasks.remove(&forget.task);
        tracing::info!(task = %forget.task, "task forgotten");
        crate::telemetry::task_log::forget(&forget.task);
        Ok(())
    }
}

/// Running and queued subtasks, for health reports.
#[derive(Message)]
#[rtype(result = "(u32, u32, u32)")]
pub struct Load;

impl Handler<Load> for AgentSupervisor {
    type Result = MessageResult<Load>;

    fn handle(&mut self, _: Load, _: &mut Context<Self>) -> Self::Result {
        let queued = views::queued(&self.assignments);
        MessageResult((
            self.scheduler.slots() as u32,
            self.running.len() as u32,
            queued as u32,
        ))
    }
}

/// Change the level of a task's log while it runs; kept across restarts.
#[derive(Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct SetLogLevel {
    pub task: String,
    pub level: LogLevel,
}

impl Handler<SetLogLevel> for AgentSupervisor {
    type Result = Result<(), SupervisorError>;

    fn handle(&mut self, set: SetLogLevel, _: &mut Context<Self>) -> Self::Result {
        let Some(runtime) = self.tasks.get(&set.task) else {
            return Err(SupervisorError::NotFound(format!(
                "this agent has no subtask of task `{}`",
                set.task
            )));
        };
        let record = AgentTaskRecord {
            definition: runtime.definition.clone(),
            log_level: Some(set.level),
            leg: runtime.leg,
        };
        self.store.put(AGENT_TASKS, &set.task, &record)?;
        crate::telemetry::task_log::set_level(&set.task, set.level);
        tracing::info!(task = %set.task, "log level set to {}", set.level);
        Ok(())
    }
}

/// Subtasks by task and state, for `/metrics`.
#[derive(Message)]
#[rtype(result = "Vec<(String, State, i64)>")]
pub struct CountByState;

impl Handler<CountByState> for AgentSupervisor {
    type Result = MessageResult<CountByState>;

    fn handle(&mut self, _: CountByState, _: &mut Context<Self>) -> Self::Result {
        MessageResult(views::count_by_state(&self.assignments))
    }
}
