//! Logging set-up: human-readable lines on stderr, filtered by `DBHAUL_LOG` (the
//! `tracing-subscriber` env-filter syntax, e.g. `dbhaul=debug`), warnings and errors by
//! default. Per-task log files arrive with the daemons.

pub mod task_log;

use tracing_subscriber::EnvFilter;

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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
