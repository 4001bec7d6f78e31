//! Crash tests: a real worker process runs multi-step runs against the effect server (in
//! this test process, so side effects are counted outside the process that is killed),
//! and is killed with SIGKILL at named points. After a restart every run must complete,
//! no step may be lost, and no at-most-once effect may happen twice.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use offboard_core::clock::SystemClock;
use offboard_core::domain::RunId;
use offboard_core::plan::StepClass;
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_core::request::{DeviceAction, Options};
use offboard_core::run::{RunState, StepState};
use offboard_core::store::Store;
use offboard_testkit::fixtures::*;
use offboard_testkit::{Action, EffectServer, Phase, TestDb};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WORKER: &str = env!("CARGO_BIN_EXE_offboard-test-worker");

fn worker(db: &str, effects: &str, id: &str, crash_at: Option<&str>) -> Command {
    let mut cmd = Command::new(WORKER);
    cmd.env("DATABASE_URL", db)
        .env("EFFECTS_URL", effects)
        .env("WORKER_ID", id)
        .env("LEASE_MS", "800")
        .env("HEARTBEAT_MS", "200")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(at) = crash_at {
        cmd.env("CRASH_AT", at);
    }
    cmd
}

async fn wait_exit(child: &mut Child, within: Duration) -> bool {
    tokio::time::timeout(within, child.wait()).await.is_ok()
}

async fn wait_terminal(store: &Store, runs: &[RunId], within: Duration) {
    let start = Instant::now();
    loop {
        let mut done = true;
        for id in runs {
            if !store.run(id).await.unwrap().state.is_terminal() {
                done = false;
            }
        }
        if done {
            return;
        }
        assert!(start.elapsed() < within, "runs did not finish within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every run completed, every step ended well, and the effect ledger matches: each step
/// that ran applied at least once, each at-most-once step exactly once.
async fn check(store: &Store, effects: &EffectServer, runs: &[RunId], case: &str) -> (u64, u64) {
    let mut applied = 0;
    let mut once = 0;
    for id in runs {
        let run = store.run(id).await.unwrap();
        // Amber only for the on-premises group a person must leave by hand.
        assert!(matches!(run.state, RunState::Completed | RunState::CompletedWithWarnings), "{case}: run {id} {:?}", run.state);
        for step in store.steps(id).await.unwrap() {
            let planned = run.plan.step(&step.key).unwrap();
            let n = effects.count(id.as_str(), step.key.as_str());
            match step.state {
                StepState::Succeeded => assert!(n >= 1, "{case}: {id}/{} succeeded without an effect", step.key),
                StepState::Skipped => assert_eq!(n, 0, "{case}: {id}/{} skipped but applied", step.key),
                other => panic!("{case}: {id}/{} ended {other}", step.key),
            }
            if planned.class == StepClass::AtMostOnce && planned.skip.is_none() {
                assert_eq!(n, 1, "{case}: at-most-once {id}/{} applied {n} times", step.key);
                once += 1;
            }
            applied += n;
        }
    }
    assert!(store.verify_audit(&[]).await.unwrap().is_ok(), "{case}: audit chain");
    (applied, once)
}

#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// The worker kills itself at its n-th pass through a runner point.
    Worker(&'static str, u64),
    /// The effect server kills the worker at its n-th effect request, before or after
    /// applying it.
    Server(Phase, u64),
}

fn kill_points() -> Vec<KillPoint> {
    let mut points = Vec::new();
    for n in [1, 4, 9, 16, 25] {
        for p in ["claimed", "intent_journaled", "executed", "finished"] {
            // Three at-most-once steps a run, three runs: at most nine intents.
            if p == "intent_journaled" && n > 9 {
                continue;
            }
            points.push(KillPoint::Worker(p, n));
        }
        points.push(KillPoint::Server(Phase::BeforeApply, n));
        points.push(KillPoint::Server(Phase::AfterApply, n));
    }
    points.push(KillPoint::Worker("intent_journaled", 2));
    points.push(KillPoint::Worker("intent_journaled", 6));
    // A waiting step: killed between its "not yet" and the re-queue, and just after it.
    for n in [1, 4] {
        points.push(KillPoint::Worker("not_yet", n));
    }
    points.push(KillPoint::Worker("requeued", 2));
    points
}

/// A kill point inside a wait: the victim runs one step at a time, so exactly the waiting
/// step is in flight when it dies.
fn in_a_wait(point: &KillPoint) -> bool {
    matches!(point, KillPoint::Worker("not_yet" | "requeued", _))
}

async fn crash_matrix(db: TestDb) {
    let effects = EffectServer::start().await;
    let store = db.store().await;
    let svc = service(store.clone(), Arc::new(SystemClock), 3, TenantPolicy::default());
    let points = kill_points();
    let (mut applied, mut once, started) = (0, 0, Instant::now());
    for (i, point) in points.iter().enumerate() {
        let case = format!("{} {point:?}", db.backend);
        let mut runs = Vec::new();
        for user in ["alice@contoso.com", "user2@contoso.com", "user3@contoso.com"] {
            runs.push(approved_run(&svc, user, crash_options()).await.id);
        }
        let crash_at = match point {
            KillPoint::Worker(p, n) => Some(format!("{p}:{n}")),
            KillPoint::Server(..) => None,
        };
        let mut victim = worker(&db.url, &effects.url(), &format!("victim-{i}"), crash_at.as_deref());
        if in_a_wait(point) {
            victim.env("CONCURRENCY", "1").env("LOCKOUT_SLOTS", "0").env("EMERGENCY_SLOTS", "0");
        }
        let mut victim = victim.spawn().unwrap();
        if let KillPoint::Server(phase, n) = point {
            effects.set_pid(victim.id().unwrap());
            effects.trap(*n, *phase, Action::Kill, None);
        }
        assert!(wait_exit(&mut victim, Duration::from_secs(30)).await, "{case}: the kill point was never reached");
        effects.disarm();
        let mut survivor = worker(&db.url, &effects.url(), &format!("survivor-{i}"), None).spawn().unwrap();
        wait_terminal(&store, &runs, Duration::from_secs(60)).await;
        survivor.kill().await.unwrap();
        let (a, o) = check(&store, &effects, &runs, &case).await;
        applied += a;
        once += o;
        // Looks are not attempts: each waiting step counts its one attempt, plus one for a
        // kill that caught it between "not yet" and its re-queue (an interrupted attempt,
        // counted once), however many times it looked.
        let mut counted = 0;
        for id in &runs {
            let step = store.steps(id).await.unwrap().into_iter().find(|s| s.key.as_str() == "verify_shared").expect("the plan verifies the mailbox");
            assert!(effects.looks(id.as_str(), "verify_shared") >= offboard_testkit::LOOKS_UNTIL_READY, "{case}: {id} did not wait");
            assert!(step.polls >= 1, "{case}: {id} recorded no look");
            counted += step.counted_attempts();
        }
        match point {
            KillPoint::Worker("not_yet", _) => assert_eq!(counted, 4, "{case}: three attempts and one interrupted"),
            KillPoint::Worker("requeued", _) => assert_eq!(counted, 3, "{case}: a written re-queue costs no attempt"),
            _ => assert!(counted >= 3, "{case}: {counted}"),
        }
    }
    println!(
        "{}: {} kill points, {} runs, {} effects applied, {} at-most-once steps each applied exactly once, {:.1} s",
        db.backend,
        points.len(),
        points.len() * 3,
        applied,
        once,
        started.elapsed().as_secs_f64()
    );
    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_point_loses_nothing_on_sqlite() {
    crash_matrix(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_point_loses_nothing_on_postgres() {
    if offboard_testkit::postgres_skipped() {
        return;
    }
    crash_matrix(TestDb::postgres().await).await;
}

/// A worker frozen (SIGSTOP) right after its device action was applied loses its lease;
/// a second worker reads the effect back and finishes the run; when the first wakes up,
/// its write is refused and the device was acted on once.
async fn frozen_worker_is_fenced(db: TestDb) {
    let effects = EffectServer::start().await;
    let store = db.store().await;
    let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
    let svc = service(store.clone(), Arc::new(SystemClock), 3, policy);
    let options = Options { disable_sign_in: true, device_action: Some(DeviceAction::Retire), ..Options::default() };
    let run = approved_run(&svc, "alice@contoso.com", options).await;

    let mut frozen = worker(&db.url, &effects.url(), "frozen", None).stdout(Stdio::piped()).spawn().unwrap();
    effects.set_pid(frozen.id().unwrap());
    effects.trap(1, Phase::AfterApply, Action::Freeze, Some("device_action"));
    let start = Instant::now();
    while !effects.trap_fired() {
        assert!(start.elapsed() < Duration::from_secs(20), "{}: the device action never ran", db.backend);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut taker = worker(&db.url, &effects.url(), "taker", None).spawn().unwrap();
    wait_terminal(&store, std::slice::from_ref(&run.id), Duration::from_secs(30)).await;
    taker.kill().await.unwrap();

    let pid = frozen.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    effects.release();
    let mut lines = BufReader::new(frozen.stdout.take().unwrap()).lines();
    let refused = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("stale_write_refused") && line.contains("device_action") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    frozen.kill().await.unwrap();
    assert!(refused, "{}: the frozen worker's write was not refused", db.backend);
    assert_eq!(effects.count(run.id.as_str(), "device_action"), 1, "{}: the device was acted on twice", db.backend);
    let steps = store.steps(&run.id).await.unwrap();
    let device = steps.iter().find(|s| s.key.as_str() == "device_action").unwrap();
    assert_eq!((device.state, device.attempt), (StepState::Succeeded, 2));
    assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Completed);
    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_is_fenced_on_sqlite() {
    frozen_worker_is_fenced(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_is_fenced_on_postgres() {
    if offboard_testkit::postgres_skipped() {
        return;
    }
    frozen_worker_is_fenced(TestDb::postgres().await).await;
}

/// Two worker processes on one Postgres share 200 runs: every step runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_postgres_run_each_step_once() {
    if offboard_testkit::postgres_skipped() {
        return;
    }
    let db = TestDb::postgres().await;
    let effects = EffectServer::start().await;
    let store = db.store().await;
    let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
    let svc = service(store.clone(), Arc::new(SystemClock), 200, policy);
    let options = Options {
        disable_sign_in: true,
        revoke_sessions: true,
        reset_password: true,
        remove_groups: true,
        hide_from_gal: true,
        remove_licences: true,
        ..Options::default()
    };
    let mut runs = Vec::new();
    for n in 1..=200 {
        let user = if n == 1 { "alice@contoso.com".to_string() } else { format!("user{n}@contoso.com") };
        runs.push(approved_run(&svc, &user, options.clone()).await.id);
    }
    let started = Instant::now();
    let mut a = worker(&db.url, &effects.url(), "a", None).env("CONCURRENCY", "8").env("LEASE_MS", "10000").env("HEARTBEAT_MS", "2000").spawn().unwrap();
    let mut b = worker(&db.url, &effects.url(), "b", None).env("CONCURRENCY", "8").env("LEASE_MS", "10000").env("HEARTBEAT_MS", "2000").spawn().unwrap();
    wait_terminal(&store, &runs, Duration::from_secs(240)).await;
    let elapsed = started.elapsed();
    a.kill().await.unwrap();
    b.kill().await.unwrap();
    let mut steps_run = 0;
    for id in &runs {
        let state = store.run(id).await.unwrap().state;
        assert!(matches!(state, RunState::Completed | RunState::CompletedWithWarnings), "{id}: {state:?}");
        for s in store.steps(id).await.unwrap() {
            let n = effects.count(id.as_str(), s.key.as_str());
            match s.state {
                StepState::Succeeded => {
                    assert_eq!(n, 1, "{id}/{} ran {n} times", s.key);
                    assert_eq!(s.attempt, 1, "{id}/{} was claimed twice", s.key);
                    steps_run += 1;
                }
                StepState::Skipped => assert_eq!(n, 0),
                other => panic!("{id}/{} ended {other}", s.key),
            }
        }
    }
    assert_eq!(effects.total(), steps_run);
    println!("two workers: 200 runs, {steps_run} steps each executed once, {:.1} s", elapsed.as_secs_f64());
    store.close().await;
    db.cleanup().await;
}
