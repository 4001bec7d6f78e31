//! The Microsoft Teams adapter: Bot Framework activities, verified before they are read.
//!
//! - [`auth`]: the bearer token on every incoming activity, checked as Bot Framework's
//!   connector authentication requires (RS256 keys from the OpenID metadata, endorsements,
//!   issuer, audience, lifetime with five minutes of skew, the service URL claim).
//! - [`cards`]: core's views as Adaptive Cards 1.5.
//! - [`connector`]: the Bot Connector v3 REST API and the bot's token.
//! - [`server`]: the messaging endpoint: install events, commands, Approve and Reject.
//! - [`surface`]: core's `ChatSurface` on Teams (threads are reply chains, the report a
//!   link).
//! - [`fake`]: Bot Framework over HTTP for tests: OpenID metadata and keys, token minting,
//!   the bot's token endpoint and the connector's routes.

pub mod auth;
pub mod cards;
pub mod connector;
pub mod fake;
pub mod server;
pub mod surface;
