//! The controller's HTTP JSON API, for the command line (and the status page later).
//!
//! ```text
//! GET    /v1/health
//! GET    /v1/agents                     registered agents with reachability and capacity
//! POST   /v1/agents                     register (409 with the fingerprint to confirm)
//! POST   /v1/agents/join                an agent registers itself with the join token
//! DELETE /v1/agents/{name}
//! GET    /v1/tasks                      every task
//! POST   /v1/tasks                      create from a job file and its secrets
//! GET    /v1/tasks/{name}               a task and its subtasks
//! POST   /v1/tasks/{name}/start|stop|resume|test
//! GET    /v1/tasks/{name}/log           the merged log, text
//! PUT    /v1/tasks/{name}/log-level     {"level": "DEBUG"}: here and on its agents, now
//! GET    /v1/tasks/{name}/export        the task with its state, as an XML file
//! POST   /v1/tasks/import               {"files": [{"name", "xml", "secrets"}], "replace", "rename"}
//! DELETE /v1/tasks/{name}
//! GET    /metrics                       Prometheus metrics
//! GET    /                              the status page (its files need no token)
//! ```
//!
//! Every request but health and the page's files needs `Authorization: Bearer <admin
//! token>` (join: the join token), checked with `Host` and `Origin` by
//! [`super::controller_gate`] before a handler runs; the handlers here never see a request
//! that failed it.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use super::ApiError;
use super::wire::{
    ConfirmFingerprint, CreateTask, ImportTasks, JoinRequest, RegisterAgent, SetLogLevel,
};
use crate::controller::Controller;
use crate::controller::registry::Registered;
use crate::controller::tasks::ImportOptions;
use crate::telemetry::metrics;

pub struct ControllerApi {
    pub controller: Arc<Controller>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/health", web::get().to(health))
        .route("/v1/agents", web::get().to(agents))
        .route("/v1/agents", web::post().to(register))
        .route("/v1/agents/join", web::post().to(join))
        .route("/v1/agents/{name}", web::delete().to(remove_agent))
        .route("/v1/tasks", web::get().to(tasks))
        .route("/v1/tasks", web::post().to(create))
        .service(
            web::resource("/v1/tasks/import")
                .app_data(
                    super::json_config()
                        .limit(crate::export::MAX_REQUEST_BYTES as usize + 1024 * 1024),
                )
                .route(web::post().to(import)),
        )
        .route("/v1/tasks/{name}", web::get().to(show))
        .route("/v1/tasks/{name}", web::delete().to(delete))
        .route("/v1/tasks/{name}/log", web::get().to(log))
        .route("/v1/tasks/{name}/log-level", web::put().to(set_log_level))
        .route("/v1/tasks/{name}/export", web::get().to(export))
        .route("/v1/tasks/{name}/{action}", web::post().to(action))
        .route("/metrics", web::get().to(scrape))
        .configure(super::pages::controller_routes)
        .default_service(web::to(|req: HttpRequest| async move {
            Err::<HttpResponse, _>(ApiError::not_found(format!(
                "no such endpoint: {} {}",
                req.method(),
                req.path()
            )))
        }));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "role": "controller",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

#[derive(serde::Deserialize)]
struct AgentsQuery {
    /// Reuse an agent's health asked less than this many seconds ago (the status page).
    #[serde(default)]
    max_age_s: u64,
}

async fn agents(
    api: web::Data<ControllerApi>,
    query: web::Query<AgentsQuery>,
) -> Result<HttpResponse, ApiError> {
    let max_age = std::time::Duration::from_secs(query.max_age_s.min(60));
    Ok(HttpResponse::Ok().json(api.controller.agents(max_age).await))
}

async fn register(
    api: web::Data<ControllerApi>,
    body: web::Json<RegisterAgent>,
) -> Result<HttpResponse, ApiError> {
    let controller = &api.controller;
    match controller.register(body.into_inner()).await? {
        Registered::Done(view) => Ok(HttpResponse::Created().json(view)),
        Registered::Confirm(fingerprint) => Ok(HttpResponse::Conflict().json(ConfirmFingerprint {
            error: format!(
                "confirm the agent's certificate fingerprint {fingerprint} (compare it with what \
                 `dbhaul agent configure` printed on the agent) and register again with \
                 --fingerprint {fingerprint}"
            ),
            fingerprint,
        })),
    }
}

async fn join(
    api: web::Data<ControllerApi>,
    req: HttpRequest,
    body: web::Json<JoinRequest>,
) -> Result<HttpResponse, ApiError> {
    let peer = req.peer_addr().map(|a| a.ip());
    let view = api.controller.join(body.into_inner(), peer).await?;
    Ok(HttpResponse::Ok().json(view))
}

async fn remove_agent(
    api: web::Data<ControllerApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    api.controller.remove_agent(&path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn tasks(api: web::Data<ControllerApi>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(api.controller.list()))
}

async fn create(
    api: web::Data<ControllerApi>,
    body: web::Json<CreateTask>,
) -> Result<HttpResponse, ApiError> {
    let view = api.controller.create_task(body.into_inner()).await?;
    Ok(HttpResponse::Created().json(view))
}

async fn show(
    api: web::Data<ControllerApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(api.controller.show(&path.into_inner())?))
}

async fn delete(
    api: web::Data<ControllerApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    api.controller.delete(&path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn log(
    api: web::Data<ControllerApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let text = api.controller.task_log(&path.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(text))
}

async fn action(
    api: web::Data<ControllerApi>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let controller = &api.controller;
    let (name, action) = path.into_inner();
    match action.as_str() {
        "start" => Ok(HttpResponse::Ok().json(controller.start(&name).await?)),
        "stop" => Ok(HttpResponse::Ok().json(controller.stop(&name).await?)),
        "resume" => Ok(HttpResponse::Ok().json(controller.resume(&name).await?)),
        "test" => Ok(HttpResponse::Ok().json(controller.test(&name).await?)),
        other => Err(ApiError::not_found(format!(
            "no such action `{other}`: use start, stop, resume or test"
        ))),
    }
}

async fn set_log_level(
    api: web::Data<ControllerApi>,
    path: web::Path<String>,
    body: web::Json<SetLogLevel>,
) -> Result<HttpResponse, ApiError> {
    let controller = &api.controller;
    let view = controller
        .set_log_level(&path.into_inner(), body.into_inner().level)
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// The task and the state of its processing, as an XML file (`docs/export-format.md`).
async fn export(
    api: web::Data<ControllerApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let xml = api.controller.export(&name)?;
    Ok(HttpResponse::Ok()
        .content_type("application/xml; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{name}.xml\""),
        ))
        .body(xml))
}

async fn import(
    api: web::Data<ControllerApi>,
    body: web::Json<ImportTasks>,
) -> Result<HttpResponse, ApiError> {
    let controller = &api.controller;
    let ImportTasks {
        files,
        replace,
        rename,
    } = body.into_inner();
    let views = controller
        .import(files, ImportOptions { replace, rename })
        .await?;
    Ok(HttpResponse::Created().json(views))
}

async fn scrape(api: web::Data<ControllerApi>) -> Result<HttpResponse, ApiError> {
    let controller = &api.controller;
    Ok(HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render(controller.metrics())))
}
