//! The command line's side of the controller API (and a joining agent's): JSON over HTTPS
//! to `--controller URL` (default `https://127.0.0.1:8554`), with the admin token (a joining
//! agent: the join token) on every call. The controller's certificate is trusted as
//! [`Trust`] says: pinned by fingerprint, or checked against an operator's CA file or the
//! system's CAs. Plain `http://` is accepted for a loopback address only: a token must
//! never cross a network in clear.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{ErrorBody, JoinRequest};
use crate::telemetry::error_chain;

/// Where client commands find the controller unless told otherwise.
pub const DEFAULT_CONTROLLER: &str = "https://127.0.0.1:8554";

/// How a client trusts the controller's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Exactly the certificate with this SHA-256 fingerprint (the controller's own
    /// self-signed one: `--controller-fingerprint`, or read from its folder).
    Pin(String),
    /// Certificates signed by the CAs (or being one of the certificates) of this PEM file:
    /// an operator's certificate, `--controller-ca`.
    Roots(PathBuf),
    /// The system's certificate authorities.
    System,
}

/// What to add to "cannot reach" when the cause is the certificate.
const TRUST_HINT: &str = "the controller's certificate is not the one trusted here: give \
    --controller-fingerprint FP (DBHAUL_CONTROLLER_FINGERPRINT; `dbhaul controller status` on \
    the controller's machine prints it) or --controller-ca FILE for an operator's certificate";

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the controller at {url}: {message}; is `dbhaul controller serve` \
         running? (--controller URL or DBHAUL_CONTROLLER point elsewhere)"
    )]
    Unreachable { url: String, message: String },
    #[error("{message}")]
    Api {
        status: u16,
        message: String,
        body: serde_json::Value,
    },
}

impl ClientError {
    /// The controller answered no (as opposed to: it could not be asked).
    pub fn is_refusal(&self) -> bool {
        matches!(self, ClientError::Api { status, .. } if (400..500).contains(status))
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::Unreachable { .. } => None,
        }
    }
}

pub struct ControllerClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    /// The fingerprint the controller presented, when pinning.
    seen: Option<Arc<Mutex<Option<String>>>>,
}

/// Whether a URL's host is a loopback address or `localhost`.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl ControllerClient {
    pub fn new(url: &str, token: Option<String>, trust: Trust) -> Result<ControllerClient, String> {
        let base = url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base).map_err(|e| {
            format!("--controller {url} is not a URL ({e}); e.g. https://127.0.0.1:8554")
        })?;
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(600));
        let mut seen = None;
        let builder = match parsed.scheme() {
            "https" => {
                let config = match trust {
                    Trust::Pin(fingerprint) => {
                        let (config, saw) = super::tls::pinned_client_config_for(
                            super::tls::PinnedVerifier::for_peer(
                                Some(fingerprint),
                                "controller",
                                "by --controller-fingerprint or the controller's folder",
                            ),
                        );
                        seen = Some(saw);
                        config
                    }
                    Trust::Roots(file) => super::tls::trusting_client_config(&file)?,
                    Trust::System => super::tls::system_roots_client_config()?,
                };
                builder.tls_backend_preconfigured(config)
            }
            "http" if is_loopback(&parsed) => builder,
            "http" => {
                return Err(format!(
                    "--controller {url}: plain HTTP beyond loopback would send the admin token \
                     in clear; use https://{}",
                    &base["http://".len()..]
                ));
            }
            _ => {
                return Err(format!(
                    "--controller {url}: use an https:// URL, e.g. https://127.0.0.1:8554"
                ));
            }
        };
        super::crypto_provider();
        let http = builder
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {}", error_chain(&e)))?;
        Ok(ControllerClient {
            base,
            http,
            token,
            seen,
        })
    }

    /// The fingerprint of the certificate the controller presented, once it was asked.
    pub fn seen_fingerprint(&self) -> Option<String> {
        self.seen.as_ref()?.lock().ok()?.clone()
    }

    /// Send a request; the answer's text when it is a success, else the controller's error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<(u16, String), ClientError> {
        let unreachable = |e: reqwest::Error| {
            let mut message = error_chain(&e);
            if message.contains("certificate") {
                message = format!("{message}; {TRUST_HINT}");
            }
            ClientError::Unreachable {
                url: self.base.clone(),
                message,
            }
        };
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(unreachable)?;
        if (200..300).contains(&status) {
            return Ok((status, text));
        }
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("the controller answered HTTP {status}: {}", text.trim()));
        Err(ClientError::Api {
            status,
            message,
            body,
        })
    }

    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let (status, text) = self.send(method, path, body).await?;
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text).map_err(|e| ClientError::Api {
            status,
            message: format!("the controller's answer is not what this dbhaul expects: {e}"),
            body: serde_json::Value::Null,
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::GET, path, None::<&()>).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, ClientError> {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, ClientError> {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self.request(Method::DELETE, path, None::<&()>).await?;
        Ok(())
    }

    /// A text answer (a log).
    pub async fn text(&self, path: &str) -> Result<String, ClientError> {
        Ok(self.send(Method::GET, path, None::<&()>).await?.1)
    }

    pub async fn join(&self, request: &JoinRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/agents/join", request).await?;
        Ok(())
    }
}
