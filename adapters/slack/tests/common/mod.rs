#![allow(dead_code)]
//! A Slack world: the simulated tenant, the Microsoft 365 client, a store, the adapter's
//! endpoints on loopback, the fake Slack Web API, and a driver that signs requests as
//! Slack does.

use std::sync::Arc;
use std::time::Duration;

use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_core::request::Presets;
use offboard_core::secret::Secret;
use offboard_core::service::Offboarding;
use offboard_core::store::Store;
use offboard_m365::simulated::Simulated;
use offboard_m365::{M365, Settings};
use offboard_m365_sim::{Scenario, Sim, SimConfig};
use offboard_slack::api::SlackApi;
use offboard_slack::fake::{Driver, FakeSlack};
use offboard_slack::server::SlackApp;
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::access;
use serde_json::{Value as Json, json};

pub const CONTOSO: &str = "contoso.com";
pub const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const BOT_TOKEN: &str = "xoxb-17-fake-bot-token";
pub const APPROVALS: &str = "C0APPROVALS";

pub struct World {
    pub sim: Sim,
    pub m365: Arc<M365>,
    pub db: TestDb,
    pub store: Store,
    pub svc: Arc<Offboarding>,
    pub slack: FakeSlack,
    pub api: Arc<SlackApi>,
    pub url: String,
    pub http: reqwest::Client,
    pub clock: Arc<dyn Clock>,
    pub driver: Driver,
}

impl World {
    pub async fn new() -> Self {
        Self::with_access(access()).await
    }

    pub async fn with_access(access: offboard_core::policy::Access) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
        let cfg = SimConfig { conversion_delay: Duration::from_millis(200), ..SimConfig::default() };
        let Simulated { sim, m365, tenants, .. } =
            offboard_m365::simulated::start(&Scenario::contoso(), cfg, clock.clone(), Settings::default(), policy).await.unwrap();
        let db = TestDb::sqlite();
        let store = db.store().await;
        let svc = Arc::new(Offboarding::new(store.clone(), m365.clone(), clock.clone(), access, tenants, Presets::default()));
        let slack = FakeSlack::start(BOT_TOKEN).await;
        let api = Arc::new(SlackApi::new(&slack.api_url(), &Secret::new(BOT_TOKEN)).unwrap());
        let app = SlackApp::new(svc.clone(), api.clone(), m365.clone(), Secret::new(SIGNING_SECRET), APPROVALS, clock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = app.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let driver = Driver::new(url.clone(), Secret::new(SIGNING_SECRET));
        World { sim, m365, db, store, svc, slack, api, url, http: reqwest::Client::new(), clock, driver }
    }

    pub async fn signed_with(&self, path: &str, body: String, ts: i64, secret: &str) -> reqwest::Response {
        self.driver.signed_with(path, body, ts, &Secret::new(secret)).await.unwrap()
    }

    pub async fn signed(&self, path: &str, body: String) -> reqwest::Response {
        self.driver.signed(path, body).await.unwrap()
    }

    pub fn command_body(user: &str, text: &str, trigger: &str) -> String {
        Driver::command_body(user, text, trigger)
    }

    pub async fn command(&self, user: &str, text: &str) -> reqwest::Response {
        self.driver.command(user, text, &self.slack.issue_trigger()).await.unwrap()
    }

    pub async fn interact(&self, payload: Json) -> reqwest::Response {
        self.driver.interact(&payload).await.unwrap()
    }

    /// A click on a button of a message in the approvals channel.
    pub fn click(user: &str, trigger: &str, ts: &str, action: &str, value: &str) -> Json {
        Driver::click(user, trigger, APPROVALS, ts, action, value)
    }

    pub fn submit(user: &str, view_id: &str, view: &Json, values: Json) -> Json {
        Driver::submit(user, view_id, view, values)
    }

    /// Waits until `f` holds, or fails after `secs`.
    pub async fn until(&self, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn text(v: &str) -> Json {
    json!({ "type": "plain_text_input", "value": v })
}

pub fn chosen(values: &[&str]) -> Json {
    json!({ "type": "checkboxes", "selected_options": values.iter().map(|v| json!({ "value": v })).collect::<Vec<_>>() })
}

pub fn selected(v: &str) -> Json {
    json!({ "type": "static_select", "selected_option": { "value": v } })
}
