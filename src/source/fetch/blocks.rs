//! Block fetch: every column bounded, one columnar buffer sized from a byte budget, filled
//! by the driver a block at a time with the truncation check on, and converted on a second
//! thread while the next block is fetched.

use super::*;

/// Bytes of fetch buffer per block: rows per block = budget / bytes per row.
pub(super) const BLOCK_BUDGET_BYTES: usize = 8 * 1024 * 1024;
/// Most rows per block, whatever the budget allows.
pub(super) const MAX_BLOCK_ROWS: usize = 65_536;
/// Rows per fetch block: the batch size of the block read, and of the native path's
/// batches (so both close chunks after the same rows).
pub fn block_rows(spec: &SubtaskSpec) -> usize {
    (BLOCK_BUDGET_BYTES / row_buffer_bytes(spec).max(1)).clamp(1, MAX_BLOCK_ROWS)
}

pub(super) fn row_buffer_bytes(spec: &SubtaskSpec) -> usize {
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

pub(super) fn read_blocks(
    cursor: impl Cursor,
    spec: &SubtaskSpec,
    table: &str,
    sink: &mut impl RowSink,
) -> Result<QueryOutcome, SourceError> {
    let mut buffers = BufferCache::default();
    read_blocks_into(cursor, &mut buffers, spec, table, sink)
}

/// [`read_blocks`] into a buffer of `buffers`, left there for the next query.
pub(super) fn read_blocks_into(
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
pub(super) struct BufferCache {
    pub(super) kept: Option<(Vec<FetchKind>, ColumnarDynBuffer)>,
}

impl BufferCache {
    pub(super) fn take(
        &mut self,
        spec: &SubtaskSpec,
        table: &str,
    ) -> Result<ColumnarDynBuffer, SourceError> {
        match self.kept.take() {
            Some((shape, buffer)) if shape == fetch_shape(spec) => Ok(buffer),
            _ => block_buffer(spec, table),
        }
    }

    pub(super) fn keep(&mut self, spec: &SubtaskSpec, buffer: ColumnarDynBuffer) {
        self.kept = Some((fetch_shape(spec), buffer));
    }
}

pub(super) fn fetch_shape(spec: &SubtaskSpec) -> Vec<FetchKind> {
    spec.columns.iter().map(|c| c.fetch).collect()
}

/// [`read_blocks`] on two threads: this one fetches into one buffer while a second converts
/// the block fetched before it into the sink, so the driver's work and dbhaul's overlap
/// (the driver's share of a block read is most of it, and a single-threaded read waits on
/// the conversion in between). Two buffers, handed back and forth; blocks reach the sink in
/// the order fetched, so chunks close where a single-threaded read closes them.
pub(super) fn read_blocks_overlapped(
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
pub(super) fn block_buffer(
    spec: &SubtaskSpec,
    table: &str,
) -> Result<ColumnarDynBuffer, SourceError> {
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
pub(super) fn fetch_block<'b, C: Cursor>(
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
pub(super) fn convert_block(
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
pub(super) fn last_key_of(
    views: &[ColumnView<'_>],
    spec: &SubtaskSpec,
    row: usize,
) -> Option<Vec<String>> {
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
pub(super) fn column_views<'b>(
    block: &'b ColumnarDynBuffer,
    spec: &SubtaskSpec,
) -> Vec<ColumnView<'b>> {
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

pub(super) enum ColumnView<'a> {
    Text(odbc_api::buffers::TextColumnSlice<'a, u8>),
    Binary(odbc_api::buffers::BinColumnSlice<'a>),
    Float64(odbc_api::buffers::NullableSlice<'a, f64>),
    /// A single-precision column, fetched as a double (exactly) and printed as a float.
    Float32(odbc_api::buffers::NullableSlice<'a, f64>),
}

impl ColumnView<'_> {
    pub(super) fn get(&self, row: usize) -> Field<'_> {
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
