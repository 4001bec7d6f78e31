//! Every route the simulator serves exists in Microsoft's SDK route list (method and path
//! template), apart from the two listed with their source.

use std::collections::BTreeMap;

use offboard_m365_sim::routes::{OUTSIDE_SDK, ROUTES};

fn fixture() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(fixture_path()).expect("the route fixture is readable");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["routes"].as_object().unwrap().iter().map(|(k, m)| (k.clone(), m.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect())).collect()
}

/// `OFFBOARD_GRAPH_ROUTES`, else the copy in `testkit/fixtures/graph/`.
fn fixture_path() -> std::path::PathBuf {
    match std::env::var("OFFBOARD_GRAPH_ROUTES") {
        Ok(p) => p.into(),
        Err(_) => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testkit/fixtures/graph/graph-v1.0-routes.json"),
    }
}

#[test]
fn every_served_route_is_in_the_sdk_route_list() {
    let sdk = fixture();
    let mut outside = Vec::new();
    for r in ROUTES {
        match sdk.get(r.template) {
            Some(methods) if methods.iter().any(|m| m == r.method) => {}
            _ => outside.push((r.method, r.template)),
        }
    }
    let allowed: Vec<(&str, &str)> = OUTSIDE_SDK.iter().map(|(m, t, _)| (*m, *t)).filter(|(_, t)| *t != "/$batch").collect();
    assert_eq!(outside, allowed, "routes served that the SDK does not list");
    assert!(ROUTES.len() >= 60, "the table covers the offboarding surface");
}

#[test]
fn documented_sdk_gaps_are_still_gaps() {
    let sdk = fixture();
    // The password method cannot be deleted and the generic method path has no DELETE.
    assert_eq!(sdk["/users/{id}/authentication/passwordMethods/{id}"], vec!["GET"]);
    assert!(!sdk["/users/{id}/authentication/methods/{id}"].contains(&"DELETE".to_string()));
    for (m, t, why) in OUTSIDE_SDK {
        assert!(!sdk.get(*t).is_some_and(|ms| ms.iter().any(|x| x == m)), "{m} {t} is in the SDK now; drop it from OUTSIDE_SDK ({why})");
    }
}
