//! Discord for Offboard, over HTTP interactions (no gateway):
//!
//! - [`verify`]: Ed25519 signatures on every interaction, with a timestamp window.
//! - [`wire`]: the modal components serenity 0.12 cannot build or read (Label, type 18).
//! - [`commands`]: the slash commands, defined once for registration and parsing.
//! - [`views`]: core's wizard pages as modals, its replies as messages.
//! - [`server`]: the interactions endpoint.
//! - [`surface`]: core's `ChatSurface`: the approval message, the run's thread, the PDF.
//! - [`api`]: Discord's REST API: command registration, follow-ups, channel messages.
//! - [`fake`]: a local Discord for tests and the demo.

pub mod api;
pub mod commands;
pub mod fake;
pub mod server;
pub mod surface;
pub mod verify;
pub mod views;
pub mod wire;
