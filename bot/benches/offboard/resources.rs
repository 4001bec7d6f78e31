//! B5: the idle footprint of `offboard serve` (its own process, read from procfs), and the
//! peak memory, CPU and database growth of the largest B3 run (this process: engine,
//! simulated tenant and harness together, so an upper bound for the engine).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use offboard_core::clock::{Clock, SystemClock};
use offboard_core::policy::TenantPolicy;
use offboard_m365::Settings;
use offboard_m365_sim::{Scenario, SimConfig};
use serde_json::json;

use crate::bulk::Peak;
use crate::{Outcome, Row};

#[path = "../../tests/common/mod.rs"]
mod common;

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

/// Memory and CPU of this process over a stretch of work.
pub struct Usage {
    pub rss_before_mb: f64,
    pub peak_rss_mb: f64,
    pub cpu_s: f64,
    cpu_at: f64,
}

impl Usage {
    pub fn start() -> Usage {
        // Writing 5 resets the peak (VmHWM) to the current size.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Usage { rss_before_mb: status_kb("self", "VmRSS:").unwrap_or(0.0) / 1024.0, peak_rss_mb: 0.0, cpu_s: 0.0, cpu_at: cpu_s("self") }
    }

    pub fn stop(mut self) -> Usage {
        self.peak_rss_mb = status_kb("self", "VmHWM:").unwrap_or(0.0) / 1024.0;
        self.cpu_s = cpu_s("self") - self.cpu_at;
        self
    }
}

/// The SQLite database's size on disk, its write-ahead log folded in first.
pub async fn db_bytes(store: &offboard_core::store::Store, url: &str) -> u64 {
    if let offboard_core::store::Db::Sqlite(p) = store.db() {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await;
    }
    let path = url.trim_start_matches("sqlite://");
    ["", "-wal"].iter().filter_map(|s| std::fs::metadata(format!("{path}{s}")).ok()).map(|m| m.len()).sum()
}

/// `offboard serve` with one simulated tenant and Slack, idle: its resident memory.
async fn idle_serve() -> Result<(f64, f64), String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = offboard_m365::simulated::start(&Scenario::contoso(), SimConfig::default(), clock, Settings::default(), TenantPolicy::default()).await?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = format!("sqlite://{}", dir.path().join("offboard.db").display());
    let config = common::write_config(dir.path(), &sim, &db, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config", config.to_str().unwrap_or_default()])
        .env("OFFBOARD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start offboard serve: {e}"))?;
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line);
    let pid = child.id().to_string();
    let started = Instant::now();
    // Idle: listening, workers polling, nothing to do.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = status_kb(&pid, "VmRSS:").unwrap_or(f64::NAN) / 1024.0;
    let cpu = cpu_s(&pid) / started.elapsed().as_secs_f64();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
    if !line.starts_with("offboard: serving on") {
        return Err(format!("offboard serve did not start: {line}"));
    }
    Ok((rss, cpu))
}

pub async fn run(peak: Option<Peak>) -> Outcome {
    let mut out = Outcome::default();
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
                format!("{:.1} MB (from {:.1} MB before the runs; engine + simulated tenant)", p.usage.peak_rss_mb, p.usage.rss_before_mb),
                "≤ 300 MB",
            ));
            out.rows.push(Row::new("CPU per user", format!("{:.3} s (engine + simulated tenant)", p.usage.cpu_s / p.users), "reported"));
            out.rows.push(Row::new("database growth per user", format!("{:.1} KB (SQLite)", p.db_bytes_per_user / 1024.0), "reported"));
            out.json.insert(
                "bulk".into(),
                json!({ "concurrent_runs": p.users, "peak_rss_mb": p.usage.peak_rss_mb, "rss_before_mb": p.usage.rss_before_mb,
                        "cpu_s_per_user": p.usage.cpu_s / p.users, "db_bytes_per_user": p.db_bytes_per_user }),
            );
        }
        None => out.rows.push(Row::new("peak RSS under load", "not measured (run b3 with b5)", "≤ 300 MB")),
    }
    out
}
