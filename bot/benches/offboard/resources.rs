//! B5: the footprint of `offboard serve` as its own process, read from procfs: idle, and
//! running the largest B3 case with its Slack relay posting updates and reports.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use offboard_core::clock::{Clock, SystemClock};
use offboard_core::domain::RunId;
use offboard_core::policy::TenantPolicy;
use offboard_m365::Settings;
use offboard_m365_sim::{Scenario, SimConfig};
use offboard_slack::fake::FakeSlack;
use serde_json::json;

use crate::bulk::Peak;
use crate::fleet::Fleet;
use crate::{Outcome, Row};

#[path = "../../tests/common/mod.rs"]
pub mod common;

fn status_kb(pid: &str, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
}

/// User plus system CPU seconds of a process.
fn cpu_s(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may contain spaces, closed by the last ')'.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / 100.0
}

/// Memory and CPU of a process (`self` or a pid) over a stretch of work.
pub struct Usage {
    pub rss_before_mb: f64,
    pub peak_rss_mb: f64,
    pub cpu_s: f64,
    pid: String,
    cpu_at: f64,
}

impl Usage {
    pub fn start(pid: &str) -> Usage {
        // Writing 5 resets the peak (VmHWM) to the current size.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let rss_before_mb = status_kb(pid, "VmRSS:").unwrap_or(0.0) / 1024.0;
        Usage { rss_before_mb, peak_rss_mb: 0.0, cpu_s: 0.0, pid: pid.to_string(), cpu_at: cpu_s(pid) }
    }

    pub fn stop(mut self) -> Usage {
        self.peak_rss_mb = status_kb(&self.pid, "VmHWM:").unwrap_or(0.0) / 1024.0;
        self.cpu_s = cpu_s(&self.pid) - self.cpu_at;
        self
    }
}

/// The database's size on disk: SQLite's file with its write-ahead log folded in first, or
/// what Postgres reports for the database.
pub async fn db_bytes(store: &offboard_core::store::Store, url: &str) -> u64 {
    match store.db() {
        offboard_core::store::Db::Sqlite(p) => {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await;
            let path = url.trim_start_matches("sqlite://");
            ["", "-wal"].iter().filter_map(|s| std::fs::metadata(format!("{path}{s}")).ok()).map(|m| m.len()).sum()
        }
        offboard_core::store::Db::Postgres(p) => {
            sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())").fetch_one(p).await.map_or(0, |n| n as u64)
        }
    }
}

/// The configuration's Slack and workers sections.
pub fn chat(slack: &FakeSlack, concurrency: usize) -> String {
    format!(
        "[slack]\nsigning_secret = \"bench-signing\"\nbot_token = \"xoxb-bench\"\napprovals_channel = \"C0APPROVALS\"\napi_url = \"{}\"\n\n[workers]\nconcurrency = {concurrency}\n",
        slack.api_url()
    )
}

/// `offboard serve` started on `config`, once it says it is serving.
pub struct Serving {
    child: Child,
    pid: String,
}

impl Serving {
    pub fn start(config: &Path, stderr: Stdio, env: &[(&str, String)]) -> Result<Serving, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
            .args(["serve", "--config", config.to_str().unwrap_or_default()])
            .env("OFFBOARD_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("start offboard serve: {e}"))?;
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line);
        let pid = child.id().to_string();
        let serving = Serving { child, pid };
        if !line.starts_with("offboard: serving on") {
            return Err(format!("offboard serve did not start: {line}"));
        }
        Ok(serving)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid]).status();
        let _ = self.child.wait();
    }
}

/// `offboard serve` with one simulated tenant and Slack, idle: its resident memory.
async fn idle_serve() -> Result<(f64, f64), String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), SimConfig::default(), clock, Settings::default(), TenantPolicy::default()).await?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = format!("sqlite://{}", dir.path().join("offboard.db").display());
    let slack = FakeSlack::start("xoxb-bench").await;
    let config = common::write_config(dir.path(), &sim, &db, &chat(&slack, 8));
    let serving = Serving::start(&config, Stdio::inherit(), &[])?;
    let started = Instant::now();
    // Idle: listening, workers polling, nothing to do.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = status_kb(&serving.pid, "VmRSS:").unwrap_or(f64::NAN) / 1024.0;
    let cpu = cpu_s(&serving.pid) / started.elapsed().as_secs_f64();
    Ok((rss, cpu))
}

/// What `offboard serve` used to run a fleet's approved runs.
pub struct Served {
    pub wall: Duration,
    pub usage: Usage,
    pub reports: usize,
}

/// Runs the fleet's approved `runs` in `offboard serve` as its own process, on the fleet's
/// database and simulated tenants, relaying to a fake Slack: until every run is
/// terminal and its report is attached to its thread.
pub async fn serve(fleet: &Fleet, runs: &[RunId], concurrency: usize, exchange_per_s: Option<f64>) -> Result<Served, String> {
    let tenants = fleet.domains.iter().map(|d| fleet.m365.tenants().get(&fleet.tenant(d))).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let slack = FakeSlack::start("xoxb-bench").await;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = common::write_config_for(dir.path(), fleet.sim.urls(), &tenants, &fleet.db.url, &chat(&slack, concurrency));
    let log = std::fs::File::create(dir.path().join("serve.log")).map_err(|e| e.to_string())?;
    let env: Vec<_> = exchange_per_s.map(|r| ("OFFBOARD__MICROSOFT__EXCHANGE_CALLS_PER_SECOND", r.to_string())).into_iter().collect();
    let serving = Serving::start(&config, Stdio::from(log), &env)?;
    let usage = Usage::start(&serving.pid);
    let deadline = Duration::from_secs(3600);
    let outcome = async {
        let wall = fleet.finish_all(runs.len(), deadline).await?;
        let started = Instant::now();
        while slack.shared_files() < runs.len() {
            if started.elapsed() > Duration::from_secs(300) {
                return Err(format!("{} of {} reports attached 300 s after the last run ended", slack.shared_files(), runs.len()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(wall)
    }
    .await;
    let usage = usage.stop();
    drop(serving);
    match outcome {
        Ok(wall) => Ok(Served { wall, usage, reports: slack.shared_files() }),
        Err(e) => {
            let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            Err(format!("{e}; serve log ends: {tail:?}"))
        }
    }
}

/// Rendering and signing the compliance PDF of a finished run with 17 steps over three
/// pages: the median time of `reps` and the size.
fn report_cost(reps: usize) -> (f64, usize) {
    let (run, steps, approvals) = offboard_core::testing::finished_run();
    let report = offboard_core::report::Report::build(&run, &steps, &approvals, None, run.finished_at.expect("finished"));
    let key = offboard_report::ReportKey::from_seed([7; 32]);
    let mut bytes = 0;
    let times = (0..reps)
        .map(|_| {
            let t = Instant::now();
            bytes = offboard_report::signed_pdf(&report, &key).map(|b| b.len()).unwrap_or(0);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    (crate::percentile(&crate::sorted(times), 0.5), bytes)
}

pub async fn run(full: bool, peak: Option<Peak>) -> Outcome {
    let mut out = Outcome::default();
    let (ms, bytes) = report_cost(if full { 50 } else { 2 });
    out.rows.push(Row::new("signed PDF report, render + sign", format!("{ms:.1} ms p50, {:.1} KB", bytes as f64 / 1024.0), "reported"));
    out.json.insert("report".into(), json!({ "render_sign_ms_p50": ms, "bytes": bytes }));
    out.check(bytes > 0, || "the report did not render".into());
    match idle_serve().await {
        Ok((rss, cpu)) => {
            out.rows.push(Row::new("idle RSS of offboard serve", format!("{rss:.1} MB (CPU {:.1} % while idle)", cpu * 100.0), "≤ 40 MB"));
            out.json.insert("idle_rss_mb".into(), json!(rss));
            out.json.insert("idle_cpu_share".into(), json!(cpu));
            out.check(rss.is_finite() && rss > 0.0, || "could not read the idle RSS".into());
        }
        Err(e) => out.errors.push(e),
    }
    match peak {
        Some(p) => {
            out.rows.push(Row::new(
                format!("peak RSS, {} concurrent runs", p.users),
                format!("{:.1} MB (from {:.1} MB at start; {}, with its Slack relay)", p.usage.peak_rss_mb, p.usage.rss_before_mb, p.case),
                "≤ 300 MB",
            ));
            out.rows.push(Row::new("CPU per user", format!("{:.3} s ({})", p.usage.cpu_s / p.users, p.case), "reported"));
            out.rows.push(Row::new("database growth per user", format!("{:.1} KB ({})", p.db_bytes_per_user / 1024.0, p.store), "reported"));
            out.json.insert(
                "bulk".into(),
                json!({ "case": p.case, "concurrent_runs": p.users, "peak_rss_mb": p.usage.peak_rss_mb, "rss_before_mb": p.usage.rss_before_mb,
                        "cpu_s_per_user": p.usage.cpu_s / p.users, "db_bytes_per_user": p.db_bytes_per_user }),
            );
        }
        None => out.rows.push(Row::new("peak RSS under load", "not measured (run b3 with b5)", "≤ 300 MB")),
    }
    out
}
