//! The agent's HTTPS JSON API. Everything but `/v1/health` and `/v1/login` needs a session:
//! the controller exchanges the agent's password (or the credential a joining agent made
//! for it) for a token, once, and sends it as `Authorization: Bearer <token>`.
//!
//! ```text
//! POST   /v1/login                      {"password"} -> {"token", "expires_in_s"}
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
//! Failed logins are answered slowly (0.5 s, doubling per failure in a row from the same
//! address, at most 10 s) and logged with the address, never the password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, web};

use super::ApiError;
use super::wire::{
    Assign, CheckResult, Health, LoginRequest, LoginResponse, PlanRequest, PlanResponse,
    SetLogLevel, SubtaskSelection, TaskDefinition, TestReport,
};
use crate::agent::config::{AgentConfig, AgentPaths, random_token};
use crate::agent::supervisor::{
    Action, AgentSupervisor, Control, CountByState, Forget, Load, Query, Take,
};
use crate::telemetry::metrics;

pub struct AgentApi {
    pub supervisor: Addr<AgentSupervisor>,
    pub config: Mutex<AgentConfig>,
    pub paths: AgentPaths,
    pub fingerprint: String,
    /// How long a session token lives (12 hours unless the agent is told otherwise).
    session: Duration,
    sessions: Mutex<HashMap<String, Instant>>,
    failures: Mutex<HashMap<IpAddr, u32>>,
}

impl AgentApi {
    pub fn new(
        supervisor: Addr<AgentSupervisor>,
        config: AgentConfig,
        paths: AgentPaths,
        fingerprint: String,
        session: Duration,
    ) -> AgentApi {
        AgentApi {
            supervisor,
            config: Mutex::new(config),
            paths,
            fingerprint,
            session,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn authorize(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let token = bearer(req).ok_or_else(|| {
            ApiError::unauthorized("log in first: POST /v1/login with the agent's password")
        })?;
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let now = Instant::now();
        sessions.retain(|_, expires| *expires > now);
        if sessions.contains_key(token) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "the session token is unknown or expired (or the agent restarted); log in again",
            ))
        }
    }

    fn config(&self) -> AgentConfig {
        self.config.lock().expect("config lock").clone()
    }
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
    let config = api.config();
    let password = body.into_inner().password;
    let accepted = crate::agent::blocking(move || config.accepts(&password))
        .await
        .map_err(ApiError::internal)?;
    if !accepted {
        let failures = {
            let mut failures = api.failures.lock().expect("failures lock");
            let n = failures.entry(peer).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        tracing::warn!(%peer, failures, "failed login to the agent");
        let delay = Duration::from_millis(500)
            .saturating_mul(1u32 << (failures - 1).min(5))
            .min(Duration::from_secs(10));
        actix_web::rt::time::sleep(delay).await;
        return Err(ApiError::unauthorized(
            "wrong password for this agent (the one given to `dbhaul agent configure`)",
        ));
    }
    api.failures.lock().expect("failures lock").remove(&peer);
    let token = random_token();
    api.sessions
        .lock()
        .expect("sessions lock")
        .insert(token.clone(), Instant::now() + api.session);
    tracing::info!(%peer, "controller logged in");
    Ok(HttpResponse::Ok().json(LoginResponse {
        token,
        expires_in_s: api.session.as_secs(),
    }))
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

fn job_of(task: &TaskDefinition) -> Result<crate::config::Job, ApiError> {
    task.job()
        .map_err(|e| ApiError::bad_request(format!("the task's job file is not valid: {e}")))
}

async fn plan(
    api: web::Data<AgentApi>,
    req: HttpRequest,
    body: web::Json<PlanRequest>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req)?;
    let job = job_of(&body.task)?;
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
    let job = job_of(&body.task)?;
    let work = crate::target::WorkDir::new(api.paths.work().join(job.name.as_str()));
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
    let statuses = ask(&api, Take(body.into_inner())).await??;
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
