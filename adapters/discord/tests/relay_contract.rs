//! The relay contract (offboard-testkit) against Discord's surface through the local
//! Discord, on both backends: the approval message in its tenant's channel, a thread
//! started from it, the status edited there, and the PDF uploaded into the thread.

use std::sync::Arc;

use offboard_core::chat::surface::{ChatError, ChatSurface, MessageRef};
use offboard_core::chat::views::FileOut;
use offboard_core::secret::Secret;
use offboard_core::testing::Posted;
use offboard_discord::api::DiscordApi;
use offboard_discord::fake::FakeDiscord;
use offboard_discord::surface::{DiscordSurface, MAX_FILE};
use offboard_testkit::TestDb;
use offboard_testkit::relay_contract::relay_contract;

const APP_ID: &str = "1234567890123456789";
const TOKEN: &str = "discord-bot-token";
const CONTOSO: &str = "1100000000000000011";
const FABRIKAM: &str = "1100000000000000012";

/// What Discord shows: messages by channel, a thread's messages under the message it was
/// started from (a thread's id is that message's), files by name.
fn seen(discord: &FakeDiscord) -> Vec<Posted> {
    discord
        .messages()
        .into_iter()
        .map(|m| {
            let parent = discord.thread_of(&m.channel);
            Posted {
                id: m.id,
                place: parent.clone().unwrap_or(m.channel.clone()),
                thread: parent.map(|_| m.channel.clone()),
                text: m.body.to_string(),
                file: m.files.first().map(|(name, _)| name.clone()),
                edits: m.edits as usize,
            }
        })
        .collect()
}

fn surface(discord: &FakeDiscord) -> DiscordSurface {
    DiscordSurface::new(Arc::new(DiscordApi::new(discord.url(), APP_ID, Secret::new(TOKEN))))
}

#[tokio::test]
async fn the_relay_keeps_its_contract_on_discord() {
    for db in TestDb::all().await {
        let store = db.store().await;
        let discord = FakeDiscord::start(TOKEN).await;
        discord.add_channel(CONTOSO);
        discord.add_channel(FABRIKAM);
        relay_contract(store.clone(), Arc::new(surface(&discord)), || seen(&discord), CONTOSO, FABRIKAM).await;
        assert!(discord.calls().iter().all(|c| c.status == 200), "{}: {:?}", db.backend, discord.calls());
        let report = discord.messages().into_iter().find(|m| !m.files.is_empty()).expect("the report");
        assert_eq!(report.files[0].1, b"%PDF-1.7\n%stub\n%%EOF\n", "{}: the PDF's bytes", db.backend);
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn threads_are_found_again_and_large_reports_go_as_links() {
    let discord = FakeDiscord::start(TOKEN).await;
    discord.add_channel(CONTOSO);
    let s = surface(&discord);
    let (run, _, _) = offboard_core::testing::finished_run();
    let root = s.post_preview(CONTOSO, &offboard_core::chat::PlanPreview::from_run(&run, &[])).await.unwrap();
    let thread = s.open_thread(&root).await.unwrap();
    // A relay that lost the answer asks again: the same thread.
    assert_eq!(s.open_thread(&root).await.unwrap(), thread);

    let big = vec![b'%'; MAX_FILE + 1];
    let linked = FileOut {
        name: "ob-big.pdf".into(),
        mime: "application/pdf",
        bytes: big.clone(),
        link: Some("https://offboard.example.com/r/ob-big.pdf?sig=00".into()),
    };
    s.attach(&thread, &linked).await.unwrap();
    let last = discord.messages().pop().unwrap();
    assert!(last.files.is_empty() && last.body["content"].as_str().unwrap().contains("Too large to attach here"), "{:?}", last.body);
    let unlinked = FileOut { link: None, ..linked };
    assert!(matches!(s.attach(&thread, &unlinked).await, Err(ChatError::Permanent(_))));
    assert!(
        matches!(
            s.post_status(&MessageRef("1100000000000009999".into()), &offboard_core::chat::RunView::from_run(&run, &[])).await,
            Err(ChatError::Permanent(_))
        ),
        "an unknown channel"
    );

    // A 429 on a channel's messages: no call on that route before it has elapsed.
    discord.throttle_next(&format!("/channels/{}/messages", thread.0), 0.5);
    let started = std::time::Instant::now();
    s.reply(&thread, "Failed: Remove licences").await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    let statuses: Vec<u16> = discord.calls().iter().filter(|c| c.path == format!("/channels/{}/messages", thread.0)).map(|c| c.status).collect();
    assert_eq!(&statuses[statuses.len() - 2..], [429, 200]);
}

/// A global 429 holds every route, not only the one that met it.
#[tokio::test]
async fn a_global_limit_holds_every_route() {
    let discord = FakeDiscord::start(TOKEN).await;
    discord.add_channel(CONTOSO);
    discord.add_channel(FABRIKAM);
    let s = Arc::new(surface(&discord));
    discord.throttle_next_globally(&format!("/channels/{CONTOSO}/messages"), 0.6);
    let started = std::time::Instant::now();
    let (a, b) = (s.clone(), s.clone());
    let first = tokio::spawn(async move { a.reply(&MessageRef(CONTOSO.into()), "one").await });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    // Another channel, asked after the global 429 came back: it waits too.
    let second = tokio::spawn(async move { b.reply(&MessageRef(FABRIKAM.into()), "two").await });
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let calls = discord.calls();
    let limited = calls.iter().find(|c| c.status == 429).expect("the global 429");
    let other = calls.iter().find(|c| c.path == format!("/channels/{FABRIKAM}/messages")).expect("the other channel's call");
    assert_eq!(other.status, 200);
    assert!(other.at - limited.at >= std::time::Duration::from_millis(600), "another route was called {:?} after a global 429", other.at - limited.at);
    assert!(started.elapsed() >= std::time::Duration::from_millis(600));
    assert_eq!(discord.messages().len(), 2, "both landed, once");
}

/// A bucket Discord says is spent (`X-RateLimit-Remaining: 0`) holds its route until it
/// refills, before any 429.
#[tokio::test]
async fn a_spent_bucket_holds_its_route_until_it_refills() {
    let discord = FakeDiscord::start(TOKEN).await;
    discord.add_channel(CONTOSO);
    let s = surface(&discord);
    discord.spend_bucket(&format!("/channels/{CONTOSO}/messages"), 0.5);
    s.reply(&MessageRef(CONTOSO.into()), "one").await.unwrap();
    s.reply(&MessageRef(CONTOSO.into()), "two").await.unwrap();
    let calls = discord.calls();
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), [200, 200], "no 429 was needed");
    assert!(calls[1].at - calls[0].at >= std::time::Duration::from_millis(450), "the second came {:?} after", calls[1].at - calls[0].at);
}
