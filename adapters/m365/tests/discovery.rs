//! Discovery against the simulated tenant over HTTP: the snapshot of spec §1 step 2,
//! in few round trips, with clear errors for a wrong UPN or tenant.

mod common;

use common::*;
use offboard_core::domain::{ObjectId, TenantId, Upn};
use offboard_core::snapshot::{Discovery, DiscoveryError, GroupKind, MailboxType, RoleState, UserRef};
use offboard_m365_sim::{Sim, SimConfig};

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
    assert!(m.delegations.is_empty() && m.calendar_permissions.is_empty(), "rights on other mailboxes come from the index");
    assert_eq!(m.mobile_devices.len(), 1);
    let mut meetings: Vec<&str> = m.organised_meetings.iter().map(|m| m.subject.as_str()).collect();
    meetings.sort();
    assert_eq!(meetings, ["Customer QBR: Northwind", "Weekly pipeline review"], "focus time has no attendees");
    assert!(s.onedrive.is_some());
    assert!(s.last_password_change.is_some());
    // Two Graph batches (by UPN, then the role lists by id) and, in parallel, one Exchange
    // batch for the mailbox: the same in a tenant of any size.
    assert_eq!(trace.requests(), 3);
    assert!(!trace.request_ids().is_empty());

    // With the index: her rights on other mailboxes, the calendar by its German name.
    let indexed = w.discover(ALICE).await;
    let m = indexed.mailbox.as_ref().unwrap();
    let mut d: Vec<String> = m.delegations.iter().map(|d| format!("{} {}", d.rights, d.mailbox)).collect();
    d.sort();
    assert_eq!(d, ["SendAs info@contoso.com", "SendOnBehalf mary.manager@contoso.com"]);
    assert_eq!(m.calendar_permissions, ["mary.manager@contoso.com:\\Kalender"]);
}

/// A plan costs the same number of requests whatever the tenant's size: the leaver in a
/// tenant of 5,000 mailboxes is discovered in as many as in one of fifty.
#[tokio::test]
async fn discovery_costs_the_same_in_a_tenant_of_five_thousand_mailboxes() {
    let cost = |users: u32| async move {
        let mut scenario = offboard_m365_sim::Scenario::generate(1, users);
        scenario.tenants[0].apps = offboard_m365_sim::Scenario::contoso().tenants[0].apps.clone();
        let sim = Sim::start(&scenario, SimConfig::default()).await.unwrap();
        let (tenant, upn) = ("bench000.example", "user00001@bench000.example");
        let id = sim.tenant(tenant, |t| t.id.clone()).unwrap();
        let app = APP.to_string();
        let secret = sim.add_secret(tenant, &app).unwrap();
        let u = sim.urls();
        let config = offboard_m365::TenantConfig {
            key: TenantId::parse(tenant).unwrap(),
            directory_id: id,
            client_id: app,
            credential: offboard_m365::Credential::Secret(offboard_m365::Secret::new(secret)),
            domains: vec![tenant.into()],
        };
        let m365 = offboard_m365::M365::new(
            offboard_m365::Endpoints::at(&u.login, &u.graph, &u.exchange),
            offboard_m365::Tenants::new([config]),
            std::sync::Arc::new(SimTime(sim.clock().clone())),
            fast_settings(),
        );
        let trace = offboard_m365::trace::Trace::new();
        let s = m365.discover_traced(&TenantId::parse(tenant).unwrap(), &UserRef::Upn(Upn::parse(upn).unwrap()), &trace).await.unwrap();
        assert!(s.mailbox.is_some());
        (trace.requests(), sim.stats().exchange_requests)
    };
    let small = cost(50).await;
    let large = cost(5_000).await;
    assert_eq!(small, large, "requests (all, Exchange) for 50 and for 5,000 mailboxes");
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
    assert_eq!(ghost.unwrap_err(), DiscoveryError::UserNotFound { user: "ghost@contoso.com".into(), tenant: "contoso.com".into() });
    let other = w.m365.discover(&TenantId::parse("fabrikam.example").unwrap(), &UserRef::Upn(Upn::parse("sam.sato@fabrikam.example").unwrap())).await;
    assert!(matches!(other, Err(DiscoveryError::UnknownTenant(_))), "{other:?}");
    w.sim.set_permission(CONTOSO, APP, offboard_m365_sim::token::Resource::Graph, "UserAuthenticationMethod.ReadWrite.All", false).unwrap();
    w.m365.tokens().invalidate(CONTOSO_ID);
    match w.m365.discover(&World::tenant(), &UserRef::Upn(Upn::parse(ALICE).unwrap())).await {
        Err(DiscoveryError::Forbidden(m)) => assert!(m.contains("UserAuthenticationMethod.Read.All"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Role bindings by directory group read each group's members, nested groups included.
#[tokio::test]
async fn members_of_lists_every_user_of_a_group() {
    use offboard_core::snapshot::Directory;
    let w = World::new().await;
    let alice = UserRef::Upn(Upn::parse(ALICE).unwrap());
    let snapshot = w.m365.discover(&World::tenant(), &alice).await.unwrap();
    let group = snapshot.groups.first().expect("alice is in a group").id.clone();
    let members: Vec<String> = w.m365.members_of(&World::tenant(), &group).await.unwrap().iter().map(|u| u.to_string()).collect();
    assert!(members.contains(&snapshot.id.to_string()), "{members:?}");
    let ghost = w.m365.members_of(&World::tenant(), "00000000-0000-4000-8000-00000000dead").await;
    assert_eq!(ghost.unwrap_err(), DiscoveryError::GroupNotFound { group: "00000000-0000-4000-8000-00000000dead".into(), tenant: "contoso.com".into() });
}
