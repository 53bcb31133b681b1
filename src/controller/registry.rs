//! Registering agents: the controller connects over TLS, shows the certificate's
//! fingerprint for the user to confirm (or checks the one given), pins it, and logs in once
//! to prove the password. Agents brought up by automation join by themselves with the
//! controller's join token.

use std::sync::Arc;
use std::time::Duration;

use super::Controller;
use crate::net::tls::parse_fingerprint;
use crate::remote::ApiError;
use crate::remote::agent_client::{AgentClient, AgentError};
use crate::remote::wire::{AgentView, JoinRequest, RegisterAgent};
use crate::store::schema::{AgentRecord, CONTROLLER_AGENTS};

/// How a registration ended.
pub enum Registered {
    Done(AgentView),
    /// No fingerprint was given: this is the one the agent presents; confirm it.
    Confirm(String),
}

fn check_name(name: &str) -> Result<(), ApiError> {
    crate::model::TaskName::parse(name)
        .map(|_| ())
        .map_err(|m| ApiError::bad_request(format!("agent {}", m.replace("task name ", "name "))))
}

fn reach_error(e: AgentError) -> ApiError {
    match e {
        AgentError::Unreachable {
            address, message, ..
        } => ApiError::bad_gateway(format!(
            "cannot reach an agent at {address}: {message}; is `dbhaul agent serve` running \
             there and the port open? Nothing was registered"
        )),
        AgentError::Certificate { message, .. } => {
            ApiError::conflict(format!("{message}; nothing was registered"))
        }
        AgentError::Refused {
            status: 401,
            message,
            ..
        } => ApiError::unauthorized(format!("{message}; nothing was registered")),
        AgentError::Refused {
            status: 409,
            message,
            ..
        } => ApiError::conflict(format!("{message}; nothing was registered")),
        AgentError::Refused { message, .. } => {
            ApiError::bad_gateway(format!("{message}; nothing was registered"))
        }
    }
}

impl Controller {
    pub async fn register(&self, request: RegisterAgent) -> Result<Registered, ApiError> {
        check_name(&request.name)?;
        if request.host.trim().is_empty() {
            return Err(ApiError::bad_request(
                "--host is empty: give the agent's host name or address",
            ));
        }
        if request.port == 0 {
            return Err(ApiError::bad_request(
                "--port 0: give the agent's port (3554 by default)",
            ));
        }
        if request.roles.is_empty() {
            return Err(ApiError::bad_request(
                "--roles is empty: give one or more of extract, upload, copy (all three by \
                 default)",
            ));
        }
        if self.lock().agents.contains_key(&request.name) {
            return Err(ApiError::conflict(format!(
                "an agent named {} is registered; remove it first (`dbhaul agents remove {}`) \
                 or choose another name",
                request.name, request.name
            )));
        }
        let given = request
            .fingerprint
            .as_deref()
            .map(parse_fingerprint)
            .transpose()
            .map_err(ApiError::bad_request)?;
        let probe = AgentClient::new(
            &request.name,
            &request.host,
            request.port,
            None,
            "",
            Default::default(),
        );
        probe.health().await.map_err(reach_error)?;
        let seen = probe
            .seen_fingerprint()
            .ok_or_else(|| ApiError::bad_gateway("the agent presented no certificate"))?;
        let Some(given) = given else {
            return Ok(Registered::Confirm(seen));
        };
        if given != seen {
            return Err(ApiError::conflict(format!(
                "the agent at {}:{} presents a certificate with fingerprint {seen}, not {given}; \
                 check that you reach the right machine (`dbhaul agent status` there prints its \
                 fingerprint). Nothing was registered",
                request.host, request.port
            )));
        }
        let record = AgentRecord {
            name: request.name.clone(),
            description: request.description.clone(),
            host: request.host.trim().to_string(),
            port: request.port,
            fingerprint: seen,
            password: request.password.clone(),
            registered_at: now(),
            roles: {
                let mut roles = request.roles.clone();
                roles.sort_unstable();
                roles.dedup();
                roles
            },
        };
        let view = self.admit(record).await?;
        tracing::info!(agent = %view.name, "agent registered");
        Ok(Registered::Done(view))
    }

    /// Log in to a new agent with its pinned certificate (whoever answers must hold the
    /// certificate's key, and know the password), then keep it.
    async fn admit(&self, record: AgentRecord) -> Result<AgentView, ApiError> {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(&record.name);
        }
        let client = self.client(&record);
        client.login().await.map_err(reach_error)?;
        let health = client.health().await.map_err(reach_error)?;
        self.store
            .put(CONTROLLER_AGENTS, &record.name, &record)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        self.lock()
            .agents
            .insert(record.name.clone(), record.clone());
        Ok(view(&record, Ok(health)))
    }

    /// An agent registers itself with the join token. A source address that offered a
    /// few wrong tokens is refused (429) for a doubling delay before its token is checked.
    pub async fn join(
        &self,
        request: JoinRequest,
        peer: Option<std::net::IpAddr>,
    ) -> Result<AgentView, ApiError> {
        let peer = peer.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        if let Err(wait) = self.join_failures.check(peer, std::time::Instant::now()) {
            return Err(ApiError::new(
                429,
                format!(
                    "too many wrong join tokens from {peer}; try again in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        if !crate::config::constant_time_eq(
            request.join_token.as_bytes(),
            self.join_token.as_bytes(),
        ) {
            self.join_failures.failed(peer, std::time::Instant::now());
            tracing::warn!(agent = %request.name, %peer, "an agent offered a wrong join token");
            return Err(ApiError::unauthorized(
                "wrong join token; it is in the controller's folder (join.token)",
            ));
        }
        check_name(&request.name)?;
        let fingerprint = parse_fingerprint(&request.fingerprint).map_err(ApiError::bad_request)?;
        // A join never replaces a registered agent, its address, its pinned certificate or
        // its credential: whoever holds the join token is not thereby that agent. An agent
        // that joined keeps its credential and does not join again.
        if self.lock().agents.contains_key(&request.name) {
            tracing::warn!(agent = %request.name, "a join under a registered name was refused");
            return Err(ApiError::conflict(format!(
                "an agent named {name} is registered; a join does not replace it. If this is \
                 that agent moved or configured anew, remove it first (`dbhaul agents remove \
                 {name}`); otherwise give this agent another name (`dbhaul agent configure \
                 --name`)",
                name = request.name
            )));
        }
        let record = AgentRecord {
            name: request.name.clone(),
            description: request.description.clone(),
            host: request.host.clone(),
            port: request.port,
            fingerprint,
            password: request.secret.clone(),
            registered_at: now(),
            roles: crate::model::Role::all(),
        };
        let view = self.admit(record).await?;
        tracing::info!(agent = %view.name, "agent joined");
        Ok(view)
    }

    /// Every registered agent with its health. `max_age` zero (the CLI): each is asked
    /// now. Otherwise (the status page, every few seconds): the last answer is returned at
    /// once, and one older than `max_age` is asked again in the background, one request
    /// per agent at a time, so a page never waits on a hundred agents.
    pub async fn agents(self: &Arc<Self>, max_age: Duration) -> Vec<AgentView> {
        let agents: Vec<AgentRecord> = self.lock().agents.values().cloned().collect();
        let checks = agents.iter().map(|agent| async move {
            if !max_age.is_zero() {
                let mut state = self.lock();
                let cached = state
                    .health
                    .get(&agent.name)
                    .map(|checked| (checked.result.clone(), checked.at.elapsed() >= max_age));
                if let Some((health, stale)) = cached {
                    if stale && state.refreshing.insert(agent.name.clone()) {
                        let (controller, agent) = (self.clone(), agent.clone());
                        actix_web::rt::spawn(async move {
                            let health = controller
                                .client(&agent)
                                .health()
                                .await
                                .map_err(|e| e.to_string());
                            controller.record_health(&agent.name, health);
                            controller.lock().refreshing.remove(&agent.name);
                        });
                    }
                    return view(agent, health);
                }
            }
            let health = self.client(agent).health().await.map_err(|e| e.to_string());
            self.record_health(&agent.name, health.clone());
            view(agent, health)
        });
        futures::future::join_all(checks).await
    }

    /// Forget an agent, after letting it go (`POST /v1/release`) so that another
    /// controller may register it; an agent that cannot be reached is forgotten all the
    /// same (`dbhaul agent release` on its machine lets it go then).
    pub async fn remove_agent(&self, name: &str) -> Result<(), ApiError> {
        let record = self.removable(name)?;
        if let Err(e) = self.client(&record).release().await {
            tracing::warn!(
                agent = %name,
                "the agent was not told that it is released ({e}); run `dbhaul agent release` \
                 on its machine before another controller registers it"
            );
        }
        self.forget_agent(name)
    }

    /// The agent's record, if it may be removed: it holds no unfinished subtask.
    fn removable(&self, name: &str) -> Result<AgentRecord, ApiError> {
        removable_from(&self.lock(), name).cloned()
    }

    fn forget_agent(&self, name: &str) -> Result<(), ApiError> {
        let mut state = self.lock();
        // Again: a subtask may have gone to it while it was being released.
        removable_from(&state, name)?;
        self.store
            .remove(CONTROLLER_AGENTS, &[name.to_string()])
            .map_err(|e| ApiError::internal(e.to_string()))?;
        state.agents.remove(name);
        // Subtasks chosen for it but never sent go to another agent.
        let mut changed = Vec::new();
        for record in state.tasks.values_mut() {
            let mut touched = false;
            for s in record.subtasks.iter_mut() {
                if !s.dispatched && s.status.agent.as_deref() == Some(name) {
                    s.status.agent = None;
                    touched = true;
                }
            }
            if touched {
                changed.push(record.clone());
            }
        }
        for record in &changed {
            self.save_task(record);
        }
        state.health.remove(name);
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(name);
        }
        Ok(())
    }
}

fn view(agent: &AgentRecord, health: Result<crate::remote::wire::Health, String>) -> AgentView {
    let (reachable, version, capacity, running, queued, error) = match health {
        Ok(h) => (
            true,
            Some(h.version),
            Some(h.capacity),
            Some(h.running),
            Some(h.queued),
            None,
        ),
        Err(e) => (false, None, None, None, None, Some(e)),
    };
    AgentView {
        name: agent.name.clone(),
        description: agent.description.clone(),
        roles: agent.roles.clone(),
        host: agent.host.clone(),
        port: agent.port,
        fingerprint: agent.fingerprint.clone(),
        reachable,
        version,
        capacity,
        running,
        queued,
        error,
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The agent's record in `state`, if it may be removed: it holds no unfinished subtask.
fn removable_from<'s>(
    state: &'s super::ControllerState,
    name: &str,
) -> Result<&'s AgentRecord, ApiError> {
    let Some(record) = state.agents.get(name) else {
        return Err(ApiError::not_found(format!(
            "no agent named {name}; `dbhaul agents list` shows the registered ones"
        )));
    };
    for (task, task_record) in &state.tasks {
        if task_record.subtasks.iter().any(|s| {
            s.dispatched && !s.status.state.is_final() && s.status.agent.as_deref() == Some(name)
        }) {
            return Err(ApiError::conflict(format!(
                "agent {name} holds unfinished subtasks of task {task}; stop the task \
                 (`dbhaul tasks stop {task}`) or let it finish first"
            )));
        }
    }
    Ok(record)
}
