//! `offboard`: the binary that wires the engine to its database and front ends.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use offboard_core::audit::Checkpoint;
use offboard_core::domain::RunId;
use offboard_core::store::Store;

#[derive(Parser)]
#[command(name = "offboard", version, about = "Offboard employees from Microsoft 365 from chat, with approvals and evidence.")]
struct Cli {
    /// Database: sqlite://FILE (created if missing), sqlite::memory: or postgres://…
    #[arg(long, global = true, env = "OFFBOARD_DATABASE_URL", default_value = "sqlite://offboard.db", hide_env_values = true)]
    database_url: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply database migrations and exit.
    Migrate,
    /// Look at runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Serve a simulated Microsoft 365 tenant (login, Graph, Exchange) and print its URLs.
    Sim(offboard_m365_sim::cli::SimArgs),
}

#[derive(Subcommand)]
enum RunsCommand {
    /// Recent runs, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One run: its plan, approvals and every step's outcome.
    Show { id: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and every stored checkpoint; exit 1 and name the first bad
    /// entry if anything was changed, removed, inserted or reordered.
    Verify {
        /// A chain head you kept elsewhere, as SEQ:HASH (from a checkpoint message).
        #[arg(long)]
        anchor: Vec<Checkpoint>,
    },
    /// Record the current chain head as a checkpoint and print it.
    Checkpoint,
}

fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) => format!("{}@{host}", scheme_user.split(':').next().unwrap_or("")),
        None => url.to_string(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Sim(args) = &cli.command {
        let _sim = offboard_m365_sim::cli::start(args, &mut std::io::stdout()).await?;
        tokio::signal::ctrl_c().await?;
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::connect(&cli.database_url).await.with_context(|| format!("opening the database {}", redact(&cli.database_url)))?;
    match cli.command {
        Command::Migrate => println!("migrations applied ({})", store.backend()),
        Command::Runs { command: RunsCommand::List { limit } } => {
            let runs = store.list_runs(None, limit).await?;
            if runs.is_empty() {
                println!("no runs yet");
            }
            for r in runs {
                println!("{}  {:<24} {:<18} {}  by {}", r.id, r.state.label(), r.tenant, r.target_upn, r.requester_name);
            }
        }
        Command::Runs { command: RunsCommand::Show { id } } => {
            let id = RunId::parse(&id)?;
            let run = store.run(&id).await?;
            println!("{}  {} ({})  {}", run.id, run.target_name, run.target_upn, run.state.label());
            println!("tenant {}  requested by {}  plan {}", run.tenant, run.requester_name, run.plan_hash.short());
            for a in store.approvals(&id).await? {
                println!("approved by {} at {}", a.approver_name, a.at.format("%Y-%m-%d %H:%M:%S UTC"));
            }
            for s in store.steps(&id).await? {
                let detail = s.outcome.as_ref().map(|o| o.summary().to_string()).unwrap_or_default();
                println!("  {:<16} {:<28} {detail}", s.state.as_str(), s.key);
            }
        }
        Command::Audit { command: AuditCommand::Verify { anchor } } => match store.verify_audit(&anchor).await? {
            Ok(v) => {
                let head = v.head.map(|h| format!("{}:{}", h.seq, h.hash)).unwrap_or_else(|| "empty".into());
                println!("audit log intact: {} entries, head {head}", v.entries);
            }
            Err(t) => {
                eprintln!("audit log TAMPERED: {t}");
                return Ok(ExitCode::from(1));
            }
        },
        Command::Audit { command: AuditCommand::Checkpoint } => match store.checkpoint(chrono_now()).await? {
            Some(c) => println!("{}:{}", c.seq, c.hash),
            None => println!("the audit log is empty"),
        },
        Command::Sim(_) => unreachable!("handled before the database is opened"),
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    use offboard_core::clock::{Clock, SystemClock};
    SystemClock.now()
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("OFFBOARD_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_not_printed() {
        assert_eq!(redact("postgres://offboard:s3cret@db:5432/offboard"), "postgres@db:5432/offboard");
        assert_eq!(redact("sqlite://offboard.db"), "sqlite://offboard.db");
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
