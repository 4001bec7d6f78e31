//! Core's `ChatSurface` on Slack: approval messages in the channel a route names (or a
//! direct message), the run's thread under each (Slack's thread is the message itself),
//! and the report uploaded into that thread. A message is referred to as `CHANNEL|TS`.

use std::sync::Arc;

use async_trait::async_trait;

use offboard_core::chat::{ChatError, ChatSurface, FileOut, MessageRef, PlanPreview, RunView};

use crate::api::SlackApi;
use crate::blocks;

pub struct SlackSurface {
    api: Arc<SlackApi>,
}

impl SlackSurface {
    pub fn new(api: Arc<SlackApi>) -> Self {
        SlackSurface { api }
    }
}

/// Slack users found by their e-mail address (`users.lookupByEmail`).
pub struct SlackIdentities(pub Arc<SlackApi>);

#[async_trait]
impl offboard_core::service::ChatIdentities for SlackIdentities {
    fn platform(&self) -> &str {
        "slack"
    }

    async fn by_email(&self, email: &str) -> Result<Option<String>, ChatError> {
        self.0.user_by_email(email).await
    }
}

fn at(m: &MessageRef) -> Result<(&str, &str), ChatError> {
    m.0.split_once('|').ok_or_else(|| ChatError::Permanent(format!("`{}` is not a Slack message reference", m.0)))
}

fn reference(channel: &str, ts: &str) -> MessageRef {
    MessageRef(format!("{channel}|{ts}"))
}

#[async_trait]
impl ChatSurface for SlackSurface {
    fn platform(&self) -> &str {
        "slack"
    }

    async fn post_preview(&self, to: &str, preview: &PlanPreview) -> Result<MessageRef, ChatError> {
        let (text, blocks) = blocks::preview(preview);
        let (channel, ts) = self.api.post_in(to, None, &text, blocks).await?;
        Ok(reference(&channel, &ts))
    }

    async fn direct_preview(&self, user: &str, preview: &PlanPreview) -> Result<MessageRef, ChatError> {
        // A user id as the channel: Slack delivers it in the app's direct messages.
        self.post_preview(user, preview).await
    }

    async fn open_thread(&self, root: &MessageRef) -> Result<MessageRef, ChatError> {
        Ok(root.clone())
    }

    async fn update_preview(&self, m: &MessageRef, preview: &PlanPreview) -> Result<(), ChatError> {
        let (channel, ts) = at(m)?;
        let (text, blocks) = blocks::preview(preview);
        self.api.update(channel, ts, &text, blocks).await
    }

    async fn post_status(&self, thread: &MessageRef, view: &RunView) -> Result<MessageRef, ChatError> {
        let (channel, thread_ts) = at(thread)?;
        let (text, blocks) = blocks::status(view);
        let ts = self.api.post(channel, Some(thread_ts), &text, blocks).await?;
        Ok(reference(channel, &ts))
    }

    async fn update_status(&self, m: &MessageRef, view: &RunView) -> Result<(), ChatError> {
        let (channel, ts) = at(m)?;
        let (text, blocks) = blocks::status(view);
        self.api.update(channel, ts, &text, blocks).await
    }

    async fn reply(&self, thread: &MessageRef, text: &str) -> Result<(), ChatError> {
        let (channel, thread_ts) = at(thread)?;
        let (fallback, blocks) = blocks::reply(text);
        self.api.post(channel, Some(thread_ts), &fallback, blocks).await.map(|_| ())
    }

    async fn attach(&self, thread: &MessageRef, file: &FileOut) -> Result<(), ChatError> {
        let (channel, thread_ts) = at(thread)?;
        let comment = match &file.link {
            Some(link) => format!("The signed compliance report (also at {link}, for a limited time). Check it with: offboard verify"),
            None => "The signed compliance report. Check it with: offboard verify".to_string(),
        };
        self.api.upload(channel, thread_ts, file, &comment).await
    }
}
