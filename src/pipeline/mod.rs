//! The data path of one subtask, as actors:
//!
//! ```text
//! Extractor (OS thread, ODBC) ──CsvBatch+credit──▶ Compressor (own arbiter: gzip, chunk
//!     files, manifest) ──ToUpload+credit──▶ Uploader (I/O arbiter: S3) ──ToCopy+credit──▶
//!     Copier (I/O arbiter: warehouse)
//! every stage ──StageReport──▶ SubtaskActor (supervises, reports to the runner)
//! ```
//!
//! The stages run at once: chunk 1 can be in the warehouse while chunk 9 is being read.
//! Every data-path send goes through [`credit::BoundedSender`]: memory stays flat however
//! large the table, and the slowest stage sets the pace. One [`credit::CancelSwitch`] per
//! subtask stops every stage. [`job_runner::JobRunner`] runs a job's subtasks, a few at a
//! time, on this machine.

pub mod checkpoint;
pub mod checks;
pub mod compress;
pub mod copy;
pub mod credit;
pub mod csv;
pub mod extract;
pub mod job_runner;
pub mod messages;
pub mod scheduler;
pub mod subtask;
pub mod upload;

use std::path::PathBuf;

use actix::prelude::*;

use crate::config::{FileSettings, WarehouseSettings};
use crate::destination::{S3Target, WorkDir};
use crate::model::{Sorting, StageFailure, SubtaskSpec, TaskName};
use crate::source::Source;

/// What every subtask of a task shares.
#[derive(Debug)]
pub struct SubtaskContext {
    pub task: TaskName,
    /// Which creation of the task this is (its id): a checkpoint written for another is
    /// not resumed.
    pub instance: String,
    /// Whether subtasks read in key order, and so resume after their last durable chunk.
    pub sorting: Sorting,
    pub source: Source,
    /// PostgreSQL sources: read with the server's own COPY where it writes the same bytes.
    pub native_copy: bool,
    pub files: FileSettings,
    /// The task's working folder (`<work-dir>/<task>`).
    pub work: WorkDir,
    /// Set when the mode uploads.
    pub target: Option<S3Target>,
    /// Set when the mode copies.
    pub warehouse: Option<WarehouseSettings>,
    /// The one long-lived arbiter of every uploader and copier: the S3 client's connection
    /// pool and the warehouse connections live on its runtime (each arbiter is a runtime of
    /// its own, and a pool's connections belong to the runtime that opened them).
    pub io: Option<ArbiterHandle>,
    /// Run only the copy stage, from the manifest another agent uploaded (`Leg::Copy`):
    /// the source is not connected to.
    pub copy_only: bool,
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
    /// Rows extracted and written into chunks (with those resumed from a checkpoint).
    pub rows: u64,
    /// Rows already in chunks of an earlier, interrupted attempt that this one resumed
    /// after: not read again.
    pub resumed_rows: u64,
    /// Rows in uploaded chunks, when the mode uploads.
    pub uploaded_rows: Option<u64>,
    /// Rows in the warehouse from this run, when the mode copies.
    pub copied_rows: Option<u64>,
    pub chunks: u64,
    pub bytes_uncompressed: u64,
    pub bytes_compressed: u64,
    pub seconds: f64,
    /// The manifest's path, or why the subtask failed (or that it was stopped).
    pub manifest: Result<PathBuf, StageFailure>,
}

impl SubtaskOutcome {
    /// It failed on a fault that may pass — a lost connection (the source's or the
    /// warehouse's), a full working folder: running it again may well succeed.
    pub fn is_retryable(&self) -> bool {
        self.manifest
            .as_ref()
            .is_err_and(StageFailure::is_retryable)
    }
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
        progress: SubtaskProgress,
    },
    Finished(SubtaskOutcome),
}

/// A running subtask's counters, per stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubtaskProgress {
    /// Rows written into chunks.
    pub rows: u64,
    /// Compressed bytes written.
    pub bytes_out: u64,
    /// Rows in uploaded chunks, when the mode uploads.
    pub uploaded_rows: Option<u64>,
    /// Bytes of the chunks uploaded so far.
    pub uploaded_bytes: u64,
    /// Rows copied into the warehouse, when the mode copies.
    pub copied_rows: Option<u64>,
    /// Chunks sealed so far.
    pub chunks: u64,
    /// Every chunk is written (the extract stage is done).
    pub extracted: bool,
    /// Every chunk is uploaded (the upload stage is done).
    pub uploaded: bool,
}
