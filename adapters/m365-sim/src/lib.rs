//! A stateful simulated Microsoft 365: Entra's token endpoint, Microsoft Graph v1.0 and
//! Exchange Online's admin API, served over real HTTP on loopback from a scenario file.
//!
//! It imitates what offboarding depends on: verbatim errors, permissions per route and
//! Entra-role rules, cross-effects (licences and mailboxes, synced objects, group-inherited
//! licences, the conversion race), `$batch`, paging, delta, throttling with decimal
//! Retry-After, latency and faults. Every change lands in an effect ledger that tests and
//! benchmarks read through [`Sim`] or the control API.

pub mod cli;
pub mod clock;
pub mod exchange;
pub mod faults;
pub mod graph;
pub mod odata;
pub mod routes;
pub mod scenario;
pub mod server;
pub mod throttle;
pub mod token;
pub mod world;

pub use clock::SimClock;
pub use faults::{FaultRates, Latency};
pub use scenario::Scenario;
pub use server::{Sim, SimConfig, Stats, Urls};
pub use throttle::Limits;
pub use world::Effect;
