//! Upload and copy, end to end against real parts: moto's S3 server (started by the
//! harness), the real PostgreSQL as the warehouse, the real ODBC sources. What a user would
//! check: rows in the warehouse equal rows in the source, both ways, NULL and "" apart;
//! uploaded objects equal the local chunks byte for byte; an S3 outage mid-upload, or a run
//! killed during copy and run again, leaves every row in the warehouse exactly once; bad
//! settings fail before any data moves, with the cause and the fix.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::fixtures::{self, Db};
use crate::common::s3::{self, Proxy};
use crate::common::*;

/// `[target]` and `[warehouse]` sections for a bucket on `endpoint` and a schema of the
/// PostgreSQL test database; `target_extra` and `warehouse_extra` are more settings.
fn stages_with(
    endpoint: &str,
    bucket: &str,
    schema: &str,
    target_extra: &str,
    warehouse_extra: &str,
) -> String {
    format!(
        "[target]\nurl = \"s3://{bucket}/exports\"\nendpoint = \"{endpoint}\"\n{target_extra}\n\
         [warehouse]\nkind = \"postgres\"\nurl = \"postgresql://postgres@{}:5432/{TEST_DB}\"\n\
         schema = \"{schema}\"\n{warehouse_extra}\n",
        pg_host()
    )
}

fn stages_toml(endpoint: &str, bucket: &str, schema: &str, warehouse_extra: &str) -> String {
    stages_with(endpoint, bucket, schema, "", warehouse_extra)
}

fn copy_mode() -> &'static str {
    "mode = \"extract-upload-copy\""
}

/// A job file for mode extract-upload-copy of the PostgreSQL source: `tables` (the
/// `[[tables]]` entry, and any `[files]`), then `stages` (`[target]` and `[warehouse]`).
fn pg_copy_job(sandbox: &Sandbox, task: &str, tables: &str, stages: &str) -> std::path::PathBuf {
    let text = job_text(task, &pg_odbc(), &format!("{tables}{stages}"), copy_mode());
    sandbox.job(task, &text)
}

/// `dbhaul run --json` with the S3 test environment.
fn run_with_s3(sandbox: &Sandbox, job: &Path, endpoint: &str) -> Run {
    let env = s3::s3_env(endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sandbox.run_job_env(job, &sandbox.work_dir(), &env)
}

fn count(client: &mut postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// The fidelity table from `db` through S3 into the PostgreSQL warehouse.
fn fidelity_through_the_warehouse(db: Db, tag: &str) {
    let sandbox = Sandbox::new();
    let rows = fixtures::fidelity_rows(2000);
    let (connection, namespace) = source_of(db, &sandbox);
    let table = format!("wh_fidelity_{tag}");
    let sql = |t: &str| fixtures::fidelity_sql(db, t, &rows);
    match db {
        Db::Pg => pg()
            .batch_execute(&sql(&format!("src_pg.{table}")))
            .unwrap(),
        Db::Maria => maria(&sql(&format!("{TEST_DB}.{table}"))),
        Db::Sqlite => sqlite(&sandbox.path("source.db"), &sql(&table)),
    }
    let schema = format!("wh_{tag}");
    let mut client = fresh_schema(&schema);
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.{table} ({}); {}",
            fixtures::FIDELITY_PG_COLUMNS,
            fixtures::fidelity_sql(Db::Pg, &format!("{schema}.expected"), &rows)
        ))
        .unwrap();
    let moto = s3::moto();
    let bucket = s3::unique_bucket(tag);
    s3::create_bucket(&moto.endpoint(), &bucket);

    let task = format!("wh-{tag}");
    let text = job_text(
        &task,
        &connection,
        &format!(
            "[[tables]]\nname = \"{namespace}.{table}\"\n[files]\nkeep_local = true\nchunk_mb = 1\n{}",
            stages_toml(&moto.endpoint(), &bucket, &schema, "")
        ),
        copy_mode(),
    );
    let job = sandbox.job(&task, &text);
    let summary = run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    let subtask = &summary["subtasks"][0];
    assert_eq!(subtask["rows"], rows.len() as u64);
    assert_eq!(subtask["uploaded_rows"], rows.len() as u64);
    assert_eq!(subtask["copied_rows"], rows.len() as u64);

    let loaded = format!("{schema}.{table}");
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {loaded}")),
        rows.len() as i64
    );
    assert_eq!(
        pg_difference(&mut client, &loaded, &format!("{schema}.expected")),
        0,
        "warehouse rows differ from the source rows ({tag})"
    );
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE s IS NULL), count(*) FILTER (WHERE s = '') FROM {loaded}"
            ),
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 1));

    // What was uploaded is what was written locally, byte for byte, under the documented
    // keys, with the manifest last.
    let dir = sandbox
        .work_dir()
        .join(&task)
        .join(format!("{namespace}.{table}"));
    let manifest = manifest(&dir);
    let prefix = format!("exports/{task}/{namespace}.{table}/");
    let keys = s3::list_keys(&moto.endpoint(), &bucket, &prefix);
    let chunks = manifest["chunks"].as_array().unwrap();
    assert_eq!(keys.len(), chunks.len() + 1, "{keys:?}");
    for chunk in chunks {
        let name = chunk["name"].as_str().unwrap();
        let uploaded = s3::get_object(&moto.endpoint(), &bucket, &format!("{prefix}{name}"));
        assert!(
            uploaded == std::fs::read(dir.join(name)).unwrap(),
            "{name} differs"
        );
    }
    let uploaded_manifest =
        s3::get_object(&moto.endpoint(), &bucket, &format!("{prefix}manifest.json"));
    assert_eq!(
        uploaded_manifest,
        std::fs::read(dir.join("manifest.json")).unwrap()
    );
    // The manifest doubles as a Redshift COPY manifest.
    let entries = manifest["entries"].as_array().unwrap();
    assert_eq!(entries.len(), chunks.len());
    assert_eq!(
        entries[0]["url"],
        format!("s3://{bucket}/{prefix}00000001.csv.gz")
    );
    assert_eq!(entries[0]["mandatory"], true);
    assert_eq!(
        entries[0]["meta"]["content_length"],
        chunks[0]["bytes_compressed"]
    );
}

/// `zstd`, `bzip2` and uncompressed chunks (gzip is every other test's): the stock tools
/// read each back to the same CSV as the uncompressed run's, and the copy stage loads each
/// into PostgreSQL: the warehouse equals the source.
#[test]
fn zstd_bzip2_and_uncompressed_chunks_reach_the_warehouse_byte_for_byte() {
    let sandbox = Sandbox::new();
    let rows = fixtures::fidelity_rows(3000);
    pg().batch_execute(&fixtures::fidelity_sql(
        Db::Pg,
        "src_pg.wh_compressed",
        &rows,
    ))
    .unwrap();
    let moto = s3::moto();
    let bucket = s3::unique_bucket("compressed");
    s3::create_bucket(&moto.endpoint(), &bucket);
    let mut plain: Option<Vec<u8>> = None;
    for (compression, extension, tool) in [
        ("none", "csv", None),
        ("zstd", "csv.zst", Some("zstd")),
        ("bzip2", "csv.bz2", Some("bzip2")),
    ] {
        let schema = format!("wh_compressed_{compression}");
        let mut client = fresh_schema(&schema);
        client
            .batch_execute(&format!(
                "CREATE TABLE {schema}.wh_compressed ({}); {}",
                fixtures::FIDELITY_PG_COLUMNS,
                fixtures::fidelity_sql(Db::Pg, &format!("{schema}.expected"), &rows)
            ))
            .unwrap();
        let task = format!("compressed-{compression}");
        let job = pg_copy_job(
            &sandbox,
            &task,
            &format!(
                "[[tables]]\nname = \"src_pg.wh_compressed\"\n[files]\nkeep_local = true\n\
                 compression = \"{compression}\"\n"
            ),
            &stages_toml(&moto.endpoint(), &bucket, &schema, ""),
        );
        let summary = run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
        assert_eq!(summary["subtasks"][0]["copied_rows"], rows.len() as u64);
        assert_eq!(
            pg_difference(
                &mut client,
                &format!("{schema}.wh_compressed"),
                &format!("{schema}.expected")
            ),
            0,
            "{compression}: warehouse rows differ from the source rows"
        );
        let dir = sandbox.work_dir().join(&task).join("src_pg.wh_compressed");
        let file = dir.join(format!("00000001.{extension}"));
        let csv = match tool {
            None => std::fs::read(&file).unwrap(),
            Some(tool) => {
                let out = Command::new(tool).arg("-dc").arg(&file).output().unwrap();
                assert!(out.status.success(), "{tool} -dc {}", file.display());
                out.stdout
            }
        };
        assert_eq!(
            manifest(&dir)["format"]["compression"],
            compression,
            "the manifest names the compression"
        );
        match &plain {
            None => plain = Some(csv),
            Some(plain) => assert!(*plain == csv, "{compression}: other CSV than uncompressed"),
        }
    }

    // warehouse.copy.emptyasnull: PostgreSQL's equivalent (FORCE_NULL) loads the empty
    // string as NULL; the source's one NULL and one "" of `s` are then two NULLs.
    let schema = "wh_compressed_emptyasnull";
    let mut client = fresh_schema(schema);
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.wh_compressed ({})",
            fixtures::FIDELITY_PG_COLUMNS
        ))
        .unwrap();
    let job = pg_copy_job(
        &sandbox,
        "emptyasnull",
        "[[tables]]\nname = \"src_pg.wh_compressed\"\n",
        &format!(
            "{}[warehouse.copy]\nemptyasnull = true\n",
            stages_toml(&moto.endpoint(), &bucket, schema, "")
        ),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE s IS NULL), count(*) FILTER (WHERE s = ''), count(*) \
                 FROM {schema}.wh_compressed"
            ),
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (2, 0, rows.len() as i64)
    );
}

#[test]
fn rows_reach_the_warehouse_byte_for_byte_from_postgres() {
    fidelity_through_the_warehouse(Db::Pg, "pg");
}

#[test]
fn rows_reach_the_warehouse_byte_for_byte_from_mariadb() {
    fidelity_through_the_warehouse(Db::Maria, "maria");
}

#[test]
fn rows_reach_the_warehouse_byte_for_byte_from_sqlite() {
    fidelity_through_the_warehouse(Db::Sqlite, "sqlite");
}

#[test]
fn missing_tables_are_created_from_the_source_types() {
    let sandbox = Sandbox::new();
    let rows = fixtures::fidelity_rows(100);
    let table = "wh_created";
    let mut client = pg();
    client
        .batch_execute(&fixtures::fidelity_sql(
            Db::Pg,
            &format!("src_pg.{table}"),
            &rows,
        ))
        .unwrap();
    let schema = "wh_create";
    let mut client = fresh_schema(schema);
    client
        .batch_execute(&fixtures::fidelity_sql(
            Db::Pg,
            &format!("{schema}.expected"),
            &rows,
        ))
        .unwrap();
    let moto = s3::moto();
    let bucket = moto_bucket("create");
    let job = pg_copy_job(
        &sandbox,
        "wh-create",
        &format!("[[tables]]\nname = \"src_pg.{table}\"\n"),
        &stages_toml(&moto.endpoint(), &bucket, schema, "create_tables = true"),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    let types: Vec<String> = client
        .query(
            "SELECT data_type::text FROM information_schema.columns WHERE table_schema = $1 \
             AND table_name = $2 ORDER BY ordinal_position",
            &[&schema, &table],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(types[0], "bigint");
    assert_eq!(
        pg_difference(
            &mut client,
            &format!("{schema}.{table}"),
            &format!("{schema}.expected")
        ),
        0
    );
}

/// A warehouse table made with `pg_dump -s` of a source with a generated and an identity
/// column, its columns in another order: COPY names the columns; the generated column is
/// left out (its field stripped from the rows, once per subtask in the log) and computed by
/// the warehouse; the identity column (`GENERATED ALWAYS`) gets the source's ids. Values
/// holding the delimiter, quotes, a line break or `\.`, NULL and "" cross the stripping,
/// and the chunk is larger than a piece COPY is fed.
#[test]
fn a_table_made_with_pg_dump_takes_the_rows_with_its_generated_and_identity_columns() {
    let sandbox = Sandbox::new();
    let table = "wh_dumped";
    let rows = 30_000;
    pg().batch_execute(&format!(
        "DROP TABLE IF EXISTS src_pg.{table}; \
         CREATE TABLE src_pg.{table} (\
           id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item text, price numeric(10,2), \
           qty integer, total numeric GENERATED ALWAYS AS (price * qty) STORED); \
         INSERT INTO src_pg.{table} (id, item, price, qty) OVERRIDING SYSTEM VALUE \
         SELECT 1000 + 3 * g, \
           CASE g % 7 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN E'a,b \"q\"\\n' || g \
             WHEN 3 THEN '\\.' ELSE md5(g::text) END, \
           CASE WHEN g % 11 = 0 THEN NULL ELSE (g % 1000) / 4.0 END, g % 13 \
         FROM generate_series(1, {rows}) g"
    ))
    .unwrap();
    let schema = "wh_dump";
    let mut client = fresh_schema(schema);
    // As `pg_dump -s` writes it, with the columns in another order than the source's.
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.{table} (\
               total numeric GENERATED ALWAYS AS ((price * (qty)::numeric)) STORED, \
               qty integer, item text, id bigint NOT NULL, price numeric(10,2)); \
             ALTER TABLE {schema}.{table} ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (\
               SEQUENCE NAME {schema}.{table}_id_seq START WITH 1 INCREMENT BY 1 NO MINVALUE \
               NO MAXVALUE CACHE 1); \
             ALTER TABLE ONLY {schema}.{table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id);"
        ))
        .unwrap();
    let moto = s3::moto();
    let bucket = moto_bucket("dumped");
    let job = pg_copy_job(
        &sandbox,
        "dumped",
        &format!("[[tables]]\nname = \"src_pg.{table}\"\n"),
        &stages_toml(&moto.endpoint(), &bucket, schema, ""),
    );
    let mut env = s3::s3_env(&moto.endpoint());
    env.push(("DBHAUL_LOG".into(), "dbhaul=info".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = sandbox.run_job_env(&job, &sandbox.work_dir(), &env);
    run.assert_ok();
    let left_out = format!("column total of \"{schema}\".\"{table}\" is left out of the COPY");
    assert_eq!(
        run.stderr.matches(&left_out).count(),
        1,
        "{left_out:?} once in:\n{}",
        run.stderr
    );

    let columns = "id, item, price, qty, total";
    assert_eq!(
        pg_difference(
            &mut client,
            &format!("(SELECT {columns} FROM {schema}.{table}) w"),
            &format!("(SELECT {columns} FROM src_pg.{table}) s"),
        ),
        0
    );
    assert_eq!(
        count(
            &mut client,
            &format!("SELECT count(*) FROM {schema}.{table}")
        ),
        rows
    );
    // The ids are the source's, not numbered anew; the totals are the warehouse's own.
    let (first, last): (i64, i64) = {
        let row = client
            .query_one(
                &format!("SELECT min(id), max(id) FROM {schema}.{table}"),
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((first, last), (1003, 1000 + 3 * rows));
    assert_eq!(
        count(
            &mut client,
            &format!(
                "SELECT count(*) FROM {schema}.{table} WHERE item = '\\.' AND \
                 total IS NOT DISTINCT FROM price * qty"
            )
        ),
        count(
            &mut client,
            &format!("SELECT count(*) FROM src_pg.{table} WHERE item = '\\.'")
        )
    );
}

/// `files.delimiter`, `null_string` and `rtrim` end to end: the chunk is written with `|`
/// and `\N`, trailing spaces of text values are trimmed, and the copy stage reads it back
/// with the same settings: a value holding the delimiter, a NULL, "", and the text `\N`
/// itself stay apart in the warehouse.
#[test]
fn a_custom_delimiter_null_string_and_rtrim_reach_the_warehouse() {
    let sandbox = Sandbox::new();
    pg().batch_execute(
        "DROP TABLE IF EXISTS src_pg.wh_format; \
         CREATE TABLE src_pg.wh_format (id int PRIMARY KEY, s varchar(20), v varchar(20)); \
         INSERT INTO src_pg.wh_format VALUES (1, 'a|b', 'x  '), (2, NULL, ''), \
         (3, '\\N', '  y '), (4, '', NULL)",
    )
    .unwrap();
    let schema = "wh_format";
    let mut client = fresh_schema(schema);
    let moto = s3::moto();
    let bucket = moto_bucket("format");
    let job = pg_copy_job(
        &sandbox,
        "format",
        "[[tables]]\nname = \"src_pg.wh_format\"\n[files]\ndelimiter = \"|\"\n\
         null_string = '\\N'\nrtrim = true\nkeep_local = true\ncompression = \"none\"\n",
        &stages_toml(&moto.endpoint(), &bucket, schema, "create_tables = true"),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    let chunk = std::fs::read_to_string(
        sandbox
            .work_dir()
            .join("format/src_pg.wh_format/00000001.csv"),
    )
    .unwrap();
    let mut lines: Vec<&str> = chunk.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["1|\"a|b\"|x", "2|\\N|\"\"", "3|\"\\N\"|  y", "4|\"\"|\\N"]
    );
    let rows: Vec<(i32, Option<String>, Option<String>)> = client
        .query(
            &format!("SELECT id, s, v FROM {schema}.wh_format ORDER BY id"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        rows,
        [
            (1, some("a|b"), some("x")),
            (2, None, some("")),
            (3, some("\\N"), some("  y")),
            (4, some(""), None),
        ]
    );
}

/// `files.lob_objects`: a LOB value above the size (65,535 bytes by default) goes to its own
/// object under the subtask's `lobs/` folder and its column holds the object's URL; values
/// at or under it, NULL and "" stay in the row. The 100 MB text and a 70 kB binary value
/// come back from their objects byte for byte; the manifest lists both with their SHA-256.
#[test]
fn lob_values_over_the_size_go_to_their_own_objects_and_come_back_whole() {
    use sha2::{Digest, Sha256};
    let sandbox = Sandbox::new();
    let text = String::from_utf8(fixtures::big_text()).unwrap();
    let binary: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let at_limit = "é".repeat(65_535 / 2) + "x";
    assert_eq!(at_limit.len(), 65_535);
    let mut source = pg();
    source
        .batch_execute(
            "DROP TABLE IF EXISTS src_pg.lob_objects; CREATE TABLE src_pg.lob_objects \
             (id bigint PRIMARY KEY, body text, bin bytea)",
        )
        .unwrap();
    source
        .execute(
            "INSERT INTO src_pg.lob_objects VALUES (1, $1, $2), (2, $3, '\\x0001ff'::bytea), \
             (3, NULL, NULL), (4, '', ''::bytea)",
            &[&text, &binary, &at_limit],
        )
        .unwrap();
    let schema = "wh_lob_objects";
    let mut client = fresh_schema(schema);
    let moto = s3::moto();
    let bucket = moto_bucket("lobobjects");
    let job = pg_copy_job(
        &sandbox,
        "lob-objects",
        "[[tables]]\nname = \"src_pg.lob_objects\"\n[files]\nlob_objects = true\n",
        &stages_toml(&moto.endpoint(), &bucket, schema, "create_tables = true"),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();

    let rows = client
        .query(
            &format!("SELECT id, body, bin FROM {schema}.lob_objects ORDER BY id"),
            &[],
        )
        .unwrap();
    let cells: Vec<(i64, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let folder = format!("s3://{bucket}/exports/lob-objects/src_pg.lob_objects/lobs/");
    let object = |url: &Option<String>| {
        let url = url.as_deref().expect("a URL");
        assert!(url.starts_with(&folder), "{url} is under {folder}");
        let key = url.strip_prefix(&format!("s3://{bucket}/")).unwrap();
        s3::get_object(&moto.endpoint(), &bucket, key)
    };
    let body = object(&cells[0].1);
    assert_eq!(body.len(), text.len(), "100 MB text length");
    assert!(body == text.as_bytes(), "100 MB text bytes");
    assert_eq!(object(&cells[0].2), binary, "70 kB binary bytes");
    // At the limit and under it, the value itself (a binary one as its hex digits).
    assert_eq!(cells[1].1.as_deref(), Some(at_limit.as_str()));
    assert_eq!(cells[1].2.as_deref(), Some("\\x0001ff"));
    assert_eq!((cells[2].1.as_deref(), cells[2].2.as_deref()), (None, None));
    assert_eq!(cells[3].1.as_deref(), Some(""));
    // The manifest lists the objects, and nothing else went to the lobs/ folder.
    let manifest: serde_json::Value = serde_json::from_slice(&s3::get_object(
        &moto.endpoint(),
        &bucket,
        "exports/lob-objects/src_pg.lob_objects/manifest.json",
    ))
    .unwrap();
    assert_eq!(manifest["lob_folder"], folder.as_str());
    let mut listed: Vec<(String, u64, String)> = manifest["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["lobs"].as_array().cloned().unwrap_or_default())
        .map(|l| {
            let name = l["name"].as_str().unwrap().to_string();
            (
                name,
                l["bytes"].as_u64().unwrap(),
                l["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    let url_of = |cell: &Option<String>| {
        cell.as_deref()
            .unwrap()
            .strip_prefix(&folder)
            .unwrap()
            .to_string()
    };
    let mut expected = vec![
        (
            url_of(&cells[0].1),
            text.len() as u64,
            hex::encode(Sha256::digest(text.as_bytes())),
        ),
        (
            url_of(&cells[0].2),
            binary.len() as u64,
            hex::encode(Sha256::digest(&binary)),
        ),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    let prefix = "exports/lob-objects/src_pg.lob_objects/lobs/";
    assert_eq!(s3::list_keys(&moto.endpoint(), &bucket, prefix).len(), 2);
    // Uploaded LOB files are not kept locally (keep_local = false).
    let local = sandbox
        .work_dir()
        .join("lob-objects/src_pg.lob_objects/lobs");
    let left = std::fs::read_dir(&local).map_or(0, |d| d.count());
    assert_eq!(left, 0, "LOB files left in {}", local.display());
}

/// A table big enough for several chunks of 1 MB and a multipart upload with 5 MB parts.
fn hash_table_job(
    sandbox: &Sandbox,
    task: &str,
    table: &str,
    endpoint: &str,
    bucket: &str,
    schema: &str,
    files: &str,
) -> std::path::PathBuf {
    let text = job_text(
        task,
        &pg_odbc(),
        &format!(
            "[[tables]]\nname = \"src_pg.{table}\"\n[files]\n{files}\n{}",
            stages_with(
                endpoint,
                bucket,
                schema,
                "attempts = 20\npart_size_mb = 5",
                ""
            )
        ),
        copy_mode(),
    );
    sandbox.job(task, &text)
}

/// One test's volume case: `src_pg.<name>` with `rows` hash rows, an empty warehouse
/// table `<name>.<name>` (schema and table named alike), and a bucket on the shared moto.
struct HashCase {
    sandbox: Sandbox,
    name: &'static str,
    client: postgres::Client,
    bucket: String,
}

impl HashCase {
    fn new(name: &'static str, rows: u32) -> HashCase {
        pg_hash_table(name, rows);
        let mut client = fresh_schema(name);
        warehouse_table(&mut client, name, name);
        let bucket = s3::unique_bucket(&name.replace('_', ""));
        s3::create_bucket(&s3::moto().endpoint(), &bucket);
        HashCase {
            sandbox: Sandbox::new(),
            name,
            client,
            bucket,
        }
    }

    /// The task name: the case's name with dashes.
    fn task(&self) -> String {
        self.name.replace('_', "-")
    }

    /// A copy job for the case through `endpoint`, with `[files]` settings.
    fn job(&self, endpoint: &str, files: &str) -> std::path::PathBuf {
        hash_table_job(
            &self.sandbox,
            &self.task(),
            self.name,
            endpoint,
            &self.bucket,
            self.name,
            files,
        )
    }

    fn assert_exactly_once(&mut self, rows: i64) {
        assert_exactly_once(&mut self.client, self.name, self.name, rows);
    }
}

fn warehouse_table(client: &mut postgres::Client, schema: &str, table: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.{table} (id int, h varchar(64))"
        ))
        .unwrap();
}

/// `dbhaul run --json` in the background, output captured.
fn spawn_run(sandbox: &Sandbox, job: &Path, endpoint: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_dbhaul"))
        .args(["run", job.to_str().unwrap(), "--json", "--work-dir"])
        .arg(sandbox.work_dir())
        .envs(s3::s3_env(endpoint))
        .env_remove("DBHAUL_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until the bookkeeping table of `schema` records a chunk.
fn wait_for_a_copied_chunk(client: &mut postgres::Client, schema: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("{schema}.dbhaul_loads")],
            )
            .unwrap()
            .get(0);
        if ready
            && count(
                client,
                &format!("SELECT count(*) FROM {schema}.dbhaul_loads"),
            ) > 0
        {
            return;
        }
        assert!(Instant::now() < deadline, "no chunk was ever copied");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every source row is in the warehouse exactly once.
fn assert_exactly_once(client: &mut postgres::Client, schema: &str, table: &str, rows: i64) {
    assert_eq!(
        count(client, &format!("SELECT count(*) FROM {schema}.{table}")),
        rows
    );
    assert_eq!(
        count(
            client,
            &format!("SELECT count(DISTINCT id) FROM {schema}.{table}")
        ),
        rows,
        "a row is doubled"
    );
    assert_eq!(
        pg_difference(
            client,
            &format!("{schema}.{table}"),
            &format!("src_pg.{table}")
        ),
        0
    );
}

#[test]
fn large_chunks_go_up_in_parts_and_come_back_identical() {
    let mut case = HashCase::new("wh_multipart", 200_000);
    let moto = s3::moto();
    let job = case.job(
        &moto.endpoint(),
        "chunk_mb = 64\ngzip_level = 1\nkeep_local = true",
    );
    run_with_s3(&case.sandbox, &job, &moto.endpoint()).assert_ok();
    let subtask = format!("{}/src_pg.{}", case.task(), case.name);
    let local = std::fs::read(
        case.sandbox
            .work_dir()
            .join(&subtask)
            .join("00000001.csv.gz"),
    )
    .unwrap();
    assert!(local.len() > 5 << 20, "the chunk must exceed one 5 MB part");
    let key = format!("exports/{subtask}/00000001.csv.gz");
    assert!(s3::get_object(&moto.endpoint(), &case.bucket, &key) == local);
    assert_eq!(
        s3::list_multipart_uploads(&moto.endpoint(), &case.bucket),
        0
    );
    case.assert_exactly_once(200_000);
}

#[test]
fn an_s3_outage_mid_upload_is_ridden_out_with_nothing_lost_or_doubled() {
    let mut case = HashCase::new("wh_outage", 300_000);
    let proxy = Proxy::start(s3::moto().port);
    let job = case.job(&proxy.endpoint(), "chunk_mb = 1\ngzip_level = 1");
    let child = spawn_run(&case.sandbox, &job, &proxy.endpoint());
    // Pull the plug once the first chunks are going up.
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.bytes_forwarded() < 2 << 20 {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.stop();
    std::thread::sleep(Duration::from_secs(3));
    proxy.resume();
    let output = child.wait_with_output().unwrap();
    let run = Run::from(output);
    let summary = run.assert_ok();
    assert!(
        run.stderr.contains("next in"),
        "the outage was seen and retried:\n{}",
        run.stderr
    );
    assert_eq!(summary["subtasks"][0]["copied_rows"], 300_000);
    case.assert_exactly_once(300_000);
}

#[test]
fn a_run_killed_during_copy_and_run_again_loads_every_row_once() {
    let mut case = HashCase::new("wh_killed", 400_000);
    let (table, schema) = (case.name, case.name);
    let moto = s3::moto();
    let job = case.job(&moto.endpoint(), "chunk_mb = 1\ngzip_level = 1");
    let sandbox = &case.sandbox;
    let client = &mut case.client;
    let mut child = spawn_run(sandbox, &job, &moto.endpoint());
    // Kill it (SIGKILL: no clean-up) as soon as the first chunk is in the warehouse.
    wait_for_a_copied_chunk(client, schema);
    child.kill().unwrap();
    child.wait().unwrap();
    let loaded_chunks = count(
        client,
        &format!("SELECT count(*) FROM {schema}.dbhaul_loads"),
    );
    let partial_rows = count(client, &format!("SELECT count(*) FROM {schema}.{table}"));
    assert!(
        partial_rows < 400_000,
        "the kill came too late to prove anything ({loaded_chunks} chunks were in)"
    );
    // Every committed chunk is whole: the rows present are what the bookkeeping says.
    assert_eq!(
        count(
            client,
            &format!("SELECT COALESCE(SUM(row_count), 0)::bigint FROM {schema}.dbhaul_loads")
        ),
        partial_rows
    );

    let summary = run_with_s3(sandbox, &job, &moto.endpoint()).assert_ok();
    assert_eq!(summary["subtasks"][0]["copied_rows"], 400_000);
    assert_exactly_once(client, schema, table, 400_000);
    assert_eq!(
        count(
            client,
            &format!("SELECT count(DISTINCT run) FROM {schema}.dbhaul_loads")
        ),
        1,
        "the first run's bookkeeping is replaced"
    );
    // And a third run over a complete load changes nothing either.
    run_with_s3(sandbox, &job, &moto.endpoint()).assert_ok();
    assert_exactly_once(client, schema, table, 400_000);
}

/// A bucket of the test's own on the shared moto.
fn moto_bucket(tag: &str) -> String {
    let bucket = s3::unique_bucket(tag);
    s3::create_bucket(&s3::moto().endpoint(), &bucket);
    bucket
}

/// A fresh warehouse schema holding the table `t` the small job loads.
fn small_warehouse(schema: &str) -> postgres::Client {
    let mut client = fresh_schema(schema);
    client
        .batch_execute(&format!("CREATE TABLE {schema}.t (id bigint, v text)"))
        .unwrap();
    client
}

/// A small SQLite job into schema `schema`, with `target` and `warehouse` overrides.
fn small_job(sandbox: &Sandbox, task: &str, stages: &str) -> std::path::PathBuf {
    let db = sandbox.path("source.db");
    sqlite(
        &db,
        "DROP TABLE IF EXISTS t; CREATE TABLE t (id integer primary key, v text); \
         INSERT INTO t VALUES (1, 'a'), (2, NULL);",
    );
    let text = job_text(
        task,
        &sqlite_odbc(&db),
        &format!("[[tables]]\nname = \"t\"\n{stages}"),
        copy_mode(),
    );
    sandbox.job(task, &text)
}

/// Nothing was extracted: no chunk in the working folder.
fn assert_no_chunks(sandbox: &Sandbox) {
    let chunks = walk(&sandbox.work_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".csv"))
        .count();
    assert_eq!(
        chunks, 0,
        "a chunk was written although the run was refused"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(walk(&path));
        } else {
            all.push(path);
        }
    }
    all
}

#[test]
fn a_missing_bucket_is_named_before_any_data_moves() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let schema = "wh_nobucket";
    let mut client = small_warehouse(schema);
    let job = small_job(
        &sandbox,
        "no-bucket",
        &stages_toml(&moto.endpoint(), "no-such-bucket-here", schema, ""),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint())
        .assert_code(2)
        .assert_stderr("bucket `no-such-bucket-here` at ")
        .assert_stderr("does not exist; create it, or fix target.url");
    assert_no_chunks(&sandbox);
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {schema}.t")),
        0
    );
}

#[test]
fn an_unreachable_endpoint_is_named_with_the_fix() {
    let sandbox = Sandbox::new();
    let schema = "wh_unreachable";
    fresh_schema(schema);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let job = small_job(
        &sandbox,
        "unreachable",
        &stages_with(&endpoint, "bucket", schema, "attempts = 2", ""),
    );
    run_with_s3(&sandbox, &job, &endpoint)
        .assert_code(2)
        .assert_stderr(&format!("cannot reach {endpoint}"))
        .assert_stderr("check target.endpoint and the network");
    assert_no_chunks(&sandbox);
}

#[test]
fn refused_credentials_are_named_with_the_fix() {
    let sandbox = Sandbox::new();
    // A moto of its own that checks credentials: ours are unknown to it.
    let moto = s3::start_moto_with_auth();
    let schema = "wh_badkeys";
    fresh_schema(schema);
    let job = small_job(
        &sandbox,
        "bad-keys",
        &stages_toml(&moto.endpoint(), "any-bucket", schema, ""),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint())
        .assert_code(2)
        .assert_stderr("refused the credentials (InvalidAccessKeyId")
        .assert_stderr("AWS_ACCESS_KEY_ID");
    assert_no_chunks(&sandbox);
}

#[test]
fn a_missing_warehouse_table_is_named_with_the_fix() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("notable");
    let schema = "wh_notable";
    fresh_schema(schema);
    let job = small_job(
        &sandbox,
        "no-table",
        &stages_toml(&moto.endpoint(), &bucket, schema, ""),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint())
        .assert_code(2)
        .assert_stderr(&format!("table {schema}.t does not exist"))
        .assert_stderr("set warehouse.create_tables = true");
    assert_no_chunks(&sandbox);
    assert!(s3::list_keys(&moto.endpoint(), &bucket, "").is_empty());
}

/// The warehouse table lacks a column the source has: the run is refused before any data
/// moves, naming the column and what the table has; nothing is extracted, uploaded or
/// loaded.
#[test]
fn a_warehouse_table_lacking_a_source_column_is_refused_naming_it_before_any_data_moves() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("nocolumn");
    let schema = "wh_nocolumn";
    let mut client = fresh_schema(schema);
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.t (id bigint, note text, total bigint GENERATED ALWAYS AS \
             (id * 2) STORED)"
        ))
        .unwrap();
    let job = small_job(
        &sandbox,
        "no-column",
        &stages_toml(&moto.endpoint(), &bucket, schema, ""),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint())
        .assert_code(2)
        .assert_stderr(&format!(
            "table {schema}.t has no column v (it has id, note, total); add it"
        ));
    assert_no_chunks(&sandbox);
    assert!(s3::list_keys(&moto.endpoint(), &bucket, "").is_empty());
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {schema}.t")),
        0
    );
    let bookkeeping = count(
        &mut client,
        &format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}' \
             AND table_name = 'dbhaul_loads'"
        ),
    );
    assert_eq!(
        bookkeeping, 0,
        "the refused run created the bookkeeping table"
    );
}

#[test]
fn a_wrong_warehouse_database_is_named_with_the_fix() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("nodb");
    let stages = stages_toml(&moto.endpoint(), &bucket, "public", "")
        .replace(&format!("5432/{TEST_DB}"), "5432/no_such_database");
    let job = small_job(&sandbox, "no-db", &stages);
    run_with_s3(&sandbox, &job, &moto.endpoint())
        .assert_code(2)
        .assert_stderr("database \"no_such_database\" does not exist")
        .assert_stderr("fix the database name in warehouse.url");
    assert_no_chunks(&sandbox);
}

#[test]
fn upload_modes_need_their_sections() {
    let sandbox = Sandbox::new();
    let db = sandbox.path("source.db");
    sqlite(&db, "CREATE TABLE t (id integer);");
    for (mode, stages, expected) in [
        ("extract-upload", "", "uploads, but there is no [target]"),
        (
            "extract-upload-copy",
            "[target]\nurl = \"s3://bucket\"\n",
            "copies, but there is no [warehouse]",
        ),
        (
            "extract-upload",
            "[target]\nurl = \"bucket/prefix\"\n",
            "target.url = \"bucket/prefix\": must start with s3://",
        ),
        (
            "extract-upload-copy",
            "[target]\nurl = \"s3://bucket\"\n[warehouse]\nkind = \"redshift\"\nurl = \"postgresql://u@h:5439/dev\"\n",
            "needs iam_role",
        ),
    ] {
        let text = job_text(
            "sections",
            &sqlite_odbc(&db),
            &format!("[[tables]]\nname = \"t\"\n{stages}"),
            &format!("mode = \"{mode}\""),
        );
        let job = sandbox.job("sections", &text);
        sandbox.run_job(&job).assert_code(2).assert_stderr(expected);
    }
}

#[test]
fn the_test_task_prints_one_line_per_check_with_the_fix() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("testtask");
    let schema = "wh_testtask";
    let mut client = fresh_schema(schema);
    let env = s3::s3_env(&moto.endpoint());
    let test = |job: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_dbhaul"))
            .args(["run", "--test", job.to_str().unwrap(), "--work-dir"])
            .arg(sandbox.work_dir())
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    // The warehouse table is missing: that check fails, with the fix; the others pass.
    let job = small_job(
        &sandbox,
        "tested",
        &stages_toml(&moto.endpoint(), &bucket, schema, ""),
    );
    let (code, out) = test(&job);
    assert_eq!(code, 1, "{out}");
    for line in [
        "ok   source",
        "ok   tables           1 tables readable, 1 subtasks",
        "ok   working folder",
        &format!(
            "ok   bucket           bucket `{bucket}` at {}: write, read back, delete",
            moto.endpoint()
        ),
        &format!(
            "FAIL warehouse        warehouse postgresql://postgres@{}:5432/{TEST_DB}: table {schema}.t does not exist",
            pg_host()
        ),
        "1 of 5 checks failed",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // The test changed nothing: no bookkeeping table, no probe object left, no chunk.
    let tables = count(
        &mut client,
        &format!("SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}'"),
    );
    assert_eq!(tables, 0);
    assert!(s3::list_keys(&moto.endpoint(), &bucket, "").is_empty());
    assert_no_chunks(&sandbox);

    client
        .batch_execute(&format!("CREATE TABLE {schema}.t (id bigint, v text)"))
        .unwrap();
    let (code, out) = test(&job);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("all checks passed"), "{out}");
}

/// A self-signed certificate for 127.0.0.1, as an S3-compatible device has.
fn self_signed(sandbox: &Sandbox) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (sandbox.path("device.pem"), sandbox.path("device.key"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg("/CN=device")
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    (cert, key)
}

#[test]
fn a_device_with_its_own_certificate_is_trusted_through_ca_bundle() {
    let sandbox = Sandbox::new();
    let (cert, key) = self_signed(&sandbox);
    let moto = s3::start_moto_tls(&cert, &key);
    let endpoint = format!("https://127.0.0.1:{}", moto.port);
    let table = "wh_device";
    pg_hash_table(table, 1000);
    let schema = "wh_device";
    let mut client = fresh_schema(schema);
    warehouse_table(&mut client, schema, table);
    let job_with = |name: &str, target_extra: &str| {
        pg_copy_job(
            &sandbox,
            name,
            &format!("[[tables]]\nname = \"src_pg.{table}\"\n"),
            &stages_with(&endpoint, "device", schema, target_extra, ""),
        )
    };
    // Without the device's certificate, TLS fails, and the error says so.
    let untrusted = job_with("untrusted", "attempts = 1");
    run_with_s3(&sandbox, &untrusted, &endpoint)
        .assert_code(2)
        .assert_stderr(&format!("cannot reach {endpoint}"))
        .assert_stderr("certificate");
    // With it, the bucket is created through a real TLS session and the run goes through.
    let env = s3::s3_env(&endpoint);
    let status = Command::new("aws")
        .args(["--endpoint-url", &endpoint, "--ca-bundle"])
        .arg(&cert)
        .args(["s3", "mb", "s3://device"])
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .status()
        .expect("the aws CLI (appliance/setup.sh installs it)");
    assert!(status.success());
    let trusted = job_with("trusted", &format!("ca_bundle = \"{}\"", cert.display()));
    run_with_s3(&sandbox, &trusted, &endpoint).assert_ok();
    assert_exactly_once(&mut client, schema, table, 1000);
}

#[test]
fn a_named_profile_supplies_the_credentials() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("profile");
    let schema = "wh_profile";
    let mut client = small_warehouse(schema);
    let credentials = sandbox.path("credentials");
    std::fs::write(
        &credentials,
        "[SnowballEdge]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let job = small_job(
        &sandbox,
        "profile",
        &stages_with(
            &moto.endpoint(),
            &bucket,
            schema,
            "profile = \"SnowballEdge\"",
            "",
        ),
    );
    // No keys in the environment: only the profile can provide them.
    let mut env: Vec<(String, String)> = s3::s3_env(&moto.endpoint())
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS_KEY") && !k.starts_with("AWS_SECRET"))
        .collect();
    env.retain(|(k, _)| k != "AWS_SHARED_CREDENTIALS_FILE");
    env.push((
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        credentials.display().to_string(),
    ));
    let run = |job: &Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_dbhaul"))
            .args(["run", job.to_str().unwrap(), "--json", "--work-dir"])
            .arg(sandbox.work_dir())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        Run::from(output)
    };
    run(&job).assert_ok();
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {schema}.t")),
        2
    );

    let wrong = small_job(
        &sandbox,
        "no-profile",
        &stages_with(
            &moto.endpoint(),
            &bucket,
            schema,
            "profile = \"Nowhere\"",
            "",
        ),
    );
    run(&wrong)
        .assert_code(2)
        .assert_stderr("no AWS credentials")
        .assert_stderr("target.profile");
}

#[test]
fn copied_files_are_cleaned_up_as_configured() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("cleanup");
    let schema = "wh_cleanup";
    let mut client = small_warehouse(schema);
    // Defaults: local chunks go once uploaded (the manifest stays); objects stay.
    let job = small_job(
        &sandbox,
        "cleanup",
        &stages_toml(&moto.endpoint(), &bucket, schema, ""),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    let dir = sandbox.work_dir().join("cleanup/main.t");
    let local: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(local, ["manifest.json"]);
    assert_eq!(s3::list_keys(&moto.endpoint(), &bucket, "").len(), 2);
    // keep_uploaded = false: the objects go once copied and checked.
    let job = small_job(
        &sandbox,
        "cleanup",
        &format!(
            "[files]\nkeep_uploaded = false\n{}",
            stages_toml(&moto.endpoint(), &bucket, schema, "")
        ),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    assert!(s3::list_keys(&moto.endpoint(), &bucket, "").is_empty());
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {schema}.t")),
        2
    );
}

#[test]
fn a_row_count_mismatch_fails_the_subtask_with_both_numbers() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("mismatch");
    let table = "wh_mismatch";
    pg_hash_table(table, 100);
    let schema = "wh_mismatch";
    let mut client = fresh_schema(schema);
    warehouse_table(&mut client, schema, table);
    // The warehouse silently drops a row (a trigger): COPY reports 99 for 100.
    client
        .batch_execute(&format!(
            "CREATE FUNCTION {schema}.drop_one() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN IF NEW.id = 50 THEN RETURN NULL; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER drop_one BEFORE INSERT ON {schema}.{table} \
             FOR EACH ROW EXECUTE FUNCTION {schema}.drop_one()"
        ))
        .unwrap();
    let job_for = |name: &str, extra: &str| {
        pg_copy_job(
            &sandbox,
            name,
            &format!("[[tables]]\nname = \"src_pg.{table}\"\n"),
            &stages_toml(&moto.endpoint(), &bucket, schema, extra),
        )
    };
    let job = job_for("mismatch", "");
    run_with_s3(&sandbox, &job, &moto.endpoint())
        .assert_code(1)
        .assert_stderr("loaded 99 rows, the manifest says 100; nothing of it was kept");
    assert_eq!(
        count(
            &mut client,
            &format!("SELECT count(*) FROM {schema}.{table}")
        ),
        0
    );

    // count_source: the source gains a row while the copy runs (a trigger on the
    // warehouse table inserts it): extracted 100, source now 101.
    client
        .batch_execute(&format!(
            "DROP TRIGGER drop_one ON {schema}.{table}; \
             CREATE FUNCTION {schema}.grow_source() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN INSERT INTO src_pg.{table} VALUES (1000001, 'late'); RETURN NULL; END $$; \
             CREATE TRIGGER grow_source AFTER INSERT ON {schema}.{table} \
             FOR EACH STATEMENT EXECUTE FUNCTION {schema}.grow_source()"
        ))
        .unwrap();
    let job = job_for("counted", "count_source = true");
    run_with_s3(&sandbox, &job, &moto.endpoint())
        .assert_code(1)
        .assert_stderr("the source now has 101 rows of src_pg.wh_mismatch, but 100 were extracted");
}

#[test]
fn ctrl_c_during_copy_stops_every_stage_and_keeps_only_whole_chunks() {
    let mut case = HashCase::new("wh_sigint", 400_000);
    let (table, schema) = (case.name, case.name);
    let moto = s3::moto();
    let job = case.job(&moto.endpoint(), "chunk_mb = 1\ngzip_level = 1");
    let sandbox = &case.sandbox;
    let client = &mut case.client;
    let child = spawn_run(sandbox, &job, &moto.endpoint());
    wait_for_a_copied_chunk(client, schema);
    // The stages run at once, and the credits hold extraction back: when the first chunk is
    // in the warehouse, the table (about 20 chunks) is still being read.
    let manifest = sandbox
        .work_dir()
        .join(format!("wh-sigint/src_pg.{table}/manifest.json"));
    assert!(
        !manifest.exists(),
        "extraction had finished before the first chunk was copied"
    );
    let stopped = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let run = Run::from(child.wait_with_output().unwrap());
    run.assert_code(1).assert_stderr("interrupted");
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "stopping took {:?}",
        stopped.elapsed()
    );
    let rows = count(client, &format!("SELECT count(*) FROM {schema}.{table}"));
    assert_eq!(
        count(
            client,
            &format!("SELECT COALESCE(SUM(row_count), 0)::bigint FROM {schema}.dbhaul_loads")
        ),
        rows,
        "only whole, recorded chunks are in the warehouse"
    );
    assert!(
        rows < 400_000,
        "the interrupt came too late to prove anything"
    );
}

#[test]
fn custom_endpoints_get_no_sdk_checksums_unless_asked() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("checksum");
    let schema = "wh_checksum";
    small_warehouse(schema);
    let upload = |task: &str, target_extra: &str| {
        let proxy = Proxy::start(moto.port);
        let job = small_job(
            &sandbox,
            task,
            &stages_with(&proxy.endpoint(), &bucket, schema, target_extra, ""),
        );
        run_with_s3(&sandbox, &job, &proxy.endpoint()).assert_ok();
        proxy.captured_text().to_ascii_lowercase()
    };
    // The default for a custom endpoint: plain bodies, no CRC32 header or trailer, which
    // many S3-compatible servers would store as part of the object.
    let sent = upload("checksum-default", "");
    assert!(sent.contains("put /"), "the uploads went through the proxy");
    assert!(!sent.contains("x-amz-checksum-crc32"), "{sent}");
    assert!(!sent.contains("aws-chunked"));
    // Asked for: the SDK's checksums are sent.
    let sent = upload("checksum-asked", "checksum = \"when_supported\"");
    assert!(
        sent.contains("x-amz-checksum-crc32") || sent.contains("x-amz-trailer"),
        "no checksum in the requests"
    );
}

#[test]
fn a_table_emptied_at_the_source_is_emptied_in_the_warehouse_on_the_next_run() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("emptied");
    let schema = "wh_emptied";
    let mut client = small_warehouse(schema);
    let job = small_job(
        &sandbox,
        "emptied",
        &stages_toml(&moto.endpoint(), &bucket, schema, ""),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {schema}.t")),
        2
    );
    // No rows means no chunk to load; the earlier run's rows must go all the same.
    sqlite(&sandbox.path("source.db"), "DELETE FROM t;");
    let summary = run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    assert_eq!(summary["subtasks"][0]["copied_rows"], 0);
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {schema}.t")),
        0
    );
    assert_eq!(
        count(
            &mut client,
            &format!("SELECT count(*) FROM {schema}.dbhaul_loads")
        ),
        0,
        "the earlier run's bookkeeping is gone too"
    );
}

/// Count and an order-independent checksum of every row of `(a, b, h)`, as PostgreSQL and
/// MariaDB compute them alike: the sum of the first 60 bits of each row's MD5.
fn pg_checksum(table: &str) -> String {
    let row = pg()
        .query_one(
            &format!(
                "SELECT count(*)::text || ' ' || sum(('x' || substr(md5(concat_ws('|', a, b, h)), \
                 1, 15))::bit(60)::bigint)::text FROM {table}"
            ),
            &[],
        )
        .unwrap();
    row.get(0)
}

fn maria_checksum(table: &str) -> String {
    let out = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-u", "root", "-N", "-B", "-e"])
        .arg(format!(
            "SELECT CONCAT(COUNT(*), ' ', SUM(CAST(CONV(SUBSTR(MD5(CONCAT_WS('|', a, b, h)), \
             1, 15), 16, 10) AS UNSIGNED))) FROM {table}"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_run_killed_mid_table_and_run_again_goes_on_after_its_last_durable_chunk() {
    // MariaDB, read in key ranges (so in key order from the first run), composite key.
    let (table, rows) = ("resume_maria", 300_000);
    maria(&format!(
        "DROP TABLE IF EXISTS {TEST_DB}.{table};
         CREATE TABLE {TEST_DB}.{table} (a INT NOT NULL, b VARCHAR(16) NOT NULL,
             h VARCHAR(80), PRIMARY KEY (a, b));
         INSERT INTO {TEST_DB}.{table} SELECT seq DIV 3, CONCAT('k', seq % 3, '''x'),
             CONCAT(MD5(seq), MD5(seq * 7)) FROM {TEST_DB}.seq_1_to_{rows};"
    ));
    let schema = "wh_resume_maria";
    fresh_schema(schema)
        .batch_execute(&format!(
            "CREATE TABLE {schema}.{table} (a integer, b varchar(16), h varchar(80))"
        ))
        .unwrap();
    let bucket = s3::unique_bucket("resumemaria");
    s3::create_bucket(&s3::moto().endpoint(), &bucket);
    let proxy = Proxy::start(s3::moto().port);
    let sandbox = Sandbox::new();
    let job = sandbox.job(
        "resume-maria",
        &job_text(
            "resume-maria",
            &maria_odbc(),
            &format!(
                "[[tables]]\nname = \"{TEST_DB}.{table}\"\n[files]\nchunk_mb = 1\n{}",
                stages_with(&proxy.endpoint(), &bucket, schema, "attempts = 30", "")
            ),
            copy_mode(),
        ),
    );
    let mut child = spawn_run(&sandbox, &job, &proxy.endpoint());
    // S3 goes away once uploads started: the pipeline fills up and the extract waits, with
    // several chunks sealed and checkpointed; then the run is SIGKILLed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.bytes_forwarded() < 1 << 20 {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.stop();
    let checkpoint = sandbox
        .work_dir()
        .join(format!("resume-maria/{TEST_DB}.{table}/checkpoint.json"));
    let durable = loop {
        let chunks = std::fs::read(&checkpoint)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|c| c["chunks"].as_array().unwrap().clone())
            .unwrap_or_default();
        if chunks.len() >= 3 {
            break chunks
                .iter()
                .map(|c| c["rows"].as_u64().unwrap())
                .sum::<u64>();
        }
        assert!(Instant::now() < deadline, "no checkpoint of 3 chunks");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    proxy.resume();

    let env = s3::s3_env(&proxy.endpoint());
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("DBHAUL_LOG", "dbhaul=info"));
    let run = sandbox.run_job_env(&job, &sandbox.work_dir(), &env);
    let summary = run.assert_ok();
    assert!(
        run.stderr.contains("resumes after chunk"),
        "the second run resumed:\n{}",
        run.stderr
    );
    assert_eq!(summary["subtasks"][0]["copied_rows"], rows);
    // It read only what was not durable at the kill.
    eprintln!("{durable} rows durable at the kill");
    assert_eq!(
        summary["subtasks"][0]["resumed_rows"], durable,
        "{summary:#}"
    );
    assert_eq!(summary["subtasks"][0]["rows"], rows, "{summary:#}");
    assert_eq!(
        pg_checksum(&format!("{schema}.{table}")),
        maria_checksum(&format!("{TEST_DB}.{table}")),
        "the warehouse holds each source row once"
    );
    assert_eq!(
        count(
            &mut pg(),
            &format!("SELECT count(DISTINCT run) FROM {schema}.dbhaul_loads")
        ),
        1,
        "one run, resumed"
    );
}

/// `target.server_side_encryption = "aws:kms"` with a key id, through `target.proxy`: the
/// proxy carried every request in proxy form (absolute URLs) with the encryption headers,
/// S3 says each object is encrypted with that key, the rows reach the warehouse; with
/// `aes256` S3 says SSE-S3. With the proxy gone, the run is refused naming the proxy, and
/// nothing is extracted.
#[test]
fn objects_go_up_encrypted_with_kms_through_the_proxy_and_a_dead_proxy_is_named() {
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/dbhaul-test-key";
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("sse");
    let schema = "wh_sse";
    let mut client = small_warehouse(schema);
    let moto_port: u16 = moto.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = s3::Proxy::start(moto_port);
    let target = |attempts: u32| {
        format!(
            "server_side_encryption = \"aws:kms\"\nkms_key_id = \"{KEY}\"\nproxy = \"{}\"\n\
             attempts = {attempts}",
            proxy.endpoint()
        )
    };
    let job = small_job(
        &sandbox,
        "sse",
        &stages_with(&moto.endpoint(), &bucket, schema, &target(3), ""),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {schema}.t")),
        2
    );

    let captured = proxy.captured_text();
    let chunk_put = format!(
        "PUT {}/{bucket}/exports/sse/main.t/00000001.csv.gz",
        moto.endpoint()
    );
    assert!(
        captured.contains(&chunk_put),
        "no proxy-form {chunk_put}:\n{captured}"
    );
    let lower = captured.to_ascii_lowercase();
    assert!(
        lower.contains("x-amz-server-side-encryption: aws:kms"),
        "{captured}"
    );
    assert!(
        lower.contains(&format!(
            "x-amz-server-side-encryption-aws-kms-key-id: {}",
            KEY.to_ascii_lowercase()
        )),
        "{captured}"
    );
    let keys = s3::list_keys(&moto.endpoint(), &bucket, "exports/sse/");
    assert!(keys.len() >= 2, "{keys:?}");
    for key in &keys {
        let head = s3::head_object(&moto.endpoint(), &bucket, key);
        assert_eq!(
            head.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms),
            "{key}"
        );
        assert_eq!(head.ssekms_key_id(), Some(KEY), "{key}");
    }

    // SSE-S3, without a proxy.
    let sse_s3 = Sandbox::new();
    let job = small_job(
        &sse_s3,
        "sse-s3",
        &stages_with(
            &moto.endpoint(),
            &bucket,
            schema,
            "server_side_encryption = \"aes256\"",
            "",
        ),
    );
    run_with_s3(&sse_s3, &job, &moto.endpoint()).assert_ok();
    let key = "exports/sse-s3/main.t/00000001.csv.gz";
    let head = s3::head_object(&moto.endpoint(), &bucket, key);
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256),
        "{key}"
    );

    proxy.stop();
    let sandbox = Sandbox::new();
    let job = small_job(
        &sandbox,
        "sse-no-proxy",
        &stages_with(&moto.endpoint(), &bucket, schema, &target(1), ""),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint())
        .assert_code(2)
        .assert_stderr(&format!("through the proxy {}", proxy.endpoint()))
        .assert_stderr("check that the proxy runs");
    assert_no_chunks(&sandbox);
}

/// `files.encryption_key_env`: every chunk, kept locally and in S3, is encrypted (the same
/// bytes in both, no gzip to be read), the copy stage decrypts it into the warehouse, and
/// `dbhaul decrypt` gives back the gzip of the CSV; with another key it refuses and leaves
/// no output.
#[test]
fn encrypted_chunks_reach_the_warehouse_and_decrypt_back_only_with_their_key() {
    const KEY: &str = "5f3c9a0e7b21d4c68e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abc";
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("enc");
    let schema = "wh_enc";
    let mut client = small_warehouse(schema);
    let job = small_job(
        &sandbox,
        "enc",
        &format!(
            "[files]\nencryption_key_env = \"CHUNK_KEY\"\nkeep_local = true\n{}",
            stages_toml(&moto.endpoint(), &bucket, schema, "")
        ),
    );
    let mut env = s3::s3_env(&moto.endpoint());
    env.push(("CHUNK_KEY".into(), KEY.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sandbox
        .run_job_env(&job, &sandbox.work_dir(), &env)
        .assert_ok();
    let rows: Vec<(i64, Option<String>)> = client
        .query(&format!("SELECT id, v FROM {schema}.t ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [(1, Some("a".to_string())), (2, None)]);

    let dir = sandbox.work_dir().join("enc").join("main.t");
    let local = std::fs::read(dir.join("00000001.csv.gz")).unwrap();
    assert!(
        local.starts_with(b"DBHAULE1"),
        "not encrypted: {:?}",
        &local[..16]
    );
    let uploaded = s3::get_object(
        &moto.endpoint(),
        &bucket,
        "exports/enc/main.t/00000001.csv.gz",
    );
    assert_eq!(uploaded, local, "the object is the encrypted file");
    let manifest = manifest(&dir);
    assert!(
        manifest["format"]["encryption"]
            .as_str()
            .unwrap()
            .starts_with("aes-256-gcm"),
        "{manifest}"
    );

    let plain = sandbox.path("plain.csv.gz");
    let decrypt = |key: &str| {
        Command::new(env!("CARGO_BIN_EXE_dbhaul"))
            .args(["decrypt", "--key-env", "CHUNK_KEY", "-o"])
            .arg(&plain)
            .arg(dir.join("00000001.csv.gz"))
            .env("CHUNK_KEY", key)
            .output()
            .unwrap()
    };
    let out = decrypt(KEY);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut csv = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&plain).unwrap()),
        &mut csv,
    )
    .unwrap();
    // The SQLite TEXT column of short values is read in blocks: quoted only where needed.
    assert_eq!(csv, "1,a\n2,\n");

    let out = decrypt(&"00".repeat(32));
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("another files.encryption_key_env"), "{said}");
    assert!(!plain.exists(), "no unchecked output is left");
}
