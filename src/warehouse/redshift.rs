//! Copy into Amazon Redshift: one server-side `COPY ... FROM 's3://.../manifest.json'
//! MANIFEST` per subtask — Redshift reads the chunks from S3 itself, in parallel across its
//! slices — inside a transaction that first removes what an earlier run of the subtask
//! loaded, and that checks `pg_last_copy_count()` against the manifest before it records
//! the load and commits. The SQL is plain text (simple query protocol), built here and
//! tested exactly; no Redshift is reachable from the test machines.
//!
//! COPY options used, and why:
//! - `MANIFEST`: load exactly the chunks the manifest lists (its `entries`), no prefix match.
//! - `FORMAT AS CSV QUOTE AS '"' DELIMITER ','`: RFC 4180 as written by dbhaul.
//! - `NULL AS '<files.null_string>'`: NULL is written as that (unquoted) field.
//! - `GZIP`, `ZSTD` or `BZIP2` after `files.compression`.
//! - `ENCODING UTF8`, `TIMEFORMAT 'YYYY-MM-DD HH:MI:SS'` (fractional seconds are accepted),
//!   `DATEFORMAT 'YYYY-MM-DD'`: how dbhaul writes them (timestamps in UTC).
//! - `IAM_ROLE`: `warehouse.iam_role`; `REGION` when `target.region` is set (a bucket in
//!   another region than the cluster).
//! - `COMPUPDATE OFF STATUPDATE OFF`: loads of one partition must not re-plan the table.

use tokio_postgres::{Client, SimpleQueryMessage};

use super::{TargetTable, WarehouseError, literal, loads_table, now_literal};
use crate::config::{FileSettings, TargetSettings, WarehouseSettings};
use crate::model::Compression;

/// The statements that load one subtask, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskLoad {
    /// Rows already recorded for this run (`SELECT`): if any, the subtask is in.
    pub already: String,
    pub delete_earlier_rows: String,
    pub delete_earlier_loads: String,
    pub copy: String,
    pub count: String,
    /// Records the load; `{rows}` is replaced by the count.
    pub record: String,
}

/// Which subtask, which run, which manifest.
#[derive(Debug, Clone)]
pub struct SubtaskRef<'a> {
    pub task: &'a str,
    pub subtask: &'a str,
    pub run: &'a str,
    /// `s3://bucket/.../manifest.json`.
    pub manifest_url: &'a str,
    pub sha256: &'a str,
}

pub fn subtask_sql(
    table: &TargetTable,
    warehouse: &WarehouseSettings,
    target: &TargetSettings,
    files: &FileSettings,
    subtask: &SubtaskRef<'_>,
) -> SubtaskLoad {
    let loads = loads_table(&warehouse.schema);
    let this = format!(
        "task = {} AND subtask = {}",
        literal(subtask.task),
        literal(subtask.subtask)
    );
    let earlier = format!(
        "EXISTS (SELECT 1 FROM {loads} WHERE {this} AND run <> {})",
        literal(subtask.run)
    );
    let delete_earlier_rows = match &table.predicate {
        Some(predicate) => format!(
            "DELETE FROM {} WHERE {predicate} AND {earlier}",
            table.qualified
        ),
        None => format!("DELETE FROM {} WHERE {earlier}", table.qualified),
    };
    let mut copy = format!(
        "COPY {} ({}) FROM {} IAM_ROLE {} MANIFEST FORMAT AS CSV QUOTE AS '\"' DELIMITER {} \
         NULL AS {}",
        table.qualified,
        table.columns.join(", "),
        literal(subtask.manifest_url),
        literal(warehouse.iam_role.as_deref().unwrap_or_default()),
        literal(&(files.delimiter as char).to_string()),
        literal(&files.null_string),
    );
    copy.push_str(match files.compression {
        Compression::Gzip => " GZIP",
        Compression::Zstd => " ZSTD",
        Compression::Bzip2 => " BZIP2",
        Compression::None => "",
    });
    copy.push_str(" ENCODING UTF8 TIMEFORMAT 'YYYY-MM-DD HH:MI:SS' DATEFORMAT 'YYYY-MM-DD'");
    if let Some(region) = &target.region {
        copy.push_str(&format!(" REGION {}", literal(region)));
    }
    let options = &warehouse.copy;
    if options.maxerror > 0 {
        copy.push_str(&format!(" MAXERROR {}", options.maxerror));
    }
    if let Some(c) = options.acceptinvchars {
        copy.push_str(&format!(" ACCEPTINVCHARS AS {}", literal(&c.to_string())));
    }
    for (on, keyword) in [
        (options.blanksasnull, " BLANKSASNULL"),
        (options.emptyasnull, " EMPTYASNULL"),
        (options.truncatecolumns, " TRUNCATECOLUMNS"),
    ] {
        if on {
            copy.push_str(keyword);
        }
    }
    let on_off = |on: bool| if on { "ON" } else { "OFF" };
    copy.push_str(&format!(
        " COMPUPDATE {} STATUPDATE {}",
        on_off(options.compupdate),
        on_off(options.statupdate)
    ));
    SubtaskLoad {
        already: format!(
            "SELECT COALESCE(SUM(row_count), 0) FROM {loads} WHERE {this} AND run = {}",
            literal(subtask.run)
        ),
        delete_earlier_rows,
        delete_earlier_loads: format!(
            "DELETE FROM {loads} WHERE {this} AND run <> {}",
            literal(subtask.run)
        ),
        copy,
        count: "SELECT pg_last_copy_count()".into(),
        record: format!(
            "INSERT INTO {loads} (task, subtask, run, chunk, row_count, sha256, loaded_at) \
             VALUES ({}, {}, {}, 'manifest.json', {{rows}}, {}, {})",
            literal(subtask.task),
            literal(subtask.subtask),
            literal(subtask.run),
            literal(subtask.sha256),
            literal(&now_literal()),
        ),
    }
}

/// Run a subtask's load; returns the rows Redshift loaded (or had loaded for this run).
pub async fn load_subtask(
    client: &Client,
    warehouse: &WarehouseSettings,
    load: &SubtaskLoad,
    expected_rows: u64,
) -> Result<u64, WarehouseError> {
    let run = |sql: String| async move {
        client
            .simple_query(&sql)
            .await
            .map_err(|e| WarehouseError::from_pg(warehouse, &sql, &e))
    };
    let already = first_number(&run(load.already.clone()).await?);
    if already > 0 {
        return Ok(already);
    }
    run("BEGIN".into()).await?;
    let result = async {
        run(load.delete_earlier_rows.clone()).await?;
        run(load.delete_earlier_loads.clone()).await?;
        // No rows, no chunks: Redshift's COPY refuses a manifest without entries, and
        // there is nothing to load; the earlier runs' rows are gone all the same.
        let copied = if expected_rows == 0 {
            0
        } else {
            run(load.copy.clone()).await?;
            first_number(&run(load.count.clone()).await?)
        };
        // Fewer rows only as many as MAXERROR lets Redshift reject.
        if !warehouse.copy.accepts(copied, expected_rows) {
            return Err(WarehouseError::new(format!(
                "Redshift COPY loaded {copied} rows, the manifest says {expected_rows}; rolled back"
            )));
        }
        run(load.record.replace("{rows}", &copied.to_string())).await?;
        run("COMMIT".into()).await?;
        Ok(copied)
    }
    .await;
    if result.is_err() {
        let _ = client.simple_query("ROLLBACK").await;
    }
    result
}

fn first_number(messages: &[SimpleQueryMessage]) -> u64 {
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChecksumMode;
    use crate::warehouse::WarehouseKind;

    #[test]
    fn the_generated_sql_is_exactly_this() {
        let table = TargetTable {
            qualified: "\"public\".\"orders\"".into(),
            columns: vec!["\"id\"".into(), "\"note\"".into()],
            left_out: Vec::new(),
            predicate: Some("(\"id\" >= 10 AND \"id\" < 20)".into()),
        };
        let warehouse = WarehouseSettings {
            kind: WarehouseKind::Redshift,
            url: "postgresql://loader@cluster:5439/dev".into(),
            password: None,
            schema: "public".into(),
            iam_role: Some("arn:aws:iam::123456789012:role/RedshiftCopy".into()),
            create_tables: false,
            count_source: false,
            lob_urls: false,
            copy: Default::default(),
        };
        let target = TargetSettings {
            bucket: "b".into(),
            prefix: "p".into(),
            endpoint: None,
            region: Some("eu-west-1".into()),
            profile: None,
            path_style: false,
            ca_bundle: None,
            checksum: ChecksumMode::WhenSupported,
            part_size: 16 << 20,
            concurrency: 4,
            attempts: 3,
            server_side_encryption: Default::default(),
            kms_key_id: None,
            proxy: None,
        };
        let files = FileSettings {
            binary_format: crate::model::chunk::BinaryFormat::Hex,
            ..FileSettings::default()
        };
        let subtask = SubtaskRef {
            task: "erp",
            subtask: "public.orders/part-002",
            run: "r1",
            manifest_url: "s3://b/p/erp/public.orders/part-002/manifest.json",
            sha256: "ab",
        };
        let load = subtask_sql(&table, &warehouse, &target, &files, &subtask);
        let this = "task = 'erp' AND subtask = 'public.orders/part-002'";
        assert_eq!(
            load.delete_earlier_rows,
            format!(
                "DELETE FROM \"public\".\"orders\" WHERE (\"id\" >= 10 AND \"id\" < 20) AND \
                 EXISTS (SELECT 1 FROM \"public\".\"dbhaul_loads\" WHERE {this} AND run <> 'r1')"
            )
        );
        assert_eq!(
            load.delete_earlier_loads,
            format!("DELETE FROM \"public\".\"dbhaul_loads\" WHERE {this} AND run <> 'r1'")
        );
        assert_eq!(
            load.copy,
            "COPY \"public\".\"orders\" (\"id\", \"note\") FROM \
             's3://b/p/erp/public.orders/part-002/manifest.json' IAM_ROLE \
             'arn:aws:iam::123456789012:role/RedshiftCopy' MANIFEST FORMAT AS CSV QUOTE AS '\"' \
             DELIMITER ',' NULL AS '' GZIP ENCODING UTF8 TIMEFORMAT 'YYYY-MM-DD HH:MI:SS' \
             DATEFORMAT 'YYYY-MM-DD' REGION 'eu-west-1' COMPUPDATE OFF STATUPDATE OFF"
        );
        // Every COPY option, passed through by its name.
        let options = WarehouseSettings {
            copy: crate::config::stages::every_copy_option(),
            ..warehouse.clone()
        };
        let sql = subtask_sql(&table, &options, &target, &files, &subtask);
        assert!(
            sql.copy.ends_with(
                "REGION 'eu-west-1' MAXERROR 10 ACCEPTINVCHARS AS '?' BLANKSASNULL EMPTYASNULL \
                 TRUNCATECOLUMNS COMPUPDATE ON STATUPDATE ON"
            ),
            "{}",
            sql.copy
        );
        // The other compressions, by their COPY keywords.
        for (compression, keyword) in [
            (Compression::Zstd, "' ZSTD ENCODING"),
            (Compression::Bzip2, "' BZIP2 ENCODING"),
            (Compression::None, "NULL AS '' ENCODING"),
        ] {
            let files = FileSettings {
                compression,
                ..files.clone()
            };
            let sql = subtask_sql(&table, &warehouse, &target, &files, &subtask);
            assert!(sql.copy.contains(keyword), "{compression:?}: {}", sql.copy);
        }
        assert_eq!(
            load.already,
            format!(
                "SELECT COALESCE(SUM(row_count), 0) FROM \"public\".\"dbhaul_loads\" WHERE \
                 {this} AND run = 'r1'"
            )
        );
        assert!(load.record.starts_with(
            "INSERT INTO \"public\".\"dbhaul_loads\" (task, subtask, run, chunk, row_count, \
             sha256, loaded_at) VALUES ('erp', 'public.orders/part-002', 'r1', \
             'manifest.json', {rows}, 'ab', '"
        ));
    }
}
