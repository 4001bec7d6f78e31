//! Core's `ChatSurface` on Teams: the approval card starts a thread in the route's channel
//! (Teams' reply chain is the run's thread), the line manager's copy goes to their personal
//! chat with the bot, cards are edited in place, and the report is its signed link (bots
//! cannot upload into a channel), with a copy in the channel's Files where the home tenant
//! allows it.

use std::sync::Arc;

use async_trait::async_trait;
use offboard_core::chat::files::{ChannelFiles, ChannelPlace, Filed, FilingError};
use offboard_core::chat::surface::{ChatError, ChatSurface, MessageRef};
use offboard_core::chat::views::{FileOut, PlanPreview, RunView};
use offboard_core::store::Store;

use crate::cards::{self, FilesCopy};
use crate::connector::{Connector, Posted};
use crate::server::CHANNEL_TEAMS;

pub struct TeamsSurface {
    connector: Arc<Connector>,
    /// The Entra tenant the bot and the channels are in.
    tenant: String,
    /// Where a copy of the report goes, and the channels' teams the bot has seen.
    files: Option<(Arc<dyn ChannelFiles>, Store)>,
}

impl TeamsSurface {
    pub fn new(connector: Arc<Connector>, tenant: impl Into<String>) -> Self {
        TeamsSurface { connector, tenant: tenant.into(), files: None }
    }

    /// Also files each report into its channel's Files.
    pub fn with_files(mut self, files: Arc<dyn ChannelFiles>, store: Store) -> Self {
        self.files = Some((files, store));
        self
    }

    /// The copy in the channel's Files: `None` when filing is off or the thread is not in a
    /// channel (a personal chat).
    async fn file_copy(&self, thread: &MessageRef, file: &FileOut) -> Option<Result<Filed, FilingError>> {
        let (files, store) = self.files.as_ref()?;
        let channel = thread.0.split(';').next().filter(|c| c.starts_with("19:"))?;
        let team = match store.conversation(CHANNEL_TEAMS, channel).await {
            Ok(Some(r)) => serde_json::from_str::<serde_json::Value>(&r).ok().and_then(|r| r["aadGroupId"].as_str().map(String::from)),
            Ok(None) => None,
            Err(e) => return Some(Err(FilingError::Failed(format!("could not read which team the channel is in: {e}")))),
        };
        let Some(team) = team else {
            return Some(Err(FilingError::Failed("the channel's team is not known yet (the bot learns it from the channel's activities)".into())));
        };
        Some(files.file(&ChannelPlace { team, channel: channel.to_string() }, &file.name, &file.bytes).await)
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
        let copy = self.file_copy(thread, file).await;
        let copy = match &copy {
            None | Some(Err(FilingError::NotGranted(_))) => FilesCopy::None,
            Some(Ok(filed)) => FilesCopy::Filed(&filed.web_url),
            Some(Err(FilingError::Failed(why))) => {
                tracing::warn!(reason = %why, "could not file the report in the channel's Files");
                FilesCopy::Failed(why)
            }
        };
        self.connector.send(&thread.0, &cards::activity(&file.name, cards::report(&file.name, link, copy))).await.map(|_| ())
    }
}
