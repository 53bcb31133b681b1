//! `dbhaul controller serve`: open the controller's folder and store, serve the HTTP API
//! (loopback by default; bound elsewhere, every request needs the admin token), and poll
//! the agents. Two tokens live in the folder, each 0600:
//!
//! - `admin.token`: what client commands send when the controller is not on loopback
//!   (`--token` or `DBHAUL_TOKEN`);
//! - `join.token`: what `dbhaul agent serve --controller URL --join-token T` sends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};

use super::Controller;
use crate::agent::config::random_token;
use crate::api::ServeError;
use crate::api::controller_server::{self, ControllerApi};
use crate::config::files;

/// Read a token file, or make one.
pub fn token_file(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_string()),
        Ok(_) | Err(_) => {
            let token = random_token();
            files::write_private(path, format!("{token}\n").as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(token)
        }
    }
}

pub fn run(dir: PathBuf, listen: &str, poll: Duration) -> Result<(), ServeError> {
    let address: SocketAddr = listen.parse().map_err(|_| {
        ServeError::Configuration(format!(
            "--listen {listen} is not an address with a port, e.g. 127.0.0.1:8554"
        ))
    })?;
    files::private_dir(&dir).map_err(|e| {
        ServeError::Configuration(format!(
            "cannot use {} as the controller's folder: {e}; give another with --dir",
            dir.display()
        ))
    })?;
    crate::telemetry::task_log::open(&dir.join("logs"))
        .map_err(|e| ServeError::Configuration(format!("cannot make the log folder: {e}")))?;
    let admin = token_file(&dir.join("admin.token")).map_err(ServeError::Configuration)?;
    let join = token_file(&dir.join("join.token")).map_err(ServeError::Configuration)?;
    let controller = Arc::new(Controller::open(&dir, join).map_err(ServeError::Configuration)?);
    let admin = (!address.ip().is_loopback()).then_some(admin);
    let system = actix::System::new();
    let served = system.block_on(async move {
        let api = web::Data::new(ControllerApi {
            controller: controller.clone(),
            admin_token: admin.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(api.clone())
                .app_data(crate::api::json_config())
                .configure(controller_server::routes)
        })
        .workers(2)
        .bind(address)
        .map_err(|e| {
            ServeError::Configuration(format!(
                "cannot listen on {address}: {e}; is another controller running? (--listen \
                 chooses another address)"
            ))
        })?
        .run();
        eprintln!(
            "dbhaul controller listening on http://{address} ({}; folder {})",
            if admin.is_some() {
                "requests need the admin token in admin.token"
            } else {
                "loopback only"
            },
            dir.display()
        );
        actix_web::rt::spawn(async move { controller.poll_forever(poll).await });
        server
            .await
            .map_err(|e| ServeError::Runtime(format!("the controller's server stopped: {e}")))
    });
    crate::telemetry::task_log::flush();
    served
}
