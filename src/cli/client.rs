//! `dbhaul agents ...` and `dbhaul tasks ...`: the command-line client of the controller's
//! API. Exit status: 0 done; 1 the work failed or the controller or an agent could not be
//! reached; 2 the request was refused as wrong (bad input, unknown name, wrong password or
//! fingerprint, a conflict with the current state).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::daemons::client_runtime;
use super::{Exit, report_error};
use crate::model::LogLevel;
use crate::remote::controller_client::{ClientError, ControllerClient, DEFAULT_CONTROLLER, Trust};
use crate::remote::wire::{
    AgentView, CreateTask, RegisterAgent, State, TaskDefinition, TaskView, TestReport,
};

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The controller's URL.
    #[arg(long, env = "DBHAUL_CONTROLLER", default_value = DEFAULT_CONTROLLER, global = true)]
    pub controller: String,
    /// The controller's admin token (default: read from admin.token in the controller's
    /// folder, which its owner and root can read).
    #[arg(long, env = "DBHAUL_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// The controller's folder on this machine, where the token and the certificate to pin
    /// are read (default: /opt/dbhaul/var/controller when --controller is on loopback).
    #[arg(long, env = "DBHAUL_CONTROLLER_DIR", global = true)]
    pub controller_dir: Option<PathBuf>,
    #[command(flatten)]
    pub trust: ControllerTrustArgs,
}

/// How the controller's certificate is trusted, for the CLI and for joining agents.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerTrustArgs {
    /// Pin the controller's certificate by its SHA-256 fingerprint (`dbhaul controller
    /// status` on its machine prints it).
    #[arg(long, env = "DBHAUL_CONTROLLER_FINGERPRINT", global = true)]
    pub controller_fingerprint: Option<String>,
    /// Trust the controller's certificate when these CAs (PEM) sign it: an operator's
    /// certificate given to `controller serve --tls-cert`.
    #[arg(
        long,
        env = "DBHAUL_CONTROLLER_CA",
        global = true,
        conflicts_with = "controller_fingerprint"
    )]
    pub controller_ca: Option<PathBuf>,
}

impl ControllerTrustArgs {
    /// The trust given: a pin, CAs, or neither (`None`).
    pub fn given(&self) -> Result<Option<Trust>, String> {
        if let Some(raw) = &self.controller_fingerprint {
            return Ok(Some(Trust::Pin(crate::remote::tls::parse_fingerprint(
                raw,
            )?)));
        }
        Ok(self.controller_ca.clone().map(Trust::Roots))
    }
}

impl ClientArgs {
    /// The controller's folder on this machine: the one named, or the default folder when
    /// the controller is on loopback.
    pub fn local_folder(&self) -> Option<PathBuf> {
        if let Some(dir) = &self.controller_dir {
            return Some(dir.clone());
        }
        let url = url::Url::parse(&self.controller).ok()?;
        crate::remote::controller_client::is_loopback(&url)
            .then(|| PathBuf::from(crate::controller::DEFAULT_DIR))
    }

    /// The token to send: given, or read from the local folder when this user can.
    fn token(&self) -> Option<String> {
        if let Some(token) = &self.token {
            return Some(token.trim().to_string());
        }
        let file = self
            .local_folder()?
            .join(crate::api::controller_serve::ADMIN_TOKEN_FILE);
        let token = std::fs::read_to_string(file).ok()?;
        Some(token.trim().to_string()).filter(|t| !t.is_empty())
    }

    /// How to trust the controller's certificate.
    fn trust(&self) -> Result<Trust, String> {
        if let Some(given) = self.trust.given()? {
            return Ok(given);
        }
        let local = self
            .local_folder()
            .map(|dir| dir.join(crate::api::controller_serve::CERT_FILE))
            .and_then(|cert| crate::remote::tls::fingerprint_of_pem(&cert).ok());
        Ok(local.map_or(Trust::System, Trust::Pin))
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentsCommand {
    /// Register an agent: the controller connects over TLS, you confirm the certificate's
    /// fingerprint (or give it with --fingerprint), and it is pinned from then on.
    Register {
        /// A name for the agent: letters, digits, - and _.
        name: String,
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = crate::agent::config::DEFAULT_PORT)]
        port: u16,
        #[arg(long, default_value = "")]
        description: String,
        /// Read the agent's password from the first line of stdin instead of asking.
        #[arg(long)]
        password_stdin: bool,
        /// The certificate fingerprint `dbhaul agent configure` printed on the agent.
        #[arg(long)]
        fingerprint: Option<String>,
        /// What the agent may be given (comma-separated). A task goes to agents with every
        /// role it needs; a copy task with no such agent hands off: agents with
        /// extract,upload extract and upload, agents with copy (alone given the warehouse's
        /// settings) copy.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "extract,upload,copy"
        )]
        roles: Vec<crate::model::Role>,
    },
    /// List agents with reachability, version, running subtasks and capacity.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Forget an agent (refused while it holds unfinished subtasks).
    Remove { name: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum TasksCommand {
    /// Propose tasks for a source's tables, grouped by size from the catalog's estimates,
    /// with range partitions for the large ones; --out writes a job file per task. Needs
    /// the source, not the controller.
    #[command(
        long_about = "Propose tasks for a source's tables: every table the --tables patterns \
        match (SQL LIKE, * is %) is sized from the catalog's estimates (PostgreSQL \
        pg_table_size, MariaDB DATA_LENGTH, SQLite dbstat), then grouped into tasks of at most \
        --max-gb, largest first; a table above --partition-gb gets range partitions on its key \
        (one per --partition-gb). Nothing but the catalog is read. --out DIR writes one job \
        file per task, ready for `dbhaul tasks create`.\n\nExample:\n  dbhaul tasks plan \
        --source 'Driver={PostgreSQL Unicode};Server=db;Database=erp;Uid=etl;' --tables \
        'sales.*' --max-gb 200 --out plans/"
    )]
    Plan(crate::cli::TasksPlanArgs),
    /// Create a task from a job file; its subtasks are planned on an agent.
    Create {
        job: PathBuf,
        /// Only these agents run the task (comma-separated names); default: all.
        #[arg(long, value_delimiter = ',')]
        agents: Option<Vec<String>>,
        #[arg(long)]
        json: bool,
    },
    /// List tasks with state and progress.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A task's state and every subtask's stages, with the agent that runs it.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Run the task's checks from an agent: source, tables, working folder, bucket,
    /// warehouse. Exit 0 when all pass.
    Test {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Start a task: its subtasks are dispatched to the agents with free capacity.
    Start { name: String },
    /// Stop a task's running and waiting subtasks.
    Stop { name: String },
    /// Run a task's failed and stopped subtasks again.
    Resume { name: String },
    /// Wait until a task ends; exit 0 when it completed, 1 otherwise.
    Wait {
        name: String,
        /// Give up after this many seconds (exit 1).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Follow a task live: a bar per subtask and stage until it ends; exit 0 when it
    /// completed, 1 otherwise. Without a terminal, prints changes as lines.
    Watch {
        name: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// The task's log: the controller's and the agents' lines in time order, each marked
    /// `[controller]` or `[agent NAME]`.
    Log {
        name: String,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Change what a task logs, while it runs, on the controller and its agents:
    /// ERROR, WARNING, INFO, DEBUG or TRACE (each includes the ones before it).
    #[command(name = "log-level")]
    LogLevel {
        name: String,
        #[arg(value_parser = parse_level)]
        level: LogLevel,
    },
    /// Delete a task that is not running.
    Delete { name: String },
    /// Save a task, its subtasks and the state of its processing as XML (never its
    /// secrets): NAME.xml, or -o FILE (`-` for stdout); `--all -o DIR` one file per task.
    Export {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Recreate tasks from export files, here or on another controller, all or none.
    /// Agents are matched by name; secrets come from the `password_env` variables
    /// (asked on a terminal when unset).
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Overwrite a task of the same name (not while it runs).
        #[arg(long, conflicts_with = "rename")]
        replace: bool,
        /// Import the one task under this name (and a new id).
        #[arg(long)]
        rename: Option<String>,
    },
}

fn parse_level(text: &str) -> Result<LogLevel, String> {
    LogLevel::parse(text).ok_or_else(|| {
        format!("`{text}` is not a log level: use ERROR, WARNING, INFO, DEBUG or TRACE")
    })
}

pub(super) fn exit_for(e: &ClientError) -> Exit {
    match e.status() {
        Some(s) if (400..500).contains(&s) => Exit::Usage,
        _ => Exit::Failed,
    }
}

pub(super) fn connect(args: &ClientArgs) -> Result<ControllerClient, Exit> {
    args.trust()
        .and_then(|trust| ControllerClient::new(&args.controller, args.token(), trust))
        .map_err(|e| {
            report_error(e);
            Exit::Usage
        })
}

pub(super) fn call<T: DeserializeOwned>(
    runtime: &tokio::runtime::Runtime,
    future: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, Exit> {
    runtime.block_on(future).map_err(|e| {
        report_error(&e);
        exit_for(&e)
    })
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializes")
    );
}

pub fn agents(args: ClientArgs, command: AgentsCommand) -> Exit {
    match agents_inner(args, command) {
        Ok(()) => Exit::Done,
        Err(exit) => exit,
    }
}

fn read_password(from_stdin: bool, name: &str) -> Result<String, Exit> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            report_error(format!("cannot read stdin: {e}"));
            Exit::Usage
        })?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        report_error("no terminal to ask for the agent's password: use --password-stdin");
        return Err(Exit::Usage);
    }
    rpassword::prompt_password(format!("Password of agent {name}: ")).map_err(|e| {
        report_error(format!("cannot read the password: {e}"));
        Exit::Usage
    })
}

fn agents_inner(args: ClientArgs, command: AgentsCommand) -> Result<(), Exit> {
    let client = connect(&args)?;
    let runtime = client_runtime();
    match command {
        AgentsCommand::Register {
            name,
            host,
            port,
            description,
            password_stdin,
            fingerprint,
            roles,
        } => {
            let password = read_password(password_stdin, &name)?;
            let mut request = RegisterAgent {
                name: name.clone(),
                description,
                host,
                port,
                password,
                fingerprint,
                roles,
            };
            let mut answer = runtime.block_on(client.post::<AgentView>("/v1/agents", &request));
            if let Err(ClientError::Api {
                status: 409, body, ..
            }) = &answer
                && let Some(seen) = body.get("fingerprint").and_then(|f| f.as_str())
            {
                let seen = seen.to_string();
                if password_stdin || !std::io::stdin().is_terminal() {
                    report_error(format!(
                        "agent {name} presents the certificate fingerprint {seen}; compare it with \
                         what `dbhaul agent configure` printed on the agent and register again \
                         with --fingerprint {seen}. Nothing was registered"
                    ));
                    return Err(Exit::Usage);
                }
                eprint!(
                    "Agent {name} presents the certificate fingerprint\n  {seen}\nIs it the one \
                     `dbhaul agent configure` printed on the agent? [y/N] "
                );
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                if !matches!(line.trim(), "y" | "Y" | "yes") {
                    report_error("not confirmed; nothing was registered");
                    return Err(Exit::Usage);
                }
                request.fingerprint = Some(seen);
                answer = runtime.block_on(client.post::<AgentView>("/v1/agents", &request));
            }
            let view = answer.map_err(|e| {
                report_error(&e);
                exit_for(&e)
            })?;
            println!(
                "registered agent {} at {}:{}; certificate {} pinned; {} subtasks at once",
                view.name,
                view.host,
                view.port,
                view.fingerprint,
                view.capacity.unwrap_or(0)
            );
        }
        AgentsCommand::List { json } => {
            let agents: Vec<AgentView> = call(&runtime, client.get("/v1/agents"))?;
            if json {
                print_json(&agents);
            } else if agents.is_empty() {
                println!(
                    "no agents registered; `dbhaul agents register NAME --host H --port P` adds one"
                );
            } else {
                println!(
                    "{:<16} {:<24} {:<10} {:<8} {:>8} {:>8} {:>7}  {:<20} fingerprint",
                    "agent",
                    "address",
                    "reachable",
                    "version",
                    "running",
                    "capacity",
                    "queued",
                    "roles"
                );
                for a in &agents {
                    let n = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
                    println!(
                        "{:<16} {:<24} {:<10} {:<8} {:>8} {:>8} {:>7}  {:<20} {}",
                        a.name,
                        format!("{}:{}", a.host, a.port),
                        if a.reachable { "yes" } else { "NO" },
                        a.version.as_deref().unwrap_or("-"),
                        n(a.running),
                        n(a.capacity),
                        n(a.queued),
                        a.roles
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        &a.fingerprint[..a.fingerprint.len().min(23)]
                    );
                    if let Some(e) = &a.error {
                        println!("    {e}");
                    }
                }
            }
        }
        AgentsCommand::Remove { name } => {
            call(&runtime, client.delete(&format!("/v1/agents/{name}")))?;
            println!("agent {name} removed");
        }
    }
    Ok(())
}

pub fn tasks(args: ClientArgs, command: TasksCommand) -> Exit {
    // Planning asks the source, not the controller.
    if let TasksCommand::Plan(plan) = command {
        return super::plan::tasks_plan(plan);
    }
    match tasks_inner(args, command) {
        Ok(exit) => exit,
        Err(exit) => exit,
    }
}

/// The environment variables a job file's `password_env` and `encryption_key_env`
/// settings name: their values go to the controller with the task, as secrets.
fn secret_names(text: &str) -> Vec<String> {
    let Ok(value) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    [
        ("source", "password_env"),
        ("warehouse", "password_env"),
        ("files", "encryption_key_env"),
    ]
    .iter()
    .filter_map(|(section, key)| value.get(*section)?.get(*key)?.as_str().map(String::from))
    .collect()
}

/// The files a job file's tables name (`partition.boundaries_file`).
fn attached_names(text: &str) -> Vec<String> {
    let Ok(value) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let tables = value.get("tables").and_then(|t| t.as_array());
    tables
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("partition")?.get("boundaries_file")?.as_str())
        .map(String::from)
        .collect()
}

fn tasks_inner(args: ClientArgs, command: TasksCommand) -> Result<Exit, Exit> {
    let client = connect(&args)?;
    let runtime = client_runtime();
    match command {
        TasksCommand::Plan(_) => unreachable!("answered by tasks(), without a controller"),
        TasksCommand::Create { job, agents, json } => {
            // Validate here first: errors point at the file and line, with nothing sent.
            let parsed = crate::config::Job::load(&job).map_err(|e| {
                report_error(&e);
                Exit::Usage
            })?;
            let text = std::fs::read_to_string(&job).map_err(|e| {
                report_error(format!("cannot read {}: {e}", job.display()));
                Exit::Usage
            })?;
            let secrets: BTreeMap<String, String> = secret_names(&text)
                .into_iter()
                .filter_map(|var| std::env::var(&var).ok().map(|v| (var, v)))
                .collect();
            // Read as Job::load read them, next to the job file; the agents get the text.
            let folder = job.parent().unwrap_or(std::path::Path::new(""));
            let files = attached_names(&text)
                .into_iter()
                .map(|name| {
                    let path = folder.join(&name);
                    std::fs::read_to_string(&path)
                        .map(|t| (name, t))
                        .map_err(|e| {
                            report_error(format!("cannot read {}: {e}", path.display()));
                            Exit::Usage
                        })
                })
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            let request = CreateTask {
                task: TaskDefinition {
                    name: parsed.name.to_string(),
                    id: String::new(),
                    job: text,
                    secrets,
                    files,
                },
                agents,
            };
            let view: TaskView = call(&runtime, client.post("/v1/tasks", &request))?;
            if json {
                print_json(&view);
            } else {
                println!(
                    "task {} created: {} subtasks ({}); start it with `dbhaul tasks start {}`",
                    view.name, view.subtasks_total, view.mode, view.name
                );
            }
        }
        TasksCommand::List { json } => {
            let tasks: Vec<TaskView> = call(&runtime, client.get("/v1/tasks"))?;
            if json {
                print_json(&tasks);
            } else if tasks.is_empty() {
                println!("no tasks; `dbhaul tasks create JOB.toml` makes one");
            } else {
                println!(
                    "{:<24} {:<20} {:<10} {:>5} {:>9} {:>14} {:>10} {:>9}",
                    "task", "mode", "state", "done", "subtasks", "rows", "MB (gz)", "ETA s"
                );
                for t in &tasks {
                    println!(
                        "{:<24} {:<20} {:<10} {:>4}% {:>9} {:>14} {:>10.1} {:>9}",
                        t.name,
                        t.mode,
                        t.state.as_str(),
                        (t.progress * 100.0).floor() as u64,
                        format!("{}/{}", t.subtasks_completed, t.subtasks_total),
                        t.rows,
                        t.bytes as f64 / 1e6,
                        t.eta_s.map_or("-".to_string(), |s| format!("{s:.0}"))
                    );
                }
            }
        }
        TasksCommand::Show { name, json } => {
            let view: TaskView = call(&runtime, client.get(&format!("/v1/tasks/{name}")))?;
            if json {
                print_json(&view);
            } else {
                print_task(&view);
            }
        }
        TasksCommand::Test { name, json } => {
            let report: TestReport = call(
                &runtime,
                client.post(&format!("/v1/tasks/{name}/test"), &()),
            )?;
            if json {
                print_json(&report);
            } else {
                println!(
                    "test of task {name} from agent {}",
                    report.agent.as_deref().unwrap_or("?")
                );
                for c in &report.checks {
                    println!(
                        "{:<4} {:<16} {}",
                        if c.ok { "ok" } else { "FAIL" },
                        c.name,
                        c.detail
                    );
                }
                println!(
                    "{}",
                    if report.ok {
                        "all checks passed"
                    } else {
                        "some checks failed"
                    }
                );
            }
            return Ok(if report.ok { Exit::Done } else { Exit::Failed });
        }
        TasksCommand::Start { name } => return action(&runtime, &client, &name, "start"),
        TasksCommand::Stop { name } => return action(&runtime, &client, &name, "stop"),
        TasksCommand::Resume { name } => return action(&runtime, &client, &name, "resume"),
        TasksCommand::Wait { name, timeout } => {
            return wait(&runtime, &client, &name, timeout.map(Duration::from_secs));
        }
        TasksCommand::Watch { name, interval } => {
            let every = Duration::from_secs_f64(interval.clamp(0.1, 60.0));
            return super::watch::watch(&runtime, &client, &name, every);
        }
        TasksCommand::LogLevel { name, level } => {
            let view: TaskView = call(
                &runtime,
                client.put(
                    &format!("/v1/tasks/{name}/log-level"),
                    &crate::remote::wire::SetLogLevel { level },
                ),
            )?;
            for warning in &view.warnings {
                eprintln!("dbhaul: warning: {warning}");
            }
            println!("task {name} logs at {} now", view.log_level);
        }
        TasksCommand::Log { name, output } => {
            let text = call(&runtime, client.text(&format!("/v1/tasks/{name}/log")))?;
            match output {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| {
                        report_error(format!("cannot write {}: {e}", path.display()));
                        Exit::Failed
                    })?;
                    println!("log of task {name} written to {}", path.display());
                }
                None => print!("{text}"),
            }
        }
        TasksCommand::Export { name, all, output } => {
            return super::transfer::export(&runtime, &client, name, all, output);
        }
        TasksCommand::Import {
            files,
            replace,
            rename,
        } => return super::transfer::import(&runtime, &client, &files, replace, rename),
        TasksCommand::Delete { name } => {
            call(&runtime, client.delete(&format!("/v1/tasks/{name}")))?;
            println!("task {name} deleted");
        }
    }
    Ok(Exit::Done)
}

fn action(
    runtime: &tokio::runtime::Runtime,
    client: &ControllerClient,
    name: &str,
    verb: &str,
) -> Result<Exit, Exit> {
    let view: TaskView = call(
        runtime,
        client.post(&format!("/v1/tasks/{name}/{verb}"), &()),
    )?;
    for warning in &view.warnings {
        eprintln!("dbhaul: warning: {warning}");
    }
    println!(
        "task {}: {} ({}/{} subtasks completed)",
        view.name,
        view.state.as_str(),
        view.subtasks_completed,
        view.subtasks_total
    );
    Ok(Exit::Done)
}

fn wait(
    runtime: &tokio::runtime::Runtime,
    client: &ControllerClient,
    name: &str,
    timeout: Option<Duration>,
) -> Result<Exit, Exit> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let view: TaskView = match runtime.block_on(client.get(&format!("/v1/tasks/{name}"))) {
            Ok(view) => view,
            Err(e @ ClientError::Unreachable { .. }) => {
                // The controller may be restarting: keep waiting, say so once.
                let line = format!("waiting for the controller: {e}");
                if line != last {
                    eprintln!("{line}");
                    last = line;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            Err(e) => {
                report_error(&e);
                return Err(exit_for(&e));
            }
        };
        let line = format!(
            "task {}: {} ({}/{} subtasks completed, {} rows)",
            view.name,
            view.state.as_str(),
            view.subtasks_completed,
            view.subtasks_total,
            view.rows
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        match view.state {
            State::Completed => return Ok(Exit::Done),
            State::Pending => {
                report_error(format!(
                    "task {name} has not been started; `dbhaul tasks start {name}` starts it"
                ));
                return Ok(Exit::Usage);
            }
            State::Failed | State::Stopped => {
                for s in view.subtasks.iter().filter(|s| s.error.is_some()) {
                    eprintln!(
                        "dbhaul: error: subtask {} failed: {}",
                        s.id,
                        s.error.as_deref().unwrap_or("")
                    );
                }
                return Ok(Exit::Failed);
            }
            _ => {}
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            report_error(format!("task {name} did not end within the timeout"));
            return Ok(Exit::Failed);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn print_task(view: &TaskView) {
    println!(
        "task {} ({}): {}, {}/{} subtasks completed, {} rows, {:.1} MB compressed",
        view.name,
        view.mode,
        view.state.as_str(),
        view.subtasks_completed,
        view.subtasks_total,
        view.rows,
        view.bytes as f64 / 1e6
    );
    if !view.description.is_empty() {
        println!("  {}", view.description);
    }
    println!(
        "{:<36} {:<10} {:<14} {:>22} {:>22} {:>22}",
        "subtask", "state", "agent", "extract", "upload", "copy"
    );
    let stage = |s: Option<&crate::remote::wire::StageStatus>| {
        s.map_or("-".to_string(), |s| {
            format!("{} {}", s.state.as_str(), s.rows)
        })
    };
    for s in &view.subtasks {
        println!(
            "{:<36} {:<10} {:<14} {:>22} {:>22} {:>22}",
            s.id,
            s.state.as_str(),
            s.agent.as_deref().unwrap_or("-"),
            stage(Some(&s.extract)),
            stage(s.upload.as_ref()),
            stage(s.copy.as_ref())
        );
        if let Some(e) = &s.error {
            println!("    error: {e}");
        }
    }
}
