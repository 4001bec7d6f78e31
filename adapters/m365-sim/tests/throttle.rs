//! Throttling at the documented limits, under time dilation, with a manual clock so the
//! arithmetic is exact: no timing in these tests.

mod common;

use std::time::Duration;

use common::*;
use offboard_m365_sim::SimConfig;
use offboard_m365_sim::throttle::{Cost, Limits, Throttle};
use offboard_m365_sim::world::Tier;
use reqwest::Method;
use serde_json::{Value, json};

fn writes(ids: &[String], from: usize, n: usize) -> Value {
    let requests: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("{}", from + i), "method": "PATCH", "url": format!("/users/{}", ids[(from + i) % ids.len()]),
                "headers": {"Content-Type": "application/json"}, "body": {"department": format!("D{}", from + i)}})
        })
        .collect();
    json!({"requests": requests})
}

#[tokio::test]
async fn identity_writes_throttle_at_three_thousand_per_window_with_a_decimal_retry_after() {
    let h = Harness::with(SimConfig { manual_clock: true, dilation: 0.1, ..SimConfig::default() }).await;
    let tok = h.token().await;
    let ids: Vec<String> = h.sim.tenant(CONTOSO, |t| t.users.values().filter(|u| !u.synced).map(|u| u.id.clone()).collect()).unwrap();
    let mut ok = 0;
    for b in 0..150 {
        let r = h.call(&tok, Method::POST, "/$batch", Some(writes(&ids, b * 20, 20))).await;
        assert_eq!(r.status, 200);
        for item in r.body["responses"].as_array().unwrap() {
            assert_eq!(item["status"], 204, "write {} of the first 3,000", item["id"]);
            ok += 1;
        }
    }
    assert_eq!(ok, 3000);
    // Write 3,001 in the same window: 429, with its own Retry-After inside the batch item.
    let r = h.call(&tok, Method::POST, "/$batch", Some(writes(&ids, 3000, 2))).await;
    for item in r.body["responses"].as_array().unwrap() {
        assert_eq!(item["status"], 429);
        let ra = item["headers"]["Retry-After"].as_str().expect("a throttled item carries Retry-After");
        let secs: f64 = ra.parse().unwrap();
        assert!(ra.contains('.') && secs > 0.0, "decimal seconds: {ra}");
        assert_eq!(item["body"]["error"]["code"], "TooManyRequests");
    }
    // Outside a batch: the headers Microsoft documents.
    let alice = h.user_id("alice.able@contoso.com").await;
    let r = h.call(&tok, Method::PATCH, &format!("/users/{alice}"), Some(json!({"department": "Sales"}))).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ms-throttle-information"), Some("WriteLimitExceeded"));
    assert!(r.header("x-ms-throttle-scope").unwrap().starts_with("Tenant_Application/ReadWrite/"));
    let wait: f64 = r.header("Retry-After").unwrap().parse().unwrap();
    let early_before = h.sim.stats().early_retries;
    // This call came before the batch's Retry-After ran out; the batch's second item did not
    // count: it was sent together with the first, before any Retry-After could be seen.
    assert_eq!(early_before, 1);
    // Retrying before Retry-After is early: counted, and throttled again.
    let r = h.call(&tok, Method::PATCH, &format!("/users/{alice}"), Some(json!({"department": "Sales"}))).await;
    assert_eq!(r.status, 429);
    assert_eq!(h.sim.stats().early_retries, early_before + 1);
    // 150 s × 0.1 dilation for 3,000 writes: one write every 5 ms.
    h.sim.advance(Duration::from_secs_f64(wait));
    let r = h.call(&tok, Method::PATCH, &format!("/users/{alice}"), Some(json!({"department": "Sales"}))).await;
    assert_eq!(r.status, 204, "after Retry-After the write goes through");
    assert_eq!(h.sim.stats().early_retries, early_before + 1);
    // Reads still pass: they only spend resource units.
    assert_eq!(h.get(&tok, &format!("/users/{alice}")).await.status, 200);
}

#[tokio::test]
async fn without_retry_after_mode_sends_none_and_counts_no_early_retries() {
    let h =
        Harness::with(SimConfig { manual_clock: true, retry_after: false, limits: Limits { writes: 2.0, ..Limits::default() }, ..SimConfig::default() }).await;
    let tok = h.token().await;
    let alice = h.user_id("alice.able@contoso.com").await;
    for _ in 0..2 {
        assert_eq!(h.call(&tok, Method::POST, &format!("/users/{alice}/revokeSignInSessions"), None).await.status, 200);
    }
    for _ in 0..2 {
        let r = h.call(&tok, Method::POST, &format!("/users/{alice}/revokeSignInSessions"), None).await;
        assert_eq!(r.status, 429);
        assert!(r.header("Retry-After").is_none());
    }
    assert_eq!(h.sim.stats().early_retries, 0);
    assert_eq!(h.sim.count("user.sessions_revoked", &alice), 2, "a throttled request changes nothing");
}

#[tokio::test]
async fn intune_writes_throttle_at_one_hundred() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let devices: Vec<String> = h.sim.tenant(CONTOSO, |t| t.managed.keys().cloned().collect()).unwrap();
    let mut statuses = Vec::new();
    for i in 0..101 {
        let r = h.call(&tok, Method::POST, &format!("/deviceManagement/managedDevices/{}/retire", devices[i % devices.len()]), None).await;
        statuses.push(r.status);
    }
    assert!(statuses[..100].iter().all(|s| *s == 204));
    assert_eq!(statuses[100], 429);
}

#[test]
fn outlook_allows_four_concurrent_requests_per_mailbox() {
    let mut t = Throttle::new(Limits::default(), 1.0, true);
    for _ in 0..4 {
        assert!(t.enter("app|alice"));
    }
    assert!(!t.enter("app|alice"), "the fifth concurrent request is refused");
    assert!(t.enter("app|mary"), "other mailboxes are unaffected");
    t.leave("app|alice");
    assert!(t.enter("app|alice"));
}

#[test]
fn resource_units_depend_on_tenant_size() {
    let mut small = Throttle::new(Limits::default(), 1.0, true);
    let now = Duration::ZERO;
    let cost = Cost::Identity { ru: 5, write: false };
    let admitted = (0..800).take_while(|_| small.admit("a", "t", Tier::S, &cost, now).is_ok()).count();
    assert_eq!(admitted, 700, "3,500 RU per 10 s for a small tenant");
    let mut large = Throttle::new(Limits::default(), 1.0, true);
    let admitted = (0..2000).take_while(|_| large.admit("a", "t", Tier::L, &cost, now).is_ok()).count();
    assert_eq!(admitted, 1600, "8,000 RU per 10 s for a large tenant");
}
