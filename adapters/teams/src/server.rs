//! The messaging endpoint (`/api/messages`): every activity's token is verified first, a
//! redelivered activity is acted on once by any process (the store's deliveries), and
//! only Teams' activities are acted on. Then:
//!
//! - install and conversation events keep the conversation's reference, so the bot can
//!   post there later;
//! - a message is a command (the bot's mention removed by its `entities`), answered in the
//!   conversation off the request path;
//! - an `adaptiveCard/action` invoke (Approve, Reject) is decided by core and answered in
//!   the invoke's own response: the refreshed card for a counted approval, the reason
//!   dialog for Reject, or a message only the clicker sees for a refusal.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use offboard_core::chat::conversation::{Span, Text};
use offboard_core::chat::{ButtonValue, Clicked, Conversation, Reply};
use offboard_core::clock::Clock;
use offboard_core::domain::{Actor, RunId};
use offboard_core::service::Offboarding;
use offboard_core::snapshot::Directory;

use crate::auth::Verifier;
use crate::cards;
use crate::connector::Connector;

pub const MESSAGES_PATH: &str = "/api/messages";
/// Teams' channel id; activities from other channels are not acted on.
pub const CHANNEL: &str = "msteams";
/// The word after the mention that asks for an offboarding (`@Offboard offboard alice@…`).
pub const COMMAND: &str = "offboard";
pub const REJECT_CONFIRM_VERB: &str = "reject_confirm";

pub struct TeamsApp {
    conv: Conversation,
    verifier: Verifier,
    connector: Arc<Connector>,
    clock: Arc<dyn Clock>,
}

/// The parts of an activity read to verify it; the rest is read only after.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "channelId", default)]
    channel_id: String,
    #[serde(rename = "serviceUrl", default)]
    service_url: String,
}

impl TeamsApp {
    pub fn new(svc: Arc<Offboarding>, directory: Arc<dyn Directory>, verifier: Verifier, connector: Arc<Connector>, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(TeamsApp { conv: Conversation::new(svc, directory), verifier, connector, clock })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().route(MESSAGES_PATH, post(messages)).with_state(self.clone())
    }

    /// The person behind an activity: their Entra object id, the identity roles bind to.
    fn actor(activity: &Value) -> Option<Actor> {
        let from = &activity["from"];
        let id = from["aadObjectId"].as_str().filter(|s| !s.is_empty())?;
        Some(Actor { platform: "teams".into(), id: id.to_string(), name: from["name"].as_str().unwrap_or(id).to_string(), groups: vec![] })
    }

    /// Keeps what the bot needs to post into this conversation later.
    async fn remember(&self, activity: &Value) {
        let Some(id) = activity["conversation"]["id"].as_str() else { return };
        let reference = json!({
            "serviceUrl": activity["serviceUrl"],
            "conversation": activity["conversation"],
            "tenant": activity["channelData"]["tenant"]["id"],
            "team": activity["channelData"]["team"]["id"],
            "channel": activity["channelData"]["channel"]["id"],
            "bot": activity["recipient"],
        });
        if let Err(e) = self.conv.service().store().save_conversation("teams", id, &reference.to_string(), self.clock.now()).await {
            tracing::warn!(error = %e, "could not keep a Teams conversation reference");
        }
    }
}

async fn messages(State(app): State<Arc<TeamsApp>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    if let Err(refused) = app.verifier.verify(authorization, &envelope.channel_id, &envelope.service_url).await {
        tracing::warn!(reason = %refused, "refused a Teams activity");
        return StatusCode::from_u16(refused.status()).unwrap_or(StatusCode::FORBIDDEN).into_response();
    }
    let Ok(activity) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if envelope.channel_id != CHANNEL {
        return StatusCode::OK.into_response();
    }
    let id = activity["id"].as_str().unwrap_or_default();
    if !id.is_empty() {
        match app.conv.service().store().first_delivery("teams-activity", id, app.clock.now(), chrono::Duration::minutes(10)).await {
            Ok(true) => {}
            Ok(false) => return StatusCode::OK.into_response(),
            Err(e) => {
                tracing::error!(error = %e, "could not record a Teams delivery");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        }
    }
    match activity["type"].as_str() {
        Some("conversationUpdate" | "installationUpdate") => {
            app.remember(&activity).await;
            StatusCode::OK.into_response()
        }
        Some("message") => {
            app.remember(&activity).await;
            let app = app.clone();
            tokio::spawn(async move { command(&app, &activity).await });
            StatusCode::OK.into_response()
        }
        Some("invoke") if activity["name"] == "adaptiveCard/action" => action(&app, &activity).await,
        _ => StatusCode::OK.into_response(),
    }
}

/// The message's text without the bot's mentions, as its `entities` mark them.
pub fn without_mentions(activity: &Value) -> String {
    let mut text = activity["text"].as_str().unwrap_or_default().to_string();
    let bot = activity["recipient"]["id"].as_str().unwrap_or_default();
    for e in activity["entities"].as_array().into_iter().flatten() {
        if e["type"] == "mention"
            && e["mentioned"]["id"].as_str() == Some(bot)
            && let Some(m) = e["text"].as_str()
        {
            text = text.replace(m, "");
        }
    }
    text.trim().to_string()
}

/// Words for one person as Teams shows them: code as code, the rest escaped.
pub fn said(t: &Text) -> String {
    t.0.iter()
        .map(|s| match s {
            Span::Plain(p) => cards::inert(p),
            Span::Strong(p) => format!("**{}**", cards::inert(p)),
            Span::Code(p) => format!("`{}`", p.replace('`', "'")),
            Span::Break => "\n\n".into(),
        })
        .collect()
}

async fn command(app: &TeamsApp, activity: &Value) {
    let Some(actor) = TeamsApp::actor(activity) else { return };
    let text = without_mentions(activity);
    let text = text.strip_prefix(COMMAND).map(str::trim).unwrap_or(&text);
    let conversation = activity["conversation"]["id"].as_str().unwrap_or_default();
    let key = format!("teams:{}", activity["id"].as_str().unwrap_or_default());
    let reply = match app.conv.command(&actor, COMMAND, text, &key, Some(conversation)).await {
        Reply::Text(t) => json!({ "type": "message", "textFormat": "markdown", "text": said(&t) }),
        Reply::Status(view) => cards::activity(&format!("Offboarding {}", view.target_upn), cards::status(&view)),
        // The wizard is a Teams dialog, which this adapter does not open yet.
        Reply::Wizard(_) => {
            json!({ "type": "message", "text": "The offboarding wizard does not open in Teams yet: ask from Slack, or with `offboard request` on the server." })
        }
    };
    if let Err(e) = app.connector.send(conversation, &reply).await {
        tracing::warn!(error = %e, "could not answer in Teams");
    }
}

fn invoke_card(card: Value) -> Response {
    axum::Json(json!({ "statusCode": 200, "type": "application/vnd.microsoft.card.adaptive", "value": card })).into_response()
}

/// A message only the clicker sees.
fn invoke_message(text: &str) -> Response {
    axum::Json(json!({ "statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text })).into_response()
}

/// Approve, Reject and the rejection's reason, answered in the invoke's response.
async fn action(app: &TeamsApp, activity: &Value) -> Response {
    let Some(actor) = TeamsApp::actor(activity) else { return invoke_message("Offboard could not tell who clicked.") };
    let a = &activity["value"]["action"];
    let value = a["data"]["value"].as_str().unwrap_or_default();
    match a["verb"].as_str() {
        Some(cards::APPROVE_VERB | cards::REJECT_VERB) => {
            let Some(button) = ButtonValue::decode(value) else { return invoke_message("This button is not one of Offboard's.") };
            match app.conv.click(&actor, &button).await {
                Clicked::Decided(preview) => invoke_card(cards::preview(&preview)),
                Clicked::AskReason(run) => invoke_card(cards::reject_reason(&run, None)),
                Clicked::Refused(text) => invoke_message(&text.to_plain()),
            }
        }
        Some(REJECT_CONFIRM_VERB) => {
            let Ok(run) = RunId::parse(value) else { return invoke_message("This button is not one of Offboard's.") };
            let reason = a["data"]["reason"].as_str().unwrap_or_default();
            match app.conv.reject(&actor, &run, reason).await {
                Ok(()) => match app.conv.preview(&run).await {
                    Some(p) => invoke_card(cards::preview(&p)),
                    None => invoke_message("Rejected."),
                },
                Err(message) => invoke_card(cards::reject_reason(&run, Some(&message))),
            }
        }
        _ => invoke_message("This button is not one of Offboard's."),
    }
}
