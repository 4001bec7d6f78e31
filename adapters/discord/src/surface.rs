//! Core's `ChatSurface` on Discord, with the bot token: the approval message in the route's
//! channel, a thread started from it for the run, the status message edited as steps run,
//! and the signed PDF uploaded into the thread (its link instead when the file is larger
//! than Discord takes). The line manager's copy goes to a direct message, where threads do
//! not exist: the run's messages follow in the same conversation.

use std::sync::Arc;

use async_trait::async_trait;
use offboard_core::chat::surface::{ChatError, ChatSurface, MessageRef};
use offboard_core::chat::views::{FileOut, PlanPreview, RunView};

use crate::api::{ApiError, DiscordApi};
use crate::views;

/// Discord's default upload limit per file.
pub const MAX_FILE: usize = 10 * 1024 * 1024;
/// Marks a direct-message reference.
const DM: &str = "dm:";

pub struct DiscordSurface {
    api: Arc<DiscordApi>,
}

impl DiscordSurface {
    pub fn new(api: Arc<DiscordApi>) -> Self {
        DiscordSurface { api }
    }
}

fn chat_error(e: ApiError) -> ChatError {
    match e {
        ApiError::RetryAfter(d) => ChatError::RetryAfter(d),
        ApiError::Unreachable(m) => ChatError::Retryable(m),
        ApiError::Refused { status, message } if status >= 500 => ChatError::Retryable(format!("{status}: {message}")),
        ApiError::Refused { status, message } => ChatError::Permanent(format!("{status}: {message}")),
    }
}

/// `(channel, message)` from a reference made here.
fn parts(m: &MessageRef) -> Result<(&str, &str), ChatError> {
    m.0.trim_start_matches(DM).split_once('|').ok_or_else(|| ChatError::Permanent(format!("`{}` is not a Discord message reference", m.0)))
}

#[async_trait]
impl ChatSurface for DiscordSurface {
    fn platform(&self) -> &str {
        "discord"
    }

    async fn post_preview(&self, to: &str, p: &PlanPreview) -> Result<MessageRef, ChatError> {
        let id = self.api.send(to, &views::preview(p)).await.map_err(chat_error)?;
        Ok(MessageRef(format!("{to}|{id}")))
    }

    async fn direct_preview(&self, user: &str, p: &PlanPreview) -> Result<MessageRef, ChatError> {
        let channel = self.api.dm_channel(user).await.map_err(chat_error)?;
        let id = self.api.send(&channel, &views::preview(p)).await.map_err(chat_error)?;
        Ok(MessageRef(format!("{DM}{channel}|{id}")))
    }

    async fn update_preview(&self, at: &MessageRef, p: &PlanPreview) -> Result<(), ChatError> {
        let (channel, id) = parts(at)?;
        self.api.edit(channel, id, &views::preview(p)).await.map_err(chat_error)
    }

    /// A thread from the approval message (its id is the message's, so asking again after
    /// a lost answer finds the same thread); a direct message has none.
    async fn open_thread(&self, root: &MessageRef) -> Result<MessageRef, ChatError> {
        let (channel, id) = parts(root)?;
        if root.0.starts_with(DM) {
            return Ok(MessageRef(channel.to_string()));
        }
        match self.api.thread(channel, id, "Offboarding: live steps").await {
            Ok(thread) => Ok(MessageRef(thread)),
            Err(ApiError::Refused { status: 400, message }) if message.contains("already been created") => Ok(MessageRef(id.to_string())),
            Err(e) => Err(chat_error(e)),
        }
    }

    async fn post_status(&self, thread: &MessageRef, v: &RunView) -> Result<MessageRef, ChatError> {
        let id = self.api.send(&thread.0, &views::message(&views::status(v))).await.map_err(chat_error)?;
        Ok(MessageRef(format!("{}|{id}", thread.0)))
    }

    async fn update_status(&self, at: &MessageRef, v: &RunView) -> Result<(), ChatError> {
        let (channel, id) = parts(at)?;
        self.api.edit(channel, id, &views::message(&views::status(v))).await.map_err(chat_error)
    }

    async fn reply(&self, thread: &MessageRef, text: &str) -> Result<(), ChatError> {
        let lines: Vec<String> = text.lines().map(views::inert).collect();
        self.api.send(&thread.0, &views::message(&lines.join("\n"))).await.map(|_| ()).map_err(chat_error)
    }

    async fn attach(&self, thread: &MessageRef, file: &FileOut) -> Result<(), ChatError> {
        let said = "The signed compliance report. Check it with: offboard verify";
        if file.bytes.len() <= MAX_FILE {
            let content = match &file.link {
                Some(link) => format!("{said}\nAlso for a limited time at {link}"),
                None => said.to_string(),
            };
            return self.api.upload(&thread.0, &views::message(&content), &file.name, &file.bytes).await.map(|_| ()).map_err(chat_error);
        }
        let link = file.link.as_deref().ok_or_else(|| {
            ChatError::Permanent(format!("the report is larger than Discord takes ({} bytes): set public_url to post its link", file.bytes.len()))
        })?;
        self.api
            .send(&thread.0, &views::message(&format!("{said}\nToo large to attach here; for a limited time at {link}")))
            .await
            .map(|_| ())
            .map_err(chat_error)
    }
}
