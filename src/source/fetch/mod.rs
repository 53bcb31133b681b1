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

mod blocks;
mod key_ranges;
mod lob;
mod row_wise;
mod select;

use std::sync::atomic::{AtomicUsize, Ordering};

use odbc_api::buffers::{BufferDesc, ColumnarDynBuffer};
use odbc_api::parameter::{Binary, Text, VarCell};
use odbc_api::{Connection, Cursor, CursorRow, IntoParameter, Nullable};

pub use self::blocks::*;
pub use self::key_ranges::*;
pub use self::lob::*;
use self::row_wise::*;
pub use self::select::*;
use super::SourceError;
use super::connection::Source;
use super::pg_copy::Path;
use crate::model::subtask::sql;
use crate::model::{FetchKind, SubtaskSpec, ValueFamily};

/// Bytes of key-range results (which a driver that cannot stream holds whole) this process
/// holds at once, shared by the subtasks reading from a source ([`Reading`]): enough rows
/// per query to amortise it, and a few tens of MB whatever the number of partitions. A
/// subtask gets at most half (24 MiB), so one or two subtasks read as they would alone; an
/// unpartitioned table holds two ranges at once (see [`read_key_ranges_overlapped`]), each
/// half of its share; a partition reads on one connection (partitions overlap one another).
const RANGE_BUDGET_BYTES: usize = 48 * 1024 * 1024;
/// Subtasks of this process reading from a source right now (see [`Reading`]).
static READING: AtomicUsize = AtomicUsize::new(0);
/// A PostgreSQL LOB value is selected in slices of this many characters (bytes for
/// `bytea`): at most 1 MiB per slice, whatever the characters.
pub const LOB_SLICE: usize = 256 * 1024;
/// The most bytes of one slice: four bytes per UTF-8 character.
pub const LOB_SLICE_BYTES: u64 = 4 * LOB_SLICE as u64;
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
