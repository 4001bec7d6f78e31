//! Throttling: the client paces itself under the published limits, and when Microsoft
//! throttles anyway it waits exactly as long as asked (the simulator counts early retries;
//! every test's world asserts there were none).

mod common;

use std::time::{Duration, Instant};

use common::*;
use offboard_core::plan::StepKind;
use offboard_core::request::Options;
use offboard_m365::pacing::Limits;
use offboard_m365::trace::Trace;
use offboard_m365::transport::Cx;
use offboard_m365_sim::SimConfig;

#[tokio::test]
async fn throttled_work_waits_as_asked_and_completes() {
    let sim_limits = offboard_m365_sim::Limits { ru_small: 30.0, writes: 6.0, ..offboard_m365_sim::Limits::default() };
    let w =
        World::with(SimConfig { limits: sim_limits, dilation: 0.05, conversion_delay: Duration::from_millis(300), ..SimConfig::default() }, fast_settings())
            .await;
    let alice = w.discover(ALICE).await;
    let o = Options { disable_sign_in: true, revoke_sessions: true, remove_groups: true, remove_mfa: true, remove_admin_roles: true, ..Options::default() };
    for k in [StepKind::DisableSignIn, StepKind::RevokeSessions, StepKind::RemoveGroups, StepKind::RemoveMfaMethods] {
        succeeded(w.step(&alice, o.clone(), k).await);
    }
    let stats = w.sim.stats();
    assert!(stats.throttled > 0, "the limits were reached: {stats:?}");
    assert_eq!(stats.early_retries, 0);
    w.sim_user(ALICE, |t, id| assert!(!t.users[id].account_enabled));
}

#[tokio::test]
async fn pacing_keeps_a_burst_under_the_limits_without_a_single_429() {
    // The simulator allows 60 resource units per 10 s; the client budgets 50.
    let sim_limits = offboard_m365_sim::Limits { ru_small: 60.0, ..offboard_m365_sim::Limits::default() };
    let mut settings = fast_settings();
    settings.limits = Limits { identity_ru_per_10s: 50.0, ..Limits::default() };
    let w = World::with(SimConfig { limits: sim_limits, ..SimConfig::default() }, settings).await;
    let tenant = w.m365.tenants().find(CONTOSO).unwrap().clone();
    let trace = Trace::new();
    let cx = Cx { tenant: &tenant, trace: &trace };
    let alice = w.user_id(ALICE);
    let start = Instant::now();
    let user = format!("/users/{alice}?$select=id");
    let reads = (0..60).map(|_| w.m365.graph().get(cx, &user));
    for r in futures_util::future::join_all(reads).await {
        r.unwrap();
    }
    // Outlook: at most four requests in flight per mailbox.
    let settings = format!("/users/{alice}/mailboxSettings");
    let reads = (0..16).map(|_| w.m365.graph().get(cx, &settings));
    for r in futures_util::future::join_all(reads).await {
        r.unwrap();
    }
    assert_eq!(w.sim.stats().throttled, 0, "{:?}", w.sim.stats());
    assert!(start.elapsed() >= Duration::from_millis(1500), "ten units over budget wait about two seconds: {:?}", start.elapsed());
}
