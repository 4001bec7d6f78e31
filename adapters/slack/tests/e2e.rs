//! The whole loop over HTTP: a signed slash command opens the wizard, four pages are
//! submitted, the plan is posted for approval, an unauthorised click and a self-approval are
//! refused, an admin approves, the run's thread shows every step against the simulated
//! tenant, the signed PDF is uploaded into the thread, and the tenant ends as planned.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use offboard_core::chat::relay::Relay;
use offboard_core::domain::RunId;
use offboard_core::engine::{RetryPolicy, Worker, WorkerConfig};
use offboard_core::run::RunState;
use offboard_core::templates::Templates;
use offboard_report::{Evidence, ReportKey, RunReports, Verdict};
use offboard_slack::surface::SlackSurface;
use serde_json::{Value as Json, json};

fn approvals_message(w: &World) -> Option<offboard_slack::fake::Message> {
    w.slack.messages().into_iter().find(|m| m.channel == APPROVALS && m.thread_ts.is_none())
}

fn button(m: &offboard_slack::fake::Message, action: &str) -> Option<String> {
    m.blocks.as_array()?.iter().find(|b| b["type"] == "actions")?["elements"].as_array()?.iter().find(|e| e["action_id"] == action)?["value"]
        .as_str()
        .map(String::from)
}

async fn submit_page(w: &World, view_id: &str, values: Json) -> Json {
    let view = w.slack.view(view_id).unwrap();
    let r = w.interact(World::submit("UADM1", view_id, &view, values)).await;
    assert_eq!(r.status(), 200);
    let body: Json = r.json().await.unwrap();
    if body["response_action"] == "update" {
        // Slack replaces the view in place, keeping its id.
        w.slack.put_view(view_id, body["view"].clone());
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_offboarding_loop_runs_in_slack() {
    let _ = tracing_subscriber::fmt().with_env_filter("offboard_core=warn,offboard_slack=warn").with_test_writer().try_init();
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = ReportKey::generate();
    let public = key.public();
    let reports = Arc::new(RunReports { evidence: Arc::new(Evidence::new(key, dir.path())), store: w.store.clone(), links: None });
    let templates = Arc::new(Templates::load(None, &[]).unwrap());
    let surface = Arc::new(SlackSurface::new(w.api.clone()));
    let relay = Relay::new(w.store.clone(), surface, "slack:T0FAKE", routes(), Some(reports), templates, w.clock.clone());
    tokio::spawn(async move { relay.run_until(Duration::from_millis(30), std::future::pending::<()>()).await });
    let config = WorkerConfig {
        poll: Duration::from_millis(20),
        retry: RetryPolicy { initial: Duration::from_millis(50), ..RetryPolicy::default() },
        ..WorkerConfig::default()
    };
    let worker = Worker::new(w.store.clone(), w.m365.clone(), w.clock.clone(), config);
    tokio::spawn(async move { worker.run_until_stopped(std::future::pending::<()>()).await });

    // The slash command opens the wizard at once, with the user filled in.
    // An admin asks, so that the self-approval below is refused for being the requester's.
    let r = w.command("UADM1", "alice.able@contoso.com").await;
    assert_eq!(r.status(), 200);
    w.until(3, "the wizard to open", || !w.slack.views().is_empty()).await;
    let (view_id, page0) = w.slack.views().remove(0);
    // The first page carries the channel it was opened from, which the run records.
    assert_eq!(page0["private_metadata"], "page:0:C0IT");
    let user_el = page0["blocks"].as_array().unwrap().iter().find(|b| b["block_id"] == "user").unwrap();
    assert_eq!(user_el["element"]["initial_option"]["value"], "alice.able@contoso.com");

    let body =
        submit_page(&w, &view_id, json!({ "user": { "user": { "type": "external_select", "selected_option": { "value": "alice.able@contoso.com" } } } })).await;
    // The answers so far travel in the modal, so any process may take the next page.
    assert_eq!(body["view"]["private_metadata"], "page:1", "the draft is kept in the store, not in the view: {body}");
    submit_page(
        &w,
        &view_id,
        json!({
            "lockout": { "lockout": chosen(&["disable_sign_in", "revoke_sessions", "reset_password", "remove_mfa"]) },
            "access": { "access": chosen(&["remove_groups", "remove_inbox_rules", "disable_forwarding"]) },
            "device_action": { "device_action": selected("retire") },
        }),
    )
    .await;
    submit_page(
        &w,
        &view_id,
        json!({
            "oof_internal": { "oof_internal": text("{{ user.display_name }} has left. Please contact {{ manager.name }}.") },
            "mailbox_access": { "mailbox_access": text("manager") },
            "handover_options": { "handover_options": chosen(&["automap"]) },
        }),
    )
    .await;
    submit_page(&w, &view_id, json!({ "mailbox": { "mailbox": chosen(&["convert_to_shared", "hide_from_gal", "remove_licences"]) } })).await;
    // A bad time comes back as an error on its field, and the page stays open.
    let body = submit_page(&w, &view_id, json!({ "schedule_at": { "schedule_at": text("tomorrow") }, "reason": { "reason": text("Resigned") } })).await;
    assert_eq!(body["response_action"], "errors");
    assert!(body["errors"]["schedule_at"].as_str().unwrap().contains("YYYY-MM-DD"));
    let body = submit_page(&w, &view_id, json!({ "reason": { "reason": text("Resigned") }, "ticket": { "ticket": text("INC-1") } })).await;
    assert!(body["view"]["blocks"][0]["text"]["text"].as_str().unwrap().contains("Looking up"));
    w.until(20, "the wizard to confirm", || w.slack.view(&view_id).unwrap()["blocks"][0]["text"]["text"].as_str().unwrap_or("").contains("posted in")).await;

    // The plan preview, with buttons, in the approvals channel.
    w.until(10, "the approval message", || approvals_message(&w).is_some_and(|m| button(&m, "approve").is_some())).await;
    let preview = approvals_message(&w).unwrap();
    let approve = button(&preview, "approve").unwrap();
    let preview_text = preview.blocks.to_string();
    assert!(preview_text.contains("Alice") && preview_text.contains("Disable sign-in") && preview_text.contains("Retire"), "{preview_text}");
    let run_id = RunId::parse(approve.split(':').nth(1).unwrap()).unwrap();

    // An unauthorised click and a self-approval are refused, ephemerally.
    for (who, why) in [("UVIEW", "viewer"), ("UADM1", "requester")] {
        let r = w.interact(World::click(who, &w.slack.issue_trigger(), &preview.ts, "approve", &approve)).await;
        assert_eq!(r.status(), 200);
        w.until(5, &format!("the refusal of the {why}"), || w.slack.ephemeral().iter().any(|(_, u, t)| u == who && t.starts_with("Not approved"))).await;
    }
    assert_eq!(w.store.run(&run_id).await.unwrap().state, RunState::AwaitingApproval);

    // Authorised approvals release the run.
    assert!(w.slack.ephemeral().iter().any(|(_, u, t)| u == "UADM1" && t.contains("you requested this offboarding")), "{:?}", w.slack.ephemeral());
    assert_eq!(w.store.run(&run_id).await.unwrap().approvals_needed, 1);
    let r = w.interact(World::click("UADM2", &w.slack.issue_trigger(), &preview.ts, "approve", &approve)).await;
    assert_eq!(r.status(), 200);
    w.until(60, "the run to finish", || {
        let state = futures_block(w.store.run(&run_id)).unwrap().state;
        state.is_terminal() || state == RunState::NeedsAttention
    })
    .await;
    let run = w.store.run(&run_id).await.unwrap();
    assert!(matches!(run.state, RunState::Completed | RunState::CompletedWithWarnings), "{:?}", run.state);

    // The thread: the status message edited to the end, the PDF, the closing text.
    w.until(20, "the report in the thread", || w.slack.files().iter().any(|f| f.shared_to.is_some())).await;
    w.until(10, "the closing message", || {
        w.slack.messages().iter().any(|m| m.thread_ts.as_deref() == Some(preview.ts.as_str()) && m.text.contains("COMPLETED"))
    })
    .await;
    let thread: Vec<_> = w.slack.messages().into_iter().filter(|m| m.thread_ts.as_deref() == Some(preview.ts.as_str())).collect();
    let status = &thread[0];
    assert!(status.edits >= 1, "the status message is edited, not re-posted");
    let steps = w.store.steps(&run_id).await.unwrap();
    let final_status = status.blocks.to_string();
    for s in &steps {
        let title = offboard_core::plan::StepKind::from_key(&s.key).unwrap().title();
        assert!(final_status.contains(title), "{title} missing from the status message");
    }
    assert!(!final_status.contains(":hourglass_flowing_sand:") && !final_status.contains(":white_small_square:"), "{final_status}");
    let file = w.slack.files().into_iter().find(|f| f.shared_to.is_some()).unwrap();
    assert_eq!(file.shared_to, Some((APPROVALS.to_string(), preview.ts.clone())));
    assert_eq!(file.name, format!("{run_id}.pdf"));
    assert!(matches!(offboard_report::sign::verify(&file.bytes, &[public]), Verdict::Valid { .. }));
    let decided = approvals_message(&w).unwrap();
    assert!(button(&decided, "approve").is_none() && decided.blocks.to_string().contains("Approved"), "the buttons give way to the decision");

    // Only methods whose scopes the manifest declares were called.
    for c in w.slack.calls() {
        assert!(c.method == "upload" || offboard_slack::api::METHOD_SCOPES.iter().any(|(m, _)| *m == c.method), "undeclared method {}", c.method);
    }

    // Refusals were audited; the tenant ends as the plan said.
    let audit = w.store.audit_entries(0, 10_000).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "approval.refused").count(), 2);
    let alice = w.sim.tenant(CONTOSO, |t| t.user_id("alice.able@contoso.com")).flatten().unwrap();
    w.sim
        .tenant(CONTOSO, |t| {
            let u = &t.users[&alice];
            assert!(!u.account_enabled);
            assert!(u.password_changed.is_some());
            assert_eq!(u.auth_methods.len(), 1, "only the password method is left");
            assert!(t.licence_states(&alice).is_empty(), "licences reclaimed");
            let mb = &t.mailboxes[&alice];
            assert_eq!(mb.kind, offboard_m365_sim::world::MailboxKind::Shared);
            assert!(mb.hidden && mb.rules.is_empty() && mb.forwarding_smtp.is_none());
            assert_eq!(mb.auto_reply.status, "alwaysEnabled");
            assert!(t.managed.values().filter(|m| m.user == alice).all(|m| m.state == "retirePending"));
        })
        .unwrap();
}

/// Polls a store future from the synchronous `until` closure.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
