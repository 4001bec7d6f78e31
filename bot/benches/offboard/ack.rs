//! B1: signed Slack slash commands and Approve clicks, alternating, sent at a fixed rate
//! (open loop: a slow answer does not slow the sender) to the Slack endpoints on loopback.
//! Latency is to the 2xx; each command must open exactly one wizard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::TenantPolicy;
use offboard_core::secret::Secret;
use offboard_slack::api::SlackApi;
use offboard_slack::fake::FakeSlack;
use offboard_slack::server::SlackApp;
use offboard_slack::signature::sign;
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{crash_options, directory, request, requester, service};
use serde_json::json;

use crate::{Outcome, Row, percentile, sorted};

const SECRET: &str = "bench-signing-secret";

pub async fn run(full: bool, postgres: bool) -> Outcome {
    let (rates, seconds): (&[u32], u64) = if full { (&[50, 200, 500], 30) } else { (&[50], 1) };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = if postgres { TestDb::postgres().await } else { TestDb::sqlite() };
    let store = db.store().await;
    let svc = Arc::new(service(store.clone(), clock.clone(), 3, TenantPolicy::default()));
    let run = svc.request(&requester(), request("alice@contoso.com", crash_options())).await.expect("request");
    let slack = FakeSlack::start("xoxb-bench").await;
    let api = Arc::new(SlackApi::new(&slack.api_url(), &Secret::new("xoxb-bench")).expect("api"));
    let app = SlackApp::new(svc, api, Arc::new(directory(3)), Secret::new(SECRET), offboard_core::chat::relay::Routes::single("slack", "C0APPROVALS"), clock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::builder().pool_max_idle_per_host(512).build().expect("client");

    let mut out = Outcome::default();
    let mut per_rate = Vec::new();
    for &rate in rates {
        let opened_before = slack.calls_of("views.open").len();
        let total = rate as u64 * seconds;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = tokio::task::JoinSet::new();
        let started = Instant::now();
        for i in 0..total {
            tick.tick().await;
            let (http, url, trigger) = (http.clone(), url.clone(), slack.issue_trigger());
            let click_value = format!("approve:{}:{}", run.id, run.plan_hash.0);
            tasks.spawn(async move {
                let command = i % 2 == 0;
                let (path, body) = if command {
                    let form =
                        [("user_id", "UREQ"), ("user_name", "req"), ("command", "/offboard"), ("text", "alice@contoso.com"), ("trigger_id", trigger.as_str())];
                    ("/slack/commands", serde_urlencoded::to_string(form).expect("form"))
                } else {
                    // A viewer's click: refused by core, answered at once, the refusal sent off the path.
                    let payload = json!({
                        "type": "block_actions", "user": { "id": "UVIEW", "username": "viewer" }, "trigger_id": trigger,
                        "channel": { "id": "C0APPROVALS" }, "actions": [{ "action_id": "approve", "value": click_value }],
                    });
                    ("/slack/interactions", serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form"))
                };
                let ts = Utc::now().timestamp();
                let sig = sign(&Secret::new(SECRET), ts, body.as_bytes());
                let t = Instant::now();
                let r = http
                    .post(format!("{url}{path}"))
                    .header("x-slack-request-timestamp", ts.to_string())
                    .header("x-slack-signature", sig)
                    .body(body)
                    .send()
                    .await;
                let ok = r.map(|r| r.status().is_success()).unwrap_or(false);
                (command, t.elapsed().as_secs_f64() * 1e3, ok)
            });
        }
        let mut lat = Vec::new();
        let (mut errors, mut commands) = (0u64, 0usize);
        while let Some(r) = tasks.join_next().await {
            let (command, ms, ok) = r.expect("request task");
            lat.push(ms);
            commands += command as usize;
            errors += (!ok) as u64;
        }
        let wall = started.elapsed().as_secs_f64();
        // Wizards open off the request path: let the last ones land.
        let deadline = Instant::now() + Duration::from_secs(5);
        while slack.calls_of("views.open").len() - opened_before < commands && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let opened = slack.calls_of("views.open").len() - opened_before;
        let lat = sorted(lat);
        let (p50, p90, p99, max) = (percentile(&lat, 0.5), percentile(&lat, 0.9), percentile(&lat, 0.99), lat.last().copied().unwrap_or(f64::NAN));
        let duplicates = opened.saturating_sub(commands);
        let lost = commands.saturating_sub(opened);
        let target = if rate == 200 { "p99 ≤ 50 ms; 0 errors, 0 duplicates" } else { "0 errors, 0 duplicates" };
        out.rows.push(Row::new(
            format!("Slack {rate} req/s × {seconds} s on {} ({:.0} sent/s)", db.backend, total as f64 / wall),
            format!("p50 {p50:.1} / p90 {p90:.1} / p99 {p99:.1} / max {max:.1} ms; errors {errors}; duplicates {duplicates}; lost {lost}"),
            target,
        ));
        out.check(errors == 0, || format!("{errors} requests at {rate} req/s were not answered 2xx"));
        out.check(duplicates == 0 && lost == 0, || format!("{commands} commands opened {opened} wizards at {rate} req/s"));
        per_rate.push(json!({
            "rate": rate, "seconds": seconds, "requests": total, "achieved_rate": total as f64 / wall,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max, "errors": errors,
            "commands": commands, "wizards_opened": opened, "duplicates": duplicates, "lost": lost,
        }));
    }
    out.json.insert("store".into(), json!(db.backend));
    out.json.insert("rates".into(), json!(per_rate));
    db.cleanup().await;
    out
}
