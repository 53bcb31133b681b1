//! The checks a task needs before data moves, shared by `dbhaul run` (which stops at the
//! first failure, exit 2, nothing changed) and `dbhaul run --test` (which runs them all and
//! prints one line each), and by an agent for the controller's `tasks test`.

use serde::Serialize;

use crate::config::Job;
use crate::destination::{S3Target, WorkDir};
use crate::model::SubtaskSpec;
use crate::source::Source;
use crate::warehouse;

/// Below this much free space in the working folder a run is warned.
pub const LOW_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// One check and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found, or the cause and the fix.
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, result: Result<String, String>) -> Check {
        match result {
            Ok(detail) => Check {
                name,
                ok: true,
                detail,
            },
            Err(detail) => Check {
                name,
                ok: false,
                detail,
            },
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{:<4} {:<16} {}",
            if self.ok { "ok" } else { "FAIL" },
            self.name,
            self.detail
        )
    }
}

/// The working folder: writable, with room (little room is a warning: a small table fits,
/// and a full disk fails the subtask cleanly).
pub fn work_folder(work: &WorkDir) -> Check {
    let result = match work.check_writable() {
        Ok(free) if free < LOW_FREE_BYTES => {
            let detail = format!(
                "{}: writable, but only {} MB free; a large table will fill it",
                work.root().display(),
                free / (1024 * 1024)
            );
            tracing::warn!("{detail}");
            Ok(detail)
        }
        Ok(free) => Ok(format!(
            "{}: writable, {:.1} GB free",
            work.root().display(),
            free as f64 / 1e9
        )),
        Err(e) => Err(crate::destination::local::describe_io(
            &format!("working folder {}", work.root().display()),
            &e,
        )),
    };
    Check::new("working folder", result)
}

/// Connect to the source and plan every table: login, tables, columns, filters, partitions.
pub fn source_and_tables(job: &Job) -> (Vec<Check>, Option<(Source, Vec<SubtaskSpec>)>) {
    let (source, conn) = match Source::open(&job.connection, job.password.as_ref()) {
        Ok(opened) => opened,
        Err(e) => return (vec![Check::new("source", Err(e.to_string()))], None),
    };
    let connected = Check::new("source", Ok(format!("connected ({:?})", source.dialect)));
    match crate::planner::plan(job, &source, &conn) {
        Ok(subtasks) => {
            let tables = Check::new(
                "tables",
                Ok(format!(
                    "{} tables readable, {} subtasks",
                    subtasks
                        .iter()
                        .map(|s| s.table.to_string())
                        .collect::<std::collections::BTreeSet<_>>()
                        .len(),
                    subtasks.len()
                )),
            );
            (vec![connected, tables], Some((source, subtasks)))
        }
        Err(e) => (
            vec![connected, Check::new("tables", Err(e.to_string()))],
            None,
        ),
    }
}

/// The bucket: connect, then write, read back and delete a probe object.
pub async fn bucket(job: &Job, attempts: u32) -> (Check, Option<S3Target>) {
    let Some(settings) = &job.target else {
        return (Check::new("bucket", Ok("not needed".into())), None);
    };
    let result = async {
        let target = S3Target::connect(settings).await?;
        let detail = target.probe(job.name.as_str(), attempts).await?;
        Ok::<_, crate::destination::S3Error>((target, detail))
    }
    .await;
    match result {
        Ok((target, detail)) => (Check::new("bucket", Ok(detail)), Some(target)),
        Err(e) => (Check::new("bucket", Err(e.to_string())), None),
    }
}

/// The warehouse: login, schema, bookkeeping table, tables and privileges. With
/// `prepare`, missing tables are created (a run); without, nothing changes (a test).
pub async fn warehouse(
    job: &Job,
    source: Option<&Source>,
    subtasks: &[SubtaskSpec],
    prepare: bool,
) -> Check {
    let Some(settings) = &job.warehouse else {
        return Check::new("warehouse", Ok("not needed".into()));
    };
    let result = async {
        let client = warehouse::connect(settings).await?;
        let detail = warehouse::check_access(&client, settings, subtasks).await?;
        if prepare && let Some(source) = source {
            warehouse::prepare(&client, settings, source.dialect, subtasks).await?;
        }
        Ok::<_, warehouse::WarehouseError>(detail)
    }
    .await;
    Check::new("warehouse", result.map_err(|e| e.to_string()))
}

/// `dbhaul run --test`: every check, one line each.
pub fn test_task(job: &Job, work: &WorkDir) -> Vec<Check> {
    let mut checks = Vec::new();
    let (source_checks, planned) = source_and_tables(job);
    checks.extend(source_checks);
    checks.push(work_folder(work));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        if job.mode.uploads() {
            // A test should answer quickly: two tries, not the run's patience.
            checks.push(bucket(job, 2).await.0);
        }
        if job.mode.copies() {
            let (source, subtasks) = match &planned {
                Some((source, subtasks)) => (Some(source), subtasks.as_slice()),
                None => (None, &[][..]),
            };
            checks.push(warehouse(job, source, subtasks, false).await);
        }
    });
    checks
}
