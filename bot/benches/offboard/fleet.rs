//! A simulated fleet: generated tenants of typical leavers (reliability.md §6.2), the
//! Microsoft 365 client against them, a store, the service and workers, all in this process
//! and talking HTTP over loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::domain::{RunId, TenantId};
use offboard_core::engine::{RetryPolicy, StepExecutor, Worker, WorkerConfig};
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_core::request::{Options, Presets, Request};
use offboard_core::service::Offboarding;
use offboard_core::store::Store;
use offboard_m365::pacing::Limits;
use offboard_m365::simulated::Simulated;
use offboard_m365::transport::CallPolicy;
use offboard_m365::{M365, Settings, VerifyPolicy};
use offboard_m365_sim::{Scenario, Sim, SimConfig};
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{access, admin1, requester};
use tokio::sync::watch;

pub struct FleetSpec {
    pub tenants: u32,
    pub users: u32,
    pub sim: SimConfig,
    pub concurrency: usize,
    pub setup: Setup,
    /// Each tenant's hidden Exchange limit, calls per Microsoft second.
    pub exchange_limit: Option<f64>,
}

/// Choices that apply to every bulk case of one invocation.
#[derive(Clone, Copy, Default)]
pub struct Setup {
    /// The store on Postgres instead of SQLite.
    pub postgres: bool,
    /// The Exchange pace (`[microsoft] exchange_calls_per_second`) instead of the default.
    pub exchange_per_s: Option<f64>,
    /// Worker slots (`[workers] concurrency`) instead of each case's own.
    pub concurrency: Option<usize>,
}

pub struct Fleet {
    pub sim: Arc<Sim>,
    pub m365: Arc<M365>,
    pub store: Store,
    pub svc: Arc<Offboarding>,
    pub db: TestDb,
    pub domains: Vec<String>,
    pub dilation: f64,
    concurrency: usize,
    clock: Arc<dyn Clock>,
    /// The simulator's limits.
    limits: offboard_m365_sim::Limits,
    /// Worker time spent in each kind of step, summed over slots.
    pub busy: Arc<Busy>,
}

/// Worker slot time by step kind: how long each `execute` held its slot.
#[derive(Default)]
pub struct Busy(Mutex<HashMap<String, Duration>>);

impl Busy {
    pub fn of(&self, kind: offboard_core::plan::StepKind) -> Duration {
        self.0.lock().unwrap().get(kind.key().as_str()).copied().unwrap_or_default()
    }

    pub fn total(&self) -> Duration {
        self.0.lock().unwrap().values().sum()
    }
}

/// The Microsoft 365 executor, timing each call by step kind.
struct Timed {
    inner: Arc<M365>,
    busy: Arc<Busy>,
}

#[async_trait]
impl StepExecutor for Timed {
    async fn execute(&self, cx: &offboard_core::engine::StepContext) -> Result<offboard_core::run::StepOutcome, offboard_core::engine::StepError> {
        let t = Instant::now();
        let r = self.inner.execute(cx).await;
        *self.busy.0.lock().unwrap().entry(cx.step.key.as_str().to_string()).or_default() += t.elapsed();
        r
    }

    async fn reconcile(&self, cx: &offboard_core::engine::StepContext) -> offboard_core::engine::Reconciled {
        self.inner.reconcile(cx).await
    }
}

/// What every benchmarked leaver gets: the standard preset without the hand-over to a
/// manager (generated users have none).
pub fn typical() -> Options {
    let name = offboard_core::domain::PresetName::parse("standard-leaver").expect("preset name");
    let o = Presets::builtin(&name).expect("builtin preset");
    // The default out-of-office texts: a text written for the request would need two approvers.
    Options { onedrive_access: vec![], mailbox_access: None, out_of_office: Some(Presets::default().default_out_of_office()), ..o }
}

pub fn lockout() -> Options {
    Options { disable_sign_in: true, revoke_sessions: true, reset_password: true, ..Options::default() }
}

pub fn upn(i: u32, domain: &str) -> String {
    format!("user{i:05}@{domain}")
}

impl Fleet {
    pub async fn start(spec: FleetSpec) -> Fleet {
        let mut scenario = Scenario::generate(spec.tenants, spec.users);
        let apps = Scenario::contoso().tenants[0].apps.clone();
        for t in &mut scenario.tenants {
            t.apps = apps.clone();
            t.exchange_calls_per_s = spec.exchange_limit;
        }
        let domains = scenario.tenants.iter().map(|t| t.domains[0].clone()).collect();
        let k = spec.sim.dilation;
        let sim_limits = spec.sim.limits.clone();
        let settings = Settings {
            limits: Limits { time_scale: k, exchange_per_s: spec.setup.exchange_per_s.unwrap_or(Limits::default().exchange_per_s), ..Limits::default() },
            verify: {
                let v = VerifyPolicy::default();
                VerifyPolicy { first: v.first.mul_f64(k), cap: v.cap.mul_f64(k), deadline: v.deadline.mul_f64(k), propagation: v.propagation.mul_f64(k) }
            },
            call: {
                let c = CallPolicy::default();
                CallPolicy { max_budget_wait: c.max_budget_wait.mul_f64(k), max_lockout_wait: c.max_lockout_wait.mul_f64(k), ..c }
            },
            ..Settings::default()
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
        let Simulated { sim, m365, tenants, .. } =
            offboard_m365::simulated::start(&scenario, spec.sim, clock.clone(), settings, policy).await.expect("simulated tenant");
        let sim = Arc::new(sim);
        let db = if spec.setup.postgres { TestDb::postgres().await } else { TestDb::sqlite() };
        let store = db.store().await;
        // Each leaver is discovered for real, as a request does; generated leavers hold no
        // rights on other mailboxes, so the (empty) delegation index is right for them.
        let svc = Arc::new(Offboarding::new(store.clone(), m365.clone(), clock.clone(), access(), tenants, Presets::default()));
        Fleet { sim, m365, store, svc, db, domains, dilation: k, concurrency: spec.concurrency, clock, limits: sim_limits, busy: Arc::default() }
    }

    pub fn tenant(&self, domain: &str) -> TenantId {
        TenantId::parse(domain).expect("tenant key")
    }

    /// Requests and discovers, awaiting approval.
    pub async fn request(&self, domain: &str, i: u32, options: &Options) -> offboard_core::store::RunRecord {
        let req = Request::now(self.tenant(domain), upn(i, domain), options.clone());
        self.svc.request(&requester(), req).await.expect("request")
    }

    pub async fn approve(&self, run: &offboard_core::store::RunRecord) {
        self.svc.approve(&admin1(), &run.id, &run.plan_hash).await.expect("approve");
    }

    /// Workers on this store until the returned sender is dropped or sent `true`.
    pub fn workers(&self) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = watch::channel(false);
        let k = self.dilation;
        let config = WorkerConfig {
            concurrency: self.concurrency,
            retry: RetryPolicy { initial: Duration::from_secs(1).mul_f64(k), cap: Duration::from_secs(100).mul_f64(k), ..RetryPolicy::default() },
            ..WorkerConfig::default()
        };
        let executor = Arc::new(Timed { inner: self.m365.clone(), busy: self.busy.clone() });
        let worker = Worker::new(self.store.clone(), executor, self.clock.clone(), config);
        let handle = tokio::spawn(async move {
            let _ = worker.run_until_stopped(async move { while rx.changed().await.is_ok() && !*rx.borrow() {} }).await;
        });
        (tx, handle)
    }

    /// Waits until every run in the fleet's database is terminal, expecting `total`; the
    /// time it took. Counting by state, as reading whole runs while they execute would take
    /// CPU from them.
    pub async fn finish_all(&self, total: usize, deadline: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            let counts = self.store.count_runs().await.map_err(|e| e.to_string())?;
            let done: i64 = counts.iter().filter(|(s, _)| s.is_terminal()).map(|(_, n)| n).sum();
            if done as usize >= total {
                return Ok(started.elapsed());
            }
            if started.elapsed() > deadline {
                return Err(format!("{done} of {total} runs finished within {deadline:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until one run is terminal.
    pub async fn finish(&self, run: &RunId, deadline: Duration) -> Result<(), String> {
        let started = Instant::now();
        while !self.store.run(run).await.map_err(|e| e.to_string())?.state.is_terminal() {
            if started.elapsed() > deadline {
                return Err(format!("run {run} did not finish within {deadline:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// The identity resource units per 10 s the simulator allows the app in a tenant of the
    /// fleet: Microsoft sets it by the tenant's size.
    pub fn ru_per_10s(&self) -> f64 {
        let l = &self.limits;
        match self.sim.tenant(&self.domains[0], |t| t.tier()) {
            Some(offboard_m365_sim::world::Tier::S) => l.ru_small,
            Some(offboard_m365_sim::world::Tier::M) => l.ru_medium,
            _ => l.ru_large,
        }
    }

    /// Whether the user is locked out in the simulated tenant: sign-in blocked, sessions
    /// revoked and password changed.
    pub fn locked_out(&self, domain: &str, i: u32) -> bool {
        let upn = upn(i, domain);
        self.sim
            .tenant(domain, |t| {
                let id = t.user_id(&upn)?;
                let u = t.users.get(&id)?;
                Some(!u.account_enabled && u.sessions_valid_from != u.created && u.password_changed.is_some())
            })
            .flatten()
            .unwrap_or(false)
    }

    /// The end state an offboarding must leave, checked in the simulated tenant.
    pub fn end_state_errors(&self, domain: &str, i: u32) -> Vec<String> {
        let upn = upn(i, domain);
        self.sim
            .tenant(domain, |t| {
                let mut e = Vec::new();
                let Some(id) = t.user_id(&upn) else { return vec![format!("{upn}: gone")] };
                let u = &t.users[&id];
                if u.account_enabled {
                    e.push("sign-in enabled".into());
                }
                if u.password_changed.is_none() {
                    e.push("password not reset".into());
                }
                if u.auth_methods.len() != 1 {
                    e.push(format!("{} authentication methods left", u.auth_methods.len()));
                }
                if !u.direct_licences.is_empty() {
                    e.push("licence left".into());
                }
                let groups = t.groups.values().filter(|g| g.members.contains(&id)).count();
                if groups > 0 {
                    e.push(format!("member of {groups} groups"));
                }
                if t.managed.values().any(|d| d.user == id && d.state == "managed") {
                    e.push("device not retired".into());
                }
                match t.mailboxes.get(&id) {
                    Some(m) if m.kind != offboard_m365_sim::world::MailboxKind::Shared => e.push("mailbox not shared".into()),
                    Some(m) if !m.hidden => e.push("mailbox not hidden".into()),
                    _ => {}
                }
                e.into_iter().map(|s: String| format!("{upn}: {s}")).collect()
            })
            .unwrap_or_else(|| vec![format!("no tenant {domain}")])
    }

    pub async fn cleanup(self) {
        self.db.cleanup().await;
    }
}
