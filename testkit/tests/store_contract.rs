//! One contract, two backends: every test runs against SQLite and a fresh Postgres
//! database.
//!
//! Kept in one file: it is one contract, which a backend passes whole or not at all.

use std::sync::Arc;

use chrono::Duration;
use offboard_core::audit::{NewAudit, Tamper};
use offboard_core::clock::{Clock, ManualClock};
use offboard_core::outbox::EventKind;
use offboard_core::plan::StepKind;
use offboard_core::policy::TenantPolicy;
use offboard_core::request::{DeleteUser, Options};
use offboard_core::run::{RunState, StepOutcome, StepState};
use offboard_core::store::{Db, Reach, Store, StoreError};
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::*;
use serde_json::json;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at_ymd_hms(2026, 6, 1, 9, 0, 0))
}

fn lockout() -> Options {
    Options { disable_sign_in: true, revoke_sessions: true, remove_mfa: true, hide_from_gal: true, ..Options::default() }
}

fn ok() -> StepOutcome {
    StepOutcome::done("read back", vec!["req-1".into()])
}

async fn for_each_backend<F, Fut>(f: F)
where
    F: Fn(Store, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in TestDb::all().await {
        let store = db.store().await;
        f(store.clone(), db.backend).await;
        store.close().await;
        db.cleanup().await;
    }
}

async fn state_of(store: &Store, run: &offboard_core::domain::RunId, key: StepKind) -> StepState {
    store.steps(run).await.unwrap().into_iter().find(|s| s.key == key.key()).unwrap().state
}

#[tokio::test]
async fn a_run_is_created_awaiting_approval_with_audit_and_event() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let run = svc.request(&requester(), request("alice@contoso.com", lockout())).await.unwrap();
        assert_eq!(run.state, RunState::AwaitingApproval, "{backend}");
        assert_eq!(run.target_name, "Alice Example");
        assert_eq!(run.expires_at, c.now() + Duration::hours(24));
        let steps = store.steps(&run.id).await.unwrap();
        assert_eq!(steps.len(), 4);
        assert!(steps.iter().all(|s| s.state == StepState::Waiting));
        let audit = store.audit_entries(0, 100).await.unwrap();
        assert_eq!(audit.last().unwrap().action, "run.requested");
        let events = store.events_after(0, 100).await.unwrap();
        assert_eq!(events[0].kind, EventKind::RunRequested { emergency: false });
        assert!(store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().is_none(), "nothing runs before approval");
        let listed = store.list_runs(Some(&tenant_id()), 10).await.unwrap();
        assert_eq!(listed[0].id, run.id);
        svc.request(&requester(), request("user2@contoso.com", lockout())).await.unwrap();
        assert_eq!(store.count_runs().await.unwrap(), vec![(RunState::AwaitingApproval, 2)], "{backend}");
    })
    .await;
}

#[tokio::test]
async fn approval_releases_steps_in_dependency_order_until_completed() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let run = approved_run(&svc, "alice@contoso.com", lockout()).await;
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Approved, "{backend}");
        let first = store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().unwrap();
        assert_eq!(first.step.kind, StepKind::DisableSignIn, "only the root is ready");
        assert!(store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().is_none(), "dependents wait");
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Running);
        store.finish_step(&first, &ok(), c.now()).await.unwrap();
        let mut next = Vec::new();
        while let Some(claim) = store.claim("w", c.now(), Duration::seconds(30)).await.unwrap() {
            next.push(claim);
        }
        let kinds: Vec<StepKind> = next.iter().map(|c| c.step.kind).collect();
        assert_eq!(kinds.len(), 2, "revoke and MFA run side by side: {kinds:?}");
        for claim in &next {
            store.finish_step(claim, &ok(), c.now()).await.unwrap();
        }
        let last = store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().unwrap();
        assert_eq!(last.step.kind, StepKind::HideFromGal);
        store.finish_step(&last, &StepOutcome::Skipped { reason: "already hidden".into(), warning: false }, c.now()).await.unwrap();
        let done = store.run(&run.id).await.unwrap();
        assert_eq!(done.state, RunState::Completed);
        assert!(done.finished_at.is_some());
        let kinds: Vec<String> = store.events_after(0, 1000).await.unwrap().iter().map(|e| e.kind.name().to_string()).collect();
        for k in ["run_requested", "approval_recorded", "run_approved", "run_started", "step_started", "step_finished", "run_state_changed"] {
            assert!(kinds.contains(&k.to_string()), "{k} missing from {kinds:?}");
        }
        assert!(store.verify_audit(&[]).await.unwrap().is_ok());
    })
    .await;
}

#[tokio::test]
async fn a_batch_claim_leases_distinct_ready_steps_up_to_its_size() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let mut runs = Vec::new();
        for user in ["alice@contoso.com", "user2@contoso.com", "user3@contoso.com"] {
            runs.push(approved_run(&svc, user, lockout()).await);
        }
        let lease = Duration::seconds(30);
        // Each run's root is ready: a batch of two, then another worker gets the third only.
        let two = store.claim_many("a", c.now(), lease, 2).await.unwrap();
        let rest = store.claim_many("b", c.now(), lease, 10).await.unwrap();
        assert_eq!((two.len(), rest.len()), (2, 1), "{backend}");
        let mut ids: Vec<i64> = two.iter().chain(&rest).map(|c| c.step_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "{backend}: no step is leased twice");
        assert!(two.iter().chain(&rest).all(|c| c.step.kind == StepKind::DisableSignIn && c.attempt == 1));
        for run in &runs {
            assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Running, "{backend}");
        }
        assert!(store.claim_many("c", c.now(), lease, 10).await.unwrap().is_empty(), "{backend}: live leases are not stolen");
        // Lapsed leases come back together, each as its second attempt.
        c.advance(Duration::seconds(31));
        let again = store.claim_many("c", c.now(), lease, 10).await.unwrap();
        assert_eq!(again.len(), 3, "{backend}");
        assert!(again.iter().all(|c| c.attempt == 2), "{backend}");
        let started = store.events_after(0, 1000).await.unwrap().iter().filter(|e| e.kind.name() == "step_started").count();
        assert_eq!(started, 6, "{backend}: one event per lease");
    })
    .await;
}

#[tokio::test]
async fn an_idle_claim_does_not_wait_for_the_sqlite_write_lock() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let c = clock();
    let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
    let pending = svc.request(&requester(), request("alice@contoso.com", lockout())).await.unwrap();
    let Db::Sqlite(pool) = store.db() else { unreachable!() };
    // Another writer (another process, say) holds the lock.
    let holder = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let idle = tokio::time::timeout(std::time::Duration::from_secs(5), store.claim_many("w", c.now(), Duration::seconds(30), 4)).await;
    assert!(matches!(idle, Ok(Ok(ref v)) if v.is_empty()), "nothing is ready: the claim reads and returns, {idle:?}");
    holder.rollback().await.unwrap();
    svc.approve(&admin1(), &pending.id, &pending.plan_hash).await.unwrap();
    if pending.approvals_needed > 1 {
        svc.approve(&admin2(), &pending.id, &pending.plan_hash).await.unwrap();
    }
    assert_eq!(store.claim_many("w", c.now(), Duration::seconds(30), 4).await.unwrap().len(), 1, "once ready, the root is claimed");
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_stale_worker_cannot_write_after_its_lease_was_taken() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let run = approved_run(&svc, "alice@contoso.com", lockout()).await;
        let stale = store.claim("a", c.now(), Duration::seconds(5)).await.unwrap().unwrap();
        assert!(store.claim("b", c.now(), Duration::seconds(5)).await.unwrap().is_none(), "a live lease is not stolen");
        c.advance(Duration::seconds(6));
        let fresh = store.claim("b", c.now(), Duration::seconds(5)).await.unwrap().unwrap();
        assert_eq!((fresh.step.key.clone(), fresh.attempt), (stale.step.key.clone(), 2), "{backend}");
        for result in [
            store.finish_step(&stale, &ok(), c.now()).await,
            store.heartbeat(&stale, c.now(), Duration::seconds(5)).await,
            store.journal_intent(&stale, c.now()).await,
            store.retry_step(&stale, c.now(), "x", c.now()).await,
        ] {
            assert!(matches!(result, Err(StoreError::LeaseLost { ours: 1, current: 2 })), "{backend}: {result:?}");
        }
        store.finish_step(&fresh, &ok(), c.now()).await.unwrap();
        assert_eq!(state_of(&store, &run.id, StepKind::DisableSignIn).await, StepState::Succeeded);
    })
    .await;
}

#[tokio::test]
async fn an_unconfirmed_intent_survives_into_the_next_attempt() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let run = approved_run(&svc, "alice@contoso.com", Options { reset_password: true, ..Options::default() }).await;
        let first = store.claim("a", c.now(), Duration::seconds(5)).await.unwrap().unwrap();
        assert_eq!(first.step.kind, StepKind::ResetPassword);
        assert!(!first.unconfirmed_intent);
        store.journal_intent(&first, c.now()).await.unwrap();
        // The worker dies here: no result.
        c.advance(Duration::seconds(6));
        let second = store.claim("b", c.now(), Duration::seconds(5)).await.unwrap().unwrap();
        assert!(second.unconfirmed_intent, "{backend}: the next attempt must read back first");
        store.clear_intent(&second).await.unwrap();
        assert!(store.steps(&run.id).await.unwrap()[0].intent_at.is_none());
    })
    .await;
}

#[tokio::test]
async fn retries_wait_for_their_time() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        approved_run(&svc, "alice@contoso.com", Options { disable_sign_in: true, ..Options::default() }).await;
        let claim = store.claim("a", c.now(), Duration::seconds(5)).await.unwrap().unwrap();
        store.retry_step(&claim, c.now() + Duration::seconds(10), "throttled", c.now()).await.unwrap();
        c.advance(Duration::seconds(9));
        assert!(store.claim("a", c.now(), Duration::seconds(5)).await.unwrap().is_none(), "{backend}");
        c.advance(Duration::seconds(2));
        let again = store.claim("a", c.now(), Duration::seconds(5)).await.unwrap().unwrap();
        assert_eq!(again.attempt, 2);
    })
    .await;
}

#[tokio::test]
async fn a_failure_blocks_dependents_and_fails_the_run() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let run = approved_run(&svc, "alice@contoso.com", lockout()).await;
        let first = store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().unwrap();
        store.finish_step(&first, &StepOutcome::Failed { error: "Forbidden".into(), request_id: Some("r1".into()) }, c.now()).await.unwrap();
        let r = store.run(&run.id).await.unwrap();
        assert_eq!(r.state, RunState::Failed, "{backend}");
        let steps = store.steps(&run.id).await.unwrap();
        assert!(steps[1..].iter().all(|s| s.state == StepState::Cancelled), "{steps:?}");
    })
    .await;
}

#[tokio::test]
async fn needs_attention_holds_the_run_until_a_human_resolves_it() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let run = approved_run(&svc, "alice@contoso.com", Options { reset_password: true, hide_from_gal: true, ..Options::default() }).await;
        let first = store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().unwrap();
        store.finish_step(&first, &StepOutcome::NeedsAttention { reason: "cannot confirm".into() }, c.now()).await.unwrap();
        assert!(store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().is_none(), "what follows the lockout waits for it");
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::NeedsAttention, "{backend}: never green while unconfirmed");
        assert!(svc.resolve_step(&requester(), &run.id, &StepKind::ResetPassword.key(), true, "checked").await.is_err(), "managers cannot resolve");
        svc.resolve_step(&admin1(), &run.id, &StepKind::ResetPassword.key(), true, "checked the sign-in logs").await.unwrap();
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Running);
        let hide = store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().unwrap();
        store.finish_step(&hide, &ok(), c.now()).await.unwrap();
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Completed);
    })
    .await;
}

#[tokio::test]
async fn cancel_stops_what_has_not_started_and_is_fenced_by_version() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let run = approved_run(&svc, "alice@contoso.com", lockout()).await;
        let stale_version = store.run(&run.id).await.unwrap().version;
        let running = store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().unwrap();
        svc.cancel(&admin1(), &run.id).await.unwrap();
        let r = store.run(&run.id).await.unwrap();
        assert_eq!(r.state, RunState::Cancelled, "{backend}");
        assert!(store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().is_none());
        // The step that was in flight still records what it did.
        store.finish_step(&running, &ok(), c.now()).await.unwrap();
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Cancelled);
        let again = store.close_run(&run.id, stale_version, RunState::Cancelled, None, c.now(), NewAudit::new("cli:x", "run.cancelled")).await;
        assert!(matches!(again, Err(StoreError::Conflict)));
        assert!(svc.cancel(&viewer(), &run.id).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn emergency_lockout_runs_before_approval_and_the_rest_waits() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let policy = TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() };
        let svc = service(store.clone(), c.clone(), 3, policy);
        let mut req = request("alice@contoso.com", lockout());
        req.emergency = true;
        assert!(svc.request(&requester(), req.clone()).await.is_err(), "managers cannot take the emergency path");
        let run = svc.request(&admin1(), req).await.unwrap();
        let mut ran = Vec::new();
        while let Some(claim) = store.claim("w", c.now(), Duration::seconds(30)).await.unwrap() {
            ran.push(claim.step.kind);
            store.finish_step(&claim, &ok(), c.now()).await.unwrap();
        }
        assert_eq!(ran, vec![StepKind::DisableSignIn, StepKind::RevokeSessions, StepKind::RemoveMfaMethods], "{backend}");
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::AwaitingApproval);
        assert_eq!(state_of(&store, &run.id, StepKind::HideFromGal).await, StepState::Waiting);
        svc.approve(&admin2(), &run.id, &run.plan_hash).await.unwrap();
        let rest = store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().unwrap();
        assert_eq!(rest.step.kind, StepKind::HideFromGal);
    })
    .await;
}

#[tokio::test]
async fn scheduled_runs_start_once_and_deferred_steps_wait() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let mut req = request("alice@contoso.com", Options { disable_sign_in: true, delete_user: Some(DeleteUser { defer_days: 7 }), ..Options::default() });
        req.schedule = offboard_core::request::Schedule::At {
            local: chrono::NaiveDate::from_ymd_opt(2026, 6, 2).unwrap().and_hms_opt(18, 0, 0).unwrap(),
            tz: "Europe/London".into(),
        };
        let run = svc.request(&requester(), req).await.unwrap();
        assert_eq!(run.approvals_needed, 2, "delete user is high risk");
        svc.approve(&admin1(), &run.id, &run.plan_hash).await.unwrap();
        svc.approve(&admin2(), &run.id, &run.plan_hash).await.unwrap();
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Scheduled, "{backend}");
        assert!(store.due_scheduled(c.now()).await.unwrap().is_empty());
        c.set(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 2, 17, 0, 0).unwrap()); // 18:00 BST
        assert_eq!(store.due_scheduled(c.now()).await.unwrap(), vec![run.id.clone()]);
        assert!(store.start_scheduled(&run.id, c.now(), NewAudit::new("system:a", "run.started")).await.unwrap());
        assert!(!store.start_scheduled(&run.id, c.now(), NewAudit::new("system:b", "run.started")).await.unwrap(), "a second scheduler loses");
        let disable = store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().unwrap();
        store.finish_step(&disable, &ok(), c.now()).await.unwrap();
        assert!(store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().is_none(), "deletion is deferred 7 days");
        c.advance(Duration::days(7));
        let delete = store.claim("w", c.now(), Duration::seconds(30)).await.unwrap().unwrap();
        assert_eq!(delete.step.kind, StepKind::DeleteUser);
    })
    .await;
}

#[tokio::test]
async fn cron_fire_keys_and_outbox_cursors_are_single_use() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        store.upsert_schedule("nightly", "0 0 2 * * *", c.now()).await.unwrap();
        let due = store.due_schedules(c.now()).await.unwrap();
        assert_eq!(due.len(), 1, "{backend}");
        assert!(store.fire_schedule(&due[0], c.now() + Duration::days(1), "a", c.now()).await.unwrap());
        assert!(!store.fire_schedule(&due[0], c.now() + Duration::days(1), "b", c.now()).await.unwrap(), "the same occurrence fires once");
        assert!(store.due_schedules(c.now()).await.unwrap().is_empty());

        assert_eq!(store.cursor("slack").await.unwrap(), 0);
        assert!(store.advance_cursor("slack", 0, 5).await.unwrap());
        assert!(!store.advance_cursor("slack", 0, 7).await.unwrap(), "a second consumer instance loses");
        assert!(store.advance_cursor("slack", 5, 9).await.unwrap());
        assert_eq!(store.cursor("slack").await.unwrap(), 9);
    })
    .await;
}

async fn tamper(store: &Store, sql: &str) {
    match store.db() {
        Db::Sqlite(p) => {
            sqlx::query("DROP TRIGGER IF EXISTS audit_no_update").execute(p).await.unwrap();
            sqlx::query("DROP TRIGGER IF EXISTS audit_no_delete").execute(p).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(p).await.unwrap();
        }
        Db::Postgres(p) => {
            sqlx::query("ALTER TABLE audit DISABLE TRIGGER audit_no_change").execute(p).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(p).await.unwrap();
        }
    }
}

#[tokio::test]
async fn the_audit_log_refuses_changes_and_names_each_tampered_entry() {
    let cases: &[(&str, &str, i64)] = &[
        ("modify", "UPDATE audit SET actor = 'cli:mallory' WHERE seq = 4", 4),
        ("delete", "DELETE FROM audit WHERE seq = 3", 3),
        ("reorder", "UPDATE audit SET seq = CASE seq WHEN 5 THEN 6 WHEN 6 THEN 5 END + 100 WHERE seq IN (5, 6)", 5),
        ("truncate", "DELETE FROM audit WHERE seq > 7", 8),
        (
            "insert",
            "INSERT INTO audit (seq, at, tenant, actor, action, run_id, detail, prev_hash, hash) \
             SELECT 11, at, tenant, 'cli:mallory', 'run.approved', run_id, detail, hash, hash FROM audit WHERE seq = 10",
            11,
        ),
    ];
    for (kind, sql, named) in cases {
        for db in TestDb::all().await {
            let store = db.store().await;
            let c = clock();
            for i in 0..10 {
                store.audit(NewAudit::new("slack:U1", "test.entry").detail(json!({ "i": i })), c.now()).await.unwrap();
            }
            store.checkpoint(c.now()).await.unwrap();
            assert!(store.verify_audit(&[]).await.unwrap().is_ok());
            let refused = match store.db() {
                Db::Sqlite(p) => sqlx::query("UPDATE audit SET actor = 'x' WHERE seq = 1").execute(p).await.is_err(),
                Db::Postgres(p) => sqlx::query("DELETE FROM audit WHERE seq = 1").execute(p).await.is_err(),
            };
            assert!(refused, "{}: the audit table must refuse changes", db.backend);
            tamper(&store, sql).await;
            if *kind == "reorder" {
                tamper(&store, "UPDATE audit SET seq = seq - 100 WHERE seq > 100").await;
            }
            let verdict = store.verify_audit(&[]).await.unwrap();
            let err: Tamper = verdict.expect_err(kind);
            assert_eq!(err.seq(), *named, "{} {kind}: {err}", db.backend);
            store.close().await;
            db.cleanup().await;
        }
    }
}

#[tokio::test]
async fn approvals_bind_to_the_plan_they_saw() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let run = svc.request(&requester(), request("alice@contoso.com", lockout())).await.unwrap();
        let other = svc.request(&requester(), request("user2@contoso.com", lockout())).await.unwrap();
        assert_ne!(run.plan_hash, other.plan_hash);
        let wrong = svc.approve(&admin1(), &run.id, &other.plan_hash).await;
        assert!(wrong.unwrap_err().to_string().contains("plan changed"), "{backend}");
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::AwaitingApproval);
        let refusals: Vec<String> = store.audit_entries(0, 100).await.unwrap().into_iter().map(|e| e.action).collect();
        assert!(refusals.contains(&"approval.refused".to_string()), "refusals are audited");
    })
    .await;
}

/// One process at a time drives an outbox consumer; another takes over when the lease runs
/// out.
#[tokio::test]
async fn consumer_leases_have_one_owner_at_a_time() {
    for db in TestDb::all().await {
        let store = db.store().await;
        let t0 = chrono::Utc::now();
        let ttl = chrono::Duration::seconds(30);
        assert!(store.lease_consumer("chat:slack", "a", t0, ttl).await.unwrap(), "{}", db.backend);
        assert!(!store.lease_consumer("chat:slack", "b", t0 + chrono::Duration::seconds(5), ttl).await.unwrap(), "{}", db.backend);
        assert!(store.lease_consumer("chat:slack", "a", t0 + chrono::Duration::seconds(10), ttl).await.unwrap(), "the owner renews");
        assert!(store.lease_consumer("notify:x", "b", t0, ttl).await.unwrap(), "consumers are independent");
        assert!(!store.lease_consumer("chat:slack", "b", t0 + chrono::Duration::seconds(39), ttl).await.unwrap());
        assert!(store.lease_consumer("chat:slack", "b", t0 + chrono::Duration::seconds(41), ttl).await.unwrap(), "taken over after expiry");
        assert!(!store.lease_consumer("chat:slack", "a", t0 + chrono::Duration::seconds(42), ttl).await.unwrap());
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_released_lease_is_free_at_once() {
    for db in TestDb::all().await {
        let store = db.store().await;
        let t0 = chrono::Utc::now();
        let ttl = chrono::Duration::seconds(30);
        assert!(store.lease_consumer("chat:slack", "a", t0, ttl).await.unwrap());
        store.release_consumer("chat:slack", "b").await.unwrap();
        assert!(!store.lease_consumer("chat:slack", "b", t0, ttl).await.unwrap(), "only the owner releases");
        store.release_consumer("chat:slack", "a").await.unwrap();
        assert!(store.lease_consumer("chat:slack", "b", t0, ttl).await.unwrap(), "{}", db.backend);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_person_has_one_open_run_even_when_two_requests_race() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        // Two front ends on one database, asking at the same moment.
        let a = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let b = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let (first, second) = (requester(), admin1());
        let (x, y) = tokio::join!(a.request(&first, request("alice@contoso.com", lockout())), b.request(&second, request("alice@contoso.com", lockout())));
        let (won, lost) = match (x, y) {
            (Ok(r), Err(e)) | (Err(e), Ok(r)) => (r, e),
            other => panic!("{backend}: exactly one request wins: {other:?}"),
        };
        match lost {
            offboard_core::service::ServiceError::AlreadyOpen { run, state, .. } => {
                assert_eq!(run, won.id, "{backend}");
                assert_eq!(state, RunState::AwaitingApproval);
            }
            e => panic!("{backend}: {e}"),
        }
        assert_eq!(store.open_run_for(&tenant_id(), &won.target_id).await.unwrap(), Some(won.id.clone()));
        // Once it ends, the person may be offboarded again.
        let audit = NewAudit::new("test", "run.cancelled");
        store.close_run(&won.id, won.version, RunState::Cancelled, None, c.now(), audit).await.unwrap();
        assert_eq!(store.open_run_for(&tenant_id(), &won.target_id).await.unwrap(), None);
        a.request(&requester(), request("alice@contoso.com", lockout())).await.unwrap();
    })
    .await;
}

/// A fake Exchange for the delegation index: `n` mailboxes, one of which grants the
/// leaver FullAccess and shares its (German) calendar; counts what it is asked.
struct Mailboxes {
    n: usize,
    scanned: std::sync::Mutex<Vec<String>>,
    listings: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl offboard_core::delegations::MailboxIndexSource for Mailboxes {
    async fn list_mailboxes(
        &self,
        _: &offboard_core::domain::TenantId,
    ) -> Result<Vec<offboard_core::delegations::Listed>, offboard_core::snapshot::DiscoveryError> {
        use offboard_core::delegations::{Listed, Trustee};
        self.listings.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok((0..self.n)
            .map(|i| Listed {
                mailbox: format!("Box{i}@contoso.com"),
                send_on_behalf: if i == 1 { vec![Trustee::Address("alice@contoso.com".into())] } else { vec![] },
            })
            .collect())
    }

    async fn scan_mailboxes(
        &self,
        _: &offboard_core::domain::TenantId,
        mailboxes: &[String],
    ) -> Result<Vec<offboard_core::delegations::Scanned>, offboard_core::snapshot::DiscoveryError> {
        use offboard_core::delegations::{Right, Scanned, Trustee};
        self.scanned.lock().unwrap().extend(mailboxes.iter().cloned());
        Ok(mailboxes
            .iter()
            .map(|m| {
                let grants = if m == "box7@contoso.com" {
                    vec![(Trustee::Address("Alice@contoso.com".into()), Right::FullAccess), (Trustee::Name("Alice Example".into()), Right::Calendar)]
                } else {
                    vec![(Trustee::Address("bob@contoso.com".into()), Right::SendAs)]
                };
                Scanned { mailbox: m.clone(), calendar: Some(format!("{m}:\\Kalender")), grants }
            })
            .collect())
    }
}

#[tokio::test]
async fn the_delegation_index_covers_a_tenant_a_few_mailboxes_at_a_time() {
    use offboard_core::delegations::{Grant, Indexer, Right, Trustee};
    for_each_backend(|store, backend| async move {
        let c = clock();
        let source = Arc::new(Mailboxes { n: 60, scanned: Default::default(), listings: Default::default() });
        let mut indexer = Indexer::new(store.clone(), source.clone(), c.clone(), vec![tenant_id()]);
        indexer.per_tick = 25;
        let t = tenant_id();
        assert_eq!(store.index_coverage(&t).await.unwrap().listed, None, "{backend}");

        let first = indexer.tick().await;
        assert_eq!((first.listed, first.scanned), (60, 25), "{backend}");
        let cov = store.index_coverage(&t).await.unwrap();
        assert_eq!((cov.mailboxes, cov.scanned, cov.complete()), (60, 25, false), "{backend}");
        assert!(cov.describe(c.now()).contains("scanned 25 of 60 mailboxes"), "{backend}");
        c.advance(Duration::minutes(1));
        indexer.tick().await;
        c.advance(Duration::minutes(1));
        let third = indexer.tick().await;
        assert_eq!((third.listed, third.scanned), (0, 10), "the listing waits for its hour: {backend}");
        assert!(store.index_coverage(&t).await.unwrap().complete(), "{backend}");
        assert_eq!(source.scanned.lock().unwrap().len(), 60, "each mailbox scanned once: {backend}");
        assert_eq!(indexer.tick().await.scanned, 0, "nothing is due within a day: {backend}");

        let keys = [Trustee::Address("ALICE@contoso.com".into()).key(), Trustee::Name("Alice Example".into()).key()];
        let mut grants = store.index_grants_of(&t, &keys).await.unwrap();
        grants.sort_by(|a, b| (a.mailbox.clone(), a.right.as_str()).cmp(&(b.mailbox.clone(), b.right.as_str())));
        assert_eq!(
            grants,
            vec![
                Grant { mailbox: "box1@contoso.com".into(), right: Right::SendOnBehalf, calendar: None },
                Grant { mailbox: "box7@contoso.com".into(), right: Right::Calendar, calendar: Some("box7@contoso.com:\\Kalender".into()) },
                Grant { mailbox: "box7@contoso.com".into(), right: Right::FullAccess, calendar: None },
            ],
            "{backend}"
        );

        // A day on, every mailbox is scanned again, oldest first; a mailbox gone from the
        // listing is forgotten with its rights.
        c.advance(Duration::hours(25));
        let mut smaller =
            Indexer::new(store.clone(), Arc::new(Mailboxes { n: 5, scanned: Default::default(), listings: Default::default() }), c.clone(), vec![t.clone()]);
        smaller.per_tick = 100;
        smaller.tick().await;
        let cov = store.index_coverage(&t).await.unwrap();
        assert_eq!((cov.mailboxes, cov.scanned), (5, 5), "{backend}");
        let grants = store.index_grants_of(&t, &keys).await.unwrap();
        assert_eq!(grants.len(), 1, "box7 is gone, box1's send-on-behalf stays: {grants:?} {backend}");
    })
    .await;
}

/// Conversation references (how Teams reaches a conversation later): kept per platform and
/// key, the newest wins, and another platform's key is another entry.
#[tokio::test]
async fn conversation_references_are_kept_per_platform_and_replaced() {
    for_each_backend(|store, backend| async move {
        let now = clock().now();
        assert_eq!(store.conversation("teams", "19:abc").await.unwrap(), None, "{backend}");
        store.save_conversation("teams", "19:abc", r#"{"serviceUrl":"http://one"}"#, now).await.unwrap();
        store.save_conversation("discord", "19:abc", "other", now).await.unwrap();
        store.save_conversation("teams", "19:abc", r#"{"serviceUrl":"http://two"}"#, now + Duration::minutes(1)).await.unwrap();
        assert_eq!(store.conversation("teams", "19:abc").await.unwrap().as_deref(), Some(r#"{"serviceUrl":"http://two"}"#), "{backend}");
        assert_eq!(store.conversation("discord", "19:abc").await.unwrap().as_deref(), Some("other"), "{backend}");
    })
    .await;
}

/// Deliveries asked for at once by many tasks (redeliveries racing each other): each key is
/// first exactly once, whoever asks, and again only after its time ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_delivery_is_first_exactly_once_when_many_arrive_together() {
    for_each_backend(|store, backend| async move {
        let now = clock().now();
        let ttl = Duration::minutes(5);
        let mut asks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let store = store.clone();
            // 50 keys, each asked for four times.
            asks.spawn(async move { (i % 50, store.first_delivery("contract", &format!("k{}", i % 50), now, ttl).await.unwrap()) });
        }
        let mut firsts = [0; 50];
        while let Some(done) = asks.join_next().await {
            let (key, first) = done.unwrap();
            firsts[key] += usize::from(first);
        }
        assert!(firsts.iter().all(|&n| n == 1), "{backend}: {firsts:?}");
        assert!(!store.first_delivery("contract", "k0", now + Duration::minutes(4), ttl).await.unwrap(), "{backend}: still remembered");
        assert!(store.first_delivery("contract", "k0", now + Duration::minutes(6), ttl).await.unwrap(), "{backend}: expired, first again");
    })
    .await;
}

/// The writes acknowledgements wait on, many at once (SQLite commits them together): every
/// one is done when its call returns, refusals extend one unbroken audit chain, and a draft
/// saved is read back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgement_writes_arriving_together_are_each_done_when_answered() {
    for_each_backend(|store, backend| async move {
        let now = clock().now();
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..150 {
            let store = store.clone();
            writes.spawn(async move {
                let first = store.first_delivery("contract", &format!("ack-{i}"), now, Duration::minutes(5)).await.unwrap();
                store.save_draft(&format!("draft-{i}"), &format!("{{\"page\":{i}}}"), now + Duration::hours(1)).await.unwrap();
                let read = store.draft(&format!("draft-{i}"), now).await.unwrap();
                let refusal = NewAudit::new(format!("slack:U{i}"), "approval.refused").detail(json!({ "reason": "no role" }));
                store.audit_refusal(refusal, None, now).await.unwrap();
                if i % 3 == 0 {
                    store.delete_draft(&format!("draft-{i}")).await.unwrap();
                }
                (first, read)
            });
        }
        while let Some(done) = writes.join_next().await {
            let (first, read) = done.unwrap();
            assert!(first, "{backend}");
            assert!(read.is_some_and(|d| d.starts_with("{\"page\":")), "{backend}: a saved draft is read back at once");
        }
        let verified = store.verify_audit(&[]).await.unwrap();
        assert!(verified.is_ok(), "{backend}: {verified:?}");
        let refused = store.audit_entries(0, 1000).await.unwrap().into_iter().filter(|e| e.action == "approval.refused").count();
        assert_eq!(refused, 150, "{backend}");
        assert!(store.draft("draft-0", now).await.unwrap().is_none() && store.draft("draft-1", now).await.unwrap().is_some(), "{backend}");
    })
    .await;
}

/// A write that fails fails alone: the others committed with it still stand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_acknowledgement_write_does_not_take_others_with_it() {
    for_each_backend(|store, backend| async move {
        let now = clock().now();
        // Drafts can no longer be written; deliveries still can.
        match store.db() {
            Db::Sqlite(p) => sqlx::query("DROP TABLE chat_drafts").execute(p).await.map(|_| ()),
            Db::Postgres(p) => sqlx::query("DROP TABLE chat_drafts").execute(p).await.map(|_| ()),
        }
        .unwrap();
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..100 {
            let store = store.clone();
            writes.spawn(async move {
                if i % 2 == 0 {
                    (true, store.first_delivery("contract", &format!("alone-{i}"), now, Duration::minutes(5)).await.is_ok())
                } else {
                    (false, store.save_draft(&format!("d-{i}"), "{}", now).await.is_ok())
                }
            });
        }
        while let Some(done) = writes.join_next().await {
            let (delivery, ok) = done.unwrap();
            assert_eq!(ok, delivery, "{backend}: deliveries succeed, drafts fail");
        }
        assert!(!store.first_delivery("contract", "alone-0", now, Duration::minutes(5)).await.unwrap(), "{backend}: the delivery was kept");
    })
    .await;
}

#[tokio::test]
async fn a_look_that_says_not_yet_is_not_an_attempt() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let run = approved_run(&svc, "alice@contoso.com", Options { hide_from_gal: true, ..Options::default() }).await;
        let first = store.claim("a", c.now(), Duration::seconds(5)).await.unwrap().unwrap();
        let looked_at = c.now();
        store.poll_step(&first, c.now() + Duration::seconds(10), "waiting for Exchange", c.now()).await.unwrap();
        assert!(
            matches!(store.poll_step(&first, c.now(), "again", c.now()).await, Err(StoreError::LeaseLost { .. })),
            "{backend}: a re-queue is fenced like any write"
        );
        c.advance(Duration::seconds(9));
        assert!(store.claim("a", c.now(), Duration::seconds(5)).await.unwrap().is_none(), "{backend}: it waits for its time");
        let step = store.steps(&run.id).await.unwrap().remove(0);
        assert_eq!((step.state, step.polls, step.waiting_since), (StepState::Ready, 1, Some(looked_at)), "{backend}");
        assert_eq!(step.last_error.as_deref(), Some("waiting for Exchange"));
        c.advance(Duration::seconds(2));
        let second = store.claim("a", c.now(), Duration::seconds(5)).await.unwrap().unwrap();
        assert!(second.attempt > first.attempt, "{backend}: the fence only grows");
        assert_eq!((second.counted(), second.polls, second.waiting_since), (1, 1, Some(looked_at)), "{backend}: a look is not an attempt");
        store.poll_step(&second, c.now() + Duration::seconds(1), "waiting for Exchange", c.now()).await.unwrap();
        c.advance(Duration::seconds(1));
        let third = store.claim("a", c.now(), Duration::seconds(5)).await.unwrap().unwrap();
        assert_eq!((third.counted(), third.polls, third.waiting_since), (1, 2, Some(looked_at)), "{backend}: waiting counts from the first look");
        store.finish_step(&third, &ok(), c.now()).await.unwrap();
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Completed, "{backend}");
        let waits = store.events_after(0, 1000).await.unwrap().into_iter().filter(|e| matches!(e.kind, EventKind::StepWaiting { .. })).count();
        assert_eq!(waits, 2, "{backend}: each look is said once");
    })
    .await;
}

/// A second tenant, fabrikam.com, with `users` users (bob2@, bob3@, …; the first is bob@).
fn fabrikam(store: &Store, c: &Arc<ManualClock>, users: u32) -> (offboard_core::domain::TenantId, offboard_core::service::Offboarding) {
    let id = offboard_core::domain::TenantId::parse("fabrikam.com").unwrap();
    let people = (1..=users)
        .map(|n| offboard_core::testing::user_named(n, &if n == 1 { "bob@fabrikam.com".to_string() } else { format!("bob{n}@fabrikam.com") }, "Bob"))
        .collect();
    let svc = offboard_core::service::Offboarding::new(
        store.clone(),
        Arc::new(offboard_core::testing::InMemoryDirectory::with(id.clone(), people)),
        c.clone(),
        access(),
        vec![offboard_core::service::Tenant { id: id.clone(), name: "Fabrikam".into(), domains: vec!["fabrikam.com".into()], policy: TenantPolicy::default() }],
        offboard_core::request::Presets::default(),
    );
    (id, svc)
}

#[tokio::test]
async fn lockout_steps_too_are_taken_one_tenant_at_a_time() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let contoso = service(store.clone(), c.clone(), 8, TenantPolicy::default());
        let (fabrikam_id, fabrikam) = fabrikam(&store, &c, 2);
        let lockout = Options { disable_sign_in: true, ..Options::default() };
        // A bulk's lockouts in one tenant, all older than another tenant's.
        for n in 2..=4 {
            approved_run(&contoso, &format!("user{n}@contoso.com"), lockout.clone()).await;
            c.advance(Duration::seconds(1));
        }
        for upn in ["bob@fabrikam.com", "bob2@fabrikam.com"] {
            let r = fabrikam.request(&requester(), offboard_core::request::Request::now(fabrikam_id.clone(), upn, lockout.clone())).await.unwrap();
            fabrikam.approve(&admin1(), &r.id, &r.plan_hash).await.unwrap();
            if r.approvals_needed > 1 {
                fabrikam.approve(&admin2(), &r.id, &r.plan_hash).await.unwrap();
            }
            c.advance(Duration::seconds(1));
        }
        let mut order = Vec::new();
        // One slot at a time, as a lockout lane whose other slots are busy.
        while let Some(claim) = store.claim_within("w", c.now(), Duration::seconds(30), 1, Reach::Lockout).await.unwrap().pop() {
            assert_eq!(claim.step.kind, StepKind::DisableSignIn, "{backend}");
            order.push(claim.tenant.as_str().to_string());
        }
        assert_eq!(order, ["contoso.com", "fabrikam.com", "contoso.com", "fabrikam.com", "contoso.com"], "{backend}: turns, not oldest first");
    })
    .await;
}

#[tokio::test]
async fn an_emergency_lockout_goes_before_the_lockouts_approved_earlier() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 8, TenantPolicy::default());
        let lockout = Options { disable_sign_in: true, ..Options::default() };
        for n in 2..=4 {
            approved_run(&svc, &format!("user{n}@contoso.com"), lockout.clone()).await;
            c.advance(Duration::seconds(1));
        }
        let emergency =
            svc.request(&admin1(), offboard_core::request::Request { emergency: true, ..request("user5@contoso.com", lockout.clone()) }).await.unwrap();
        let lease = Duration::seconds(30);
        let first = store.claim_within("w", c.now(), lease, 1, Reach::Lockout).await.unwrap().pop().unwrap();
        assert_eq!(first.run_id, emergency.id, "{backend}: the emergency first, though newest");
        assert!(first.emergency, "{backend}");
        // The slots kept for emergencies take nothing else.
        assert!(store.claim_within("w", c.now(), lease, 4, Reach::Emergency).await.unwrap().is_empty(), "{backend}");
        let rest = store.claim_many("w", c.now(), lease, 10).await.unwrap();
        assert_eq!(rest.len(), 3, "{backend}");
        assert!(rest.iter().all(|c| !c.emergency && c.step.kind == StepKind::DisableSignIn), "{backend}");
    })
    .await;
}

#[tokio::test]
async fn claims_take_lockout_first_then_each_tenant_in_turn() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let contoso = service(store.clone(), c.clone(), 8, TenantPolicy::default());
        let (fabrikam_id, fabrikam) = fabrikam(&store, &c, 1);
        let hide = Options { hide_from_gal: true, ..Options::default() };
        // A backlog in one tenant, oldest first; then one step in another tenant; then
        // the newest of all, a lockout.
        for n in 2..=7 {
            approved_run(&contoso, &format!("user{n}@contoso.com"), hide.clone()).await;
            c.advance(Duration::seconds(1));
        }
        let r = fabrikam.request(&requester(), offboard_core::request::Request::now(fabrikam_id.clone(), "bob@fabrikam.com", hide.clone())).await.unwrap();
        fabrikam.approve(&admin1(), &r.id, &r.plan_hash).await.unwrap();
        if r.approvals_needed > 1 {
            fabrikam.approve(&admin2(), &r.id, &r.plan_hash).await.unwrap();
        }
        assert_eq!(store.run(&r.id).await.unwrap().state, RunState::Approved, "{backend}");
        c.advance(Duration::seconds(1));
        approved_run(&contoso, "alice@contoso.com", Options { disable_sign_in: true, ..Options::default() }).await;
        c.advance(Duration::seconds(1));

        let lease = Duration::seconds(30);
        let batch = store.claim_many("w", c.now(), lease, 3).await.unwrap();
        let got: Vec<(String, StepKind)> = batch.iter().map(|c| (c.tenant.as_str().to_string(), c.step.kind)).collect();
        assert_eq!(got[0], ("contoso.com".into(), StepKind::DisableSignIn), "{backend}: the lockout first, though newest: {got:?}");
        let mut rest: Vec<&str> = got[1..].iter().map(|(t, _)| t.as_str()).collect();
        rest.sort();
        assert_eq!(rest, ["contoso.com", "fabrikam.com"], "{backend}: one step of each tenant, not the oldest three: {got:?}");
        let contoso_first = batch.iter().skip(1).find(|c| c.tenant.as_str() == "contoso.com").unwrap();
        assert_eq!(contoso_first.target_id, store.run(&contoso_first.run_id).await.unwrap().target_id, "{backend}");
        // Within a tenant, oldest first: what is left is the rest of the backlog.
        let next = store.claim_many("w", c.now(), lease, 10).await.unwrap();
        assert_eq!(next.len(), 5, "{backend}");
        assert!(next.iter().all(|c| c.tenant.as_str() == "contoso.com" && c.step.kind == StepKind::HideFromGal), "{backend}");
    })
    .await;
}

#[tokio::test]
async fn on_postgres_an_approval_wakes_the_workers_of_every_process() {
    if offboard_testkit::postgres_skipped() {
        return;
    }
    let db = TestDb::postgres().await;
    let approver = db.store().await;
    // Another process: its own pool and its own listener.
    let workers = db.store().await;
    let c = clock();
    let svc = service(approver.clone(), c.clone(), 3, TenantPolicy::default());
    let run = approved_run(&svc, "user2@contoso.com", Options { hide_from_gal: true, ..Options::default() }).await;
    assert_eq!(approver.run(&run.id).await.unwrap().state, RunState::Approved);
    // Resolves only by the notification: this store took no part in the approval and its
    // signal has no other source.
    tokio::time::timeout(std::time::Duration::from_secs(10), workers.steps_ready()).await.expect("the other process is woken");
    assert_eq!(workers.claim("w", c.now(), Duration::seconds(30)).await.unwrap().unwrap().run_id, run.id);
    approver.close().await;
    workers.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn step_results_arriving_together_are_each_fenced_and_recorded() {
    for_each_backend(|store, backend| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 40, TenantPolicy::default());
        for n in 2..=31 {
            approved_run(&svc, &format!("user{n}@contoso.com"), Options { hide_from_gal: true, ..Options::default() }).await;
        }
        let lease = Duration::seconds(5);
        let mut claims = store.claim_many("a", c.now(), lease, 30).await.unwrap();
        assert_eq!(claims.len(), 30, "{backend}");
        // One lease lapses and is taken over: its first holder's result must be refused.
        c.advance(Duration::seconds(6));
        let stale = claims.pop().unwrap();
        for claim in &claims {
            store.heartbeat(claim, c.now(), lease).await.unwrap();
        }
        let current = store.claim("b", c.now(), lease).await.unwrap().unwrap();
        assert_eq!(current.step_id, stale.step_id, "{backend}");
        let mut writes = tokio::task::JoinSet::new();
        for (i, claim) in claims.into_iter().chain([stale]).enumerate() {
            let (store, now) = (store.clone(), c.now());
            writes.spawn(async move {
                let r = if i % 3 == 0 {
                    store.retry_step(&claim, now + Duration::seconds(1), "503", now).await
                } else if i % 3 == 1 {
                    store.poll_step(&claim, now + Duration::seconds(1), "waiting for Exchange", now).await
                } else {
                    store.finish_step(&claim, &ok(), now).await
                };
                (claim.step_id, r)
            });
        }
        let results = writes.join_all().await;
        let refused: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
        assert_eq!(refused.len(), 1, "{backend}: only the stale result is refused: {refused:?}");
        assert!(matches!(refused[0], (id, Err(StoreError::LeaseLost { .. })) if *id == current.step_id), "{backend}");
        let finished = store.count_runs().await.unwrap().into_iter().find(|(s, _)| *s == RunState::Completed).map_or(0, |(_, n)| n);
        assert_eq!(finished, 9, "{backend}: every third result but the stale one finished its run");
        assert!(store.verify_audit(&[]).await.unwrap().is_ok(), "{backend}");
    })
    .await;
}
