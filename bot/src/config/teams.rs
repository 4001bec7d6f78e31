//! `[teams]`: the bot's registration and where its approvals go. Every Bot Framework
//! address is a setting (national clouds, tests); the defaults are the public cloud's.

use serde::Deserialize;

use offboard_core::secret::Secret;

use super::{ConfigError, Secrets, key_error};

fn default_login() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_openid_metadata() -> String {
    offboard_teams::auth::OPENID_METADATA.into()
}
fn default_service_url() -> String {
    "https://smba.trafficmanager.net/teams".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsEntry {
    /// The bot's Microsoft App ID (its Entra app registration).
    pub app_id: String,
    /// The app's client secret. Required by the commands that talk to Teams; keep it in
    /// the environment: `OFFBOARD__TEAMS__APP_PASSWORD`.
    pub app_password: Option<Secret>,
    /// The Entra tenant the bot is registered in (single-tenant bots) and its channels are.
    pub tenant_id: String,
    /// The approvals channel's id (`19:…@thread.tacv2`), for tenants without routes.
    pub approvals_channel: String,
    #[serde(default = "default_login")]
    pub login: String,
    #[serde(default = "default_openid_metadata")]
    pub openid_metadata: String,
    /// Where the bot's messages go (the Bot Connector of the bot's region).
    #[serde(default = "default_service_url")]
    pub service_url: String,
}

impl TeamsEntry {
    pub(super) fn check(&self, secrets: Secrets) -> Result<(), ConfigError> {
        for (key, value) in [("teams.app_id", &self.app_id), ("teams.tenant_id", &self.tenant_id)] {
            if value.trim().is_empty() {
                return Err(key_error(key, "required: see the README, \"Teams\""));
            }
        }
        if !self.approvals_channel.starts_with("19:") {
            return Err(key_error("teams.approvals_channel", "a Teams channel id looks like 19:…@thread.tacv2"));
        }
        for (key, url) in [("teams.login", &self.login), ("teams.openid_metadata", &self.openid_metadata), ("teams.service_url", &self.service_url)] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(key_error(key, format!("`{url}` is not an http(s) address")));
            }
        }
        if secrets == Secrets::Required && self.app_password.is_none() {
            return Err(key_error("teams.app_password", "required; keep it in the environment: OFFBOARD__TEAMS__APP_PASSWORD"));
        }
        Ok(())
    }

    /// The bot's registration, for its connector token.
    pub fn bot(&self) -> Result<offboard_teams::connector::BotIdentity, ConfigError> {
        let password =
            self.app_password.clone().ok_or_else(|| key_error("teams.app_password", "required; keep it in the environment: OFFBOARD__TEAMS__APP_PASSWORD"))?;
        Ok(offboard_teams::connector::BotIdentity {
            app_id: self.app_id.clone(),
            password,
            token_url: format!("{}/{}/oauth2/v2.0/token", self.login.trim_end_matches('/'), self.tenant_id),
        })
    }
}
