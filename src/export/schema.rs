//! The XML form of a task (format 1), as `docs/export-format.md` documents it. Its own
//! types, separate from the store's: a field added to the store never reaches a file by
//! accident, and a secret cannot (quick-xml's serde has no `flatten` or untagged enums, so
//! these types are written out field by field anyway). Attributes are the fields named
//! `@…`; every optional one is left out when absent.

use serde::{Deserialize, Serialize};

use super::{ExportError, FORMAT, ImportError};
use crate::model::{
    ColumnSpec, FetchKind, KeyKind, LogLevel, PartitionBound, PartitionSpec, StageStatus, State,
    SubtaskSpec, SubtaskStatus, TableRef, TaskName,
};
use crate::store::schema::{SubtaskRecord, TaskRecord};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedTask {
    #[serde(rename = "@format")]
    pub format: u32,
    #[serde(rename = "@dbhaul-version")]
    pub dbhaul_version: String,
    #[serde(rename = "@exported-at")]
    pub exported_at: String,
    pub name: String,
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "created-at")]
    pub created_at: String,
    /// Started and not stopped since, when it was exported: for readers only; an import
    /// creates the task stopped.
    pub started: bool,
    pub settings: Settings,
    /// The job file as written: `password_env` names, never their values.
    pub job: String,
    /// The files the job names (`boundaries_file`), as they were when the task was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Files>,
    /// Only these agents run the task (`tasks create --agents`); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Names>,
    /// The state when it was exported: for a reader, checked against the subtasks on import.
    pub progress: Progress,
    pub subtasks: Subtasks,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Names {
    #[serde(default)]
    pub agent: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(rename = "@mode")]
    pub mode: String,
    #[serde(rename = "@extract-lobs")]
    pub extract_lobs: bool,
    #[serde(rename = "@log-level")]
    pub log_level: String,
    /// The log level was changed from the job file's (`tasks log-level`).
    #[serde(rename = "@log-level-changed", default)]
    pub log_level_changed: bool,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<Warehouse>,
    /// The environment variables whose values the task needs (`password_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Secrets>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    #[serde(rename = "@connection")]
    pub connection: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "@url")]
    pub url: String,
    #[serde(rename = "@endpoint", default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warehouse {
    #[serde(rename = "@kind")]
    pub kind: String,
    #[serde(rename = "@url")]
    pub url: String,
    #[serde(rename = "@schema")]
    pub schema: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Files {
    #[serde(default)]
    pub file: Vec<NamedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedFile {
    #[serde(rename = "@name")]
    pub name: String,
    #[serde(rename = "$text", default)]
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Secrets {
    #[serde(default)]
    pub secret: Vec<SecretName>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretName {
    #[serde(rename = "@env")]
    pub env: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(rename = "@state")]
    pub state: String,
    #[serde(rename = "@subtasks")]
    pub subtasks: usize,
    #[serde(rename = "@completed")]
    pub completed: usize,
    #[serde(rename = "@rows")]
    pub rows: u64,
    #[serde(rename = "@bytes")]
    pub bytes: u64,
    #[serde(rename = "@percent")]
    pub percent: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subtasks {
    #[serde(default)]
    pub subtask: Vec<Subtask>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subtask {
    #[serde(rename = "@id")]
    pub id: String,
    #[serde(rename = "@state")]
    pub state: String,
    /// The agent that holds (or held) it.
    #[serde(rename = "@agent", default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The agent took it (it is in that agent's own store).
    #[serde(rename = "@dispatched")]
    pub dispatched: bool,
    #[serde(rename = "@attempts", default)]
    pub attempts: u32,
    #[serde(rename = "@chunks", default)]
    pub chunks: u64,
    #[serde(
        rename = "@estimated-rows",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub estimated_rows: Option<u64>,
    /// The most bytes of LOB values in a sampled row (sets the driver's LOB fetch size).
    #[serde(
        rename = "@largest-lob-row",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub largest_lob_row: Option<u64>,
    #[serde(
        rename = "@started-at",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<String>,
    #[serde(
        rename = "@finished-at",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<String>,
    pub table: Table,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,
    pub columns: Columns,
    #[serde(rename = "left-out", default, skip_serializing_if = "Option::is_none")]
    pub left_out: Option<Columns>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    pub extract: Stage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    #[serde(rename = "@catalog", default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    #[serde(rename = "@schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(rename = "@name")]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    #[serde(rename = "@name")]
    pub name: String,
    #[serde(rename = "@column")]
    pub column: String,
    /// below, between, from, not-null, is-null, equals or other.
    #[serde(rename = "@bound")]
    pub bound: String,
    /// SQL literals: `low` for from/between, `high` for below/between, `value` for equals.
    #[serde(rename = "@low", default, skip_serializing_if = "Option::is_none")]
    pub low: Option<String>,
    #[serde(rename = "@high", default, skip_serializing_if = "Option::is_none")]
    pub high: Option<String>,
    #[serde(rename = "@value", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The values an `other` partition leaves to the listed partitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listed: Vec<String>,
    /// The predicate as the source reads it.
    pub predicate: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Columns {
    #[serde(default)]
    pub column: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    #[serde(rename = "@name")]
    pub name: String,
    #[serde(rename = "@source-type")]
    pub source_type: String,
    #[serde(rename = "@sql-type")]
    pub sql_type: i16,
    #[serde(rename = "@size", default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    #[serde(rename = "@scale", default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<usize>,
    #[serde(rename = "@nullable")]
    pub nullable: bool,
    /// text, binary, long-text, long-binary, float64 or float32.
    #[serde(rename = "@fetch")]
    pub fetch: String,
    #[serde(
        rename = "@max-bytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    /// Positions of the key columns among the fetched columns, space-separated.
    #[serde(rename = "@columns")]
    pub columns: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    #[serde(rename = "@state")]
    pub state: String,
    #[serde(rename = "@rows")]
    pub rows: u64,
    #[serde(rename = "@bytes")]
    pub bytes: u64,
}

// ---- from the store ----

impl ExportedTask {
    pub fn from_record(task: &TaskRecord) -> Result<ExportedTask, ExportError> {
        let job = task.definition.job();
        if let Some((place, setting)) = inline_password(job) {
            return Err(ExportError(format!(
                "task {} has a password in its {place}; exports never hold one: move it to \
                 {setting} and create the task again",
                task.definition.name
            )));
        }
        let view = task.view();
        let secrets: Vec<SecretName> = task
            .definition
            .secrets
            .keys()
            .map(|env| SecretName { env: env.clone() })
            .collect();
        let exported = ExportedTask {
            format: FORMAT,
            dbhaul_version: env!("CARGO_PKG_VERSION").to_string(),
            exported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            name: task.definition.name.clone(),
            id: task.definition.id.clone(),
            description: task.description.clone(),
            created_at: task.created_at.clone(),
            started: task.started,
            settings: Settings {
                mode: job.mode.as_str().to_string(),
                extract_lobs: job.extract_lobs,
                log_level: task.effective_log_level().as_str().to_string(),
                log_level_changed: task.log_level.is_some(),
                source: Source {
                    connection: job.connection.clone(),
                },
                target: job.target.as_ref().map(|t| Target {
                    url: t.url(),
                    endpoint: t.endpoint.clone(),
                }),
                warehouse: job.warehouse.as_ref().map(|w| Warehouse {
                    kind: w.kind.as_str().to_string(),
                    url: w.url.clone(),
                    schema: w.schema.clone(),
                }),
                secrets: (!secrets.is_empty()).then_some(Secrets { secret: secrets }),
            },
            job: task.definition.job.clone(),
            files: (!task.definition.files.is_empty()).then(|| Files {
                file: task
                    .definition
                    .files
                    .iter()
                    .map(|(name, text)| NamedFile {
                        name: name.clone(),
                        text: text.clone(),
                    })
                    .collect(),
            }),
            agents: task.agents.as_ref().map(|a| Names { agent: a.clone() }),
            progress: Progress {
                state: view.state.as_str().to_string(),
                subtasks: view.subtasks_total,
                completed: view.subtasks_completed,
                rows: view.rows,
                bytes: view.bytes,
                percent: (view.progress * 100.0).floor() as u32,
            },
            subtasks: Subtasks {
                subtask: task.subtasks.iter().map(Subtask::from_record).collect(),
            },
        };
        Ok(exported)
    }
}

impl Subtask {
    fn from_record(record: &SubtaskRecord) -> Subtask {
        let spec = &record.spec;
        let status = &record.status;
        Subtask {
            id: status.id.clone(),
            state: status.state.as_str().to_string(),
            agent: status.agent.clone(),
            dispatched: record.dispatched,
            attempts: status.attempts,
            chunks: status.chunks,
            estimated_rows: status.estimated_rows,
            largest_lob_row: spec.largest_lob_row,
            started_at: status.started_at.clone(),
            finished_at: status.finished_at.clone(),
            table: Table {
                catalog: spec.table.catalog.clone(),
                schema: spec.table.schema.clone(),
                name: spec.table.name.clone(),
            },
            filter: spec.filter.clone(),
            partition: spec.partition.as_ref().map(Partition::from_spec),
            columns: Columns {
                column: spec.columns.iter().map(Column::from_spec).collect(),
            },
            left_out: (!spec.left_out.is_empty()).then(|| Columns {
                column: spec.left_out.iter().map(Column::from_spec).collect(),
            }),
            key: spec.key.as_ref().map(|k| Key {
                columns: k
                    .columns
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            }),
            extract: Stage::from_status(&status.extract),
            upload: status.upload.as_ref().map(Stage::from_status),
            copy: status.copy.as_ref().map(Stage::from_status),
            error: status.error.clone(),
        }
    }
}

impl Partition {
    fn from_spec(p: &PartitionSpec) -> Partition {
        let mut partition = Partition {
            name: p.name.clone(),
            column: p.column.clone(),
            bound: String::new(),
            low: None,
            high: None,
            value: None,
            listed: Vec::new(),
            predicate: p.predicate.clone(),
        };
        partition.bound = match &p.bound {
            PartitionBound::Below(high) => {
                partition.high = Some(high.clone());
                "below"
            }
            PartitionBound::Between(low, high) => {
                partition.low = Some(low.clone());
                partition.high = Some(high.clone());
                "between"
            }
            PartitionBound::From(low) => {
                partition.low = Some(low.clone());
                "from"
            }
            PartitionBound::NotNull => "not-null",
            PartitionBound::IsNull => "is-null",
            PartitionBound::Equals(value) => {
                partition.value = Some(value.clone());
                "equals"
            }
            PartitionBound::Other(listed) => {
                partition.listed = listed.clone();
                "other"
            }
        }
        .to_string();
        partition
    }
}

impl Column {
    fn from_spec(c: &ColumnSpec) -> Column {
        let (fetch, max_bytes) = match c.fetch {
            FetchKind::Text { max_bytes } => ("text", Some(max_bytes)),
            FetchKind::Binary { max_bytes } => ("binary", Some(max_bytes)),
            FetchKind::LongText => ("long-text", None),
            FetchKind::LongBinary => ("long-binary", None),
            FetchKind::Float64 => ("float64", None),
            FetchKind::Float32 => ("float32", None),
        };
        Column {
            name: c.name.clone(),
            source_type: c.source_type.clone(),
            sql_type: c.sql_type,
            size: c.size,
            scale: c.scale,
            nullable: c.nullable,
            fetch: fetch.to_string(),
            max_bytes,
        }
    }
}

impl Stage {
    fn from_status(s: &StageStatus) -> Stage {
        Stage {
            state: s.state.as_str().to_string(),
            rows: s.rows,
            bytes: s.bytes,
        }
    }
}

/// Where a job holds a password inline, and the setting it belongs in: an export never
/// writes one, and an import never takes one (secrets come with the import request).
pub fn inline_password(job: &crate::config::Job) -> Option<(&'static str, &'static str)> {
    if crate::source::holds_password(&job.connection) {
        return Some(("connection string", "source.password_env"));
    }
    if let Some(w) = &job.warehouse
        && w.display_url() != w.url
    {
        return Some(("warehouse URL", "warehouse.password_env"));
    }
    None
}

// ---- back into the store ----

fn state(text: &str, at: &str) -> Result<State, ImportError> {
    [
        State::Pending,
        State::Running,
        State::Completed,
        State::Failed,
        State::Stopped,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
    .ok_or_else(|| {
        ImportError(format!(
            "{at}: `{text}` is not a state (Pending, Running, Completed, Failed, Stopped)"
        ))
    })
}

fn mode(text: &str) -> Result<crate::model::MigrationMode, ImportError> {
    use crate::model::MigrationMode;
    [
        MigrationMode::Extract,
        MigrationMode::ExtractUpload,
        MigrationMode::ExtractUploadCopy,
    ]
    .into_iter()
    .find(|m| m.as_str() == text)
    .ok_or_else(|| {
        ImportError(format!(
            "<settings mode=\"{text}\">: not a mode (extract, extract-upload, extract-upload-copy)"
        ))
    })
}

impl ExportedTask {
    /// Every value checked, with the element it came from.
    pub fn validate(&self) -> Result<(), ImportError> {
        if self.format != FORMAT {
            return Err(ImportError(format!(
                "<dbhaul-task format=\"{}\">: this dbhaul reads format {FORMAT}; export the \
                 task again with this version or import it with dbhaul {}",
                self.format, self.dbhaul_version
            )));
        }
        TaskName::parse(&self.name).map_err(|e| ImportError(format!("<name>: {e}")))?;
        if self.id.trim().is_empty() {
            return Err(ImportError("<id> is empty: every task has an id".into()));
        }
        mode(&self.settings.mode)?;
        LogLevel::parse(&self.settings.log_level).ok_or_else(|| {
            ImportError(format!(
                "<settings log-level=\"{}\">: not a level (ERROR, WARNING, INFO, DEBUG, TRACE)",
                self.settings.log_level
            ))
        })?;
        state(&self.progress.state, "<progress state>")?;
        for file in self.files.iter().flat_map(|f| &f.file) {
            check_file_name(&file.name).map_err(|e| {
                ImportError(format!("<file name=\"{}\">: {e}", file.name.escape_debug()))
            })?;
        }
        let mut ids = std::collections::BTreeSet::new();
        for s in &self.subtasks.subtask {
            let at = format!("<subtask id=\"{}\">", s.id);
            s.to_record(&at)?;
            if !ids.insert(s.id.as_str()) {
                return Err(ImportError(format!("{at} appears twice")));
            }
        }
        if self.subtasks.subtask.is_empty() {
            return Err(ImportError(
                "<subtasks> is empty: a task has at least one subtask".into(),
            ));
        }
        Ok(())
    }

    /// The task as the controller stores it, with the secrets the job needs.
    pub fn to_record(
        &self,
        secrets: std::collections::BTreeMap<String, String>,
    ) -> Result<TaskRecord, ImportError> {
        let subtasks = self
            .subtasks
            .subtask
            .iter()
            .map(|s| s.to_record(&format!("<subtask id=\"{}\">", s.id)))
            .collect::<Result<Vec<_>, _>>()?;
        let log_level = if self.settings.log_level_changed {
            LogLevel::parse(&self.settings.log_level)
        } else {
            None
        };
        let definition = crate::config::TaskDefinition {
            name: self.name.clone(),
            id: self.id.clone(),
            job: self.job.clone(),
            secrets,
            files: self
                .files
                .iter()
                .flat_map(|f| &f.file)
                .map(|f| (f.name.clone(), f.text.clone()))
                .collect(),
        };
        // Parsed once, here: the job as the controller keeps it.
        let definition = definition
            .parse(None)
            .map_err(|e| ImportError(format!("<job>: {e}")))?;
        Ok(TaskRecord {
            definition,
            description: self.description.clone(),
            mode: self.settings.mode.clone(),
            agents: self.agents.as_ref().map(|a| a.agent.clone()),
            created_at: self.created_at.clone(),
            // Whatever the file says, an import dispatches nothing: the task is created
            // stopped, and `tasks start` or `tasks resume` runs it.
            started: false,
            subtasks,
            log_level,
            // Decided again when the imported task starts.
            handoff: false,
        })
    }

    /// The environment variables the job's `password_env` settings name.
    pub fn secret_names(&self) -> Vec<String> {
        self.settings
            .secrets
            .as_ref()
            .map(|s| s.secret.iter().map(|n| n.env.clone()).collect())
            .unwrap_or_default()
    }
}

impl Subtask {
    fn to_record(&self, at: &str) -> Result<SubtaskRecord, ImportError> {
        let column = |c: &Column, i: usize| -> Result<ColumnSpec, ImportError> {
            let need_bytes = || {
                c.max_bytes.ok_or_else(|| {
                    ImportError(format!(
                        "{at} column {} (#{i}): fetch=\"{}\" needs max-bytes",
                        c.name, c.fetch
                    ))
                })
            };
            let fetch = match c.fetch.as_str() {
                "text" => FetchKind::Text {
                    max_bytes: need_bytes()?,
                },
                "binary" => FetchKind::Binary {
                    max_bytes: need_bytes()?,
                },
                "long-text" => FetchKind::LongText,
                "long-binary" => FetchKind::LongBinary,
                "float64" => FetchKind::Float64,
                "float32" => FetchKind::Float32,
                other => {
                    return Err(ImportError(format!(
                        "{at} column {}: fetch=\"{other}\" is not one of text, binary, \
                         long-text, long-binary, float64, float32",
                        c.name
                    )));
                }
            };
            Ok(ColumnSpec {
                name: c.name.clone(),
                source_type: c.source_type.clone(),
                sql_type: c.sql_type,
                size: c.size,
                scale: c.scale,
                nullable: c.nullable,
                fetch,
            })
        };
        let columns = self
            .columns
            .column
            .iter()
            .enumerate()
            .map(|(i, c)| column(c, i))
            .collect::<Result<Vec<_>, _>>()?;
        if columns.is_empty() {
            return Err(ImportError(format!("{at} <columns> is empty")));
        }
        let left_out = match &self.left_out {
            Some(l) => l
                .column
                .iter()
                .enumerate()
                .map(|(i, c)| column(c, i))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let key = match &self.key {
            Some(k) => {
                let positions = k
                    .columns
                    .split_whitespace()
                    .map(|p| p.parse::<usize>().ok().filter(|p| *p < columns.len()))
                    .collect::<Option<Vec<_>>>()
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| {
                        ImportError(format!(
                            "{at} <key columns=\"{}\">: give positions among the {} columns, \
                             space-separated",
                            k.columns,
                            columns.len()
                        ))
                    })?;
                Some(KeyKind { columns: positions })
            }
            None => None,
        };
        let partition = self.partition.as_ref().map(|p| p.to_spec(at)).transpose()?;
        let spec = SubtaskSpec {
            table: TableRef {
                catalog: self.table.catalog.clone(),
                schema: self.table.schema.clone(),
                name: self.table.name.clone(),
            },
            columns,
            left_out,
            filter: self.filter.clone(),
            partition,
            key,
            estimated_rows: self.estimated_rows,
            largest_lob_row: self.largest_lob_row,
        };
        spec.check_names()
            .map_err(|e| ImportError(format!("{at}: {e}")))?;
        if spec.id() != self.id {
            return Err(ImportError(format!(
                "{at}: its table and partition make the id `{}`",
                spec.id()
            )));
        }
        let stage = |s: &Stage, name: &str| -> Result<StageStatus, ImportError> {
            Ok(StageStatus {
                state: state(&s.state, &format!("{at} <{name} state>"))?,
                rows: s.rows,
                bytes: s.bytes,
            })
        };
        let status = SubtaskStatus {
            id: self.id.clone(),
            state: state(&self.state, &format!("{at} state"))?,
            agent: self.agent.clone(),
            copy_agent: None,
            extract: stage(&self.extract, "extract")?,
            upload: self
                .upload
                .as_ref()
                .map(|s| stage(s, "upload"))
                .transpose()?,
            copy: self.copy.as_ref().map(|s| stage(s, "copy")).transpose()?,
            chunks: self.chunks,
            attempts: self.attempts,
            error: self.error.clone(),
            started_at: self.started_at.clone(),
            finished_at: self.finished_at.clone(),
            estimated_rows: self.estimated_rows,
            task: None,
        };
        Ok(SubtaskRecord {
            spec,
            status,
            dispatched: self.dispatched,
            copy_leg: None,
        })
    }
}

impl Partition {
    fn to_spec(&self, at: &str) -> Result<PartitionSpec, ImportError> {
        let need = |v: &Option<String>, what: &str| {
            v.clone().ok_or_else(|| {
                ImportError(format!(
                    "{at} <partition bound=\"{}\">: needs {what}",
                    self.bound
                ))
            })
        };
        let bound = match self.bound.as_str() {
            "below" => PartitionBound::Below(need(&self.high, "high")?),
            "between" => {
                PartitionBound::Between(need(&self.low, "low")?, need(&self.high, "high")?)
            }
            "from" => PartitionBound::From(need(&self.low, "low")?),
            "not-null" => PartitionBound::NotNull,
            "is-null" => PartitionBound::IsNull,
            "equals" => PartitionBound::Equals(need(&self.value, "value")?),
            "other" => PartitionBound::Other(self.listed.clone()),
            other => {
                return Err(ImportError(format!(
                    "{at} <partition bound=\"{other}\">: not one of below, between, from, \
                     not-null, is-null, equals, other"
                )));
            }
        };
        // The predicate is never taken from the file: it is what the bounds make (the
        // agent builds it again from them, with its source's quoting). A file whose
        // predicate says otherwise was edited, and is refused rather than half-believed.
        let rebuilt =
            rebuilt_predicate(&self.predicate, &self.column, &bound).ok_or_else(|| {
                ImportError(format!(
                    "{at} <partition name=\"{}\"> <predicate>: `{}` is not what its column and \
                 bounds select (`{}`); predicates are rebuilt from the bounds, so edit \
                 bound, low, high or value instead, or export the task again",
                    self.name,
                    self.predicate,
                    bound.predicate(&quoted('"', &self.column)),
                ))
            })?;
        Ok(PartitionSpec {
            name: self.name.clone(),
            predicate: rebuilt,
            column: self.column.clone(),
            bound,
        })
    }
}

/// `column` quoted with `quote`, inner quotes doubled (as `Source::quote_ident` does).
fn quoted(quote: char, column: &str) -> String {
    let mut text = String::with_capacity(column.len() + 2);
    text.push(quote);
    for c in column.chars() {
        if c == quote {
            text.push(quote);
        }
        text.push(c);
    }
    text.push(quote);
    text
}

/// The predicate `bound` makes over `column`, if `stated` is it under some source's
/// identifier quote (`"` for most, `` ` `` for MariaDB and MySQL): the quote is not in the
/// file, so each the stated text could use is tried.
fn rebuilt_predicate(stated: &str, column: &str, bound: &PartitionBound) -> Option<String> {
    let first = stated.trim_start_matches('(').chars().next();
    ['"', '`']
        .into_iter()
        .chain(first)
        .map(|quote| bound.predicate(&quoted(quote, column)))
        .find(|rebuilt| rebuilt == stated)
}

/// A file the job names (`boundaries_file`): a relative path below the job's folder.
fn check_file_name(name: &str) -> Result<(), String> {
    if name.starts_with('/') {
        return Err("an absolute path; a job names its files relative to itself".into());
    }
    for part in name.split('/') {
        crate::model::names::check_component("a part of the file name", part)?;
    }
    Ok(())
}
