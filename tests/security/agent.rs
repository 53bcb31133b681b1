//! Attacks on the agents and their registration (issue 23, findings 1, 3, 5, 6 and 9), each
//! against the real daemons: a task that makes the agent load a library of the attacker's
//! choosing, an impostor joining under a registered name, a flood of parallel password
//! guesses, an old password kept working after a change, a second controller taking an
//! agent that belongs to another. Each test fails without its fix.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::daemons::*;
use crate::common::*;

/// The password `dbhaul agent configure` is given anew in these tests.
const NEW_PASSWORD: &str = "Changed7Secret";

/// A shared library that, when anything loads it, creates `marker`: code of the task's
/// choosing running inside the agent. Built with the system's C compiler.
fn marker_library(dir: &Path, marker: &Path) -> PathBuf {
    let source = dir.join("evil.c");
    let library = dir.join("evil.so");
    std::fs::write(
        &source,
        format!(
            "#include <stdio.h>\n\
             __attribute__((constructor)) static void loaded(void) {{\n\
               FILE *f = fopen(\"{}\", \"w\"); if (f) {{ fputs(\"loaded\", f); fclose(f); }}\n\
             }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .expect("a C compiler (cc) builds the test's library");
    assert!(out.status.success(), "cc: {}", stderr(&out));
    library
}

/// Start `agent` with more environment variables (the service user's `ODBCINI`).
fn start_agent_env(agent: &mut Agent, env: &[(&str, &str)], args: &[&str]) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dbhaul"));
    command
        .env_remove("DBHAUL_LOG")
        .env_remove("DBHAUL_CONTROLLER")
        .env_remove("DBHAUL_TOKEN")
        .envs(daemon_env())
        .envs(env.iter().copied())
        .args(["agent", "serve", "--dir", agent.dir.to_str().unwrap()])
        .args(args);
    let log = agent.dir.with_extension("log");
    agent.process = Some(spawn_daemon(command, log, agent.port));
}

/// The process id of the agent serving `dir`.
fn agent_pid(dir: &Path) -> u32 {
    let wanted = format!("serve\0--dir\0{}\0", dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&wanted))
        })
        .expect("the agent's process")
}

/// Peak resident memory (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// One curl run against the agent from `source`: each answer's status, body and
/// Retry-After. `requests` copies of the request run in parallel.
struct Answer {
    status: u16,
    body: String,
    retry_after: Option<u64>,
}

fn curl_agent(
    agent: &Agent,
    source: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    requests: usize,
) -> Vec<Answer> {
    let url = format!("https://127.0.0.1:{}{path}", agent.port);
    let mut command = Command::new("curl");
    command.args([
        "-sk",
        "--interface",
        source,
        "-X",
        method,
        "-H",
        "Content-Type: application/json",
        "-w",
        "\n@@%{http_code} %header{retry-after}\n",
    ]);
    if requests > 1 {
        command.args(["--parallel", "--parallel-immediate", "--parallel-max"]);
        command.arg(requests.to_string());
    }
    if let Some(body) = body {
        command.args(["-d", body]);
    }
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    for _ in 0..requests {
        command.arg(&url);
    }
    let out = command.output().expect("curl");
    let text = stdout(&out);
    let mut answers = Vec::new();
    let mut body = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("@@") {
            let mut parts = rest.split(' ');
            let status = parts.next().unwrap_or("0").parse().unwrap_or(0);
            let retry_after = parts.next().and_then(|v| v.trim().parse().ok());
            answers.push(Answer {
                status,
                body: std::mem::take(&mut body),
                retry_after,
            });
        } else {
            body.push_str(line);
        }
    }
    answers
}

fn login(agent: &Agent, source: &str, password: &str) -> Answer {
    curl_agent(
        agent,
        source,
        "POST",
        "/v1/login",
        Some(&format!(r#"{{"password":"{password}"}}"#)),
        None,
        1,
    )
    .pop()
    .expect("an answer")
}

fn token_of(answer: &Answer) -> String {
    let value: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    value["token"].as_str().unwrap().to_string()
}

/// A small extract-only job over `table` of the PostgreSQL source.
fn small_job(sandbox: &Sandbox, task: &str, table: &str) -> PathBuf {
    sandbox.job(
        task,
        &job_text(
            task,
            &pg_odbc(),
            &format!("[[tables]]\nname = \"src_pg.{table}\"\n"),
            "mode = \"extract\"",
        ),
    )
}

fn agents_json(controller: &Controller) -> Vec<serde_json::Value> {
    let out = controller.cli(&["agents", "list", "--json"]);
    assert!(out.status.success(), "agents list: {}", stderr(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Finding 1: any user who can create a task named `Driver=/their/library.so` and the agent
/// loaded it. Every way a connection string names a library is tried; none loads it, each
/// is refused naming the setting that would allow it, and the setting does allow it.
#[test]
fn an_agent_loads_no_driver_library_a_task_names_by_path() {
    let sandbox = Sandbox::new();
    let root = sandbox.dir.path();
    let marker = root.join("loaded.marker");
    let library = marker_library(root, &marker);
    let lib = library.display().to_string();
    // The library works: a user's own `dbhaul tables` (their own privileges) loads it.
    let _ = Command::new(env!("CARGO_BIN_EXE_dbhaul"))
        .args(["tables", "--source", &format!("Driver={lib};")])
        .output()
        .unwrap();
    assert!(
        marker.exists(),
        "the test's library creates its marker when loaded"
    );
    std::fs::remove_file(&marker).unwrap();

    // The service user's own ~/.odbc.ini (here ODBCINI) and a file DSN, both naming it.
    let user_ini = root.join("user-odbc.ini");
    std::fs::write(&user_ini, format!("[evil]\nDriver={lib}\n")).unwrap();
    let file_dsn = root.join("evil.dsn");
    std::fs::write(&file_dsn, format!("[ODBC]\nDRIVER={lib}\n")).unwrap();
    let saved = root.join("saved.dsn");
    // An SQLite database the driver opens, so that it would load the extension it is given.
    std::fs::write(root.join("x.db"), b"").unwrap();
    let controller = Controller::start(root);
    let mut agent = Agent::configure(root, "drivers", 1);
    start_agent_env(&mut agent, &[("ODBCINI", user_ini.to_str().unwrap())], &[]);
    controller.register(&agent);

    let server = format!(
        "Server={};Port=5432;Database={TEST_DB};Uid=postgres;",
        pg_host()
    );
    let attacks = [
        format!("Driver={lib};{server}"),
        format!("DRIVER={{{lib}}};{server}"),
        format!(" driver = {lib} ;{server}"),
        format!("Driver={{PostgreSQL Unicode}};Driver={lib};{server}"),
        format!("Driver={lib};Driver={{PostgreSQL Unicode}};{server}"),
        format!("DSN=evil;{server}"),
        format!("FILEDSN={};{server}", file_dsn.display()),
        format!(
            "Driver={{PostgreSQL Unicode}};SAVEFILE={};{server}",
            saved.display()
        ),
        format!(
            "Driver={{SQLite3}};Database={};LoadExt={lib}",
            root.join("x.db").display()
        ),
    ];
    for (i, connection) in attacks.iter().enumerate() {
        let task = format!("drv{i}");
        let job = sandbox.job(
            &task,
            &job_text(
                &task,
                connection,
                "[[tables]]\nname = \"t\"\n",
                "mode = \"extract\"",
            ),
        );
        let out = controller.cli(&["tasks", "create", job.to_str().unwrap()]);
        let said = stderr(&out);
        assert!(!out.status.success(), "{connection}: the task was created");
        assert!(
            said.contains("driver refused") && said.contains("allow-driver"),
            "{connection}: {said}"
        );
        assert!(
            !marker.exists(),
            "{connection}: the agent loaded the library"
        );
        assert!(
            !saved.exists(),
            "{connection}: the driver manager wrote a file"
        );
    }
    let log = agent.process.as_ref().unwrap().log_text();
    assert!(log.contains("refused"), "{log}");

    // The agent's own setting allows that one library, at once, without a restart.
    let out = run_with_stdin(
        &[
            "agent",
            "configure",
            "--dir",
            agent.dir.to_str().unwrap(),
            "--allow-driver",
            &lib,
        ],
        "",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let job = sandbox.job(
        "allowed",
        &job_text(
            "allowed",
            &format!("Driver={lib};{server}"),
            "[[tables]]\nname = \"t\"\n",
            "mode = \"extract\"",
        ),
    );
    let _ = controller.cli(&["tasks", "create", job.to_str().unwrap()]);
    assert!(marker.exists(), "an allowed library is loaded");
}

/// Finding 5 (first half): 300 parallel wrong passwords ran at ~20 guesses a second and
/// took ~1 GB (one thread and one Argon2 buffer each). Now at most two verifications run at
/// once and an address with a few failures is answered 429 with Retry-After before its
/// password is looked at, however many it sends in parallel; another address still logs in.
#[test]
fn parallel_password_guesses_are_bounded_and_throttled_per_source() {
    let sandbox = Sandbox::new();
    let mut agent = Agent::configure(sandbox.dir.path(), "guarded", 1);
    agent.start();
    let pid = agent_pid(&agent.dir);
    let before = peak_rss_kib(pid);
    let wrong = r#"{"password":"Wrong1Guess"}"#;
    let started = Instant::now();
    let (mut guessed, mut throttled, mut other) = (0usize, 0usize, Vec::new());
    while started.elapsed() < Duration::from_secs(6) {
        for answer in curl_agent(
            &agent,
            "127.0.0.1",
            "POST",
            "/v1/login",
            Some(wrong),
            None,
            300,
        ) {
            match answer.status {
                401 => guessed += 1,
                429 => {
                    assert!(
                        answer.retry_after.is_some_and(|s| s >= 1),
                        "429 without Retry-After"
                    );
                    throttled += 1;
                }
                status => other.push(status),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = guessed as f64 / elapsed;
    let peak = peak_rss_kib(pid);
    eprintln!(
        "{guessed} passwords checked, {throttled} refused with 429 in {elapsed:.1} s: \
         {rate:.2} guesses/s; agent peak RSS {} MiB (before {} MiB)",
        peak / 1024,
        before / 1024
    );
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert!(throttled >= 290, "only {throttled} attempts were throttled");
    assert!(rate < 3.0, "{rate:.2} guesses a second");
    assert!(
        peak < 256 * 1024,
        "the agent's memory peaked at {} MiB",
        peak / 1024
    );

    // The flooding address is still blocked; another address logs in at once.
    let blocked = login(&agent, "127.0.0.1", AGENT_PASSWORD);
    assert_eq!(blocked.status, 429, "{}", blocked.body);
    let other_source = login(&agent, "127.0.0.2", AGENT_PASSWORD);
    assert_eq!(other_source.status, 200, "{}", other_source.body);
}

/// Finding 6: after `dbhaul agent configure` changed the password of a running agent, the
/// old password and its sessions kept working and the new one was refused.
#[test]
fn a_password_changed_on_a_running_agent_takes_effect_at_once() {
    let sandbox = Sandbox::new();
    let mut agent = Agent::configure(sandbox.dir.path(), "rotated", 1);
    agent.start();
    let old = login(&agent, "127.0.0.1", AGENT_PASSWORD);
    assert_eq!(old.status, 200, "{}", old.body);
    let session = token_of(&old);
    let query = |token: &str| {
        curl_agent(
            &agent,
            "127.0.0.1",
            "GET",
            "/v1/subtasks",
            None,
            Some(token),
            1,
        )
        .pop()
        .unwrap()
    };
    assert_eq!(query(&session).status, 200);

    let out = run_with_stdin(
        &[
            "agent",
            "configure",
            "--dir",
            agent.dir.to_str().unwrap(),
            "--password-stdin",
        ],
        &format!("{NEW_PASSWORD}\n"),
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let ended = query(&session);
    assert_eq!(
        ended.status, 401,
        "the old session still works: {}",
        ended.body
    );
    let new = login(&agent, "127.0.0.2", NEW_PASSWORD);
    assert_eq!(new.status, 200, "the new password is refused: {}", new.body);
    assert_eq!(query(&token_of(&new)).status, 200);
    let refused = login(&agent, "127.0.0.3", AGENT_PASSWORD);
    assert_eq!(
        refused.status, 401,
        "the old password still works: {}",
        refused.body
    );
}

/// Finding 3: an impostor who knew an agent's name and the join token joined under that
/// name and took its place (host, port, pinned certificate, credential). Now the join is
/// refused and nothing changes; the real agent, started again, keeps working without
/// joining again; the join token is read from a file, never the command line.
#[test]
fn a_join_never_replaces_a_registered_agent() {
    let sandbox = Sandbox::new();
    let root = sandbox.dir.path();
    pg_hash_table("sec_join", 10);
    let controller = Controller::start(root);
    let token_file = controller.dir.join("join.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let fingerprint = controller.fingerprint();
    let joining = [
        "--controller",
        &controller.url(),
        "--controller-fingerprint",
        &fingerprint,
        "--join-token-file",
    ];

    let mut agent = Agent::configure(root, "fleet", 1);
    let mut args = joining.to_vec();
    args.push(token_file.to_str().unwrap());
    agent.start_with(&args);
    let pid = agent_pid(&agent.dir);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(token.trim()),
        "the join token is on the command line"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agents_json(&controller)
        .iter()
        .any(|a| a["name"] == "fleet")
    {
        assert!(Instant::now() < deadline, "the agent did not join");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The impostor: same name, the join token, its own address and certificate.
    let impostor_root = root.join("impostor");
    std::fs::create_dir_all(&impostor_root).unwrap();
    let mut impostor = Agent::configure(&impostor_root, "fleet", 1);
    impostor.start_with(&args);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = impostor.process.as_ref().unwrap().log_text();
        if log.contains("refused") {
            assert!(log.contains("dbhaul agents remove fleet"), "{log}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the impostor's join got no answer: {log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let list = agents_json(&controller);
    let fleet = list.iter().find(|a| a["name"] == "fleet").unwrap();
    assert_eq!(fleet["port"], agent.port, "{fleet:#}");
    assert_eq!(
        fleet["fingerprint"],
        agent.fingerprint.as_str(),
        "{fleet:#}"
    );

    // The real agent restarts: it does not join again, and the controller still logs in.
    agent.kill();
    agent.start_with(&args);
    let job = small_job(&sandbox, "afterrestart", "sec_join");
    let out = controller.cli(&["tasks", "create", job.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = agent.process.as_ref().unwrap().log_text();
    assert!(log.contains("does not join again"), "{log}");
}

/// Finding 9: one agent was registered with two controllers at once, and deleting a task
/// on one made the agent forget the other's task of the same name. Now the second
/// controller is refused until the first releases the agent.
#[test]
fn an_agent_belongs_to_one_controller_until_released() {
    let sandbox = Sandbox::new();
    let root = sandbox.dir.path();
    pg_hash_table("sec_owner", 10);
    for folder in ["first", "second"] {
        std::fs::create_dir_all(root.join(folder)).unwrap();
    }
    let first = Controller::start(&root.join("first"));
    let second = Controller::start(&root.join("second"));
    let mut agent = Agent::configure(root, "shared", 1);
    agent.start();
    first.register(&agent);
    let job = small_job(&sandbox, "same", "sec_owner");
    let out = first.cli(&["tasks", "create", job.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = second.try_register(&agent, &[]);
    let said = stderr(&out);
    assert!(
        !out.status.success(),
        "the second controller registered the agent"
    );
    assert!(
        said.contains("belongs to another controller") && said.contains("dbhaul agents remove"),
        "{said}"
    );
    assert!(agents_json(&second).is_empty());
    // The second controller cannot touch the first one's task on the agent.
    let out = second.cli(&["tasks", "delete", "same"]);
    assert!(!out.status.success());
    let out = first.cli(&["tasks", "test", "same"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Released by its controller, the agent may go to the other.
    let out = first.cli(&["tasks", "delete", "same"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = first.cli(&["agents", "remove", "shared"]);
    assert!(out.status.success(), "{}", stderr(&out));
    second.register(&agent);
}
