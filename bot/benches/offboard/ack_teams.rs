//! B1 for Teams: signed activities sent at a fixed rate (open loop) to the messaging
//! endpoint on loopback, alternating a message (`@Offboard help`, answered off the request
//! path through the connector) and an Approve click by someone with no role (an invoke,
//! decided by core and answered in the response). Latency is to the 2xx; each message must
//! be answered exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::TenantPolicy;
use offboard_core::secret::Secret;
use offboard_teams::auth::Verifier;
use offboard_teams::connector::{BotIdentity, Connector};
use offboard_teams::fake::{FakeBotFramework, SigningKey};
use offboard_teams::server::TeamsApp;
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{crash_options, directory, request, requester, service};
use serde_json::json;

use crate::{Outcome, Row, percentile, sorted};

const APP_ID: &str = "8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const TENANT: &str = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
const CHANNEL: &str = "19:it@thread.tacv2";

pub async fn run(full: bool, postgres: bool) -> Outcome {
    let (rates, seconds): (&[u32], u64) = if full { (&[50, 200, 500], 30) } else { (&[50], 1) };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = if postgres { TestDb::postgres().await } else { TestDb::sqlite() };
    let store = db.store().await;
    let svc = Arc::new(service(store.clone(), clock.clone(), 3, TenantPolicy::default()));
    let run = svc.request(&requester(), request("alice@contoso.com", crash_options())).await.expect("request");
    let key = SigningKey::generate("bench", &["msteams"]);
    let fake = FakeBotFramework::start(vec![key.clone()]).await;
    fake.register_bot(APP_ID, "bench-password");
    let bot = BotIdentity { app_id: APP_ID.into(), password: Secret::new("bench-password"), token_url: format!("{}/{TENANT}/oauth2/v2.0/token", fake.url()) };
    let connector = Arc::new(Connector::new(bot, &fake.url(), clock.clone()));
    let verifier = Verifier::new(APP_ID, fake.metadata_url(), clock.clone());
    let routes = offboard_core::chat::relay::Routes::single("teams", CHANNEL);
    let app = TeamsApp::new(svc, Arc::new(directory(3)), routes, verifier, connector, clock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/api/messages", listener.local_addr().expect("addr"));
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::builder().pool_max_idle_per_host(512).build().expect("client");
    // Bot Framework signs a token per conversation and reuses it; one for the whole bench.
    let token = key.sign(&FakeBotFramework::claims(APP_ID, &fake.url(), chrono::Utc::now()));
    let click = json!({ "value": format!("approve:{}:{}", run.id, run.plan_hash.0) });

    let mut out = Outcome::default();
    let mut per_rate = Vec::new();
    let mut sent = 0u64;
    for &rate in rates {
        let answered_before = fake.messages().len();
        let total = rate as u64 * seconds;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = tokio::task::JoinSet::new();
        let started = Instant::now();
        for i in 0..total {
            tick.tick().await;
            sent += 1;
            let message = i % 2 == 0;
            let mut activity = json!({
                "id": format!("bench-{sent}"),
                "channelId": "msteams",
                "serviceUrl": fake.url(),
                "recipient": { "id": format!("28:{APP_ID}") },
                "conversation": { "id": CHANNEL },
                "channelData": { "tenant": { "id": TENANT }, "channel": { "id": CHANNEL } },
            });
            if message {
                activity["type"] = json!("message");
                activity["from"] = json!({ "id": "29:req", "aadObjectId": "aad-requester", "name": "Requester" });
                activity["text"] = json!("help");
            } else {
                activity["type"] = json!("invoke");
                activity["name"] = json!("adaptiveCard/action");
                activity["from"] = json!({ "id": "29:viewer", "aadObjectId": "aad-viewer", "name": "Viewer" });
                activity["value"] = json!({ "action": { "type": "Action.Execute", "verb": "approve", "data": click } });
            }
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            tasks.spawn(async move {
                let t = Instant::now();
                let r = http.post(&url).bearer_auth(&token).json(&activity).send().await;
                let ok = match r {
                    Ok(r) if r.status().is_success() => {
                        message || r.json::<serde_json::Value>().await.is_ok_and(|v| v["type"] == "application/vnd.microsoft.activity.message")
                    }
                    _ => false,
                };
                (message, t.elapsed().as_secs_f64() * 1e3, ok)
            });
        }
        let mut lat = Vec::new();
        let (mut errors, mut messages) = (0u64, 0usize);
        while let Some(r) = tasks.join_next().await {
            let (message, ms, ok) = r.expect("request task");
            lat.push(ms);
            messages += message as usize;
            errors += (!ok) as u64;
        }
        let wall = started.elapsed().as_secs_f64();
        // Answers are posted off the request path: let the last ones land.
        let deadline = Instant::now() + Duration::from_secs(10);
        while fake.messages().len() - answered_before < messages && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answered = fake.messages().len() - answered_before;
        let lat = sorted(lat);
        let (p50, p90, p99, max) = (percentile(&lat, 0.5), percentile(&lat, 0.9), percentile(&lat, 0.99), lat.last().copied().unwrap_or(f64::NAN));
        let (duplicates, lost) = (answered.saturating_sub(messages), messages.saturating_sub(answered));
        let target = if rate == 500 { "p99 ≤ 5 ms; 0 errors, 0 duplicates" } else { "0 errors, 0 duplicates" };
        out.rows.push(Row::new(
            format!("Teams {rate} req/s × {seconds} s on {} ({:.0} sent/s)", db.backend, total as f64 / wall),
            format!("p50 {p50:.1} / p90 {p90:.1} / p99 {p99:.1} / max {max:.1} ms; errors {errors}; duplicates {duplicates}; lost {lost}"),
            target,
        ));
        out.check(errors == 0, || format!("{errors} activities at {rate} req/s were not answered as expected"));
        out.check(duplicates == 0 && lost == 0, || format!("{messages} messages got {answered} answers at {rate} req/s"));
        per_rate.push(json!({
            "rate": rate, "seconds": seconds, "requests": total, "achieved_rate": total as f64 / wall,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max, "errors": errors,
            "messages": messages, "answered": answered, "duplicates": duplicates, "lost": lost,
        }));
    }
    out.json.insert("store".into(), json!(db.backend));
    out.json.insert("rates".into(), json!(per_rate));
    db.cleanup().await;
    out
}
