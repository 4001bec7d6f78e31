//! The Microsoft Teams adapter: Bot Framework activities, verified before they are read.
//!
//! - [`auth`]: the bearer token on every incoming activity, checked as Bot Framework's
//!   connector authentication requires (RS256 keys from the OpenID metadata, endorsements,
//!   issuer, audience, lifetime with five minutes of skew, the service URL claim).
//! - [`fake`]: Bot Framework's OpenID metadata and key set over HTTP, and a channel that
//!   mints tokens, for tests.

pub mod auth;
pub mod fake;
