//! The simulator's time. Real mode follows the monotonic clock; manual mode moves only when
//! told, so throttling windows, conversion delays and the 30-day bin are exact in tests.
//! Either mode can jump forward (`advance`) to reach a deleted user's purge or a delta
//! link's expiry without waiting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

#[derive(Clone)]
pub struct SimClock {
    inner: Arc<Inner>,
}

struct Inner {
    origin: Instant,
    manual: bool,
    offset: Mutex<Duration>,
    wall_origin: DateTime<Utc>,
}

impl SimClock {
    pub fn real() -> Self {
        Self::new(false, Utc::now())
    }

    /// Starts at `wall` and stands still until `advance` is called.
    pub fn manual(wall: DateTime<Utc>) -> Self {
        Self::new(true, wall)
    }

    fn new(manual: bool, wall_origin: DateTime<Utc>) -> Self {
        Self { inner: Arc::new(Inner { origin: Instant::now(), manual, offset: Mutex::new(Duration::ZERO), wall_origin }) }
    }

    pub fn is_manual(&self) -> bool {
        self.inner.manual
    }

    /// Time since the simulator started.
    pub fn now(&self) -> Duration {
        let offset = *self.inner.offset.lock().expect("clock lock");
        if self.inner.manual { offset } else { self.inner.origin.elapsed() + offset }
    }

    pub fn advance(&self, by: Duration) {
        *self.inner.offset.lock().expect("clock lock") += by;
    }

    pub fn wall(&self) -> DateTime<Utc> {
        self.wall_at(self.now())
    }

    pub fn wall_at(&self, at: Duration) -> DateTime<Utc> {
        self.inner.wall_origin + chrono::Duration::from_std(at).unwrap_or_default()
    }

    /// Waits `d` of simulated time: a real sleep in real mode, nothing in manual mode.
    pub async fn sleep(&self, d: Duration) {
        if !self.inner.manual && !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}
