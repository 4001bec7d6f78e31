//! The SQL behind `Store`, written once and expanded per backend.
//!
//! Kept in one file: every query is written once inside the `backend!` macro, which expands
//! it for SQLite and for Postgres; splitting the file would split that macro.

/// A query leasing the first step, in claim order, that `$filter` picks.
macro_rules! lease {
    ($filter:literal, $skip:literal) => {
        concat!(
            "UPDATE steps SET state = 'running', attempt = attempt + 1, lease_owner = $1, lease_until = $2, started_at = COALESCE(started_at, $3) WHERE id = ",
            "(SELECT id FROM steps WHERE ",
            $filter,
            " ORDER BY not_before, id LIMIT 1",
            $skip,
            ")",
            " RETURNING id, run_id, key, attempt, polls, waiting_since, intent_attempt, lockout_first"
        )
    };
}

/// The tenants with a ready step due that `$filter` also picks, in order, each found by
/// one ordered probe of an index (a loose index scan).
macro_rules! due {
    ($filter:literal) => {
        concat!(
            "WITH RECURSIVE due(tenant) AS ( ",
            "SELECT (SELECT tenant FROM steps WHERE state = 'ready'",
            $filter,
            " AND not_before <= $1 ORDER BY tenant LIMIT 1) ",
            "UNION ALL ",
            "SELECT (SELECT s.tenant FROM steps s WHERE s.state = 'ready'",
            $filter,
            " AND s.tenant > due.tenant AND s.not_before <= $1 ORDER BY s.tenant LIMIT 1) ",
            "FROM due WHERE due.tenant IS NOT NULL) ",
            "SELECT tenant FROM due WHERE tenant IS NOT NULL LIMIT 1000"
        )
    };
}

macro_rules! backend {
    (
        mod $module:ident;
        db = $Db:ty;
        begin = $begin:literal;
        audit_lock = $audit_lock:literal;
        skip_locked = $skip:literal;
        notify = $notify:literal;
    ) => {
        pub(super) mod $module {
            use chrono::{DateTime, Utc};
            use serde_json::json;
            use sqlx::{Pool, Row, Transaction};

            use crate::audit::{AuditEntry, AuditKey, Checkpoint, GENESIS, Hashed, NewAudit, canonical};
            use crate::clock::{from_ms, to_ms};
            use crate::delegations::{Coverage, Grant, Listed, Right, Scanned};
            use crate::domain::{RunId, StepKey, TenantId};
            use crate::outbox::{Event, EventKind};
            use crate::plan::{Plan, PlanHash, PlannedStep};
            use crate::policy::Approval;
            use crate::run::{RunState, StepOutcome, StepState, settle};
            use crate::store::{ApprovalEffect, Claim, DueSchedule, NewRun, Origin, Reach, Result, RunRecord, Served, StepRecord, StoreError};

            type Db = $Db;
            type Tx = Transaction<'static, Db>;

            fn corrupt(what: impl std::fmt::Display) -> StoreError {
                StoreError::Corrupt(what.to_string())
            }

            async fn begin(pool: &Pool<Db>) -> Result<Tx> {
                Ok(pool.begin_with($begin).await?)
            }

            pub async fn ping(pool: &Pool<Db>) -> Result<()> {
                sqlx::query("SELECT 1").execute(pool).await?;
                Ok(())
            }

            async fn append_audit(tx: &mut Tx, seal: Option<&AuditKey>, a: &NewAudit, now: DateTime<Utc>) -> Result<AuditEntry> {
                sqlx::query($audit_lock).execute(&mut **tx).await?;
                let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetch_optional(&mut **tx).await?;
                let (prev_seq, prev_hash) = match last {
                    Some(r) => (r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?),
                    None => (0, GENESIS.to_string()),
                };
                let seq = prev_seq + 1;
                let at_ms = to_ms(now);
                let detail = canonical(&a.detail);
                let hash = Hashed {
                    prev_hash: &prev_hash,
                    seq,
                    at_ms,
                    tenant: a.tenant.as_deref(),
                    actor: &a.actor,
                    action: &a.action,
                    run_id: a.run_id.as_deref(),
                    detail: &detail,
                }
                .hash(seal);
                sqlx::query("INSERT INTO audit (seq, at, tenant, actor, action, run_id, detail, prev_hash, hash, keyed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                    .bind(seq)
                    .bind(at_ms)
                    .bind(&a.tenant)
                    .bind(&a.actor)
                    .bind(&a.action)
                    .bind(&a.run_id)
                    .bind(&detail)
                    .bind(&prev_hash)
                    .bind(&hash)
                    .bind(i64::from(seal.is_some()))
                    .execute(&mut **tx)
                    .await?;
                Ok(AuditEntry {
                    seq,
                    at_ms,
                    tenant: a.tenant.clone(),
                    actor: a.actor.clone(),
                    action: a.action.clone(),
                    run_id: a.run_id.clone(),
                    detail,
                    prev_hash,
                    hash,
                    keyed: seal.is_some(),
                })
            }

            async fn emit(tx: &mut Tx, run_id: Option<&str>, tenant: Option<&str>, kind: &EventKind, now: DateTime<Utc>) -> Result<()> {
                let body = serde_json::to_string(kind).map_err(corrupt)?;
                sqlx::query("INSERT INTO outbox (run_id, tenant, kind, body, at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(run_id)
                    .bind(tenant)
                    .bind(kind.name())
                    .bind(body)
                    .bind(to_ms(now))
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            pub async fn audit_append(pool: &Pool<Db>, seal: Option<&AuditKey>, a: NewAudit, now: DateTime<Utc>) -> Result<AuditEntry> {
                let mut tx = begin(pool).await?;
                let e = append_audit(&mut tx, seal, &a, now).await?;
                tx.commit().await?;
                Ok(e)
            }

            pub async fn audit_only(pool: &Pool<Db>, seal: Option<&AuditKey>, a: NewAudit, event: Option<(&RunId, EventKind)>, now: DateTime<Utc>) -> Result<()> {
                let mut tx = begin(pool).await?;
                audit_only_in(&mut tx, seal, &a, event, now).await?;
                tx.commit().await?;
                Ok(())
            }

            /// A writing transaction for a batch of the `*_in` writes (SQLite's group commit).
            #[allow(dead_code)]
            pub async fn begin_batch(pool: &Pool<Db>) -> Result<Tx> {
                begin(pool).await
            }

            pub async fn audit_only_in(tx: &mut Tx, seal: Option<&AuditKey>, a: &NewAudit, event: Option<(&RunId, EventKind)>, now: DateTime<Utc>) -> Result<()> {
                append_audit(tx, seal, a, now).await?;
                if let Some((run, kind)) = event {
                    emit(tx, Some(run.as_str()), a.tenant.as_deref(), &kind, now).await?;
                }
                Ok(())
            }

            pub async fn create_run(pool: &Pool<Db>, seal: Option<&AuditKey>, run: &NewRun, now: DateTime<Utc>, audit: NewAudit) -> Result<()> {
                let now_ms = to_ms(now);
                let plan = serde_json::to_string(&run.plan).map_err(corrupt)?;
                let mut tx = begin(pool).await?;
                // Serialises run creation (and the audit append below) across processes, so
                // two requests for one person cannot both find no open run.
                sqlx::query($audit_lock).execute(&mut *tx).await?;
                if let Some(open) = open_run(&mut *tx, run.tenant.as_str(), &run.target_id).await? {
                    return Err(StoreError::AlreadyOpen(open));
                }
                sqlx::query(
                    "INSERT INTO runs (id, tenant, target_upn, target_id, target_name, requester, requester_name, state, request, snapshot, plan, plan_hash, \
                     approvals_needed, expires_at, escalate_at, start_at, created_at, updated_at, origin_platform, origin_conversation, line_manager) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17, $18, $19, $20)",
                )
                .bind(run.id.as_str())
                .bind(run.tenant.as_str())
                .bind(&run.target_upn)
                .bind(&run.target_id)
                .bind(&run.target_name)
                .bind(&run.requester)
                .bind(&run.requester_name)
                .bind(RunState::AwaitingApproval.as_str())
                .bind(&run.request)
                .bind(&run.snapshot)
                .bind(plan)
                .bind(&run.plan_hash.0)
                .bind(run.approvals_needed as i64)
                .bind(to_ms(run.expires_at))
                .bind(run.escalate_at.map(to_ms))
                .bind(run.start_at.map(to_ms))
                .bind(now_ms)
                .bind(run.origin.as_ref().map(|o| o.platform.clone()))
                .bind(run.origin.as_ref().and_then(|o| o.conversation.clone()))
                .bind(run.line_manager.as_ref().map(|m| serde_json::to_string(m).expect("json")))
                .execute(&mut *tx)
                .await?;
                for (pos, s) in run.plan.steps.iter().enumerate() {
                    let after = serde_json::to_string(&s.after).map_err(corrupt)?;
                    sqlx::query(
                        "INSERT INTO steps (run_id, key, position, after_keys, lockout, defer_days, state, tenant, lockout_first) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(run.id.as_str())
                    .bind(s.key.as_str())
                    .bind(pos as i64)
                    .bind(after)
                    .bind(i64::from(run.plan.emergency_release(s)))
                    .bind(i64::from(s.defer_days))
                    .bind(StepState::Waiting.as_str())
                    .bind(run.tenant.as_str())
                    .bind(match (s.kind.is_lockout(), run.emergency) {
                        (true, true) => EMERGENCY_LOCKOUT,
                        (true, false) => LOCKOUT_STEP,
                        (false, _) => 0,
                    })
                    .execute(&mut *tx)
                    .await?;
                }
                append_audit(&mut tx, seal, &audit, now).await?;
                emit(&mut tx, Some(run.id.as_str()), Some(run.tenant.as_str()), &EventKind::RunRequested { emergency: run.emergency }, now).await?;
                if run.emergency {
                    sqlx::query("UPDATE steps SET released = 1, not_before = $2 WHERE run_id = $1 AND lockout = 1")
                        .bind(run.id.as_str())
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?;
                    advance(&mut tx, seal, run.id.as_str(), now).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            fn decode_run(r: &<Db as sqlx::Database>::Row) -> Result<RunRecord> {
                let plan: Plan = serde_json::from_str(&r.try_get::<String, _>("plan")?).map_err(corrupt)?;
                let state: String = r.try_get("state")?;
                Ok(RunRecord {
                    id: RunId::parse(&r.try_get::<String, _>("id")?).map_err(corrupt)?,
                    tenant: TenantId::parse(&r.try_get::<String, _>("tenant")?).map_err(corrupt)?,
                    target_upn: r.try_get("target_upn")?,
                    target_id: r.try_get("target_id")?,
                    target_name: r.try_get("target_name")?,
                    requester: r.try_get("requester")?,
                    requester_name: r.try_get("requester_name")?,
                    state: RunState::parse(&state).ok_or_else(|| corrupt(format!("run state {state}")))?,
                    request: r.try_get("request")?,
                    snapshot: r.try_get("snapshot")?,
                    plan,
                    plan_hash: PlanHash(r.try_get("plan_hash")?),
                    approvals_needed: r.try_get::<i64, _>("approvals_needed")? as usize,
                    expires_at: from_ms(r.try_get("expires_at")?),
                    start_at: r.try_get::<Option<i64>, _>("start_at")?.map(from_ms),
                    approved_at: r.try_get::<Option<i64>, _>("approved_at")?.map(from_ms),
                    created_at: from_ms(r.try_get("created_at")?),
                    updated_at: from_ms(r.try_get("updated_at")?),
                    finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(from_ms),
                    reason: r.try_get("reason")?,
                    version: r.try_get("version")?,
                    origin: r
                        .try_get::<Option<String>, _>("origin_platform")?
                        .map(|platform| Ok::<_, StoreError>(Origin { platform, conversation: r.try_get("origin_conversation")? }))
                        .transpose()?,
                    line_manager: r.try_get::<Option<String>, _>("line_manager")?.map(|j| serde_json::from_str(&j)).transpose().map_err(corrupt)?,
                })
            }

            pub async fn get_run(pool: &Pool<Db>, id: &RunId) -> Result<RunRecord> {
                let row = sqlx::query("SELECT * FROM runs WHERE id = $1").bind(id.as_str()).fetch_optional(pool).await?;
                decode_run(&row.ok_or_else(|| StoreError::NotFound(id.to_string()))?)
            }

            async fn open_run<'e>(ex: impl sqlx::Executor<'e, Database = Db>, tenant: &str, target_id: &str) -> Result<Option<RunId>> {
                let row = sqlx::query(
                    "SELECT id FROM runs WHERE tenant = $1 AND target_id = $2 \
                     AND state NOT IN ('completed', 'completed_with_warnings', 'failed', 'cancelled', 'rejected', 'expired') \
                     ORDER BY created_at LIMIT 1",
                )
                .bind(tenant)
                .bind(target_id)
                .fetch_optional(ex)
                .await?;
                row.map(|r| RunId::parse(&r.try_get::<String, _>("id")?).map_err(corrupt)).transpose()
            }

            /// The run for this person that has not ended, if there is one.
            pub async fn open_run_for(pool: &Pool<Db>, tenant: &TenantId, target_id: &str) -> Result<Option<RunId>> {
                open_run(pool, tenant.as_str(), target_id).await
            }

            pub async fn list_runs(pool: &Pool<Db>, tenant: Option<&TenantId>, limit: i64) -> Result<Vec<RunRecord>> {
                let rows = match tenant {
                    Some(t) => sqlx::query("SELECT * FROM runs WHERE tenant = $1 ORDER BY created_at DESC, id LIMIT $2").bind(t.as_str()).bind(limit).fetch_all(pool).await?,
                    None => sqlx::query("SELECT * FROM runs ORDER BY created_at DESC, id LIMIT $1").bind(limit).fetch_all(pool).await?,
                };
                rows.iter().map(decode_run).collect()
            }

            pub async fn steps(pool: &Pool<Db>, id: &RunId) -> Result<Vec<StepRecord>> {
                let rows = sqlx::query("SELECT * FROM steps WHERE run_id = $1 ORDER BY position").bind(id.as_str()).fetch_all(pool).await?;
                rows.iter()
                    .map(|r| {
                        let state: String = r.try_get("state")?;
                        let outcome: Option<String> = r.try_get("outcome")?;
                        Ok(StepRecord {
                            key: StepKey::parse(&r.try_get::<String, _>("key")?).map_err(corrupt)?,
                            state: StepState::parse(&state).ok_or_else(|| corrupt(format!("step state {state}")))?,
                            attempt: r.try_get("attempt")?,
                            not_before: from_ms(r.try_get("not_before")?),
                            started_at: r.try_get::<Option<i64>, _>("started_at")?.map(from_ms),
                            finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(from_ms),
                            outcome: outcome.map(|o| serde_json::from_str(&o)).transpose().map_err(corrupt)?,
                            intent_at: r.try_get::<Option<i64>, _>("intent_at")?.map(from_ms),
                            last_error: r.try_get("last_error")?,
                            polls: r.try_get("polls")?,
                            waiting_since: r.try_get::<Option<i64>, _>("waiting_since")?.map(from_ms),
                        })
                    })
                    .collect()
            }

            pub async fn approvals(pool: &Pool<Db>, id: &RunId) -> Result<Vec<Approval>> {
                let rows = sqlx::query("SELECT * FROM approvals WHERE run_id = $1 ORDER BY at, approver").bind(id.as_str()).fetch_all(pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok(Approval {
                            approver: r.try_get("approver")?,
                            approver_name: r.try_get("approver_name")?,
                            plan_hash: PlanHash(r.try_get("plan_hash")?),
                            at: from_ms(r.try_get("at")?),
                        })
                    })
                    .collect()
            }

            /// Bumps the run's version if it still is `version` (and, optionally, in `state`).
            async fn fence_run(tx: &mut Tx, id: &RunId, version: i64, now: DateTime<Utc>) -> Result<()> {
                let done = sqlx::query("UPDATE runs SET version = version + 1, updated_at = $3 WHERE id = $1 AND version = $2")
                    .bind(id.as_str())
                    .bind(version)
                    .bind(to_ms(now))
                    .execute(&mut **tx)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::Conflict) } else { Ok(()) }
            }

            async fn set_state(tx: &mut Tx, id: &str, tenant: &str, to: RunState, now: DateTime<Utc>) -> Result<()> {
                let finished = to.is_terminal().then(|| to_ms(now));
                sqlx::query("UPDATE runs SET state = $2, updated_at = $3, finished_at = COALESCE($4, finished_at), version = version + 1 WHERE id = $1")
                    .bind(id)
                    .bind(to.as_str())
                    .bind(to_ms(now))
                    .bind(finished)
                    .execute(&mut **tx)
                    .await?;
                emit(tx, Some(id), Some(tenant), &EventKind::RunStateChanged { state: to }, now).await
            }

            /// Releases every step of an approved run and lets the ready ones go.
            async fn release(tx: &mut Tx, seal: Option<&AuditKey>, id: &str, tenant: &str, now: DateTime<Utc>) -> Result<()> {
                sqlx::query("UPDATE runs SET state = $2, approved_at = $3, updated_at = $3, version = version + 1 WHERE id = $1")
                    .bind(id)
                    .bind(RunState::Approved.as_str())
                    .bind(to_ms(now))
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE steps SET released = 1, not_before = $2 + defer_days * 86400000 WHERE run_id = $1 AND released = 0")
                    .bind(id)
                    .bind(to_ms(now))
                    .execute(&mut **tx)
                    .await?;
                emit(tx, Some(id), Some(tenant), &EventKind::RunApproved, now).await?;
                advance(tx, seal, id, now).await
            }

            /// Moves waiting steps whose prerequisites ended well to ready, then settles the
            /// run's state if nothing more can happen.
            async fn advance(tx: &mut Tx, seal: Option<&AuditKey>, id: &str, now: DateTime<Utc>) -> Result<()> {
                let run = sqlx::query("SELECT state, tenant FROM runs WHERE id = $1").bind(id).fetch_one(&mut **tx).await?;
                let run_state: String = run.try_get("state")?;
                let tenant: String = run.try_get("tenant")?;
                let run_state = RunState::parse(&run_state).ok_or_else(|| corrupt("run state"))?;
                if run_state.is_terminal() {
                    return Ok(());
                }
                let rows = sqlx::query("SELECT id, key, state, released, after_keys, outcome FROM steps WHERE run_id = $1 ORDER BY position")
                    .bind(id)
                    .fetch_all(&mut **tx)
                    .await?;
                struct S {
                    id: i64,
                    key: String,
                    state: StepState,
                    released: bool,
                    after: Vec<String>,
                    warning: bool,
                }
                let mut steps = Vec::with_capacity(rows.len());
                for r in &rows {
                    let state: String = r.try_get("state")?;
                    let outcome: Option<String> = r.try_get("outcome")?;
                    let warning = match outcome {
                        Some(o) => serde_json::from_str::<StepOutcome>(&o).map_err(corrupt)?.is_warning(),
                        None => false,
                    };
                    steps.push(S {
                        id: r.try_get("id")?,
                        key: r.try_get("key")?,
                        state: StepState::parse(&state).ok_or_else(|| corrupt("step state"))?,
                        released: r.try_get::<i64, _>("released")? == 1,
                        after: serde_json::from_str(&r.try_get::<String, _>("after_keys")?).map_err(corrupt)?,
                        warning,
                    });
                }
                let done: std::collections::HashSet<String> =
                    steps.iter().filter(|s| s.state.lets_dependents_run()).map(|s| s.key.clone()).collect();
                let mut readied = false;
                for s in steps.iter_mut() {
                    if s.state == StepState::Waiting && s.released && s.after.iter().all(|k| done.contains(k)) {
                        sqlx::query("UPDATE steps SET state = $2 WHERE id = $1 AND state = $3")
                            .bind(s.id)
                            .bind(StepState::Ready.as_str())
                            .bind(StepState::Waiting.as_str())
                            .execute(&mut **tx)
                            .await?;
                        s.state = StepState::Ready;
                        readied = true;
                    }
                }
                if readied && !$notify.is_empty() {
                    // Delivered at commit, to every process listening.
                    sqlx::query($notify).execute(&mut **tx).await?;
                }
                if !run_state.is_active() {
                    return Ok(());
                }
                let states: Vec<(StepState, bool)> = steps.iter().map(|s| (s.state, s.warning)).collect();
                match settle(&states, false) {
                    Some(to) => {
                        if to == RunState::Failed {
                            let blocked = StepOutcome::Skipped { reason: "not run: a step it depends on did not succeed".into(), warning: true };
                            sqlx::query("UPDATE steps SET state = $2, outcome = $3, finished_at = $4 WHERE run_id = $1 AND state = $5")
                                .bind(id)
                                .bind(StepState::Cancelled.as_str())
                                .bind(serde_json::to_string(&blocked).map_err(corrupt)?)
                                .bind(to_ms(now))
                                .bind(StepState::Waiting.as_str())
                                .execute(&mut **tx)
                                .await?;
                        }
                        if to != run_state {
                            set_state(tx, id, &tenant, to, now).await?;
                            let a = NewAudit::new("system:engine", "run.settled").tenant(&tenant).run(id).detail(json!({ "state": to.as_str() }));
                            append_audit(tx, seal, &a, now).await?;
                        }
                    }
                    None if run_state == RunState::NeedsAttention => set_state(tx, id, &tenant, RunState::Running, now).await?,
                    None => {}
                }
                Ok(())
            }

            pub async fn record_approval(pool: &Pool<Db>, seal: Option<&AuditKey>, id: &RunId, version: i64, ap: &Approval, effect: ApprovalEffect, audit: NewAudit) -> Result<RunState> {
                let mut tx = begin(pool).await?;
                let run = sqlx::query("SELECT state, tenant, start_at FROM runs WHERE id = $1").bind(id.as_str()).fetch_optional(&mut *tx).await?;
                let run = run.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
                let tenant: String = run.try_get("tenant")?;
                let start_at: Option<i64> = run.try_get("start_at")?;
                if run.try_get::<String, _>("state")? != RunState::AwaitingApproval.as_str() {
                    return Err(StoreError::Conflict);
                }
                fence_run(&mut tx, id, version, ap.at).await?;
                sqlx::query("INSERT INTO approvals (run_id, approver, approver_name, plan_hash, at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(id.as_str())
                    .bind(&ap.approver)
                    .bind(&ap.approver_name)
                    .bind(&ap.plan_hash.0)
                    .bind(to_ms(ap.at))
                    .execute(&mut *tx)
                    .await?;
                append_audit(&mut tx, seal, &audit, ap.at).await?;
                let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM approvals WHERE run_id = $1 AND plan_hash = $2")
                    .bind(id.as_str())
                    .bind(&ap.plan_hash.0)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("n")?;
                let needed: i64 = sqlx::query("SELECT approvals_needed FROM runs WHERE id = $1").bind(id.as_str()).fetch_one(&mut *tx).await?.try_get(0)?;
                emit(&mut tx, Some(id.as_str()), Some(&tenant), &EventKind::ApprovalRecorded { approver: ap.approver.clone(), have: count as usize, need: needed as usize }, ap.at).await?;
                let state = match effect {
                    ApprovalEffect::Counted => RunState::AwaitingApproval,
                    ApprovalEffect::Release => match start_at {
                        Some(at) if at > to_ms(ap.at) => {
                            set_state(&mut tx, id.as_str(), &tenant, RunState::Scheduled, ap.at).await?;
                            emit(&mut tx, Some(id.as_str()), Some(&tenant), &EventKind::RunScheduled { start_at_ms: at }, ap.at).await?;
                            RunState::Scheduled
                        }
                        _ => {
                            release(&mut tx, seal, id.as_str(), &tenant, ap.at).await?;
                            RunState::Approved
                        }
                    },
                };
                tx.commit().await?;
                Ok(state)
            }

            /// `close`: the terminal state and the reason given for it.
            pub async fn close_run(pool: &Pool<Db>, seal: Option<&AuditKey>, id: &RunId, version: i64, close: (RunState, Option<&str>), now: DateTime<Utc>, audit: NewAudit) -> Result<()> {
                let (to, reason) = close;
                let mut tx = begin(pool).await?;
                let run = get_in(&mut tx, id).await?;
                if run.0.is_terminal() {
                    return Err(StoreError::Conflict);
                }
                fence_run(&mut tx, id, version, now).await?;
                sqlx::query("UPDATE runs SET reason = $2 WHERE id = $1").bind(id.as_str()).bind(reason).execute(&mut *tx).await?;
                let cancelled = StepOutcome::Skipped { reason: format!("not run: the run was {}", to.label()), warning: false };
                sqlx::query("UPDATE steps SET state = $2, outcome = $3, finished_at = $4 WHERE run_id = $1 AND state IN ('waiting', 'ready')")
                    .bind(id.as_str())
                    .bind(StepState::Cancelled.as_str())
                    .bind(serde_json::to_string(&cancelled).map_err(corrupt)?)
                    .bind(to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                set_state(&mut tx, id.as_str(), &run.1, to, now).await?;
                let kind = match to {
                    RunState::Rejected => EventKind::RunRejected { by: audit.actor.clone(), reason: reason.unwrap_or_default().to_string() },
                    RunState::Expired => EventKind::RunExpired,
                    _ => EventKind::RunCancelled { by: audit.actor.clone() },
                };
                emit(&mut tx, Some(id.as_str()), Some(&run.1), &kind, now).await?;
                append_audit(&mut tx, seal, &audit, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_in(tx: &mut Tx, id: &RunId) -> Result<(RunState, String)> {
                let r = sqlx::query("SELECT state, tenant FROM runs WHERE id = $1").bind(id.as_str()).fetch_optional(&mut **tx).await?;
                let r = r.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
                let s: String = r.try_get("state")?;
                Ok((RunState::parse(&s).ok_or_else(|| corrupt("run state"))?, r.try_get("tenant")?))
            }

            pub async fn start_scheduled(pool: &Pool<Db>, seal: Option<&AuditKey>, id: &RunId, now: DateTime<Utc>, audit: NewAudit) -> Result<bool> {
                let mut tx = begin(pool).await?;
                let (state, tenant) = get_in(&mut tx, id).await?;
                if state != RunState::Scheduled {
                    return Ok(false);
                }
                // The conditional update is the fire key: of two schedulers, one wins.
                let won = sqlx::query("UPDATE runs SET state = $2 WHERE id = $1 AND state = $3")
                    .bind(id.as_str())
                    .bind(RunState::Approved.as_str())
                    .bind(RunState::Scheduled.as_str())
                    .execute(&mut *tx)
                    .await?;
                if won.rows_affected() == 0 {
                    return Ok(false);
                }
                release(&mut tx, seal, id.as_str(), &tenant, now).await?;
                append_audit(&mut tx, seal, &audit, now).await?;
                tx.commit().await?;
                Ok(true)
            }

            pub async fn resolve_step(pool: &Pool<Db>, seal: Option<&AuditKey>, id: &RunId, key: &StepKey, outcome: &StepOutcome, now: DateTime<Utc>, audit: NewAudit) -> Result<bool> {
                let mut tx = begin(pool).await?;
                let (_, tenant) = get_in(&mut tx, id).await?;
                let done = sqlx::query("UPDATE steps SET state = $3, outcome = $4, finished_at = $5 WHERE run_id = $1 AND key = $2 AND state = $6")
                    .bind(id.as_str())
                    .bind(key.as_str())
                    .bind(outcome.state().as_str())
                    .bind(serde_json::to_string(outcome).map_err(corrupt)?)
                    .bind(to_ms(now))
                    .bind(StepState::NeedsAttention.as_str())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                emit(&mut tx, Some(id.as_str()), Some(&tenant), &EventKind::StepFinished { key: key.to_string(), outcome: outcome.clone() }, now).await?;
                append_audit(&mut tx, seal, &audit, now).await?;
                advance(&mut tx, seal, id.as_str(), now).await?;
                tx.commit().await?;
                Ok(true)
            }

            /// Up to `max` ready steps in one transaction: when many steps are ready, one
            /// commit (one sync to disk) leases a batch instead of one step. Lapsed leases
            /// come first, then an emergency run's lockout steps, then other lockout steps,
            /// then the rest, as far as `served.reach` allows; each of these is taken one
            /// tenant at a time in turn, starting after the tenant `served` says was served
            /// last, so one tenant's backlog never holds up another's (not even its lockouts).
            pub async fn claim_many(pool: &Pool<Db>, worker: &str, now: DateTime<Utc>, lease: chrono::Duration, max: usize, served: Served<'_>) -> Result<Vec<Claim>> {
                let now_ms = to_ms(now);
                let (lockout, general) = match served.reach {
                    Reach::Emergency => (None, None),
                    Reach::Lockout => (Some(served.lockout), None),
                    Reach::Any => (Some(served.lockout), Some(served.general)),
                };
                // An idle poll only reads. Taking SQLite's write lock to find nothing would
                // stall every other process for a transaction per poll, and forever if this
                // process is stopped inside it.
                let claimable = match served.reach {
                    Reach::Any => sqlx::query(
                        "SELECT 1 WHERE EXISTS (SELECT 1 FROM steps WHERE state = 'running' AND lease_until < $1) \
                         OR EXISTS (SELECT 1 FROM steps WHERE state = 'ready' AND not_before <= $1)",
                    ),
                    Reach::Lockout => sqlx::query("SELECT 1 WHERE EXISTS (SELECT 1 FROM steps WHERE state = 'ready' AND lockout_first >= 1 AND not_before <= $1)"),
                    Reach::Emergency => sqlx::query("SELECT 1 WHERE EXISTS (SELECT 1 FROM steps WHERE state = 'ready' AND lockout_first = 2 AND not_before <= $1)"),
                }
                .bind(now_ms)
                .fetch_optional(pool)
                .await?;
                if claimable.is_none() {
                    return Ok(Vec::new());
                }
                let lease_until = now_ms + lease.num_milliseconds();
                let mut tx = begin(pool).await?;
                let mut claims = Vec::new();
                while general.is_some() && claims.len() < max {
                    let Some(c) = take(&mut tx, LAPSED, worker, lease_until, now_ms, None, now).await? else { break };
                    claims.push(c);
                }
                let mut turns = [(DUE_EMERGENCY, EMERGENCY, Some(served.lockout)), (DUE_LOCKOUT, LOCKOUT, lockout), (DUE, OF_TENANT, general)]
                .into_iter();
                // In order of urgency; the first kind `reach` excludes ends the walk, as
                // every later one is excluded too.
                while let Some((due, sql, Some(after))) = turns.next() {
                    if claims.len() >= max {
                        break;
                    }
                    // The tenants with work due, each found by one ordered probe of an
                    // index (a loose index scan), so the cost follows the tenants, not the
                    // backlog.
                    let rows = sqlx::query(due).bind(now_ms).fetch_all(&mut *tx).await?;
                    let mut tenants: Vec<String> = rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<std::result::Result<_, _>>()?;
                    // Round-robin: start with the first tenant after the one served last.
                    let start = tenants.iter().position(|t| t.as_str() > after).unwrap_or(0);
                    tenants.rotate_left(start);
                    while claims.len() < max && !tenants.is_empty() {
                        let mut i = 0;
                        while i < tenants.len() && claims.len() < max {
                            match take(&mut tx, sql, worker, lease_until, now_ms, Some(&tenants[i]), now).await? {
                                Some(c) => {
                                    claims.push(c);
                                    i += 1;
                                }
                                None => {
                                    tenants.remove(i);
                                }
                            }
                        }
                    }
                }
                if claims.is_empty() {
                    return Ok(claims);
                }
                tx.commit().await?;
                Ok(claims)
            }

            /// The tenants with a ready step due, in order: any step (`DUE`), a lockout step
            /// (`DUE_LOCKOUT`), an emergency run's lockout step (`DUE_EMERGENCY`).
            const DUE: &str = due!("");
            const DUE_LOCKOUT: &str = due!(" AND lockout_first = 1");
            const DUE_EMERGENCY: &str = due!(" AND lockout_first = 2");
            /// `steps.lockout_first`: 0 for most steps; a lockout step goes before them,
            /// and an emergency run's lockout step before every other.
            const LOCKOUT_STEP: i64 = 1;
            const EMERGENCY_LOCKOUT: i64 = 2;

            // Lease one step: a lapsed lease, or the oldest step of one tenant ($4) of a
            // priority. Each pick is an ordered walk of an index that stops at its first row.
            const LAPSED: &str = lease!("state = 'running' AND lease_until < $3", $skip);
            const EMERGENCY: &str = lease!("state = 'ready' AND lockout_first = 2 AND tenant = $4 AND not_before <= $3", $skip);
            const LOCKOUT: &str = lease!("state = 'ready' AND lockout_first = 1 AND tenant = $4 AND not_before <= $3", $skip);
            const OF_TENANT: &str = lease!("state = 'ready' AND tenant = $4 AND not_before <= $3", $skip);

            /// Leases the step `sql` picks, if any, and says so in the outbox.
            async fn take(tx: &mut Tx, sql: &'static str, worker: &str, lease_until: i64, now_ms: i64, tenant: Option<&str>, now: DateTime<Utc>) -> Result<Option<Claim>> {
                let mut q = sqlx::query(sql).bind(worker).bind(lease_until).bind(now_ms);
                if let Some(t) = tenant {
                    q = q.bind(t);
                }
                let Some(row) = q.fetch_optional(&mut **tx).await? else { return Ok(None) };
                let step_id: i64 = row.try_get("id")?;
                let run_id: String = row.try_get("run_id")?;
                let key: String = row.try_get("key")?;
                let attempt: i64 = row.try_get("attempt")?;
                let polls: i64 = row.try_get("polls")?;
                let intent: Option<i64> = row.try_get("intent_attempt")?;
                let priority: i64 = row.try_get("lockout_first")?;
                let run = sqlx::query("SELECT state, tenant, target_id, plan FROM runs WHERE id = $1").bind(&run_id).fetch_one(&mut **tx).await?;
                let tenant: String = run.try_get("tenant")?;
                let plan: Plan = serde_json::from_str(&run.try_get::<String, _>("plan")?).map_err(corrupt)?;
                let step: PlannedStep = plan.steps.into_iter().find(|s| s.key.as_str() == key).ok_or_else(|| corrupt(format!("step {key} not in plan")))?;
                if run.try_get::<String, _>("state")? == RunState::Approved.as_str() {
                    set_state(tx, &run_id, &tenant, RunState::Running, now).await?;
                    emit(tx, Some(&run_id), Some(&tenant), &EventKind::RunStarted, now).await?;
                }
                emit(tx, Some(&run_id), Some(&tenant), &EventKind::StepStarted { key: key.clone(), attempt: attempt - polls }, now).await?;
                Ok(Some(Claim {
                    step_id,
                    run_id: RunId::parse(&run_id).map_err(corrupt)?,
                    tenant: TenantId::parse(&tenant).map_err(corrupt)?,
                    target_id: run.try_get("target_id")?,
                    attempt,
                    polls,
                    waiting_since: row.try_get::<Option<i64>, _>("waiting_since")?.map(from_ms),
                    unconfirmed_intent: intent.is_some(),
                    emergency: priority == EMERGENCY_LOCKOUT,
                    step,
                }))
            }

            /// Runs a fenced update of the claimed step; refuses if the lease moved on.
            async fn fenced(tx: &mut Tx, claim: &Claim, done: u64) -> Result<()> {
                if done == 1 {
                    return Ok(());
                }
                let current: Option<i64> = sqlx::query("SELECT attempt FROM steps WHERE id = $1").bind(claim.step_id).fetch_optional(&mut **tx).await?.map(|r| r.try_get(0)).transpose()?;
                Err(StoreError::LeaseLost { ours: claim.attempt, current: current.unwrap_or(-1) })
            }

            pub async fn next_due(pool: &Pool<Db>) -> Result<Option<DateTime<Utc>>> {
                let at: Option<i64> = sqlx::query_scalar("SELECT MIN(not_before) FROM steps WHERE state = 'ready'").fetch_one(pool).await?;
                Ok(at.map(from_ms))
            }

            pub async fn heartbeat(pool: &Pool<Db>, claim: &Claim, now: DateTime<Utc>, lease: chrono::Duration) -> Result<()> {
                let mut tx = begin(pool).await?;
                let done = sqlx::query("UPDATE steps SET lease_until = $3 WHERE id = $1 AND attempt = $2 AND state = 'running'")
                    .bind(claim.step_id)
                    .bind(claim.attempt)
                    .bind(to_ms(now) + lease.num_milliseconds())
                    .execute(&mut *tx)
                    .await?;
                fenced(&mut tx, claim, done.rows_affected()).await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn journal_intent(pool: &Pool<Db>, claim: &Claim, now: DateTime<Utc>) -> Result<()> {
                let mut tx = begin(pool).await?;
                let done = sqlx::query("UPDATE steps SET intent_at = $3, intent_attempt = $2 WHERE id = $1 AND attempt = $2 AND state = 'running'")
                    .bind(claim.step_id)
                    .bind(claim.attempt)
                    .bind(to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                fenced(&mut tx, claim, done.rows_affected()).await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn clear_intent(pool: &Pool<Db>, claim: &Claim) -> Result<()> {
                let mut tx = begin(pool).await?;
                let done = sqlx::query("UPDATE steps SET intent_at = NULL, intent_attempt = NULL WHERE id = $1 AND attempt = $2 AND state = 'running'")
                    .bind(claim.step_id)
                    .bind(claim.attempt)
                    .execute(&mut *tx)
                    .await?;
                fenced(&mut tx, claim, done.rows_affected()).await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn finish_step(pool: &Pool<Db>, seal: Option<&AuditKey>, claim: &Claim, outcome: &StepOutcome, now: DateTime<Utc>) -> Result<()> {
                let mut tx = begin(pool).await?;
                finish_step_in(&mut tx, seal, claim, outcome, now).await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn finish_step_in(tx: &mut Tx, seal: Option<&AuditKey>, claim: &Claim, outcome: &StepOutcome, now: DateTime<Utc>) -> Result<()> {
                let done = sqlx::query(
                    "UPDATE steps SET state = $3, outcome = $4, finished_at = $5, lease_owner = NULL, lease_until = NULL \
                     WHERE id = $1 AND attempt = $2 AND state = 'running'",
                )
                .bind(claim.step_id)
                .bind(claim.attempt)
                .bind(outcome.state().as_str())
                .bind(serde_json::to_string(outcome).map_err(corrupt)?)
                .bind(to_ms(now))
                .execute(&mut **tx)
                .await?;
                fenced(tx, claim, done.rows_affected()).await?;
                let run = claim.run_id.as_str();
                let tenant = claim.tenant.as_str();
                emit(tx, Some(run), Some(tenant), &EventKind::StepFinished { key: claim.step.key.to_string(), outcome: outcome.clone() }, now).await?;
                let a = NewAudit::new("system:engine", "step.finished")
                    .tenant(tenant)
                    .run(run)
                    .detail(json!({ "step": claim.step.key, "attempt": claim.attempt, "outcome": outcome }));
                append_audit(tx, seal, &a, now).await?;
                advance(tx, seal, run, now).await?;
                Ok(())
            }

            pub async fn retry_step(pool: &Pool<Db>, claim: &Claim, at: DateTime<Utc>, error: &str, now: DateTime<Utc>) -> Result<()> {
                let mut tx = begin(pool).await?;
                retry_step_in(&mut tx, claim, at, error, now).await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn retry_step_in(tx: &mut Tx, claim: &Claim, at: DateTime<Utc>, error: &str, now: DateTime<Utc>) -> Result<()> {
                let done = sqlx::query(
                    "UPDATE steps SET state = 'ready', not_before = $3, last_error = $4, lease_owner = NULL, lease_until = NULL \
                     WHERE id = $1 AND attempt = $2 AND state = 'running'",
                )
                .bind(claim.step_id)
                .bind(claim.attempt)
                .bind(to_ms(at))
                .bind(error)
                .execute(&mut **tx)
                .await?;
                fenced(tx, claim, done.rows_affected()).await?;
                let kind = EventKind::StepRetrying { key: claim.step.key.to_string(), attempt: claim.counted(), error: error.to_string(), retry_in_ms: (at - now).num_milliseconds() };
                emit(tx, Some(claim.run_id.as_str()), Some(claim.tenant.as_str()), &kind, now).await?;
                Ok(())
            }

            pub async fn poll_step(pool: &Pool<Db>, claim: &Claim, at: DateTime<Utc>, waiting_for: &str, now: DateTime<Utc>) -> Result<()> {
                let mut tx = begin(pool).await?;
                poll_step_in(&mut tx, claim, at, waiting_for, now).await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn poll_step_in(tx: &mut Tx, claim: &Claim, at: DateTime<Utc>, waiting_for: &str, now: DateTime<Utc>) -> Result<()> {
                let done = sqlx::query(
                    "UPDATE steps SET state = 'ready', not_before = $3, last_error = $4, polls = polls + 1, waiting_since = COALESCE(waiting_since, $5), \
                     lease_owner = NULL, lease_until = NULL WHERE id = $1 AND attempt = $2 AND state = 'running'",
                )
                .bind(claim.step_id)
                .bind(claim.attempt)
                .bind(to_ms(at))
                .bind(waiting_for)
                .bind(to_ms(now))
                .execute(&mut **tx)
                .await?;
                fenced(tx, claim, done.rows_affected()).await?;
                let kind = EventKind::StepWaiting { key: claim.step.key.to_string(), waiting_for: waiting_for.to_string(), look_again_in_ms: (at - now).num_milliseconds() };
                emit(tx, Some(claim.run_id.as_str()), Some(claim.tenant.as_str()), &kind, now).await?;
                Ok(())
            }

            pub async fn save_learned_rate(pool: &Pool<Db>, scope: &str, lane: &str, per_s: f64, now: DateTime<Utc>) -> Result<()> {
                sqlx::query(
                    "INSERT INTO learned_rates (scope, lane, per_s, updated_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (scope, lane) DO UPDATE SET per_s = excluded.per_s, updated_ms = excluded.updated_ms",
                )
                .bind(scope)
                .bind(lane)
                .bind(per_s)
                .bind(to_ms(now))
                .execute(pool)
                .await?;
                Ok(())
            }

            pub async fn learned_rates(pool: &Pool<Db>, lane: &str) -> Result<Vec<(String, f64)>> {
                let rows = sqlx::query("SELECT scope, per_s FROM learned_rates WHERE lane = $1 ORDER BY scope").bind(lane).fetch_all(pool).await?;
                rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
            }

            pub async fn due_scheduled(pool: &Pool<Db>, now: DateTime<Utc>) -> Result<Vec<RunId>> {
                let rows = sqlx::query("SELECT id FROM runs WHERE state = 'scheduled' AND start_at <= $1 ORDER BY start_at LIMIT 500").bind(to_ms(now)).fetch_all(pool).await?;
                rows.iter().map(|r| RunId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)).collect()
            }

            pub async fn due_expiries(pool: &Pool<Db>, now: DateTime<Utc>) -> Result<Vec<(RunId, i64)>> {
                let rows = sqlx::query("SELECT id, version FROM runs WHERE state = 'awaiting_approval' AND expires_at <= $1 LIMIT 500").bind(to_ms(now)).fetch_all(pool).await?;
                rows.iter().map(|r| Ok((RunId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?, r.try_get(1)?))).collect()
            }

            pub async fn escalate_due(pool: &Pool<Db>, seal: Option<&AuditKey>, now: DateTime<Utc>) -> Result<Vec<RunId>> {
                let rows = sqlx::query("SELECT id, tenant FROM runs WHERE state = 'awaiting_approval' AND escalate_at <= $1 LIMIT 500").bind(to_ms(now)).fetch_all(pool).await?;
                let mut out = Vec::new();
                for r in rows {
                    let id: String = r.try_get(0)?;
                    let tenant: String = r.try_get(1)?;
                    let mut tx = begin(pool).await?;
                    let won = sqlx::query("UPDATE runs SET escalate_at = NULL WHERE id = $1 AND escalate_at IS NOT NULL").bind(&id).execute(&mut *tx).await?;
                    if won.rows_affected() == 1 {
                        emit(&mut tx, Some(&id), Some(&tenant), &EventKind::ApprovalEscalated, now).await?;
                        let a = NewAudit::new("system:scheduler", "approval.escalated").tenant(&tenant).run(&id);
                        append_audit(&mut tx, seal, &a, now).await?;
                        tx.commit().await?;
                        out.push(RunId::parse(&id).map_err(corrupt)?);
                    }
                }
                Ok(out)
            }

            pub async fn upsert_schedule(pool: &Pool<Db>, name: &str, cron: &str, next_at: DateTime<Utc>) -> Result<()> {
                // A changed expression takes effect from its next fire time; an unchanged
                // one keeps its pending occurrence.
                sqlx::query(
                    "INSERT INTO schedules (name, cron, next_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, next_at = excluded.next_at WHERE schedules.cron <> excluded.cron",
                )
                .bind(name)
                .bind(cron)
                .bind(to_ms(next_at))
                .execute(pool)
                .await?;
                Ok(())
            }

            pub async fn due_schedules(pool: &Pool<Db>, now: DateTime<Utc>) -> Result<Vec<DueSchedule>> {
                let rows = sqlx::query("SELECT name, cron, next_at FROM schedules WHERE next_at <= $1 ORDER BY next_at").bind(to_ms(now)).fetch_all(pool).await?;
                rows.iter().map(|r| Ok(DueSchedule { name: r.try_get(0)?, cron: r.try_get(1)?, next_at: from_ms(r.try_get(2)?) })).collect()
            }

            pub async fn fire_schedule(pool: &Pool<Db>, due: &DueSchedule, next_at: DateTime<Utc>, by: &str, now: DateTime<Utc>) -> Result<bool> {
                let mut tx = begin(pool).await?;
                let fire_ms = to_ms(due.next_at);
                let won = sqlx::query("INSERT INTO schedule_fires (name, fire_at, fired_by, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                    .bind(&due.name)
                    .bind(fire_ms)
                    .bind(by)
                    .bind(to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE schedules SET next_at = $3 WHERE name = $1 AND next_at = $2").bind(&due.name).bind(fire_ms).bind(to_ms(next_at)).execute(&mut *tx).await?;
                let fired = won.rows_affected() == 1;
                if fired {
                    emit(&mut tx, None, None, &EventKind::ScheduleFired { name: due.name.clone(), fire_at_ms: fire_ms }, now).await?;
                }
                tx.commit().await?;
                Ok(fired)
            }

            pub async fn events_after(pool: &Pool<Db>, seq: i64, limit: i64) -> Result<Vec<Event>> {
                let rows = sqlx::query("SELECT seq, run_id, tenant, body, at FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2").bind(seq).bind(limit).fetch_all(pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok(Event {
                            seq: r.try_get("seq")?,
                            run_id: r.try_get("run_id")?,
                            tenant: r.try_get("tenant")?,
                            at: from_ms(r.try_get("at")?),
                            kind: serde_json::from_str(&r.try_get::<String, _>("body")?).map_err(corrupt)?,
                        })
                    })
                    .collect()
            }

            pub async fn lease_consumer(pool: &Pool<Db>, consumer: &str, owner: &str, now: DateTime<Utc>, ttl: chrono::Duration) -> Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO consumer_leases (consumer, owner, until_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (consumer) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
                     WHERE consumer_leases.owner = excluded.owner OR consumer_leases.until_ms < $4",
                )
                .bind(consumer)
                .bind(owner)
                .bind(to_ms(now + ttl))
                .bind(to_ms(now))
                .execute(pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            pub async fn first_delivery(pool: &Pool<Db>, source: &str, key: &str, now: DateTime<Utc>, ttl: chrono::Duration) -> Result<bool> {
                let mut tx = begin(pool).await?;
                let first = first_delivery_in(&mut tx, source, key, now, ttl).await?;
                tx.commit().await?;
                Ok(first)
            }

            pub async fn first_delivery_in(tx: &mut Tx, source: &str, key: &str, now: DateTime<Utc>, ttl: chrono::Duration) -> Result<bool> {
                // A key whose time ran out may be used again.
                let done = sqlx::query(
                    "INSERT INTO deliveries (source, key, expires_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (source, key) DO UPDATE SET expires_ms = excluded.expires_ms WHERE deliveries.expires_ms < $4",
                )
                .bind(source)
                .bind(key)
                .bind(to_ms(now + ttl))
                .bind(to_ms(now))
                .execute(&mut **tx)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            pub async fn save_draft(pool: &Pool<Db>, key: &str, draft: &str, expires: DateTime<Utc>) -> Result<()> {
                let mut tx = begin(pool).await?;
                save_draft_in(&mut tx, key, draft, expires).await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn save_draft_in(tx: &mut Tx, key: &str, draft: &str, expires: DateTime<Utc>) -> Result<()> {
                sqlx::query(
                    "INSERT INTO chat_drafts (key, draft, expires_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET draft = excluded.draft, expires_ms = excluded.expires_ms",
                )
                .bind(key)
                .bind(draft)
                .bind(to_ms(expires))
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            pub async fn draft(pool: &Pool<Db>, key: &str, now: DateTime<Utc>) -> Result<Option<String>> {
                let row = sqlx::query("SELECT draft FROM chat_drafts WHERE key = $1 AND expires_ms >= $2").bind(key).bind(to_ms(now)).fetch_optional(pool).await?;
                Ok(row.map(|r| r.try_get("draft")).transpose()?)
            }

            pub async fn delete_draft(pool: &Pool<Db>, key: &str) -> Result<()> {
                let mut tx = begin(pool).await?;
                delete_draft_in(&mut tx, key).await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn delete_draft_in(tx: &mut Tx, key: &str) -> Result<()> {
                sqlx::query("DELETE FROM chat_drafts WHERE key = $1").bind(key).execute(&mut **tx).await?;
                Ok(())
            }

            pub async fn purge_expired(pool: &Pool<Db>, now: DateTime<Utc>) -> Result<u64> {
                let a = sqlx::query("DELETE FROM deliveries WHERE expires_ms < $1").bind(to_ms(now)).execute(pool).await?.rows_affected();
                let b = sqlx::query("DELETE FROM chat_drafts WHERE expires_ms < $1").bind(to_ms(now)).execute(pool).await?.rows_affected();
                Ok(a + b)
            }

            pub async fn release_consumer(pool: &Pool<Db>, consumer: &str, owner: &str) -> Result<()> {
                sqlx::query("UPDATE consumer_leases SET until_ms = 0 WHERE consumer = $1 AND owner = $2").bind(consumer).bind(owner).execute(pool).await?;
                Ok(())
            }

            pub async fn count_runs(pool: &Pool<Db>) -> Result<Vec<(String, i64)>> {
                let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM runs GROUP BY state").fetch_all(pool).await?;
                rows.iter().map(|r| Ok((r.try_get("state")?, r.try_get("n")?))).collect()
            }

            pub async fn save_message(pool: &Pool<Db>, run: &str, surface: &str, kind: &str, message: &str) -> Result<()> {
                sqlx::query("INSERT INTO chat_messages (run_id, surface, kind, message) VALUES ($1, $2, $3, $4) ON CONFLICT (run_id, surface, kind) DO UPDATE SET message = excluded.message")
                    .bind(run)
                    .bind(surface)
                    .bind(kind)
                    .bind(message)
                    .execute(pool)
                    .await?;
                Ok(())
            }

            pub async fn message(pool: &Pool<Db>, run: &str, surface: &str, kind: &str) -> Result<Option<String>> {
                let r = sqlx::query("SELECT message FROM chat_messages WHERE run_id = $1 AND surface = $2 AND kind = $3")
                    .bind(run)
                    .bind(surface)
                    .bind(kind)
                    .fetch_optional(pool)
                    .await?;
                Ok(r.map(|r| r.try_get(0)).transpose()?)
            }

            pub async fn save_conversation(pool: &Pool<Db>, platform: &str, key: &str, reference: &str, now_ms: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO chat_conversations (platform, key, reference, updated_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (platform, key) DO UPDATE SET reference = excluded.reference, updated_ms = excluded.updated_ms",
                )
                .bind(platform)
                .bind(key)
                .bind(reference)
                .bind(now_ms)
                .execute(pool)
                .await?;
                Ok(())
            }

            pub async fn conversation(pool: &Pool<Db>, platform: &str, key: &str) -> Result<Option<String>> {
                let r = sqlx::query("SELECT reference FROM chat_conversations WHERE platform = $1 AND key = $2")
                    .bind(platform)
                    .bind(key)
                    .fetch_optional(pool)
                    .await?;
                Ok(r.map(|r| r.try_get(0)).transpose()?)
            }

            pub async fn cursor(pool: &Pool<Db>, consumer: &str) -> Result<i64> {
                let r = sqlx::query("SELECT seq FROM outbox_cursors WHERE consumer = $1").bind(consumer).fetch_optional(pool).await?;
                Ok(r.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
            }

            pub async fn advance_cursor(pool: &Pool<Db>, consumer: &str, from: i64, to: i64) -> Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO outbox_cursors (consumer, seq) SELECT $1, $3 WHERE $2 = 0 \
                     ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq WHERE outbox_cursors.seq = $2",
                )
                .bind(consumer)
                .bind(from)
                .bind(to)
                .execute(pool)
                .await?;
                if done.rows_affected() == 1 {
                    return Ok(true);
                }
                let moved = sqlx::query("UPDATE outbox_cursors SET seq = $3 WHERE consumer = $1 AND seq = $2").bind(consumer).bind(from).bind(to).execute(pool).await?;
                Ok(moved.rows_affected() == 1)
            }

            fn decode_audit(r: &<Db as sqlx::Database>::Row) -> Result<AuditEntry> {
                Ok(AuditEntry {
                    seq: r.try_get("seq")?,
                    at_ms: r.try_get("at")?,
                    tenant: r.try_get("tenant")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    run_id: r.try_get("run_id")?,
                    detail: r.try_get("detail")?,
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                    keyed: r.try_get::<i64, _>("keyed")? != 0,
                })
            }

            pub async fn audit_entries(pool: &Pool<Db>, after: i64, limit: i64) -> Result<Vec<AuditEntry>> {
                let rows = sqlx::query("SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2").bind(after).bind(limit).fetch_all(pool).await?;
                rows.iter().map(decode_audit).collect()
            }

            pub async fn first_sealed(pool: &Pool<Db>) -> Result<Option<i64>> {
                let row = sqlx::query("SELECT seq FROM audit WHERE keyed = 1 ORDER BY seq LIMIT 1").fetch_optional(pool).await?;
                Ok(row.map(|r| r.try_get("seq")).transpose()?)
            }

            pub async fn audit_for_run(pool: &Pool<Db>, run: &str) -> Result<Vec<AuditEntry>> {
                let rows = sqlx::query("SELECT * FROM audit WHERE run_id = $1 ORDER BY seq").bind(run).fetch_all(pool).await?;
                rows.iter().map(decode_audit).collect()
            }

            pub async fn checkpoint(pool: &Pool<Db>, now: DateTime<Utc>) -> Result<Option<Checkpoint>> {
                let mut tx = begin(pool).await?;
                sqlx::query($audit_lock).execute(&mut *tx).await?;
                let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *tx).await?;
                let Some(last) = last else {
                    return Ok(None);
                };
                let cp = Checkpoint { seq: last.try_get("seq")?, hash: last.try_get("hash")?, at_ms: to_ms(now) };
                sqlx::query("INSERT INTO audit_checkpoints (seq, hash, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(cp.seq)
                    .bind(&cp.hash)
                    .bind(cp.at_ms)
                    .execute(&mut *tx)
                    .await?;
                emit(&mut tx, None, None, &EventKind::AuditCheckpoint { seq: cp.seq, hash: cp.hash.clone() }, now).await?;
                tx.commit().await?;
                Ok(Some(cp))
            }

            pub async fn index_listed(pool: &Pool<Db>, tenant: &str, listed: &[Listed], now: DateTime<Utc>) -> Result<()> {
                let now_ms = to_ms(now);
                let mut tx = begin(pool).await?;
                sqlx::query("INSERT INTO index_tenants (tenant, listed_ms) VALUES ($1, $2) ON CONFLICT (tenant) DO UPDATE SET listed_ms = excluded.listed_ms")
                    .bind(tenant)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM index_grants WHERE tenant = $1 AND source = 'listing'").bind(tenant).execute(&mut *tx).await?;
                for l in listed {
                    let mailbox = l.mailbox.to_lowercase();
                    sqlx::query(
                        "INSERT INTO index_mailboxes (tenant, mailbox, listed_ms) VALUES ($1, $2, $3) \
                         ON CONFLICT (tenant, mailbox) DO UPDATE SET listed_ms = excluded.listed_ms",
                    )
                    .bind(tenant)
                    .bind(&mailbox)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                    for t in &l.send_on_behalf {
                        sqlx::query(
                            "INSERT INTO index_grants (tenant, trustee, mailbox, right_name, source) VALUES ($1, $2, $3, $4, 'listing') ON CONFLICT DO NOTHING",
                        )
                        .bind(tenant)
                        .bind(t.key())
                        .bind(&mailbox)
                        .bind(Right::SendOnBehalf.as_str())
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                // Mailboxes gone from the listing, and what was known of them.
                sqlx::query("DELETE FROM index_grants WHERE tenant = $1 AND mailbox IN (SELECT mailbox FROM index_mailboxes WHERE tenant = $1 AND listed_ms < $2)")
                    .bind(tenant)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM index_mailboxes WHERE tenant = $1 AND listed_ms < $2").bind(tenant).bind(now_ms).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn index_due(pool: &Pool<Db>, tenant: &str, scanned_before: DateTime<Utc>, limit: usize) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT mailbox FROM index_mailboxes WHERE tenant = $1 AND (scanned_ms IS NULL OR scanned_ms < $2) \
                     ORDER BY COALESCE(scanned_ms, 0), mailbox LIMIT $3",
                )
                .bind(tenant)
                .bind(to_ms(scanned_before))
                .bind(limit as i64)
                .fetch_all(pool)
                .await?;
                rows.iter().map(|r| Ok(r.try_get("mailbox")?)).collect()
            }

            pub async fn index_scanned(pool: &Pool<Db>, tenant: &str, scans: &[Scanned], now: DateTime<Utc>) -> Result<()> {
                let mut tx = begin(pool).await?;
                for s in scans {
                    let mailbox = s.mailbox.to_lowercase();
                    sqlx::query("UPDATE index_mailboxes SET scanned_ms = $3, calendar = $4 WHERE tenant = $1 AND mailbox = $2")
                        .bind(tenant)
                        .bind(&mailbox)
                        .bind(to_ms(now))
                        .bind(&s.calendar)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM index_grants WHERE tenant = $1 AND mailbox = $2 AND source = 'scan'").bind(tenant).bind(&mailbox).execute(&mut *tx).await?;
                    for (trustee, right) in &s.grants {
                        sqlx::query("INSERT INTO index_grants (tenant, trustee, mailbox, right_name, source) VALUES ($1, $2, $3, $4, 'scan') ON CONFLICT DO NOTHING")
                            .bind(tenant)
                            .bind(trustee.key())
                            .bind(&mailbox)
                            .bind(right.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            pub async fn index_coverage(pool: &Pool<Db>, tenant: &str) -> Result<Coverage> {
                let listed = sqlx::query("SELECT listed_ms FROM index_tenants WHERE tenant = $1").bind(tenant).fetch_optional(pool).await?;
                let counts = sqlx::query("SELECT COUNT(*) AS n, COUNT(scanned_ms) AS scanned, MIN(scanned_ms) AS oldest FROM index_mailboxes WHERE tenant = $1")
                    .bind(tenant)
                    .fetch_one(pool)
                    .await?;
                Ok(Coverage {
                    mailboxes: counts.try_get::<i64, _>("n")? as usize,
                    scanned: counts.try_get::<i64, _>("scanned")? as usize,
                    oldest: counts.try_get::<Option<i64>, _>("oldest")?.map(from_ms),
                    listed: listed.map(|r| r.try_get::<i64, _>("listed_ms")).transpose()?.map(from_ms),
                })
            }

            pub async fn index_grants_of(pool: &Pool<Db>, tenant: &str, trustees: &[String]) -> Result<Vec<Grant>> {
                let mut out = Vec::new();
                for trustee in trustees {
                    let rows = sqlx::query(
                        "SELECT g.mailbox, g.right_name, m.calendar FROM index_grants g \
                         LEFT JOIN index_mailboxes m ON m.tenant = g.tenant AND m.mailbox = g.mailbox \
                         WHERE g.tenant = $1 AND g.trustee = $2 ORDER BY g.mailbox, g.right_name",
                    )
                    .bind(tenant)
                    .bind(trustee)
                    .fetch_all(pool)
                    .await?;
                    for r in rows {
                        let right = Right::parse(&r.try_get::<String, _>("right_name")?).ok_or_else(|| corrupt("an unknown right in the delegation index"))?;
                        let calendar: Option<String> = r.try_get("calendar")?;
                        let g = Grant { mailbox: r.try_get("mailbox")?, right, calendar: calendar.filter(|_| right == Right::Calendar) };
                        if !out.contains(&g) {
                            out.push(g);
                        }
                    }
                }
                Ok(out)
            }

            pub async fn checkpoints(pool: &Pool<Db>) -> Result<Vec<Checkpoint>> {
                let rows = sqlx::query("SELECT seq, hash, at FROM audit_checkpoints ORDER BY seq").fetch_all(pool).await?;
                rows.iter().map(|r| Ok(Checkpoint { seq: r.try_get(0)?, hash: r.try_get(1)?, at_ms: r.try_get(2)? })).collect()
            }
        }
    };
}

backend! {
    mod sqlite;
    db = sqlx::Sqlite;
    // Take the write lock up front: a read that later upgrades to a write could fail
    // with SQLITE_BUSY without waiting.
    begin = "BEGIN IMMEDIATE";
    audit_lock = "SELECT 1";
    // One writer at a time: nothing to skip.
    skip_locked = "";
    // One machine: other processes find new work by polling.
    notify = "";
}

backend! {
    mod postgres;
    db = sqlx::Postgres;
    begin = "BEGIN";
    // One appender at a time keeps the chain linear across processes.
    audit_lock = "SELECT pg_advisory_xact_lock(7242031)";
    // Claims in other processes pass over rows already being leased.
    skip_locked = " FOR UPDATE SKIP LOCKED";
    // Steps made ready wake the workers of every process (`Store::connect` listens).
    notify = "SELECT pg_notify('offboard_steps_ready', '')";
}
