//! Core's `ChatSurface` on Teams: the approval card starts a thread in the route's channel
//! (Teams' reply chain is the run's thread), the line manager's copy goes to their personal
//! chat with the bot, cards are edited in place, and the report is its signed link (bots
//! cannot upload into a channel).

use std::sync::Arc;

use async_trait::async_trait;
use offboard_core::chat::surface::{ChatError, ChatSurface, MessageRef};
use offboard_core::chat::views::{FileOut, PlanPreview, RunView};

use crate::cards;
use crate::connector::{Connector, Posted};

pub struct TeamsSurface {
    connector: Arc<Connector>,
    /// The Entra tenant the bot and the channels are in.
    tenant: String,
}

impl TeamsSurface {
    pub fn new(connector: Arc<Connector>, tenant: impl Into<String>) -> Self {
        TeamsSurface { connector, tenant: tenant.into() }
    }
}

/// `conversation|activity`: where an activity can be edited.
fn to_ref(p: &Posted) -> MessageRef {
    MessageRef(format!("{}|{}", p.conversation, p.activity))
}

fn from_ref(m: &MessageRef) -> Result<Posted, ChatError> {
    let (conversation, activity) = m.0.rsplit_once('|').ok_or_else(|| ChatError::Permanent(format!("`{}` is not a Teams message reference", m.0)))?;
    Ok(Posted { conversation: conversation.into(), activity: activity.into() })
}

fn preview_activity(p: &PlanPreview) -> serde_json::Value {
    cards::activity(&p.layout().summary, cards::preview(p))
}

fn status_activity(v: &RunView) -> serde_json::Value {
    cards::activity(&format!("Offboarding {}: {}", v.target_upn, v.state.label()), cards::status(v))
}

#[async_trait]
impl ChatSurface for TeamsSurface {
    fn platform(&self) -> &str {
        "teams"
    }

    async fn post_preview(&self, to: &str, p: &PlanPreview) -> Result<MessageRef, ChatError> {
        Ok(to_ref(&self.connector.start_thread(to, &self.tenant, &preview_activity(p)).await?))
    }

    async fn direct_preview(&self, user: &str, p: &PlanPreview) -> Result<MessageRef, ChatError> {
        let chat = self.connector.personal_chat(user, &self.tenant).await?;
        Ok(to_ref(&self.connector.send(&chat, &preview_activity(p)).await?))
    }

    async fn update_preview(&self, at: &MessageRef, p: &PlanPreview) -> Result<(), ChatError> {
        self.connector.update(&from_ref(at)?, &preview_activity(p)).await
    }

    /// A channel thread's conversation id already names its root (`…;messageid=`); a
    /// personal chat has no threads, so its messages follow in the chat.
    async fn open_thread(&self, root: &MessageRef) -> Result<MessageRef, ChatError> {
        Ok(MessageRef(from_ref(root)?.conversation))
    }

    async fn post_status(&self, thread: &MessageRef, v: &RunView) -> Result<MessageRef, ChatError> {
        Ok(to_ref(&self.connector.send(&thread.0, &status_activity(v)).await?))
    }

    async fn update_status(&self, at: &MessageRef, v: &RunView) -> Result<(), ChatError> {
        self.connector.update(&from_ref(at)?, &status_activity(v)).await
    }

    async fn reply(&self, thread: &MessageRef, text: &str) -> Result<(), ChatError> {
        self.connector.send(&thread.0, &cards::message(text)).await.map(|_| ())
    }

    async fn attach(&self, thread: &MessageRef, file: &FileOut) -> Result<(), ChatError> {
        let link = file.link.as_deref().ok_or_else(|| ChatError::Permanent("Teams takes the report as a link: set public_url".into()))?;
        self.connector.send(&thread.0, &cards::activity(&file.name, cards::report(&file.name, link))).await.map(|_| ())
    }
}
