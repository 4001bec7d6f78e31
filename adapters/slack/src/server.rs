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

use offboard_core::chat::{ButtonValue, Command, Draft, Value};
use offboard_core::clock::Clock;
use offboard_core::domain::{Actor, RunId};
use offboard_core::secret::Secret;
use offboard_core::service::{Offboarding, ServiceError};
use offboard_core::snapshot::Directory;

use crate::api::SlackApi;
use crate::blocks;
use crate::memberships::Memberships;
use crate::signature::{Refused, Verifier};

/// How long a user search may take before the picker gets what was found.
const SEARCH_BUDGET: Duration = Duration::from_millis(2500);

/// The slash command and the request paths, as the manifest declares them.
pub const COMMAND: &str = "/offboard";
pub const COMMANDS_PATH: &str = "/slack/commands";
pub const INTERACTIONS_PATH: &str = "/slack/interactions";
pub const OPTIONS_PATH: &str = "/slack/options";

pub struct SlackApp {
    svc: Arc<Offboarding>,
    api: Arc<SlackApi>,
    directory: Arc<dyn Directory>,
    verifier: Verifier,
    clock: Arc<dyn Clock>,
    approvals_channel: String,
    memberships: Arc<Memberships>,
    pub ack: AckLatency,
}

/// Upper bounds (seconds) of the acknowledgement latency histogram.
pub const ACK_BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 3.0];

/// How long Slack waited for each answer, as a Prometheus histogram.
#[derive(Debug, Default)]
pub struct AckLatency {
    /// Cumulative counts per bucket of `ACK_BUCKETS`, then +Inf.
    pub buckets: [std::sync::atomic::AtomicU64; 9],
    pub sum_micros: std::sync::atomic::AtomicU64,
}

impl AckLatency {
    fn record(&self, d: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = d.as_secs_f64();
        for (i, b) in ACK_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.buckets[8].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// The histogram in Prometheus text format.
    pub fn render(&self, name: &str) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = format!("# HELP {name} Time to acknowledge a Slack request.\n# TYPE {name} histogram\n");
        for (i, b) in ACK_BUCKETS.iter().enumerate() {
            out.push_str(&format!("{name}_bucket{{le=\"{b}\"}} {}\n", self.buckets[i].load(Relaxed)));
        }
        let n = self.buckets[8].load(Relaxed);
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {n}\n{name}_sum {}\n{name}_count {n}\n", self.sum_micros.load(Relaxed) as f64 / 1e6));
        out
    }
}

/// Signatures are remembered as long as their timestamps are accepted.
const REPLAY_WINDOW: chrono::Duration = chrono::Duration::seconds(crate::signature::WINDOW_SECS + 60);

/// How long a wizard's answers wait for the next page.
const DRAFT_TTL: chrono::Duration = chrono::Duration::hours(2);

impl SlackApp {
    pub fn new(
        svc: Arc<Offboarding>,
        api: Arc<SlackApi>,
        directory: Arc<dyn Directory>,
        signing_secret: Secret,
        approvals_channel: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(SlackApp {
            svc,
            api,
            directory,
            verifier: Verifier::new(signing_secret),
            clock,
            approvals_channel: approvals_channel.into(),
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

    /// Brings back a wizard page, as the draft has it, with what must be corrected.
    async fn show_again(&self, view_id: &str, page: usize, draft: &Draft, errors: &[offboard_core::chat::FieldError]) {
        let Some(form) = self.svc.wizard().into_iter().nth(page) else { return };
        if let Err(e) = self.api.update_view(view_id, blocks::modal_with_errors(&form, &draft.values(page), errors)).await {
            tracing::warn!(error = %e, "could not show the wizard's page again");
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
        self.memberships.refresh_until(&self.api, shutdown).await;
    }
}

fn ephemeral(text: impl Into<String>) -> Response {
    axum::Json(json!({ "response_type": "ephemeral", "text": text.into() })).into_response()
}

fn ok() -> Response {
    StatusCode::OK.into_response()
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
    match Command::parse(get("text")) {
        Command::Offboard { .. } if !app.svc.may_request_somewhere(&who) => {
            // Refused before any wizard opens or any directory is searched; audited off the
            // request path.
            let (svc, who) = (app.svc.clone(), who.clone());
            tokio::spawn(async move {
                let _ = svc.check_may_request_somewhere(&who).await;
            });
            ephemeral("You have no role that may request offboardings. Ask an owner of Offboard to grant one.")
        }
        Command::Offboard { user, preset } => {
            // The trigger id expires about 3 s after it was issued: open the modal first,
            // before anything slow.
            let mut prefill = Draft::default().values(0);
            if let Some(u) = user {
                prefill.insert("user".into(), Value::Text(u));
            }
            if let Some(p) = preset {
                prefill.insert("preset".into(), Value::Chosen(vec![p]));
            }
            let page = blocks::modal(&app.svc.wizard()[0], &prefill);
            let api = app.api.clone();
            tokio::spawn(async move {
                if let Err(e) = api.open_view(&trigger, page).await {
                    tracing::warn!(error = %e, "could not open the wizard");
                }
            });
            ok()
        }
        Command::Help => ephemeral(blocks::help()),
        Command::List => match app.svc.list(&who, 15).await {
            Ok(runs) => ephemeral(blocks::list(&runs)),
            Err(e) => ephemeral(format!("You cannot list runs: {}", blocks::esc(&e.to_string()))),
        },
        Command::Status(id) => match app.svc.status(&who, &id).await {
            Ok((run, steps, _)) => {
                let view = offboard_core::chat::RunView::from_run(&run, &steps);
                let lines: Vec<String> = view.lines.iter().map(|l| format!("{} {}", blocks::badge(l.badge), l.title)).collect();
                ephemeral(format!("`{}` {}: {}\n{}", run.id, blocks::esc(&run.target_upn), run.state.label(), lines.join("\n")))
            }
            Err(e) => ephemeral(e.to_string()),
        },
        Command::Cancel(id) => match app.svc.cancel(&who, &id).await {
            Ok(()) => ephemeral(format!("Run `{id}` is cancelled; steps already done stay done.")),
            Err(e) => ephemeral(format!("Not cancelled: {}", blocks::esc(&e.to_string()))),
        },
        Command::RunNow(id) => match app.svc.run_now(&who, &id).await {
            Ok(()) => ephemeral(format!("Run `{id}` starts now.")),
            Err(e) => ephemeral(format!("Not started: {}", blocks::esc(&e.to_string()))),
        },
        Command::Unknown(hint) => ephemeral(format!("{}\n\n{}", blocks::esc(&hint), blocks::help())),
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
                    match value {
                        ButtonValue::Approve { run, plan } => {
                            if let Err(e) = app.svc.approve(&who, &run, &plan).await {
                                let _ = app.api.ephemeral(&channel, &who.id, &format!("Not approved: {}", blocks::esc(&e.to_string()))).await;
                            }
                        }
                        ButtonValue::Reject { run } => {
                            if let Err(e) = app.api.open_view(&trigger, blocks::reject_modal(run.as_str())).await {
                                tracing::warn!(error = %e, "could not open the rejection dialog");
                            }
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
                Some(Value::Text(t)) if !t.trim().is_empty() => t.trim().to_string(),
                _ => return errors([("reason".to_string(), "say why, for the requester and the audit log".to_string())]),
            };
            match app.svc.reject(who, &run, &reason).await {
                Ok(()) => ok(),
                Err(e) => errors([("reason".to_string(), format!("Not rejected: {e}"))]),
            }
        }
        Some(blocks::WIZARD) => {
            let Some(page) = view["private_metadata"].as_str().and_then(blocks::page_of) else { return ok() };
            // The answers so far are in the store under the modal's root view id, so any
            // process may take the next page.
            let root = view["root_view_id"].as_str().or(view["id"].as_str()).unwrap_or("").to_string();
            let key = format!("slack:{root}");
            let pages = app.svc.wizard();
            let kept = app.svc.store().draft(&key, app.clock.now()).await.ok().flatten().and_then(|d| serde_json::from_str::<Draft>(&d).ok());
            let mut draft = match (page, kept) {
                (_, Some(d)) => d,
                (0, None) => Draft::default(),
                (_, None) => return axum::Json(json!({ "response_action": "update", "view": blocks::notice_modal("Offboard", "This wizard's earlier answers are gone (it was left open for more than two hours). Please type /offboard again.") })).into_response(),
            };
            if let Err(errs) = draft.apply(page, &values, &app.svc) {
                return errors(errs.into_iter().map(|e| (e.field, e.message)));
            }
            let saved = serde_json::to_string(&draft).expect("a draft serialises");
            if let Err(e) = app.svc.store().save_draft(&key, &saved, app.clock.now() + DRAFT_TTL).await {
                tracing::error!(error = %e, "could not keep the wizard's answers");
                return errors([(pages[page].fields[0].id.to_string(), "the answers could not be kept; submit again".to_string())]);
            }
            let view_id = view["id"].as_str().unwrap_or("").to_string();
            if page + 1 < pages.len() {
                if page == 0 {
                    // Whether the tenant has this user is one directory read: asked after
                    // answering, and the first page comes back with the error if it has not.
                    let (app, draft, view_id) = (app.clone(), draft.clone(), view_id.clone());
                    tokio::spawn(async move {
                        if let Err(e) = draft.confirm_user(app.directory.as_ref()).await {
                            app.show_again(&view_id, 0, &draft, &[e]).await;
                        }
                    });
                }
                // The next page shows what the preset or earlier answers chose.
                let next = blocks::modal(&pages[page + 1], &draft.values(page + 1));
                return axum::Json(json!({ "response_action": "update", "view": next })).into_response();
            }
            let Some(tenant) = draft.tenant.as_deref().and_then(|t| offboard_core::domain::TenantId::parse(t).ok()) else {
                return errors([("reason".to_string(), "the tenant is not known: start again with /offboard".to_string())]);
            };
            let user = draft.user.clone();
            let (app2, who2) = (app.clone(), who.clone());
            tokio::spawn(async move {
                // The answers are kept until the request is made: an error brings back the
                // page to correct, never a dead end.
                let text = match app2.svc.request(&who2, draft.clone().into_request(tenant)).await {
                    Ok(run) => {
                        format!("The plan for *{}* is posted in <#{}> for approval. Run `{}`.", blocks::esc(&run.target_name), app2.approvals_channel, run.id)
                    }
                    Err(ServiceError::AlreadyOpen { run, state, upn }) => format!(
                        "*{}* already has an open offboarding: run `{run}` ({}), in <#{}>. It was not requested again; `/offboard status {run}` shows its steps.",
                        blocks::esc(&upn),
                        state.label(),
                        app2.approvals_channel
                    ),
                    Err(e) => match offboard_core::chat::placed(&e) {
                        Some((page, errs)) => return app2.show_again(&view_id, page, &draft, &errs).await,
                        None => format!("Not requested: {}", blocks::esc(&e.to_string())),
                    },
                };
                let _ = app2.svc.store().delete_draft(&key).await;
                if let Err(e) = app2.api.update_view(&view_id, blocks::notice_modal("Offboard", &text)).await {
                    tracing::warn!(error = %e, "could not update the wizard");
                }
            });
            let working = blocks::notice_modal("Offboard", &format!("Looking up *{}* and building the plan…", blocks::esc(&user)));
            axum::Json(json!({ "response_action": "update", "view": working })).into_response()
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
        match tokio::time::timeout(SEARCH_BUDGET, app.svc.search_people(&who, app.directory.as_ref(), &text)).await {
            Ok(Ok(people)) => found = people,
            Ok(Err(e)) => tracing::info!(reason = %e, "people search refused"),
            Err(_) => tracing::warn!("people search took longer than Slack waits"),
        }
    }
    axum::Json(blocks::people_options(&found)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_latency_renders_as_a_prometheus_histogram() {
        let h = AckLatency::default();
        h.record(Duration::from_millis(3));
        h.record(Duration::from_millis(40));
        let text = h.render("offboard_slack_ack_seconds");
        assert!(text.contains("offboard_slack_ack_seconds_bucket{le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("offboard_slack_ack_seconds_bucket{le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("offboard_slack_ack_seconds_count 2"), "{text}");
    }
}
