//! The handlers that change the directory, with Graph's refusals (synced users,
//! privileged targets, role-assignable groups) before any effect.

use super::*;

/// Entra roles that may reset a non-admin's password in app-only mode.
pub(super) const PASSWORD_ROLES: &[&str] = &["User Administrator", "Helpdesk Administrator", "Privileged Authentication Administrator", "Global Administrator"];
/// Entra roles that may act on an administrator's sensitive properties.
pub(super) const ADMIN_TARGET_ROLES: &[&str] = &["Privileged Authentication Administrator", "Global Administrator"];

pub(super) fn is_password_complex(p: &str) -> bool {
    let classes = [
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_alphanumeric()),
    ];
    p.chars().count() >= 8 && p.chars().count() <= 256 && classes.iter().filter(|x| **x).count() >= 3
}

pub(super) fn member_write_refusal(t: &Tenant, ctx: &Ctx, gid: &str) -> Option<Reply> {
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
pub(super) fn owner_write_refusal(t: &Tenant, gid: &str) -> Option<Reply> {
    let g = &t.groups[gid];
    if g.synced {
        return Some(synced_refusal());
    }
    if g.kind.exchange_managed() {
        return Some(bad_request("Cannot Update a mail-enabled security groups and or distribution list."));
    }
    None
}

pub(super) fn delete_user(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, id: &str, via: &str) -> Reply {
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

pub(super) fn patch_user(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, ids: &[String], body: Option<&Value>) -> Reply {
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

pub(super) fn assign_licence(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, ids: &[String], body: Option<&Value>) -> Reply {
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

pub(super) fn eligibility_request(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, body: Option<&Value>) -> Reply {
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

pub(super) fn invite(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, ids: &[String], body: Option<&Value>) -> Reply {
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

pub(super) fn patch_mailbox_settings(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, id: &str, body: Option<&Value>) -> Reply {
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
