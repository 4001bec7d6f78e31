//! Client-side pacing that keeps us under Microsoft's published limits (graph.md §3)
//! instead of discovering them through 429s: token buckets per tenant for identity
//! resource units and writes, Intune requests and writes, and per mailbox for Outlook,
//! where at most four requests may be in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budgets we allow ourselves, just below the documented per-app limits, which no other
/// app draws on: a bulk offboarding runs at the speed Microsoft allows, and a 429 from drift
/// or a second replica is answered by waiting out its Retry-After.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Identity and access resource units per 10 s per app and tenant (S tier: 3,500).
    pub identity_ru_per_10s: f64,
    /// Identity writes per 150 s per app and tenant (3,000).
    pub identity_writes_per_150s: f64,
    /// Intune requests per 20 s per app and tenant (1,000), and writes (100).
    pub intune_per_20s: f64,
    pub intune_writes_per_20s: f64,
    /// Outlook requests per 10 min per app and mailbox (10,000), and concurrent ones (4).
    pub outlook_per_10min: f64,
    pub outlook_concurrency: usize,
    /// Exchange admin API calls per second per tenant (undocumented; conservative).
    pub exchange_per_s: f64,
    /// Seconds per Microsoft second: every window is multiplied by it. 1 against Microsoft;
    /// a simulated tenant running its clock faster needs the same factor here.
    pub time_scale: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            identity_ru_per_10s: 3_400.0,
            identity_writes_per_150s: 2_950.0,
            intune_per_20s: 980.0,
            intune_writes_per_20s: 98.0,
            outlook_per_10min: 9_800.0,
            outlook_concurrency: 4,
            exchange_per_s: 20.0,
            time_scale: 1.0,
        }
    }
}

/// Which budget a request draws on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lane {
    Identity {
        ru: u32,
        write: bool,
    },
    Intune {
        write: bool,
    },
    Outlook {
        mailbox: String,
    },
    Exchange,
    /// OneDrive and anything without a published per-tenant limit.
    Unpaced,
    /// A `$batch` envelope: Microsoft meters each item on its own, so the envelope waits
    /// for the budget of all of them.
    Batch(Vec<Lane>),
}

impl Lane {
    /// The lane of a Graph request, from its method and path (after `/v1.0`).
    pub fn for_graph(method: &str, path_and_query: &str) -> Self {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let p = path.to_ascii_lowercase();
        let write = !method.eq_ignore_ascii_case("GET");
        if p.starts_with("/devicemanagement") || p.contains("/manageddevices") {
            return Self::Intune { write };
        }
        if ["/mailboxsettings", "/mailfolders", "/calendar", "/events", "/calendarview", "/messages"].iter().any(|s| p.contains(s)) {
            let mailbox = p.trim_start_matches("/users/").split('/').next().unwrap_or_default().to_string();
            return Self::Outlook { mailbox };
        }
        if p.starts_with("/drives") || p.ends_with("/drive") || p.contains("/drive/") {
            return Self::Unpaced;
        }
        if write {
            return Self::Identity { ru: 1, write: true };
        }
        let base: i64 = if p.contains("/transitivememberof") || p.contains("/transitivemembers") {
            5
        } else if p.contains("/members") || p == "/subscribedskus" {
            3
        } else if p == "/users" || p.contains("/memberof") || p.contains("/licensedetails") {
            2
        } else {
            1
        };
        let select = query.to_ascii_lowercase().contains("$select=") as i64;
        Self::Identity { ru: (base - select).max(1) as u32, write: false }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_sec: f64,
    at: Instant,
}

impl Bucket {
    fn new(capacity: f64, window: Duration) -> Self {
        Self { tokens: capacity, capacity, per_sec: capacity / window.as_secs_f64(), at: Instant::now() }
    }

    /// Takes `n` now, or says how long until it can.
    fn take(&mut self, n: f64) -> Option<Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_sec).min(self.capacity);
        self.at = now;
        if self.tokens >= n {
            self.tokens -= n;
            None
        } else {
            Some(Duration::from_secs_f64((n - self.tokens) / self.per_sec))
        }
    }
}

pub struct Pacer {
    limits: Limits,
    buckets: Mutex<HashMap<String, Bucket>>,
    outlook: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Pacer {
    pub fn new(limits: Limits) -> Self {
        Self { limits, buckets: Mutex::new(HashMap::new()), outlook: Mutex::new(HashMap::new()) }
    }

    async fn draw(&self, key: String, n: f64, capacity: f64, window: Duration) {
        if n <= 0.0 {
            return;
        }
        let window = window.mul_f64(self.limits.time_scale);
        loop {
            let wait = {
                let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
                b.entry(key.clone()).or_insert_with(|| Bucket::new(capacity, window)).take(n.min(capacity))
            };
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// Waits until the request fits its budgets; the permits (Outlook) are held while the
    /// request is in flight.
    pub async fn admit(&self, tenant: &str, lane: &Lane) -> Vec<OwnedSemaphorePermit> {
        let l = &self.limits;
        let items = match lane {
            Lane::Batch(items) => items.as_slice(),
            one => std::slice::from_ref(one),
        };
        let (mut ru, mut writes, mut intune, mut intune_writes, mut exchange) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let mut mailboxes: Vec<(&str, u32)> = Vec::new();
        for lane in items {
            match lane {
                Lane::Identity { ru: r, write } => {
                    ru += *r as f64;
                    writes += *write as u8 as f64;
                }
                Lane::Intune { write } => {
                    intune += 1.0;
                    intune_writes += *write as u8 as f64;
                }
                Lane::Outlook { mailbox } => match mailboxes.iter_mut().find(|(m, _)| m == mailbox) {
                    Some((_, n)) => *n += 1,
                    None => mailboxes.push((mailbox, 1)),
                },
                Lane::Exchange => exchange += 1.0,
                Lane::Unpaced | Lane::Batch(_) => {}
            }
        }
        self.draw(format!("{tenant}/ru"), ru, l.identity_ru_per_10s, Duration::from_secs(10)).await;
        self.draw(format!("{tenant}/writes"), writes, l.identity_writes_per_150s, Duration::from_secs(150)).await;
        self.draw(format!("{tenant}/intune"), intune, l.intune_per_20s, Duration::from_secs(20)).await;
        self.draw(format!("{tenant}/intune-writes"), intune_writes, l.intune_writes_per_20s, Duration::from_secs(20)).await;
        self.draw(format!("{tenant}/exchange"), exchange, l.exchange_per_s, Duration::from_secs(1)).await;
        let mut permits = Vec::new();
        for (mailbox, n) in mailboxes {
            self.draw(format!("{tenant}/outlook/{mailbox}"), n as f64, l.outlook_per_10min, Duration::from_secs(600)).await;
            let sem = {
                let mut m = self.outlook.lock().unwrap_or_else(|e| e.into_inner());
                m.entry(format!("{tenant}/{mailbox}")).or_insert_with(|| Arc::new(Semaphore::new(l.outlook_concurrency.max(1)))).clone()
            };
            // Graph runs at most four of a batch's Outlook items at a time itself.
            let n = n.min(l.outlook_concurrency.max(1) as u32);
            if let Ok(p) = sem.acquire_many_owned(n).await {
                permits.push(p);
            }
        }
        permits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_follow_the_published_cost_table() {
        assert_eq!(Lane::for_graph("GET", "/users/x/memberOf/microsoft.graph.group?$select=id"), Lane::Identity { ru: 1, write: false });
        assert_eq!(Lane::for_graph("GET", "/users/x/transitiveMemberOf"), Lane::Identity { ru: 5, write: false });
        assert_eq!(Lane::for_graph("DELETE", "/groups/g/members/u/$ref"), Lane::Identity { ru: 1, write: true });
        assert_eq!(Lane::for_graph("POST", "/deviceManagement/managedDevices/d/wipe"), Lane::Intune { write: true });
        assert_eq!(Lane::for_graph("GET", "/users/u1/calendarView?startDateTime=x"), Lane::Outlook { mailbox: "u1".into() });
        assert_eq!(Lane::for_graph("POST", "/drives/d/items/r/invite"), Lane::Unpaced);
    }

    #[tokio::test]
    async fn a_bucket_makes_callers_wait_instead_of_overrunning() {
        let p = Pacer::new(Limits { exchange_per_s: 20.0, ..Limits::default() });
        let start = Instant::now();
        for _ in 0..30 {
            p.admit("t", &Lane::Exchange).await;
        }
        // 20 at once, then 10 more at 20/s: at least half a second.
        assert!(start.elapsed() >= Duration::from_millis(450), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_batch_draws_one_write_per_item() {
        let p = Pacer::new(Limits { identity_writes_per_150s: 20.0, time_scale: 0.01, ..Limits::default() });
        let delete = Lane::for_graph("DELETE", "/groups/g/members/u/$ref");
        let start = Instant::now();
        p.admit("t", &Lane::Batch(vec![delete.clone(); 20])).await;
        assert!(start.elapsed() < Duration::from_millis(100), "a full bucket admits 20 at once");
        // The bucket is empty: ten more writes refill at 20 per 1.5 s (150 s scaled by 0.01).
        p.admit("t", &Lane::Batch(vec![delete; 10])).await;
        assert!(start.elapsed() >= Duration::from_millis(700), "{:?}", start.elapsed());
    }
}
