//! B3 and B4: many typical leavers requested and approved at once, run against Microsoft's
//! throttling model with every window and latency scaled by the dilation factor k,
//! compared with the bound of reliability.md §6.3 recomputed from the writes and identity
//! resource units the runs actually used (and, where a tenant has a hidden Exchange limit,
//! the Exchange calls at that limit). The clock runs from the first request: each leaver's discovery is timed.
//! Cases say how long a mailbox conversion takes (real ones take seconds to minutes); a
//! step waiting for one holds no worker slot, which the slot time of the verify step shows.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use offboard_core::plan::StepKind;
use offboard_core::run::RunState;
use offboard_m365_sim::{FaultRates, Latency, SimConfig};
use serde_json::{Value, json};

use crate::fleet::{Fleet, FleetSpec, Setup, typical};
use crate::resources::{Usage, db_bytes, serve};
use crate::{Outcome, Row};

/// Microsoft's limits (graph.md §3), per second of Microsoft time.
const WRITES_BURST: f64 = 3_000.0;
const WRITES_PER_S: f64 = 3_000.0 / 150.0;
const TENANT_WRITES_BURST: f64 = 18_000.0;
const TENANT_WRITES_PER_S: f64 = 18_000.0 / 300.0;
const APP_WRITES_BURST: f64 = 35_000.0;
const APP_WRITES_PER_S: f64 = 35_000.0 / 300.0;
const INTUNE_WRITES_BURST: f64 = 100.0;
const INTUNE_WRITES_PER_S: f64 = 100.0 / 20.0;
/// One leaver cannot finish faster than its critical path (§6.3: ≈ 1.4 s at 100 ms).
const ONE_USER_FLOOR_S: f64 = 1.4;

/// The shortest wall time Microsoft's limits allow, from idle buckets, in Microsoft seconds.
/// `ru` is each leaver's identity resource units (discovery included) and the tenant's
/// budget per 10 s, which its size sets.
pub fn bound(tenants: u32, users_per_tenant: u32, writes_per_user: f64, intune_writes_per_user: f64, ru: (f64, f64), exchange: Option<(f64, f64)>) -> f64 {
    let drain = |total: f64, burst: f64, rate: f64| ((total - burst) / rate).max(0.0);
    let n = users_per_tenant as f64;
    let (ru_per_user, ru_per_10s) = ru;
    // A hidden Exchange limit of `limit` calls per second with a second's burst.
    let exchange = exchange.map_or(0.0, |(calls_per_user, limit)| drain(n * calls_per_user, limit, limit));
    let per_tenant = drain(n * writes_per_user, WRITES_BURST, WRITES_PER_S)
        .max(drain(n * writes_per_user, TENANT_WRITES_BURST, TENANT_WRITES_PER_S))
        .max(drain(n * intune_writes_per_user, INTUNE_WRITES_BURST, INTUNE_WRITES_PER_S))
        .max(drain(n * ru_per_user, ru_per_10s, ru_per_10s / 10.0))
        .max(exchange);
    let all = drain(n * tenants as f64 * writes_per_user, APP_WRITES_BURST, APP_WRITES_PER_S);
    per_tenant.max(all).max(ONE_USER_FLOOR_S)
}

/// Where the runs execute.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Workers in this process, pacing in the simulator's dilated time.
    InProcess,
    /// `offboard serve` as its own process with its Slack relay; it paces in real time, so
    /// only for k = 1.
    Serve,
}

pub struct Case {
    pub name: &'static str,
    pub engine: Engine,
    pub tenants: u32,
    pub users: u32,
    pub dilation: f64,
    pub faults: FaultRates,
    pub concurrency: usize,
    /// How long a mailbox conversion takes, in Microsoft seconds.
    pub conversion_s: f64,
    /// Each tenant's hidden Exchange limit, calls per Microsoft second.
    pub exchange_limit: Option<f64>,
}

impl Case {
    fn new(name: &'static str, engine: Engine, tenants: u32, users: u32, dilation: f64, concurrency: usize) -> Self {
        Case { name, engine, tenants, users, dilation, faults: quiet(), concurrency, conversion_s: 0.0, exchange_limit: None }
    }

    fn converting(mut self, seconds: f64) -> Self {
        self.conversion_s = seconds;
        self
    }

    fn exchange_limit(mut self, per_s: f64) -> Self {
        self.exchange_limit = Some(per_s);
        self
    }

    pub fn label(&self) -> String {
        let mut extra = String::new();
        if self.conversion_s > 0.0 {
            extra.push_str(&format!(", conversions {:.0} s", self.conversion_s));
        }
        if let Some(l) = self.exchange_limit {
            extra.push_str(&format!(", Exchange limit {l:.0}/s"));
        }
        format!("{} (k = {}{}{})", self.name, self.dilation, extra, if self.engine == Engine::Serve { ", offboard serve" } else { "" })
    }
}

pub struct Measured {
    pub json: Value,
    pub errors: Vec<String>,
    pub row: Row,
    pub usage: Usage,
    pub db_bytes_per_user: f64,
}

pub async fn measure(case: &Case, setup: Setup) -> Measured {
    let postgres = setup.postgres;
    let concurrency = setup.concurrency.unwrap_or(case.concurrency);
    let k = case.dilation;
    assert!(case.engine == Engine::InProcess || k == 1.0, "offboard serve paces in real time");
    let sim = SimConfig {
        dilation: k,
        latency: Latency::Fixed { ms: 100 },
        faults: case.faults.clone(),
        conversion_delay: Duration::from_secs_f64(case.conversion_s),
        ..SimConfig::default()
    };
    let fleet = Fleet::start(FleetSpec { tenants: case.tenants, users: case.users, sim, concurrency, setup, exchange_limit: case.exchange_limit }).await;
    let mut errors = Vec::new();
    let jobs: Vec<(String, u32)> = fleet.domains.iter().flat_map(|d| (0..case.users).map(move |i| (d.clone(), i))).collect();
    let total = jobs.len() as f64;
    let db_before = db_bytes(&fleet.store, &fleet.db.url).await;
    let before = fleet.sim.stats();
    // Requests (each discovering its leaver) and approvals, 32 at a time as a bulk
    // import would send them, with the clock already running.
    let request_all = || {
        let fleet = &fleet;
        futures_util::stream::iter(jobs.iter().cloned())
            .map(move |(d, i)| async move {
                let run = fleet.request(&d, i, &typical()).await;
                fleet.approve(&run).await;
                run.id
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
    };
    let (wall, usage, reports) = match case.engine {
        Engine::InProcess => {
            let usage = Usage::start("self");
            let (stop, workers) = fleet.workers();
            let started = std::time::Instant::now();
            let runs = request_all().await;
            let wall = fleet.finish_all(runs.len(), Duration::from_secs(3600)).await.map(|_| started.elapsed()).unwrap_or_else(|e| {
                errors.push(e);
                Duration::from_secs(3600)
            });
            let usage = usage.stop();
            let _ = stop.send(true);
            let _ = workers.await;
            (wall, usage, None)
        }
        // `offboard serve` starts on the approved runs: its clock starts after discovery.
        Engine::Serve => match serve(&fleet, &request_all().await, concurrency, setup.exchange_per_s).await {
            Ok(s) => (s.wall, s.usage, Some(s.reports)),
            Err(e) => {
                errors.push(e);
                (Duration::from_secs(3600), Usage::start("self").stop(), None)
            }
        },
    };
    let after = fleet.sim.stats();
    let db_after = db_bytes(&fleet.store, &fleet.db.url).await;

    // End state in the tenant, and at-most-once effects applied more than once.
    let mut wrong = 0;
    for (d, i) in &jobs {
        let e = fleet.end_state_errors(d, *i);
        if !e.is_empty() {
            wrong += 1;
            if errors.len() < 10 {
                errors.extend(e);
            }
        }
    }
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for e in fleet.sim.ledger() {
        if ["user.password_reset", "managed_device.retired", "managed_device.wiped", "event.cancelled"].contains(&e.kind.as_str()) {
            *counts.entry((e.kind, e.target)).or_default() += 1;
        }
    }
    let duplicates: u64 = counts.values().map(|n| n - 1).sum();
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    let (mut looks, mut verify_attempts) = (0i64, 0i64);
    for r in fleet.store.list_runs(None, total as i64 + 10).await.unwrap_or_default() {
        *states.entry(format!("{:?}", r.state)).or_default() += 1;
        let steps = fleet.store.steps(&r.id).await.unwrap_or_default();
        if let Some(v) = steps.iter().find(|s| s.key == StepKind::VerifyShared.key()) {
            looks += v.polls;
            verify_attempts += v.counted_attempts();
        }
        if r.state != RunState::Completed {
            for s in steps {
                if let Some(o) = s
                    .outcome
                    .as_ref()
                    .filter(|o| !matches!(o, offboard_core::run::StepOutcome::Succeeded { .. } | offboard_core::run::StepOutcome::Skipped { .. }))
                {
                    errors.push(format!("{} {}: {o:?}", r.target_upn, s.key));
                }
            }
        }
    }
    let completed = states.get(&format!("{:?}", RunState::Completed)).copied().unwrap_or(0);
    let correct = (total - wrong as f64) / total * 100.0;
    if completed as f64 != total {
        errors.push(format!("run states: {states:?}"));
    }
    if duplicates > 0 {
        errors.push(format!("{duplicates} at-most-once effects applied twice: {:?}", counts.iter().filter(|(_, n)| **n > 1).take(5).collect::<Vec<_>>()));
    }
    let early = after.early_retries - before.early_retries;
    if early > 0 {
        errors.push(format!("{early} requests sent before their Retry-After expired"));
    }

    let writes = (after.identity_writes - before.identity_writes) as f64 / total;
    let intune = (after.intune_writes - before.intune_writes) as f64 / total;
    let ru = (after.identity_ru - before.identity_ru) as f64 / total;
    let ru_per_10s = fleet.ru_per_10s();
    let exchange = (after.exchange_requests - before.exchange_requests) as f64 / total;
    let round_trips = ((after.graph_requests + after.exchange_requests + after.token_requests)
        - (before.graph_requests + before.exchange_requests + before.token_requests)) as f64
        / total;
    let sub_requests = ((after.graph_requests - before.graph_requests) + (after.graph_batch_items - before.graph_batch_items)) as f64 / total;
    let throttled = after.throttled - before.throttled;
    let exchange_throttled = after.exchange_throttled - before.exchange_throttled;
    let exchange_calls = (after.exchange_requests - before.exchange_requests) as f64;
    let exchange_429_pct = if exchange_calls > 0.0 { exchange_throttled as f64 / exchange_calls * 100.0 } else { 0.0 };
    let microsoft_s = wall.as_secs_f64() / k;
    // A call answered 429 did no work: the limit is on the calls it let through.
    let exchange_done = (exchange_calls - exchange_throttled as f64) / total;
    // No leaver finishes before its mailbox has converted.
    let bound_s = bound(case.tenants, case.users, writes, intune, (ru, ru_per_10s), case.exchange_limit.map(|l| (exchange_done, l)))
        .max(case.conversion_s + ONE_USER_FLOOR_S);
    let efficiency = bound_s / microsoft_s * 100.0;
    let per_min = total / microsoft_s * 60.0;
    let db_per_user = (db_after.saturating_sub(db_before)) as f64 / total;
    // Average worker slots held by the step that waits for conversions, and by all steps.
    let verify_slots = fleet.busy.of(StepKind::VerifyShared).as_secs_f64() / wall.as_secs_f64();
    let all_slots = fleet.busy.total().as_secs_f64() / wall.as_secs_f64();
    let learned: Vec<f64> = fleet.m365.exchange_rates().into_iter().map(|(_, r)| r).collect();
    let mut measured = format!(
        "{per_min:.0} users/min; {microsoft_s:.0} s vs bound {bound_s:.0} s = {efficiency:.0} %; 429s {throttled}; early {early}; {round_trips:.1} RT, {sub_requests:.1} requests and {ru:.0} RU/user; correct {correct:.1} %; dup {duplicates}"
    );
    if case.engine == Engine::InProcess {
        measured.push_str(&format!("; slots busy {all_slots:.1} avg, verify step {verify_slots:.2} ({looks} looks)"));
    }
    if case.exchange_limit.is_some() {
        measured.push_str(&format!(
            "; Exchange 429s {exchange_throttled} of {exchange_calls:.0} = {exchange_429_pct:.1} %, learned {:.0}/s",
            learned.iter().sum::<f64>() / learned.len().max(1) as f64
        ));
    }
    let row = Row::new(
        case.label(),
        measured,
        if case.faults.server_error > 0.0 {
            "100 % correct, 0 duplicates"
        } else if case.exchange_limit.is_some() {
            "≥ 85 % of bound, < 5 % Exchange 429s, 0 early retries"
        } else {
            "≥ 90 % of bound, 0 early retries"
        },
    );
    let json = json!({
        "tenants": case.tenants, "users_per_tenant": case.users, "users": total, "dilation": k,
        "faults": { "server_error": case.faults.server_error, "reset": case.faults.reset, "throttle_without_retry_after": case.faults.throttle_without_retry_after, "drop_after_apply": case.faults.drop_after_apply },
        "worker_concurrency": concurrency, "exchange_calls_per_s": setup.exchange_per_s.unwrap_or(offboard_m365::pacing::Limits::default().exchange_per_s), "store": if postgres { "postgres" } else { "sqlite" }, "engine": if case.engine == Engine::Serve { "offboard serve" } else { "in process" },
        "wall_s": wall.as_secs_f64(), "microsoft_s": microsoft_s, "bound_s": bound_s, "efficiency_pct": efficiency, "users_per_min": per_min,
        "throttled_429": throttled, "early_retries": early, "injected_faults": after.injected_faults - before.injected_faults,
        "identity_writes_per_user": writes, "intune_writes_per_user": intune, "identity_ru": { "per_user": ru, "per_10s": ru_per_10s },
        "round_trips_per_user": round_trips, "exchange_requests_per_user": exchange, "sub_requests_per_user": sub_requests,
        "correct_pct": correct, "duplicates": duplicates, "run_states": states,
        "cpu_s_per_user": usage.cpu_s / total, "peak_rss_mb": usage.peak_rss_mb, "rss_before_mb": usage.rss_before_mb,
        "db_bytes_per_user": db_per_user, "reports_attached_in_slack": reports,
        "conversion_s": case.conversion_s, "exchange_limit_per_s": case.exchange_limit,
        "exchange_calls": exchange_calls, "exchange_throttled": exchange_throttled, "exchange_429_pct": exchange_429_pct, "exchange_learned_per_s": learned,
        "worker_slots_busy_avg": all_slots, "verify_step_slots_avg": verify_slots, "verify_looks": looks, "verify_counted_attempts": verify_attempts,
    });
    fleet.cleanup().await;
    Measured { json, errors, row, usage, db_bytes_per_user: db_per_user }
}

fn quiet() -> FaultRates {
    FaultRates::default()
}

/// The figures B5 reports from the largest run in `offboard serve` (of equal ones, the one
/// with the highest peak RSS).
pub struct Peak {
    pub case: String,
    pub users: f64,
    pub store: &'static str,
    pub usage: Usage,
    pub db_bytes_per_user: f64,
}

pub async fn throughput(full: bool, only: Option<&str>, setup: Setup) -> (Outcome, Option<Peak>) {
    let postgres = setup.postgres;
    use Engine::*;
    // Conversions as Exchange takes them: about two minutes.
    const CONVERSION_S: f64 = 120.0;
    let cases = if full {
        vec![
            Case::new("100 users, 1 tenant", InProcess, 1, 100, 1.0, 32),
            Case::new("1,000 users, 1 tenant", InProcess, 1, 1000, 0.2, 256).converting(CONVERSION_S),
            Case::new("1,000 users, 1 tenant", Serve, 1, 1000, 1.0, 32),
            // In real time: dilated, 25,000 step commits would measure the database's
            // commits per second rather than the engine against Microsoft.
            Case::new("50 users, 1 tenant", InProcess, 1, 50, 1.0, 256).converting(CONVERSION_S),
            Case::new("1,000 users over 20 tenants", InProcess, 20, 50, 1.0, 256).converting(CONVERSION_S),
            Case::new("1,000 users over 20 tenants", Serve, 20, 50, 1.0, 256),
            // In real time: dilated, every millisecond of this process's CPU (the
            // simulator's too) counts as several of Microsoft's, and the first seconds, a
            // hundred discoveries and lockouts at once, are CPU-bound on a small machine.
            Case::new("100 users, 1 tenant", InProcess, 1, 100, 1.0, 256).exchange_limit(10.0),
            Case::new("100 users, 1 tenant", InProcess, 1, 100, 1.0, 256).exchange_limit(60.0),
            Case::new("100 users, 1 tenant", InProcess, 1, 100, 1.0, 256).exchange_limit(200.0),
        ]
    } else {
        vec![
            Case::new("10 users, 1 tenant", InProcess, 1, 10, 0.02, 8).converting(CONVERSION_S),
            Case::new("10 users over 2 tenants", Serve, 2, 5, 1.0, 8),
            Case::new("10 users over 2 tenants", InProcess, 2, 5, 0.02, 8).converting(CONVERSION_S),
            Case::new("10 users, 1 tenant", InProcess, 1, 10, 0.05, 8).exchange_limit(20.0),
        ]
    };
    let mut out = Outcome::default();
    let mut cases_json = Vec::new();
    let mut peak: Option<Peak> = None;
    let mut walls: Vec<(String, u32, f64)> = Vec::new();
    for case in cases.iter().filter(|c| only.is_none_or(|o| c.label().contains(o))) {
        let m = measure(case, setup).await;
        if case.engine == Engine::InProcess && case.exchange_limit.is_none() {
            walls.push((case.label(), case.tenants, m.json["microsoft_s"].as_f64().unwrap_or(f64::NAN)));
        }
        out.rows.push(m.row);
        out.errors.extend(m.errors.into_iter().map(|e| format!("{}: {e}", case.name)));
        cases_json.push(m.json);
        let users = (case.tenants * case.users) as f64;
        if case.engine == Engine::Serve && peak.as_ref().is_none_or(|p| (p.users, p.usage.peak_rss_mb) < (users, m.usage.peak_rss_mb)) {
            peak = Some(Peak {
                case: case.label(),
                users,
                store: if postgres { "Postgres" } else { "SQLite" },
                usage: m.usage,
                db_bytes_per_user: m.db_bytes_per_user,
            });
        }
    }
    // Tenants have independent limits: twenty should take as long as one.
    if let (Some(one), Some(many)) = (walls.iter().find(|w| w.1 == 1 && w.0.contains("50 users")), walls.iter().find(|w| w.1 == 20)) {
        let ratio = many.2 / one.2;
        out.rows.push(Row::new("20 tenants × 50 against 1 tenant × 50", format!("{:.0} s / {:.0} s = {ratio:.2}", many.2, one.2), "≤ 1.25"));
        out.json.insert("multi_tenant_ratio".into(), json!({ "one_tenant_s": one.2, "twenty_tenants_s": many.2, "ratio": ratio }));
    }
    out.json.insert("cases".into(), json!(cases_json));
    (out, peak)
}

pub async fn chaos(full: bool, setup: Setup) -> Outcome {
    let faults = FaultRates { server_error: 0.05, reset: 0.02, throttle_without_retry_after: 0.01, drop_after_apply: 0.005, seed: 7 };
    let case = if full {
        Case { faults, ..Case::new("100 users with faults", Engine::InProcess, 1, 100, 0.1, 32) }
    } else {
        Case { faults, ..Case::new("20 users with faults", Engine::InProcess, 1, 20, 0.02, 8) }
    };
    let m = measure(&case, setup).await;
    let mut out = Outcome::default();
    out.rows.push(m.row);
    out.errors.extend(m.errors);
    out.json.insert("cases".into(), json!([m.json]));
    out
}
