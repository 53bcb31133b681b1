//! The AgentSupervisor owns execution on an agent: the subtasks it was given, their status,
//! and its capacity. Every change of state is written to the agent's store before it is
//! reported, so a subtask outlives a restart of the controller, of the agent or of the
//! machine: at start the supervisor reads the store and runs again every subtask that was
//! running or waiting to run. A subtask that runs again starts a new run; the copy stage
//! replaces what earlier runs loaded, so the warehouse ends with each row once.
//!
//! It never waits for a controller: once started, a subtask runs to its end whether or not
//! anyone polls.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::config::AgentPaths;
use crate::api::wire::{Assign, SubtaskSelection};
use crate::config::Task;
use crate::model::{Leg, LogLevel, SubtaskSpec, TableRef};
use crate::model::{StageStatus, State, SubtaskStatus};
use crate::pipeline::subtask::{StopSubtask, SubtaskActor};
use crate::pipeline::{SubtaskContext, SubtaskEvent, SubtaskOutcome, SubtaskProgress};
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

/// Progress is written to the store at most this often per subtask (state changes always).
const PERSIST_EVERY: Duration = Duration::from_secs(2);

/// What a task needs on this agent once prepared: its subtasks' shared context.
struct TaskRuntime {
    /// Its job parsed once, for its leg.
    definition: Task,
    /// The stages this agent runs, when another agent runs the rest.
    leg: Option<Leg>,
    context: Option<Arc<SubtaskContext>>,
    /// The tables the context was prepared for (warehouse tables checked or created):
    /// a subtask of another table, taken later, prepares the task again.
    prepared: Vec<TableRef>,
    preparing: bool,
    relay: Addr<Relay>,
}

struct Assignment {
    record: AssignmentRecord,
    stop_requested: bool,
    persisted: Instant,
    /// Runs again after a lost connection since the user last started or resumed it.
    retries: u32,
    /// A run again waits until then.
    not_before: Option<Instant>,
}

impl Assignment {
    fn new(record: AssignmentRecord) -> Assignment {
        Assignment {
            record,
            stop_requested: false,
            persisted: Instant::now(),
            retries: 0,
            not_before: None,
        }
    }
}

pub struct AgentSupervisor {
    store: Arc<Store>,
    paths: AgentPaths,
    capacity: usize,
    tasks: HashMap<String, TaskRuntime>,
    assignments: BTreeMap<String, Assignment>,
    running: HashMap<String, Addr<SubtaskActor>>,
    /// The one long-lived arbiter of every uploader and copier (STACK.md trap 2).
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
            capacity: capacity.max(1),
            tasks: HashMap::new(),
            assignments: BTreeMap::new(),
            running: HashMap::new(),
            io: Arbiter::new(),
        }
    }

    fn persist(&mut self, key: &str) {
        let Some(assignment) = self.assignments.get_mut(key) else {
            return;
        };
        assignment.persisted = Instant::now();
        if let Err(e) = self.store.put(AGENT_ASSIGNMENTS, key, &assignment.record) {
            tracing::error!(subtask = %key, "cannot record the subtask's status: {e}");
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
                .start();
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

    /// Start waiting subtasks while slots are free; prepare their tasks first.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let waiting: Vec<String> = self
            .assignments
            .iter()
            .filter(|(key, a)| {
                a.record.wanted
                    && a.record.status.state == State::Pending
                    && !self.running.contains_key(*key)
                    && a.not_before.is_none_or(|t| t <= Instant::now())
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in waiting {
            if self.running.len() >= self.capacity {
                break;
            }
            let task = self.assignments[&key].record.task.clone();
            let Some(runtime) = self.tasks.get_mut(&task) else {
                continue;
            };
            let table = &self.assignments[&key].record.spec.table;
            let ready = runtime
                .context
                .clone()
                .filter(|_| runtime.prepared.contains(table));
            let Some(context) = ready else {
                if !runtime.preparing {
                    runtime.preparing = true;
                    self.prepare(task, ctx);
                }
                continue;
            };
            let relay = runtime.relay.clone();
            let spec = self.assignments[&key].record.spec.clone();
            let attempt = self.assignments[&key].record.status.attempts + 1;
            let actor = SubtaskActor::new(context, spec, relay.recipient(), attempt).start();
            self.running.insert(key.clone(), actor);
            if let Some(a) = self.assignments.get_mut(&key) {
                a.record.status.state = State::Running;
                a.record.status.error = None;
                a.record.status.attempts += 1;
                a.record.status.started_at = Some(now());
                a.record.status.finished_at = None;
                a.stop_requested = false;
                let mode = runtime_mode(&self.tasks, &task);
                a.record.status.extract = StageStatus::default();
                a.record.status.upload = mode.0.then(StageStatus::default);
                a.record.status.copy = mode.1.then(StageStatus::default);
                a.record.status.chunks = 0;
                set_stages(&mut a.record.status, State::Running);
            }
            self.persist(&key);
            tracing::info!(task = %task, subtask = %key_subtask(&key), "subtask started");
        }
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
            actor.schedule(ctx);
        }));
    }

    fn statuses(&self, task: Option<&str>) -> Vec<SubtaskStatus> {
        self.assignments
            .values()
            .filter(|a| task.is_none_or(|t| a.record.task == t))
            .map(|a| {
                let mut status = a.record.status.clone();
                if task.is_none() {
                    status.task = Some(a.record.task.clone());
                }
                status
            })
            .collect()
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

/// Log the task at the level it was given, or its job file's; its secrets never in a line.
fn watch_log(definition: &Task, log_level: Option<LogLevel>) {
    let level = log_level.unwrap_or(definition.job().log_level);
    crate::telemetry::task_log::watch(
        &definition.name,
        level,
        definition.secrets.values().cloned(),
    );
}

fn key_subtask(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, s)| s)
}

/// (runs again after a lost connection, wait before the first) from a task's job.
fn retry_policy(tasks: &HashMap<String, TaskRuntime>, task: &str) -> (u32, Duration) {
    tasks
        .get(task)
        .map(|r| r.definition.job())
        .map_or((0, Duration::from_secs(30)), |job| {
            (job.retries, job.retry_wait)
        })
}

/// (uploads, copies) of a task's mode, from its definition.
fn runtime_mode(tasks: &HashMap<String, TaskRuntime>, task: &str) -> (bool, bool) {
    tasks
        .get(task)
        .map(|r| r.definition.job())
        .map_or((false, false), |job| {
            (job.mode.uploads(), job.mode.copies())
        })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Set every stage of a subtask to `state`, except stages already completed.
fn set_stages(status: &mut SubtaskStatus, state: State) {
    let mut stages = vec![&mut status.extract];
    if let Some(upload) = status.upload.as_mut() {
        stages.push(upload);
    }
    if let Some(copy) = status.copy.as_mut() {
        stages.push(copy);
    }
    for stage in stages {
        if stage.state != State::Completed || state == State::Pending {
            stage.state = state;
        }
    }
}

/// The stages' counters from a running subtask's progress. A stage runs once it has seen a
/// row; the copy stage counts rows in the warehouse.
fn apply_progress(status: &mut SubtaskStatus, progress: &SubtaskProgress) {
    status.extract.rows = progress.rows;
    status.extract.bytes = progress.bytes_out;
    status.chunks = progress.chunks;
    status.extract.state = if progress.extracted {
        State::Completed
    } else {
        State::Running
    };
    if let (Some(upload), Some(rows)) = (status.upload.as_mut(), progress.uploaded_rows) {
        upload.rows = rows;
        upload.bytes = progress.uploaded_bytes;
        upload.state = if progress.uploaded {
            State::Completed
        } else if rows > 0 {
            State::Running
        } else {
            State::Pending
        };
    }
    if let (Some(copy), Some(rows)) = (status.copy.as_mut(), progress.copied_rows) {
        copy.rows = rows;
        copy.state = if rows > 0 {
            State::Running
        } else {
            State::Pending
        };
    }
}

async fn prepare_task(
    definition: Task,
    leg: Option<Leg>,
    specs: Vec<SubtaskSpec>,
    work: std::path::PathBuf,
    io: ArbiterHandle,
    drivers: crate::source::DriverPolicy,
) -> Result<Arc<SubtaskContext>, String> {
    let job = definition.shared_job();
    let copy_only = leg == Some(Leg::Copy);
    let source = if copy_only {
        // The copy leg's agent need not reach the source: the source's kind (for the types
        // of tables it creates) is told by the driver's name.
        if job.warehouse.as_ref().is_some_and(|w| w.count_source) {
            return Err(
                "warehouse.count_source counts the source after each copy, but this \
                 agent only copies (another agent extracts: no agent has every role the task \
                 needs); register an agent with all three roles, or set count_source = false"
                    .into(),
            );
        }
        crate::source::Source::unconnected(&job.connection).map_err(|e| format!("source: {e}"))?
    } else {
        // Checked here too, not only when the task came: a subtask resumed from the store
        // after a restart, or a task taken before the settings changed, meets them now.
        crate::source::drivers::check(&job.connection, &drivers)
            .map_err(|e| format!("source: {e}"))?;
        let job = job.clone();
        crate::agent::blocking(move || {
            crate::source::Source::open(&job.connection, job.password.as_ref())
                .map(|(source, _)| source)
                .map_err(|e| format!("source: {e}"))
        })
        .await??
    };
    let target = match &job.target {
        Some(settings) => Some(
            crate::destination::S3Target::connect(settings)
                .await
                .map_err(|e| format!("target: {e}"))?,
        ),
        None => None,
    };
    let warehouse = crate::pipeline::checks::warehouse(&job, Some(&source), &specs, true).await;
    if !warehouse.ok {
        return Err(format!("warehouse: {}", warehouse.detail));
    }
    Ok(Arc::new(SubtaskContext {
        task: job.name.clone(),
        instance: definition.id.clone(),
        sorting: job.sorting,
        native_copy: job.native_copy,
        source,
        files: job.files.clone(),
        work: crate::destination::WorkDir::new(work.join(job.name.as_str())),
        target,
        warehouse: job.warehouse.clone(),
        io: job.mode.uploads().then_some(io),
        copy_only,
    }))
}

impl Actor for AgentSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Read one by one: a task whose job no longer parses fails its own subtasks, with
        // the reason, and no other.
        let tasks: Vec<(String, serde_json::Value)> = match self.store.list(AGENT_TASKS) {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::error!("cannot read the agent's store: {e}");
                Vec::new()
            }
        };
        let mut unparsed: HashMap<String, String> = HashMap::new();
        for (name, task) in tasks {
            match serde_json::from_value::<AgentTaskRecord>(task) {
                Ok(task) => self.task_runtime(task.definition, task.log_level, task.leg, ctx),
                Err(e) => {
                    tracing::error!(task = %name, "{e}");
                    unparsed.insert(name, e.to_string());
                }
            }
        }
        let records: Vec<(String, AssignmentRecord)> =
            self.store.list(AGENT_ASSIGNMENTS).unwrap_or_default();
        let mut resumed = Vec::new();
        for (key, mut record) in records {
            if let Some(error) = unparsed.get(&record.task)
                && !record.status.state.is_final()
            {
                record.status.state = State::Failed;
                record.status.error = Some(error.clone());
                record.wanted = false;
                if let Err(e) = self.store.put(AGENT_ASSIGNMENTS, &key, &record) {
                    tracing::error!(subtask = %key, "cannot record the subtask's status: {e}");
                }
            }
            if record.status.state == State::Running {
                // It was running when the agent stopped: run it again.
                record.status.state = State::Pending;
                record.wanted = true;
                set_stages(&mut record.status, State::Pending);
                resumed.push(key.clone());
            }
            self.assignments.insert(key, Assignment::new(record));
        }
        for key in &resumed {
            let task = self.assignments[key].record.task.clone();
            self.persist(key);
            tracing::warn!(
                task = %task,
                subtask = %key_subtask(key),
                "the subtask was running when the agent stopped; it runs again"
            );
        }
        self.schedule(ctx);
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
        let status = &mut a.record.status;
        status.extract.rows = outcome.rows;
        status.extract.bytes = outcome.bytes_compressed;
        status.chunks = outcome.chunks;
        if let (Some(upload), Some(rows)) = (status.upload.as_mut(), outcome.uploaded_rows) {
            upload.rows = rows;
            upload.bytes = outcome.bytes_compressed;
        }
        if let (Some(copy), Some(rows)) = (status.copy.as_mut(), outcome.copied_rows) {
            copy.rows = rows;
        }
        status.finished_at = Some(now());
        if let Err(error) = &outcome.manifest
            && outcome.transient
            && !a.stop_requested
        {
            let (retries, first_wait) = retry_policy(&self.tasks, task);
            if a.retries < retries {
                a.retries += 1;
                let policy = crate::pipeline::job_runner::RetryPolicy {
                    retries,
                    first_wait,
                };
                let wait = policy.wait(a.retries);
                a.not_before = Some(Instant::now() + wait);
                status.state = State::Pending;
                status.error = Some(format!(
                    "{error} (runs again in {} s, retry {} of {retries})",
                    wait.as_secs(),
                    a.retries
                ));
                set_stages(status, State::Pending);
                let line = format!(
                    "subtask runs again in {} s (retry {} of {retries}) after a fault that may \
                     pass: {error}",
                    wait.as_secs(),
                    a.retries
                );
                self.persist(&key);
                crate::telemetry::metrics::retry("subtask");
                tracing::warn!(task = %task, subtask = %outcome.id, "{line}");
                ctx.run_later(wait, |actor, ctx| actor.schedule(ctx));
                // Its slot is free meanwhile for what waits.
                self.schedule(ctx);
                return;
            }
        }
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
        status.state = state;
        status.error = match (&outcome.manifest, state) {
            (Err(e), State::Failed) => Some(e.clone()),
            _ => None,
        };
        set_stages(status, state);
        a.stop_requested = false;
        self.persist(&key);
        if state == State::Failed {
            tracing::error!(task = %task, subtask = %outcome.id, "{line}");
        } else {
            tracing::info!(task = %task, subtask = %outcome.id, "{line}");
        }
        self.schedule(ctx);
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
        for record in records {
            let key = record.key();
            match self.assignments.get_mut(&key) {
                Some(held) => held.record = record,
                None => {
                    self.assignments.insert(key, Assignment::new(record));
                }
            }
        }
        tracing::info!(task = %task, "took {taken} subtasks");
        self.schedule(ctx);
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
        for key in &keys {
            let running = self.running.get(key).cloned();
            let Some(a) = self.assignments.get_mut(key) else {
                continue;
            };
            let state = a.record.status.state;
            match control.action {
                Action::Start if state == State::Pending => {
                    a.record.wanted = true;
                    a.retries = 0;
                }
                Action::Resume if matches!(state, State::Failed | State::Stopped) => {
                    a.record.wanted = true;
                    a.retries = 0;
                    a.not_before = None;
                    a.record.status.state = State::Pending;
                    a.record.status.error = None;
                    set_stages(&mut a.record.status, State::Pending);
                }
                Action::Stop => match running {
                    Some(actor) => {
                        a.stop_requested = true;
                        actor.do_send(StopSubtask);
                    }
                    None if state == State::Pending => {
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
        self.schedule(ctx);
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

    fn handle(&mut self, forget: Forget, _: &mut Context<Self>) -> Self::Result {
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
        let queued = self
            .assignments
            .values()
            .filter(|a| a.record.wanted && a.record.status.state == State::Pending)
            .count();
        MessageResult((
            self.capacity as u32,
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
        let mut counts: BTreeMap<(String, State), i64> = BTreeMap::new();
        for a in self.assignments.values() {
            *counts
                .entry((a.record.task.clone(), a.record.status.state))
                .or_default() += 1;
        }
        MessageResult(counts.into_iter().map(|((t, s), n)| (t, s, n)).collect())
    }
}
