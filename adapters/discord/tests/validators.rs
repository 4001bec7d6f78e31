//! What the Discord adapter sends, checked by an independent validator (`validate.js`: npm
//! `@discordjs/builders` plus the rules it does not check): every modal, message and
//! command definition. Each kind of check is shown to fail on a broken payload.

use std::path::Path;

use offboard_core::chat::views::{PlanPreview, RunView};
use offboard_core::chat::{FieldError, Page, Values};
use offboard_discord::{commands, views};
use serde_json::{Value, json};

fn validate(dir: &Path) -> (bool, String) {
    let node_path = std::env::var("OFFBOARD_NODE_PATH").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../.npm-validators/node_modules").into());
    let out = std::process::Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/validate.js"))
        .arg(dir)
        .env("NODE_PATH", node_path)
        .output()
        .expect("node with @discordjs/builders (the README's test command sets it up)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn write(dir: &Path, name: &str, v: &Value) {
    std::fs::write(dir.join(name), serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// Every payload the adapter renders, as it sends them.
fn everything(dir: &Path) -> usize {
    let presets = ["standard-leaver".to_string(), "hostile-exit".into(), "none".into()];
    write(dir, "commands.commands.json", &Value::from(commands::definitions(&presets)));
    let wizard = offboard_core::chat::wizard(&[], &[]);
    for (i, form) in wizard.iter().enumerate() {
        let errors = form.fields.iter().map(|f| FieldError { field: f.id.into(), message: "correct this, it is not what this field takes".into() }).collect();
        let page = Page { key: "discord:1200000000000000001".into(), form: form.clone(), values: Values::new(), errors, origin: None };
        write(dir, &format!("page{i}.modal.json"), &views::open_modal(&page));
        write(dir, &format!("correct{i}.message.json"), &views::correct(&page));
        write(dir, &format!("next{i}.message.json"), &views::next_page(&page));
    }
    let (mut run, steps, approvals) = offboard_core::testing::finished_run();
    write(dir, "preview_decided.message.json", &views::preview(&PlanPreview::from_run(&run, &approvals)));
    write(dir, "status.message.json", &views::message(&views::status(&RunView::from_run(&run, &steps))));
    write(dir, "help.message.json", &views::ephemeral(&commands::help()));
    write(dir, "reject_reason.modal.json", &views::reject_reason(&run.id));
    run.state = offboard_core::run::RunState::AwaitingApproval;
    write(dir, "preview_open.message.json", &views::preview(&PlanPreview::from_run(&run, &[])));
    let alice = offboard_core::testing::rich_user();
    let person = offboard_core::snapshot::Person {
        id: alice.id,
        upn: alice.upn,
        display_name: "Alice Example, with a name long enough to need clipping in a choice".repeat(2),
        enabled: false,
    };
    let people = vec![person; 30];
    write(dir, "autocomplete.message.json", &views::autocomplete(&people));
    1 + 3 * wizard.len() + 6
}

#[test]
fn every_modal_message_and_command_validates() {
    let dir = tempfile::tempdir().unwrap();
    let n = everything(dir.path());
    let (ok, said) = validate(dir.path());
    assert!(ok, "{said}");
    assert!(said.contains(&format!("ok: {n} payloads")), "{said}");
}

#[test]
fn the_validator_refuses_broken_payloads() {
    let cases = [
        // @discordjs/builders' own checks (a long custom_id is caught by both).
        (
            "long_id.message.json",
            json!({ "content": "x", "components": [{ "type": 1, "components": [{ "type": 2, "style": 1, "label": "Go", "custom_id": "x".repeat(101) }] }] }),
        ),
        (
            "long_title.modal.json",
            json!({ "custom_id": "m", "title": "t".repeat(46), "components": [{ "type": 18, "label": "L", "component": { "type": 4, "custom_id": "a", "style": 1 } }] }),
        ),
        ("bad_name.commands.json", json!([{ "name": "Offboard Now", "description": "d" }])),
        // Ours, for what it does not check.
        (
            "twice.message.json",
            json!({ "content": "x", "components": [{ "type": 1, "components": [{ "type": 2, "style": 1, "label": "A", "custom_id": "same" }, { "type": 2, "style": 1, "label": "B", "custom_id": "same" }] }] }),
        ),
        (
            "six.modal.json",
            json!({ "custom_id": "m", "title": "t", "components": (0..6).map(|i| json!({ "type": 18, "label": "L", "component": { "type": 4, "custom_id": format!("f{i}"), "style": 1 } })).collect::<Vec<_>>() }),
        ),
        ("long_content.message.json", json!({ "content": "x".repeat(2001) })),
    ];
    for (name, payload) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), name, &payload);
        let (ok, said) = validate(dir.path());
        assert!(!ok, "{name} passed: {said}");
        assert!(said.contains(name), "{said}");
    }
}
