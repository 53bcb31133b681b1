//! The source's catalog through the ODBC catalog functions (`SQLTables`, `SQLColumns`,
//! `SQLPrimaryKeys`), plus the few statistics ODBC has no function for (row estimates,
//! a column's min and max). Catalog patterns treat `_` as a wildcard, so every answer is
//! filtered to exact names here.

use odbc_api::{Connection, Cursor, IntoParameter};

use super::Dialect;
use super::SourceError;
use super::connection::Source;
use crate::model::{ColumnSpec, SubtaskSpec, TableRef};

/// A table or view the catalog lists.
#[derive(Debug, Clone)]
pub struct TableEntry {
    pub table: TableRef,
    pub kind: String,
}

/// Split `schema.table` into namespace and name. A name without a dot has no namespace.
pub fn split_name(requested: &str) -> (Option<&str>, &str) {
    match requested.rsplit_once('.') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => (Some(ns), name),
        _ => (None, requested),
    }
}

/// List tables and views, optionally of one namespace.
pub fn list_tables(
    conn: &Connection<'_>,
    source: &Source,
    namespace: Option<&str>,
) -> Result<Vec<TableEntry>, SourceError> {
    let (catalog, schema) = match (source.dialect, namespace) {
        // psqlODBC reads an empty schema as the current one: "%" is every schema.
        (Dialect::Postgres, None) => ("", "%"),
        (dialect, namespace) => namespace_args(dialect, namespace),
    };
    let mut entries = Vec::new();
    let rows = conn
        .tables(catalog, schema, "%", "")
        .map_err(|e| SourceError::odbc("listing tables", e))?;
    for row in rows {
        let row = row.map_err(|e| SourceError::odbc("listing tables", e))?;
        let text = |v: &odbc_api::parameter::VarCharArray<128>| {
            v.as_str().ok().flatten().map(str::to_string)
        };
        let name = row.table.as_str().ok().flatten().unwrap_or("").to_string();
        let kind = row
            .table_type
            .as_str()
            .ok()
            .flatten()
            .unwrap_or("")
            .to_string();
        if name.is_empty() || !is_user_table(&kind) {
            continue;
        }
        let table = TableRef {
            catalog: text(&row.catalog),
            schema: text(&row.schema),
            name,
        };
        if namespace.is_some_and(|ns| table.namespace() != ns) {
            continue;
        }
        if is_system_namespace(table.namespace()) && namespace.is_none() {
            continue;
        }
        entries.push(TableEntry { table, kind });
    }
    entries.sort_by_key(|e| e.table.to_string());
    Ok(entries)
}

fn is_user_table(kind: &str) -> bool {
    matches!(
        kind.to_ascii_uppercase().as_str(),
        "TABLE" | "VIEW" | "BASE TABLE"
    )
}

fn is_system_namespace(ns: &str) -> bool {
    matches!(
        ns,
        "pg_catalog" | "information_schema" | "mysql" | "performance_schema" | "sys"
    )
}

fn namespace_args(dialect: Dialect, namespace: Option<&str>) -> (&str, &str) {
    match (dialect, namespace) {
        (_, None) | (Dialect::Sqlite, _) => ("", ""),
        (d, Some(ns)) if d.namespace_is_catalog() => (ns, ""),
        (_, Some(ns)) => ("", ns),
    }
}

/// Find the table a job names (`schema.table` or `table`).
pub fn find_table(
    conn: &Connection<'_>,
    source: &Source,
    requested: &str,
) -> Result<TableRef, SourceError> {
    let (namespace, name) = split_name(requested);
    // SQLite has one namespace; accept `main.t` for symmetry with the folder names.
    let namespace = namespace.filter(|ns| !(source.dialect == Dialect::Sqlite && *ns == "main"));
    let (catalog, schema) = namespace_args(source.dialect, namespace);
    let rows = conn
        .tables(catalog, schema, name, "")
        .map_err(|e| SourceError::odbc(format!("looking up table {requested}"), e))?;
    let mut found = Vec::new();
    for row in rows {
        let row = row.map_err(|e| SourceError::odbc(format!("looking up table {requested}"), e))?;
        let get = |v: &odbc_api::parameter::VarCharArray<128>| {
            v.as_str().ok().flatten().map(str::to_string)
        };
        let table_name = row.table.as_str().ok().flatten().unwrap_or("");
        let kind = row.table_type.as_str().ok().flatten().unwrap_or("");
        if table_name != name || !is_user_table(kind) {
            continue;
        }
        let table = TableRef {
            catalog: get(&row.catalog),
            schema: get(&row.schema),
            name: name.to_string(),
        };
        if namespace.is_some_and(|ns| table.namespace() != ns) {
            continue;
        }
        found.push(table);
    }
    match found.len() {
        0 => Err(SourceError::TableNotFound {
            table: requested.to_string(),
        }),
        1 => Ok(found.remove(0)),
        _ => {
            // Unqualified and in several schemas: PostgreSQL's search path starts at public.
            if let Some(i) = found
                .iter()
                .position(|t| t.schema.as_deref() == Some("public"))
            {
                return Ok(found.remove(i));
            }
            Err(SourceError::AmbiguousTable {
                table: requested.to_string(),
                candidates: found
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

/// A table's columns in ordinal order.
pub fn columns(
    conn: &Connection<'_>,
    source: &Source,
    table: &TableRef,
) -> Result<Vec<ColumnSpec>, SourceError> {
    let (catalog, schema) = table_args(source.dialect, table);
    let what = || format!("reading the columns of {table}");
    let rows = conn
        .columns(catalog, schema, &table.name, "%")
        .map_err(|e| SourceError::odbc(what(), e))?;
    let mut columns = Vec::new();
    for row in rows {
        let row = row.map_err(|e| SourceError::odbc(what(), e))?;
        if row.table.as_str().ok().flatten() != Some(table.name.as_str()) {
            continue;
        }
        let name = row
            .column_name
            .as_str()
            .ok()
            .flatten()
            .unwrap_or("")
            .to_string();
        let type_name = row
            .type_name
            .as_str()
            .ok()
            .flatten()
            .unwrap_or("")
            .to_string();
        let mut spec = ColumnSpec::from_catalog(
            name,
            type_name,
            row.data_type,
            row.column_size.into_opt().map(i64::from),
            row.decimal_digits.into_opt().map(i64::from),
        );
        // SQL_NO_NULLS is 0; nullable and unknown both keep the NULL partition.
        spec.nullable = row.nullable != 0;
        columns.push((row.ordinal_position, spec));
    }
    columns.sort_by_key(|(position, _)| *position);
    Ok(columns.into_iter().map(|(_, c)| c).collect())
}

fn table_args(dialect: Dialect, table: &TableRef) -> (&str, &str) {
    if dialect == Dialect::Sqlite {
        return ("", "");
    }
    (
        table.catalog.as_deref().unwrap_or(""),
        table.schema.as_deref().unwrap_or(""),
    )
}

/// The primary key's column names in key order, empty when the table has none.
pub fn primary_key(
    conn: &Connection<'_>,
    source: &Source,
    table: &TableRef,
) -> Result<Vec<String>, SourceError> {
    if source.dialect == Dialect::MariaDb {
        // Connector/ODBC 3.1 reports KEY_SEQ as the column's position in the table, not in
        // the key, so `SQLPrimaryKeys` gives the key's columns in table order. Reading in
        // that order makes every key-range query sort the table.
        let sql = "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                   WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
                   ORDER BY ORDINAL_POSITION";
        let params = [table.namespace().to_string(), table.name.clone()];
        let rows = query_text(conn, sql, &params)?;
        return Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect());
    }
    let (catalog, schema) = table_args(source.dialect, table);
    let non_empty = |s: &str| (!s.is_empty()).then_some(s.to_string());
    let (catalog, schema) = (non_empty(catalog), non_empty(schema));
    let rows = conn
        .primary_keys(catalog.as_deref(), schema.as_deref(), &table.name)
        .map_err(|e| SourceError::odbc(format!("reading the primary key of {table}"), e))?;
    let mut key = Vec::new();
    for row in rows {
        let row =
            row.map_err(|e| SourceError::odbc(format!("reading the primary key of {table}"), e))?;
        if row.table.as_str().ok().flatten() != Some(table.name.as_str()) {
            continue;
        }
        let column = row.column.as_str().ok().flatten().unwrap_or("").to_string();
        key.push((row.key_seq, column));
    }
    key.sort();
    Ok(key.into_iter().map(|(_, c)| c).collect())
}

/// PostgreSQL: the most bytes of LOB values in one row among the subtask's first 1,000
/// rows. `octet_length` reads a TOASTed value's size from its pointer, without fetching or
/// decompressing it, so the sample is cheap however large the values.
pub fn largest_lob_row(
    conn: &Connection<'_>,
    source: &Source,
    spec: &SubtaskSpec,
) -> Result<Option<u64>, SourceError> {
    let lobs: Vec<String> = spec
        .columns
        .iter()
        .filter(|c| c.fetch.is_lob())
        .map(|c| format!("coalesce(octet_length({}), 0)", source.quote_ident(&c.name)))
        .collect();
    if source.dialect != Dialect::Postgres || lobs.is_empty() {
        return Ok(None);
    }
    let sum = [format!("{} AS b", lobs.join(" + "))];
    let sample = super::fetch::select_from(source, spec, &sum);
    let sql = format!("SELECT CAST(max(b) AS BIGINT) FROM ({sample} LIMIT 1000) AS s");
    let rows = query_text(conn, &sql, &[])?;
    Ok(rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse::<u64>().ok()))
}

/// The catalog's row estimate (PostgreSQL `reltuples`, MariaDB `TABLE_ROWS`), or an exact
/// count for SQLite, where counting is what the catalog would do anyway.
pub fn row_estimate(
    conn: &Connection<'_>,
    source: &Source,
    table: &TableRef,
) -> Result<Option<i64>, SourceError> {
    let ns = table.namespace().to_string();
    let (sql, params): (String, Vec<String>) = match source.dialect {
        Dialect::Postgres => (
            "SELECT CAST(c.reltuples AS BIGINT) FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = ? AND c.relname = ?"
                .into(),
            vec![ns, table.name.clone()],
        ),
        Dialect::MariaDb => (
            "SELECT TABLE_ROWS FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?"
                .into(),
            vec![ns, table.name.clone()],
        ),
        Dialect::Sqlite => (
            format!("SELECT COUNT(*) FROM {}", source.qualified(table)),
            vec![],
        ),
        Dialect::Other => return Ok(None),
    };
    let rows = query_text(conn, &sql, &params)?;
    let estimate = rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|n| *n >= 0);
    Ok(estimate)
}

/// The catalog's estimate of a table's size in bytes: PostgreSQL `pg_table_size` (heap and
/// TOAST, no indexes), MariaDB `DATA_LENGTH`, SQLite the pages `dbstat` counts for it.
/// `None` when the source keeps no such number (a view, a SQLite without `dbstat`).
pub fn size_estimate(
    conn: &Connection<'_>,
    source: &Source,
    table: &TableRef,
) -> Result<Option<u64>, SourceError> {
    let ns = table.namespace().to_string();
    let (sql, params): (&str, Vec<String>) = match source.dialect {
        Dialect::Postgres => (
            "SELECT CAST(pg_catalog.pg_table_size(c.oid) AS BIGINT) FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = ? AND c.relname = ? AND c.relkind IN ('r', 'p', 'm')",
            vec![ns, table.name.clone()],
        ),
        Dialect::MariaDb => (
            "SELECT DATA_LENGTH FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            vec![ns, table.name.clone()],
        ),
        Dialect::Sqlite => (
            "SELECT SUM(pgsize) FROM dbstat WHERE name = ?",
            vec![table.name.clone()],
        ),
        Dialect::Other => return Ok(None),
    };
    let rows = match query_text(conn, sql, &params) {
        Ok(rows) => rows,
        // SQLite built without the dbstat table: no estimate, not an error.
        Err(_) if source.dialect == Dialect::Sqlite => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse::<u64>().ok()))
}

/// `MIN` and `MAX` of a column over the rows a filter selects, as text; `None` when no row
/// has a value.
pub fn min_max(
    conn: &Connection<'_>,
    source: &Source,
    table: &TableRef,
    column: &str,
    filter: Option<&str>,
) -> Result<Option<(String, String)>, SourceError> {
    let col = source.quote_ident(column);
    let mut sql = format!(
        "SELECT MIN({col}), MAX({col}) FROM {}",
        source.qualified(table)
    );
    if let Some(filter) = filter {
        sql.push_str(&format!(" WHERE ({filter})"));
    }
    let rows = query_text(conn, &sql, &[])?;
    match rows.first().map(|r| (r[0].clone(), r[1].clone())) {
        Some((Some(min), Some(max))) => Ok(Some((min, max))),
        _ => Ok(None),
    }
}

/// Run a small query and return every value as text.
pub fn query_text(
    conn: &Connection<'_>,
    sql: &str,
    params: &[String],
) -> Result<Vec<Vec<Option<String>>>, SourceError> {
    let what = || format!("running `{sql}`");
    let params: Vec<_> = params.iter().map(|p| p.as_str().into_parameter()).collect();
    let cursor = conn
        .execute(sql, &params[..], None)
        .map_err(|e| SourceError::odbc(what(), e))?;
    let Some(mut cursor) = cursor else {
        return Ok(Vec::new());
    };
    let n_cols = odbc_api::ResultSetMetadata::num_result_cols(&mut cursor)
        .map_err(|e| SourceError::odbc(what(), e))? as u16;
    let mut rows = Vec::new();
    let mut buf = Vec::new();
    while let Some(mut row) = cursor
        .next_row()
        .map_err(|e| SourceError::odbc(what(), e))?
    {
        let mut values = Vec::with_capacity(n_cols as usize);
        for col in 1..=n_cols {
            let present = row
                .get_text(col, &mut buf)
                .map_err(|e| SourceError::odbc(what(), e))?;
            values.push(present.then(|| String::from_utf8_lossy(&buf).into_owned()));
        }
        rows.push(values);
    }
    Ok(rows)
}

/// `SELECT COUNT(*)` of a subtask's rows (its filter and partition), for validation.
pub fn count_rows(source: &Source, spec: &crate::model::SubtaskSpec) -> Result<u64, SourceError> {
    let conn = source.connect(super::connection::Purpose::Bulk)?;
    let mut sql = format!("SELECT COUNT(*) FROM {}", source.qualified(&spec.table));
    if let Some(predicate) = super::fetch::row_predicate(source, spec) {
        sql.push_str(&format!(" WHERE {predicate}"));
    }
    let rows = query_text(&conn, &sql, &[])?;
    let text = rows.first().and_then(|r| r[0].clone()).unwrap_or_default();
    text.trim().parse().map_err(|_| SourceError::Odbc {
        what: format!("running `{sql}`"),
        detail: format!("the count `{text}` is not a number"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_last_dot() {
        assert_eq!(split_name("public.orders"), (Some("public"), "orders"));
        assert_eq!(split_name("orders"), (None, "orders"));
        assert_eq!(split_name("a.b.c"), (Some("a.b"), "c"));
        assert_eq!(split_name(".x"), (None, ".x"));
    }
}
