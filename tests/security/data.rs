//! Imported files, paths and secrets at rest (issue 23, findings 4 and 8): an edited export
//! cannot make an agent leave its task's folder, read other rows, take an inline password
//! or start on its own; chunks and their folders are private whatever the umask; a deleted
//! task's passwords are gone from the bytes of both stores.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::daemons::*;
use crate::common::*;

const PASSWORD_ENV: &str = "DM_SOURCE_PASSWORD";

/// `src_pg.<table>`: 1,000 rows with a key, for tasks that must be quick.
fn small_table(table: &str) {
    pg_hash_table(table, 1_000);
    pg().batch_execute(&format!("ALTER TABLE src_pg.{table} ADD PRIMARY KEY (id)"))
        .unwrap();
}

/// An extract-only job (chunks stay in the agent's folder) over `table` in two ranges.
fn extract_job(task: &str, table: &str) -> String {
    job_text(
        task,
        &pg_odbc(),
        &format!(
            "[[tables]]\nname = \"src_pg.{table}\"\npartition = {{ column = \"id\", ranges = 2 }}\n"
        ),
        "mode = \"extract\"",
    )
    .replacen(
        "[source]\n",
        &format!("[source]\npassword_env = \"{PASSWORD_ENV}\"\n"),
        1,
    )
}

fn create(controller: &Controller, sandbox: &Sandbox, task: &str, text: &str, password: &str) {
    let path = sandbox.job(task, text);
    let out = controller.cli_env(
        &["tasks", "create", path.to_str().unwrap()],
        "",
        &[(PASSWORD_ENV, password)],
    );
    assert!(out.status.success(), "tasks create: {}", stderr(&out));
}

fn import(controller: &Controller, file: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["tasks", "import", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    controller.cli_env(&args, "", &[(PASSWORD_ENV, "Import7Password")])
}

/// A controller with one agent, a planned (not started) two-partition task `orders` over
/// `table`, and its export as text.
fn exported_task(sandbox: &Sandbox, table: &str) -> (Controller, Agent, String) {
    small_table(table);
    let controller = Controller::start(sandbox.dir.path());
    let mut agent = Agent::configure(sandbox.dir.path(), "agent1", 2);
    agent.start();
    controller.register(&agent);
    create(
        &controller,
        sandbox,
        "orders",
        &extract_job("orders", table),
        "Export7Password",
    );
    let path = sandbox.path("orders.xml");
    let out = controller.cli(&["tasks", "export", "orders", "-o", path.to_str().unwrap()]);
    assert!(out.status.success(), "tasks export: {}", stderr(&out));
    let xml = std::fs::read_to_string(&path).unwrap();
    assert!(xml.contains("part-001"), "{xml}");
    (controller, agent, xml)
}

fn write(sandbox: &Sandbox, name: &str, text: &str) -> PathBuf {
    let path = sandbox.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Finding 4: a partition name `../../../../outside` in an imported file made the agent
/// write outside its task's folder and delete a `*.csv.gz` that was not its own. It is
/// refused at import, naming the element and the value; the file outside survives and
/// nothing is written beside it.
#[test]
fn an_imported_partition_name_that_climbs_out_of_the_task_folder_is_refused() {
    let sandbox = Sandbox::new();
    let (controller, agent, xml) = exported_task(&sandbox, "sec_climb");
    // From <agent>/work/<task>/src_pg.sec_climb, four levels up is the sandbox.
    let outside = sandbox.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let marker = outside.join("00000001.csv.gz");
    std::fs::write(&marker, b"not the agent's").unwrap();
    let climb = "../../../../outside";
    let evil = xml.replace("part-001", climb);
    let file = write(&sandbox, "climb.xml", &evil);

    let out = import(&controller, &file, &["--rename", "climb"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let error = stderr(&out);
    assert!(
        error.contains("partition name") && error.contains(climb) && error.contains("climb.xml"),
        "{error}"
    );
    let out = controller.cli(&["tasks", "start", "climb"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(&marker).unwrap(), b"not the agent's");
    let beside: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert_eq!(beside.len(), 1, "something was written outside: {beside:?}");
    drop(agent);
}

/// Finding 4: a predicate edited to `1 = 1` made one partition read the whole table
/// (150,001 rows from 100,000, and Completed). Predicates are rebuilt from the bounds; a
/// file whose predicate says otherwise is refused. A bound that is not a literal
/// (`1 OR 1 = 1`) is refused too.
#[test]
fn an_imported_predicate_or_bound_edited_to_read_everything_is_refused() {
    let sandbox = Sandbox::new();
    let (controller, agent, xml) = exported_task(&sandbox, "sec_predicate");
    let start = xml.find("<predicate>").unwrap() + "<predicate>".len();
    let end = xml.find("</predicate>").unwrap();
    let widened = format!("{}1 = 1{}", &xml[..start], &xml[end..]);
    let file = write(&sandbox, "widened.xml", &widened);
    let out = import(&controller, &file, &["--rename", "widened"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("<predicate>") && stderr(&out).contains("`1 = 1`"),
        "{}",
        stderr(&out)
    );

    let high = xml.find("high=\"").unwrap() + "high=\"".len();
    let bound_end = high + xml[high..].find('"').unwrap();
    let bound = &xml[high..bound_end];
    let injected = format!(
        "{}{bound} OR 1 = 1{}",
        &xml[..high],
        &xml[bound_end..].replacen(
            &format!("&lt; {bound}</predicate>"),
            &format!("&lt; {bound} OR 1 = 1</predicate>"),
            1
        )
    );
    let file = write(&sandbox, "injected.xml", &injected);
    let out = import(&controller, &file, &["--rename", "injected"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a SQL literal"),
        "{}",
        stderr(&out)
    );
    let out = controller.cli(&["tasks", "list", "--json"]);
    let names: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(names.as_array().unwrap().len(), 1, "{names}");
    drop(agent);
}

/// Finding 4: export refuses a job with an inline password, but import took one. Refused
/// now, without echoing it.
#[test]
fn an_imported_job_with_an_inline_password_is_refused() {
    let sandbox = Sandbox::new();
    let (controller, agent, xml) = exported_task(&sandbox, "sec_inline");
    let secret = "Inline7Secret";
    // In the job file itself (the <settings> summary is for readers; the job wins).
    let job = xml.find("<job>").unwrap();
    let inline = format!(
        "{}{}",
        &xml[..job],
        xml[job..].replacen("Driver=", &format!("PWD={secret};Driver="), 1)
    );
    assert_ne!(inline, xml);
    let file = write(&sandbox, "inline.xml", &inline);
    let out = import(&controller, &file, &["--rename", "inline"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("password") && stderr(&out).contains("source.password_env"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(secret), "{}", stderr(&out));
    drop(agent);
}

/// Finding 4: `<started>true</started>` in a file dispatched its subtasks the moment it
/// was imported. An imported task is created stopped: nothing goes to an agent until
/// `tasks start`.
#[test]
fn an_imported_task_marked_started_dispatches_nothing_until_started() {
    let sandbox = Sandbox::new();
    let (controller, agent, xml) = exported_task(&sandbox, "sec_started");
    let started = xml.replacen("<started>false</started>", "<started>true</started>", 1);
    assert_ne!(started, xml);
    let file = write(&sandbox, "started.xml", &started);
    let out = import(&controller, &file, &["--rename", "started"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The import answers after its dispatch round: anything it sent is visible now.
    let view = controller.show("started");
    let subtasks = view["subtasks"].as_array().unwrap();
    assert!(
        subtasks
            .iter()
            .all(|s| s["agent"].is_null() && s["state"] == "Pending"),
        "{view:#}"
    );
    assert_ne!(view["state"], "Running", "{view:#}");
    let out = controller.cli(&["tasks", "start", "started"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "wait", "started", "--timeout", "60"]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(agent);
}

/// Every folder under `root` is 0700 and every file 0600.
fn assert_private(root: &Path) {
    let mut files = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path);
            } else {
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
                files += 1;
            }
        }
    }
    assert!(files > 2, "no chunks under {}", root.display());
}

/// Finding 8: `dbhaul run` wrote chunks 0644 in 0755 folders. Under umask 000, every
/// chunk, manifest and folder of the task is private.
#[test]
fn dbhaul_run_writes_private_chunks_and_folders_whatever_the_umask() {
    let sandbox = Sandbox::new();
    small_table("sec_run_modes");
    let job = sandbox.job(
        "modes",
        &job_text(
            "modes",
            &pg_odbc(),
            "[[tables]]\nname = \"src_pg.sec_run_modes\"\npartition = { column = \"id\", ranges = 2 }\n",
            "mode = \"extract\"",
        ),
    );
    let work = sandbox.work_dir();
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" run \"$1\" --work-dir \"$2\" --json")
        .arg(env!("CARGO_BIN_EXE_dbhaul"))
        .arg(&job)
        .arg(&work)
        .env_remove("DBHAUL_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_private(&work.join("modes"));
}

/// Finding 8, on an agent started under umask 000: its task folder, chunks and manifests
/// are private.
#[test]
fn an_agent_writes_private_chunks_and_folders_whatever_the_umask() {
    let sandbox = Sandbox::new();
    small_table("sec_agent_modes");
    let controller = Controller::start(sandbox.dir.path());
    let agent = Agent::configure(sandbox.dir.path(), "agent1", 2);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 000 && exec \"$0\" agent serve --dir \"$1\"")
        .arg(env!("CARGO_BIN_EXE_dbhaul"))
        .arg(&agent.dir)
        .env_remove("DBHAUL_LOG")
        .envs(daemon_env());
    let _serving = spawn_daemon(command, agent.dir.with_extension("log"), agent.port);
    controller.register(&agent);
    create(
        &controller,
        &sandbox,
        "modes",
        &extract_job("modes", "sec_agent_modes"),
        "Modes7Password",
    );
    let out = controller.cli(&["tasks", "start", "modes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "wait", "modes", "--timeout", "60"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_private(&agent.dir.join("work").join("modes"));
}

fn holds(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Finding 8: a deleted task's source password stayed readable in `controller.redb` and
/// `agent.redb` (redb frees pages without wiping them). Task values are sealed under a
/// key per task that is deleted with it: after `tasks delete`, neither file holds the
/// password.
#[test]
fn a_deleted_tasks_password_is_gone_from_both_stores() {
    let sandbox = Sandbox::new();
    small_table("sec_forget");
    let controller = Controller::start(sandbox.dir.path());
    let mut agent = Agent::configure(sandbox.dir.path(), "agent1", 2);
    agent.start();
    controller.register(&agent);
    let sentinel = format!("Sentinel7{}", fastrand::u64(..));
    create(
        &controller,
        &sandbox,
        "forget",
        &extract_job("forget", "sec_forget"),
        &sentinel,
    );
    let out = controller.cli(&["tasks", "start", "forget"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = controller.cli(&["tasks", "wait", "forget", "--timeout", "60"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let view = controller.show("forget");
    assert!(
        view["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["agent"] == "agent1"),
        "the agent holds the task: {view:#}"
    );
    let out = controller.cli(&["tasks", "delete", "forget"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for store in [
        controller.dir.join("controller.redb"),
        agent.dir.join("agent.redb"),
    ] {
        assert!(store.exists(), "{}", store.display());
        assert!(
            !holds(&store, &sentinel),
            "{} still holds the deleted task's password",
            store.display()
        );
    }
}

/// Finding 8, for the agents' passwords: the controller keeps each registered agent's
/// password to log in with. It is sealed in `controller.redb` while the agent is
/// registered, and unreadable there once `agents remove` has forgotten the agent.
#[test]
fn a_removed_agents_password_is_gone_from_the_controllers_store() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let mut agent = Agent::configure(sandbox.dir.path(), "agent1", 1);
    agent.start();
    controller.register(&agent);
    let store = controller.dir.join("controller.redb");
    assert!(!holds(&store, AGENT_PASSWORD), "the password in clear");
    let out = controller.cli(&["agents", "remove", "agent1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !holds(&store, AGENT_PASSWORD),
        "the removed agent's password"
    );
    let keys = controller.dir.join("controller.keys");
    let left = std::fs::read_dir(&keys).map_or(0, |d| d.count());
    assert_eq!(
        left,
        0,
        "a key file outlived its agent in {}",
        keys.display()
    );
}
