//! Notifications, consumed from core's durable outbox.
//!
//! Each target (a webhook or an e-mail route) has its own outbox cursor, so a receiver that
//! is down holds back only its own deliveries. An event is retried with backoff until it is
//! delivered, refused (a 4xx other than 408/429, an SMTP 5xx) or out of attempts; then the
//! outcome is written to the audit log (`notification.delivered` / `notification.failed`)
//! and the cursor moves on. A crash between sending and recording repeats one delivery:
//! receivers de-duplicate by the `X-Offboard-Delivery` id (`target/seq`).

pub mod email;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use offboard_core::audit::NewAudit;
use offboard_core::clock::Clock;
use offboard_core::domain::RunId;
use offboard_core::outbox::{Event, EventKind};
use offboard_core::run::RunState;
use offboard_core::store::{Store, StoreError};
use offboard_core::templates::{EventInfo, Notice, TemplateError, Templates};
use offboard_report::Evidence;

pub use email::{Smtp, SmtpTls};
pub use webhook::{Format, Webhook};

/// The events a target may subscribe to.
pub const EVENTS: &[&str] =
    &["run.requested", "run.emergency", "run.approved", "run.rejected", "run.escalated", "run.finished", "run.cancelled", "run.expired", "audit.checkpoint"];

/// Events every target receives, whatever it subscribed to: a lockout run before anyone
/// approved it is for everyone watching to know.
pub const ALWAYS: &[&str] = &["run.emergency"];

/// The notification an outbox event becomes, if any, with its title.
pub fn classify(kind: &EventKind) -> Option<(&'static str, String)> {
    Some(match kind {
        EventKind::RunRequested { emergency: true } => ("run.emergency", "Emergency lockout started before approval".into()),
        EventKind::RunRequested { .. } => ("run.requested", "Offboarding requested".into()),
        EventKind::RunApproved => ("run.approved", "Offboarding approved".into()),
        EventKind::RunRejected { .. } => ("run.rejected", "Offboarding rejected".into()),
        EventKind::ApprovalEscalated => ("run.escalated", "Offboarding approval escalated".into()),
        EventKind::RunStateChanged { state } => match state {
            RunState::Completed => ("run.finished", "Offboarding completed".into()),
            RunState::CompletedWithWarnings => ("run.finished", "Offboarding completed with warnings".into()),
            RunState::Failed => ("run.finished", "Offboarding failed".into()),
            RunState::NeedsAttention => ("run.finished", "Offboarding needs attention".into()),
            _ => return None,
        },
        EventKind::RunCancelled { .. } => ("run.cancelled", "Offboarding cancelled".into()),
        EventKind::RunExpired => ("run.expired", "Offboarding request expired".into()),
        EventKind::AuditCheckpoint { .. } => ("audit.checkpoint", "Audit checkpoint".into()),
        _ => return None,
    })
}

/// Where a notification goes.
#[derive(Debug, Clone)]
pub enum Channel {
    Webhook(Webhook),
    Email(Smtp),
}

#[derive(Debug, Clone)]
pub struct Target {
    /// Unique; names the cursor and the audit entries.
    pub name: String,
    /// Subscribed event names (see [`EVENTS`]); empty means every event.
    pub events: Vec<String>,
    pub channel: Channel,
    /// Values the target's templates may use as `target.*` (a Jira project key, …).
    pub params: BTreeMap<String, String>,
}

impl Target {
    fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || ALWAYS.contains(&event) || self.events.iter().any(|e| e == event)
    }
}

/// How often and how long a delivery is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub first: Duration,
    pub max: Duration,
    pub attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { first: Duration::from_secs(2), max: Duration::from_secs(300), attempts: 10 }
    }
}

impl Retry {
    fn delay(&self, attempt: u32) -> Duration {
        self.first.saturating_mul(1 << attempt.min(16)).min(self.max)
    }
}

/// One try's result.
#[derive(Debug)]
pub enum Attempt {
    Delivered {
        status: String,
    },
    /// Worth another try, after `after` if the receiver said so.
    Transient {
        error: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help: recorded as failed at once.
    Refused {
        error: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Notifier {
    store: Store,
    targets: Vec<Target>,
    templates: Arc<Templates>,
    evidence: Option<Arc<Evidence>>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    retry: Retry,
    /// This notifier's name in the consumer leases.
    owner: String,
}

impl Notifier {
    /// Loads the templates (shipped, the webhook formats, then `template_dir`): a broken one
    /// stops here with its file and line.
    pub fn new(
        store: Store,
        targets: Vec<Target>,
        template_dir: Option<&std::path::Path>,
        evidence: Option<Arc<Evidence>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TemplateError> {
        let templates = Arc::new(Templates::load(template_dir, webhook::TEMPLATES)?);
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(15)).redirect(reqwest::redirect::Policy::none()).build().expect("static client settings");
        let owner = format!("notifier-{}", uuid::Uuid::new_v4().simple());
        Ok(Notifier { store, targets, templates, evidence, http, clock, retry: Retry::default(), owner })
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Delivers everything pending for every target; returns how many deliveries ended
    /// (delivered or failed).
    pub async fn drain(&self) -> Result<usize, NotifyError> {
        let mut done = 0;
        for t in &self.targets {
            done += self.drain_target(t).await?;
        }
        Ok(done)
    }

    /// Drains, then waits `poll` for more, until `shutdown` resolves; a delivery in
    /// progress finishes (or reaches its next retry wait) first.
    pub async fn run_until(&self, poll: Duration, shutdown: impl std::future::Future<Output = ()>) -> Result<(), NotifyError> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = self.drain() => { r?; }
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn drain_target(&self, t: &Target) -> Result<usize, NotifyError> {
        let consumer = format!("notify:{}", t.name);
        // One process delivers a target's notifications at a time.
        if !self.store.lease_consumer(&consumer, &self.owner, self.clock.now(), chrono::Duration::minutes(10)).await? {
            return Ok(0);
        }
        let result = self.drain_leased(t, &consumer).await;
        self.store.release_consumer(&consumer, &self.owner).await?;
        result
    }

    async fn drain_leased(&self, t: &Target, consumer: &str) -> Result<usize, NotifyError> {
        let consumer = consumer.to_string();
        let mut done = 0;
        loop {
            let mut cursor = self.store.cursor(&consumer).await?;
            let events = self.store.events_after(cursor, 50).await?;
            if events.is_empty() {
                return Ok(done);
            }
            for e in events {
                // Keep the lease while working through a long backlog.
                if !self.store.lease_consumer(&consumer, &self.owner, self.clock.now(), chrono::Duration::minutes(10)).await? {
                    return Ok(done);
                }
                if let Some((name, title)) = classify(&e.kind)
                    && t.wants(name)
                {
                    self.deliver(t, &e, name, title).await?;
                    done += 1;
                }
                if !self.store.advance_cursor(&consumer, cursor, e.seq).await? {
                    // Another process owns this cursor now.
                    return Ok(done);
                }
                cursor = e.seq;
            }
        }
    }

    async fn notice(&self, t: &Target, e: &Event, name: &str, title: String) -> Result<Notice, NotifyError> {
        let event = EventInfo { name: name.into(), title, at: e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(), seq: e.seq };
        let mut notice = match e.run_id.as_deref().and_then(|r| RunId::parse(r).ok()) {
            Some(id) => {
                let run = self.store.run(&id).await?;
                let steps = self.store.steps(&id).await?;
                let approvals = self.store.approvals(&id).await?;
                Notice::new(event, &run, &steps, &approvals)
            }
            None => Notice { event, run: None, report_attached: false, target: Default::default(), checkpoint: None },
        };
        notice.target = t.params.clone();
        if let EventKind::AuditCheckpoint { seq, hash } = &e.kind {
            notice.checkpoint = Some(json!({ "seq": seq, "hash": hash }));
        }
        Ok(notice)
    }

    async fn deliver(&self, t: &Target, e: &Event, name: &str, title: String) -> Result<(), NotifyError> {
        let mut notice = self.notice(t, e, name, title).await?;
        // The report goes with e-mails about finished runs.
        let mut attachment = None;
        if let (Channel::Email(smtp), Some(run), Some(ev)) = (&t.channel, &notice.run, &self.evidence)
            && smtp.attach_report
            && name == "run.finished"
        {
            let id = RunId::parse(&run.id).expect("stored run ids parse");
            match ev.pdf(&self.store, &id, self.clock.now()).await {
                Ok((path, bytes)) => attachment = Some((path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default(), bytes)),
                Err(err) => tracing::warn!(run = %id, error = %err, "the report could not be made; sending the e-mail without it"),
            }
        }
        notice.report_attached = attachment.is_some();
        let delivery_id = format!("{}/{}", t.name, e.seq);

        // A template that fails on this event is a failed delivery, not a stopped notifier.
        let payload = match &t.channel {
            Channel::Webhook(w) => self.templates.render_off_runtime(w.format.template(), notice.clone()).await.map(Payload::Webhook),
            Channel::Email(_) => match self.templates.render_off_runtime("email/subject.txt", notice.clone()).await {
                Ok(subject) => self
                    .templates
                    .render_off_runtime("email/body.txt", notice.clone())
                    .await
                    .map(|body| Payload::Email { subject: subject.trim().to_string(), body }),
                Err(e) => Err(e),
            },
        };
        let payload = match payload {
            Ok(p) => p,
            Err(err) => return self.record(t, e, name, 0, Err(err.to_string())).await,
        };

        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            let result = match (&t.channel, &payload) {
                (Channel::Webhook(w), Payload::Webhook(body)) => w.send(&self.http, &delivery_id, name, body, self.clock.now()).await,
                (Channel::Email(s), Payload::Email { subject, body }) => s.send(subject, body, attachment.as_ref(), &delivery_id).await,
                _ => unreachable!("payload built for its channel"),
            };
            match result {
                Attempt::Transient { error, after } if attempts < self.retry.attempts => {
                    let wait = after.unwrap_or_else(|| self.retry.delay(attempts - 1)).min(self.retry.max);
                    tracing::info!(target_name = %t.name, seq = e.seq, attempt = attempts, error = %error, wait_ms = wait.as_millis() as u64, "notification will be retried");
                    tokio::time::sleep(wait).await;
                }
                Attempt::Transient { error, .. } => break Err(format!("gave up after {attempts} attempts: {error}")),
                Attempt::Refused { error } => break Err(error),
                Attempt::Delivered { status } => break Ok(status),
            }
        };
        self.record(t, e, name, attempts, outcome).await
    }

    async fn record(&self, t: &Target, e: &Event, name: &str, attempts: u32, outcome: Result<String, String>) -> Result<(), NotifyError> {
        let (action, detail) = match &outcome {
            Ok(status) => ("notification.delivered", json!({ "target": t.name, "event": name, "event_seq": e.seq, "attempts": attempts, "status": status })),
            Err(error) => ("notification.failed", json!({ "target": t.name, "event": name, "event_seq": e.seq, "attempts": attempts, "error": error })),
        };
        if let Err(error) = &outcome {
            tracing::warn!(target_name = %t.name, seq = e.seq, attempts, error = %error, "notification failed");
        }
        let mut audit = NewAudit::new("system:notifier", action).detail(detail);
        if let Some(tenant) = &e.tenant {
            audit = audit.tenant(tenant);
        }
        if let Some(run) = &e.run_id {
            audit = audit.run(run);
        }
        self.store.audit(audit, self.clock.now()).await?;
        Ok(())
    }
}

enum Payload {
    Webhook(String),
    Email { subject: String, body: String },
}
