//! Deliveries to real local receivers: an HTTP server that checks the signature, one that
//! is down and comes up, one that refuses, and an SMTP sink that receives the report.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use offboard_core::audit::AuditEntry;
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_core::request::Options;
use offboard_core::run::RunState;
use offboard_core::secret::Secret;
use offboard_core::store::{RunRecord, Store};
use offboard_notify::{Channel, Format, Notifier, Retry, Smtp, SmtpTls, Target, Webhook};
use offboard_report::{Evidence, ReportKey, Verdict};
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{AlwaysDone, approved_run, service};
use offboard_testkit::smtp::SmtpSink;

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

async fn finished_run(store: &Store) -> RunRecord {
    let run =
        offboard_testkit::fixtures::finished_run(store, "alice@contoso.com", Options { disable_sign_in: true, revoke_sessions: true, ..Options::default() })
            .await;
    assert_eq!(run.state, RunState::Completed);
    run
}

#[derive(Clone, Default)]
struct Received {
    status: Arc<AtomicU16>,
    requests: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

async fn hook(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.requests.lock().unwrap().push((headers, String::from_utf8_lossy(&body).to_string()));
    StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap()
}

async fn receiver_on(listener: tokio::net::TcpListener, status: u16) -> Received {
    let r = Received::default();
    r.status.store(status, Ordering::SeqCst);
    let app = axum::Router::new().route("/hook", post(hook)).with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    r
}

fn webhook_target(addr: SocketAddr, format: Format) -> Target {
    Target {
        name: "ops-hook".into(),
        events: vec!["run.finished".into()],
        channel: Channel::Webhook(Webhook {
            url: Secret::new(format!("http://{addr}/hook")),
            format,
            secret: Secret::new("whsec-7f3a9c"),
            headers: vec![("authorization".into(), Secret::new("Bearer jira-token-123"))],
        }),
        params: Default::default(),
    }
}

fn fast_retry() -> Retry {
    Retry { first: Duration::from_millis(100), max: Duration::from_millis(400), attempts: 30 }
}

async fn notifications(store: &Store) -> Vec<AuditEntry> {
    store.audit_entries(0, 10_000).await.unwrap().into_iter().filter(|e| e.action.starts_with("notification.")).collect()
}

#[tokio::test]
async fn a_signed_webhook_arrives_and_verifies() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let run = finished_run(&store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rx = receiver_on(listener, 200).await;
    let n = Notifier::new(store.clone(), vec![webhook_target(addr, Format::Generic)], None, None, clock()).unwrap();
    assert_eq!(n.drain().await.unwrap(), 1);

    let got = rx.requests.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    let sig = headers["x-offboard-signature"].to_str().unwrap();
    assert!(offboard_notify::webhook::verify_signature(&Secret::new("whsec-7f3a9c"), sig, body, chrono::Utc::now(), Duration::from_secs(300)));
    assert!(!offboard_notify::webhook::verify_signature(&Secret::new("whsec-wrong"), sig, body, chrono::Utc::now(), Duration::from_secs(300)));
    assert_eq!(headers["authorization"], "Bearer jira-token-123");
    assert_eq!(headers["x-offboard-event"], "run.finished");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["schema"], "offboard.notification.v1");
    assert_eq!(v["run"]["id"], run.id.as_str());
    assert_eq!(v["run"]["state"], "completed");
    let audited = notifications(&store).await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].action, "notification.delivered");
    assert!(audited[0].detail.contains("\"status\":\"HTTP 200\""));
    db.cleanup().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_then_up_gets_the_event_exactly_once() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    finished_run(&store).await;
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let n = Arc::new(Notifier::new(store.clone(), vec![webhook_target(addr, Format::Slack)], None, None, clock()).unwrap().with_retry(fast_retry()));
    let draining = tokio::spawn({
        let n = n.clone();
        async move { n.drain().await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!draining.is_finished(), "still retrying while the receiver is down");
    let rx = receiver_on(tokio::net::TcpListener::bind(addr).await.unwrap(), 200).await;
    assert_eq!(draining.await.unwrap().unwrap(), 1);
    assert_eq!(n.drain().await.unwrap(), 0, "nothing left to deliver");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.requests.lock().unwrap().len(), 1, "delivered exactly once");
    let body: serde_json::Value = serde_json::from_str(&rx.requests.lock().unwrap()[0].1).unwrap();
    assert!(body["text"].as_str().unwrap().starts_with("Offboarding completed: "), "{body}");

    let audited = notifications(&store).await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].action, "notification.delivered");
    let detail: serde_json::Value = serde_json::from_str(&audited[0].detail).unwrap();
    assert!(detail["attempts"].as_u64().unwrap() >= 2, "{detail}");
    db.cleanup().await;
}

#[tokio::test]
async fn a_refusing_receiver_is_recorded_as_failed_and_not_retried() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    finished_run(&store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rx = receiver_on(listener, 400).await;
    let n = Notifier::new(store.clone(), vec![webhook_target(addr, Format::Teams)], None, None, clock()).unwrap().with_retry(fast_retry());
    assert_eq!(tokio::time::timeout(Duration::from_secs(10), n.drain()).await.expect("no endless retry").unwrap(), 1);
    assert_eq!(rx.requests.lock().unwrap().len(), 1);
    assert_eq!(n.drain().await.unwrap(), 0);
    let audited = notifications(&store).await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].action, "notification.failed");
    assert!(audited[0].detail.contains("HTTP 400"), "{}", audited[0].detail);
    assert!(!audited[0].detail.contains(&addr.to_string()), "the URL is a credential and stays out of the log");

    // A 503 is retried, but not forever.
    rx.status.store(503, Ordering::SeqCst);
    let store2 = store.clone();
    let svc = service(store2.clone(), clock(), 3, TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() });
    approved_run(&svc, "user2@contoso.com", Options { disable_sign_in: true, ..Options::default() }).await;
    offboard_core::engine::Worker::new(store.clone(), Arc::new(AlwaysDone), clock(), Default::default()).drain().await.unwrap();
    let n = Notifier::new(store.clone(), vec![webhook_target(addr, Format::Teams)], None, None, clock()).unwrap().with_retry(Retry {
        first: Duration::from_millis(20),
        max: Duration::from_millis(40),
        attempts: 4,
    });
    assert_eq!(n.drain().await.unwrap(), 1);
    assert_eq!(rx.requests.lock().unwrap().len(), 1 + 4);
    let last = notifications(&store).await.pop().unwrap();
    assert_eq!(last.action, "notification.failed");
    assert!(last.detail.contains("gave up after 4 attempts"), "{}", last.detail);
    db.cleanup().await;
}

fn mail_target(name: &str, sink: &SmtpSink, to: &[&str], attach_report: bool) -> Target {
    Target {
        name: name.into(),
        events: vec!["run.finished".into()],
        channel: Channel::Email(Smtp {
            host: "127.0.0.1".into(),
            port: sink.addr.port(),
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "Offboard <offboard@contoso.com>".into(),
            to: to.iter().map(|t| t.to_string()).collect(),
            attach_report,
        }),
        params: Default::default(),
    }
}

fn mime_attachment(data: &str) -> (String, Vec<u8>) {
    let at = data.find("Content-Type: application/pdf").expect("a PDF part");
    let part_start = data[..at].rfind("\n--").expect("a MIME boundary") + 1;
    let part = &data[part_start..];
    let name = part.split("filename=\"").nth(1).and_then(|s| s.split('"').next()).expect("a file name").to_string();
    let body_at = part.find("\n\n").expect("part body") + 2;
    let b64: String = part[body_at..].lines().take_while(|l| !l.starts_with("--")).collect::<Vec<_>>().join("");
    (name, base64::engine::general_purpose::STANDARD.decode(b64.trim()).expect("base64 body"))
}

#[tokio::test]
async fn the_finished_run_is_mailed_with_the_signed_report() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let run = finished_run(&store).await;
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = ReportKey::from_seed([9; 32]);
    let public = key.public();
    let evidence = Arc::new(Evidence::new(key, dir.path().join("reports")));
    let target = mail_target("it-mail", &sink, &["it-compliance@contoso.com", "hr@contoso.com"], true);
    let n = Notifier::new(store.clone(), vec![target], None, Some(evidence.clone()), clock()).unwrap();
    assert_eq!(n.drain().await.unwrap(), 1);

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.to, vec!["it-compliance@contoso.com", "hr@contoso.com"]);
    assert!(mail.data.contains("Subject: [Offboard] Offboarding completed: Alice Example (contoso.com)"), "{}", mail.data);
    assert!(mail.data.contains("The signed compliance report is attached"));
    let (name, pdf) = mime_attachment(&mail.data);
    assert_eq!(name, format!("{}.pdf", run.id));
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(matches!(offboard_report::sign::verify(&pdf, &[public]), Verdict::Valid { ref run, .. } if run == run.as_str()));
    assert_eq!(std::fs::read(evidence.path_for(&run.id)).unwrap(), pdf, "the mailed file is the kept file");
    let audit = store.audit_entries(0, 10_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "report.signed" && e.run_id.as_deref() == Some(run.id.as_str())));
    assert!(audit.iter().any(|e| e.action == "notification.delivered" && e.detail.contains("SMTP 250")));

    // A recipient the server refuses is a recorded failure, not a retry loop.
    let target = mail_target("bad-mail", &sink, &["nobody@contoso.com"], false);
    let n = Notifier::new(store.clone(), vec![target], None, None, clock()).unwrap().with_retry(fast_retry());
    assert_eq!(tokio::time::timeout(Duration::from_secs(10), n.drain()).await.unwrap().unwrap(), 1);
    let last = notifications(&store).await.pop().unwrap();
    assert_eq!(last.action, "notification.failed");
    assert!(last.detail.contains("550"), "{}", last.detail);
    db.cleanup().await;
}

/// Every step succeeds but "Disable sign-in", which Entra refuses.
struct RefusesDisable;

#[async_trait::async_trait]
impl offboard_core::engine::StepExecutor for RefusesDisable {
    async fn execute(&self, cx: &offboard_core::engine::StepContext) -> Result<offboard_core::run::StepOutcome, offboard_core::engine::StepError> {
        if cx.step.kind == offboard_core::plan::StepKind::DisableSignIn {
            return Err(offboard_core::engine::StepError::Permanent {
                message: "Entra refused: the account is synced from on-premises AD. Disable it in AD.".into(),
                request_id: None,
            });
        }
        offboard_core::engine::StepExecutor::execute(&AlwaysDone, cx).await
    }

    async fn reconcile(&self, _cx: &offboard_core::engine::StepContext) -> offboard_core::engine::Reconciled {
        offboard_core::engine::Reconciled::NotApplied
    }
}

#[tokio::test]
async fn a_lockout_that_did_not_take_effect_heads_every_notification() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
    let svc = service(store.clone(), clock(), 3, policy);
    let run = approved_run(&svc, "alice@contoso.com", Options { disable_sign_in: true, revoke_sessions: true, ..Options::default() }).await;
    offboard_core::engine::Worker::new(store.clone(), Arc::new(RefusesDisable), clock(), Default::default()).drain().await.unwrap();
    assert_eq!(store.run(&run.id).await.unwrap().state, RunState::Failed);
    for format in [Format::Generic, Format::Slack, Format::Teams, Format::Discord] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rx = receiver_on(listener, 200).await;
        let mut target = webhook_target(addr, format);
        target.name = format!("hook-{format:?}");
        Notifier::new(store.clone(), vec![target], None, None, clock()).unwrap().drain().await.unwrap();
        let body = rx.requests.lock().unwrap()[0].1.clone();
        assert!(body.contains("NOT LOCKED OUT: Alice Example can still sign in"), "{format:?}: {body}");
        assert!(body.contains("Disable it in AD"), "{format:?} says what to do: {body}");
    }
    db.cleanup().await;
}

/// One admin asks for an emergency lockout of a plan that needs two approvers: only
/// sign-in is blocked and sessions revoked before approval, and every target hears of it,
/// whatever events it subscribed to.
#[tokio::test]
async fn an_emergency_lockout_of_a_high_risk_plan_blocks_only_and_alerts_every_target() {
    use offboard_core::plan::StepKind;
    use offboard_core::run::StepState;
    let db = TestDb::sqlite();
    let store = db.store().await;
    let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
    let svc = service(store.clone(), clock(), 3, policy);
    let options = Options {
        disable_sign_in: true,
        revoke_sessions: true,
        reset_password: true,
        remove_mfa: true,
        device_action: Some(offboard_core::request::DeviceAction::Wipe),
        ..Options::default()
    };
    let mut request = offboard_testkit::fixtures::request("alice@contoso.com", options);
    request.emergency = true;
    let run = svc.request(&offboard_testkit::fixtures::admin1(), request).await.unwrap();
    assert_eq!(run.approvals_needed, 2);
    offboard_core::engine::Worker::new(store.clone(), Arc::new(AlwaysDone), clock(), Default::default()).drain().await.unwrap();
    let ran: Vec<StepKind> =
        store.steps(&run.id).await.unwrap().iter().filter(|s| s.state == StepState::Succeeded).filter_map(|s| StepKind::from_key(&s.key)).collect();
    assert_eq!(ran, vec![StepKind::DisableSignIn, StepKind::RevokeSessions], "nothing else before two approvals");
    assert!(run.plan.notes.iter().any(|n| n.starts_with("Emergency: sign-in is blocked")), "{:?}", run.plan.notes);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rx = receiver_on(listener, 200).await;
    let target = webhook_target(addr, Format::Generic);
    assert_eq!(target.events, vec!["run.finished".to_string()], "subscribed to finished runs only");
    Notifier::new(store.clone(), vec![target], None, None, clock()).unwrap().drain().await.unwrap();
    let got = rx.requests.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0["x-offboard-event"], "run.emergency");
    assert!(got[0].1.contains("Emergency lockout started before approval"), "{}", got[0].1);
    db.cleanup().await;
}
