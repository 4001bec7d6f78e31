//! The wizard: its pages of fields, and the [`Draft`] they fill, checked page by page.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::domain::{PresetName, TenantId, Upn};
use crate::request::{Delegate, DeleteUser, DeviceAction, ForwardTarget, ForwardTo, MailboxAccess, Options, OutOfOffice, Request, Schedule};
use crate::service::Offboarding;

/// The most inputs one modal page may hold on every platform.
pub const MAX_FIELDS_PER_PAGE: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub high_risk: bool,
}

fn choice(value: &str, label: &str) -> Choice {
    Choice { value: value.into(), label: label.into(), high_risk: false }
}

fn risky(value: &str, label: &str) -> Choice {
    Choice { value: value.into(), label: label.into(), high_risk: true }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    Text {
        multiline: bool,
        placeholder: &'static str,
    },
    /// A person in the tenant's directory; the adapter searches as the user types.
    User,
    Select(Vec<Choice>),
    Checkboxes(Vec<Choice>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub id: &'static str,
    pub label: &'static str,
    pub kind: FieldKind,
    pub required: bool,
    pub hint: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// One page of the wizard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub page: usize,
    pub pages: usize,
    pub title: &'static str,
    pub fields: Vec<Field>,
    pub submit: &'static str,
}

/// A submitted value: text, or the chosen values of a select or checkbox group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    Text(String),
    Chosen(Vec<String>),
}

pub type Values = BTreeMap<String, Value>;

fn text(v: &Values, id: &str) -> String {
    match v.get(id) {
        Some(Value::Text(t)) => t.trim().to_string(),
        Some(Value::Chosen(c)) => c.first().cloned().unwrap_or_default(),
        None => String::new(),
    }
}

fn chosen(v: &Values, id: &str) -> Vec<String> {
    match v.get(id) {
        Some(Value::Chosen(c)) => c.clone(),
        Some(Value::Text(t)) if !t.trim().is_empty() => vec![t.trim().to_string()],
        _ => Vec::new(),
    }
}

fn lockout_choices() -> Vec<Choice> {
    vec![
        choice("disable_sign_in", "Disable sign-in"),
        choice("revoke_sessions", "Revoke all sessions"),
        choice("reset_password", "Reset password"),
        choice("remove_mfa", "Remove MFA methods"),
    ]
}

fn access_choices() -> Vec<Choice> {
    vec![
        choice("remove_admin_roles", "Remove admin roles"),
        choice("remove_groups", "Remove from all groups"),
        choice("remove_inbox_rules", "Remove inbox rules"),
        choice("remove_mobile_devices", "Remove mobile devices"),
        choice("remove_mailbox_permissions", "Remove permissions on other mailboxes"),
        choice("remove_calendar_permissions", "Remove calendar permissions"),
        choice("disable_forwarding", "Disable existing forwarding"),
        choice("cancel_meetings", "Cancel meetings the user organises"),
    ]
}

fn mailbox_choices() -> Vec<Choice> {
    vec![
        choice("convert_to_shared", "Convert to shared mailbox"),
        choice("hide_from_gal", "Hide from the address list"),
        choice("remove_licences", "Remove licences"),
        choice("clear_immutable_id", "Clear immutable ID"),
    ]
}

/// The tenant choice that lets the user's address decide.
pub const TENANT_FROM_DOMAIN: &str = "auto";
/// The preset choice "none": every option is chosen by hand.
pub const NO_PRESET: &str = "none";
/// The preset a new wizard starts with.
pub const DEFAULT_PRESET: &str = "standard-leaver";

fn field(id: &'static str, label: &'static str, kind: FieldKind) -> Field {
    Field { id, label, kind, required: false, hint: None }
}

fn line(placeholder: &'static str) -> FieldKind {
    FieldKind::Text { multiline: false, placeholder }
}

/// The wizard's pages. `tenants` with one entry hides the tenant field; `presets` are the
/// names offered on the first page, which fills the later pages.
pub fn wizard(tenants: &[TenantId], presets: &[PresetName]) -> Vec<Form> {
    let mut who = Vec::new();
    if tenants.len() > 1 {
        let mut choices = vec![choice(TENANT_FROM_DOMAIN, "The user's domain decides")];
        choices.extend(tenants.iter().map(|t| choice(t.as_str(), t.as_str())));
        who.push(Field { hint: Some("The customer tenant the user is in"), ..field("tenant", "Tenant", FieldKind::Select(choices)) });
    }
    who.push(Field { required: true, ..field("user", "User to offboard", FieldKind::User) });
    let mut preset_choices: Vec<Choice> = presets.iter().map(|p| choice(p.as_str(), p.as_str())).collect();
    preset_choices.push(choice(NO_PRESET, "None: I choose every option"));
    who.push(Field {
        hint: Some("Fills in the next pages; change anything there"),
        required: true,
        ..field("preset", "Preset", FieldKind::Select(preset_choices))
    });
    let pages = vec![
        (who, "Who", "Next"),
        (
            vec![
                field("lockout", "Lockout", FieldKind::Checkboxes(lockout_choices())),
                field("access", "Access", FieldKind::Checkboxes(access_choices())),
                field(
                    "device_action",
                    "Intune devices",
                    FieldKind::Select(vec![choice("none", "Leave them"), choice("retire", "Retire"), risky("wipe", "Wipe (needs two approvers)")]),
                ),
                field("emergency", "Emergency", FieldKind::Checkboxes(vec![choice("lock_now", "Lock out now, before approval (admins only)")])),
            ],
            "Lockout and access",
            "Next",
        ),
        (
            vec![
                Field {
                    hint: Some("Placeholders: {{ user.display_name }}, {{ manager.name }}, {{ manager.email }}, {{ company }}"),
                    ..field("oof_internal", "Out of office (internal)", FieldKind::Text { multiline: true, placeholder: "" })
                },
                Field {
                    hint: Some("Empty: external senders get no reply"),
                    ..field("oof_external", "Out of office (external)", FieldKind::Text { multiline: true, placeholder: "" })
                },
                field("forward_to", "Forward mail to", line("manager, a user, or an outside address")),
                field("mailbox_access", "Full mailbox access to", line("manager, bob@contoso.com")),
                field(
                    "handover_options",
                    "Hand-over options",
                    FieldKind::Checkboxes(vec![choice("keep_copy", "Keep a copy of forwarded mail"), choice("automap", "Automap the mailbox in Outlook")]),
                ),
            ],
            "Hand-over",
            "Next",
        ),
        (
            vec![
                field("mailbox", "Mailbox and licences", FieldKind::Checkboxes(mailbox_choices())),
                field("onedrive_access", "OneDrive access to", line("manager")),
                Field {
                    hint: Some("Groups, distribution lists and Teams the user owns"),
                    ..field("transfer_ownership", "Group ownership to", line("manager"))
                },
                field("rename_template", "Rename display name to", line("ZZ {{ displayName }}")),
                field(
                    "delete_user",
                    "Delete the user",
                    FieldKind::Select(vec![
                        choice("no", "No"),
                        risky("now", "At the end of the run (needs two approvers)"),
                        risky("7", "7 days later (needs two approvers)"),
                        risky("30", "30 days later (needs two approvers)"),
                    ]),
                ),
            ],
            "Mailbox and identity",
            "Next",
        ),
        (
            vec![
                field("schedule_at", "Run at (empty: as soon as approved)", line("2026-12-01 17:30")),
                field("schedule_tz", "Time zone", line("Europe/London")),
                Field { required: true, ..field("reason", "Reason", FieldKind::Text { multiline: true, placeholder: "Resigned; last day 30 November" }) },
                field("ticket", "Ticket", line("INC-4711")),
            ],
            "When and why",
            "Preview the plan",
        ),
    ];
    let n = pages.len();
    pages.into_iter().enumerate().map(|(page, (fields, title, submit))| Form { page, pages: n, title, fields, submit }).collect()
}

/// The answers collected so far, page by page. Serialisable, so any process may continue
/// a wizard another one started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    /// The tenant, once the first page resolved it.
    pub tenant: Option<String>,
    pub user: String,
    pub preset: Option<PresetName>,
    pub schedule: Option<(NaiveDateTime, String)>,
    pub options: Options,
    pub emergency: bool,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub ticket: Option<String>,
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

fn people(v: &str, field: &str, errors: &mut Vec<FieldError>) -> Vec<Delegate> {
    v.split([',', ';', ' '])
        .filter(|s| !s.is_empty())
        .filter_map(|p| {
            if p.eq_ignore_ascii_case("manager") {
                return Some(Delegate::Manager);
            }
            match Upn::parse(p) {
                Ok(u) => Some(Delegate::User(u)),
                Err(e) => {
                    errors.push(err(field, e.to_string()));
                    None
                }
            }
        })
        .collect()
}

fn people_text(list: &[Delegate]) -> String {
    list.iter()
        .map(|d| match d {
            Delegate::Manager => "manager".to_string(),
            Delegate::User(u) => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn checked(pairs: &[(bool, &str)]) -> Value {
    Value::Chosen(pairs.iter().filter(|(on, _)| *on).map(|(_, v)| v.to_string()).collect())
}

impl Draft {
    /// What the page shows now: the preset's choices, or what was submitted before.
    pub fn values(&self, page: usize) -> Values {
        let o = &self.options;
        let mut v = Values::new();
        let mut put = |k: &str, value: Value| {
            v.insert(k.to_string(), value);
        };
        match page {
            0 => {
                if !self.user.is_empty() {
                    put("user", Value::Text(self.user.clone()));
                }
                put("preset", Value::Chosen(vec![self.preset.as_ref().map_or(DEFAULT_PRESET.to_string(), |p| p.to_string())]));
                put("tenant", Value::Chosen(vec![self.tenant.clone().unwrap_or_else(|| TENANT_FROM_DOMAIN.into())]));
            }
            1 => {
                put(
                    "lockout",
                    checked(&[
                        (o.disable_sign_in, "disable_sign_in"),
                        (o.revoke_sessions, "revoke_sessions"),
                        (o.reset_password, "reset_password"),
                        (o.remove_mfa, "remove_mfa"),
                    ]),
                );
                put(
                    "access",
                    checked(&[
                        (o.remove_admin_roles, "remove_admin_roles"),
                        (o.remove_groups, "remove_groups"),
                        (o.remove_inbox_rules, "remove_inbox_rules"),
                        (o.remove_mobile_devices, "remove_mobile_devices"),
                        (o.remove_mailbox_permissions, "remove_mailbox_permissions"),
                        (o.remove_calendar_permissions, "remove_calendar_permissions"),
                        (o.disable_forwarding, "disable_forwarding"),
                        (o.cancel_meetings, "cancel_meetings"),
                    ]),
                );
                let device = match o.device_action {
                    Some(DeviceAction::Wipe) => "wipe",
                    Some(DeviceAction::Retire) => "retire",
                    None => "none",
                };
                put("device_action", Value::Chosen(vec![device.into()]));
                put("emergency", checked(&[(self.emergency, "lock_now")]));
            }
            2 => {
                if let Some(oof) = &o.out_of_office {
                    put("oof_internal", Value::Text(oof.internal.clone()));
                    put("oof_external", Value::Text(oof.external.clone()));
                }
                if let Some(f) = &o.forward_to {
                    let to = match &f.target {
                        ForwardTarget::Manager => "manager".to_string(),
                        ForwardTarget::User(u) | ForwardTarget::External(u) => u.to_string(),
                    };
                    put("forward_to", Value::Text(to));
                }
                if let Some(a) = &o.mailbox_access {
                    put("mailbox_access", Value::Text(people_text(&a.delegates)));
                }
                put(
                    "handover_options",
                    checked(&[
                        (o.forward_to.as_ref().is_some_and(|f| f.keep_copy), "keep_copy"),
                        (o.mailbox_access.as_ref().is_some_and(|a| a.automap), "automap"),
                    ]),
                );
            }
            3 => {
                put(
                    "mailbox",
                    checked(&[
                        (o.convert_to_shared, "convert_to_shared"),
                        (o.hide_from_gal, "hide_from_gal"),
                        (o.remove_licences, "remove_licences"),
                        (o.clear_immutable_id, "clear_immutable_id"),
                    ]),
                );
                if !o.onedrive_access.is_empty() {
                    put("onedrive_access", Value::Text(people_text(&o.onedrive_access)));
                }
                if let Some(d) = &o.transfer_ownership {
                    put("transfer_ownership", Value::Text(people_text(std::slice::from_ref(d))));
                }
                if let Some(t) = &o.rename_template {
                    put("rename_template", Value::Text(t.clone()));
                }
                let delete = match o.delete_user {
                    None => "no".to_string(),
                    Some(DeleteUser { defer_days: 0 }) => "now".to_string(),
                    Some(DeleteUser { defer_days: d }) => d.to_string(),
                };
                put("delete_user", Value::Chosen(vec![delete]));
            }
            4 => {
                if let Some((at, tz)) = &self.schedule {
                    put("schedule_at", Value::Text(at.format("%Y-%m-%d %H:%M").to_string()));
                    put("schedule_tz", Value::Text(tz.clone()));
                }
                if let Some(r) = &self.reason {
                    put("reason", Value::Text(r.clone()));
                }
                if let Some(t) = &self.ticket {
                    put("ticket", Value::Text(t.clone()));
                }
            }
            _ => {}
        }
        v
    }

    /// Applies one submitted page and checks everything that can be decided from the
    /// answers so far. Errors name their field, for the platform to show next to it; on
    /// an error the draft keeps what was submitted, so the page can be shown again as typed.
    pub fn apply(&mut self, page: usize, v: &Values, svc: &Offboarding) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        match page {
            0 => {
                // Back on the first page to correct it: the later pages keep their answers
                // unless the preset or the tenant changes what they start from.
                let (was_tenant, was_preset, seen) = (self.tenant.take(), self.preset.clone(), !self.user.is_empty());
                let named = text(v, "tenant");
                let named = (!named.is_empty() && named != TENANT_FROM_DOMAIN).then_some(named);
                self.user = text(v, "user");
                if self.user.is_empty() {
                    errors.push(err("user", "choose the user to offboard"));
                } else if let Err(e) = crate::snapshot::UserRef::parse(&self.user) {
                    errors.push(err("user", e.to_string()));
                } else {
                    match svc.resolve_tenant(named.as_deref(), &self.user) {
                        Ok(t) => self.tenant = Some(t.id.to_string()),
                        Err(e @ crate::service::ServiceError::TenantNeeded(_)) => errors.push(err("tenant", e.to_string())),
                        Err(e) => errors.push(err(if named.is_some() { "tenant" } else { "user" }, e.to_string())),
                    }
                }
                let p = text(v, "preset");
                let preset = match p.as_str() {
                    "" | NO_PRESET => Ok(None),
                    name => PresetName::parse(name).map(Some).map_err(|e| e.to_string()),
                };
                match preset {
                    Err(e) => errors.push(err("preset", e)),
                    Ok(preset) if seen && preset == was_preset && self.tenant == was_tenant => {}
                    Ok(preset) => {
                        // The preset fills the later pages, which show it and may change it.
                        let options = match (&preset, self.tenant.as_ref().and_then(|t| TenantId::parse(t).ok())) {
                            (Some(name), Some(t)) => svc.preset_options(&t, name).map_err(|e| errors.push(err("preset", e.to_string()))).unwrap_or_default(),
                            _ => Options::default(),
                        };
                        self.options = options;
                        self.emergency = false;
                        self.preset = preset;
                    }
                }
            }
            1 => {
                let o = &mut self.options;
                let lockout = chosen(v, "lockout");
                let access = chosen(v, "access");
                let has = |list: &[String], x: &str| list.iter().any(|c| c == x);
                o.disable_sign_in = has(&lockout, "disable_sign_in");
                o.revoke_sessions = has(&lockout, "revoke_sessions");
                o.reset_password = has(&lockout, "reset_password");
                o.remove_mfa = has(&lockout, "remove_mfa");
                o.remove_admin_roles = has(&access, "remove_admin_roles");
                o.remove_groups = has(&access, "remove_groups");
                o.remove_inbox_rules = has(&access, "remove_inbox_rules");
                o.remove_mobile_devices = has(&access, "remove_mobile_devices");
                o.remove_mailbox_permissions = has(&access, "remove_mailbox_permissions");
                o.remove_calendar_permissions = has(&access, "remove_calendar_permissions");
                o.disable_forwarding = has(&access, "disable_forwarding");
                o.cancel_meetings = has(&access, "cancel_meetings");
                o.device_action = match text(v, "device_action").as_str() {
                    "wipe" => Some(DeviceAction::Wipe),
                    "retire" => Some(DeviceAction::Retire),
                    _ => None,
                };
                self.emergency = has(&chosen(v, "emergency"), "lock_now");
            }
            2 => {
                let domains: Vec<String> = svc.tenants().iter().filter(|t| Some(t.id.to_string()) == self.tenant).flat_map(|t| t.domains.clone()).collect();
                let o = &mut self.options;
                let (internal, external) = (text(v, "oof_internal"), text(v, "oof_external"));
                o.out_of_office = (!internal.is_empty() || !external.is_empty()).then_some(OutOfOffice { internal, external });
                let opts = chosen(v, "handover_options");
                let keep_copy = opts.iter().any(|c| c == "keep_copy");
                let fwd = text(v, "forward_to");
                o.forward_to = if fwd.is_empty() {
                    None
                } else if fwd.eq_ignore_ascii_case("manager") {
                    Some(ForwardTo { target: ForwardTarget::Manager, keep_copy })
                } else {
                    match Upn::parse(&fwd) {
                        Ok(u) if domains.iter().any(|d| d.eq_ignore_ascii_case(u.domain())) => Some(ForwardTo { target: ForwardTarget::User(u), keep_copy }),
                        Ok(u) => Some(ForwardTo { target: ForwardTarget::External(u), keep_copy }),
                        Err(e) => {
                            errors.push(err("forward_to", e.to_string()));
                            None
                        }
                    }
                };
                let delegates = people(&text(v, "mailbox_access"), "mailbox_access", &mut errors);
                o.mailbox_access = (!delegates.is_empty()).then(|| MailboxAccess { delegates, automap: opts.iter().any(|c| c == "automap") });
            }
            3 => {
                let o = &mut self.options;
                let m = chosen(v, "mailbox");
                let has = |x: &str| m.iter().any(|c| c == x);
                o.convert_to_shared = has("convert_to_shared");
                o.hide_from_gal = has("hide_from_gal");
                o.remove_licences = has("remove_licences");
                o.clear_immutable_id = has("clear_immutable_id");
                o.onedrive_access = people(&text(v, "onedrive_access"), "onedrive_access", &mut errors);
                let owners = people(&text(v, "transfer_ownership"), "transfer_ownership", &mut errors);
                if owners.len() > 1 {
                    errors.push(err("transfer_ownership", "name one person: the groups get one new owner"));
                }
                o.transfer_ownership = owners.into_iter().next();
                let rename = text(v, "rename_template");
                o.rename_template = (!rename.is_empty()).then_some(rename);
                o.delete_user = match text(v, "delete_user").as_str() {
                    "now" => Some(DeleteUser { defer_days: 0 }),
                    "" | "no" => None,
                    days => match days.parse::<u16>() {
                        Ok(d) => Some(DeleteUser { defer_days: d }),
                        Err(_) => {
                            errors.push(err("delete_user", "choose one of the offered delays"));
                            None
                        }
                    },
                };
            }
            4 => {
                let at = text(v, "schedule_at");
                let tz = text(v, "schedule_tz");
                self.schedule = None;
                if !at.is_empty() {
                    match NaiveDateTime::parse_from_str(&at, "%Y-%m-%d %H:%M") {
                        Ok(t) if !tz.is_empty() => self.schedule = Some((t, tz)),
                        Ok(_) => errors.push(err("schedule_tz", "say which time zone the time is in, e.g. Europe/London")),
                        Err(_) => errors.push(err("schedule_at", "write the time as YYYY-MM-DD HH:MM, e.g. 2026-12-01 17:30")),
                    }
                } else if !tz.is_empty() {
                    errors.push(err("schedule_at", "give the time the time zone is for, or leave both empty"));
                }
                let reason = text(v, "reason");
                if reason.is_empty() {
                    errors.push(err("reason", "say why, for the approver and the report"));
                }
                self.reason = (!reason.is_empty()).then_some(reason);
                let ticket = text(v, "ticket");
                self.ticket = (!ticket.is_empty()).then_some(ticket);
            }
            _ => errors.push(err("page", format!("the wizard has no page {page}"))),
        }
        if errors.is_empty() {
            errors = self.page_errors(page, svc);
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// The request's own checks whose field is on this page. "Choose at least one action"
    /// belongs to the last page of options.
    fn page_errors(&self, page: usize, svc: &Offboarding) -> Vec<FieldError> {
        let Some(tenant) = self.tenant.as_ref().and_then(|t| TenantId::parse(t).ok()) else { return Vec::new() };
        let names: Vec<&str> = wizard(&[], &[]).get(page).map(|f| f.fields.iter().map(|f| f.id).collect()).unwrap_or_default();
        let Err(all) = self.clone().into_request(tenant).validate(svc.now()) else { return Vec::new() };
        all.into_iter()
            .filter_map(|e| match e.field() {
                Some(f) if names.contains(&f) => Some(err(f, e.to_string())),
                None if page == 3 => Some(err("mailbox", format!("{e}: nothing is chosen on this page or the ones before"))),
                _ => None,
            })
            .collect()
    }

    /// Whether the tenant has the user the first page names: one directory read, done
    /// off the request path once the page is accepted. A directory that cannot answer
    /// is not a "no": the request's discovery says what it finds.
    pub async fn confirm_user(&self, directory: &dyn crate::snapshot::Directory) -> Result<(), FieldError> {
        let Some(tenant) = self.tenant.as_ref().and_then(|t| TenantId::parse(t).ok()) else { return Ok(()) };
        let Ok(user) = crate::snapshot::UserRef::parse(&self.user) else { return Ok(()) };
        match directory.find(&tenant, &user).await {
            Ok(None) => Err(err("user", format!("no user {user} in {tenant}: check the address, or type a name to search"))),
            Ok(Some(_)) | Err(_) => Ok(()),
        }
    }

    /// The request the draft describes, for the resolved tenant.
    pub fn into_request(self, tenant: TenantId) -> Request {
        Request {
            tenant,
            user: self.user,
            preset: self.preset,
            options: self.options,
            schedule: match self.schedule {
                Some((local, tz)) => Schedule::At { local, tz },
                None => Schedule::Now,
            },
            emergency: self.emergency,
            reason: self.reason,
            ticket: self.ticket,
        }
    }
}

/// The page a field is on.
pub fn page_of(field: &str) -> Option<usize> {
    if field == "tenant" {
        return Some(0);
    }
    wizard(&[], &[]).iter().position(|f| f.fields.iter().any(|x| x.id == field))
}

/// Where the wizard shows what the service refused after the last page: the page and its
/// field errors (a field of `""` is about the page as a whole), so the requester corrects
/// it there instead of starting over. `None` when it is an answer, not an error to correct
/// (a run already open, a run not found).
pub fn placed(e: &crate::service::ServiceError) -> Option<(usize, Vec<FieldError>)> {
    use crate::service::ServiceError as E;
    use crate::snapshot::DiscoveryError as D;
    let last = wizard(&[], &[]).len() - 1;
    let on = |field: &str, page: usize| Some((page, vec![err(field, e.to_string())]));
    match e {
        E::Invalid(errs) => {
            let placed: Vec<(usize, FieldError)> = errs
                .iter()
                .map(|x| match x.field().and_then(|f| page_of(f).map(|p| (p, f))) {
                    Some((p, f)) => (p, err(f, x.to_string())),
                    None => (3, err("mailbox", format!("{x}: nothing is chosen on this page or the ones before"))),
                })
                .collect();
            let page = placed.iter().map(|(p, _)| *p).min()?;
            Some((page, placed.into_iter().filter(|(p, _)| *p == page).map(|(_, f)| f).collect()))
        }
        E::UnknownPreset(..) => on("preset", 0),
        E::UnknownTenant(..) | E::TenantNeeded(_) => on("tenant", 0),
        E::NoTenantForDomain(..) | E::BadInput(_) | E::Refused(_) | E::Discovery(D::UserNotFound { .. } | D::UnknownTenant(_)) => on("user", 0),
        E::Discovery(_) | E::Store(_) => Some((last, vec![err("", format!("{e}. Nothing was requested; submit again to retry."))])),
        E::AlreadyOpen { .. } | E::NotFound(_) => None,
    }
}

#[cfg(test)]
mod tests;
