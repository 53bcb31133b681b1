//! The copy stage alone, for `bench/pipeline.sh`: loads into PostgreSQL the chunks that an
//! earlier `dbhaul run` of the same job in mode `extract-upload` left in S3, through the
//! copier's own code (`warehouse::postgres::load_chunk`: read back from S3, SHA-256
//! checked, gunzipped as it streams into `COPY ... FROM STDIN`, one transaction per chunk
//! with its bookkeeping row), one subtask after the other per connection and the
//! subtasks at once, as `dbhaul run --parallel N` copies them. Prints the rows and the
//! wall seconds as JSON.
//!
//!     cargo run --release --example copy_stage -- JOB WORK_DIR TABLE
//!
//! `JOB` is the job file (its `[target]` and `[warehouse]`), `WORK_DIR` the working folder
//! of the extract-upload run (its manifests), `TABLE` the warehouse table to load, quoted
//! as SQL (`wh.lineitem_copy`), with the manifest's column names.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dbhaul::config::job::Job;
use dbhaul::destination::S3Target;
use dbhaul::model::ChunkRecord;
use dbhaul::pipeline::credit::CancelSwitch;
use dbhaul::warehouse::postgres::{ChunkLoad, Loaded, load_chunk};
use dbhaul::warehouse::{self, TargetTable};

fn manifests(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the working folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            manifests(&path, found);
        } else if path.file_name().is_some_and(|n| n == "manifest.json") {
            found.push(path);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [job, work_dir, table] = &args[..] else {
        eprintln!("usage: copy_stage JOB WORK_DIR TABLE");
        std::process::exit(2);
    };
    // The job ran in mode extract-upload; read its [warehouse] as the copy mode would.
    let text = std::fs::read_to_string(job).expect("the job file");
    let text = text.replace(
        "mode = \"extract-upload\"",
        "mode = \"extract-upload-copy\"",
    );
    let job =
        Job::parse(job, &text, |name| std::env::var(name).ok()).unwrap_or_else(|e| panic!("{e}"));
    let settings = job.warehouse.clone().expect("the job has a [warehouse]");
    let target = S3Target::connect(job.target.as_ref().expect("the job has a [target]"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let task_dir = Path::new(work_dir).join(job.name.as_str());
    let mut found = Vec::new();
    manifests(&task_dir, &mut found);
    assert!(
        !found.is_empty(),
        "no manifest under {}",
        task_dir.display()
    );

    let started = Instant::now();
    let mut copiers = tokio::task::JoinSet::new();
    for path in found {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let subtask = path
            .parent()
            .unwrap()
            .strip_prefix(&task_dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let columns = manifest["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| warehouse::types::quote_ident(c["name"].as_str().unwrap()))
            .collect();
        let table = TargetTable {
            qualified: table.clone(),
            columns,
            left_out: Vec::new(),
            predicate: None,
        };
        let chunks: Vec<ChunkRecord> = manifest["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| ChunkRecord {
                name: c["name"].as_str().unwrap().to_string(),
                rows: c["rows"].as_u64().unwrap(),
                bytes_uncompressed: c["bytes_uncompressed"].as_u64().unwrap(),
                bytes_compressed: c["bytes_compressed"].as_u64().unwrap(),
                sha256: c["sha256"].as_str().unwrap().to_string(),
                lobs: Vec::new(),
            })
            .collect();
        let run = manifest["run"].as_str().unwrap().to_string();
        let (task, settings, files, target) = (
            job.name.as_str().to_string(),
            settings.clone(),
            job.files.clone(),
            target.clone(),
        );
        copiers.spawn(async move {
            let mut client = warehouse::connect(&settings)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let cancel = CancelSwitch::default();
            let mut rows = 0;
            for (i, chunk) in chunks.iter().enumerate() {
                let key = target.key(&task, &subtask, &chunk.name);
                let load = ChunkLoad {
                    task: &task,
                    subtask: &subtask,
                    run: &run,
                    chunk,
                    key: &key,
                };
                let loaded = load_chunk(
                    &mut client,
                    &settings,
                    &files,
                    &table,
                    &target,
                    &load,
                    i == 0,
                    &cancel,
                )
                .await
                .unwrap_or_else(|e| panic!("{key}: {e:?}"));
                let (Loaded::Copied(n) | Loaded::AlreadyThere(n)) = loaded;
                rows += n;
            }
            rows
        });
    }
    let mut rows = 0;
    while let Some(copied) = copiers.join_next().await {
        rows += copied.expect("a copier");
    }
    println!(
        "{{\"rows\": {rows}, \"seconds\": {:.3}}}",
        started.elapsed().as_secs_f64()
    );
}
