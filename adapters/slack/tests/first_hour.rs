//! What a new admin meets in Slack: errors shown on the page they belong to (and the last
//! page never a dead end), user groups read in the background whatever Slack answers, a
//! Slack API that never answers, and the approval message's people and decisions.

mod common;

use std::time::{Duration, Instant};

use common::*;
use offboard_slack::fake::Driver;
use serde_json::{Value as Json, json};

async fn open_wizard(w: &World, who: &str, user: &str) -> String {
    let before = w.slack.views().len();
    assert_eq!(w.command(who, user).await.status(), 200);
    w.until(3, "the wizard", || w.slack.views().len() > before).await;
    w.slack.views().remove(before).0
}

/// Submits the page the view shows, with `changes`; the answer's JSON.
async fn submit(w: &World, who: &str, view_id: &str, changes: Json) -> Json {
    let view = w.slack.view(view_id).unwrap();
    let body: Json = w.interact(Driver::submit(who, view_id, &view, Driver::shown(&view, changes))).await.json().await.unwrap();
    if body["response_action"] == "update" {
        w.slack.put_view(view_id, body["view"].clone());
    }
    body
}

fn page_of(view: &Json) -> usize {
    view["private_metadata"].as_str().and_then(|m| m.strip_prefix("page:")).and_then(|n| n.parse().ok()).unwrap()
}

/// The warnings a page shows under its fields, by field (`""`: the page).
fn warnings(view: &Json) -> Vec<(String, String)> {
    let blocks = view["blocks"].as_array().unwrap();
    let mut out = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        if b["type"] == "context" {
            let text = b["elements"][0]["text"].as_str().unwrap_or("").to_string();
            if text.starts_with(":warning:") {
                let field = blocks[..i].iter().rev().find(|p| p["type"] == "input").and_then(|p| p["block_id"].as_str()).unwrap_or("").to_string();
                out.push((field, text));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_who_does_not_exist_is_said_on_the_first_page() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let view = open_wizard(&w, "UREQ", "nobody@contoso.com").await;
    let t = Instant::now();
    let body = submit(&w, "UREQ", &view, json!({})).await;
    assert_eq!(body["response_action"], "update", "the answer does not wait for the directory: {body}");
    assert!(t.elapsed() < Duration::from_secs(3));
    w.until(5, "the first page again", || w.slack.view(&view).is_some_and(|v| page_of(&v) == 0)).await;
    let shown = w.slack.view(&view).unwrap();
    assert_eq!(
        warnings(&shown),
        vec![("user".to_string(), ":warning: no user nobody@contoso.com in contoso.com: check the address, or type a name to search".to_string())]
    );

    // Corrected, the wizard goes on, and the request is made.
    let body =
        submit(&w, "UREQ", &view, json!({ "user": { "user": { "type": "external_select", "selected_option": { "value": "alice.able@contoso.com" } } } })).await;
    assert_eq!(body["response_action"], "update", "{body}");
    for page in 1..5 {
        let change = if page == 4 { json!({ "reason": { "reason": text("Resigned") } }) } else { json!({}) };
        let body = submit(&w, "UREQ", &view, change).await;
        assert_ne!(body["response_action"], "errors", "page {page}: {body}");
    }
    w.until(10, "the plan", || w.slack.messages().iter().any(|m| m.channel == APPROVALS)).await;
    let posted = w.slack.messages().into_iter().find(|m| m.channel == APPROVALS).unwrap();
    assert!(posted.blocks.to_string().contains("alice.able@contoso.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_that_contradict_each_other_are_refused_on_their_page() {
    let w = World::new().await;
    let view = open_wizard(&w, "UREQ", "alice.able@contoso.com").await;
    submit(&w, "UREQ", &view, json!({})).await;
    // "Disable existing forwarding" (page 2, from the preset) with a new forward (page 3).
    submit(&w, "UREQ", &view, json!({})).await;
    let body = submit(&w, "UREQ", &view, json!({ "forward_to": { "forward_to": text("mary.manager@contoso.com") } })).await;
    assert_eq!(body["response_action"], "errors", "{body}");
    assert!(body["errors"]["forward_to"].is_string(), "{body}");
    // A schedule in the past and a time zone that does not exist, on the last page.
    submit(&w, "UREQ", &view, json!({ "forward_to": { "forward_to": text("") } })).await;
    submit(&w, "UREQ", &view, json!({})).await;
    let body = submit(
        &w,
        "UREQ",
        &view,
        json!({ "schedule_at": { "schedule_at": text("2020-01-01 09:00") }, "schedule_tz": { "schedule_tz": text("Europe/London") }, "reason": { "reason": text("Left") } }),
    )
    .await;
    assert_eq!(body["response_action"], "errors", "{body}");
    assert!(body["errors"]["schedule_at"].as_str().unwrap().contains("past"), "{body}");
    let body = submit(
        &w,
        "UREQ",
        &view,
        json!({ "schedule_at": { "schedule_at": text("2030-01-01 09:00") }, "schedule_tz": { "schedule_tz": text("Mars/Olympus") }, "reason": { "reason": text("Left") } }),
    )
    .await;
    assert_eq!(body["response_action"], "errors", "{body}");
    assert!(body["errors"]["schedule_tz"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_page_comes_back_when_microsoft_fails_and_submits_again() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let view = open_wizard(&w, "UREQ", "alice.able@contoso.com").await;
    for _ in 0..4 {
        submit(&w, "UREQ", &view, json!({})).await;
    }
    w.sim.set_faults(offboard_m365_sim::FaultRates { server_error: 1.0, ..Default::default() });
    let body = submit(&w, "UREQ", &view, json!({ "reason": { "reason": text("Resigned") } })).await;
    assert_eq!(body["response_action"], "update");
    w.until(30, "the last page again", || w.slack.view(&view).is_some_and(|v| v["private_metadata"] == "page:4")).await;
    let shown = w.slack.view(&view).unwrap();
    let said = warnings(&shown);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].1.contains("submit again to retry"), "{said:?}");
    assert!(shown.to_string().contains("Resigned"), "the answers are still there");

    w.sim.set_faults(offboard_m365_sim::FaultRates::default());
    submit(&w, "UREQ", &view, json!({})).await;
    w.until(10, "the plan", || w.slack.messages().iter().any(|m| m.channel == APPROVALS)).await;
}

/// Roles bound to a group, in a workspace that may not list groups, then rate-limited:
/// requests never call Slack for them, and the refresher waits as Slack says.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_groups_are_read_in_the_background_and_failures_are_remembered() {
    use offboard_core::domain::Role;
    use offboard_core::policy::{Principal, RoleBinding};
    let mut access = offboard_testkit::fixtures::access();
    access.bindings.push(RoleBinding { principal: Principal::Group { platform: "slack".into(), id: "S0ITADMINS".into() }, role: Role::Admin, tenants: None });
    let w = World::with_access(access).await;
    w.until(3, "the first read", || !w.slack.calls_of("usergroups.list").is_empty()).await;
    w.slack.refuse("usergroups.list", "plan_upgrade_required");
    let pause = w.app.memberships().refresh(&*w.api).await;
    assert!(pause >= Duration::from_secs(60), "a refused read is not repeated at once: {pause:?}");
    assert!(
        matches!(w.app.memberships().health(), offboard_slack::memberships::Health::Failing { ref problem, .. } if problem.contains("plan_upgrade_required"))
    );
    let reads = w.slack.calls_of("usergroups.list").len();
    for i in 0..20 {
        assert_eq!(w.command("UREQ", "help").await.status(), 200, "command {i}");
    }
    assert_eq!(w.slack.calls_of("usergroups.list").len(), reads, "no request reads the groups");

    // Rate-limited: the pause is Slack's Retry-After.
    w.slack.rate_limit("usergroups.list", 1);
    let pause = w.app.memberships().refresh(&*w.api).await;
    assert_eq!(pause, Duration::from_secs(1));
}

/// A Slack API that accepts connections and never answers: every signed command is still
/// answered at once, and the calls made off the request path give up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slack_that_never_answers_does_not_hold_a_request() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}/api", listener.local_addr().unwrap());
    let api = offboard_slack::api::SlackApi::new(&silent, &offboard_core::secret::Secret::new(BOT_TOKEN)).unwrap();
    let t = Instant::now();
    let r = api.auth_test().await;
    assert!(matches!(r, Err(offboard_core::chat::ChatError::Retryable(ref m)) if m.contains("did not answer")), "{r:?}");
    assert!(t.elapsed() >= offboard_slack::api::CALL_TIMEOUT && t.elapsed() < offboard_slack::api::CALL_TIMEOUT * 2, "{:?}", t.elapsed());

    let w = World::with_silent_slack(&silent).await;
    for user in ["UREQ", "UADM1", "UREQ"] {
        let t = Instant::now();
        let r = w.command(user, "alice.able@contoso.com").await;
        assert_eq!(r.status(), 200);
        assert!(t.elapsed() < Duration::from_secs(3), "answered within Slack's 3 s: {:?}", t.elapsed());
    }
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_approval_message_mentions_people_and_says_who_decided() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let run = match w.request("UREQ", "alice.able@contoso.com", &[(4, json!({ "reason": { "reason": text("Resigned") } }))]).await {
        Requested::Posted(_, r) => r,
        Requested::Answered(t) => panic!("{t}"),
    };
    let updates = || w.slack.calls_of("chat.update").len();
    let message = w.approval_message(&run).unwrap();
    assert!(message.blocks.to_string().contains("<@UREQ>"), "the requester is mentioned: {}", message.blocks);
    // A refused click changes nothing, so the message is not edited.
    let before = updates();
    assert!(w.approve("UVIEW", &run).await.is_some());
    assert!(w.approve("UREQ", &run).await.is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(updates(), before, "refused clicks edit nothing");

    // Rejected: by whom, in their words; the expiry is gone.
    let m = w.approval_message(&run).unwrap();
    let value = m.blocks.as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap()["elements"][1]["value"].as_str().unwrap().to_string();
    let views = w.slack.views().len();
    w.interact(World::click("UADM1", &w.slack.issue_trigger(), &m.ts, "reject", &value)).await;
    w.until(5, "the reason dialog", || w.slack.views().len() > views).await;
    let (dialog, shown) = w.slack.views().remove(views);
    w.interact(World::submit("UADM1", &dialog, &shown, json!({ "reason": { "reason": text("Wrong person") } }))).await;
    w.until(5, "the decision on the message", || w.approval_message(&run).is_some_and(|m| m.blocks.to_string().contains("Rejected"))).await;
    let decided = w.approval_message(&run).unwrap().blocks.to_string();
    assert!(decided.contains("<@UADM1>") && decided.contains("Wrong person"), "{decided}");
    assert!(!decided.contains("expires"), "{decided}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_thread_shows_durations_that_mean_something() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let run = match w.request("UREQ", "alice.able@contoso.com", &[(4, json!({ "reason": { "reason": text("Resigned") } }))]).await {
        Requested::Posted(_, r) => r,
        Requested::Answered(t) => panic!("{t}"),
    };
    assert_eq!(w.approve("UADM1", &run).await, None);
    let thread = w.finished(&run).await;
    let status = thread[0].blocks.to_string();
    assert!(!status.contains("0.0 s") && !status.contains("(0 s)"), "{status}");
}
