//! Read-only discovery of a user's state (spec §1, step 2) in few round trips: one Graph
//! `$batch` addressed by the UPN, a second for the role lists that need the object id,
//! and, at the same time, Exchange's view of the mailbox and a batched scan of the other
//! mailboxes for the user's permissions there.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::SecondsFormat;
use offboard_core::domain::{ObjectId, TenantId, Upn};
use offboard_core::snapshot::{
    AuthMethod, Device, Discovery, DiscoveryError, GroupKind, GroupMembership, InboxRule, InheritedFrom, Licence, Mailbox, MailboxType, Meeting, OneDrive,
    OwnedGroup, Person, RoleAssignment, RoleState, UserRef, UserSnapshot,
};
use serde_json::{Value, json};

use crate::M365;
use crate::error::ApiError;
use crate::exchange::{Command, Output};
use crate::graph::{Item, enc};
use crate::permissions::{DISCOVERY, Need};
use crate::trace::Trace;
use crate::transport::Cx;

const USER_SELECT: &str =
    "id,userPrincipalName,displayName,jobTitle,accountEnabled,onPremisesSyncEnabled,onPremisesImmutableId,licenseAssignmentStates,lastPasswordChangeDateTime";
const GROUP_SELECT: &str = "id,displayName,groupTypes,mailEnabled,securityEnabled,onPremisesSyncEnabled,membershipRule,assignedLicenses";
const OWNED_SELECT: &str = "id,displayName,groupTypes,mailEnabled,securityEnabled,onPremisesSyncEnabled,resourceProvisioningOptions";

pub(crate) fn refused(e: &ApiError) -> DiscoveryError {
    let needs: Vec<String> = DISCOVERY.iter().filter(|n| matches!(n, Need::Graph(_) | Need::Exchange(_))).map(Need::label).collect();
    match e {
        ApiError::Forbidden(d) => DiscoveryError::Forbidden(format!("{}; discovery needs {}", d, needs.join(", "))),
        ApiError::Auth(a) => DiscoveryError::Forbidden(a.to_string()),
        other => DiscoveryError::Unavailable(other.to_string()),
    }
}

/// A part of the snapshot that may legitimately be absent (no mailbox, no OneDrive).
fn optional(r: Option<Result<Value, ApiError>>) -> Result<Option<Value>, DiscoveryError> {
    match r {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(e)) if e.is_not_found() || e.says("MailboxNotEnabledForRESTAPI") || e.says("mysite") => Ok(None),
        Some(Err(e)) => Err(refused(&e)),
    }
}

fn required(r: Option<Result<Value, ApiError>>) -> Result<Value, DiscoveryError> {
    optional(r)?.ok_or_else(|| DiscoveryError::Unavailable("Graph did not answer a discovery request".into()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn group_kind(g: &Value) -> GroupKind {
    let unified = strings(&g["groupTypes"]).iter().any(|t| t.eq_ignore_ascii_case("Unified"));
    match (unified, g["mailEnabled"].as_bool().unwrap_or(false), g["securityEnabled"].as_bool().unwrap_or(false)) {
        (true, ..) => GroupKind::Microsoft365,
        (false, true, true) => GroupKind::MailEnabledSecurity,
        (false, true, false) => GroupKind::Distribution,
        _ => GroupKind::Security,
    }
}

/// `"12.50 GB (13,421,772,800 bytes)"` → 13421772800.
fn size_bytes(text: &str) -> u64 {
    text.split_once('(').and_then(|(_, r)| r.split_once(" bytes")).map(|(n, _)| n.replace(',', "")).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn upn_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().trim_start_matches("smtp:").trim_start_matches("SMTP:").to_string()
}

impl M365 {
    /// Discovery, with the evidence of what it cost.
    pub async fn discover_traced(&self, tenant: &TenantId, user: &UserRef, trace: &Trace) -> Result<UserSnapshot, DiscoveryError> {
        let t = self.tenants.get(tenant).map_err(|e| DiscoveryError::UnknownTenant(e.to_string()))?;
        let cx = Cx::new(t, trace);
        let key = enc(&user.to_string());
        let now = self.clock.now();
        let until = now + chrono::Duration::days(self.settings.calendar_window_days as i64);
        let stamp = |d: chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(SecondsFormat::Secs, true);
        let first = vec![
            Item::get("user", format!("/users/{key}?$select={USER_SELECT}")),
            Item::get("manager", format!("/users/{key}/manager?$select=id,userPrincipalName,displayName,accountEnabled")),
            Item::get("owned", format!("/users/{key}/ownedObjects/microsoft.graph.group?$select={OWNED_SELECT}&$top=999")),
            Item::get("oof", format!("/users/{key}/mailboxSettings")),
            Item::get("groups", format!("/users/{key}/memberOf/microsoft.graph.group?$select={GROUP_SELECT}&$top=999")),
            Item::get("methods", format!("/users/{key}/authentication/methods")),
            Item::get("managed", format!("/users/{key}/managedDevices?$select=id,deviceName,operatingSystem,managementState,azureADDeviceId")),
            Item::get("registered", format!("/users/{key}/registeredDevices?$select=id,deviceId,displayName,operatingSystem")),
            Item::get("drive", format!("/users/{key}/drive?$select=id,quota")),
            Item::get(
                "meetings",
                format!(
                    "/users/{key}/calendarView?startDateTime={}&endDateTime={}&$select=id,subject,isOrganizer,attendees&$top=1000",
                    enc(&stamp(now)),
                    enc(&stamp(until))
                ),
            ),
            Item::get("skus", "/subscribedSkus?$select=skuId,skuPartNumber"),
            Item::get("org", "/organization?$select=displayName"),
        ];
        let upn_hint = match user {
            UserRef::Upn(u) => Some(u.to_string()),
            UserRef::Id(_) => None,
        };
        let graph_side = async {
            let mut r = self.graph.batch(cx, first).await.map_err(|e| refused(&e))?;
            let u = match r.remove("user") {
                Some(Err(e)) if e.is_not_found() => return Err(DiscoveryError::UserNotFound { user: user.to_string(), tenant: tenant.to_string() }),
                other => required(other)?,
            };
            let id = u["id"].as_str().unwrap_or_default().to_string();
            let owned: Vec<Value> = match r.get("owned") {
                Some(Ok(v)) => v["value"].as_array().cloned().unwrap_or_default(),
                _ => Vec::new(),
            };
            let mut second = vec![
                Item::get(
                    "active",
                    format!("/roleManagement/directory/roleAssignments?$filter={}&$expand=roleDefinition", enc(&format!("principalId eq '{id}'"))),
                ),
                Item::get(
                    "eligible",
                    format!("/roleManagement/directory/roleEligibilitySchedules?$filter={}&$expand=roleDefinition", enc(&format!("principalId eq '{id}'"))),
                ),
            ];
            // Who else owns each group the user owns: a sole owner's group would be orphaned.
            for (i, g) in owned.iter().enumerate() {
                second.push(Item::get(format!("owners{i}"), format!("/groups/{}/owners?$select=id&$top=999", g["id"].as_str().unwrap_or_default())));
            }
            let roles = self.graph.batch(cx, second).await.map_err(|e| refused(&e))?;
            Ok::<_, DiscoveryError>((u, r, roles))
        };
        let exchange_side = async {
            match &upn_hint {
                Some(upn) => Some(self.exchange_view(cx, upn).await),
                None => None,
            }
        };
        let ((u, mut r, mut roles), exo) = match futures_util::future::join(graph_side, exchange_side).await {
            (Ok(g), e) => (g, e),
            (Err(e), _) => return Err(e),
        };
        let upn_text = u["userPrincipalName"].as_str().unwrap_or_default().to_string();
        let exo = match exo {
            Some(x) => x?,
            None => self.exchange_view(cx, &upn_text).await?,
        };

        let skus: HashMap<String, String> = required(r.remove("skus"))?["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| (s["skuId"].as_str().unwrap_or_default().to_ascii_lowercase(), s["skuPartNumber"].as_str().unwrap_or_default().to_string()))
            .collect();
        let part = |id: &str| skus.get(&id.to_ascii_lowercase()).cloned().unwrap_or_else(|| id.to_string());
        let group_rows = required(r.remove("groups"))?["value"].as_array().cloned().unwrap_or_default();
        let groups: Vec<GroupMembership> = group_rows
            .iter()
            .map(|g| GroupMembership {
                id: g["id"].as_str().unwrap_or_default().into(),
                name: g["displayName"].as_str().unwrap_or_default().into(),
                kind: group_kind(g),
                dynamic: !g["membershipRule"].is_null() || strings(&g["groupTypes"]).iter().any(|t| t.eq_ignore_ascii_case("DynamicMembership")),
                on_prem_synced: g["onPremisesSyncEnabled"].as_bool().unwrap_or(false),
                assigns_licences: g["assignedLicenses"]
                    .as_array()
                    .map(|a| a.iter().map(|l| part(l["skuId"].as_str().unwrap_or_default())).collect())
                    .unwrap_or_default(),
            })
            .collect();
        let licences = u["licenseAssignmentStates"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let sku = s["skuId"].as_str().unwrap_or_default();
                let inherited_from = s["assignedByGroup"].as_str().map(|gid| InheritedFrom {
                    group_id: gid.into(),
                    group_name: groups.iter().find(|g| g.id.eq_ignore_ascii_case(gid)).map(|g| g.name.clone()).unwrap_or_else(|| format!("group {gid}")),
                });
                Licence { sku_id: sku.into(), sku_part_number: part(sku), inherited_from }
            })
            .collect();
        let mut role_list = Vec::new();
        for (k, state) in [("active", RoleState::Active), ("eligible", RoleState::Eligible)] {
            for a in required(roles.remove(k))?["value"].as_array().cloned().unwrap_or_default() {
                role_list.push(RoleAssignment {
                    id: a["id"].as_str().unwrap_or_default().into(),
                    role_name: a["roleDefinition"]["displayName"].as_str().or(a["roleDefinitionId"].as_str()).unwrap_or_default().into(),
                    state,
                });
            }
        }
        let auth_methods = required(r.remove("methods"))?["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| AuthMethod {
                id: m["id"].as_str().unwrap_or_default().into(),
                kind: m["@odata.type"].as_str().unwrap_or_default().trim_start_matches("#microsoft.graph.").into(),
            })
            .collect();
        let managed = optional(r.remove("managed"))?.and_then(|v| v["value"].as_array().cloned()).unwrap_or_default();
        let mut devices: Vec<Device> = managed
            .iter()
            .map(|d| Device {
                id: d["id"].as_str().unwrap_or_default().into(),
                name: d["deviceName"].as_str().unwrap_or_default().into(),
                managed: true,
                os: d["operatingSystem"].as_str().unwrap_or_default().into(),
            })
            .collect();
        for d in optional(r.remove("registered"))?.and_then(|v| v["value"].as_array().cloned()).unwrap_or_default() {
            let device_id = d["deviceId"].as_str().unwrap_or_default();
            if !managed.iter().any(|m| m["azureADDeviceId"].as_str() == Some(device_id)) {
                devices.push(Device {
                    id: d["id"].as_str().unwrap_or_default().into(),
                    name: d["displayName"].as_str().unwrap_or_default().into(),
                    managed: false,
                    os: d["operatingSystem"].as_str().unwrap_or_default().into(),
                });
            }
        }
        let onedrive = optional(r.remove("drive"))?
            .map(|d| OneDrive { drive_id: d["id"].as_str().unwrap_or_default().into(), used_bytes: d["quota"]["used"].as_u64().unwrap_or(0) });
        let meetings: Vec<Meeting> = optional(r.remove("meetings"))?
            .and_then(|v| v["value"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|e| e["isOrganizer"].as_bool() == Some(true) && e["attendees"].as_array().is_some_and(|a| !a.is_empty()))
            .map(|e| Meeting { id: e["id"].as_str().unwrap_or_default().into(), subject: e["subject"].as_str().unwrap_or_default().into() })
            .collect();
        let company = optional(r.remove("org"))?.and_then(|o| o["value"][0]["displayName"].as_str().map(String::from));
        let manager = optional(r.remove("manager"))?.and_then(|m| {
            Some(Person {
                id: ObjectId::parse(m["id"].as_str()?).ok()?,
                upn: Upn::parse(m["userPrincipalName"].as_str()?).ok()?,
                display_name: m["displayName"].as_str().unwrap_or_default().into(),
                enabled: m["accountEnabled"].as_bool().unwrap_or(true),
            })
        });
        let owned_groups: Vec<OwnedGroup> = optional(r.remove("owned"))?
            .and_then(|v| v["value"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let owners = match roles.remove(&format!("owners{i}")) {
                    Some(Ok(v)) => v["value"].as_array().map_or(1, Vec::len),
                    // Unknown: counted as the only owner, the case that needs a hand-over.
                    _ => 1,
                };
                OwnedGroup {
                    id: g["id"].as_str().unwrap_or_default().into(),
                    name: g["displayName"].as_str().unwrap_or_default().into(),
                    kind: group_kind(g),
                    team: strings(&g["resourceProvisioningOptions"]).iter().any(|o| o.eq_ignore_ascii_case("Team")),
                    on_prem_synced: g["onPremisesSyncEnabled"].as_bool().unwrap_or(false),
                    owners,
                }
            })
            .collect();
        // Automatic replies as found, for the report's "before"; not every app may read them.
        let auto_reply = match r.remove("oof") {
            Some(Ok(v)) => v["automaticRepliesSetting"]["status"].as_str().map(String::from),
            _ => None,
        };
        let (mailbox, mailbox_on_prem) = match exo {
            Found::Mailbox(mut m) => {
                m.organised_meetings = meetings;
                m.auto_reply = auto_reply;
                (Some(*m), false)
            }
            Found::OnPremises => (None, true),
            Found::None => (None, false),
        };
        Ok(UserSnapshot {
            id: ObjectId::parse(u["id"].as_str().unwrap_or_default())
                .map_err(|e| DiscoveryError::Unavailable(format!("Graph returned an odd user id: {e}")))?,
            upn: Upn::parse(&upn_text).map_err(|e| DiscoveryError::Unavailable(format!("Graph returned an odd UPN: {e}")))?,
            display_name: u["displayName"].as_str().unwrap_or_default().into(),
            job_title: u["jobTitle"].as_str().map(String::from),
            manager,
            account_enabled: u["accountEnabled"].as_bool().unwrap_or(true),
            on_prem_synced: u["onPremisesSyncEnabled"].as_bool().unwrap_or(false),
            immutable_id: u["onPremisesImmutableId"].as_str().map(String::from),
            last_password_change: u["lastPasswordChangeDateTime"].as_str().map(String::from),
            company,
            groups,
            licences,
            roles: role_list,
            auth_methods,
            devices,
            mailbox,
            mailbox_on_prem,
            onedrive,
            owned_groups,
        })
    }

    /// Exchange's view of the mailbox itself. Rights on other mailboxes come from the
    /// delegation index (`offboard_core::delegations`), whatever the tenant's size.
    async fn exchange_view(&self, cx: Cx<'_>, upn: &str) -> Result<Found, DiscoveryError> {
        let own = [
            Command::new("Get-Mailbox", json!({"Identity": upn}), Some(upn)),
            Command::new("Get-MailboxStatistics", json!({"Identity": upn}), Some(upn)),
            Command::new("Get-InboxRule", json!({"Mailbox": upn, "IncludeHidden": true}), Some(upn)),
            Command::new("Get-MobileDevice", json!({"Mailbox": upn}), Some(upn)),
            Command::new("Get-MailboxPermission", json!({"Identity": upn}), Some(upn)),
        ];
        let mut own = self.exchange.batch(cx, &own).await.map_err(|e| refused(&e))?.into_iter();
        let mut next = || own.next().unwrap_or_else(|| Err(ApiError::NotSent("missing".into())));
        let mbx = match next() {
            Ok(o) => o.rows.into_iter().next(),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(refused(&e)),
        };
        let Some(mbx) = mbx else { return Ok(Found::None) };
        let kind = match mbx["RecipientTypeDetails"].as_str().unwrap_or_default() {
            "SharedMailbox" => MailboxType::Shared,
            "UserMailbox" => MailboxType::User,
            // Hosted on-premises: Exchange Online cannot change it.
            _ => return Ok(Found::OnPremises),
        };
        let ok = |r: Result<Output, ApiError>| r.map_err(|e| refused(&e));
        let stats = ok(next())?;
        let rules = ok(next())?;
        let mobiles = ok(next())?;
        let own_permissions = ok(next())?;
        let full_access: Vec<String> = own_permissions
            .rows
            .iter()
            .filter(|p| {
                strings(&p["AccessRights"]).iter().any(|a| a.contains("FullAccess"))
                    && p["IsInherited"].as_bool() != Some(true)
                    && p["Deny"].as_bool() != Some(true)
                    && !p["User"].as_str().unwrap_or_default().starts_with("NT AUTHORITY")
            })
            .filter_map(|p| p["User"].as_str().map(String::from))
            .collect();
        let forwarding =
            [&mbx["ForwardingSmtpAddress"], &mbx["ForwardingAddress"]].iter().find(|v| v.as_str().is_some_and(|s| !s.is_empty())).map(|v| upn_of(v));
        Ok(Found::Mailbox(Box::new(Mailbox {
            kind,
            size_bytes: size_bytes(stats.rows.first().and_then(|s| s["TotalItemSize"].as_str()).unwrap_or_default()),
            has_archive: mbx["ArchiveStatus"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("Active")),
            forwarding,
            inbox_rules: rules
                .rows
                .iter()
                .filter(|r| {
                    let name = r["Name"].as_str().unwrap_or_default();
                    name != "Junk E-Mail Rule" && !name.starts_with("Microsoft.Exchange.OOF")
                })
                .map(|r| InboxRule {
                    id: r["Identity"].as_str().unwrap_or_default().into(),
                    name: r["Name"].as_str().unwrap_or_default().into(),
                    forwards: ["ForwardTo", "RedirectTo", "ForwardAsAttachmentTo"].iter().any(|k| r[*k].as_array().is_some_and(|a| !a.is_empty())),
                })
                .collect(),
            delegations: vec![],
            calendar_permissions: vec![],
            mobile_devices: mobiles.rows.iter().filter_map(|d| d["Identity"].as_str().map(String::from)).collect(),
            organised_meetings: vec![],
            hidden_from_gal: mbx["HiddenFromAddressListsEnabled"].as_bool().unwrap_or(false),
            auto_reply: None,
            full_access,
        })))
    }
}

/// What Exchange Online knows of the user's mailbox.
enum Found {
    Mailbox(Box<Mailbox>),
    /// The mailbox is hosted on-premises: Exchange Online cannot change it.
    OnPremises,
    None,
}

#[async_trait]
impl Discovery for M365 {
    async fn discover(&self, tenant: &TenantId, user: &UserRef) -> Result<UserSnapshot, DiscoveryError> {
        self.discover_traced(tenant, user, &Trace::new()).await
    }
}

/// The wizard's user picker: Graph's `$search` on name and address (an advanced query, so
/// `ConsistencyLevel: eventual`), members only.
#[async_trait]
impl offboard_core::snapshot::Directory for M365 {
    async fn search(&self, tenant: &TenantId, text: &str, limit: usize) -> Result<Vec<Person>, DiscoveryError> {
        let t = self.tenants.get(tenant).map_err(|e| DiscoveryError::UnknownTenant(e.to_string()))?;
        let trace = Trace::new();
        let cx = Cx::new(t, &trace);
        // `"` and `\` would end the search term early.
        let term: String = text.chars().filter(|c| *c != '"' && *c != '\\').take(64).collect();
        let search = enc(&format!("\"displayName:{term}\" OR \"userPrincipalName:{term}\""));
        let path = format!("/users?$search={search}&$select=id,displayName,userPrincipalName,accountEnabled&$top={}&$count=true", limit.clamp(1, 25));
        let mut out = self.graph().batch(cx, vec![Item::get("search", path).eventual()]).await.map_err(|e| refused(&e))?;
        let found = required(out.remove("search"))?;
        Ok(found["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| {
                Some(Person {
                    id: ObjectId::parse(u["id"].as_str()?).ok()?,
                    upn: Upn::parse(u["userPrincipalName"].as_str()?).ok()?,
                    display_name: u["displayName"].as_str().unwrap_or_default().to_string(),
                    enabled: u["accountEnabled"].as_bool().unwrap_or(true),
                })
            })
            .collect())
    }

    async fn find(&self, tenant: &TenantId, user: &UserRef) -> Result<Option<Person>, DiscoveryError> {
        let t = self.tenants.get(tenant).map_err(|e| DiscoveryError::UnknownTenant(e.to_string()))?;
        let trace = Trace::new();
        let cx = Cx::new(t, &trace);
        let path = format!("/users/{}?$select=id,displayName,userPrincipalName,accountEnabled", enc(&user.to_string()));
        let mut out = self.graph().batch(cx, vec![Item::get("user", path)]).await.map_err(|e| refused(&e))?;
        let u = match out.remove("user") {
            Some(Err(e)) if e.is_not_found() => return Ok(None),
            other => required(other)?,
        };
        Ok(Some(Person {
            id: ObjectId::parse(u["id"].as_str().unwrap_or_default()).map_err(|e| DiscoveryError::Unavailable(e.to_string()))?,
            upn: Upn::parse(u["userPrincipalName"].as_str().unwrap_or_default()).map_err(|e| DiscoveryError::Unavailable(e.to_string()))?,
            display_name: u["displayName"].as_str().unwrap_or_default().to_string(),
            enabled: u["accountEnabled"].as_bool().unwrap_or(true),
        }))
    }

    /// `transitiveMembers`, users only, every page.
    async fn members_of(&self, tenant: &TenantId, group: &str) -> Result<Vec<ObjectId>, DiscoveryError> {
        let t = self.tenants.get(tenant).map_err(|e| DiscoveryError::UnknownTenant(e.to_string()))?;
        let trace = Trace::new();
        let cx = Cx::new(t, &trace);
        let path = format!("/groups/{}/transitiveMembers/microsoft.graph.user?$select=id&$top=999", enc(group));
        let users = match self.graph().all(cx, &path).await {
            Err(e) if e.is_not_found() => return Err(DiscoveryError::GroupNotFound { group: group.to_string(), tenant: tenant.to_string() }),
            other => other.map_err(|e| refused(&e))?,
        };
        Ok(users.iter().filter_map(|u| ObjectId::parse(u["id"].as_str()?).ok()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exchange_sizes_and_group_kinds() {
        assert_eq!(size_bytes("12.50 GB (13,421,772,800 bytes)"), 13_421_772_800);
        assert_eq!(size_bytes("garbage"), 0);
        assert_eq!(group_kind(&json!({"groupTypes": ["Unified"], "mailEnabled": true, "securityEnabled": false})), GroupKind::Microsoft365);
        assert_eq!(group_kind(&json!({"groupTypes": [], "mailEnabled": true, "securityEnabled": false})), GroupKind::Distribution);
        assert_eq!(group_kind(&json!({"groupTypes": [], "mailEnabled": true, "securityEnabled": true})), GroupKind::MailEnabledSecurity);
        assert_eq!(group_kind(&json!({"groupTypes": [], "mailEnabled": false, "securityEnabled": true})), GroupKind::Security);
    }
}
