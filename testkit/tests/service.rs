//! The approval rules end to end through the service and a real database, the in-process
//! runner's retry and read-back paths, and the scheduler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::Duration;
use offboard_core::clock::ManualClock;
use offboard_core::engine::{Reconciled, RetryPolicy, StepContext, StepError, StepExecutor, Worker, WorkerConfig};
use offboard_core::outbox::EventKind;
use offboard_core::plan::StepKind;
use offboard_core::policy::{Refusal, TenantPolicy};
use offboard_core::request::{DeleteUser, DeviceAction, Options, Request};
use offboard_core::run::{RunState, StepOutcome, StepState};
use offboard_core::scheduler::{AUDIT_CHECKPOINT, CronJob, Scheduler};
use offboard_core::service::{Decided, ServiceError};
use offboard_core::store::Store;
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::*;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at_ymd_hms(2026, 6, 1, 9, 0, 0))
}

fn refusal(r: Result<impl std::fmt::Debug, ServiceError>) -> Refusal {
    match r {
        Err(ServiceError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn with_store<F, Fut>(f: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in TestDb::all().await {
        let store = db.store().await;
        f(store.clone()).await;
        store.close().await;
        db.cleanup().await;
    }
}

fn simple() -> Options {
    Options { disable_sign_in: true, revoke_sessions: true, ..Options::default() }
}

#[tokio::test]
async fn the_requester_can_never_approve() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c, 3, TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() });
        let run = svc.request(&admin1(), request("alice@contoso.com", simple())).await.unwrap();
        assert_eq!(refusal(svc.approve(&admin1(), &run.id, &run.plan_hash).await), Refusal::SelfApproval);
        assert_eq!(refusal(svc.reject(&admin1(), &run.id, "no").await), Refusal::SelfApproval);
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::AwaitingApproval);
        let audit = store.audit_entries(0, 100).await.unwrap();
        assert_eq!(audit.iter().filter(|e| e.action == "approval.refused").count(), 1);
        let events = store.events_after(0, 100).await.unwrap();
        assert!(events.iter().any(|e| matches!(&e.kind, EventKind::ApprovalRefused { reason, .. } if reason.contains("someone else"))));
        assert_eq!(svc.approve(&admin2(), &run.id, &run.plan_hash).await.unwrap(), Decided::Released(RunState::Approved));
    })
    .await;
}

#[tokio::test]
async fn one_approval_does_not_release_a_high_risk_step() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c, 3, TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() });
        let o = Options { disable_sign_in: true, device_action: Some(DeviceAction::Wipe), ..Options::default() };
        let run = svc.request(&requester(), request("alice@contoso.com", o)).await.unwrap();
        assert_eq!(run.approvals_needed, 2);
        assert_eq!(svc.approve(&admin1(), &run.id, &run.plan_hash).await.unwrap(), Decided::Counted { have: 1, need: 2 });
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::AwaitingApproval);
        assert!(store.claim("w", chrono::Utc::now(), Duration::seconds(30)).await.unwrap().is_none(), "nothing may run on one approval");
        assert_eq!(refusal(svc.approve(&admin1(), &run.id, &run.plan_hash).await), Refusal::AlreadyApproved);
        assert_eq!(svc.approve(&admin2(), &run.id, &run.plan_hash).await.unwrap(), Decided::Released(RunState::Approved));
        // Delete user is high risk too, and a target who is an admin under the default policy.
        let d = Options { disable_sign_in: true, delete_user: Some(DeleteUser { defer_days: 3 }), ..Options::default() };
        assert_eq!(svc.request(&requester(), request("user2@contoso.com", d)).await.unwrap().approvals_needed, 2);
        let admin_target = service(store.clone(), clock(), 3, TenantPolicy::default());
        assert_eq!(admin_target.request(&requester(), request("user3@contoso.com", simple())).await.unwrap().approvals_needed, 2);
    })
    .await;
}

#[tokio::test]
async fn an_expired_approval_is_refused_and_expires_the_run() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() });
        let run = svc.request(&requester(), request("alice@contoso.com", simple())).await.unwrap();
        c.advance(Duration::hours(24) + Duration::seconds(1));
        assert!(matches!(refusal(svc.approve(&admin1(), &run.id, &run.plan_hash).await), Refusal::Expired(_)));
        let sched = Scheduler::new(store.clone(), c.clone(), vec![], "s1");
        let tick = sched.tick().await.unwrap();
        assert_eq!(tick.expired, 1);
        let r = store.run(&run.id).await.unwrap();
        assert_eq!(r.state, RunState::Expired);
        assert!(store.steps(&run.id).await.unwrap().iter().all(|s| s.state == StepState::Cancelled));
        assert_eq!(refusal(svc.approve(&admin1(), &run.id, &run.plan_hash).await), Refusal::NotAwaiting(RunState::Expired));
    })
    .await;
}

#[tokio::test]
async fn an_approval_of_plan_x_does_not_release_plan_y() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c, 3, TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() });
        let x = svc.request(&requester(), request("alice@contoso.com", simple())).await.unwrap();
        // The same person may not have two open runs: x ends before y is asked.
        let audit = offboard_core::audit::NewAudit::new("test", "run.cancelled");
        store.close_run(&x.id, x.version, RunState::Cancelled, None, chrono::Utc::now(), audit).await.unwrap();
        let y = svc.request(&requester(), request("alice@contoso.com", Options { hide_from_gal: true, ..simple() })).await.unwrap();
        assert_ne!(x.plan_hash, y.plan_hash);
        assert!(matches!(refusal(svc.approve(&admin1(), &y.id, &x.plan_hash).await), Refusal::PlanChanged { .. }));
        assert_eq!(store.run(&y.id).await.unwrap().state, RunState::AwaitingApproval);
        assert!(store.approvals(&y.id).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_viewer_cannot_request_or_approve_and_strangers_learn_nothing() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c, 3, TenantPolicy::default());
        assert!(matches!(refusal(svc.request(&viewer(), request("alice@contoso.com", simple())).await), Refusal::RoleTooLow { .. }));
        let run = svc.request(&requester(), request("alice@contoso.com", simple())).await.unwrap();
        assert!(matches!(refusal(svc.approve(&viewer(), &run.id, &run.plan_hash).await), Refusal::RoleTooLow { .. }));
        assert!(matches!(refusal(svc.reject(&viewer(), &run.id, "x").await), Refusal::RoleTooLow { .. }));
        // A stranger asking about a user who does not exist gets the role refusal, not a directory answer.
        assert!(matches!(refusal(svc.request(&actor("USTRANGER"), request("ghost@contoso.com", simple())).await), Refusal::NoRole(_)));
        assert!(svc.status(&viewer(), &run.id).await.is_ok(), "viewers see runs");
        assert_eq!(svc.list(&actor("USTRANGER"), 10).await.unwrap().len(), 0);
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_records_nothing() {
    with_store(|store| async move {
        let svc = service(store.clone(), clock(), 3, TenantPolicy::default());
        let e = svc.request(&requester(), request("not-a-upn", simple())).await.unwrap_err();
        assert!(e.to_string().contains("name@domain"), "{e}");
        let e = svc.request(&requester(), request("nobody@contoso.com", simple())).await.unwrap_err();
        assert!(e.to_string().contains("no user nobody@contoso.com"), "{e}");
        let e = svc.request(&requester(), request("alice@contoso.com", Options::default())).await.unwrap_err();
        assert!(matches!(e, ServiceError::Invalid(_)), "{e}");
        let e = svc.resolve_tenant(Some("fabrikam.com"), "x@fabrikam.com").unwrap_err();
        assert!(e.to_string().contains("unknown tenant \"fabrikam.com\"; configured tenants: contoso.com"), "{e}");
        assert_eq!(svc.resolve_tenant(None, "bob@contoso.com").unwrap().name, "Contoso");
        assert!(store.list_runs(None, 10).await.unwrap().is_empty());
    })
    .await;
}

/// Answers from a script, per call; read-back answers from another.
struct Scripted {
    answers: Mutex<Vec<Result<StepOutcome, StepError>>>,
    reconcile: Reconciled,
    calls: AtomicUsize,
}

#[async_trait]
impl StepExecutor for Scripted {
    async fn execute(&self, _cx: &StepContext) -> Result<StepOutcome, StepError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut a = self.answers.lock().unwrap();
        if a.is_empty() { Ok(StepOutcome::done("done", vec![])) } else { a.remove(0) }
    }

    async fn reconcile(&self, _cx: &StepContext) -> Reconciled {
        self.reconcile.clone()
    }
}

fn worker(store: &Store, c: Arc<ManualClock>, exec: Arc<Scripted>) -> Worker {
    let config = WorkerConfig { retry: RetryPolicy { max_attempts: 3, ..RetryPolicy::default() }, ..WorkerConfig::default() };
    Worker::new(store.clone(), exec, c, config)
}

#[tokio::test]
async fn the_runner_honours_retry_after_and_gives_up_cleanly() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() });
        let run = approved_run(&svc, "alice@contoso.com", Options { disable_sign_in: true, ..Options::default() }).await;
        let exec = Arc::new(Scripted {
            answers: Mutex::new(vec![Err(StepError::RetryAfter(StdDuration::from_secs(30), "429".into())), Err(StepError::Retryable("503".into()))]),
            reconcile: Reconciled::NotApplied,
            calls: AtomicUsize::new(0),
        });
        let w = worker(&store, c.clone(), exec.clone());
        assert_eq!(w.drain().await.unwrap(), 1);
        c.advance(Duration::seconds(29));
        assert_eq!(w.drain().await.unwrap(), 0, "Retry-After is never undercut");
        c.advance(Duration::seconds(5));
        assert_eq!(w.drain().await.unwrap(), 1, "503: backoff");
        c.advance(Duration::seconds(2));
        assert_eq!(w.drain().await.unwrap(), 1);
        assert_eq!(exec.calls.load(Ordering::SeqCst), 3);
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Completed);
        let retries = store.events_after(0, 1000).await.unwrap().into_iter().filter(|e| matches!(e.kind, EventKind::StepRetrying { .. })).count();
        assert_eq!(retries, 2);

        let failing = approved_run(&svc, "user2@contoso.com", Options { disable_sign_in: true, ..Options::default() }).await;
        exec.answers.lock().unwrap().extend([
            Err(StepError::Retryable("a".into())),
            Err(StepError::Retryable("b".into())),
            Err(StepError::Retryable("c".into())),
        ]);
        for _ in 0..3 {
            w.drain().await.unwrap();
            c.advance(Duration::seconds(10));
        }
        let steps = store.steps(&failing.id).await.unwrap();
        assert_eq!(steps[0].state, StepState::Failed);
        assert!(steps[0].outcome.as_ref().unwrap().summary().contains("gave up after 3 attempts: c"));
        assert_eq!(store.run(&failing.id).await.unwrap().state, RunState::Failed);
    })
    .await;
}

#[tokio::test]
async fn an_at_most_once_step_that_cannot_be_read_back_goes_to_a_human() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() });
        let run = approved_run(&svc, "alice@contoso.com", Options { device_action: Some(DeviceAction::Retire), ..Options::default() }).await;
        let exec = Arc::new(Scripted {
            answers: Mutex::new(vec![Err(StepError::Retryable("connection reset after sending".into()))]),
            reconcile: Reconciled::Unknown("the device's management state is not readable".into()),
            calls: AtomicUsize::new(0),
        });
        let w = worker(&store, c.clone(), exec.clone());
        w.drain().await.unwrap();
        c.advance(Duration::seconds(5));
        w.drain().await.unwrap();
        assert_eq!(exec.calls.load(Ordering::SeqCst), 1, "never re-sent blindly");
        let step = &store.steps(&run.id).await.unwrap()[0];
        assert_eq!(step.state, StepState::NeedsAttention);
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::NeedsAttention);
    })
    .await;
}

#[tokio::test]
async fn an_at_most_once_step_sent_back_by_a_budget_is_sent_later_without_a_read_back() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() });
        let run = approved_run(&svc, "alice@contoso.com", Options { device_action: Some(DeviceAction::Retire), ..Options::default() }).await;
        let paced = || Err(StepError::Paced { look_again_in: StdDuration::from_secs(10), waiting_for: "room under Intune's write limit".into() });
        // A read-back would find nothing decidable: reaching it would hand the step to a human.
        let exec = Arc::new(Scripted {
            answers: Mutex::new(vec![paced(), paced()]),
            reconcile: Reconciled::Unknown("the device's management state is not readable".into()),
            calls: AtomicUsize::new(0),
        });
        let w = worker(&store, c.clone(), exec.clone());
        w.drain().await.unwrap();
        let step = &store.steps(&run.id).await.unwrap()[0];
        assert_eq!((step.state, step.polls), (StepState::Ready, 1), "back in the queue, holding no worker");
        assert_eq!(step.last_error.as_deref(), Some("waiting for room under Intune's write limit"));
        assert_eq!(w.drain().await.unwrap(), 0, "not before its time");
        for _ in 0..2 {
            c.advance(Duration::seconds(10));
            w.drain().await.unwrap();
        }
        assert_eq!(exec.calls.load(Ordering::SeqCst), 3, "sent when the budget had room, with no read-back in between");
        let step = &store.steps(&run.id).await.unwrap()[0];
        assert_eq!(step.state, StepState::Succeeded);
        assert_eq!(step.counted_attempts(), 1, "waiting for a budget is not an attempt");
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Completed);
    })
    .await;
}

#[tokio::test]
async fn planned_skips_are_recorded_without_calling_anyone() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() });
        let run = approved_run(&svc, "alice@contoso.com", Options { clear_immutable_id: true, ..Options::default() }).await;
        let exec = Arc::new(Scripted { answers: Mutex::new(vec![]), reconcile: Reconciled::NotApplied, calls: AtomicUsize::new(0) });
        worker(&store, c.clone(), exec.clone()).drain().await.unwrap();
        assert_eq!(exec.calls.load(Ordering::SeqCst), 0);
        let step = &store.steps(&run.id).await.unwrap()[0];
        assert_eq!(step.key, StepKind::ClearImmutableId.key());
        assert_eq!(step.outcome, Some(StepOutcome::Skipped { reason: "no immutable ID set".into(), warning: false }));
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Completed);
    })
    .await;
}

#[tokio::test]
async fn two_schedulers_fire_each_occurrence_once() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() });
        let jobs = || vec![CronJob::parse(AUDIT_CHECKPOINT, "0 0 * * * *").unwrap()];
        let a = Scheduler::new(store.clone(), c.clone(), jobs(), "a");
        let b = Scheduler::new(store.clone(), c.clone(), jobs(), "b");
        a.register().await.unwrap();
        b.register().await.unwrap();
        let run = svc.request(&requester(), request("alice@contoso.com", simple())).await.unwrap();
        c.advance(Duration::minutes(61));
        let (ta, tb) = (a.tick().await.unwrap(), b.tick().await.unwrap());
        assert_eq!(ta.fired.len() + tb.fired.len(), 1, "one hourly checkpoint, not two");
        assert_eq!(ta.escalated + tb.escalated, 0);
        assert_eq!(store.checkpoints().await.unwrap().len(), 1);
        c.advance(Duration::hours(3));
        let (ta, tb) = (a.tick().await.unwrap(), b.tick().await.unwrap());
        assert_eq!(ta.escalated + tb.escalated, 1, "escalated once, four hours after the request");
        assert_eq!(ta.fired.len() + tb.fired.len(), 1, "missed hours collapse into one occurrence");
        let escalations = store.events_after(0, 1000).await.unwrap().into_iter().filter(|e| e.kind == EventKind::ApprovalEscalated).count();
        assert_eq!(escalations, 1);
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::AwaitingApproval);
        assert!(CronJob::parse("bad", "every tuesday").unwrap_err().contains("not a cron expression"));
    })
    .await;
}

/// One person with identities on two platforms is one person: they cannot approve their
/// own request from the other platform, and their two identities count once toward two
/// distinct approvers.
#[tokio::test]
async fn a_person_linked_across_platforms_is_one_approver() {
    use offboard_core::domain::{Actor, Role};
    use offboard_core::policy::{LinkedPerson, Principal, RoleBinding};
    with_store(|store| async move {
        let teams = |id: &str| Actor { platform: "teams".into(), id: id.into(), name: format!("{id} on Teams"), groups: vec![] };
        let mut access = access();
        access.bindings.push(RoleBinding { principal: Principal::User { platform: "slack".into(), id: "UADM3".into() }, role: Role::Admin, tenants: None });
        access.people = vec![
            LinkedPerson { identities: vec!["slack:UADM1".into(), "teams:29:adm1".into()], upn: None },
            LinkedPerson { identities: vec!["slack:UADM2".into(), "teams:29:adm2".into()], upn: None },
        ];
        let policy = TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() };
        let tenant = offboard_core::service::Tenant { id: tenant_id(), name: "Contoso".into(), domains: vec!["contoso.com".into()], policy };
        let svc = offboard_core::service::Offboarding::new(store.clone(), Arc::new(directory(3)), clock(), access, vec![tenant], Default::default());
        let o = Options { disable_sign_in: true, device_action: Some(DeviceAction::Wipe), ..Options::default() };
        // An admin asks on Slack, then tries to approve on Teams.
        let run = svc.request(&admin1(), request("alice@contoso.com", o)).await.unwrap();
        assert_eq!(run.approvals_needed, 2);
        assert_eq!(refusal(svc.approve(&teams("29:adm1"), &run.id, &run.plan_hash).await), Refusal::SelfApproval);
        // The second admin on Slack, then the same admin on Teams: one approver.
        assert_eq!(svc.approve(&admin2(), &run.id, &run.plan_hash).await.unwrap(), Decided::Counted { have: 1, need: 2 });
        assert_eq!(refusal(svc.approve(&teams("29:adm2"), &run.id, &run.plan_hash).await), Refusal::AlreadyApproved);
        assert_eq!(store.run(&run.id).await.unwrap().state, RunState::AwaitingApproval);
        // A Teams identity linked to nobody has no role.
        assert!(matches!(refusal(svc.approve(&teams("29:stranger"), &run.id, &run.plan_hash).await), Refusal::NoRole(_)));
        assert_eq!(svc.approve(&actor("UADM3"), &run.id, &run.plan_hash).await.unwrap(), Decided::Released(RunState::Approved));
    })
    .await;
}

/// With "the line manager approves alone", the leaver's manager (from the directory, linked
/// in the configuration) decides without a role, and only on their report's run; a
/// manager who asked for the offboarding does not count, and the preview says so.
#[tokio::test]
async fn the_line_manager_approves_their_reports_run_only() {
    use offboard_core::domain::Actor;
    use offboard_core::policy::{LinkedPerson, ManagerApproves};
    with_store(|store| async move {
        let teams = |id: &str| Actor { platform: "teams".into(), id: id.into(), name: format!("{id} on Teams"), groups: vec![] };
        let build = |people: Vec<LinkedPerson>| {
            let mut access = access();
            access.people = people;
            let policy = TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, line_manager: ManagerApproves::Alone, ..TenantPolicy::default() };
            let tenant = offboard_core::service::Tenant { id: tenant_id(), name: "Contoso".into(), domains: vec!["contoso.com".into()], policy };
            offboard_core::service::Offboarding::new(store.clone(), Arc::new(directory(3)), clock(), access, vec![tenant], Default::default())
        };
        let morgan = LinkedPerson { identities: vec!["teams:29:morgan".into()], upn: Some("morgan@contoso.com".into()) };
        let svc = build(vec![morgan]);
        let run = svc.request(&requester(), request("alice@contoso.com", simple())).await.unwrap();
        let manager = run.line_manager.clone().expect("the line manager approves");
        assert_eq!((manager.name.as_str(), manager.found.as_str()), ("Morgan Manager", "linked in the configuration"));
        let preview = offboard_core::chat::views::PlanPreview::load(&store, &run.id).await.unwrap().layout();
        assert!(preview.facts.iter().any(
            |(l, f)| *l == "May approve" && format!("{f:?}").contains("Morgan Manager, the line manager (linked in the configuration), or one IT approver")
        ));
        // Another employee without a role cannot; the manager can, without one.
        assert!(matches!(refusal(svc.approve(&teams("29:someone"), &run.id, &run.plan_hash).await), Refusal::NoRole(_)));
        assert_eq!(svc.approve(&teams("29:morgan"), &run.id, &run.plan_hash).await.unwrap(), Decided::Released(RunState::Approved));

        // Morgan asks for their own report's offboarding: their approval would not count,
        // so IT decides, and the plan says why.
        let asks = build(vec![LinkedPerson { identities: vec!["slack:UREQ".into()], upn: Some("morgan@contoso.com".into()) }]);
        let own = asks.request(&requester(), request("user2@contoso.com", simple())).await.unwrap();
        assert!(own.line_manager.is_none());
        assert!(own.plan.notes.iter().any(|n| n.contains("asked for this and is the line manager")), "{:?}", own.plan.notes);
        assert!(matches!(refusal(asks.approve(&teams("29:morgan"), &own.id, &own.plan_hash).await), Refusal::NoRole(_)));
    })
    .await;
}

/// Holds every step that is not a lockout step (with `lockouts`, every step that is not an
/// emergency's) until released.
struct Blocking {
    release: tokio::sync::Notify,
    lockouts: bool,
}

#[async_trait]
impl StepExecutor for Blocking {
    async fn execute(&self, cx: &StepContext) -> Result<StepOutcome, StepError> {
        let passes = if self.lockouts { cx.emergency } else { cx.step.kind.is_lockout() };
        if !passes {
            self.release.notified().await;
        }
        Ok(StepOutcome::done("done", vec![]))
    }

    async fn reconcile(&self, _cx: &StepContext) -> Reconciled {
        Reconciled::NotApplied
    }
}

#[tokio::test]
async fn an_emergency_starts_while_other_lockouts_hold_every_other_slot() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 4, TenantPolicy::default());
        let exec = Arc::new(Blocking { release: tokio::sync::Notify::new(), lockouts: true });
        let config = WorkerConfig { concurrency: 1, poll: StdDuration::from_millis(20), lockout_slots: 1, emergency_slots: 1, ..WorkerConfig::default() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(Worker::new(store.clone(), exec.clone(), c.clone(), config).run_until_stopped(async move {
            let _ = stopped.await;
        }));
        // Two lockouts waiting (as for a tenant's spent write budget) hold the general slot
        // and the lockout slot.
        let lockout = Options { disable_sign_in: true, ..Options::default() };
        let held = [approved_run(&svc, "user2@contoso.com", lockout.clone()).await, approved_run(&svc, "user3@contoso.com", lockout.clone()).await];
        for run in &held {
            while store.steps(&run.id).await.unwrap()[0].state != StepState::Running {
                tokio::time::sleep(StdDuration::from_millis(10)).await;
            }
        }
        let urgent = svc.request(&admin1(), Request { emergency: true, ..request("alice@contoso.com", lockout) }).await.unwrap();
        let done = tokio::time::timeout(StdDuration::from_secs(10), async {
            while store.steps(&urgent.id).await.unwrap()[0].state != StepState::Succeeded {
                tokio::time::sleep(StdDuration::from_millis(10)).await;
            }
        })
        .await;
        assert!(done.is_ok(), "the emergency's lockout ran in its own slot");
        for run in &held {
            assert_eq!(store.steps(&run.id).await.unwrap()[0].state, StepState::Running, "the other slots were still busy");
        }
        exec.release.notify_waiters();
        let _ = stop.send(());
        worker.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_lockout_starts_while_every_other_slot_is_busy() {
    with_store(|store| async move {
        let c = clock();
        let svc = service(store.clone(), c.clone(), 3, TenantPolicy::default());
        let bulk = approved_run(&svc, "user2@contoso.com", Options { hide_from_gal: true, ..Options::default() }).await;
        let exec = Arc::new(Blocking { release: tokio::sync::Notify::new(), lockouts: false });
        let config = WorkerConfig { concurrency: 1, poll: StdDuration::from_millis(20), lockout_slots: 1, ..WorkerConfig::default() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(Worker::new(store.clone(), exec.clone(), c.clone(), config).run_until_stopped(async move {
            let _ = stopped.await;
        }));
        // The one general slot is taken by a step that does not end.
        while store.steps(&bulk.id).await.unwrap()[0].state != StepState::Running {
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
        let urgent = approved_run(&svc, "alice@contoso.com", Options { disable_sign_in: true, ..Options::default() }).await;
        let done = tokio::time::timeout(StdDuration::from_secs(10), async {
            while store.run(&urgent.id).await.unwrap().state != RunState::Completed {
                tokio::time::sleep(StdDuration::from_millis(10)).await;
            }
        })
        .await;
        assert!(done.is_ok(), "the lockout ran in its own slot");
        assert_eq!(store.steps(&bulk.id).await.unwrap()[0].state, StepState::Running, "the general slot was still busy");
        exec.release.notify_waiters();
        let _ = stop.send(());
        worker.await.unwrap().unwrap();
    })
    .await;
}
