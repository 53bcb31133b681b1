//! Logging set-up: human-readable lines on stderr, filtered by `DBHAUL_LOG` (the
//! `tracing-subscriber` env-filter syntax, e.g. `dbhaul=debug`), warnings and errors by
//! default. Per-task log files arrive with the daemons.

pub mod task_log;

use tracing_subscriber::EnvFilter;

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
