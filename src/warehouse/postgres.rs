//! Copy into PostgreSQL: each uploaded chunk is read back from the target, checked against
//! its SHA-256 in the manifest, decompressed as it streams, and fed to
//! `COPY ... FROM STDIN (FORMAT csv)`. The chunk's rows and its bookkeeping row commit in
//! one transaction: a chunk is in the warehouse once, or not at all.
//!
//! COPY names its columns, so a table may have them in any order and have more of them.
//! A column the warehouse computes (`GENERATED ALWAYS AS (...) STORED`, as `pg_dump -s`
//! writes it) cannot be written by COPY: it is left out of the column list and its field
//! is stripped from every row on the way in ([`FieldFilter`]). Identity columns stay in:
//! COPY writes the source's ids into them, even `GENERATED ALWAYS` ones.

use std::io::Write;

use bytes::Bytes;
use futures::SinkExt;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::field_filter::FieldFilter;
use super::{TargetTable, WarehouseError, literal, loads_table, now_literal};
use crate::config::{CopyOptions, FileSettings, WarehouseSettings};
use crate::destination::{S3Error, S3Target};
use crate::model::CancelSwitch;
use crate::model::{ChunkRecord, Compression};

/// Hand decompressed data to COPY in pieces of about this size.
const COPY_PIECE: usize = 1024 * 1024;

/// Which chunk of which run of which subtask.
#[derive(Debug, Clone)]
pub struct ChunkLoad<'a> {
    pub task: &'a str,
    pub subtask: &'a str,
    pub run: &'a str,
    pub chunk: &'a ChunkRecord,
    pub key: &'a str,
}

/// What loading one chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The chunk's rows were copied now.
    Copied(u64),
    /// The bookkeeping table says this chunk of this run is in already.
    AlreadyThere(u64),
}

/// Why loading a chunk failed: the S3 side may pass (the caller tries again), the rest not.
#[derive(Debug)]
pub enum LoadError {
    S3(S3Error),
    /// Reading the object's body broke off; trying again may help.
    Download(String),
    Warehouse(WarehouseError),
}

/// `COPY t (cols) FROM STDIN (FORMAT csv, ...)` for the task's file settings; with
/// `warehouse.copy.emptyasnull`, `FORCE_NULL` on every column turns an empty value (written
/// `""`) into NULL, as Redshift's EMPTYASNULL does.
pub fn copy_sql(table: &TargetTable, files: &FileSettings, copy: &CopyOptions) -> String {
    let force_null = if copy.emptyasnull {
        format!(", FORCE_NULL ({})", table.columns.join(", "))
    } else {
        String::new()
    };
    format!(
        "COPY {} ({}) FROM STDIN (FORMAT csv, DELIMITER {}, NULL {}, QUOTE '\"', ENCODING 'UTF8'{force_null})",
        table.qualified,
        table.columns.join(", "),
        literal(&(files.delimiter as char).to_string()),
        literal(&files.null_string),
    )
}

/// Load one chunk, exactly once. `replace_earlier` deletes what earlier runs of the subtask
/// loaded, in the same transaction (set it for the first chunk a copier loads).
#[allow(clippy::too_many_arguments)]
pub async fn load_chunk(
    client: &mut Client,
    settings: &WarehouseSettings,
    files: &FileSettings,
    table: &TargetTable,
    s3: &S3Target,
    load: &ChunkLoad<'_>,
    replace_earlier: bool,
    cancel: &CancelSwitch,
) -> Result<Loaded, LoadError> {
    let pg = |what: &str, e: tokio_postgres::Error| {
        LoadError::Warehouse(WarehouseError::from_pg(settings, what, &e))
    };
    let loads = loads_table(&settings.schema);
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg("starting a transaction", e))?;
    let done = tx
        .query_opt(
            &format!(
                "SELECT row_count FROM {loads} WHERE task = $1 AND subtask = $2 AND run = $3 \
                 AND chunk = $4"
            ),
            &[&load.task, &load.subtask, &load.run, &load.chunk.name],
        )
        .await
        .map_err(|e| pg("reading the bookkeeping table", e))?;
    if let Some(row) = done {
        let rows: i64 = row.get(0);
        tx.commit().await.map_err(|e| pg("committing", e))?;
        return Ok(Loaded::AlreadyThere(rows as u64));
    }
    if replace_earlier {
        remove_earlier_runs(&tx, settings, table, load.task, load.subtask, load.run)
            .await
            .map_err(LoadError::Warehouse)?;
    }

    let sink = tx
        .copy_in::<_, Bytes>(&copy_sql(table, files, &settings.copy))
        .await
        .map_err(|e| pg(&format!("starting COPY into {}", table.qualified), e))?;
    futures::pin_mut!(sink);
    let mut body = s3.get(load.key, cancel).await.map_err(LoadError::S3)?;
    let mut digest = Sha256::new();
    let mut decoder = Decompress::new(files.compression).map_err(|e| corrupt(load, e))?;
    let mut decrypt = files
        .encryption_key
        .as_ref()
        .map(crate::destination::encrypt::Decrypt::new);
    let mut filter = field_filter(table, files);
    loop {
        let piece = tokio::select! {
            piece = body.try_next() => piece,
            () = cancel.cancelled() => return Err(LoadError::S3(S3Error::Cancelled)),
        };
        let Some(piece) = piece.map_err(|e| LoadError::Download(e.to_string()))? else {
            break;
        };
        digest.update(&piece);
        match &mut decrypt {
            Some(decrypt) => {
                let plain = decrypt.push(&piece).map_err(|e| undecryptable(load, e))?;
                decoder.write_all(&plain)
            }
            None => decoder.write_all(&piece),
        }
        .map_err(|e| corrupt(load, e))?;
        if let Some(bytes) = decoder.take(COPY_PIECE) {
            sink.send(leave_out(&mut filter, bytes, false))
                .await
                .map_err(|e| pg(&format!("COPY into {} of {}", table.qualified, load.key), e))?;
        }
    }
    if let Some(decrypt) = decrypt {
        let plain = decrypt.finish().map_err(|e| undecryptable(load, e))?;
        decoder.write_all(&plain).map_err(|e| corrupt(load, e))?;
    }
    let rest = leave_out(
        &mut filter,
        Bytes::from(decoder.finish().map_err(|e| corrupt(load, e))?),
        true,
    );
    let sha256 = hex::encode(digest.finalize());
    if sha256 != load.chunk.sha256 {
        return Err(LoadError::Warehouse(WarehouseError::new(format!(
            "{} read back from the target has SHA-256 {sha256}, the manifest says {}: the \
             object was changed or damaged after upload; nothing of it was loaded",
            load.key, load.chunk.sha256
        ))));
    }
    if !rest.is_empty() {
        sink.send(rest)
            .await
            .map_err(|e| pg(&format!("COPY into {} of {}", table.qualified, load.key), e))?;
    }
    let copied = sink
        .finish()
        .await
        .map_err(|e| pg(&format!("COPY into {} of {}", table.qualified, load.key), e))?;
    if copied != load.chunk.rows {
        return Err(LoadError::Warehouse(WarehouseError::new(format!(
            "COPY of {} loaded {copied} rows, the manifest says {}; nothing of it was kept",
            load.key, load.chunk.rows
        ))));
    }
    tx.execute(
        &format!(
            "INSERT INTO {loads} (task, subtask, run, chunk, row_count, sha256, loaded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, {}::timestamp)",
            literal(&now_literal())
        ),
        &[
            &load.task,
            &load.subtask,
            &load.run,
            &load.chunk.name,
            &(copied as i64),
            &load.chunk.sha256,
        ],
    )
    .await
    .map_err(|e| pg("recording the chunk in the bookkeeping table", e))?;
    tx.commit()
        .await
        .map_err(|e| pg(&format!("committing {}", load.key), e))?;
    Ok(Loaded::Copied(copied))
}

/// The filter stripping the fields of left-out columns from the chunk's rows (a field for
/// each column COPY writes and each left out), when the table has such columns.
fn field_filter(table: &TargetTable, files: &FileSettings) -> Option<FieldFilter> {
    if table.left_out.is_empty() {
        return None;
    }
    let fields = table.columns.len() + table.left_out.len();
    let positions: Vec<usize> = table.left_out.iter().map(|l| l.position).collect();
    Some(FieldFilter::new(files.delimiter, fields, &positions))
}

/// Decompressed bytes as COPY takes them: without the left-out fields, if any. `last` is
/// the end of the chunk.
fn leave_out(filter: &mut Option<FieldFilter>, bytes: Bytes, last: bool) -> Bytes {
    let Some(filter) = filter else {
        return bytes;
    };
    let mut out = Vec::with_capacity(bytes.len() + 4);
    filter.push(&bytes, &mut out);
    if last {
        filter.finish(&mut out);
    }
    Bytes::from(out)
}

/// A chunk's bytes as they arrive, decompressed into a buffer that COPY takes from.
enum Decompress {
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
    Bzip2(bzip2::write::BzDecoder<Vec<u8>>),
    Plain(Vec<u8>),
}

impl Decompress {
    fn new(compression: Compression) -> std::io::Result<Decompress> {
        let out = Vec::with_capacity(COPY_PIECE * 2);
        Ok(match compression {
            Compression::Gzip => {
                Decompress::Gzip(Box::new(flate2::write::MultiGzDecoder::new(out)))
            }
            Compression::Zstd => Decompress::Zstd(zstd::stream::write::Decoder::new(out)?),
            Compression::Bzip2 => Decompress::Bzip2(bzip2::write::BzDecoder::new(out)),
            Compression::None => Decompress::Plain(out),
        })
    }

    fn write_all(&mut self, piece: &[u8]) -> std::io::Result<()> {
        match self {
            Decompress::Gzip(d) => d.write_all(piece),
            Decompress::Zstd(d) => d.write_all(piece),
            Decompress::Bzip2(d) => d.write_all(piece),
            Decompress::Plain(out) => {
                out.extend_from_slice(piece);
                Ok(())
            }
        }
    }

    /// The decompressed bytes so far, once there are at least `at_least` of them.
    fn take(&mut self, at_least: usize) -> Option<Bytes> {
        let out = match self {
            Decompress::Gzip(d) => d.get_mut(),
            Decompress::Zstd(d) => d.get_mut(),
            Decompress::Bzip2(d) => d.get_mut(),
            Decompress::Plain(out) => out,
        };
        (out.len() >= at_least)
            .then(|| Bytes::from(std::mem::replace(out, Vec::with_capacity(at_least * 2))))
    }

    /// The rest, once the stream is complete; an error if it is cut short.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Decompress::Gzip(d) => (*d).finish(),
            Decompress::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
            Decompress::Bzip2(mut d) => d.finish(),
            Decompress::Plain(out) => Ok(out),
        }
    }
}

/// Delete, inside `tx`, what earlier runs of a subtask loaded (rows and bookkeeping).
/// Deletes nothing unless the bookkeeping table records an earlier run.
pub async fn remove_earlier_runs(
    tx: &tokio_postgres::Transaction<'_>,
    settings: &WarehouseSettings,
    table: &TargetTable,
    task: &str,
    subtask: &str,
    run: &str,
) -> Result<(), WarehouseError> {
    let sql = replace_earlier_sql(table, &settings.schema);
    let deleted = tx
        .execute(&sql, &[&task, &subtask, &run])
        .await
        .map_err(|e| {
            WarehouseError::from_pg(
                settings,
                &format!(
                    "removing the rows an earlier run loaded ({sql}); a `where` filter must also \
                 be valid SQL in the warehouse"
                ),
                &e,
            )
        })?;
    let forgotten = tx
        .execute(
            &format!(
                "DELETE FROM {} WHERE task = $1 AND subtask = $2 AND run <> $3",
                loads_table(&settings.schema)
            ),
            &[&task, &subtask, &run],
        )
        .await
        .map_err(|e| {
            WarehouseError::from_pg(
                settings,
                "clearing earlier runs from the bookkeeping table",
                &e,
            )
        })?;
    if forgotten > 0 {
        tracing::info!(
            subtask,
            rows = deleted,
            "replaced the rows of an earlier run"
        );
    }
    Ok(())
}

/// A subtask that extracted no rows has no chunk to load, but what earlier runs loaded
/// must still go: the warehouse ends with the source's rows, none.
pub async fn load_empty_subtask(
    client: &mut Client,
    settings: &WarehouseSettings,
    table: &TargetTable,
    task: &str,
    subtask: &str,
    run: &str,
) -> Result<(), WarehouseError> {
    let pg = |what: &str, e: tokio_postgres::Error| WarehouseError::from_pg(settings, what, &e);
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg("starting a transaction", e))?;
    remove_earlier_runs(&tx, settings, table, task, subtask, run).await?;
    tx.commit().await.map_err(|e| pg("committing", e))
}

/// Delete the rows of earlier runs of a subtask: `$1` task, `$2` subtask, `$3` this run.
/// Deletes nothing unless the bookkeeping table records an earlier run.
pub fn replace_earlier_sql(table: &TargetTable, schema: &str) -> String {
    let earlier = format!(
        "EXISTS (SELECT 1 FROM {} WHERE task = $1 AND subtask = $2 AND run <> $3)",
        loads_table(schema)
    );
    match &table.predicate {
        Some(predicate) => format!(
            "DELETE FROM {} WHERE {predicate} AND {earlier}",
            table.qualified
        ),
        None => format!("DELETE FROM {} WHERE {earlier}", table.qualified),
    }
}

fn undecryptable(load: &ChunkLoad<'_>, error: std::io::Error) -> LoadError {
    LoadError::Warehouse(WarehouseError::new(format!(
        "{} does not decrypt: {error}; nothing of it was loaded",
        load.key
    )))
}

fn corrupt(load: &ChunkLoad<'_>, error: std::io::Error) -> LoadError {
    LoadError::Warehouse(WarehouseError::new(format!(
        "{} does not decompress ({error}): the object was changed or damaged after upload",
        load.key
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(predicate: Option<&str>) -> TargetTable {
        TargetTable {
            qualified: "\"public\".\"orders\"".into(),
            columns: vec!["\"id\"".into(), "\"note\"".into()],
            left_out: Vec::new(),
            predicate: predicate.map(str::to_string),
        }
    }

    #[test]
    fn copy_reads_the_files_as_written() {
        let files = FileSettings {
            delimiter: b'|',
            null_string: "\\N".into(),
            ..FileSettings::default()
        };
        assert_eq!(
            copy_sql(&table(None), &files, &CopyOptions::default()),
            "COPY \"public\".\"orders\" (\"id\", \"note\") FROM STDIN (FORMAT csv, \
             DELIMITER '|', NULL '\\N', QUOTE '\"', ENCODING 'UTF8')"
        );
        // EMPTYASNULL's equivalent: an empty value, written "", loads as NULL.
        let empty_as_null = CopyOptions {
            emptyasnull: true,
            ..CopyOptions::default()
        };
        assert_eq!(
            copy_sql(&table(None), &FileSettings::default(), &empty_as_null),
            "COPY \"public\".\"orders\" (\"id\", \"note\") FROM STDIN (FORMAT csv, \
             DELIMITER ',', NULL '', QUOTE '\"', ENCODING 'UTF8', FORCE_NULL (\"id\", \"note\"))"
        );
    }

    #[test]
    fn earlier_runs_are_replaced_only_where_they_loaded() {
        assert_eq!(
            replace_earlier_sql(&table(Some("(\"id\" < 10)")), "public"),
            "DELETE FROM \"public\".\"orders\" WHERE (\"id\" < 10) AND EXISTS (SELECT 1 FROM \
             \"public\".\"dbhaul_loads\" WHERE task = $1 AND subtask = $2 AND run <> $3)"
        );
        assert!(
            replace_earlier_sql(&table(None), "public")
                .starts_with("DELETE FROM \"public\".\"orders\" WHERE EXISTS")
        );
    }
}
