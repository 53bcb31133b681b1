//! Rows through extract, upload and copy into the warehouse equal the source's, byte for
//! byte, NULL and "" apart, from every source, in every compression and CSV format, into the
//! tables users have (made by dbhaul, by `pg_dump -s`, emptied at the source).

use super::*;

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
