//! `dbhaul agent serve`: read the agent's folder, open its store, start its supervisor (which
//! resumes unfinished subtasks at once) and serve the HTTPS API. With `--controller`, the
//! agent also registers itself there, retrying until the controller answers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use actix_web::{App, HttpServer, web};

use crate::agent::config::{AgentConfig, AgentPaths, hash_password};
use crate::agent::supervisor::AgentSupervisor;
use crate::api::ServeError;
use crate::api::agent_server::{self, AgentApi};
use crate::api::controller_client::ControllerClient;
use crate::api::wire::JoinRequest;
use crate::config::random_token;
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
        let drivers = Arc::new(std::sync::RwLock::new(config.driver_policy()));
        let supervisor = AgentSupervisor::new(
            store,
            paths.clone(),
            config.parallel as usize,
            drivers.clone(),
        )
        .start();
        let api = web::Data::new(AgentApi::new(
            supervisor,
            config.clone(),
            paths.clone(),
            fingerprint.clone(),
            session,
            drivers,
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
            actix_web::rt::spawn(join_controller(join, api, config.clone(), fingerprint));
        }
        server
            .await
            .map_err(|e| ServeError::Runtime(format!("the agent's server stopped: {e}")))
    });
    crate::telemetry::task_log::flush();
    served
}

/// Register at a controller with a credential made for it; retry until it answers. An
/// agent that joined before and belongs to a controller does not join again: the controller
/// refuses a join under a registered name (so nobody who learns the join token can take an
/// agent's place), and it keeps the credential of the first join.
async fn join_controller(
    join: Join,
    api: web::Data<AgentApi>,
    config: AgentConfig,
    fingerprint: String,
) {
    if let (Some(owner), Some(_)) = (&config.controller_id, &config.join_secret_hash) {
        eprintln!(
            "dbhaul agent {} joined a controller before and belongs to it (id {owner}); it does \
             not join again. To join anew: `dbhaul agents remove {}` on that controller, or \
             `dbhaul agent release --dir {}` here",
            config.name,
            config.name,
            api.paths.root.display()
        );
        return;
    }
    let secret = random_token();
    let hashed = {
        let secret = secret.clone();
        crate::agent::blocking(move || hash_password(&secret)).await
    };
    let hash = match hashed {
        Ok(Ok(hash)) => hash,
        Ok(Err(e)) | Err(e) => {
            tracing::error!("cannot join the controller: {e}");
            return;
        }
    };
    // Accepted while the controller logs in to prove the join; kept only if it succeeds.
    api.set_joining(Some(hash.clone()));
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
            api.set_joining(None);
            tracing::error!("cannot join the controller: {e}");
            return;
        }
    };
    let mut wait = Duration::from_secs(1);
    loop {
        match client.join(&request).await {
            Ok(()) => {
                let kept = api.update_config(|config| {
                    config.join_secret_hash = Some(hash.clone());
                    Ok(())
                });
                api.set_joining(None);
                match kept {
                    Ok(()) => eprintln!(
                        "dbhaul agent {} joined the controller at {}",
                        config.name, join.controller
                    ),
                    Err(e) => tracing::error!(
                        "joined the controller at {} but cannot keep the credential: {e}",
                        join.controller
                    ),
                }
                return;
            }
            Err(e) if e.is_refusal() => {
                api.set_joining(None);
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
