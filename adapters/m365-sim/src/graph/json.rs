//! The directory's objects as Graph returns them.

use super::*;

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

pub(super) fn manager_json(t: &Tenant, id: &str) -> Option<Value> {
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

pub(super) fn role_json(r: &RoleAssignment, expand: bool, ctx: &Ctx) -> Value {
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

pub(super) fn method_json(m: &crate::world::AuthMethod) -> Value {
    let mut v = json!({"@odata.type": m.odata_type, "id": m.id});
    if let Some(o) = m.detail.as_object() {
        for (k, x) in o {
            v[k] = x.clone();
        }
    }
    v
}

pub(super) fn device_json(d: &crate::world::Device) -> Value {
    json!({"@odata.type": "#microsoft.graph.device", "id": d.id, "deviceId": d.device_id, "displayName": d.name, "operatingSystem": d.os, "accountEnabled": d.account_enabled, "trustType": "AzureAd"})
}

pub(super) fn managed_json(m: &crate::world::ManagedDevice, upn: &str) -> Value {
    json!({"id": m.id, "deviceName": m.name, "operatingSystem": m.os, "managementState": m.state, "userId": m.user, "userPrincipalName": upn,
        "azureADDeviceId": m.azure_device_id, "complianceState": "compliant", "managedDeviceOwnerType": "company"})
}

pub(super) fn rule_json(r: &crate::world::Rule, i: usize) -> Value {
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

pub(super) fn event_json(t: &Tenant, e: &crate::world::Event, ctx: &Ctx) -> Value {
    let start = stamp_at(ctx, e.start);
    let end = stamp_at(ctx, e.start + Duration::from_secs(3600));
    let name = |upn: &str| t.user_id(upn).map(|id| t.users[&id].display_name.clone()).unwrap_or_else(|| upn.to_string());
    json!({"id": e.id, "iCalUId": e.meeting, "subject": e.subject, "isOrganizer": e.is_organizer, "isCancelled": e.cancelled, "type": "singleInstance",
        "start": {"dateTime": start.trim_end_matches('Z'), "timeZone": "UTC"}, "end": {"dateTime": end.trim_end_matches('Z'), "timeZone": "UTC"},
        "organizer": {"emailAddress": {"name": name(&e.organizer), "address": e.organizer}},
        "attendees": e.attendees.iter().map(|a| json!({"type": "required", "status": {"response": "none"}, "emailAddress": {"name": name(a), "address": a}})).collect::<Vec<_>>()})
}

pub(super) fn mailbox_settings_json(t: &Tenant, id: &str, ctx: &Ctx) -> Value {
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

pub(super) fn deleted_json(t: &Tenant, d: &Deleted) -> Value {
    let mut v = user_json(t, &d.user);
    v["@odata.type"] = json!("#microsoft.graph.user");
    v["deletedDateTime"] = json!(d.deleted_date);
    v
}
