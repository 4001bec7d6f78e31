//! Two `offboard serve` processes on one Postgres behave as one: 100 runs (half released
//! at once, half scheduled a few seconds ahead), every step executed once (the simulated
//! tenant's ledger), every scheduled run fired once (the audit log).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_core::request::{Options, Presets, Request, Schedule};
use offboard_core::run::RunState;
use offboard_core::service::Offboarding;
use offboard_m365::Settings;
use offboard_m365_sim::{Scenario, SimConfig};
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{access, admin1, requester};

mod common;

fn serve(config: &std::path::Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("OFFBOARD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start offboard serve");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("offboard: serving on"), "{line}");
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_one_postgres_run_each_step_and_fire_each_schedule_once() {
    if offboard_testkit::postgres_skipped() {
        return;
    }
    let mut scenario = Scenario::generate(1, 100);
    scenario.tenants[0].apps = Scenario::contoso().tenants[0].apps.clone();
    let domain = scenario.tenants[0].domains[0].clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
    let sim = offboard_m365::simulated::start(&scenario, SimConfig::default(), clock.clone(), Settings::default(), policy).await.unwrap();
    let db = TestDb::postgres().await;
    let store = db.store().await;
    // Requests are discovered from a copy of the directory: Microsoft 365 discovery scans
    // every other mailbox for rights, which makes 100 discoveries slow and is not what
    // this test is about. The steps run against the simulated tenant.
    let tenant_id = sim.tenants[0].id.clone();
    let users = (0..100)
        .map(|i| {
            let upn = format!("user{i:05}@{domain}");
            let mut u = offboard_core::testing::user_named(i + 1, &upn, &format!("User {i:05}"));
            u.id = offboard_core::domain::ObjectId::parse(&sim.sim.tenant(&domain, |t| t.user_id(&upn)).flatten().unwrap()).unwrap();
            u
        })
        .collect();
    let directory = Arc::new(offboard_core::testing::InMemoryDirectory::with(tenant_id, users));
    let svc = Offboarding::new(store.clone(), directory, clock.clone(), access(), sim.tenants.clone(), Presets::default());

    // A lockout with an at-most-once password reset, for 100 users.
    let options = Options { disable_sign_in: true, revoke_sessions: true, reset_password: true, ..Options::default() };
    let mut ids = Vec::new();
    for i in 0..100 {
        // Due once both processes are up.
        let at = Utc::now().naive_utc() + chrono::Duration::seconds(12);
        let schedule = if i % 2 == 0 { Schedule::Now } else { Schedule::At { local: at, tz: "UTC".into() } };
        let req = Request { schedule, ..Request::now(sim.tenants[0].id.clone(), format!("user{i:05}@{domain}"), options.clone()) };
        let run = svc.request(&requester(), req).await.unwrap();
        svc.approve(&admin1(), &run.id, &run.plan_hash).await.unwrap();
        ids.push(run.id);
    }

    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), &sim, &db.url, "");
    let text = std::fs::read_to_string(&config).unwrap().replace("domains = [\"contoso.com\"]", &format!("domains = [\"{domain}\"]"));
    std::fs::write(&config, text).unwrap();
    let mut a = serve(&config);
    let mut b = serve(&config);

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = store.list_runs(None, 1000).await.unwrap();
        if runs.iter().filter(|r| r.state == RunState::Completed).count() == 100 {
            break;
        }
        assert!(Instant::now() < deadline, "not all runs completed: {:?}", runs.iter().map(|r| r.state).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for c in [&mut a, &mut b] {
        Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
        c.wait().unwrap();
    }

    assert_eq!(sim.sim.count_kind("user.password_reset"), 100, "each at-most-once reset exactly once");
    assert_eq!(sim.sim.count_kind("user.disabled"), 100, "each sign-in disabled once");
    let audit = store.audit_entries(0, 100_000).await.unwrap();
    for id in ids.iter().skip(1).step_by(2) {
        let fired = audit.iter().filter(|e| e.run_id.as_deref() == Some(id.as_str()) && e.action == "run.started").count();
        assert_eq!(fired, 1, "scheduled run {id} started {fired} times");
    }
    let schedulers: std::collections::BTreeSet<&str> = audit.iter().filter(|e| e.action == "run.started").map(|e| e.actor.as_str()).collect();
    assert!(!schedulers.is_empty());
    db.cleanup().await;
}
