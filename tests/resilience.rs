//! What users trust dbhaul with when things go wrong: sessions that cannot be forged or
//! outlive their time, request bodies that cannot exhaust a daemon, and stores that are
//! refused, never reset, when they cannot be read. (The fault-injection suite of the
//! resilience issue grows here.)

use std::time::Duration;

use crate::common::daemons::*;
use crate::common::s3;
use crate::common::*;
use crate::daemons::{
    assert_warehouse_equals_source, create_and_start, curl, hash_table, job, start_agents,
};

fn login(port: u16) -> String {
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!("{{\"password\":\"{AGENT_PASSWORD}\"}}"),
        &format!("https://127.0.0.1:{port}/v1/login"),
    ]);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
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
