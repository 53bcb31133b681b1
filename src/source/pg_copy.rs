//! The native path for PostgreSQL sources: `COPY (SELECT …) TO STDOUT (FORMAT csv)` over
//! PostgreSQL's own protocol (tokio-postgres), instead of psqlODBC parsing and re-printing
//! every value on one core (STACK.md trap 16). The server writes the CSV; dbhaul only
//! counts rows and hands the bytes to the compressor.
//!
//! It writes the same bytes as the ODBC path, chunk for chunk, or it is not used: only when
//! every column has a type whose text PostgreSQL prints as the ODBC path writes it (a
//! boolean as 1/0, a `timestamptz` in UTC without offset and a uuid in capitals, as
//! psqlODBC gives them; floats
//! as PostgreSQL prints them, which the CSV encoder copies), no column is a LOB (COPY sends
//! a row as one message: a 100 MB value would be held whole), the connection string names
//! its server (not a DSN), and the read is unordered (a keyed, resumable read stays on the
//! ODBC path, which tracks each block's last key). Batches hold exactly as many rows as the
//! ODBC path's fetch blocks, so chunks close after the same rows. Anything else, or
//! `source.native_copy = false`, takes the ODBC path, which remains for every source.

use futures::StreamExt;

use super::connection::Source;
use super::fetch::block_rows;
use super::{Dialect, SourceError};
use crate::config::FileSettings;
use crate::model::{ColumnSpec, SubtaskSpec};

/// How to reach the server, from the ODBC connection string.
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

/// The `COPY` statement of a subtask on the native path, or why it takes the ODBC path.
pub fn copy_sql(
    source: &Source,
    spec: &SubtaskSpec,
    files: &FileSettings,
    ordered: bool,
) -> Result<String, String> {
    if source.dialect != Dialect::Postgres {
        return Err("not a PostgreSQL source".into());
    }
    if ordered {
        return Err("read in key order (resumable): the ODBC path tracks each block's key".into());
    }
    if !files.null_string.is_empty() {
        // PostgreSQL leaves "" unquoted when NULL is written otherwise; the encoder quotes it.
        return Err("files.null_string is set".into());
    }
    let mut items = Vec::with_capacity(spec.columns.len());
    for column in &spec.columns {
        items.push(select_item(source, column, files)?);
    }
    let select = super::fetch::select_from(source, spec, &items);
    Ok(format!(
        "COPY ({select}) TO STDOUT (FORMAT csv, DELIMITER {}, NULL {}, QUOTE '\"')",
        literal(&(files.delimiter as char).to_string()),
        literal(&files.null_string)
    ))
}

/// A column as the native path selects it, so its text is the ODBC path's byte for byte.
fn select_item(
    source: &Source,
    column: &ColumnSpec,
    files: &FileSettings,
) -> Result<String, String> {
    let name = source.quote_ident(&column.name);
    let unsupported = || {
        Err(format!(
            "column `{}` has type {}, which only the ODBC path writes",
            column.name, column.source_type
        ))
    };
    if column.fetch.is_lob() {
        return Err(format!("column `{}` is a LOB", column.name));
    }
    let ty = column.source_type.to_ascii_lowercase();
    let item = match ty.as_str() {
        "int2" | "int4" | "int8" | "smallint" | "integer" | "bigint" | "numeric" | "date"
        | "timestamp" => name,
        // psqlODBC reads a uuid as an SQL_GUID and prints it in capitals.
        "uuid" => format!("upper({name}::text)"),
        "float4" | "float8" | "real" | "double precision" => name,
        "varchar" | "bpchar" | "char" | "text" | "character varying" | "character" | "name" => {
            if files.rtrim {
                format!("rtrim({name}, ' ')")
            } else {
                name
            }
        }
        "bool" | "boolean" => format!("CASE WHEN {name} THEN '1' WHEN NOT {name} THEN '0' END"),
        "timestamptz" => format!("({name} AT TIME ZONE 'UTC')"),
        _ => return unsupported(),
    };
    Ok(item)
}

/// A PostgreSQL string literal.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Where the native path's batches go: `(bytes, rows)`, each batch ending at a row; an
/// `Err` stops the read.
pub trait BatchOut {
    fn batch(&mut self, bytes: Vec<u8>, rows: u64) -> Result<(), super::fetch::Stop>;
}

/// A connection for the native path, on a runtime of its own: it blocks the calling
/// thread (the extractor's own), never the daemon's async workers.
pub struct NativeReader {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
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
        Ok(NativeReader { runtime, client })
    }

    /// Run `sql` (from [`copy_sql`]) and pass its rows on in batches of [`block_rows`]
    /// rows. Returns the rows read.
    pub fn read(
        &self,
        spec: &SubtaskSpec,
        sql: &str,
        out: &mut impl BatchOut,
    ) -> Result<u64, SourceError> {
        let table = spec.table.to_string();
        let batch_rows = block_rows(spec) as u64;
        self.runtime.block_on(async {
            let stream = self
                .client
                .copy_out(sql)
                .await
                .map_err(|e| pg_error(&e, &format!("reading {table} with `{sql}`"), &table))?;
            let mut stream = std::pin::pin!(stream);
            let mut total = 0u64;
            let mut rows = 0u64;
            let mut bytes = Vec::with_capacity(4 << 20);
            while let Some(row) = stream.next().await {
                let row =
                    row.map_err(|e| pg_error(&e, &format!("reading rows of {table}"), &table))?;
                // One CopyData message is one row.
                bytes.extend_from_slice(&row);
                rows += 1;
                if rows == batch_rows {
                    let capacity = bytes.capacity();
                    let full = std::mem::replace(&mut bytes, Vec::with_capacity(capacity));
                    out.batch(full, rows).map_err(|_| SourceError::Cancelled)?;
                    total += rows;
                    rows = 0;
                }
            }
            if rows > 0 {
                out.batch(bytes, rows).map_err(|_| SourceError::Cancelled)?;
                total += rows;
            }
            Ok(total)
        })
    }
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
        .connect(crate::warehouse::tls_connector(verify))
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
             SET bytea_output = 'hex'",
        )
        .await
        .map_err(|e| pg_error(&e, "setting up the native COPY session", ""))?;
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
        Some(c) => SourceError::Odbc {
            what: what.to_string(),
            detail: format!("{detail} [SQLSTATE {c}]"),
        },
        None if error.is_closed() || std::error::Error::source(error).is_some() => {
            SourceError::Odbc {
                what: what.to_string(),
                detail: format!("{detail} [SQLSTATE 08006]"),
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

    #[test]
    fn the_native_copy_selects_each_type_as_the_odbc_path_writes_it() {
        let pg = Source::offline(Dialect::Postgres, '"');
        let spec = SubtaskSpec {
            table: TableRef {
                catalog: None,
                schema: Some("public".into()),
                name: "t".into(),
            },
            columns: vec![
                column("id", "int8", sql::BIGINT, 19),
                column("s", "varchar", sql::VARCHAR, 10),
                column("bo", "bool", sql::VARCHAR, 5),
                column("tz", "timestamptz", sql::TYPE_TIMESTAMP, 26),
            ],
            left_out: Vec::new(),
            filter: Some("id > 0".into()),
            partition: None,
            key: None,
            estimated_rows: None,
            largest_lob_row: None,
        };
        let files = FileSettings {
            delimiter: b'|',
            ..FileSettings::default()
        };
        assert_eq!(
            copy_sql(&pg, &spec, &files, false).unwrap(),
            "COPY (SELECT \"id\", \"s\", CASE WHEN \"bo\" THEN '1' WHEN NOT \"bo\" THEN '0' END, \
             (\"tz\" AT TIME ZONE 'UTC') FROM \"public\".\"t\" WHERE (id > 0)) TO STDOUT \
             (FORMAT csv, DELIMITER '|', NULL '', QUOTE '\"')"
        );
        // What the native path cannot write alike goes the ODBC way, with the reason.
        assert!(
            copy_sql(&pg, &spec, &files, true)
                .unwrap_err()
                .contains("key order")
        );
        let mut interval = spec.clone();
        interval
            .columns
            .push(column("i", "interval", sql::VARCHAR, 30));
        assert!(
            copy_sql(&pg, &interval, &files, false)
                .unwrap_err()
                .contains("type interval")
        );
        let mut lob = spec.clone();
        lob.columns
            .push(column("body", "text", sql::LONGVARCHAR, 8190));
        assert!(
            copy_sql(&pg, &lob, &files, false)
                .unwrap_err()
                .contains("LOB")
        );
        let maria = Source::offline(Dialect::MariaDb, '`');
        assert!(copy_sql(&maria, &spec, &files, false).is_err());
        let null_word = FileSettings {
            null_string: "\\N".into(),
            ..FileSettings::default()
        };
        assert!(copy_sql(&pg, &spec, &null_word, false).is_err());
    }
}
