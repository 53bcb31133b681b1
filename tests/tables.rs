//! `dbhaul tables`: what a source holds, as a user would ask before writing a job.

use crate::common::daemons::{stderr, stdout};
use crate::common::*;

#[test]
fn tables_lists_tables_row_estimates_columns_and_lobs() {
    let sandbox = Sandbox::new();
    let db = sandbox.path("shop.db");
    sqlite(
        &db,
        "CREATE TABLE orders (id integer primary key, customer varchar(40), note text, total numeric);\
         INSERT INTO orders VALUES (1, 'a', 'n', 1.5), (2, 'b', NULL, 2);\
         CREATE TABLE empty_one (k integer);",
    );
    let output = dbhaul(&["tables", "--source", &sqlite_odbc(&db)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("main.orders  (table, ~2 rows)"), "{text}");
    assert!(text.contains("main.empty_one  (table, ~0 rows)"), "{text}");
    let note = text
        .lines()
        .find(|l| l.trim_start().starts_with("note"))
        .unwrap();
    assert!(note.ends_with("LOB"), "{note}");
    let id = text
        .lines()
        .find(|l| l.trim_start().starts_with("id "))
        .unwrap();
    assert!(id.ends_with("key"), "{id}");

    let output = dbhaul(&["tables", "--source", &sqlite_odbc(&db), "--json"]);
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listing[1]["table"], "main.orders");
    assert_eq!(listing[1]["columns"][1]["source_type"], "varchar(40)");
}

#[test]
fn tables_reads_postgres_and_mariadb_catalogs() {
    let mut client = pg();
    client
        .batch_execute("DROP TABLE IF EXISTS cat_pg.items; CREATE TABLE cat_pg.items (id int primary key, label varchar(10), body text); ANALYZE cat_pg.items")
        .unwrap();
    let output = dbhaul(&["tables", "--source", &pg_odbc(), "--schema", "cat_pg"]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("cat_pg.items  (table, "), "{text}");
    assert!(text.contains("varchar(10)"), "{text}");

    maria(
        "CREATE TABLE IF NOT EXISTS dbhaul_test.cat_items (id int primary key, label varchar(10));",
    );
    let output = dbhaul(&["tables", "--source", &maria_odbc(), "--schema", TEST_DB]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("dbhaul_test.cat_items  (table, ~"), "{text}");
}

/// Key ranges are read in key order; a key listed in table order would make every range
/// query sort the whole table (MariaDB Connector/ODBC reports KEY_SEQ wrongly).
#[test]
fn composite_primary_keys_are_listed_in_key_order() {
    maria(
        "DROP TABLE IF EXISTS dbhaul_test.cat_keys; \
         CREATE TABLE dbhaul_test.cat_keys (a int, b int, c int, PRIMARY KEY (c, a));",
    );
    assert_eq!(
        primary_key_of(&maria_odbc(), TEST_DB, "dbhaul_test.cat_keys"),
        ["c", "a"]
    );

    let mut client = pg();
    client
        .batch_execute("DROP TABLE IF EXISTS cat_pg.keys; CREATE TABLE cat_pg.keys (a int, b int, c int, PRIMARY KEY (c, a))")
        .unwrap();
    assert_eq!(
        primary_key_of(&pg_odbc(), "cat_pg", "cat_pg.keys"),
        ["c", "a"]
    );
}

/// The primary key `dbhaul tables --json` reports for one table.
fn primary_key_of(source: &str, schema: &str, table: &str) -> Vec<String> {
    let output = dbhaul(&["tables", "--source", source, "--schema", schema, "--json"]);
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let entry = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap();
    entry["primary_key"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// `tasks plan`: the tables a pattern matches, sized from PostgreSQL's catalog, grouped into
/// tasks of at most --max-gb with range partitions on the key of the large one; the job
/// files it writes run, and together extract every row of every table once. `run --plan`
/// keeps the job's other settings. Bad sizes and a pattern that matches nothing are refused.
#[test]
fn tasks_plan_groups_tables_by_size_and_its_job_files_extract_every_row_once() {
    let sandbox = Sandbox::new();
    let mut client = pg();
    client
        .batch_execute(
            "DROP SCHEMA IF EXISTS plan_src CASCADE; CREATE SCHEMA plan_src;
             CREATE TABLE plan_src.big (id bigint PRIMARY KEY, v text);
             INSERT INTO plan_src.big SELECT g, repeat('x', 100) FROM generate_series(1, 40000) g;
             CREATE TABLE plan_src.keyed_by_text (code text PRIMARY KEY, v text);
             INSERT INTO plan_src.keyed_by_text SELECT 'c' || g, repeat('y', 100) FROM generate_series(1, 20000) g;
             CREATE TABLE plan_src.small_a (id int PRIMARY KEY);
             INSERT INTO plan_src.small_a SELECT generate_series(1, 500);
             CREATE TABLE plan_src.small_b (id int PRIMARY KEY);
             INSERT INTO plan_src.small_b SELECT generate_series(1, 300);
             ANALYZE plan_src.big, plan_src.keyed_by_text, plan_src.small_a, plan_src.small_b;",
        )
        .unwrap();
    let out = sandbox.path("plans");
    let output = dbhaul(&[
        "tasks",
        "plan",
        "--source",
        &pg_odbc(),
        "--tables",
        "plan_src.*",
        "--max-gb",
        "0.003",
        "--partition-gb",
        "0.002",
        "--name",
        "mig",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let tasks = plan["tasks"].as_array().unwrap();
    let mut seen: Vec<String> = Vec::new();
    for task in tasks {
        let tables = task["tables"].as_array().unwrap();
        let bytes = task["bytes"].as_u64().unwrap();
        assert!(bytes <= 3_000_000 || tables.len() == 1, "{task}");
        seen.extend(
            tables
                .iter()
                .map(|t| t["table"].as_str().unwrap().to_string()),
        );
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "plan_src.big",
            "plan_src.keyed_by_text",
            "plan_src.small_a",
            "plan_src.small_b"
        ],
        "{plan}"
    );
    let find = |name: &str| {
        tasks
            .iter()
            .flat_map(|t| t["tables"].as_array().unwrap())
            .find(|t| t["table"] == name)
            .unwrap()
            .clone()
    };
    let big = find("plan_src.big");
    assert_eq!(big["partition"]["column"], "id", "{big}");
    assert!(big["partition"]["ranges"].as_u64().unwrap() >= 2, "{big}");
    assert_eq!(big["rows"], 40000);
    assert!(
        find("plan_src.keyed_by_text")["note"]
            .as_str()
            .unwrap()
            .contains("partition it by hand"),
        "{plan}"
    );

    // Every file runs; together they extract every row once.
    let written = plan["written"].as_array().unwrap();
    assert_eq!(written.len(), tasks.len());
    let mut rows = 0;
    for file in written {
        let run = sandbox.run_job(std::path::Path::new(file.as_str().unwrap()));
        rows += run.assert_ok()["rows"].as_u64().unwrap();
    }
    assert_eq!(rows, 40000 + 20000 + 500 + 300);

    // run --plan: the job's own settings and filters go into every proposed file.
    let job = sandbox.job(
        "mine",
        &job_text(
            "mine",
            &pg_odbc(),
            "[[tables]]\nname = \"plan_src.small%\"\nwhere = \"id > 100\"\n\
             [[tables]]\nname = \"plan_src.big\"\n[files]\ncompression = \"zstd\"\n",
            "",
        ),
    );
    let out = sandbox.path("mine-plans");
    let output = dbhaul(&[
        "run",
        job.to_str().unwrap(),
        "--plan",
        "--max-gb",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("task mine-01"), "{text}");
    let file = std::fs::read_to_string(out.join("mine-01.toml")).unwrap();
    assert!(file.contains("compression = \"zstd\""), "{file}");
    assert!(file.contains("name = \"plan_src.small_a\""), "{file}");
    assert_eq!(file.matches("where = \"id > 100\"").count(), 2, "{file}");
    let run = sandbox.run_job(&out.join("mine-01.toml"));
    assert_eq!(run.assert_ok()["rows"], 40000 + 400 + 200);

    let source = pg_odbc();
    for (args, expected) in [
        (
            vec!["--max-gb", "0"],
            "--max-gb = 0: give a size in GB above 0",
        ),
        (
            vec!["--tables", "plan_src.nothing%"],
            "tables `plan_src.nothing%` matches no table",
        ),
    ] {
        let mut all = vec!["tasks", "plan", "--source", source.as_str()];
        all.extend(args);
        let output = dbhaul(&all);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    }
}

/// The size estimates `tasks plan` reads exist for MariaDB (`DATA_LENGTH`) and SQLite
/// (`dbstat`) too, and a large table there gets its key ranges proposed.
#[test]
fn tasks_plan_sizes_mariadb_and_sqlite_tables_from_their_catalogs() {
    let sandbox = Sandbox::new();
    maria(
        &format!("USE {TEST_DB}; DROP TABLE IF EXISTS plan_sized; CREATE TABLE plan_sized (id int PRIMARY KEY, v varchar(200));
         INSERT INTO plan_sized SELECT seq, REPEAT('z', 150) FROM seq_1_to_20000;
         ANALYZE TABLE plan_sized;"),
    );
    let db = sandbox.path("sized.db");
    sqlite(
        &db,
        "CREATE TABLE sized (id integer PRIMARY KEY, v text);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
         INSERT INTO sized SELECT i, printf('%.150c', 'z') FROM n;",
    );
    for (source, table) in [
        (maria_odbc(), format!("{TEST_DB}.plan_sized")),
        (sqlite_odbc(&db), "main.sized".to_string()),
    ] {
        let output = dbhaul(&[
            "tasks",
            "plan",
            "--source",
            &source,
            "--tables",
            &table,
            "--partition-gb",
            "0.001",
            "--json",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let sized = &plan["tasks"][0]["tables"][0];
        assert_eq!(sized["table"], table.as_str(), "{plan}");
        let bytes = sized["bytes"].as_u64().unwrap_or(0);
        assert!(bytes > 2_000_000, "{table}: {plan}");
        assert_eq!(sized["partition"]["column"], "id", "{plan}");
    }
}

/// Table patterns go through each source's own catalog: MariaDB's databases and SQLite's
/// one namespace (`main`), matched in any case.
#[test]
fn table_patterns_match_in_mariadb_and_sqlite_catalogs() {
    let sandbox = Sandbox::new();
    maria(&format!(
        "USE {TEST_DB}; DROP TABLE IF EXISTS pat_one, pat_two, other_pat;
         CREATE TABLE pat_one (id int PRIMARY KEY); CREATE TABLE pat_two (id int PRIMARY KEY);
         CREATE TABLE other_pat (id int PRIMARY KEY);
         INSERT INTO pat_one VALUES (1), (2); INSERT INTO pat_two VALUES (3);
         INSERT INTO other_pat VALUES (4);"
    ));
    let db = sandbox.path("pat.db");
    sqlite(
        &db,
        "CREATE TABLE pat_one (id integer PRIMARY KEY); CREATE TABLE pat_two (id integer PRIMARY KEY);
         CREATE TABLE other_pat (id integer PRIMARY KEY);
         INSERT INTO pat_one VALUES (1), (2); INSERT INTO pat_two VALUES (3); INSERT INTO other_pat VALUES (4);",
    );
    for (connection, pattern, namespace) in [
        (
            maria_odbc(),
            format!("{TEST_DB}.PAT_%"),
            TEST_DB.to_string(),
        ),
        (sqlite_odbc(&db), "pat_*".to_string(), "main".to_string()),
    ] {
        let task = format!("pat-{}", namespace.replace('_', "-"));
        let job = sandbox.job(
            &task,
            &job_text(
                &task,
                &connection,
                &format!("[[tables]]\nname = \"{pattern}\"\n"),
                "",
            ),
        );
        let summary = sandbox.run_job(&job).assert_ok();
        let ids = subtask_ids(&summary);
        assert_eq!(
            ids,
            [
                format!("{namespace}.pat_one"),
                format!("{namespace}.pat_two")
            ],
            "{summary}"
        );
        assert_eq!(summary["rows"], 3);
    }
}
