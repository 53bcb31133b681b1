//! The native path for PostgreSQL sources: `COPY (SELECT …) TO STDOUT (FORMAT csv)` over
//! PostgreSQL's own protocol (tokio-postgres), instead of psqlODBC parsing and re-printing
//! every value on one core (several times slower than the server's own COPY). The server writes the CSV; dbhaul counts
//! rows, notes the key of each batch's last row when the read is in key order, and hands
//! the bytes to the compressor.
//!
//! Every column type takes this path (`text`, `jsonb`, arrays, enums, domains, ranges,
//! composites, `xml`, `bytea` …): a value is written as the server's own text for it,
//! through [`pg_text_item`], which the ODBC path uses too where psqlODBC would convert, so
//! both paths write the same text. Only what this path cannot honour goes to the ODBC
//! path: another database, `files.null_string` set, `files.lob_objects`, or
//! `source.native_copy = false`. A `DSN=` connection string is resolved through the driver
//! manager's `odbc.ini` ([`super::connection::Source::postgres_params`]).
//!
//! **Large values.** COPY sends a row as one message, held whole by the client: a row with a
//! 100 MB value would be held once by the protocol and again in the batch. So a column
//! that can hold large values (a LOB in the catalog: unbounded text, `bytea`, `json`,
//! arrays …) is selected as `CASE WHEN <value is larger than LARGE_VALUE_BYTES> THEN NULL
//! ELSE <value> END`, and a first, hidden field says which values of the row were left out
//! and where the row lives (`tableoid:ctid:flags`; NULL for the usual row, which costs one
//! byte). Such a row is rebuilt on our side: its small fields are copied, each large value
//! is read on a second connection **in the same snapshot** (`pg_export_snapshot`) in 1 MiB
//! slices by the row's address, and written quoted (text) or as hex (bytea), passing the
//! batch on every few MB. A view has no row address: its values come in the row, held
//! once.
//!
//! **Two connections.** The server prints the CSV on one core per COPY, so a large read is
//! cut into ranges ([`Ranges`]) read on two connections in one snapshot: a whole table at
//! block numbers (`ctid` ranges, PostgreSQL 14+), a key-ordered read at values of its first
//! key column from `pg_stats`. One range streams on while the next is read ahead on the
//! other connection (at most [`AHEAD_BYTES`]); rows come in the order one COPY gives them.
//! Small tables, subtasks with a predicate, views and reads with large values aside are
//! one COPY, and so is a read whose second connection cannot be had.

use bytes::Bytes;
use futures::StreamExt;

use super::connection::Source;
use super::fetch::{KeyOrder, block_rows};
use super::{Dialect, SourceError};
use crate::config::FileSettings;
use crate::model::chunk::BinaryFormat;
use crate::model::{ColumnSpec, SubtaskSpec};

/// A value larger than this (its text, in bytes; a `bytea` half this) is not sent in its
/// row but read in slices on the side.
pub const LARGE_VALUE_BYTES: u64 = 1024 * 1024;
/// Bytes of one slice of a large value.
const SLICE_BYTES: u64 = 1024 * 1024;
/// With large values about, a batch is passed on once it holds this many bytes.
const FLUSH_BYTES: usize = 4 * 1024 * 1024;

/// How to reach the server, from the ODBC connection string (or the DSN it names).
#[derive(Clone)]
pub struct PgParams {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<String>,
    /// libpq's `sslmode`, as psqlODBC's `SSLmode` gives it.
    pub sslmode: String,
}

/// How a subtask is read on the native path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativePlan {
    /// The `COPY … TO STDOUT` statement.
    pub sql: String,
    /// Each row starts with the hidden field of large values (see the module doc).
    pub marker: bool,
    /// Per subtask column: how a large value of it is read on the side.
    pub large: Vec<Option<LargeValue>>,
    /// The key's positions among the subtask's columns, when the read is in key order.
    pub key: Option<Vec<usize>>,
    /// The table, quoted, as the side reads name it.
    pub table: String,
    /// What comes before the hex digits of a `bytea` (`files.binary_format`).
    pub binary_prefix: Vec<u8>,
    /// A read without large values aside that may be cut into ranges read on two
    /// connections (see [`NativeReader::read`]): a key-ordered read, or a whole table.
    pub ranges: Option<Ranges>,
}

/// The parts of a COPY that the condition of one range goes between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges {
    /// `SELECT … FROM t [WHERE …]`: the subtask's predicate and the resume condition.
    select: String,
    /// Whether `select` has a WHERE clause already.
    has_where: bool,
    cut: Cut,
    /// ` ORDER BY …` of the whole key, or nothing.
    order_by: String,
    /// `TO STDOUT (…)`.
    options: String,
}

/// What a read is cut along.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cut {
    /// Values of the first key column (qualified and quoted; and its bare name for
    /// `pg_stats`): ranges `(low, high]`, in key order.
    Key { column: String, name: String },
    /// Blocks of a table read whole: ranges `[low, high)` of `ctid` (a TID range scan,
    /// PostgreSQL 14 and later), in the order a sequential scan reads them.
    Blocks,
}

impl Ranges {
    /// The COPY of the rows of one range: above `low` (if given) and up to `high` (if
    /// given). Ranges cut at the same bounds partition the rows exactly, whatever the
    /// bounds are: a row is above a bound or not.
    pub fn sql(&self, low: Option<&str>, high: Option<&str>) -> String {
        let mut conditions = Vec::with_capacity(2);
        match &self.cut {
            Cut::Key { column, .. } => {
                if let Some(low) = low {
                    conditions.push(format!("{column} > {}", literal(low)));
                }
                if let Some(high) = high {
                    conditions.push(format!("{column} <= {}", literal(high)));
                }
            }
            Cut::Blocks => {
                if let Some(low) = low {
                    conditions.push(format!("ctid >= {}::tid", literal(&format!("({low},0)"))));
                }
                if let Some(high) = high {
                    conditions.push(format!("ctid < {}::tid", literal(&format!("({high},0)"))));
                }
            }
        }
        let mut select = self.select.clone();
        if !conditions.is_empty() {
            select.push_str(if self.has_where { " AND " } else { " WHERE " });
            select.push_str(&conditions.join(" AND "));
        }
        format!("COPY ({select}{}) {}", self.order_by, self.options)
    }
}

/// A column whose large values are read on the side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeValue {
    /// The value's bytes as the row would have held them: its text in UTF-8 (already
    /// trimmed with `files.rtrim`), or a `bytea`'s bytes.
    bytes: String,
    binary: bool,
}

/// Why the native path does not read a subtask (it takes the ODBC path), if it does not.
pub fn declines(source: &Source, spec: &SubtaskSpec, files: &FileSettings) -> Option<String> {
    if source.dialect != Dialect::Postgres {
        return Some("not a PostgreSQL source".into());
    }
    if !files.null_string.is_empty() {
        // PostgreSQL leaves "" unquoted when NULL is written otherwise; the encoder quotes it.
        return Some("files.null_string is set".into());
    }
    if files.lob_objects_over.is_some() && spec.has_lobs() {
        return Some("files.lob_objects sends LOB values to objects of their own".into());
    }
    None
}

/// The native read of a subtask, or why it takes the ODBC path. `row_address`: the
/// relation has `tableoid` and `ctid` (a table, not a view), so large values can be read
/// on the side.
pub fn plan(
    source: &Source,
    spec: &SubtaskSpec,
    files: &FileSettings,
    order: &KeyOrder,
    row_address: bool,
) -> Result<NativePlan, String> {
    if let Some(why) = declines(source, spec, files) {
        return Err(why);
    }
    let key_columns: Vec<usize> = spec
        .key
        .as_ref()
        .map(|k| k.columns.clone())
        .unwrap_or_default();
    let mut items = Vec::with_capacity(spec.columns.len() + 1);
    let mut large = Vec::with_capacity(spec.columns.len());
    let mut conditions = Vec::new();
    for (i, column) in spec.columns.iter().enumerate() {
        let item = pg_text_item(source, column, Path::Native(files));
        let side = row_address && column.fetch.is_lob() && !key_columns.contains(&i);
        if !side {
            items.push(item);
            large.push(None);
            continue;
        }
        let condition = too_large(source, column);
        items.push(format!("CASE WHEN {condition} THEN NULL ELSE {item} END"));
        conditions.push(condition);
        large.push(Some(LargeValue {
            bytes: value_bytes(source, column, files),
            binary: column.fetch.is_binary(),
        }));
    }
    let marker = !conditions.is_empty();
    if marker {
        let flags: Vec<String> = conditions
            .iter()
            .map(|c| format!("CASE WHEN {c} THEN '1' ELSE '0' END"))
            .collect();
        items.insert(
            0,
            format!(
                "CASE WHEN {} THEN tableoid::text || ':' || ctid::text || ':' || {} END",
                conditions.join(" OR "),
                flags.join(" || ")
            ),
        );
    }
    let mut select = super::fetch::select_from(source, spec, &items);
    let mut has_where = super::fetch::row_predicate(source, spec).is_some();
    let options = format!(
        "TO STDOUT (FORMAT csv, DELIMITER {}, NULL '', QUOTE '\"')",
        literal(&(files.delimiter as char).to_string()),
    );
    let keyed = spec.key.is_some() && (order.ordered || order.after.is_some());
    // A whole table (no predicate) read in no order can be cut into blocks.
    let mut ranges = (!keyed && !marker && !has_where).then(|| Ranges {
        select: select.clone(),
        has_where,
        cut: Cut::Blocks,
        order_by: String::new(),
        options: options.clone(),
    });
    if keyed {
        let names = super::fetch::key_names(source, spec);
        if let Some(after) = &order.after {
            let joiner = if has_where { " AND " } else { " WHERE " };
            select = format!("{select}{joiner}({})", after_literals(spec, &names, after));
            has_where = true;
        }
        let order_by = format!(" ORDER BY {}", names.join(", "));
        if !marker {
            ranges = Some(Ranges {
                select: select.clone(),
                has_where,
                cut: Cut::Key {
                    column: names[0].clone(),
                    name: spec.columns[key_columns[0]].name.clone(),
                },
                order_by: order_by.clone(),
                options: options.clone(),
            });
        }
        select.push_str(&order_by);
    }
    Ok(NativePlan {
        sql: format!("COPY ({select}) {options}"),
        marker,
        large,
        key: keyed.then_some(key_columns),
        table: source.qualified(&spec.table),
        binary_prefix: files.binary_format.prefix().to_vec(),
        ranges,
    })
}

/// Which read a column's select item is for.
#[derive(Debug, Clone, Copy)]
pub enum Path<'f> {
    /// The server's COPY: it prints every value itself, trimmed and in the binary format
    /// the file settings ask for.
    Native(&'f FileSettings),
    /// psqlODBC: it converts dates, times, numbers and money it knows (and changes some:
    /// `infinity`, BC dates, years past 9999, money extremes), so those are asked for as
    /// text; strings, floats (fetched as numbers) and `bytea` (as bytes) come as they are.
    Odbc,
}

/// A PostgreSQL column as selected so that its text is the same on both paths and is the
/// server's own: booleans as 1/0, a `timestamptz` in UTC without offset and a uuid in
/// capitals (as psqlODBC has always given them, so files of earlier runs still match);
/// `xml` as its stored text (the output function drops a prolog); every other type as its
/// output function prints it.
pub fn pg_text_item(source: &Source, column: &ColumnSpec, path: Path<'_>) -> String {
    let name = source.quote_ident(&column.name);
    let ty = column.source_type.to_ascii_lowercase();
    let as_text = |expr: String| match path {
        Path::Native(_) => expr,
        Path::Odbc => format!("CAST({expr} AS text)"),
    };
    match ty.as_str() {
        _ if is_character(&ty) => match path {
            Path::Native(files) if files.rtrim => format!("rtrim({name}, ' ')"),
            _ => name,
        },
        "float4" | "float8" | "real" | "double precision" => name,
        "bytea" => match path {
            Path::Native(files) if files.binary_format == BinaryFormat::Hex => {
                format!("encode({name}, 'hex')")
            }
            _ => name,
        },
        "bool" | "boolean" => format!("CASE WHEN {name} THEN '1' WHEN NOT {name} THEN '0' END"),
        "uuid" => format!("upper({name}::text)"),
        "timestamptz" | "timestamp with time zone" => {
            as_text(format!("({name} AT TIME ZONE 'UTC')"))
        }
        "xml" => format!("CAST({name} AS text)"),
        // Their cast to text differs from their output (`/32` is added), and psqlODBC
        // passes them through untouched.
        "inet" | "cidr" => name,
        // Types psqlODBC passes through untouched would be fine as they are; asking for
        // text costs the server little and covers domains over the types it converts.
        _ => as_text(name),
    }
}

fn is_character(ty: &str) -> bool {
    matches!(
        ty,
        "varchar"
            | "bpchar"
            | "char"
            | "text"
            | "character varying"
            | "character"
            | "name"
            | "citext"
    )
}

/// The SQL condition "this value is too large to come in its row". Cheap where it can be:
/// the length of a string or `bytea` is read from its header; for other types the stored
/// size stands in (their text is larger, by a factor this allows for).
fn too_large(source: &Source, column: &ColumnSpec) -> String {
    let name = source.quote_ident(&column.name);
    let ty = column.source_type.to_ascii_lowercase();
    match ty.as_str() {
        _ if is_character(&ty) => format!("octet_length({name}) > {LARGE_VALUE_BYTES}"),
        "bytea" => format!("octet_length({name}) > {}", LARGE_VALUE_BYTES / 2),
        "json" | "xml" => format!("octet_length(CAST({name} AS text)) > {LARGE_VALUE_BYTES}"),
        _ => format!("pg_column_size({name}) > {}", LARGE_VALUE_BYTES / 4),
    }
}

/// The bytes of a large value as the row would have brought them, for the side read.
fn value_bytes(source: &Source, column: &ColumnSpec, files: &FileSettings) -> String {
    let name = source.quote_ident(&column.name);
    if column.source_type.eq_ignore_ascii_case("bytea") {
        return format!("{name} || ''::bytea");
    }
    let text = match pg_text_item(source, column, Path::Native(files)) {
        item if item == name => format!("CAST({name} AS text)"),
        item => format!("CAST({item} AS text)"),
    };
    format!("convert_to({text}, 'UTF8')")
}

/// `(k1 > 'v1') OR (k1 = 'v1' AND k2 > 'v2') …` with the values as literals (COPY takes no
/// parameters); plain numbers bare, everything else quoted, which PostgreSQL converts to
/// the column's type.
fn after_literals(spec: &SubtaskSpec, names: &[String], values: &[String]) -> String {
    let key = spec.key.as_ref().expect("a key");
    super::fetch::key_after(names, |i| {
        let column = &spec.columns[key.columns[i]];
        let numeric = matches!(
            column.family(),
            crate::model::ValueFamily::Integer | crate::model::ValueFamily::Decimal
        );
        if numeric && super::fetch::is_plain_number(&values[i]) {
            values[i].clone()
        } else {
            literal(&values[i])
        }
    })
}

/// A PostgreSQL string literal (the session has `standard_conforming_strings` on).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Where the native path's batches go; an `Err` stops the read.
pub trait BatchOut {
    /// `rows` rows end in `bytes`; with `ends_row` false the last of them goes on in the
    /// next batch (a large value passed on mid-row). `last_key`: the key of the last row
    /// ended, when the read is in key order.
    fn batch(
        &mut self,
        bytes: Vec<u8>,
        rows: u64,
        ends_row: bool,
        last_key: Option<Vec<String>>,
    ) -> Result<(), super::fetch::Stop>;
}

/// A connection for the native path, on a runtime of its own: it blocks the calling
/// thread (the extractor's own), never the daemon's async workers.
pub struct NativeReader {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    params: PgParams,
}

impl NativeReader {
    pub fn open(params: &PgParams) -> Result<NativeReader, SourceError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SourceError::Odbc {
                what: "starting the native COPY reader".into(),
                detail: e.to_string(),
            })?;
        let client = runtime.block_on(connect(params))?;
        Ok(NativeReader {
            runtime,
            client,
            params: params.clone(),
        })
    }

    /// Whether large values of `table` (quoted) can be read aside: it is a relation with
    /// row addresses (a table, a partitioned table, a materialized view; not a view), and
    /// the server exports snapshots for a second connection to join (a server that will
    /// not, or a view, sends its values whole in their rows).
    pub fn can_read_large_values_aside(&self, table: &str) -> Result<bool, SourceError> {
        self.runtime.block_on(async {
            let exported = self
                .client
                .batch_execute(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                     SELECT pg_export_snapshot(); ROLLBACK",
                )
                .await;
            if let Err(e) = exported {
                tracing::debug!("the source exports no snapshot ({e}): large values come whole");
                self.client
                    .batch_execute("ROLLBACK")
                    .await
                    .map_err(|e| pg_error(&e, "ending a snapshot probe", ""))?;
                return Ok(false);
            }
            let row = self
                .client
                .query_opt(
                    "SELECT c.relkind::text, \
                       EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid), \
                       COALESCE(pg_relation_size(NULLIF(c.reltoastrelid, 0)), 0) \
                     FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)",
                    &[&table],
                )
                .await
                .map_err(|e| pg_error(&e, &format!("looking up {table}"), ""))?;
            let Some(row) = row else {
                return Ok(false);
            };
            let (kind, children, toasted): (String, bool, i64) =
                (row.get(0), row.get(1), row.get(2));
            // A value over LARGE_VALUE_BYTES is stored out of line, in the TOAST table (no
            // compression gets one under the ~2 kB a row may hold inline): a table without
            // children whose TOAST table is empty holds none, and is read as plainly as a
            // table without LOB columns (a value written since comes whole in its row).
            if toasted == 0 && !children && matches!(kind.as_str(), "r" | "m") {
                return Ok(false);
            }
            Ok(matches!(kind.as_str(), "r" | "p" | "m"))
        })
    }

    /// Where a read of `table` (quoted) may be cut; empty when it is read with one COPY.
    /// Asked before the read's snapshot: bounds only choose where to cut, any cut is exact.
    ///
    /// Ranges are about [`RANGE_BLOCKS`] blocks of the table each, and a table of fewer
    /// than three is read whole. A key-ordered read is cut at values of its first key
    /// column from the server's statistics (`pg_stats` histogram bounds, so at most about
    /// a hundred ranges; none for a table never analysed). A whole table is cut at block
    /// numbers when it is a plain table (not a view) on PostgreSQL 14 or later (TID range
    /// scans).
    /// A query the server refuses (no access to `pg_stats`, say) leaves one COPY; a lost
    /// connection is the read's error.
    pub fn range_bounds(&self, table: &str, ranges: &Ranges) -> Result<Vec<String>, SourceError> {
        let bounds = match &ranges.cut {
            Cut::Key { name, .. } => self.key_bounds(table, name),
            Cut::Blocks => self.block_bounds(table),
        };
        match bounds {
            Ok(bounds) => Ok(bounds),
            Err(e)
                if e.as_db_error().is_some()
                    && !e.code().is_some_and(|c| {
                        c.code().starts_with("57") || c.code().starts_with("08")
                    }) =>
            {
                tracing::debug!("{table} is read with one COPY ({e})");
                Ok(Vec::new())
            }
            Err(e) => Err(pg_error(&e, "sizing the read's ranges", "")),
        }
    }

    fn key_bounds(&self, table: &str, column: &str) -> Result<Vec<String>, tokio_postgres::Error> {
        let query = "WITH r AS (SELECT c.relname, n.nspname, c.relpages \
                       FROM pg_catalog.pg_class c \
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                       WHERE c.oid = to_regclass($1)), \
                     h AS (SELECT s.histogram_bounds::text::text[] AS b, r.relpages \
                       FROM pg_catalog.pg_stats s, r \
                       WHERE s.schemaname = r.nspname AND s.tablename = r.relname \
                         AND s.attname = $2 ORDER BY s.inherited DESC LIMIT 1) \
                     SELECT u.v, h.relpages::int8 FROM h, \
                       unnest(h.b) WITH ORDINALITY AS u(v, n) ORDER BY u.n";
        let rows = self
            .runtime
            .block_on(self.client.query(query, &[&table, &column]))?;
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let pages: i64 = first.get(1);
        let values: Vec<String> = rows
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(0))
            .collect();
        Ok(thin_bounds(values, pages / RANGE_BLOCKS))
    }

    fn block_bounds(&self, table: &str) -> Result<Vec<String>, tokio_postgres::Error> {
        let query = "SELECT current_setting('server_version_num')::int >= 140000 \
                       AND c.relkind IN ('r', 'm'), \
                     pg_relation_size(c.oid) / current_setting('block_size')::int8 \
                     FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)";
        let row = self
            .runtime
            .block_on(self.client.query_opt(query, &[&table]))?;
        let Some(row) = row else {
            return Ok(Vec::new());
        };
        let (scannable, blocks): (bool, i64) = (row.get(0), row.get(1));
        if !scannable || blocks < 3 * RANGE_BLOCKS {
            return Ok(Vec::new());
        }
        Ok((1..=(blocks - 1) / RANGE_BLOCKS)
            .map(|i| (i * RANGE_BLOCKS).to_string())
            .collect())
    }

    /// Run the plan's COPY in one snapshot and pass its rows on in batches of
    /// [`block_rows`] rows (and of a few MB where large values are about). Returns the
    /// rows read.
    ///
    /// A read given `bounds` (see [`NativeReader::range_bounds`]) is read range by range on
    /// two connections in the same snapshot: while one range streams on, the next is read
    /// on the other connection into at most [`AHEAD_BYTES`], and passed on when its turn
    /// comes. The server works on two cores (the output functions of `jsonb`, `numeric`
    /// and dates, the index scan of a key-ordered read); rows come in the order one COPY
    /// gives them, so each batch's last key is recorded as before.
    pub fn read(
        &self,
        spec: &SubtaskSpec,
        plan: &NativePlan,
        bounds: &[String],
        files: &FileSettings,
        out: &mut impl BatchOut,
    ) -> Result<u64, SourceError> {
        let table = spec.table.to_string();
        let mut gather = Gather {
            bytes: Vec::with_capacity(4 << 20),
            rows: 0,
            total: 0,
            last_row: Bytes::new(),
            batch_rows: block_rows(spec) as u64,
            flush_bytes: if spec.has_lobs() {
                FLUSH_BYTES
            } else {
                usize::MAX
            },
            plan,
            delimiter: files.delimiter,
        };
        let delimiter = files.delimiter;
        self.runtime.block_on(async {
            let setup = |e: tokio_postgres::Error| pg_error(&e, "starting the read's snapshot", "");
            self.client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(setup)?;
            let exported = match plan.marker || (plan.ranges.is_some() && !bounds.is_empty()) {
                true => Some(
                    self.client
                        .query_one("SELECT pg_export_snapshot()", &[])
                        .await,
                ),
                false => None,
            };
            let snapshot = match exported {
                None => None,
                Some(Ok(row)) => Some(row.get::<_, String>(0)),
                Some(Err(e)) if plan.marker => return Err(setup(e)),
                // Ranges are only faster: a server that exports no snapshot is read with
                // one COPY, in a transaction begun again.
                Some(Err(e)) => {
                    tracing::warn!("the source exports no snapshot for a second connection ({e}); {table} is read with one COPY");
                    self.client
                        .batch_execute(
                            "ROLLBACK; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                        )
                        .await
                        .map_err(setup)?;
                    None
                }
            };
            let second = match (&plan.ranges, &snapshot) {
                (Some(_), Some(snapshot)) => match join_snapshot(&self.params, snapshot).await {
                    Ok(client) => Some(client),
                    Err(e) => {
                        tracing::warn!("a second connection to the source failed ({e}); {table} is read with one COPY");
                        None
                    }
                },
                _ => None,
            };
            if let (Some(ranges), Some(second)) = (&plan.ranges, &second) {
                self.read_ranges(ranges, bounds, second, &mut gather, out, &table)
                    .await?;
            } else {
                let mut side = snapshot.filter(|_| plan.marker).map(|snapshot| SideReader {
                    params: &self.params,
                    snapshot,
                    client: None,
                });
                let sql = &plan.sql;
                let stream =
                    self.client.copy_out(sql.as_str()).await.map_err(|e| {
                        pg_error(&e, &format!("reading {table} with `{sql}`"), &table)
                    })?;
                let mut stream = std::pin::pin!(stream);
                while let Some(row) = stream.next().await {
                    let row =
                        row.map_err(|e| pg_error(&e, &format!("reading rows of {table}"), &table))?;
                    // One CopyData message is one row.
                    match (&mut side, row.first()) {
                        (Some(_), Some(first)) if *first == delimiter => {
                            gather.bytes.extend_from_slice(&row[1..])
                        }
                        (Some(side), _) => {
                            rebuild_row(&row, plan, delimiter, side, &mut gather, out, &table)
                                .await?
                        }
                        (None, _) => gather.bytes.extend_from_slice(&row),
                    }
                    gather.ended(row, out)?;
                }
            }
            gather.flush(out)?;
            self.client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| pg_error(&e, "ending the read's snapshot", ""))?;
            Ok(gather.total)
        })
    }

    /// The ranges of a read on two connections (see [`NativeReader::read`]): this one and
    /// `second`, both in the read's snapshot.
    async fn read_ranges(
        &self,
        ranges: &Ranges,
        bounds: &[String],
        second: &tokio_postgres::Client,
        gather: &mut Gather<'_>,
        out: &mut impl BatchOut,
        table: &str,
    ) -> Result<(), SourceError> {
        let clients = [&self.client, second];
        // Range i: above bound i-1, up to bound i; the last has no upper bound. Its
        // statement is made when it starts (a large table has many thousands).
        let count = bounds.len() + 1;
        let start = |i: usize| {
            let low = i.checked_sub(1).map(|j| bounds[j].as_str());
            let sql = ranges.sql(low, bounds.get(i).map(String::as_str));
            async move {
                clients[i % 2]
                    .copy_out(sql.as_str())
                    .await
                    .map(Box::pin)
                    .map_err(|e| pg_error(&e, &format!("reading {table} with `{sql}`"), table))
            }
        };
        let rows_of =
            |e: tokio_postgres::Error| pg_error(&e, &format!("reading rows of {table}"), table);
        let mut live = Some(start(0).await?);
        let mut ahead = match count > 1 {
            true => Some(Ahead::new(start(1).await?)),
            false => None,
        };
        let mut index = 0;
        loop {
            if let Some(stream) = live.as_mut() {
                loop {
                    let room = ahead
                        .as_ref()
                        .is_some_and(|a| !a.done && a.bytes < AHEAD_BYTES);
                    // Unbiased: when both have a row, either is taken, so the range ahead
                    // is read while the live one has rows waiting too.
                    let next = tokio::select! {
                        row = stream.next() => Next::Live(row),
                        row = next_ahead(&mut ahead), if room => Next::Ahead(row),
                    };
                    match next {
                        Next::Live(Some(row)) => {
                            let row = row.map_err(rows_of)?;
                            gather.bytes.extend_from_slice(&row);
                            gather.ended(row, out)?;
                        }
                        Next::Live(None) => break,
                        Next::Ahead(row) => {
                            let a = ahead.as_mut().expect("polled while there");
                            match row {
                                Some(row) => {
                                    let row = row.map_err(rows_of)?;
                                    // Its bytes and its handle: a table of short rows
                                    // holds many handles per MiB.
                                    a.bytes += row.len() + std::mem::size_of::<Bytes>();
                                    a.rows.push(row);
                                }
                                None => a.done = true,
                            }
                        }
                    }
                }
            }
            // The live range has ended: the one ahead goes on, its gathered rows first,
            // and the connection now free starts the range after it.
            let Some(next) = ahead.take() else { break };
            index += 1;
            for row in next.rows {
                gather.bytes.extend_from_slice(&row);
                gather.ended(row, out)?;
            }
            live = (!next.done).then_some(next.stream);
            if index + 1 < count {
                ahead = Some(Ahead::new(start(index + 1).await?));
            }
        }
        drop(live);
        second
            .batch_execute("COMMIT")
            .await
            .map_err(|e| pg_error(&e, "ending the second connection's snapshot", ""))?;
        Ok(())
    }
}

/// A read is cut into ranges of about this many blocks of its table (8 MiB of 8 kB blocks;
/// about as many bytes of CSV), so that the range read ahead fits in [`AHEAD_BYTES`].
pub const RANGE_BLOCKS: i64 = 1024;
/// The range read ahead on the second connection is held up to this many bytes; past it,
/// that connection waits (the server blocks on its socket) until the range's turn comes.
pub const AHEAD_BYTES: usize = 16 << 20;

/// Histogram bounds thinned to about `ranges` ranges; none under three. The first and last
/// bounds (the smallest and largest values sampled) are dropped: the first and last ranges
/// are open.
fn thin_bounds(values: Vec<String>, ranges: i64) -> Vec<String> {
    if values.len() < 3 || ranges < 3 {
        return Vec::new();
    }
    let buckets = values.len() - 1;
    let step = buckets.div_ceil(ranges as usize).max(1);
    values[1..buckets]
        .iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % step == 0)
        .map(|(_, v)| v.clone())
        .collect()
}

/// A range read ahead: the rows gathered so far and the rest of its stream.
struct Ahead {
    stream: std::pin::Pin<Box<tokio_postgres::CopyOutStream>>,
    rows: Vec<Bytes>,
    /// What `rows` hold, handles included.
    bytes: usize,
    /// The stream has ended: every row is in `rows`.
    done: bool,
}

impl Ahead {
    fn new(stream: std::pin::Pin<Box<tokio_postgres::CopyOutStream>>) -> Ahead {
        Ahead {
            stream,
            rows: Vec::new(),
            bytes: 0,
            done: false,
        }
    }
}

/// What came first while a range streams and the next is read ahead.
enum Next {
    Live(Option<Result<Bytes, tokio_postgres::Error>>),
    Ahead(Option<Result<Bytes, tokio_postgres::Error>>),
}

/// The next row of the range read ahead; never, when there is none.
async fn next_ahead(ahead: &mut Option<Ahead>) -> Option<Result<Bytes, tokio_postgres::Error>> {
    match ahead {
        Some(a) => a.stream.next().await,
        None => std::future::pending().await,
    }
}

/// Rows of a read gathered into batches.
struct Gather<'p> {
    bytes: Vec<u8>,
    /// Rows ended in `bytes`.
    rows: u64,
    /// Rows passed on so far.
    total: u64,
    /// The last row ended, when the read is in key order (its key goes with the batch).
    last_row: Bytes,
    batch_rows: u64,
    flush_bytes: usize,
    plan: &'p NativePlan,
    delimiter: u8,
}

impl Gather<'_> {
    /// A row has been written to `bytes`; pass the batch on when it is full.
    fn ended(&mut self, row: Bytes, out: &mut impl BatchOut) -> Result<(), SourceError> {
        self.rows += 1;
        if self.plan.key.is_some() {
            self.last_row = row;
        }
        if self.rows >= self.batch_rows || self.bytes.len() >= self.flush_bytes {
            let capacity = self.bytes.capacity().min(8 << 20);
            let full = std::mem::replace(&mut self.bytes, Vec::with_capacity(capacity));
            self.pass_on(full, out)?;
        }
        Ok(())
    }

    /// Pass on what is gathered, if anything.
    fn flush(&mut self, out: &mut impl BatchOut) -> Result<(), SourceError> {
        if self.rows > 0 || !self.bytes.is_empty() {
            let rest = std::mem::take(&mut self.bytes);
            self.pass_on(rest, out)?;
        }
        Ok(())
    }

    fn pass_on(&mut self, bytes: Vec<u8>, out: &mut impl BatchOut) -> Result<(), SourceError> {
        out.batch(bytes, self.rows, true, self.last_key())
            .map_err(|_| SourceError::Cancelled)?;
        self.total += self.rows;
        self.rows = 0;
        Ok(())
    }

    /// Pass on what is gathered in the middle of a row (a large value being written).
    fn pass_on_mid_row(&mut self, out: &mut impl BatchOut) -> Result<(), SourceError> {
        let capacity = self.bytes.capacity();
        let full = std::mem::replace(&mut self.bytes, Vec::with_capacity(capacity));
        out.batch(full, self.rows, false, None)
            .map_err(|_| SourceError::Cancelled)?;
        self.total += self.rows;
        self.rows = 0;
        Ok(())
    }

    /// The key of the last row ended, when the read is in key order.
    fn last_key(&self) -> Option<Vec<String>> {
        let key = self.plan.key.as_ref()?;
        let fields = split_fields(&self.last_row, self.delimiter);
        let skip = usize::from(self.plan.marker);
        key.iter()
            .map(|i| fields.get(i + skip).cloned().flatten())
            .collect()
    }
}

/// The second connection of a read with large values: in the read's snapshot, opened at
/// the first large value.
struct SideReader<'p> {
    params: &'p PgParams,
    snapshot: String,
    client: Option<tokio_postgres::Client>,
}

impl SideReader<'_> {
    async fn client(&mut self) -> Result<&tokio_postgres::Client, SourceError> {
        if self.client.is_none() {
            self.client = Some(join_snapshot(self.params, &self.snapshot).await?);
        }
        Ok(self.client.as_ref().expect("opened above"))
    }
}

/// Write a row whose hidden first field names large values: its other fields as the
/// server wrote them, each large value read on the side in slices, passing what is
/// gathered on mid-value whenever it grows past [`FLUSH_BYTES`].
async fn rebuild_row(
    row: &[u8],
    plan: &NativePlan,
    delimiter: u8,
    side: &mut SideReader<'_>,
    gather: &mut Gather<'_>,
    out: &mut impl BatchOut,
    table: &str,
) -> Result<(), SourceError> {
    let spans = field_spans(row, delimiter);
    let bad = || SourceError::Odbc {
        what: format!("reading {table}"),
        detail: format!(
            "a row's large-value marker cannot be read ({} fields); this is a bug, please \
             report it",
            spans.len()
        ),
    };
    if spans.len() != plan.large.len() + 1 {
        return Err(bad());
    }
    let marker = unquote(&row[spans[0].clone()]).ok_or_else(bad)?;
    let mut parts = marker.rsplitn(3, ':');
    let (flags, ctid, tableoid) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    let address = RowAddress::parse(tableoid, ctid).ok_or_else(bad)?;
    let mut flags = flags.bytes();
    for (i, span) in spans[1..].iter().enumerate() {
        if i > 0 {
            gather.bytes.push(delimiter);
        }
        let large = match &plan.large[i] {
            Some(large) if flags.next().ok_or_else(bad)? == b'1' => large,
            _ => {
                gather.bytes.extend_from_slice(&row[span.clone()]);
                continue;
            }
        };
        let what = || format!("reading a large value of {table} at ctid {address}");
        let sql = format!(
            "SELECT g::int8, substr(v.c, g, {SLICE_BYTES}) FROM (SELECT {} AS c FROM {} \
             WHERE tableoid = {} AND ctid = '{address}' OFFSET 0) AS v, \
             generate_series(1, greatest(octet_length(v.c), 1), {SLICE_BYTES}) AS g",
            large.bytes, plan.table, address.tableoid
        );
        let client = side.client().await?;
        let stream = client
            .query_raw(sql.as_str(), std::iter::empty::<&str>())
            .await
            .map_err(|e| pg_error(&e, &what(), table))?;
        let mut stream = std::pin::pin!(stream);
        match large.binary {
            true => gather.bytes.extend_from_slice(&plan.binary_prefix),
            false => gather.bytes.push(b'"'),
        }
        let mut expected = 1i64;
        while let Some(slice) = stream.next().await {
            let slice = slice.map_err(|e| pg_error(&e, &what(), table))?;
            let start: i64 = slice.get(0);
            if start != expected {
                return Err(SourceError::Odbc {
                    what: what(),
                    detail: format!("slice at {start} where {expected} was expected"),
                });
            }
            let piece: &[u8] = slice.get(1);
            expected += SLICE_BYTES as i64;
            if large.binary {
                let at = gather.bytes.len();
                gather.bytes.resize(at + piece.len() * 2, 0);
                hex::encode_to_slice(piece, &mut gather.bytes[at..]).expect("sized for hex");
            } else {
                quoted_body(piece, &mut gather.bytes);
            }
            if gather.bytes.len() >= FLUSH_BYTES {
                gather.pass_on_mid_row(out)?;
            }
        }
        if expected == 1 {
            return Err(SourceError::Odbc {
                what: what(),
                detail: "the row changed or went away while it was read; run the subtask again"
                    .into(),
            });
        }
        if !large.binary {
            gather.bytes.push(b'"');
        }
    }
    gather.bytes.push(b'\n');
    Ok(())
}

/// Where a row lives: `tableoid` and `ctid`, numbers only (they go into SQL).
struct RowAddress {
    tableoid: u32,
    block: u32,
    item: u16,
}

impl std::fmt::Display for RowAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({},{})", self.block, self.item)
    }
}

impl RowAddress {
    fn parse(tableoid: &str, ctid: &str) -> Option<RowAddress> {
        let (block, item) = ctid.strip_prefix('(')?.strip_suffix(')')?.split_once(',')?;
        Some(RowAddress {
            tableoid: tableoid.parse().ok()?,
            block: block.parse().ok()?,
            item: item.parse().ok()?,
        })
    }
}

/// The inside of a quoted CSV field: quotes doubled.
fn quoted_body(value: &[u8], out: &mut Vec<u8>) {
    let mut rest = value;
    while let Some(i) = rest.iter().position(|b| *b == b'"') {
        out.extend_from_slice(&rest[..=i]);
        out.push(b'"');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// The byte ranges of the fields of one CSV row as PostgreSQL writes it (quotes `"`,
/// doubled inside; the row's `\n` at the end, a CR or LF inside a value quoted).
fn field_spans(row: &[u8], delimiter: u8) -> Vec<std::ops::Range<usize>> {
    let end = row.len() - usize::from(row.last() == Some(&b'\n'));
    let mut spans = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, b) in row[..end].iter().enumerate() {
        match *b {
            b'"' => quoted = !quoted,
            b if b == delimiter && !quoted => {
                spans.push(start..i);
                start = i + 1;
            }
            _ => {}
        }
    }
    spans.push(start..end);
    spans
}

/// A field's value: unquoted text, `None` for NULL (an empty unquoted field).
fn unquote(field: &[u8]) -> Option<String> {
    if field.is_empty() {
        return None;
    }
    let text = match field
        .strip_prefix(b"\"")
        .and_then(|f| f.strip_suffix(b"\""))
    {
        Some(inner) => String::from_utf8_lossy(inner).replace("\"\"", "\""),
        None => String::from_utf8_lossy(field).into_owned(),
    };
    Some(text)
}

/// The fields of one CSV row, unquoted; `None` for NULL.
fn split_fields(row: &[u8], delimiter: u8) -> Vec<Option<String>> {
    field_spans(row, delimiter)
        .into_iter()
        .map(|span| unquote(&row[span]))
        .collect()
}

async fn connect(params: &PgParams) -> Result<tokio_postgres::Client, SourceError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&params.host)
        .port(params.port)
        .dbname(&params.database)
        .user(&params.user)
        .application_name("dbhaul")
        .connect_timeout(std::time::Duration::from_secs(10));
    if let Some(password) = &params.password {
        config.password(password);
    }
    let sslmode = params.sslmode.to_ascii_lowercase();
    let (mode, verify) = match sslmode.as_str() {
        "" | "disable" | "allow" => (tokio_postgres::config::SslMode::Disable, false),
        "prefer" => (tokio_postgres::config::SslMode::Prefer, false),
        "require" => (tokio_postgres::config::SslMode::Require, false),
        _ => (tokio_postgres::config::SslMode::Require, true),
    };
    config.ssl_mode(mode);
    let what = "connecting to the source for the native COPY";
    let (client, connection) = config
        .connect(crate::net::postgres::tls_connector(verify))
        .await
        .map_err(|e| pg_error(&e, what, ""))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("native COPY connection ended: {e}");
        }
    });
    // The session as the ODBC path's: UTC, ISO dates, shortest exact floats, hex bytea.
    client
        .batch_execute(
            "SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 1; \
             SET bytea_output = 'hex'; SET standard_conforming_strings = on",
        )
        .await
        .map_err(|e| pg_error(&e, "setting up the native COPY session", ""))?;
    Ok(client)
}

/// A second connection in the read's exported `snapshot`.
async fn join_snapshot(
    params: &PgParams,
    snapshot: &str,
) -> Result<tokio_postgres::Client, SourceError> {
    let client = connect(params).await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            literal(snapshot)
        ))
        .await
        .map_err(|e| pg_error(&e, "joining the read's snapshot on a second connection", ""))?;
    Ok(client)
}

/// A tokio-postgres error in the source's words, with its SQLSTATE so that
/// [`SourceError::is_transient`] tells a lost connection.
fn pg_error(error: &tokio_postgres::Error, what: &str, table: &str) -> SourceError {
    let db = error.as_db_error();
    let code = error.code().map(|c| c.code().to_string());
    let detail = match db {
        Some(db) => db.message().to_string(),
        None => error.to_string(),
    };
    match code.as_deref() {
        Some("42P01") if !table.is_empty() => SourceError::TableNotFound {
            table: table.to_string(),
        },
        Some(c) if c.starts_with("28") => SourceError::AuthFailed { detail },
        Some(c) => SourceError::Database {
            what: what.to_string(),
            detail: format!("{detail} [SQLSTATE {c}]"),
            state: c.to_string(),
            native: 0,
        },
        None if error.is_closed() || std::error::Error::source(error).is_some() => {
            SourceError::Database {
                what: what.to_string(),
                detail: format!("{detail} [SQLSTATE 08006]"),
                state: "08006".into(),
                native: 0,
            }
        }
        None => SourceError::Odbc {
            what: what.to_string(),
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TableRef, subtask::sql};

    fn column(name: &str, ty: &str, sql_type: i16, size: i64) -> ColumnSpec {
        ColumnSpec::from_catalog(name.into(), ty.into(), sql_type, Some(size), Some(0))
    }

    fn spec(columns: Vec<ColumnSpec>, key: Option<Vec<usize>>) -> SubtaskSpec {
        SubtaskSpec {
            table: TableRef {
                catalog: None,
                schema: Some("public".into()),
                name: "t".into(),
            },
            columns,
            left_out: Vec::new(),
            filter: Some("id > 0".into()),
            partition: None,
            key: key.map(|columns| crate::model::KeyKind { columns }),
            estimated_rows: None,
            largest_lob_row: None,
        }
    }

    #[test]
    fn the_native_copy_selects_each_type_as_the_odbc_path_writes_it() {
        let pg = Source::offline(Dialect::Postgres, '"');
        let spec = spec(
            vec![
                column("id", "int8", sql::BIGINT, 19),
                column("s", "varchar", sql::VARCHAR, 10),
                column("bo", "bool", sql::VARCHAR, 5),
                column("tz", "timestamptz", sql::TYPE_TIMESTAMP, 26),
                column("d", "date", sql::TYPE_DATE, 10),
                column("x", "xml", sql::LONGVARCHAR, 8190),
            ],
            None,
        );
        let files = FileSettings {
            delimiter: b'|',
            ..FileSettings::default()
        };
        let unordered = KeyOrder::default();
        assert_eq!(
            plan(&pg, &spec, &files, &unordered, false).unwrap().sql,
            "COPY (SELECT \"id\", \"s\", CASE WHEN \"bo\" THEN '1' WHEN NOT \"bo\" THEN '0' END, \
             (\"tz\" AT TIME ZONE 'UTC'), \"d\", CAST(\"x\" AS text) FROM \"public\".\"t\" \
             WHERE (id > 0)) TO STDOUT (FORMAT csv, DELIMITER '|', NULL '', QUOTE '\"')"
        );
        // The ODBC path asks for the same text where psqlODBC would convert.
        let odbc: Vec<String> = spec
            .columns
            .iter()
            .map(|c| pg_text_item(&pg, c, Path::Odbc))
            .collect();
        assert_eq!(
            odbc,
            [
                "CAST(\"id\" AS text)",
                "\"s\"",
                "CASE WHEN \"bo\" THEN '1' WHEN NOT \"bo\" THEN '0' END",
                "CAST((\"tz\" AT TIME ZONE 'UTC') AS text)",
                "CAST(\"d\" AS text)",
                "CAST(\"x\" AS text)",
            ]
        );
        // What the native path cannot honour goes the ODBC way, with the reason.
        let maria = Source::offline(Dialect::MariaDb, '`');
        assert!(plan(&maria, &spec, &files, &unordered, false).is_err());
        let null_word = FileSettings {
            null_string: "\\N".into(),
            ..FileSettings::default()
        };
        assert!(plan(&pg, &spec, &null_word, &unordered, false).is_err());
    }

    #[test]
    fn large_values_are_left_out_of_their_rows_only_where_rows_have_an_address() {
        let pg = Source::offline(Dialect::Postgres, '"');
        let spec = spec(
            vec![
                column("id", "int8", sql::BIGINT, 19),
                column("body", "text", sql::LONGVARCHAR, 8190),
                column("blob", "bytea", sql::LONGVARBINARY, 0),
                column("doc", "jsonb", sql::LONGVARCHAR, 0),
            ],
            Some(vec![0]),
        );
        let files = FileSettings::default();
        let table = plan(&pg, &spec, &files, &KeyOrder::default(), true).unwrap();
        assert!(table.marker);
        assert_eq!(
            table.large.iter().map(Option::is_some).collect::<Vec<_>>(),
            [false, true, true, true]
        );
        assert!(table.sql.starts_with(
            "COPY (SELECT CASE WHEN octet_length(\"body\") > 1048576 OR octet_length(\"blob\") > \
             524288 OR pg_column_size(\"doc\") > 262144 THEN tableoid::text || ':' || \
             ctid::text || ':' || CASE WHEN octet_length(\"body\") > 1048576 THEN '1' ELSE '0' END"
        ));
        assert!(
            table
                .sql
                .contains("CASE WHEN octet_length(\"body\") > 1048576 THEN NULL ELSE \"body\" END")
        );
        // A view: values come whole, no marker.
        let view = plan(&pg, &spec, &files, &KeyOrder::default(), false).unwrap();
        assert!(!view.marker && view.large.iter().all(Option::is_none));
        assert!(
            view.sql
                .starts_with("COPY (SELECT \"id\", \"body\", \"blob\", \"doc\" FROM")
        );
    }

    #[test]
    fn a_keyed_read_orders_by_the_table_columns_and_resumes_after_literal_keys() {
        let pg = Source::offline(Dialect::Postgres, '"');
        let spec = spec(
            vec![
                column("id", "int8", sql::BIGINT, 19),
                column("name", "varchar", sql::VARCHAR, 10),
                column("v", "text", sql::LONGVARCHAR, 8190),
            ],
            Some(vec![0, 1]),
        );
        let order = KeyOrder {
            ordered: true,
            after: Some(vec!["7".into(), "it's".into()]),
        };
        let keyed = plan(&pg, &spec, &FileSettings::default(), &order, false).unwrap();
        assert_eq!(keyed.key, Some(vec![0, 1]));
        assert!(keyed.sql.contains(
            "WHERE (id > 0) AND ((\"public\".\"t\".\"id\" > 7) OR (\"public\".\"t\".\"id\" = 7 \
             AND \"public\".\"t\".\"name\" > 'it''s')) ORDER BY \"public\".\"t\".\"id\", \
             \"public\".\"t\".\"name\") TO STDOUT"
        ));
        // Its ranges cut the first key column, inside the predicate and the resume point.
        let ranges = keyed
            .ranges
            .as_ref()
            .expect("a key-ordered read without LOBs aside");
        let middle = ranges.sql(Some("7"), Some("o'k"));
        assert!(
            middle.contains(
                "'it''s')) AND \"public\".\"t\".\"id\" > '7' AND \"public\".\"t\".\"id\" <= 'o''k' \
             ORDER BY"
            ),
            "{middle}"
        );
        let first = ranges.sql(None, Some("9"));
        assert!(
            !first.contains("\"id\" > '") && first.contains("\"id\" <= '9'"),
            "{first}"
        );
        // With large values aside (the marker), one COPY.
        let aside = plan(&pg, &spec, &FileSettings::default(), &order, true).unwrap();
        assert_eq!(aside.ranges, None);
    }

    #[test]
    fn a_whole_table_is_cut_in_blocks_and_bounds_are_thinned_to_ranges() {
        let pg = Source::offline(Dialect::Postgres, '"');
        let mut whole = spec(vec![column("id", "int8", sql::BIGINT, 19)], None);
        whole.filter = None;
        let unordered = plan(
            &pg,
            &whole,
            &FileSettings::default(),
            &KeyOrder::default(),
            false,
        )
        .unwrap();
        let ranges = unordered.ranges.expect("a whole table");
        assert!(ranges.sql(Some("1024"), Some("2048")).contains(
            "FROM \"public\".\"t\" WHERE ctid >= '(1024,0)'::tid AND ctid < '(2048,0)'::tid)"
        ));
        // A subtask with a predicate is one COPY (its rows may be found by an index).
        let part = spec(vec![column("id", "int8", sql::BIGINT, 19)], None);
        let partial = plan(
            &pg,
            &part,
            &FileSettings::default(),
            &KeyOrder::default(),
            false,
        );
        assert_eq!(partial.unwrap().ranges, None);

        let values: Vec<String> = (0..=100).map(|i| i.to_string()).collect();
        assert_eq!(thin_bounds(values.clone(), 2), Vec::<String>::new());
        assert_eq!(thin_bounds(values.clone(), 4), ["25", "50", "75"]);
        assert_eq!(thin_bounds(values.clone(), 500).len(), 99);
        assert_eq!(thin_bounds(values[..2].to_vec(), 50), Vec::<String>::new());
    }

    #[test]
    fn rows_split_into_fields_as_postgresql_quotes_them() {
        let row = b"1,\"a,\"\"b\"\"\nc\",,\"\",x\n";
        assert_eq!(
            split_fields(row, b','),
            [
                Some("1".to_string()),
                Some("a,\"b\"\nc".to_string()),
                None,
                Some(String::new()),
                Some("x".to_string())
            ]
        );
        let address = RowAddress::parse("16384", "(12,3)").unwrap();
        assert_eq!(
            (address.tableoid, address.to_string()),
            (16384, "(12,3)".to_string())
        );
        assert!(RowAddress::parse("1; DROP", "(1,1)").is_none());
        assert!(RowAddress::parse("1", "(1,1) OR true").is_none());
    }
}
