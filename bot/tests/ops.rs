//! Requests and cancellations from the command line, decided and audited as `cli:<user>`.

use std::process::Command;
use std::sync::Arc;

use offboard_core::clock::{Clock, SystemClock};
use offboard_core::domain::RunId;
use offboard_core::run::RunState;
use offboard_m365::Settings;
use offboard_m365_sim::{Scenario, SimConfig};
use offboard_testkit::TestDb;

mod common;

fn offboard(config: &std::path::Path, operator: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_offboard")).args(args).arg("--config").arg(config).env("OFFBOARD_OPERATOR", operator).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

/// The account this test runs as, as the operating system names it.
fn me() -> String {
    String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_operator_requests_and_cancels_under_its_own_name() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), SimConfig::default(), clock, Settings::default(), Default::default()).await.unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let me = me();
    let config = common::write_config(dir.path(), &sim, &db.url, &format!("\n[[roles]]\nplatform = \"cli\"\nuser = \"{me}\"\nrole = \"admin\"\n"));
    // The environment cannot choose who the operator is.
    let (code, said) = offboard(&config, "chief-security-officer", &["request", "alice.able@contoso.com", "--preset", "hostile-exit", "--reason", "Left"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("Disable sign-in") && said.contains("awaiting"), "{said}");
    let id = RunId::parse(said.split_whitespace().nth(1).unwrap()).unwrap();

    // An account with no role is refused, whatever the environment claims.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let no_role = common::write_config(&other, &sim, &db.url, "\n[[roles]]\nplatform = \"cli\"\nuser = \"dana\"\nrole = \"admin\"\n");
    let (code, said) = offboard(&no_role, "dana", &["runs", "cancel", id.as_str()]);
    assert_eq!(code, Some(1), "the environment does not make anyone dana: {said}");
    let (code, said) = offboard(&config, "dana", &["runs", "cancel", id.as_str()]);
    assert_eq!(code, Some(0), "{said}");

    let store = db.store().await;
    assert_eq!(store.run(&id).await.unwrap().state, RunState::Cancelled);
    let audit = store.audit_entries(0, 1000).await.unwrap();
    let actor = format!("cli:{me}");
    assert!(audit.iter().any(|e| e.action == "run.requested" && e.actor == actor), "{audit:?}");
    assert!(!audit.iter().any(|e| e.actor == "cli:chief-security-officer" || e.actor == "cli:dana"));
    assert!(audit.iter().any(|e| e.actor == actor && e.action.ends_with("refused")), "the refusal is audited");
    let (code, said) = offboard(&config, "dana", &["request", "nobody@contoso.com"]);
    assert_ne!(code, Some(0));
    assert!(said.contains("no user nobody@contoso.com in contoso.com"), "names the tenant: {said}");
    assert_eq!(said.matches("no user").count(), 1, "said once: {said}");
    // One tenant is not a reason to guess: a domain no tenant has is refused by name.
    let (code, said) = offboard(&config, "dana", &["request", "alice@fabrikam.example"]);
    assert_ne!(code, Some(0));
    assert!(said.contains("no configured tenant has the domain fabrikam.example"), "{said}");
    db.cleanup().await;
}
