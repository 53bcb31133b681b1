//! The Extractor: one OS thread and one ODBC connection per subtask (ODBC blocks; it never
//! runs on the async runtime). It reads the subtask's rows through [`crate::source::fetch`],
//! encodes them as CSV, and passes batches to the compressor with credits, so it waits
//! whenever the compressor is behind. It checks the cancel switch between batches.

use std::sync::Arc;
use std::thread::JoinHandle;

use actix::prelude::*;

use super::SubtaskContext;
use super::credit::{BoundedSender, CancelSwitch};
use super::csv::CsvEncoder;
use super::messages::{CsvBatch, LobPart, Stage, StageReport};
use crate::model::{StageFailure, SubtaskSpec};
use crate::source::connection::{Purpose, lob_fetch_rows};
use crate::source::fetch::{Field, KeyOrder, RowSink, Stop, read_subtask};
use crate::source::pg_copy;
use crate::source::{Dialect, SourceError, fetch};

/// Pass encoded rows on once this many bytes have piled up, even inside a LOB value.
const FLUSH_BYTES: usize = 4 * 1024 * 1024;

pub struct Extractor {
    pub context: Arc<SubtaskContext>,
    pub spec: Arc<SubtaskSpec>,
    pub out: BoundedSender<CsvBatch>,
    pub report: Recipient<StageReport>,
    pub cancel: CancelSwitch,
    /// The read order, and the key to go on after when the run resumes.
    pub order: KeyOrder,
    /// Rows already in the chunks of the checkpoint this run resumes from.
    pub resumed_rows: u64,
}

impl Extractor {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("extract {}", self.spec.id()))
            .spawn(move || self.run())
    }

    fn run(self) {
        // A panic in a driver or in our code must end the subtask with an error, never
        // leave it waiting for a report that does not come.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.extract()));
        let failure = match outcome {
            Ok(Ok(rows)) => {
                self.report.do_send(StageReport::Finished {
                    stage: Stage::Extract,
                    rows,
                });
                return;
            }
            Ok(Err(SourceError::Cancelled)) if self.cancel.is_cancelled() => StageFailure::Stopped,
            // The compressor went away first. It has usually reported why already, in which
            // case the subtask ignores this report.
            Ok(Err(SourceError::Cancelled)) => {
                StageFailure::Fatal("the compressor stopped unexpectedly".into())
            }
            Ok(Err(e)) => e.into(),
            Err(panic) => StageFailure::Internal(format!(
                "the extractor crashed ({}); this is a bug, please report it",
                panic_message(&panic)
            )),
        };
        let report = StageReport::Failed {
            stage: Stage::Extract,
            failure,
        };
        self.report.do_send(report);
    }

    fn extract(&self) -> Result<u64, SourceError> {
        if let Some(rows) = self.extract_native()? {
            return Ok(rows);
        }
        // Counted before connecting: partitions started together share the key-range budget
        // from their first range.
        let _reading = fetch::Reading::start();
        let (mut conn, sliced) = self.connect()?;
        // A driver that holds each result whole reads an unpartitioned table's key ranges on
        // two connections; partitions, which run side by side, overlap one another instead
        // (measured: the same speed with 30 MiB less for four at once).
        let mut spare = match fetch::ReadMethod::for_subtask(&self.context.source, &self.spec) {
            fetch::ReadMethod::KeyRanges { .. }
                if (!self.spec.has_lobs()
                    || (sliced && fetch::inline_lobs(&self.context.source, &self.spec)))
                    && self.spec.partition.is_none() =>
            {
                match self.context.source.connect(Purpose::Bulk) {
                    Ok(spare) => Some(spare),
                    Err(e) => {
                        tracing::warn!(task = %self.context.task, subtask = %self.spec.id(), "a second connection to the source failed ({e}); key ranges are read on one, more slowly");
                        None
                    }
                }
            }
            _ => None,
        };
        tracing::debug!(task = %self.context.task, subtask = %self.spec.id(), "extract started");
        let mut sink = BatchSink {
            encoder: CsvEncoder::new(&self.context.files, FLUSH_BYTES + FLUSH_BYTES / 4)
                .columns(self.spec.columns.len()),
            out: &self.out,
            cancel: &self.cancel,
            rows_pending: 0,
            keyed: self.order.ordered,
            lobs: self.lob_objects(),
            column: 0,
            row: self.resumed_rows + 1,
            held: None,
            spare: Vec::new(),
        };
        let summary = read_subtask(
            &mut conn,
            spare.as_mut(),
            &self.context.source,
            &self.spec,
            &self.order,
            sliced,
            &mut sink,
        )?;
        sink.send(true, true, None)
            .map_err(|Stop| SourceError::Cancelled)?;
        tracing::debug!(task = %self.context.task, subtask = %self.spec.id(), rows = summary.rows, queries = summary.queries, "extract finished");
        Ok(self.resumed_rows + summary.rows)
    }

    /// With `files.lob_objects`: the size above which a LOB value goes to its own object,
    /// and where its objects go.
    fn lob_objects(&self) -> Option<LobObjects> {
        let over = self.context.files.lob_objects_over?;
        let target = self.context.target.clone()?;
        Some(LobObjects {
            over: over as usize,
            task: self.context.task.to_string(),
            subtask: self.spec.id(),
            target,
        })
    }

    /// The subtask's ODBC connection, and whether its LOBs are read in slices. With LOBs,
    /// the driver's rows per round trip follow the most LOB bytes a row can bring: a slice
    /// per LOB where they are read in slices (a PostgreSQL table, a MariaDB table with a
    /// key), else the largest row of the planner's sample.
    fn connect(&self) -> Result<(odbc_api::Connection<'static>, bool), SourceError> {
        let source = &self.context.source;
        if !self.spec.has_lobs() {
            return Ok((source.connect(Purpose::Bulk)?, false));
        }
        let largest = self.spec.largest_lob_row;
        let sliced = fetch::sliced_row_bytes(&self.spec);
        if matches!(source.dialect, Dialect::Postgres | Dialect::MariaDb) {
            let rows = lob_fetch_rows(Some(largest.unwrap_or(sliced).min(sliced)));
            let conn = source.connect(Purpose::Lobs { rows })?;
            let (task, subtask) = (&self.context.task, self.spec.id());
            if fetch::sliceable(&conn, source, &self.spec)? {
                tracing::debug!(%task, %subtask, "LOB values read in slices of {} characters, by row address", fetch::LOB_SLICE);
                return Ok((conn, true));
            }
            tracing::debug!(%task, %subtask, "LOB values read whole: no row address (a PostgreSQL view, a MariaDB table without a key)");
        }
        let conn = source.connect(Purpose::Lobs {
            rows: lob_fetch_rows(largest),
        })?;
        Ok((conn, false))
    }

    /// Read through PostgreSQL's own COPY; `None` when the ODBC path is to read (not
    /// PostgreSQL, a setting only the ODBC path honours, `source.native_copy = false`, or
    /// the native login failing).
    fn extract_native(&self) -> Result<Option<u64>, SourceError> {
        let context = &self.context;
        let subtask = self.spec.id();
        if !context.native_copy {
            return Ok(None);
        }
        let Some(params) = context.source.postgres_params() else {
            return Ok(None);
        };
        // Settings first: no connection for a subtask the native path cannot read.
        if let Some(why) = pg_copy::declines(&context.source, &self.spec, &context.files) {
            tracing::debug!(task = %context.task, subtask = %subtask, "read through ODBC: {why}");
            return Ok(None);
        }
        let reader = match pg_copy::NativeReader::open(&params) {
            Ok(reader) => reader,
            Err(e) => {
                tracing::warn!(task = %context.task, subtask = %subtask, "the native COPY cannot connect ({e}); reading through ODBC instead (source.native_copy = false skips the attempt)");
                return Ok(None);
            }
        };
        let table = context.source.qualified(&self.spec.table);
        let row_address = self.spec.has_lobs() && reader.can_read_large_values_aside(&table)?;
        let plan = pg_copy::plan(
            &context.source,
            &self.spec,
            &context.files,
            &self.order,
            row_address,
        )
        .map_err(|why| SourceError::Odbc {
            what: format!("planning the native read of {table}"),
            detail: why,
        })?;
        if self.spec.has_lobs() && !row_address {
            tracing::debug!(task = %context.task, subtask = %subtask, "no value to read aside (a view, or no value stored out of line): large values come whole in their rows");
        }
        tracing::debug!(task = %context.task, subtask = %subtask, keyed = plan.key.is_some(), large_values_aside = plan.marker, "extract started (native COPY)");
        let mut out = NativeOut {
            out: &self.out,
            cancel: &self.cancel,
        };
        let bounds = match &plan.ranges {
            Some(ranges) => reader.range_bounds(&table, ranges)?,
            None => Vec::new(),
        };
        if !bounds.is_empty() {
            let kind = if plan.key.is_some() { "key" } else { "block" };
            tracing::info!(task = %context.task, subtask = %subtask, ranges = bounds.len() + 1, "read in {kind} ranges on two connections in one snapshot");
        }
        let rows = reader.read(&self.spec, &plan, &bounds, &context.files, &mut out)?;
        self.out
            .send_blocking(|credit| CsvBatch {
                bytes: Vec::new(),
                rows: 0,
                ends_row: true,
                last: true,
                last_key: None,
                lob: None,
                credit,
            })
            .map_err(|_| SourceError::Cancelled)?;
        tracing::debug!(task = %context.task, subtask = %subtask, rows, "extract finished (native COPY)");
        Ok(Some(self.resumed_rows + rows))
    }
}

/// The native path's batches, on to the compressor with credits.
struct NativeOut<'a> {
    out: &'a BoundedSender<CsvBatch>,
    cancel: &'a CancelSwitch,
}

impl pg_copy::BatchOut for NativeOut<'_> {
    fn batch(
        &mut self,
        bytes: Vec<u8>,
        rows: u64,
        ends_row: bool,
        last_key: Option<Vec<String>>,
    ) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            return Err(Stop);
        }
        self.out
            .send_blocking(|credit| CsvBatch {
                bytes,
                rows,
                ends_row,
                last: false,
                last_key,
                lob: None,
                credit,
            })
            .map_err(|_| Stop)
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// Where LOB values above a size go (`files.lob_objects`).
struct LobObjects {
    over: usize,
    task: String,
    subtask: String,
    target: crate::destination::S3Target,
}

impl LobObjects {
    /// The file name of the value in column `column` (from 1) of row `row` (from 1, in the
    /// subtask's read order): the same on every run that reads the same rows in that order,
    /// so a repeated run overwrites its objects.
    fn name(row: u64, column: usize, binary: bool) -> String {
        let kind = if binary { "bin" } else { "txt" };
        format!("{row:012}-{column}.{kind}")
    }

    fn url(&self, name: &str) -> String {
        let file = crate::model::lob_file(name);
        self.target
            .url_of(&self.target.key(&self.task, &self.subtask, &file))
    }
}

/// A streamed value held back while it may still go to its own object.
struct Held {
    binary: bool,
    bytes: Vec<u8>,
    /// Set once the value is known to go to its own file: the file's name.
    file: Option<String>,
}

/// The row sink of the extractor: encodes into CSV and sends a batch after every block,
/// or mid-value when a LOB makes the batch large.
struct BatchSink<'a> {
    encoder: CsvEncoder,
    out: &'a BoundedSender<CsvBatch>,
    cancel: &'a CancelSwitch,
    /// Rows completed since the last batch was sent.
    rows_pending: u64,
    /// Read in key order: row-ending batches carry their last row's key.
    keyed: bool,
    /// `files.lob_objects`, when on.
    lobs: Option<LobObjects>,
    /// The position of the next field in its row, from 0.
    column: usize,
    /// The number of the row being read, from 1 over the whole subtask.
    row: u64,
    /// With `lobs`: the value being streamed.
    held: Option<Held>,
    /// The buffer of the last value held and written inline, for the next.
    spare: Vec<u8>,
}

impl BatchSink<'_> {
    fn send(
        &mut self,
        ends_row: bool,
        last: bool,
        last_key: Option<Vec<String>>,
    ) -> Result<(), Stop> {
        self.send_with(ends_row, last, last_key, None)
    }

    fn send_with(
        &mut self,
        ends_row: bool,
        last: bool,
        last_key: Option<Vec<String>>,
        lob: Option<LobPart>,
    ) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            return Err(Stop);
        }
        if self.encoder.is_empty() && !last && lob.is_none() {
            return Ok(());
        }
        let bytes = self.encoder.take();
        let rows = std::mem::take(&mut self.rows_pending);
        self.out
            .send_blocking(|credit| CsvBatch {
                bytes,
                rows,
                ends_row,
                last,
                last_key,
                lob,
                credit,
            })
            .map_err(|_| Stop)
    }

    /// Pass on what the held value has gathered as a piece of its file.
    fn send_lob_part(&mut self, first: bool, last: bool) -> Result<(), Stop> {
        let held = self.held.as_mut().expect("a held value");
        let part = LobPart {
            name: held.file.clone().expect("a LOB file"),
            bytes: std::mem::take(&mut held.bytes),
            first,
            last,
        };
        self.send_with(false, false, None, Some(part))
    }
}

impl RowSink for BatchSink<'_> {
    fn field(&mut self, field: Field<'_>) {
        self.encoder.field(field);
        self.column += 1;
    }

    fn begin_stream(&mut self, binary: bool) {
        match self.lobs {
            Some(_) => {
                self.held = Some(Held {
                    binary,
                    bytes: std::mem::take(&mut self.spare),
                    file: None,
                })
            }
            None => self.encoder.begin_stream(binary),
        }
    }

    fn piece(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        let (Some(lobs), Some(held)) = (&self.lobs, &mut self.held) else {
            self.encoder.piece(bytes);
            if self.encoder.len() >= FLUSH_BYTES {
                self.send(false, false, None)?;
            }
            return Ok(());
        };
        held.bytes.extend_from_slice(bytes);
        match &held.file {
            None if held.bytes.len() > lobs.over => {
                held.file = Some(LobObjects::name(self.row, self.column + 1, held.binary));
                self.send_lob_part(true, false)
            }
            Some(_) if held.bytes.len() >= FLUSH_BYTES => self.send_lob_part(false, false),
            _ => Ok(()),
        }
    }

    fn end_stream(&mut self) {
        self.column += 1;
        let Some(held) = self.held.take() else {
            self.encoder.end_stream();
            return;
        };
        let Some(name) = &held.file else {
            self.encoder.begin_stream(held.binary);
            self.encoder.piece(&held.bytes);
            self.encoder.end_stream();
            self.spare = held.bytes;
            self.spare.clear();
            return;
        };
        let url = self.lobs.as_ref().expect("held with lobs").url(name);
        self.held = Some(held);
        // A failed send means the read is stopping: the next check of the switch or the
        // next send ends it.
        let _ = self.send_lob_part(false, true);
        self.held = None;
        self.encoder.field(Field::Text(url.as_bytes()));
    }

    fn end_row(&mut self) {
        self.encoder.end_row();
        self.rows_pending += 1;
        self.row += 1;
        self.column = 0;
    }

    fn end_block(&mut self, last_key: Option<&[String]>) -> Result<(), Stop> {
        let last_key = last_key.filter(|_| self.keyed).map(<[String]>::to_vec);
        self.send(true, false, last_key)
    }

    fn streams_lobs(&self) -> bool {
        self.lobs.is_some()
    }
}
