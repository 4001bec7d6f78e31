//! The Bot Connector v3 REST API, by hand with reqwest: start a thread in a channel, post
//! into a conversation or thread, edit an activity, open a personal chat. Every call
//! carries the bot's token (client credentials through `oauth2` against the bot's own
//! tenant, cached and renewed before expiry, renewed once more on a 401), and is bounded by
//! [`CALL_TIMEOUT`]. A 429 is said as how long to wait; nothing is retried here.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use offboard_core::chat::surface::ChatError;
use offboard_core::clock::Clock;
use offboard_core::secret::Secret;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// What the bot's token is for.
pub const SCOPE: &str = "https://api.botframework.com/.default";

/// The bot's registration: its app id and password, and the tenant it is registered in.
pub struct BotIdentity {
    pub app_id: String,
    pub password: Secret,
    /// `{login}/{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
}

struct Cached {
    token: Secret,
    refresh_at: DateTime<Utc>,
}

pub struct Connector {
    http: reqwest::Client,
    bot: BotIdentity,
    /// The Bot Connector of the bot's region: configured, then as verified activities name
    /// it (Teams sends each tenant's activities from its own region's connector).
    service_url: std::sync::RwLock<String>,
    clock: Arc<dyn Clock>,
    token: Mutex<Option<Cached>>,
}

/// Where a posted activity is: its conversation (a thread's id ends in `;messageid=…`) and
/// its own id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub conversation: String,
    pub activity: String,
}

impl Connector {
    pub fn new(bot: BotIdentity, service_url: &str, clock: Arc<dyn Clock>) -> Self {
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).redirect(reqwest::redirect::Policy::none()).build().expect("an HTTP client builds");
        Connector { http, bot, service_url: std::sync::RwLock::new(service_url.trim_end_matches('/').to_string()), clock, token: Mutex::new(None) }
    }

    /// Sends from now on to the connector a verified activity named (its token's
    /// `serviceurl` claim matched it, so the bot's token only ever goes where Bot
    /// Framework said).
    pub fn learn(&self, service_url: &str) {
        let url = service_url.trim_end_matches('/');
        if url.is_empty() || !(url.starts_with("https://") || url.starts_with("http://")) {
            return;
        }
        if *self.service_url.read().expect("service url lock") != url {
            tracing::info!(service_url = url, "the Bot Connector for this bot's activities");
            *self.service_url.write().expect("service url lock") = url.to_string();
        }
    }

    pub fn service_url(&self) -> String {
        self.service_url.read().expect("service url lock").clone()
    }

    pub fn app_id(&self) -> &str {
        &self.bot.app_id
    }

    /// Signs the bot in (for `offboard doctor`): refused (`Permanent`) or unreachable.
    pub async fn sign_in(&self) -> Result<(), ChatError> {
        self.token(true).await.map(|_| ())
    }

    async fn token(&self, renew: bool) -> Result<Secret, ChatError> {
        let mut cached = self.token.lock().await;
        if let Some(c) = cached.as_ref()
            && !renew
            && self.clock.now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let client = BasicClient::new(ClientId::new(self.bot.app_id.clone()))
            .set_client_secret(ClientSecret::new(self.bot.password.expose().to_string()))
            .set_token_uri(TokenUrl::new(self.bot.token_url.clone()).map_err(|e| ChatError::Permanent(format!("bad token URL: {e}")))?)
            .set_auth_type(AuthType::RequestBody);
        let response = client.exchange_client_credentials().add_scope(Scope::new(SCOPE.into())).request_async(&self.http).await.map_err(|e| match e {
            oauth2::RequestTokenError::ServerResponse(body) => ChatError::Permanent(format!("the bot's sign-in was refused: {}", body.error())),
            other => ChatError::Retryable(format!("the bot could not sign in: {other}")),
        })?;
        let lifetime = response.expires_in().unwrap_or(Duration::from_secs(3600));
        let token = Secret::new(response.access_token().secret().clone());
        // Renewed five minutes before expiry, or half way through a short-lived token.
        let margin = Duration::from_secs(300).min(lifetime / 2);
        let refresh_at = self.clock.now() + chrono::Duration::from_std(lifetime - margin).unwrap_or_default();
        *cached = Some(Cached { token: token.clone(), refresh_at });
        Ok(token)
    }

    async fn call(&self, method: Method, path: &str, body: &Value) -> Result<Value, ChatError> {
        let url = format!("{}{path}", self.service_url());
        let mut renewed = false;
        loop {
            let token = self.token(renewed).await?;
            let r = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose())
                .json(body)
                .send()
                .await
                .map_err(|e| ChatError::Retryable(format!("the Bot Connector did not answer: {}", e.without_url())))?;
            let status = r.status();
            if status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).unwrap_or(1);
                return Err(ChatError::RetryAfter(Duration::from_secs(wait.max(1))));
            }
            if status.is_server_error() {
                return Err(ChatError::Retryable(format!("the Bot Connector failed: {status}")));
            }
            if !status.is_success() {
                let text = r.text().await.unwrap_or_default();
                return Err(ChatError::Permanent(format!("the Bot Connector refused: {status} {}", offboard_core::templates::one_line(&text))));
            }
            return r.json().await.or(Ok(Value::Null));
        }
    }

    fn bot(&self) -> Value {
        json!({ "id": format!("28:{}", self.bot.app_id) })
    }

    /// Starts a thread in a Teams channel with `activity` as its first message.
    pub async fn start_thread(&self, channel: &str, tenant: &str, activity: &Value) -> Result<Posted, ChatError> {
        let body = json!({ "isGroup": true, "bot": self.bot(), "tenantId": tenant, "channelData": { "channel": { "id": channel }, "tenant": { "id": tenant } }, "activity": activity });
        let r = self.call(Method::POST, "/v3/conversations", &body).await?;
        let conversation = r["id"].as_str().ok_or_else(|| ChatError::Permanent("no conversation id".into()))?.to_string();
        let activity = r["activityId"].as_str().map(String::from).or_else(|| conversation.split_once(";messageid=").map(|(_, id)| id.to_string()));
        Ok(Posted { activity: activity.ok_or_else(|| ChatError::Permanent("no activity id".into()))?, conversation })
    }

    /// Opens (or finds) the personal chat with a user, by their Teams user id.
    pub async fn personal_chat(&self, user: &str, tenant: &str) -> Result<String, ChatError> {
        let body =
            json!({ "isGroup": false, "bot": self.bot(), "members": [{ "id": user }], "tenantId": tenant, "channelData": { "tenant": { "id": tenant } } });
        let r = self.call(Method::POST, "/v3/conversations", &body).await?;
        r["id"].as_str().map(String::from).ok_or_else(|| ChatError::Permanent("no conversation id".into()))
    }

    /// Posts into a conversation (a thread's id posts into the thread).
    pub async fn send(&self, conversation: &str, activity: &Value) -> Result<Posted, ChatError> {
        let r = self.call(Method::POST, &format!("/v3/conversations/{}/activities", enc(conversation)), activity).await?;
        let id = r["id"].as_str().ok_or_else(|| ChatError::Permanent("no activity id".into()))?;
        Ok(Posted { conversation: conversation.to_string(), activity: id.to_string() })
    }

    /// Replaces a posted activity, for everyone who sees it.
    pub async fn update(&self, at: &Posted, activity: &Value) -> Result<(), ChatError> {
        let mut body = activity.clone();
        body["id"] = json!(at.activity);
        self.call(Method::PUT, &format!("/v3/conversations/{}/activities/{}", enc(&at.conversation), enc(&at.activity)), &body).await.map(|_| ())
    }
}

/// A path segment: conversation ids hold `:`, `;`, `@` and `=`.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
