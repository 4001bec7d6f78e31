//! Errors from Microsoft, named for what the caller does next.

use std::time::Duration;

use offboard_core::engine::StepError;

use crate::auth::AuthError;
use crate::pacing::Budget;

/// What Microsoft said about one failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {}", self.message, self.status, self.code)?;
        if let Some(id) = &self.request_id {
            write!(f, ", request-id {id}")?;
        }
        f.write_str(")")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Throttled: wait at least this long, then retry.
    #[error("throttled, retry after {wait:?}: {detail}")]
    RetryAfter { wait: Duration, detail: Detail },
    /// A transient failure (5xx, a dropped connection after sending): retry with backoff;
    /// for a call that must not repeat, read back first.
    #[error("{0}")]
    Retryable(Detail),
    /// Nothing reached Microsoft: safe to retry anything.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The object is not there: for a removal, the goal state.
    #[error("{0}")]
    NotFound(Detail),
    /// The app lacks a permission or a directory role: an admin must grant it.
    #[error("{0}")]
    Forbidden(Detail),
    /// Microsoft rejected the request; repeating it cannot help.
    #[error("{0}")]
    Permanent(Detail),
    /// Not sent: our own budget for Microsoft would have kept the call waiting longer than
    /// its caller's patience. Come back after `wait`.
    #[error("not sent yet: waiting for {}", budget.waiting_for())]
    Paced { wait: Duration, budget: Budget },
    /// No token: see the [`AuthError`].
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ApiError {
    pub fn detail(&self) -> Option<&Detail> {
        match self {
            Self::RetryAfter { detail, .. } | Self::Retryable(detail) | Self::NotFound(detail) | Self::Forbidden(detail) | Self::Permanent(detail) => {
                Some(detail)
            }
            Self::NotSent(_) | Self::Paced { .. } | Self::Auth(_) => None,
        }
    }

    pub fn request_id(&self) -> Option<String> {
        self.detail().and_then(|d| d.request_id.clone())
    }

    /// The error's message contains this text (Microsoft's messages are the only contract
    /// for some cases, e.g. synced objects).
    pub fn says(&self, text: &str) -> bool {
        self.detail().is_some_and(|d| d.message.to_ascii_lowercase().contains(&text.to_ascii_lowercase()) || d.code.eq_ignore_ascii_case(text))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }

    /// A write refused because on-premises AD owns the object.
    pub fn is_synced_refusal(&self) -> bool {
        self.says("on-premises mastered") || self.says("synchronized from your on-premises")
    }

    /// The step error for the runner; `hint` names what an admin must grant on a 403.
    pub fn into_step(self, hint: &str) -> StepError {
        match self {
            Self::RetryAfter { wait, detail } => StepError::RetryAfter(wait, detail.to_string()),
            Self::Retryable(d) => StepError::Retryable(d.to_string()),
            Self::NotSent(m) => StepError::NotSent(m),
            Self::Paced { wait, budget } => StepError::Paced { look_again_in: wait, waiting_for: budget.waiting_for().to_string() },
            Self::Auth(AuthError::Unavailable(m)) => StepError::Retryable(format!("Entra ID is unavailable: {m}")),
            Self::Auth(e) => StepError::Permanent { message: e.to_string(), request_id: None },
            Self::Forbidden(d) => {
                StepError::Permanent { message: format!("Microsoft refused: {}. The app needs {hint}.", d.message), request_id: d.request_id }
            }
            Self::NotFound(d) | Self::Permanent(d) => StepError::Permanent { message: d.to_string(), request_id: d.request_id },
        }
    }
}
