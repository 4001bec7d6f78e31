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
    pub app: Arc<SlackApp>,
}

impl World {
    pub async fn new() -> Self {
        Self::with_access(access()).await
    }

    pub async fn with_access(access: offboard_core::policy::Access) -> Self {
        Self::build(access, None, TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() }).await
    }

    /// Contoso with this policy (say, its line manager approving).
    pub async fn with_policy(policy: TenantPolicy) -> Self {
        Self::build(access(), None, policy).await
    }

    /// The adapter's Web API calls go to `api_url` (one that never answers, say) instead of
    /// the fake Slack.
    pub async fn with_silent_slack(api_url: &str) -> Self {
        Self::build(access(), Some(api_url), TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() }).await
    }

    async fn build(access: offboard_core::policy::Access, api_url: Option<&str>, policy: TenantPolicy) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let cfg = SimConfig { conversion_delay: Duration::from_millis(200), ..SimConfig::default() };
        let Simulated { sim, m365, tenants, .. } =
            offboard_m365::simulated::start(&Scenario::contoso(), cfg, clock.clone(), Settings::default(), policy).await.unwrap();
        let db = TestDb::sqlite();
        let store = db.store().await;
        // The delegation index, as the scheduler keeps it in a running installation.
        let ids = tenants.iter().map(|t| t.id.clone()).collect();
        let failed = offboard_core::delegations::Indexer::new(store.clone(), m365.clone(), clock.clone(), ids).build_all().await;
        assert!(failed.iter().all(|(t, _)| t.as_str() != CONTOSO), "{failed:?}");
        let slack = FakeSlack::start(BOT_TOKEN).await;
        let api = Arc::new(SlackApi::new(api_url.unwrap_or(&slack.api_url()), &Secret::new(BOT_TOKEN)).unwrap());
        let identities: Vec<Arc<dyn offboard_core::service::ChatIdentities>> = vec![Arc::new(offboard_slack::surface::SlackIdentities(api.clone()))];
        let svc = Arc::new(Offboarding::new(store.clone(), m365.clone(), clock.clone(), access, tenants, Presets::default()).with_identities(identities));
        let app = SlackApp::new(svc.clone(), api.clone(), m365.clone(), Secret::new(SIGNING_SECRET), routes(), clock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = app.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        tokio::spawn(app.clone().memberships_until(std::future::pending::<()>()));
        let driver = Driver::new(url.clone(), Secret::new(SIGNING_SECRET));
        World { sim, m365, db, store, svc, slack, api, url, http: reqwest::Client::new(), clock, driver, app }
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

    /// Posts a signed `payload=` form to `path` and returns the JSON answer.
    pub async fn interact_path(&self, path: &str, payload: Json) -> Json {
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let response = self.signed(path, body).await;
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
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

/// Every tenant's approvals in the approvals channel.
pub fn routes() -> offboard_core::chat::relay::Routes {
    let mut r = offboard_core::chat::relay::Routes::default();
    r.default_for("slack", APPROVALS);
    r
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

/// The relay, a worker and a report signer, running until the test ends; returns the key
/// reports are signed with.
pub fn start_engine(w: &World, reports_dir: &std::path::Path) -> offboard_report::PublicKey {
    use offboard_core::engine::{RetryPolicy, Worker, WorkerConfig};
    let key = offboard_report::ReportKey::generate();
    let public = key.public();
    let reports =
        Arc::new(offboard_report::RunReports { evidence: Arc::new(offboard_report::Evidence::new(key, reports_dir)), store: w.store.clone(), links: None });
    let templates = Arc::new(offboard_core::templates::Templates::load(None, &[]).unwrap());
    let surface = Arc::new(offboard_slack::surface::SlackSurface::new(w.api.clone()));
    let relay = offboard_core::chat::relay::Relay::new(w.store.clone(), surface, "slack:T0FAKE", routes(), Some(reports), templates, w.clock.clone());
    tokio::spawn(async move { relay.run_until(Duration::from_millis(30), std::future::pending::<()>()).await });
    let config = WorkerConfig {
        poll: Duration::from_millis(20),
        retry: RetryPolicy { initial: Duration::from_millis(50), ..RetryPolicy::default() },
        ..WorkerConfig::default()
    };
    let worker = Worker::new(w.store.clone(), w.m365.clone(), w.clock.clone(), config);
    tokio::spawn(async move { worker.run_until_stopped(std::future::pending::<()>()).await });
    public
}

/// What the wizard answered once its last page was submitted.
pub enum Requested {
    /// The plan was posted: the approval message, with the run id.
    Posted(offboard_slack::fake::Message, offboard_core::domain::RunId),
    /// The wizard's closing words instead (no such user, a run already open).
    Answered(String),
}

impl World {
    /// `/offboard USER` by `who`, every page submitted as shown except `changes[page]`.
    /// Field errors fail the test, with the page and the errors.
    pub async fn request(&self, who: &str, user: &str, changes: &[(usize, Json)]) -> Requested {
        let before = self.slack.views().len();
        let r = self.command(who, user).await;
        assert_eq!(r.status(), 200);
        self.until(3, "the wizard to open", || self.slack.views().len() > before).await;
        let (view_id, _) = self.slack.views().remove(before);
        for page in 0..5 {
            let view = self.slack.view(&view_id).unwrap();
            let change = changes.iter().find(|(p, _)| *p == page).map(|(_, c)| c.clone()).unwrap_or(json!({}));
            let body: Json = self.interact(Driver::submit(who, &view_id, &view, Driver::shown(&view, change))).await.json().await.unwrap();
            assert_ne!(body["response_action"], "errors", "page {page}: {body}");
            self.slack.put_view(&view_id, body["view"].clone());
        }
        let done = |v: &Json| {
            let t = v["blocks"][0]["text"]["text"].as_str().unwrap_or("").to_string();
            (!t.contains("Looking up")).then_some(t)
        };
        self.until(20, "the wizard to answer", || self.slack.view(&view_id).as_ref().and_then(done).is_some()).await;
        let said = done(&self.slack.view(&view_id).unwrap()).unwrap();
        if !said.contains("posted in") {
            return Requested::Answered(said);
        }
        let run = said.split('`').nth(1).map(|r| offboard_core::domain::RunId::parse(r).unwrap()).expect("the run id");
        self.until(10, "the approval message", || self.approval_message(&run).is_some()).await;
        Requested::Posted(self.approval_message(&run).unwrap(), run)
    }

    /// The top-level message in the approvals channel for this run.
    pub fn approval_message(&self, run: &offboard_core::domain::RunId) -> Option<offboard_slack::fake::Message> {
        self.slack.messages().into_iter().find(|m| m.channel == APPROVALS && m.thread_ts.is_none() && m.blocks.to_string().contains(run.as_str()))
    }

    /// `who` clicks Approve on the run's message; `None` when it counted, else the refusal.
    pub async fn approve(&self, who: &str, run: &offboard_core::domain::RunId) -> Option<String> {
        let m = self.approval_message(run).unwrap();
        let value = m.blocks.as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap()["elements"][0]["value"].as_str().unwrap().to_string();
        let before = self.slack.ephemeral().len();
        let approvals = self.store.approvals(run).await.unwrap().len();
        let r = self.interact(World::click(who, &self.slack.issue_trigger(), &m.ts, "approve", &value)).await;
        assert_eq!(r.status(), 200);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some((_, _, t)) = self.slack.ephemeral().into_iter().skip(before).find(|(_, u, _)| u == who) {
                return Some(t);
            }
            if self.store.approvals(run).await.unwrap().len() > approvals {
                return None;
            }
            assert!(std::time::Instant::now() < deadline, "no answer to {who}'s click");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the run to end and its closing message; returns the thread's replies.
    pub async fn finished(&self, run: &offboard_core::domain::RunId) -> Vec<offboard_slack::fake::Message> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.store.run(run).await.unwrap().state;
            if (state.is_terminal() || state == offboard_core::run::RunState::NeedsAttention)
                && self.store.message(run, "slack:T0FAKE", "closing").await.unwrap().is_some()
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "run {run} did not finish: {state:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let ts = self.approval_message(run).unwrap().ts;
        self.slack.messages().into_iter().filter(|m| m.thread_ts.as_deref() == Some(ts.as_str())).collect()
    }

    /// The run's signed report, as uploaded into its thread, as text (pdftotext).
    pub async fn report_text(&self, run: &offboard_core::domain::RunId) -> String {
        let name = format!("{run}.pdf");
        self.until(20, "the report in the thread", || self.slack.files().iter().any(|f| f.name == name && f.shared_to.is_some())).await;
        let file = self.slack.files().into_iter().find(|f| f.name == name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(&name);
        std::fs::write(&path, &file.bytes).unwrap();
        let out = std::process::Command::new("pdftotext").args(["-layout"]).arg(&path).arg("-").output().expect("pdftotext (poppler-utils)");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    }
}
