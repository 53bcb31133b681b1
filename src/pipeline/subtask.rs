//! The SubtaskActor supervises one subtask: it wires its pipeline downstream first
//! (compressor, then extractor), gathers the stages' progress, and decides what a failed
//! stage means — for now, the subtask fails, the cancel switch stops the other stages, and
//! no partial chunk survives. It reports to whoever runs the job.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::compress::{COMPRESSOR_CREDITS, Compressor};
use super::credit::{BoundedSender, CancelSwitch, Credits};
use super::extract::Extractor;
use super::messages::{Abort, ChunkSealed, Stage, StageReport};
use super::{SubtaskContext, SubtaskEvent, SubtaskOutcome};
use crate::model::SubtaskSpec;
use crate::target::local::MANIFEST_FILE;

/// Stop a running subtask (Ctrl-C, or a user's stop).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSubtask;

pub struct SubtaskActor {
    context: Arc<SubtaskContext>,
    spec: Arc<SubtaskSpec>,
    events: Recipient<SubtaskEvent>,
    cancel: CancelSwitch,
    compressor: Option<Addr<Compressor>>,
    arbiter: Option<Arbiter>,
    started: Instant,
    chunks: u64,
    rows: u64,
    bytes_in: u64,
    bytes_out: u64,
    extract_rows: Option<u64>,
    compress_rows: Option<u64>,
    finished: bool,
}

impl SubtaskActor {
    pub fn new(
        context: Arc<SubtaskContext>,
        spec: SubtaskSpec,
        events: Recipient<SubtaskEvent>,
    ) -> Self {
        SubtaskActor {
            context,
            spec: Arc::new(spec),
            events,
            cancel: CancelSwitch::default(),
            compressor: None,
            arbiter: None,
            started: Instant::now(),
            chunks: 0,
            rows: 0,
            bytes_in: 0,
            bytes_out: 0,
            extract_rows: None,
            compress_rows: None,
            finished: false,
        }
    }

    fn finish(&mut self, result: Result<(), String>, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let failed = result.is_err();
        let outcome = SubtaskOutcome {
            id: self.spec.id(),
            rows: self.rows,
            chunks: self.chunks,
            bytes_uncompressed: self.bytes_in,
            bytes_compressed: self.bytes_out,
            seconds: self.started.elapsed().as_secs_f64(),
            manifest: result.map(|()| self.context.subtask_dir(&self.spec).join(MANIFEST_FILE)),
        };
        let compressor = self.compressor.take();
        match compressor {
            Some(compressor) if failed => {
                self.cancel.cancel();
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

    fn check_done(&mut self, ctx: &mut Context<Self>) {
        let (Some(read), Some(written)) = (self.extract_rows, self.compress_rows) else {
            return;
        };
        let result = if read == written {
            Ok(())
        } else {
            Err(format!(
                "{read} rows were read but {written} written; this is a bug, please report it"
            ))
        };
        self.finish(result, ctx);
    }
}

impl Actor for SubtaskActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Downstream first: the compressor exists before anything can send to it.
        let arbiter = Arbiter::new();
        let credits = Credits::new(COMPRESSOR_CREDITS);
        let me = ctx.address();
        let compressor = {
            let (context, spec, credits) =
                (self.context.clone(), self.spec.clone(), credits.clone());
            let (sealed, report) = (me.clone().recipient(), me.clone().recipient());
            Compressor::start_in_arbiter(&arbiter.handle(), move |_| {
                Compressor::new(context, spec, credits, sealed, report)
            })
        };
        let extractor = Extractor {
            context: self.context.clone(),
            spec: self.spec.clone(),
            out: BoundedSender::new(compressor.clone().recipient(), &credits),
            report: me.recipient(),
            cancel: self.cancel.clone(),
        };
        self.compressor = Some(compressor);
        self.arbiter = Some(arbiter);
        self.events
            .do_send(SubtaskEvent::Started { id: self.spec.id() });
        if let Err(e) = extractor.spawn() {
            self.finish(Err(format!("cannot start the extractor thread: {e}")), ctx);
        }
    }
}

impl Handler<ChunkSealed> for SubtaskActor {
    type Result = ();

    fn handle(&mut self, sealed: ChunkSealed, _: &mut Context<Self>) {
        self.chunks += 1;
        tracing::debug!(subtask = %self.spec.id(), chunk = %sealed.chunk.name, rows = sealed.chunk.rows, "chunk sealed");
    }
}

impl Handler<StageReport> for SubtaskActor {
    type Result = ();

    fn handle(&mut self, report: StageReport, ctx: &mut Context<Self>) {
        match report {
            StageReport::Progress {
                stage: Stage::Compress,
                rows,
                bytes_in,
                bytes_out,
            } => {
                self.rows = rows;
                self.bytes_in = bytes_in;
                self.bytes_out = bytes_out;
                self.events.do_send(SubtaskEvent::Progress {
                    id: self.spec.id(),
                    rows,
                    bytes_out,
                });
            }
            StageReport::Progress {
                stage: Stage::Extract,
                ..
            } => {}
            StageReport::Finished {
                stage: Stage::Extract,
                rows,
            } => {
                self.extract_rows = Some(rows);
                self.check_done(ctx);
            }
            StageReport::Finished {
                stage: Stage::Compress,
                rows,
            } => {
                self.compress_rows = Some(rows);
                self.check_done(ctx);
            }
            StageReport::Failed { error, .. } => self.finish(Err(error), ctx),
        }
    }
}

impl Handler<StopSubtask> for SubtaskActor {
    type Result = ();

    fn handle(&mut self, _: StopSubtask, ctx: &mut Context<Self>) {
        self.finish(Err("stopped".into()), ctx);
    }
}
