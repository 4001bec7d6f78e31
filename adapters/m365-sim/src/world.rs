//! The state of every simulated tenant, the rules that tie its parts together (licences
//! give mailboxes, groups give licences, a soft-deleted user waits 30 days) and the effect
//! ledger that tests and benchmarks read.
//!
//! Kept in one file: the rules tie the parts together (a licence gives a mailbox, a group
//! gives a licence), so they change together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::clock::SimClock;
use crate::scenario::{Scenario, ScenarioError, TenantSpec};

/// Days a deleted user stays restorable (Entra's recycle bin).
pub const BIN_DAYS: u64 = 30;
pub const PASSWORD_METHOD_ID: &str = "28c10230-6103-485e-b985-444c60001490";
pub const PHONE_MOBILE_ID: &str = "3179e48a-750b-4051-897c-87b9720928f7";
pub const PHONE_ALTERNATE_ID: &str = "b6332ec1-7057-4abe-9331-3d72feddfe41";
pub const PHONE_OFFICE_ID: &str = "e37fc753-ff3b-4958-9484-eaa9425c82bc";
pub const EMAIL_METHOD_ID: &str = "3ddfcfc8-9383-446f-83cc-3ab9be4be18f";

/// Built-in directory roles: (display name, template id). Role definitions use the template
/// id as their id, as Entra does.
pub const ROLES: &[(&str, &str)] = &[
    ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10"),
    ("Privileged Authentication Administrator", "7be44c8a-adaf-4e2a-84d6-ab2649e08a13"),
    ("Privileged Role Administrator", "e8611ab8-c189-46e8-94e1-60213ab1f814"),
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    ("Helpdesk Administrator", "729827e3-9c14-49f7-bb1b-9608f156bbb8"),
    ("Authentication Administrator", "c4e39bd9-1100-46d3-8c65-fb160da0071f"),
    ("Exchange Administrator", "29232cdf-9323-42fd-ade2-1d097af3e4de"),
    ("Exchange Recipient Administrator", "31392ffb-586c-42d1-9346-e59415a2cc4e"),
    ("SharePoint Administrator", "f28a1f50-f6e7-4571-818b-6a12f2af6b6c"),
    ("Intune Administrator", "3a2c62db-5318-420d-8d74-23affee5d9d5"),
    ("Groups Administrator", "fdd7a751-b60b-444a-984c-02652fe8fa1c"),
    ("License Administrator", "4d6ac14f-3453-41d0-bef9-a3e0c569773a"),
    ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d"),
    ("Global Reader", "f2ef992c-3afb-46b9-b7cf-a126ee74c451"),
];

pub fn role_id(name: &str) -> Option<&'static str> {
    ROLES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, id)| *id)
}

pub fn role_name(id: &str) -> Option<&'static str> {
    ROLES.iter().find(|(_, i)| i.eq_ignore_ascii_case(id)).map(|(n, _)| *n)
}

/// A stable GUID from a name, so scenario objects keep their ids across runs.
pub fn guid(seed: &str) -> String {
    let h = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub upn: String,
    pub display_name: String,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub manager: Option<String>,
    pub account_enabled: bool,
    pub synced: bool,
    pub immutable_id: Option<String>,
    pub guest: bool,
    pub usage_location: Option<String>,
    pub direct_licences: Vec<String>,
    pub auth_methods: Vec<AuthMethod>,
    pub sessions_valid_from: String,
    pub password_changed: Option<String>,
    /// The last password set, held as Entra holds a credential: never serialised, never
    /// in the ledger; tests read it to search every output for it.
    #[serde(skip)]
    pub password: Option<String>,
    pub created: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthMethod {
    pub id: String,
    /// The typed collection, e.g. `phoneMethods`; `passwordMethods` cannot be deleted.
    pub collection: &'static str,
    pub odata_type: &'static str,
    pub detail: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    Security,
    M365,
    Distribution,
    MailSecurity,
}

impl GroupKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "security" => Self::Security,
            "m365" => Self::M365,
            "distribution" => Self::Distribution,
            "mail_security" => Self::MailSecurity,
            _ => return None,
        })
    }
    pub fn mail_enabled(self) -> bool {
        !matches!(self, Self::Security)
    }
    pub fn security_enabled(self) -> bool {
        matches!(self, Self::Security | Self::MailSecurity)
    }
    /// Exchange owns membership: Graph refuses member writes.
    pub fn exchange_managed(self) -> bool {
        matches!(self, Self::Distribution | Self::MailSecurity)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub mail: Option<String>,
    pub kind: GroupKind,
    pub dynamic_rule: Option<String>,
    pub synced: bool,
    pub role_assignable: bool,
    pub licences: Vec<String>,
    pub members: BTreeSet<String>,
    pub owners: BTreeSet<String>,
    /// A Microsoft 365 group with a team (`resourceProvisioningOptions: ["Team"]`).
    pub team: bool,
    /// A team's document library: one folder per channel.
    pub site: Option<TeamSite>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TeamSite {
    pub drive_id: String,
    /// The library's address, `https://{tenant}.sharepoint.com/sites/{team}/Shared Documents`.
    pub web_url: String,
    pub channels: Vec<ChannelFolder>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelFolder {
    /// The channel's id.
    pub channel: String,
    pub name: String,
    /// The folder's driveItem id.
    pub folder_id: String,
    pub files: BTreeMap<String, StoredFile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredFile {
    pub id: String,
    #[serde(skip)]
    pub bytes: Vec<u8>,
    pub content_type: String,
}

impl TeamSite {
    /// The folder with driveItem id `item`.
    pub fn folder_mut(&mut self, item: &str) -> Option<&mut ChannelFolder> {
        self.channels.iter_mut().find(|c| c.folder_id == item)
    }
}

impl ChannelFolder {
    pub fn web_url(&self, site: &str) -> String {
        format!("{site}/{}", self.name.replace(' ', "%20"))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Sku {
    pub id: String,
    pub part: String,
    pub plans: Vec<String>,
    pub units: u32,
}

impl Sku {
    pub fn has_exchange(&self) -> bool {
        self.plans.iter().any(|p| p.starts_with("EXCHANGE_S_"))
    }
    pub fn has_sharepoint(&self) -> bool {
        self.plans.iter().any(|p| p.starts_with("SHAREPOINT"))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct App {
    pub client_id: String,
    pub name: String,
    pub secret_sha256: Vec<String>,
    pub certificates: Vec<(String, String)>,
    pub graph: BTreeSet<String>,
    pub exchange: BTreeSet<String>,
    pub sharepoint: BTreeSet<String>,
    pub entra_roles: BTreeSet<String>,
    pub sp_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleAssignment {
    pub id: String,
    pub principal: String,
    pub role: String,
    pub eligible: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub id: String,
    pub device_id: String,
    pub name: String,
    pub os: String,
    pub owner: String,
    pub account_enabled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManagedDevice {
    pub id: String,
    pub azure_device_id: String,
    pub name: String,
    pub os: String,
    pub user: String,
    pub state: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxKind {
    User,
    Shared,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mailbox {
    pub exchange_guid: String,
    pub kind: MailboxKind,
    /// Set-Mailbox -Type Shared was accepted; the change lands at this time.
    pub converting_until: Option<Duration>,
    /// Lost: the licence went before the conversion finished.
    pub disconnected: bool,
    pub on_prem: bool,
    pub size_bytes: u64,
    pub archive: bool,
    pub hidden: bool,
    pub forwarding_smtp: Option<String>,
    pub forwarding_address: Option<String>,
    pub deliver_and_forward: bool,
    pub auto_reply: AutoReply,
    pub rules: Vec<Rule>,
    pub full_access: BTreeSet<String>,
    pub send_as: BTreeSet<String>,
    pub send_on_behalf: BTreeSet<String>,
    pub calendar_permissions: Vec<CalendarPermission>,
    /// The calendar folder's name, localised as the mailbox's language has it.
    pub calendar_folder: String,
    pub mobile_devices: Vec<MobileDevice>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AutoReply {
    pub status: String,
    pub external_audience: String,
    pub internal: String,
    pub external: String,
    pub start: Option<String>,
    pub end: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub forward_to: Option<String>,
    pub redirect_to: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CalendarPermission {
    pub id: String,
    pub user: Option<String>,
    pub email: String,
    pub name: String,
    pub role: String,
    pub removable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MobileDevice {
    pub identity: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    /// Shared by the organiser's event and every attendee's copy.
    pub meeting: String,
    pub subject: String,
    pub start: Duration,
    pub organizer: String,
    pub is_organizer: bool,
    pub attendees: Vec<String>,
    pub cancelled: bool,
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Drive {
    pub id: String,
    pub root_id: String,
    pub web_url: String,
    pub shared_with: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub user: User,
    pub at: Duration,
    pub deleted_date: String,
}

pub struct Tenant {
    pub id: String,
    pub name: String,
    pub domains: Vec<String>,
    pub intune: bool,
    pub skus: Vec<Sku>,
    pub apps: Vec<App>,
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    /// The hidden Exchange limit, calls per Microsoft second (the scenario's).
    pub exchange_calls_per_s: Option<f64>,
    /// How long a conversion takes here, in Microsoft time, when the scenario says.
    pub conversion_delay: Option<std::time::Duration>,
    pub roles: Vec<RoleAssignment>,
    pub devices: BTreeMap<String, Device>,
    pub managed: BTreeMap<String, ManagedDevice>,
    pub mailboxes: HashMap<String, Mailbox>,
    pub drives: HashMap<String, Drive>,
    pub deleted: BTreeMap<String, Deleted>,
    /// users/delta change log: (sequence, user id, removed).
    pub changes: Vec<(u64, String, bool)>,
    /// Lower-case UPN to id, for live and deleted users alike.
    upns: HashMap<String, String>,
    seq: u64,
}

/// Identity throttling tier from the tenant's size (graph.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    S,
    M,
    L,
}

impl Tenant {
    pub fn tier(&self) -> Tier {
        match self.users.len() {
            0..50 => Tier::S,
            50..=500 => Tier::M,
            _ => Tier::L,
        }
    }

    pub fn app(&self, client_id: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }

    pub fn app_mut(&mut self, client_id: &str) -> Option<&mut App> {
        self.apps.iter_mut().find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }

    /// Finds a live user by id or UPN (case-insensitive), as Graph does.
    pub fn user_id(&self, key: &str) -> Option<String> {
        if self.users.contains_key(key) {
            return Some(key.to_string());
        }
        let lower = key.to_ascii_lowercase();
        if self.users.contains_key(&lower) {
            return Some(lower);
        }
        self.upns.get(&lower).filter(|id| self.users.contains_key(*id)).cloned()
    }

    /// Finds a user by id, UPN, e-mail or display name: Exchange's `Identity` resolution.
    pub fn recipient(&self, key: &str) -> Option<String> {
        let key = key.strip_prefix("smtp:").or_else(|| key.strip_prefix("SMTP:")).unwrap_or(key);
        self.user_id(key).or_else(|| self.users.values().find(|u| u.display_name.eq_ignore_ascii_case(key)).map(|u| u.id.clone()))
    }

    pub fn group_id(&self, key: &str) -> Option<String> {
        if self.groups.contains_key(key) {
            return Some(key.to_string());
        }
        self.groups.values().find(|g| g.name.eq_ignore_ascii_case(key) || g.mail.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(key))).map(|g| g.id.clone())
    }

    pub fn sku_by_part(&self, part: &str) -> Option<&Sku> {
        self.skus.iter().find(|s| s.part.eq_ignore_ascii_case(part))
    }

    pub fn sku(&self, id: &str) -> Option<&Sku> {
        self.skus.iter().find(|s| s.id.eq_ignore_ascii_case(id))
    }

    /// Every licence the user holds: (sku id, the group it comes from or `None` if direct).
    pub fn licence_states(&self, user: &str) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        if let Some(u) = self.users.get(user) {
            out.extend(u.direct_licences.iter().map(|s| (s.clone(), None)));
        }
        for g in self.groups.values().filter(|g| g.members.contains(user)) {
            out.extend(g.licences.iter().map(|s| (s.clone(), Some(g.id.clone()))));
        }
        out
    }

    pub fn assigned_skus(&self, user: &str) -> BTreeSet<String> {
        self.licence_states(user).into_iter().map(|(s, _)| s).collect()
    }

    pub fn has_exchange_licence(&self, user: &str) -> bool {
        self.assigned_skus(user).iter().any(|s| self.sku(s).is_some_and(Sku::has_exchange))
    }

    pub fn consumed(&self, sku: &str) -> usize {
        self.users.keys().filter(|u| self.assigned_skus(u).contains(sku)).count()
    }

    pub fn is_admin(&self, user: &str) -> bool {
        self.roles.iter().any(|r| r.principal == user && !r.eligible)
    }

    /// Directory roles held through active assignments, by template id.
    pub fn active_roles(&self, user: &str) -> Vec<String> {
        self.roles.iter().filter(|r| r.principal == user && !r.eligible).map(|r| r.role.clone()).collect()
    }

    /// Finishes conversions whose time has come. A conversion whose user lost the Exchange
    /// licence first leaves the mailbox disconnected: the race peers' users hit.
    pub fn settle(&mut self, now: Duration, ledger: &mut Ledger) {
        let mut landed = Vec::new();
        for (user, mb) in &self.mailboxes {
            if let Some(t) = mb.converting_until
                && t <= now
            {
                landed.push((user.clone(), t));
            }
        }
        for (user, t) in landed {
            let licensed = self.has_exchange_licence(&user);
            let mb = self.mailboxes.get_mut(&user).expect("mailbox exists");
            mb.converting_until = None;
            if licensed {
                mb.kind = MailboxKind::Shared;
                ledger.record(t, &self.id, "mailbox.converted", &user, json!({"to": "shared"}));
            } else {
                mb.disconnected = true;
                ledger.record(t, &self.id, "mailbox.conversion_failed", &user, json!({"reason": "licence removed before the conversion finished"}));
            }
        }
        let purge_after = Duration::from_secs(BIN_DAYS * 86_400);
        let expired: Vec<String> = self.deleted.iter().filter(|(_, d)| now >= d.at + purge_after).map(|(id, _)| id.clone()).collect();
        for id in expired {
            self.deleted.remove(&id);
            self.mailboxes.remove(&id);
            self.drives.remove(&id);
            ledger.record(now, &self.id, "user.purged", &id, json!({"reason": "30 days in the recycle bin"}));
        }
    }

    /// Whether Outlook REST serves this user's mailbox now, and why not.
    pub fn mailbox_ready(&self, user: &str) -> Result<(), MailboxUnavailable> {
        let Some(mb) = self.mailboxes.get(user) else { return Err(MailboxUnavailable::NoMailbox) };
        if mb.on_prem || mb.disconnected {
            return Err(MailboxUnavailable::NotEnabled);
        }
        if mb.kind == MailboxKind::User && !self.has_exchange_licence(user) {
            return Err(MailboxUnavailable::NotEnabled);
        }
        Ok(())
    }

    pub fn changed(&mut self, user: &str, removed: bool) {
        self.seq += 1;
        self.changes.push((self.seq, user.to_string(), removed));
    }

    pub fn change_seq(&self) -> u64 {
        self.seq
    }

    pub fn upn_of(&self, id: &str) -> String {
        self.users.get(id).map(|u| u.upn.clone()).unwrap_or_else(|| id.to_string())
    }

    /// Removes a user from a group and records it; `None` when not a member.
    pub fn remove_member(&mut self, group: &str, user: &str, via: &str, at: Duration, ledger: &mut Ledger) -> Option<()> {
        let g = self.groups.get_mut(group)?;
        if !g.members.remove(user) {
            return None;
        }
        let licences = g.licences.clone();
        let name = g.name.clone();
        ledger.record(at, &self.id, "group.member_removed", user, json!({"group": group, "group_name": name, "via": via}));
        for sku in licences {
            ledger.record(at, &self.id, "licence.removed", user, json!({"sku": sku, "inherited_from": group}));
        }
        self.changed(user, false);
        Some(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxUnavailable {
    NoMailbox,
    NotEnabled,
}

#[derive(Debug, Clone, Serialize)]
pub struct Effect {
    pub seq: u64,
    pub at_ms: u64,
    pub tenant: String,
    pub kind: String,
    pub target: String,
    pub detail: Value,
}

/// Every state change the simulator made, in order, with counters per (kind, target):
/// "device X was wiped twice" is a lookup, not a scan.
#[derive(Default)]
pub struct Ledger {
    pub effects: Vec<Effect>,
    pub counters: BTreeMap<(String, String), u64>,
}

impl Ledger {
    pub fn record(&mut self, at: Duration, tenant: &str, kind: &str, target: &str, detail: Value) {
        let seq = self.effects.len() as u64 + 1;
        *self.counters.entry((kind.to_string(), target.to_string())).or_default() += 1;
        self.effects.push(Effect { seq, at_ms: at.as_millis() as u64, tenant: tenant.to_string(), kind: kind.to_string(), target: target.to_string(), detail });
    }

    pub fn count(&self, kind: &str, target: &str) -> u64 {
        self.counters.get(&(kind.to_string(), target.to_string())).copied().unwrap_or(0)
    }

    pub fn count_kind(&self, kind: &str) -> u64 {
        self.counters.iter().filter(|((k, _), _)| k == kind).map(|(_, n)| n).sum()
    }
}

/// A page of a listing that has not been read yet: what the opaque `$skiptoken` stands for.
#[derive(Debug, Clone)]
pub struct PageCursor {
    pub path: String,
    pub offset: usize,
}

/// A users/delta position.
#[derive(Debug, Clone)]
pub struct DeltaCursor {
    pub tenant: String,
    pub seq: u64,
    pub issued: Duration,
    /// Set while the first full enumeration is still being paged.
    pub offset: Option<usize>,
    pub select: Option<String>,
}

pub struct World {
    pub tenants: Vec<Tenant>,
    pub ledger: Ledger,
    pub pages: HashMap<String, PageCursor>,
    pub deltas: HashMap<String, DeltaCursor>,
}

impl World {
    pub fn tenant(&self, key: &str) -> Option<usize> {
        self.tenants.iter().position(|t| t.id.eq_ignore_ascii_case(key) || t.domains.iter().any(|d| d.eq_ignore_ascii_case(key)))
    }

    pub fn build(scenario: &Scenario, clock: &SimClock) -> Result<Self, ScenarioError> {
        let tenants = scenario.tenants.iter().map(|t| build_tenant(t, clock)).collect::<Result<Vec<_>, _>>()?;
        let mut ids = BTreeSet::new();
        for t in &tenants {
            if !ids.insert(t.id.clone()) {
                return Err(ScenarioError::Invalid { tenant: t.name.clone(), message: format!("tenant id {} is used twice", t.id) });
            }
        }
        Ok(Self { tenants, ledger: Ledger::default(), pages: HashMap::new(), deltas: HashMap::new() })
    }
}

fn build_tenant(spec: &TenantSpec, clock: &SimClock) -> Result<Tenant, ScenarioError> {
    let bad = |message: String| ScenarioError::Invalid { tenant: spec.name.clone(), message };
    let tid = spec.id.clone().unwrap_or_else(|| guid(&format!("tenant/{}", spec.name)));
    let seed = |kind: &str, name: &str| guid(&format!("{tid}/{kind}/{}", name.to_ascii_lowercase()));
    let now = clock.wall().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // Scenario accounts have existed for a while: their last password change is in the past.
    let created = (clock.wall() - chrono::Duration::days(400)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut domains = spec.domains.clone();
    let initial = format!("{}.onmicrosoft.com", spec.name.to_ascii_lowercase().replace(' ', ""));
    if !domains.iter().any(|d| d.eq_ignore_ascii_case(&initial)) {
        domains.push(initial);
    }
    let skus: Vec<Sku> = spec
        .skus
        .iter()
        .map(|s| Sku { id: s.id.clone().unwrap_or_else(|| seed("sku", &s.part)), part: s.part.clone(), plans: s.plans.clone(), units: s.units })
        .collect();
    let sku_id =
        |part: &str| skus.iter().find(|s| s.part.eq_ignore_ascii_case(part)).map(|s| s.id.clone()).ok_or_else(|| bad(format!("unknown licence {part}")));

    let mut t = Tenant {
        id: tid.clone(),
        name: spec.name.clone(),
        domains,
        intune: spec.intune,
        skus: skus.clone(),
        apps: vec![],
        users: BTreeMap::new(),
        groups: BTreeMap::new(),
        exchange_calls_per_s: spec.exchange_calls_per_s.filter(|r| r.is_finite() && *r > 0.0),
        conversion_delay: spec.conversion_delay_s.filter(|s| s.is_finite() && *s >= 0.0).map(std::time::Duration::from_secs_f64),
        roles: vec![],
        devices: BTreeMap::new(),
        managed: BTreeMap::new(),
        mailboxes: HashMap::new(),
        drives: HashMap::new(),
        deleted: BTreeMap::new(),
        changes: vec![],
        upns: HashMap::new(),
        seq: 0,
    };
    for a in &spec.apps {
        for r in &a.entra_roles {
            if role_id(r).is_none() {
                return Err(bad(format!("app {}: unknown Entra role {r}", a.client_id)));
            }
        }
        t.apps.push(App {
            client_id: a.client_id.to_ascii_lowercase(),
            name: a.name.clone(),
            secret_sha256: a.secret_sha256.iter().map(|s| s.to_ascii_lowercase()).collect(),
            certificates: a.certificates.iter().map(|c| (c.thumbprint_sha256.clone(), c.public_key_pem.clone())).collect(),
            graph: a.graph.iter().cloned().collect(),
            exchange: a.exchange.iter().cloned().collect(),
            sharepoint: a.sharepoint.iter().cloned().collect(),
            entra_roles: a.entra_roles.iter().filter_map(|r| role_id(r)).map(String::from).collect(),
            sp_id: seed("sp", &a.client_id),
        });
    }

    let mut users: Vec<crate::scenario::UserSpec> = spec.users.clone();
    let mut filler_groups = Vec::new();
    if let Some(f) = &spec.filler {
        let domain = spec.domains.first().cloned().ok_or_else(|| bad("a tenant needs a domain".into()))?;
        for i in 0..f.count {
            let upn = format!("user{i:05}@{domain}");
            users.push(crate::scenario::UserSpec {
                upn: upn.clone(),
                name: format!("User {i:05}"),
                title: Some("Staff".into()),
                department: Some(["Sales", "Finance", "Engineering", "Support"][i as usize % 4].into()),
                enabled: true,
                licences: f.licence.iter().cloned().collect(),
                auth: if f.devices { vec!["authenticator".into(), "phone".into(), "alternate_phone".into()] } else { vec![] },
                devices: if f.devices {
                    vec![
                        crate::scenario::DeviceSpec { name: format!("LT-{i:05}"), os: "Windows".into(), managed: true },
                        crate::scenario::DeviceSpec { name: format!("PH-{i:05}"), os: "iOS".into(), managed: true },
                    ]
                } else {
                    vec![]
                },
                manager: f.manager.clone(),
                ..Default::default()
            });
            filler_groups.push(upn);
        }
    }

    for u in &users {
        let id = u.id.clone().unwrap_or_else(|| seed("user", &u.upn));
        let direct = u.licences.iter().map(|p| sku_id(p)).collect::<Result<Vec<_>, _>>()?;
        let mut methods = vec![AuthMethod {
            id: PASSWORD_METHOD_ID.into(),
            collection: "passwordMethods",
            odata_type: "#microsoft.graph.passwordAuthenticationMethod",
            detail: json!({"createdDateTime": now}),
        }];
        for kind in &u.auth {
            methods.push(
                auth_method(kind, &seed(&format!("auth/{kind}"), &u.upn), &u.upn).ok_or_else(|| bad(format!("user {}: unknown auth method {kind}", u.upn)))?,
            );
        }
        t.upns.insert(u.upn.to_ascii_lowercase(), id.clone());
        t.users.insert(
            id.clone(),
            User {
                id: id.clone(),
                upn: u.upn.clone(),
                display_name: u.name.clone(),
                job_title: u.title.clone(),
                department: u.department.clone(),
                manager: None,
                account_enabled: u.enabled,
                synced: u.synced,
                immutable_id: u.immutable_id.clone().or_else(|| u.synced.then(|| base64_id(&id))),
                guest: u.guest,
                usage_location: Some("US".into()),
                direct_licences: direct,
                auth_methods: methods,
                sessions_valid_from: created.clone(),
                password_changed: None,
                password: None,
                created: created.clone(),
            },
        );
        for r in &u.roles {
            let role = role_id(&r.role).ok_or_else(|| bad(format!("user {}: unknown role {}", u.upn, r.role)))?;
            t.roles.push(RoleAssignment {
                id: seed("role", &format!("{}/{}/{}", u.upn, r.role, r.eligible)),
                principal: id.clone(),
                role: role.into(),
                eligible: r.eligible,
            });
        }
        for d in &u.devices {
            let dev_id = seed("device", &d.name);
            let azure = guid(&format!("{dev_id}/azure"));
            t.devices.insert(
                dev_id.clone(),
                Device { id: dev_id.clone(), device_id: azure.clone(), name: d.name.clone(), os: d.os.clone(), owner: id.clone(), account_enabled: true },
            );
            if d.managed && spec.intune {
                let mid = seed("managed", &d.name);
                t.managed.insert(
                    mid.clone(),
                    ManagedDevice { id: mid, azure_device_id: azure, name: d.name.clone(), os: d.os.clone(), user: id.clone(), state: "managed" },
                );
            }
        }
    }
    for u in &users {
        if let Some(m) = &u.manager {
            let mid = t.user_id(m).ok_or_else(|| bad(format!("user {}: unknown manager {m}", u.upn)))?;
            let id = t.user_id(&u.upn).expect("just added");
            t.users.get_mut(&id).expect("user").manager = Some(mid);
        }
    }

    for g in &spec.groups {
        let kind = GroupKind::parse(&g.kind).ok_or_else(|| bad(format!("group {}: unknown kind {}", g.name, g.kind)))?;
        let id = seed("group", &g.name);
        let mut members = BTreeSet::new();
        for m in &g.members {
            members.insert(t.user_id(m).ok_or_else(|| bad(format!("group {}: unknown member {m}", g.name)))?);
        }
        if spec.filler.as_ref().is_some_and(|f| f.groups.iter().any(|n| n.eq_ignore_ascii_case(&g.name))) {
            for upn in &filler_groups {
                members.insert(t.user_id(upn).expect("filler user"));
            }
        }
        let mut owners = BTreeSet::new();
        for m in &g.owners {
            owners.insert(t.user_id(m).ok_or_else(|| bad(format!("group {}: unknown owner {m}", g.name)))?);
        }
        let domain = spec.domains.first().cloned().unwrap_or_default();
        let mail = kind.mail_enabled().then(|| format!("{}@{domain}", g.name.to_ascii_lowercase().replace(' ', ".")));
        t.groups.insert(
            id.clone(),
            Group {
                id,
                name: g.name.clone(),
                mail,
                kind,
                dynamic_rule: g.dynamic_rule.clone(),
                synced: g.synced,
                role_assignable: g.role_assignable,
                licences: g.licences.iter().map(|p| sku_id(p)).collect::<Result<_, _>>()?,
                members,
                owners,
                team: g.team && kind == GroupKind::M365,
                site: (g.team && kind == GroupKind::M365).then(|| team_site(&spec.name, g, &seed)),
            },
        );
    }

    // Mailboxes and drives come from licences (direct or inherited), as in Exchange Online.
    for u in &users {
        let id = t.user_id(&u.upn).expect("user");
        let skus = t.assigned_skus(&id);
        let exchange = skus.iter().any(|s| t.sku(s).is_some_and(Sku::has_exchange));
        let sharepoint = skus.iter().any(|s| t.sku(s).is_some_and(Sku::has_sharepoint));
        let spec_mb = u.mailbox.clone();
        if (exchange || spec_mb.as_ref().is_some_and(|m| m.shared || m.on_prem)) && !u.no_mailbox {
            let m = spec_mb.unwrap_or_default();
            t.mailboxes.insert(id.clone(), mailbox(&t, &id, &m, &seed, clock).map_err(bad)?);
        }
        if sharepoint && !u.no_onedrive {
            let slug = u.upn.replace(['@', '.'], "_");
            let tenant_slug = spec.name.to_ascii_lowercase().replace(' ', "");
            t.drives.insert(
                id.clone(),
                Drive {
                    id: format!("b!{}", &seed("drive", &u.upn).replace('-', "")[..22]),
                    root_id: format!("01{}", &seed("root", &u.upn).replace('-', "")[..24].to_ascii_uppercase()),
                    web_url: format!("https://{tenant_slug}-my.sharepoint.com/personal/{slug}/Documents"),
                    shared_with: vec![],
                },
            );
        }
    }
    // Meetings: attendees get their copy of each organised meeting.
    let mut copies = Vec::new();
    for (owner, mb) in &t.mailboxes {
        for e in mb.events.iter().filter(|e| e.is_organizer) {
            for a in &e.attendees {
                if let Some(aid) = t.user_id(a)
                    && aid != *owner
                {
                    copies.push((aid, e.clone()));
                }
            }
        }
    }
    for (aid, e) in copies {
        if let Some(mb) = t.mailboxes.get_mut(&aid) {
            mb.events.push(Event { id: seed("event", &format!("{}/{aid}", e.meeting)), is_organizer: false, ..e });
        }
    }
    for id in t.users.keys().cloned().collect::<Vec<_>>() {
        t.changed(&id, false);
    }
    Ok(t)
}

fn base64_id(id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(&Sha256::digest(id.as_bytes())[..16])
}

/// A team's document library: General and the scenario's channels, each a folder.
fn team_site(tenant: &str, g: &crate::scenario::GroupSpec, seed: &dyn Fn(&str, &str) -> String) -> TeamSite {
    let tenant_slug = tenant.to_ascii_lowercase().replace(' ', "");
    let site = g.name.replace(' ', "");
    let general = crate::scenario::ChannelSpec { id: format!("19:{}@thread.tacv2", seed("channel", &g.name).replace('-', "")), name: "General".into() };
    let channels = std::iter::once(&general)
        .chain(&g.channels)
        .map(|c| ChannelFolder {
            channel: c.id.clone(),
            name: c.name.clone(),
            folder_id: format!("01{}", &seed("folder", &c.id).replace('-', "")[..24].to_ascii_uppercase()),
            files: BTreeMap::new(),
        })
        .collect();
    TeamSite {
        drive_id: format!("b!{}", &seed("site", &g.name).replace('-', "")[..22]),
        web_url: format!("https://{tenant_slug}.sharepoint.com/sites/{site}/Shared%20Documents"),
        channels,
    }
}

fn mailbox(t: &Tenant, owner: &str, m: &crate::scenario::MailboxSpec, seed: &dyn Fn(&str, &str) -> String, clock: &SimClock) -> Result<Mailbox, String> {
    let upn = t.upn_of(owner);
    let resolve = |who: &str| t.user_id(who).ok_or_else(|| format!("mailbox {upn}: unknown user {who}"));
    let mut mb = Mailbox {
        exchange_guid: seed("mailbox", &upn),
        kind: if m.shared { MailboxKind::Shared } else { MailboxKind::User },
        converting_until: None,
        disconnected: false,
        on_prem: m.on_prem,
        size_bytes: (m.size_gb * 1e9) as u64,
        archive: m.archive,
        hidden: m.hidden,
        forwarding_smtp: m.forwarding_smtp.clone(),
        forwarding_address: m.forwarding_address.as_deref().map(resolve).transpose()?,
        deliver_and_forward: m.deliver_and_forward,
        auto_reply: AutoReply { status: "disabled".into(), external_audience: "all".into(), ..Default::default() },
        rules: m
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule {
                id: format!("AQAAA{}", &seed("rule", &format!("{upn}/{i}")).replace('-', "")[..12]),
                name: r.name.clone(),
                forward_to: r.forward_to.clone(),
                redirect_to: r.redirect_to.clone(),
            })
            .collect(),
        full_access: BTreeSet::new(),
        send_as: BTreeSet::new(),
        send_on_behalf: BTreeSet::new(),
        calendar_folder: if m.calendar_folder.is_empty() { "Calendar".into() } else { m.calendar_folder.clone() },
        calendar_permissions: vec![CalendarPermission {
            id: "RGVmYXVsdA==".into(),
            user: None,
            email: String::new(),
            name: "My Organization".into(),
            role: "freeBusyRead".into(),
            removable: false,
        }],
        mobile_devices: m
            .mobile_devices
            .iter()
            .map(|d| MobileDevice { identity: format!("{upn}\\ExchangeActiveSyncDevices\\{}", d.replace(' ', "")), name: d.clone() })
            .collect(),
        events: vec![],
    };
    for g in &m.grants {
        let who = resolve(&g.user)?;
        match g.rights.as_str() {
            "FullAccess" => mb.full_access.insert(who),
            "SendAs" => mb.send_as.insert(who),
            "SendOnBehalf" => mb.send_on_behalf.insert(who),
            other => return Err(format!("mailbox {upn}: unknown right {other}")),
        };
    }
    for s in &m.calendar_shared_with {
        let who = resolve(&s.user)?;
        let u = &t.users[&who];
        mb.calendar_permissions.push(CalendarPermission {
            id: seed("calperm", &format!("{upn}/{who}")).replace('-', ""),
            user: Some(who.clone()),
            email: u.upn.clone(),
            name: u.display_name.clone(),
            role: s.role.clone(),
            removable: true,
        });
    }
    for (i, e) in m.meetings.iter().enumerate() {
        let meeting = seed("meeting", &format!("{upn}/{i}"));
        let start = clock.now().as_secs() as i64 + e.in_days * 86_400;
        mb.events.push(Event {
            id: seed("event", &format!("{meeting}/{owner}")),
            meeting,
            subject: e.subject.clone(),
            start: Duration::from_secs(start.max(0) as u64),
            organizer: upn.clone(),
            is_organizer: true,
            attendees: e.attendees.clone(),
            cancelled: false,
            deleted: false,
        });
    }
    Ok(mb)
}

pub fn auth_method(kind: &str, id: &str, upn: &str) -> Option<AuthMethod> {
    let (id, collection, odata_type, detail) = match kind {
        "phone" => (
            PHONE_MOBILE_ID.to_string(),
            "phoneMethods",
            "phoneAuthenticationMethod",
            json!({"phoneNumber": "+1 2065550100", "phoneType": "mobile", "smsSignInState": "notSupported"}),
        ),
        "alternate_phone" => (
            PHONE_ALTERNATE_ID.into(),
            "phoneMethods",
            "phoneAuthenticationMethod",
            json!({"phoneNumber": "+1 2065550101", "phoneType": "alternateMobile", "smsSignInState": "notSupported"}),
        ),
        "office_phone" => (
            PHONE_OFFICE_ID.into(),
            "phoneMethods",
            "phoneAuthenticationMethod",
            json!({"phoneNumber": "+1 2065550102", "phoneType": "office", "smsSignInState": "notSupported"}),
        ),
        "email" => (
            EMAIL_METHOD_ID.into(),
            "emailMethods",
            "emailAuthenticationMethod",
            json!({"emailAddress": format!("{}@personal.example", upn.split('@').next().unwrap_or("user"))}),
        ),
        "authenticator" => (
            id.into(),
            "microsoftAuthenticatorMethods",
            "microsoftAuthenticatorAuthenticationMethod",
            json!({"displayName": "iPhone", "deviceTag": "SoftwareTokenActivated", "phoneAppVersion": "6.8.7"}),
        ),
        "fido2" => (
            id.into(),
            "fido2Methods",
            "fido2AuthenticationMethod",
            json!({"displayName": "YubiKey 5", "model": "YubiKey 5 NFC", "aaGuid": "cb69481e-8ff7-4039-93ec-0a2729a154a8"}),
        ),
        "software_oath" => (id.into(), "softwareOathMethods", "softwareOathAuthenticationMethod", json!({"secretKey": null})),
        "windows_hello" => (
            id.into(),
            "windowsHelloForBusinessMethods",
            "windowsHelloForBusinessAuthenticationMethod",
            json!({"displayName": "LAPTOP", "keyStrength": "normal"}),
        ),
        "tap" => (
            id.into(),
            "temporaryAccessPassMethods",
            "temporaryAccessPassAuthenticationMethod",
            json!({"lifetimeInMinutes": 60, "isUsableOnce": true, "isUsable": true}),
        ),
        "platform_credential" => (
            id.into(),
            "platformCredentialMethods",
            "platformCredentialAuthenticationMethod",
            json!({"displayName": "MacBook", "platform": "macOS", "keyStrength": "strong"}),
        ),
        "external" => (
            id.into(),
            "externalAuthenticationMethods",
            "externalAuthenticationMethod",
            json!({"displayName": "Partner MFA", "configurationId": "00000000-0000-0000-0000-000000000001"}),
        ),
        _ => return None,
    };
    let odata_type: &'static str = match odata_type {
        "phoneAuthenticationMethod" => "#microsoft.graph.phoneAuthenticationMethod",
        "emailAuthenticationMethod" => "#microsoft.graph.emailAuthenticationMethod",
        "microsoftAuthenticatorAuthenticationMethod" => "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod",
        "fido2AuthenticationMethod" => "#microsoft.graph.fido2AuthenticationMethod",
        "softwareOathAuthenticationMethod" => "#microsoft.graph.softwareOathAuthenticationMethod",
        "windowsHelloForBusinessAuthenticationMethod" => "#microsoft.graph.windowsHelloForBusinessAuthenticationMethod",
        "temporaryAccessPassAuthenticationMethod" => "#microsoft.graph.temporaryAccessPassAuthenticationMethod",
        "platformCredentialAuthenticationMethod" => "#microsoft.graph.platformCredentialAuthenticationMethod",
        _ => "#microsoft.graph.externalAuthenticationMethod",
    };
    Some(AuthMethod { id, collection, odata_type, detail })
}
