//! The planner turns a job into subtasks: it resolves each table in the source's catalog,
//! decides which columns are fetched and how, finds the ordered key, checks the filter,
//! and splits partitioned tables into one subtask per partition. Every problem it finds is
//! a configuration problem (exit 2), found before any data moves.

pub mod partition;
pub mod tasks;

use odbc_api::Connection;

use crate::config::{Job, PartitionRequest, Rule, TableRequest, like};
use crate::model::subtask::sql;
use crate::model::{ColumnSpec, FetchKind, KeyKind, SubtaskSpec, TableRef, ValueFamily};
use crate::source::{Dialect, Source, SourceError, catalog};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}")]
    Invalid(String),
}

impl PlanError {
    pub fn is_configuration(&self) -> bool {
        match self {
            PlanError::Source(e) => e.is_configuration(),
            PlanError::Invalid(_) => true,
        }
    }
}

/// Plan every table of a job.
pub fn plan(
    job: &Job,
    source: &Source,
    conn: &Connection<'_>,
) -> Result<Vec<SubtaskSpec>, PlanError> {
    let mut subtasks = Vec::new();
    for (table, request) in chosen_tables(&job.tables, source, conn)? {
        subtasks.extend(plan_table(job, source, conn, table, request)?);
    }
    Ok(subtasks)
}

/// Each table the job chooses, with the `[[tables]]` entry that chose it, in file order. A
/// table named exactly takes its own entry's settings over any pattern's; a table two
/// patterns match takes the first's. A pattern that matches nothing is an error, as a
/// missing table is.
pub fn chosen_tables<'j>(
    requests: &'j [TableRequest],
    source: &Source,
    conn: &Connection<'_>,
) -> Result<Vec<(TableRef, &'j TableRequest)>, PlanError> {
    let mut named = Vec::new();
    for request in requests.iter().filter(|r| !r.is_pattern()) {
        let table = catalog::find_table(conn, source, &request.name)?;
        if let Some((_, first)) = named
            .iter()
            .find(|(t, _): &&(TableRef, &TableRequest)| *t == table)
        {
            return Err(PlanError::Invalid(format!(
                "tables `{}` and `{}` are the same table, {table}: list it once",
                first.name, request.name
            )));
        }
        named.push((table, request));
    }
    let listed = if requests.iter().any(TableRequest::is_pattern) {
        catalog::list_tables(conn, source, None)?
    } else {
        Vec::new()
    };
    let mut chosen: Vec<(TableRef, &TableRequest)> = Vec::new();
    for request in requests {
        if !request.is_pattern() {
            let table = named
                .iter()
                .find(|(_, r)| std::ptr::eq(*r, request))
                .map(|(t, _)| t.clone());
            chosen.extend(table.map(|t| (t, request)));
            continue;
        }
        let (namespace, name) = match request.name.rsplit_once('.') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, request.name.as_str()),
        };
        let matches: Vec<&TableRef> = listed
            .iter()
            .map(|e| &e.table)
            .filter(|t| namespace.is_none_or(|ns| like(ns, t.namespace())) && like(name, &t.name))
            .collect();
        if matches.is_empty() {
            return Err(PlanError::Invalid(format!(
                "tables `{}` matches no table or view of the source (patterns are SQL LIKE: % \
                 or * any characters, _ any one); `dbhaul tables --source ...` lists them",
                request.name
            )));
        }
        for table in matches {
            let taken = named.iter().chain(chosen.iter()).any(|(t, _)| t == table);
            if !taken {
                chosen.push((table.clone(), request));
            }
        }
    }
    Ok(chosen)
}

/// The table's own `where` and every enabled rule that applies to it, each checked on the
/// source (with its rule's name in the error), joined with AND.
fn table_filter(
    job: &Job,
    source: &Source,
    conn: &Connection<'_>,
    table: &TableRef,
    request: &TableRequest,
) -> Result<Option<String>, PlanError> {
    let mut filters = Vec::new();
    if let Some(filter) = &request.filter {
        check_filter(source, conn, table, filter).map_err(|e| {
            PlanError::Invalid(format!(
                "the where filter of {table} does not work on the source: {e}"
            ))
        })?;
        filters.push(filter.clone());
    }
    let rules: Vec<&Rule> = job
        .rules
        .iter()
        .filter(|r| r.applies_to(table.namespace(), &table.name))
        .collect();
    for rule in rules {
        check_filter(source, conn, table, &rule.filter).map_err(|e| {
            PlanError::Invalid(format!(
                "rule `{}` does not work on {table}: {e}; fix its where, narrow its schema or \
                 table pattern, or set enabled = false",
                rule.name
            ))
        })?;
        tracing::info!(table = %table, rule = %rule.name, "rule filters the table: {}", rule.filter);
        filters.push(rule.filter.clone());
    }
    if source.dialect == Dialect::Postgres
        && filters.iter().any(|f| {
            f.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(|word| word.eq_ignore_ascii_case("for"))
        })
    {
        tracing::warn!(
            table = %table,
            "the filter has the word FOR in it: psqlODBC takes such a query for SELECT … FOR \
             UPDATE and reads its whole result at once, so where this table is read through \
             ODBC (LOB columns, a resumed read) memory grows with the rows selected; write \
             substr(x, a, b) rather than substring(x FROM a FOR b)"
        );
    }
    Ok(match filters.len() {
        0 => None,
        1 => filters.pop(),
        _ => Some(
            filters
                .iter()
                .map(|f| format!("({f})"))
                .collect::<Vec<_>>()
                .join(" AND "),
        ),
    })
}

fn plan_table(
    job: &Job,
    source: &Source,
    conn: &Connection<'_>,
    table: TableRef,
    request: &TableRequest,
) -> Result<Vec<SubtaskSpec>, PlanError> {
    let mut all_columns = catalog::columns(conn, source, &table)?;
    match source.dialect {
        Dialect::Sqlite => {
            // With files.lob_objects a LOB value is streamed, to go to its own object.
            let lobs_in_blocks = job.files.lob_objects_over.is_none();
            fit_sqlite_columns(source, conn, &table, &mut all_columns, lobs_in_blocks)?
        }
        Dialect::Postgres => fit_postgres_columns(source, conn, &table, &mut all_columns)?,
        _ => {}
    }
    if all_columns.is_empty() {
        return Err(PlanError::Invalid(format!(
            "table {table} shows no columns to this login; check its privileges"
        )));
    }
    if let Some(missing) = request.lob_columns.iter().find(|name| {
        !all_columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(name))
    }) {
        return Err(PlanError::Invalid(format!(
            "tables.lob_columns names `{missing}`, which table {table} does not have (it has {}); \
             `dbhaul tables --source ...` lists its columns",
            all_columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let (columns, left_out): (Vec<_>, Vec<_>) = all_columns
        .iter()
        .cloned()
        .partition(|c| job.extract_lobs || !is_large_object(c, &request.lob_columns));
    if columns.is_empty() {
        return Err(PlanError::Invalid(format!(
            "table {table} has only LOB columns and task.extract_lobs = false: nothing to extract"
        )));
    }

    let key_names = catalog::primary_key(conn, source, &table)?;
    let key_positions: Option<Vec<usize>> = key_names
        .iter()
        .map(|name| {
            columns
                .iter()
                .position(|c| &c.name == name && !c.fetch.is_lob())
        })
        .collect();
    let key = key_positions
        .filter(|k| !k.is_empty())
        .map(|columns| KeyKind { columns });
    if key.is_none() && !source.dialect.streams_results() {
        tracing::warn!(
            table = %table,
            "no primary key: the MariaDB/MySQL ODBC driver holds a whole result in memory, so \
             this table is read in one query and memory grows with its size; add a primary \
             key or partition the table"
        );
    }

    let filter = table_filter(job, source, conn, &table, request)?;

    let mut base = SubtaskSpec {
        table: table.clone(),
        columns,
        left_out,
        filter: filter.clone(),
        partition: None,
        key,
        // An estimate that cannot be had costs the progress bar its scale, nothing more.
        estimated_rows: catalog::row_estimate(conn, source, &table)
            .ok()
            .flatten()
            .and_then(|n| u64::try_from(n).ok()),
        largest_lob_row: None,
    };
    // Without a sample the driver fetches the most LOB rows at once, as before.
    base.largest_lob_row = catalog::largest_lob_row(conn, source, &base).ok().flatten();
    let Some(partition) = &request.partition else {
        return Ok(vec![base]);
    };

    let column_name = partition.column();
    let Some(column) = all_columns.iter().find(|c| c.name == column_name) else {
        return Err(SourceError::ColumnNotFound {
            table: table.to_string(),
            column: column_name.to_string(),
            available: all_columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
    };
    let quoted = source.quote_ident(column_name);
    let invalid = |m: String| {
        PlanError::Invalid(format!(
            "cannot partition {table} by `{column_name}` ({}): {m}",
            column.source_type
        ))
    };
    let min_max = || catalog::min_max(conn, source, &table, column_name, filter.as_deref());
    let partitions = match partition {
        PartitionRequest::Ranges { count, .. } => {
            let boundaries = match min_max()? {
                Some((min, max)) => {
                    partition::range_boundaries(column.family(), &min, &max, *count)
                }
                None => Ok(Vec::new()),
            }
            .map_err(invalid)?;
            partition::range_partitions(column_name, &quoted, &boundaries, column.nullable)
        }
        PartitionRequest::Boundaries { values, .. } => {
            let boundaries =
                partition::typed_boundaries(column.family(), values).map_err(invalid)?;
            partition::range_partitions(column_name, &quoted, &boundaries, column.nullable)
        }
        PartitionRequest::Values {
            values,
            include_other,
            ..
        } => {
            partition::check_values(column.family(), values).map_err(invalid)?;
            if !include_other {
                tracing::warn!(
                    table = %table,
                    "include_other_values = false: rows whose `{column_name}` is none of the \
                     {} listed values, or NULL, are not extracted",
                    values.len()
                );
            }
            partition::value_partitions(column_name, &quoted, values, *include_other)
        }
        PartitionRequest::DateSplit {
            start,
            end,
            interval,
            ..
        } => {
            if !matches!(column.family(), ValueFamily::Date | ValueFamily::Timestamp) {
                return Err(invalid(
                    "date_auto_split needs a date or timestamp column".into(),
                ));
            }
            let day = |v: &str| {
                chrono::NaiveDate::parse_from_str(v.get(..10).unwrap_or(v), "%Y-%m-%d")
                    .map_err(|_| invalid(format!("the source gave `{v}`, not a date")))
            };
            let ends = match (start, end) {
                (Some(s), Some(e)) => Some((*s, Some(*e), *e)),
                _ => match min_max()? {
                    Some((min, max)) => {
                        let (min, max) = (day(&min)?, day(&max)?);
                        Some((start.unwrap_or(min), *end, max))
                    }
                    // No row to place: the one open partition and NULL.
                    None => None,
                },
            };
            let boundaries = match ends {
                Some((start, end, max)) => {
                    partition::date_boundaries(column.family(), start, end, max, *interval)
                        .map_err(invalid)?
                }
                None => Vec::new(),
            };
            partition::range_partitions(column_name, &quoted, &boundaries, column.nullable)
        }
    };
    let share = base
        .estimated_rows
        .map(|rows| rows.div_ceil(partitions.len().max(1) as u64));
    Ok(partitions
        .into_iter()
        .map(|p| SubtaskSpec {
            partition: Some(p),
            estimated_rows: share,
            ..base.clone()
        })
        .collect())
}

/// SQLite keeps any value in any column: declared lengths are not enforced and REAL turns
/// into text with 15 digits. So floats are selected as exact text (see
/// `source::fetch::select_item`), and text buffers are sized from the longest value stored
/// rather than from the declaration, measured in one scan.
/// Whether `extract_lobs = false` leaves a column out: a large-object type (binary of
/// unbounded or long size: `bytea`, `BLOB`, `LONGBLOB`, `image`; character large objects:
/// `CLOB`, `NCLOB`, `DBCLOB`, `ntext`, `LONG`), or a column the table's `lob_columns`
/// names. A string type is a string however long it may be (`text`, `varchar` without a
/// length, MariaDB's `TEXT`, SQLite's `TEXT`): it stays.
pub fn is_large_object(column: &ColumnSpec, lob_columns: &[String]) -> bool {
    if lob_columns
        .iter()
        .any(|n| n.eq_ignore_ascii_case(&column.name))
    {
        return true;
    }
    let ty = column.source_type.to_ascii_lowercase();
    let binary = matches!(
        column.sql_type,
        sql::BINARY | sql::VARBINARY | sql::LONGVARBINARY
    );
    let long = column
        .size
        .is_none_or(|n| n > crate::model::subtask::LOB_THRESHOLD);
    column.fetch == FetchKind::LongBinary
        || (binary && long)
        || matches!(
            ty.as_str(),
            "clob" | "nclob" | "dbclob" | "ntext" | "long" | "long raw" | "image"
        )
}

/// PostgreSQL columns read as the server's text on the ODBC path (see
/// `source::pg_copy::pg_text_item`) are fetched as text, with room for that text: `money`
/// (which psqlODBC would read as a float, and then as 0 from its text) and other
/// non-float types it calls floats; a `numeric` without a declared precision (or a domain
/// over one), whose digits the driver under-reports, up to 1,024 characters (a longer value
/// fails the subtask naming the column; the native path has no limit). The declared
/// precision comes from the server's catalog, base types of domains included.
fn fit_postgres_columns(
    source: &Source,
    conn: &Connection<'_>,
    table: &TableRef,
    columns: &mut [ColumnSpec],
) -> Result<(), PlanError> {
    let declared = catalog::query_text(
        conn,
        "SELECT a.attname::text, \
           (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END)::regtype::text, \
           CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         WHERE a.attrelid = to_regclass(?) AND a.attnum > 0 AND NOT a.attisdropped",
        &[source.qualified(table)],
    )?;
    for column in columns.iter_mut() {
        let Some(row) = declared
            .iter()
            .find(|row| row.first().cloned().flatten().as_deref() == Some(column.name.as_str()))
        else {
            continue;
        };
        let base = row.get(1).cloned().flatten().unwrap_or_default();
        let typmod: i64 = row
            .get(2)
            .cloned()
            .flatten()
            .and_then(|m| m.parse().ok())
            .unwrap_or(-1);
        let float = matches!(base.as_str(), "real" | "double precision");
        match column.fetch {
            FetchKind::Float64 | FetchKind::Float32 if !float => {
                column.fetch = FetchKind::Text { max_bytes: 64 }
            }
            FetchKind::Text { max_bytes } if base == "numeric" && typmod < 0 => {
                column.fetch = FetchKind::Text {
                    max_bytes: max_bytes.max(1024),
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A SQLite TEXT or BLOB column whose longest value is at most this many bytes is read in
/// blocks (a value that grows past it before the read fails the subtask, naming the
/// column; nothing is cut).
const SQLITE_BLOCK_LOB_BYTES: usize = 64 * 1024;

fn fit_sqlite_columns(
    source: &Source,
    conn: &Connection<'_>,
    table: &TableRef,
    columns: &mut [ColumnSpec],
    lobs_in_blocks: bool,
) -> Result<(), PlanError> {
    for column in columns
        .iter_mut()
        .filter(|c| c.family() == ValueFamily::Float)
    {
        column.fetch = FetchKind::Text { max_bytes: 32 };
    }
    // Every text column is measured as it is selected (a column may hold any storage
    // class: a long text in a REAL column, a real printed with 20 digits in a TEXT one);
    // so are TEXT and BLOB columns, which are read in blocks like bounded ones when their
    // longest value is at most SQLITE_BLOCK_LOB_BYTES (ordinary values: block speed).
    let texts: Vec<usize> = (0..columns.len())
        .filter(|i| !matches!(columns[*i].fetch, FetchKind::Float64 | FetchKind::Float32))
        .collect();
    if texts.is_empty() {
        return Ok(());
    }
    let measures: Vec<String> = texts
        .iter()
        .map(|i| {
            format!(
                "max(length(CAST({} AS BLOB)))",
                crate::source::fetch::select_item(source, &columns[*i])
            )
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM {}",
        measures.join(", "),
        source.qualified(table)
    );
    let row = catalog::query_text(conn, &sql, &[])?
        .into_iter()
        .next()
        .unwrap_or_default();
    for (i, longest) in texts.iter().zip(row) {
        let longest: usize = longest.and_then(|v| v.parse().ok()).unwrap_or(0);
        let column = &mut columns[*i];
        column.fetch = match column.fetch {
            FetchKind::Text { max_bytes } => FetchKind::Text {
                max_bytes: max_bytes.max(longest),
            },
            FetchKind::Binary { max_bytes } => FetchKind::Binary {
                max_bytes: max_bytes.max(longest),
            },
            FetchKind::LongText if lobs_in_blocks && longest <= SQLITE_BLOCK_LOB_BYTES => {
                FetchKind::Text {
                    max_bytes: longest.max(1),
                }
            }
            FetchKind::LongBinary if lobs_in_blocks && longest <= SQLITE_BLOCK_LOB_BYTES => {
                FetchKind::Binary {
                    max_bytes: longest.max(1),
                }
            }
            other => other,
        };
    }
    Ok(())
}

/// Run a filter against the table with no rows selected, so a typo fails now, with the
/// database's own message, rather than half-way through a run.
fn check_filter(
    source: &Source,
    conn: &Connection<'_>,
    table: &TableRef,
    filter: &str,
) -> Result<(), SourceError> {
    let sql = format!(
        "SELECT 1 FROM {} WHERE ({filter}) AND 1 = 0",
        source.qualified(table)
    );
    catalog::query_text(conn, &sql, &[]).map(|_| ())
}
