//! `offboard serve`: one process hosting the Slack endpoints, `/healthz`, `/readyz` and
//! `/metrics`, with the workers, the scheduler, the chat relay and the notifier beside them
//! (or some of them, for scale-out). SIGTERM or Ctrl-C stops taking work: the HTTP server
//! drains, steps in flight finish (their lease would otherwise expire and another process
//! take them over), and the process exits.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use offboard_core::audit::NewAudit;
use offboard_core::chat::relay::Relay;
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::delegations::Indexer;
use offboard_core::engine::{Reconciled, StepContext, StepError, StepExecutor, Worker, WorkerConfig};
use offboard_core::run::RunState;
use offboard_core::run::StepOutcome;
use offboard_core::scheduler::{AUDIT_CHECKPOINT, CronJob, DELEGATION_INDEX, Scheduler};
use offboard_core::service::Offboarding;
use offboard_core::store::Store;
use offboard_core::templates::Templates;
use offboard_m365::M365;
use offboard_m365::auth::Resource;
use offboard_notify::Notifier;
use offboard_report::links::LINK_TTL;
use offboard_report::{Evidence, ReportKey, ReportLinks, RunReports};
use tokio::sync::watch;

use crate::config::Config;

#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    /// Do not run steps here (another process does).
    #[arg(long)]
    no_workers: bool,
    /// Do not run the scheduler here.
    #[arg(long)]
    no_scheduler: bool,
    /// Do not drive chat updates and notifications here.
    #[arg(long)]
    no_relay: bool,
    /// Listen here instead of the configured address.
    #[arg(long)]
    listen: Option<String>,
    /// Serve /metrics and /readyz here instead of the configured operator address.
    #[arg(long)]
    ops_listen: Option<String>,
}

#[derive(Clone)]
struct Health {
    store: Store,
    m365: Arc<M365>,
    started: Instant,
    slack: Option<Arc<offboard_slack::server::SlackApp>>,
    teams: Option<Arc<offboard_teams::server::TeamsApp>>,
    discord: Option<Arc<offboard_discord::server::DiscordApp>>,
    steps: Arc<StepDurations>,
    ready: Arc<tokio::sync::Mutex<Option<(Instant, StatusCode, String)>>>,
}

/// How long a readiness answer is reused: probes every few seconds must not each ask
/// Entra for a token for every customer.
const READY_TTL: Duration = Duration::from_secs(15);

const STEP_BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// How long each kind of step took in this process, for `/metrics`.
#[derive(Default)]
struct StepDurations(std::sync::Mutex<std::collections::BTreeMap<String, ([u64; 10], f64)>>);

impl StepDurations {
    fn record(&self, step: &str, d: Duration) {
        let mut all = self.0.lock().expect("metrics lock");
        let (buckets, sum) = all.entry(step.to_string()).or_default();
        for (i, b) in STEP_BUCKETS.iter().enumerate() {
            if d.as_secs_f64() <= *b {
                buckets[i] += 1;
            }
        }
        buckets[9] += 1;
        *sum += d.as_secs_f64();
    }

    fn render(&self) -> String {
        let mut out = String::from("# HELP offboard_step_duration_seconds Time to execute a step, by step.\n# TYPE offboard_step_duration_seconds histogram\n");
        for (step, (buckets, sum)) in self.0.lock().expect("metrics lock").iter() {
            for (i, b) in STEP_BUCKETS.iter().enumerate() {
                out.push_str(&format!("offboard_step_duration_seconds_bucket{{step=\"{step}\",le=\"{b}\"}} {}\n", buckets[i]));
            }
            out.push_str(&format!("offboard_step_duration_seconds_bucket{{step=\"{step}\",le=\"+Inf\"}} {}\n", buckets[9]));
            out.push_str(&format!(
                "offboard_step_duration_seconds_sum{{step=\"{step}\"}} {sum}\noffboard_step_duration_seconds_count{{step=\"{step}\"}} {}\n",
                buckets[9]
            ));
        }
        out
    }
}

/// The Microsoft 365 executor, timed per step.
struct Timed {
    inner: Arc<M365>,
    durations: Arc<StepDurations>,
}

#[async_trait::async_trait]
impl StepExecutor for Timed {
    async fn execute(&self, cx: &StepContext) -> Result<StepOutcome, StepError> {
        let t = Instant::now();
        let r = self.inner.execute(cx).await;
        self.durations.record(cx.step.key.as_str(), t.elapsed());
        r
    }

    async fn reconcile(&self, cx: &StepContext) -> Reconciled {
        self.inner.reconcile(cx).await
    }
}

/// What a report link needs to serve its file.
#[derive(Clone)]
struct Downloads {
    links: Arc<ReportLinks>,
    evidence: Arc<Evidence>,
    store: Store,
    clock: Arc<dyn Clock>,
}

/// `/reports/{file}`: each run's report behind its signed link.
pub(crate) fn report_downloads(links: Arc<ReportLinks>, evidence: Arc<Evidence>, store: Store, clock: Arc<dyn Clock>) -> Router {
    Router::new().route("/reports/{file}", get(download)).with_state(Downloads { links, evidence, store, clock })
}

/// A report by its signed link. Anything wrong (another run, expiry or signature, an
/// expired link, no report) is the same 403, which names nothing; every download is
/// audited.
async fn download(
    State(d): State<Downloads>,
    axum::extract::Path(file): axum::extract::Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> axum::response::Response {
    let q: std::collections::HashMap<String, String> = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let now = d.clock.now();
    let forbidden = || (StatusCode::FORBIDDEN, "forbidden").into_response();
    let (Some(expires), Some(sig)) = (q.get("expires"), q.get("sig")) else { return forbidden() };
    let Some(run) = d.links.check(&file, expires, sig, now) else { return forbidden() };
    match d.evidence.pdf(&d.store, &run, now).await {
        Ok((_, bytes)) => {
            let audit = NewAudit::new("link:report", "report.downloaded").run(&run).detail(serde_json::json!({ "expires": expires }));
            if let Err(e) = d.store.audit(audit, now).await {
                tracing::error!(error = %e, "could not audit a report download");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
            }
            let disposition = format!("attachment; filename=\"{run}.pdf\"");
            ([(axum::http::header::CONTENT_TYPE, "application/pdf".to_string()), (axum::http::header::CONTENT_DISPOSITION, disposition)], bytes).into_response()
        }
        Err(e) => {
            tracing::warn!(run = %run, error = %e, "a report link led to no report");
            forbidden()
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers and every tenant's Graph token can be obtained. The
/// answer names no customer (tenants by number; the log says which) and is reused for
/// [`READY_TTL`]; concurrent probes wait for one check.
async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    let mut cached = h.ready.lock().await;
    if let Some((at, status, text)) = cached.as_ref()
        && at.elapsed() < READY_TTL
    {
        return (*status, text.clone());
    }
    let (status, text) = readiness(&h).await;
    *cached = Some((Instant::now(), status, text.clone()));
    (status, text)
}

async fn readiness(h: &Health) -> (StatusCode, String) {
    if let Err(e) = h.store.ping().await {
        tracing::warn!(error = %e, "not ready: the database");
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: the database does not answer".into());
    }
    let tenants: Vec<_> = h.m365.tenants().all().collect();
    for (i, t) in tenants.iter().enumerate() {
        if let Err(e) = h.m365.tokens().token(t, Resource::Graph).await {
            tracing::warn!(tenant = %t.key, error = %e, "not ready: Microsoft sign-in");
            return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: Microsoft sign-in failed for tenant {} of {}", i + 1, tenants.len()));
        }
    }
    (StatusCode::OK, "ready".to_string())
}

/// Prometheus text format.
async fn metrics(State(h): State<Health>) -> impl IntoResponse {
    let mut out = String::from("# HELP offboard_runs Runs by state.\n# TYPE offboard_runs gauge\n");
    match h.store.count_runs().await {
        Ok(counts) => {
            for state in [
                RunState::AwaitingApproval,
                RunState::Scheduled,
                RunState::Approved,
                RunState::Running,
                RunState::NeedsAttention,
                RunState::Completed,
                RunState::CompletedWithWarnings,
                RunState::Failed,
                RunState::Cancelled,
                RunState::Rejected,
                RunState::Expired,
            ] {
                let n = counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
                out.push_str(&format!("offboard_runs{{state=\"{}\"}} {n}\n", state.as_str()));
            }
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("# database: {e}\n")),
    }
    out.push_str("# HELP offboard_microsoft_tokens_issued Tokens obtained from Entra since start.\n# TYPE offboard_microsoft_tokens_issued counter\n");
    out.push_str(&format!("offboard_microsoft_tokens_issued {}\n", h.m365.tokens().issued()));
    let c = h.m365.counters();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    out.push_str("# HELP offboard_microsoft_requests_total HTTP requests sent to Graph and Exchange.\n# TYPE offboard_microsoft_requests_total counter\n");
    out.push_str(&format!("offboard_microsoft_requests_total {}\n", load(&c.requests)));
    out.push_str("# HELP offboard_microsoft_throttled_total Answers asking to slow down (429, or 503 with Retry-After).\n# TYPE offboard_microsoft_throttled_total counter\n");
    out.push_str(&format!("offboard_microsoft_throttled_total {}\n", load(&c.throttled)));
    out.push_str("# HELP offboard_microsoft_failed_total Other 5xx answers and connection failures.\n# TYPE offboard_microsoft_failed_total counter\n");
    out.push_str(&format!("offboard_microsoft_failed_total {}\n", load(&c.failed)));
    let rates = h.m365.exchange_rates();
    if !rates.is_empty() {
        out.push_str("# HELP offboard_exchange_calls_per_second The Exchange admin API rate learned per tenant (Microsoft publishes no limit).\n# TYPE offboard_exchange_calls_per_second gauge\n");
        for (tenant, per_s) in rates {
            out.push_str(&format!("offboard_exchange_calls_per_second{{tenant=\"{tenant}\"}} {per_s:.2}\n"));
        }
    }
    out.push_str(&h.steps.render());
    if let Some(slack) = &h.slack {
        out.push_str(&slack.ack.render("offboard_slack_ack_seconds", "Slack"));
    }
    if let Some(teams) = &h.teams {
        out.push_str(&teams.ack.render("offboard_teams_ack_seconds", "Teams"));
    }
    if let Some(discord) = &h.discord {
        out.push_str(&discord.ack.render("offboard_discord_ack_seconds", "Discord"));
    }
    out.push_str("# HELP offboard_uptime_seconds Seconds since start.\n# TYPE offboard_uptime_seconds gauge\n");
    out.push_str(&format!("offboard_uptime_seconds {}\n", h.started.elapsed().as_secs()));
    (StatusCode::OK, out)
}

/// The lane name learned Exchange rates are kept under.
const EXCHANGE_LANE: &str = "exchange";

/// Saves each tenant's learned Exchange rate every 30 s and at shutdown, when it moved.
async fn keep_learned_rates(store: Store, m365: Arc<M365>, clock: Arc<dyn Clock>, stop: impl std::future::Future<Output = ()>) {
    let mut saved: std::collections::HashMap<offboard_core::domain::TenantId, f64> = std::collections::HashMap::new();
    tokio::pin!(stop);
    loop {
        let stopping = tokio::select! {
            _ = &mut stop => true,
            _ = tokio::time::sleep(Duration::from_secs(30)) => false,
        };
        for (tenant, per_s) in m365.exchange_rates() {
            if !stopping && saved.get(&tenant).is_some_and(|r| (r - per_s).abs() < 0.05 * r) {
                continue;
            }
            match store.save_learned_rate(&tenant, EXCHANGE_LANE, per_s, clock.now()).await {
                Ok(()) => {
                    saved.insert(tenant, per_s);
                }
                Err(e) => tracing::warn!(tenant = %tenant, error = %e, "Could not keep the learned Exchange rate"),
            }
        }
        if stopping {
            return;
        }
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// The parts every command that acts on runs needs, built from the configuration.
pub struct Wired {
    pub store: Store,
    /// Signs reports; the audit chain is sealed with the key derived from it.
    pub signing: ReportKey,
    pub clock: Arc<dyn Clock>,
    pub templates: Arc<Templates>,
    pub m365: Arc<M365>,
    pub svc: Arc<Offboarding>,
}

pub async fn wire(cfg: &Config) -> anyhow::Result<Wired> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (signing, created) = ReportKey::load_or_create(&cfg.signing_key)?;
    if created {
        tracing::info!(path = %cfg.signing_key.display(), fingerprint = %signing.public().fingerprint(), "created the report signing key");
    }
    let store = Store::connect(&cfg.database_url)
        .await
        .with_context(|| format!("opening the database {}", crate::redact(&cfg.database_url)))?
        .with_audit_key(signing.audit_key());
    let templates = Arc::new(Templates::load(cfg.template_dir.as_deref(), offboard_notify::webhook::TEMPLATES)?);
    let m365 = Arc::new(M365::new(cfg.endpoints(), cfg.m365_tenants()?, clock.clone(), cfg.m365_settings()));
    let presets = cfg.presets(templates.out_of_office());
    // Where a line manager's chat identity is looked up by e-mail.
    let mut identities: Vec<Arc<dyn offboard_core::service::ChatIdentities>> = Vec::new();
    if let Some(slack) = &cfg.slack
        && let Ok((_, token)) = slack.secrets()
    {
        identities.push(Arc::new(offboard_slack::surface::SlackIdentities(Arc::new(offboard_slack::api::SlackApi::new(&slack.api_url, token)?))));
    }
    let svc = Arc::new(Offboarding::new(store.clone(), m365.clone(), clock.clone(), cfg.access(), cfg.tenants(), presets).with_identities(identities));
    Ok(Wired { store, signing, clock, templates, m365, svc })
}

pub async fn run(cfg: Config, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let Wired { store, signing, clock, templates, m365, svc } = wire(&cfg).await?;
    let links = cfg.public_url.as_deref().map(|u| Arc::new(ReportLinks::new(u, &signing, LINK_TTL)));
    let evidence = Arc::new(Evidence::new(signing, &cfg.reports_dir));

    let (stop, stopped) = watch::channel(false);
    let shutdown = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    let durations = Arc::new(StepDurations::default());
    let mut slack_app = None;
    let mut teams_app = None;
    let mut router = Router::new();

    if let Some(slack) = &cfg.slack {
        let (signing_secret, bot_token) = slack.secrets()?;
        let api = Arc::new(offboard_slack::api::SlackApi::new(&slack.api_url, bot_token)?);
        let app = offboard_slack::server::SlackApp::new(svc.clone(), api.clone(), m365.clone(), signing_secret.clone(), cfg.routes(), clock.clone());
        router = router.merge(app.router());
        slack_app = Some(app.clone());
        let stop = shutdown();
        tasks.spawn(app.clone().memberships_until(stop));
        if !args.no_relay {
            let surface = Arc::new(offboard_slack::surface::SlackSurface::new(api));
            let reports = Arc::new(RunReports { evidence: evidence.clone(), store: store.clone(), links: links.clone() });
            let relay = Relay::new(store.clone(), surface, "slack", cfg.routes(), Some(reports), templates.clone(), clock.clone());
            let stop = shutdown();
            tasks.spawn(async move { relay.run_until(Duration::from_millis(250), stop).await });
        }
    }
    if let Some(teams) = &cfg.teams {
        let connector = Arc::new(offboard_teams::connector::Connector::new(teams.bot()?, &teams.service_url, clock.clone()));
        // The connector the approvals channel's activities came from, until one arrives.
        if let Ok(Some(reference)) = store.conversation("teams", &teams.approvals_channel).await
            && let Some(url) = serde_json::from_str::<serde_json::Value>(&reference).ok().and_then(|r| r["serviceUrl"].as_str().map(String::from))
        {
            connector.learn(&url);
        }
        let verifier = offboard_teams::auth::Verifier::new(&teams.app_id, &teams.openid_metadata, clock.clone());
        let app = offboard_teams::server::TeamsApp::new(svc.clone(), m365.clone(), cfg.routes(), verifier, connector.clone(), clock.clone());
        router = router.merge(app.router());
        teams_app = Some(app.clone());
        if let Some(home) = cfg.teams_directory() {
            let stop = shutdown();
            tasks.spawn(app.clone().memberships_until(home, stop));
        }
        if !args.no_relay {
            let mut surface = offboard_teams::surface::TeamsSurface::new(connector, &teams.tenant_id);
            // Whether the home tenant grants the upload is read from its token at each report.
            if let Some(home) = cfg.teams_directory() {
                surface = surface.with_files(Arc::new(offboard_m365::files::TeamsFiles::new(m365.clone(), home)), store.clone());
            }
            let surface = Arc::new(surface);
            let reports = Arc::new(RunReports { evidence: evidence.clone(), store: store.clone(), links: links.clone() });
            let relay = Relay::new(store.clone(), surface, "teams", cfg.routes(), Some(reports), templates.clone(), clock.clone());
            let stop = shutdown();
            tasks.spawn(async move { relay.run_until(Duration::from_millis(250), stop).await });
        }
    }
    let mut discord_app = None;
    if let Some(discord) = &cfg.discord {
        let api = Arc::new(discord.api()?);
        let verifier = offboard_discord::verify::Verifier::new(discord.public_key(), clock.clone());
        let app = offboard_discord::server::DiscordApp::new(svc.clone(), m365.clone(), cfg.routes(), verifier, api.clone(), clock.clone());
        router = router.merge(app.router());
        discord_app = Some(app);
        if !args.no_relay {
            let surface = Arc::new(offboard_discord::surface::DiscordSurface::new(api));
            let reports = Arc::new(RunReports { evidence: evidence.clone(), store: store.clone(), links: links.clone() });
            let relay = Relay::new(store.clone(), surface, "discord", cfg.routes(), Some(reports), templates.clone(), clock.clone());
            let stop = shutdown();
            tasks.spawn(async move { relay.run_until(Duration::from_millis(250), stop).await });
        }
    }
    let health = Health {
        store: store.clone(),
        m365: m365.clone(),
        started,
        slack: slack_app,
        teams: teams_app,
        discord: discord_app,
        steps: durations.clone(),
        ready: Default::default(),
    };
    let mut router = router.route("/healthz", get(healthz));
    if let Some(links) = links {
        router = router.merge(report_downloads(links, evidence.clone(), store.clone(), clock.clone()));
    }
    let ops = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics)).with_state(health);
    let targets = cfg.notify_targets();
    if !targets.is_empty() && !args.no_relay {
        let notifier = Notifier::new(store.clone(), targets, cfg.template_dir.as_deref(), Some(evidence.clone()), clock.clone())?;
        let stop = shutdown();
        tasks.spawn(async move {
            if let Err(e) = notifier.run_until(Duration::from_secs(2), stop).await {
                tracing::error!(error = %e, "notifier stopped");
            }
        });
    }
    if cfg.workers.enabled && !args.no_workers {
        // The Exchange rates learned before a restart, and kept from now on.
        match store.learned_rates(EXCHANGE_LANE).await {
            Ok(rates) => {
                for (tenant, per_s) in rates {
                    m365.seed_exchange_rate(&tenant, per_s);
                }
            }
            Err(e) => tracing::warn!(error = %e, "Could not read the learned Exchange rates; starting from the configured one"),
        }
        tasks.spawn(keep_learned_rates(store.clone(), m365.clone(), clock.clone(), shutdown()));
        let config = WorkerConfig { concurrency: cfg.workers.concurrency, ..WorkerConfig::default() };
        let worker = Worker::new(store.clone(), Arc::new(Timed { inner: m365.clone(), durations: durations.clone() }), clock.clone(), config);
        let stop = shutdown();
        tasks.spawn(async move {
            if let Err(e) = worker.run_until_stopped(stop).await {
                tracing::error!(error = %e, "worker stopped");
            }
        });
    }
    if cfg.scheduler.enabled && !args.no_scheduler {
        let jobs = vec![
            CronJob::parse(AUDIT_CHECKPOINT, "0 0 * * * *").map_err(anyhow::Error::msg)?,
            CronJob::parse(DELEGATION_INDEX, "0 * * * * *").map_err(anyhow::Error::msg)?,
        ];
        let tenant_ids = cfg.tenants().into_iter().map(|t| t.id).collect();
        let indexer = Arc::new(Indexer::new(store.clone(), m365.clone(), clock.clone(), tenant_ids));
        let scheduler = Scheduler::new(store.clone(), clock.clone(), jobs, format!("scheduler-{}", std::process::id())).with_indexer(indexer);
        let stop = shutdown();
        tasks.spawn(async move {
            if let Err(e) = scheduler.run_until_stopped(Duration::from_secs(5), stop).await {
                tracing::error!(error = %e, "scheduler stopped");
            }
        });
    }

    let listen = args.listen.clone().unwrap_or_else(|| cfg.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
    let ops_listen = args.ops_listen.clone().unwrap_or_else(|| cfg.http.ops_listen.clone());
    let ops_listener = tokio::net::TcpListener::bind(&ops_listen).await.with_context(|| format!("listening on {ops_listen} (http.ops_listen)"))?;
    tracing::info!(address = %listener.local_addr()?, operators = %ops_listener.local_addr()?, "serving");
    println!("offboard: serving on http://{} (operators: http://{})", listener.local_addr()?, ops_listener.local_addr()?);
    let limits = cfg.http.limits();
    let public = crate::http::serve(listener, router, limits, shutdown());
    let operators = crate::http::serve(ops_listener, ops, limits, shutdown());
    let server = tokio::spawn(async move { tokio::join!(public, operators) });
    signal().await;
    tracing::info!("stopping: finishing steps in flight");
    let _ = stop.send(true);
    let finished = tokio::time::timeout(Duration::from_secs(20), async {
        let _ = server.await;
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!("some work did not stop within 20 s; its leases expire and another process takes it over");
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
