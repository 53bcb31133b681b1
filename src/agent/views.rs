//! What the supervisor shows of its subtasks: their status as their runs' progress and
//! outcomes change it, per stage, and the lists and counts its API and metrics ask for.
//! Plain functions over the assignments; no I/O.

use std::collections::BTreeMap;

use super::assignments::Assignment;
use crate::pipeline::{SubtaskOutcome, SubtaskProgress};
use crate::remote::wire::{State, SubtaskStatus};

/// The subtask's id in an assignment key (`task/subtask`).
pub(super) fn key_subtask(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, s)| s)
}

/// Now, as a status records it.
pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Set every stage of a subtask to `state`, except stages already completed.
pub(super) fn set_stages(status: &mut SubtaskStatus, state: State) {
    let mut stages = vec![&mut status.extract];
    if let Some(upload) = status.upload.as_mut() {
        stages.push(upload);
    }
    if let Some(copy) = status.copy.as_mut() {
        stages.push(copy);
    }
    for stage in stages {
        if stage.state != State::Completed || state == State::Pending {
            stage.state = state;
        }
    }
}

/// The stages' counters from a running subtask's progress. A stage runs once it has seen a
/// row; the copy stage counts rows in the warehouse.
pub(super) fn apply_progress(status: &mut SubtaskStatus, progress: &SubtaskProgress) {
    status.extract.rows = progress.rows;
    status.extract.bytes = progress.bytes_out;
    status.chunks = progress.chunks;
    status.extract.state = if progress.extracted {
        State::Completed
    } else {
        State::Running
    };
    if let (Some(upload), Some(rows)) = (status.upload.as_mut(), progress.uploaded_rows) {
        upload.rows = rows;
        upload.bytes = progress.uploaded_bytes;
        upload.state = if progress.uploaded {
            State::Completed
        } else if rows > 0 {
            State::Running
        } else {
            State::Pending
        };
    }
    if let (Some(copy), Some(rows)) = (status.copy.as_mut(), progress.copied_rows) {
        copy.rows = rows;
        copy.state = if rows > 0 {
            State::Running
        } else {
            State::Pending
        };
    }
}

/// The counters of a run that ended, from its outcome.
pub(super) fn apply_outcome(status: &mut SubtaskStatus, outcome: &SubtaskOutcome) {
    status.extract.rows = outcome.rows;
    status.extract.bytes = outcome.bytes_compressed;
    status.chunks = outcome.chunks;
    if let (Some(upload), Some(rows)) = (status.upload.as_mut(), outcome.uploaded_rows) {
        upload.rows = rows;
        upload.bytes = outcome.bytes_compressed;
    }
    if let (Some(copy), Some(rows)) = (status.copy.as_mut(), outcome.copied_rows) {
        copy.rows = rows;
    }
    status.finished_at = Some(now());
}

/// The status of a task's subtasks, or of every subtask (then each names its task).
pub(super) fn statuses(
    assignments: &BTreeMap<String, Assignment>,
    task: Option<&str>,
) -> Vec<SubtaskStatus> {
    assignments
        .values()
        .filter(|a| task.is_none_or(|t| a.record.task == t))
        .map(|a| {
            let mut status = a.record.status.clone();
            if task.is_none() {
                status.task = Some(a.record.task.clone());
            }
            status
        })
        .collect()
}

/// Subtasks wanted and not yet running: queued, waiting to run again, or their task
/// being prepared.
pub(super) fn queued(assignments: &BTreeMap<String, Assignment>) -> usize {
    assignments
        .values()
        .filter(|a| a.record.wanted && a.record.status.state == State::Pending)
        .count()
}

/// Subtasks by task and state.
pub(super) fn count_by_state(
    assignments: &BTreeMap<String, Assignment>,
) -> Vec<(String, State, i64)> {
    let mut counts: BTreeMap<(String, State), i64> = BTreeMap::new();
    for a in assignments.values() {
        *counts
            .entry((a.record.task.clone(), a.record.status.state))
            .or_default() += 1;
    }
    counts.into_iter().map(|((t, s), n)| (t, s, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::wire::StageStatus;

    fn status(extract: State, upload: State, copy: State) -> SubtaskStatus {
        let stage = |state| StageStatus {
            state,
            ..StageStatus::default()
        };
        SubtaskStatus {
            extract: stage(extract),
            upload: Some(stage(upload)),
            copy: Some(stage(copy)),
            ..SubtaskStatus::default()
        }
    }

    fn states(status: &SubtaskStatus) -> [State; 3] {
        let stage = |s: &Option<StageStatus>| s.as_ref().map_or(State::Pending, |s| s.state);
        [
            status.extract.state,
            stage(&status.upload),
            stage(&status.copy),
        ]
    }

    #[test]
    fn stages_already_completed_keep_their_state_unless_the_subtask_runs_again() {
        use State::{Completed, Failed, Pending, Running, Stopped};
        let table = [
            (
                [Running, Running, Running],
                Failed,
                [Failed, Failed, Failed],
            ),
            (
                [Completed, Running, Pending],
                Failed,
                [Completed, Failed, Failed],
            ),
            (
                [Completed, Completed, Running],
                Stopped,
                [Completed, Completed, Stopped],
            ),
            (
                [Completed, Completed, Failed],
                Pending,
                [Pending, Pending, Pending],
            ),
            (
                [Pending, Pending, Pending],
                Running,
                [Running, Running, Running],
            ),
        ];
        for (before, to, after) in table {
            let mut s = status(before[0], before[1], before[2]);
            set_stages(&mut s, to);
            assert_eq!(states(&s), after, "{before:?} set to {to:?}");
        }
    }

    #[test]
    fn progress_moves_each_stage_once_it_has_seen_a_row() {
        use State::{Completed, Pending, Running};
        let progress = |rows, uploaded_rows, copied_rows, extracted, uploaded| SubtaskProgress {
            rows,
            uploaded_rows: Some(uploaded_rows),
            copied_rows: Some(copied_rows),
            extracted,
            uploaded,
            ..SubtaskProgress::default()
        };
        let table = [
            (progress(0, 0, 0, false, false), [Running, Pending, Pending]),
            (
                progress(10, 0, 0, false, false),
                [Running, Pending, Pending],
            ),
            (
                progress(10, 5, 0, false, false),
                [Running, Running, Pending],
            ),
            (
                progress(20, 10, 5, true, false),
                [Completed, Running, Running],
            ),
            (
                progress(20, 20, 5, true, true),
                [Completed, Completed, Running],
            ),
        ];
        for (progress, after) in table {
            let mut s = status(Running, Pending, Pending);
            apply_progress(&mut s, &progress);
            assert_eq!(states(&s), after, "{progress:?}");
            assert_eq!(s.extract.rows, progress.rows);
        }
    }
}
