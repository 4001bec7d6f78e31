//! Exchange Online behind core's delegation index: the mailbox listing, and a scan of
//! every right others hold on a few mailboxes at a time.

use async_trait::async_trait;
use serde_json::{Value, json};

use offboard_core::delegations::{Listed, MailboxIndexSource, Right, Scanned, Trustee};
use offboard_core::domain::TenantId;
use offboard_core::snapshot::DiscoveryError;

use crate::M365;
use crate::discovery::refused;
use crate::error::ApiError;
use crate::exchange::{Command, Output};
use crate::trace::Trace;
use crate::transport::{Cx, Replay};

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        Value::String(s) => s.split(',').map(|x| x.trim().to_string()).collect(),
        _ => vec![],
    }
}

/// Accounts Exchange lists on every mailbox that are not people: the owner's own entry,
/// system principals, the default and anonymous calendar entries.
fn system(who: &str) -> bool {
    let w = who.to_ascii_uppercase();
    w.starts_with("NT AUTHORITY") || w.starts_with("S-1-5-") || w == "DEFAULT" || w == "ANONYMOUS" || w.is_empty()
}

fn rows(r: Result<Output, ApiError>) -> Result<Option<Vec<Value>>, DiscoveryError> {
    match r {
        Ok(o) => Ok(Some(o.rows)),
        // Gone since the listing: nothing to index.
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(refused(&e)),
    }
}

#[async_trait]
impl MailboxIndexSource for M365 {
    async fn list_mailboxes(&self, tenant: &TenantId) -> Result<Vec<Listed>, DiscoveryError> {
        let t = self.tenants.get(tenant).map_err(|e| DiscoveryError::UnknownTenant(e.to_string()))?;
        let trace = Trace::new();
        let cx = Cx::new(t, &trace);
        let all = Command::new("Get-Mailbox", json!({"ResultSize": "Unlimited"}), None);
        let out = self.exchange().run(cx, &all, Replay::Safe).await.map_err(|e| refused(&e))?;
        Ok(out
            .rows
            .iter()
            .filter_map(|m| {
                let mailbox = m["UserPrincipalName"].as_str().or(m["PrimarySmtpAddress"].as_str())?.to_string();
                let send_on_behalf = strings(&m["GrantSendOnBehalfTo"]).iter().filter(|g| !system(g)).map(|g| Trustee::from_exchange(g)).collect();
                Some(Listed { mailbox, send_on_behalf })
            })
            .collect())
    }

    async fn scan_mailboxes(&self, tenant: &TenantId, mailboxes: &[String]) -> Result<Vec<Scanned>, DiscoveryError> {
        let t = self.tenants.get(tenant).map_err(|e| DiscoveryError::UnknownTenant(e.to_string()))?;
        let trace = Trace::new();
        let cx = Cx::new(t, &trace);
        let mut reads = Vec::new();
        for m in mailboxes {
            reads.push(Command::new("Get-MailboxPermission", json!({"Identity": m}), Some(m)));
            reads.push(Command::new("Get-RecipientPermission", json!({"Identity": m}), Some(m)));
            // The calendar's real name: `Calendar` in English, `Kalender` in German, …
            reads.push(Command::new("Get-MailboxFolderStatistics", json!({"Identity": m, "FolderScope": "Calendar"}), Some(m)));
        }
        let mut answers = self.exchange().batch(cx, &reads).await.map_err(|e| refused(&e))?.into_iter();
        let mut scans = Vec::new();
        for m in mailboxes {
            let mut next = || answers.next().unwrap_or_else(|| Err(ApiError::NotSent("missing".into())));
            let (full, send_as, folders) = (rows(next())?, rows(next())?, rows(next())?);
            let mut grants = Vec::new();
            for p in full.iter().flatten() {
                let who = p["User"].as_str().unwrap_or_default();
                if strings(&p["AccessRights"]).iter().any(|a| a.contains("FullAccess"))
                    && p["IsInherited"].as_bool() != Some(true)
                    && p["Deny"].as_bool() != Some(true)
                    && !system(who)
                {
                    grants.push((Trustee::from_exchange(who), Right::FullAccess));
                }
            }
            for p in send_as.iter().flatten() {
                let who = p["Trustee"].as_str().unwrap_or_default();
                if strings(&p["AccessRights"]).iter().any(|a| a.contains("SendAs")) && p["AccessControlType"].as_str() != Some("Deny") && !system(who) {
                    grants.push((Trustee::from_exchange(who), Right::SendAs));
                }
            }
            let calendar =
                folders.iter().flatten().find(|f| f["FolderType"].as_str() == Some("Calendar")).and_then(|f| f["Name"].as_str().map(|n| format!("{m}:\\{n}")));
            scans.push(Scanned { mailbox: m.clone(), calendar, grants });
        }
        // Who may see each calendar, by the folder's own name.
        let with_calendar: Vec<usize> = scans.iter().enumerate().filter(|(_, s)| s.calendar.is_some()).map(|(i, _)| i).collect();
        let reads: Vec<Command> = with_calendar
            .iter()
            .map(|&i| Command::new("Get-MailboxFolderPermission", json!({"Identity": scans[i].calendar}), Some(&scans[i].mailbox)))
            .collect();
        let answers = self.exchange().batch(cx, &reads).await.map_err(|e| refused(&e))?;
        for (&i, r) in with_calendar.iter().zip(answers) {
            for p in rows(r)?.iter().flatten() {
                let who = p["User"].as_str().unwrap_or_default();
                if !system(who) && !strings(&p["AccessRights"]).iter().all(|a| a == "None") {
                    scans[i].grants.push((Trustee::from_exchange(who), Right::Calendar));
                }
            }
        }
        Ok(scans)
    }
}
