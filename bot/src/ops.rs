//! Run operations from the command line, decided and audited like chat clicks: the actor
//! is `cli:<login name>`, and needs a role binding with `platform = "cli"`.

use std::io::Write;
use std::process::ExitCode;

use chrono::NaiveDateTime;
use offboard_core::chat::PlanPreview;
use offboard_core::domain::{Actor, PresetName, RunId, TenantId};
use offboard_core::request::{Request, Schedule};

use crate::config::Config;
use crate::serve::wire;

#[derive(clap::Args)]
pub struct RequestArgs {
    /// The user to offboard (UPN or object id).
    user: String,
    /// The tenant (its key); defaults to the one whose domain the UPN has.
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long, default_value = "standard-leaver")]
    preset: String,
    /// Start at this local time (YYYY-MM-DD HH:MM) once approved; needs --tz.
    #[arg(long, requires = "tz")]
    at: Option<String>,
    /// The time zone of --at, e.g. Europe/London.
    #[arg(long)]
    tz: Option<String>,
    /// Why this person is offboarded; recorded in the report.
    #[arg(long)]
    reason: Option<String>,
    /// The ticket this request answers.
    #[arg(long)]
    ticket: Option<String>,
}

/// The operating system's account running this command: the kernel's user id, not an
/// environment variable anyone can set.
pub fn operator() -> anyhow::Result<Actor> {
    let uid = nix::unistd::getuid();
    let name = match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => format!("uid{uid}"),
    };
    Ok(Actor { platform: "cli".into(), id: name.clone(), name, groups: vec![] })
}

pub async fn request(cfg: &Config, args: &RequestArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let w = wire(cfg).await?;
    let tenant: TenantId = w.svc.resolve_tenant(args.tenant.as_deref(), &args.user)?.id.clone();
    let preset = PresetName::parse(&args.preset)?;
    let options = w.svc.preset_options(&tenant, &preset)?;
    let schedule = match (&args.at, &args.tz) {
        (Some(at), Some(tz)) => Schedule::At {
            local: NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M").map_err(|_| anyhow::anyhow!("--at: write the time as YYYY-MM-DD HH:MM"))?,
            tz: tz.clone(),
        },
        _ => Schedule::Now,
    };
    let req = Request {
        preset: Some(preset),
        schedule,
        reason: args.reason.clone(),
        ticket: args.ticket.clone(),
        ..Request::now(tenant, args.user.clone(), options)
    };
    let run = w.svc.request(&operator()?, req).await?;
    let p = PlanPreview::from_run(&run, &[]);
    writeln!(out, "run {} for {} ({}) in {}: awaiting {} approval(s)", run.id, p.target_name, p.target_upn, p.tenant, p.approvals_needed)?;
    for l in &p.lines {
        match &l.skip {
            Some(why) => writeln!(out, "  - {}: skipped ({why})", l.title)?,
            None => writeln!(out, "  - {}: {}{}", l.title, l.text, if l.high_risk { " [high risk]" } else { "" })?,
        }
    }
    w.store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `cancel` or `run-now`, as the CLI operator.
pub async fn act(cfg: &Config, id: &str, cancel: bool, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let w = wire(cfg).await?;
    let id = RunId::parse(id)?;
    let who = operator()?;
    let result = if cancel { w.svc.cancel(&who, &id).await } else { w.svc.run_now(&who, &id).await };
    w.store.close().await;
    match result {
        Ok(()) => {
            writeln!(out, "run {id}: {}", if cancel { "cancelled; steps already done stay done" } else { "starts now" })?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            writeln!(out, "run {id}: refused: {e}")?;
            Ok(ExitCode::from(1))
        }
    }
}
