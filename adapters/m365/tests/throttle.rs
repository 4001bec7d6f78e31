//! Throttling: the client paces itself under the published limits, and when Microsoft
//! throttles anyway it waits exactly as long as asked (the simulator counts early retries;
//! every test's world asserts there were none).

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
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
    let cx = Cx::new(&tenant, &trace);
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

#[tokio::test]
async fn an_unpublished_exchange_limit_is_found_and_kept_to() {
    // Contoso takes 40 Exchange calls a second and does not say so; the client starts at 20.
    let mut scenario = offboard_m365_sim::Scenario::contoso();
    scenario.tenants[0].exchange_calls_per_s = Some(40.0);
    let mut settings = fast_settings();
    settings.limits = Limits { time_scale: 0.1, ..Limits::default() };
    let w = World::scenario(&scenario, SimConfig { dilation: 0.1, ..SimConfig::default() }, settings).await;
    let tenant = w.m365.tenants().find(CONTOSO).unwrap().clone();
    let trace = Trace::new();
    let cx = Cx::new(&tenant, &trace);
    let get = offboard_m365::exchange::Command::new("Get-Mailbox", serde_json::json!({"Identity": ALICE}), None);
    // Sixteen callers with more to do than 40 a second allows.
    let calls = futures_util::stream::iter(0..1200).map(|_| w.m365.exchange().run(cx, &get, offboard_m365::transport::Replay::Safe)).buffer_unordered(16);
    let results: Vec<_> = calls.collect().await;
    assert!(results.iter().all(Result::is_ok), "every call lands in the end");
    let stats = w.sim.stats();
    assert!(stats.exchange_throttled > 0, "the limit was found by meeting it: {stats:?}");
    assert_eq!(stats.early_retries, 0, "no call went before its Retry-After");
    let share = stats.exchange_throttled as f64 / stats.exchange_requests as f64;
    assert!(share < 0.05, "{} of {} calls answered 429", stats.exchange_throttled, stats.exchange_requests);
    let rates = w.m365.exchange_rates();
    assert_eq!(rates.len(), 1);
    let (key, rate) = &rates[0];
    assert_eq!(key.as_str(), CONTOSO);
    assert!((20.0..=80.0).contains(rate), "the learned rate follows the limit: {rate}");
}
