//! The whole loop in Teams, through `offboard serve` against the simulated tenant and a fake
//! Bot Framework over real HTTP: the install event, `@Offboard offboard alice…`, the wizard's
//! dialogs with one field error, the approval card in the approvals channel, the outsider's
//! and the requester's clicks refused to them alone, two approvers for a high-risk plan, the
//! status card edited through every step, and a closing report link whose PDF `offboard
//! verify` accepts; then the tenant itself is checked.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_m365::Settings;
use offboard_m365_sim::{Scenario, SimConfig};
use offboard_teams::fake::{Driver, FakeBotFramework, SigningKey, submitted};
use offboard_testkit::TestDb;
use serde_json::{Value, json};

mod common;

const APP_ID: &str = "8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const CHANNEL: &str = "19:it-approvals@thread.tacv2";
const REQUESTER: &str = "aad-requester";
const ADMIN1: &str = "aad-admin-1";
const ADMIN2: &str = "aad-admin-2";

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

struct Teams {
    fake: FakeBotFramework,
    driver: Driver,
}

impl Teams {
    fn activity(&self, kind: &str, from: &str, extra: Value) -> Value {
        self.driver.activity(kind, from, extra)
    }

    async fn send(&self, activity: &Value) -> reqwest::Response {
        self.driver.send(activity).await.unwrap()
    }

    async fn invoke(&self, who: &str, name: &str, value: Value) -> Value {
        let r = self.send(&self.activity("invoke", who, json!({ "name": name, "value": value }))).await;
        assert_eq!(r.status(), 200, "{name}");
        r.json().await.unwrap()
    }

    async fn until<T>(&self, secs: u64, what: &str, mut f: impl FnMut(&[offboard_teams::fake::Message]) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f(&self.fake.messages()) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {:#?}", self.fake.messages().iter().map(|m| &m.activity).collect::<Vec<_>>());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn card_of(m: &offboard_teams::fake::Message) -> &Value {
    &m.activity["attachments"][0]["content"]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_loop_in_teams_through_serve() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
    // Calls take a while, as Microsoft's do, so the run's steps are seen progressing.
    let cfg = SimConfig { latency: offboard_m365_sim::Latency::Fixed { ms: 80 }, conversion_delay: Duration::from_millis(200), ..SimConfig::default() };
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), cfg, clock.clone(), Settings::default(), policy).await.unwrap();
    // The bot is registered in contoso's own directory, whose IT Operations team holds the
    // approvals channel: its Files take a copy of each report.
    let home = sim.sim.tenant("contoso.com", |t| t.id.clone()).unwrap();
    let it_team = sim.sim.tenant("contoso.com", |t| t.group_id("IT Operations")).flatten().unwrap();
    let db = TestDb::sqlite();
    let key = SigningKey::generate("k-teams", &["msteams"]);
    let fake = FakeBotFramework::start(vec![key.clone()]).await;
    fake.register_bot(APP_ID, "teams-app-password");
    let dir = tempfile::tempdir().unwrap();
    let roles: String = [(REQUESTER, "manager"), (ADMIN1, "admin"), (ADMIN2, "admin")]
        .iter()
        .map(|(u, r)| format!("[[roles]]\nplatform = \"teams\"\nuser = \"{u}\"\nrole = \"{r}\"\n\n"))
        .collect();
    let extra = format!(
        "{roles}[teams]\napp_id = \"{APP_ID}\"\ntenant_id = \"{home}\"\napprovals_channel = \"{CHANNEL}\"\nlogin = \"{u}\"\nopenid_metadata = \"{m}\"\nservice_url = \"{u}\"\n",
        u = fake.url(),
        m = fake.metadata_url()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let public = format!("http://127.0.0.1:{port}");
    let path = common::write_config(dir.path(), &sim, &db.url, &extra);
    let text = std::fs::read_to_string(&path).unwrap().replace("\nlisten = \"127.0.0.1:0\"", &format!("\nlisten = \"127.0.0.1:{port}\""));
    std::fs::write(&path, format!("public_url = \"{public}\"\n{text}")).unwrap();
    // Everything serve logs, at the most detailed level, to search for secrets at the end.
    let log = dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .env("OFFBOARD_LOG", "trace")
        .env("OFFBOARD__TEAMS__APP_PASSWORD", "teams-app-password")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let _serving = Serving(child);
    let (url, ops) = common::serving(&line);
    let driver = Driver::new(format!("{url}/api/messages"), fake.clone(), key, APP_ID, &home, CHANNEL).in_team(&it_team);
    let t = Teams { fake, driver };

    // Installed in the team: the channel's reference is kept.
    assert_eq!(t.send(&t.activity("installationUpdate", ADMIN1, json!({ "action": "add" }))).await.status(), 200);

    // @Offboard offboard alice…: a card with the button that opens the wizard.
    let asked = t.driver.mention(REQUESTER, "offboard alice.able@contoso.com");
    assert_eq!(t.send(&asked).await.status(), 200);
    let open = t
        .until(10, "the wizard's button", |m| {
            m.iter().find_map(|m| card_of(m)["actions"][0]["data"].get("msteams").map(|_| card_of(m)["actions"][0]["data"].clone()))
        })
        .await;
    let mut dialog = t.invoke(REQUESTER, "task/fetch", json!({ "data": open })).await;
    dialog = t.invoke(REQUESTER, "task/submit", json!({ "data": submitted(&dialog, json!({})) })).await;
    assert!(dialog["task"]["value"]["title"].as_str().unwrap().contains("2 of"), "{dialog}");
    // One field error: a forward to something that is not an address.
    let page_with = |d: &Value, field: &str| d["task"]["value"]["card"]["content"]["body"].as_array().unwrap().iter().any(|b| b["id"] == field);
    let mut errors = 0;
    let mut guard = 0;
    while dialog["task"]["type"] == "continue" {
        let changes = if page_with(&dialog, "forward_to") && errors == 0 {
            json!({ "forward_to": "not an address" })
        } else if page_with(&dialog, "reason") {
            json!({ "reason": "Resigned" })
        } else {
            json!({})
        };
        let next = t.invoke(REQUESTER, "task/submit", json!({ "data": submitted(&dialog, changes) })).await;
        if next.to_string().contains("Attention") {
            errors += 1;
            assert_eq!(next["task"]["value"]["title"], dialog["task"]["value"]["title"], "the same page comes back");
            dialog = t.invoke(REQUESTER, "task/submit", json!({ "data": submitted(&next, json!({ "forward_to": "" })) })).await;
        } else {
            dialog = next;
        }
        guard += 1;
        assert!(guard < 8, "{dialog}");
    }
    assert_eq!(errors, 1, "one field error was shown on its page");
    assert_eq!(dialog["task"]["type"], "message", "{dialog}");

    // The approval card in the approvals channel, as a new thread; the answer in the chat.
    let said = t
        .until(30, "the wizard's answer", |m| {
            m.iter().find_map(|m| m.activity["text"].as_str().filter(|s| s.contains("posted for approval")).map(String::from))
        })
        .await;
    let run = offboard_core::domain::RunId::parse(said.split('`').nth(1).unwrap()).unwrap();
    let root = t.until(15, "the approval card", |m| m.iter().find(|m| m.thread.is_none() && card_of(m).to_string().contains(run.as_str())).cloned()).await;
    assert_eq!(root.conversation, CHANNEL);
    let approve = card_of(&root)["actions"].as_array().unwrap().iter().find(|a| a["verb"] == "approve").unwrap()["data"].clone();
    let store = db.store().await;
    let rec = store.run(&run).await.unwrap();
    assert_eq!(rec.requester, format!("teams:{REQUESTER}"));

    // Refused, to the clicker alone; audited.
    let click = |who: &'static str| {
        let approve = approve.clone();
        let t = &t;
        async move { t.invoke(who, "adaptiveCard/action", json!({ "action": { "type": "Action.Execute", "verb": "approve", "data": approve } })).await }
    };
    let outsider = click("aad-stranger").await;
    assert_eq!(outsider["type"], "application/vnd.microsoft.activity.message", "{outsider}");
    let own = click(REQUESTER).await;
    assert_eq!(own["type"], "application/vnd.microsoft.activity.message", "{own}");
    assert!(store.approvals(&run).await.unwrap().is_empty());
    let refused = store.audit_for_run(&run).await.unwrap().into_iter().filter(|e| e.action == "approval.refused").count();
    assert_eq!(refused, 2);

    // Two distinct approvers when the plan is high risk (what is said outside is).
    let first = click(ADMIN1).await;
    assert_eq!(first["type"], "application/vnd.microsoft.card.adaptive", "{first}");
    if rec.approvals_needed == 2 {
        assert_eq!(click(ADMIN1).await["type"], "application/vnd.microsoft.activity.message", "the same approver twice");
        let second = click(ADMIN2).await;
        assert!(second["value"].to_string().contains("Approved"), "{second}");
    }

    // The run: the status card in the thread, edited as steps progress; the closing words
    // and the report's link.
    let deadline = Instant::now() + Duration::from_secs(90);
    let state = loop {
        let s = store.run(&run).await.unwrap().state;
        if s.is_terminal() || s == offboard_core::run::RunState::NeedsAttention {
            break s;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(matches!(state, offboard_core::run::RunState::Completed | offboard_core::run::RunState::CompletedWithWarnings), "{state:?}");
    // The report's card and then the closing words, in the thread.
    let link = t
        .until(30, "the report's link and the closing words", |m| {
            let thread: Vec<_> = m.iter().filter(|m| m.thread.as_deref() == Some(root.id.as_str())).collect();
            let closed = thread.iter().any(|m| m.activity["text"].as_str().is_some_and(|t| t.contains("alice.able@contoso.com")));
            let link = thread.iter().find_map(|m| {
                card_of(m)["actions"].as_array()?.iter().find(|a| a["type"] == "Action.OpenUrl").and_then(|a| a["url"].as_str().map(String::from))
            });
            link.filter(|_| closed)
        })
        .await;
    let thread: Vec<_> = t.fake.messages().into_iter().filter(|m| m.thread.as_deref() == Some(root.id.as_str())).collect();
    let status = thread.iter().find(|m| card_of(m).to_string().contains(&format!("run {run}"))).expect("the status card");
    assert!(status.edits >= 2, "the status card was edited as steps progressed: {}", status.edits);
    let last = card_of(status).to_string();
    assert!(last.contains("✅ Disable sign") && !last.contains("⏳") && !last.contains("▫️"), "every step ended: {last}");
    assert!(thread.iter().any(|m| m.activity["text"].as_str().is_some_and(|t| t.contains("alice.able@contoso.com"))), "the closing words");
    let pdf = reqwest::get(&link).await.unwrap();
    assert_eq!(pdf.status(), 200);
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, pdf.bytes().await.unwrap()).unwrap();
    let verified = Command::new(env!("CARGO_BIN_EXE_offboard")).args(["--config", path.to_str().unwrap(), "verify", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", String::from_utf8_lossy(&verified.stdout));
    // The same report is in the channel's Files, and the card links to it.
    let name = format!("{run}.pdf");
    let in_files = thread
        .iter()
        .find_map(|m| card_of(m)["actions"].as_array()?.iter().find(|a| a["title"] == "Open in Files").and_then(|a| a["url"].as_str().map(String::from)))
        .expect("the card links to the channel's copy");
    assert!(in_files.ends_with(&format!("/Shared%20Documents/IT%20Approvals/{name}")), "{in_files}");
    let copy = sim.sim.tenant("contoso.com", |t| {
        let site = t.groups.get(&it_team)?.site.as_ref()?;
        site.channels.iter().find(|c| c.channel == CHANNEL)?.files.get(&name).map(|f| f.bytes.clone())
    });
    assert_eq!(copy.flatten().as_deref(), Some(std::fs::read(&file).unwrap().as_slice()), "the channel's copy is the signed report");

    // Every activity answered was counted in the operators' metrics.
    let metrics = reqwest::get(format!("{ops}/metrics")).await.unwrap().text().await.unwrap();
    let acks = metrics.lines().find_map(|l| l.strip_prefix("offboard_teams_ack_seconds_count ")).and_then(|n| n.parse::<u64>().ok());
    assert!(acks.is_some_and(|n| n >= 8), "{metrics}");

    // The tenant: alice is blocked.
    let enabled = sim.sim.tenant("contoso.com", |t| t.user_id("alice.able@contoso.com").map(|id| t.users[&id].account_enabled)).flatten();
    assert_eq!(enabled, Some(false));
    // No call to the connector was refused. No secret (the app password, the bot's token,
    // the tenant's client secret) is in anything posted to Teams, the report or the log.
    assert!(t.fake.calls().iter().all(|c| c.status == 200));
    let posted: String = t.fake.calls().iter().map(|c| c.body.to_string()).collect();
    let report = String::from_utf8(Command::new("pdftotext").arg(&file).arg("-").output().unwrap().stdout).unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.len() > 10_000, "the trace log was written");
    let client_secret = sim.secrets[0].1.expose().to_string();
    for secret in ["teams-app-password", "fake-bot-token-", client_secret.as_str()] {
        for (what, text) in [("Teams", &posted), ("the report", &report), ("the log", &logged)] {
            assert!(!text.contains(secret), "a secret in {what}");
        }
    }
    db.cleanup().await;
}
