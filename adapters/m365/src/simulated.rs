//! The client wired to a simulated Microsoft 365 (feature `sim`): every tenant of the
//! scenario with an app registration gets a fresh client secret and a configured tenant,
//! exactly as an operator would configure a real one. Used by `offboard demo` and tests.

use std::sync::Arc;

use offboard_core::clock::Clock;
use offboard_core::domain::TenantId;
use offboard_core::policy::TenantPolicy;
use offboard_core::service::Tenant;
use offboard_m365_sim::{Scenario, Sim, SimConfig};

use crate::{Credential, Endpoints, M365, Secret, Settings, TenantConfig, Tenants};

pub struct Simulated {
    pub sim: Sim,
    pub m365: Arc<M365>,
    /// The scenario's tenants as core's service takes them, keyed by their first domain.
    pub tenants: Vec<Tenant>,
    /// The client secret each tenant's app signs in with (tests search outputs for them).
    pub secrets: Vec<(TenantId, Secret)>,
}

pub async fn start(scenario: &Scenario, config: SimConfig, clock: Arc<dyn Clock>, settings: Settings, policy: TenantPolicy) -> Result<Simulated, String> {
    let sim = Sim::start(scenario, config).await.map_err(|e| format!("the simulated tenant did not start: {e}"))?;
    let mut configs = Vec::new();
    let mut tenants = Vec::new();
    let mut secrets = Vec::new();
    for t in &scenario.tenants {
        let Some(domain) = t.domains.first() else { continue };
        let Some((directory_id, app)) = sim.tenant(domain, |x| (x.id.clone(), x.apps.first().map(|a| a.client_id.clone()))) else { continue };
        let Some(app) = app else { continue };
        let Some(secret) = sim.add_secret(&directory_id, &app) else { continue };
        let key = TenantId::parse(domain).map_err(|e| e.to_string())?;
        secrets.push((key.clone(), Secret::new(secret.clone())));
        configs.push(TenantConfig {
            key: key.clone(),
            directory_id,
            client_id: app,
            credential: Credential::Secret(Secret::new(secret)),
            domains: t.domains.clone(),
        });
        tenants.push(Tenant { id: key, name: t.name.clone(), domains: t.domains.clone(), policy: policy.clone() });
    }
    let u = sim.urls();
    let m365 = Arc::new(M365::new(Endpoints::at(&u.login, &u.graph, &u.exchange), Tenants::new(configs), clock, settings));
    Ok(Simulated { sim, m365, tenants, secrets })
}
