//! The scheduler: starts scheduled runs when due, expires and escalates approvals, and
//! fires recurring cron jobs. Every action is a conditional write, so any number of
//! replicas may tick at once and each occurrence still happens once.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::audit::NewAudit;
use crate::clock::Clock;
use crate::run::RunState;
use crate::store::{Store, StoreError};

/// A recurring job: a name and a cron expression (with seconds, UTC), e.g.
/// `0 0 * * * *` for hourly.
#[derive(Debug, Clone)]
pub struct CronJob {
    pub name: String,
    pub schedule: cron::Schedule,
    pub expression: String,
}

impl CronJob {
    pub fn parse(name: &str, expression: &str) -> Result<Self, String> {
        let schedule = cron::Schedule::from_str(expression).map_err(|e| format!("schedule \"{name}\": \"{expression}\" is not a cron expression: {e}"))?;
        Ok(Self { name: name.into(), schedule, expression: expression.into() })
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&t).next()
    }
}

/// The audit-chain checkpoint job: an hourly witness of the chain head in the outbox.
pub const AUDIT_CHECKPOINT: &str = "audit-checkpoint";

/// The delegation index job: a few mailboxes of each tenant, every minute.
pub const DELEGATION_INDEX: &str = "delegation-index";

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    pub started: usize,
    pub expired: usize,
    pub escalated: usize,
    pub fired: Vec<String>,
}

pub struct Scheduler {
    store: Store,
    clock: Arc<dyn Clock>,
    jobs: Vec<CronJob>,
    id: String,
    indexer: Option<Arc<crate::delegations::Indexer>>,
    /// A round of the index still going: the next occurrence is skipped, not stacked.
    indexing: Arc<std::sync::atomic::AtomicBool>,
}

impl Scheduler {
    pub fn new(store: Store, clock: Arc<dyn Clock>, jobs: Vec<CronJob>, id: impl Into<String>) -> Self {
        Self { store, clock, jobs, id: id.into(), indexer: None, indexing: Arc::default() }
    }

    /// Runs a round of `indexer` on each occurrence of the [`DELEGATION_INDEX`] job, off
    /// the tick, so runs still start and approvals still expire on time.
    pub fn with_indexer(mut self, indexer: Arc<crate::delegations::Indexer>) -> Self {
        self.indexer = Some(indexer);
        self
    }

    /// Registers the jobs; call once at start.
    pub async fn register(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        for job in &self.jobs {
            if let Some(next) = job.next_after(now) {
                self.store.upsert_schedule(&job.name, &job.expression, next).await?;
            }
        }
        Ok(())
    }

    pub async fn tick(&self) -> Result<Tick, StoreError> {
        let now = self.clock.now();
        let mut tick = Tick::default();
        for id in self.store.due_scheduled(now).await? {
            let a = NewAudit::new(format!("system:{}", self.id), "run.started").run(&id).detail(json!({ "by": "schedule" }));
            if self.store.start_scheduled(&id, now, a).await? {
                tick.started += 1;
            }
        }
        for (id, version) in self.store.due_expiries(now).await? {
            let run = self.store.run(&id).await?;
            let a = NewAudit::new(format!("system:{}", self.id), "run.expired").tenant(&run.tenant).run(&id);
            match self.store.close_run(&id, version, RunState::Expired, Some("no decision before the approval expired"), now, a).await {
                Ok(()) => tick.expired += 1,
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        tick.escalated = self.store.escalate_due(now).await?.len();
        // Deliveries and wizard drafts past their time are forgotten.
        self.store.purge_expired(now).await?;
        for due in self.store.due_schedules(now).await? {
            let Some(job) = self.jobs.iter().find(|j| j.name == due.name) else { continue };
            // Occurrences missed while nothing ran collapse into one.
            let next = job.next_after(now.max(due.next_at)).unwrap_or(due.next_at + chrono::Duration::days(3650));
            if self.store.fire_schedule(&due, next, &self.id, now).await? {
                if due.name == AUDIT_CHECKPOINT {
                    self.store.checkpoint(now).await?;
                }
                if due.name == DELEGATION_INDEX
                    && let Some(indexer) = self.indexer.clone()
                    && !self.indexing.swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    let indexing = self.indexing.clone();
                    tokio::spawn(async move {
                        let done = indexer.tick().await;
                        tracing::debug!(listed = done.listed, scanned = done.scanned, "delegation index");
                        indexing.store(false, std::sync::atomic::Ordering::SeqCst);
                    });
                }
                tick.fired.push(due.name.clone());
            }
        }
        Ok(tick)
    }

    /// Ticks every `every` until `shutdown`; due runs start within one interval.
    pub async fn run_until_stopped(self, every: Duration, shutdown: impl Future<Output = ()>) -> Result<(), StoreError> {
        self.register().await?;
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "Scheduler tick failed; trying again next tick");
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
