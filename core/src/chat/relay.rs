//! Drives a chat surface from the outbox: the approval message when a run is requested and
//! its update on every decision; in the run's thread, one status message edited as steps
//! progress, a reply for each failure or warning, and at the end the signed report and the
//! closing text.
//!
//! Delivery is at least once and every post is idempotent: what was posted is remembered
//! per run (`chat_messages`) and never posted twice, and edits are rendered from the store,
//! so a batch of events costs one edit per message. A surface that asks to wait stops the
//! batch before its cursor moves; the next drain repeats it. Several processes may run a
//! relay for the same surface: a lease in the store lets one of them drive it at a time.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::surface::{ChatError, ChatSurface, MessageRef};
use super::views::{FileOut, PlanPreview, RunView};
use crate::clock::Clock;
use crate::domain::RunId;
use crate::outbox::{Event, EventKind};
use crate::plan::StepKind;
use crate::run::{RunState, StepOutcome};
use crate::store::{Store, StoreError};
use crate::templates::{EventInfo, Notice, Templates};

/// Where the finished run's report comes from (the signed PDF).
#[async_trait]
pub trait Reports: Send + Sync {
    async fn report(&self, run: &RunId) -> Result<FileOut, String>;
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Wait this long, then drain again.
    #[error("the chat platform asked to wait {0:?}")]
    Wait(std::time::Duration),
}

/// Where each tenant's approval messages go on each platform (spec: routes per tenant and
/// platform; an MSP sends each customer's approvals to its own channel).
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: std::collections::BTreeMap<(String, String), String>,
    defaults: std::collections::BTreeMap<String, String>,
}

impl Routes {
    pub fn add(&mut self, tenant: crate::domain::TenantId, platform: &str, to: &str) {
        self.routes.insert((tenant.to_string(), platform.to_string()), to.to_string());
    }

    /// Every tenant's approvals in one place on one platform.
    pub fn single(platform: &str, to: &str) -> Self {
        let mut r = Routes::default();
        r.default_for(platform, to);
        r
    }

    /// The platform's own approvals channel, for tenants without routes.
    pub fn default_for(&mut self, platform: &str, to: &str) {
        self.defaults.insert(platform.to_string(), to.to_string());
    }

    /// Where a run's approval message goes on `platform`: its tenant's route there. A
    /// tenant routed only elsewhere gets nothing here. A tenant with no routes goes to the
    /// default channel of the platform it was asked from, or of every platform when it was
    /// asked from none (the CLI).
    pub fn destination(&self, platform: &str, run: &crate::store::RunRecord) -> Option<String> {
        let tenant = run.tenant.to_string();
        if let Some(to) = self.routes.get(&(tenant.clone(), platform.to_string())) {
            return Some(to.clone());
        }
        if self.routes.keys().any(|(t, _)| *t == tenant) {
            return None;
        }
        let asked_from = run.origin.as_ref().map(|o| o.platform.as_str()).filter(|p| self.defaults.contains_key(*p));
        match asked_from {
            Some(p) if p != platform => None,
            _ => self.defaults.get(platform).cloned(),
        }
    }
}

pub struct Relay {
    store: Store,
    surface: Arc<dyn ChatSurface>,
    routes: Routes,
    /// Names the cursor and the remembered messages, e.g. `slack:T0123`.
    name: String,
    reports: Option<Arc<dyn Reports>>,
    templates: Arc<Templates>,
    clock: Arc<dyn Clock>,
    /// This relay's name in the consumer lease: one relay per surface drives it at a time.
    owner: String,
}

/// How long a relay may hold the surface in one drain before another process may assume it
/// died; the lease is released when the drain ends.
pub const LEASE: chrono::Duration = chrono::Duration::seconds(30);

const PREVIEW: &str = "preview";
const THREAD: &str = "thread";
const STATUS: &str = "status";
const REPORT: &str = "report";
const CLOSING: &str = "closing";

impl Relay {
    pub fn new(
        store: Store,
        surface: Arc<dyn ChatSurface>,
        name: impl Into<String>,
        routes: Routes,
        reports: Option<Arc<dyn Reports>>,
        templates: Arc<Templates>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Relay { store, surface, routes, name: name.into(), reports, templates, clock, owner: format!("relay-{}", uuid::Uuid::new_v4().simple()) }
    }

    fn consumer(&self) -> String {
        format!("chat:{}", self.name)
    }

    /// Handles everything pending; returns the number of events consumed.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        if !self.store.lease_consumer(&self.consumer(), &self.owner, self.clock.now(), LEASE).await? {
            return Ok(0);
        }
        let result = self.drain_leased().await;
        self.store.release_consumer(&self.consumer(), &self.owner).await?;
        result
    }

    /// Drains every `idle` (sooner after work, later when the platform asks to wait)
    /// until `shutdown`.
    pub async fn run_until(&self, idle: std::time::Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let wait = match self.drain().await {
                Err(RelayError::Wait(d)) => d,
                Err(e) => {
                    tracing::warn!(surface = %self.name, error = %e, "chat relay");
                    std::time::Duration::from_secs(2)
                }
                Ok(_) => idle,
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn drain_leased(&self) -> Result<usize, RelayError> {
        let mut consumed = 0;
        loop {
            let cursor = self.store.cursor(&self.consumer()).await?;
            let events = self.store.events_after(cursor, 200).await?;
            let Some(last) = events.last().map(|e| e.seq) else { return Ok(consumed) };
            let mut previews = BTreeSet::new();
            let mut statuses = BTreeSet::new();
            let mut finished = BTreeSet::new();
            // Replies go after the status message, so a thread reads in order.
            let mut notable = Vec::new();
            for e in &events {
                let Some(run) = e.run_id.as_deref().and_then(|r| RunId::parse(r).ok()) else { continue };
                match &e.kind {
                    EventKind::RunRequested { .. } => {
                        self.post_preview(&run).await?;
                    }
                    // A refused click changes nothing on the message.
                    EventKind::ApprovalRecorded { .. }
                    | EventKind::RunApproved
                    | EventKind::RunRejected { .. }
                    | EventKind::RunExpired
                    | EventKind::RunScheduled { .. }
                    | EventKind::ApprovalEscalated
                    | EventKind::RunCancelled { .. } => {
                        previews.insert(run);
                    }
                    EventKind::RunStarted | EventKind::StepStarted { .. } | EventKind::StepRetrying { .. } | EventKind::StepWaiting { .. } => {
                        statuses.insert(run);
                    }
                    EventKind::StepFinished { key, outcome } => {
                        statuses.insert(run.clone());
                        notable.push((run, e, key, outcome));
                    }
                    EventKind::RunStateChanged { state } => {
                        previews.insert(run.clone());
                        if *state != RunState::Approved && *state != RunState::Scheduled {
                            statuses.insert(run.clone());
                        }
                        if state.is_terminal() || *state == RunState::NeedsAttention {
                            finished.insert(run);
                        }
                    }
                    _ => {}
                }
            }
            for run in &previews {
                self.update_preview(run).await?;
            }
            for run in &statuses {
                self.update_status(run).await?;
            }
            for (run, e, key, outcome) in notable {
                self.reply_if_notable(&run, e, key, outcome).await?;
            }
            for run in &finished {
                self.close(run).await?;
            }
            if !self.store.advance_cursor(&self.consumer(), cursor, last).await? {
                return Ok(consumed);
            }
            consumed += events.len();
        }
    }

    async fn remembered(&self, run: &RunId, kind: &str) -> Result<Option<MessageRef>, RelayError> {
        Ok(self.store.message(run, &self.name, kind).await?.map(MessageRef))
    }

    async fn remember(&self, run: &RunId, kind: &str, m: &MessageRef) -> Result<(), RelayError> {
        Ok(self.store.save_message(run, &self.name, kind, &m.0).await?)
    }

    /// `Ok(None)` when the surface refused for good: logged, and the relay moves on.
    fn outcome<T>(&self, what: &str, run: &RunId, r: Result<T, ChatError>) -> Result<Option<T>, RelayError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(ChatError::RetryAfter(d)) => Err(RelayError::Wait(d)),
            Err(ChatError::Retryable(e)) => {
                tracing::warn!(run = %run, what, error = %e, "chat update failed; will retry");
                Err(RelayError::Wait(std::time::Duration::from_secs(2)))
            }
            Err(e) => {
                tracing::warn!(run = %run, what, error = %e, "chat update refused; skipped");
                Ok(None)
            }
        }
    }

    /// The line manager's ids on this surface's platform, each with its remembered kind.
    fn direct(&self, rec: &crate::store::RunRecord) -> Vec<(String, String)> {
        let prefix = format!("{}:", self.surface.platform());
        rec.line_manager
            .iter()
            .flat_map(|m| m.identities.iter())
            .filter_map(|i| i.strip_prefix(&prefix).map(|id| (id.to_string(), format!("direct:{i}"))))
            .collect()
    }

    async fn post_preview(&self, run: &RunId) -> Result<(), RelayError> {
        let rec = self.store.run(run).await?;
        // Only where the run's tenant routes its approvals on this platform.
        let Some(to) = self.routes.destination(self.surface.platform(), &rec) else { return Ok(()) };
        let preview = PlanPreview::load(&self.store, run).await?;
        if self.remembered(run, PREVIEW).await?.is_none() {
            let r = self.surface.post_preview(&to, &preview).await;
            if let Some(m) = self.outcome("post the approval message", run, r)? {
                self.remember(run, PREVIEW, &m).await?;
            }
        }
        // The line manager, when they approve, gets the message directly too.
        for (user, kind) in self.direct(&rec) {
            if self.remembered(run, &kind).await?.is_none() {
                let r = self.surface.direct_preview(&user, &preview).await;
                if let Some(m) = self.outcome("send the approval message to the line manager", run, r)? {
                    self.remember(run, &kind, &m).await?;
                }
            }
        }
        Ok(())
    }

    async fn update_preview(&self, run: &RunId) -> Result<(), RelayError> {
        let Some(at) = self.remembered(run, PREVIEW).await? else { return Ok(()) };
        let preview = PlanPreview::load(&self.store, run).await?;
        let r = self.surface.update_preview(&at, &preview).await;
        self.outcome("update the approval message", run, r)?;
        let rec = self.store.run(run).await?;
        for (_, kind) in self.direct(&rec) {
            if let Some(at) = self.remembered(run, &kind).await? {
                let r = self.surface.update_preview(&at, &preview).await;
                self.outcome("update the line manager's approval message", run, r)?;
            }
        }
        Ok(())
    }

    /// The run's thread under its approval message, opened once.
    async fn thread(&self, run: &RunId) -> Result<Option<MessageRef>, RelayError> {
        if let Some(t) = self.remembered(run, THREAD).await? {
            return Ok(Some(t));
        }
        let Some(root) = self.remembered(run, PREVIEW).await? else { return Ok(None) };
        let r = self.surface.open_thread(&root).await;
        match self.outcome("open the run's thread", run, r)? {
            Some(t) => {
                self.remember(run, THREAD, &t).await?;
                Ok(Some(t))
            }
            None => Ok(None),
        }
    }

    async fn update_status(&self, run: &RunId) -> Result<(), RelayError> {
        let Some(thread) = self.thread(run).await? else { return Ok(()) };
        let rec = self.store.run(run).await?;
        let steps = self.store.steps(run).await?;
        let view = RunView::from_run(&rec, &steps);
        match self.remembered(run, STATUS).await? {
            Some(at) => {
                let r = self.surface.update_status(&at, &view).await;
                self.outcome("update the status message", run, r)?;
            }
            None => {
                let r = self.surface.post_status(&thread, &view).await;
                if let Some(m) = self.outcome("post the status message", run, r)? {
                    self.remember(run, STATUS, &m).await?;
                }
            }
        }
        Ok(())
    }

    async fn reply_if_notable(&self, run: &RunId, e: &Event, key: &str, outcome: &StepOutcome) -> Result<(), RelayError> {
        let title = crate::domain::StepKey::parse(key).ok().and_then(|k| StepKind::from_key(&k)).map_or(key.to_string(), |k| k.title().to_string());
        let text = match outcome {
            StepOutcome::Failed { error, request_id } => {
                format!("Failed: {title}. {error}{}", request_id.as_ref().map(|r| format!(" (Microsoft request id {r})")).unwrap_or_default())
            }
            StepOutcome::NeedsAttention { reason } => format!("Needs attention: {title}. {reason}"),
            StepOutcome::Skipped { reason, warning: true } => format!("Warning: {title} was skipped. {reason}"),
            _ => return Ok(()),
        };
        // One reply per event, even if the batch is repeated.
        let kind = format!("reply:{}", e.seq);
        if self.remembered(run, &kind).await?.is_some() {
            return Ok(());
        }
        let Some(thread) = self.thread(run).await? else { return Ok(()) };
        let r = self.surface.reply(&thread, &text).await;
        if self.outcome("reply in the thread", run, r)?.is_some() {
            self.remember(run, &kind, &MessageRef(String::new())).await?;
        }
        Ok(())
    }

    async fn close(&self, run: &RunId) -> Result<(), RelayError> {
        let Some(thread) = self.thread(run).await? else { return Ok(()) };
        let rec = self.store.run(run).await?;
        let started = self.store.steps(run).await?.iter().any(|s| s.started_at.is_some());
        if let Some(reports) = &self.reports
            && started
            && self.remembered(run, REPORT).await?.is_none()
        {
            match reports.report(run).await {
                Ok(file) => {
                    let r = self.surface.attach(&thread, &file).await;
                    if self.outcome("attach the report", run, r)?.is_some() {
                        self.remember(run, REPORT, &MessageRef(file.name.clone())).await?;
                    }
                }
                Err(e) => tracing::warn!(run = %run, error = %e, "the report could not be made"),
            }
        }
        if self.remembered(run, CLOSING).await?.is_none() {
            let steps = self.store.steps(run).await?;
            let approvals = self.store.approvals(run).await?;
            let info = EventInfo { name: "run.finished".into(), title: rec.state.label().into(), at: self.clock.now().to_rfc3339(), seq: 0 };
            let text = match self.templates.render_off_runtime("chat/run_finished.txt", Notice::new(info, &rec, &steps, &approvals)).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(run = %run, error = %e, "chat/run_finished.txt failed; using the plain outcome");
                    format!("{}: {}", rec.state.label(), rec.target_upn)
                }
            };
            let r = self.surface.reply(&thread, text.trim()).await;
            if self.outcome("post the closing message", run, r)?.is_some() {
                self.remember(run, CLOSING, &MessageRef(String::new())).await?;
            }
        }
        Ok(())
    }
}
