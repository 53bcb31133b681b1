//! The daemons' HTTP servers: the agent's HTTPS server ([`agent_server`]) and the
//! controller's ([`controller_server`]) behind its front door ([`controller_gate`]: host,
//! origin, token, before any body), the status pages, and each daemon's start-up
//! ([`agent_serve`], [`controller_serve`]: folder, store, TLS, actors, the server). What
//! crosses the network and the clients that send it are in `remote`, below the daemons'
//! logic, re-exported here.
//!
//! Errors become a JSON body `{"error": "..."}` with a status that says whose fault it is:
//! 400 a malformed request, 401 no or a bad login, 404 an unknown name, 409 a conflict with
//! the current state, 502 an agent that could not be reached.

pub mod agent_serve;
pub mod agent_server;
pub mod controller_gate;
pub mod controller_serve;
pub mod controller_server;
pub mod pages;

pub use crate::remote::{
    ApiError, agent_client, controller_client, crypto_provider, throttle, tls, wire,
};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// Largest request body either daemon accepts: a task definition with its job file and
/// hundreds of subtasks fits many times over; anything larger is refused with 413.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Why a daemon could not start or stopped: its folder, settings or address (exit 2), or
/// the system (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Configuration(String),
    #[error("{0}")]
    Runtime(String),
}

impl From<crate::agent::supervisor::SupervisorError> for ApiError {
    fn from(e: crate::agent::supervisor::SupervisorError) -> ApiError {
        use crate::agent::supervisor::SupervisorError as E;
        let status = match &e {
            E::NotFound(_) => 404,
            E::Invalid(_) => 400,
            E::Conflict(_) => 409,
            E::Store(_) => 500,
        };
        ApiError::new(status, e.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(wire::ErrorBody {
            error: self.message.clone(),
        })
    }
}

/// JSON bodies that cannot be read get a 400 that says what is wrong with them, in the same
/// `{"error": ...}` shape as every other error.
pub fn json_config() -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(|err, _| {
            let message = match &err {
                actix_web::error::JsonPayloadError::OverflowKnownLength { length, limit } => {
                    format!("request body of {length} bytes is larger than the limit of {limit}")
                }
                actix_web::error::JsonPayloadError::Overflow { limit } => {
                    format!("request body is larger than the limit of {limit} bytes")
                }
                actix_web::error::JsonPayloadError::ContentType => {
                    "send the request body as JSON with Content-Type: application/json".into()
                }
                other => format!("malformed JSON request: {other}"),
            };
            let status = match &err {
                actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
                | actix_web::error::JsonPayloadError::Overflow { .. } => 413,
                _ => 400,
            };
            ApiError::new(status, message).into()
        })
}
