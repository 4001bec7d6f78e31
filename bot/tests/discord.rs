//! The whole loop in Discord, through `offboard serve` against the simulated tenant and a
//! local Discord over real HTTP: the commands registered by `offboard discord register`,
//! `PING`, `/offboard user:alice…` answered with a modal, the pages chained by Continue
//! buttons with one field error, the approval message in the approvals channel, the
//! outsider's and the requester's clicks refused to them alone (audited), two approvers for
//! a high-risk plan, a thread from the approval message with the status edited through
//! every step, and the signed PDF uploaded into the thread and accepted by `offboard
//! verify`; then the tenant itself is checked.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_discord::fake::{Driver, FakeDiscord, submitted};
use offboard_m365::Settings;
use offboard_m365_sim::{Scenario, SimConfig};
use offboard_testkit::TestDb;
use serde_json::{Value, json};

mod common;

const APP_ID: &str = "1234567890123456789";
const GUILD: &str = "1100000000000000001";
const CHANNEL: &str = "1100000000000000002";
const BOT_TOKEN: &str = "discord-bot-token-for-serve";
const REQUESTER: &str = "2100000000000000001";
const ADMIN1: &str = "2100000000000000003";
const ADMIN2: &str = "2100000000000000004";
const ADMIN_ROLE: &str = "3100000000000000001";

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn has_field(modal: &Value, id: &str) -> bool {
    modal["data"]["components"].as_array().into_iter().flatten().any(|l| l["component"]["custom_id"] == id)
}

async fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_loop_in_discord_through_serve() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
    let cfg = SimConfig { latency: offboard_m365_sim::Latency::Fixed { ms: 80 }, conversion_delay: Duration::from_millis(200), ..SimConfig::default() };
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), cfg, clock.clone(), Settings::default(), policy).await.unwrap();
    let db = TestDb::sqlite();
    let discord = FakeDiscord::start(BOT_TOKEN).await;
    discord.add_channel(CHANNEL);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let driver = Driver::new(format!("http://127.0.0.1:{port}/discord/interactions"), discord.clone(), APP_ID, GUILD, CHANNEL);
    let extra = format!(
        "[[roles]]\nplatform = \"discord\"\nuser = \"{REQUESTER}\"\nrole = \"manager\"\n\n[[roles]]\nplatform = \"discord\"\ngroup = \"{ADMIN_ROLE}\"\nrole = \"admin\"\n\n\
         [discord]\napplication_id = \"{APP_ID}\"\npublic_key = \"{key}\"\nguild_id = \"{GUILD}\"\napprovals_channel = \"{CHANNEL}\"\napi_url = \"{api}\"\n",
        key = driver.public_key(),
        api = discord.url()
    );
    let path = common::write_config(dir.path(), &sim, &db.url, &extra);
    let text = std::fs::read_to_string(&path).unwrap().replace("\nlisten = \"127.0.0.1:0\"", &format!("\nlisten = \"127.0.0.1:{port}\""));
    std::fs::write(&path, format!("public_url = \"http://127.0.0.1:{port}\"\n{text}")).unwrap();

    // The commands, from the bot's own definitions.
    let registered = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["discord", "register", "--config", path.to_str().unwrap()])
        .env("OFFBOARD__DISCORD__BOT_TOKEN", BOT_TOKEN)
        .output()
        .unwrap();
    assert_eq!(registered.status.code(), Some(0), "{}", String::from_utf8_lossy(&registered.stdout));
    let names: Vec<Value> = discord.commands(Some(GUILD)).iter().map(|c| c["name"].clone()).collect();
    assert_eq!(names, [json!("offboard"), json!("offboards")]);

    let log = dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .env("OFFBOARD_LOG", "trace")
        .env("OFFBOARD__DISCORD__BOT_TOKEN", BOT_TOKEN)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let _serving = Serving(child);
    let (_, ops) = common::serving(&line);

    // PING, as Discord checks the endpoint.
    let ping = driver.answer(&json!({ "id": "1", "type": 1, "application_id": APP_ID, "token": "t", "version": 1 })).await;
    assert_eq!(ping, json!({ "type": 1 }));

    // /offboard user:alice…: the first page's modal at once; the pages with one error.
    let command = json!({ "name": "offboard", "type": 1, "options": [{ "name": "user", "type": 3, "value": "alice.able@contoso.com" }] });
    let mut modal = driver.answer(&driver.interaction(2, REQUESTER, &[], command)).await;
    assert_eq!(modal["type"], 9, "{modal}");
    let mut errors = 0;
    let mut guard = 0;
    let answer = loop {
        guard += 1;
        assert!(guard < 15, "{modal}");
        let changes = if has_field(&modal, "forward_to") && errors == 0 {
            json!({ "forward_to": "not an address" })
        } else if has_field(&modal, "forward_to") {
            json!({ "forward_to": "" })
        } else if has_field(&modal, "reason") {
            json!({ "reason": "Resigned" })
        } else {
            json!({})
        };
        let said = driver.answer(&driver.interaction(5, REQUESTER, &[], submitted(&modal, changes))).await;
        let button = said["data"]["components"][0]["components"][0]["custom_id"].clone();
        if button.is_null() {
            break said;
        }
        errors += usize::from(said["data"]["content"].as_str().unwrap().contains("needs correcting"));
        modal = driver.answer(&driver.interaction(3, REQUESTER, &[], json!({ "custom_id": button, "component_type": 2 }))).await;
    };
    assert_eq!(errors, 1, "one field error was shown");
    assert!(answer["data"]["content"].as_str().unwrap().starts_with("Looking up alice.able@contoso.com"), "{answer}");
    let said = until(30, "the wizard's answer", || {
        discord
            .calls()
            .into_iter()
            .find(|c| c.path.starts_with("/webhooks/") && c.status == 200)
            .map(|c| c.body["content"].as_str().unwrap_or_default().to_string())
    })
    .await;
    assert!(said.contains("posted for approval"), "{said}");
    let run = offboard_core::domain::RunId::parse(said.split('`').nth(1).unwrap()).unwrap();

    // The approval message in the approvals channel.
    let root =
        until(15, "the approval message", || discord.messages().into_iter().find(|m| m.channel == CHANNEL && m.body.to_string().contains(run.as_str()))).await;
    let approve = root.body["components"][0]["components"][0]["custom_id"].as_str().unwrap().to_string();
    let click = |who: &str, roles: &[&str]| driver.interaction(3, who, roles, json!({ "custom_id": approve, "component_type": 2 }));
    let outsider = driver.answer(&click("2100000000000000009", &[])).await;
    assert_eq!((outsider["type"].as_u64(), outsider["data"]["flags"].as_u64()), (Some(4), Some(64)), "{outsider}");
    let own = driver.answer(&click(REQUESTER, &[ADMIN_ROLE])).await;
    assert_eq!(own["data"]["flags"], 64, "{own}");
    let store = db.store().await;
    let refused = store.audit_for_run(&run).await.unwrap().into_iter().filter(|e| e.action == "approval.refused").count();
    assert_eq!(refused, 2);
    let rec = store.run(&run).await.unwrap();
    assert_eq!(rec.requester, format!("discord:{REQUESTER}"));
    let first = driver.answer(&click(ADMIN1, &[ADMIN_ROLE])).await;
    assert_eq!(first["type"], 7, "{first}");
    if rec.approvals_needed == 2 {
        assert_eq!(driver.answer(&click(ADMIN1, &[ADMIN_ROLE])).await["data"]["flags"], 64, "the same approver twice");
        let second = driver.answer(&click(ADMIN2, &[ADMIN_ROLE])).await;
        assert!(second["data"].to_string().contains("Approved"), "{second}");
    }

    // The run: a thread from the approval message, the status edited there, the PDF.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = store.run(&run).await.unwrap().state;
        if s.is_terminal() || s == offboard_core::run::RunState::NeedsAttention {
            assert!(matches!(s, offboard_core::run::RunState::Completed | offboard_core::run::RunState::CompletedWithWarnings), "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = until(30, "the report in the thread", || discord.messages().into_iter().find(|m| m.channel == root.id && !m.files.is_empty())).await;
    assert_eq!(discord.thread_of(&root.id).as_deref(), Some(CHANNEL), "the thread is the approval message's");
    let status =
        discord.messages().into_iter().find(|m| m.channel == root.id && m.body.to_string().contains(&format!("run `{run}`"))).expect("the status message");
    assert!(status.edits >= 2, "the status was edited as steps progressed: {}", status.edits);
    let last = status.body["content"].as_str().unwrap();
    assert!(last.contains("✅ Disable sign") && !last.contains("⏳") && !last.contains("▫️"), "every step ended: {last}");
    let (name, pdf) = &report.files[0];
    assert_eq!(name, &format!("{run}.pdf"));
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, pdf).unwrap();
    let verified = Command::new(env!("CARGO_BIN_EXE_offboard")).args(["--config", path.to_str().unwrap(), "verify", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", String::from_utf8_lossy(&verified.stdout));

    let metrics = reqwest::get(format!("{ops}/metrics")).await.unwrap().text().await.unwrap();
    let acks = metrics.lines().find_map(|l| l.strip_prefix("offboard_discord_ack_seconds_count ")).and_then(|n| n.parse::<u64>().ok());
    assert!(acks.is_some_and(|n| n >= 10), "{metrics}");

    // The tenant: alice is blocked. No secret in anything sent to Discord, the report or the log.
    let enabled = sim.sim.tenant("contoso.com", |t| t.user_id("alice.able@contoso.com").map(|id| t.users[&id].account_enabled)).flatten();
    assert_eq!(enabled, Some(false));
    let posted: String = discord.calls().iter().map(|c| c.body.to_string()).collect();
    let text = String::from_utf8(Command::new("pdftotext").arg(&file).arg("-").output().unwrap().stdout).unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    let client_secret = sim.secrets[0].1.expose().to_string();
    for secret in [BOT_TOKEN, client_secret.as_str()] {
        for (what, t) in [("Discord", &posted), ("the report", &text), ("the log", &logged)] {
            assert!(!t.contains(secret), "a secret in {what}");
        }
    }
    db.cleanup().await;
}
