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

/// The outgoing half of a chat adapter: where approvals, live status and files go. A
/// thread is what [`ChatSurface::open_thread`] returned for a posted message.
#[async_trait]
pub trait ChatSurface: Send + Sync {
    /// The platform's name in routes and identities: `slack`, `teams`, `discord`.
    fn platform(&self) -> &str;
    /// Posts the approval message into a channel (a route's destination).
    async fn post_preview(&self, to: &str, preview: &PlanPreview) -> Result<MessageRef, ChatError>;
    /// Sends the approval message to one person directly (the line manager), by their id
    /// on this platform.
    async fn direct_preview(&self, user: &str, preview: &PlanPreview) -> Result<MessageRef, ChatError>;
    async fn update_preview(&self, at: &MessageRef, preview: &PlanPreview) -> Result<(), ChatError>;
    /// The thread under a posted message: Slack's is the message itself; Teams' is its
    /// reply chain; Discord creates a thread from the message.
    async fn open_thread(&self, root: &MessageRef) -> Result<MessageRef, ChatError>;
    /// Posts the pipeline message into the run's thread.
    async fn post_status(&self, thread: &MessageRef, view: &RunView) -> Result<MessageRef, ChatError>;
    async fn update_status(&self, at: &MessageRef, view: &RunView) -> Result<(), ChatError>;
    async fn reply(&self, thread: &MessageRef, text: &str) -> Result<(), ChatError>;
    /// The report: uploaded where the platform can take a file into the thread, else its
    /// link.
    async fn attach(&self, thread: &MessageRef, file: &FileOut) -> Result<(), ChatError>;
}
