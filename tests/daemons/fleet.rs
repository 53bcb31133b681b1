//! Work spread over agents: a task over three agents equals the source in the warehouse;
//! agents finish while the controller is down; a SIGKILLed agent (front or copy) resumes and
//! every row lands once; roles decide which agent runs what.

use super::*;

#[test]
fn a_task_of_six_subtasks_spreads_over_three_agents_and_the_warehouse_equals_the_source() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let agents = start_agents(&sandbox, &controller, 3, 1);
    let (tables, toml) = three_tables("dm_spread", 20_000);
    fresh_schema("wh_spread");
    let bucket = s3::unique_bucket("spread");
    create_and_start(
        &controller,
        &sandbox,
        "spread",
        &job("spread", &toml, &bucket, "wh_spread"),
        &[],
    );

    let out = controller.cli(&["tasks", "wait", "spread", "--timeout", "180"]);
    assert!(out.status.success(), "tasks wait: {}", stderr(&out));
    let view = controller.show("spread");
    assert_eq!(view["state"], "Completed", "{view:#}");
    assert_eq!(view["subtasks_total"], 6);
    for s in view["subtasks"].as_array().unwrap() {
        for stage in ["extract", "upload", "copy"] {
            assert_eq!(s[stage]["state"], "Completed", "{s:#}");
        }
        assert_eq!(s["extract"]["rows"], s["copy"]["rows"], "{s:#}");
        assert!(s["extract"]["bytes"].as_u64().unwrap() > 0, "{s:#}");
        assert_eq!(s["extract"]["bytes"], s["upload"]["bytes"], "{s:#}");
    }
    let log = stdout(&controller.cli(&["tasks", "log", "spread"]));
    assert_eq!(
        subtask_agents(&view),
        ["agent1", "agent2", "agent3"].map(String::from).into(),
        "each agent runs two of the six subtasks: {view:#}\n{log}"
    );
    let names: Vec<&str> = tables.iter().map(String::as_str).collect();
    assert_warehouse_equals_source("wh_spread", &names);

    // The human view names every subtask's agent; the merged log has every agent's lines.
    let out = controller.cli(&["tasks", "show", "spread"]);
    let text = stdout(&out);
    assert!(
        text.contains("Completed") && text.contains("agent3"),
        "{text}"
    );
    let log = sandbox.path("spread.log");
    let out = controller.cli(&["tasks", "log", "spread", "-o", log.to_str().unwrap()]);
    assert!(out.status.success(), "tasks log: {}", stderr(&out));
    let log = std::fs::read_to_string(log).unwrap();
    for origin in [
        "[agent agent1]",
        "[agent agent2]",
        "[agent agent3]",
        "[controller]",
    ] {
        assert!(log.contains(origin), "{origin} missing in {log}");
    }
    // The password went to the agents (the source needs it) but into no log or output.
    assert!(!log.contains(SOURCE_PASSWORD) && !view.to_string().contains(SOURCE_PASSWORD));
    let mut files = vec![controller.dir.with_extension("log")];
    for agent in &agents {
        files.push(agent.dir.with_extension("log"));
        files.push(agent.dir.join("logs/spread.log"));
    }
    files.push(controller.dir.join("logs/spread.log"));
    // It is kept only in the stores, sealed, readable by their owner alone.
    use std::os::unix::fs::PermissionsExt;
    let store = agents[0].dir.join("agent.redb");
    assert!(stored_tasks_contain(
        &agents[0].dir,
        "agent.redb",
        SOURCE_PASSWORD
    ));
    assert!(!files_contain(&agents[0].dir, SOURCE_PASSWORD.as_bytes()));
    for private in [store, agents[0].dir.join("logs/spread.log")] {
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", private.display());
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains(SOURCE_PASSWORD),
            "{} holds the password",
            file.display()
        );
    }
    let out = controller.cli(&["agents", "list", "--json"]);
    let agents: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(agents.as_array().unwrap().len(), 3);
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["reachable"] == true),
        "{agents:#}"
    );
    // What `agents list` promises: version, running subtasks and capacity of each agent.
    for a in agents.as_array().unwrap() {
        assert_eq!(a["version"], env!("CARGO_PKG_VERSION"), "{a:#}");
        assert_eq!(a["capacity"], 1, "{a:#}");
        assert_eq!(a["running"], 0, "{a:#}");
    }
    let out = controller.cli(&["agents", "list"]);
    assert!(
        stdout(&out).contains("capacity") && stdout(&out).contains("agent3"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_agents_finish_while_the_controller_is_down_and_it_shows_completed_when_back() {
    let sandbox = Sandbox::new();
    let mut controller = Controller::start(sandbox.dir.path());
    let _agents = start_agents(&sandbox, &controller, 3, 1);
    let (tables, toml) = three_tables("dm_away", 150_000);
    fresh_schema("wh_away");
    let bucket = s3::unique_bucket("away");
    create_and_start(
        &controller,
        &sandbox,
        "away",
        &job("away", &toml, &bucket, "wh_away"),
        &[],
    );
    let view = controller.show("away");
    assert_ne!(
        view["state"], "Completed",
        "the task must still run when the controller dies"
    );

    controller.kill();
    // The agents go on alone: wait until the warehouse holds every source row.
    let names: Vec<&str> = tables.iter().map(String::as_str).collect();
    let mut client = pg();
    let expected: i64 = names
        .iter()
        .map(|t| count(&mut client, &format!("src_pg.{t}")))
        .sum();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let loaded: i64 = names
            .iter()
            .map(|t| {
                client
                    .query_one(
                        "SELECT coalesce(sum(row_count), 0)::bigint FROM wh_away.dbhaul_loads \
                         WHERE subtask LIKE $1",
                        &[&format!("src_pg.{t}%")],
                    )
                    .map(|r| r.get::<_, i64>(0))
                    .unwrap_or(0)
            })
            .sum();
        if loaded == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agents did not finish without the controller: {loaded} of {expected}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    controller.restart();
    let out = controller.cli(&["tasks", "wait", "away", "--timeout", "60"]);
    assert!(
        out.status.success(),
        "tasks wait after the restart: {}",
        stderr(&out)
    );
    let view = controller.show("away");
    assert_eq!(view["state"], "Completed", "{view:#}");
    assert_eq!(view["subtasks_completed"], 6, "{view:#}");
    assert_warehouse_equals_source("wh_away", &names);
}

#[test]
fn a_sigkilled_agent_resumes_its_subtasks_and_each_row_lands_once() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let mut agents = start_agents(&sandbox, &controller, 1, 2);
    hash_table("dm_killed", 400_000);
    fresh_schema("wh_killed");
    let bucket = s3::unique_bucket("killed");
    let toml =
        "[[tables]]\nname = \"src_pg.dm_killed\"\npartition = { column = \"id\", ranges = 2 }\n";
    create_and_start(
        &controller,
        &sandbox,
        "killed",
        &job("killed", toml, &bucket, "wh_killed"),
        &[],
    );

    kill_mid_copy(&controller, "killed", &mut agents[0]);

    let out = controller.cli(&["tasks", "wait", "killed", "--timeout", "180"]);
    assert!(out.status.success(), "tasks wait: {}", stderr(&out));
    let view = controller.show("killed");
    assert_eq!(view["state"], "Completed", "{view:#}");
    let resumed = view["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["attempts"].as_u64().unwrap() >= 2)
        .count();
    assert!(resumed >= 1, "a subtask ran again after the kill: {view:#}");
    assert_warehouse_equals_source("wh_killed", &["dm_killed"]);
    let agent_log = agents[0].process.as_ref().unwrap().log_text();
    assert!(agent_log.contains("it runs again"), "{agent_log}");
}

#[test]
fn subtasks_of_a_task_taken_in_two_rounds_all_reach_the_warehouse() {
    let sandbox = Sandbox::new();
    let mut agent = Agent::configure(sandbox.dir.path(), "later", 2);
    agent.start();
    hash_table("dm_later_a", 500);
    hash_table("dm_later_b", 700);
    fresh_schema("wh_later");
    let bucket = s3::unique_bucket("later");
    let tables =
        "[[tables]]\nname = \"src_pg.dm_later_a\"\n\n[[tables]]\nname = \"src_pg.dm_later_b\"\n";
    let text = job("later", tables, &bucket, "wh_later");
    let session = Session::login(agent.port);
    let definition = serde_json::json!({"name": "later", "id": "1", "job": text, "secrets": {}});
    let plan = session.post("/v1/plan", &serde_json::json!({ "task": definition }));
    let wait_all_completed = |n: usize| loop {
        let statuses = session.get("/v1/tasks/later/subtasks");
        let statuses = statuses.as_array().unwrap().clone();
        assert!(
            statuses.iter().all(|s| s["state"] != "Failed"),
            "{statuses:#?}"
        );
        if statuses.len() == n && statuses.iter().all(|s| s["state"] == "Completed") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The first table's subtask alone, then the second one's (a controller sends more when
    // an agent comes back): the task is prepared again for the new table, which is created.
    for (i, spec) in plan["subtasks"].as_array().unwrap().iter().enumerate() {
        session.post(
            "/v1/subtasks",
            &serde_json::json!({"task": definition, "subtasks": [spec], "start": true}),
        );
        wait_all_completed(i + 1);
    }
    assert_warehouse_equals_source("wh_later", &["dm_later_a", "dm_later_b"]);
}

/// Agent roles: an agent registered without `copy` is used to plan (it reads the source)
/// but a task that copies is refused at start, naming the roles it needs and what each
/// agent has; once an agent with every role is registered, the task runs there only.
#[test]
fn a_task_is_refused_at_start_when_no_agent_has_its_roles_and_runs_on_one_that_has() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let front = role_agent(&sandbox, &controller, "front", "extract,upload");
    let out = controller.cli(&["agents", "list"]);
    assert!(stdout(&out).contains("extract,upload "), "{}", stdout(&out));

    hash_table("dm_roles", 3_000);
    fresh_schema("wh_roles");
    let bucket = s3::unique_bucket("roles");
    let tables =
        "[[tables]]\nname = \"src_pg.dm_roles\"\npartition = { column = \"id\", ranges = 2 }\n";
    create_task(
        &controller,
        &sandbox,
        "roles",
        &job("roles", tables, &bucket, "wh_roles"),
        &[],
    );
    let out = controller.cli(&["tasks", "start", "roles"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("no agent the task may use has the roles extract, upload, copy that mode extract-upload-copy needs")
            && said.contains("front has extract, upload")
            && said.contains("--roles extract,upload,copy"),
        "{said}"
    );
    assert_eq!(controller.show("roles")["state"], "Pending", "nothing ran");

    let out = controller.cli(&[
        "agents",
        "register",
        "bad",
        "--host",
        "h",
        "--roles",
        "extract,teleport",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("teleport"), "{}", stderr(&out));

    let mut full = Agent::configure(sandbox.dir.path(), "full", 2);
    full.start();
    controller.register(&full);
    let out = controller.cli(&["tasks", "start", "roles"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "wait", "roles", "--timeout", "120"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        subtask_agents(&controller.show("roles")),
        BTreeSet::from(["full".to_string()])
    );
    assert_warehouse_equals_source("wh_roles", &["dm_roles"]);
    drop((front, full));
}

/// Agent roles, the hand-off: with one agent for extract and upload and another that alone
/// copies (and alone gets the warehouse's settings and password), each subtask is extracted
/// and uploaded by the first and copied by the second from the uploaded manifest; the
/// warehouse equals the source, and the front agent's store never saw the warehouse.
#[test]
fn a_copy_only_agent_copies_what_a_front_agent_extracted_and_alone_holds_the_warehouse() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let front = role_agent(&sandbox, &controller, "front", "extract,upload");
    let loader = role_agent(&sandbox, &controller, "loader", "copy");

    hash_table("dm_handoff", 5_000);
    fresh_schema("wh_handoff");
    let bucket = s3::unique_bucket("handoff");
    let tables =
        "[[tables]]\nname = \"src_pg.dm_handoff\"\npartition = { column = \"id\", ranges = 3 }\n";
    let text = job("handoff", tables, &bucket, "wh_handoff")
        .replacen(
            "[warehouse]\n",
            "[warehouse]\npassword_env = \"DM_WH_PASSWORD\"\n",
            1,
        )
        .replacen(
            "[source]\n",
            "[source]\npassword_env = \"DM_SOURCE_PASSWORD\"\n",
            1,
        );
    let path = sandbox.job("handoff", &text);
    let secret = "wh-secret-5c1e9a";
    let out = controller.cli_env(
        &["tasks", "create", path.to_str().unwrap()],
        "",
        &[
            ("DM_SOURCE_PASSWORD", SOURCE_PASSWORD),
            ("DM_WH_PASSWORD", secret),
        ],
    );
    assert!(out.status.success(), "tasks create: {}", stderr(&out));
    let out = controller.cli(&["tasks", "start", "handoff"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "wait", "handoff", "--timeout", "180"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let view = controller.show("handoff");
    let subtasks = view["subtasks"].as_array().unwrap();
    assert_eq!(subtasks.len(), 3);
    for s in subtasks {
        assert_eq!(
            (
                s["state"].as_str(),
                s["agent"].as_str(),
                s["copy_agent"].as_str()
            ),
            (Some("Completed"), Some("front"), Some("loader")),
            "{s}"
        );
        assert_eq!(s["copy"]["state"], "Completed", "{s}");
        assert!(s["copy"]["rows"].as_u64().unwrap() > 0, "{s}");
    }
    assert_warehouse_equals_source("wh_handoff", &["dm_handoff"]);
    // The warehouse's password and URL went to the copy agent only.
    assert!(
        stored_tasks_contain(&loader.dir, "agent.redb", secret),
        "the loader got the password"
    );
    assert!(
        !stored_tasks_contain(&front.dir, "agent.redb", secret),
        "the front agent got the password"
    );
    assert!(
        !stored_tasks_contain(&front.dir, "agent.redb", "postgresql://"),
        "the front agent got the warehouse URL"
    );
    for agent in [&loader, &front] {
        assert!(
            !files_contain(&agent.dir, secret.as_bytes()),
            "a secret in clear"
        );
    }

    // A copy agent does not reach the source, so it cannot count it: refused, named.
    let text = job("handoff-count", tables, &bucket, "wh_handoff").replacen(
        "[warehouse]\n",
        "[warehouse]\ncount_source = true\n",
        1,
    );
    create_task(&controller, &sandbox, "handoff-count", &text, &[]);
    let out = controller.cli(&["tasks", "start", "handoff-count"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "wait", "handoff-count", "--timeout", "180"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let view = controller.show("handoff-count");
    let error = view["subtasks"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains(
            "warehouse.count_source counts the source after each copy, but this agent only copies"
        ),
        "{view}"
    );
    drop((front, loader));
}

/// The hand-off under a kill: the copy agent is SIGKILLed mid-copy and started again; it
/// copies the rest from the uploaded manifest, and each row lands once. A million rows, so
/// that the copy leg (every chunk already uploaded) lasts longer than the controller takes
/// to see it start: with 400,000 it once completed before the kill under load.
#[test]
fn a_copy_agent_killed_mid_copy_resumes_and_each_row_lands_once() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let front = role_agent(&sandbox, &controller, "front", "extract,upload");
    let mut loader = role_agent(&sandbox, &controller, "loader", "copy");
    hash_table("dm_handoff_killed", 1_000_000);
    fresh_schema("wh_handoff_killed");
    let bucket = s3::unique_bucket("handoffkilled");
    let toml = "[[tables]]\nname = \"src_pg.dm_handoff_killed\"\n\
                partition = { column = \"id\", ranges = 2 }\n";
    create_and_start(
        &controller,
        &sandbox,
        "handoff-killed",
        &job("handoff-killed", toml, &bucket, "wh_handoff_killed"),
        &[],
    );
    kill_mid_copy(&controller, "handoff-killed", &mut loader);
    let out = controller.cli(&["tasks", "wait", "handoff-killed", "--timeout", "180"]);
    assert!(out.status.success(), "tasks wait: {}", stderr(&out));
    let view = controller.show("handoff-killed");
    assert_eq!(view["state"], "Completed", "{view:#}");
    assert_warehouse_equals_source("wh_handoff_killed", &["dm_handoff_killed"]);
    let log = loader.process.as_ref().unwrap().log_text();
    assert!(log.contains("it runs again"), "{log}");
    drop(front);
}
