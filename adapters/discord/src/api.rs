//! Discord's REST API, for what the endpoint cannot say in its answer: registering the
//! commands (a bulk overwrite) and follow-up messages on an interaction's token. A 429 is
//! waited out for as long as Discord asks (`retry_after` in the body, else `Retry-After`),
//! and nothing is sent on that route before then.

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

    async fn call(&self, method: reqwest::Method, path: &str, route: &str, body: Option<&Value>, bot: bool) -> Result<Value, ApiError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let until = self.blocked.lock().expect("blocked lock").get(route).copied();
            if let Some(until) = until {
                tokio::time::sleep_until(until.into()).await;
            }
            let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
            if bot {
                req = req.header("authorization", format!("Bot {}", self.bot_token.expose()));
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = req.send().await.map_err(|e| ApiError::Unreachable(e.without_url().to_string()))?;
            let status = r.status().as_u16();
            let header_wait = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<f64>().ok());
            let text = r.text().await.unwrap_or_default();
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status == 429 {
                let secs = v["retry_after"].as_f64().or(header_wait).unwrap_or(1.0).max(0.0);
                let wait = Duration::from_secs_f64(secs);
                self.blocked.lock().expect("blocked lock").insert(route.to_string(), Instant::now() + wait);
                if wait > MAX_WAIT || tries >= TRIES {
                    return Err(ApiError::RetryAfter(wait));
                }
                continue;
            }
            if !(200..300).contains(&status) {
                let message = v["message"].as_str().map(String::from).unwrap_or(text);
                return Err(ApiError::Refused { status, message });
            }
            return Ok(v);
        }
    }
}
