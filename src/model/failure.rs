//! Why a stage of a subtask stopped, as a type: the source, target and warehouse errors
//! are mapped into it where they are typed (an SQLSTATE, an OS error number, an S3
//! error's kind), and the subtask and whoever runs it decide a retry from the kind, never
//! from the words of the message. No I/O and no dependencies: the mappings live beside the
//! errors they read (`source::error`, `destination::s3`, `warehouse`).

use std::fmt;

/// How a stage failed. The message (what `Display` writes) names the cause and the fix,
/// and is what users see, unchanged, in logs, the API and `tasks show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageFailure {
    /// A fault that may pass — a lost or refused connection, a full working folder:
    /// running the subtask again may well succeed.
    Transient(String),
    /// Running it again as it is will not help: the job, the data or the environment must
    /// change (or a layer below has already spent its own tries).
    Fatal(String),
    /// The subtask was stopped (a user's stop, Ctrl-C): not a failure of its own.
    Stopped,
    /// dbhaul broke one of its own promises (a panic, rows that do not add up): a bug.
    Internal(String),
}

impl StageFailure {
    /// Whether running the subtask again may get past this failure.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StageFailure::Transient(_))
    }

    pub fn is_stopped(&self) -> bool {
        matches!(self, StageFailure::Stopped)
    }

    /// The same failure, its message prefixed with the step it happened in (`what: …`).
    pub fn within(self, what: &str) -> StageFailure {
        match self {
            StageFailure::Transient(m) => StageFailure::Transient(format!("{what}: {m}")),
            StageFailure::Fatal(m) => StageFailure::Fatal(format!("{what}: {m}")),
            StageFailure::Internal(m) => StageFailure::Internal(format!("{what}: {m}")),
            StageFailure::Stopped => StageFailure::Stopped,
        }
    }
}

impl fmt::Display for StageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageFailure::Transient(message)
            | StageFailure::Fatal(message)
            | StageFailure::Internal(message) => f.write_str(message),
            StageFailure::Stopped => f.write_str("stopped"),
        }
    }
}

/// Whether an SQLSTATE says the connection was lost or refused, or the transaction lost a
/// race, so that doing the work again may succeed: class 08 (connection exception),
/// 57P01-57P03 (administrator shutdown, crash shutdown, cannot connect now), HYT00/HYT01
/// (ODBC timeouts), 40001/40P01 (serialization failure, deadlock).
pub fn sqlstate_may_pass(state: &str) -> bool {
    state.starts_with("08")
        || matches!(
            state,
            "57P01" | "57P02" | "57P03" | "HYT00" | "HYT01" | "40001" | "40P01"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_transient_failure_is_retried() {
        let cases = [
            (StageFailure::Transient("lost".into()), true),
            (StageFailure::Fatal("no table".into()), false),
            (StageFailure::Stopped, false),
            (StageFailure::Internal("a bug".into()), false),
        ];
        for (failure, retryable) in cases {
            assert_eq!(failure.is_retryable(), retryable, "{failure:?}");
        }
    }

    #[test]
    fn the_message_is_the_one_users_saw_before() {
        assert_eq!(StageFailure::Transient("a b".into()).to_string(), "a b");
        assert_eq!(StageFailure::Fatal("c".into()).to_string(), "c");
        assert_eq!(StageFailure::Internal("d".into()).to_string(), "d");
        assert_eq!(StageFailure::Stopped.to_string(), "stopped");
    }

    #[test]
    fn a_step_s_name_is_put_before_the_message_and_keeps_the_kind() {
        let failure = StageFailure::Transient("lost".into()).within("counting");
        assert_eq!(failure, StageFailure::Transient("counting: lost".into()));
        assert_eq!(StageFailure::Stopped.within("x"), StageFailure::Stopped);
    }

    #[test]
    fn sqlstates_of_lost_connections_and_lost_races_may_pass() {
        let cases = [
            ("08006", true),
            ("08S01", true),
            ("57P01", true),
            ("57P03", true),
            ("HYT00", true),
            ("40001", true),
            ("40P01", true),
            ("22012", false),
            ("42P01", false),
            ("28P01", false),
            ("HY000", false),
            ("", false),
        ];
        for (state, may_pass) in cases {
            assert_eq!(sqlstate_may_pass(state), may_pass, "{state}");
        }
    }
}
