use super::*;
use crate::request::*;
use crate::testing::rich_user;
use chrono::Utc;

fn valid(options: Options) -> ValidRequest {
    Request::now(crate::domain::TenantId::parse("contoso.com").unwrap(), "alice@contoso.com", options).validate(Utc::now()).unwrap()
}

fn standard() -> Options {
    Presets::builtin(&crate::domain::PresetName::parse("standard-leaver").unwrap()).unwrap()
}

fn key(k: StepKind) -> StepKey {
    k.key()
}

#[test]
fn order_follows_the_spec() {
    let plan = build(&valid(standard()), &rich_user(), PlanRules::default());
    let s = |k: StepKind| plan.step(&key(k)).unwrap();
    assert!(s(StepKind::RevokeSessions).after.contains(&key(StepKind::DisableSignIn)));
    assert_eq!(s(StepKind::ResetPassword).after, vec![key(StepKind::DisableSignIn)]);
    assert!(s(StepKind::RemoveGroups).after.contains(&key(StepKind::ResetPassword)));
    assert_eq!(s(StepKind::VerifyShared).after, vec![key(StepKind::ConvertToShared)]);
    assert!(s(StepKind::RemoveLicences).after.contains(&key(StepKind::VerifyShared)));
    assert!(s(StepKind::ConvertToShared).after.contains(&key(StepKind::SetOutOfOffice)));
    for k in [StepKind::RemoveInboxRules, StepKind::CancelMeetings, StepKind::ForwardMail, StepKind::GrantMailboxAccess] {
        assert!(plan.step(&key(k)).is_none() || s(StepKind::ConvertToShared).after.contains(&key(k)), "the mailbox is converted after {k:?}");
    }
    assert!(s(StepKind::ConvertToShared).after.contains(&key(StepKind::ResetPassword)));
    for k in [StepKind::RemoveGroups, StepKind::DeviceAction, StepKind::RemoveAdminRoles] {
        assert!(!s(k).after.is_empty() && !s(StepKind::ConvertToShared).after.contains(&key(k)), "a conversion does not wait for {k:?}");
    }
    // Dependencies always point backwards, so the list is a topological order.
    for (i, step) in plan.steps.iter().enumerate() {
        for dep in &step.after {
            let j = plan.steps.iter().position(|x| &x.key == dep).unwrap();
            assert!(j < i, "{} depends on later {}", step.key, dep);
        }
    }
}

#[test]
fn delete_is_last_and_deferred() {
    let mut o = standard();
    o.delete_user = Some(DeleteUser { defer_days: 14 });
    o.clear_immutable_id = true;
    let plan = build(&valid(o), &rich_user(), PlanRules::default());
    let last = plan.steps.last().unwrap();
    assert_eq!(last.kind, StepKind::DeleteUser);
    assert_eq!(last.after.len(), plan.steps.len() - 1);
    assert_eq!(last.defer_days, 14);
    assert!(plan.needs_two_approvers());
}

#[test]
fn previews_name_what_changes() {
    let plan = build(&valid(standard()), &rich_user(), PlanRules::default());
    let groups = plan.step(&key(StepKind::RemoveGroups)).unwrap();
    assert_eq!(
        groups.preview,
        "Remove from 3 groups; 3 left: All Staff (dynamic membership: its rule decides), Sales-AD (synced from on-premises AD: remove the membership there), Licensing-BI (licensing group: left by the licence step)"
    );
    let lic = plan.step(&key(StepKind::RemoveLicences)).unwrap();
    assert_eq!(lic.preview, "Licences: remove SPE_E5 + VISIOCLIENT; inherited POWER_BI_PRO via group Licensing-BI");
    let mfa = plan.step(&key(StepKind::RemoveMfaMethods)).unwrap();
    assert_eq!(mfa.params["methods"].as_array().unwrap().len(), 3, "the password method is never planned");
    let fwd = plan.step(&key(StepKind::DisableForwarding)).unwrap();
    assert!(fwd.warnings.iter().any(|w| w.contains("rival@example.net")));
}

#[test]
fn skips_are_decided_with_reasons() {
    let mut user = rich_user();
    user.devices.clear();
    user.mailbox.as_mut().unwrap().size_bytes = 60_000_000_000;
    user.on_prem_synced = true;
    let mut o = standard();
    o.clear_immutable_id = true;
    let plan = build(&valid(o), &user, PlanRules::default());
    let skip = |k: StepKind| plan.step(&key(k)).unwrap().skip.clone().unwrap_or_default();
    assert_eq!(skip(StepKind::DeviceAction), "no Intune devices");
    assert!(skip(StepKind::RemoveLicences).contains("50 GB"));
    assert!(skip(StepKind::ClearImmutableId).contains("synced"));
}

#[test]
fn a_synced_account_is_told_plainly_and_cleaning_up_does_not_wait_for_ad() {
    let mut user = rich_user();
    user.on_prem_synced = true;
    let plan = build(&valid(standard()), &user, PlanRules::default());
    assert!(plan.notes[0].contains("synced from on-premises AD") && plan.notes[0].contains("disable the account and reset its password"), "{:?}", plan.notes);
    assert!(plan.notes[0].contains("can still sign in"));
    let disable = plan.step(&key(StepKind::DisableSignIn)).unwrap();
    assert!(disable.skip.is_none(), "a lockout step is run (to confirm), never skipped");
    assert!(disable.preview.contains("disable the account in on-premises AD"));
    assert!(plan.step(&key(StepKind::ResetPassword)).unwrap().preview.contains("reset in on-premises AD"));
    for k in [StepKind::RevokeSessions, StepKind::RemoveGroups, StepKind::ConvertToShared] {
        let after = &plan.step(&key(k)).unwrap().after;
        assert!(!after.contains(&key(StepKind::DisableSignIn)) && !after.contains(&key(StepKind::ResetPassword)), "{k:?} waits for AD: {after:?}");
    }
    assert_eq!(plan.step(&key(StepKind::RemoveGroups)).unwrap().manual, vec!["remove alice@contoso.com from Sales-AD in on-premises AD".to_string()]);
}

#[test]
fn a_manager_who_cannot_take_over_is_a_warning_not_a_silent_grant() {
    let mut o = standard();
    o.forward_to = Some(ForwardTo { target: ForwardTarget::Manager, keep_copy: true });
    o.disable_forwarding = false;
    let mut disabled = rich_user();
    disabled.manager.as_mut().unwrap().enabled = false;
    let leaving = PlanRules { manager_leaving: Some(crate::domain::RunId::parse("ob-7k2m9x4q1d").unwrap()), ..PlanRules::default() };
    let mut none = rich_user();
    none.manager = None;
    for (user, rules, why) in
        [(&disabled, PlanRules::default(), "is disabled"), (&rich_user(), leaving, "being offboarded too"), (&none, PlanRules::default(), "has no manager")]
    {
        let plan = build(&valid(o.clone()), user, rules);
        assert!(plan.notes.iter().any(|n| n.contains(why) && n.contains("Choose another person")), "{why}: {:?}", plan.notes);
        for k in [StepKind::GrantMailboxAccess, StepKind::GrantOneDriveAccess, StepKind::ForwardMail, StepKind::SetOutOfOffice, StepKind::TransferOwnership] {
            let s = plan.step(&key(k)).unwrap();
            assert!(s.skip.as_deref().is_some_and(|r| r.contains(why)), "{why}: {k:?} {:?}", s.skip);
            assert!(!s.warnings.is_empty(), "{why}: {k:?} is amber");
            assert_eq!(s.params.get("grantees").and_then(|g| g.as_array()).map(Vec::len).unwrap_or(0), 0, "{k:?} grants no one");
        }
        let oof = plan.step(&key(StepKind::SetOutOfOffice)).unwrap();
        assert!(!oof.preview.contains("your contact") && !oof.params.to_string().contains("your contact"));
    }
}

#[test]
fn owned_groups_are_handed_over_or_named() {
    let plan = build(&valid(standard()), &rich_user(), PlanRules::default());
    let own = plan.step(&key(StepKind::TransferOwnership)).unwrap();
    assert_eq!(
        own.preview,
        "Hand over ownership of 2 groups to morgan@contoso.com (manager): Marketing (team, only owner), sales@contoso.com (distribution list)"
    );
    assert_eq!(own.params["to"], "morgan@contoso.com");
    assert_eq!(own.params["groups"][1]["via_exchange"], true);
    let mut o = standard();
    o.transfer_ownership = None;
    let plan = build(&valid(o), &rich_user(), PlanRules::default());
    assert!(plan.notes.iter().any(|n| n.contains("Marketing (team, only owner)") && n.contains("Ownership stays with the leaver")), "{:?}", plan.notes);
}

#[test]
fn renaming_an_already_renamed_user_keeps_the_name() {
    let mut o = standard();
    o.rename_template = Some("ZZ {{ displayName }}".into());
    let mut user = rich_user();
    user.display_name = "ZZ Hal Halfdone".into();
    let plan = build(&valid(o), &user, PlanRules::default());
    let s = plan.step(&key(StepKind::RenameDisplayName)).unwrap();
    assert_eq!(s.params["display_name"], "ZZ Hal Halfdone");
    assert!(s.preview.contains("already renamed"));
}

#[test]
fn no_mailbox_skips_mailbox_steps() {
    let mut user = rich_user();
    user.mailbox = None;
    let plan = build(&valid(standard()), &user, PlanRules::default());
    for k in [StepKind::SetOutOfOffice, StepKind::ConvertToShared, StepKind::VerifyShared, StepKind::HideFromGal] {
        assert_eq!(plan.step(&key(k)).unwrap().skip.as_deref(), Some("the user has no mailbox"), "{k:?}");
    }
}

#[test]
fn hash_is_stable_and_sensitive() {
    let user = rich_user();
    let p1 = build(&valid(standard()), &user, PlanRules::default());
    let p2 = build(&valid(standard()), &user, PlanRules::default());
    assert_eq!(p1.hash("t", "u"), p2.hash("t", "u"));
    assert_eq!(p1.hash("t", "u").0.len(), 64);
    assert_ne!(p1.hash("t", "u"), p1.hash("t", "other"));
    let mut changed = user.clone();
    changed.groups.pop();
    let p3 = build(&valid(standard()), &changed, PlanRules::default());
    assert_ne!(p1.hash("t", "u"), p3.hash("t", "u"));
    let mut prose = p1.clone();
    prose.steps[0].preview = "different words".into();
    assert_eq!(p1.hash("t", "u"), prose.hash("t", "u"), "the preview is derived, not hashed");
}

#[test]
fn hand_over_texts_and_people_are_resolved_into_the_plan() {
    let mut o = standard();
    o.onedrive_access = vec![Delegate::Manager, Delegate::User(crate::domain::Upn::parse("it@contoso.com").unwrap())];
    let plan = build(&valid(o), &rich_user(), PlanRules::default());
    let oof = plan.step(&key(StepKind::SetOutOfOffice)).unwrap();
    assert_eq!(oof.params["internal"], "Alice Example has left Contoso. Please contact Morgan Manager.");
    assert!(
        oof.preview.contains("External: \"Alice Example is no longer with Contoso. Please contact Morgan Manager.\""),
        "the approver sees both texts: {}",
        oof.preview
    );
    let od = plan.step(&key(StepKind::GrantOneDriveAccess)).unwrap();
    assert_eq!(od.params["grantees"], json!(["morgan@contoso.com", "it@contoso.com"]));
    let mut no_manager = rich_user();
    no_manager.manager = None;
    let plan = build(&valid(standard()), &no_manager, PlanRules::default());
    assert!(plan.step(&key(StepKind::GrantMailboxAccess)).unwrap().skip.as_deref().unwrap().contains("has no manager"));
}

#[test]
fn kinds_round_trip_their_keys() {
    for k in StepKind::ALL {
        assert_eq!(StepKind::from_key(&k.key()), Some(k));
    }
    assert_eq!(StepKind::ResetPassword.class(), StepClass::AtMostOnce);
    assert_eq!(StepKind::DeviceAction.class(), StepClass::AtMostOnce);
    assert_eq!(StepKind::CancelMeetings.class(), StepClass::AtMostOnce);
}

#[test]
fn admin_targets_can_need_two_approvers() {
    let o = Options { disable_sign_in: true, ..Options::default() };
    let user = rich_user();
    assert!(!build(&valid(o.clone()), &user, PlanRules::default()).needs_two_approvers());
    assert!(build(&valid(o), &user, PlanRules { admins_high_risk: true, ..PlanRules::default() }).needs_two_approvers());
}
