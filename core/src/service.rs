//! The application service every front end calls (chat adapters, CLI, HTTP API): request,
//! decide, cancel, start now, resolve, look. Each call checks the actor's rights here.

use std::sync::Arc;

use chrono::Duration;
use serde_json::json;

use crate::audit::NewAudit;
use crate::clock::Clock;
use crate::delegations::{self, Trustee};
use crate::domain::{Actor, ParseError, RunId, StepKey, TenantId};
use crate::outbox::EventKind;
use crate::plan::{self, PlanHash, PlanRules, StepKind};
use crate::policy::{self, Access, AdminTargets, Approval, PendingRun, Refusal, TenantPolicy, Verdict};
use crate::request::{Presets, Request, RequestError};
use crate::run::{RunState, StepOutcome};
use crate::snapshot::{Discovery, DiscoveryError, UserRef};
use crate::store::{ApprovalEffect, NewRun, RunRecord, StepRecord, Store, StoreError};

/// A configured customer tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// Verified domains: a UPN in one of these resolves to this tenant.
    pub domains: Vec<String>,
    pub policy: TenantPolicy,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Tell the actor why; it was audited.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Show each message on its wizard field.
    #[error("the request is not valid: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<RequestError>),
    #[error(transparent)]
    BadInput(#[from] ParseError),
    #[error("unknown tenant \"{0}\"; configured tenants: {1}")]
    UnknownTenant(String, String),
    /// The user's domain is not one of any configured tenant's domains.
    #[error("no configured tenant has the domain {0}; the tenants and their domains: {1}")]
    NoTenantForDomain(String, String),
    /// An object id names no domain: the tenant must be chosen.
    #[error("choose the tenant: an object id does not say which tenant the user is in (configured: {0})")]
    TenantNeeded(String),
    #[error("unknown preset \"{0}\"; this tenant's presets: {1}")]
    UnknownPreset(String, String),
    /// The person already has a run that has not ended: show that run instead.
    #[error("{upn} already has an open offboarding, run {run} ({state}); it was not requested again")]
    AlreadyOpen { run: RunId, state: RunState, upn: String },
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("no run {0} that you may see")]
    NotFound(RunId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an approval click did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    Counted { have: usize, need: usize },
    Released(RunState),
}

/// Finds a person's identity on a chat platform by their e-mail address (Slack's
/// `users.lookupByEmail`), so the line manager can be sent the approval message directly.
#[async_trait::async_trait]
pub trait ChatIdentities: Send + Sync {
    /// `slack`, `teams`, `discord`: the identity's prefix.
    fn platform(&self) -> &str;
    /// The user id, if the platform has someone with this address.
    async fn by_email(&self, email: &str) -> Result<Option<String>, crate::chat::ChatError>;
}

pub struct Offboarding {
    store: Store,
    discovery: Arc<dyn Discovery>,
    identities: Vec<Arc<dyn ChatIdentities>>,
    clock: Arc<dyn Clock>,
    access: Access,
    tenants: Vec<Tenant>,
    presets: Presets,
    /// When each person last searched the directory, for the rate limit.
    searches: std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<chrono::DateTime<chrono::Utc>>>>,
}

/// Directory searches one person may make per minute: a typeahead sends one per pause in
/// typing, and each costs the customer tenant's Graph budget.
pub const SEARCHES_PER_MINUTE: usize = 30;

impl Offboarding {
    pub fn new(store: Store, discovery: Arc<dyn Discovery>, clock: Arc<dyn Clock>, access: Access, tenants: Vec<Tenant>, presets: Presets) -> Self {
        Self { store, discovery, identities: Vec::new(), clock, access, tenants, presets, searches: Default::default() }
    }

    /// Where the line manager's chat identities are looked up (besides linked identities).
    pub fn with_identities(mut self, finders: Vec<Arc<dyn ChatIdentities>>) -> Self {
        self.identities = finders;
        self
    }

    /// The line manager who is to approve, with their chat identities, or why IT decides
    /// alone (a note for the preview).
    async fn line_manager(
        &self,
        tenant: &Tenant,
        actor: &Actor,
        snapshot: &crate::snapshot::UserSnapshot,
        leaving: bool,
    ) -> (Option<policy::LineManager>, Option<String>) {
        let mode = tenant.policy.line_manager;
        if mode == policy::ManagerApproves::No {
            return (None, None);
        }
        let Some(m) = snapshot.manager.as_ref() else {
            return (None, Some("The line manager would approve, but the directory names none: IT decides.".into()));
        };
        if leaving || !m.enabled {
            return (None, Some(format!("The line manager would approve, but {} is leaving or disabled: IT decides.", m.display_name)));
        }
        let mut identities = self.access.identities_for_upn(m.upn.as_str());
        let mut found = Vec::new();
        if !identities.is_empty() {
            found.push("linked in the configuration".to_string());
        }
        for finder in &self.identities {
            match finder.by_email(m.upn.as_str()).await {
                Ok(Some(id)) => {
                    let key = format!("{}:{id}", finder.platform());
                    if !identities.contains(&key) {
                        identities.push(key);
                        found.push(format!("found in {} by e-mail", platform_name(finder.platform())));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(platform = finder.platform(), error = %e, "could not look the line manager up"),
            }
        }
        let requester = self.access.person_of(&actor.key());
        if identities.iter().any(|i| self.access.person_of(i) == requester) {
            return (None, Some(format!("{} asked for this and is the line manager: their approval does not count; IT decides.", m.display_name)));
        }
        if identities.is_empty() {
            return (None, Some(format!("The line manager, {}, was not found on any chat platform: IT decides.", m.display_name)));
        }
        (Some(policy::LineManager { upn: m.upn.to_string(), name: m.display_name.clone(), identities, mode, found: found.join(", ") }), None)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    pub fn presets(&self) -> &Presets {
        &self.presets
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Every preset any tenant offers, for the wizard's first page (a tenant's own are
    /// checked once the tenant is known).
    pub fn preset_names(&self) -> Vec<crate::domain::PresetName> {
        let mut all: Vec<_> = self.tenants.iter().flat_map(|t| self.presets.names(&t.id)).collect();
        all.sort();
        all.dedup();
        // The default first, so platforms that preselect the first choice pick it.
        if let Some(i) = all.iter().position(|p| p.as_str() == crate::chat::DEFAULT_PRESET) {
            let d = all.remove(i);
            all.insert(0, d);
        }
        all
    }

    /// The wizard's pages for this installation's tenants and presets.
    pub fn wizard(&self) -> Vec<crate::chat::Form> {
        let tenants: Vec<TenantId> = self.tenants.iter().map(|t| t.id.clone()).collect();
        crate::chat::wizard(&tenants, &self.preset_names())
    }

    /// The tenant named, or the one whose domain the UPN is in.
    pub fn resolve_tenant(&self, named: Option<&str>, user: &str) -> Result<&Tenant, ServiceError> {
        let known = || self.tenants.iter().map(|t| t.id.to_string()).collect::<Vec<_>>().join(", ");
        if let Some(named) = named.filter(|n| !n.trim().is_empty()) {
            let id = TenantId::parse(named)?;
            return self
                .tenants
                .iter()
                .find(|t| t.id == id || t.domains.iter().any(|d| d.eq_ignore_ascii_case(id.as_str())))
                .ok_or_else(|| ServiceError::UnknownTenant(named.into(), known()));
        }
        if let Some((_, domain)) = user.rsplit_once('@')
            && let Some(t) = self.tenants.iter().find(|t| t.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
        {
            return Ok(t);
        }
        // A domain no tenant has is never guessed: with one tenant, only an object id
        // (which names no domain) means that tenant.
        match (self.tenants.as_slice(), user.rsplit_once('@')) {
            (_, Some((_, domain))) => Err(ServiceError::NoTenantForDomain(domain.into(), self.domains())),
            ([only], None) => Ok(only),
            (_, None) => Err(ServiceError::TenantNeeded(known())),
        }
    }

    /// Every tenant with its domains, for messages: `contoso.com (contoso.com, contoso.onmicrosoft.com)`.
    fn domains(&self) -> String {
        self.tenants.iter().map(|t| format!("{} ({})", t.id, t.domains.join(", "))).collect::<Vec<_>>().join("; ")
    }

    fn tenant(&self, id: &TenantId) -> Result<&Tenant, ServiceError> {
        self.tenants.iter().find(|t| &t.id == id).ok_or_else(|| ServiceError::UnknownTenant(id.to_string(), String::new()))
    }

    async fn refuse(&self, actor: &Actor, action: &str, tenant: &TenantId, run: Option<&RunId>, refusal: Refusal) -> ServiceError {
        let mut a = NewAudit::new(actor.key(), action).tenant(tenant).detail(json!({ "reason": refusal.to_string(), "actor_name": actor.name }));
        if let Some(run) = run {
            a = a.run(run);
        }
        let event = run.map(|r| (r, EventKind::ApprovalRefused { actor: actor.key(), reason: refusal.to_string() }));
        if let Err(e) = self.store.audit_refusal(a, event, self.clock.now()).await {
            tracing::error!(error = %e, "Could not audit a refusal");
        }
        ServiceError::Refused(refusal)
    }

    /// Whether the actor may request in some tenant: decided from the configuration alone.
    pub fn may_request_somewhere(&self, actor: &Actor) -> bool {
        self.tenants.iter().any(|t| policy::check_may_request(&self.access, actor, &t.id).is_ok())
    }

    /// Refuses (and audits) someone who may request in no tenant, before any wizard opens.
    pub async fn check_may_request_somewhere(&self, actor: &Actor) -> Result<(), ServiceError> {
        if self.may_request_somewhere(actor) {
            return Ok(());
        }
        let tenant = self.tenants.first().map(|t| t.id.clone()).unwrap_or_else(|| TenantId::parse("unknown.invalid").expect("valid"));
        Err(self.refuse(actor, "request.refused", &tenant, None, Refusal::NoRole(tenant.clone())).await)
    }

    /// The wizard's people search: only in the tenants the actor may request in, and at
    /// most [`SEARCHES_PER_MINUTE`] a minute per person.
    pub async fn search_people(
        &self,
        actor: &Actor,
        directory: &dyn crate::snapshot::Directory,
        text: &str,
    ) -> Result<Vec<crate::snapshot::Person>, ServiceError> {
        let tenants: Vec<&Tenant> = self.tenants.iter().filter(|t| policy::check_may_request(&self.access, actor, &t.id).is_ok()).collect();
        if tenants.is_empty() {
            self.check_may_request_somewhere(actor).await?;
        }
        let now = self.clock.now();
        {
            let mut all = self.searches.lock().expect("searches lock");
            let mine = all.entry(actor.key()).or_default();
            while mine.front().is_some_and(|t| now - *t > Duration::minutes(1)) {
                mine.pop_front();
            }
            if mine.len() >= SEARCHES_PER_MINUTE {
                return Err(ServiceError::Refused(Refusal::TooManySearches));
            }
            mine.push_back(now);
        }
        let searches = tenants.iter().map(|t| directory.search(&t.id, text, 20));
        Ok(futures_util::future::join_all(searches).await.into_iter().filter_map(Result::ok).flatten().collect())
    }

    /// A preset's options for a tenant, or the names it could have been.
    pub fn preset_options(&self, tenant: &TenantId, name: &crate::domain::PresetName) -> Result<crate::request::Options, ServiceError> {
        self.presets.get(tenant, name).ok_or_else(|| {
            let known: Vec<String> = self.presets.names(tenant).iter().map(|n| n.to_string()).collect();
            ServiceError::UnknownPreset(name.to_string(), known.join(", "))
        })
    }

    /// Discovers the user, builds the plan and records a run awaiting approval. The options
    /// are exactly the request's: a preset names where they started, and the plan records
    /// every way they depart from it.
    pub async fn request(&self, actor: &Actor, req: Request) -> Result<RunRecord, ServiceError> {
        self.request_from(actor, req, None).await
    }

    /// [`Self::request`], remembering the conversation it was asked from.
    pub async fn request_from(&self, actor: &Actor, req: Request, conversation: Option<String>) -> Result<RunRecord, ServiceError> {
        let now = self.clock.now();
        let tenant = self.tenant(&req.tenant)?.clone();
        if let Err(r) = policy::check_may_request(&self.access, actor, &tenant.id) {
            return Err(self.refuse(actor, "request.refused", &tenant.id, None, r).await);
        }
        let deviations = match &req.preset {
            Some(name) => Some(req.options.deviations_from(&self.preset_options(&tenant.id, name)?)),
            None => None,
        };
        let user = UserRef::parse(&req.user)?;
        let valid = req.validate(now).map_err(ServiceError::Invalid)?;
        let mut snapshot = self.discovery.discover(&tenant.id, &user).await?;
        // Rights on other mailboxes come from the delegation index, not from asking
        // Exchange about every mailbox of the tenant.
        let coverage = match self.discovery.finds_delegations() {
            true => None,
            false => {
                let trustees = [Trustee::Address(snapshot.upn.to_string()).key(), Trustee::Name(snapshot.display_name.clone()).key()];
                let grants = self.store.index_grants_of(&tenant.id, &trustees).await?;
                delegations::merge(&mut snapshot, &grants);
                Some(self.store.index_coverage(&tenant.id).await?)
            }
        };
        if let Some(open) = self.store.open_run_for(&tenant.id, snapshot.id.as_str()).await? {
            return Err(self.already_open(open).await);
        }
        if let Err(r) = policy::check_request(&self.access, &tenant.policy, actor, &tenant.id, &snapshot) {
            return Err(self.refuse(actor, "request.refused", &tenant.id, None, r).await);
        }
        if valid.request.emergency
            && let Err(r) = policy::check_emergency(&self.access, actor, &tenant.id)
        {
            return Err(self.refuse(actor, "request.refused", &tenant.id, None, r).await);
        }
        let manager_leaving = match &snapshot.manager {
            Some(m) => self.store.open_run_for(&tenant.id, m.id.as_str()).await?,
            None => None,
        };
        let (line_manager, manager_note) = self.line_manager(&tenant, actor, &snapshot, manager_leaving.is_some()).await;
        let rules = PlanRules { admins_high_risk: tenant.policy.admins == AdminTargets::HighRisk, manager_leaving };
        let mut plan = plan::build(&valid, &snapshot, rules);
        plan.deviations = deviations.unwrap_or_default();
        let o = &valid.request.options;
        if let Some(coverage) = coverage.filter(|_| snapshot.mailbox.is_some() && (o.remove_mailbox_permissions || o.remove_calendar_permissions)) {
            let said = coverage.describe(now);
            if !coverage.complete() {
                // What the index has not seen is not "nothing": the steps remove what is
                // known, and the rest is left to check by hand, so the run is not green.
                let unknown = match coverage.listed {
                    None => "check this user's rights on the tenant's other mailboxes: the delegation index had not listed them yet".to_string(),
                    Some(_) => {
                        format!("check this user's rights on the {} mailboxes the delegation index had not scanned yet", coverage.mailboxes - coverage.scanned)
                    }
                };
                for s in plan.steps.iter_mut().filter(|s| matches!(s.kind, StepKind::RemoveMailboxPermissions | StepKind::RemoveCalendarPermissions)) {
                    s.skip = None;
                    s.manual.push(unknown.clone());
                }
            }
            plan.notes.push(said);
        }
        plan.high_risk_reasons.extend(self.said_outside(&valid.request));
        plan.notes.extend(manager_note);
        if valid.request.emergency && plan.needs_two_approvers() {
            plan.notes.push(
                "Emergency: sign-in is blocked and sessions revoked now; the password reset, the MFA removal and everything else wait for two approvals."
                    .into(),
            );
        }
        let plan_hash = plan.hash(tenant.id.as_str(), snapshot.id.as_str());
        let id = RunId::generate();
        let run = NewRun {
            id: id.clone(),
            tenant: tenant.id.clone(),
            target_upn: snapshot.upn.to_string(),
            target_id: snapshot.id.to_string(),
            target_name: snapshot.display_name.clone(),
            requester: actor.key(),
            requester_name: actor.name.clone(),
            request: serde_json::to_string(&valid.request).expect("json"),
            snapshot: serde_json::to_string(&snapshot).expect("json"),
            approvals_needed: if plan.needs_two_approvers() { 2 } else { 1 },
            plan,
            plan_hash: plan_hash.clone(),
            expires_at: now + tenant.policy.approval_ttl,
            escalate_at: tenant.policy.escalate_after.map(|d| now + d),
            start_at: valid.start_at,
            emergency: valid.request.emergency,
            origin: Some(crate::store::Origin { platform: actor.platform.clone(), conversation }),
            line_manager,
        };
        let audit = NewAudit::new(actor.key(), "run.requested").tenant(&tenant.id).run(&id).detail(json!({
            "requester": actor.name, "plan_hash": plan_hash, "steps": run.plan.steps.len(),
            "emergency": run.emergency, "start_at": valid.start_at.map(|t| t.to_rfc3339()),
            "preset": run.plan.preset, "deviations": run.plan.deviations,
            "reason": valid.request.reason, "ticket": valid.request.ticket,
        }));
        match self.store.create_run(&run, now, audit).await {
            Err(StoreError::AlreadyOpen(open)) => return Err(self.already_open(open).await),
            other => other?,
        }
        Ok(self.store.run(&id).await?)
    }

    /// What this request says outside the organisation on the leaver's behalf that nobody
    /// vetted beforehand: each makes the plan need two approvers.
    fn said_outside(&self, req: &Request) -> Vec<String> {
        let o = &req.options;
        let mut out = Vec::new();
        if let Some(f) = &o.forward_to
            && let crate::request::ForwardTarget::External(to) = &f.target
        {
            out.push(format!("every new mail is forwarded outside the organisation, to {to}"));
        }
        if let Some(oof) = &o.out_of_office {
            let vetted = match &req.preset {
                Some(p) => self.presets.get(&req.tenant, p).and_then(|o| o.out_of_office).map(|t| t.external),
                None => None,
            }
            .unwrap_or_else(|| self.presets.default_out_of_office().external);
            if !oof.external.trim().is_empty() && oof.external.trim() != vetted.trim() {
                out.push("the external out-of-office reply was written for this request, and every outside sender reads it".into());
            }
        }
        out
    }

    async fn already_open(&self, open: RunId) -> ServiceError {
        match self.store.run(&open).await {
            Ok(r) => ServiceError::AlreadyOpen { run: r.id, state: r.state, upn: r.target_upn },
            Err(e) => e.into(),
        }
    }

    async fn load(&self, id: &RunId) -> Result<RunRecord, ServiceError> {
        match self.store.run(id).await {
            Err(StoreError::NotFound(_)) => Err(ServiceError::NotFound(id.clone())),
            other => Ok(other?),
        }
    }

    /// An Approve click carrying the plan hash its preview showed.
    pub async fn approve(&self, actor: &Actor, id: &RunId, seen: &PlanHash) -> Result<Decided, ServiceError> {
        for _ in 0..5 {
            let run = self.load(id).await?;
            let tenant = self.tenant(&run.tenant)?;
            let approvals = self.store.approvals(id).await?;
            let now = self.clock.now();
            let pending = pending(&run, &approvals);
            let verdict = match policy::approve(&self.access, &tenant.policy, actor, &pending, seen, now) {
                Ok(v) => v,
                Err(r) => return Err(self.refuse(actor, "approval.refused", &run.tenant, Some(id), r).await),
            };
            let approval = Approval { approver: actor.key(), approver_name: actor.name.clone(), plan_hash: seen.clone(), at: now };
            let effect = if verdict == Verdict::Released { ApprovalEffect::Release } else { ApprovalEffect::Counted };
            let audit = NewAudit::new(actor.key(), "run.approved").tenant(&run.tenant).run(id).detail(json!({ "approver": actor.name, "plan_hash": seen }));
            match self.store.record_approval(id, run.version, &approval, effect, audit).await {
                Ok(state) => {
                    return Ok(match verdict {
                        Verdict::Released => Decided::Released(state),
                        Verdict::Recorded { have, need } => Decided::Counted { have, need },
                    });
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }

    pub async fn reject(&self, actor: &Actor, id: &RunId, reason: &str) -> Result<(), ServiceError> {
        let run = self.load(id).await?;
        let tenant = self.tenant(&run.tenant)?;
        let approvals = self.store.approvals(id).await?;
        if let Err(r) = policy::reject(&self.access, &tenant.policy, actor, &pending(&run, &approvals), self.clock.now()) {
            return Err(self.refuse(actor, "rejection.refused", &run.tenant, Some(id), r).await);
        }
        let audit = NewAudit::new(actor.key(), "run.rejected").tenant(&run.tenant).run(id).detail(json!({ "by": actor.name, "reason": reason }));
        self.store.close_run(id, run.version, RunState::Rejected, Some(reason), self.clock.now(), audit).await?;
        Ok(())
    }

    pub async fn cancel(&self, actor: &Actor, id: &RunId) -> Result<(), ServiceError> {
        let run = self.load(id).await?;
        if let Err(r) = policy::check_operate(&self.access, actor, &run.tenant, &run.requester) {
            return Err(self.refuse(actor, "cancel.refused", &run.tenant, Some(id), r).await);
        }
        if run.state.is_terminal() {
            return Err(Refusal::NotAwaiting(run.state).into());
        }
        let audit = NewAudit::new(actor.key(), "run.cancelled").tenant(&run.tenant).run(id).detail(json!({ "by": actor.name }));
        self.store.close_run(id, run.version, RunState::Cancelled, Some(&format!("cancelled by {}", actor.name)), self.clock.now(), audit).await?;
        Ok(())
    }

    /// Starts an approved, scheduled run now.
    pub async fn run_now(&self, actor: &Actor, id: &RunId) -> Result<(), ServiceError> {
        let run = self.load(id).await?;
        if let Err(r) = policy::check_operate(&self.access, actor, &run.tenant, &run.requester) {
            return Err(self.refuse(actor, "run_now.refused", &run.tenant, Some(id), r).await);
        }
        let audit = NewAudit::new(actor.key(), "run.started").tenant(&run.tenant).run(id).detail(json!({ "by": actor.name, "early": true }));
        if !self.store.start_scheduled(id, self.clock.now(), audit).await? {
            return Err(Refusal::NotAwaiting(run.state).into());
        }
        Ok(())
    }

    /// A human's verdict on a step that needs attention: `done` if they confirmed the
    /// effect by hand, otherwise it counts as failed.
    pub async fn resolve_step(&self, actor: &Actor, id: &RunId, key: &StepKey, done: bool, note: &str) -> Result<(), ServiceError> {
        let run = self.load(id).await?;
        if let Err(r) = policy::check_operate(&self.access, actor, &run.tenant, "") {
            return Err(self.refuse(actor, "resolve.refused", &run.tenant, Some(id), r).await);
        }
        let outcome = if done {
            StepOutcome::done(format!("confirmed by {}: {note}", actor.name), vec![])
        } else {
            StepOutcome::Failed { error: format!("marked failed by {}: {note}", actor.name), request_id: None }
        };
        let audit = NewAudit::new(actor.key(), "step.resolved")
            .tenant(&run.tenant)
            .run(id)
            .detail(json!({ "step": key, "done": done, "note": note, "outcome": outcome }));
        if !self.store.resolve_step(id, key, &outcome, self.clock.now(), audit).await? {
            return Err(ServiceError::BadInput(ParseError { what: "step", input: key.to_string(), why: "it does not need attention".into() }));
        }
        Ok(())
    }

    /// One run for someone who may see it. Everyone else gets the same answer whether or
    /// not the run exists, so nothing is learnt about other customers; the refusal is audited.
    pub async fn status(&self, actor: &Actor, id: &RunId) -> Result<(RunRecord, Vec<StepRecord>, Vec<Approval>), ServiceError> {
        let run = match self.store.run(id).await {
            Ok(run) if policy::check_view(&self.access, actor, &run.tenant).is_ok() => run,
            Ok(run) => {
                let a = NewAudit::new(actor.key(), "status.refused").tenant(&run.tenant).run(id).detail(json!({ "actor_name": actor.name }));
                if let Err(e) = self.store.audit_refusal(a, None, self.clock.now()).await {
                    tracing::error!(error = %e, "Could not audit a refusal");
                }
                return Err(ServiceError::NotFound(id.clone()));
            }
            Err(StoreError::NotFound(_)) => return Err(ServiceError::NotFound(id.clone())),
            Err(e) => return Err(e.into()),
        };
        let steps = self.store.steps(id).await?;
        let approvals = self.store.approvals(id).await?;
        Ok((run, steps, approvals))
    }

    /// Recent runs in the tenants the actor may see.
    pub async fn list(&self, actor: &Actor, limit: i64) -> Result<Vec<RunRecord>, ServiceError> {
        let runs = self.store.list_runs(None, limit).await?;
        Ok(runs.into_iter().filter(|r| policy::check_view(&self.access, actor, &r.tenant).is_ok()).collect())
    }

    /// The time left to decide, for previews.
    pub fn approval_ttl(&self, tenant: &TenantId) -> Duration {
        self.tenant(tenant).map(|t| t.policy.approval_ttl).unwrap_or(Duration::hours(24))
    }
}

/// A platform's name as people say it.
fn platform_name(p: &str) -> &str {
    match p {
        "slack" => "Slack",
        "teams" => "Teams",
        "discord" => "Discord",
        other => other,
    }
}

fn pending<'a>(run: &'a RunRecord, approvals: &'a [Approval]) -> PendingRun<'a> {
    PendingRun {
        line_manager: run.line_manager.as_ref(),
        tenant: &run.tenant,
        state: run.state,
        requester: &run.requester,
        plan_hash: &run.plan_hash,
        expires_at: run.expires_at,
        approvals_needed: run.approvals_needed,
        approvals,
        target_id: &run.target_id,
        target_upn: &run.target_upn,
    }
}
