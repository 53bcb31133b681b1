//! Faults during upload and copy: an S3 outage, a run killed mid-copy or mid-table, Ctrl-C,
//! a row count that does not add up. Every row lands in the warehouse exactly once.

use super::*;

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
