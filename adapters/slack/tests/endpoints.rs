//! The endpoints one by one: refused requests, subcommands, the user picker, the rejection
//! dialog, the 3-second trigger window and Slack's rate limits.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use offboard_core::chat::ChatError;
use offboard_core::run::RunState;
use offboard_testkit::fixtures::{approved_run, crash_options, request, requester};
use serde_json::json;

#[tokio::test]
async fn forged_stale_and_replayed_requests_are_refused_and_nothing_runs() {
    let w = World::new().await;
    let trigger = w.slack.issue_trigger();
    let body = World::command_body("UADM1", "alice.able@contoso.com", &trigger);
    let now = Utc::now().timestamp();

    let forged = w.signed_with("/slack/commands", body.clone(), now, "not-the-secret").await;
    assert_eq!(forged.status(), 401);
    let stale = w.signed_with("/slack/commands", body.clone(), now - 301, SIGNING_SECRET).await;
    assert_eq!(stale.status(), 401);
    let unsigned = w.http.post(format!("{}/slack/commands", w.url)).body(body.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);

    let first = w.signed_with("/slack/commands", body.clone(), now, SIGNING_SECRET).await;
    assert_eq!(first.status(), 200);
    let replay = w.signed_with("/slack/commands", body.clone(), now, SIGNING_SECRET).await;
    assert_eq!(replay.status(), 401, "the same signed request again is a replay");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.slack.calls_of("views.open").len(), 1, "only the genuine request opened a view");

    // A forged click does nothing either.
    let svc = &w.svc;
    let run = svc.request(&requester(), request("alice.able@contoso.com", crash_options())).await.unwrap();
    let click = World::click("UADM2", &w.slack.issue_trigger(), "1.1", "approve", &format!("approve:{}:{}", run.id, run.plan_hash.0));
    let form = serde_urlencoded::to_string([("payload", click.to_string())]).unwrap();
    assert_eq!(w.signed_with("/slack/interactions", form, now, "not-the-secret").await.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.store.run(&run.id).await.unwrap().state, RunState::AwaitingApproval);
    assert!(w.store.approvals(&run.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn subcommands_answer_ephemerally() {
    let w = World::new().await;
    let reply = |r: reqwest::Response| async move { r.json::<serde_json::Value>().await.unwrap() };
    let help = reply(w.command("UREQ", "help").await).await;
    assert_eq!(help["response_type"], "ephemeral");
    assert!(help["text"].as_str().unwrap().contains("/offboard list"));

    let none = reply(w.command("UADM1", "list").await).await;
    assert_eq!(none["text"], "No runs yet.");
    let run = approved_run(&w.svc, "alice.able@contoso.com", crash_options()).await;
    let list = reply(w.command("UADM1", "list").await).await;
    assert!(list["text"].as_str().unwrap().contains(run.id.as_str()));

    let status = reply(w.command("UADM1", &format!("status {}", run.id)).await).await;
    assert!(status["text"].as_str().unwrap().contains("Disable sign-in"), "{status}");
    let cancelled = reply(w.command("UADM1", &format!("cancel {}", run.id)).await).await;
    assert!(cancelled["text"].as_str().unwrap().contains("cancelled"), "{cancelled}");
    let again = reply(w.command("UADM1", &format!("run {}", run.id)).await).await;
    assert!(again["text"].as_str().unwrap().starts_with("Not started"), "{again}");

    let viewer = reply(w.command("UVIEW", &format!("cancel {}", run.id)).await).await;
    assert!(viewer["text"].as_str().unwrap().starts_with("Not cancelled"), "{viewer}");
    let junk = reply(w.command("UREQ", "frobnicate").await).await;
    assert!(junk["text"].as_str().unwrap().contains("try \"help\""));
    let bad_id = reply(w.command("UREQ", "status ob-nope").await).await;
    assert!(bad_id["text"].as_str().unwrap().contains("run ids look like"), "{bad_id}");
}

#[tokio::test]
async fn the_user_picker_searches_the_directory() {
    let w = World::new().await;
    let payload = json!({ "type": "block_suggestion", "user": { "id": "UREQ" }, "action_id": "user", "block_id": "user", "value": "ali" });
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let r = w.signed("/slack/options", body).await;
    assert_eq!(r.status(), 200);
    let options: serde_json::Value = r.json().await.unwrap();
    let values: Vec<&str> = options["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap()).collect();
    assert!(values.contains(&"alice.able@contoso.com"), "{options}");
    assert!(options["options"][0]["text"]["text"].as_str().unwrap().chars().count() <= 75);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slack_user_group_can_hold_the_approver_role() {
    use offboard_core::domain::Role;
    use offboard_core::policy::{Principal, RoleBinding};
    let mut access = offboard_testkit::fixtures::access();
    access.bindings.push(RoleBinding { principal: Principal::Group { platform: "slack".into(), id: "S0ITADMINS".into() }, role: Role::Admin, tenants: None });
    let w = World::with_access(access).await;
    w.until(3, "the first background read", || !w.slack.calls_of("usergroups.list").is_empty()).await;
    w.slack.add_usergroup("S0ITADMINS", &["UGROUPADMIN"]);
    // The background read that would come within five minutes, now.
    w.app.memberships().refresh(&*w.api).await;
    let reads = w.slack.calls_of("usergroups.list").len();
    let run = w.svc.request(&requester(), request("alice.able@contoso.com", crash_options())).await.unwrap();
    let value = format!("approve:{}:{}", run.id, run.plan_hash.0);
    assert_eq!(w.interact(World::click("UOUTSIDER", &w.slack.issue_trigger(), "1.1", "approve", &value)).await.status(), 200);
    w.until(5, "the outsider's refusal", || w.slack.ephemeral().iter().any(|(_, u, _)| u == "UOUTSIDER")).await;
    assert_eq!(w.interact(World::click("UGROUPADMIN", &w.slack.issue_trigger(), "1.1", "approve", &value)).await.status(), 200);
    w.until(5, "the group member's approval", || futures_block(w.store.run(&run.id)).unwrap().state != RunState::AwaitingApproval).await;
    assert_eq!(w.slack.calls_of("usergroups.list").len(), reads, "no request reads the groups: the background does");
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test]
async fn a_rejection_asks_for_a_reason_and_is_decided_in_core() {
    let w = World::new().await;
    let run = w.svc.request(&requester(), request("alice.able@contoso.com", crash_options())).await.unwrap();
    let click = World::click("UADM1", &w.slack.issue_trigger(), "1.1", "reject", &format!("reject:{}", run.id));
    assert_eq!(w.interact(click).await.status(), 200);
    w.until(3, "the reason dialog", || !w.slack.views().is_empty()).await;
    let (id, view) = w.slack.views().remove(0);
    assert_eq!(view["private_metadata"], run.id.as_str());

    let empty: serde_json::Value = w.interact(World::submit("UADM1", &id, &view, json!({ "reason": { "reason": text(" ") } }))).await.json().await.unwrap();
    assert_eq!(empty["response_action"], "errors");
    let viewer: serde_json::Value = w.interact(World::submit("UVIEW", &id, &view, json!({ "reason": { "reason": text("no") } }))).await.json().await.unwrap();
    assert!(viewer["errors"]["reason"].as_str().unwrap().starts_with("Not rejected"), "{viewer}");
    let r = w.interact(World::submit("UADM1", &id, &view, json!({ "reason": { "reason": text("Wrong person: she is moving teams") } }))).await;
    assert_eq!(r.status(), 200);
    let rec = w.store.run(&run.id).await.unwrap();
    assert_eq!(rec.state, RunState::Rejected);
    assert_eq!(rec.reason.as_deref(), Some("Wrong person: she is moving teams"));
}

#[tokio::test]
async fn an_expired_trigger_and_a_rate_limit_are_reported_as_slack_reports_them() {
    let w = World::new().await;
    let trigger = w.slack.issue_trigger();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let err = w.api.open_view(&trigger, offboard_slack::blocks::notice_modal("x", "y")).await.unwrap_err();
    assert!(matches!(&err, ChatError::Permanent(c) if c == "expired_trigger_id"), "{err}");

    w.slack.rate_limit("chat.postMessage", 1);
    let err = w.api.post(APPROVALS, None, "hello", vec![]).await.unwrap_err();
    assert!(matches!(err, ChatError::RetryAfter(d) if d == Duration::from_secs(1)), "{err}");
    assert!(w.api.post(APPROVALS, None, "hello", vec![]).await.is_ok(), "the next call goes through");
    let bad = offboard_slack::api::SlackApi::new(&w.slack.api_url(), &offboard_core::secret::Secret::new("xoxb-wrong")).unwrap();
    assert!(matches!(bad.post(APPROVALS, None, "x", vec![]).await.unwrap_err(), ChatError::Permanent(c) if c == "invalid_auth"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_relays_for_one_workspace_post_each_message_once() {
    use offboard_core::chat::relay::Relay;
    use offboard_slack::surface::SlackSurface;
    use std::sync::Arc;
    let w = World::new().await;
    let templates = Arc::new(offboard_core::templates::Templates::load(None, &[]).unwrap());
    let relay = || {
        Arc::new(Relay::new(w.store.clone(), Arc::new(SlackSurface::new(w.api.clone())), "slack:T0FAKE", routes(), None, templates.clone(), w.clock.clone()))
    };
    let (a, b) = (relay(), relay());
    for user in ["alice.able@contoso.com", "jack.delegate@contoso.com", "frank.nomail@contoso.com"] {
        w.svc.request(&requester(), request(user, crash_options())).await.unwrap();
    }
    let drive = |r: Arc<Relay>| async move {
        for _ in 0..20 {
            let _ = r.drain().await;
        }
    };
    tokio::join!(drive(a), drive(b));
    let posted = w.slack.messages().into_iter().filter(|m| m.channel == APPROVALS && m.thread_ts.is_none()).count();
    assert_eq!(posted, 3, "one approval message per run, whichever process drives the relay");
}
