//! LOB values read in slices: which subtasks can be ([`sliceable`]), the further slices of
//! a row's values by its address ([`LobSlices`]), and values streamed in pieces with
//! `SQLGetData` ([`read_lob`]).

use super::*;

/// Piece size for streaming LOB values.
pub(super) const LOB_PIECE_BYTES: usize = 256 * 1024;
/// A MariaDB LOB value's further slices, in bytes: each is a query of its own (the driver
/// holds one result at a time, whole).
pub(super) const MARIADB_SLICE_BYTES: usize = 4 * 1024 * 1024;

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
        crate::source::Dialect::Postgres => {}
        crate::source::Dialect::MariaDb => return Ok(spec.key.is_some()),
        _ => return Ok(false),
    }
    let kind = crate::source::catalog::query_text(
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

/// How the other slices of a row's LOB values are fetched by its address.
pub struct LobSlices<'c> {
    pub(super) conn: &'c Connection<'c>,
    pub(super) table: String,
    /// Per subtask column, a LOB's value as bytes (text in UTF-8).
    pub(super) values: Vec<Option<String>>,
    /// Per subtask column, its name quoted.
    pub(super) names: Vec<String>,
    /// The current row's address, as the columns of [`address_items`] gave it.
    pub(super) address: Vec<Vec<u8>>,
    /// MariaDB: the key's columns, quoted, which the address holds the values of. `None`
    /// for PostgreSQL (`tableoid`, `ctid`).
    pub(super) key: Option<Vec<String>>,
}

impl<'c> LobSlices<'c> {
    /// Slices for a subtask that is [`sliceable`], so that a row's slices come from one
    /// snapshot: a PostgreSQL session is set to `REPEATABLE READ` (the read is one query);
    /// a MariaDB one too, without autocommit, and [`Self::end_range`] commits after each
    /// key range (whose query and slice queries are then one transaction).
    pub(super) fn prepare(
        conn: &'c Connection<'c>,
        source: &Source,
        spec: &SubtaskSpec,
    ) -> Result<LobSlices<'c>, SourceError> {
        let maria = source.dialect == crate::source::Dialect::MariaDb;
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
    pub(super) fn end_range(&self) -> Result<(), SourceError> {
        if self.key.is_some() {
            self.conn
                .commit()
                .map_err(|e| SourceError::odbc("ending a key range's transaction", e))?;
        }
        Ok(())
    }

    /// The current row's address, for messages.
    pub(super) fn shown_address(&self) -> String {
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
    pub(super) fn read_rest(
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
                    let sizes = crate::source::catalog::query_text(self.conn, &sql, &key_values)?;
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
pub(super) fn slices_sql(
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

/// Stream one LOB value into the sink; returns its size in bytes. With `slices`, a value
/// whose first slice is full is read on, slice after slice, by the row's address.
#[allow(clippy::too_many_arguments)]
pub(super) fn read_lob(
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
pub(super) struct Streamed {
    pub(super) bytes: usize,
    pub(super) units: usize,
}

/// Stream one value (or one slice of it) in pieces. With `open`, it starts a value (a NULL
/// is told to the sink); without, it goes on with one already begun. Returns `None` for
/// NULL. Does not end the stream.
pub(super) fn stream_value(
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
pub(super) fn get_piece<K>(
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
