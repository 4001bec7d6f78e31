//! Microsoft's documented throttling (graph.md §3) as token buckets: identity resource
//! units by tenant size and identity writes per app and tenant, Intune writes, Outlook per
//! mailbox with its 4-request concurrency cap, and device writes. Every window is scaled by
//! the time-dilation factor, so a test can reach a limit quickly with the same ratios.
//!
//! A request sent before an earlier Retry-After expired is an *early retry*: it is counted
//! and answered with another 429 for the time still to wait, as Microsoft's Dev Proxy does.

use std::collections::HashMap;
use std::time::Duration;

use crate::world::Tier;

#[derive(Debug, Clone)]
pub struct Limits {
    pub ru_small: f64,
    pub ru_medium: f64,
    pub ru_large: f64,
    pub ru_window: f64,
    pub writes: f64,
    pub writes_window: f64,
    pub tenant_writes: f64,
    pub tenant_writes_window: f64,
    pub intune_writes: f64,
    pub intune_all: f64,
    pub intune_window: f64,
    pub outlook: f64,
    pub outlook_window: f64,
    pub outlook_concurrency: usize,
    pub device_writes: f64,
    pub device_writes_window: f64,
    pub device_writes_per_device: f64,
    pub device_writes_per_device_window: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ru_small: 3_500.0,
            ru_medium: 5_000.0,
            ru_large: 8_000.0,
            ru_window: 10.0,
            writes: 3_000.0,
            writes_window: 150.0,
            tenant_writes: 18_000.0,
            tenant_writes_window: 300.0,
            intune_writes: 100.0,
            intune_all: 1_000.0,
            intune_window: 20.0,
            outlook: 10_000.0,
            outlook_window: 600.0,
            outlook_concurrency: 4,
            device_writes: 3_000.0,
            device_writes_window: 150.0,
            device_writes_per_device: 25.0,
            device_writes_per_device_window: 10.0,
        }
    }
}

/// What a request costs and which limits it falls under.
#[derive(Debug, Clone)]
pub enum Cost {
    /// Directory reads and writes: resource units, plus one write when `write`.
    Identity {
        ru: u32,
        write: bool,
    },
    /// Entra device writes (PATCH /devices/{id}).
    Device {
        device: String,
    },
    Intune {
        write: bool,
    },
    Outlook {
        mailbox: String,
    },
    None,
}

#[derive(Debug, Clone)]
pub struct Throttled {
    /// Seconds to wait, decimal.
    pub retry_after: f64,
    pub scope: String,
    pub information: &'static str,
    pub early: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Admitted {
    pub resource_units: Option<u32>,
    /// Share of the tightest identity limit used, sent once above 0.8.
    pub limit_percentage: Option<f64>,
}

struct Bucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Duration,
}

impl Bucket {
    fn new(capacity: f64, window: f64, now: Duration) -> Self {
        Self { capacity, tokens: capacity, per_sec: capacity / window, last: now }
    }

    fn refill(&mut self, now: Duration) {
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(self.capacity);
        self.last = now;
    }

    /// Seconds until `cost` tokens are there; zero when they are now.
    fn wait(&self, cost: f64) -> f64 {
        if self.tokens >= cost { 0.0 } else { (cost - self.tokens) / self.per_sec }
    }
}

/// How long a 429 takes to reach its client and be read, at the least.
const ANSWER_TRANSIT: Duration = Duration::from_millis(1);

pub struct Throttle {
    pub limits: Limits,
    pub dilation: f64,
    pub enabled: bool,
    /// Off: 429s carry no Retry-After, so no retry can be early.
    pub send_retry_after: bool,
    buckets: HashMap<String, Bucket>,
    blocked_until: HashMap<String, Duration>,
    /// The batch envelope whose item set a block: later items of the same envelope were
    /// sent before the client could have seen the Retry-After, so they are not early.
    blocked_in: HashMap<String, u64>,
    envelope: Option<u64>,
    envelopes: u64,
    in_flight: HashMap<String, usize>,
    pub throttled: u64,
    pub early_retries: u64,
    /// Admitted identity writes and Intune writes: what a workload cost against the limits.
    pub identity_writes: u64,
    pub intune_writes: u64,
    /// Identity resource units admitted.
    pub identity_ru: u64,
    /// Exchange calls answered 429 by a tenant's hidden limit.
    pub exchange_throttled: u64,
    /// When the 429 that set each Exchange block was answered: a call sent before it could
    /// not have known, so it is throttled but not early.
    answered: HashMap<String, Duration>,
}

impl Throttle {
    pub fn new(limits: Limits, dilation: f64, enabled: bool) -> Self {
        Self {
            limits,
            dilation,
            enabled,
            send_retry_after: true,
            buckets: HashMap::new(),
            blocked_until: HashMap::new(),
            blocked_in: HashMap::new(),
            envelope: None,
            envelopes: 0,
            in_flight: HashMap::new(),
            throttled: 0,
            early_retries: 0,
            identity_writes: 0,
            intune_writes: 0,
            identity_ru: 0,
            exchange_throttled: 0,
            answered: HashMap::new(),
        }
    }

    /// Admits or throttles one Exchange admin API call against the tenant's hidden limit
    /// (`per_s` calls per Microsoft second, a second's worth of burst). `sent` is when the
    /// call arrived, before its simulated latency; `now` when it is processed.
    pub fn admit_exchange(&mut self, tenant: &str, per_s: f64, sent: Duration, now: Duration) -> Result<(), Throttled> {
        if !self.enabled {
            return Ok(());
        }
        let key = format!("exo|{tenant}");
        let throttled = |retry_after: f64, early: bool| Throttled {
            retry_after,
            scope: format!("Exchange/{tenant}"),
            information: "ExchangeAdminApiBudgetExceeded",
            early,
        };
        if let Some(until) = self.blocked_until.get(&key)
            && now < *until
        {
            // The answer takes a moment to reach its client and be read; a call that arrived
            // within it was sent by a client that could not yet know.
            let early = self.answered.get(&key).is_some_and(|answered| sent >= *answered + ANSWER_TRANSIT);
            self.early_retries += early as u64;
            self.throttled += 1;
            self.exchange_throttled += 1;
            return Err(throttled((*until - now).as_secs_f64(), early));
        }
        let d = self.dilation;
        let b = self.buckets.entry(key.clone()).or_insert_with(|| Bucket::new(per_s, d, now));
        b.refill(now);
        let wait = b.wait(1.0);
        if wait > 0.0 {
            let wait = (wait * 1000.0).ceil().max(1.0) / 1000.0;
            if self.send_retry_after {
                self.blocked_until.insert(key.clone(), now + Duration::from_secs_f64(wait));
                self.answered.insert(key, now);
            }
            self.throttled += 1;
            self.exchange_throttled += 1;
            return Err(throttled(wait, false));
        }
        b.tokens -= 1.0;
        Ok(())
    }

    /// The items admitted until [`Throttle::end_envelope`] arrived in one `$batch`.
    pub fn begin_envelope(&mut self) {
        self.envelopes += 1;
        self.envelope = Some(self.envelopes);
    }

    pub fn end_envelope(&mut self) {
        self.envelope = None;
    }

    /// Admits or throttles one request by `app` in `tenant` at `now`.
    pub fn admit(&mut self, app: &str, tenant: &str, tier: Tier, cost: &Cost, now: Duration) -> Result<Admitted, Throttled> {
        if !self.enabled {
            return Ok(Admitted { resource_units: matches!(cost, Cost::Identity { .. }).then_some(1), limit_percentage: None });
        }
        let l = self.limits.clone();
        let d = self.dilation;
        // (key, capacity, window, cost, information, scope)
        let mut checks: Vec<(String, f64, f64, f64, &'static str, String)> = Vec::new();
        let scope = format!("Tenant_Application/ReadWrite/{app}/{tenant}");
        let mut ru_out = None;
        match cost {
            Cost::Identity { ru, write } => {
                let cap = match tier {
                    Tier::S => l.ru_small,
                    Tier::M => l.ru_medium,
                    Tier::L => l.ru_large,
                };
                ru_out = Some(*ru);
                checks.push((format!("ru|{app}|{tenant}"), cap, l.ru_window, f64::from(*ru), "ResourceUnitLimitExceeded", scope.clone()));
                if *write {
                    checks.push((format!("w|{app}|{tenant}"), l.writes, l.writes_window, 1.0, "WriteLimitExceeded", scope.clone()));
                    checks.push((
                        format!("tw|{tenant}"),
                        l.tenant_writes,
                        l.tenant_writes_window,
                        1.0,
                        "WriteLimitExceeded",
                        format!("Tenant/ReadWrite/{tenant}"),
                    ));
                }
            }
            Cost::Device { device } => {
                checks.push((format!("dw|{app}|{tenant}"), l.device_writes, l.device_writes_window, 1.0, "WriteLimitExceeded", scope.clone()));
                checks.push((
                    format!("dd|{tenant}|{device}"),
                    l.device_writes_per_device,
                    l.device_writes_per_device_window,
                    1.0,
                    "WriteLimitExceeded",
                    scope.clone(),
                ));
            }
            Cost::Intune { write } => {
                checks.push((format!("ia|{app}|{tenant}"), l.intune_all, l.intune_window, 1.0, "RequestLimitExceeded", scope.clone()));
                if *write {
                    checks.push((format!("iw|{app}|{tenant}"), l.intune_writes, l.intune_window, 1.0, "WriteLimitExceeded", scope.clone()));
                }
            }
            Cost::Outlook { mailbox } => {
                checks.push((
                    format!("o|{app}|{mailbox}"),
                    l.outlook,
                    l.outlook_window,
                    1.0,
                    "MailboxRequestLimitExceeded",
                    format!("Mailbox/{app}/{mailbox}"),
                ));
            }
            Cost::None => return Ok(Admitted::default()),
        }
        for (key, ..) in &checks {
            if let Some(until) = self.blocked_until.get(key)
                && now < *until
            {
                let same_envelope = self.envelope.is_some() && self.blocked_in.get(key) == self.envelope.as_ref();
                if !same_envelope {
                    self.early_retries += 1;
                }
                self.throttled += 1;
                let (_, _, _, _, info, scope) = checks.iter().find(|c| &c.0 == key).expect("key").clone();
                return Err(Throttled { retry_after: (*until - now).as_secs_f64(), scope, information: info, early: !same_envelope });
            }
        }
        let mut worst: Option<(f64, usize)> = None;
        let mut used: f64 = 0.0;
        for (i, (key, cap, window, c, ..)) in checks.iter().enumerate() {
            let b = self.buckets.entry(key.clone()).or_insert_with(|| Bucket::new(*cap, window * d, now));
            b.refill(now);
            let w = b.wait(*c);
            if w > 0.0 && worst.is_none_or(|(ww, _)| w > ww) {
                worst = Some((w, i));
            }
            used = used.max(1.0 - (b.tokens - c) / b.capacity);
        }
        if let Some((wait, i)) = worst {
            let (key, _, _, _, info, scope) = checks[i].clone();
            // Whole milliseconds, at least one: Graph sends decimals such as 2.128.
            let wait = (wait * 1000.0).ceil().max(1.0) / 1000.0;
            if self.send_retry_after {
                self.blocked_until.insert(key.clone(), now + Duration::from_secs_f64(wait));
                match self.envelope {
                    Some(e) => self.blocked_in.insert(key, e),
                    None => self.blocked_in.remove(&key),
                };
            }
            self.throttled += 1;
            return Err(Throttled { retry_after: wait, scope, information: info, early: false });
        }
        for (key, _, _, c, ..) in &checks {
            self.buckets.get_mut(key).expect("bucket").tokens -= c;
        }
        match cost {
            Cost::Identity { ru, write } => {
                self.identity_ru += u64::from(*ru);
                self.identity_writes += u64::from(*write);
            }
            Cost::Intune { write: true } => self.intune_writes += 1,
            _ => {}
        }
        Ok(Admitted { resource_units: ru_out, limit_percentage: (used > 0.8).then_some(used) })
    }

    /// Takes one of a mailbox's concurrent slots; `false` when all four are busy.
    pub fn enter(&mut self, key: &str) -> bool {
        if !self.enabled {
            return true;
        }
        let n = self.in_flight.entry(key.to_string()).or_default();
        if *n >= self.limits.outlook_concurrency {
            self.throttled += 1;
            return false;
        }
        *n += 1;
        true
    }

    pub fn leave(&mut self, key: &str) {
        if let Some(n) = self.in_flight.get_mut(key) {
            *n = n.saturating_sub(1);
        }
    }
}
