//! `dbhaul controller serve`: open the controller's folder and store, serve the API and the
//! status page over HTTPS (loopback by default), and poll the agents. The folder (0700)
//! holds, each 0600:
//!
//! - `admin.token`: what every client call sends, loopback included. The command line run
//!   by the folder's owner or root reads it by itself; anyone else is given it
//!   (`--token`/`DBHAUL_TOKEN`);
//! - `join.token`: what `dbhaul agent serve --controller URL --join-token T` sends;
//! - `controller.crt` and `controller.key`: the self-signed certificate made at first
//!   start, whose SHA-256 fingerprint clients pin (printed at start and by `dbhaul
//!   controller status`), unless `--tls-cert`/`--tls-key` give an operator's certificate.
//!
//! Always HTTPS, loopback included, so that one rule holds everywhere: a token or a
//! password never crosses a socket in clear. `--plain-http` exists for loopback only (an
//! SSH tunnel's far end, a browser that must not see a self-signed certificate); beyond
//! loopback it is refused at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, HttpServer, web};

use crate::api::ServeError;
use crate::api::controller_gate::Gate;
use crate::api::controller_server::{self, ControllerApi};
use crate::config::files;
use crate::config::random_token;
use crate::controller::Controller;

/// The certificate file in the controller's folder, which local clients pin.
pub const CERT_FILE: &str = "controller.crt";
/// Its key, beside it.
pub const KEY_FILE: &str = "controller.key";
/// The admin token's file in the controller's folder.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// How the controller is reached, from `dbhaul controller serve`'s flags.
#[derive(Debug, Clone, Default)]
pub struct Listening {
    /// Host names clients use besides its addresses (accepted as `Host`, put into the
    /// self-signed certificate).
    pub names: Vec<String>,
    /// An operator's certificate and key instead of the self-signed pair.
    pub certificate: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP, loopback only.
    pub plain: bool,
}

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

pub fn run(
    dir: PathBuf,
    listen: &str,
    poll: Duration,
    listening: Listening,
) -> Result<(), ServeError> {
    let address: SocketAddr = listen.parse().map_err(|_| {
        ServeError::Configuration(format!(
            "--listen {listen} is not an address with a port, e.g. 127.0.0.1:8554"
        ))
    })?;
    if listening.plain && !address.ip().is_loopback() {
        return Err(ServeError::Configuration(format!(
            "--plain-http is for loopback only: on {address} the admin token and the agents' \
             passwords would cross the network in clear. Leave --plain-http out (the controller \
             then serves HTTPS with its certificate), or listen on 127.0.0.1"
        )));
    }
    files::private_dir(&dir).map_err(|e| {
        ServeError::Configuration(format!(
            "cannot use {} as the controller's folder: {e}; give another with --dir",
            dir.display()
        ))
    })?;
    crate::telemetry::task_log::open(&dir.join("logs"))
        .map_err(|e| ServeError::Configuration(format!("cannot make the log folder: {e}")))?;
    let admin = token_file(&dir.join(ADMIN_TOKEN_FILE)).map_err(ServeError::Configuration)?;
    let join = token_file(&dir.join("join.token")).map_err(ServeError::Configuration)?;
    let tls = if listening.plain {
        None
    } else {
        Some(certificate(&dir, address, &listening).map_err(ServeError::Configuration)?)
    };
    let mut names: Vec<String> = listening
        .names
        .iter()
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    names.push(crate::config::hostname().to_ascii_lowercase());
    let gate = Gate {
        admin_token: admin,
        join_token: join.clone(),
        names,
        scheme: if tls.is_some() { "https" } else { "http" },
    };
    let controller = Arc::new(Controller::open(&dir, join).map_err(ServeError::Configuration)?);
    let system = actix::System::new();
    let served = system.block_on(async move {
        let api = web::Data::new(ControllerApi {
            controller: controller.clone(),
        });
        let gate = Arc::new(gate);
        let server = HttpServer::new(move || {
            let gate = gate.clone();
            App::new()
                .app_data(api.clone())
                .app_data(crate::api::json_config())
                .configure(controller_server::routes)
                // Before any handler and any extractor: a refused request's body is never read.
                .wrap_fn(move |req, service| {
                    let refused = gate.check(req.method(), req.path(), req.headers()).err();
                    let call = match refused {
                        Some(error) => Err(req.error_response(error)),
                        None => Ok(service.call(req)),
                    };
                    async move {
                        match call {
                            Err(refused) => Ok(refused.map_into_right_body()),
                            Ok(call) => call.await.map(ServiceResponse::map_into_left_body),
                        }
                    }
                })
        })
        .workers(2);
        let bound = match &tls {
            Some((config, _)) => server.bind_rustls_0_23(address, config.clone()),
            None => server.bind(address),
        };
        let server = bound
            .map_err(|e| {
                ServeError::Configuration(format!(
                    "cannot listen on {address}: {e}; is another controller running? (--listen \
                     chooses another address)"
                ))
            })?
            .run();
        match &tls {
            Some((_, fingerprint)) => eprintln!(
                "dbhaul controller listening on https://{address} (certificate fingerprint \
                 {fingerprint}; every call needs the admin token in {}; folder {})",
                dir.join(ADMIN_TOKEN_FILE).display(),
                dir.display()
            ),
            None => eprintln!(
                "dbhaul controller listening on http://{address} (plain HTTP, loopback only; \
                 every call needs the admin token in {}; folder {})",
                dir.join(ADMIN_TOKEN_FILE).display(),
                dir.display()
            ),
        }
        actix_web::rt::spawn(async move { controller.poll_forever(poll).await });
        server
            .await
            .map_err(|e| ServeError::Runtime(format!("the controller's server stopped: {e}")))
    });
    crate::telemetry::task_log::flush();
    served
}

/// The TLS configuration and the certificate's fingerprint: the operator's pair, or the
/// folder's self-signed pair, made at first start.
fn certificate(
    dir: &Path,
    address: SocketAddr,
    listening: &Listening,
) -> Result<(rustls::ServerConfig, String), String> {
    let (cert, key) = match &listening.certificate {
        Some((cert, key)) => (cert.clone(), key.clone()),
        None => {
            let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
            let mut hosts = listening.names.clone();
            hosts.push(crate::config::hostname());
            if !address.ip().is_unspecified() {
                hosts.push(address.ip().to_string());
            }
            crate::api::tls::ensure_self_signed(&cert, &key, &hosts).map_err(|e| {
                format!("{e}; the controller makes its certificate in its folder at first start")
            })?;
            (cert, key)
        }
    };
    let fingerprint = crate::api::tls::fingerprint_of_pem(&cert)?;
    let config = crate::api::tls::server_config(&cert, &key)?;
    Ok((config, fingerprint))
}
