//! Devices, OneDrive, licences and the account itself (the on-premises anchor, deletion).

use super::*;

impl Step<'_> {
    pub(super) async fn device_states(&self) -> Result<Vec<(String, String, Option<String>)>, StepError> {
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

    pub(super) fn wiping(&self) -> bool {
        self.p()["action"].as_str() == Some("wipe")
    }

    pub(super) fn acted_on(&self, state: &Option<String>) -> bool {
        let s = state.as_deref().unwrap_or_default();
        s == "gone" || s == if self.wiping() { "wipePending" } else { "retirePending" }
    }

    pub(super) async fn device_action(&self) -> StepResult {
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

    pub(super) async fn grant_onedrive_access(&self) -> StepResult {
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

    pub(super) async fn remove_licences(&self) -> StepResult {
        // The guard: licences go only once the mailbox is verified shared, if conversion was asked.
        let guarded = self.sc.step.after.iter().any(|k| k.as_str() == StepKind::VerifyShared.key().as_str());
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
        // The guard and the read of what is assigned go together: the read changes nothing.
        let guard = async { if guarded { self.mailbox().await.map(Some) } else { Ok(None) } };
        let (mailbox, now) = futures_util::future::join(guard, self.get(&user_path)).await;
        if mailbox?.is_some_and(|m| m["RecipientTypeDetails"] != json!("SharedMailbox")) {
            return Err(fail("the mailbox is not shared yet: licences stay, or the mailbox would be lost"));
        }
        let now = states(&now?);
        let remove: Vec<&String> = direct.iter().map(|(id, _)| id).filter(|id| now.iter().any(|(s, g)| s == *id && g.is_none())).collect();
        // Without licensing groups to leave, the read-back rides in the removal's batch.
        let mut read_back = None;
        if !remove.is_empty() {
            let body = json!({"addLicenses": [], "removeLicenses": remove});
            let mut write = vec![Item::post("write", format!("/users/{}/assignLicense", self.user), body)];
            if inherited.is_empty() {
                write.push(Item::get("read", user_path.clone()).after("write"));
            }
            let mut r = self.m.graph.batch(self.cx, write).await.map_err(|e| self.e(e))?;
            match r.remove("write") {
                // A replay after a lost answer finds the licence gone; the read-back decides.
                Some(Err(e)) if e.says("does not have a corresponding license") => {}
                Some(Err(e)) => return Err(self.e(e)),
                _ => read_back = r.remove("read").and_then(Result::ok),
            }
        }
        if inherited.is_empty() {
            let after = match read_back {
                Some(u) => u,
                None => self.get(&user_path).await?,
            };
            return reclaimed(&direct, &[], &[], &states(&after));
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
        reclaimed(&direct, &inherited, &groups, &states(&self.get(&user_path).await?))
    }

    pub(super) async fn clear_immutable_id(&self) -> StepResult {
        match self.patch_user(json!({"onPremisesImmutableId": null}), "onPremisesImmutableId").await? {
            Err(e) if e.is_synced_refusal() => skip_warn("synced from on-premises AD: the immutable ID belongs to AD"),
            Err(e) => Err(self.e(e)),
            Ok(u) if u["onPremisesImmutableId"].is_null() => ok("onPremisesImmutableId is empty"),
            Ok(_) => Err(not_yet("onPremisesImmutableId is still set")),
        }
    }

    pub(super) async fn delete_user(&self) -> StepResult {
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
}

/// What `remove_licences` says once it has read back what is still `after` assigned: each
/// (sku id, name) assigned directly, each (sku id, group id, name) through a licensing
/// group, and the groups it left as (id, name, through Exchange).
fn reclaimed(
    direct: &[(String, String)],
    inherited: &[(String, String, String)],
    groups: &[(String, String, bool)],
    after: &[(String, Option<String>)],
) -> StepResult {
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
    for (_, name, exo) in groups {
        parts.push(format!("left licensing group {name}{}", if *exo { " (via Exchange)" } else { "" }));
    }
    let skus: BTreeSet<&String> = direct.iter().map(|(id, _)| id).chain(inherited.iter().map(|(id, _, _)| id)).collect();
    ok(format!("{}; {} licence(s) reclaimed", parts.join("; "), skus.len()))
}
