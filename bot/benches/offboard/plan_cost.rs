//! B6: what a plan costs as the tenant grows. The leaver's discovery is measured in a
//! tenant of 50 mailboxes and one of 5,000 (500 in the smoke run): its requests must not
//! depend on the size. The delegation index that replaces the per-mailbox scan is then
//! built for the large tenant, and its cost per mailbox reported.

use std::sync::Arc;
use std::time::Instant;

use offboard_core::clock::{Clock, SystemClock};
use offboard_core::delegations::{Indexer, MailboxIndexSource};
use offboard_core::domain::{TenantId, Upn};
use offboard_core::snapshot::UserRef;
use offboard_m365::pacing::Limits;
use offboard_m365::trace::Trace;
use offboard_m365::{Credential, Endpoints, M365, Secret, Settings, TenantConfig, Tenants};
use offboard_m365_sim::{Scenario, Sim, SimConfig};
use offboard_testkit::TestDb;
use serde_json::json;

use crate::{Outcome, Row};

const TENANT: &str = "bench000.example";

struct Sized {
    sim: Sim,
    m365: Arc<M365>,
}

async fn tenant_of(mailboxes: u32) -> Sized {
    let mut scenario = Scenario::generate(1, mailboxes);
    scenario.tenants[0].apps = Scenario::contoso().tenants[0].apps.clone();
    let client = scenario.tenants[0].apps[0].client_id.clone();
    // No throttling: this measures how many requests, not how fast Microsoft lets them in.
    let sim = Sim::start(&scenario, SimConfig { throttling: false, ..SimConfig::default() }).await.expect("the simulated tenant");
    let secret = sim.add_secret(TENANT, &client).expect("the app");
    let u = sim.urls();
    let config = TenantConfig {
        key: TenantId::parse(TENANT).expect("tenant"),
        directory_id: sim.tenant(TENANT, |t| t.id.clone()).expect("tenant id"),
        client_id: client,
        credential: Credential::Secret(Secret::new(secret)),
        domains: vec![TENANT.into()],
    };
    let settings = Settings { limits: Limits { exchange_per_s: 2_000.0, ..Limits::default() }, ..Settings::default() };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let m365 = Arc::new(M365::new(Endpoints::at(&u.login, &u.graph, &u.exchange), Tenants::new([config]), clock, settings));
    Sized { sim, m365 }
}

/// Requests one plan's discovery makes (all, and to Exchange).
async fn discovery_cost(t: &Sized) -> (u64, u64) {
    let before = t.sim.stats().exchange_requests;
    let trace = Trace::new();
    let upn = UserRef::Upn(Upn::parse(&format!("user00001@{TENANT}")).expect("upn"));
    t.m365.discover_traced(&TenantId::parse(TENANT).expect("tenant"), &upn, &trace).await.expect("discovery");
    (trace.requests(), t.sim.stats().exchange_requests - before)
}

pub async fn run(full: bool) -> Outcome {
    let large = if full { 5_000 } else { 500 };
    let mut out = Outcome::default();
    let small_t = tenant_of(50).await;
    let large_t = tenant_of(large).await;
    let small = discovery_cost(&small_t).await;
    let big = discovery_cost(&large_t).await;
    out.check(small == big, || format!("a plan costs {small:?} requests in a tenant of 50 mailboxes but {big:?} in one of {large}"));
    out.rows.push(Row {
        metric: "requests per plan, 50 mailboxes".into(),
        measured: format!("{} ({} to Exchange)", small.0, small.1),
        target: "the same at any size".into(),
    });
    out.rows.push(Row {
        metric: format!("requests per plan, {large} mailboxes"),
        measured: format!("{} ({} to Exchange)", big.0, big.1),
        target: "the same at any size".into(),
    });

    // The index that replaces the per-mailbox scan, built once for the large tenant.
    let db = TestDb::sqlite();
    let store = db.store().await;
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let mut indexer = Indexer::new(store.clone(), large_t.m365.clone() as Arc<dyn MailboxIndexSource>, Arc::new(SystemClock), vec![tenant.clone()]);
    indexer.per_tick = 250;
    let before = large_t.sim.stats().exchange_requests;
    let t0 = Instant::now();
    for (_, e) in indexer.build_all().await {
        out.errors.push(format!("the index was not built: {e}"));
    }
    let took = t0.elapsed();
    let requests = large_t.sim.stats().exchange_requests - before;
    let coverage = store.index_coverage(&tenant).await.expect("coverage");
    out.check(coverage.complete() && coverage.mailboxes == large as usize + 1, || format!("the index covers {coverage:?}"));
    let per_mailbox = requests as f64 / coverage.mailboxes.max(1) as f64;
    out.rows.push(Row {
        metric: format!("index build, {} mailboxes", coverage.mailboxes),
        measured: format!("{requests} Exchange requests ({per_mailbox:.2} per mailbox), {:.1} s unthrottled", took.as_secs_f64()),
        target: "reported; in service a few mailboxes a minute".into(),
    });
    out.json.insert(
        "b6".into(),
        json!({ "small_mailboxes": 50, "large_mailboxes": large, "requests_small": small.0, "requests_large": big.0,
                "exchange_small": small.1, "exchange_large": big.1, "index_requests": requests, "index_mailboxes": coverage.mailboxes,
                "index_seconds": took.as_secs_f64() }),
    );
    store.close().await;
    db.cleanup().await;
    out
}
