#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use offboard_core::clock::Clock;
use offboard_core::domain::{RunId, TenantId, Upn};
use offboard_core::engine::{StepContext, StepError, StepExecutor};
use offboard_core::plan::{self, Plan, PlanRules, StepKind};
use offboard_core::request::{Options, Request};
use offboard_core::run::StepOutcome;
use offboard_core::snapshot::{UserRef, UserSnapshot};
use offboard_m365::pacing::Limits;
use offboard_m365::trace::Trace;
use offboard_m365::transport::CallPolicy;
use offboard_m365::{Credential, Endpoints, M365, Secret, Settings, TenantConfig, Tenants, VerifyPolicy};
use offboard_m365_sim::{Scenario, Sim, SimClock, SimConfig};

pub const CONTOSO: &str = "contoso.com";
pub const CONTOSO_ID: &str = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
pub const APP: &str = "9b1f4c3e-2d5a-4f6b-8c7d-1e2f3a4b5c6d";
pub const ALICE: &str = "alice.able@contoso.com";

/// The simulator's idea of now, for token and assertion times.
pub struct SimTime(pub SimClock);

impl Clock for SimTime {
    fn now(&self) -> DateTime<Utc> {
        self.0.wall()
    }
}

pub struct World {
    pub sim: Sim,
    pub m365: Arc<M365>,
}

pub fn fast_settings() -> Settings {
    Settings {
        call: CallPolicy { backoff: Duration::from_millis(20), ..CallPolicy::default() },
        limits: Limits::default(),
        verify: VerifyPolicy {
            first: Duration::from_millis(50),
            cap: Duration::from_millis(400),
            deadline: Duration::from_secs(20),
            propagation: Duration::from_secs(20),
        },
        calendar_window_days: 730,
    }
}

impl World {
    pub async fn new() -> Self {
        Self::with(SimConfig { conversion_delay: Duration::from_millis(300), ..SimConfig::default() }, fast_settings()).await
    }

    pub async fn with(cfg: SimConfig, settings: Settings) -> Self {
        Self::scenario(&Scenario::contoso(), cfg, settings).await
    }

    pub async fn scenario(scenario: &Scenario, cfg: SimConfig, settings: Settings) -> Self {
        let sim = Sim::start(scenario, cfg).await.expect("simulator starts");
        let secret = sim.add_secret(CONTOSO, APP).expect("app");
        let m365 = Self::adapter(&sim, Credential::Secret(Secret::new(secret)), settings);
        Self { sim, m365: Arc::new(m365) }
    }

    pub fn adapter(sim: &Sim, credential: Credential, settings: Settings) -> M365 {
        let u = sim.urls();
        let tenant = TenantConfig {
            key: TenantId::parse(CONTOSO).unwrap(),
            directory_id: CONTOSO_ID.into(),
            client_id: APP.into(),
            credential,
            domains: vec![CONTOSO.into()],
        };
        M365::new(Endpoints::at(&u.login, &u.graph, &u.exchange), Tenants::new([tenant]), Arc::new(SimTime(sim.clock().clone())), settings)
    }

    pub fn tenant() -> TenantId {
        TenantId::parse(CONTOSO).unwrap()
    }

    /// Discovery, with the user's rights on other mailboxes as the delegation index has
    /// them once it has scanned the tenant.
    pub async fn discover(&self, upn: &str) -> UserSnapshot {
        use offboard_core::delegations::{MailboxIndexSource, Trustee, grants_for, merge};
        let mut s = self.discover_traced(upn).await.0;
        let listed = self.m365.list_mailboxes(&Self::tenant()).await.expect("the mailbox listing");
        let all: Vec<String> = listed.iter().map(|l| l.mailbox.clone()).collect();
        let scans = self.m365.scan_mailboxes(&Self::tenant(), &all).await.expect("the mailbox scan");
        let grants = grants_for(&listed, &scans, &[Trustee::Address(s.upn.to_string()), Trustee::Name(s.display_name.clone())]);
        merge(&mut s, &grants);
        s
    }

    pub async fn discover_traced(&self, upn: &str) -> (UserSnapshot, Trace) {
        let trace = Trace::new();
        let s = self.m365.discover_traced(&Self::tenant(), &UserRef::Upn(Upn::parse(upn).unwrap()), &trace).await.expect("discovery");
        (s, trace)
    }

    pub fn plan(&self, user: &UserSnapshot, options: Options) -> Plan {
        let req = Request::now(Self::tenant(), user.upn.to_string(), options);
        plan::build(&req.validate(Utc::now()).expect("valid request"), user, PlanRules::default())
    }

    pub fn context(&self, user: &UserSnapshot, plan: &Plan, kind: StepKind) -> StepContext {
        let step = plan.steps.iter().find(|s| s.kind == kind).unwrap_or_else(|| panic!("{kind:?} is planned")).clone();
        StepContext {
            run_id: RunId::generate(),
            tenant: Self::tenant(),
            target_id: user.id.to_string(),
            attempt: 1,
            polls: 0,
            waiting_since: None,
            emergency: false,
            step,
        }
    }

    /// Runs one planned step as the runner would, honouring a planned skip and looking
    /// again, as asked, while it answers "not yet".
    pub async fn step(&self, user: &UserSnapshot, options: Options, kind: StepKind) -> Result<StepOutcome, StepError> {
        Ok(self.step_looks(user, options, kind).await?.0)
    }

    /// [`World::step`], and how many looks answered "not yet".
    pub async fn step_looks(&self, user: &UserSnapshot, options: Options, kind: StepKind) -> Result<(StepOutcome, i64), StepError> {
        let plan = self.plan(user, options);
        let mut cx = self.context(user, &plan, kind);
        if let Some(reason) = &cx.step.skip {
            return Ok((StepOutcome::Skipped { reason: reason.clone(), warning: false }, 0));
        }
        loop {
            match self.m365.execute(&cx).await {
                Err(StepError::NotYet { look_again_in, .. }) => {
                    assert!(!look_again_in.is_zero(), "a look is paced");
                    cx.waiting_since.get_or_insert_with(chrono::Utc::now);
                    cx.polls += 1;
                    tokio::time::sleep(look_again_in).await;
                }
                other => return other.map(|o| (o, cx.polls)),
            }
        }
    }

    pub fn user_id(&self, upn: &str) -> String {
        self.sim.tenant(CONTOSO, |t| t.user_id(upn)).flatten().expect("user exists")
    }

    pub fn sim_user<R>(&self, upn: &str, f: impl FnOnce(&offboard_m365_sim::world::Tenant, &str) -> R) -> R {
        let id = self.user_id(upn);
        self.sim.tenant(CONTOSO, |t| f(t, &id)).expect("tenant")
    }
}

pub fn succeeded(r: Result<StepOutcome, StepError>) -> String {
    match r {
        Ok(StepOutcome::Succeeded { verified, request_ids, .. }) => {
            assert!(!request_ids.is_empty(), "a succeeded step carries Microsoft's request ids");
            verified
        }
        other => panic!("expected success, got {other:?}"),
    }
}

pub fn skipped(r: Result<StepOutcome, StepError>) -> String {
    match r {
        Ok(StepOutcome::Skipped { reason, .. }) => reason,
        other => panic!("expected a skip, got {other:?}"),
    }
}

/// Microsoft's SDK route list, keyed by template.
pub fn sdk_routes() -> BTreeMap<String, Vec<String>> {
    let path = std::env::var("OFFBOARD_GRAPH_ROUTES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testkit/fixtures/graph/graph-v1.0-routes.json"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).expect("route fixture")).unwrap();
    v["routes"].as_object().unwrap().iter().map(|(k, m)| (k.clone(), m.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect())).collect()
}

/// Routes outside the SDK list the client may use; the simulator's `OUTSIDE_SDK` gives
/// each one's source. (Its other entry, a member DELETE without `/$ref`, deletes the user.)
const CLIENT_OUTSIDE_SDK: &[(&str, &str)] = &[("POST", "/$batch"), ("PUT", "/drives/{id}/items/{id}:/{id}:/content")];

/// Whether a wire request matches a route of the SDK list, or one of [`CLIENT_OUTSIDE_SDK`].
pub fn in_sdk(sdk: &BTreeMap<String, Vec<String>>, method: &str, path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let fits = |template: &str| {
        let t: Vec<&str> = template.trim_matches('/').split('/').collect();
        t.len() == segs.len()
            && t.iter()
                .zip(&segs)
                .all(|(t, s)| *t == "{id}" || (*t == "{id}:" && s.ends_with(':')) || t.trim_end_matches("()").eq_ignore_ascii_case(s.trim_end_matches("()")))
    };
    CLIENT_OUTSIDE_SDK.iter().any(|(m, t)| m.eq_ignore_ascii_case(method) && fits(t))
        || sdk.iter().any(|(template, methods)| methods.iter().any(|m| m.eq_ignore_ascii_case(method)) && fits(template))
}

/// Every test's client traffic is checked when its world ends: each Graph request against
/// Microsoft's SDK route list, and no retry sent before a Retry-After expired.
impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let sdk = sdk_routes();
        let requests = self.sim.graph_requests();
        let unknown: Vec<&(String, String)> = requests.iter().filter(|(m, p)| !in_sdk(&sdk, m, p)).collect();
        assert!(unknown.is_empty(), "requests outside Microsoft's SDK route list: {unknown:?}");
        assert_eq!(self.sim.stats().early_retries, 0, "a retry was sent before its Retry-After expired");
    }
}
