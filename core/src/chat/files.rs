//! Filing the report beside the conversation, for platforms whose bots cannot upload into
//! a channel (Teams): a copy in the channel's own file store, through the directory the
//! channel lives in. The link in the thread stays the record; the copy is a convenience
//! that outlives the link's expiry.

use async_trait::async_trait;

/// A channel as the file store names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPlace {
    /// The team's Entra group id (Teams' `aadGroupId`).
    pub team: String,
    /// The channel's id (`19:…@thread.tacv2`).
    pub channel: String,
}

/// Where the copy landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filed {
    /// Opens the file for anyone who can see the channel's files.
    pub web_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilingError {
    /// The app was never given the permission: filing is off, and `doctor` says how to
    /// turn it on. Not worth a word in the thread.
    #[error("not granted: {0}")]
    NotGranted(String),
    /// Filing was meant to work and did not: said in the thread and the log.
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait ChannelFiles: Send + Sync {
    /// Puts `bytes` into the channel's files as `name`, replacing a file of that name.
    async fn file(&self, place: &ChannelPlace, name: &str, bytes: &[u8]) -> Result<Filed, FilingError>;
}
