//! What crosses the network between the command line, the controller and the agents, as
//! JSON. These types are the API's contract: add fields with defaults, rename nothing.
//! Types that carry a secret print it as `***` in their `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{LogLevel, SubtaskSpec};

/// The state of a task, a subtask or a stage.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum State {
    /// Not started yet (or waiting for a free slot on its agent).
    #[default]
    Pending,
    Running,
    Completed,
    Failed,
    Stopped,
}

impl State {
    /// Completed, failed and stopped are final until someone resumes.
    pub fn is_final(self) -> bool {
        matches!(self, State::Completed | State::Failed | State::Stopped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Running => "Running",
            State::Completed => "Completed",
            State::Failed => "Failed",
            State::Stopped => "Stopped",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stage of a subtask: extract, upload or copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StageStatus {
    pub state: State,
    pub rows: u64,
    /// Compressed bytes written (extract), sent (upload) or loaded (copy).
    pub bytes: u64,
}

/// A subtask as its agent last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SubtaskStatus {
    /// `schema.table` or `schema.table/part-003`.
    pub id: String,
    pub state: State,
    /// The agent that runs it (set by the controller; agents leave it empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The agent that copies it, when that is another agent (a hand-off task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_agent: Option<String>,
    pub extract: StageStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<StageStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<StageStatus>,
    #[serde(default)]
    pub chunks: u64,
    /// How many times the agent started it (a restart or a resume adds one).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The catalog's estimate of its rows, for progress and ETA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_rows: Option<u64>,
    /// Its task, where a list mixes tasks (an agent's every subtask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

impl SubtaskStatus {
    /// How far one of its stages is, 0 to 1: 1 once completed, otherwise its rows over the
    /// rows expected (the estimate, or the rows extracted when more), at most 0.99.
    pub fn stage_fraction(&self, stage: &StageStatus) -> f64 {
        if stage.state == State::Completed {
            return 1.0;
        }
        let expected = self.estimated_rows.unwrap_or(0).max(self.extract.rows);
        if expected == 0 {
            0.0
        } else {
            (stage.rows as f64 / expected as f64).min(0.99)
        }
    }

    /// The stages its mode runs, named.
    pub fn stages(&self) -> Vec<(&'static str, &StageStatus)> {
        let mut stages = vec![("extract", &self.extract)];
        stages.extend(self.upload.as_ref().map(|s| ("upload", s)));
        stages.extend(self.copy.as_ref().map(|s| ("copy", s)));
        stages
    }

    /// How far the subtask is, 0 to 1: the mean of its stages'.
    pub fn progress(&self) -> f64 {
        if self.state == State::Completed {
            return 1.0;
        }
        let stages = self.stages();
        let sum: f64 = stages.iter().map(|(_, s)| self.stage_fraction(s)).sum();
        sum / stages.len() as f64
    }

    /// A subtask not started yet, with the stages its mode runs.
    pub fn pending(spec: &SubtaskSpec, uploads: bool, copies: bool) -> SubtaskStatus {
        SubtaskStatus {
            id: spec.id(),
            estimated_rows: spec.estimated_rows,
            upload: uploads.then(StageStatus::default),
            copy: copies.then(StageStatus::default),
            ..SubtaskStatus::default()
        }
    }
}

/// A task as the agents receive it: the job file's text and the secrets its `password_env`
/// settings name, resolved on the machine that created the task.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDefinition {
    pub name: String,
    /// Made when the task is created: a task deleted and created again under the same name
    /// is another task, whose subtasks start afresh on the agents.
    #[serde(default)]
    pub id: String,
    /// The job file, as written.
    pub job: String,
    /// Environment variable name → value, for the job's `password_env` settings.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Files the job names (`boundaries_file`) → their text, as read where the task was
    /// created: agents read them from here, not from their own disks.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl fmt::Debug for TaskDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskDefinition")
            .field("name", &self.name)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TaskDefinition {
    /// Parse and validate the job with the definition's secrets as its environment.
    pub fn job(&self) -> Result<crate::config::Job, crate::config::JobError> {
        self.job_for(None)
    }

    /// The job as an agent given `leg` of it runs it: the front leg in mode
    /// `extract-upload` (no warehouse, no warehouse password).
    pub fn job_for(
        &self,
        leg: Option<crate::model::Leg>,
    ) -> Result<crate::config::Job, crate::config::JobError> {
        let mode = (leg == Some(crate::model::Leg::ExtractUpload))
            .then_some(crate::model::MigrationMode::ExtractUpload);
        crate::config::Job::parse_as(
            &format!("task {}", self.name),
            &self.job,
            |var| self.secrets.get(var).cloned(),
            |file| {
                self.files.get(file).cloned().ok_or_else(|| {
                    format!("{file} was not sent with the task; create it again with `dbhaul tasks create`")
                })
            },
            mode,
        )
    }
}

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

fn default_log_level() -> LogLevel {
    LogLevel::Info
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

/// A task as `tasks show` gives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskView {
    pub name: String,
    pub description: String,
    pub mode: String,
    pub state: State,
    /// The agents the task may use.
    pub agents: Vec<String>,
    pub created_at: String,
    pub subtasks_total: usize,
    pub subtasks_completed: usize,
    pub rows: u64,
    pub bytes: u64,
    /// When the first subtask started and, once the task ended, when the last one ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub elapsed_s: f64,
    /// Every subtask's estimate added up, when each has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_rows: Option<u64>,
    /// 0 to 1: each stage of each subtask, weighted by the subtasks' estimated rows.
    #[serde(default)]
    pub progress: f64,
    #[serde(default)]
    pub rows_per_s: f64,
    #[serde(default)]
    pub bytes_per_s: f64,
    /// Seconds left at the pace so far, while the task runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
    #[serde(default = "default_log_level")]
    pub log_level: LogLevel,
    pub subtasks: Vec<SubtaskStatus>,
    /// What could not be done (an agent that could not be reached to stop its subtasks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A task carries the files its job names: agents plan from them, not from their disks.
    #[test]
    fn a_task_reads_its_boundary_file_from_what_it_carries() {
        let mut task = TaskDefinition {
            name: "t".into(),
            id: String::new(),
            job:
                "[task]\nname = \"t\"\n[source]\nconnection = \"DSN=x\"\n[[tables]]\nname = \"a\"\n\
                  partition = { column = \"id\", boundaries_file = \"b.csv\" }\n"
                    .into(),
            secrets: BTreeMap::new(),
            files: BTreeMap::new(),
        };
        let missing = task.job().unwrap_err().to_string();
        assert!(
            missing.contains("b.csv was not sent with the task"),
            "{missing}"
        );
        task.files.insert("b.csv".into(), "10\n20\n".into());
        let job = task.job().unwrap();
        assert!(matches!(
            &job.tables[0].partition,
            Some(crate::config::PartitionRequest::Boundaries { values, .. }) if values.len() == 2
        ));
        let json = serde_json::to_string(&task).unwrap();
        let back: TaskDefinition = serde_json::from_str(&json).unwrap();
        assert_eq!(back.files, task.files);
    }
}
