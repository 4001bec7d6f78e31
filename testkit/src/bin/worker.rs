//! A worker process for crash and scale-out tests: runs the real step runner against the
//! effect server, and kills itself with SIGKILL at a named point when asked to.
//!
//! Environment: `DATABASE_URL`, `EFFECTS_URL`, `WORKER_ID`, optional `CRASH_AT`
//! (`point:n`, e.g. `intent_journaled:3`), `LEASE_MS`, `HEARTBEAT_MS`, `CONCURRENCY`, `LOCKOUT_SLOTS`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use offboard_core::clock::SystemClock;
use offboard_core::engine::{Point, Probe, RetryPolicy, StepContext, Worker, WorkerConfig};
use offboard_core::store::Store;
use offboard_testkit::HttpExecutor;

struct CrashProbe {
    point: Option<(String, u64)>,
    hits: AtomicU64,
}

impl Probe for CrashProbe {
    fn at(&self, point: Point, cx: &StepContext) {
        if point == Point::StaleWriteRefused {
            println!("stale_write_refused {} {} attempt={}", cx.run_id, cx.step.key, cx.attempt);
        }
        if let Some((name, n)) = &self.point
            && name == point.name()
            && self.hits.fetch_add(1, Ordering::SeqCst) + 1 == *n
        {
            println!("crashing at {name}:{n} ({} {})", cx.run_id, cx.step.key);
            let _ = std::process::Command::new("kill").args(["-KILL", &std::process::id().to_string()]).status();
            std::thread::sleep(Duration::from_secs(60));
        }
    }
}

fn env_ms(name: &str, default: u64) -> Duration {
    Duration::from_millis(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    let db = std::env::var("DATABASE_URL")?;
    let effects = std::env::var("EFFECTS_URL")?;
    let point = std::env::var("CRASH_AT").ok().and_then(|s| {
        let (p, n) = s.split_once(':')?;
        Some((p.to_string(), n.parse().ok()?))
    });
    let store = Store::connect(&db).await?;
    let config = WorkerConfig {
        worker_id: std::env::var("WORKER_ID").unwrap_or_else(|_| "test-worker".into()),
        concurrency: std::env::var("CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(4),
        lease: env_ms("LEASE_MS", 1000),
        heartbeat: env_ms("HEARTBEAT_MS", 250),
        poll: Duration::from_millis(20),
        retry: RetryPolicy { initial: Duration::from_millis(20), cap: Duration::from_millis(200), ..RetryPolicy::default() },
        lockout_slots: std::env::var("LOCKOUT_SLOTS").ok().and_then(|v| v.parse().ok()).unwrap_or(4),
        emergency_slots: std::env::var("EMERGENCY_SLOTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2),
    };
    let worker = Worker::new(store, Arc::new(HttpExecutor::new(effects)), Arc::new(SystemClock), config)
        .with_probe(Arc::new(CrashProbe { point, hits: AtomicU64::new(0) }));
    println!("ready");
    worker
        .run_until_stopped(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
