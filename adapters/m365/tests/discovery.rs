//! Discovery against the simulated tenant over HTTP: the snapshot of spec §1 step 2,
//! in few round trips, with clear errors for a wrong UPN or tenant.

mod common;

use common::*;
use offboard_core::domain::{ObjectId, TenantId, Upn};
use offboard_core::snapshot::{Discovery, DiscoveryError, GroupKind, MailboxType, RoleState, UserRef};

#[tokio::test]
async fn the_richest_user_is_seen_as_microsoft_sees_her() {
    let w = World::new().await;
    let (s, trace) = w.discover_traced(ALICE).await;
    assert_eq!(s.display_name, "Alice Able");
    assert_eq!(s.manager.as_ref().unwrap().upn.as_str(), "mary.manager@contoso.com");
    assert_eq!(s.company.as_deref(), Some("Contoso"));
    assert!(s.account_enabled && !s.on_prem_synced);
    let g = |n: &str| s.groups.iter().find(|g| g.name == n).unwrap_or_else(|| panic!("{n}"));
    assert!(g("All Staff").dynamic);
    assert!(g("HQ Staff (AD)").on_prem_synced);
    assert_eq!(g("Sales DL").kind, GroupKind::Distribution);
    assert_eq!(g("Finance Approvers").kind, GroupKind::MailEnabledSecurity);
    assert_eq!(g("Sales Team").kind, GroupKind::Microsoft365);
    assert_eq!(g("VPN Users").kind, GroupKind::Security);
    let mut skus: Vec<&str> = s.licences.iter().map(|l| l.sku_part_number.as_str()).collect();
    skus.sort();
    assert_eq!(skus, ["SPE_E3", "VISIOCLIENT"]);
    assert!(s.licences.iter().all(|l| l.inherited_from.is_none()));
    let kinds: Vec<&str> = s.auth_methods.iter().map(|m| m.kind.as_str()).collect();
    assert!(kinds.contains(&"passwordAuthenticationMethod") && kinds.contains(&"fido2AuthenticationMethod"), "{kinds:?}");
    assert_eq!(s.devices.iter().filter(|d| d.managed).count(), 2);
    assert_eq!(s.devices.iter().filter(|d| !d.managed).count(), 1, "{:?}", s.devices);
    let m = s.mailbox.as_ref().expect("mailbox");
    assert_eq!(m.kind, MailboxType::User);
    assert!(m.size_bytes > 12_000_000_000);
    assert_eq!(m.forwarding.as_deref(), Some("alice.personal@gmail.example"));
    assert_eq!(m.inbox_rules.len(), 2, "the junk rule is a system rule: {:?}", m.inbox_rules);
    assert!(m.inbox_rules.iter().any(|r| r.forwards && r.name == "Copy invoices home"));
    let mut d: Vec<String> = m.delegations.iter().map(|d| format!("{} {}", d.rights, d.mailbox)).collect();
    d.sort();
    assert_eq!(d, ["SendAs info@contoso.com", "SendOnBehalf mary.manager@contoso.com"]);
    assert_eq!(m.calendar_permissions, ["mary.manager@contoso.com"]);
    assert_eq!(m.mobile_devices.len(), 1);
    let mut meetings: Vec<&str> = m.organised_meetings.iter().map(|m| m.subject.as_str()).collect();
    meetings.sort();
    assert_eq!(meetings, ["Customer QBR: Northwind", "Weekly pipeline review"], "focus time has no attendees");
    assert!(s.onedrive.is_some());
    assert!(s.last_password_change.is_some());
    // Two Graph batches (by UPN, then the role lists by id); in parallel one Exchange batch
    // for the mailbox, one listing of all mailboxes, and the permission scan, ten per batch.
    let mailboxes = w.sim.tenant(CONTOSO, |t| t.mailboxes.values().filter(|m| !m.disconnected).count()).unwrap() as u64;
    assert_eq!(trace.requests(), 4 + (3 * (mailboxes - 1)).div_ceil(10), "requests for {mailboxes} mailboxes");
    assert!(!trace.request_ids().is_empty());
}

#[tokio::test]
async fn roles_licences_and_absences_are_told_apart() {
    let w = World::new().await;
    let dave = w.discover("dave.admin@contoso.com").await;
    let mut roles: Vec<(String, RoleState)> = dave.roles.iter().map(|r| (r.role_name.clone(), r.state)).collect();
    roles.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(roles, [("Exchange Administrator".to_string(), RoleState::Eligible), ("Global Administrator".to_string(), RoleState::Active)]);
    let carol = w.discover("carol.group@contoso.com").await;
    let inherited = carol.licences.iter().find(|l| l.sku_part_number == "SPE_E3").unwrap();
    assert_eq!(inherited.inherited_from.as_ref().unwrap().group_name, "Licensed Users E3");
    assert!(carol.groups.iter().any(|g| g.name == "Licensed Users E3" && g.assigns_licences == ["SPE_E3"]));
    assert!(w.discover("frank.nomail@contoso.com").await.mailbox.is_none());
    assert!(w.discover("gina.noonedrive@contoso.com").await.onedrive.is_none());
    assert!(w.discover("ivy.hybrid@contoso.com").await.mailbox.is_none(), "an on-premises mailbox is not Exchange Online's to change");
    let bob = w.discover("bob.synced@contoso.com").await;
    assert!(bob.on_prem_synced && bob.immutable_id.is_some());
    let info = w.discover("info@contoso.com").await;
    assert_eq!(info.mailbox.unwrap().kind, MailboxType::Shared);
}

#[tokio::test]
async fn by_object_id_too() {
    let w = World::new().await;
    let id = w.user_id(ALICE);
    let s = w.m365.discover(&World::tenant(), &UserRef::Id(ObjectId::parse(&id).unwrap())).await.unwrap();
    assert_eq!(s.upn.as_str(), ALICE);
    assert!(s.mailbox.is_some());
}

#[tokio::test]
async fn wrong_user_tenant_or_permission_get_clear_errors() {
    let w = World::new().await;
    let ghost = w.m365.discover(&World::tenant(), &UserRef::Upn(Upn::parse("ghost@contoso.com").unwrap())).await;
    assert_eq!(ghost.unwrap_err(), DiscoveryError::UserNotFound("ghost@contoso.com".into()));
    let other = w.m365.discover(&TenantId::parse("fabrikam.example").unwrap(), &UserRef::Upn(Upn::parse("sam.sato@fabrikam.example").unwrap())).await;
    assert!(matches!(other, Err(DiscoveryError::UnknownTenant(_))), "{other:?}");
    w.sim.set_permission(CONTOSO, APP, offboard_m365_sim::token::Resource::Graph, "UserAuthenticationMethod.ReadWrite.All", false).unwrap();
    w.m365.tokens().invalidate(CONTOSO_ID);
    match w.m365.discover(&World::tenant(), &UserRef::Upn(Upn::parse(ALICE).unwrap())).await {
        Err(DiscoveryError::Forbidden(m)) => assert!(m.contains("UserAuthenticationMethod.Read.All"), "{m}"),
        other => panic!("{other:?}"),
    }
}
