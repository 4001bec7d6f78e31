//! A fake Slack Web API over real HTTP, for tests and the demo. It behaves like Slack where
//! the adapter depends on it: bearer auth (`invalid_auth`), required arguments
//! (`invalid_arguments`), HTTP 200 with `ok: false` for API errors, trigger ids that work
//! once and expire after 3 s, `message_not_found` for edits of unknown messages, 429 with
//! `Retry-After` on demand, and the external upload flow (upload URL, raw bytes, share into
//! a thread). It records every call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value as Json, json};

pub const TRIGGER_LIFETIME: Duration = Duration::from_secs(3);

/// One Web API call as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub args: Json,
}

/// A message as the fake keeps it.
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Json,
    pub edits: usize,
}

/// A file shared through the upload flow.
#[derive(Debug, Clone)]
pub struct File {
    pub id: String,
    pub name: String,
    pub bytes: Vec<u8>,
    pub shared_to: Option<(String, String)>,
    /// The message shared with it (`initial_comment`).
    pub comment: Option<String>,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    triggers: HashMap<String, (Instant, bool)>,
    views: HashMap<String, Json>,
    messages: Vec<Message>,
    ephemeral: Vec<(String, String, String)>,
    files: HashMap<String, File>,
    rate_limits: HashMap<String, u32>,
    /// Methods that answer with this error code, as a workspace or app that may not call
    /// them does (`plan_upgrade_required`, `missing_scope`).
    refusals: HashMap<String, String>,
    usergroups: Vec<(String, Vec<String>)>,
    /// Members' e-mail addresses, for `users.lookupByEmail`.
    emails: HashMap<String, String>,
    next: u64,
}

#[derive(Clone)]
pub struct FakeSlack {
    pub addr: SocketAddr,
    token: String,
    inner: Arc<Mutex<Inner>>,
}

fn reply(v: Json) -> Response {
    axum::Json(v).into_response()
}

fn error(code: &str) -> Response {
    reply(json!({ "ok": false, "error": code }))
}

impl FakeSlack {
    pub async fn start(bot_token: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Slack");
        let addr = listener.local_addr().expect("addr");
        let fake = FakeSlack { addr, token: bot_token.to_string(), inner: Arc::new(Mutex::new(Inner { next: 1_700_000_000_000_100, ..Inner::default() })) };
        let app = Router::new()
            .route("/api/files.getUploadURLExternal", get(upload_url))
            .route("/api/usergroups.list", get(usergroups))
            .route("/api/users.lookupByEmail", get(lookup_by_email))
            .route("/api/auth.test", get(auth_test))
            .route("/api/{method}", post(method))
            .route("/upload/{file}", post(upload))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    /// The base URL the adapter's client takes.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// A trigger id as Slack puts in a slash command or a click.
    pub fn issue_trigger(&self) -> String {
        let mut i = self.inner.lock().expect("fake lock");
        i.next += 1;
        let id = format!("{}.{}.trig{}", i.next % 100_000, i.next, i.next);
        i.triggers.insert(id.clone(), (Instant::now(), false));
        id
    }

    /// The next `n` calls of `method` get HTTP 429 with `Retry-After: 1`.
    pub fn rate_limit(&self, method: &str, n: u32) {
        self.inner.lock().expect("fake lock").rate_limits.insert(method.to_string(), n);
    }

    /// Every call of `method` answers `{"ok": false, "error": code}` from now on.
    pub fn refuse(&self, method: &str, code: &str) {
        self.inner.lock().expect("fake lock").refusals.insert(method.to_string(), code.to_string());
    }

    /// A workspace member's e-mail address, as `users.lookupByEmail` finds it.
    pub fn add_member(&self, user: &str, email: &str) {
        self.inner.lock().expect("fake lock").emails.insert(email.to_ascii_lowercase(), user.to_string());
    }

    /// A user group and its members, as `usergroups.list` reports them.
    pub fn add_usergroup(&self, id: &str, users: &[&str]) {
        self.inner.lock().expect("fake lock").usergroups.push((id.to_string(), users.iter().map(|u| u.to_string()).collect()));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().expect("fake lock").calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method == method).collect()
    }

    pub fn messages(&self) -> Vec<Message> {
        self.inner.lock().expect("fake lock").messages.clone()
    }

    /// Every open view, oldest first.
    pub fn views(&self) -> Vec<(String, Json)> {
        let mut v: Vec<(String, Json)> = self.inner.lock().expect("fake lock").views.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Replaces a view as Slack does for `response_action: update`.
    pub fn put_view(&self, id: &str, view: Json) {
        self.inner.lock().expect("fake lock").views.insert(id.to_string(), view);
    }

    pub fn view(&self, id: &str) -> Option<Json> {
        self.inner.lock().expect("fake lock").views.get(id).cloned()
    }

    /// `(channel, user, text)` of every ephemeral message.
    pub fn ephemeral(&self) -> Vec<(String, String, String)> {
        self.inner.lock().expect("fake lock").ephemeral.clone()
    }

    /// How many uploaded files were shared to a channel, without copying them.
    pub fn shared_files(&self) -> usize {
        self.inner.lock().expect("fake lock").files.values().filter(|f| f.shared_to.is_some()).count()
    }

    pub fn files(&self) -> Vec<File> {
        self.inner.lock().expect("fake lock").files.values().cloned().collect()
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {}", self.token))
    }

    fn ts(i: &mut Inner) -> String {
        i.next += 1;
        format!("{}.{:06}", i.next / 1_000_000, i.next % 1_000_000)
    }
}

fn args_of(headers: &HeaderMap, body: &[u8]) -> Json {
    let json_body = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("application/json"));
    if json_body {
        return serde_json::from_slice(body).unwrap_or(Json::Null);
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    // Form fields that carry JSON (blocks, view, files) are decoded as Slack does.
    Json::Object(form.into_iter().map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(Json::String(v)))).collect())
}

impl Inner {
    /// HTTP 429 with `Retry-After: 1` while a rate limit lasts, then a configured refusal.
    fn limited_or_refused(&mut self, method: &str) -> Option<Response> {
        if let Some(n) = self.rate_limits.get_mut(method)
            && *n > 0
        {
            *n -= 1;
            return Some((StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "").into_response());
        }
        self.refusals.get(method).map(|code| error(code))
    }
}

fn required(args: &Json, names: &[&str]) -> Option<Response> {
    names.iter().any(|n| args.get(*n).is_none_or(|v| v.is_null() || v.as_str() == Some(""))).then(|| error("invalid_arguments"))
}

async fn method(State(fake): State<FakeSlack>, Path(method): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let args = args_of(&headers, &body);
    let mut i = fake.inner.lock().expect("fake lock");
    i.calls.push(Call { method: method.clone(), args: args.clone() });
    if let Some(r) = i.limited_or_refused(&method) {
        return r;
    }
    if !fake.authorised(&headers) {
        return error("invalid_auth");
    }
    match method.as_str() {
        "views.open" => {
            if let Some(r) = required(&args, &["trigger_id", "view"]) {
                return r;
            }
            let trigger = args["trigger_id"].as_str().unwrap_or("").to_string();
            match i.triggers.get_mut(&trigger) {
                None => return error("invalid_trigger_id"),
                Some((at, _)) if at.elapsed() > TRIGGER_LIFETIME => return error("expired_trigger_id"),
                Some((_, used)) if *used => return error("exchanged_trigger_id"),
                Some((_, used)) => *used = true,
            }
            let id = format!("V{}", FakeSlack::ts(&mut i).replace('.', ""));
            i.views.insert(id.clone(), args["view"].clone());
            reply(json!({ "ok": true, "view": stateful(&id, &args["view"]) }))
        }
        "views.update" => {
            if let Some(r) = required(&args, &["view_id", "view"]) {
                return r;
            }
            let id = args["view_id"].as_str().unwrap_or("").to_string();
            if !i.views.contains_key(&id) {
                return error("not_found");
            }
            i.views.insert(id.clone(), args["view"].clone());
            reply(json!({ "ok": true, "view": stateful(&id, &args["view"]) }))
        }
        "chat.postMessage" => {
            if let Some(r) = required(&args, &["channel"]) {
                return r;
            }
            if args.get("text").is_none() && args.get("blocks").is_none() {
                return error("no_text");
            }
            let ts = FakeSlack::ts(&mut i);
            // A user id as the channel is a direct message from the app, in its own channel.
            let to = args["channel"].as_str().unwrap_or("");
            let channel = if to.starts_with('U') || to.starts_with('W') { format!("D{}", &to[1..]) } else { to.to_string() };
            let m = Message {
                channel,
                ts: ts.clone(),
                thread_ts: args["thread_ts"].as_str().map(String::from),
                text: args["text"].as_str().unwrap_or("").into(),
                blocks: args["blocks"].clone(),
                edits: 0,
            };
            if let Some(parent) = &m.thread_ts
                && !i.messages.iter().any(|p| &p.ts == parent && p.channel == m.channel)
            {
                return error("thread_not_found");
            }
            i.messages.push(m.clone());
            reply(json!({ "ok": true, "channel": m.channel, "ts": ts, "message": { "type": "message", "ts": ts, "text": m.text, "bot_id": "B0FAKE" } }))
        }
        "chat.update" => {
            if let Some(r) = required(&args, &["channel", "ts"]) {
                return r;
            }
            let (channel, ts) = (args["channel"].as_str().unwrap_or(""), args["ts"].as_str().unwrap_or(""));
            let Some(m) = i.messages.iter_mut().find(|m| m.channel == channel && m.ts == ts) else { return error("message_not_found") };
            m.text = args["text"].as_str().unwrap_or("").into();
            m.blocks = args["blocks"].clone();
            m.edits += 1;
            reply(
                json!({ "ok": true, "channel": channel, "ts": ts, "text": m.text, "message": { "type": "message", "ts": ts, "text": m.text, "bot_id": "B0FAKE" } }),
            )
        }
        "chat.postEphemeral" => {
            if let Some(r) = required(&args, &["channel", "user", "text"]) {
                return r;
            }
            let ts = FakeSlack::ts(&mut i);
            let e = (
                args["channel"].as_str().unwrap_or("").to_string(),
                args["user"].as_str().unwrap_or("").to_string(),
                args["text"].as_str().unwrap_or("").to_string(),
            );
            i.ephemeral.push(e);
            reply(json!({ "ok": true, "message_ts": ts }))
        }
        "files.completeUploadExternal" => {
            if let Some(r) = required(&args, &["files"]) {
                return r;
            }
            let files: Vec<Json> = match &args["files"] {
                Json::Array(a) => a.clone(),
                Json::String(s) => serde_json::from_str(s).unwrap_or_default(),
                _ => vec![],
            };
            let channel = args["channel_id"].as_str().map(String::from);
            let thread = args["thread_ts"].as_str().map(String::from);
            if thread.is_some() && channel.is_none() {
                return error("invalid_arguments");
            }
            let mut shared = vec![];
            for f in &files {
                let id = f["id"].as_str().unwrap_or("");
                let Some(file) = i.files.get_mut(id) else { return error("file_not_found") };
                if file.bytes.is_empty() {
                    return error("file_not_found");
                }
                file.shared_to = channel.clone().zip(thread.clone());
                file.comment = args["initial_comment"].as_str().map(String::from);
                shared.push(json!({ "id": id, "title": f["title"] }));
            }
            reply(json!({ "ok": true, "files": shared }))
        }
        _ => error("unknown_method"),
    }
}

fn stateful(id: &str, view: &Json) -> Json {
    let mut v = view.clone();
    v["id"] = json!(id);
    v["team_id"] = json!("T0FAKE");
    v["hash"] = json!(format!("h{id}"));
    v["root_view_id"] = json!(id);
    v
}

async fn upload_url(State(fake): State<FakeSlack>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let q: HashMap<String, String> = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let mut i = fake.inner.lock().expect("fake lock");
    i.calls.push(Call { method: "files.getUploadURLExternal".into(), args: json!(q) });
    if !fake.authorised(&headers) {
        return error("invalid_auth");
    }
    let (Some(name), Some(length)) = (q.get("filename"), q.get("length").and_then(|l| l.parse::<usize>().ok())) else {
        return error("invalid_arguments");
    };
    if length == 0 {
        return error("invalid_arguments");
    }
    let id = format!("F{}", FakeSlack::ts(&mut i).replace('.', ""));
    i.files.insert(id.clone(), File { id: id.clone(), name: name.clone(), bytes: vec![], shared_to: None, comment: None });
    reply(json!({ "ok": true, "upload_url": format!("http://{}/upload/{id}", fake.addr), "file_id": id }))
}

async fn lookup_by_email(State(fake): State<FakeSlack>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let mut i = fake.inner.lock().expect("fake lock");
    i.calls.push(Call { method: "users.lookupByEmail".into(), args: json!(query) });
    if let Some(r) = i.limited_or_refused("users.lookupByEmail") {
        return r;
    }
    if !fake.authorised(&headers) {
        return error("invalid_auth");
    }
    let form: HashMap<String, String> = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let Some(email) = form.get("email").map(|e| e.to_ascii_lowercase()) else { return error("invalid_arguments") };
    match i.emails.get(&email) {
        Some(id) => reply(
            json!({ "ok": true, "user": { "id": id, "team_id": "T0FAKE", "name": email.split('@').next().unwrap_or(""), "deleted": false, "profile": { "email": email } } }),
        ),
        None => error("users_not_found"),
    }
}

async fn usergroups(State(fake): State<FakeSlack>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let mut i = fake.inner.lock().expect("fake lock");
    i.calls.push(Call { method: "usergroups.list".into(), args: json!(query) });
    if let Some(r) = i.limited_or_refused("usergroups.list") {
        return r;
    }
    if !fake.authorised(&headers) {
        return error("invalid_auth");
    }
    let with_users = query.as_deref().unwrap_or("").contains("include_users=true");
    let groups: Vec<Json> = i
        .usergroups
        .iter()
        .map(|(id, users)| {
            let mut g = json!({
                "id": id, "team_id": "T0FAKE", "is_usergroup": true, "name": id, "handle": id.to_lowercase(), "is_external": false,
                "date_create": 1_700_000_000, "created_by": "U0OWNER", "prefs": { "channels": [], "groups": [] }, "user_count": users.len(),
            });
            if with_users {
                g["users"] = json!(users);
            }
            g
        })
        .collect();
    reply(json!({ "ok": true, "usergroups": groups }))
}

async fn auth_test(State(fake): State<FakeSlack>, headers: HeaderMap) -> Response {
    fake.inner.lock().expect("fake lock").calls.push(Call { method: "auth.test".into(), args: Json::Null });
    if !fake.authorised(&headers) {
        return error("invalid_auth");
    }
    reply(
        json!({ "ok": true, "url": "https://fake.slack.com/", "team": "Fake Workspace", "user": "offboard", "team_id": "T0FAKE", "user_id": "U0BOT", "bot_id": "B0FAKE" }),
    )
}

async fn upload(State(fake): State<FakeSlack>, Path(file): Path<String>, body: Bytes) -> Response {
    let mut i = fake.inner.lock().expect("fake lock");
    i.calls.push(Call { method: "upload".into(), args: json!({ "file": file, "bytes": body.len() }) });
    match i.files.get_mut(&file) {
        Some(f) => {
            f.bytes = body.to_vec();
            (StatusCode::OK, format!("OK - {}", body.len())).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such upload").into_response(),
    }
}

/// Plays Slack's side of the endpoints: builds the payloads Slack sends and signs them as
/// Slack does, for tests and the scripted demo.
#[derive(Clone)]
pub struct Driver {
    http: reqwest::Client,
    names: HashMap<String, String>,
    /// The adapter's base URL, e.g. `http://127.0.0.1:3000`.
    pub url: String,
    secret: offboard_core::secret::Secret,
}

impl Driver {
    pub fn new(url: impl Into<String>, signing_secret: offboard_core::secret::Secret) -> Self {
        Driver { http: reqwest::Client::new(), names: HashMap::new(), url: url.into(), secret: signing_secret }
    }

    /// The display name Slack reports for `user` (default: the id and " name").
    pub fn with_name(mut self, user: &str, name: &str) -> Self {
        self.names.insert(user.into(), name.into());
        self
    }

    fn name(&self, user: &str) -> String {
        self.names.get(user).cloned().unwrap_or_else(|| format!("{user} name"))
    }

    /// POSTs `body` to `path`, signed at `ts` with `secret` (which may be wrong on purpose).
    pub async fn signed_with(&self, path: &str, body: String, ts: i64, secret: &offboard_core::secret::Secret) -> reqwest::Result<reqwest::Response> {
        let sig = crate::signature::sign(secret, ts, body.as_bytes());
        self.http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body)
            .send()
            .await
    }

    pub async fn signed(&self, path: &str, body: String) -> reqwest::Result<reqwest::Response> {
        self.signed_with(path, body, chrono::Utc::now().timestamp(), &self.secret.clone()).await
    }

    pub fn command_body(user: &str, text: &str, trigger: &str) -> String {
        Self::command_body_named(user, &format!("{user} name"), text, trigger)
    }

    fn command_body_named(user: &str, name: &str, text: &str, trigger: &str) -> String {
        serde_urlencoded::to_string([
            ("token", "deprecated"),
            ("team_id", "T0FAKE"),
            ("channel_id", "C0IT"),
            ("user_id", user),
            ("user_name", name),
            ("command", crate::server::COMMAND),
            ("text", text),
            ("response_url", "http://127.0.0.1:9/response"),
            ("trigger_id", trigger),
            ("api_app_id", "A0OFFBOARD"),
        ])
        .expect("form fields encode")
    }

    pub async fn command(&self, user: &str, text: &str, trigger: &str) -> reqwest::Result<reqwest::Response> {
        self.signed(crate::server::COMMANDS_PATH, Self::command_body_named(user, &self.name(user), text, trigger)).await
    }

    pub async fn interact(&self, payload: &Json) -> reqwest::Result<reqwest::Response> {
        let mut payload = payload.clone();
        if let Some(user) = payload["user"]["id"].as_str().map(str::to_string) {
            payload["user"]["username"] = json!(self.name(&user));
        }
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form fields encode");
        self.signed(crate::server::INTERACTIONS_PATH, body).await
    }

    /// A click on a button of a message in `channel`.
    pub fn click(user: &str, trigger: &str, channel: &str, ts: &str, action: &str, value: &str) -> Json {
        json!({
            "type": "block_actions",
            "user": { "id": user, "username": format!("{user} name"), "team_id": "T0FAKE" },
            "team": { "id": "T0FAKE" },
            "api_app_id": "A0OFFBOARD",
            "trigger_id": trigger,
            "container": { "type": "message", "message_ts": ts, "channel_id": channel },
            "channel": { "id": channel },
            "message": { "ts": ts },
            "response_url": "http://127.0.0.1:9/response",
            "actions": [{ "type": "button", "action_id": action, "block_id": "decision", "value": value, "action_ts": "1.2" }],
        })
    }

    /// A `view_submission` of the open view `view_id` with the given state values.
    /// A modal's `state.values` as Slack sends them when the person changes nothing: each
    /// input's initial value, then `changes` (block id → element state) on top.
    pub fn shown(view: &Json, changes: Json) -> Json {
        let mut values = serde_json::Map::new();
        for b in view["blocks"].as_array().into_iter().flatten().filter(|b| b["type"] == "input") {
            let (block, e) = (b["block_id"].as_str().unwrap_or_default(), &b["element"]);
            let action = e["action_id"].as_str().unwrap_or_default();
            let state = match e["type"].as_str().unwrap_or_default() {
                "plain_text_input" => json!({ "type": "plain_text_input", "value": e["initial_value"] }),
                "checkboxes" => json!({ "type": "checkboxes", "selected_options": e.get("initial_options").cloned().unwrap_or(json!([])) }),
                kind => json!({ "type": kind, "selected_option": e["initial_option"] }),
            };
            values.insert(block.to_string(), json!({ action: state }));
        }
        for (block, state) in changes.as_object().into_iter().flatten() {
            values.insert(block.clone(), state.clone());
        }
        Json::Object(values)
    }

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
}

/// Block Kit as a terminal shows it: headers, mrkdwn with emoji, buttons in brackets.
pub fn to_terminal(blocks: &Json) -> String {
    to_terminal_with(blocks, &[])
}

/// [`to_terminal`], showing mentions of the users in `names` (id, name) by name.
pub fn to_terminal_with(blocks: &Json, names: &[(&str, &str)]) -> String {
    let emoji = [
        (":white_check_mark:", "✅"),
        (":x:", "❌"),
        (":warning:", "⚠️ "),
        (":fast_forward:", "⏭️ "),
        (":hourglass_flowing_sand:", "⏳"),
        (":white_small_square:", "▫️ "),
        (":heavy_minus_sign:", "➖"),
        (":rotating_light:", "🚨"),
        (":no_entry:", "⛔"),
        (":hourglass:", "⌛"),
        (":calendar:", "📅"),
        (":heavy_multiplication_x:", "✖️ "),
    ];
    let text = |v: &Json| {
        let mut s = v["text"].as_str().unwrap_or("").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
        for (code, symbol) in emoji {
            s = s.replace(code, symbol);
        }
        for (id, name) in names {
            s = s.replace(&format!("<@{id}>"), &format!("@{name}"));
        }
        s
    };
    let mut out = Vec::new();
    for b in blocks.as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("header") => out.push(format!("== {} ==", text(&b["text"]))),
            Some("section") if b["fields"].is_array() => {
                let fields: Vec<String> = b["fields"].as_array().into_iter().flatten().map(text).collect();
                out.extend(fields.chunks(2).map(|pair| format!("{}: {}", pair[0].trim_matches('*'), pair.get(1).map(String::as_str).unwrap_or(""))));
            }
            Some("section") => out.push(text(&b["text"])),
            Some("context") => out.push(b["elements"].as_array().into_iter().flatten().map(text).collect::<Vec<_>>().join(" ")),
            Some("actions") => {
                out.push(b["elements"].as_array().into_iter().flatten().map(|e| format!("[ {} ]", text(&e["text"]))).collect::<Vec<_>>().join("  "))
            }
            Some("divider") => out.push("----".into()),
            _ => {}
        }
    }
    out.join("\n")
}
