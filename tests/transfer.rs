//! `tasks export` and `tasks import`: a task moves to a fresh controller as it was (every
//! field of `tasks show` equal), for a finished task spread over three agents and one
//! stopped half-way, which then resumes there and lands each row once; bad files are
//! refused with the element or line at fault and change nothing, all files or none.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::daemons::*;
use crate::common::s3;
use crate::common::*;
use crate::daemons::{
    SOURCE_PASSWORD, assert_warehouse_equals_source, create_and_start, hash_table, job,
    start_agents,
};

const PASSWORD_ENV: (&str, &str) = ("DM_SOURCE_PASSWORD", SOURCE_PASSWORD);

fn import(controller: &Controller, files: &[&Path], extra: &[&str]) -> std::process::Output {
    let mut args = vec!["tasks", "import"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    args.extend_from_slice(extra);
    controller.cli_env(&args, "", &[PASSWORD_ENV])
}

fn task_names(controller: &Controller) -> Vec<String> {
    let out = controller.cli(&["tasks", "list", "--json"]);
    let tasks: Value = serde_json::from_slice(&out.stdout).unwrap();
    tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tasks_move_to_a_fresh_controller_as_they_were_and_a_stopped_one_resumes_there() {
    let sandbox = Sandbox::new();
    for side in ["first", "second"] {
        std::fs::create_dir_all(sandbox.path(side)).unwrap();
    }
    let mut first = Controller::start(&sandbox.path("first"));
    let agents = start_agents(&sandbox, &first, 3, 1);
    hash_table("tr_done", 30_000);
    hash_table("tr_half", 200_000);
    fresh_schema("wh_transfer");

    // Finished: three partitions, one per agent.
    let done =
        "[[tables]]\nname = \"src_pg.tr_done\"\npartition = { column = \"id\", ranges = 3 }\n";
    create_and_start(
        &first,
        &sandbox,
        "done",
        &job("done", done, &s3::unique_bucket("done"), "wh_transfer"),
        &[],
    );
    let out = first.cli(&["tasks", "wait", "done", "--timeout", "120"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Stopped half-way: the copy waits on a lock while the task is stopped.
    pg().batch_execute("CREATE TABLE wh_transfer.tr_half (id integer, h varchar(64))")
        .unwrap();
    let (locked, release) = crate::observe::hold_write_lock("wh_transfer.tr_half");
    locked.recv().unwrap();
    let half =
        "[[tables]]\nname = \"src_pg.tr_half\"\npartition = { column = \"id\", ranges = 4 }\n";
    create_and_start(
        &first,
        &sandbox,
        "half",
        &job("half", half, &s3::unique_bucket("half"), "wh_transfer"),
        &[],
    );
    first.wait_for("half", Duration::from_secs(60), |v| {
        v["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["state"] == "Running")
            .count()
            == 3
    });
    let out = first.cli(&["tasks", "stop", "half"]);
    assert!(out.status.success(), "{}", stderr(&out));
    release.send(()).unwrap();
    let stopped = first.wait_for("half", Duration::from_secs(60), |v| v["state"] == "Stopped");
    assert!(
        stopped["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] != "Completed"),
        "{stopped:#}"
    );

    // Export both, one file each.
    let dir = sandbox.path("exports");
    let out = first.cli(&["tasks", "export", "--all", "-o", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (done_xml, half_xml) = (dir.join("done.xml"), dir.join("half.xml"));
    let text = std::fs::read_to_string(&half_xml).unwrap();
    assert!(
        text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{text}"
    );
    assert!(
        text.contains("<secret env=\"DM_SOURCE_PASSWORD\"/>"),
        "{text}"
    );
    for file in [&done_xml, &half_xml] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!text.contains(SOURCE_PASSWORD), "{}", file.display());
    }
    let artifacts = crate::common::browser::artifacts();
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::copy(&half_xml, artifacts.join("export-half.xml")).unwrap();
    let before: Vec<Value> = ["done", "half"].iter().map(|t| first.show(t)).collect();
    first.kill();

    // A fresh controller with the same agents: each task as it was, field by field. The
    // agents belonged to the first one: each is released on its machine first.
    let second = Controller::start(&sandbox.path("second"));
    for agent in &agents {
        let out = dbhaul(&["agent", "release", "--dir", agent.dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("released from controller"),
            "{}",
            stdout(&out)
        );
        second.register(agent);
    }
    let out = import(&second, &[&done_xml, &half_xml], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).is_empty(),
        "no warning: every agent matched: {}",
        stderr(&out)
    );
    for (task, was) in ["done", "half"].iter().zip(&before) {
        assert_eq!(&second.show(task), was, "task {task} changed on its way");
    }
    let agents_of = |v: &Value| -> std::collections::BTreeSet<String> {
        v["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["agent"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(agents_of(&second.show("done")).len(), 3);

    // Importing again is refused; under another name it is another task.
    let out = import(&second, &[&half_xml], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));
    let out = import(&second, &[&half_xml], &["--rename", "half-copy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(second.show("half-copy")["subtasks_total"], 4);

    // The stopped task resumes on the new controller and every row lands once.
    let out = second.cli(&["tasks", "resume", "half"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = second.cli(&["tasks", "wait", "half", "--timeout", "180"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_warehouse_equals_source("wh_transfer", &["tr_done", "tr_half"]);
}

/// The example of `docs/export-format.md`, as the docs show it.
fn documented_example() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/export-format.md"
    ))
    .unwrap();
    let start = doc.find("```xml\n").expect("an ```xml block in the docs") + 7;
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_string()
}

#[test]
fn the_documented_example_imports_and_bad_files_are_refused_with_the_fault_and_change_nothing() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let example = documented_example();
    let good = sandbox.path("example.xml");
    std::fs::write(&good, &example).unwrap();

    let bad_cases: Vec<(&str, String, &str)> = vec![
        (
            "malformed",
            example.replacen("</subtasks>", "</subtask>", 1),
            "malformed",
        ),
        (
            "wrong-root",
            example
                .replace("<dbhaul-task ", "<task ")
                .replace("</dbhaul-task>", "</task>"),
            "not <dbhaul-task>",
        ),
        (
            "no-name",
            {
                let start = example.find("<name>").unwrap();
                let end = example.find("</name>").unwrap() + "</name>".len();
                format!("{}{}", &example[..start], &example[end..])
            },
            "a required element <name> is missing",
        ),
        (
            "unknown-mode",
            example.replacen("mode=\"extract-upload-copy\"", "mode=\"teleport\"", 1),
            "<settings mode=\"teleport\">",
        ),
        (
            "control-character",
            example.replacen("<description>", "<description>\u{1}", 1),
            "control character",
        ),
        (
            "entity-bomb",
            example.replacen(
                "<dbhaul-task ",
                "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>\n<dbhaul-task ",
                1,
            ),
            "DOCTYPE",
        ),
        (
            "bad-state",
            example.replacen("state=\"Completed\"", "state=\"Done\"", 1),
            "not a state",
        ),
    ];
    for (name, text, needle) in &bad_cases {
        assert_ne!(text, &example, "case {name} changes the example");
        let path = sandbox.path(&format!("{name}.xml"));
        std::fs::write(&path, text).unwrap();
        let out = import(&controller, &[&path], &[]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle) && stderr(&out).contains(&format!("{name}.xml")),
            "{name}: {}",
            stderr(&out)
        );
        assert!(
            task_names(&controller).is_empty(),
            "{name} changed something"
        );
    }
    // A 1 GB file is refused by its size, unread.
    let huge = sandbox.path("huge.xml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let out = import(&controller, &[&huge], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1073741824 bytes"),
        "{}",
        stderr(&out)
    );
    // The same checks on the controller, for clients other than this CLI.
    let body = serde_json::json!({"files": [{"name": "raw.xml", "xml": bad_cases[3].1}]});
    let out = std::process::Command::new("curl")
        .args([
            "-sSk",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
            &controller.auth_header(),
            "-d",
        ])
        .arg(body.to_string())
        .arg(format!("{}/v1/tasks/import", controller.url()))
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("raw.xml") && answer.contains("teleport"),
        "{answer}"
    );

    // All or none: a good file and a bad one import nothing.
    let bad = sandbox.path("unknown-mode.xml");
    let out = import(&controller, &[&good, &bad], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(task_names(&controller).is_empty());

    // The documented example itself imports (its agents are not registered here: said).
    let out = import(&controller, &[&good], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not registered here"),
        "{}",
        stderr(&out)
    );
    assert_eq!(task_names(&controller), ["orders"]);
    let view = controller.show("orders");
    assert_eq!(view["subtasks_total"], 2, "{view:#}");
    assert!(
        view["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["agent"].is_null())
    );
    // Without the password its job names, nothing is imported.
    let out = controller.cli(&["tasks", "import", good.to_str().unwrap(), "--replace"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("DM_SOURCE_PASSWORD"),
        "{}",
        stderr(&out)
    );
}
