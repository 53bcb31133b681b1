//! The command line's side of the controller API (and a joining agent's): JSON over HTTP to
//! `--controller URL` (default `http://127.0.0.1:8554`), with the admin token when the
//! controller listens beyond loopback.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{ErrorBody, JoinRequest};
use crate::telemetry::error_chain;

/// Where client commands find the controller unless told otherwise.
pub const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:8554";

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
}

impl ControllerClient {
    pub fn new(url: &str, token: Option<String>) -> Result<ControllerClient, String> {
        let base = url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base).map_err(|e| {
            format!("--controller {url} is not a URL ({e}); e.g. http://127.0.0.1:8554")
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "--controller {url}: use an http:// or https:// URL, e.g. http://127.0.0.1:8554"
            ));
        }
        super::crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {}", error_chain(&e)))?;
        Ok(ControllerClient { base, http, token })
    }

    /// Send a request; the answer's text when it is a success, else the controller's error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<(u16, String), ClientError> {
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            url: self.base.clone(),
            message: error_chain(&e),
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
