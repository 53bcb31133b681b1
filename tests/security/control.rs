//! The controller's front door (issue 23, findings 1, 2, 5 and 7): a local account without
//! the admin token, a web page in the admin's browser, an unauthenticated upload and a
//! listener on the wire each try to drive or read the controller, and each is refused
//! before anything happens.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::daemons::*;
use crate::common::s3;
use crate::common::*;
use crate::daemons::{SOURCE_PASSWORD, create_task, curl, hash_table, job};

/// The uid and gid of `nobody`: a local account that is not the controller's owner.
const NOBODY: &str = "65534";

/// `dbhaul <args>` as `nobody`, with no token of its own.
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            env!("CARGO_BIN_EXE_dbhaul"),
        ])
        .args(args)
        .env_remove("DBHAUL_TOKEN")
        .env_remove("DBHAUL_CONTROLLER_DIR")
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .expect("setpriv (util-linux)")
}

// Finding 1: any local account drove the controller on loopback, where it asked for no
// token, and created a task whose driver was its own library.
#[test]
fn a_local_account_without_the_admin_token_drives_nothing() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&controller.dir), 0o700);
    assert_eq!(mode(&controller.dir.join("admin.token")), 0o600);
    assert_eq!(mode(&controller.dir.join("controller.key")), 0o600);

    // Straight to the API on loopback: listing and creating are refused.
    let (status, body) = curl(&[&format!("{}/v1/tasks", controller.url())]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("admin.token"), "{body}");
    let evil = serde_json::json!({
        "definition": {"name": "evil", "source": {"connection": "Driver=/tmp/evil.so;"}},
    });
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &evil.to_string(),
        &format!("{}/v1/tasks", controller.url()),
    ]);
    assert_eq!(status, 401, "{body}");
    for path in ["/metrics", "/v1/agents", "/v1/tasks/evil/log"] {
        let (status, body) = curl(&[&format!("{}{path}", controller.url())]);
        assert_eq!(status, 401, "{path}: {body}");
    }
    // What stays open: health and the status page's files.
    for path in ["/v1/health", "/", "/app.js"] {
        let (status, _) = curl(&[&format!("{}{path}", controller.url())]);
        assert_eq!(status, 200, "{path}");
    }

    // The command line as another account: it cannot read the token, and is told how
    // to get one.
    let out = as_nobody(&[
        "tasks",
        "list",
        "--controller",
        &controller.url(),
        "--controller-dir",
        controller.dir.to_str().unwrap(),
        "--controller-fingerprint",
        &controller.fingerprint(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("admin token") && message.contains("--token"),
        "{message}"
    );
    let out = as_nobody(&[
        "tasks",
        "list",
        "--controller",
        &controller.url(),
        "--controller-fingerprint",
        &controller.fingerprint(),
        "--token",
        "guessed",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("wrong admin token"),
        "{}",
        stderr(&out)
    );

    // The owner (root here) finds the token by itself; nothing was created.
    let out = controller.cli(&["tasks", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[]");
}

// Finding 2: a web page in the admin's browser started a task (cross-origin POST, text/plain,
// no body) and read answers through a rebound DNS name.
#[test]
fn a_web_page_can_neither_post_to_the_controller_nor_rebind_its_name() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let start = format!("{}/v1/tasks/nightly/start", controller.url());
    let auth = controller.auth_header();
    let own_host = format!("Host: 127.0.0.1:{}", controller.port);

    // A form post from another site: no token, text/plain, another origin.
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: text/plain",
        "-H",
        "Origin: https://evil.example",
        "-H",
        "Sec-Fetch-Site: cross-site",
        "-d",
        "",
        &start,
    ]);
    assert!(status == 401 || status == 403, "{status} {body}");
    // Even carrying the token, another origin is refused...
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Origin: https://evil.example",
        &start,
    ]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("https://evil.example"), "{body}");
    // ...and so is a body that is not JSON.
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Content-Type: text/plain",
        "-d",
        "start",
        &start,
    ]);
    assert_eq!(status, 415, "{body}");

    // DNS rebinding: the attacker's name resolved to 127.0.0.1; the Host header says so.
    for path in ["/", "/v1/health", "/v1/tasks"] {
        let (status, body) = curl(&[
            "-H",
            "Host: rebind.attacker.example",
            "-H",
            &auth,
            &format!("{}{path}", controller.url()),
        ]);
        assert_eq!(status, 421, "{path}: {body}");
    }

    // The status page's own origin goes through to the handler (no such task here).
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        &own_host,
        "-H",
        &format!("Origin: {}", controller.url()),
        &start,
    ]);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nightly"), "{body}");
}

// Finding 5, second half: bodies up to 65 MiB were read and parsed before the token was
// looked at.
#[test]
fn an_unauthenticated_upload_is_refused_before_its_body_is_read() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    // A TLS connection that announces 60 MB and sends 12 bytes, then waits.
    let mut tls = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{}", controller.port))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut input = tls.stdin.take().unwrap();
    let mut output = tls.stdout.take().unwrap();
    let started = Instant::now();
    write!(
        input,
        "POST /v1/tasks/import HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: \
         application/json\r\nContent-Length: 60000000\r\n\r\n{{\"files\": [",
        controller.port
    )
    .unwrap();
    input.flush().unwrap();
    let (sender, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = output.read(&mut buffer) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..n]);
            if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let _ = sender.send(String::from_utf8_lossy(&seen).into_owned());
    });
    let head = answer.recv_timeout(Duration::from_secs(10));
    let elapsed = started.elapsed();
    let _ = tls.kill();
    let _ = tls.wait();
    drop(input);
    let head = head.expect("no answer within 10 s: the controller waits for the body");
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    eprintln!("refused a 60 MB upload without its token in {elapsed:?}");
}

/// A TCP relay that records every byte both ways.
struct Capture {
    port: u16,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Capture {
    fn start(to: u16) -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let recorded = bytes.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let recorded = recorded.clone();
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buffer) {
                            if n == 0 || into.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                            recorded.lock().unwrap().extend_from_slice(&buffer[..n]);
                        }
                        let _ = into.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Capture { port, bytes }
    }

    fn holds(&self, secret: &str) -> bool {
        let bytes = self.bytes.lock().unwrap();
        bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
    }
}

// Finding 7: the admin token, agents' passwords and database passwords crossed the
// controller's port in clear.
#[test]
fn a_capture_of_the_controllers_port_during_register_and_create_holds_no_secret() {
    let sandbox = Sandbox::new();
    let controller = Controller::start(sandbox.dir.path());
    let capture = Capture::start(controller.port);
    // The same controller, reached through the relay.
    let relayed = Controller {
        dir: controller.dir.clone(),
        port: capture.port,
        process: None,
    };
    let mut agent = Agent::configure(sandbox.dir.path(), "captured", 1);
    agent.start();
    relayed.register(&agent);
    hash_table("sec_capture", 100);
    let bucket = s3::unique_bucket("capture");
    let tables = "[[tables]]\nname = \"src_pg.sec_capture\"\n";
    create_task(
        &relayed,
        &sandbox,
        "captured",
        &job("captured", tables, &bucket, "wh_capture"),
        &[],
    );
    let captured = capture.bytes.lock().unwrap().len();
    assert!(captured > 2000, "the relay saw {captured} bytes");
    assert_eq!(
        capture.bytes.lock().unwrap()[0],
        0x16,
        "not a TLS handshake"
    );
    for (what, secret) in [
        ("the admin token", controller.token()),
        ("the agent's password", AGENT_PASSWORD.to_string()),
        ("the source password", SOURCE_PASSWORD.to_string()),
        ("the task's name", "sec_capture".to_string()),
    ] {
        assert!(!capture.holds(&secret), "{what} crossed the port in clear");
    }
    eprintln!("captured {captured} bytes, none of them a secret");
}

// Finding 7: a controller beyond loopback spoke plain HTTP. Now it refuses to, serves
// HTTPS instead, and a client that pins another certificate stops before sending anything.
#[test]
fn a_controller_beyond_loopback_serves_https_only_and_clients_pin_it() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("open-controller");
    let port = s3::free_port();
    let serve = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dbhaul"));
        command
            .args(["controller", "serve", "--dir", dir.to_str().unwrap()])
            .args(["--listen", &format!("0.0.0.0:{port}")])
            .args(extra);
        command
    };
    let out = serve(&["--plain-http"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("loopback only") && stderr(&out).contains("HTTPS"),
        "{}",
        stderr(&out)
    );

    let server = spawn_daemon(serve(&[]), sandbox.path("open-controller.log"), port);
    let open = Controller {
        dir: dir.clone(),
        port,
        process: None,
    };
    let printed = server.log_text();
    assert!(printed.contains(&open.fingerprint()), "{printed}");
    // Plain HTTP gets no HTTP answer.
    let (status, _) = curl(&[&format!("http://127.0.0.1:{port}/v1/health")]);
    assert_eq!(status, 0, "the controller answered plain HTTP");
    // The client refuses plain HTTP to another machine before sending its token.
    let out = dbhaul(&["agents", "list", "--controller", "http://192.0.2.1:8554"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("in clear"), "{}", stderr(&out));
    // A wrong pin (another controller's certificate) is refused at the handshake.
    let wrong = "AB:".repeat(31) + "AB";
    let out = dbhaul(&[
        "agents",
        "list",
        "--controller",
        &open.url(),
        "--controller-fingerprint",
        &wrong,
        "--token",
        &open.token(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("certificate changed") && stderr(&out).contains(&open.fingerprint()),
        "{}",
        stderr(&out)
    );
    // `controller status` prints the fingerprint to pin elsewhere.
    let out = dbhaul(&[
        "controller",
        "status",
        "--controller",
        &open.url(),
        "--controller-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&open.fingerprint()),
        "{}",
        stdout(&out)
    );
    drop(server);
}
