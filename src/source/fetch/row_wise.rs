//! Row-wise reads: a row at a time, value by value with `SQLGetData`, LOBs in pieces.

use super::*;

/// Rows per block in the row-wise read: how often the sink hears `end_block`.
pub(super) const ROW_WISE_BLOCK_BYTES: usize = 4 * 1024 * 1024;

pub(super) fn read_row_wise(
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
pub(super) fn current_key(values: &[Option<String>]) -> Option<Vec<String>> {
    if values.is_empty() {
        return None;
    }
    values.iter().cloned().collect()
}
