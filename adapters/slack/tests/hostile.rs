//! What a hostile requester, a workspace member with no role, or someone replaying signed
//! requests can do through the real Slack endpoints: templates typed into the wizard, text
//! said outside the organisation, the people search, status probes and replays.

mod common;

use std::time::{Duration, Instant};

use common::*;
use offboard_core::secret::Secret;
use offboard_slack::fake::Driver;
use serde_json::{Value as Json, json};

async fn open_wizard(w: &World, who: &str, user: &str) -> String {
    let before = w.slack.views().len();
    assert_eq!(w.command(who, user).await.status(), 200);
    w.until(3, "the wizard", || w.slack.views().len() > before).await;
    w.slack.views().remove(before).0
}

async fn submit(w: &World, who: &str, view_id: &str, changes: Json) -> Json {
    let view = w.slack.view(view_id).unwrap();
    let body: Json = w.interact(Driver::submit(who, view_id, &view, Driver::shown(&view, changes))).await.json().await.unwrap();
    if body["response_action"] == "update" {
        w.slack.put_view(view_id, body["view"].clone());
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn template_code_typed_into_the_wizard_is_refused_on_its_field_at_once() {
    let w = World::new().await;
    let view = open_wizard(&w, "UREQ", "alice.able@contoso.com").await;
    submit(&w, "UREQ", &view, json!({ "user": { "user": { "type": "external_select", "selected_option": { "value": "alice.able@contoso.com" } } } })).await;
    submit(&w, "UREQ", &view, json!({})).await;
    let loop_text = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
    let t = Instant::now();
    let body = submit(
        &w,
        "UREQ",
        &view,
        json!({ "oof_internal": { "oof_internal": text(loop_text) }, "oof_external": { "oof_external": text("{{ \"x\" * 100000000 }}") } }),
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(1), "answered in {:?}", t.elapsed());
    assert_eq!(body["response_action"], "errors", "{body}");
    assert!(body["errors"]["oof_internal"].as_str().unwrap().contains("only placeholders"), "{body}");
    assert!(body["errors"]["oof_external"].as_str().unwrap().contains("is not a placeholder"), "{body}");
    // Nothing was stored, and the service still answers everyone else.
    assert!(w.store.list_runs(None, 10).await.unwrap().is_empty());
    assert_eq!(w.command("UADM1", "help").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_is_said_outside_is_shown_verbatim_and_needs_two_approvers() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let external = "Please wire outstanding invoices to IBAN DE89 3704 0044 0532 0130 00.";
    let changes = [
        (0, json!({ "user": { "user": { "type": "external_select", "selected_option": { "value": "alice.able@contoso.com" } } } })),
        (2, json!({ "oof_external": { "oof_external": text(external) }, "forward_to": { "forward_to": text("billing@partner.example") } })),
        (1, json!({ "access": { "access": chosen(&["remove_groups"]) } })),
        (4, json!({ "reason": { "reason": text("Resigned") } })),
    ];
    let (message, run) = match w.request("UREQ", "alice.able@contoso.com", &changes).await {
        Requested::Posted(m, r) => (m, r),
        Requested::Answered(t) => panic!("{t}"),
    };
    let shown = message.blocks.to_string();
    assert!(shown.contains(external), "the approver reads the external reply verbatim: {shown}");
    assert!(shown.contains("Forward mail to billing@partner.example"), "{shown}");
    assert!(shown.contains("Two approvers") && shown.contains("the external out-of-office reply was written for this request"), "{shown}");
    assert!(shown.contains("every new mail is forwarded outside the organisation, to billing@partner.example"), "{shown}");
    assert_eq!(w.store.run(&run).await.unwrap().approvals_needed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_with_no_role_gets_no_wizard_no_search_and_no_status() {
    let w = World::new().await;
    let run = w
        .svc
        .request(
            &offboard_testkit::fixtures::requester(),
            offboard_testkit::fixtures::request("alice.able@contoso.com", offboard_testkit::fixtures::crash_options()),
        )
        .await
        .unwrap();
    let views = w.slack.views().len();
    let r: Json = w.command("UNOBODY", "alice.able@contoso.com").await.json().await.unwrap();
    assert!(r["text"].as_str().unwrap().contains("no role that may request"), "{r}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.slack.views().len(), views, "no wizard opened");

    // Slack sends each keystroke as its own request; the typed text differs each time.
    let search = |user: &str, n: usize| json!({ "type": "block_suggestion", "user": { "id": user }, "action_id": "user", "block_id": "user", "value": format!("ali{}", " ".repeat(n)) });
    let found: Json = w.interact_path(offboard_slack::server::OPTIONS_PATH, search("UNOBODY", 0)).await;
    assert_eq!(found["options"], json!([]), "no one's directory for a member with no role");
    // A requester's searches are limited per minute.
    let mut answered = 0;
    for n in 0..offboard_core::service::SEARCHES_PER_MINUTE + 5 {
        let found: Json = w.interact_path(offboard_slack::server::OPTIONS_PATH, search("UREQ", n)).await;
        if !found["options"].as_array().unwrap().is_empty() {
            answered += 1;
        }
    }
    assert_eq!(answered, offboard_core::service::SEARCHES_PER_MINUTE);

    // Status: the same answer whether or not the run exists, and the probe is audited.
    let existing: Json = w.command("UNOBODY", &format!("status {}", run.id)).await.json().await.unwrap();
    let missing: Json = w.command("UNOBODY", "status ob-0000000000").await.json().await.unwrap();
    let scrub = |v: &Json, id: &str| v["text"].as_str().unwrap().replace(id, "ID");
    assert_eq!(scrub(&existing, run.id.as_str()), scrub(&missing, "ob-0000000000"), "{existing} / {missing}");
    assert!(!existing.to_string().contains("contoso"), "no customer is named: {existing}");
    w.until(3, "the audited refusals", || {
        let audit = futures_block(w.store.audit_entries(0, 1000)).unwrap();
        audit.iter().any(|e| e.action == "status.refused" && e.actor == "slack:UNOBODY")
            && audit.iter().any(|e| e.action == "request.refused" && e.actor == "slack:UNOBODY")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_is_refused_however_spelt_and_whichever_process_receives_it() {
    let w = World::new().await;
    let body = World::command_body("UADM1", "help", "trigger-replay");
    let ts = chrono::Utc::now().timestamp();
    let sig = offboard_slack::signature::sign(&Secret::new(SIGNING_SECRET), ts, body.as_bytes());
    let send = |url: String, sig: String, body: String| async move {
        reqwest::Client::new()
            .post(format!("{url}{}", offboard_slack::server::COMMANDS_PATH))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(send(w.url.clone(), sig.clone(), body.clone()).await, 200);
    let shouted = format!("v0={}", sig.trim_start_matches("v0=").to_ascii_uppercase());
    assert_eq!(send(w.url.clone(), shouted, body.clone()).await, 401, "the same signature in upper case");
    // A second process on the same store.
    let other = offboard_slack::server::SlackApp::new(w.svc.clone(), w.api.clone(), w.m365.clone(), Secret::new(SIGNING_SECRET), routes(), w.clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = other.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    assert_eq!(send(url, sig, body).await, 401, "an exact replay to another process");
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
