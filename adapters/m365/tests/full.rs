//! A full offboarding of the richest scenario user through the real engine and store:
//! discovery, plan, two approvals, the worker, and the simulator's final state checked
//! against the plan. Also measures requests, round trips and wall time.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::domain::PresetName;
use offboard_core::engine::{RetryPolicy, Worker, WorkerConfig};
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_core::request::{ForwardTarget, ForwardTo, Presets};
use offboard_core::run::{RunState, StepOutcome, StepState};
use offboard_core::service::{Offboarding, Tenant};
use offboard_m365_sim::{Latency, SimConfig};
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{access, approved_run};

async fn offboard(w: &World, upn: &str) -> (Vec<offboard_core::store::StepRecord>, Duration) {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tenant = Tenant {
        id: World::tenant(),
        name: "Contoso".into(),
        domains: vec![CONTOSO.into()],
        policy: TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() },
    };
    let failed = offboard_core::delegations::Indexer::new(store.clone(), w.m365.clone(), clock.clone(), vec![World::tenant()]).build_all().await;
    assert!(failed.is_empty(), "{failed:?}");
    let svc = Offboarding::new(store.clone(), w.m365.clone(), clock.clone(), access(), vec![tenant], Presets::default());
    let mut o = Presets::builtin(&PresetName::parse("standard-leaver").unwrap()).unwrap();
    o.cancel_meetings = true;
    o.remove_mailbox_permissions = true;
    o.remove_calendar_permissions = true;
    o.rename_template = Some("ZZ {{ displayName }}".into());
    // A hand-over forward replaces the leaver's own one.
    o.disable_forwarding = false;
    o.forward_to = Some(ForwardTo { target: ForwardTarget::Manager, keep_copy: true });
    let started = Instant::now();
    let run = approved_run(&svc, upn, o).await;
    let config = WorkerConfig {
        poll: Duration::from_millis(20),
        retry: RetryPolicy { initial: Duration::from_millis(50), cap: Duration::from_millis(500), ..RetryPolicy::default() },
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), w.m365.clone(), clock, config);
    let stop = tokio::time::sleep(Duration::from_secs(90));
    let store2 = store.clone();
    let id = run.id.clone();
    let watch = async move {
        loop {
            if store2.run(&id).await.unwrap().state.is_terminal() || store2.run(&id).await.unwrap().state == RunState::NeedsAttention {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = worker.run_until_stopped(stop) => {}
        _ = watch => {}
    }
    let elapsed = started.elapsed();
    let final_state = store.run(&run.id).await.unwrap().state;
    let steps = store.steps(&run.id).await.unwrap();
    assert!(final_state == RunState::Completed || final_state == RunState::CompletedWithWarnings, "run ended {final_state:?}: {steps:#?}");
    store.close().await;
    db.cleanup().await;
    (steps, elapsed)
}

#[tokio::test]
async fn the_richest_user_is_fully_offboarded_and_the_tenant_shows_it() {
    let w = World::new().await;
    let (steps, _) = offboard(&w, ALICE).await;
    for s in &steps {
        match (&s.state, &s.outcome) {
            (StepState::Succeeded, Some(StepOutcome::Succeeded { request_ids, .. })) => assert!(!request_ids.is_empty(), "{}", s.key),
            (StepState::Skipped, Some(StepOutcome::Skipped { reason, .. })) => assert!(!reason.is_empty()),
            other => panic!("{}: {other:?}", s.key),
        }
    }
    assert!(steps.iter().filter(|s| s.state == StepState::Succeeded).count() >= 20, "{steps:#?}");
    let mary = w.user_id("mary.manager@contoso.com");
    let info = w.user_id("info@contoso.com");
    w.sim_user(ALICE, |t, id| {
        let u = &t.users[id];
        assert!(!u.account_enabled);
        assert_eq!(u.display_name, "ZZ Alice Able");
        assert_eq!(u.auth_methods.len(), 1);
        assert!(u.password_changed.is_some());
        assert!(t.licence_states(id).is_empty(), "licences reclaimed");
        let groups: Vec<&str> = t.groups.values().filter(|g| g.members.contains(id)).map(|g| g.name.as_str()).collect();
        assert!(groups.iter().all(|g| *g == "All Staff" || *g == "HQ Staff (AD)"), "{groups:?}");
        let mb = &t.mailboxes[id];
        assert_eq!(mb.kind, offboard_m365_sim::world::MailboxKind::Shared);
        assert!(!mb.disconnected && mb.hidden && mb.rules.is_empty() && mb.mobile_devices.is_empty());
        assert_eq!(mb.forwarding_address.as_deref(), Some(mary.as_str()));
        assert!(mb.forwarding_smtp.is_none(), "the leaver's external forward is gone");
        assert_eq!(mb.auto_reply.status, "alwaysEnabled");
        assert!(mb.full_access.contains(&mary));
        assert!(mb.events.iter().filter(|e| e.is_organizer && !e.attendees.is_empty()).all(|e| e.cancelled));
        assert!(!t.mailboxes[&info].send_as.contains(id));
        assert!(!t.mailboxes[&mary].send_on_behalf.contains(id));
        assert!(t.managed.values().filter(|m| m.user == *id).all(|m| m.state == "retirePending"));
        assert!(t.drives[id].shared_with.iter().any(|(e, _)| e == "mary.manager@contoso.com"));
    });
    assert_eq!(w.sim.count_kind("mailbox.disabled"), 0, "the mailbox was never orphaned by an early licence removal");
}

/// The figures for the issue note: requests and round trips for one typical user, and the
/// wall time with 100 ms of simulated latency per call. Prints, asserts only sanity.
#[tokio::test]
async fn measure_a_typical_offboarding() {
    for latency in [0u64, 100] {
        let cfg = SimConfig { conversion_delay: Duration::from_millis(300), latency: Latency::Fixed { ms: latency }, ..SimConfig::default() };
        let w = World::with(cfg, fast_settings()).await;
        let (_, discovery) = w.discover_traced("jack.delegate@contoso.com").await;
        let before = w.sim.stats();
        let (steps, elapsed) = offboard(&w, "jack.delegate@contoso.com").await;
        let after = w.sim.stats();
        let http = after.graph_requests + after.exchange_requests - before.graph_requests - before.exchange_requests;
        println!(
            "typical user (jack.delegate), latency {latency} ms: discovery {} requests; full run (discovery again + {} steps) {http} HTTP requests to Graph/Exchange, {} Graph batch items, {} token requests in all; wall {:.2} s",
            discovery.requests(),
            steps.len(),
            after.graph_batch_items - before.graph_batch_items,
            after.token_requests,
            elapsed.as_secs_f64()
        );
        assert!(http > 0);
    }
}
