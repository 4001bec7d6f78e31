//! Every step against the simulated tenant over HTTP: the normal case, the spec's edge
//! cases, and Microsoft's failures. Each test checks the simulator's state afterwards.

mod common;

use std::time::Duration;

use common::*;
use offboard_core::engine::{Reconciled, StepError, StepExecutor};
use offboard_core::plan::StepKind;
use offboard_core::request::{Delegate, DeleteUser, DeviceAction, ForwardTarget, ForwardTo, MailboxAccess, Options, OutOfOffice};
use offboard_core::run::StepOutcome;
use offboard_m365_sim::FaultRates;

fn only(f: impl FnOnce(&mut Options)) -> Options {
    let mut o = Options::default();
    f(&mut o);
    o
}

#[tokio::test]
async fn lockout_blocks_revokes_resets_and_strips_methods() {
    let w = World::new().await;
    let alice = w.discover(ALICE).await;
    let o = only(|o| {
        o.disable_sign_in = true;
        o.revoke_sessions = true;
        o.reset_password = true;
        o.remove_mfa = true;
    });
    assert!(succeeded(w.step(&alice, o.clone(), StepKind::DisableSignIn).await).contains("accountEnabled is false"));
    succeeded(w.step(&alice, o.clone(), StepKind::RevokeSessions).await);
    let verified = succeeded(w.step(&alice, o.clone(), StepKind::ResetPassword).await);
    let m = succeeded(w.step(&alice, o, StepKind::RemoveMfaMethods).await);
    assert!(m.contains("removed 4 method(s)"), "{m}");
    let id = w.user_id(ALICE);
    w.sim_user(ALICE, |t, id| {
        let u = &t.users[id];
        assert!(!u.account_enabled);
        assert_eq!(u.auth_methods.len(), 1, "only the password method stays");
        assert!(u.auth_methods[0].odata_type.ends_with("passwordAuthenticationMethod"));
    });
    assert_eq!(w.sim.count("user.password_reset", &id), 1);
    assert_eq!(w.sim.count("user.sessions_revoked", &id), 1);
    // The password is nowhere: not in the outcome, not in the ledger.
    let ledger = serde_json::to_string(&w.sim.ledger()).unwrap();
    assert!(!ledger.contains("password\":\"") && !verified.to_lowercase().contains("password:"), "{verified}");
}

#[tokio::test]
async fn a_synced_user_keeps_access_until_ad_acts_and_the_steps_say_so() {
    let w = World::new().await;
    let bob = w.discover("bob.synced@contoso.com").await;
    let o = only(|o| {
        o.disable_sign_in = true;
        o.reset_password = true;
        o.clear_immutable_id = true;
        o.rename_template = Some("ZZ {{ displayName }}".into());
    });
    // A lockout Entra refuses is a failure that says the person can still sign in.
    for (k, still) in [(StepKind::DisableSignIn, "can still sign in"), (StepKind::ResetPassword, "old password still works")] {
        match w.step(&bob, o.clone(), k).await {
            Err(StepError::Permanent { message, .. }) => assert!(message.contains("on-premises AD") && message.contains(still), "{k:?}: {message}"),
            other => panic!("{k:?}: {other:?}"),
        }
    }
    match w.step(&bob, o.clone(), StepKind::RenameDisplayName).await {
        Ok(StepOutcome::Skipped { reason, warning: true }) => assert!(reason.contains("on-premises AD"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(skipped(w.step(&bob, o.clone(), StepKind::ClearImmutableId).await).contains("synced"));
    w.sim_user("bob.synced@contoso.com", |t, id| assert!(t.users[id].account_enabled && t.users[id].immutable_id.is_some()));
    // Once AD has disabled the account and synced, the step confirms it.
    let id = w.user_id("bob.synced@contoso.com");
    w.sim.tenant_mut(CONTOSO, |t| t.users.get_mut(&id).unwrap().account_enabled = false).unwrap();
    assert!(succeeded(w.step(&bob, o, StepKind::DisableSignIn).await).contains("disabled in on-premises AD"));
}

#[tokio::test]
async fn an_admin_loses_active_and_eligible_roles() {
    let w = World::new().await;
    let dave = w.discover("dave.admin@contoso.com").await;
    let o = only(|o| {
        o.disable_sign_in = true;
        o.remove_admin_roles = true;
    });
    succeeded(w.step(&dave, o.clone(), StepKind::DisableSignIn).await);
    let v = succeeded(w.step(&dave, o.clone(), StepKind::RemoveAdminRoles).await);
    assert!(v.contains("Global Administrator") && v.contains("Exchange Administrator (eligible)"), "{v}");
    w.sim_user("dave.admin@contoso.com", |t, id| assert!(t.roles.iter().all(|r| r.principal != id)));
    // Run again (a retry after a lost reply): nothing left, still a success.
    succeeded(w.step(&dave, o, StepKind::RemoveAdminRoles).await);
}

#[tokio::test]
async fn groups_are_left_through_graph_or_exchange_and_dynamic_or_synced_ones_stay() {
    let w = World::new().await;
    let alice = w.discover(ALICE).await;
    let o = only(|o| o.remove_groups = true);
    let plan = w.plan(&alice, o.clone());
    let preview = &plan.steps[0].preview;
    assert!(preview.contains("All Staff (dynamic membership: its rule decides)") && preview.contains("HQ Staff (AD) (synced from on-premises AD"), "{preview}");
    let v = succeeded(w.step(&alice, o.clone(), StepKind::RemoveGroups).await);
    assert!(v.contains("Sales DL (via Exchange)") && v.contains("Finance Approvers (via Exchange)"), "{v}");
    w.sim_user(ALICE, |t, id| {
        let member: Vec<&str> = t.groups.values().filter(|g| g.members.contains(id)).map(|g| g.name.as_str()).collect();
        assert_eq!(member, ["All Staff", "HQ Staff (AD)"].iter().copied().filter(|n| member.contains(n)).collect::<Vec<_>>());
        assert_eq!(member.len(), 2, "{member:?}");
    });
    assert!(w.sim.ledger().iter().any(|e| e.kind == "group.member_removed" && e.detail["via"] == "exchange"));
    // Already gone: a second run is a success (404s and MemberNotFound are the goal state).
    succeeded(w.step(&alice, o, StepKind::RemoveGroups).await);
}

#[tokio::test]
async fn mailbox_clean_up_removes_rules_devices_rights_and_forwarding() {
    let w = World::new().await;
    let alice = w.discover(ALICE).await;
    let o = only(|o| {
        o.remove_inbox_rules = true;
        o.remove_mobile_devices = true;
        o.remove_mailbox_permissions = true;
        o.remove_calendar_permissions = true;
        o.disable_forwarding = true;
        o.hide_from_gal = true;
    });
    for k in [
        StepKind::RemoveInboxRules,
        StepKind::RemoveMobileDevices,
        StepKind::RemoveMailboxPermissions,
        StepKind::RemoveCalendarPermissions,
        StepKind::DisableForwarding,
        StepKind::HideFromGal,
    ] {
        succeeded(w.step(&alice, o.clone(), k).await);
    }
    let info = w.user_id("info@contoso.com");
    let mary = w.user_id("mary.manager@contoso.com");
    w.sim_user(ALICE, |t, id| {
        let mb = &t.mailboxes[id];
        assert!(mb.rules.is_empty() && mb.mobile_devices.is_empty() && mb.hidden);
        assert!(mb.forwarding_smtp.is_none() && mb.forwarding_address.is_none());
        assert!(!t.mailboxes[&info].send_as.contains(id));
        assert!(!t.mailboxes[&mary].send_on_behalf.contains(id));
        assert!(t.mailboxes[&mary].calendar_permissions.iter().all(|p| p.user.as_deref() != Some(id)));
        // Others' rights on other mailboxes are untouched.
        assert!(!t.mailboxes[&mary].send_on_behalf.is_empty());
    });
}

#[tokio::test]
async fn hand_over_sets_replies_forward_and_access_to_the_manager() {
    let w = World::new().await;
    let alice = w.discover(ALICE).await;
    let o = only(|o| {
        o.out_of_office = Some(OutOfOffice {
            internal: "{{ user.display_name }} has left. Contact {{ manager.name }}.".into(),
            external: "Please contact {{ company }}.".into(),
        });
        o.forward_to = Some(ForwardTo { target: ForwardTarget::Manager, keep_copy: true });
        o.mailbox_access = Some(MailboxAccess { delegates: vec![Delegate::Manager], automap: true });
        o.onedrive_access = vec![Delegate::Manager];
    });
    for k in [StepKind::SetOutOfOffice, StepKind::ForwardMail, StepKind::GrantMailboxAccess, StepKind::GrantOneDriveAccess] {
        succeeded(w.step(&alice, o.clone(), k).await);
    }
    let mary = w.user_id("mary.manager@contoso.com");
    w.sim_user(ALICE, |t, id| {
        let mb = &t.mailboxes[id];
        assert_eq!(mb.auto_reply.status, "alwaysEnabled");
        assert_eq!(mb.auto_reply.internal, "Alice Able has left. Contact Mary Manager.");
        assert_eq!(mb.auto_reply.external, "Please contact Contoso.");
        assert_eq!(mb.forwarding_address.as_deref(), Some(mary.as_str()));
        assert!(mb.forwarding_smtp.is_none(), "the new forward replaces the leaver's own");
        assert!(mb.deliver_and_forward);
        assert!(mb.full_access.contains(&mary));
        assert!(t.drives[id].shared_with.iter().any(|(e, r)| e == "mary.manager@contoso.com" && r == &vec!["write".to_string()]));
    });
}

#[tokio::test]
async fn meetings_are_cancelled_once_and_devices_retired_once() {
    let w = World::new().await;
    let alice = w.discover(ALICE).await;
    let o = only(|o| {
        o.cancel_meetings = true;
        o.device_action = Some(DeviceAction::Retire);
    });
    let v = succeeded(w.step(&alice, o.clone(), StepKind::CancelMeetings).await);
    assert!(v.contains("all 2 planned meeting(s) are off the calendar"), "{v}");
    succeeded(w.step(&alice, o.clone(), StepKind::DeviceAction).await);
    let id = w.user_id(ALICE);
    assert_eq!(w.sim.count("event.cancelled", &id), 2);
    assert_eq!(w.sim.count_kind("managed_device.retired"), 2);
    // A second execution finds nothing left to send.
    succeeded(w.step(&alice, o.clone(), StepKind::CancelMeetings).await);
    succeeded(w.step(&alice, o, StepKind::DeviceAction).await);
    assert_eq!(w.sim.count("event.cancelled", &id), 2);
    assert_eq!(w.sim.count_kind("managed_device.retired"), 2);
}

#[tokio::test]
async fn licences_wait_for_a_shared_mailbox_and_inherited_ones_go_by_leaving_the_group() {
    let w = World::new().await;
    let carol = w.discover("carol.group@contoso.com").await;
    let o = only(|o| {
        o.convert_to_shared = true;
        o.remove_licences = true;
        o.remove_groups = true;
    });
    let plan = w.plan(&carol, o.clone());
    let lic = plan.steps.iter().find(|s| s.kind == StepKind::RemoveLicences).unwrap();
    assert!(lic.preview.contains("inherited SPE_E3 via group Licensed Users E3"), "{}", lic.preview);
    // Before the conversion lands, the guard refuses.
    match w.step(&carol, o.clone(), StepKind::RemoveLicences).await {
        Err(StepError::Permanent { message, .. }) => assert!(message.contains("not shared"), "{message}"),
        other => panic!("{other:?}"),
    }
    succeeded(w.step(&carol, o.clone(), StepKind::ConvertToShared).await);
    let v = succeeded(w.step(&carol, o.clone(), StepKind::VerifyShared).await);
    assert!(v.contains("SharedMailbox"), "{v}");
    let v = succeeded(w.step(&carol, o, StepKind::RemoveLicences).await);
    assert!(v.contains("removed VISIOCLIENT") && v.contains("left licensing group Licensed Users E3"), "{v}");
    w.sim_user("carol.group@contoso.com", |t, id| {
        assert!(t.licence_states(id).is_empty(), "{:?}", t.licence_states(id));
        assert!(!t.mailboxes[id].disconnected, "the shared mailbox survives");
    });
    assert_eq!(w.sim.count_kind("mailbox.disabled"), 0);
}

/// The last step of a run: what it costs is the tail of every bulk offboarding.
#[tokio::test]
async fn licences_held_directly_go_with_their_read_back_in_one_batch() {
    let w = World::new().await;
    let jack = w.discover("jack.delegate@contoso.com").await;
    let o = only(|o| {
        o.convert_to_shared = true;
        o.remove_licences = true;
    });
    succeeded(w.step(&jack, o.clone(), StepKind::ConvertToShared).await);
    succeeded(w.step(&jack, o.clone(), StepKind::VerifyShared).await);
    let before = w.sim.stats();
    let v = succeeded(w.step(&jack, o, StepKind::RemoveLicences).await);
    let after = w.sim.stats();
    assert!(v.contains("removed SPE_E3") && v.ends_with("1 licence(s) reclaimed"), "{v}");
    w.sim_user("jack.delegate@contoso.com", |t, id| assert!(t.licence_states(id).is_empty(), "{:?}", t.licence_states(id)));
    // The guard (Exchange) and the read of what is assigned, then one batch: the removal
    // and its read-back. No membership read: no licensing group to leave.
    assert_eq!(after.exchange_requests - before.exchange_requests, 1, "the guard");
    assert_eq!(after.graph_requests - before.graph_requests, 2, "the read, then one batch");
    assert_eq!(after.graph_batch_items - before.graph_batch_items, 2, "the removal and its read-back");
}

#[tokio::test]
async fn verification_gives_up_clearly_when_conversion_never_lands() {
    let mut settings = fast_settings();
    settings.verify.deadline = Duration::from_millis(600);
    let w = World::with(offboard_m365_sim::SimConfig { conversion_delay: Duration::from_secs(3600), ..Default::default() }, settings).await;
    let jack = w.discover("jack.delegate@contoso.com").await;
    let o = only(|o| o.convert_to_shared = true);
    succeeded(w.step(&jack, o.clone(), StepKind::ConvertToShared).await);
    match w.step(&jack, o, StepKind::VerifyShared).await {
        Err(StepError::Permanent { message, .. }) => assert!(message.contains("still reports UserMailbox") && message.contains("licences stay"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_converting_mailbox_is_looked_at_again_later_not_waited_on() {
    let w = World::with(offboard_m365_sim::SimConfig { conversion_delay: Duration::from_millis(400), ..Default::default() }, fast_settings()).await;
    let jack = w.discover("jack.delegate@contoso.com").await;
    let o = only(|o| o.convert_to_shared = true);
    succeeded(w.step(&jack, o.clone(), StepKind::ConvertToShared).await);
    // One look answers at once: "not yet", with when to look again, and nothing slept.
    let plan = w.plan(&jack, o.clone());
    let started = std::time::Instant::now();
    match w.m365.execute(&w.context(&jack, &plan, StepKind::VerifyShared)).await {
        Err(StepError::NotYet { look_again_in, waiting_for }) => {
            assert_eq!(look_again_in, Duration::from_millis(50), "the first look comes after `first`");
            assert!(waiting_for.contains("Exchange to report the mailbox shared (it reports UserMailbox"), "{waiting_for}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(400), "a look does not wait for the conversion");
    let (outcome, looks) = w.step_looks(&jack, o, StepKind::VerifyShared).await.unwrap();
    assert!(looks >= 1, "the conversion took a while: {looks}");
    let v = succeeded(Ok(outcome));
    assert!(v.contains(&format!("Exchange reports SharedMailbox (after {} check(s)", looks + 1)), "{v}");
}

#[tokio::test]
async fn a_step_whose_budget_is_spent_goes_back_to_the_queue_unsent() {
    // Two Intune writes per 20 s, and a step waits at most 200 ms for room.
    let mut settings = fast_settings();
    settings.limits.intune_writes_per_20s = 2.0;
    settings.call.max_budget_wait = Duration::from_millis(200);
    let w = World::with(offboard_m365_sim::SimConfig::default(), settings).await;
    let o = only(|o| o.device_action = Some(DeviceAction::Retire));
    let alice = w.discover(ALICE).await;
    succeeded(w.step(&alice, o.clone(), StepKind::DeviceAction).await);
    assert_eq!(w.sim.count_kind("managed_device.retired"), 2, "Alice's two devices take the whole budget");
    let mut waits = Vec::new();
    for upn in ["bob.synced@contoso.com", "dave.admin@contoso.com"] {
        let user = w.discover(upn).await;
        let plan = w.plan(&user, o.clone());
        let started = std::time::Instant::now();
        match w.m365.execute(&w.context(&user, &plan, StepKind::DeviceAction)).await {
            Err(StepError::Paced { look_again_in, waiting_for }) => {
                assert_eq!(waiting_for, "room under Intune's write limit for this tenant");
                waits.push(look_again_in);
            }
            other => panic!("{upn}: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2), "sent back at once, not after the 10 s the budget needs");
    }
    assert_eq!(w.sim.count_kind("managed_device.retired"), 2, "nothing was sent for Bob or Dave");
    // One write refills in 10 s; the second caller sent away comes back after the first.
    assert!(waits[0] > Duration::from_secs(9) && waits[0] <= Duration::from_secs(10), "{waits:?}");
    assert!(waits[1] >= waits[0] + Duration::from_secs(9), "{waits:?}");
}

#[tokio::test]
async fn a_lockout_that_would_wait_long_for_writes_says_so_from_the_queue() {
    // Two identity writes per 150 s, scaled to 1.5 s: one every 0.75 s once spent.
    let mut settings = fast_settings();
    settings.limits.identity_writes_per_150s = 2.0;
    settings.limits.time_scale = 0.01;
    settings.call.max_lockout_wait = Duration::from_millis(100);
    let w = World::with(offboard_m365_sim::SimConfig::default(), settings).await;
    let o = only(|o| {
        o.disable_sign_in = true;
        o.revoke_sessions = true;
    });
    let alice = w.discover(ALICE).await;
    succeeded(w.step(&alice, o.clone(), StepKind::DisableSignIn).await);
    succeeded(w.step(&alice, o.clone(), StepKind::RevokeSessions).await);
    let jack = w.discover("jack.delegate@contoso.com").await;
    let dave = w.discover("dave.admin@contoso.com").await;
    let mut cx = w.context(&jack, &w.plan(&jack, o.clone()), StepKind::DisableSignIn);
    let started = std::time::Instant::now();
    let look_again_in = match w.m365.execute(&cx).await {
        Err(StepError::Paced { look_again_in, waiting_for }) => {
            assert_eq!(waiting_for, "room under Entra ID's write limit for this tenant");
            look_again_in
        }
        other => panic!("{other:?}"),
    };
    assert!(look_again_in > Duration::from_millis(100), "{look_again_in:?}");
    assert!(started.elapsed() < look_again_in, "sent back, not kept waiting: {:?}", started.elapsed());
    w.sim_user("jack.delegate@contoso.com", |t, id| assert!(t.users[id].account_enabled, "nothing was sent"));
    // Back from the queue, it waits its turn in the worker.
    cx.polls = 1;
    assert!(succeeded(w.m365.execute(&cx).await).contains("accountEnabled is false"));
    // An emergency's lockout is never sent back: it waits for the write.
    let mut cx = w.context(&dave, &w.plan(&dave, o), StepKind::DisableSignIn);
    cx.emergency = true;
    assert!(succeeded(w.m365.execute(&cx).await).contains("accountEnabled is false"));
}

#[tokio::test]
async fn no_mailbox_and_no_onedrive_are_skips_with_reasons() {
    let w = World::new().await;
    let frank = w.discover("frank.nomail@contoso.com").await;
    let o = only(|o| {
        o.hide_from_gal = true;
        o.remove_inbox_rules = true;
        o.convert_to_shared = true;
    });
    for k in [StepKind::HideFromGal, StepKind::RemoveInboxRules, StepKind::ConvertToShared, StepKind::VerifyShared] {
        assert_eq!(skipped(w.step(&frank, o.clone(), k).await), "the user has no mailbox");
    }
    let gina = w.discover("gina.noonedrive@contoso.com").await;
    assert_eq!(skipped(w.step(&gina, only(|o| o.onedrive_access = vec![Delegate::Manager]), StepKind::GrantOneDriveAccess).await), "the user has no OneDrive");
}

#[tokio::test]
async fn large_mailboxes_keep_their_licences() {
    let w = World::new().await;
    let hank = w.discover("hank.large@contoso.com").await;
    let r = skipped(w.step(&hank, only(|o| o.remove_licences = true), StepKind::RemoveLicences).await);
    assert!(r.contains("archive") || r.contains("50 GB"), "{r}");
}

#[tokio::test]
async fn rename_clear_immutable_id_and_delete() {
    let w = World::new().await;
    let oscar = w.discover("oscar.owner@contoso.com").await;
    w.sim.tenant_mut(CONTOSO, |t| {
        let id = t.user_id("oscar.owner@contoso.com").unwrap();
        t.users.get_mut(&id).unwrap().immutable_id = Some("T3NjYXI=".into());
    });
    let oscar_now = w.discover("oscar.owner@contoso.com").await;
    assert_eq!(oscar.display_name, "Oscar Øwner-Łukasz");
    let o = only(|o| {
        o.rename_template = Some("ZZ {{ displayName }}".into());
        o.clear_immutable_id = true;
    });
    succeeded(w.step(&oscar_now, o.clone(), StepKind::RenameDisplayName).await);
    succeeded(w.step(&oscar_now, o, StepKind::ClearImmutableId).await);
    let o = only(|o| o.delete_user = Some(DeleteUser { defer_days: 0 }));
    succeeded(w.step(&oscar_now, o.clone(), StepKind::DeleteUser).await);
    let id = oscar.id.to_string();
    w.sim.tenant(CONTOSO, |t| {
        let d = &t.deleted[&id];
        assert_eq!(d.user.display_name, "ZZ Oscar Øwner-Łukasz");
        assert!(d.user.immutable_id.is_none());
    });
    // Deleting again finds it in the recycle bin: success, not an error.
    succeeded(w.step(&oscar_now, o, StepKind::DeleteUser).await);
    assert_eq!(w.sim.count("user.deleted", &id), 1);
}

/// Runs a step as the runner does: retryable errors are retried, and an at-most-once step
/// that may have been sent is read back first.
async fn until_done(w: &World, cx: &offboard_core::engine::StepContext) -> StepOutcome {
    let mut maybe_sent = false;
    for _ in 0..8 {
        if maybe_sent && cx.step.class == offboard_core::plan::StepClass::AtMostOnce {
            match w.m365.reconcile(cx).await {
                Reconciled::Applied(o) => return o,
                Reconciled::NotApplied => {}
                Reconciled::Unknown(r) => panic!("read-back could not decide: {r}"),
            }
        }
        match w.m365.execute(cx).await {
            Ok(o) => return o,
            Err(StepError::Permanent { message, .. }) => panic!("{message}"),
            Err(StepError::NotSent(_)) => {}
            Err(_) => maybe_sent = true,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the step did not finish")
}

#[tokio::test]
async fn server_errors_then_success() {
    let w = World::new().await;
    let alice = w.discover(ALICE).await;
    w.sim.set_faults(FaultRates { server_error: 0.35, seed: 7, ..FaultRates::default() });
    let o = only(|o| {
        o.disable_sign_in = true;
        o.remove_groups = true;
        o.remove_mfa = true;
        o.hide_from_gal = true;
    });
    let plan = w.plan(&alice, o);
    for k in [StepKind::DisableSignIn, StepKind::RemoveGroups, StepKind::RemoveMfaMethods, StepKind::HideFromGal] {
        let out = until_done(&w, &w.context(&alice, &plan, k)).await;
        assert!(matches!(out, StepOutcome::Succeeded { .. }), "{k:?}: {out:?}");
    }
    assert!(w.sim.stats().injected_faults > 0, "faults were injected");
    w.sim_user(ALICE, |t, id| assert!(!t.users[id].account_enabled && t.mailboxes[id].hidden));
}

#[tokio::test]
async fn a_reply_lost_after_the_change_is_read_back_not_resent() {
    let w = World::new().await;
    let alice = w.discover(ALICE).await;
    let o = only(|o| {
        o.reset_password = true;
        o.device_action = Some(DeviceAction::Wipe);
        o.disable_sign_in = true;
    });
    let plan = w.plan(&alice, o);
    let id = w.user_id(ALICE);
    let cx = w.context(&alice, &plan, StepKind::ResetPassword);
    w.sim.set_faults(FaultRates { drop_after_apply: 1.0, seed: 1, ..FaultRates::default() });
    let first = w.m365.execute(&cx).await;
    assert!(matches!(first, Err(StepError::Retryable(_))), "the reply was lost: {first:?}");
    w.sim.set_faults(FaultRates::default());
    match w.m365.reconcile(&cx).await {
        Reconciled::Applied(StepOutcome::Succeeded { verified, .. }) => assert!(verified.contains("read-back"), "{verified}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.sim.count("user.password_reset", &id), 1, "read back, never re-sent");

    // Two devices, replies lost at random: whatever lands is read back, never re-sent,
    // so each device is wiped exactly once.
    let cx = w.context(&alice, &plan, StepKind::DeviceAction);
    w.sim.set_faults(FaultRates { drop_after_apply: 0.4, seed: 11, ..FaultRates::default() });
    let out = until_done(&w, &cx).await;
    w.sim.set_faults(FaultRates::default());
    assert!(matches!(out, StepOutcome::Succeeded { .. }), "{out:?}");
    assert_eq!(w.sim.count_kind("managed_device.wiped"), 2, "each device wiped exactly once");
    assert!(w.sim.stats().resets > 0, "replies were lost");
    // An idempotent step simply repeats.
    w.sim.set_faults(FaultRates { drop_after_apply: 0.5, seed: 3, ..FaultRates::default() });
    let out = until_done(&w, &w.context(&alice, &plan, StepKind::DisableSignIn)).await;
    assert!(matches!(out, StepOutcome::Succeeded { .. }), "{out:?}");
}

/// The user's whole footprint in the tenant, minus what a repeated lockout legitimately
/// moves (the session cut-off and the password's change time).
fn footprint(w: &World, upn: &str) -> serde_json::Value {
    w.sim_user(upn, |t, id| {
        let mut user = serde_json::to_value(&t.users[id]).unwrap();
        user.as_object_mut().unwrap().remove("sessions_valid_from");
        user.as_object_mut().unwrap().remove("password_changed");
        let groups: Vec<(String, bool, bool)> = t.groups.values().map(|g| (g.name.clone(), g.members.contains(id), g.owners.contains(id))).collect();
        let others: Vec<serde_json::Value> = t
            .mailboxes
            .iter()
            .filter(|(owner, _)| owner.as_str() != id)
            .map(|(owner, m)| {
                serde_json::json!([
                    owner,
                    m.full_access.contains(id),
                    m.send_as.contains(id),
                    m.send_on_behalf.contains(id),
                    m.calendar_permissions.iter().filter(|p| p.user.as_deref() == Some(id)).count()
                ])
            })
            .collect();
        let devices: Vec<(String, &str)> = t.managed.values().filter(|d| d.user == id).map(|d| (d.name.clone(), d.state)).collect();
        let mut others = others;
        others.sort_by_key(|v| v.to_string());
        serde_json::json!({
            "user": user, "mailbox": t.mailboxes.get(id), "drive": t.drives.get(id), "groups": groups, "others": others, "devices": devices,
            "roles": t.roles.iter().filter(|r| r.principal == id).count(), "licences": t.licence_states(id),
        })
    })
}

#[tokio::test]
async fn every_step_run_again_on_its_own_result_changes_nothing() {
    let w = World::new().await;
    let mut o = offboard_core::request::Presets::builtin(&offboard_core::domain::PresetName::parse("standard-leaver").unwrap()).unwrap();
    o.remove_mailbox_permissions = true;
    o.remove_calendar_permissions = true;
    o.cancel_meetings = true;
    o.clear_immutable_id = true;
    o.rename_template = Some("ZZ {{ displayName }}".into());
    for pass in 1..=2 {
        // Each pass discovers and plans afresh, as a second request would.
        let alice = w.discover(ALICE).await;
        let plan = w.plan(&alice, o.clone());
        let before = footprint(&w, ALICE);
        for s in &plan.steps {
            match w.step(&alice, o.clone(), s.kind).await {
                Ok(StepOutcome::Succeeded { .. } | StepOutcome::Skipped { .. }) => {}
                other => panic!("pass {pass}: {:?} {other:?}", s.kind),
            }
        }
        if pass == 2 {
            assert_eq!(footprint(&w, ALICE), before, "the second pass changed the tenant");
        }
    }
    w.sim_user(ALICE, |t, id| assert_eq!(t.users[id].display_name, "ZZ Alice Able", "renamed once, not twice"));
}

#[tokio::test]
async fn licences_are_counted_by_sku_however_many_ways_they_are_held() {
    let w = World::new().await;
    // SPE_E3 held directly and through two licensing groups; VISIOCLIENT directly.
    let carol = w.user_id("carol.group@contoso.com");
    w.sim
        .tenant_mut(CONTOSO, |t| {
            let e3 = t.sku_by_part("SPE_E3").unwrap().id.clone();
            t.users.get_mut(&carol).unwrap().direct_licences.push(e3.clone());
            let mut second = t.groups.values().find(|g| g.name == "Licensed Users E3").unwrap().clone();
            second.id = "7f0e0a52-0000-4000-8000-00000000e3e3".into();
            second.name = "Licensed Users E3 (Finance)".into();
            second.members = [carol.clone()].into();
            t.groups.insert(second.id.clone(), second);
        })
        .unwrap();
    let snapshot = w.discover("carol.group@contoso.com").await;
    assert_eq!(snapshot.licences.len(), 4, "four assignment paths");
    let o = only(|o| {
        o.convert_to_shared = true;
        o.remove_licences = true;
    });
    succeeded(w.step(&snapshot, o.clone(), StepKind::ConvertToShared).await);
    succeeded(w.step(&snapshot, o.clone(), StepKind::VerifyShared).await);
    let v = succeeded(w.step(&snapshot, o, StepKind::RemoveLicences).await);
    assert!(v.ends_with("2 licence(s) reclaimed"), "two SKUs, not four paths: {v}");
}

#[tokio::test]
async fn cancelled_meetings_are_counted_by_what_is_true_after_a_lost_answer() {
    let w = World::new().await;
    let alice = w.discover(ALICE).await;
    assert_eq!(alice.mailbox.as_ref().unwrap().organised_meetings.len(), 2);
    let id = w.user_id(ALICE);
    // An earlier attempt cancelled the first meeting, and its answer was lost.
    w.sim
        .tenant_mut(CONTOSO, |t| {
            let first = &alice.mailbox.as_ref().unwrap().organised_meetings[0].id;
            let e = t.mailboxes.get_mut(&id).unwrap().events.iter_mut().find(|e| &e.id == first).unwrap();
            e.cancelled = true;
            e.deleted = true;
        })
        .unwrap();
    let v = succeeded(w.step(&alice, only(|o| o.cancel_meetings = true), StepKind::CancelMeetings).await);
    assert!(v.starts_with("all 2 planned meeting(s) are off the calendar"), "{v}");
}
