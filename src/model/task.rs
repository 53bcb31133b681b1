//! A task's identity and the settings that name what it does: its name, its migration mode
//! and its log level. Validation lives in the constructors, so a value of these types is
//! always one the rest of the program can use without checking again.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A task name: 1 to 64 letters, digits, `-` and `_`. It becomes a folder name and an object
/// key prefix, so nothing else is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskName(String);

impl TaskName {
    pub fn parse(raw: &str) -> Result<TaskName, String> {
        if raw.is_empty() || raw.len() > 64 {
            return Err(format!("task name `{raw}` must be 1 to 64 characters long"));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "task name `{raw}` contains `{bad}`; use letters, digits, `-` and `_` only"
            ));
        }
        Ok(TaskName(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which stages a subtask runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationMode {
    /// Extract into the local working folder only.
    Extract,
    /// Extract, then upload the chunks to S3 or an S3-compatible device.
    ExtractUpload,
    /// Extract, upload, and copy into the warehouse.
    ExtractUploadCopy,
}

impl MigrationMode {
    /// Whether chunks are uploaded.
    pub fn uploads(self) -> bool {
        self != MigrationMode::Extract
    }

    /// Whether chunks are copied into a warehouse.
    pub fn copies(self) -> bool {
        self == MigrationMode::ExtractUploadCopy
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MigrationMode::Extract => "extract",
            MigrationMode::ExtractUpload => "extract-upload",
            MigrationMode::ExtractUploadCopy => "extract-upload-copy",
        }
    }
}

/// The part of a subtask's stages an agent is given when no one agent has every role the
/// task needs: the front agent extracts and uploads; later an agent with the copy role
/// copies from the uploaded manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Leg {
    ExtractUpload,
    Copy,
}

impl Leg {
    pub fn roles(self) -> Vec<Role> {
        match self {
            Leg::ExtractUpload => vec![Role::Extract, Role::Upload],
            Leg::Copy => vec![Role::Copy],
        }
    }
}

/// What an agent may be given to do: read sources, write to S3, load warehouses. An
/// agent registered without some (say, with no warehouse credentials near it) is given
/// only tasks whose stages it has.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Extract,
    Upload,
    Copy,
}

impl Role {
    pub fn all() -> Vec<Role> {
        vec![Role::Extract, Role::Upload, Role::Copy]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Extract => "extract",
            Role::Upload => "upload",
            Role::Copy => "copy",
        }
    }

    /// `extract, upload`: for messages.
    pub fn list(roles: &[Role]) -> String {
        if roles.is_empty() {
            return "no role".into();
        }
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl MigrationMode {
    /// The roles an agent needs to run a subtask of this mode: it runs all its stages.
    pub fn roles(self) -> Vec<Role> {
        let mut roles = vec![Role::Extract];
        if self.uploads() {
            roles.push(Role::Upload);
        }
        if self.copies() {
            roles.push(Role::Copy);
        }
        roles
    }
}

/// Whether a subtask reads its table in key order, which lets a run that starts again
/// continue after the last key of its last durable chunk instead of from the beginning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sorting {
    /// Never ordered: a subtask that runs again starts from its beginning (and its
    /// deterministic chunk names and object keys are overwritten).
    Never,
    /// Ordered by the primary (or a unique, not-null) key whenever the table has one, from
    /// the first run: resumable at once, at the cost of an ordered scan.
    IfPossible,
    /// The first run reads unordered (the fastest scan); a subtask that runs again reads in
    /// key order, so any later interruption resumes after its last durable chunk.
    AfterFirstFailure,
}

impl Sorting {
    /// Whether a subtask with a key reads in key order on this attempt (1 = the first).
    pub fn ordered(self, attempt: u32) -> bool {
        match self {
            Sorting::Never => false,
            Sorting::IfPossible => true,
            Sorting::AfterFirstFailure => attempt > 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sorting::Never => "never",
            Sorting::IfPossible => "if_possible",
            Sorting::AfterFirstFailure => "after_first_failure",
        }
    }
}

/// The level of a task's log, each including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Error,
    Warning,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warning => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }

    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warning,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "ERROR",
            LogLevel::Warning => "WARNING",
            LogLevel::Info => "INFO",
            LogLevel::Debug => "DEBUG",
            LogLevel::Trace => "TRACE",
        }
    }

    /// `DEBUG`, `debug` or `Debug`; `WARN` for `WARNING` too.
    pub fn parse(text: &str) -> Option<LogLevel> {
        let upper = text.trim().to_ascii_uppercase();
        if upper == "WARN" {
            return Some(LogLevel::Warning);
        }
        LogLevel::ALL.into_iter().find(|l| l.as_str() == upper)
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_needs_the_roles_of_its_stages() {
        assert_eq!(MigrationMode::Extract.roles(), [Role::Extract]);
        assert_eq!(
            MigrationMode::ExtractUpload.roles(),
            [Role::Extract, Role::Upload]
        );
        assert_eq!(MigrationMode::ExtractUploadCopy.roles(), Role::all());
        assert_eq!(Role::list(&[Role::Extract, Role::Copy]), "extract, copy");
        assert_eq!(Role::list(&[]), "no role");
    }

    #[test]
    fn task_names() {
        let cases = [
            ("orders", true),
            ("erp-orders_2024", true),
            ("", false),
            ("with space", false),
            ("dots.are.bad", false),
            ("slash/also", false),
            (&"x".repeat(65), false),
        ];
        for (raw, ok) in cases {
            assert_eq!(TaskName::parse(raw).is_ok(), ok, "{raw}");
        }
    }
}
