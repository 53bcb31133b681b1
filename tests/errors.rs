//! Bad input, each with a clear error that names the cause and the fix, the exit status of
//! the contract (2 configuration, 1 a failed run), and nothing half-done left behind.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use crate::common::*;

fn job_for(connection: &str, table: &str, extra_tables: &str) -> String {
    job_text(
        "bad",
        connection,
        &format!("[[tables]]\nname = \"{table}\"\n{extra_tables}"),
        "",
    )
}

fn sqlite_source(sandbox: &Sandbox) -> String {
    let db = sandbox.path("source.db");
    sqlite(
        &db,
        "CREATE TABLE t (id integer primary key, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
    );
    sqlite_odbc(&db)
}

#[test]
fn a_missing_odbc_driver_is_named_with_the_fix() {
    let sandbox = Sandbox::new();
    let job = sandbox.job(
        "j",
        &job_for("Driver={NoSuchDriver};Server=127.0.0.1;", "t", ""),
    );
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("ODBC driver `NoSuchDriver` is not installed")
        .assert_stderr("odbcinst -q -d");
}

#[test]
fn a_bad_connection_string_is_refused() {
    let sandbox = Sandbox::new();
    let job = sandbox.job("j", &job_for("Server=127.0.0.1;Port=5432", "t", ""));
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("names neither Driver={...} nor DSN=...");
    let job = sandbox.job("k", &job_for("just some words", "t", ""));
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("is not Key=Value");
    let job = sandbox.job(
        "l",
        &job_for("Driver={SQLite3};Database=/nonexistent/x.db", "t", ""),
    );
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("SQLite database file /nonexistent/x.db does not exist");
}

#[test]
fn a_wrong_password_is_refused_without_printing_it() {
    maria(
        "CREATE USER IF NOT EXISTS 'dbhaul_pw'@'%' IDENTIFIED BY 'Right123'; \
         CREATE USER IF NOT EXISTS 'dbhaul_pw'@'localhost' IDENTIFIED BY 'Right123'; \
         GRANT SELECT ON dbhaul_test.* TO 'dbhaul_pw'@'%'; GRANT SELECT ON dbhaul_test.* TO 'dbhaul_pw'@'localhost';",
    );
    let sandbox = Sandbox::new();
    let text = "[task]\nname = \"pw\"\n[source]\nconnection = \"Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Uid=dbhaul_pw;\"\n\
                password_env = \"DBHAUL_TEST_PW\"\n[[tables]]\nname = \"dbhaul_test.nothing\"\n";
    let job = sandbox.job("pw", text);
    let run = sandbox.run_job_env(
        &job,
        &sandbox.work_dir(),
        &[("DBHAUL_TEST_PW", "Wrong4567secret")],
    );
    run.assert_code(2)
        .assert_stderr("the source refused the login")
        .assert_stderr("Access denied");
    assert!(
        !run.stderr.contains("Wrong4567secret") && !run.stdout.contains("Wrong4567secret"),
        "password leaked"
    );

    // The right password gets past the login (and to the next problem: the table).
    sandbox
        .run_job_env(&job, &sandbox.work_dir(), &[("DBHAUL_TEST_PW", "Right123")])
        .assert_code(2)
        .assert_stderr("table dbhaul_test.nothing not found on the source");
}

#[test]
fn a_missing_table_is_named_with_the_command_that_lists_tables() {
    let sandbox = Sandbox::new();
    let connection = sqlite_source(&sandbox);
    let job = sandbox.job("j", &job_for(&connection, "nope", ""));
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("table nope not found on the source")
        .assert_stderr("dbhaul tables --source");
    let job = sandbox.job("k", &job_for(&pg_odbc(), "public.no_such_table", ""));
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("table public.no_such_table not found");
    assert!(
        !sandbox.work_dir().join("bad/main.nope").exists(),
        "nothing written for a failed plan"
    );
}

#[test]
fn a_missing_partition_column_lists_the_columns_that_exist() {
    let sandbox = Sandbox::new();
    let connection = sqlite_source(&sandbox);
    let job = sandbox.job(
        "j",
        &job_for(
            &connection,
            "t",
            "partition = { column = \"nope\", ranges = 2 }\n",
        ),
    );
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("column `nope` not found in table main.t; its columns are: id, v");
    let job = sandbox.job(
        "k",
        &job_for(
            &connection,
            "t",
            "partition = { column = \"v\", ranges = 2 }\n",
        ),
    );
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("ranges need a numeric, date or timestamp column");
}

/// Partition values that do not fit the column, a pattern that matches nothing and a rule
/// that does not work on a table it matches: each refused before any data moves, naming
/// the table, the value or the rule.
#[test]
fn bad_partitions_patterns_and_rules_are_refused_before_any_data_moves() {
    let sandbox = Sandbox::new();
    let connection = sqlite_source(&sandbox);
    let cases: &[(&str, &str)] = &[
        (
            "[[tables]]\nname = \"t\"\npartition = { column = \"id\", boundaries = [5, \"x\"] }\n",
            "cannot partition main.t by `id` (INTEGER): boundary x is not an integer",
        ),
        (
            "[[tables]]\nname = \"t\"\npartition = { column = \"id\", boundaries = [5, 2] }\n",
            "boundary 2 is not above 5: give boundaries in ascending order, each once",
        ),
        (
            "[[tables]]\nname = \"t\"\npartition = { column = \"v\", date_auto_split = { interval = \"day\" } }\n",
            "cannot partition main.t by `v` (TEXT): date_auto_split needs a date or timestamp column",
        ),
        (
            "[[tables]]\nname = \"t\"\npartition = { column = \"id\", values = [\"one\"], include_other_values = false }\n",
            "value 'one' does not fit the column's type",
        ),
        (
            "[[tables]]\nname = \"nope_%\"\n",
            "tables `nope_%` matches no table or view of the source",
        ),
        (
            "[[tables]]\nname = \"t\"\n[[rules]]\nname = \"recent\"\nwhere = \"created > 0\"\n",
            "rule `recent` does not work on main.t",
        ),
        (
            "[[tables]]\nname = \"t\"\n[[tables]]\nname = \"main.t\"\n",
            "tables `t` and `main.t` are the same table, main.t: list it once",
        ),
    ];
    for (i, (tables, expected)) in cases.iter().enumerate() {
        let job = sandbox.job(&format!("j{i}"), &job_text("bad", &connection, tables, ""));
        sandbox.run_job(&job).assert_code(2).assert_stderr(expected);
        assert!(
            !sandbox.work_dir().join("bad").join("main.t").exists(),
            "nothing was extracted for {tables}"
        );
    }
}

/// psqlODBC reads a query with the word FOR in one piece (it takes it for `FOR UPDATE`;
/// found with LOB slices): a filter that has one is run, with a warning that says so and what to write.
#[test]
fn a_postgres_filter_with_the_word_for_runs_with_a_warning_about_memory() {
    let sandbox = Sandbox::new();
    let mut client = pg();
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS src_pg; DROP TABLE IF EXISTS src_pg.for_filter;
             CREATE TABLE src_pg.for_filter (id int PRIMARY KEY, v text);
             INSERT INTO src_pg.for_filter VALUES (1, 'abc'), (2, 'xyz');",
        )
        .unwrap();
    let job = sandbox.job(
        "j",
        &job_for(
            &pg_odbc(),
            "src_pg.for_filter",
            "where = \"substring(v FROM 1 FOR 1) = 'a'\"\n",
        ),
    );
    let run = sandbox.run_job(&job);
    run.assert_stderr("the filter has the word FOR in it")
        .assert_stderr("write substr(x, a, b)");
    assert_eq!(run.assert_ok()["rows"], 1);
}

#[test]
fn a_broken_filter_fails_before_any_data_moves() {
    let sandbox = Sandbox::new();
    let connection = sqlite_source(&sandbox);
    let job = sandbox.job(
        "j",
        &job_for(&connection, "t", "where = \"no_such_column = 1\"\n"),
    );
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("the where filter of main.t does not work on the source");
}

#[test]
fn a_malformed_job_file_names_the_line_and_field() {
    let sandbox = Sandbox::new();
    let job = sandbox.job(
        "j",
        "[task]\nname = \"ok\"\nlevel = 3\n[source]\nconnection = \"DSN=x\"\n",
    );
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("j.toml:3:1: unknown field `level`");
    let job = sandbox.job("k", "[task]\nname = \"ok\"\n[source]\nconnection = \"DSN=x\"\n[[tables]]\nname = \"t\"\n[files]\ngzip_level = 12\n");
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("k.toml:8:14: files.gzip_level = 12");
    let job = sandbox.job("m", "[task\n");
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("m.toml:1:6:");
    let missing = sandbox.path("missing.toml");
    sandbox
        .run_job(&missing)
        .assert_code(2)
        .assert_stderr("cannot read the job file");
}

/// A small tmpfs mounted for one test; needs root (the test set-up runs as root).
pub(crate) struct Mount {
    pub(crate) dir: std::path::PathBuf,
}

impl Mount {
    pub(crate) fn tmpfs(dir: &Path, options: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs needs root: run the test suite as root (appliance/test.sh)"
        );
        Mount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Mount {
    /// Change the mount's options in place (a bigger size: space is back).
    pub(crate) fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args([
                "-o",
                &format!("remount,{options}"),
                self.dir.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "remount {}", self.dir.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn an_unwritable_working_folder_is_refused_before_anything_runs() {
    let sandbox = Sandbox::new();
    let connection = sqlite_source(&sandbox);
    let mount = Mount::tmpfs(&sandbox.path("readonly"), "ro,size=1m");
    let job = sandbox.job("j", &job_for(&connection, "t", ""));
    sandbox
        .run_job_in(&job, &mount.dir)
        .assert_code(2)
        .assert_stderr("the working folder is not writable")
        .assert_stderr("--work-dir");
}

#[test]
fn a_full_working_folder_fails_the_run_and_leaves_no_partial_chunk_under_a_final_name() {
    let sandbox = Sandbox::new();
    pg_hash_table("filler", 150_000);
    let mount = Mount::tmpfs(&sandbox.path("small"), "size=2m");
    // A full folder may pass: run again once after 1 s (the default is twice, after 30 s
    // and 60 s), then the run fails.
    let text = job_for(&pg_odbc(), "src_pg.filler", "[files]\nchunk_mb = 1\n").replacen(
        "[task]\n",
        "[task]\nretries = 1\nretry_wait_s = 1\n",
        1,
    );
    let job = sandbox.job("j", &text);
    let run = sandbox.run_job_in(&job, &mount.dir);
    run.assert_code(1)
        .assert_stderr("subtask runs again in 1 s (retry 1 of 1)")
        .assert_stderr("the working folder is full")
        .assert_stderr("free space");
    let dir = mount.dir.join("bad/src_pg.filler");
    let mut finals = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.ends_with(".partial"), "partial file left: {name}");
        assert_ne!(
            name, "manifest.json",
            "a failed subtask must not have a manifest"
        );
        // Every file under a final name is a complete gzip stream.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("{name} is not a complete chunk: {e}"));
        finals += 1;
    }
    assert!(
        finals <= 2,
        "a 2 MB folder holds at most two 1 MB chunks, found {finals}"
    );
}

#[test]
fn an_unreachable_server_is_named_with_what_to_check() {
    let sandbox = Sandbox::new();
    let connection = "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=1;Database=x;Uid=postgres;";
    let job = sandbox.job("j", &job_for(connection, "t", ""));
    sandbox
        .run_job(&job)
        .assert_code(2)
        .assert_stderr("cannot connect to the source")
        .assert_stderr("check Server, Port");
    let output = dbhaul(&["tables", "--source", connection]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect to the source"));
}

/// Without a key, MariaDB's driver holds the whole result: the table is still extracted
/// whole, and the user is told why memory grows and what to do.
#[test]
fn a_mariadb_table_without_a_key_is_extracted_whole_with_a_warning() {
    maria(
        "DROP TABLE IF EXISTS dbhaul_test.keyless; CREATE TABLE dbhaul_test.keyless (v int, w varchar(10)); \
         INSERT INTO dbhaul_test.keyless VALUES (1, 'a'), (1, 'a'), (2, NULL), (NULL, '');",
    );
    let sandbox = Sandbox::new();
    let job = sandbox.job("j", &job_for(&maria_odbc(), "dbhaul_test.keyless", ""));
    let run = sandbox.run_job(&job);
    run.assert_stderr("no primary key");
    assert_eq!(run.assert_ok()["rows"], 4);
    let csv = String::from_utf8(chunk_bytes(
        &sandbox.work_dir().join("bad/dbhaul_test.keyless"),
    ))
    .unwrap();
    let mut lines: Vec<&str> = csv.lines().collect();
    lines.sort();
    assert_eq!(lines, [",\"\"", "1,a", "1,a", "2,"]);
}
