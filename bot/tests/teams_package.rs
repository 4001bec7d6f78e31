//! `offboard teams package`: the zip an admin uploads to Teams, with this bot's id and host,
//! validated against Microsoft's manifest schema (npm @microsoft/app-manifest, offline); and
//! the manifest's command list is exactly what the bot understands.

use std::io::Read;
use std::process::Command;

use offboard_core::chat::Command as ChatCommand;
use serde_json::Value;

const APP_ID: &str = "8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";

fn offboard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_offboard")).args(args).output().unwrap()
}

/// `node validate.js DIR`, with the npm packages the test command installed.
fn validate(dir: &std::path::Path) -> (bool, String) {
    let node_path = std::env::var("OFFBOARD_NODE_PATH").unwrap_or_else(|_| "node_modules".into());
    let out = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/teams/validate.js"))
        .arg(dir)
        .env("NODE_PATH", node_path)
        .output()
        .expect("node (the README's test command checks for it)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_package_holds_a_valid_manifest_for_this_bot_and_host() {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("app.zip");
    let made = offboard(&["teams", "package", "--app-id", APP_ID, "--host", "offboard.contoso.com", "--out", zip_path.to_str().unwrap()]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let unpacked = dir.path().join("app");
    std::fs::create_dir(&unpacked).unwrap();
    let mut names = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        std::fs::write(unpacked.join(&name), bytes).unwrap();
        names.push(name);
    }
    assert_eq!(names, ["manifest.json", "color.png", "outline.png"]);
    let m: Value = serde_json::from_str(&std::fs::read_to_string(unpacked.join("manifest.json")).unwrap()).unwrap();
    assert_eq!((m["id"].as_str(), m["bots"][0]["botId"].as_str()), (Some(APP_ID), Some(APP_ID)));
    assert_eq!(m["composeExtensions"][0]["botId"].as_str(), Some(APP_ID));
    // The message extension's action is the one the endpoint answers.
    assert_eq!(m["composeExtensions"][0]["commands"][0]["id"].as_str(), Some(offboard_teams::server::COMPOSE_COMMAND));
    assert_eq!(m["validDomains"], serde_json::json!(["offboard.contoso.com"]));
    let (ok, said) = validate(&unpacked);
    assert!(ok, "{said}");

    // The validator refuses a broken manifest.
    let mut broken = m.clone();
    broken["bots"][0]["scopes"] = serde_json::json!(["everywhere"]);
    std::fs::write(unpacked.join("manifest.json"), broken.to_string()).unwrap();
    let (ok, said) = validate(&unpacked);
    assert!(!ok && said.contains("scopes"), "{said}");
}

#[test]
fn a_wrong_app_id_or_host_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("app.zip");
    for (args, says) in
        [(["--app-id", "my-bot", "--host", "offboard.contoso.com"], "--app-id"), (["--app-id", APP_ID, "--host", "https://offboard.contoso.com"], "--host")]
    {
        let r = offboard(&[&["teams", "package"][..], &args[..], &["--out", out.to_str().unwrap()][..]].concat());
        assert_eq!(r.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&r.stderr).contains(says), "{}", String::from_utf8_lossy(&r.stderr));
        assert!(!out.exists());
    }
}

/// Each command the manifest offers, with the example its description gives, is one the
/// bot parses (after "@Offboard" and the leading "offboard"), and every command the bot
/// has is offered.
#[test]
fn the_manifests_commands_are_the_ones_the_bot_understands() {
    let m: Value = serde_json::from_str(include_str!("../../manifests/teams/manifest.json")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for c in m["bots"][0]["commandLists"][0]["commands"].as_array().unwrap() {
        let title = c["title"].as_str().unwrap();
        let description = c["description"].as_str().unwrap();
        let example =
            description.split_once(": ").map(|(_, e)| e.replace(" [preset]", "")).filter(|e| e.starts_with(title)).unwrap_or_else(|| title.to_string());
        let text = example.strip_prefix("offboard").map(str::trim).unwrap_or(&example).to_string();
        let parsed = ChatCommand::parse(&text);
        assert!(!matches!(parsed, ChatCommand::Unknown(_)), "{title}: `{text}` → {parsed:?}");
        seen.insert(format!("{parsed:?}").split(['(', ' ']).next().unwrap().to_string());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["Cancel", "Help", "List", "Offboard", "RunNow", "Status"]);
}
