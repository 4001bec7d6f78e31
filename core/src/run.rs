//! Run and step states, step outcomes, and how a run's outcome follows from its steps.

use serde::{Deserialize, Serialize};

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(
    /// Where a run is. Approval moves a run to `Scheduled` (a start time was asked for) or
    /// `Approved` (released, waiting for the first worker); the first claimed step makes it
    /// `Running`.
    RunState {
        AwaitingApproval => "awaiting_approval",
        Approved => "approved",
        Scheduled => "scheduled",
        Running => "running",
        NeedsAttention => "needs_attention",
        Completed => "completed",
        CompletedWithWarnings => "completed_with_warnings",
        Failed => "failed",
        Cancelled => "cancelled",
        Rejected => "rejected",
        Expired => "expired",
    }
);

impl RunState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::CompletedWithWarnings | Self::Failed | Self::Cancelled | Self::Rejected | Self::Expired)
    }

    /// Steps of the run may be executing or may be released.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Approved | Self::Running | Self::NeedsAttention)
    }

    /// Only a run with every step confirmed is green.
    pub fn is_green(self) -> bool {
        self == Self::Completed
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::AwaitingApproval => "awaiting approval",
            Self::Approved => "approved",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::NeedsAttention => "needs attention",
            Self::Completed => "completed",
            Self::CompletedWithWarnings => "completed with warnings",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }
}

str_enum!(
    /// Where a step is. `Waiting` steps are not released yet or wait for their
    /// prerequisites; `Ready` ones may be claimed once `not_before` has passed.
    StepState {
        Waiting => "waiting",
        Ready => "ready",
        Running => "running",
        Succeeded => "succeeded",
        Skipped => "skipped",
        Failed => "failed",
        NeedsAttention => "needs_attention",
        Cancelled => "cancelled",
    }
);

impl StepState {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Skipped | Self::Failed | Self::Cancelled)
    }

    /// A dependent step may start after this.
    pub fn lets_dependents_run(self) -> bool {
        matches!(self, Self::Succeeded | Self::Skipped)
    }
}

/// How a step ended, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum StepOutcome {
    /// Done, and the effect was read back.
    Succeeded {
        /// What the read-back showed, in words.
        verified: String,
        #[serde(default)]
        request_ids: Vec<String>,
        /// What a person must still do by hand (the plan's `manual`): amber.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        left: Vec<String>,
    },
    /// Nothing to do, or not allowed to; `warning` shows it amber.
    Skipped { reason: String, warning: bool },
    /// Microsoft's error and the request id to quote to support.
    Failed {
        error: String,
        #[serde(default)]
        request_id: Option<String>,
    },
    /// The result of a non-idempotent step could not be confirmed: a human decides.
    NeedsAttention { reason: String },
}

impl StepOutcome {
    /// Done and read back, nothing left to do by hand.
    pub fn done(verified: impl Into<String>, request_ids: Vec<String>) -> Self {
        Self::Succeeded { verified: verified.into(), request_ids, left: Vec::new() }
    }

    pub fn state(&self) -> StepState {
        match self {
            Self::Succeeded { .. } => StepState::Succeeded,
            Self::Skipped { .. } => StepState::Skipped,
            Self::Failed { .. } => StepState::Failed,
            Self::NeedsAttention { .. } => StepState::NeedsAttention,
        }
    }

    pub fn is_warning(&self) -> bool {
        match self {
            Self::Skipped { warning, .. } => *warning,
            Self::Succeeded { left, .. } => !left.is_empty(),
            _ => false,
        }
    }

    pub fn summary(&self) -> &str {
        match self {
            Self::Succeeded { verified, .. } => verified,
            Self::Skipped { reason, .. } => reason,
            Self::Failed { error, .. } => error,
            Self::NeedsAttention { reason } => reason,
        }
    }
}

/// The run's end state once no step can progress. `None` while something can still run.
pub fn settle(steps: &[(StepState, bool)], cancelled: bool) -> Option<RunState> {
    if steps.iter().any(|(s, _)| matches!(s, StepState::Ready | StepState::Running)) {
        return None;
    }
    if steps.iter().any(|(s, _)| *s == StepState::NeedsAttention) {
        return Some(RunState::NeedsAttention);
    }
    if cancelled {
        return Some(RunState::Cancelled);
    }
    if steps.iter().any(|(s, _)| matches!(s, StepState::Failed | StepState::Waiting | StepState::Cancelled)) {
        return Some(RunState::Failed);
    }
    if steps.iter().any(|(_, warn)| *warn) {
        return Some(RunState::CompletedWithWarnings);
    }
    Some(RunState::Completed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepState::*;

    #[test]
    fn never_green_while_unconfirmed() {
        assert_eq!(settle(&[(Succeeded, false), (NeedsAttention, false)], false), Some(RunState::NeedsAttention));
        assert_eq!(settle(&[(Failed, false), (NeedsAttention, false)], false), Some(RunState::NeedsAttention));
        assert_eq!(settle(&[(Succeeded, false), (Running, false)], false), None);
        assert_eq!(settle(&[(Succeeded, false), (Ready, false)], false), None);
    }

    #[test]
    fn outcomes_roll_up() {
        assert_eq!(settle(&[(Succeeded, false), (Skipped, false)], false), Some(RunState::Completed));
        assert_eq!(settle(&[(Succeeded, false), (Skipped, true)], false), Some(RunState::CompletedWithWarnings));
        assert_eq!(settle(&[(Failed, false), (Waiting, false)], false), Some(RunState::Failed));
        assert_eq!(settle(&[(Succeeded, false), (Cancelled, false)], true), Some(RunState::Cancelled));
        assert!(!RunState::CompletedWithWarnings.is_green());
    }

    #[test]
    fn names_round_trip() {
        for s in [RunState::AwaitingApproval, RunState::CompletedWithWarnings, RunState::Expired] {
            assert_eq!(RunState::parse(s.as_str()), Some(s));
        }
        assert_eq!(StepState::parse("needs_attention"), Some(NeedsAttention));
        assert_eq!(StepState::parse("bogus"), None);
    }
}
