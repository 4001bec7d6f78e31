//! Microsoft Graph v1.0 handlers. Each runs under the world lock, after the route, the
//! token's permissions and throttling have been checked, and returns a [`Reply`].
//!
//! [`execute`] is the one dispatch over every operation; beside it `admission` (what each
//! call needs and costs), `filter` (`$filter` and `$search`), `json` (objects as Graph shows
//! them), `writes` (the handlers that change the directory) and `delta` (users/delta).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::odata::{PageSpec, Query, Reply, bad_request, denied, mailbox_not_enabled, not_found, page, project, synced_refusal, unsupported_query};
use crate::routes::Op;
use crate::throttle::Cost;
use crate::token::Claims;
use crate::world::{
    Deleted, DeltaCursor, GroupKind, Ledger, MailboxKind, MailboxUnavailable, PASSWORD_METHOD_ID, ROLES, RoleAssignment, StoredFile, Tenant, User, World, guid,
    role_id, role_name,
};

pub const USER_TYPE: &str = "Microsoft.DirectoryServices.User";
const USER_DEFAULT: &[&str] =
    &["businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation", "preferredLanguage", "surname", "userPrincipalName"];

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

mod admission;
mod delta;
mod files;
mod filter;
mod json;
mod writes;

use admission::{ENABLE_DISABLE, IMMUTABLE_WRITE, PASSWORD_WRITE, ROLE_WRITE, USER_UPDATE};
pub use admission::{cost, holds, required};
use delta::delta;
use files::*;
use filter::*;
use json::*;
pub use json::{group_json, user_json};
use writes::*;

/// One resolved Graph request.
pub struct Call<'a> {
    pub op: Op,
    pub ids: &'a [String],
    pub q: &'a Query,
    pub path: &'a str,
    pub body: Option<&'a Value>,
    /// A file upload's bytes, which are not JSON.
    pub content: &'a Content,
}

#[derive(Debug, Default)]
pub struct Content {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Runs one Graph operation. Permissions from [`required`] were checked by the caller.
pub fn execute(w: &mut World, ti: usize, ctx: &Ctx, call: &Call) -> Reply {
    let Call { op, ids, q, path, body, content } = *call;
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
            let items = or_reply!(member_users(t, q, set));
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
            let items = or_reply!(member_users(t, q, &users));
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
        Op::ChannelFilesFolder => files_folder(t, ctx, ids, q),
        Op::UploadContent => upload(t, ledger, ctx, ids, content),
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

/// A group's members that are users, each as Graph lists a member.
fn member_users(t: &Tenant, q: &Query, ids: &BTreeSet<String>) -> Result<Vec<Value>, Reply> {
    let mut items = Vec::new();
    for u in ids.iter().filter_map(|id| t.users.get(id)) {
        let mut v = project(&user_json(t, u), q.get("$select"), USER_DEFAULT, USER_TYPE)?;
        v["@odata.type"] = json!("#microsoft.graph.user");
        items.push(v);
    }
    Ok(items)
}

fn page_or(w: &mut World, ctx: &Ctx, path: &str, q: &Query, items: Vec<Value>, spec: PageSpec) -> Reply {
    match page(w, ctx.base, path, q, items, spec) {
        Ok(v) => Reply::ok(v),
        Err(e) => e,
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok().map(|n| n.and_utc()))
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc()))
}
