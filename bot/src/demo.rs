//! `offboard demo`: the whole product on one machine with no configuration and no network.
//! A simulated Microsoft 365 tenant, a local fake Slack, SQLite, and a scripted requester,
//! viewer and approver drive the real Slack adapter, engine, relay and report signer; each
//! message the adapter posts is printed as a terminal would show it, as it happens.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use offboard_core::chat::relay::Relay;
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::domain::{Role, RunId};
use offboard_core::engine::{RetryPolicy, Worker, WorkerConfig};
use offboard_core::policy::{Access, AdminTargets, Principal, RoleBinding, TenantPolicy};
use offboard_core::request::Presets;
use offboard_core::run::RunState;
use offboard_core::secret::Secret;
use offboard_core::service::Offboarding;
use offboard_core::store::Store;
use offboard_core::templates::Templates;
use offboard_m365::Settings;
use offboard_m365_sim::{Scenario, SimConfig};
use offboard_report::sign::{self, Verdict};
use offboard_report::{Evidence, ReportKey, RunReports};
use offboard_slack::api::SlackApi;
use offboard_slack::fake::{Driver, FakeSlack, Message};
use offboard_slack::server::SlackApp;
use offboard_slack::surface::SlackSurface;
use serde_json::{Value as Json, json};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its database, signing key and reports (emptied first).
    #[arg(long, default_value = "offboard-demo")]
    dir: PathBuf,
    /// The user to offboard in the simulated tenant.
    #[arg(long, default_value = "alice.able@contoso.com")]
    user: String,
    /// You type the slash command and decide who clicks which button (Slack only).
    #[arg(long)]
    interactive: bool,
    /// The chat platform the demo runs in.
    #[arg(long, value_enum, default_value = "slack")]
    platform: Platform,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Platform {
    Slack,
    Teams,
    Discord,
}

mod discord;
mod teams;

/// Reads the person's answers in `--interactive`; one line each, empty for the default.
fn ask(out: &mut impl Write, question: &str) -> anyhow::Result<String> {
    write!(out, "\n  {question} ")?;
    out.flush()?;
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line)? == 0 {
        bail!("no more input");
    }
    Ok(line.trim().to_string())
}

const REQUESTER: (&str, &str) = ("U0RILEY", "Riley Reyes (IT admin)");
const VIEWER: (&str, &str) = ("U0SAM", "Sam Stone (auditor)");
const APPROVER: (&str, &str) = ("U0ADA", "Ada Lovelace (IT admin)");
const CHANNEL: &str = "C0ITAPPROVALS";

struct Printer<'o, W: Write> {
    out: &'o mut W,
    started: Instant,
}

impl<W: Write> Printer<'_, W> {
    fn say(&mut self, text: &str) -> std::io::Result<()> {
        let t = self.started.elapsed().as_secs_f64();
        let mut lines = text.lines();
        writeln!(self.out, "[{t:6.2}s] {}", lines.next().unwrap_or(""))?;
        for l in lines {
            writeln!(self.out, "          {l}")?;
        }
        self.out.flush()
    }
}

/// A message as the demo's people see it: mentions by name.
fn to_terminal(blocks: &Json) -> String {
    offboard_slack::fake::to_terminal_with(blocks, &[REQUESTER, VIEWER, APPROVER])
}

fn access() -> Access {
    let bind = |(id, _): (&str, &str), role| RoleBinding { principal: Principal::User { platform: "slack".into(), id: id.into() }, role, tenants: None };
    // The requester is an admin too, so the demo shows the requester ≠ approver rule.
    Access { bindings: vec![bind(REQUESTER, Role::Admin), bind(VIEWER, Role::Viewer), bind(APPROVER, Role::Admin)], people: vec![] }
}

fn text(v: &str) -> Json {
    json!({ "type": "plain_text_input", "value": v })
}

/// What the requester changes on each wizard page: the user on the first (the preset
/// stays standard-leaver, which fills the rest), and the reason on the last.
fn changes(page: usize, user: &str) -> Json {
    match page {
        0 => json!({ "user": { "user": { "type": "external_select", "selected_option": { "value": user } } } }),
        4 => json!({ "reason": { "reason": text("Resigned; today is the last day") } }),
        _ => json!({}),
    }
}

/// Polls the simulated mailbox conversion every 200 ms instead of waiting minutes as with
/// Exchange Online.
fn settings() -> Settings {
    let verify = offboard_m365::VerifyPolicy {
        first: Duration::from_millis(200),
        cap: Duration::from_secs(1),
        deadline: Duration::from_secs(60),
        propagation: Duration::from_secs(60),
    };
    Settings { verify, ..Settings::default() }
}

/// What every demo stands on: an emptied directory, the simulated tenant, the signing key
/// and the database (sealed with it), and the delegation index.
struct Stage {
    simulated: offboard_m365::simulated::Simulated,
    store: Store,
    key: ReportKey,
}

async fn stage(args: &DemoArgs, clock: Arc<dyn Clock>) -> anyhow::Result<Stage> {
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).with_context(|| format!("emptying {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
    let sim_cfg = SimConfig { conversion_delay: Duration::from_millis(300), ..SimConfig::default() };
    let simulated = offboard_m365::simulated::start(&Scenario::contoso(), sim_cfg, clock.clone(), settings(), policy).await.map_err(anyhow::Error::msg)?;
    let url = format!("sqlite://{}", args.dir.join("demo.db").display());
    let (key, _) = ReportKey::load_or_create(&args.dir.join("signing.key"))?;
    let store = Store::connect(&url).await.context("opening the demo database")?.with_audit_key(key.audit_key());
    // The delegation index, which the scheduler keeps in a running installation: built
    // at once here, the demo's tenant being small.
    let ids = simulated.tenants.iter().map(|t| t.id.clone()).collect();
    for (tenant, e) in offboard_core::delegations::Indexer::new(store.clone(), simulated.m365.clone(), clock, ids).build_all().await {
        tracing::info!(%tenant, error = %e, "the delegation index was not built");
    }
    Ok(Stage { simulated, store, key })
}

async fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("the demo timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn run(args: &DemoArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if args.platform != Platform::Slack && args.interactive {
        bail!("--interactive is for the Slack demo; the Teams and Discord demos are scripted");
    }
    match args.platform {
        Platform::Teams => return teams::run(args, out).await,
        Platform::Discord => return discord::run(args, out).await,
        Platform::Slack => {}
    }
    let started = Instant::now();
    let mut p = Printer { out, started };
    p.say("Offboard demo: a simulated Microsoft 365 tenant (contoso.com) and a local Slack on loopback; nothing leaves this machine.")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let Stage { simulated, store, key } = stage(args, clock.clone()).await?;
    let svc = Arc::new(Offboarding::new(store.clone(), simulated.m365.clone(), clock.clone(), access(), simulated.tenants.clone(), Presets::default()));

    // The local Slack's bot token, fresh for each demo.
    let bot_token = format!("demo-bot-{}", uuid::Uuid::new_v4().simple());
    let slack = FakeSlack::start(&bot_token).await;
    let api = Arc::new(SlackApi::new(&slack.api_url(), &Secret::new(bot_token))?);
    // A fresh signing secret per demo, so nothing fixed is reused.
    let signing = Secret::new(format!("demo-{}", uuid::Uuid::new_v4().simple()));
    let app = SlackApp::new(
        svc.clone(),
        api.clone(),
        simulated.m365.clone(),
        signing.clone(),
        offboard_core::chat::relay::Routes::single("slack", CHANNEL),
        clock.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_url = format!("http://{}", listener.local_addr()?);
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let public = key.public();
    let reports_dir = args.dir.join("reports");
    let reports = Arc::new(RunReports { evidence: Arc::new(Evidence::new(key, &reports_dir)), store: store.clone(), links: None });
    let templates = Arc::new(Templates::load(None, &[])?);
    let mut routes = offboard_core::chat::relay::Routes::default();
    routes.default_for("slack", CHANNEL);
    let relay = Relay::new(store.clone(), Arc::new(SlackSurface::new(api.clone())), "slack:demo", routes, Some(reports), templates, clock.clone());
    tokio::spawn(async move { relay.run_until(Duration::from_millis(30), std::future::pending::<()>()).await });
    let config = WorkerConfig {
        poll: Duration::from_millis(20),
        retry: RetryPolicy { initial: Duration::from_millis(100), ..RetryPolicy::default() },
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), simulated.m365.clone(), clock.clone(), config);
    tokio::spawn(async move { worker.run_until_stopped(std::future::pending::<()>()).await });

    let driver = Driver::new(app_url, signing).with_name(REQUESTER.0, REQUESTER.1).with_name(VIEWER.0, VIEWER.1).with_name(APPROVER.0, APPROVER.1);
    let mut user = args.user.clone();
    if args.interactive {
        // Subcommands answer at once; the first user address opens the wizard.
        loop {
            let typed = ask(p.out, &format!("You are {}. Type a slash command (Enter: /offboard {user}):", REQUESTER.1))?;
            let text = typed.trim_start_matches("/offboard").trim().to_string();
            if text.is_empty() || text.contains('@') {
                user = if text.is_empty() { user } else { text.split_whitespace().next().unwrap_or("").to_string() };
                break;
            }
            let r = driver.command(REQUESTER.0, &text, &slack.issue_trigger()).await?;
            let body: Json = r.json().await.unwrap_or(Json::Null);
            p.say(&format!("only you see: {}", body["text"].as_str().unwrap_or("(nothing)")))?;
        }
    }
    p.say(&format!("{} types: /offboard {user}", REQUESTER.1))?;
    let r = driver.command(REQUESTER.0, &user, &slack.issue_trigger()).await?;
    if !r.status().is_success() {
        bail!("the slash command was refused: {}", r.status());
    }
    let view_id = until(5, "the wizard", || slack.views().first().map(|(id, _)| id.clone())).await?;
    p.say("The wizard opens with the user filled in; the standard-leaver preset fills the next pages, the requester keeps its choices, gives a reason and submits five pages.")?;
    // The wizard brings a page back, with what to correct, when something it was told is
    // wrong (no such user): the demo then stops with what the page says.
    let sent_back = |view: &Json, page: usize| {
        let at = view["private_metadata"].as_str().and_then(|m| m.strip_prefix("page:")).and_then(|n| n.parse::<usize>().ok());
        (at.is_some_and(|at| at < page) && view.to_string().contains(":warning:")).then(|| to_terminal(&view["blocks"]))
    };
    for page in 0..5 {
        let view = slack.view(&view_id).context("the wizard view")?;
        if let Some(why) = sent_back(&view, page) {
            p.say(&format!("The wizard sends the requester back:\n{why}"))?;
            bail!("nothing was requested");
        }
        let values = Driver::shown(&view, changes(page, &user));
        let body: Json = driver.interact(&Driver::submit(REQUESTER.0, &view_id, &view, values)).await?.json().await?;
        match body["response_action"].as_str() {
            Some("update") => slack.put_view(&view_id, body["view"].clone()),
            Some("errors") => bail!("the wizard refused the answers: {}", body["errors"]),
            _ => {}
        }
    }
    // Discovery runs off the request path; the wizard then shows the plan's channel or why
    // there is none (no such user, a run already open).
    let posted = until(30, "the approval message", || {
        if let Some(m) = slack.messages().into_iter().find(|m| m.channel == CHANNEL && m.thread_ts.is_none()) {
            return Some(Ok(m));
        }
        let view = slack.view(&view_id).unwrap_or_default();
        if let Some(why) = sent_back(&view, 5) {
            return Some(Err(why));
        }
        view.to_string().contains("Not requested").then(|| Err(to_terminal(&view["blocks"])))
    })
    .await?;
    let preview = match posted {
        Ok(m) => m,
        Err(why) => {
            p.say(&format!("The wizard answers:\n{why}"))?;
            bail!("nothing was requested");
        }
    };
    p.say(&format!("Discovery done; the plan is posted for approval in #it-approvals:\n\n{}\n", to_terminal(&preview.blocks)))?;
    let approve = preview
        .blocks
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["type"] == "actions")
        .and_then(|b| b["elements"][0]["value"].as_str())
        .context("the Approve button")?
        .to_string();
    let run_id = RunId::parse(approve.split(':').nth(1).unwrap_or(""))?;

    let click = async |who: (&str, &str)| -> anyhow::Result<Option<String>> {
        let before = slack.ephemeral().len();
        driver.interact(&Driver::click(who.0, &slack.issue_trigger(), CHANNEL, &preview.ts, "approve", &approve)).await?;
        // Core either refuses (an ephemeral answer) or counts the approval (the run moves on).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some((_, _, t)) = slack.ephemeral().into_iter().skip(before).find(|(_, u, _)| u == who.0) {
                return Ok(Some(t));
            }
            if store.run(&run_id).await?.state != RunState::AwaitingApproval {
                return Ok(None);
            }
            if Instant::now() > deadline {
                bail!("no answer to the click");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    if args.interactive {
        loop {
            let who = match ask(p.out, "Who clicks Approve? [a] Ada (admin), [s] Sam (auditor), [r] Riley (the requester), [x] Ada rejects:")?.as_str() {
                "s" => VIEWER,
                "r" => REQUESTER,
                "x" => {
                    let reason = ask(p.out, "Ada's reason for rejecting:")?;
                    p.say(&format!("{} rejects: {reason}", APPROVER.1))?;
                    // Through the adapter: the Reject button opens a dialog for the reason.
                    let reject = preview
                        .blocks
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|b| b["type"] == "actions")
                        .and_then(|b| b["elements"][1]["value"].as_str())
                        .context("the Reject button")?
                        .to_string();
                    let views = slack.views().len();
                    driver.interact(&Driver::click(APPROVER.0, &slack.issue_trigger(), CHANNEL, &preview.ts, "reject", &reject)).await?;
                    let (dialog, view) = until(5, "the reason dialog", || slack.views().into_iter().nth(views)).await?;
                    let values = json!({ "reason": { "reason": text(&reason) } });
                    let answer: Json = driver.interact(&Driver::submit(APPROVER.0, &dialog, &view, values)).await?.json().await.unwrap_or(Json::Null);
                    if answer["response_action"] == "errors" {
                        bail!("the rejection was refused: {}", answer["errors"]);
                    }
                    let decided = until(10, "the updated message", || {
                        slack.messages().into_iter().find(|m| m.ts == preview.ts && m.blocks.to_string().contains("Rejected"))
                    })
                    .await?;
                    p.say(&format!("The approval message now reads:\n\n{}\n", to_terminal(&decided.blocks)))?;
                    return Ok(ExitCode::SUCCESS);
                }
                _ => APPROVER,
            };
            p.say(&format!("{} clicks Approve", who.1))?;
            match click(who).await? {
                Some(refusal) => p.say(&format!("  only {} sees: {refusal}", who.1))?,
                None => break,
            }
        }
    } else {
        for (who, expect) in [(VIEWER, "a viewer may not approve"), (REQUESTER, "the requester may not approve their own request")] {
            p.say(&format!("{} clicks Approve ({expect})", who.1))?;
            let said = click(who).await?.context("the refusal")?;
            p.say(&format!("  only {} sees: {said}", who.1))?;
        }
        p.say(&format!("{} clicks Approve", APPROVER.1))?;
        click(APPROVER).await?;
    }
    let approved_at = Instant::now();

    // Live: print each step line of the thread's status message when it changes, and every reply.
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    let mut replies = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let thread: Vec<Message> = slack.messages().into_iter().filter(|m| m.thread_ts.as_deref() == Some(preview.ts.as_str())).collect();
        if let Some(status) = thread.first() {
            for line in to_terminal(&status.blocks).lines().skip(1) {
                let title: String = line.split(" (").next().unwrap_or(line).split(": ").next().unwrap_or(line).chars().skip(2).collect();
                if shown.get(&title) != Some(&line.to_string()) {
                    shown.insert(title, line.to_string());
                    if !line.starts_with("▫️") {
                        p.say(line.trim())?;
                    }
                }
            }
        }
        for m in thread.iter().skip(1 + replies) {
            replies += 1;
            p.say(&format!("thread reply:\n{}", to_terminal(&m.blocks)))?;
        }
        let state = store.run(&run_id).await?.state;
        // The relay remembers its closing message once it is in the thread.
        if (state.is_terminal() || state == RunState::NeedsAttention) && store.message(&run_id, "slack:demo", "closing").await?.is_some() {
            for m in thread.iter().skip(1 + replies) {
                p.say(&format!("thread reply:\n{}", to_terminal(&m.blocks)))?;
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("the run did not finish in time (state {})", state.label());
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let run = store.run(&run_id).await?;
    p.say(&format!("Run {run_id} ended: {} ({:.1} s after the approval)", run.state.label(), approved_at.elapsed().as_secs_f64()))?;
    let file = slack.files().into_iter().find(|f| f.shared_to.is_some()).context("the report in the thread")?;
    let path = reports_dir.join(&file.name);
    p.say(&format!("The signed report was uploaded into the thread: {}", path.display()))?;
    let kept = std::fs::read(&path)?;
    let verdict = sign::verify(&kept, &[public]);
    p.say(&format!("offboard verify {}: {verdict}", path.display()))?;
    p.say(&format!("The signing key's public half: {public} (offboard keys show --signing-key {})", args.dir.join("signing.key").display()))?;
    let ok = matches!(verdict, Verdict::Valid { .. }) && kept == file.bytes && matches!(run.state, RunState::Completed | RunState::CompletedWithWarnings);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
