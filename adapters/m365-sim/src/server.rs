//! The HTTP side: one listener per service (login, Graph, Exchange) as on the real cloud,
//! plus a control listener for tests and benchmarks. Faults, latency and throttling are
//! applied here, around the handlers.
//!
//! Kept in one file: every entry point (token, Graph, `$batch`, Exchange, control) goes
//! through the same admission (request ids, faults, latency, throttling, the world lock),
//! and the handlers themselves live in `graph/` and `exchange`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::SimClock;
use crate::exchange::{self, ExoError};
use crate::faults::{Fault, FaultRates, Faults, Latency};
use crate::graph::{self, Ctx};
use crate::odata::{Query, Reply};
use crate::routes::{self, Match, Op};
use crate::scenario::{Scenario, ScenarioError};
use crate::throttle::{Cost, Limits, Throttle};
use crate::token::{Claims, Issuer, RefreshGrant, Resource, TokenForm};
use crate::world::{Effect, Tenant, World};

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Simulated seconds per Microsoft second: 0.01 runs every window and latency 100× faster.
    pub dilation: f64,
    pub throttling: bool,
    /// Send Retry-After on 429s; off models the services that never send it.
    pub retry_after: bool,
    pub limits: Limits,
    pub latency: Latency,
    pub faults: FaultRates,
    /// How long Set-Mailbox -Type Shared takes to land, in Microsoft time.
    pub conversion_delay: Duration,
    pub token_lifetime: Duration,
    /// Time moves only through [`Sim::advance`].
    pub manual_clock: bool,
    /// Exchange's 403 for an app without a directory role comes with a body of NUL bytes.
    pub exchange_binary_403: bool,
    pub bind: IpAddr,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            dilation: 1.0,
            throttling: true,
            retry_after: true,
            limits: Limits::default(),
            latency: Latency::None,
            faults: FaultRates::default(),
            conversion_delay: Duration::from_secs(60),
            token_lifetime: Duration::from_secs(3599),
            manual_clock: false,
            exchange_binary_403: false,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

impl SimConfig {
    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.dilation)
    }
}

/// Base URLs, each a separate host as on the real cloud.
#[derive(Debug, Clone, Serialize)]
pub struct Urls {
    /// Entra login: `{login}/{tenant}/oauth2/v2.0/token`.
    pub login: String,
    /// Graph: `{graph}/v1.0/...`.
    pub graph: String,
    /// Exchange Online: `{exchange}/adminapi/beta/{tenant}/InvokeCommand`.
    pub exchange: String,
    /// The simulator's own inspection and control API.
    pub control: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub http_requests: u64,
    pub token_requests: u64,
    pub graph_requests: u64,
    pub graph_batch_items: u64,
    pub exchange_requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub throttled: u64,
    pub early_retries: u64,
    /// Exchange calls answered 429 by a tenant's hidden limit.
    pub exchange_throttled: u64,
    /// Identity and Intune writes and identity resource units admitted (counted only while
    /// throttling is on).
    pub identity_writes: u64,
    pub intune_writes: u64,
    pub identity_ru: u64,
    pub resets: u64,
    pub injected_faults: u64,
}

struct Shared {
    world: Mutex<World>,
    throttle: Mutex<Throttle>,
    issuer: Mutex<Issuer>,
    clock: SimClock,
    faults: Faults,
    cfg: SimConfig,
    urls: Mutex<Option<Urls>>,
    stats: Mutex<Stats>,
    /// Every Graph request received, batch items included: (method, path without query).
    graph_log: Mutex<Vec<(String, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn urls(&self) -> Urls {
        lock(&self.urls).clone().expect("urls are set before serving")
    }
    fn unix(&self) -> i64 {
        self.clock.wall().timestamp()
    }
    fn count_status(&self, status: u16) {
        *lock(&self.stats).by_status.entry(status).or_default() += 1;
    }
}

/// A running simulator. Dropping it stops its listeners.
pub struct Sim {
    shared: Arc<Shared>,
    urls: Urls,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Sim {
    pub async fn start(scenario: &Scenario, cfg: SimConfig) -> Result<Self, ScenarioError> {
        let clock = if cfg.manual_clock { SimClock::manual(chrono::Utc::now()) } else { SimClock::real() };
        let world = World::build(scenario, &clock)?;
        let mut throttle = Throttle::new(cfg.limits.clone(), cfg.dilation, cfg.throttling);
        throttle.send_retry_after = cfg.retry_after;
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            throttle: Mutex::new(throttle),
            issuer: Mutex::new(Issuer::new(cfg.scaled(cfg.token_lifetime).max(Duration::from_secs(1)))),
            clock,
            faults: Faults::new(cfg.faults.clone(), cfg.latency.clone()),
            cfg: cfg.clone(),
            urls: Mutex::new(None),
            stats: Mutex::new(Stats::default()),
            graph_log: Mutex::new(Vec::new()),
        });
        let (stop, _) = watch::channel(false);
        let login = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token_endpoint))
            .route("/{tenant}/v2.0/adminconsent", get(admin_consent))
            .fallback(unknown_host_path);
        let graph = Router::new().fallback(graph_entry);
        let exchange = Router::new()
            .route("/adminapi/beta/{tenant}/InvokeCommand", post(exo_invoke))
            .route("/adminapi/beta/{tenant}/$batch", post(exo_batch))
            .route("/adminapi/v2.0/{tenant}/{endpoint}", post(exo_v2))
            .fallback(unknown_host_path);
        let control = crate::server::control_router();
        let mut urls = Vec::new();
        let mut tasks = Vec::new();
        for router in [login, graph, exchange, control] {
            let listener = TcpListener::bind(SocketAddr::new(cfg.bind, 0))
                .await
                .map_err(|e| ScenarioError::Invalid { tenant: "-".into(), message: format!("cannot listen: {e}") })?;
            let addr = listener.local_addr().expect("bound");
            urls.push(format!("http://{addr}"));
            let app = router.with_state(shared.clone());
            let mut rx = stop.subscribe();
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
            }));
        }
        let urls = Urls { login: urls[0].clone(), graph: urls[1].clone(), exchange: urls[2].clone(), control: urls[3].clone() };
        *lock(&shared.urls) = Some(urls.clone());
        Ok(Self { shared, urls, stop, tasks })
    }

    pub fn urls(&self) -> &Urls {
        &self.urls
    }

    pub fn clock(&self) -> &SimClock {
        &self.shared.clock
    }

    /// Moves simulated time forward (also in real-clock mode).
    pub fn advance(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    pub fn ledger(&self) -> Vec<Effect> {
        lock(&self.shared.world).ledger.effects.clone()
    }

    /// How many times `kind` happened to `target` (e.g. `managed_device.wiped`, a device id).
    pub fn count(&self, kind: &str, target: &str) -> u64 {
        lock(&self.shared.world).ledger.count(kind, target)
    }

    /// Every Graph request received so far, batch items included: (method, path).
    pub fn graph_requests(&self) -> Vec<(String, String)> {
        lock(&self.shared.graph_log).clone()
    }

    pub fn count_kind(&self, kind: &str) -> u64 {
        lock(&self.shared.world).ledger.count_kind(kind)
    }

    pub fn stats(&self) -> Stats {
        let mut s = lock(&self.shared.stats).clone();
        let t = lock(&self.shared.throttle);
        s.throttled = t.throttled;
        s.early_retries = t.early_retries;
        s.exchange_throttled = t.exchange_throttled;
        s.identity_writes = t.identity_writes;
        s.intune_writes = t.intune_writes;
        s.identity_ru = t.identity_ru;
        s
    }

    pub fn set_faults(&self, rates: FaultRates) {
        self.shared.faults.set_rates(rates);
    }

    pub fn set_latency(&self, latency: Latency) {
        self.shared.faults.set_latency(latency);
    }

    /// Reads a tenant's state (by id or domain), after settling what is due.
    pub fn tenant<R>(&self, key: &str, f: impl FnOnce(&Tenant) -> R) -> Option<R> {
        let mut w = lock(&self.shared.world);
        let ti = w.tenant(key)?;
        let now = self.shared.clock.now();
        let World { tenants, ledger, .. } = &mut *w;
        tenants[ti].settle(now, ledger);
        Some(f(&tenants[ti]))
    }

    pub fn tenant_mut<R>(&self, key: &str, f: impl FnOnce(&mut Tenant) -> R) -> Option<R> {
        let mut w = lock(&self.shared.world);
        let ti = w.tenant(key)?;
        Some(f(&mut w.tenants[ti]))
    }

    /// Adds a fresh client secret to an app and returns it; only its hash is kept.
    pub fn add_secret(&self, tenant: &str, client_id: &str) -> Option<String> {
        let secret = format!("sim~{}", hex::encode(rand::random::<[u8; 20]>()));
        let hash = crate::token::sha256_hex(&secret);
        self.tenant_mut(tenant, |t| t.app_mut(client_id).map(|a| a.secret_sha256.push(hash)))??;
        Some(secret)
    }

    /// Registers a certificate's public key for client assertions.
    pub fn add_certificate(&self, tenant: &str, client_id: &str, thumbprint_sha256: &str, public_key_pem: &str) -> Option<()> {
        self.tenant_mut(tenant, |t| t.app_mut(client_id).map(|a| a.certificates.push((thumbprint_sha256.to_string(), public_key_pem.to_string()))))?
    }

    /// Grants or revokes an application permission, as an admin consent would. Tokens
    /// already issued keep their old roles.
    pub fn set_permission(&self, tenant: &str, client_id: &str, resource: Resource, permission: &str, granted: bool) -> Option<()> {
        self.tenant_mut(tenant, |t| {
            t.app_mut(client_id).map(|a| {
                let set = match resource {
                    Resource::Graph => &mut a.graph,
                    Resource::Exchange => &mut a.exchange,
                    Resource::SharePoint => &mut a.sharepoint,
                };
                if granted {
                    set.insert(permission.to_string());
                } else {
                    set.remove(permission);
                }
            })
        })?
    }

    pub fn set_entra_role(&self, tenant: &str, client_id: &str, role: &str, granted: bool) -> Option<()> {
        let id = crate::world::role_id(role)?;
        self.tenant_mut(tenant, |t| {
            t.app_mut(client_id).map(|a| {
                if granted {
                    a.entra_roles.insert(id.to_string());
                } else {
                    a.entra_roles.remove(id);
                }
            })
        })?
    }

    /// Issues a refresh token for delegated access by `user` (as after an interactive
    /// sign-in). Scopes for Exchange and SharePoint carry an `exchange:`/`sharepoint:` prefix.
    pub fn mint_refresh_token(&self, tenant: &str, client_id: &str, user: &str, scopes: &[&str]) -> Option<String> {
        let (tid, uid) = self.tenant(tenant, |t| t.user_id(user).map(|u| (t.id.clone(), u)))??;
        let now = self.shared.clock.now();
        let grant =
            RefreshGrant { tenant: tid, client_id: client_id.to_string(), user: uid, scopes: scopes.iter().map(|s| s.to_string()).collect(), expires: now };
        Some(lock(&self.shared.issuer).mint_refresh(grant, now))
    }
}

fn unknown_host_path(req: Request) -> impl std::future::Future<Output = Response> {
    let path = req.uri().path().to_string();
    async move { (StatusCode::NOT_FOUND, format!("no such endpoint on this host: {path}")).into_response() }
}

/// A response whose body fails at once: the client sees the connection drop.
fn reset() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by simulator"))
    });
    Response::new(Body::from_stream(stream))
}

fn json_response(status: u16, headers: &[(String, String)], body: Option<&Value>) -> Response {
    let mut resp = match body {
        Some(b) => (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(b.clone())).into_response(),
        None => StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response(),
    };
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (axum::http::HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

// ---------------------------------------------------------------- login

async fn token_endpoint(State(s): State<Arc<Shared>>, Path(tenant): Path<String>, body: Bytes) -> Response {
    {
        let mut st = lock(&s.stats);
        st.http_requests += 1;
        st.token_requests += 1;
    }
    let form: TokenForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let endpoint = format!("{}/{tenant}/oauth2/v2.0/token", s.urls().login);
    let result = {
        let w = lock(&s.world);
        let mut issuer = lock(&s.issuer);
        issuer.grant(&w, &tenant, &form, &endpoint, s.clock.now(), s.unix())
    };
    let stamp = s.clock.wall().format("%Y-%m-%d %H:%M:%SZ").to_string();
    match result {
        Ok(v) => {
            s.count_status(200);
            json_response(200, &[("Cache-Control".into(), "no-store, no-cache".into())], Some(&v))
        }
        Err(e) => {
            s.count_status(e.status);
            json_response(e.status, &[], Some(&e.body(&stamp)))
        }
    }
}

#[derive(Deserialize)]
struct ConsentQuery {
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    state: String,
}

async fn admin_consent(State(s): State<Arc<Shared>>, Path(tenant): Path<String>, uri: axum::http::Uri) -> Response {
    let Ok(q) = serde_urlencoded::from_str::<ConsentQuery>(uri.query().unwrap_or_default()) else {
        return (StatusCode::BAD_REQUEST, "client_id and redirect_uri are required").into_response();
    };
    let found = {
        let w = lock(&s.world);
        w.tenant(&tenant).map(|ti| (w.tenants[ti].id.clone(), w.tenants[ti].app(&q.client_id).is_some()))
    };
    let target = match found {
        Some((tid, true)) => format!("{}?admin_consent=True&tenant={tid}&state={}", q.redirect_uri, q.state),
        Some((tid, false)) => format!("{}?error=access_denied&error_description=AADSTS700016&tenant={tid}&state={}", q.redirect_uri, q.state),
        None => return (StatusCode::BAD_REQUEST, format!("AADSTS90002: Tenant '{tenant}' not found.")).into_response(),
    };
    (StatusCode::FOUND, [(axum::http::header::LOCATION, target)]).into_response()
}

// ---------------------------------------------------------------- Graph

struct GraphCall {
    method: String,
    path: String,
    query: Query,
    eventual: bool,
    body: Option<Value>,
    content: graph::Content,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
}

fn finish(s: &Shared, mut reply: Reply, request_id: &str, client_request_id: Option<&str>) -> Response {
    if let Some(err) = reply.body.as_mut().and_then(|b| b.get_mut("error")).and_then(|e| e.get_mut("innerError"))
        && err.is_object()
    {
        *err = json!({"date": s.clock.wall().format("%Y-%m-%dT%H:%M:%S").to_string(), "request-id": request_id, "client-request-id": client_request_id.unwrap_or(request_id)});
    }
    let mut headers = reply.headers.clone();
    headers.push(("request-id".into(), request_id.into()));
    headers.push(("client-request-id".into(), client_request_id.unwrap_or(request_id).into()));
    headers.push(("x-ms-ags-diagnostic".into(), r#"{"ServerInfo":{"DataCenter":"Sim","Slice":"E","Ring":"1","ScaleUnit":"000","RoleInstance":"SIM"}}"#.into()));
    s.count_status(reply.status);
    json_response(reply.status, &headers, reply.body.as_ref())
}

fn throttled_reply(s: &Shared, t: &crate::throttle::Throttled) -> Reply {
    let mut r = Reply::error(429, "TooManyRequests", "Please retry again later.");
    if let Some(e) = r.body.as_mut().and_then(|b| b.get_mut("error")) {
        e["innerError"] = json!({});
        e["innerError"]["code"] = json!("429");
    }
    if s.cfg.retry_after {
        r = r.header("Retry-After", format!("{:.3}", t.retry_after));
    }
    r.header("x-ms-throttle-scope", t.scope.clone()).header("x-ms-throttle-information", t.information)
}

fn server_error(code: u16) -> Reply {
    match code {
        503 => Reply::error(503, "serviceNotAvailable", "The service is temporarily unavailable. Please retry later."),
        504 => Reply::error(504, "UnknownError", "Gateway timeout."),
        502 => Reply::error(502, "UnknownError", "Bad gateway."),
        _ => Reply::error(500, "generalException", "General exception while processing."),
    }
}

/// Resolves a Graph call to an operation and checks what can be checked before the world
/// is touched.
fn resolve(call: &GraphCall) -> Result<(Op, Vec<String>), Reply> {
    match routes::find(&call.method, &call.path) {
        Match::Found(op, ids) => Ok((op, ids)),
        Match::MethodNotAllowed => {
            Err(Reply::error(405, "Request_BadRequest", format!("The HTTP method '{}' is not allowed for the request URI.", call.method)))
        }
        Match::NoSegment(seg) => Err(Reply::error(400, "BadRequest", format!("Resource not found for the segment '{seg}'."))),
    }
}

/// Permission, throttling and the handler, under the world lock.
fn process(s: &Shared, claims: &Claims, call: &GraphCall, op: Op, ids: &[String]) -> Reply {
    let mut w = lock(&s.world);
    let Some(ti) = w.tenant(&claims.tid) else { return Reply::error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid tenant.") };
    let now = s.clock.now();
    {
        let World { tenants, ledger, .. } = &mut *w;
        tenants[ti].settle(now, ledger);
    }
    if let Some(perms) = graph::required(op)
        && !graph::holds(claims, perms)
    {
        return match graph::cost(op, ids, &call.query, &w.tenants[ti]) {
            Cost::Outlook { .. } => Reply::error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."),
            _ => crate::odata::denied(),
        };
    }
    let cost = graph::cost(op, ids, &call.query, &w.tenants[ti]);
    let tier = w.tenants[ti].tier();
    let admitted = match lock(&s.throttle).admit(&claims.appid, &claims.tid, tier, &cost, now) {
        Ok(a) => a,
        Err(t) => return throttled_reply(s, &t),
    };
    let urls = s.urls();
    let ctx = Ctx {
        claims,
        base: &urls.graph,
        now,
        wall: s.clock.wall_at(now),
        delta_expiry: s.cfg.scaled(Duration::from_secs(7 * 86_400)),
        consistency_eventual: call.eventual,
    };
    let mut reply =
        graph::execute(&mut w, ti, &ctx, &graph::Call { op, ids, q: &call.query, path: &call.path, body: call.body.as_ref(), content: &call.content });
    if let Some(ru) = admitted.resource_units {
        reply.headers.push(("x-ms-resource-unit".into(), ru.to_string()));
    }
    if let Some(p) = admitted.limit_percentage {
        reply.headers.push(("x-ms-throttle-limit-percentage".into(), format!("{:.1}", p.min(1.8))));
    }
    reply
}

fn outlook_key(s: &Shared, claims: &Claims, call: &GraphCall, op: Op, ids: &[String]) -> Option<String> {
    let w = lock(&s.world);
    let ti = w.tenant(&claims.tid)?;
    match graph::cost(op, ids, &call.query, &w.tenants[ti]) {
        Cost::Outlook { mailbox } => Some(format!("{}|{mailbox}", claims.appid)),
        _ => None,
    }
}

async fn graph_entry(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    {
        let mut st = lock(&s.stats);
        st.http_requests += 1;
        st.graph_requests += 1;
    }
    let (parts, body) = req.into_parts();
    let client_request_id = parts.headers.get("client-request-id").and_then(|v| v.to_str().ok()).map(String::from);
    let crid = client_request_id.as_deref();
    let full_path = parts.uri.path().to_string();
    let Some(path) = full_path.strip_prefix("/v1.0") else {
        let msg = if full_path.starts_with("/beta") { "The simulator serves Graph v1.0 only." } else { "Invalid version." };
        return finish(&s, Reply::error(400, "BadRequest", msg), &request_id, crid);
    };
    let claims = {
        let issuer = lock(&s.issuer);
        match bearer(&parts.headers) {
            None => Err("Access token is empty."),
            Some(tok) => issuer.verify(tok, s.unix(), Resource::Graph),
        }
    };
    let claims = match claims {
        Ok(c) => c,
        Err(msg) => return finish(&s, Reply::error(401, "InvalidAuthenticationToken", msg), &request_id, crid),
    };
    let bytes = match axum::body::to_bytes(body, 4 << 20).await {
        Ok(b) => b,
        Err(_) => return finish(&s, Reply::error(413, "RequestEntityTooLarge", "The request body is too large."), &request_id, crid),
    };
    // A file's bytes are taken as they come; every other body is JSON.
    let upload = matches!(routes::find(parts.method.as_str(), path), Match::Found(Op::UploadContent, _));
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream").to_string();
    let (body, content) = if upload {
        (None, graph::Content { content_type, bytes: bytes.to_vec() })
    } else if bytes.is_empty() {
        (None, graph::Content::default())
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => (Some(v), graph::Content::default()),
            Err(_) => {
                return finish(
                    &s,
                    Reply::error(
                        400,
                        "BadRequest",
                        "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
                    ),
                    &request_id,
                    crid,
                );
            }
        }
    };
    let eventual = parts.headers.get("consistencylevel").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("eventual"));
    let call = GraphCall {
        method: parts.method.to_string(),
        path: path.to_string(),
        query: Query::parse(parts.uri.query().unwrap_or_default()),
        eventual,
        body,
        content,
    };

    lock(&s.graph_log).push((call.method.clone(), call.path.clone()));
    let is_batch = call.path.eq_ignore_ascii_case("/$batch");
    if is_batch && parts.method != Method::POST {
        return finish(&s, Reply::error(405, "BadRequest", "Use POST for $batch."), &request_id, crid);
    }
    let fault = s.faults.roll();
    let fault = match (is_batch, fault) {
        // A batch envelope loses its connection; its items fail one by one instead.
        (true, Fault::ServerError(_) | Fault::ThrottleWithoutRetryAfter) => Fault::None,
        (_, f) => f,
    };
    if fault != Fault::None {
        lock(&s.stats).injected_faults += 1;
    }
    match fault {
        Fault::Reset => {
            lock(&s.stats).resets += 1;
            return reset();
        }
        Fault::ServerError(code) => return finish(&s, server_error(code), &request_id, crid),
        Fault::ThrottleWithoutRetryAfter => return finish(&s, Reply::error(429, "TooManyRequests", "Please retry again later."), &request_id, crid),
        _ => {}
    }
    s.clock.sleep(s.cfg.scaled(s.faults.delay())).await;
    let reply = if is_batch {
        batch(&s, &claims, &call)
    } else {
        match resolve(&call) {
            Err(r) => r,
            Ok((op, ids)) => {
                let slot = outlook_key(&s, &claims, &call, op, &ids);
                if let Some(k) = &slot
                    && !lock(&s.throttle).enter(k)
                {
                    let r = Reply::error(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.");
                    let r = if s.cfg.retry_after { r.header("Retry-After", format!("{:.3}", s.cfg.scaled(Duration::from_secs(1)).as_secs_f64())) } else { r };
                    return finish(&s, r, &request_id, crid);
                }
                // Hold the mailbox slot for the simulated processing time.
                let reply = process(&s, &claims, &call, op, &ids);
                if let Some(k) = &slot {
                    lock(&s.throttle).leave(k);
                }
                reply
            }
        }
    };
    if fault == Fault::DropAfterApply {
        lock(&s.stats).resets += 1;
        return reset();
    }
    finish(&s, reply, &request_id, crid)
}

/// JSON batching: at most 20 items, `dependsOn` ordering with 424 for failed dependencies,
/// per-item throttling, and responses in shuffled order.
fn batch(s: &Shared, claims: &Claims, call: &GraphCall) -> Reply {
    lock(&s.throttle).begin_envelope();
    let reply = batch_items(s, claims, call);
    lock(&s.throttle).end_envelope();
    reply
}

fn batch_items(s: &Shared, claims: &Claims, call: &GraphCall) -> Reply {
    let Some(requests) = call.body.as_ref().and_then(|b| b.get("requests")).and_then(Value::as_array) else {
        return Reply::error(400, "BadRequest", "Invalid batch payload format.");
    };
    if requests.len() > 20 {
        return Reply::error(400, "BadRequest", "Number of batch request steps exceeds the maximum of 20.");
    }
    let mut ids = Vec::new();
    for r in requests {
        let Some(id) = r.get("id").and_then(Value::as_str) else { return Reply::error(400, "BadRequest", "Each batch request needs an 'id'.") };
        if ids.iter().any(|x: &String| x.eq_ignore_ascii_case(id)) {
            return Reply::error(400, "BadRequest", format!("Batch request contains a duplicate id '{id}'."));
        }
        ids.push(id.to_string());
    }
    for r in requests {
        for d in r.get("dependsOn").and_then(Value::as_array).into_iter().flatten() {
            if !d.as_str().is_some_and(|d| ids.iter().any(|x| x.eq_ignore_ascii_case(d))) {
                return Reply::error(400, "BadRequest", format!("dependsOn names an unknown request id {d}."));
            }
        }
    }
    lock(&s.stats).graph_batch_items += requests.len() as u64;
    let mut done: BTreeMap<String, u16> = BTreeMap::new();
    let mut responses = Vec::new();
    let mut pending: Vec<&Value> = requests.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for r in pending {
            let id = r["id"].as_str().unwrap_or_default().to_string();
            let deps: Vec<String> = r
                .get("dependsOn")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|d| d.as_str().map(|x| x.to_ascii_lowercase())).collect())
                .unwrap_or_default();
            if deps.iter().any(|d| !done.contains_key(d)) {
                rest.push(r);
                continue;
            }
            let reply = if deps.iter().any(|d| !(200..300).contains(&done[d])) {
                Reply::error(424, "FailedDependency", "The request depends on another request in the batch that failed.")
            } else {
                batch_item(s, claims, r)
            };
            done.insert(id.to_ascii_lowercase(), reply.status);
            let mut item = json!({"id": id, "status": reply.status});
            if !reply.headers.is_empty() {
                item["headers"] = Value::Object(reply.headers.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect());
            }
            if let Some(b) = reply.body {
                item["body"] = b;
            }
            responses.push(item);
        }
        if rest.len() == before {
            return Reply::error(400, "BadRequest", "The dependsOn chains of this batch form a cycle.");
        }
        pending = rest;
    }
    use rand::seq::SliceRandom;
    responses.shuffle(&mut rand::rng());
    Reply::ok(json!({"responses": responses}))
}

fn batch_item(s: &Shared, claims: &Claims, r: &Value) -> Reply {
    let method = r.get("method").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase();
    let Some(url) = r.get("url").and_then(Value::as_str) else { return Reply::error(400, "BadRequest", "A batch request needs a 'url'.") };
    if url.contains("://") {
        return Reply::error(400, "BadRequest", "Batch request URLs are relative to the version, e.g. /users/{id}.");
    }
    let url = url.strip_prefix("/v1.0").unwrap_or(url);
    // A raw `#` starts a URL's fragment: what follows never reaches the route.
    let url = url.split('#').next().unwrap_or_default();
    let url = if url.starts_with('/') { url.to_string() } else { format!("/{url}") };
    let (path, query) = url.split_once('?').map(|(p, q)| (p.to_string(), q.to_string())).unwrap_or((url.clone(), String::new()));
    lock(&s.graph_log).push((method.clone(), path.clone()));
    if path.eq_ignore_ascii_case("/$batch") {
        return Reply::error(400, "BadRequest", "A batch cannot contain another batch.");
    }
    let headers = r.get("headers").and_then(Value::as_object);
    let header = |k: &str| headers.and_then(|h| h.iter().find(|(n, _)| n.eq_ignore_ascii_case(k))).and_then(|(_, v)| v.as_str());
    let body = r.get("body").cloned();
    if body.is_some() && header("content-type").is_none() {
        return Reply::error(400, "BadRequest", "Content-Type header must be specified when the request has a body.");
    }
    match s.faults.roll() {
        Fault::ServerError(code) => {
            lock(&s.stats).injected_faults += 1;
            return server_error(code);
        }
        Fault::ThrottleWithoutRetryAfter => {
            lock(&s.stats).injected_faults += 1;
            return Reply::error(429, "TooManyRequests", "Please retry again later.");
        }
        _ => {}
    }
    let call = GraphCall {
        method,
        path,
        query: Query::parse(&query),
        eventual: header("consistencylevel").is_some_and(|v| v.eq_ignore_ascii_case("eventual")),
        body,
        content: graph::Content::default(),
    };
    match resolve(&call) {
        Err(r) => r,
        Ok((op, ids)) => process(s, claims, &call, op, &ids),
    }
}

// ---------------------------------------------------------------- Exchange

/// Exchange Online answers with a `request-id` header like Graph.
fn exo_request_id() -> [(String, String); 1] {
    [("request-id".to_string(), uuid::Uuid::new_v4().to_string())]
}

/// The tenant's hidden Exchange limit, when its scenario sets one: a 429 with Retry-After
/// for a call over it.
fn exo_hidden_limit(s: &Shared, ti: usize, sent: Duration) -> Option<Response> {
    let (tenant, per_s) = {
        let w = lock(&s.world);
        let t = &w.tenants[ti];
        (t.id.clone(), t.exchange_calls_per_s?)
    };
    let t = lock(&s.throttle).admit_exchange(&tenant, per_s, sent, s.clock.now()).err()?;
    let e = ExoError { status: 429, code: "TooManyRequests", exception: "Microsoft.Exchange.Throttling", message: "The request was throttled.".into() };
    s.count_status(429);
    let mut headers = exo_request_id().to_vec();
    if s.cfg.retry_after {
        headers.push(("Retry-After".into(), format!("{:.3}", t.retry_after)));
    }
    Some(json_response(429, &headers, Some(&e.body())))
}

fn exo_error_response(s: &Shared, e: &ExoError) -> Response {
    s.count_status(e.status);
    json_response(e.status, &exo_request_id(), Some(&e.body()))
}

/// Checks the bearer token and roles for Exchange (the error is the finished response): 401 without the app role or a directory
/// role, 403 with the app role alone, as observed on live tenants.
#[allow(clippy::result_large_err)]
fn exo_auth(s: &Shared, headers: &HeaderMap, tenant: &str, app_role: &str, write: bool) -> Result<(Claims, usize), Response> {
    let claims = {
        let issuer = lock(&s.issuer);
        bearer(headers).ok_or("no token").and_then(|t| issuer.verify(t, s.unix(), Resource::Exchange))
    };
    let unauthorized = || {
        s.count_status(401);
        (
            StatusCode::UNAUTHORIZED,
            [(
                axum::http::header::WWW_AUTHENTICATE,
                "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\"",
            )],
        )
            .into_response()
    };
    let claims = claims.map_err(|_| unauthorized())?;
    let w = lock(&s.world);
    let ti = w.tenant(tenant).filter(|ti| w.tenants[*ti].id == claims.tid).ok_or_else(unauthorized)?;
    let has_app_role = claims.grants().iter().any(|g| g.eq_ignore_ascii_case(app_role));
    let writer_roles = ["Exchange Administrator", "Global Administrator", "Exchange Recipient Administrator"];
    let has_dir_role = claims.has_entra_role(&writer_roles) || (!write && claims.has_entra_role(&["Global Reader"]));
    if !has_app_role && !claims.has_entra_role(&writer_roles) {
        return Err(unauthorized());
    }
    if !has_dir_role || !has_app_role {
        s.count_status(403);
        if s.cfg.exchange_binary_403 {
            return Err((StatusCode::FORBIDDEN, vec![0u8; 16]).into_response());
        }
        return Err(exo_error_response(
            s,
            &ExoError {
                status: 403,
                code: "Forbidden",
                exception: "Microsoft.Exchange.Security.Authorization.AccessDeniedException",
                message: "The user or application doesn't have the required role to run this cmdlet.".into(),
            },
        ));
    }
    Ok((claims, ti))
}

fn anchor_ok(headers: &HeaderMap) -> bool {
    headers
        .get("x-anchormailbox")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("APP:SystemMailbox{") || v.starts_with("UPN:") || v.contains('@'))
}

fn invoke_one(s: &Shared, ti: usize, body: &Value, v2_endpoint: Option<&str>) -> Result<exchange::Outcome, ExoError> {
    let (cmdlet, params) = exchange::parse_input(body)?;
    if let Some(ep) = v2_endpoint
        && !exchange::v2_allows(ep, cmdlet.name, &params)
    {
        return Err(ExoError {
            status: 400,
            code: "BadRequest",
            exception: "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
            message: format!("The cmdlet {} with these parameters isn't supported on the {ep} endpoint.", cmdlet.name),
        });
    }
    let mut w = lock(&s.world);
    let now = s.clock.now();
    {
        let World { tenants, ledger, .. } = &mut *w;
        tenants[ti].settle(now, ledger);
    }
    let conversion = w.tenants[ti].conversion_delay.unwrap_or(s.cfg.conversion_delay);
    exchange::run(&mut w, ti, now, s.cfg.scaled(conversion), cmdlet, &params)
}

fn envelope(s: &Shared, tenant: &str, out: exchange::Outcome, select: Option<&str>) -> Value {
    let rows: Vec<Value> = match select {
        Some(sel) => {
            let keys: Vec<&str> = sel.split(',').map(str::trim).collect();
            out.rows
                .into_iter()
                .map(|r| {
                    Value::Object(
                        r.as_object()
                            .map(|o| o.iter().filter(|(k, _)| keys.iter().any(|x| x.eq_ignore_ascii_case(k))).map(|(k, v)| (k.clone(), v.clone())).collect())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        }
        None => out.rows,
    };
    json!({
        "@odata.context": format!("{}/adminapi/beta/{tenant}/$metadata#Collection(Exchange.GenericHashTable)", s.urls().exchange),
        "adminapi.warnings@odata.type": "#Collection(String)",
        "@adminapi.warnings": out.warnings,
        "value": rows,
    })
}

async fn exo_common(s: Arc<Shared>, tenant: String, headers: HeaderMap, uri: axum::http::Uri, body: Bytes, v2: Option<String>) -> Response {
    {
        let mut st = lock(&s.stats);
        st.http_requests += 1;
        st.exchange_requests += 1;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return exo_error_response(
            &s,
            &ExoError { status: 400, code: "BadRequest", exception: "Microsoft.OData.ODataException", message: "The request body is not valid JSON.".into() },
        );
    };
    let write = exchange::parse_input(&body).map(|(c, _)| c.write).unwrap_or(false);
    let app_role = if v2.is_some() { "Exchange.ManageAsAppV2" } else { "Exchange.ManageAsApp" };
    let (_, ti) = match exo_auth(&s, &headers, &tenant, app_role, write) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !anchor_ok(&headers) {
        return exo_error_response(
            &s,
            &ExoError {
                status: 400,
                code: "ErrorIncorrectRoutingHint",
                exception: "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                message: "The X-AnchorMailbox header is missing or not a valid routing hint.".into(),
            },
        );
    }
    match s.faults.roll() {
        Fault::Reset => {
            lock(&s.stats).resets += 1;
            return reset();
        }
        Fault::ServerError(code) => {
            return exo_error_response(
                &s,
                &ExoError {
                    status: code,
                    code: "InternalServerError",
                    exception: "System.Exception",
                    message: "The service is temporarily unavailable.".into(),
                },
            );
        }
        Fault::ThrottleWithoutRetryAfter => {
            return exo_error_response(
                &s,
                &ExoError { status: 429, code: "TooManyRequests", exception: "Microsoft.Exchange.Throttling", message: "The request was throttled.".into() },
            );
        }
        _ => {}
    }
    let sent = s.clock.now();
    s.clock.sleep(s.cfg.scaled(s.faults.delay())).await;
    if let Some(r) = exo_hidden_limit(&s, ti, sent) {
        return r;
    }
    let select = Query::parse(uri.query().unwrap_or_default()).get("$select").map(String::from);
    match invoke_one(&s, ti, &body, v2.as_deref()) {
        Ok(out) => {
            s.count_status(200);
            json_response(200, &exo_request_id(), Some(&envelope(&s, &tenant, out, select.as_deref())))
        }
        Err(e) => exo_error_response(&s, &e),
    }
}

async fn exo_invoke(State(s): State<Arc<Shared>>, Path(tenant): Path<String>, headers: HeaderMap, uri: axum::http::Uri, body: Bytes) -> Response {
    exo_common(s, tenant, headers, uri, body, None).await
}

async fn exo_v2(
    State(s): State<Arc<Shared>>,
    Path((tenant, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    if endpoint != "Mailbox" && endpoint != "MailboxFolderPermission" {
        return (StatusCode::NOT_FOUND, format!("The v2.0 endpoint {endpoint} is not simulated.")).into_response();
    }
    exo_common(s, tenant, headers, uri, body, Some(endpoint)).await
}

/// Exchange's `$batch`: items carry full InvokeCommand URLs; without
/// `Prefer: odata.continue-on-error` processing stops at the first failure.
async fn exo_batch(State(s): State<Arc<Shared>>, Path(tenant): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    {
        let mut st = lock(&s.stats);
        st.http_requests += 1;
        st.exchange_requests += 1;
    }
    let Some(requests) = serde_json::from_slice::<Value>(&body).ok().and_then(|b| b.get("requests").and_then(Value::as_array).cloned()) else {
        return exo_error_response(
            &s,
            &ExoError { status: 400, code: "BadRequest", exception: "Microsoft.OData.ODataException", message: "Invalid batch payload.".into() },
        );
    };
    let any_write = requests.iter().any(|r| r.get("body").and_then(|b| exchange::parse_input(b).ok()).is_some_and(|(c, _)| c.write));
    let (_, ti) = match exo_auth(&s, &headers, &tenant, "Exchange.ManageAsApp", any_write) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if s.faults.roll() == Fault::Reset {
        lock(&s.stats).resets += 1;
        return reset();
    }
    let sent = s.clock.now();
    s.clock.sleep(s.cfg.scaled(s.faults.delay())).await;
    // A batch is one call against the hidden limit, as the client's pacer counts it.
    if let Some(r) = exo_hidden_limit(&s, ti, sent) {
        return r;
    }
    let continue_on_error = headers.get("prefer").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("odata.continue-on-error"));
    let mut responses = Vec::new();
    for r in &requests {
        let id = r.get("id").cloned().unwrap_or(Value::Null);
        let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
        let item_headers = r.get("headers").and_then(Value::as_object);
        let has_anchor = item_headers.is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("x-anchormailbox"))) || anchor_ok(&headers);
        let result = if !url.contains("/InvokeCommand") {
            Err(ExoError { status: 400, code: "BadRequest", exception: "Microsoft.OData.ODataException", message: format!("Unsupported batch url {url}.") })
        } else if !has_anchor {
            Err(ExoError {
                status: 400,
                code: "ErrorIncorrectRoutingHint",
                exception: "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                message: "The X-AnchorMailbox header is missing or not a valid routing hint.".into(),
            })
        } else {
            invoke_one(&s, ti, r.get("body").unwrap_or(&Value::Null), None)
        };
        let failed = result.is_err();
        responses.push(match result {
            Ok(out) => json!({"id": id, "status": 200, "body": envelope(&s, &tenant, out, None)}),
            Err(e) => json!({"id": id, "status": e.status, "body": e.body()}),
        });
        if failed && !continue_on_error {
            break;
        }
    }
    s.count_status(200);
    json_response(200, &exo_request_id(), Some(&json!({"responses": responses})))
}

// ---------------------------------------------------------------- control

fn control_router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/ledger", get(ctl_ledger))
        .route("/counters", get(ctl_counters))
        .route("/stats", get(ctl_stats))
        .route("/urls", get(|State(s): State<Arc<Shared>>| async move { axum::Json(s.urls()) }))
        .route("/tenants", get(ctl_tenants))
        .route("/tenants/{tenant}/users/{user}", get(ctl_user))
        .route("/clock/advance", post(ctl_advance))
        .route("/faults", axum::routing::put(ctl_faults))
        .route("/latency", axum::routing::put(ctl_latency))
}

#[derive(Deserialize)]
struct LedgerQuery {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    since: u64,
}

async fn ctl_ledger(State(s): State<Arc<Shared>>, uri: axum::http::Uri) -> Response {
    let q: LedgerQuery = serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or(LedgerQuery { kind: None, since: 0 });
    let w = lock(&s.world);
    let effects: Vec<&Effect> = w.ledger.effects.iter().filter(|e| e.seq > q.since && q.kind.as_ref().is_none_or(|k| &e.kind == k)).collect();
    axum::Json(json!({"effects": effects})).into_response()
}

async fn ctl_counters(State(s): State<Arc<Shared>>) -> Response {
    let w = lock(&s.world);
    let mut out: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for ((k, t), n) in &w.ledger.counters {
        out.entry(k).or_default().insert(t, *n);
    }
    axum::Json(json!(out)).into_response()
}

async fn ctl_stats(State(s): State<Arc<Shared>>) -> Response {
    let mut st = lock(&s.stats).clone();
    let t = lock(&s.throttle);
    st.throttled = t.throttled;
    st.early_retries = t.early_retries;
    st.identity_writes = t.identity_writes;
    st.intune_writes = t.intune_writes;
    st.identity_ru = t.identity_ru;
    axum::Json(json!(st)).into_response()
}

async fn ctl_tenants(State(s): State<Arc<Shared>>) -> Response {
    let w = lock(&s.world);
    let list: Vec<Value> = w.tenants.iter().map(|t| json!({"id": t.id, "name": t.name, "domains": t.domains, "users": t.users.len(), "apps": t.apps.iter().map(|a| &a.client_id).collect::<Vec<_>>()})).collect();
    axum::Json(json!({"tenants": list})).into_response()
}

async fn ctl_user(State(s): State<Arc<Shared>>, Path((tenant, user)): Path<(String, String)>) -> Response {
    let mut w = lock(&s.world);
    let Some(ti) = w.tenant(&tenant) else { return (StatusCode::NOT_FOUND, "unknown tenant").into_response() };
    let now = s.clock.now();
    let World { tenants, ledger, .. } = &mut *w;
    let t = &mut tenants[ti];
    t.settle(now, ledger);
    let Some(id) = t.user_id(&user).or_else(|| t.deleted.keys().find(|k| k.eq_ignore_ascii_case(&user)).cloned()) else {
        return (StatusCode::NOT_FOUND, "unknown user").into_response();
    };
    let groups: Vec<&str> = t.groups.values().filter(|g| g.members.contains(&id)).map(|g| g.name.as_str()).collect();
    let user_obj = t.users.get(&id).map(|u| json!(u)).or_else(|| t.deleted.get(&id).map(|d| json!({"deleted": d.deleted_date, "user": d.user})));
    axum::Json(json!({
        "user": user_obj,
        "groups": groups,
        "licences": t.licence_states(&id),
        "roles": t.roles.iter().filter(|r| r.principal == id).collect::<Vec<_>>(),
        "devices": t.devices.values().filter(|d| d.owner == id).collect::<Vec<_>>(),
        "managed_devices": t.managed.values().filter(|d| d.user == id).collect::<Vec<_>>(),
        "mailbox": t.mailboxes.get(&id),
        "mailbox_ready": t.mailbox_ready(&id).is_ok(),
        "drive": t.drives.get(&id),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct Advance {
    seconds: f64,
}

async fn ctl_advance(State(s): State<Arc<Shared>>, axum::Json(a): axum::Json<Advance>) -> Response {
    s.clock.advance(Duration::from_secs_f64(a.seconds.max(0.0)));
    axum::Json(json!({"now_ms": s.clock.now().as_millis() as u64})).into_response()
}

async fn ctl_faults(State(s): State<Arc<Shared>>, axum::Json(r): axum::Json<FaultRates>) -> Response {
    s.faults.set_rates(r);
    StatusCode::NO_CONTENT.into_response()
}

async fn ctl_latency(State(s): State<Arc<Shared>>, axum::Json(l): axum::Json<Latency>) -> Response {
    s.faults.set_latency(l);
    StatusCode::NO_CONTENT.into_response()
}
