//! What the daemons keep in their stores, one record type per table. These are storage
//! formats: a new field gets `#[serde(default)]` so older stores still read.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Table;
use crate::config::{Task, TaskDefinition};
use crate::model::{State, SubtaskSpec, SubtaskStatus, TaskView};

// ---- agent.redb ----

/// Tasks an agent has subtasks of, by task name.
pub const AGENT_TASKS: Table = Table("tasks");
/// The tables whose values hold secrets (a task's definition: its passwords and chunk key;
/// a registered agent's record: the password the controller logs in with), sealed under a
/// key per value that is deleted with it (see the store's file doc). The agent's and the
/// controller's tasks tables are both named `tasks`; `agents` is the controller's.
pub const SEALED_TABLES: &[&str] = &["tasks", "agents"];
/// An agent's assignments, by `<task>/<subtask id>`.
pub const AGENT_ASSIGNMENTS: Table = Table("assignments");

/// Read back, its job is parsed once for its leg (see [`StoredAgentTask`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "StoredAgentTask")]
pub struct AgentTaskRecord {
    pub definition: Task,
    /// The task's log level when it was changed from the job file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<crate::model::LogLevel>,
    /// The stages this agent runs of the task, when another agent runs the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leg: Option<crate::model::Leg>,
}

/// An [`AgentTaskRecord`] as stored: the definition's text, parsed for the leg beside it.
#[derive(Deserialize)]
struct StoredAgentTask {
    definition: TaskDefinition,
    #[serde(default)]
    log_level: Option<crate::model::LogLevel>,
    #[serde(default)]
    leg: Option<crate::model::Leg>,
}

impl TryFrom<StoredAgentTask> for AgentTaskRecord {
    type Error = String;

    fn try_from(stored: StoredAgentTask) -> Result<AgentTaskRecord, String> {
        Ok(AgentTaskRecord {
            definition: stored.definition.parse_stored(stored.leg)?,
            log_level: stored.log_level,
            leg: stored.leg,
        })
    }
}

/// One subtask given to this agent, with its last durable status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssignmentRecord {
    pub task: String,
    pub spec: SubtaskSpec,
    pub status: SubtaskStatus,
    /// Started by the controller: runs as soon as a slot is free, and again after a restart
    /// of the agent until it ends.
    pub wanted: bool,
}

impl AssignmentRecord {
    pub fn key(&self) -> String {
        assignment_key(&self.task, &self.status.id)
    }
}

pub fn assignment_key(task: &str, subtask: &str) -> String {
    format!("{task}/{subtask}")
}

// ---- controller.redb ----

/// Registered agents, by name.
pub const CONTROLLER_AGENTS: Table = Table("agents");
/// Tasks, by name.
pub const CONTROLLER_TASKS: Table = Table("tasks");

#[derive(Clone, Serialize, Deserialize)]
pub struct AgentRecord {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub host: String,
    pub port: u16,
    /// The pinned certificate fingerprint.
    pub fingerprint: String,
    /// What the controller logs in with: the agent's password, or the secret a joining
    /// agent made for it. Sealed in the store, which its service user alone reads.
    pub password: String,
    pub registered_at: String,
    /// What it may be given (all three for agents registered before roles existed).
    #[serde(default = "crate::model::Role::all")]
    pub roles: Vec<crate::model::Role>,
}

impl std::fmt::Debug for AgentRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRecord")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("fingerprint", &self.fingerprint)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its job parsed once, when it was created, imported or read back from the store.
    pub definition: Task,
    pub description: String,
    pub mode: String,
    /// The agents the user chose with `--agents`; all registered agents when absent.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    pub created_at: String,
    /// Started (and not stopped since): undispatched subtasks are sent out.
    pub started: bool,
    pub subtasks: Vec<SubtaskRecord>,
    /// The task's log level when it was changed from the job file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<crate::model::LogLevel>,
    /// No agent it may use has every role its mode needs: agents with extract and upload
    /// run each subtask's front, agents with copy its copy (decided at start).
    #[serde(default)]
    pub handoff: bool,
}

impl TaskRecord {
    /// The level the task logs at: as changed while it ran, or as its job file says.
    pub fn effective_log_level(&self) -> crate::model::LogLevel {
        self.log_level.unwrap_or(self.definition.job().log_level)
    }

    /// Log the task in its file from now on, at its level, its secrets never in a line.
    pub fn watch_log(&self) {
        crate::telemetry::task_log::watch(
            &self.definition.name,
            self.effective_log_level(),
            self.definition.secrets.values().cloned(),
        );
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubtaskRecord {
    pub spec: SubtaskSpec,
    /// The last status seen; `status.agent` names the agent that holds it.
    pub status: SubtaskStatus,
    /// The agent has taken it (it is in the agent's own store).
    pub dispatched: bool,
    /// In a hand-off task (`TaskRecord::handoff`): the copy, by another agent, once the
    /// front agent has uploaded the subtask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_leg: Option<CopyLeg>,
}

/// The copy stage of a subtask, run by an agent other than the one that extracted it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CopyLeg {
    /// The agent chosen for it.
    pub agent: Option<String>,
    /// That agent has taken it.
    #[serde(default)]
    pub dispatched: bool,
    /// What that agent last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SubtaskStatus>,
}

impl SubtaskRecord {
    /// The subtask as users see it: in a hand-off task, the front agent's extract and
    /// upload with the copy agent's copy; completed only once copied.
    /// Borrowed as recorded unless the task is a hand-off: the tasks list and the status
    /// page ask for every subtask of every task, and a clone of 10,000 each time showed.
    pub fn shown(&self, handoff: bool) -> Cow<'_, SubtaskStatus> {
        if !handoff {
            return Cow::Borrowed(&self.status);
        }
        let mut status = self.status.clone();
        let leg = self.copy_leg.as_ref();
        let copied = leg.and_then(|l| l.status.as_ref());
        status.copy = Some(copied.and_then(|s| s.copy).unwrap_or_default());
        status.copy_agent = leg.and_then(|l| l.agent.clone());
        if status.state == State::Completed {
            match copied {
                Some(copied) => {
                    status.state = copied.state;
                    status.error = copied.error.clone();
                    status.finished_at = copied.finished_at.clone();
                }
                None => {
                    status.state = State::Pending;
                    status.finished_at = None;
                }
            }
        }
        Cow::Owned(status)
    }
}

// ---- what a task shows (`tasks show`, the status pages, an export) ----

impl TaskRecord {
    /// A task's state from its subtasks'.
    pub fn state(&self) -> State {
        let task = self;
        let states: Vec<State> = task
            .subtasks
            .iter()
            .map(|s| s.shown(task.handoff).state)
            .collect();
        state_of(task.started, &states)
    }

    /// A task with every subtask (`tasks show`, the status page's selected task).
    pub fn view(&self) -> TaskView {
        let task = self;
        TaskView {
            subtasks: task
                .subtasks
                .iter()
                .map(|s| s.shown(task.handoff).into_owned())
                .collect(),
            ..task.summary()
        }
    }

    /// A task's state and figures without its subtasks (the tasks list: a page polls it, and a
    /// task of 10,000 subtasks would be megabytes each time).
    pub fn summary(&self) -> TaskView {
        let task = self;
        let shown: Vec<_> = task
            .subtasks
            .iter()
            .map(|s| s.shown(task.handoff))
            .collect();
        let subtasks: Vec<&SubtaskStatus> = shown.iter().map(AsRef::as_ref).collect();
        // From the statuses shown above: a hand-off task's are merged copies, made once.
        let states: Vec<State> = subtasks.iter().map(|s| s.state).collect();
        let state = state_of(task.started, &states);
        let rows: u64 = subtasks.iter().map(|s| s.extract.rows).sum();
        let bytes: u64 = subtasks.iter().map(|s| s.extract.bytes).sum();
        let started_at = subtasks
            .iter()
            .filter_map(|s| s.started_at.as_deref())
            .min()
            .map(str::to_owned);
        let finished_at = state
            .is_final()
            .then(|| {
                subtasks
                    .iter()
                    .filter_map(|s| s.finished_at.as_deref())
                    .max()
            })
            .flatten()
            .map(str::to_owned);
        let elapsed_s = match &started_at {
            Some(start) => seconds_between(start, finished_at.as_deref()),
            None => 0.0,
        };
        let progress = progress(&subtasks);
        let per_s = |n: u64| {
            if elapsed_s > 0.0 {
                n as f64 / elapsed_s
            } else {
                0.0
            }
        };
        TaskView {
            name: task.definition.name.clone(),
            description: task.description.clone(),
            mode: task.mode.clone(),
            state,
            agents: task.agents.clone().unwrap_or_default(),
            created_at: task.created_at.clone(),
            subtasks_total: subtasks.len(),
            subtasks_completed: subtasks
                .iter()
                .filter(|s| s.state == State::Completed)
                .count(),
            rows,
            bytes,
            estimated_rows: subtasks.iter().map(|s| s.estimated_rows).sum(),
            eta_s: (state == State::Running && progress > 0.01)
                .then(|| elapsed_s * (1.0 - progress) / progress),
            started_at,
            finished_at,
            elapsed_s,
            progress,
            rows_per_s: per_s(rows),
            bytes_per_s: per_s(bytes),
            log_level: task.effective_log_level(),
            subtasks: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// A task's state from its subtasks' states as shown, and whether it was started.
fn state_of(started: bool, states: &[State]) -> State {
    if states.contains(&State::Running) {
        State::Running
    } else if !states.is_empty() && states.iter().all(|s| *s == State::Completed) {
        State::Completed
    } else if started && states.contains(&State::Pending) {
        State::Running
    } else if states.contains(&State::Failed) {
        State::Failed
    } else if states.contains(&State::Stopped) {
        State::Stopped
    } else {
        State::Pending
    }
}

/// Seconds from an RFC 3339 time to another (or to now).
fn seconds_between(start: &str, end: Option<&str>) -> f64 {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let Some(start) = parse(start) else {
        return 0.0;
    };
    let end = end
        .and_then(parse)
        .map_or_else(chrono::Utc::now, |e| e.with_timezone(&chrono::Utc));
    (end - start.with_timezone(&chrono::Utc))
        .num_milliseconds()
        .max(0) as f64
        / 1000.0
}

/// A task's progress: its subtasks' weighted by their estimated rows when each has one.
fn progress(subtasks: &[&SubtaskStatus]) -> f64 {
    if subtasks.is_empty() {
        return 0.0;
    }
    let weights: Option<Vec<f64>> = subtasks
        .iter()
        .map(|s| s.estimated_rows.filter(|n| *n > 0).map(|n| n as f64))
        .collect();
    let weights = weights.unwrap_or_else(|| vec![1.0; subtasks.len()]);
    let total: f64 = weights.iter().sum();
    subtasks
        .iter()
        .zip(&weights)
        .map(|(s, w)| s.progress() * w)
        .sum::<f64>()
        / total
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "[task]\nname = \"orders\"\n[source]\nconnection = \"Driver={SQLite3};Database=x.db\"\n[[tables]]\nname = \"a\"\n";

    /// A task and its subtask as a controller stored them before the lifecycle types left
    /// the API's wire module: they read back, and write back the same JSON.
    #[test]
    fn a_task_record_stored_before_the_move_reads_back_as_it_was() {
        let stored = serde_json::json!({
            "definition": {
                "name": "orders",
                "id": "0123456789abcdef",
                "job": JOB,
                "secrets": {"PGPASS": "s3cret"},
                "files": {}
            },
            "description": "",
            "mode": "extract",
            "agents": null,
            "created_at": "2026-11-29T00:00:00Z",
            "started": true,
            "subtasks": [{
                "spec": {
                    "table": {"catalog": null, "schema": "main", "name": "a"},
                    "columns": [],
                    "left_out": [],
                    "filter": null,
                    "partition": null,
                    "key": null,
                    "estimated_rows": 10,
                    "largest_lob_row": null
                },
                "status": {
                    "id": "main.a",
                    "state": "Running",
                    "agent": "a1",
                    "extract": {"state": "Completed", "rows": 10, "bytes": 200},
                    "upload": {"state": "Running", "rows": 4, "bytes": 80},
                    "chunks": 2,
                    "attempts": 1,
                    "started_at": "2026-11-29T00:00:01.000Z",
                    "estimated_rows": 10
                },
                "dispatched": true
            }],
            "log_level": "DEBUG",
            "handoff": false
        });
        let task: TaskRecord = serde_json::from_value(stored.clone()).unwrap();
        let status = &task.subtasks[0].status;
        assert_eq!(status.state, State::Running);
        assert_eq!(status.agent.as_deref(), Some("a1"));
        assert_eq!(status.extract.rows, 10);
        assert_eq!(status.upload.map(|u| u.state), Some(State::Running));
        assert_eq!(status.copy, None);
        assert_eq!(task.definition.job().name.as_str(), "orders");
        assert_eq!(serde_json::to_value(&task).unwrap(), stored);
    }

    /// An agent's subtask status as stored before the move, with the fields later versions
    /// added absent.
    #[test]
    fn a_subtask_status_stored_before_the_move_reads_back() {
        let stored = r#"{"id":"public.t/part-001","state":"Failed","extract":{"state":"Failed","rows":3,"bytes":0},"error":"source: gone"}"#;
        let status: SubtaskStatus = serde_json::from_str(stored).unwrap();
        assert_eq!(status.state, State::Failed);
        assert_eq!(status.error.as_deref(), Some("source: gone"));
        assert_eq!(status.attempts, 0);
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            stored.replace(r#","error""#, r#","chunks":0,"attempts":0,"error""#)
        );
    }

    /// A stored task whose job text no longer parses is an error that names the task, on
    /// the controller and on an agent; never a task with default settings.
    #[test]
    fn a_stored_task_whose_job_no_longer_parses_is_an_error_naming_it() {
        let broken = JOB.replace("[[tables]]", "[[tables]]\nno_such_setting = 1");
        let definition = serde_json::json!({"name": "orders", "id": "x", "job": broken});
        let controller = serde_json::json!({
            "definition": definition,
            "description": "",
            "mode": "extract",
            "created_at": "2026-11-29T00:00:00Z",
            "started": false,
            "subtasks": []
        });
        let error = serde_json::from_value::<TaskRecord>(controller)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("the stored task orders no longer parses"),
            "{error}"
        );
        assert!(error.contains("no_such_setting"), "{error}");
        let agent = serde_json::json!({"definition": definition, "leg": "copy"});
        let error = serde_json::from_value::<AgentTaskRecord>(agent)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("the stored task orders no longer parses"),
            "{error}"
        );
    }
}
