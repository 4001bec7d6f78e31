//! The outgoing half of a chat adapter: where approvals, live status and files go.

use async_trait::async_trait;

use super::views::{FileOut, PlanPreview, RunView};

/// A message the adapter posted, as the adapter identifies it (channel and timestamp,
/// activity id, message id). Core stores it and hands it back, never looks inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef(pub String);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    #[error("the chat platform asked us to wait {0:?}")]
    RetryAfter(std::time::Duration),
    #[error("the chat platform failed: {0}")]
    Retryable(String),
    #[error("the chat platform refused: {0}")]
    Permanent(String),
}

/// The outgoing half of a chat adapter: where approvals, live status and files go.
#[async_trait]
pub trait ChatSurface: Send + Sync {
    async fn post_preview(&self, preview: &PlanPreview) -> Result<MessageRef, ChatError>;
    async fn update_preview(&self, at: &MessageRef, preview: &PlanPreview) -> Result<(), ChatError>;
    /// Posts the pipeline message into the run's thread.
    async fn post_status(&self, thread: &MessageRef, view: &RunView) -> Result<MessageRef, ChatError>;
    async fn update_status(&self, at: &MessageRef, view: &RunView) -> Result<(), ChatError>;
    async fn reply(&self, thread: &MessageRef, text: &str) -> Result<(), ChatError>;
    async fn attach(&self, thread: &MessageRef, file: &FileOut) -> Result<(), ChatError>;
}
