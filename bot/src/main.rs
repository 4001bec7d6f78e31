//! `offboard`: the binary that wires the engine to its database and front ends.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use offboard_core::audit::Checkpoint;
use offboard_core::domain::{RunId, TenantId};
use offboard_core::store::Store;
use offboard_report::PublicKey;

mod config;
mod demo;
mod discord_register;
mod doctor;
mod evidence;
mod http;
mod ops;
mod serve;
mod teams_package;

const DEFAULT_DATABASE: &str = "sqlite://offboard.db";

#[derive(Parser)]
#[command(name = "offboard", version, about = "Offboard employees from Microsoft 365 from chat, with approvals and evidence.")]
struct Cli {
    /// Database: sqlite://FILE (created if missing), sqlite::memory: or postgres://…
    /// [default: sqlite://offboard.db]
    #[arg(long, global = true, env = "OFFBOARD_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// The Ed25519 key that signs reports; created on first use.
    /// [default: the configuration's, or offboard-signing.key]
    #[arg(long, global = true, env = "OFFBOARD_SIGNING_KEY")]
    signing_key: Option<PathBuf>,

    /// Where signed reports are kept. [default: the configuration's, or reports]
    #[arg(long, global = true, env = "OFFBOARD_REPORTS_DIR")]
    reports_dir: Option<PathBuf>,

    /// The configuration file (TOML); `OFFBOARD__SECTION__KEY` variables override it.
    #[arg(long, global = true, env = "OFFBOARD_CONFIG")]
    config: Option<PathBuf>,

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
    /// Check the configuration and print what it sets up (no secrets); exit 1 naming the
    /// first wrong key.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Request an offboarding as the CLI operator (`cli:` and your operating system user
    /// name); it is posted for approval like any other.
    Request(ops::RequestArgs),
    /// Check everything the service depends on, one line per finding; exit 1 on errors.
    Doctor,
    /// The report signing key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Make (once) and print the path of a run's signed compliance report.
    Report {
        /// The run id, e.g. ob-7k2m9x4q1d.
        run: String,
    },
    /// Check a report's signature offline: valid (exit 0), tampered (1) or signed by an
    /// unknown key (3). With --database-url, also check its audit chain head against the store.
    Verify {
        file: PathBuf,
        /// Also trust this public key (from `offboard keys show`); repeatable.
        #[arg(long)]
        trust: Vec<PublicKey>,
    },
    /// Check the templates (shipped, and overrides from DIR) and exit.
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
    },
    /// Run the service: the chat endpoints (and /healthz) on --listen, /healthz, /readyz and
    /// /metrics on --ops-listen, with workers, scheduler, chat relay and notifier (flags
    /// leave parts to other processes).
    Serve(serve::ServeArgs),
    /// The whole product on this machine, no configuration, no network: a simulated tenant,
    /// a local Slack (or Teams, or Discord: --platform), a scripted requester and approver,
    /// live updates and a verified report.
    Demo(demo::DemoArgs),
    /// Serve a simulated Microsoft 365 tenant (login, Graph, Exchange) and print its URLs.
    Sim(offboard_m365_sim::cli::SimArgs),
    /// Microsoft Teams.
    Teams {
        #[command(subcommand)]
        command: TeamsCommand,
    },
    /// Discord.
    Discord {
        #[command(subcommand)]
        command: DiscordCommand,
    },
}

#[derive(Subcommand)]
enum DiscordCommand {
    /// Register /offboard and /offboards in the configured server (or globally), from the
    /// same definitions the bot reads interactions against.
    Register(discord_register::RegisterArgs),
}

#[derive(Subcommand)]
enum TeamsCommand {
    /// Write the app package to upload to Teams, for this bot and host.
    Package(teams_package::PackageArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and check the configuration.
    Check,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print the public key and its fingerprint (creating the key if there is none).
    Show,
}

#[derive(Subcommand)]
enum TemplatesCommand {
    /// Parse every template and render it against a sample; names the file and line of a broken one.
    Check {
        #[arg(long, env = "OFFBOARD_TEMPLATE_DIR")]
        dir: Option<PathBuf>,
    },
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
    /// Cancel a run that has not finished, as the CLI operator (needs the configuration).
    Cancel { id: String },
    /// Start an approved, scheduled run now, as the CLI operator (needs the configuration).
    RunNow { id: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and every stored checkpoint; exit 1 and name the first bad
    /// entry if anything was changed, removed, inserted or reordered.
    Verify {
        /// A chain head you kept elsewhere, as SEQ:HASH (from a checkpoint message).
        #[arg(long)]
        anchor: Vec<Checkpoint>,
        /// Verify an exported JSONL file offline instead of the database.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Write the log with its hashes, in chain order, to stdout.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: evidence::ExportFormat,
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Only entries at or after this date (2026-11-01) or time (RFC 3339).
        #[arg(long, value_parser = evidence::parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Record the current chain head as a checkpoint and print it.
    Checkpoint,
}

pub(crate) fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) => format!("{}@{host}", scheme_user.split(':').next().unwrap_or("")),
        None => url.to_string(),
    }
}

/// The configuration file: `--config`, else `./offboard.toml` if there is one.
fn config_path(cli: &Cli) -> Option<PathBuf> {
    cli.config.clone().or_else(|| Some(PathBuf::from("offboard.toml")).filter(|p| p.exists()))
}

/// The configuration with the environment's overrides and then the command line's; `None`
/// after printing the one error.
fn configuration(cli: &Cli) -> Option<config::Config> {
    configuration_for(cli, config::Secrets::Required)
}

fn configuration_for(cli: &Cli, secrets: config::Secrets) -> Option<config::Config> {
    let mut cfg = config::load_for(config_path(cli).as_deref(), std::env::vars(), secrets).map_err(|e| eprintln!("{e}")).ok()?;
    if let Some(url) = &cli.database_url {
        cfg.database_url = url.clone();
    }
    if let Some(k) = &cli.signing_key {
        cfg.signing_key = k.clone();
    }
    if let Some(d) = &cli.reports_dir {
        cfg.reports_dir = d.clone();
    }
    Some(cfg)
}

/// Where the commands that only read records find the database, the signing key and the
/// reports: the command line, else the configuration (whose secrets they do not need),
/// else the defaults. A configuration that is there but does not load is an error.
struct Records {
    database_url: String,
    signing_key: PathBuf,
    reports_dir: PathBuf,
}

fn records(cli: &Cli) -> Option<Records> {
    let configured = std::env::vars().any(|(k, _)| k.starts_with("OFFBOARD__"));
    let cfg = if config_path(cli).is_some() || configured { Some(configuration_for(cli, config::Secrets::NotNeeded)?) } else { None };
    Some(Records {
        database_url: cli.database_url.clone().or_else(|| cfg.as_ref().map(|c| c.database_url.clone())).unwrap_or_else(|| DEFAULT_DATABASE.into()),
        signing_key: cli.signing_key.clone().or_else(|| cfg.as_ref().map(|c| c.signing_key.clone())).unwrap_or_else(|| "offboard-signing.key".into()),
        reports_dir: cli.reports_dir.clone().or_else(|| cfg.as_ref().map(|c| c.reports_dir.clone())).unwrap_or_else(|| "reports".into()),
    })
}

/// The database, sealing and checking the audit chain with the key derived from the
/// signing key when that key exists (it is never created here).
async fn open(url: &str, signing_key: &std::path::Path) -> anyhow::Result<Store> {
    let store = Store::connect(url).await.with_context(|| format!("opening the database {}", redact(url)))?;
    Ok(match signing_key.exists() {
        true => store.with_audit_key(offboard_report::ReportKey::load(signing_key)?.audit_key()),
        false => store,
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout();
    // Commands that need no database, or only when one is named.
    match &cli.command {
        Command::Sim(args) => {
            let _sim = offboard_m365_sim::cli::start(args, &mut out).await?;
            tokio::signal::ctrl_c().await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Demo(args) => return demo::run(args, &mut out).await,
        Command::Teams { command: TeamsCommand::Package(args) } => return teams_package::run(args, &mut out),
        Command::Discord { command: DiscordCommand::Register(args) } => {
            let Some(cfg) = configuration(&cli) else { return Ok(ExitCode::from(1)) };
            return discord_register::run(&cfg, args, &mut out).await;
        }
        Command::Serve(args) => {
            let Some(cfg) = configuration(&cli) else { return Ok(ExitCode::from(1)) };
            init_logs(cfg.log.json, cfg.log.level.as_deref());
            return serve::run(cfg, args).await;
        }
        Command::Request(args) => {
            let Some(cfg) = configuration(&cli) else { return Ok(ExitCode::from(1)) };
            return ops::request(&cfg, args, &mut out).await;
        }
        Command::Runs { command: RunsCommand::Cancel { id } } | Command::Runs { command: RunsCommand::RunNow { id } } => {
            let Some(cfg) = configuration(&cli) else { return Ok(ExitCode::from(1)) };
            let cancel = matches!(cli.command, Command::Runs { command: RunsCommand::Cancel { .. } });
            return ops::act(&cfg, id, cancel, &mut out).await;
        }
        Command::Doctor => {
            let Some(cfg) = configuration(&cli) else { return Ok(ExitCode::from(1)) };
            return doctor::run(&cfg, &mut out).await;
        }
        Command::Config { command: ConfigCommand::Check } => {
            let Some(cfg) = configuration(&cli) else { return Ok(ExitCode::from(1)) };
            writeln!(out, "{}", cfg.summary())?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Templates { command: TemplatesCommand::Check { dir } } => return evidence::templates_check(dir.as_deref(), &mut out),
        _ => {}
    }
    let Some(Records { database_url: url, signing_key: key, reports_dir: dir }) = records(&cli) else { return Ok(ExitCode::from(1)) };
    match &cli.command {
        Command::Keys { command: KeysCommand::Show } => {
            evidence::keys_show(&key, &mut out)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Audit { command: AuditCommand::Verify { file: Some(file), .. } } => return evidence::verify_export(file, &key, &mut out),
        Command::Verify { file, trust } => {
            let store = match &cli.database_url {
                Some(url) => Some(open(url, &key).await?),
                None => None,
            };
            return evidence::verify(file, &key, trust, store.as_ref(), &mut out).await;
        }
        _ => {}
    }
    if matches!(cli.command, Command::Report { .. }) {
        // Reports are signed, and their runs' entries checked, with this key.
        offboard_report::ReportKey::load_or_create(&key)?;
    }
    let store = open(&url, &key).await?;
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
        Command::Report { run } => {
            evidence::report(&store, &run, &key, &dir, &mut out).await?;
        }
        Command::Audit { command: AuditCommand::Export { format, tenant, since } } => {
            evidence::export(&store, format, tenant.as_ref(), since, &mut out).await?;
        }
        Command::Audit { command: AuditCommand::Verify { anchor, .. } } => match store.verify_audit(&anchor).await? {
            Ok(v) => {
                let head = v.head.as_ref().map(|h| format!("{}:{}", h.seq, h.hash)).unwrap_or_else(|| "empty".into());
                println!("audit log intact: {} entries, head {head}", v.entries);
                println!("guarantee: {}", v.guarantee());
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
        Command::Sim(_)
        | Command::Demo(_)
        | Command::Serve(_)
        | Command::Doctor
        | Command::Teams { .. }
        | Command::Discord { .. }
        | Command::Request(_)
        | Command::Runs { command: RunsCommand::Cancel { .. } | RunsCommand::RunNow { .. } }
        | Command::Config { .. }
        | Command::Keys { .. }
        | Command::Templates { .. }
        | Command::Verify { .. } => {
            unreachable!("handled before the database is opened")
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    use offboard_core::clock::{Clock, SystemClock};
    SystemClock.now()
}

/// Logs go to stderr; `OFFBOARD_LOG` overrides the level.
fn init_logs(json: bool, level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OFFBOARD_LOG").unwrap_or_else(|_| level.unwrap_or("warn").into());
    // Colours only for a person at a terminal, never into a file or a log collector.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    let _ = if json { logs.json().try_init() } else { logs.try_init() };
}

#[tokio::main]
async fn main() -> ExitCode {
    // The database, the reports, the keys and the drafts are for this account alone: files
    // this process creates are 0600, directories 0700.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        init_logs(false, None);
    }
    match run(cli).await {
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
