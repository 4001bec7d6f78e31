//! Microsoft 365 for Offboard: app-only tokens per customer tenant, a Graph and Exchange
//! Online client that paces itself and keeps request ids as evidence, read-only discovery
//! (core's [`Discovery`](offboard_core::snapshot::Discovery) port) and every offboarding
//! step (core's [`StepExecutor`](offboard_core::engine::StepExecutor) port).

pub mod auth;
pub mod config;
mod discovery;
pub mod error;
pub mod exchange;
pub mod files;
pub mod graph;
mod index;
pub mod pacing;
pub mod permissions;
pub mod secret;
#[cfg(feature = "sim")]
pub mod simulated;
mod steps;
pub mod trace;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use offboard_core::clock::Clock;
use offboard_core::domain::TenantId;
use offboard_core::plan::StepKind;

pub use config::{Credential, Endpoints, StoredCredential, TenantConfig, Tenants};
pub use secret::{Secret, Vault};

use crate::auth::{Resource, TokenSource};
use crate::exchange::Exchange;
use crate::graph::Graph;
use crate::pacing::{Limits, Pacer};
use crate::permissions::{Grants, Preflight};
use crate::transport::{CallPolicy, Transport};

/// How a step waits for what Microsoft has not finished: it looks after `first`, then
/// twice as long each time up to `cap`, holding no worker between looks.
#[derive(Debug, Clone, Copy)]
pub struct VerifyPolicy {
    pub first: Duration,
    pub cap: Duration,
    /// For a converted mailbox to report shared.
    pub deadline: Duration,
    /// For any other change to show on read-back.
    pub propagation: Duration,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self { first: Duration::from_secs(5), cap: Duration::from_secs(30), deadline: Duration::from_secs(15 * 60), propagation: Duration::from_secs(5 * 60) }
    }
}

impl VerifyPolicy {
    /// The wait before the look after `polls` earlier ones.
    pub fn look_again_in(&self, polls: i64) -> Duration {
        self.first.saturating_mul(1 << polls.clamp(0, 16) as u32).min(self.cap)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub call: CallPolicy,
    pub limits: Limits,
    pub verify: VerifyPolicy,
    /// How far ahead discovery looks for meetings the user organises.
    pub calendar_window_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self { call: CallPolicy::default(), limits: Limits::default(), verify: VerifyPolicy::default(), calendar_window_days: 730 }
    }
}

/// The Microsoft 365 adapter: one per process, shared by every tenant.
pub struct M365 {
    tenants: Tenants,
    graph: Graph,
    exchange: Exchange,
    tokens: Arc<TokenSource>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    counters: Arc<crate::transport::Counters>,
    transport: Arc<Transport>,
}

impl M365 {
    pub fn new(endpoints: Endpoints, tenants: Tenants, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        let tokens = Arc::new(TokenSource::new(endpoints.clone(), clock.clone()));
        let transport = Arc::new(Transport::new(tokens.clone(), Pacer::new(settings.limits), settings.call));
        let counters = transport.counters.clone();
        Self {
            counters,
            graph: Graph::new(transport.clone(), &endpoints.graph),
            exchange: Exchange::new(transport.clone(), &endpoints.exchange),
            transport,
            tenants,
            tokens,
            clock,
            settings,
        }
    }

    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    /// Calls made, throttled and failed since start.
    pub fn counters(&self) -> &crate::transport::Counters {
        &self.counters
    }

    /// The Exchange admin API rate each configured tenant is at, calls per second, as
    /// learned from its answers (Microsoft publishes no limit for it).
    pub fn exchange_rates(&self) -> Vec<(TenantId, f64)> {
        let rates = self.transport.pacer().exchange_rates();
        self.tenants.all().filter_map(|t| rates.iter().find(|(d, _)| *d == t.directory_id).map(|(_, r)| (t.key.clone(), *r))).collect()
    }

    /// Starts a tenant's Exchange rate from one learned before (see [`M365::exchange_rates`]).
    pub fn seed_exchange_rate(&self, tenant: &TenantId, per_s: f64) {
        if let Ok(t) = self.tenants.get(tenant) {
            self.transport.pacer().seed_exchange(&t.directory_id, per_s);
        }
    }

    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// One read from Graph and one from Exchange Online, for `doctor`: a token from Entra
    /// says nothing about whether the services answer.
    pub async fn reach(&self, tenant: &TenantId) -> Vec<(&'static str, Result<(), crate::error::ApiError>)> {
        let Ok(t) = self.tenants.get(tenant) else { return vec![] };
        let trace = crate::trace::Trace::new();
        let cx = crate::transport::Cx::new(t, &trace);
        let graph = self.graph.get(cx, "/organization?$select=id").await.map(|_| ());
        let read = crate::exchange::Command::new("Get-Mailbox", serde_json::json!({ "ResultSize": 1 }), None);
        let exchange = self.exchange.run(cx, &read, crate::transport::Replay::Safe).await.map(|_| ());
        vec![("Microsoft Graph", graph), ("Exchange Online", exchange)]
    }

    /// What the app can do in a tenant, from fresh tokens, against what `steps` need.
    pub async fn preflight(&self, tenant: &TenantId, steps: &[StepKind]) -> Preflight {
        let Ok(t) = self.tenants.get(tenant) else {
            return Preflight { tenant: tenant.to_string(), missing: vec![], sign_in_error: Some(format!("unknown tenant {tenant}")) };
        };
        // Roles are fixed when a token is issued: a grant made a minute ago needs a new one.
        self.tokens.invalidate(&t.directory_id);
        let mut grants = Grants::default();
        for r in [Resource::Graph, Resource::Exchange] {
            match self.tokens.token(t, r).await {
                Ok(tok) => grants.add(r, &tok),
                Err(e) => {
                    let mut p = permissions::check(tenant.as_str(), &grants, steps);
                    p.sign_in_error = Some(format!("{}: {e}", r.name()));
                    return p;
                }
            }
        }
        permissions::check(tenant.as_str(), &grants, steps)
    }
}
