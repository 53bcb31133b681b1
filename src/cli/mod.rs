//! The command line: the contract users script against (commands, flags, exit codes). Each command lives in its
//! own file and returns an [`Exit`]; this file holds the clap tree and the dispatch.

mod client;
mod daemons;
mod decrypt;
mod plan;
mod progress;
mod run_job;
mod tables;
mod transfer;
mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit status, by contract: scripts rely on these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The work is done.
    Done = 0,
    /// The work failed (a subtask failed, the run was interrupted).
    Failed = 1,
    /// Bad usage or configuration: nothing ran.
    Usage = 2,
}

impl Exit {
    /// The status for an error: 2 when the user must change the configuration, else 1.
    pub fn for_error(is_configuration: bool) -> Exit {
        if is_configuration {
            Exit::Usage
        } else {
            Exit::Failed
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "dbhaul",
    version,
    about = "Move tables out of relational databases: ODBC in, compressed CSV chunks out, \
             S3 and a warehouse COPY",
    long_about = "dbhaul reads tables over ODBC and writes them as gzip-compressed CSV chunks \
                  with a manifest, uploads them to S3 and copies them into a warehouse.\n\n\
                  Start with `dbhaul tables --source CONNECTION` to see what a source holds, \
                  then write a job file (appliance/examples/job.toml has every setting) and \
                  `dbhaul run job.toml`.\n\n\
                  On several machines: `dbhaul agent configure` and `dbhaul agent serve` on \
                  each database-side machine, `dbhaul controller serve` on one, then \
                  `dbhaul agents register` and `dbhaul tasks create|start|wait`.\n\n\
                  Exit status: 0 done, 1 the work failed, 2 bad usage or configuration.",
    after_help = "Logs: DBHAUL_LOG=dbhaul=debug for more detail on stderr."
)]
pub struct Cli {
    /// Log what each step does (same as DBHAUL_LOG=dbhaul=info).
    #[arg(long, short, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one job to the end in this process, with progress, then print a summary.
    #[command(
        long_about = "Run one job to the end in this process: every table (and every \
        partition of a partitioned table) is a subtask; up to --parallel run at once. Chunks \
        land in <work-dir>/<task>/<schema>.<table>[/<partition>]/00000001.csv.gz with a \
        manifest.json beside them. With mode = \"extract-upload\" each chunk is uploaded to \
        [target] as soon as it is written; with \"extract-upload-copy\" it is then copied into \
        [warehouse] (PostgreSQL: COPY per chunk; Redshift: COPY from the manifest), exactly \
        once. The source, the working folder, the bucket and the warehouse are checked before \
        any data moves (exit 2 if one fails); --test runs those checks alone and prints one \
        line each.\n\nExamples:\n  dbhaul run appliance/examples/job.toml --work-dir \
        /var/lib/dbhaul/work\n  dbhaul run job.toml --test"
    )]
    Run(RunArgs),

    /// List a source's tables with row estimates and columns.
    #[command(
        long_about = "List a source's tables with row estimates and columns, through \
        the ODBC catalog functions. Columns marked LOB are streamed whole with \
        task.extract_lobs = true and left out with false.\n\nExample:\n  dbhaul tables \
        --source 'Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=erp;Uid=etl;' \
        --schema public"
    )]
    Tables(TablesArgs),

    /// Decrypt a chunk written with files.encryption_key_env (to stdout, or -o FILE).
    #[command(
        long_about = "Decrypt a chunk file written with files.encryption_key_env, locally or \
        downloaded from S3 or a device, into its compressed CSV. The key is read from the \
        environment variable the job named. A changed, cut-off or foreign file is refused and \
        nothing is left under -o.\n\nExample:\n  DBHAUL_CHUNK_KEY=... dbhaul decrypt \
        00000001.csv.gz --key-env DBHAUL_CHUNK_KEY -o plain.csv.gz && zcat plain.csv.gz"
    )]
    Decrypt(DecryptArgs),

    /// The extraction agent: configure it, serve its API, ask whether it runs.
    #[command(subcommand)]
    Agent(AgentCommand),

    /// The controller daemon.
    #[command(subcommand)]
    Controller(ControllerCommand),

    /// Register, list and remove the controller's agents.
    #[command(
        long_about = "Register, list and remove the controller's agents. The controller is \
        found with --controller URL or DBHAUL_CONTROLLER (default https://127.0.0.1:8554).\n\n\
        Example:\n  dbhaul agents register db1 --host 10.0.0.5 --port 3554 --fingerprint \
        3F:A1:...\n  dbhaul agents list"
    )]
    Agents {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: client::AgentsCommand,
    },

    /// Create, start, follow and manage tasks on the controller.
    #[command(
        long_about = "Create, start, follow and manage tasks on the controller. A task comes         from a job file (the same file `dbhaul run` takes); its password_env variables are read         here and sent to the controller, which stores them in its private store.\n\n\
        Example:\n  dbhaul tasks create job.toml --agents db1,db2\n  dbhaul tasks start orders\n  \
        dbhaul tasks wait orders && dbhaul tasks show orders"
    )]
    Tasks {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: client::TasksCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Set up (or change) an agent: password, port, TLS certificate; prints the fingerprint.
    #[command(
        long_about = "Set up an agent's folder: asks for a password (8 to 20 letters and \
        digits, at least one digit and one upper-case letter, asked twice) and a port (default \
        3554), makes a TLS key and a self-signed certificate, and prints the certificate's \
        SHA-256 fingerprint, which the controller pins. Running it again changes the password \
        or the port and keeps the certificate and the agent's subtasks.\n\nUnattended:\n  \
        echo \"$AGENT_PASSWORD\" | dbhaul agent configure --dir /opt/dbhaul/var/agent \
        --password-stdin --port 3554"
    )]
    Configure(daemons::ConfigureArgs),
    /// Run the agent: HTTPS API, subtasks, resume of unfinished work after a restart.
    Serve(daemons::AgentServeArgs),
    /// Whether the agent runs, on which port, with which certificate fingerprint.
    Status(daemons::AgentStatusArgs),
    /// Let the agent go from the controller it belongs to, so another may register it (the
    /// running agent takes it at once; the old controller's sessions end).
    Release(daemons::AgentStatusArgs),
}

#[derive(Debug, Subcommand)]
pub enum ControllerCommand {
    /// Run the controller: HTTPS API and status page (loopback by default), dispatch and
    /// polling of agents; prints its certificate's fingerprint.
    Serve(daemons::ControllerServeArgs),
    /// Whether the controller answers, and its certificate's fingerprint (which
    /// `--controller-fingerprint` pins on other machines).
    Status(daemons::ControllerStatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job file (TOML).
    pub job: PathBuf,

    /// Working folder; chunks go to <work-dir>/<task>/...
    #[arg(long, env = "DBHAUL_WORK_DIR", default_value = "dbhaul-work")]
    pub work_dir: PathBuf,

    /// Subtasks run at once (each one holds one source connection).
    #[arg(long, env = "DBHAUL_PARALLEL", default_value_t = default_parallel(), value_parser = clap::value_parser!(u32).range(1..=256))]
    pub parallel: u32,

    /// Print the summary as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Test the task instead of running it: source login and table access, working folder,
    /// bucket (write, read back, delete a probe object), warehouse login and permissions.
    /// One line per check with the cause and fix of each failure; exit 0 when all pass.
    #[arg(long)]
    pub test: bool,

    /// Propose tasks instead of running: the job's tables grouped into tasks of at most
    /// --max-gb, with range partitions for tables above --partition-gb (`tasks plan`).
    #[arg(long, conflicts_with = "test")]
    pub plan: bool,

    #[command(flatten)]
    pub plan_options: PlanOptions,
}

/// How `tasks plan` and `run --plan` group tables.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanOptions {
    /// Largest task, in GB of the catalog's table sizes (a larger table gets a task of its own).
    #[arg(long, default_value_t = 100.0)]
    pub max_gb: f64,

    /// Tables above this many GB get range partitions on their key, one per this many GB.
    #[arg(long, default_value_t = 10.0)]
    pub partition_gb: f64,

    /// Write a job file per proposed task into this folder (created if missing).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TasksPlanArgs {
    /// ODBC connection string of the source.
    #[arg(long)]
    pub source: String,

    /// Read the source password from this environment variable (written into the job
    /// files as password_env, never as a value).
    #[arg(long)]
    pub password_env: Option<String>,

    /// Tables to plan: `schema.table` or a pattern (`sales.*`, `sales.order%`); repeat for
    /// more. Default: every table and view.
    #[arg(long = "tables", default_value = "*")]
    pub tables: Vec<String>,

    /// The proposed tasks are named NAME-01, NAME-02, ...
    #[arg(long, default_value = "plan")]
    pub name: String,

    #[command(flatten)]
    pub options: PlanOptions,

    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DecryptArgs {
    /// The encrypted chunk file.
    pub file: PathBuf,

    /// The environment variable that holds the key (64 hex digits).
    #[arg(long)]
    pub key_env: String,

    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TablesArgs {
    /// ODBC connection string, e.g. "Driver={SQLite3};Database=/data/shop.db".
    #[arg(long)]
    pub source: String,

    /// Only this schema (MariaDB/MySQL: database).
    #[arg(long)]
    pub schema: Option<String>,

    /// Read the password from this environment variable.
    #[arg(long)]
    pub password_env: Option<String>,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn default_parallel() -> u32 {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() as u32)
        .clamp(2, 8)
}

/// Run a parsed command line; the exit status follows the contract.
pub fn run(cli: Cli) -> Exit {
    // The daemons log what they do (service logs); one-shot commands only warnings.
    let daemon = matches!(
        cli.command,
        Command::Agent(AgentCommand::Serve(_)) | Command::Controller(ControllerCommand::Serve(_))
    );
    crate::telemetry::init(cli.verbose || daemon);
    match cli.command {
        Command::Run(args) => run_job::run(args),
        Command::Tables(args) => tables::run(args),
        Command::Decrypt(args) => decrypt::run(args),
        Command::Agent(AgentCommand::Configure(args)) => daemons::configure_agent(args),
        Command::Agent(AgentCommand::Serve(args)) => daemons::serve_agent(args),
        Command::Agent(AgentCommand::Status(args)) => daemons::agent_status(args),
        Command::Agent(AgentCommand::Release(args)) => daemons::release_agent(args),
        Command::Controller(ControllerCommand::Serve(args)) => daemons::serve_controller(args),
        Command::Controller(ControllerCommand::Status(args)) => daemons::controller_status(args),
        Command::Agents { client, command } => client::agents(client, command),
        Command::Tasks { client, command } => client::tasks(client, command),
    }
}

/// The password `--password-env VAR` names, or the usage error when VAR is not set.
fn password_from_env(var: Option<&String>) -> Result<Option<crate::config::Secret>, Exit> {
    match var {
        None => Ok(None),
        Some(var) => match std::env::var(var) {
            Ok(value) => Ok(Some(crate::config::Secret::new(value))),
            Err(_) => {
                report_error(format!("--password-env names `{var}`, which is not set"));
                Err(Exit::Usage)
            }
        },
    }
}

/// Print an error the way every command does.
fn report_error(message: impl std::fmt::Display) {
    eprintln!("dbhaul: error: {message}");
}
