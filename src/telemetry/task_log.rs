//! Per-task log files on agents and on the controller: `logs/<task>.log`, one line per
//! event of the task (created, dispatched, taken, started, completed, failed with the
//! cause), each starting with a UTC time stamp so that the controller can merge the
//! agents' files with its own in time order for `dbhaul tasks log`. Lines never hold a secret: they are
//! made from subtask ids, counts and error messages, which are secret-free by construction.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub fn path(logs: &Path, task: &str) -> PathBuf {
    logs.join(format!("{task}.log"))
}

/// Append one line; a log that cannot be written is reported on stderr, never fatal.
pub fn append(logs: &Path, task: &str, level: &str, message: &str) {
    let line = format!(
        "{} {level:<7} task={task} {message}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let written = crate::config::files::private_dir(logs).and_then(|()| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path(logs, task))?;
        file.write_all(line.as_bytes())
    });
    if let Err(e) = written {
        tracing::warn!(task = %task, "cannot write the task log: {e}");
    }
}
