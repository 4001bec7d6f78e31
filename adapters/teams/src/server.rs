//! The messaging endpoint (`/api/messages`): every activity's token is verified first, a
//! redelivered activity is acted on once by any process (the store's deliveries), and
//! only Teams' activities are acted on. Then:
//!
//! - install and conversation events keep the conversation's reference, so the bot can
//!   post there later;
//! - a message is a command (the bot's mention removed by its `entities`), answered in the
//!   conversation off the request path; one that opens the wizard answers with a button,
//!   since Teams opens dialogs only from a click;
//! - `task/fetch` and `task/submit` invokes are the wizard's dialog: each page answered with
//!   the next (`continue`), or the same page with its errors; the last page closes the
//!   dialog with a message and the request is made off the request path, its outcome said
//!   in the conversation (with a button back to the page to correct, if it was refused);
//! - the message extension's action (`composeExtension/fetchTask`) opens the same dialog at
//!   once, its user taken from the message it was started on, if that names an address;
//!   its `composeExtension/submitAction` invokes are the dialog's pages as above;
//! - an `application/search` invoke is the wizard's user field being typed: core's people
//!   search over the customer tenant's directory;
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

use offboard_core::chat::acks::AckLatency;
use offboard_core::chat::conversation::{Span, Text};
use offboard_core::chat::memberships::{DirectoryGroups, Memberships};
use offboard_core::chat::relay::Routes;
use offboard_core::chat::{ButtonValue, Clicked, Conversation, FieldError, Finished, Reply, Submitted};
use offboard_core::clock::Clock;
use offboard_core::domain::{Actor, RunId, TenantId};
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
/// The message extension's action command, as the manifest names it.
pub const COMPOSE_COMMAND: &str = "offboard";
pub const REJECT_CONFIRM_VERB: &str = "reject_confirm";
/// The store's name for what the bot knows of a channel: the team it is in.
pub const CHANNEL_TEAMS: &str = "teams-channel";

pub struct TeamsApp {
    conv: Conversation,
    /// Where each tenant's approvals go: named in the wizard's last words.
    routes: Routes,
    verifier: Verifier,
    connector: Arc<Connector>,
    /// The Entra groups role bindings name, read in the background.
    memberships: Arc<Memberships>,
    /// How long Teams waited for each answer.
    pub ack: AckLatency,
    /// The references this process has kept, so that a conversation's every message does
    /// not write the same one again.
    remembered: std::sync::Mutex<std::collections::HashMap<String, String>>,
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
    pub fn new(
        svc: Arc<Offboarding>,
        directory: Arc<dyn Directory>,
        routes: Routes,
        verifier: Verifier,
        connector: Arc<Connector>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(TeamsApp {
            conv: Conversation::new(svc, directory),
            routes,
            verifier,
            connector,
            memberships: Arc::default(),
            ack: AckLatency::default(),
            remembered: Default::default(),
            clock,
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        let timed = self.clone();
        Router::new().route(MESSAGES_PATH, post(messages)).with_state(self.clone()).layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let app = timed.clone();
                async move {
                    let t = std::time::Instant::now();
                    let r = next.run(req).await;
                    app.ack.record(t.elapsed());
                    r
                }
            },
        ))
    }

    /// The person behind an activity: their Entra object id, the identity roles bind to,
    /// and the Entra groups the last background read found them in.
    fn actor(&self, activity: &Value) -> Option<Actor> {
        let from = &activity["from"];
        let id = from["aadObjectId"].as_str().filter(|s| !s.is_empty())?;
        let groups = self.memberships.groups_of(&id.to_ascii_lowercase());
        Some(Actor { platform: "teams".into(), id: id.to_string(), name: from["name"].as_str().unwrap_or(id).to_string(), groups })
    }

    pub fn memberships(&self) -> &Arc<Memberships> {
        &self.memberships
    }

    /// Keeps the Entra groups that role bindings name read from the bot's home tenant until
    /// `shutdown`; when no binding names one, the directory is never asked.
    pub async fn memberships_until(self: Arc<Self>, home: TenantId, shutdown: impl std::future::Future<Output = ()>) {
        let groups = self.conv.service().access().groups_on("teams");
        if groups.is_empty() {
            return;
        }
        let source = DirectoryGroups { directory: self.conv.directory().clone(), tenant: home, groups };
        self.memberships.refresh_until(&source, shutdown).await;
    }

    /// Keeps what the bot needs to post into this conversation later.
    async fn remember(&self, activity: &Value) {
        let Some(id) = activity["conversation"]["id"].as_str() else { return };
        let reference = json!({
            "serviceUrl": activity["serviceUrl"],
            "conversation": activity["conversation"],
            "tenant": activity["channelData"]["tenant"]["id"],
            "team": activity["channelData"]["team"]["id"],
            "aadGroupId": activity["channelData"]["team"]["aadGroupId"],
            "channel": activity["channelData"]["channel"]["id"],
            "bot": activity["recipient"],
        });
        self.keep("teams", id, reference).await;
    }

    /// Keeps the team a channel is in (its Entra group), where the report's copy is filed.
    /// Every activity from a channel carries it; it is written once per process.
    async fn remember_channel(&self, activity: &Value) {
        let data = &activity["channelData"];
        let (Some(channel), Some(group)) = (data["channel"]["id"].as_str(), data["team"]["aadGroupId"].as_str()) else { return };
        self.keep(CHANNEL_TEAMS, channel, json!({ "team": data["team"]["id"], "aadGroupId": group })).await;
    }

    async fn keep(&self, kind: &str, key: &str, reference: Value) {
        let reference = reference.to_string();
        let memo = format!("{kind}|{key}");
        if self.remembered.lock().expect("remembered lock").get(&memo) == Some(&reference) {
            return;
        }
        match self.conv.service().store().save_conversation(kind, key, &reference, self.clock.now()).await {
            Ok(()) => {
                self.remembered.lock().expect("remembered lock").insert(memo, reference);
            }
            Err(e) => tracing::warn!(error = %e, kind, "could not keep what the bot knows of a Teams conversation"),
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
    app.connector.learn(&envelope.service_url);
    // Activity ids are unique within their conversation.
    let id = activity["id"].as_str().unwrap_or_default();
    if !id.is_empty() {
        let key = format!("{}|{id}", activity["conversation"]["id"].as_str().unwrap_or_default());
        match app.conv.service().store().first_delivery("teams-activity", &key, app.clock.now(), chrono::Duration::minutes(10)).await {
            Ok(true) => {}
            Ok(false) => return StatusCode::OK.into_response(),
            Err(e) => {
                tracing::error!(error = %e, "could not record a Teams delivery");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        }
    }
    app.remember_channel(&activity).await;
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
        Some("invoke") if activity["name"] == "task/fetch" => fetch(&app, &activity).await,
        Some("invoke") if activity["name"] == "task/submit" => submit(&app, &activity).await,
        Some("invoke") if activity["name"] == "composeExtension/fetchTask" => compose(&app, &activity).await,
        Some("invoke") if activity["name"] == "composeExtension/submitAction" => submit(&app, &activity).await,
        Some("invoke") if activity["name"] == "application/search" => search(&app, &activity).await,
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
    let Some(actor) = app.actor(activity) else { return };
    let text = without_mentions(activity);
    let text = text.strip_prefix(COMMAND).map(str::trim).unwrap_or(&text);
    let conversation = activity["conversation"]["id"].as_str().unwrap_or_default();
    let key = format!("teams:{}", activity["id"].as_str().unwrap_or_default());
    let reply = match app.conv.command(&actor, COMMAND, text, &key, Some(conversation)).await {
        Reply::Text(t) => json!({ "type": "message", "textFormat": "markdown", "text": said(&t) }),
        Reply::Status(view) => cards::activity(&format!("Offboarding {}", view.target_upn), cards::status(&view)),
        Reply::Wizard(page) => cards::activity("Offboard: the wizard", cards::open_wizard(&page)),
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
    let Some(actor) = app.actor(activity) else { return invoke_message("Offboard could not tell who clicked.") };
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

fn dialog_message(text: &str) -> Response {
    axum::Json(json!({ "task": { "type": "message", "value": text } })).into_response()
}

/// Opens the wizard's dialog: the first page from the command's button, or a page of a
/// wizard in progress with what to correct.
async fn fetch(app: &TeamsApp, activity: &Value) -> Response {
    let Some(actor) = app.actor(activity) else { return dialog_message("Offboard could not tell who asked.") };
    let data = &activity["value"]["data"];
    let Some(key) = data["wizard"].as_str().filter(|k| k.starts_with("teams:")) else { return dialog_message("This button is not one of Offboard's.") };
    let page = data["page"].as_u64().unwrap_or(0) as usize;
    let shown = if page == 0 && data.get("errors").is_none() {
        if !app.conv.service().may_request_somewhere(&actor) {
            return dialog_message(NO_ROLE);
        }
        let mut p = app.conv.start(key.to_string(), data["user"].as_str().map(String::from), data["preset"].as_str().map(String::from));
        p.origin = data["origin"].as_str().map(String::from);
        Some(p)
    } else {
        let errors = data["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| FieldError { field: e["field"].as_str().unwrap_or_default().into(), message: e["message"].as_str().unwrap_or_default().into() })
            .collect();
        app.conv.reopen(&actor, key, page, errors).await
    };
    match shown {
        Some(p) => axum::Json(cards::dialog(&p)).into_response(),
        None => dialog_message("This wizard's answers are gone (it was left open for more than two hours). Please start again."),
    }
}

const NO_ROLE: &str = "You have no role that may request offboardings. Ask an owner of Offboard to grant one.";

/// The message extension's action: the wizard's first page straight away. Started on a
/// message ("alice@contoso.com leaves on Friday"), the first address it names fills the
/// user field.
async fn compose(app: &TeamsApp, activity: &Value) -> Response {
    let Some(actor) = app.actor(activity) else { return dialog_message("Offboard could not tell who asked.") };
    let value = &activity["value"];
    let id = activity["id"].as_str().unwrap_or_default();
    if value["commandId"] != COMPOSE_COMMAND || id.is_empty() {
        return dialog_message("This command is not one of Offboard's.");
    }
    if !app.conv.service().may_request_somewhere(&actor) {
        return dialog_message(NO_ROLE);
    }
    let user = if value["commandContext"] == "message" { address_in(value["messagePayload"]["body"]["content"].as_str().unwrap_or_default()) } else { None };
    let mut p = app.conv.start(format!("teams:{id}"), user, None);
    p.origin = activity["conversation"]["id"].as_str().map(String::from);
    axum::Json(cards::dialog(&p)).into_response()
}

/// The first sign-in address a message's text names, its HTML markup set aside.
pub fn address_in(html: &str) -> Option<String> {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text.replace("&nbsp;", " ");
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '"' | ':'))
        .map(|w| w.trim_end_matches(['.', '!', '?']))
        .find_map(|w| offboard_core::domain::Upn::parse(w).ok())
        .map(|u| u.as_str().to_string())
}

/// The first page's user is checked against the directory before the second is shown, for
/// as long as Teams waits on a dialog; a slower directory is checked with the request.
const USER_CHECK_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

async fn submit(app: &Arc<TeamsApp>, activity: &Value) -> Response {
    let Some(actor) = app.actor(activity) else { return dialog_message("Offboard could not tell who asked.") };
    let data = &activity["value"]["data"];
    let Some(key) = data["wizard"].as_str().filter(|k| k.starts_with("teams:")).map(String::from) else {
        return dialog_message("This dialog is not one of Offboard's.");
    };
    let page = data["page"].as_u64().unwrap_or(0) as usize;
    let Some(form) = app.conv.service().wizard().into_iter().nth(page) else { return dialog_message("This wizard has no such page. Please start again.") };
    let values = cards::answers(&form, data);
    let origin = data["origin"].as_str();
    match app.conv.submit(&actor, &key, page, &values, origin).await {
        Submitted::Again(p) => axum::Json(cards::dialog(&p)).into_response(),
        Submitted::Gone(text) => dialog_message(&text.to_plain()),
        Submitted::Next(next) => {
            if page == 0
                && let Ok(Some(again)) = tokio::time::timeout(USER_CHECK_BUDGET, app.conv.check_user(&actor, &key)).await
            {
                return axum::Json(cards::dialog(&again)).into_response();
            }
            axum::Json(cards::dialog(&next)).into_response()
        }
        Submitted::Ready { user } => {
            let conversation = activity["conversation"]["id"].as_str().unwrap_or_default().to_string();
            let app = app.clone();
            tokio::spawn(async move {
                let answer = match app.conv.finish(&actor, &key).await {
                    Finished::Requested(run) => {
                        let place = match app.routes.destination("teams", &run) {
                            Some(_) => "is posted for approval in the approvals channel",
                            None => "is posted where this tenant's approvals go",
                        };
                        json!({ "type": "message", "textFormat": "markdown", "text": format!("The plan for **{}** {place}. Run `{}`.", cards::inert(&run.target_name), run.id) })
                    }
                    Finished::Said(text) => json!({ "type": "message", "textFormat": "markdown", "text": said(&text) }),
                    Finished::Again(p) => cards::activity("Offboard: a page to correct", cards::correct(&p)),
                };
                if let Err(e) = app.connector.send(&conversation, &answer).await {
                    tracing::warn!(error = %e, "could not answer in Teams");
                }
            });
            dialog_message(&format!("Looking up {user} and building the plan; the answer follows in this conversation."))
        }
    }
}

/// How long a keystroke's search may take: Teams shows nothing for a late answer.
const SEARCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// The wizard's user field, as it is typed: core's people search, scoped and rate-limited
/// there; a refusal or a slow directory shows no one.
async fn search(app: &TeamsApp, activity: &Value) -> Response {
    let value = &activity["value"];
    let text = value["queryText"].as_str().unwrap_or_default().trim();
    let mut found = Vec::new();
    if let Some(actor) = app.actor(activity)
        && value["dataset"] == cards::PEOPLE
        && text.chars().count() >= 2
    {
        match tokio::time::timeout(SEARCH_BUDGET, app.conv.search(&actor, text)).await {
            Ok(Ok(people)) => found = people,
            Ok(Err(e)) => tracing::info!(reason = %e, "people search refused"),
            Err(_) => tracing::warn!("people search took longer than Teams waits"),
        }
    }
    axum::Json(cards::search_results(&found)).into_response()
}
