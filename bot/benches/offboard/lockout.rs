//! B2: from the approval until the simulated tenant's ledger shows the account disabled,
//! its sessions revoked and its password reset, at a fixed simulated latency; then whole
//! runs of the typical leaver. Approvals come one at a time into a process whose workers
//! are idle, as an approval click does.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use offboard_core::run::RunState;
use offboard_m365_sim::{Latency, SimConfig};
use serde_json::json;

use crate::fleet::{Fleet, FleetSpec, Setup, lockout, typical};
use crate::{Outcome, Row, percentile, sorted};

pub async fn run(full: bool) -> Outcome {
    let (reps, full_reps, latency_ms) = if full { (200u32, 10u32, 100u64) } else { (3, 1, 20) };
    let sim = SimConfig { latency: Latency::Fixed { ms: latency_ms }, conversion_delay: Duration::ZERO, ..SimConfig::default() };
    let fleet = Fleet::start(FleetSpec { tenants: 1, users: reps + full_reps + 1, sim, concurrency: 8, setup: Setup::default(), exchange_limit: None }).await;
    let domain = fleet.domains[0].clone();
    let (stop, workers) = fleet.workers();
    let mut out = Outcome::default();

    let (mut lock_ms, mut lock_requests) = (Vec::new(), Vec::new());
    for i in 1..=reps {
        let run = fleet.request(&domain, i, &lockout()).await;
        let before = fleet.sim.stats().http_requests;
        let t0 = Instant::now();
        fleet.approve(&run).await;
        while !fleet.locked_out(&domain, i) && t0.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let took = t0.elapsed();
        let requests = fleet.sim.stats().http_requests - before;
        out.check(fleet.locked_out(&domain, i), || format!("user {i} was not locked out within 30 s"));
        lock_ms.push(took.as_secs_f64() * 1e3);
        lock_requests.push(requests as f64);
        if let Err(e) = fleet.finish(&run.id, Duration::from_secs(60)).await {
            out.errors.push(e);
        }
        let state = fleet.store.run(&run.id).await.expect("run").state;
        out.check(state == RunState::Completed, || format!("lockout run {} ended {state:?}", run.id));
    }
    let (lock_ms, lock_requests) = (sorted(lock_ms), sorted(lock_requests));
    let round_trips = |ms: f64| ms / latency_ms as f64;

    let (mut full_ms, mut full_requests) = (Vec::new(), Vec::new());
    for i in reps + 1..=reps + full_reps {
        let run = fleet.request(&domain, i, &typical()).await;
        let before = fleet.sim.stats().http_requests;
        let t0 = Instant::now();
        fleet.approve(&run).await;
        match fleet.finish(&run.id, Duration::from_secs(120)).await {
            Ok(_) => {}
            Err(e) => out.errors.push(e),
        }
        full_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        full_requests.push((fleet.sim.stats().http_requests - before) as f64);
        let state = fleet.store.run(&run.id).await.expect("run").state;
        if state != RunState::Completed {
            let steps = fleet.store.steps(&run.id).await.expect("steps");
            let why: Vec<String> =
                steps.iter().filter(|s| s.outcome.as_ref().is_some_and(|o| o.is_warning())).map(|s| format!("{}: {:?}", s.key, s.outcome)).collect();
            out.errors.push(format!("full run {} ended {state:?}: {}", run.id, why.join("; ")));
        }
        for e in fleet.end_state_errors(&domain, i) {
            out.errors.push(e);
        }
    }
    let (full_ms, full_requests) = (sorted(full_ms), sorted(full_requests));
    let _ = stop.send(true);
    let _ = workers.await;

    let (p50, p99) = (percentile(&lock_ms, 0.5), percentile(&lock_ms, 0.99));
    out.rows.push(Row::new(
        format!("approval → lockout, {reps} reps at {latency_ms} ms"),
        format!(
            "p50 {p50:.0} ms ({:.2} RTT) / p99 {p99:.0} ms ({:.2} RTT) / max {:.0} ms",
            round_trips(p50),
            round_trips(p99),
            lock_ms.last().unwrap_or(&f64::NAN)
        ),
        "p50 ≤ 2 round trips; p99 ≤ 500 ms",
    ));
    out.rows.push(Row::new(
        "HTTP requests until lockout",
        format!("median {:.0}, max {:.0}", percentile(&lock_requests, 0.5), lock_requests.last().unwrap_or(&f64::NAN)),
        "limit: 1 round trip",
    ));
    let fp50 = percentile(&full_ms, 0.5);
    out.rows.push(Row::new(
        format!("full typical run, {full_reps} reps"),
        format!("p50 {fp50:.0} ms ({:.1} RTT), max {:.0} ms", round_trips(fp50), full_ms.last().unwrap_or(&f64::NAN)),
        "≤ 2 s",
    ));
    out.rows.push(Row::new(
        "HTTP requests per full run",
        format!("median {:.0}, max {:.0}", percentile(&full_requests, 0.5), full_requests.last().unwrap_or(&f64::NAN)),
        "≤ 25 round trips",
    ));
    out.json.extend(
        json!({
            "latency_ms": latency_ms, "reps": reps,
            "lockout_ms": { "p50": p50, "p99": p99, "max": lock_ms.last() },
            "lockout_round_trips": { "p50": round_trips(p50), "p99": round_trips(p99) },
            "lockout_requests": { "p50": percentile(&lock_requests, 0.5), "max": lock_requests.last() },
            "full_runs": full_reps,
            "full_run_ms": { "p50": fp50, "max": full_ms.last() },
            "full_run_round_trips_p50": round_trips(fp50),
            "full_run_requests": { "p50": percentile(&full_requests, 0.5), "max": full_requests.last() },
        })
        .as_object()
        .expect("object")
        .clone(),
    );
    fleet.cleanup().await;
    out
}

/// Approvals one at a time: approve, then wait until the user is locked out in the
/// simulated tenant. Milliseconds each. An emergency request needs no approval: its lockout
/// is released when the request is stored, so it is timed from the request's reply. A
/// lockout not seen within `limit` counts as `limit`, and as an error when `must`; what its
/// waiting lockout step said then goes into `said` ("nothing" if none said anything).
async fn lock_times(
    fleet: &Fleet,
    who: &[(String, u32)],
    emergency: bool,
    (limit, must): (Duration, bool),
    out: &mut Outcome,
    said: &mut Vec<String>,
) -> Vec<f64> {
    let mut times = Vec::new();
    for (domain, i) in who {
        let (run, t0) = if emergency {
            let req = offboard_core::request::Request {
                emergency: true,
                ..offboard_core::request::Request::now(fleet.tenant(domain), crate::fleet::upn(*i, domain), lockout())
            };
            let run = fleet.svc.request(&offboard_testkit::fixtures::admin1(), req).await.expect("emergency request");
            (run.id, Instant::now())
        } else {
            let run = fleet.request(domain, *i, &lockout()).await;
            let t0 = Instant::now();
            fleet.approve(&run).await;
            (run.id, t0)
        };
        while !fleet.locked_out(domain, *i) && t0.elapsed() < limit {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        if must {
            out.check(fleet.locked_out(domain, *i), || format!("{domain} user {i} was not locked out within {limit:?}"));
        }
        if !fleet.locked_out(domain, *i) {
            let steps = fleet.store.steps(&run).await.unwrap_or_default();
            let status = steps.iter().filter(|s| s.outcome.is_none()).find_map(|s| s.last_error.clone());
            said.push(status.unwrap_or_else(|| "nothing".into()));
        }
        times.push(t0.elapsed().min(limit).as_secs_f64() * 1e3);
    }
    times
}

/// B2 under load: while a bulk of typical leavers runs in one tenant, new lockouts are
/// approved in that tenant and in another, each timed from its approval.
pub async fn under_load(full: bool, postgres: bool) -> Outcome {
    let (bulk, reps, latency_ms) = if full { (1000u32, 20u32, 100u64) } else { (20, 2, 20) };
    let sim = SimConfig { latency: Latency::Fixed { ms: latency_ms }, conversion_delay: Duration::from_secs(120), ..SimConfig::default() };
    let setup = Setup { postgres, ..Setup::default() };
    // The shipped worker: its default slots.
    let concurrency = setup.concurrency.unwrap_or(offboard_core::engine::WorkerConfig::default().concurrency);
    let fleet = Fleet::start(FleetSpec { tenants: 2, users: bulk + reps, sim, concurrency, setup, exchange_limit: None }).await;
    let (busy, quiet) = (fleet.domains[0].clone(), fleet.domains[1].clone());
    let (stop, workers) = fleet.workers();
    let mut out = Outcome::default();
    // The bulk is requested and approved in the background, eight at a time.
    let requesting = {
        let svc = fleet.svc.clone();
        let domain = busy.clone();
        tokio::spawn(async move {
            futures_util::stream::iter(0..bulk)
                .for_each_concurrent(8, |i| {
                    let (svc, domain) = (svc.clone(), domain.clone());
                    async move {
                        let req = offboard_core::request::Request::now(
                            offboard_core::domain::TenantId::parse(&domain).expect("tenant"),
                            crate::fleet::upn(i, &domain),
                            typical(),
                        );
                        if let Ok(run) = svc.request(&offboard_testkit::fixtures::requester(), req).await {
                            let _ = svc.approve(&offboard_testkit::fixtures::admin1(), &run.id, &run.plan_hash).await;
                        }
                    }
                })
                .await
        })
    };
    // Under way: a tenth of the bulk approved.
    let started = Instant::now();
    while fleet.store.count_runs().await.map(|c| c.iter().filter(|(s, _)| *s != RunState::AwaitingApproval).map(|(_, n)| n).sum::<i64>()).unwrap_or(0)
        < (bulk / 10) as i64
        && started.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The cases take turns, so none is measured only in the bulk's busiest part.
    let (mut in_other, mut in_same, mut emergency, mut said) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // An approved lockout in the busy tenant takes its turn among the bulk's own lockouts,
    // which may have spent the tenant's write budget: it is timed, not required, to 30 s.
    let (must, turn) = ((Duration::from_secs(60), true), (Duration::from_secs(30), false));
    for i in bulk..bulk + reps / 2 {
        in_other.extend(lock_times(&fleet, &[(quiet.clone(), i)], false, must, &mut out, &mut Vec::new()).await);
        in_same.extend(lock_times(&fleet, &[(busy.clone(), i)], false, turn, &mut out, &mut said).await);
        emergency.extend(lock_times(&fleet, &[(busy.clone(), i + reps / 2)], true, must, &mut out, &mut Vec::new()).await);
    }
    let (in_other, in_same, emergency) = (sorted(in_other), sorted(in_same), sorted(emergency));
    let running = fleet.store.count_runs().await.map(|c| c.iter().filter(|(s, _)| *s == RunState::Running).map(|(_, n)| *n).sum::<i64>()).unwrap_or(0);
    let _ = stop.send(true);
    requesting.abort();
    let _ = workers.await;
    let rt = |ms: f64| ms / latency_ms as f64;
    let cases = [
        ("approval → lockout in another tenant", &in_other, "≤ 2 round trips"),
        ("approval → lockout in the busy tenant", &in_same, "its turn behind the bulk's lockouts"),
        ("emergency request → lockout in the busy tenant", &emergency, "≤ 2 round trips"),
    ];
    for (label, t, target) in cases {
        let (p50, max) = (percentile(t, 0.5), t.last().copied().unwrap_or(f64::NAN));
        let late = t.iter().filter(|ms| **ms >= turn.0.as_secs_f64() * 1e3).count();
        let late = if late > 0 { format!(", {late} of {} not within {} s", t.len(), turn.0.as_secs()) } else { String::new() };
        let late = if !late.is_empty() && label.contains("approval → lockout in the busy") {
            // What the threads of the lockouts still waiting said, by what they said.
            let mut by: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
            for s in &said {
                *by.entry(s.as_str()).or_default() += 1;
            }
            format!("{late} (their threads said: {})", by.iter().map(|(s, n)| format!("{n}× \"{s}\"")).collect::<Vec<_>>().join(", "))
        } else {
            late
        };
        out.rows.push(Row::new(
            format!("{label}, {bulk} bulk leavers running ({})", if postgres { "Postgres" } else { "SQLite" }),
            format!("p50 {p50:.0} ms ({:.2} RTT), max {max:.0} ms ({:.2} RTT){late}; {running} runs running", rt(p50), rt(max)),
            target,
        ));
    }
    out.json.extend(
        json!({ "bulk": bulk, "latency_ms": latency_ms, "runs_running_at_end": running, "store": if postgres { "postgres" } else { "sqlite" },
                "other_tenant_ms": in_other, "busy_tenant_ms": in_same, "emergency_busy_tenant_ms": emergency, "late_lockouts_said": said })
        .as_object()
        .expect("object")
        .clone(),
    );
    fleet.cleanup().await;
    out
}

/// Approval taken in this process, workers in `offboard serve` on the same Postgres: from
/// the approval to the lockout in the simulated tenant.
pub async fn split(full: bool) -> Outcome {
    let (reps, latency_ms) = if full { (30u32, 100u64) } else { (2, 20) };
    let mut out = Outcome::default();
    if offboard_testkit::postgres_skipped() {
        out.rows.push(Row::new("approval → lockout across processes", "skipped: no Postgres", "≤ 2 round trips + 50 ms"));
        return out;
    }
    let sim = SimConfig { latency: Latency::Fixed { ms: latency_ms }, conversion_delay: Duration::ZERO, ..SimConfig::default() };
    let fleet =
        Fleet::start(FleetSpec { tenants: 1, users: reps + 1, sim, concurrency: 8, setup: Setup { postgres: true, ..Setup::default() }, exchange_limit: None })
            .await;
    let domain = fleet.domains[0].clone();
    let tenants = vec![fleet.m365.tenants().get(&fleet.tenant(&domain)).expect("tenant")];
    let slack = offboard_slack::fake::FakeSlack::start("xoxb-bench").await;
    let dir = tempfile::tempdir().expect("dir");
    let config = crate::resources::common::write_config_for(dir.path(), fleet.sim.urls(), &tenants, &fleet.db.url, &crate::resources::chat(&slack, 8));
    let serving = match crate::resources::Serving::start(&config, std::process::Stdio::null(), &[]) {
        Ok(s) => s,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    let who: Vec<(String, u32)> = (1..=reps).map(|i| (domain.clone(), i)).collect();
    let times = sorted(lock_times(&fleet, &who, false, (Duration::from_secs(60), true), &mut out, &mut Vec::new()).await);
    drop(serving);
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    let rt = |ms: f64| ms / latency_ms as f64;
    out.rows.push(Row::new(
        format!("approval → lockout, workers in another process (Postgres), {reps} reps at {latency_ms} ms"),
        format!("p50 {p50:.0} ms ({:.2} RTT) / p99 {p99:.0} ms ({:.2} RTT)", rt(p50), rt(p99)),
        "≤ 2 round trips + 50 ms",
    ));
    out.json.extend(json!({ "reps": reps, "latency_ms": latency_ms, "lockout_ms": times, "p50_ms": p50, "p99_ms": p99 }).as_object().expect("object").clone());
    fleet.cleanup().await;
    out
}
