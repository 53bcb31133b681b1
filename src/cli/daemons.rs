//! `dbhaul agent configure|serve|status` and `dbhaul controller serve`: the daemons'
//! commands. Prompts live here; what they set up lives in `agent/` and `controller/`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::{Exit, report_error};
use crate::agent::config::{AgentConfig, AgentPaths, DEFAULT_PORT, check_password};
use crate::agent::configure::{ConfigureRequest, configure};
use crate::api::ServeError;

#[derive(Debug, clap::Args)]
pub struct ConfigureArgs {
    /// The agent's folder: settings, certificate, store, working files and logs.
    #[arg(long, env = "DBHAUL_AGENT_DIR", default_value = crate::agent::config::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// The port the agent listens on (default 3554; refused if another program holds it).
    #[arg(long)]
    pub port: Option<u16>,
    /// The host name controllers reach the agent by; also written into its certificate
    /// (default: this machine's host name).
    #[arg(long)]
    pub host: Option<String>,
    /// The address to listen on (default 0.0.0.0: every interface).
    #[arg(long)]
    pub listen: Option<String>,
    /// Subtasks the agent runs at once (default: the number of cores, 2 to 8).
    #[arg(long)]
    pub parallel: Option<u32>,
    /// The agent's name when it joins a controller by itself (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Read the password from the first line of stdin instead of asking (unattended
    /// installs): `echo "$PW" | dbhaul agent configure --password-stdin`.
    #[arg(long)]
    pub password_stdin: bool,
    /// Make a new TLS key and certificate (controllers must then register the agent again).
    #[arg(long)]
    pub new_certificate: bool,
    /// Let tasks load an ODBC driver by its library's path (`Driver=/path/lib.so`), a file
    /// DSN or a driver key that loads code (false: only drivers registered by name in
    /// odbcinst.ini, the default). Whoever can create tasks then runs code in the agent.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "true|false")]
    pub allow_driver_paths: Option<bool>,
    /// Allow this one driver library by its absolute path (repeat for more).
    #[arg(long = "allow-driver", value_name = "FILE")]
    pub allow_drivers: Vec<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AgentServeArgs {
    /// The agent's folder, as given to `dbhaul agent configure`.
    #[arg(long, env = "DBHAUL_AGENT_DIR", default_value = crate::agent::config::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Register with this controller at start (e.g. https://10.0.0.2:8554), for fleets
    /// brought up by automation; needs the join token (--join-token-file or
    /// DBHAUL_JOIN_TOKEN) and the controller's certificate (--controller-fingerprint or
    /// --controller-ca). An agent that joined once and belongs to a controller does not
    /// join again.
    #[arg(long)]
    pub controller: Option<String>,
    #[command(flatten)]
    pub trust: super::client::ControllerTrustArgs,
    /// A file holding the controller's join token (a copy of join.token in the controller's
    /// folder), readable by the agent's user only.
    #[arg(long, env = "DBHAUL_JOIN_TOKEN_FILE", value_name = "PATH")]
    pub join_token_file: Option<PathBuf>,
    /// The join token itself. Every local user sees a command line (`ps`): prefer
    /// --join-token-file or the environment variable DBHAUL_JOIN_TOKEN.
    #[arg(
        long,
        env = "DBHAUL_JOIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "join_token_file"
    )]
    pub join_token: Option<String>,
    /// A description shown by `dbhaul agents list` when the agent joins by itself.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Seconds a login session lasts (12 hours; shorter only for tests).
    #[arg(long, env = "DBHAUL_SESSION_S", default_value_t = 12 * 3600, hide = true)]
    pub session_s: u64,
}

#[derive(Debug, clap::Args)]
pub struct AgentStatusArgs {
    #[arg(long, env = "DBHAUL_AGENT_DIR", default_value = crate::agent::config::DEFAULT_DIR)]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ControllerServeArgs {
    /// The controller's folder: its store, tokens and logs.
    #[arg(long, env = "DBHAUL_CONTROLLER_DIR", default_value = crate::controller::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Address and port of the API (HTTPS). Every call needs the admin token (the file
    /// admin.token in the folder), loopback included.
    #[arg(long, default_value = crate::controller::DEFAULT_LISTEN)]
    pub listen: String,
    /// A host name clients and agents use for this controller (repeat or comma-separate):
    /// accepted in the `Host` header and written into the self-signed certificate. IP
    /// addresses, `localhost` and this machine's name are always accepted.
    #[arg(long = "name", value_delimiter = ',')]
    pub names: Vec<String>,
    /// Serve this certificate (PEM) instead of the self-signed one made in the folder.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS: refused unless --listen is a loopback address.
    #[arg(long, conflicts_with = "tls_cert")]
    pub plain_http: bool,
    /// How often the agents are polled, in milliseconds.
    #[arg(long, env = "DBHAUL_POLL_MS", default_value_t = 1000, hide = true)]
    pub poll_ms: u64,
}

/// Ask for a secret on the terminal, without echo.
fn prompt_secret(prompt: &str) -> Result<String, String> {
    rpassword::prompt_password(prompt).map_err(|e| format!("cannot read the password: {e}"))
}

fn read_stdin_line() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn ask_new_password(keeping: bool) -> Result<Option<String>, String> {
    for _ in 0..3 {
        let first = prompt_secret(if keeping {
            "New agent password (Enter keeps the current one): "
        } else {
            "Agent password (8-20 letters and digits, at least one digit and one upper-case letter): "
        })?;
        if first.is_empty() && keeping {
            return Ok(None);
        }
        if let Err(rule) = check_password(&first) {
            eprintln!("{rule}");
            continue;
        }
        let second = prompt_secret("Repeat the password: ")?;
        if first != second {
            eprintln!("the two passwords differ; try again");
            continue;
        }
        return Ok(Some(first));
    }
    Err("no acceptable password after three tries; nothing was changed".into())
}

pub fn configure_agent(args: ConfigureArgs) -> Exit {
    let existing = crate::agent::configure::current(&args.dir);
    let interactive = std::io::stdin().is_terminal() && !args.password_stdin;
    let password = if args.password_stdin {
        match read_stdin_line() {
            Ok(p) => Some(p),
            Err(e) => {
                report_error(e);
                return Exit::Usage;
            }
        }
    } else if interactive {
        match ask_new_password(existing.is_some()) {
            Ok(p) => p,
            Err(e) => {
                report_error(e);
                return Exit::Usage;
            }
        }
    } else if existing.is_some() {
        None
    } else {
        report_error(
            "no terminal to ask for the agent's password: pipe it in with --password-stdin",
        );
        return Exit::Usage;
    };
    let mut port = args.port;
    if port.is_none() && interactive {
        let current = existing.as_ref().map_or(DEFAULT_PORT, |e| e.port);
        eprint!("Port [{current}]: ");
        let _ = std::io::stderr().flush();
        match read_stdin_line().map(|l| l.trim().to_string()) {
            Ok(l) if l.is_empty() => port = Some(current),
            Ok(l) => match l.parse::<u16>() {
                Ok(p) => port = Some(p),
                Err(_) => {
                    report_error(format!(
                        "`{l}` is not a port (1 to 65535); nothing was changed"
                    ));
                    return Exit::Usage;
                }
            },
            Err(e) => {
                report_error(e);
                return Exit::Usage;
            }
        }
    }
    let request = ConfigureRequest {
        dir: args.dir,
        password,
        port,
        host: args.host,
        listen: args.listen,
        parallel: args.parallel,
        name: args.name,
        new_certificate: args.new_certificate,
        allow_driver_paths: args.allow_driver_paths,
        allow_drivers: args.allow_drivers,
    };
    match configure(request) {
        Ok(done) => {
            if args.json {
                let report = serde_json::json!({
                    "dir": done.paths.root.display().to_string(),
                    "name": done.config.name,
                    "host": done.config.host,
                    "listen": done.config.listen,
                    "port": done.config.port,
                    "parallel": done.config.parallel,
                    "fingerprint": done.fingerprint,
                    "created": done.created,
                    "new_certificate": done.new_certificate,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("serializes")
                );
            } else {
                let c = &done.config;
                println!(
                    "agent {} in {}",
                    if done.created {
                        "configured"
                    } else {
                        "updated"
                    },
                    done.paths.root.display()
                );
                println!("  name         {}", c.name);
                println!("  listens on   {}:{}", c.listen, c.port);
                println!("  host         {}", c.host);
                println!("  parallel     {}", c.parallel);
                println!("  fingerprint  {}", done.fingerprint);
                println!(
                    "Start it with `dbhaul agent serve --dir {}`, then register it on the \
                     controller:\n  dbhaul agents register {} --host {} --port {} --fingerprint {}",
                    done.paths.root.display(),
                    c.name,
                    c.host,
                    c.port,
                    done.fingerprint
                );
            }
            Exit::Done
        }
        Err(e) => {
            report_error(format!("{e}; nothing was changed"));
            Exit::Usage
        }
    }
}

pub fn serve_agent(args: AgentServeArgs) -> Exit {
    use crate::remote::controller_client::Trust;
    let trust = match args.trust.given() {
        Ok(given) => given.unwrap_or(Trust::System),
        Err(e) => {
            report_error(format!("--controller-fingerprint: {e}"));
            return Exit::Usage;
        }
    };
    let token = match (&args.join_token_file, args.join_token) {
        (Some(file), _) => match std::fs::read_to_string(file) {
            Ok(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
            Ok(_) => {
                report_error(format!(
                    "--join-token-file {} is empty; copy join.token from the controller's folder",
                    file.display()
                ));
                return Exit::Usage;
            }
            Err(e) => {
                report_error(format!(
                    "cannot read the join token from {}: {e}; copy join.token from the \
                     controller's folder there",
                    file.display()
                ));
                return Exit::Usage;
            }
        },
        (None, token) => token,
    };
    let join = match (args.controller, token) {
        (Some(controller), Some(token)) => Some(crate::api::agent_serve::Join {
            controller,
            token,
            description: args.description,
            trust,
        }),
        (Some(_), None) => {
            report_error(
                "--controller needs the controller's join token: --join-token-file PATH (a \
                 copy of join.token from the controller's folder) or DBHAUL_JOIN_TOKEN",
            );
            return Exit::Usage;
        }
        (None, _) => None,
    };
    let session = std::time::Duration::from_secs(args.session_s.max(1));
    served(crate::api::agent_serve::run(args.dir, join, session))
}

/// The exit status of a daemon that ended.
fn served(result: Result<(), ServeError>) -> Exit {
    match result {
        Ok(()) => Exit::Done,
        Err(ServeError::Configuration(e)) => {
            report_error(e);
            Exit::Usage
        }
        Err(ServeError::Runtime(e)) => {
            report_error(e);
            Exit::Failed
        }
    }
}

/// `dbhaul agent release`: forget the controller the agent belongs to and the credential a
/// join gave it; the running agent reads the change at its next request.
pub fn release_agent(args: AgentStatusArgs) -> Exit {
    let paths = AgentPaths::new(args.dir);
    let mut config = match AgentConfig::load(&paths) {
        Ok(c) => c,
        Err(e) => {
            report_error(e);
            return Exit::Usage;
        }
    };
    let Some(owner) = config.controller_id.take() else {
        println!(
            "agent {} belongs to no controller; any controller may register it",
            config.name
        );
        return Exit::Done;
    };
    config.join_secret_hash = None;
    if let Err(e) = config.save(&paths) {
        report_error(e);
        return Exit::Failed;
    }
    println!(
        "agent {} released from controller {owner}; another controller may register it now \
         (on the old one, `dbhaul agents remove {}` forgets it)",
        config.name, config.name
    );
    Exit::Done
}

/// Whether the agent of a folder runs, on which port, with which certificate.
pub fn agent_status(args: AgentStatusArgs) -> Exit {
    let paths = AgentPaths::new(args.dir);
    let config = match AgentConfig::load(&paths) {
        Ok(c) => c,
        Err(e) => {
            report_error(e);
            return Exit::Usage;
        }
    };
    let fingerprint = match crate::remote::tls::fingerprint_of_pem(&paths.cert()) {
        Ok(f) => f,
        Err(e) => {
            report_error(e);
            return Exit::Usage;
        }
    };
    let host = if config.listen == "0.0.0.0" || config.listen == "::" {
        "127.0.0.1".to_string()
    } else {
        config.listen.clone()
    };
    let client = crate::remote::agent_client::AgentClient::new(
        &config.name,
        &host,
        config.port,
        Some(fingerprint.clone()),
        "",
        Default::default(),
    );
    let runtime = client_runtime();
    let health = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), client.health()).await });
    match health {
        Ok(Ok(h)) => {
            println!(
                "agent {} is running on port {} (fingerprint {fingerprint}); {} of {} slots busy, {} queued",
                config.name, config.port, h.running, h.capacity, h.queued
            );
            Exit::Done
        }
        Ok(Err(e)) => {
            println!(
                "agent {} is not running (configured for port {}, fingerprint {fingerprint}): {e}",
                config.name, config.port
            );
            Exit::Failed
        }
        Err(_) => {
            println!(
                "agent {} does not answer on port {}",
                config.name, config.port
            );
            Exit::Failed
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ControllerStatusArgs {
    #[command(flatten)]
    pub client: super::client::ClientArgs,
}

pub fn serve_controller(args: ControllerServeArgs) -> Exit {
    let listening = crate::api::controller_serve::Listening {
        names: args.names,
        certificate: args.tls_cert.zip(args.tls_key),
        plain: args.plain_http,
    };
    served(crate::api::controller_serve::run(
        args.dir,
        &args.listen,
        Duration::from_millis(args.poll_ms.max(50)),
        listening,
    ))
}

/// Whether the controller answers, and the certificate fingerprint clients pin.
pub fn controller_status(args: ControllerStatusArgs) -> Exit {
    let client = &args.client;
    let local = client.local_folder();
    let fingerprint = local.as_ref().and_then(|dir| {
        crate::remote::tls::fingerprint_of_pem(&dir.join(crate::api::controller_serve::CERT_FILE))
            .ok()
    });
    if let Some(fingerprint) = &fingerprint {
        println!("certificate fingerprint {fingerprint}");
    }
    let connection = match super::client::connect(client) {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    let runtime = client_runtime();
    let health: Result<serde_json::Value, _> = runtime.block_on(connection.get("/v1/health"));
    match health {
        Ok(h) => {
            println!(
                "controller at {} is running (version {}); it presents the certificate {}",
                client.controller,
                h["version"].as_str().unwrap_or("?"),
                connection
                    .seen_fingerprint()
                    .or(fingerprint)
                    .unwrap_or_else(|| "of a plain-HTTP controller: none".into())
            );
            Exit::Done
        }
        Err(e) => {
            report_error(&e);
            Exit::Failed
        }
    }
}

/// A runtime for client commands.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
