//! The views every platform renders: the plan preview with its decision buttons, the
//! run's live status, and files for its thread.

use chrono::{DateTime, Utc};

use crate::domain::{RunId, TenantId};
use crate::plan::PlanHash;
use crate::request::Request;
use crate::run::{RunState, StepState};
use crate::store::{RunRecord, StepRecord};

/// A step as the preview shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewLine {
    pub title: &'static str,
    pub text: String,
    pub skip: Option<String>,
    pub warnings: Vec<String>,
    pub high_risk: bool,
}

/// Someone the conversation names: the chat identity (`slack:U0ADA`, `cli:alice`), for a
/// platform to mention, and the name to show where it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub key: String,
    pub name: String,
}

impl Who {
    pub fn new(key: impl Into<String>, name: impl Into<String>) -> Self {
        Who { key: key.into(), name: name.into() }
    }

    /// The user id on `platform`, if this person is one of its users.
    pub fn id_on(&self, platform: &str) -> Option<&str> {
        self.key.strip_prefix(platform).and_then(|r| r.strip_prefix(':'))
    }
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
    pub requester: Who,
    /// The requester's own words: shown as theirs, never as the product's.
    pub reason: Option<String>,
    pub ticket: Option<String>,
    /// The preset the request started from, and every way it departs from it.
    pub preset: Option<String>,
    pub deviations: Vec<String>,
    /// What the approver must know beyond the steps.
    pub notes: Vec<String>,
    /// Why two approvers are needed, if they are.
    pub high_risk: Vec<String>,
    pub lines: Vec<PreviewLine>,
    pub plan_hash: PlanHash,
    pub approvals_needed: usize,
    /// Who may approve, when the line manager is among them, and how they were found
    /// (when IT decides alone, the footer's count says it).
    pub approvers: Option<String>,
    pub approvals: Vec<(Who, DateTime<Utc>)>,
    pub expires_at: DateTime<Utc>,
    pub start_at: Option<DateTime<Utc>>,
    pub state: RunState,
    pub decided_note: Option<String>,
    /// Who rejected or cancelled the request, from the audit log.
    pub decided_by: Option<Who>,
    pub approve: ButtonValue,
    pub reject: ButtonValue,
}

impl PlanPreview {
    /// Who closed the request without running it (rejected, cancelled), as the audit
    /// log recorded it.
    pub fn decided_by_from(mut self, audit: &[crate::audit::AuditEntry]) -> Self {
        let action = match self.state {
            RunState::Rejected => "run.rejected",
            RunState::Cancelled => "run.cancelled",
            _ => return self,
        };
        self.decided_by = audit.iter().rev().find(|e| e.action == action).map(|e| {
            let name = serde_json::from_str::<serde_json::Value>(&e.detail).ok().and_then(|d| d["by"].as_str().map(str::to_string));
            Who::new(&e.actor, name.unwrap_or_else(|| e.actor.clone()))
        });
        self
    }

    /// The run's preview as it stands now, with who decided.
    pub async fn load(store: &crate::store::Store, run: &RunId) -> Result<Self, crate::store::StoreError> {
        let rec = store.run(run).await?;
        let approvals = store.approvals(run).await?;
        let audit = if matches!(rec.state, RunState::Rejected | RunState::Cancelled) { store.audit_for_run(run).await? } else { Vec::new() };
        Ok(PlanPreview::from_run(&rec, &approvals).decided_by_from(&audit))
    }

    pub fn from_run(run: &RunRecord, approvals: &[crate::policy::Approval]) -> Self {
        let snapshot: Option<crate::snapshot::UserSnapshot> = serde_json::from_str(&run.snapshot).ok();
        let request: Option<Request> = serde_json::from_str(&run.request).ok();
        let mut high_risk: Vec<String> =
            run.plan.steps.iter().filter(|s| s.high_risk && s.skip.is_none()).map(|s| format!("{} is high risk", s.kind.title())).collect();
        high_risk.extend(run.plan.high_risk_reasons.iter().cloned());
        PlanPreview {
            run_id: run.id.clone(),
            tenant: run.tenant.clone(),
            target_upn: run.target_upn.clone(),
            target_name: run.target_name.clone(),
            target_title: snapshot.as_ref().and_then(|s| s.job_title.clone()),
            manager: snapshot.as_ref().and_then(|s| s.manager.as_ref().map(|m| m.display_name.clone())),
            requester: Who::new(&run.requester, &run.requester_name),
            reason: request.as_ref().and_then(|r| r.reason.clone()),
            ticket: request.as_ref().and_then(|r| r.ticket.clone()),
            preset: run.plan.preset.clone(),
            deviations: run.plan.deviations.clone(),
            notes: run.plan.notes.clone(),
            high_risk,
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
            // The manager's approval is one more when IT's is needed as well.
            approvals_needed: run.approvals_needed + usize::from(run.line_manager.as_ref().is_some_and(|m| m.mode == crate::policy::ManagerApproves::Also)),
            approvers: may_approve(run),
            approvals: approvals.iter().filter(|a| a.plan_hash == run.plan_hash).map(|a| (Who::new(&a.approver, &a.approver_name), a.at)).collect(),
            expires_at: run.expires_at,
            start_at: run.start_at,
            state: run.state,
            decided_note: run.reason.clone(),
            decided_by: None,
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
    /// As a Unicode emoji, for platforms that show marks as text (Teams, Discord).
    pub fn emoji(self) -> &'static str {
        match self {
            Self::Pending => "▫️",
            Self::Running => "⏳",
            Self::Done => "✅",
            Self::Skipped => "⏭️",
            Self::Failed => "❌",
            Self::Attention => "⚠️",
            Self::NotRun => "➖",
        }
    }

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

impl StatusLine {
    /// The line's words after its badge, as every platform says them: the title, the
    /// duration where it tells something, and the detail of a step that did not simply
    /// succeed or is waiting (one line, at most 200 characters).
    pub fn text(&self) -> String {
        let mut s = self.title.to_string();
        if let Some(d) = self.duration_ms.and_then(duration) {
            s.push_str(&format!(" ({d})"));
        }
        if let Some(d) = &self.detail
            && matches!(self.badge, Badge::Running | Badge::Skipped | Badge::Failed | Badge::Attention)
        {
            let d = one_line(d);
            let d = if d.chars().count() <= 200 { d } else { format!("{}…", d.chars().take(199).collect::<String>()) };
            s.push_str(&format!(": {d}"));
        }
        s
    }
}

/// A step's duration where it tells something: from a second up, rounded as people say it.
pub fn duration(ms: i64) -> Option<String> {
    if ms < 1000 {
        return None;
    }
    let s = (ms + 500) / 1000;
    match s {
        0..=59 => Some(format!("{s} s")),
        60..=3599 => Some(format!("{} min {} s", s / 60, s % 60)),
        _ => Some(format!("{} h {} min", s / 3600, (s % 3600) / 60)),
    }
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
                    // Waiting holds no worker, yet for the person reading it is under way.
                    Some(s) if s.state == StepState::Ready && s.waiting_since.is_some() => (Badge::Running, s.last_error.clone(), None),
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
    /// Where it can be downloaded (signed and expiring), when the service has a public
    /// address: for surfaces that cannot upload, and beside the upload for those that can.
    pub link: Option<String>,
}

/// A mark a platform draws as its own icon (Slack's `:warning:`, an emoji elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Warning,
    HighRisk,
    Approved,
    Rejected,
    Expired,
    Cancelled,
    Scheduled,
}

impl Mark {
    /// As a Unicode emoji, for platforms that show marks as text (Teams, Discord).
    pub fn emoji(self) -> &'static str {
        match self {
            Self::Warning => "⚠️",
            Self::HighRisk => "🚨",
            Self::Approved => "✅",
            Self::Rejected => "⛔",
            Self::Expired => "⌛",
            Self::Cancelled => "✖️",
            Self::Scheduled => "📅",
        }
    }
}

/// A value beside a label: words (from a person, the directory or core), or people, whom
/// a platform may mention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Text(String),
    /// With when, where it matters (an approval).
    People(Vec<(Who, Option<DateTime<Utc>>)>),
    /// An outcome, with its mark.
    Marked(Mark, String),
}

/// One planned step as the preview says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepText {
    pub text: String,
    pub high_risk: bool,
    pub warnings: Vec<String>,
}

/// What the approval message says, in order, for every platform: the heading, labelled
/// facts, notes for the approver, the steps, a footer, and either the decision buttons or
/// the decision. Values from people or the directory are one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewLayout {
    pub heading: String,
    /// For notifications and screen readers.
    pub summary: String,
    pub facts: Vec<(&'static str, Fact)>,
    pub notes: Vec<String>,
    pub steps: Vec<StepText>,
    pub footer: String,
    /// `None` while the decision is open: show Approve and Reject.
    pub decision: Option<Vec<(&'static str, Fact)>>,
}

/// Who may approve a run, in words: IT by role, and the line manager by name with how
/// their chat identity was found, as the tenant's policy asks.
fn may_approve(run: &RunRecord) -> Option<String> {
    use crate::policy::ManagerApproves;
    let it = match run.approvals_needed {
        1 => "one IT approver".to_string(),
        n => format!("{n} different IT approvers"),
    };
    let m = run.line_manager.as_ref()?;
    let manager = format!("{}, the line manager ({})", m.name, m.found);
    Some(match (m.mode, run.approvals_needed) {
        (ManagerApproves::Also, _) => format!("{manager}, and {it}"),
        (ManagerApproves::Alone, 1) => format!("{manager}, or {it}"),
        (ManagerApproves::Alone, n) => format!("{manager} with {} more IT approver{}, or {it}", n - 1, if n == 2 { "" } else { "s" }),
        (ManagerApproves::No, _) => return None,
    })
}

/// A UTC time as every message writes it.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn one_line(s: &str) -> String {
    crate::templates::one_line(s)
}

impl PlanPreview {
    pub fn layout(&self) -> PreviewLayout {
        let p = self;
        let text = |s: String| Fact::Text(s);
        let mut facts: Vec<(&'static str, Fact)> = vec![("Employee", text(one_line(&format!("{} ({})", p.target_name, p.target_upn))))];
        if let Some(t) = &p.target_title {
            facts.push(("Job title", text(one_line(t))));
        }
        facts.push(("Manager", text(p.manager.as_deref().map(one_line).unwrap_or_else(|| "none recorded".into()))));
        facts.push(("Tenant", text(p.tenant.to_string())));
        facts.push(("Requested by", Fact::People(vec![(p.requester.clone(), None)])));
        facts.push(("Reason (requester's words)", text(p.reason.as_deref().map(one_line).unwrap_or_else(|| "none given".into()))));
        if let Some(t) = &p.ticket {
            facts.push(("Ticket (requester's words)", text(one_line(t))));
        }
        facts.push((
            "Preset",
            text(match &p.preset {
                Some(name) if p.deviations.is_empty() => format!("{name}, unchanged"),
                Some(name) => format!("{name}, changed: {}", one_line(&p.deviations.join("; "))),
                None => "none: every option chosen by hand".into(),
            }),
        ));
        if let Some(at) = p.start_at {
            facts.push(("Scheduled for", text(time(at))));
        }
        if !p.high_risk.is_empty() {
            facts.push(("Two approvers", text(one_line(&p.high_risk.join("; ")))));
        }
        if let Some(who) = &p.approvers {
            facts.push(("May approve", text(one_line(who))));
        }
        if !p.approvals.is_empty() {
            facts.push(("Approved by", Fact::People(p.approvals.iter().map(|(who, at)| (who.clone(), Some(*at))).collect())));
        }
        facts.push(("Run", text(p.run_id.to_string())));
        let steps = p
            .lines
            .iter()
            .map(|l| StepText {
                text: match &l.skip {
                    Some(reason) => format!("{}: skipped, {}", l.title, one_line(reason)),
                    None => format!("{}: {}", l.title, one_line(&l.text)),
                },
                high_risk: l.high_risk,
                warnings: l.warnings.iter().map(|w| one_line(w)).collect(),
            })
            .collect();
        let open = p.state == RunState::AwaitingApproval;
        let expiry = if open { format!(" · expires {}", time(p.expires_at)) } else { String::new() };
        let have = if open && !p.approvals.is_empty() { format!(" · {} of {} given", p.approvals.len(), p.approvals_needed) } else { String::new() };
        let footer =
            format!("Needs {} approval{}{have} · plan {}{expiry}", p.approvals_needed, if p.approvals_needed == 1 { "" } else { "s" }, p.plan_hash.short());
        let decision = (!open).then(|| {
            let (mark, said) = match p.state {
                RunState::Rejected => (Mark::Rejected, "Rejected"),
                RunState::Expired => (Mark::Expired, "Expired without a decision"),
                RunState::Cancelled => (Mark::Cancelled, "Cancelled"),
                RunState::Scheduled => (Mark::Scheduled, "Approved, scheduled"),
                _ => (Mark::Approved, "Approved"),
            };
            let mut decided: Vec<(&'static str, Fact)> = vec![("Decision", Fact::Marked(mark, said.into()))];
            if let Some(by) = &p.decided_by {
                decided.push(("By", Fact::People(vec![(by.clone(), None)])));
            }
            if let (RunState::Rejected, Some(reason)) = (p.state, &p.decided_note) {
                decided.push(("Reason (rejecter's words)", Fact::Text(one_line(reason))));
            }
            if !matches!(p.state, RunState::Rejected | RunState::Expired | RunState::Cancelled | RunState::Scheduled) {
                decided.push(("Now", Fact::Text(p.state.label().to_string())));
            }
            decided
        });
        PreviewLayout {
            heading: one_line(&format!("Offboard {}", p.target_name)),
            summary: one_line(&format!("Offboarding request for {} ({}) by {}", p.target_name, p.target_upn, p.requester.name)),
            facts,
            notes: p.notes.iter().map(|n| one_line(n)).collect(),
            steps,
            footer,
            decision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step waiting for Microsoft holds no worker, but the person reading the status sees
    /// it under way and what it waits for.
    #[test]
    fn a_waiting_step_reads_as_under_way_with_what_it_waits_for() {
        let (mut run, mut steps, _) = crate::testing::finished_run();
        run.state = RunState::Running;
        let i = steps.iter().position(|s| s.key == crate::plan::StepKind::VerifyShared.key()).expect("the plan verifies the mailbox");
        let verify = &mut steps[i];
        verify.state = StepState::Ready;
        verify.outcome = None;
        verify.finished_at = None;
        verify.polls = 2;
        verify.waiting_since = verify.started_at;
        verify.last_error = Some("waiting for Exchange to report the mailbox shared (it reports UserMailbox; 2 check(s) so far)".into());
        let view = RunView::from_run(&run, &steps);
        let line = view.lines.iter().find(|l| l.title == "Verify the mailbox is shared").expect("line");
        assert_eq!(line.badge, Badge::Running);
        assert_eq!(line.text(), "Verify the mailbox is shared: waiting for Exchange to report the mailbox shared (it reports UserMailbox; 2 check(s) so far)");
        // A step merely queued says nothing more than its title.
        steps[i].waiting_since = None;
        let view = RunView::from_run(&run, &steps);
        let line = view.lines.iter().find(|l| l.title == "Verify the mailbox is shared").expect("line");
        assert_eq!((line.badge, line.text()), (Badge::Pending, "Verify the mailbox is shared".to_string()));
    }

    /// What every platform's approval message says, open and decided.
    #[test]
    fn the_preview_says_the_same_everywhere() {
        let (mut run, _, approvals) = crate::testing::finished_run();
        insta::assert_debug_snapshot!("layout_decided", PlanPreview::from_run(&run, &approvals).layout());
        run.state = RunState::AwaitingApproval;
        let open = PlanPreview::from_run(&run, &[]).layout();
        assert!(open.decision.is_none() && open.footer.contains("expires"), "{open:?}");
        insta::assert_debug_snapshot!("layout_open", open);
    }

    /// With the line manager among the approvers, the preview names them and how they were
    /// found, in each mode; without, it adds nothing.
    #[test]
    fn the_preview_says_who_may_approve() {
        use crate::policy::{LineManager, ManagerApproves};
        let (mut run, _, _) = crate::testing::finished_run();
        run.state = RunState::AwaitingApproval;
        let said = |run: &RunRecord| PlanPreview::from_run(run, &[]).layout().facts.into_iter().find(|(label, _)| *label == "May approve").map(|(_, f)| f);
        assert_eq!(said(&run), None);
        let mary = |mode| LineManager {
            upn: "mary@contoso.com".into(),
            name: "Mary Manager".into(),
            identities: vec!["slack:U0MARY".into()],
            mode,
            found: "found in Slack by e-mail".into(),
        };
        run.line_manager = Some(mary(ManagerApproves::Alone));
        assert_eq!(said(&run), Some(Fact::Text("Mary Manager, the line manager (found in Slack by e-mail), or one IT approver".into())));
        run.approvals_needed = 2;
        assert_eq!(
            said(&run),
            Some(Fact::Text("Mary Manager, the line manager (found in Slack by e-mail) with 1 more IT approver, or 2 different IT approvers".into()))
        );
        run.line_manager = Some(mary(ManagerApproves::Also));
        assert_eq!(said(&run), Some(Fact::Text("Mary Manager, the line manager (found in Slack by e-mail), and 2 different IT approvers".into())));
    }

    #[test]
    fn durations_are_shown_from_a_second_up() {
        assert_eq!(duration(0), None);
        assert_eq!(duration(999), None);
        assert_eq!(duration(1_400).as_deref(), Some("1 s"));
        assert_eq!(duration(65_000).as_deref(), Some("1 min 5 s"));
        assert_eq!(duration(7_260_000).as_deref(), Some("2 h 1 min"));
    }
}
