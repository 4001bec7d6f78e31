//! Scenario files: the tenants a simulator starts with. JSON, documented in the crate's
//! README. Every reference (manager, licence, role, group member) is checked when the
//! world is built, so a typo fails at start with the name of what is wrong.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub tenants: Vec<TenantSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// The tenant id (a GUID); derived from the name when absent.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    /// Verified domains; the first is the default. `{name}.onmicrosoft.com` is always added.
    pub domains: Vec<String>,
    /// The tenant has Intune: managed devices exist and can be wiped.
    #[serde(default = "yes")]
    pub intune: bool,
    #[serde(default)]
    pub skus: Vec<SkuSpec>,
    #[serde(default)]
    pub apps: Vec<AppSpec>,
    #[serde(default)]
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
    /// Ordinary users added after the named ones, for size.
    #[serde(default)]
    pub filler: Option<FillerSpec>,
    /// Exchange admin API calls per (Microsoft) second this tenant takes before answering
    /// 429. Microsoft publishes no such limit, so the client is never told it. Unlimited
    /// when absent.
    #[serde(default)]
    pub exchange_calls_per_s: Option<f64>,
    /// Seconds (Microsoft time) a mailbox conversion takes to land here, instead of the
    /// simulator's `conversion_delay`.
    #[serde(default)]
    pub conversion_delay_s: Option<f64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuSpec {
    /// e.g. `SPE_E3`.
    pub part: String,
    #[serde(default)]
    pub id: Option<String>,
    /// Service plans; a plan starting with `EXCHANGE_S_` gives a mailbox, `SHAREPOINT` a OneDrive.
    #[serde(default)]
    pub plans: Vec<String>,
    #[serde(default = "default_units")]
    pub units: u32,
}

fn default_units() -> u32 {
    10_000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    pub client_id: String,
    #[serde(default)]
    pub name: String,
    /// SHA-256 (hex) of each valid client secret; the simulator never holds a secret itself.
    #[serde(default)]
    pub secret_sha256: Vec<String>,
    #[serde(default)]
    pub certificates: Vec<CertificateSpec>,
    /// Application permissions granted on Microsoft Graph, e.g. `User.ReadWrite.All`.
    #[serde(default)]
    pub graph: Vec<String>,
    /// Application permissions on Office 365 Exchange Online, e.g. `Exchange.ManageAsApp`.
    #[serde(default)]
    pub exchange: Vec<String>,
    /// Application permissions on SharePoint, e.g. `Sites.FullControl.All`.
    #[serde(default)]
    pub sharepoint: Vec<String>,
    /// Entra directory roles held by the app's service principal, by display name.
    #[serde(default)]
    pub entra_roles: Vec<String>,
}

/// A registered certificate: the key that verifies client assertions, found by the
/// assertion's `x5t#S256` header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    /// base64url SHA-256 thumbprint, as sent in `x5t#S256`.
    pub thumbprint_sha256: String,
    /// The RSA public key, PEM (`BEGIN PUBLIC KEY`).
    pub public_key_pem: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub upn: String,
    pub name: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    /// UPN of the manager.
    #[serde(default)]
    pub manager: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Mastered on-premises (Entra Connect): Graph refuses writes to it.
    #[serde(default)]
    pub synced: bool,
    #[serde(default)]
    pub immutable_id: Option<String>,
    #[serde(default)]
    pub guest: bool,
    /// Directly assigned licences, by SKU part number.
    #[serde(default)]
    pub licences: Vec<String>,
    /// Authentication methods besides the password: phone, alternate_phone, office_phone,
    /// authenticator, fido2, software_oath, windows_hello, email, tap, platform_credential.
    #[serde(default)]
    pub auth: Vec<String>,
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// Mailbox details; a user with an Exchange licence and no entry gets a small default mailbox.
    #[serde(default)]
    pub mailbox: Option<MailboxSpec>,
    /// No mailbox even with an Exchange licence (never provisioned).
    #[serde(default)]
    pub no_mailbox: bool,
    /// OneDrive never provisioned even with a SharePoint licence.
    #[serde(default)]
    pub no_onedrive: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Display name of a built-in directory role, e.g. `Global Administrator`.
    pub role: String,
    #[serde(default)]
    pub eligible: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub name: String,
    #[serde(default = "windows")]
    pub os: String,
    /// Enrolled in Intune (wipe and retire apply); otherwise only Entra-registered.
    #[serde(default)]
    pub managed: bool,
}

fn windows() -> String {
    "Windows".into()
}

fn calendar() -> String {
    "Calendar".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxSpec {
    #[serde(default)]
    pub shared: bool,
    #[serde(default = "one")]
    pub size_gb: f64,
    #[serde(default)]
    pub archive: bool,
    /// Hosted on-premises (hybrid): Outlook REST refuses it.
    #[serde(default)]
    pub on_prem: bool,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub forwarding_smtp: Option<String>,
    /// UPN of an internal recipient.
    #[serde(default)]
    pub forwarding_address: Option<String>,
    #[serde(default)]
    pub deliver_and_forward: bool,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Rights other users hold on this mailbox.
    #[serde(default)]
    pub grants: Vec<GrantSpec>,
    /// People this mailbox's owner shared the calendar with.
    #[serde(default)]
    pub calendar_shared_with: Vec<CalendarShareSpec>,
    /// The calendar folder's name, in the mailbox's language (`Kalender`, `Calendrier`).
    #[serde(default = "calendar")]
    pub calendar_folder: String,
    /// ActiveSync devices.
    #[serde(default)]
    pub mobile_devices: Vec<String>,
    /// Meetings this user organises (attendees by UPN); attendees get their copy.
    #[serde(default)]
    pub meetings: Vec<MeetingSpec>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    #[serde(default)]
    pub forward_to: Option<String>,
    #[serde(default)]
    pub redirect_to: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    pub user: String,
    /// FullAccess, SendAs or SendOnBehalf.
    pub rights: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarShareSpec {
    pub user: String,
    #[serde(default = "read")]
    pub role: String,
}

fn read() -> String {
    "read".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingSpec {
    pub subject: String,
    /// Days from the simulator's start; negative for past meetings.
    #[serde(default = "one_day")]
    pub in_days: i64,
    #[serde(default)]
    pub attendees: Vec<String>,
}

fn one_day() -> i64 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    /// security, m365, distribution or mail_security.
    #[serde(default = "security")]
    pub kind: String,
    #[serde(default)]
    pub dynamic_rule: Option<String>,
    #[serde(default)]
    pub synced: bool,
    #[serde(default)]
    pub role_assignable: bool,
    /// Group-based licensing: members inherit these SKUs.
    #[serde(default)]
    pub licences: Vec<String>,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub owners: Vec<String>,
    /// A Microsoft 365 group with a team.
    #[serde(default)]
    pub team: bool,
    /// A team's channels besides General, each with its folder in the team's files.
    #[serde(default)]
    pub channels: Vec<ChannelSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// `19:…@thread.tacv2`, as Teams and Bot Framework name it.
    pub id: String,
    pub name: String,
}

fn security() -> String {
    "security".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FillerSpec {
    pub count: u32,
    /// SKU part number each filler user gets directly.
    #[serde(default)]
    pub licence: Option<String>,
    /// Groups (by name) each filler user joins.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Give each filler user one Intune-managed laptop and an authenticator.
    #[serde(default)]
    pub devices: bool,
    /// UPN of every filler user's manager, a user of the scenario.
    #[serde(default)]
    pub manager: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("scenario {path} is not valid: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("tenant {tenant}: {message}")]
    Invalid { tenant: String, message: String },
}

impl Scenario {
    pub fn load(path: &std::path::Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text).map_err(|source| ScenarioError::Parse { path: path.display().to_string(), source })
    }

    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The bundled small company: every edge case of the offboarding spec in ~50 users.
    pub fn contoso() -> Self {
        Self::parse(include_str!("../scenarios/contoso.json")).expect("bundled scenario parses")
    }

    /// `tenants` tenants of `users` typical leavers each (reliability.md §6.2): a licence,
    /// 15 groups, three authentication methods besides the password, a laptop and a phone
    /// managed by Intune, and a mailbox.
    pub fn generate(tenants: u32, users: u32) -> Self {
        let mut groups = vec![GroupSpec { name: "All Staff".into(), kind: "m365".into(), ..GroupSpec::named("") }, GroupSpec::named("VPN Users")];
        groups.extend((1..=13).map(|i| GroupSpec::named(&format!("Team {i:02}"))));
        let tenants = (0..tenants)
            .map(|t| {
                let name = format!("bench{t:03}");
                // Typical leavers have a manager, whom their out-of-office reply names.
                let lead = UserSpec {
                    upn: format!("lead@{name}.example"),
                    name: "Team Lead".into(),
                    title: Some("Team Lead".into()),
                    enabled: true,
                    licences: vec!["SPE_E3".into()],
                    ..Default::default()
                };
                TenantSpec {
                    id: None,
                    name: name.clone(),
                    domains: vec![format!("{name}.example")],
                    intune: true,
                    skus: vec![SkuSpec {
                        part: "SPE_E3".into(),
                        id: None,
                        plans: vec!["EXCHANGE_S_ENTERPRISE".into(), "SHAREPOINTENTERPRISE".into(), "INTUNE_A".into()],
                        units: users + 100,
                    }],
                    apps: vec![],
                    filler: Some(FillerSpec {
                        count: users,
                        licence: Some("SPE_E3".into()),
                        groups: groups.iter().map(|g| g.name.clone()).collect(),
                        devices: true,
                        manager: Some(lead.upn.clone()),
                    }),
                    users: vec![lead],
                    groups: groups.clone(),
                    exchange_calls_per_s: None,
                    conversion_delay_s: None,
                }
            })
            .collect();
        Self { tenants }
    }
}

impl GroupSpec {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            kind: security(),
            dynamic_rule: None,
            synced: false,
            role_assignable: false,
            licences: vec![],
            members: vec![],
            owners: vec![],
            team: false,
            channels: vec![],
        }
    }
}
