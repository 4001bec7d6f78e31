//! The durable outbox: every event a chat adapter or notifier reacts to is written in the
//! same transaction as the state change it reports, and consumed from there. A consumer
//! that crashes resumes from its cursor, so live updates and notifications survive
//! restarts (delivery is at least once: consumers de-duplicate by `seq`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::run::{RunState, StepOutcome};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EventKind {
    RunRequested {
        emergency: bool,
    },
    ApprovalRecorded {
        approver: String,
        have: usize,
        need: usize,
    },
    ApprovalRefused {
        actor: String,
        reason: String,
    },
    RunApproved,
    RunRejected {
        by: String,
        reason: String,
    },
    RunExpired,
    ApprovalEscalated,
    RunScheduled {
        start_at_ms: i64,
    },
    RunStarted,
    StepStarted {
        key: String,
        attempt: i64,
    },
    StepRetrying {
        key: String,
        attempt: i64,
        error: String,
        retry_in_ms: i64,
    },
    /// The step looked and what it waits for is not there yet; it looks again later
    /// without holding a worker.
    StepWaiting {
        key: String,
        waiting_for: String,
        look_again_in_ms: i64,
    },
    StepFinished {
        key: String,
        outcome: StepOutcome,
    },
    RunStateChanged {
        state: RunState,
    },
    RunCancelled {
        by: String,
    },
    ScheduleFired {
        name: String,
        fire_at_ms: i64,
    },
    AuditCheckpoint {
        seq: i64,
        hash: String,
    },
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::RunRequested { .. } => "run_requested",
            Self::ApprovalRecorded { .. } => "approval_recorded",
            Self::ApprovalRefused { .. } => "approval_refused",
            Self::RunApproved => "run_approved",
            Self::RunRejected { .. } => "run_rejected",
            Self::RunExpired => "run_expired",
            Self::ApprovalEscalated => "approval_escalated",
            Self::RunScheduled { .. } => "run_scheduled",
            Self::RunStarted => "run_started",
            Self::StepStarted { .. } => "step_started",
            Self::StepRetrying { .. } => "step_retrying",
            Self::StepWaiting { .. } => "step_waiting",
            Self::StepFinished { .. } => "step_finished",
            Self::RunStateChanged { .. } => "run_state_changed",
            Self::RunCancelled { .. } => "run_cancelled",
            Self::ScheduleFired { .. } => "schedule_fired",
            Self::AuditCheckpoint { .. } => "audit_checkpoint",
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: i64,
    pub run_id: Option<String>,
    pub tenant: Option<String>,
    pub at: DateTime<Utc>,
    pub kind: EventKind,
}
