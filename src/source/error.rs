//! What can go wrong with a source, in words that name the cause and the fix. The kind
//! decides the exit status: a configuration the user must change, or a run that failed.

use odbc_api::Error as OdbcError;

use crate::model::StageFailure;
use crate::model::failure::sqlstate_may_pass;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "ODBC driver `{driver}` is not installed ({detail}); `odbcinst -q -d` lists the \
         installed drivers, appliance/odbcinst.ini.example shows how to register one"
    )]
    DriverMissing { driver: String, detail: String },

    #[error("bad connection string: {0}")]
    BadConnectionString(String),

    /// A driver the agent's settings do not let a task load (see `source::drivers`).
    #[error("driver refused: {0}")]
    DriverRefused(String),

    #[error(
        "the source refused the login ({detail}); check Uid and the password \
         (source.password_env) in the job file"
    )]
    AuthFailed { detail: String },

    #[error(
        "cannot connect to the source ({detail}); check Server, Port and that the database is running"
    )]
    Unreachable { detail: String },

    #[error(
        "table {table} not found on the source; `dbhaul tables --source ...` lists what exists"
    )]
    TableNotFound { table: String },

    #[error("table name `{table}` is ambiguous: {candidates}; write it as schema.table")]
    AmbiguousTable { table: String, candidates: String },

    #[error("column `{column}` not found in table {table}; its columns are: {available}")]
    ColumnNotFound {
        table: String,
        column: String,
        available: String,
    },

    #[error(
        "a value of column `{column}` in {table} is longer than the {max_bytes} bytes its type \
         allows for; nothing was cut. The driver under-reports this column's size"
    )]
    Truncated {
        table: String,
        column: String,
        max_bytes: usize,
    },

    #[error("{what}: {detail}")]
    Odbc { what: String, detail: String },

    /// An error the database reported with a diagnostic record: `detail` is its message
    /// with the SQLSTATE; `state` and `native` (the driver's own error number, MySQL's and
    /// MariaDB's 2006 "gone away") tell a lost connection from the others.
    #[error("{what}: {detail}")]
    Database {
        what: String,
        detail: String,
        state: String,
        native: i32,
    },

    #[error("stopped")]
    Cancelled,
}

impl SourceError {
    /// True when the user must change the job or the environment, not merely retry: exit 2.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            SourceError::DriverMissing { .. }
                | SourceError::BadConnectionString(_)
                | SourceError::DriverRefused(_)
                | SourceError::AuthFailed { .. }
                | SourceError::Unreachable { .. }
                | SourceError::TableNotFound { .. }
                | SourceError::AmbiguousTable { .. }
                | SourceError::ColumnNotFound { .. }
        )
    }

    /// A lost or refused connection, which running the subtask again may get past: the
    /// database restarting, a connection killed by an administrator, a network cut. Told by
    /// the diagnostic record: an SQLSTATE of [`sqlstate_may_pass`], or MySQL's and
    /// MariaDB's client errors 2006 (server gone away), 2013 and 2055 (connection lost).
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Unreachable { .. } => true,
            SourceError::Database { state, native, .. } => {
                sqlstate_may_pass(state) || matches!(native, 2006 | 2013 | 2055)
            }
            _ => false,
        }
    }

    /// Wrap an ODBC error from a step described by `what`.
    pub fn odbc(what: impl Into<String>, error: OdbcError) -> SourceError {
        let detail = describe(&error);
        match &error {
            OdbcError::Diagnostics { record, .. } => SourceError::Database {
                what: what.into(),
                detail,
                state: record.state.as_str().to_string(),
                native: record.native_error,
            },
            _ => SourceError::Odbc {
                what: what.into(),
                detail,
            },
        }
    }
}

/// A stage's failure from a source error: a lost connection may pass; `Cancelled` is a
/// stop only when the caller knows the subtask was stopped (else the stage downstream went
/// away, which its own report explains), so it is mapped by the extractor, not here.
impl From<SourceError> for StageFailure {
    fn from(error: SourceError) -> StageFailure {
        if error.is_transient() {
            StageFailure::Transient(error.to_string())
        } else {
            StageFailure::Fatal(error.to_string())
        }
    }
}

/// The SQLSTATE of an ODBC error, when it carries one.
pub fn sql_state(error: &OdbcError) -> Option<String> {
    match error {
        OdbcError::Diagnostics { record, .. } => Some(record.state.as_str().to_string()),
        _ => None,
    }
}

/// The driver's message without the ODBC plumbing around it.
pub fn describe(error: &OdbcError) -> String {
    match error {
        OdbcError::Diagnostics { record, .. } => {
            let message = String::from_utf8_lossy(&record.message)
                .trim()
                .replace(['\n', '\t'], " ");
            format!("{message} [SQLSTATE {}]", record.state.as_str())
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_are_told_from_other_failures_by_the_diagnostic_record() {
        let db = |state: &str, native: i32| SourceError::Database {
            what: "reading t".into(),
            // The words do not decide: a lost connection's words on a syntax error's state.
            detail: format!("Lost connection, server has gone away [SQLSTATE {state}]"),
            state: state.into(),
            native,
        };
        let cases = [
            (db("57P01", 0), true),
            (db("08S01", 0), true),
            (db("HY000", 2013), true),
            (db("HY000", 2006), true),
            (db("HY000", 1064), false),
            (db("22012", 0), false),
            (db("42P01", 0), false),
            (
                SourceError::Odbc {
                    what: "reading t".into(),
                    detail: "Lost connection [SQLSTATE 08S01]".into(),
                },
                false,
            ),
            (
                SourceError::Unreachable {
                    detail: "refused".into(),
                },
                true,
            ),
            (
                SourceError::AuthFailed {
                    detail: "no".into(),
                },
                false,
            ),
            (SourceError::Cancelled, false),
        ];
        for (error, transient) in cases {
            assert_eq!(error.is_transient(), transient, "{error}");
            let failure = StageFailure::from(error);
            assert_eq!(failure.is_retryable(), transient, "{failure}");
        }
    }

    #[test]
    fn a_stage_failure_keeps_the_source_error_s_words() {
        let error = SourceError::TableNotFound { table: "t".into() };
        let text = error.to_string();
        assert_eq!(StageFailure::from(error), StageFailure::Fatal(text));
    }
}
