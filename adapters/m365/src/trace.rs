//! Evidence of the calls made for one step or one discovery: Microsoft's request ids and
//! how many HTTP requests and round trips it took.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Trace {
    request_ids: Mutex<Vec<String>>,
    requests: AtomicU64,
}

impl Trace {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn sent(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
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
