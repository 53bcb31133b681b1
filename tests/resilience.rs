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
        "-H",
        &controller.auth_header(),
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
        Fault::with_table(name, agents, "id integer, h varchar(64)", |table| {
            hash_table(table, rows)
        })
    }

    /// A fault on a table `make` creates in `src_pg`, whose warehouse copy has `columns`.
    fn with_table(name: &str, agents: usize, columns: &str, make: impl Fn(&str)) -> Fault {
        let sandbox = Sandbox::new();
        let controller = Controller::start(sandbox.dir.path());
        let agents = start_agents(&sandbox, &controller, agents, 1);
        let table = format!("rf_{name}");
        make(&table);
        let schema = format!("wh_{name}");
        fresh_schema(&schema)
            .batch_execute(&format!("CREATE TABLE {schema}.{table} ({columns})"))
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
        self.create_with(&toml, rewrite);
    }

    /// Create the task over `toml` (`[[tables]]` entries) likewise.
    fn create_with(&self, toml: &str, rewrite: impl Fn(String) -> String) {
        let text = rewrite(job(
            "fault",
            toml,
            &s3::unique_bucket(&self.table.replace('_', "-")),
            &self.schema,
        ));
        create_task(&self.controller, &self.sandbox, "fault", &text, &[]);
    }

    /// A started task of `parts` subtasks whose S3 goes away (a proxy stopped) once the
    /// agent has checked the bucket: the extract waits on a lock until then.
    fn with_s3_gone(name: &str, parts: u32) -> (Fault, s3::Proxy) {
        let proxy = s3::Proxy::start(s3::moto().port);
        let f = Fault::new(name, 1, 20_000);
        let endpoint = proxy.endpoint();
        f.create(parts, |j| j.replace(&s3::moto().endpoint(), &endpoint));
        let release = f.lock_source();
        f.start();
        f.wait_until("S3 stopped", |s| running(s) == 1);
        proxy.stop();
        release.send(()).unwrap();
        (f, proxy)
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

    /// Wait for the end, which must come without anyone's help.
    fn ends_by_itself(&self) {
        let out = self
            .controller
            .cli(&["tasks", "wait", "fault", "--timeout", "180"]);
        assert!(
            out.status.success(),
            "{}\n{:#}",
            stderr(&out),
            self.controller.show("fault")
        );
    }

    /// Wait for the end, which must come without anyone's help; then the warehouse must
    /// equal the source, each row once.
    fn finish_by_itself(&self) -> serde_json::Value {
        self.ends_by_itself();
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
    // Uploads are tried again and again, and the agent dies meanwhile.
    let (mut f, proxy) = Fault::with_s3_gone("kill_upload", 2);
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
        log.contains("subtask runs again in 1 s (retry 1 of 2)") && log.contains("57P01"),
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
    terminate_until_found(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE query ILIKE $1 AND query NOT ILIKE 'LOCK TABLE%' \
         AND pid <> pg_backend_pid()",
        &format!("%src_pg%{}%", f.table),
    );
}

/// Run `terminate` (a count of `pg_terminate_backend` calls, given `parameter`) until it
/// terminates a backend; 20 s at most.
fn terminate_until_found(terminate: &str, parameter: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let killed: i64 = pg().query_one(terminate, &[&parameter]).unwrap().get(0);
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

/// `dbhaul run` runs a subtask again by itself after a fault that may pass, as the
/// settings page says (`retries`, `retry_wait_s`), like an agent: the extract's
/// connection, terminated by the server while it waits on a lock, is opened again after
/// 1 s, and every row is extracted once.
#[test]
fn dbhaul_run_runs_a_subtask_again_after_a_lost_source_connection() {
    let sandbox = Sandbox::new();
    pg_hash_table("run_retry", 20_000);
    let mut lock = pg();
    lock.batch_execute("BEGIN; LOCK TABLE src_pg.run_retry IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let killer = std::thread::spawn(move || {
        terminate_until_found(
            "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a \
             JOIN pg_locks l ON l.pid = a.pid \
             WHERE NOT l.granted AND l.relation = $1::text::regclass AND a.application_name = 'dbhaul'",
            "src_pg.run_retry",
        );
        lock.batch_execute("COMMIT").unwrap();
    });
    let job = sandbox.job(
        "run-retry",
        &job_text(
            "run-retry",
            &pg_odbc(),
            "[[tables]]\nname = \"src_pg.run_retry\"\n",
            "retries = 2\nretry_wait_s = 1",
        ),
    );
    let run = sandbox.run_job(&job);
    killer.join().unwrap();
    let summary = run.assert_ok();
    assert_eq!(summary["rows"], 20_000, "{summary:#}");
    assert!(
        run.stderr
            .contains("subtask runs again in 1 s (retry 1 of 2)")
            && run.stderr.contains("57P01"),
        "{}",
        run.stderr
    );
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
    let (f, proxy) = Fault::with_s3_gone("s3_outage", 1);
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
fn a_full_working_folder_on_an_agent_waits_for_space_and_goes_on_by_itself_when_it_is_back() {
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
    let text = job("full", toml, &s3::unique_bucket("full"), "wh_full").replacen(
        "[task]\n",
        "[task]\nretries = 4\nretry_wait_s = 3\n",
        1,
    );
    create_and_start(&controller, &sandbox, "full", &text, &[]);
    // The subtask stops clearly, and waits to run again.
    let waiting = controller.wait_for("full", Duration::from_secs(60), |v| {
        v["subtasks"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("runs again in"))
    });
    let error = waiting["subtasks"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("the working folder is full") && error.contains("free space"),
        "{error}"
    );
    assert_ne!(waiting["state"], "Failed", "{waiting:#}");
    // Space is back: it goes on by itself, and every row lands once.
    work.remount("size=64m");
    let out = controller.cli(&["tasks", "wait", "full", "--timeout", "120"]);
    assert!(
        out.status.success(),
        "{}\n{:#}",
        stderr(&out),
        controller.show("full")
    );
    assert_warehouse_equals_source("wh_full", &["rf_full"]);
    let view = controller.show("full");
    assert!(restarted(&view) >= 1, "{view:#}");
    // The agent lets go of the folder before it is unmounted.
    agent.kill();
}

/// A table of 400,000 rows keyed on (a, b): a number and a text with a quote in it.
fn composite_key_table(table: &str) {
    pg().batch_execute(&format!(
        "DROP TABLE IF EXISTS src_pg.{table};
         CREATE TABLE src_pg.{table} AS SELECT i / 3 AS a,
             CAST('k' || (i % 3) || '''x' AS varchar(16)) AS b,
             CAST(md5(i::text) || md5((i * 7)::text) AS varchar(80)) AS h
           FROM generate_series(1, 400000) AS i;
         ALTER TABLE src_pg.{table} ADD PRIMARY KEY (a, b);
         ANALYZE src_pg.{table};"
    ))
    .unwrap();
}

/// A number from the agent's `/metrics`: the sample named `series` exactly.
fn metric(port: u16, series: &str) -> f64 {
    let (_, text) = curl(&[&format!("https://127.0.0.1:{port}/metrics")]);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

#[test]
fn an_agent_killed_mid_table_resumes_after_its_last_durable_chunk_and_each_row_lands_once() {
    let mut f = Fault::with_table(
        "resume",
        1,
        "a integer, b varchar(16), h varchar(80)",
        composite_key_table,
    );
    let toml = format!("[[tables]]\nname = \"src_pg.{}\"\n", f.table);
    f.create_with(&toml, |j| {
        j.replacen("[task]\n", "[task]\nsorting = \"if_possible\"\n", 1)
    });
    // The copy held on a lock: the pipeline fills and the extract waits for credits, with
    // several chunks sealed and checkpointed.
    let release = f.lock_warehouse();
    f.start();
    f.wait_until("agent killed with chunks durable mid-table", |s| {
        s[0]["state"] == "Running" && s[0]["chunks"].as_u64().unwrap_or(0) >= 4
    });
    let subtask = f.agents[0]
        .dir
        .join(format!("work/fault/src_pg.{}", f.table));
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(subtask.join("checkpoint.json")).unwrap()).unwrap();
    let durable: u64 = checkpoint["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rows"].as_u64().unwrap())
        .sum();
    assert!(durable > 0, "{checkpoint:#}");
    assert_eq!(checkpoint["last_key"].as_array().unwrap().len(), 2);
    f.agents[0].kill();
    release.send(()).unwrap();
    f.agents[0].start();
    let view = f.finish();
    assert_eq!(view["subtasks"][0]["attempts"], 2, "{view:#}");

    // Resumed, not started over: the restarted agent read fewer rows than the table holds
    // (at most what the killed one had not made durable), and kept the run.
    let read = metric(
        f.agents[0].port,
        "dbhaul_stage_rows_total{task=\"fault\",stage=\"extract\"}",
    ) as u64;
    eprintln!("{durable} rows durable at the kill; {read} read after the restart");
    assert!(
        read > 0 && read <= 400_000 - durable,
        "{read} rows read again, {durable} were durable"
    );
    let log = stdout(&f.controller.cli(&["tasks", "log", "fault"]));
    assert!(log.contains("resumes after chunk"), "{log}");
    // Both attempts were read in key ranges on two connections, the second after the
    // checkpoint's last key.
    assert_eq!(log.matches("read in key ranges").count(), 2, "{log}");
    let runs: i64 = pg()
        .query_one(
            &format!(
                "SELECT count(DISTINCT run) FROM {}.dbhaul_loads WHERE task = 'fault'",
                f.schema
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(runs, 1, "one run, resumed");
    // Done: no checkpoint is left to resume from.
    assert!(!subtask.join("checkpoint.json").exists());
}

/// A PostgreSQL server of the test's own (`initdb` in a scratch folder, its own port), so
/// it can be crashed and restarted without disturbing the server other tests share.
struct PrivatePg {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    port: u16,
}

impl PrivatePg {
    fn start() -> PrivatePg {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if is_root() {
            let status = std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&data)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let pg = PrivatePg {
            port: s3::free_port(),
            data,
            _dir: dir,
        };
        pg.run(
            "initdb",
            &["-A", "trust", "-U", "postgres", "--no-sync", "-D"],
            true,
        );
        pg.up();
        pg
    }

    /// Run one of the server's programs as the `postgres` user (when we are root).
    fn run(&self, program: &str, args: &[&str], with_data: bool) {
        let bin = pg_bin().join(program);
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            std::process::Command::new(bin)
        };
        command.args(args);
        if with_data {
            command.arg(&self.data);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{program}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-w",
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "start",
                "-D",
            ],
            true,
        );
    }

    /// A crash: every backend gone at once, no shutdown checkpoint.
    fn crash(&self) {
        self.run("pg_ctl", &["-m", "immediate", "stop", "-D"], true);
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            postgres::NoTls,
        )
        .unwrap()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let bin = pg_bin().join("pg_ctl");
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            std::process::Command::new(bin)
        };
        let _ = command
            .args(["-m", "immediate", "stop", "-D"])
            .arg(&self.data)
            .output();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The newest PostgreSQL server's programs on this machine.
fn pg_bin() -> std::path::PathBuf {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs under /usr/lib/postgresql: run appliance/setup.sh")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    versions.sort();
    let version = versions.last().expect("a PostgreSQL version");
    std::path::PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"))
}

/// Count and an order-independent checksum of every row (the sum of the first 60 bits
/// of each row's MD5).
fn checksum(client: &mut postgres::Client, table: &str) -> (i64, String) {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), coalesce(sum(('x' || substr(md5(concat_ws('|', id, h)), 1, 15))\
                 ::bit(60)::bigint), 0)::text FROM {table}"
            ),
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn the_warehouse_server_crashed_and_restarted_mid_copy_is_run_again_and_lands_each_row_once() {
    let warehouse = PrivatePg::start();
    let f = Fault::new("wh_restart", 1, 40_000);
    let wh_table = format!("{}.{}", f.schema, f.table);
    warehouse
        .client()
        .batch_execute(&format!(
            "CREATE SCHEMA {}; CREATE TABLE {wh_table} (id integer, h varchar(64))",
            f.schema
        ))
        .unwrap();
    let port = warehouse.port;
    f.create(2, |j| {
        quick_retry(j.replace(
            &format!("@127.0.0.1:5432/{TEST_DB}"),
            &format!("@127.0.0.1:{port}/postgres"),
        ))
    });
    // The copy waits on a lock in the warehouse; the server crashes under it.
    let mut locker = warehouse.client();
    let mut lock = locker.transaction().unwrap();
    lock.batch_execute(&format!("LOCK TABLE {wh_table} IN EXCLUSIVE MODE"))
        .unwrap();
    f.start();
    f.wait_until("warehouse server crashed mid-copy", |s| {
        s.iter()
            .any(|s| s["upload"]["state"] == "Completed" && s["state"] == "Running")
    });
    warehouse.crash();
    drop(lock);
    std::thread::sleep(Duration::from_secs(2));
    warehouse.up();
    f.ends_by_itself();
    let view = f.controller.show("fault");
    assert!(restarted(&view) >= 1, "run again by itself: {view:#}");
    assert_eq!(
        checksum(&mut warehouse.client(), &wh_table),
        checksum(&mut pg(), &format!("src_pg.{}", f.table)),
        "the warehouse holds each source row once"
    );
}
