//! Core's `ChatSurface` on Slack: approval messages in the approvals channel, the run's
//! thread under each, and the report uploaded into that thread. A message is referred to
//! as `CHANNEL|TS`.

use std::sync::Arc;

use async_trait::async_trait;

use offboard_core::chat::{ChatError, ChatSurface, FileOut, MessageRef, PlanPreview, RunView};

use crate::api::SlackApi;
use crate::blocks;

pub struct SlackSurface {
    api: Arc<SlackApi>,
    approvals_channel: String,
}

impl SlackSurface {
    pub fn new(api: Arc<SlackApi>, approvals_channel: impl Into<String>) -> Self {
        SlackSurface { api, approvals_channel: approvals_channel.into() }
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
    async fn post_preview(&self, preview: &PlanPreview) -> Result<MessageRef, ChatError> {
        let (text, blocks) = blocks::preview(preview);
        let ts = self.api.post(&self.approvals_channel, None, &text, blocks).await?;
        Ok(reference(&self.approvals_channel, &ts))
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
        self.api.upload(channel, thread_ts, file, "The signed compliance report. Check it with: offboard verify").await
    }
}
