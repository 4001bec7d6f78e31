//! The configuration as operators write it: what loads, what each mistake says.

use super::*;

#[test]
fn a_typo_on_a_secret_line_names_the_place_not_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offboard.toml");
    std::fs::write(&path, "database_url = \"sqlite::memory:\"\n[[tenants]]\nkey = \"contoso.com\"\nclient_secret = \"Sup3r~secret-value\n").unwrap();
    let e = super::load(Some(&path), Vec::<(String, String)>::new()).unwrap_err().to_string();
    assert!(!e.contains("Sup3r"), "{e}");
    assert!(e.contains("line 4"), "{e}");
}

const GOOD: &str = r#"
database_url = "sqlite://x.db"

[[tenants]]
key = "contoso.com"
directory_id = "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
client_id = "9b1f4c3e-2d5a-4f6b-8c7d-1e2f3a4b5c6d"
client_secret = "s3cr3t~value"

[[roles]]
platform = "slack"
user = "U0ADA"
role = "admin"

[slack]
signing_secret = "abc"
bot_token = "xoxb-1"
approvals_channel = "C0APPROVALS"

[[notify]]
name = "ops"
kind = "webhook"
url = "https://hooks.example.com/x"
secret = "whsec"
format = "teams"
"#;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    f
}

#[test]
fn a_good_file_loads_and_env_overrides_it() {
    let f = file(GOOD);
    let env = vec![
        ("OFFBOARD__SLACK__SIGNING_SECRET".to_string(), "from-env".to_string()),
        ("OFFBOARD__WORKERS__CONCURRENCY".to_string(), "3".to_string()),
        ("PATH".to_string(), "/bin".to_string()),
    ];
    let c = load(Some(f.path()), env).unwrap();
    assert_eq!(c.slack.as_ref().unwrap().signing_secret.as_ref().unwrap().expose(), "from-env");
    assert_eq!(c.workers.concurrency, 3);
    assert_eq!(c.tenants()[0].policy.admins, AdminTargets::HighRisk);
    assert_eq!(c.notify_targets()[0].name, "ops");
    let summary = c.summary();
    assert!(!summary.contains("s3cr3t") && !summary.contains("from-env") && !summary.contains("xoxb-1"), "{summary}");
    assert!(!format!("{c:?}").contains("s3cr3t"), "Debug hides secrets");
}

#[test]
fn configured_presets_apply_to_their_tenants() {
    let text = format!("{GOOD}\n[[presets]]\nname = \"contractor\"\n[presets.options]\ndisable_sign_in = true\nremove_groups = true\n");
    let c = load(Some(file(&text).path()), Vec::new()).unwrap();
    let presets = c.presets(offboard_core::request::OutOfOffice { internal: "in".into(), external: "out".into() });
    let contractor = presets.get(&TenantId::parse("contoso.com").unwrap(), &offboard_core::domain::PresetName::parse("contractor").unwrap()).unwrap();
    assert!(contractor.disable_sign_in && contractor.remove_groups && !contractor.reset_password);
    let bad = format!("{GOOD}\n[[presets]]\nname = \"x\"\ntenants = [\"fabrikam.com\"]\n[presets.options]\n");
    assert!(load(Some(file(&bad).path()), Vec::new()).unwrap_err().to_string().contains("`presets[0].tenants`"));
    let typo = format!("{GOOD}\n[[presets]]\nname = \"y\"\n[presets.options]\ndisable_signin = true\n");
    assert!(load(Some(file(&typo).path()), Vec::new()).unwrap_err().to_string().contains("`presets[0].options"), "unknown options are refused");
}

#[test]
fn the_example_configuration_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../offboard.example.toml");
    let env = vec![
        // The example's /var/lib/offboard exists where it is deployed, not here.
        ("OFFBOARD__DATABASE_URL".to_string(), "sqlite::memory:".to_string()),
        ("OFFBOARD__SLACK__SIGNING_SECRET".to_string(), "s".to_string()),
        ("OFFBOARD__SLACK__BOT_TOKEN".to_string(), "xoxb-t".to_string()),
    ];
    let c = load(Some(Path::new(example)), env).unwrap();
    assert_eq!(c.tenants().len(), 1);
    assert_eq!(c.access().bindings.len(), 3);
    let without_secrets = vec![("OFFBOARD__DATABASE_URL".to_string(), "sqlite::memory:".to_string())];
    let e = load(Some(Path::new(example)), without_secrets.clone()).unwrap_err().to_string();
    assert!(e.contains("`slack.signing_secret`") && e.contains("OFFBOARD__SLACK__SIGNING_SECRET"), "{e}");
    assert!(load_for(Some(Path::new(example)), without_secrets, Secrets::NotNeeded).is_ok(), "reading records needs no secret");
}

const TEAMS: &str = "[teams]\napp_id = \"8f0c1a2b\"\napp_password = \"p\"\ntenant_id = \"0b1c2d3e\"\napprovals_channel = \"19:it@thread.tacv2\"\n";

/// `[teams]`: the bot's token URL from the login and its tenant, the approvals channel
/// as Teams' default route, and the public cloud's addresses unless said otherwise.
#[test]
fn teams_loads_with_the_public_cloud_by_default() {
    let c = load(Some(file(&format!("{GOOD}\n{TEAMS}")).path()), Vec::new()).unwrap();
    let t = c.teams.as_ref().unwrap();
    assert_eq!(t.bot().unwrap().token_url, "https://login.microsoftonline.com/0b1c2d3e/oauth2/v2.0/token");
    assert_eq!(t.openid_metadata, "https://login.botframework.com/v1/.well-known/openidconfiguration");
    let mut run = offboard_core::testing::finished_run().0;
    run.origin = Some(offboard_core::store::Origin { platform: "teams".into(), conversation: None });
    assert_eq!(c.routes().destination("teams", &run).as_deref(), Some("19:it@thread.tacv2"));
    assert!(!c.summary().contains("app_password") && !format!("{c:?}").contains("\"p\""));
}

/// A role bound to an Entra group is read from the bot's home tenant: the configured tenant
/// whose directory is `teams.tenant_id`; without one, the binding is refused by its key.
#[test]
fn teams_groups_are_read_from_the_bots_home_tenant() {
    let group = "\n[[roles]]\nplatform = \"teams\"\ngroup = \"7a1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b\"\nrole = \"admin\"\n";
    let elsewhere = format!("{GOOD}{group}\n{TEAMS}");
    let e = load(Some(file(&elsewhere).path()), Vec::new()).unwrap_err().to_string();
    assert!(e.contains("`roles[1].group`") && e.contains("0b1c2d3e") && e.contains("directory_id"), "{e}");
    let home = elsewhere.replace("tenant_id = \"0b1c2d3e\"", "tenant_id = \"6F1C2A7E-3B4D-4E5F-8A9B-0C1D2E3F4A5B\"");
    let c = load(Some(file(&home).path()), Vec::new()).unwrap();
    assert_eq!(c.teams_directory().map(|t| t.to_string()).as_deref(), Some("contoso.com"));
    assert_eq!(c.access().groups_on("teams"), ["7a1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"]);
    let e = load(Some(file(&home.replace("group = \"7a1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b\"", "group = \"IT admins\"")).path()), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("`roles[1].group`") && e.contains("object id"), "{e}");
}

/// Linked people, routes per tenant and platform, and the line manager's part, as the
/// service and the relay receive them.
#[test]
fn people_routes_and_the_line_manager_load() {
    let text = format!(
        "public_url = \"https://offboard.example.com\"\n{}\n[[people]]\nidentities = [\"slack:U0ADA\", \"teams:9b1f4c3e\"]\nupn = \"ada@contoso.com\"\n\n[[routes]]\ntenant = \"contoso.com\"\nplatform = \"slack\"\nchannel = \"C0CONTOSO\"\n",
        GOOD.replace("client_secret = \"s3cr3t~value\"", "client_secret = \"s3cr3t~value\"\npolicy = { line_manager = \"alone\" }")
    );
    let c = load(Some(file(&text).path()), Vec::new()).unwrap();
    assert_eq!(c.public_url.as_deref(), Some("https://offboard.example.com"));
    assert_eq!(c.tenants()[0].policy.line_manager, offboard_core::policy::ManagerApproves::Alone);
    let access = c.access();
    assert_eq!(access.person_of("teams:9b1f4c3e"), access.person_of("slack:U0ADA"));
    assert_eq!(access.identities_for_upn("ADA@contoso.com"), ["slack:U0ADA", "teams:9b1f4c3e"]);
    let run = offboard_core::testing::finished_run().0;
    assert_eq!(c.routes().destination("slack", &run).as_deref(), Some("C0CONTOSO"), "the tenant's route, not the default channel");
}

#[test]
fn the_exchange_pace_is_cautious_unless_raised() {
    let c = load(Some(file(GOOD).path()), Vec::new()).unwrap();
    assert_eq!(c.m365_settings().limits.exchange_per_s, Settings::default().limits.exchange_per_s);
    let raised = load(Some(file(GOOD).path()), vec![("OFFBOARD__MICROSOFT__EXCHANGE_CALLS_PER_SECOND".into(), "60".into())]).unwrap();
    assert_eq!(raised.m365_settings().limits.exchange_per_s, 60.0);
}

#[test]
fn every_mistake_names_its_key() {
    let cases = [
        (GOOD.replace("key = \"contoso.com\"", "key = \"not a domain\""), "tenants[0].key"),
        (GOOD.replace("client_secret = \"s3cr3t~value\"", ""), "tenants[0].client_secret"),
        (GOOD.replace("role = \"admin\"", "role = \"boss\""), "roles[0].role"),
        (GOOD.replace("approvals_channel = \"C0APPROVALS\"", ""), "slack.approvals_channel"),
        (GOOD.replace("format = \"teams\"", "format = \"fax\""), "notify[0].format"),
        (GOOD.replace("[slack]", "[slack]\nsigning_secrett = 1"), "slack"),
        (format!("{GOOD}\nlisten = 3000"), "listen"),
        (format!("{GOOD}\n[microsoft]\nexchange_calls_per_second = 0"), "microsoft.exchange_calls_per_second"),
        (format!("{GOOD}\n[[people]]\nidentities = [\"U0ADA\"]"), "people[0].identities"),
        (format!("{GOOD}\n[[people]]\nidentities = [\"slack:U0ADA\"]\n[[people]]\nidentities = [\"slack:U0ADA\", \"teams:x\"]"), "people[1].identities"),
        (format!("{GOOD}\n[[routes]]\ntenant = \"fabrikam.com\"\nplatform = \"slack\"\nchannel = \"C1\""), "routes[0].tenant"),
        (format!("{GOOD}\n[[routes]]\ntenant = \"contoso.com\"\nplatform = \"fax\"\nchannel = \"C1\""), "routes[0].platform"),
        (format!("public_url = \"ftp://x\"\n{GOOD}"), "public_url"),
        (
            GOOD.replace("client_secret = \"s3cr3t~value\"", "client_secret = \"s3cr3t~value\"\npolicy = { line_manager = \"sometimes\" }"),
            "tenants[0].policy.line_manager",
        ),
    ];
    for (text, key) in cases {
        let e = load(Some(file(&text).path()), Vec::new()).unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}")), "expected the key {key} in: {e}");
    }
    let e = load(Some(file("[[tenants]\nkey = ").path()), Vec::new()).unwrap_err().to_string();
    assert!(e.contains("not valid TOML") && e.contains("line 1"), "{e}");
    let e = load(Some(file(GOOD).path()), vec![("OFFBOARD__WORKERS__CONCURRENCY".into(), "many".into())]).unwrap_err().to_string();
    assert!(e.contains("`workers.concurrency`"), "{e}");
}

const DISCORD: &str = "[discord]\napplication_id = \"1234567890123456789\"\npublic_key = \"67c6bd767ca099e79efac9fcce4d2022a63bf7dea780e7f3d813f694c1597089\"\nbot_token = \"t0k\"\nguild_id = \"1100000000000000001\"\napprovals_channel = \"1100000000000000002\"\n";

/// `[discord]`: ids are Discord's, the public key verifies, the token is a secret and the
/// API is Discord's unless set; approvals go to its channel.
#[test]
fn discord_loads_and_names_each_wrong_key() {
    let c = load(Some(file(&format!("{GOOD}\n{DISCORD}")).path()), Vec::new()).unwrap();
    let d = c.discord.as_ref().unwrap();
    assert_eq!(d.api_url, "https://discord.com/api/v10");
    let mut run = offboard_core::testing::finished_run().0;
    run.origin = Some(offboard_core::store::Origin { platform: "discord".into(), conversation: None });
    assert_eq!(c.routes().destination("discord", &run).as_deref(), Some("1100000000000000002"));
    assert!(!c.summary().contains("t0k") && !format!("{c:?}").contains("t0k"), "the token never prints");
    for (from, to, key) in [
        ("guild_id = \"1100000000000000001\"", "guild_id = \"IT server\"", "`discord.guild_id`"),
        ("approvals_channel = \"1100000000000000002\"", "approvals_channel = \"#it-approvals\"", "`discord.approvals_channel`"),
        ("public_key = \"67c6", "public_key = \"zz67c6", "`discord.public_key`"),
        ("bot_token = \"t0k\"\n", "", "`discord.bot_token`"),
    ] {
        let e = load(Some(file(&format!("{GOOD}\n{}", DISCORD.replace(from, to))).path()), Vec::new()).unwrap_err().to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
}
