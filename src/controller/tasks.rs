//! Tasks on the controller: created from a job file (planned into subtasks by an agent,
//! which reaches the source), started (dispatched), stopped, resumed, tested, shown and
//! deleted. Every change is written to the controller's store before it is answered.

use std::collections::BTreeMap;

use super::registry::now;
use super::{Controller, candidates, leg_candidates, needed_roles};
use crate::model::{Leg, LogLevel, Role};
use crate::remote::ApiError;
use crate::remote::agent_client::AgentError;
use crate::remote::wire::{
    CreateTask, State, SubtaskSelection, SubtaskStatus, TaskView, TestReport,
};
use crate::store::schema::{AgentRecord, CONTROLLER_TASKS, SubtaskRecord, TaskRecord};

fn agent_error(what: &str, e: AgentError) -> ApiError {
    match e {
        AgentError::Refused {
            status, message, ..
        } if (400..500).contains(&status) && status != 401 => {
            ApiError::bad_request(format!("{what}: {message}"))
        }
        other => ApiError::bad_gateway(format!("{what}: {other}")),
    }
}

impl Controller {
    fn task(&self, name: &str) -> Result<TaskRecord, ApiError> {
        self.lock()
            .tasks
            .get(name)
            .cloned()
            .ok_or_else(|| no_task(name))
    }

    /// The agents a task may use that have every role in `needed`, or why there are none.
    fn task_agents(
        &self,
        names: Option<&Vec<String>>,
        needed: &[Role],
        mode: &str,
    ) -> Result<Vec<AgentRecord>, ApiError> {
        let state = self.lock();
        if let Some(names) = names
            && let Some(unknown) = names.iter().find(|n| !state.agents.contains_key(*n))
        {
            return Err(ApiError::not_found(format!(
                "no agent named {unknown}; `dbhaul agents list` shows the registered ones"
            )));
        }
        let all = candidates(&state.agents, names, &[]);
        if all.is_empty() {
            return Err(ApiError::conflict(
                "no agent is registered: register one with `dbhaul agents register NAME --host H \
                 --port P` first",
            ));
        }
        let agents = candidates(&state.agents, names, needed);
        if agents.is_empty() {
            let have: Vec<String> = all
                .iter()
                .map(|a| format!("{} has {}", a.name, Role::list(&a.roles)))
                .collect();
            return Err(ApiError::conflict(format!(
                "no agent the task may use has the roles {} that {mode} needs: {}; register an \
                 agent with them (`dbhaul agents register NAME ... --roles {}`){}",
                Role::list(needed),
                have.join("; "),
                needed
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                if needed.contains(&Role::Copy) {
                    ", or agents with extract,upload and others with copy only, which hand \
                     each subtask from one to the other"
                } else {
                    ""
                }
            )));
        }
        Ok(agents)
    }

    /// Whether a task whose mode no one agent covers can go to front agents (extract,
    /// upload) and copy agents: the hand-off, decided at start.
    fn handoff_possible(&self, task: &TaskRecord) -> bool {
        let state = self.lock();
        let chosen = task.agents.as_ref();
        task.mode == crate::model::MigrationMode::ExtractUploadCopy.as_str()
            && !leg_candidates(&state.agents, chosen, Leg::ExtractUpload).is_empty()
            && !leg_candidates(&state.agents, chosen, Leg::Copy).is_empty()
    }

    /// The agents the task may use, or why there are none: one agent with every role its
    /// mode needs, else (copy mode) front agents and copy agents. Returns whether the task
    /// hands off between them.
    fn task_agents_or_handoff(&self, task: &TaskRecord) -> Result<bool, ApiError> {
        let needed = needed_roles(task);
        match self.task_agents(
            task.agents.as_ref(),
            &needed,
            &format!("mode {}", task.mode),
        ) {
            Ok(_) => Ok(false),
            Err(_) if self.handoff_possible(task) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The registered agents that hold (or held) subtasks of a task, or their copies.
    fn agents_of(&self, task: &TaskRecord) -> Vec<AgentRecord> {
        let copiers = task
            .subtasks
            .iter()
            .filter_map(|s| s.copy_leg.as_ref())
            .filter_map(|l| l.agent.as_deref());
        let mut names: Vec<&str> = task
            .subtasks
            .iter()
            .filter_map(|s| s.status.agent.as_deref())
            .chain(copiers)
            .collect();
        names.sort_unstable();
        names.dedup();
        let state = self.lock();
        names
            .into_iter()
            .filter_map(|n| state.agents.get(n).cloned())
            .collect()
    }

    pub async fn create_task(&self, request: CreateTask) -> Result<TaskView, ApiError> {
        let task = request
            .task
            .parse(None)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let name = task.job().name.to_string();
        let definition = task.with_identity(name, crate::config::random_token()[..16].to_string());
        let job = definition.shared_job();
        if self.lock().tasks.contains_key(&definition.name) {
            return Err(ApiError::conflict(format!(
                "a task named {} exists; delete it first (`dbhaul tasks delete {}`) or give the \
                 job another task.name",
                definition.name, definition.name
            )));
        }
        if let Some(names) = &request.agents
            && names.is_empty()
        {
            return Err(ApiError::bad_request(
                "--agents is empty: name at least one agent",
            ));
        }
        // Plan on the first agent that answers and reads sources.
        let agents = self.task_agents(
            request.agents.as_ref(),
            &[Role::Extract],
            "planning (reading the source's catalog)",
        )?;
        let mut unreachable = Vec::new();
        let mut planned = None;
        for agent in &agents {
            match self.client(agent).plan(&definition).await {
                Ok(plan) => {
                    planned = Some(plan.subtasks);
                    break;
                }
                Err(e @ AgentError::Unreachable { .. })
                | Err(e @ AgentError::Certificate { .. }) => unreachable.push(e.to_string()),
                Err(e) => {
                    return Err(agent_error(&format!("planning on agent {}", agent.name), e));
                }
            }
        }
        let Some(specs) = planned else {
            return Err(ApiError::bad_gateway(format!(
                "no agent could plan the task: {}",
                unreachable.join("; ")
            )));
        };
        let (uploads, copies) = (job.mode.uploads(), job.mode.copies());
        let record = TaskRecord {
            description: job.description.clone(),
            mode: job.mode.as_str().to_string(),
            agents: request.agents,
            created_at: now(),
            started: false,
            subtasks: specs
                .into_iter()
                .map(|spec| SubtaskRecord {
                    status: SubtaskStatus::pending(&spec, uploads, copies),
                    spec,
                    dispatched: false,
                    copy_leg: None,
                })
                .collect(),
            definition,
            log_level: None,
            handoff: false,
        };
        self.store
            .put(CONTROLLER_TASKS, &record.definition.name, &record)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        self.lock()
            .tasks
            .insert(record.definition.name.clone(), record.clone());
        record.watch_log();
        tracing::info!(
            task = %record.definition.name,
            "task created with {} subtasks",
            record.subtasks.len()
        );
        Ok(record.view())
    }

    pub fn show(&self, name: &str) -> Result<TaskView, ApiError> {
        // Built from the record in place: a task of 10,000 subtasks is not cloned first.
        let state = self.lock();
        state
            .tasks
            .get(name)
            .map(TaskRecord::view)
            .ok_or_else(|| no_task(name))
    }

    /// Every task without its subtasks (`GET /v1/tasks/NAME` has them).
    pub fn list(&self) -> Vec<TaskView> {
        self.lock()
            .tasks
            .values()
            .map(TaskRecord::summary)
            .collect()
    }

    fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut TaskRecord),
    ) -> Result<TaskRecord, ApiError> {
        let mut state = self.lock();
        let record = state.tasks.get_mut(name).ok_or_else(|| no_task(name))?;
        change(record);
        let record = record.clone();
        drop(state);
        self.store
            .put(CONTROLLER_TASKS, name, &record)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(record)
    }

    pub async fn start(&self, name: &str) -> Result<TaskView, ApiError> {
        let task = self.task(name)?;
        match task.state() {
            State::Pending if !task.started => {}
            State::Completed => {
                return Err(ApiError::conflict(format!(
                    "task {name} is completed; nothing to start (delete it and create it again \
                     to run it again)"
                )));
            }
            State::Failed | State::Stopped => {
                return Err(ApiError::conflict(format!(
                    "task {name} is {}; `dbhaul tasks resume {name}` runs what did not complete",
                    task.state()
                )));
            }
            _ => {
                return Err(ApiError::conflict(format!(
                    "task {name} is already running"
                )));
            }
        }
        let handoff = self.task_agents_or_handoff(&task)?;
        self.update(name, |t| {
            t.started = true;
            t.handoff = handoff;
        })?;
        if handoff {
            tracing::info!(task = %name, "task started: no agent has every role it needs, so agents with extract and upload extract each subtask and agents with copy copy it");
        } else {
            tracing::info!(task = %name, "task started");
        }
        self.dispatch().await;
        self.show(name)
    }

    pub async fn stop(&self, name: &str) -> Result<TaskView, ApiError> {
        // Not while subtasks are being sent: a subtask sent meanwhile would be marked
        // dispatched after this marked it stopped, and never be told to stop.
        let _no_dispatch = self.dispatching.lock().await;
        let task = self.update(name, |t| {
            t.started = false;
            for s in t
                .subtasks
                .iter_mut()
                .filter(|s| !s.dispatched && !s.status.state.is_final())
            {
                s.status.state = State::Stopped;
            }
        })?;
        tracing::info!(task = %name, "stop asked");
        let warnings = self
            .for_each_agent(
                &task,
                |dispatched, s| dispatched && !s.state.is_final(),
                "stop",
            )
            .await;
        let mut view = self.show(name)?;
        view.warnings = warnings;
        Ok(view)
    }

    pub async fn resume(&self, name: &str) -> Result<TaskView, ApiError> {
        let task = self.task(name)?;
        if task.state() == State::Completed {
            return Err(ApiError::conflict(format!(
                "task {name} is completed; nothing to resume"
            )));
        }
        if !task.started && task.state() == State::Pending {
            return Err(ApiError::conflict(format!(
                "task {name} has not started; `dbhaul tasks start {name}` starts it"
            )));
        }
        let task = self.update(name, |t| {
            t.started = true;
            for s in t
                .subtasks
                .iter_mut()
                .filter(|s| !s.dispatched && s.status.state.is_final())
            {
                if s.status.state != State::Completed {
                    s.status.state = State::Pending;
                }
            }
        })?;
        tracing::info!(task = %name, "resume asked");
        let to_resume = |dispatched: bool, s: &SubtaskStatus| {
            dispatched && matches!(s.state, State::Failed | State::Stopped)
        };
        let warnings = self.for_each_agent(&task, to_resume, "resume").await;
        self.dispatch().await;
        let mut view = self.show(name)?;
        view.warnings = warnings;
        Ok(view)
    }

    /// Ask each agent holding matching subtasks to `action` them; returns what failed.
    async fn for_each_agent(
        &self,
        task: &TaskRecord,
        matching: impl Fn(bool, &SubtaskStatus) -> bool,
        action: &str,
    ) -> Vec<String> {
        let mut per_agent: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in task.subtasks.iter() {
            let front = (s.dispatched, Some(&s.status), s.status.agent.as_ref());
            let copy = s
                .copy_leg
                .as_ref()
                .map(|l| (l.dispatched, l.status.as_ref(), l.agent.as_ref()));
            for (dispatched, status, agent) in std::iter::once(front).chain(copy) {
                let status = status.unwrap_or(&s.status);
                if let Some(agent) = agent
                    && matching(dispatched, status)
                {
                    per_agent
                        .entry(agent.clone())
                        .or_default()
                        .push(s.status.id.clone());
                }
            }
        }
        let name = &task.definition.name;
        let mut warnings = Vec::new();
        for (agent_name, ids) in per_agent {
            let Some(agent) = self.lock().agents.get(&agent_name).cloned() else {
                warnings.push(format!("agent {agent_name} is no longer registered"));
                continue;
            };
            let selection = SubtaskSelection {
                subtasks: Some(ids),
            };
            self.count_control(name);
            let answer = self.client(&agent).control(name, action, &selection).await;
            match answer {
                Ok(statuses) => {
                    if self.merge(name, &agent_name, statuses) {
                        self.save_task_named(name);
                    }
                    self.count_control(name);
                }
                Err(e) => {
                    let line = format!("cannot {action} subtasks on agent {agent_name}: {e}");
                    tracing::warn!(task = %name, "{line}");
                    warnings.push(line);
                }
            }
        }
        warnings
    }

    pub async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let task = self.task(name)?;
        if task.state() == State::Running {
            return Err(ApiError::conflict(format!(
                "task {name} is running; stop it first (`dbhaul tasks stop {name}`)"
            )));
        }
        for agent in self.agents_of(&task) {
            let agent_name = agent.name.clone();
            match self.client(&agent).forget(name).await {
                Ok(()) => {}
                Err(e) if e.status() == Some(404) => {}
                Err(e) => {
                    tracing::warn!(task = %name, "agent {agent_name} did not forget the task: {e}")
                }
            }
        }
        self.store
            .remove(CONTROLLER_TASKS, &[name.to_string()])
            .map_err(|e| ApiError::internal(e.to_string()))?;
        self.lock().tasks.remove(name);
        tracing::info!(task = %name, "task deleted");
        crate::telemetry::task_log::forget(name);
        Ok(())
    }

    pub async fn test(&self, name: &str) -> Result<TestReport, ApiError> {
        let task = self.task(name)?;
        let agents = self.task_agents(
            task.agents.as_ref(),
            &needed_roles(&task),
            &format!("mode {}", task.mode),
        )?;
        let mut unreachable = Vec::new();
        for agent in &agents {
            match self.client(agent).test(&task.definition).await {
                Ok(report) => return Ok(report),
                Err(e @ AgentError::Unreachable { .. })
                | Err(e @ AgentError::Certificate { .. }) => unreachable.push(e.to_string()),
                Err(e) => return Err(agent_error(&format!("testing on agent {}", agent.name), e)),
            }
        }
        Err(ApiError::bad_gateway(format!(
            "no agent could test the task: {}",
            unreachable.join("; ")
        )))
    }

    /// Change the task's log level here and on its agents, while it runs.
    pub async fn set_log_level(&self, name: &str, level: LogLevel) -> Result<TaskView, ApiError> {
        let task = self.update(name, |t| t.log_level = Some(level))?;
        crate::telemetry::task_log::set_level(name, level);
        tracing::info!(task = %name, "log level set to {level}");
        let mut warnings = Vec::new();
        for agent in self.agents_of(&task) {
            match self.client(&agent).set_log_level(name, level).await {
                Ok(()) => {}
                Err(e) if e.status() == Some(404) => {}
                Err(e) => {
                    let line = format!(
                        "agent {} keeps its log level until it is reachable: {e}",
                        agent.name
                    );
                    tracing::warn!(task = %name, "{line}");
                    warnings.push(line);
                }
            }
        }
        let mut view = task.view();
        view.warnings = warnings;
        Ok(view)
    }

    /// The task's log: the controller's lines and every agent's, merged in time order,
    /// each marked with where it was written.
    pub async fn task_log(&self, name: &str) -> Result<String, ApiError> {
        let task = self.task(name)?;
        let own = crate::telemetry::task_log::read(self.logs.clone(), name.to_string())
            .await
            .unwrap_or_default();
        let mut lines: Vec<String> = String::from_utf8_lossy(&own)
            .lines()
            .map(|l| mark_origin(l, "controller"))
            .collect();
        for agent in self.agents_of(&task) {
            let origin = format!("agent {}", agent.name);
            match self.client(&agent).log(name).await {
                Ok(text) => lines.extend(text.lines().map(|l| mark_origin(l, &origin))),
                Err(e) if e.status() == Some(404) => {}
                Err(e) => lines.push(mark_origin(
                    &format!(
                        "{} WARNING task={name} the log of {origin} is missing: {e}",
                        now()
                    ),
                    "controller",
                )),
            }
        }
        // Lines start with an RFC 3339 UTC time: sorting them as text sorts them in time.
        lines.sort();
        let mut text = lines.join("\n");
        text.push('\n');
        Ok(text)
    }
}

/// `TIME LEVEL [origin] rest`: the origin after the level, so that lines still sort by time.
fn mark_origin(line: &str, origin: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(time), Some(level), Some(rest)) => {
            format!("{time} {level:<7} [{origin}] {}", rest.trim_start())
        }
        _ => format!("{line} [{origin}]"),
    }
}

/// How an import treats a task whose name or id exists already.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Replace the existing task (it must not be running).
    pub replace: bool,
    /// Import the one task under another name (and a new id).
    pub rename: Option<String>,
}

impl Controller {
    /// The task as an XML export.
    pub fn export(&self, name: &str) -> Result<String, ApiError> {
        let task = self.task(name)?;
        crate::export::export(&task).map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// Recreate tasks from exports, all or none: every file is read and checked, every
    /// conflict found, before anything is written, and then all are written in one
    /// transaction of the store. Subtasks whose agent is not registered here lose their
    /// agent (and are offered again when the task runs); the views' warnings say which.
    pub async fn import(
        &self,
        files: Vec<crate::remote::wire::ImportFile>,
        options: ImportOptions,
    ) -> Result<Vec<TaskView>, ApiError> {
        if options.rename.is_some() && files.len() != 1 {
            return Err(ApiError::bad_request(
                "--rename applies to one file; import the others separately",
            ));
        }
        let mut records = Vec::new();
        let mut warnings: Vec<Vec<String>> = Vec::new();
        for file in &files {
            let fail =
                |e: &dyn std::fmt::Display| ApiError::bad_request(format!("{}: {e}", file.name));
            let exported = crate::export::parse(&file.xml).map_err(|e| fail(&e))?;
            let missing: Vec<String> = exported
                .secret_names()
                .into_iter()
                .filter(|n| !file.secrets.contains_key(n))
                .collect();
            if !missing.is_empty() {
                return Err(fail(&format!(
                    "the task needs {}: set them in the environment of `dbhaul tasks import`",
                    missing.join(", ")
                )));
            }
            let mut record = exported
                .to_record(file.secrets.clone())
                .map_err(|e| fail(&e))?;
            let job = record.definition.shared_job();
            if let Some((place, setting)) = crate::export::schema::inline_password(&job) {
                return Err(fail(&format!(
                    "<job> holds a password in its {place}; an import never takes one (an \
                     export never writes one): move it to {setting} and give its value in \
                     the environment of `dbhaul tasks import`"
                )));
            }
            if job.name.as_str() != record.definition.name {
                return Err(fail(&format!(
                    "<job> names the task `{}` but <name> says `{}`",
                    job.name, record.definition.name
                )));
            }
            if job.mode.as_str() != record.mode {
                return Err(fail(&format!(
                    "<job> has mode {} but <settings mode> says {}",
                    job.mode.as_str(),
                    record.mode
                )));
            }
            let mut notes = Vec::new();
            if let Some(new_name) = &options.rename {
                crate::model::TaskName::parse(new_name)
                    .map_err(|e| ApiError::bad_request(format!("--rename: {e}")))?;
                rename(&mut record, new_name).map_err(|e| fail(&e))?;
            }
            {
                let state = self.lock();
                for subtask in &mut record.subtasks {
                    let Some(agent) = subtask.status.agent.clone() else {
                        continue;
                    };
                    if !state.agents.contains_key(&agent) {
                        notes.push(format!(
                            "subtask {} was on agent {agent}, which is not registered here: it \
                             has no agent now",
                            subtask.status.id
                        ));
                        subtask.status.agent = None;
                        subtask.dispatched = false;
                        if !subtask.status.state.is_final() {
                            start_afresh(subtask);
                        }
                    }
                }
                let name = &record.definition.name;
                let same_id = state.tasks.values().find(|t| {
                    t.definition.id == record.definition.id && &t.definition.name != name
                });
                if let Some(other) = same_id {
                    return Err(ApiError::conflict(format!(
                        "{}: task {} already has the id {}; import with --rename NEW",
                        file.name, other.definition.name, record.definition.id
                    )));
                }
                if let Some(existing) = state.tasks.get(name) {
                    if !options.replace {
                        return Err(ApiError::conflict(format!(
                            "{}: a task named {name} exists; import with --replace (it is \
                             overwritten) or --rename NEW",
                            file.name
                        )));
                    }
                    if existing.state() == State::Running {
                        return Err(ApiError::conflict(format!(
                            "{}: task {name} is running; stop it before replacing it",
                            file.name
                        )));
                    }
                }
            }
            if records
                .iter()
                .any(|r: &TaskRecord| r.definition.name == record.definition.name)
            {
                return Err(ApiError::bad_request(format!(
                    "{}: task {} is in two of the files",
                    file.name, record.definition.name
                )));
            }
            records.push(record);
            warnings.push(notes);
        }
        let values: Vec<(&str, &TaskRecord)> = records
            .iter()
            .map(|r| (r.definition.name.as_str(), r))
            .collect();
        self.store
            .put_many(CONTROLLER_TASKS, &values)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut views = Vec::new();
        for (record, notes) in records.into_iter().zip(warnings) {
            record.watch_log();
            tracing::info!(
                task = %record.definition.name,
                "task imported with {} subtasks",
                record.subtasks.len()
            );
            for note in &notes {
                tracing::warn!(task = %record.definition.name, "{note}");
            }
            let mut view = record.view();
            view.warnings = notes;
            self.lock()
                .tasks
                .insert(record.definition.name.clone(), record);
            views.push(view);
        }
        self.dispatch().await;
        Ok(views)
    }
}

fn no_task(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no task named {name}; `dbhaul tasks list` shows the tasks"
    ))
}

/// Under a new name a task is another task: a new id, and its unfinished subtasks are
/// taken afresh by their agents.
fn rename(record: &mut TaskRecord, new_name: &str) -> Result<(), String> {
    let old = record.definition.name.clone();
    let job = record.definition.job.replacen(
        &format!("name = \"{old}\""),
        &format!("name = \"{new_name}\""),
        1,
    );
    if job == record.definition.job {
        return Err(format!(
            "cannot rename: <job> does not hold `name = \"{old}\"` to change"
        ));
    }
    let mut definition = record.definition.clone().into_definition();
    definition.job = job;
    definition.name = new_name.to_string();
    definition.id = crate::config::random_token()[..16].to_string();
    record.definition = definition.parse(None).map_err(|e| format!("<job>: {e}"))?;
    for subtask in record
        .subtasks
        .iter_mut()
        .filter(|s| s.status.state != State::Completed)
    {
        subtask.dispatched = false;
        start_afresh(subtask);
    }
    Ok(())
}

/// A subtask that runs again from its beginning: pending, no counters, its agent kept.
fn start_afresh(subtask: &mut SubtaskRecord) {
    let status = &subtask.status;
    let fresh = SubtaskStatus {
        agent: status.agent.clone(),
        ..SubtaskStatus::pending(
            &subtask.spec,
            status.upload.is_some(),
            status.copy.is_some(),
        )
    };
    subtask.status = fresh;
}
