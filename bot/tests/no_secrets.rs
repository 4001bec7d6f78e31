//! No secret leaves the process: an offboarding with a password reset, run against the
//! simulated tenant with a client secret, then every output searched for the secrets —
//! the PDF (as a reader sees it and as bytes), chat texts, the logs at TRACE, webhook
//! bodies, the e-mail, the audit log and the outbox.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use offboard_core::chat::{PlanPreview, RunView};
use offboard_core::clock::{Clock, SystemClock};
use offboard_core::domain::PresetName;
use offboard_core::engine::{RetryPolicy, Worker, WorkerConfig};
use offboard_core::policy::{AdminTargets, TenantPolicy};
use offboard_core::request::Presets;
use offboard_core::run::RunState;
use offboard_core::secret::Secret;
use offboard_core::service::Offboarding;
use offboard_core::templates::{EventInfo, Notice, Templates};
use offboard_m365::Settings;
use offboard_m365::simulated::Simulated;
use offboard_m365_sim::{Scenario, SimConfig};
use offboard_notify::{Channel, Format, Notifier, Smtp, SmtpTls, Target, Webhook};
use offboard_report::{Evidence, ReportKey};
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::{access, approved_run};
use offboard_testkit::smtp::SmtpSink;

const CONTOSO: &str = "contoso.com";
const ALICE: &str = "alice.able@contoso.com";
const WEBHOOK_SECRET: &str = "whsec-Zq81-never-printed";

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn keep(State(bodies): State<Arc<Mutex<Vec<String>>>>, body: Bytes) -> &'static str {
    bodies.lock().unwrap().push(String::from_utf8_lossy(&body).to_string());
    "ok"
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_any_output() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt().with_env_filter("trace").with_ansi(false).with_writer(move || writer.clone()).init();

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let policy = TenantPolicy { admins: AdminTargets::Allow, ..TenantPolicy::default() };
    let cfg = SimConfig { conversion_delay: Duration::from_millis(200), ..SimConfig::default() };
    let Simulated { sim, m365, tenants, secrets } =
        offboard_m365::simulated::start(&Scenario::contoso(), cfg, clock.clone(), Settings::default(), policy).await.unwrap();
    let client_secret = secrets[0].1.expose().to_string();
    let db = TestDb::sqlite();
    let store = db.store().await;
    let svc = Offboarding::new(store.clone(), m365.clone(), clock.clone(), access(), tenants, Presets::default());
    let options = Presets::builtin(&PresetName::parse("standard-leaver").unwrap()).unwrap();
    assert!(options.reset_password);
    let run = approved_run(&svc, ALICE, options).await;
    let config = WorkerConfig {
        poll: Duration::from_millis(20),
        retry: RetryPolicy { initial: Duration::from_millis(50), ..RetryPolicy::default() },
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), m365.clone(), clock.clone(), config);
    let id = run.id.clone();
    let watch = store.clone();
    tokio::select! {
        _ = worker.run_until_stopped(tokio::time::sleep(Duration::from_secs(90))) => {}
        _ = async move { while !watch.run(&id).await.unwrap().state.is_terminal() { tokio::time::sleep(Duration::from_millis(20)).await } } => {}
    }
    let finished = store.run(&run.id).await.unwrap();
    assert!(matches!(finished.state, RunState::Completed | RunState::CompletedWithWarnings), "{:?}", finished.state);

    let password =
        sim.tenant(CONTOSO, |t| t.user_id(ALICE).and_then(|id| t.users[&id].password.clone())).flatten().expect("the tenant received a new password");
    assert!(password.len() >= 16);

    // Outputs: notifications to a webhook and an SMTP sink, with the report attached.
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/hook", post(keep)).with_state(bodies.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let evidence = Arc::new(Evidence::new(ReportKey::generate(), dir.path()));
    let webhook = |name: &str, format| Target {
        name: name.into(),
        events: vec![],
        channel: Channel::Webhook(Webhook { url: Secret::new(format!("http://{hook}/hook")), format, secret: Secret::new(WEBHOOK_SECRET), headers: vec![] }),
        params: Default::default(),
    };
    let mail = Target {
        name: "mail".into(),
        events: vec!["run.finished".into()],
        channel: Channel::Email(Smtp {
            host: "127.0.0.1".into(),
            port: sink.addr.port(),
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "offboard@contoso.com".into(),
            to: vec!["it@contoso.com".into()],
            attach_report: true,
        }),
        params: Default::default(),
    };
    let targets = vec![webhook("generic", Format::Generic), webhook("teams", Format::Teams), webhook("jira", Format::Jira), mail];
    let notifier = Notifier::new(store.clone(), targets, None, Some(evidence.clone()), clock.clone()).unwrap();
    assert!(notifier.drain().await.unwrap() >= 4);

    let (pdf_path, pdf) = evidence.pdf(&store, &run.id, clock.now()).await.unwrap();
    let pdf_text =
        String::from_utf8(std::process::Command::new("pdftotext").arg(&pdf_path).arg("-").output().expect("pdftotext (poppler-utils)").stdout).unwrap();
    assert!(pdf_text.contains("Reset password"), "the report covers the reset step");

    let steps = store.steps(&run.id).await.unwrap();
    let approvals = store.approvals(&run.id).await.unwrap();
    let templates = Templates::load(None, offboard_notify::webhook::TEMPLATES).unwrap();
    let notice = Notice::new(EventInfo { name: "run.finished".into(), title: "done".into(), at: String::new(), seq: 0 }, &finished, &steps, &approvals);
    let chat = format!(
        "{:?}\n{:?}\n{}\n{}",
        PlanPreview::from_run(&finished, &approvals),
        RunView::from_run(&finished, &steps),
        templates.render("chat/run_finished.txt", &notice).unwrap(),
        templates.render("chat/approval_requested.txt", &notice).unwrap()
    );
    let audit = format!("{:?}", store.audit_entries(0, 100_000).await.unwrap());
    let outbox = format!("{:?}", store.events_after(0, 100_000).await.unwrap());
    let stored = format!("{:?}{:?}", finished, steps);
    let hooks = bodies.lock().unwrap().join("\n");
    let mails: String = sink.mails().iter().map(|m| m.data.clone()).collect();
    tracing::info!("end of test");
    let log = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();

    assert!(log.lines().count() > 50, "the logs were captured");
    assert!(hooks.contains("offboard.notification.v1") && mails.contains("application/pdf"), "notifications were captured");
    let outputs: [(&str, &[u8]); 9] = [
        ("PDF text", pdf_text.as_bytes()),
        ("PDF bytes", &pdf),
        ("chat texts", chat.as_bytes()),
        ("logs", log.as_bytes()),
        ("webhook bodies", hooks.as_bytes()),
        ("e-mail", mails.as_bytes()),
        ("audit log", audit.as_bytes()),
        ("outbox", outbox.as_bytes()),
        ("stored run and steps", stored.as_bytes()),
    ];
    for (secret_name, secret) in
        [("the new password", password.as_str()), ("the client secret", client_secret.as_str()), ("the webhook signing secret", WEBHOOK_SECRET)]
    {
        for (output, bytes) in outputs {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{secret_name} appears in the {output}");
        }
    }
    db.cleanup().await;
}
