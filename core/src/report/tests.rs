use super::*;
use crate::testing;

#[test]
fn a_finished_run_reads_as_the_snapshot() {
    let (run, steps, approvals) = testing::finished_run();
    let head = Checkpoint { seq: 42, hash: "ab".repeat(32), at_ms: 0 };
    let report = Report::build(&run, &steps, &approvals, Some(head), run.finished_at.unwrap());
    insta::assert_snapshot!(report.to_text());
}

#[test]
fn an_incomplete_lockout_is_not_called_effective() {
    let (run, mut steps, approvals) = testing::finished_run();
    let i = steps.iter().position(|s| s.key == StepKind::RevokeSessions.key()).unwrap();
    steps[i].state = StepState::Failed;
    steps[i].outcome = Some(StepOutcome::Failed { error: "Microsoft returned 503".into(), request_id: Some("req-9".into()) });
    let report = Report::build(&run, &steps, &approvals, None, run.finished_at.unwrap());
    assert_eq!(report.effective_by(), None);
    assert!(report.to_text().contains("Not effective"), "{}", report.to_text());
    assert!(report.to_text().contains("Microsoft request ids: req-9"));
    assert_eq!(report.counts.failed, 1);
}
