//! Test harness shared by the integration tests: test databases on both backends, a
//! counting effect server over real HTTP that can kill or freeze the worker process at a
//! chosen request, and the executor the test worker process uses against it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use offboard_core::engine::{Reconciled, StepContext, StepError, StepExecutor};
use offboard_core::run::StepOutcome;
use offboard_core::store::Store;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The admin URL of the test Postgres server.
pub fn postgres_admin_url() -> String {
    std::env::var("OFFBOARD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Postgres tests are skipped only when asked for explicitly; otherwise an unreachable
/// server fails them.
pub fn postgres_skipped() -> bool {
    std::env::var("OFFBOARD_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("offboard.db").display());
        Self { url, backend: "sqlite", pg_name: None, _dir: Some(dir) }
    }

    pub async fn postgres() -> Self {
        let admin = postgres_admin_url();
        let name = format!("offboard_t_{}", uuid_like());
        let mut conn = sqlx_connect(&admin).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
        Self { url: format!("{base}/{name}"), backend: "postgres", pg_name: Some(name), _dir: None }
    }

    /// SQLite, and Postgres unless `OFFBOARD_SKIP_POSTGRES=1`.
    pub async fn all() -> Vec<Self> {
        let mut dbs = vec![Self::sqlite()];
        if postgres_skipped() {
            eprintln!("NOTE: Postgres tests skipped (OFFBOARD_SKIP_POSTGRES=1)");
        } else {
            dbs.push(Self::postgres().await);
        }
        dbs
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.url).await.unwrap_or_else(|e| panic!("connect {}: {e}", self.backend))
    }

    /// Drops a Postgres test database (SQLite files go with their temp dir).
    pub async fn cleanup(self) {
        if let Some(name) = &self.pg_name {
            let mut conn = sqlx_connect(&postgres_admin_url()).await;
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut conn).await;
        }
    }
}

async fn sqlx_connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("Postgres at {url} is unreachable ({e}). Start it, or set OFFBOARD_SKIP_POSTGRES=1 to skip the Postgres tests."))
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}

/// Where in handling an effect request the server acts on the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Before the effect is applied: the request reached us, nothing changed.
    BeforeApply,
    /// After the effect is applied, before the response leaves: the hardest window.
    AfterApply,
}

/// What to do to the worker process at the n-th effect request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kill,
    /// SIGSTOP, then hold the response until `release` is called.
    Freeze,
}

#[derive(Debug, Clone, Copy)]
struct Trap {
    nth: u64,
    phase: Phase,
    action: Action,
    /// Only requests for this step key count, when set.
    step: Option<&'static str>,
}

#[derive(Default)]
struct Inner {
    counts: HashMap<(String, String), u64>,
    /// Looks at a step that waits ("is it there yet?"), per run and step.
    looks: HashMap<(String, String), u64>,
    requests: u64,
    ledger: Vec<(String, String, i64)>,
    pid: Option<u32>,
    trap: Option<Trap>,
    fired: bool,
}

/// A fake downstream service whose side effects are counted outside the worker process.
#[derive(Clone)]
pub struct EffectServer {
    inner: Arc<Mutex<Inner>>,
    release: Arc<tokio::sync::Notify>,
    pub addr: SocketAddr,
}

impl EffectServer {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let release = Arc::new(tokio::sync::Notify::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = Self { inner, release, addr };
        let app = Router::new()
            .route("/effect/{run}/{step}/{attempt}", post(apply))
            .route("/effect/{run}/{step}", get(read_back))
            .route("/looks/{run}/{step}", post(look))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_pid(&self, pid: u32) {
        self.inner.lock().expect("lock").pid = Some(pid);
    }

    /// Arms a trap at the n-th effect request from now on (1-based).
    pub fn trap(&self, nth: u64, phase: Phase, action: Action, step: Option<&'static str>) {
        let mut i = self.inner.lock().expect("lock");
        i.requests = 0;
        i.fired = false;
        i.trap = Some(Trap { nth, phase, action, step });
    }

    pub fn disarm(&self) {
        self.inner.lock().expect("lock").trap = None;
    }

    pub fn trap_fired(&self) -> bool {
        self.inner.lock().expect("lock").fired
    }

    /// Lets a frozen request answer.
    pub fn release(&self) {
        self.release.notify_waiters();
    }

    pub fn count(&self, run: &str, step: &str) -> u64 {
        self.inner.lock().expect("lock").counts.get(&(run.to_string(), step.to_string())).copied().unwrap_or(0)
    }

    /// How many times a waiting step looked.
    pub fn looks(&self, run: &str, step: &str) -> u64 {
        self.inner.lock().expect("lock").looks.get(&(run.to_string(), step.to_string())).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.inner.lock().expect("lock").ledger.len() as u64
    }

    fn check(&self, phase: Phase, step: &str) -> Option<Action> {
        let mut i = self.inner.lock().expect("lock");
        let trap = i.trap?;
        if trap.phase != phase || trap.step.is_some_and(|s| s != step) || i.fired {
            return None;
        }
        i.requests += 1;
        if i.requests == trap.nth {
            i.fired = true;
            let pid = i.pid?;
            let signal = match trap.action {
                Action::Kill => "-KILL",
                Action::Freeze => "-STOP",
            };
            let _ = std::process::Command::new("kill").args([signal, &pid.to_string()]).status();
            return Some(trap.action);
        }
        None
    }
}

async fn apply(State(s): State<EffectServer>, Path((run, step, attempt)): Path<(String, String, i64)>) -> (StatusCode, Json<serde_json::Value>) {
    if let Some(action) = s.check(Phase::BeforeApply, &step) {
        if action == Action::Kill {
            // The worker is gone; nobody reads this.
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
        }
        s.release.notified().await;
    }
    let count = {
        let mut i = s.inner.lock().expect("lock");
        let c = i.counts.entry((run.clone(), step.clone())).or_default();
        *c += 1;
        let count = *c;
        i.ledger.push((run, step.clone(), attempt));
        count
    };
    if let Some(action) = s.check(Phase::AfterApply, &step)
        && action == Action::Freeze
    {
        s.release.notified().await;
    }
    (StatusCode::OK, Json(json!({ "count": count })))
}

/// What a waiting step waits for is there from its third look on.
pub const LOOKS_UNTIL_READY: u64 = 3;

async fn look(State(s): State<EffectServer>, Path((run, step)): Path<(String, String)>) -> Json<serde_json::Value> {
    let mut i = s.inner.lock().expect("lock");
    let n = i.looks.entry((run, step)).or_default();
    *n += 1;
    Json(json!({ "ready": *n >= LOOKS_UNTIL_READY }))
}

async fn read_back(State(s): State<EffectServer>, Path((run, step)): Path<(String, String)>) -> Json<serde_json::Value> {
    Json(json!({ "count": s.count(&run, &step) }))
}

/// Runs every step as one POST to the effect server; reads back with a GET. The step
/// that verifies a shared mailbox first waits: it looks, and answers "not yet" until the
/// effect server says ready.
pub struct HttpExecutor {
    base: String,
    client: reqwest::Client,
}

impl HttpExecutor {
    pub fn new(base: impl Into<String>) -> Self {
        Self { base: base.into(), client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client") }
    }
}

#[async_trait]
impl StepExecutor for HttpExecutor {
    async fn execute(&self, cx: &StepContext) -> Result<StepOutcome, StepError> {
        if cx.step.kind == offboard_core::plan::StepKind::VerifyShared {
            let url = format!("{}/looks/{}/{}", self.base, cx.run_id, cx.step.key);
            let resp = self.client.post(url).send().await.map_err(|e| StepError::Retryable(e.to_string()))?;
            let body: serde_json::Value = resp.json().await.map_err(|e| StepError::Retryable(e.to_string()))?;
            if body["ready"] != json!(true) {
                return Err(StepError::NotYet { look_again_in: Duration::from_millis(20), waiting_for: "the effect server to say ready".into() });
            }
        }
        let url = format!("{}/effect/{}/{}/{}", self.base, cx.run_id, cx.step.key, cx.attempt);
        let resp = self
            .client
            .post(url)
            .send()
            .await
            .map_err(|e| if e.is_connect() { StepError::NotSent(e.to_string()) } else { StepError::Retryable(e.to_string()) })?;
        if !resp.status().is_success() {
            return Err(StepError::Retryable(format!("status {}", resp.status())));
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| StepError::Retryable(e.to_string()))?;
        Ok(StepOutcome::done(format!("applied ({} in the ledger)", body["count"]), vec![]))
    }

    async fn reconcile(&self, cx: &StepContext) -> Reconciled {
        let url = format!("{}/effect/{}/{}", self.base, cx.run_id, cx.step.key);
        match self.client.get(url).send().await {
            Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
                Ok(b) if b["count"].as_u64().unwrap_or(0) > 0 => Reconciled::Applied(StepOutcome::done("found applied on read-back", vec![])),
                Ok(_) => Reconciled::NotApplied,
                Err(e) => Reconciled::Unknown(format!("read-back unreadable: {e}")),
            },
            Ok(r) => Reconciled::Unknown(format!("read-back answered {}", r.status())),
            Err(e) => Reconciled::Unknown(format!("read-back failed: {e}")),
        }
    }
}

pub mod fixtures;
pub mod relay_contract;
pub mod smtp;
