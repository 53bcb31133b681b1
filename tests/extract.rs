//! Extraction, proven the way a user would check it: the chunks are loaded back into
//! PostgreSQL with COPY and compared with the source rows both ways (EXCEPT ALL), for
//! PostgreSQL, MariaDB and SQLite sources through their Debian ODBC drivers.

use sha2::{Digest, Sha256};

use crate::common::fixtures::{self, Db};
use crate::common::*;

fn name(db: Db) -> &'static str {
    match db {
        Db::Pg => "pg",
        Db::Maria => "maria",
        Db::Sqlite => "sqlite",
    }
}

/// Write a job for `tables` and run it to success; returns the JSON summary.
fn extract(
    sandbox: &Sandbox,
    task: &str,
    connection: &str,
    tables: &str,
    extra: &str,
) -> serde_json::Value {
    let job = sandbox.job(task, &job_text(task, connection, tables, extra));
    sandbox.run_job(&job).assert_ok()
}

/// The chunks of a subtask's folder, decompressed and joined in their order, and how
/// many there were.
fn chunks_joined(dir: &std::path::Path) -> (Vec<u8>, usize) {
    use std::io::Read;
    let mut chunks: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".csv.gz"))
        .collect();
    chunks.sort();
    let mut bytes = Vec::new();
    for chunk in &chunks {
        flate2::read::GzDecoder::new(std::fs::File::open(chunk).unwrap())
            .read_to_end(&mut bytes)
            .unwrap();
    }
    (bytes, chunks.len())
}

/// What PostgreSQL's own `COPY (…) TO STDOUT` writes for `copy`.
fn pg_copy_out(client: &mut postgres::Client, copy: &str) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = Vec::new();
    client
        .copy_out(copy)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn fidelity_round_trip(db: Db) {
    let sandbox = Sandbox::new();
    let rows = fixtures::fidelity_rows(3000);
    let (connection, namespace) = source_of(db, &sandbox);
    create_in_source(
        db,
        &sandbox,
        &namespace,
        |t| fixtures::fidelity_sql(db, t, &rows),
        "fidelity",
    );

    let task = format!("fidelity-{}", name(db));
    let summary = extract(
        &sandbox,
        &task,
        &connection,
        &format!("[[tables]]\nname = \"{namespace}.fidelity\"\n"),
        "",
    );
    assert_eq!(summary["rows"], rows.len() as u64);

    let schema = format!("chk_fidelity_{}", name(db));
    let mut client = fresh_schema(&schema);
    client
        .batch_execute(&fixtures::fidelity_sql(
            Db::Pg,
            &format!("{schema}.expected"),
            &rows,
        ))
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.loaded ({})",
            fixtures::FIDELITY_PG_COLUMNS
        ))
        .unwrap();
    let dir = sandbox
        .work_dir()
        .join(&task)
        .join(format!("{namespace}.fidelity"));
    copy_into_pg(
        &mut client,
        &format!("{schema}.loaded"),
        "id, big, n, s, b, d, ts, tz, bo, f",
        &dir,
    );

    let loaded: i64 = client
        .query_one(&format!("SELECT count(*) FROM {schema}.loaded"), &[])
        .unwrap()
        .get(0);
    assert_eq!(loaded, rows.len() as i64);
    let difference = pg_difference(
        &mut client,
        &format!("{schema}.loaded"),
        &format!("{schema}.expected"),
    );
    if difference != 0 {
        let diff = client
            .query(&format!("SELECT l::text FROM (SELECT * FROM {schema}.loaded EXCEPT ALL SELECT * FROM {schema}.expected) l LIMIT 5"), &[])
            .unwrap();
        let lines: Vec<String> = diff.iter().map(|r| r.get(0)).collect();
        panic!(
            "{difference} rows differ from {}; first loaded rows not in the source:\n{}",
            name(db),
            lines.join("\n")
        );
    }
    // NULL and the empty string stay apart.
    let (nulls, empties): (i64, i64) = {
        let row = client
            .query_one(&format!("SELECT count(*) FILTER (WHERE s IS NULL), count(*) FILTER (WHERE s = '') FROM {schema}.loaded"), &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((nulls, empties), (1, 1));
}

#[test]
fn rows_survive_byte_for_byte_from_postgres() {
    fidelity_round_trip(Db::Pg);
}

#[test]
fn rows_survive_byte_for_byte_from_mariadb() {
    fidelity_round_trip(Db::Maria);
}

#[test]
fn rows_survive_byte_for_byte_from_sqlite() {
    fidelity_round_trip(Db::Sqlite);
}

fn lob_round_trip(db: Db) {
    let sandbox = Sandbox::new();
    let (connection, namespace) = source_of(db, &sandbox);
    create_in_source(
        db,
        &sandbox,
        &namespace,
        |t| fixtures::lob_sql(db, t),
        "lobs",
    );
    let task = format!("lobs-{}", name(db));
    extract(
        &sandbox,
        &task,
        &connection,
        &format!("[[tables]]\nname = \"{namespace}.lobs\"\n"),
        "",
    );

    let schema = format!("chk_lobs_{}", name(db));
    let mut client = fresh_schema(&schema);
    client
        .batch_execute(&fixtures::lob_sql(Db::Pg, &format!("{schema}.expected")))
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.loaded ({})",
            fixtures::LOB_PG_COLUMNS
        ))
        .unwrap();
    let dir = sandbox
        .work_dir()
        .join(&task)
        .join(format!("{namespace}.lobs"));
    let manifest = manifest(&dir);
    let lob_flags: Vec<bool> = manifest["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["lob"].as_bool().unwrap())
        .collect();
    // SQLite's TEXT and BLOB columns whose values are all short are read in blocks.
    let expected = match db {
        Db::Sqlite => [false, false, false],
        _ => [false, true, true],
    };
    assert_eq!(lob_flags, expected);
    copy_into_pg(&mut client, &format!("{schema}.loaded"), "id, t, bl", &dir);
    assert_eq!(
        pg_difference(
            &mut client,
            &format!("{schema}.loaded"),
            &format!("{schema}.expected")
        ),
        0
    );
}

#[test]
fn lob_columns_keep_every_tricky_value_from_postgres() {
    lob_round_trip(Db::Pg);
}

#[test]
fn lob_columns_keep_every_tricky_value_from_mariadb() {
    lob_round_trip(Db::Maria);
}

#[test]
fn lob_columns_keep_every_tricky_value_from_sqlite() {
    lob_round_trip(Db::Sqlite);
}

fn big_lob_round_trip(db: Db) {
    let sandbox = Sandbox::new();
    let (connection, namespace) = source_of(db, &sandbox);
    let text = fixtures::big_text();
    let binary = fixtures::big_binary();
    let ddl = |text_type: &str, bin_type: &str, table: &str| {
        format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id bigint PRIMARY KEY, big_text {text_type}, big_bin {bin_type});"
        )
    };
    match db {
        Db::Pg => {
            let mut client = pg();
            client
                .batch_execute(&ddl("text", "bytea", "src_pg.big_lobs"))
                .unwrap();
            let text = String::from_utf8(text.clone()).unwrap();
            client
                .execute(
                    "INSERT INTO src_pg.big_lobs VALUES (1, $1, $2), (2, NULL, ''::bytea)",
                    &[&text, &binary],
                )
                .unwrap();
        }
        Db::Maria => {
            let block: String = fixtures::BIG_TEXT_BLOCK
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect();
            maria(&format!(
                "{} INSERT INTO {TEST_DB}.big_lobs VALUES (1, REPEAT(CONVERT(X'{block}' USING utf8mb4), {}), UNHEX(REPEAT('{}', {}))), (2, NULL, '');",
                ddl("longtext", "longblob", &format!("{TEST_DB}.big_lobs")),
                fixtures::BIG_TEXT_REPEAT,
                fixtures::BIG_BIN_BLOCK_HEX,
                fixtures::BIG_BIN_REPEAT
            ));
        }
        Db::Sqlite => {
            std::fs::write(sandbox.path("text.bin"), &text).unwrap();
            std::fs::write(sandbox.path("bin.bin"), &binary).unwrap();
            sqlite(
                &sandbox.path("source.db"),
                &format!(
                    "{} INSERT INTO big_lobs VALUES (1, CAST(readfile('{}') AS TEXT), readfile('{}')), (2, NULL, X'');",
                    ddl("text", "blob", "big_lobs"),
                    sandbox.path("text.bin").display(),
                    sandbox.path("bin.bin").display()
                ),
            );
        }
    }
    let task = format!("big-lobs-{}", name(db));
    extract(
        &sandbox,
        &task,
        &connection,
        &format!("[[tables]]\nname = \"{namespace}.big_lobs\"\n"),
        "",
    );

    let schema = format!("chk_big_{}", name(db));
    let mut client = fresh_schema(&schema);
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.loaded (id bigint, big_text text, big_bin bytea)"
        ))
        .unwrap();
    let dir = sandbox
        .work_dir()
        .join(&task)
        .join(format!("{namespace}.big_lobs"));
    copy_into_pg(
        &mut client,
        &format!("{schema}.loaded"),
        "id, big_text, big_bin",
        &dir,
    );
    let row = client
        .query_one(
            &format!(
                "SELECT encode(sha256(convert_to(big_text, 'UTF8')), 'hex'), octet_length(big_text), \
                 encode(sha256(big_bin), 'hex'), length(big_bin) FROM {schema}.loaded WHERE id = 1"
            ),
            &[],
        )
        .unwrap();
    let (text_sha, text_len, bin_sha, bin_len): (String, i32, String, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(text_len as usize, text.len(), "100 MB text length");
    assert_eq!(
        text_sha,
        hex::encode(Sha256::digest(&text)),
        "100 MB text bytes"
    );
    assert_eq!(bin_len as usize, binary.len(), "50 MB binary length");
    assert_eq!(
        bin_sha,
        hex::encode(Sha256::digest(&binary)),
        "50 MB binary bytes"
    );
    let row = client
        .query_one(
            &format!("SELECT big_text IS NULL, length(big_bin) FROM {schema}.loaded WHERE id = 2"),
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, i32>(1)), (true, 0));
}

#[test]
fn a_100_mb_text_and_a_50_mb_binary_come_out_whole_from_postgres() {
    big_lob_round_trip(Db::Pg);
}

#[test]
fn a_100_mb_text_and_a_50_mb_binary_come_out_whole_from_mariadb() {
    big_lob_round_trip(Db::Maria);
}

#[test]
fn a_100_mb_text_and_a_50_mb_binary_come_out_whole_from_sqlite() {
    big_lob_round_trip(Db::Sqlite);
}

#[test]
fn large_objects_and_named_lob_columns_are_left_out_and_recorded_without_extract_lobs() {
    let sandbox = Sandbox::new();
    let (connection, namespace) = source_of(Db::Sqlite, &sandbox);
    create_in_source(
        Db::Sqlite,
        &sandbox,
        &namespace,
        |t| fixtures::lob_sql(Db::Sqlite, t),
        "lobs",
    );
    let kept_and_left_out = |task: &str, table: &str| {
        extract(&sandbox, task, &connection, table, "extract_lobs = false");
        let manifest = manifest(&sandbox.work_dir().join(task).join("main.lobs"));
        let names = |key: &str| -> Vec<String> {
            manifest[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        };
        (names("columns"), names("left_out_columns"))
    };
    // A TEXT column is a string, however long its values may be: only the BLOB is a large
    // object.
    let (kept, left_out) = kept_and_left_out("strings", "[[tables]]\nname = \"lobs\"\n");
    assert_eq!(
        (kept, left_out),
        (vec!["id".to_string(), "t".into()], vec!["bl".to_string()])
    );
    // A table's lob_columns makes a string column a large object too; a column it names that
    // the table lacks is refused, named.
    extract(
        &sandbox,
        "nolobs",
        &connection,
        "[[tables]]\nname = \"lobs\"\nlob_columns = [\"t\"]\n",
        "extract_lobs = false",
    );
    let job = sandbox.job(
        "typo",
        &job_text(
            "typo",
            &connection,
            "[[tables]]\nname = \"lobs\"\nlob_columns = [\"body\"]\n",
            "extract_lobs = false",
        ),
    );
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("tables.lob_columns names `body`, which table main.lobs does not have");
    let dir = sandbox.work_dir().join("nolobs/main.lobs");
    let manifest = manifest(&dir);
    let kept: Vec<&str> = manifest["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let left_out: Vec<&str> = manifest["left_out_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["id"]);
    assert_eq!(left_out, ["t", "bl"]);
    let csv = String::from_utf8(chunk_bytes(&dir)).unwrap();
    let expected: String = (1..=fixtures::TRICKY_STRINGS.len())
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        + "100\n";
    assert_eq!(csv, expected);
}

/// Load every partition's chunks of a table into one PostgreSQL table.
fn load_partitions(
    client: &mut postgres::Client,
    table: &str,
    columns: &str,
    table_dir: &std::path::Path,
) -> usize {
    let mut n = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(table_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        copy_into_pg(client, table, columns, &dir);
        n += 1;
    }
    n
}

/// `label` names this test's tables, so tests running at once never share one.
fn partitions_cover_every_row_once(
    label: &str,
    db: Db,
    partition: &str,
    filter: Option<&str>,
    expected_parts: usize,
) {
    partitions_hold(label, db, partition, filter, None, &[], expected_parts);
}

/// Partition the fidelity table, load every partition's chunks into PostgreSQL and compare
/// with the rows that `filter` and `keeps` (PostgreSQL SQL, for partitions that leave rows
/// out on purpose) keep: each row once, none lost. `files` are written beside the job.
fn partitions_hold(
    label: &str,
    db: Db,
    partition: &str,
    filter: Option<&str>,
    keeps: Option<&str>,
    files: &[(&str, &str)],
    expected_parts: usize,
) {
    let sandbox = Sandbox::new();
    for (name, text) in files {
        std::fs::write(sandbox.path(name), text).unwrap();
    }
    let rows = fixtures::fidelity_rows(2000);
    let (connection, namespace) = source_of(db, &sandbox);
    create_in_source(
        db,
        &sandbox,
        &namespace,
        |t| fixtures::fidelity_sql(db, t, &rows),
        &format!("parted_{label}"),
    );
    let task = format!("parts-{label}");
    let filter_line = filter
        .map(|sql| format!("where = \"{sql}\"\n"))
        .unwrap_or_default();
    let tables = format!(
        "[[tables]]\nname = \"{namespace}.parted_{label}\"\n{filter_line}partition = {partition}\n"
    );
    let summary = extract(&sandbox, &task, &connection, &tables, "");
    assert_eq!(
        summary["subtasks"].as_array().unwrap().len(),
        expected_parts,
        "{summary}"
    );

    let schema = format!("chk_parts_{label}");
    let mut client = fresh_schema(&schema);
    client
        .batch_execute(&fixtures::fidelity_sql(
            Db::Pg,
            &format!("{schema}.expected"),
            &rows,
        ))
        .unwrap();
    for filter in filter.iter().chain(keeps.iter()) {
        client
            .batch_execute(&format!(
                "DELETE FROM {schema}.expected WHERE ({filter}) IS NOT TRUE"
            ))
            .unwrap();
    }
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.loaded ({})",
            fixtures::FIDELITY_PG_COLUMNS
        ))
        .unwrap();
    let table_dir = sandbox
        .work_dir()
        .join(&task)
        .join(format!("{namespace}.parted_{label}"));
    let loaded = load_partitions(
        &mut client,
        &format!("{schema}.loaded"),
        "id, big, n, s, b, d, ts, tz, bo, f",
        &table_dir,
    );
    assert_eq!(loaded, expected_parts);
    assert_eq!(
        pg_difference(
            &mut client,
            &format!("{schema}.loaded"),
            &format!("{schema}.expected")
        ),
        0
    );
}

#[test]
fn range_partitions_with_a_filter_cover_every_row_once_from_postgres() {
    // 4 ranges; `id` is the primary key, so there is no NULL partition.
    partitions_cover_every_row_once(
        "pg_id",
        Db::Pg,
        "{ column = \"id\", ranges = 4 }",
        Some("s <> 'plain'"),
        4,
    );
}

#[test]
fn value_partitions_keep_the_other_values_and_nulls_from_mariadb() {
    // Two listed values, then everything else including NULL.
    partitions_cover_every_row_once(
        "maria_bo",
        Db::Maria,
        "{ column = \"bo\", values = [0, 1] }",
        None,
        3,
    );
}

#[test]
fn timestamp_range_partitions_cover_every_row_once_from_mariadb() {
    partitions_cover_every_row_once(
        "maria_ts",
        Db::Maria,
        "{ column = \"ts\", ranges = 3 }",
        None,
        4,
    );
}

#[test]
fn date_range_partitions_cover_every_row_once_from_sqlite() {
    partitions_cover_every_row_once(
        "sqlite_d",
        Db::Sqlite,
        "{ column = \"d\", ranges = 3 }",
        None,
        4,
    );
}

#[test]
fn given_boundaries_make_catch_all_ranges_below_between_and_above_from_postgres() {
    // Below 50, 50..1000, 1000..1500, from 1500: ids run 1..1999, and none is NULL.
    partitions_cover_every_row_once(
        "pg_bounds",
        Db::Pg,
        "{ column = \"id\", boundaries = [50, 1000, 1500] }",
        None,
        4,
    );
}

#[test]
fn boundaries_from_a_csv_file_and_the_null_partition_cover_every_row_from_mariadb() {
    // The timestamps run from 1970 to 9999: below, between, above, and NULL.
    partitions_hold(
        "maria_csv",
        Db::Maria,
        "{ column = \"ts\", boundaries_file = \"bounds.csv\" }",
        None,
        None,
        &[(
            "bounds.csv",
            "# ts boundaries\n1970-01-01 00:00:00.5\n\"2024-01-01 12:34:56.123456\"\n",
        )],
        4,
    );
}

#[test]
fn a_list_without_other_values_extracts_only_the_listed_values_from_mariadb() {
    partitions_hold(
        "maria_list",
        Db::Maria,
        "{ column = \"bo\", values = [1], include_other_values = false }",
        None,
        Some("bo"),
        &[],
        1,
    );
}

#[test]
fn dates_split_by_week_from_a_start_cover_every_row_once_from_sqlite() {
    // Weeks from 2024-01-01 to the last date (2024-02-29): 9 boundaries, the range below
    // the start (1000-01-01, 1999-12-31), and NULL.
    partitions_cover_every_row_once(
        "sqlite_weeks",
        Db::Sqlite,
        "{ column = \"d\", date_auto_split = { start = 2024-01-01, interval = \"week\" } }",
        None,
        11,
    );
}

#[test]
fn dates_split_by_month_between_start_and_end_cover_every_row_once_from_postgres() {
    // Below January, January, February, March, from April, NULL; a filter narrows the rows.
    partitions_cover_every_row_once(
        "pg_months",
        Db::Pg,
        "{ column = \"d\", date_auto_split = { start = \"2024-01-01\", end = \"2024-04-01\", interval = \"month\" } }",
        Some("id > 10"),
        6,
    );
}

/// Tables chosen by a pattern, an exact entry that takes its own settings over the
/// pattern's, migration rules that filter the tables they match (one disabled), each
/// table's chunks loaded back equal to what the filters keep.
#[test]
fn tables_by_pattern_and_migration_rules_extract_what_the_filters_keep_from_postgres() {
    let sandbox = Sandbox::new();
    let mut client = pg();
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS src_pg;
             DROP TABLE IF EXISTS src_pg.rules_orders, src_pg.rules_order_lines,
                                  src_pg.rules_items, src_pg.other_rules;
             CREATE TABLE src_pg.rules_orders (id int PRIMARY KEY, k int);
             CREATE TABLE src_pg.rules_order_lines (id int PRIMARY KEY, k int);
             CREATE TABLE src_pg.rules_items (id int PRIMARY KEY, k int);
             CREATE TABLE src_pg.other_rules (id int PRIMARY KEY, k int);
             INSERT INTO src_pg.rules_orders SELECT g, g % 7 FROM generate_series(1, 1000) g;
             INSERT INTO src_pg.rules_order_lines SELECT * FROM src_pg.rules_orders;
             INSERT INTO src_pg.rules_items SELECT * FROM src_pg.rules_orders;
             INSERT INTO src_pg.other_rules SELECT * FROM src_pg.rules_orders;",
        )
        .unwrap();
    let tables = "[[tables]]\nname = \"src_pg.rules_%\"\n\
                  [[tables]]\nname = \"src_pg.rules_order_lines\"\nwhere = \"id <= 900\"\n\
                  partition = { column = \"id\", ranges = 2 }\n\
                  [[rules]]\nname = \"recent orders\"\nschema = \"src_%\"\ntable = \"rules_order%\"\n\
                  where = \"id > 600\"\n\
                  [[rules]]\nname = \"nothing\"\nwhere = \"k < 0\"\nenabled = false\n\
                  [[rules]]\nname = \"items of kind 3\"\ntable = \"RULES_ITEMS\"\nwhere = \"k = 3\"\n";
    let summary = extract(&sandbox, "rules", &pg_odbc(), tables, "");
    let ids = subtask_ids(&summary);
    assert_eq!(
        ids,
        [
            "src_pg.rules_items",
            "src_pg.rules_order_lines/part-001",
            "src_pg.rules_order_lines/part-002",
            "src_pg.rules_orders",
        ],
        "{summary}"
    );
    let expected = [
        ("rules_items", "k = 3", 143),
        ("rules_order_lines", "id <= 900 AND id > 600", 300),
        ("rules_orders", "id > 600", 400),
    ];
    let mut client = fresh_schema("chk_rules");
    for (table, keeps, rows) in expected {
        client
            .batch_execute(&format!(
                "CREATE TABLE chk_rules.{table} (id int, k int);
                 CREATE TABLE chk_rules.{table}_expected AS
                   SELECT id, k FROM src_pg.{table} WHERE {keeps};"
            ))
            .unwrap();
        let dir = sandbox
            .work_dir()
            .join("rules")
            .join(format!("src_pg.{table}"));
        if dir.join("manifest.json").exists() {
            copy_into_pg(&mut client, &format!("chk_rules.{table}"), "id, k", &dir);
        } else {
            load_partitions(&mut client, &format!("chk_rules.{table}"), "id, k", &dir);
        }
        let loaded: i64 = client
            .query_one(&format!("SELECT count(*) FROM chk_rules.{table}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(loaded, rows, "{table}");
        assert_eq!(
            pg_difference(
                &mut client,
                &format!("chk_rules.{table}"),
                &format!("chk_rules.{table}_expected")
            ),
            0,
            "{table}"
        );
    }
}

#[test]
fn chunks_roll_at_chunk_mb_and_the_manifest_matches_the_files() {
    let sandbox = Sandbox::new();
    pg_hash_table("rolling", 200_000);
    let tables = "[[tables]]\nname = \"src_pg.rolling\"\n[files]\nchunk_mb = 1\ngzip_level = 1\n";
    let summary = extract(&sandbox, "rolling", &pg_odbc(), tables, "");
    let dir = sandbox.work_dir().join("rolling/src_pg.rolling");
    let manifest = manifest(&dir);
    let chunks = manifest["chunks"].as_array().unwrap();
    assert!(
        chunks.len() >= 3,
        "expected several 1 MB chunks, got {}",
        chunks.len()
    );
    assert_eq!(summary["chunks"], chunks.len() as u64);
    let mut rows = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let name = chunk["name"].as_str().unwrap();
        assert_eq!(name, format!("{:08}.csv.gz", i + 1));
        let stored = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(chunk["sha256"], hex::encode(Sha256::digest(&stored)));
        assert_eq!(chunk["bytes_compressed"], stored.len() as u64);
        if i + 1 < chunks.len() {
            assert!(
                stored.len() >= 1024 * 1024,
                "chunk {name} closed early: {} bytes",
                stored.len()
            );
        }
        rows += chunk["rows"].as_u64().unwrap();
    }
    assert_eq!(rows, 200_000);
    let csv = chunk_bytes(&dir);
    assert_eq!(csv.iter().filter(|b| **b == b'\n').count(), 200_000);
    assert!(csv.starts_with(b"1,c4ca4238a0b923820dcc509a6f75849b"));
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!files.iter().any(|f| f.ends_with(".partial")), "{files:?}");
}

/// SQLite does not enforce declared lengths: a `varchar(5)` may hold 6000 bytes, and the
/// extractor must take them whole rather than fail or cut.
#[test]
fn sqlite_values_longer_than_their_declared_size_come_out_whole() {
    let sandbox = Sandbox::new();
    let db = sandbox.path("source.db");
    let long = "é".repeat(3000);
    sqlite(
        &db,
        &format!(
            "CREATE TABLE t (id integer primary key, code varchar(5));\
             INSERT INTO t VALUES (1, '{long}'), (2, 'ok'), (3, NULL);"
        ),
    );
    extract(
        &sandbox,
        "long",
        &sqlite_odbc(&db),
        "[[tables]]\nname = \"t\"\n",
        "",
    );
    let csv = String::from_utf8(chunk_bytes(&sandbox.work_dir().join("long/main.t"))).unwrap();
    assert_eq!(csv, format!("1,{long}\n2,ok\n3,\n"));
}

/// The native COPY path for PostgreSQL sources writes what the ODBC path writes, chunk for
/// chunk and byte for byte, for every type it takes (the tricky values of the fidelity
/// table, and 150,000 generated rows of the other types over several chunks); a table with
/// a LOB column stays on the ODBC path.
#[test]
fn the_native_copy_writes_the_same_chunks_as_the_odbc_path_byte_for_byte() {
    let sandbox = Sandbox::new();
    let rows = fixtures::fidelity_rows(3000);
    pg().batch_execute(&fixtures::fidelity_sql(
        Db::Pg,
        "src_pg.parity_fidelity",
        &rows,
    ))
    .unwrap();
    // bytea is a LOB to psqlODBC, read value by value; the native path reads it in its row
    // (values above 1 MiB on the side) and writes the same `\x` hex.
    pg().batch_execute(
        "DROP TABLE IF EXISTS src_pg.parity_more;
         CREATE TABLE src_pg.parity_more AS SELECT i::int4 AS i, (i % 30000)::int2 AS sm,
             (i / 7.0)::real AS r, (i * 1e10 / 3)::float8 AS f,
             lpad((i % 1000)::text, 5)::char(5) AS c, md5(i::text)::uuid AS u,
             (CASE i % 6 WHEN 0 THEN 'a,b' WHEN 1 THEN 'say \"hi\"' WHEN 2 THEN E'line\\nbreak'
                 WHEN 3 THEN E'\\\\.' WHEN 4 THEN '' END)::varchar(40) AS v,
             timestamptz '2020-01-01 00:00:00+00' + i * interval '1.25 second' AS tz,
             CASE WHEN i % 7 = 0 THEN NULL ELSE i % 3 = 0 END AS bo,
             (i * 1.5)::numeric(20, 4) AS n, date '2000-01-01' + i % 5000 AS d
           FROM generate_series(1, 150000) AS i",
    )
    .unwrap();
    let tables = "[[tables]]\nname = \"src_pg.parity_fidelity\"\n\
                  [[tables]]\nname = \"src_pg.parity_more\"\n[files]\nchunk_mb = 1\n";
    let run = |task: &str, native: bool| {
        let source_and_tables = format!("native_copy = {native}\n{tables}");
        let job = sandbox.job(task, &job_text(task, &pg_odbc(), &source_and_tables, ""));
        let run = sandbox.run_job_env(&job, &sandbox.work_dir(), &[("DBHAUL_LOG", "dbhaul=debug")]);
        run.assert_ok();
        run.stderr
    };
    let native_log = run("parity-native", true);
    let odbc_log = run("parity-odbc", false);
    assert_eq!(
        native_log.matches("extract started (native COPY)").count(),
        2,
        "both tables took the native path:\n{native_log}"
    );
    assert!(!odbc_log.contains("native COPY"), "{odbc_log}");
    for table in ["src_pg.parity_fidelity", "src_pg.parity_more"] {
        let native = sandbox.work_dir().join("parity-native").join(table);
        let odbc = sandbox.work_dir().join("parity-odbc").join(table);
        let (a, b) = (manifest(&native), manifest(&odbc));
        let (x, y) = (chunk_bytes(&native), chunk_bytes(&odbc));
        if x != y {
            let at = x
                .iter()
                .zip(&y)
                .position(|(p, q)| p != q)
                .unwrap_or(x.len().min(y.len()));
            panic!(
                "{table} differs at byte {at}:\nnative: {}\nodbc:   {}",
                String::from_utf8_lossy(&x[at.saturating_sub(80)..(at + 80).min(x.len())]),
                String::from_utf8_lossy(&y[at.saturating_sub(80)..(at + 80).min(y.len())])
            );
        }
        assert_eq!(
            a["chunks"], b["chunks"],
            "{table}: the same chunks, rows and SHA-256"
        );
    }
    let more = manifest(&sandbox.work_dir().join("parity-native/src_pg.parity_more"));
    assert!(more["chunks"].as_array().unwrap().len() >= 3, "{more:#}");
}

/// PostgreSQL LOB values longer than a slice (256 Ki characters) come out of a table slice
/// by slice, byte for byte what a view over the same rows gives whole (a view has no row
/// address, so it is read whole): values at the slice boundaries, multibyte characters
/// across slices, quotes and newlines, `bytea` and `json`, NULL and empty.
#[test]
fn postgres_lobs_longer_than_a_slice_come_out_byte_for_byte_as_read_whole() {
    const SLICE: usize = 256 * 1024;
    let sandbox = Sandbox::new();
    pg().batch_execute(&format!(
        "DROP VIEW IF EXISTS src_pg.sliced_whole; DROP TABLE IF EXISTS src_pg.sliced;
         CREATE TABLE src_pg.sliced (id int PRIMARY KEY, t text, b bytea, j json);
         INSERT INTO src_pg.sliced VALUES
           (1, repeat('a', {SLICE}), decode(repeat('ab', {SLICE}), 'hex'), NULL),
           (2, repeat('é', {SLICE}) || '€', decode(repeat('00ff', {bytes_plus}), 'hex'), '[]'),
           (3, repeat(E'x\"y,z\n😀', {SLICE} / 2) || 'end', '', json_build_object('k', repeat('é\"', {SLICE}))),
           (4, '', NULL, NULL),
           (5, NULL, decode(repeat('7f', 5 * {SLICE} + 3), 'hex'), NULL);
         CREATE VIEW src_pg.sliced_whole AS SELECT * FROM src_pg.sliced;",
        bytes_plus = (4 * SLICE + SLICE) / 2 + 1,
    ))
    .unwrap();
    // Through ODBC (LOBs in slices by row address) and through the native COPY (values over
    // 1 MiB read aside in the same snapshot, by row address): the view is read whole.
    let (native, native_whole) =
        read_sliced_and_whole(&sandbox, &pg_odbc(), "src_pg.sliced", Some(true));
    assert!(
        native == native_whole,
        "the native read aside differs from the whole one"
    );
    let (sliced, whole) = read_sliced_and_whole(&sandbox, &pg_odbc(), "src_pg.sliced", Some(false));
    let dir = sandbox.work_dir().join("sliced");
    assert!(sliced.len() > 8 * SLICE, "{}", sliced.len());
    assert!(
        sliced == whole,
        "the sliced read differs from the whole one"
    );

    let schema = "chk_sliced";
    let mut client = fresh_schema(schema);
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.loaded (id int, t text, b bytea, j json)"
        ))
        .unwrap();
    copy_into_pg(
        &mut client,
        &format!("{schema}.loaded"),
        "id, t, b, j",
        &dir.join("src_pg.sliced"),
    );
    let differing: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {schema}.loaded l FULL JOIN src_pg.sliced s USING (id)
                 WHERE l.id IS NULL OR s.id IS NULL OR l.t IS DISTINCT FROM s.t
                    OR l.b IS DISTINCT FROM s.b OR l.j::text IS DISTINCT FROM s.j::text"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(differing, 0);
}

/// MariaDB LOB values longer than a slice come out of a table with a key slice by slice (the
/// first 256 Ki characters with the row, the rest by the key in 4 MiB byte slices, one
/// transaction per key range), byte for byte what a view over the same rows gives whole (a
/// view has no key, so it is read whole): values at the slice boundaries, a 2-byte
/// character cut by a byte slice, quotes and newlines, a composite key with a quote, NULL
/// and empty.
#[test]
fn mariadb_lobs_longer_than_a_slice_come_out_byte_for_byte_as_read_whole() {
    const SLICE: usize = 256 * 1024;
    const BYTES: usize = 4 * 1024 * 1024;
    let sandbox = Sandbox::new();
    let t = format!("{TEST_DB}.sliced");
    maria(&format!(
        "DROP VIEW IF EXISTS {t}_whole; DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (id INT NOT NULL, k VARCHAR(10) NOT NULL, t LONGTEXT, b LONGBLOB,
           PRIMARY KEY (id, k)) DEFAULT CHARSET utf8mb4;
         INSERT INTO {t} VALUES
           (1, 'a', REPEAT('a', {SLICE}), UNHEX(REPEAT('ab', {SLICE}))),
           (2, 'o''k', CONCAT(REPEAT('é', {SLICE}), '€'), UNHEX(REPEAT('00ff', {exact}))),
           (2, 'z', CONCAT(REPEAT('x\"y,z\n😀', {SLICE} DIV 2), 'end'), ''),
           (3, 'a', '', NULL),
           (4, 'a', REPEAT('é', 3 * {BYTES} DIV 2 + 1), UNHEX(REPEAT('7f', 2 * {BYTES} + 3))),
           (5, 'a', NULL, UNHEX(REPEAT('01', {SLICE} + {BYTES})));
         CREATE VIEW {t}_whole AS SELECT * FROM {t};",
        exact = (SLICE + BYTES) / 2,
    ));
    let (sliced, whole) = read_sliced_and_whole(&sandbox, &maria_odbc(), &t, None);
    assert!(sliced.len() > 4 * BYTES, "{}", sliced.len());
    assert_eq!(
        sliced.len(),
        whole.len(),
        "sliced and whole reads differ in length"
    );
    assert!(
        sliced == whole,
        "the sliced read differs from the whole one"
    );
    let text = String::from_utf8(sliced).unwrap();
    let starts = |i: usize| &text[..text.char_indices().nth(i).map_or(text.len(), |(at, _)| at)];
    assert!(
        text.starts_with(&format!("1,a,\"{}\",", "a".repeat(SLICE))),
        "key order: {}",
        starts(40)
    );
    assert!(
        text.contains(&format!("o'k,\"{}€\",", "é".repeat(SLICE))),
        "the quoted key"
    );
}

/// Extract `table` (LOBs read in slices) and the view `<table>_whole` over it (no row
/// address: read whole) in one job, with `source.native_copy` as given; both subtasks' CSV
/// bytes.
fn read_sliced_and_whole(
    sandbox: &Sandbox,
    connection: &str,
    table: &str,
    native_copy: Option<bool>,
) -> (Vec<u8>, Vec<u8>) {
    let native = native_copy.map_or(String::new(), |n| format!("native_copy = {n}\n"));
    let tables =
        format!("{native}[[tables]]\nname = \"{table}\"\n[[tables]]\nname = \"{table}_whole\"\n");
    let job = sandbox.job("sliced", &job_text("sliced", connection, &tables, ""));
    let run = sandbox.run_job_env(&job, &sandbox.work_dir(), &[("DBHAUL_LOG", "dbhaul=debug")]);
    run.assert_ok();
    let (sliced, whole) = match native_copy {
        Some(true) => ("large_values_aside=true", "large values come whole"),
        _ => ("LOB values read in slices", "LOB values read whole"),
    };
    assert_eq!(
        run.stderr.matches(sliced).count(),
        1,
        "the table, not the view, is read in slices:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains(whole), "{}", run.stderr);
    let dir = sandbox.work_dir().join("sliced");
    (
        chunk_bytes(&dir.join(table)),
        chunk_bytes(&dir.join(format!("{table}_whole"))),
    )
}

/// MariaDB's driver holds each result whole, so a table with a key is read in key ranges,
/// each fixed ahead and run on a second connection while the one before is converted. With a
/// composite key (an integer shared by 7 rows, then a string with a quote), rows of 8 kB
/// (about 3,000 per range, so the table is four ranges) come out in key order, each once.
#[test]
fn key_ranges_read_on_two_connections_keep_key_order_and_every_row_once_from_mariadb() {
    let sandbox = Sandbox::new();
    let rows = 10_000u32;
    maria(&format!(
        "DROP TABLE IF EXISTS {TEST_DB}.kr_overlap; \
         CREATE TABLE {TEST_DB}.kr_overlap (a INT NOT NULL, b VARCHAR(20) NOT NULL, \
         pad VARCHAR(2000), PRIMARY KEY (a, b)); \
         INSERT INTO {TEST_DB}.kr_overlap SELECT seq DIV 7, CONCAT(seq MOD 7, '''', \
         LPAD(seq, 5, '0')), REPEAT('x', seq MOD 50) FROM {TEST_DB}.seq_0_to_{};",
        rows - 1
    ));
    let task = "kr-overlap";
    extract(
        &sandbox,
        task,
        &maria_odbc(),
        &format!("[[tables]]\nname = \"{TEST_DB}.kr_overlap\"\n[files]\nchunk_mb = 1\n"),
        "",
    );
    let dir = sandbox
        .work_dir()
        .join(task)
        .join(format!("{TEST_DB}.kr_overlap"));
    let text = String::from_utf8(chunks_joined(&dir).0).unwrap();
    let keys: Vec<(u32, String)> = text
        .lines()
        .map(|line| {
            let mut fields = line.split(',');
            let a = fields.next().unwrap().parse().unwrap();
            (a, fields.next().unwrap().to_string())
        })
        .collect();
    let expected: Vec<(u32, String)> = (0..rows)
        .map(|seq| (seq / 7, format!("{}'{seq:05}", seq % 7)))
        .collect();
    assert_eq!(keys.len(), expected.len(), "rows");
    assert!(keys == expected, "rows out of key order, lost or doubled");
}

/// A key-ordered (resumable) read of an analysed PostgreSQL table of 600,000 rows is cut
/// into ranges of its first key column, read on two connections in one snapshot. With a
/// composite key (an integer shared by 7 rows, then a string with a quote), the rows come out
/// in key order, each once: byte for byte what one `COPY (… ORDER BY key)` writes.
#[test]
fn a_key_ordered_postgresql_read_in_key_ranges_writes_what_one_ordered_copy_writes() {
    let sandbox = Sandbox::new();
    let mut client = pg();
    client
        .batch_execute(
            "DROP TABLE IF EXISTS src_pg.kr_pg;
             CREATE TABLE src_pg.kr_pg AS SELECT
                 i / 7 AS a, CAST(chr(65 + i % 26) || '''' || (i % 7) AS varchar(20)) AS g,
                 CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN '' ELSE repeat('x,\"', i % 40) END AS pad
               FROM generate_series(0, 599999) AS i;
             ALTER TABLE src_pg.kr_pg ADD PRIMARY KEY (a, g);
             ANALYZE src_pg.kr_pg;",
        )
        .unwrap();
    let task = "kr-pg";
    let job = sandbox.job(
        task,
        &job_text(
            task,
            &pg_odbc(),
            "[[tables]]\nname = \"src_pg.kr_pg\"\n[files]\nchunk_mb = 1\n",
            "sorting = \"if_possible\"",
        ),
    );
    let run = sandbox.run_job_env(&job, &sandbox.work_dir(), &[("DBHAUL_LOG", "dbhaul=debug")]);
    run.assert_ok();
    assert!(
        run.stderr.contains("read in key ranges on two connections"),
        "{}",
        run.stderr
    );
    let dir = sandbox.work_dir().join(task).join("src_pg.kr_pg");
    let (written, chunks) = chunks_joined(&dir);
    assert!(chunks > 2, "{chunks} chunks");
    let expected = pg_copy_out(
        &mut client,
        "COPY (SELECT a, g, pad FROM src_pg.kr_pg ORDER BY a, g) TO STDOUT (FORMAT csv)",
    );
    assert_eq!(written.len(), expected.len(), "bytes");
    assert!(
        written == expected,
        "rows out of key order, lost or doubled"
    );
}

/// A whole PostgreSQL table read in no order (here 40 MB of `jsonb`, `text[]` and `text`)
/// is cut into ranges of blocks (TID range scans), read on two connections in one
/// snapshot: every row once, as one COPY writes it.
#[test]
fn a_whole_postgresql_table_read_in_block_ranges_writes_every_row_once() {
    let sandbox = Sandbox::new();
    let mut client = pg();
    client
        .batch_execute(
            "DROP TABLE IF EXISTS src_pg.br_pg;
             CREATE TABLE src_pg.br_pg AS SELECT i AS id,
                 ARRAY['a,b', NULL, '', 'say \"hi\"', i::text] AS tags,
                 jsonb_build_object('i', i, 'q', 'a\"b', 'n', ARRAY[i, i + 1]) AS doc,
                 CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN '' ELSE repeat(md5(i::text), 2) END AS note
               FROM generate_series(1, 250000) AS i;",
        )
        .unwrap();
    let task = "br-pg";
    let job = sandbox.job(
        task,
        &job_text(
            task,
            &pg_odbc(),
            "[[tables]]\nname = \"src_pg.br_pg\"\n[files]\nchunk_mb = 4\n",
            "",
        ),
    );
    let run = sandbox.run_job_env(&job, &sandbox.work_dir(), &[("DBHAUL_LOG", "dbhaul=debug")]);
    run.assert_ok();
    assert!(
        run.stderr
            .contains("read in block ranges on two connections"),
        "{}",
        run.stderr
    );
    let dir = sandbox.work_dir().join(task).join("src_pg.br_pg");
    let written = chunks_joined(&dir).0;
    let expected = pg_copy_out(&mut client, "COPY src_pg.br_pg TO STDOUT (FORMAT csv)");
    let lines = |bytes: &[u8]| {
        let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        lines.sort();
        lines
    };
    let (written, expected) = (lines(&written), lines(&expected));
    assert_eq!(written.len(), expected.len(), "rows");
    assert!(written == expected, "rows lost, doubled or changed");
}

/// A source that refuses the second connection of a read in ranges (here its role's
/// `CONNECTION LIMIT`) is still read whole: with one COPY, every row once, and it says so.
#[test]
fn a_source_that_refuses_a_second_connection_is_read_with_one_copy() {
    let sandbox = Sandbox::new();
    pg().batch_execute(
        "DROP TABLE IF EXISTS src_pg.one_conn;
         CREATE TABLE src_pg.one_conn AS
           SELECT i AS id, repeat(md5(i::text), 3) AS pad FROM generate_series(1, 300000) AS i;
         DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dbhaul_one') THEN
             CREATE ROLE dbhaul_one LOGIN;
           END IF;
         END $$;
         ALTER ROLE dbhaul_one CONNECTION LIMIT 1;
         GRANT USAGE ON SCHEMA src_pg TO dbhaul_one;
         GRANT SELECT ON src_pg.one_conn TO dbhaul_one;",
    )
    .unwrap();
    let task = "one-conn";
    let job = sandbox.job(
        task,
        &job_text(
            task,
            &pg_odbc().replace("Uid=postgres;", "Uid=dbhaul_one;"),
            "[[tables]]\nname = \"src_pg.one_conn\"\n",
            "",
        ),
    );
    let run = sandbox.run_job_env(&job, &sandbox.work_dir(), &[("DBHAUL_LOG", "dbhaul=debug")]);
    let summary = run.assert_ok();
    assert!(
        run.stderr.contains("src_pg") && run.stderr.contains("is read with one COPY"),
        "{}",
        run.stderr
    );
    assert_eq!(summary["rows"], 300_000, "{summary:#}");
}

/// A `DSN=` connection string reads PostgreSQL through the native COPY too: the server,
/// port, database and login come from the DSN's `odbc.ini` entry, found as the driver
/// manager finds it (here `ODBCINI`); a key-ordered (resumable) read, with a `text` and a
/// `jsonb` column, takes it as well, and writes what the ODBC path writes.
#[test]
fn a_dsn_and_a_key_ordered_read_take_the_native_copy_with_text_and_jsonb_columns() {
    let sandbox = Sandbox::new();
    pg().batch_execute(
        "DROP TABLE IF EXISTS src_pg.by_dsn;
         CREATE TABLE src_pg.by_dsn (id int PRIMARY KEY, t text, j jsonb, a text[]);
         INSERT INTO src_pg.by_dsn SELECT i, CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN ''
             ELSE md5(i::text) || E',\"\\n' END, jsonb_build_object('i', i, 'q', 'a\"b'),
             ARRAY['x,y', NULL, '']
           FROM generate_series(1, 20000) AS i;",
    )
    .unwrap();
    let ini = sandbox.path("odbc.ini");
    std::fs::write(
        &ini,
        format!(
            "[dbhaul_test_pg]\nDriver = PostgreSQL Unicode\nServername = {}\nPort = 5432\n\
             Database = {TEST_DB}\nUsername = postgres\n",
            pg_host()
        ),
    )
    .unwrap();
    let ini = ini.to_str().unwrap().to_string();
    let tables = "[[tables]]\nname = \"src_pg.by_dsn\"\n[files]\nchunk_mb = 1\n";
    let run = |task: &str, connection: &str, native: bool| {
        let source = format!("native_copy = {native}\n{tables}");
        let job = sandbox.job(
            task,
            &job_text(task, connection, &source, "sorting = \"if_possible\""),
        );
        let run = sandbox.run_job_env(
            &job,
            &sandbox.work_dir(),
            &[("DBHAUL_LOG", "dbhaul=debug"), ("ODBCINI", &ini)],
        );
        run.assert_ok();
        run.stderr
    };
    let by_dsn = run("by-dsn", "DSN=dbhaul_test_pg;", true);
    // Its text columns hold no value stored out of line (an empty TOAST table): no value
    // can be over 1 MiB, so none is read aside and the rows carry no hidden field.
    assert!(
        by_dsn.contains("extract started (native COPY)")
            && by_dsn.contains("keyed=true")
            && by_dsn.contains("large_values_aside=false"),
        "{by_dsn}"
    );
    run("by-odbc", &pg_odbc(), false);
    let schema = "chk_by_dsn";
    let mut client = fresh_schema(schema);
    for task in ["by-dsn", "by-odbc"] {
        let table = format!("{schema}.{}", task.replace('-', "_"));
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (id int, t text, j jsonb, a text[])"
            ))
            .unwrap();
        let dir = sandbox.work_dir().join(task).join("src_pg.by_dsn");
        copy_into_pg(&mut client, &table, "id, t, j, a", &dir);
        let differing: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {table} l FULL JOIN src_pg.by_dsn s USING (id)
                     WHERE l.id IS NULL OR s.id IS NULL OR l.t IS DISTINCT FROM s.t
                        OR l.j IS DISTINCT FROM s.j OR l.a IS DISTINCT FROM s.a"
                ),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(differing, 0, "{task}");
    }
    // In key order, chunk after chunk: the first chunk starts at the first key.
    let first = chunk_bytes(&sandbox.work_dir().join("by-dsn/src_pg.by_dsn"));
    assert!(
        first.starts_with(b"1,\"\","),
        "{}",
        String::from_utf8_lossy(&first[..40])
    );
}

/// A MariaDB `TEXT` column of ordinary values is read in blocks, with key ranges of a
/// thousand rows and more on two connections (LOB rows went 8 to a query): only a value
/// longer than 4,096 characters takes the slices, by its row's key, and comes out whole.
#[test]
fn mariadb_text_columns_of_ordinary_values_are_read_in_blocks_and_long_ones_whole() {
    let sandbox = Sandbox::new();
    let t = format!("{TEST_DB}.text_blocks");
    maria(&format!(
        "DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (id INT PRIMARY KEY, c TEXT, l LONGTEXT, b BLOB) DEFAULT CHARSET utf8mb4;
         INSERT INTO {t} SELECT seq, CONCAT('row ', seq, ' \"q\", x'),
             IF(seq % 5000 = 0, REPEAT('é', 4097), IF(seq % 13 = 0, REPEAT('😀', 60 + seq % 8),
               IF(seq % 7 = 0, NULL, IF(seq % 11 = 0, '', 'ok')))),
             IF(seq % 10000 = 0, UNHEX(REPEAT('ab', 16385)), UNHEX(HEX(seq)))
           FROM {TEST_DB}.seq_1_to_40000;"
    ));
    let tables = format!("[[tables]]\nname = \"{t}\"\n");
    let job = sandbox.job(
        "text-blocks",
        &job_text("text-blocks", &maria_odbc(), &tables, ""),
    );
    let run = sandbox.run_job_env(&job, &sandbox.work_dir(), &[("DBHAUL_LOG", "dbhaul=debug")]);
    assert_eq!(run.assert_ok()["rows"], 40_000);
    let queries: u64 = run
        .stderr
        .split("queries=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no query count in the log:\n{}", run.stderr));
    assert!(queries <= 100, "{queries} queries for 40,000 rows");
    let csv = chunk_bytes(&sandbox.work_dir().join("text-blocks").join(&t));
    let rows = csv_records(&csv, b',', b"");
    assert_eq!(rows.len(), 40_000);
    let text = |s: String| Some(s.into_bytes());
    for (i, row) in rows.iter().enumerate() {
        let id = i as u64 + 1;
        let l = match id {
            _ if id.is_multiple_of(5000) => text("é".repeat(4097)),
            // Four-byte characters about the limit of a range whose values are short (64
            // characters): the last that fit, and the first read whole.
            _ if id.is_multiple_of(13) => text("😀".repeat(60 + id as usize % 8)),
            _ if id.is_multiple_of(7) => None,
            _ if id.is_multiple_of(11) => text(String::new()),
            _ => text("ok".into()),
        };
        let b = match id % 10000 {
            0 => format!("\\x{}", "ab".repeat(16385)),
            // UNHEX(HEX(n)): the hex digits of n, a leading 0 where they are odd.
            _ => {
                let digits = format!("{id:x}");
                format!("\\x{}{digits}", "0".repeat(digits.len() % 2))
            }
        };
        let hex = row[3]
            .as_ref()
            .map(|v| String::from_utf8_lossy(v).to_lowercase());
        assert_eq!(
            (&row[0], &row[1], &row[2], hex),
            (
                &text(id.to_string()),
                &text(format!("row {id} \"q\", x")),
                &l,
                Some(b)
            ),
            "row {id}"
        );
    }
}
