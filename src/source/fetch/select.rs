//! The SQL text of a read: the `SELECT` of a subtask, how each column is selected, the
//! filter and partition predicates, key order, and the bounded `SELECT` of inline LOBs.

use super::*;

/// The `SELECT` of a subtask, without key-range additions.
pub fn select_sql(source: &Source, spec: &SubtaskSpec) -> String {
    select_read(source, spec, false)
}

/// The `SELECT` the ODBC read runs: with `sliced`, the row's address first (see
/// [`address_items`]) and each LOB value's first slice in place of the value.
pub(super) fn select_read(source: &Source, spec: &SubtaskSpec, sliced: bool) -> String {
    let mut items = if sliced {
        address_items(source, spec)
    } else {
        Vec::new()
    };
    for column in &spec.columns {
        items.push(if sliced && column.fetch.is_lob() {
            slice_expr(source, column, "1")
        } else {
            select_item(source, column)
        });
    }
    select_from(source, spec, &items)
}

/// The columns a sliced read puts before the subtask's own, by which a row is found again:
/// PostgreSQL's `tableoid` and `ctid`, MariaDB's key.
pub(super) fn address_items(source: &Source, spec: &SubtaskSpec) -> Vec<String> {
    match source.dialect {
        crate::source::Dialect::MariaDb => key_names(source, spec),
        _ => vec!["tableoid".to_string(), "ctid".to_string()],
    }
}

/// `substr(value, start, LOB_SLICE)`: text by characters (any type as its text output,
/// which is what the driver would print), `bytea` by bytes. Not `substring(… FOR …)`:
/// psqlODBC takes a `FOR` in a query for `FOR UPDATE` and then reads the result whole.
/// MariaDB's `SUBSTRING` is by characters of text and bytes of a `BLOB` alike.
pub(super) fn slice_expr(
    source: &Source,
    column: &crate::model::ColumnSpec,
    start: &str,
) -> String {
    let quoted = source.quote_ident(&column.name);
    if source.dialect == crate::source::Dialect::MariaDb {
        format!("SUBSTRING({quoted}, {start}, {LOB_SLICE})")
    } else if column.fetch.is_binary() {
        format!("substr({quoted}, {start}, {LOB_SLICE})")
    } else {
        format!("substr(CAST({quoted} AS text), {start}, {LOB_SLICE})")
    }
}

/// `SELECT items FROM table WHERE filter AND partition`: the subtask's rows, as `items`.
pub fn select_from(source: &Source, spec: &SubtaskSpec, items: &[String]) -> String {
    let mut sql = format!(
        "SELECT {} FROM {}",
        items.join(", "),
        source.qualified(&spec.table)
    );
    if let Some(predicate) = row_predicate(source, spec) {
        sql.push_str(" WHERE ");
        sql.push_str(&predicate);
    }
    sql
}

/// How a column is selected. PostgreSQL's as [`crate::source::pg_copy::pg_text_item`] gives them
/// (the server's text where psqlODBC would convert, so both paths write the same text).
/// SQLite turns REAL into text with 15 significant digits
/// whatever the driver asks for, so its floats are printed by SQLite with 17 (exact) and
/// fetched as text (the planner's `fit_sqlite_columns` sets that up).
pub fn select_item(source: &Source, column: &crate::model::ColumnSpec) -> String {
    let quoted = source.quote_ident(&column.name);
    match source.dialect {
        crate::source::Dialect::Sqlite if !column.fetch.is_binary() => sqlite_text_item(&quoted),
        crate::source::Dialect::Postgres => {
            crate::source::pg_copy::pg_text_item(source, column, Path::Odbc)
        }
        // Connector/ODBC hands a BIT(1) out as its raw byte, whatever it is asked for.
        crate::source::Dialect::MariaDb if column.sql_type == sql::BIT => format!("({quoted} + 0)"),
        _ => quoted,
    }
}

/// A SQLite value of a non-binary column as text, by what it holds (a column may hold any
/// storage class, whatever its declared type): a real with 20 significant digits (SQLite's
/// 17-digit printing can be one unit off in the last place; 20 read back to the same
/// double), a blob as its bytes (sqliteodbc would print `X'…'`), anything else as SQLite
/// gives it (an integer in a REAL or NUMERIC column stays `1`, a text stays itself).
pub(super) fn sqlite_text_item(quoted: &str) -> String {
    format!(
        "CASE typeof({quoted}) WHEN 'real' THEN printf('%!.20e', {quoted}) \
         WHEN 'blob' THEN CAST({quoted} AS TEXT) ELSE {quoted} END"
    )
}

/// The filter and the partition's predicate. The partition's is built here, from its
/// column and bounds with this source's quoting, never taken from the spec's `predicate`
/// text: a spec edited in an export cannot widen what a partition reads.
pub(super) fn predicates(source: &Source, spec: &SubtaskSpec) -> Vec<String> {
    let mut predicates = Vec::new();
    if let Some(filter) = &spec.filter {
        predicates.push(format!("({filter})"));
    }
    if let Some(partition) = &spec.partition {
        let column = source.quote_ident(&partition.column);
        predicates.push(format!("({})", partition.bound.predicate(&column)));
    }
    predicates
}

/// The combined row predicate of a subtask, as the source reads it and the manifest
/// records it.
pub fn row_predicate(source: &Source, spec: &SubtaskSpec) -> Option<String> {
    let predicates = predicates(source, spec);
    (!predicates.is_empty()).then(|| predicates.join(" AND "))
}

/// The one query of a subtask read in key order, after `after` if given.
pub(super) fn ordered_sql(
    source: &Source,
    spec: &SubtaskSpec,
    after: Option<&[String]>,
    sliced: bool,
) -> (String, Vec<String>) {
    let names = key_names(source, spec);
    let mut sql = select_read(source, spec, sliced);
    let mut params = Vec::new();
    if let Some(values) = after {
        let (predicate, p) = after_key(spec, &names, values);
        let joiner = if sql.contains(" WHERE ") {
            " AND "
        } else {
            " WHERE "
        };
        sql = format!("{sql}{joiner}({predicate})");
        params = p;
    }
    sql.push_str(" ORDER BY ");
    sql.push_str(&names.join(", "));
    (sql, params)
}

/// The `SELECT` of a subtask whose LOBs come inline ([`inline_lobs`]): a text LOB's
/// first [`inline_chars`] + 1 characters, as a `VARCHAR` (which the driver reads faster
/// than a `TEXT`, and the server makes more cheaply than a test of the length); a binary
/// LOB's value when it is short, else NULL and its flag after the columns.
pub(super) fn select_inline(source: &Source, spec: &SubtaskSpec, limit: usize) -> String {
    let chars = inline_chars(limit) + 1;
    let long = |column: &crate::model::ColumnSpec| {
        format!(
            "OCTET_LENGTH({}) > {limit}",
            source.quote_ident(&column.name)
        )
    };
    let mut items: Vec<String> = spec
        .columns
        .iter()
        .map(|column| {
            let quoted = source.quote_ident(&column.name);
            match column.fetch {
                FetchKind::LongText => format!("CAST(LEFT({quoted}, {chars}) AS CHAR({chars}))"),
                FetchKind::LongBinary => format!("IF({}, NULL, {quoted})", long(column)),
                _ => select_item(source, column),
            }
        })
        .collect();
    items.extend(
        spec.columns
            .iter()
            .filter(|c| c.fetch == FetchKind::LongBinary)
            .map(long),
    );
    select_from(source, spec, &items)
}
