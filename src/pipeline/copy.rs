//! The Copier: loads uploaded files into the warehouse, exactly once (see
//! [`crate::warehouse`]). PostgreSQL: each chunk as it arrives, read back from the target.
//! Redshift: the whole subtask from its manifest once the manifest is uploaded. Then it
//! validates: the rows the warehouse recorded for this run equal the rows extracted, and
//! with `count_source`, a `COUNT(*)` on the source as well. Runs on the I/O arbiter; one
//! file at a time (`ctx.wait`), the uploader waiting for a credit when the copier is behind.

use std::sync::Arc;

use actix::prelude::*;
use tokio_postgres::Client;

use super::SubtaskContext;
use super::credit::{CancelSwitch, Credits};
use super::messages::{Abort, Stage, StageReport, ToCopy, UploadedFile};
use crate::config::WarehouseSettings;
use crate::destination::S3Target;
use crate::model::chunk::CopyManifest;
use crate::model::{ChunkRecord, StageFailure, SubtaskSpec};
use crate::warehouse::postgres::{ChunkLoad, LoadError, Loaded, load_chunk, load_empty_subtask};
use crate::warehouse::redshift::{self, SubtaskRef};
use crate::warehouse::{self, TargetTable, WarehouseError, WarehouseKind};

/// Uploaded chunks that may wait for the copier.
pub const COPIER_CREDITS: usize = 2;

pub struct Copier {
    context: Arc<SubtaskContext>,
    spec: Arc<SubtaskSpec>,
    settings: WarehouseSettings,
    target: S3Target,
    run: Arc<str>,
    credits: Credits,
    report: Recipient<StageReport>,
    cancel: CancelSwitch,
    /// The connection and the resolved table, taken by the future working with them.
    session: Option<(Client, TargetTable)>,
    replaced: bool,
    rows: u64,
    failed: bool,
}

impl Copier {
    pub fn new(
        context: Arc<SubtaskContext>,
        spec: Arc<SubtaskSpec>,
        run: Arc<str>,
        credits: Credits,
        report: Recipient<StageReport>,
        cancel: CancelSwitch,
    ) -> Copier {
        let settings = context.warehouse.clone().expect("the mode copies");
        let target = context.target.clone().expect("the mode uploads");
        Copier {
            context,
            spec,
            settings,
            target,
            run,
            credits,
            report,
            cancel,
            session: None,
            replaced: false,
            rows: 0,
            failed: false,
        }
    }

    fn fail(&mut self, failure: StageFailure, ctx: &mut Context<Self>) {
        self.failed = true;
        if !self.cancel.is_cancelled() {
            self.report.do_send(StageReport::Failed {
                stage: Stage::Copy,
                failure,
            });
        }
        ctx.stop();
    }
}

impl Actor for Copier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.credits.mailbox_capacity());
        let settings = self.settings.clone();
        let spec = self.spec.clone();
        let dialect = self.context.source.dialect;
        let task = self.context.task.clone();
        let open = async move {
            // The bookkeeping table and any missing tables were made once, before the run
            // (`warehouse::prepare`), not here by several copiers at once.
            let client = warehouse::connect(&settings).await?;
            let table = warehouse::resolve_table(&client, &settings, dialect, &spec).await?;
            for left_out in &table.left_out {
                tracing::info!(
                    task = %task,
                    subtask = %spec.id(),
                    column = %left_out.column,
                    "column {} of {} is left out of the COPY: the warehouse computes it (a \
                     generated column), so its extracted values are not loaded",
                    left_out.column,
                    table.qualified,
                );
            }
            Ok::<_, WarehouseError>((client, table))
        };
        ctx.wait(
            open.into_actor(self)
                .map(|result, actor, ctx| match result {
                    Ok(session) => actor.session = Some(session),
                    Err(e) => actor.fail(e.into(), ctx),
                }),
        );
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        self.credits.close();
    }
}

impl Handler<ToCopy> for Copier {
    type Result = ();

    fn handle(&mut self, message: ToCopy, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        let Some((mut client, table)) = self.session.take() else {
            let bug = "the warehouse session is gone; this is a bug, please report it";
            return self.fail(StageFailure::Internal(bug.into()), ctx);
        };
        let kind = self.settings.kind;
        let replace = !self.replaced;
        self.replaced = true;
        let job = CopyJob {
            context: self.context.clone(),
            spec: self.spec.clone(),
            settings: self.settings.clone(),
            target: self.target.clone(),
            run: self.run.clone(),
            cancel: self.cancel.clone(),
        };
        let cancel = self.cancel.clone();
        let work = async move {
            let ToCopy { file, credit } = message;
            let load = async {
                match (kind, file) {
                    (WarehouseKind::Postgres, UploadedFile::Chunk { chunk, key }) => job
                        .postgres_chunk(&mut client, &table, &chunk, &key, replace)
                        .await
                        .map(Step::Chunk),
                    (WarehouseKind::Postgres, UploadedFile::Manifest { manifest, .. }) => {
                        // No chunk came (no rows): earlier runs' rows still have to go.
                        if replace {
                            job.postgres_empty(&mut client, &table).await?;
                        }
                        job.validate(&client, &manifest).await.map(Step::Done)
                    }
                    // Redshift reads the chunks itself, from the manifest.
                    (WarehouseKind::Redshift, UploadedFile::Chunk { .. }) => Ok(Step::Chunk(0)),
                    (
                        WarehouseKind::Redshift,
                        UploadedFile::Manifest {
                            key,
                            sha256,
                            manifest,
                        },
                    ) => job
                        .redshift_subtask(&client, &table, &key, &sha256, &manifest)
                        .await
                        .map(Step::Done),
                }
            };
            // A cancelled subtask abandons its transaction: it is rolled back when the
            // connection goes with the copier.
            let result = tokio::select! {
                result = load => result,
                () = cancel.cancelled() => Err(StageFailure::Stopped),
            };
            drop(credit);
            (client, table, result)
        };
        ctx.wait(
            work.into_actor(self)
                .map(|(client, table, result), actor, ctx| match result {
                    Ok(Step::Chunk(rows)) => {
                        actor.session = Some((client, table));
                        actor.rows += rows;
                        actor.report.do_send(StageReport::Progress {
                            stage: Stage::Copy,
                            rows: actor.rows,
                            bytes_in: 0,
                            bytes_out: 0,
                        });
                    }
                    Ok(Step::Done(rows)) => {
                        actor.report.do_send(StageReport::Finished {
                            stage: Stage::Copy,
                            rows,
                        });
                        ctx.stop();
                    }
                    Err(e) => actor.fail(e, ctx),
                }),
        );
    }
}

enum Step {
    /// A chunk is in: its rows.
    Chunk(u64),
    /// The subtask is in and checked: its rows.
    Done(u64),
}

/// What a copy future needs, owned.
struct CopyJob {
    context: Arc<SubtaskContext>,
    spec: Arc<SubtaskSpec>,
    settings: WarehouseSettings,
    target: S3Target,
    run: Arc<str>,
    cancel: CancelSwitch,
}

impl CopyJob {
    /// Load a chunk; a broken download is tried again (in a new transaction).
    async fn postgres_chunk(
        &self,
        client: &mut Client,
        table: &TargetTable,
        chunk: &ChunkRecord,
        key: &str,
        replace: bool,
    ) -> Result<u64, StageFailure> {
        let id = self.spec.id();
        let task = &self.context.task;
        let load = ChunkLoad {
            task: self.context.task.as_str(),
            subtask: &id,
            run: &self.run,
            chunk,
            key,
        };
        let attempts = self.target.settings().attempts.max(1);
        let mut attempt = 1;
        loop {
            let result = load_chunk(
                client,
                &self.settings,
                &self.context.files,
                table,
                &self.target,
                &load,
                replace,
                &self.cancel,
            )
            .await;
            match result {
                Ok(Loaded::Copied(rows)) => return Ok(rows),
                Ok(Loaded::AlreadyThere(rows)) => {
                    tracing::info!(task = %task, subtask = %id, chunk = %chunk.name, "already in the warehouse");
                    return Ok(rows);
                }
                Err(LoadError::Download(e)) if attempt < attempts => {
                    crate::telemetry::metrics::retry("copy");
                    tracing::warn!(task = %task, subtask = %id, chunk = %chunk.name, "reading {key} broke off ({e}); loading it again");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500 * attempt as u64))
                        .await;
                }
                // A read that broke off every time: the network, which may pass.
                Err(LoadError::Download(e)) => {
                    let message = format!("reading {key} back from the target: {e}");
                    return Err(StageFailure::Transient(message));
                }
                Err(LoadError::S3(e)) => return Err(e.into()),
                Err(LoadError::Warehouse(e)) => return Err(e.into()),
            }
        }
    }

    async fn postgres_empty(
        &self,
        client: &mut Client,
        table: &TargetTable,
    ) -> Result<(), StageFailure> {
        let id = self.spec.id();
        load_empty_subtask(
            client,
            &self.settings,
            table,
            self.context.task.as_str(),
            &id,
            &self.run,
        )
        .await
        .map_err(StageFailure::from)
    }

    async fn redshift_subtask(
        &self,
        client: &Client,
        table: &TargetTable,
        key: &str,
        sha256: &str,
        manifest: &CopyManifest,
    ) -> Result<u64, StageFailure> {
        let id = self.spec.id();
        let url = self.target.url_of(key);
        let sql = redshift::subtask_sql(
            table,
            &self.settings,
            self.target.settings(),
            &self.context.files,
            &SubtaskRef {
                task: self.context.task.as_str(),
                subtask: &id,
                run: &self.run,
                manifest_url: &url,
                sha256,
            },
        );
        redshift::load_subtask(client, &self.settings, &sql, manifest.rows).await?;
        self.validate(client, manifest).await
    }

    /// Rows recorded in the warehouse for this run = rows extracted (= a source count).
    async fn validate(
        &self,
        client: &Client,
        manifest: &CopyManifest,
    ) -> Result<u64, StageFailure> {
        let id = self.spec.id();
        let loaded = warehouse::loaded_rows(
            client,
            &self.settings,
            self.context.task.as_str(),
            &id,
            &self.run,
        )
        .await? as u64;
        // Redshift may reject up to `warehouse.copy.maxerror` rows, when asked to.
        let rejected = manifest.rows.saturating_sub(loaded);
        if !self.settings.copy.accepts(loaded, manifest.rows) {
            return Err(StageFailure::Fatal(format!(
                "the warehouse holds {loaded} rows of {id} from this run, but {} were \
                 extracted",
                manifest.rows
            )));
        }
        if rejected > 0 {
            tracing::warn!(
                task = %self.context.task,
                subtask = %id,
                "Redshift rejected {rejected} of {} rows (warehouse.copy.maxerror = {}); \
                 stl_load_errors names them",
                manifest.rows,
                self.settings.copy.maxerror
            );
        }
        if self.settings.count_source {
            let source = self.context.source.clone();
            let spec = self.spec.clone();
            let counted = tokio::task::spawn_blocking(move || {
                crate::source::catalog::count_rows(&source, &spec)
            })
            .await
            .map_err(|e| StageFailure::Internal(format!("counting the source rows: {e}")))?
            .map_err(|e| StageFailure::from(e).within("counting the source rows"))?;
            if counted != manifest.rows {
                return Err(StageFailure::Fatal(format!(
                    "the source now has {counted} rows of {id}, but {} were extracted and \
                     loaded (did the table change during the run?)",
                    manifest.rows
                )));
            }
        }
        if !self.context.files.keep_uploaded {
            let task = self.context.task.as_str();
            let mut keys: Vec<String> = manifest
                .chunks
                .iter()
                .map(|c| self.target.key(task, &id, &c.name))
                .collect();
            keys.push(
                self.target
                    .key(task, &id, crate::destination::local::MANIFEST_FILE),
            );
            if let Err(e) = self.target.delete(&keys, &self.cancel).await {
                tracing::warn!("the copy is done, but deleting its uploaded files failed: {e}");
            }
        }
        Ok(loaded)
    }
}

impl Handler<Abort> for Copier {
    type Result = ();

    fn handle(&mut self, _: Abort, ctx: &mut Context<Self>) {
        self.failed = true;
        ctx.stop();
    }
}
