//! Outgoing webhooks: a generic JSON schema, the incoming-webhook formats of Slack, Teams
//! and Discord, and issue creation in Jira and ServiceNow (with their auth headers). Every
//! request carries an HMAC-SHA256 signature over the timestamp and body.
//!
//! `X-Offboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! Receivers recompute it, compare in constant time and refuse old timestamps.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use offboard_core::secret::Secret;

use crate::Attempt;

/// The payload shapes, each a template that may be overridden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Generic,
    Slack,
    Teams,
    Discord,
    Jira,
    ServiceNow,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "generic" => Self::Generic,
            "slack" => Self::Slack,
            "teams" => Self::Teams,
            "discord" => Self::Discord,
            "jira" => Self::Jira,
            "servicenow" => Self::ServiceNow,
            other => return Err(format!("unknown webhook format `{other}`: use generic, slack, teams, discord, jira or servicenow")),
        })
    }

    pub fn template(self) -> &'static str {
        match self {
            Self::Generic => "webhook/generic.json",
            Self::Slack => "webhook/slack.json",
            Self::Teams => "webhook/teams.json",
            Self::Discord => "webhook/discord.json",
            Self::Jira => "webhook/jira.json",
            Self::ServiceNow => "webhook/servicenow.json",
        }
    }
}

/// Sets `headline`: one line that names the event and its subject.
macro_rules! headline {
    () => {
        r#"{% if run %}{% set headline = event.title ~ ": " ~ run.employee ~ " (" ~ run.upn ~ ") in " ~ run.tenant ~ ", " ~ run.state_label %}{% else %}{% set headline = event.title ~ ": entry " ~ checkpoint.seq ~ ", hash " ~ checkpoint.hash %}{% endif %}{% set slack_headline = headline | slack_text %}{% set md_headline = headline | md_text %}"#
    };
}

/// The platform formats, added to core's shipped templates.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "webhook/slack.json",
        concat!(
            headline!(),
            r#"{"text": {{ slack_headline | tojson }}, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "verbatim": true, "text": {{ ("*" ~ slack_headline ~ "*" ~ ("\n" ~ (run.outcome | slack_text) ~ ("\n• " ~ (run.actions | map("slack_text") | join("\n• ")) if run.actions else "") if run and run.finished else "")) | tojson }}}}]}"#
        ),
    ),
    (
        "webhook/teams.json",
        concat!(
            headline!(),
            r#"{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4", "body": ["#,
            r#"{"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": {{ event.title | md_text | tojson }}}"#,
            r#"{% if run %}, {"type": "FactSet", "facts": [{"title": "Employee", "value": {{ (run.employee ~ " (" ~ run.upn ~ ")") | md_text | tojson }}}, {"title": "Tenant", "value": {{ run.tenant | tojson }}}, {"title": "State", "value": {{ run.state_label | tojson }}}, {"title": "Run", "value": {{ run.id | tojson }}}]}{% if run.finished %}, {"type": "TextBlock", "wrap": true, "weight": "Bolder", "text": {{ run.outcome | md_text | tojson }}}{% for a in run.actions %}, {"type": "TextBlock", "wrap": true, "text": {{ a | md_text | tojson }}}{% endfor %}{% endif %}"#,
            r#"{% else %}, {"type": "TextBlock", "wrap": true, "text": {{ md_headline | tojson }}}{% endif %}]}}]}"#
        ),
    ),
    (
        "webhook/discord.json",
        concat!(
            headline!(),
            r#"{"content": {{ md_headline | tojson }}, "allowed_mentions": {"parse": []}{% if run %}, "embeds": [{"title": {{ event.title | md_text | tojson }}, "description": {{ ((run.outcome | md_text) ~ ("\n- " ~ (run.actions | map("md_text") | join("\n- ")) if run.actions else "")) | tojson }}, "fields": [{"name": "Employee", "value": {{ run.upn | md_text | tojson }}, "inline": true}, {"name": "Tenant", "value": {{ run.tenant | tojson }}, "inline": true}, {"name": "Run", "value": {{ run.id | tojson }}, "inline": true}]}]{% endif %}}"#
        ),
    ),
    (
        "webhook/jira.json",
        concat!(
            headline!(),
            r#"{% set description %}{% include "email/body.txt" %}{% endset %}"#,
            r#"{"fields": {"project": {"key": {{ target.project | default("IT") | tojson }}}, "issuetype": {"name": {{ target.issue_type | default("Task") | tojson }}}, "summary": {{ headline | tojson }}, "description": {{ description | tojson }}, "labels": ["offboarding"]}}"#
        ),
    ),
    (
        "webhook/servicenow.json",
        concat!(
            headline!(),
            r#"{% set description %}{% include "email/body.txt" %}{% endset %}"#,
            r#"{"short_description": {{ headline | tojson }}, "description": {{ description | tojson }}, "category": {{ target.category | default("offboarding") | tojson }}, "correlation_id": {{ (run.id if run else "audit-" ~ checkpoint.seq) | tojson }}, "correlation_display": "Offboard"}"#
        ),
    ),
];

/// A webhook target. Its URL is treated as a secret (Slack's and Teams' URLs are bearer
/// credentials), as are its signing secret and header values.
#[derive(Clone)]
pub struct Webhook {
    pub url: Secret,
    pub format: Format,
    pub secret: Secret,
    /// Extra headers, e.g. `Authorization` for Jira or ServiceNow.
    pub headers: Vec<(String, Secret)>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("format", &self.format).field("url", &"***").finish()
    }
}

/// The signature header's value for a body sent at `t`.
pub fn signature(secret: &Secret, t: DateTime<Utc>, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{}.", t.timestamp()).as_bytes());
    mac.update(body.as_bytes());
    format!("t={},v1={}", t.timestamp(), hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header as a receiver would: constant-time, within `tolerance`.
pub fn verify_signature(secret: &Secret, header: &str, body: &str, now: DateTime<Utc>, tolerance: Duration) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    if (now.timestamp() - t).unsigned_abs() > tolerance.as_secs() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    mac.verify_slice(&v1).is_ok()
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64)
}

impl Webhook {
    pub async fn send(&self, http: &reqwest::Client, delivery: &str, event: &str, body: &str, now: DateTime<Utc>) -> Attempt {
        let mut req = http
            .post(self.url.expose())
            .header("content-type", "application/json")
            .header("user-agent", concat!("offboard/", env!("CARGO_PKG_VERSION")))
            .header("x-offboard-event", event)
            .header("x-offboard-delivery", delivery)
            .header("x-offboard-signature", signature(&self.secret, now, body))
            .body(body.to_string());
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.expose());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            // Never print the URL: for Slack and Teams it is the credential.
            Err(e) => return Attempt::Transient { error: format!("the receiver could not be reached: {}", e.without_url()), after: None },
        };
        let status = resp.status();
        let after = retry_after(resp.headers());
        if status.is_success() {
            return Attempt::Delivered { status: format!("HTTP {}", status.as_u16()) };
        }
        let text: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
        let error =
            format!("the receiver answered HTTP {}{}", status.as_u16(), if text.trim().is_empty() { String::new() } else { format!(": {}", text.trim()) });
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Attempt::Transient { error, after }
        } else {
            Attempt::Refused { error }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_refuse_changes_and_old_timestamps() {
        let s = Secret::new("whsec-test");
        let now = Utc::now();
        let h = signature(&s, now, "{\"a\":1}");
        assert!(verify_signature(&s, &h, "{\"a\":1}", now, Duration::from_secs(300)));
        assert!(!verify_signature(&s, &h, "{\"a\":2}", now, Duration::from_secs(300)));
        assert!(!verify_signature(&Secret::new("other"), &h, "{\"a\":1}", now, Duration::from_secs(300)));
        assert!(!verify_signature(&s, &h, "{\"a\":1}", now + chrono::Duration::minutes(10), Duration::from_secs(300)));
    }

    #[test]
    fn every_format_renders_valid_json_for_runs_and_checkpoints() {
        use offboard_core::templates::{Notice, Templates};
        let t = Templates::load(None, TEMPLATES).unwrap();
        for f in [Format::Generic, Format::Slack, Format::Teams, Format::Discord, Format::Jira, Format::ServiceNow] {
            for n in [Notice::sample(), Notice::sample_checkpoint()] {
                let out = t.render(f.template(), &n).unwrap();
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert!(v.is_object(), "{f:?}");
            }
        }
        let slack: serde_json::Value = serde_json::from_str(&t.render("webhook/slack.json", &Notice::sample()).unwrap()).unwrap();
        insta::assert_snapshot!("slack", serde_json::to_string_pretty(&slack).unwrap());
        let teams: serde_json::Value = serde_json::from_str(&t.render("webhook/teams.json", &Notice::sample()).unwrap()).unwrap();
        insta::assert_snapshot!("teams", serde_json::to_string_pretty(&teams).unwrap());
        let discord: serde_json::Value = serde_json::from_str(&t.render("webhook/discord.json", &Notice::sample()).unwrap()).unwrap();
        insta::assert_snapshot!("discord", serde_json::to_string_pretty(&discord).unwrap());
        let mut n = Notice::sample();
        n.target.insert("project".into(), "OPS".into());
        let jira: serde_json::Value = serde_json::from_str(&t.render("webhook/jira.json", &n).unwrap()).unwrap();
        assert_eq!(jira["fields"]["project"]["key"], "OPS");
        assert!(jira["fields"]["description"].as_str().unwrap().contains("Approved by: Ada Admin"));
        let snow: serde_json::Value = serde_json::from_str(&t.render("webhook/servicenow.json", &Notice::sample()).unwrap()).unwrap();
        assert_eq!(snow["correlation_id"], "ob-7k2m9q4x1p");
        assert_eq!(snow["category"], "offboarding");
    }
}
