//! `offboard demo --platform teams`: the whole loop in Teams on one machine. A fake Bot
//! Framework (its keys, the bot's token endpoint and the connector) stands in for Teams;
//! scripted people send signed activities to the real Teams adapter, and every card and
//! message it posts is printed as text.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use offboard_core::chat::relay::{Relay, Routes};
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::domain::TenantId;
use offboard_core::domain::{Role, RunId};
use offboard_core::engine::{RetryPolicy, Worker, WorkerConfig};
use offboard_core::policy::{Access, Principal, RoleBinding};
use offboard_core::request::Presets;
use offboard_core::run::RunState;
use offboard_core::secret::Secret;
use offboard_core::service::Offboarding;
use offboard_core::templates::Templates;
use offboard_m365::files::TeamsFiles;
use offboard_report::links::{LINK_TTL, ReportLinks};
use offboard_report::sign::{self, Verdict};
use offboard_report::{Evidence, RunReports};
use offboard_teams::auth::Verifier;
use offboard_teams::connector::{BotIdentity, Connector};
use offboard_teams::fake::{Driver, FakeBotFramework, Message, SigningKey, submitted};
use offboard_teams::server::TeamsApp;
use offboard_teams::surface::TeamsSurface;
use serde_json::{Value, json};

use super::{DemoArgs, Printer, Stage, stage, until};

const APP_ID: &str = "0d3e5f7a-1b2c-4d5e-8f9a-0b1c2d3e4f5a";
const TENANT: &str = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
const CHANNEL: &str = "19:it-approvals@thread.tacv2";
/// The simulated tenant's team the approvals channel is in.
const IT_TEAM: &str = "IT Operations";
/// Entra object ids and names.
const REQUESTER: (&str, &str) = ("aad-riley", "Riley Reyes (IT admin)");
const VIEWER: (&str, &str) = ("aad-sam", "Sam Stone (auditor)");
const APPROVER: (&str, &str) = ("aad-ada", "Ada Lovelace (IT admin)");

fn access() -> Access {
    let bind = |(id, _): (&str, &str), role| RoleBinding { principal: Principal::User { platform: "teams".into(), id: id.into() }, role, tenants: None };
    Access { bindings: vec![bind(REQUESTER, Role::Admin), bind(VIEWER, Role::Viewer), bind(APPROVER, Role::Admin)], people: vec![] }
}

/// A card or message as a terminal shows it: text blocks, facts, inputs and buttons.
fn to_terminal(activity: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v["type"].as_str() {
            Some("TextBlock") => out.push(v["text"].as_str().unwrap_or_default().replace("\\", "")),
            Some("FactSet") => {
                for f in v["facts"].as_array().into_iter().flatten() {
                    out.push(format!("{}: {}", f["title"].as_str().unwrap_or_default(), f["value"].as_str().unwrap_or_default().replace("\\", "")));
                }
            }
            _ => {}
        }
        for key in ["body", "items"] {
            for child in v[key].as_array().into_iter().flatten() {
                walk(child, out);
            }
        }
    }
    let mut lines = Vec::new();
    if let Some(t) = activity["text"].as_str() {
        lines.push(t.replace("\\", ""));
    }
    for a in activity["attachments"].as_array().into_iter().flatten() {
        walk(&a["content"], &mut lines);
        let buttons: Vec<String> =
            a["content"]["actions"].as_array().into_iter().flatten().map(|b| format!("[ {} ]", b["title"].as_str().unwrap_or_default())).collect();
        if !buttons.is_empty() {
            lines.push(buttons.join("  "));
        }
    }
    lines.join("\n")
}

struct Channel {
    fake: FakeBotFramework,
    driver: Driver,
}

impl Channel {
    fn activity(&self, kind: &str, from: (&str, &str), extra: Value) -> Value {
        self.driver.activity(kind, from.0, extra)
    }

    async fn send(&self, activity: &Value) -> anyhow::Result<reqwest::Response> {
        let r = self.driver.send(activity).await?;
        if !r.status().is_success() {
            bail!("the Teams adapter refused an activity: {}", r.status());
        }
        Ok(r)
    }

    async fn invoke(&self, from: (&str, &str), name: &str, value: Value) -> anyhow::Result<Value> {
        Ok(self.driver.invoke(from.0, name, value).await?)
    }
}

pub(super) async fn run(args: &DemoArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut p = Printer { out, started };
    p.say("Offboard demo in Teams: a simulated Microsoft 365 tenant (contoso.com) and a local Bot Framework on loopback; nothing leaves this machine.")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let Stage { simulated, store, key } = stage(args, clock.clone()).await?;
    let svc = Arc::new(Offboarding::new(store.clone(), simulated.m365.clone(), clock.clone(), access(), simulated.tenants.clone(), Presets::default()));

    // The local Bot Framework, with a fresh key and bot password for each demo.
    let signing = SigningKey::generate("demo-key", &["msteams"]);
    let fake = FakeBotFramework::start(vec![signing.clone()]).await;
    let password = format!("demo-{}", uuid::Uuid::new_v4().simple());
    fake.register_bot(APP_ID, &password);
    let bot = BotIdentity { app_id: APP_ID.into(), password: Secret::new(password), token_url: format!("{}/{TENANT}/oauth2/v2.0/token", fake.url()) };
    let connector = Arc::new(Connector::new(bot, &fake.url(), clock.clone()));
    let routes = Routes::single("teams", CHANNEL);
    // The approvals channel is in contoso's IT Operations team, whose Files take a copy of each report.
    let contoso = TenantId::parse("contoso.com")?;
    let team = simulated.sim.tenant("contoso.com", |t| t.group_id(IT_TEAM)).flatten().ok_or_else(|| anyhow::anyhow!("the scenario has no {IT_TEAM} team"))?;
    let verifier = Verifier::new(APP_ID, fake.metadata_url(), clock.clone());
    let app = TeamsApp::new(svc.clone(), simulated.m365.clone(), routes.clone(), verifier, connector.clone(), clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_url = format!("http://{}", listener.local_addr()?);
    let public = key.public();
    let links = Arc::new(ReportLinks::new(&app_url, &key, LINK_TTL));
    let reports_dir = args.dir.join("reports");
    let evidence = Arc::new(Evidence::new(key, &reports_dir));
    let router = app.router().merge(crate::serve::report_downloads(links.clone(), evidence.clone(), store.clone(), clock.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let reports = Arc::new(RunReports { evidence, store: store.clone(), links: Some(links) });
    let relay = Relay::new(
        store.clone(),
        Arc::new(TeamsSurface::new(connector, TENANT).with_files(Arc::new(TeamsFiles::new(simulated.m365.clone(), contoso.clone())), store.clone())),
        "teams:demo",
        routes,
        Some(reports),
        Arc::new(Templates::load(None, &[])?),
        clock.clone(),
    );
    tokio::spawn(async move { relay.run_until(Duration::from_millis(30), std::future::pending::<()>()).await });
    let config = WorkerConfig {
        poll: Duration::from_millis(20),
        retry: RetryPolicy { initial: Duration::from_millis(100), ..RetryPolicy::default() },
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), simulated.m365.clone(), clock.clone(), config);
    tokio::spawn(async move { worker.run_until_stopped(std::future::pending::<()>()).await });
    let mut driver = Driver::new(format!("{app_url}/api/messages"), fake.clone(), signing, APP_ID, TENANT, CHANNEL).in_team(&team);
    for (id, name) in [REQUESTER, VIEWER, APPROVER] {
        driver = driver.with_name(id, name);
    }
    let t = Channel { fake, driver };

    t.send(&t.activity("installationUpdate", APPROVER, json!({ "action": "add" }))).await?;
    p.say("Offboard is installed in the IT team; #it-approvals is its approvals channel.")?;
    let user = &args.user;
    p.say(&format!("{} writes in #it-approvals: @Offboard offboard {user}", REQUESTER.1))?;
    t.send(&t.driver.mention(REQUESTER.0, &format!("offboard {user}"))).await?;
    let answer = until(10, "the bot's answer", || t.fake.messages().first().cloned()).await?;
    p.say(&format!("Offboard answers:\n{}", to_terminal(&answer.activity)))?;
    let open = answer.activity["attachments"][0]["content"]["actions"][0]["data"].clone();
    if open.get("wizard").is_none() {
        bail!("nothing was requested");
    }
    p.say(&format!("{} clicks Open the wizard; the standard-leaver preset fills the pages, a reason goes on the last.", REQUESTER.1))?;
    let mut dialog = t.invoke(REQUESTER, "task/fetch", json!({ "data": open })).await?;
    let mut pages = 0;
    while dialog["task"]["type"] == "continue" {
        let title = dialog["task"]["value"]["title"].as_str().unwrap_or_default().to_string();
        let card = &dialog["task"]["value"]["card"]["content"];
        if card.to_string().contains("Attention") && pages > 0 {
            p.say(&format!("The dialog sends the requester back:\n{}", to_terminal(&json!({ "attachments": [{ "content": card }] }))))?;
            bail!("nothing was requested");
        }
        p.say(&format!("  dialog: {title}"))?;
        let reason = card["body"].as_array().into_iter().flatten().any(|b| b["id"] == "reason");
        let changes = if reason { json!({ "reason": "Resigned; today is the last day" }) } else { json!({}) };
        dialog = t.invoke(REQUESTER, "task/submit", json!({ "data": submitted(&dialog, changes) })).await?;
        pages += 1;
        if pages > 8 {
            bail!("the wizard did not end");
        }
    }
    p.say(&format!("The dialog closes: {}", dialog["task"]["value"].as_str().unwrap_or_default()))?;
    let said = until(60, "the plan", || t.fake.messages().into_iter().skip(1).find(|m| m.thread.is_none() && m.activity["text"].is_string())).await?;
    p.say(&format!("Offboard answers:\n{}", to_terminal(&said.activity)))?;
    let Some(run_id) = said.activity["text"].as_str().and_then(|s| s.split('`').nth(1)).and_then(|r| RunId::parse(r).ok()) else {
        bail!("nothing was requested")
    };
    let card = until(15, "the approval card", || {
        t.fake.messages().into_iter().find(|m| m.thread.is_none() && m.activity["attachments"][0]["content"].to_string().contains(run_id.as_str()))
    })
    .await?;
    p.say(&format!("The plan is posted for approval in #it-approvals:\n\n{}\n", to_terminal(&card.activity)))?;
    let approve = card.activity["attachments"][0]["content"]["actions"][0]["data"].clone();
    for (who, expect) in [(VIEWER, "a viewer may not approve"), (REQUESTER, "the requester may not approve their own request"), (APPROVER, "")] {
        p.say(&format!("{} clicks Approve{}", who.1, if expect.is_empty() { String::new() } else { format!(" ({expect})") }))?;
        let answer = t.invoke(who, "adaptiveCard/action", json!({ "action": { "type": "Action.Execute", "verb": "approve", "data": approve } })).await?;
        if answer["type"] == "application/vnd.microsoft.activity.message" {
            p.say(&format!("  only {} sees: {}", who.1, answer["value"].as_str().unwrap_or_default()))?;
        }
    }
    let approved_at = Instant::now();

    // Live: each line of the status card as it changes, and every reply in the thread.
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    let mut replies = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    let link = loop {
        let thread: Vec<Message> = t.fake.messages().into_iter().filter(|m| m.thread.as_deref() == Some(card.id.as_str())).collect();
        if let Some(status) = thread.first() {
            for line in to_terminal(&status.activity).lines().skip(1) {
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
            p.say(&format!("thread reply:\n{}", to_terminal(&m.activity)))?;
        }
        let found = thread.iter().find_map(|m| {
            m.activity["attachments"][0]["content"]["actions"]
                .as_array()?
                .iter()
                .find(|a| a["type"] == "Action.OpenUrl")
                .and_then(|a| a["url"].as_str().map(String::from))
        });
        let state = store.run(&run_id).await?.state;
        if let Some(link) = found
            && (state.is_terminal() || state == RunState::NeedsAttention)
            && store.message(&run_id, "teams:demo", "closing").await?.is_some()
        {
            for m in t.fake.messages().into_iter().filter(|m| m.thread.as_deref() == Some(card.id.as_str())).skip(1 + replies) {
                p.say(&format!("thread reply:\n{}", to_terminal(&m.activity)))?;
            }
            break link;
        }
        if Instant::now() > deadline {
            bail!("the run did not finish in time (state {})", state.label());
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    };
    let run = store.run(&run_id).await?;
    p.say(&format!("Run {run_id} ended: {} ({:.1} s after the approval)", run.state.label(), approved_at.elapsed().as_secs_f64()))?;
    let pdf = reqwest::get(&link).await?.error_for_status()?.bytes().await?;
    let path = args.dir.join(format!("{run_id}.pdf"));
    std::fs::write(&path, &pdf)?;
    p.say(&format!("The report's link in the thread downloads the signed report: {}", path.display()))?;
    let verdict = sign::verify(&pdf, &[public]);
    p.say(&format!("offboard verify {}: {verdict}", path.display()))?;
    let name = format!("{run_id}.pdf");
    let copy = simulated.sim.tenant("contoso.com", |t| {
        let site = t.groups.get(&team)?.site.as_ref()?;
        site.channels.iter().find(|c| c.channel == CHANNEL)?.files.get(&name).map(|f| f.bytes.clone())
    });
    let filed = copy.flatten().is_some_and(|bytes| bytes == pdf.as_ref());
    if filed {
        p.say(&format!("A copy of the same report is in the IT Approvals channel's Files, as {name}."))?;
    } else {
        p.say("The channel's Files hold no copy of the report.")?;
    }
    let ok = filed && matches!(verdict, Verdict::Valid { .. }) && matches!(run.state, RunState::Completed | RunState::CompletedWithWarnings);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
