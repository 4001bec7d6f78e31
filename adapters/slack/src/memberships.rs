//! Slack user groups as a source of core's [`Memberships`]: role bindings that name a
//! group read what `usergroups.list` last said, never Slack itself on a request's path.

use async_trait::async_trait;
use offboard_core::chat::ChatError;
use offboard_core::chat::memberships::{GroupSource, Unreadable};
pub use offboard_core::chat::memberships::{Health, Memberships, REFRESH};

use crate::api::SlackApi;

#[async_trait]
impl GroupSource for SlackApi {
    fn name(&self) -> &str {
        "Slack user groups"
    }

    async fn read(&self) -> Result<Vec<(String, Vec<String>)>, Unreadable> {
        self.user_groups().await.map_err(|e| {
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
            let retry_after = match e {
                ChatError::RetryAfter(d) => Some(d),
                _ => None,
            };
            Unreadable { problem, retry_after }
        })
    }
}
