//! The appliance as users run it: a controller and agents as separate processes on loopback
//! ports, talking HTTPS with pinned certificates. What a user would check: a task spreads
//! over three agents and the warehouse equals the source; the controller can be killed and
//! the agents finish without it; a SIGKILLed agent resumes its subtasks and every row lands
//! once; wrong passwords, fingerprints, plain HTTP, malformed JSON and unknown names are
//! refused with clear errors and change nothing.

mod agents;
mod fleet;
mod tasks;

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

/// An agent of two slots, started and registered with `roles` (`extract,upload`).
fn role_agent(sandbox: &Sandbox, controller: &Controller, name: &str, roles: &str) -> Agent {
    let mut agent = Agent::configure(sandbox.dir.path(), name, 2);
    agent.start();
    controller.register_with(&agent, &["--roles", roles]);
    agent
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
