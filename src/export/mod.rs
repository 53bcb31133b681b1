//! Tasks as XML files, to keep or to move to another controller: `dbhaul tasks export` and
//! `import`. The file holds the task's job file as written, its settings, its subtasks
//! (tables, partitions, columns) and the state of processing (progress, each subtask's and
//! stage's state and counters, the agent that ran it, the task and subtask ids); never a
//! secret: a job whose connection string or warehouse URL holds a password inline is not
//! exported, and `password_env` names travel without their values. `docs/export-format.md`
//! documents the format with an example, which a test imports.
//!
//! The file is read strictly: well-formed XML 1.0 checked first (with the line of the
//! fault), no DTD (so no entity can expand), no control characters, a size limit, then
//! every element and attribute into [`schema`]'s types and every value checked; an error
//! names the element or line and the fix. What a file says is never trusted further than
//! its shape: names that become folders are checked ([`crate::model::names`]), partition
//! predicates are rebuilt from the bounds (and the agent builds them again), a job with an
//! inline password is refused, and an imported task is created stopped.

pub mod schema;

use std::fmt;

use crate::store::schema::TaskRecord;

pub use schema::ExportedTask;

/// The format version this dbhaul writes and reads.
pub const FORMAT: u32 = 1;

/// Files above this are refused before they are read (a task of 10,000 subtasks of 20
/// columns exports to about 25 MB).
pub const MAX_BYTES: u64 = 32 * 1024 * 1024;

/// What one import request may carry, all files together.
pub const MAX_REQUEST_BYTES: u64 = 2 * MAX_BYTES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportError(pub String);

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExportError {}

/// Why a file cannot be imported; the message names the element or the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError(pub String);

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImportError {}

/// The task as an XML document.
pub fn export(task: &TaskRecord) -> Result<String, ExportError> {
    let exported = ExportedTask::from_record(task)?;
    let mut body = String::new();
    let mut serializer = quick_xml::se::Serializer::with_root(&mut body, Some("dbhaul-task"))
        .map_err(|e| ExportError(format!("cannot write the export: {e}")))?;
    serializer.indent(' ', 2);
    serde::Serialize::serialize(&exported, serializer)
        .map_err(|e| ExportError(format!("cannot write the export: {e}")))?;
    // XML 1.0 cannot carry a control character, wherever it hides (a description, an
    // error message, a column name): refuse rather than write a file no tool can read.
    check_characters(&body).map_err(|e| {
        ExportError(format!(
            "task {} cannot be exported: its export would hold {}; remove it and export again",
            task.definition.name,
            e.0.split_once(": ").map_or(e.0.as_str(), |(_, what)| what)
        ))
    })?;
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- dbhaul task export: docs/export-format.md -->\n{body}\n"
    ))
}

/// Read an export: well-formedness, then structure, then values.
pub fn parse(text: &str) -> Result<ExportedTask, ImportError> {
    if text.len() as u64 > MAX_BYTES {
        return Err(ImportError(format!(
            "the file has {} bytes; an export is at most {} MB",
            text.len(),
            MAX_BYTES / 1024 / 1024
        )));
    }
    check_characters(text)?;
    check_well_formed(text)?;
    let task: ExportedTask = quick_xml::de::from_str(text).map_err(|e| {
        ImportError(format!(
            "the file is not a dbhaul task export: {}",
            describe_de_error(&e)
        ))
    })?;
    task.validate()?;
    Ok(task)
}

/// XML 1.0 allows no control character but tab, line feed and carriage return.
fn check_characters(text: &str) -> Result<(), ImportError> {
    for (number, line) in text.split('\n').enumerate() {
        if let Some(column) = line
            .chars()
            .position(|c| (c as u32) < 0x20 && !matches!(c, '\t' | '\r'))
        {
            return Err(ImportError(format!(
                "line {}, column {}: a control character (U+{:04X}), which XML does not allow",
                number + 1,
                column + 1,
                line.chars().nth(column).map_or(0, |c| c as u32)
            )));
        }
    }
    Ok(())
}

/// Walk the document once: a syntax error gets its line and column; a DTD is refused (no
/// entity of ours is ever declared, and none can expand); the root must be `dbhaul-task`.
fn check_well_formed(text: &str) -> Result<(), ImportError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    let mut root_seen = false;
    loop {
        let at = reader.buffer_position();
        let event = reader.read_event().map_err(|e| {
            ImportError(format!(
                "{}: the XML is malformed: {e}",
                line_of(text, reader.error_position())
            ))
        })?;
        match event {
            Event::DocType(_) => {
                return Err(ImportError(format!(
                    "{}: a DOCTYPE declaration; exports have none (entities are not expanded)",
                    line_of(text, at)
                )));
            }
            Event::Start(e) => {
                if depth == 0 {
                    check_root(text, at, &e, &mut root_seen)?;
                }
                depth += 1;
            }
            Event::Empty(e) if depth == 0 => check_root(text, at, &e, &mut root_seen)?,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(ref t) if depth == 0 && !t.trim_ascii().is_empty() => {
                return Err(ImportError(format!(
                    "{}: text outside the <dbhaul-task> element",
                    line_of(text, at)
                )));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err(ImportError(
            "the file holds no <dbhaul-task> element: this is not a dbhaul task export".into(),
        ));
    }
    Ok(())
}

fn check_root(
    text: &str,
    at: u64,
    element: &quick_xml::events::BytesStart<'_>,
    root_seen: &mut bool,
) -> Result<(), ImportError> {
    let name = element.name().0.to_string();
    if *root_seen || name != "dbhaul-task" {
        return Err(ImportError(format!(
            "{}: the root element is <{name}>, not <dbhaul-task>: this is not a dbhaul task \
             export",
            line_of(text, at)
        )));
    }
    *root_seen = true;
    Ok(())
}

/// `line L, column C` of a byte offset.
fn line_of(text: &str, offset: u64) -> String {
    let offset = (offset as usize).min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    format!("line {line}, column {column}")
}

/// serde's words for what is missing, in the file's terms.
fn describe_de_error(e: &quick_xml::DeError) -> String {
    let text = e.to_string();
    match text.strip_prefix("missing field `") {
        Some(rest) => {
            let field = rest.trim_end_matches('`');
            match field.strip_prefix('@') {
                Some(attribute) => format!("a required attribute `{attribute}` is missing"),
                None => format!("a required element <{field}> is missing"),
            }
        }
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_placed_by_line_and_column() {
        assert_eq!(line_of("ab\ncd", 0), "line 1, column 1");
        assert_eq!(line_of("ab\ncd", 4), "line 2, column 2");
        let error = check_characters("<a>\n  <b>\u{7}</b>\n</a>").unwrap_err();
        assert_eq!(
            error.0,
            "line 2, column 6: a control character (U+0007), which XML does not allow"
        );
        assert!(check_characters("tab\tand\r\nnew lines\n").is_ok());
    }

    /// The task's definition changed by `change`, its job parsed again.
    fn change_definition(
        task: &mut TaskRecord,
        change: impl FnOnce(&mut crate::config::TaskDefinition),
    ) {
        let mut definition = task.definition.clone().into_definition();
        change(&mut definition);
        task.definition = definition.parse(None).unwrap();
    }

    fn record(description: &str) -> TaskRecord {
        TaskRecord {
            definition: crate::config::TaskDefinition {
                name: "t".into(),
                id: "0123456789abcdef".into(),
                job: "[task]\nname = \"t\"\n[source]\nconnection = \"Driver={SQLite3};Database=x.db\"\n\
                      [[tables]]\nname = \"a\"\n"
                    .into(),
                secrets: Default::default(),
                files: Default::default(),
            }
            .parse(None)
            .unwrap(),
            description: description.into(),
            mode: "extract".into(),
            agents: None,
            created_at: "2026-11-29T00:00:00Z".into(),
            started: false,
            subtasks: Vec::new(),
            log_level: None,
            handoff: false,
        }
    }

    #[test]
    fn a_control_character_anywhere_stops_the_export_and_the_rest_reads_back() {
        let error = export(&record("orders\u{1}")).unwrap_err();
        assert!(error.0.contains("control character (U+0001)"), "{error}");
        let xml = export(&record("orders, \"quoted\" <and> & more")).unwrap();
        let back = quick_xml::de::from_str::<ExportedTask>(&xml).unwrap();
        assert_eq!(back.description, "orders, \"quoted\" <and> & more");
        assert_eq!(back.job, record("").definition.job);
    }

    /// The files a job names go with its export, and come back as they were.
    #[test]
    fn the_files_a_job_names_travel_with_its_export() {
        let mut task = record("");
        change_definition(&mut task, |definition| {
            definition.job = definition.job.replace(
                "name = \"a\"\n",
                "name = \"a\"\npartition = { column = \"id\", boundaries_file = \"b.csv\" }\n",
            );
            definition
                .files
                .insert("b.csv".into(), "# ids\n10\n\"2<0>\"\n".into());
        });
        let xml = export(&task).unwrap();
        let back = quick_xml::de::from_str::<ExportedTask>(&xml).unwrap();
        let files = back.files.expect("<files>");
        assert_eq!(files.file.len(), 1);
        assert_eq!(files.file[0].name, "b.csv");
        assert_eq!(files.file[0].text, "# ids\n10\n\"2<0>\"\n");
    }

    #[test]
    fn a_job_with_an_inline_password_is_not_exported() {
        let mut task = record("");
        change_definition(&mut task, |definition| {
            definition.job = definition
                .job
                .replace("Database=x.db", "Database=x.db;PWD=Hidden7Secret");
        });
        let error = export(&task).unwrap_err();
        assert!(error.0.contains("source.password_env"), "{error}");
        assert!(!error.0.contains("Hidden7Secret"), "{error}");
    }

    #[test]
    fn only_a_dbhaul_task_root_without_doctype_is_read() {
        let wrong = check_well_formed("<?xml version=\"1.0\"?>\n<task/>").unwrap_err();
        assert!(
            wrong
                .0
                .starts_with("line 2, column 1: the root element is <task>"),
            "{wrong}"
        );
        let doctype = check_well_formed("<!DOCTYPE x [<!ENTITY a \"b\">]><dbhaul-task/>");
        assert!(doctype.unwrap_err().0.contains("DOCTYPE"));
        assert!(check_well_formed("<dbhaul-task><a/></dbhaul-task>").is_ok());
        let two = check_well_formed("<dbhaul-task/><dbhaul-task/>").unwrap_err();
        assert!(two.0.contains("line 1, column 15"), "{two}");
    }
}
