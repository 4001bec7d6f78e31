//! The one typed configuration: a TOML file plus environment overrides, loaded and checked
//! once at start. `OFFBOARD__SLACK__SIGNING_SECRET=…` sets `slack.signing_secret`; a value
//! that reads as TOML (a number, `true`, `["a"]`) keeps that type. Every error names the key.
//! Secrets are [`Secret`]s: they never print.
//!
//! One file for the one typed configuration: each entry beside its check and what it turns
//! into; a platform's section lives in `config/` (Teams, Discord), its tests in
//! `config/tests.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use offboard_core::chat::relay::Routes;
use offboard_core::domain::{Role, TenantId};
use offboard_core::policy::{Access, AdminTargets, LinkedPerson, ManagerApproves, Principal, RoleBinding, TenantPolicy};
use offboard_core::secret::Secret;
use offboard_core::service::Tenant;
use offboard_m365::{Credential, Endpoints, Settings, TenantConfig, Tenants};
use offboard_notify::{Channel, Format, Smtp, SmtpTls, Target, Webhook};

mod discord;
mod teams;
pub use discord::DiscordEntry;
pub use teams::TeamsEntry;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {message}")]
    Read { path: String, message: String },
    /// A file was named but says nothing: most likely the wrong file.
    #[error("the configuration {path} is empty: start from offboard.example.toml")]
    Empty { path: String },
    /// Where, not what: the line may hold a secret, so it is never echoed.
    #[error("the configuration {path} is not valid TOML at line {line}, column {column}: {message}")]
    Syntax { path: String, line: usize, column: usize, message: String },
    /// Fix the named key.
    #[error("configuration key `{key}`: {message}")]
    Key { key: String, message: String },
}

fn key_error(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Key { key: key.into(), message: message.into() }
}

fn default_database() -> String {
    "sqlite://offboard.db".into()
}
fn default_listen() -> String {
    "127.0.0.1:3000".into()
}
fn default_reports() -> PathBuf {
    "reports".into()
}
fn default_key() -> PathBuf {
    "offboard-signing.key".into()
}
fn default_true() -> bool {
    true
}
fn default_concurrency() -> usize {
    offboard_core::engine::WorkerConfig::default().concurrency
}
fn default_slack_api() -> String {
    "https://slack.com/api".into()
}
fn default_approval_hours() -> u32 {
    24
}
fn default_escalate_hours() -> Option<u32> {
    Some(4)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_database")]
    pub database_url: String,
    /// Where `offboard serve` listens.
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub template_dir: Option<PathBuf>,
    #[serde(default = "default_reports")]
    pub reports_dir: PathBuf,
    #[serde(default = "default_key")]
    pub signing_key: PathBuf,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub microsoft: Microsoft,
    #[serde(default)]
    pub tenants: Vec<TenantEntry>,
    #[serde(default)]
    pub roles: Vec<RoleEntry>,
    #[serde(default)]
    pub slack: Option<SlackEntry>,
    #[serde(default)]
    pub teams: Option<TeamsEntry>,
    #[serde(default)]
    pub discord: Option<DiscordEntry>,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub workers: Workers,
    #[serde(default)]
    pub scheduler: Scheduler,
    #[serde(default)]
    pub notify: Vec<NotifyEntry>,
    #[serde(default)]
    pub presets: Vec<PresetEntry>,
    /// One person's identities on several platforms: one person for every approval rule.
    #[serde(default)]
    pub people: Vec<PersonEntry>,
    /// Where a tenant's approval messages go on a platform.
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    /// The service's address as people reach it (`https://offboard.example.com`): report
    /// links are made on it. Without it, reports are only uploaded.
    #[serde(default)]
    pub public_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonEntry {
    /// `platform:id`, e.g. `slack:U0ADA`, `teams:<Entra object id>`, `cli:ada`.
    pub identities: Vec<String>,
    /// Their address in the directory, to find them as someone's line manager.
    #[serde(default)]
    pub upn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub tenant: String,
    /// `slack`, `teams` or `discord`.
    pub platform: String,
    /// The channel (Slack channel id, Teams channel or chat id, Discord channel id).
    pub channel: String,
}

/// A named set of wizard defaults; a tenant's own preset wins over a built-in one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetEntry {
    pub name: String,
    /// Only these tenants (keys); all when absent.
    pub tenants: Option<Vec<String>>,
    /// The wizard options, by their names in the request (`disable_sign_in = true`, …).
    pub options: toml::Table,
}

impl PresetEntry {
    /// The options, refusing names that are not options (a typo would otherwise be ignored).
    fn options(&self, i: usize) -> Result<offboard_core::request::Options, ConfigError> {
        let known = serde_json::to_value(offboard_core::request::Options::default()).expect("options serialise");
        for k in self.options.keys() {
            if known.get(k).is_none() {
                return Err(key_error(format!("presets[{i}].options.{k}"), "not a wizard option"));
            }
        }
        toml::Value::Table(self.options.clone())
            .try_into()
            .map_err(|e: toml::de::Error| key_error(format!("presets[{i}].options"), e.to_string().trim().to_string()))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `json` for one JSON object a line.
    #[serde(default)]
    pub json: bool,
    /// A tracing filter, e.g. `info` or `offboard=debug,info`.
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Microsoft {
    /// `global` (default), `us_government` or `china`; the URLs below override it.
    #[serde(default)]
    pub cloud: Option<String>,
    pub login: Option<String>,
    pub graph: Option<String>,
    pub exchange: Option<String>,
    /// Exchange admin API calls per second per tenant to start from. Microsoft publishes no
    /// limit for it, so the default is cautious; the rate then follows the tenant's answers
    /// and is kept across restarts.
    #[serde(default)]
    pub exchange_calls_per_second: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantEntry {
    /// The tenant's name in Offboard: its primary domain.
    pub key: String,
    pub name: Option<String>,
    pub directory_id: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// PEM private key file and the certificate's SHA-256 thumbprint (hex), instead of a secret.
    pub certificate_key_file: Option<PathBuf>,
    pub certificate_thumbprint: Option<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub policy: PolicyEntry,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// `allow`, `high_risk` (two approvers; default) or `exclude`.
    #[serde(default)]
    pub admins: Option<String>,
    #[serde(default)]
    pub managers_may_approve: bool,
    #[serde(default = "default_approval_hours")]
    pub approval_hours: u32,
    #[serde(default = "default_escalate_hours")]
    pub escalate_hours: Option<u32>,
    /// `no` (default), `also` (IT and the line manager) or `alone` (the line manager
    /// instead of one IT approver).
    #[serde(default)]
    pub line_manager: Option<String>,
}

impl Default for PolicyEntry {
    fn default() -> Self {
        PolicyEntry {
            admins: None,
            managers_may_approve: false,
            approval_hours: default_approval_hours(),
            escalate_hours: default_escalate_hours(),
            line_manager: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleEntry {
    /// `slack`, `teams`, `discord` or `cli`.
    pub platform: String,
    pub user: Option<String>,
    pub group: Option<String>,
    /// `viewer`, `manager`, `admin` or `owner`.
    pub role: String,
    /// Only these tenants (keys); all when absent.
    pub tenants: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackEntry {
    /// Required by the commands that talk to Slack (see [`Secrets`]).
    pub signing_secret: Option<Secret>,
    pub bot_token: Option<Secret>,
    pub approvals_channel: String,
    #[serde(default = "default_slack_api")]
    pub api_url: String,
}

impl SlackEntry {
    /// The signing secret and bot token, which [`Secrets::Required`] loading checked.
    pub fn secrets(&self) -> Result<(&Secret, &Secret), ConfigError> {
        match (&self.signing_secret, &self.bot_token) {
            (Some(s), Some(t)) => Ok((s, t)),
            (None, _) => Err(key_error("slack.signing_secret", "required; keep it in the environment: OFFBOARD__SLACK__SIGNING_SECRET")),
            (_, None) => Err(key_error("slack.bot_token", "required; keep it in the environment: OFFBOARD__SLACK__BOT_TOKEN")),
        }
    }
}

/// How `offboard serve` bounds its HTTP listeners.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// `/metrics` and `/readyz`, for operators: loopback unless said otherwise.
    #[serde(default = "default_ops_listen")]
    pub ops_listen: String,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
}

fn default_ops_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_max_connections() -> usize {
    crate::http::Limits::default().max_connections
}
fn default_header_timeout() -> u64 {
    crate::http::Limits::default().header_timeout.as_secs()
}
fn default_request_timeout() -> u64 {
    crate::http::Limits::default().request_timeout.as_secs()
}

impl Default for Http {
    fn default() -> Self {
        Http {
            ops_listen: default_ops_listen(),
            max_connections: default_max_connections(),
            header_timeout_secs: default_header_timeout(),
            request_timeout_secs: default_request_timeout(),
        }
    }
}

impl Http {
    pub fn limits(&self) -> crate::http::Limits {
        crate::http::Limits {
            max_connections: self.max_connections,
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

impl Default for Workers {
    fn default() -> Self {
        Workers { enabled: true, concurrency: default_concurrency() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduler {
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler { enabled: true }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyEntry {
    pub name: String,
    /// `webhook` or `email`.
    pub kind: String,
    #[serde(default)]
    pub events: Vec<String>,
    // Webhooks.
    pub url: Option<Secret>,
    pub format: Option<String>,
    pub secret: Option<Secret>,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    // E-mail.
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    pub smtp_tls: Option<String>,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<Secret>,
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default = "default_true")]
    pub attach_report: bool,
}

/// Whether the command needs the secrets: `serve`, `doctor` and the CLI operator's actions
/// do; the commands that only read records (runs, audit, report, verify) do not, so they
/// work where the secrets are not in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Required,
    NotNeeded,
}

/// Reads the file (if any), applies `OFFBOARD__…` overrides from `env`, and checks it,
/// secrets included.
#[cfg(test)]
pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    load_for(path, env, Secrets::Required)
}

/// [`load`], checking the secrets only when `secrets` says they are needed.
pub fn load_for(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>, secrets: Secrets) -> Result<Config, ConfigError> {
    let shown = path.map_or_else(|| "(none)".to_string(), |p| p.display().to_string());
    let mut table: toml::Table = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read { path: shown.clone(), message: e.to_string() })?;
            toml::from_str(&text).map_err(|e| {
                let at = e.span().map_or(0, |s| s.start).min(text.len());
                let line = text[..at].matches('\n').count() + 1;
                let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
                ConfigError::Syntax { path: shown.clone(), line, column, message: e.message().trim().to_string() }
            })?
        }
        None => toml::Table::new(),
    };
    if path.is_some() && table.is_empty() {
        return Err(ConfigError::Empty { path: shown });
    }
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("OFFBOARD__") else { continue };
        let keys: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        set_env(&mut table, &keys, &v).map_err(|m| key_error(keys.join("."), m))?;
    }
    let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string().lines().next().unwrap_or("").to_string();
        // A missing field is reported at its parent: name the field itself.
        let missing = message.strip_prefix("missing field `").and_then(|m| m.split('`').next());
        let key = match (path.as_str(), missing) {
            (".", Some(f)) => f.to_string(),
            (".", None) => "(top level)".to_string(),
            (p, Some(f)) => format!("{p}.{f}"),
            (p, None) => p.to_string(),
        };
        key_error(key, message)
    })?;
    config.check(secrets)?;
    Ok(config)
}

/// How an entry of a list is named in an environment variable: its key or name in lower
/// case, every character other than a letter or digit as `_` (`contoso.com` → `contoso_com`).
pub fn env_name(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// Lists of entries are addressed by their identity, not their position:
/// `OFFBOARD__TENANTS__CONTOSO_COM__CLIENT_SECRET`, `OFFBOARD__NOTIFY__OPS_HOOK__SECRET`.
fn set_env(table: &mut toml::Table, keys: &[String], raw: &str) -> Result<(), String> {
    let list = match keys.first().map(String::as_str) {
        Some("tenants") => Some(("key", "tenant")),
        Some("notify") => Some(("name", "notify target")),
        _ => None,
    };
    let Some((id_field, what)) = list.filter(|_| keys.len() > 1) else { return set(table, keys, raw) };
    let [section, entry, rest @ ..] = keys else { return Err(format!("name the {what}: {}__<{id_field}>__<setting>", keys[0].to_ascii_uppercase())) };
    if rest.is_empty() {
        return Err(format!("name the setting after the {what}"));
    }
    let entries = table.get_mut(section.as_str()).and_then(|v| v.as_array_mut());
    let Some(entries) = entries else { return Err(format!("no {what} is configured in the file to set `{}` on", rest.join("."))) };
    let known: Vec<String> = entries.iter().filter_map(|e| e.get(id_field).and_then(|v| v.as_str()).map(str::to_string)).collect();
    let Some(target) = entries.iter_mut().find(|e| e.get(id_field).and_then(|v| v.as_str()).is_some_and(|id| env_name(id) == *entry)) else {
        return Err(format!(
            "no {what} whose {id_field} reads as `{}`; configured: {}",
            entry.to_ascii_uppercase(),
            known.iter().map(|k| format!("{k} ({})", env_name(k).to_ascii_uppercase())).collect::<Vec<_>>().join(", ")
        ));
    };
    let target = target.as_table_mut().ok_or_else(|| format!("`{section}` is not a list of tables"))?;
    set(target, rest, raw)
}

fn set(table: &mut toml::Table, keys: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("an empty key")?;
    let mut t = table;
    for k in parents {
        t = t.entry(k.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new())).as_table_mut().ok_or_else(|| format!("`{k}` is not a table"))?;
    }
    let value =
        toml::from_str::<toml::Table>(&format!("v = {raw}")).ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| toml::Value::String(raw.to_string()));
    t.insert(last.clone(), value);
    Ok(())
}

impl Config {
    fn check(&self, secrets: Secrets) -> Result<(), ConfigError> {
        if let Some(file) = self.database_url.strip_prefix("sqlite://").map(|f| f.split('?').next().unwrap_or(f))
            && let Some(dir) = Path::new(file).parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(key_error("database_url", format!("the directory {} does not exist: create it, or name another", dir.display())));
        }
        if self.http.max_connections == 0 {
            return Err(key_error("http.max_connections", "at least 1"));
        }
        for (k, v) in [("http.header_timeout_secs", self.http.header_timeout_secs), ("http.request_timeout_secs", self.http.request_timeout_secs)] {
            if !(1..=300).contains(&v) {
                return Err(key_error(k, format!("{v} is not between 1 and 300 seconds")));
            }
        }
        if let Some(c) = &self.microsoft.cloud
            && !["global", "us_government", "china"].contains(&c.as_str())
        {
            return Err(key_error("microsoft.cloud", format!("`{c}` is not global, us_government or china")));
        }
        if let Some(r) = self.microsoft.exchange_calls_per_second
            && !(r.is_finite() && (0.1..=1_000.0).contains(&r))
        {
            return Err(key_error("microsoft.exchange_calls_per_second", format!("{r} is not between 0.1 and 1000")));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            let k = |f: &str| format!("tenants[{i}].{f}");
            TenantId::parse(&t.key).map_err(|e| key_error(k("key"), e.to_string()))?;
            if t.directory_id.trim().is_empty() {
                return Err(key_error(k("directory_id"), "the tenant's directory (tenant) id is required"));
            }
            match (&t.client_secret, &t.certificate_key_file, &t.certificate_thumbprint) {
                (Some(_), None, None) => {}
                (None, Some(_), Some(_)) => {}
                (Some(_), _, _) => return Err(key_error(k("client_secret"), "give a client secret or a certificate, not both")),
                (None, None, None) if secrets == Secrets::NotNeeded => {}
                (None, None, None) => {
                    return Err(key_error(
                        k("client_secret"),
                        format!(
                            "a client secret (or certificate_key_file + certificate_thumbprint) is required; from the environment: OFFBOARD__TENANTS__{}__CLIENT_SECRET",
                            env_name(&t.key).to_ascii_uppercase()
                        ),
                    ));
                }
                _ => return Err(key_error(k("certificate_thumbprint"), "a certificate needs both certificate_key_file and certificate_thumbprint")),
            }
            if let Some(a) = &t.policy.admins
                && !["allow", "high_risk", "exclude"].contains(&a.as_str())
            {
                return Err(key_error(k("policy.admins"), format!("`{a}` is not allow, high_risk or exclude")));
            }
            if let Some(m) = &t.policy.line_manager
                && !["no", "also", "alone"].contains(&m.as_str())
            {
                return Err(key_error(k("policy.line_manager"), format!("`{m}` is not no, also or alone")));
            }
        }
        for (i, r) in self.roles.iter().enumerate() {
            let k = |f: &str| format!("roles[{i}].{f}");
            Role::parse(&r.role).map_err(|e| key_error(k("role"), e.to_string()))?;
            if r.user.is_some() == r.group.is_some() {
                return Err(key_error(k("user"), "give exactly one of user or group"));
            }
            for t in r.tenants.iter().flatten() {
                if !self.tenants.iter().any(|c| &c.key == t) {
                    return Err(key_error(k("tenants"), format!("`{t}` is not a configured tenant")));
                }
            }
            if r.platform == "teams"
                && let Some(g) = &r.group
            {
                if offboard_core::domain::ObjectId::parse(g).is_err() {
                    return Err(key_error(k("group"), format!("`{g}` is not an Entra group's object id")));
                }
                if self.teams_directory().is_none() {
                    let home = self.teams.as_ref().map(|t| t.tenant_id.as_str()).unwrap_or("teams.tenant_id");
                    return Err(key_error(
                        k("group"),
                        format!(
                            "Entra groups are read from the bot's home tenant ({home}), which no [[tenants]] entry has as its directory_id: add that tenant"
                        ),
                    ));
                }
            }
        }
        if let Some(t) = &self.teams {
            t.check(secrets)?;
        }
        if let Some(d) = &self.discord {
            d.check(secrets)?;
        }
        if let Some(s) = &self.slack {
            if s.approvals_channel.trim().is_empty() {
                return Err(key_error("slack.approvals_channel", "the channel id where plans are posted for approval is required"));
            }
            if secrets == Secrets::Required {
                for (key, value, env) in [
                    ("slack.signing_secret", &s.signing_secret, "OFFBOARD__SLACK__SIGNING_SECRET"),
                    ("slack.bot_token", &s.bot_token, "OFFBOARD__SLACK__BOT_TOKEN"),
                ] {
                    if value.is_none() {
                        return Err(key_error(key, format!("required; keep it in the environment: {env}")));
                    }
                }
            }
        }
        for (i, n) in self.notify.iter().enumerate() {
            self.notify_target(i, n)?;
        }
        let platforms = ["slack", "teams", "discord", "cli"];
        for (i, p) in self.people.iter().enumerate() {
            for id in &p.identities {
                if !id.split_once(':').is_some_and(|(pl, rest)| platforms.contains(&pl) && !rest.is_empty()) {
                    return Err(key_error(format!("people[{i}].identities"), format!("`{id}` is not platform:id (slack, teams, discord or cli)")));
                }
                if self.people.iter().take(i).any(|q| q.identities.contains(id)) {
                    return Err(key_error(format!("people[{i}].identities"), format!("`{id}` is linked to two people")));
                }
            }
        }
        let mut seen = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            if !self.tenants.iter().any(|t| t.key == r.tenant) {
                return Err(key_error(format!("routes[{i}].tenant"), format!("`{}` is not a configured tenant", r.tenant)));
            }
            if !platforms[..3].contains(&r.platform.as_str()) {
                return Err(key_error(format!("routes[{i}].platform"), format!("`{}` is not slack, teams or discord", r.platform)));
            }
            if seen.contains(&(&r.tenant, &r.platform)) {
                return Err(key_error(format!("routes[{i}]"), format!("{} already has a route on {}", r.tenant, r.platform)));
            }
            seen.push((&r.tenant, &r.platform));
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(key_error("public_url", format!("`{u}` is not an http(s) address")));
        }
        for (i, p) in self.presets.iter().enumerate() {
            offboard_core::domain::PresetName::parse(&p.name).map_err(|e| key_error(format!("presets[{i}].name"), e.to_string()))?;
            p.options(i)?;
            for t in p.tenants.iter().flatten() {
                if !self.tenants.iter().any(|c| &c.key == t) {
                    return Err(key_error(format!("presets[{i}].tenants"), format!("`{t}` is not a configured tenant")));
                }
            }
        }
        Ok(())
    }

    pub fn endpoints(&self) -> Endpoints {
        let base = match self.microsoft.cloud.as_deref() {
            Some("us_government") => Endpoints::us_government(),
            Some("china") => Endpoints::china(),
            _ => Endpoints::global(),
        };
        let m = &self.microsoft;
        Endpoints {
            login: m.login.clone().unwrap_or(base.login),
            graph: m.graph.clone().unwrap_or(base.graph),
            exchange: m.exchange.clone().unwrap_or(base.exchange),
            ..base
        }
    }

    /// How the Microsoft 365 client paces itself and verifies.
    pub fn m365_settings(&self) -> Settings {
        let mut settings = Settings::default();
        if let Some(r) = self.microsoft.exchange_calls_per_second {
            settings.limits.exchange_per_s = r;
        }
        settings
    }

    pub fn tenants(&self) -> Vec<Tenant> {
        self.tenants
            .iter()
            .map(|t| Tenant {
                id: TenantId::parse(&t.key).expect("checked at load"),
                name: t.name.clone().unwrap_or_else(|| t.key.clone()),
                domains: if t.domains.is_empty() { vec![t.key.clone()] } else { t.domains.clone() },
                policy: TenantPolicy {
                    admins: match t.policy.admins.as_deref() {
                        Some("allow") => AdminTargets::Allow,
                        Some("exclude") => AdminTargets::Exclude,
                        _ => AdminTargets::HighRisk,
                    },
                    managers_may_approve: t.policy.managers_may_approve,
                    line_manager: match t.policy.line_manager.as_deref() {
                        Some("also") => ManagerApproves::Also,
                        Some("alone") => ManagerApproves::Alone,
                        _ => ManagerApproves::No,
                    },
                    approval_ttl: chrono::Duration::hours(t.policy.approval_hours as i64),
                    escalate_after: t.policy.escalate_hours.map(|h| chrono::Duration::hours(h as i64)),
                    ..TenantPolicy::default()
                },
            })
            .collect()
    }

    /// The Microsoft 365 side of each tenant; reads certificate key files.
    pub fn m365_tenants(&self) -> Result<Tenants, ConfigError> {
        let mut out = Vec::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let credential = match (&t.client_secret, &t.certificate_key_file, &t.certificate_thumbprint) {
                (Some(s), _, _) => Credential::Secret(s.clone()),
                (None, Some(file), Some(thumb)) => {
                    let pem = std::fs::read_to_string(file)
                        .map_err(|e| key_error(format!("tenants[{i}].certificate_key_file"), format!("{}: {e}", file.display())))?;
                    Credential::Certificate { private_key_pem: Secret::new(pem), thumbprint_sha256: thumb.clone() }
                }
                _ => return Err(key_error(format!("tenants[{i}].client_secret"), "a client secret or certificate is required to sign in")),
            };
            out.push(TenantConfig {
                key: TenantId::parse(&t.key).expect("checked at load"),
                directory_id: t.directory_id.clone(),
                client_id: t.client_id.clone(),
                credential,
                domains: if t.domains.is_empty() { vec![t.key.clone()] } else { t.domains.clone() },
            });
        }
        Ok(Tenants::new(out))
    }

    /// The configured presets over the built-in ones, with the out-of-office defaults.
    pub fn presets(&self, out_of_office: offboard_core::request::OutOfOffice) -> offboard_core::request::Presets {
        let mut presets = offboard_core::request::Presets::default().with_out_of_office(out_of_office);
        for (i, p) in self.presets.iter().enumerate() {
            let name = offboard_core::domain::PresetName::parse(&p.name).expect("checked at load");
            let options = p.options(i).expect("checked at load");
            let tenants: Vec<&str> = match &p.tenants {
                Some(ts) => ts.iter().map(String::as_str).collect(),
                None => self.tenants.iter().map(|t| t.key.as_str()).collect(),
            };
            for t in tenants {
                presets.insert(TenantId::parse(t).expect("checked at load"), name.clone(), options.clone());
            }
        }
        presets
    }

    /// The configured tenant whose directory Teams users are in (the bot's home tenant):
    /// where the Entra groups that role bindings name are read.
    pub fn teams_directory(&self) -> Option<TenantId> {
        let home = &self.teams.as_ref()?.tenant_id;
        let t = self.tenants.iter().find(|t| t.directory_id.eq_ignore_ascii_case(home))?;
        TenantId::parse(&t.key).ok()
    }

    pub fn access(&self) -> Access {
        Access {
            bindings: self
                .roles
                .iter()
                .map(|r| RoleBinding {
                    principal: match (&r.user, &r.group) {
                        (Some(u), _) => Principal::User { platform: r.platform.clone(), id: u.clone() },
                        (_, Some(g)) => Principal::Group { platform: r.platform.clone(), id: g.clone() },
                        _ => unreachable!("checked at load"),
                    },
                    role: Role::parse(&r.role).expect("checked at load"),
                    tenants: r.tenants.as_ref().map(|ts| ts.iter().filter_map(|t| TenantId::parse(t).ok()).collect()),
                })
                .collect(),
            people: self.people.iter().map(|p| LinkedPerson { identities: p.identities.clone(), upn: p.upn.clone() }).collect(),
        }
    }

    /// Where each tenant's approvals go, per platform; a platform's own approvals channel
    /// for tenants without a route of their own.
    pub fn routes(&self) -> Routes {
        let mut routes = Routes::default();
        for r in &self.routes {
            routes.add(TenantId::parse(&r.tenant).expect("checked at load"), &r.platform, &r.channel);
        }
        if let Some(t) = &self.teams {
            routes.default_for("teams", &t.approvals_channel);
        }
        if let Some(d) = &self.discord {
            routes.default_for("discord", &d.approvals_channel);
        }
        if let Some(s) = &self.slack {
            routes.default_for("slack", &s.approvals_channel);
        }
        routes
    }

    fn notify_target(&self, i: usize, n: &NotifyEntry) -> Result<Target, ConfigError> {
        let k = |f: &str| format!("notify[{i}].{f}");
        for e in &n.events {
            if !offboard_notify::EVENTS.contains(&e.as_str()) {
                return Err(key_error(k("events"), format!("`{e}` is not an event; they are {}", offboard_notify::EVENTS.join(", "))));
            }
        }
        let channel = match n.kind.as_str() {
            "webhook" => Channel::Webhook(Webhook {
                url: n.url.clone().ok_or_else(|| key_error(k("url"), "a webhook needs a url"))?,
                format: Format::parse(n.format.as_deref().unwrap_or("generic")).map_err(|e| key_error(k("format"), e))?,
                secret: n.secret.clone().ok_or_else(|| key_error(k("secret"), "a webhook needs a signing secret"))?,
                headers: n.headers.iter().map(|(h, v)| (h.clone(), v.clone())).collect(),
            }),
            "email" => Channel::Email(Smtp {
                host: n.smtp_host.clone().ok_or_else(|| key_error(k("smtp_host"), "an e-mail target needs smtp_host"))?,
                tls: match n.smtp_tls.as_deref().unwrap_or("starttls") {
                    "starttls" => SmtpTls::StartTls,
                    "tls" => SmtpTls::Tls,
                    "none" => SmtpTls::None,
                    other => return Err(key_error(k("smtp_tls"), format!("`{other}` is not starttls, tls or none"))),
                },
                port: n.smtp_port.unwrap_or(587),
                username: n.smtp_username.clone(),
                password: n.smtp_password.clone(),
                from: n.from.clone().ok_or_else(|| key_error(k("from"), "an e-mail target needs a from address"))?,
                to: if n.to.is_empty() { return Err(key_error(k("to"), "an e-mail target needs at least one recipient")) } else { n.to.clone() },
                attach_report: n.attach_report,
            }),
            other => return Err(key_error(k("kind"), format!("`{other}` is not webhook or email"))),
        };
        let events = if n.events.is_empty() && n.kind == "email" { vec!["run.finished".into()] } else { n.events.clone() };
        Ok(Target { name: n.name.clone(), events, channel, params: n.params.clone() })
    }

    pub fn notify_targets(&self) -> Vec<Target> {
        self.notify.iter().enumerate().map(|(i, n)| self.notify_target(i, n).expect("checked at load")).collect()
    }

    /// One line per part, for `offboard config check`; no secret appears.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "configuration valid\n  database   {}\n  listen     {} (operators: {})\n",
            crate::redact(&self.database_url),
            self.listen,
            self.http.ops_listen
        );
        for t in &self.tenants {
            let how = if t.client_secret.is_some() { "client secret" } else { "certificate" };
            s.push_str(&format!("  tenant     {} (directory {}, app {}, {how})\n", t.key, t.directory_id, t.client_id));
        }
        s.push_str(&format!("  roles      {} bindings\n", self.roles.len()));
        match &self.slack {
            Some(sl) => s.push_str(&format!("  slack      approvals in {} via {}\n", sl.approvals_channel, sl.api_url)),
            None => s.push_str("  slack      off\n"),
        }
        match &self.teams {
            Some(t) => {
                s.push_str(&format!("  teams      app {} in tenant {}, approvals in {} via {}\n", t.app_id, t.tenant_id, t.approvals_channel, t.service_url))
            }
            None => s.push_str("  teams      off\n"),
        }
        match &self.discord {
            Some(d) => s.push_str(&format!(
                "  discord    application {} in server {}, approvals in {} via {}\n",
                d.application_id, d.guild_id, d.approvals_channel, d.api_url
            )),
            None => s.push_str("  discord    off\n"),
        }
        for n in &self.notify {
            s.push_str(&format!(
                "  notify     {} ({}; {})\n",
                n.name,
                n.kind,
                if n.events.is_empty() { "all events".to_string() } else { n.events.join(", ") }
            ));
        }
        s.push_str(&format!(
            "  workers    {}\n  scheduler  {}",
            if self.workers.enabled { format!("on, {} at once", self.workers.concurrency) } else { "off".into() },
            if self.scheduler.enabled { "on" } else { "off" }
        ));
        s
    }
}

#[cfg(test)]
mod tests;
