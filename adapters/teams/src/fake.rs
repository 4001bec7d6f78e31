//! Bot Framework over real HTTP, for tests: the OpenID metadata and the key set (RSA keys
//! with `endorsements`, as Bot Framework serves them), counting fetches; a channel that
//! mints the tokens Bot Framework would put on activities; the bot's token endpoint; and
//! the Bot Connector's v3 routes, which require that token, record every call and message,
//! and can answer 429 with Retry-After.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use crate::auth::ISSUER;

/// A signing key the fake publishes (or keeps back, to sign with an unknown id).
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub endorsements: Vec<String>,
    encoding: EncodingKey,
    /// The public key as a JWK's `n` and `e`.
    n: String,
    e: String,
    /// The public key's PKCS#1 DER: what a forger might use as an HMAC secret.
    pub public_der: Vec<u8>,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key.
    pub fn generate(kid: &str, endorsements: &[&str]) -> Self {
        use rsa::pkcs1::EncodeRsaPublicKey;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
        let der = private.to_pkcs1_der().expect("DER");
        let public = private.to_public_key();
        SigningKey {
            kid: kid.into(),
            endorsements: endorsements.iter().map(|e| e.to_string()).collect(),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            public_der: public.to_pkcs1_der().expect("DER").as_bytes().to_vec(),
        }
    }

    /// The same key under another id (a rotation, or a forger's guess).
    pub fn with_kid(&self, kid: &str) -> Self {
        SigningKey { kid: kid.into(), ..self.clone() }
    }

    fn jwk(&self) -> Value {
        json!({ "kty": "RSA", "use": "sig", "kid": self.kid, "n": self.n, "e": self.e, "endorsements": self.endorsements })
    }

    /// `claims` signed RS256 under this key, with its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = Header { kid: Some(self.kid.clone()), ..Header::new(Algorithm::RS256) };
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("a token")
    }
}

/// A message the bot posted, as Teams keeps it.
#[derive(Debug, Clone)]
pub struct Message {
    /// The channel (`19:…@thread.tacv2`) or personal chat (`a:…`) it is in.
    pub conversation: String,
    /// The thread's root activity, for a reply in a channel thread.
    pub thread: Option<String>,
    pub id: String,
    pub activity: Value,
    pub edits: usize,
}

/// A connector call, as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub at: std::time::Instant,
    /// What it was answered with.
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    keys: Vec<SigningKey>,
    metadata_fetches: usize,
    key_fetches: usize,
    bot: Option<(String, String)>,
    tokens: Vec<String>,
    messages: Vec<Message>,
    calls: Vec<Call>,
    next_id: u64,
    /// Connector calls still to refuse with 429, and the Retry-After to send.
    throttled: (usize, u64),
}

/// The OpenID metadata and key set on loopback.
#[derive(Clone)]
pub struct FakeBotFramework {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeBotFramework {
    pub async fn start(keys: Vec<SigningKey>) -> Self {
        let inner = Arc::new(Mutex::new(Inner { keys, ..Inner::default() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let fake = FakeBotFramework { addr, inner };
        let router = Router::new()
            .route("/v1/.well-known/openidconfiguration", get(metadata))
            .route("/v1/.well-known/keys", get(key_set))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/v3/conversations", post(create_conversation))
            .route("/v3/conversations/{conversation}/activities", post(send_activity))
            .route("/v3/conversations/{conversation}/activities/{activity}", put(update_activity))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        fake
    }

    pub fn metadata_url(&self) -> String {
        format!("http://{}/v1/.well-known/openidconfiguration", self.addr)
    }

    /// The login base (`{base}/{tenant}/oauth2/v2.0/token`) and the connector's service URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bot registration whose client credentials the token endpoint accepts.
    pub fn register_bot(&self, app_id: &str, password: &str) {
        self.inner.lock().expect("fake lock").bot = Some((app_id.into(), password.into()));
    }

    /// The next `n` connector calls are answered 429 with `Retry-After: secs`.
    pub fn throttle(&self, n: usize, secs: u64) {
        self.inner.lock().expect("fake lock").throttled = (n, secs);
    }

    pub fn messages(&self) -> Vec<Message> {
        self.inner.lock().expect("fake lock").messages.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().expect("fake lock").calls.clone()
    }

    /// Bot tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.inner.lock().expect("fake lock").tokens.len()
    }

    /// Publishes another key (a rotation).
    pub fn publish(&self, key: SigningKey) {
        self.inner.lock().expect("fake lock").keys.push(key);
    }

    /// How many times the key set was read.
    pub fn key_fetches(&self) -> usize {
        self.inner.lock().expect("fake lock").key_fetches
    }

    /// The claims Bot Framework puts on an activity for `app_id` from `service_url`, valid
    /// from now for an hour.
    pub fn claims(app_id: &str, service_url: &str, now: chrono::DateTime<chrono::Utc>) -> Value {
        let t = now.timestamp();
        json!({ "iss": ISSUER, "aud": app_id, "serviceurl": service_url, "nbf": t - 5, "exp": t + 3600, "iat": t - 5 })
    }
}

async fn metadata(State(f): State<FakeBotFramework>) -> Json<Value> {
    f.inner.lock().expect("fake lock").metadata_fetches += 1;
    Json(json!({
        "issuer": ISSUER,
        "authorization_endpoint": "https://invalid.botframework.com",
        "jwks_uri": format!("http://{}/v1/.well-known/keys", f.addr),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    }))
}

async fn key_set(State(f): State<FakeBotFramework>) -> Json<Value> {
    let mut inner = f.inner.lock().expect("fake lock");
    inner.key_fetches += 1;
    Json(json!({ "keys": inner.keys.iter().map(SigningKey::jwk).collect::<Vec<_>>() }))
}

/// Client credentials for the registered bot, with Bot Framework's scope.
async fn token(State(f): State<FakeBotFramework>, body: axum::body::Bytes) -> Response {
    let form: std::collections::HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let mut inner = f.inner.lock().expect("fake lock");
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let error = |code: &str, description: &str| (StatusCode::BAD_REQUEST, Json(json!({ "error": code, "error_description": description }))).into_response();
    if field("grant_type") != "client_credentials" {
        return error("unsupported_grant_type", "AADSTS70003: client_credentials only");
    }
    if field("scope") != crate::connector::SCOPE {
        return error("invalid_scope", "AADSTS70011: the scope is not Bot Framework's");
    }
    match &inner.bot {
        Some((id, password)) if id == field("client_id") && password == field("client_secret") => {}
        _ => {
            return (StatusCode::UNAUTHORIZED, Json(json!({ "error": "invalid_client", "error_description": "AADSTS7000215: invalid client secret" })))
                .into_response();
        }
    }
    let token = format!("fake-bot-token-{}", inner.tokens.len() + 1);
    inner.tokens.push(token.clone());
    Json(json!({ "token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": token })).into_response()
}

/// The common checks of a connector call: the bot's token, then any throttling. Records
/// the call with its answer; `Some` is the refusal to send.
fn admit(inner: &mut Inner, headers: &HeaderMap, method: &str, path: &str, body: &Value) -> Option<Response> {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
    if !inner.tokens.iter().any(|t| t == bearer) {
        inner.calls.push(Call { method: method.into(), path: path.into(), body: body.clone(), at: std::time::Instant::now(), status: 401 });
        return Some(
            (StatusCode::UNAUTHORIZED, Json(json!({ "error": { "code": "Unauthorized", "message": "Authorization has been denied for this request." } })))
                .into_response(),
        );
    }
    if inner.throttled.0 > 0 {
        inner.throttled.0 -= 1;
        inner.calls.push(Call { method: method.into(), path: path.into(), body: body.clone(), at: std::time::Instant::now(), status: 429 });
        let retry = inner.throttled.1.to_string();
        return Some(
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", retry)], Json(json!({ "error": { "code": "TooManyRequests", "message": "slow down" } })))
                .into_response(),
        );
    }
    inner.calls.push(Call { method: method.into(), path: path.into(), body: body.clone(), at: std::time::Instant::now(), status: 200 });
    None
}

fn next_id(inner: &mut Inner) -> String {
    inner.next_id += 1;
    format!("17{:011}", inner.next_id)
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": { "code": "BadArgument", "message": message } }))).into_response()
}

/// A new thread in a channel (with its first activity), or a personal chat with a member.
async fn create_conversation(State(f): State<FakeBotFramework>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut inner = f.inner.lock().expect("fake lock");
    if let Some(r) = admit(&mut inner, &headers, "POST", "/v3/conversations", &body) {
        return r;
    }
    if let Some(channel) = body["channelData"]["channel"]["id"].as_str() {
        let Some(activity) = body.get("activity").filter(|a| a.is_object()) else { return bad_request("a channel thread starts with an activity") };
        let id = next_id(&mut inner);
        inner.messages.push(Message { conversation: channel.into(), thread: None, id: id.clone(), activity: activity.clone(), edits: 0 });
        return Json(json!({ "id": format!("{channel};messageid={id}"), "activityId": id, "serviceUrl": f.url() })).into_response();
    }
    match body["members"].as_array().and_then(|m| m.first()).and_then(|m| m["id"].as_str()) {
        Some(user) => Json(json!({ "id": format!("a:personal-{user}") })).into_response(),
        None => bad_request("a conversation needs a channel or a member"),
    }
}

async fn send_activity(State(f): State<FakeBotFramework>, headers: HeaderMap, Path(conversation): Path<String>, Json(body): Json<Value>) -> Response {
    let mut inner = f.inner.lock().expect("fake lock");
    if let Some(r) = admit(&mut inner, &headers, "POST", &format!("/v3/conversations/{conversation}/activities"), &body) {
        return r;
    }
    let (base, thread) = match conversation.split_once(";messageid=") {
        Some((base, root)) => {
            if !inner.messages.iter().any(|m| m.conversation == base && m.id == root) {
                return (StatusCode::NOT_FOUND, Json(json!({ "error": { "code": "ConversationNotFound", "message": "no such thread" } }))).into_response();
            }
            (base.to_string(), Some(root.to_string()))
        }
        None => (conversation.clone(), None),
    };
    let id = next_id(&mut inner);
    inner.messages.push(Message { conversation: base, thread, id: id.clone(), activity: body, edits: 0 });
    Json(json!({ "id": id })).into_response()
}

async fn update_activity(
    State(f): State<FakeBotFramework>,
    headers: HeaderMap,
    Path((conversation, activity)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut inner = f.inner.lock().expect("fake lock");
    if let Some(r) = admit(&mut inner, &headers, "PUT", &format!("/v3/conversations/{conversation}/activities/{activity}"), &body) {
        return r;
    }
    if body["id"].as_str() != Some(activity.as_str()) {
        return bad_request("the activity's id must be the one updated");
    }
    let base = conversation.split_once(";messageid=").map_or(conversation.as_str(), |(b, _)| b).to_string();
    match inner.messages.iter_mut().find(|m| m.id == activity && m.conversation == base) {
        Some(m) => {
            m.activity = body;
            m.edits += 1;
            Json(json!({ "id": activity })).into_response()
        }
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": { "code": "ActivityNotFound", "message": "no such activity" } }))).into_response(),
    }
}

/// Teams' side of a conversation, for tests and the demo: builds the activities Teams sends
/// into one channel, signs them as Bot Framework does, and posts them to the bot.
pub struct Driver {
    endpoint: String,
    fake: FakeBotFramework,
    key: SigningKey,
    app_id: String,
    tenant: String,
    channel: String,
    /// The Entra group of the team the channel is in.
    team_group: String,
    names: std::collections::HashMap<String, String>,
    http: reqwest::Client,
    next: std::sync::atomic::AtomicU64,
}

impl Driver {
    /// `endpoint`: the bot's messaging endpoint; activities come from `channel` in `tenant`.
    pub fn new(endpoint: impl Into<String>, fake: FakeBotFramework, key: SigningKey, app_id: &str, tenant: &str, channel: &str) -> Self {
        Driver {
            endpoint: endpoint.into(),
            fake,
            key,
            app_id: app_id.into(),
            tenant: tenant.into(),
            channel: channel.into(),
            team_group: "5c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f".into(),
            names: Default::default(),
            http: reqwest::Client::new(),
            next: 0.into(),
        }
    }

    /// The channel is in the team whose Entra group is `group` (`channelData.team.aadGroupId`).
    pub fn in_team(mut self, group: &str) -> Self {
        self.team_group = group.into();
        self
    }

    /// The display name activities from `aad_id` carry (else "`aad_id` name").
    pub fn with_name(mut self, aad_id: &str, name: &str) -> Self {
        self.names.insert(aad_id.into(), name.into());
        self
    }

    /// An activity of `kind` from the user with Entra object id `from`, with `extra` fields.
    pub fn activity(&self, kind: &str, from: &str, extra: Value) -> Value {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = self.names.get(from).cloned().unwrap_or_else(|| format!("{from} name"));
        let mut a = json!({
            "type": kind,
            "id": format!("act-{n}"),
            "channelId": "msteams",
            "serviceUrl": self.fake.url(),
            "from": { "id": format!("29:{from}"), "name": name, "aadObjectId": from },
            "recipient": { "id": format!("28:{}", self.app_id), "name": "Offboard" },
            "conversation": { "id": self.channel, "conversationType": "channel", "tenantId": self.tenant },
            "channelData": { "tenant": { "id": self.tenant }, "team": { "id": "19:team@thread.tacv2", "aadGroupId": self.team_group }, "channel": { "id": self.channel } },
        });
        if let (Some(a), Some(extra)) = (a.as_object_mut(), extra.as_object()) {
            a.extend(extra.clone());
        }
        a
    }

    /// A message mentioning the bot: `@Offboard {text}`, with its mention entity.
    pub fn mention(&self, from: &str, text: &str) -> Value {
        let mention = json!([{ "type": "mention", "text": "<at>Offboard</at>", "mentioned": { "id": format!("28:{}", self.app_id), "name": "Offboard" } }]);
        self.activity("message", from, json!({ "text": format!("<at>Offboard</at> {text}"), "entities": mention }))
    }

    /// The token Bot Framework would put on an activity now.
    pub fn token(&self) -> String {
        self.key.sign(&FakeBotFramework::claims(&self.app_id, &self.fake.url(), chrono::Utc::now()))
    }

    pub async fn send_with(&self, activity: &Value, token: Option<String>) -> reqwest::Result<reqwest::Response> {
        let mut r = self.http.post(&self.endpoint).json(activity);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await
    }

    pub async fn send(&self, activity: &Value) -> reqwest::Result<reqwest::Response> {
        self.send_with(activity, Some(self.token())).await
    }

    /// An invoke (`task/fetch`, `adaptiveCard/action`, …) and the bot's answer to it.
    pub async fn invoke(&self, from: &str, name: &str, value: Value) -> reqwest::Result<Value> {
        self.send(&self.activity("invoke", from, json!({ "name": name, "value": value }))).await?.error_for_status()?.json().await
    }
}

/// The data Teams sends when a dialog's card is submitted: each input's value, `changes`
/// applied, with the submit button's data.
pub fn submitted(dialog: &Value, changes: Value) -> Value {
    let card = &dialog["task"]["value"]["card"]["content"];
    let mut data = card["actions"][0]["data"].clone();
    for input in card["body"].as_array().into_iter().flatten().filter(|b| b.get("id").is_some()) {
        data[input["id"].as_str().unwrap_or_default()] = input["value"].clone();
    }
    if let (Some(d), Some(c)) = (data.as_object_mut(), changes.as_object()) {
        d.extend(c.clone());
    }
    data
}
