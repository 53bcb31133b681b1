//! Reading a subtask's rows. Three ways, chosen per subtask:
//!
//! - **Block fetch**: every column bounded; one columnar buffer (text, or binary for binary
//!   columns) sized from a byte budget, filled by the driver a block at a time, with the
//!   truncation check on — a value that does not fit fails the subtask, it is never cut.
//! - **Row-wise**: some column is a LOB; each row is read value by value with `SQLGetData`,
//!   LOBs in fixed pieces, so a 100 MB value never sits in memory whole on our side.
//! - **Key ranges**: the driver cannot stream (MariaDB Connector/ODBC 3.1 buffers every
//!   result); the table is read as `WHERE key > last ORDER BY key LIMIT n` queries, each
//!   read by one of the two ways above.
//!
//! Rows go to a [`RowSink`] (the CSV encoder), which is told after every block so it can
//! hand the block downstream and say whether to go on.

use odbc_api::buffers::{BufferDesc, ColumnarDynBuffer};
use odbc_api::parameter::{Binary, Text, VarCell};
use odbc_api::{Connection, Cursor, CursorRow, IntoParameter, Nullable};

use super::connection::Source;
use super::{SourceError, error::describe};
use crate::model::subtask::sql;
use crate::model::{FetchKind, SubtaskSpec, ValueFamily};

/// Bytes of fetch buffer per block: rows per block = budget / bytes per row.
const BLOCK_BUDGET_BYTES: usize = 8 * 1024 * 1024;
/// Most rows per block, whatever the budget allows.
const MAX_BLOCK_ROWS: usize = 65_536;
/// Piece size for streaming LOB values.
const LOB_PIECE_BYTES: usize = 256 * 1024;
/// Rows per key-range query: enough to amortise the query, small enough that a driver
/// which buffers the whole result stays within a few tens of MB.
const RANGE_BUDGET_BYTES: usize = 24 * 1024 * 1024;
/// Rows per key-range query for tables with LOBs (whose rows can be any size).
const RANGE_ROWS_WITH_LOBS: usize = 8;

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

impl ReadMethod {
    pub fn for_subtask(source: &Source, spec: &SubtaskSpec) -> ReadMethod {
        if !source.dialect.streams_results() && spec.key.is_some() {
            let rows_per_query = if spec.has_lobs() {
                RANGE_ROWS_WITH_LOBS
            } else {
                (RANGE_BUDGET_BYTES / row_buffer_bytes(spec).max(1)).clamp(1000, 100_000)
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

/// The `SELECT` of a subtask, without key-range additions.
pub fn select_sql(source: &Source, spec: &SubtaskSpec) -> String {
    let columns: Vec<String> = spec
        .columns
        .iter()
        .map(|c| select_item(source, c))
        .collect();
    select_from(source, spec, &columns)
}

/// `SELECT items FROM table WHERE filter AND partition`: the subtask's rows, as `items`.
pub fn select_from(source: &Source, spec: &SubtaskSpec, items: &[String]) -> String {
    let mut sql = format!(
        "SELECT {} FROM {}",
        items.join(", "),
        source.qualified(&spec.table)
    );
    if let Some(predicate) = row_predicate(spec) {
        sql.push_str(" WHERE ");
        sql.push_str(&predicate);
    }
    sql
}

/// How a column is selected. SQLite turns REAL into text with 15 significant digits
/// whatever the driver asks for, so its floats are printed by SQLite with 17 (exact) and
/// fetched as text (the planner's `fit_sqlite_columns` sets that up).
fn select_item(source: &Source, column: &crate::model::ColumnSpec) -> String {
    let quoted = source.quote_ident(&column.name);
    if source.dialect == super::Dialect::Sqlite && column.family() == ValueFamily::Float {
        return format!("CASE WHEN {quoted} IS NULL THEN NULL ELSE printf('%!.17g', {quoted}) END");
    }
    quoted
}

fn predicates(spec: &SubtaskSpec) -> Vec<String> {
    let mut predicates = Vec::new();
    if let Some(filter) = &spec.filter {
        predicates.push(format!("({filter})"));
    }
    if let Some(partition) = &spec.partition {
        predicates.push(format!("({})", partition.predicate));
    }
    predicates
}

/// The combined row predicate of a subtask, as the manifest records it.
pub fn row_predicate(spec: &SubtaskSpec) -> Option<String> {
    let predicates = predicates(spec);
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
fn key_names(source: &Source, spec: &SubtaskSpec) -> Vec<String> {
    let key = spec.key.as_ref().expect("a key");
    key.columns
        .iter()
        .map(|i| source.quote_ident(&spec.columns[*i].name))
        .collect()
}

/// The one query of a subtask read in key order, after `after` if given.
fn ordered_sql(
    source: &Source,
    spec: &SubtaskSpec,
    after: Option<&[String]>,
) -> (String, Vec<String>) {
    let names = key_names(source, spec);
    let mut sql = select_sql(source, spec);
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

/// Read every row of a subtask into `sink`, in the order asked.
pub fn read_subtask(
    conn: &Connection<'_>,
    source: &Source,
    spec: &SubtaskSpec,
    order: &KeyOrder,
    sink: &mut impl RowSink,
) -> Result<ReadSummary, SourceError> {
    let table = spec.table.to_string();
    let keyed = spec.key.is_some() && (order.ordered || order.after.is_some());
    match ReadMethod::for_subtask(source, spec) {
        ReadMethod::KeyRanges { rows_per_query } => read_key_ranges(
            conn,
            source,
            spec,
            rows_per_query,
            order.after.clone(),
            &table,
            sink,
        ),
        ReadMethod::Blocks | ReadMethod::RowWise => {
            let (sql, params) = if keyed {
                ordered_sql(source, spec, order.after.as_deref())
            } else {
                (select_sql(source, spec), Vec::new())
            };
            let outcome = run_query(conn, &sql, &params, spec, &table, sink)?;
            Ok(ReadSummary {
                rows: outcome.count,
                queries: 1,
            })
        }
    }
}

fn read_key_ranges(
    conn: &Connection<'_>,
    source: &Source,
    spec: &SubtaskSpec,
    rows_per_query: usize,
    after: Option<Vec<String>>,
    table: &str,
    sink: &mut impl RowSink,
) -> Result<ReadSummary, SourceError> {
    let key_names = key_names(source, spec);
    let base = select_sql(source, spec);
    let joiner = if base.contains(" WHERE ") {
        " AND "
    } else {
        " WHERE "
    };
    let order = format!(" ORDER BY {} LIMIT {rows_per_query}", key_names.join(", "));
    let mut summary = ReadSummary::default();
    let mut last_key: Option<Vec<String>> = after;
    loop {
        let (sql, params) = match &last_key {
            None => (format!("{base}{order}"), Vec::new()),
            Some(values) => {
                let (predicate, params) = after_key(spec, &key_names, values);
                (format!("{base}{joiner}({predicate}){order}"), params)
            }
        };
        let outcome = run_query(conn, &sql, &params, spec, table, sink)?;
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

/// `key > last` for a (possibly composite) key, portable to every dialect:
/// `(a > ?) OR (a = ? AND b > ?)`. Integer and decimal keys are written as number literals,
/// so no driver compares them as floating point; character keys are parameters (no
/// escaping rules to get wrong); other keys (dates, timestamps, UUIDs) are quoted literals,
/// which every dialect converts to the column's type (a character parameter would not be
/// compared with a timestamp by PostgreSQL).
fn after_key(spec: &SubtaskSpec, key_names: &[String], values: &[String]) -> (String, Vec<String>) {
    let key = spec.key.as_ref().expect("key");
    let mut params = Vec::new();
    let render = |position: usize, params: &mut Vec<String>| {
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
    };
    let mut alternatives = Vec::new();
    for i in 0..key_names.len() {
        let mut terms = Vec::new();
        for (j, name) in key_names.iter().enumerate().take(i) {
            let v = render(j, &mut params);
            terms.push(format!("{name} = {v}"));
        }
        let v = render(i, &mut params);
        terms.push(format!("{} > {v}", key_names[i]));
        alternatives.push(format!("({})", terms.join(" AND ")));
    }
    (alternatives.join(" OR "), params)
}

fn is_plain_number(value: &str) -> bool {
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
    sink: &mut impl RowSink,
) -> Result<QueryOutcome, SourceError> {
    let query_error = |e: odbc_api::Error| classify_query_error(e, table, sql);
    let params: Vec<_> = params.iter().map(|p| p.as_str().into_parameter()).collect();
    let cursor = conn.execute(sql, &params[..], None).map_err(query_error)?;
    let Some(cursor) = cursor else {
        return Err(SourceError::Odbc {
            what: format!("reading {table}"),
            detail: format!("`{sql}` returned no result set"),
        });
    };
    // A result with LOB columns is read value by value; one without, in blocks.
    if spec.has_lobs() {
        read_row_wise(cursor, spec, table, sink)
    } else {
        read_blocks(cursor, spec, table, sink)
    }
}

fn classify_query_error(error: odbc_api::Error, table: &str, sql: &str) -> SourceError {
    let state = super::error::sql_state(&error).unwrap_or_default();
    let detail = describe(&error);
    match state.as_str() {
        "42S02" | "42P01" => SourceError::TableNotFound {
            table: table.to_string(),
        },
        _ => SourceError::Odbc {
            what: format!("reading {table} with `{sql}`"),
            detail,
        },
    }
}

fn read_blocks(
    cursor: impl Cursor,
    spec: &SubtaskSpec,
    table: &str,
    sink: &mut impl RowSink,
) -> Result<QueryOutcome, SourceError> {
    let descs: Vec<BufferDesc> = spec
        .columns
        .iter()
        .map(|c| match c.fetch {
            FetchKind::Text { max_bytes } => BufferDesc::Text {
                max_str_len: max_bytes,
            },
            FetchKind::Binary { max_bytes } => BufferDesc::Binary { max_bytes },
            FetchKind::Float64 => BufferDesc::F64 { nullable: true },
            FetchKind::Float32 => BufferDesc::F32 { nullable: true },
            FetchKind::LongText | FetchKind::LongBinary => {
                unreachable!("LOB columns are read row-wise")
            }
        })
        .collect();
    let batch_rows = block_rows(spec);
    let buffer = ColumnarDynBuffer::try_from_descs(batch_rows, descs)
        .map_err(|e| SourceError::odbc(format!("allocating fetch buffers for {table}"), e))?;
    let mut block_cursor = cursor
        .bind_buffer(buffer)
        .map_err(|e| SourceError::odbc(format!("binding fetch buffers for {table}"), e))?;
    let key = spec.key.as_ref();
    let mut outcome = QueryOutcome {
        count: 0,
        last_key: None,
    };
    loop {
        let batch = match block_cursor.fetch_with_truncation_check(true) {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(odbc_api::Error::TooLargeValueForBuffer { buffer_index, .. }) => {
                let column = &spec.columns[buffer_index];
                let max_bytes = match column.fetch {
                    FetchKind::Text { max_bytes } | FetchKind::Binary { max_bytes } => max_bytes,
                    _ => 0,
                };
                return Err(SourceError::Truncated {
                    table: table.to_string(),
                    column: column.name.clone(),
                    max_bytes,
                });
            }
            Err(e) => return Err(SourceError::odbc(format!("fetching rows of {table}"), e)),
        };
        let n_rows = batch.num_rows();
        let views: Vec<ColumnView<'_>> = spec
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match c.fetch {
                FetchKind::Binary { .. } => {
                    ColumnView::Binary(batch.column(i).as_binary().expect("binary buffer"))
                }
                FetchKind::Float64 => {
                    ColumnView::Float64(batch.column(i).as_nullable_slice().expect("f64 buffer"))
                }
                FetchKind::Float32 => {
                    ColumnView::Float32(batch.column(i).as_nullable_slice().expect("f32 buffer"))
                }
                _ => ColumnView::Text(batch.column(i).as_text().expect("text buffer")),
            })
            .collect();
        for row in 0..n_rows {
            for view in &views {
                sink.field(view.get(row));
            }
            sink.end_row();
        }
        if let (Some(key), Some(last)) = (key, n_rows.checked_sub(1)) {
            outcome.last_key = key
                .columns
                .iter()
                .map(|i| match views[*i].get(last) {
                    // A key that is not UTF-8 could not be compared again: none.
                    Field::Text(v) => std::str::from_utf8(v).ok().map(str::to_owned),
                    _ => None,
                })
                .collect();
        }
        outcome.count += n_rows as u64;
        sink.end_block(outcome.last_key.as_deref())
            .map_err(|Stop| SourceError::Cancelled)?;
    }
    Ok(outcome)
}

enum ColumnView<'a> {
    Text(odbc_api::buffers::TextColumnSlice<'a, u8>),
    Binary(odbc_api::buffers::BinColumnSlice<'a>),
    Float64(odbc_api::buffers::NullableSlice<'a, f64>),
    Float32(odbc_api::buffers::NullableSlice<'a, f32>),
}

impl ColumnView<'_> {
    fn get(&self, row: usize) -> Field<'_> {
        match self {
            ColumnView::Text(slice) => slice.get(row).map_or(Field::Null, Field::Text),
            ColumnView::Binary(slice) => slice.get(row).map_or(Field::Null, Field::Binary),
            ColumnView::Float64(slice) => {
                slice.get(row).map_or(Field::Null, |v| Field::Float64(*v))
            }
            ColumnView::Float32(slice) => {
                slice.get(row).map_or(Field::Null, |v| Field::Float32(*v))
            }
        }
    }
}

/// Rows per block in the row-wise read: how often the sink hears `end_block`.
const ROW_WISE_BLOCK_BYTES: usize = 4 * 1024 * 1024;

fn read_row_wise(
    mut cursor: impl Cursor,
    spec: &SubtaskSpec,
    table: &str,
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
    while let Some(mut row) = cursor.next_row().map_err(fetch_error)? {
        for (i, column) in spec.columns.iter().enumerate() {
            let col = (i + 1) as u16;
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
                    let mut v = Nullable::<f32>::null();
                    row.get_data(col, &mut v).map_err(fetch_error)?;
                    sink.field(v.into_opt().map_or(Field::Null, Field::Float32));
                }
                FetchKind::LongText => {
                    block_bytes +=
                        stream_value::<Text>(&mut row, col, &mut piece, sink, false, table)?;
                }
                FetchKind::LongBinary => {
                    block_bytes +=
                        stream_value::<Binary>(&mut row, col, &mut piece, sink, true, table)?;
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

/// Stream one LOB value in pieces; returns its size in bytes.
fn stream_value<K>(
    row: &mut CursorRow<'_>,
    col: u16,
    piece: &mut [u8],
    sink: &mut impl RowSink,
    binary: bool,
    table: &str,
) -> Result<usize, SourceError>
where
    K: odbc_api::parameter::VarKind<Element = u8>,
    for<'a> VarCell<&'a mut [u8], K>: odbc_api::parameter::CElement + odbc_api::handles::CDataMut,
{
    let mut total = 0usize;
    let mut first = true;
    loop {
        // A truncated text piece ends in the driver's terminating zero.
        if let Some(last) = piece.last_mut() {
            *last = 0;
        }
        let mut cell = VarCell::<&mut [u8], K>::from_buffer(
            &mut *piece,
            odbc_api::buffers::Indicator::NoTotal,
        );
        row.get_data(col, &mut cell)
            .map_err(|e| SourceError::odbc(format!("fetching a LOB value of {table}"), e))?;
        if first {
            if cell.indicator() == odbc_api::buffers::Indicator::Null {
                sink.field(Field::Null);
                return Ok(0);
            }
            sink.begin_stream(binary);
            first = false;
        }
        let bytes = cell.as_bytes().unwrap_or(&[]);
        total += bytes.len();
        sink.piece(bytes).map_err(|Stop| SourceError::Cancelled)?;
        if cell.is_complete() {
            break;
        }
    }
    sink.end_stream();
    Ok(total)
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
                        "x".into(),
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
        assert_eq!(
            ReadMethod::for_subtask(&maria, &with_lob),
            ReadMethod::KeyRanges {
                rows_per_query: RANGE_ROWS_WITH_LOBS
            }
        );
        assert_eq!(ReadMethod::for_subtask(&pg, &keyed), ReadMethod::Blocks);
        assert_eq!(ReadMethod::for_subtask(&pg, &with_lob), ReadMethod::RowWise);
        let unkeyed = spec(&[("a", 4)], &[]);
        assert_eq!(
            ReadMethod::for_subtask(&maria, &unkeyed),
            ReadMethod::Blocks
        );
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

    #[test]
    fn a_resumed_read_goes_on_after_the_checkpoints_key_in_key_order() {
        let composite = spec(&[("a", 4), ("b", 12), ("ts", 93)], &[0, 1]);
        let pg = Source::offline(Dialect::Postgres, '"');
        let (sql, params) = ordered_sql(&pg, &composite, None);
        assert_eq!(
            sql,
            "SELECT \"a\", \"b\", \"ts\" FROM \"t\" WHERE (a <> 0) ORDER BY \"a\", \"b\""
        );
        assert!(params.is_empty());
        let after = ["7".to_string(), "k'1".to_string()];
        let (sql, params) = ordered_sql(&pg, &composite, Some(&after));
        assert_eq!(
            sql,
            "SELECT \"a\", \"b\", \"ts\" FROM \"t\" WHERE (a <> 0) AND \
             ((\"a\" > 7) OR (\"a\" = 7 AND \"b\" > ?)) ORDER BY \"a\", \"b\""
        );
        assert_eq!(params, ["k'1"]);
        // A timestamp key quoted as a literal, its quote doubled.
        let by_time = spec(&[("ts", 93)], &[0]);
        let (predicate, params) = after_key(&by_time, &["ts".into()], &["it's".into()]);
        assert_eq!((predicate.as_str(), params.len()), ("(ts > 'it''s')", 0));
    }
}
