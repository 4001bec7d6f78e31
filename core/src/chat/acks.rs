//! How long each chat platform waited for an answer, for `/metrics`: platforms give up
//! on a slow one (Slack after 3 s, Teams' invokes after 5 s).

use std::time::Duration;

/// Upper bounds (seconds) of the acknowledgement latency histogram.
pub const ACK_BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 3.0];

/// How long Slack waited for each answer, as a Prometheus histogram.
#[derive(Debug, Default)]
pub struct AckLatency {
    /// Cumulative counts per bucket of `ACK_BUCKETS`, then +Inf.
    pub buckets: [std::sync::atomic::AtomicU64; 9],
    pub sum_micros: std::sync::atomic::AtomicU64,
}

impl AckLatency {
    pub fn record(&self, d: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = d.as_secs_f64();
        for (i, b) in ACK_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.buckets[8].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// The histogram in Prometheus text format.
    pub fn render(&self, name: &str, platform: &str) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = format!("# HELP {name} Time to acknowledge a {platform} request.\n# TYPE {name} histogram\n");
        for (i, b) in ACK_BUCKETS.iter().enumerate() {
            out.push_str(&format!("{name}_bucket{{le=\"{b}\"}} {}\n", self.buckets[i].load(Relaxed)));
        }
        let n = self.buckets[8].load(Relaxed);
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {n}\n{name}_sum {}\n{name}_count {n}\n", self.sum_micros.load(Relaxed) as f64 / 1e6));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_latency_renders_as_a_prometheus_histogram() {
        let h = AckLatency::default();
        h.record(Duration::from_millis(3));
        h.record(Duration::from_millis(40));
        let text = h.render("offboard_slack_ack_seconds", "Slack");
        assert!(text.contains("offboard_slack_ack_seconds_bucket{le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("offboard_slack_ack_seconds_bucket{le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("offboard_slack_ack_seconds_count 2"), "{text}");
        assert!(text.contains("Time to acknowledge a Slack request."), "{text}");
    }
}
