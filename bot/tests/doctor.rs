//! `offboard doctor` against the simulated tenant: all clear, then exactly the one
//! permission that was taken away.

use std::process::Command;
use std::sync::Arc;

use offboard_core::clock::{Clock, SystemClock};
use offboard_m365::Settings;
use offboard_m365_sim::{Scenario, SimConfig};
use offboard_testkit::TestDb;

mod common;

fn doctor(config: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_offboard")).args(["doctor", "--config", config.to_str().unwrap()]).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_exactly_the_missing_permission() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), SimConfig::default(), clock, Settings::default(), Default::default()).await.unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), &sim, &db.url, "");

    let (code, said) = doctor(&config);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("tenant contoso.com: signed in; Graph and Exchange answer; every permission and role the steps need is granted"), "{said}");
    assert!(!said.contains("ERROR"), "{said}");

    let client = sim.m365.tenants().all().next().unwrap().client_id.clone();
    let removed = "DeviceManagementManagedDevices.PrivilegedOperations.All";
    sim.sim.set_permission("contoso.com", &client, offboard_m365_sim::token::Resource::Graph, removed, false).unwrap();
    let (code, said) = doctor(&config);
    assert_eq!(code, Some(1), "{said}");
    let errors: Vec<&str> = said.lines().filter(|l| l.starts_with("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{said}");
    assert!(errors[0].contains(removed) && errors[0].contains("device_action"), "{said}");
    db.cleanup().await;
}

/// Each failure named as what it is: a Graph that does not answer is not "every permission
/// is granted", an unreachable Slack is not "the token was refused".
#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_unreachable_services_as_unreachable() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), SimConfig::default(), clock, Settings::default(), Default::default()).await.unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let slack = format!("[slack]\nsigning_secret = \"s\"\nbot_token = \"xoxb-1\"\napprovals_channel = \"C0APPROVALS\"\napi_url = \"http://{closed}/api\"\n");
    let config = common::write_config(dir.path(), &sim, &db.url, &slack);
    let text = std::fs::read_to_string(&config).unwrap();
    let graph = sim.sim.urls().graph.clone();
    std::fs::write(&config, text.replace(&format!("graph = \"{graph}\""), &format!("graph = \"http://{closed}\""))).unwrap();
    let (code, said) = doctor(&config);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("ERROR tenant contoso.com: Microsoft Graph is unreachable"), "{said}");
    assert!(!said.contains("every permission and role the steps need is granted"), "{said}");
    assert!(said.contains(&format!("ERROR slack: http://{closed}/api is unreachable")), "{said}");
    assert!(!said.contains("token was refused"), "{said}");

    // A Slack that answers and refuses the token is said so.
    let fake = offboard_slack::fake::FakeSlack::start("xoxb-the-real-one").await;
    let slack = format!("[slack]\nsigning_secret = \"s\"\nbot_token = \"xoxb-wrong\"\napprovals_channel = \"C0APPROVALS\"\napi_url = \"{}\"\n", fake.api_url());
    let config = common::write_config(dir.path(), &sim, &db.url, &slack);
    let (code, said) = doctor(&config);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("ERROR slack: the bot token was refused (invalid_auth)"), "{said}");
    db.cleanup().await;
}

/// Teams: the bot's sign-in (refused is said as refused), Bot Framework's keys, whether the
/// bot has seen the approvals channel (install the app first), and how reports reach it.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_teams() {
    use offboard_teams::fake::{FakeBotFramework, SigningKey};
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), SimConfig::default(), clock, Settings::default(), Default::default()).await.unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBotFramework::start(vec![SigningKey::generate("k-teams", &["msteams"])]).await;
    fake.register_bot("8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "right-password");
    let teams = |password: &str| {
        format!(
            "[teams]\napp_id = \"8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b\"\napp_password = \"{password}\"\ntenant_id = \"0b1c2d3e\"\napprovals_channel = \"19:it@thread.tacv2\"\nlogin = \"{u}\"\nopenid_metadata = \"{m}\"\nservice_url = \"{u}\"\n",
            u = fake.url(),
            m = fake.metadata_url()
        )
    };
    let config = common::write_config(dir.path(), &sim, &db.url, &teams("right-password"));
    let (code, said) = doctor(&config);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("ok    teams: the bot 8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b signs in"), "{said}");
    assert!(said.contains("ok    teams: Bot Framework's keys readable (1 for Teams)"), "{said}");
    assert!(said.contains("ERROR teams: the bot has not seen the approvals channel 19:it@thread.tacv2 yet: install the app"), "{said}");
    assert!(said.contains("ERROR teams: public_url is not set"), "{said}");

    let store = db.store().await;
    store.save_conversation("teams", "19:it@thread.tacv2", "{}", chrono::Utc::now()).await.unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("public_url = \"https://offboard.contoso.com\"\n{text}")).unwrap();
    let (code, said) = doctor(&config);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("ok    teams: reports are posted as signed links under https://offboard.contoso.com, without a copy in the channel's Files: no [[tenants]] entry has directory_id = teams.tenant_id"), "{said}");

    // The bot's home tenant is a configured tenant: whether its app may write files decides.
    for (domain, expected) in [
        ("contoso.com", "with a copy in the channel's Files (contoso.com grants Files.ReadWrite.All)"),
        (
            "fabrikam.example",
            "without a copy in the channel's Files: to keep one there, grant the Graph application permission Files.ReadWrite.All in tenant fabrikam.example",
        ),
    ] {
        let home = sim.sim.tenant(domain, |t| t.id.clone()).unwrap();
        let both: Vec<_> = sim.secrets.iter().map(|(t, _)| sim.m365.tenants().get(t).unwrap()).collect();
        let teams = teams("right-password").replace("tenant_id = \"0b1c2d3e\"", &format!("tenant_id = \"{home}\""));
        let config = common::write_config_for(dir.path(), sim.sim.urls(), &both, &db.url, &teams);
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, format!("public_url = \"https://offboard.contoso.com\"\n{text}")).unwrap();
        let (_, said) = doctor(&config);
        assert!(said.contains(&format!("ok    teams: reports are posted as signed links under https://offboard.contoso.com, {expected}")), "{said}");
    }

    std::fs::write(&config, format!("public_url = \"https://offboard.contoso.com\"\n{}", text.replace("right-password", "wrong"))).unwrap();
    let (code, said) = doctor(&config);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("ERROR teams: the bot's sign-in was refused: invalid_client"), "{said}");
    assert!(!said.contains("wrong"), "the password is never printed: {said}");
    db.cleanup().await;
}

/// Discord: the bot's token, the commands' registration, and the bot's permissions in the
/// approvals channel, each named when missing.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_discord() {
    use offboard_discord::fake::FakeDiscord;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), SimConfig::default(), clock, Settings::default(), Default::default()).await.unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start("right-token").await;
    discord.add_channel("1100000000000000002");
    let key =
        offboard_discord::fake::Driver::new("http://unused", discord.clone(), "1234567890123456789", "1100000000000000001", "1100000000000000002").public_key();
    let section = |token: &str| {
        format!(
            "[discord]\napplication_id = \"1234567890123456789\"\npublic_key = \"{key}\"\nbot_token = \"{token}\"\nguild_id = \"1100000000000000001\"\napprovals_channel = \"1100000000000000002\"\napi_url = \"{}\"\n",
            discord.url()
        )
    };
    let config = common::write_config(dir.path(), &sim, &db.url, &section("right-token"));
    let (code, said) = doctor(&config);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("ok    discord: the bot Offboard signs in"), "{said}");
    assert!(said.contains("ERROR discord: the commands are not registered in server 1100000000000000001: run offboard discord register"), "{said}");
    assert!(said.contains("ok    discord: the bot may post, start threads and attach files"), "{said}");

    let api = offboard_discord::api::DiscordApi::new(discord.url(), "1234567890123456789", offboard_core::secret::Secret::new("right-token"));
    api.register(Some("1100000000000000001"), &offboard_discord::commands::definitions(&[])).await.unwrap();
    discord.deny_bot(offboard_discord::api::bits::ATTACH_FILES | offboard_discord::api::bits::CREATE_PUBLIC_THREADS);
    let (code, said) = doctor(&config);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("ok    discord: /offboard and /offboards are registered"), "{said}");
    assert!(said.contains("ERROR discord: in the approvals channel 1100000000000000002 the bot lacks: Attach Files, Create Public Threads"), "{said}");
    discord.deny_bot(0);
    assert_eq!(doctor(&config).0, Some(0));

    let config = common::write_config(dir.path(), &sim, &db.url, &section("wrong-token"));
    let (code, said) = doctor(&config);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("ERROR discord: the bot token was refused"), "{said}");
    assert!(!said.contains("wrong-token"), "the token is never printed: {said}");
    db.cleanup().await;
}
