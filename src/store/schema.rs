//! What the daemons keep in their stores, one record type per table. These are storage
//! formats: a new field gets `#[serde(default)]` so older stores still read.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Table;
use crate::api::wire::{State, SubtaskStatus, TaskDefinition};
use crate::model::SubtaskSpec;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentTaskRecord {
    pub definition: TaskDefinition,
    /// The task's log level when it was changed from the job file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<crate::model::LogLevel>,
    /// The stages this agent runs of the task, when another agent runs the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leg: Option<crate::model::Leg>,
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
    pub definition: TaskDefinition,
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
        self.log_level
            .or_else(|| self.definition.job().ok().map(|job| job.log_level))
            .unwrap_or(crate::model::LogLevel::Info)
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
