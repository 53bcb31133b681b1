//! A task as created: the job file's text with the secrets and files it names
//! ([`TaskDefinition`], the form that is sent to agents and kept in the stores), and the same
//! with its job parsed and validated once ([`Task`]), which everything that runs or shows the
//! task reads. A stored task whose job no longer parses is an error that names it, never a
//! task with default settings.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Job, JobError};
use crate::model::{Leg, MigrationMode};

/// A task as the agents receive it: the job file's text and the secrets its `password_env`
/// settings name, resolved on the machine that created the task.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDefinition {
    pub name: String,
    /// Made when the task is created: a task deleted and created again under the same name
    /// is another task, whose subtasks start afresh on the agents.
    #[serde(default)]
    pub id: String,
    /// The job file, as written.
    pub job: String,
    /// Environment variable name → value, for the job's `password_env` settings.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Files the job names (`boundaries_file`) → their text, as read where the task was
    /// created: agents read them from here, not from their own disks.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl fmt::Debug for TaskDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskDefinition")
            .field("name", &self.name)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TaskDefinition {
    /// Parse and validate the job once, with the definition's secrets as its environment
    /// and its files as the files it names, as the holder of `leg` runs it: the front leg
    /// in mode `extract-upload` (no warehouse, no warehouse password).
    pub fn parse(self, leg: Option<Leg>) -> Result<Task, JobError> {
        let job = Arc::new(self.parse_job(leg)?);
        let front = match (leg, job.mode) {
            (None, MigrationMode::ExtractUploadCopy) => {
                let front = self.front()?;
                let front_job = Arc::new(front.parse_job(Some(Leg::ExtractUpload))?);
                Some(Arc::new(Task {
                    definition: front,
                    leg: Some(Leg::ExtractUpload),
                    job: front_job,
                    front: None,
                }))
            }
            _ => None,
        };
        Ok(Task {
            definition: self,
            leg,
            job,
            front,
        })
    }

    fn parse_job(&self, leg: Option<Leg>) -> Result<Job, JobError> {
        let mode = (leg == Some(Leg::ExtractUpload)).then_some(MigrationMode::ExtractUpload);
        Job::parse_as(
            &format!("task {}", self.name),
            &self.job,
            |var| self.secrets.get(var).cloned(),
            |file| {
                self.files.get(file).cloned().ok_or_else(|| {
                    format!("{file} was not sent with the task; create it again with `dbhaul tasks create`")
                })
            },
            mode,
        )
    }

    /// The task as a front agent gets it: without its `[warehouse]` (URL, password variable)
    /// and without the warehouse password itself, which only copy agents need.
    fn front(&self) -> Result<TaskDefinition, JobError> {
        let fault = |message: String| JobError {
            file: format!("task {}", self.name),
            line: None,
            column: None,
            message,
        };
        let mut front = self.clone();
        let mut table = self
            .job
            .parse::<toml::Table>()
            .map_err(|e| fault(e.to_string()))?;
        if let Some(toml::Value::Table(warehouse)) = table.remove("warehouse") {
            if let Some(var) = warehouse.get("password_env").and_then(|v| v.as_str()) {
                front.secrets.remove(var);
            }
            front.job = toml::to_string(&table).map_err(|e| fault(e.to_string()))?;
        }
        Ok(front)
    }
}

/// A task with its job parsed once ([`TaskDefinition::parse`]) and kept parsed. It reads as
/// its definition (`task.name`, `task.secrets`); `job()` is the parsed job. It is stored and
/// sent as its definition's JSON; read back, the job is parsed again, as the whole job it
/// is (an agent's record, which knows its leg, parses it for that leg).
#[derive(Clone)]
pub struct Task {
    definition: TaskDefinition,
    leg: Option<Leg>,
    job: Arc<Job>,
    /// The front leg of a task in mode `extract-upload-copy` (leg `None`): what a front
    /// agent is given when the task hands off.
    front: Option<Arc<Task>>,
}

impl Task {
    /// The job, as parsed once.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The job, shared.
    pub fn shared_job(&self) -> Arc<Job> {
        self.job.clone()
    }

    /// The stages the holder runs, when another agent runs the rest.
    pub fn leg(&self) -> Option<Leg> {
        self.leg
    }

    pub fn definition(&self) -> &TaskDefinition {
        &self.definition
    }

    /// The definition as an agent given `leg` of it gets it: the front leg without the
    /// warehouse and its password; otherwise the whole task.
    pub fn definition_for(&self, leg: Option<Leg>) -> &TaskDefinition {
        match (leg, &self.front) {
            (Some(Leg::ExtractUpload), Some(front)) => &front.definition,
            _ => &self.definition,
        }
    }

    /// Its definition, to change and parse again (a rename).
    pub fn into_definition(self) -> TaskDefinition {
        self.definition
    }

    /// The task under the name and id the controller gives it at creation (the job, and so
    /// its parse, does not change).
    pub fn with_identity(mut self, name: String, id: String) -> Task {
        if let Some(front) = self.front.as_mut() {
            let front = Arc::make_mut(front);
            front.definition.name = name.clone();
            front.definition.id = id.clone();
        }
        self.definition.name = name;
        self.definition.id = id;
        self
    }
}

impl std::ops::Deref for Task {
    type Target = TaskDefinition;

    fn deref(&self) -> &TaskDefinition {
        &self.definition
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("definition", &self.definition)
            .field("leg", &self.leg)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Task {
    fn eq(&self, other: &Task) -> bool {
        self.definition == other.definition && self.leg == other.leg
    }
}

impl Serialize for Task {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.definition.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Task {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Task, D::Error> {
        let definition = TaskDefinition::deserialize(deserializer)?;
        definition
            .parse_stored(None)
            .map_err(serde::de::Error::custom)
    }
}

impl TaskDefinition {
    /// [`TaskDefinition::parse`] of a task read back from a store, whose failure says that
    /// the stored task no longer parses and what to do.
    pub fn parse_stored(self, leg: Option<Leg>) -> Result<Task, String> {
        let name = self.name.clone();
        self.parse(leg).map_err(|e| {
            format!(
                "the stored task {name} no longer parses ({e}); this dbhaul cannot run it: \
                 export or delete it with the dbhaul that created it, then create it again \
                 from its job file"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A task carries the files its job names: agents plan from them, not from their disks.
    #[test]
    fn a_task_reads_its_boundary_file_from_what_it_carries() {
        let mut task = TaskDefinition {
            name: "t".into(),
            id: String::new(),
            job:
                "[task]\nname = \"t\"\n[source]\nconnection = \"DSN=x\"\n[[tables]]\nname = \"a\"\n\
                  partition = { column = \"id\", boundaries_file = \"b.csv\" }\n"
                    .into(),
            secrets: BTreeMap::new(),
            files: BTreeMap::new(),
        };
        let missing = task.clone().parse(None).unwrap_err().to_string();
        assert!(
            missing.contains("b.csv was not sent with the task"),
            "{missing}"
        );
        task.files.insert("b.csv".into(), "10\n20\n".into());
        let parsed = task.clone().parse(None).unwrap();
        let job = parsed.job();
        assert!(matches!(
            &job.tables[0].partition,
            Some(crate::config::PartitionRequest::Boundaries { values, .. }) if values.len() == 2
        ));
        let json = serde_json::to_string(&task).unwrap();
        let back: TaskDefinition = serde_json::from_str(&json).unwrap();
        assert_eq!(back.files, task.files);
    }
}
