//! Bad settings fail before any data moves, with the cause and the fix: a missing bucket, an
//! unreachable endpoint, refused credentials, a missing or wrong warehouse table or database,
//! a mode without its section; `--test` prints one line per check.

use super::*;

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
