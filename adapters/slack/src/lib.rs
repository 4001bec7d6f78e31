//! Slack: the whole offboarding loop inside Slack.
//!
//! - [`server`]: the request endpoints (slash command, interactivity, options), signature
//!   first, answered at once with the work done off the request path.
//! - [`blocks`]: core's neutral views as Block Kit JSON.
//! - [`api`]: the Web API calls, through slack-morphism.
//! - [`surface`]: core's `ChatSurface` port on Slack (approval channel, run threads, uploads).
//! - [`signature`]: v0 request signatures and replay refusal.
//! - [`memberships`]: the user groups each user is in, read in the background.
//! - [`fake`]: a fake Slack Web API over real HTTP, for tests and the demo.

pub mod api;
pub mod blocks;
pub mod fake;
pub mod memberships;
pub mod server;
pub mod signature;
pub mod surface;
