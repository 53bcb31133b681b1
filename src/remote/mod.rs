//! What crosses the network between the command line, the controller and the agents, and
//! the HTTPS clients that send it: the wire types ([`wire`]), the agent's and the
//! controller's clients ([`agent_client`], [`controller_client`]) with certificate pinning
//! ([`tls`]), the per-address login throttle ([`throttle`]), and the API's error
//! ([`ApiError`]). No server: `api` serves, on top of the agent and the controller, which
//! use this module to talk to one another.

pub mod agent_client;
pub mod controller_client;
pub mod throttle;
pub mod tls;
pub mod wire;

/// An API error: a status and a message that names the cause and the fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }

    pub fn bad_gateway(message: impl Into<String>) -> ApiError {
        ApiError::new(502, message)
    }
}

/// The rustls crypto provider of the whole process (aws-lc-rs), installed once.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}
