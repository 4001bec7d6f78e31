//! `offboard demo` on a fresh directory: exits 0 and shows the plan, the refusals, every
//! step's update and the verified report.

use std::process::Command;

#[test]
fn the_demo_runs_the_whole_loop_and_verifies_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_offboard")).current_dir(dir.path()).arg("demo").output().expect("run offboard demo");
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    for needle in [
        "/offboard alice.able@contoso.com",
        "the plan is posted for approval",
        "[ Approve ]  [ Reject… ]",
        "only Sam Stone (auditor) sees: Not approved: your role (viewer)",
        "Not approved: you requested this offboarding",
        "✅ Disable sign-in",
        "✅ Remove licences",
        "ended: completed",
        "VALID: report for run",
    ] {
        assert!(said.contains(needle), "missing {needle:?} in:\n{said}");
    }
    let reports: Vec<_> = std::fs::read_dir(dir.path().join("offboard-demo/reports")).unwrap().collect();
    assert_eq!(reports.len(), 1);
}
