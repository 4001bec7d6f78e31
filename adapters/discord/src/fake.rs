//! A local Discord for tests and the demo, over real HTTP under `/api/v10`: command
//! registration (bulk overwrite, global or per guild, checked against Discord's naming
//! rules), follow-ups on interaction tokens (refused after 15 minutes, as Discord does),
//! channel messages as JSON or multipart with files (10 MiB each), edits, threads started
//! from messages (one per message), direct-message channels, 429 injection, and every
//! call recorded. [`Driver`] signs interactions with a generated
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
    /// When it arrived.
    pub at: Instant,
}

/// A message the bot posted, as Discord holds it.
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: String,
    pub id: String,
    pub body: Value,
    pub edits: u32,
    /// Attached files: name and bytes.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Discord's default upload limit per file.
pub const MAX_FILE: usize = 10 * 1024 * 1024;

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    messages: Vec<Message>,
    /// Channels and threads that exist, with a thread's parent channel.
    channels: HashMap<String, Option<String>>,
    next_id: u64,
    /// Registered commands, by scope (`global` or a guild id).
    commands: HashMap<String, Vec<Value>>,
    /// The next message posted to a channel whose path contains the key says its bucket is
    /// spent for this long (`X-RateLimit-Remaining: 0`).
    spent: Option<(String, f64)>,
    /// The bot's permissions in every channel (its role's), and bits its channel overwrite denies.
    bot_permissions: u64,
    denied: u64,
    /// Interaction tokens and when they were issued.
    tokens: HashMap<String, Instant>,
    /// The next call on a path containing the key is answered 429 with this wait, global or not.
    throttle: Option<(String, f64, bool)>,
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
        let all: u64 = crate::api::bits::NEEDED.iter().map(|(b, _)| b).sum();
        let inner = Arc::new(Mutex::new(Inner { bot_permissions: all, ..Inner::default() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/api/v10", listener.local_addr().expect("addr"));
        let fake = FakeDiscord { url, bot_token: bot_token.into(), inner };
        let router = Router::new()
            .route("/api/v10/applications/{app}/commands", put(global_commands))
            .route("/api/v10/applications/{app}/guilds/{guild}/commands", put(guild_commands).get(list_guild_commands))
            .route("/api/v10/users/@me", axum::routing::get(me))
            .route("/api/v10/guilds/{guild}/roles", axum::routing::get(roles))
            .route("/api/v10/guilds/{guild}/members/{user}", axum::routing::get(member))
            .route("/api/v10/channels/{channel}", axum::routing::get(channel))
            .route("/api/v10/webhooks/{app}/{token}", post(followup))
            .route("/api/v10/channels/{channel}/messages", post(create_message))
            .route("/api/v10/channels/{channel}/messages/{id}", axum::routing::patch(edit_message))
            .route("/api/v10/channels/{channel}/messages/{id}/threads", post(start_thread))
            .route("/api/v10/users/@me/channels", post(dm_channel))
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

    /// The bot's channel overwrite denies `bits` (as a server admin might).
    pub fn deny_bot(&self, bits: u64) {
        self.inner.lock().expect("fake lock").denied = bits;
    }

    /// A text channel the bot can post in.
    pub fn add_channel(&self, id: &str) {
        self.inner.lock().expect("fake lock").channels.insert(id.into(), None);
    }

    pub fn messages(&self) -> Vec<Message> {
        self.inner.lock().expect("fake lock").messages.clone()
    }

    /// The thread started from message `id`, if any, with its parent channel.
    pub fn thread_of(&self, id: &str) -> Option<String> {
        self.inner.lock().expect("fake lock").channels.get(id).cloned().flatten()
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bot {}", self.bot_token))
    }

    fn next_id(&self) -> String {
        let mut inner = self.inner.lock().expect("fake lock");
        inner.next_id += 1;
        format!("14{:017}", inner.next_id)
    }

    /// An interaction token Discord issued `age` ago.
    pub fn issue_token(&self, token: &str, age: Duration) {
        self.inner.lock().expect("fake lock").tokens.insert(token.into(), Instant::now() - age);
    }

    /// The next call whose path contains `path` gets a 429 asking to wait `seconds`.
    pub fn throttle_next(&self, path: &str, seconds: f64) {
        self.inner.lock().expect("fake lock").throttle = Some((path.into(), seconds, false));
    }

    /// The next message posted on `path` answers that its bucket is spent for `seconds`.
    pub fn spend_bucket(&self, path: &str, seconds: f64) {
        self.inner.lock().expect("fake lock").spent = Some((path.into(), seconds));
    }

    /// The next call whose path contains `path` gets a global 429: every route must wait.
    pub fn throttle_next_globally(&self, path: &str, seconds: f64) {
        self.inner.lock().expect("fake lock").throttle = Some((path.into(), seconds, true));
    }

    fn record(&self, method: &str, path: String, body: Value, status: u16) {
        self.inner.lock().expect("fake lock").calls.push(Call { method: method.into(), path, body, status, at: Instant::now() });
    }

    /// A 429 if one was asked for this path.
    fn throttled(&self, method: &str, path: &str, body: &Value) -> Option<Response> {
        let mut inner = self.inner.lock().expect("fake lock");
        let (key, secs, global) = inner.throttle.clone()?;
        if !path.contains(&key) {
            return None;
        }
        inner.throttle = None;
        inner.calls.push(Call { method: method.into(), path: path.into(), body: body.clone(), status: 429, at: Instant::now() });
        Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", format!("{}", secs.ceil() as u64))],
                axum::Json(json!({ "message": "You are being rate limited.", "retry_after": secs, "global": global })),
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

/// What Discord refuses in a message body: content over 2,000 characters, more than five
/// rows or five buttons in a row, a `custom_id` over 100 characters or used twice.
pub fn message_problems(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let content = body["content"].as_str().unwrap_or_default().chars().count();
    if content > 2000 {
        problems.push(format!("content of {content} characters (at most 2000)"));
    }
    let rows = body["components"].as_array().cloned().unwrap_or_default();
    if rows.len() > 5 {
        problems.push(format!("{} rows (at most 5)", rows.len()));
    }
    let mut ids = std::collections::HashSet::new();
    for row in &rows {
        let items = row["components"].as_array().cloned().unwrap_or_default();
        if items.len() > 5 {
            problems.push(format!("{} components in a row (at most 5)", items.len()));
        }
        for c in items {
            if let Some(id) = c["custom_id"].as_str() {
                if id.chars().count() > 100 {
                    problems.push(format!("custom_id of {} characters (at most 100)", id.chars().count()));
                }
                if !ids.insert(id.to_string()) {
                    problems.push(format!("custom_id {id:?} used twice"));
                }
            }
            if c["label"].as_str().is_some_and(|l| l.chars().count() > 80) {
                problems.push("a button label over 80 characters".into());
            }
        }
    }
    for e in body["embeds"].as_array().into_iter().flatten() {
        if e["description"].as_str().is_some_and(|d| d.chars().count() > 4096) {
            problems.push("an embed description over 4096 characters".into());
        }
        let fields = e["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            problems.push(format!("{} embed fields (at most 25)", fields.len()));
        }
        for f in fields {
            if f["name"].as_str().is_some_and(|n| n.chars().count() > 256) || f["value"].as_str().is_some_and(|v| v.chars().count() > 1024) {
                problems.push("an embed field over its limit (name 256, value 1024)".into());
            }
        }
    }
    problems
}

async fn create_message(State(fake): State<FakeDiscord>, Path(channel): Path<String>, headers: HeaderMap, req: axum::extract::Request) -> Response {
    let path = format!("/channels/{channel}/messages");
    let multipart = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("multipart/form-data"));
    let (body, files) = if multipart {
        let Ok(mut form) = <axum::extract::Multipart as axum::extract::FromRequest<FakeDiscord>>::from_request(req, &fake).await else {
            return refused(StatusCode::BAD_REQUEST, 50109, "The request body contains invalid multipart data");
        };
        let (mut body, mut files) = (Value::Null, Vec::new());
        while let Ok(Some(part)) = form.next_field().await {
            let name = part.name().unwrap_or_default().to_string();
            let file = part.file_name().map(String::from);
            let Ok(bytes) = part.bytes().await else { return refused(StatusCode::PAYLOAD_TOO_LARGE, 40005, "Request entity too large") };
            match (name.as_str(), file) {
                ("payload_json", _) => body = serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                (n, Some(f)) if n.starts_with("files[") => files.push((f, bytes.to_vec())),
                _ => {}
            }
        }
        (body, files)
    } else {
        let Ok(bytes) = axum::body::to_bytes(req.into_body(), 1 << 20).await else { return refused(StatusCode::BAD_REQUEST, 50109, "bad body") };
        (serde_json::from_slice(&bytes).unwrap_or(Value::Null), vec![])
    };
    if let Some(r) = fake.throttled("POST", &path, &body) {
        return r;
    }
    if !fake.authorised(&headers) {
        fake.record("POST", path, body, 401);
        return refused(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    if !fake.inner.lock().expect("fake lock").channels.contains_key(&channel) {
        fake.record("POST", path, body, 404);
        return refused(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
    }
    if files.iter().any(|(_, b)| b.len() > MAX_FILE) {
        fake.record("POST", path, body, 413);
        return refused(StatusCode::PAYLOAD_TOO_LARGE, 40005, "Request entity too large");
    }
    let problems = message_problems(&body);
    if !problems.is_empty() {
        fake.record("POST", path, body, 400);
        return refused(StatusCode::BAD_REQUEST, 50035, &format!("Invalid Form Body: {}", problems.join("; ")));
    }
    let id = fake.next_id();
    let spent = {
        let mut inner = fake.inner.lock().expect("fake lock");
        inner.messages.push(Message { channel: channel.clone(), id: id.clone(), body: body.clone(), edits: 0, files });
        match inner.spent.clone() {
            Some((key, secs)) if path.contains(&key) => {
                inner.spent = None;
                Some(secs)
            }
            _ => None,
        }
    };
    fake.record("POST", path, body, 200);
    let mut r = axum::Json(json!({ "id": id, "channel_id": channel })).into_response();
    if let Some(secs) = spent {
        let h = r.headers_mut();
        h.insert("x-ratelimit-remaining", axum::http::HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset-after", axum::http::HeaderValue::from_str(&format!("{secs:.3}")).expect("a header value"));
    }
    r
}

async fn edit_message(
    State(fake): State<FakeDiscord>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let path = format!("/channels/{channel}/messages/{id}");
    if let Some(r) = fake.throttled("PATCH", &path, &body) {
        return r;
    }
    if !fake.authorised(&headers) {
        fake.record("PATCH", path, body, 401);
        return refused(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let problems = message_problems(&body);
    if !problems.is_empty() {
        fake.record("PATCH", path, body, 400);
        return refused(StatusCode::BAD_REQUEST, 50035, &format!("Invalid Form Body: {}", problems.join("; ")));
    }
    let found = {
        let mut inner = fake.inner.lock().expect("fake lock");
        match inner.messages.iter_mut().find(|m| m.channel == channel && m.id == id) {
            Some(m) => {
                m.body = body.clone();
                m.edits += 1;
                true
            }
            None => false,
        }
    };
    fake.record("PATCH", path, body, if found { 200 } else { 404 });
    if !found {
        return refused(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    }
    axum::Json(json!({ "id": id, "channel_id": channel })).into_response()
}

async fn start_thread(
    State(fake): State<FakeDiscord>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let path = format!("/channels/{channel}/messages/{id}/threads");
    if let Some(r) = fake.throttled("POST", &path, &body) {
        return r;
    }
    if !fake.authorised(&headers) {
        fake.record("POST", path, body, 401);
        return refused(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let name = body["name"].as_str().unwrap_or_default().chars().count();
    let status = {
        let mut inner = fake.inner.lock().expect("fake lock");
        if !inner.messages.iter().any(|m| m.channel == channel && m.id == id) {
            404
        } else if inner.channels.contains_key(&id) {
            400
        } else if !(1..=100).contains(&name) {
            422
        } else {
            inner.channels.insert(id.clone(), Some(channel.clone()));
            200
        }
    };
    fake.record("POST", path, body, status);
    match status {
        404 => refused(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
        400 => refused(StatusCode::BAD_REQUEST, 160004, "A thread has already been created for this message"),
        422 => refused(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body: name must be 1 to 100 characters"),
        _ => axum::Json(json!({ "id": id, "parent_id": channel, "type": 11 })).into_response(),
    }
}

async fn dm_channel(State(fake): State<FakeDiscord>, headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    if !fake.authorised(&headers) {
        fake.record("POST", "/users/@me/channels".into(), body, 401);
        return refused(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let id = format!("dm-{}", body["recipient_id"].as_str().unwrap_or_default());
    fake.inner.lock().expect("fake lock").channels.insert(id.clone(), None);
    fake.record("POST", "/users/@me/channels".into(), body, 200);
    axum::Json(json!({ "id": id, "type": 1 })).into_response()
}

/// The bot's user id.
pub const BOT_USER: &str = "1500000000000000001";

fn bot_only(fake: &FakeDiscord, headers: &HeaderMap) -> Option<Response> {
    (!fake.authorised(headers)).then(|| refused(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized"))
}

async fn me(State(fake): State<FakeDiscord>, headers: HeaderMap) -> Response {
    bot_only(&fake, &headers).unwrap_or_else(|| axum::Json(json!({ "id": BOT_USER, "username": "Offboard", "bot": true })).into_response())
}

async fn list_guild_commands(State(fake): State<FakeDiscord>, Path((_, guild)): Path<(String, String)>, headers: HeaderMap) -> Response {
    bot_only(&fake, &headers).unwrap_or_else(|| axum::Json(fake.commands(Some(&guild))).into_response())
}

async fn roles(State(fake): State<FakeDiscord>, Path(guild): Path<String>, headers: HeaderMap) -> Response {
    let bits = fake.inner.lock().expect("fake lock").bot_permissions;
    bot_only(&fake, &headers).unwrap_or_else(|| {
        axum::Json(json!([{ "id": guild, "name": "@everyone", "permissions": "0" }, { "id": "1600000000000000001", "name": "Offboard", "permissions": bits.to_string() }]))
            .into_response()
    })
}

async fn member(State(fake): State<FakeDiscord>, Path((_, user)): Path<(String, String)>, headers: HeaderMap) -> Response {
    bot_only(&fake, &headers).unwrap_or_else(|| {
        let roles: Vec<&str> = if user == BOT_USER { vec!["1600000000000000001"] } else { vec![] };
        axum::Json(json!({ "user": { "id": user }, "roles": roles })).into_response()
    })
}

async fn channel(State(fake): State<FakeDiscord>, Path(channel): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = bot_only(&fake, &headers) {
        return r;
    }
    let (known, denied) = {
        let inner = fake.inner.lock().expect("fake lock");
        (inner.channels.contains_key(&channel), inner.denied)
    };
    if !known {
        return refused(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
    }
    axum::Json(json!({ "id": channel, "type": 0, "permission_overwrites": [{ "id": BOT_USER, "type": 1, "allow": "0", "deny": denied.to_string() }] }))
        .into_response()
}

/// Sends interactions to the bot's endpoint, signed as Discord signs them.
pub struct Driver {
    endpoint: String,
    fake: FakeDiscord,
    key: SigningKey,
    application_id: String,
    guild: String,
    channel: String,
    names: HashMap<String, String>,
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
            names: HashMap::new(),
            http: reqwest::Client::new(),
            next: 1.into(),
        }
    }

    /// The display name interactions from `user` carry (else "`user` name").
    pub fn with_name(mut self, user: &str, name: &str) -> Self {
        self.names.insert(user.into(), name.into());
        self
    }

    /// The endpoint interactions are sent to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
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
            "member": { "user": { "id": user, "username": format!("{user}-name"), "global_name": self.names.get(user).cloned().unwrap_or_else(|| format!("{user} name")) }, "roles": roles, "permissions": "0" },
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
