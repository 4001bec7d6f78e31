//! Plans: the exact steps a run will take, in a dependency graph, with a preview of what
//! each changes and a canonical hash that approvals bind to.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::StepKey;

/// How a step may be retried (reliability.md §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepClass {
    /// Re-sending is harmless; done when a read-back confirms the state.
    Idempotent,
    /// Read the current state before each attempt.
    Reconcilable,
    /// Journal the intent before sending; after a crash, read back or ask a human.
    AtMostOnce,
}

/// Every kind of step the engine knows. The key of a step is its kind's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    DisableSignIn,
    RevokeSessions,
    ResetPassword,
    RemoveMfaMethods,
    RemoveAdminRoles,
    RemoveGroups,
    RemoveInboxRules,
    RemoveMobileDevices,
    RemoveMailboxPermissions,
    RemoveCalendarPermissions,
    DisableForwarding,
    CancelMeetings,
    DeviceAction,
    SetOutOfOffice,
    ForwardMail,
    GrantMailboxAccess,
    GrantOneDriveAccess,
    TransferOwnership,
    HideFromGal,
    RenameDisplayName,
    ConvertToShared,
    VerifyShared,
    RemoveLicences,
    ClearImmutableId,
    DeleteUser,
}

impl StepKind {
    pub const ALL: [StepKind; 25] = [
        Self::DisableSignIn,
        Self::RevokeSessions,
        Self::ResetPassword,
        Self::RemoveMfaMethods,
        Self::RemoveAdminRoles,
        Self::RemoveGroups,
        Self::RemoveInboxRules,
        Self::RemoveMobileDevices,
        Self::RemoveMailboxPermissions,
        Self::RemoveCalendarPermissions,
        Self::DisableForwarding,
        Self::CancelMeetings,
        Self::DeviceAction,
        Self::SetOutOfOffice,
        Self::ForwardMail,
        Self::GrantMailboxAccess,
        Self::GrantOneDriveAccess,
        Self::TransferOwnership,
        Self::HideFromGal,
        Self::RenameDisplayName,
        Self::ConvertToShared,
        Self::VerifyShared,
        Self::RemoveLicences,
        Self::ClearImmutableId,
        Self::DeleteUser,
    ];

    pub fn key(self) -> StepKey {
        let v = serde_json::to_value(self).expect("unit enum");
        StepKey::parse(v.as_str().expect("string")).expect("kind names are keys")
    }

    pub fn from_key(key: &StepKey) -> Option<Self> {
        serde_json::from_value(Value::String(key.as_str().to_owned())).ok()
    }

    pub fn class(self) -> StepClass {
        use StepKind::*;
        match self {
            DisableSignIn | RevokeSessions | DisableForwarding | SetOutOfOffice | ForwardMail | HideFromGal | RenameDisplayName | ConvertToShared
            | VerifyShared | ClearImmutableId => StepClass::Idempotent,
            RemoveMfaMethods
            | RemoveAdminRoles
            | RemoveGroups
            | RemoveInboxRules
            | RemoveMobileDevices
            | RemoveMailboxPermissions
            | RemoveCalendarPermissions
            | GrantMailboxAccess
            | GrantOneDriveAccess
            | TransferOwnership
            | RemoveLicences
            | DeleteUser => StepClass::Reconcilable,
            ResetPassword | CancelMeetings | DeviceAction => StepClass::AtMostOnce,
        }
    }

    /// The lockout group: the steps the emergency path may run before approval.
    pub fn is_lockout(self) -> bool {
        matches!(self, Self::DisableSignIn | Self::RevokeSessions | Self::ResetPassword | Self::RemoveMfaMethods)
    }

    /// Steps whose purpose is to cut the leaver's access. One that was planned and did not
    /// take effect is a failure, never a skip: the person keeps that access.
    pub fn cuts_access(self) -> bool {
        use StepKind::*;
        matches!(
            self,
            DisableSignIn
                | RevokeSessions
                | ResetPassword
                | RemoveMfaMethods
                | RemoveAdminRoles
                | RemoveGroups
                | RemoveInboxRules
                | RemoveMobileDevices
                | RemoveMailboxPermissions
                | RemoveCalendarPermissions
                | DisableForwarding
                | DeviceAction
                | TransferOwnership
        )
    }

    pub fn title(self) -> &'static str {
        use StepKind::*;
        match self {
            DisableSignIn => "Disable sign-in",
            RevokeSessions => "Revoke all sessions",
            ResetPassword => "Reset password",
            RemoveMfaMethods => "Remove MFA methods",
            RemoveAdminRoles => "Remove admin roles",
            RemoveGroups => "Remove from groups",
            RemoveInboxRules => "Remove inbox rules",
            RemoveMobileDevices => "Remove mobile devices",
            RemoveMailboxPermissions => "Remove permissions on other mailboxes",
            RemoveCalendarPermissions => "Remove calendar permissions",
            DisableForwarding => "Disable existing forwarding",
            CancelMeetings => "Cancel organised meetings",
            DeviceAction => "Wipe or retire devices",
            SetOutOfOffice => "Set out of office",
            ForwardMail => "Forward mail",
            GrantMailboxAccess => "Grant mailbox access",
            GrantOneDriveAccess => "Grant OneDrive access",
            TransferOwnership => "Hand over group ownership",
            HideFromGal => "Hide from the address list",
            RenameDisplayName => "Rename display name",
            ConvertToShared => "Convert to shared mailbox",
            VerifyShared => "Verify the mailbox is shared",
            RemoveLicences => "Remove licences",
            ClearImmutableId => "Clear immutable ID",
            DeleteUser => "Delete user",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub key: StepKey,
    pub kind: StepKind,
    pub class: StepClass,
    /// Keys of the steps that must end (succeeded or skipped) before this one starts.
    pub after: Vec<StepKey>,
    /// Exactly what the step will change, for the executor; part of the plan hash.
    pub params: Value,
    /// What a person reads in the preview.
    pub preview: String,
    /// Known at planning time: the step will be skipped for this reason.
    pub skip: Option<String>,
    /// Flagged in amber in the preview (e.g. a forward that looks like exfiltration).
    pub warnings: Vec<String>,
    pub high_risk: bool,
    /// Start no earlier than this many days after approval (deferred deletion).
    pub defer_days: u16,
    /// What a person must still do by hand that this step cannot (on-premises groups):
    /// a step that succeeds with these left ends amber.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manual: Vec<String>,
}

/// The plan for one user: steps in dependency order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
    /// Extra reasons the plan needs two approvers, beyond its high-risk steps.
    pub high_risk_reasons: Vec<String>,
    /// What the approver must know that no single step says (a synced account, a manager
    /// who cannot take anything over, groups left with their owner).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The preset the request started from, and every way it departs from it.
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub deviations: Vec<String>,
}

/// A plan's canonical hash, hex SHA-256; approvals name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanHash(pub String);

impl std::fmt::Display for PlanHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PlanHash {
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl Plan {
    pub fn step(&self, key: &StepKey) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| &s.key == key)
    }

    /// What the emergency path may run before any approval: the lockout; for a plan that
    /// needs two approvers, only blocking sign-in and revoking sessions (both undone in a
    /// click) until the approvals are in.
    pub fn emergency_release(&self, step: &PlannedStep) -> bool {
        step.kind.is_lockout() && (!self.needs_two_approvers() || matches!(step.kind, StepKind::DisableSignIn | StepKind::RevokeSessions))
    }

    pub fn needs_two_approvers(&self) -> bool {
        self.steps.iter().any(|s| s.high_risk && s.skip.is_none()) || !self.high_risk_reasons.is_empty()
    }

    /// The hash covers the target, every step's kind, parameters, order constraints, skip
    /// decision and deferral; not the preview prose, which is derived from them.
    pub fn hash(&self, tenant: &str, target_id: &str) -> PlanHash {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                json!({
                    "key": s.key, "kind": s.kind, "class": s.class, "after": s.after,
                    "params": s.params, "skip": s.skip, "high_risk": s.high_risk, "defer_days": s.defer_days,
                })
            })
            .collect();
        // serde_json's map is ordered by key, which makes this rendering canonical.
        let doc = json!({ "v": 1, "tenant": tenant, "target": target_id, "steps": steps, "high_risk": self.high_risk_reasons });
        let mut h = Sha256::new();
        h.update(b"offboard-plan-v1\n");
        h.update(serde_json::to_vec(&doc).expect("json"));
        PlanHash(hex::encode(h.finalize()))
    }
}

mod build;
#[cfg(test)]
mod tests;

pub use build::{PlanRules, build};
