//! In-memory implementations of core's ports, for tests and the demo.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::chat::surface::{ChatError, ChatSurface, MessageRef};
use crate::chat::views::{FileOut, PlanPreview, RunView};
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

    /// The users whose snapshots list the group (the test directory has no nesting).
    async fn members_of(&self, tenant: &TenantId, group: &str) -> Result<Vec<ObjectId>, DiscoveryError> {
        let all = self.users.lock().expect("directory lock");
        let list = all.get(tenant).ok_or_else(|| DiscoveryError::UnknownTenant(tenant.to_string()))?;
        let members: Vec<ObjectId> = list.iter().filter(|u| u.groups.iter().any(|g| g.id.eq_ignore_ascii_case(group))).map(|u| u.id.clone()).collect();
        if members.is_empty() {
            return Err(DiscoveryError::GroupNotFound { group: group.to_string(), tenant: tenant.to_string() });
        }
        Ok(members)
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
                polls: 0,
                waiting_since: None,
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

/// What a chat surface shows, as the relay contract reads it from any platform: top-level
/// messages in a place (a channel, or a person's direct messages), replies and files in
/// a message's thread, and how often each was edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub id: String,
    /// The channel or direct conversation.
    pub place: String,
    /// The top-level message whose thread this is in.
    pub thread: Option<String>,
    /// Everything the message says, for finding a run's id in it.
    pub text: String,
    /// A file's name, when this is a file.
    pub file: Option<String>,
    pub edits: usize,
}

/// A chat surface that records what it was asked to show. Its threads are separate
/// objects opened from a message (as Discord's are), so the relay is held to
/// [`ChatSurface::open_thread`].
#[derive(Debug, Default)]
pub struct RecordingSurface {
    posted: Mutex<Vec<Posted>>,
    /// Thread id → the message it was opened from.
    threads: Mutex<HashMap<String, String>>,
    opened: Mutex<usize>,
}

impl RecordingSurface {
    pub fn posted(&self) -> Vec<Posted> {
        self.posted.lock().expect("recording lock").clone()
    }

    /// How many threads were opened.
    pub fn threads_opened(&self) -> usize {
        *self.opened.lock().expect("recording lock")
    }

    fn add(&self, place: String, thread: Option<String>, text: String, file: Option<String>) -> MessageRef {
        let mut all = self.posted.lock().expect("recording lock");
        let id = format!("m{}", all.len() + 1);
        all.push(Posted { id: id.clone(), place, thread, text, file, edits: 0 });
        MessageRef(id)
    }

    fn edit(&self, at: &MessageRef, text: String) -> Result<(), ChatError> {
        let mut all = self.posted.lock().expect("recording lock");
        let m = all.iter_mut().find(|m| m.id == at.0).ok_or_else(|| ChatError::Permanent("message_not_found".into()))?;
        m.text = text;
        m.edits += 1;
        Ok(())
    }

    /// The place and root message of a thread this surface opened.
    fn in_thread(&self, thread: &MessageRef) -> Result<(String, String), ChatError> {
        let root = self.threads.lock().expect("recording lock").get(&thread.0).cloned();
        let root = root.ok_or_else(|| ChatError::Permanent(format!("no thread {}", thread.0)))?;
        let place = self.posted.lock().expect("recording lock").iter().find(|m| m.id == root).map(|m| m.place.clone()).unwrap_or_default();
        Ok((place, root))
    }
}

fn preview_text(p: &PlanPreview) -> String {
    format!("{} {} {:?}", p.run_id, p.target_upn, p.layout())
}

fn status_text(v: &RunView) -> String {
    format!("{} {:?} {:?}", v.run_id, v.state, v.lines)
}

#[async_trait]
impl ChatSurface for RecordingSurface {
    fn platform(&self) -> &str {
        "recording"
    }

    async fn post_preview(&self, to: &str, p: &PlanPreview) -> Result<MessageRef, ChatError> {
        Ok(self.add(to.to_string(), None, preview_text(p), None))
    }

    async fn direct_preview(&self, user: &str, p: &PlanPreview) -> Result<MessageRef, ChatError> {
        Ok(self.add(format!("direct:{user}"), None, preview_text(p), None))
    }

    async fn update_preview(&self, at: &MessageRef, p: &PlanPreview) -> Result<(), ChatError> {
        self.edit(at, preview_text(p))
    }

    async fn open_thread(&self, root: &MessageRef) -> Result<MessageRef, ChatError> {
        *self.opened.lock().expect("recording lock") += 1;
        let id = format!("thread-{}", root.0);
        self.threads.lock().expect("recording lock").insert(id.clone(), root.0.clone());
        Ok(MessageRef(id))
    }

    async fn post_status(&self, thread: &MessageRef, v: &RunView) -> Result<MessageRef, ChatError> {
        let (place, root) = self.in_thread(thread)?;
        Ok(self.add(place, Some(root), status_text(v), None))
    }

    async fn update_status(&self, at: &MessageRef, v: &RunView) -> Result<(), ChatError> {
        self.edit(at, status_text(v))
    }

    async fn reply(&self, thread: &MessageRef, text: &str) -> Result<(), ChatError> {
        let (place, root) = self.in_thread(thread)?;
        self.add(place, Some(root), text.to_string(), None);
        Ok(())
    }

    async fn attach(&self, thread: &MessageRef, file: &FileOut) -> Result<(), ChatError> {
        let (place, root) = self.in_thread(thread)?;
        self.add(place, Some(root), file.link.clone().unwrap_or_default(), Some(file.name.clone()));
        Ok(())
    }
}
