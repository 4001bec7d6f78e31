//! The conversation across two `offboard serve` processes on one Postgres, as Slack talks
//! to them behind a load balancer: a wizard begun in one is continued and finished in the
//! other with a draft longer than Slack's metadata limit; a redelivered command or click
//! is acted on once; and the report's signed link serves the PDF and nothing else.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_core::secret::Secret;
use offboard_m365::Settings;
use offboard_m365_sim::{Scenario, SimConfig};
use offboard_slack::fake::{Driver, FakeSlack};
use offboard_testkit::TestDb;
use serde_json::{Value as Json, json};

mod common;

const SECRET: &str = "conversation-signing-secret";
const TOKEN: &str = "xoxb-conversation";
const APPROVALS: &str = "C0APPROVALS";

/// Stops the process when the test ends, passed or not.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn serve(config: &std::path::Path) -> (Serving, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("OFFBOARD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start offboard serve");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let (public, _) = common::serving(&line);
    (Serving(child), public)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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

/// Submits the page shown in `view_id` through `driver`, with `changes`; returns the next view.
async fn submit(slack: &FakeSlack, driver: &Driver, view_id: &str, changes: Json) -> Json {
    let view = slack.view(view_id).unwrap();
    let body: Json = driver.interact(&Driver::submit("UREQ", view_id, &view, Driver::shown(&view, changes))).await.unwrap().json().await.unwrap();
    assert_ne!(body["response_action"], "errors", "{body}");
    slack.put_view(view_id, body["view"].clone());
    let meta = body["view"]["private_metadata"].as_str().unwrap_or_default();
    assert!(meta.len() <= 3000, "Slack keeps at most 3,000 characters of metadata: {}", meta.len());
    body["view"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_continue_one_conversation_and_act_on_a_delivery_once() {
    if offboard_testkit::postgres_skipped() {
        return;
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
    let sim = offboard_m365::simulated::start(
        &Scenario::contoso(),
        SimConfig { conversion_delay: Duration::from_millis(200), ..SimConfig::default() },
        clock.clone(),
        Settings::default(),
        policy,
    )
    .await
    .unwrap();
    let db = TestDb::postgres().await;
    let slack = FakeSlack::start(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[roles]]\nplatform = \"slack\"\nuser = \"UREQ\"\nrole = \"manager\"\n\n\
         [[roles]]\nplatform = \"slack\"\nuser = \"UADM2\"\nrole = \"admin\"\n\n\
         [slack]\nsigning_secret = \"{SECRET}\"\nbot_token = \"{TOKEN}\"\napprovals_channel = \"{APPROVALS}\"\napi_url = \"{}\"\n",
        slack.api_url()
    );
    // One installation behind one public address: process A listens on it, B elsewhere.
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let path_a = common::write_config(dir.path(), &sim, &db.url, &extra);
    let text = std::fs::read_to_string(&path_a).unwrap();
    let text = format!("public_url = \"{public}\"\n{text}");
    std::fs::write(&path_a, text.replace("\nlisten = \"127.0.0.1:0\"", &format!("\nlisten = \"127.0.0.1:{port}\""))).unwrap();
    let path_b = dir.path().join("offboard-b.toml");
    std::fs::write(&path_b, &text).unwrap();
    let (_a, url_a) = serve(&path_a);
    let (_b, url_b) = serve(&path_b);
    assert_eq!(url_a, public);
    assert_ne!(url_a, url_b);
    let (to_a, to_b) = (Driver::new(url_a.clone(), Secret::new(SECRET)), Driver::new(url_b, Secret::new(SECRET)));

    // The command, delivered to A; the same signed bytes again at B are a replay, refused;
    // Slack's own redelivery (signed anew) at B is answered and not acted on again.
    let body = Driver::command_body("UREQ", "alice.able@contoso.com", &slack.issue_trigger());
    let ts = chrono::Utc::now().timestamp();
    assert_eq!(to_a.signed_with("/slack/commands", body.clone(), ts, &Secret::new(SECRET)).await.unwrap().status(), 200);
    assert_eq!(to_b.signed_with("/slack/commands", body.clone(), ts, &Secret::new(SECRET)).await.unwrap().status(), 401);
    assert_eq!(to_b.signed_with("/slack/commands", body, ts + 1, &Secret::new(SECRET)).await.unwrap().status(), 200);
    let view_id = until(10, "the wizard", || slack.views().first().map(|(id, _)| id.clone())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.calls_of("views.open").len(), 1, "one wizard for one command");

    // The pages alternate between the processes; two long out-of-office messages make the
    // draft longer than Slack's private_metadata may hold.
    let internal: String = "Alice has left Contoso; for orders ask Mary Manager. ".repeat(30);
    let external: String = "Alice Able is no longer with Contoso. Please write to sales@contoso.com. ".repeat(22);
    assert!(internal.len() + external.len() > 3000);
    let user = json!({ "user": { "user": { "type": "external_select", "selected_option": { "value": "alice.able@contoso.com" } } } });
    submit(&slack, &to_a, &view_id, user).await;
    submit(&slack, &to_b, &view_id, json!({})).await;
    let oof = json!({
        "oof_internal": { "oof_internal": { "type": "plain_text_input", "value": internal } },
        "oof_external": { "oof_external": { "type": "plain_text_input", "value": external } },
    });
    submit(&slack, &to_a, &view_id, oof).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let longest: i32 = sqlx::query_scalar("SELECT MAX(LENGTH(draft)) FROM chat_drafts").fetch_one(&pool).await.unwrap();
    assert!(longest > 3000, "the stored draft holds the long texts: {longest}");
    submit(&slack, &to_b, &view_id, json!({})).await;
    submit(&slack, &to_a, &view_id, json!({ "reason": { "reason": { "type": "plain_text_input", "value": "Resigned" } } })).await;
    let said = until(30, "the wizard's answer", || {
        let t = slack.view(&view_id)?["blocks"][0]["text"]["text"].as_str()?.to_string();
        t.contains("posted in").then_some(t)
    })
    .await;
    let run = offboard_core::domain::RunId::parse(said.split('`').nth(1).unwrap()).unwrap();
    let store = db.store().await;
    let rec = store.run(&run).await.unwrap();
    assert!(rec.request.contains(internal.trim()) && rec.request.contains(external.trim()), "the texts from two processes' pages arrived whole");

    // One approval message, whichever relay posted it.
    let root = until(15, "the approval message", || {
        slack.messages().into_iter().find(|m| m.channel == APPROVALS && m.thread_ts.is_none() && m.blocks.to_string().contains(run.as_str()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.messages().iter().filter(|m| m.thread_ts.is_none() && m.blocks.to_string().contains(run.as_str())).count(), 1);

    // The approval click, delivered to B and redelivered (signed anew) to A: one approval,
    // and no "you already approved" for a click the approver made once.
    let value = root.blocks.as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap()["elements"][0]["value"].as_str().unwrap().to_string();
    let click = Driver::click("UADM1", &slack.issue_trigger(), APPROVALS, &root.ts, "approve", &value);
    let form = serde_urlencoded::to_string([("payload", click.to_string())]).unwrap();
    let ts = chrono::Utc::now().timestamp();
    assert_eq!(to_b.signed_with("/slack/interactions", form.clone(), ts, &Secret::new(SECRET)).await.unwrap().status(), 200);
    assert_eq!(to_a.signed_with("/slack/interactions", form, ts + 1, &Secret::new(SECRET)).await.unwrap().status(), 200);
    // What is said outside the company needs a second approver.
    assert_eq!(rec.approvals_needed, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.approvals(&run).await.unwrap().len(), 1);
    let click = Driver::click("UADM2", &slack.issue_trigger(), APPROVALS, &root.ts, "approve", &value);
    assert_eq!(to_a.interact(&click).await.unwrap().status(), 200);

    // The run finishes; its report is in the thread with a link.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state = store.run(&run).await.unwrap().state;
        if state.is_terminal() || state == offboard_core::run::RunState::NeedsAttention {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let file = until(90, "the report in the thread", || slack.files().into_iter().find(|f| f.name == format!("{run}.pdf") && f.shared_to.is_some())).await;
    assert_eq!(store.approvals(&run).await.unwrap().len(), 2);
    assert!(slack.ephemeral().iter().all(|(_, u, _)| u != "UADM1" && u != "UADM2"), "{:?}", slack.ephemeral());
    let comment = file.comment.clone().unwrap_or_default();
    let link = comment.split_whitespace().find(|w| w.starts_with(&public)).map(|w| w.trim_end_matches([',', ')'])).expect("a link").to_string();

    // The link: the PDF, which `offboard verify` accepts; every change to it a bare 403.
    let http = reqwest::Client::new();
    let got = http.get(&link).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/pdf");
    let pdf = dir.path().join("downloaded.pdf");
    std::fs::write(&pdf, got.bytes().await.unwrap()).unwrap();
    let verified = Command::new(env!("CARGO_BIN_EXE_offboard")).args(["--config", path_a.to_str().unwrap(), "verify", pdf.to_str().unwrap()]).output().unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", String::from_utf8_lossy(&verified.stdout));
    let (path, query) = link.split_once('?').unwrap();
    let q: std::collections::HashMap<String, String> = serde_urlencoded::from_str(query).unwrap();
    let (expires, sig) = (q["expires"].clone(), q["sig"].clone());
    let other_run = offboard_core::domain::RunId::generate();
    let key = offboard_report::ReportKey::load_or_create(&dir.path().join("signing.key")).unwrap().0;
    let expired = offboard_report::links::ReportLinks::new(&public, &key, offboard_report::links::LINK_TTL)
        .link(&run, chrono::Utc::now() - offboard_report::links::LINK_TTL - chrono::Duration::minutes(1));
    let flipped = format!("{}{}", &sig[..sig.len() - 1], if sig.ends_with('0') { '1' } else { '0' });
    for (what, bad) in [
        ("another run", format!("{public}/reports/{other_run}.pdf?expires={expires}&sig={sig}")),
        ("a later expiry", format!("{path}?expires={}&sig={sig}", expires.parse::<i64>().unwrap() + 60)),
        ("a changed signature", format!("{path}?expires={expires}&sig={flipped}")),
        ("no signature", format!("{path}?expires={expires}")),
        ("an expired link", expired),
    ] {
        let r = http.get(&bad).send().await.unwrap();
        assert_eq!(r.status(), 403, "{what}");
        let body = r.text().await.unwrap();
        assert_eq!(body, "forbidden", "{what}: the body names nothing");
        assert!(!body.contains(run.as_str()) && !body.contains("pdf") && !body.contains("ompleted"), "{what}");
    }
    let downloads = store.audit_for_run(&run).await.unwrap().into_iter().filter(|e| e.action == "report.downloaded").count();
    assert_eq!(downloads, 1, "the one download is audited, the refused ones are not downloads");

    db.cleanup().await;
}
