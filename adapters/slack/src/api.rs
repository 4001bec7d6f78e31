//! The Slack Web API calls the adapter makes, through slack-morphism. Requests are built
//! from the adapter's Block Kit JSON and parsed into slack-morphism's models, so a payload
//! the crate cannot represent fails here, in tests, not at Slack.

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use offboard_core::chat::{ChatError, FileOut};
use offboard_core::secret::Secret;

/// Every Web API method the adapter calls, with the bot scope it needs (`None`: no scope;
/// `views.*` only need a trigger from the user). The manifest must declare exactly these
/// scopes plus `commands`; the tests check both.
pub const METHOD_SCOPES: &[(&str, Option<&str>)] = &[
    ("auth.test", None),
    ("views.open", None),
    ("views.update", None),
    ("chat.postMessage", Some("chat:write")),
    ("chat.update", Some("chat:write")),
    ("chat.postEphemeral", Some("chat:write")),
    ("files.getUploadURLExternal", Some("files:write")),
    ("files.completeUploadExternal", Some("files:write")),
    ("usergroups.list", Some("usergroups:read")),
    ("users.lookupByEmail", Some("users:read.email")),
];

/// Scopes Slack grants only together with another one: asked for because a listed scope
/// needs them, not for a method of their own.
pub const COMPANION_SCOPES: &[(&str, &str)] = &[("users:read.email", "users:read")];

type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// How long any Web API call may take. Slack answers in well under a second; a call that
/// hangs must not hold a relay, a wizard or a refresher for ever.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `call`, or a retryable error once [`CALL_TIMEOUT`] has passed.
async fn within<T>(method: &str, call: impl std::future::Future<Output = Result<T, SlackClientError>>) -> Result<T, ChatError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r.map_err(classify),
        Err(_) => Err(ChatError::Retryable(format!("Slack did not answer {method} within {} s", CALL_TIMEOUT.as_secs()))),
    }
}

pub struct SlackApi {
    client: SlackClient<Connector>,
    token: SlackApiToken,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlackApi(***)")
    }
}

fn model<T: DeserializeOwned>(v: Json) -> Result<T, ChatError> {
    serde_json::from_value(v).map_err(|e| ChatError::Permanent(format!("the payload does not fit Slack's model: {e}")))
}

fn classify(e: SlackClientError) -> ChatError {
    match e {
        SlackClientError::RateLimitError(r) => ChatError::RetryAfter(r.retry_after.unwrap_or(Duration::from_secs(1))),
        SlackClientError::ApiError(a) => match a.code.as_str() {
            "ratelimited" => ChatError::RetryAfter(Duration::from_secs(1)),
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => ChatError::Retryable(a.code),
            _ => ChatError::Permanent(a.code),
        },
        // Slack answered something the client cannot read: repeating will not help.
        SlackClientError::ProtocolError(p) => ChatError::Permanent(p.to_string()),
        other => ChatError::Retryable(other.to_string()),
    }
}

impl SlackApi {
    /// `base_url` is `https://slack.com/api` in production, a local fake in tests.
    pub fn new(base_url: &str, bot_token: &Secret) -> std::io::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_native_roots()?.https_or_http().enable_http1().build();
        let connector = SlackClientHyperConnector::with_connector(https).with_slack_api_url(base_url);
        let token = SlackApiToken::new(SlackApiTokenValue(bot_token.expose().to_string()));
        Ok(SlackApi { client: SlackClient::new(connector), token })
    }

    pub async fn open_view(&self, trigger_id: &str, view: Json) -> Result<String, ChatError> {
        let req: SlackApiViewsOpenRequest = model(json!({ "trigger_id": trigger_id, "view": view }))?;
        let resp = within("views.open", self.client.open_session(&self.token).views_open(&req)).await?;
        Ok(resp.view.state_params.id.0)
    }

    pub async fn update_view(&self, view_id: &str, view: Json) -> Result<(), ChatError> {
        let req: SlackApiViewsUpdateRequest = model(json!({ "view_id": view_id, "view": view }))?;
        within("views.update", self.client.open_session(&self.token).views_update(&req)).await?;
        Ok(())
    }

    /// Posts a message (into a thread with `thread_ts`); returns its `ts`.
    pub async fn post(&self, channel: &str, thread_ts: Option<&str>, text: &str, blocks: Vec<Json>) -> Result<String, ChatError> {
        self.post_in(channel, thread_ts, text, blocks).await.map(|(_, ts)| ts)
    }

    /// [`Self::post`], with the channel Slack put it in (a user id becomes their direct
    /// message channel).
    pub async fn post_in(&self, channel: &str, thread_ts: Option<&str>, text: &str, blocks: Vec<Json>) -> Result<(String, String), ChatError> {
        let mut body = json!({ "channel": channel, "text": text });
        if !blocks.is_empty() {
            body["blocks"] = Json::Array(blocks);
        }
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        let req: SlackApiChatPostMessageRequest = model(body)?;
        let resp = within("chat.postMessage", self.client.open_session(&self.token).chat_post_message(&req)).await?;
        Ok((resp.channel.0, resp.ts.0))
    }

    pub async fn update(&self, channel: &str, ts: &str, text: &str, blocks: Vec<Json>) -> Result<(), ChatError> {
        let req: SlackApiChatUpdateRequest = model(json!({ "channel": channel, "ts": ts, "text": text, "blocks": blocks }))?;
        within("chat.update", self.client.open_session(&self.token).chat_update(&req)).await?;
        Ok(())
    }

    pub async fn ephemeral(&self, channel: &str, user: &str, text: &str) -> Result<(), ChatError> {
        let req: SlackApiChatPostEphemeralRequest = model(json!({ "channel": channel, "user": user, "text": text }))?;
        within("chat.postEphemeral", self.client.open_session(&self.token).chat_post_ephemeral(&req)).await?;
        Ok(())
    }

    /// Checks the token (for `offboard doctor`): the workspace's name.
    pub async fn auth_test(&self) -> Result<String, ChatError> {
        let r = within("auth.test", self.client.open_session(&self.token).auth_test()).await?;
        Ok(r.team)
    }

    /// The Slack user with this e-mail address, if the workspace has one.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<String>, ChatError> {
        let req: SlackApiUsersLookupByEmailRequest = model(json!({ "email": email }))?;
        match within("users.lookupByEmail", self.client.open_session(&self.token).users_lookup_by_email(&req)).await {
            Ok(resp) => Ok(Some(resp.user.id.0)),
            Err(ChatError::Permanent(code)) if code == "users_not_found" || code == "user_not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every user group with its members: `(group id, user ids)`.
    pub async fn user_groups(&self) -> Result<Vec<(String, Vec<String>)>, ChatError> {
        let req: SlackApiUserGroupsListRequest = model(json!({ "include_users": true }))?;
        let resp = within("usergroups.list", self.client.open_session(&self.token).usergroups_list(&req)).await?;
        Ok(resp.usergroups.into_iter().map(|g| (g.id.0, g.users.unwrap_or_default().into_iter().map(|u| u.0).collect())).collect())
    }

    /// The external upload flow: get an upload URL, send the bytes, then share the file
    /// into the thread.
    pub async fn upload(&self, channel: &str, thread_ts: &str, file: &FileOut, comment: &str) -> Result<(), ChatError> {
        let session = self.client.open_session(&self.token);
        let url: SlackApiFilesGetUploadUrlExternalRequest = model(json!({ "filename": file.name, "length": file.bytes.len() }))?;
        let got = within("files.getUploadURLExternal", session.get_upload_url_external(&url)).await?;
        let send = SlackApiFilesUploadViaUrlRequest::new(got.upload_url.clone(), file.bytes.clone(), file.mime.to_string());
        within("the file upload", session.files_upload_via_url(&send)).await?;
        let done: SlackApiFilesCompleteUploadExternalRequest = model(json!({
            "files": [{ "id": got.file_id.0, "title": file.name }],
            "channel_id": channel,
            "thread_ts": thread_ts,
            "initial_comment": comment,
        }))?;
        within("files.completeUploadExternal", session.files_complete_upload_external(&done)).await?;
        Ok(())
    }
}
