//! `dbhaul tasks plan` and `dbhaul run JOB --plan`: tasks proposed from the catalog's
//! size estimates (see `planner::tasks`), printed, and with `--out` written as job files.

use std::path::Path;

use super::{Exit, PlanOptions, TasksPlanArgs, report_error};
use crate::config::{Job, Secret, TableRequest};
use crate::model::TaskName;
use crate::planner::tasks::{self, ProposedTask, human_bytes};
use crate::source::Source;

pub fn tasks_plan(args: TasksPlanArgs) -> Exit {
    if let Err(m) = TaskName::parse(&format!("{}-01", args.name)) {
        report_error(format!("--name: {m}"));
        return Exit::Usage;
    }
    let password = match super::password_from_env(args.password_env.as_ref()) {
        Ok(password) => password,
        Err(exit) => return exit,
    };
    let mut base = toml::Table::new();
    let mut source = toml::Table::new();
    source.insert("connection".into(), args.source.clone().into());
    if let Some(var) = &args.password_env {
        source.insert("password_env".into(), var.clone().into());
    }
    base.insert("task".into(), toml::Value::Table(toml::Table::new()));
    base.insert("source".into(), toml::Value::Table(source));
    let requests = tasks::pattern_requests(&args.tables);
    let entries: Vec<toml::Table> = vec![toml::Table::new(); requests.len()];
    propose(
        &args.source,
        password.as_ref(),
        &requests,
        &args.name,
        &args.options,
        args.json,
        &base,
        &entries,
    )
}

pub fn run_plan(path: &Path, job: &Job, options: &PlanOptions, json: bool) -> Exit {
    // The job file as written is the template: every section but its tables is kept.
    let base: toml::Table = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| text.parse::<toml::Table>().map_err(|e| e.to_string()))
    {
        Ok(table) => table,
        Err(e) => {
            report_error(format!("{}: {e}", path.display()));
            return Exit::Usage;
        }
    };
    let entries: Vec<toml::Table> = base
        .get("tables")
        .and_then(|t| t.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_table().cloned()).collect())
        .unwrap_or_default();
    propose(
        &job.connection,
        job.password.as_ref(),
        &job.tables,
        job.name.as_str(),
        options,
        json,
        &base,
        &entries,
    )
}

#[allow(clippy::too_many_arguments)]
fn propose(
    connection: &str,
    password: Option<&Secret>,
    requests: &[TableRequest],
    prefix: &str,
    options: &PlanOptions,
    json: bool,
    base: &toml::Table,
    entries: &[toml::Table],
) -> Exit {
    let gb = |v: f64, what: &str| {
        if v.is_finite() && v > 0.0 {
            Ok((v * 1e9) as u64)
        } else {
            Err(format!(
                "{what} = {v}: give a size in GB above 0, such as 100 or 0.5"
            ))
        }
    };
    let (max_bytes, partition_bytes) = match (
        gb(options.max_gb, "--max-gb"),
        gb(options.partition_gb, "--partition-gb"),
    ) {
        (Ok(m), Ok(p)) => (m, p),
        (Err(e), _) | (_, Err(e)) => {
            report_error(e);
            return Exit::Usage;
        }
    };
    let (source, conn) = match Source::open(connection, password) {
        Ok(opened) => opened,
        Err(e) => {
            report_error(format!("source: {e}"));
            return Exit::for_error(e.is_configuration());
        }
    };
    let sized = match tasks::size_tables(requests, &source, &conn, partition_bytes) {
        Ok(sized) => sized,
        Err(e) => {
            report_error(e.to_string());
            return Exit::for_error(e.is_configuration());
        }
    };
    let proposed = tasks::group(sized, max_bytes, prefix);

    let mut written = Vec::new();
    if let Some(out) = &options.out {
        if let Err(e) = std::fs::create_dir_all(out) {
            report_error(format!("--out {}: {e}", out.display()));
            return Exit::Usage;
        }
        for (name, text) in tasks::job_files(base, entries, &proposed) {
            let file = out.join(format!("{name}.toml"));
            if let Err(e) = std::fs::write(&file, text) {
                report_error(format!("cannot write {}: {e}", file.display()));
                return Exit::Failed;
            }
            written.push(file.display().to_string());
        }
    }
    if json {
        let value = serde_json::json!({ "tasks": proposed, "written": written });
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON"));
    } else {
        print_plan(&proposed);
        if written.is_empty() {
            println!("--out DIR writes a job file per task");
        } else {
            println!(
                "wrote {}; create each with `dbhaul tasks create FILE`",
                written.join(", ")
            );
        }
    }
    Exit::Done
}

fn print_plan(proposed: &[ProposedTask]) {
    for task in proposed {
        println!(
            "task {}  ~{}  {} table(s)",
            task.name,
            human_bytes(task.bytes),
            task.tables.len()
        );
        for table in &task.tables {
            let size = table.bytes.map_or_else(
                || "size unknown".to_string(),
                |b| format!("~{}", human_bytes(b)),
            );
            let rows = table
                .rows
                .map_or_else(String::new, |r| format!("  ~{r} rows"));
            let partition = table.partition.as_ref().map_or_else(String::new, |p| {
                format!(
                    "  partition = {{ column = \"{}\", ranges = {} }}",
                    p.column, p.ranges
                )
            });
            let note = table
                .note
                .as_ref()
                .map_or_else(String::new, |n| format!("  ({n})"));
            println!("  {:<40} {size:>10}{rows}{partition}{note}", table.table);
        }
    }
}
