//! Discord's REST API, for what the endpoint cannot say in its answer: registering the
//! commands (a bulk overwrite), follow-up messages on an interaction's token, and the bot's
//! channel messages, threads and uploads. A 429 is waited out for as long as Discord asks
//! (`retry_after` in the body, else `Retry-After`) and nothing is sent on that route (on any
//! route, for a global limit) before then; a bucket `X-RateLimit-Remaining: 0` says is spent
//! holds its route until `X-RateLimit-Reset-After`. The same code runs against Discord and
//! against local fakes (serenity's own limiter ignores a proxy base URL, so it could be
//! tested against neither).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use offboard_core::secret::Secret;
use serde_json::Value;

/// Discord's API, version 10.
pub const DISCORD_API: &str = "https://discord.com/api/v10";
/// The longest wait asked for that is waited out inline; a longer one fails the call.
const MAX_WAIT: Duration = Duration::from_secs(30);
const TRIES: u32 = 3;
/// The key a global rate limit blocks every route under.
const GLOBAL: &str = "*global*";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Discord refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("Discord asked to wait {0:?}, longer than this call waits")]
    RetryAfter(Duration),
    #[error("Discord is unreachable: {0}")]
    Unreachable(String),
}

pub struct DiscordApi {
    http: reqwest::Client,
    base: String,
    application_id: String,
    bot_token: Secret,
    /// Per route, when it may be called again.
    blocked: Mutex<HashMap<String, Instant>>,
}

impl DiscordApi {
    pub fn new(base: &str, application_id: &str, bot_token: Secret) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("HTTP client");
        DiscordApi { http, base: base.trim_end_matches('/').to_string(), application_id: application_id.to_string(), bot_token, blocked: Mutex::default() }
    }

    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// Replaces the application's commands with `commands`: in one guild (instant), or
    /// globally. Returns how many Discord now holds.
    pub async fn register(&self, guild: Option<&str>, commands: &[Value]) -> Result<usize, ApiError> {
        let path = match guild {
            Some(g) => format!("/applications/{}/guilds/{g}/commands", self.application_id),
            None => format!("/applications/{}/commands", self.application_id),
        };
        let route = if guild.is_some() { "guild commands" } else { "global commands" };
        let v = self.call(reqwest::Method::PUT, &path, route, Some(&Value::from(commands.to_vec())), true).await?;
        Ok(v.as_array().map_or(0, Vec::len))
    }

    /// A follow-up message on an interaction's token (valid 15 minutes).
    pub async fn followup(&self, token: &str, message: &Value) -> Result<(), ApiError> {
        let path = format!("/webhooks/{}/{token}", self.application_id);
        self.call(reqwest::Method::POST, &path, "follow-ups", Some(message), false).await.map(|_| ())
    }

    /// The bot's own user: `(id, name)`; proves the token.
    pub async fn me(&self) -> Result<(String, String), ApiError> {
        let v = self.call(reqwest::Method::GET, "/users/@me", "me", None, true).await?;
        Ok((id_of(&v)?, v["username"].as_str().unwrap_or_default().to_string()))
    }

    /// The names of the commands registered in a guild.
    pub async fn registered(&self, guild: &str) -> Result<Vec<String>, ApiError> {
        let path = format!("/applications/{}/guilds/{guild}/commands", self.application_id);
        let v = self.call(reqwest::Method::GET, &path, "guild commands", None, true).await?;
        Ok(v.as_array().into_iter().flatten().filter_map(|c| c["name"].as_str().map(String::from)).collect())
    }

    /// What `user` may do in `channel`: the guild's roles, the member's, then the channel's
    /// overwrites (everyone, roles, the member), as Discord computes it.
    pub async fn permissions_in(&self, guild: &str, channel: &str, user: &str) -> Result<u64, ApiError> {
        let roles = self.call(reqwest::Method::GET, &format!("/guilds/{guild}/roles"), "roles", None, true).await?;
        let member = self.call(reqwest::Method::GET, &format!("/guilds/{guild}/members/{user}"), "members", None, true).await?;
        let chan = self.call(reqwest::Method::GET, &format!("/channels/{channel}"), "channels", None, true).await?;
        Ok(permissions(guild, user, &roles, &member, &chan))
    }

    /// Posts a message into a channel or thread; its id.
    pub async fn send(&self, channel: &str, message: &Value) -> Result<String, ApiError> {
        let v = self.call(reqwest::Method::POST, &format!("/channels/{channel}/messages"), &format!("messages {channel}"), Some(message), true).await?;
        id_of(&v)
    }

    pub async fn edit(&self, channel: &str, message_id: &str, message: &Value) -> Result<(), ApiError> {
        let path = format!("/channels/{channel}/messages/{message_id}");
        self.call(reqwest::Method::PATCH, &path, &format!("edits {channel}"), Some(message), true).await.map(|_| ())
    }

    /// A thread started from a message; its id (Discord gives it the message's).
    pub async fn thread(&self, channel: &str, message_id: &str, name: &str) -> Result<String, ApiError> {
        let path = format!("/channels/{channel}/messages/{message_id}/threads");
        let body = serde_json::json!({ "name": crate::wire::clip(name, 100), "auto_archive_duration": 10080 });
        let v = self.call(reqwest::Method::POST, &path, &format!("threads {channel}"), Some(&body), true).await?;
        id_of(&v)
    }

    /// The direct-message channel with a user.
    pub async fn dm_channel(&self, user: &str) -> Result<String, ApiError> {
        let body = serde_json::json!({ "recipient_id": user });
        let v = self.call(reqwest::Method::POST, "/users/@me/channels", "dm channels", Some(&body), true).await?;
        id_of(&v)
    }

    /// Posts `message` with a file attached (multipart: `payload_json` and `files[0]`).
    pub async fn upload(&self, channel: &str, message: &Value, name: &str, bytes: &[u8]) -> Result<String, ApiError> {
        let route = format!("messages {channel}");
        let mut tries = 0;
        loop {
            tries += 1;
            self.wait_for(&route).await;
            let mut payload = message.clone();
            payload["attachments"] = serde_json::json!([{ "id": 0, "filename": name }]);
            let file = reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_string()).mime_str("application/pdf").expect("a valid MIME type");
            let form = reqwest::multipart::Form::new().text("payload_json", payload.to_string()).part("files[0]", file);
            let r = self
                .http
                .post(format!("{}/channels/{channel}/messages", self.base))
                .header("authorization", format!("Bot {}", self.bot_token.expose()))
                .multipart(form)
                .send()
                .await
                .map_err(|e| ApiError::Unreachable(e.without_url().to_string()))?;
            match self.answer(r, &route, tries).await? {
                Some(v) => return id_of(&v),
                None => continue,
            }
        }
    }

    /// Waits while the route, or every route (a global limit), is blocked.
    async fn wait_for(&self, route: &str) {
        let until = {
            let blocked = self.blocked.lock().expect("blocked lock");
            [blocked.get(route), blocked.get(GLOBAL)].into_iter().flatten().max().copied()
        };
        if let Some(until) = until {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    /// The answer's JSON; `None` when a 429 was waited out and the call should repeat.
    async fn answer(&self, r: reqwest::Response, route: &str, tries: u32) -> Result<Option<Value>, ApiError> {
        let status = r.status().as_u16();
        let header = |k: &str| r.headers().get(k).and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<f64>().ok());
        let header_wait = header("retry-after");
        // The bucket is spent: nothing more on this route until it refills, before any 429.
        if header("x-ratelimit-remaining") == Some(0.0)
            && let Some(reset) = header("x-ratelimit-reset-after").filter(|s| s.is_finite() && *s >= 0.0)
        {
            self.blocked.lock().expect("blocked lock").insert(route.to_string(), Instant::now() + Duration::from_secs_f64(reset));
        }
        let text = r.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == 429 {
            let secs = v["retry_after"].as_f64().or(header_wait).unwrap_or(1.0).max(0.0);
            let wait = Duration::from_secs_f64(secs);
            let scope = if v["global"] == true { GLOBAL } else { route };
            self.blocked.lock().expect("blocked lock").insert(scope.to_string(), Instant::now() + wait);
            if wait > MAX_WAIT || tries >= TRIES {
                return Err(ApiError::RetryAfter(wait));
            }
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            let message = v["message"].as_str().map(String::from).unwrap_or(text);
            return Err(ApiError::Refused { status, message });
        }
        Ok(Some(v))
    }

    async fn call(&self, method: reqwest::Method, path: &str, route: &str, body: Option<&Value>, bot: bool) -> Result<Value, ApiError> {
        let mut tries = 0;
        loop {
            tries += 1;
            self.wait_for(route).await;
            let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
            if bot {
                req = req.header("authorization", format!("Bot {}", self.bot_token.expose()));
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = req.send().await.map_err(|e| ApiError::Unreachable(e.without_url().to_string()))?;
            if let Some(v) = self.answer(r, route, tries).await? {
                return Ok(v);
            }
        }
    }
}

fn id_of(v: &Value) -> Result<String, ApiError> {
    v["id"].as_str().map(String::from).ok_or_else(|| ApiError::Refused { status: 200, message: "Discord's answer named no id".into() })
}

/// Permission bits the bot needs in the approvals channel.
pub mod bits {
    pub const ADMINISTRATOR: u64 = 1 << 3;
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    pub const SEND_MESSAGES: u64 = 1 << 11;
    pub const EMBED_LINKS: u64 = 1 << 14;
    pub const ATTACH_FILES: u64 = 1 << 15;
    pub const CREATE_PUBLIC_THREADS: u64 = 1 << 35;
    pub const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;
    /// What the approvals channel needs, with each bit's name in Discord's settings.
    pub const NEEDED: &[(u64, &str)] = &[
        (VIEW_CHANNEL, "View Channel"),
        (SEND_MESSAGES, "Send Messages"),
        (EMBED_LINKS, "Embed Links"),
        (ATTACH_FILES, "Attach Files"),
        (CREATE_PUBLIC_THREADS, "Create Public Threads"),
        (SEND_MESSAGES_IN_THREADS, "Send Messages in Threads"),
    ];
}

fn bits_of(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()).unwrap_or(0)
}

/// Discord's permission computation for a member in a channel.
pub fn permissions(guild: &str, user: &str, roles: &Value, member: &Value, channel: &Value) -> u64 {
    let held: Vec<&str> = member["roles"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let mut base = 0;
    for r in roles.as_array().into_iter().flatten() {
        let id = r["id"].as_str().unwrap_or_default();
        if id == guild || held.contains(&id) {
            base |= bits_of(&r["permissions"]);
        }
    }
    if base & bits::ADMINISTRATOR != 0 {
        return u64::MAX;
    }
    let overwrites: Vec<&Value> = channel["permission_overwrites"].as_array().into_iter().flatten().collect();
    let apply = |base: u64, allow: u64, deny: u64| (base & !deny) | allow;
    if let Some(o) = overwrites.iter().find(|o| o["id"] == guild) {
        base = apply(base, bits_of(&o["allow"]), bits_of(&o["deny"]));
    }
    let (mut allow, mut deny) = (0, 0);
    for o in overwrites.iter().filter(|o| o["type"] == 0 && held.iter().any(|h| o["id"] == *h)) {
        allow |= bits_of(&o["allow"]);
        deny |= bits_of(&o["deny"]);
    }
    base = apply(base, allow, deny);
    if let Some(o) = overwrites.iter().find(|o| o["type"] == 1 && o["id"] == user) {
        base = apply(base, bits_of(&o["allow"]), bits_of(&o["deny"]));
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn permissions_follow_roles_then_overwrites() {
        let roles = json!([{ "id": "g", "permissions": "1024" }, { "id": "bot", "permissions": (bits::SEND_MESSAGES | bits::ATTACH_FILES).to_string() }]);
        let member = json!({ "roles": ["bot"] });
        let plain = json!({ "permission_overwrites": [] });
        assert_eq!(permissions("g", "u", &roles, &member, &plain), bits::VIEW_CHANNEL | bits::SEND_MESSAGES | bits::ATTACH_FILES);
        // @everyone denied, the bot's role allowed again, the member denied attachments.
        let channel = json!({ "permission_overwrites": [
            { "id": "g", "type": 0, "allow": "0", "deny": (bits::VIEW_CHANNEL | bits::SEND_MESSAGES).to_string() },
            { "id": "bot", "type": 0, "allow": bits::VIEW_CHANNEL.to_string(), "deny": "0" },
            { "id": "u", "type": 1, "allow": "0", "deny": bits::ATTACH_FILES.to_string() },
        ] });
        assert_eq!(permissions("g", "u", &roles, &member, &channel), bits::VIEW_CHANNEL);
        let admin = json!([{ "id": "g", "permissions": bits::ADMINISTRATOR.to_string() }]);
        assert_eq!(permissions("g", "u", &admin, &member, &channel), u64::MAX);
    }
}
