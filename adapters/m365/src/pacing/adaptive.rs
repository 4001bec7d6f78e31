//! The Exchange admin API's lane: a rate Microsoft does not publish, found by trying.

use std::time::{Duration, Instant};

/// The rate of a limit Microsoft does not publish, found by trying (AWS SDKs' adaptive
/// retry mode; TCP's slow start and CUBIC). From a cautious start every clean answer adds
/// a call per second, so under full demand the rate doubles each second, until the first
/// 429; it never runs ahead of twice the calls actually sent in a second (RFC 7661), so
/// light use cannot claim a rate nobody tried. Then the rate is cut to `BETA` times where
/// it was throttled and regrows along a cubic that is back at that rate after `REGROW_S`
/// and probes beyond it. A 429's Retry-After holds the tenant's whole lane; answers to
/// calls sent before a cut do not cut again. Rates and times are in Microsoft seconds
/// (`Limits::time_scale`).
#[derive(Debug)]
pub(super) struct Adaptive {
    /// Calls per Microsoft second now.
    rate: f64,
    /// The configured rate it started from.
    start: f64,
    /// The most calls sent in one Microsoft second so far, and the second being counted.
    peak: f64,
    second: (Instant, f64),
    /// Where it was last throttled; `None` while still in slow start.
    pub(super) ceiling: Option<f64>,
    /// The last cut: the cubic's origin.
    pub(super) cut_at: Instant,
    pub(super) tokens: f64,
    at: Instant,
    pub(super) hold_until: Option<Instant>,
    /// When a caller last had to wait for the rate (not for a Retry-After): the rate only
    /// grows while it is what holds calls back, so light use never claims a rate it never
    /// tried.
    pub(super) limited_at: Option<Instant>,
    /// When the callers sent away to come back later are expected to have been served:
    /// bulk ones, and urgent ones.
    pub(super) promised_until: [Option<Instant>; 2],
}

const BETA: f64 = 0.7;
pub(super) const REGROW_S: f64 = 6.0;
const MIN_RATE: f64 = 1.0;
const MAX_RATE: f64 = 5_000.0;

impl Adaptive {
    pub(super) fn new(rate: f64, now: Instant) -> Self {
        let rate = rate.clamp(MIN_RATE, MAX_RATE);
        Self {
            rate,
            start: rate,
            peak: 0.0,
            second: (now, 0.0),
            ceiling: None,
            cut_at: now,
            tokens: rate,
            at: now,
            hold_until: None,
            limited_at: None,
            promised_until: [None; 2],
        }
    }

    /// Starts from a rate learned before: at its ceiling, probing beyond it.
    pub(super) fn learned(rate: f64, now: Instant, scale: f64) -> Self {
        let mut a = Self::new(rate, now);
        a.ceiling = Some(a.rate);
        a.cut_at = now.checked_sub(Duration::from_secs_f64(REGROW_S * scale)).unwrap_or(now);
        a
    }

    /// Whether a caller waited for the rate within the last (Microsoft) second.
    fn limiting(&self, now: Instant, scale: f64) -> bool {
        self.limited_at.is_some_and(|at| now.saturating_duration_since(at).as_secs_f64() <= scale)
    }

    pub(super) fn current(&mut self, now: Instant, scale: f64) -> f64 {
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
    pub(super) fn take(&mut self, now: Instant, scale: f64) -> Option<Duration> {
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
            self.sent(now, scale);
            None
        } else {
            self.limited_at = Some(now);
            Some(Duration::from_secs_f64((1.0 - self.tokens) / rate * scale))
        }
    }

    /// How long one more call would wait behind a Retry-After and `queued` callers
    /// sleeping here.
    pub(super) fn backlog(&mut self, queued: f64, now: Instant, scale: f64) -> Duration {
        let held = self.hold_until.map(|u| u.saturating_duration_since(now)).unwrap_or_default();
        let rate = self.current(now, scale);
        let tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() / scale * rate).min(rate.max(1.0));
        held + Duration::from_secs_f64(((queued + 1.0 - tokens) / rate * scale).max(0.0))
    }

    /// Counts a call sent, by Microsoft second.
    fn sent(&mut self, now: Instant, scale: f64) {
        let (from, n) = self.second;
        let elapsed = now.saturating_duration_since(from).as_secs_f64() / scale;
        if elapsed >= 1.0 {
            self.peak = self.peak.max(n / elapsed);
            self.second = (now, 0.0);
        }
        self.second.1 += 1.0;
    }

    /// The most calls per second actually sent: in a past second, or so far in this one.
    fn used(&self) -> f64 {
        self.peak.max(self.second.1)
    }

    pub(super) fn clean(&mut self, now: Instant, scale: f64) {
        if self.ceiling.is_none() && self.limiting(now, scale) {
            self.rate = (self.rate + 1.0).min(2.0 * self.used()).max(self.rate).min(MAX_RATE);
        }
    }

    /// What it has learned: the rate it is at once a 429 has given it a ceiling; before
    /// that, no more than the calls actually sent in a second answered cleanly (or the
    /// configured start), since a rate nobody sent at says nothing about the tenant.
    pub(super) fn learned_rate(&mut self, now: Instant, scale: f64) -> f64 {
        let rate = self.current(now, scale);
        match self.ceiling {
            Some(_) => rate,
            None => rate.min(self.used().max(self.start)),
        }
    }

    pub(super) fn throttled(&mut self, sent: Instant, retry_after: Option<Duration>, now: Instant, scale: f64) {
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
