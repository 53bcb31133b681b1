//! Logging and metrics set-up: human-readable lines on stderr, filtered by `DBHAUL_LOG`
//! (the `tracing-subscriber` env-filter syntax, e.g. `dbhaul=debug`), warnings and errors
//! by default; beside them, the per-task log files of the daemons ([`task_log`]), each at
//! its task's level, and the Prometheus counters ([`metrics`]).

pub mod metrics;
pub mod task_log;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// An error and its causes, `: `-separated, each said once: libraries' own messages often
/// say only "error sending request", and their Debug forms are for bug reports, not users.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

pub fn init(verbose: bool) {
    let default = if verbose {
        "dbhaul=info"
    } else {
        "dbhaul=warn"
    };
    let filter = EnvFilter::try_from_env("DBHAUL_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Each layer has its own filter: a task at DEBUG gets its DEBUG lines while stderr
    // stays at its level, and the other way round.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(filter);
    let tasks = task_log::TaskLogLayer.with_filter(task_log::TaskFilter);
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(tasks)
        .try_init();
}
