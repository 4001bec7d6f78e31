//! Injected faults: resets, 5xx, 429 without Retry-After, and drop-after-apply, where the
//! change lands but the caller never hears of it.

mod common;

use common::*;
use offboard_m365_sim::FaultRates;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_reset_drops_the_connection_before_anything_happens() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let alice = h.user_id("alice.able@contoso.com").await;
    h.sim.set_faults(FaultRates { reset: 1.0, ..FaultRates::default() });
    let r = h.http.post(format!("{}/v1.0/users/{alice}/revokeSignInSessions", h.sim.urls().graph)).bearer_auth(&tok).send().await;
    assert!(r.is_err(), "the client sees a transport error");
    assert_eq!(h.sim.count("user.sessions_revoked", &alice), 0);
}

#[tokio::test]
async fn drop_after_apply_changes_the_tenant_but_fails_the_response() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let alice = h.user_id("alice.able@contoso.com").await;
    h.sim.set_faults(FaultRates { drop_after_apply: 1.0, ..FaultRates::default() });
    let r = h.http.patch(format!("{}/v1.0/users/{alice}", h.sim.urls().graph)).bearer_auth(&tok).json(&json!({"accountEnabled": false})).send().await;
    assert!(r.is_err());
    assert_eq!(h.sim.count("user.disabled", &alice), 1, "the change landed");
    assert_eq!(h.sim.stats().resets, 1);
}

#[tokio::test]
async fn server_errors_and_throttles_without_retry_after_are_injected() {
    let h = Harness::new().await;
    let tok = h.token().await;
    h.sim.set_faults(FaultRates { server_error: 1.0, ..FaultRates::default() });
    let r = h.get(&tok, "/users/alice.able@contoso.com").await;
    assert!([500, 502, 503, 504].contains(&r.status));
    assert!(r.body["error"]["code"].is_string());
    // In a batch the envelope survives and each item fails on its own.
    let r = h.call(&tok, Method::POST, "/$batch", Some(json!({"requests": [{"id": "1", "method": "GET", "url": "/users/alice.able@contoso.com"}]}))).await;
    assert_eq!(r.status, 200);
    assert!(r.body["responses"][0]["status"].as_u64().unwrap() >= 500);
    h.sim.set_faults(FaultRates { throttle_without_retry_after: 1.0, ..FaultRates::default() });
    let r = h.get(&tok, "/users/alice.able@contoso.com").await;
    assert_eq!(r.status, 429);
    assert!(r.header("Retry-After").is_none());
    h.sim.set_faults(FaultRates::default());
    assert_eq!(h.get(&tok, "/users/alice.able@contoso.com").await.status, 200);
}

#[tokio::test]
async fn a_seeded_share_of_faults_is_reproducible() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        h.sim.set_faults(FaultRates { server_error: 0.3, seed: 7, ..FaultRates::default() });
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(h.get(&tok, "/users/alice.able@contoso.com?$select=id").await.status);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    let failed = runs[0].iter().filter(|s| **s >= 500).count();
    assert!((4..=20).contains(&failed), "about 30 % of 40 fail: {failed}");
}
