//! Which Slack user groups each user is in, for role bindings that name a group. Read from
//! Slack in the background and never on a request's path: a request only looks at what the
//! last read found. A read that fails is remembered with when to try again (Slack's
//! Retry-After, else a growing pause), and said once in the log, not once per request.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use offboard_core::chat::ChatError;

use crate::api::SlackApi;

/// How often the groups are read again after a good read. A user removed from a group
/// keeps its role for up to this long (SECURITY.md).
pub const REFRESH: Duration = Duration::from_secs(300);
/// The first pause after a failed read; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(60);
const MAX_PAUSE: Duration = Duration::from_secs(1800);

#[derive(Default)]
struct State {
    by_user: HashMap<String, Vec<String>>,
    read_at: Option<Instant>,
    /// The last failure, while it lasts.
    problem: Option<String>,
    failures: u32,
}

#[derive(Default)]
pub struct Memberships {
    state: RwLock<State>,
}

/// What the last read said, for `doctor` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    NotReadYet,
    Read { age: Duration },
    Failing { problem: String, last_good: Option<Duration> },
}

impl Memberships {
    /// The groups `user` was in at the last good read; none before the first.
    pub fn groups_of(&self, user: &str) -> Vec<String> {
        self.state.read().expect("memberships lock").by_user.get(user).cloned().unwrap_or_default()
    }

    pub fn health(&self) -> Health {
        let s = self.state.read().expect("memberships lock");
        match (&s.problem, s.read_at) {
            (Some(p), at) => Health::Failing { problem: p.clone(), last_good: at.map(|t| t.elapsed()) },
            (None, Some(at)) => Health::Read { age: at.elapsed() },
            (None, None) => Health::NotReadYet,
        }
    }

    /// Reads the groups once; returns how long to wait before the next read.
    pub async fn refresh(&self, api: &SlackApi) -> Duration {
        match api.user_groups().await {
            Ok(list) => {
                let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
                for (group, users) in list {
                    for u in users {
                        by_user.entry(u).or_default().push(group.clone());
                    }
                }
                let mut s = self.state.write().expect("memberships lock");
                if s.problem.take().is_some() {
                    tracing::info!("Slack user groups are readable again");
                }
                s.by_user = by_user;
                s.read_at = Some(Instant::now());
                s.failures = 0;
                REFRESH
            }
            Err(e) => {
                let problem = match &e {
                    ChatError::Permanent(code) if code == "plan_upgrade_required" => {
                        "this Slack workspace's plan has no user groups (plan_upgrade_required): roles bound to groups grant nothing".to_string()
                    }
                    ChatError::Permanent(code) if code == "missing_scope" => {
                        "the Slack app lacks the usergroups:read scope (missing_scope): roles bound to groups grant nothing; reinstall it from the manifest"
                            .to_string()
                    }
                    other => format!("Slack user groups cannot be read ({other}); roles bound to groups keep what the last read found"),
                };
                let mut s = self.state.write().expect("memberships lock");
                if s.problem.as_deref() != Some(problem.as_str()) {
                    tracing::warn!(problem = %problem, "Slack user groups");
                }
                s.problem = Some(problem);
                s.failures = s.failures.saturating_add(1);
                match e {
                    ChatError::RetryAfter(d) => d.max(Duration::from_secs(1)),
                    _ => FIRST_PAUSE.saturating_mul(2u32.saturating_pow(s.failures - 1)).min(MAX_PAUSE),
                }
            }
        }
    }

    /// Reads now, then again whenever due, until `shutdown` resolves.
    pub async fn refresh_until(&self, api: &SlackApi, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let next = self.refresh(api).await;
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(next) => {}
            }
        }
    }
}
