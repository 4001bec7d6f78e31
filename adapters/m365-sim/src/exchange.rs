//! Exchange Online's admin REST surface: `InvokeCommand` (the one the EXO v3 module uses),
//! its `$batch`, and the documented v2.0 `Mailbox` and `MailboxFolderPermission` endpoints,
//! for the cmdlets an offboarding needs (graph.md §1.3). Parameter names are validated per
//! cmdlet; results come in the `GenericHashTable` envelope with `@adminapi.warnings`.
//!
//! Kept in one file: the cmdlets share one parameter check and one envelope, and each is
//! short.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::world::{CalendarPermission, MailboxKind, Tenant, World};

/// An Exchange error: status plus the exception type and text Exchange puts in `details`.
#[derive(Debug, Clone)]
pub struct ExoError {
    pub status: u16,
    pub code: &'static str,
    pub exception: &'static str,
    pub message: String,
}

impl ExoError {
    fn new(status: u16, code: &'static str, exception: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, exception, message: message.into() }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
            format!("The operation couldn't be performed because object '{what}' couldn't be found on 'SIMPR01A001DC01.SIMPR01A001.PROD.OUTLOOK.COM'."),
        )
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", "Microsoft.Exchange.Configuration.Tasks.TaskArgumentException", message)
    }

    pub fn body(&self) -> Value {
        let detail = format!("Ex{:06X}|{}|{}", self.message.len() * 7919 % 0xFFFFFF, self.exception, self.message);
        json!({"error": {
            "code": self.code,
            "message": "Invalid Operation",
            "details": [{"code": "Context", "target": "", "message": detail}],
            "innererror": {
                "message": self.message,
                "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                "@Microsoft.Exchange.Admin.OData.Core.ODataServiceException.internalexception": {"message": self.message},
            }
        }})
    }
}

pub struct Cmdlet {
    pub name: &'static str,
    pub params: &'static [&'static str],
    pub required: &'static [&'static str],
    pub write: bool,
}

const fn c(name: &'static str, params: &'static [&'static str], required: &'static [&'static str], write: bool) -> Cmdlet {
    Cmdlet { name, params, required, write }
}

pub static CMDLETS: &[Cmdlet] = &[
    c("Get-Mailbox", &["Identity", "ResultSize", "RecipientTypeDetails"], &[], false),
    c(
        "Set-Mailbox",
        &[
            "Identity",
            "Type",
            "HiddenFromAddressListsEnabled",
            "ForwardingSmtpAddress",
            "ForwardingAddress",
            "DeliverToMailboxAndForward",
            "GrantSendOnBehalfTo",
            "Confirm",
        ],
        &["Identity"],
        true,
    ),
    c("Get-MailboxStatistics", &["Identity"], &["Identity"], false),
    c("Get-MailboxAutoReplyConfiguration", &["Identity"], &["Identity"], false),
    c(
        "Set-MailboxAutoReplyConfiguration",
        &["Identity", "AutoReplyState", "InternalMessage", "ExternalMessage", "ExternalAudience", "StartTime", "EndTime", "Confirm"],
        &["Identity"],
        true,
    ),
    c("Get-MailboxPermission", &["Identity", "User"], &["Identity"], false),
    c("Add-MailboxPermission", &["Identity", "User", "AccessRights", "InheritanceType", "AutoMapping", "Confirm"], &["Identity", "User", "AccessRights"], true),
    c(
        "Remove-MailboxPermission",
        &["Identity", "User", "AccessRights", "InheritanceType", "Confirm", "BypassMasterAccountSid"],
        &["Identity", "User", "AccessRights"],
        true,
    ),
    c("Get-RecipientPermission", &["Identity", "Trustee"], &["Identity"], false),
    c("Add-RecipientPermission", &["Identity", "Trustee", "AccessRights", "Confirm"], &["Identity", "Trustee", "AccessRights"], true),
    c("Remove-RecipientPermission", &["Identity", "Trustee", "AccessRights", "Confirm"], &["Identity", "Trustee", "AccessRights"], true),
    c("Get-MailboxFolderStatistics", &["Identity", "FolderScope"], &["Identity"], false),
    c("Get-MailboxFolderPermission", &["Identity", "User"], &["Identity"], false),
    c("Add-MailboxFolderPermission", &["Identity", "User", "AccessRights", "Confirm"], &["Identity", "User", "AccessRights"], true),
    c("Remove-MailboxFolderPermission", &["Identity", "User", "Confirm"], &["Identity", "User"], true),
    c("Get-MobileDevice", &["Mailbox", "Identity", "ResultSize"], &[], false),
    c("Remove-MobileDevice", &["Identity", "Confirm"], &["Identity"], true),
    c("Get-InboxRule", &["Mailbox", "Identity", "IncludeHidden"], &["Mailbox"], false),
    c("Remove-InboxRule", &["Identity", "Mailbox", "Confirm", "AlwaysDeleteOutlookRulesBlob", "Force"], &["Identity"], true),
    c(
        "Remove-CalendarEvents",
        &["Identity", "CancelOrganizedMeetings", "QueryWindowInDays", "QueryStartDate", "PreviewOnly", "Confirm"],
        &["Identity", "QueryWindowInDays"],
        true,
    ),
    c("Get-DistributionGroup", &["Identity", "ResultSize"], &["Identity"], false),
    c("Set-DistributionGroup", &["Identity", "ManagedBy", "BypassSecurityGroupManagerCheck", "Confirm"], &["Identity"], true),
    c("Get-DistributionGroupMember", &["Identity", "ResultSize"], &["Identity"], false),
    c("Add-DistributionGroupMember", &["Identity", "Member", "BypassSecurityGroupManagerCheck", "Confirm"], &["Identity", "Member"], true),
    c("Remove-DistributionGroupMember", &["Identity", "Member", "BypassSecurityGroupManagerCheck", "Confirm"], &["Identity", "Member"], true),
];

/// Cmdlets each documented v2.0 endpoint accepts.
pub fn v2_allows(endpoint: &str, cmdlet: &str, params: &Map<String, Value>) -> bool {
    match endpoint {
        "Mailbox" => cmdlet == "Get-Mailbox" || (cmdlet == "Set-Mailbox" && params.keys().all(|k| k == "Identity" || k == "GrantSendOnBehalfTo")),
        "MailboxFolderPermission" => cmdlet.ends_with("-MailboxFolderPermission"),
        _ => false,
    }
}

pub struct Outcome {
    pub rows: Vec<Value>,
    pub warnings: Vec<String>,
}

/// Validates a `CmdletInput` envelope and returns the cmdlet and its parameters.
pub fn parse_input(body: &Value) -> Result<(&'static Cmdlet, Map<String, Value>), ExoError> {
    let input = body.get("CmdletInput").ok_or_else(|| ExoError::invalid("The request body must contain 'CmdletInput'."))?;
    let name = input.get("CmdletName").and_then(Value::as_str).ok_or_else(|| ExoError::invalid("'CmdletInput.CmdletName' is required."))?;
    let cmdlet = CMDLETS.iter().find(|c| c.name.eq_ignore_ascii_case(name)).ok_or_else(|| {
        ExoError::new(
            400,
            "BadRequest",
            "System.Management.Automation.CommandNotFoundException",
            format!("The term '{name}' is not recognized as a name of a cmdlet."),
        )
    })?;
    let params = input.get("Parameters").and_then(Value::as_object).cloned().unwrap_or_default();
    for k in params.keys() {
        if !cmdlet.params.iter().any(|p| p.eq_ignore_ascii_case(k)) {
            return Err(ExoError::new(
                400,
                "BadRequest",
                "Microsoft.Exchange.Configuration.Tasks.AmbiguousParameterSetException",
                format!("A parameter cannot be found that matches parameter name '{k}'."),
            ));
        }
    }
    let missing: Vec<&str> = cmdlet.required.iter().copied().filter(|r| !params.keys().any(|k| k.eq_ignore_ascii_case(r))).collect();
    if !missing.is_empty() {
        return Err(ExoError::new(
            400,
            "BadRequest",
            "System.Management.Automation.ParameterBindingException",
            format!("Cannot process command because of one or more missing mandatory parameters: {}.", missing.join(" ")),
        ));
    }
    Ok((cmdlet, params))
}

fn param<'a>(p: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    p.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v)
}

fn text(p: &Map<String, Value>, k: &str) -> Option<String> {
    param(p, k).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

fn flag(p: &Map<String, Value>, k: &str) -> Option<bool> {
    param(p, k).and_then(|v| v.as_bool().or_else(|| v.as_str().map(|s| s.eq_ignore_ascii_case("true"))))
}

/// Exchange matches enum values by prefix ("Sha" is Shared); an unknown value is an error.
fn enum_value(p: &Map<String, Value>, k: &str, allowed: &[&'static str]) -> Result<Option<&'static str>, ExoError> {
    let Some(v) = text(p, k) else { return Ok(None) };
    allowed.iter().find(|a| a.to_ascii_lowercase().starts_with(&v.to_ascii_lowercase()) && !v.is_empty()).copied().map(Some).ok_or_else(|| {
        ExoError::new(
            400,
            "BadRequest",
            "System.Management.Automation.ParameterBindingException",
            format!(
                "Cannot process argument transformation on parameter '{k}'. Cannot convert value \"{v}\". Specify one of the following enumerator names: {}.",
                allowed.join(", ")
            ),
        )
    })
}

fn rights(p: &Map<String, Value>) -> Vec<String> {
    match param(p, "AccessRights") {
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        Some(Value::String(s)) => s.split(',').map(|x| x.trim().to_string()).collect(),
        _ => vec![],
    }
}

fn mailbox_of(t: &Tenant, key: &str) -> Result<String, ExoError> {
    let id = t.recipient(key).ok_or_else(|| ExoError::not_found(key))?;
    if !t.mailboxes.contains_key(&id) || t.mailboxes[&id].disconnected {
        return Err(ExoError::not_found(key));
    }
    Ok(id)
}

fn recipient_of(t: &Tenant, key: &str) -> Result<String, ExoError> {
    t.recipient(key).ok_or_else(|| ExoError::not_found(key))
}

fn mailbox_row(t: &Tenant, id: &str) -> Value {
    let u = &t.users[id];
    let mb = &t.mailboxes[id];
    let kind = match mb.kind {
        MailboxKind::User if mb.on_prem => "RemoteUserMailbox",
        MailboxKind::User => "UserMailbox",
        MailboxKind::Shared => "SharedMailbox",
    };
    json!({
        "Identity": u.upn.split('@').next().unwrap_or_default(),
        "Name": u.upn.split('@').next().unwrap_or_default(),
        "DisplayName": u.display_name,
        "UserPrincipalName": u.upn,
        "PrimarySmtpAddress": u.upn,
        "ExternalDirectoryObjectId": u.id,
        "ExchangeGuid": mb.exchange_guid,
        "RecipientTypeDetails": kind,
        "IsShared": mb.kind == MailboxKind::Shared,
        "HiddenFromAddressListsEnabled": mb.hidden,
        "ForwardingSmtpAddress": mb.forwarding_smtp.as_ref().map(|s| if s.to_ascii_lowercase().starts_with("smtp:") { s.clone() } else { format!("smtp:{s}") }),
        "ForwardingAddress": mb.forwarding_address.as_ref().map(|f| t.upn_of(f)),
        "DeliverToMailboxAndForward": mb.deliver_and_forward,
        "GrantSendOnBehalfTo": mb.send_on_behalf.iter().map(|x| t.upn_of(x)).collect::<Vec<_>>(),
        "ArchiveStatus": if mb.archive { "Active" } else { "None" },
        "ProhibitSendReceiveQuota": "100 GB (107,374,182,400 bytes)",
    })
}

fn size_text(bytes: u64) -> String {
    let gb = bytes as f64 / 1_073_741_824.0;
    let grouped = bytes.to_string().as_bytes().rchunks(3).rev().map(|c| std::str::from_utf8(c).unwrap_or_default()).collect::<Vec<_>>().join(",");
    format!("{gb:.2} GB ({grouped} bytes)")
}

fn folder_rights(role: &str) -> &'static str {
    match role {
        "freeBusyRead" => "AvailabilityOnly",
        "limitedRead" => "LimitedDetails",
        "read" => "Reviewer",
        "write" => "Editor",
        "delegateWithoutPrivateEventAccess" | "delegateWithPrivateEventAccess" => "Editor",
        _ => "None",
    }
}

fn role_from_rights(r: &str) -> &'static str {
    match r {
        "AvailabilityOnly" => "freeBusyRead",
        "LimitedDetails" => "limitedRead",
        "Reviewer" => "read",
        "Editor" | "Author" | "PublishingEditor" | "Owner" => "write",
        _ => "custom",
    }
}

/// Splits `owner@x:\Calendar` into the owner and the folder.
/// `owner:\Folder`: the folder must be the mailbox's calendar by its own (localised)
/// name, as Exchange resolves folder paths; `owner:\Calendar` does not find `Kalender`.
fn folder_identity(t: &Tenant, identity: &str) -> Result<String, ExoError> {
    let (owner, folder) =
        identity.split_once(":\\").ok_or_else(|| ExoError::invalid(format!("The folder identity '{identity}' should look like 'mailbox:\\Calendar'.")))?;
    let id = mailbox_of(t, owner)?;
    if !folder.eq_ignore_ascii_case(&t.mailboxes[&id].calendar_folder) {
        return Err(ExoError::not_found(identity));
    }
    Ok(id)
}

/// Runs one cmdlet against the world.
pub fn run(w: &mut World, ti: usize, now: Duration, conversion_delay: Duration, cmdlet: &Cmdlet, p: &Map<String, Value>) -> Result<Outcome, ExoError> {
    let World { tenants, ledger, .. } = w;
    let t = &mut tenants[ti];
    let mut warnings = Vec::new();
    let mut rows = Vec::new();
    let tid = t.id.clone();
    let identity = text(p, "Identity");
    match cmdlet.name {
        "Get-Mailbox" => match identity {
            Some(i) => rows.push(mailbox_row(t, &mailbox_of(t, &i)?)),
            None => {
                let filter = enum_value(p, "RecipientTypeDetails", &["UserMailbox", "SharedMailbox"])?;
                let mut ids: Vec<&String> = t.mailboxes.keys().filter(|id| t.users.contains_key(*id) && !t.mailboxes[*id].disconnected).collect();
                ids.sort();
                for id in ids {
                    let row = mailbox_row(t, id);
                    if filter.is_none_or(|f| row["RecipientTypeDetails"] == f) {
                        rows.push(row);
                    }
                }
            }
        },
        "Set-Mailbox" => {
            let key = identity.unwrap_or_default();
            let id = mailbox_of(t, &key)?;
            if t.mailbox_ready(&id).is_err() {
                return Err(ExoError::not_found(&key));
            }
            let mut changed = false;
            if let Some(kind) = enum_value(p, "Type", &["Regular", "Shared", "Room", "Equipment"])? {
                let mb = t.mailboxes.get_mut(&id).expect("mailbox");
                match kind {
                    "Shared" if mb.kind == MailboxKind::Shared || mb.converting_until.is_some() => {}
                    "Shared" => {
                        mb.converting_until = Some(now + conversion_delay);
                        ledger.record(now, &tid, "mailbox.converting", &id, json!({"to": "shared"}));
                        changed = true;
                    }
                    "Regular" if mb.kind == MailboxKind::Shared => {
                        mb.kind = MailboxKind::User;
                        ledger.record(now, &tid, "mailbox.converted", &id, json!({"to": "user"}));
                        changed = true;
                    }
                    "Regular" => {}
                    other => return Err(ExoError::invalid(format!("The simulator does not model conversion to {other}."))),
                }
            }
            if let Some(h) = flag(p, "HiddenFromAddressListsEnabled") {
                let mb = t.mailboxes.get_mut(&id).expect("mailbox");
                if mb.hidden != h {
                    mb.hidden = h;
                    ledger.record(now, &tid, if h { "mailbox.hidden" } else { "mailbox.unhidden" }, &id, json!({}));
                    changed = true;
                }
            }
            let smtp = param(p, "ForwardingSmtpAddress").map(|v| v.as_str().map(|s| s.trim_start_matches("smtp:").trim_start_matches("SMTP:").to_string()));
            let internal = match param(p, "ForwardingAddress") {
                Some(Value::Null) => Some(None),
                Some(v) => Some(Some(recipient_of(t, v.as_str().unwrap_or_default())?)),
                None => None,
            };
            let deliver = flag(p, "DeliverToMailboxAndForward");
            if smtp.is_some() || internal.is_some() || deliver.is_some() {
                let mb = t.mailboxes.get_mut(&id).expect("mailbox");
                if let Some(s) = smtp {
                    mb.forwarding_smtp = s;
                }
                if let Some(i) = internal {
                    mb.forwarding_address = i;
                }
                if let Some(d) = deliver {
                    mb.deliver_and_forward = d;
                }
                let target = mb.forwarding_smtp.clone().or_else(|| mb.forwarding_address.clone());
                let kind = if target.is_some() { "mailbox.forwarding_set" } else { "mailbox.forwarding_cleared" };
                ledger.record(now, &tid, kind, &id, json!({"to": target, "deliverToMailboxAndForward": mb.deliver_and_forward}));
                changed = true;
            }
            if let Some(v) = param(p, "GrantSendOnBehalfTo") {
                let (op, who) = match v {
                    Value::Object(o) => {
                        (if o.contains_key("remove") { "remove" } else { "add" }, o.get("remove").or(o.get("add")).cloned().unwrap_or(Value::Null))
                    }
                    other => ("set", other.clone()),
                };
                let who: Vec<String> = match who {
                    Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
                    Value::String(s) => vec![s],
                    _ => vec![],
                };
                let ids = who.iter().map(|w| recipient_of(t, w)).collect::<Result<Vec<_>, _>>()?;
                let mb = t.mailboxes.get_mut(&id).expect("mailbox");
                match op {
                    "remove" => ids.iter().for_each(|x| {
                        mb.send_on_behalf.remove(x);
                    }),
                    "add" => mb.send_on_behalf.extend(ids.iter().cloned()),
                    _ => mb.send_on_behalf = ids.iter().cloned().collect(),
                }
                for x in &ids {
                    ledger.record(now, &tid, "mailbox.send_on_behalf_changed", &id, json!({"user": x, "op": op}));
                }
                changed = true;
            }
            if !changed {
                warnings.push(format!("The command completed successfully but no settings of '{key}' have been modified."));
            }
        }
        "Get-MailboxStatistics" => {
            let id = mailbox_of(t, &identity.unwrap_or_default())?;
            let mb = &t.mailboxes[&id];
            rows.push(json!({"DisplayName": t.users[&id].display_name, "TotalItemSize": size_text(mb.size_bytes), "ItemCount": mb.size_bytes / 75_000, "MailboxGuid": mb.exchange_guid}));
        }
        "Get-MailboxAutoReplyConfiguration" => {
            let id = mailbox_of(t, &identity.unwrap_or_default())?;
            let a = &t.mailboxes[&id].auto_reply;
            let state = match a.status.as_str() {
                "alwaysEnabled" => "Enabled",
                "scheduled" => "Scheduled",
                _ => "Disabled",
            };
            let audience = match a.external_audience.as_str() {
                "none" => "None",
                "contactsOnly" => "Known",
                _ => "All",
            };
            rows.push(json!({"Identity": t.upn_of(&id), "AutoReplyState": state, "ExternalAudience": audience, "InternalMessage": a.internal, "ExternalMessage": a.external, "StartTime": a.start, "EndTime": a.end}));
        }
        "Set-MailboxAutoReplyConfiguration" => {
            let id = mailbox_of(t, &identity.unwrap_or_default())?;
            let state = enum_value(p, "AutoReplyState", &["Enabled", "Disabled", "Scheduled"])?;
            let audience = enum_value(p, "ExternalAudience", &["None", "Known", "All"])?;
            if state == Some("Scheduled") && (text(p, "StartTime").is_none() || text(p, "EndTime").is_none()) {
                return Err(ExoError::invalid("A scheduled automatic reply needs StartTime and EndTime."));
            }
            let a = &mut t.mailboxes.get_mut(&id).expect("mailbox").auto_reply;
            if let Some(s) = state {
                a.status = match s {
                    "Enabled" => "alwaysEnabled",
                    "Scheduled" => "scheduled",
                    _ => "disabled",
                }
                .into();
            }
            if let Some(x) = audience {
                a.external_audience = match x {
                    "None" => "none",
                    "Known" => "contactsOnly",
                    _ => "all",
                }
                .into();
            }
            if let Some(m) = text(p, "InternalMessage") {
                a.internal = m;
            }
            if let Some(m) = text(p, "ExternalMessage") {
                a.external = m;
            }
            if state == Some("Scheduled") {
                a.start = text(p, "StartTime");
                a.end = text(p, "EndTime");
            }
            ledger.record(now, &tid, "mailbox.auto_reply_set", &id, json!({"status": a.status, "externalAudience": a.external_audience, "via": "exchange"}));
        }
        "Get-MailboxPermission" => {
            let id = mailbox_of(t, &identity.unwrap_or_default())?;
            let filter = text(p, "User").map(|u| recipient_of(t, &u)).transpose()?;
            rows.push(json!({"Identity": t.upn_of(&id), "User": "NT AUTHORITY\\SELF", "AccessRights": ["FullAccess, ReadPermission"], "IsInherited": false, "Deny": false}));
            for u in &t.mailboxes[&id].full_access {
                if filter.as_ref().is_none_or(|f| f == u) {
                    rows.push(json!({"Identity": t.upn_of(&id), "User": t.upn_of(u), "AccessRights": ["FullAccess"], "IsInherited": false, "Deny": false}));
                }
            }
            if filter.is_some() {
                rows.retain(|r| r["User"] != "NT AUTHORITY\\SELF");
            }
        }
        "Add-MailboxPermission" | "Remove-MailboxPermission" => {
            let key = identity.unwrap_or_default();
            let id = mailbox_of(t, &key)?;
            let user_key = text(p, "User").unwrap_or_default();
            let user = recipient_of(t, &user_key)?;
            if !rights(p).iter().any(|r| r.eq_ignore_ascii_case("FullAccess")) {
                return Err(ExoError::invalid("The simulator models the FullAccess right only."));
            }
            let mb = t.mailboxes.get_mut(&id).expect("mailbox");
            if cmdlet.name.starts_with("Add") {
                if mb.full_access.insert(user.clone()) {
                    ledger.record(
                        now,
                        &tid,
                        "mailbox.permission_added",
                        &id,
                        json!({"user": user, "rights": "FullAccess", "autoMapping": flag(p, "AutoMapping").unwrap_or(true)}),
                    );
                }
                rows.push(json!({"Identity": key, "User": user_key, "AccessRights": ["FullAccess"], "IsInherited": false, "Deny": false}));
            } else if mb.full_access.remove(&user) {
                ledger.record(now, &tid, "mailbox.permission_removed", &id, json!({"user": user, "rights": "FullAccess"}));
            } else {
                warnings.push(format!(
                    "Can't remove the access control entry on the object '{key}' for account '{user_key}' because the ACE doesn't exist on the object."
                ));
            }
        }
        "Get-RecipientPermission" => {
            let id = mailbox_of(t, &identity.unwrap_or_default())?;
            let filter = text(p, "Trustee").map(|u| recipient_of(t, &u)).transpose()?;
            for u in &t.mailboxes[&id].send_as {
                if filter.as_ref().is_none_or(|f| f == u) {
                    rows.push(json!({"Identity": t.upn_of(&id), "Trustee": t.upn_of(u), "AccessControlType": "Allow", "AccessRights": ["SendAs"], "IsInherited": false}));
                }
            }
        }
        "Add-RecipientPermission" | "Remove-RecipientPermission" => {
            let key = identity.unwrap_or_default();
            let id = mailbox_of(t, &key)?;
            let trustee_key = text(p, "Trustee").unwrap_or_default();
            let trustee = recipient_of(t, &trustee_key)?;
            let mb = t.mailboxes.get_mut(&id).expect("mailbox");
            if cmdlet.name.starts_with("Add") {
                if mb.send_as.insert(trustee.clone()) {
                    ledger.record(now, &tid, "mailbox.send_as_added", &id, json!({"user": trustee}));
                }
            } else if mb.send_as.remove(&trustee) {
                ledger.record(now, &tid, "mailbox.send_as_removed", &id, json!({"user": trustee}));
            } else {
                warnings.push(format!("The appropriate access control entry is already absent from the object '{key}' for account '{trustee_key}'."));
            }
        }
        "Get-MailboxFolderStatistics" => {
            let id = mailbox_of(t, &identity.unwrap_or_default())?;
            let scope = text(p, "FolderScope").unwrap_or_else(|| "All".into());
            let mb = &t.mailboxes[&id];
            if scope.eq_ignore_ascii_case("Calendar") || scope.eq_ignore_ascii_case("All") {
                let name = &mb.calendar_folder;
                rows.push(json!({
                    "Identity": format!("{}\\{name}", t.upn_of(&id)),
                    "Name": name,
                    "FolderPath": format!("/{name}"),
                    "FolderType": "Calendar",
                    "ItemsInFolder": mb.events.len(),
                }));
            }
        }
        "Get-MailboxFolderPermission" => {
            let key = identity.unwrap_or_default();
            let id = folder_identity(t, &key)?;
            let filter = text(p, "User").map(|u| recipient_of(t, &u)).transpose()?;
            for perm in &t.mailboxes[&id].calendar_permissions {
                if filter.as_ref().is_none_or(|f| perm.user.as_ref() == Some(f)) {
                    let user = if perm.user.is_some() { perm.name.clone() } else { "Default".into() };
                    rows.push(
                        json!({"Identity": key, "FolderName": t.mailboxes[&id].calendar_folder, "User": user, "AccessRights": [folder_rights(&perm.role)]}),
                    );
                }
            }
        }
        "Add-MailboxFolderPermission" => {
            let key = identity.unwrap_or_default();
            let id = folder_identity(t, &key)?;
            let user = recipient_of(t, &text(p, "User").unwrap_or_default())?;
            let role = role_from_rights(rights(p).first().map(String::as_str).unwrap_or_default());
            let (name, email) = (t.users[&user].display_name.clone(), t.users[&user].upn.clone());
            let mb = t.mailboxes.get_mut(&id).expect("mailbox");
            if mb.calendar_permissions.iter().any(|c| c.user.as_ref() == Some(&user)) {
                return Err(ExoError::new(
                    400,
                    "BadRequest",
                    "Microsoft.Exchange.Management.StoreTasks.UserAlreadyExistsInPermissionEntryException",
                    format!("An existing permission entry was found for user: {name}."),
                ));
            }
            mb.calendar_permissions.push(CalendarPermission {
                id: crate::world::guid(&format!("{id}/{user}")).replace('-', ""),
                user: Some(user.clone()),
                email,
                name,
                role: role.into(),
                removable: true,
            });
            ledger.record(now, &tid, "calendar.permission_added", &id, json!({"grantee": user, "role": role}));
        }
        "Remove-MailboxFolderPermission" => {
            let key = identity.unwrap_or_default();
            let id = folder_identity(t, &key)?;
            let user_key = text(p, "User").unwrap_or_default();
            let user = recipient_of(t, &user_key)?;
            let mb = t.mailboxes.get_mut(&id).expect("mailbox");
            let Some(pos) = mb.calendar_permissions.iter().position(|c| c.user.as_ref() == Some(&user)) else {
                return Err(ExoError::new(
                    404,
                    "NotFound",
                    "Microsoft.Exchange.Management.StoreTasks.UserNotFoundInPermissionEntryException",
                    format!("There is no existing permission entry found for user: {user_key}."),
                ));
            };
            let perm = mb.calendar_permissions.remove(pos);
            ledger.record(now, &tid, "calendar.permission_removed", &id, json!({"grantee": perm.email, "role": perm.role, "via": "exchange"}));
        }
        "Get-MobileDevice" => {
            let owner = text(p, "Mailbox").map(|m| mailbox_of(t, &m)).transpose()?;
            for (id, mb) in t.mailboxes.iter().filter(|(id, _)| owner.as_ref().is_none_or(|o| o == *id)) {
                for d in &mb.mobile_devices {
                    if identity.as_ref().is_none_or(|i| i.eq_ignore_ascii_case(&d.identity)) {
                        rows.push(json!({"Identity": d.identity, "FriendlyName": d.name, "DeviceModel": d.name, "DeviceId": crate::world::guid(&d.identity).replace('-', "")[..16].to_ascii_uppercase(), "UserDisplayName": t.users.get(id).map(|u| u.display_name.clone())}));
                    }
                }
            }
        }
        "Remove-MobileDevice" => {
            let key = identity.unwrap_or_default();
            let found = t.mailboxes.iter_mut().find_map(|(id, mb)| {
                mb.mobile_devices.iter().position(|d| d.identity.eq_ignore_ascii_case(&key)).map(|pos| (id.clone(), mb.mobile_devices.remove(pos)))
            });
            let Some((owner, device)) = found else { return Err(ExoError::not_found(&key)) };
            ledger.record(now, &tid, "mobile_device.removed", &owner, json!({"device": device.name, "identity": device.identity}));
        }
        "Get-InboxRule" => {
            let owner = mailbox_of(t, &text(p, "Mailbox").unwrap_or_default())?;
            let upn = t.upn_of(&owner);
            for r in &t.mailboxes[&owner].rules {
                rows.push(json!({"Identity": format!("{upn}\\{}", r.id), "RuleIdentity": r.id, "Name": r.name, "Enabled": true,
                    "ForwardTo": r.forward_to.iter().collect::<Vec<_>>(), "RedirectTo": r.redirect_to.iter().collect::<Vec<_>>(), "ForwardAsAttachmentTo": []}));
            }
            if flag(p, "IncludeHidden").unwrap_or(false) {
                rows.push(json!({"Identity": format!("{upn}\\JunkEmailRule"), "RuleIdentity": "JunkEmailRule", "Name": "Junk E-Mail Rule", "Enabled": true, "ForwardTo": [], "RedirectTo": [], "ForwardAsAttachmentTo": []}));
            }
        }
        "Remove-InboxRule" => {
            let key = identity.unwrap_or_default();
            let (owner_key, rule_key) = match (text(p, "Mailbox"), key.split_once('\\')) {
                (_, Some((o, r))) => (o.to_string(), r.to_string()),
                (Some(m), None) => (m, key.clone()),
                (None, None) => return Err(ExoError::not_found(&key)),
            };
            let owner = mailbox_of(t, &owner_key)?;
            let mb = t.mailboxes.get_mut(&owner).expect("mailbox");
            let Some(pos) = mb.rules.iter().position(|r| r.id == rule_key || r.name.eq_ignore_ascii_case(&rule_key)) else {
                return Err(ExoError::not_found(&key));
            };
            let r = mb.rules.remove(pos);
            ledger.record(
                now,
                &tid,
                "mailbox.rule_deleted",
                &owner,
                json!({"rule": r.name, "forwarded": r.forward_to.is_some() || r.redirect_to.is_some(), "via": "exchange"}),
            );
        }
        "Remove-CalendarEvents" => {
            let key = identity.unwrap_or_default();
            let id = mailbox_of(t, &key)?;
            // "The mailbox must still be enabled to send mail."
            if t.mailbox_ready(&id).is_err() || t.mailboxes[&id].kind == MailboxKind::Shared {
                return Err(ExoError::invalid(format!("The mailbox '{key}' can't send mail, so its meetings can't be cancelled.")));
            }
            if !flag(p, "CancelOrganizedMeetings").unwrap_or(false) {
                return Err(ExoError::invalid("Specify CancelOrganizedMeetings to cancel the meetings this mailbox organises."));
            }
            let days: u64 =
                text(p, "QueryWindowInDays").and_then(|d| d.parse().ok()).ok_or_else(|| ExoError::invalid("QueryWindowInDays must be a number of days."))?;
            if days > 1825 {
                return Err(ExoError::invalid("QueryWindowInDays can't be more than 1825."));
            }
            let preview = flag(p, "PreviewOnly").unwrap_or(false);
            let until = now + Duration::from_secs(days * 86_400);
            let mut cancelled = Vec::new();
            for e in t.mailboxes.get_mut(&id).expect("mailbox").events.iter_mut() {
                if e.is_organizer && !e.deleted && !e.attendees.is_empty() && e.start >= now && e.start <= until {
                    rows.push(json!({"Subject": e.subject, "Organizer": e.organizer, "Cancelled": !preview}));
                    if !preview {
                        e.deleted = true;
                        e.cancelled = true;
                        cancelled.push((e.meeting.clone(), e.subject.clone(), e.attendees.len()));
                    }
                }
            }
            for (meeting, subject, attendees) in cancelled {
                for mb in t.mailboxes.values_mut() {
                    for copy in mb.events.iter_mut().filter(|c| c.meeting == meeting && !c.is_organizer) {
                        copy.cancelled = true;
                    }
                }
                ledger.record(now, &tid, "event.cancelled", &id, json!({"subject": subject, "meeting": meeting, "attendees": attendees, "via": "exchange"}));
            }
        }
        "Get-DistributionGroup" => {
            let key = identity.unwrap_or_default();
            let gid = t.group_id(&key).filter(|g| t.groups[g].kind.exchange_managed()).ok_or_else(|| ExoError::not_found(&key))?;
            let g = &t.groups[&gid];
            rows.push(json!({
                "Identity": g.name, "Name": g.name, "DisplayName": g.name, "PrimarySmtpAddress": g.mail, "ExternalDirectoryObjectId": g.id,
                "RecipientTypeDetails": if g.kind.security_enabled() { "MailUniversalSecurityGroup" } else { "MailUniversalDistributionGroup" },
                "ManagedBy": g.owners.iter().map(|o| t.upn_of(o)).collect::<Vec<_>>(),
                "IsDirSynced": g.synced,
            }));
        }
        "Set-DistributionGroup" => {
            let key = identity.unwrap_or_default();
            let gid = t.group_id(&key).filter(|g| t.groups[g].kind.exchange_managed()).ok_or_else(|| ExoError::not_found(&key))?;
            if t.groups[&gid].synced {
                return Err(ExoError::new(
                    400,
                    "BadRequest",
                    "Microsoft.Exchange.Management.Tasks.CannotChangeSyncedObjectException",
                    format!(
                        "The action 'Set-DistributionGroup', 'ManagedBy', can't be performed on the object '{}' because the object is being synchronized from your on-premises organization.",
                        t.groups[&gid].name
                    ),
                ));
            }
            if let Some(v) = param(p, "ManagedBy") {
                let (op, who) = match v {
                    Value::Object(o) => {
                        (if o.contains_key("remove") { "remove" } else { "add" }, o.get("remove").or(o.get("add")).cloned().unwrap_or(Value::Null))
                    }
                    other => ("set", other.clone()),
                };
                let who: Vec<String> = match who {
                    Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
                    Value::String(s) => vec![s],
                    _ => vec![],
                };
                let ids = who.iter().map(|w| recipient_of(t, w)).collect::<Result<Vec<_>, _>>()?;
                let g = t.groups.get_mut(&gid).expect("group");
                let mut next = g.owners.clone();
                match op {
                    "remove" => ids.iter().for_each(|x| {
                        next.remove(x);
                    }),
                    "add" => next.extend(ids.iter().cloned()),
                    _ => next = ids.iter().cloned().collect(),
                }
                if next.is_empty() {
                    return Err(ExoError::invalid(format!("The group '{}' must have at least one owner (ManagedBy).", g.name)));
                }
                let name = g.name.clone();
                let before = std::mem::replace(&mut g.owners, next);
                for x in before.symmetric_difference(&t.groups[&gid].owners) {
                    let kind = if before.contains(x) { "group.owner_removed" } else { "group.owner_added" };
                    ledger.record(now, &tid, kind, x, json!({"group": gid, "group_name": name, "via": "exchange"}));
                }
            }
        }
        "Get-DistributionGroupMember" => {
            let key = identity.unwrap_or_default();
            let gid = t.group_id(&key).ok_or_else(|| ExoError::not_found(&key))?;
            for m in &t.groups[&gid].members {
                if let Some(u) = t.users.get(m) {
                    rows.push(json!({"Name": u.display_name, "PrimarySmtpAddress": u.upn, "ExternalDirectoryObjectId": u.id, "RecipientType": "UserMailbox"}));
                }
            }
        }
        "Add-DistributionGroupMember" | "Remove-DistributionGroupMember" => {
            let key = identity.unwrap_or_default();
            let gid = t.group_id(&key).ok_or_else(|| ExoError::not_found(&key))?;
            let member_key = text(p, "Member").unwrap_or_default();
            let member = recipient_of(t, &member_key)?;
            let g = &t.groups[&gid];
            if !g.kind.mail_enabled() {
                return Err(ExoError::not_found(&key));
            }
            if !g.kind.exchange_managed() {
                return Err(ExoError::invalid(format!(
                    "The group '{key}' is a Microsoft 365 group; its members are changed with Remove-UnifiedGroupLinks or Graph."
                )));
            }
            if g.synced {
                return Err(ExoError::new(
                    400,
                    "BadRequest",
                    "Microsoft.Exchange.Management.Tasks.CannotChangeSyncedObjectException",
                    format!(
                        "The action '{}', 'Members', can't be performed on the object '{}' because the object is being synchronized from your on-premises organization.",
                        cmdlet.name, g.name
                    ),
                ));
            }
            if cmdlet.name.starts_with("Add") {
                let name = g.name.clone();
                if t.groups.get_mut(&gid).expect("group").members.insert(member.clone()) {
                    ledger.record(now, &tid, "group.member_added", &member, json!({"group": gid, "group_name": name, "via": "exchange"}));
                    t.changed(&member, false);
                }
            } else if t.remove_member(&gid, &member, "exchange", now, ledger).is_none() {
                let name = t.groups[&gid].name.clone();
                return Err(ExoError::new(
                    400,
                    "BadRequest",
                    "Microsoft.Exchange.Management.Tasks.MemberNotFoundException",
                    format!("The recipient \"{member_key}\" isn't a member of the group \"{name}\"."),
                ));
            }
        }
        other => return Err(ExoError::invalid(format!("The cmdlet {other} is not modelled."))),
    }
    Ok(Outcome { rows, warnings })
}
