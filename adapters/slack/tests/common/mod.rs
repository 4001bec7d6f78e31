#![allow(dead_code)]
//! A Slack world: the simulated tenant, the Microsoft 365 client, a store, the adapter's
//! endpoints on loopback, the fake Slack Web API, and a driver that signs requests as
//! Slack does.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::domain::TenantId;
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_core::request::Presets;
use offboard_core::secret::Secret;
use offboard_core::service::{Offboarding, Tenant};
use offboard_core::store::Store;
use offboard_m365::{Credential, Endpoints, M365, Settings, TenantConfig, Tenants};
use offboard_m365_sim::{Scenario, Sim, SimConfig};
use offboard_slack::api::SlackApi;
use offboard_slack::fake::FakeSlack;
use offboard_slack::server::SlackApp;
use offboard_slack::signature::sign;
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::access;
use serde_json::{Value as Json, json};

pub const CONTOSO: &str = "contoso.com";
pub const CONTOSO_ID: &str = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
pub const APP: &str = "9b1f4c3e-2d5a-4f6b-8c7d-1e2f3a4b5c6d";
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
}

impl World {
    pub async fn new() -> Self {
        Self::with_access(access()).await
    }

    pub async fn with_access(access: offboard_core::policy::Access) -> Self {
        let sim = Sim::start(&Scenario::contoso(), SimConfig { conversion_delay: Duration::from_millis(200), ..SimConfig::default() }).await.unwrap();
        let secret = sim.add_secret(CONTOSO, APP).unwrap();
        let u = sim.urls();
        let tenant_cfg = TenantConfig {
            key: TenantId::parse(CONTOSO).unwrap(),
            directory_id: CONTOSO_ID.into(),
            client_id: APP.into(),
            credential: Credential::Secret(Secret::new(secret)),
            domains: vec![CONTOSO.into()],
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let m365 = Arc::new(M365::new(Endpoints::at(&u.login, &u.graph, &u.exchange), Tenants::new([tenant_cfg]), clock.clone(), Settings::default()));
        let db = TestDb::sqlite();
        let store = db.store().await;
        let tenant = Tenant {
            id: TenantId::parse(CONTOSO).unwrap(),
            name: "Contoso".into(),
            domains: vec![CONTOSO.into()],
            policy: TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() },
        };
        let svc = Arc::new(Offboarding::new(store.clone(), m365.clone(), clock.clone(), access, vec![tenant], Presets::default()));
        let slack = FakeSlack::start(BOT_TOKEN).await;
        let api = Arc::new(SlackApi::new(&slack.api_url(), &Secret::new(BOT_TOKEN)).unwrap());
        let app = SlackApp::new(svc.clone(), api.clone(), m365.clone(), Secret::new(SIGNING_SECRET), APPROVALS, clock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = app.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        World { sim, m365, db, store, svc, slack, api, url, http: reqwest::Client::new(), clock }
    }

    /// POSTs `body` to `path`, signed as Slack would at `ts` (with `secret`).
    pub async fn signed_with(&self, path: &str, body: String, ts: i64, secret: &str) -> reqwest::Response {
        let sig = sign(&Secret::new(secret), ts, body.as_bytes());
        self.http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn signed(&self, path: &str, body: String) -> reqwest::Response {
        self.signed_with(path, body, Utc::now().timestamp(), SIGNING_SECRET).await
    }

    pub fn command_body(user: &str, text: &str, trigger: &str) -> String {
        serde_urlencoded::to_string([
            ("token", "deprecated"),
            ("team_id", "T0FAKE"),
            ("channel_id", "C0IT"),
            ("user_id", user),
            ("user_name", &format!("{user} name")),
            ("command", "/offboard"),
            ("text", text),
            ("response_url", "http://127.0.0.1:9/response"),
            ("trigger_id", trigger),
            ("api_app_id", "A0OFFBOARD"),
        ])
        .unwrap()
    }

    pub async fn command(&self, user: &str, text: &str) -> reqwest::Response {
        let trigger = self.slack.issue_trigger();
        self.signed("/slack/commands", Self::command_body(user, text, &trigger)).await
    }

    pub async fn interact(&self, payload: Json) -> reqwest::Response {
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        self.signed("/slack/interactions", body).await
    }

    /// A click on a button of a message in the approvals channel.
    pub fn click(user: &str, trigger: &str, ts: &str, action: &str, value: &str) -> Json {
        json!({
            "type": "block_actions",
            "user": { "id": user, "username": format!("{user} name"), "team_id": "T0FAKE" },
            "team": { "id": "T0FAKE" },
            "api_app_id": "A0OFFBOARD",
            "trigger_id": trigger,
            "container": { "type": "message", "message_ts": ts, "channel_id": APPROVALS },
            "channel": { "id": APPROVALS },
            "message": { "ts": ts },
            "response_url": "http://127.0.0.1:9/response",
            "actions": [{ "type": "button", "action_id": action, "block_id": "decision", "value": value, "action_ts": "1.2" }],
        })
    }

    /// A `view_submission` of the view `view_id` with the given state values.
    pub fn submit(user: &str, view_id: &str, view: &Json, values: Json) -> Json {
        json!({
            "type": "view_submission",
            "user": { "id": user, "username": format!("{user} name"), "team_id": "T0FAKE" },
            "team": { "id": "T0FAKE" },
            "api_app_id": "A0OFFBOARD",
            "trigger_id": format!("sub.{view_id}.{}", view["private_metadata"]),
            "view": {
                "id": view_id,
                "root_view_id": view_id,
                "callback_id": view["callback_id"],
                "private_metadata": view["private_metadata"],
                "hash": "h",
                "state": { "values": values },
            },
        })
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
