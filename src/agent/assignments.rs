//! The agent's assignments as its store keeps them: what the supervisor holds of each
//! subtask it was given ([`Assignment`]), written to `agent.redb` at every change of state
//! (progress at most every [`PERSIST_EVERY`]), and read back at start, when a subtask that
//! was running runs again. Nothing here starts or stops a subtask.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::views::{key_subtask, set_stages};
use crate::model::State;
use crate::store::Store;
use crate::store::schema::{AGENT_ASSIGNMENTS, AGENT_TASKS, AgentTaskRecord, AssignmentRecord};

/// Progress is written to the store at most this often per subtask (state changes always).
pub(super) const PERSIST_EVERY: Duration = Duration::from_secs(2);

/// A subtask this agent holds.
pub(super) struct Assignment {
    pub(super) record: AssignmentRecord,
    /// The user asked it to stop while it ran: its failure ends it as stopped.
    pub(super) stop_requested: bool,
    /// When its record was last written.
    pub(super) persisted: Instant,
}

impl Assignment {
    pub(super) fn new(record: AssignmentRecord) -> Assignment {
        Assignment {
            record,
            stop_requested: false,
            persisted: Instant::now(),
        }
    }
}

/// Write an assignment's record; a failure is logged (the subtask goes on).
pub(super) fn persist(store: &Store, key: &str, assignment: &mut Assignment) {
    assignment.persisted = Instant::now();
    if let Err(e) = store.put(AGENT_ASSIGNMENTS, key, &assignment.record) {
        tracing::error!(subtask = %key, "cannot record the subtask's status: {e}");
    }
}

/// The tasks and assignments the store holds. A subtask that was running when the agent
/// stopped is pending again, wanted, and recorded so. Tasks are read one by one: a task
/// whose job no longer parses fails its own unfinished subtasks, with the reason, and no
/// other.
pub(super) fn load(store: &Store) -> (Vec<AgentTaskRecord>, BTreeMap<String, Assignment>) {
    let stored: Vec<(String, serde_json::Value)> = match store.list(AGENT_TASKS) {
        Ok(tasks) => tasks,
        Err(e) => {
            tracing::error!("cannot read the agent's store: {e}");
            Vec::new()
        }
    };
    let mut tasks = Vec::new();
    let mut unparsed: HashMap<String, String> = HashMap::new();
    for (name, task) in stored {
        match serde_json::from_value::<AgentTaskRecord>(task) {
            Ok(task) => tasks.push(task),
            Err(e) => {
                tracing::error!(task = %name, "{e}");
                unparsed.insert(name, e.to_string());
            }
        }
    }
    let records: Vec<(String, AssignmentRecord)> =
        store.list(AGENT_ASSIGNMENTS).unwrap_or_default();
    let mut assignments = BTreeMap::new();
    for (key, mut record) in records {
        if let Some(error) = unparsed.get(&record.task)
            && !record.status.state.is_final()
        {
            record.status.state = State::Failed;
            record.status.error = Some(error.clone());
            record.wanted = false;
            set_stages(&mut record.status, State::Failed);
            let mut assignment = Assignment::new(record);
            persist(store, &key, &mut assignment);
            assignments.insert(key, assignment);
            continue;
        }
        let resumed = record.status.state == State::Running;
        if resumed {
            // It was running when the agent stopped: run it again.
            record.status.state = State::Pending;
            record.wanted = true;
            set_stages(&mut record.status, State::Pending);
        }
        let mut assignment = Assignment::new(record);
        if resumed {
            persist(store, &key, &mut assignment);
            tracing::warn!(
                task = %assignment.record.task,
                subtask = %key_subtask(&key),
                "the subtask was running when the agent stopped; it runs again"
            );
        }
        assignments.insert(key, assignment);
    }
    (tasks, assignments)
}
