//! The compliance report's content: built from the stored run (plan, discovery snapshot,
//! step outcomes with their read-backs and request ids, approvals) and the audit chain's
//! head, then laid out as neutral blocks. The PDF renderer draws the blocks; `to_text`
//! prints them, which is what snapshot tests pin and what `pdftotext` must show.

use chrono::{DateTime, Duration, Utc};

use crate::audit::Checkpoint;
use crate::plan::{PlannedStep, StepKind};
use crate::policy::Approval;
use crate::request::Request;
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
    /// The preset the request started from, and how it departs from it.
    pub preset: Option<String>,
    pub deviations: Vec<String>,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    /// Why two approvers were needed, if they were.
    pub high_risk: Vec<String>,
    /// What the plan told the approver beyond its steps.
    pub notes: Vec<String>,
    pub counts: Counts,
    pub changes: Vec<Change>,
    pub steps: Vec<StepLine>,
    /// Access the leaver still has after the run, each with its reason.
    pub left_in_place: Vec<String>,
    /// What was said or set on the leaver's behalf, verbatim.
    pub said: Vec<(String, String)>,
    pub licences_reclaimed: Vec<String>,
    pub lockout: Lockout,
    pub audit_head: Option<Checkpoint>,
    /// Requester, approvals and outcomes were read from the verified audit chain.
    pub from_audit: bool,
    pub generated_at: DateTime<Utc>,
}

/// Whether the lockout took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lockout {
    /// No lockout step was planned.
    NotPlanned,
    /// Every planned lockout step reached its goal; tokens issued before may live until then.
    Effective(DateTime<Utc>),
    /// Some did not: the steps, with what they said.
    NotEffective(Vec<String>),
    /// The run has not got that far.
    Pending,
}

impl Lockout {
    /// When every lockout effect is certain.
    pub fn effective_by(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Effective(t) => Some(*t),
            _ => None,
        }
    }
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
    pub kind: StepKind,
    pub title: &'static str,
    pub state: StepState,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub detail: String,
    pub request_ids: Vec<String>,
    /// Work this step left for a person (on-premises groups).
    pub left: Vec<String>,
    pub warning: bool,
}

/// What the audit chain attests about a run. The report takes the requester, the approvers
/// and every step's outcome from here, not from the run's rows, which anyone with write
/// access to the database could change; the chain's entries are sealed (see
/// [`crate::audit`]).
#[derive(Debug, Clone, Default)]
pub struct Attested {
    /// Actor key and name.
    pub requester: Option<(String, String)>,
    pub approvals: Vec<Approval>,
    /// The last recorded outcome of each step, by step key.
    pub outcomes: std::collections::BTreeMap<String, (StepOutcome, DateTime<Utc>)>,
}

impl Attested {
    pub fn from_entries(entries: &[crate::audit::AuditEntry]) -> Self {
        let mut a = Attested::default();
        for e in entries {
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
            match e.action.as_str() {
                "run.requested" => a.requester = Some((e.actor.clone(), detail["requester"].as_str().unwrap_or(&e.actor).to_string())),
                "run.approved" => {
                    if let Some(plan) = detail["plan_hash"].as_str() {
                        a.approvals.push(Approval {
                            approver: e.actor.clone(),
                            approver_name: detail["approver"].as_str().unwrap_or(&e.actor).to_string(),
                            plan_hash: crate::plan::PlanHash(plan.to_string()),
                            at: e.at(),
                        });
                    }
                }
                "step.finished" | "step.resolved" => {
                    if let (Some(step), Ok(outcome)) = (detail["step"].as_str(), serde_json::from_value::<StepOutcome>(detail["outcome"].clone())) {
                        a.outcomes.insert(step.to_string(), (outcome, e.at()));
                    }
                }
                _ => {}
            }
        }
        a
    }
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

fn list_or(items: &[String], none: &str) -> String {
    if items.is_empty() { none.to_string() } else { items.join(", ") }
}

fn count_of(n: usize, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}

/// A step ended at its goal: done and read back, or nothing was there to change.
fn reached_goal(outcome: Option<&StepOutcome>) -> bool {
    matches!(outcome, Some(StepOutcome::Succeeded { .. }) | Some(StepOutcome::Skipped { warning: false, .. }))
}

impl Report {
    pub fn build(run: &RunRecord, steps: &[StepRecord], approvals: &[Approval], audit_head: Option<Checkpoint>, generated_at: DateTime<Utc>) -> Self {
        let snapshot: Option<UserSnapshot> = serde_json::from_str(&run.snapshot).ok();
        let request: Option<Request> = serde_json::from_str(&run.request).ok();
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
                let left = match outcome {
                    Some(StepOutcome::Succeeded { left, .. }) => left.clone(),
                    _ => vec![],
                };
                StepLine {
                    kind: p.kind,
                    title: p.kind.title(),
                    state,
                    started_at: rec.and_then(|r| r.started_at),
                    finished_at: rec.and_then(|r| r.finished_at),
                    detail,
                    request_ids,
                    left,
                    warning: outcome.is_some_and(StepOutcome::is_warning),
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
        let changes = snapshot.as_ref().map(|s| changes(s, run, &after)).unwrap_or_default();

        // Licences are counted by SKU: one SKU held directly and through two groups is one.
        let mut licences_reclaimed = Vec::new();
        if let Some((planned, Some(rec))) = record(StepKind::RemoveLicences)
            && rec.state == StepState::Succeeded
        {
            for k in ["direct", "inherited"] {
                for l in planned.params[k].as_array().into_iter().flatten() {
                    if let Some(sku) = l["sku"].as_str().map(str::to_string)
                        && !licences_reclaimed.contains(&sku)
                    {
                        licences_reclaimed.push(sku);
                    }
                }
            }
        }

        // The lockout is effective once every planned lockout step reached its goal; the
        // last token issued before the revoke may live until TOKEN_GRACE after it.
        let planned_lockout: Vec<&PlannedStep> = run.plan.steps.iter().filter(|p| p.kind.is_lockout()).collect();
        let lockout = if planned_lockout.is_empty() {
            Lockout::NotPlanned
        } else {
            let recs: Vec<(&PlannedStep, Option<&StepRecord>)> = planned_lockout.iter().map(|p| (*p, steps.iter().find(|s| s.key == p.key))).collect();
            if recs.iter().all(|(_, r)| reached_goal(r.and_then(|r| r.outcome.as_ref()))) {
                let last = recs.iter().filter_map(|(_, r)| r.and_then(|r| r.finished_at)).max();
                last.map_or(Lockout::Pending, |t| Lockout::Effective(t + TOKEN_GRACE))
            } else {
                let missed: Vec<String> = recs
                    .iter()
                    .filter(|(_, r)| {
                        r.and_then(|r| r.outcome.as_ref()).is_some_and(|o| !reached_goal(Some(o)))
                            || (run.state.is_terminal() && r.and_then(|r| r.outcome.as_ref()).is_none())
                    })
                    .map(|(p, r)| format!("{}: {}", p.kind.title(), r.and_then(|r| r.outcome.as_ref()).map_or("not run", |o| o.summary())))
                    .collect();
                if missed.is_empty() { Lockout::Pending } else { Lockout::NotEffective(missed) }
            }
        };

        let left_in_place = snapshot.as_ref().map(|s| left_in_place(s, run, &lines)).unwrap_or_default();
        let said = said(run);
        let mut high_risk: Vec<String> =
            run.plan.steps.iter().filter(|s| s.high_risk && s.skip.is_none()).map(|s| format!("{} is a high-risk step", s.kind.title())).collect();
        high_risk.extend(run.plan.high_risk_reasons.iter().cloned());

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
            approvals: approvals.iter().filter(|a| a.plan_hash == run.plan_hash).map(|a| (format!("{} ({})", a.approver_name, a.approver), a.at)).collect(),
            approved_at: run.approved_at,
            finished_at: run.finished_at,
            plan_hash: run.plan_hash.0.clone(),
            preset: run.plan.preset.clone(),
            deviations: run.plan.deviations.clone(),
            reason: request.as_ref().and_then(|r| r.reason.clone()),
            ticket: request.as_ref().and_then(|r| r.ticket.clone()),
            high_risk,
            notes: run.plan.notes.clone(),
            counts,
            changes,
            steps: lines,
            left_in_place,
            said,
            licences_reclaimed,
            lockout,
            audit_head,
            from_audit: false,
            generated_at,
        }
    }

    /// The report as the audit chain attests it: requester, approvers and outcomes from
    /// `attested`; a step the chain says nothing about has no outcome, whatever its row says.
    pub fn build_attested(run: &RunRecord, steps: &[StepRecord], attested: &Attested, audit_head: Option<Checkpoint>, generated_at: DateTime<Utc>) -> Self {
        let mut run = run.clone();
        if let Some((actor, name)) = &attested.requester {
            run.requester = actor.clone();
            run.requester_name = name.clone();
        }
        let steps: Vec<StepRecord> = steps
            .iter()
            .map(|s| {
                let mut s = s.clone();
                match attested.outcomes.get(s.key.as_str()) {
                    Some((o, at)) => {
                        s.state = o.state();
                        s.outcome = Some(o.clone());
                        s.finished_at = Some(*at);
                    }
                    None if s.outcome.is_some() => {
                        s.outcome = None;
                        s.state = StepState::Waiting;
                    }
                    None => {}
                }
                s
            })
            .collect();
        Self { from_audit: true, ..Self::build(&run, &steps, &attested.approvals, audit_head, generated_at) }
    }

    /// When every lockout effect is certain.
    pub fn effective_by(&self) -> Option<DateTime<Utc>> {
        self.lockout.effective_by()
    }

    /// The headline: what a reader must know first. A lockout that did not take effect
    /// comes before everything else, in every outcome.
    pub fn outcome(&self) -> String {
        if let Lockout::NotEffective(_) = &self.lockout {
            let sign_in = self
                .steps
                .iter()
                .any(|s| matches!(s.kind, StepKind::DisableSignIn | StepKind::ResetPassword) && !matches!(s.state, StepState::Succeeded | StepState::Skipped));
            return if sign_in {
                format!("NOT LOCKED OUT: {} can still sign in", self.employee)
            } else {
                format!("NOT LOCKED OUT: the lockout of {} is incomplete", self.employee)
            };
        }
        let not_cut: Vec<&StepLine> =
            self.steps.iter().filter(|s| s.kind.cuts_access() && matches!(s.state, StepState::Failed | StepState::NeedsAttention)).collect();
        let by_hand: usize = self.steps.iter().map(|s| s.left.len()).sum();
        match self.state {
            RunState::Completed => "COMPLETED: every planned step succeeded and was read back".into(),
            RunState::CompletedWithWarnings => {
                let amber = self.steps.iter().filter(|s| s.warning && s.left.is_empty()).count();
                let mut parts = Vec::new();
                if amber > 0 {
                    parts.push(format!("{} did not happen as planned", count_of(amber, "step", "steps")));
                }
                if by_hand > 0 {
                    parts.push(format!("{} left to do by hand", count_of(by_hand, "thing is", "things are")));
                }
                format!("COMPLETED WITH WARNINGS: {}", if parts.is_empty() { "see the timeline".into() } else { parts.join("; ") })
            }
            RunState::Failed if !not_cut.is_empty() => {
                format!("FAILED: {} keeps access that {} was meant to cut", self.employee, not_cut.iter().map(|s| s.title).collect::<Vec<_>>().join(", "))
            }
            RunState::Failed => "FAILED: at least one step failed; see the timeline".into(),
            RunState::NeedsAttention => "NEEDS ATTENTION: a step's result could not be confirmed; a person must check it".into(),
            other => format!("NOT COMPLETE: the run is {}", other.label()),
        }
    }

    /// What a person must do now, most urgent first: the lockout steps that did not take
    /// effect (with what Microsoft said), other cuts that failed, then work left by hand.
    pub fn actions(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Lockout::NotEffective(missed) = &self.lockout {
            out.extend(missed.iter().cloned());
        }
        for s in &self.steps {
            if s.kind.cuts_access() && !s.kind.is_lockout() && matches!(s.state, StepState::Failed | StepState::NeedsAttention) {
                out.push(format!("{}: {}", s.title, s.detail));
            }
        }
        for s in &self.steps {
            out.extend(s.left.iter().map(|l| format!("By hand: {l}")));
        }
        out
    }

    pub fn blocks(&self) -> Vec<Block> {
        let mut out = vec![Block::Title("Offboarding compliance report".into())];
        let c = self.counts;
        let mut summary = vec![self.outcome()];
        summary.extend(self.actions());
        summary.extend([
            format!("{} ({}) in tenant {}", self.employee, self.upn, self.tenant),
            format!("{} succeeded · {} skipped · {} failed · {} need attention · {} not run", c.succeeded, c.skipped, c.failed, c.attention, c.pending),
        ]);
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
        field("Requester's reason", self.reason.clone().unwrap_or_else(|| "none given".into()));
        field("Ticket", self.ticket.clone().unwrap_or_else(|| "none given".into()));
        field("Preset", self.preset.clone().unwrap_or_else(|| "none: every option chosen by hand".into()));
        if self.preset.is_some() {
            field("Preset changes", list_or(&self.deviations, "none"));
        }
        if !self.high_risk.is_empty() {
            field("Two approvers", self.high_risk.join("; "));
        }
        if self.approvals.is_empty() {
            field("Approved by", "no approval recorded".into());
        }
        for (who, at) in &self.approvals {
            field("Approved by", format!("{who} at {}", time(*at)));
        }
        field("Plan hash", self.plan_hash.clone());
        for n in &self.notes {
            out.push(Block::Para(format!("Told to the approver: {n}")));
        }

        out.push(Block::Heading("Before and after".into()));
        for ch in &self.changes {
            out.push(Block::Step { head: ch.aspect.to_string(), lines: vec![format!("before: {}", ch.before), format!("after:  {}", ch.after)] });
        }

        out.push(Block::Heading("Access left in place".into()));
        if self.left_in_place.is_empty() {
            out.push(Block::Para("None found: every access the discovery found was removed or handed over.".into()));
        }
        for l in &self.left_in_place {
            out.push(Block::Para(format!("- {l}")));
        }

        if !self.said.is_empty() {
            out.push(Block::Heading("Said and set on the leaver's behalf".into()));
            for (k, v) in &self.said {
                out.push(Block::Step { head: k.clone(), lines: vec![v.clone()] });
            }
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
            for l in &s.left {
                lines.push(format!("left to do by hand: {l}"));
            }
            if !s.request_ids.is_empty() {
                lines.push(format!("Microsoft request ids: {}", s.request_ids.join(", ")));
            }
            out.push(Block::Step { head: format!("{} {}", state_mark(s.state), s.title), lines });
        }

        out.push(Block::Heading("Licences reclaimed".into()));
        out.push(Block::Para(if self.licences_reclaimed.is_empty() { "none".into() } else { self.licences_reclaimed.join(", ") }));

        out.push(Block::Heading("When the lockout is effective".into()));
        out.push(Block::Para(match &self.lockout {
            Lockout::Effective(t) => format!(
                "Effective by {}. Every planned lockout step reached its goal; refresh tokens stop working within minutes, but access tokens already issued to apps that do not support continuous access evaluation stay valid for up to 90 minutes.",
                time(*t)
            ),
            Lockout::NotEffective(missed) => format!("Not effective: {} can still use what these steps were meant to cut: {}.", self.employee, missed.join("; ")),
            Lockout::NotPlanned => "No lockout was planned in this run: it did not block sign-in, revoke sessions or reset the password.".into(),
            Lockout::Pending => "Not yet: the lockout steps have not all finished.".into(),
        }));

        out.push(Block::Heading("Audit chain".into()));
        out.push(Block::Para(match &self.audit_head {
            Some(h) => format!("Head of the audit hash chain when this report was made: entry {} hash {}", h.seq, h.hash),
            None => "The audit log was empty.".into(),
        }));
        if self.from_audit {
            out.push(Block::Para(
                "The requester, the approvals and every step's outcome above are read from this chain, which was verified when the report was made.".into(),
            ));
        }
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

mod aspects;
#[cfg(test)]
mod tests;

use aspects::{changes, left_in_place, said};
