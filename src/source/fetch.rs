//! Reading a subtask's rows. Three ways, chosen per subtask:
//!
//! - **Block fetch**: every column bounded; one columnar buffer (text, or binary for binary
//!   columns) sized from a byte budget, filled by the driver a block at a time, with the
//!   truncation check on — a value that does not fit fails the subtask, it is never cut.
//! - **Row-wise**: some column is a LOB; each row is read value by value with `SQLGetData`,
//!   LOBs in fixed pieces, so a 100 MB value never sits in memory whole on our side. From
//!   a PostgreSQL table, LOBs are also *selected* in slices ([`LOB_SLICE`]), since psqlODBC
//!   holds what it fetches whole, several times over: the row brings each value's first
//!   slice and the row's address (`tableoid`, `ctid`); a longer value's other slices come
//!   from one more query by that address, in the same snapshot, one result row per slice.
//!   From a MariaDB table read in key ranges (its driver holds every result whole) the
//!   address is the row's key, and each further slice is a query of its own
//!   ([`MARIADB_SLICE_BYTES`]), in the range's transaction.
//! - **Key ranges**: the driver cannot stream (MariaDB Connector/ODBC 3.1 buffers every
//!   result); the table is read as `WHERE key > last ORDER BY key LIMIT n` queries, each
//!   read by one of the two ways above, or, with LOB columns, in blocks with each LOB value
//!   in its row up to a limit that follows the values seen ([`read_inline_lobs`],
//!   [`InlineSizing`]) and a longer one in slices by the row's key.
//!
//! SQLite TEXT and BLOB columns whose longest value is small enough are bounded by the
//! planner and so read in blocks too.
//!
//! Rows go to a [`RowSink`] (the CSV encoder), which is told after every block so it can
//! hand the block downstream and say whether to go on.

use std::sync::atomic::{AtomicUsize, Ordering};

use odbc_api::buffers::{BufferDesc, ColumnarDynBuffer};
use odbc_api::parameter::{Binary, Text, VarCell};
use odbc_api::{Connection, Cursor, CursorRow, IntoParameter, Nullable};

use super::SourceError;
use super::connection::Source;
use super::pg_copy::Path;
use crate::model::subtask::sql;
use crate::model::{FetchKind, SubtaskSpec, ValueFamily};

/// Bytes of fetch buffer per block: rows per block = budget / bytes per row.
const BLOCK_BUDGET_BYTES: usize = 8 * 1024 * 1024;
/// Most rows per block, whatever the budget allows.
const MAX_BLOCK_ROWS: usize = 65_536;
/// Piece size for streaming LOB values.
const LOB_PIECE_BYTES: usize = 256 * 1024;
/// Bytes of key-range results (which a driver that cannot stream holds whole) this process
/// holds at once, shared by the subtasks reading from a source ([`Reading`]): enough rows
/// per query to amortise it, and a few tens of MB whatever the number of partitions. A
/// subtask gets at most half (24 MiB), so one or two subtasks read as they would alone; an
/// unpartitioned table holds two ranges at once (see [`read_key_ranges_overlapped`]), each
/// half of its share; a partition reads on one connection (partitions overlap one another).
const RANGE_BUDGET_BYTES: usize = 48 * 1024 * 1024;
/// Subtasks of this process reading from a source right now (see [`Reading`]).
static READING: AtomicUsize = AtomicUsize::new(0);
/// Rows per key-range query for tables with LOBs read whole (whose rows can be any size).
const RANGE_ROWS_WITH_LOBS: usize = 8;
/// A MariaDB LOB value (`TEXT`, `BLOB` …) up to this many bytes comes in its row, read in
/// blocks like any bounded column; a longer one is left out of the row (NULL and a flag)
/// and read in slices by the row's key. Ordinary `TEXT` values are short: most tables
/// never take the slow way.
pub const INLINE_LOB_BYTES: usize = 16 * 1024;
/// A PostgreSQL LOB value is selected in slices of this many characters (bytes for
/// `bytea`): at most 1 MiB per slice, whatever the characters.
pub const LOB_SLICE: usize = 256 * 1024;
/// The most bytes of one slice: four bytes per UTF-8 character.
pub const LOB_SLICE_BYTES: u64 = 4 * LOB_SLICE as u64;
/// A MariaDB LOB value's further slices, in bytes: each is a query of its own (the driver
/// holds one result at a time, whole).
const MARIADB_SLICE_BYTES: usize = 4 * 1024 * 1024;

/// A value handed to the sink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    Null,
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Float64(f64),
    Float32(f32),
}

/// Why reading stopped early at the sink's request.
#[derive(Debug)]
pub struct Stop;

/// Receives rows field by field. Streamed (LOB) values arrive as `begin_stream`, pieces,
/// `end_stream`.
pub trait RowSink {
    fn field(&mut self, field: Field<'_>);
    fn begin_stream(&mut self, binary: bool);
    /// A piece of a streamed value. The sink may pass rows on mid-value to bound its
    /// memory; an `Err` stops the read.
    fn piece(&mut self, bytes: &[u8]) -> Result<(), Stop>;
    fn end_stream(&mut self);
    fn end_row(&mut self);
    /// Called after every block of rows, with the key of the block's last row when the
    /// table has a key; an `Err` stops the read.
    fn end_block(&mut self, last_key: Option<&[String]>) -> Result<(), Stop>;
    /// Whether LOB values that come whole in a block are still to be handed over as
    /// streams (the sink may send long ones to files of their own); else as fields.
    fn streams_lobs(&self) -> bool {
        true
    }
}

/// What a finished read reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadSummary {
    pub rows: u64,
    pub queries: u64,
}

/// How a subtask is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMethod {
    Blocks,
    RowWise,
    KeyRanges { rows_per_query: usize },
}

/// A subtask reading from a source, counted while it lives: key ranges share
/// [`RANGE_BUDGET_BYTES`] among the subtasks reading. Taken before connecting, so the
/// partitions a run starts together count one another from their first range.
pub struct Reading(());

impl Reading {
    pub fn start() -> Reading {
        READING.fetch_add(1, Ordering::Relaxed);
        Reading(())
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        READING.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ReadMethod {
    pub fn for_subtask(source: &Source, spec: &SubtaskSpec) -> ReadMethod {
        Self::sharing(source, spec, READING.load(Ordering::Relaxed))
    }

    /// The read method of a subtask while `readers` subtasks (itself included) read.
    fn sharing(source: &Source, spec: &SubtaskSpec, readers: usize) -> ReadMethod {
        if !source.dialect.streams_results() && spec.key.is_some() {
            let rows_per_query = if spec.has_lobs() && !inline_lobs(source, spec) {
                RANGE_ROWS_WITH_LOBS
            } else {
                let share = RANGE_BUDGET_BYTES / readers.max(2);
                let budget = match spec.partition {
                    None => share / 2,
                    Some(_) => share,
                };
                let row_bytes = match spec.has_lobs() {
                    true => row_buffer_bytes(&inline_spec(spec, INLINE_LOB_BYTES)),
                    false => row_buffer_bytes(spec),
                };
                (budget / row_bytes.max(1)).clamp(1000, 100_000)
            };
            return ReadMethod::KeyRanges { rows_per_query };
        }
        if spec.has_lobs() {
            ReadMethod::RowWise
        } else {
            ReadMethod::Blocks
        }
    }
}

/// Rows per fetch block: the batch size of the block read, and of the native path's
/// batches (so both close chunks after the same rows).
pub fn block_rows(spec: &SubtaskSpec) -> usize {
    (BLOCK_BUDGET_BYTES / row_buffer_bytes(spec).max(1)).clamp(1, MAX_BLOCK_ROWS)
}

fn row_buffer_bytes(spec: &SubtaskSpec) -> usize {
    spec.columns
        .iter()
        .map(|c| match c.fetch {
            FetchKind::Text { max_bytes } => max_bytes + 1 + 8,
            FetchKind::Binary { max_bytes } => max_bytes + 8,
            FetchKind::Float64 | FetchKind::Float32 => 16,
            FetchKind::LongText | FetchKind::LongBinary => 1024,
        })
        .sum()
}

/// Whether a subtask's LOB values come in their rows up to [`INLINE_LOB_BYTES`] and are
/// read in blocks ([`read_inline_lobs`]): a MariaDB table with a key and LOB columns.
pub fn inline_lobs(source: &Source, spec: &SubtaskSpec) -> bool {
    source.dialect == super::Dialect::MariaDb && spec.key.is_some() && spec.has_lobs()
}

/// The subtask as its rows are fetched when LOBs come inline: each LOB column bounded
/// (a text to [`inline_chars`] + 1 characters, a binary to `limit` bytes), and after the
/// columns one flag per binary LOB column (`1`: the value was longer and is read in
/// slices). A text needs no flag: one character more than the limit says it is longer.
fn inline_spec(spec: &SubtaskSpec, limit: usize) -> SubtaskSpec {
    let mut fetched = spec.clone();
    for column in fetched.columns.iter_mut() {
        column.fetch = match column.fetch {
            FetchKind::LongText => FetchKind::Text {
                max_bytes: (inline_chars(limit) + 1) * 4,
            },
            FetchKind::LongBinary => FetchKind::Binary { max_bytes: limit },
            other => other,
        };
    }
    for column in spec
        .columns
        .iter()
        .filter(|c| c.fetch == FetchKind::LongBinary)
    {
        let mut flag = column.clone();
        flag.name = format!("{} (longer than {limit} bytes)", column.name);
        flag.fetch = FetchKind::Text { max_bytes: 8 };
        fetched.columns.push(flag);
    }
    fetched
}

/// The characters of a text LOB value that come in its row when the limit is `limit`
/// bytes: four bytes each at most in utf8mb4, whatever the column's own character set.
fn inline_chars(limit: usize) -> usize {
    limit / 4
}

/// Characters in UTF-8 `bytes`: the bytes that do not continue a character.
fn utf8_chars(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| (**b as i8) >= -0x40).count()
}

/// How long an inline LOB value may be, and so how many rows a key range holds, from the
/// values seen so far: a range's rows times its limit stay within the share of the range
/// budget the read started with, whatever the values. Ordinary `TEXT` values (tens or
/// hundreds of bytes) make ranges of tens of thousands of rows (a range is two queries:
/// few and large is what makes the read fast); a value longer than the limit of its range
/// still comes whole, in slices, and widens the limit of the ranges after it.
struct InlineSizing {
    /// Bytes of results one range may hold.
    share: usize,
    /// The longest inline LOB value seen lately, in bytes (the last range's longest, or a
    /// quarter of the one before, whichever is more).
    seen: AtomicUsize,
}

impl InlineSizing {
    fn new(spec: &SubtaskSpec, rows_per_query: usize) -> InlineSizing {
        InlineSizing {
            share: rows_per_query * row_buffer_bytes(&inline_spec(spec, INLINE_LOB_BYTES)),
            seen: AtomicUsize::new(INLINE_LOB_BYTES),
        }
    }

    /// The next range's limit on an inline value, and its rows.
    fn next(&self, spec: &SubtaskSpec) -> (usize, usize) {
        let seen = self.seen.load(Ordering::Relaxed);
        let limit = seen.saturating_mul(2).clamp(256, INLINE_LOB_BYTES);
        let rows = self.share / row_buffer_bytes(&inline_spec(spec, limit)).max(1);
        (limit, rows.clamp(1000, 100_000))
    }

    /// A range was read whose longest LOB value that came in its row had `longest` bytes
    /// (one read in slices does not count: a few long values among many short ones should
    /// not keep every range small).
    fn record(&self, longest: usize) {
        let before = self.seen.load(Ordering::Relaxed);
        self.seen.store(longest.max(before / 4), Ordering::Relaxed);
    }
}

/// The `SELECT` of a subtask, without key-range additions.
pub fn select_sql(source: &Source, spec: &SubtaskSpec) -> String {
    select_read(source, spec, false)
}

/// The `SELECT` the ODBC read runs: with `sliced`, the row's address first (see
/// [`address_items`]) and each LOB value's first slice in place of the value.
fn select_read(source: &Source, spec: &SubtaskSpec, sliced: bool) -> String {
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

/// Whether a subtask's LOBs are read in slices: a PostgreSQL table (a view has no `ctid`),
/// or a MariaDB table or view read in key ranges, with LOB columns.
pub fn sliceable(
    conn: &Connection<'_>,
    source: &Source,
    spec: &SubtaskSpec,
) -> Result<bool, SourceError> {
    if !spec.has_lobs() {
        return Ok(false);
    }
    match source.dialect {
        super::Dialect::Postgres => {}
        super::Dialect::MariaDb => return Ok(spec.key.is_some()),
        _ => return Ok(false),
    }
    let kind = super::catalog::query_text(
        conn,
        "SELECT relkind FROM pg_catalog.pg_class WHERE oid = to_regclass(?)",
        &[source.qualified(&spec.table)],
    )?;
    let kind = kind.first().and_then(|row| row.first().cloned().flatten());
    Ok(matches!(kind.as_deref(), Some("r" | "p" | "m")))
}

/// The most bytes of LOB values one row brings when its LOBs are read in slices.
pub fn sliced_row_bytes(spec: &SubtaskSpec) -> u64 {
    spec.columns.iter().filter(|c| c.fetch.is_lob()).count() as u64 * LOB_SLICE_BYTES
}

/// The columns a sliced read puts before the subtask's own, by which a row is found again:
/// PostgreSQL's `tableoid` and `ctid`, MariaDB's key.
fn address_items(source: &Source, spec: &SubtaskSpec) -> Vec<String> {
    match source.dialect {
        super::Dialect::MariaDb => key_names(source, spec),
        _ => vec!["tableoid".to_string(), "ctid".to_string()],
    }
}

/// `substr(value, start, LOB_SLICE)`: text by characters (any type as its text output,
/// which is what the driver would print), `bytea` by bytes. Not `substring(… FOR …)`:
/// psqlODBC takes a `FOR` in a query for `FOR UPDATE` and then reads the result whole.
/// MariaDB's `SUBSTRING` is by characters of text and bytes of a `BLOB` alike.
fn slice_expr(source: &Source, column: &crate::model::ColumnSpec, start: &str) -> String {
    let quoted = source.quote_ident(&column.name);
    if source.dialect == super::Dialect::MariaDb {
        format!("SUBSTRING({quoted}, {start}, {LOB_SLICE})")
    } else if column.fetch.is_binary() {
        format!("substr({quoted}, {start}, {LOB_SLICE})")
    } else {
        format!("substr(CAST({quoted} AS text), {start}, {LOB_SLICE})")
    }
}

/// How the other slices of a row's LOB values are fetched by its address.
pub struct LobSlices<'c> {
    conn: &'c Connection<'c>,
    table: String,
    /// Per subtask column, a LOB's value as bytes (text in UTF-8).
    values: Vec<Option<String>>,
    /// Per subtask column, its name quoted.
    names: Vec<String>,
    /// The current row's address, as the columns of [`address_items`] gave it.
    address: Vec<Vec<u8>>,
    /// MariaDB: the key's columns, quoted, which the address holds the values of. `None`
    /// for PostgreSQL (`tableoid`, `ctid`).
    key: Option<Vec<String>>,
}

impl<'c> LobSlices<'c> {
    /// Slices for a subtask that is [`sliceable`], so that a row's slices come from one
    /// snapshot: a PostgreSQL session is set to `REPEATABLE READ` (the read is one query);
    /// a MariaDB one too, without autocommit, and [`Self::end_range`] commits after each
    /// key range (whose query and slice queries are then one transaction).
    fn prepare(
        conn: &'c Connection<'c>,
        source: &Source,
        spec: &SubtaskSpec,
    ) -> Result<LobSlices<'c>, SourceError> {
        let maria = source.dialect == super::Dialect::MariaDb;
        let snapshot = |e| SourceError::odbc("setting the session to read one snapshot", e);
        if maria {
            conn.execute(
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                (),
                None,
            )
            .map_err(snapshot)?;
            conn.set_autocommit(false).map_err(snapshot)?;
        } else {
            conn.execute(
                "SET default_transaction_isolation = 'repeatable read'",
                (),
                None,
            )
            .map_err(snapshot)?;
        }
        let values = spec
            .columns
            .iter()
            .map(|column| {
                let quoted = source.quote_ident(&column.name);
                // Bytes either way, so a slice's start is found without counting
                // characters from the beginning (long values would be quadratic).
                column
                    .fetch
                    .is_lob()
                    .then(|| match (maria, column.fetch.is_binary()) {
                        (true, true) => quoted,
                        (true, false) => format!("CAST(CONVERT({quoted} USING utf8mb4) AS BINARY)"),
                        (false, true) => format!("{quoted} || ''::bytea"),
                        (false, false) => format!("convert_to(CAST({quoted} AS text), 'UTF8')"),
                    })
            })
            .collect();
        let address = address_items(source, spec);
        Ok(LobSlices {
            conn,
            table: source.qualified(&spec.table),
            values,
            names: spec
                .columns
                .iter()
                .map(|c| source.quote_ident(&c.name))
                .collect(),
            address: vec![Vec::new(); address.len()],
            key: maria.then_some(address),
        })
    }

    /// A key range is read: its transaction ends (MariaDB).
    fn end_range(&self) -> Result<(), SourceError> {
        if self.key.is_some() {
            self.conn
                .commit()
                .map_err(|e| SourceError::odbc("ending a key range's transaction", e))?;
        }
        Ok(())
    }

    /// The current row's address, for messages.
    fn shown_address(&self) -> String {
        let values: Vec<_> = self
            .address
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        match &self.key {
            Some(names) => format!("with key ({}) = ({})", names.join(", "), values.join(", ")),
            None => format!("at ctid {}", values.get(1).map_or("", String::as_str)),
        }
    }

    /// Stream the rest of `column`'s value in the current row from byte `start` on into
    /// `sink`; returns its bytes.
    fn read_rest(
        &self,
        column: usize,
        start: usize,
        piece: &mut [u8],
        sink: &mut impl RowSink,
        table: &str,
    ) -> Result<usize, SourceError> {
        let what = || format!("fetching the slices of a LOB value of {table}");
        let changed = || SourceError::Odbc {
            what: what(),
            detail: format!(
                "the row {} changed or went away while its value was read in slices; \
                 run the subtask again",
                self.shown_address()
            ),
        };
        let odbc = |e| SourceError::odbc(what(), e);
        let value = self.values[column].as_deref().ok_or_else(changed)?;
        let mut received = 0usize;
        if let Some(key) = &self.key {
            // MariaDB: the value made once, by the key, into a session variable (asking the
            // table for each slice would make the whole value again per slice), then one
            // query per slice until a slice comes short; the variable is emptied after.
            let predicate: Vec<_> = key.iter().map(|name| format!("{name} = ?")).collect();
            let key_values: Vec<String> = self
                .address
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            let params: Vec<_> = key_values
                .iter()
                .map(|v| v.as_str().into_parameter())
                .collect();
            let by_key = format!("FROM {} WHERE {}", self.table, predicate.join(" AND "));
            let set = format!("SET @dbhaul_lob = (SELECT {value} {by_key})");
            self.conn.execute(&set, &params[..], None).map_err(odbc)?;
            let streamed = (|| loop {
                let sql = format!(
                    "SELECT SUBSTRING(@dbhaul_lob, {}, {MARIADB_SLICE_BYTES})",
                    start + received
                );
                let mut cursor = self
                    .conn
                    .execute(&sql, (), None)
                    .map_err(odbc)?
                    .ok_or_else(changed)?;
                let mut row = cursor.next_row().map_err(odbc)?.ok_or_else(changed)?;
                let Some(slice) = stream_value(&mut row, 1, piece, sink, true, false, table)?
                else {
                    // The variable is NULL: the row went away, or the server would not make
                    // a value larger than its max_allowed_packet (it gives NULL instead).
                    let sql = format!(
                        "SELECT OCTET_LENGTH({}), @@max_allowed_packet {by_key}",
                        self.names[column]
                    );
                    let sizes = super::catalog::query_text(self.conn, &sql, &key_values)?;
                    let number = |i: usize| sizes.first()?.get(i)?.as_deref()?.parse::<u64>().ok();
                    return Err(match (number(0), number(1)) {
                        (Some(bytes), Some(max)) if bytes > max => SourceError::Odbc {
                            what: what(),
                            detail: format!(
                                "the value of {} in the row {} is {bytes} bytes, more than \
                                 the server's max_allowed_packet ({max}), so MariaDB will not \
                                 hand it out; raise it on the server (SET GLOBAL \
                                 max_allowed_packet = 1073741824, the most) and run the \
                                 subtask again",
                                self.names[column],
                                self.shown_address()
                            ),
                        },
                        _ => changed(),
                    });
                };
                received += slice.bytes;
                if slice.bytes < MARIADB_SLICE_BYTES {
                    return Ok(received);
                }
            })();
            self.conn
                .execute("SET @dbhaul_lob = NULL", (), None)
                .map_err(odbc)?;
            return streamed;
        }
        // PostgreSQL: one query, one row per slice.
        let sql = slices_sql(
            &self.table,
            value,
            &self.address[0],
            &self.address[1],
            start,
        )
        .ok_or_else(changed)?;
        let mut cursor = self
            .conn
            .execute(&sql, (), None)
            .map_err(odbc)?
            .ok_or_else(changed)?;
        let mut rows = 0usize;
        let mut position = Vec::new();
        while let Some(mut row) = cursor.next_row().map_err(odbc)? {
            row.get_text(1, &mut position).map_err(odbc)?;
            // The slices come in the order generate_series gives them; make sure.
            let expected = start + received;
            if position != expected.to_string().as_bytes() {
                return Err(SourceError::Odbc {
                    what: what(),
                    detail: format!(
                        "slice at {} where {expected} was expected",
                        String::from_utf8_lossy(&position),
                    ),
                });
            }
            // Bytes, for text too (its UTF-8, as the driver gives text).
            let slice =
                stream_value(&mut row, 2, piece, sink, true, false, table)?.ok_or_else(changed)?;
            received += slice.bytes;
            rows += 1;
        }
        if rows == 0 {
            return Err(changed());
        }
        Ok(received)
    }
}

/// The query for the slices of a PostgreSQL LOB value (`value`, as bytes) in the row at
/// `tableoid`, `ctid`, from byte `start` on: the value made once out of TOAST (slicing a
/// compressed value would decompress it again per slice), then one row per slice, `(start,
/// bytes)`. A value that ends where the first slice did gives one empty slice; no row at
/// all means the row changed or went away. Literals, not parameters: psqlODBC reads a
/// prepared statement's result whole. `None` unless the address is numbers (`tableoid`,
/// `(block,item)`).
fn slices_sql(
    table: &str,
    value: &str,
    tableoid: &[u8],
    ctid: &[u8],
    start: usize,
) -> Option<String> {
    let tableoid = std::str::from_utf8(tableoid).ok()?;
    let ctid = std::str::from_utf8(ctid).ok()?;
    let (block, item) = ctid.strip_prefix('(')?.strip_suffix(')')?.split_once(',')?;
    let numbers = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(numbers(tableoid) && numbers(block) && numbers(item)) {
        return None;
    }
    Some(format!(
        "SELECT g, substr(v.c, g, {LOB_SLICE_BYTES}) FROM (SELECT {value} AS c FROM {table} \
         WHERE tableoid = {tableoid} AND ctid = '{ctid}' OFFSET 0) AS v, \
         generate_series({start}, greatest(octet_length(v.c), {start}), {LOB_SLICE_BYTES}) AS g"
    ))
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

/// How a column is selected. PostgreSQL's as [`super::pg_copy::pg_text_item`] gives them
/// (the server's text where psqlODBC would convert, so both paths write the same text).
/// SQLite turns REAL into text with 15 significant digits
/// whatever the driver asks for, so its floats are printed by SQLite with 17 (exact) and
/// fetched as text (the planner's `fit_sqlite_columns` sets that up).
pub fn select_item(source: &Source, column: &crate::model::ColumnSpec) -> String {
    let quoted = source.quote_ident(&column.name);
    match source.dialect {
        super::Dialect::Sqlite if !column.fetch.is_binary() => sqlite_text_item(&quoted),
        super::Dialect::Postgres => super::pg_copy::pg_text_item(source, column, Path::Odbc),
        // Connector/ODBC hands a BIT(1) out as its raw byte, whatever it is asked for.
        super::Dialect::MariaDb if column.sql_type == sql::BIT => format!("({quoted} + 0)"),
        _ => quoted,
    }
}

/// A SQLite value of a non-binary column as text, by what it holds (a column may hold any
/// storage class, whatever its declared type): a real with 20 significant digits (SQLite's
/// 17-digit printing can be one unit off in the last place; 20 read back to the same
/// double), a blob as its bytes (sqliteodbc would print `X'…'`), anything else as SQLite
/// gives it (an integer in a REAL or NUMERIC column stays `1`, a text stays itself).
fn sqlite_text_item(quoted: &str) -> String {
    format!(
        "CASE typeof({quoted}) WHEN 'real' THEN printf('%!.20e', {quoted}) \
         WHEN 'blob' THEN CAST({quoted} AS TEXT) ELSE {quoted} END"
    )
}

/// The filter and the partition's predicate. The partition's is built here, from its
/// column and bounds with this source's quoting, never taken from the spec's `predicate`
/// text: a spec edited in an export cannot widen what a partition reads.
fn predicates(source: &Source, spec: &SubtaskSpec) -> Vec<String> {
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

/// In which order a subtask's rows are read, and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyOrder {
    /// Read in key order (the subtask must have a key).
    pub ordered: bool,
    /// Read only the rows after this key (a run that resumes): in key order.
    pub after: Option<Vec<String>>,
}

/// Whether the subtask is read in key order whatever is asked (key ranges).
pub fn always_in_key_order(source: &Source, spec: &SubtaskSpec) -> bool {
    matches!(
        ReadMethod::for_subtask(source, spec),
        ReadMethod::KeyRanges { .. }
    )
}

/// The key columns of a subtask, quoted for the source, in key order.
///
/// PostgreSQL's are qualified by the table: a select item such as `CAST("id" AS text)` is
/// named `id`, and `ORDER BY "id"` would sort by that text rather than by the column.
pub(super) fn key_names(source: &Source, spec: &SubtaskSpec) -> Vec<String> {
    let key = spec.key.as_ref().expect("a key");
    let table = match source.dialect {
        super::Dialect::Postgres => format!("{}.", source.qualified(&spec.table)),
        _ => String::new(),
    };
    key.columns
        .iter()
        .map(|i| format!("{table}{}", source.quote_ident(&spec.columns[*i].name)))
        .collect()
}

/// The one query of a subtask read in key order, after `after` if given.
fn ordered_sql(
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

/// Read every row of a subtask into `sink`, in the order asked; with `sliced` (the
/// subtask is [`sliceable`]), its LOBs are selected in slices.
///
/// `spare`, a second connection to the source, lets a table read in key ranges (a driver
/// that holds each result whole) run the next range while this one is converted: see
/// [`read_key_ranges_overlapped`].
pub fn read_subtask<'e>(
    conn: &mut Connection<'e>,
    spare: Option<&mut Connection<'e>>,
    source: &Source,
    spec: &SubtaskSpec,
    order: &KeyOrder,
    sliced: bool,
    sink: &mut (impl RowSink + Send),
) -> Result<ReadSummary, SourceError> {
    let table = spec.table.to_string();
    let keyed = spec.key.is_some() && (order.ordered || order.after.is_some());
    match ReadMethod::for_subtask(source, spec) {
        ReadMethod::KeyRanges { rows_per_query } => {
            let after = order.after.clone();
            match spare.filter(|_| !spec.has_lobs() || (sliced && inline_lobs(source, spec))) {
                Some(spare) => read_key_ranges_overlapped(
                    [conn, spare],
                    source,
                    spec,
                    rows_per_query,
                    after,
                    &table,
                    sink,
                ),
                None => {
                    let slices = if sliced {
                        Some(LobSlices::prepare(conn, source, spec)?)
                    } else {
                        None
                    };
                    read_key_ranges(
                        conn,
                        source,
                        spec,
                        rows_per_query,
                        after,
                        &table,
                        slices,
                        sink,
                    )
                }
            }
        }
        ReadMethod::Blocks | ReadMethod::RowWise => {
            let mut slices = if sliced {
                Some(LobSlices::prepare(conn, source, spec)?)
            } else {
                None
            };
            let (sql, params) = if keyed {
                ordered_sql(source, spec, order.after.as_deref(), sliced)
            } else {
                (select_read(source, spec, sliced), Vec::new())
            };
            let outcome = if spec.has_lobs() {
                run_query(conn, &sql, &params, spec, &table, slices.as_mut(), sink)?
            } else {
                let cursor = execute(conn, &sql, &params, &table)?;
                read_blocks_overlapped(cursor, spec, &table, sink)?
            };
            Ok(ReadSummary {
                rows: outcome.count,
                queries: 1,
            })
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn read_key_ranges(
    conn: &Connection<'_>,
    source: &Source,
    spec: &SubtaskSpec,
    rows_per_query: usize,
    after: Option<Vec<String>>,
    table: &str,
    mut slices: Option<LobSlices<'_>>,
    sink: &mut impl RowSink,
) -> Result<ReadSummary, SourceError> {
    let key_names = key_names(source, spec);
    let inline = slices.is_some() && inline_lobs(source, spec);
    let sizing = InlineSizing::new(spec, rows_per_query);
    let mut summary = ReadSummary::default();
    let mut last_key: Option<Vec<String>> = after;
    let mut buffers = BufferCache::default();
    loop {
        let (limit, rows_per_query) = match inline {
            true => sizing.next(spec),
            false => (0, rows_per_query),
        };
        let base = match inline {
            true => select_inline(source, spec, limit),
            false => select_read(source, spec, slices.is_some()),
        };
        let joiner = if base.contains(" WHERE ") {
            " AND "
        } else {
            " WHERE "
        };
        let order = format!(" ORDER BY {} LIMIT {rows_per_query}", key_names.join(", "));
        let (sql, params) = match &last_key {
            None => (format!("{base}{order}"), Vec::new()),
            Some(values) => {
                let (predicate, params) = after_key(spec, &key_names, values);
                (format!("{base}{joiner}({predicate}){order}"), params)
            }
        };
        let outcome = match (&mut slices, inline) {
            (Some(slices), true) => {
                let cursor = execute(conn, &sql, &params, table)?;
                let (outcome, longest) =
                    read_inline_lobs(cursor, &mut buffers, spec, limit, table, slices, sink)?;
                sizing.record(longest);
                outcome
            }
            _ => run_query(conn, &sql, &params, spec, table, slices.as_mut(), sink)?,
        };
        if let Some(slices) = &slices {
            slices.end_range()?;
        }
        summary.rows += outcome.count;
        summary.queries += 1;
        if outcome.count < rows_per_query as u64 {
            return Ok(summary);
        }
        last_key = Some(outcome.last_key.ok_or_else(|| SourceError::Odbc {
            what: format!("reading {table} in key ranges"),
            detail: "a key value of the last row is NULL; the primary key cannot be NULL".into(),
        })?);
    }
}

/// What the two readers of [`read_key_ranges_overlapped`] share.
struct Relay<'s, S> {
    state: std::sync::Mutex<RelayState>,
    changed: std::sync::Condvar,
    /// Locked only by the reader whose turn it is, so the other can fix and run the next
    /// range meanwhile.
    sink: std::sync::Mutex<&'s mut S>,
}

struct RelayState {
    /// The range whose rows go to the sink next.
    turn: u64,
    /// Where the range after the last one fixed begins: `Some(None)` from the table's start,
    /// `Some(Some(key))` after `key`; `None` while no range is fixed beyond the last taken.
    next_start: Option<Option<Vec<String>>>,
    /// The range that begins at `next_start`.
    next_range: u64,
    /// The last range is fixed: there is no next.
    ended: bool,
    /// A reader failed or the sink stopped: everyone stops.
    failed: bool,
    rows: u64,
    queries: u64,
}

/// Key ranges on two connections, in order. A driver that holds each result whole (MariaDB
/// Connector/ODBC before 3.1.17) makes a one-connection read take turns: the server and the
/// driver work while rows wait, then rows are converted while the server waits. Here each
/// range is fixed ahead: its end is the `rows_per_query`-th key after its start (an index
/// read, `LIMIT 1 OFFSET n-1`), so the next range can run on the other connection while this
/// one's rows are converted. Each reader owns a connection and takes every other range; the
/// rows reach the sink strictly in key order, one range after the other, so checkpoints and
/// resume work as with one connection.
fn read_key_ranges_overlapped<'e>(
    conns: [&mut Connection<'e>; 2],
    source: &Source,
    spec: &SubtaskSpec,
    rows_per_query: usize,
    after: Option<Vec<String>>,
    table: &str,
    sink: &mut (impl RowSink + Send),
) -> Result<ReadSummary, SourceError> {
    let relay = Relay {
        state: std::sync::Mutex::new(RelayState {
            turn: 0,
            next_start: Some(after),
            next_range: 0,
            ended: false,
            failed: false,
            rows: 0,
            queries: 0,
        }),
        changed: std::sync::Condvar::new(),
        sink: std::sync::Mutex::new(sink),
    };
    let sizing = InlineSizing::new(spec, rows_per_query);
    let results: Vec<Result<(), SourceError>> = std::thread::scope(|scope| {
        let readers: Vec<_> = conns
            .into_iter()
            .map(|conn| {
                let relay = &relay;
                let sizing = &sizing;
                scope.spawn(move || {
                    let result =
                        range_reader(conn, relay, source, spec, rows_per_query, sizing, table);
                    if result.is_err() {
                        let mut state = relay.state.lock().expect("relay lock");
                        state.failed = true;
                        relay.changed.notify_all();
                    }
                    result
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().unwrap_or(Err(SourceError::Cancelled)))
            .collect()
    });
    // The first real error; a reader stopped by the other's failure says Cancelled.
    let mut cancelled = None;
    for result in results {
        match result {
            Err(SourceError::Cancelled) => cancelled = Some(SourceError::Cancelled),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
    }
    if let Some(e) = cancelled {
        return Err(e);
    }
    let state = relay.state.into_inner().expect("relay lock");
    Ok(ReadSummary {
        rows: state.rows,
        queries: state.queries,
    })
}

/// One reader of [`read_key_ranges_overlapped`]: take the next range, fix its end and pass
/// that on, run it, wait for its turn, send its rows to the sink; until the last range.
fn range_reader<S: RowSink>(
    conn: &mut Connection<'_>,
    relay: &Relay<'_, S>,
    source: &Source,
    spec: &SubtaskSpec,
    rows_per_query: usize,
    sizing: &InlineSizing,
    table: &str,
) -> Result<(), SourceError> {
    let key_names = key_names(source, spec);
    let key = spec.key.as_ref().expect("a key");
    let key_items: Vec<String> = key
        .columns
        .iter()
        .map(|i| select_item(source, &spec.columns[*i]))
        .collect();
    let bound_base = select_from(source, spec, &key_items);
    // LOBs inline (MariaDB): a longer value is read in slices on this reader's connection,
    // in its range's transaction.
    let inline = inline_lobs(source, spec);
    let conn: &Connection<'_> = conn;
    let mut slices = match inline {
        true => Some(LobSlices::prepare(conn, source, spec)?),
        false => None,
    };
    let and_or_where = |sql: &str| {
        if sql.contains(" WHERE ") {
            " AND "
        } else {
            " WHERE "
        }
    };
    let order = format!(" ORDER BY {}", key_names.join(", "));
    let mut buffers = BufferCache::default();
    loop {
        // Take the next range, once the one before it is fixed.
        let (range, start) = {
            let mut state = relay.state.lock().expect("relay lock");
            loop {
                if state.failed {
                    return Err(SourceError::Cancelled);
                }
                if state.ended && state.next_start.is_none() {
                    return Ok(());
                }
                if let Some(start) = state.next_start.take() {
                    let range = state.next_range;
                    state.next_range += 1;
                    break (range, start);
                }
                state = relay.changed.wait(state).expect("relay lock");
            }
        };
        // Its size (with LOBs inline, from the values seen so far), then its end: the n-th
        // key from its start, or none (the last range).
        let (limit, rows_per_query) = match inline {
            true => sizing.next(spec),
            false => (0, rows_per_query),
        };
        let base = match inline {
            true => select_inline(source, spec, limit),
            false => select_sql(source, spec),
        };
        let (lower, mut params) = match &start {
            Some(values) => after_key(spec, &key_names, values),
            None => (String::new(), Vec::new()),
        };
        let from_start = |sql: &str| match &start {
            Some(_) => format!("{sql}{}({lower})", and_or_where(sql)),
            None => sql.to_string(),
        };
        let bound_sql = format!(
            "{}{order} LIMIT 1 OFFSET {}",
            from_start(&bound_base),
            rows_per_query - 1
        );
        let end = super::catalog::query_text(conn, &bound_sql, &params)?
            .into_iter()
            .next()
            .map(|row| row.into_iter().collect::<Option<Vec<String>>>())
            .map(|end| {
                end.ok_or_else(|| SourceError::Odbc {
                    what: format!("reading {table} in key ranges"),
                    detail: "a key value is NULL; the primary key cannot be NULL".into(),
                })
            })
            .transpose()?;
        {
            let mut state = relay.state.lock().expect("relay lock");
            match &end {
                Some(end) => state.next_start = Some(Some(end.clone())),
                None => state.ended = true,
            }
            relay.changed.notify_all();
        }
        // The range: after its start, up to and with its end.
        let mut sql = from_start(&base);
        if let Some(end) = &end {
            let (beyond, more) = after_key(spec, &key_names, end);
            sql = format!("{sql}{}NOT ({beyond})", and_or_where(&sql));
            params.extend(more);
        }
        sql.push_str(&order);
        let query_error = |e: odbc_api::Error| classify_query_error(e, table, &sql);
        let bound: Vec<_> = params.iter().map(|p| p.as_str().into_parameter()).collect();
        let cursor = conn
            .execute(&sql, &bound[..], None)
            .map_err(query_error)?
            .ok_or_else(|| SourceError::Odbc {
                what: format!("reading {table}"),
                detail: format!("`{sql}` returned no result set"),
            })?;
        // Its turn: the ranges before it are in the sink.
        {
            let mut state = relay.state.lock().expect("relay lock");
            while state.turn != range {
                if state.failed {
                    return Err(SourceError::Cancelled);
                }
                state = relay.changed.wait(state).expect("relay lock");
            }
        }
        let outcome = {
            let mut sink = relay.sink.lock().expect("sink lock");
            match &mut slices {
                Some(slices) => {
                    let (outcome, longest) = read_inline_lobs(
                        cursor,
                        &mut buffers,
                        spec,
                        limit,
                        table,
                        slices,
                        &mut **sink,
                    )?;
                    sizing.record(longest);
                    outcome
                }
                None => read_blocks_into(cursor, &mut buffers, spec, table, &mut **sink)?,
            }
        };
        if let Some(slices) = &slices {
            slices.end_range()?;
        }
        let mut state = relay.state.lock().expect("relay lock");
        state.rows += outcome.count;
        state.queries += 2;
        state.turn += 1;
        relay.changed.notify_all();
    }
}

/// `key > last` for a (possibly composite) key, portable to every dialect:
/// `(a > ?) OR (a = ? AND b > ?)`. Integer and decimal keys are written as number literals,
/// so no driver compares them as floating point; character keys are parameters (no
/// escaping rules to get wrong); other keys (dates, timestamps, UUIDs) are quoted literals,
/// which every dialect converts to the column's type (a character parameter would not be
/// compared with a timestamp by PostgreSQL).
fn after_key(spec: &SubtaskSpec, key_names: &[String], values: &[String]) -> (String, Vec<String>) {
    let key = spec.key.as_ref().expect("key");
    let mut params = Vec::new();
    let predicate = key_after(key_names, |position| {
        let column = &spec.columns[key.columns[position]];
        let value = &values[position];
        let numeric = matches!(column.family(), ValueFamily::Integer | ValueFamily::Decimal);
        if numeric && is_plain_number(value) {
            value.clone()
        } else if sql::is_character(column.sql_type) || value.contains('\\') {
            params.push(value.clone());
            "?".to_string()
        } else {
            format!("'{}'", value.replace('\'', "''"))
        }
    });
    (predicate, params)
}

/// `(k1 > v1) OR (k1 = v1 AND k2 > v2) …`: the rows after a key, with each key value as
/// `render` writes the one at its position (called in the order the values appear, so a
/// renderer may collect parameters).
pub(super) fn key_after(key_names: &[String], mut render: impl FnMut(usize) -> String) -> String {
    let mut alternatives = Vec::new();
    for i in 0..key_names.len() {
        let mut terms = Vec::new();
        for (j, name) in key_names.iter().enumerate().take(i) {
            terms.push(format!("{name} = {}", render(j)));
        }
        terms.push(format!("{} > {}", key_names[i], render(i)));
        alternatives.push(format!("({})", terms.join(" AND ")));
    }
    alternatives.join(" OR ")
}

pub(super) fn is_plain_number(value: &str) -> bool {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// The `SELECT` of a subtask whose LOBs come inline ([`inline_lobs`]): a text LOB's
/// first [`inline_chars`] + 1 characters, as a `VARCHAR` (which the driver reads faster
/// than a `TEXT`, and the server makes more cheaply than a test of the length); a binary
/// LOB's value when it is short, else NULL and its flag after the columns.
fn select_inline(source: &Source, spec: &SubtaskSpec, limit: usize) -> String {
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

/// Read one query of [`select_inline`] in blocks: short LOB values from the block (as
/// streamed values, so `files.lob_objects` and the quoting of LOBs hold), long ones in
/// slices by the row's key, in the query's transaction.
#[allow(clippy::too_many_arguments)]
fn read_inline_lobs(
    cursor: impl Cursor,
    buffers: &mut BufferCache,
    spec: &SubtaskSpec,
    limit: usize,
    table: &str,
    slices: &mut LobSlices<'_>,
    sink: &mut impl RowSink,
) -> Result<(QueryOutcome, usize), SourceError> {
    let fetched = inline_spec(spec, limit);
    let chars = inline_chars(limit);
    let mut longest = 0usize;
    let streams = sink.streams_lobs();
    let bind_error = |e| SourceError::odbc(format!("binding fetch buffers for {table}"), e);
    let mut block_cursor = cursor
        .bind_buffer(buffers.take(&fetched, table)?)
        .map_err(bind_error)?;
    let key = spec.key.as_ref().expect("inline LOBs need a key");
    let n = spec.columns.len();
    let mut outcome = QueryOutcome {
        count: 0,
        last_key: None,
    };
    let mut piece = vec![0u8; LOB_PIECE_BYTES];
    while let Some(block) = fetch_block(&mut block_cursor, &fetched, table)? {
        let views = column_views(block, &fetched);
        let n_rows = block.num_rows();
        for row in 0..n_rows {
            let mut flag = n;
            for (i, column) in spec.columns.iter().enumerate() {
                if !column.fetch.is_lob() {
                    sink.field(views[i].get(row));
                    continue;
                }
                let binary = column.fetch.is_binary();
                let long = match (binary, views[i].get(row)) {
                    (true, _) => {
                        flag += 1;
                        views[flag - 1].get(row) == Field::Text(b"1")
                    }
                    (false, Field::Text(value)) => value.len() > chars && utf8_chars(value) > chars,
                    (false, _) => false,
                };
                match (long, views[i].get(row)) {
                    (false, field @ (Field::Text(value) | Field::Binary(value))) => {
                        longest = longest.max(value.len());
                        if !streams {
                            sink.field(field);
                            continue;
                        }
                        sink.begin_stream(binary);
                        sink.piece(value).map_err(|Stop| SourceError::Cancelled)?;
                        sink.end_stream();
                    }
                    (false, _) => sink.field(Field::Null),
                    (true, _) => {
                        slices.address = key
                            .columns
                            .iter()
                            .map(|k| match views[*k].get(row) {
                                Field::Text(v) | Field::Binary(v) => v.to_vec(),
                                _ => Vec::new(),
                            })
                            .collect();
                        sink.begin_stream(binary);
                        slices.read_rest(i, 1, &mut piece, sink, table)?;
                        sink.end_stream();
                    }
                }
            }
            sink.end_row();
        }
        if let Some(last) = n_rows.checked_sub(1) {
            outcome.last_key = last_key_of(&views, spec, last);
        }
        outcome.count += n_rows as u64;
        sink.end_block(outcome.last_key.as_deref())
            .map_err(|Stop| SourceError::Cancelled)?;
    }
    let (_, buffer) = block_cursor.unbind().map_err(bind_error)?;
    buffers.keep(&fetched, buffer);
    Ok((outcome, longest))
}

struct QueryOutcome {
    count: u64,
    last_key: Option<Vec<String>>,
}

fn run_query(
    conn: &Connection<'_>,
    sql: &str,
    params: &[String],
    spec: &SubtaskSpec,
    table: &str,
    slices: Option<&mut LobSlices<'_>>,
    sink: &mut impl RowSink,
) -> Result<QueryOutcome, SourceError> {
    let cursor = execute(conn, sql, params, table)?;
    // A result with LOB columns is read value by value; one without, in blocks.
    if spec.has_lobs() {
        read_row_wise(cursor, spec, table, slices, sink)
    } else {
        read_blocks(cursor, spec, table, sink)
    }
}

/// Run a subtask's query; its cursor.
fn execute<'c>(
    conn: &'c Connection<'_>,
    sql: &str,
    params: &[String],
    table: &str,
) -> Result<odbc_api::CursorImpl<odbc_api::handles::StatementImpl<'c>>, SourceError> {
    let query_error = |e: odbc_api::Error| classify_query_error(e, table, sql);
    let params: Vec<_> = params.iter().map(|p| p.as_str().into_parameter()).collect();
    let cursor = conn.execute(sql, &params[..], None).map_err(query_error)?;
    cursor.ok_or_else(|| SourceError::Odbc {
        what: format!("reading {table}"),
        detail: format!("`{sql}` returned no result set"),
    })
}

fn classify_query_error(error: odbc_api::Error, table: &str, sql: &str) -> SourceError {
    let state = super::error::sql_state(&error).unwrap_or_default();
    match state.as_str() {
        "42S02" | "42P01" => SourceError::TableNotFound {
            table: table.to_string(),
        },
        _ => SourceError::odbc(format!("reading {table} with `{sql}`"), error),
    }
}

fn read_blocks(
    cursor: impl Cursor,
    spec: &SubtaskSpec,
    table: &str,
    sink: &mut impl RowSink,
) -> Result<QueryOutcome, SourceError> {
    let mut buffers = BufferCache::default();
    read_blocks_into(cursor, &mut buffers, spec, table, sink)
}

/// [`read_blocks`] into a buffer of `buffers`, left there for the next query.
fn read_blocks_into(
    cursor: impl Cursor,
    buffers: &mut BufferCache,
    spec: &SubtaskSpec,
    table: &str,
    sink: &mut impl RowSink,
) -> Result<QueryOutcome, SourceError> {
    let bind_error = |e| SourceError::odbc(format!("binding fetch buffers for {table}"), e);
    let mut block_cursor = cursor
        .bind_buffer(buffers.take(spec, table)?)
        .map_err(bind_error)?;
    let mut outcome = QueryOutcome {
        count: 0,
        last_key: None,
    };
    while let Some(block) = fetch_block(&mut block_cursor, spec, table)? {
        convert_block(block, spec, &mut outcome, sink)?;
    }
    let (_, buffer) = block_cursor.unbind().map_err(bind_error)?;
    buffers.keep(spec, buffer);
    Ok(outcome)
}

/// The fetch buffer of the last query, kept for the next one of the same shape: a key
/// range read runs many queries, and a buffer of megabytes allocated for each one is as
/// many megabytes of pages the kernel zeroes again.
#[derive(Default)]
struct BufferCache {
    kept: Option<(Vec<FetchKind>, ColumnarDynBuffer)>,
}

impl BufferCache {
    fn take(&mut self, spec: &SubtaskSpec, table: &str) -> Result<ColumnarDynBuffer, SourceError> {
        match self.kept.take() {
            Some((shape, buffer)) if shape == fetch_shape(spec) => Ok(buffer),
            _ => block_buffer(spec, table),
        }
    }

    fn keep(&mut self, spec: &SubtaskSpec, buffer: ColumnarDynBuffer) {
        self.kept = Some((fetch_shape(spec), buffer));
    }
}

fn fetch_shape(spec: &SubtaskSpec) -> Vec<FetchKind> {
    spec.columns.iter().map(|c| c.fetch).collect()
}

/// [`read_blocks`] on two threads: this one fetches into one buffer while a second converts
/// the block fetched before it into the sink, so the driver's work and dbhaul's overlap
/// (the driver's share of a block read is most of it, and a single-threaded read waits on
/// the conversion in between). Two buffers, handed back and forth; blocks reach the sink in
/// the order fetched, so chunks close where a single-threaded read closes them.
fn read_blocks_overlapped(
    cursor: impl Cursor,
    spec: &SubtaskSpec,
    table: &str,
    sink: &mut (impl RowSink + Send),
) -> Result<QueryOutcome, SourceError> {
    use std::sync::mpsc::sync_channel;
    let bind_error = |e| SourceError::odbc(format!("binding fetch buffers for {table}"), e);
    let (spare, first) = (block_buffer(spec, table)?, block_buffer(spec, table)?);
    let mut block_cursor = cursor.bind_buffer(first).map_err(bind_error)?;
    let (full_tx, full_rx) = sync_channel::<ColumnarDynBuffer>(1);
    let (empty_tx, empty_rx) = sync_channel::<ColumnarDynBuffer>(2);
    empty_tx.send(spare).expect("the channel has room");
    std::thread::scope(|scope| {
        let converter = scope.spawn(move || {
            let mut outcome = QueryOutcome {
                count: 0,
                last_key: None,
            };
            for buffer in full_rx {
                convert_block(&buffer, spec, &mut outcome, sink)?;
                if empty_tx.send(buffer).is_err() {
                    break;
                }
            }
            Ok(outcome)
        });
        let fetched = (|| {
            while fetch_block(&mut block_cursor, spec, table)?.is_some() {
                let (cursor, filled) = block_cursor.unbind().map_err(bind_error)?;
                // A converter that stopped (the sink asked to, or it failed) says why below.
                let Ok(()) = full_tx.send(filled) else {
                    return Ok(());
                };
                let Ok(empty) = empty_rx.recv() else {
                    return Ok(());
                };
                block_cursor = cursor.bind_buffer(empty).map_err(bind_error)?;
            }
            Ok(())
        })();
        drop(full_tx);
        drop(empty_rx);
        let converted = converter
            .join()
            .expect("the block converter does not panic");
        fetched.and(converted)
    })
}

/// A fetch buffer of [`block_rows`] rows for the subtask's columns (none of them a LOB).
fn block_buffer(spec: &SubtaskSpec, table: &str) -> Result<ColumnarDynBuffer, SourceError> {
    let descs: Vec<BufferDesc> = spec
        .columns
        .iter()
        .map(|c| match c.fetch {
            FetchKind::Text { max_bytes } => BufferDesc::Text {
                max_str_len: max_bytes,
            },
            FetchKind::Binary { max_bytes } => BufferDesc::Binary { max_bytes },
            FetchKind::Float64 => BufferDesc::F64 { nullable: true },
            // As a double, printed as a float: MariaDB Connector/ODBC 3.1 writes a REAL into
            // a 4-byte column buffer at an 8-byte stride, so every other row came out 0.
            FetchKind::Float32 => BufferDesc::F64 { nullable: true },
            FetchKind::LongText | FetchKind::LongBinary => {
                unreachable!("LOB columns are read row-wise")
            }
        })
        .collect();
    ColumnarDynBuffer::try_from_descs(block_rows(spec), descs)
        .map_err(|e| SourceError::odbc(format!("allocating fetch buffers for {table}"), e))
}

/// Fetch the next block into the bound buffer, with the truncation check on; `None` at the
/// end of the result.
fn fetch_block<'b, C: Cursor>(
    block_cursor: &'b mut odbc_api::BlockCursor<C, ColumnarDynBuffer>,
    spec: &SubtaskSpec,
    table: &str,
) -> Result<Option<&'b ColumnarDynBuffer>, SourceError> {
    match block_cursor.fetch_with_truncation_check(true) {
        Ok(block) => Ok(block),
        Err(odbc_api::Error::TooLargeValueForBuffer { buffer_index, .. }) => {
            let column = &spec.columns[buffer_index];
            let max_bytes = match column.fetch {
                FetchKind::Text { max_bytes } | FetchKind::Binary { max_bytes } => max_bytes,
                _ => 0,
            };
            Err(SourceError::Truncated {
                table: table.to_string(),
                column: column.name.clone(),
                max_bytes,
            })
        }
        Err(e) => Err(SourceError::odbc(format!("fetching rows of {table}"), e)),
    }
}

/// Hand one fetched block's rows to the sink, then tell it the block ended (with the key of
/// its last row when the table has a key).
fn convert_block(
    block: &ColumnarDynBuffer,
    spec: &SubtaskSpec,
    outcome: &mut QueryOutcome,
    sink: &mut impl RowSink,
) -> Result<(), SourceError> {
    let n_rows = block.num_rows();
    let views = column_views(block, spec);
    for row in 0..n_rows {
        for view in &views {
            sink.field(view.get(row));
        }
        sink.end_row();
    }
    if let Some(last) = n_rows.checked_sub(1) {
        outcome.last_key = last_key_of(&views, spec, last);
    }
    outcome.count += n_rows as u64;
    sink.end_block(outcome.last_key.as_deref())
        .map_err(|Stop| SourceError::Cancelled)
}

/// The key of row `row` of a block, when the table has a key and its values are text.
fn last_key_of(views: &[ColumnView<'_>], spec: &SubtaskSpec, row: usize) -> Option<Vec<String>> {
    spec.key
        .as_ref()?
        .columns
        .iter()
        .map(|i| match views[*i].get(row) {
            // A key that is not UTF-8 could not be compared again: none.
            Field::Text(v) => std::str::from_utf8(v).ok().map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// A view of each column of a fetched block, as the spec's fetch kinds bound them.
fn column_views<'b>(block: &'b ColumnarDynBuffer, spec: &SubtaskSpec) -> Vec<ColumnView<'b>> {
    spec.columns
        .iter()
        .enumerate()
        .map(|(i, c)| match c.fetch {
            FetchKind::Binary { .. } => {
                ColumnView::Binary(block.column(i).as_binary().expect("binary buffer"))
            }
            FetchKind::Float64 => {
                ColumnView::Float64(block.column(i).as_nullable_slice().expect("f64 buffer"))
            }
            FetchKind::Float32 => {
                ColumnView::Float32(block.column(i).as_nullable_slice().expect("f64 buffer"))
            }
            _ => ColumnView::Text(block.column(i).as_text().expect("text buffer")),
        })
        .collect()
}

enum ColumnView<'a> {
    Text(odbc_api::buffers::TextColumnSlice<'a, u8>),
    Binary(odbc_api::buffers::BinColumnSlice<'a>),
    Float64(odbc_api::buffers::NullableSlice<'a, f64>),
    /// A single-precision column, fetched as a double (exactly) and printed as a float.
    Float32(odbc_api::buffers::NullableSlice<'a, f64>),
}

impl ColumnView<'_> {
    fn get(&self, row: usize) -> Field<'_> {
        match self {
            ColumnView::Text(slice) => slice.get(row).map_or(Field::Null, Field::Text),
            ColumnView::Binary(slice) => slice.get(row).map_or(Field::Null, Field::Binary),
            ColumnView::Float64(slice) => {
                slice.get(row).map_or(Field::Null, |v| Field::Float64(*v))
            }
            ColumnView::Float32(slice) => slice
                .get(row)
                .map_or(Field::Null, |v| Field::Float32(*v as f32)),
        }
    }
}

/// Rows per block in the row-wise read: how often the sink hears `end_block`.
const ROW_WISE_BLOCK_BYTES: usize = 4 * 1024 * 1024;

fn read_row_wise(
    mut cursor: impl Cursor,
    spec: &SubtaskSpec,
    table: &str,
    mut slices: Option<&mut LobSlices<'_>>,
    sink: &mut impl RowSink,
) -> Result<QueryOutcome, SourceError> {
    let fetch_error = |e| SourceError::odbc(format!("fetching rows of {table}"), e);
    let mut value = Vec::new();
    let mut piece = vec![0u8; LOB_PIECE_BYTES];
    let key_columns = spec
        .key
        .as_ref()
        .map(|k| k.columns.clone())
        .unwrap_or_default();
    let mut key_values: Vec<Option<String>> = vec![None; key_columns.len()];
    let mut outcome = QueryOutcome {
        count: 0,
        last_key: None,
    };
    let mut block_bytes = 0usize;
    let first = slices.as_ref().map_or(0, |s| s.address.len());
    while let Some(mut row) = cursor.next_row().map_err(fetch_error)? {
        if let Some(slices) = slices.as_deref_mut() {
            for (i, value) in slices.address.iter_mut().enumerate() {
                row.get_text(i as u16 + 1, value).map_err(fetch_error)?;
            }
        }
        for (i, column) in spec.columns.iter().enumerate() {
            let col = (first + i + 1) as u16;
            match column.fetch {
                FetchKind::Text { .. } => {
                    let present = row.get_text(col, &mut value).map_err(fetch_error)?;
                    block_bytes += value.len();
                    sink.field(if present {
                        Field::Text(&value)
                    } else {
                        Field::Null
                    });
                    if let Some(k) = key_columns.iter().position(|c| *c == i) {
                        // Reuse the key's buffer: no allocation per row. A key that is not
                        // UTF-8 could not be compared again: none.
                        let slot = &mut key_values[k];
                        let text = std::str::from_utf8(&value).ok().filter(|_| present);
                        match (text, slot.as_mut()) {
                            (Some(text), Some(kept)) => {
                                kept.clear();
                                kept.push_str(text);
                            }
                            (Some(text), None) => *slot = Some(text.to_owned()),
                            (None, _) => *slot = None,
                        }
                    }
                }
                FetchKind::Binary { .. } => {
                    let present = row.get_binary(col, &mut value).map_err(fetch_error)?;
                    block_bytes += value.len();
                    sink.field(if present {
                        Field::Binary(&value)
                    } else {
                        Field::Null
                    });
                }
                FetchKind::Float64 => {
                    let mut v = Nullable::<f64>::null();
                    row.get_data(col, &mut v).map_err(fetch_error)?;
                    sink.field(v.into_opt().map_or(Field::Null, Field::Float64));
                }
                FetchKind::Float32 => {
                    let mut v = Nullable::<f64>::null();
                    row.get_data(col, &mut v).map_err(fetch_error)?;
                    sink.field(
                        v.into_opt()
                            .map_or(Field::Null, |v| Field::Float32(v as f32)),
                    );
                }
                FetchKind::LongText | FetchKind::LongBinary => {
                    block_bytes += read_lob(
                        &mut row,
                        col,
                        i,
                        column.fetch.is_binary(),
                        slices.as_deref_mut(),
                        &mut piece,
                        sink,
                        table,
                    )?;
                }
            }
        }
        sink.end_row();
        outcome.count += 1;
        if block_bytes >= ROW_WISE_BLOCK_BYTES {
            block_bytes = 0;
            let last_key = current_key(&key_values);
            sink.end_block(last_key.as_deref())
                .map_err(|Stop| SourceError::Cancelled)?;
        }
    }
    if outcome.count > 0 {
        outcome.last_key = current_key(&key_values);
    }
    sink.end_block(outcome.last_key.as_deref())
        .map_err(|Stop| SourceError::Cancelled)?;
    Ok(outcome)
}

/// The key of the row read last, when every key column has a value.
fn current_key(values: &[Option<String>]) -> Option<Vec<String>> {
    if values.is_empty() {
        return None;
    }
    values.iter().cloned().collect()
}

/// Stream one LOB value into the sink; returns its size in bytes. With `slices`, a value
/// whose first slice is full is read on, slice after slice, by the row's address.
#[allow(clippy::too_many_arguments)]
fn read_lob(
    row: &mut CursorRow<'_>,
    col: u16,
    column: usize,
    binary: bool,
    slices: Option<&mut LobSlices<'_>>,
    piece: &mut [u8],
    sink: &mut impl RowSink,
    table: &str,
) -> Result<usize, SourceError> {
    let streamed = stream_value(row, col, piece, sink, binary, true, table)?;
    let Some(mut total) = streamed else {
        return Ok(0);
    };
    if let (Some(slices), true) = (slices, total.units == LOB_SLICE) {
        total.bytes += slices.read_rest(column, total.bytes + 1, piece, sink, table)?;
    }
    sink.end_stream();
    Ok(total.bytes)
}

/// How much of a LOB value came: bytes, and units of `substr` (characters of text,
/// bytes of binary).
#[derive(Debug, Clone, Copy)]
struct Streamed {
    bytes: usize,
    units: usize,
}

/// Stream one value (or one slice of it) in pieces. With `open`, it starts a value (a NULL
/// is told to the sink); without, it goes on with one already begun. Returns `None` for
/// NULL. Does not end the stream.
fn stream_value(
    row: &mut CursorRow<'_>,
    col: u16,
    piece: &mut [u8],
    sink: &mut impl RowSink,
    binary: bool,
    open: bool,
    table: &str,
) -> Result<Option<Streamed>, SourceError> {
    let mut counted = Streamed { bytes: 0, units: 0 };
    let mut first = true;
    loop {
        let got = if binary {
            get_piece::<Binary>(row, col, piece, table)?
        } else {
            get_piece::<Text>(row, col, piece, table)?
        };
        let Some((len, complete)) = got else {
            if open {
                sink.field(Field::Null);
            }
            return Ok(None);
        };
        if first && open {
            sink.begin_stream(binary);
        }
        first = false;
        let bytes = &piece[..len];
        counted.bytes += len;
        counted.units += if binary {
            len
        } else {
            // Characters: every byte that does not continue a UTF-8 sequence.
            bytes.iter().filter(|b| (**b & 0xC0) != 0x80).count()
        };
        sink.piece(bytes).map_err(|Stop| SourceError::Cancelled)?;
        if complete {
            return Ok(Some(counted));
        }
    }
}

/// One `SQLGetData` piece into `piece`: its length and whether the value is complete, or
/// `None` for NULL.
fn get_piece<K>(
    row: &mut CursorRow<'_>,
    col: u16,
    piece: &mut [u8],
    table: &str,
) -> Result<Option<(usize, bool)>, SourceError>
where
    K: odbc_api::parameter::VarKind<Element = u8>,
    for<'a> VarCell<&'a mut [u8], K>: odbc_api::parameter::CElement + odbc_api::handles::CDataMut,
{
    // A truncated text piece ends in the driver's terminating zero.
    if let Some(last) = piece.last_mut() {
        *last = 0;
    }
    let mut cell =
        VarCell::<&mut [u8], K>::from_buffer(&mut *piece, odbc_api::buffers::Indicator::NoTotal);
    row.get_data(col, &mut cell)
        .map_err(|e| SourceError::odbc(format!("fetching a LOB value of {table}"), e))?;
    if cell.indicator() == odbc_api::buffers::Indicator::Null {
        return Ok(None);
    }
    let len = cell.as_bytes().map_or(0, <[u8]>::len);
    Ok(Some((len, cell.is_complete())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ColumnSpec, KeyKind, TableRef};
    use crate::source::Dialect;

    fn spec(columns: &[(&str, i16)], key: &[usize]) -> SubtaskSpec {
        SubtaskSpec {
            estimated_rows: None,
            largest_lob_row: None,
            table: TableRef {
                catalog: Some("shop".into()),
                schema: None,
                name: "t".into(),
            },
            columns: columns
                .iter()
                .map(|(name, sql_type)| {
                    ColumnSpec::from_catalog(
                        name.to_string(),
                        match *sql_type {
                            4 => "int4",
                            12 => "varchar",
                            93 => "timestamp",
                            -4 => "bytea",
                            _ => "text",
                        }
                        .into(),
                        *sql_type,
                        Some(10),
                        Some(0),
                    )
                })
                .collect(),
            left_out: Vec::new(),
            filter: Some("a <> 0".into()),
            partition: None,
            key: (!key.is_empty()).then(|| KeyKind {
                columns: key.to_vec(),
            }),
        }
    }

    #[test]
    fn the_read_method_follows_the_driver_and_the_columns() {
        let keyed = spec(&[("a", 4), ("b", 12)], &[0]);
        let mut with_lob = spec(&[("a", 4), ("body", -1)], &[0]);
        with_lob.columns[1].fetch = FetchKind::LongText;
        let maria = Source::offline(Dialect::MariaDb, '`');
        let pg = Source::offline(Dialect::Postgres, '"');
        assert!(matches!(
            ReadMethod::for_subtask(&maria, &keyed),
            ReadMethod::KeyRanges { .. }
        ));
        // MariaDB LOBs come in their rows up to INLINE_LOB_BYTES: ranges sized as for
        // bounded columns.
        assert_eq!(
            ReadMethod::for_subtask(&maria, &with_lob),
            ReadMethod::KeyRanges {
                rows_per_query: 1000
            }
        );
        assert_eq!(ReadMethod::for_subtask(&pg, &keyed), ReadMethod::Blocks);
        assert_eq!(ReadMethod::for_subtask(&pg, &with_lob), ReadMethod::RowWise);
        let unkeyed = spec(&[("a", 4)], &[]);
        assert_eq!(
            ReadMethod::for_subtask(&maria, &unkeyed),
            ReadMethod::Blocks
        );
        // Ranges share the process's budget: a partition alone or beside one other gets 24
        // MiB; four at once, 12 each; an unpartitioned table's two ranges, half its share.
        let mut wide = spec(&[("a", 4), ("pad", 12)], &[0]);
        let key_bytes = row_buffer_bytes(&spec(&[("a", 4)], &[0]));
        wide.columns[1].fetch = FetchKind::Text {
            max_bytes: 1024 - 9 - key_bytes,
        };
        let rows = |partitioned: bool, readers| {
            let mut spec = wide.clone();
            if partitioned {
                spec.partition = Some(crate::model::PartitionSpec::new(
                    "part-001".into(),
                    "a",
                    "`a`",
                    crate::model::PartitionBound::Below("10".into()),
                ));
            }
            match ReadMethod::sharing(&maria, &spec, readers) {
                ReadMethod::KeyRanges { rows_per_query } => rows_per_query,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(row_buffer_bytes(&wide), 1024);
        assert_eq!([rows(true, 1), rows(true, 2)], [24 * 1024, 24 * 1024]);
        assert_eq!([rows(true, 4), rows(true, 8)], [12 * 1024, 6 * 1024]);
        assert_eq!([rows(false, 1), rows(false, 4)], [12 * 1024, 6 * 1024]);
    }

    #[test]
    fn key_ranges_continue_after_the_last_key_in_key_order() {
        let composite = spec(&[("b", 12), ("a", 4), ("c", 91)], &[1, 0, 2]);
        let names = ["`a`".to_string(), "`b`".to_string(), "`c`".to_string()];
        let values = [
            "42".to_string(),
            "x'y".to_string(),
            "2024-01-01".to_string(),
        ];
        // Numbers as numbers, characters as parameters, a date as a quoted literal.
        let (predicate, params) = after_key(&composite, &names, &values);
        assert_eq!(
            predicate,
            "(`a` > 42) OR (`a` = 42 AND `b` > ?) OR (`a` = 42 AND `b` = ? AND `c` > '2024-01-01')"
        );
        assert_eq!(params, ["x'y", "x'y"]);
        let maria = Source::offline(Dialect::MariaDb, '`');
        assert_eq!(
            select_sql(&maria, &composite),
            "SELECT `b`, `a`, `c` FROM `shop`.`t` WHERE (a <> 0)"
        );
    }

    /// The rest of a long value comes in byte slices of one query by the row's address,
    /// which must be numbers (it is written into the SQL).
    #[test]
    fn the_slices_of_a_long_value_are_asked_for_by_the_rows_address() {
        let pg = Source::offline(Dialect::Postgres, '"');
        let value = "convert_to(CAST(\"body\" AS text), 'UTF8')";
        let table = pg.qualified(&spec(&[("a", 4)], &[0]).table);
        let sql = |tableoid: &str, ctid: &str| {
            slices_sql(&table, value, tableoid.as_bytes(), ctid.as_bytes(), 262_145)
        };
        assert_eq!(
            sql("16388", "(0,12)").unwrap(),
            "SELECT g, substr(v.c, g, 1048576) FROM (SELECT convert_to(CAST(\"body\" AS text), \
             'UTF8') AS c FROM \"t\" WHERE tableoid = 16388 AND ctid = '(0,12)' OFFSET 0) AS v, \
             generate_series(262145, greatest(octet_length(v.c), 262145), 1048576) AS g"
        );
        assert!(sql("16388", "(0,1'); DROP TABLE t; --").is_none());
        assert!(sql("x", "(0,1)").is_none());
    }

    #[test]
    fn a_resumed_read_goes_on_after_the_checkpoints_key_in_key_order() {
        let composite = spec(&[("a", 4), ("b", 12), ("ts", 93)], &[0, 1]);
        let pg = Source::offline(Dialect::Postgres, '"');
        let (sql, params) = ordered_sql(&pg, &composite, None, false);
        // PostgreSQL: numbers and times asked for as the server's text (psqlODBC would
        // convert them); the key qualified by the table, so ORDER BY sorts by the column and
        // not by the text item named like it.
        assert_eq!(
            sql,
            "SELECT CAST(\"a\" AS text), \"b\", CAST(\"ts\" AS text) FROM \"t\" WHERE (a <> 0) \
             ORDER BY \"t\".\"a\", \"t\".\"b\""
        );
        assert!(params.is_empty());
        let after = ["7".to_string(), "k'1".to_string()];
        let (sql, params) = ordered_sql(&pg, &composite, Some(&after), false);
        assert_eq!(
            sql,
            "SELECT CAST(\"a\" AS text), \"b\", CAST(\"ts\" AS text) FROM \"t\" WHERE (a <> 0) \
             AND ((\"t\".\"a\" > 7) OR (\"t\".\"a\" = 7 AND \"t\".\"b\" > ?)) \
             ORDER BY \"t\".\"a\", \"t\".\"b\""
        );
        assert_eq!(params, ["k'1"]);
        // Sliced LOBs: the row's address first, each LOB's first slice in its place, in
        // key order all the same.
        let mut with_lob = spec(&[("a", 4), ("body", -1), ("bin", -4)], &[0]);
        with_lob.columns[1].fetch = FetchKind::LongText;
        with_lob.columns[2].fetch = FetchKind::LongBinary;
        let (sql, _) = ordered_sql(&pg, &with_lob, Some(&["7".to_string()]), true);
        assert_eq!(
            sql,
            "SELECT tableoid, ctid, CAST(\"a\" AS text), substr(CAST(\"body\" AS text), 1, \
             262144), substr(\"bin\", 1, 262144) FROM \"t\" WHERE (a <> 0) AND \
             ((\"t\".\"a\" > 7)) ORDER BY \"t\".\"a\""
        );
        // A timestamp key quoted as a literal, its quote doubled.
        let by_time = spec(&[("ts", 93)], &[0]);
        let (predicate, params) = after_key(&by_time, &["ts".into()], &["it's".into()]);
        assert_eq!((predicate.as_str(), params.len()), ("(ts > 'it''s')", 0));
    }
}
