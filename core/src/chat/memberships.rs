//! Which groups each chat user is in, for role bindings that name a group: Slack user
//! groups, or Entra groups for Teams users. Read in the background and never on a
//! request's path: a request only looks at what the last read found. A read that fails is
//! remembered with when to try again (the source's Retry-After, else a growing pause), and
//! said once in the log, not once per request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::domain::TenantId;
use crate::snapshot::{Directory, DiscoveryError};

/// How often the groups are read again after a good read. A user removed from a group
/// keeps its role for up to this long (SECURITY.md).
pub const REFRESH: Duration = Duration::from_secs(300);
/// The first pause after a failed read; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(60);
const MAX_PAUSE: Duration = Duration::from_secs(1800);

/// Why groups could not be read: said to an admin, and when to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub problem: String,
    pub retry_after: Option<Duration>,
}

/// Where the groups come from: each group the bindings may name, with its members' ids.
#[async_trait]
pub trait GroupSource: Send + Sync {
    /// For the logs: "Slack user groups", "Entra groups".
    fn name(&self) -> &str;
    async fn read(&self) -> Result<Vec<(String, Vec<String>)>, Unreadable>;
}

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

    /// Reads the groups once; returns how long to wait before the next read. A failed read
    /// keeps what the last good one found.
    pub async fn refresh(&self, source: &dyn GroupSource) -> Duration {
        match source.read().await {
            Ok(list) => {
                let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
                for (group, users) in list {
                    for u in users {
                        by_user.entry(u).or_default().push(group.clone());
                    }
                }
                let mut s = self.state.write().expect("memberships lock");
                if s.problem.take().is_some() {
                    tracing::info!(source = source.name(), "groups are readable again");
                }
                s.by_user = by_user;
                s.read_at = Some(Instant::now());
                s.failures = 0;
                REFRESH
            }
            Err(e) => {
                let mut s = self.state.write().expect("memberships lock");
                if s.problem.as_deref() != Some(e.problem.as_str()) {
                    tracing::warn!(source = source.name(), problem = %e.problem, "groups cannot be read");
                }
                s.problem = Some(e.problem);
                s.failures = s.failures.saturating_add(1);
                match e.retry_after {
                    Some(d) => d.max(Duration::from_secs(1)),
                    None => FIRST_PAUSE.saturating_mul(2u32.saturating_pow(s.failures - 1)).min(MAX_PAUSE),
                }
            }
        }
    }

    /// Reads now, then again whenever due, until `shutdown` resolves.
    pub async fn refresh_until(&self, source: &dyn GroupSource, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let next = self.refresh(source).await;
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(next) => {}
            }
        }
    }
}

/// The directory groups role bindings name, read from a tenant's directory (for Teams,
/// the bot's home tenant, whose users the Teams users are): each group's members, nested
/// groups included, by object id.
pub struct DirectoryGroups {
    pub directory: Arc<dyn Directory>,
    pub tenant: TenantId,
    pub groups: Vec<String>,
}

#[async_trait]
impl GroupSource for DirectoryGroups {
    fn name(&self) -> &str {
        "Entra groups"
    }

    async fn read(&self) -> Result<Vec<(String, Vec<String>)>, Unreadable> {
        let mut out = Vec::with_capacity(self.groups.len());
        let mut missing = Vec::new();
        for g in &self.groups {
            match self.directory.members_of(&self.tenant, g).await {
                Ok(members) => out.push((g.clone(), members.iter().map(|m| m.to_string().to_ascii_lowercase()).collect())),
                Err(DiscoveryError::GroupNotFound { .. }) => missing.push(g.as_str()),
                Err(e) => {
                    let problem = match e {
                        DiscoveryError::Forbidden(why) => format!(
                            "the members of group {g} in {} cannot be read ({why}): roles bound to groups keep what the last read found; grant GroupMember.Read.All",
                            self.tenant
                        ),
                        other => {
                            format!("the members of group {g} in {} cannot be read ({other}): roles bound to groups keep what the last read found", self.tenant)
                        }
                    };
                    return Err(Unreadable { problem, retry_after: None });
                }
            }
        }
        if !missing.is_empty() {
            // The groups that exist still count; the configuration's mistake is said.
            tracing::warn!(tenant = %self.tenant, groups = ?missing, "role bindings name groups the directory does not have: they grant nothing");
        }
        Ok(out)
    }
}
