//! A task's life on the agents: tested, stopped, resumed and deleted; a subtask an agent
//! already holds is a no-op, a task created again starts afresh; the files and keys a task
//! names travel with it.

use super::*;

#[test]
fn a_task_on_chosen_agents_can_be_tested_stopped_resumed_and_deleted() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let agents = start_agents(&sandbox, &controller, 2, 1);
    hash_table("dm_lifecycle", 300_000);
    fresh_schema("wh_lifecycle");
    let bucket = s3::unique_bucket("lifecycle");
    let toml =
        "[[tables]]\nname = \"src_pg.dm_lifecycle\"\npartition = { column = \"id\", ranges = 3 }\n";
    let path = sandbox.job(
        "lifecycle",
        &job("lifecycle", toml, &bucket, "wh_lifecycle"),
    );
    let out = controller.cli(&[
        "tasks",
        "create",
        path.to_str().unwrap(),
        "--agents",
        "agent2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "create", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a second task of the same name");
    assert!(
        stderr(&out).contains("a task named lifecycle exists"),
        "{}",
        stderr(&out)
    );

    // The test runs every check from an agent and changes nothing.
    let out = controller.cli(&["tasks", "test", "lifecycle", "--json"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["agent"], "agent2");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["source", "tables", "working folder", "bucket", "warehouse"],
        "{report:#}"
    );
    assert_eq!(controller.show("lifecycle")["state"], "Pending");
    let out = controller.cli(&["tasks", "wait", "lifecycle"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "waiting on a task nobody started"
    );
    assert!(
        stderr(&out).contains("has not been started"),
        "{}",
        stderr(&out)
    );

    let out = controller.cli(&["tasks", "start", "lifecycle"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "delete", "lifecycle"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a running task cannot be deleted"
    );
    assert!(stderr(&out).contains("stop it first"), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "stop", "lifecycle"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let view = controller.wait_for("lifecycle", Duration::from_secs(60), |v| {
        v["state"] != "Running"
    });
    assert_eq!(view["state"], "Stopped", "{view:#}");
    // One slot on agent2: one subtask was stopped while running, two before they began.
    let stopped = view["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "Stopped")
        .count();
    assert!(stopped >= 2, "{view:#}");
    let out = controller.cli(&["tasks", "wait", "lifecycle"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "waiting on a stopped task fails"
    );

    let out = controller.cli(&["tasks", "resume", "lifecycle"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "wait", "lifecycle", "--timeout", "180"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let view = controller.show("lifecycle");
    assert_eq!(
        subtask_agents(&view),
        BTreeSet::from(["agent2".to_string()]),
        "{view:#}"
    );
    assert_warehouse_equals_source("wh_lifecycle", &["dm_lifecycle"]);
    let out = controller.cli(&["tasks", "start", "lifecycle"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is completed"), "{}", stderr(&out));

    let out = controller.cli(&["tasks", "list"]);
    assert!(
        stdout(&out).contains("lifecycle") && stdout(&out).contains("Completed"),
        "{}",
        stdout(&out)
    );
    let out = controller.cli(&["tasks", "delete", "lifecycle"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "list", "--json"]);
    assert_eq!(stdout(&out).trim(), "[]");
    drop(agents);
}

#[test]
fn an_agent_takes_a_subtask_it_holds_as_a_no_op_and_a_recreated_task_afresh() {
    // Straight to the agent's API, no controller: what a controller killed between
    // choosing an agent and recording the dispatch would send again when it comes back.
    let sandbox = Sandbox::new();
    let mut agent = Agent::configure(sandbox.dir.path(), "direct", 2);
    agent.start();
    hash_table("dm_direct", 1_000);
    let session = Session::login(agent.port);
    let job = job_text(
        "again",
        &pg_odbc(),
        "[[tables]]\nname = \"src_pg.dm_direct\"\n",
        "mode = \"extract\"",
    );
    let definition =
        |id: &str| serde_json::json!({"name": "again", "id": id, "job": job, "secrets": {}});
    let plan = session.post(
        "/v1/plan",
        &serde_json::json!({ "task": definition("one") }),
    );
    let subtasks = plan["subtasks"].clone();
    assert_eq!(subtasks.as_array().unwrap().len(), 1, "{plan:#}");
    let wait_completed = || loop {
        let statuses = session.get("/v1/tasks/again/subtasks");
        if statuses[0]["state"] == "Completed" {
            return statuses[0].clone();
        }
        assert_ne!(statuses[0]["state"], "Failed", "{statuses:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let started_lines = || {
        std::fs::read_to_string(agent.dir.join("logs/again.log"))
            .unwrap()
            .matches("started")
            .count()
    };

    session.post(
        "/v1/subtasks",
        &serde_json::json!({"task": definition("one"), "subtasks": subtasks, "start": true}),
    );
    let first = wait_completed();
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["extract"]["rows"], 1000);
    let again = session.post(
        "/v1/subtasks",
        &serde_json::json!({"task": definition("one"), "subtasks": subtasks, "start": true}),
    );
    assert_eq!(
        again[0]["state"], "Completed",
        "a held subtask is kept: {again:#}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(wait_completed()["attempts"], 1, "it did not run again");
    assert_eq!(started_lines(), 1);

    let fresh = session.post(
        "/v1/subtasks",
        &serde_json::json!({"task": definition("two"), "subtasks": subtasks, "start": true}),
    );
    assert_ne!(
        fresh[0]["state"], "Completed",
        "a new task of the same name starts afresh: {fresh:#}"
    );
    let second = wait_completed();
    assert_eq!(second["attempts"], 1, "{second:#}");
    assert_eq!(started_lines(), 2);
}

/// A task with issue 10's settings, through the controller to an agent that has none of
/// its files: the boundaries file and the chunk key travel with the task (`tasks create`
/// reads them beside the job and from the environment), tables are chosen by pattern, a
/// rule filters one of them, and every chunk is encrypted. The warehouse holds what the
/// filters keep, each row once.
#[test]
fn a_task_carries_its_boundaries_file_and_chunk_key_to_the_agent() {
    const KEY: &str = "9c1d5e7f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d";
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let agents = start_agents(&sandbox, &controller, 1, 2);
    hash_table("dm_carry_a", 20_000);
    hash_table("dm_carry_b", 5_000);
    let schema = "wh_carry";
    fresh_schema(schema);
    let bucket = s3::unique_bucket("carry");
    std::fs::write(
        sandbox.path("ids.csv"),
        "# boundaries\n5000\n10000\n15000\n",
    )
    .unwrap();
    let tables = "[[tables]]\nname = \"src_pg.dm_carry_%\"\n\
                  [[tables]]\nname = \"src_pg.dm_carry_a\"\n\
                  partition = { column = \"id\", boundaries_file = \"ids.csv\" }\n\
                  [[rules]]\nname = \"even b\"\ntable = \"dm_carry_b\"\nwhere = \"id % 2 = 0\"\n";
    let text = job("carry", tables, &bucket, schema).replacen(
        "[files]\n",
        "[files]\nencryption_key_env = \"DM_CHUNK_KEY\"\n",
        1,
    );
    let path = sandbox.job("carry", &text);
    let out = controller.cli_env(
        &["tasks", "create", path.to_str().unwrap()],
        "",
        &[("DM_CHUNK_KEY", KEY)],
    );
    assert!(out.status.success(), "tasks create: {}", stderr(&out));
    let out = controller.cli(&["tasks", "start", "carry"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "wait", "carry", "--timeout", "180"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let view = controller.show("carry");
    let mut ids: Vec<&str> = view["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "src_pg.dm_carry_a/part-001",
            "src_pg.dm_carry_a/part-002",
            "src_pg.dm_carry_a/part-003",
            "src_pg.dm_carry_a/part-004",
            "src_pg.dm_carry_b",
        ],
        "{view:#}"
    );
    assert_warehouse_equals_source(schema, &["dm_carry_a"]);
    let mut client = pg();
    let kept = count(
        &mut client,
        "(SELECT * FROM src_pg.dm_carry_b WHERE id % 2 = 0) k",
    );
    assert_eq!(count(&mut client, &format!("{schema}.dm_carry_b")), kept);
    assert_eq!(
        pg_difference(
            &mut client,
            &format!("{schema}.dm_carry_b"),
            "(SELECT * FROM src_pg.dm_carry_b WHERE id % 2 = 0) k"
        ),
        0
    );
    let moto = s3::moto();
    let key = s3::list_keys(
        &moto.endpoint(),
        &bucket,
        "exports/carry/src_pg.dm_carry_b/",
    )
    .into_iter()
    .find(|k| k.ends_with(".csv.gz"))
    .expect("a chunk of dm_carry_b in S3");
    let object = s3::get_object(&moto.endpoint(), &bucket, &key);
    assert!(object.starts_with(b"DBHAULE1"), "{key} is not encrypted");
    drop(agents);
}
