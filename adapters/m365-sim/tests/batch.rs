//! JSON batching: the 20-request limit, dependsOn with 424, shuffled responses.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn get(id: &str, url: &str) -> Value {
    json!({"id": id, "method": "GET", "url": url})
}

#[tokio::test]
async fn more_than_twenty_requests_is_a_400() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let requests: Vec<Value> = (0..21).map(|i| get(&i.to_string(), "/users/alice.able@contoso.com")).collect();
    let r = h.call(&tok, Method::POST, "/$batch", Some(json!({"requests": requests}))).await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("20"));
}

#[tokio::test]
async fn a_failed_dependency_gives_424_and_independent_items_still_run() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let vpn = h.group_id("VPN Users").await;
    let carol = h.user_id("carol.group@contoso.com").await;
    let body = json!({"requests": [
        {"id": "1", "method": "DELETE", "url": format!("/groups/{vpn}/members/{carol}/$ref")},
        {"id": "2", "method": "POST", "url": format!("/users/{carol}/revokeSignInSessions"), "dependsOn": ["1"]},
        get("3", "/users/alice.able@contoso.com?$select=id"),
        {"id": "4", "method": "PATCH", "url": format!("/users/{carol}"), "body": {"department": "X"}},
    ]});
    let r = h.call(&tok, Method::POST, "/$batch", Some(body)).await;
    assert_eq!(r.status, 200);
    let status = |id: &str| r.body["responses"].as_array().unwrap().iter().find(|x| x["id"] == id).unwrap()["status"].as_u64().unwrap();
    assert_eq!(status("1"), 404, "Carol is not in VPN Users");
    assert_eq!(status("2"), 424);
    assert_eq!(status("3"), 200);
    assert_eq!(status("4"), 400, "a body needs a Content-Type header");
    assert_eq!(h.sim.count("user.sessions_revoked", &carol), 0);
}

#[tokio::test]
async fn responses_come_in_any_order_and_dependency_chains_run_in_order() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let users: Vec<String> = h.sim.tenant(CONTOSO, |t| t.users.keys().take(20).cloned().collect()).unwrap();
    let requests: Vec<Value> = users.iter().enumerate().map(|(i, u)| get(&i.to_string(), &format!("/users/{u}?$select=id"))).collect();
    let r = h.call(&tok, Method::POST, "/$batch", Some(json!({"requests": requests}))).await;
    let order: Vec<String> = r.body["responses"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_string()).collect();
    let sorted: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(order.len(), 20);
    assert_ne!(order, sorted, "responses are shuffled (1 in 20! chance of a false failure)");
    let alice = h.user_id("alice.able@contoso.com").await;
    let chain = json!({"requests": [
        {"id": "b", "method": "PATCH", "url": format!("/users/{alice}"), "headers": {"Content-Type": "application/json"}, "body": {"jobTitle": "second"}, "dependsOn": ["a"]},
        {"id": "a", "method": "PATCH", "url": format!("/users/{alice}"), "headers": {"Content-Type": "application/json"}, "body": {"jobTitle": "first"}},
    ]});
    assert_eq!(h.call(&tok, Method::POST, "/$batch", Some(chain)).await.status, 200);
    assert_eq!(h.get(&tok, &format!("/users/{alice}?$select=jobTitle")).await.body["jobTitle"], "second");
}
