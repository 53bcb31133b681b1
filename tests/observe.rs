//! Following a task as a user does: the status page in a real headless Chromium (the
//! task is visible, started from its button, its subtasks' stage bars move to 100 %, the
//! merged log downloads, each agent's own page lists its subtasks); per-task log files at
//! the task's level, changed while it runs, with no secret in any file; `/metrics` that
//! Prometheus' own parser reads; `tasks watch` until the task ends.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::common::browser::Browser;
use crate::common::daemons::*;
use crate::common::s3;
use crate::common::*;
use crate::daemons::{
    SOURCE_PASSWORD, assert_warehouse_equals_source, create_and_start, hash_table, job,
    start_agents,
};

/// `src_pg.<name>` with `rows` rows and a primary key, analysed so that the catalog's row
/// estimate (the bars' scale) is known.
fn analysed_table(name: &str, rows: u32) {
    hash_table(name, rows);
    pg().batch_execute(&format!("ANALYZE src_pg.{name}"))
        .unwrap();
}

/// Hold `LOCK TABLE … IN EXCLUSIVE MODE` (reads pass, writes wait) from another thread:
/// the first channel says it is held, a message on the second ends it.
pub(crate) fn hold_write_lock(
    table: &str,
) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
    hold_lock(table, "EXCLUSIVE")
}

/// Hold `LOCK TABLE … IN <mode> MODE` from another thread, as [`hold_write_lock`].
pub(crate) fn hold_lock(
    table: &str,
    mode: &str,
) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
    let mode = mode.to_string();
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let table = table.to_string();
    std::thread::spawn(move || {
        let mut client = pg();
        let mut tx = client.transaction().unwrap();
        tx.batch_execute(&format!("LOCK TABLE {table} IN {mode} MODE"))
            .unwrap();
        locked_tx.send(()).unwrap();
        // Released when told, or when the test ends without telling.
        let _ = release_rx.recv_timeout(Duration::from_secs(120));
        tx.commit().unwrap();
    });
    (locked, release)
}

/// `tasks create` only, with the known source password.
fn create(controller: &Controller, sandbox: &Sandbox, task: &str, text: &str) {
    crate::daemons::create_task(controller, sandbox, task, text, &[]);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const SUBTASK_ROWS: &str = "return [...document.querySelectorAll('#subtasks tr[data-subtask]')]
    .map(r => ({
        id: r.dataset.subtask,
        state: r.dataset.state,
        agent: r.cells[1].innerText,
        extract: r.querySelector('[data-stage=extract] .bar')?.dataset.percent ?? null,
        upload: r.querySelector('[data-stage=upload] .bar')?.dataset.percent ?? null,
        copy: r.querySelector('[data-stage=copy] .bar')?.dataset.percent ?? null,
        copy_fill: r.querySelector('[data-stage=copy] .fill')?.style.width ?? null,
    }))";

#[test]
fn the_status_page_follows_a_task_over_two_agents_and_downloads_its_merged_log() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let agents = start_agents(&sandbox, &controller, 2, 1);
    analysed_table("ob_page", 60_000);
    fresh_schema("wh_page")
        .batch_execute("CREATE TABLE wh_page.ob_page (id integer, h varchar(64))")
        .unwrap();
    // The warehouse table locked against writes: the copy stage waits, so the page is
    // seen with subtasks running, extracted and uploaded but not yet copied.
    let (locked, release) = hold_write_lock("wh_page.ob_page");
    let bucket = s3::unique_bucket("page");
    let tables =
        "[[tables]]\nname = \"src_pg.ob_page\"\npartition = { column = \"id\", ranges = 4 }\n";
    create(
        &controller,
        &sandbox,
        "paged",
        &job("paged", tables, &bucket, "wh_page")
            .replace("chunk_mb = 1", "chunk_mb = 1\ngzip_level = 6"),
    );

    let wide =
        "[[tables]]\nname = \"src_pg.ob_page\"\npartition = { column = \"id\", ranges = 400 }\n";
    create(
        &controller,
        &sandbox,
        "wide",
        &job("wide", wide, &s3::unique_bucket("wide"), "wh_page"),
    );
    let downloads = sandbox.path("downloads");
    runtime().block_on(async {
        let browser = Browser::start(&downloads).await;
        browser
            .client
            .goto(&format!("{}/#task=paged", controller.url()))
            .await
            .unwrap();
        browser.sign_in(&controller.token()).await;
        // The grid shows the task, the panel below its four pending subtasks and the
        // agents with their capacity.
        browser
            .wait_until(
                "the task's four subtasks",
                Duration::from_secs(20),
                "return document.querySelectorAll('#subtasks tr[data-subtask]').length === 4",
            )
            .await;
        let grid = browser
            .eval("return document.querySelector('#tasks tr[data-task=paged]').innerText")
            .await;
        assert!(grid.as_str().unwrap().contains("Pending"), "{grid}");
        browser
            .wait_until(
                "both agents up",
                Duration::from_secs(20),
                "return [...document.querySelectorAll('#agents tr[data-agent]')]
                    .filter(r => r.innerText.includes('up')).length === 2",
            )
            .await;

        // Started from its button, as a user would.
        locked.recv().unwrap();
        browser.click("btn-start").await;
        let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut running_shot = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let rows = browser.eval(SUBTASK_ROWS).await;
            let rows = rows.as_array().unwrap();
            for row in rows {
                let id = row["id"].as_str().unwrap().to_string();
                seen.entry(id)
                    .or_default()
                    .insert(row["state"].as_str().unwrap().to_string());
            }
            // One subtask per agent runs (one slot each), its rows read and sent, its
            // copy waiting on the lock: the bars tell the stages apart.
            let waiting_copy = rows
                .iter()
                .filter(|r| {
                    r["state"] == "Running"
                        && r["extract"] == "100"
                        && r["upload"] == "100"
                        && r["copy"] == "0"
                })
                .count();
            if running_shot.is_none() && waiting_copy == 2 {
                assert_eq!(
                    rows.iter().filter(|r| r["state"] == "Pending").count(),
                    2,
                    "{rows:#?}"
                );
                // The bars' width eases in: let it settle for the picture.
                tokio::time::sleep(Duration::from_millis(800)).await;
                running_shot = Some(browser.screenshot("status-page-running.png").await);
                release.send(()).unwrap();
            }
            if rows.iter().all(|r| r["state"] == "Completed") {
                for r in rows {
                    for stage in ["extract", "upload", "copy"] {
                        assert_eq!(r[stage], "100", "{r:#}");
                    }
                    assert_eq!(r["copy_fill"], "100%", "{r:#}");
                    assert!(r["agent"].as_str().unwrap().starts_with("agent"), "{r:#}");
                }
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page never showed the task completed: {rows:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Each subtask went from pending to completed on the page; two were seen running
        // with their copy waiting.
        assert!(running_shot.is_some(), "never seen running with the copy waiting");
        for (id, states) in &seen {
            assert!(
                states.contains("Pending") && states.contains("Completed"),
                "{id}: {states:?}"
            );
        }
        browser
            .wait_until(
                "the task completed in the grid",
                Duration::from_secs(10),
                "return document.querySelector('#tasks tr[data-task=paged]').innerText.includes('Completed')",
            )
            .await;
        let done = browser.screenshot("status-page.png").await;
        eprintln!(
            "screenshots: {} and {}",
            done.display(),
            running_shot.map(|p| p.display().to_string()).unwrap_or_default()
        );

        // One download: the controller's lines and both agents', in time order.
        browser.click("btn-log").await;
        let log = browser.downloaded("paged.log").await;
        for origin in ["[controller]", "[agent agent1]", "[agent agent2]"] {
            assert!(log.contains(origin), "{origin} missing in\n{log}");
        }
        let times: Vec<&str> = log.lines().filter_map(|l| l.split(' ').next()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "not in time order:\n{log}");
        assert!(!log.contains(SOURCE_PASSWORD));

        // The test button runs the task's checks from an agent and lists them.
        browser.click("btn-test").await;
        browser
            .wait_until(
                "the test's checks",
                Duration::from_secs(30),
                "return document.querySelector('#message').innerText.includes('test: passed')
                    && document.querySelector('#test-report').innerText.includes('source')",
            )
            .await;

        // The export button saves the task with its state, as `tasks export` does.
        browser.click("btn-export").await;
        let export = browser.downloaded("paged.xml").await;
        assert!(export.contains("<progress state=\"Completed\" subtasks=\"4\""), "{export}");
        assert_eq!(export.matches("<subtask id=").count(), 4, "{export}");
        assert!(!export.contains(SOURCE_PASSWORD));

        // Hundreds of subtasks: a task planned into 400 ranges renders whole within
        // seconds, and the filter narrows it to one.
        browser
            .client
            .goto(&format!("{}/#task=wide", controller.url()))
            .await
            .unwrap();
        let opened = std::time::Instant::now();
        browser
            .wait_until(
                "the wide task's 400 subtasks",
                Duration::from_secs(15),
                "return document.querySelectorAll('#subtasks tr[data-subtask]').length === 400",
            )
            .await;
        eprintln!("400 subtasks rendered {:?} after the page opened", opened.elapsed());
        browser
            .eval(
                "const f = document.querySelector('#subtask-filter');
                 f.value = 'part-042'; f.dispatchEvent(new Event('input')); return true",
            )
            .await;
        browser
            .wait_until(
                "one subtask after filtering",
                Duration::from_secs(5),
                "return [...document.querySelectorAll('#subtasks tr[data-subtask]')]
                    .filter(r => r.offsetParent !== null).length === 1",
            )
            .await;

        // Each agent's own page, over HTTPS, after a login, lists the subtasks it ran.
        for agent in &agents {
            browser
                .client
                .goto(&format!("https://127.0.0.1:{}/", agent.port))
                .await
                .unwrap();
            browser
                .wait_until(
                    "the login form",
                    Duration::from_secs(10),
                    "return !!document.querySelector('#password-input')",
                )
                .await;
            browser
                .eval(&format!(
                    "document.querySelector('#password-input').value = '{AGENT_PASSWORD}';
                     document.querySelector('#login-form').requestSubmit(); return true"
                ))
                .await;
            browser
                .wait_until(
                    "the agent's completed subtasks",
                    Duration::from_secs(10),
                    "const rows = document.querySelectorAll('#agent-subtasks tr[data-subtask]');
                     return rows.length === 2 && [...rows].every(r => r.innerText.includes('Completed'))",
                )
                .await;
            browser
                .screenshot(&format!("agent-page-{}.png", agent.name))
                .await;
        }
    });
    assert_warehouse_equals_source("wh_page", &["ob_page"]);
}

/// Lines of a task's log file (or none when it was never written).
fn log_lines(dir: &Path, task: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(format!("logs/{task}.log")))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn level_of(line: &str) -> &str {
    line.split_whitespace().nth(1).unwrap_or("")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn each_task_logs_at_its_own_level_which_changes_while_it_runs_and_no_log_holds_the_password() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let agents = start_agents(&sandbox, &controller, 1, 2);
    let agent = &agents[0];
    analysed_table("ob_levels", 60_000);
    fresh_schema("wh_levels");
    let tables =
        "[[tables]]\nname = \"src_pg.ob_levels\"\npartition = { column = \"id\", ranges = 2 }\n";
    let with_level = |task: &str, level: &str| {
        let bucket = s3::unique_bucket(task);
        job(task, tables, &bucket, "wh_levels")
            .replace("[task]\n", &format!("[task]\nlog_level = \"{level}\"\n"))
    };
    // One after another: the warehouse table is shared.
    for (task, level) in [("quiet", "ERROR"), ("chatty", "TRACE")] {
        create_and_start(&controller, &sandbox, task, &with_level(task, level), &[]);
        let out = controller.cli(&["tasks", "wait", task, "--timeout", "120"]);
        assert!(out.status.success(), "{task}: {}", stderr(&out));
    }
    // At ERROR, nothing went well enough to say: no INFO line anywhere.
    for dir in [&controller.dir, &agent.dir] {
        let lines = log_lines(dir, "quiet");
        assert!(
            lines.iter().all(|l| level_of(l) == "ERROR"),
            "{}: {lines:#?}",
            dir.display()
        );
    }
    // At TRACE, every level up to TRACE, with task, subtask and chunk fields.
    let chatty = log_lines(&agent.dir, "chatty");
    for level in ["INFO", "DEBUG", "TRACE"] {
        assert!(
            chatty.iter().any(|l| level_of(l) == level),
            "no {level} line: {chatty:#?}"
        );
    }
    assert!(
        chatty
            .iter()
            .any(|l| l.contains("task=chatty subtask=src_pg.ob_levels/part-")
                && l.contains(" chunk=00000001.csv.gz ")),
        "{chatty:#?}"
    );
    assert!(
        log_lines(&controller.dir, "chatty")
            .iter()
            .any(|l| l.contains("task created with 2 subtasks")),
    );

    // Changed while it runs: from ERROR to DEBUG, on the controller and the agent. The
    // warehouse table is locked against writes until the change is made, so the subtasks
    // are still running (their copy waiting) when it comes.
    analysed_table("ob_switch", 60_000);
    pg().batch_execute("CREATE TABLE wh_levels.ob_switch (id integer, h varchar(64))")
        .unwrap();
    let (locked, release) = hold_write_lock("wh_levels.ob_switch");
    locked.recv().unwrap();
    let bucket = s3::unique_bucket("switch");
    let tables =
        "[[tables]]\nname = \"src_pg.ob_switch\"\npartition = { column = \"id\", ranges = 2 }\n";
    create(
        &controller,
        &sandbox,
        "switch",
        &job("switch", tables, &bucket, "wh_levels")
            .replace("[task]\n", "[task]\nlog_level = \"ERROR\"\n"),
    );
    let out = controller.cli(&["tasks", "start", "switch"]);
    assert!(out.status.success(), "{}", stderr(&out));
    controller.wait_for("switch", Duration::from_secs(60), |v| {
        v["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["state"] == "Running")
    });
    let out = controller.cli(&["tasks", "log-level", "switch", "debug"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("DEBUG"), "{}", stdout(&out));
    release.send(()).unwrap();
    let out = controller.cli(&["tasks", "wait", "switch", "--timeout", "120"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let switched = log_lines(&agent.dir, "switch");
    let at = switched
        .iter()
        .position(|l| l.contains("log level set to DEBUG"))
        .unwrap_or_else(|| panic!("{switched:#?}"));
    assert!(
        at == 0,
        "nothing before the change (the task was at ERROR): {switched:#?}"
    );
    assert!(
        switched[at..].iter().any(|l| level_of(l) == "DEBUG"),
        "{switched:#?}"
    );
    assert!(controller.show("switch")["log_level"] == "DEBUG");
    let out = controller.cli(&["tasks", "log-level", "switch", "LOUD"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("ERROR, WARNING, INFO, DEBUG or TRACE"));
    let out = controller.cli(&["tasks", "log-level", "nosuch", "INFO"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // The password reached the agent (the task needs it) but no file of either daemon
    // but their stores: every log, every chunk, every daemon's output.
    for dir in [&controller.dir, &agent.dir] {
        for file in files_under(dir) {
            if file.extension().is_some_and(|e| e == "redb") {
                continue;
            }
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes
                    .windows(SOURCE_PASSWORD.len())
                    .any(|w| w == SOURCE_PASSWORD.as_bytes()),
                "{} holds the password",
                file.display()
            );
        }
    }
    for log in [
        controller.dir.with_extension("log"),
        agent.dir.with_extension("log"),
    ] {
        assert!(
            !std::fs::read_to_string(log)
                .unwrap()
                .contains(SOURCE_PASSWORD)
        );
    }
}

/// Metric families by name: (type, samples of (name, labels, value)).
type Families = BTreeMap<String, (String, Vec<(String, BTreeMap<String, String>, f64)>)>;

/// Parse with Prometheus' own Python client (OpenMetrics parser): name → (type, samples).
fn parse_metrics(text: &str) -> Families {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = [f.type, [[s.name, s.labels, s.value] for s in f.samples]]
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid OpenMetrics text ({}):\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn curl(url: &str) -> (String, String) {
    curl_with(url, &[])
}

fn curl_with(url: &str, extra: &[&str]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-k", "-D", "-", url])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_lowercase(), body.to_string())
}

fn sample(families: &Families, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families.get(family)?.1.iter().find_map(|(_, l, v)| {
        labels
            .iter()
            .all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want))
            .then_some(*v)
    })
}

#[test]
fn metrics_parse_as_prometheus_text_and_watch_follows_the_task_to_its_end() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let agents = start_agents(&sandbox, &controller, 2, 1);
    analysed_table("ob_metrics", 40_000);
    fresh_schema("wh_metrics");
    let bucket = s3::unique_bucket("metrics");
    let tables =
        "[[tables]]\nname = \"src_pg.ob_metrics\"\npartition = { column = \"id\", ranges = 3 }\n";
    create_and_start(
        &controller,
        &sandbox,
        "scraped",
        &job("scraped", tables, &bucket, "wh_metrics"),
        &[],
    );
    // `tasks watch` without a terminal: a line per change, totals, exit 0 at the end.
    let out = controller.cli(&["tasks", "watch", "scraped", "--interval", "0.3"]);
    assert!(out.status.success(), "tasks watch: {}", stderr(&out));
    let text = stdout(&out);
    for part in 1..=3 {
        assert!(
            text.contains(&format!("src_pg.ob_metrics/part-00{part}")),
            "{text}"
        );
    }
    assert!(
        text.contains("Completed") && text.contains("100%"),
        "{text}"
    );
    assert!(text.contains("3/3 subtasks"), "{text}");

    // On a terminal, bars per stage (util-linux `script` gives it one).
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!(
                "{} tasks watch scraped --controller {} --controller-dir {}",
                env!("CARGO_BIN_EXE_dbhaul"),
                controller.url(),
                controller.dir.display()
            ),
            "/dev/null",
        ])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("extract ████████ 100%  upload ████████ 100%  copy ████████ 100%"),
        "{screen}"
    );

    // The controller: tasks and subtasks by state, rows per stage, agents.
    let (head, body) = curl_with(
        &format!("{}/metrics", controller.url()),
        &["-H", &controller.auth_header()],
    );
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let families = parse_metrics(&body);
    assert_eq!(
        sample(&families, "dbhaul_tasks", &[("state", "Completed")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &families,
            "dbhaul_subtasks",
            &[("task", "scraped"), ("state", "Completed")]
        ),
        Some(3.0)
    );
    for stage in ["extract", "upload", "copy"] {
        assert_eq!(
            sample(
                &families,
                "dbhaul_task_rows",
                &[("task", "scraped"), ("stage", stage)]
            ),
            Some(40_000.0),
            "{stage}"
        );
    }
    assert_eq!(
        sample(&families, "dbhaul_agents", &[("reachable", "true")]),
        Some(2.0)
    );

    // Each agent: counters of what it did; together, every row through every stage.
    let mut rows = BTreeMap::new();
    let mut chunks = 0.0;
    for agent in &agents {
        let (_, body) = curl(&format!("https://127.0.0.1:{}/metrics", agent.port));
        let families = parse_metrics(&body);
        assert_eq!(families["dbhaul_stage_rows"].0, "counter", "{body}");
        for stage in ["extract", "upload", "copy"] {
            *rows.entry(stage).or_insert(0.0) += sample(
                &families,
                "dbhaul_stage_rows",
                &[("task", "scraped"), ("stage", stage)],
            )
            .unwrap_or(0.0);
        }
        chunks += sample(&families, "dbhaul_chunks", &[("task", "scraped")]).unwrap_or(0.0);
        assert_eq!(families["dbhaul_stage_queue_depth"].0, "gauge");
        for stage in ["compress", "upload", "copy"] {
            assert_eq!(
                sample(&families, "dbhaul_stage_queue_depth", &[("stage", stage)]),
                Some(0.0),
                "nothing waits once the task is done"
            );
        }
        assert!(sample(&families, "dbhaul_agent_slots", &[("kind", "capacity")]) == Some(1.0));
        // Nothing failed or was retried.
        for stage in ["s3", "copy", "subtask"] {
            assert_eq!(
                sample(&families, "dbhaul_retries", &[("stage", stage)]),
                Some(0.0)
            );
        }
        assert!(!families.contains_key("dbhaul_failures"), "{body}");
    }
    assert_eq!(rows["extract"], 40_000.0);
    assert_eq!(rows["upload"], 40_000.0);
    assert_eq!(rows["copy"], 40_000.0);
    assert!(chunks >= 3.0, "{chunks}");
    assert_warehouse_equals_source("wh_metrics", &["ob_metrics"]);
}
