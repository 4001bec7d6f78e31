//! What core asks chat platforms to show, and what it accepts from them, without any
//! platform's wire format. Adapters render a `Form` (one wizard step), a `PlanPreview`
//! with decision buttons, a `RunView` and a `FileOut`, and parse slash commands, form
//! submissions and button values into these types.
//!
//! The wizard is split into pages of at most five fields, the most any platform's modal
//! holds (Discord); Slack may chain them as views, Teams as `task/submit → continue`
//! dialogs, Discord behind a "Continue" button.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::domain::{PresetName, RunId, TenantId, Upn};
use crate::plan::PlanHash;
use crate::request::{Delegate, DeleteUser, DeviceAction, ForwardTarget, ForwardTo, MailboxAccess, Options, OutOfOffice, Request, Schedule};
use crate::run::{RunState, StepState};
use crate::store::{RunRecord, StepRecord};

/// The most inputs one modal page may hold on every platform.
pub const MAX_FIELDS_PER_PAGE: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub high_risk: bool,
}

const fn choice(value: &'static str, label: &'static str) -> Choice {
    Choice { value, label, high_risk: false }
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

#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

const LOCKOUT: [Choice; 4] = [
    choice("disable_sign_in", "Disable sign-in"),
    choice("revoke_sessions", "Revoke all sessions"),
    choice("reset_password", "Reset password"),
    choice("remove_mfa", "Remove MFA methods"),
];
const ACCESS: [Choice; 8] = [
    choice("remove_admin_roles", "Remove admin roles"),
    choice("remove_groups", "Remove from all groups"),
    choice("remove_inbox_rules", "Remove inbox rules"),
    choice("remove_mobile_devices", "Remove mobile devices"),
    choice("remove_mailbox_permissions", "Remove permissions on other mailboxes"),
    choice("remove_calendar_permissions", "Remove calendar permissions"),
    choice("disable_forwarding", "Disable existing forwarding"),
    choice("cancel_meetings", "Cancel meetings the user organises"),
];
const MAILBOX: [Choice; 4] = [
    choice("convert_to_shared", "Convert to shared mailbox"),
    choice("hide_from_gal", "Hide from the address list"),
    choice("remove_licences", "Remove licences"),
    choice("clear_immutable_id", "Clear immutable ID"),
];

/// The wizard's pages. `tenants` with one entry hides the tenant field.
pub fn wizard(tenants: &[TenantId], presets: &[PresetName]) -> Vec<Form> {
    let _ = presets; // Presets are offered through the adapter's option search.
    let mut who = Vec::new();
    if tenants.len() > 1 {
        who.push(Field {
            id: "tenant",
            label: "Tenant",
            kind: FieldKind::Text { multiline: false, placeholder: "contoso.com" },
            required: false,
            hint: Some("Leave empty to use the user's domain"),
        });
    }
    who.push(Field { id: "user", label: "User to offboard", kind: FieldKind::User, required: true, hint: None });
    who.push(Field {
        id: "preset",
        label: "Preset",
        kind: FieldKind::Text { multiline: false, placeholder: "standard-leaver" },
        required: false,
        hint: Some("Fills in the next pages"),
    });
    who.push(Field {
        id: "schedule_at",
        label: "Run at (empty: as soon as approved)",
        kind: FieldKind::Text { multiline: false, placeholder: "2026-12-01 17:30" },
        required: false,
        hint: None,
    });
    who.push(Field {
        id: "schedule_tz",
        label: "Time zone",
        kind: FieldKind::Text { multiline: false, placeholder: "Europe/London" },
        required: false,
        hint: None,
    });
    let pages = vec![
        (who, "Who and when", "Next"),
        (
            vec![
                Field { id: "lockout", label: "Lockout", kind: FieldKind::Checkboxes(LOCKOUT.to_vec()), required: false, hint: None },
                Field { id: "access", label: "Access", kind: FieldKind::Checkboxes(ACCESS.to_vec()), required: false, hint: None },
                Field {
                    id: "device_action",
                    label: "Intune devices",
                    kind: FieldKind::Select(vec![
                        choice("none", "Leave them"),
                        choice("retire", "Retire"),
                        Choice { value: "wipe", label: "Wipe (needs two approvers)", high_risk: true },
                    ]),
                    required: false,
                    hint: None,
                },
                Field {
                    id: "emergency",
                    label: "Emergency",
                    kind: FieldKind::Checkboxes(vec![choice("lock_now", "Lock out now, before approval (admins only)")]),
                    required: false,
                    hint: None,
                },
            ],
            "Lockout and access",
            "Next",
        ),
        (
            vec![
                Field {
                    id: "oof_internal",
                    label: "Out of office (internal)",
                    kind: FieldKind::Text { multiline: true, placeholder: "{{ user.display_name }} has left. Please contact {{ manager.name }}." },
                    required: false,
                    hint: None,
                },
                Field {
                    id: "oof_external",
                    label: "Out of office (external)",
                    kind: FieldKind::Text { multiline: true, placeholder: "" },
                    required: false,
                    hint: None,
                },
                Field {
                    id: "forward_to",
                    label: "Forward mail to",
                    kind: FieldKind::Text { multiline: false, placeholder: "manager, a user, or an outside address" },
                    required: false,
                    hint: None,
                },
                Field {
                    id: "mailbox_access",
                    label: "Full mailbox access to",
                    kind: FieldKind::Text { multiline: false, placeholder: "manager, bob@contoso.com" },
                    required: false,
                    hint: None,
                },
                Field {
                    id: "handover_options",
                    label: "Hand-over options",
                    kind: FieldKind::Checkboxes(vec![
                        choice("keep_copy", "Keep a copy of forwarded mail"),
                        choice("automap", "Automap the mailbox in Outlook"),
                    ]),
                    required: false,
                    hint: None,
                },
            ],
            "Hand-over",
            "Next",
        ),
        (
            vec![
                Field { id: "mailbox", label: "Mailbox and licences", kind: FieldKind::Checkboxes(MAILBOX.to_vec()), required: false, hint: None },
                Field {
                    id: "onedrive_access",
                    label: "OneDrive access to",
                    kind: FieldKind::Text { multiline: false, placeholder: "manager" },
                    required: false,
                    hint: None,
                },
                Field {
                    id: "rename_template",
                    label: "Rename display name to",
                    kind: FieldKind::Text { multiline: false, placeholder: "ZZ {{ displayName }}" },
                    required: false,
                    hint: None,
                },
                Field {
                    id: "delete_user",
                    label: "Delete the user",
                    kind: FieldKind::Select(vec![
                        choice("no", "No"),
                        Choice { value: "now", label: "At the end of the run (needs two approvers)", high_risk: true },
                        Choice { value: "7", label: "7 days later (needs two approvers)", high_risk: true },
                        Choice { value: "30", label: "30 days later (needs two approvers)", high_risk: true },
                    ]),
                    required: false,
                    hint: None,
                },
            ],
            "Mailbox and identity",
            "Preview the plan",
        ),
    ];
    let n = pages.len();
    pages.into_iter().enumerate().map(|(page, (fields, title, submit))| Form { page, pages: n, title, fields, submit }).collect()
}

/// The answers collected so far, page by page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draft {
    pub tenant: Option<String>,
    pub user: String,
    pub preset: Option<PresetName>,
    pub schedule: Option<(NaiveDateTime, String)>,
    pub options: Options,
    pub emergency: bool,
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

impl Draft {
    /// Applies one submitted page. Errors name their field, for the platform to show
    /// next to it.
    pub fn apply(&mut self, page: usize, v: &Values, tenant_domains: &[String]) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let o = &mut self.options;
        match page {
            0 => {
                let t = text(v, "tenant");
                self.tenant = (!t.is_empty()).then_some(t);
                self.user = text(v, "user");
                if self.user.is_empty() {
                    errors.push(err("user", "choose the user to offboard"));
                } else if let Err(e) = crate::snapshot::UserRef::parse(&self.user) {
                    errors.push(err("user", e.to_string()));
                }
                let p = text(v, "preset");
                self.preset = None;
                if !p.is_empty() {
                    match PresetName::parse(&p) {
                        Ok(name) => self.preset = Some(name),
                        Err(e) => errors.push(err("preset", e.to_string())),
                    }
                }
                let at = text(v, "schedule_at");
                self.schedule = None;
                if !at.is_empty() {
                    let tz = text(v, "schedule_tz");
                    match NaiveDateTime::parse_from_str(&at, "%Y-%m-%d %H:%M") {
                        Ok(t) if !tz.is_empty() => self.schedule = Some((t, tz)),
                        Ok(_) => errors.push(err("schedule_tz", "say which time zone the time is in, e.g. Europe/London")),
                        Err(_) => errors.push(err("schedule_at", "write the time as YYYY-MM-DD HH:MM, e.g. 2026-12-01 17:30")),
                    }
                }
            }
            1 => {
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
                        Ok(u) if tenant_domains.iter().any(|d| d.eq_ignore_ascii_case(u.domain())) => {
                            Some(ForwardTo { target: ForwardTarget::User(u), keep_copy })
                        }
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
                let m = chosen(v, "mailbox");
                let has = |x: &str| m.iter().any(|c| c == x);
                o.convert_to_shared = has("convert_to_shared");
                o.hide_from_gal = has("hide_from_gal");
                o.remove_licences = has("remove_licences");
                o.clear_immutable_id = has("clear_immutable_id");
                o.onedrive_access = people(&text(v, "onedrive_access"), "onedrive_access", &mut errors);
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
            _ => errors.push(err("page", format!("the wizard has no page {page}"))),
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
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
        }
    }
}

/// A step as the preview shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewLine {
    pub title: &'static str,
    pub text: String,
    pub skip: Option<String>,
    pub warnings: Vec<String>,
    pub high_risk: bool,
}

/// The plan posted for approval, with its decision buttons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPreview {
    pub run_id: RunId,
    pub tenant: TenantId,
    pub target_upn: String,
    pub target_name: String,
    pub target_title: Option<String>,
    pub manager: Option<String>,
    pub requester: String,
    pub lines: Vec<PreviewLine>,
    pub plan_hash: PlanHash,
    pub approvals_needed: usize,
    pub approvals: Vec<(String, DateTime<Utc>)>,
    pub expires_at: DateTime<Utc>,
    pub start_at: Option<DateTime<Utc>>,
    pub state: RunState,
    pub decided_note: Option<String>,
    pub approve: ButtonValue,
    pub reject: ButtonValue,
}

impl PlanPreview {
    pub fn from_run(run: &RunRecord, approvals: &[crate::policy::Approval]) -> Self {
        let snapshot: Option<crate::snapshot::UserSnapshot> = serde_json::from_str(&run.snapshot).ok();
        PlanPreview {
            run_id: run.id.clone(),
            tenant: run.tenant.clone(),
            target_upn: run.target_upn.clone(),
            target_name: run.target_name.clone(),
            target_title: snapshot.as_ref().and_then(|s| s.job_title.clone()),
            manager: snapshot.as_ref().and_then(|s| s.manager.as_ref().map(|m| m.display_name.clone())),
            requester: run.requester_name.clone(),
            lines: run
                .plan
                .steps
                .iter()
                .map(|s| PreviewLine {
                    title: s.kind.title(),
                    text: s.preview.clone(),
                    skip: s.skip.clone(),
                    warnings: s.warnings.clone(),
                    high_risk: s.high_risk,
                })
                .collect(),
            plan_hash: run.plan_hash.clone(),
            approvals_needed: run.approvals_needed,
            approvals: approvals.iter().filter(|a| a.plan_hash == run.plan_hash).map(|a| (a.approver_name.clone(), a.at)).collect(),
            expires_at: run.expires_at,
            start_at: run.start_at,
            state: run.state,
            decided_note: run.reason.clone(),
            approve: ButtonValue::Approve { run: run.id.clone(), plan: run.plan_hash.clone() },
            reject: ButtonValue::Reject { run: run.id.clone() },
        }
    }
}

/// What a button carries back. Only ids: every decision is re-checked on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ButtonValue {
    Approve { run: RunId, plan: PlanHash },
    Reject { run: RunId },
}

impl ButtonValue {
    pub fn encode(&self) -> String {
        match self {
            Self::Approve { run, plan } => format!("approve:{run}:{plan}"),
            Self::Reject { run } => format!("reject:{run}"),
        }
    }

    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, ':');
        match (parts.next()?, parts.next()?, parts.next()) {
            ("approve", run, Some(plan)) if plan.len() == 64 && plan.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(Self::Approve { run: RunId::parse(run).ok()?, plan: PlanHash(plan.to_ascii_lowercase()) })
            }
            ("reject", run, None) => Some(Self::Reject { run: RunId::parse(run).ok()? }),
            _ => None,
        }
    }
}

/// A step's status in the live pipeline message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badge {
    Pending,
    Running,
    Done,
    Skipped,
    Failed,
    Attention,
    NotRun,
}

impl Badge {
    pub fn of(state: StepState, warning: bool) -> Self {
        match state {
            StepState::Waiting | StepState::Ready => Self::Pending,
            StepState::Running => Self::Running,
            StepState::Succeeded => Self::Done,
            StepState::Skipped if warning => Self::Attention,
            StepState::Skipped => Self::Skipped,
            StepState::Failed => Self::Failed,
            StepState::NeedsAttention => Self::Attention,
            StepState::Cancelled => Self::NotRun,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub title: &'static str,
    pub badge: Badge,
    pub detail: Option<String>,
    pub duration_ms: Option<i64>,
}

/// The run as its live status message shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunView {
    pub run_id: RunId,
    pub target_upn: String,
    pub state: RunState,
    pub lines: Vec<StatusLine>,
}

impl RunView {
    pub fn from_run(run: &RunRecord, steps: &[StepRecord]) -> Self {
        let lines = run
            .plan
            .steps
            .iter()
            .map(|p| {
                let rec = steps.iter().find(|s| s.key == p.key);
                let (badge, detail, duration_ms) = match rec {
                    Some(s) => (
                        Badge::of(s.state, s.outcome.as_ref().is_some_and(|o| o.is_warning())),
                        s.outcome.as_ref().map(|o| o.summary().to_string()),
                        s.started_at.zip(s.finished_at).map(|(a, b)| (b - a).num_milliseconds()),
                    ),
                    None => (Badge::Pending, None, None),
                };
                StatusLine { title: p.kind.title(), badge, detail, duration_ms }
            })
            .collect();
        RunView { run_id: run.id.clone(), target_upn: run.target_upn.clone(), state: run.state, lines }
    }
}

/// A file to post into the run's thread (the compliance report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOut {
    pub name: String,
    pub mime: &'static str,
    pub bytes: Vec<u8>,
}

/// A command typed in chat (or the CLI), after the platform's own parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Offboard {
        user: Option<String>,
        preset: Option<String>,
    },
    Help,
    List,
    Status(RunId),
    Cancel(RunId),
    RunNow(RunId),
    /// Anything else, with a hint for the reply.
    Unknown(String),
}

impl Command {
    /// Parses the text after `/offboard` (Slack, Discord) or `@Offboard offboard` (Teams).
    pub fn parse(text: &str) -> Self {
        let words: Vec<&str> = text.split_whitespace().collect();
        let id = |w: Option<&&str>, then: fn(RunId) -> Command, verb: &str| match w.map(|w| RunId::parse(w)) {
            Some(Ok(id)) => then(id),
            Some(Err(e)) => Command::Unknown(e.to_string()),
            None => Command::Unknown(format!("`{verb}` needs a run id, e.g. {verb} ob-7k2m9x4q1d")),
        };
        match words.first().map(|w| w.to_ascii_lowercase()).as_deref() {
            None => Command::Offboard { user: None, preset: None },
            Some("help") => Command::Help,
            Some("list") => Command::List,
            Some("status") => id(words.get(1), Command::Status, "status"),
            Some("cancel") => id(words.get(1), Command::Cancel, "cancel"),
            Some("run") => id(words.get(1), Command::RunNow, "run"),
            Some(w) if w.contains('@') || crate::domain::ObjectId::parse(w).is_ok() => {
                Command::Offboard { user: Some(words[0].to_string()), preset: words.get(1).map(|s| s.to_string()) }
            }
            Some(w) => Command::Unknown(format!("`{w}` is neither a user nor a command; try `help`")),
        }
    }
}

/// A message the adapter posted, as the adapter identifies it (channel and timestamp,
/// activity id, message id). Core stores it and hands it back, never looks inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef(pub String);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    #[error("the chat platform asked us to wait {0:?}")]
    RetryAfter(std::time::Duration),
    #[error("the chat platform failed: {0}")]
    Retryable(String),
    #[error("the chat platform refused: {0}")]
    Permanent(String),
}

/// The outgoing half of a chat adapter: where approvals, live status and files go.
#[async_trait]
pub trait ChatSurface: Send + Sync {
    async fn post_preview(&self, preview: &PlanPreview) -> Result<MessageRef, ChatError>;
    async fn update_preview(&self, at: &MessageRef, preview: &PlanPreview) -> Result<(), ChatError>;
    /// Posts the pipeline message into the run's thread.
    async fn post_status(&self, thread: &MessageRef, view: &RunView) -> Result<MessageRef, ChatError>;
    async fn update_status(&self, at: &MessageRef, view: &RunView) -> Result<(), ChatError>;
    async fn reply(&self, thread: &MessageRef, text: &str) -> Result<(), ChatError>;
    async fn attach(&self, thread: &MessageRef, file: &FileOut) -> Result<(), ChatError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_fits_every_platform() {
        let tenants = vec![TenantId::parse("contoso.com").unwrap(), TenantId::parse("fabrikam.com").unwrap()];
        let pages = wizard(&tenants, &[]);
        assert_eq!(pages.len(), 4);
        for p in &pages {
            assert!(p.fields.len() <= MAX_FIELDS_PER_PAGE, "{}", p.title);
        }
        assert_eq!(wizard(&tenants[..1], &[])[0].fields[0].id, "user", "one tenant: no tenant field");
    }

    fn vals(pairs: &[(&str, Value)]) -> Values {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn a_draft_becomes_a_request() {
        let mut d = Draft::default();
        d.apply(
            0,
            &vals(&[
                ("user", Value::Text("Alice@Contoso.com".into())),
                ("schedule_at", Value::Text("2030-01-02 09:00".into())),
                ("schedule_tz", Value::Text("Europe/Berlin".into())),
            ]),
            &[],
        )
        .unwrap();
        d.apply(
            1,
            &vals(&[
                ("lockout", Value::Chosen(vec!["disable_sign_in".into(), "revoke_sessions".into()])),
                ("device_action", Value::Chosen(vec!["wipe".into()])),
            ]),
            &[],
        )
        .unwrap();
        let domains = vec!["contoso.com".to_string()];
        d.apply(
            2,
            &vals(&[
                ("forward_to", Value::Text("bob@contoso.com".into())),
                ("mailbox_access", Value::Text("manager, carol@contoso.com".into())),
                ("handover_options", Value::Chosen(vec!["automap".into()])),
            ]),
            &domains,
        )
        .unwrap();
        d.apply(3, &vals(&[("mailbox", Value::Chosen(vec!["convert_to_shared".into()])), ("delete_user", Value::Chosen(vec!["30".into()]))]), &domains)
            .unwrap();
        let r = d.into_request(TenantId::parse("contoso.com").unwrap());
        assert!(r.options.disable_sign_in && r.options.revoke_sessions && !r.options.reset_password);
        assert_eq!(r.options.device_action, Some(DeviceAction::Wipe));
        assert!(matches!(r.options.forward_to, Some(ForwardTo { target: ForwardTarget::User(_), keep_copy: false })));
        assert_eq!(r.options.mailbox_access.as_ref().unwrap().delegates.len(), 2);
        assert_eq!(r.options.delete_user, Some(DeleteUser { defer_days: 30 }));
        assert!(matches!(r.schedule, Schedule::At { .. }));
    }

    #[test]
    fn page_errors_name_their_fields() {
        let mut d = Draft::default();
        let e = d.apply(0, &vals(&[("user", Value::Text("not a upn".into())), ("schedule_at", Value::Text("tomorrow".into()))]), &[]).unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["user", "schedule_at"]);
        let e = d.apply(2, &vals(&[("forward_to", Value::Text("x@@y".into()))]), &[]).unwrap_err();
        assert_eq!(e[0].field, "forward_to");
        let mut ok = Draft::default();
        ok.apply(2, &vals(&[("forward_to", Value::Text("partner@example.org".into()))]), &["contoso.com".into()]).unwrap();
        assert!(matches!(ok.options.forward_to.unwrap().target, ForwardTarget::External(_)));
    }

    #[test]
    fn commands_parse() {
        assert_eq!(Command::parse(""), Command::Offboard { user: None, preset: None });
        assert_eq!(
            Command::parse("alice@contoso.com hostile-exit"),
            Command::Offboard { user: Some("alice@contoso.com".into()), preset: Some("hostile-exit".into()) }
        );
        assert_eq!(Command::parse("STATUS ob-7k2m9x4q1d"), Command::Status(RunId::parse("ob-7k2m9x4q1d").unwrap()));
        assert!(matches!(Command::parse("cancel"), Command::Unknown(m) if m.contains("needs a run id")));
        assert!(matches!(Command::parse("frobnicate"), Command::Unknown(m) if m.contains("try `help`")));
        assert_eq!(Command::parse("list"), Command::List);
    }

    #[test]
    fn button_values_round_trip_and_reject_junk() {
        let run = RunId::parse("ob-7k2m9x4q1d").unwrap();
        let a = ButtonValue::Approve { run: run.clone(), plan: PlanHash("ab".repeat(32)) };
        assert_eq!(ButtonValue::decode(&a.encode()), Some(a));
        let r = ButtonValue::Reject { run };
        assert_eq!(ButtonValue::decode(&r.encode()), Some(r));
        for junk in ["approve:ob-7k2m9x4q1d", "approve:ob-7k2m9x4q1d:xyz", "delete:ob-7k2m9x4q1d", "reject:nope"] {
            assert_eq!(ButtonValue::decode(junk), None, "{junk}");
        }
    }
}
