//! What can go wrong with a source, in words that name the cause and the fix. The kind
//! decides the exit status: a configuration the user must change, or a run that failed.

use odbc_api::Error as OdbcError;

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
    /// the SQLSTATE: class 08 (connection exception), 57P01-57P03 (shutdown), HYT00/HYT01
    /// (timeouts), 40001/40P01 (serialization, deadlock), or MySQL's "gone away".
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Unreachable { .. } => true,
            SourceError::Odbc { detail, .. } => {
                let state = detail
                    .rsplit_once("[SQLSTATE ")
                    .map(|(_, s)| s.trim_end_matches(']'));
                matches!(
                    state,
                    Some("57P01" | "57P02" | "57P03" | "HYT00" | "HYT01" | "40001" | "40P01")
                ) || state.is_some_and(|s| s.starts_with("08"))
                    || detail.contains("server has gone away")
                    || detail.contains("Lost connection")
            }
            _ => false,
        }
    }

    /// Wrap an ODBC error from a step described by `what`.
    pub fn odbc(what: impl Into<String>, error: OdbcError) -> SourceError {
        SourceError::Odbc {
            what: what.into(),
            detail: describe(&error),
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
    fn lost_connections_are_told_from_other_failures() {
        let odbc = |detail: &str| SourceError::Odbc {
            what: "reading t".into(),
            detail: detail.into(),
        };
        let cases = [
            (
                odbc("terminating connection due to administrator command [SQLSTATE 57P01]"),
                true,
            ),
            (
                odbc("could not receive data from server [SQLSTATE 08S01]"),
                true,
            ),
            (
                odbc("Lost connection to server during query [SQLSTATE HY000]"),
                true,
            ),
            (odbc("division by zero [SQLSTATE 22012]"), false),
            (
                odbc("relation \"t\" does not exist [SQLSTATE 42P01]"),
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
        }
        assert!(crate::warehouse::is_lost_connection(
            "cannot copy: terminating connection due to administrator command (57P01)"
        ));
        assert!(crate::warehouse::is_lost_connection(
            "cannot copy: connection closed"
        ));
        assert!(!crate::warehouse::is_lost_connection(
            "cannot copy: value too long for type character varying(4) (22001)"
        ));
    }
}
