//! Real daemons for the multi-agent tests: agents and a controller as separate `dbhaul`
//! processes on loopback ports, each with a folder of its own in the test's sandbox, killed
//! with SIGKILL when the test drops them (or dies). Client commands run the real binary too.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::s3::{die_with_parent, free_port, s3_env, spawn_from_long_lived_thread};

pub const AGENT_PASSWORD: &str = "Agent2Secret";

/// A running daemon; SIGKILLed on drop.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    fn spawn(mut command: Command, log: PathBuf) -> Daemon {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        command
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null());
        die_with_parent(&mut command);
        let child = spawn_from_long_lived_thread(command).expect("spawn dbhaul");
        Daemon { child, log }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16, daemon: &mut Daemon, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("{what} exited with {status}: {}", daemon.log_text());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {port}: {}", daemon.log_text());
}

/// Spawn any daemon command and wait until it listens on `port`.
pub fn spawn_daemon(command: Command, log: PathBuf, port: u16) -> Daemon {
    let mut daemon = Daemon::spawn(command, log);
    wait_for_port(port, &mut daemon, "daemon");
    daemon
}

/// The environment every daemon and client of a test gets: moto's credentials.
pub fn daemon_env() -> Vec<(String, String)> {
    let mut env = s3_env(&super::s3::moto().endpoint());
    env.push(("DBHAUL_POLL_MS".into(), "300".into()));
    env
}

fn command(env: &[(String, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dbhaul"));
    command
        .env_remove("DBHAUL_LOG")
        .env_remove("DBHAUL_CONTROLLER")
        .env_remove("DBHAUL_CONTROLLER_DIR")
        .env_remove("DBHAUL_CONTROLLER_FINGERPRINT")
        .env_remove("DBHAUL_CONTROLLER_CA")
        .env_remove("DBHAUL_TOKEN")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command
}

/// Run `dbhaul` with `stdin` fed in.
pub fn run_with_stdin(args: &[&str], stdin: &str, env: &[(String, String)]) -> Output {
    let mut child = command(env)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dbhaul");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// An agent's folder, configured, and its process when running.
pub struct Agent {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub fingerprint: String,
    pub process: Option<Daemon>,
}

impl Agent {
    /// `dbhaul agent configure` for a new agent on a free loopback port.
    pub fn configure(root: &Path, name: &str, parallel: u32) -> Agent {
        let dir = root.join(name);
        let port = free_port();
        let out = run_with_stdin(
            &[
                "agent",
                "configure",
                "--dir",
                dir.to_str().unwrap(),
                "--port",
                &port.to_string(),
                "--listen",
                "127.0.0.1",
                "--host",
                "127.0.0.1",
                "--name",
                name,
                "--parallel",
                &parallel.to_string(),
                "--password-stdin",
                "--json",
            ],
            &format!("{AGENT_PASSWORD}\n"),
            &[],
        );
        assert!(
            out.status.success(),
            "agent configure: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Agent {
            name: name.to_string(),
            dir,
            port,
            fingerprint: report["fingerprint"].as_str().unwrap().to_string(),
            process: None,
        }
    }

    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    pub fn start_with(&mut self, extra: &[&str]) {
        let mut command = command(&daemon_env());
        command
            .args(["agent", "serve", "--dir", self.dir.to_str().unwrap()])
            .args(extra);
        let log = self.dir.with_extension("log");
        let mut daemon = Daemon::spawn(command, log);
        wait_for_port(self.port, &mut daemon, &format!("agent {}", self.name));
        self.process = Some(daemon);
    }

    pub fn kill(&mut self) {
        if let Some(daemon) = self.process.take() {
            daemon.kill();
        }
    }
}

/// A controller's folder and process.
pub struct Controller {
    pub dir: PathBuf,
    pub port: u16,
    pub process: Option<Daemon>,
}

impl Controller {
    pub fn start(root: &Path) -> Controller {
        let mut controller = Controller {
            dir: root.join("controller"),
            port: free_port(),
            process: None,
        };
        controller.restart();
        controller
    }

    pub fn restart(&mut self) {
        let mut command = command(&daemon_env());
        command.args([
            "controller",
            "serve",
            "--dir",
            self.dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{}", self.port),
        ]);
        let mut daemon = Daemon::spawn(command, self.dir.with_extension("log"));
        wait_for_port(self.port, &mut daemon, "controller");
        self.process = Some(daemon);
    }

    pub fn kill(&mut self) {
        if let Some(daemon) = self.process.take() {
            daemon.kill();
        }
    }

    /// Its HTTPS address; its certificate is `dir/controller.crt`, pinned by the CLI
    /// through `DBHAUL_CONTROLLER_DIR` (see [`Controller::cli_env`]).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The admin token every call but health needs (the file `admin.token` in its folder).
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin.token"))
            .expect("the controller's admin.token")
            .trim()
            .to_string()
    }

    /// `Authorization: Bearer <admin token>`, for curl's `-H`.
    pub fn auth_header(&self) -> String {
        format!("Authorization: Bearer {}", self.token())
    }

    /// The SHA-256 fingerprint of its certificate, as `--controller-fingerprint` takes it.
    pub fn fingerprint(&self) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(self.dir.join("controller.crt"))
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl x509: {}", stderr(&out));
        // `sha256 Fingerprint=AB:CD:...`
        let text = stdout(&out);
        let (_, fingerprint) = text.trim().split_once('=').expect("a fingerprint");
        fingerprint.to_string()
    }

    /// `dbhaul <args>` against this controller.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, "")
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.cli_env(args, stdin, &[])
    }

    /// `dbhaul <args>` with more environment variables (a job's `password_env`).
    pub fn cli_env(&self, args: &[&str], stdin: &str, extra: &[(&str, &str)]) -> Output {
        let mut env = daemon_env();
        env.push(("DBHAUL_CONTROLLER".into(), self.url()));
        // Run as the controller's owner: the token and the certificate come from its folder.
        env.push((
            "DBHAUL_CONTROLLER_DIR".into(),
            self.dir.to_string_lossy().into_owned(),
        ));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        run_with_stdin(args, stdin, &env)
    }

    /// Register an agent with its password and fingerprint; panics on failure.
    pub fn register(&self, agent: &Agent) {
        self.register_with(agent, &[]);
    }

    /// [`Controller::register`] with more arguments (`--roles ...`).
    pub fn register_with(&self, agent: &Agent, extra: &[&str]) {
        let out = self.try_register(agent, extra);
        assert!(
            out.status.success(),
            "register {}: {}",
            agent.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `dbhaul agents register` of `agent` with its password and fingerprint, as it ends.
    pub fn try_register(&self, agent: &Agent, extra: &[&str]) -> Output {
        let port = agent.port.to_string();
        let mut args = vec![
            "agents",
            "register",
            &agent.name,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--password-stdin",
            "--fingerprint",
            &agent.fingerprint,
        ];
        args.extend_from_slice(extra);
        self.cli_stdin(&args, &format!("{AGENT_PASSWORD}\n"))
    }

    /// `tasks show NAME --json`.
    pub fn show(&self, task: &str) -> serde_json::Value {
        let out = self.cli(&["tasks", "show", task, "--json"]);
        assert!(
            out.status.success(),
            "tasks show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Poll `tasks show` until `until` holds (or panic after `timeout`).
    pub fn wait_for(
        &self,
        task: &str,
        timeout: Duration,
        until: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self.show(task);
            if until(&view) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "task {task} did not get there in {timeout:?}: {view:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Output's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
