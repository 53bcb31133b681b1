//! Agents as users set them up: `agent configure` and its password rule, registration with
//! a confirmed fingerprint, join tokens, and everything refused that should be (wrong
//! passwords and fingerprints, plain HTTP, malformed JSON, unknown names, a controller beyond
//! loopback without its token).

use super::*;

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
