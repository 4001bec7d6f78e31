//! The offboarding engine, independent of any chat platform or HTTP server.
//!
//! Layout:
//! - [`domain`]: identifiers that parse (UPN, tenant, run id, step key, role, preset).
//! - [`request`]: the wizard's options, their validation, presets and schedules.
//! - [`handover`]: texts said on the leaver's behalf, with literal placeholders.
//! - [`snapshot`]: what discovery found; the [`snapshot::Discovery`] port.
//! - [`delegations`]: the index of rights on other mailboxes, kept by the scheduler.
//! - [`plan`]: the dependency graph of steps, previews and the plan hash.
//! - [`policy`]: roles, tenant scope and approval rules.
//! - [`run`]: run and step states, outcomes, and how a run settles.
//! - [`store`]: SQLite and Postgres persistence, the step queue, outbox and audit tables.
//! - [`engine`]: the durable step runner and the [`engine::StepExecutor`] port.
//! - [`scheduler`]: scheduled starts, approval expiry and escalation, cron jobs.
//! - [`outbox`]: events for chat adapters and notifiers.
//! - [`audit`]: the hash chain and its verifier.
//! - [`report`]: the compliance report's content, laid out as neutral blocks.
//! - [`templates`]: operator-overridable texts (minijinja), checked at start.
//! - [`chat`]: the chat wing: the conversation every adapter calls (commands, the wizard,
//!   clicks), what they render, the surface port and the relay that drives it.
//! - [`secret`]: secrets that never print.
//! - [`service`]: the calls every front end makes, with authorisation.
//! - [`testing`]: in-memory port implementations.

pub mod audit;
pub mod chat;
pub mod clock;
pub mod delegations;
pub mod domain;
pub mod engine;
pub mod handover;
pub mod outbox;
pub mod plan;
pub mod policy;
pub mod report;
pub mod request;
pub mod run;
pub mod scheduler;
pub mod secret;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod templates;
pub mod testing;
