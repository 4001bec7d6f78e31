//! The compliance report's content: built from the stored run (plan, discovery snapshot,
//! step outcomes with their read-backs and request ids, approvals) and the audit chain's
//! head, then laid out as neutral blocks. The PDF renderer draws the blocks; `to_text`
//! prints them, which is what snapshot tests pin and what `pdftotext` must show.

use chrono::{DateTime, Duration, Utc};

use crate::audit::Checkpoint;
use crate::plan::StepKind;
use crate::policy::Approval;
use crate::run::{RunState, StepOutcome, StepState};
use crate::snapshot::{MailboxType, RoleState, UserSnapshot};
use crate::store::{RunRecord, StepRecord};

/// Non-CAE access tokens stay valid up to this long after sessions are revoked.
pub const TOKEN_GRACE: Duration = Duration::minutes(90);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub run_id: String,
    pub state: RunState,
    pub tenant: String,
    pub employee: String,
    pub upn: String,
    pub object_id: String,
    pub job_title: Option<String>,
    pub manager: Option<String>,
    pub requester: String,
    pub requested_at: DateTime<Utc>,
    pub approvals: Vec<(String, DateTime<Utc>)>,
    pub approved_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub plan_hash: String,
    pub counts: Counts,
    pub changes: Vec<Change>,
    pub steps: Vec<StepLine>,
    pub licences_reclaimed: Vec<String>,
    /// When every lockout effect is certain, or `None` when lockout did not complete.
    pub effective_by: Option<DateTime<Utc>>,
    pub audit_head: Option<Checkpoint>,
    pub generated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub succeeded: usize,
    pub skipped: usize,
    pub failed: usize,
    pub attention: usize,
    pub pending: usize,
}

/// One aspect of the account, before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub aspect: &'static str,
    pub before: String,
    pub after: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLine {
    pub title: &'static str,
    pub state: StepState,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub detail: String,
    pub request_ids: Vec<String>,
}

/// What the renderers draw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Title(String),
    /// The boxed summary under the title; its first line is the outcome.
    Summary(Vec<String>),
    Heading(String),
    Field(String, String),
    /// A step: its heading line and indented detail lines.
    Step {
        head: String,
        lines: Vec<String>,
    },
    Para(String),
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

impl Report {
    pub fn build(run: &RunRecord, steps: &[StepRecord], approvals: &[Approval], audit_head: Option<Checkpoint>, generated_at: DateTime<Utc>) -> Self {
        let snapshot: Option<UserSnapshot> = serde_json::from_str(&run.snapshot).ok();
        let record = |kind: StepKind| {
            let key = kind.key();
            run.plan.step(&key).map(|planned| (planned, steps.iter().find(|s| s.key == key)))
        };
        let mut counts = Counts::default();
        let lines: Vec<StepLine> = run
            .plan
            .steps
            .iter()
            .map(|p| {
                let rec = steps.iter().find(|s| s.key == p.key);
                let state = rec.map_or(StepState::Waiting, |r| r.state);
                match state {
                    StepState::Succeeded => counts.succeeded += 1,
                    StepState::Skipped => counts.skipped += 1,
                    StepState::Failed => counts.failed += 1,
                    StepState::NeedsAttention => counts.attention += 1,
                    _ => counts.pending += 1,
                }
                let outcome = rec.and_then(|r| r.outcome.as_ref());
                let detail = match outcome {
                    Some(o) => o.summary().to_string(),
                    None => rec.and_then(|r| r.last_error.clone()).map_or_else(|| "not run".to_string(), |e| format!("not finished: {e}")),
                };
                let request_ids = match outcome {
                    Some(StepOutcome::Succeeded { request_ids, .. }) => request_ids.clone(),
                    Some(StepOutcome::Failed { request_id: Some(id), .. }) => vec![id.clone()],
                    _ => vec![],
                };
                StepLine {
                    title: p.kind.title(),
                    state,
                    started_at: rec.and_then(|r| r.started_at),
                    finished_at: rec.and_then(|r| r.finished_at),
                    detail,
                    request_ids,
                }
            })
            .collect();

        let after = |kind: StepKind| -> String {
            match record(kind) {
                None => "unchanged (not in the plan)".into(),
                Some((planned, rec)) => match rec.and_then(|r| r.outcome.as_ref()) {
                    Some(StepOutcome::Succeeded { verified, .. }) => verified.clone(),
                    Some(StepOutcome::Skipped { reason, .. }) => format!("unchanged: {reason}"),
                    Some(StepOutcome::Failed { error, .. }) => format!("unchanged: the step failed ({error})"),
                    Some(StepOutcome::NeedsAttention { reason }) => format!("unconfirmed: {reason}"),
                    None => planned.skip.as_ref().map_or_else(|| "unchanged: the step has not run".into(), |s| format!("unchanged: {s}")),
                },
            }
        };
        let changes = snapshot.as_ref().map(|s| changes(s, &after)).unwrap_or_default();

        let licences_reclaimed = match record(StepKind::RemoveLicences) {
            Some((planned, Some(rec))) if rec.state == StepState::Succeeded => {
                let names = |k: &str| -> Vec<String> {
                    planned.params[k].as_array().into_iter().flatten().filter_map(|l| l["sku"].as_str().map(str::to_string)).collect()
                };
                let mut all = names("direct");
                all.extend(names("inherited"));
                all
            }
            _ => vec![],
        };

        // Lockout is complete once every planned lockout step succeeded; the last token
        // issued before the revoke may live until TOKEN_GRACE after it.
        let lockout: Vec<&StepRecord> = run.plan.steps.iter().filter(|p| p.kind.is_lockout()).filter_map(|p| steps.iter().find(|s| s.key == p.key)).collect();
        let effective_by = if !lockout.is_empty() && lockout.iter().all(|s| s.state == StepState::Succeeded) {
            lockout.iter().filter_map(|s| s.finished_at).max().map(|t| t + TOKEN_GRACE)
        } else {
            None
        };

        Report {
            run_id: run.id.to_string(),
            state: run.state,
            tenant: run.tenant.to_string(),
            employee: run.target_name.clone(),
            upn: run.target_upn.clone(),
            object_id: run.target_id.clone(),
            job_title: snapshot.as_ref().and_then(|s| s.job_title.clone()),
            manager: snapshot.as_ref().and_then(|s| s.manager.as_ref().map(|m| format!("{} ({})", m.display_name, m.upn))),
            requester: format!("{} ({})", run.requester_name, run.requester),
            requested_at: run.created_at,
            approvals: approvals.iter().map(|a| (format!("{} ({})", a.approver_name, a.approver), a.at)).collect(),
            approved_at: run.approved_at,
            finished_at: run.finished_at,
            plan_hash: run.plan_hash.0.clone(),
            counts,
            changes,
            steps: lines,
            licences_reclaimed,
            effective_by,
            audit_head,
            generated_at,
        }
    }

    /// The headline: what a reader must know first.
    pub fn outcome(&self) -> String {
        match self.state {
            RunState::Completed => "COMPLETED: every planned step succeeded and was read back".into(),
            RunState::CompletedWithWarnings => "COMPLETED WITH WARNINGS: some steps were skipped".into(),
            RunState::Failed => "FAILED: at least one step failed; see the timeline".into(),
            RunState::NeedsAttention => "NEEDS ATTENTION: a step's result could not be confirmed".into(),
            other => format!("NOT COMPLETE: the run is {}", other.label()),
        }
    }

    pub fn blocks(&self) -> Vec<Block> {
        let mut out = vec![Block::Title("Offboarding compliance report".into())];
        let c = self.counts;
        let mut summary = vec![
            self.outcome(),
            format!("{} ({}) in tenant {}", self.employee, self.upn, self.tenant),
            format!("{} succeeded · {} skipped · {} failed · {} need attention · {} not run", c.succeeded, c.skipped, c.failed, c.attention, c.pending),
        ];
        if let Some(t) = self.finished_at {
            summary.push(format!("Finished {}", time(t)));
        }
        out.push(Block::Summary(summary));

        out.push(Block::Heading("Request".into()));
        let mut field = |k: &str, v: String| out.push(Block::Field(k.into(), v));
        field("Run", self.run_id.clone());
        field("Tenant", self.tenant.clone());
        field("Employee", format!("{} ({})", self.employee, self.upn));
        field("Object id", self.object_id.clone());
        if let Some(t) = &self.job_title {
            field("Job title", t.clone());
        }
        field("Manager", self.manager.clone().unwrap_or_else(|| "none recorded".into()));
        field("Requested by", format!("{} at {}", self.requester, time(self.requested_at)));
        if self.approvals.is_empty() {
            field("Approved by", "no approval recorded".into());
        }
        for (who, at) in &self.approvals {
            field("Approved by", format!("{who} at {}", time(*at)));
        }
        field("Plan hash", self.plan_hash.clone());

        out.push(Block::Heading("Before and after".into()));
        for ch in &self.changes {
            out.push(Block::Step { head: ch.aspect.to_string(), lines: vec![format!("before: {}", ch.before), format!("after:  {}", ch.after)] });
        }

        out.push(Block::Heading("Step timeline".into()));
        for s in &self.steps {
            let mut lines = vec![];
            match (s.started_at, s.finished_at) {
                (Some(a), Some(b)) => lines.push(format!("{} → {} ({} ms)", time(a), time(b), (b - a).num_milliseconds())),
                (Some(a), None) => lines.push(format!("started {}", time(a))),
                _ => {}
            }
            lines.push(s.detail.clone());
            if !s.request_ids.is_empty() {
                lines.push(format!("Microsoft request ids: {}", s.request_ids.join(", ")));
            }
            out.push(Block::Step { head: format!("{} {}", state_mark(s.state), s.title), lines });
        }

        out.push(Block::Heading("Licences reclaimed".into()));
        out.push(Block::Para(if self.licences_reclaimed.is_empty() { "none".into() } else { self.licences_reclaimed.join(", ") }));

        out.push(Block::Heading("When the lockout is effective".into()));
        out.push(Block::Para(match self.effective_by {
            Some(t) => format!(
                "Effective by {}. Sign-in was blocked and sessions revoked at once; refresh tokens stop working within minutes, but access tokens already issued to apps that do not support continuous access evaluation stay valid for up to 90 minutes.",
                time(t)
            ),
            None => "Not certain: the lockout steps did not all succeed, so access may continue. See the timeline.".into(),
        }));

        out.push(Block::Heading("Audit chain".into()));
        out.push(Block::Para(match &self.audit_head {
            Some(h) => format!("Head of the audit hash chain when this report was made: entry {} hash {}", h.seq, h.hash),
            None => "The audit log was empty.".into(),
        }));
        out.push(Block::Para(format!("Report generated {}", time(self.generated_at))));
        out
    }

    /// The blocks as plain text, one line per line of the report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for b in self.blocks() {
            match b {
                Block::Title(t) => s.push_str(&format!("{t}\n")),
                Block::Summary(lines) => lines.iter().for_each(|l| s.push_str(&format!("| {l}\n"))),
                Block::Heading(h) => s.push_str(&format!("\n{h}\n")),
                Block::Field(k, v) => s.push_str(&format!("  {k}: {v}\n")),
                Block::Step { head, lines } => {
                    s.push_str(&format!("  {head}\n"));
                    lines.iter().for_each(|l| s.push_str(&format!("      {l}\n")));
                }
                Block::Para(p) => s.push_str(&format!("  {p}\n")),
            }
        }
        s
    }
}

/// A mark that survives text extraction and greyscale printing.
pub fn state_mark(state: StepState) -> &'static str {
    match state {
        StepState::Succeeded => "[OK]",
        StepState::Skipped => "[SKIPPED]",
        StepState::Failed => "[FAILED]",
        StepState::NeedsAttention => "[ATTENTION]",
        StepState::Cancelled => "[CANCELLED]",
        _ => "[NOT RUN]",
    }
}

fn changes(s: &UserSnapshot, after: &dyn Fn(StepKind) -> String) -> Vec<Change> {
    let mut out = Vec::new();
    let mut add = |aspect: &'static str, before: String, kind: StepKind| out.push(Change { aspect, before, after: after(kind) });
    add("Sign-in", if s.account_enabled { "enabled".into() } else { "already disabled".into() }, StepKind::DisableSignIn);
    add("Sessions", "valid sessions and refresh tokens".into(), StepKind::RevokeSessions);
    add("Password", s.last_password_change.as_ref().map_or_else(|| "last change unknown".into(), |t| format!("last changed {t}")), StepKind::ResetPassword);
    let methods = s.auth_methods.iter().filter(|m| !m.is_password()).count();
    add("MFA methods", format!("{methods} registered"), StepKind::RemoveMfaMethods);
    let roles: Vec<String> = s.roles.iter().map(|r| format!("{}{}", r.role_name, if r.state == RoleState::Eligible { " (eligible)" } else { "" })).collect();
    add("Admin roles", if roles.is_empty() { "none".into() } else { roles.join(", ") }, StepKind::RemoveAdminRoles);
    add("Groups", format!("member of {}", s.groups.len()), StepKind::RemoveGroups);
    let skus: Vec<&str> = s.licences.iter().map(|l| l.sku_part_number.as_str()).collect();
    add("Licences", if skus.is_empty() { "none".into() } else { skus.join(", ") }, StepKind::RemoveLicences);
    let managed = s.devices.iter().filter(|d| d.managed).count();
    add("Devices", format!("{} ({} managed)", s.devices.len(), managed), StepKind::DeviceAction);
    if let Some(m) = &s.mailbox {
        let kind = if m.kind == MailboxType::Shared { "shared" } else { "user" };
        add("Mailbox", format!("{kind} mailbox, {}", gib(m.size_bytes)), StepKind::ConvertToShared);
        add("Forwarding", m.forwarding.clone().map_or_else(|| "none".into(), |f| format!("to {f}")), StepKind::DisableForwarding);
        add("Inbox rules", format!("{}", m.inbox_rules.len()), StepKind::RemoveInboxRules);
        add("Rights on other mailboxes", format!("{}", m.delegations.len()), StepKind::RemoveMailboxPermissions);
    }
    if let Some(d) = &s.onedrive {
        add("OneDrive", format!("{} used", gib(d.used_bytes)), StepKind::GrantOneDriveAccess);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn a_finished_run_reads_as_the_snapshot() {
        let (run, steps, approvals) = testing::finished_run();
        let head = Checkpoint { seq: 42, hash: "ab".repeat(32), at_ms: 0 };
        let report = Report::build(&run, &steps, &approvals, Some(head), run.finished_at.unwrap());
        insta::assert_snapshot!(report.to_text());
    }

    #[test]
    fn an_incomplete_lockout_is_not_called_effective() {
        let (run, mut steps, approvals) = testing::finished_run();
        let i = steps.iter().position(|s| s.key == StepKind::RevokeSessions.key()).unwrap();
        steps[i].state = StepState::Failed;
        steps[i].outcome = Some(StepOutcome::Failed { error: "Microsoft returned 503".into(), request_id: Some("req-9".into()) });
        let report = Report::build(&run, &steps, &approvals, None, run.finished_at.unwrap());
        assert_eq!(report.effective_by, None);
        assert!(report.to_text().contains("Not certain"));
        assert!(report.to_text().contains("Microsoft request ids: req-9"));
        assert_eq!(report.counts.failed, 1);
    }
}
