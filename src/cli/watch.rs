//! `dbhaul tasks watch NAME`: a task's progress, live, until it ends. On a terminal, a
//! totals line and one line per subtask with a bar per stage (extract, upload, copy),
//! redrawn every second; running subtasks first, and as many as the terminal holds. Not on
//! a terminal (a log, a pipe), one line per subtask that changed state and a totals line
//! every ten seconds. Exit status as `tasks wait`: 0 completed, 1 failed or stopped.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Exit, report_error};
use crate::remote::controller_client::{ClientError, ControllerClient};
use crate::remote::wire::{State, SubtaskStatus, TaskView};

const BAR_WIDTH: usize = 8;
const TOTALS_EVERY: Duration = Duration::from_secs(10);

pub fn watch(
    runtime: &tokio::runtime::Runtime,
    client: &ControllerClient,
    name: &str,
    every: Duration,
) -> Result<Exit, Exit> {
    let mut screen = std::io::stdout().is_terminal().then(Screen::new);
    let mut states: HashMap<String, State> = HashMap::new();
    let mut last_totals: Option<Instant> = None;
    let mut unreachable_said = false;
    loop {
        let view: TaskView = match runtime.block_on(client.get(&format!("/v1/tasks/{name}"))) {
            Ok(view) => view,
            Err(e @ ClientError::Unreachable { .. }) => {
                if !unreachable_said {
                    eprintln!("waiting for the controller: {e}");
                    unreachable_said = true;
                }
                std::thread::sleep(every);
                continue;
            }
            Err(e) => {
                report_error(&e);
                return Err(if e.is_refusal() {
                    Exit::Usage
                } else {
                    Exit::Failed
                });
            }
        };
        unreachable_said = false;
        if view.state == State::Pending && view.started_at.is_none() {
            report_error(format!(
                "task {name} has not been started; `dbhaul tasks start {name}` starts it"
            ));
            return Ok(Exit::Usage);
        }
        match screen.as_mut() {
            Some(screen) => screen.draw(&view),
            None => {
                for s in &view.subtasks {
                    if states.get(&s.id) != Some(&s.state) {
                        println!("{}", subtask_line(s, true));
                        states.insert(s.id.clone(), s.state);
                    }
                }
                if last_totals.is_none_or(|t| t.elapsed() >= TOTALS_EVERY) || view.state.is_final()
                {
                    println!("{}", totals_line(&view));
                    last_totals = Some(Instant::now());
                }
            }
        }
        if view.state.is_final() {
            if let Some(screen) = screen.take() {
                screen.finish(&view);
            }
            for s in view.subtasks.iter().filter(|s| s.error.is_some()) {
                eprintln!(
                    "dbhaul: error: subtask {} failed: {}",
                    s.id,
                    s.error.as_deref().unwrap_or("")
                );
            }
            return Ok(if view.state == State::Completed {
                Exit::Done
            } else {
                Exit::Failed
            });
        }
        std::thread::sleep(every);
    }
}

/// The terminal view: a pool of one-line bars, redrawn in place.
struct Screen {
    multi: MultiProgress,
    lines: Vec<ProgressBar>,
}

impl Screen {
    fn new() -> Screen {
        Screen {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            lines: Vec::new(),
        }
    }

    fn draw(&mut self, view: &TaskView) {
        // Two lines per subtask: they fit 80 columns.
        let height = console_height().saturating_sub(4).max(4) / 2;
        let mut text = vec![totals_line(view)];
        let mut order: Vec<&SubtaskStatus> = view.subtasks.iter().collect();
        // Running first, then failed, pending, stopped, completed; by id within each.
        order.sort_by_key(|s| (state_rank(s.state), s.id.clone()));
        let shown = order.len().min(height);
        for s in &order[..shown] {
            text.push(subtask_line(s, false));
            text.push(stage_bars(s));
        }
        if order.len() > shown {
            text.push(format!(
                "… and {} more subtasks ({} completed)",
                order.len() - shown,
                order[shown..]
                    .iter()
                    .filter(|s| s.state == State::Completed)
                    .count()
            ));
        }
        let style = ProgressStyle::with_template("{wide_msg}").expect("a valid template");
        while self.lines.len() < text.len() {
            let bar = self.multi.add(ProgressBar::new(1));
            bar.set_style(style.clone());
            self.lines.push(bar);
        }
        while self.lines.len() > text.len() {
            if let Some(bar) = self.lines.pop() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        for (bar, line) in self.lines.iter().zip(text) {
            bar.set_message(line);
        }
    }

    fn finish(self, view: &TaskView) {
        for bar in &self.lines {
            bar.finish();
        }
        let _ = self
            .multi
            .println(format!("task {} {}", view.name, view.state));
    }
}

fn console_height() -> usize {
    std::env::var("LINES")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(40)
}

fn state_rank(state: State) -> u8 {
    match state {
        State::Running => 0,
        State::Failed => 1,
        State::Pending => 2,
        State::Stopped => 3,
        State::Completed => 4,
    }
}

fn totals_line(view: &TaskView) -> String {
    let eta = view
        .eta_s
        .map_or_else(|| "-".to_string(), |s| clock(s as u64));
    format!(
        "task {} {:<9} {:>3}%  {}/{} subtasks  {} rows  {:.1} MB  {:.0} rows/s  elapsed {}  ETA {}",
        view.name,
        view.state.as_str(),
        (view.progress * 100.0).floor() as u64,
        view.subtasks_completed,
        view.subtasks_total,
        view.rows,
        view.bytes as f64 / 1e6,
        view.rows_per_s,
        clock(view.elapsed_s as u64),
        eta
    )
}

/// `public.orders/part-002  agent1  Running  40960 rows`, and with `stages` each stage's
/// percent and rows on the same line (for logs).
fn subtask_line(s: &SubtaskStatus, stages: bool) -> String {
    let mut line = format!(
        "{:<32} {:<10} {:<9} {} rows",
        s.id,
        s.agent.as_deref().unwrap_or("-"),
        s.state.as_str(),
        s.extract.rows
    );
    if stages {
        for (label, stage) in s.stages() {
            let percent = (s.stage_fraction(stage) * 100.0).floor() as u64;
            line.push_str(&format!("  {label} {percent}% ({} rows)", stage.rows));
        }
    }
    line
}

/// `    extract ████████ 100%  upload ██████░░  75%  copy ████░░░░  50%`
fn stage_bars(s: &SubtaskStatus) -> String {
    let mut line = String::from("   ");
    for (label, stage) in s.stages() {
        let fraction = s.stage_fraction(stage);
        let percent = (fraction * 100.0).floor() as u64;
        line.push_str(&format!(" {label} {} {percent:>3}% ", bar(fraction)));
    }
    line
}

fn bar(fraction: f64) -> String {
    let filled = ((fraction * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
    format!("{}{}", "█".repeat(filled), "░".repeat(BAR_WIDTH - filled))
}

fn clock(seconds: u64) -> String {
    format!(
        "{}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::wire::StageStatus;

    #[test]
    fn a_subtask_line_has_a_bar_per_stage_its_mode_runs() {
        let s = SubtaskStatus {
            id: "public.t/part-001".into(),
            state: State::Running,
            agent: Some("agent1".into()),
            estimated_rows: Some(100),
            extract: StageStatus {
                state: State::Running,
                rows: 50,
                bytes: 10,
            },
            upload: Some(StageStatus {
                state: State::Running,
                rows: 25,
                bytes: 5,
            }),
            ..SubtaskStatus::default()
        };
        let line = stage_bars(&s);
        assert_eq!(line, "    extract ████░░░░  50%  upload ██░░░░░░  25% ");
        assert!(subtask_line(&s, true).ends_with("extract 50% (50 rows)  upload 25% (25 rows)"));
        assert_eq!(clock(3725), "1:02:05");
    }
}
