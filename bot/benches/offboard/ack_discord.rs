//! B1 for Discord: signed interactions sent at a fixed rate (open loop) to the interactions
//! endpoint on loopback, alternating `/offboards help` (answered in the response) and an
//! Approve click by a member with no role (decided by core, refused and audited, answered
//! in the response). Latency is to the 2xx; every answer must be the ephemeral message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::TenantPolicy;
use offboard_core::secret::Secret;
use offboard_discord::api::DiscordApi;
use offboard_discord::fake::{Driver, FakeDiscord};
use offboard_discord::server::{DiscordApp, INTERACTIONS_PATH};
use offboard_discord::verify::{PublicKey, Verifier};
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{crash_options, directory, request, requester, service};
use serde_json::json;

use crate::{Outcome, Row, percentile, sorted};

const APP_ID: &str = "1234567890123456789";
const CHANNEL: &str = "1100000000000000002";

pub async fn run(full: bool, postgres: bool) -> Outcome {
    let (rates, seconds): (&[u32], u64) = if full { (&[50, 200, 500], 30) } else { (&[50], 1) };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = if postgres { TestDb::postgres().await } else { TestDb::sqlite() };
    let store = db.store().await;
    let svc = Arc::new(service(store.clone(), clock.clone(), 3, TenantPolicy::default()));
    let run = svc.request(&requester(), request("alice@contoso.com", crash_options())).await.expect("request");
    let discord = FakeDiscord::start("bench-token").await;
    let api = Arc::new(DiscordApi::new(discord.url(), APP_ID, Secret::new("bench-token")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}{INTERACTIONS_PATH}", listener.local_addr().expect("addr"));
    let driver = Arc::new(Driver::new(url, discord, APP_ID, "1100000000000000001", CHANNEL));
    let verifier = Verifier::new(PublicKey::parse(&driver.public_key()).expect("key"), clock.clone());
    let app = DiscordApp::new(svc, Arc::new(directory(3)), offboard_core::chat::relay::Routes::single("discord", CHANNEL), verifier, api, clock);
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::builder().pool_max_idle_per_host(512).build().expect("client");
    let approve = format!("approve:{}:{}", run.id, run.plan_hash.0);

    let mut out = Outcome::default();
    let mut per_rate = Vec::new();
    for &rate in rates {
        let total = rate as u64 * seconds;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = tokio::task::JoinSet::new();
        let started = Instant::now();
        for i in 0..total {
            tick.tick().await;
            // Signed as Discord signs, before the clock starts for this request.
            let interaction = if i % 2 == 0 {
                driver.interaction(2, "2100000000000000001", &[], json!({ "name": "offboards", "type": 1, "options": [{ "name": "help", "type": 1 }] }))
            } else {
                driver.interaction(3, "2100000000000000009", &[], json!({ "custom_id": approve, "component_type": 2 }))
            };
            let body = serde_json::to_vec(&interaction).expect("json");
            let (sig, ts) = driver.sign(&body, chrono::Utc::now().timestamp());
            let (http, url) = (http.clone(), driver.endpoint().to_string());
            tasks.spawn(async move {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-signature-ed25519", sig)
                    .header("x-signature-timestamp", ts)
                    .body(body)
                    .send()
                    .await;
                let ok = match r {
                    Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.is_ok_and(|v| v["type"] == 4 && v["data"]["flags"] == 64),
                    _ => false,
                };
                (t.elapsed().as_secs_f64() * 1e3, ok)
            });
        }
        let mut lat = Vec::new();
        let mut errors = 0u64;
        while let Some(r) = tasks.join_next().await {
            let (ms, ok) = r.expect("request task");
            lat.push(ms);
            errors += (!ok) as u64;
        }
        let wall = started.elapsed().as_secs_f64();
        let lat = sorted(lat);
        let (p50, p90, p99, max) = (percentile(&lat, 0.5), percentile(&lat, 0.9), percentile(&lat, 0.99), lat.last().copied().unwrap_or(f64::NAN));
        let target = if rate == 500 { "p99 ≤ 5 ms; 0 errors" } else { "0 errors" };
        out.rows.push(Row::new(
            format!("Discord {rate} req/s × {seconds} s on {} ({:.0} sent/s)", db.backend, total as f64 / wall),
            format!("p50 {p50:.1} / p90 {p90:.1} / p99 {p99:.1} / max {max:.1} ms; errors {errors}"),
            target,
        ));
        out.check(errors == 0, || format!("{errors} interactions at {rate} req/s were not answered as expected"));
        per_rate.push(json!({
            "rate": rate, "seconds": seconds, "requests": total, "achieved_rate": total as f64 / wall,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max, "errors": errors,
        }));
    }
    out.json.insert("store".into(), json!(db.backend));
    out.json.insert("rates".into(), json!(per_rate));
    db.cleanup().await;
    out
}
