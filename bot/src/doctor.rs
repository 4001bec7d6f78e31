//! `offboard doctor`: what would stop the service working, one line per finding, checked
//! against the real systems: the database, the templates, the signing key, each tenant's
//! sign-in and every permission and Entra role the steps need, the Slack token, and for
//! Teams the bot's sign-in, Bot Framework's keys, the approvals channel and the report mode.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use offboard_core::chat::ChatError;
use offboard_core::chat::files::FilingError;
use offboard_core::clock::SystemClock;
use offboard_core::plan::StepKind;
use offboard_core::store::Store;
use offboard_core::templates::Templates;
use offboard_m365::M365;
use offboard_m365::error::ApiError;
use offboard_report::ReportKey;

use crate::config::Config;

/// The error codes with which Slack refuses a token itself.
const SLACK_REFUSED_TOKEN: &[&str] = &["invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"];

/// A failed call named for what it is.
fn what_failed(e: &ApiError) -> String {
    match e {
        ApiError::NotSent(why) => format!("is unreachable: {why}"),
        ApiError::Forbidden(d) => format!("refused the app (missing permission or role): {d}"),
        ApiError::Auth(a) => format!("sign-in failed: {a}"),
        ApiError::RetryAfter { .. } | ApiError::Paced { .. } => format!("is throttling this app right now: {e}"),
        ApiError::Retryable(d) | ApiError::Permanent(d) | ApiError::NotFound(d) => format!("answered with an error: {d}"),
    }
}

pub async fn run(cfg: &Config, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let mut errors = 0;
    let mut line = |ok: bool, text: String| -> std::io::Result<()> {
        if !ok {
            errors += 1;
        }
        writeln!(out, "{} {text}", if ok { "ok   " } else { "ERROR" })
    };
    line(true, "configuration: valid".into())?;
    match Store::connect(&cfg.database_url).await {
        Ok(store) => {
            let ping = store.ping().await;
            line(
                ping.is_ok(),
                format!("database {}: {}", crate::redact(&cfg.database_url), ping.map_or_else(|e| e.to_string(), |_| "reachable, migrations applied".into())),
            )?;
            store.close().await;
        }
        Err(e) => line(false, format!("database {}: {e}", crate::redact(&cfg.database_url)))?,
    }
    match Templates::load(cfg.template_dir.as_deref(), offboard_notify::webhook::TEMPLATES) {
        Ok(_) => line(true, "templates: all parse and render".into())?,
        Err(e) => line(false, e.to_string())?,
    }
    if cfg.signing_key.exists() {
        match ReportKey::load(&cfg.signing_key) {
            Ok(k) => line(true, format!("signing key {}: {}", cfg.signing_key.display(), k.public().fingerprint()))?,
            Err(e) => line(false, e.to_string())?,
        }
    } else {
        line(true, format!("signing key {}: not created yet; the first report creates it", cfg.signing_key.display()))?;
    }

    let m365 = Arc::new(M365::new(cfg.endpoints(), cfg.m365_tenants()?, Arc::new(SystemClock), cfg.m365_settings()));
    if cfg.tenants.is_empty() {
        line(false, "tenants: none configured".into())?;
    }
    for t in cfg.tenants() {
        let p = m365.preflight(&t.id, &StepKind::ALL).await;
        if let Some(e) = &p.sign_in_error {
            line(false, format!("tenant {}: cannot sign in: {e}", t.id))?;
            continue;
        }
        // Signed in is not reached: read once from each service the steps use.
        let mut reached = true;
        for (service, r) in m365.reach(&t.id).await {
            if let Err(e) = r {
                reached = false;
                line(false, format!("tenant {}: {service} {}", t.id, what_failed(&e)))?;
            }
        }
        if p.missing.is_empty() && reached {
            line(true, format!("tenant {}: signed in; Graph and Exchange answer; every permission and role the steps need is granted", t.id))?;
        }
        // One line per missing grant, naming what needs it.
        let mut needs: Vec<(String, Vec<String>)> = Vec::new();
        for m in &p.missing {
            match needs.iter_mut().find(|(n, _)| *n == m.need) {
                Some((_, purposes)) => purposes.push(m.purpose.clone()),
                None => needs.push((m.need.clone(), vec![m.purpose.clone()])),
            }
        }
        for (need, purposes) in needs {
            line(false, format!("tenant {}: missing {need} (needed for {})", t.id, purposes.join(", ")))?;
        }
    }
    match &cfg.slack {
        Some(s) => match s.secrets().map_err(anyhow::Error::from).and_then(|(_, token)| Ok(offboard_slack::api::SlackApi::new(&s.api_url, token)?)) {
            Ok(api) => {
                match api.auth_test().await {
                    Ok(team) => line(true, format!("slack: bot token accepted by {team}"))?,
                    Err(ChatError::Permanent(code)) if SLACK_REFUSED_TOKEN.contains(&code.as_str()) => {
                        line(false, format!("slack: the bot token was refused ({code}): reinstall the app and set slack.bot_token"))?
                    }
                    Err(ChatError::Permanent(code)) => line(false, format!("slack: {} refused the check: {code}", s.api_url))?,
                    Err(e) => line(false, format!("slack: {} is unreachable: {e}", s.api_url))?,
                }
                if cfg.access().names_groups_on("slack") {
                    match api.user_groups().await {
                        Ok(groups) => line(true, format!("slack: {} user groups readable (roles are bound to groups)", groups.len()))?,
                        Err(ChatError::Permanent(code)) => line(
                            false,
                            format!(
                                "slack: roles are bound to user groups, but Slack refuses to list them ({code}): those roles grant nothing until it is fixed"
                            ),
                        )?,
                        Err(e) => line(false, format!("slack: user groups cannot be read: {e}"))?,
                    }
                }
            }
            Err(e) => line(false, format!("slack: {e}"))?,
        },
        None => line(true, "slack: not configured".into())?,
    }
    match &cfg.teams {
        Some(t) => {
            let clock: std::sync::Arc<dyn offboard_core::clock::Clock> = std::sync::Arc::new(offboard_core::clock::SystemClock);
            match t.bot() {
                Ok(bot) => match offboard_teams::connector::Connector::new(bot, &t.service_url, clock.clone()).sign_in().await {
                    Ok(()) => line(true, format!("teams: the bot {} signs in to tenant {}", t.app_id, t.tenant_id))?,
                    Err(ChatError::Permanent(why)) => line(false, format!("teams: {why}: check teams.app_id, teams.tenant_id and the app password"))?,
                    Err(e) => line(false, format!("teams: {} is unreachable: {e}", t.login))?,
                },
                Err(e) => line(false, format!("teams: {e}"))?,
            }
            match offboard_teams::auth::Verifier::new(&t.app_id, &t.openid_metadata, clock).keys_for_teams().await {
                Ok(0) => line(false, format!("teams: {} lists no key for Teams: no activity could be verified", t.openid_metadata))?,
                Ok(n) => line(true, format!("teams: Bot Framework's keys readable ({n} for Teams)"))?,
                Err(e) => line(false, format!("teams: {e}"))?,
            }
            match Store::connect(&cfg.database_url).await {
                Ok(store) => {
                    let known = store.conversation("teams", &t.approvals_channel).await;
                    store.close().await;
                    match known {
                        Ok(Some(_)) => line(true, format!("teams: the approvals channel {} is known to the bot", t.approvals_channel))?,
                        Ok(None) => line(
                            false,
                            format!(
                                "teams: the bot has not seen the approvals channel {} yet: install the app in that channel's team first",
                                t.approvals_channel
                            ),
                        )?,
                        Err(e) => line(false, format!("teams: {e}"))?,
                    }
                }
                Err(e) => line(false, format!("teams: {e}"))?,
            }
            if let Some(home) = cfg.teams_directory() {
                use offboard_core::chat::memberships::GroupSource;
                let groups = cfg.access().groups_on("teams");
                if !groups.is_empty() {
                    let source = offboard_core::chat::memberships::DirectoryGroups { directory: m365.clone(), tenant: home.clone(), groups };
                    match source.read().await {
                        Ok(read) => {
                            let members: usize = read.iter().map(|(_, m)| m.len()).sum();
                            let missing = source.groups.len() - read.len();
                            let ok = missing == 0;
                            let tail = if ok { String::new() } else { format!("; {missing} named in role bindings do not exist there and grant nothing") };
                            line(ok, format!("teams: {} Entra groups readable in {home} ({members} members){tail}", read.len()))?
                        }
                        Err(e) => line(false, format!("teams: {}", e.problem))?,
                    }
                }
            }
            match &cfg.public_url {
                Some(u) => {
                    let links = format!("teams: reports are posted as signed links under {u}");
                    match cfg.teams_directory() {
                        None => line(
                            true,
                            format!(
                                "{links}, without a copy in the channel's Files: no [[tenants]] entry has directory_id = teams.tenant_id (the bot's home tenant)"
                            ),
                        )?,
                        Some(home) => match offboard_m365::files::TeamsFiles::new(m365.clone(), home.clone()).granted(true).await {
                            Ok(permission) => line(true, format!("{links}, with a copy in the channel's Files ({home} grants {permission})"))?,
                            Err(FilingError::NotGranted(how)) => {
                                line(true, format!("{links}, without a copy in the channel's Files: to keep one there, {how}"))?
                            }
                            Err(FilingError::Failed(why)) => line(false, format!("{links}; whether a copy can go into the channel's Files is unknown: {why}"))?,
                        },
                    }
                }
                None => line(false, "teams: public_url is not set, so reports cannot reach Teams (bots cannot upload into a channel)".into())?,
            }
        }
        None => line(true, "teams: not configured".into())?,
    }
    match &cfg.discord {
        Some(d) => match d.api() {
            Ok(api) => match api.me().await {
                Ok((bot, name)) => {
                    line(true, format!("discord: the bot {name} signs in"))?;
                    match api.registered(&d.guild_id).await {
                        Ok(names) if [offboard_discord::commands::START, offboard_discord::commands::MANAGE].iter().all(|c| names.iter().any(|n| n == c)) => {
                            line(true, format!("discord: /offboard and /offboards are registered in server {}", d.guild_id))?
                        }
                        Ok(_) => line(false, format!("discord: the commands are not registered in server {}: run offboard discord register", d.guild_id))?,
                        Err(e) => line(false, format!("discord: the commands of server {} cannot be read: {e}", d.guild_id))?,
                    }
                    match api.permissions_in(&d.guild_id, &d.approvals_channel, &bot).await {
                        Ok(held) => {
                            let missing: Vec<&str> =
                                offboard_discord::api::bits::NEEDED.iter().filter(|(bit, _)| held & bit == 0).map(|(_, name)| *name).collect();
                            if missing.is_empty() {
                                line(
                                    true,
                                    format!("discord: the bot may post, start threads and attach files in the approvals channel {}", d.approvals_channel),
                                )?
                            } else {
                                line(
                                    false,
                                    format!(
                                        "discord: in the approvals channel {} the bot lacks: {} (channel settings → Permissions)",
                                        d.approvals_channel,
                                        missing.join(", ")
                                    ),
                                )?
                            }
                        }
                        Err(e) => line(false, format!("discord: the approvals channel {} cannot be read: {e}", d.approvals_channel))?,
                    }
                }
                Err(offboard_discord::api::ApiError::Refused { status: 401, .. }) => {
                    line(false, "discord: the bot token was refused: reset it in the Developer Portal (Bot) and set OFFBOARD__DISCORD__BOT_TOKEN".into())?
                }
                Err(e) => line(false, format!("discord: {} is unreachable or refused the check: {e}", d.api_url))?,
            },
            Err(e) => line(false, format!("discord: {e}"))?,
        },
        None => line(true, "discord: not configured".into())?,
    }
    Ok(if errors == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
