//! Upload and copy, end to end against real parts: moto's S3 server (started by the
//! harness), the real PostgreSQL as the warehouse, the real ODBC sources. What a user would
//! check: rows in the warehouse equal rows in the source, both ways, NULL and "" apart;
//! uploaded objects equal the local chunks byte for byte; an S3 outage mid-upload, or a run
//! killed during copy and run again, leaves every row in the warehouse exactly once; bad
//! settings fail before any data moves, with the cause and the fix.

mod checks;
mod faults;
mod fidelity;
mod s3_targets;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::fixtures::{self, Db};
use crate::common::s3::{self, Proxy};
use crate::common::*;

/// `[target]` and `[warehouse]` sections for a bucket on `endpoint` and a schema of the
/// PostgreSQL test database; `target_extra` and `warehouse_extra` are more settings.
fn stages_with(
    endpoint: &str,
    bucket: &str,
    schema: &str,
    target_extra: &str,
    warehouse_extra: &str,
) -> String {
    format!(
        "[target]\nurl = \"s3://{bucket}/exports\"\nendpoint = \"{endpoint}\"\n{target_extra}\n\
         [warehouse]\nkind = \"postgres\"\nurl = \"postgresql://postgres@{}:5432/{TEST_DB}\"\n\
         schema = \"{schema}\"\n{warehouse_extra}\n",
        pg_host()
    )
}

fn stages_toml(endpoint: &str, bucket: &str, schema: &str, warehouse_extra: &str) -> String {
    stages_with(endpoint, bucket, schema, "", warehouse_extra)
}

fn copy_mode() -> &'static str {
    "mode = \"extract-upload-copy\""
}

/// A job file for mode extract-upload-copy of the PostgreSQL source: `tables` (the
/// `[[tables]]` entry, and any `[files]`), then `stages` (`[target]` and `[warehouse]`).
fn pg_copy_job(sandbox: &Sandbox, task: &str, tables: &str, stages: &str) -> std::path::PathBuf {
    let text = job_text(task, &pg_odbc(), &format!("{tables}{stages}"), copy_mode());
    sandbox.job(task, &text)
}

/// `dbhaul run --json` with the S3 test environment.
fn run_with_s3(sandbox: &Sandbox, job: &Path, endpoint: &str) -> Run {
    let env = s3::s3_env(endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sandbox.run_job_env(job, &sandbox.work_dir(), &env)
}

fn count(client: &mut postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// The fidelity table from `db` through S3 into the PostgreSQL warehouse.
fn fidelity_through_the_warehouse(db: Db, tag: &str) {
    let sandbox = Sandbox::new();
    let rows = fixtures::fidelity_rows(2000);
    let (connection, namespace) = source_of(db, &sandbox);
    let table = format!("wh_fidelity_{tag}");
    let sql = |t: &str| fixtures::fidelity_sql(db, t, &rows);
    match db {
        Db::Pg => pg()
            .batch_execute(&sql(&format!("src_pg.{table}")))
            .unwrap(),
        Db::Maria => maria(&sql(&format!("{TEST_DB}.{table}"))),
        Db::Sqlite => sqlite(&sandbox.path("source.db"), &sql(&table)),
    }
    let schema = format!("wh_{tag}");
    let mut client = fresh_schema(&schema);
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.{table} ({}); {}",
            fixtures::FIDELITY_PG_COLUMNS,
            fixtures::fidelity_sql(Db::Pg, &format!("{schema}.expected"), &rows)
        ))
        .unwrap();
    let moto = s3::moto();
    let bucket = s3::unique_bucket(tag);
    s3::create_bucket(&moto.endpoint(), &bucket);

    let task = format!("wh-{tag}");
    let text = job_text(
        &task,
        &connection,
        &format!(
            "[[tables]]\nname = \"{namespace}.{table}\"\n[files]\nkeep_local = true\nchunk_mb = 1\n{}",
            stages_toml(&moto.endpoint(), &bucket, &schema, "")
        ),
        copy_mode(),
    );
    let job = sandbox.job(&task, &text);
    let summary = run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    let subtask = &summary["subtasks"][0];
    assert_eq!(subtask["rows"], rows.len() as u64);
    assert_eq!(subtask["uploaded_rows"], rows.len() as u64);
    assert_eq!(subtask["copied_rows"], rows.len() as u64);

    let loaded = format!("{schema}.{table}");
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {loaded}")),
        rows.len() as i64
    );
    assert_eq!(
        pg_difference(&mut client, &loaded, &format!("{schema}.expected")),
        0,
        "warehouse rows differ from the source rows ({tag})"
    );
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE s IS NULL), count(*) FILTER (WHERE s = '') FROM {loaded}"
            ),
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 1));

    // What was uploaded is what was written locally, byte for byte, under the documented
    // keys, with the manifest last.
    let dir = sandbox
        .work_dir()
        .join(&task)
        .join(format!("{namespace}.{table}"));
    let manifest = manifest(&dir);
    let prefix = format!("exports/{task}/{namespace}.{table}/");
    let keys = s3::list_keys(&moto.endpoint(), &bucket, &prefix);
    let chunks = manifest["chunks"].as_array().unwrap();
    assert_eq!(keys.len(), chunks.len() + 1, "{keys:?}");
    for chunk in chunks {
        let name = chunk["name"].as_str().unwrap();
        let uploaded = s3::get_object(&moto.endpoint(), &bucket, &format!("{prefix}{name}"));
        assert!(
            uploaded == std::fs::read(dir.join(name)).unwrap(),
            "{name} differs"
        );
    }
    let uploaded_manifest =
        s3::get_object(&moto.endpoint(), &bucket, &format!("{prefix}manifest.json"));
    assert_eq!(
        uploaded_manifest,
        std::fs::read(dir.join("manifest.json")).unwrap()
    );
    // The manifest doubles as a Redshift COPY manifest.
    let entries = manifest["entries"].as_array().unwrap();
    assert_eq!(entries.len(), chunks.len());
    assert_eq!(
        entries[0]["url"],
        format!("s3://{bucket}/{prefix}00000001.csv.gz")
    );
    assert_eq!(entries[0]["mandatory"], true);
    assert_eq!(
        entries[0]["meta"]["content_length"],
        chunks[0]["bytes_compressed"]
    );
}

/// A table big enough for several chunks of 1 MB and a multipart upload with 5 MB parts.
fn hash_table_job(
    sandbox: &Sandbox,
    task: &str,
    table: &str,
    endpoint: &str,
    bucket: &str,
    schema: &str,
    files: &str,
) -> std::path::PathBuf {
    let text = job_text(
        task,
        &pg_odbc(),
        &format!(
            "[[tables]]\nname = \"src_pg.{table}\"\n[files]\n{files}\n{}",
            stages_with(
                endpoint,
                bucket,
                schema,
                "attempts = 20\npart_size_mb = 5",
                ""
            )
        ),
        copy_mode(),
    );
    sandbox.job(task, &text)
}

/// One test's volume case: `src_pg.<name>` with `rows` hash rows, an empty warehouse
/// table `<name>.<name>` (schema and table named alike), and a bucket on the shared moto.
struct HashCase {
    sandbox: Sandbox,
    name: &'static str,
    client: postgres::Client,
    bucket: String,
}

impl HashCase {
    fn new(name: &'static str, rows: u32) -> HashCase {
        pg_hash_table(name, rows);
        let mut client = fresh_schema(name);
        warehouse_table(&mut client, name, name);
        let bucket = s3::unique_bucket(&name.replace('_', ""));
        s3::create_bucket(&s3::moto().endpoint(), &bucket);
        HashCase {
            sandbox: Sandbox::new(),
            name,
            client,
            bucket,
        }
    }

    /// The task name: the case's name with dashes.
    fn task(&self) -> String {
        self.name.replace('_', "-")
    }

    /// A copy job for the case through `endpoint`, with `[files]` settings.
    fn job(&self, endpoint: &str, files: &str) -> std::path::PathBuf {
        hash_table_job(
            &self.sandbox,
            &self.task(),
            self.name,
            endpoint,
            &self.bucket,
            self.name,
            files,
        )
    }

    fn assert_exactly_once(&mut self, rows: i64) {
        assert_exactly_once(&mut self.client, self.name, self.name, rows);
    }
}

fn warehouse_table(client: &mut postgres::Client, schema: &str, table: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.{table} (id int, h varchar(64))"
        ))
        .unwrap();
}

/// `dbhaul run --json` in the background, output captured.
fn spawn_run(sandbox: &Sandbox, job: &Path, endpoint: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_dbhaul"))
        .args(["run", job.to_str().unwrap(), "--json", "--work-dir"])
        .arg(sandbox.work_dir())
        .envs(s3::s3_env(endpoint))
        .env_remove("DBHAUL_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until the bookkeeping table of `schema` records a chunk.
fn wait_for_a_copied_chunk(client: &mut postgres::Client, schema: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("{schema}.dbhaul_loads")],
            )
            .unwrap()
            .get(0);
        if ready
            && count(
                client,
                &format!("SELECT count(*) FROM {schema}.dbhaul_loads"),
            ) > 0
        {
            return;
        }
        assert!(Instant::now() < deadline, "no chunk was ever copied");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every source row is in the warehouse exactly once.
fn assert_exactly_once(client: &mut postgres::Client, schema: &str, table: &str, rows: i64) {
    assert_eq!(
        count(client, &format!("SELECT count(*) FROM {schema}.{table}")),
        rows
    );
    assert_eq!(
        count(
            client,
            &format!("SELECT count(DISTINCT id) FROM {schema}.{table}")
        ),
        rows,
        "a row is doubled"
    );
    assert_eq!(
        pg_difference(
            client,
            &format!("{schema}.{table}"),
            &format!("src_pg.{table}")
        ),
        0
    );
}

/// A bucket of the test's own on the shared moto.
fn moto_bucket(tag: &str) -> String {
    let bucket = s3::unique_bucket(tag);
    s3::create_bucket(&s3::moto().endpoint(), &bucket);
    bucket
}

/// A fresh warehouse schema holding the table `t` the small job loads.
fn small_warehouse(schema: &str) -> postgres::Client {
    let mut client = fresh_schema(schema);
    client
        .batch_execute(&format!("CREATE TABLE {schema}.t (id bigint, v text)"))
        .unwrap();
    client
}

/// A small SQLite job into schema `schema`, with `target` and `warehouse` overrides.
fn small_job(sandbox: &Sandbox, task: &str, stages: &str) -> std::path::PathBuf {
    let db = sandbox.path("source.db");
    sqlite(
        &db,
        "DROP TABLE IF EXISTS t; CREATE TABLE t (id integer primary key, v text); \
         INSERT INTO t VALUES (1, 'a'), (2, NULL);",
    );
    let text = job_text(
        task,
        &sqlite_odbc(&db),
        &format!("[[tables]]\nname = \"t\"\n{stages}"),
        copy_mode(),
    );
    sandbox.job(task, &text)
}

/// Nothing was extracted: no chunk in the working folder.
fn assert_no_chunks(sandbox: &Sandbox) {
    let chunks = walk(&sandbox.work_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".csv"))
        .count();
    assert_eq!(
        chunks, 0,
        "a chunk was written although the run was refused"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(walk(&path));
        } else {
            all.push(path);
        }
    }
    all
}

/// A self-signed certificate for 127.0.0.1, as an S3-compatible device has.
fn self_signed(sandbox: &Sandbox) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (sandbox.path("device.pem"), sandbox.path("device.key"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg("/CN=device")
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    (cert, key)
}

/// Count and an order-independent checksum of every row of `(a, b, h)`, as PostgreSQL and
/// MariaDB compute them alike: the sum of the first 60 bits of each row's MD5.
fn pg_checksum(table: &str) -> String {
    let row = pg()
        .query_one(
            &format!(
                "SELECT count(*)::text || ' ' || sum(('x' || substr(md5(concat_ws('|', a, b, h)), \
                 1, 15))::bit(60)::bigint)::text FROM {table}"
            ),
            &[],
        )
        .unwrap();
    row.get(0)
}

fn maria_checksum(table: &str) -> String {
    let out = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-u", "root", "-N", "-B", "-e"])
        .arg(format!(
            "SELECT CONCAT(COUNT(*), ' ', SUM(CAST(CONV(SUBSTR(MD5(CONCAT_WS('|', a, b, h)), \
             1, 15), 16, 10) AS UNSIGNED))) FROM {table}"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
