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
use crate::model::SubtaskSpec;
use crate::target::{S3Error, S3Target};

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
    chunk: crate::model::ChunkRecord,
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
        let uploaded_rows = self.rows;
        let work = async move {
            // The credit travels with the future: the compressor may send the next file once
            // this one is uploaded and handed on.
            let ToUpload { file, credit } = message;
            let result = match file {
                SealedFile::Chunk { chunk, path } => {
                    let key = target.key(&task, &id, &chunk.name);
                    let bytes = target.upload_file(&path, &key, &cancel).await?;
                    if !keep_local && let Err(e) = tokio::fs::remove_file(&path).await {
                        tracing::warn!("cannot delete the uploaded chunk {}: {e}", path.display());
                    }
                    pass_chunk(out.as_ref(), &cancel, chunk, key, bytes).await?
                }
                // Uploaded by an earlier attempt of this run: passed on as it is.
                SealedFile::Uploaded { chunk } => {
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
                    let key = target.key(&task, &id, crate::target::local::MANIFEST_FILE);
                    let bytes = target.upload_file(&path, &key, &cancel).await?;
                    if let Some(out) = &out {
                        let file = UploadedFile::Manifest {
                            key,
                            sha256,
                            manifest,
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
                            error: "the copier stopped unexpectedly".into(),
                            transient: false,
                        });
                        ctx.stop();
                    }
                    Err(e) => {
                        actor.failed = true;
                        actor.report.do_send(StageReport::Failed {
                            stage: Stage::Upload,
                            error: e.to_string(),
                            transient: false,
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
