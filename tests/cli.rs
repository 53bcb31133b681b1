//! The command line as users and scripts meet it: `--help` that teaches, progress lines
//! when stderr is not a terminal, a summary on stdout, and the exit statuses of the contract.

use crate::common::*;

#[test]
fn help_names_the_commands_and_the_exit_statuses() {
    let output = dbhaul(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "run",
        "tables",
        "Exit status: 0 done, 1 the work failed, 2 bad usage",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    let output = dbhaul(&["run", "--help"]);
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in ["--work-dir", "--parallel", "--json", "manifest.json"] {
        assert!(
            help.contains(needle),
            "run --help lacks {needle:?}:\n{help}"
        );
    }
    let output = dbhaul(&["run"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "missing argument is bad usage"
    );
    let output = dbhaul(&["frobnicate"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "unknown command is bad usage"
    );
}

#[test]
fn run_prints_progress_lines_off_a_terminal_and_a_summary() {
    let sandbox = Sandbox::new();
    let db = sandbox.path("s.db");
    sqlite(
        &db,
        "CREATE TABLE a (id integer primary key, v varchar(10)); INSERT INTO a VALUES (1, 'x'), (2, NULL);\
         CREATE TABLE b (id integer primary key); INSERT INTO b VALUES (7);",
    );
    let job = sandbox.job(
        "two",
        &job_text(
            "two",
            &sqlite_odbc(&db),
            "[[tables]]\nname = \"a\"\n[[tables]]\nname = \"b\"\n",
            "",
        ),
    );
    let output = dbhaul(&[
        "run",
        job.to_str().unwrap(),
        "--work-dir",
        sandbox.work_dir().to_str().unwrap(),
        "--parallel",
        "1",
    ]);
    let run = Run::from(output);
    run.assert_code(0)
        .assert_stderr("started main.a")
        .assert_stderr("main.b: done: 1 rows");
    // --parallel 1: the second subtask starts only after the first has ended.
    let a_done = run.stderr.find("main.a: done").expect("main.a done line");
    let b_started = run
        .stderr
        .find("started main.b")
        .expect("main.b started line");
    assert!(
        a_done < b_started,
        "--parallel 1 ran two at once:\n{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("main.a") && run.stdout.contains("completed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("total: 3 rows, 2 chunks"),
        "{}",
        run.stdout
    );

    let summary = sandbox.run_job(&job).assert_ok();
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["rows"], 3);
    let first = &summary["subtasks"][0];
    assert_eq!(first["id"], "main.a");
    assert_eq!(first["state"], "completed");
    assert_eq!(first["rows"], 2);
    assert!(
        first["manifest"]
            .as_str()
            .unwrap()
            .ends_with("two/main.a/manifest.json")
    );
    // A rerun overwrites: the same chunk names, no leftovers.
    let files: Vec<_> = std::fs::read_dir(sandbox.work_dir().join("two/main.a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut files = files;
    files.sort();
    assert_eq!(files, ["00000001.csv.gz", "manifest.json"]);
}

#[test]
fn ctrl_c_stops_the_run_and_leaves_no_partial_chunk() {
    let sandbox = Sandbox::new();
    pg_hash_table("interrupted", 3_000_000);
    let job = sandbox.job(
        "int",
        &job_text(
            "int",
            &pg_odbc(),
            "[[tables]]\nname = \"src_pg.interrupted\"\n[files]\nchunk_mb = 1\ngzip_level = 9\n",
            "",
        ),
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dbhaul"))
        .args([
            "run",
            job.to_str().unwrap(),
            "--work-dir",
            sandbox.work_dir().to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let dir = sandbox.work_dir().join("int/src_pg.interrupted");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Wait until the run is writing its second chunk: mid-run, with a partial file open.
    while !dir.join("00000001.csv.gz").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never sealed a chunk"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    let run = Run::from(output);
    run.assert_code(1).assert_stderr("interrupted");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !files.iter().any(|f| f.ends_with(".partial")),
        "partial chunk left: {files:?}"
    );
    assert!(
        !files.iter().any(|f| f == "manifest.json"),
        "an interrupted subtask has no manifest: {files:?}"
    );
}

/// On a terminal each subtask gets a live bar instead of plain lines.
#[test]
fn run_draws_progress_bars_on_a_terminal() {
    let sandbox = Sandbox::new();
    let db = sandbox.path("s.db");
    sqlite(
        &db,
        "CREATE TABLE a (id integer primary key); INSERT INTO a VALUES (1), (2);",
    );
    let job = sandbox.job(
        "tty",
        &job_text("tty", &sqlite_odbc(&db), "[[tables]]\nname = \"a\"\n", ""),
    );
    let command = format!(
        "{} run {} --work-dir {}",
        env!("CARGO_BIN_EXE_dbhaul"),
        job.display(),
        sandbox.work_dir().display()
    );
    // `script` runs the command on a pseudo-terminal and copies what it drew.
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script (bsdutils)");
    assert!(output.status.success(), "{output:?}");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(
        screen.contains("main.a") && screen.contains("done: 2 rows"),
        "{screen}"
    );
    assert!(
        !screen.contains("started main.a"),
        "plain lines on a terminal:\n{screen}"
    );
    assert!(screen.contains('\u{1b}'), "no terminal drawing:\n{screen}");
}
