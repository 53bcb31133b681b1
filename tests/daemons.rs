//! The appliance as users run it: a controller and agents as separate processes on loopback
//! ports, talking HTTPS with pinned certificates. What a user would check: a task spreads
//! over three agents and the warehouse equals the source; the controller can be killed and
//! the agents finish without it; a SIGKILLed agent resumes its subtasks and every row lands
//! once; wrong passwords, fingerprints, plain HTTP, malformed JSON and unknown names are
//! refused with clear errors and change nothing.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::daemons::*;
use crate::common::s3;
use crate::common::*;

/// A job over `tables` (TOML `[[tables]]` entries) of the PostgreSQL source, through
/// moto into `schema` of the PostgreSQL warehouse.
pub(crate) fn job(task: &str, tables: &str, bucket: &str, schema: &str) -> String {
    let moto = s3::moto();
    s3::create_bucket(&moto.endpoint(), bucket);
    job_text(
        task,
        &pg_odbc(),
        &format!(
            "{tables}\n[files]\nchunk_mb = 1\n\n[target]\nurl = \"s3://{bucket}/exports\"\n\
             endpoint = \"{}\"\n\n[warehouse]\nkind = \"postgres\"\n\
             url = \"postgresql://postgres@{}:5432/{TEST_DB}\"\nschema = \"{schema}\"\n\
             create_tables = true\n",
            moto.endpoint(),
            pg_host()
        ),
        "mode = \"extract-upload-copy\"",
    )
}

pub(crate) fn hash_table(name: &str, rows: u32) {
    pg_hash_table(name, rows);
    pg().batch_execute(&format!("ALTER TABLE src_pg.{name} ADD PRIMARY KEY (id)"))
        .unwrap();
}

pub(crate) fn count(client: &mut postgres::Client, table: &str) -> i64 {
    client
        .query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])
        .unwrap()
        .get(0)
}

/// Every table of the warehouse schema equals its source, both ways, each row once.
pub(crate) fn assert_warehouse_equals_source(schema: &str, tables: &[&str]) {
    let mut client = pg();
    for table in tables {
        let (source, target) = (format!("src_pg.{table}"), format!("{schema}.{table}"));
        assert_eq!(
            count(&mut client, &source),
            count(&mut client, &target),
            "{target} has another row count than {source}"
        );
        assert_eq!(
            pg_difference(&mut client, &source, &target),
            0,
            "{target} differs from {source}"
        );
        assert_eq!(
            row_checksum(&mut client, &source),
            row_checksum(&mut client, &target),
            "{target} and {source} have different checksums"
        );
    }
}

/// An order-independent checksum of every row of `table`: the sum of the first 60 bits of
/// the MD5 of each row's text form.
pub(crate) fn row_checksum(client: &mut postgres::Client, table: &str) -> String {
    client
        .query_one(
            &format!(
                "SELECT coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)                 ::text FROM {table} AS t"
            ),
            &[],
        )
        .unwrap()
        .get(0)
}

fn three_tables(prefix: &str, rows: u32) -> (Vec<String>, String) {
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|t| format!("{prefix}_{t}"))
        .collect();
    hash_table(&names[0], rows);
    hash_table(&names[1], rows);
    hash_table(&names[2], rows / 2);
    // 3 + 2 + 1 = six subtasks.
    let tables = format!(
        "[[tables]]\nname = \"src_pg.{}\"\npartition = {{ column = \"id\", ranges = 3 }}\n\n\
         [[tables]]\nname = \"src_pg.{}\"\npartition = {{ column = \"id\", ranges = 2 }}\n\n\
         [[tables]]\nname = \"src_pg.{}\"\n",
        names[0], names[1], names[2]
    );
    (names, tables)
}

pub(crate) fn start_agents(
    sandbox: &Sandbox,
    controller: &Controller,
    n: usize,
    parallel: u32,
) -> Vec<Agent> {
    (1..=n)
        .map(|i| {
            let mut agent = Agent::configure(sandbox.dir.path(), &format!("agent{i}"), parallel);
            agent.start();
            controller.register(&agent);
            agent
        })
        .collect()
}

/// The source password every task of these tests carries (PostgreSQL trusts loopback and
/// ignores it): it must never appear in a log or in what `tasks show` prints.
pub(crate) const SOURCE_PASSWORD: &str = "Known7SourceSecret";

/// `tasks create` of a job whose source password is [`SOURCE_PASSWORD`], through
/// `password_env`.
pub(crate) fn create_task(
    controller: &Controller,
    sandbox: &Sandbox,
    task: &str,
    text: &str,
    extra: &[&str],
) {
    let text = text.replacen(
        "[source]\n",
        "[source]\npassword_env = \"DM_SOURCE_PASSWORD\"\n",
        1,
    );
    let path = sandbox.job(task, &text);
    let mut args = vec!["tasks", "create", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = controller.cli_env(&args, "", &[("DM_SOURCE_PASSWORD", SOURCE_PASSWORD)]);
    assert!(out.status.success(), "tasks create: {}", stderr(&out));
}

pub(crate) fn create_and_start(
    controller: &Controller,
    sandbox: &Sandbox,
    task: &str,
    text: &str,
    extra: &[&str],
) {
    create_task(controller, sandbox, task, text, extra);
    let out = controller.cli(&["tasks", "start", task]);
    assert!(out.status.success(), "tasks start: {}", stderr(&out));
}

fn subtask_agents(view: &serde_json::Value) -> BTreeSet<String> {
    view["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agent"].as_str().unwrap_or("-").to_string())
        .collect()
}

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

/// SIGKILL `agent` once some rows of `task` are in the warehouse and the task is not done,
/// and start it again.
fn kill_mid_copy(controller: &Controller, task: &str, agent: &mut Agent) {
    let view = controller.wait_for(task, Duration::from_secs(120), |v| {
        v["state"] == "Completed"
            || v["subtasks"]
                .as_array()
                .unwrap()
                .iter()
                // A subtask copying now: rows in, not yet completed (one already copied
                // would not run again after the kill).
                .any(|s| s["copy"]["rows"].as_u64().unwrap_or(0) > 0 && s["state"] == "Running")
    });
    assert_ne!(
        view["state"], "Completed",
        "the kill must come mid-copy: {view:#}"
    );
    agent.kill();
    agent.start();
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
fn agent_configure_enforces_the_password_rule_and_keeps_its_state_when_run_again() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("a1");
    let configure = |extra: &[&str], password: &str| {
        let mut args = vec![
            "agent",
            "configure",
            "--dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1",
            "--password-stdin",
        ];
        args.extend_from_slice(extra);
        run_with_stdin(&args, &format!("{password}\n"), &[])
    };
    let port = s3::free_port().to_string();
    for bad in [
        "Short1",
        "nouppercase1",
        "NoDigitsHere",
        "With-Dash1",
        "Waytoolongpassword12345",
    ] {
        let out = configure(&["--port", &port], bad);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains("8 to 20 letters and digits"),
            "{bad}: {}",
            stderr(&out)
        );
        assert!(
            !dir.join("agent.toml").exists(),
            "{bad} wrote a configuration"
        );
    }
    // A port another program holds is refused.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let out = configure(&["--port", &taken_port], "Good1Password");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("port {taken_port} is taken")),
        "{}",
        stderr(&out)
    );
    drop(taken);

    let out = configure(
        &[
            "--port",
            &port,
            "--name",
            "a1",
            "--host",
            "127.0.0.1",
            "--json",
        ],
        "Good1Password",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fingerprint = first["fingerprint"].as_str().unwrap().to_string();
    // The fingerprint is the certificate's SHA-256, as openssl prints it.
    let openssl = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(dir.join("tls/agent.crt"))
        .output()
        .unwrap();
    assert!(
        stdout(&openssl).contains(&fingerprint),
        "{} vs {fingerprint}",
        stdout(&openssl)
    );
    use std::os::unix::fs::PermissionsExt;
    for file in ["agent.toml", "tls/agent.key", "tls/agent.crt"] {
        let mode = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let settings = std::fs::read_to_string(dir.join("agent.toml")).unwrap();
    assert!(settings.contains("$argon2id$"), "{settings}");
    assert!(
        !settings.contains("Good1Password"),
        "the password itself is stored: {settings}"
    );

    // The agent's store holds state; a second configure changes password and port only.
    let mut agent = Agent {
        name: "a1".into(),
        dir: dir.clone(),
        port: port.parse().unwrap(),
        fingerprint: fingerprint.clone(),
        process: None,
    };
    agent.start();
    agent.kill();
    let store_before = std::fs::read(dir.join("agent.redb")).unwrap();
    let new_port = s3::free_port();
    let out = configure(
        &["--port", &new_port.to_string(), "--json"],
        "Other2Password",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        second["fingerprint"],
        fingerprint.as_str(),
        "the certificate is kept"
    );
    assert_eq!(second["port"], new_port);
    assert_eq!(second["created"], false);
    assert_eq!(
        std::fs::read(dir.join("agent.redb")).unwrap(),
        store_before,
        "the store is kept"
    );

    // The new password works, the old one no longer does.
    agent.port = new_port;
    agent.start();
    let controller = Controller::start(sandbox.dir.path());
    let register = |password: &str| {
        controller.cli_stdin(
            &[
                "agents",
                "register",
                "a1",
                "--host",
                "127.0.0.1",
                "--port",
                &new_port.to_string(),
                "--password-stdin",
                "--fingerprint",
                &fingerprint,
            ],
            &format!("{password}\n"),
        )
    };
    let out = register("Good1Password");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
    let out = register("Other2Password");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_dbhaul"))
        .args(["agent", "status", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("running on port {new_port}"))
            && stdout(&out).contains(&fingerprint),
        "{}",
        stdout(&out)
    );
}

/// `curl` against an agent or controller: (HTTP status, body); status 0 when no HTTP answer.
pub(crate) fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .expect("curl");
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// `POST /v1/login` with the agent's password: the answer (token, lifetime).
pub(crate) fn agent_login(port: u16) -> serde_json::Value {
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!("{{\"password\":\"{AGENT_PASSWORD}\"}}"),
        &format!("https://127.0.0.1:{port}/v1/login"),
    ]);
    assert_eq!(status, 200, "login: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A logged-in session on an agent's API, through curl.
struct Session {
    base: String,
    auth: String,
}

impl Session {
    fn login(port: u16) -> Session {
        let answer = agent_login(port);
        let token = answer["token"].as_str().unwrap();
        Session {
            auth: format!("Authorization: Bearer {token}"),
            base: format!("https://127.0.0.1:{port}"),
        }
    }

    fn post(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let (status, text) = curl(&[
            "-X",
            "POST",
            "-H",
            &self.auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
            &format!("{}{path}", self.base),
        ]);
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let (status, text) = curl(&["-H", &self.auth, &format!("{}{path}", self.base)]);
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

#[test]
fn wrong_passwords_fingerprints_plain_http_malformed_json_and_unknown_names_are_refused() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let mut agent = Agent::configure(sandbox.dir.path(), "guarded", 1);
    agent.start();
    let port = agent.port.to_string();
    let register = |password: &str, fingerprint: Option<&str>| {
        let mut args = vec![
            "agents",
            "register",
            "guarded",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--password-stdin",
        ];
        if let Some(f) = fingerprint {
            args.extend(["--fingerprint", f]);
        }
        controller.cli_stdin(&args, &format!("{password}\n"))
    };
    let registered = || -> usize {
        let out = controller.cli(&["agents", "list", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };

    let out = register("Wrong1Password", Some(&agent.fingerprint));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
    let zeros = vec!["00"; 32].join(":");
    let out = register(AGENT_PASSWORD, Some(&zeros));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "presents a certificate with fingerprint {}",
            agent.fingerprint
        )),
        "{}",
        stderr(&out)
    );
    let out = register(AGENT_PASSWORD, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("--fingerprint {}", agent.fingerprint)),
        "{}",
        stderr(&out)
    );
    let out = register(AGENT_PASSWORD, Some("not-a-fingerprint"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a SHA-256 fingerprint"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        registered(),
        0,
        "a refused registration registered something"
    );

    // A failed login is refused and logged, without the password (the throttling of
    // failures in a row is `security::agent::parallel_password_guesses_…`).
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"password":"Wrong1Password"}"#,
        &format!("https://127.0.0.1:{port}/v1/login"),
    ]);
    assert_eq!(status, 401, "{body}");
    let agent_log = agent.process.as_ref().unwrap().log_text();
    assert!(
        agent_log.contains("failed login") && !agent_log.contains("Wrong1Password"),
        "{agent_log}"
    );

    // Plain HTTP gets no HTTP answer; the agent goes on serving.
    let (status, _) = curl(&[&format!("http://127.0.0.1:{port}/v1/health")]);
    assert_eq!(status, 0, "the agent answered plain HTTP");
    // Malformed JSON, to the agent and to the controller.
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{\"password\": ",
        &format!("https://127.0.0.1:{port}/v1/login"),
    ]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("malformed JSON"), "{body}");
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        &controller.auth_header(),
        "-d",
        "{\"task\": 3}",
        &format!("{}/v1/tasks", controller.url()),
    ]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("malformed JSON"), "{body}");
    // Without a session, nothing but health and login.
    let (status, body) = curl(&[&format!("https://127.0.0.1:{port}/v1/subtasks")]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("log in first"), "{body}");

    let out = register(AGENT_PASSWORD, Some(&agent.fingerprint));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(registered(), 1);

    // Unknown names: on the controller and on the agent.
    let out = controller.cli(&["tasks", "show", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no task named nope"),
        "{}",
        stderr(&out)
    );
    let out = controller.cli(&["agents", "remove", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no agent named nope"),
        "{}",
        stderr(&out)
    );
    let token = agent_login(port.parse().unwrap())["token"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = format!("Authorization: Bearer {token}");
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"subtasks":["public.nope"]}"#,
        &format!("https://127.0.0.1:{port}/v1/tasks/nope/stop"),
    ]);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no subtask of task `nope`"), "{body}");

    // A task naming an unknown agent, or a broken job file, is refused; nothing is created.
    hash_table("dm_guarded", 100);
    let bucket = s3::unique_bucket("guarded");
    let good = sandbox.job(
        "guarded",
        &job(
            "guarded",
            "[[tables]]\nname = \"src_pg.dm_guarded\"\n",
            &bucket,
            "public",
        ),
    );
    let out = controller.cli(&[
        "tasks",
        "create",
        good.to_str().unwrap(),
        "--agents",
        "ghost",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no agent named ghost"),
        "{}",
        stderr(&out)
    );
    let broken = sandbox.job("broken", "[task]\nname = \"broken\"\nmode = \"sideways\"\n");
    let out = controller.cli(&["tasks", "create", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("broken.toml"), "{}", stderr(&out));
    let missing = sandbox.job(
        "missing",
        &job(
            "missing",
            "[[tables]]\nname = \"src_pg.no_such_table\"\n",
            &bucket,
            "public",
        ),
    );
    let out = controller.cli(&["tasks", "create", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no_such_table"), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "list", "--json"]);
    assert_eq!(stdout(&out).trim(), "[]");

    // A changed certificate is refused by the pin.
    agent.kill();
    let out = run_with_stdin(
        &[
            "agent",
            "configure",
            "--dir",
            agent.dir.to_str().unwrap(),
            "--new-certificate",
            "--json",
        ],
        "",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    agent.start();
    let out = controller.cli(&["agents", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["reachable"], false, "{list:#}");
    let error = list[0]["error"].as_str().unwrap();
    assert!(
        error.contains("certificate changed") && error.contains(&agent.fingerprint),
        "{error}"
    );
    let out = controller.cli(&["agents", "remove", "guarded"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(registered(), 0);
}

#[test]
fn an_agent_started_with_a_join_token_registers_itself() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let token = std::fs::read_to_string(controller.dir.join("join.token")).unwrap();
    let mut wrong = Agent::configure(sandbox.dir.path(), "intruder", 1);
    let pin = controller.fingerprint();
    wrong.start_with(&[
        "--controller",
        &controller.url(),
        "--join-token",
        "0000",
        "--controller-fingerprint",
        &pin,
    ]);
    let mut agent = Agent::configure(sandbox.dir.path(), "fleet1", 1);
    agent.start_with(&[
        "--controller",
        &controller.url(),
        "--join-token",
        token.trim(),
        "--controller-fingerprint",
        &pin,
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = controller.cli(&["agents", "list", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let list = list.as_array().unwrap();
        if let Some(joined) = list.iter().find(|a| a["name"] == "fleet1") {
            assert_eq!(joined["reachable"], true, "{joined:#}");
            assert_eq!(joined["fingerprint"], agent.fingerprint.as_str());
            assert!(list.iter().all(|a| a["name"] != "intruder"), "{list:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not join: {}",
            agent.process.as_ref().unwrap().log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = wrong.process.as_ref().unwrap().log_text();
    assert!(log.contains("wrong join token"), "{log}");
}

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
fn a_controller_bound_beyond_loopback_requires_its_admin_token() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("open-controller");
    let port = s3::free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_dbhaul"));
    command.args([
        "controller",
        "serve",
        "--dir",
        dir.to_str().unwrap(),
        "--listen",
        &format!("0.0.0.0:{port}"),
    ]);
    let server =
        crate::common::daemons::spawn_daemon(command, sandbox.path("open-controller.log"), port);
    let url = format!("https://127.0.0.1:{port}");
    let pin = crate::common::daemons::Controller {
        dir: dir.clone(),
        port,
        process: None,
    }
    .fingerprint();
    let list = |token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dbhaul"));
        command
            .args(["agents", "list", "--controller", &url])
            .args(["--controller-fingerprint", &pin])
            .env_remove("DBHAUL_CONTROLLER_DIR")
            .env_remove("DBHAUL_TOKEN");
        if let Some(token) = token {
            command.env("DBHAUL_TOKEN", token);
        }
        command.output().unwrap()
    };
    let out = list(None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("admin token"), "{}", stderr(&out));
    let out = list(Some("wrong"));
    assert_eq!(out.status.code(), Some(2));
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("admin.token"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let out = list(Some(token.trim()));
    assert!(out.status.success(), "{}", stderr(&out));
    drop(server);
}

#[test]
fn agent_configure_on_a_terminal_asks_twice_and_spells_out_the_rule() {
    // `script` gives the command a terminal; answers are typed one prompt at a time.
    let sandbox = Sandbox::new();
    let dir = sandbox.path("typed");
    let port = s3::free_port().to_string();
    let mut child = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} agent configure --dir {} --listen 127.0.0.1 --name typed",
            env!("CARGO_BIN_EXE_dbhaul"),
            dir.display()
        ))
        .arg("/dev/null")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    let mut stdin = child.stdin.take().unwrap();
    for answer in [
        "short",
        "Typed1Pass",
        "Typed1Pasx",
        "Typed1Pass",
        "Typed1Pass",
        &port,
    ] {
        std::thread::sleep(Duration::from_millis(400));
        std::io::Write::write_all(&mut stdin, format!("{answer}\n").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("it has 5 characters"), "{text}");
    assert!(text.contains("the two passwords differ"), "{text}");
    assert!(
        !text.contains("Typed1Pass"),
        "the password was echoed: {text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    let settings = std::fs::read_to_string(dir.join("agent.toml")).unwrap();
    assert!(settings.contains(&format!("port = {port}")), "{settings}");
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

#[test]
fn registering_on_a_terminal_shows_the_fingerprint_and_asks_to_confirm_it() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let mut agent = Agent::configure(sandbox.dir.path(), "typed", 1);
    agent.start();
    let register = |answers: &[&str]| {
        let mut child = Command::new("script")
            .args(["-qec"])
            .arg(format!(
                "{} agents register typed --host 127.0.0.1 --port {} --controller {} \
                 --controller-dir {}",
                env!("CARGO_BIN_EXE_dbhaul"),
                agent.port,
                controller.url(),
                controller.dir.display()
            ))
            .arg("/dev/null")
            .env("NO_PROXY", "127.0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script (util-linux)");
        let mut stdin = child.stdin.take().unwrap();
        for answer in answers {
            std::thread::sleep(Duration::from_millis(700));
            std::io::Write::write_all(&mut stdin, format!("{answer}\n").as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let out = register(&[AGENT_PASSWORD, "n"]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&agent.fingerprint) && text.contains("[y/N]"),
        "{text}"
    );
    assert!(
        text.contains("not confirmed; nothing was registered"),
        "{text}"
    );
    let out = register(&[AGENT_PASSWORD, "y"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("registered agent typed"), "{text}");
    assert!(
        !text.contains(AGENT_PASSWORD),
        "the password was echoed: {text}"
    );
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

/// An agent of two slots, started and registered with `roles` (`extract,upload`).
fn role_agent(sandbox: &Sandbox, controller: &Controller, name: &str, roles: &str) -> Agent {
    let mut agent = Agent::configure(sandbox.dir.path(), name, 2);
    agent.start();
    controller.register_with(&agent, &["--roles", roles]);
    agent
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

/// Every byte of every file under `dir` (an agent's store and logs), for what must not be
/// there.
/// Whether the tasks kept in a daemon's store (`agent.redb` or `controller.redb` in `dir`)
/// hold `needle`, read as the daemon reads them: opened with their key files, from a copy
/// (the running daemon holds the file). Their bytes on disk are sealed.
pub fn stored_tasks_contain(dir: &std::path::Path, store: &str, needle: &str) -> bool {
    let copy = tempfile::tempdir().unwrap();
    let keys = std::path::Path::new(store).with_extension("keys");
    std::fs::copy(dir.join(store), copy.path().join(store)).unwrap();
    std::fs::create_dir(copy.path().join(&keys)).unwrap();
    for entry in std::fs::read_dir(dir.join(&keys)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            copy.path().join(&keys).join(entry.file_name()),
        )
        .unwrap();
    }
    let opened = dbhaul::store::Store::open(&copy.path().join(store)).unwrap();
    let tasks: Vec<(String, serde_json::Value)> =
        opened.list(dbhaul::store::Table("tasks")).unwrap();
    serde_json::to_string(&tasks).unwrap().contains(needle)
}

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            return files_contain(&path, needle);
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
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
/// copies the rest from the uploaded manifest, and each row lands once.
#[test]
fn a_copy_agent_killed_mid_copy_resumes_and_each_row_lands_once() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let front = role_agent(&sandbox, &controller, "front", "extract,upload");
    let mut loader = role_agent(&sandbox, &controller, "loader", "copy");
    hash_table("dm_handoff_killed", 400_000);
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
