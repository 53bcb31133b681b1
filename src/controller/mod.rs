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

mod dispatch;
mod poll;
pub mod registry;
pub mod tasks;

pub use dispatch::leg_candidates;
use dispatch::*;

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
