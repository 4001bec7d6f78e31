//! `offboard discord register`: the slash commands, from the adapter's own definitions, as a
//! bulk overwrite in the configured server (instant) or globally (`--global`, which Discord
//! may take up to an hour to show).

use std::io::Write;
use std::process::ExitCode;

use offboard_core::domain::TenantId;

use crate::config::Config;

#[derive(clap::Args)]
pub struct RegisterArgs {
    /// Register for every server the app is in, instead of `discord.guild_id`.
    #[arg(long)]
    global: bool,
}

pub async fn run(cfg: &Config, args: &RegisterArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let Some(discord) = &cfg.discord else {
        writeln!(out, "There is no [discord] section in the configuration: see the README, \"Discord\".")?;
        return Ok(ExitCode::from(1));
    };
    let api = discord.api()?;
    // Every preset any tenant has, and "none" (names only: the texts are not needed); the
    // wizard checks the choice against the tenant.
    let presets = cfg.presets(offboard_core::request::OutOfOffice { internal: String::new(), external: String::new() });
    let mut names: Vec<String> =
        cfg.tenants.iter().filter_map(|t| TenantId::parse(&t.key).ok()).flat_map(|t| presets.names(&t)).map(|n| n.to_string()).collect();
    names.push(offboard_core::chat::NO_PRESET.into());
    names.sort();
    names.dedup();
    let definitions = offboard_discord::commands::definitions(&names);
    let guild = (!args.global).then_some(discord.guild_id.as_str());
    match api.register(guild, &definitions).await {
        Ok(n) => {
            let place = guild.map(|g| format!("server {g}")).unwrap_or_else(|| "every server (global; Discord may take up to an hour)".into());
            writeln!(out, "Registered {n} commands in {place}: /{} and /{}.", offboard_discord::commands::START, offboard_discord::commands::MANAGE)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            writeln!(out, "Not registered: {e}")?;
            Ok(ExitCode::from(1))
        }
    }
}
