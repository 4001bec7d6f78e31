//! `offboard demo --platform discord`: the whole loop in Discord on one machine. A local
//! Discord (its REST API) stands in for Discord; scripted members send signed interactions
//! to the real Discord adapter, and every modal and message it shows is printed as text.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use offboard_core::chat::relay::{Relay, Routes};
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::domain::{Role, RunId};
use offboard_core::engine::{RetryPolicy, Worker, WorkerConfig};
use offboard_core::policy::{Access, Principal, RoleBinding};
use offboard_core::request::Presets;
use offboard_core::run::RunState;
use offboard_core::secret::Secret;
use offboard_core::service::Offboarding;
use offboard_core::templates::Templates;
use offboard_discord::api::DiscordApi;
use offboard_discord::fake::{Driver, FakeDiscord, submitted};
use offboard_discord::server::{DiscordApp, INTERACTIONS_PATH};
use offboard_discord::surface::DiscordSurface;
use offboard_discord::verify::{PublicKey, Verifier};
use offboard_report::sign::{self, Verdict};
use offboard_report::{Evidence, RunReports};
use serde_json::{Value, json};

use super::{DemoArgs, Printer, Stage, stage, until};

const APP_ID: &str = "1234567890123456789";
const GUILD: &str = "1100000000000000001";
const CHANNEL: &str = "1100000000000000002";
const ADMIN_ROLE: &str = "3100000000000000001";
/// Member ids and names.
const REQUESTER: (&str, &str) = ("2100000000000000001", "Riley Reyes (IT admin)");
const VIEWER: (&str, &str) = ("2100000000000000002", "Sam Stone (auditor)");
const APPROVER: (&str, &str) = ("2100000000000000003", "Ada Lovelace (IT admin)");

fn access() -> Access {
    let user = |(id, _): (&str, &str), role| RoleBinding { principal: Principal::User { platform: "discord".into(), id: id.into() }, role, tenants: None };
    let role = RoleBinding { principal: Principal::Group { platform: "discord".into(), id: ADMIN_ROLE.into() }, role: Role::Admin, tenants: None };
    Access { bindings: vec![user(REQUESTER, Role::Manager), user(VIEWER, Role::Viewer), role], people: vec![] }
}

/// A message or modal as a terminal shows it: its text, the embed's title, fields and
/// description, the modal's labels, and the buttons.
fn to_terminal(v: &Value) -> String {
    let data = if v["data"].is_object() { &v["data"] } else { v };
    let unescape = |s: &str| s.replace('\\', "");
    let mut lines = Vec::new();
    if let Some(t) = data["title"].as_str() {
        lines.push(format!("modal: {t}"));
    }
    if let Some(c) = data["content"].as_str() {
        lines.push(unescape(c));
    }
    for e in data["embeds"].as_array().into_iter().flatten() {
        lines.push(unescape(e["title"].as_str().unwrap_or_default()));
        for f in e["fields"].as_array().into_iter().flatten() {
            lines.push(format!("{}: {}", f["name"].as_str().unwrap_or_default(), unescape(f["value"].as_str().unwrap_or_default())));
        }
        lines.push(unescape(e["description"].as_str().unwrap_or_default()));
        lines.push(unescape(e["footer"]["text"].as_str().unwrap_or_default()));
    }
    let mut buttons = Vec::new();
    for c in data["components"].as_array().into_iter().flatten() {
        if c["type"] == 18 {
            lines.push(format!("  [{}]", c["label"].as_str().unwrap_or_default()));
        }
        for b in c["components"].as_array().into_iter().flatten() {
            buttons.push(format!("[ {} ]", b["label"].as_str().unwrap_or_default()));
        }
    }
    if !buttons.is_empty() {
        lines.push(buttons.join("  "));
    }
    lines.join("\n")
}

pub(super) async fn run(args: &DemoArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut p = Printer { out, started };
    p.say("Offboard demo in Discord: a simulated Microsoft 365 tenant (contoso.com) and a local Discord on loopback; nothing leaves this machine.")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let Stage { simulated, store, key } = stage(args, clock.clone()).await?;
    let svc = Arc::new(Offboarding::new(store.clone(), simulated.m365.clone(), clock.clone(), access(), simulated.tenants.clone(), Presets::default()));

    // The local Discord, with a fresh bot token and signing key for each demo.
    let token = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let discord = FakeDiscord::start(&token).await;
    discord.add_channel(CHANNEL);
    let api = Arc::new(DiscordApi::new(discord.url(), APP_ID, Secret::new(token)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}{INTERACTIONS_PATH}", listener.local_addr()?);
    let mut driver = Driver::new(endpoint, discord.clone(), APP_ID, GUILD, CHANNEL);
    for (id, name) in [REQUESTER, VIEWER, APPROVER] {
        driver = driver.with_name(id, name);
    }
    let verifier = Verifier::new(PublicKey::parse(&driver.public_key()).map_err(anyhow::Error::msg)?, clock.clone());
    let routes = Routes::single("discord", CHANNEL);
    let app = DiscordApp::new(svc.clone(), simulated.m365.clone(), routes.clone(), verifier, api.clone(), clock.clone());
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let public = key.public();
    let evidence = Arc::new(Evidence::new(key, args.dir.join("reports")));
    let reports = Arc::new(RunReports { evidence, store: store.clone(), links: None });
    let templates = Arc::new(Templates::load(None, &[])?);
    let relay = Relay::new(store.clone(), Arc::new(DiscordSurface::new(api.clone())), "discord:demo", routes, Some(reports), templates, clock.clone());
    tokio::spawn(async move { relay.run_until(Duration::from_millis(30), std::future::pending::<()>()).await });
    let config = WorkerConfig {
        poll: Duration::from_millis(20),
        retry: RetryPolicy { initial: Duration::from_millis(100), ..RetryPolicy::default() },
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), simulated.m365.clone(), clock.clone(), config);
    tokio::spawn(async move { worker.run_until_stopped(std::future::pending::<()>()).await });

    let registered = api.register(Some(GUILD), &offboard_discord::commands::definitions(&["standard-leaver".into(), "none".into()])).await?;
    p.say(&format!("Offboard's {registered} commands are registered in the IT server; #it-approvals is its approvals channel."))?;
    let user = &args.user;
    p.say(&format!("{} types: /offboard user:{user}", REQUESTER.1))?;
    let command = json!({ "name": "offboard", "type": 1, "options": [{ "name": "user", "type": 3, "value": user }] });
    let mut modal = driver.answer(&driver.interaction(2, REQUESTER.0, &[], command)).await;
    if modal["type"] != 9 {
        p.say(&format!("Offboard answers:\n{}", to_terminal(&modal)))?;
        bail!("nothing was requested");
    }
    p.say("The standard-leaver preset fills the pages; a reason goes on the last.")?;
    let mut pages = 0;
    let answer = loop {
        p.say(&format!("  {}", to_terminal(&modal).lines().next().unwrap_or_default()))?;
        let reason = modal["data"]["components"].as_array().into_iter().flatten().any(|l| l["component"]["custom_id"] == "reason");
        let changes = if reason { json!({ "reason": "Resigned; today is the last day" }) } else { json!({}) };
        let said = driver.answer(&driver.interaction(5, REQUESTER.0, &[], submitted(&modal, changes))).await;
        let button = said["data"]["components"][0]["components"][0]["custom_id"].clone();
        if button.is_null() {
            break said;
        }
        if said["data"]["content"].as_str().unwrap_or_default().contains("needs correcting") {
            p.say(&format!("Offboard sends the requester back:\n{}", to_terminal(&said)))?;
            bail!("nothing was requested");
        }
        p.say(&format!("  only {} sees: {}", REQUESTER.1, to_terminal(&said).replace('\n', " ").replace("**", "")))?;
        modal = driver.answer(&driver.interaction(3, REQUESTER.0, &[], json!({ "custom_id": button, "component_type": 2 }))).await;
        pages += 1;
        if pages > 8 {
            bail!("the wizard did not end");
        }
    };
    p.say(&format!("The last page answers: {}", to_terminal(&answer)))?;
    let said = until(60, "the plan", || {
        discord
            .calls()
            .into_iter()
            .find(|c| c.path.starts_with("/webhooks/") && c.status == 200)
            .map(|c| c.body["content"].as_str().unwrap_or_default().to_string())
    })
    .await?;
    p.say(&format!("Then, to {} only: {}", REQUESTER.1, said.replace('\\', "").replace("**", "").replace(&format!("<#{CHANNEL}>"), "#it-approvals")))?;
    let Some(run_id) = said.split('`').nth(1).and_then(|r| RunId::parse(r).ok()) else { bail!("nothing was requested") };
    let root =
        until(15, "the approval message", || discord.messages().into_iter().find(|m| m.channel == CHANNEL && m.body.to_string().contains(run_id.as_str())))
            .await?;
    p.say(&format!("The plan is posted for approval in #it-approvals:\n\n{}\n", to_terminal(&root.body)))?;
    let approve = root.body["components"][0]["components"][0]["custom_id"].clone();
    for (who, roles, expect) in [
        (VIEWER, vec![], "a viewer may not approve"),
        (REQUESTER, vec![ADMIN_ROLE], "the requester may not approve their own request"),
        (APPROVER, vec![ADMIN_ROLE], ""),
    ] {
        p.say(&format!("{} clicks Approve{}", who.1, if expect.is_empty() { String::new() } else { format!(" ({expect})") }))?;
        let answer = driver.answer(&driver.interaction(3, who.0, &roles, json!({ "custom_id": approve, "component_type": 2 }))).await;
        if answer["data"]["flags"] == 64 {
            p.say(&format!("  only {} sees: {}", who.1, answer["data"]["content"].as_str().unwrap_or_default().replace('\\', "")))?;
        }
    }
    let approved_at = Instant::now();

    // Live: each line of the status message as it changes, and every reply in the thread.
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    let mut replies = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    let pdf = loop {
        let thread: Vec<_> = discord.messages().into_iter().filter(|m| m.channel == root.id).collect();
        if let Some(status) = thread.first() {
            for line in status.body["content"].as_str().unwrap_or_default().lines().skip(1) {
                let line = line.replace('\\', "");
                let title: String = line.split(": ").next().unwrap_or(&line).chars().skip(2).collect();
                if shown.get(&title) != Some(&line) {
                    shown.insert(title, line.clone());
                    if !line.starts_with("▫️") {
                        p.say(line.trim())?;
                    }
                }
            }
        }
        for m in thread.iter().skip(1 + replies) {
            replies += 1;
            let file = m.files.first().map(|(name, bytes)| format!("\n[ {name}, {} bytes ]", bytes.len())).unwrap_or_default();
            p.say(&format!("thread reply:\n{}{file}", to_terminal(&m.body)))?;
        }
        let state = store.run(&run_id).await?.state;
        let closing = store.message(&run_id, "discord:demo", "closing").await?.is_some();
        if let Some(pdf) = thread.iter().find_map(|m| m.files.first().map(|(_, b)| b.clone()))
            && (state.is_terminal() || state == RunState::NeedsAttention)
            && closing
        {
            for m in discord.messages().into_iter().filter(|m| m.channel == root.id).skip(1 + replies) {
                p.say(&format!("thread reply:\n{}", to_terminal(&m.body)))?;
            }
            break pdf;
        }
        if Instant::now() > deadline {
            bail!("the run did not finish in time (state {})", state.label());
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    };
    let run = store.run(&run_id).await?;
    p.say(&format!("Run {run_id} ended: {} ({:.1} s after the approval)", run.state.label(), approved_at.elapsed().as_secs_f64()))?;
    let path = args.dir.join(format!("{run_id}.pdf"));
    std::fs::write(&path, &pdf)?;
    p.say(&format!("The PDF uploaded into the thread: {}", path.display()))?;
    let verdict = sign::verify(&pdf, &[public]);
    p.say(&format!("offboard verify {}: {verdict}", path.display()))?;
    let ok = matches!(verdict, Verdict::Valid { .. }) && matches!(run.state, RunState::Completed | RunState::CompletedWithWarnings);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
