//! What crosses the network between the command line, the controller and the agents, as
//! JSON. These types are the API's contract: add fields with defaults, rename nothing.
//! Types that carry a secret print it as `***` in their `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::config::TaskDefinition;
use crate::model::{LogLevel, SubtaskSpec};
/// The lifecycle types are the model's: their JSON is the API's as it is.
pub use crate::model::{StageStatus, State, SubtaskStatus, TaskView};

// ---- agent API ----

#[derive(Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub password: String,
    /// The id of the controller logging in (none: a person, on the agent's status page).
    /// The agent belongs to the first controller that logs in, until it is released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginRequest { password: *** }")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub expires_in_s: u64,
}

/// What an agent says of itself: public (no login needed), nothing secret.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Health {
    pub name: String,
    pub version: String,
    /// Subtasks it runs at once.
    pub capacity: u32,
    pub running: u32,
    /// Taken and waiting for a free slot.
    pub queued: u32,
    pub fingerprint: String,
}

/// Give an agent subtasks of a task (`POST /v1/subtasks`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assign {
    pub task: TaskDefinition,
    pub subtasks: Vec<SubtaskSpec>,
    /// Start them as soon as a slot is free (otherwise they wait for a start).
    #[serde(default = "yes")]
    pub start: bool,
    /// The task's log level, when it was changed from the job file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// When no one agent has every role the task needs: the stages this agent runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leg: Option<crate::model::Leg>,
}

/// Change a task's log level while it runs (`PUT /v1/tasks/{name}/log-level`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetLogLevel {
    pub level: LogLevel,
}

fn yes() -> bool {
    true
}

/// Which subtasks of a task a start, stop or resume applies to: all when absent.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SubtaskSelection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtasks: Option<Vec<String>>,
}

/// Plan a task on an agent, which reaches the source (`POST /v1/plan`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanRequest {
    pub task: TaskDefinition,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanResponse {
    pub subtasks: Vec<SubtaskSpec>,
}

/// One check of a task test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestReport {
    pub ok: bool,
    /// The agent that ran the checks (set by the controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub checks: Vec<CheckResult>,
}

/// An agent joining a controller by itself (`POST /v1/agents/join` on the controller).
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub join_token: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub host: String,
    pub port: u16,
    pub fingerprint: String,
    /// A credential the agent made for this controller; it logs in with it.
    pub secret: String,
}

impl fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinRequest")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

// ---- controller API ----

#[derive(Clone, Serialize, Deserialize)]
pub struct RegisterAgent {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub host: String,
    pub port: u16,
    pub password: String,
    /// The certificate fingerprint the user confirmed; without it, the controller answers
    /// 409 with the fingerprint it saw, to be confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// What the agent may be given; all roles when absent.
    #[serde(default = "crate::model::Role::all")]
    pub roles: Vec<crate::model::Role>,
}

impl fmt::Debug for RegisterAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterAgent")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The 409 answer to a registration without a fingerprint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfirmFingerprint {
    pub error: String,
    pub fingerprint: String,
}

/// A registered agent, as `agents list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentView {
    pub name: String,
    pub description: String,
    #[serde(default = "crate::model::Role::all")]
    pub roles: Vec<crate::model::Role>,
    pub host: String,
    pub port: u16,
    pub fingerprint: String,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `tasks create`: the job file and the secrets it names.
#[derive(Clone, Serialize, Deserialize)]
pub struct CreateTask {
    pub task: TaskDefinition,
    /// Only these agents run the task's subtasks; all registered agents when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
}

impl fmt::Debug for CreateTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateTask")
            .field("task", &self.task)
            .field("agents", &self.agents)
            .finish()
    }
}

/// One export file to import, with the secrets its job's `password_env` names.
#[derive(Clone, Serialize, Deserialize)]
pub struct ImportFile {
    /// The file's name, for messages.
    pub name: String,
    pub xml: String,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

impl fmt::Debug for ImportFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportFile")
            .field("name", &self.name)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// `tasks import`: every file, all or none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportTasks {
    pub files: Vec<ImportFile>,
    #[serde(default)]
    pub replace: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
