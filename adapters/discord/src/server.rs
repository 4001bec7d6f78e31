//! The interactions endpoint (`/discord/interactions`): the signature and timestamp are
//! checked before anything is read, a replay is refused, `PING` is answered `PONG`, and
//! every interaction is answered in its own response, at once. What takes longer (building
//! the plan) runs off the request and answers through a follow-up on the interaction's
//! token.
//!
//! The wizard: `/offboard user:…` answers with the first page's modal (nothing is looked
//! up first). A submitted page is answered with a message only its author sees: a
//! "Continue" button that opens the next page (a modal cannot answer a modal), or what to
//! correct with a button that reopens the page, answers kept. The last page answers
//! "Looking up …" and the result follows.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use offboard_core::chat::acks::AckLatency;
use offboard_core::chat::relay::Routes;
use offboard_core::chat::{ButtonValue, Clicked, Conversation, Finished, Reply, Submitted};
use offboard_core::clock::Clock;
use offboard_core::domain::Actor;
use offboard_core::domain::RunId;
use offboard_core::service::Offboarding;
use offboard_core::snapshot::Directory;
use serde_json::{Value, json};

use crate::api::DiscordApi;
use crate::commands::{self, Invoked};
use crate::verify::{Verifier, WINDOW};
use crate::views::{self, CONTINUE, CORRECT, WIZARD};
use crate::wire::ModalSubmit;

pub const INTERACTIONS_PATH: &str = "/discord/interactions";

/// Interaction types.
const PING: u64 = 1;
const COMMAND: u64 = 2;
const COMPONENT: u64 = 3;
const AUTOCOMPLETE: u64 = 4;
const MODAL_SUBMIT: u64 = 5;

/// Discord waits 3 s for an answer: the first page's user is checked against the directory
/// within this much of it, else with the request.
const USER_CHECK_BUDGET: Duration = Duration::from_millis(2000);
/// A keystroke's search: Discord shows nothing for a late answer.
const SEARCH_BUDGET: Duration = Duration::from_millis(2000);

const GONE: &str = "This wizard's answers are gone (it was left open for more than two hours). Please start again with /offboard.";

pub struct DiscordApp {
    conv: Conversation,
    routes: Routes,
    verifier: Verifier,
    api: Arc<DiscordApi>,
    /// How long Discord waited for each answer.
    pub ack: AckLatency,
    clock: Arc<dyn Clock>,
}

impl DiscordApp {
    pub fn new(
        svc: Arc<Offboarding>,
        directory: Arc<dyn Directory>,
        routes: Routes,
        verifier: Verifier,
        api: Arc<DiscordApi>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(DiscordApp { conv: Conversation::new(svc, directory), routes, verifier, api, ack: AckLatency::default(), clock })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        let timed = self.clone();
        Router::new().route(INTERACTIONS_PATH, post(interactions)).with_state(self.clone()).layer(axum::middleware::from_fn(
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

    /// The member who acted: their Discord user id, and their roles in the guild (role
    /// bindings name role ids, never role names).
    fn actor(interaction: &Value) -> Option<Actor> {
        let member = &interaction["member"];
        let user = if member.is_object() { &member["user"] } else { &interaction["user"] };
        let id = user["id"].as_str().filter(|s| !s.is_empty())?;
        let name = user["global_name"].as_str().or(user["username"].as_str()).unwrap_or(id);
        let groups = member["roles"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(String::from)).collect();
        Some(Actor { platform: "discord".into(), id: id.to_string(), name: name.to_string(), groups })
    }
}

fn json(v: Value) -> Response {
    axum::Json(v).into_response()
}

async fn interactions(State(app): State<Arc<DiscordApp>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    if let Err(refused) = app.verifier.verify(header("x-signature-ed25519"), header("x-signature-timestamp"), &body) {
        tracing::warn!(reason = %refused, "refused a Discord interaction");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(interaction) = serde_json::from_slice::<Value>(&body) else { return StatusCode::BAD_REQUEST.into_response() };
    let kind = interaction["type"].as_u64().unwrap_or_default();
    if kind == PING {
        return json(json!({ "type": views::PONG }));
    }
    // Interaction ids are unique: one seen before is a replay.
    let id = interaction["id"].as_str().unwrap_or_default();
    match app.conv.service().store().first_delivery("discord-interaction", id, app.clock.now(), WINDOW * 2).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("refused a replayed Discord interaction");
            return StatusCode::UNAUTHORIZED.into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record a Discord interaction");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    let Some(actor) = DiscordApp::actor(&interaction) else { return json(views::ephemeral("Offboard could not tell who asked.")) };
    match kind {
        COMMAND => command(&app, &actor, &interaction).await,
        AUTOCOMPLETE => search(&app, &actor, &interaction).await,
        MODAL_SUBMIT => submit(&app, actor, &interaction).await,
        COMPONENT => component(&app, &actor, &interaction).await,
        _ => json(views::ephemeral("Offboard does not answer this kind of interaction.")),
    }
}

async fn command(app: &DiscordApp, actor: &Actor, interaction: &Value) -> Response {
    let key = format!("discord:{}", interaction["id"].as_str().unwrap_or_default());
    let origin = interaction["channel_id"].as_str();
    let (invocation, words) = match commands::parse(&interaction["data"]) {
        Invoked::Start { user, preset } => (commands::START, format!("{} {}", user.unwrap_or_default(), preset.unwrap_or_default()).trim().to_string()),
        Invoked::Manage(words) if words == "help" => return json(views::ephemeral(&commands::help())),
        Invoked::Manage(words) => (commands::MANAGE, words),
        Invoked::Unknown(name) => {
            return json(views::ephemeral(&format!("`/{}` is not one of Offboard's commands.\n{}", views::inert(&name), commands::help())));
        }
    };
    match app.conv.command(actor, invocation, &words, &key, origin).await {
        Reply::Wizard(page) => json(views::open_modal(&page)),
        Reply::Text(t) => json(views::ephemeral(&views::said(&t))),
        Reply::Status(view) => json(views::ephemeral(&views::status(&view))),
    }
}

async fn search(app: &DiscordApp, actor: &Actor, interaction: &Value) -> Response {
    let text = commands::focused(&interaction["data"]).unwrap_or_default();
    let mut found = Vec::new();
    if text.trim().chars().count() >= 2 {
        match tokio::time::timeout(SEARCH_BUDGET, app.conv.search(actor, text.trim())).await {
            Ok(Ok(people)) => found = people,
            Ok(Err(e)) => tracing::info!(reason = %e, "people search refused"),
            Err(_) => tracing::warn!("people search took longer than Discord waits"),
        }
    }
    json(views::autocomplete(&found))
}

async fn submit(app: &Arc<DiscordApp>, actor: Actor, interaction: &Value) -> Response {
    let Ok(data) = serde_json::from_value::<ModalSubmit>(interaction["data"].clone()) else {
        return json(views::ephemeral("This form is not one of Offboard's."));
    };
    if let Some(run) = data.custom_id.strip_prefix(views::REJECT_REASON).and_then(|r| r.strip_prefix('|')) {
        let Ok(run) = RunId::parse(run) else { return json(views::ephemeral("This form is not one of Offboard's.")) };
        let reason = data.inputs().find(|i| i.custom_id == "reason").and_then(|i| i.value.clone()).unwrap_or_default();
        return match app.conv.reject(&actor, &run, &reason).await {
            // The modal was opened from the approval message's button: this updates it.
            Ok(()) => match app.conv.preview(&run).await {
                Some(p) => json(json!({ "type": views::UPDATE, "data": views::preview(&p) })),
                None => json(views::ephemeral("Rejected.")),
            },
            Err(message) => json(views::ephemeral(&format!("Not rejected: {}", views::inert(&message)))),
        };
    }
    let Some((WIZARD, key, page)) = views::read_custom_id(&data.custom_id) else { return json(views::ephemeral("This form is not one of Offboard's.")) };
    let Some(form) = app.conv.service().wizard().into_iter().nth(page) else { return json(views::ephemeral(GONE)) };
    let values = views::answers(&form, &data);
    let origin = interaction["channel_id"].as_str();
    match app.conv.submit(&actor, key, page, &values, origin).await {
        Submitted::Again(p) => json(views::correct(&p)),
        Submitted::Gone(t) => json(views::ephemeral(&views::said(&t))),
        Submitted::Next(next) => {
            if page == 0
                && let Ok(Some(again)) = tokio::time::timeout(USER_CHECK_BUDGET, app.conv.check_user(&actor, key)).await
            {
                return json(views::correct(&again));
            }
            json(views::next_page(&next))
        }
        Submitted::Ready { user } => {
            let (app, key, token) = (app.clone(), key.to_string(), interaction["token"].as_str().unwrap_or_default().to_string());
            tokio::spawn(async move {
                let message = match app.conv.finish(&actor, &key).await {
                    Finished::Requested(run) => {
                        let place = match app.routes.destination("discord", &run) {
                            Some(channel) => format!("is posted for approval in <#{channel}>"),
                            None => "is posted where this tenant's approvals go".to_string(),
                        };
                        json!({ "content": format!("The plan for **{}** {place}. Run `{}`.", views::inert(&run.target_name), run.id), "flags": views::EPHEMERAL, "allowed_mentions": { "parse": [] } })
                    }
                    Finished::Said(t) => json!({ "content": views::said(&t), "flags": views::EPHEMERAL, "allowed_mentions": { "parse": [] } }),
                    Finished::Again(p) => views::correct(&p)["data"].clone(),
                };
                if let Err(e) = app.api.followup(&token, &message).await {
                    tracing::warn!(error = %e, "could not answer in Discord");
                }
            });
            json(views::ephemeral(&format!("Looking up {} and building the plan; the answer follows here.", views::inert(&user))))
        }
    }
}

async fn component(app: &DiscordApp, actor: &Actor, interaction: &Value) -> Response {
    let id = interaction["data"]["custom_id"].as_str().unwrap_or_default();
    // Approve and Reject: decided by core on every click, whatever the message showed.
    if let Some(button) = ButtonValue::decode(id) {
        return match app.conv.click(actor, &button).await {
            Clicked::Decided(p) => json(json!({ "type": views::UPDATE, "data": views::preview(&p) })),
            Clicked::AskReason(run) => json(views::reject_reason(&run)),
            Clicked::Refused(t) => json(views::ephemeral(&views::said(&t))),
        };
    }
    match views::read_custom_id(id) {
        Some((CONTINUE | CORRECT, key, page)) => match app.conv.reopen(actor, key, page, vec![]).await {
            Some(p) => json(views::open_modal(&p)),
            None => json(views::ephemeral(GONE)),
        },
        _ => json(views::ephemeral("This button is not one of Offboard's.")),
    }
}
