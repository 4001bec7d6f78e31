//! A configured service over a test store: one tenant, a requester, two admins and a
//! viewer, the rich test user and a few more.

use std::sync::Arc;

use offboard_core::clock::Clock;
use offboard_core::domain::{Actor, Role, TenantId};
use offboard_core::policy::{Access, Principal, RoleBinding, TenantPolicy};
use offboard_core::request::{Options, Presets, Request};
use offboard_core::service::{Offboarding, Tenant};
use offboard_core::store::{RunRecord, Store};
use offboard_core::testing::{InMemoryDirectory, rich_user, user_named};

pub fn tenant_id() -> TenantId {
    TenantId::parse("contoso.com").expect("valid")
}

pub fn actor(id: &str) -> Actor {
    Actor { platform: "slack".into(), id: id.into(), name: format!("{id} name"), groups: vec![] }
}

pub fn requester() -> Actor {
    actor("UREQ")
}

pub fn admin1() -> Actor {
    actor("UADM1")
}

pub fn admin2() -> Actor {
    actor("UADM2")
}

pub fn viewer() -> Actor {
    actor("UVIEW")
}

pub fn access() -> Access {
    let bind = |id: &str, role| RoleBinding { principal: Principal::User { platform: "slack".into(), id: id.into() }, role, tenants: None };
    Access { bindings: vec![bind("UREQ", Role::Manager), bind("UADM1", Role::Admin), bind("UADM2", Role::Admin), bind("UVIEW", Role::Viewer)], people: vec![] }
}

/// `users` users numbered from 1 (user 1 is the rich test user).
pub fn directory(users: u32) -> InMemoryDirectory {
    let mut list = vec![rich_user()];
    for n in 2..=users {
        list.push(user_named(n, &format!("user{n}@contoso.com"), &format!("User {n}")));
    }
    InMemoryDirectory::with(tenant_id(), list)
}

pub fn service(store: Store, clock: Arc<dyn Clock>, users: u32, policy: TenantPolicy) -> Offboarding {
    let tenant = Tenant { id: tenant_id(), name: "Contoso".into(), domains: vec!["contoso.com".into()], policy };
    Offboarding::new(store, Arc::new(directory(users)), clock, access(), vec![tenant], Presets::default())
}

pub fn request(user: &str, options: Options) -> Request {
    Request::now(tenant_id(), user, options)
}

/// A broad plan with three at-most-once steps (password reset, device retire, meeting
/// cancellation) and no high-risk step.
pub fn crash_options() -> Options {
    let mut o = Presets::builtin(&offboard_core::domain::PresetName::parse("standard-leaver").expect("valid")).expect("builtin");
    o.cancel_meetings = true;
    o
}

/// Requests and fully approves a run.
pub async fn approved_run(svc: &Offboarding, user: &str, options: Options) -> RunRecord {
    let run = svc.request(&requester(), request(user, options)).await.expect("request");
    svc.approve(&admin1(), &run.id, &run.plan_hash).await.expect("approve");
    if run.approvals_needed > 1 {
        svc.approve(&admin2(), &run.id, &run.plan_hash).await.expect("second approval");
    }
    run
}

/// An executor for which every step succeeds at once, with a request id.
pub struct AlwaysDone;

#[async_trait::async_trait]
impl offboard_core::engine::StepExecutor for AlwaysDone {
    async fn execute(&self, _cx: &offboard_core::engine::StepContext) -> Result<offboard_core::run::StepOutcome, offboard_core::engine::StepError> {
        Ok(offboard_core::run::StepOutcome::done("read back as done", vec!["req-1".into()]))
    }

    async fn reconcile(&self, _cx: &offboard_core::engine::StepContext) -> offboard_core::engine::Reconciled {
        offboard_core::engine::Reconciled::NotApplied
    }
}

/// A run requested, approved and taken to `completed` through the real engine.
pub async fn finished_run(store: &Store, user: &str, options: Options) -> RunRecord {
    use offboard_core::engine::{Worker, WorkerConfig};
    let clock: Arc<dyn Clock> = Arc::new(offboard_core::clock::SystemClock);
    let policy = TenantPolicy { admins: offboard_core::policy::AdminTargets::Allow, ..TenantPolicy::default() };
    let svc = service(store.clone(), clock.clone(), 3, policy);
    let run = approved_run(&svc, user, options).await;
    Worker::new(store.clone(), Arc::new(AlwaysDone), clock, WorkerConfig::default()).drain().await.expect("worker");
    store.run(&run.id).await.expect("run")
}
