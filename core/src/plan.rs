//! Plans: the exact steps a run will take, in a dependency graph, with a preview of what
//! each changes and a canonical hash that approvals bind to.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::StepKey;
use crate::request::{Delegate, DeviceAction as Device, ForwardTarget, Options, ValidRequest};
use crate::snapshot::{MailboxType, RoleState, SHARED_MAILBOX_LICENCE_FREE_LIMIT, UserSnapshot};

/// How a step may be retried (reliability.md §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepClass {
    /// Re-sending is harmless; done when a read-back confirms the state.
    Idempotent,
    /// Read the current state before each attempt.
    Reconcilable,
    /// Journal the intent before sending; after a crash, read back or ask a human.
    AtMostOnce,
}

/// Every kind of step the engine knows. The key of a step is its kind's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    DisableSignIn,
    RevokeSessions,
    ResetPassword,
    RemoveMfaMethods,
    RemoveAdminRoles,
    RemoveGroups,
    RemoveInboxRules,
    RemoveMobileDevices,
    RemoveMailboxPermissions,
    RemoveCalendarPermissions,
    DisableForwarding,
    CancelMeetings,
    DeviceAction,
    SetOutOfOffice,
    ForwardMail,
    GrantMailboxAccess,
    GrantOneDriveAccess,
    HideFromGal,
    RenameDisplayName,
    ConvertToShared,
    VerifyShared,
    RemoveLicences,
    ClearImmutableId,
    DeleteUser,
}

impl StepKind {
    pub const ALL: [StepKind; 24] = [
        Self::DisableSignIn,
        Self::RevokeSessions,
        Self::ResetPassword,
        Self::RemoveMfaMethods,
        Self::RemoveAdminRoles,
        Self::RemoveGroups,
        Self::RemoveInboxRules,
        Self::RemoveMobileDevices,
        Self::RemoveMailboxPermissions,
        Self::RemoveCalendarPermissions,
        Self::DisableForwarding,
        Self::CancelMeetings,
        Self::DeviceAction,
        Self::SetOutOfOffice,
        Self::ForwardMail,
        Self::GrantMailboxAccess,
        Self::GrantOneDriveAccess,
        Self::HideFromGal,
        Self::RenameDisplayName,
        Self::ConvertToShared,
        Self::VerifyShared,
        Self::RemoveLicences,
        Self::ClearImmutableId,
        Self::DeleteUser,
    ];

    pub fn key(self) -> StepKey {
        let v = serde_json::to_value(self).expect("unit enum");
        StepKey::parse(v.as_str().expect("string")).expect("kind names are keys")
    }

    pub fn from_key(key: &StepKey) -> Option<Self> {
        serde_json::from_value(Value::String(key.as_str().to_owned())).ok()
    }

    pub fn class(self) -> StepClass {
        use StepKind::*;
        match self {
            DisableSignIn | RevokeSessions | DisableForwarding | SetOutOfOffice | ForwardMail | HideFromGal | RenameDisplayName | ConvertToShared
            | VerifyShared | ClearImmutableId => StepClass::Idempotent,
            RemoveMfaMethods
            | RemoveAdminRoles
            | RemoveGroups
            | RemoveInboxRules
            | RemoveMobileDevices
            | RemoveMailboxPermissions
            | RemoveCalendarPermissions
            | GrantMailboxAccess
            | GrantOneDriveAccess
            | RemoveLicences
            | DeleteUser => StepClass::Reconcilable,
            ResetPassword | CancelMeetings | DeviceAction => StepClass::AtMostOnce,
        }
    }

    /// The lockout group: the steps the emergency path may run before approval.
    pub fn is_lockout(self) -> bool {
        matches!(self, Self::DisableSignIn | Self::RevokeSessions | Self::ResetPassword | Self::RemoveMfaMethods)
    }

    pub fn title(self) -> &'static str {
        use StepKind::*;
        match self {
            DisableSignIn => "Disable sign-in",
            RevokeSessions => "Revoke all sessions",
            ResetPassword => "Reset password",
            RemoveMfaMethods => "Remove MFA methods",
            RemoveAdminRoles => "Remove admin roles",
            RemoveGroups => "Remove from groups",
            RemoveInboxRules => "Remove inbox rules",
            RemoveMobileDevices => "Remove mobile devices",
            RemoveMailboxPermissions => "Remove permissions on other mailboxes",
            RemoveCalendarPermissions => "Remove calendar permissions",
            DisableForwarding => "Disable existing forwarding",
            CancelMeetings => "Cancel organised meetings",
            DeviceAction => "Wipe or retire devices",
            SetOutOfOffice => "Set out of office",
            ForwardMail => "Forward mail",
            GrantMailboxAccess => "Grant mailbox access",
            GrantOneDriveAccess => "Grant OneDrive access",
            HideFromGal => "Hide from the address list",
            RenameDisplayName => "Rename display name",
            ConvertToShared => "Convert to shared mailbox",
            VerifyShared => "Verify the mailbox is shared",
            RemoveLicences => "Remove licences",
            ClearImmutableId => "Clear immutable ID",
            DeleteUser => "Delete user",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub key: StepKey,
    pub kind: StepKind,
    pub class: StepClass,
    /// Keys of the steps that must end (succeeded or skipped) before this one starts.
    pub after: Vec<StepKey>,
    /// Exactly what the step will change, for the executor; part of the plan hash.
    pub params: Value,
    /// What a person reads in the preview.
    pub preview: String,
    /// Known at planning time: the step will be skipped for this reason.
    pub skip: Option<String>,
    /// Flagged in amber in the preview (e.g. a forward that looks like exfiltration).
    pub warnings: Vec<String>,
    pub high_risk: bool,
    /// Start no earlier than this many days after approval (deferred deletion).
    pub defer_days: u16,
}

/// The plan for one user: steps in dependency order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
    /// Extra reasons the plan needs two approvers, beyond its high-risk steps.
    pub high_risk_reasons: Vec<String>,
}

/// A plan's canonical hash, hex SHA-256; approvals name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanHash(pub String);

impl std::fmt::Display for PlanHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PlanHash {
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl Plan {
    pub fn step(&self, key: &StepKey) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| &s.key == key)
    }

    pub fn needs_two_approvers(&self) -> bool {
        self.steps.iter().any(|s| s.high_risk && s.skip.is_none()) || !self.high_risk_reasons.is_empty()
    }

    /// The hash covers the target, every step's kind, parameters, order constraints, skip
    /// decision and deferral; not the preview prose, which is derived from them.
    pub fn hash(&self, tenant: &str, target_id: &str) -> PlanHash {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                json!({
                    "key": s.key, "kind": s.kind, "class": s.class, "after": s.after,
                    "params": s.params, "skip": s.skip, "high_risk": s.high_risk, "defer_days": s.defer_days,
                })
            })
            .collect();
        // serde_json's map is ordered by key, which makes this rendering canonical.
        let doc = json!({ "v": 1, "tenant": tenant, "target": target_id, "steps": steps, "high_risk": self.high_risk_reasons });
        let mut h = Sha256::new();
        h.update(b"offboard-plan-v1\n");
        h.update(serde_json::to_vec(&doc).expect("json"));
        PlanHash(hex::encode(h.finalize()))
    }
}

/// Tenant rules that shape a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanRules {
    /// Targets holding admin roles need two approvers.
    pub admins_high_risk: bool,
}

struct Builder {
    steps: Vec<PlannedStep>,
}

impl Builder {
    fn add(&mut self, kind: StepKind, after: &[StepKind], params: Value, preview: String) -> &mut PlannedStep {
        let present: BTreeSet<StepKind> = self.steps.iter().map(|s| s.kind).collect();
        let after = after.iter().filter(|k| present.contains(k)).map(|k| k.key()).collect();
        self.steps.push(PlannedStep {
            key: kind.key(),
            kind,
            class: kind.class(),
            after,
            params,
            preview,
            skip: None,
            warnings: Vec::new(),
            high_risk: false,
            defer_days: 0,
        });
        self.steps.last_mut().expect("just pushed")
    }

    fn kinds(&self) -> Vec<StepKind> {
        self.steps.iter().map(|s| s.kind).collect()
    }
}

fn delegate_label(d: &Delegate, user: &UserSnapshot) -> String {
    match d {
        Delegate::Manager => match &user.manager {
            Some(m) => format!("{} (manager)", m.upn),
            None => "the manager (none recorded)".into(),
        },
        Delegate::User(u) => u.to_string(),
    }
}

/// The UPNs a hand-over goes to; the manager is resolved from discovery.
fn resolve(delegates: &[Delegate], user: &UserSnapshot) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in delegates {
        let upn = match d {
            Delegate::Manager => user.manager.as_ref().map(|m| m.upn.to_string()),
            Delegate::User(u) => Some(u.to_string()),
        };
        if let Some(u) = upn.filter(|u| !out.contains(u)) {
            out.push(u);
        }
    }
    out
}

/// Fills a hand-over template's variables from the snapshot; the plan carries the result,
/// so the approver sees the exact words.
pub fn render(template: &str, user: &UserSnapshot) -> String {
    crate::templates::render_handover(template, &crate::templates::handover_vars(user))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}

/// Builds the plan of spec §3 from a valid request and the discovered user.
pub fn build(req: &ValidRequest, user: &UserSnapshot, rules: PlanRules) -> Plan {
    use StepKind::*;
    let o: &Options = &req.request.options;
    let mut b = Builder { steps: Vec::new() };
    let mailbox = user.mailbox.as_ref();
    let no_mailbox = "the user has no mailbox";

    // 2. Lockout.
    if o.disable_sign_in {
        let s = b.add(DisableSignIn, &[], json!({ "user": user.id }), format!("Block sign-in for {}", user.upn));
        if user.on_prem_synced {
            s.warnings.push("synced from on-premises AD: disable the account there too, or the next sync re-enables it".into());
        }
        if !user.account_enabled {
            s.preview.push_str(" (already blocked: will confirm)");
        }
    }
    if o.revoke_sessions {
        b.add(RevokeSessions, &[DisableSignIn], json!({ "user": user.id }), "Revoke every refresh token and session".into());
    }
    if o.reset_password {
        // Once sign-in is blocked, the revoke and the reset need nothing from each other:
        // they run together, so the lockout lands two round trips after approval.
        let s = b.add(
            ResetPassword,
            &[DisableSignIn],
            json!({ "user": user.id, "changed_before": user.last_password_change }),
            "Set a random strong password (never shown anywhere)".into(),
        );
        if user.on_prem_synced {
            s.warnings.push("synced user: the password is reset through writeback".into());
        }
    }
    if o.remove_mfa {
        let removable: Vec<_> = user.auth_methods.iter().filter(|m| !m.is_password()).collect();
        let ids: Vec<Value> = removable.iter().map(|m| json!({ "id": m.id, "kind": m.kind })).collect();
        let s = b.add(
            RemoveMfaMethods,
            &[DisableSignIn],
            json!({ "methods": ids }),
            format!("Remove {} (the password method stays)", plural(removable.len(), "authentication method", "authentication methods")),
        );
        if removable.is_empty() {
            s.skip = Some("no authentication methods besides the password".into());
        }
    }
    let lockout: Vec<StepKind> = b.kinds();

    // 3. Access clean-up and hand-over, after the lockout.
    if o.remove_admin_roles {
        let active = user.roles.iter().filter(|r| r.state == RoleState::Active).count();
        let eligible = user.roles.len() - active;
        let names: Vec<&str> = user.roles.iter().map(|r| r.role_name.as_str()).collect();
        let s = b.add(
            RemoveAdminRoles,
            &lockout,
            json!({ "assignments": user.roles.iter().map(|r| json!({"id": r.id, "role": r.role_name, "state": r.state})).collect::<Vec<_>>() }),
            format!("Remove {active} active and {eligible} eligible admin roles: {}", names.join(", ")),
        );
        if user.roles.is_empty() {
            s.skip = Some("no admin roles".into());
            s.preview = "Remove admin roles".into();
        }
    }
    if o.remove_groups {
        let mut remove = Vec::new();
        let mut skipped = Vec::new();
        for g in &user.groups {
            let reason = if g.dynamic {
                Some("dynamic membership")
            } else if g.on_prem_synced {
                Some("synced from on-premises AD")
            } else if o.remove_licences && !g.assigns_licences.is_empty() {
                Some("licensing group: left by the licence step")
            } else {
                None
            };
            match reason {
                Some(r) => skipped.push(json!({ "id": g.id, "name": g.name, "reason": r })),
                None => remove.push(json!({ "id": g.id, "name": g.name, "kind": g.kind, "via_exchange": g.kind.via_exchange() })),
            }
        }
        let mut preview = format!("Remove from {}", plural(remove.len(), "group", "groups"));
        if !skipped.is_empty() {
            let why: Vec<String> = skipped.iter().map(|s| format!("{} ({})", s["name"].as_str().unwrap_or(""), s["reason"].as_str().unwrap_or(""))).collect();
            preview.push_str(&format!("; {} skipped: {}", skipped.len(), why.join(", ")));
        }
        let empty = remove.is_empty();
        let s = b.add(RemoveGroups, &lockout, json!({ "remove": remove, "skipped": skipped }), preview);
        if empty {
            s.skip = Some("no groups the engine can leave".into());
        }
    }
    let mailbox_step = |b: &mut Builder, kind: StepKind, params: Value, preview: String, empty: Option<&str>| {
        let s = b.add(kind, &lockout, params, preview);
        if mailbox.is_none() {
            s.skip = Some(no_mailbox.into());
        } else if let Some(reason) = empty {
            s.skip = Some(reason.into());
        }
    };
    if o.remove_inbox_rules {
        let rules = mailbox.map(|m| m.inbox_rules.clone()).unwrap_or_default();
        let forwarding = rules.iter().filter(|r| r.forwards).count();
        let mut preview = format!("Delete {}", plural(rules.len(), "inbox rule", "inbox rules"));
        if forwarding > 0 {
            preview.push_str(&format!(" ({forwarding} forward mail out)"));
        }
        let ids: Vec<Value> = rules.iter().map(|r| json!({ "id": r.id, "name": r.name })).collect();
        mailbox_step(&mut b, RemoveInboxRules, json!({ "rules": ids }), preview, rules.is_empty().then_some("no inbox rules"));
    }
    if o.remove_mobile_devices {
        let devices = mailbox.map(|m| m.mobile_devices.clone()).unwrap_or_default();
        mailbox_step(
            &mut b,
            RemoveMobileDevices,
            json!({ "devices": devices }),
            format!("Remove {} (ActiveSync)", plural(devices.len(), "mobile device", "mobile devices")),
            devices.is_empty().then_some("no mobile devices"),
        );
    }
    if o.remove_mailbox_permissions {
        let d = mailbox.map(|m| m.delegations.clone()).unwrap_or_default();
        let list: Vec<Value> = d.iter().map(|x| json!({ "mailbox": x.mailbox, "rights": x.rights })).collect();
        mailbox_step(
            &mut b,
            RemoveMailboxPermissions,
            json!({ "delegations": list }),
            format!("Remove {} on other mailboxes", plural(d.len(), "permission", "permissions")),
            d.is_empty().then_some("no permissions on other mailboxes"),
        );
    }
    if o.remove_calendar_permissions {
        let c = mailbox.map(|m| m.calendar_permissions.clone()).unwrap_or_default();
        mailbox_step(
            &mut b,
            RemoveCalendarPermissions,
            json!({ "calendars": c }),
            format!("Remove {}", plural(c.len(), "calendar permission", "calendar permissions")),
            c.is_empty().then_some("no calendar permissions"),
        );
    }
    if o.disable_forwarding {
        let current = mailbox.and_then(|m| m.forwarding.clone());
        let preview = match &current {
            Some(f) => format!("Turn off forwarding to {f}"),
            None => "Turn off forwarding".into(),
        };
        mailbox_step(&mut b, DisableForwarding, json!({ "current": current }), preview, current.is_none().then_some("no forwarding set"));
    }
    if let Some(fwd) = mailbox.and_then(|m| m.forwarding.as_ref()) {
        // A forward set by a leaver is an exfiltration signal: show it whatever was chosen.
        if let Some(s) = b.steps.iter_mut().find(|s| s.kind == DisableForwarding) {
            s.warnings.push(format!("existing forward to {fwd}"));
        } else if let Some(s) = b.steps.first_mut() {
            s.warnings.push(format!("the mailbox forwards to {fwd} and no step turns it off"));
        }
    }
    if o.cancel_meetings {
        let meetings = mailbox.map(|m| m.organised_meetings.clone()).unwrap_or_default();
        let list: Vec<Value> = meetings.iter().map(|m| json!({ "id": m.id, "subject": m.subject })).collect();
        mailbox_step(
            &mut b,
            CancelMeetings,
            json!({ "events": list }),
            format!("Cancel {} the user organises (attendees are told)", plural(meetings.len(), "meeting", "meetings")),
            meetings.is_empty().then_some("no future meetings organised"),
        );
    }
    if let Some(action) = o.device_action {
        let managed: Vec<_> = user.devices.iter().filter(|d| d.managed).collect();
        let list: Vec<Value> = managed.iter().map(|d| json!({ "id": d.id, "name": d.name })).collect();
        let verb = match action {
            Device::Wipe => "Wipe (factory reset)",
            Device::Retire => "Retire (remove company data from)",
        };
        let names: Vec<&str> = managed.iter().map(|d| d.name.as_str()).collect();
        let s = b.add(
            StepKind::DeviceAction,
            &lockout,
            json!({ "action": action, "devices": list }),
            format!("{verb} {}: {}", plural(managed.len(), "Intune device", "Intune devices"), names.join(", ")),
        );
        s.high_risk = action == Device::Wipe;
        if managed.is_empty() {
            s.skip = Some("no Intune devices".into());
        }
    }
    if let Some(oof) = &o.out_of_office {
        let (internal, external) = (render(&oof.internal, user), render(&oof.external, user));
        mailbox_step(&mut b, SetOutOfOffice, json!({ "internal": internal, "external": external }), format!("Turn on out of office: \"{internal}\""), None);
    }
    if let Some(f) = &o.forward_to {
        let (to, external) = match &f.target {
            ForwardTarget::Manager => (user.manager.as_ref().map(|m| m.upn.to_string()), false),
            ForwardTarget::User(u) => (Some(u.to_string()), false),
            ForwardTarget::External(a) => (Some(a.to_string()), true),
        };
        let preview =
            format!("Forward mail to {}{}", to.as_deref().unwrap_or("the manager (none recorded)"), if f.keep_copy { ", keeping a copy" } else { "" });
        let skip_reason = if to.is_none() { Some("no manager recorded to forward to") } else { None };
        mailbox_step(&mut b, ForwardMail, json!({ "to": to, "external": external, "keep_copy": f.keep_copy }), preview, skip_reason);
        if external && let Some(s) = b.steps.last_mut() {
            s.warnings.push("forwarding outside the organisation".into());
        }
    }
    if let Some(access) = &o.mailbox_access {
        let who: Vec<String> = access.delegates.iter().map(|d| delegate_label(d, user)).collect();
        let grantees = resolve(&access.delegates, user);
        mailbox_step(
            &mut b,
            GrantMailboxAccess,
            json!({ "delegates": access.delegates, "grantees": grantees, "automap": access.automap }),
            format!("Give full mailbox access to {}{}", who.join(", "), if access.automap { " (automapped)" } else { "" }),
            grantees.is_empty().then_some("no one to give access to: no manager recorded"),
        );
    }
    if !o.onedrive_access.is_empty() {
        let who: Vec<String> = o.onedrive_access.iter().map(|d| delegate_label(d, user)).collect();
        let grantees = resolve(&o.onedrive_access, user);
        let s = b.add(
            GrantOneDriveAccess,
            &lockout,
            json!({ "delegates": o.onedrive_access, "grantees": grantees }),
            format!("Give OneDrive access to {}", who.join(", ")),
        );
        if user.onedrive.is_none() {
            s.skip = Some("the user has no OneDrive".into());
        } else if grantees.is_empty() {
            s.skip = Some("no one to give access to: no manager recorded".into());
        }
    }
    if o.hide_from_gal {
        mailbox_step(&mut b, HideFromGal, json!({}), "Hide from the global address list".into(), None);
    }
    if let Some(t) = &o.rename_template {
        let name = render(t, user);
        b.add(RenameDisplayName, &lockout, json!({ "display_name": name }), format!("Rename \"{}\" to \"{name}\"", user.display_name));
    }
    let access: Vec<StepKind> = b.kinds();

    // 4. Convert, then verify: the guard for the licences.
    if o.convert_to_shared {
        let already = mailbox.is_some_and(|m| m.kind == MailboxType::Shared);
        mailbox_step(&mut b, ConvertToShared, json!({}), "Convert the mailbox to a shared mailbox".into(), already.then_some("already a shared mailbox"));
        // Meetings are cancelled from the user mailbox while it can still send.
        let after: Vec<StepKind> = access.clone();
        let s = b.steps.last_mut().expect("just added");
        s.after = after.iter().filter(|k| **k != ConvertToShared).map(|k| k.key()).collect();
        let skip = s.skip.clone();
        let verify = b.add(VerifyShared, &[ConvertToShared], json!({}), "Confirm the mailbox reports shared before licences go".into());
        if skip.as_deref() == Some(no_mailbox) {
            verify.skip = skip;
        }
    }

    // 5. Licences, only after the mailbox is verified shared.
    if o.remove_licences {
        let direct: Vec<Value> =
            user.licences.iter().filter(|l| l.inherited_from.is_none()).map(|l| json!({ "sku_id": l.sku_id, "sku": l.sku_part_number })).collect();
        let inherited: Vec<Value> = user
            .licences
            .iter()
            .filter_map(|l| {
                l.inherited_from.as_ref().map(|g| json!({ "sku_id": l.sku_id, "sku": l.sku_part_number, "group_id": g.group_id, "group": g.group_name }))
            })
            .collect();
        let mut parts = Vec::new();
        if !direct.is_empty() {
            parts.push(format!("remove {}", direct.iter().map(|d| d["sku"].as_str().unwrap_or("")).collect::<Vec<_>>().join(" + ")));
        }
        for i in &inherited {
            parts.push(format!("inherited {} via group {}", i["sku"].as_str().unwrap_or(""), i["group"].as_str().unwrap_or("")));
        }
        let preview = if parts.is_empty() { "Remove licences".to_string() } else { format!("Licences: {}", parts.join("; ")) };
        let after: Vec<StepKind> = b.kinds();
        let s = b.add(RemoveLicences, &after, json!({ "direct": direct, "inherited": inherited }), preview);
        if direct.is_empty() && inherited.is_empty() {
            s.skip = Some("no licences".into());
        } else if let Some(m) = mailbox
            && (m.size_bytes >= SHARED_MAILBOX_LICENCE_FREE_LIMIT || m.has_archive)
        {
            let why = if m.has_archive { "the mailbox has an archive" } else { "the mailbox is 50 GB or larger" };
            s.skip = Some(format!("{why}: a shared mailbox then still needs a licence, so licences stay"));
            s.warnings.push(format!("{why}; licences are kept"));
        }
    }

    // 6. Immutable id, then delete last.
    if o.clear_immutable_id {
        let after = b.kinds();
        let s = b.add(ClearImmutableId, &after, json!({}), "Clear the on-premises immutable ID".into());
        if user.on_prem_synced {
            s.skip = Some("synced user: on-premises AD owns the immutable ID".into());
        } else if user.immutable_id.is_none() {
            s.skip = Some("no immutable ID set".into());
        }
    }
    if let Some(d) = o.delete_user {
        let after = b.kinds();
        let when = if d.defer_days == 0 { "at the end of the run".to_string() } else { format!("{} days after approval", d.defer_days) };
        let s = b.add(DeleteUser, &after, json!({ "user": user.id, "defer_days": d.defer_days }), format!("Delete the user {when} (restorable for 30 days)"));
        s.high_risk = true;
        s.defer_days = d.defer_days;
        if user.on_prem_synced {
            s.skip = Some("synced user: delete the account in on-premises AD".into());
        }
    }

    let mut high_risk_reasons = Vec::new();
    if rules.admins_high_risk && user.is_admin() {
        high_risk_reasons.push(format!("{} holds admin roles", user.upn));
    }
    Plan { steps: b.steps, high_risk_reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::*;
    use crate::testing::rich_user;
    use chrono::Utc;

    fn valid(options: Options) -> ValidRequest {
        Request {
            tenant: crate::domain::TenantId::parse("contoso.com").unwrap(),
            user: "alice@contoso.com".into(),
            preset: None,
            options,
            schedule: Schedule::Now,
            emergency: false,
        }
        .validate(Utc::now())
        .unwrap()
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
            "Remove from 3 groups; 3 skipped: All Staff (dynamic membership), Sales-AD (synced from on-premises AD), Licensing-BI (licensing group: left by the licence step)"
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
        assert!(plan.step(&key(StepKind::DisableSignIn)).unwrap().warnings[0].contains("on-premises"));
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
        let od = plan.step(&key(StepKind::GrantOneDriveAccess)).unwrap();
        assert_eq!(od.params["grantees"], json!(["morgan@contoso.com", "it@contoso.com"]));
        let mut no_manager = rich_user();
        no_manager.manager = None;
        let plan = build(&valid(standard()), &no_manager, PlanRules::default());
        assert!(plan.step(&key(StepKind::GrantMailboxAccess)).unwrap().skip.as_deref().unwrap().contains("no manager"));
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
        assert!(build(&valid(o), &user, PlanRules { admins_high_risk: true }).needs_two_approvers());
    }
}
