//! Offboard's benchmarks against the simulated tenant (reliability.md §6.6):
//!
//! - B1 acknowledgement latency of signed Slack, Teams and Discord requests at fixed rates;
//! - B2 time from approval to lockout, and one full run; the same while a bulk runs, and
//!   with the approval in one process and the workers in another (Postgres);
//! - B3 bulk runs against Microsoft's throttling model, compared with the bound of §6.3;
//! - B4 the same under injected faults: end state and at-most-once effects;
//! - B5 memory, CPU and database growth;
//! - B6 what a plan costs in a tenant of 50 mailboxes and of 5,000, and the delegation
//!   index that keeps it so.
//!
//! `cargo bench -p offboard-bot --bench offboard [-- b1 b3 …]` runs the full versions and
//! writes JSON beside the table (`--json FILE` to choose where; `--case TEXT` keeps only the
//! B2 parts and B3 cases whose name contains TEXT, such as "B2l"; `--postgres` puts B1, B2 under load, B3 and B4 on Postgres;
//! `--exchange-per-s N` paces Exchange at N calls per second per tenant instead of the
//! default; `--concurrency N` gives the workers N slots instead of each case's own). `cargo test` runs a short smoke version of each that checks correctness, never
//! timing.

mod ack;
mod ack_discord;
mod ack_teams;
mod bulk;
mod fleet;
mod lockout;
mod plan_cost;
mod resources;

use serde_json::{Value, json};

/// One line of the table: what was measured beside its target.
pub struct Row {
    pub metric: String,
    pub measured: String,
    pub target: String,
}

impl Row {
    pub fn new(metric: impl Into<String>, measured: impl Into<String>, target: impl Into<String>) -> Self {
        Self { metric: metric.into(), measured: measured.into(), target: target.into() }
    }
}

/// A benchmark's result: rows for the table, figures for the JSON, and what went wrong.
#[derive(Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub json: serde_json::Map<String, Value>,
    /// Correctness failures: a smoke run fails on any.
    pub errors: Vec<String>,
}

impl Outcome {
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.errors.push(what());
        }
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

const USAGE: &str = "usage: cargo bench -p offboard-bot --bench offboard -- [b1 b2 b3 b4 b5] [OPTIONS]

  b1 … b6               run only these benchmarks (all when none is named)
  --json FILE           where to write the JSON results
  --case TEXT           only the B2 parts (B2, B2l, B2p) and B3 cases whose name contains TEXT
  --postgres            B1, B2 under load, B3 and B4 on Postgres (OFFBOARD_TEST_POSTGRES_URL)
  --exchange-per-s N    pace Exchange at N calls per second per tenant
  --concurrency N       worker slots instead of each case's own
  --smoke               the short versions that `cargo test` runs
  --help                this text";

/// Refuses what it does not know, so a typo never starts half an hour of benchmarks.
fn check_args(args: &[String]) -> Result<(), String> {
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--json" | "--case" | "--exchange-per-s" | "--concurrency" => {
                if args.get(i + 1).is_none_or(|v| v.starts_with("--")) {
                    return Err(format!("{} needs a value", args[i]));
                }
                i += 1;
            }
            "--bench" | "--smoke" | "--postgres" | "b1" | "b2" | "b3" | "b4" | "b5" | "b6" => {}
            other => return Err(format!("unknown argument `{other}`")),
        }
        i += 1;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    if let Err(e) = check_args(&args) {
        eprintln!("{e}\n\n{USAGE}");
        std::process::exit(2);
    }
    // `cargo bench` passes --bench; `cargo test` runs this target without it.
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--smoke");
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let json_path = value("--json");
    let case = value("--case");
    let setup = fleet::Setup {
        postgres: args.iter().any(|a| a == "--postgres"),
        exchange_per_s: value("--exchange-per-s").map(|v| v.parse().expect("--exchange-per-s takes calls per second")),
        concurrency: value("--concurrency").map(|v| v.parse().expect("--concurrency takes a number of worker slots")),
    };
    let picked: Vec<&str> = args.iter().map(String::as_str).filter(|a| a.len() == 2 && a.starts_with('b')).collect();
    let wants = |b: &str| picked.is_empty() || picked.contains(&b);

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut results: Vec<(&str, Outcome)> = Vec::new();
    rt.block_on(async {
        if wants("b1") {
            results.push(("B1 ack latency", ack::run(full, setup.postgres).await));
            results.push(("B1t Teams ack latency", ack_teams::run(full, setup.postgres).await));
            results.push(("B1d Discord ack latency", ack_discord::run(full, setup.postgres).await));
        }
        if wants("b2") {
            let named = |name: &str| case.as_deref().is_none_or(|c| name.contains(c));
            if named("B2 time to lockout") {
                results.push(("B2 time to lockout", lockout::run(full).await));
            }
            if named("B2l lockout under load") {
                results.push(("B2l lockout under load", lockout::under_load(full, setup.postgres).await));
            }
            if named("B2p lockout across processes") {
                results.push(("B2p lockout across processes", lockout::split(full).await));
            }
        }
        let mut peak = None;
        if wants("b3") {
            let (o, p) = bulk::throughput(full, case.as_deref(), setup).await;
            peak = p;
            results.push(("B3 bulk", o));
        }
        if wants("b4") {
            results.push(("B4 chaos", bulk::chaos(full, setup).await));
        }
        if wants("b5") {
            results.push(("B5 resources", resources::run(full, peak).await));
        }
        if wants("b6") {
            results.push(("B6 plan cost by tenant size", plan_cost::run(full).await));
        }
    });

    let mut report = serde_json::Map::new();
    report.insert("mode".into(), json!(if full { "full" } else { "smoke" }));
    let mut errors = Vec::new();
    let width = results.iter().flat_map(|(_, o)| o.rows.iter().map(|r| r.metric.len())).max().unwrap_or(10);
    let mwidth = results.iter().flat_map(|(_, o)| o.rows.iter().map(|r| r.measured.len())).max().unwrap_or(10);
    println!("\n{:<w$}  {:<m$}  target", "benchmark / metric", "measured", w = width + 2, m = mwidth);
    for (name, o) in &results {
        println!("{name}");
        for r in &o.rows {
            println!("  {:<w$}  {:<m$}  {}", r.metric, r.measured, r.target, w = width, m = mwidth);
        }
        for e in &o.errors {
            errors.push(format!("{name}: {e}"));
        }
        let mut j = o.json.clone();
        j.insert("errors".into(), json!(o.errors));
        report.insert(name.split(' ').next().unwrap_or(name).to_ascii_lowercase(), Value::Object(j));
    }
    let path = json_path.unwrap_or_else(|| format!("{}/offboard-bench-{}.json", env!("CARGO_TARGET_TMPDIR"), if full { "full" } else { "smoke" }));
    std::fs::write(&path, serde_json::to_string_pretty(&Value::Object(report)).expect("json")).expect("write the JSON report");
    println!("\nJSON: {path}");
    if !errors.is_empty() {
        eprintln!("\nincorrect results:");
        for e in &errors {
            eprintln!("  {e}");
        }
        std::process::exit(1);
    }
    println!("every correctness check passed");
}
