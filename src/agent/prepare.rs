//! Getting a task ready to run on this agent: what the supervisor keeps of each task it
//! holds ([`TaskRuntime`]), and the preparation of its subtasks' shared context (the source
//! opened, the bucket connected, the warehouse's tables checked or created), which runs off
//! the supervisor's mailbox. It starts no subtask and writes nothing to the agent's store.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::config::Task;
use crate::model::{Leg, LogLevel, SubtaskSpec, TableRef};
use crate::pipeline::scheduler::RetryPolicy;
use crate::pipeline::{SubtaskContext, SubtaskEvent};

/// What a task needs on this agent once prepared: its subtasks' shared context.
pub(super) struct TaskRuntime {
    /// Its job parsed once, for its leg.
    pub(super) definition: Task,
    /// The stages this agent runs, when another agent runs the rest.
    pub(super) leg: Option<Leg>,
    pub(super) context: Option<Arc<SubtaskContext>>,
    /// The tables the context was prepared for (warehouse tables checked or created):
    /// a subtask of another table, taken later, prepares the task again.
    pub(super) prepared: Vec<TableRef>,
    pub(super) preparing: bool,
    /// Forwards its subtasks' events to the supervisor with the task's name.
    pub(super) relay: Recipient<SubtaskEvent>,
}

/// Log the task at the level it was given, or its job file's; its secrets never in a line.
pub(super) fn watch_log(definition: &Task, log_level: Option<LogLevel>) {
    let level = log_level.unwrap_or(definition.job().log_level);
    crate::telemetry::task_log::watch(
        &definition.name,
        level,
        definition.secrets.values().cloned(),
    );
}

/// Runs again after a fault that may pass, from a task's job.
pub(super) fn retry_policy(tasks: &HashMap<String, TaskRuntime>, task: &str) -> RetryPolicy {
    tasks
        .get(task)
        .map(|r| r.definition.job())
        .map_or(RetryPolicy::NONE, |job| RetryPolicy {
            retries: job.retries,
            first_wait: job.retry_wait,
        })
}

/// (uploads, copies) of a task's mode, from its definition.
pub(super) fn runtime_mode(tasks: &HashMap<String, TaskRuntime>, task: &str) -> (bool, bool) {
    tasks
        .get(task)
        .map(|r| r.definition.job())
        .map_or((false, false), |job| {
            (job.mode.uploads(), job.mode.copies())
        })
}

/// Open the source, connect to the bucket and prepare the warehouse for `specs`.
pub(super) async fn prepare_task(
    definition: Task,
    leg: Option<Leg>,
    specs: Vec<SubtaskSpec>,
    work: std::path::PathBuf,
    io: ArbiterHandle,
    drivers: crate::source::DriverPolicy,
) -> Result<Arc<SubtaskContext>, String> {
    let job = definition.shared_job();
    let copy_only = leg == Some(Leg::Copy);
    let source = if copy_only {
        // The copy leg's agent need not reach the source: the source's kind (for the types
        // of tables it creates) is told by the driver's name.
        if job.warehouse.as_ref().is_some_and(|w| w.count_source) {
            return Err(
                "warehouse.count_source counts the source after each copy, but this \
                 agent only copies (another agent extracts: no agent has every role the task \
                 needs); register an agent with all three roles, or set count_source = false"
                    .into(),
            );
        }
        crate::source::Source::unconnected(&job.connection).map_err(|e| format!("source: {e}"))?
    } else {
        // Checked here too, not only when the task came: a subtask resumed from the store
        // after a restart, or a task taken before the settings changed, meets them now.
        crate::source::drivers::check(&job.connection, &drivers)
            .map_err(|e| format!("source: {e}"))?;
        let job = job.clone();
        crate::agent::blocking(move || {
            crate::source::Source::open(&job.connection, job.password.as_ref())
                .map(|(source, _)| source)
                .map_err(|e| format!("source: {e}"))
        })
        .await??
    };
    let target = match &job.target {
        Some(settings) => Some(
            crate::destination::S3Target::connect(settings)
                .await
                .map_err(|e| format!("target: {e}"))?,
        ),
        None => None,
    };
    let warehouse = crate::pipeline::checks::warehouse(&job, Some(&source), &specs, true).await;
    if !warehouse.ok {
        return Err(format!("warehouse: {}", warehouse.detail));
    }
    Ok(Arc::new(SubtaskContext {
        task: job.name.clone(),
        instance: definition.id.clone(),
        sorting: job.sorting,
        native_copy: job.native_copy,
        source,
        files: job.files.clone(),
        work: crate::destination::WorkDir::new(work.join(job.name.as_str())),
        target,
        warehouse: job.warehouse.clone(),
        io: job.mode.uploads().then_some(io),
        copy_only,
    }))
}
