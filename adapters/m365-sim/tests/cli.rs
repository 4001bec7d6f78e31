//! The standalone simulator starts from a scenario file with one command and prints its URLs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

fn scenario() -> String {
    format!("{}/scenarios/contoso.json", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn one_command_serves_the_scenario_and_prints_its_base_urls() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_m365-sim"))
        .args(["--scenario", &scenario(), "--credentials-out", creds.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        lines.push(line);
    }
    let url = |name: &str| lines.iter().find(|l| l.trim_start().starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).unwrap().to_string();
    let (login, graph) = (url("login"), url("graph"));
    assert!(url("exchange").starts_with("http://127.0.0.1:"));
    assert!(lines.iter().any(|l| l.contains("Contoso") && l.contains("50 users")));
    let all = lines.join("\n");
    let c: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    let first = &c["credentials"][0];
    assert!(!all.contains(first["client_secret"].as_str().unwrap()), "secrets go to the file, never to stdout");
    let http = reqwest::Client::new();
    let tok: Value = http
        .post(format!("{login}/contoso.com/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", first["client_id"].as_str().unwrap()),
            ("client_secret", first["client_secret"].as_str().unwrap()),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users: Value =
        http.get(format!("{graph}/users?$top=999")).bearer_auth(tok["access_token"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    assert_eq!(users["value"].as_array().unwrap().len(), 50);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_bad_scenario_is_refused_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"tenants":[{"name":"Acme","domains":["acme.example"],"users":[{"upn":"a@acme.example","name":"A","manager":"nobody@acme.example"}]}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_m365-sim")).args(["--scenario", path.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tenant Acme") && err.contains("unknown manager nobody@acme.example"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_m365-sim")).args(["--scenario", "/nonexistent/s.json"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read scenario /nonexistent/s.json"));
}

#[test]
fn the_generator_builds_large_tenants() {
    let s = offboard_m365_sim::Scenario::generate(3, 600);
    let clock = offboard_m365_sim::SimClock::manual(chrono::Utc::now());
    let w = offboard_m365_sim::world::World::build(&s, &clock).unwrap();
    assert_eq!(w.tenants.len(), 3);
    for t in &w.tenants {
        // 600 leavers and the lead who manages them.
        assert_eq!(t.users.len(), 601);
        assert_eq!(t.tier(), offboard_m365_sim::world::Tier::L);
        assert_eq!(t.managed.len(), 1200);
        assert_eq!(t.groups.len(), 15);
        assert_eq!(t.mailboxes.len(), 601);
        let lead = t.user_id("lead@bench000.example").or_else(|| t.users.values().find(|u| u.upn.starts_with("lead@")).map(|u| u.id.clone())).unwrap();
        let leaver = t.users.values().find(|u| u.upn.starts_with("user00001@")).unwrap();
        assert_eq!(leaver.manager.as_deref(), Some(lead.as_str()));
    }
}
