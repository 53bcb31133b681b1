//! Per-task log files on agents and on the controller: `logs/<task>.log`, written at the
//! task's own level (ERROR, WARNING, INFO, DEBUG, TRACE), which can change while the task
//! runs. Any `tracing` event of dbhaul's own code that carries a `task` field lands in that
//! task's file, with its `subtask` and `chunk` fields first:
//!
//! ```text
//! 2026-11-29T18:00:00.123Z DEBUG   task=orders subtask=public.orders/part-002 chunk=00000003.csv.gz chunk sealed rows=81920
//! ```
//!
//! Every line starts with a UTC time stamp, so the controller merges the agents' files with
//! its own in time order by sorting lines as text (`dbhaul tasks log`).
//!
//! One [`TaskLogLayer`] routes events by task and level (not a non-blocking writer per task,
//! which would drop lines under load and hold a thread per task), and one writer thread owns
//! every open file; sending to it waits when it is behind (no line is
//! dropped). Events from libraries never reach a task file: their messages are not ours to
//! vouch for. Lines are made from ids, counts and error messages, which are secret-free by
//! construction; as a second guard, the values of a task's secrets are replaced by `***`
//! before a line is written.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{LazyLock, OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};

use crate::model::LogLevel;

/// Lines waiting for the writer before senders wait.
const QUEUE: usize = 16 * 1024;

/// Secrets shorter than this are not scrubbed: replacing every "ab" would garble lines.
const MIN_SECRET_LEN: usize = 4;

pub fn path(logs: &Path, task: &str) -> PathBuf {
    logs.join(format!("{task}.log"))
}

/// How a level is written in a task log (the job file's names).
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// 1 (ERROR) to 5 (TRACE); 0 is "nothing".
fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

struct Watched {
    level: LogLevel,
    secrets: Vec<String>,
}

/// The routing table every event consults: which tasks log, at which level, and where the
/// writer thread is.
struct Router {
    /// The most detailed level of any watched task: events above it are not even built.
    max: AtomicU8,
    tasks: RwLock<HashMap<String, Watched>>,
    /// Set once, when the daemon opens its log folder: events read it without a lock.
    writer: OnceLock<SyncSender<Command>>,
}

enum Command {
    Line { task: String, line: String },
    Flush(SyncSender<()>),
    Close(String),
}

static ROUTER: LazyLock<Router> = LazyLock::new(|| Router {
    max: AtomicU8::new(0),
    tasks: RwLock::new(HashMap::new()),
    writer: OnceLock::new(),
});

impl Router {
    fn recompute_max(&self, tasks: &HashMap<String, Watched>) {
        let max = tasks
            .values()
            .map(|w| rank(&w.level.as_tracing()))
            .max()
            .unwrap_or(0);
        self.max.store(max, Ordering::Relaxed);
    }

    fn sender(&self) -> Option<&SyncSender<Command>> {
        self.writer.get()
    }
}

/// Start writing task logs into `dir` (a daemon does this once at start; a second call
/// is refused: one process, one log folder).
pub fn open(dir: &Path) -> std::io::Result<()> {
    crate::config::files::private_dir(dir)?;
    if ROUTER.writer.get().is_some() {
        return Err(std::io::Error::other("the task logs are open already"));
    }
    let (sender, receiver) = sync_channel(QUEUE);
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("task-logs".into())
        .spawn(move || write_lines(&dir, receiver))?;
    ROUTER
        .writer
        .set(sender)
        .map_err(|_| std::io::Error::other("the task logs are open already"))
}

/// Log the task at `level` from now on; `secrets` never appear in its lines.
pub fn watch(task: &str, level: LogLevel, secrets: impl IntoIterator<Item = String>) {
    let Ok(mut tasks) = ROUTER.tasks.write() else {
        return;
    };
    let secrets = secrets
        .into_iter()
        .filter(|s| s.len() >= MIN_SECRET_LEN)
        .collect();
    tasks.insert(task.to_string(), Watched { level, secrets });
    ROUTER.recompute_max(&tasks);
}

/// Change a watched task's level while it runs; false when the task is not watched.
pub fn set_level(task: &str, level: LogLevel) -> bool {
    let Ok(mut tasks) = ROUTER.tasks.write() else {
        return false;
    };
    let Some(watched) = tasks.get_mut(task) else {
        return false;
    };
    watched.level = level;
    ROUTER.recompute_max(&tasks);
    true
}

pub fn level(task: &str) -> Option<LogLevel> {
    ROUTER.tasks.read().ok()?.get(task).map(|w| w.level)
}

/// Stop logging the task and close its file (the task was deleted).
pub fn forget(task: &str) {
    if let Ok(mut tasks) = ROUTER.tasks.write() {
        tasks.remove(task);
        ROUTER.recompute_max(&tasks);
    }
    if let Some(sender) = ROUTER.sender() {
        let _ = sender.send(Command::Close(task.to_string()));
    }
}

/// Wait until every line logged so far is in its file (before a file is read or the
/// process ends).
pub fn flush() {
    let Some(sender) = ROUTER.sender() else {
        return;
    };
    let (done, wait) = sync_channel(1);
    if sender.send(Command::Flush(done)).is_ok() {
        let _ = wait.recv_timeout(std::time::Duration::from_secs(10));
    }
}

/// A task's log file as written so far (every line logged before the call included), read
/// on a blocking thread: a handler on the async runtime awaits it.
pub async fn read(logs: PathBuf, task: String) -> std::io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        flush();
        std::fs::read(path(&logs, &task))
    })
    .await
    .map_err(std::io::Error::other)?
}

fn write_lines(dir: &Path, receiver: Receiver<Command>) {
    let mut files: HashMap<String, BufWriter<File>> = HashMap::new();
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        // Take everything queued, then flush once: one write per burst, not per line.
        while let Some(command) = next.take() {
            match command {
                Command::Line { task, line } => {
                    if !files.contains_key(&task) {
                        match open_file(dir, &task) {
                            Ok(file) => {
                                files.insert(task.clone(), BufWriter::new(file));
                            }
                            Err(e) => {
                                tracing::warn!(
                                    "cannot write the log of task {task} in {}: {e}",
                                    dir.display()
                                );
                                continue;
                            }
                        }
                    }
                    if let Some(file) = files.get_mut(&task)
                        && let Err(e) = file.write_all(line.as_bytes())
                    {
                        tracing::warn!("cannot write the log of task {task}: {e}");
                    }
                }
                Command::Flush(done) => {
                    flush_all(&mut files);
                    let _ = done.send(());
                }
                Command::Close(task) => {
                    if let Some(mut file) = files.remove(&task) {
                        let _ = file.flush();
                    }
                }
            }
            next = receiver.try_recv().ok();
        }
        flush_all(&mut files);
    }
    flush_all(&mut files);
}

fn flush_all(files: &mut HashMap<String, BufWriter<File>>) {
    for (task, file) in files.iter_mut() {
        if let Err(e) = file.flush() {
            tracing::warn!("cannot write the log of task {task}: {e}");
        }
    }
}

fn open_file(dir: &Path, task: &str) -> std::io::Result<File> {
    crate::config::files::private_dir(dir)?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path(dir, task))
}

/// Lets through dbhaul's own events at or below the most detailed watched level; decided
/// per event (never cached per call site), so a level change takes effect at once.
pub struct TaskFilter;

impl<S: Subscriber> Filter<S> for TaskFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        meta.is_event()
            && meta.target().starts_with("dbhaul")
            && rank(meta.level()) <= ROUTER.max.load(Ordering::Relaxed)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if meta.target().starts_with("dbhaul") {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
        Some(tracing_subscriber::filter::LevelFilter::TRACE)
    }
}

/// Writes each event with a `task` field into that task's file, at that task's level.
pub struct TaskLogLayer;

impl<S: Subscriber> Layer<S> for TaskLogLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(task) = fields.task.clone() else {
            return;
        };
        let level = event.metadata().level();
        let line = {
            let Ok(tasks) = ROUTER.tasks.read() else {
                return;
            };
            let Some(watched) = tasks.get(&task) else {
                return;
            };
            if rank(level) > rank(&watched.level.as_tracing()) {
                return;
            }
            let mut line = format_line(level, &task, &fields);
            for secret in &watched.secrets {
                if line.contains(secret.as_str()) {
                    line = line.replace(secret.as_str(), "***");
                }
            }
            line
        };
        if let Some(sender) = ROUTER.sender() {
            let _ = sender.send(Command::Line { task, line });
        }
    }
}

fn format_line(level: &Level, task: &str, fields: &Fields) -> String {
    let mut line = format!(
        "{} {:<7} task={task}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        level_name(level)
    );
    if let Some(subtask) = &fields.subtask {
        let _ = write!(line, " subtask={subtask}");
    }
    if let Some(chunk) = &fields.chunk {
        let _ = write!(line, " chunk={chunk}");
    }
    let _ = write!(line, " {}", fields.message);
    for (name, value) in &fields.rest {
        let _ = write!(line, " {name}={value}");
    }
    // One event, one line: a message with line breaks would break the merge by time.
    let mut line = line.replace('\n', " ⏎ ");
    line.push('\n');
    line
}

#[derive(Default)]
struct Fields {
    task: Option<String>,
    subtask: Option<String>,
    chunk: Option<String>,
    message: String,
    rest: Vec<(&'static str, String)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "task" => self.task = Some(value),
            "subtask" => self.subtask = Some(value),
            "chunk" => self.chunk = Some(value),
            "message" => self.message = value,
            name => self.rest.push((name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_task_subtask_and_chunk_first_and_stay_on_one_line() {
        let fields = Fields {
            task: Some("t".into()),
            subtask: Some("public.a/part-001".into()),
            chunk: Some("00000002.csv.gz".into()),
            message: "chunk sealed\nnext".into(),
            rest: vec![("rows", "10".into())],
        };
        let line = format_line(&Level::DEBUG, "t", &fields);
        let rest = line.split_once(' ').unwrap().1;
        assert_eq!(
            rest,
            "DEBUG   task=t subtask=public.a/part-001 chunk=00000002.csv.gz chunk sealed ⏎ next rows=10\n"
        );
    }

    #[test]
    fn levels_rank_from_error_to_trace() {
        let names: Vec<_> = [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ]
        .iter()
        .map(|l| (rank(l), level_name(l)))
        .collect();
        assert_eq!(
            names,
            [
                (1, "ERROR"),
                (2, "WARNING"),
                (3, "INFO"),
                (4, "DEBUG"),
                (5, "TRACE")
            ]
        );
    }
}
