//! The messaging endpoint over real HTTP, with activities signed as Bot Framework signs
//! them and the fake Bot Connector receiving what the bot sends: the install event keeps
//! the channel's reference, forged activities do nothing, commands are answered in the
//! conversation, and Approve / Reject are decided by core and answered in the click's own
//! response (refusals only to the clicker, and audited).

use std::sync::Arc;

use offboard_core::chat::memberships::DirectoryGroups;
use offboard_core::chat::relay::{Relay, Routes};
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::domain::Role;
use offboard_core::policy::{LinkedPerson, Principal, RoleBinding};
use offboard_core::request::{Options, Request};
use offboard_core::run::RunState;
use offboard_core::secret::Secret;
use offboard_core::store::Store;
use offboard_teams::auth::Verifier;
use offboard_teams::connector::{BotIdentity, Connector};
use offboard_teams::fake::{Driver, FakeBotFramework, SigningKey, submitted};
use offboard_teams::server::TeamsApp;
use offboard_teams::surface::TeamsSurface;
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{access, directory, tenant_id};
use offboard_testkit::relay_contract::two_tenants;
use serde_json::{Value, json};

const APP_ID: &str = "8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const TENANT: &str = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
const CHANNEL: &str = "19:it-approvals@thread.tacv2";
const REQUESTER: &str = "aad-requester";
const ADMIN1: &str = "aad-admin-1";
const ADMIN2: &str = "aad-admin-2";
/// user2@contoso.com of the test directory: an admin only through the Entra group.
const GROUP_ADMIN: &str = "00000000-0000-4000-8000-000000000002";
const VPN_GROUP: &str = "g-vpn";

struct World {
    _db: TestDb,
    store: Store,
    svc: Arc<offboard_core::service::Offboarding>,
    teams: FakeBotFramework,
    key: SigningKey,
    driver: Driver,
    relay: Relay,
    app: Arc<TeamsApp>,
}

async fn world() -> World {
    world_sending_to(None).await
}

/// The world with the bot's connector configured at `configured` instead of the fake's.
async fn world_sending_to(configured: Option<&str>) -> World {
    let key = SigningKey::generate("k-teams", &["msteams"]);
    let teams = FakeBotFramework::start(vec![key.clone()]).await;
    teams.register_bot(APP_ID, "bot-password");
    let db = TestDb::sqlite();
    let store = db.store().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The Teams users are the fixtures' Slack users, linked.
    let mut access = access();
    let link = |slack: &str, aad: &str| LinkedPerson { identities: vec![format!("slack:{slack}"), format!("teams:{aad}")], upn: None };
    access.people = vec![link("UREQ", REQUESTER), link("UADM1", ADMIN1), link("UADM2", ADMIN2)];
    // Admins also by an Entra group of the home tenant, read in the background.
    access.bindings.push(RoleBinding { principal: Principal::Group { platform: "teams".into(), id: VPN_GROUP.into() }, role: Role::Admin, tenants: None });
    let svc = Arc::new(two_tenants(store.clone(), clock.clone(), access));
    let bot = BotIdentity { app_id: APP_ID.into(), password: Secret::new("bot-password"), token_url: format!("{}/{TENANT}/oauth2/v2.0/token", teams.url()) };
    let connector = Arc::new(Connector::new(bot, configured.unwrap_or(&teams.url()), clock.clone()));
    let verifier = Verifier::new(APP_ID, teams.metadata_url(), clock.clone());
    let app = TeamsApp::new(svc.clone(), Arc::new(directory(3)), Routes::single("teams", CHANNEL), verifier, connector.clone(), clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let templates = Arc::new(offboard_core::templates::Templates::load(None, &[]).unwrap());
    let relay = Relay::new(store.clone(), Arc::new(TeamsSurface::new(connector, TENANT)), "teams", Routes::single("teams", CHANNEL), None, templates, clock);
    let driver = Driver::new(format!("{url}/api/messages"), teams.clone(), key.clone(), APP_ID, TENANT, CHANNEL);
    World { _db: db, store, svc, teams, key, driver, relay, app }
}

impl World {
    fn activity(&self, kind: &str, from: &str, extra: Value) -> Value {
        self.driver.activity(kind, from, extra)
    }

    async fn send_with(&self, activity: &Value, token: Option<String>) -> reqwest::Response {
        self.driver.send_with(activity, token).await.unwrap()
    }

    async fn send(&self, activity: &Value) -> reqwest::Response {
        self.driver.send(activity).await.unwrap()
    }

    /// `who` clicks a button (`verb`, `data`) on a card; the invoke's answer.
    async fn click(&self, who: &str, verb: &str, data: Value) -> Value {
        let a = self.activity(
            "invoke",
            who,
            json!({ "name": "adaptiveCard/action", "value": { "action": { "type": "Action.Execute", "verb": verb, "data": data } } }),
        );
        let r = self.send(&a).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn until_messages(&self, n: usize) -> Vec<offboard_teams::fake::Message> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let m = self.teams.messages();
            if m.len() >= n {
                return m;
            }
            assert!(std::time::Instant::now() < deadline, "{} messages, expected {n}", m.len());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

fn button(card: &Value, verb: &str) -> Value {
    card["actions"].as_array().unwrap().iter().find(|a| a["verb"] == verb).unwrap()["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_event_keeps_the_channel_and_forgeries_do_nothing() {
    let w = world().await;
    let install = w.activity("installationUpdate", ADMIN1, json!({ "action": "add" }));
    // Forged: no token, another bot's audience, a key Bot Framework never published.
    assert_eq!(w.send_with(&install, None).await.status(), 401);
    let other_aud = w.key.sign(&FakeBotFramework::claims("another-app", &w.teams.url(), chrono::Utc::now()));
    assert_eq!(w.send_with(&install, Some(other_aud)).await.status(), 403);
    let stranger = SigningKey::generate("k-stranger", &["msteams"]);
    let forged = stranger.sign(&FakeBotFramework::claims(APP_ID, &w.teams.url(), chrono::Utc::now()));
    assert_eq!(w.send_with(&install, Some(forged)).await.status(), 403);
    assert_eq!(w.store.conversation("teams", CHANNEL).await.unwrap(), None, "nothing was kept from a forged activity");

    assert_eq!(w.send(&install).await.status(), 200);
    let reference: Value = serde_json::from_str(&w.store.conversation("teams", CHANNEL).await.unwrap().expect("kept")).unwrap();
    assert_eq!(reference["serviceUrl"], json!(w.teams.url()));
    assert_eq!(reference["tenant"], json!(TENANT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_answered_in_the_conversation() {
    let w = world().await;
    let help = w.driver.mention(REQUESTER, "offboard help");
    assert_eq!(w.send(&help).await.status(), 200);
    let said = w.until_messages(1).await;
    assert_eq!(said[0].conversation, CHANNEL);
    let text = said[0].activity["text"].as_str().unwrap();
    assert!(text.contains("offboard") && text.contains("status"), "{text}");
    // The same activity again (Bot Framework redelivers): answered once.
    assert_eq!(w.send(&help).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(w.teams.messages().len(), 1);
}

/// Answers go to the connector that verified activities name (each tenant's region has its
/// own), not only the configured one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_go_to_the_connector_the_activities_came_from() {
    let w = world_sending_to(Some("http://127.0.0.1:9")).await;
    assert_eq!(w.send(&w.driver.mention(REQUESTER, "offboard help")).await.status(), 200);
    let said = w.until_messages(1).await;
    assert!(said[0].activity["text"].as_str().unwrap().contains("status"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_decided_by_core_and_answered_in_the_click() {
    let w = world().await;
    // Asked by the requester from Teams (a high-risk plan: two approvers).
    let options = Options { disable_sign_in: true, revoke_sessions: true, ..Options::default() };
    let requester = offboard_core::domain::Actor { platform: "teams".into(), id: REQUESTER.into(), name: "Riley".into(), groups: vec![] };
    let run = w.svc.request(&requester, Request::now(tenant_id(), "alice@contoso.com", options.clone())).await.unwrap();
    assert_eq!(run.approvals_needed, 2);
    w.relay.drain().await.unwrap();
    let card = w.until_messages(1).await[0].activity["attachments"][0]["content"].clone();
    let approve = button(&card, "approve");

    // An outsider and the requester: told privately, audited, nothing changes.
    let outsider = w.click("aad-stranger", "approve", approve.clone()).await;
    assert_eq!(outsider["type"], "application/vnd.microsoft.activity.message", "{outsider}");
    assert!(outsider["value"].as_str().unwrap().contains("no role"), "{outsider}");
    let own = w.click(REQUESTER, "approve", approve.clone()).await;
    assert!(own["value"].as_str().unwrap().starts_with("Not approved"), "{own}");
    let refusals = w.store.audit_entries(0, 200).await.unwrap().into_iter().filter(|e| e.action == "approval.refused").count();
    assert_eq!(refusals, 2);
    assert!(w.store.approvals(&run.id).await.unwrap().is_empty());

    // The first admin: counted, and the refreshed card comes back in the response.
    let first = w.click(ADMIN1, "approve", approve.clone()).await;
    assert_eq!(first["type"], "application/vnd.microsoft.card.adaptive", "{first}");
    assert!(first["value"].to_string().contains("1 of 2 given"), "{first}");
    // The second: released; the card shows the decision and no buttons.
    let second = w.click(ADMIN2, "approve", approve).await;
    assert!(second["value"].to_string().contains("Approved"), "{second}");
    assert!(second["value"].get("actions").is_none(), "{second}");
    assert_eq!(w.store.run(&run.id).await.unwrap().state, RunState::Approved);
    // The relay edits the card for everyone.
    w.relay.drain().await.unwrap();
    let edited = w.teams.messages().into_iter().find(|m| m.thread.is_none()).unwrap();
    assert!(edited.edits >= 1 && edited.activity.to_string().contains("Approved"));

    // Reject asks for a reason; an empty one is refused on the field; then rejected.
    let other = w.svc.request(&requester, Request::now(tenant_id(), "user2@contoso.com", options)).await.unwrap();
    let reject = json!({ "value": format!("reject:{}", other.id) });
    let ask = w.click(ADMIN1, "reject", reject).await;
    assert!(ask["value"].to_string().contains("Input.Text"), "{ask}");
    let empty = w.click(ADMIN1, "reject_confirm", json!({ "value": other.id.to_string(), "reason": " " })).await;
    assert!(empty["value"].to_string().contains("Attention"), "{empty}");
    assert_eq!(w.store.run(&other.id).await.unwrap().state, RunState::AwaitingApproval);
    let done = w.click(ADMIN1, "reject_confirm", json!({ "value": other.id.to_string(), "reason": "Wrong person" })).await;
    assert!(done["value"].to_string().contains("Rejected"), "{done}");
    assert_eq!(w.store.run(&other.id).await.unwrap().state, RunState::Rejected);
}

/// A role bound to an Entra group counts once the group's members have been read in the
/// background, never by a directory call on the click's path; the offboarded user, in the
/// same group, still cannot approve their own offboarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_bound_to_entra_groups_count_after_the_background_read() {
    let w = world().await;
    let requester = offboard_core::domain::Actor { platform: "teams".into(), id: REQUESTER.into(), name: "Riley".into(), groups: vec![] };
    let run = w.svc.request(&requester, Request::now(tenant_id(), "user3@contoso.com", Options { disable_sign_in: true, ..Options::default() })).await.unwrap();
    let approve = json!({ "value": format!("approve:{}:{}", run.id, run.plan_hash.0) });

    let before = w.click(GROUP_ADMIN, "approve", approve.clone()).await;
    assert!(before["value"].as_str().unwrap_or_default().contains("no role"), "not read yet: {before}");
    let source = DirectoryGroups { directory: Arc::new(directory(3)), tenant: tenant_id(), groups: vec![VPN_GROUP.into()] };
    assert_eq!(w.app.memberships().refresh(&source).await, offboard_core::chat::memberships::REFRESH);
    // The leaver is in the group too, and is refused as the leaver.
    let own = w.click("00000000-0000-4000-8000-000000000003", "approve", approve.clone()).await;
    assert_eq!(own["type"], "application/vnd.microsoft.activity.message", "{own}");
    assert!(own["value"].as_str().unwrap().contains("your own offboarding"), "{own}");
    let after = w.click(GROUP_ADMIN, "approve", approve).await;
    assert_eq!(after["type"], "application/vnd.microsoft.card.adaptive", "counted: {after}");
    let approvals = w.store.approvals(&run.id).await.unwrap();
    assert_eq!(approvals.iter().map(|a| a.approver.as_str()).collect::<Vec<_>>(), [format!("teams:{GROUP_ADMIN}").as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wizard_is_a_chain_of_dialogs() {
    let w = world().await;
    let asked = w.driver.mention(REQUESTER, "offboard ghost@contoso.com");
    assert_eq!(w.send(&asked).await.status(), 200);
    let card = w.until_messages(1).await[0].activity["attachments"][0]["content"].clone();
    let open = card["actions"][0]["data"].clone();
    assert_eq!(open["msteams"]["type"], "task/fetch");

    let invoke = |name: &str, data: Value| w.activity("invoke", REQUESTER, json!({ "name": name, "value": { "data": data } }));
    let answer = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    // The user field searches the customer tenant's directory as it is typed.
    let typed = w.activity(
        "invoke",
        REQUESTER,
        json!({ "name": "application/search", "value": { "queryText": "ali", "dataset": "offboard.people", "queryOptions": { "skip": 0, "top": 15 } } }),
    );
    let found = answer(w.send(&typed).await).await;
    assert_eq!(found["type"], "application/vnd.microsoft.search.searchResponse", "{found}");
    assert_eq!(found["value"]["results"][0]["value"], "alice@contoso.com", "{found}");
    let stranger = w.activity("invoke", "aad-stranger", json!({ "name": "application/search", "value": { "queryText": "ali", "dataset": "offboard.people" } }));
    assert_eq!(answer(w.send(&stranger).await).await["value"]["results"], json!([]), "no role, no search");
    let mut dialog = answer(w.send(&invoke("task/fetch", open)).await).await;
    assert_eq!(dialog["task"]["type"], "continue", "{dialog}");
    assert!(dialog.to_string().contains("ghost@contoso.com"), "the command's user is filled in");
    // The first page: a user the directory does not have comes back on its field.
    dialog = answer(w.send(&invoke("task/submit", submitted(&dialog, json!({})))).await).await;
    assert!(dialog["task"]["value"]["title"].as_str().unwrap().contains("1 of"), "{dialog}");
    assert!(dialog.to_string().contains("Attention") && dialog.to_string().contains("ghost@contoso.com"), "{dialog}");
    dialog = answer(w.send(&invoke("task/submit", submitted(&dialog, json!({ "user": "alice@contoso.com" })))).await).await;
    assert!(dialog["task"]["value"]["title"].as_str().unwrap().contains("2 of"), "{dialog}");
    let mut guard = 0;
    while dialog["task"]["type"] == "continue" {
        dialog = answer(w.send(&invoke("task/submit", submitted(&dialog, json!({ "reason": "Resigned" })))).await).await;
        assert!(!dialog.to_string().contains("Attention"), "{dialog}");
        guard += 1;
        assert!(guard < 6, "{dialog}");
    }
    assert_eq!(dialog["task"]["type"], "message", "{dialog}");
    assert!(dialog["task"]["value"].as_str().unwrap().contains("Looking up alice@contoso.com"), "{dialog}");
    let said = w.until_messages(2).await[1].activity["text"].as_str().unwrap().to_string();
    assert!(said.contains("Alice Example") && said.contains("posted for approval"), "{said}");
    let run = offboard_core::domain::RunId::parse(said.split('`').nth(1).unwrap()).unwrap();
    let rec = w.store.run(&run).await.unwrap();
    assert_eq!(rec.requester, format!("teams:{REQUESTER}"));
    assert_eq!(rec.origin.map(|o| (o.platform, o.conversation)), Some(("teams".to_string(), Some(CHANNEL.to_string()))));
}

/// The message extension's action opens the wizard's dialog at once. Started on a message,
/// the first address the message names is the user; its pages are submitted as
/// `composeExtension/submitAction` and end as the command's wizard does.
#[tokio::test]
async fn the_message_extension_opens_the_wizard_with_the_messages_address() {
    let w = world().await;
    let hr = "<p>From HR: <a href=\"mailto:alice@contoso.com\">alice@contoso.com</a> leaves on Friday.</p>";
    let fetch = |from: &str, command: &str, context: &str| {
        w.activity(
            "invoke",
            from,
            json!({ "name": "composeExtension/fetchTask", "value": { "commandId": command, "commandContext": context, "messagePayload": { "body": { "contentType": "html", "content": hr } } } }),
        )
    };
    let answer = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let user_field = |dialog: &Value| {
        let body = dialog["task"]["value"]["card"]["content"]["body"].as_array().cloned().unwrap_or_default();
        body.iter().find(|b| b["id"] == "user").map(|b| b["value"].clone()).unwrap_or(Value::Null)
    };

    let from_compose = answer(w.send(&fetch(REQUESTER, "offboard", "compose")).await).await;
    assert_eq!(from_compose["task"]["type"], "continue", "{from_compose}");
    assert!(from_compose["task"]["value"]["title"].as_str().unwrap().contains("1 of"), "{from_compose}");
    assert!(user_field(&from_compose).as_str().unwrap_or_default().is_empty(), "nothing to fill from the compose box: {from_compose}");
    let refused = answer(w.send(&fetch("aad-stranger", "offboard", "message")).await).await;
    assert_eq!(refused["task"]["type"], "message");
    assert!(refused["task"]["value"].as_str().unwrap().contains("no role"), "{refused}");
    let unknown = answer(w.send(&fetch(REQUESTER, "something-else", "message")).await).await;
    assert!(unknown["task"]["value"].as_str().unwrap().contains("not one of Offboard's"), "{unknown}");

    let mut dialog = answer(w.send(&fetch(REQUESTER, "offboard", "message")).await).await;
    assert_eq!(user_field(&dialog), "alice@contoso.com", "{dialog}");
    let mut guard = 0;
    while dialog["task"]["type"] == "continue" {
        let data = submitted(&dialog, json!({ "reason": "Resigned" }));
        dialog = answer(
            w.send(&w.activity("invoke", REQUESTER, json!({ "name": "composeExtension/submitAction", "value": { "commandId": "offboard", "data": data } })))
                .await,
        )
        .await;
        assert!(!dialog.to_string().contains("Attention"), "{dialog}");
        guard += 1;
        assert!(guard < 6, "{dialog}");
    }
    assert!(dialog["task"]["value"].as_str().unwrap().contains("Looking up alice@contoso.com"), "{dialog}");
    let said = w.until_messages(1).await[0].activity["text"].as_str().unwrap().to_string();
    assert!(said.contains("Alice Example") && said.contains("posted for approval"), "{said}");
}

#[test]
fn the_first_address_a_message_names_is_found_in_its_markup() {
    use offboard_teams::server::address_in;
    for (html, found) in [
        ("<p>alice@contoso.com leaves</p>", Some("alice@contoso.com")),
        ("<p>Leaver:&nbsp;<b>bob.o'neil@contoso.com</b>.</p>", Some("bob.o'neil@contoso.com")),
        ("<a href=\"mailto:carol@contoso.com\">carol@contoso.com</a>", Some("carol@contoso.com")),
        ("<a href=\"mailto:carol@contoso.com\">Carol</a>", None),
        ("(dave@contoso.com), erin@contoso.com", Some("dave@contoso.com")),
        ("<p>Nobody is leaving @ all</p>", None),
        ("", None),
    ] {
        assert_eq!(address_in(html).as_deref(), found, "{html}");
    }
}
