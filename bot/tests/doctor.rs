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
    assert!(said.contains("tenant contoso.com: signed in; every permission and role the steps need is granted"), "{said}");
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
