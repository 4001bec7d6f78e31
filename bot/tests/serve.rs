//! `offboard serve` as an operator runs it: configured from a TOML file against the
//! simulated tenant, answering /healthz, /readyz and /metrics, running an approved run,
//! stopping on SIGTERM within seconds mid-run, and finishing the run on the next start with
//! no at-most-once effect repeated.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_core::request::Presets;
use offboard_core::run::{RunState, StepState};
use offboard_core::service::Offboarding;
use offboard_m365::Settings;
use offboard_m365_sim::{Latency, Scenario, SimConfig};
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{access, approved_run, crash_options};

mod common;
use common::write_config;

fn start(config: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("OFFBOARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start offboard serve");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let (_, ops) = common::serving(&line);
    (child, ops)
}

fn terminate(child: &mut Child) -> Duration {
    let t = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
            return t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(30), "serve did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_stops_on_sigterm_and_the_next_start_completes_the_run() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
    // Slow calls, so the run is still going when the signal comes.
    let cfg = SimConfig { latency: Latency::Fixed { ms: 150 }, conversion_delay: Duration::from_millis(200), ..SimConfig::default() };
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), cfg, clock.clone(), Settings::default(), policy).await.unwrap();
    let db = TestDb::sqlite();
    let store = db.store().await;
    let svc = Offboarding::new(store.clone(), sim.m365.clone(), clock.clone(), access(), sim.tenants.clone(), Presets::default());
    let run = approved_run(&svc, "alice.able@contoso.com", crash_options()).await;
    // An Exchange rate learned by an earlier process.
    let contoso = offboard_core::domain::TenantId::parse("contoso.com").unwrap();
    store.save_learned_rate(&contoso, "exchange", 55.0, clock.now()).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, &db.url, "");
    let (mut first, url) = start(&config);
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{url}/healthz")).send().await.unwrap().text().await.unwrap(), "ok");
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("offboard_runs{state=\"approved\"} 1") || metrics.contains("offboard_runs{state=\"running\"} 1"), "{metrics}");

    // Stop it mid-run.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let steps = store.steps(&run.id).await.unwrap();
        if steps.iter().filter(|s| s.state == StepState::Succeeded).count() >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {steps:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let requests: u64 = metrics.lines().find_map(|l| l.strip_prefix("offboard_microsoft_requests_total ")).unwrap().parse().unwrap();
    assert!(requests > 0, "{metrics}");
    assert!(metrics.contains("offboard_step_duration_seconds_count{step=\"disable_sign_in\"} 1"), "{metrics}");
    assert!(metrics.contains("offboard_microsoft_throttled_total 0"), "{metrics}");
    let learned = |m: &str| -> f64 {
        m.lines().find_map(|l| l.strip_prefix("offboard_exchange_calls_per_second{tenant=\"contoso.com\"} ")).unwrap_or_else(|| panic!("{m}")).parse().unwrap()
    };
    let rate = learned(&metrics);
    assert!((55.0..111.0).contains(&rate), "starts from the learned rate, not the default 20: {rate}");
    let took = terminate(&mut first);
    println!("SIGTERM mid-run to exit: {took:?}");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    let state = store.run(&run.id).await.unwrap().state;
    assert!(!state.is_terminal(), "the run was still going when the process stopped ({state:?})");

    let kept = store.learned_rates("exchange").await.unwrap();
    assert!(kept.len() == 1 && kept[0].0 == contoso && kept[0].1 >= rate, "kept at shutdown: {kept:?}");

    // The next start completes it.
    let (mut second, url) = start(&config);
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(learned(&metrics) >= kept[0].1 - 0.01, "a restart goes on from what was learned");
    let deadline = Instant::now() + Duration::from_secs(120);
    let state = loop {
        let s = store.run(&run.id).await.unwrap().state;
        if s.is_terminal() || s == RunState::NeedsAttention {
            break s;
        }
        assert!(Instant::now() < deadline, "the run did not finish after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    terminate(&mut second);
    assert!(matches!(state, RunState::Completed | RunState::CompletedWithWarnings), "{state:?}: {:#?}", store.steps(&run.id).await.unwrap());
    assert_eq!(sim.sim.count_kind("user.password_reset"), 1, "the password was reset exactly once across the restart");
    db.cleanup().await;
}

#[test]
fn a_broken_config_gives_one_message_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(&config, "[[tenants]]\nkey = \"contoso.com\"\ndirectory_id = \"x\"\nclient_id = \"y\"\n").unwrap();
    for args in [vec!["serve"], vec!["config", "check"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_offboard")).args(&args).arg("--config").arg(&config).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(said.trim().lines().count(), 1, "{said}");
        assert!(said.contains("`tenants[0].client_secret`"), "{said}");
    }
    let out =
        Command::new(env!("CARGO_BIN_EXE_offboard")).args(["config", "check"]).env("OFFBOARD__TENANTS", "[]").arg("--config").arg(&config).output().unwrap();
    assert!(out.status.success(), "an environment override replaces the file's value: {}", String::from_utf8_lossy(&out.stderr));
}

/// Opens `n` connections that send half a request head and then nothing.
async fn half_sent(addr: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /slack/commands HTTP/1.1\r\nHost: offboard\r\nContent-Length: 10\r\n").await.unwrap();
        held.push(s);
    }
    held
}

/// Whether the server closed the connection: a read ends with EOF or a reset.
async fn closed(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    matches!(tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)) | Ok(Ok(_)))
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_cannot_hold_the_server_open() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), SimConfig::default(), clock, Settings::default(), TenantPolicy::default()).await.unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let slack = "[slack]\nsigning_secret = \"slow-client-secret\"\nbot_token = \"xoxb-slow\"\napprovals_channel = \"C0APPROVALS\"\napi_url = \"http://127.0.0.1:9/api\"\n";
    let config = write_config(dir.path(), &sim, &db.url, slack);
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("OFFBOARD_LOG", "warn")
        .env("OFFBOARD__HTTP__MAX_CONNECTIONS", "400")
        .env("OFFBOARD__HTTP__HEADER_TIMEOUT_SECS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let (public, ops) = common::serving(&line);
    let addr = public.trim_start_matches("http://").to_string();
    let driver = offboard_slack::fake::Driver::new(public.clone(), offboard_core::secret::Secret::new("slow-client-secret"));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();

    // 300 half-sent requests: health checks and a signed command still answer at once.
    let mut held = half_sent(&addr, 300).await;
    let t = Instant::now();
    assert_eq!(http.get(format!("{ops}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{public}/healthz")).send().await.unwrap().status(), 200);
    let r = driver.command("UNOBODY", "help", "trigger-slow-1").await.unwrap();
    assert_eq!(r.status(), 200);
    println!("answers with 300 half-sent requests open: {:?}", t.elapsed());
    // The head never finished: the server closes each after the header timeout.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let mut open = 0;
    for s in held.iter_mut().take(50) {
        if !closed(s).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "half-sent requests are closed after the header timeout");
    drop(held);

    // More than the limit: the extra connections are closed at once, the operators'
    // listener is untouched, and the public one answers again once the slow ones expire.
    let held = half_sent(&addr, 450).await;
    assert_eq!(http.get(format!("{ops}/readyz")).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let r = driver.command("UNOBODY", "help", "trigger-slow-2").await.unwrap();
    assert_eq!(r.status(), 200);
    drop(held);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let _ = child.wait();
    db.cleanup().await;
}

/// A tenant whose sign-in fails: `/readyz` says so without naming the customer, asks Entra
/// once per interval however often it is probed, and is not on the public listener.
#[tokio::test(flavor = "multi_thread")]
async fn readiness_names_no_customer_and_is_not_public() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), SimConfig::default(), clock, Settings::default(), TenantPolicy::default()).await.unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, &db.url, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let secret = text.lines().find_map(|l| l.strip_prefix("client_secret = ")).unwrap().to_string();
    std::fs::write(&config, text.replace(&secret, "\"not-the-secret\"")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("OFFBOARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let (public, ops) = common::serving(&line);
    let http = reqwest::Client::new();
    let before = sim.sim.stats().token_requests;
    for _ in 0..5 {
        let r = http.get(format!("{ops}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        let said = r.text().await.unwrap();
        assert_eq!(said, "not ready: Microsoft sign-in failed for tenant 1 of 1");
        assert!(!said.contains("contoso"), "{said}");
    }
    assert!(sim.sim.stats().token_requests - before <= 2, "one check per interval, not one per probe");
    assert_eq!(http.get(format!("{public}/readyz")).send().await.unwrap().status(), 404);
    assert_eq!(http.get(format!("{public}/metrics")).send().await.unwrap().status(), 404);
    assert_eq!(http.get(format!("{public}/healthz")).send().await.unwrap().status(), 200);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("not ready: Microsoft sign-in") && logs.contains("contoso.com"), "the log says which tenant: {logs}");
    assert!(!logs.contains('\u{1b}'), "no terminal colours in a log that is not a terminal: {logs:?}");
    db.cleanup().await;
}
