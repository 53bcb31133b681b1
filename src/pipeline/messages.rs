//! The messages of the data path and the reports stages send to their subtask. Data
//! messages carry a [`Credit`]; reports and control messages are small and travel without.

use std::path::PathBuf;

use actix::prelude::*;

use super::credit::Credit;
use std::sync::Arc;

use crate::model::chunk::CopyManifest;
use crate::model::{ChunkRecord, Manifest, StageFailure};

/// Encoded CSV from the extractor. `rows` counts rows completed in this batch; a batch
/// may end inside a row (a large LOB value is passed on in pieces), and a chunk is only
/// ever closed after a batch with `ends_row`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CsvBatch {
    pub bytes: Vec<u8>,
    pub rows: u64,
    pub ends_row: bool,
    /// The extractor read everything: seal the last chunk.
    pub last: bool,
    /// With `ends_row`, when the subtask is read in key order: the key of the last row.
    pub last_key: Option<Vec<String>>,
    /// A piece of a LOB value that goes to its own file (`files.lob_objects`); the URL in
    /// its column comes in a later batch of the same row.
    pub lob: Option<LobPart>,
    pub credit: Credit,
}

/// A piece of a LOB value bound for its own file, `<subtask>/lobs/<name>`.
pub struct LobPart {
    pub name: String,
    pub bytes: Vec<u8>,
    /// The value's first piece: the file is created.
    pub first: bool,
    /// The value's last piece: the file is sealed.
    pub last: bool,
}

/// A chunk file that is complete, fsynced and under its final name.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ChunkSealed {
    pub chunk: ChunkRecord,
    pub path: PathBuf,
}

/// A durable file for the uploader: a chunk, or last, the manifest.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToUpload {
    pub file: SealedFile,
    pub credit: Credit,
}

#[derive(Debug, Clone)]
pub enum SealedFile {
    Chunk {
        chunk: ChunkRecord,
        path: PathBuf,
    },
    /// A chunk an earlier attempt of this run uploaded (and deleted locally): it goes on
    /// to the copier without being uploaded again.
    Uploaded {
        chunk: ChunkRecord,
    },
    Manifest {
        path: PathBuf,
        /// SHA-256 of the file as written, hex.
        sha256: String,
        manifest: Arc<Manifest>,
    },
}

/// An uploaded file for the copier: a chunk, or last, the manifest.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToCopy {
    pub file: UploadedFile,
    pub credit: Credit,
}

impl ToCopy {
    /// A maker for [`super::credit::BoundedSender::send`].
    pub fn with(file: UploadedFile) -> impl FnOnce(Credit) -> ToCopy {
        move |credit| ToCopy { file, credit }
    }
}

#[derive(Debug, Clone)]
pub enum UploadedFile {
    Chunk {
        chunk: ChunkRecord,
        key: String,
    },
    Manifest {
        key: String,
        sha256: String,
        manifest: Arc<CopyManifest>,
    },
}

/// The stages of a subtask's pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Extract,
    Compress,
    Upload,
    Copy,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Extract => "extract",
            Stage::Compress => "compress",
            Stage::Upload => "upload",
            Stage::Copy => "copy",
        }
    }
}

/// What a stage tells its subtask.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum StageReport {
    /// Rows and bytes so far: read by the extractor, written by the compressor.
    Progress {
        stage: Stage,
        rows: u64,
        bytes_in: u64,
        bytes_out: u64,
    },
    /// The stage did all its work.
    Finished { stage: Stage, rows: u64 },
    /// The stage stopped on an error (its message names the cause and the fix), or on
    /// the subtask's stop; the kind says whether running the subtask again may help.
    Failed { stage: Stage, failure: StageFailure },
}

/// Stop now, discarding unfinished work (a partial chunk is deleted, never renamed).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Abort;
