//! Polling: the agents that hold unfinished subtasks are asked for their statuses, which
//! are merged into the tasks and recorded; an agent that no longer holds a subtask frees it
//! for dispatch again.

use super::*;

impl Controller {
    /// Poll the agents that hold unfinished subtasks, record what changed, and dispatch
    /// what is still undispatched. Runs every `every` until the process ends.
    pub async fn poll_forever(&self, every: Duration) {
        loop {
            self.poll().await;
            self.dispatch().await;
            tokio::time::sleep(every).await;
        }
    }

    pub(super) async fn poll(&self) {
        // (task, agent, control count) for unfinished dispatched subtasks.
        let pairs: Vec<(String, AgentRecord, u64)> = {
            let state = self.lock();
            let mut pairs = Vec::new();
            for (name, task) in &state.tasks {
                let controls = state.controls.get(name).copied().unwrap_or(0);
                let fronts = task
                    .subtasks
                    .iter()
                    .filter(|s| s.dispatched && !s.status.state.is_final())
                    .filter_map(|s| s.status.agent.as_deref());
                let copies = task
                    .subtasks
                    .iter()
                    .filter_map(|s| s.copy_leg.as_ref())
                    .filter(|l| {
                        l.dispatched && !l.status.as_ref().is_some_and(|s| s.state.is_final())
                    })
                    .filter_map(|l| l.agent.as_deref());
                let mut agents: Vec<&str> = fronts.chain(copies).collect();
                agents.sort_unstable();
                agents.dedup();
                for agent in agents {
                    if let Some(record) = state.agents.get(agent) {
                        pairs.push((name.clone(), record.clone(), controls));
                    }
                }
            }
            pairs
        };
        // Asked a few at a time (not one after another: 100 agents would make a round of
        // 100 round trips); each task is recorded once per round, however many agents
        // reported on it (a task of 10,000 subtasks is one record).
        use futures::StreamExt;
        let answers: Vec<_> = futures::stream::iter(pairs)
            .map(|(task, agent, controls)| async move {
                let answer = self.client(&agent).subtasks(&task).await;
                (task, agent, controls, answer)
            })
            .buffer_unordered(POLL_CONCURRENCY)
            .collect()
            .await;
        let mut changed = std::collections::BTreeSet::new();
        for (task, agent, controls, answer) in answers {
            match answer {
                Ok(_) if self.controls(&task) != controls => {
                    // A stop or resume went to the agents meanwhile: asked again next round.
                }
                Ok(statuses) => {
                    if self.merge(&task, &agent.name, statuses) {
                        changed.insert(task);
                    }
                }
                Err(e) if e.status() == Some(404) => {
                    // The agent lost the task (its folder was reset): offer it again.
                    self.undispatch(&task, &agent.name);
                }
                Err(e) => self.record_health(&agent.name, Err(e.to_string())),
            }
        }
        for task in changed {
            self.save_task_named(&task);
        }
    }

    pub(super) fn record_health(&self, agent: &str, result: Result<Health, String>) {
        self.lock().health.insert(
            agent.to_string(),
            Checked {
                at: std::time::Instant::now(),
                result,
            },
        );
    }

    /// Record statuses an agent reported for a task's subtasks; true when any changed (the
    /// caller records the task).
    pub(super) fn merge(&self, task: &str, agent: &str, statuses: Vec<SubtaskStatus>) -> bool {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(task) else {
            return false;
        };
        // The agent's subtasks by id: one pass over the task, not one per status.
        let mine: HashMap<String, usize> = record
            .subtasks
            .iter()
            .enumerate()
            .filter(|(_, s)| s.status.agent.as_deref() == Some(agent))
            .map(|(i, s)| (s.status.id.clone(), i))
            .collect();
        // The copy legs this agent runs (a hand-off task: never the same agent's fronts).
        let copying: HashMap<String, usize> = record
            .subtasks
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.copy_leg
                    .as_ref()
                    .is_some_and(|l| l.agent.as_deref() == Some(agent))
            })
            .map(|(i, s)| (s.status.id.clone(), i))
            .collect();
        let mut changed = false;
        let mut ended = Vec::new();
        for mut status in statuses {
            let Some(&i) = mine.get(&status.id) else {
                let leg = copying
                    .get(&status.id)
                    .and_then(|&i| record.subtasks[i].copy_leg.as_mut());
                if let Some(leg) = leg {
                    status.agent = Some(agent.to_string());
                    if leg.status.as_ref() != Some(&status) {
                        if status.state.is_final()
                            && leg.status.as_ref().map(|s| s.state) != Some(status.state)
                        {
                            ended.push((format!("{} (copy)", status.id), status.state));
                        }
                        leg.status = Some(status);
                        leg.dispatched = true;
                        changed = true;
                    }
                }
                continue;
            };
            let subtask = &mut record.subtasks[i];
            status.agent = Some(agent.to_string());
            if subtask.status != status {
                if subtask.status.state != status.state && status.state.is_final() {
                    ended.push((status.id.clone(), status.state));
                }
                subtask.status = status;
                subtask.dispatched = true;
                changed = true;
            }
        }
        drop(state);
        for (subtask, state) in &ended {
            tracing::info!(task = %task, subtask = %subtask, "{state} on agent {agent}");
        }
        changed
    }

    pub(super) fn undispatch(&self, task: &str, agent: &str) {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(task) else {
            return;
        };
        for subtask in &mut record.subtasks {
            if subtask.status.agent.as_deref() == Some(agent) && !subtask.status.state.is_final() {
                subtask.dispatched = false;
                subtask.status.agent = None;
                subtask.status.state = State::Pending;
            }
            if let Some(leg) = &mut subtask.copy_leg
                && leg.agent.as_deref() == Some(agent)
                && !leg.status.as_ref().is_some_and(|s| s.state.is_final())
            {
                *leg = CopyLeg::default();
            }
        }
        let record = record.clone();
        drop(state);
        tracing::warn!(
            task = %task,
            "agent {agent} no longer holds the task's subtasks; they are offered again"
        );
        self.save_task(&record);
    }
}
