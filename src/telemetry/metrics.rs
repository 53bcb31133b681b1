//! The Prometheus metrics of a daemon, served at `/metrics` in the OpenMetrics text format. Counters
//! live for the process (they restart at zero with it, as Prometheus expects); what is a
//! state rather than an event — subtasks by state, agents reachable — is read when the
//! page is scraped and handed to [`render`] as [`Snapshot`]s.
//!
//! ```text
//! dbhaul_stage_rows_total{task,stage}     rows through a stage (extract, upload, copy)
//! dbhaul_stage_bytes_total{task,stage}    compressed bytes written, uploaded, loaded
//! dbhaul_chunks_total{task}               chunks sealed
//! dbhaul_retries_total{stage}             tried again: s3 requests, copy downloads, subtasks
//! dbhaul_failures_total{task,stage}       stages that failed (and failed their subtask)
//! dbhaul_stage_queue_depth{stage}         messages waiting in a stage's mailbox
//! dbhaul_subtasks{task,state}             subtasks by state (scrape time)
//! ```

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskStage {
    task: String,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskOnly {
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageOnly {
    stage: &'static str,
}

struct Counters {
    rows: Family<TaskStage, Counter>,
    bytes: Family<TaskStage, Counter>,
    chunks: Family<TaskOnly, Counter>,
    retries: Family<StageOnly, Counter>,
    failures: Family<TaskStage, Counter>,
    queue: Family<StageOnly, Gauge>,
}

/// What is tried again: an S3 request, a chunk's download for the copy, a whole subtask
/// after a lost source or warehouse connection.
const RETRIED: [&str; 3] = ["s3", "copy", "subtask"];

static COUNTERS: LazyLock<Counters> = LazyLock::new(|| {
    let counters = Counters {
        rows: Family::default(),
        bytes: Family::default(),
        chunks: Family::default(),
        retries: Family::default(),
        failures: Family::default(),
        queue: Family::default(),
    };
    // At zero from the start, so that a rate() over them has a beginning.
    for stage in RETRIED {
        let _ = counters.retries.get_or_create(&StageOnly { stage });
    }
    counters
});

/// Rows and compressed bytes that went through a stage.
pub fn stage_progress(task: &str, stage: &'static str, rows: u64, bytes: u64) {
    let labels = TaskStage {
        task: task.to_string(),
        stage,
    };
    if rows > 0 {
        COUNTERS.rows.get_or_create(&labels).inc_by(rows);
    }
    if bytes > 0 {
        COUNTERS.bytes.get_or_create(&labels).inc_by(bytes);
    }
}

pub fn chunk_sealed(task: &str) {
    COUNTERS
        .chunks
        .get_or_create(&TaskOnly {
            task: task.to_string(),
        })
        .inc();
}

/// `stage`: one of [`RETRIED`].
pub fn retry(stage: &'static str) {
    debug_assert!(RETRIED.contains(&stage));
    COUNTERS.retries.get_or_create(&StageOnly { stage }).inc();
}

pub fn failure(task: &str, stage: &'static str) {
    COUNTERS
        .failures
        .get_or_create(&TaskStage {
            task: task.to_string(),
            stage,
        })
        .inc();
}

/// The gauge of a stage's mailbox depth: the data path's credits move it.
pub fn queue_depth(stage: &'static str) -> Gauge {
    COUNTERS.queue.get_or_create(&StageOnly { stage }).clone()
}

/// A gauge read at scrape time: name (without the `dbhaul_` prefix), help, and one value
/// per label set.
pub struct Snapshot {
    pub name: &'static str,
    pub help: &'static str,
    pub values: Vec<(Vec<(String, String)>, i64)>,
}

/// The page `/metrics` serves: every counter, then the snapshots.
pub fn render(snapshots: Vec<Snapshot>) -> String {
    let mut registry = Registry::with_prefix("dbhaul");
    let c = &*COUNTERS;
    registry.register(
        "stage_rows",
        "Rows through a stage (extract: written into chunks; upload; copy)",
        c.rows.clone(),
    );
    registry.register(
        "stage_bytes",
        "Compressed bytes written (extract), uploaded (upload) or loaded (copy)",
        c.bytes.clone(),
    );
    registry.register("chunks", "Chunks sealed", c.chunks.clone());
    registry.register(
        "retries",
        "Network steps tried again after a transient error",
        c.retries.clone(),
    );
    registry.register(
        "failures",
        "Stages that failed, failing their subtask",
        c.failures.clone(),
    );
    registry.register(
        "stage_queue_depth",
        "Messages waiting in a stage's mailbox (bounded by its credits)",
        c.queue.clone(),
    );
    for snapshot in snapshots {
        let family: Family<Vec<(String, String)>, Gauge> = Family::default();
        for (labels, value) in snapshot.values {
            family.get_or_create(&labels).set(value);
        }
        registry.register(snapshot.name, snapshot.help, family);
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        text.push_str("# the metrics could not be encoded\n");
    }
    text
}

/// The content type of [`render`]'s text: OpenMetrics, the Prometheus text format's
/// standardised successor, which Prometheus asks for first.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_snapshots_render_in_the_text_format() {
        stage_progress("unit-t", "extract", 10, 300);
        chunk_sealed("unit-t");
        let text = render(vec![Snapshot {
            name: "subtasks",
            help: "Subtasks by state",
            values: vec![(
                vec![
                    ("task".into(), "unit-t".into()),
                    ("state".into(), "Running".into()),
                ],
                2,
            )],
        }]);
        assert!(
            text.contains("dbhaul_stage_rows_total{task=\"unit-t\",stage=\"extract\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("dbhaul_chunks_total{task=\"unit-t\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dbhaul_subtasks{task=\"unit-t\",state=\"Running\"} 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
