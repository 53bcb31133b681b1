//! `dbhaul agent serve`: read the agent's folder, open its store, start its supervisor (which
//! resumes unfinished subtasks at once) and serve the HTTPS API. With `--controller`, the
//! agent also registers itself there, retrying until the controller answers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use actix_web::{App, HttpServer, web};

use super::config::{AgentConfig, AgentPaths, hash_password, random_token};
use super::supervisor::AgentSupervisor;
use crate::api::ServeError;
use crate::api::agent_server::{self, AgentApi};
use crate::api::controller_client::ControllerClient;
use crate::api::wire::JoinRequest;
use crate::store::Store;

/// Where to join a controller, for fleets brought up by automation.
#[derive(Debug, Clone)]
pub struct Join {
    pub controller: String,
    pub token: String,
    pub description: String,
    /// How the controller's certificate is trusted.
    pub trust: crate::api::controller_client::Trust,
}

/// Serve the agent in `dir`; login sessions last `session`.
pub fn run(dir: PathBuf, join: Option<Join>, session: Duration) -> Result<(), ServeError> {
    let paths = AgentPaths::new(dir);
    let config = AgentConfig::load(&paths).map_err(ServeError::Configuration)?;
    let tls = crate::api::tls::server_config(&paths.cert(), &paths.key())
        .map_err(ServeError::Configuration)?;
    let fingerprint =
        crate::api::tls::fingerprint_of_pem(&paths.cert()).map_err(ServeError::Configuration)?;
    let store = Arc::new(
        Store::open(&paths.store()).map_err(|e| ServeError::Configuration(e.to_string()))?,
    );
    crate::telemetry::task_log::open(&paths.logs()).map_err(|e| {
        ServeError::Configuration(format!(
            "cannot make the log folder {}: {e}",
            paths.logs().display()
        ))
    })?;
    let system = actix::System::new();
    let served = system.block_on(async move {
        // Actors start outside the server factory, which runs once per worker.
        let supervisor =
            AgentSupervisor::new(store, paths.clone(), config.parallel as usize).start();
        let api = web::Data::new(AgentApi::new(
            supervisor,
            config.clone(),
            paths.clone(),
            fingerprint.clone(),
            session,
        ));
        let server_api = api.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(server_api.clone())
                .app_data(crate::api::json_config())
                .configure(agent_server::routes)
        })
        .workers(2)
        .bind_rustls_0_23((config.listen.as_str(), config.port), tls)
        .map_err(|e| {
            ServeError::Configuration(format!(
                "cannot listen on {}:{}: {e}; is another agent running on this port? \
                 (`dbhaul agent configure --port N` changes it)",
                config.listen, config.port
            ))
        })?
        .run();
        eprintln!(
            "dbhaul agent {} listening on https://{}:{} (certificate fingerprint {fingerprint}, \
             {} subtasks at once)",
            config.name, config.listen, config.port, config.parallel
        );
        if let Some(join) = join {
            actix_web::rt::spawn(join_controller(
                join,
                api,
                config.clone(),
                paths,
                fingerprint,
            ));
        }
        server
            .await
            .map_err(|e| ServeError::Runtime(format!("the agent's server stopped: {e}")))
    });
    crate::telemetry::task_log::flush();
    served
}

/// Register at a controller with a credential made for it; retry until it answers.
async fn join_controller(
    join: Join,
    api: web::Data<AgentApi>,
    mut config: AgentConfig,
    paths: AgentPaths,
    fingerprint: String,
) {
    let secret = random_token();
    let hashed = {
        let secret = secret.clone();
        crate::agent::blocking(move || hash_password(&secret)).await
    };
    match hashed {
        Ok(Ok(hash)) => {
            config.join_secret_hash = Some(hash);
            if let Err(e) = config.save(&paths) {
                tracing::error!("cannot join the controller: {e}");
                return;
            }
            *api.config.lock().expect("config lock") = config.clone();
        }
        Ok(Err(e)) | Err(e) => {
            tracing::error!("cannot join the controller: {e}");
            return;
        }
    }
    let request = JoinRequest {
        join_token: join.token,
        name: config.name.clone(),
        description: join.description,
        host: config.host.clone(),
        port: config.port,
        fingerprint,
        secret,
    };
    // The join token goes as the bearer too: the controller checks it before reading a body.
    let client = match ControllerClient::new(
        &join.controller,
        Some(request.join_token.clone()),
        join.trust.clone(),
    ) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("cannot join the controller: {e}");
            return;
        }
    };
    let mut wait = Duration::from_secs(1);
    loop {
        match client.join(&request).await {
            Ok(()) => {
                eprintln!(
                    "dbhaul agent {} joined the controller at {}",
                    config.name, join.controller
                );
                return;
            }
            Err(e) if e.is_refusal() => {
                eprintln!("dbhaul: error: the controller refused to register this agent: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!(
                    "cannot reach the controller at {} yet: {e}",
                    join.controller
                );
            }
        }
        actix_web::rt::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}
