//! The configuration as an admin meets it on the command line: a file that does not load
//! stops every command before anything is created, the commands that only read records do
//! without the secrets, secrets come from the environment by the tenant's key, and the
//! errors say what to fix once.

use std::path::Path;
use std::process::{Command, Output};

use offboard_core::request::Options;
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::finished_run;

/// The binary in `cwd`, with no `OFFBOARD_*` variable but those given.
fn offboard_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_offboard"));
    c.current_dir(cwd).args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OFFBOARD")) {
        c.env_remove(k);
    }
    c.envs(env.iter().copied()).output().expect("run offboard")
}

fn said(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    names.sort();
    names
}

const TENANT: &str =
    "[[tenants]]\nkey = \"contoso.com\"\ndirectory_id = \"6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b\"\nclient_id = \"9b1f4c3e-2d5a-4f6b-8c7d-1e2f3a4b5c6d\"\n";

#[test]
fn a_configuration_that_does_not_load_stops_every_command_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.toml"), "database_url = \"sqlite://offboard.db\"\n[workers]\nconcurency = 4\n").unwrap();
    let before = listing(dir.path());
    for args in [
        vec!["--config", "broken.toml", "runs", "list"],
        vec!["--config", "broken.toml", "audit", "verify"],
        vec!["--config", "broken.toml", "keys", "show"],
        vec!["--config", "broken.toml", "report", "ob-0000000000"],
        vec!["--config", "broken.toml", "migrate"],
    ] {
        let out = offboard_in(dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", said(&out));
        assert!(said(&out).contains("`workers.concurency`"), "{args:?} names the key: {}", said(&out));
        assert_eq!(said(&out).trim().lines().count(), 1, "{}", said(&out));
    }
    assert_eq!(listing(dir.path()), before, "no database, key or report directory was created");

    // An empty file, and a database whose directory does not exist.
    std::fs::write(dir.path().join("empty.toml"), "# nothing yet\n").unwrap();
    let out = offboard_in(dir.path(), &["--config", "empty.toml", "config", "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(said(&out).contains("empty.toml is empty"), "{}", said(&out));
    std::fs::write(dir.path().join("nodir.toml"), "database_url = \"sqlite:///var/lib/offboard-missing/offboard.db\"\n").unwrap();
    let out = offboard_in(dir.path(), &["--config", "nodir.toml", "config", "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(said(&out).contains("`database_url`: the directory /var/lib/offboard-missing does not exist"), "{}", said(&out));
}

#[test]
fn a_missing_database_directory_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = offboard_in(dir.path(), &["--database-url", "sqlite:///var/lib/offboard-missing/x.db", "runs", "list"], &[]);
    assert!(!out.status.success());
    let text = said(&out);
    assert!(text.contains("the database directory /var/lib/offboard-missing does not exist"), "{text}");
    assert!(!text.contains("code: 14"), "{text}");
    assert_eq!(text.trim().lines().count(), 1, "{text}");
}

#[tokio::test]
async fn reading_records_needs_no_secret_and_uses_the_configured_key() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let run = finished_run(&store, "alice@contoso.com", Options { disable_sign_in: true, revoke_sessions: true, ..Options::default() }).await;
    store.close().await;
    let dir = tempfile::tempdir().unwrap();
    // The service's file: Slack and the tenant's secret live in the service's environment,
    // not here.
    let config = format!(
        "database_url = \"{}\"\nsigning_key = \"{}\"\nreports_dir = \"{}\"\n{TENANT}\n[slack]\napprovals_channel = \"C0APPROVALS\"\n",
        db.url,
        dir.path().join("signing.key").display(),
        dir.path().join("reports").display()
    );
    std::fs::write(dir.path().join("offboard.toml"), config).unwrap();
    let made = offboard_in(dir.path(), &["--config", "offboard.toml", "report", run.id.as_str()], &[]);
    assert!(made.status.success(), "{}", said(&made));
    let pdf = said(&made).trim().to_string();
    let checked = offboard_in(dir.path(), &["--config", "offboard.toml", "verify", &pdf], &[]);
    assert_eq!(checked.status.code(), Some(0), "the configured key, not the default: {}", said(&checked));
    assert!(said(&checked).starts_with("VALID"), "{}", said(&checked));
    let listed = offboard_in(dir.path(), &["--config", "offboard.toml", "runs", "list"], &[]);
    assert!(listed.status.success() && said(&listed).contains(run.id.as_str()), "{}", said(&listed));

    // The commands that act need them, and say where they come from.
    let check = offboard_in(dir.path(), &["--config", "offboard.toml", "config", "check"], &[]);
    assert_eq!(check.status.code(), Some(1));
    assert!(said(&check).contains("OFFBOARD__TENANTS__CONTOSO_COM__CLIENT_SECRET"), "{}", said(&check));
    db.cleanup().await;
}

#[test]
fn every_secret_can_come_from_the_environment_by_its_entrys_name() {
    let dir = tempfile::tempdir().unwrap();
    let hook = "[[notify]]\nname = \"ops-hook\"\nkind = \"webhook\"\nurl = \"https://hooks.example.com/x\"\n";
    std::fs::write(
        dir.path().join("offboard.toml"),
        format!("database_url = \"sqlite::memory:\"\n{TENANT}\n{hook}\n[slack]\napprovals_channel = \"C0APPROVALS\"\n"),
    )
    .unwrap();
    let env = [
        ("OFFBOARD__TENANTS__CONTOSO_COM__CLIENT_SECRET", "Tenant~Secret-1"),
        ("OFFBOARD__NOTIFY__OPS_HOOK__SECRET", "whsec-from-env"),
        ("OFFBOARD__SLACK__SIGNING_SECRET", "sig-from-env"),
        ("OFFBOARD__SLACK__BOT_TOKEN", "xoxb-from-env"),
    ];
    let out = offboard_in(dir.path(), &["config", "check"], &env);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("tenant     contoso.com") && said(&out).contains("client secret"), "{}", said(&out));
    for (_, secret) in env {
        assert!(!said(&out).contains(secret), "no secret is printed: {}", said(&out));
    }
    // A name that matches no entry says which names there are.
    let wrong = [("OFFBOARD__TENANTS__FABRIKAM_COM__CLIENT_SECRET", "x")];
    let out = offboard_in(dir.path(), &["config", "check"], &wrong);
    assert_eq!(out.status.code(), Some(1));
    assert!(said(&out).contains("no tenant whose key reads as `FABRIKAM_COM`; configured: contoso.com (CONTOSO_COM)"), "{}", said(&out));
}
