//! The evidence commands, run as the operator runs them: the built binary against a
//! database holding a finished run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use offboard_core::request::Options;
use offboard_testkit::TestDb;
use offboard_testkit::fixtures::finished_run;

fn offboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_offboard")).args(args).env_remove("OFFBOARD_DATABASE_URL").output().expect("run offboard")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

struct Setup {
    db: TestDb,
    dir: tempfile::TempDir,
    run: String,
}

impl Setup {
    async fn new() -> Self {
        let db = TestDb::sqlite();
        let store = db.store().await;
        let run = finished_run(&store, "alice@contoso.com", Options { disable_sign_in: true, revoke_sessions: true, ..Options::default() }).await;
        store.close().await;
        Setup { db, dir: tempfile::tempdir().unwrap(), run: run.id.to_string() }
    }

    fn key(&self) -> String {
        self.dir.path().join("signing.key").display().to_string()
    }

    fn with(&self, args: &[&str]) -> Output {
        let key = self.key();
        let reports = self.dir.path().join("reports").display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--signing-key", &key, "--reports-dir", &reports]);
        offboard(&all)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn write_changed(from: &Path, to: &Path, change: impl Fn(&mut Vec<u8>)) {
    let mut b = std::fs::read(from).unwrap();
    change(&mut b);
    std::fs::write(to, b).unwrap();
}

#[tokio::test]
async fn keys_report_and_verify() {
    let s = Setup::new().await;
    let shown = s.with(&["keys", "show"]);
    assert!(shown.status.success(), "{}", stdout(&shown));
    assert!(stdout(&shown).contains("created a new signing key"));
    let public = stdout(&shown).lines().find_map(|l| l.strip_prefix("public key   ").map(str::to_string)).unwrap();
    assert!(!stdout(&s.with(&["keys", "show"])).contains("created"), "the key is created once");

    let made = s.with(&["report", &s.run, "--database-url", &s.db.url]);
    assert!(made.status.success(), "{}", stdout(&made));
    let pdf = PathBuf::from(stdout(&made).trim());
    assert_eq!(pdf.file_name().unwrap().to_string_lossy(), format!("{}.pdf", s.run));

    let ok = s.with(&["verify", pdf.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).starts_with("VALID"));
    let ok = s.with(&["verify", pdf.to_str().unwrap(), "--database-url", &s.db.url]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("matches the store, and the chain verifies"));

    // One changed byte in the content.
    let changed = s.path("changed.pdf");
    write_changed(&pdf, &changed, |b| {
        let at = b.windows(7).position(|w| w == b"stream\n").unwrap() + 40;
        b[at] ^= 0x01;
    });
    let bad = s.with(&["verify", changed.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
    assert!(stdout(&bad).starts_with("TAMPERED"));

    // A signature from another report by the same key.
    let other_dir = s.path("other");
    let other = offboard(&["report", &s.run, "--database-url", &s.db.url, "--signing-key", &s.key(), "--reports-dir", other_dir.to_str().unwrap()]);
    assert!(other.status.success());
    let other_pdf = std::fs::read(stdout(&other).trim()).unwrap();
    let sig = |b: &[u8]| b.windows(4).rposition(|w| w == b"sig=").unwrap() + 4;
    let swapped = s.path("swapped.pdf");
    write_changed(&pdf, &swapped, |b| {
        let (at, from) = (sig(b), sig(&other_pdf));
        b[at..at + 128].copy_from_slice(&other_pdf[from..from + 128]);
    });
    assert_ne!(std::fs::read(&swapped).unwrap(), std::fs::read(&pdf).unwrap(), "the two reports carry different signatures");
    let bad = s.with(&["verify", swapped.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));

    // A different key: unknown until trusted explicitly.
    let stranger = s.path("stranger.key").display().to_string();
    let unknown = offboard(&["verify", pdf.to_str().unwrap(), "--signing-key", &stranger]);
    assert_eq!(unknown.status.code(), Some(3), "{}", stdout(&unknown));
    assert!(stdout(&unknown).starts_with("UNKNOWN KEY"));
    let trusted = offboard(&["verify", pdf.to_str().unwrap(), "--signing-key", &stranger, "--trust", &public]);
    assert_eq!(trusted.status.code(), Some(0), "{}", stdout(&trusted));

    // A store whose chain was rewritten after the report no longer matches its head.
    let said = stdout(&s.with(&["verify", pdf.to_str().unwrap()]));
    let head: i64 = said.split("audit chain head ").nth(1).and_then(|h| h.split(':').next()).unwrap().parse().unwrap();
    let pool = sqlx::SqlitePool::connect(&s.db.url).await.unwrap();
    // An attacker with the database file drops the append-only guard first.
    sqlx::query("DROP TRIGGER audit_no_update").execute(&pool).await.unwrap();
    sqlx::query("UPDATE audit SET hash = $1 WHERE seq = $2").bind("0".repeat(64)).bind(head).execute(&pool).await.unwrap();
    let mismatch = s.with(&["verify", pdf.to_str().unwrap(), "--database-url", &s.db.url]);
    assert_eq!(mismatch.status.code(), Some(1), "{}", stdout(&mismatch));
    assert!(stdout(&mismatch).contains("MISMATCH"), "{}", stdout(&mismatch));
}

#[tokio::test]
async fn audit_export_and_offline_verification() {
    let s = Setup::new().await;
    let csv = offboard(&["audit", "export", "--format", "csv", "--database-url", &s.db.url]);
    assert!(csv.status.success(), "{}", stdout(&csv));
    let text = String::from_utf8(csv.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "seq,at,tenant,actor,action,run_id,detail,prev_hash,hash");
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() >= 5, "{text}");
    assert!(rows.iter().any(|r| r.contains("run.requested")));
    // The detail is JSON with commas and quotes, so it is quoted and its quotes doubled.
    assert!(rows.iter().any(|r| r.contains(",\"{\"\"")), "{text}");

    let jsonl = offboard(&["audit", "export", "--database-url", &s.db.url]);
    let all = String::from_utf8(jsonl.stdout).unwrap();
    assert_eq!(all.lines().count(), rows.len());
    let first: serde_json::Value = serde_json::from_str(all.lines().next().unwrap()).unwrap();
    assert!(first["at"].as_str().unwrap().ends_with('Z'));

    let none = offboard(&["audit", "export", "--tenant", "fabrikam.com", "--database-url", &s.db.url]);
    assert_eq!(String::from_utf8(none.stdout).unwrap().lines().count(), 0);
    let future = offboard(&["audit", "export", "--since", "2999-01-01", "--database-url", &s.db.url]);
    assert_eq!(String::from_utf8(future.stdout).unwrap().lines().count(), 0);
    let bad = offboard(&["audit", "export", "--since", "last tuesday", "--database-url", &s.db.url]);
    assert!(!bad.status.success());
    assert!(stdout(&bad).contains("neither a date"), "{}", stdout(&bad));

    let file = s.path("audit.jsonl");
    std::fs::write(&file, &all).unwrap();
    let ok = offboard(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    std::fs::write(&file, all.replacen("run.requested", "run.rejected", 1)).unwrap();
    let bad = offboard(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
    assert!(stdout(&bad).contains("was modified"), "{}", stdout(&bad));
}

#[test]
fn templates_check_names_the_broken_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    assert!(offboard(&["templates", "check"]).status.success());
    std::fs::create_dir_all(dir.path().join("webhook")).unwrap();
    std::fs::write(dir.path().join("webhook/slack.json"), "{\"text\": \n {{ run.employee }\n}").unwrap();
    let out = offboard(&["templates", "check", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let said = stdout(&out);
    assert!(said.contains("webhook/slack.json line 2: syntax error"), "{said}");
}

#[test]
fn templates_check_stops_an_endless_template_within_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("chat")).unwrap();
    let endless = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
    std::fs::write(dir.path().join("chat/run_finished.txt"), endless).unwrap();
    let started = std::time::Instant::now();
    let out = offboard(&["templates", "check", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("chat/run_finished.txt") && stdout(&out).contains("out of fuel"), "{}", stdout(&out));
    // Fuel, not the clock, stops it: the check ends long before the loop could.
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}

/// Someone with write access to the database, but not the signing key, changes who asked
/// and who approved: in the rows, then in the audit log with the chain recomputed.
#[tokio::test]
async fn forged_rows_and_a_rewritten_log_do_not_make_a_valid_report() {
    use offboard_core::audit::Hashed;
    use offboard_core::store::Db;
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("signing.key");
    let (key, _) = offboard_report::ReportKey::load_or_create(&key_path).unwrap();
    let store = db.store().await.with_audit_key(key.audit_key());
    let run = finished_run(&store, "alice@contoso.com", Options { disable_sign_in: true, revoke_sessions: true, ..Options::default() }).await;
    let Db::Sqlite(pool) = store.db() else { unreachable!() };
    let exec = |sql: String| {
        let pool = pool.clone();
        async move { sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap() }
    };
    let (key_arg, url) = (key_path.display().to_string(), db.url.clone());
    let report = |name: &str| {
        let reports = dir.path().join(name).display().to_string();
        offboard(&["report", run.id.as_str(), "--database-url", &url, "--signing-key", &key_arg, "--reports-dir", &reports])
    };
    let text = |pdf: &str| String::from_utf8(Command::new("pdftotext").args([pdf, "-"]).output().unwrap().stdout).unwrap();

    // 1. The rows say a Chief Security Officer asked and approved.
    exec(format!("UPDATE runs SET requester = 'slack:UCSO', requester_name = 'Chief Security Officer' WHERE id = '{}'", run.id)).await;
    exec(format!("UPDATE approvals SET approver = 'slack:UCSO', approver_name = 'Chief Security Officer' WHERE run_id = '{}'", run.id)).await;
    let made = report("first");
    assert!(made.status.success(), "{}", stdout(&made));
    let first = stdout(&made).trim().to_string();
    let said = text(&first);
    assert!(!said.contains("Chief Security Officer"), "the report names the people the audit chain recorded:\n{said}");
    assert!(said.contains("UREQ name (slack:UREQ)") && said.contains("UADM1 name (slack:UADM1)"), "{said}");

    // 2. The audit entry itself is rewritten, and every later hash recomputed, without the key.
    exec("DROP TRIGGER audit_no_update".into()).await;
    let entries = store.audit_entries(0, 10_000).await.unwrap();
    let forged_at = entries.iter().position(|e| e.action == "run.approved").unwrap();
    let mut prev = entries[forged_at].prev_hash.clone();
    for (i, e) in entries.iter().enumerate().skip(forged_at) {
        let detail = if i == forged_at { e.detail.replace("UADM1 name", "Chief Security Officer") } else { e.detail.clone() };
        let hash = Hashed {
            prev_hash: &prev,
            seq: e.seq,
            at_ms: e.at_ms,
            tenant: e.tenant.as_deref(),
            actor: &e.actor,
            action: &e.action,
            run_id: e.run_id.as_deref(),
            detail: &detail,
        }
        .hash(None);
        sqlx::query("UPDATE audit SET detail = $1, prev_hash = $2, hash = $3, keyed = 0 WHERE seq = $4")
            .bind(&detail)
            .bind(&prev)
            .bind(&hash)
            .bind(e.seq)
            .execute(pool)
            .await
            .unwrap();
        prev = hash;
    }
    let verified = offboard(&["audit", "verify", "--database-url", &url, "--signing-key", &key_arg]);
    assert_eq!(verified.status.code(), Some(1), "{}", stdout(&verified));
    assert!(stdout(&verified).contains(&format!("entry {}", entries[forged_at].seq)), "{}", stdout(&verified));
    let refused = report("second");
    assert!(!refused.status.success(), "no report is signed over a rewritten log: {}", stdout(&refused));
    assert!(stdout(&refused).contains("the audit log was changed"), "{}", stdout(&refused));
    let checked = offboard(&["verify", &first, "--database-url", &url, "--signing-key", &key_arg]);
    assert_eq!(checked.status.code(), Some(1), "{}", stdout(&checked));
    db.cleanup().await;
}

#[tokio::test]
async fn the_database_and_reports_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new().await;
    let db = s.path("fresh.db");
    let url = format!("sqlite://{}", db.display());
    let made = offboard(&["migrate", "--database-url", &url]);
    assert!(made.status.success(), "{}", stdout(&made));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600, "the database file");
    let made = s.with(&["report", &s.run, "--database-url", &s.db.url]);
    assert!(made.status.success(), "{}", stdout(&made));
    let pdf = PathBuf::from(stdout(&made).trim());
    assert_eq!(mode(&pdf), 0o600, "the report");
    assert_eq!(mode(pdf.parent().unwrap()), 0o700, "the reports directory");
    assert_eq!(mode(Path::new(&s.key())), 0o600, "the signing key");
}
