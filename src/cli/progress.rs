//! Progress of a running job on stderr: a bar per subtask on a terminal (rows, MB,
//! rows/s), plain lines every few seconds otherwise, so logs of unattended runs stay
//! readable.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::pipeline::job_runner::JobObserver;
use crate::pipeline::{SubtaskOutcome, SubtaskProgress};

const LINE_EVERY: Duration = Duration::from_secs(5);

pub struct ProgressView {
    bars: Option<MultiProgress>,
    running: HashMap<String, Running>,
    total: usize,
    ended: usize,
}

struct Running {
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
}

impl ProgressView {
    pub fn new(total: usize) -> ProgressView {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        ProgressView {
            bars,
            running: HashMap::new(),
            total,
            ended: 0,
        }
    }
}

fn rate_line(progress: &SubtaskProgress, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let mut line = format!(
        "{} rows  {:.1} MB  {:.0} rows/s",
        progress.rows,
        progress.bytes_out as f64 / 1_000_000.0,
        progress.rows as f64 / secs
    );
    if let Some(uploaded) = progress.uploaded_rows {
        line.push_str(&format!("  uploaded {uploaded}"));
    }
    if let Some(copied) = progress.copied_rows {
        line.push_str(&format!("  copied {copied}"));
    }
    line
}

impl JobObserver for ProgressView {
    fn started(&mut self, id: &str) {
        // A subtask that runs again after a fault that may pass: its first bar goes.
        if let Some(bar) = self.running.remove(id).and_then(|r| r.bar) {
            bar.finish_and_clear();
        }
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<36} {msg}")
                    .expect("valid template"),
            );
            bar.set_prefix(id.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if bar.is_none() {
            eprintln!("started {id}");
        }
        let now = Instant::now();
        self.running.insert(
            id.to_string(),
            Running {
                bar,
                started: now,
                last_line: now,
            },
        );
    }

    fn progress(&mut self, id: &str, progress: &SubtaskProgress) {
        let Some(running) = self.running.get_mut(id) else {
            return;
        };
        let line = rate_line(progress, running.started.elapsed());
        match &running.bar {
            Some(bar) => bar.set_message(line),
            None if running.last_line.elapsed() >= LINE_EVERY => {
                running.last_line = Instant::now();
                eprintln!("{id}: {line}");
            }
            None => {}
        }
    }

    fn finished(&mut self, outcome: &SubtaskOutcome) {
        self.ended += 1;
        let running = self.running.remove(&outcome.id);
        let line = match &outcome.manifest {
            Ok(_) => format!(
                "done: {} ({} chunks) [{}/{}]",
                rate_line(
                    &SubtaskProgress {
                        rows: outcome.rows,
                        bytes_out: outcome.bytes_compressed,
                        uploaded_rows: outcome.uploaded_rows,
                        uploaded_bytes: outcome.bytes_compressed,
                        copied_rows: outcome.copied_rows,
                        chunks: outcome.chunks,
                        extracted: true,
                        uploaded: outcome.uploaded_rows.is_some(),
                    },
                    Duration::from_secs_f64(outcome.seconds)
                ),
                outcome.chunks,
                self.ended,
                self.total
            ),
            Err(e) => format!("FAILED: {e} [{}/{}]", self.ended, self.total),
        };
        match running.and_then(|r| r.bar) {
            Some(bar) => bar.finish_with_message(line),
            None => eprintln!("{}: {line}", outcome.id),
        }
    }
}
