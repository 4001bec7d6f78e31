//! Latency and injected faults, in the manner of Dev Proxy's latency and random-error
//! plugins, but with Graph's real error codes and decimal Retry-After.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Latency {
    #[default]
    None,
    Fixed {
        ms: u64,
    },
    Uniform {
        min_ms: u64,
        max_ms: u64,
    },
}

/// Shares of requests (0.0–1.0) that fail in each way.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRates {
    /// 500, 502, 503 or 504 before anything happens.
    pub server_error: f64,
    /// The connection drops before anything happens.
    pub reset: f64,
    /// 429 with no Retry-After header.
    pub throttle_without_retry_after: f64,
    /// The change is applied, then the connection drops: the caller cannot know it worked.
    pub drop_after_apply: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    ServerError(u16),
    Reset,
    ThrottleWithoutRetryAfter,
    DropAfterApply,
}

pub struct Faults {
    rates: Mutex<(FaultRates, StdRng)>,
    latency: Mutex<(Latency, StdRng)>,
}

impl Faults {
    pub fn new(rates: FaultRates, latency: Latency) -> Self {
        let seed = rates.seed;
        Self { rates: Mutex::new((rates, StdRng::seed_from_u64(seed))), latency: Mutex::new((latency, StdRng::seed_from_u64(seed ^ 0x5eed))) }
    }

    pub fn set_rates(&self, rates: FaultRates) {
        let seed = rates.seed;
        *self.rates.lock().expect("faults") = (rates, StdRng::seed_from_u64(seed));
    }

    pub fn set_latency(&self, latency: Latency) {
        self.latency.lock().expect("latency").0 = latency;
    }

    pub fn rates(&self) -> FaultRates {
        self.rates.lock().expect("faults").0.clone()
    }

    pub fn roll(&self) -> Fault {
        let mut g = self.rates.lock().expect("faults");
        let (r, rng) = &mut *g;
        let total = r.server_error + r.reset + r.throttle_without_retry_after + r.drop_after_apply;
        if total <= 0.0 {
            return Fault::None;
        }
        let x: f64 = rng.random();
        let mut edge = r.server_error;
        if x < edge {
            return Fault::ServerError([500, 502, 503, 504][rng.random_range(0..4)]);
        }
        edge += r.reset;
        if x < edge {
            return Fault::Reset;
        }
        edge += r.throttle_without_retry_after;
        if x < edge {
            return Fault::ThrottleWithoutRetryAfter;
        }
        edge += r.drop_after_apply;
        if x < edge {
            return Fault::DropAfterApply;
        }
        Fault::None
    }

    /// One request's latency before dilation.
    pub fn delay(&self) -> Duration {
        let mut g = self.latency.lock().expect("latency");
        let (l, rng) = &mut *g;
        match l {
            Latency::None => Duration::ZERO,
            Latency::Fixed { ms } => Duration::from_millis(*ms),
            Latency::Uniform { min_ms, max_ms } => Duration::from_millis(rng.random_range(*min_ms..=(*max_ms).max(*min_ms))),
        }
    }
}
