//! The interactions endpoint over real HTTP, with interactions signed as Discord signs them
//! and a local Discord receiving the follow-ups and the command registration: forged,
//! altered, stale and replayed interactions do nothing; `/offboard` opens the wizard as
//! modals chained by "Continue" buttons, with a field error shown and corrected; the result
//! follows on the interaction's token.

use std::sync::Arc;
use std::time::Duration;

use offboard_core::chat::relay::Routes;
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::domain::Role;
use offboard_core::policy::{Access, Principal, RoleBinding};
use offboard_core::request::Presets;
use offboard_core::secret::Secret;
use offboard_core::service::{Offboarding, Tenant};
use offboard_core::store::Store;
use offboard_discord::api::{ApiError, DiscordApi};
use offboard_discord::fake::{Driver, FakeDiscord, command_problems, submitted};
use offboard_discord::server::{DiscordApp, INTERACTIONS_PATH};
use offboard_discord::verify::{PublicKey, Verifier};
use offboard_discord::{commands, views};
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{directory, tenant_id};
use serde_json::{Value, json};

const APP_ID: &str = "1234567890123456789";
const GUILD: &str = "1100000000000000001";
const CHANNEL: &str = "1100000000000000002";
const BOT_TOKEN: &str = "discord-bot-token";
const REQUESTER: &str = "2100000000000000001";
const ADMIN_ROLE: &str = "3100000000000000001";
const STRANGER: &str = "2100000000000000009";

struct World {
    _db: TestDb,
    store: Store,
    svc: Arc<Offboarding>,
    relay: offboard_core::chat::relay::Relay,
    discord: FakeDiscord,
    driver: Driver,
}

async fn world() -> World {
    let discord = FakeDiscord::start(BOT_TOKEN).await;
    let db = TestDb::sqlite();
    let store = db.store().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let bind = |principal, role| RoleBinding { principal, role, tenants: None };
    let access = Access {
        bindings: vec![
            bind(Principal::User { platform: "discord".into(), id: REQUESTER.into() }, Role::Manager),
            bind(Principal::Group { platform: "discord".into(), id: ADMIN_ROLE.into() }, Role::Admin),
        ],
        people: vec![],
    };
    let tenant = Tenant { id: tenant_id(), name: "Contoso".into(), domains: vec!["contoso.com".into()], policy: Default::default() };
    let svc = Arc::new(Offboarding::new(store.clone(), Arc::new(directory(3)), clock.clone(), access, vec![tenant], Presets::default()));
    let api = Arc::new(DiscordApi::new(discord.url(), APP_ID, Secret::new(BOT_TOKEN)));
    discord.add_channel(CHANNEL);
    let templates = Arc::new(offboard_core::templates::Templates::load(None, &[]).unwrap());
    let surface = Arc::new(offboard_discord::surface::DiscordSurface::new(api.clone()));
    let relay = offboard_core::chat::relay::Relay::new(store.clone(), surface, "discord", Routes::single("discord", CHANNEL), None, templates, clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{INTERACTIONS_PATH}", listener.local_addr().unwrap());
    let driver = Driver::new(url, discord.clone(), APP_ID, GUILD, CHANNEL);
    let verifier = Verifier::new(PublicKey::parse(&driver.public_key()).unwrap(), clock.clone());
    let app = DiscordApp::new(svc.clone(), Arc::new(directory(3)), Routes::single("discord", CHANNEL), verifier, api, clock);
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    World { _db: db, store, svc, relay, discord, driver }
}

fn has_field(modal: &Value, id: &str) -> bool {
    modal["data"]["components"].as_array().into_iter().flatten().any(|l| l["component"]["custom_id"] == id)
}

fn command(user: &str) -> Value {
    json!({ "name": "offboard", "type": 1, "options": [{ "name": "user", "type": 3, "value": user }] })
}

#[tokio::test]
async fn forged_altered_stale_and_replayed_interactions_do_nothing() {
    let w = world().await;
    let ping = serde_json::to_vec(&json!({ "id": "1", "type": 1, "application_id": APP_ID, "token": "t", "version": 1 })).unwrap();
    let now = chrono::Utc::now().timestamp();
    let (sig, ts) = w.driver.sign(&ping, now);
    let pong = w.driver.post_raw(&ping, Some(&sig), Some(&ts)).await;
    assert_eq!(pong.status(), 200);
    assert_eq!(pong.json::<Value>().await.unwrap(), json!({ "type": 1 }));

    let asked = serde_json::to_vec(&w.driver.interaction(2, REQUESTER, &[], command("alice@contoso.com"))).unwrap();
    let (sig, ts) = w.driver.sign(&asked, now);
    let other = Driver::new("http://unused", w.discord.clone(), APP_ID, GUILD, CHANNEL);
    let (forged, _) = other.sign(&asked, now);
    let mut altered = asked.clone();
    let at = altered.windows(5).position(|x| x == b"alice").unwrap();
    altered[at] = b'A';
    let stale = chrono::Utc::now().timestamp() - 600;
    let (stale_sig, stale_ts) = w.driver.sign(&asked, stale);
    for (what, body, sig, ts) in [
        ("no signature", &asked, None, Some(ts.as_str())),
        ("no timestamp", &asked, Some(sig.as_str()), None),
        ("another key's signature", &asked, Some(forged.as_str()), Some(ts.as_str())),
        ("an altered body", &altered, Some(sig.as_str()), Some(ts.as_str())),
        ("an altered timestamp", &asked, Some(sig.as_str()), Some(&*(now + 1).to_string())),
        ("a signature ten minutes old", &asked, Some(stale_sig.as_str()), Some(stale_ts.as_str())),
        ("not hex", &asked, Some("zz"), Some(ts.as_str())),
    ] {
        assert_eq!(w.driver.post_raw(body, sig, ts).await.status(), 401, "{what}");
    }
    // Nothing was read: no delivery recorded, so the genuine one is still first.
    let first = w.driver.post_raw(&asked, Some(&sig), Some(&ts)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.json::<Value>().await.unwrap()["type"], views::OPEN_MODAL);
    assert_eq!(w.driver.post_raw(&asked, Some(&sig), Some(&ts)).await.status(), 401, "a replay");
}

#[tokio::test]
async fn the_wizard_runs_as_modals_chained_by_continue_buttons() {
    let w = world().await;
    // Someone without a role is refused before any modal, and audited.
    let refused = w.driver.answer(&w.driver.interaction(2, STRANGER, &[], command("alice@contoso.com"))).await;
    assert_eq!(refused["type"], views::MESSAGE);
    assert_eq!(refused["data"]["flags"], views::EPHEMERAL);
    assert!(refused["data"]["content"].as_str().unwrap().contains("no role"), "{refused}");
    let audit = w.store.audit_entries(0, 100).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "request.refused" && e.actor == format!("discord:{STRANGER}")), "{audit:?}");

    // The first answer is the first page's modal, the user filled in.
    let mut modal = w.driver.answer(&w.driver.interaction(2, REQUESTER, &[], command("alice@contoso.com"))).await;
    assert_eq!(modal["type"], views::OPEN_MODAL);
    assert!(modal.to_string().contains("alice@contoso.com"), "{modal}");
    let pages = offboard_core::chat::wizard(&[], &[]).len();
    let mut errors = 0;
    let mut guard = 0;
    let answer = loop {
        guard += 1;
        assert!(guard < 3 * pages, "the wizard did not end: {modal}");
        let has = |id: &str| has_field(&modal, id);
        let changes = if has("forward_to") && errors == 0 {
            json!({ "forward_to": "not an address" })
        } else if has("forward_to") {
            json!({ "forward_to": "" })
        } else if has("reason") {
            json!({ "reason": "Resigned" })
        } else {
            json!({})
        };
        let data = submitted(&modal, changes);
        let said = w.driver.answer(&w.driver.interaction(5, REQUESTER, &[], data)).await;
        assert_eq!(said["data"]["flags"], views::EPHEMERAL, "{said}");
        let button = said["data"]["components"][0]["components"][0].clone();
        if button.is_null() {
            break said;
        }
        if said["data"]["content"].as_str().unwrap().contains("needs correcting") {
            errors += 1;
            assert!(said["data"]["content"].as_str().unwrap().contains("⚠️"), "{said}");
        }
        // The button opens the next page, or the same one again with the answers kept.
        let click = w.driver.interaction(3, REQUESTER, &[], json!({ "custom_id": button["custom_id"], "component_type": 2 }));
        modal = w.driver.answer(&click).await;
        assert_eq!(modal["type"], views::OPEN_MODAL, "{modal}");
        if errors == 1 && has_field(&modal, "forward_to") {
            assert!(modal.to_string().contains("not an address"), "the answers are kept: {modal}");
        }
    };
    assert_eq!(errors, 1, "one field error was shown and corrected");
    assert!(answer["data"]["content"].as_str().unwrap().starts_with("Looking up alice@contoso.com"), "{answer}");

    // The result follows on the interaction's token.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let followup = loop {
        if let Some(c) = w.discord.calls().into_iter().find(|c| c.path.starts_with(&format!("/webhooks/{APP_ID}/")) && c.status == 200) {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "no follow-up: {:?}", w.discord.calls());
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let content = followup.body["content"].as_str().unwrap();
    assert!(content.contains("is posted for approval in <#1100000000000000002>"), "{content}");
    let run = offboard_core::domain::RunId::parse(content.split('`').nth(1).unwrap()).unwrap();
    let rec = w.store.run(&run).await.unwrap();
    assert_eq!(rec.requester, format!("discord:{REQUESTER}"));
    assert_eq!(rec.target_upn, "alice@contoso.com");
}

#[tokio::test]
async fn the_user_option_is_completed_and_runs_are_managed_with_offboards() {
    let w = world().await;
    let typing = json!({ "name": "offboard", "type": 1, "options": [{ "name": "user", "type": 3, "value": "ali", "focused": true }] });
    let found = w.driver.answer(&w.driver.interaction(4, REQUESTER, &[], typing)).await;
    assert_eq!(found["type"], views::AUTOCOMPLETE);
    assert_eq!(found["data"]["choices"][0]["value"], "alice@contoso.com", "{found}");

    let manage = |sub: &str, options: Value| json!({ "name": "offboards", "type": 1, "options": [{ "name": sub, "type": 1, "options": options }] });
    let help = w.driver.answer(&w.driver.interaction(2, REQUESTER, &[], manage("help", json!([])))).await;
    assert!(help["data"]["content"].as_str().unwrap().contains("/offboards status run:ob-…"), "{help}");
    let list = w.driver.answer(&w.driver.interaction(2, "2100000000000000002", &[ADMIN_ROLE], manage("list", json!([])))).await;
    assert_eq!(list["data"]["content"], "No runs yet.", "an admin by role id may list");
    let status = w.driver.answer(&w.driver.interaction(2, REQUESTER, &[], manage("status", json!([{ "name": "run", "value": "ob-7k2m9q4x1p" }])))).await;
    assert_eq!(status["data"]["flags"], views::EPHEMERAL);
    assert!(status["data"]["content"].as_str().unwrap().contains("ob"), "{status}");
}

#[tokio::test]
async fn commands_are_registered_from_the_definitions_the_endpoint_reads() {
    let w = world().await;
    let api = DiscordApi::new(w.discord.url(), APP_ID, Secret::new(BOT_TOKEN));
    let defs = commands::definitions(&["standard-leaver".into(), "none".into()]);
    for d in &defs {
        assert!(command_problems(d).is_empty(), "{:?}", command_problems(d));
    }
    // The fake's checks refuse what Discord refuses.
    let mut broken = defs[0].clone();
    broken["name"] = json!("Offboard Now");
    assert_eq!(command_problems(&broken).len(), 1);
    assert!(matches!(api.register(Some(GUILD), &[broken]).await, Err(ApiError::Refused { status: 400, .. })));

    // A 429 is waited out and the overwrite still lands.
    w.discord.throttle_next("/guilds/", 0.3);
    let started = std::time::Instant::now();
    assert_eq!(api.register(Some(GUILD), &defs).await.unwrap(), 2);
    assert!(started.elapsed() >= Duration::from_millis(300), "no call before the wait was over");
    let names: Vec<Value> = w.discord.commands(Some(GUILD)).iter().map(|c| c["name"].clone()).collect();
    assert_eq!(names, [json!(commands::START), json!(commands::MANAGE)]);
    let wrong = DiscordApi::new(w.discord.url(), APP_ID, Secret::new("not-the-token"));
    assert!(matches!(wrong.register(None, &defs).await, Err(ApiError::Refused { status: 401, .. })));

    // A follow-up on a token older than 15 minutes is refused, as Discord does.
    w.discord.issue_token("old-token", Duration::from_secs(16 * 60));
    assert!(matches!(api.followup("old-token", &json!({ "content": "late" })).await, Err(ApiError::Refused { status: 404, .. })));
    let posted: String = w.discord.calls().iter().map(|c| c.body.to_string()).collect();
    assert!(!posted.contains(BOT_TOKEN), "the bot token is never in a body");
}

/// Approve and Reject on the approval message: decided by core from the member's id and
/// role ids; refusals only to the clicker, and audited; a decision updates the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_decided_by_core_from_member_ids_and_role_ids() {
    let w = world().await;
    let requester = offboard_core::domain::Actor { platform: "discord".into(), id: REQUESTER.into(), name: "Riley".into(), groups: vec![] };
    let options = offboard_core::request::Options { disable_sign_in: true, revoke_sessions: true, ..Default::default() };
    let run = w.svc.request(&requester, offboard_core::request::Request::now(tenant_id(), "alice@contoso.com", options.clone())).await.unwrap();
    w.relay.drain().await.unwrap();
    let posted = w.discord.messages();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].channel, CHANNEL);
    let approve = posted[0].body["components"][0]["components"][0]["custom_id"].as_str().unwrap().to_string();
    let click = |who: &str, roles: &[&str], id: &str| w.driver.interaction(3, who, roles, json!({ "custom_id": id, "component_type": 2 }));

    let outsider = w.driver.answer(&click(STRANGER, &[], &approve)).await;
    assert_eq!((outsider["type"].as_u64(), outsider["data"]["flags"].as_u64()), (Some(4), Some(64)), "{outsider}");
    assert!(outsider["data"]["content"].as_str().unwrap().contains("no role"), "{outsider}");
    // A role named like the bound one is not it: only role ids count.
    let lookalike = w.driver.answer(&click(STRANGER, &["Offboard admins"], &approve)).await;
    assert!(lookalike["data"]["content"].as_str().unwrap().contains("no role"), "{lookalike}");
    let own = w.driver.answer(&click(REQUESTER, &[ADMIN_ROLE], &approve)).await;
    assert!(own["data"]["content"].as_str().unwrap().starts_with("Not approved"), "{own}");
    let refusals = w.store.audit_entries(0, 200).await.unwrap().into_iter().filter(|e| e.action == "approval.refused").count();
    assert_eq!(refusals, 3);
    assert!(w.store.approvals(&run.id).await.unwrap().is_empty());

    let first = w.driver.answer(&click("2100000000000000003", &[ADMIN_ROLE], &approve)).await;
    assert_eq!(first["type"], views::UPDATE, "{first}");
    assert_eq!(run.approvals_needed, 2, "alice holds admin roles: a high-risk plan");
    {
        let again = w.driver.answer(&click("2100000000000000003", &[ADMIN_ROLE], &approve)).await;
        assert_eq!(again["data"]["flags"], views::EPHEMERAL, "the same approver twice: {again}");
        let second = w.driver.answer(&click("2100000000000000004", &[ADMIN_ROLE], &approve)).await;
        assert!(second["data"].to_string().contains("Approved"), "{second}");
        assert_eq!(second["data"]["components"], json!([]), "no buttons once decided");
    }
    assert_eq!(w.store.run(&run.id).await.unwrap().state, offboard_core::run::RunState::Approved);
    w.relay.drain().await.unwrap();
    let root = w.discord.messages().into_iter().find(|m| m.channel == CHANNEL).unwrap();
    assert!(root.edits >= 1 && root.body.to_string().contains("Approved"), "the message shows the decision to everyone");

    // Reject asks for a reason in a modal, then updates the message.
    let other = w.svc.request(&requester, offboard_core::request::Request::now(tenant_id(), "user2@contoso.com", options)).await.unwrap();
    let ask = w.driver.answer(&click("2100000000000000003", &[ADMIN_ROLE], &format!("reject:{}", other.id))).await;
    assert_eq!(ask["type"], views::OPEN_MODAL, "{ask}");
    let empty = w.driver.answer(&w.driver.interaction(5, "2100000000000000003", &[ADMIN_ROLE], submitted(&ask, json!({ "reason": " " })))).await;
    assert_eq!(empty["data"]["flags"], views::EPHEMERAL, "{empty}");
    assert_eq!(w.store.run(&other.id).await.unwrap().state, offboard_core::run::RunState::AwaitingApproval);
    let done = w.driver.answer(&w.driver.interaction(5, "2100000000000000003", &[ADMIN_ROLE], submitted(&ask, json!({ "reason": "Wrong person" })))).await;
    assert_eq!(done["type"], views::UPDATE, "{done}");
    assert!(done["data"].to_string().contains("Rejected"), "{done}");
    assert_eq!(w.store.run(&other.id).await.unwrap().state, offboard_core::run::RunState::Rejected);
}

/// Modals submitted in the older shape (action rows of text inputs) are read too.
#[tokio::test]
async fn older_action_row_submissions_are_read() {
    let w = world().await;
    let modal = w.driver.answer(&w.driver.interaction(2, REQUESTER, &[], command("alice@contoso.com"))).await;
    let custom_id = modal["data"]["custom_id"].clone();
    let rows = json!({ "custom_id": custom_id, "components": [
        { "type": 1, "components": [{ "type": 4, "custom_id": "user", "value": "alice@contoso.com" }] },
        { "type": 1, "components": [{ "type": 3, "custom_id": "preset", "values": ["standard-leaver"] }] },
    ] });
    let said = w.driver.answer(&w.driver.interaction(5, REQUESTER, &[], rows)).await;
    assert!(said["data"]["content"].as_str().unwrap().contains("Page 1 of"), "{said}");
    assert_eq!(said["data"]["components"][0]["components"][0]["label"], "Continue to page 2", "{said}");
}
