//! What users trust dbhaul with when things go wrong: sessions that cannot be forged or
//! outlive their time, request bodies that cannot exhaust a daemon, and stores that are
//! refused, never reset, when they cannot be read. (The fault-injection suite of the
//! resilience issue grows here.)

use std::time::Duration;

use crate::common::daemons::*;
use crate::common::s3;
use crate::common::*;
use crate::daemons::{
    agent_login, assert_warehouse_equals_source, create_and_start, create_task, curl, hash_table,
    job, start_agents,
};

fn login(port: u16) -> String {
    let answer = agent_login(port);
    assert_eq!(answer["expires_in_s"], 2, "{answer}");
    answer["token"].as_str().unwrap().to_string()
}

fn subtasks_with(port: u16, token: &str) -> (u16, String) {
    curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("https://127.0.0.1:{port}/v1/subtasks"),
    ])
}

#[test]
fn forged_and_expired_sessions_and_oversized_bodies_are_refused_and_the_controller_logs_in_again() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let mut agent = Agent::configure(sandbox.dir.path(), "brief", 1);
    agent.start_with(&["--session-s", "2"]);
    controller.register(&agent);

    let token = login(agent.port);
    assert_eq!(subtasks_with(agent.port, &token).0, 200);
    // A token of the right shape that the agent never gave.
    let forged: String = token
        .chars()
        .map(|c| if c == 'a' { 'b' } else { 'a' })
        .collect();
    let (status, body) = subtasks_with(agent.port, &forged);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unknown or expired"), "{body}");
    // The session ends after its time.
    std::thread::sleep(Duration::from_millis(2500));
    let (status, body) = subtasks_with(agent.port, &token);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("log in again"), "{body}");

    // A body above the limit is refused before it is read whole, by both daemons.
    let big = sandbox.path("big.json");
    std::fs::write(&big, format!("{{\"task\": \"{}\"}}", "x".repeat(9 << 20))).unwrap();
    let token = login(agent.port);
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", big.display()),
        &format!("https://127.0.0.1:{}/v1/subtasks", agent.port),
    ]);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("larger than the limit"), "{body}");
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", big.display()),
        &format!("{}/v1/tasks", controller.url()),
    ]);
    assert_eq!(status, 413, "{body}");

    // The controller's session with the agent expired meanwhile: it logs in again by
    // itself, and a task runs through.
    hash_table("rs_brief", 5_000);
    fresh_schema("wh_brief");
    let toml = "[[tables]]\nname = \"src_pg.rs_brief\"\n";
    create_and_start(
        &controller,
        &sandbox,
        "brief",
        &job("brief", toml, &s3::unique_bucket("brief"), "wh_brief"),
        &[],
    );
    let out = controller.cli(&["tasks", "wait", "brief", "--timeout", "60"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_warehouse_equals_source("wh_brief", &["rs_brief"]);
}

#[test]
fn a_corrupt_store_is_refused_with_its_path_and_left_as_it_was() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let agents = start_agents(&sandbox, &controller, 1, 1);
    let mut agent = agents.into_iter().next().unwrap();
    agent.kill();
    let mut controller = controller;
    controller.kill();

    for (store, args) in [
        (
            agent.dir.join("agent.redb"),
            vec!["agent", "serve", "--dir", agent.dir.to_str().unwrap()],
        ),
        (
            controller.dir.join("controller.redb"),
            vec![
                "controller",
                "serve",
                "--dir",
                controller.dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
        ),
    ] {
        // Garbage over the header: what a failing disk or a stray `cp` leaves.
        let mut bytes = std::fs::read(&store).unwrap();
        for b in bytes.iter_mut().take(4096) {
            *b = 0x5a;
        }
        std::fs::write(&store, &bytes).unwrap();
        let out = dbhaul(&args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let said = stderr(&out);
        assert!(said.contains(store.to_str().unwrap()), "{said}");
        assert!(said.contains("left as it is"), "{said}");
        assert_eq!(
            std::fs::read(&store).unwrap(),
            bytes,
            "{} was changed",
            store.display()
        );
    }
}

// ---- faults against real processes, each ending with the warehouse equal to the source ----

/// A controller and `n` agents (one slot each) on a task of `parts` partitions of a fresh
/// table, copied into a fresh schema. `rewrite` may change the job (a proxy's endpoint).
struct Fault {
    sandbox: Sandbox,
    controller: Controller,
    agents: Vec<Agent>,
    table: String,
    schema: String,
}

impl Fault {
    fn new(name: &str, agents: usize, rows: u32) -> Fault {
        let sandbox = Sandbox::new();
        let controller = Controller::start(sandbox.dir.path());
        let agents = start_agents(&sandbox, &controller, agents, 1);
        let table = format!("rf_{name}");
        hash_table(&table, rows);
        let schema = format!("wh_{name}");
        fresh_schema(&schema)
            .batch_execute(&format!(
                "CREATE TABLE {schema}.{table} (id integer, h varchar(64))"
            ))
            .unwrap();
        Fault {
            sandbox,
            controller,
            agents,
            table,
            schema,
        }
    }

    /// Create the task (planned now, while the source is free) without starting it.
    fn create(&self, parts: u32, rewrite: impl Fn(String) -> String) {
        let toml = format!(
            "[[tables]]\nname = \"src_pg.{}\"\npartition = {{ column = \"id\", ranges = {parts} }}\n",
            self.table
        );
        let text = rewrite(job(
            "fault",
            &toml,
            &s3::unique_bucket(&self.table.replace('_', "-")),
            &self.schema,
        ));
        create_task(&self.controller, &self.sandbox, "fault", &text, &[]);
    }

    /// Hold the source table locked (its extract waits) until the sender is used.
    fn lock_source(&self) -> std::sync::mpsc::Sender<()> {
        let (locked, release) =
            crate::observe::hold_lock(&format!("src_pg.{}", self.table), "ACCESS EXCLUSIVE");
        locked.recv().unwrap();
        release
    }

    /// Hold the warehouse table locked against writes (its copy waits) likewise.
    fn lock_warehouse(&self) -> std::sync::mpsc::Sender<()> {
        let (locked, release) =
            crate::observe::hold_write_lock(&format!("{}.{}", self.schema, self.table));
        locked.recv().unwrap();
        release
    }

    fn start(&self) {
        let out = self.controller.cli(&["tasks", "start", "fault"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn wait_until(&self, what: &str, until: impl Fn(&[serde_json::Value]) -> bool) {
        self.controller
            .wait_for("fault", Duration::from_secs(90), |v| {
                until(v["subtasks"].as_array().unwrap())
            });
        eprintln!("fault injected: {what}");
    }

    /// Wait for the end, which must come without anyone's help; then the warehouse must
    /// equal the source, each row once.
    fn finish_by_itself(&self) -> serde_json::Value {
        let out = self
            .controller
            .cli(&["tasks", "wait", "fault", "--timeout", "180"]);
        assert!(
            out.status.success(),
            "{}\n{:#}",
            stderr(&out),
            self.controller.show("fault")
        );
        assert_warehouse_equals_source(&self.schema, &[self.table.as_str()]);
        self.controller.show("fault")
    }

    /// Wait for the end; resume once if the fault failed subtasks; then the warehouse must
    /// equal the source, each row once. Returns what the task went through.
    fn finish(&self) -> serde_json::Value {
        let out = self
            .controller
            .cli(&["tasks", "wait", "fault", "--timeout", "180"]);
        if !out.status.success() {
            let view = self.controller.show("fault");
            assert_ne!(view["state"], "Running", "{view:#}");
            let out = self.controller.cli(&["tasks", "resume", "fault"]);
            assert!(out.status.success(), "{}", stderr(&out));
            let out = self
                .controller
                .cli(&["tasks", "wait", "fault", "--timeout", "180"]);
            assert!(out.status.success(), "after resume: {}", stderr(&out));
        }
        assert_warehouse_equals_source(&self.schema, &[self.table.as_str()]);
        self.controller.show("fault")
    }
}

fn running(subtasks: &[serde_json::Value]) -> usize {
    subtasks.iter().filter(|s| s["state"] == "Running").count()
}

fn restarted(view: &serde_json::Value) -> usize {
    view["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["attempts"].as_u64().unwrap_or(0) >= 2)
        .count()
}

#[test]
fn an_agent_killed_during_extract_runs_its_subtask_again_and_each_row_lands_once() {
    let mut f = Fault::new("kill_extract", 1, 20_000);
    f.create(2, |j| j);
    // The source table locked: the extract's SELECT waits, the subtask is running.
    let release = f.lock_source();
    f.start();
    f.wait_until("agent killed while extracting", |s| running(s) == 1);
    std::thread::sleep(Duration::from_millis(500));
    f.agents[0].kill();
    release.send(()).unwrap();
    f.agents[0].start();
    let view = f.finish();
    assert!(restarted(&view) >= 1, "{view:#}");
}

#[test]
fn an_agent_killed_during_upload_runs_its_subtask_again_and_each_row_lands_once() {
    let proxy = s3::Proxy::start(s3::moto().port);
    let mut f = Fault::new("kill_upload", 1, 20_000);
    let endpoint = proxy.endpoint();
    f.create(2, |j| j.replace(&s3::moto().endpoint(), &endpoint));
    // The extract waits on a lock until S3 is gone (after the agent checked the bucket);
    // then uploads are tried again and again, and the agent dies meanwhile.
    let release = f.lock_source();
    f.start();
    f.wait_until("S3 stopped", |s| running(s) == 1);
    proxy.stop();
    release.send(()).unwrap();
    f.wait_until("agent killed while uploading", |s| {
        s.iter()
            .any(|s| s["extract"]["state"] == "Completed" && s["state"] == "Running")
    });
    f.agents[0].kill();
    proxy.resume();
    f.agents[0].start();
    let view = f.finish();
    assert!(restarted(&view) >= 1, "{view:#}");
}

#[test]
fn every_dbhaul_process_killed_at_once_mid_copy_and_restarted_lands_each_row_once() {
    let mut f = Fault::new("kill_all", 2, 40_000);
    f.create(4, |j| j);
    let release = f.lock_warehouse();
    f.start();
    f.wait_until("controller and agents killed mid-copy", |s| {
        s.iter()
            .filter(|s| s["upload"]["state"] == "Completed" && s["state"] == "Running")
            .count()
            == 2
    });
    // A machine's crash: every process at once, then all started again.
    f.controller.kill();
    for agent in &mut f.agents {
        agent.kill();
    }
    release.send(()).unwrap();
    f.controller.restart();
    for agent in &mut f.agents {
        agent.start();
    }
    let view = f.finish();
    assert!(restarted(&view) >= 2, "{view:#}");
}

#[test]
fn a_source_connection_killed_by_the_server_is_run_again_by_itself_and_lands_each_row_once() {
    let f = Fault::new("source_cut", 1, 20_000);
    f.create(1, quick_retry);
    let release = f.lock_source();
    f.start();
    f.wait_until("source connection terminated mid-extract", |s| {
        running(s) == 1
    });
    terminate_extract(&f);
    release.send(()).unwrap();
    let view = f.finish_by_itself();
    // Run again by itself, as often as the connection stayed lost (backoff doubling).
    let attempts = view["subtasks"][0]["attempts"].as_u64().unwrap();
    assert!((2..=3).contains(&attempts), "{view:#}");
    let log = stdout(&f.controller.cli(&["tasks", "log", "fault"]));
    assert!(
        log.contains("subtask lost a connection") && log.contains("57P01"),
        "{log}"
    );
    // Counted where Prometheus looks.
    let (_, metrics) = curl(&[&format!("https://127.0.0.1:{}/metrics", f.agents[0].port)]);
    assert!(
        metrics.contains("dbhaul_failures_total{task=\"fault\",stage=\"extract\"} 1")
            && metrics.contains("dbhaul_retries_total{stage=\"subtask\"} 1"),
        "{metrics}"
    );
}

/// Terminate the backend that runs the extract's query (waiting on a lock), as an
/// administrator would; not the session that holds the lock.
fn terminate_extract(f: &Fault) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let killed: i64 = pg()
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE query ILIKE $1 AND query NOT ILIKE 'LOCK TABLE%' \
                 AND pid <> pg_backend_pid()",
                &[&format!("%src_pg%{}%", f.table)],
            )
            .unwrap()
            .get(0);
        if killed > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no extract backend found"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn with_no_retry_left_a_lost_source_fails_clearly_and_resume_lands_each_row_once() {
    let f = Fault::new("source_fail", 1, 20_000);
    f.create(1, |j| j.replacen("[task]\n", "[task]\nretries = 0\n", 1));
    let release = f.lock_source();
    f.start();
    f.wait_until("source connection terminated, no retry", |s| {
        running(s) == 1
    });
    terminate_extract(&f);
    release.send(()).unwrap();
    let failed = f
        .controller
        .wait_for("fault", Duration::from_secs(60), |v| v["state"] == "Failed");
    let error = failed["subtasks"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("terminating connection due to administrator command")
            && error.contains("57P01")
            && error.contains("rf_source_fail"),
        "{error}"
    );
    f.finish();
}

/// Lost connections are tried again after 1 s instead of 30.
fn quick_retry(job: String) -> String {
    job.replacen("[task]\n", "[task]\nretry_wait_s = 1\n", 1)
}

#[test]
fn a_warehouse_cut_off_mid_copy_is_run_again_by_itself_and_lands_each_row_once() {
    let warehouse = s3::Proxy::start(5432);
    let f = Fault::new("warehouse_cut", 1, 20_000);
    let port = warehouse.port();
    f.create(1, |j| {
        quick_retry(j.replace("@127.0.0.1:5432/", &format!("@127.0.0.1:{port}/")))
    });
    let release = f.lock_warehouse();
    f.start();
    f.wait_until("warehouse connections cut mid-copy", |s| {
        s.iter()
            .any(|s| s["upload"]["state"] == "Completed" && s["state"] == "Running")
    });
    // The warehouse goes away (every connection cut, new ones refused) and comes back.
    warehouse.stop();
    std::thread::sleep(Duration::from_secs(2));
    release.send(()).unwrap();
    warehouse.resume();
    let view = f.finish_by_itself();
    // Run again by itself, as often as the connection stayed lost (backoff doubling).
    let attempts = view["subtasks"][0]["attempts"].as_u64().unwrap();
    assert!((2..=3).contains(&attempts), "{view:#}");
}

#[test]
fn an_s3_outage_of_thirty_seconds_mid_upload_is_ridden_out_with_each_row_once() {
    let proxy = s3::Proxy::start(s3::moto().port);
    let f = Fault::new("s3_outage", 1, 20_000);
    let endpoint = proxy.endpoint();
    f.create(1, |j| j.replace(&s3::moto().endpoint(), &endpoint));
    let release = f.lock_source();
    f.start();
    f.wait_until("S3 stopped", |s| running(s) == 1);
    proxy.stop();
    release.send(()).unwrap();
    f.wait_until("S3 gone for 30 s mid-upload", |s| {
        s.iter().any(|s| s["extract"]["state"] == "Completed")
    });
    std::thread::sleep(Duration::from_secs(30));
    proxy.resume();
    let view = f.finish();
    assert_eq!(
        view["subtasks"][0]["attempts"], 1,
        "ridden out, not rerun: {view:#}"
    );
}

#[test]
fn a_full_working_folder_on_an_agent_fails_clearly_and_resume_lands_each_row_once_when_space_is_back()
 {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let mut agent = Agent::configure(sandbox.dir.path(), "cramped", 1);
    // The agent's working folder: half a megabyte, less than one 1 MB chunk.
    let work = crate::errors::Mount::tmpfs(&agent.dir.join("work"), "size=512k");
    agent.start();
    controller.register(&agent);
    hash_table("rf_full", 60_000);
    fresh_schema("wh_full");
    let toml = "[[tables]]\nname = \"src_pg.rf_full\"\n";
    create_and_start(
        &controller,
        &sandbox,
        "full",
        &job("full", toml, &s3::unique_bucket("full"), "wh_full"),
        &[],
    );
    let failed = controller.wait_for("full", Duration::from_secs(60), |v| v["state"] == "Failed");
    let error = failed["subtasks"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("the working folder is full") && error.contains("free space"),
        "{error}"
    );
    // Space is back: resumed, the task completes and every row lands once.
    work.remount("size=64m");
    let out = controller.cli(&["tasks", "resume", "full"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "wait", "full", "--timeout", "120"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_warehouse_equals_source("wh_full", &["rf_full"]);
    // The agent lets go of the folder before it is unmounted.
    agent.kill();
}
