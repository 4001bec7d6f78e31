//! What a requester asks for: every option of the wizard, checked before a plan is built.

use std::collections::BTreeMap;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::domain::{PresetName, TenantId, Upn};

/// A person named in a hand-over option: the leaver's manager (resolved from discovery)
/// or a user of the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "upn")]
pub enum Delegate {
    Manager,
    User(Upn),
}

impl Delegate {
    pub fn label(&self) -> String {
        match self {
            Self::Manager => "the manager".into(),
            Self::User(u) => u.to_string(),
        }
    }
}

/// Where forwarded mail goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "address")]
pub enum ForwardTarget {
    Manager,
    User(Upn),
    /// An address outside the tenant (checked as an e-mail address).
    External(Upn),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceAction {
    /// Removes company data and the management profile; keeps personal data.
    Retire,
    /// Factory reset. High risk: needs a second approver.
    Wipe,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfOffice {
    pub internal: String,
    pub external: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardTo {
    pub target: ForwardTarget,
    pub keep_copy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxAccess {
    pub delegates: Vec<Delegate>,
    pub automap: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteUser {
    /// 0 deletes at the end of the run; N waits N days after approval.
    pub defer_days: u16,
}

/// Every option of the wizard (spec §2). `Default` is "do nothing".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    // Lockout
    pub disable_sign_in: bool,
    pub revoke_sessions: bool,
    pub reset_password: bool,
    pub remove_mfa: bool,
    // Access
    pub remove_admin_roles: bool,
    pub remove_groups: bool,
    pub remove_inbox_rules: bool,
    pub remove_mobile_devices: bool,
    pub remove_mailbox_permissions: bool,
    pub remove_calendar_permissions: bool,
    pub disable_forwarding: bool,
    pub cancel_meetings: bool,
    pub device_action: Option<DeviceAction>,
    // Hand-over
    pub out_of_office: Option<OutOfOffice>,
    pub forward_to: Option<ForwardTo>,
    pub mailbox_access: Option<MailboxAccess>,
    pub onedrive_access: Vec<Delegate>,
    /// Who takes over the groups, distribution lists and Teams the leaver owns.
    pub transfer_ownership: Option<Delegate>,
    // Mailbox
    pub convert_to_shared: bool,
    pub hide_from_gal: bool,
    // Identity
    pub remove_licences: bool,
    pub rename_template: Option<String>,
    pub clear_immutable_id: bool,
    pub delete_user: Option<DeleteUser>,
}

/// Which high-risk steps a request contains; each needs two distinct approvers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighRisk {
    DeleteUser,
    WipeDevices,
    AdminTarget,
}

impl HighRisk {
    pub fn label(self) -> &'static str {
        match self {
            Self::DeleteUser => "delete user",
            Self::WipeDevices => "wipe devices",
            Self::AdminTarget => "target holds admin roles",
        }
    }
}

impl Options {
    /// The lockout group that the emergency path may run before approval.
    pub fn has_lockout(&self) -> bool {
        self.disable_sign_in || self.revoke_sessions || self.reset_password || self.remove_mfa
    }

    fn action_count(&self) -> usize {
        let flags = [
            self.disable_sign_in,
            self.revoke_sessions,
            self.reset_password,
            self.remove_mfa,
            self.remove_admin_roles,
            self.remove_groups,
            self.remove_inbox_rules,
            self.remove_mobile_devices,
            self.remove_mailbox_permissions,
            self.remove_calendar_permissions,
            self.disable_forwarding,
            self.cancel_meetings,
            self.device_action.is_some(),
            self.out_of_office.is_some(),
            self.forward_to.is_some(),
            self.mailbox_access.is_some(),
            !self.onedrive_access.is_empty(),
            self.transfer_ownership.is_some(),
            self.convert_to_shared,
            self.hide_from_gal,
            self.remove_licences,
            self.rename_template.is_some(),
            self.clear_immutable_id,
            self.delete_user.is_some(),
        ];
        flags.iter().filter(|f| **f).count()
    }

    /// Options that an immediate delete makes moot: the mailbox, its hand-over and the
    /// account's cosmetics go with the user.
    pub fn moot_with_immediate_delete(&self) -> Vec<&'static str> {
        let mut moot = Vec::new();
        let mut check = |on: bool, name: &'static str| {
            if on {
                moot.push(name)
            }
        };
        check(self.out_of_office.is_some(), "Out of office");
        check(self.forward_to.is_some(), "Forward mail to");
        check(self.mailbox_access.is_some(), "Full mailbox access to");
        check(!self.onedrive_access.is_empty(), "OneDrive access to");
        check(self.convert_to_shared, "Convert to shared mailbox");
        check(self.hide_from_gal, "Hide from the address list");
        check(self.remove_licences, "Remove licences");
        check(self.rename_template.is_some(), "Rename display name");
        check(self.clear_immutable_id, "Clear immutable ID");
        moot
    }

    /// Every option that is on, as (label, value) in wizard order: what previews, reports
    /// and preset comparisons show.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let people = |list: &[Delegate]| list.iter().map(Delegate::label).collect::<Vec<_>>().join(", ");
        for (on, label) in [
            (self.disable_sign_in, "Disable sign-in"),
            (self.revoke_sessions, "Revoke all sessions"),
            (self.reset_password, "Reset password"),
            (self.remove_mfa, "Remove MFA methods"),
            (self.remove_admin_roles, "Remove admin roles"),
            (self.remove_groups, "Remove from all groups"),
            (self.remove_inbox_rules, "Remove inbox rules"),
            (self.remove_mobile_devices, "Remove mobile devices"),
            (self.remove_mailbox_permissions, "Remove permissions on other mailboxes"),
            (self.remove_calendar_permissions, "Remove calendar permissions"),
            (self.disable_forwarding, "Disable existing forwarding"),
            (self.cancel_meetings, "Cancel meetings the user organises"),
        ] {
            if on {
                out.push((label, "yes".into()));
            }
        }
        if let Some(d) = self.device_action {
            out.push(("Intune devices", if d == DeviceAction::Wipe { "wipe".into() } else { "retire".into() }));
        }
        if let Some(oof) = &self.out_of_office {
            out.push(("Out of office (internal)", oof.internal.clone()));
            out.push(("Out of office (external)", oof.external.clone()));
        }
        if let Some(f) = &self.forward_to {
            let to = match &f.target {
                ForwardTarget::Manager => "the manager".to_string(),
                ForwardTarget::User(u) | ForwardTarget::External(u) => u.to_string(),
            };
            out.push(("Forward mail to", format!("{to}{}", if f.keep_copy { ", keeping a copy" } else { "" })));
        }
        if let Some(a) = &self.mailbox_access {
            out.push(("Full mailbox access to", format!("{}{}", people(&a.delegates), if a.automap { ", automapped" } else { "" })));
        }
        if !self.onedrive_access.is_empty() {
            out.push(("OneDrive access to", people(&self.onedrive_access)));
        }
        if let Some(d) = &self.transfer_ownership {
            out.push(("Group ownership to", d.label()));
        }
        for (on, label) in [
            (self.convert_to_shared, "Convert to shared mailbox"),
            (self.hide_from_gal, "Hide from the address list"),
            (self.remove_licences, "Remove licences"),
        ] {
            if on {
                out.push((label, "yes".into()));
            }
        }
        if let Some(t) = &self.rename_template {
            out.push(("Rename display name to", t.clone()));
        }
        if self.clear_immutable_id {
            out.push(("Clear immutable ID", "yes".into()));
        }
        if let Some(d) = self.delete_user {
            out.push(("Delete the user", if d.defer_days == 0 { "at the end of the run".into() } else { format!("{} days later", d.defer_days) }));
        }
        out
    }

    /// How these options differ from a preset's, one line each, in plain words.
    pub fn deviations_from(&self, preset: &Options) -> Vec<String> {
        let mine = self.summary();
        let theirs = preset.summary();
        let get = |list: &[(&'static str, String)], k: &str| list.iter().find(|(l, _)| *l == k).map(|(_, v)| v.clone());
        let mut labels: Vec<&'static str> = theirs.iter().map(|(l, _)| *l).collect();
        for (l, _) in &mine {
            if !labels.contains(l) {
                labels.push(l);
            }
        }
        let mut out = Vec::new();
        for l in labels {
            match (get(&theirs, l), get(&mine, l)) {
                (Some(a), Some(b)) if a != b => out.push(format!("changed {l}: \"{a}\" → \"{b}\"")),
                (Some(_), None) => out.push(format!("removed {l}")),
                (None, Some(v)) if v == "yes" => out.push(format!("added {l}")),
                (None, Some(v)) => out.push(format!("added {l}: \"{v}\"")),
                _ => {}
            }
        }
        out
    }

    pub fn high_risk(&self) -> Vec<HighRisk> {
        let mut out = Vec::new();
        if self.delete_user.is_some() {
            out.push(HighRisk::DeleteUser);
        }
        if self.device_action == Some(DeviceAction::Wipe) {
            out.push(HighRisk::WipeDevices);
        }
        out
    }
}

/// When the run starts once approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    Now,
    At { local: NaiveDateTime, tz: String },
}

impl Schedule {
    /// The UTC instant, refusing zones that do not exist and wall-clock times that fall
    /// in a daylight-saving gap or overlap (the requester must say which one they mean).
    pub fn resolve(&self) -> Result<Option<DateTime<Utc>>, RequestError> {
        match self {
            Self::Now => Ok(None),
            Self::At { local, tz } => {
                let zone: Tz = tz.parse().map_err(|_| RequestError::Field {
                    field: "schedule_tz",
                    message: format!("\"{tz}\" is not a time zone; use an IANA name such as Europe/Berlin"),
                })?;
                match zone.from_local_datetime(local) {
                    LocalResult::Single(t) => Ok(Some(t.with_timezone(&Utc))),
                    LocalResult::Ambiguous(a, b) => Err(RequestError::Field {
                        field: "schedule_at",
                        message: format!(
                            "{local} happens twice in {tz} (clocks go back): it could be {} or {} UTC; pick another time",
                            a.with_timezone(&Utc).format("%H:%M"),
                            b.with_timezone(&Utc).format("%H:%M")
                        ),
                    }),
                    LocalResult::None => Err(RequestError::Field {
                        field: "schedule_at",
                        message: format!("{local} does not exist in {tz} (clocks go forward); pick another time"),
                    }),
                }
            }
        }
    }
}

/// A request as the requester filled it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub tenant: TenantId,
    /// A UPN or an object id.
    pub user: String,
    pub preset: Option<PresetName>,
    pub options: Options,
    pub schedule: Schedule,
    /// Run the lockout group at once, before approval ("walked out the door").
    #[serde(default)]
    pub emergency: bool,
    /// Why this person is offboarded, in the requester's words: recorded in the report.
    #[serde(default)]
    pub reason: Option<String>,
    /// The ticket this request answers (a PSA or service-desk reference).
    #[serde(default)]
    pub ticket: Option<String>,
}

impl Request {
    /// A request to run now, with no preset, reason or ticket.
    pub fn now(tenant: TenantId, user: impl Into<String>, options: Options) -> Self {
        Request { tenant, user: user.into(), preset: None, options, schedule: Schedule::Now, emergency: false, reason: None, ticket: None }
    }
}

/// Why a request was refused, naming the wizard field to fix where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("{message}")]
    Field { field: &'static str, message: String },
    #[error("choose at least one action")]
    NothingToDo,
}

impl RequestError {
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Field { field, .. } => Some(field),
            Self::NothingToDo => None,
        }
    }
}

/// A request that passed every check; only `validate` builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRequest {
    pub request: Request,
    pub start_at: Option<DateTime<Utc>>,
}

impl Request {
    pub fn validate(self, now: DateTime<Utc>) -> Result<ValidRequest, Vec<RequestError>> {
        let mut errors = Vec::new();
        let o = &self.options;
        if o.action_count() == 0 {
            errors.push(RequestError::NothingToDo);
        }
        if o.forward_to.is_some() && o.disable_forwarding {
            errors.push(RequestError::Field {
                field: "forward_to",
                message: "\"Forward mail to\" and \"Disable existing forwarding\" contradict each other: the new forward replaces the old one, so untick one"
                    .into(),
            });
        }
        if let Some(DeleteUser { defer_days: 0 }) = o.delete_user {
            let moot = o.moot_with_immediate_delete();
            if !moot.is_empty() {
                errors.push(RequestError::Field {
                    field: "delete_user",
                    message: format!("deleting the user at once makes these options moot: {}; untick them or defer the deletion", moot.join(", ")),
                });
            }
        }
        if o.delete_user.is_some_and(|d| d.defer_days > 90) {
            errors.push(RequestError::Field { field: "delete_user", message: "defer the deletion by at most 90 days".into() });
        }
        if let Some(t) = &o.rename_template {
            if t.trim().is_empty() {
                errors.push(RequestError::Field { field: "rename_template", message: "the new display name is empty".into() });
            }
            if let Err(message) = crate::handover::check(t, crate::handover::MAX_NAME_CHARS) {
                errors.push(RequestError::Field { field: "rename_template", message });
            }
        }
        if let Some(oof) = &o.out_of_office {
            if oof.internal.trim().is_empty() && oof.external.trim().is_empty() {
                errors.push(RequestError::Field { field: "oof_internal", message: "write an internal or an external message".into() });
            }
            for (field, text) in [("oof_internal", &oof.internal), ("oof_external", &oof.external)] {
                if let Err(message) = crate::handover::check(text, crate::handover::MAX_REPLY_CHARS) {
                    errors.push(RequestError::Field { field, message });
                }
            }
        }
        for (field, text) in [("reason", &self.reason), ("ticket", &self.ticket)] {
            let max = if field == "reason" { 1000 } else { 100 };
            if text.as_ref().is_some_and(|t| t.chars().count() > max) {
                errors.push(RequestError::Field { field, message: format!("at most {max} characters") });
            }
        }
        if let Some(access) = &o.mailbox_access
            && access.delegates.is_empty()
        {
            errors.push(RequestError::Field { field: "mailbox_access", message: "name at least one person to receive access".into() });
        }
        let start_at = match self.schedule.resolve() {
            Ok(Some(at)) if at <= now => {
                errors.push(RequestError::Field {
                    field: "schedule_at",
                    message: format!("the scheduled time {} UTC is in the past", at.format("%Y-%m-%d %H:%M")),
                });
                None
            }
            Ok(at) => at,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        if self.emergency && !o.has_lockout() {
            errors.push(RequestError::Field {
                field: "emergency",
                message: "the emergency path runs the lockout steps at once: choose at least one of them".into(),
            });
        }
        if errors.is_empty() { Ok(ValidRequest { request: self, start_at }) } else { Err(errors) }
    }
}

/// Named sets of defaults, per tenant, with two built in.
#[derive(Debug, Clone, Default)]
pub struct Presets {
    by_tenant: BTreeMap<TenantId, BTreeMap<PresetName, Options>>,
    /// The operator's `oof/*.txt` templates, replacing the built-in presets' texts.
    out_of_office: Option<OutOfOffice>,
}

impl Presets {
    pub fn builtin(name: &PresetName) -> Option<Options> {
        // What every leaver gets: locked out, stripped of access, mailbox handed to the manager.
        let base = Options {
            disable_sign_in: true,
            revoke_sessions: true,
            reset_password: true,
            remove_mfa: true,
            remove_admin_roles: true,
            remove_groups: true,
            remove_inbox_rules: true,
            remove_mobile_devices: true,
            disable_forwarding: true,
            onedrive_access: vec![Delegate::Manager],
            transfer_ownership: Some(Delegate::Manager),
            convert_to_shared: true,
            hide_from_gal: true,
            remove_licences: true,
            ..Options::default()
        };
        match name.as_str() {
            "standard-leaver" => Some(Options {
                out_of_office: Some(OutOfOffice { internal: crate::templates::OOF_INTERNAL.into(), external: crate::templates::OOF_EXTERNAL.into() }),
                mailbox_access: Some(MailboxAccess { delegates: vec![Delegate::Manager], automap: true }),
                device_action: Some(DeviceAction::Retire),
                ..base
            }),
            // No out of office, no automapping, devices wiped, every delegation removed.
            "hostile-exit" => Some(Options {
                remove_mailbox_permissions: true,
                remove_calendar_permissions: true,
                device_action: Some(DeviceAction::Wipe),
                mailbox_access: Some(MailboxAccess { delegates: vec![Delegate::Manager], automap: false }),
                ..base
            }),
            _ => None,
        }
    }

    pub fn insert(&mut self, tenant: TenantId, name: PresetName, options: Options) {
        self.by_tenant.entry(tenant).or_default().insert(name, options);
    }

    pub fn with_out_of_office(mut self, oof: OutOfOffice) -> Self {
        self.out_of_office = Some(oof);
        self
    }

    /// The out-of-office texts an operator vetted: the template directory's, or the shipped.
    pub fn default_out_of_office(&self) -> OutOfOffice {
        self.out_of_office
            .clone()
            .unwrap_or_else(|| OutOfOffice { internal: crate::templates::OOF_INTERNAL.into(), external: crate::templates::OOF_EXTERNAL.into() })
    }

    /// A tenant's own preset wins over a built-in one of the same name.
    pub fn get(&self, tenant: &TenantId, name: &PresetName) -> Option<Options> {
        if let Some(own) = self.by_tenant.get(tenant).and_then(|m| m.get(name)) {
            return Some(own.clone());
        }
        let mut options = Self::builtin(name)?;
        if let (Some(oof), Some(texts)) = (options.out_of_office.as_mut(), &self.out_of_office) {
            *oof = texts.clone();
        }
        Some(options)
    }

    pub fn names(&self, tenant: &TenantId) -> Vec<PresetName> {
        let mut names: Vec<PresetName> = ["standard-leaver", "hostile-exit"].iter().map(|n| PresetName::parse(n).expect("builtin")).collect();
        if let Some(m) = self.by_tenant.get(tenant) {
            names.extend(m.keys().cloned());
        }
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn req(options: Options) -> Request {
        Request::now(TenantId::parse("contoso.com").unwrap(), "alice@contoso.com", options)
    }

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, tz: &str) -> Schedule {
        Schedule::At { local: NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap(), tz: tz.into() }
    }

    #[test]
    fn needs_an_action() {
        let errs = req(Options::default()).validate(now()).unwrap_err();
        assert_eq!(errs, vec![RequestError::NothingToDo]);
    }

    #[test]
    fn forwarding_conflict_names_the_field() {
        let o = Options { disable_forwarding: true, forward_to: Some(ForwardTo { target: ForwardTarget::Manager, keep_copy: true }), ..Options::default() };
        let errs = req(o).validate(now()).unwrap_err();
        assert_eq!(errs[0].field(), Some("forward_to"));
    }

    #[test]
    fn immediate_delete_lists_moot_options_but_deferred_is_fine() {
        let mut o = Presets::builtin(&PresetName::parse("standard-leaver").unwrap()).unwrap();
        o.delete_user = Some(DeleteUser { defer_days: 0 });
        let errs = req(o.clone()).validate(now()).unwrap_err();
        let msg = errs[0].to_string();
        assert!(msg.contains("Convert to shared mailbox") && msg.contains("Remove licences"), "{msg}");
        o.delete_user = Some(DeleteUser { defer_days: 30 });
        assert!(req(o).validate(now()).is_ok());
    }

    #[test]
    fn schedule_in_the_past_or_in_a_dst_gap_is_refused() {
        let mut r = req(Options { disable_sign_in: true, ..Options::default() });
        r.schedule = at(2026, 2, 1, 9, 0, "Europe/Berlin");
        assert!(r.clone().validate(now()).unwrap_err()[0].to_string().contains("in the past"));
        r.schedule = at(2026, 3, 29, 2, 30, "Europe/Berlin");
        assert!(r.clone().validate(now()).unwrap_err()[0].to_string().contains("does not exist"));
        r.schedule = at(2026, 10, 25, 2, 30, "Europe/Berlin");
        assert!(r.clone().validate(now()).unwrap_err()[0].to_string().contains("twice"));
        r.schedule = at(2026, 3, 2, 9, 0, "Mars/Olympus");
        assert!(r.clone().validate(now()).unwrap_err()[0].to_string().contains("not a time zone"));
        r.schedule = at(2026, 3, 2, 9, 0, "Europe/Berlin");
        let ok = r.validate(now()).unwrap();
        assert_eq!(ok.start_at.unwrap(), Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap());
    }

    #[test]
    fn high_risk_is_flagged() {
        let o = Options { device_action: Some(DeviceAction::Wipe), delete_user: Some(DeleteUser { defer_days: 7 }), ..Options::default() };
        assert_eq!(o.high_risk(), vec![HighRisk::DeleteUser, HighRisk::WipeDevices]);
        let retire = Options { device_action: Some(DeviceAction::Retire), ..Options::default() };
        assert!(retire.high_risk().is_empty());
    }

    #[test]
    fn emergency_needs_lockout() {
        let mut r = req(Options { hide_from_gal: true, ..Options::default() });
        r.emergency = true;
        assert_eq!(r.validate(now()).unwrap_err()[0].field(), Some("emergency"));
    }

    #[test]
    fn deviations_from_a_preset_are_named() {
        let preset = Presets::builtin(&PresetName::parse("hostile-exit").unwrap()).unwrap();
        assert!(preset.deviations_from(&preset).is_empty());
        let mut mine = preset.clone();
        mine.cancel_meetings = true;
        mine.reset_password = false;
        mine.device_action = Some(DeviceAction::Retire);
        assert_eq!(
            mine.deviations_from(&preset),
            vec!["removed Reset password", "changed Intune devices: \"wipe\" → \"retire\"", "added Cancel meetings the user organises"]
        );
    }

    #[test]
    fn hand_over_texts_are_checked_on_their_fields() {
        let mut o = Options { out_of_office: Some(OutOfOffice { internal: "{{ \"x\" * 100000000 }}".into(), external: String::new() }), ..Options::default() };
        o.rename_template = Some("{% for i in range(9) %}x{% endfor %}".into());
        let errs = req(o).validate(now()).unwrap_err();
        let fields: Vec<_> = errs.iter().filter_map(|e| e.field()).collect();
        assert_eq!(fields, vec!["rename_template", "oof_internal"]);
    }

    #[test]
    fn tenant_presets_override_builtins() {
        let t = TenantId::parse("contoso.com").unwrap();
        let name = PresetName::parse("standard-leaver").unwrap();
        let mut p = Presets::default();
        assert!(p.get(&t, &name).unwrap().convert_to_shared);
        p.insert(t.clone(), name.clone(), Options { disable_sign_in: true, ..Options::default() });
        assert!(!p.get(&t, &name).unwrap().convert_to_shared);
        p.insert(t.clone(), PresetName::parse("contractor").unwrap(), Options::default());
        assert_eq!(p.names(&t).len(), 3);
        assert!(p.get(&t, &PresetName::parse("nope").unwrap()).is_none());
    }
}
