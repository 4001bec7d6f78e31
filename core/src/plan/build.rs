//! `build`: a valid request and a discovered user become a plan, in the spec's order and
//! with its guards.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;
use crate::request::{Delegate, DeviceAction as Device, ForwardTarget, Options, ValidRequest};
use crate::snapshot::{MailboxType, RoleState, SHARED_MAILBOX_LICENCE_FREE_LIMIT, UserSnapshot};

/// Tenant rules and facts from outside the snapshot that shape a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanRules {
    /// Targets holding admin roles need two approvers.
    pub admins_high_risk: bool,
    /// The run that is offboarding the leaver's manager, if one is open.
    pub manager_leaving: Option<crate::domain::RunId>,
}

/// The steps that act on the leaver's own mailbox, which is converted only after them.
const ON_OWN_MAILBOX: &[StepKind] = &[
    StepKind::RemoveInboxRules,
    StepKind::RemoveMobileDevices,
    StepKind::DisableForwarding,
    StepKind::CancelMeetings,
    StepKind::SetOutOfOffice,
    StepKind::ForwardMail,
    StepKind::GrantMailboxAccess,
    StepKind::HideFromGal,
];

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
pub(super) fn manager_problem(user: &UserSnapshot, rules: &PlanRules) -> Option<String> {
    match &user.manager {
        None => Some(format!("{} has no manager in the directory", user.display_name)),
        Some(m) if !m.enabled => Some(format!("the manager, {} ({}), is disabled", m.display_name, m.upn)),
        Some(m) => rules.manager_leaving.as_ref().map(|run| format!("the manager, {} ({}), is being offboarded too (run {run})", m.display_name, m.upn)),
    }
}

/// The people a hand-over goes to: UPNs, the manager resolved from discovery when they
/// can take it over, and what was left out.
pub(super) struct Grantees {
    upns: Vec<String>,
    labels: Vec<String>,
    manager_left_out: bool,
}

pub(super) fn grantees(delegates: &[Delegate], user: &UserSnapshot, usable_manager: bool) -> Grantees {
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

pub(super) fn plural(n: usize, one: &str, many: &str) -> String {
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
                if c.is_empty() {
                    String::new()
                } else {
                    format!(" (calendars of {})", c.iter().map(|f| crate::snapshot::calendar_owner(f)).collect::<Vec<_>>().join(", "))
                }
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
        // Whatever acts on the user's own mailbox goes first (meetings are cancelled from
        // the user mailbox while it can still send); the rest of the clean-up, such as
        // leaving groups, does not hold up a conversion that takes minutes.
        let after: Vec<StepKind> = access.iter().filter(|k| lockout.contains(k) || ON_OWN_MAILBOX.contains(k)).copied().collect();
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
