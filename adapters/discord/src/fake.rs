//! A local Discord for tests and the demo, over real HTTP under `/api/v10`: command
//! registration (bulk overwrite, global or per guild, checked against Discord's naming
//! rules), follow-ups on interaction tokens (refused after 15 minutes, as Discord does),
//! 429 injection, and every call recorded. [`Driver`] signs interactions with a generated
//! Ed25519 key, as Discord signs them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

/// An interaction token's life.
pub const TOKEN_LIFE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// Registered commands, by scope (`global` or a guild id).
    commands: HashMap<String, Vec<Value>>,
    /// Interaction tokens and when they were issued.
    tokens: HashMap<String, Instant>,
    /// The next call on a path containing the key is answered 429 with this wait.
    throttle: Option<(String, f64)>,
}

#[derive(Clone)]
pub struct FakeDiscord {
    url: String,
    bot_token: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeDiscord {
    /// Serves on a free loopback port; `bot_token` is the one token it accepts.
    pub async fn start(bot_token: &str) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/api/v10", listener.local_addr().expect("addr"));
        let fake = FakeDiscord { url, bot_token: bot_token.into(), inner };
        let router = Router::new()
            .route("/api/v10/applications/{app}/commands", put(global_commands))
            .route("/api/v10/applications/{app}/guilds/{guild}/commands", put(guild_commands))
            .route("/api/v10/webhooks/{app}/{token}", post(followup))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        fake
    }

    /// The API base (`…/api/v10`) the adapter is pointed at.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().expect("fake lock").calls.clone()
    }

    /// The commands registered globally (`None`) or in a guild.
    pub fn commands(&self, guild: Option<&str>) -> Vec<Value> {
        self.inner.lock().expect("fake lock").commands.get(guild.unwrap_or("global")).cloned().unwrap_or_default()
    }

    /// An interaction token Discord issued `age` ago.
    pub fn issue_token(&self, token: &str, age: Duration) {
        self.inner.lock().expect("fake lock").tokens.insert(token.into(), Instant::now() - age);
    }

    /// The next call whose path contains `path` gets a 429 asking to wait `seconds`.
    pub fn throttle_next(&self, path: &str, seconds: f64) {
        self.inner.lock().expect("fake lock").throttle = Some((path.into(), seconds));
    }

    fn record(&self, method: &str, path: String, body: Value, status: u16) {
        self.inner.lock().expect("fake lock").calls.push(Call { method: method.into(), path, body, status });
    }

    /// A 429 if one was asked for this path.
    fn throttled(&self, method: &str, path: &str, body: &Value) -> Option<Response> {
        let mut inner = self.inner.lock().expect("fake lock");
        let (key, secs) = inner.throttle.clone()?;
        if !path.contains(&key) {
            return None;
        }
        inner.throttle = None;
        inner.calls.push(Call { method: method.into(), path: path.into(), body: body.clone(), status: 429 });
        Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", format!("{}", secs.ceil() as u64))],
                axum::Json(json!({ "message": "You are being rate limited.", "retry_after": secs, "global": false })),
            )
                .into_response(),
        )
    }
}

fn refused(status: StatusCode, code: u32, message: &str) -> Response {
    (status, axum::Json(json!({ "code": code, "message": message }))).into_response()
}

/// Discord's rules for a chat command: name 1–32 characters of lower-case letters, digits,
/// `-` and `_`; description 1–100; at most 25 options, each named and described the same way.
pub fn command_problems(c: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let named = |v: &Value, what: &str, problems: &mut Vec<String>| {
        let name = v["name"].as_str().unwrap_or_default();
        let ok = (1..=32).contains(&name.chars().count()) && name.chars().all(|ch| ch.is_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_');
        if !ok {
            problems.push(format!("{what} name {name:?} breaks Discord's naming rules"));
        }
        let description = v["description"].as_str().unwrap_or_default().chars().count();
        if !(1..=100).contains(&description) {
            problems.push(format!("{what} {name:?}: description of {description} characters (1 to 100)"));
        }
        let options = v["options"].as_array().map_or(0, Vec::len);
        if options > 25 {
            problems.push(format!("{what} {name:?}: {options} options (at most 25)"));
        }
        if let Some(choices) = v["choices"].as_array()
            && choices.len() > 25
        {
            problems.push(format!("{what} {name:?}: {} choices (at most 25)", choices.len()));
        }
    };
    named(c, "command", &mut problems);
    for o in c["options"].as_array().into_iter().flatten() {
        named(o, "option", &mut problems);
        for s in o["options"].as_array().into_iter().flatten() {
            named(s, "option", &mut problems);
        }
    }
    problems
}

async fn overwrite(fake: FakeDiscord, headers: HeaderMap, path: String, scope: String, body: Value) -> Response {
    if let Some(r) = fake.throttled("PUT", &path, &body) {
        return r;
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bot {}", fake.bot_token)) {
        fake.record("PUT", path, body, 401);
        return refused(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let commands = body.as_array().cloned().unwrap_or_default();
    let problems: Vec<String> = commands.iter().flat_map(command_problems).collect();
    if !problems.is_empty() {
        fake.record("PUT", path, body, 400);
        return refused(StatusCode::BAD_REQUEST, 50035, &format!("Invalid Form Body: {}", problems.join("; ")));
    }
    let stored: Vec<Value> = commands
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            c["id"] = json!(format!("13{i:017}"));
            c
        })
        .collect();
    fake.inner.lock().expect("fake lock").commands.insert(scope, stored.clone());
    fake.record("PUT", path, body, 200);
    axum::Json(stored).into_response()
}

async fn global_commands(State(fake): State<FakeDiscord>, Path(app): Path<String>, headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    let path = format!("/applications/{app}/commands");
    overwrite(fake, headers, path, "global".into(), body).await
}

async fn guild_commands(
    State(fake): State<FakeDiscord>,
    Path((app, guild)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let path = format!("/applications/{app}/guilds/{guild}/commands");
    overwrite(fake, headers, path, guild, body).await
}

async fn followup(State(fake): State<FakeDiscord>, Path((app, token)): Path<(String, String)>, axum::Json(body): axum::Json<Value>) -> Response {
    let path = format!("/webhooks/{app}/{token}");
    if let Some(r) = fake.throttled("POST", &path, &body) {
        return r;
    }
    let issued = fake.inner.lock().expect("fake lock").tokens.get(&token).copied();
    if issued.is_none_or(|at| at.elapsed() >= TOKEN_LIFE) {
        fake.record("POST", path, body, 404);
        return refused(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
    }
    fake.record("POST", path, body.clone(), 200);
    axum::Json(json!({ "id": "1300000000000000001", "content": body["content"] })).into_response()
}

/// Sends interactions to the bot's endpoint, signed as Discord signs them.
pub struct Driver {
    endpoint: String,
    fake: FakeDiscord,
    key: SigningKey,
    application_id: String,
    guild: String,
    channel: String,
    http: reqwest::Client,
    next: std::sync::atomic::AtomicU64,
}

impl Driver {
    pub fn new(endpoint: impl Into<String>, fake: FakeDiscord, application_id: &str, guild: &str, channel: &str) -> Self {
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        Driver {
            endpoint: endpoint.into(),
            fake,
            key,
            application_id: application_id.into(),
            guild: guild.into(),
            channel: channel.into(),
            http: reqwest::Client::new(),
            next: 1.into(),
        }
    }

    /// The application's public key, as the Developer Portal shows it.
    pub fn public_key(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// An interaction of `kind` from the member `user` holding `roles`, with `data`; its
    /// token is issued by the fake.
    pub fn interaction(&self, kind: u64, user: &str, roles: &[&str], data: Value) -> Value {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = format!("itoken-{n}");
        self.fake.issue_token(&token, Duration::ZERO);
        json!({
            "id": format!("12{n:017}"),
            "application_id": self.application_id,
            "type": kind,
            "data": data,
            "guild_id": self.guild,
            "channel_id": self.channel,
            "member": { "user": { "id": user, "username": format!("{user}-name"), "global_name": format!("{user} name") }, "roles": roles, "permissions": "0" },
            "token": token,
            "version": 1,
        })
    }

    /// `(signature, timestamp)` for `body` at `at` (Unix seconds).
    pub fn sign(&self, body: &[u8], at: i64) -> (String, String) {
        let timestamp = at.to_string();
        let signature = self.key.sign(&[timestamp.as_bytes(), body].concat());
        (hex::encode(signature.to_bytes()), timestamp)
    }

    /// Posts `body` with the given headers, as they are.
    pub async fn post_raw(&self, body: &[u8], signature: Option<&str>, timestamp: Option<&str>) -> reqwest::Response {
        let mut r = self.http.post(&self.endpoint).header("content-type", "application/json").body(body.to_vec());
        if let Some(s) = signature {
            r = r.header("x-signature-ed25519", s);
        }
        if let Some(t) = timestamp {
            r = r.header("x-signature-timestamp", t);
        }
        r.send().await.expect("the endpoint answers")
    }

    /// Sends an interaction signed now.
    pub async fn send(&self, interaction: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(interaction).expect("json");
        let (sig, ts) = self.sign(&body, chrono::Utc::now().timestamp());
        self.post_raw(&body, Some(&sig), Some(&ts)).await
    }

    /// Sends an interaction and reads the bot's answer.
    pub async fn answer(&self, interaction: &Value) -> Value {
        let r = self.send(interaction).await;
        assert_eq!(r.status(), 200, "the endpoint answered {}", r.status());
        r.json().await.expect("a JSON answer")
    }
}

/// What a member submits from a modal: each component's current answer, `changes` applied
/// (text for inputs, arrays for selects), in Label shape.
pub fn submitted(modal: &Value, changes: Value) -> Value {
    let m = &modal["data"];
    let components: Vec<Value> = m["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|label| {
            let input = &label["component"];
            let id = input["custom_id"].as_str()?;
            let answer = match (input["type"].as_u64(), changes.get(id)) {
                (Some(3), Some(v)) => json!({ "type": 3, "custom_id": id, "values": v }),
                (Some(3), None) => {
                    let chosen: Vec<&Value> = input["options"].as_array().into_iter().flatten().filter(|o| o["default"] == true).map(|o| &o["value"]).collect();
                    json!({ "type": 3, "custom_id": id, "values": chosen })
                }
                (_, Some(v)) => json!({ "type": 4, "custom_id": id, "value": v }),
                (_, None) => json!({ "type": 4, "custom_id": id, "value": input["value"].as_str().unwrap_or_default() }),
            };
            Some(json!({ "type": 18, "id": 1, "component": answer }))
        })
        .collect();
    json!({ "custom_id": m["custom_id"], "components": components })
}
