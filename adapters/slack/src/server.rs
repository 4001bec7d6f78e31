//! The three request URLs Slack calls: `/slack/commands`, `/slack/interactions` and
//! `/slack/options`. Each checks the signature on the raw body before parsing anything,
//! answers within Slack's three seconds, and leaves slow work (Graph look-ups, Web API
//! calls) to tasks off the request path. Every decision goes to core's service.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value as Json, json};

use offboard_core::chat::relay::Routes;
use offboard_core::chat::{ButtonValue, Clicked, Conversation, Finished, Reply, Submitted, Value};
use offboard_core::clock::Clock;
use offboard_core::domain::{Actor, RunId};
use offboard_core::secret::Secret;
use offboard_core::service::Offboarding;
use offboard_core::snapshot::Directory;

use crate::api::SlackApi;
use crate::blocks;
use crate::memberships::Memberships;
use crate::signature::{Refused, Verifier};
use offboard_core::chat::acks::AckLatency;

/// How long a user search may take before the picker gets what was found.
const SEARCH_BUDGET: Duration = Duration::from_millis(2500);

/// The slash command and the request paths, as the manifest declares them.
pub const COMMAND: &str = "/offboard";
pub const COMMANDS_PATH: &str = "/slack/commands";
pub const INTERACTIONS_PATH: &str = "/slack/interactions";
pub const OPTIONS_PATH: &str = "/slack/options";

pub struct SlackApp {
    svc: Arc<Offboarding>,
    conv: Conversation,
    api: Arc<SlackApi>,
    verifier: Verifier,
    clock: Arc<dyn Clock>,
    /// Where each tenant's approvals are posted: named in the wizard's last words.
    routes: Routes,
    memberships: Arc<Memberships>,
    pub ack: AckLatency,
}

/// Signatures are remembered as long as their timestamps are accepted.
const REPLAY_WINDOW: chrono::Duration = chrono::Duration::seconds(crate::signature::WINDOW_SECS + 60);

impl SlackApp {
    pub fn new(
        svc: Arc<Offboarding>,
        api: Arc<SlackApi>,
        directory: Arc<dyn Directory>,
        signing_secret: Secret,
        routes: Routes,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(SlackApp {
            conv: Conversation::new(svc.clone(), directory),
            svc,
            api,
            verifier: Verifier::new(signing_secret),
            clock,
            routes,
            memberships: Arc::new(Memberships::default()),
            ack: AckLatency::default(),
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        let timed = self.clone();
        Router::new()
            .route(COMMANDS_PATH, post(commands))
            .route(INTERACTIONS_PATH, post(interactions))
            .route(OPTIONS_PATH, post(options))
            .with_state(self.clone())
            .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
                let app = timed.clone();
                async move {
                    let t = std::time::Instant::now();
                    let r = next.run(req).await;
                    app.ack.record(t.elapsed());
                    r
                }
            }))
    }

    /// The refusal to send, if the request is not Slack's or was seen before (by any
    /// process: the signature's key goes into the shared delivery table).
    async fn refusal(&self, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let now = self.clock.now();
        let refused = match self.verifier.verify(h("x-slack-request-timestamp"), h("x-slack-signature"), body, now) {
            Err(e) => e,
            Ok(signed) => match self.svc.store().first_delivery("slack-signature", &signed.0, now, REPLAY_WINDOW).await {
                Ok(true) => return None,
                Ok(false) => Refused::Replayed,
                Err(e) => {
                    tracing::error!(error = %e, "could not record a Slack delivery");
                    return Some((StatusCode::SERVICE_UNAVAILABLE, "try again").into_response());
                }
            },
        };
        tracing::warn!(reason = %refused, "refused a Slack request");
        Some((StatusCode::UNAUTHORIZED, refused.to_string()).into_response())
    }

    /// `false` when this trigger was acted on already (a retried delivery), here or in
    /// another process.
    async fn first_time(&self, trigger: &str) -> bool {
        if trigger.is_empty() {
            return true;
        }
        self.svc.store().first_delivery("slack-trigger", trigger, self.clock.now(), chrono::Duration::minutes(10)).await.unwrap_or(true)
    }

    /// The actor with the Slack user groups they were in at the last background read
    /// (none before the first, or if Slack cannot say: user bindings still apply, and a
    /// refusal is the worst outcome). Never a call to Slack.
    fn actor(&self, id: &str, name: &str) -> Actor {
        let groups = self.memberships.groups_of(id);
        Actor { platform: "slack".into(), id: id.into(), name: if name.is_empty() { id.into() } else { name.into() }, groups }
    }

    /// Shows a page in the wizard's modal after its submission was answered (Slack's own
    /// field errors are only for the answer itself).
    async fn show(&self, view_id: &str, view: Json) {
        if let Err(e) = self.api.update_view(view_id, view).await {
            tracing::warn!(error = %e, "could not update the wizard");
        }
    }

    pub fn memberships(&self) -> &Arc<Memberships> {
        &self.memberships
    }

    /// Keeps the user groups read until `shutdown`, when a role binding names a Slack
    /// group; otherwise Slack is never asked.
    pub async fn memberships_until(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        if !self.svc.access().names_groups_on("slack") {
            return;
        }
        self.memberships.refresh_until(&*self.api, shutdown).await;
    }
}

fn ephemeral(text: impl Into<String>) -> Response {
    axum::Json(json!({ "response_type": "ephemeral", "text": text.into() })).into_response()
}

fn ok() -> Response {
    StatusCode::OK.into_response()
}

fn update(view: Json) -> Response {
    axum::Json(json!({ "response_action": "update", "view": view })).into_response()
}

async fn commands(State(app): State<Arc<SlackApp>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = app.refusal(&headers, &body).await {
        return r;
    }
    let Ok(form) = serde_urlencoded::from_bytes::<HashMap<String, String>>(&body) else {
        return (StatusCode::BAD_REQUEST, "not a slash command").into_response();
    };
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let who = app.actor(get("user_id"), get("user_name"));
    let trigger = get("trigger_id").to_string();
    if !app.first_time(&trigger).await {
        return ok();
    }
    // The modal's draft is keyed by its root view id, which Slack assigns when it opens.
    match app.conv.command(&who, COMMAND, get("text"), "", Some(get("channel_id")).filter(|c| !c.is_empty())).await {
        Reply::Text(text) => ephemeral(blocks::text(&text)),
        Reply::Status(view) => ephemeral(blocks::status_text(&view)),
        Reply::Wizard(page) => {
            // The trigger id expires about 3 s after it was issued: open the modal before
            // anything slow.
            let api = app.api.clone();
            tokio::spawn(async move {
                if let Err(e) = api.open_view(&trigger, blocks::page(&page)).await {
                    tracing::warn!(error = %e, "could not open the wizard");
                }
            });
            ok()
        }
    }
}

fn payload(body: &[u8]) -> Option<Json> {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).ok()?;
    serde_json::from_str(form.get("payload")?).ok()
}

async fn interactions(State(app): State<Arc<SlackApp>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = app.refusal(&headers, &body).await {
        return r;
    }
    let Some(p) = payload(&body) else {
        return (StatusCode::BAD_REQUEST, "not an interaction payload").into_response();
    };
    let who = app.actor(p["user"]["id"].as_str().unwrap_or(""), p["user"]["username"].as_str().or(p["user"]["name"].as_str()).unwrap_or(""));
    let trigger = p["trigger_id"].as_str().unwrap_or("").to_string();
    match p["type"].as_str() {
        Some("block_actions") => {
            if !app.first_time(&trigger).await {
                return ok();
            }
            let channel = p["channel"]["id"].as_str().or(p["container"]["channel_id"].as_str()).unwrap_or("").to_string();
            for action in p["actions"].as_array().into_iter().flatten() {
                let Some(value) = action["value"].as_str().and_then(ButtonValue::decode) else { continue };
                let (app, who, channel, trigger) = (app.clone(), who.clone(), channel.clone(), trigger.clone());
                tokio::spawn(async move {
                    match app.conv.click(&who, &value).await {
                        // The relay edits the message from the store.
                        Clicked::Decided(_) => {}
                        Clicked::AskReason(run) => {
                            if let Err(e) = app.api.open_view(&trigger, blocks::reject_modal(run.as_str())).await {
                                tracing::warn!(error = %e, "could not open the rejection dialog");
                            }
                        }
                        Clicked::Refused(text) => {
                            let _ = app.api.ephemeral(&channel, &who.id, &blocks::text(&text)).await;
                        }
                    }
                });
            }
            ok()
        }
        Some("view_submission") => submission(&app, &who, &p).await,
        _ => ok(),
    }
}

fn errors(list: impl IntoIterator<Item = (String, String)>) -> Response {
    let map: serde_json::Map<String, Json> = list.into_iter().map(|(k, v)| (k, Json::String(blocks::cut(&v, 2000)))).collect();
    axum::Json(json!({ "response_action": "errors", "errors": map })).into_response()
}

async fn submission(app: &Arc<SlackApp>, who: &Actor, p: &Json) -> Response {
    let view = &p["view"];
    let values = blocks::values(&view["state"]);
    match view["callback_id"].as_str() {
        Some(blocks::REJECT) => {
            let Ok(run) = RunId::parse(view["private_metadata"].as_str().unwrap_or("")) else { return ok() };
            let reason = match values.get("reason") {
                Some(Value::Text(t)) => t.clone(),
                _ => String::new(),
            };
            match app.conv.reject(who, &run, &reason).await {
                Ok(()) => ok(),
                Err(message) => errors([("reason".to_string(), message)]),
            }
        }
        Some(blocks::WIZARD) => {
            let metadata = view["private_metadata"].as_str().unwrap_or("");
            let Some(page) = blocks::page_of(metadata) else { return ok() };
            // The answers are in the store under the modal's root view id, so any process
            // may take the next page.
            let root = view["root_view_id"].as_str().or(view["id"].as_str()).unwrap_or("");
            let key = format!("slack:{root}");
            let view_id = view["id"].as_str().unwrap_or("").to_string();
            match app.conv.submit(who, &key, page, &values, blocks::origin_of(metadata)).await {
                Submitted::Again(page) => errors(page.errors.into_iter().map(|e| (e.field, e.message))),
                Submitted::Gone(text) => update(blocks::notice_modal("Offboard", &blocks::text(&text))),
                Submitted::Next(next) => {
                    if page == 0 {
                        // Whether the tenant has this user is one directory read: asked
                        // after answering, and the first page comes back if it has not.
                        let (app, who, key, view_id) = (app.clone(), who.clone(), key.clone(), view_id.clone());
                        tokio::spawn(async move {
                            if let Some(again) = app.conv.check_user(&who, &key).await {
                                app.show(&view_id, blocks::page(&again)).await;
                            }
                        });
                    }
                    update(blocks::page(&next))
                }
                Submitted::Ready { user } => {
                    let (app, who) = (app.clone(), who.clone());
                    tokio::spawn(async move {
                        let view = match app.conv.finish(&who, &key).await {
                            Finished::Requested(run) => {
                                let place = match app.routes.destination("slack", &run) {
                                    Some(channel) => format!("posted in <#{channel}>"),
                                    None => "posted where this tenant's approvals go".to_string(),
                                };
                                let text = format!("The plan for *{}* is {place} for approval. Run `{}`.", blocks::esc(&run.target_name), run.id);
                                blocks::notice_modal("Offboard", &text)
                            }
                            Finished::Said(text) => blocks::notice_modal("Offboard", &blocks::text(&text)),
                            Finished::Again(page) => blocks::page(&page),
                        };
                        app.show(&view_id, view).await;
                    });
                    update(blocks::notice_modal("Offboard", &format!("Looking up *{}* and building the plan…", blocks::esc(&user))))
                }
            }
        }
        _ => ok(),
    }
}

async fn options(State(app): State<Arc<SlackApp>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = app.refusal(&headers, &body).await {
        return r;
    }
    let Some(p) = payload(&body) else {
        return (StatusCode::BAD_REQUEST, "not an options request").into_response();
    };
    let text = p["value"].as_str().unwrap_or("").trim().to_string();
    let who = app.actor(p["user"]["id"].as_str().unwrap_or(""), p["user"]["name"].as_str().unwrap_or(""));
    let mut found = Vec::new();
    if text.len() >= 2 {
        match tokio::time::timeout(SEARCH_BUDGET, app.conv.search(&who, &text)).await {
            Ok(Ok(people)) => found = people,
            Ok(Err(e)) => tracing::info!(reason = %e, "people search refused"),
            Err(_) => tracing::warn!("people search took longer than Slack waits"),
        }
    }
    axum::Json(blocks::people_options(&found)).into_response()
}
