//! Everything the adapter renders, checked by Slack's own SDK (slack_sdk: Block Kit limits
//! and a lossless round trip), and the app manifest checked against Slack's schema and
//! against what the code uses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use offboard_core::chat::{PlanPreview, RunView, Value, Values, wizard};
use offboard_core::domain::TenantId;
use offboard_core::run::RunState;
use offboard_core::testing::finished_run;
use offboard_slack::api::METHOD_SCOPES;
use offboard_slack::blocks;
use offboard_slack::server::{COMMAND, COMMANDS_PATH, INTERACTIONS_PATH, OPTIONS_PATH};
use serde_json::Value as Json;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifest() -> Json {
    serde_json::from_str(&std::fs::read_to_string(repo().join("manifests/slack/manifest.json")).unwrap()).unwrap()
}

fn schema() -> PathBuf {
    if let Ok(p) = std::env::var("OFFBOARD_SLACK_MANIFEST_SCHEMA") {
        return p.into();
    }
    repo().join("testkit/fixtures/slack/manifest.schema.1.0.0.json")
}

#[test]
fn the_manifest_declares_exactly_what_the_code_uses() {
    let m = manifest();
    let commands = m["features"]["slash_commands"].as_array().unwrap();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0]["command"], COMMAND);
    assert!(commands[0]["url"].as_str().unwrap().ends_with(COMMANDS_PATH));
    let i = &m["settings"]["interactivity"];
    assert_eq!(i["is_enabled"], true);
    assert!(i["request_url"].as_str().unwrap().ends_with(INTERACTIONS_PATH));
    assert!(i["message_menu_options_url"].as_str().unwrap().ends_with(OPTIONS_PATH));
    let declared: BTreeSet<&str> = m["oauth_config"]["scopes"]["bot"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let mut used: BTreeSet<&str> = METHOD_SCOPES.iter().filter_map(|(_, s)| *s).collect();
    used.insert("commands");
    // Slack grants some scopes only together with another.
    let companions: Vec<&str> = offboard_slack::api::COMPANION_SCOPES.iter().filter(|(s, _)| used.contains(s)).map(|(_, c)| *c).collect();
    used.extend(companions);
    assert_eq!(declared, used, "the manifest's bot scopes must be exactly the scopes of the methods the adapter calls");
}

fn write(dir: &Path, name: &str, v: &Json) {
    std::fs::write(dir.join(name), serde_json::to_string_pretty(v).unwrap()).unwrap();
}

#[test]
fn every_payload_passes_slack_sdk_and_the_manifest_passes_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let one = vec![TenantId::parse("contoso.com").unwrap()];
    let two = vec![one[0].clone(), TenantId::parse("fabrikam.com").unwrap()];
    let mut prefill = Values::new();
    prefill.insert("user".into(), Value::Text("alice@contoso.com".into()));
    prefill.insert("preset".into(), Value::Text("hostile-exit".into()));
    for (n, tenants) in [("one", &one), ("two", &two)] {
        for form in wizard(tenants, &[]) {
            write(dir.path(), &format!("wizard-{n}-{}.view.json", form.page), &blocks::modal(&form, &prefill));
        }
    }
    write(dir.path(), "notice.view.json", &blocks::notice_modal("Offboard", "Looking up *alice@contoso.com* and building the plan…"));
    write(dir.path(), "reject.view.json", &blocks::reject_modal("ob-7k2m9q4x1p"));
    let (mut run, steps, approvals) = finished_run();
    for state in [RunState::AwaitingApproval, RunState::Completed, RunState::Rejected, RunState::Scheduled, RunState::Expired] {
        run.state = state;
        run.reason = Some("moving teams".into());
        let (_, b) = blocks::preview(&PlanPreview::from_run(&run, &approvals));
        write(dir.path(), &format!("preview-{}.blocks.json", state.as_str()), &Json::Array(b));
    }
    let (_, b) = blocks::status(&RunView::from_run(&run, &steps));
    write(dir.path(), "status-done.blocks.json", &Json::Array(b));
    let (_, b) = blocks::status(&RunView::from_run(&run, &[]));
    write(dir.path(), "status-pending.blocks.json", &Json::Array(b));
    let people = vec![offboard_core::snapshot::Person {
        id: offboard_core::domain::ObjectId::parse("00000000-0000-4000-8000-000000000001").unwrap(),
        upn: offboard_core::domain::Upn::parse("zoe@contoso.com").unwrap(),
        display_name: "Zoë Łukasiewicz-Ørsted, Head of Very Long Titles and Other Things That Overflow".into(),
        enabled: true,
    }];
    let options = blocks::people_options(&people);
    assert!(options["options"][0]["text"]["text"].as_str().unwrap().chars().count() <= 75);

    // `OFFBOARD_PYTHON`: the interpreter with the validators installed (the test
    // command's `.venv/bin/python`).
    let python = std::env::var("OFFBOARD_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .arg(repo().join("adapters/slack/validate.py"))
        .arg(repo().join("manifests/slack/manifest.json"))
        .arg(schema())
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{python} runs the validators: {e}"));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the independent validators refused (the test command installs them: bash .ci/test):\n{said}");
    assert!(said.contains("payloads valid"), "{said}");
}
