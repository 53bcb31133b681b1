//! The controller: a registry of agents with pinned certificates, tasks split into
//! subtasks, and the dispatch and polling that spread them over the agents. Its store
//! (`controller.redb`) keeps agents, tasks, subtask assignments and the last status seen, so
//! a controller that comes back re-reads it and re-polls the agents: subtasks that finished
//! while it was away show as finished.
//!
//! Subtasks are dispatched as soon as a task starts, each to the agent with the most free
//! capacity (its slots minus the subtasks it already holds); agents queue what exceeds their
//! slots. The agents then hold all of the task's work and finish it without the controller.
//! A subtask that no agent could take stays undispatched and is offered again at each poll.

pub mod registry;
pub mod tasks;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::model::Leg;
use crate::remote::agent_client::{AgentClient, TokenCache};
use crate::remote::wire::{Assign, Health, State, SubtaskStatus};
use crate::store::Store;
use crate::store::schema::{AgentRecord, CONTROLLER_AGENTS, CONTROLLER_TASKS, CopyLeg, TaskRecord};

/// The controller's address unless `--listen` says otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8554";

/// The controller's folder when `--dir` and `DBHAUL_CONTROLLER_DIR` are not given.
pub const DEFAULT_DIR: &str = "/opt/dbhaul/var/controller";

/// Agents asked at once in a poll round.
const POLL_CONCURRENCY: usize = 16;

pub struct Controller {
    store: Store,
    state: Mutex<ControllerState>,
    tokens: TokenCache,
    logs: PathBuf,
    /// Held for a whole dispatch, so that no subtask is sent to two agents.
    dispatching: tokio::sync::Mutex<()>,
    pub join_token: String,
    /// This controller's id (`controller.id` in its folder, made at first start): agents
    /// record the first controller that logs in and refuse any other until released.
    pub id: String,
    /// Wrong join tokens by source address.
    join_failures: crate::remote::throttle::Throttle,
}

/// An agent's health as last asked.
struct Checked {
    at: std::time::Instant,
    result: Result<Health, String>,
}

#[derive(Default)]
struct ControllerState {
    agents: BTreeMap<String, AgentRecord>,
    tasks: BTreeMap<String, TaskRecord>,
    /// The last health each agent reported, or why it could not, and when.
    health: HashMap<String, Checked>,
    /// Agents whose health is being asked again in the background.
    refreshing: std::collections::HashSet<String>,
    /// Per task, bumped before and after each control call to its agents (stop, resume):
    /// a poll answer asked for under another count may predate the call, and is dropped
    /// rather than let it undo what the call did.
    controls: HashMap<String, u64>,
}

/// The controller's id from `path`, made (random) at first start. Not a secret: it tells
/// agents which controller they belong to.
fn controller_id(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let id = crate::config::random_token()[..16].to_string();
    crate::config::files::write_private(path, format!("{id}\n").as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}

impl Controller {
    pub fn open(dir: &Path, join_token: String) -> Result<Controller, String> {
        let store = Store::open(&dir.join("controller.redb")).map_err(|e| e.to_string())?;
        let agents = store
            .list::<AgentRecord>(CONTROLLER_AGENTS)
            .map_err(|e| e.to_string())?;
        // Each task's job is parsed here, once: one that no longer parses stops the start
        // with its name and reason (it is never run with defaults in place of its settings).
        let tasks = store
            .list::<serde_json::Value>(CONTROLLER_TASKS)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(name, value)| {
                serde_json::from_value::<TaskRecord>(value)
                    .map(|task| (name, task))
                    .map_err(|e| format!("{}: {e}", dir.join("controller.redb").display()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        for (_, task) in &tasks {
            task.watch_log();
        }
        let id = controller_id(&dir.join("controller.id"))?;
        Ok(Controller {
            id,
            join_failures: Default::default(),
            store,
            state: Mutex::new(ControllerState {
                agents: agents.into_iter().collect(),
                tasks: tasks.into_iter().collect(),
                health: HashMap::new(),
                refreshing: Default::default(),
                controls: HashMap::new(),
            }),
            tokens: TokenCache::default(),
            logs: dir.join("logs"),
            dispatching: tokio::sync::Mutex::new(()),
            join_token,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ControllerState> {
        self.state.lock().expect("controller state lock")
    }

    fn client(&self, agent: &AgentRecord) -> AgentClient {
        AgentClient::new(
            &agent.name,
            &agent.host,
            agent.port,
            Some(agent.fingerprint.clone()),
            &agent.password,
            self.tokens.clone(),
        )
        .for_controller(&self.id)
    }

    fn save_task(&self, task: &TaskRecord) {
        if let Err(e) = self
            .store
            .put(CONTROLLER_TASKS, &task.definition.name, task)
        {
            tracing::error!(task = %task.definition.name, "cannot record the task: {e}");
        }
    }

    /// How many control calls went to the agents of `task` (see `ControllerState::controls`).
    fn controls(&self, task: &str) -> u64 {
        self.lock().controls.get(task).copied().unwrap_or(0)
    }

    /// Count a control call to the agents of `task`, before it goes and once it is merged.
    fn count_control(&self, task: &str) {
        *self.lock().controls.entry(task.to_string()).or_default() += 1;
    }

    /// Record the task named `name` as it stands now.
    fn save_task_named(&self, name: &str) {
        let record = self.lock().tasks.get(name).cloned();
        if let Some(record) = record {
            self.save_task(&record);
        }
    }

    /// Poll the agents that hold unfinished subtasks, record what changed, and dispatch
    /// what is still undispatched. Runs every `every` until the process ends.
    pub async fn poll_forever(&self, every: Duration) {
        loop {
            self.poll().await;
            self.dispatch().await;
            tokio::time::sleep(every).await;
        }
    }

    async fn poll(&self) {
        // (task, agent, control count) for unfinished dispatched subtasks.
        let pairs: Vec<(String, AgentRecord, u64)> = {
            let state = self.lock();
            let mut pairs = Vec::new();
            for (name, task) in &state.tasks {
                let controls = state.controls.get(name).copied().unwrap_or(0);
                let fronts = task
                    .subtasks
                    .iter()
                    .filter(|s| s.dispatched && !s.status.state.is_final())
                    .filter_map(|s| s.status.agent.as_deref());
                let copies = task
                    .subtasks
                    .iter()
                    .filter_map(|s| s.copy_leg.as_ref())
                    .filter(|l| {
                        l.dispatched && !l.status.as_ref().is_some_and(|s| s.state.is_final())
                    })
                    .filter_map(|l| l.agent.as_deref());
                let mut agents: Vec<&str> = fronts.chain(copies).collect();
                agents.sort_unstable();
                agents.dedup();
                for agent in agents {
                    if let Some(record) = state.agents.get(agent) {
                        pairs.push((name.clone(), record.clone(), controls));
                    }
                }
            }
            pairs
        };
        // Asked a few at a time (not one after another: 100 agents would make a round of
        // 100 round trips); each task is recorded once per round, however many agents
        // reported on it (a task of 10,000 subtasks is one record).
        use futures::StreamExt;
        let answers: Vec<_> = futures::stream::iter(pairs)
            .map(|(task, agent, controls)| async move {
                let answer = self.client(&agent).subtasks(&task).await;
                (task, agent, controls, answer)
            })
            .buffer_unordered(POLL_CONCURRENCY)
            .collect()
            .await;
        let mut changed = std::collections::BTreeSet::new();
        for (task, agent, controls, answer) in answers {
            match answer {
                Ok(_) if self.controls(&task) != controls => {
                    // A stop or resume went to the agents meanwhile: asked again next round.
                }
                Ok(statuses) => {
                    if self.merge(&task, &agent.name, statuses) {
                        changed.insert(task);
                    }
                }
                Err(e) if e.status() == Some(404) => {
                    // The agent lost the task (its folder was reset): offer it again.
                    self.undispatch(&task, &agent.name);
                }
                Err(e) => self.record_health(&agent.name, Err(e.to_string())),
            }
        }
        for task in changed {
            self.save_task_named(&task);
        }
    }

    fn record_health(&self, agent: &str, result: Result<Health, String>) {
        self.lock().health.insert(
            agent.to_string(),
            Checked {
                at: std::time::Instant::now(),
                result,
            },
        );
    }

    /// Record statuses an agent reported for a task's subtasks; true when any changed (the
    /// caller records the task).
    fn merge(&self, task: &str, agent: &str, statuses: Vec<SubtaskStatus>) -> bool {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(task) else {
            return false;
        };
        // The agent's subtasks by id: one pass over the task, not one per status.
        let mine: HashMap<String, usize> = record
            .subtasks
            .iter()
            .enumerate()
            .filter(|(_, s)| s.status.agent.as_deref() == Some(agent))
            .map(|(i, s)| (s.status.id.clone(), i))
            .collect();
        // The copy legs this agent runs (a hand-off task: never the same agent's fronts).
        let copying: HashMap<String, usize> = record
            .subtasks
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.copy_leg
                    .as_ref()
                    .is_some_and(|l| l.agent.as_deref() == Some(agent))
            })
            .map(|(i, s)| (s.status.id.clone(), i))
            .collect();
        let mut changed = false;
        let mut ended = Vec::new();
        for mut status in statuses {
            let Some(&i) = mine.get(&status.id) else {
                let leg = copying
                    .get(&status.id)
                    .and_then(|&i| record.subtasks[i].copy_leg.as_mut());
                if let Some(leg) = leg {
                    status.agent = Some(agent.to_string());
                    if leg.status.as_ref() != Some(&status) {
                        if status.state.is_final()
                            && leg.status.as_ref().map(|s| s.state) != Some(status.state)
                        {
                            ended.push((format!("{} (copy)", status.id), status.state));
                        }
                        leg.status = Some(status);
                        leg.dispatched = true;
                        changed = true;
                    }
                }
                continue;
            };
            let subtask = &mut record.subtasks[i];
            status.agent = Some(agent.to_string());
            if subtask.status != status {
                if subtask.status.state != status.state && status.state.is_final() {
                    ended.push((status.id.clone(), status.state));
                }
                subtask.status = status;
                subtask.dispatched = true;
                changed = true;
            }
        }
        drop(state);
        for (subtask, state) in &ended {
            tracing::info!(task = %task, subtask = %subtask, "{state} on agent {agent}");
        }
        changed
    }

    fn undispatch(&self, task: &str, agent: &str) {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(task) else {
            return;
        };
        for subtask in &mut record.subtasks {
            if subtask.status.agent.as_deref() == Some(agent) && !subtask.status.state.is_final() {
                subtask.dispatched = false;
                subtask.status.agent = None;
                subtask.status.state = State::Pending;
            }
            if let Some(leg) = &mut subtask.copy_leg
                && leg.agent.as_deref() == Some(agent)
                && !leg.status.as_ref().is_some_and(|s| s.state.is_final())
            {
                *leg = CopyLeg::default();
            }
        }
        let record = record.clone();
        drop(state);
        tracing::warn!(
            task = %task,
            "agent {agent} no longer holds the task's subtasks; they are offered again"
        );
        self.save_task(&record);
    }

    /// Dispatch what a started task has not yet dispatched, in two steps. First each
    /// subtask without an agent gets the agent with the most free capacity, and that choice
    /// is written to the store; then each chosen agent is sent its subtasks. A controller
    /// killed between the two sends the same subtasks to the same agents when it comes
    /// back (agents take a subtask they hold as a no-op), so no subtask ever runs on two
    /// agents.
    pub async fn dispatch(&self) {
        let _one_at_a_time = self.dispatching.lock().await;
        self.choose_agents().await;
        self.choose_copy_agents().await;
        self.send_chosen().await;
    }

    /// Free capacity per reachable agent (its slots less what it holds or was chosen for).
    async fn free_slots(&self, agents: &[AgentRecord]) -> Vec<(String, i64)> {
        let mut free = Vec::new();
        for agent in agents {
            match self.client(agent).health().await {
                Ok(health) => {
                    let slots = i64::from(health.capacity);
                    free.push((agent.name.clone(), slots - self.held_by(&agent.name) as i64));
                    self.record_health(&agent.name, Ok(health));
                }
                Err(e) => self.record_health(&agent.name, Err(e.to_string())),
            }
        }
        free
    }

    /// Each subtask without an agent gets one that may run it.
    async fn choose_agents(&self) {
        self.choose(
            |state, t| match t.handoff {
                true => leg_candidates(&state.agents, t.agents.as_ref(), Leg::ExtractUpload),
                false => candidates(&state.agents, t.agents.as_ref(), &needed_roles(t)),
            },
            unchosen,
            |subtask, agent| subtask.status.agent = Some(agent),
        )
        .await;
    }

    /// In hand-off tasks: an agent with the copy role for each subtask whose front is done.
    async fn choose_copy_agents(&self) {
        self.choose(
            |state, t| match t.handoff {
                true => leg_candidates(&state.agents, t.agents.as_ref(), Leg::Copy),
                false => Vec::new(),
            },
            copy_unchosen,
            |subtask, agent| {
                subtask.copy_leg = Some(CopyLeg {
                    agent: Some(agent),
                    ..CopyLeg::default()
                })
            },
        )
        .await;
    }

    /// For every started task with `waiting` subtasks: give each the agent among
    /// `candidates` with the most free capacity (ties by name, so the spread is
    /// predictable), by `assign`, and record the choices.
    async fn choose(
        &self,
        candidates: impl Fn(&ControllerState, &TaskRecord) -> Vec<AgentRecord>,
        waiting: fn(&crate::store::schema::SubtaskRecord) -> bool,
        assign: fn(&mut crate::store::schema::SubtaskRecord, String),
    ) {
        let wanted: Vec<(String, Vec<AgentRecord>)> = {
            let state = self.lock();
            state
                .tasks
                .iter()
                .filter(|(_, t)| t.started && t.subtasks.iter().any(waiting))
                .map(|(name, t)| (name.clone(), candidates(&state, t)))
                .filter(|(_, agents)| !agents.is_empty())
                .collect()
        };
        for (task, agents) in wanted {
            let mut free = self.free_slots(&agents).await;
            if free.is_empty() {
                continue;
            }
            let record = {
                let mut state = self.lock();
                let Some(record) = state.tasks.get_mut(&task) else {
                    continue;
                };
                for subtask in record.subtasks.iter_mut().filter(|s| waiting(s)) {
                    let best = free
                        .iter_mut()
                        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                        .expect("free is not empty");
                    best.1 -= 1;
                    assign(subtask, best.0.clone());
                }
                record.clone()
            };
            self.save_task(&record);
        }
    }

    async fn send_chosen(&self) {
        let sends: Vec<(String, Assign, AgentRecord)> = {
            let state = self.lock();
            let mut sends = Vec::new();
            for (name, task) in state.tasks.iter().filter(|(_, t)| t.started) {
                let mut per_agent: BTreeMap<(&str, Option<Leg>), Vec<crate::model::SubtaskSpec>> =
                    BTreeMap::new();
                let front = task.handoff.then_some(Leg::ExtractUpload);
                for s in task.subtasks.iter().filter(|s| chosen_not_sent(s)) {
                    if let Some(agent) = s.status.agent.as_deref() {
                        per_agent
                            .entry((agent, front))
                            .or_default()
                            .push(s.spec.clone());
                    }
                }
                for s in task.subtasks.iter().filter(|s| copy_chosen_not_sent(s)) {
                    if let Some(agent) = s.copy_leg.as_ref().and_then(|l| l.agent.as_deref()) {
                        per_agent
                            .entry((agent, Some(Leg::Copy)))
                            .or_default()
                            .push(s.spec.clone());
                    }
                }
                for ((agent, leg), specs) in per_agent {
                    if let Some(record) = state.agents.get(agent) {
                        let assign = Assign {
                            task: task.definition.definition_for(leg).clone(),
                            subtasks: specs,
                            start: true,
                            log_level: task.log_level,
                            leg,
                        };
                        sends.push((name.clone(), assign, record.clone()));
                    }
                }
            }
            sends
        };
        for (task, assign, agent) in sends {
            match self.client(&agent).take(&assign).await {
                Ok(statuses) => {
                    let what = match assign.leg {
                        Some(Leg::Copy) => "to copy ",
                        Some(Leg::ExtractUpload) => "to extract and upload ",
                        None => "",
                    };
                    tracing::info!(
                        task = %task,
                        "{} subtasks dispatched {what}to agent {}",
                        statuses.len(),
                        agent.name
                    );
                    match assign.leg {
                        Some(Leg::Copy) => self.mark_copy_dispatched(&task, &agent.name, statuses),
                        _ => self.mark_dispatched(&task, &agent.name, statuses),
                    }
                }
                Err(e) => {
                    // Tried again at the next poll, with the same agent.
                    tracing::warn!(
                        task = %task,
                        "agent {} did not take subtasks yet: {e}",
                        agent.name
                    );
                }
            }
        }
    }

    fn mark_dispatched(&self, task: &str, agent: &str, statuses: Vec<SubtaskStatus>) {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(task) else {
            return;
        };
        for mut status in statuses {
            if let Some(subtask) = record.subtasks.iter_mut().find(|s| {
                s.status.id == status.id
                    && !s.dispatched
                    && s.status.agent.as_deref() == Some(agent)
            }) {
                status.agent = Some(agent.to_string());
                subtask.status = status;
                subtask.dispatched = true;
            }
        }
        let record = record.clone();
        drop(state);
        self.save_task(&record);
    }

    fn mark_copy_dispatched(&self, task: &str, agent: &str, statuses: Vec<SubtaskStatus>) {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(task) else {
            return;
        };
        for mut status in statuses {
            let leg = record
                .subtasks
                .iter_mut()
                .filter(|s| s.status.id == status.id)
                .filter_map(|s| s.copy_leg.as_mut())
                .find(|l| !l.dispatched && l.agent.as_deref() == Some(agent));
            if let Some(leg) = leg {
                status.agent = Some(agent.to_string());
                leg.status = Some(status);
                leg.dispatched = true;
            }
        }
        let record = record.clone();
        drop(state);
        self.save_task(&record);
    }

    /// Unfinished subtasks (and copy legs) an agent holds or was chosen for, over every task.
    fn held_by(&self, agent: &str) -> usize {
        let state = self.lock();
        let subtasks = state.tasks.values().flat_map(|t| &t.subtasks);
        let fronts = subtasks
            .clone()
            .filter(|s| !s.status.state.is_final() && s.status.agent.as_deref() == Some(agent))
            .count();
        let copies = subtasks
            .filter_map(|s| s.copy_leg.as_ref())
            .filter(|l| {
                l.agent.as_deref() == Some(agent)
                    && !l.status.as_ref().is_some_and(|s| s.state.is_final())
            })
            .count();
        fronts + copies
    }
}

/// A subtask waiting for an agent to be chosen.
fn unchosen(s: &crate::store::schema::SubtaskRecord) -> bool {
    !s.dispatched && s.status.state == State::Pending && s.status.agent.is_none()
}

/// A subtask whose agent is chosen but has not taken it yet.
fn chosen_not_sent(s: &crate::store::schema::SubtaskRecord) -> bool {
    !s.dispatched && s.status.state == State::Pending && s.status.agent.is_some()
}

/// A hand-off subtask whose front is done and whose copy has no agent yet.
fn copy_unchosen(s: &crate::store::schema::SubtaskRecord) -> bool {
    s.status.state == State::Completed && s.copy_leg.as_ref().is_none_or(|l| l.agent.is_none())
}

/// A hand-off subtask whose copy agent is chosen but has not taken it yet.
fn copy_chosen_not_sent(s: &crate::store::schema::SubtaskRecord) -> bool {
    s.copy_leg
        .as_ref()
        .is_some_and(|l| !l.dispatched && l.agent.is_some())
}

/// The agents that may run `leg` of a hand-off task: for the front, those with extract and
/// upload but not copy; for the copy, those with copy but not both of the others. The two
/// never overlap, so no agent holds both legs of a task (an agent keeps one leg per task).
pub fn leg_candidates(
    agents: &BTreeMap<String, AgentRecord>,
    chosen: Option<&Vec<String>>,
    leg: Leg,
) -> Vec<AgentRecord> {
    use crate::model::Role;
    let front =
        |a: &AgentRecord| a.roles.contains(&Role::Extract) && a.roles.contains(&Role::Upload);
    candidates(agents, chosen, &[])
        .into_iter()
        .filter(|a| match leg {
            Leg::ExtractUpload => front(a) && !a.roles.contains(&Role::Copy),
            Leg::Copy => a.roles.contains(&Role::Copy) && !front(a),
        })
        .collect()
}

/// The agents a task may use: those it names, else every registered agent.
/// The agents a task may use (`--agents`, or all) that have every role in `needed`.
fn candidates(
    agents: &BTreeMap<String, AgentRecord>,
    chosen: Option<&Vec<String>>,
    needed: &[crate::model::Role],
) -> Vec<AgentRecord> {
    let may: Vec<AgentRecord> = match chosen {
        Some(names) => names
            .iter()
            .filter_map(|n| agents.get(n).cloned())
            .collect(),
        None => agents.values().cloned().collect(),
    };
    may.into_iter()
        .filter(|a| needed.iter().all(|r| a.roles.contains(r)))
        .collect()
}

/// The roles a task's subtasks need of the one agent that runs each (all its stages).
fn needed_roles(task: &TaskRecord) -> Vec<crate::model::Role> {
    match task.mode.as_str() {
        "extract" => crate::model::MigrationMode::Extract.roles(),
        "extract-upload" => crate::model::MigrationMode::ExtractUpload.roles(),
        _ => crate::model::MigrationMode::ExtractUploadCopy.roles(),
    }
}

impl Controller {
    /// What `/metrics` shows of the tasks and agents, read now.
    pub fn metrics(&self) -> Vec<crate::telemetry::metrics::Snapshot> {
        use crate::telemetry::metrics::Snapshot;
        let label = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let state = self.lock();
        let mut subtasks = BTreeMap::new();
        let mut tasks = BTreeMap::new();
        let mut rows = Vec::new();
        let mut bytes = Vec::new();
        for (name, task) in &state.tasks {
            *tasks.entry(task.state()).or_insert(0i64) += 1;
            for s in &task.subtasks {
                *subtasks
                    .entry((name.as_str(), s.status.state))
                    .or_insert(0i64) += 1;
            }
            for stage in ["extract", "upload", "copy"] {
                let of_stage = |s: &SubtaskStatus| match stage {
                    "extract" => Some(s.extract),
                    "upload" => s.upload,
                    _ => s.copy,
                };
                let sums = task
                    .subtasks
                    .iter()
                    .filter_map(|s| of_stage(&s.status))
                    .fold(None, |acc: Option<(u64, u64)>, st| {
                        let (r, b) = acc.unwrap_or((0, 0));
                        Some((r + st.rows, b + st.bytes))
                    });
                if let Some((r, b)) = sums {
                    let l = label(&[("task", name), ("stage", stage)]);
                    rows.push((l.clone(), r as i64));
                    bytes.push((l, b as i64));
                }
            }
        }
        let reachable = state.health.values().filter(|h| h.result.is_ok()).count() as i64;
        let agents = vec![
            (label(&[("reachable", "true")]), reachable),
            (
                label(&[("reachable", "false")]),
                state.agents.len() as i64 - reachable.min(state.agents.len() as i64),
            ),
        ];
        vec![
            Snapshot {
                name: "tasks",
                help: "Tasks by state",
                values: tasks
                    .into_iter()
                    .map(|(s, n)| (label(&[("state", s.as_str())]), n))
                    .collect(),
            },
            Snapshot {
                name: "subtasks",
                help: "Subtasks by task and state, as their agents last reported",
                values: subtasks
                    .into_iter()
                    .map(|((t, s), n)| (label(&[("task", t), ("state", s.as_str())]), n))
                    .collect(),
            },
            Snapshot {
                name: "task_rows",
                help: "Rows through each stage of a task, over all its agents",
                values: rows,
            },
            Snapshot {
                name: "task_bytes",
                help: "Compressed bytes through each stage of a task, over all its agents",
                values: bytes,
            },
            Snapshot {
                name: "agents",
                help: "Registered agents by whether they answered the last health check",
                values: agents,
            },
        ]
    }
}
