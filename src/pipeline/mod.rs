//! The data path of one subtask, as actors:
//!
//! ```text
//! Extractor (OS thread, ODBC) ──CsvBatch+credit──▶ Compressor (own arbiter: gzip, chunk
//!     files, manifest) ──ChunkSealed──▶ SubtaskActor (supervises, reports to the runner)
//! ```
//!
//! Every data-path send goes through [`credit::BoundedSender`]: memory stays flat however
//! large the table, and the slowest stage sets the pace. One [`credit::CancelSwitch`] per
//! subtask stops every stage. [`job_runner::JobRunner`] runs a job's subtasks, a few at a
//! time, on this machine.

pub mod compress;
pub mod credit;
pub mod csv;
pub mod extract;
pub mod job_runner;
pub mod messages;
pub mod subtask;

use std::path::PathBuf;

use actix::prelude::*;

use crate::config::FileSettings;
use crate::model::{SubtaskSpec, TaskName};
use crate::source::Source;
use crate::target::WorkDir;

/// What every subtask of a task shares.
#[derive(Debug)]
pub struct SubtaskContext {
    pub task: TaskName,
    pub source: Source,
    pub files: FileSettings,
    /// The task's working folder (`<work-dir>/<task>`).
    pub work: WorkDir,
}

impl SubtaskContext {
    pub fn subtask_dir(&self, spec: &SubtaskSpec) -> PathBuf {
        self.work.subtask_dir(&spec.id())
    }
}

/// How a subtask ended.
#[derive(Debug, Clone)]
pub struct SubtaskOutcome {
    pub id: String,
    pub rows: u64,
    pub chunks: u64,
    pub bytes_uncompressed: u64,
    pub bytes_compressed: u64,
    pub seconds: f64,
    /// The manifest's path, or why the subtask failed.
    pub manifest: Result<PathBuf, String>,
}

/// What a subtask tells whoever runs it.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum SubtaskEvent {
    Started {
        id: String,
    },
    Progress {
        id: String,
        rows: u64,
        bytes_out: u64,
    },
    Finished(SubtaskOutcome),
}
