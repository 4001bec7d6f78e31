//! Evidence of the calls made for one step or one discovery: Microsoft's request ids and
//! how many HTTP requests and round trips it took.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::transport::Replay;

#[derive(Debug, Default)]
pub struct Trace {
    request_ids: Mutex<Vec<String>>,
    requests: AtomicU64,
    once_sent: AtomicBool,
}

impl Trace {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn sent(&self, replay: Replay) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if replay == Replay::Once {
            self.once_sent.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a call that must not repeat has gone out: its effect needs a read-back.
    pub fn once_sent(&self) -> bool {
        self.once_sent.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, request_id: Option<&str>) {
        if let Some(id) = request_id.filter(|s| !s.is_empty()) {
            self.request_ids.lock().unwrap_or_else(|e| e.into_inner()).push(id.to_string());
        }
    }

    pub fn request_ids(&self) -> Vec<String> {
        self.request_ids.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// HTTP requests sent, retries included; a `$batch` counts once.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}
