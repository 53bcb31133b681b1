//! Proposing tasks (`dbhaul tasks plan`, `dbhaul run --plan`): the tables a job or a
//! pattern chooses, sized from the catalog's estimates, grouped into tasks of at most a
//! given size (largest first, each into the first task it fits), with range partitions
//! proposed on the key of every table above a size. Nothing is read but the catalog.

use odbc_api::Connection;
use serde::Serialize;

use super::PlanError;
use crate::config::{PartitionRequest, TableRequest};
use crate::model::{TableRef, ValueFamily};
use crate::source::{Source, catalog};

/// Most ranges a proposal asks for: past this, a table wants a task of its own per range.
pub const MAX_PROPOSED_RANGES: u64 = 256;

/// One table as the plan sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SizedTable {
    /// `schema.table`, as a job file names it.
    pub table: String,
    /// The `[[tables]]` entry (by position) that chose it.
    #[serde(skip)]
    pub entry: usize,
    pub bytes: Option<u64>,
    pub rows: Option<u64>,
    /// Range partitions proposed for it: the column and how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<Proposal>,
    /// Why a large table has no proposal, or that its size is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proposal {
    pub column: String,
    pub ranges: u32,
}

/// A proposed task: tables whose estimates add up to at most the limit (or one table
/// larger than it).
#[derive(Debug, Clone, Serialize)]
pub struct ProposedTask {
    pub name: String,
    pub bytes: u64,
    pub tables: Vec<SizedTable>,
}

/// Size every table the requests choose, and propose partitions for those above
/// `partition_bytes` that have none yet.
pub fn size_tables(
    requests: &[TableRequest],
    source: &Source,
    conn: &Connection<'_>,
    partition_bytes: u64,
) -> Result<Vec<SizedTable>, PlanError> {
    let chosen = super::chosen_tables(requests, source, conn)?;
    let mut sized = Vec::with_capacity(chosen.len());
    for (table, request) in chosen {
        let entry = requests
            .iter()
            .position(|r| std::ptr::eq(r, request))
            .expect("chosen from the requests");
        let bytes = catalog::size_estimate(conn, source, &table)?;
        let rows = catalog::row_estimate(conn, source, &table)?.and_then(|n| u64::try_from(n).ok());
        let mut sized_table = SizedTable {
            table: table.to_string(),
            entry,
            bytes,
            rows,
            partition: None,
            note: bytes
                .is_none()
                .then(|| "size unknown to the catalog".to_string()),
        };
        let big = bytes.is_some_and(|b| b > partition_bytes);
        if big && request.partition.is_none() {
            match range_column(conn, source, &table)? {
                Some(column) => {
                    let ranges = bytes
                        .unwrap_or(0)
                        .div_ceil(partition_bytes.max(1))
                        .clamp(2, MAX_PROPOSED_RANGES);
                    sized_table.partition = Some(Proposal {
                        column,
                        ranges: ranges as u32,
                    });
                }
                None => {
                    sized_table.note = Some(
                        "large, but its key is not numeric, date or timestamp: partition it \
                         by hand (values = [...] or date_auto_split on a date column)"
                            .into(),
                    );
                }
            }
        }
        sized.push(sized_table);
    }
    Ok(sized)
}

/// The first column of the table's key, when ranges can split it.
fn range_column(
    conn: &Connection<'_>,
    source: &Source,
    table: &TableRef,
) -> Result<Option<String>, PlanError> {
    let key = catalog::primary_key(conn, source, table)?;
    let Some(first) = key.first() else {
        return Ok(None);
    };
    let columns = catalog::columns(conn, source, table)?;
    Ok(columns
        .into_iter()
        .find(|c| &c.name == first)
        .filter(|c| {
            matches!(
                c.family(),
                ValueFamily::Integer
                    | ValueFamily::Decimal
                    | ValueFamily::Date
                    | ValueFamily::Timestamp
            )
        })
        .map(|c| c.name))
}

/// Group tables into tasks of at most `max_bytes`: largest first, each into the first task
/// it fits, a table larger than the limit alone. Tasks are named `<prefix>-01`, … in the
/// order they were opened (the largest first); a table of unknown size counts as empty.
pub fn group(mut tables: Vec<SizedTable>, max_bytes: u64, prefix: &str) -> Vec<ProposedTask> {
    tables.sort_by(|a, b| {
        b.bytes
            .unwrap_or(0)
            .cmp(&a.bytes.unwrap_or(0))
            .then_with(|| a.table.cmp(&b.table))
    });
    let mut tasks: Vec<ProposedTask> = Vec::new();
    for table in tables {
        let size = table.bytes.unwrap_or(0);
        let fits = tasks
            .iter_mut()
            .find(|t| !t.tables.is_empty() && t.bytes + size <= max_bytes);
        match fits {
            Some(task) => {
                task.bytes += size;
                task.tables.push(table);
            }
            None => tasks.push(ProposedTask {
                name: String::new(),
                bytes: size,
                tables: vec![table],
            }),
        }
    }
    let width = tasks.len().to_string().len().max(2);
    for (i, task) in tasks.iter_mut().enumerate() {
        task.name = format!("{prefix}-{:0width$}", i + 1);
        task.tables.sort_by(|a, b| a.table.cmp(&b.table));
    }
    tasks
}

/// A job file for each proposed task: `base` (a job file's TOML) with the task's name and
/// its tables, each entry as the job gave it (`entries`, by position) but named exactly,
/// with the proposed partition where there is one.
pub fn job_files(
    base: &toml::Table,
    entries: &[toml::Table],
    tasks: &[ProposedTask],
) -> Vec<(String, String)> {
    tasks
        .iter()
        .map(|task| {
            let mut job = base.clone();
            let section = job
                .entry("task")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(section) = section.as_table_mut() {
                section.insert("name".into(), toml::Value::String(task.name.clone()));
            }
            let tables: Vec<toml::Value> = task
                .tables
                .iter()
                .map(|t| {
                    let mut entry = entries.get(t.entry).cloned().unwrap_or_default();
                    entry.insert("name".into(), toml::Value::String(t.table.clone()));
                    if let Some(p) = &t.partition {
                        let mut partition = toml::Table::new();
                        partition.insert("column".into(), toml::Value::String(p.column.clone()));
                        partition
                            .insert("ranges".into(), toml::Value::Integer(i64::from(p.ranges)));
                        entry.insert("partition".into(), toml::Value::Table(partition));
                    }
                    toml::Value::Table(entry)
                })
                .collect();
            job.insert("tables".into(), toml::Value::Array(tables));
            let header = format!(
                "# Proposed by dbhaul: {} table(s), ~{} from the catalog's estimates.\n",
                task.tables.len(),
                human_bytes(task.bytes)
            );
            let text = toml::to_string(&job).expect("a TOML table serializes");
            (task.name.clone(), header + &text)
        })
        .collect()
}

/// `12.3 GB`, `850 MB`, `4 KB`: decimal units, as disks are sold.
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else {
        format!("{:.0} KB", b / 1e3)
    }
}

/// Which requests a plan starts from: the job's, or patterns given on the command line.
pub fn pattern_requests(patterns: &[String]) -> Vec<TableRequest> {
    patterns
        .iter()
        .map(|p| TableRequest {
            name: p.clone(),
            filter: None,
            partition: None::<PartitionRequest>,
            lob_columns: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, mb: u64) -> SizedTable {
        SizedTable {
            table: name.into(),
            entry: 0,
            bytes: Some(mb * 1_000_000),
            rows: None,
            partition: None,
            note: None,
        }
    }

    #[test]
    fn tables_group_largest_first_into_the_first_task_they_fit() {
        let tasks = group(
            vec![
                table("s.a", 10),
                table("s.huge", 500),
                table("s.b", 60),
                table("s.c", 45),
                table("s.d", 40),
            ],
            100_000_000,
            "erp",
        );
        let shape: Vec<(&str, Vec<&str>)> = tasks
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    t.tables.iter().map(|x| x.table.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("erp-01", vec!["s.huge"]),
                ("erp-02", vec!["s.b", "s.d"]),
                ("erp-03", vec!["s.a", "s.c"]),
            ]
        );
        assert_eq!(
            tasks[1].bytes, 100_000_000,
            "a task may fill up to the limit"
        );
    }

    #[test]
    fn job_files_keep_the_job_and_name_each_table_exactly() {
        let base: toml::Table = "[task]\nname = \"x\"\nmode = \"extract-upload\"\n\
                                 [source]\nconnection = \"DSN=erp\"\n\
                                 [target]\nurl = \"s3://bkt/p\"\n"
            .parse()
            .unwrap();
        let entries: Vec<toml::Table> =
            vec!["name = \"s.%\"\nwhere = \"id > 0\"\n".parse().unwrap()];
        let mut big = table("s.big", 300);
        big.partition = Some(Proposal {
            column: "id".into(),
            ranges: 3,
        });
        let tasks = group(vec![big, table("s.small", 1)], 100_000_000, "p");
        let files = job_files(&base, &entries, &tasks);
        assert_eq!(files.len(), 2);
        let job = crate::config::Job::parse("p-01.toml", &files[0].1, |_| None).unwrap();
        assert_eq!(job.name.as_str(), "p-01");
        assert_eq!(job.tables[0].name, "s.big");
        assert_eq!(job.tables[0].filter.as_deref(), Some("id > 0"));
        assert_eq!(
            job.tables[0].partition,
            Some(PartitionRequest::Ranges {
                column: "id".into(),
                count: 3
            })
        );
        assert!(job.target.is_some());
        assert!(
            files[0]
                .1
                .starts_with("# Proposed by dbhaul: 1 table(s), ~300 MB")
        );
    }
}
