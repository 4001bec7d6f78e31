//! What discovery found about a user before anything changed. The snapshot is the
//! evidence "before", the input of the planner and the basis of a reinstate.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{ObjectId, TenantId, Upn};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSnapshot {
    pub id: ObjectId,
    pub upn: Upn,
    pub display_name: String,
    #[serde(default)]
    pub job_title: Option<String>,
    #[serde(default)]
    pub manager: Option<Person>,
    pub account_enabled: bool,
    /// True when on-premises AD owns the account (Entra Connect / Cloud Sync).
    pub on_prem_synced: bool,
    #[serde(default)]
    pub immutable_id: Option<String>,
    /// When the password last changed: a reset is proven by this moving.
    #[serde(default)]
    pub last_password_change: Option<String>,
    /// The organisation's name, for hand-over messages.
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub groups: Vec<GroupMembership>,
    #[serde(default)]
    pub licences: Vec<Licence>,
    #[serde(default)]
    pub roles: Vec<RoleAssignment>,
    #[serde(default)]
    pub auth_methods: Vec<AuthMethod>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub mailbox: Option<Mailbox>,
    /// The mailbox is hosted on-premises: Exchange Online cannot change it.
    #[serde(default)]
    pub mailbox_on_prem: bool,
    #[serde(default)]
    pub onedrive: Option<OneDrive>,
    /// Groups, distribution lists and Teams the user owns.
    #[serde(default)]
    pub owned_groups: Vec<OwnedGroup>,
}

impl UserSnapshot {
    pub fn is_admin(&self) -> bool {
        !self.roles.is_empty()
    }

    pub fn is_member_of(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.id.eq_ignore_ascii_case(group) || g.name.eq_ignore_ascii_case(group))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: ObjectId,
    pub upn: Upn,
    pub display_name: String,
    /// Whether the account can sign in: a disabled manager cannot take anything over.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A group the user owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedGroup {
    pub id: String,
    pub name: String,
    pub kind: GroupKind,
    /// A Microsoft 365 group with a team.
    #[serde(default)]
    pub team: bool,
    #[serde(default)]
    pub on_prem_synced: bool,
    /// Every owner, the user included: 1 means the user is the only one.
    pub owners: usize,
}

impl OwnedGroup {
    /// "Product Team (team, only owner)".
    pub fn describe(&self) -> String {
        let kind = if self.team { "team" } else { self.kind.label() };
        let sole = if self.owners <= 1 { ", only owner" } else { "" };
        format!("{} ({kind}{sole})", self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    Security,
    Microsoft365,
    Distribution,
    MailEnabledSecurity,
}

impl GroupKind {
    /// Distribution lists and mail-enabled security groups are changed through Exchange,
    /// never through Graph (Graph refuses their member writes).
    pub fn via_exchange(self) -> bool {
        matches!(self, Self::Distribution | Self::MailEnabledSecurity)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Security => "security",
            Self::Microsoft365 => "Microsoft 365",
            Self::Distribution => "distribution list",
            Self::MailEnabledSecurity => "mail-enabled security",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembership {
    pub id: String,
    pub name: String,
    pub kind: GroupKind,
    #[serde(default)]
    pub dynamic: bool,
    #[serde(default)]
    pub on_prem_synced: bool,
    /// Licences this group assigns (group-based licensing).
    #[serde(default)]
    pub assigns_licences: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    pub sku_id: String,
    pub sku_part_number: String,
    /// `None` for a direct assignment; otherwise the group it is inherited from.
    #[serde(default)]
    pub inherited_from: Option<InheritedFrom>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InheritedFrom {
    pub group_id: String,
    pub group_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleState {
    Active,
    Eligible,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignment {
    pub id: String,
    pub role_name: String,
    pub state: RoleState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthMethod {
    pub id: String,
    /// Graph's `@odata.type` without the prefix, e.g. `phoneAuthenticationMethod`.
    pub kind: String,
}

impl AuthMethod {
    pub fn is_password(&self) -> bool {
        self.kind == "passwordAuthenticationMethod"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub name: String,
    /// Intune-managed (can be wiped or retired) as opposed to only Entra-registered.
    pub managed: bool,
    #[serde(default)]
    pub os: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxType {
    User,
    Shared,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub kind: MailboxType,
    pub size_bytes: u64,
    #[serde(default)]
    pub has_archive: bool,
    #[serde(default)]
    pub forwarding: Option<String>,
    #[serde(default)]
    pub inbox_rules: Vec<InboxRule>,
    /// Mailboxes on which this user holds FullAccess, SendAs or SendOnBehalf.
    #[serde(default)]
    pub delegations: Vec<Delegation>,
    /// Mailboxes whose calendar this user has been given access to.
    #[serde(default)]
    pub calendar_permissions: Vec<String>,
    #[serde(default)]
    pub mobile_devices: Vec<String>,
    #[serde(default)]
    pub organised_meetings: Vec<Meeting>,
    #[serde(default)]
    pub hidden_from_gal: bool,
    /// Automatic replies as found: `disabled`, `alwaysEnabled` or `scheduled`.
    #[serde(default)]
    pub auto_reply: Option<String>,
    /// Who else holds FullAccess on this mailbox.
    #[serde(default)]
    pub full_access: Vec<String>,
}

/// The mailbox a calendar folder identity (`mary@contoso.com:\Kalender`) belongs to.
pub fn calendar_owner(folder: &str) -> &str {
    folder.split(":\\").next().unwrap_or(folder)
}

/// Above this size a shared mailbox still needs a licence: licences stay.
pub const SHARED_MAILBOX_LICENCE_FREE_LIMIT: u64 = 50 * 1000 * 1000 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRule {
    pub id: String,
    pub name: String,
    /// Forwards or redirects mail out of the mailbox: shown as an exfiltration signal.
    #[serde(default)]
    pub forwards: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    pub mailbox: String,
    pub rights: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    pub id: String,
    pub subject: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneDrive {
    pub drive_id: String,
    pub used_bytes: u64,
}

/// Which user to discover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Upn(Upn),
    Id(ObjectId),
}

impl UserRef {
    /// Accepts a UPN or an object id, with a message that covers both.
    pub fn parse(input: &str) -> Result<Self, crate::domain::ParseError> {
        if let Ok(id) = ObjectId::parse(input) {
            return Ok(Self::Id(id));
        }
        Upn::parse(input).map(Self::Upn)
    }
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Upn(u) => u.fmt(f),
            Self::Id(i) => i.fmt(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Tell the requester: there is no such user in that tenant.
    #[error("no user {user} in {tenant}")]
    UserNotFound { user: String, tenant: String },
    /// Tell the requester: pick a tenant that is configured.
    #[error("unknown tenant {0}: it is not configured")]
    UnknownTenant(String),
    /// Tell an admin: the app lacks a permission or role.
    #[error("discovery was refused: {0}")]
    Forbidden(String),
    /// Tell an admin: the configuration names a group the tenant does not have.
    #[error("no group {group} in {tenant}")]
    GroupNotFound { group: String, tenant: String },
    /// Try again later.
    #[error("the directory is unavailable: {0}")]
    Unavailable(String),
}

/// Read-only discovery of a user's state. The Microsoft 365 adapter implements it;
/// `testing::InMemoryDirectory` serves tests.
#[async_trait]
pub trait Discovery: Send + Sync {
    async fn discover(&self, tenant: &TenantId, user: &UserRef) -> Result<UserSnapshot, DiscoveryError>;

    /// Whether the snapshots already hold the user's rights on other mailboxes. When not
    /// (Microsoft 365, where finding them means asking about every mailbox), they come
    /// from the delegation index ([`crate::delegations`]).
    fn finds_delegations(&self) -> bool {
        false
    }
}

/// Finds people as someone types their name or address (the wizard's user picker). Fast
/// and shallow: no discovery.
#[async_trait]
pub trait Directory: Send + Sync {
    async fn search(&self, tenant: &TenantId, text: &str, limit: usize) -> Result<Vec<Person>, DiscoveryError>;
    /// The user, if the tenant has one by this address or id: one cheap read, for the
    /// wizard's first page.
    async fn find(&self, tenant: &TenantId, user: &UserRef) -> Result<Option<Person>, DiscoveryError>;
    /// The object ids of every user in the group (named by object id), directly or through
    /// nested groups: role bindings by directory group (a platform whose users are
    /// directory users, as Teams' are, binds roles this way).
    async fn members_of(&self, tenant: &TenantId, group: &str) -> Result<Vec<ObjectId>, DiscoveryError>;
}
