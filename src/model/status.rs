//! The lifecycle of a task, its subtasks and their stages: the states they pass through and
//! the figures seen along the way. The controller, the agents, the store and the API all speak
//! in these types; their JSON is the API's contract and the stores' stored values, so add
//! fields with defaults and rename nothing.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{LogLevel, SubtaskSpec};

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

fn default_log_level() -> LogLevel {
    LogLevel::Info
}
