//! Who approves, as Slack shows it: the leaver's line manager, found in Slack by e-mail,
//! gets the approval message directly and their click counts; another employee's does not.

mod common;

use common::*;
use offboard_core::policy::{AdminTargets, ManagerApproves, TenantPolicy};
use offboard_core::run::RunState;
use offboard_slack::fake::Driver;
use serde_json::json;

const MARY: &str = "U0MARY";
const MARY_DM: &str = "D0MARY";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_line_manager_approves_from_a_direct_message() {
    let w = World::with_policy(TenantPolicy { admins: AdminTargets::Allow, line_manager: ManagerApproves::Alone, ..TenantPolicy::default() }).await;
    w.slack.add_member(MARY, "Mary.Manager@contoso.com");
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let user = json!({ "user": { "user": { "type": "external_select", "selected_option": { "value": "alice.able@contoso.com" } } } });
    let reason = json!({ "reason": { "reason": text("Resigned") } });
    let Requested::Posted(message, run) = w.request("UREQ", "alice.able@contoso.com", &[(0, user), (4, reason)]).await else {
        panic!("nothing was requested");
    };

    // The approvals channel's message says who may approve and how the manager was found.
    let said = offboard_slack::fake::to_terminal(&message.blocks);
    assert!(said.contains("May approve") && said.contains("Mary Manager, the line manager (found in Slack by e-mail)"), "{said}");
    let rec = w.store.run(&run).await.unwrap();
    assert_eq!(rec.line_manager.as_ref().map(|m| m.identities.clone()), Some(vec![format!("slack:{MARY}")]));

    // The same message, directly to Mary.
    let direct = || w.slack.messages().into_iter().find(|m| m.channel == MARY_DM && m.blocks.to_string().contains(run.as_str()));
    w.until(10, "the manager's direct message", || direct().is_some()).await;
    let dm = direct().unwrap();
    assert_eq!(offboard_slack::fake::to_terminal(&dm.blocks), said);
    assert_eq!(w.slack.messages().iter().filter(|m| m.channel.starts_with('D')).count(), 1, "nobody else is messaged directly");

    // Another employee, with no role, clicks Approve: refused, privately.
    assert!(w.approve("U0BOB", &run).await.expect("refused").contains("no role"));
    assert!(w.store.approvals(&run).await.unwrap().is_empty());

    // Mary clicks Approve in her direct message: it counts.
    let value = dm.blocks.as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap()["elements"][0]["value"].as_str().unwrap().to_string();
    let r = w.interact(Driver::click(MARY, &w.slack.issue_trigger(), MARY_DM, &dm.ts, "approve", &value)).await;
    assert_eq!(r.status(), 200);
    let mut approvals = Vec::new();
    for _ in 0..250 {
        approvals = w.store.approvals(&run).await.unwrap();
        if !approvals.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(approvals.iter().map(|a| a.approver.as_str()).collect::<Vec<_>>(), [format!("slack:{MARY}")]);
    if rec.approvals_needed == 1 {
        let state = w.store.run(&run).await.unwrap().state;
        assert!(matches!(state, RunState::Approved | RunState::Running | RunState::Completed), "{state:?}");
        // Both copies of the message show the decision.
        w.until(10, "both messages updated", || {
            w.slack.messages().iter().filter(|m| m.thread_ts.is_none() && m.blocks.to_string().contains(run.as_str()) && m.edits > 0).count() == 2
        })
        .await;
    } else {
        assert_eq!(w.store.run(&run).await.unwrap().state, RunState::AwaitingApproval);
    }
}
