//! The Uploader: uploads each chunk as soon as the compressor has made it durable, then the
//! manifest, and passes each uploaded file on to the copier (if the mode copies). One file
//! at a time per subtask (`ctx.wait`), parts of a large one in parallel; the compressor
//! waits for a credit when the uploader is behind, so at most [`UPLOADER_CREDITS`] sealed
//! chunks wait on disk per subtask. Runs on the task's I/O arbiter.

use std::sync::Arc;

use actix::prelude::*;

use super::SubtaskContext;
use super::credit::{BoundedSender, CancelSwitch, Credits};
use super::messages::{Abort, SealedFile, Stage, StageReport, ToCopy, ToUpload, UploadedFile};
use crate::destination::local::lob_path;
use crate::destination::{S3Error, S3Target};
use crate::model::{ChunkRecord, StageFailure, SubtaskSpec, lob_file};

/// Sealed chunks that may wait for the uploader.
pub const UPLOADER_CREDITS: usize = 2;

pub struct Uploader {
    context: Arc<SubtaskContext>,
    spec: Arc<SubtaskSpec>,
    target: S3Target,
    credits: Credits,
    out: Option<BoundedSender<ToCopy>>,
    report: Recipient<StageReport>,
    cancel: CancelSwitch,
    rows: u64,
    bytes: u64,
    failed: bool,
}

impl Uploader {
    pub fn new(
        context: Arc<SubtaskContext>,
        spec: Arc<SubtaskSpec>,
        credits: Credits,
        out: Option<BoundedSender<ToCopy>>,
        report: Recipient<StageReport>,
        cancel: CancelSwitch,
    ) -> Uploader {
        let target = context.target.clone().expect("the mode uploads");
        Uploader {
            context,
            spec,
            target,
            credits,
            out,
            report,
            cancel,
            rows: 0,
            bytes: 0,
            failed: false,
        }
    }
}

impl Actor for Uploader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.credits.mailbox_capacity());
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        // Wake a compressor waiting for a credit: it sees Closed and stops.
        self.credits.close();
    }
}

/// Pass a file to the copier, waiting for a credit while it is behind — unless the
/// subtask is cancelled meanwhile.
async fn hand_on(
    out: &BoundedSender<ToCopy>,
    cancel: &CancelSwitch,
    make: impl FnOnce(crate::pipeline::credit::Credit) -> ToCopy,
) -> Result<(), S3Error> {
    tokio::select! {
        sent = out.send(make) => sent.map_err(|_| S3Error::Cancelled),
        () = cancel.cancelled() => Err(S3Error::Cancelled),
    }
}

/// Hand an uploaded chunk to the copier, if the mode copies.
async fn pass_chunk(
    out: Option<&BoundedSender<ToCopy>>,
    cancel: &CancelSwitch,
    chunk: ChunkRecord,
    key: String,
    bytes: u64,
) -> Result<Uploaded, S3Error> {
    let rows = chunk.rows;
    if let Some(out) = out {
        let file = UploadedFile::Chunk { chunk, key };
        hand_on(out, cancel, ToCopy::with(file)).await?;
    }
    Ok(Uploaded {
        rows,
        bytes,
        last: false,
    })
}

/// Delete an uploaded chunk's local file and its LOB files (after the chunk, so a chunk
/// still on disk always has its LOB files beside it).
async fn remove_uploaded(path: &std::path::Path, chunk: &ChunkRecord, dir: &std::path::Path) {
    // Names come from this agent's own records, but a delete is only ever of a plain file
    // name inside the subtask's folder.
    let names =
        std::iter::once(chunk.name.as_str()).chain(chunk.lobs.iter().map(|l| l.name.as_str()));
    for name in names {
        if let Err(e) = crate::model::names::check_component("chunk file", name) {
            tracing::warn!("not deleting an uploaded file: {e}");
            return;
        }
    }
    for path in
        std::iter::once(path.to_path_buf()).chain(chunk.lobs.iter().map(|l| lob_path(dir, &l.name)))
    {
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!("cannot delete the uploaded file {}: {e}", path.display())
            }
            _ => {}
        }
    }
}

/// What uploading one file did.
struct Uploaded {
    rows: u64,
    bytes: u64,
    last: bool,
}

impl Handler<ToUpload> for Uploader {
    type Result = ();

    fn handle(&mut self, message: ToUpload, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        let target = self.target.clone();
        let cancel = self.cancel.clone();
        let out = self.out.clone();
        let task = self.context.task.to_string();
        let id = self.spec.id();
        let keep_local = self.context.files.keep_local;
        let context_dir = self.context.subtask_dir(&self.spec);
        let uploaded_rows = self.rows;
        let work = async move {
            // The credit travels with the future: the compressor may send the next file once
            // this one is uploaded and handed on.
            let ToUpload { file, credit } = message;
            let result = match file {
                SealedFile::Chunk { chunk, path } => {
                    // The chunk's LOB objects first: the chunk holds their URLs.
                    let dir = path.parent().unwrap_or(std::path::Path::new("."));
                    for lob in &chunk.lobs {
                        let lob_path = lob_path(dir, &lob.name);
                        let lob_key = target.key(&task, &id, &lob_file(&lob.name));
                        target.upload_file(&lob_path, &lob_key, &cancel).await?;
                    }
                    let key = target.key(&task, &id, &chunk.name);
                    let bytes = target.upload_file(&path, &key, &cancel).await?;
                    if !keep_local {
                        remove_uploaded(&path, &chunk, dir).await;
                    }
                    pass_chunk(out.as_ref(), &cancel, chunk, key, bytes).await?
                }
                // Uploaded by an earlier attempt of this run: passed on as it is.
                SealedFile::Uploaded { chunk } => {
                    if !keep_local {
                        let dir = context_dir.clone();
                        remove_uploaded(&dir.join(&chunk.name), &chunk, &dir).await;
                    }
                    let key = target.key(&task, &id, &chunk.name);
                    let bytes = chunk.bytes_compressed;
                    pass_chunk(out.as_ref(), &cancel, chunk, key, bytes).await?
                }
                SealedFile::Manifest {
                    path,
                    sha256,
                    manifest,
                } => {
                    if manifest.rows != uploaded_rows {
                        return Err(S3Error::Fatal(format!(
                            "the manifest lists {} rows but {uploaded_rows} were uploaded; this \
                             is a bug, please report it",
                            manifest.rows
                        )));
                    }
                    let key = target.key(&task, &id, crate::destination::local::MANIFEST_FILE);
                    let bytes = target.upload_file(&path, &key, &cancel).await?;
                    if let Some(out) = &out {
                        let file = UploadedFile::Manifest {
                            key,
                            sha256,
                            manifest: Arc::new(manifest.as_ref().into()),
                        };
                        hand_on(out, &cancel, ToCopy::with(file)).await?;
                    }
                    Uploaded {
                        rows: 0,
                        bytes,
                        last: true,
                    }
                }
            };
            drop(credit);
            Ok(result)
        };
        ctx.wait(
            work.into_actor(self)
                .map(|result, actor, ctx| match result {
                    Ok(uploaded) => {
                        actor.rows += uploaded.rows;
                        actor.bytes += uploaded.bytes;
                        if uploaded.last {
                            actor.report.do_send(StageReport::Finished {
                                stage: Stage::Upload,
                                rows: actor.rows,
                            });
                            ctx.stop();
                        } else {
                            actor.report.do_send(StageReport::Progress {
                                stage: Stage::Upload,
                                rows: actor.rows,
                                bytes_in: actor.bytes,
                                bytes_out: actor.bytes,
                            });
                        }
                    }
                    Err(S3Error::Cancelled) if actor.cancel.is_cancelled() => {
                        actor.failed = true;
                        ctx.stop();
                    }
                    Err(S3Error::Cancelled) => {
                        actor.failed = true;
                        actor.report.do_send(StageReport::Failed {
                            stage: Stage::Upload,
                            failure: StageFailure::Fatal("the copier stopped unexpectedly".into()),
                        });
                        ctx.stop();
                    }
                    Err(e) => {
                        actor.failed = true;
                        actor.report.do_send(StageReport::Failed {
                            stage: Stage::Upload,
                            failure: e.into(),
                        });
                        ctx.stop();
                    }
                }),
        );
    }
}

impl Handler<Abort> for Uploader {
    type Result = ();

    fn handle(&mut self, _: Abort, ctx: &mut Context<Self>) {
        self.failed = true;
        ctx.stop();
    }
}
