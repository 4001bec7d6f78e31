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
    TransferOwnership,
    HideFromGal,
    RenameDisplayName,
    ConvertToShared,
    VerifyShared,
    RemoveLicences,
    ClearImmutableId,
    DeleteUser,
}

impl StepKind {
    pub const ALL: [StepKind; 25] = [
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
        Self::TransferOwnership,
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
            | TransferOwnership
            | RemoveLicences
            | DeleteUser => StepClass::Reconcilable,
            ResetPassword | CancelMeetings | DeviceAction => StepClass::AtMostOnce,
        }
    }

    /// The lockout group: the steps the emergency path may run before approval.
    pub fn is_lockout(self) -> bool {
        matches!(self, Self::DisableSignIn | Self::RevokeSessions | Self::ResetPassword | Self::RemoveMfaMethods)
    }

    /// Steps whose purpose is to cut the leaver's access. One that was planned and did not
    /// take effect is a failure, never a skip: the person keeps that access.
    pub fn cuts_access(self) -> bool {
        use StepKind::*;
        matches!(
            self,
            DisableSignIn
                | RevokeSessions
                | ResetPassword
                | RemoveMfaMethods
                | RemoveAdminRoles
                | RemoveGroups
                | RemoveInboxRules
                | RemoveMobileDevices
                | RemoveMailboxPermissions
                | RemoveCalendarPermissions
                | DisableForwarding
                | DeviceAction
                | TransferOwnership
        )
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
            TransferOwnership => "Hand over group ownership",
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
    /// What a person must still do by hand that this step cannot (on-premises groups):
    /// a step that succeeds with these left ends amber.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manual: Vec<String>,
}

/// The plan for one user: steps in dependency order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
    /// Extra reasons the plan needs two approvers, beyond its high-risk steps.
    pub high_risk_reasons: Vec<String>,
    /// What the approver must know that no single step says (a synced account, a manager
    /// who cannot take anything over, groups left with their owner).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The preset the request started from, and every way it departs from it.
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub deviations: Vec<String>,
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

/// Tenant rules and facts from outside the snapshot that shape a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanRules {
    /// Targets holding admin roles need two approvers.
    pub admins_high_risk: bool,
    /// The run that is offboarding the leaver's manager, if one is open.
    pub manager_leaving: Option<crate::domain::RunId>,
}

struct Builder {
    steps: Vec<PlannedStep>,
    /// Steps nothing waits for (those that only confirm what on-premises AD must do).
    independent: Vec<StepKind>,
}

impl Builder {
    fn add(&mut self, kind: StepKind, after: &[StepKind], params: Value, preview: String) -> &mut PlannedStep {
        let present: BTreeSet<StepKind> = self.steps.iter().map(|s| s.kind).collect();
        let after = after.iter().filter(|k| present.contains(k) && !self.independent.contains(k)).map(|k| k.key()).collect();
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
            manual: Vec::new(),
        });
        self.steps.last_mut().expect("just pushed")
    }

    fn kinds(&self) -> Vec<StepKind> {
        self.steps.iter().map(|s| s.kind).collect()
    }
}

/// Whether the leaver's manager can take anything over.
fn manager_problem(user: &UserSnapshot, rules: &PlanRules) -> Option<String> {
    match &user.manager {
        None => Some(format!("{} has no manager in the directory", user.display_name)),
        Some(m) if !m.enabled => Some(format!("the manager, {} ({}), is disabled", m.display_name, m.upn)),
        Some(m) => rules.manager_leaving.as_ref().map(|run| format!("the manager, {} ({}), is being offboarded too (run {run})", m.display_name, m.upn)),
    }
}

/// The people a hand-over goes to: UPNs, the manager resolved from discovery when they
/// can take it over, and what was left out.
struct Grantees {
    upns: Vec<String>,
    labels: Vec<String>,
    manager_left_out: bool,
}

fn grantees(delegates: &[Delegate], user: &UserSnapshot, usable_manager: bool) -> Grantees {
    let mut g = Grantees { upns: Vec::new(), labels: Vec::new(), manager_left_out: false };
    for d in delegates {
        let (upn, label) = match d {
            Delegate::Manager => match user.manager.as_ref().filter(|_| usable_manager) {
                Some(m) => (m.upn.to_string(), format!("{} (manager)", m.upn)),
                None => {
                    g.manager_left_out = true;
                    continue;
                }
            },
            Delegate::User(u) => (u.to_string(), u.to_string()),
        };
        if !g.upns.contains(&upn) {
            g.upns.push(upn);
            g.labels.push(label);
        }
    }
    g
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}

/// Builds the plan of spec §3 from a valid request and the discovered user.
pub fn build(req: &ValidRequest, user: &UserSnapshot, rules: PlanRules) -> Plan {
    use StepKind::*;
    let o: &Options = &req.request.options;
    let synced = user.on_prem_synced;
    let mut b = Builder { steps: Vec::new(), independent: if synced { vec![DisableSignIn, ResetPassword] } else { vec![] } };
    let mut notes = Vec::new();
    let mailbox = user.mailbox.as_ref();
    let no_mailbox = if user.mailbox_on_prem {
        "the mailbox is hosted on-premises: Exchange Online cannot change it; do this in on-premises Exchange"
    } else {
        "the user has no mailbox"
    };
    let manager_problem = manager_problem(user, &rules);
    let usable_manager = manager_problem.is_none();
    let wants_manager = o.mailbox_access.as_ref().is_some_and(|a| a.delegates.contains(&Delegate::Manager))
        || o.onedrive_access.contains(&Delegate::Manager)
        || o.transfer_ownership == Some(Delegate::Manager)
        || o.forward_to.as_ref().is_some_and(|f| f.target == ForwardTarget::Manager)
        || o.out_of_office.as_ref().is_some_and(|t| crate::handover::names_manager(&t.internal) || crate::handover::names_manager(&t.external));
    if let Some(p) = &manager_problem
        && wants_manager
    {
        notes.push(format!(
            "Hand-over: {p}, so nothing is handed to them and no message names them. Choose another person (reject, and request again naming them)."
        ));
    }
    let mut text_values = crate::handover::Values::of(user, usable_manager);
    // After an earlier run renamed the user, replies still name them as people knew them.
    if let Some(original) = o.rename_template.as_deref().and_then(|t| crate::handover::name_before_rename(t, &user.display_name, &text_values)) {
        text_values.display_name = original;
    }
    let unusable_manager = |what: &str| format!("{what} goes to the manager, but {}: choose another person", manager_problem.clone().unwrap_or_default());

    // 2. Lockout. Entra cannot block sign-in or reset the password of an account that
    // on-premises AD owns: for such a user these steps only confirm what was done in AD,
    // and nothing else waits for them.
    if synced && (o.disable_sign_in || o.reset_password) {
        let mut todo = Vec::new();
        if o.disable_sign_in && user.account_enabled {
            todo.push("disable the account");
        }
        if o.reset_password {
            todo.push("reset its password");
        }
        if !todo.is_empty() {
            notes.push(format!(
                "{} is synced from on-premises AD: Entra cannot do this in the cloud. In AD, {}, and let it sync; until then {} can still sign in. The run confirms it, and fails if it is not done.",
                user.upn,
                todo.join(" and "),
                user.display_name
            ));
        }
    }
    if o.disable_sign_in {
        let preview = if !user.account_enabled {
            format!("Confirm sign-in stays blocked for {} (already blocked)", user.upn)
        } else if synced {
            format!("Confirm sign-in is blocked for {}: disable the account in on-premises AD, Entra cannot", user.upn)
        } else {
            format!("Block sign-in for {}", user.upn)
        };
        let s = b.add(DisableSignIn, &[], json!({ "user": user.id, "synced": synced }), preview);
        if synced {
            s.manual.push(format!("keep {} disabled in on-premises AD: each sync from AD decides whether it can sign in", user.upn));
        }
    }
    let after_disable: &[StepKind] = &[DisableSignIn];
    if o.revoke_sessions {
        b.add(RevokeSessions, after_disable, json!({ "user": user.id }), "Revoke every refresh token and session".into());
    }
    if o.reset_password {
        // Once sign-in is blocked, the revoke and the reset need nothing from each other:
        // they run together, so the lockout lands two round trips after approval.
        let preview = if synced {
            "Confirm the password was reset in on-premises AD: Entra cannot reset a synced account's password".to_string()
        } else {
            "Set a random strong password (never shown anywhere)".to_string()
        };
        b.add(ResetPassword, after_disable, json!({ "user": user.id, "changed_before": user.last_password_change, "synced": synced }), preview);
    }
    if o.remove_mfa {
        let removable: Vec<_> = user.auth_methods.iter().filter(|m| !m.is_password()).collect();
        let ids: Vec<Value> = removable.iter().map(|m| json!({ "id": m.id, "kind": m.kind })).collect();
        let s = b.add(
            RemoveMfaMethods,
            after_disable,
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
        let mut manual = Vec::new();
        for g in &user.groups {
            let reason = if g.dynamic {
                Some("dynamic membership: its rule decides")
            } else if g.on_prem_synced {
                manual.push(format!("remove {} from {} in on-premises AD", user.upn, g.name));
                Some("synced from on-premises AD: remove the membership there")
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
            preview.push_str(&format!("; {} left: {}", skipped.len(), why.join(", ")));
        }
        let empty = remove.is_empty();
        let s = b.add(RemoveGroups, &lockout, json!({ "remove": remove, "skipped": skipped }), preview);
        s.manual = manual;
        if empty {
            s.skip = Some("no groups the engine can leave".into());
        }
    }
    let mailbox_step = |b: &mut Builder, kind: StepKind, params: Value, preview: String, empty: Option<&str>| {
        let s = b.add(kind, &lockout, params, preview);
        if mailbox.is_none() {
            s.skip = Some(no_mailbox.into());
            if user.mailbox_on_prem {
                s.warnings.push("on-premises mailbox: not changed by this run".into());
            }
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
        let names: Vec<String> = d.iter().map(|x| format!("{} on {}", x.rights, x.mailbox)).collect();
        mailbox_step(
            &mut b,
            RemoveMailboxPermissions,
            json!({ "delegations": list }),
            format!(
                "Remove {} on other mailboxes{}",
                plural(d.len(), "permission", "permissions"),
                if names.is_empty() { String::new() } else { format!(": {}", names.join(", ")) }
            ),
            d.is_empty().then_some("no permissions on other mailboxes"),
        );
    }
    if o.remove_calendar_permissions {
        let c = mailbox.map(|m| m.calendar_permissions.clone()).unwrap_or_default();
        mailbox_step(
            &mut b,
            RemoveCalendarPermissions,
            json!({ "calendars": c }),
            format!(
                "Remove {}{}",
                plural(c.len(), "calendar permission", "calendar permissions"),
                if c.is_empty() { String::new() } else { format!(" (calendars of {})", c.join(", ")) }
            ),
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
        match b.steps.iter_mut().find(|s| s.kind == DisableForwarding) {
            Some(s) => s.warnings.push(format!("existing forward to {fwd}")),
            None => notes.push(format!("The mailbox forwards to {fwd}, and no step turns it off.")),
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
        let filled = crate::handover::fill(&oof.internal, &text_values).and_then(|i| crate::handover::fill(&oof.external, &text_values).map(|e| (i, e)));
        let (internal, external, missing) = match filled {
            Ok((i, e)) => (i, e, None),
            Err(_) => (oof.internal.clone(), oof.external.clone(), manager_problem.clone()),
        };
        let mut preview = format!("Turn on out of office. Internal: \"{internal}\"");
        preview.push_str(&if external.trim().is_empty() { " External senders: no reply".to_string() } else { format!(" External: \"{external}\"") });
        mailbox_step(&mut b, SetOutOfOffice, json!({ "internal": internal, "external": external }), preview, None);
        if let Some(p) = missing
            && mailbox.is_some()
            && let Some(s) = b.steps.last_mut()
        {
            s.skip = Some(format!("the reply names the manager, but {p}: write it with another contact"));
            s.warnings.push("no out-of-office reply is set".into());
        }
    }
    if let Some(f) = &o.forward_to {
        let (to, external) = match &f.target {
            ForwardTarget::Manager => (user.manager.as_ref().filter(|_| usable_manager).map(|m| m.upn.to_string()), false),
            ForwardTarget::User(u) => (Some(u.to_string()), false),
            ForwardTarget::External(a) => (Some(a.to_string()), true),
        };
        let shown = to.clone().unwrap_or_else(|| "the manager".into());
        let preview = format!("Forward mail to {shown}{}", if f.keep_copy { ", keeping a copy" } else { "" });
        let skip_reason = to.is_none().then(|| unusable_manager("forwarded mail"));
        mailbox_step(&mut b, ForwardMail, json!({ "to": to, "external": external, "keep_copy": f.keep_copy }), preview, skip_reason.as_deref());
        if let Some(s) = b.steps.last_mut() {
            if external {
                s.warnings.push(format!("forwards every new mail outside the organisation, to {shown}"));
            }
            if skip_reason.is_some() {
                s.warnings.push("no one receives the leaver's mail".into());
            }
        }
    }
    if let Some(access) = &o.mailbox_access {
        let g = grantees(&access.delegates, user, usable_manager);
        let who = if g.labels.is_empty() { "the manager".to_string() } else { g.labels.join(", ") };
        let skip = g.upns.is_empty().then(|| unusable_manager("mailbox access"));
        mailbox_step(
            &mut b,
            GrantMailboxAccess,
            json!({ "delegates": access.delegates, "grantees": g.upns, "automap": access.automap }),
            format!("Give full mailbox access to {who}{}", if access.automap { " (automapped)" } else { "" }),
            skip.as_deref(),
        );
        if (skip.is_some() || g.manager_left_out)
            && mailbox.is_some()
            && let Some(s) = b.steps.last_mut()
        {
            s.warnings.push(format!("the manager gets no access: {}", manager_problem.clone().unwrap_or_default()));
        }
    }
    if !o.onedrive_access.is_empty() {
        let g = grantees(&o.onedrive_access, user, usable_manager);
        let who = if g.labels.is_empty() { "the manager".to_string() } else { g.labels.join(", ") };
        let s = b.add(GrantOneDriveAccess, &lockout, json!({ "delegates": o.onedrive_access, "grantees": g.upns }), format!("Give OneDrive access to {who}"));
        if user.onedrive.is_none() {
            s.skip = Some("the user has no OneDrive".into());
        } else if g.upns.is_empty() {
            s.skip = Some(unusable_manager("OneDrive access"));
        }
        if user.onedrive.is_some() && g.manager_left_out {
            s.warnings.push(format!("the manager gets no access: {}", manager_problem.clone().unwrap_or_default()));
        }
    }
    if let Some(to) = &o.transfer_ownership {
        let g = grantees(std::slice::from_ref(to), user, usable_manager);
        let mut hand = Vec::new();
        let mut manual = Vec::new();
        for og in &user.owned_groups {
            if og.on_prem_synced {
                manual.push(format!("hand over {} in on-premises AD", og.name));
            } else {
                hand.push(
                    json!({ "id": og.id, "name": og.name, "kind": og.kind, "team": og.team, "via_exchange": og.kind.via_exchange(), "owners": og.owners }),
                );
            }
        }
        let names: Vec<String> = user.owned_groups.iter().map(|g| g.describe()).collect();
        let who = g.labels.first().cloned().unwrap_or_else(|| "the manager".into());
        let s = b.add(
            TransferOwnership,
            &lockout,
            json!({ "to": g.upns.first(), "groups": hand }),
            format!(
                "Hand over ownership of {} to {who}{}",
                plural(user.owned_groups.len(), "group", "groups"),
                if names.is_empty() { String::new() } else { format!(": {}", names.join(", ")) }
            ),
        );
        s.manual = manual;
        if user.owned_groups.is_empty() {
            s.skip = Some("owns no groups".into());
        } else if g.upns.is_empty() {
            s.skip = Some(unusable_manager("group ownership"));
            s.warnings.push("the groups keep the leaver as their owner".into());
        }
    } else if !user.owned_groups.is_empty() {
        let names: Vec<String> = user.owned_groups.iter().map(|g| g.describe()).collect();
        notes.push(format!(
            "{} owns {}: {}. Ownership stays with the leaver; choose \"Group ownership to\" to hand it over.",
            user.display_name,
            plural(names.len(), "group", "groups"),
            names.join(", ")
        ));
    }
    if o.hide_from_gal {
        mailbox_step(&mut b, HideFromGal, json!({}), "Hide from the global address list".into(), None);
    }
    if let Some(t) = &o.rename_template {
        let current = crate::handover::Values { display_name: user.display_name.clone(), ..crate::handover::Values::of(user, usable_manager) };
        let name = crate::handover::rename(t, &current).unwrap_or_else(|_| t.clone());
        let preview = if name == user.display_name {
            format!("Keep the display name \"{name}\" (already renamed)")
        } else {
            format!("Rename \"{}\" to \"{name}\"", user.display_name)
        };
        b.add(RenameDisplayName, &lockout, json!({ "display_name": name }), preview);
    }
    let access: Vec<StepKind> = b.kinds();

    // 4. Convert, then verify: the guard for the licences.
    if o.convert_to_shared {
        let already = mailbox.is_some_and(|m| m.kind == MailboxType::Shared);
        mailbox_step(&mut b, ConvertToShared, json!({}), "Convert the mailbox to a shared mailbox".into(), already.then_some("already a shared mailbox"));
        // Meetings are cancelled from the user mailbox while it can still send.
        let after: Vec<StepKind> = access.clone();
        let independent = b.independent.clone();
        let s = b.steps.last_mut().expect("just added");
        s.after = after.iter().filter(|k| **k != ConvertToShared && !independent.contains(k)).map(|k| k.key()).collect();
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
        if synced {
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
        if synced {
            s.skip = Some("synced user: delete the account in on-premises AD".into());
            s.warnings.push("the account is not deleted by this run".into());
        }
    }

    let mut high_risk_reasons = Vec::new();
    if rules.admins_high_risk && user.is_admin() {
        high_risk_reasons.push(format!("{} holds admin roles", user.upn));
    }
    Plan { steps: b.steps, high_risk_reasons, notes, preset: req.request.preset.as_ref().map(|p| p.to_string()), deviations: Vec::new() }
}

#[cfg(test)]
mod tests {
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
        assert!(
            plan.notes[0].contains("synced from on-premises AD") && plan.notes[0].contains("disable the account and reset its password"),
            "{:?}",
            plan.notes
        );
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
            for k in [StepKind::GrantMailboxAccess, StepKind::GrantOneDriveAccess, StepKind::ForwardMail, StepKind::SetOutOfOffice, StepKind::TransferOwnership]
            {
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
}
