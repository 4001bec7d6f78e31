//! Sign-in, sessions, password, MFA, admin roles, groups and the groups the leaver owns.

use super::*;

impl Step<'_> {
    pub(super) async fn disable_sign_in(&self) -> StepResult {
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

    pub(super) async fn revoke_sessions(&self) -> StepResult {
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

    pub(super) fn changed_before(&self) -> Option<String> {
        self.p()["changed_before"].as_str().map(String::from)
    }

    pub(super) async fn password_changed_at(&self) -> Result<Option<String>, StepError> {
        Ok(self.get(&format!("/users/{}?$select=lastPasswordChangeDateTime", self.user)).await?["lastPasswordChangeDateTime"].as_str().map(String::from))
    }

    pub(super) async fn reset_password(&self) -> StepResult {
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

    pub(super) async fn remove_mfa(&self) -> StepResult {
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

    pub(super) async fn roles(&self) -> Result<(Vec<Value>, Vec<Value>), StepError> {
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

    pub(super) async fn remove_roles(&self) -> StepResult {
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

    pub(super) async fn member_of(&self) -> Result<BTreeSet<String>, StepError> {
        let all =
            self.m.graph.all(self.cx, &format!("/users/{}/memberOf/microsoft.graph.group?$select=id&$top=999", self.user)).await.map_err(|e| self.e(e))?;
        Ok(all.iter().filter_map(|g| g["id"].as_str().map(|s| s.to_ascii_lowercase())).collect())
    }

    /// Leaves groups: Graph for security and Microsoft 365 groups, Exchange for
    /// distribution lists and mail-enabled security groups.
    pub(super) async fn leave(&self, groups: &[(String, String, bool)]) -> Result<(), StepError> {
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

    pub(super) async fn remove_groups(&self) -> StepResult {
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

    /// Who owns a group now: Graph's owners, or Exchange's `ManagedBy` for distribution
    /// lists and mail-enabled security groups.
    pub(super) async fn owners(&self, groups: &[(String, String, bool)]) -> Result<Vec<BTreeSet<String>>, StepError> {
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
    pub(super) async fn transfer_ownership(&self) -> StepResult {
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
}
