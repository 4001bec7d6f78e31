//! The report's copy in the channel's Files, as the thread tells it: linked when filed,
//! its failure said, and nothing said when the home tenant never granted filing.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use offboard_core::chat::files::{ChannelFiles, ChannelPlace, Filed, FilingError};
use offboard_core::chat::surface::ChatSurface;
use offboard_core::chat::views::{FileOut, PlanPreview};
use offboard_core::clock::SystemClock;
use offboard_core::secret::Secret;
use offboard_teams::connector::{BotIdentity, Connector};
use offboard_teams::fake::FakeBotFramework;
use offboard_teams::server::CHANNEL_TEAMS;
use offboard_teams::surface::TeamsSurface;
use offboard_testkit::TestDb;

const APP_ID: &str = "8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const TENANT: &str = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
const CHANNEL: &str = "19:it-approvals@thread.tacv2";
const TEAM: &str = "5c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";

/// Answers as told and keeps what it was asked to file.
struct Files {
    answer: Result<Filed, FilingError>,
    asked: Mutex<Vec<(ChannelPlace, String, usize)>>,
}

#[async_trait]
impl ChannelFiles for Files {
    async fn file(&self, place: &ChannelPlace, name: &str, bytes: &[u8]) -> Result<Filed, FilingError> {
        self.asked.lock().unwrap().push((place.clone(), name.to_string(), bytes.len()));
        self.answer.clone()
    }
}

#[tokio::test]
async fn the_report_card_tells_where_the_channels_copy_is() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let teams = FakeBotFramework::start(vec![]).await;
    teams.register_bot(APP_ID, "bot-password");
    let bot = BotIdentity { app_id: APP_ID.into(), password: Secret::new("bot-password"), token_url: format!("{}/{TENANT}/oauth2/v2.0/token", teams.url()) };
    let connector = Arc::new(Connector::new(bot, &teams.url(), Arc::new(SystemClock)));
    let file = FileOut {
        name: "ob-7k2m9q4x1p.pdf".into(),
        mime: "application/pdf",
        bytes: b"%PDF-1.7".to_vec(),
        link: Some("https://offboard.example.com/r.pdf".into()),
    };
    let (run, _, _) = offboard_core::testing::finished_run();
    let preview = PlanPreview::from_run(&run, &[]);
    let plain = TeamsSurface::new(connector.clone(), TENANT);
    let thread = plain.open_thread(&plain.post_preview(CHANNEL, &preview).await.unwrap()).await.unwrap();
    let personal = plain.open_thread(&plain.direct_preview("29:1mary", &preview).await.unwrap()).await.unwrap();
    assert!(thread.0.starts_with(CHANNEL) && !personal.0.starts_with("19:"), "{thread:?} {personal:?}");
    let last_card = || teams.calls().last().map(|c| c.body["attachments"][0]["content"].to_string()).unwrap_or_default();
    let surface = |answer| {
        let files = Arc::new(Files { answer, asked: Mutex::default() });
        (TeamsSurface::new(connector.clone(), TENANT).with_files(files.clone(), store.clone()), files)
    };

    // The bot has not yet seen an activity from the channel: it cannot know the team.
    let (s, files) = surface(Ok(Filed { web_url: "https://contoso.sharepoint.com/x.pdf".into() }));
    s.attach(&thread, &file).await.unwrap();
    assert!(last_card().contains("No copy in this channel's Files: the channel's team is not known yet"), "{}", last_card());
    assert!(files.asked.lock().unwrap().is_empty());

    store.save_conversation(CHANNEL_TEAMS, CHANNEL, &format!(r#"{{"team":"19:team@thread.tacv2","aadGroupId":"{TEAM}"}}"#), chrono::Utc::now()).await.unwrap();
    s.attach(&thread, &file).await.unwrap();
    assert!(last_card().contains("Open in Files") && last_card().contains("https://contoso.sharepoint.com/x.pdf"), "{}", last_card());
    assert_eq!(files.asked.lock().unwrap()[0], (ChannelPlace { team: TEAM.into(), channel: CHANNEL.into() }, file.name.clone(), 8));

    let (s, _) = surface(Err(FilingError::Failed("Graph answered 503".into())));
    s.attach(&thread, &file).await.unwrap();
    assert!(last_card().contains("No copy in this channel's Files: Graph answered 503") && !last_card().contains("Open in Files"), "{}", last_card());

    // Never granted: the link alone, without a word about Files.
    let (s, _) = surface(Err(FilingError::NotGranted("grant Files.ReadWrite.All".into())));
    s.attach(&thread, &file).await.unwrap();
    assert!(!last_card().contains("Files"), "{}", last_card());
    assert!(last_card().contains("Download ob-7k2m9q4x1p.pdf"));

    // A personal chat has no Files to file into.
    let (s, files) = surface(Ok(Filed { web_url: "https://contoso.sharepoint.com/x.pdf".into() }));
    s.attach(&personal, &file).await.unwrap();
    assert!(files.asked.lock().unwrap().is_empty() && !last_card().contains("Files"));
    db.cleanup().await;
}
