//! The relay contract (offboard-testkit) against Slack's surface through the fake Web API,
//! on both backends: Slack's thread is the approval message's own.

use std::sync::Arc;

use offboard_core::secret::Secret;
use offboard_core::testing::Posted;
use offboard_slack::api::SlackApi;
use offboard_slack::fake::FakeSlack;
use offboard_slack::surface::SlackSurface;
use offboard_testkit::TestDb;
use offboard_testkit::relay_contract::relay_contract;

/// What the fake shows: messages by channel and thread, and files shared into threads.
fn seen(slack: &FakeSlack) -> Vec<Posted> {
    let mut all: Vec<Posted> = slack
        .messages()
        .into_iter()
        .map(|m| Posted { id: m.ts, place: m.channel, thread: m.thread_ts, text: format!("{} {}", m.text, m.blocks), file: None, edits: m.edits })
        .collect();
    all.extend(slack.files().into_iter().filter_map(|f| {
        let (channel, ts) = f.shared_to?;
        Some(Posted { id: f.id, place: channel, thread: Some(ts), text: String::new(), file: Some(f.name), edits: 0 })
    }));
    all
}

#[tokio::test]
async fn the_relay_keeps_its_contract_on_slack() {
    for db in TestDb::all().await {
        let store = db.store().await;
        let slack = FakeSlack::start("xoxb-contract").await;
        let api = Arc::new(SlackApi::new(&slack.api_url(), &Secret::new("xoxb-contract")).unwrap());
        let surface = Arc::new(SlackSurface::new(api));
        relay_contract(store.clone(), surface, || seen(&slack), "C0CONTOSO", "C0FABRIKAM").await;
        store.close().await;
        db.cleanup().await;
    }
}
