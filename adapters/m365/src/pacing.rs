//! Client-side pacing that keeps us under Microsoft's published limits (graph.md §3)
//! instead of discovering them through 429s: token buckets per tenant for identity
//! resource units and writes, Intune requests and writes, and per mailbox for Outlook,
//! where at most four requests may be in flight. The Exchange admin API has no published
//! limit: its rate is found per tenant by trying ([`Adaptive`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use adaptive::Adaptive;

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
    /// When the callers sent away to come back later are expected to have been served:
    /// bulk ones, and urgent ones.
    promised_until: [Option<Instant>; 2],
}

impl Bucket {
    fn new(capacity: f64, window: Duration) -> Self {
        Self { tokens: capacity, capacity, per_sec: capacity / window.as_secs_f64(), at: Instant::now(), promised_until: [None; 2] }
    }

    fn refill(&mut self, now: Instant) {
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.per_sec).min(self.capacity);
        self.at = now;
    }

    /// What a caller must leave in the bucket after taking `n`, keeping `reserve` of it.
    fn floor(&self, n: f64, reserve: f64) -> f64 {
        (self.capacity * reserve).min(self.capacity - n).max(0.0)
    }

    /// Takes `n` now, leaving `reserve` of the capacity, or says how long until it can.
    fn take(&mut self, n: f64, reserve: f64) -> Option<Duration> {
        self.refill(Instant::now());
        let need = n + self.floor(n, reserve);
        if self.tokens >= need {
            self.tokens -= n;
            None
        } else {
            Some(Duration::from_secs_f64((need - self.tokens) / self.per_sec))
        }
    }

    /// How long `n` more would wait behind `queued` tokens that callers sleeping here want.
    fn backlog(&mut self, n: f64, reserve: f64, queued: f64, now: Instant) -> Duration {
        self.refill(now);
        Duration::from_secs_f64(((queued + n + self.floor(n, reserve) - self.tokens) / self.per_sec).max(0.0))
    }
}

/// The share of the identity and Intune request budgets that work nobody is waiting for
/// (a step with patience) leaves untouched, so a lockout or a preview never queues behind
/// a bulk run. Budgets neither uses (Intune writes, a leaver's own mailbox) keep none.
const RESERVE: f64 = 0.05;
/// The share that lockouts and previews leave in turn to emergency lockouts, so one
/// emergency never queues behind the lockouts of a thousand leavers approved before it.
const EMERGENCY_RESERVE: f64 = 0.01;

/// How a caller may be made to wait for a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// An emergency lockout: waits for nobody, and may use every reserve.
    First,
    /// Someone is waiting for the answer now (a lockout, a preview): waits as long as it
    /// takes, and may use the [`RESERVE`] that bulk work leaves.
    Waits,
    /// A lockout (not an emergency) on its first try: as [`Patience::Waits`], but a call
    /// that would wait longer than this behind the urgent callers already waiting is sent
    /// back unsent ([`Paced`]), so the step's thread says what it waits for. It comes back
    /// among the urgent callers sent away, never behind bulk work.
    Lockout(Duration),
    /// Work nobody waits for now: a call that would wait longer than this behind the
    /// callers already waiting is sent back unsent ([`Paced`]).
    Queue(Duration),
}

impl Patience {
    /// The share of each reserved budget this caller must leave.
    fn reserve(self) -> f64 {
        match self {
            Self::First => 0.0,
            Self::Waits | Self::Lockout(_) => EMERGENCY_RESERVE,
            Self::Queue(_) => RESERVE,
        }
    }

    /// Whether the caller goes before bulk work: it waits only behind other urgent callers.
    fn urgent(self) -> bool {
        !matches!(self, Self::Queue(_))
    }
}

/// When a caller sent away for `wait` should come back: after the ones of its kind (bulk,
/// or urgent) sent away before it, each allowed the time its own tokens take, so they do
/// not all return at once.
fn promise(promised_until: &mut [Option<Instant>; 2], urgent: bool, now: Instant, wait: Duration, takes: Duration) -> Duration {
    let until = &mut promised_until[urgent as usize];
    let at = until.filter(|p| *p > now + wait).unwrap_or(now + wait);
    *until = Some(at + takes);
    at - now
}

/// What a paced call's answer says about an adaptive lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not throttled (any status but 429 or 503 with Retry-After).
    Clean,
    Throttled(Option<Duration>),
}

/// A budget of Microsoft's that a request can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    IdentityRequests,
    IdentityWrites,
    IntuneRequests,
    IntuneWrites,
    Exchange,
    Outlook,
}

impl Budget {
    /// Completes "waiting for …" in a step's status line.
    pub fn waiting_for(self) -> &'static str {
        match self {
            Self::IdentityRequests => "room under Entra ID's request limit for this tenant",
            Self::IdentityWrites => "room under Entra ID's write limit for this tenant",
            Self::IntuneRequests => "room under Intune's request limit for this tenant",
            Self::IntuneWrites => "room under Intune's write limit for this tenant",
            Self::Exchange => "room under the Exchange rate this tenant allows",
            Self::Outlook => "room under Outlook's limit for this mailbox",
        }
    }
}

/// A request would have waited longer than its caller's patience for a budget: nothing
/// was taken, and the caller should come back after `wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paced {
    pub wait: Duration,
    pub budget: Budget,
}

/// What one request draws, over all its lanes.
#[derive(Default)]
struct Need<'a> {
    ru: f64,
    writes: f64,
    intune: f64,
    intune_writes: f64,
    exchange: f64,
    mailboxes: Vec<(&'a str, u32)>,
}

impl<'a> Need<'a> {
    fn of(lane: &'a Lane) -> Self {
        let items = match lane {
            Lane::Batch(items) => items.as_slice(),
            one => std::slice::from_ref(one),
        };
        let mut n = Self::default();
        for lane in items {
            match lane {
                Lane::Identity { ru, write } => {
                    n.ru += *ru as f64;
                    n.writes += *write as u8 as f64;
                }
                Lane::Intune { write } => {
                    n.intune += 1.0;
                    n.intune_writes += *write as u8 as f64;
                }
                Lane::Outlook { mailbox } => match n.mailboxes.iter_mut().find(|(m, _)| m == mailbox) {
                    Some((_, k)) => *k += 1,
                    None => n.mailboxes.push((mailbox, 1)),
                },
                Lane::Exchange => n.exchange += 1.0,
                Lane::Unpaced | Lane::Batch(_) => {}
            }
        }
        n
    }
}

pub struct Pacer {
    limits: Limits,
    buckets: Mutex<HashMap<String, Bucket>>,
    outlook: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The Exchange lane of each tenant (by directory id).
    exchange: Mutex<HashMap<String, Adaptive>>,
    /// Tokens wanted by the callers sleeping on each bucket (by key) now: what a newcomer
    /// would queue behind.
    queued: Arc<Mutex<HashMap<String, f64>>>,
}

/// Where the callers sleeping on bucket `key` are counted, by kind.
fn sleeper_key(key: &str, urgent: bool) -> String {
    if urgent { format!("{key}!") } else { key.to_string() }
}

/// One caller sleeping on a bucket, counted until it is served or gives up.
struct Sleeping {
    queued: Arc<Mutex<HashMap<String, f64>>>,
    key: String,
    n: f64,
}

impl Sleeping {
    fn new(queued: &Arc<Mutex<HashMap<String, f64>>>, key: &str, n: f64) -> Self {
        *queued.lock().unwrap_or_else(|e| e.into_inner()).entry(key.to_string()).or_default() += n;
        Self { queued: queued.clone(), key: key.to_string(), n }
    }
}

impl Drop for Sleeping {
    fn drop(&mut self) {
        let mut m = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = m.get_mut(&self.key) {
            *q -= self.n;
            if *q <= 1e-9 {
                m.remove(&self.key);
            }
        }
    }
}

impl Pacer {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
            outlook: Mutex::new(HashMap::new()),
            exchange: Mutex::new(HashMap::new()),
            queued: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Tokens wanted by the callers sleeping on a bucket that a newcomer waits behind: the
    /// urgent ones only, for an urgent newcomer; all of them for bulk work.
    fn ahead(&self, key: &str, urgent: bool) -> f64 {
        let m = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        let of = |k: &str| m.get(k).copied().unwrap_or(0.0);
        of(&sleeper_key(key, true)) + if urgent { 0.0 } else { of(&sleeper_key(key, false)) }
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

    /// The Exchange rate each tenant has learned, calls per second, by directory id: what
    /// `/metrics` shows and a restart starts from.
    pub fn exchange_rates(&self) -> Vec<(String, f64)> {
        let now = Instant::now();
        let scale = self.scale();
        let mut m = self.exchange.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, f64)> = m.iter_mut().map(|(t, a)| (t.clone(), a.learned_rate(now, scale))).collect();
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

    fn exchange_lane<'m>(&self, m: &'m mut HashMap<String, Adaptive>, tenant: &str, now: Instant) -> &'m mut Adaptive {
        m.entry(tenant.to_string()).or_insert_with(|| Adaptive::new(self.limits.exchange_per_s, now))
    }

    async fn draw_exchange(&self, tenant: &str, urgent: bool) {
        let key = sleeper_key(&format!("{tenant}/exchange"), urgent);
        let mut sleeping = None;
        loop {
            let wait = {
                let mut m = self.exchange.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                self.exchange_lane(&mut m, tenant, now).take(now, self.scale())
            };
            match wait {
                None => return,
                Some(d) => {
                    sleeping.get_or_insert_with(|| Sleeping::new(&self.queued, &key, 1.0));
                    tokio::time::sleep(d).await
                }
            }
        }
    }

    fn bucket<'m>(&self, m: &'m mut HashMap<String, Bucket>, key: &str, capacity: f64, window: Duration) -> &'m mut Bucket {
        m.entry(key.to_string()).or_insert_with(|| Bucket::new(capacity, window.mul_f64(self.limits.time_scale)))
    }

    async fn draw(&self, key: String, n: f64, capacity: f64, window: Duration, reserve: f64, urgent: bool) {
        if n <= 0.0 {
            return;
        }
        let n = n.min(capacity);
        let mut sleeping = None;
        loop {
            let wait = {
                let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
                self.bucket(&mut b, &key, capacity, window).take(n, reserve)
            };
            match wait {
                None => return,
                Some(d) => {
                    sleeping.get_or_insert_with(|| Sleeping::new(&self.queued, &sleeper_key(&key, urgent), n));
                    tokio::time::sleep(d).await
                }
            }
        }
    }

    /// The budget a request would wait longest for behind the callers already waiting, if
    /// that is longer than `within`; then its return is spread after earlier ones of its kind.
    /// Where a reserve puts urgent callers first, an urgent one waits only behind its kind.
    fn too_long(&self, tenant: &str, need: &Need<'_>, within: Duration, patience: Patience) -> Option<Paced> {
        let l = &self.limits;
        let now = Instant::now();
        let (urgent, kept) = (patience.urgent(), patience.reserve());
        // (wait, budget, bucket, tokens wanted)
        let mut worst: Option<(Duration, Budget, String, f64)> = None;
        {
            let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let buckets = [
                (Budget::IdentityRequests, "ru", need.ru, l.identity_ru_per_10s, 10, true),
                (Budget::IdentityWrites, "writes", need.writes, l.identity_writes_per_150s, 150, true),
                (Budget::IntuneRequests, "intune", need.intune, l.intune_per_20s, 20, true),
                (Budget::IntuneWrites, "intune-writes", need.intune_writes, l.intune_writes_per_20s, 20, false),
            ];
            for (budget, name, n, capacity, window, reserved) in buckets {
                if n <= 0.0 {
                    continue;
                }
                let key = format!("{tenant}/{name}");
                let queued = self.ahead(&key, urgent && reserved);
                let reserve = if reserved { kept } else { 0.0 };
                let wait = self.bucket(&mut b, &key, capacity, Duration::from_secs(window)).backlog(n.min(capacity), reserve, queued, now);
                if wait > within && worst.as_ref().is_none_or(|w| wait > w.0) {
                    worst = Some((wait, budget, key, n.min(capacity)));
                }
            }
            for (mailbox, n) in &need.mailboxes {
                let key = format!("{tenant}/outlook/{mailbox}");
                let queued = self.ahead(&key, false);
                let wait = self.bucket(&mut b, &key, l.outlook_per_10min, Duration::from_secs(600)).backlog(*n as f64, 0.0, queued, now);
                if wait > within && worst.as_ref().is_none_or(|w| wait > w.0) {
                    worst = Some((wait, Budget::Outlook, key, *n as f64));
                }
            }
            if let Some((wait, budget, key, n)) = worst {
                let bucket = b.get_mut(&key).expect("just looked at");
                let takes = Duration::from_secs_f64(n / bucket.per_sec);
                return Some(Paced { wait: promise(&mut bucket.promised_until, urgent, now, wait, takes), budget });
            }
        }
        if need.exchange > 0.0 {
            // The Exchange lane keeps no reserve: every caller waits behind every sleeper.
            let queued = self.ahead(&format!("{tenant}/exchange"), false);
            let mut m = self.exchange.lock().unwrap_or_else(|e| e.into_inner());
            let scale = self.scale();
            let lane = self.exchange_lane(&mut m, tenant, now);
            let wait = lane.backlog(queued, now, scale);
            if wait > within {
                let takes = Duration::from_secs_f64(scale / lane.current(now, scale));
                return Some(Paced { wait: promise(&mut lane.promised_until, urgent, now, wait, takes), budget: Budget::Exchange });
            }
        }
        None
    }

    /// Waits until the request fits its budgets; the permits (Outlook) are held while the
    /// request is in flight. A request with [`Patience::Queue`] or [`Patience::Lockout`]
    /// that would wait longer than that behind the callers already waiting takes nothing and
    /// is told when to come back. Each caller leaves its [`Patience`]'s reserve to the more
    /// urgent ones.
    pub async fn admit(&self, tenant: &str, lane: &Lane, patience: Patience) -> Result<Vec<OwnedSemaphorePermit>, Paced> {
        let l = &self.limits;
        let need = Need::of(lane);
        if let Patience::Queue(within) | Patience::Lockout(within) = patience
            && let Some(paced) = self.too_long(tenant, &need, within, patience)
        {
            return Err(paced);
        }
        let Need { ru, writes, intune, intune_writes, exchange, mailboxes } = need;
        let (reserve, urgent) = (patience.reserve(), patience.urgent());
        self.draw(format!("{tenant}/ru"), ru, l.identity_ru_per_10s, Duration::from_secs(10), reserve, urgent).await;
        self.draw(format!("{tenant}/writes"), writes, l.identity_writes_per_150s, Duration::from_secs(150), reserve, urgent).await;
        self.draw(format!("{tenant}/intune"), intune, l.intune_per_20s, Duration::from_secs(20), reserve, urgent).await;
        self.draw(format!("{tenant}/intune-writes"), intune_writes, l.intune_writes_per_20s, Duration::from_secs(20), 0.0, urgent).await;
        for _ in 0..exchange as u32 {
            self.draw_exchange(tenant, urgent).await;
        }
        let mut permits = Vec::new();
        for (mailbox, n) in mailboxes {
            self.draw(format!("{tenant}/outlook/{mailbox}"), n as f64, l.outlook_per_10min, Duration::from_secs(600), 0.0, urgent).await;
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
        Ok(permits)
    }
}

mod adaptive;
#[cfg(test)]
mod tests;
