//! The job file (TOML): [`JobFile`] mirrors what users write, unknown keys rejected;
//! [`Job::parse`] validates it into a [`Job`] whose invariants hold by construction. Every
//! error names the file, the line and the field, and says what would be accepted.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::Secret;
use super::stages::{
    DEVICE_MAX_CHUNK_MB, TargetDevice, TargetSection, TargetSettings, WarehouseSection,
    WarehouseSettings,
};
use crate::model::chunk::BinaryFormat;
use crate::model::{Compression, LogLevel, MigrationMode, Sorting, TaskName};

/// Default size at which a chunk is closed, in MB of compressed output.
pub const DEFAULT_CHUNK_MB: u64 = 64;
/// Default gzip level: level 3 compresses at ~146 MB/s per core with zlib-rs (measured on a
/// 2-core machine of the project's CI kind).
pub const DEFAULT_GZIP_LEVEL: u32 = 3;
/// Most partitions one `ranges` partitioning may ask for.
pub const MAX_RANGES: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    task: TaskSection,
    source: SourceSection,
    #[serde(default)]
    tables: Vec<TableSection>,
    #[serde(default)]
    rules: Vec<RuleSection>,
    #[serde(default)]
    files: FilesSection,
    target: Option<Spanned<TargetSection>>,
    warehouse: Option<Spanned<WarehouseSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskSection {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default = "default_mode")]
    mode: MigrationMode,
    #[serde(default = "default_true")]
    extract_lobs: bool,
    #[serde(default = "default_log_level")]
    log_level: LogLevel,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default = "default_retry_wait_s")]
    retry_wait_s: u32,
    #[serde(default = "default_sorting")]
    sorting: Sorting,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    connection: Spanned<String>,
    password_env: Option<Spanned<String>>,
    #[serde(default = "default_true")]
    native_copy: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSection {
    name: Spanned<String>,
    #[serde(rename = "where")]
    filter: Option<String>,
    partition: Option<Spanned<PartitionSection>>,
    #[serde(default)]
    lob_columns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionSection {
    column: String,
    ranges: Option<u32>,
    boundaries: Option<Vec<toml::Value>>,
    boundaries_file: Option<String>,
    values: Option<Vec<toml::Value>>,
    include_other_values: Option<bool>,
    date_auto_split: Option<DateSplitSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DateSplitSection {
    start: Option<toml::Value>,
    end: Option<toml::Value>,
    interval: DateInterval,
}

/// A migration rule: a row filter for every table whose schema and name match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSection {
    name: Spanned<String>,
    #[serde(default = "default_any")]
    schema: String,
    #[serde(default = "default_any")]
    table: String,
    #[serde(rename = "where")]
    filter: Spanned<String>,
    #[serde(default = "default_true")]
    enabled: bool,
}

fn default_any() -> String {
    "%".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesSection {
    #[serde(default = "default_chunk_mb")]
    chunk_mb: Spanned<u64>,
    #[serde(default = "default_compression")]
    compression: Compression,
    #[serde(default = "default_gzip_level")]
    gzip_level: Spanned<u32>,
    #[serde(default = "default_delimiter")]
    delimiter: Spanned<String>,
    #[serde(default = "default_null_string")]
    null_string: Spanned<String>,
    #[serde(default)]
    rtrim: bool,
    #[serde(default = "default_binary_format")]
    binary_format: BinaryFormat,
    #[serde(default)]
    keep_local: bool,
    #[serde(default = "default_true")]
    keep_uploaded: bool,
    encryption_key_env: Option<Spanned<String>>,
    #[serde(default = "default_off")]
    lob_objects: Spanned<bool>,
    #[serde(default = "default_lob_objects_over")]
    lob_objects_over: Spanned<u64>,
}

impl Default for FilesSection {
    fn default() -> FilesSection {
        FilesSection {
            chunk_mb: default_chunk_mb(),
            compression: default_compression(),
            gzip_level: default_gzip_level(),
            delimiter: default_delimiter(),
            null_string: default_null_string(),
            rtrim: false,
            binary_format: default_binary_format(),
            keep_local: false,
            keep_uploaded: true,
            encryption_key_env: None,
            lob_objects: default_off(),
            lob_objects_over: default_lob_objects_over(),
        }
    }
}

fn default_mode() -> MigrationMode {
    MigrationMode::Extract
}
fn default_true() -> bool {
    true
}
fn default_log_level() -> LogLevel {
    LogLevel::Info
}

/// A subtask that failed on a lost connection runs again this many times by itself.
pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_RETRY_WAIT_S: u32 = 30;

fn default_sorting() -> Sorting {
    Sorting::AfterFirstFailure
}

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

fn default_retry_wait_s() -> u32 {
    DEFAULT_RETRY_WAIT_S
}
/// Redshift's longest `VARCHAR`, in bytes: LOB values above it go to their own objects.
pub const DEFAULT_LOB_OBJECTS_OVER: u64 = 65_535;
/// The largest `lob_objects_over`: a value is held in memory up to this size before it is
/// known to go to its own object.
pub const MAX_LOB_OBJECTS_OVER: u64 = 16 * 1024 * 1024;

fn default_off() -> Spanned<bool> {
    Spanned::new(0..0, false)
}
fn default_lob_objects_over() -> Spanned<u64> {
    Spanned::new(0..0, DEFAULT_LOB_OBJECTS_OVER)
}
fn default_chunk_mb() -> Spanned<u64> {
    Spanned::new(0..0, DEFAULT_CHUNK_MB)
}
fn default_compression() -> Compression {
    Compression::Gzip
}
fn default_gzip_level() -> Spanned<u32> {
    Spanned::new(0..0, DEFAULT_GZIP_LEVEL)
}
fn default_binary_format() -> BinaryFormat {
    BinaryFormat::ByteaHex
}
fn default_null_string() -> Spanned<String> {
    Spanned::new(0..0, String::new())
}
fn default_delimiter() -> Spanned<String> {
    Spanned::new(0..0, ",".to_string())
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: TaskName,
    pub description: String,
    pub mode: MigrationMode,
    pub extract_lobs: bool,
    pub log_level: LogLevel,
    /// Runs again of a subtask that failed on a lost connection (source, warehouse), each
    /// after `retry_wait` (doubling), before it fails for good.
    pub retries: u32,
    pub retry_wait: std::time::Duration,
    /// Whether subtasks read in key order, and so resume after their last durable chunk.
    pub sorting: Sorting,
    /// The ODBC connection string as written (it may hold a password: never print it
    /// without [`crate::source::redact`]).
    pub connection: String,
    pub password: Option<Secret>,
    /// PostgreSQL sources: read with the server's own COPY where it writes the same bytes
    /// as the ODBC path (see `source::pg_copy`).
    pub native_copy: bool,
    pub tables: Vec<TableRequest>,
    /// `[[rules]]`, in file order, disabled ones included.
    pub rules: Vec<Rule>,
    pub files: FileSettings,
    /// Where chunks are uploaded: set when the mode uploads.
    pub target: Option<TargetSettings>,
    /// Where chunks are copied: set when the mode copies.
    pub warehouse: Option<WarehouseSettings>,
}

/// One `[[tables]]` entry.
#[derive(Debug, Clone)]
pub struct TableRequest {
    /// `schema.table`, or `table`; or a pattern (see [`TableRequest::is_pattern`]).
    pub name: String,
    pub filter: Option<String>,
    pub partition: Option<PartitionRequest>,
    /// Columns taken as large objects although their type is a string (`text`, `TEXT`):
    /// left out with `extract_lobs = false`.
    pub lob_columns: Vec<String>,
}

impl TableRequest {
    /// A name with `%` or `*` chooses every table it matches, as SQL LIKE does (`*` is
    /// `%`, `_` is any one character, `\` escapes): `sales.*`, `sales.order%`.
    pub fn is_pattern(&self) -> bool {
        self.name.contains(['%', '*'])
    }
}

/// A named row filter for every table whose schema and name match its LIKE patterns.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub schema: String,
    pub table: String,
    pub filter: String,
    /// A disabled rule stays in the file and applies to nothing.
    pub enabled: bool,
}

impl Rule {
    /// Whether the rule applies to a table of this schema (MariaDB: its database; SQLite:
    /// `main`) and name.
    pub fn applies_to(&self, schema: &str, table: &str) -> bool {
        self.enabled && like(&self.schema, schema) && like(&self.table, table)
    }
}

/// SQL LIKE, case-insensitive as identifiers are to most users: `%` (or `*`) any run of
/// characters, `_` any one, `\` takes the next character as itself.
pub fn like(pattern: &str, text: &str) -> bool {
    fn matches(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%' | '*', rest)) => (0..=t.len()).any(|i| matches(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && matches(rest, &t[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                t.first() == Some(&rest[0]) && matches(&rest[1..], &t[1..])
            }
            Some((c, rest)) => t.first() == Some(c) && matches(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    matches(&p, &t)
}

/// The step of `date_auto_split`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateInterval {
    Day,
    Week,
    Month,
    Year,
}

impl DateInterval {
    pub fn as_str(self) -> &'static str {
        match self {
            DateInterval::Day => "day",
            DateInterval::Week => "week",
            DateInterval::Month => "month",
            DateInterval::Year => "year",
        }
    }
}

/// Virtual partitioning of one table. Every kind but `Values` without other values
/// covers every row exactly once: below the first boundary, above the last and NULL each
/// have a partition.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionRequest {
    /// `count` ranges of equal width over min..max of a numeric, date or timestamp column,
    /// plus one partition for NULLs.
    Ranges { column: String, count: u32 },
    /// Ranges between the given boundaries (ascending), from the job file or a CSV file.
    Boundaries {
        column: String,
        values: Vec<SqlLiteral>,
    },
    /// One partition per value; with `include_other`, one more for every other value and
    /// NULL; without, those rows are not extracted.
    Values {
        column: String,
        values: Vec<SqlLiteral>,
        include_other: bool,
    },
    /// `>= a AND < b` ranges one interval wide from `start` (the column's min when not
    /// given) to `end` (its max).
    DateSplit {
        column: String,
        start: Option<chrono::NaiveDate>,
        end: Option<chrono::NaiveDate>,
        interval: DateInterval,
    },
}

impl PartitionRequest {
    pub fn column(&self) -> &str {
        match self {
            PartitionRequest::Ranges { column, .. }
            | PartitionRequest::Boundaries { column, .. }
            | PartitionRequest::Values { column, .. }
            | PartitionRequest::DateSplit { column, .. } => column,
        }
    }
}

/// A literal value from the job file, rendered into SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlLiteral {
    Text(String),
    Integer(i64),
    Float(f64),
}

impl SqlLiteral {
    /// The value as an SQL literal: strings quoted with doubled single quotes.
    pub fn to_sql(&self) -> String {
        match self {
            SqlLiteral::Text(s) => format!("'{}'", s.replace('\'', "''")),
            SqlLiteral::Integer(i) => i.to_string(),
            SqlLiteral::Float(f) => format!("{f:?}"),
        }
    }
}

/// How chunk files are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSettings {
    /// Close a chunk at the first row boundary after this many compressed bytes.
    pub chunk_bytes: u64,
    pub compression: Compression,
    pub gzip_level: u32,
    pub delimiter: u8,
    pub null_string: String,
    pub rtrim: bool,
    pub binary_format: BinaryFormat,
    /// Keep local chunk files once they are uploaded.
    pub keep_local: bool,
    /// Keep uploaded objects once they are copied into the warehouse.
    pub keep_uploaded: bool,
    /// Encrypt every chunk file with this key (`files.encryption_key_env`): see
    /// `destination::encrypt`.
    pub encryption_key: Option<super::TaskKey>,
    /// `files.lob_objects`: a LOB value above this many bytes is written to its own object
    /// under the subtask's `lobs/` folder, and its column holds the object's URL.
    pub lob_objects_over: Option<u64>,
}

impl Default for FileSettings {
    fn default() -> FileSettings {
        FileSettings {
            chunk_bytes: DEFAULT_CHUNK_MB * 1024 * 1024,
            compression: Compression::Gzip,
            gzip_level: DEFAULT_GZIP_LEVEL,
            delimiter: b',',
            null_string: String::new(),
            rtrim: false,
            binary_format: BinaryFormat::ByteaHex,
            keep_local: false,
            keep_uploaded: true,
            encryption_key: None,
            lob_objects_over: None,
        }
    }
}

/// A job file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", location(.line, .column))]
pub struct JobError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

fn location(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

impl Job {
    /// Read and validate a job file.
    pub fn load(path: &Path) -> Result<Job, JobError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| JobError {
            file: file.clone(),
            line: None,
            column: None,
            message: format!("cannot read the job file: {e}"),
        })?;
        Job::parse(&file, &text, |name| std::env::var(name).ok())
    }

    /// Validate job file text. `env` looks up environment variables (a parameter, so tests
    /// need not touch the process environment); files the job names (`boundaries_file`)
    /// are read relative to the job file's folder.
    pub fn parse(
        file: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Job, JobError> {
        let folder = Path::new(file).parent().map(Path::to_path_buf);
        Job::parse_with(file, text, env, |name| {
            let path = folder.as_deref().unwrap_or(Path::new("")).join(name);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        })
    }

    /// [`Job::parse`] with the files it names read by `read` (a task on the controller
    /// carries them: see `api::wire::TaskDefinition`).
    pub fn parse_with(
        file: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
        read: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Job, JobError> {
        Job::parse_as(file, text, env, read, None)
    }

    /// [`Job::parse_with`], run in `mode` rather than the file's own: an agent that runs
    /// only the extract and upload stages of a task whose copy another agent does parses it
    /// as `extract-upload`, so it needs no warehouse settings or password.
    pub fn parse_as(
        file: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
        read: impl Fn(&str) -> Result<String, String>,
        mode: Option<MigrationMode>,
    ) -> Result<Job, JobError> {
        let at = At { file, text };
        let raw: JobFile = toml::from_str(text)
            .map_err(|e| at.err(e.span(), e.message().trim_end().replace('\n', " ")))?;

        let name = TaskName::parse(raw.task.name.get_ref())
            .map_err(|m| at.err(Some(raw.task.name.span()), format!("task.name: {m}")))?;
        let (connection, password) = source_settings(&raw.source, &env, &at)?;
        let tables = table_requests(raw.tables, &read, &at)?;
        let rules = rules(raw.rules, &at)?;
        let mode = mode.unwrap_or(raw.task.mode);
        let files = file_settings(&raw.files, mode, &env, &at)?;
        let target = target_settings(raw.target, &raw.files, mode, &at)?;
        let warehouse = warehouse_settings(raw.warehouse, &raw.files, &files, mode, &env, &at)?;

        Ok(Job {
            name,
            description: raw.task.description,
            mode,
            extract_lobs: raw.task.extract_lobs,
            log_level: raw.task.log_level,
            retries: raw.task.retries.min(100),
            retry_wait: std::time::Duration::from_secs(u64::from(raw.task.retry_wait_s.max(1))),
            sorting: raw.task.sorting,
            connection,
            password,
            native_copy: raw.source.native_copy,
            tables,
            rules,
            files,
            target,
            warehouse,
        })
    }
}

/// Where a job file's errors point: the file's name and text, for line and column.
struct At<'a> {
    file: &'a str,
    text: &'a str,
}

impl At<'_> {
    /// An error at `span` of the file (none, or an empty one: the file as a whole).
    fn err(&self, span: Option<Range<usize>>, message: String) -> JobError {
        let (line, column) = match span {
            Some(span) if span != (0..0) => {
                let (l, c) = line_col(self.text, span.start);
                (Some(l), Some(c))
            }
            _ => (None, None),
        };
        JobError {
            file: self.file.to_string(),
            line,
            column,
            message,
        }
    }
}

/// `[source]`: the connection string and the password its `password_env` names.
fn source_settings(
    source: &SourceSection,
    env: &impl Fn(&str) -> Option<String>,
    at: &At<'_>,
) -> Result<(String, Option<Secret>), JobError> {
    let connection = source.connection.get_ref().trim().to_string();
    if connection.is_empty() {
        return Err(at.err(
            Some(source.connection.span()),
            "source.connection is empty; give an ODBC connection string such as \
             \"Driver={PostgreSQL Unicode};Server=db;Port=5432;Database=erp;Uid=etl;\""
                .into(),
        ));
    }
    let password = match &source.password_env {
        None => None,
        Some(var) => match env(var.get_ref()) {
            Some(value) => Some(Secret::new(value)),
            None => {
                return Err(at.err(
                    Some(var.span()),
                    format!(
                        "source.password_env names `{}`, which is not set; export it \
                         with the source password before running",
                        var.get_ref()
                    ),
                ));
            }
        },
    };
    Ok((connection, password))
}

/// `[[tables]]`: at least one, each named once, with its partition, filter and LOB columns.
fn table_requests(
    raw: Vec<TableSection>,
    read: &impl Fn(&str) -> Result<String, String>,
    at: &At<'_>,
) -> Result<Vec<TableRequest>, JobError> {
    if raw.is_empty() {
        return Err(at.err(
            None,
            "no [[tables]]: add at least one, e.g. [[tables]] name = \"public.orders\"; \
             `dbhaul tables --source ...` lists what the source has"
                .into(),
        ));
    }
    let mut tables = Vec::with_capacity(raw.len());
    for table in raw {
        let table_name = table.name.get_ref().trim().to_string();
        if table_name.is_empty() {
            return Err(at.err(Some(table.name.span()), "tables.name is empty".into()));
        }
        if tables.iter().any(|t: &TableRequest| t.name == table_name) {
            return Err(at.err(
                Some(table.name.span()),
                format!("table `{table_name}` is listed twice"),
            ));
        }
        let partition = match table.partition {
            None => None,
            Some(p) => {
                let span = p.span();
                Some(partition_request(p.into_inner(), read).map_err(|m| {
                    at.err(
                        Some(span),
                        format!("tables.partition of `{table_name}`: {m}"),
                    )
                })?)
            }
        };
        let filter = table
            .filter
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty());
        let lob_columns: Vec<String> = table
            .lob_columns
            .iter()
            .map(|c| c.trim().to_string())
            .collect();
        if lob_columns.iter().any(String::is_empty) {
            return Err(at.err(
                Some(table.name.span()),
                format!("tables.lob_columns of `{table_name}` holds an empty column name"),
            ));
        }
        tables.push(TableRequest {
            name: table_name,
            filter,
            partition,
            lob_columns,
        });
    }
    Ok(tables)
}

/// `[[rules]]`: each named once, with a predicate and non-empty patterns.
fn rules(raw: Vec<RuleSection>, at: &At<'_>) -> Result<Vec<Rule>, JobError> {
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.len());
    for rule in raw {
        let name = rule.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(at.err(Some(rule.name.span()), "rules.name is empty".into()));
        }
        if rules.iter().any(|r| r.name == name) {
            return Err(at.err(
                Some(rule.name.span()),
                format!("rule `{name}` is defined twice"),
            ));
        }
        let filter = rule.filter.get_ref().trim().to_string();
        if filter.is_empty() {
            return Err(at.err(
                Some(rule.filter.span()),
                format!(
                    "rule `{name}`: where is empty; give a predicate such as \"created >= '2020-01-01'\""
                ),
            ));
        }
        let (schema, table) = (rule.schema.trim(), rule.table.trim());
        if schema.is_empty() || table.is_empty() {
            return Err(at.err(
                Some(rule.name.span()),
                format!(
                    "rule `{name}`: an empty schema or table pattern matches nothing; \
                     leave it out to match every one (\"%\")"
                ),
            ));
        }
        rules.push(Rule {
            name,
            schema: schema.to_string(),
            table: table.to_string(),
            filter,
            enabled: rule.enabled,
        });
    }
    Ok(rules)
}

/// `[files]`: chunk size, compression, CSV format, encryption and LOB objects, in `mode`.
fn file_settings(
    files: &FilesSection,
    mode: MigrationMode,
    env: &impl Fn(&str) -> Option<String>,
    at: &At<'_>,
) -> Result<FileSettings, JobError> {
    let chunk_mb = *files.chunk_mb.get_ref();
    if !(1..=4096).contains(&chunk_mb) {
        return Err(at.err(
            Some(files.chunk_mb.span()),
            format!("files.chunk_mb = {chunk_mb}: must be 1 to 4096 (MB of compressed output)"),
        ));
    }
    let gzip_level = *files.gzip_level.get_ref();
    if !(1..=9).contains(&gzip_level) {
        return Err(at.err(
            Some(files.gzip_level.span()),
            format!("files.gzip_level = {gzip_level}: must be 1 (fastest) to 9 (smallest)"),
        ));
    }
    let delimiter = parse_delimiter(files.delimiter.get_ref()).map_err(|m| {
        at.err(
            Some(files.delimiter.span()),
            format!("files.delimiter: {m}"),
        )
    })?;
    let null_string = files.null_string.get_ref().clone();
    if null_string
        .bytes()
        .any(|b| b == delimiter || b == b'"' || b == b'\r' || b == b'\n')
    {
        return Err(at.err(
            Some(files.null_string.span()),
            "files.null_string must not contain the delimiter, a double quote, CR or LF".into(),
        ));
    }

    let encryption_key = match &files.encryption_key_env {
        None => None,
        Some(var) => {
            let value = env(var.get_ref()).ok_or_else(|| {
                at.err(
                    Some(var.span()),
                    format!(
                        "files.encryption_key_env names `{}`, which is not set; export it \
                         with the chunk key (`openssl rand -hex 32` makes one; keep it: \
                         the chunks cannot be read without it)",
                        var.get_ref()
                    ),
                )
            })?;
            Some(
                super::TaskKey::from_secret(&Secret::new(value))
                    .map_err(|m| at.err(Some(var.span()), format!("`{}` {m}", var.get_ref())))?,
            )
        }
    };

    let lob_objects_over = match (
        *files.lob_objects.get_ref(),
        *files.lob_objects_over.get_ref(),
    ) {
        (false, _) => None,
        (true, over) if !(1..=MAX_LOB_OBJECTS_OVER).contains(&over) => {
            return Err(at.err(
                Some(files.lob_objects_over.span()),
                format!(
                    "files.lob_objects_over = {over}: must be 1 to {MAX_LOB_OBJECTS_OVER} \
                     bytes (a value is held in memory up to this size); the default, \
                     {DEFAULT_LOB_OBJECTS_OVER}, is Redshift's longest VARCHAR"
                ),
            ));
        }
        (true, _) if !mode.uploads() => {
            return Err(at.err(
                Some(files.lob_objects.span()),
                format!(
                    "files.lob_objects = true needs an upload mode: each large LOB value \
                     goes to its own S3 object and its column holds the object's URL; set \
                     task.mode = \"extract-upload\" or \"extract-upload-copy\" (it is \
                     \"{}\")",
                    mode.as_str()
                ),
            ));
        }
        (true, _) if files.encryption_key_env.is_some() => {
            return Err(at.err(
                Some(files.lob_objects.span()),
                "files.lob_objects = true with files.encryption_key_env: LOB objects are \
                 read by URL from the warehouse and are not encrypted by dbhaul; use \
                 target.server_side_encryption for them, or leave LOB values in the \
                 (encrypted) chunks with lob_objects = false"
                    .into(),
            ));
        }
        (true, over) => Some(over),
    };
    Ok(FileSettings {
        chunk_bytes: chunk_mb * 1024 * 1024,
        compression: files.compression,
        gzip_level,
        delimiter,
        null_string,
        rtrim: files.rtrim,
        binary_format: files.binary_format,
        keep_local: files.keep_local,
        keep_uploaded: files.keep_uploaded,
        encryption_key,
        lob_objects_over,
    })
}

/// `[target]`: required by the modes that upload, ignored by the others.
fn target_settings(
    raw: Option<Spanned<TargetSection>>,
    files: &FilesSection,
    mode: MigrationMode,
    at: &At<'_>,
) -> Result<Option<TargetSettings>, JobError> {
    match raw {
        Some(section) if mode.uploads() => {
            let section = section.into_inner();
            let chunk_mb = *files.chunk_mb.get_ref();
            if section.device() == TargetDevice::SnowballEdge && chunk_mb > DEVICE_MAX_CHUNK_MB {
                return Err(at.err(
                    Some(files.chunk_mb.span()),
                    format!(
                        "files.chunk_mb = {chunk_mb}: a Snowball Edge target \
                         (target.device = \"snowball-edge\") takes chunks of 1 to \
                         {DEVICE_MAX_CHUNK_MB} MB"
                    ),
                ));
            }
            Ok(Some(section.validate().map_err(|(s, m)| at.err(s, m))?))
        }
        None if mode.uploads() => Err(at.err(
            None,
            format!(
                "task.mode = \"{}\" uploads, but there is no [target]; add one with \
                 url = \"s3://bucket/prefix\" (and endpoint = \"https://...\" for an \
                 S3-compatible device)",
                mode.as_str()
            ),
        )),
        _ => Ok(None),
    }
}

/// `[warehouse]`: required by the mode that copies, ignored by the others; Redshift cannot
/// read chunks dbhaul encrypted.
fn warehouse_settings(
    raw: Option<Spanned<WarehouseSection>>,
    raw_files: &FilesSection,
    files: &FileSettings,
    mode: MigrationMode,
    env: &impl Fn(&str) -> Option<String>,
    at: &At<'_>,
) -> Result<Option<WarehouseSettings>, JobError> {
    let warehouse = match raw {
        Some(section) if mode.copies() => WarehouseSettings {
            lob_urls: files.lob_objects_over.is_some(),
            ..section
                .into_inner()
                .validate(env)
                .map_err(|(s, m)| at.err(s, m))?
        },
        None if mode.copies() => {
            return Err(at.err(
                None,
                "task.mode = \"extract-upload-copy\" copies, but there is no [warehouse]; \
                 add one with kind = \"postgres\" or \"redshift\" and url = \"postgresql://...\""
                    .into(),
            ));
        }
        _ => return Ok(None),
    };
    if let Some(var) = &raw_files.encryption_key_env
        && warehouse.kind == super::WarehouseKind::Redshift
    {
        return Err(at.err(
            Some(var.span()),
            "files.encryption_key_env: Redshift's COPY cannot read dbhaul's encrypted \
             chunks (its ENCRYPTED option reads only the S3 encryption client's envelope \
             format); for Redshift use target.server_side_encryption = \"aws:kms\", which \
             its COPY reads without being told"
                .into(),
        ));
    }
    Ok(Some(warehouse))
}

fn partition_request(
    p: PartitionSection,
    read: &impl Fn(&str) -> Result<String, String>,
) -> Result<PartitionRequest, String> {
    let column = p.column.trim().to_string();
    if column.is_empty() {
        return Err("column is empty".into());
    }
    if p.include_other_values.is_some() && p.values.is_none() {
        return Err("include_other_values goes with values = [...]".into());
    }
    let kinds = [
        p.ranges.is_some(),
        p.boundaries.is_some(),
        p.boundaries_file.is_some(),
        p.values.is_some(),
        p.date_auto_split.is_some(),
    ];
    match kinds.iter().filter(|k| **k).count() {
        1 => {}
        0 => {
            return Err(
                "give ranges = N (equal ranges over min..max), boundaries = [...] or \
                 boundaries_file = \"x.csv\" (ranges between given values), values = [...] \
                 (one partition per value) or date_auto_split = { interval = \"month\" }"
                    .into(),
            );
        }
        _ => {
            return Err(
                "give one of ranges, boundaries, boundaries_file, values and \
                        date_auto_split"
                    .into(),
            );
        }
    }
    if let Some(count) = p.ranges {
        if !(1..=MAX_RANGES).contains(&count) {
            return Err(format!("ranges = {count}: must be 1 to {MAX_RANGES}"));
        }
        return Ok(PartitionRequest::Ranges { column, count });
    }
    if let Some(values) = p.boundaries {
        let values = literals(values)?;
        if values.is_empty() {
            return Err("boundaries is empty; list at least one value".into());
        }
        check_count(values.len(), "boundaries")?;
        return Ok(PartitionRequest::Boundaries { column, values });
    }
    if let Some(file) = p.boundaries_file {
        let values = boundaries_csv(&read(&file)?).map_err(|m| format!("{file}: {m}"))?;
        if values.is_empty() {
            return Err(format!("{file} holds no boundary value"));
        }
        check_count(values.len(), &file)?;
        return Ok(PartitionRequest::Boundaries { column, values });
    }
    if let Some(values) = p.values {
        let values = literals(values)?;
        if values.is_empty() {
            return Err("values is empty; list at least one value".into());
        }
        check_count(values.len(), "values")?;
        return Ok(PartitionRequest::Values {
            column,
            values,
            include_other: p.include_other_values.unwrap_or(true),
        });
    }
    let split = p.date_auto_split.expect("one kind is given");
    let date = |v: Option<toml::Value>, which: &str| -> Result<Option<chrono::NaiveDate>, String> {
        let Some(v) = v else { return Ok(None) };
        let text = match &v {
            toml::Value::String(s) => s.trim().to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            other => other.to_string(),
        };
        chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| format!("date_auto_split.{which} = {v}: give a date, YYYY-MM-DD"))
    };
    let (start, end) = (date(split.start, "start")?, date(split.end, "end")?);
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        return Err(format!("date_auto_split: start {s} is not before end {e}"));
    }
    Ok(PartitionRequest::DateSplit {
        column,
        start,
        end,
        interval: split.interval,
    })
}

fn check_count(n: usize, what: &str) -> Result<(), String> {
    if n > MAX_RANGES as usize {
        return Err(format!(
            "{what}: {n} values make more than {MAX_RANGES} partitions; use fewer"
        ));
    }
    Ok(())
}

/// Values from the job file as SQL literals: strings, numbers and TOML dates.
fn literals(values: Vec<toml::Value>) -> Result<Vec<SqlLiteral>, String> {
    values
        .into_iter()
        .map(|v| match v {
            toml::Value::String(s) => Ok(SqlLiteral::Text(s)),
            toml::Value::Integer(i) => Ok(SqlLiteral::Integer(i)),
            toml::Value::Float(f) if f.is_finite() => Ok(SqlLiteral::Float(f)),
            toml::Value::Datetime(d) => Ok(SqlLiteral::Text(d.to_string())),
            other => Err(format!("value {other} is not a string, a number or a date")),
        })
        .collect()
}

/// Boundary values from CSV text: every field of every record, in order (one value per
/// line is the usual file; quotes as in RFC 4180). Empty fields are refused: a boundary
/// cannot be NULL, NULL has its own partition.
fn boundaries_csv(text: &str) -> Result<Vec<SqlLiteral>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut values = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("record {}: {e}", i + 1))?;
        for field in record.iter() {
            let field = field.trim();
            if field.is_empty() {
                return Err(format!(
                    "line {}: an empty value; a boundary cannot be NULL (NULLs have their own \
                     partition)",
                    record.position().map_or(i as u64 + 1, |p| p.line())
                ));
            }
            values.push(SqlLiteral::Text(field.to_string()));
        }
    }
    Ok(values)
}

fn parse_delimiter(raw: &str) -> Result<u8, String> {
    let bytes = raw.as_bytes();
    match bytes {
        [b] if (b.is_ascii_graphic() || *b == b' ' || *b == b'\t') && *b != b'"' => Ok(*b),
        [b'\\', b't'] => Ok(b'\t'),
        _ => Err(format!(
            "`{}` is not one printable ASCII character other than `\"` (tab is \"\\t\")",
            raw.escape_default()
        )),
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Job, JobError> {
        Job::parse("job.toml", text, |name| match name {
            "PW" => Some("s3cret".to_string()),
            "KEY" => Some("ab".repeat(32)),
            _ => None,
        })
    }

    const MINIMAL: &str = r#"
[task]
name = "orders"
[source]
connection = "Driver={SQLite3};Database=/tmp/x.db"
[[tables]]
name = "orders"
"#;

    #[test]
    fn minimal_job_takes_the_defaults() {
        let job = parse(MINIMAL).unwrap();
        assert_eq!(job.name.as_str(), "orders");
        assert_eq!(job.mode, MigrationMode::Extract);
        assert!(job.extract_lobs);
        assert_eq!(job.log_level, LogLevel::Info);
        assert_eq!(job.sorting, Sorting::AfterFirstFailure);
        assert_eq!(job.files, FileSettings::default());
        assert!(job.password.is_none());
    }

    #[test]
    fn bad_job_files_name_line_and_field() {
        let cases: &[(&str, &str)] = &[
            (
                "[task]\nname = \"a b\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n",
                "job.toml:2:8: task.name: task name `a b` contains ` `",
            ),
            (
                "[task]\nname = \"a\"\nmood = 1\n[source]\nconnection = \"x\"\n",
                "job.toml:3:1: unknown field `mood`",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[files]\nchunk_mb = 0\n",
                "job.toml:8:12: files.chunk_mb = 0: must be 1 to 4096",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[files]\ndelimiter = \"ab\"\n",
                "job.toml:8:13: files.delimiter: `ab` is not one printable ASCII character",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\npassword_env = \"NOPE\"\n[[tables]]\nname = \"t\"\n",
                "job.toml:5:16: source.password_env names `NOPE`, which is not set",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n",
                "job.toml: no [[tables]]",
            ),
            (
                "[task]\nname = \"a\"\nmode = \"teleport\"\n[source]\nconnection = \"x\"\n",
                "job.toml:3:8: unknown variant `teleport`, expected one of `extract`, `extract-upload`, `extract-upload-copy`",
            ),
            (
                "[task]\nname = \"a\"\nmode = \"extract-upload\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[files]\nchunk_mb = 2048\n[target]\nurl = \"s3://bkt/p\"\ndevice = \"snowball-edge\"\n",
                "job.toml:9:12: files.chunk_mb = 2048: a Snowball Edge target (target.device = \"snowball-edge\") takes chunks of 1 to 1000 MB",
            ),
            (
                "[task]\nname = \"a\"\nmode = \"extract-upload\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[target]\nurl = \"s3://bkt/p\"\ndevice = \"tape\"\n",
                "job.toml:10:10: unknown variant `tape`, expected `s3` or `snowball-edge`",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[files]\ncompression = \"lz4\"\n",
                "job.toml:8:15: unknown variant `lz4`, expected one of `gzip`, `zstd`, `bzip2`, `none`",
            ),
            (
                "[task]\nname = \"a\"\nsorting = \"sometimes\"\n[source]\nconnection = \"x\"\n",
                "job.toml:3:11: unknown variant `sometimes`, expected one of `never`, `if_possible`, `after_first_failure`",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\npartition = { column = \"id\" }\n",
                "job.toml:7:13: tables.partition of `t`: give ranges = N",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\npartition = { column = \"id\", ranges = 0 }\n",
                "job.toml:7:13: tables.partition of `t`: ranges = 0: must be 1 to 1000",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[[tables]]\nname = \"t\"\n",
                "job.toml:8:8: table `t` is listed twice",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\npartition = { column = \"id\", ranges = 2, values = [1] }\n",
                "job.toml:7:13: tables.partition of `t`: give one of ranges, boundaries, boundaries_file, values and date_auto_split",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\npartition = { column = \"id\", ranges = 2, include_other_values = false }\n",
                "job.toml:7:13: tables.partition of `t`: include_other_values goes with values = [...]",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\npartition = { column = \"id\", boundaries = [] }\n",
                "job.toml:7:13: tables.partition of `t`: boundaries is empty",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\npartition = { column = \"id\", boundaries = [true] }\n",
                "job.toml:7:13: tables.partition of `t`: value true is not a string, a number or a date",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\npartition = { column = \"id\", boundaries_file = \"nope.csv\" }\n",
                "job.toml:7:13: tables.partition of `t`: cannot read nope.csv",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\npartition = { column = \"d\", date_auto_split = { start = 2024-02-01, end = \"2024-01-01\", interval = \"month\" } }\n",
                "job.toml:7:13: tables.partition of `t`: date_auto_split: start 2024-02-01 is not before end 2024-01-01",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\npartition = { column = \"d\", date_auto_split = { start = \"Jan 1\", interval = \"month\" } }\n",
                "job.toml:7:13: tables.partition of `t`: date_auto_split.start = \"Jan 1\": give a date, YYYY-MM-DD",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\npartition = { column = \"d\", date_auto_split = { interval = \"fortnight\" } }\n",
                "job.toml:7:",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[[rules]]\nname = \"r\"\nwhere = \" \"\n",
                "job.toml:9:9: rule `r`: where is empty",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[[rules]]\nname = \"r\"\nwhere = \"a = 1\"\n[[rules]]\nname = \"r\"\nwhere = \"b = 1\"\n",
                "job.toml:11:8: rule `r` is defined twice",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[[rules]]\nname = \"r\"\ntable = \"\"\nwhere = \"a = 1\"\n",
                "job.toml:8:8: rule `r`: an empty schema or table pattern matches nothing",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[[rules]]\nname = \"r\"\n",
                "job.toml:7:1: missing field `where`",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[files]\nlob_objects = true\n",
                "job.toml:8:15: files.lob_objects = true needs an upload mode",
            ),
            (
                "[task]\nname = \"a\"\nmode = \"extract-upload\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[files]\nlob_objects = true\nlob_objects_over = 0\n[target]\nurl = \"s3://bkt/p\"\n",
                "job.toml:10:20: files.lob_objects_over = 0: must be 1 to 16777216 bytes",
            ),
            (
                "[task]\nname = \"a\"\nmode = \"extract-upload\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[files]\nlob_objects = true\nencryption_key_env = \"KEY\"\n[target]\nurl = \"s3://bkt/p\"\n",
                "job.toml:9:15: files.lob_objects = true with files.encryption_key_env: LOB objects",
            ),
            (
                "[task]\nname = \"a\"\nmode = \"extract-upload\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[target]\nurl = \"s3://bkt/p\"\nkms_key_id = \"k\"\n",
                "job.toml:10:14: target.kms_key_id goes with server_side_encryption = \"aws:kms\"",
            ),
            (
                "[task]\nname = \"a\"\nmode = \"extract-upload\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[target]\nurl = \"s3://bkt/p\"\nserver_side_encryption = \"rot13\"\n",
                "job.toml:10:26: unknown variant `rot13`, expected one of `none`, `aes256`, `aws:kms`",
            ),
            (
                "[task]\nname = \"a\"\nmode = \"extract-upload\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[target]\nurl = \"s3://bkt/p\"\nproxy = \"proxy:3128\"\n",
                "job.toml:10:9: target.proxy = \"proxy:3128\" is not an http:// or https:// URL",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[files]\nencryption_key_env = \"NOPE\"\n",
                "job.toml:8:22: files.encryption_key_env names `NOPE`, which is not set",
            ),
            (
                "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[files]\nencryption_key_env = \"PW\"\n",
                "job.toml:8:22: `PW` is not a key: give 64 hex digits (32 random bytes), such as `openssl rand -hex 32` prints (it has 6 characters)",
            ),
            (
                "[task]\nname = \"a\"\nmode = \"extract-upload-copy\"\n[source]\nconnection = \"x\"\n[[tables]]\nname = \"t\"\n[files]\nencryption_key_env = \"KEY\"\n[target]\nurl = \"s3://bkt/p\"\n[warehouse]\nkind = \"redshift\"\nurl = \"postgresql://u@h/db\"\niam_role = \"arn:aws:iam::1:role/r\"\n",
                "job.toml:9:22: files.encryption_key_env: Redshift's COPY cannot read dbhaul's encrypted chunks",
            ),
            ("[task\nname = \"a\"\n", "job.toml:1:6: unclosed table"),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(
                message.starts_with(expected),
                "\n got: {message}\nwant: {expected}"
            );
        }
    }

    /// `[warehouse.copy]`: Redshift takes every option by its name; PostgreSQL takes
    /// `emptyasnull` and refuses the rest, naming why; bad values are refused.
    #[test]
    fn copy_options_pass_to_redshift_and_postgres_refuses_what_it_has_not() {
        let job = |kind: &str, copy: &str| {
            format!(
                "[task]\nname = \"a\"\nmode = \"extract-upload-copy\"\n[source]\n\
                 connection = \"x\"\n[[tables]]\nname = \"t\"\n[target]\nurl = \"s3://bkt/p\"\n\
                 [warehouse]\nkind = \"{kind}\"\nurl = \"postgresql://u@h/db\"\n\
                 iam_role = \"arn:aws:iam::1:role/r\"\n[warehouse.copy]\n{copy}"
            )
        };
        let all = "maxerror = 10\nacceptinvchars = \"?\"\nblanksasnull = true\n\
                   emptyasnull = true\ntruncatecolumns = true\ncompupdate = true\n\
                   statupdate = true\n";
        let redshift = parse(&job("redshift", all)).unwrap();
        assert_eq!(
            redshift.warehouse.unwrap().copy,
            super::super::stages::every_copy_option()
        );
        // A load short by at most maxerror rows is whole; more, or more rows, is not.
        let options = super::super::stages::every_copy_option();
        assert!(options.accepts(90, 100) && options.accepts(100, 100));
        assert!(!options.accepts(89, 100) && !options.accepts(101, 100));
        assert!(!crate::config::CopyOptions::default().accepts(99, 100));
        let pg = parse(&job("postgres", "emptyasnull = true\nmaxerror = 0\n")).unwrap();
        assert!(pg.warehouse.unwrap().copy.emptyasnull);
        let refused = [
            (
                "postgres",
                "maxerror = 5\n",
                "job.toml:15:12: warehouse.copy.maxerror is a Redshift COPY option that PostgreSQL's COPY has no equivalent for: it stops at the first row",
            ),
            (
                "postgres",
                "truncatecolumns = true\n",
                "job.toml:15:19: warehouse.copy.truncatecolumns is a Redshift COPY option",
            ),
            (
                "postgres",
                "statupdate = true\n",
                "job.toml:15:14: warehouse.copy.statupdate is a Redshift COPY option that PostgreSQL's COPY has no equivalent for: autovacuum",
            ),
            (
                "redshift",
                "maxerror = 100001\n",
                "job.toml:15:12: warehouse.copy.maxerror = 100001: Redshift takes 0 to 100000",
            ),
            (
                "redshift",
                "acceptinvchars = \"??\"\n",
                "job.toml:15:18: warehouse.copy.acceptinvchars = \"??\": give the one printable ASCII character",
            ),
            (
                "redshift",
                "max_errors = 1\n",
                "job.toml:15:1: unknown field `max_errors`, expected one of `maxerror`",
            ),
        ];
        for (kind, copy, expected) in refused {
            let message = parse(&job(kind, copy)).unwrap_err().to_string();
            assert!(
                message.starts_with(expected),
                "\n got: {message}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn partitions_and_passwords_are_read() {
        let job = parse(
            r#"
[task]
name = "a"
[source]
connection = "DSN=x"
password_env = "PW"
[[tables]]
name = "public.t"
where = " status <> 'draft' "
partition = { column = "region", values = ["eu", "o'brien", 7] }
[[tables]]
name = "public.u"
partition = { column = "id", ranges = 8 }
[files]
delimiter = "|"
null_string = "\\N"
"#,
        )
        .unwrap();
        assert_eq!(job.password.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(format!("{:?}", job.password), "Some(***)");
        assert_eq!(job.tables[0].filter.as_deref(), Some("status <> 'draft'"));
        let Some(PartitionRequest::Values { values, .. }) = &job.tables[0].partition else {
            panic!("values partition expected")
        };
        let sql: Vec<_> = values.iter().map(SqlLiteral::to_sql).collect();
        assert_eq!(sql, ["'eu'", "'o''brien'", "7"]);
        assert_eq!(
            job.tables[1].partition,
            Some(PartitionRequest::Ranges {
                column: "id".into(),
                count: 8
            })
        );
        assert_eq!(job.files.delimiter, b'|');
        assert_eq!(job.files.null_string, "\\N");
    }

    /// Boundaries from a CSV file (read beside the job file, or from what a task carries),
    /// list partitions without the other values, dates split by month, and rules.
    #[test]
    fn partitions_and_rules_parse_into_their_requests() {
        let text = "[task]\nname = \"a\"\n[source]\nconnection = \"x\"\n\
                    [[tables]]\nname = \"t\"\npartition = { column = \"ts\", boundaries_file = \"b.csv\" }\n\
                    [[tables]]\nname = \"u\"\npartition = { column = \"r\", values = [\"eu\"], include_other_values = false }\n\
                    [[tables]]\nname = \"sales.*\"\npartition = { column = \"d\", date_auto_split = { start = 2024-01-01, interval = \"month\" } }\n\
                    [[rules]]\nname = \"recent\"\nschema = \"sales\"\ntable = \"order%\"\nwhere = \"d >= '2020-01-01'\"\n\
                    [[rules]]\nname = \"off\"\nwhere = \"1 = 0\"\nenabled = false\n";
        let csv = "# boundaries\n2024-01-01 00:00:00\n\"2024-06-01 12:00:00\"\n\n2025-01-01\n";
        let job = Job::parse_with(
            "job.toml",
            text,
            |_| None,
            |name| {
                (name == "b.csv")
                    .then(|| csv.to_string())
                    .ok_or_else(|| format!("no {name}"))
            },
        )
        .unwrap();
        let text_of = |v: &[&str]| {
            v.iter()
                .map(|s| SqlLiteral::Text(s.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            job.tables[0].partition,
            Some(PartitionRequest::Boundaries {
                column: "ts".into(),
                values: text_of(&["2024-01-01 00:00:00", "2024-06-01 12:00:00", "2025-01-01"]),
            })
        );
        assert_eq!(
            job.tables[1].partition,
            Some(PartitionRequest::Values {
                column: "r".into(),
                values: text_of(&["eu"]),
                include_other: false,
            })
        );
        assert_eq!(
            job.tables[2].partition,
            Some(PartitionRequest::DateSplit {
                column: "d".into(),
                start: chrono::NaiveDate::from_ymd_opt(2024, 1, 1),
                end: None,
                interval: DateInterval::Month,
            })
        );
        assert!(!job.tables[1].is_pattern() && job.tables[2].is_pattern());
        let recent = &job.rules[0];
        assert!(recent.applies_to("sales", "orders") && recent.applies_to("Sales", "ORDER_lines"));
        assert!(!recent.applies_to("sales", "items") && !recent.applies_to("hr", "orders"));
        assert!(!job.rules[1].applies_to("any", "table"), "disabled");
        // A value missing from the CSV file is refused with its line.
        let bad = Job::parse_with("job.toml", text, |_| None, |_| Ok("1\n,2\n".into()));
        assert!(
            bad.unwrap_err()
                .message
                .contains("b.csv: line 2: an empty value"),
        );
    }

    #[test]
    fn like_matches_as_sql_does_without_case() {
        for (pattern, text, expected) in [
            ("%", "", true),
            ("order%", "orders", true),
            ("order%", "Order_Lines", true),
            ("*", "anything", true),
            ("o_der", "order", true),
            ("o_der", "oder", false),
            ("ord\\_%", "ord_x", true),
            ("ord\\_%", "ordx", false),
            ("%s", "items", true),
            ("%s", "item", false),
        ] {
            assert_eq!(like(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    /// docs/settings.md is the reference: every setting the example job shows, and every
    /// key of a partition, has its row there.
    #[test]
    fn the_settings_reference_has_a_row_for_every_setting() {
        let reference = include_str!("../../docs/settings.md");
        let example = include_str!("../../appliance/examples/job.toml");
        let shown = example.lines().filter_map(|line| {
            let setting = line.trim_start_matches('#').trim_start();
            let (key, _) = setting.split_once(" = ")?;
            key.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
                .then_some(key)
        });
        let partition_keys = [
            "column",
            "ranges",
            "boundaries",
            "boundaries_file",
            "values",
            "include_other_values",
            "date_auto_split",
        ];
        let mut checked = 0;
        for key in shown.chain(partition_keys) {
            assert!(
                reference.contains(&format!("| `{key}` |")),
                "docs/settings.md has no row for `{key}`"
            );
            checked += 1;
        }
        assert!(checked > 50, "{checked}");
    }

    #[test]
    fn the_example_job_shows_the_true_defaults() {
        let text = include_str!("../../appliance/examples/job.toml");
        // Parsed in the mode that uses every section.
        let text = &text.replace("# mode = \"extract\"", "mode = \"extract-upload-copy\"");
        let as_is = parse(text).expect("the example parses as shipped");
        let uncommented: Vec<String> = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(setting) if setting.contains(" = ") => setting.to_string(),
                _ => line.to_string(),
            })
            .collect();
        let shown = text
            .lines()
            .filter(|l| l.starts_with("# ") && l.contains(" = "))
            .count();
        assert_eq!(shown, 33, "every default setting is shown once");
        let explicit = parse(&uncommented.join("\n")).expect("the example parses uncommented");
        assert_eq!(as_is.files, FileSettings::default());
        assert_eq!(explicit.files, as_is.files);
        assert_eq!(explicit.target, as_is.target);
        let target = as_is.target.as_ref().expect("[target]");
        assert_eq!(
            (target.part_size, target.concurrency, target.attempts),
            (16 << 20, 4, 12)
        );
        let (a, b) = (explicit.warehouse.unwrap(), as_is.warehouse.unwrap());
        assert_eq!(
            (&a.schema, a.create_tables, a.count_source),
            (&b.schema, b.create_tables, b.count_source)
        );
        assert_eq!(b.schema, "public");
        assert_eq!(a.copy, b.copy);
        assert_eq!(b.copy, crate::config::CopyOptions::default());
        assert_eq!(
            (explicit.extract_lobs, explicit.log_level),
            (as_is.extract_lobs, as_is.log_level)
        );
        assert_eq!(
            (explicit.retries, explicit.retry_wait),
            (DEFAULT_RETRIES, std::time::Duration::from_secs(30))
        );
        assert_eq!(
            (as_is.retries, as_is.retry_wait),
            (explicit.retries, explicit.retry_wait)
        );
        assert_eq!(
            (as_is.sorting, explicit.sorting),
            (Sorting::AfterFirstFailure, Sorting::AfterFirstFailure)
        );
        assert!(as_is.native_copy && explicit.native_copy);
        assert_eq!(as_is.tables.len(), 3);
        assert_eq!(as_is.rules, explicit.rules);
        assert_eq!(
            (as_is.rules[0].schema.as_str(), as_is.rules[0].enabled),
            ("%", true)
        );
        parse(include_str!("../../appliance/examples/quickstart.toml"))
            .expect("the quick start job parses");
    }

    #[test]
    fn the_device_and_redshift_examples_parse() {
        let env = |name: &str| name.ends_with("_PASSWORD").then(|| "pw".to_string());
        let snowball = Job::parse(
            "snowball-edge.toml",
            include_str!("../../appliance/examples/snowball-edge.toml"),
            env,
        );
        // The example names a certificate file that exists only on a configured appliance.
        let error = snowball.unwrap_err().to_string();
        assert!(
            error.contains("target.ca_bundle = \"/opt/dbhaul/etc/snowball.pem\" cannot be read"),
            "{error}"
        );
        let redshift = Job::parse(
            "redshift.toml",
            include_str!("../../appliance/examples/redshift.toml"),
            env,
        )
        .expect("the Redshift example parses");
        let warehouse = redshift.warehouse.expect("[warehouse]");
        assert_eq!(warehouse.kind, crate::config::WarehouseKind::Redshift);
        assert_eq!(redshift.files.binary_format, BinaryFormat::Hex);
    }
}
