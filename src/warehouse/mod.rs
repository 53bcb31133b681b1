//! The copy stage's side: warehouses reached over the PostgreSQL protocol (tokio-postgres;
//! psqlODBC has no `COPY FROM STDIN`). PostgreSQL loads each chunk with
//! client-side `COPY ... FROM STDIN` ([`postgres`]); Redshift loads a subtask with one
//! server-side `COPY ... FROM 's3://.../manifest.json' MANIFEST` ([`redshift`]). Both record
//! what they loaded in the bookkeeping table [`LOADS_TABLE`] in the same transaction, so a
//! copy happens exactly once however often it is repeated.
//!
//! Replacing an earlier run: each extraction of a subtask has a run id (in its manifest).
//! The first load of a new run deletes the rows an earlier run of the same subtask loaded —
//! selected by the subtask's filter and partition predicate — together with that run's
//! bookkeeping, in the same transaction. Rows dbhaul never loaded are left alone unless they
//! match a subtask dbhaul loaded before.

pub mod field_filter;
pub mod postgres;
pub mod redshift;
pub mod types;

use std::time::Duration;

use tokio_postgres::Client;

pub use crate::config::WarehouseKind;
use crate::config::WarehouseSettings;
use crate::model::failure::sqlstate_may_pass;
use crate::model::{ColumnSpec, Dialect, StageFailure, SubtaskSpec};
pub use crate::net::postgres::parse_url;
use crate::net::postgres::tls_connector;
use types::quote_ident;

/// The bookkeeping table, in the warehouse schema.
pub const LOADS_TABLE: &str = "dbhaul_loads";

/// A warehouse error with its cause and fix, and whether it was a lost or refused
/// connection (a restart, a network cut, an administrator's kill), which running the
/// subtask again may get past: told from tokio-postgres' typed error (the SQLSTATE of
/// [`sqlstate_may_pass`], a closed connection, a socket error), never from its words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WarehouseError {
    message: String,
    /// The server's SQLSTATE, when it sent one.
    sqlstate: Option<String>,
    lost_connection: bool,
}

impl From<WarehouseError> for StageFailure {
    fn from(error: WarehouseError) -> StageFailure {
        match error.lost_connection {
            true => StageFailure::Transient(error.message),
            false => StageFailure::Fatal(error.message),
        }
    }
}

/// Whether a tokio-postgres error says the connection was lost or refused (or the
/// transaction lost a race): the server's SQLSTATE when it sent one, else a closed
/// connection or a socket error underneath (refused, reset, timed out).
pub fn may_pass(error: &tokio_postgres::Error) -> bool {
    if let Some(code) = error.code() {
        return sqlstate_may_pass(code.code());
    }
    if error.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

impl WarehouseError {
    /// An error that running the subtask again will not get past.
    pub fn new(message: impl Into<String>) -> Self {
        WarehouseError {
            message: message.into(),
            sqlstate: None,
            lost_connection: false,
        }
    }

    /// A lost or refused connection: running the subtask again may succeed.
    pub fn lost_connection(message: impl Into<String>) -> Self {
        WarehouseError {
            message: message.into(),
            sqlstate: None,
            lost_connection: true,
        }
    }

    /// The server's SQLSTATE, when the error came from it.
    pub fn sqlstate(&self) -> Option<&str> {
        self.sqlstate.as_deref()
    }

    pub fn is_lost_connection(&self) -> bool {
        self.lost_connection
    }

    /// Describe a tokio-postgres error while doing `what`.
    pub fn from_pg(
        settings: &WarehouseSettings,
        what: &str,
        error: &tokio_postgres::Error,
    ) -> Self {
        let url = settings.display_url();
        let message = match error.as_db_error() {
            Some(db) => {
                let fix = match db.code().code() {
                    "28P01" | "28000" => {
                        "; check the user in warehouse.url and the password (warehouse.password_env)"
                    }
                    "3D000" => "; fix the database name in warehouse.url",
                    "42501" => {
                        "; grant the user USAGE and CREATE on the schema and INSERT, DELETE and \
                         SELECT on the tables"
                    }
                    "3F000" => "; create the schema or fix warehouse.schema",
                    _ => "",
                };
                format!("{} ({}){fix}", db.message(), db.code().code())
            }
            None => {
                let mut text = error.to_string();
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    text.push_str(": ");
                    text.push_str(&cause.to_string());
                    source = cause.source();
                }
                if error.is_closed() || text.contains("connect") || text.contains("refused") {
                    format!(
                        "{text}; check the host and port in warehouse.url and that the server runs"
                    )
                } else {
                    text
                }
            }
        };
        WarehouseError {
            message: format!("warehouse {url}: {what}: {message}"),
            sqlstate: error.code().map(|c| c.code().to_string()),
            lost_connection: may_pass(error),
        }
    }
}

/// Connect, with the password from `password_env` if given, TLS when the server offers it
/// (`sslmode` in the URL decides), and the session in UTC: timestamps with a time zone are
/// written in UTC without an offset, and must be read back the same way.
pub async fn connect(settings: &WarehouseSettings) -> Result<Client, WarehouseError> {
    let (mut config, verify) =
        parse_url(&settings.url).map_err(|e| WarehouseError::new(format!("warehouse.url: {e}")))?;
    if let Some(password) = &settings.password {
        config.password(password.expose());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name("dbhaul");
    let (client, connection) = config
        .connect(tls_connector(verify))
        .await
        .map_err(|e| WarehouseError::from_pg(settings, "cannot connect", &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("warehouse connection ended: {e}");
        }
    });
    client
        .batch_execute("SET timezone TO 'UTC'")
        .await
        .map_err(|e| WarehouseError::from_pg(settings, "setting the session time zone", &e))?;
    Ok(client)
}

/// A warehouse table as the copy stage uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    /// `"schema"."table"`, quoted.
    pub qualified: String,
    /// The target column COPY writes for each extracted column, in the chunk's column
    /// order, quoted; columns the warehouse computes are not among them.
    pub columns: Vec<String>,
    /// Extracted columns whose target column the warehouse computes: COPY leaves them out,
    /// and their fields are stripped from the chunk's rows on the way in. Always empty on
    /// Redshift, which has no generated columns.
    pub left_out: Vec<LeftOut>,
    /// The subtask's rows in the warehouse's SQL (filter and partition), if any.
    pub predicate: Option<String>,
}

/// An extracted column COPY does not write: the warehouse computes its target column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// Its field's position in the chunk's rows, from 0.
    pub position: usize,
    /// The target column's name, unquoted.
    pub column: String,
}

/// A column of a warehouse table, as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    pub name: String,
    /// Computed by the warehouse (`GENERATED ALWAYS AS (...)`): COPY may not write it.
    ///
    /// Identity columns, even `GENERATED ALWAYS AS IDENTITY`, are not generated in this
    /// sense: `COPY ... FROM` writes the values it is given into them, as
    /// `INSERT ... OVERRIDING SYSTEM VALUE` does. dbhaul keeps them in the COPY, so the
    /// source's ids are kept; leaving them out would number the rows anew on every load.
    pub generated: bool,
}

/// Find (or, with `create_tables`, create) the warehouse table of a subtask: the table of
/// the same name in `warehouse.schema`, matched exactly or else ignoring case, with a column
/// for every extracted column, matched the same way (see [`match_columns`]).
pub async fn resolve_table(
    client: &Client,
    settings: &WarehouseSettings,
    dialect: Dialect,
    spec: &SubtaskSpec,
) -> Result<TargetTable, WarehouseError> {
    let schema = &settings.schema;
    let wanted = &spec.table.name;
    let table = match find_table(client, settings, wanted).await? {
        Some(name) => name,
        None if settings.create_tables => {
            let columns = match settings.lob_urls {
                true => types::lobs_as_text(&spec.columns),
                false => spec.columns.clone(),
            };
            let sql = types::create_table_sql(settings.kind, dialect, schema, wanted, &columns);
            client.batch_execute(&sql).await.map_err(|e| {
                WarehouseError::from_pg(settings, &format!("creating {schema}.{wanted}"), &e)
            })?;
            tracing::info!(table = %format!("{schema}.{}", wanted.to_ascii_lowercase()), "created the warehouse table");
            wanted.to_ascii_lowercase()
        }
        None => {
            return Err(WarehouseError::new(format!(
                "warehouse {}: table {schema}.{wanted} does not exist; create it (docs/type-map.md \
                 shows matching types) or set warehouse.create_tables = true",
                settings.display_url()
            )));
        }
    };
    let target_columns = columns_of(client, settings, &table).await?;
    let matched = match_columns(&spec.columns, &target_columns).map_err(|mismatch| {
        WarehouseError::new(format!(
            "warehouse {}: {}",
            settings.display_url(),
            mismatch.describe(&format!("{schema}.{table}"), &target_columns)
        ))
    })?;
    let target_names: Vec<String> = target_columns.into_iter().map(|c| c.name).collect();
    let partition_column = spec.partition.as_ref().map(|p| {
        pick(&target_names, &p.column)
            .map(|c| quote_ident(&c))
            .unwrap_or_else(|| quote_ident(&p.column))
    });
    let mut predicates = Vec::new();
    if let Some(filter) = &spec.filter {
        predicates.push(format!("({filter})"));
    }
    if let (Some(partition), Some(column)) = (&spec.partition, &partition_column) {
        predicates.push(format!("({})", partition.bound.predicate(column)));
    }
    Ok(TargetTable {
        qualified: format!("{}.{}", quote_ident(schema), quote_ident(&table)),
        columns: matched.columns,
        left_out: matched.left_out,
        predicate: (!predicates.is_empty()).then(|| predicates.join(" AND ")),
    })
}

/// The table of `warehouse.schema` named `wanted`, exactly or else ignoring case.
async fn find_table(
    client: &Client,
    settings: &WarehouseSettings,
    wanted: &str,
) -> Result<Option<String>, WarehouseError> {
    let rows = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND lower(table_name::text) = lower($2)",
            &[&settings.schema, &wanted],
        )
        .await
        .map_err(|e| WarehouseError::from_pg(settings, "reading the catalog", &e))?;
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(pick(&names, wanted))
}

/// The columns of a table of `warehouse.schema`, in order, and which of them the
/// warehouse computes. PostgreSQL's information schema says `is_generated = 'ALWAYS'` for
/// a column whose `pg_attribute.attgenerated` is set (PostgreSQL 12 and later; older
/// servers, which have no generated columns, say `NEVER`). Redshift has no generated
/// columns and is asked only for the names.
async fn columns_of(
    client: &Client,
    settings: &WarehouseSettings,
    table: &str,
) -> Result<Vec<TargetColumn>, WarehouseError> {
    // Redshift is asked what it always was: the names.
    let generated = match settings.kind {
        WarehouseKind::Postgres => ", is_generated::text = 'ALWAYS'",
        WarehouseKind::Redshift => "",
    };
    let sql = format!(
        "SELECT column_name::text{generated} FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position"
    );
    let rows = client
        .query(&sql, &[&settings.schema, &table])
        .await
        .map_err(|e| WarehouseError::from_pg(settings, "reading the catalog", &e))?;
    Ok(rows
        .iter()
        .map(|r| TargetColumn {
            name: r.get(0),
            generated: !generated.is_empty() && r.get::<_, Option<bool>>(1) == Some(true),
        })
        .collect())
}

/// The name equal to `wanted`, else the one equal ignoring case.
fn pick(names: &[String], wanted: &str) -> Option<String> {
    names
        .iter()
        .find(|n| *n == wanted)
        .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(wanted)))
        .cloned()
}

/// How a chunk's fields go into a warehouse table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MatchedColumns {
    /// The quoted target columns COPY writes, in the chunk's order.
    columns: Vec<String>,
    left_out: Vec<LeftOut>,
}

/// Why a warehouse table cannot take a subtask's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ColumnMismatch {
    /// Source columns without a target column, by their names.
    Missing(Vec<String>),
    /// Every source column's target column is generated: COPY would have nothing to write.
    AllGenerated,
}

impl ColumnMismatch {
    /// The problem with `table` (`schema.table`) and its fix.
    fn describe(&self, table: &str, target: &[TargetColumn]) -> String {
        let names: Vec<&str> = target.iter().map(|c| c.name.as_str()).collect();
        match self {
            ColumnMismatch::Missing(missing) => format!(
                "table {table} has no column{} {} (it has {}); add {}, or drop the table and \
                 let create_tables make it",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                names.join(", "),
                if missing.len() == 1 { "it" } else { "them" },
            ),
            ColumnMismatch::AllGenerated => format!(
                "every column of table {table} that the source has is generated by the \
                 warehouse, so there is nothing to load; make at least one of them a plain \
                 column"
            ),
        }
    }
}

/// Match the extracted columns to a table's columns by name: exactly, else ignoring case,
/// in whatever order the table has them. A target column the warehouse computes is left
/// out of the COPY (its field is stripped from the rows); identity columns are written
/// like any other (see [`TargetColumn::generated`]); target columns the source lacks are
/// left to their defaults. Every source column missing from the table is named.
fn match_columns(
    source: &[ColumnSpec],
    target: &[TargetColumn],
) -> Result<MatchedColumns, ColumnMismatch> {
    let mut matched = MatchedColumns {
        columns: Vec::with_capacity(source.len()),
        left_out: Vec::new(),
    };
    let mut missing = Vec::new();
    for (position, column) in source.iter().enumerate() {
        let found = target.iter().find(|t| t.name == column.name).or_else(|| {
            target
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(&column.name))
        });
        match found {
            None => missing.push(column.name.clone()),
            Some(t) if t.generated => matched.left_out.push(LeftOut {
                position,
                column: t.name.clone(),
            }),
            Some(t) => matched.columns.push(quote_ident(&t.name)),
        }
    }
    if !missing.is_empty() {
        return Err(ColumnMismatch::Missing(missing));
    }
    if matched.columns.is_empty() && !source.is_empty() {
        return Err(ColumnMismatch::AllGenerated);
    }
    Ok(matched)
}

/// The bookkeeping table, created if missing (PostgreSQL and Redshift alike).
pub fn loads_ddl(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (\
         task varchar(64) NOT NULL, \
         subtask varchar(512) NOT NULL, \
         run varchar(64) NOT NULL, \
         chunk varchar(64) NOT NULL, \
         row_count bigint NOT NULL, \
         sha256 varchar(64) NOT NULL, \
         loaded_at timestamp NOT NULL, \
         PRIMARY KEY (task, subtask, run, chunk))",
        quote_ident(schema),
        quote_ident(LOADS_TABLE)
    )
}

/// `"schema"."dbhaul_loads"`.
pub fn loads_table(schema: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(LOADS_TABLE))
}

/// Create the bookkeeping table if it is missing.
pub async fn ensure_loads_table(
    client: &Client,
    settings: &WarehouseSettings,
) -> Result<(), WarehouseError> {
    client
        .batch_execute(&loads_ddl(&settings.schema))
        .await
        .map_err(|e| {
            WarehouseError::from_pg(
                settings,
                &format!(
                    "creating the bookkeeping table {}.{LOADS_TABLE}",
                    settings.schema
                ),
                &e,
            )
        })
}

/// Rows the bookkeeping table records for one run of a subtask.
pub async fn loaded_rows(
    client: &Client,
    settings: &WarehouseSettings,
    task: &str,
    subtask: &str,
    run: &str,
) -> Result<i64, WarehouseError> {
    let sql = format!(
        "SELECT COALESCE(SUM(row_count), 0)::bigint FROM {} \
         WHERE task = $1 AND subtask = $2 AND run = $3",
        loads_table(&settings.schema)
    );
    let row = client
        .query_one(&sql, &[&task, &subtask, &run])
        .await
        .map_err(|e| WarehouseError::from_pg(settings, "reading the bookkeeping table", &e))?;
    Ok(row.get(0))
}

/// A timestamp literal for `loaded_at`, in UTC.
fn now_literal() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// An SQL string literal: single quotes doubled.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Check, changing nothing, that the warehouse can take these subtasks: the schema, the
/// bookkeeping table (or the right to create it), every table with its columns (or the
/// right to create it with `create_tables`), and INSERT and DELETE on them.
pub async fn check_access(
    client: &Client,
    settings: &WarehouseSettings,
    specs: &[SubtaskSpec],
) -> Result<String, WarehouseError> {
    let schema = &settings.schema;
    let pg = |what: &str, e: tokio_postgres::Error| WarehouseError::from_pg(settings, what, &e);
    let allowed = |row: tokio_postgres::Row| row.get::<_, Option<bool>>(0).unwrap_or(false);
    let schema_exists = client
        .query_opt(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
            &[schema],
        )
        .await
        .map_err(|e| pg("reading the catalog", e))?
        .is_some();
    if !schema_exists {
        return Err(WarehouseError::new(format!(
            "warehouse {}: schema `{schema}` does not exist; create it or fix warehouse.schema",
            settings.display_url()
        )));
    }
    let can_create = allowed(
        client
            .query_one("SELECT has_schema_privilege($1, 'CREATE')", &[schema])
            .await
            .map_err(|e| pg("checking privileges", e))?,
    );
    let mut problems = Vec::new();
    let mut tables: Vec<&SubtaskSpec> = Vec::new();
    for spec in specs {
        if !tables.iter().any(|t| t.table == spec.table) {
            tables.push(spec);
        }
    }
    let mut to_create = 0;
    let mut checked: Vec<(&str, &[ColumnSpec])> = vec![(LOADS_TABLE, &[])];
    checked.extend(
        tables
            .iter()
            .map(|s| (s.table.name.as_str(), s.columns.as_slice())),
    );
    for (name, columns) in checked {
        let Some(table) = find_table(client, settings, name).await? else {
            if name == LOADS_TABLE || settings.create_tables {
                to_create += 1;
                if !can_create {
                    problems.push(format!(
                        "{schema}.{name} is missing and the user may not create tables in \
                         `{schema}`; GRANT CREATE ON SCHEMA {schema}, or create it"
                    ));
                }
            } else {
                problems.push(format!(
                    "table {schema}.{name} does not exist; create it (docs/type-map.md) or set \
                     warehouse.create_tables = true"
                ));
            }
            continue;
        };
        let qualified = format!("{}.{}", quote_ident(schema), quote_ident(&table));
        for privilege in ["INSERT", "DELETE", "SELECT"] {
            let ok = allowed(
                client
                    .query_one(
                        "SELECT has_table_privilege($1, $2)",
                        &[&qualified, &privilege],
                    )
                    .await
                    .map_err(|e| pg("checking privileges", e))?,
            );
            if !ok {
                problems.push(format!(
                    "no {privilege} privilege on {schema}.{table}; GRANT {privilege} ON \
                     {schema}.{table} TO the warehouse user"
                ));
            }
        }
        if !columns.is_empty() {
            let target = columns_of(client, settings, &table).await?;
            if let Err(mismatch) = match_columns(columns, &target) {
                problems.push(mismatch.describe(&format!("{schema}.{table}"), &target));
            }
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{}: {} tables ready{}",
            settings.display_url(),
            tables.len(),
            if to_create > 0 {
                format!(", {to_create} to be created (bookkeeping included)")
            } else {
                String::new()
            }
        ))
    } else {
        Err(WarehouseError::new(format!(
            "warehouse {}: {}",
            settings.display_url(),
            problems.join("; ")
        )))
    }
}

/// Before a run: create the bookkeeping table and, with `create_tables`, missing tables —
/// once, here, rather than from several copiers at once.
pub async fn prepare(
    client: &Client,
    settings: &WarehouseSettings,
    dialect: Dialect,
    specs: &[SubtaskSpec],
) -> Result<(), WarehouseError> {
    // Several agents prepare the same warehouse at once, and PostgreSQL's `CREATE ... IF NOT
    // EXISTS` is not safe against a concurrent create of the same name: the loser fails with
    // a duplicate key (23505) or duplicate table (42P07). Tried again, it finds the table.
    let mut attempt = 0u64;
    loop {
        match prepare_once(client, settings, dialect, specs).await {
            Err(e) if attempt < 5 && is_concurrent_create(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt + fastrand::u64(..100)))
                    .await;
            }
            other => return other,
        }
    }
}

fn is_concurrent_create(e: &WarehouseError) -> bool {
    matches!(e.sqlstate(), Some("23505" | "42P07" | "42710"))
}

async fn prepare_once(
    client: &Client,
    settings: &WarehouseSettings,
    dialect: Dialect,
    specs: &[SubtaskSpec],
) -> Result<(), WarehouseError> {
    ensure_loads_table(client, settings).await?;
    let mut done: Vec<&crate::model::TableRef> = Vec::new();
    for spec in specs {
        if !done.contains(&&spec.table) {
            resolve_table(client, settings, dialect, spec).await?;
            done.push(&spec.table);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(names: &[&str]) -> Vec<ColumnSpec> {
        names
            .iter()
            .map(|n| ColumnSpec::from_catalog(n.to_string(), "int8".into(), -5, None, None))
            .collect()
    }

    /// Target columns; a name ending in `*` is generated.
    fn target(names: &[&str]) -> Vec<TargetColumn> {
        names
            .iter()
            .map(|n| TargetColumn {
                name: n.trim_end_matches('*').to_string(),
                generated: n.ends_with('*'),
            })
            .collect()
    }

    /// What COPY writes (unquoted here) and what it leaves out, by position and name.
    fn matched(columns: &[&str], left_out: &[(usize, &str)]) -> MatchedColumns {
        MatchedColumns {
            columns: columns.iter().map(|c| quote_ident(c)).collect(),
            left_out: left_out
                .iter()
                .map(|(position, column)| LeftOut {
                    position: *position,
                    column: column.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn columns_match_by_name_and_generated_ones_are_left_out() {
        let cases: &[(&[&str], &[&str], MatchedColumns)] = &[
            // Same names, same order.
            (&["id", "v"], &["id", "v"], matched(&["id", "v"], &[])),
            // Another order: COPY names them in the chunk's order.
            (&["id", "v"], &["v", "id"], matched(&["id", "v"], &[])),
            // Exactly, else ignoring case; an exact match wins.
            (
                &["ID", "NOTE"],
                &["id", "note", "NOTE"],
                matched(&["id", "NOTE"], &[]),
            ),
            (&["Note"], &["note", "NOTE"], matched(&["note"], &[])),
            // Extra target columns are left to their defaults.
            (&["v"], &["id", "v", "loaded"], matched(&["v"], &[])),
            // A generated target column is left out, with its field's position.
            (
                &["id", "price", "qty", "total"],
                &["total*", "qty", "id", "price"],
                matched(&["id", "price", "qty"], &[(3, "total")]),
            ),
            (
                &["a", "b", "c"],
                &["A*", "b", "C*"],
                matched(&["b"], &[(0, "A"), (2, "C")]),
            ),
        ];
        for (from, to, expected) in cases {
            assert_eq!(
                match_columns(&source(from), &target(to)).as_ref(),
                Ok(expected),
                "{from:?} into {to:?}"
            );
        }
    }

    #[test]
    fn a_table_that_cannot_take_the_rows_is_refused_naming_what_is_wrong() {
        let mismatch = match_columns(&source(&["id", "v", "w"]), &target(&["id"])).unwrap_err();
        assert_eq!(
            mismatch,
            ColumnMismatch::Missing(vec!["v".into(), "w".into()])
        );
        assert_eq!(
            mismatch.describe("wh.t", &target(&["id"])),
            "table wh.t has no columns v, w (it has id); add them, or drop the table and let \
             create_tables make it"
        );
        let one = match_columns(&source(&["id", "v"]), &target(&["ID", "x"])).unwrap_err();
        assert_eq!(
            one.describe("wh.t", &target(&["ID", "x"])),
            "table wh.t has no column v (it has ID, x); add it, or drop the table and let \
             create_tables make it"
        );
        assert_eq!(
            match_columns(&source(&["total"]), &target(&["id", "total*"])),
            Err(ColumnMismatch::AllGenerated)
        );
    }
}
