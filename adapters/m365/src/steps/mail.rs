//! The mailbox and the address book: rules, mobile devices, rights on other mailboxes and
//! calendars, forwarding, meetings, out of office, hand-over, hiding, renaming, conversion.

use super::*;

impl Step<'_> {
    pub(super) async fn rules(&self) -> Result<Vec<Value>, StepError> {
        let out = self.exo(self.cmd("Get-InboxRule", json!({"Mailbox": self.user, "IncludeHidden": true}))).await?;
        Ok(out.rows.into_iter().filter(|r| !is_system_rule(r["Name"].as_str().unwrap_or_default())).collect())
    }

    pub(super) async fn remove_rules(&self) -> StepResult {
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

    pub(super) async fn mobile_devices(&self) -> Result<Vec<Value>, StepError> {
        Ok(self.exo(self.cmd("Get-MobileDevice", json!({"Mailbox": self.user}))).await?.rows)
    }

    pub(super) async fn remove_mobile_devices(&self) -> StepResult {
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

    pub(super) fn delegation_reads(&self, list: &[(String, String)]) -> Vec<Command> {
        list.iter()
            .map(|(mb, rights)| match rights.as_str() {
                "FullAccess" => Command::new("Get-MailboxPermission", json!({"Identity": mb, "User": self.user}), Some(mb)),
                "SendAs" => Command::new("Get-RecipientPermission", json!({"Identity": mb, "Trustee": self.user}), Some(mb)),
                _ => Command::new("Get-Mailbox", json!({"Identity": mb}), Some(mb)),
            })
            .collect()
    }

    pub(super) async fn remaining_delegations(&self, list: &[(String, String)], upn: &str) -> Result<Vec<String>, StepError> {
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

    pub(super) async fn upn(&self) -> Result<String, StepError> {
        Ok(self.get(&format!("/users/{}?$select=userPrincipalName", self.user)).await?["userPrincipalName"].as_str().unwrap_or_default().to_string())
    }

    pub(super) async fn remove_mailbox_permissions(&self) -> StepResult {
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

    pub(super) async fn remove_calendar_permissions(&self) -> StepResult {
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

    pub(super) async fn set_forwarding(&self, to: Option<(String, bool)>, keep_copy: bool) -> StepResult {
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

    pub(super) fn window(&self) -> String {
        let now = self.m.clock.now();
        let end = now + chrono::Duration::days(self.m.settings.calendar_window_days as i64);
        let f = |d: chrono::DateTime<chrono::Utc>| enc(&d.to_rfc3339_opts(SecondsFormat::Secs, true));
        format!("/users/{}/calendarView?startDateTime={}&endDateTime={}&$select=id,subject,isOrganizer&$top=1000", self.user, f(now), f(end))
    }

    /// The planned meetings still on the organiser's calendar.
    pub(super) async fn meetings_left(&self) -> Result<Vec<(String, String)>, StepError> {
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

    pub(super) async fn cancel_meetings(&self) -> StepResult {
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

    pub(super) async fn out_of_office(&self) -> StepResult {
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

    pub(super) async fn grant_mailbox_access(&self) -> StepResult {
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

    pub(super) async fn hide_from_gal(&self) -> StepResult {
        self.exo(self.cmd("Set-Mailbox", json!({"Identity": self.user, "HiddenFromAddressListsEnabled": true}))).await?;
        if self.mailbox().await?["HiddenFromAddressListsEnabled"] == json!(true) { ok("hidden from the address lists") } else { Err(not_yet("still listed")) }
    }

    pub(super) async fn rename(&self) -> StepResult {
        let name = self.p()["display_name"].as_str().unwrap_or_default().to_string();
        match self.patch_user(json!({"displayName": name}), "displayName").await? {
            Err(e) if e.is_synced_refusal() => skip_warn("synced from on-premises AD: rename the account there"),
            Err(e) => Err(self.e(e)),
            Ok(u) if u["displayName"].as_str() == Some(name.as_str()) => ok(format!("display name is now \"{name}\"")),
            Ok(_) => Err(not_yet("the display name did not change")),
        }
    }

    pub(super) async fn convert(&self) -> StepResult {
        let m = self.mailbox().await?;
        if m["RecipientTypeDetails"] == json!("SharedMailbox") {
            return ok("already a shared mailbox");
        }
        self.exo(self.cmd("Set-Mailbox", json!({"Identity": self.user, "Type": "Shared"}))).await?;
        ok("conversion to a shared mailbox accepted by Exchange; the next step waits until it reports shared")
    }

    /// One look per claim: a mailbox still converting sends the step back to the queue
    /// (no worker waits on Exchange), until the deadline counted from the first look.
    pub(super) async fn verify_shared(&self) -> StepResult {
        let policy = self.m.settings.verify;
        let m = self.mailbox().await?;
        let kind = m["RecipientTypeDetails"].as_str().unwrap_or_default().to_string();
        let waited = self.waited();
        let looks = self.sc.polls + 1;
        if kind == "SharedMailbox" {
            let after = crate::steps::said(waited).map(|d| format!(", {d}")).unwrap_or_default();
            return ok(format!("Exchange reports SharedMailbox (after {looks} check(s){after})"));
        }
        if waited >= policy.deadline {
            return Err(fail(format!(
                "the mailbox still reports {kind} after {} min; licences stay until it is shared (run again later, or convert it by hand)",
                policy.deadline.as_secs().div_ceil(60)
            )));
        }
        Err(StepError::NotYet {
            look_again_in: policy.look_again_in(self.sc.polls),
            waiting_for: format!("Exchange to report the mailbox shared (it reports {kind}; {looks} check(s) so far)"),
        })
    }
}
