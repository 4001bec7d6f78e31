//! The delegation index: who holds rights on whose mailbox and calendar, per tenant.
//!
//! Finding a leaver's rights on other mailboxes means asking Exchange about every mailbox
//! in the tenant, which costs thousands of calls in a large one. Instead the scheduler
//! keeps an index, a few mailboxes a minute ([`Indexer`]), and a plan reads it: a plan
//! costs the same in a tenant of fifty mailboxes and of fifty thousand. The preview says
//! how old and how complete the index is, and the steps that remove the rights read each
//! one back before and after removing it.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::domain::TenantId;
use crate::snapshot::{Delegation, DiscoveryError, UserSnapshot};
use crate::store::{Store, StoreError};

/// A right on a mailbox, as the index keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Right {
    FullAccess,
    SendAs,
    SendOnBehalf,
    /// Any permission on the mailbox's calendar folder.
    Calendar,
}

impl Right {
    pub fn as_str(self) -> &'static str {
        match self {
            Right::FullAccess => "FullAccess",
            Right::SendAs => "SendAs",
            Right::SendOnBehalf => "SendOnBehalf",
            Right::Calendar => "Calendar",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Right::FullAccess, Right::SendAs, Right::SendOnBehalf, Right::Calendar].into_iter().find(|r| r.as_str() == s)
    }
}

/// Who holds a right, as Exchange names them: an address where it gives one, else a
/// display name (calendar permissions name people by display name only).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Trustee {
    Address(String),
    Name(String),
}

impl Trustee {
    /// The stored key: `upn:alice@contoso.com` or `name:alice able`, lower case.
    pub fn key(&self) -> String {
        match self {
            Trustee::Address(a) => format!("upn:{}", a.to_lowercase()),
            Trustee::Name(n) => format!("name:{}", n.trim().to_lowercase()),
        }
    }

    /// `User` or `Trustee` as Exchange printed it.
    pub fn from_exchange(s: &str) -> Self {
        if s.contains('@') { Trustee::Address(s.to_string()) } else { Trustee::Name(s.to_string()) }
    }
}

/// A mailbox as the tenant's listing shows it: its address, and the send-on-behalf grants
/// the listing carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub mailbox: String,
    pub send_on_behalf: Vec<Trustee>,
}

/// What one scan of a mailbox found: its calendar folder (by its real, possibly
/// localised name) and every right others hold on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub mailbox: String,
    /// The calendar folder's identity, e.g. `mary@contoso.com:\Kalender`.
    pub calendar: Option<String>,
    pub grants: Vec<(Trustee, Right)>,
}

/// One right a person holds on another mailbox, from the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub mailbox: String,
    pub right: Right,
    /// For [`Right::Calendar`]: the folder's identity.
    pub calendar: Option<String>,
}

/// How complete and how fresh a tenant's index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    pub mailboxes: usize,
    pub scanned: usize,
    /// The oldest scan among the scanned mailboxes.
    pub oldest: Option<DateTime<Utc>>,
    /// When the mailboxes were last listed.
    pub listed: Option<DateTime<Utc>>,
}

impl Coverage {
    pub fn complete(&self) -> bool {
        self.listed.is_some() && self.scanned == self.mailboxes
    }

    /// What the preview and the report say of the index, at `now`.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let ago = |t: DateTime<Utc>| {
            let m = (now - t).num_minutes().max(0);
            match m {
                0 => "less than a minute".to_string(),
                1..=119 => format!("{m} min"),
                _ => format!("{} h", m / 60),
            }
        };
        match (self.listed, self.oldest) {
            (None, _) => {
                "Rights on other mailboxes and calendars: not known yet, the tenant's mailboxes have not been indexed; check them by hand before approving."
                    .into()
            }
            (Some(_), _) if !self.complete() => format!(
                "Rights on other mailboxes and calendars: the index has scanned {} of {} mailboxes so far; rights on the other {} are not known yet.",
                self.scanned,
                self.mailboxes,
                self.mailboxes - self.scanned
            ),
            (Some(_), Some(oldest)) => {
                format!(
                    "Rights on other mailboxes and calendars: from the index of {} mailboxes, each scanned within the last {}.",
                    self.mailboxes,
                    ago(oldest)
                )
            }
            (Some(_), None) => "Rights on other mailboxes and calendars: the tenant has no other mailboxes.".into(),
        }
    }
}

/// Lists and scans mailboxes: Exchange Online behind a port.
#[async_trait]
pub trait MailboxIndexSource: Send + Sync {
    /// Every mailbox of the tenant, with the grants the listing carries.
    async fn list_mailboxes(&self, tenant: &TenantId) -> Result<Vec<Listed>, DiscoveryError>;
    /// The rights others hold on each of `mailboxes`.
    async fn scan_mailboxes(&self, tenant: &TenantId, mailboxes: &[String]) -> Result<Vec<Scanned>, DiscoveryError>;
}

/// The rights `trustees` hold, from a listing and scans held in memory: what the store's
/// index answers, for a caller without one.
pub fn grants_for(listed: &[Listed], scans: &[Scanned], trustees: &[Trustee]) -> Vec<Grant> {
    let keys: Vec<String> = trustees.iter().map(Trustee::key).collect();
    let mut out = Vec::new();
    for l in listed {
        if l.send_on_behalf.iter().any(|t| keys.contains(&t.key())) {
            out.push(Grant { mailbox: l.mailbox.to_lowercase(), right: Right::SendOnBehalf, calendar: None });
        }
    }
    for s in scans {
        for (t, right) in &s.grants {
            let g = Grant { mailbox: s.mailbox.to_lowercase(), right: *right, calendar: s.calendar.clone().filter(|_| *right == Right::Calendar) };
            if keys.contains(&t.key()) && !out.contains(&g) {
                out.push(g);
            }
        }
    }
    out
}

/// The leaver's rights on other mailboxes, put into the snapshot a plan is built from.
pub fn merge(snapshot: &mut UserSnapshot, grants: &[Grant]) {
    let me = snapshot.upn.to_string().to_lowercase();
    let Some(m) = snapshot.mailbox.as_mut() else { return };
    for g in grants.iter().filter(|g| g.mailbox.to_lowercase() != me) {
        match g.right {
            Right::Calendar => {
                let folder = g.calendar.clone().unwrap_or_else(|| format!("{}:\\Calendar", g.mailbox));
                if !m.calendar_permissions.contains(&folder) {
                    m.calendar_permissions.push(folder);
                }
            }
            r => {
                let d = Delegation { mailbox: g.mailbox.clone(), rights: r.as_str().into() };
                if !m.delegations.contains(&d) {
                    m.delegations.push(d);
                }
            }
        }
    }
}

/// Keeps each tenant's index fresh: the mailbox listing every `list_every`, then on each
/// tick the `per_tick` mailboxes whose scan is missing or oldest (never newer than
/// `max_age`), so a run of ticks covers the tenant and then keeps it current.
pub struct Indexer {
    store: Store,
    source: Arc<dyn MailboxIndexSource>,
    clock: Arc<dyn Clock>,
    tenants: Vec<TenantId>,
    pub per_tick: usize,
    pub list_every: Duration,
    pub max_age: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] DiscoveryError),
}

/// What one tick did, per tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexed {
    pub listed: usize,
    pub scanned: usize,
}

impl Indexer {
    pub fn new(store: Store, source: Arc<dyn MailboxIndexSource>, clock: Arc<dyn Clock>, tenants: Vec<TenantId>) -> Self {
        Indexer { store, source, clock, tenants, per_tick: 25, list_every: Duration::hours(1), max_age: Duration::hours(24) }
    }

    /// One round over every tenant. A tenant whose Exchange fails is skipped until the
    /// next tick; the others go on.
    pub async fn tick(&self) -> Indexed {
        let mut done = Indexed::default();
        for t in &self.tenants {
            match self.tick_tenant(t).await {
                Ok(i) => {
                    done.listed += i.listed;
                    done.scanned += i.scanned;
                }
                Err(e) => tracing::warn!(tenant = %t, error = %e, "the delegation index was not refreshed this time"),
            }
        }
        done
    }

    async fn tick_tenant(&self, tenant: &TenantId) -> Result<Indexed, IndexError> {
        let now = self.clock.now();
        let mut done = Indexed::default();
        let coverage = self.store.index_coverage(tenant).await?;
        if coverage.listed.is_none_or(|at| now - at >= self.list_every) {
            let listed = self.source.list_mailboxes(tenant).await?;
            done.listed = listed.len();
            self.store.index_listed(tenant, &listed, now).await?;
        }
        let due = self.store.index_due(tenant, now - self.max_age, self.per_tick).await?;
        if !due.is_empty() {
            let scans = self.source.scan_mailboxes(tenant, &due).await?;
            done.scanned = scans.len();
            self.store.index_scanned(tenant, &scans, now).await?;
        }
        Ok(done)
    }

    /// Ticks until each tenant's index is complete (for tests and the first start of a
    /// small installation). A tenant whose Exchange refuses is left as it is, and named
    /// with why.
    pub async fn build_all(&self) -> Vec<(TenantId, IndexError)> {
        let mut failed = Vec::new();
        for t in &self.tenants {
            loop {
                let done = match self.tick_tenant(t).await {
                    Ok(_) => self.store.index_coverage(t).await.map(|c| c.complete()).map_err(IndexError::from),
                    Err(e) => Err(e),
                };
                match done {
                    Ok(true) => break,
                    Ok(false) => continue,
                    Err(e) => {
                        failed.push((t.clone(), e));
                        break;
                    }
                }
            }
        }
        failed
    }
}
