//! Key ranges, for a driver that holds each result whole (MariaDB Connector/ODBC): the
//! table read as `WHERE key > last ORDER BY key LIMIT n` queries, on one connection or two
//! overlapped, and LOB values inline up to a limit that follows the values seen.

use super::*;

/// Rows per key-range query for tables with LOBs read whole (whose rows can be any size).
pub(super) const RANGE_ROWS_WITH_LOBS: usize = 8;
/// A MariaDB LOB value (`TEXT`, `BLOB` …) up to this many bytes comes in its row, read in
/// blocks like any bounded column; a longer one is left out of the row (NULL and a flag)
/// and read in slices by the row's key. Ordinary `TEXT` values are short: most tables
/// never take the slow way.
pub const INLINE_LOB_BYTES: usize = 16 * 1024;
/// Whether a subtask's LOB values come in their rows up to [`INLINE_LOB_BYTES`] and are
/// read in blocks ([`read_inline_lobs`]): a MariaDB table with a key and LOB columns.
pub fn inline_lobs(source: &Source, spec: &SubtaskSpec) -> bool {
    source.dialect == crate::source::Dialect::MariaDb && spec.key.is_some() && spec.has_lobs()
}

/// The subtask as its rows are fetched when LOBs come inline: each LOB column bounded
/// (a text to [`inline_chars`] + 1 characters, a binary to `limit` bytes), and after the
/// columns one flag per binary LOB column (`1`: the value was longer and is read in
/// slices). A text needs no flag: one character more than the limit says it is longer.
pub(super) fn inline_spec(spec: &SubtaskSpec, limit: usize) -> SubtaskSpec {
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
pub(super) fn inline_chars(limit: usize) -> usize {
    limit / 4
}

/// Characters in UTF-8 `bytes`: the bytes that do not continue a character.
pub(super) fn utf8_chars(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| (**b as i8) >= -0x40).count()
}

/// How long an inline LOB value may be, and so how many rows a key range holds, from the
/// values seen so far: a range's rows times its limit stay within the share of the range
/// budget the read started with, whatever the values. Ordinary `TEXT` values (tens or
/// hundreds of bytes) make ranges of tens of thousands of rows (a range is two queries:
/// few and large is what makes the read fast); a value longer than the limit of its range
/// still comes whole, in slices, and widens the limit of the ranges after it.
pub(super) struct InlineSizing {
    /// Bytes of results one range may hold.
    pub(super) share: usize,
    /// The longest inline LOB value seen lately, in bytes (the last range's longest, or a
    /// quarter of the one before, whichever is more).
    pub(super) seen: AtomicUsize,
}

impl InlineSizing {
    pub(super) fn new(spec: &SubtaskSpec, rows_per_query: usize) -> InlineSizing {
        InlineSizing {
            share: rows_per_query * row_buffer_bytes(&inline_spec(spec, INLINE_LOB_BYTES)),
            seen: AtomicUsize::new(INLINE_LOB_BYTES),
        }
    }

    /// The next range's limit on an inline value, and its rows.
    pub(super) fn next(&self, spec: &SubtaskSpec) -> (usize, usize) {
        let seen = self.seen.load(Ordering::Relaxed);
        let limit = seen.saturating_mul(2).clamp(256, INLINE_LOB_BYTES);
        let rows = self.share / row_buffer_bytes(&inline_spec(spec, limit)).max(1);
        (limit, rows.clamp(1000, 100_000))
    }

    /// A range was read whose longest LOB value that came in its row had `longest` bytes
    /// (one read in slices does not count: a few long values among many short ones should
    /// not keep every range small).
    pub(super) fn record(&self, longest: usize) {
        let before = self.seen.load(Ordering::Relaxed);
        self.seen.store(longest.max(before / 4), Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn read_key_ranges(
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
pub(super) struct Relay<'s, S> {
    pub(super) state: std::sync::Mutex<RelayState>,
    pub(super) changed: std::sync::Condvar,
    /// Locked only by the reader whose turn it is, so the other can fix and run the next
    /// range meanwhile.
    pub(super) sink: std::sync::Mutex<&'s mut S>,
}

pub(super) struct RelayState {
    /// The range whose rows go to the sink next.
    pub(super) turn: u64,
    /// Where the range after the last one fixed begins: `Some(None)` from the table's start,
    /// `Some(Some(key))` after `key`; `None` while no range is fixed beyond the last taken.
    pub(super) next_start: Option<Option<Vec<String>>>,
    /// The range that begins at `next_start`.
    pub(super) next_range: u64,
    /// The last range is fixed: there is no next.
    pub(super) ended: bool,
    /// A reader failed or the sink stopped: everyone stops.
    pub(super) failed: bool,
    pub(super) rows: u64,
    pub(super) queries: u64,
}

/// Key ranges on two connections, in order. A driver that holds each result whole (MariaDB
/// Connector/ODBC before 3.1.17) makes a one-connection read take turns: the server and the
/// driver work while rows wait, then rows are converted while the server waits. Here each
/// range is fixed ahead: its end is the `rows_per_query`-th key after its start (an index
/// read, `LIMIT 1 OFFSET n-1`), so the next range can run on the other connection while this
/// one's rows are converted. Each reader owns a connection and takes every other range; the
/// rows reach the sink strictly in key order, one range after the other, so checkpoints and
/// resume work as with one connection.
pub(super) fn read_key_ranges_overlapped<'e>(
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
pub(super) fn range_reader<S: RowSink>(
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
        let end = crate::source::catalog::query_text(conn, &bound_sql, &params)?
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
pub(super) fn after_key(
    spec: &SubtaskSpec,
    key_names: &[String],
    values: &[String],
) -> (String, Vec<String>) {
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

/// Read one query of [`select_inline`] in blocks: short LOB values from the block (as
/// streamed values, so `files.lob_objects` and the quoting of LOBs hold), long ones in
/// slices by the row's key, in the query's transaction.
#[allow(clippy::too_many_arguments)]
pub(super) fn read_inline_lobs(
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
