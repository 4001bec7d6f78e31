//! Client-side pacing that keeps us under Microsoft's published limits (graph.md §3)
//! instead of discovering them through 429s: token buckets per tenant for identity
//! resource units and writes, Intune requests and writes, and per mailbox for Outlook,
//! where at most four requests may be in flight. The Exchange admin API has no published
//! limit: its rate is found per tenant by trying ([`Adaptive`]).

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
    /// Exchange admin API calls per second per tenant to start from (undocumented, so
    /// cautious); the rate then follows what the tenant answers.
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

/// The rate of a limit Microsoft does not publish, found by trying (AWS SDKs' adaptive
/// retry mode; TCP's slow start and CUBIC). From a cautious start every clean answer adds
/// a call per second, so under full demand the rate doubles each second, until the first
/// 429. Then the rate is cut to `BETA` times where it was throttled and regrows along a
/// cubic that is back at that rate after `REGROW_S` and probes beyond it. A 429's
/// Retry-After holds the tenant's whole lane; answers to calls sent before a cut do not
/// cut again. Rates and times are in Microsoft seconds (`Limits::time_scale`).
#[derive(Debug)]
struct Adaptive {
    /// Calls per Microsoft second now.
    rate: f64,
    /// Where it was last throttled; `None` while still in slow start.
    ceiling: Option<f64>,
    /// The last cut: the cubic's origin.
    cut_at: Instant,
    tokens: f64,
    at: Instant,
    hold_until: Option<Instant>,
    /// When a caller last had to wait for the rate (not for a Retry-After): the rate only
    /// grows while it is what holds calls back, so light use never claims a rate it never
    /// tried.
    limited_at: Option<Instant>,
}

const BETA: f64 = 0.7;
const REGROW_S: f64 = 6.0;
const MIN_RATE: f64 = 1.0;
const MAX_RATE: f64 = 5_000.0;

impl Adaptive {
    fn new(rate: f64, now: Instant) -> Self {
        let rate = rate.clamp(MIN_RATE, MAX_RATE);
        Self { rate, ceiling: None, cut_at: now, tokens: rate, at: now, hold_until: None, limited_at: None }
    }

    /// Starts from a rate learned before: at its ceiling, probing beyond it.
    fn learned(rate: f64, now: Instant, scale: f64) -> Self {
        let mut a = Self::new(rate, now);
        a.ceiling = Some(a.rate);
        a.cut_at = now.checked_sub(Duration::from_secs_f64(REGROW_S * scale)).unwrap_or(now);
        a
    }

    /// Whether a caller waited for the rate within the last (Microsoft) second.
    fn limiting(&self, now: Instant, scale: f64) -> bool {
        self.limited_at.is_some_and(|at| now.saturating_duration_since(at).as_secs_f64() <= scale)
    }

    fn current(&mut self, now: Instant, scale: f64) -> f64 {
        if let Some(ceiling) = self.ceiling {
            let t = now.saturating_duration_since(self.cut_at).as_secs_f64() / scale;
            let c = ceiling * (1.0 - BETA) / REGROW_S.powi(3);
            // Never more than twice the last ceiling before another 429 says otherwise.
            let cubic = (c * (t - REGROW_S).powi(3) + ceiling).clamp(MIN_RATE, (2.0 * ceiling).min(MAX_RATE));
            if cubic <= self.rate || self.limiting(now, scale) {
                self.rate = cubic;
            }
        }
        self.rate
    }

    /// Takes a call now, or says how long until one may go.
    fn take(&mut self, now: Instant, scale: f64) -> Option<Duration> {
        if let Some(until) = self.hold_until.filter(|u| *u > now) {
            return Some(until - now);
        }
        let rate = self.current(now, scale);
        // A second's worth of calls may go at once.
        let capacity = rate.max(1.0);
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() / scale * rate).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            self.limited_at = Some(now);
            Some(Duration::from_secs_f64((1.0 - self.tokens) / rate * scale))
        }
    }

    fn clean(&mut self, now: Instant, scale: f64) {
        if self.ceiling.is_none() && self.limiting(now, scale) {
            self.rate = (self.rate + 1.0).min(MAX_RATE);
        }
    }

    fn throttled(&mut self, sent: Instant, retry_after: Option<Duration>, now: Instant, scale: f64) {
        if let Some(wait) = retry_after {
            self.hold_until = Some(self.hold_until.map_or(now + wait, |h| h.max(now + wait)));
        }
        if sent < self.cut_at && self.ceiling.is_some() {
            return;
        }
        let rate = self.current(now, scale);
        self.ceiling = Some(rate);
        self.rate = (rate * BETA).max(MIN_RATE);
        self.cut_at = now;
        self.tokens = self.tokens.min(0.0);
    }
}

/// What a paced call's answer says about an adaptive lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not throttled (any status but 429 or 503 with Retry-After).
    Clean,
    Throttled(Option<Duration>),
}

pub struct Pacer {
    limits: Limits,
    buckets: Mutex<HashMap<String, Bucket>>,
    outlook: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The Exchange lane of each tenant (by directory id).
    exchange: Mutex<HashMap<String, Adaptive>>,
}

impl Pacer {
    pub fn new(limits: Limits) -> Self {
        Self { limits, buckets: Mutex::new(HashMap::new()), outlook: Mutex::new(HashMap::new()), exchange: Mutex::new(HashMap::new()) }
    }

    fn scale(&self) -> f64 {
        if self.limits.time_scale > 0.0 { self.limits.time_scale } else { 1.0 }
    }

    /// Starts a tenant's Exchange lane from a rate learned before (calls per second), so a
    /// restart does not start from the cautious default.
    pub fn seed_exchange(&self, tenant: &str, per_s: f64) {
        if per_s.is_finite() && per_s > 0.0 {
            let a = Adaptive::learned(per_s, Instant::now(), self.scale());
            self.exchange.lock().unwrap_or_else(|e| e.into_inner()).insert(tenant.to_string(), a);
        }
    }

    /// The Exchange rate each tenant is at now, calls per second, by directory id.
    pub fn exchange_rates(&self) -> Vec<(String, f64)> {
        let now = Instant::now();
        let scale = self.scale();
        let mut m = self.exchange.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, f64)> = m.iter_mut().map(|(t, a)| (t.clone(), a.current(now, scale))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Tells an adaptive lane how a call sent at `sent` was answered.
    pub fn answered(&self, tenant: &str, lane: &Lane, sent: Instant, answer: Answer) {
        if *lane != Lane::Exchange {
            return;
        }
        let mut m = self.exchange.lock().unwrap_or_else(|e| e.into_inner());
        let Some(a) = m.get_mut(tenant) else { return };
        match answer {
            Answer::Clean => a.clean(Instant::now(), self.scale()),
            Answer::Throttled(wait) => a.throttled(sent, wait, Instant::now(), self.scale()),
        }
    }

    /// Waits out a Retry-After an adaptive lane is holding, if any.
    pub async fn hold(&self, tenant: &str, lane: &Lane) {
        if *lane != Lane::Exchange {
            return;
        }
        loop {
            let until = self.exchange.lock().unwrap_or_else(|e| e.into_inner()).get(tenant).and_then(|a| a.hold_until);
            match until.map(|u| u.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero()) {
                Some(d) => tokio::time::sleep(d).await,
                None => return,
            }
        }
    }

    async fn draw_exchange(&self, tenant: &str) {
        loop {
            let wait = {
                let mut m = self.exchange.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                m.entry(tenant.to_string()).or_insert_with(|| Adaptive::new(self.limits.exchange_per_s, now)).take(now, self.scale())
            };
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
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
        for _ in 0..exchange as u32 {
            self.draw_exchange(tenant).await;
        }
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

    #[test]
    fn an_unpublished_limit_is_found_by_trying() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut a = Adaptive::new(20.0, t0);
        // Calls that never wait for the rate teach it nothing.
        for _ in 0..20 {
            assert_eq!(a.take(t0, 1.0), None);
            a.clean(t0, 1.0);
        }
        assert_eq!(a.current(t0, 1.0), 20.0);
        // Slow start: while callers wait for it, each clean answer adds a call per second.
        assert!(a.take(t0, 1.0).is_some(), "the 21st call in a second waits");
        for _ in 0..30 {
            a.clean(at(0.5), 1.0);
        }
        assert_eq!(a.current(at(1.0), 1.0), 50.0);
        // A 429 cuts to 70 % and holds the lane for its Retry-After.
        a.throttled(at(0.9), Some(Duration::from_millis(500)), at(1.0), 1.0);
        assert!((a.current(at(1.0), 1.0) - 35.0).abs() < 1e-9);
        assert_eq!(a.take(at(1.2), 1.0), Some(Duration::from_millis(300)), "held until the Retry-After has passed");
        // Answers to calls sent before the cut do not cut again.
        a.throttled(at(0.95), None, at(1.05), 1.0);
        assert_eq!((a.ceiling, a.cut_at), (Some(50.0), at(1.0)), "one cut per round of calls");
        // Clean answers no longer add: while callers wait for it, the cubic regrows, back at
        // the ceiling after REGROW_S…
        a.limited_at = Some(at(1.0 + REGROW_S));
        a.clean(at(1.0 + REGROW_S), 1.0);
        let mid = a.current(at(1.0 + REGROW_S / 2.0), 1.0);
        assert!(mid > 45.0 && mid < 50.0, "concave on the way back: {mid}");
        assert!((a.current(at(1.0 + REGROW_S), 1.0) - 50.0).abs() < 1e-9);
        // …then probes above it, never past twice the ceiling…
        a.limited_at = Some(at(1.0 + REGROW_S + 3.0));
        assert!(a.current(at(1.0 + REGROW_S + 3.0), 1.0) > 50.0);
        a.limited_at = Some(at(1.0 + 10.0 * REGROW_S));
        assert_eq!(a.current(at(1.0 + 10.0 * REGROW_S), 1.0), 100.0);
        // …and not at all while nobody waits for it.
        assert_eq!(a.current(at(1.0 + 20.0 * REGROW_S), 1.0), 100.0);
        let mut idle = Adaptive::learned(40.0, t0, 1.0);
        assert_eq!(idle.current(at(30.0), 1.0), 40.0, "a rate nobody waited for is not raised");
        // A new 429 from a call sent after the cut cuts again.
        a.throttled(at(70.0), None, at(70.1), 1.0);
        assert!((a.current(at(70.1), 1.0) - 70.0).abs() < 1e-9);
    }

    #[test]
    fn a_learned_rate_starts_at_its_ceiling_and_time_is_microsofts() {
        let t0 = Instant::now();
        let mut a = Adaptive::learned(60.0, t0, 0.1);
        assert!((a.current(t0, 0.1) - 60.0).abs() < 1e-9, "no slow start after a restart");
        // At a time scale of 0.1, one real second is ten of Microsoft's.
        a.throttled(t0, None, t0, 0.1);
        let later = t0 + Duration::from_secs_f64(REGROW_S * 0.1);
        a.limited_at = Some(later);
        let back = a.current(later, 0.1);
        assert!((back - 60.0).abs() < 1e-6, "{back}");
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
