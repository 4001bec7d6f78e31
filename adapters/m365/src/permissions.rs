//! What the app must hold for each step: Graph application permissions (any one of a set
//! of equivalents), the Exchange app role, and Entra directory roles on its service
//! principal. The preflight reads what a fresh token actually grants and names the gaps,
//! per tenant, before anything runs.

use std::collections::BTreeSet;

use offboard_core::plan::StepKind;
use serde::Serialize;

use crate::auth::{AccessToken, Resource};

/// One requirement: any of these grants satisfies it; the first is the least privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Graph(&'static [&'static str]),
    Exchange(&'static [&'static str]),
    /// An Entra directory role, by (name, template id).
    Role(&'static [(&'static str, &'static str)]),
}

impl Need {
    pub fn label(&self) -> String {
        match self {
            Self::Graph(p) => format!("the Graph application permission {}", p[0]),
            Self::Exchange(p) => format!("the Exchange Online permission {}", p[0]),
            Self::Role(r) => format!("the Entra role {}", r[0].0),
        }
    }
}

pub const GLOBAL_ADMIN: (&str, &str) = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10");
pub const PRIVILEGED_AUTH_ADMIN: (&str, &str) = ("Privileged Authentication Administrator", "7be44c8a-adaf-4e2a-84d6-ab2649e08a13");
pub const USER_ADMIN: (&str, &str) = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1");
pub const EXCHANGE_ADMIN: (&str, &str) = ("Exchange Administrator", "29232cdf-9323-42fd-ade2-1d097af3e4de");
pub const EXCHANGE_RECIPIENT_ADMIN: (&str, &str) = ("Exchange Recipient Administrator", "31392ffb-586c-42d1-9346-e59415a2cc4e");

const EXO_APP: Need = Need::Exchange(&["Exchange.ManageAsApp"]);
const EXO_WRITER: Need = Need::Role(&[EXCHANGE_ADMIN, EXCHANGE_RECIPIENT_ADMIN, GLOBAL_ADMIN]);
const PASSWORD_ROLE: Need = Need::Role(&[USER_ADMIN, PRIVILEGED_AUTH_ADMIN, GLOBAL_ADMIN]);

/// Discovery's reads.
pub const DISCOVERY: &[Need] = &[
    Need::Graph(&["User.Read.All", "User.ReadWrite.All", "Directory.Read.All"]),
    Need::Graph(&["GroupMember.Read.All", "GroupMember.ReadWrite.All", "Group.Read.All", "Directory.Read.All"]),
    Need::Graph(&["RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory", "Directory.Read.All"]),
    Need::Graph(&["RoleEligibilitySchedule.Read.Directory", "RoleEligibilitySchedule.ReadWrite.Directory", "RoleManagement.ReadWrite.Directory"]),
    Need::Graph(&["UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All"]),
    Need::Graph(&["DeviceManagementManagedDevices.Read.All", "DeviceManagementManagedDevices.ReadWrite.All"]),
    Need::Graph(&["Calendars.ReadBasic", "Calendars.Read", "Calendars.ReadWrite"]),
    Need::Graph(&["Files.Read.All", "Files.ReadWrite.All"]),
    Need::Graph(&["Organization.Read.All", "Directory.Read.All"]),
    EXO_APP,
];

/// What one step needs, besides discovery's reads.
pub fn for_step(kind: StepKind) -> &'static [Need] {
    use StepKind::*;
    match kind {
        DisableSignIn => &[Need::Graph(&["User.EnableDisableAccount.All", "User.ReadUpdate.All", "User.ReadWrite.All"])],
        RevokeSessions => &[Need::Graph(&["User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"])],
        ResetPassword => &[Need::Graph(&["User-PasswordProfile.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"]), PASSWORD_ROLE],
        RemoveMfaMethods => &[Need::Graph(&["UserAuthenticationMethod.ReadWrite.All"])],
        RemoveAdminRoles => &[
            Need::Graph(&["RoleManagement.ReadWrite.Directory"]),
            Need::Graph(&["RoleEligibilitySchedule.ReadWrite.Directory", "RoleManagement.ReadWrite.Directory"]),
        ],
        RemoveGroups => &[Need::Graph(&["GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"]), EXO_APP, EXO_WRITER],
        RemoveInboxRules
        | RemoveMobileDevices
        | RemoveMailboxPermissions
        | RemoveCalendarPermissions
        | DisableForwarding
        | ForwardMail
        | GrantMailboxAccess
        | HideFromGal
        | ConvertToShared
        | VerifyShared => &[EXO_APP, EXO_WRITER],
        CancelMeetings => &[Need::Graph(&["Calendars.ReadWrite"])],
        DeviceAction => &[Need::Graph(&["DeviceManagementManagedDevices.PrivilegedOperations.All", "DeviceManagementManagedDevices.ReadWrite.All"])],
        SetOutOfOffice => &[Need::Graph(&["MailboxSettings.ReadWrite"])],
        GrantOneDriveAccess => &[Need::Graph(&["Files.ReadWrite.All", "Sites.ReadWrite.All"])],
        TransferOwnership => &[Need::Graph(&["Group.ReadWrite.All", "Directory.ReadWrite.All"]), EXO_APP, EXO_WRITER],
        RenameDisplayName => &[Need::Graph(&["User.ReadUpdate.All", "User.ReadWrite.All", "Directory.ReadWrite.All"])],
        RemoveLicences => &[
            Need::Graph(&["LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"]),
            Need::Graph(&["GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"]),
        ],
        ClearImmutableId => &[Need::Graph(&["User.ReadWrite.All", "Directory.ReadWrite.All"])],
        DeleteUser => &[Need::Graph(&["User.DeleteRestore.All", "User.ReadWrite.All", "Directory.ReadWrite.All"])],
    }
}

/// Acting on an administrator needs this on top (user-update and user-delete docs).
pub const ADMIN_TARGET: Need = Need::Role(&[PRIVILEGED_AUTH_ADMIN, GLOBAL_ADMIN]);

/// The hint a 403 on a step carries.
pub fn hint(kind: StepKind) -> String {
    let needs: Vec<String> = for_step(kind).iter().map(Need::label).collect();
    needs.join(" and ")
}

/// What the tokens of a tenant grant.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub graph: BTreeSet<String>,
    pub exchange: BTreeSet<String>,
    pub role_ids: BTreeSet<String>,
}

impl Grants {
    pub fn add(&mut self, r: Resource, t: &AccessToken) {
        let set = match r {
            Resource::Graph => &mut self.graph,
            Resource::Exchange => &mut self.exchange,
        };
        set.extend(t.roles.iter().map(|x| x.to_ascii_lowercase()));
        self.role_ids.extend(t.wids.iter().map(|x| x.to_ascii_lowercase()));
    }

    pub fn satisfies(&self, need: &Need) -> bool {
        match need {
            Need::Graph(any) => any.iter().any(|p| self.graph.contains(&p.to_ascii_lowercase())),
            Need::Exchange(any) => any.iter().any(|p| self.exchange.contains(&p.to_ascii_lowercase())),
            Need::Role(any) => any.iter().any(|(_, id)| self.role_ids.contains(*id)),
        }
    }
}

/// One thing missing for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// `discovery`, a step key, or `admin targets`.
    pub purpose: String,
    pub need: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Preflight {
    pub tenant: String,
    pub missing: Vec<Missing>,
    /// Set when a token could not be had at all.
    pub sign_in_error: Option<String>,
}

impl Preflight {
    pub fn ready(&self) -> bool {
        self.missing.is_empty() && self.sign_in_error.is_none()
    }
}

/// The gaps between what `grants` holds and what discovery and `steps` need.
pub fn check(tenant: &str, grants: &Grants, steps: &[StepKind]) -> Preflight {
    let mut missing = Vec::new();
    let mut push = |purpose: String, need: &Need| {
        if !grants.satisfies(need) {
            let m = Missing { purpose, need: need.label() };
            if !missing.contains(&m) {
                missing.push(m);
            }
        }
    };
    for need in DISCOVERY {
        push("discovery".into(), need);
    }
    for kind in steps {
        for need in for_step(*kind) {
            push(kind.key().to_string(), need);
        }
    }
    if steps.iter().any(|k| matches!(k, StepKind::DisableSignIn | StepKind::ResetPassword | StepKind::DeleteUser)) {
        push("admin targets".into(), &ADMIN_TARGET);
    }
    Preflight { tenant: tenant.to_string(), missing, sign_in_error: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_names_what_it_needs() {
        for k in StepKind::ALL {
            assert!(!for_step(k).is_empty(), "{k:?}");
            assert!(hint(k).starts_with("the "), "{k:?}");
        }
    }

    #[test]
    fn a_broader_permission_satisfies_a_narrower_need() {
        let mut g = Grants::default();
        g.graph.insert("user.readwrite.all".into());
        assert!(g.satisfies(&for_step(StepKind::DisableSignIn)[0]));
        assert!(!g.satisfies(&for_step(StepKind::RemoveMfaMethods)[0]), "UserAuthenticationMethod.ReadWrite.All has no broader stand-in here");
        let p = check("t", &g, &[StepKind::ResetPassword]);
        assert!(p.missing.iter().any(|m| m.purpose == "reset_password" && m.need == "the Entra role User Administrator"));
        assert!(p.missing.iter().any(|m| m.purpose == "discovery" && m.need.contains("GroupMember.Read.All")));
    }
}
