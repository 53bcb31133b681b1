//! The test harness: runs the real `dbhaul` binary, sets up source tables in PostgreSQL,
//! MariaDB and SQLite, loads extracted chunks back into PostgreSQL with COPY, and compares.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod browser;
pub mod daemons;
pub mod fixtures;
pub mod s3;

/// The database every test uses, in PostgreSQL and in MariaDB.
pub const TEST_DB: &str = "dbhaul_test";

pub fn pg_host() -> String {
    std::env::var("DBHAUL_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into())
}

/// ODBC connection string of the PostgreSQL test database.
pub fn pg_odbc() -> String {
    format!(
        "Driver={{PostgreSQL Unicode}};Server={};Port=5432;Database={TEST_DB};Uid=postgres;",
        pg_host()
    )
}

/// ODBC connection string of the MariaDB server (tables are named `dbhaul_test.x`).
pub fn maria_odbc() -> String {
    "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Uid=root;Pwd=;".into()
}

pub fn sqlite_odbc(path: &Path) -> String {
    format!("Driver={{SQLite3}};Database={};", path.display())
}

/// A connection to the PostgreSQL test database, created on first use.
pub fn pg() -> postgres::Client {
    static CREATED: OnceLock<()> = OnceLock::new();
    CREATED.get_or_init(|| {
        let mut admin = postgres::Client::connect(
            &format!("host={} user=postgres dbname=postgres", pg_host()),
            postgres::NoTls,
        )
        .expect("PostgreSQL on 127.0.0.1:5432 (user postgres, trust): run appliance/setup.sh");
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&TEST_DB])
            .unwrap()
            .is_some();
        if !exists {
            admin
                .batch_execute(&format!("CREATE DATABASE {TEST_DB}"))
                .unwrap();
        }
        // The schemas source tables live in (created here: a fresh server has none).
        postgres::Client::connect(
            &format!("host={} user=postgres dbname={TEST_DB}", pg_host()),
            postgres::NoTls,
        )
        .expect("PostgreSQL test database")
        .batch_execute("CREATE SCHEMA IF NOT EXISTS src_pg; CREATE SCHEMA IF NOT EXISTS cat_pg")
        .unwrap();
    });
    let mut client = postgres::Client::connect(
        &format!("host={} user=postgres dbname={TEST_DB}", pg_host()),
        postgres::NoTls,
    )
    .expect("PostgreSQL test database");
    client.batch_execute("SET TIME ZONE 'UTC'").unwrap();
    client
}

/// Run SQL on MariaDB through the `mariadb` client; panics with its message on failure.
pub fn maria(sql: &str) {
    maria_database();
    maria_raw(sql)
}

/// Create the MariaDB test database, once.
fn maria_database() {
    static CREATED: OnceLock<()> = OnceLock::new();
    CREATED.get_or_init(|| {
        maria_raw(&format!(
            "CREATE DATABASE IF NOT EXISTS {TEST_DB} CHARACTER SET utf8mb4; \
             SET GLOBAL max_allowed_packet = 1073741824;"
        ))
    });
}

/// How the tests reach MariaDB with its client: the server on loopback, as root, UTF-8.
const MARIADB: [&str; 5] = [
    "-h",
    "127.0.0.1",
    "-u",
    "root",
    "--default-character-set=utf8mb4",
];

fn maria_raw(sql: &str) {
    let args = [&MARIADB[..], &["--max-allowed-packet=1G"]].concat();
    pipe_sql("mariadb", &args, sql);
}

/// Run SQL on a SQLite file through the `sqlite3` client.
pub fn sqlite(path: &Path, sql: &str) {
    pipe_sql("sqlite3", &[path.to_str().unwrap()], sql);
}

/// The rows a MariaDB query returns, each field as the `mariadb` client prints it in batch
/// mode, SQL NULL as `None`. Batch mode escapes tabs, newlines and backslashes and prints
/// NULL and the text `NULL` alike, so select numbers or `HEX(...)` of anything else.
pub fn maria_rows(sql: &str) -> Vec<Vec<Option<String>>> {
    maria_database();
    let args = [&MARIADB[..], &["--batch", "--skip-column-names"]].concat();
    batch_rows(&pipe_sql("mariadb", &args, sql))
}

/// The rows a SQLite query returns, as [`maria_rows`] does (tab-separated, `NULL` for SQL
/// NULL): select numbers or `hex(...)` of anything else.
pub fn sqlite_rows(path: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let args = [
        "-batch",
        "-noheader",
        "-separator",
        "\t",
        "-nullvalue",
        "NULL",
        path.to_str().unwrap(),
    ];
    batch_rows(&pipe_sql("sqlite3", &args, sql))
}

fn batch_rows(out: &str) -> Vec<Vec<Option<String>>> {
    out.lines()
        .map(|line| {
            line.split('\t')
                .map(|f| (f != "NULL").then(|| f.to_string()))
                .collect()
        })
        .collect()
}

/// Feed SQL to a database client on its standard input and return what it printed; panic
/// with its message on failure.
fn pipe_sql(client: &str, args: &[&str], sql: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(client)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("the {client} client ({e}): run appliance/setup.sh"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{client} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of a job file: `tables` is the `[[tables]]` (and any `[files]`) TOML, `extra`
/// goes into `[task]`.
pub fn job_text(task: &str, connection: &str, tables: &str, extra: &str) -> String {
    format!(
        "[task]\nname = \"{task}\"\n{extra}\n[source]\nconnection = \"{}\"\n{tables}",
        connection.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// A schema of the PostgreSQL test database, dropped and created again for one test.
pub fn fresh_schema(schema: &str) -> postgres::Client {
    let mut client = pg();
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .unwrap();
    client
}

/// `src_pg.<table>`: `rows` rows of `(id int, h varchar(64))`, `h` an md5 pair that
/// barely compresses, for tests that need volume.
pub fn pg_hash_table(table: &str, rows: u32) {
    pg().batch_execute(&format!(
        "DROP TABLE IF EXISTS src_pg.{table}; \
         CREATE TABLE src_pg.{table} AS SELECT g AS id, \
         (md5(g::text) || md5((g * 7)::text))::varchar(64) AS h FROM generate_series(1, {rows}) g"
    ))
    .unwrap();
}

/// Where a fixture table lives in each source, and how the job names it.
pub fn source_of(db: fixtures::Db, sandbox: &Sandbox) -> (String, String) {
    match db {
        fixtures::Db::Pg => (pg_odbc(), "src_pg".into()),
        fixtures::Db::Maria => (maria_odbc(), TEST_DB.into()),
        fixtures::Db::Sqlite => (sqlite_odbc(&sandbox.path("source.db")), "main".into()),
    }
}

/// Create a table in a source from fixture SQL.
pub fn create_in_source(
    db: fixtures::Db,
    sandbox: &Sandbox,
    namespace: &str,
    sql_for: impl Fn(&str) -> String,
    table: &str,
) {
    match db {
        fixtures::Db::Pg => {
            let mut client = pg();
            client
                .batch_execute(&sql_for(&format!("{namespace}.{table}")))
                .unwrap();
        }
        fixtures::Db::Maria => maria(&sql_for(&format!("{namespace}.{table}"))),
        fixtures::Db::Sqlite => sqlite(&sandbox.path("source.db"), &sql_for(table)),
    }
}

/// A scratch folder for one test, removed at the end.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("dbhaul-test-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn work_dir(&self) -> PathBuf {
        self.path("work")
    }

    /// Write a job file and return its path.
    pub fn job(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(&format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `dbhaul run JOB --work-dir <sandbox>/work --json`.
    pub fn run_job(&self, job: &Path) -> Run {
        self.run_job_in(job, &self.work_dir())
    }

    pub fn run_job_in(&self, job: &Path, work_dir: &Path) -> Run {
        self.run_job_env(job, work_dir, &[])
    }

    /// `dbhaul run --json` against moto at `endpoint` (the S3 test environment), with
    /// extra environment variables.
    pub fn run_job_s3(&self, job: &Path, endpoint: &str, env: &[(&str, &str)]) -> Run {
        let mut all = s3::s3_env(endpoint);
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.run_job_env(job, &self.work_dir(), &all)
    }

    /// `dbhaul run --json` with extra environment variables.
    pub fn run_job_env(&self, job: &Path, work_dir: &Path, env: &[(&str, &str)]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_dbhaul"))
            .args([
                "run",
                job.to_str().unwrap(),
                "--work-dir",
                work_dir.to_str().unwrap(),
                "--json",
            ])
            .env_remove("DBHAUL_LOG")
            .envs(env.iter().copied())
            .output()
            .expect("run dbhaul");
        Run::from(output)
    }
}

/// Run the real binary.
pub fn dbhaul(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbhaul"))
        .args(args)
        .env_remove("DBHAUL_LOG")
        .output()
        .expect("run dbhaul")
}

/// What a `dbhaul run` printed, parsed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn assert_ok(&self) -> serde_json::Value {
        assert_eq!(
            self.code, 0,
            "dbhaul run failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        serde_json::from_str(&self.stdout).expect("JSON summary")
    }

    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn assert_stderr(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// The manifest of a subtask folder.
pub fn manifest(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).unwrap()
}

/// Every chunk of a subtask folder, decompressed, in manifest order.
pub fn chunk_bytes(dir: &Path) -> Vec<u8> {
    let manifest = manifest(dir);
    let mut all = Vec::new();
    for chunk in manifest["chunks"].as_array().unwrap() {
        let name = chunk["name"].as_str().unwrap();
        let raw = std::fs::read(dir.join(name)).unwrap();
        if name.ends_with(".gz") {
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut all)
                .unwrap();
        } else {
            all.extend_from_slice(&raw);
        }
    }
    all
}

/// The records of CSV as dbhaul writes it (RFC 4180, `\n` line ends): each field's
/// bytes, unquoted, or `None` for the null string written unquoted. A general CSV reader
/// would read NULL and a quoted `""` alike; this one keeps them apart. Panics on malformed
/// CSV, naming the byte.
pub fn csv_records(csv: &[u8], delimiter: u8, null: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut i = 0;
    while i < csv.len() {
        let quoted = csv[i] == b'"';
        let mut field = Vec::new();
        if quoted {
            i += 1;
            loop {
                match (csv.get(i), csv.get(i + 1)) {
                    (Some(b'"'), Some(b'"')) => {
                        field.push(b'"');
                        i += 2;
                    }
                    (Some(b'"'), _) => {
                        i += 1;
                        break;
                    }
                    (Some(b), _) => {
                        field.push(*b);
                        i += 1;
                    }
                    (None, _) => panic!("CSV: a quoted field opened is never closed"),
                }
            }
        } else {
            while i < csv.len() && csv[i] != delimiter && csv[i] != b'\n' {
                field.push(csv[i]);
                i += 1;
            }
        }
        record.push((quoted || field != null).then_some(field));
        match csv.get(i) {
            Some(b) if *b == delimiter => i += 1,
            Some(b'\n') | None => {
                records.push(std::mem::take(&mut record));
                i += 1;
            }
            Some(b) => panic!("CSV: byte {b:#04x} at {i} follows a quoted field"),
        }
    }
    records
}

/// The `[target]` and `[warehouse]` sections of a job that uploads to `bucket` on moto's
/// `endpoint` and copies into `schema` of the PostgreSQL test database.
pub fn pg_warehouse_stages(endpoint: &str, bucket: &str, schema: &str) -> String {
    format!(
        "[target]\nurl = \"s3://{bucket}/exports\"\nendpoint = \"{endpoint}\"\n\
         [warehouse]\nkind = \"postgres\"\nurl = \"postgresql://postgres@{}:5432/{TEST_DB}\"\n\
         schema = \"{schema}\"\n",
        pg_host()
    )
}

/// Load a subtask's chunks into a PostgreSQL table with COPY ... FROM STDIN (FORMAT csv),
/// as the copy stage will.
pub fn copy_into_pg(client: &mut postgres::Client, table: &str, columns: &str, dir: &Path) {
    let manifest = manifest(dir);
    let delimiter = manifest["format"]["delimiter"]
        .as_str()
        .unwrap()
        .to_string();
    let null = manifest["format"]["null_string"]
        .as_str()
        .unwrap()
        .replace('\'', "''");
    let bytes = chunk_bytes(dir);
    let sql = format!(
        "COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv, DELIMITER '{delimiter}', NULL '{null}')"
    );
    let mut writer = client.copy_in(sql.as_str()).unwrap();
    std::io::Write::write_all(&mut writer, &bytes).unwrap();
    writer.finish().unwrap();
}

/// The subtask ids of a `dbhaul run --json` summary, in its order.
pub fn subtask_ids(summary: &serde_json::Value) -> Vec<String> {
    summary["subtasks"]
        .as_array()
        .expect("subtasks")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

/// Rows of `a` not in `b` plus rows of `b` not in `a`: zero when the tables are equal as
/// multisets of rows (EXCEPT ALL, both ways).
pub fn pg_difference(client: &mut postgres::Client, a: &str, b: &str) -> i64 {
    let sql = format!(
        "SELECT (SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) x) + \
                (SELECT count(*) FROM (SELECT * FROM {b} EXCEPT ALL SELECT * FROM {a}) y)"
    );
    client.query_one(sql.as_str(), &[]).unwrap().get(0)
}
