//! The relay contract, run against every chat surface: core's recording surface and each
//! platform's own, through its fake. Two tenants routed to two places; each run's messages
//! only in its tenant's place; every event posted once, edits idempotent, a refused click
//! showing nothing, the report only after the last step, and nothing posted twice when the
//! relay restarts or a batch is repeated.

use std::sync::Arc;

use async_trait::async_trait;
use offboard_core::chat::relay::{Relay, Reports, Routes};
use offboard_core::chat::surface::ChatSurface;
use offboard_core::chat::views::FileOut;
use offboard_core::clock::{Clock, ManualClock};
use offboard_core::domain::{RunId, TenantId};
use offboard_core::engine::{Worker, WorkerConfig};
use offboard_core::policy::{Access, TenantPolicy};
use offboard_core::request::{Options, Presets, Request};
use offboard_core::run::StepOutcome;
use offboard_core::service::{Offboarding, Tenant};
use offboard_core::store::Store;
use offboard_core::templates::Templates;
use offboard_core::testing::{Posted, user_named};

use crate::fixtures::{AlwaysDone, access, admin1, admin2, directory, requester, tenant_id};

/// The second tenant of the contract.
pub fn fabrikam() -> TenantId {
    TenantId::parse("fabrikam.com").expect("valid")
}

/// Contoso (the fixtures' tenant) and Fabrikam, with `access` for both.
pub fn two_tenants(store: Store, clock: Arc<dyn Clock>, access: Access) -> Offboarding {
    let dir = directory(3);
    dir.put(&fabrikam(), user_named(50, "sam@fabrikam.com", "Sam Sato"));
    let tenant = |id: TenantId, name: &str| Tenant { domains: vec![id.to_string()], id, name: name.into(), policy: TenantPolicy::default() };
    let tenants = vec![tenant(tenant_id(), "Contoso"), tenant(fabrikam(), "Fabrikam")];
    Offboarding::new(store, Arc::new(dir), clock, access, tenants, Presets::default())
}

/// A report that is only its name, a few bytes and a link.
struct StubReports;

#[async_trait]
impl Reports for StubReports {
    async fn report(&self, run: &RunId) -> Result<FileOut, String> {
        let name = format!("{run}.pdf");
        let link = Some(format!("https://offboard.example.com/reports/{name}?expires=1&sig=00"));
        Ok(FileOut { name, mime: "application/pdf", bytes: b"%PDF-1.7\n%stub\n%%EOF\n".to_vec(), link })
    }
}

const NAME: &str = "contract";

fn lockout() -> Options {
    Options { disable_sign_in: true, revoke_sessions: true, ..Options::default() }
}

/// Top-level messages naming `run`.
fn roots(seen: &[Posted], run: &RunId) -> Vec<Posted> {
    seen.iter().filter(|p| p.thread.is_none() && p.text.contains(run.as_str())).cloned().collect()
}

/// Everything in the thread of `root`.
fn thread(seen: &[Posted], root: &Posted) -> Vec<Posted> {
    seen.iter().filter(|p| p.thread.as_deref() == Some(root.id.as_str())).cloned().collect()
}

/// What was posted, without edit counts: comparing it shows nothing new was posted.
fn posts(seen: &[Posted]) -> Vec<(String, String, Option<String>, Option<String>)> {
    seen.iter().map(|p| (p.id.clone(), p.place.clone(), p.thread.clone(), p.file.clone())).collect()
}

/// Runs the contract on `surface`; `seen` reads what the platform shows; `a` and `b` are
/// the places Contoso's and Fabrikam's approvals are routed to.
pub async fn relay_contract(store: Store, surface: Arc<dyn ChatSurface>, seen: impl Fn() -> Vec<Posted>, a: &str, b: &str) {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_ymd_hms(2026, 6, 1, 9, 0, 0));
    let svc = two_tenants(store.clone(), clock.clone(), access());
    let mut routes = Routes::default();
    routes.add(tenant_id(), surface.platform(), a);
    routes.add(fabrikam(), surface.platform(), b);
    let templates = Arc::new(Templates::load(None, &[]).expect("templates"));
    let relay = || Relay::new(store.clone(), surface.clone(), NAME, routes.clone(), Some(Arc::new(StubReports)), templates.clone(), clock.clone());

    let run_a = svc.request(&requester(), Request::now(tenant_id(), "alice@contoso.com", lockout())).await.expect("request a");
    let run_b = svc.request(&requester(), Request::now(fabrikam(), "sam@fabrikam.com", lockout())).await.expect("request b");
    let first = relay();
    first.drain().await.expect("drain");

    // Each approval message once, in its tenant's place only.
    let now = seen();
    let (root_a, root_b) = (roots(&now, &run_a.id), roots(&now, &run_b.id));
    assert_eq!(root_a.iter().map(|p| p.place.as_str()).collect::<Vec<_>>(), [a], "{now:#?}");
    assert_eq!(root_b.iter().map(|p| p.place.as_str()).collect::<Vec<_>>(), [b], "{now:#?}");
    assert!(now.iter().filter(|p| p.place == b).all(|p| !p.text.contains(run_a.id.as_str())), "{now:#?}");
    assert!(now.iter().filter(|p| p.place == a).all(|p| !p.text.contains(run_b.id.as_str())), "{now:#?}");
    let (root_a, root_b) = (root_a[0].clone(), root_b[0].clone());

    // A refused click (the requester approving their own request) shows nothing to anyone
    // through the relay: the refusal is the clicker's alone.
    assert!(svc.approve(&requester(), &run_a.id, &run_a.plan_hash).await.is_err());
    first.drain().await.expect("drain");
    assert_eq!(seen(), now, "a refused click changed a message");

    // A new relay (a restart) carries on: the approval edits the message; once a step has
    // run, the status is in the run's thread, and no report while steps remain.
    drop(first);
    let second = relay();
    svc.approve(&admin1(), &run_a.id, &run_a.plan_hash).await.expect("approve");
    if run_a.approvals_needed > 1 {
        svc.approve(&admin2(), &run_a.id, &run_a.plan_hash).await.expect("second approval");
    }
    let claim = store.claim("contract-worker", clock.now(), chrono::Duration::minutes(1)).await.expect("claim").expect("a ready step");
    store.finish_step(&claim, &StepOutcome::done("read back", vec!["req-1".into()]), clock.now()).await.expect("finish");
    second.drain().await.expect("drain");
    let now = seen();
    assert_eq!(roots(&now, &run_a.id).len(), 1, "{now:#?}");
    assert!(now.iter().find(|p| p.id == root_a.id).expect("root").edits >= 1, "the approval message was not updated");
    let in_a = thread(&now, &root_a);
    assert_eq!(in_a.iter().filter(|p| p.file.is_none() && p.text.contains(run_a.id.as_str())).count(), 1, "one status message: {in_a:#?}");
    assert!(in_a.iter().all(|p| p.file.is_none()), "a report before the last step: {in_a:#?}");
    assert!(thread(&now, &root_b).is_empty(), "{now:#?}");

    // The steps run; then the report, once, in the thread, and the closing words.
    Worker::new(store.clone(), Arc::new(AlwaysDone), clock.clone(), WorkerConfig::default()).drain().await.expect("worker");
    second.drain().await.expect("drain");
    let done = seen();
    let in_a = thread(&done, &root_a);
    let report = format!("{}.pdf", run_a.id);
    assert_eq!(in_a.iter().filter(|p| p.file.as_deref() == Some(report.as_str())).count(), 1, "{in_a:#?}");
    assert_eq!(in_a.iter().filter(|p| p.file.is_none() && p.text.contains(run_a.id.as_str())).count(), 1, "{in_a:#?}");
    assert!(in_a.len() >= 3, "status, report and closing words: {in_a:#?}");
    assert!(in_a.iter().all(|p| p.place == a), "{in_a:#?}");
    assert!(thread(&done, &root_b).is_empty(), "{done:#?}");

    // The whole outbox again, through a third relay: nothing is posted twice.
    let consumer = format!("chat:{NAME}");
    let cursor = store.cursor(&consumer).await.expect("cursor");
    assert!(store.advance_cursor(&consumer, cursor, 0).await.expect("rewind"));
    relay().drain().await.expect("drain");
    let again = seen();
    assert_eq!(posts(&again), posts(&done), "a repeated batch posted again");
    assert_eq!(again.iter().find(|p| p.id == root_b.id).map(|p| p.place.as_str()), Some(b));
}
