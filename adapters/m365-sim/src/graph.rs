//! Microsoft Graph v1.0 handlers. Each runs under the world lock, after the route, the
//! token's permissions and throttling have been checked, and returns a [`Reply`].

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::odata::{PageSpec, Query, Reply, bad_request, denied, mailbox_not_enabled, not_found, page, project, synced_refusal, unsupported_query};
use crate::routes::Op;
use crate::throttle::Cost;
use crate::token::Claims;
use crate::world::{
    Deleted, DeltaCursor, GroupKind, Ledger, MailboxKind, MailboxUnavailable, PASSWORD_METHOD_ID, ROLES, RoleAssignment, Tenant, User, World, role_id,
    role_name,
};

pub const USER_TYPE: &str = "Microsoft.DirectoryServices.User";
const USER_DEFAULT: &[&str] =
    &["businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation", "preferredLanguage", "surname", "userPrincipalName"];
const DELTA_PAGE: usize = 200;

const USER_READ: &[&str] = &["User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All", "User.ReadBasic.All"];
const USER_DELETE: &[&str] = &["User.DeleteRestore.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
const MEMBER_READ: &[&str] =
    &["GroupMember.Read.All", "Group.Read.All", "GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];
const MEMBER_WRITE: &[&str] = &["GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"];
/// group-post-owners and group-delete-owners: GroupMember.* does not cover owners.
const OWNER_WRITE: &[&str] = &["Group.ReadWrite.All", "Directory.ReadWrite.All"];
const ROLE_READ: &[&str] =
    &["RoleManagement.Read.Directory", "RoleManagement.Read.All", "RoleManagement.ReadWrite.Directory", "Directory.Read.All", "Directory.ReadWrite.All"];
const ROLE_WRITE: &[&str] = &["RoleManagement.ReadWrite.Directory"];
const ELIGIBILITY_READ: &[&str] = &[
    "RoleEligibilitySchedule.Read.Directory",
    "RoleEligibilitySchedule.ReadWrite.Directory",
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
];
const ELIGIBILITY_WRITE: &[&str] = &["RoleEligibilitySchedule.ReadWrite.Directory", "RoleManagement.ReadWrite.Directory"];
const AUTH_READ: &[&str] = &["UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All"];
const DEVICE_READ: &[&str] = &["Device.Read.All", "Device.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];
const DEVICE_WRITE: &[&str] = &["Device.ReadWrite.All", "Directory.ReadWrite.All"];
const INTUNE_READ: &[&str] = &["DeviceManagementManagedDevices.Read.All", "DeviceManagementManagedDevices.ReadWrite.All"];
const INTUNE_PRIVILEGED: &[&str] = &["DeviceManagementManagedDevices.PrivilegedOperations.All", "DeviceManagementManagedDevices.ReadWrite.All"];
const MAILBOX_SETTINGS_READ: &[&str] = &["MailboxSettings.Read", "MailboxSettings.ReadWrite"];
const MAILBOX_SETTINGS_WRITE: &[&str] = &["MailboxSettings.ReadWrite"];
const CALENDAR_READ: &[&str] = &["Calendars.ReadBasic", "Calendars.Read", "Calendars.ReadWrite"];
const CALENDAR_WRITE: &[&str] = &["Calendars.ReadWrite"];
const FILES_READ: &[&str] = &["Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All", "Sites.ReadWrite.All"];
const FILES_WRITE: &[&str] = &["Files.ReadWrite.All", "Sites.ReadWrite.All"];
const ORG_READ: &[&str] = &[
    "Organization.Read.All",
    "Organization.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "LicenseAssignment.Read.All",
    "LicenseAssignment.ReadWrite.All",
];
const LICENCE_WRITE: &[&str] = &["LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
const REVOKE: &[&str] = &["User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
const ENABLE_DISABLE: &[&str] = &["User.EnableDisableAccount.All", "User.ReadUpdate.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
const PASSWORD_WRITE: &[&str] = &["User-PasswordProfile.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
const USER_UPDATE: &[&str] = &["User.ReadUpdate.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
const IMMUTABLE_WRITE: &[&str] = &["User.ReadWrite.All", "Directory.ReadWrite.All"];
/// Entra roles that may reset a non-admin's password in app-only mode.
const PASSWORD_ROLES: &[&str] = &["User Administrator", "Helpdesk Administrator", "Privileged Authentication Administrator", "Global Administrator"];
/// Entra roles that may act on an administrator's sensitive properties.
const ADMIN_TARGET_ROLES: &[&str] = &["Privileged Authentication Administrator", "Global Administrator"];

/// The permission a route needs: any one of these, from the token's `roles` (app) or `scp`.
/// `None` when the rule depends on the body (PATCH user) and is checked in the handler.
pub fn required(op: Op) -> Option<&'static [&'static str]> {
    use Op::*;
    Some(match op {
        ListUsers | UsersDelta | GetUser | GetManager | LicenseDetails | RegisteredDevices | OwnedDevices => USER_READ,
        PatchUser => return None,
        DeleteUser | PurgeDeletedItem | RestoreDeletedItem => USER_DELETE,
        DeletedUsers | GetDeletedItem => USER_READ,
        MemberOf { .. } | GetGroup | GroupMembers | TransitiveMembers | GroupOwners | OwnedGroups => MEMBER_READ,
        AddMember | RemoveMember | RemoveMemberWithoutRef => MEMBER_WRITE,
        AddOwner | RemoveOwner => OWNER_WRITE,
        RevokeSessions => REVOKE,
        AssignLicense => LICENCE_WRITE,
        SubscribedSkus | Organization => ORG_READ,
        RoleDefinitions | RoleAssignments => ROLE_READ,
        DeleteRoleAssignment => ROLE_WRITE,
        RoleEligibilities => ELIGIBILITY_READ,
        RoleEligibilityRequest => ELIGIBILITY_WRITE,
        AuthMethods | AuthMethod | PasswordMethods | PasswordMethod => AUTH_READ,
        DeleteAuthMethod(c) => match c {
            "phoneMethods" => &["UserAuthMethod-Phone.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "emailMethods" => &["UserAuthMethod-Email.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "microsoftAuthenticatorMethods" => &["UserAuthMethod-MicrosoftAuthApp.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "fido2Methods" => &["UserAuthMethod-Passkey.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "softwareOathMethods" => &["UserAuthMethod-SoftwareOATH.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "windowsHelloForBusinessMethods" => &["UserAuthMethod-WindowsHello.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "temporaryAccessPassMethods" => &["UserAuthMethod-TAP.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            _ => &["UserAuthenticationMethod.ReadWrite.All"],
        },
        // Application permissions are not supported here: only the delegated scope works.
        ResetPasswordMethod => &["UserAuthenticationMethod.ReadWrite.All"],
        GetDevice => DEVICE_READ,
        PatchDevice => DEVICE_WRITE,
        UserManagedDevices | GetManagedDevice => INTUNE_READ,
        Wipe | Retire => INTUNE_PRIVILEGED,
        GetMailboxSettings | MessageRules => MAILBOX_SETTINGS_READ,
        PatchMailboxSettings | DeleteMessageRule => MAILBOX_SETTINGS_WRITE,
        CalendarView | CalendarPermissions => CALENDAR_READ,
        CancelEvent | DeleteCalendarPermission => CALENDAR_WRITE,
        GetDrive | DriveRoot => FILES_READ,
        Invite => FILES_WRITE,
    })
}

pub fn holds(claims: &Claims, any_of: &[&str]) -> bool {
    let grants = claims.grants();
    any_of.iter().any(|p| grants.iter().any(|g| g.eq_ignore_ascii_case(p)))
}

/// What a request costs against the throttling model (graph.md §3 resource units).
pub fn cost(op: Op, ids: &[String], q: &Query, t: &Tenant) -> Cost {
    use Op::*;
    let adjust = |base: u32| -> u32 {
        let mut ru = base as i64;
        if q.get("$select").is_some() {
            ru -= 1;
        }
        if q.get("$expand").is_some() {
            ru += 1;
        }
        if q.get("$top").and_then(|t| t.parse::<u32>().ok()).is_some_and(|t| t < 20) {
            ru -= 1;
        }
        ru.max(1) as u32
    };
    let mailbox = || Cost::Outlook { mailbox: ids.first().and_then(|k| t.user_id(k)).unwrap_or_else(|| ids.first().cloned().unwrap_or_default()) };
    match op {
        ListUsers => Cost::Identity { ru: adjust(2), write: false },
        MemberOf { transitive, .. } => Cost::Identity { ru: adjust(if transitive { 5 } else { 2 }), write: false },
        GroupMembers | OwnedGroups => Cost::Identity { ru: adjust(3), write: false },
        TransitiveMembers => Cost::Identity { ru: adjust(5), write: false },
        LicenseDetails => Cost::Identity { ru: adjust(2), write: false },
        SubscribedSkus => Cost::Identity { ru: adjust(3), write: false },
        PatchUser
        | DeleteUser
        | RevokeSessions
        | AssignLicense
        | AddMember
        | RemoveMember
        | RemoveMemberWithoutRef
        | AddOwner
        | RemoveOwner
        | DeleteRoleAssignment
        | RoleEligibilityRequest
        | DeleteAuthMethod(_)
        | ResetPasswordMethod
        | PurgeDeletedItem
        | RestoreDeletedItem => Cost::Identity { ru: 1, write: true },
        PatchDevice => Cost::Device { device: ids.first().cloned().unwrap_or_default() },
        UserManagedDevices | GetManagedDevice => Cost::Intune { write: false },
        Wipe | Retire => Cost::Intune { write: true },
        GetMailboxSettings
        | PatchMailboxSettings
        | MessageRules
        | DeleteMessageRule
        | CalendarView
        | CancelEvent
        | CalendarPermissions
        | DeleteCalendarPermission => mailbox(),
        GetDrive | DriveRoot | Invite => Cost::None,
        _ => Cost::Identity { ru: adjust(1), write: false },
    }
}

/// What a handler sees besides the world.
pub struct Ctx<'a> {
    pub claims: &'a Claims,
    pub base: &'a str,
    pub now: Duration,
    pub wall: DateTime<Utc>,
    pub delta_expiry: Duration,
    pub consistency_eventual: bool,
}

impl Ctx<'_> {
    fn stamp(&self) -> String {
        self.wall.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

fn stamp_at(ctx: &Ctx, at: Duration) -> String {
    let delta = chrono::Duration::from_std(at).unwrap_or_default() - chrono::Duration::from_std(ctx.now).unwrap_or_default();
    (ctx.wall + delta).to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn user_json(t: &Tenant, u: &User) -> Value {
    let states = t.licence_states(&u.id);
    let assigned: BTreeSet<&String> = states.iter().map(|(s, _)| s).collect();
    let (given, surname) = u.display_name.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).unwrap_or((u.display_name.clone(), String::new()));
    let has_mail = t.mailboxes.contains_key(&u.id);
    json!({
        "id": u.id,
        "userPrincipalName": u.upn,
        "displayName": u.display_name,
        "givenName": given,
        "surname": surname,
        "mail": if has_mail { Value::from(u.upn.clone()) } else { Value::Null },
        "mailNickname": u.upn.split('@').next().unwrap_or_default(),
        "jobTitle": u.job_title,
        "department": u.department,
        "officeLocation": Value::Null,
        "mobilePhone": Value::Null,
        "businessPhones": [],
        "preferredLanguage": "en-US",
        "accountEnabled": u.account_enabled,
        "onPremisesSyncEnabled": if u.synced { Value::Bool(true) } else { Value::Null },
        "onPremisesImmutableId": u.immutable_id,
        "assignedLicenses": assigned.iter().map(|s| json!({"skuId": s, "disabledPlans": []})).collect::<Vec<_>>(),
        "licenseAssignmentStates": states.iter().map(|(s, g)| json!({
            "skuId": s, "assignedByGroup": g, "state": "Active", "error": "None", "disabledPlans": [], "lastUpdatedDateTime": u.created
        })).collect::<Vec<_>>(),
        "signInSessionsValidFromDateTime": u.sessions_valid_from,
        "lastPasswordChangeDateTime": u.password_changed.clone().unwrap_or_else(|| u.created.clone()),
        "usageLocation": u.usage_location,
        "userType": if u.guest { "Guest" } else { "Member" },
        "createdDateTime": u.created,
        "proxyAddresses": if has_mail { vec![format!("SMTP:{}", u.upn)] } else { vec![] },
        "employeeId": Value::Null,
        "companyName": Value::Null,
        "otherMails": [],
    })
}

fn manager_json(t: &Tenant, id: &str) -> Option<Value> {
    t.users.get(id).map(|m| {
        json!({"@odata.type": "#microsoft.graph.user", "id": m.id, "displayName": m.display_name, "userPrincipalName": m.upn, "mail": m.upn, "jobTitle": m.job_title})
    })
}

pub fn group_json(g: &crate::world::Group) -> Value {
    let mut types = vec![];
    if g.kind == GroupKind::M365 {
        types.push("Unified");
    }
    if g.dynamic_rule.is_some() {
        types.push("DynamicMembership");
    }
    json!({
        "@odata.type": "#microsoft.graph.group",
        "id": g.id,
        "displayName": g.name,
        "description": Value::Null,
        "mail": g.mail,
        "mailEnabled": g.kind.mail_enabled(),
        "mailNickname": g.name.to_ascii_lowercase().replace(' ', "."),
        "securityEnabled": g.kind.security_enabled(),
        "groupTypes": types,
        "membershipRule": g.dynamic_rule,
        "membershipRuleProcessingState": if g.dynamic_rule.is_some() { Value::from("On") } else { Value::Null },
        "onPremisesSyncEnabled": if g.synced { Value::Bool(true) } else { Value::Null },
        "isAssignableToRole": g.role_assignable,
        "assignedLicenses": g.licences.iter().map(|s| json!({"skuId": s, "disabledPlans": []})).collect::<Vec<_>>(),
        "resourceProvisioningOptions": if g.team { vec!["Team"] } else { vec![] },
    })
}

fn user_key<'a>(t: &Tenant, ids: &'a [String]) -> Result<(String, &'a str), Reply> {
    let key = ids.first().map(String::as_str).unwrap_or_default();
    t.user_id(key).map(|id| (id, key)).ok_or_else(|| not_found(key))
}

/// Outlook's gate: a live user whose mailbox Exchange serves.
fn mailbox_user(t: &Tenant, ids: &[String]) -> Result<String, Reply> {
    let key = ids.first().map(String::as_str).unwrap_or_default();
    let Some(id) = t.user_id(key) else { return Err(Reply::error(404, "ErrorInvalidUser", format!("The requested user '{key}' is invalid."))) };
    match t.mailbox_ready(&id) {
        Ok(()) => Ok(id),
        Err(MailboxUnavailable::NoMailbox | MailboxUnavailable::NotEnabled) => Err(mailbox_not_enabled()),
    }
}

/// The value of an `Ok`, or the `Err` reply returned from the handler.
macro_rules! or_reply {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(reply) => return reply,
        }
    };
}

type UserPredicate = Box<dyn Fn(&User) -> bool>;

fn filter_users<'t>(t: &'t Tenant, q: &Query, eventual: bool) -> Result<Vec<&'t User>, Reply> {
    let mut users: Vec<&User> = t.users.values().collect();
    users.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(search) = q.get("$search") {
        if !eventual {
            return Err(unsupported_query());
        }
        let terms: Vec<(String, String)> = search
            .split(" OR ")
            .filter_map(|c| {
                let c = c.trim().trim_matches('"');
                c.split_once(':').map(|(p, v)| (p.to_ascii_lowercase(), v.to_ascii_lowercase()))
            })
            .collect();
        if terms.is_empty() {
            return Err(bad_request("Syntax error: expected '\"property:value\"' in $search."));
        }
        users.retain(|u| {
            terms.iter().any(|(p, v)| {
                let field = match p.as_str() {
                    "displayname" => &u.display_name,
                    "userprincipalname" | "mail" => &u.upn,
                    _ => return false,
                };
                field.to_ascii_lowercase().split([' ', '@', '.']).any(|w| w.starts_with(v.as_str())) || field.to_ascii_lowercase().starts_with(v.as_str())
            })
        });
    }
    if let Some(filter) = q.get("$filter") {
        let advanced = filter.contains(" ne ") || filter.to_ascii_lowercase().contains("endswith(") || filter.to_ascii_lowercase().starts_with("not");
        if advanced && !(eventual && q.get("$count").is_some_and(|c| c == "true")) {
            return Err(Reply::error(400, "Request_UnsupportedQuery", "Unsupported Query."));
        }
        let clauses = filter.split(" or ").map(str::trim).collect::<Vec<_>>();
        let mut preds: Vec<UserPredicate> = Vec::new();
        for c in clauses {
            preds.push(parse_user_clause(c)?);
        }
        users.retain(|u| preds.iter().any(|p| p(u)));
    }
    Ok(users)
}

fn quoted(s: &str) -> Option<String> {
    let s = s.trim();
    s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).map(|s| s.replace("''", "'"))
}

fn user_field(u: &User, p: &str) -> Option<String> {
    Some(match p.to_ascii_lowercase().as_str() {
        "displayname" => u.display_name.clone(),
        "userprincipalname" | "mail" => u.upn.clone(),
        "id" => u.id.clone(),
        "jobtitle" => u.job_title.clone().unwrap_or_default(),
        "department" => u.department.clone().unwrap_or_default(),
        "accountenabled" => u.account_enabled.to_string(),
        "usertype" => if u.guest { "Guest" } else { "Member" }.into(),
        _ => return None,
    })
}

fn parse_user_clause(c: &str) -> Result<UserPredicate, Reply> {
    let unsupported =
        || Reply::error(400, "Request_UnsupportedQuery", format!("Unsupported or invalid query filter clause specified for property of type '{USER_TYPE}'."));
    let lower = c.to_ascii_lowercase();
    for (func, ends) in [("startswith(", false), ("endswith(", true)] {
        if let Some(rest) = lower.strip_prefix(func) {
            let inner = &c[func.len()..c.len() - 1];
            let (prop, val) = inner.split_once(',').ok_or_else(unsupported)?;
            let prop = prop.trim().to_string();
            let val = quoted(val).ok_or_else(unsupported)?.to_ascii_lowercase();
            if !rest.ends_with(')') || user_field(&User::placeholder(), &prop).is_none() {
                return Err(unsupported());
            }
            return Ok(Box::new(move |u| {
                let f = user_field(u, &prop).unwrap_or_default().to_ascii_lowercase();
                if ends { f.ends_with(&val) } else { f.starts_with(&val) }
            }));
        }
    }
    for (op, neg) in [(" eq ", false), (" ne ", true)] {
        if let Some((prop, val)) = c.split_once(op) {
            let prop = prop.trim().to_string();
            if user_field(&User::placeholder(), &prop).is_none() {
                return Err(unsupported());
            }
            let val = quoted(val).unwrap_or_else(|| val.trim().to_string()).to_ascii_lowercase();
            return Ok(Box::new(move |u| (user_field(u, &prop).unwrap_or_default().to_ascii_lowercase() == val) != neg));
        }
    }
    Err(unsupported())
}

impl User {
    fn placeholder() -> Self {
        User {
            id: String::new(),
            upn: String::new(),
            display_name: String::new(),
            job_title: None,
            department: None,
            manager: None,
            account_enabled: true,
            synced: false,
            immutable_id: None,
            guest: false,
            usage_location: None,
            direct_licences: vec![],
            auth_methods: vec![],
            sessions_valid_from: String::new(),
            password_changed: None,
            password: None,
            created: String::new(),
        }
    }
}

fn principal_filter(q: &Query) -> Result<Option<String>, Reply> {
    match q.get("$filter") {
        None => Ok(None),
        Some(f) => {
            let (p, v) = f.split_once(" eq ").ok_or_else(|| bad_request(format!("Invalid filter clause: {f}")))?;
            if !p.trim().eq_ignore_ascii_case("principalId") {
                return Err(bad_request(format!("Invalid filter clause: {f}")));
            }
            Ok(Some(quoted(v).ok_or_else(|| bad_request(format!("Invalid filter clause: {f}")))?))
        }
    }
}

fn role_json(r: &RoleAssignment, expand: bool, ctx: &Ctx) -> Value {
    let mut v = json!({"id": r.id, "principalId": r.principal, "roleDefinitionId": r.role, "directoryScopeId": "/"});
    if r.eligible {
        v["memberType"] = json!("Direct");
        v["status"] = json!("Provisioned");
        v["scheduleInfo"] = json!({"startDateTime": ctx.stamp(), "expiration": {"type": "noExpiration"}});
    }
    if expand {
        v["roleDefinition"] = json!({"id": r.role, "displayName": role_name(&r.role), "templateId": r.role, "isBuiltIn": true});
    }
    v
}

fn is_password_complex(p: &str) -> bool {
    let classes = [
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_alphanumeric()),
    ];
    p.chars().count() >= 8 && p.chars().count() <= 256 && classes.iter().filter(|x| **x).count() >= 3
}

/// One resolved Graph request.
pub struct Call<'a> {
    pub op: Op,
    pub ids: &'a [String],
    pub q: &'a Query,
    pub path: &'a str,
    pub body: Option<&'a Value>,
}

/// Runs one Graph operation. Permissions from [`required`] were checked by the caller.
pub fn execute(w: &mut World, ti: usize, ctx: &Ctx, call: &Call) -> Reply {
    let Call { op, ids, q, path, body } = *call;
    let World { tenants, ledger, .. } = w;
    let t = &mut tenants[ti];
    let tid = t.id.clone();
    match op {
        Op::ListUsers => {
            let users = or_reply!(filter_users(t, q, ctx.consistency_eventual));
            let mut items = Vec::new();
            for u in users {
                match project(&user_json(t, u), q.get("$select"), USER_DEFAULT, USER_TYPE) {
                    Ok(v) => items.push(v),
                    Err(e) => return e,
                }
            }
            page_or(w, ctx, path, q, items, PageSpec { default_top: 100, max_top: 999, context: "users" })
        }
        Op::UsersDelta => delta(w, ti, ctx, q),
        Op::GetUser => {
            let (id, _) = or_reply!(user_key(t, ids));
            let mut full = user_json(t, &t.users[&id]);
            let expand = q.get("$expand").unwrap_or_default();
            if expand.to_ascii_lowercase().starts_with("manager") {
                full["manager"] = t.users[&id].manager.as_deref().and_then(|m| manager_json(t, m)).unwrap_or(Value::Null);
            }
            let mut out = or_reply!(project(&full, q.get("$select"), USER_DEFAULT, USER_TYPE));
            if let Some(m) = full.get("manager") {
                out["manager"] = m.clone();
            }
            out["@odata.context"] = json!(format!("{}/v1.0/$metadata#users/$entity", ctx.base));
            Reply::ok(out)
        }
        Op::GetManager => {
            let (id, _) = or_reply!(user_key(t, ids));
            match t.users[&id].manager.as_deref().and_then(|m| t.users.get(m)) {
                // The manager is a user: `$select` picks from all of its properties.
                Some(m) if q.get("$select").is_some() => {
                    let mut v = or_reply!(project(&user_json(t, m), q.get("$select"), USER_DEFAULT, USER_TYPE));
                    v["@odata.type"] = json!("#microsoft.graph.user");
                    Reply::ok(v)
                }
                Some(m) => Reply::ok(manager_json(t, &m.id).expect("the manager exists")),
                None => not_found("manager"),
            }
        }
        Op::PatchUser => patch_user(t, ledger, ctx, ids, body),
        Op::DeleteUser => {
            let (id, _) = or_reply!(user_key(t, ids));
            delete_user(t, ledger, ctx, &id, "DELETE /users/{id}")
        }
        Op::RemoveMemberWithoutRef => {
            let Some(gid) = t.group_id(&ids[0]) else { return not_found(&ids[0]) };
            let Some(uid) = t.user_id(&ids[1]) else { return not_found(&ids[1]) };
            if !t.groups[&gid].members.contains(&uid) {
                return not_found(&gid);
            }
            // The documented footgun: without /$ref the *user* is deleted, given the permission.
            if !holds(ctx.claims, &["User.ReadWrite.All"]) {
                return denied();
            }
            delete_user(t, ledger, ctx, &uid, "DELETE /groups/{id}/members/{id} without /$ref")
        }
        Op::MemberOf { cast, .. } => {
            let (id, _) = or_reply!(user_key(t, ids));
            let mut items = Vec::new();
            for g in t.groups.values().filter(|g| g.members.contains(&id)) {
                match project(&group_json(g), q.get("$select"), &[], "Microsoft.DirectoryServices.Group") {
                    Ok(v) => items.push(v),
                    Err(e) => return e,
                }
            }
            if !cast {
                for role in t.active_roles(&id) {
                    items.push(json!({"@odata.type": "#microsoft.graph.directoryRole", "id": crate::world::guid(&format!("{tid}/directoryRole/{role}")), "displayName": role_name(&role), "roleTemplateId": role}));
                }
            }
            page_or(w, ctx, path, q, items, PageSpec { default_top: 100, max_top: 999, context: "directoryObjects" })
        }
        Op::RevokeSessions => {
            let (id, _) = or_reply!(user_key(t, ids));
            t.users.get_mut(&id).expect("user").sessions_valid_from = ctx.stamp();
            ledger.record(ctx.now, &tid, "user.sessions_revoked", &id, json!({}));
            t.changed(&id, false);
            Reply::ok(json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": true}))
        }
        Op::AssignLicense => assign_licence(t, ledger, ctx, ids, body),
        Op::LicenseDetails => {
            let (id, _) = or_reply!(user_key(t, ids));
            let items: Vec<Value> = t
                .assigned_skus(&id)
                .iter()
                .filter_map(|s| t.sku(s))
                .map(|s| {
                    json!({"id": format!("{}{}", &s.id[..8], &id[..8]), "skuId": s.id, "skuPartNumber": s.part,
                        "servicePlans": s.plans.iter().map(|p| json!({"servicePlanId": crate::world::guid(p), "servicePlanName": p, "provisioningStatus": "Success", "appliesTo": "User"})).collect::<Vec<_>>()})
                })
                .collect();
            page_or(w, ctx, path, q, items, PageSpec { default_top: 100, max_top: 999, context: "users('id')/licenseDetails" })
        }
        Op::SubscribedSkus => {
            let items: Vec<Value> = t
                .skus
                .iter()
                .map(|s| {
                    json!({"id": format!("{tid}_{}", s.id), "skuId": s.id, "skuPartNumber": s.part, "capabilityStatus": "Enabled", "appliesTo": "User",
                        "consumedUnits": t.consumed(&s.id), "prepaidUnits": {"enabled": s.units, "suspended": 0, "warning": 0, "lockedOut": 0},
                        "servicePlans": s.plans.iter().map(|p| json!({"servicePlanId": crate::world::guid(p), "servicePlanName": p, "provisioningStatus": "Success", "appliesTo": "User"})).collect::<Vec<_>>()})
                })
                .collect();
            Reply::ok(json!({"@odata.context": format!("{}/v1.0/$metadata#subscribedSkus", ctx.base), "value": items}))
        }
        Op::Organization => {
            let domains: Vec<Value> = t
                .domains
                .iter()
                .enumerate()
                .map(|(i, d)| json!({"name": d, "isDefault": i == 0, "isInitial": d.ends_with(".onmicrosoft.com"), "type": "Managed", "capabilities": "Email, OfficeCommunicationsOnline"}))
                .collect();
            Reply::ok(
                json!({"@odata.context": format!("{}/v1.0/$metadata#organization", ctx.base), "value": [{"id": tid, "displayName": t.name, "tenantType": "AAD", "verifiedDomains": domains}]}),
            )
        }
        Op::GetGroup => match t.group_id(&ids[0]) {
            Some(g) => match project(&group_json(&t.groups[&g]), q.get("$select"), &[], "Microsoft.DirectoryServices.Group") {
                Ok(v) => Reply::ok(v),
                Err(e) => e,
            },
            None => not_found(&ids[0]),
        },
        Op::GroupMembers | Op::GroupOwners => {
            let Some(gid) = t.group_id(&ids[0]) else { return not_found(&ids[0]) };
            let g = &t.groups[&gid];
            let set = if op == Op::GroupMembers { &g.members } else { &g.owners };
            let mut items = Vec::new();
            for u in set.iter().filter_map(|id| t.users.get(id)) {
                let mut v = or_reply!(project(&user_json(t, u), q.get("$select"), USER_DEFAULT, USER_TYPE));
                v["@odata.type"] = json!("#microsoft.graph.user");
                items.push(v);
            }
            page_or(w, ctx, path, q, items, PageSpec { default_top: 100, max_top: 999, context: "directoryObjects" })
        }
        Op::TransitiveMembers => {
            let Some(gid) = t.group_id(&ids[0]) else { return not_found(&ids[0]) };
            let (mut seen, mut queue, mut users) = (BTreeSet::new(), vec![gid], BTreeSet::new());
            while let Some(g) = queue.pop() {
                if !seen.insert(g.clone()) {
                    continue;
                }
                for m in &t.groups[&g].members {
                    if t.users.contains_key(m) {
                        users.insert(m.clone());
                    } else if t.groups.contains_key(m) {
                        queue.push(m.clone());
                    }
                }
            }
            let mut items = Vec::new();
            for u in users.iter().filter_map(|id| t.users.get(id)) {
                let mut v = or_reply!(project(&user_json(t, u), q.get("$select"), USER_DEFAULT, USER_TYPE));
                v["@odata.type"] = json!("#microsoft.graph.user");
                items.push(v);
            }
            page_or(w, ctx, path, q, items, PageSpec { default_top: 100, max_top: 999, context: "users" })
        }
        Op::AddMember => {
            let Some(gid) = t.group_id(&ids[0]) else { return not_found(&ids[0]) };
            let Some(reference) = body.and_then(|b| b.get("@odata.id")).and_then(Value::as_str) else {
                return bad_request("Invalid request body: the '@odata.id' reference is missing.");
            };
            let key = reference.rsplit('/').next().unwrap_or_default();
            let Some(uid) = t.user_id(key) else { return not_found(key) };
            if let Some(r) = member_write_refusal(t, ctx, &gid) {
                return r;
            }
            let g = t.groups.get_mut(&gid).expect("group");
            if !g.members.insert(uid.clone()) {
                return bad_request("One or more added object references already exist for the following modified properties: 'members'.");
            }
            ledger.record(ctx.now, &tid, "group.member_added", &uid, json!({"group": gid, "group_name": g.name}));
            t.changed(&uid, false);
            Reply::no_content()
        }
        Op::RemoveMember => {
            let Some(gid) = t.group_id(&ids[0]) else { return not_found(&ids[0]) };
            if let Some(r) = member_write_refusal(t, ctx, &gid) {
                return r;
            }
            let uid = t.user_id(&ids[1]).unwrap_or_else(|| ids[1].clone());
            match t.remove_member(&gid, &uid, "graph", ctx.now, ledger) {
                Some(()) => Reply::no_content(),
                // Graph names the group, not the user, when the user is not a member.
                None => not_found(&gid),
            }
        }
        Op::AddOwner => {
            let Some(gid) = t.group_id(&ids[0]) else { return not_found(&ids[0]) };
            let Some(reference) = body.and_then(|b| b.get("@odata.id")).and_then(Value::as_str) else {
                return bad_request("Invalid request body: the '@odata.id' reference is missing.");
            };
            let key = reference.rsplit('/').next().unwrap_or_default();
            let Some(uid) = t.user_id(key) else { return not_found(key) };
            if let Some(r) = owner_write_refusal(t, &gid) {
                return r;
            }
            let g = t.groups.get_mut(&gid).expect("group");
            if !g.owners.insert(uid.clone()) {
                return bad_request("One or more added object references already exist for the following modified properties: 'owners'.");
            }
            ledger.record(ctx.now, &tid, "group.owner_added", &uid, json!({"group": gid, "group_name": g.name}));
            Reply::no_content()
        }
        Op::RemoveOwner => {
            let Some(gid) = t.group_id(&ids[0]) else { return not_found(&ids[0]) };
            if let Some(r) = owner_write_refusal(t, &gid) {
                return r;
            }
            let uid = t.user_id(&ids[1]).unwrap_or_else(|| ids[1].clone());
            let g = t.groups.get_mut(&gid).expect("group");
            if !g.owners.contains(&uid) {
                return not_found(&gid);
            }
            // A Microsoft 365 group keeps at least one owner (observed text).
            if g.kind == GroupKind::M365 && g.owners.len() == 1 {
                return bad_request("The group must have at least one owner, hence this owner cannot be removed.");
            }
            g.owners.remove(&uid);
            ledger.record(ctx.now, &tid, "group.owner_removed", &uid, json!({"group": gid, "group_name": g.name}));
            Reply::no_content()
        }
        Op::OwnedGroups => {
            let (id, _) = or_reply!(user_key(t, ids));
            let mut items = Vec::new();
            for g in t.groups.values().filter(|g| g.owners.contains(&id)) {
                match project(&group_json(g), q.get("$select"), &[], "Microsoft.DirectoryServices.Group") {
                    Ok(v) => items.push(v),
                    Err(e) => return e,
                }
            }
            page_or(w, ctx, path, q, items, PageSpec { default_top: 100, max_top: 999, context: "directoryObjects" })
        }
        Op::RoleDefinitions => {
            let items: Vec<Value> =
                ROLES.iter().map(|(n, id)| json!({"id": id, "displayName": n, "templateId": id, "isBuiltIn": true, "isEnabled": true})).collect();
            Reply::ok(json!({"@odata.context": format!("{}/v1.0/$metadata#roleManagement/directory/roleDefinitions", ctx.base), "value": items}))
        }
        Op::RoleAssignments | Op::RoleEligibilities => {
            let principal = or_reply!(principal_filter(q));
            let eligible = op == Op::RoleEligibilities;
            let expand = q.get("$expand").is_some_and(|e| e.eq_ignore_ascii_case("roleDefinition"));
            let items: Vec<Value> = t
                .roles
                .iter()
                .filter(|r| r.eligible == eligible && principal.as_ref().is_none_or(|p| p.eq_ignore_ascii_case(&r.principal)))
                .map(|r| role_json(r, expand, ctx))
                .collect();
            page_or(w, ctx, path, q, items, PageSpec { default_top: 100, max_top: 999, context: "roleManagement/directory/roleAssignments" })
        }
        Op::DeleteRoleAssignment => {
            let Some(pos) = t.roles.iter().position(|r| !r.eligible && r.id.eq_ignore_ascii_case(&ids[0])) else { return not_found(&ids[0]) };
            let r = t.roles.remove(pos);
            ledger.record(ctx.now, &tid, "role.assignment_removed", &r.principal, json!({"role": role_name(&r.role), "assignment": r.id}));
            t.changed(&r.principal, false);
            Reply::no_content()
        }
        Op::RoleEligibilityRequest => eligibility_request(t, ledger, ctx, body),
        Op::AuthMethods | Op::PasswordMethods => {
            let (id, _) = or_reply!(user_key(t, ids));
            let items: Vec<Value> =
                t.users[&id].auth_methods.iter().filter(|m| op == Op::AuthMethods || m.collection == "passwordMethods").map(method_json).collect();
            Reply::ok(json!({"@odata.context": format!("{}/v1.0/$metadata#users('{id}')/authentication/methods", ctx.base), "value": items}))
        }
        Op::AuthMethod | Op::PasswordMethod => {
            let (id, _) = or_reply!(user_key(t, ids));
            t.users[&id]
                .auth_methods
                .iter()
                .find(|m| m.id.eq_ignore_ascii_case(&ids[1]) && (op == Op::AuthMethod || m.collection == "passwordMethods"))
                .map(|m| Reply::ok(method_json(m)))
                .unwrap_or_else(|| not_found(&ids[1]))
        }
        Op::DeleteAuthMethod(collection) => {
            let (id, _) = or_reply!(user_key(t, ids));
            let u = t.users.get_mut(&id).expect("user");
            let Some(pos) = u.auth_methods.iter().position(|m| m.id.eq_ignore_ascii_case(&ids[1]) && m.collection == collection) else {
                return not_found(&ids[1]);
            };
            let m = u.auth_methods.remove(pos);
            ledger.record(ctx.now, &tid, "auth_method.deleted", &id, json!({"type": m.odata_type.trim_start_matches("#microsoft.graph."), "method": m.id}));
            Reply::no_content()
        }
        Op::ResetPasswordMethod => {
            if !ctx.claims.delegated() {
                // "Application permission: Not supported" (authenticationmethod-resetpassword).
                return denied();
            }
            let (id, _) = or_reply!(user_key(t, ids));
            if !ids[1].eq_ignore_ascii_case(PASSWORD_METHOD_ID) {
                return not_found(&ids[1]);
            }
            let supplied = body.and_then(|b| b.get("newPassword")).and_then(Value::as_str);
            if let Some(p) = supplied
                && !is_password_complex(p)
            {
                return bad_request("The specified password does not comply with password complexity requirements. Please provide a different password.");
            }
            let u = t.users.get_mut(&id).expect("user");
            u.password_changed = Some(ctx.stamp());
            u.password = supplied.map(String::from);
            ledger.record(ctx.now, &tid, "user.password_reset", &id, json!({"via": "resetPassword"}));
            let op_id = uuid::Uuid::new_v4();
            let reply = Reply::accepted().header("Location", format!("{}/v1.0/users/{id}/authentication/operations/{op_id}", ctx.base));
            if supplied.is_none() {
                let generated = format!("Sim{}!a1", hex::encode(rand::random::<[u8; 6]>()));
                return Reply { body: Some(json!({"newPassword": generated})), ..reply };
            }
            reply
        }
        Op::RegisteredDevices | Op::OwnedDevices => {
            let (id, _) = or_reply!(user_key(t, ids));
            let items: Vec<Value> = t.devices.values().filter(|d| d.owner == id).map(device_json).collect();
            page_or(w, ctx, path, q, items, PageSpec { default_top: 100, max_top: 999, context: "directoryObjects" })
        }
        Op::GetDevice => t.devices.get(&ids[0]).map(|d| Reply::ok(device_json(d))).unwrap_or_else(|| not_found(&ids[0])),
        Op::PatchDevice => {
            let Some(d) = t.devices.get_mut(&ids[0]) else { return not_found(&ids[0]) };
            let Some(obj) = body.and_then(Value::as_object) else { return bad_request("Invalid request body.") };
            for (k, v) in obj {
                match (k.as_str(), v) {
                    ("accountEnabled", Value::Bool(b)) => {
                        d.account_enabled = *b;
                        let kind = if *b { "device.enabled" } else { "device.disabled" };
                        ledger.record(ctx.now, &tid, kind, &d.id, json!({"name": d.name}));
                    }
                    ("displayName", Value::String(s)) => d.name = s.clone(),
                    _ => return bad_request(format!("Invalid value specified for property '{k}' of resource 'Device'.")),
                }
            }
            Reply::no_content()
        }
        Op::UserManagedDevices => {
            let (id, _) = or_reply!(user_key(t, ids));
            let upn = t.upn_of(&id);
            let items: Vec<Value> = t.managed.values().filter(|m| m.user == id).map(|m| managed_json(m, &upn)).collect();
            page_or(w, ctx, path, q, items, PageSpec { default_top: 1000, max_top: 1000, context: "users('id')/managedDevices" })
        }
        Op::GetManagedDevice => match t.managed.get(&ids[0]) {
            Some(m) => Reply::ok(managed_json(m, &t.upn_of(&m.user))),
            None => Reply::error(404, "ResourceNotFound", format!("Resource not found: managedDevice {}", ids[0])),
        },
        Op::Wipe | Op::Retire => {
            let Some(m) = t.managed.get_mut(&ids[0]) else {
                return Reply::error(404, "ResourceNotFound", format!("Resource not found: managedDevice {}", ids[0]));
            };
            let params: &[&str] = if op == Op::Wipe { &["keepEnrollmentData", "keepUserData", "macOsUnlockCode", "persistEsimDataPlan"] } else { &[] };
            if let Some(obj) = body.and_then(Value::as_object) {
                for k in obj.keys() {
                    if !params.contains(&k.as_str()) {
                        let action = if op == Op::Wipe { "wipe" } else { "retire" };
                        return Reply::error(
                            400,
                            "BadRequest",
                            format!("The parameter '{k}' in the request payload is not a valid parameter for the operation '{action}'."),
                        );
                    }
                }
            }
            let (state, kind) = if op == Op::Wipe { ("wipePending", "managed_device.wiped") } else { ("retirePending", "managed_device.retired") };
            m.state = state;
            let detail = json!({"name": m.name, "keepUserData": body.and_then(|b| b.get("keepUserData")).cloned().unwrap_or(Value::Bool(false))});
            let mid = m.id.clone();
            ledger.record(ctx.now, &tid, kind, &mid, detail);
            Reply::no_content()
        }
        Op::GetMailboxSettings => {
            let id = or_reply!(mailbox_user(t, ids));
            Reply::ok(mailbox_settings_json(t, &id, ctx))
        }
        Op::PatchMailboxSettings => {
            let id = or_reply!(mailbox_user(t, ids));
            patch_mailbox_settings(t, ledger, ctx, &id, body)
        }
        Op::MessageRules => {
            let id = or_reply!(mailbox_user(t, ids));
            if !ids[1].eq_ignore_ascii_case("inbox") {
                return Reply::error(404, "ErrorItemNotFound", "The specified object was not found in the store.");
            }
            let items: Vec<Value> = t.mailboxes[&id].rules.iter().enumerate().map(|(i, r)| rule_json(r, i)).collect();
            Reply::ok(json!({"@odata.context": format!("{}/v1.0/$metadata#users('{id}')/mailFolders('inbox')/messageRules", ctx.base), "value": items}))
        }
        Op::DeleteMessageRule => {
            let id = or_reply!(mailbox_user(t, ids));
            let mb = t.mailboxes.get_mut(&id).expect("mailbox");
            let Some(pos) = mb.rules.iter().position(|r| r.id == ids[2]) else {
                return Reply::error(404, "ErrorItemNotFound", "The specified object was not found in the store.");
            };
            let r = mb.rules.remove(pos);
            ledger.record(ctx.now, &tid, "mailbox.rule_deleted", &id, json!({"rule": r.name, "forwarded": r.forward_to.is_some() || r.redirect_to.is_some()}));
            Reply::no_content()
        }
        Op::CalendarView => {
            let id = or_reply!(mailbox_user(t, ids));
            let (Some(start), Some(end)) = (q.get("startDateTime").and_then(parse_time), q.get("endDateTime").and_then(parse_time)) else {
                return Reply::error(
                    400,
                    "ErrorInvalidParameter",
                    "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
                );
            };
            let items: Vec<Value> = t.mailboxes[&id]
                .events
                .iter()
                .filter(|e| !e.deleted)
                .filter(|e| {
                    let at = DateTime::parse_from_rfc3339(&stamp_at(ctx, e.start)).map(|d| d.with_timezone(&Utc)).unwrap_or(ctx.wall);
                    at >= start && at < end
                })
                .map(|e| event_json(t, e, ctx))
                .collect();
            page_or(w, ctx, path, q, items, PageSpec { default_top: 10, max_top: 1000, context: "events" })
        }
        Op::CancelEvent => {
            let id = or_reply!(mailbox_user(t, ids));
            if let Some(obj) = body.and_then(Value::as_object) {
                for k in obj.keys() {
                    if !k.eq_ignore_ascii_case("Comment") {
                        return Reply::error(
                            400,
                            "RequestBodyRead",
                            format!("The parameter '{k}' in the request payload is not a valid parameter for the operation 'cancel'."),
                        );
                    }
                }
            }
            let mb = t.mailboxes.get_mut(&id).expect("mailbox");
            let Some(e) = mb.events.iter_mut().find(|e| e.id == ids[1] && !e.deleted) else {
                return Reply::error(404, "ErrorItemNotFound", "The specified object was not found in the store.");
            };
            if !e.is_organizer {
                return Reply::error(400, "ErrorInvalidRequest", "Your request can't be completed. You need to be an organizer to cancel a meeting.");
            }
            e.deleted = true;
            e.cancelled = true;
            let meeting = e.meeting.clone();
            let subject = e.subject.clone();
            let attendees = e.attendees.len();
            for mb in t.mailboxes.values_mut() {
                for copy in mb.events.iter_mut().filter(|c| c.meeting == meeting && !c.is_organizer) {
                    copy.cancelled = true;
                }
            }
            ledger.record(ctx.now, &tid, "event.cancelled", &id, json!({"subject": subject, "meeting": meeting, "attendees": attendees}));
            Reply::accepted()
        }
        Op::CalendarPermissions => {
            let id = or_reply!(mailbox_user(t, ids));
            let items: Vec<Value> = t.mailboxes[&id]
                .calendar_permissions
                .iter()
                .map(|p| {
                    json!({"id": p.id, "isRemovable": p.removable, "isInsideOrganization": true, "role": p.role,
                        "allowedRoles": ["none", "freeBusyRead", "limitedRead", "read", "write"],
                        "emailAddress": {"name": p.name, "address": if p.email.is_empty() { Value::Null } else { Value::from(p.email.clone()) }}})
                })
                .collect();
            Reply::ok(json!({"@odata.context": format!("{}/v1.0/$metadata#users('{id}')/calendar/calendarPermissions", ctx.base), "value": items}))
        }
        Op::DeleteCalendarPermission => {
            let id = or_reply!(mailbox_user(t, ids));
            let mb = t.mailboxes.get_mut(&id).expect("mailbox");
            let Some(pos) = mb.calendar_permissions.iter().position(|p| p.id == ids[1]) else {
                return Reply::error(404, "ErrorItemNotFound", "The specified object was not found in the store.");
            };
            if !mb.calendar_permissions[pos].removable {
                return Reply::error(400, "ErrorInvalidRequest", "The default calendar permission cannot be removed.");
            }
            let p = mb.calendar_permissions.remove(pos);
            ledger.record(ctx.now, &tid, "calendar.permission_removed", &id, json!({"grantee": p.email, "role": p.role}));
            Reply::no_content()
        }
        Op::GetDrive => {
            let (id, _) = or_reply!(user_key(t, ids));
            let Some(d) = t.drives.get(&id) else { return Reply::error(404, "ResourceNotFound", "User's mysite not found.") };
            let u = &t.users[&id];
            Reply::ok(json!({"id": d.id, "driveType": "business", "name": "OneDrive", "webUrl": d.web_url,
                "owner": {"user": {"id": u.id, "displayName": u.display_name, "email": u.upn}},
                "quota": {"total": 1_099_511_627_776_u64, "used": 5_368_709_120_u64, "state": "normal"}}))
        }
        Op::DriveRoot => {
            let Some((_, d)) = t.drives.iter().find(|(_, d)| d.id == ids[0]) else {
                return Reply::error(404, "itemNotFound", "The resource could not be found.");
            };
            let site = d.web_url.trim_end_matches("/Documents").to_string();
            let full = json!({"id": d.root_id, "name": "root", "webUrl": d.web_url, "root": {}, "folder": {"childCount": 12},
                "parentReference": {"driveId": d.id, "driveType": "business"},
                "sharepointIds": {"siteUrl": site, "listItemUniqueId": Value::Null}});
            match project(&full, q.get("$select"), &["id", "name", "webUrl", "root", "folder", "parentReference"], "microsoft.graph.driveItem") {
                Ok(v) => Reply::ok(v),
                Err(e) => e,
            }
        }
        Op::Invite => invite(t, ledger, ctx, ids, body),
        Op::DeletedUsers => {
            let items: Vec<Value> = t.deleted.values().map(|d| deleted_json(t, d)).collect();
            page_or(w, ctx, path, q, items, PageSpec { default_top: 100, max_top: 999, context: "directory/deletedItems/microsoft.graph.user" })
        }
        Op::GetDeletedItem => t.deleted.get(&ids[0]).map(|d| Reply::ok(deleted_json(t, d))).unwrap_or_else(|| not_found(&ids[0])),
        Op::PurgeDeletedItem => {
            if t.deleted.remove(&ids[0]).is_none() {
                return not_found(&ids[0]);
            }
            t.mailboxes.remove(&ids[0]);
            t.drives.remove(&ids[0]);
            ledger.record(ctx.now, &tid, "user.purged", &ids[0], json!({"reason": "purged"}));
            t.changed(&ids[0], true);
            Reply::no_content()
        }
        Op::RestoreDeletedItem => {
            let Some(d) = t.deleted.remove(&ids[0]) else { return not_found(&ids[0]) };
            let id = d.user.id.clone();
            t.users.insert(id.clone(), d.user);
            ledger.record(ctx.now, &tid, "user.restored", &id, json!({}));
            t.changed(&id, false);
            Reply::status(200, user_json(t, &t.users[&id]))
        }
    }
}

fn page_or(w: &mut World, ctx: &Ctx, path: &str, q: &Query, items: Vec<Value>, spec: PageSpec) -> Reply {
    match page(w, ctx.base, path, q, items, spec) {
        Ok(v) => Reply::ok(v),
        Err(e) => e,
    }
}

fn member_write_refusal(t: &Tenant, ctx: &Ctx, gid: &str) -> Option<Reply> {
    let g = &t.groups[gid];
    if g.synced {
        return Some(synced_refusal());
    }
    if g.kind.exchange_managed() {
        return Some(bad_request("Cannot Update a mail-enabled security groups and or distribution list."));
    }
    if g.dynamic_rule.is_some() {
        // The exact text is not documented; the status and code match Graph's other refusals.
        return Some(bad_request("Insufficient privileges to complete the operation. Membership of a group with a dynamic membership rule cannot be changed."));
    }
    if g.role_assignable && !holds(ctx.claims, ROLE_WRITE) {
        return Some(denied());
    }
    None
}

/// Owners of synced groups belong to on-premises AD; owners of distribution lists and
/// mail-enabled security groups are Exchange's `ManagedBy`.
fn owner_write_refusal(t: &Tenant, gid: &str) -> Option<Reply> {
    let g = &t.groups[gid];
    if g.synced {
        return Some(synced_refusal());
    }
    if g.kind.exchange_managed() {
        return Some(bad_request("Cannot Update a mail-enabled security groups and or distribution list."));
    }
    None
}

fn delete_user(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, id: &str, via: &str) -> Reply {
    let u = &t.users[id];
    if u.synced {
        return synced_refusal();
    }
    if t.is_admin(id) && !ctx.claims.has_entra_role(ADMIN_TARGET_ROLES) {
        return denied();
    }
    let user = t.users.remove(id).expect("user");
    ledger.record(ctx.now, &t.id, "user.deleted", id, json!({"via": via, "upn": user.upn}));
    t.deleted.insert(id.to_string(), Deleted { user, at: ctx.now, deleted_date: ctx.stamp() });
    t.changed(id, true);
    Reply::no_content()
}

fn patch_user(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, ids: &[String], body: Option<&Value>) -> Reply {
    let (id, _) = or_reply!(user_key(t, ids));
    let Some(obj) = body.and_then(Value::as_object) else { return bad_request("Invalid request body: a JSON object is required.") };
    const READ_ONLY: &[&str] = &[
        "id",
        "createdDateTime",
        "onPremisesSyncEnabled",
        "licenseAssignmentStates",
        "assignedLicenses",
        "signInSessionsValidFromDateTime",
        "mail",
        "proxyAddresses",
    ];
    const UPDATABLE: &[&str] = &[
        "displayName",
        "givenName",
        "surname",
        "jobTitle",
        "department",
        "officeLocation",
        "mobilePhone",
        "businessPhones",
        "usageLocation",
        "companyName",
        "employeeId",
        "otherMails",
        "preferredLanguage",
    ];
    let admin_target = t.is_admin(&id);
    let synced = t.users[&id].synced;
    for k in obj.keys() {
        let perms = match k.as_str() {
            "accountEnabled" => ENABLE_DISABLE,
            "passwordProfile" => PASSWORD_WRITE,
            "onPremisesImmutableId" => IMMUTABLE_WRITE,
            k if UPDATABLE.contains(&k) => USER_UPDATE,
            k if READ_ONLY.contains(&k) => return bad_request(format!("Property '{k}' is read-only and cannot be set.")),
            k => return bad_request(format!("Invalid property '{k}'.")),
        };
        if !holds(ctx.claims, perms) {
            return denied();
        }
        if k == "passwordProfile" && !ctx.claims.has_entra_role(if admin_target { ADMIN_TARGET_ROLES } else { PASSWORD_ROLES }) {
            return denied();
        }
        if k == "accountEnabled" && admin_target && !ctx.claims.has_entra_role(ADMIN_TARGET_ROLES) {
            return denied();
        }
        if synced && k != "usageLocation" {
            return synced_refusal();
        }
    }
    if let Some(p) = obj.get("passwordProfile") {
        let Some(password) = p.get("password").and_then(Value::as_str) else {
            return bad_request("Invalid value specified for property 'passwordProfile' of resource 'User'.");
        };
        if !is_password_complex(password) {
            return bad_request("The specified password does not comply with password complexity requirements. Please provide a different password.");
        }
    }
    let u = t.users.get_mut(&id).expect("user");
    let mut updated = Vec::new();
    for (k, v) in obj {
        match k.as_str() {
            "accountEnabled" => {
                let Some(b) = v.as_bool() else { return bad_request("Invalid value specified for property 'accountEnabled' of resource 'User'.") };
                u.account_enabled = b;
                ledger.record(ctx.now, &t.id, if b { "user.enabled" } else { "user.disabled" }, &id, json!({}));
            }
            "passwordProfile" => {
                u.password_changed = Some(ctx.stamp());
                u.password = v.get("password").and_then(Value::as_str).map(String::from);
                // The ledger records only that it changed.
                let force = v.get("forceChangePasswordNextSignIn").and_then(Value::as_bool).unwrap_or(true);
                ledger.record(ctx.now, &t.id, "user.password_reset", &id, json!({"forceChangePasswordNextSignIn": force}));
            }
            "onPremisesImmutableId" => {
                u.immutable_id = v.as_str().map(String::from);
                let kind = if u.immutable_id.is_none() { "user.immutable_id_cleared" } else { "user.immutable_id_set" };
                ledger.record(ctx.now, &t.id, kind, &id, json!({}));
            }
            "displayName" => {
                u.display_name = v.as_str().unwrap_or_default().to_string();
                updated.push(k.clone());
            }
            "jobTitle" => {
                u.job_title = v.as_str().map(String::from);
                updated.push(k.clone());
            }
            "department" => {
                u.department = v.as_str().map(String::from);
                updated.push(k.clone());
            }
            "usageLocation" => {
                u.usage_location = v.as_str().map(String::from);
                updated.push(k.clone());
            }
            _ => updated.push(k.clone()),
        }
    }
    if !updated.is_empty() {
        ledger.record(ctx.now, &t.id, "user.updated", &id, json!({"properties": updated}));
    }
    t.changed(&id, false);
    Reply::no_content()
}

fn assign_licence(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, ids: &[String], body: Option<&Value>) -> Reply {
    let (id, _) = or_reply!(user_key(t, ids));
    let Some(obj) = body.and_then(Value::as_object) else { return bad_request("Invalid request body.") };
    for k in obj.keys() {
        if k != "addLicenses" && k != "removeLicenses" {
            return Reply::error(
                400,
                "Request_BadRequest",
                format!("The parameter '{k}' in the request payload is not a valid parameter for the operation 'assignLicense'."),
            );
        }
    }
    // Both parameters are Nullable="false" in the CSDL: a client must always send both.
    let (Some(add), Some(remove)) = (obj.get("addLicenses").and_then(Value::as_array), obj.get("removeLicenses").and_then(Value::as_array)) else {
        return bad_request("Invalid request body: both 'addLicenses' and 'removeLicenses' are required and may not be null.");
    };
    let states = t.licence_states(&id);
    let mut removes = Vec::new();
    for r in remove {
        let Some(sku) = r.as_str() else { return bad_request("Invalid value specified for 'removeLicenses'.") };
        let Some(sku) = t.sku(sku).map(|s| s.id.clone()) else { return bad_request(format!("License {sku} does not correspond to a valid company License.")) };
        let direct = states.iter().any(|(s, g)| *s == sku && g.is_none());
        let inherited = states.iter().any(|(s, g)| *s == sku && g.is_some());
        if !direct && inherited {
            return bad_request("User license is inherited from a group membership and it cannot be removed directly from the user.");
        }
        if !direct {
            return bad_request("User does not have a corresponding license.");
        }
        removes.push(sku);
    }
    let mut adds = Vec::new();
    for a in add {
        let Some(sku) = a.get("skuId").and_then(Value::as_str) else { return bad_request("Invalid value specified for 'addLicenses'.") };
        let Some(s) = t.sku(sku) else { return bad_request(format!("License {sku} does not correspond to a valid company License.")) };
        if t.users[&id].usage_location.is_none() {
            return bad_request("License assignment cannot be done for user with invalid usage location.");
        }
        if t.consumed(&s.id) >= s.units as usize && !t.assigned_skus(&id).contains(&s.id) {
            return bad_request(format!("Subscription {} does not have any available licenses.", s.id));
        }
        adds.push(s.id.clone());
    }
    let had_exchange = t.has_exchange_licence(&id);
    let u = t.users.get_mut(&id).expect("user");
    for sku in &removes {
        u.direct_licences.retain(|s| s != sku);
        ledger.record(ctx.now, &t.id, "licence.removed", &id, json!({"sku": sku}));
    }
    for sku in &adds {
        if !u.direct_licences.contains(sku) {
            u.direct_licences.push(sku.clone());
            ledger.record(ctx.now, &t.id, "licence.added", &id, json!({"sku": sku}));
        }
    }
    if had_exchange && !t.has_exchange_licence(&id) && t.mailboxes.get(&id).is_some_and(|m| m.kind == MailboxKind::User && m.converting_until.is_none()) {
        ledger.record(ctx.now, &t.id, "mailbox.disabled", &id, json!({"reason": "Exchange licence removed from a user mailbox"}));
    }
    t.changed(&id, false);
    Reply::ok(user_json(t, &t.users[&id]))
}

fn eligibility_request(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, body: Option<&Value>) -> Reply {
    const ACTIONS: &[&str] = &[
        "adminAssign",
        "adminUpdate",
        "adminRemove",
        "selfActivate",
        "selfDeactivate",
        "adminExtend",
        "adminRenew",
        "selfExtend",
        "selfRenew",
        "unknownFutureValue",
    ];
    let Some(b) = body.and_then(Value::as_object) else { return bad_request("Invalid request body.") };
    let field = |k: &str| b.get(k).and_then(Value::as_str).map(String::from);
    let Some(action) = field("action") else { return bad_request("The request is missing the required field 'action'.") };
    if !ACTIONS.contains(&action.as_str()) {
        return Reply::error(400, "BadRequest", format!("Requested value '{action}' was not found."));
    }
    let (Some(principal), Some(role)) = (field("principalId"), field("roleDefinitionId")) else {
        return bad_request("principalId and roleDefinitionId are required.");
    };
    if field("directoryScopeId").is_none() {
        return bad_request("directoryScopeId is required.");
    }
    let id = uuid::Uuid::new_v4().to_string();
    match action.as_str() {
        "adminRemove" => {
            let Some(pos) = t.roles.iter().position(|r| r.eligible && r.principal.eq_ignore_ascii_case(&principal) && r.role.eq_ignore_ascii_case(&role))
            else {
                return Reply::error(400, "RoleAssignmentDoesNotExist", "The Role assignment does not exist.");
            };
            let r = t.roles.remove(pos);
            ledger.record(ctx.now, &t.id, "role.eligibility_removed", &r.principal, json!({"role": role_name(&r.role)}));
            t.changed(&principal, false);
        }
        "adminAssign" => {
            if role_id(role_name(&role).unwrap_or_default()).is_none() || !t.users.contains_key(&principal) {
                return not_found(&principal);
            }
            t.roles.push(RoleAssignment { id: id.clone(), principal: principal.clone(), role: role.clone(), eligible: true });
            ledger.record(ctx.now, &t.id, "role.eligibility_added", &principal, json!({"role": role_name(&role)}));
        }
        other => return Reply::error(400, "BadRequest", format!("The simulator does not model the '{other}' action.")),
    }
    Reply::status(
        201,
        json!({"id": id, "action": action, "principalId": principal, "roleDefinitionId": role, "directoryScopeId": "/", "status": if action == "adminRemove" { "Revoked" } else { "Provisioned" }, "createdDateTime": ctx.stamp()}),
    )
}

fn invite(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, ids: &[String], body: Option<&Value>) -> Reply {
    const PARAMS: &[&str] =
        &["recipients", "message", "requireSignIn", "sendInvitation", "roles", "expirationDateTime", "password", "retainInheritedPermissions"];
    let Some((owner, d)) = t.drives.iter_mut().find(|(_, d)| d.id == ids[0]) else {
        return Reply::error(404, "itemNotFound", "The resource could not be found.");
    };
    if d.root_id != ids[1] {
        return Reply::error(404, "itemNotFound", "The resource could not be found.");
    }
    let Some(b) = body.and_then(Value::as_object) else { return Reply::error(400, "invalidRequest", "Invalid request body.") };
    if let Some(k) = b.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Reply::error(400, "invalidRequest", format!("The parameter '{k}' in the request payload is not a valid parameter for the operation 'invite'."));
    }
    let Some(recipients) = b.get("recipients").and_then(Value::as_array).filter(|r| !r.is_empty()) else {
        return Reply::error(400, "invalidRequest", "Missing or empty 'recipients'.");
    };
    let roles: Vec<String> =
        b.get("roles").and_then(Value::as_array).map(|r| r.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
    if roles.is_empty() || roles.iter().any(|r| r != "read" && r != "write") {
        return Reply::error(400, "invalidRequest", "Invalid 'roles': use read or write.");
    }
    let owner = owner.clone();
    let mut out = Vec::new();
    for r in recipients {
        let Some(email) = r.get("email").and_then(Value::as_str) else { return Reply::error(400, "invalidRequest", "Each recipient needs an email.") };
        // Inviting someone who already has these roles returns their permission again.
        if !d.shared_with.iter().any(|(e, rs)| e.eq_ignore_ascii_case(email) && *rs == roles) {
            d.shared_with.push((email.to_string(), roles.clone()));
            ledger.record(ctx.now, &t.id, "drive.shared", &owner, json!({"recipient": email, "roles": roles}));
        }
        out.push(json!({"id": hex::encode(rand::random::<[u8; 8]>()), "roles": roles, "grantedToV2": {"user": {"email": email}}, "grantedTo": {"user": {"email": email}}}));
    }
    Reply::ok(json!({"value": out}))
}

fn method_json(m: &crate::world::AuthMethod) -> Value {
    let mut v = json!({"@odata.type": m.odata_type, "id": m.id});
    if let Some(o) = m.detail.as_object() {
        for (k, x) in o {
            v[k] = x.clone();
        }
    }
    v
}

fn device_json(d: &crate::world::Device) -> Value {
    json!({"@odata.type": "#microsoft.graph.device", "id": d.id, "deviceId": d.device_id, "displayName": d.name, "operatingSystem": d.os, "accountEnabled": d.account_enabled, "trustType": "AzureAd"})
}

fn managed_json(m: &crate::world::ManagedDevice, upn: &str) -> Value {
    json!({"id": m.id, "deviceName": m.name, "operatingSystem": m.os, "managementState": m.state, "userId": m.user, "userPrincipalName": upn,
        "azureADDeviceId": m.azure_device_id, "complianceState": "compliant", "managedDeviceOwnerType": "company"})
}

fn rule_json(r: &crate::world::Rule, i: usize) -> Value {
    let to = |a: &Option<String>| a.as_ref().map(|x| vec![json!({"emailAddress": {"name": x, "address": x}})]).unwrap_or_default();
    let mut actions = Map::new();
    actions.insert("stopProcessingRules".into(), json!(false));
    if r.forward_to.is_some() {
        actions.insert("forwardTo".into(), json!(to(&r.forward_to)));
    }
    if r.redirect_to.is_some() {
        actions.insert("redirectTo".into(), json!(to(&r.redirect_to)));
    }
    if r.forward_to.is_none() && r.redirect_to.is_none() {
        actions.insert("markAsRead".into(), json!(true));
    }
    json!({"id": r.id, "displayName": r.name, "sequence": i + 1, "isEnabled": true, "hasError": false, "isReadOnly": false, "conditions": {}, "actions": actions})
}

fn event_json(t: &Tenant, e: &crate::world::Event, ctx: &Ctx) -> Value {
    let start = stamp_at(ctx, e.start);
    let end = stamp_at(ctx, e.start + Duration::from_secs(3600));
    let name = |upn: &str| t.user_id(upn).map(|id| t.users[&id].display_name.clone()).unwrap_or_else(|| upn.to_string());
    json!({"id": e.id, "iCalUId": e.meeting, "subject": e.subject, "isOrganizer": e.is_organizer, "isCancelled": e.cancelled, "type": "singleInstance",
        "start": {"dateTime": start.trim_end_matches('Z'), "timeZone": "UTC"}, "end": {"dateTime": end.trim_end_matches('Z'), "timeZone": "UTC"},
        "organizer": {"emailAddress": {"name": name(&e.organizer), "address": e.organizer}},
        "attendees": e.attendees.iter().map(|a| json!({"type": "required", "status": {"response": "none"}, "emailAddress": {"name": name(a), "address": a}})).collect::<Vec<_>>()})
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok().map(|n| n.and_utc()))
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc()))
}

fn mailbox_settings_json(t: &Tenant, id: &str, ctx: &Ctx) -> Value {
    let mb = &t.mailboxes[id];
    let a = &mb.auto_reply;
    let when = |s: &Option<String>| json!({"dateTime": s.clone().unwrap_or_else(|| ctx.stamp()).trim_end_matches('Z'), "timeZone": "UTC"});
    json!({
        "@odata.context": format!("{}/v1.0/$metadata#users('{id}')/mailboxSettings", ctx.base),
        "timeZone": "UTC",
        "language": {"locale": "en-US", "displayName": "English (United States)"},
        "dateFormat": "M/d/yyyy", "timeFormat": "h:mm tt",
        "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
        "userPurpose": if mb.kind == MailboxKind::Shared { "shared" } else { "user" },
        "automaticRepliesSetting": {"status": a.status, "externalAudience": a.external_audience, "internalReplyMessage": a.internal, "externalReplyMessage": a.external,
            "scheduledStartDateTime": when(&a.start), "scheduledEndDateTime": when(&a.end)},
    })
}

fn patch_mailbox_settings(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, id: &str, body: Option<&Value>) -> Reply {
    const KNOWN: &[&str] =
        &["automaticRepliesSetting", "timeZone", "language", "dateFormat", "timeFormat", "workingHours", "delegateMeetingMessageDeliveryOptions"];
    let Some(obj) = body.and_then(Value::as_object) else { return Reply::error(400, "RequestBodyRead", "A JSON object is required.") };
    for k in obj.keys() {
        if k == "userPurpose" {
            return Reply::error(400, "ErrorInvalidProperty", "The property 'userPurpose' is read-only.");
        }
        if !KNOWN.contains(&k.as_str()) {
            return Reply::error(
                400,
                "RequestBodyRead",
                format!(
                    "The property '{k}' does not exist on type 'microsoft.graph.mailboxSettings'. Make sure to only use property names that are defined by the type or mark the type as open type."
                ),
            );
        }
    }
    if let Some(a) = obj.get("automaticRepliesSetting") {
        let s = |k: &str| a.get(k).and_then(Value::as_str).map(String::from);
        let status = s("status");
        if let Some(st) = &status
            && !["disabled", "alwaysEnabled", "scheduled"].contains(&st.as_str())
        {
            return Reply::error(400, "RequestBodyRead", format!("Requested value '{st}' was not found."));
        }
        let audience = s("externalAudience");
        if let Some(au) = &audience
            && !["none", "contactsOnly", "all"].contains(&au.as_str())
        {
            return Reply::error(400, "RequestBodyRead", format!("Requested value '{au}' was not found."));
        }
        let date = |k: &str| a.get(k).and_then(|d| d.get("dateTime")).and_then(Value::as_str).map(String::from);
        if status.as_deref() == Some("scheduled") && (date("scheduledStartDateTime").is_none() || date("scheduledEndDateTime").is_none()) {
            return Reply::error(400, "ErrorInvalidParameter", "A scheduled automatic reply needs scheduledStartDateTime and scheduledEndDateTime.");
        }
        let mb = t.mailboxes.get_mut(id).expect("mailbox");
        let r = &mut mb.auto_reply;
        if let Some(v) = status {
            r.status = v;
        }
        if let Some(v) = audience {
            r.external_audience = v;
        }
        if let Some(v) = s("internalReplyMessage") {
            r.internal = v;
        }
        if let Some(v) = s("externalReplyMessage") {
            r.external = v;
        }
        r.start = date("scheduledStartDateTime");
        r.end = date("scheduledEndDateTime");
        ledger.record(ctx.now, &t.id, "mailbox.auto_reply_set", id, json!({"status": r.status, "externalAudience": r.external_audience, "via": "graph"}));
    }
    let mut out = mailbox_settings_json(t, id, ctx);
    if let Some(o) = out.as_object_mut() {
        o.retain(|k, _| k.starts_with('@') || obj.contains_key(k));
    }
    Reply::ok(out)
}

fn deleted_json(t: &Tenant, d: &Deleted) -> Value {
    let mut v = user_json(t, &d.user);
    v["@odata.type"] = json!("#microsoft.graph.user");
    v["deletedDateTime"] = json!(d.deleted_date);
    v
}

/// users/delta: a full enumeration then changes since, with `@removed` for deleted users.
fn delta(w: &mut World, ti: usize, ctx: &Ctx, q: &Query) -> Reply {
    let tid = w.tenants[ti].id.clone();
    let token = q.get("$skiptoken").or(q.get("$deltatoken"));
    let cursor = match token {
        Some("latest") if q.get("$deltatoken").is_some() => {
            DeltaCursor { tenant: tid.clone(), seq: w.tenants[ti].change_seq(), issued: ctx.now, offset: None, select: q.get("$select").map(String::from) }
        }
        Some(tok) => match w.deltas.get(tok) {
            Some(c) if c.tenant == tid => {
                if ctx.now.saturating_sub(c.issued) > ctx.delta_expiry {
                    return Reply::error(
                        400,
                        "syncStateNotFound",
                        "The sync state generation is not found. Please start a new sync with an empty delta token.",
                    );
                }
                c.clone()
            }
            _ => return bad_request("Invalid delta or skip token."),
        },
        None => DeltaCursor { tenant: tid.clone(), seq: 0, issued: ctx.now, offset: Some(0), select: q.get("$select").map(String::from) },
    };
    let t = &w.tenants[ti];
    let head = t.change_seq();
    let latest = token == Some("latest");
    // (id, removed) in change order, each user once with its latest state.
    let mut changed: Vec<(String, bool)> = Vec::new();
    if !latest {
        if cursor.seq == 0 {
            changed = t.users.keys().map(|k| (k.clone(), false)).collect();
        } else {
            for (_, id, _) in t.changes.iter().filter(|(s, ..)| *s > cursor.seq) {
                changed.retain(|(x, _)| x != id);
                changed.push((id.clone(), !t.users.contains_key(id)));
            }
        }
    }
    let offset = cursor.offset.unwrap_or(0);
    let end = (offset + DELTA_PAGE).min(changed.len());
    let mut items = Vec::new();
    for (id, removed) in &changed[offset.min(end)..end] {
        if *removed {
            let reason = if t.deleted.contains_key(id) { "changed" } else { "deleted" };
            items.push(json!({"id": id, "@removed": {"reason": reason}}));
        } else {
            match project(&user_json(t, &t.users[id]), cursor.select.as_deref(), USER_DEFAULT, USER_TYPE) {
                Ok(v) => items.push(v),
                Err(e) => return e,
            }
        }
    }
    let mut body = json!({"@odata.context": format!("{}/v1.0/$metadata#users", ctx.base), "value": items});
    let next = format!("sim{}", hex::encode(rand::random::<[u8; 16]>()));
    if end < changed.len() {
        w.deltas.insert(next.clone(), DeltaCursor { offset: Some(end), ..cursor });
        body["@odata.nextLink"] = json!(format!("{}/v1.0/users/delta?$skiptoken={next}", ctx.base));
    } else {
        w.deltas.insert(next.clone(), DeltaCursor { tenant: tid, seq: head.max(1), issued: ctx.now, offset: None, select: cursor.select });
        body["@odata.deltaLink"] = json!(format!("{}/v1.0/users/delta?$deltatoken={next}", ctx.base));
    }
    Reply::ok(body)
}
