//! In-memory implementations of core's ports, for tests and the demo.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::{ObjectId, TenantId, Upn};
use crate::snapshot::*;

/// A directory held in memory: tenant → users.
#[derive(Debug, Default)]
pub struct InMemoryDirectory {
    users: Mutex<HashMap<TenantId, Vec<UserSnapshot>>>,
}

impl InMemoryDirectory {
    pub fn with(tenant: TenantId, users: Vec<UserSnapshot>) -> Self {
        let d = Self::default();
        d.users.lock().expect("directory lock").insert(tenant, users);
        d
    }

    pub fn put(&self, tenant: &TenantId, user: UserSnapshot) {
        let mut all = self.users.lock().expect("directory lock");
        let list = all.entry(tenant.clone()).or_default();
        list.retain(|u| u.id != user.id);
        list.push(user);
    }
}

#[async_trait]
impl Discovery for InMemoryDirectory {
    /// The snapshots are written whole, rights on other mailboxes included.
    fn finds_delegations(&self) -> bool {
        true
    }

    async fn discover(&self, tenant: &TenantId, user: &UserRef) -> Result<UserSnapshot, DiscoveryError> {
        let all = self.users.lock().expect("directory lock");
        let list = all.get(tenant).ok_or_else(|| DiscoveryError::UnknownTenant(tenant.to_string()))?;
        list.iter()
            .find(|u| match user {
                UserRef::Upn(upn) => &u.upn == upn,
                UserRef::Id(id) => &u.id == id,
            })
            .cloned()
            .ok_or_else(|| DiscoveryError::UserNotFound { user: user.to_string(), tenant: tenant.to_string() })
    }
}

#[async_trait]
impl Directory for InMemoryDirectory {
    async fn search(&self, tenant: &TenantId, text: &str, limit: usize) -> Result<Vec<Person>, DiscoveryError> {
        let all = self.users.lock().expect("directory lock");
        let list = all.get(tenant).ok_or_else(|| DiscoveryError::UnknownTenant(tenant.to_string()))?;
        let t = text.to_lowercase();
        Ok(list
            .iter()
            .filter(|u| u.display_name.to_lowercase().split(' ').any(|w| w.starts_with(&t)) || u.upn.to_string().starts_with(&t))
            .take(limit)
            .map(|u| Person { id: u.id.clone(), upn: u.upn.clone(), display_name: u.display_name.clone(), enabled: u.account_enabled })
            .collect())
    }

    async fn find(&self, tenant: &TenantId, user: &UserRef) -> Result<Option<Person>, DiscoveryError> {
        let all = self.users.lock().expect("directory lock");
        let list = all.get(tenant).ok_or_else(|| DiscoveryError::UnknownTenant(tenant.to_string()))?;
        Ok(list
            .iter()
            .find(|u| match user {
                UserRef::Upn(upn) => &u.upn == upn,
                UserRef::Id(id) => &u.id == id,
            })
            .map(|u| Person { id: u.id.clone(), upn: u.upn.clone(), display_name: u.display_name.clone(), enabled: u.account_enabled }))
    }
}

fn oid(n: u32) -> ObjectId {
    ObjectId::parse(&format!("00000000-0000-4000-8000-{n:012}")).expect("valid")
}

/// A leaver with something for every step: synced and dynamic groups, a licensing group,
/// active and eligible roles, every MFA method type, devices, a forward to outside, rules,
/// delegations and meetings.
pub fn rich_user() -> UserSnapshot {
    user_named(1, "alice@contoso.com", "Alice Example")
}

/// `rich_user` with another id, UPN and name.
pub fn user_named(n: u32, upn: &str, name: &str) -> UserSnapshot {
    let g = |id: &str, name: &str, kind, dynamic, synced, lic: &[&str]| GroupMembership {
        id: id.into(),
        name: name.into(),
        kind,
        dynamic,
        on_prem_synced: synced,
        assigns_licences: lic.iter().map(|s| s.to_string()).collect(),
    };
    UserSnapshot {
        id: oid(n),
        upn: Upn::parse(upn).expect("valid upn"),
        display_name: name.into(),
        job_title: Some("Account Executive".into()),
        manager: Some(Person { id: oid(900), upn: Upn::parse("morgan@contoso.com").expect("valid"), display_name: "Morgan Manager".into(), enabled: true }),
        account_enabled: true,
        on_prem_synced: false,
        immutable_id: None,
        last_password_change: Some("2026-01-05T09:00:00Z".into()),
        company: Some("Contoso".into()),
        groups: vec![
            g("g-marketing", "Marketing", GroupKind::Microsoft365, false, false, &[]),
            g("g-vpn", "VPN Users", GroupKind::Security, false, false, &[]),
            g("g-allstaff", "All Staff", GroupKind::Security, true, false, &[]),
            g("g-sales-ad", "Sales-AD", GroupKind::Security, false, true, &[]),
            g("g-dl-sales", "sales@contoso.com", GroupKind::Distribution, false, false, &[]),
            g("g-lic-bi", "Licensing-BI", GroupKind::Security, false, false, &["POWER_BI_PRO"]),
        ],
        licences: vec![
            Licence { sku_id: "sku-e5".into(), sku_part_number: "SPE_E5".into(), inherited_from: None },
            Licence { sku_id: "sku-visio".into(), sku_part_number: "VISIOCLIENT".into(), inherited_from: None },
            Licence {
                sku_id: "sku-pbi".into(),
                sku_part_number: "POWER_BI_PRO".into(),
                inherited_from: Some(InheritedFrom { group_id: "g-lic-bi".into(), group_name: "Licensing-BI".into() }),
            },
        ],
        roles: vec![
            RoleAssignment { id: "ra-1".into(), role_name: "Exchange Administrator".into(), state: RoleState::Active },
            RoleAssignment { id: "ra-2".into(), role_name: "Global Reader".into(), state: RoleState::Eligible },
        ],
        auth_methods: vec![
            AuthMethod { id: "28c10230-6103-485e-b985-444c60001490".into(), kind: "passwordAuthenticationMethod".into() },
            AuthMethod { id: "3179e48a-750b-4051-897c-87b9720928f7".into(), kind: "phoneAuthenticationMethod".into() },
            AuthMethod { id: "am-authenticator".into(), kind: "microsoftAuthenticatorAuthenticationMethod".into() },
            AuthMethod { id: "am-fido".into(), kind: "fido2AuthenticationMethod".into() },
        ],
        devices: vec![
            Device { id: "dev-laptop".into(), name: "ALICE-LAPTOP".into(), managed: true, os: "Windows".into() },
            Device { id: "dev-phone".into(), name: "Alice's iPhone".into(), managed: true, os: "iOS".into() },
            Device { id: "dev-byod".into(), name: "home-pc".into(), managed: false, os: "Windows".into() },
        ],
        mailbox: Some(Mailbox {
            kind: MailboxType::User,
            size_bytes: 12_400_000_000,
            has_archive: false,
            forwarding: Some("rival@example.net".into()),
            inbox_rules: vec![
                InboxRule { id: "rule-1".into(), name: "Move newsletters".into(), forwards: false },
                InboxRule { id: "rule-2".into(), name: "fwd all".into(), forwards: true },
            ],
            delegations: vec![Delegation { mailbox: "ceo@contoso.com".into(), rights: "FullAccess".into() }],
            calendar_permissions: vec!["ceo@contoso.com:\\Calendar".into()],
            mobile_devices: vec!["ActiveSync-iPhone".into()],
            organised_meetings: vec![Meeting { id: "evt-1".into(), subject: "Weekly pipeline".into() }],
            hidden_from_gal: false,
            auto_reply: Some("disabled".into()),
            full_access: vec![],
        }),
        mailbox_on_prem: false,
        onedrive: Some(OneDrive { drive_id: "drive-alice".into(), used_bytes: 3_000_000_000 }),
        owned_groups: vec![
            OwnedGroup { id: "g-marketing".into(), name: "Marketing".into(), kind: GroupKind::Microsoft365, team: true, on_prem_synced: false, owners: 1 },
            OwnedGroup {
                id: "g-dl-sales".into(),
                name: "sales@contoso.com".into(),
                kind: GroupKind::Distribution,
                team: false,
                on_prem_synced: false,
                owners: 2,
            },
        ],
    }
}

/// The standard leaver's plan for `rich_user`.
pub fn standard_plan() -> crate::plan::Plan {
    let preset = crate::domain::PresetName::parse("standard-leaver").expect("valid");
    let options = crate::request::Presets::builtin(&preset).expect("builtin");
    let tenant = TenantId::parse("contoso.com").expect("valid");
    let req = crate::request::Request::now(tenant, "alice@contoso.com", options).validate(chrono::Utc::now()).expect("valid request");
    crate::plan::build(&req, &rich_user(), crate::plan::PlanRules::default())
}

/// A finished run of the standard leaver preset for `rich_user`, as the store returns it:
/// every step resolved (two skipped with a reason), approved by one person. Fixed times,
/// for reports and other rendered evidence.
pub fn finished_run() -> (crate::store::RunRecord, Vec<crate::store::StepRecord>, Vec<crate::policy::Approval>) {
    use chrono::{Duration, TimeZone, Utc};

    use crate::domain::{PresetName, RunId};
    use crate::request::{Presets, Request};
    use crate::run::{RunState, StepOutcome, StepState};

    let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 16, 0, 0).single().expect("valid time");
    let tenant = TenantId::parse("contoso.com").expect("valid");
    let user = user_named(1, "zoe.lukasiewicz@contoso.com", "Zoë Łukasiewicz-Ørsted");
    let preset = PresetName::parse("standard-leaver").expect("valid");
    let options = Presets::builtin(&preset).expect("builtin");
    let request = Request {
        preset: Some(preset),
        reason: Some("Resigned; last day 20 November".into()),
        ticket: Some("INC-4711".into()),
        ..Request::now(tenant.clone(), user.upn.to_string(), options)
    };
    let req = request.clone().validate(t0).expect("valid request");
    let plan = crate::plan::build(&req, &user, crate::plan::PlanRules::default());
    let plan_hash = plan.hash(tenant.as_str(), user.id.as_str());
    let approved = t0 + Duration::minutes(4);
    let mut at = approved;
    let steps: Vec<crate::store::StepRecord> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let start = at;
            at += Duration::milliseconds(180 + 20 * i as i64);
            let outcome = match &p.skip {
                Some(reason) => StepOutcome::Skipped { reason: reason.clone(), warning: !p.warnings.is_empty() },
                None => StepOutcome::done(format!("{} read back", p.kind.title()), vec![format!("req-{:04}", i + 1)]),
            };
            let outcome = crate::engine::honest(p, outcome);
            crate::store::StepRecord {
                key: p.key.clone(),
                state: outcome.state(),
                attempt: 1,
                not_before: approved,
                started_at: Some(start),
                finished_at: Some(at),
                outcome: Some(outcome),
                intent_at: None,
                last_error: None,
            }
        })
        .collect();
    let states: Vec<(StepState, bool)> = steps.iter().map(|s| (s.state, s.outcome.as_ref().is_some_and(StepOutcome::is_warning))).collect();
    let state = crate::run::settle(&states, false).unwrap_or(RunState::Running);
    let run = crate::store::RunRecord {
        id: RunId::parse("ob-7k2m9q4x1p").expect("valid run id"),
        tenant,
        target_upn: user.upn.to_string(),
        target_id: user.id.to_string(),
        target_name: user.display_name.clone(),
        requester: "slack:U0REQUEST".into(),
        requester_name: "Riley Requester".into(),
        state,
        request: serde_json::to_string(&request).expect("json"),
        snapshot: serde_json::to_string(&user).expect("json"),
        plan,
        plan_hash: plan_hash.clone(),
        approvals_needed: 1,
        expires_at: t0 + Duration::hours(72),
        start_at: None,
        approved_at: Some(approved),
        created_at: t0,
        updated_at: at,
        finished_at: Some(at),
        reason: None,
        version: 40,
        origin: Some(crate::store::Origin { platform: "slack".into(), conversation: Some("C0REQUESTS".into()) }),
        line_manager: None,
    };
    let approvals = vec![crate::policy::Approval { approver: "slack:U0ADMIN1".into(), approver_name: "Ada Admin".into(), plan_hash, at: approved }];
    (run, steps, approvals)
}
