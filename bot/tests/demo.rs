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

#[test]
fn the_interactive_demo_takes_commands_and_clicks_from_the_keyboard() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .current_dir(dir.path())
        .args(["demo", "--interactive"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // help, then the default command, then Sam clicks, then Ada rejects with a reason.
    child.stdin.take().unwrap().write_all(b"help\n\ns\nx\nwrong person\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    for needle in [
        "only you see: */offboard* opens the wizard",
        "Not approved: your role (viewer)",
        "By: @Ada Lovelace (IT admin)",
        "Reason (rejecter's words): wrong person",
    ] {
        assert!(said.contains(needle), "missing {needle:?} in:\n{said}");
    }
}

#[test]
fn the_demo_with_no_such_user_says_so_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_offboard")).current_dir(dir.path()).args(["demo", "--user", "nobody@contoso.com"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("no user nobody@contoso.com in contoso.com"), "{said}");
    assert!(!said.contains("timed out"), "{said}");
}

/// The same loop in Teams: the mention, the dialogs, the approval card, the refusals to the
/// clicker only, every step, and the report through its link, verified.
#[test]
fn the_teams_demo_runs_the_whole_loop_and_verifies_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_offboard")).current_dir(dir.path()).args(["demo", "--platform", "teams"]).output().expect("run offboard demo");
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    for needle in [
        "@Offboard offboard alice.able@contoso.com",
        "[ Open the wizard ]",
        "dialog: Offboard · 5 of 5",
        "The plan is posted for approval in #it-approvals",
        "[ Approve ]  [ Reject… ]",
        "only Sam Stone (auditor) sees: Not approved: your role (viewer)",
        "Not approved: you requested this offboarding",
        "✅ Disable sign-in",
        "✅ Remove licences",
        "[ Download ob-",
        "[ Open in Files ]",
        "ended: completed",
        "VALID: report for run",
        "A copy of the same report is in the IT Approvals channel's Files",
    ] {
        assert!(said.contains(needle), "missing {needle:?} in:\n{said}");
    }
    let scripted =
        Command::new(env!("CARGO_BIN_EXE_offboard")).current_dir(dir.path()).args(["demo", "--platform", "teams", "--interactive"]).output().unwrap();
    assert!(!scripted.status.success() && String::from_utf8_lossy(&scripted.stderr).contains("Slack demo"));
}

#[test]
fn the_discord_demo_runs_the_whole_loop_and_verifies_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_offboard")).current_dir(dir.path()).args(["demo", "--platform", "discord"]).output().expect("run offboard demo");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    for needle in [
        "types: /offboard user:alice.able@contoso.com",
        "modal: Offboard · 1 of 5 · Who",
        "[ Continue to page 2 ]",
        "is posted for approval in #it-approvals",
        "[ Approve ]  [ Reject… ]",
        "only Sam Stone (auditor) sees: Not approved: your role (viewer)",
        "Not approved: you requested this offboarding",
        "✅ Disable sign-in",
        "✅ Remove licences",
        ".pdf, ",
        "ended: completed",
        "VALID: report for run",
    ] {
        assert!(said.contains(needle), "missing {needle:?} in:\n{said}");
    }
}
