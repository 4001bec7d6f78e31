//! What people are told is what happened: presets that stay whole, lockouts that did not
//! take effect, access left behind, one run per person, users with awkward addresses, and
//! evidence that adds up. Each test drives the real Slack endpoints against the simulated
//! tenant and reads what the thread, the approval message, the report and the tenant say.

mod common;

use common::*;
use offboard_core::plan::StepKind;
use offboard_core::run::{RunState, StepState};
use serde_json::json;

fn user(upn: &str) -> serde_json::Value {
    json!({ "user": { "user": { "type": "external_select", "selected_option": { "value": upn } } } })
}

fn preset(name: &str, upn: &str) -> serde_json::Value {
    json!({
        "user": { "user": { "type": "external_select", "selected_option": { "value": upn } } },
        "preset": { "preset": selected(name) },
    })
}

fn reason() -> (usize, serde_json::Value) {
    (4, json!({ "reason": { "reason": text("Resigned") }, "ticket": { "ticket": text("INC-4711") } }))
}

fn posted(r: Requested) -> (offboard_slack::fake::Message, offboard_core::domain::RunId) {
    match r {
        Requested::Posted(m, run) => (m, run),
        Requested::Answered(t) => panic!("nothing was requested: {t}"),
    }
}

fn sim_user<R>(w: &World, upn: &str, f: impl FnOnce(&offboard_m365_sim::world::Tenant, &str) -> R) -> R {
    w.sim.tenant(CONTOSO, |t| f(t, &t.user_id(upn).expect("user in the tenant"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_preset_stays_whole_when_one_more_box_is_ticked() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    // hostile-exit, plus "Cancel meetings" ticked on the second page.
    let shown_access = offboard_core::request::Presets::builtin(&offboard_core::domain::PresetName::parse("hostile-exit").unwrap()).unwrap();
    assert!(!shown_access.cancel_meetings);
    let mut access: Vec<&str> = vec!["remove_admin_roles", "remove_groups", "remove_inbox_rules", "remove_mobile_devices"];
    access.extend(["remove_mailbox_permissions", "remove_calendar_permissions", "disable_forwarding", "cancel_meetings"]);
    let (message, run) = posted(
        w.request(
            "UREQ",
            "alice.able@contoso.com",
            &[(0, preset("hostile-exit", "alice.able@contoso.com")), (1, json!({ "access": { "access": chosen(&access) } })), reason()],
        )
        .await,
    );

    let rec = w.store.run(&run).await.unwrap();
    let kinds: Vec<StepKind> = rec.plan.steps.iter().map(|s| s.kind).collect();
    for k in [
        StepKind::DisableSignIn,
        StepKind::ResetPassword,
        StepKind::RemoveMfaMethods,
        StepKind::DeviceAction,
        StepKind::CancelMeetings,
        StepKind::RemoveLicences,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing from {kinds:?}");
    }
    assert_eq!(rec.approvals_needed, 2, "hostile-exit wipes devices: two approvers");
    assert_eq!(rec.plan.preset.as_deref(), Some("hostile-exit"));
    assert_eq!(rec.plan.deviations, vec!["added Cancel meetings the user organises".to_string()]);
    let text = message.blocks.to_string();
    assert!(text.contains("\"*Preset*\"") && text.contains("hostile-exit, changed: added Cancel meetings the user organises"), "{text}");

    assert_eq!(w.approve("UADM1", &run).await, None);
    assert_eq!(w.approve("UADM2", &run).await, None);
    w.finished(&run).await;
    assert!(!sim_user(&w, "alice.able@contoso.com", |t, id| t.users[id].account_enabled), "the preset's lockout ran");
    let report = w.report_text(&run).await;
    assert!(report.contains("hostile-exit") && report.contains("added Cancel meetings the user organises"), "{report}");
    assert!(report.contains("Two approvers") && report.contains("Wipe or retire devices is a high-risk step"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_synced_account_that_can_still_sign_in_is_never_green() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let (message, run) = posted(w.request("UREQ", "bob.synced@contoso.com", &[(0, user("bob.synced@contoso.com")), reason()]).await);
    // At plan time: which lockout steps the cloud cannot do, and what to do in AD.
    let preview = message.blocks.to_string();
    assert!(preview.contains("synced from on-premises AD") && preview.contains("disable the account and reset its password"), "{preview}");
    assert!(preview.contains("can still sign in"), "{preview}");

    assert_eq!(w.approve("UADM1", &run).await, None);
    let thread = w.finished(&run).await;
    let rec = w.store.run(&run).await.unwrap();
    assert_eq!(rec.state, RunState::Failed, "sign-in was planned to be blocked and is not");
    let steps = w.store.steps(&run).await.unwrap();
    let state = |k: StepKind| steps.iter().find(|s| s.key == k.key()).unwrap().state;
    assert_eq!(state(StepKind::DisableSignIn), StepState::Failed, "never skipped");
    assert_eq!(state(StepKind::ResetPassword), StepState::Failed);
    assert_eq!(state(StepKind::RevokeSessions), StepState::Succeeded, "what the cloud can cut, it cut");
    assert_eq!(state(StepKind::RemoveLicences), StepState::Succeeded, "cleaning up did not wait for AD");

    let closing = thread.last().unwrap();
    assert!(closing.text.starts_with("NOT LOCKED OUT: Bob Synced can still sign in"), "{}", closing.text);
    assert!(closing.text.contains("disable it in AD"), "{}", closing.text);
    assert!(!thread.iter().any(|m| m.text.to_lowercase().contains("skipped. synced")), "no lockout is called skipped");
    let report = w.report_text(&run).await;
    let first = report.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("Offboarding compliance report")).unwrap();
    assert_eq!(first, "NOT LOCKED OUT: Bob Synced can still sign in");
    assert!(report.contains("[FAILED] Disable sign-in"), "{report}");
    assert!(sim_user(&w, "bob.synced@contoso.com", |t, id| t.users[id].account_enabled), "the tenant agrees: still enabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_report_says_when_the_lockout_is_effective_without_contradicting_itself() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    // Jack has no MFA method besides the password: nothing to remove is the goal state.
    let (_, run) = posted(w.request("UREQ", "jack.delegate@contoso.com", &[(0, user("jack.delegate@contoso.com")), reason()]).await);
    assert_eq!(w.approve("UADM1", &run).await, None);
    w.finished(&run).await;
    let report = w.report_text(&run).await;
    assert!(report.contains("Effective by"), "{report}");
    assert!(!report.contains("Not effective") && !report.contains("Not certain"), "{report}");

    // No lockout planned: said as such, beside the outcome.
    let none = json!({ "lockout": { "lockout": chosen(&[]) }, "emergency": { "emergency": chosen(&[]) } });
    let (_, run) = posted(w.request("UREQ", "carol.group@contoso.com", &[(0, user("carol.group@contoso.com")), (1, none), reason()]).await);
    assert_eq!(w.approve("UADM1", &run).await, None);
    w.finished(&run).await;
    let report = w.report_text(&run).await;
    assert!(report.contains("No lockout was planned in this run"), "{report}");
    assert!(!report.contains("Not effective"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owned_groups_are_handed_over_and_never_orphaned() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let (message, run) = posted(w.request("UREQ", "oscar.owner@contoso.com", &[(0, user("oscar.owner@contoso.com")), reason()]).await);
    let preview = message.blocks.to_string();
    assert!(preview.contains("Product Team (team, only owner)") && preview.contains("Product Announcements (distribution list, only owner)"), "{preview}");
    assert!(preview.contains("Hand over ownership of 2 groups to mary.manager@contoso.com"), "{preview}");
    assert_eq!(w.approve("UADM1", &run).await, None);
    w.finished(&run).await;
    let owners = |name: &str| {
        w.sim.tenant(CONTOSO, |t| {
            let g = t.groups.values().find(|g| g.name == name).unwrap();
            g.owners.iter().map(|o| t.upn_of(o)).collect::<Vec<_>>()
        })
    };
    assert_eq!(owners("Product Team").unwrap(), vec!["mary.manager@contoso.com".to_string()]);
    assert_eq!(owners("Product Announcements").unwrap(), vec!["mary.manager@contoso.com".to_string()]);
    let report = w.report_text(&run).await;
    assert!(report.contains("Group ownership") && report.contains("mary.manager@contoso.com now owns"), "{report}");

    // Without the hand-over the plan says who keeps what, and the report lists it.
    let w = World::new().await;
    start_engine(&w, dir.path());
    let no_handover = json!({ "transfer_ownership": { "transfer_ownership": text("") } });
    let (message, run) = posted(w.request("UREQ", "oscar.owner@contoso.com", &[(0, user("oscar.owner@contoso.com")), (3, no_handover), reason()]).await);
    assert!(message.blocks.to_string().contains("Ownership stays with the leaver"), "{}", message.blocks);
    assert_eq!(w.approve("UADM1", &run).await, None);
    w.finished(&run).await;
    let report = w.report_text(&run).await;
    assert!(report.contains("owner of Product Team (team, only owner): ownership was not handed over"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manager_who_cannot_take_over_is_named_and_nothing_goes_to_them() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    // Pat's manager, Nina, is disabled.
    let (message, run) = posted(w.request("UREQ", "pat.orphan@contoso.com", &[(0, user("pat.orphan@contoso.com")), reason()]).await);
    let preview = message.blocks.to_string();
    assert!(preview.contains("Nina Left (nina.left@contoso.com), is disabled") && preview.contains("Choose another person"), "{preview}");
    assert_eq!(w.approve("UADM1", &run).await, None);
    w.finished(&run).await;
    let nina = w.sim.tenant(CONTOSO, |t| t.user_id("nina.left@contoso.com")).flatten().unwrap();
    sim_user(&w, "pat.orphan@contoso.com", |t, id| {
        assert!(!t.mailboxes[id].full_access.contains(&nina), "no access for a disabled manager");
        assert_ne!(t.mailboxes[id].auto_reply.status, "alwaysEnabled", "no reply naming a disabled manager");
    });
    assert_eq!(w.store.run(&run).await.unwrap().state, RunState::CompletedWithWarnings);

    // Uma has no manager: nobody is told "please contact your contact".
    let (message, run) = posted(w.request("UREQ", "uma.nomanager@contoso.com", &[(0, user("uma.nomanager@contoso.com")), reason()]).await);
    let preview = message.blocks.to_string();
    assert!(preview.contains("Uma Nomanager has no manager in the directory"), "{preview}");
    assert_eq!(w.approve("UADM1", &run).await, None);
    w.finished(&run).await;
    sim_user(&w, "uma.nomanager@contoso.com", |t, id| {
        let reply = &t.mailboxes[id].auto_reply;
        assert!(!reply.internal.contains("your contact") && !reply.external.contains("your contact"));
    });

    // Mary is being offboarded in the same batch: Alice's hand-over to her is held back.
    let (_, mary) = posted(w.request("UREQ", "mary.manager@contoso.com", &[(0, user("mary.manager@contoso.com")), reason()]).await);
    let (message, _) = posted(w.request("UREQ", "alice.able@contoso.com", &[(0, user("alice.able@contoso.com")), reason()]).await);
    assert!(message.blocks.to_string().contains(&format!("is being offboarded too (run {mary})")), "{}", message.blocks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_request_for_the_same_person_answers_with_the_open_run() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let (_, first) = posted(w.request("UREQ", "alice.able@contoso.com", &[(0, user("alice.able@contoso.com")), reason()]).await);
    match w.request("UADM1", "alice.able@contoso.com", &[(0, user("alice.able@contoso.com")), reason()]).await {
        Requested::Answered(t) => assert!(t.contains(&format!("run `{first}` (awaiting approval)")) && t.contains("was not requested again"), "{t}"),
        Requested::Posted(_, run) => panic!("a second run {run} was created"),
    }
    // By object id too: the person is the same.
    let id = w.sim.tenant(CONTOSO, |t| t.user_id("alice.able@contoso.com")).flatten().unwrap();
    let by_id = json!({ "user": { "user": { "type": "external_select", "selected_option": { "value": id } } }, "tenant": { "tenant": selected(CONTOSO) } });
    assert!(matches!(w.request("UADM1", &id, &[(0, by_id), reason()]).await, Requested::Answered(_)));
    assert_eq!(w.store.list_runs(None, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_done_rename_is_not_renamed_again() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let rename = json!({ "rename_template": { "rename_template": text("ZZ {{ displayName }}") } });
    let (message, run) = posted(w.request("UREQ", "hal.halfdone@contoso.com", &[(0, user("hal.halfdone@contoso.com")), (3, rename), reason()]).await);
    assert!(message.blocks.to_string().contains("Keep the display name \\\"ZZ Hal Halfdone\\\" (already renamed)"), "{}", message.blocks);
    assert_eq!(w.approve("UADM1", &run).await, None);
    w.finished(&run).await;
    assert_eq!(sim_user(&w, "hal.halfdone@contoso.com", |t, id| t.users[id].display_name.clone()), "ZZ Hal Halfdone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guests_and_apostrophes_are_offboarded_by_their_address() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    for upn in ["leo.partner_fabrikam.example#EXT#@contoso.onmicrosoft.com", "sean.o'brien@contoso.com"] {
        let (_, run) = posted(w.request("UREQ", upn, &[(0, user(upn)), reason()]).await);
        assert_eq!(w.approve("UADM1", &run).await, None);
        w.finished(&run).await;
        let state = w.store.run(&run).await.unwrap().state;
        assert!(matches!(state, RunState::Completed | RunState::CompletedWithWarnings), "{upn}: {state:?}");
        assert!(!sim_user(&w, upn, |t, id| t.users[id].account_enabled), "{upn} is locked out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_richest_leavers_report_names_what_was_left_and_shows_every_aspect_touched() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let access = chosen(&[
        "remove_admin_roles",
        "remove_groups",
        "remove_inbox_rules",
        "remove_mobile_devices",
        "remove_mailbox_permissions",
        "remove_calendar_permissions",
        "disable_forwarding",
        "cancel_meetings",
    ]);
    let rename = json!({ "rename_template": { "rename_template": text("ZZ {{ displayName }}") }, "mailbox": { "mailbox": chosen(&["convert_to_shared", "hide_from_gal", "remove_licences", "clear_immutable_id"]) } });
    let (_, run) = posted(
        w.request(
            "UREQ",
            "alice.able@contoso.com",
            &[(0, user("alice.able@contoso.com")), (1, json!({ "access": { "access": access } })), (3, rename), reason()],
        )
        .await,
    );
    assert_eq!(w.approve("UADM1", &run).await, None);
    w.finished(&run).await;
    let report = w.report_text(&run).await;
    // Every group left in place, by name, with its reason.
    assert!(report.contains("member of All Staff: dynamic membership: its rule decides"), "{report}");
    assert!(report.contains("member of HQ Staff (AD): synced from on-premises AD"), "{report}");
    // A before/after row for every aspect the plan touched.
    for aspect in [
        "Sign-in",
        "Sessions",
        "Password",
        "MFA methods",
        "Group memberships",
        "Inbox rules",
        "Mobile devices (ActiveSync)",
        "Rights on other mailboxes",
        "Access to other calendars",
        "Forwarding",
        "Meetings the user organises",
        "Intune devices",
        "Out of office",
        "Full access to the mailbox",
        "OneDrive",
        "Group ownership",
        "Address list",
        "Display name",
        "Mailbox type",
        "Licences",
        "Immutable ID",
    ] {
        let at = report.lines().position(|l| l.trim() == aspect).unwrap_or_else(|| panic!("no row for {aspect}:\n{report}"));
        let rows: Vec<&str> = report.lines().skip(at + 1).take(5).map(str::trim).collect();
        assert!(rows[0].starts_with("before:") && rows.iter().any(|r| r.starts_with("after:")), "{aspect}: {rows:?}");
    }
    // The mailbox's "after" is what the verify step confirmed, not the intermediate state.
    let at = report.lines().position(|l| l.trim() == "Mailbox type").unwrap();
    assert!(report.lines().skip(at).take(4).any(|l| l.contains("after:") && l.contains("Exchange reports SharedMailbox")), "{report}");
    // Licences are counted by SKU, the meetings by what is true, the request's words kept.
    assert!(report.contains("Licences reclaimed") && report.contains("SPE_E3, VISIOCLIENT"), "{report}");
    assert!(report.contains("all 2 planned meeting(s) are off the calendar"), "{report}");
    assert!(report.contains("Requester's reason") && report.contains("Resigned") && report.contains("INC-4711"), "{report}");
    assert!(!report.contains('`'), "no Markdown in the report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_on_premises_mailbox_is_said_as_such() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    start_engine(&w, dir.path());
    let (message, run) = posted(w.request("UREQ", "ivy.hybrid@contoso.com", &[(0, user("ivy.hybrid@contoso.com")), reason()]).await);
    let preview = message.blocks.to_string();
    assert!(preview.contains("the mailbox is hosted on-premises") && !preview.contains("the user has no mailbox"), "{preview}");
    assert_eq!(w.approve("UADM1", &run).await, None);
    w.finished(&run).await;
    let report = w.report_text(&run).await;
    assert!(report.contains("mailbox hosted on-premises") && !report.contains("has no mailbox"), "{report}");
}
