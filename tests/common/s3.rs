//! S3 for the upload tests: moto's S3 server (one per test process, or one per test that
//! needs its own), synchronous S3 helpers for checking what landed in a bucket, the
//! environment the `dbhaul` binary runs with, and a TCP proxy that can make the endpoint
//! go away and come back in the middle of an upload.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

/// Test credentials and region; moto accepts any.
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";
pub const REGION: &str = "us-east-1";

// --- moto's server --------------------------------------------------------------------

/// A running `moto_server`.
pub struct Moto {
    pub port: u16,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    child: Child,
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The moto server shared by the whole test process, started on first use. It dies with
/// the process (`PR_SET_PDEATHSIG`). Tests share it: give each its own bucket
/// ([`unique_bucket`]).
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();
    // A failure is remembered: every later test fails at once with the same message
    // instead of waiting for a server that will not come.
    match MOTO.get_or_init(try_start_moto) {
        Ok(moto) => moto,
        Err(message) => panic!("{message}"),
    }
}

/// A moto server of the calling test's own (fresh state, can be killed); killed on drop.
pub fn start_moto() -> Moto {
    try_start_moto_env(&[]).unwrap_or_else(|message| panic!("{message}"))
}

/// A moto server of the calling test's own that checks credentials
/// (`INITIAL_NO_AUTH_ACTION_COUNT=0`): it knows no access key, so every request, ours
/// included, is refused with `InvalidAccessKeyId`. Killed on drop.
pub fn start_moto_with_auth() -> Moto {
    try_start_moto_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")])
        .unwrap_or_else(|message| panic!("{message}"))
}

/// A moto server of the calling test's own that speaks HTTPS with this certificate and
/// key (`https://127.0.0.1:<port>`), as an S3-compatible device with its own certificate
/// does. Killed on drop.
pub fn start_moto_tls(cert: &Path, key: &Path) -> Moto {
    let args = [
        "-c".to_string(),
        cert.display().to_string(),
        "-k".to_string(),
        key.display().to_string(),
    ];
    let mut last = String::new();
    for _ in 0..3 {
        match start_moto_once(&[], &args).unwrap_or_else(|message| panic!("{message}")) {
            Ok(moto) => return moto,
            Err(message) => last = message,
        }
    }
    panic!("{last}")
}

fn try_start_moto() -> Result<Moto, String> {
    try_start_moto_env(&[])
}

fn try_start_moto_env(env: &[(&str, &str)]) -> Result<Moto, String> {
    // The port is free when probed but may be taken before moto binds it: moto then exits
    // at once, and another port is tried.
    let mut last = String::new();
    for _ in 0..3 {
        match start_moto_once(env, &[])? {
            Ok(moto) => return Ok(moto),
            Err(message) => last = message,
        }
    }
    Err(last)
}

/// `Err` when moto cannot run at all, `Ok(Err)` when it exited early (a port clash?).
fn start_moto_once(env: &[(&str, &str)], args: &[String]) -> Result<Result<Moto, String>, String> {
    let tls = !args.is_empty();
    const HINT: &str = "moto's S3 server (moto_server, PyPI moto[server]): run appliance/setup.sh";
    let port = free_port();
    let log = std::env::temp_dir().join(format!(
        "dbhaul-test-moto-{}-{port}.log",
        std::process::id()
    ));
    remove_stale_logs();
    let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut command = Command::new("moto_server");
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(file);
    die_with_parent(&mut command);
    let mut child = match spawn_from_long_lived_thread(command) {
        Ok(child) => child,
        Err(e) => return Err(format!("cannot start moto_server ({e}); {HINT}")),
    };
    let log_text = |log: &PathBuf| std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = log_text(&log);
            if status.code() == Some(127) || text.contains("command not found") {
                return Err(format!("moto_server {status}: {}\n{HINT}", text.trim()));
            }
            return Ok(Err(format!(
                "moto_server on port {port} exited ({status}): {}\n{HINT}",
                text.trim()
            )));
        }
        let ready = if tls {
            TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(1),
            )
            .is_ok()
        } else {
            answers_http(port)
        };
        if ready {
            if let Ok(None) = child.try_wait() {
                return Ok(Ok(Moto { port, log, child }));
            }
            continue; // it exited: reported above
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "moto_server did not answer on 127.0.0.1:{port} within 30 s: {}\n{HINT}",
                log_text(&log).trim()
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Remove the moto logs of test processes that are gone (each run leaves one behind).
fn remove_stale_logs() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name
                .to_str()
                .and_then(|n| n.strip_prefix("dbhaul-test-moto-"))
            else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or_default();
            if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    });
}

/// Whether something on the port accepts a connection and answers a GET with HTTP.
fn answers_http(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    head[..got].starts_with(b"HTTP/1.")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// SIGKILL the child when its parent dies, so no server outlives the test process.
pub fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: prctl, getppid and _exit are async-signal-safe; nothing is allocated.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before prctl: nobody will send the signal.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Spawn from a thread that lives as long as the process: `PR_SET_PDEATHSIG` fires when
/// the *thread* that forked exits, and every test runs on a thread of its own.
pub fn spawn_from_long_lived_thread(command: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("test-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, tx))
        .expect("spawner thread alive");
    rx.recv().expect("spawner thread alive")
}

// --- S3 helpers -----------------------------------------------------------------------

/// Run a future to completion on a current-thread runtime of its own.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// An S3 client for moto (or a proxy in front of it): static test credentials,
/// us-east-1, path-style, checksums only when required. Use inside [`block_on`].
pub fn client(endpoint: &str) -> Client {
    client_with_attempts(endpoint, 3)
}

fn client_with_attempts(endpoint: &str, attempts: u32) -> Client {
    let retry = if attempts <= 1 {
        RetryConfig::disabled()
    } else {
        RetryConfig::standard().with_max_attempts(attempts)
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            ACCESS_KEY,
            SECRET_KEY,
            None,
            None,
            "dbhaul-tests",
        ))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(retry)
        .build();
    Client::from_conf(config)
}

fn describe<E: std::error::Error>(e: E) -> String {
    DisplayErrorContext(e).to_string()
}

/// Create a bucket; one that already exists (and is ours) is fine.
pub fn create_bucket(endpoint: &str, bucket: &str) {
    block_on(async {
        match client(endpoint).create_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
            Err(e) => panic!("create bucket {bucket}: {}", describe(e)),
        }
    })
}

/// Every key under `prefix`, sorted.
pub fn list_keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    block_on(try_list_keys(&client(endpoint), bucket, prefix))
        .unwrap_or_else(|e| panic!("list s3://{bucket}/{prefix}: {e}"))
}

async fn try_list_keys(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(describe)?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
            _ => break,
        }
    }
    keys.sort();
    Ok(keys)
}

/// The bytes of an object.
pub fn get_object(endpoint: &str, bucket: &str, key: &str) -> Vec<u8> {
    block_on(try_get_object(&client(endpoint), bucket, key))
        .unwrap_or_else(|e| panic!("get s3://{bucket}/{key}: {e}"))
}

async fn try_get_object(client: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(describe)?;
    let body = object.body.collect().await.map_err(describe)?;
    Ok(body.into_bytes().to_vec())
}

/// An object's metadata (HEAD): its encryption headers, say.
pub fn head_object(
    endpoint: &str,
    bucket: &str,
    key: &str,
) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    block_on(
        client(endpoint)
            .head_object()
            .bucket(bucket)
            .key(key)
            .send(),
    )
    .unwrap_or_else(|e| panic!("head s3://{bucket}/{key}: {}", describe(e)))
}

/// Write an object (one PUT).
pub fn put_object(endpoint: &str, bucket: &str, key: &str, bytes: &[u8]) {
    block_on(try_put_object(&client(endpoint), bucket, key, bytes))
        .unwrap_or_else(|e| panic!("put s3://{bucket}/{key}: {e}"))
}

async fn try_put_object(
    client: &Client,
    bucket: &str,
    key: &str,
    bytes: &[u8],
) -> Result<(), String> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes.to_vec()))
        .send()
        .await
        .map_err(describe)?;
    Ok(())
}

/// Incomplete multipart uploads in the bucket: (key, upload id).
async fn multipart_uploads(client: &Client, bucket: &str) -> Result<Vec<(String, String)>, String> {
    let mut uploads = Vec::new();
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = client
            .list_multipart_uploads()
            .bucket(bucket)
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(id_marker.take())
            .send()
            .await
            .map_err(describe)?;
        for upload in page.uploads() {
            if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                uploads.push((key.to_string(), id.to_string()));
            }
        }
        if page.is_truncated() != Some(true) || page.next_key_marker().is_none() {
            break;
        }
        key_marker = page.next_key_marker().map(String::from);
        id_marker = page.next_upload_id_marker().map(String::from);
    }
    Ok(uploads)
}

/// How many multipart uploads in the bucket were started and neither completed nor
/// aborted.
pub fn list_multipart_uploads(endpoint: &str, bucket: &str) -> usize {
    block_on(multipart_uploads(&client(endpoint), bucket))
        .unwrap_or_else(|e| panic!("list multipart uploads of {bucket}: {e}"))
        .len()
}

/// Abort every incomplete multipart upload, delete every object, then the bucket. A bucket
/// that does not exist is fine.
pub fn delete_bucket_all(endpoint: &str, bucket: &str) {
    block_on(async {
        let client = client(endpoint);
        match client.head_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => return,
            Err(e) => panic!("head bucket {bucket}: {}", describe(e)),
        }
        let uploads = multipart_uploads(&client, bucket)
            .await
            .unwrap_or_else(|e| panic!("list multipart uploads of {bucket}: {e}"));
        for (key, id) in uploads {
            client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(&key)
                .upload_id(&id)
                .send()
                .await
                .unwrap_or_else(|e| panic!("abort upload {id} of {key}: {}", describe(e)));
        }
        let keys = try_list_keys(&client, bucket, "")
            .await
            .unwrap_or_else(|e| panic!("list {bucket}: {e}"));
        for batch in keys.chunks(1000) {
            let objects = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build().unwrap())
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .unwrap();
            let out = client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .unwrap_or_else(|e| panic!("delete objects of {bucket}: {}", describe(e)));
            assert!(
                out.errors().is_empty(),
                "delete objects of {bucket}: {:?}",
                out.errors()
            );
        }
        client
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete bucket {bucket}: {}", describe(e)));
    })
}

/// A bucket name of one test's own: `<tag>-<pid>-<n>`, lowercase, valid for S3.
pub fn unique_bucket(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("-{}-{n}", std::process::id());
    let mut tag: String = tag
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    tag.truncate(63 - suffix.len());
    let tag = tag.trim_matches('-');
    let tag = if tag.is_empty() { "dbhaul" } else { tag };
    format!("{tag}{suffix}")
}

/// The environment of a `dbhaul` run against moto: test credentials and region, no
/// instance metadata, and none of the developer's own AWS files. The endpoint itself
/// goes in the job file; it is only kept clear of any HTTP proxy here.
pub fn s3_env(endpoint: &str) -> Vec<(String, String)> {
    let host = url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(String::from))
        .unwrap_or_else(|| "127.0.0.1".into());
    let no_proxy = format!("{host},127.0.0.1,localhost");
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        // Blank: a developer's session token would otherwise ride along.
        ("AWS_SESSION_TOKEN", ""),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/dbhaul-test/aws-config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/dbhaul-test/aws-credentials",
        ),
        ("NO_PROXY", &no_proxy),
        ("no_proxy", &no_proxy),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

// --- a proxy that can pull the plug ---------------------------------------------------

/// A TCP proxy on loopback in front of `127.0.0.1:<upstream>`. [`Proxy::stop`] makes the
/// endpoint vanish (connections refused, open ones cut); [`Proxy::resume`] brings it back
/// on the same port.
pub struct Proxy {
    port: u16,
    upstream_port: u16,
    shared: Arc<Shared>,
    acceptor: Mutex<Option<Acceptor>>,
}

struct Shared {
    /// Both sockets of every open connection (clones), so stop() can cut them.
    open: Mutex<HashMap<u64, [TcpStream; 2]>>,
    next_id: AtomicU64,
    /// Client → upstream.
    bytes_up: AtomicU64,
    /// The first [`CAPTURE_LIMIT`] bytes sent client → upstream, to read requests back.
    captured: Mutex<Vec<u8>>,
}

/// How much of the client → upstream stream a proxy keeps.
const CAPTURE_LIMIT: usize = 8 << 20;

struct Acceptor {
    stopping: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Proxy {
    /// Listen on a free loopback port.
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            captured: Mutex::new(Vec::new()),
        });
        let acceptor = spawn_acceptor(listener, shared.clone(), upstream_port);
        Proxy {
            port,
            upstream_port,
            shared,
            acceptor: Mutex::new(Some(acceptor)),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Bytes received from clients to forward to the upstream so far (all connections,
    /// since start).
    pub fn bytes_forwarded(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::SeqCst)
    }

    /// What clients sent so far (the first 8 MB, all connections interleaved by read), as
    /// text: enough to see the requests' lines and headers.
    pub fn captured_text(&self) -> String {
        let captured = self
            .shared
            .captured
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&captured).into_owned()
    }

    /// Close the listener (new connections are refused once this returns) and cut every
    /// open connection both ways, so requests in flight fail.
    pub fn stop(&self) {
        let acceptor = self.lock_acceptor().take();
        if let Some(acceptor) = acceptor {
            acceptor.stopping.store(true, Ordering::SeqCst);
            // Wake the blocking accept; the thread then drops the listener.
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            for _ in 0..100 {
                if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                    || acceptor.thread.is_finished()
                {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            let _ = acceptor.thread.join();
        }
        let open = self.shared.open.lock().unwrap_or_else(|e| e.into_inner());
        for stream in open.values().flatten() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Listen again, on the same port. No-op when running.
    pub fn resume(&self) {
        let mut acceptor = self.lock_acceptor();
        if acceptor.is_some() {
            return;
        }
        // std sets SO_REUSEADDR on Unix, so connections of the old listener in TIME_WAIT
        // do not block the port; something else may briefly hold it, hence the retries.
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() > deadline => {
                    panic!("proxy: rebind 127.0.0.1:{}: {e}", self.port)
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        };
        *acceptor = Some(spawn_acceptor(
            listener,
            self.shared.clone(),
            self.upstream_port,
        ));
    }

    fn lock_acceptor(&self) -> std::sync::MutexGuard<'_, Option<Acceptor>> {
        self.acceptor.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_acceptor(listener: TcpListener, shared: Arc<Shared>, upstream_port: u16) -> Acceptor {
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    let thread = thread::Builder::new()
        .name("s3-proxy-accept".into())
        .spawn(move || {
            for incoming in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break; // the listener is dropped: connections are refused
                }
                match incoming {
                    Ok(client) => {
                        let (shared, flag) = (shared.clone(), flag.clone());
                        let _ = thread::Builder::new()
                            .name("s3-proxy-conn".into())
                            .spawn(move || serve(client, upstream_port, &shared, &flag));
                    }
                    // Out of descriptors and the like: do not spin.
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        })
        .expect("proxy accept thread");
    Acceptor { stopping, thread }
}

/// Forward one connection until either side is done or stop() cuts it.
fn serve(client: TcpStream, upstream_port: u16, shared: &Shared, stopping: &AtomicBool) {
    let addr = SocketAddr::from(([127, 0, 0, 1], upstream_port));
    let Ok(upstream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(client2), Ok(upstream2), Ok(client3), Ok(upstream3)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    {
        // Registered under the lock stop() cuts under, after it raised the flag: a
        // connection accepted just before stop() is either cut by it or dropped here.
        let mut open = shared.open.lock().unwrap_or_else(|e| e.into_inner());
        if stopping.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
            return;
        }
        open.insert(id, [client3, upstream3]);
    }
    thread::scope(|scope| {
        scope.spawn(|| pump(client, upstream, Some(shared)));
        pump(upstream2, client2, None);
    });
    shared
        .open
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

/// Copy `from` → `to`; pass an end of stream on as a half-close, an error as a cut.
fn pump(mut from: TcpStream, mut to: TcpStream, counter: Option<&Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                // Counted before the write: once the upstream has answered a request, its
                // bytes are all in the count.
                if let Some(shared) = counter {
                    let mut captured = shared.captured.lock().unwrap_or_else(|e| e.into_inner());
                    let room = CAPTURE_LIMIT.saturating_sub(captured.len()).min(n);
                    captured.extend_from_slice(&buf[..room]);
                    drop(captured);
                    shared.bytes_up.fetch_add(n as u64, Ordering::SeqCst);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

// --- the harness checks itself --------------------------------------------------------

/// Exercise moto, the helpers and the proxy end to end; panics on any failure.
pub fn self_check() {
    let moto = moto();
    let bucket = unique_bucket("Harness_Check");
    assert!(bucket.starts_with("harness-check-"), "{bucket}");
    create_bucket(&moto.endpoint(), &bucket);
    create_bucket(&moto.endpoint(), &bucket); // already ours: fine

    // 6 MB through the proxy, and back byte for byte.
    let proxy = Proxy::start(moto.port);
    let mut big = vec![0u8; 6 << 20];
    fastrand::Rng::with_seed(6).fill(&mut big);
    put_object(&proxy.endpoint(), &bucket, "data/big.bin", &big);
    assert!(proxy.bytes_forwarded() >= big.len() as u64);
    put_object(&moto.endpoint(), &bucket, "data/small.txt", b"small");

    // A request in flight: headers and part of a body, then the plug is pulled.
    let mut inflight = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    let before = proxy.bytes_forwarded();
    let head = format!(
        "PUT /{bucket}/data/never.bin HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
         Content-Length: 1000000\r\n\r\n",
        proxy.port()
    );
    inflight.write_all(head.as_bytes()).unwrap();
    inflight.write_all(&[b'x'; 4096]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while proxy.bytes_forwarded() < before + head.len() as u64 + 4096 {
        assert!(Instant::now() < deadline, "the proxy forwards nothing");
        thread::sleep(Duration::from_millis(2));
    }
    proxy.stop();
    inflight
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // Cut: end of stream or a reset, not a connection left hanging.
    match inflight.read_to_end(&mut Vec::new()) {
        Ok(_) => {}
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the in-flight connection stayed open after stop()"
        ),
    }

    // Stopped: refused, and an S3 request fails.
    let refused = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap_err();
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{refused}"
    );
    let endpoint = proxy.endpoint();
    let failed = block_on(try_list_keys(
        &client_with_attempts(&endpoint, 1),
        &bucket,
        "",
    ));
    assert!(
        failed.is_err(),
        "a request through a stopped proxy: {failed:?}"
    );

    // Resumed on the same port: requests succeed again.
    proxy.resume();
    proxy.resume(); // no-op
    assert_eq!(proxy.endpoint(), endpoint);
    let keys = block_on(try_list_keys(
        &client_with_attempts(&endpoint, 1),
        &bucket,
        "",
    ));
    assert_eq!(
        keys.unwrap(),
        ["data/big.bin", "data/small.txt"],
        "listing after resume"
    );
    assert_eq!(list_keys(&endpoint, &bucket, "data/s"), ["data/small.txt"]);
    assert!(
        get_object(&endpoint, &bucket, "data/big.bin") == big,
        "6 MB differ"
    );
    assert_eq!(
        get_object(&moto.endpoint(), &bucket, "data/small.txt"),
        b"small"
    );

    // An incomplete multipart upload is counted, and delete_bucket_all clears it.
    assert_eq!(list_multipart_uploads(&moto.endpoint(), &bucket), 0);
    block_on(async {
        client(&moto.endpoint())
            .create_multipart_upload()
            .bucket(&bucket)
            .key("data/partial.bin")
            .send()
            .await
            .unwrap()
    });
    assert_eq!(list_multipart_uploads(&moto.endpoint(), &bucket), 1);

    drop(proxy);
    delete_bucket_all(&moto.endpoint(), &bucket);
    delete_bucket_all(&moto.endpoint(), &bucket); // gone: fine
    let gone = block_on(try_list_keys(&client(&moto.endpoint()), &bucket, ""));
    assert!(gone.is_err(), "the bucket survived delete_bucket_all");

    let env = s3_env(&moto.endpoint());
    assert!(
        env.iter()
            .any(|(k, v)| k == "AWS_ACCESS_KEY_ID" && v == "testing")
    );
}

#[test]
fn s3_harness_works() {
    let started = Instant::now();
    self_check();
    eprintln!("s3 harness self-check: {:?}", started.elapsed());
}
