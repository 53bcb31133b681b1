//! `dbhaul run JOB.toml`: the single-machine path. Everything that can be checked before
//! data moves is checked first — the job file, the mode, the working folder, the source
//! login, every table, column, filter and partition — and fails with exit 2. Then the
//! subtasks run in an embedded runner with progress on stderr, and a summary goes to stdout.

use std::sync::Arc;

use serde::Serialize;

use actix::Arbiter;

use super::progress::ProgressView;
use super::{Exit, RunArgs, report_error};
use crate::config::Job;
use crate::destination::WorkDir;
use crate::pipeline::checks;
use crate::pipeline::job_runner::{JobRunner, RetryPolicy, StopJob};
use crate::pipeline::{SubtaskContext, SubtaskOutcome};
use crate::source::Source;

pub fn run(args: RunArgs) -> Exit {
    let job = match Job::load(&args.job) {
        Ok(job) => job,
        Err(e) => {
            report_error(e);
            return Exit::Usage;
        }
    };
    if args.plan {
        return super::plan::run_plan(&args.job, &job, &args.plan_options, args.json);
    }
    let work = WorkDir::new(args.work_dir.join(job.name.as_str()));
    if args.test {
        return test(&job, &work, args.json);
    }

    let folder = checks::work_folder(&work);
    if !folder.ok {
        report_error(folder.detail);
        return Exit::Usage;
    }
    let (source, conn) = match Source::open(&job.connection, job.password.as_ref()) {
        Ok(opened) => opened,
        Err(e) => {
            report_error(format!("source: {e}"));
            return Exit::for_error(e.is_configuration());
        }
    };
    let subtasks = match crate::planner::plan(&job, &source, &conn) {
        Ok(subtasks) => subtasks,
        Err(e) => {
            report_error(e.to_string());
            return Exit::for_error(e.is_configuration());
        }
    };
    drop(conn);
    tracing::info!(task = %job.name, subtasks = subtasks.len(), dialect = ?source.dialect, "planned");

    let started = std::time::Instant::now();
    let n_subtasks = subtasks.len();
    let system = actix::System::new();
    let ran = system.block_on(async {
        // The bucket and the warehouse are checked before any data moves.
        let (bucket, target) =
            checks::bucket(&job, job.target.as_ref().map_or(1, |t| t.attempts.min(3))).await;
        if !bucket.ok {
            return Err(format!("target: {}", bucket.detail));
        }
        let warehouse = checks::warehouse(&job, Some(&source), &subtasks, true).await;
        if !warehouse.ok {
            return Err(warehouse.detail);
        }
        let io = (job.mode.uploads()).then(Arbiter::new);
        let context = Arc::new(SubtaskContext {
            copy_only: false,
            task: job.name.clone(),
            // `dbhaul run` has no task id: a checkpoint of the same job is resumed.
            instance: String::new(),
            sorting: job.sorting,
            native_copy: job.native_copy,
            source: source.clone(),
            files: job.files.clone(),
            work: work.clone(),
            target,
            warehouse: job.warehouse.clone(),
            io: io.as_ref().map(Arbiter::handle),
        });
        let view = ProgressView::new(n_subtasks);
        let retry = RetryPolicy {
            retries: job.retries,
            first_wait: job.retry_wait,
        };
        let (runner, done) = JobRunner::start(
            context,
            subtasks,
            args.parallel as usize,
            retry,
            Box::new(view),
        );
        tokio::pin!(done);
        let outcome = tokio::select! {
            outcomes = &mut done => (outcomes.unwrap_or_default(), false),
            _ = tokio::signal::ctrl_c() => {
                eprintln!(
                    "dbhaul: interrupted; stopping subtasks (partial chunks are deleted, \
                     open copies rolled back); interrupt again to exit at once"
                );
                runner.do_send(StopJob);
                tokio::select! {
                    outcomes = done => (outcomes.unwrap_or_default(), true),
                    _ = tokio::signal::ctrl_c() => {
                        eprintln!("dbhaul: interrupted twice; exiting now");
                        std::process::exit(130);
                    }
                }
            }
        };
        if let Some(io) = io {
            io.stop();
        }
        Ok(outcome)
    });
    let (outcomes, interrupted) = match ran {
        Ok(ran) => ran,
        Err(e) => {
            report_error(e);
            return Exit::Usage;
        }
    };
    let summary = Summary::new(&job, &work, outcomes, started.elapsed().as_secs_f64());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("summary serializes")
        );
    } else {
        summary.print();
    }
    if interrupted || !summary.ok {
        Exit::Failed
    } else {
        Exit::Done
    }
}

/// `dbhaul run --test`: one line per check; exit 0 when all pass, 1 otherwise.
fn test(job: &Job, work: &WorkDir, json: bool) -> Exit {
    let checks = checks::test_task(job, work);
    let ok = checks.iter().all(|c| c.ok);
    if json {
        let report = serde_json::json!({ "task": job.name.as_str(), "ok": ok, "checks": checks });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializes")
        );
    } else {
        println!("test of task {} (mode {})", job.name, job.mode.as_str());
        for check in &checks {
            println!("{}", check.line());
        }
        println!(
            "{}",
            if ok {
                "all checks passed".to_string()
            } else {
                format!(
                    "{} of {} checks failed",
                    checks.iter().filter(|c| !c.ok).count(),
                    checks.len()
                )
            }
        );
    }
    if ok { Exit::Done } else { Exit::Failed }
}

#[derive(Debug, Serialize)]
struct Summary {
    task: String,
    work_dir: String,
    ok: bool,
    rows: u64,
    chunks: u64,
    bytes_uncompressed: u64,
    bytes_compressed: u64,
    seconds: f64,
    subtasks: Vec<SubtaskSummary>,
}

#[derive(Debug, Serialize)]
struct SubtaskSummary {
    id: String,
    state: &'static str,
    rows: u64,
    /// Rows of an interrupted earlier run this one went on from (not read again).
    resumed_rows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    uploaded_rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copied_rows: Option<u64>,
    chunks: u64,
    bytes_uncompressed: u64,
    bytes_compressed: u64,
    seconds: f64,
    manifest: Option<String>,
    error: Option<String>,
}

impl Summary {
    fn new(job: &Job, work: &WorkDir, mut outcomes: Vec<SubtaskOutcome>, seconds: f64) -> Summary {
        outcomes.sort_by(|a, b| a.id.cmp(&b.id));
        let subtasks: Vec<SubtaskSummary> = outcomes
            .into_iter()
            .map(|o| SubtaskSummary {
                state: if o.manifest.is_ok() {
                    "completed"
                } else {
                    "failed"
                },
                manifest: o.manifest.as_ref().ok().map(|p| p.display().to_string()),
                error: o.manifest.as_ref().err().map(ToString::to_string),
                id: o.id,
                rows: o.rows,
                resumed_rows: o.resumed_rows,
                uploaded_rows: o.uploaded_rows,
                copied_rows: o.copied_rows,
                chunks: o.chunks,
                bytes_uncompressed: o.bytes_uncompressed,
                bytes_compressed: o.bytes_compressed,
                seconds: o.seconds,
            })
            .collect();
        Summary {
            task: job.name.to_string(),
            work_dir: work.root().display().to_string(),
            ok: !subtasks.is_empty() && subtasks.iter().all(|s| s.error.is_none()),
            rows: subtasks.iter().map(|s| s.rows).sum(),
            chunks: subtasks.iter().map(|s| s.chunks).sum(),
            bytes_uncompressed: subtasks.iter().map(|s| s.bytes_uncompressed).sum(),
            bytes_compressed: subtasks.iter().map(|s| s.bytes_compressed).sum(),
            seconds,
            subtasks,
        }
    }

    fn print(&self) {
        let mb = |b: u64| b as f64 / 1_000_000.0;
        let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
        println!("task {} -> {}", self.task, self.work_dir);
        println!(
            "{:<40} {:>10} {:>12} {:>12} {:>12} {:>7} {:>10} {:>8}",
            "subtask", "state", "rows", "uploaded", "copied", "chunks", "MB (gz)", "seconds"
        );
        for s in &self.subtasks {
            println!(
                "{:<40} {:>10} {:>12} {:>12} {:>12} {:>7} {:>10.1} {:>8.1}",
                s.id,
                s.state,
                s.rows,
                count(s.uploaded_rows),
                count(s.copied_rows),
                s.chunks,
                mb(s.bytes_compressed),
                s.seconds
            );
        }
        let rate = if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        };
        println!(
            "total: {} rows, {} chunks, {:.1} MB CSV -> {:.1} MB compressed, {:.1} s ({:.0} rows/s)",
            self.rows,
            self.chunks,
            mb(self.bytes_uncompressed),
            mb(self.bytes_compressed),
            self.seconds,
            rate
        );
        for s in self.subtasks.iter().filter(|s| s.resumed_rows > 0) {
            println!(
                "{}: resumed after {} rows made durable by an interrupted run (not read again)",
                s.id, s.resumed_rows
            );
        }
        for s in self.subtasks.iter().filter(|s| s.error.is_some()) {
            eprintln!(
                "dbhaul: error: subtask {} failed: {}",
                s.id,
                s.error.as_deref().unwrap_or("")
            );
        }
    }
}
