//! The agent's HTTPS JSON API. Everything but `/v1/health` and `/v1/login` needs a session:
//! the controller exchanges the agent's password (or the credential a joining agent made
//! for it) for a token, once, and sends it as `Authorization: Bearer <token>`.
//!
//! ```text
//! POST   /v1/login                      {"password", "controller"?} -> {"token", "expires_in_s"}
//! POST   /v1/release                    the controller lets the agent go
//! GET    /v1/health                     name, version, capacity, running, queued, fingerprint
//! POST   /v1/plan                       {"task"} -> the task's subtasks, planned on the source
//! POST   /v1/test                       {"task"} -> the task's checks, run from this agent
//! POST   /v1/subtasks                   {"task", "subtasks", "start"}: take subtasks
//! GET    /v1/subtasks                   every subtask's status
//! GET    /v1/tasks/{task}/subtasks      a task's subtasks' status
//! POST   /v1/tasks/{task}/start|stop|resume   {"subtasks": [...]} or {} for all
//! GET    /v1/tasks/{task}/log           the task's log lines on this agent
//! PUT    /v1/tasks/{task}/log-level     {"level": "DEBUG"}: the task's log level, now
//! DELETE /v1/tasks/{task}               forget a task whose subtasks have ended
//! GET    /metrics                       Prometheus metrics (public, like health: counts only)
//! GET    /                              the agent's status page (it logs in like the controller)
//! ```
//!
//! Logins are bounded and throttled: at most [`CONCURRENT_CHECKS`] Argon2 verifications
//! run at once (each holds ~19 MiB), at most [`WAITING_CHECKS`] more wait, and an address
//! with a few failures in a row is answered 429 with `Retry-After` for a doubling delay
//! ([`super::throttle`]) before its password is even looked at, however many attempts it
//! makes in parallel. Failures are logged with the address, never the password.
//!
//! The settings file is read again whenever it changes (`dbhaul agent configure` on the
//! running agent): a new password works at once, and every session issued under the old
//! one ends, because a session remembers the password hash it was issued under.
//!
//! An agent belongs to one controller: the first to log in with its id (a random id in
//! the controller's folder) is recorded in `agent.toml`, and another controller's login is
//! refused (409) until the agent is released, by its controller (`dbhaul agents remove`,
//! which calls `POST /v1/release`) or on its machine (`dbhaul agent release`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, web};

use super::ApiError;
use super::throttle::Throttle;
use super::wire::{
    Assign, CheckResult, ErrorBody, Health, LoginRequest, LoginResponse, PlanRequest, PlanResponse,
    SetLogLevel, SubtaskSelection, TaskDefinition, TestReport,
};
use crate::agent::config::{AgentConfig, AgentPaths};
use crate::agent::supervisor::{
    Action, AgentSupervisor, Control, CountByState, Forget, Load, Query, SharedDriverPolicy, Take,
};
use crate::config::random_token;
use crate::telemetry::metrics;

/// Argon2 verifications at once.
pub const CONCURRENT_CHECKS: usize = 2;

/// Logins that may wait for a verification; more are answered 429 at once.
pub const WAITING_CHECKS: usize = 16;

/// A login session: when it ends, the credential hash it was issued under (it ends when
/// that is no longer one of the agent's), and the controller that holds it.
#[derive(Debug, Clone)]
pub struct Session {
    expires: Instant,
    credential: String,
    pub controller: Option<String>,
}

/// What tells that `agent.toml` was written again (it is replaced, never edited in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: meta.ino(),
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// The settings as last read, and the file's stamp then.
struct Loaded {
    config: AgentConfig,
    stamp: Option<Stamp>,
}

pub struct AgentApi {
    pub supervisor: Addr<AgentSupervisor>,
    pub paths: AgentPaths,
    pub fingerprint: String,
    /// The drivers a task may load, from the settings; shared with the supervisor.
    pub drivers: SharedDriverPolicy,
    loaded: Mutex<Loaded>,
    /// The hash of the credential this agent offers a controller while it joins it.
    joining: Mutex<Option<String>>,
    /// How long a session token lives (12 hours unless the agent is told otherwise).
    session: Duration,
    sessions: Mutex<HashMap<String, Session>>,
    throttle: Throttle,
    checks: Arc<tokio::sync::Semaphore>,
    waiting: AtomicUsize,
}

/// A lock whose holder panicked still guards plain data: take it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One login waiting for a verification; counted down however the request ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AgentApi {
    pub fn new(
        supervisor: Addr<AgentSupervisor>,
        config: AgentConfig,
        paths: AgentPaths,
        fingerprint: String,
        session: Duration,
        drivers: SharedDriverPolicy,
    ) -> AgentApi {
        let stamp = stamp(&paths.config());
        AgentApi {
            drivers,
            supervisor,
            loaded: Mutex::new(Loaded { config, stamp }),
            joining: Mutex::new(None),
            paths,
            fingerprint,
            session,
            sessions: Mutex::new(HashMap::new()),
            throttle: Throttle::new(),
            checks: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CHECKS)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The request's session, if it is current: not expired, issued under a credential the
    /// agent still accepts, and held by the controller the agent belongs to (if any).
    fn authorize(&self, req: &HttpRequest) -> Result<Session, ApiError> {
        let token = bearer(req).ok_or_else(|| {
            ApiError::unauthorized("log in first: POST /v1/login with the agent's password")
        })?;
        let config = self.config();
        let joining = lock(&self.joining).clone();
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, session| {
            let credential = &session.credential;
            let accepted = *credential == config.password_hash
                || config.join_secret_hash.as_ref() == Some(credential)
                || joining.as_ref() == Some(credential);
            let owner = match (&config.controller_id, &session.controller) {
                (Some(owner), Some(holder)) => owner == holder,
                _ => true,
            };
            session.expires > now && accepted && owner
        });
        sessions.get(token).cloned().ok_or_else(|| {
            ApiError::unauthorized(
                "the session token is unknown or expired (or the agent restarted, its password \
                 changed, or it was released); log in again",
            )
        })
    }

    /// The agent's settings, read again if `agent.toml` changed since they were read.
    pub fn config(&self) -> AgentConfig {
        let now = stamp(&self.paths.config());
        let mut loaded = lock(&self.loaded);
        if now != loaded.stamp {
            match AgentConfig::load(&self.paths) {
                Ok(config) => {
                    tracing::info!("agent.toml changed; its settings are read again");
                    self.adopt(&mut loaded, config, now);
                }
                Err(e) => tracing::warn!(
                    "agent.toml changed but cannot be read ({e}); the settings read before stay"
                ),
            }
        }
        loaded.config.clone()
    }

    fn adopt(&self, loaded: &mut Loaded, config: AgentConfig, stamp: Option<Stamp>) {
        if let Ok(mut drivers) = self.drivers.write() {
            *drivers = config.driver_policy();
        }
        loaded.config = config;
        loaded.stamp = stamp;
    }

    /// Change the settings file: read it afresh, let `change` decide, write it back. One
    /// change at a time, so two controllers cannot both claim the agent.
    pub fn update_config<T>(
        &self,
        change: impl FnOnce(&mut AgentConfig) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut loaded = lock(&self.loaded);
        let mut config = AgentConfig::load(&self.paths).map_err(ApiError::internal)?;
        let result = change(&mut config)?;
        config.save(&self.paths).map_err(ApiError::internal)?;
        let stamp = stamp(&self.paths.config());
        self.adopt(&mut loaded, config, stamp);
        Ok(result)
    }

    /// Accept (`Some`) or stop accepting (`None`) the hash of a credential being offered
    /// to a controller by a join in progress.
    pub fn set_joining(&self, hash: Option<String>) {
        *lock(&self.joining) = hash;
    }

    /// Record `controller` as the one this agent belongs to, unless it belongs to another.
    fn claim(&self, controller: &str) -> Result<(), ApiError> {
        let dir = self.paths.root.display().to_string();
        let claimed = self.update_config(|config| match &config.controller_id {
            Some(owner) if owner == controller => Ok(false),
            Some(owner) => Err(ApiError::conflict(format!(
                "agent {name} belongs to another controller (id {owner}; this one is \
                 {controller}); an agent serves one controller until it is released: run \
                 `dbhaul agents remove {name}` on the controller it belongs to, or `dbhaul \
                 agent release --dir {dir}` on the agent's machine, then register it here",
                name = config.name
            ))),
            None => {
                config.controller_id = Some(controller.to_string());
                Ok(true)
            }
        })?;
        if claimed {
            tracing::info!(controller, "the agent now belongs to this controller");
        }
        Ok(())
    }
}

/// A 429 with `Retry-After` (whole seconds, at least one).
fn too_many(wait: Duration, message: String) -> HttpResponse {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", seconds.max(1).to_string()))
        .json(ErrorBody { error: message })
}

/// Ask the supervisor; a supervisor that is gone is an internal error.
async fn ask<M>(api: &AgentApi, message: M) -> Result<M::Result, ApiError>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    AgentSupervisor: actix::Handler<M>,
{
    api.supervisor
        .send(message)
        .await
        .map_err(|e| ApiError::internal(format!("the agent's supervisor is gone: {e}")))
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/login", web::post().to(login))
        .route("/v1/release", web::post().to(release))
        .route("/v1/health", web::get().to(health))
        .route("/v1/plan", web::post().to(plan))
        .route("/v1/test", web::post().to(test))
        .route("/v1/subtasks", web::post().to(take))
        .route("/v1/subtasks", web::get().to(all_subtasks))
        .route("/v1/tasks/{task}/subtasks", web::get().to(task_subtasks))
        .route("/v1/tasks/{task}/{action}", web::post().to(control))
        .route("/v1/tasks/{task}/log", web::get().to(log))
        .route("/v1/tasks/{task}/log-level", web::put().to(set_log_level))
        .route("/metrics", web::get().to(scrape))
        .configure(super::pages::agent_routes)
        .route("/v1/tasks/{task}", web::delete().to(forget))
        .default_service(web::to(|req: HttpRequest| async move {
            Err::<HttpResponse, _>(ApiError::not_found(format!(
                "no such endpoint: {} {}",
                req.method(),
                req.path()
            )))
        }));
}

async fn login(
    api: web::Data<AgentApi>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let blocked = |wait: Duration| {
        too_many(
            wait,
            format!(
                "too many failed logins from {peer}; try again in {} s",
                wait.as_secs().max(1)
            ),
        )
    };
    if let Err(wait) = api.throttle.check(peer, Instant::now()) {
        return Ok(blocked(wait));
    }
    let permit = {
        let _waiting = Waiting(&api.waiting);
        if api.waiting.fetch_add(1, Ordering::SeqCst) >= WAITING_CHECKS {
            return Ok(too_many(
                Duration::from_secs(1),
                "the agent is busy checking other logins; try again in 1 s".into(),
            ));
        }
        api.checks
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ApiError::internal(format!("the login queue is closed: {e}")))?
    };
    // Others from this address may have failed while this one waited.
    if let Err(wait) = api.throttle.check(peer, Instant::now()) {
        return Ok(blocked(wait));
    }
    let config = api.config();
    let joining = lock(&api.joining).clone();
    let LoginRequest {
        password,
        controller,
    } = body.into_inner();
    // The permit goes with the verification, so a request dropped while it runs still
    // holds its place until the memory is freed.
    let matched = crate::agent::blocking(move || {
        let matched = config.credential_for(&password, joining.as_deref());
        drop(permit);
        matched
    })
    .await
    .map_err(ApiError::internal)?;
    let Some(credential) = matched else {
        let block = api.throttle.failed(peer, Instant::now());
        tracing::warn!(%peer, blocked_s = block.map(|b| b.as_secs()), "failed login to the agent");
        return Err(ApiError::unauthorized(
            "wrong password for this agent (the one given to `dbhaul agent configure`)",
        ));
    };
    api.throttle.succeeded(peer);
    if let Some(controller) = &controller {
        api.claim(controller)?;
    }
    let token = random_token();
    lock(&api.sessions).insert(
        token.clone(),
        Session {
            expires: Instant::now() + api.session,
            credential,
            controller,
        },
    );
    tracing::info!(%peer, "controller logged in");
    Ok(HttpResponse::Ok().json(LoginResponse {
        token,
        expires_in_s: api.session.as_secs(),
    }))
}

/// `POST /v1/release`: the controller this agent belongs to lets it go (`dbhaul agents
/// remove`); the credential it was given by a join goes too.
async fn release(api: web::Data<AgentApi>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let session = api.authorize(&req)?;
    api.update_config(|config| {
        if let (Some(owner), Some(holder)) = (&config.controller_id, &session.controller)
            && owner != holder
        {
            return Err(ApiError::conflict(
                "this agent belongs to another controller; only that one releases it",
            ));
        }
        config.controller_id = None;
        config.join_secret_hash = None;
        Ok(())
    })?;
    tracing::info!("the agent was released by its controller");
    Ok(HttpResponse::NoContent().finish())
}

async fn health(api: web::Data<AgentApi>) -> Result<HttpResponse, ApiError> {
    let (capacity, running, queued) = ask(&api, Load).await?;
    Ok(HttpResponse::Ok().json(Health {
        name: api.config().name,
        version: env!("CARGO_PKG_VERSION").to_string(),
        capacity,
        running,
        queued,
        fingerprint: api.fingerprint.clone(),
    }))
}

/// The task with its job parsed (once, here), if its connection string names only drivers
/// this agent may load.
fn task_of(
    api: &AgentApi,
    task: &TaskDefinition,
    leg: Option<crate::model::Leg>,
) -> Result<crate::config::Task, ApiError> {
    let parsed = task
        .clone()
        .parse(leg)
        .map_err(|e| ApiError::bad_request(format!("the task's job file is not valid: {e}")))?;
    let job = parsed.job();
    let policy = api
        .drivers
        .read()
        .map(|policy| policy.clone())
        .unwrap_or_default();
    if let Err(e) = crate::source::drivers::check(&job.connection, &policy) {
        tracing::warn!(task = %task.name, "a task's connection string was refused: {e}");
        return Err(ApiError::bad_request(format!(
            "task {}: source: {e}",
            task.name
        )));
    }
    Ok(parsed)
}

async fn plan(
    api: web::Data<AgentApi>,
    req: HttpRequest,
    body: web::Json<PlanRequest>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req)?;
    let job = task_of(&api, &body.task, None)?.shared_job();
    let planned = crate::agent::blocking(move || {
        let (source, conn) = crate::source::Source::open(&job.connection, job.password.as_ref())
            .map_err(|e| (e.is_configuration(), format!("source: {e}")))?;
        crate::planner::plan(&job, &source, &conn)
            .map_err(|e| (e.is_configuration(), e.to_string()))
    })
    .await
    .map_err(ApiError::internal)?;
    match planned {
        Ok(subtasks) => Ok(HttpResponse::Ok().json(PlanResponse { subtasks })),
        Err((true, message)) => Err(ApiError::bad_request(message)),
        Err((false, message)) => Err(ApiError::bad_gateway(message)),
    }
}

async fn test(
    api: web::Data<AgentApi>,
    req: HttpRequest,
    body: web::Json<PlanRequest>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req)?;
    let job = task_of(&api, &body.task, None)?.shared_job();
    let work = crate::destination::WorkDir::new(api.paths.work().join(job.name.as_str()));
    let checks = crate::agent::blocking(move || crate::pipeline::checks::test_task(&job, &work))
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(TestReport {
        ok: checks.iter().all(|c| c.ok),
        agent: Some(api.config().name),
        checks: checks
            .into_iter()
            .map(|c| CheckResult {
                name: c.name.to_string(),
                ok: c.ok,
                detail: c.detail,
            })
            .collect(),
    }))
}

async fn take(
    api: web::Data<AgentApi>,
    req: HttpRequest,
    body: web::Json<Assign>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req)?;
    let task = task_of(&api, &body.task, body.leg)?;
    let statuses = ask(&api, Take(body.into_inner(), task)).await??;
    Ok(HttpResponse::Ok().json(statuses))
}

async fn all_subtasks(
    api: web::Data<AgentApi>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req)?;
    let statuses = ask(&api, Query { task: None }).await??;
    Ok(HttpResponse::Ok().json(statuses))
}

async fn task_subtasks(
    api: web::Data<AgentApi>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req)?;
    let statuses = ask(
        &api,
        Query {
            task: Some(path.into_inner()),
        },
    )
    .await??;
    Ok(HttpResponse::Ok().json(statuses))
}

async fn control(
    api: web::Data<AgentApi>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<SubtaskSelection>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req)?;
    let (task, action) = path.into_inner();
    let action = match action.as_str() {
        "start" => Action::Start,
        "stop" => Action::Stop,
        "resume" => Action::Resume,
        other => {
            return Err(ApiError::not_found(format!(
                "no such action `{other}`: use start, stop or resume"
            )));
        }
    };
    let statuses = ask(
        &api,
        Control {
            task,
            action,
            selection: body.into_inner(),
        },
    )
    .await??;
    Ok(HttpResponse::Ok().json(statuses))
}

async fn log(
    api: web::Data<AgentApi>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req)?;
    let task = path.into_inner();
    crate::model::TaskName::parse(&task).map_err(ApiError::bad_request)?;
    let file = crate::telemetry::task_log::path(&api.paths.logs(), &task);
    match crate::telemetry::task_log::read(api.paths.logs(), task.clone()).await {
        Ok(bytes) => Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::not_found(format!(
            "this agent has no log of task `{task}`"
        ))),
        Err(e) => Err(ApiError::internal(format!(
            "cannot read {}: {e}",
            file.display()
        ))),
    }
}

async fn forget(
    api: web::Data<AgentApi>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req)?;
    ask(
        &api,
        Forget {
            task: path.into_inner(),
        },
    )
    .await??;
    Ok(HttpResponse::NoContent().finish())
}

async fn set_log_level(
    api: web::Data<AgentApi>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<SetLogLevel>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req)?;
    let message = crate::agent::supervisor::SetLogLevel {
        task: path.into_inner(),
        level: body.into_inner().level,
    };
    ask(&api, message).await??;
    Ok(HttpResponse::NoContent().finish())
}

async fn scrape(api: web::Data<AgentApi>) -> Result<HttpResponse, ApiError> {
    let counts = ask(&api, CountByState).await?;
    let (capacity, running, queued) = ask(&api, Load).await?;
    let subtasks = metrics::Snapshot {
        name: "subtasks",
        help: "Subtasks this agent holds, by task and state",
        values: counts
            .into_iter()
            .map(|(task, state, n)| {
                (
                    vec![
                        ("task".to_string(), task),
                        ("state".to_string(), state.as_str().to_string()),
                    ],
                    n,
                )
            })
            .collect(),
    };
    let slots = metrics::Snapshot {
        name: "agent_slots",
        help: "Subtasks the agent runs at once (capacity), runs now, and has waiting",
        values: [
            ("capacity", capacity),
            ("running", running),
            ("queued", queued),
        ]
        .into_iter()
        .map(|(kind, n)| (vec![("kind".to_string(), kind.to_string())], i64::from(n)))
        .collect(),
    };
    Ok(HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render(vec![subtasks, slots])))
}
