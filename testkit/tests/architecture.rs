//! Architecture invariant: `offboard-core` depends on no chat SDK, no HTTP server or
//! client, and no adapter. Checked on the resolved dependency graph, so a transitive
//! dependency counts too.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

const FORBIDDEN: &[&str] =
    &["slack-morphism", "serenity", "axum", "hyper", "actix-web", "warp", "tower-http", "reqwest", "lettre", "printpdf", "offboard-bot", "offboard-testkit"];

fn normal_closure(meta: &Value, root_name: &str) -> BTreeSet<String> {
    let packages: HashMap<&str, &str> = meta["packages"].as_array().unwrap().iter().map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap())).collect();
    let nodes: HashMap<&str, &Value> = meta["resolve"]["nodes"].as_array().unwrap().iter().map(|n| (n["id"].as_str().unwrap(), n)).collect();
    let root = packages.iter().find(|(_, name)| **name == root_name).map(|(id, _)| *id).expect("root package");
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            // Only normal dependencies ship with the crate; dev and build ones do not.
            let normal = dep["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null());
            let pkg = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(packages[pkg].to_string()) {
                stack.push(pkg);
            }
        }
    }
    seen
}

#[test]
fn core_depends_on_no_chat_sdk_http_stack_or_adapter() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path", concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")])
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let core = normal_closure(&meta, "offboard-core");
    assert!(core.contains("sqlx"), "the closure is computed: {core:?}");
    // Every other workspace crate (bot, testkit, the adapters) is named offboard-*.
    let bad: Vec<&str> =
        FORBIDDEN.iter().copied().filter(|f| core.contains(*f)).chain(core.iter().map(String::as_str).filter(|c| c.starts_with("offboard-"))).collect();
    assert!(bad.is_empty(), "offboard-core must not depend on {bad:?}");
    // The check itself can fail: the test worker does pull in an HTTP stack.
    let testkit = normal_closure(&meta, "offboard-testkit");
    assert!(testkit.contains("axum") && testkit.contains("reqwest"));
}
