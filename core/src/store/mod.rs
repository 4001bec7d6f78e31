//! Persistence on SQLite (the embedded default, file or memory) or Postgres, with sqlx.
//!
//! Both backends run the same SQL (sqlx binds `$1` on SQLite too); they differ only where
//! the databases do: how a writing transaction begins, how appends to the audit chain are
//! serialised, `FOR UPDATE SKIP LOCKED` in the claim and Postgres' `NOTIFY` when steps
//! become ready. Every state change, its audit entry and its outbox event commit in one
//! transaction.
//!
//! Kept in one file: `Store` is the one door to the database, a method per operation that
//! dispatches to `sql.rs` (or `batch.rs`); its records and errors sit beside it.

mod batch;
mod sql;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::Notify;

use crate::audit::{AuditEntry, AuditKey, Checkpoint, NewAudit};
use crate::domain::{RunId, StepKey, TenantId};
use crate::outbox::Event;
use crate::plan::{Plan, PlanHash, PlannedStep};
use crate::policy::Approval;
use crate::run::{RunState, StepOutcome, StepState};

/// What went wrong, named for what the caller does next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Someone else changed the run first: reload and decide again.
    #[error("the run changed concurrently; reload it and try again")]
    Conflict,
    /// This worker's lease was taken over: drop the step, another attempt owns it.
    #[error("the lease on this step was lost to attempt {current} (this was attempt {ours})")]
    LeaseLost { ours: i64, current: i64 },
    #[error("no run {0}")]
    NotFound(String),
    /// The person already has a run that has not ended: answer with it.
    #[error("run {0} for this person has not ended")]
    AlreadyOpen(RunId),
    /// The database could not be reached or refused the statement: retry later. (Not a
    /// `source`: the message already says it, and error chains would say it again.)
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// The SQLite file's directory is missing: create it or name another.
    #[error("the database directory {0} does not exist")]
    NoDirectory(String),
    /// The configured URL names no supported database: fix the configuration.
    #[error("unsupported database URL `{0}`: use sqlite://FILE, sqlite::memory: or postgres://…")]
    UnsupportedUrl(String),
    /// A stored row does not decode: a bug or manual tampering.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything needed to create a run awaiting approval.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: RunId,
    pub tenant: TenantId,
    pub target_upn: String,
    pub target_id: String,
    pub target_name: String,
    pub requester: String,
    pub requester_name: String,
    /// The request as JSON.
    pub request: String,
    /// The discovery snapshot as JSON: the evidence "before".
    pub snapshot: String,
    pub plan: Plan,
    pub plan_hash: PlanHash,
    pub approvals_needed: usize,
    pub expires_at: DateTime<Utc>,
    pub escalate_at: Option<DateTime<Utc>>,
    pub start_at: Option<DateTime<Utc>>,
    pub emergency: bool,
    pub origin: Option<Origin>,
    pub line_manager: Option<crate::policy::LineManager>,
}

/// Where a run was asked for: the platform (`slack`, `cli`) and, when known, its
/// conversation (a channel, a chat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub platform: String,
    pub conversation: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: RunId,
    pub tenant: TenantId,
    pub target_upn: String,
    pub target_id: String,
    pub target_name: String,
    pub requester: String,
    pub requester_name: String,
    pub state: RunState,
    pub request: String,
    pub snapshot: String,
    pub plan: Plan,
    pub plan_hash: PlanHash,
    pub approvals_needed: usize,
    pub expires_at: DateTime<Utc>,
    pub start_at: Option<DateTime<Utc>>,
    pub approved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it was rejected or cancelled.
    pub reason: Option<String>,
    /// Bumped by every change; decisions are fenced by it.
    pub version: i64,
    pub origin: Option<Origin>,
    /// The line manager the tenant's policy asks to approve, when one was found.
    pub line_manager: Option<crate::policy::LineManager>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub key: StepKey,
    pub state: StepState,
    pub attempt: i64,
    pub not_before: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<StepOutcome>,
    pub intent_at: Option<DateTime<Utc>>,
    /// The last failure, or for a waiting step what it waits for.
    pub last_error: Option<String>,
    /// Claims that answered "not yet" (counted in `attempt`, which fences writes, but not
    /// attempts a retry policy counts).
    pub polls: i64,
    /// When the step first answered "not yet".
    pub waiting_since: Option<DateTime<Utc>>,
}

impl StepRecord {
    /// Attempts that count against the retry policy.
    pub fn counted_attempts(&self) -> i64 {
        self.attempt - self.polls
    }
}

/// A step this worker holds a lease on. Every write through it is fenced by `attempt`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub step_id: i64,
    pub run_id: RunId,
    pub tenant: TenantId,
    pub target_id: String,
    pub attempt: i64,
    /// Earlier claims that answered "not yet": they raised `attempt` (a fence must only
    /// grow) but are not attempts.
    pub polls: i64,
    pub waiting_since: Option<DateTime<Utc>>,
    /// An earlier attempt journalled its intent and never recorded a result: read back
    /// before doing anything.
    pub unconfirmed_intent: bool,
    /// A lockout step of an emergency run.
    pub emergency: bool,
    pub step: PlannedStep,
}

impl Claim {
    /// This attempt's number as the retry policy counts: claims that only looked and
    /// answered "not yet" are left out; one that crashed counts.
    pub fn counted(&self) -> i64 {
        self.attempt - self.polls
    }
}

/// What the approval click changes, decided by `policy::approve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalEffect {
    Counted,
    Release,
}

/// A cron schedule that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSchedule {
    pub name: String,
    pub cron: String,
    pub next_at: DateTime<Utc>,
}

/// What a claim may take: a worker keeps slots for lockout steps alone and for an
/// emergency run's alone, so neither waits for a slot behind work of less urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Emergency,
    Lockout,
    Any,
}

/// Where a claim's round-robins over tenants start: after the tenant served last by lockout
/// steps and after the one served last by the rest; and what it may take.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    pub lockout: &'a str,
    pub general: &'a str,
    pub reach: Reach,
}

/// One of two backends.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database, the key that seals the audit chain, and a signal that steps may have
/// become ready in this process.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    ready: Arc<Notify>,
    /// The tenants this process's last claims served (for lockout steps and for the
    /// rest), where the next round-robins start.
    served: Arc<std::sync::Mutex<(String, String)>>,
    audit_key: Option<Arc<AuditKey>>,
    /// SQLite: the writes acknowledgements wait on, committed together.
    batch: Option<batch::Batcher>,
}

/// Wakes every loop waiting for ready steps (a worker's general and lockout loops); the
/// stored permit covers one that is between its claim and its wait.
fn ring(ready: &Notify) {
    ready.notify_waiters();
    ready.notify_one();
}

/// Listens for steps made ready by any process and wakes this one's worker. Listening
/// has begun when this returns, so nothing committed afterwards is missed; a lost
/// connection is re-established by the listener (the workers' poll covers the gap).
async fn listen_for_ready_steps(pool: &PgPool, ready: Arc<Notify>) -> Result<()> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen("offboard_steps_ready").await?;
    let pool = pool.clone();
    tokio::spawn(async move {
        loop {
            match listener.recv().await {
                Ok(_) => ring(&ready),
                Err(_) if pool.is_closed() => return,
                Err(e) => {
                    tracing::warn!(error = %e, "Lost the Postgres notifications; polling until they are back");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}

macro_rules! dispatch {
    ($self:ident . $f:ident ( $($arg:expr),* )) => {
        match &$self.db {
            Db::Sqlite(p) => sql::sqlite::$f(p, $($arg),*).await,
            Db::Postgres(p) => sql::postgres::$f(p, $($arg),*).await,
        }
    };
}

impl Store {
    /// Connects and applies migrations. `sqlite://path.db`, `sqlite::memory:` or
    /// `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self> {
        let mut batch = None;
        let ready = Arc::new(Notify::new());
        let store = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
            listen_for_ready_steps(&pool, ready.clone()).await?;
            Db::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            if let Some(file) = url.strip_prefix("sqlite://").map(|f| f.split('?').next().unwrap_or(f)).filter(|_| !memory)
                && let Some(dir) = std::path::Path::new(file).parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
            {
                return Err(StoreError::NoDirectory(dir.display().to_string()));
            }
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // A committed step result must survive a crash of the process or the machine.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(15))
                .foreign_keys(true);
            // An in-memory database exists per connection: keep exactly one.
            let max = if memory { 1 } else { 4 };
            let pool = SqlitePoolOptions::new().max_connections(max).connect_with(opts).await?;
            batch = Some(batch::Batcher::start(pool.clone()));
            Db::Sqlite(pool)
        } else {
            // Only the part after any credentials is echoed.
            return Err(StoreError::UnsupportedUrl(url.split('@').next_back().unwrap_or("").to_string()));
        };
        let store = Store { db: store, ready, served: Arc::default(), audit_key: None, batch };
        store.migrate().await?;
        Ok(store)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Seals every audit entry this store appends with `key` (see [`crate::audit`]).
    pub fn with_audit_key(mut self, key: AuditKey) -> Self {
        self.audit_key = Some(Arc::new(key));
        self
    }

    pub fn audit_key(&self) -> Option<&AuditKey> {
        self.audit_key.as_deref()
    }

    /// Resolves when steps may have become ready (approval, a finished step, a retry): in
    /// this process, and on Postgres in any process (LISTEN/NOTIFY). Workers poll as well,
    /// for SQLite's other processes and a notification lost with its connection.
    pub async fn steps_ready(&self) {
        self.ready_signal().await
    }

    fn wake(&self) {
        ring(&self.ready);
    }

    pub async fn migrate(&self) -> Result<()> {
        match &self.db {
            Db::Sqlite(p) => sqlx::migrate!("../migrations/sqlite").run(p).await?,
            Db::Postgres(p) => sqlx::migrate!("../migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> &'static str {
        match &self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn ping(&self) -> Result<()> {
        dispatch!(self.ping())
    }

    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }

    // Runs.

    pub async fn create_run(&self, run: &NewRun, now: DateTime<Utc>, audit: NewAudit) -> Result<()> {
        let r = dispatch!(self.create_run(self.audit_key(), run, now, audit));
        self.wake();
        r
    }

    pub async fn run(&self, id: &RunId) -> Result<RunRecord> {
        dispatch!(self.get_run(id))
    }

    pub async fn steps(&self, id: &RunId) -> Result<Vec<StepRecord>> {
        dispatch!(self.steps(id))
    }

    pub async fn approvals(&self, id: &RunId) -> Result<Vec<Approval>> {
        dispatch!(self.approvals(id))
    }

    /// The run for this person that has not ended, if there is one.
    pub async fn open_run_for(&self, tenant: &TenantId, target_id: &str) -> Result<Option<RunId>> {
        dispatch!(self.open_run_for(tenant, target_id))
    }

    pub async fn list_runs(&self, tenant: Option<&TenantId>, limit: i64) -> Result<Vec<RunRecord>> {
        dispatch!(self.list_runs(tenant, limit))
    }

    /// Records an approval; with `Release` the run moves on (scheduled or approved).
    pub async fn record_approval(&self, id: &RunId, version: i64, approval: &Approval, effect: ApprovalEffect, audit: NewAudit) -> Result<RunState> {
        let r = dispatch!(self.record_approval(self.audit_key(), id, version, approval, effect, audit));
        self.wake();
        r
    }

    /// Ends a run that has not finished: rejected, cancelled or expired. Waiting and ready
    /// steps are cancelled; running ones finish and are recorded.
    pub async fn close_run(&self, id: &RunId, version: i64, to: RunState, reason: Option<&str>, now: DateTime<Utc>, audit: NewAudit) -> Result<()> {
        dispatch!(self.close_run(self.audit_key(), id, version, (to, reason), now, audit))
    }

    /// Starts a scheduled run now (or when its time has come): exactly one caller wins.
    pub async fn start_scheduled(&self, id: &RunId, now: DateTime<Utc>, audit: NewAudit) -> Result<bool> {
        let r = dispatch!(self.start_scheduled(self.audit_key(), id, now, audit));
        self.wake();
        r
    }

    /// A human's decision on a step that needs attention.
    pub async fn resolve_step(&self, id: &RunId, key: &StepKey, outcome: &StepOutcome, now: DateTime<Utc>, audit: NewAudit) -> Result<bool> {
        let r = dispatch!(self.resolve_step(self.audit_key(), id, key, outcome, now, audit));
        self.wake();
        r
    }

    pub async fn audit_refusal(&self, audit: NewAudit, event: Option<(&RunId, crate::outbox::EventKind)>, now: DateTime<Utc>) -> Result<()> {
        if let Some(b) = &self.batch {
            let w = batch::Write::Refusal { audit, seal: self.audit_key.clone(), event: event.map(|(r, k)| (r.clone(), k)), now };
            return b.write(w).await.map(|_| ());
        }
        dispatch!(self.audit_only(self.audit_key(), audit, event, now))
    }

    // The step queue.

    pub async fn claim(&self, worker: &str, now: DateTime<Utc>, lease: chrono::Duration) -> Result<Option<Claim>> {
        Ok(self.claim_many(worker, now, lease, 1).await?.pop())
    }

    /// Up to `max` ready steps, leased together in one transaction: lapsed leases first,
    /// then lockout steps of any run, then the rest; each round-robin across tenants,
    /// starting after the tenant this process served last.
    pub async fn claim_many(&self, worker: &str, now: DateTime<Utc>, lease: chrono::Duration, max: usize) -> Result<Vec<Claim>> {
        self.claim_within(worker, now, lease, max, Reach::Any).await
    }

    /// Up to `max` ready steps as [`Store::claim_many`] takes them, of `reach` only.
    pub async fn claim_within(&self, worker: &str, now: DateTime<Utc>, lease: chrono::Duration, max: usize, reach: Reach) -> Result<Vec<Claim>> {
        let (lockout, general) = self.served.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let served = Served { lockout: &lockout, general: &general, reach };
        let claims = dispatch!(self.claim_many(worker, now, lease, max, served))?;
        let mut last = self.served.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = claims.iter().rev().find(|c| c.step.kind.is_lockout()) {
            last.0 = c.tenant.as_str().to_string();
        }
        if let Some(c) = claims.iter().rev().find(|c| !c.step.kind.is_lockout()) {
            last.1 = c.tenant.as_str().to_string();
        }
        Ok(claims)
    }

    /// When the earliest ready step may be claimed (a retry's or a look's time), if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        dispatch!(self.next_due())
    }

    /// Wakes when steps may have become ready in this process or (Postgres) any other.
    /// Enable it before looking for work, so a step made ready meanwhile is not missed.
    pub fn ready_signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
    }

    pub async fn heartbeat(&self, claim: &Claim, now: DateTime<Utc>, lease: chrono::Duration) -> Result<()> {
        dispatch!(self.heartbeat(claim, now, lease))
    }

    /// Journals that an at-most-once call is about to be sent, committed before sending.
    pub async fn journal_intent(&self, claim: &Claim, now: DateTime<Utc>) -> Result<()> {
        dispatch!(self.journal_intent(claim, now))
    }

    /// Read-back proved an earlier intent was never applied: the call may be sent.
    pub async fn clear_intent(&self, claim: &Claim) -> Result<()> {
        dispatch!(self.clear_intent(claim))
    }

    pub async fn finish_step(&self, claim: &Claim, outcome: &StepOutcome, now: DateTime<Utc>) -> Result<()> {
        let r = match &self.batch {
            Some(b) => b
                .write(batch::Write::Finish { claim: Box::new(claim.clone()), outcome: Box::new(outcome.clone()), seal: self.audit_key.clone(), now })
                .await
                .map(|_| ()),
            None => dispatch!(self.finish_step(self.audit_key(), claim, outcome, now)),
        };
        self.wake();
        r
    }

    pub async fn retry_step(&self, claim: &Claim, at: DateTime<Utc>, error: &str, now: DateTime<Utc>) -> Result<()> {
        let r = match &self.batch {
            Some(b) => b.write(batch::Write::Retry { claim: Box::new(claim.clone()), at, error: error.into(), now }).await.map(|_| ()),
            None => dispatch!(self.retry_step(claim, at, error, now)),
        };
        self.wake();
        r
    }

    /// The step answered "not yet": back to the queue until `at`, the look recorded as a
    /// poll (not an attempt), fenced like every other write.
    pub async fn poll_step(&self, claim: &Claim, at: DateTime<Utc>, waiting_for: &str, now: DateTime<Utc>) -> Result<()> {
        let r = match &self.batch {
            Some(b) => b.write(batch::Write::Poll { claim: Box::new(claim.clone()), at, waiting_for: waiting_for.into(), now }).await.map(|_| ()),
            None => dispatch!(self.poll_step(claim, at, waiting_for, now)),
        };
        // An idle worker sleeping until a later step's time must learn of this one's.
        self.wake();
        r
    }

    /// Keeps a rate found by trying (a limit Microsoft does not publish), per tenant and
    /// lane, so a restart starts from it.
    pub async fn save_learned_rate(&self, tenant: &TenantId, lane: &str, per_s: f64, now: DateTime<Utc>) -> Result<()> {
        dispatch!(self.save_learned_rate(tenant.as_str(), lane, per_s, now))
    }

    /// The rates kept for a lane, by tenant; entries for tenants no longer known are left out.
    pub async fn learned_rates(&self, lane: &str) -> Result<Vec<(TenantId, f64)>> {
        let rows = dispatch!(self.learned_rates(lane))?;
        Ok(rows.into_iter().filter_map(|(t, r)| Some((TenantId::parse(&t).ok()?, r))).collect())
    }

    // Scheduler.

    pub async fn due_scheduled(&self, now: DateTime<Utc>) -> Result<Vec<RunId>> {
        dispatch!(self.due_scheduled(now))
    }

    pub async fn due_expiries(&self, now: DateTime<Utc>) -> Result<Vec<(RunId, i64)>> {
        dispatch!(self.due_expiries(now))
    }

    /// Marks due escalations as sent and returns them; a run another replica already
    /// escalated is not returned again.
    pub async fn escalate_due(&self, now: DateTime<Utc>) -> Result<Vec<RunId>> {
        dispatch!(self.escalate_due(self.audit_key(), now))
    }

    pub async fn upsert_schedule(&self, name: &str, cron: &str, next_at: DateTime<Utc>) -> Result<()> {
        dispatch!(self.upsert_schedule(name, cron, next_at))
    }

    pub async fn due_schedules(&self, now: DateTime<Utc>) -> Result<Vec<DueSchedule>> {
        dispatch!(self.due_schedules(now))
    }

    /// Fires one occurrence; the fire key `(name, fire_at)` makes a second call a no-op.
    pub async fn fire_schedule(&self, due: &DueSchedule, next_at: DateTime<Utc>, by: &str, now: DateTime<Utc>) -> Result<bool> {
        dispatch!(self.fire_schedule(due, next_at, by, now))
    }

    // Outbox.

    pub async fn events_after(&self, seq: i64, limit: i64) -> Result<Vec<Event>> {
        dispatch!(self.events_after(seq, limit))
    }

    /// Takes or renews the lease on an outbox consumer for `owner`; `false` while another
    /// owner's lease runs.
    pub async fn lease_consumer(&self, consumer: &str, owner: &str, now: DateTime<Utc>, ttl: chrono::Duration) -> Result<bool> {
        dispatch!(self.lease_consumer(consumer, owner, now, ttl))
    }

    /// `true` the first time `key` arrives from `source` within `ttl`: a redelivered or
    /// replayed request is acted on once, whichever process receives it.
    pub async fn first_delivery(&self, source: &str, key: &str, now: DateTime<Utc>, ttl: chrono::Duration) -> Result<bool> {
        if let Some(b) = &self.batch {
            let first = b.write(batch::Write::Delivery { source: source.into(), key: key.into(), now, ttl }).await?;
            return Ok(first == Some(true));
        }
        dispatch!(self.first_delivery(source, key, now, ttl))
    }

    /// Keeps a chat wizard's draft until `expires`; any process may read it back.
    pub async fn save_draft(&self, key: &str, draft: &str, expires: DateTime<Utc>) -> Result<()> {
        if let Some(b) = &self.batch {
            return b.write(batch::Write::SaveDraft { key: key.into(), draft: draft.into(), expires }).await.map(|_| ());
        }
        dispatch!(self.save_draft(key, draft, expires))
    }

    pub async fn draft(&self, key: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        dispatch!(self.draft(key, now))
    }

    pub async fn delete_draft(&self, key: &str) -> Result<()> {
        if let Some(b) = &self.batch {
            return b.write(batch::Write::DeleteDraft { key: key.into() }).await.map(|_| ());
        }
        dispatch!(self.delete_draft(key))
    }

    /// Forgets deliveries and drafts whose time ran out; returns how many.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64> {
        dispatch!(self.purge_expired(now))
    }

    /// Ends `owner`'s lease at once, so another process need not wait for it to run out.
    pub async fn release_consumer(&self, consumer: &str, owner: &str) -> Result<()> {
        dispatch!(self.release_consumer(consumer, owner))
    }

    /// How many runs are in each state (states with none are absent).
    pub async fn count_runs(&self) -> Result<Vec<(RunState, i64)>> {
        let rows = dispatch!(self.count_runs())?;
        Ok(rows.into_iter().filter_map(|(s, n)| RunState::parse(&s).map(|s| (s, n))).collect())
    }

    /// Remembers a message a chat surface posted for a run (`kind`: `preview`, `status`, …).
    pub async fn save_message(&self, run: &RunId, surface: &str, kind: &str, message: &str) -> Result<()> {
        dispatch!(self.save_message(run.as_str(), surface, kind, message))
    }

    pub async fn message(&self, run: &RunId, surface: &str, kind: &str) -> Result<Option<String>> {
        dispatch!(self.message(run.as_str(), surface, kind))
    }

    /// Remembers how to reach a conversation later without being asked (Teams' conversation
    /// reference, by conversation or user id); the newest reference wins.
    pub async fn save_conversation(&self, platform: &str, key: &str, reference: &str, now: DateTime<Utc>) -> Result<()> {
        dispatch!(self.save_conversation(platform, key, reference, now.timestamp_millis()))
    }

    pub async fn conversation(&self, platform: &str, key: &str) -> Result<Option<String>> {
        dispatch!(self.conversation(platform, key))
    }

    pub async fn cursor(&self, consumer: &str) -> Result<i64> {
        dispatch!(self.cursor(consumer))
    }

    /// Moves a consumer's cursor from `from` to `to`; `false` if it had moved already.
    pub async fn advance_cursor(&self, consumer: &str, from: i64, to: i64) -> Result<bool> {
        dispatch!(self.advance_cursor(consumer, from, to))
    }

    // Audit.

    pub async fn audit(&self, audit: NewAudit, now: DateTime<Utc>) -> Result<AuditEntry> {
        dispatch!(self.audit_append(self.audit_key(), audit, now))
    }

    pub async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>> {
        dispatch!(self.audit_entries(after, limit))
    }

    /// Records the current head as a checkpoint and announces it through the outbox, so
    /// that copies exist outside the database.
    pub async fn checkpoint(&self, now: DateTime<Utc>) -> Result<Option<Checkpoint>> {
        dispatch!(self.checkpoint(now))
    }

    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        dispatch!(self.checkpoints())
    }

    /// Every entry, in order, and every checkpoint, verified.
    pub async fn verify_audit(&self, anchors: &[Checkpoint]) -> Result<Result<crate::audit::Verified, crate::audit::Tamper>> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = self.audit_entries(after, 5000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            all.extend(page);
        }
        let mut cps = self.checkpoints().await?;
        cps.extend_from_slice(anchors);
        Ok(crate::audit::verify(&all, &cps, self.audit_key()))
    }

    /// The run's audit entries, each checked against the audit key: every entry from the
    /// first sealed one on must carry a valid seal. `Err(seq)` names the first that does not.
    pub async fn attested_entries(&self, run: &RunId) -> Result<std::result::Result<Vec<AuditEntry>, i64>> {
        let entries = self.audit_for_run(run).await?;
        if let Some(key) = self.audit_key() {
            let first = dispatch!(self.first_sealed())?;
            for e in &entries {
                let must = first.is_some_and(|f| e.seq >= f);
                if (e.keyed || must) && !e.sealed_by(key) {
                    return Ok(Err(e.seq));
                }
            }
        }
        Ok(Ok(entries))
    }

    /// A run's audit entries, in order.
    /// Records a tenant's mailbox listing: new mailboxes wait for their first scan, gone
    /// ones are forgotten with what was known of them.
    pub async fn index_listed(&self, tenant: &TenantId, listed: &[crate::delegations::Listed], now: DateTime<Utc>) -> Result<()> {
        dispatch!(self.index_listed(tenant.as_str(), listed, now))
    }

    /// Up to `limit` mailboxes never scanned or scanned before `scanned_before`, the
    /// longest waiting first.
    pub async fn index_due(&self, tenant: &TenantId, scanned_before: DateTime<Utc>, limit: usize) -> Result<Vec<String>> {
        dispatch!(self.index_due(tenant.as_str(), scanned_before, limit))
    }

    pub async fn index_scanned(&self, tenant: &TenantId, scans: &[crate::delegations::Scanned], now: DateTime<Utc>) -> Result<()> {
        dispatch!(self.index_scanned(tenant.as_str(), scans, now))
    }

    pub async fn index_coverage(&self, tenant: &TenantId) -> Result<crate::delegations::Coverage> {
        dispatch!(self.index_coverage(tenant.as_str()))
    }

    /// The rights the index holds for any of `trustees` (see `Trustee::key`).
    pub async fn index_grants_of(&self, tenant: &TenantId, trustees: &[String]) -> Result<Vec<crate::delegations::Grant>> {
        dispatch!(self.index_grants_of(tenant.as_str(), trustees))
    }

    pub async fn audit_for_run(&self, run: &RunId) -> Result<Vec<AuditEntry>> {
        dispatch!(self.audit_for_run(run.as_str()))
    }
}
