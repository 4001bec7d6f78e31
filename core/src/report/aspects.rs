//! Each planned aspect of the account before and after, what was left in place and why,
//! and what was said on the leaver's behalf.

use super::*;

/// One row per aspect the plan touched, plus sign-in always.
pub(super) fn changes(s: &UserSnapshot, run: &RunRecord, after: &dyn Fn(StepKind) -> String) -> Vec<Change> {
    use StepKind::*;
    let planned = |k: StepKind| run.plan.steps.iter().any(|p| p.kind == k);
    let mailbox = s.mailbox.as_ref();
    let mailbox_before = |f: &dyn Fn(&crate::snapshot::Mailbox) -> String| match mailbox {
        Some(m) => f(m),
        None if s.mailbox_on_prem => "mailbox hosted on-premises".into(),
        None => "no mailbox".into(),
    };
    let mut out = Vec::new();
    let mut add = |aspect: &'static str, before: String, kind: StepKind| out.push(Change { aspect, before, after: after(kind) });
    add("Sign-in", if s.account_enabled { "enabled".into() } else { "already disabled".into() }, DisableSignIn);
    for p in &run.plan.steps {
        match p.kind {
            DisableSignIn => {}
            RevokeSessions => add("Sessions", "valid sessions and refresh tokens".into(), RevokeSessions),
            ResetPassword => {
                add("Password", s.last_password_change.as_ref().map_or_else(|| "last change unknown".into(), |t| format!("last changed {t}")), ResetPassword)
            }
            RemoveMfaMethods => {
                let methods: Vec<String> =
                    s.auth_methods.iter().filter(|m| !m.is_password()).map(|m| m.kind.trim_end_matches("AuthenticationMethod").to_string()).collect();
                add(
                    "MFA methods",
                    if methods.is_empty() { "none besides the password".into() } else { format!("{} registered: {}", methods.len(), methods.join(", ")) },
                    RemoveMfaMethods,
                )
            }
            RemoveAdminRoles => {
                let roles: Vec<String> =
                    s.roles.iter().map(|r| format!("{}{}", r.role_name, if r.state == RoleState::Eligible { " (eligible)" } else { "" })).collect();
                add("Admin roles", list_or(&roles, "none"), RemoveAdminRoles)
            }
            RemoveGroups => {
                let names: Vec<String> = s.groups.iter().map(|g| g.name.clone()).collect();
                add(
                    "Group memberships",
                    if names.is_empty() { "none".into() } else { format!("member of {}: {}", names.len(), names.join(", ")) },
                    RemoveGroups,
                )
            }
            RemoveInboxRules => add(
                "Inbox rules",
                mailbox_before(&|m| {
                    let names: Vec<String> =
                        m.inbox_rules.iter().map(|r| if r.forwards { format!("{} (forwards mail out)", r.name) } else { r.name.clone() }).collect();
                    if names.is_empty() { "none".into() } else { format!("{}: {}", names.len(), names.join(", ")) }
                }),
                RemoveInboxRules,
            ),
            RemoveMobileDevices => add("Mobile devices (ActiveSync)", mailbox_before(&|m| list_or(&m.mobile_devices, "none")), RemoveMobileDevices),
            RemoveMailboxPermissions => add(
                "Rights on other mailboxes",
                mailbox_before(&|m| list_or(&m.delegations.iter().map(|d| format!("{} on {}", d.rights, d.mailbox)).collect::<Vec<_>>(), "none")),
                RemoveMailboxPermissions,
            ),
            RemoveCalendarPermissions => add(
                "Access to other calendars",
                mailbox_before(&|m| {
                    list_or(&m.calendar_permissions.iter().map(|f| crate::snapshot::calendar_owner(f).to_string()).collect::<Vec<_>>(), "none")
                }),
                RemoveCalendarPermissions,
            ),
            DisableForwarding => {
                add("Forwarding", mailbox_before(&|m| m.forwarding.clone().map_or_else(|| "none".into(), |f| format!("to {f}"))), DisableForwarding)
            }
            CancelMeetings => add(
                "Meetings the user organises",
                mailbox_before(&|m| {
                    let subjects: Vec<String> = m.organised_meetings.iter().map(|e| e.subject.clone()).collect();
                    if subjects.is_empty() { "none upcoming".into() } else { format!("{} upcoming: {}", subjects.len(), subjects.join(", ")) }
                }),
                CancelMeetings,
            ),
            DeviceAction => {
                let managed: Vec<String> = s.devices.iter().filter(|d| d.managed).map(|d| d.name.clone()).collect();
                add(
                    "Intune devices",
                    if managed.is_empty() { "none managed".into() } else { format!("{} managed: {}", managed.len(), managed.join(", ")) },
                    DeviceAction,
                )
            }
            SetOutOfOffice => add(
                "Out of office",
                mailbox_before(&|m| m.auto_reply.clone().map_or_else(|| "not read".into(), |a| format!("automatic replies {a}"))),
                SetOutOfOffice,
            ),
            ForwardMail => add("Mail forwarded to", mailbox_before(&|m| m.forwarding.clone().unwrap_or_else(|| "no one".into())), ForwardMail),
            GrantMailboxAccess => add("Full access to the mailbox", mailbox_before(&|m| list_or(&m.full_access, "only the user")), GrantMailboxAccess),
            GrantOneDriveAccess => {
                add("OneDrive", s.onedrive.as_ref().map_or_else(|| "no OneDrive".into(), |d| format!("{} used", gib(d.used_bytes))), GrantOneDriveAccess)
            }
            TransferOwnership => {
                let owned: Vec<String> = s.owned_groups.iter().map(|g| g.describe()).collect();
                add(
                    "Group ownership",
                    if owned.is_empty() { "owns none".into() } else { format!("owns {}: {}", owned.len(), owned.join(", ")) },
                    TransferOwnership,
                )
            }
            HideFromGal => add("Address list", mailbox_before(&|m| if m.hidden_from_gal { "hidden".into() } else { "listed".into() }), HideFromGal),
            RenameDisplayName => add("Display name", s.display_name.clone(), RenameDisplayName),
            ConvertToShared => {
                let verified = if planned(VerifyShared) { VerifyShared } else { ConvertToShared };
                add(
                    "Mailbox type",
                    mailbox_before(&|m| format!("{} mailbox, {}", if m.kind == MailboxType::Shared { "shared" } else { "user" }, gib(m.size_bytes))),
                    verified,
                )
            }
            VerifyShared => {}
            RemoveLicences => {
                let mut skus: Vec<String> = Vec::new();
                for l in &s.licences {
                    if !skus.contains(&l.sku_part_number) {
                        skus.push(l.sku_part_number.clone());
                    }
                }
                add("Licences", list_or(&skus, "none"), RemoveLicences)
            }
            ClearImmutableId => add("Immutable ID", s.immutable_id.clone().unwrap_or_else(|| "none".into()), ClearImmutableId),
            DeleteUser => add("Account", "exists".into(), DeleteUser),
        }
    }
    out
}

/// Access the leaver still has after the run, with its reason: what the plan left, what a
/// step could not remove, and what was not asked for.
pub(super) fn left_in_place(s: &UserSnapshot, run: &RunRecord, steps: &[StepLine]) -> Vec<String> {
    use StepKind::*;
    let line = |k: StepKind| steps.iter().find(|l| l.kind == k);
    let done = |k: StepKind| {
        line(k).is_some_and(|l| matches!(l.state, StepState::Succeeded | StepState::Skipped) && !(k.cuts_access() && l.warning && l.left.is_empty()))
    };
    let mut out = Vec::new();
    match run.plan.step(&RemoveGroups.key()) {
        Some(p) if done(RemoveGroups) => {
            // A licensing group the licence step left is gone too.
            let licence_groups_left = done(RemoveLicences) && line(RemoveLicences).is_some_and(|l| l.state == StepState::Succeeded);
            for g in p.params["skipped"].as_array().into_iter().flatten() {
                let reason = g["reason"].as_str().unwrap_or("");
                if licence_groups_left && reason.starts_with("licensing group") {
                    continue;
                }
                out.push(format!("member of {}: {reason}", g["name"].as_str().unwrap_or("")));
            }
        }
        Some(_) => out.extend(s.groups.iter().map(|g| format!("member of {}: the group step did not finish", g.name))),
        None => out.extend(s.groups.iter().map(|g| format!("member of {}: not in the plan", g.name))),
    }
    match run.plan.step(&TransferOwnership.key()) {
        Some(p) if done(TransferOwnership) && p.skip.is_none() => {
            for m in &p.manual {
                out.push(format!("owner: {m}"));
            }
        }
        _ => out.extend(s.owned_groups.iter().map(|g| format!("owner of {}: ownership was not handed over", g.describe()))),
    }
    let not_planned_or_failed = |k: StepKind| !done(k);
    if not_planned_or_failed(RemoveAdminRoles) {
        out.extend(s.roles.iter().map(|r| format!("admin role {}: {}", r.role_name, why(run, steps, RemoveAdminRoles))));
    }
    if let Some(m) = &s.mailbox {
        if not_planned_or_failed(RemoveMailboxPermissions) {
            out.extend(m.delegations.iter().map(|d| format!("{} on {}: {}", d.rights, d.mailbox, why(run, steps, RemoveMailboxPermissions))));
        }
        if not_planned_or_failed(RemoveCalendarPermissions) {
            out.extend(
                m.calendar_permissions
                    .iter()
                    .map(|c| format!("access to the calendar of {}: {}", crate::snapshot::calendar_owner(c), why(run, steps, RemoveCalendarPermissions))),
            );
        }
        if not_planned_or_failed(DisableForwarding)
            && let Some(f) = &m.forwarding
        {
            out.push(format!("mail forwarding to {f}: {}", why(run, steps, DisableForwarding)));
        }
        if not_planned_or_failed(RemoveInboxRules) {
            out.extend(
                m.inbox_rules
                    .iter()
                    .filter(|r| r.forwards)
                    .map(|r| format!("inbox rule {} forwarding mail out: {}", r.name, why(run, steps, RemoveInboxRules))),
            );
        }
        if not_planned_or_failed(RemoveMobileDevices) {
            out.extend(m.mobile_devices.iter().map(|d| format!("mobile device {d}: {}", why(run, steps, RemoveMobileDevices))));
        }
    }
    if not_planned_or_failed(DeviceAction) {
        out.extend(s.devices.iter().filter(|d| d.managed).map(|d| format!("Intune device {}: {}", d.name, why(run, steps, DeviceAction))));
    }
    out
}

fn why(run: &RunRecord, steps: &[StepLine], kind: StepKind) -> String {
    match (run.plan.step(&kind.key()), steps.iter().find(|l| l.kind == kind)) {
        (None, _) => "not in the plan".into(),
        (Some(_), Some(l)) if matches!(l.state, StepState::Failed | StepState::NeedsAttention) => format!("the step did not take effect ({})", l.detail),
        _ => "the step did not finish".into(),
    }
}

/// Everything the run said or set on the leaver's behalf, as planned and approved.
pub(super) fn said(run: &RunRecord) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in &run.plan.steps {
        let planned = if p.skip.is_some() { " (not sent: the step was skipped)" } else { "" };
        match p.kind {
            StepKind::SetOutOfOffice => {
                out.push(("Out of office (internal)".to_string(), format!("{}{planned}", p.params["internal"].as_str().unwrap_or(""))));
                let ext = p.params["external"].as_str().unwrap_or("");
                out.push((
                    "Out of office (external)".to_string(),
                    if ext.trim().is_empty() { "no reply to external senders".to_string() } else { format!("{ext}{planned}") },
                ));
            }
            StepKind::ForwardMail => out.push(("Mail forwarded to".to_string(), format!("{}{planned}", p.params["to"].as_str().unwrap_or("no one")))),
            StepKind::RenameDisplayName => out.push(("New display name".to_string(), format!("{}{planned}", p.params["display_name"].as_str().unwrap_or("")))),
            _ => {}
        }
    }
    out
}
