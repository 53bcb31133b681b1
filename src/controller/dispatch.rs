//! Dispatch: each undispatched subtask (and each hand-off copy leg) goes to the agent with
//! the roles it needs and the most free capacity, chosen first and recorded, then sent.

use super::*;

impl Controller {
    /// Dispatch what a started task has not yet dispatched, in two steps. First each
    /// subtask without an agent gets the agent with the most free capacity, and that choice
    /// is written to the store; then each chosen agent is sent its subtasks. A controller
    /// killed between the two sends the same subtasks to the same agents when it comes
    /// back (agents take a subtask they hold as a no-op), so no subtask ever runs on two
    /// agents.
    pub async fn dispatch(&self) {
        let _one_at_a_time = self.dispatching.lock().await;
        self.choose_agents().await;
        self.choose_copy_agents().await;
        self.send_chosen().await;
    }

    /// Free capacity per reachable agent (its slots less what it holds or was chosen for).
    pub(super) async fn free_slots(&self, agents: &[AgentRecord]) -> Vec<(String, i64)> {
        let mut free = Vec::new();
        for agent in agents {
            match self.client(agent).health().await {
                Ok(health) => {
                    let slots = i64::from(health.capacity);
                    free.push((agent.name.clone(), slots - self.held_by(&agent.name) as i64));
                    self.record_health(&agent.name, Ok(health));
                }
                Err(e) => self.record_health(&agent.name, Err(e.to_string())),
            }
        }
        free
    }

    /// Each subtask without an agent gets one that may run it.
    pub(super) async fn choose_agents(&self) {
        self.choose(
            |state, t| match t.handoff {
                true => leg_candidates(&state.agents, t.agents.as_ref(), Leg::ExtractUpload),
                false => candidates(&state.agents, t.agents.as_ref(), &needed_roles(t)),
            },
            unchosen,
            |subtask, agent| subtask.status.agent = Some(agent),
        )
        .await;
    }

    /// In hand-off tasks: an agent with the copy role for each subtask whose front is done.
    pub(super) async fn choose_copy_agents(&self) {
        self.choose(
            |state, t| match t.handoff {
                true => leg_candidates(&state.agents, t.agents.as_ref(), Leg::Copy),
                false => Vec::new(),
            },
            copy_unchosen,
            |subtask, agent| {
                subtask.copy_leg = Some(CopyLeg {
                    agent: Some(agent),
                    ..CopyLeg::default()
                })
            },
        )
        .await;
    }

    /// For every started task with `waiting` subtasks: give each the agent among
    /// `candidates` with the most free capacity (ties by name, so the spread is
    /// predictable), by `assign`, and record the choices.
    pub(super) async fn choose(
        &self,
        candidates: impl Fn(&ControllerState, &TaskRecord) -> Vec<AgentRecord>,
        waiting: fn(&crate::store::schema::SubtaskRecord) -> bool,
        assign: fn(&mut crate::store::schema::SubtaskRecord, String),
    ) {
        let wanted: Vec<(String, Vec<AgentRecord>)> = {
            let state = self.lock();
            state
                .tasks
                .iter()
                .filter(|(_, t)| t.started && t.subtasks.iter().any(waiting))
                .map(|(name, t)| (name.clone(), candidates(&state, t)))
                .filter(|(_, agents)| !agents.is_empty())
                .collect()
        };
        for (task, agents) in wanted {
            let mut free = self.free_slots(&agents).await;
            if free.is_empty() {
                continue;
            }
            let record = {
                let mut state = self.lock();
                let Some(record) = state.tasks.get_mut(&task) else {
                    continue;
                };
                for subtask in record.subtasks.iter_mut().filter(|s| waiting(s)) {
                    let best = free
                        .iter_mut()
                        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                        .expect("free is not empty");
                    best.1 -= 1;
                    assign(subtask, best.0.clone());
                }
                record.clone()
            };
            self.save_task(&record);
        }
    }

    pub(super) async fn send_chosen(&self) {
        let sends: Vec<(String, Assign, AgentRecord)> = {
            let state = self.lock();
            let mut sends = Vec::new();
            for (name, task) in state.tasks.iter().filter(|(_, t)| t.started) {
                let mut per_agent: BTreeMap<(&str, Option<Leg>), Vec<crate::model::SubtaskSpec>> =
                    BTreeMap::new();
                let front = task.handoff.then_some(Leg::ExtractUpload);
                for s in task.subtasks.iter().filter(|s| chosen_not_sent(s)) {
                    if let Some(agent) = s.status.agent.as_deref() {
                        per_agent
                            .entry((agent, front))
                            .or_default()
                            .push(s.spec.clone());
                    }
                }
                for s in task.subtasks.iter().filter(|s| copy_chosen_not_sent(s)) {
                    if let Some(agent) = s.copy_leg.as_ref().and_then(|l| l.agent.as_deref()) {
                        per_agent
                            .entry((agent, Some(Leg::Copy)))
                            .or_default()
                            .push(s.spec.clone());
                    }
                }
                for ((agent, leg), specs) in per_agent {
                    if let Some(record) = state.agents.get(agent) {
                        let assign = Assign {
                            task: task.definition.definition_for(leg).clone(),
                            subtasks: specs,
                            start: true,
                            log_level: task.log_level,
                            leg,
                        };
                        sends.push((name.clone(), assign, record.clone()));
                    }
                }
            }
            sends
        };
        for (task, assign, agent) in sends {
            match self.client(&agent).take(&assign).await {
                Ok(statuses) => {
                    let what = match assign.leg {
                        Some(Leg::Copy) => "to copy ",
                        Some(Leg::ExtractUpload) => "to extract and upload ",
                        None => "",
                    };
                    tracing::info!(
                        task = %task,
                        "{} subtasks dispatched {what}to agent {}",
                        statuses.len(),
                        agent.name
                    );
                    match assign.leg {
                        Some(Leg::Copy) => self.mark_copy_dispatched(&task, &agent.name, statuses),
                        _ => self.mark_dispatched(&task, &agent.name, statuses),
                    }
                }
                Err(e) => {
                    // Tried again at the next poll, with the same agent.
                    tracing::warn!(
                        task = %task,
                        "agent {} did not take subtasks yet: {e}",
                        agent.name
                    );
                }
            }
        }
    }

    pub(super) fn mark_dispatched(&self, task: &str, agent: &str, statuses: Vec<SubtaskStatus>) {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(task) else {
            return;
        };
        for mut status in statuses {
            if let Some(subtask) = record.subtasks.iter_mut().find(|s| {
                s.status.id == status.id
                    && !s.dispatched
                    && s.status.agent.as_deref() == Some(agent)
            }) {
                status.agent = Some(agent.to_string());
                subtask.status = status;
                subtask.dispatched = true;
            }
        }
        let record = record.clone();
        drop(state);
        self.save_task(&record);
    }

    pub(super) fn mark_copy_dispatched(
        &self,
        task: &str,
        agent: &str,
        statuses: Vec<SubtaskStatus>,
    ) {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(task) else {
            return;
        };
        for mut status in statuses {
            let leg = record
                .subtasks
                .iter_mut()
                .filter(|s| s.status.id == status.id)
                .filter_map(|s| s.copy_leg.as_mut())
                .find(|l| !l.dispatched && l.agent.as_deref() == Some(agent));
            if let Some(leg) = leg {
                status.agent = Some(agent.to_string());
                leg.status = Some(status);
                leg.dispatched = true;
            }
        }
        let record = record.clone();
        drop(state);
        self.save_task(&record);
    }

    /// Unfinished subtasks (and copy legs) an agent holds or was chosen for, over every task.
    pub(super) fn held_by(&self, agent: &str) -> usize {
        let state = self.lock();
        let subtasks = state.tasks.values().flat_map(|t| &t.subtasks);
        let fronts = subtasks
            .clone()
            .filter(|s| !s.status.state.is_final() && s.status.agent.as_deref() == Some(agent))
            .count();
        let copies = subtasks
            .filter_map(|s| s.copy_leg.as_ref())
            .filter(|l| {
                l.agent.as_deref() == Some(agent)
                    && !l.status.as_ref().is_some_and(|s| s.state.is_final())
            })
            .count();
        fronts + copies
    }
}

/// A subtask waiting for an agent to be chosen.
pub(super) fn unchosen(s: &crate::store::schema::SubtaskRecord) -> bool {
    !s.dispatched && s.status.state == State::Pending && s.status.agent.is_none()
}

/// A subtask whose agent is chosen but has not taken it yet.
pub(super) fn chosen_not_sent(s: &crate::store::schema::SubtaskRecord) -> bool {
    !s.dispatched && s.status.state == State::Pending && s.status.agent.is_some()
}

/// A hand-off subtask whose front is done and whose copy has no agent yet.
pub(super) fn copy_unchosen(s: &crate::store::schema::SubtaskRecord) -> bool {
    s.status.state == State::Completed && s.copy_leg.as_ref().is_none_or(|l| l.agent.is_none())
}

/// A hand-off subtask whose copy agent is chosen but has not taken it yet.
pub(super) fn copy_chosen_not_sent(s: &crate::store::schema::SubtaskRecord) -> bool {
    s.copy_leg
        .as_ref()
        .is_some_and(|l| !l.dispatched && l.agent.is_some())
}

/// The agents that may run `leg` of a hand-off task: for the front, those with extract and
/// upload but not copy; for the copy, those with copy but not both of the others. The two
/// never overlap, so no agent holds both legs of a task (an agent keeps one leg per task).
pub fn leg_candidates(
    agents: &BTreeMap<String, AgentRecord>,
    chosen: Option<&Vec<String>>,
    leg: Leg,
) -> Vec<AgentRecord> {
    use crate::model::Role;
    let front =
        |a: &AgentRecord| a.roles.contains(&Role::Extract) && a.roles.contains(&Role::Upload);
    candidates(agents, chosen, &[])
        .into_iter()
        .filter(|a| match leg {
            Leg::ExtractUpload => front(a) && !a.roles.contains(&Role::Copy),
            Leg::Copy => a.roles.contains(&Role::Copy) && !front(a),
        })
        .collect()
}

/// The agents a task may use: those it names, else every registered agent.
/// The agents a task may use (`--agents`, or all) that have every role in `needed`.
pub(super) fn candidates(
    agents: &BTreeMap<String, AgentRecord>,
    chosen: Option<&Vec<String>>,
    needed: &[crate::model::Role],
) -> Vec<AgentRecord> {
    let may: Vec<AgentRecord> = match chosen {
        Some(names) => names
            .iter()
            .filter_map(|n| agents.get(n).cloned())
            .collect(),
        None => agents.values().cloned().collect(),
    };
    may.into_iter()
        .filter(|a| needed.iter().all(|r| a.roles.contains(r)))
        .collect()
}

/// The roles a task's subtasks need of the one agent that runs each (all its stages).
pub(super) fn needed_roles(task: &TaskRecord) -> Vec<crate::model::Role> {
    match task.mode.as_str() {
        "extract" => crate::model::MigrationMode::Extract.roles(),
        "extract-upload" => crate::model::MigrationMode::ExtractUpload.roles(),
        _ => crate::model::MigrationMode::ExtractUploadCopy.roles(),
    }
}
