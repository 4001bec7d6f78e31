//! The durable step runner. Workers claim ready steps with a lease, keep it alive with a
//! heartbeat, and write every result fenced by the attempt number, so a worker whose lease
//! was taken over cannot overwrite the newer attempt. At-most-once steps journal their
//! intent before the call; an attempt that finds an unconfirmed intent reads back instead
//! of sending again, and hands the step to a human when read-back cannot decide.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::domain::{RunId, TenantId};
use crate::plan::{PlannedStep, StepClass};
use crate::run::StepOutcome;
use crate::store::{Claim, Reach, Store, StoreError};

/// What an executor sees of the step it runs.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub run_id: RunId,
    pub tenant: TenantId,
    pub target_id: String,
    /// Counted attempts, this one included; looks that answered "not yet" do not count.
    pub attempt: i64,
    /// How many earlier claims of this step answered "not yet".
    pub polls: i64,
    /// When the first "not yet" was answered: executors bound their wait from here.
    pub waiting_since: Option<chrono::DateTime<chrono::Utc>>,
    /// A step of an emergency run's lockout: it goes before every other step, lockouts
    /// of other runs included.
    pub emergency: bool,
    pub step: PlannedStep,
}

/// A failed attempt, named for what the runner does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The server asked us to wait (HTTP 429/503 with Retry-After).
    #[error("throttled; retry after {0:?}: {1}")]
    RetryAfter(Duration, String),
    /// A transient failure (5xx, timeout, reset): retry with backoff.
    #[error("{0}")]
    Retryable(String),
    /// Nothing reached the server (DNS, connect, TLS): safe to retry any class.
    #[error("not sent: {0}")]
    NotSent(String),
    /// Retrying cannot help (4xx other than throttling): the step fails with this.
    #[error("{message}")]
    Permanent { message: String, request_id: Option<String> },
    /// Nothing failed: what the step waits for (a mailbox conversion, a change Microsoft is
    /// still propagating) is not there yet; `waiting_for` completes "waiting for …". The step goes back to the queue until
    /// `look_again_in` has passed, holding no worker slot, and the look is not an attempt.
    /// The executor bounds the wait from [`StepContext::waiting_since`].
    #[error("waiting: {waiting_for}")]
    NotYet { look_again_in: Duration, waiting_for: String },
    /// Nothing was sent: the service's budget for this tenant is spent for now. Handled as
    /// [`StepError::NotYet`]; an at-most-once step's journalled intent is void, since the
    /// call it guards never left (an executor that sent one answers `NotYet` instead).
    #[error("waiting: {waiting_for}")]
    Paced { look_again_in: Duration, waiting_for: String },
}

/// What read-back says about an intent an earlier attempt journalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// The effect is there: the step is done.
    Applied(StepOutcome),
    /// The effect is provably absent: sending is safe.
    NotApplied,
    /// Read-back cannot decide: a human must.
    Unknown(String),
}

/// Runs steps against the outside world. The Microsoft 365 adapter implements it.
#[async_trait]
pub trait StepExecutor: Send + Sync {
    async fn execute(&self, cx: &StepContext) -> Result<StepOutcome, StepError>;

    /// Called instead of `execute` when an earlier attempt may have sent the call.
    async fn reconcile(&self, cx: &StepContext) -> Reconciled;
}

/// Named points in a step's life, for tests that crash the process exactly there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Claimed,
    IntentJournaled,
    Executed,
    /// The executor answered "not yet"; its re-queue is not written yet.
    NotYet,
    /// A "not yet" is written: the step is back in the queue.
    Requeued,
    Finished,
    StaleWriteRefused,
}

impl Point {
    pub fn name(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::IntentJournaled => "intent_journaled",
            Self::Executed => "executed",
            Self::NotYet => "not_yet",
            Self::Requeued => "requeued",
            Self::Finished => "finished",
            Self::StaleWriteRefused => "stale_write_refused",
        }
    }
}

/// Observes the runner; does nothing by default.
pub trait Probe: Send + Sync {
    fn at(&self, _point: Point, _cx: &StepContext) {}
}

#[derive(Debug, Default)]
pub struct NoProbe;
impl Probe for NoProbe {}

/// Exponential backoff with jitter; a server's Retry-After is honoured, never undercut,
/// and clamped to `max_retry_after`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub factor: f64,
    pub cap: Duration,
    pub max_retry_after: Duration,
    /// After this many attempts the step fails (or, if it crashed mid-call, needs a human).
    pub max_attempts: i64,
    /// The longest any step may keep answering "not yet", whatever its executor allows:
    /// past it the step fails, saying what it waited for.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(100),
            max_retry_after: Duration::from_secs(600),
            max_attempts: 8,
            max_wait: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The wait before the attempt after `attempt`.
    pub fn delay(&self, attempt: i64, retry_after: Option<Duration>) -> Duration {
        let mut rng = rand::rng();
        match retry_after {
            Some(ra) => {
                let base = ra.min(self.max_retry_after);
                // A little on top spreads a burst of throttled workers; never below the ask.
                base + base.mul_f64(rng.random_range(0.0..0.1))
            }
            None => {
                let exp = self.initial.as_secs_f64() * self.factor.powi((attempt.max(1) - 1).min(30) as i32);
                let d = Duration::from_secs_f64(exp.min(self.cap.as_secs_f64()));
                // "Equal jitter": half fixed, half random.
                d / 2 + d.mul_f64(rng.random_range(0.0..0.5))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub worker_id: String,
    /// Steps this process runs at once (across all runs).
    pub concurrency: usize,
    pub lease: Duration,
    pub heartbeat: Duration,
    /// How often an idle worker looks for work.
    pub poll: Duration,
    pub retry: RetryPolicy,
    /// Slots kept for lockout steps alone, on top of `concurrency`: when every other slot
    /// is busy (a bulk offboarding), a new lockout still starts at once.
    pub lockout_slots: usize,
    /// Slots kept for an emergency run's lockout steps alone: when a bulk's own lockouts
    /// hold every other slot, waiting for a tenant's write budget, an emergency still
    /// starts at once.
    pub emergency_slots: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            // Steps mostly wait on Microsoft and on the store's commits, and per-tenant
            // pacing (not this number) keeps within Microsoft's limits; slots only bound how
            // many steps progress at once. With 64, 20 tenants' bulk work queued for slots.
            concurrency: 256,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            retry: RetryPolicy::default(),
            // A lockout step is one call, so a slot is cheap. With 4, a bulk offboarding's
            // own lockouts filled them and another tenant's lockout waited a round trip.
            lockout_slots: 64,
            emergency_slots: 8,
        }
    }
}

#[derive(Clone)]
pub struct Worker {
    store: Store,
    executor: Arc<dyn StepExecutor>,
    clock: Arc<dyn Clock>,
    probe: Arc<dyn Probe>,
    config: WorkerConfig,
}

/// The most steps one claim transaction leases. Each claim is a commit: at 16, the steps
/// of 100 leavers approved together took a second to claim.
const CLAIM_BATCH: usize = 64;

/// A worker's sets of slots: any step, the most urgent first; `lockout_slots` that take
/// only lockout steps; and `emergency_slots` that take only an emergency run's. A lockout
/// approved while every other slot is busy starts at once.
#[derive(Debug, Clone, Copy)]
enum Lane {
    General,
    Lockout,
    Emergency,
}

fn lease(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(30))
}

impl Worker {
    pub fn new(store: Store, executor: Arc<dyn StepExecutor>, clock: Arc<dyn Clock>, config: WorkerConfig) -> Self {
        Self { store, executor, clock, probe: Arc::new(NoProbe), config }
    }

    pub fn with_probe(mut self, probe: Arc<dyn Probe>) -> Self {
        self.probe = probe;
        self
    }

    /// Claims and runs steps until `shutdown` resolves, then stops claiming and lets the
    /// steps in flight finish (or, if the process dies, their leases expire).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> Result<(), StoreError> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let kept = [(Lane::Lockout, self.config.lockout_slots), (Lane::Emergency, self.config.emergency_slots)];
        let lanes: Vec<_> = kept.into_iter().filter(|(_, n)| *n > 0).map(|(lane, _)| tokio::spawn(self.clone().lane(lane, stopped.clone()))).collect();
        let signal = async {
            shutdown.await;
            let _ = stop.send(true);
        };
        tokio::join!(self.clone().lane(Lane::General, stopped), signal);
        for lane in lanes {
            let _ = lane.await;
        }
        Ok(())
    }

    /// One set of slots claiming and running steps until `stopped`, then letting the steps
    /// in flight finish.
    async fn lane(self, lane: Lane, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let (size, batch, reach) = match lane {
            Lane::General => (self.config.concurrency.max(1), CLAIM_BATCH, Reach::Any),
            Lane::Lockout => (self.config.lockout_slots, self.config.lockout_slots, Reach::Lockout),
            Lane::Emergency => (self.config.emergency_slots, self.config.emergency_slots, Reach::Emergency),
        };
        let permits = Arc::new(Semaphore::new(size));
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                _ = stopped.changed() => break,
                p = permits.clone().acquire_owned() => p.expect("semaphore open"),
            };
            // Every free slot (up to a batch) is offered to one claim: a backlog costs one
            // commit per batch rather than per step, and the steps a finished disable
            // releases (revoke, reset, MFA) start together.
            let mut slots = vec![permit];
            while slots.len() < batch {
                match permits.clone().try_acquire_owned() {
                    Ok(p) => slots.push(p),
                    Err(_) => break,
                }
            }
            // Listening before looking: a step made ready after the claim wakes this lane.
            let woken = self.store.ready_signal();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let (worker, now, lease_for) = (&self.config.worker_id, self.clock.now(), lease(self.config.lease));
            let claimed = self.store.claim_within(worker, now, lease_for, slots.len(), reach).await;
            let claims = claimed.unwrap_or_else(|e| {
                tracing::warn!(error = %e, lane = ?lane, "Claim failed; retrying");
                Vec::new()
            });
            let idle = claims.is_empty();
            for claim in claims {
                let permit = slots.pop().expect("one slot per claim");
                let me = self.clone();
                tasks.spawn(async move {
                    me.handle(claim).await;
                    drop(permit);
                });
            }
            drop(slots);
            if idle {
                let wait = match lane {
                    Lane::General => self.idle_wait().await,
                    Lane::Lockout | Lane::Emergency => self.config.poll,
                };
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = &mut woken => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// How long an idle worker sleeps unless woken: until the earliest step's time (a retry
    /// or a look again), at most `poll`.
    async fn idle_wait(&self) -> Duration {
        match self.store.next_due().await {
            Ok(Some(at)) => (at - self.clock.now()).to_std().unwrap_or_default().min(self.config.poll),
            _ => self.config.poll,
        }
    }

    /// Runs every step that is ready now, one at a time, until none is left. For tests
    /// and the CLI; returns how many attempts it made.
    pub async fn drain(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        while let Some(claim) = self.store.claim(&self.config.worker_id, self.clock.now(), lease(self.config.lease)).await? {
            self.handle(claim).await;
            n += 1;
        }
        Ok(n)
    }

    async fn handle(&self, claim: Claim) {
        let cx = StepContext {
            run_id: claim.run_id.clone(),
            tenant: claim.tenant.clone(),
            target_id: claim.target_id.clone(),
            attempt: claim.counted(),
            polls: claim.polls,
            waiting_since: claim.waiting_since,
            emergency: claim.emergency,
            step: claim.step.clone(),
        };
        self.probe.at(Point::Claimed, &cx);
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let store = self.store.clone();
            let claim = claim.clone();
            let clock = self.clock.clone();
            let lost = lost.clone();
            let (every, lease_for) = (self.config.heartbeat, lease(self.config.lease));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(StoreError::LeaseLost { .. }) = store.heartbeat(&claim, clock.now(), lease_for).await {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            })
        };
        let result = self.attempt(&claim, &cx).await;
        heartbeat.abort();
        if let Err(e) = result {
            match e {
                StoreError::LeaseLost { ours, current } => {
                    self.probe.at(Point::StaleWriteRefused, &cx);
                    tracing::warn!(run.id = %cx.run_id, step.key = %cx.step.key, attempt = ours, current, "Stale write refused: another attempt owns this step");
                }
                e => {
                    tracing::error!(run.id = %cx.run_id, step.key = %cx.step.key, error = %e, "Step bookkeeping failed; the lease will expire and the step be retried")
                }
            }
        }
    }

    async fn finish(&self, claim: &Claim, cx: &StepContext, outcome: StepOutcome) -> Result<(), StoreError> {
        let outcome = honest(&cx.step, outcome);
        self.store.finish_step(claim, &outcome, self.clock.now()).await?;
        self.probe.at(Point::Finished, cx);
        tracing::info!(run.id = %cx.run_id, step.key = %cx.step.key, outcome = outcome.state().as_str(), "Step finished");
        Ok(())
    }

    async fn attempt(&self, claim: &Claim, cx: &StepContext) -> Result<(), StoreError> {
        let step = &cx.step;
        if let Some(reason) = &step.skip {
            let outcome = StepOutcome::Skipped { reason: reason.clone(), warning: !step.warnings.is_empty() };
            return self.finish(claim, cx, outcome).await;
        }
        let policy = self.config.retry;
        if claim.unconfirmed_intent {
            match self.executor.reconcile(cx).await {
                Reconciled::Applied(outcome) => return self.finish(claim, cx, outcome).await,
                Reconciled::Unknown(reason) => return self.finish(claim, cx, StepOutcome::NeedsAttention { reason }).await,
                Reconciled::NotApplied => self.store.clear_intent(claim).await?,
            }
        }
        if cx.attempt > policy.max_attempts {
            // Only reachable by crashing repeatedly inside this step.
            let reason = format!("the worker stopped {} times while running this step", cx.attempt - 1);
            let outcome = if step.class == StepClass::AtMostOnce {
                StepOutcome::NeedsAttention { reason }
            } else {
                StepOutcome::Failed { error: reason, request_id: None }
            };
            return self.finish(claim, cx, outcome).await;
        }
        if step.class == StepClass::AtMostOnce {
            self.store.journal_intent(claim, self.clock.now()).await?;
            self.probe.at(Point::IntentJournaled, cx);
        }
        let result = self.executor.execute(cx).await;
        self.probe.at(Point::Executed, cx);
        match result {
            Ok(outcome) => self.finish(claim, cx, outcome).await,
            Err(StepError::Permanent { message, request_id }) => self.finish(claim, cx, StepOutcome::Failed { error: message, request_id }).await,
            Err(e @ (StepError::NotYet { .. } | StepError::Paced { .. })) => {
                self.probe.at(Point::NotYet, cx);
                let (look_again_in, waiting_for, sent_nothing) = match e {
                    StepError::Paced { look_again_in, waiting_for } => (look_again_in, waiting_for, true),
                    StepError::NotYet { look_again_in, waiting_for } => (look_again_in, waiting_for, false),
                    _ => unreachable!("matched above"),
                };
                let now = self.clock.now();
                let waited = claim.waiting_since.map(|since| (now - since).to_std().unwrap_or_default()).unwrap_or_default();
                if waited + look_again_in > policy.max_wait {
                    let error = format!(
                        "gave up waiting for {waiting_for} after {}",
                        crate::chat::views::duration(waited.as_millis() as i64).unwrap_or_else(|| "a moment".into())
                    );
                    return self.finish(claim, cx, StepOutcome::Failed { error, request_id: None }).await;
                }
                let at = now + chrono::Duration::from_std(look_again_in).unwrap_or(chrono::Duration::seconds(1));
                tracing::info!(run.id = %cx.run_id, step.key = %cx.step.key, polls = claim.polls + 1, look_again_ms = look_again_in.as_millis() as u64, waiting_for, "Step waits without a worker");
                if sent_nothing && step.class == StepClass::AtMostOnce {
                    // A crash after this leaves no intent, and nothing was sent: safe.
                    self.store.clear_intent(claim).await?;
                }
                self.store.poll_step(claim, at, &format!("waiting for {waiting_for}"), now).await?;
                self.probe.at(Point::Requeued, cx);
                Ok(())
            }
            Err(e) => {
                if cx.attempt >= policy.max_attempts {
                    let error = format!("gave up after {} attempts: {e}", cx.attempt);
                    // An at-most-once call may have landed: read back before calling it failed.
                    if step.class == StepClass::AtMostOnce && !matches!(e, StepError::NotSent(_)) {
                        let outcome = match self.executor.reconcile(cx).await {
                            Reconciled::Applied(o) => o,
                            Reconciled::NotApplied => StepOutcome::Failed { error, request_id: None },
                            Reconciled::Unknown(reason) => StepOutcome::NeedsAttention { reason: format!("{error}; {reason}") },
                        };
                        return self.finish(claim, cx, outcome).await;
                    }
                    return self.finish(claim, cx, StepOutcome::Failed { error, request_id: None }).await;
                }
                let retry_after = match &e {
                    StepError::RetryAfter(d, _) => Some(*d),
                    _ => None,
                };
                let wait = policy.delay(cx.attempt, retry_after);
                let now = self.clock.now();
                let at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(1));
                tracing::info!(run.id = %cx.run_id, step.key = %cx.step.key, attempt = cx.attempt, wait_ms = wait.as_millis() as u64, error = %e, "Step will be retried");
                // For an at-most-once step the intent stays journalled: the next attempt
                // reads back before it sends anything.
                self.store.retry_step(claim, at, &e.to_string(), now).await
            }
        }
    }
}

/// What a step's outcome says, whatever the executor called it: a step meant to cut access
/// that was skipped with a warning did not cut it, so it failed; a step that succeeded with
/// work the plan says someone must do by hand is done with that work left.
pub fn honest(step: &PlannedStep, outcome: StepOutcome) -> StepOutcome {
    match outcome {
        StepOutcome::Skipped { reason, warning: true } if step.kind.cuts_access() => {
            StepOutcome::Failed { error: format!("not done: {reason}"), request_id: None }
        }
        StepOutcome::Succeeded { verified, request_ids, mut left } if !step.manual.is_empty() => {
            for m in &step.manual {
                if !left.contains(m) {
                    left.push(m.clone());
                }
            }
            StepOutcome::Succeeded { verified, request_ids, left }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_cut_that_did_not_happen_is_a_failure() {
        let plan = crate::testing::standard_plan();
        let disable = plan.steps.iter().find(|s| s.kind == crate::plan::StepKind::DisableSignIn).unwrap();
        let refused = StepOutcome::Skipped { reason: "synced from on-premises AD".into(), warning: true };
        assert!(matches!(honest(disable, refused), StepOutcome::Failed { error, .. } if error == "not done: synced from on-premises AD"));
        let nothing = StepOutcome::Skipped { reason: "no methods".into(), warning: false };
        assert_eq!(honest(disable, nothing.clone()), nothing, "nothing to remove is the goal state");
        let oof = plan.steps.iter().find(|s| s.kind == crate::plan::StepKind::SetOutOfOffice).unwrap();
        let amber = StepOutcome::Skipped { reason: "no manager".into(), warning: true };
        assert_eq!(honest(oof, amber.clone()), amber, "a hand-over is not an access cut");
        let mut groups = plan.steps.iter().find(|s| s.kind == crate::plan::StepKind::RemoveGroups).unwrap().clone();
        groups.manual = vec!["remove alice from Sales-AD in on-premises AD".into()];
        let done = honest(&groups, StepOutcome::done("left 3 groups", vec![]));
        assert!(done.is_warning(), "work left by hand makes the step amber");
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let p = RetryPolicy::default();
        for attempt in 1..=12 {
            let d = p.delay(attempt, None);
            let full = (1u64 << (attempt - 1).min(20)).min(100) as f64;
            assert!(d.as_secs_f64() >= full / 2.0 - 1e-9 && d.as_secs_f64() <= full, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn retry_after_is_never_undercut_and_is_clamped() {
        let p = RetryPolicy::default();
        for _ in 0..100 {
            let d = p.delay(1, Some(Duration::from_millis(2500)));
            assert!(d >= Duration::from_millis(2500) && d <= Duration::from_millis(2750), "{d:?}");
        }
        let d = p.delay(1, Some(Duration::from_secs(7200)));
        assert!(d >= p.max_retry_after && d <= p.max_retry_after.mul_f64(1.1));
    }
}
