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
        check(self.out_of_office.is_some(), "out_of_office");
        check(self.forward_to.is_some(), "forward_to");
        check(self.mailbox_access.is_some(), "mailbox_access");
        check(!self.onedrive_access.is_empty(), "onedrive_access");
        check(self.convert_to_shared, "convert_to_shared");
        check(self.hide_from_gal, "hide_from_gal");
        check(self.remove_licences, "remove_licences");
        check(self.rename_template.is_some(), "rename_template");
        check(self.clear_immutable_id, "clear_immutable_id");
        moot
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
                    message: format!("`{tz}` is not a time zone; use an IANA name such as Europe/Berlin"),
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
                message: "`forward mail to` and `disable existing forwarding` contradict each other: the new forward replaces the old one, so untick one"
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
            if !t.contains("{{") && t.trim().is_empty() {
                errors.push(RequestError::Field { field: "rename_template", message: "the new display name is empty".into() });
            }
            if t.len() > 256 {
                errors.push(RequestError::Field { field: "rename_template", message: "a display name is at most 256 characters".into() });
            }
        }
        if let Some(oof) = &o.out_of_office
            && oof.internal.trim().is_empty()
            && oof.external.trim().is_empty()
        {
            errors.push(RequestError::Field { field: "out_of_office", message: "write an internal or an external message".into() });
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
        Request {
            tenant: TenantId::parse("contoso.com").unwrap(),
            user: "alice@contoso.com".into(),
            preset: None,
            options,
            schedule: Schedule::Now,
            emergency: false,
        }
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
        assert!(msg.contains("convert_to_shared") && msg.contains("remove_licences"), "{msg}");
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
