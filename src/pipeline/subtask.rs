//! The SubtaskActor supervises one subtask: it wires its pipeline downstream first
//! (copier, uploader, compressor, then extractor), gathers the stages' progress, and decides
//! what a failed stage means — for now, the subtask fails, the cancel switch stops the
//! other stages, and no partial chunk survives. It reports to whoever runs the job.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::checkpoint::{self, Checkpoint};
use super::compress::{COMPRESSOR_CREDITS, Compressor, Outputs, Resumable};
use super::copy::{COPIER_CREDITS, Copier};
use super::credit::{BoundedSender, CancelSwitch, Credits};
use super::extract::Extractor;
use super::messages::{Abort, ChunkSealed, Stage, StageReport, ToCopy, UploadedFile};
use super::upload::{UPLOADER_CREDITS, Uploader};
use super::{SubtaskContext, SubtaskEvent, SubtaskOutcome, SubtaskProgress};
use crate::destination::local::MANIFEST_FILE;
use crate::model::{Sorting, StageFailure, SubtaskSpec};
use crate::source::fetch::{KeyOrder, always_in_key_order};

/// Stop a running subtask (Ctrl-C, or a user's stop).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSubtask;

pub struct SubtaskActor {
    context: Arc<SubtaskContext>,
    spec: Arc<SubtaskSpec>,
    events: Recipient<SubtaskEvent>,
    cancel: CancelSwitch,
    /// This extraction's run id: the copy stage replaces what other runs loaded.
    run: Arc<str>,
    /// Set when the subtask is read in key order and checkpointed; with the checkpoint
    /// this attempt resumes from, if any.
    resumable: Option<Resumable>,
    order: KeyOrder,
    resumed_rows: u64,
    compressor: Option<Addr<Compressor>>,
    uploader: Option<Addr<Uploader>>,
    copier: Option<Addr<Copier>>,
    arbiter: Option<Arbiter>,
    started: Instant,
    chunks: u64,
    bytes_in: u64,
    progress: SubtaskProgress,
    /// Rows each stage reported when it finished, by [`stage_index`].
    finished_rows: [Option<u64>; 4],
    /// Rows and bytes already counted in the metrics, by [`stage_index`].
    counted: [(u64, u64); 4],
    finished: bool,
}

fn stage_index(stage: Stage) -> usize {
    match stage {
        Stage::Extract => 0,
        Stage::Compress => 1,
        Stage::Upload => 2,
        Stage::Copy => 3,
    }
}

/// Whether this attempt reads in key order and writes checkpoints, and the checkpoint it
/// resumes from. Only a subtask with a key can; `sorting = "never"` never does; a driver
/// read in key ranges is in key order anyway, so it checkpoints from its first attempt.
fn plan_order(
    context: &SubtaskContext,
    spec: &SubtaskSpec,
    attempt: u32,
) -> (Option<Resumable>, KeyOrder) {
    if spec.key.is_none() || context.sorting == Sorting::Never {
        return (None, KeyOrder::default());
    }
    let fingerprint = checkpoint::fingerprint(&context.instance, spec, &context.files);
    let dir = context.subtask_dir(spec);
    let from = match Checkpoint::load(&dir, &fingerprint, context.target.is_some()) {
        Ok(from) => from,
        Err(why) => {
            tracing::warn!(
                task = %context.task,
                subtask = %spec.id(),
                "a checkpoint is not resumed ({why}); the subtask reads from its beginning"
            );
            None
        }
    };
    let ordered = from.is_some()
        || context.sorting.ordered(attempt)
        || always_in_key_order(&context.source, spec);
    if !ordered {
        return (None, KeyOrder::default());
    }
    let order = KeyOrder {
        ordered: true,
        after: from.as_ref().map(|c| c.last_key.clone()),
    };
    (Some(Resumable { fingerprint, from }), order)
}

/// A run id: time and randomness, unique enough to tell two extractions apart.
pub fn new_run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{millis:x}-{:08x}", fastrand::u32(..))
}

impl SubtaskActor {
    /// `attempt`: 1 for a subtask's first run, more when it runs again (which, with
    /// `sorting = "after_first_failure"`, makes it read in key order).
    pub fn new(
        context: Arc<SubtaskContext>,
        spec: SubtaskSpec,
        events: Recipient<SubtaskEvent>,
        attempt: u32,
    ) -> Self {
        let (resumable, order) = plan_order(&context, &spec, attempt);
        let from = resumable.as_ref().and_then(|r| r.from.as_ref());
        let resumed = from.map(Checkpoint::resumed).unwrap_or_default();
        let run: Arc<str> = match from {
            Some(checkpoint) => {
                tracing::info!(
                    task = %context.task,
                    subtask = %spec.id(),
                    chunks = resumed.chunks,
                    rows = resumed.rows,
                    run = %checkpoint.run,
                    "resumes after chunk {} ({} rows already durable): only later rows are read",
                    resumed.chunks,
                    resumed.rows
                );
                checkpoint.run.as_str().into()
            }
            None => new_run_id().into(),
        };
        let progress = SubtaskProgress {
            uploaded_rows: context.target.as_ref().map(|_| 0),
            copied_rows: context.warehouse.as_ref().map(|_| 0),
            rows: resumed.rows,
            bytes_out: resumed.bytes_compressed,
            chunks: resumed.chunks,
            ..SubtaskProgress::default()
        };
        let mut counted = [(0, 0); 4];
        // The metrics count what this attempt extracts, not what it resumes from.
        counted[stage_index(Stage::Compress)] = (resumed.rows, resumed.bytes_compressed);
        SubtaskActor {
            context,
            spec: Arc::new(spec),
            events,
            cancel: CancelSwitch::default(),
            run,
            resumable,
            order,
            resumed_rows: resumed.rows,
            compressor: None,
            uploader: None,
            copier: None,
            arbiter: None,
            started: Instant::now(),
            chunks: resumed.chunks,
            bytes_in: resumed.bytes_uncompressed,
            progress,
            finished_rows: [None; 4],
            counted,
            finished: false,
        }
    }

    /// The stages this subtask runs.
    fn stages(&self) -> Vec<Stage> {
        if self.context.copy_only {
            return vec![Stage::Copy];
        }
        let mut stages = vec![Stage::Extract, Stage::Compress];
        if self.context.target.is_some() {
            stages.push(Stage::Upload);
        }
        if self.context.warehouse.is_some() {
            stages.push(Stage::Copy);
        }
        stages
    }

    fn finish(&mut self, result: Result<(), StageFailure>, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let failed = result.is_err();
        if !failed && let Err(e) = Checkpoint::remove(&self.context.subtask_dir(&self.spec)) {
            tracing::warn!(task = %self.context.task, subtask = %self.spec.id(), "the subtask is done, but its checkpoint cannot be deleted: {e}");
        }
        let outcome = SubtaskOutcome {
            id: self.spec.id(),
            rows: self.progress.rows,
            resumed_rows: self.resumed_rows,
            uploaded_rows: self.progress.uploaded_rows,
            copied_rows: self.progress.copied_rows,
            chunks: self.chunks,
            bytes_uncompressed: self.bytes_in,
            bytes_compressed: self.progress.bytes_out,
            seconds: self.started.elapsed().as_secs_f64(),
            manifest: result.map(|()| self.context.subtask_dir(&self.spec).join(MANIFEST_FILE)),
        };
        if failed {
            self.cancel.cancel();
            if let Some(uploader) = self.uploader.take() {
                uploader.do_send(Abort);
            }
            if let Some(copier) = self.copier.take() {
                copier.do_send(Abort);
            }
        }
        match self.compressor.take() {
            Some(compressor) if failed => {
                // Report only once the compressor has deleted its partial chunk, so that
                // whoever runs the job (and may exit right after) never leaves one behind.
                // A compressor that already stopped has deleted it itself.
                let abort = compressor
                    .send(Abort)
                    .into_actor(self)
                    .map(move |_, actor, ctx| {
                        actor.report(outcome, ctx);
                    });
                ctx.wait(abort);
            }
            _ => self.report(outcome, ctx),
        }
    }

    fn report(&mut self, outcome: SubtaskOutcome, ctx: &mut Context<Self>) {
        if let Some(arbiter) = self.arbiter.take() {
            arbiter.stop();
        }
        self.events.do_send(SubtaskEvent::Finished(outcome));
        ctx.stop();
    }

    /// Done when every stage finished; every stage must have seen the same rows.
    fn check_done(&mut self, ctx: &mut Context<Self>) {
        let stages = self.stages();
        let rows: Option<Vec<(Stage, u64)>> = stages
            .iter()
            .map(|s| self.finished_rows[stage_index(*s)].map(|r| (*s, r)))
            .collect();
        let Some(rows) = rows else {
            return;
        };
        let (_, read) = rows[0];
        let result = match rows.iter().find(|(_, r)| *r != read) {
            None => Ok(()),
            Some((stage, other)) => Err(StageFailure::Internal(format!(
                "{read} rows were read but the {} stage saw {other}; nothing was lost \
                 silently: run the task again, and please report this",
                stage.as_str()
            ))),
        };
        self.finish(result, ctx);
    }

    /// Add what a stage did since its last report to the daemon's metrics.
    fn count(&mut self, stage: Stage, rows: u64, bytes: u64) {
        // The extract stage's rows are those written into chunks: the compressor's.
        let name = match stage {
            Stage::Extract => return,
            Stage::Compress => "extract",
            Stage::Upload => "upload",
            Stage::Copy => "copy",
        };
        let counted = &mut self.counted[stage_index(stage)];
        crate::telemetry::metrics::stage_progress(
            self.context.task.as_str(),
            name,
            rows.saturating_sub(counted.0),
            bytes.saturating_sub(counted.1),
        );
        *counted = (counted.0.max(rows), counted.1.max(bytes));
    }

    fn send_progress(&self) {
        self.events.do_send(SubtaskEvent::Progress {
            id: self.spec.id(),
            progress: self.progress,
        });
    }
}

impl Actor for SubtaskActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.context.copy_only {
            return self.start_copy_only(ctx);
        }
        // Downstream first: each stage exists before anything can send to it.
        let me = ctx.address();
        let io = self.context.io.clone();
        let copy = match (&self.context.warehouse, &io) {
            (Some(_), Some(io)) => {
                let credits = Credits::new("copy", COPIER_CREDITS);
                let (context, spec, run, c, report, cancel) = (
                    self.context.clone(),
                    self.spec.clone(),
                    self.run.clone(),
                    credits.clone(),
                    me.clone().recipient(),
                    self.cancel.clone(),
                );
                let copier = Copier::start_in_arbiter(io, move |_| {
                    Copier::new(context, spec, run, c, report, cancel)
                });
                self.copier = Some(copier.clone());
                Some(BoundedSender::new(copier.recipient(), &credits))
            }
            _ => None,
        };
        let upload = match (&self.context.target, &io) {
            (Some(_), Some(io)) => {
                let credits = Credits::new("upload", UPLOADER_CREDITS);
                let (context, spec, c, report, cancel) = (
                    self.context.clone(),
                    self.spec.clone(),
                    credits.clone(),
                    me.clone().recipient(),
                    self.cancel.clone(),
                );
                let uploader = Uploader::start_in_arbiter(io, move |_| {
                    Uploader::new(context, spec, c, copy, report, cancel)
                });
                self.uploader = Some(uploader.clone());
                Some(BoundedSender::new(uploader.recipient(), &credits))
            }
            _ => None,
        };
        let arbiter = Arbiter::new();
        let credits = Credits::new("compress", COMPRESSOR_CREDITS);
        let compressor = {
            let (context, spec, run, resumable, credits) = (
                self.context.clone(),
                self.spec.clone(),
                self.run.clone(),
                self.resumable.take(),
                credits.clone(),
            );
            let outputs = Outputs {
                sealed: me.clone().recipient(),
                upload,
                report: me.clone().recipient(),
            };
            Compressor::start_in_arbiter(&arbiter.handle(), move |_| {
                Compressor::new(context, spec, run, resumable, credits, outputs)
            })
        };
        let extractor = Extractor {
            context: self.context.clone(),
            spec: self.spec.clone(),
            out: BoundedSender::new(compressor.clone().recipient(), &credits),
            report: me.recipient(),
            cancel: self.cancel.clone(),
            order: std::mem::take(&mut self.order),
            resumed_rows: self.resumed_rows,
        };
        self.compressor = Some(compressor);
        self.arbiter = Some(arbiter);
        self.events
            .do_send(SubtaskEvent::Started { id: self.spec.id() });
        if let Err(e) = extractor.spawn() {
            let error = format!("cannot start the extractor thread: {e}");
            self.finish(Err(StageFailure::Fatal(error)), ctx);
        }
    }
}

/// The copier of a copy-only subtask, started once its manifest is read.
#[derive(Message)]
#[rtype(result = "()")]
struct CopierStarted(Addr<Copier>);

impl Handler<CopierStarted> for SubtaskActor {
    type Result = ();

    fn handle(&mut self, CopierStarted(copier): CopierStarted, _: &mut Context<Self>) {
        if self.finished {
            copier.do_send(Abort);
        } else {
            self.copier = Some(copier);
        }
    }
}

impl SubtaskActor {
    /// The copy stage alone (`Leg::Copy`): read the manifest the front agent uploaded,
    /// start a copier under the run it names, and hand it each chunk, then the manifest,
    /// as the uploader would have. Runs on the I/O arbiter, where the S3 client lives.
    fn start_copy_only(&mut self, ctx: &mut Context<Self>) {
        let Some(io) = self.context.io.clone() else {
            let error = "no I/O arbiter for the copy stage; this is a bug, please report it";
            return self.finish(Err(StageFailure::Internal(error.into())), ctx);
        };
        let (context, spec, cancel) =
            (self.context.clone(), self.spec.clone(), self.cancel.clone());
        let me = ctx.address();
        self.events
            .do_send(SubtaskEvent::Started { id: self.spec.id() });
        let spawn_on = io.clone();
        io.spawn(async move {
            let report: Recipient<StageReport> = me.clone().recipient();
            let fail = |error: String| {
                report.do_send(StageReport::Failed {
                    stage: Stage::Copy,
                    failure: StageFailure::Fatal(error),
                })
            };
            let target = context.target.clone().expect("the copy leg uploads");
            let id = spec.id();
            let task = context.task.to_string();
            let key = target.key(&task, &id, MANIFEST_FILE);
            let bytes = match target.get(&key, &cancel).await {
                Ok(body) => match body.collect().await {
                    Ok(bytes) => bytes.into_bytes(),
                    Err(e) => return fail(format!("reading {key}: {e}")),
                },
                Err(e) => {
                    return fail(format!(
                        "reading the manifest the front agent uploaded: {e}"
                    ));
                }
            };
            let manifest: crate::model::chunk::CopyManifest = match serde_json::from_slice(&bytes) {
                Ok(manifest) => manifest,
                Err(e) => return fail(format!("{key} is not a dbhaul manifest: {e}")),
            };
            let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            let run: Arc<str> = manifest.run.as_str().into();
            let credits = Credits::new("copy", COPIER_CREDITS);
            let copier = {
                let (context, spec, c, cancel) = (
                    context.clone(),
                    spec.clone(),
                    credits.clone(),
                    cancel.clone(),
                );
                let report = report.clone();
                Copier::start_in_arbiter(&spawn_on, move |_| {
                    Copier::new(context, spec, run, c, report, cancel)
                })
            };
            me.do_send(CopierStarted(copier.clone()));
            let out = BoundedSender::new(copier.recipient(), &credits);
            let manifest = Arc::new(manifest);
            let files = manifest
                .chunks
                .iter()
                .map(|chunk| UploadedFile::Chunk {
                    key: target.key(&task, &id, &chunk.name),
                    chunk: chunk.clone(),
                })
                .chain(std::iter::once(UploadedFile::Manifest {
                    key,
                    sha256,
                    manifest: manifest.clone(),
                }));
            for file in files {
                let sent = tokio::select! {
                    sent = out.send(ToCopy::with(file)) => sent.is_ok(),
                    () = cancel.cancelled() => false,
                };
                if !sent {
                    // The copier stopped (and reported why) or the subtask was stopped.
                    return;
                }
            }
        });
    }
}

impl Handler<ChunkSealed> for SubtaskActor {
    type Result = ();

    fn handle(&mut self, sealed: ChunkSealed, _: &mut Context<Self>) {
        self.chunks += 1;
        self.progress.chunks = self.chunks;
        crate::telemetry::metrics::chunk_sealed(self.context.task.as_str());
        tracing::debug!(
            task = %self.context.task,
            subtask = %self.spec.id(),
            chunk = %sealed.chunk.name,
            rows = sealed.chunk.rows,
            bytes = sealed.chunk.bytes_compressed,
            "chunk sealed"
        );
    }
}

impl Handler<StageReport> for SubtaskActor {
    type Result = ();

    fn handle(&mut self, report: StageReport, ctx: &mut Context<Self>) {
        match report {
            StageReport::Progress {
                stage,
                rows,
                bytes_in,
                bytes_out,
            } => {
                tracing::trace!(
                    task = %self.context.task,
                    subtask = %self.spec.id(),
                    stage = stage.as_str(),
                    rows,
                    bytes_in,
                    bytes_out,
                    "progress"
                );
                match stage {
                    Stage::Extract => return,
                    Stage::Compress => {
                        self.progress.rows = rows;
                        self.progress.bytes_out = bytes_out;
                        self.bytes_in = bytes_in;
                    }
                    Stage::Upload => {
                        self.progress.uploaded_rows = Some(rows);
                        self.progress.uploaded_bytes = bytes_out;
                    }
                    Stage::Copy => self.progress.copied_rows = Some(rows),
                }
                self.count(stage, rows, bytes_out);
                self.send_progress();
            }
            StageReport::Finished { stage, rows } => {
                tracing::debug!(
                    task = %self.context.task,
                    subtask = %self.spec.id(),
                    stage = stage.as_str(),
                    rows,
                    "stage finished"
                );
                self.finished_rows[stage_index(stage)] = Some(rows);
                let bytes = self.counted[stage_index(stage)].1;
                self.count(stage, rows, bytes);
                match stage {
                    Stage::Extract => {}
                    Stage::Compress => self.progress.extracted = true,
                    Stage::Upload => {
                        self.progress.uploaded_rows = Some(rows);
                        self.progress.uploaded = true;
                    }
                    Stage::Copy => self.progress.copied_rows = Some(rows),
                }
                self.send_progress();
                self.check_done(ctx);
            }
            StageReport::Failed { stage, failure } => {
                if !self.finished {
                    crate::telemetry::metrics::failure(self.context.task.as_str(), stage.as_str());
                    tracing::debug!(
                        task = %self.context.task,
                        subtask = %self.spec.id(),
                        stage = stage.as_str(),
                        "stage failed: {failure}"
                    );
                }
                self.finish(Err(failure), ctx)
            }
        }
    }
}

impl Handler<StopSubtask> for SubtaskActor {
    type Result = ();

    fn handle(&mut self, _: StopSubtask, ctx: &mut Context<Self>) {
        self.finish(Err(StageFailure::Stopped), ctx);
    }
}
