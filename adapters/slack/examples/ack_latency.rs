//! Acknowledgement latency of the Slack endpoints under concurrent signed requests on
//! loopback: `/offboard user` (opens the wizard off the request path) and Approve clicks.
//!
//! cargo run --release -p offboard-slack --example ack_latency -- [REQUESTS] [CONCURRENCY]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::TenantPolicy;
use offboard_core::secret::Secret;
use offboard_slack::api::SlackApi;
use offboard_slack::fake::FakeSlack;
use offboard_slack::server::SlackApp;
use offboard_slack::signature::sign;
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{directory, request, requester, service};

const SECRET: &str = "bench-signing-secret";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (total, concurrency) = (args.first().copied().unwrap_or(2000), args.get(1).copied().unwrap_or(50));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = TestDb::sqlite();
    let store = db.store().await;
    let svc = Arc::new(service(store.clone(), clock.clone(), 3, TenantPolicy::default()));
    let run = svc.request(&requester(), request("alice@contoso.com", offboard_testkit::fixtures::crash_options())).await.unwrap();
    let slack = FakeSlack::start("xoxb-bench").await;
    let api = Arc::new(SlackApi::new(&slack.api_url(), &Secret::new("xoxb-bench")).unwrap());
    let app = SlackApp::new(svc, api, Arc::new(directory(3)), Secret::new(SECRET), "C0APPROVALS", clock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();

    for kind in ["command", "click"] {
        let started = Instant::now();
        let results: Vec<(Duration, u16)> = futures_util::stream::iter(0..total)
            .map(|i| {
                let (http, url, slack, run) = (http.clone(), url.clone(), slack.clone(), run.clone());
                async move {
                    let trigger = slack.issue_trigger();
                    let (path, body) = if kind == "command" {
                        let form = [("user_id", "UREQ"), ("user_name", "req"), ("command", "/offboard"), ("text", "alice@contoso.com"), ("trigger_id", trigger.as_str())];
                        ("/slack/commands", serde_urlencoded::to_string(form).unwrap())
                    } else {
                        // A viewer's click: refused by core, answered at once, refusal sent off the path.
                        let payload = serde_json::json!({
                            "type": "block_actions", "user": { "id": "UVIEW", "username": "viewer" }, "trigger_id": trigger,
                            "channel": { "id": "C0APPROVALS" }, "actions": [{ "action_id": "approve", "value": format!("approve:{}:{}", run.id, run.plan_hash.0), "n": i }],
                        });
                        ("/slack/interactions", serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap())
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
                        .await
                        .unwrap();
                    (t.elapsed(), r.status().as_u16())
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let wall = started.elapsed();
        let errors = results.iter().filter(|(_, s)| *s != 200).count();
        let mut lat: Vec<Duration> = results.into_iter().map(|(d, _)| d).collect();
        lat.sort();
        println!(
            "{kind}: {total} signed requests, {concurrency} concurrent, {:.0} req/s: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {errors}",
            total as f64 / wall.as_secs_f64(),
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.90).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().unwrap().as_secs_f64() * 1e3,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("views opened by the commands: {}", slack.calls_of("views.open").len());
    db.cleanup().await;
}
