//! Every offboarding step (spec §2) against Graph and Exchange: read before write, verify
//! by reading back, skip with a reason where Microsoft cannot do it, and respect the
//! step's class (reliability.md §2): a removal that finds nothing to remove succeeded, a
//! reset password exists only in the one request that sets it, and a wipe, a password reset
//! or a meeting cancel is never sent twice without reading back first.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{SecondsFormat, Timelike};
use offboard_core::engine::{Reconciled, StepContext, StepError, StepExecutor};
use offboard_core::plan::StepKind;
use offboard_core::run::StepOutcome;
use rand::Rng;
use rand::seq::SliceRandom;
use reqwest::Method;
use serde_json::{Value, json};

use crate::M365;
use crate::error::ApiError;
use crate::exchange::{Command, Output};
use crate::graph::{Item, enc};
use crate::permissions::hint;
use crate::trace::Trace;
use crate::transport::{Cx, Replay};

/// How a step ended before the evidence is attached.
enum Done {
    Verified(String),
    Skipped { reason: String, warning: bool },
}

type StepResult = Result<Done, StepError>;

fn ok(s: impl Into<String>) -> StepResult {
    Ok(Done::Verified(s.into()))
}

fn skip_warn(s: impl Into<String>) -> StepResult {
    Ok(Done::Skipped { reason: s.into(), warning: true })
}

/// The effect did not show on read-back: try again (Microsoft may be catching up).
fn not_yet(s: impl Into<String>) -> StepError {
    StepError::Retryable(format!("read-back does not show the change yet: {}", s.into()))
}

fn fail(s: impl Into<String>) -> StepError {
    StepError::Permanent { message: s.into(), request_id: None }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn list(v: &Value) -> Vec<Value> {
    v["value"].as_array().cloned().unwrap_or_default()
}

fn join(names: &[String]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

/// The Graph collection for deleting a method of this `@odata.type`; the password method
/// has none (it cannot be deleted).
fn method_collection(kind: &str) -> Option<&'static str> {
    Some(match kind.trim_start_matches("#microsoft.graph.") {
        "phoneAuthenticationMethod" => "phoneMethods",
        "emailAuthenticationMethod" => "emailMethods",
        "microsoftAuthenticatorAuthenticationMethod" => "microsoftAuthenticatorMethods",
        "fido2AuthenticationMethod" => "fido2Methods",
        "softwareOathAuthenticationMethod" => "softwareOathMethods",
        "windowsHelloForBusinessAuthenticationMethod" => "windowsHelloForBusinessMethods",
        "temporaryAccessPassAuthenticationMethod" => "temporaryAccessPassMethods",
        "platformCredentialAuthenticationMethod" => "platformCredentialMethods",
        "externalAuthenticationMethod" => "externalAuthenticationMethods",
        _ => return None,
    })
}

/// 24 characters from all four classes, from the OS's CSPRNG via `rand`.
fn strong_password() -> String {
    const SETS: [&[u8]; 4] = [b"ABCDEFGHJKLMNPQRSTUVWXYZ", b"abcdefghijkmnopqrstuvwxyz", b"23456789", b"!#$%&*+-=?@^_~"];
    let mut rng = rand::rng();
    let all: Vec<u8> = SETS.concat();
    let mut chars: Vec<u8> = SETS.iter().map(|s| s[rng.random_range(0..s.len())]).collect();
    while chars.len() < 24 {
        chars.push(all[rng.random_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    String::from_utf8(chars).expect("ascii")
}

const SYSTEM_RULES: &[&str] = &["Junk E-Mail Rule"];

fn is_system_rule(name: &str) -> bool {
    SYSTEM_RULES.contains(&name) || name.starts_with("Microsoft.Exchange.OOF")
}

struct Step<'a> {
    m: &'a M365,
    cx: Cx<'a>,
    sc: &'a StepContext,
    kind: StepKind,
    user: &'a str,
}

impl Step<'_> {
    fn e(&self, e: ApiError) -> StepError {
        e.into_step(&hint(self.kind))
    }

    fn p(&self) -> &Value {
        &self.sc.step.params
    }

    /// Exchange routes by the object id as well as by UPN.
    fn anchor(&self) -> String {
        format!("OID:{}@{}", self.user, self.cx.tenant.directory_id)
    }

    fn cmd(&self, cmdlet: &'static str, params: Value) -> Command {
        Command::new(cmdlet, params, Some(&self.anchor()))
    }

    async fn get(&self, path: &str) -> Result<Value, StepError> {
        self.m.graph.get(self.cx, path).await.map_err(|e| self.e(e))
    }

    async fn exo(&self, c: Command) -> Result<Output, StepError> {
        self.m.exchange.run(self.cx, &c, Replay::Safe).await.map_err(|e| self.e(e))
    }

    async fn exo_batch(&self, cs: &[Command]) -> Result<Vec<Result<Output, ApiError>>, StepError> {
        self.m.exchange.batch(self.cx, cs).await.map_err(|e| self.e(e))
    }

    async fn mailbox(&self) -> Result<Value, StepError> {
        let out = self.exo(self.cmd("Get-Mailbox", json!({"Identity": self.user}))).await?;
        out.rows.into_iter().next().ok_or_else(|| fail("Exchange returned no mailbox"))
    }

    /// PATCH the user and read the property back in one batch (`dependsOn` orders them).
    async fn patch_user(&self, body: Value, select: &str) -> Result<Result<Value, ApiError>, StepError> {
        let path = format!("/users/{}", self.user);
        let mut r = self
            .m
            .graph
            .batch(self.cx, vec![Item::patch("write", path.clone(), body), Item::get("read", format!("{path}?$select={select}")).after("write")])
            .await
            .map_err(|e| self.e(e))?;
        match r.remove("write") {
            Some(Err(e)) => Ok(Err(e)),
            _ => Ok(Ok(r.remove("read").unwrap_or_else(|| Err(ApiError::NotSent("read-back".into()))).map_err(|e| self.e(e))?)),
        }
    }

    async fn run(&self) -> StepResult {
        use StepKind::*;
        match self.kind {
            DisableSignIn => self.disable_sign_in().await,
            RevokeSessions => self.revoke_sessions().await,
            ResetPassword => self.reset_password().await,
            RemoveMfaMethods => self.remove_mfa().await,
            RemoveAdminRoles => self.remove_roles().await,
            RemoveGroups => self.remove_groups().await,
            RemoveInboxRules => self.remove_rules().await,
            RemoveMobileDevices => self.remove_mobile_devices().await,
            RemoveMailboxPermissions => self.remove_mailbox_permissions().await,
            RemoveCalendarPermissions => self.remove_calendar_permissions().await,
            DisableForwarding => self.set_forwarding(None, false).await,
            CancelMeetings => self.cancel_meetings().await,
            DeviceAction => self.device_action().await,
            SetOutOfOffice => self.out_of_office().await,
            ForwardMail => {
                let to = self.p()["to"].as_str().map(String::from).ok_or_else(|| fail("no forwarding address in the plan"))?;
                let external = self.p()["external"].as_bool().unwrap_or(false);
                self.set_forwarding(Some((to, external)), self.p()["keep_copy"].as_bool().unwrap_or(false)).await
            }
            GrantMailboxAccess => self.grant_mailbox_access().await,
            GrantOneDriveAccess => self.grant_onedrive_access().await,
            TransferOwnership => self.transfer_ownership().await,
            HideFromGal => self.hide_from_gal().await,
            RenameDisplayName => self.rename().await,
            ConvertToShared => self.convert().await,
            VerifyShared => self.verify_shared().await,
            RemoveLicences => self.remove_licences().await,
            ClearImmutableId => self.clear_immutable_id().await,
            DeleteUser => self.delete_user().await,
        }
    }

    async fn disable_sign_in(&self) -> StepResult {
        match self.patch_user(json!({"accountEnabled": false}), "accountEnabled").await? {
            // On-premises AD owns the account: the step confirms what was done there.
            Err(e) if e.is_synced_refusal() => {
                let u = self.get(&format!("/users/{}?$select=accountEnabled,userPrincipalName", self.user)).await?;
                if u["accountEnabled"] == json!(false) {
                    ok("sign-in blocked: the account is disabled in on-premises AD and synced (accountEnabled is false)")
                } else {
                    Err(fail(format!(
                        "Entra refused: {} is synced from on-premises AD, so only AD can disable it. The account can still sign in: disable it in AD and let it sync.",
                        u["userPrincipalName"].as_str().unwrap_or(self.user)
                    )))
                }
            }
            Err(e) => Err(self.e(e)),
            Ok(u) if u["accountEnabled"] == json!(false) => ok("sign-in blocked: accountEnabled is false"),
            Ok(_) => Err(not_yet("accountEnabled is still true")),
        }
    }

    async fn revoke_sessions(&self) -> StepResult {
        let path = format!("/users/{}", self.user);
        let select = format!("{path}?$select=signInSessionsValidFromDateTime");
        let sent_at = self.m.clock.now().with_nanosecond(0).unwrap_or_else(|| self.m.clock.now());
        // Read, revoke, read again: one round trip, in that order (`dependsOn`).
        let mut r = self
            .m
            .graph
            .batch(
                self.cx,
                vec![
                    Item::get("before", select.clone()),
                    Item::post("revoke", format!("{path}/revokeSignInSessions"), json!({})).after("before"),
                    Item::get("read", select).after("revoke"),
                ],
            )
            .await
            .map_err(|e| self.e(e))?;
        // A failed read fails the revoke behind it with 424: report the cause.
        let before = match r.remove("before") {
            Some(Err(e)) => return Err(self.e(e)),
            Some(Ok(v)) => v["signInSessionsValidFromDateTime"].as_str().map(String::from),
            None => None,
        };
        if let Some(Err(e)) = r.remove("revoke") {
            return Err(self.e(e));
        }
        let after = r.remove("read").unwrap_or_else(|| Err(ApiError::NotSent("read-back".into()))).map_err(|e| self.e(e))?;
        let after = after["signInSessionsValidFromDateTime"].as_str().map(String::from);
        // Moved, or (a second revoke within the same second) already at or after our call.
        let at_or_after = |a: &str| chrono::DateTime::parse_from_rfc3339(a).is_ok_and(|t| t >= sent_at);
        match &after {
            Some(a) if before.as_ref() != Some(a) || at_or_after(a) => {
                ok(format!("sessions valid only from {a}; tokens already issued lapse within about 90 minutes"))
            }
            _ => Err(not_yet("signInSessionsValidFromDateTime did not move")),
        }
    }

    fn changed_before(&self) -> Option<String> {
        self.p()["changed_before"].as_str().map(String::from)
    }

    async fn password_changed_at(&self) -> Result<Option<String>, StepError> {
        Ok(self.get(&format!("/users/{}?$select=lastPasswordChangeDateTime", self.user)).await?["lastPasswordChangeDateTime"].as_str().map(String::from))
    }

    async fn reset_password(&self) -> StepResult {
        // The password lives only in this request body; it is never stored, logged or shown.
        let path = format!("/users/{}", self.user);
        let body = json!({"passwordProfile": {"password": strong_password(), "forceChangePasswordNextSignIn": true}});
        let mut r = self
            .m
            .graph
            .batch_once(
                self.cx,
                vec![Item::patch("reset", path.clone(), body), Item::get("read", format!("{path}?$select=lastPasswordChangeDateTime")).after("reset")],
            )
            .await
            .map_err(|e| self.e(e))?;
        match r.remove("reset") {
            // On-premises AD owns the password: confirm a reset made there, or say it was not.
            Some(Err(e)) if e.is_synced_refusal() => {
                return match self.password_changed_at().await? {
                    Some(at) if Some(&at) != self.changed_before().as_ref() => ok(format!("password changed at {at} in on-premises AD (synced)")),
                    _ => Err(fail(
                        "Entra refused: the account is synced from on-premises AD, where its password lives. The old password still works: reset it in AD and let it sync.",
                    )),
                };
            }
            Some(Err(e)) => return Err(self.e(e)),
            _ => {}
        }
        let at = match r.remove("read") {
            Some(Ok(v)) => v["lastPasswordChangeDateTime"].as_str().map(String::from),
            _ => self.password_changed_at().await?,
        };
        match at {
            Some(at) if Some(&at) != self.changed_before().as_ref() => ok(format!("password replaced at {at} with a random one nobody has seen")),
            _ => Err(not_yet("lastPasswordChangeDateTime did not move")),
        }
    }

    async fn remove_mfa(&self) -> StepResult {
        let path = format!("/users/{}/authentication", self.user);
        let methods = list(&self.get(&format!("{path}/methods")).await?);
        let mut items = Vec::new();
        let mut removed = Vec::new();
        for m in &methods {
            let kind = m["@odata.type"].as_str().unwrap_or_default();
            let id = m["id"].as_str().unwrap_or_default();
            if let Some(c) = method_collection(kind) {
                items.push(Item::delete(format!("m{}", items.len()), format!("{path}/{c}/{id}")));
                removed.push(kind.trim_start_matches("#microsoft.graph.").trim_end_matches("AuthenticationMethod").to_string());
            }
        }
        if !items.is_empty() {
            for (_, r) in self.m.graph.batch(self.cx, items).await.map_err(|e| self.e(e))? {
                match r {
                    Err(e) if !e.is_not_found() => return Err(self.e(e)),
                    _ => {}
                }
            }
        }
        let left: Vec<String> = list(&self.get(&format!("{path}/methods")).await?)
            .iter()
            .filter_map(|m| m["@odata.type"].as_str())
            .filter(|k| !k.ends_with("passwordAuthenticationMethod"))
            .map(String::from)
            .collect();
        if !left.is_empty() {
            if left.iter().all(|k| method_collection(k).is_none()) {
                return Err(fail(format!("these methods have no delete in Graph v1.0 and stay: {}", left.join(", "))));
            }
            return Err(not_yet(format!("still registered: {}", left.join(", "))));
        }
        ok(format!("removed {} method(s) ({}); only the password remains, which cannot be deleted", removed.len(), join(&removed)))
    }

    async fn roles(&self) -> Result<(Vec<Value>, Vec<Value>), StepError> {
        let f = enc(&format!("principalId eq '{}'", self.user));
        let mut r = self
            .m
            .graph
            .batch(
                self.cx,
                vec![
                    Item::get("active", format!("/roleManagement/directory/roleAssignments?$filter={f}&$expand=roleDefinition")),
                    Item::get("eligible", format!("/roleManagement/directory/roleEligibilitySchedules?$filter={f}&$expand=roleDefinition")),
                ],
            )
            .await
            .map_err(|e| self.e(e))?;
        let mut take = |k: &str| r.remove(k).unwrap_or_else(|| Err(ApiError::NotSent(k.into()))).map(|v| list(&v)).map_err(|e| self.e(e));
        Ok((take("active")?, take("eligible")?))
    }

    async fn remove_roles(&self) -> StepResult {
        let (active, eligible) = self.roles().await?;
        let name = |a: &Value| a["roleDefinition"]["displayName"].as_str().or(a["roleDefinitionId"].as_str()).unwrap_or_default().to_string();
        let mut names = Vec::new();
        let mut items = Vec::new();
        for a in &active {
            items
                .push(Item::delete(format!("a{}", items.len()), format!("/roleManagement/directory/roleAssignments/{}", a["id"].as_str().unwrap_or_default())));
            names.push(name(a));
        }
        for a in &eligible {
            let body = json!({"action": "adminRemove", "principalId": self.user, "roleDefinitionId": a["roleDefinitionId"], "directoryScopeId": a["directoryScopeId"].as_str().unwrap_or("/"),
                "justification": "Offboarding"});
            items.push(Item::post(format!("e{}", items.len()), "/roleManagement/directory/roleEligibilityScheduleRequests", body));
            names.push(format!("{} (eligible)", name(a)));
        }
        if !items.is_empty() {
            for (_, r) in self.m.graph.batch(self.cx, items).await.map_err(|e| self.e(e))? {
                match r {
                    Err(e) if !(e.is_not_found() || e.says("RoleAssignmentDoesNotExist")) => return Err(self.e(e)),
                    _ => {}
                }
            }
        }
        let (a, e) = self.roles().await?;
        if !a.is_empty() || !e.is_empty() {
            return Err(not_yet(format!("{} active and {} eligible assignments remain", a.len(), e.len())));
        }
        ok(format!("removed {}; no active or eligible assignment remains", join(&names)))
    }

    async fn member_of(&self) -> Result<BTreeSet<String>, StepError> {
        let all =
            self.m.graph.all(self.cx, &format!("/users/{}/memberOf/microsoft.graph.group?$select=id&$top=999", self.user)).await.map_err(|e| self.e(e))?;
        Ok(all.iter().filter_map(|g| g["id"].as_str().map(|s| s.to_ascii_lowercase())).collect())
    }

    /// Leaves groups: Graph for security and Microsoft 365 groups, Exchange for
    /// distribution lists and mail-enabled security groups.
    async fn leave(&self, groups: &[(String, String, bool)]) -> Result<(), StepError> {
        let graph: Vec<Item> = groups
            .iter()
            .filter(|(_, _, exo)| !exo)
            .enumerate()
            .map(|(i, (id, _, _))| Item::delete(format!("g{i}"), format!("/groups/{id}/members/{}/$ref", self.user)))
            .collect();
        let exo: Vec<Command> = groups
            .iter()
            .filter(|(_, _, exo)| *exo)
            .map(|(id, _, _)| {
                Command::new(
                    "Remove-DistributionGroupMember",
                    json!({"Identity": id, "Member": self.user, "BypassSecurityGroupManagerCheck": true, "Confirm": false}),
                    None,
                )
            })
            .collect();
        if !graph.is_empty() {
            for (_, r) in self.m.graph.batch(self.cx, graph).await.map_err(|e| self.e(e))? {
                match r {
                    Err(e) if !e.is_not_found() => return Err(self.e(e)),
                    _ => {}
                }
            }
        }
        for r in self.exo_batch(&exo).await? {
            match r {
                Err(e) if !(e.is_not_found() || e.says("MemberNotFoundException")) => return Err(self.e(e)),
                _ => {}
            }
        }
        Ok(())
    }

    async fn remove_groups(&self) -> StepResult {
        let planned: Vec<(String, String, bool)> = self.p()["remove"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|g| {
                (
                    g["id"].as_str().unwrap_or_default().to_string(),
                    g["name"].as_str().unwrap_or_default().to_string(),
                    g["via_exchange"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        let now = self.member_of().await?;
        let todo: Vec<_> = planned.iter().filter(|(id, ..)| now.contains(&id.to_ascii_lowercase())).cloned().collect();
        self.leave(&todo).await?;
        let after = self.member_of().await?;
        let still: Vec<String> = planned.iter().filter(|(id, ..)| after.contains(&id.to_ascii_lowercase())).map(|(_, n, _)| n.clone()).collect();
        if !still.is_empty() {
            return Err(not_yet(format!("still a member of {}", still.join(", "))));
        }
        let names: Vec<String> = planned.iter().map(|(_, n, exo)| if *exo { format!("{n} (via Exchange)") } else { n.clone() }).collect();
        let skipped = self.p()["skipped"].as_array().map(Vec::len).unwrap_or(0);
        ok(format!(
            "no longer a member of {} group(s): {}{}",
            planned.len(),
            join(&names),
            if skipped > 0 { format!("; {skipped} left as planned") } else { String::new() }
        ))
    }

    async fn rules(&self) -> Result<Vec<Value>, StepError> {
        let out = self.exo(self.cmd("Get-InboxRule", json!({"Mailbox": self.user, "IncludeHidden": true}))).await?;
        Ok(out.rows.into_iter().filter(|r| !is_system_rule(r["Name"].as_str().unwrap_or_default())).collect())
    }

    async fn remove_rules(&self) -> StepResult {
        let rules = self.rules().await?;
        let names: Vec<String> = rules.iter().map(|r| r["Name"].as_str().unwrap_or_default().to_string()).collect();
        let cmds: Vec<Command> = rules
            .iter()
            .map(|r| self.cmd("Remove-InboxRule", json!({"Identity": r["Identity"], "Confirm": false, "AlwaysDeleteOutlookRulesBlob": true})))
            .collect();
        for r in self.exo_batch(&cmds).await? {
            if let Err(e) = r
                && !e.is_not_found()
            {
                return Err(self.e(e));
            }
        }
        let left = self.rules().await?;
        if !left.is_empty() {
            return Err(not_yet(format!("{} rule(s) remain", left.len())));
        }
        ok(format!("deleted {} rule(s): {}", names.len(), join(&names)))
    }

    async fn mobile_devices(&self) -> Result<Vec<Value>, StepError> {
        Ok(self.exo(self.cmd("Get-MobileDevice", json!({"Mailbox": self.user}))).await?.rows)
    }

    async fn remove_mobile_devices(&self) -> StepResult {
        let devices = self.mobile_devices().await?;
        let names: Vec<String> = devices.iter().map(|d| d["FriendlyName"].as_str().or(d["Identity"].as_str()).unwrap_or_default().to_string()).collect();
        let cmds: Vec<Command> = devices.iter().map(|d| self.cmd("Remove-MobileDevice", json!({"Identity": d["Identity"], "Confirm": false}))).collect();
        for r in self.exo_batch(&cmds).await? {
            if let Err(e) = r
                && !e.is_not_found()
            {
                return Err(self.e(e));
            }
        }
        let left = self.mobile_devices().await?;
        if !left.is_empty() {
            return Err(not_yet(format!("{} device partnership(s) remain", left.len())));
        }
        ok(format!("removed {} ActiveSync partnership(s): {}", names.len(), join(&names)))
    }

    fn delegation_reads(&self, list: &[(String, String)]) -> Vec<Command> {
        list.iter()
            .map(|(mb, rights)| match rights.as_str() {
                "FullAccess" => Command::new("Get-MailboxPermission", json!({"Identity": mb, "User": self.user}), Some(mb)),
                "SendAs" => Command::new("Get-RecipientPermission", json!({"Identity": mb, "Trustee": self.user}), Some(mb)),
                _ => Command::new("Get-Mailbox", json!({"Identity": mb}), Some(mb)),
            })
            .collect()
    }

    async fn remaining_delegations(&self, list: &[(String, String)], upn: &str) -> Result<Vec<String>, StepError> {
        let mut left = Vec::new();
        for ((mb, rights), r) in list.iter().zip(self.exo_batch(&self.delegation_reads(list)).await?) {
            let rows = match r {
                Ok(o) => o.rows,
                Err(e) if e.is_not_found() => vec![],
                Err(e) => return Err(self.e(e)),
            };
            let still = match rights.as_str() {
                "FullAccess" => rows.iter().any(|p| strs(&p["AccessRights"]).iter().any(|a| a.contains("FullAccess"))),
                "SendAs" => !rows.is_empty(),
                _ => rows.iter().any(|m| strs(&m["GrantSendOnBehalfTo"]).iter().any(|g| g.eq_ignore_ascii_case(upn) || g.eq_ignore_ascii_case(self.user))),
            };
            if still {
                left.push(format!("{rights} on {mb}"));
            }
        }
        Ok(left)
    }

    async fn upn(&self) -> Result<String, StepError> {
        Ok(self.get(&format!("/users/{}?$select=userPrincipalName", self.user)).await?["userPrincipalName"].as_str().unwrap_or_default().to_string())
    }

    async fn remove_mailbox_permissions(&self) -> StepResult {
        let list: Vec<(String, String)> = self.p()["delegations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|d| (d["mailbox"].as_str().unwrap_or_default().to_string(), d["rights"].as_str().unwrap_or_default().to_string()))
            .collect();
        let cmds: Vec<Command> = list
            .iter()
            .map(|(mb, rights)| match rights.as_str() {
                "FullAccess" => Command::new(
                    "Remove-MailboxPermission",
                    json!({"Identity": mb, "User": self.user, "AccessRights": ["FullAccess"], "InheritanceType": "All", "Confirm": false}),
                    Some(mb),
                ),
                "SendAs" => Command::new(
                    "Remove-RecipientPermission",
                    json!({"Identity": mb, "Trustee": self.user, "AccessRights": ["SendAs"], "Confirm": false}),
                    Some(mb),
                ),
                _ => Command::new(
                    "Set-Mailbox",
                    json!({"Identity": mb, "GrantSendOnBehalfTo": {"@odata.type": "#Exchange.GenericHashTable", "remove": self.user}}),
                    Some(mb),
                ),
            })
            .collect();
        for r in self.exo_batch(&cmds).await? {
            if let Err(e) = r
                && !e.is_not_found()
            {
                return Err(self.e(e));
            }
        }
        let upn = self.upn().await?;
        let left = self.remaining_delegations(&list, &upn).await?;
        if !left.is_empty() {
            return Err(not_yet(format!("still holds {}", left.join(", "))));
        }
        let done: Vec<String> = list.iter().map(|(mb, r)| format!("{r} on {mb}")).collect();
        ok(format!("removed {}", join(&done)))
    }

    async fn remove_calendar_permissions(&self) -> StepResult {
        // Each entry is the calendar folder by its real, possibly localised, name
        // (`mary@contoso.com:\Kalender`); a bare mailbox means its `Calendar`.
        let folders: Vec<String> = strs(&self.p()["calendars"]).into_iter().map(|c| if c.contains(":\\") { c } else { format!("{c}:\\Calendar") }).collect();
        let owners: Vec<String> = folders.iter().map(|f| f.split(":\\").next().unwrap_or_default().to_string()).collect();
        let folder = |o: &str| folders[owners.iter().position(|x| x == o).unwrap_or_default()].clone();
        let cmds: Vec<Command> = owners
            .iter()
            .map(|o| Command::new("Remove-MailboxFolderPermission", json!({"Identity": folder(o), "User": self.user, "Confirm": false}), Some(o)))
            .collect();
        for r in self.exo_batch(&cmds).await? {
            if let Err(e) = r
                && !(e.is_not_found() || e.says("UserNotFoundInPermissionEntryException"))
            {
                return Err(self.e(e));
            }
        }
        let reads: Vec<Command> =
            owners.iter().map(|o| Command::new("Get-MailboxFolderPermission", json!({"Identity": folder(o), "User": self.user}), Some(o))).collect();
        let mut left = Vec::new();
        for (o, r) in owners.iter().zip(self.exo_batch(&reads).await?) {
            match r {
                Ok(out) if !out.rows.is_empty() => left.push(o.clone()),
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.says("UserNotFoundInPermissionEntryException") => {}
                Err(e) => return Err(self.e(e)),
            }
        }
        if !left.is_empty() {
            return Err(not_yet(format!("still has access to the calendar of {}", left.join(", "))));
        }
        ok(format!("no access left to the calendars of {}", join(&owners)))
    }

    async fn set_forwarding(&self, to: Option<(String, bool)>, keep_copy: bool) -> StepResult {
        let params = match &to {
            None => json!({"Identity": self.user, "ForwardingSmtpAddress": null, "ForwardingAddress": null, "DeliverToMailboxAndForward": false}),
            Some((addr, true)) => {
                json!({"Identity": self.user, "ForwardingSmtpAddress": format!("smtp:{addr}"), "ForwardingAddress": null, "DeliverToMailboxAndForward": keep_copy})
            }
            Some((addr, false)) => {
                json!({"Identity": self.user, "ForwardingAddress": addr, "ForwardingSmtpAddress": null, "DeliverToMailboxAndForward": keep_copy})
            }
        };
        self.exo(self.cmd("Set-Mailbox", params)).await?;
        let m = self.mailbox().await?;
        let smtp = m["ForwardingSmtpAddress"].as_str().map(|s| s.trim_start_matches("smtp:").trim_start_matches("SMTP:").to_ascii_lowercase());
        let internal = m["ForwardingAddress"].as_str().map(str::to_ascii_lowercase);
        match &to {
            None if smtp.is_none() && internal.is_none() => ok("no forwarding: ForwardingSmtpAddress and ForwardingAddress are empty"),
            None => Err(not_yet("a forward is still set")),
            Some((addr, _)) => {
                let a = addr.to_ascii_lowercase();
                if smtp.as_deref() == Some(a.as_str()) || internal.as_deref() == Some(a.as_str()) {
                    ok(format!("mail forwards to {addr}{}", if keep_copy { ", keeping a copy" } else { "" }))
                } else {
                    Err(not_yet(format!("the mailbox does not forward to {addr}")))
                }
            }
        }
    }

    fn window(&self) -> String {
        let now = self.m.clock.now();
        let end = now + chrono::Duration::days(self.m.settings.calendar_window_days as i64);
        let f = |d: chrono::DateTime<chrono::Utc>| enc(&d.to_rfc3339_opts(SecondsFormat::Secs, true));
        format!("/users/{}/calendarView?startDateTime={}&endDateTime={}&$select=id,subject,isOrganizer&$top=1000", self.user, f(now), f(end))
    }

    /// The planned meetings still on the organiser's calendar.
    async fn meetings_left(&self) -> Result<Vec<(String, String)>, StepError> {
        let planned: Vec<(String, String)> = self.p()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| (e["id"].as_str().unwrap_or_default().to_string(), e["subject"].as_str().unwrap_or_default().to_string()))
            .collect();
        let present: BTreeSet<String> =
            self.m.graph.all(self.cx, &self.window()).await.map_err(|e| self.e(e))?.iter().filter_map(|e| e["id"].as_str().map(String::from)).collect();
        Ok(planned.into_iter().filter(|(id, _)| present.contains(id)).collect())
    }

    async fn cancel_meetings(&self) -> StepResult {
        let planned = self.p()["events"].as_array().map(Vec::len).unwrap_or(0);
        let todo = self.meetings_left().await?;
        for (id, _) in &todo {
            let body = json!({"Comment": "The organiser has left the organisation, so this meeting is cancelled."});
            let r = self.m.graph.call(self.cx, Method::POST, &format!("/users/{}/events/{id}/cancel", self.user), Some(body), Replay::Once).await;
            if let Err(e) = r
                && !e.is_not_found()
            {
                return Err(self.e(e));
            }
        }
        let left = self.meetings_left().await?;
        if !left.is_empty() {
            return Err(not_yet(format!("{} meeting(s) still on the calendar", left.len())));
        }
        // What is true now, not what this attempt sent: after a lost answer, an earlier
        // attempt cancelled some of them.
        let subjects: Vec<String> = self.p()["events"].as_array().into_iter().flatten().filter_map(|e| e["subject"].as_str().map(String::from)).collect();
        ok(format!("all {planned} planned meeting(s) are off the calendar ({}); attendees were notified", join(&subjects)))
    }

    async fn device_states(&self) -> Result<Vec<(String, String, Option<String>)>, StepError> {
        let devices = self.p()["devices"].as_array().cloned().unwrap_or_default();
        let items: Vec<Item> = devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                Item::get(format!("d{i}"), format!("/deviceManagement/managedDevices/{}?$select=id,managementState", d["id"].as_str().unwrap_or_default()))
            })
            .collect();
        let mut r = self.m.graph.batch(self.cx, items).await.map_err(|e| self.e(e))?;
        let mut out = Vec::new();
        for (i, d) in devices.iter().enumerate() {
            let state = match r.remove(&format!("d{i}")) {
                Some(Ok(v)) => v["managementState"].as_str().map(String::from),
                Some(Err(e)) if e.is_not_found() => Some("gone".into()),
                Some(Err(e)) => return Err(self.e(e)),
                None => return Err(StepError::Retryable("a device state was not read".into())),
            };
            out.push((d["id"].as_str().unwrap_or_default().to_string(), d["name"].as_str().unwrap_or_default().to_string(), state));
        }
        Ok(out)
    }

    fn wiping(&self) -> bool {
        self.p()["action"].as_str() == Some("wipe")
    }

    fn acted_on(&self, state: &Option<String>) -> bool {
        let s = state.as_deref().unwrap_or_default();
        s == "gone" || s == if self.wiping() { "wipePending" } else { "retirePending" }
    }

    async fn device_action(&self) -> StepResult {
        let verb = if self.wiping() { "wipe" } else { "retire" };
        let body = if self.wiping() { json!({"keepEnrollmentData": false, "keepUserData": false}) } else { json!({}) };
        let items: Vec<Item> = self
            .device_states()
            .await?
            .into_iter()
            .filter(|(_, _, state)| !self.acted_on(state))
            .enumerate()
            .map(|(i, (id, ..))| Item::post(format!("d{i}"), format!("/deviceManagement/managedDevices/{id}/{verb}"), body.clone()))
            .collect();
        if !items.is_empty() {
            for (_, r) in self.m.graph.batch_once(self.cx, items).await.map_err(|e| self.e(e))? {
                if let Err(e) = r
                    && !e.is_not_found()
                {
                    return Err(self.e(e));
                }
            }
        }
        let states = self.device_states().await?;
        let pending: Vec<String> = states.iter().filter(|(_, _, s)| !self.acted_on(s)).map(|(_, n, _)| n.clone()).collect();
        if !pending.is_empty() {
            return Err(not_yet(format!("Intune does not show a pending {verb} for {}", pending.join(", "))));
        }
        let names: Vec<String> = states.iter().map(|(_, n, s)| format!("{n}: {}", s.as_deref().unwrap_or("?"))).collect();
        ok(format!("{verb} sent once; Intune reports {}", names.join(", ")))
    }

    async fn out_of_office(&self) -> StepResult {
        let internal = self.p()["internal"].as_str().unwrap_or_default();
        let external = self.p()["external"].as_str().unwrap_or_default();
        let path = format!("/users/{}/mailboxSettings", self.user);
        let body = json!({"automaticRepliesSetting": {"status": "alwaysEnabled", "externalAudience": "all", "internalReplyMessage": internal, "externalReplyMessage": external}});
        self.m.graph.call(self.cx, Method::PATCH, &path, Some(body), Replay::Safe).await.map_err(|e| self.e(e))?;
        let s = self.get(&path).await?;
        let a = &s["automaticRepliesSetting"];
        if a["status"] == json!("alwaysEnabled") && a["internalReplyMessage"].as_str() == Some(internal) {
            ok("automatic replies on for internal and external senders")
        } else {
            Err(not_yet("automatic replies are not on"))
        }
    }

    async fn grant_mailbox_access(&self) -> StepResult {
        let grantees = strs(&self.p()["grantees"]);
        let automap = self.p()["automap"].as_bool().unwrap_or(true);
        let adds: Vec<Command> = grantees
            .iter()
            .map(|g| {
                self.cmd(
                    "Add-MailboxPermission",
                    json!({"Identity": self.user, "User": g, "AccessRights": ["FullAccess"], "InheritanceType": "All", "AutoMapping": automap, "Confirm": false}),
                )
            })
            .collect();
        for r in self.exo_batch(&adds).await? {
            r.map_err(|e| self.e(e))?;
        }
        let reads: Vec<Command> = grantees.iter().map(|g| self.cmd("Get-MailboxPermission", json!({"Identity": self.user, "User": g}))).collect();
        let mut missing = Vec::new();
        for (g, r) in grantees.iter().zip(self.exo_batch(&reads).await?) {
            let rows = r.map_err(|e| self.e(e))?.rows;
            if !rows.iter().any(|p| strs(&p["AccessRights"]).iter().any(|a| a.contains("FullAccess"))) {
                missing.push(g.clone());
            }
        }
        if !missing.is_empty() {
            return Err(not_yet(format!("no FullAccess for {}", missing.join(", "))));
        }
        ok(format!("FullAccess for {}{}", grantees.join(", "), if automap { " (automapped in Outlook)" } else { "" }))
    }

    async fn grant_onedrive_access(&self) -> StepResult {
        let grantees = strs(&self.p()["grantees"]);
        let drive = match self.m.graph.get(self.cx, &format!("/users/{}/drive?$select=id", self.user)).await {
            Err(e) if e.is_not_found() || e.says("mysite") => return skip_warn("the user has no OneDrive"),
            r => r.map_err(|e| self.e(e))?,
        };
        let drive_id = drive["id"].as_str().unwrap_or_default().to_string();
        let root = self.get(&format!("/drives/{drive_id}/root?$select=id")).await?;
        let body = json!({"recipients": grantees.iter().map(|g| json!({"email": g})).collect::<Vec<_>>(), "roles": ["write"], "requireSignIn": true, "sendInvitation": false});
        let granted = self
            .m
            .graph
            .call(self.cx, Method::POST, &format!("/drives/{drive_id}/items/{}/invite", root["id"].as_str().unwrap_or_default()), Some(body), Replay::Safe)
            .await
            .map_err(|e| self.e(e))?;
        let got: BTreeSet<String> = list(&granted).iter().filter_map(|p| p["grantedToV2"]["user"]["email"].as_str().map(str::to_ascii_lowercase)).collect();
        let missing: Vec<&String> = grantees.iter().filter(|g| !got.contains(&g.to_ascii_lowercase())).collect();
        if !missing.is_empty() {
            return Err(not_yet(format!("OneDrive did not grant {missing:?}")));
        }
        ok(format!("edit access to the whole OneDrive for {}", grantees.join(", ")))
    }

    /// Who owns a group now: Graph's owners, or Exchange's `ManagedBy` for distribution
    /// lists and mail-enabled security groups.
    async fn owners(&self, groups: &[(String, String, bool)]) -> Result<Vec<BTreeSet<String>>, StepError> {
        let items: Vec<Item> = groups
            .iter()
            .enumerate()
            .filter(|(_, (_, _, exo))| !exo)
            .map(|(i, (id, _, _))| Item::get(format!("o{i}"), format!("/groups/{id}/owners?$select=id,userPrincipalName")))
            .collect();
        let mut graph = if items.is_empty() { Default::default() } else { self.m.graph.batch(self.cx, items).await.map_err(|e| self.e(e))? };
        let reads: Vec<Command> =
            groups.iter().filter(|(_, _, exo)| *exo).map(|(id, _, _)| Command::new("Get-DistributionGroup", json!({"Identity": id}), None)).collect();
        let mut exo = self.exo_batch(&reads).await?.into_iter();
        let mut out = Vec::new();
        for (i, (_, _, via_exchange)) in groups.iter().enumerate() {
            let set: BTreeSet<String> = if *via_exchange {
                let rows = exo.next().unwrap_or_else(|| Err(ApiError::NotSent("read-back".into()))).map_err(|e| self.e(e))?.rows;
                rows.first().map(|g| strs(&g["ManagedBy"])).unwrap_or_default().into_iter().map(|o| o.to_ascii_lowercase()).collect()
            } else {
                let v = graph.remove(&format!("o{i}")).unwrap_or_else(|| Err(ApiError::NotSent("read-back".into()))).map_err(|e| self.e(e))?;
                list(&v).iter().flat_map(|o| [o["id"].as_str(), o["userPrincipalName"].as_str()]).flatten().map(str::to_ascii_lowercase).collect()
            };
            out.push(set);
        }
        Ok(out)
    }

    /// Adds the new owner, then removes the leaver, so no group is ever left without one.
    async fn transfer_ownership(&self) -> StepResult {
        let to = self.p()["to"].as_str().map(String::from).ok_or_else(|| fail("no new owner in the plan"))?;
        let groups: Vec<(String, String, bool)> = self.p()["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|g| {
                (
                    g["id"].as_str().unwrap_or_default().to_string(),
                    g["name"].as_str().unwrap_or_default().to_string(),
                    g["via_exchange"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        let new_owner = self.get(&format!("/users/{}?$select=id,userPrincipalName", enc(&to))).await?;
        let to_id = new_owner["id"].as_str().unwrap_or_default().to_string();
        let me_upn = self.upn().await?.to_ascii_lowercase();
        let is = |set: &BTreeSet<String>, id: &str, upn: &str| set.contains(&id.to_ascii_lowercase()) || set.contains(&upn.to_ascii_lowercase());
        let before = self.owners(&groups).await?;
        let mut items = Vec::new();
        let mut cmds = Vec::new();
        for (i, ((gid, _, via_exchange), owners)) in groups.iter().zip(&before).enumerate() {
            let add = !is(owners, &to_id, &to);
            let remove = is(owners, self.user, &me_upn);
            if *via_exchange {
                let managed = |op: &str, who: &str| {
                    Command::new(
                        "Set-DistributionGroup",
                        json!({"Identity": gid, "ManagedBy": {"@odata.type": "#Exchange.GenericHashTable", op: who}, "BypassSecurityGroupManagerCheck": true, "Confirm": false}),
                        None,
                    )
                };
                if add {
                    cmds.push(managed("add", &to));
                }
                if remove {
                    cmds.push(managed("remove", self.user));
                }
            } else {
                if add {
                    items.push(Item::post(format!("a{i}"), format!("/groups/{gid}/owners/$ref"), json!({"@odata.id": self.m.graph.object_ref(&to_id)})));
                }
                if remove {
                    let del = Item::delete(format!("r{i}"), format!("/groups/{gid}/owners/{}/$ref", self.user));
                    items.push(if add { del.after(&format!("a{i}")) } else { del });
                }
            }
        }
        if !items.is_empty() {
            for (_, r) in self.m.graph.batch(self.cx, items).await.map_err(|e| self.e(e))? {
                match r {
                    Err(e) if !(e.is_not_found() || e.says("already exist")) => return Err(self.e(e)),
                    _ => {}
                }
            }
        }
        // Exchange applies them in order: the new manager first.
        for c in &cmds {
            self.exo(c.clone()).await?;
        }
        let after = self.owners(&groups).await?;
        let wrong: Vec<String> =
            groups.iter().zip(&after).filter(|(_, o)| !is(o, &to_id, &to) || is(o, self.user, &me_upn)).map(|((_, n, _), _)| n.clone()).collect();
        if !wrong.is_empty() {
            return Err(not_yet(format!("ownership has not moved yet for {}", wrong.join(", "))));
        }
        let names: Vec<String> = groups.iter().map(|(_, n, exo)| if *exo { format!("{n} (via Exchange)") } else { n.clone() }).collect();
        ok(format!("{to} now owns {} and the leaver owns none of them; Teams may take up to 2 hours to show the new owner", join(&names)))
    }

    async fn hide_from_gal(&self) -> StepResult {
        self.exo(self.cmd("Set-Mailbox", json!({"Identity": self.user, "HiddenFromAddressListsEnabled": true}))).await?;
        if self.mailbox().await?["HiddenFromAddressListsEnabled"] == json!(true) { ok("hidden from the address lists") } else { Err(not_yet("still listed")) }
    }

    async fn rename(&self) -> StepResult {
        let name = self.p()["display_name"].as_str().unwrap_or_default().to_string();
        match self.patch_user(json!({"displayName": name}), "displayName").await? {
            Err(e) if e.is_synced_refusal() => skip_warn("synced from on-premises AD: rename the account there"),
            Err(e) => Err(self.e(e)),
            Ok(u) if u["displayName"].as_str() == Some(name.as_str()) => ok(format!("display name is now \"{name}\"")),
            Ok(_) => Err(not_yet("the display name did not change")),
        }
    }

    async fn convert(&self) -> StepResult {
        let m = self.mailbox().await?;
        if m["RecipientTypeDetails"] == json!("SharedMailbox") {
            return ok("already a shared mailbox");
        }
        self.exo(self.cmd("Set-Mailbox", json!({"Identity": self.user, "Type": "Shared"}))).await?;
        ok("conversion to a shared mailbox accepted by Exchange; the next step waits until it reports shared")
    }

    async fn verify_shared(&self) -> StepResult {
        let policy = self.m.settings.verify;
        let started = std::time::Instant::now();
        let mut wait = policy.first;
        let mut polls = 0;
        loop {
            polls += 1;
            let m = self.mailbox().await?;
            let kind = m["RecipientTypeDetails"].as_str().unwrap_or_default().to_string();
            if kind == "SharedMailbox" {
                return ok(format!("Exchange reports SharedMailbox (after {polls} check(s), {}s)", started.elapsed().as_secs()));
            }
            if started.elapsed() + wait > policy.deadline {
                return Err(fail(format!(
                    "the mailbox still reports {kind} after {} min; licences stay until it is shared (run again later, or convert it by hand)",
                    policy.deadline.as_secs().div_ceil(60)
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(policy.cap);
        }
    }

    async fn remove_licences(&self) -> StepResult {
        // The guard: licences go only once the mailbox is verified shared, if conversion was asked.
        let guarded = self.sc.step.after.iter().any(|k| k.as_str() == StepKind::VerifyShared.key().as_str());
        if guarded && self.mailbox().await?["RecipientTypeDetails"] != json!("SharedMailbox") {
            return Err(fail("the mailbox is not shared yet: licences stay, or the mailbox would be lost"));
        }
        let direct: Vec<(String, String)> = self.p()["direct"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|l| (l["sku_id"].as_str().unwrap_or_default().to_ascii_lowercase(), l["sku"].as_str().unwrap_or_default().to_string()))
            .collect();
        let inherited: Vec<(String, String, String)> = self.p()["inherited"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|l| {
                (
                    l["sku_id"].as_str().unwrap_or_default().to_ascii_lowercase(),
                    l["group_id"].as_str().unwrap_or_default().to_string(),
                    l["group"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let states = |u: &Value| -> Vec<(String, Option<String>)> {
            u["licenseAssignmentStates"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|s| (s["skuId"].as_str().unwrap_or_default().to_ascii_lowercase(), s["assignedByGroup"].as_str().map(str::to_ascii_lowercase)))
                .collect()
        };
        let user_path = format!("/users/{}?$select=licenseAssignmentStates", self.user);
        let now = states(&self.get(&user_path).await?);
        let remove: Vec<&String> = direct.iter().map(|(id, _)| id).filter(|id| now.iter().any(|(s, g)| s == *id && g.is_none())).collect();
        if !remove.is_empty() {
            let body = json!({"addLicenses": [], "removeLicenses": remove});
            match self.m.graph.call(self.cx, Method::POST, &format!("/users/{}/assignLicense", self.user), Some(body), Replay::Safe).await {
                // A replay after a lost answer finds the licence gone; the read-back decides.
                Err(e) if e.says("does not have a corresponding license") => {}
                Err(e) => return Err(self.e(e)),
                Ok(_) => {}
            }
        }
        // Inherited licences go by leaving the licensing group, the way its kind allows.
        let mut groups = Vec::new();
        for (_, gid, _) in &inherited {
            if groups.iter().any(|(g, _, _): &(String, String, bool)| g == gid) {
                continue;
            }
            let g = self.get(&format!("/groups/{gid}?$select=id,displayName,groupTypes,mailEnabled,securityEnabled,onPremisesSyncEnabled")).await?;
            if g["onPremisesSyncEnabled"] == json!(true) {
                return Err(fail(format!(
                    "the licence comes from {}, a group synced from on-premises AD: remove the user from it there",
                    g["displayName"].as_str().unwrap_or(gid)
                )));
            }
            let unified = strs(&g["groupTypes"]).iter().any(|t| t == "Unified");
            let via_exchange = g["mailEnabled"] == json!(true) && !unified;
            groups.push((gid.clone(), g["displayName"].as_str().unwrap_or_default().to_string(), via_exchange));
        }
        let members = self.member_of().await?;
        let todo: Vec<_> = groups.iter().filter(|(id, ..)| members.contains(&id.to_ascii_lowercase())).cloned().collect();
        self.leave(&todo).await?;
        let after = states(&self.get(&user_path).await?);
        let left: Vec<String> = direct
            .iter()
            .filter(|(id, _)| after.iter().any(|(s, g)| s == id && g.is_none()))
            .map(|(_, n)| n.clone())
            .chain(
                inherited
                    .iter()
                    .filter(|(id, gid, _)| after.iter().any(|(s, g)| s == id && g.as_deref() == Some(&gid.to_ascii_lowercase())))
                    .map(|(_, _, n)| n.clone()),
            )
            .collect();
        if !left.is_empty() {
            return Err(not_yet(format!("still assigned: {}", left.join(", "))));
        }
        let mut parts = Vec::new();
        if !direct.is_empty() {
            parts.push(format!("removed {}", direct.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(" + ")));
        }
        for (_, name, exo) in &groups {
            parts.push(format!("left licensing group {name}{}", if *exo { " (via Exchange)" } else { "" }));
        }
        let skus: BTreeSet<&String> = direct.iter().map(|(id, _)| id).chain(inherited.iter().map(|(id, _, _)| id)).collect();
        ok(format!("{}; {} licence(s) reclaimed", parts.join("; "), skus.len()))
    }

    async fn clear_immutable_id(&self) -> StepResult {
        match self.patch_user(json!({"onPremisesImmutableId": null}), "onPremisesImmutableId").await? {
            Err(e) if e.is_synced_refusal() => skip_warn("synced from on-premises AD: the immutable ID belongs to AD"),
            Err(e) => Err(self.e(e)),
            Ok(u) if u["onPremisesImmutableId"].is_null() => ok("onPremisesImmutableId is empty"),
            Ok(_) => Err(not_yet("onPremisesImmutableId is still set")),
        }
    }

    async fn delete_user(&self) -> StepResult {
        match self.m.graph.call(self.cx, Method::DELETE, &format!("/users/{}", self.user), None, Replay::Safe).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) if e.is_synced_refusal() => return skip_warn("synced from on-premises AD: delete the account there"),
            Err(e) => return Err(self.e(e)),
        }
        let d = self.get(&format!("/directory/deletedItems/{}", self.user)).await?;
        ok(format!(
            "deleted; restorable from the recycle bin until {}",
            d["deletedDateTime"].as_str().map(|s| format!("30 days after {s}")).unwrap_or_else(|| "30 days from now".into())
        ))
    }

    /// Read-back for an at-most-once step whose earlier attempt may have been sent.
    async fn reconcile(&self) -> Result<Reconciled, StepError> {
        Ok(match self.kind {
            StepKind::ResetPassword => match self.password_changed_at().await? {
                Some(at) if Some(&at) != self.changed_before().as_ref() => Reconciled::Applied(StepOutcome::done(
                    format!("password replaced at {at} (confirmed by read-back after an interruption)"),
                    self.cx.trace.request_ids(),
                )),
                _ if self.changed_before().is_some() => Reconciled::NotApplied,
                // Without the time before, a change cannot be told from no change.
                _ => Reconciled::Unknown("the password's last change time was not known before the reset".into()),
            },
            StepKind::CancelMeetings => {
                if self.meetings_left().await?.is_empty() {
                    Reconciled::Applied(StepOutcome::done(
                        "every planned meeting is off the calendar (confirmed by read-back after an interruption)",
                        self.cx.trace.request_ids(),
                    ))
                } else {
                    // The ones still there were provably not cancelled; cancelled ones are gone.
                    Reconciled::NotApplied
                }
            }
            StepKind::DeviceAction => {
                let states = self.device_states().await?;
                if states.iter().all(|(_, _, s)| self.acted_on(s)) {
                    Reconciled::Applied(StepOutcome::done(
                        "Intune shows the action pending on every device (confirmed by read-back after an interruption)",
                        self.cx.trace.request_ids(),
                    ))
                } else {
                    Reconciled::NotApplied
                }
            }
            other => Reconciled::Unknown(format!("{} has no read-back for an interrupted attempt", other.title())),
        })
    }
}

#[async_trait]
impl StepExecutor for M365 {
    async fn execute(&self, sc: &StepContext) -> Result<StepOutcome, StepError> {
        let trace = Trace::new();
        let tenant = self.tenants.get(&sc.tenant).map_err(|e| fail(e.to_string()))?;
        let step = Step { m: self, cx: Cx { tenant, trace: &trace }, sc, kind: sc.step.kind, user: &sc.target_id };
        let done = step.run().await?;
        Ok(match done {
            Done::Verified(verified) => StepOutcome::done(verified, trace.request_ids()),
            Done::Skipped { reason, warning } => StepOutcome::Skipped { reason, warning },
        })
    }

    async fn reconcile(&self, sc: &StepContext) -> Reconciled {
        let trace = Trace::new();
        let Ok(tenant) = self.tenants.get(&sc.tenant) else { return Reconciled::Unknown(format!("unknown tenant {}", sc.tenant)) };
        let step = Step { m: self, cx: Cx { tenant, trace: &trace }, sc, kind: sc.step.kind, user: &sc.target_id };
        match step.reconcile().await {
            Ok(r) => r,
            Err(e) => Reconciled::Unknown(format!("read-back failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_strong_and_different() {
        let a = strong_password();
        let b = strong_password();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.chars().any(|c| c.is_ascii_uppercase()) && a.chars().any(|c| c.is_ascii_lowercase()));
        assert!(a.chars().any(|c| c.is_ascii_digit()) && a.chars().any(|c| !c.is_alphanumeric()));
    }

    #[test]
    fn every_deletable_method_type_has_its_collection() {
        assert_eq!(method_collection("#microsoft.graph.phoneAuthenticationMethod"), Some("phoneMethods"));
        assert_eq!(method_collection("fido2AuthenticationMethod"), Some("fido2Methods"));
        assert_eq!(method_collection("#microsoft.graph.passwordAuthenticationMethod"), None);
    }
}
