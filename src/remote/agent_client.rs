//! The controller's side of the agent API: one [`AgentClient`] per agent and operation,
//! over TLS that accepts the agent's pinned certificate and no other. Session tokens are
//! cached per agent; a 401 (the token expired, the agent restarted) logs in again once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;

use crate::telemetry::error_chain;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{
    Assign, ErrorBody, Health, LoginRequest, LoginResponse, PlanRequest, PlanResponse, SetLogLevel,
    SubtaskSelection, SubtaskStatus, TaskDefinition, TestReport,
};
use crate::model::LogLevel;

/// Session tokens by agent name, shared by every client of one controller.
pub type TokenCache = Arc<Mutex<HashMap<String, String>>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    /// No answer: the agent is down, or the network is.
    #[error("agent {agent} at {address} cannot be reached: {message}")]
    Unreachable {
        agent: String,
        address: String,
        message: String,
    },
    /// The agent's certificate is not the pinned one.
    #[error("agent {agent} at {address}: {message}")]
    Certificate {
        agent: String,
        address: String,
        message: String,
    },
    /// The agent answered with an error.
    #[error("agent {agent}: {message}")]
    Refused {
        agent: String,
        status: u16,
        message: String,
    },
}

impl AgentError {
    pub fn status(&self) -> Option<u16> {
        match self {
            AgentError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub struct AgentClient {
    pub name: String,
    pub address: String,
    http: reqwest::Client,
    password: String,
    tokens: TokenCache,
    seen: Arc<Mutex<Option<String>>>,
    /// The id of the controller this client logs in for (see `agent_server`: an agent
    /// belongs to one controller).
    controller: Option<String>,
}

impl AgentClient {
    /// A client that accepts only `fingerprint` (or, with `None`, records what it sees).
    pub fn new(
        name: &str,
        host: &str,
        port: u16,
        fingerprint: Option<String>,
        password: &str,
        tokens: TokenCache,
    ) -> AgentClient {
        let (config, seen) = super::tls::pinned_client_config(fingerprint);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()
            .expect("an HTTP client with a preconfigured TLS backend");
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        AgentClient {
            name: name.to_string(),
            address: format!("{host}:{port}"),
            http,
            password: password.to_string(),
            tokens,
            seen,
            controller: None,
        }
    }

    /// Log in as the controller with id `id`.
    pub fn for_controller(mut self, id: &str) -> AgentClient {
        self.controller = Some(id.to_string());
        self
    }

    /// The fingerprint of the certificate the agent presented on the last connection.
    pub fn seen_fingerprint(&self) -> Option<String> {
        self.seen.lock().ok().and_then(|s| s.clone())
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.address)
    }

    fn transport_error(&self, e: reqwest::Error) -> AgentError {
        let message = error_chain(&e);
        if message.contains("certificate changed") {
            let detail = message
                .split("the agent's certificate changed")
                .nth(1)
                .map(|rest| {
                    format!(
                        "the agent's certificate changed{}",
                        rest.split(')').next().unwrap_or(rest)
                    )
                })
                .unwrap_or(message.clone());
            AgentError::Certificate {
                agent: self.name.clone(),
                address: self.address.clone(),
                message: format!(
                    "{detail}; if the agent was configured again with a new certificate, \
                     remove it (`dbhaul agents remove {}`) and register it again after \
                     checking the new fingerprint",
                    self.name
                ),
            }
        } else {
            AgentError::Unreachable {
                agent: self.name.clone(),
                address: self.address.clone(),
                message,
            }
        }
    }

    async fn refused(&self, response: reqwest::Response) -> AgentError {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status}: {}", text.trim()));
        AgentError::Refused {
            agent: self.name.clone(),
            status,
            message,
        }
    }

    pub async fn health(&self) -> Result<Health, AgentError> {
        let response = self
            .http
            .get(self.url("/v1/health"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if !response.status().is_success() {
            return Err(self.refused(response).await);
        }
        response.json().await.map_err(|e| self.transport_error(e))
    }

    /// Exchange the password for a session token.
    pub async fn login(&self) -> Result<String, AgentError> {
        let response = self
            .http
            .post(self.url("/v1/login"))
            .json(&LoginRequest {
                password: self.password.clone(),
                controller: self.controller.clone(),
            })
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if !response.status().is_success() {
            return Err(self.refused(response).await);
        }
        let login: LoginResponse = response.json().await.map_err(|e| self.transport_error(e))?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(self.name.clone(), login.token.clone());
        }
        Ok(login.token)
    }

    /// The cached session token, or a new one.
    async fn token(&self) -> Result<String, AgentError> {
        let cached = self
            .tokens
            .lock()
            .ok()
            .and_then(|t| t.get(&self.name).cloned());
        match cached {
            Some(token) => Ok(token),
            None => self.login().await,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, AgentError> {
        let mut token = self.token().await?;
        for attempt in 0..2 {
            let mut request = self
                .http
                .request(method.clone(), self.url(path))
                .bearer_auth(&token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| self.transport_error(e))?;
            if response.status().as_u16() == 401 && attempt == 0 {
                token = self.login().await?;
                continue;
            }
            if !response.status().is_success() {
                return Err(self.refused(response).await);
            }
            if response.status().as_u16() == 204 {
                return serde_json::from_str("null").map_err(|e| AgentError::Refused {
                    agent: self.name.clone(),
                    status: 204,
                    message: e.to_string(),
                });
            }
            return response.json().await.map_err(|e| self.transport_error(e));
        }
        unreachable!("the second attempt returns")
    }

    pub async fn plan(&self, task: &TaskDefinition) -> Result<PlanResponse, AgentError> {
        let body = PlanRequest { task: task.clone() };
        self.call(Method::POST, "/v1/plan", Some(&body)).await
    }

    pub async fn test(&self, task: &TaskDefinition) -> Result<TestReport, AgentError> {
        let body = PlanRequest { task: task.clone() };
        self.call(Method::POST, "/v1/test", Some(&body)).await
    }

    pub async fn take(&self, assign: &Assign) -> Result<Vec<SubtaskStatus>, AgentError> {
        self.call(Method::POST, "/v1/subtasks", Some(assign)).await
    }

    pub async fn control(
        &self,
        task: &str,
        action: &str,
        selection: &SubtaskSelection,
    ) -> Result<Vec<SubtaskStatus>, AgentError> {
        self.call(
            Method::POST,
            &format!("/v1/tasks/{task}/{action}"),
            Some(selection),
        )
        .await
    }

    pub async fn subtasks(&self, task: &str) -> Result<Vec<SubtaskStatus>, AgentError> {
        self.call(
            Method::GET,
            &format!("/v1/tasks/{task}/subtasks"),
            None::<&()>,
        )
        .await
    }

    pub async fn log(&self, task: &str) -> Result<String, AgentError> {
        let token = self.token().await?;
        let response = self
            .http
            .get(self.url(&format!("/v1/tasks/{task}/log")))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if !response.status().is_success() {
            return Err(self.refused(response).await);
        }
        response.text().await.map_err(|e| self.transport_error(e))
    }

    pub async fn set_log_level(&self, task: &str, level: LogLevel) -> Result<(), AgentError> {
        let _: Option<()> = self
            .call(
                Method::PUT,
                &format!("/v1/tasks/{task}/log-level"),
                Some(&SetLogLevel { level }),
            )
            .await?;
        Ok(())
    }

    /// Let the agent go: it no longer belongs to this controller.
    pub async fn release(&self) -> Result<(), AgentError> {
        let _: Option<()> = self.call(Method::POST, "/v1/release", None::<&()>).await?;
        Ok(())
    }

    pub async fn forget(&self, task: &str) -> Result<(), AgentError> {
        let _: Option<()> = self
            .call(Method::DELETE, &format!("/v1/tasks/{task}"), None::<&()>)
            .await?;
        Ok(())
    }
}
