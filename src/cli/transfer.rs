//! `dbhaul tasks export` and `tasks import`: XML files to keep a task or move it to another
//! controller. Import reads each file here first (size, then the same checks the controller
//! makes), so a wrong file is named before anything is sent; the controller then takes all
//! the files or none.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::client::call;
use super::{Exit, report_error};
use crate::export::{MAX_BYTES, MAX_REQUEST_BYTES};
use crate::remote::controller_client::ControllerClient;
use crate::remote::wire::{ImportFile, ImportTasks, TaskView};

pub fn export(
    runtime: &tokio::runtime::Runtime,
    client: &ControllerClient,
    name: Option<String>,
    all: bool,
    output: Option<PathBuf>,
) -> Result<Exit, Exit> {
    let names: Vec<String> = if all {
        let tasks: Vec<TaskView> = call(runtime, client.get("/v1/tasks"))?;
        tasks.into_iter().map(|t| t.name).collect()
    } else {
        name.into_iter().collect()
    };
    if all {
        let dir = output.unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&dir).map_err(|e| {
            report_error(format!("cannot make the folder {}: {e}", dir.display()));
            Exit::Failed
        })?;
        for name in &names {
            let xml = call(runtime, client.text(&format!("/v1/tasks/{name}/export")))?;
            write(&dir.join(format!("{name}.xml")), &xml)?;
        }
        println!("{} tasks exported to {}", names.len(), dir.display());
        return Ok(Exit::Done);
    }
    let Some(name) = names.first() else {
        report_error("name a task, or give --all");
        return Err(Exit::Usage);
    };
    let xml = call(runtime, client.text(&format!("/v1/tasks/{name}/export")))?;
    match output {
        Some(path) if path == Path::new("-") => print!("{xml}"),
        Some(path) => {
            write(&path, &xml)?;
            println!("task {name} exported to {}", path.display());
        }
        None => {
            let path = PathBuf::from(format!("{name}.xml"));
            write(&path, &xml)?;
            println!("task {name} exported to {}", path.display());
        }
    }
    Ok(Exit::Done)
}

fn write(path: &Path, text: &str) -> Result<(), Exit> {
    std::fs::write(path, text).map_err(|e| {
        report_error(format!("cannot write {}: {e}", path.display()));
        Exit::Failed
    })
}

pub fn import(
    runtime: &tokio::runtime::Runtime,
    client: &ControllerClient,
    paths: &[PathBuf],
    replace: bool,
    rename: Option<String>,
) -> Result<Exit, Exit> {
    let mut files = Vec::new();
    let mut total = 0u64;
    for path in paths {
        let shown = path.display().to_string();
        let size = std::fs::metadata(path)
            .map_err(|e| {
                report_error(format!("cannot read {shown}: {e}"));
                Exit::Usage
            })?
            .len();
        if size > MAX_BYTES {
            report_error(format!(
                "{shown} has {size} bytes; a task export is at most {} MB: this is not one",
                MAX_BYTES / 1024 / 1024
            ));
            return Err(Exit::Usage);
        }
        total += size;
        let xml = std::fs::read_to_string(path).map_err(|e| {
            report_error(format!("cannot read {shown}: {e}"));
            Exit::Usage
        })?;
        let exported = crate::export::parse(&xml).map_err(|e| {
            report_error(format!("{shown}: {e}"));
            Exit::Usage
        })?;
        let mut secrets = BTreeMap::new();
        for env in exported.secret_names() {
            let value = match std::env::var(&env) {
                Ok(value) => value,
                Err(_) if std::io::stdin().is_terminal() => rpassword::prompt_password(format!(
                    "{env} (a password task {} needs): ",
                    exported.name
                ))
                .map_err(|e| {
                    report_error(format!("cannot read {env}: {e}"));
                    Exit::Usage
                })?,
                Err(_) => {
                    report_error(format!(
                        "{shown}: task {} needs the password in {env}: set that variable",
                        exported.name
                    ));
                    return Err(Exit::Usage);
                }
            };
            secrets.insert(env, value);
        }
        files.push(ImportFile {
            name: shown,
            xml,
            secrets,
        });
    }
    if total > MAX_REQUEST_BYTES {
        report_error(format!(
            "the files have {total} bytes together; import at most {} MB at once",
            MAX_REQUEST_BYTES / 1024 / 1024
        ));
        return Err(Exit::Usage);
    }
    let request = ImportTasks {
        files,
        replace,
        rename,
    };
    let views: Vec<TaskView> = call(runtime, client.post("/v1/tasks/import", &request))?;
    for view in &views {
        for warning in &view.warnings {
            eprintln!("dbhaul: warning: task {}: {warning}", view.name);
        }
        println!(
            "task {} imported: {}, {}/{} subtasks completed",
            view.name,
            view.state.as_str(),
            view.subtasks_completed,
            view.subtasks_total
        );
    }
    Ok(Exit::Done)
}
