//! The relay contract (offboard-testkit) against Teams' surface through the fake Bot
//! Connector, on both backends: the approval card starts a thread in its tenant's channel,
//! and the run's status, replies and report link follow in that reply chain.

use std::sync::Arc;

use offboard_core::clock::SystemClock;
use offboard_core::secret::Secret;
use offboard_core::testing::Posted;
use offboard_teams::connector::{BotIdentity, Connector};
use offboard_teams::fake::FakeBotFramework;
use offboard_teams::surface::TeamsSurface;
use offboard_testkit::TestDb;
use offboard_testkit::relay_contract::relay_contract;

const APP_ID: &str = "8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const TENANT: &str = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";

/// What Teams shows: cards and messages by channel and thread; the report is the card
/// whose download link names the file.
fn seen(teams: &FakeBotFramework) -> Vec<Posted> {
    teams
        .messages()
        .into_iter()
        .map(|m| {
            let file = m.activity["attachments"][0]["content"]["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "Action.OpenUrl")
                .and_then(|a| a["url"].as_str())
                .and_then(|u| u.split('?').next()?.rsplit('/').next().map(String::from));
            Posted { id: m.id, place: m.conversation, thread: m.thread, text: m.activity.to_string(), file, edits: m.edits }
        })
        .collect()
}

#[tokio::test]
async fn the_relay_keeps_its_contract_on_teams() {
    for db in TestDb::all().await {
        let store = db.store().await;
        let teams = FakeBotFramework::start(vec![]).await;
        teams.register_bot(APP_ID, "bot-password");
        let bot =
            BotIdentity { app_id: APP_ID.into(), password: Secret::new("bot-password"), token_url: format!("{}/{TENANT}/oauth2/v2.0/token", teams.url()) };
        let connector = Arc::new(Connector::new(bot, &teams.url(), Arc::new(SystemClock)));
        let surface = Arc::new(TeamsSurface::new(connector, TENANT));
        relay_contract(store.clone(), surface, || seen(&teams), "19:contoso@thread.tacv2", "19:fabrikam@thread.tacv2").await;
        assert_eq!(teams.tokens_issued(), 1, "{}: the bot's token is reused", db.backend);
        assert!(teams.calls().iter().all(|c| c.status == 200), "{}", db.backend);
        store.close().await;
        db.cleanup().await;
    }
}

/// A 429 from the connector holds the relay for its Retry-After: the next call comes no
/// sooner, and the message still lands, once.
#[tokio::test]
async fn retry_after_is_waited_out_and_the_message_lands() {
    use offboard_core::chat::relay::{Relay, Routes};
    use offboard_core::request::{Options, Request};
    let db = TestDb::sqlite();
    let store = db.store().await;
    let clock: Arc<dyn offboard_core::clock::Clock> = Arc::new(SystemClock);
    let svc = offboard_testkit::relay_contract::two_tenants(store.clone(), clock.clone(), offboard_testkit::fixtures::access());
    let teams = FakeBotFramework::start(vec![]).await;
    teams.register_bot(APP_ID, "bot-password");
    let bot = BotIdentity { app_id: APP_ID.into(), password: Secret::new("bot-password"), token_url: format!("{}/{TENANT}/oauth2/v2.0/token", teams.url()) };
    let surface = Arc::new(TeamsSurface::new(Arc::new(Connector::new(bot, &teams.url(), clock.clone())), TENANT));
    let templates = Arc::new(offboard_core::templates::Templates::load(None, &[]).unwrap());
    let relay = Relay::new(store.clone(), surface, "teams", Routes::single("teams", "19:it@thread.tacv2"), None, templates, clock.clone());
    let options = Options { disable_sign_in: true, ..Options::default() };
    svc.request(&offboard_testkit::fixtures::requester(), Request::now(offboard_testkit::fixtures::tenant_id(), "alice@contoso.com", options)).await.unwrap();
    teams.throttle(1, 2);
    tokio::spawn(async move { relay.run_until(std::time::Duration::from_millis(20), std::future::pending::<()>()).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while teams.messages().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the approval card never landed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let calls: Vec<_> = teams.calls().into_iter().filter(|c| c.path == "/v3/conversations").collect();
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), [429, 200]);
    let waited = calls[1].at - calls[0].at;
    assert!(waited >= std::time::Duration::from_secs(2), "called again after {waited:?}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(teams.messages().len(), 1);
    store.close().await;
}
