//! `[discord]`: the application, its bot, and where approvals go. Ids are Discord's
//! snowflakes; the API's address is a setting (tests, proxies).

use serde::Deserialize;

use offboard_core::secret::Secret;

use super::{ConfigError, Secrets, key_error};

fn default_api() -> String {
    offboard_discord::api::DISCORD_API.into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordEntry {
    /// The application's id (Developer Portal → General Information).
    pub application_id: String,
    /// The application's public key, 64 hex digits: every interaction is verified with it.
    pub public_key: String,
    /// The bot's token. Required by the commands that talk to Discord; keep it in the
    /// environment: `OFFBOARD__DISCORD__BOT_TOKEN`.
    pub bot_token: Option<Secret>,
    /// The server the commands are registered in.
    pub guild_id: String,
    /// The channel plans are posted to for approval, for tenants without routes.
    pub approvals_channel: String,
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn snowflake(s: &str) -> bool {
    (17..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

const TOKEN_HINT: &str = "required; keep it in the environment: OFFBOARD__DISCORD__BOT_TOKEN";

impl DiscordEntry {
    pub(super) fn check(&self, secrets: Secrets) -> Result<(), ConfigError> {
        for (key, value) in
            [("discord.application_id", &self.application_id), ("discord.guild_id", &self.guild_id), ("discord.approvals_channel", &self.approvals_channel)]
        {
            if !snowflake(value) {
                return Err(key_error(key, format!("`{value}` is not a Discord id (17 to 20 digits; Developer Mode → Copy ID)")));
            }
        }
        offboard_discord::verify::PublicKey::parse(&self.public_key).map_err(|e| key_error("discord.public_key", e))?;
        if !(self.api_url.starts_with("https://") || self.api_url.starts_with("http://")) {
            return Err(key_error("discord.api_url", format!("`{}` is not an http(s) address", self.api_url)));
        }
        if secrets == Secrets::Required && self.bot_token.is_none() {
            return Err(key_error("discord.bot_token", TOKEN_HINT));
        }
        Ok(())
    }

    pub fn public_key(&self) -> offboard_discord::verify::PublicKey {
        offboard_discord::verify::PublicKey::parse(&self.public_key).expect("checked at load")
    }

    /// Discord's API as this bot.
    pub fn api(&self) -> Result<offboard_discord::api::DiscordApi, ConfigError> {
        let token = self.bot_token.clone().ok_or_else(|| key_error("discord.bot_token", TOKEN_HINT))?;
        Ok(offboard_discord::api::DiscordApi::new(&self.api_url, &self.application_id, token))
    }
}
