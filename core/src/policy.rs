//! Who may do what (spec §5). Every decision is made here, from the identity the platform
//! signed, whatever an adapter chose to show or hide.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Actor, Role, TenantId};
use crate::plan::PlanHash;
use crate::run::RunState;
use crate::snapshot::UserSnapshot;

/// Whom a role binding names: one chat user, or a group the platform reports for them
/// (a Slack user group, an Entra group in Teams, a Discord role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Principal {
    User { platform: String, id: String },
    Group { platform: String, id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleBinding {
    pub principal: Principal,
    pub role: Role,
    /// `None`: every tenant. Otherwise only these.
    #[serde(default)]
    pub tenants: Option<Vec<TenantId>>,
}

/// One person's identities on several platforms (`slack:U0ADA`, `teams:…`, `cli:ada`) and,
/// optionally, the directory address that names them: one person for every rule about
/// people (the requester never approves; two approvers are two people).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LinkedPerson {
    pub identities: Vec<String>,
    #[serde(default)]
    pub upn: Option<String>,
}

/// The role bindings of the installation, and who is whom across platforms.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub bindings: Vec<RoleBinding>,
    pub people: Vec<LinkedPerson>,
}

impl Access {
    /// Every identity of the person behind `key` (just `key` if it is linked to none).
    pub fn identities_of(&self, key: &str) -> Vec<String> {
        match self.people.iter().find(|p| p.identities.iter().any(|i| i == key)) {
            Some(p) => p.identities.clone(),
            None => vec![key.to_string()],
        }
    }

    /// The person behind an identity, as one key: the first identity they are linked by.
    pub fn person_of(&self, key: &str) -> String {
        self.identities_of(key).swap_remove(0)
    }

    /// The identities linked to a directory address.
    pub fn identities_for_upn(&self, upn: &str) -> Vec<String> {
        self.people.iter().filter(|p| p.upn.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(upn))).flat_map(|p| p.identities.clone()).collect()
    }

    /// The highest role any binding gives this actor for this tenant: a binding to any of
    /// the person's linked identities, or to a group the platform reports for this one.
    pub fn role_of(&self, actor: &Actor, tenant: &TenantId) -> Option<Role> {
        let mine = self.identities_of(&actor.key());
        self.bindings
            .iter()
            .filter(|b| b.tenants.as_ref().is_none_or(|ts| ts.contains(tenant)))
            .filter(|b| match &b.principal {
                Principal::User { platform, id } => mine.iter().any(|k| *k == format!("{platform}:{id}")),
                Principal::Group { platform, id } => *platform == actor.platform && actor.groups.iter().any(|g| g == id),
            })
            .map(|b| b.role)
            .max()
    }

    /// The groups of `platform` that bindings name, each once.
    pub fn groups_on(&self, platform: &str) -> Vec<String> {
        let mut groups: Vec<String> = self
            .bindings
            .iter()
            .filter_map(|b| match &b.principal {
                Principal::Group { platform: p, id } if p == platform => Some(id.clone()),
                _ => None,
            })
            .collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// Whether any binding names a group of `platform`: only then must its groups be read.
    pub fn names_groups_on(&self, platform: &str) -> bool {
        self.bindings.iter().any(|b| matches!(&b.principal, Principal::Group { platform: p, .. } if p == platform))
    }
}

/// Which users of a tenant may be offboarded at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TargetScope {
    #[default]
    AllUsers,
    /// Only members of this security group (id or name): an MSP's blast-radius limit.
    MembersOf(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminTargets {
    /// Admins are offboarded like anyone else.
    Allow,
    /// Admins need two approvers.
    #[default]
    HighRisk,
    /// Admins cannot be requested here at all.
    Exclude,
}

/// A tenant's approval policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    pub scope: TargetScope,
    pub admins: AdminTargets,
    /// Managers may approve, not only request.
    pub managers_may_approve: bool,
    /// The leaver's line manager approves too, or alone.
    pub line_manager: ManagerApproves,
    pub approval_ttl: Duration,
    /// Post a reminder to the approvers after this long without a decision.
    pub escalate_after: Option<Duration>,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        Self {
            scope: TargetScope::AllUsers,
            admins: AdminTargets::HighRisk,
            managers_may_approve: false,
            line_manager: ManagerApproves::No,
            approval_ttl: Duration::hours(24),
            escalate_after: Some(Duration::hours(4)),
        }
    }
}

/// A refused action, in words the clicker can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("you have no role for tenant {0}; ask an owner to grant one")]
    NoRole(TenantId),
    #[error("your role ({have}) cannot {action}; it needs {need}")]
    RoleTooLow { have: Role, need: Role, action: &'static str },
    #[error("you requested this offboarding, so someone else must approve it")]
    SelfApproval,
    #[error("this is your own offboarding: someone else must decide on it")]
    OwnOffboarding,
    #[error("too many searches in a minute; wait a moment and type again")]
    TooManySearches,
    #[error("you already approved this plan; a second, different approver is needed")]
    AlreadyApproved,
    #[error("this approval expired at {0} UTC; request the offboarding again")]
    Expired(DateTime<Utc>),
    #[error("the plan changed since you saw it (you approved {seen}, the plan is now {current}); review the new preview")]
    PlanChanged { seen: String, current: String },
    #[error("the run is {0}, so it can no longer be decided")]
    NotAwaiting(RunState),
    #[error("{0} is outside the users this installation may offboard in this tenant")]
    OutOfScope(String),
    #[error("{0} holds admin roles and this tenant excludes admins from offboarding here")]
    AdminExcluded(String),
}

/// Whether the leaver's line manager approves, by the tenant's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManagerApproves {
    /// IT decides alone.
    #[default]
    No,
    /// The manager's approval is needed as well as IT's.
    Also,
    /// The manager's approval is enough, as IT's is (a plan that needs two approvers
    /// still needs an IT approver beside them).
    Alone,
}

/// The line manager a run waits for, and how they were found, for the preview and the
/// buttons: their clicks count, with no role, only as theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineManager {
    pub upn: String,
    pub name: String,
    /// The chat identities their clicks come from (`slack:U0MARY`).
    pub identities: Vec<String>,
    pub mode: ManagerApproves,
    /// How the identities were found, said in the preview ("found in Slack by e-mail").
    pub found: String,
}

/// A recorded approval of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: String,
    pub approver_name: String,
    pub plan_hash: PlanHash,
    pub at: DateTime<Utc>,
}

/// What the policy needs to know about a run awaiting a decision.
#[derive(Debug, Clone)]
pub struct PendingRun<'a> {
    pub tenant: &'a TenantId,
    pub state: RunState,
    pub requester: &'a str,
    pub plan_hash: &'a PlanHash,
    pub expires_at: DateTime<Utc>,
    pub approvals_needed: usize,
    pub approvals: &'a [Approval],
    pub line_manager: Option<&'a LineManager>,
    /// The leaver: their directory object id and address.
    pub target_id: &'a str,
    pub target_upn: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Counted; more approvers are needed.
    Recorded { have: usize, need: usize },
    /// Enough distinct approvers of the current plan: the run may start.
    Released,
}

fn require(access: &Access, actor: &Actor, tenant: &TenantId, need: Role, action: &'static str) -> Result<Role, Refusal> {
    let have = access.role_of(actor, tenant).ok_or_else(|| Refusal::NoRole(tenant.clone()))?;
    if have < need {
        return Err(Refusal::RoleTooLow { have, need, action });
    }
    Ok(have)
}

/// May this actor request an offboarding of this user?
/// May this actor request offboardings in this tenant at all? Checked before discovery,
/// so that strangers learn nothing about the directory.
pub fn check_may_request(access: &Access, actor: &Actor, tenant: &TenantId) -> Result<Role, Refusal> {
    require(access, actor, tenant, Role::Manager, "request an offboarding")
}

pub fn check_request(access: &Access, policy: &TenantPolicy, actor: &Actor, tenant: &TenantId, target: &UserSnapshot) -> Result<Role, Refusal> {
    let role = check_may_request(access, actor, tenant)?;
    if let TargetScope::MembersOf(group) = &policy.scope
        && !target.is_member_of(group)
    {
        return Err(Refusal::OutOfScope(target.upn.to_string()));
    }
    if policy.admins == AdminTargets::Exclude && target.is_admin() {
        return Err(Refusal::AdminExcluded(target.upn.to_string()));
    }
    Ok(role)
}

/// The emergency path: lockout before approval is an Admin's call.
pub fn check_emergency(access: &Access, actor: &Actor, tenant: &TenantId) -> Result<Role, Refusal> {
    require(access, actor, tenant, Role::Admin, "run the lockout before approval")
}

pub fn check_view(access: &Access, actor: &Actor, tenant: &TenantId) -> Result<Role, Refusal> {
    require(access, actor, tenant, Role::Viewer, "see runs")
}

/// Cancel or start a scheduled run now: an Admin, or the Manager who requested it.
pub fn check_operate(access: &Access, actor: &Actor, tenant: &TenantId, requester: &str) -> Result<Role, Refusal> {
    let need = if actor.key() == requester { Role::Manager } else { Role::Admin };
    require(access, actor, tenant, need, "change this run")
}

/// Whether `key` is one of the line manager's identities (or linked to one).
fn is_line_manager(access: &Access, run: &PendingRun<'_>, key: &str) -> bool {
    let person = access.person_of(key);
    run.line_manager.is_some_and(|m| m.identities.iter().any(|i| access.person_of(i) == person))
}

/// Whether the actor is the leaver: a Teams identity is the leaver's Entra object id (ids
/// are unique across tenants), and any identity may be linked to the leaver's address.
fn is_leaver(access: &Access, actor: &Actor, run: &PendingRun<'_>) -> bool {
    let mine = access.identities_of(&actor.key());
    let by_id = !run.target_id.is_empty() && mine.iter().any(|k| k.strip_prefix("teams:").is_some_and(|id| id.eq_ignore_ascii_case(run.target_id)));
    by_id || access.identities_for_upn(run.target_upn).iter().any(|k| mine.contains(k))
}

fn check_decider(access: &Access, policy: &TenantPolicy, actor: &Actor, run: &PendingRun<'_>, now: DateTime<Utc>) -> Result<(), Refusal> {
    // Checked first: no role, group or line-manager link lets a leaver decide on their own exit.
    if is_leaver(access, actor, run) {
        return Err(Refusal::OwnOffboarding);
    }
    // The leaver's line manager decides on this run, and only this one, without a role.
    if !is_line_manager(access, run, &actor.key()) {
        let need = if policy.managers_may_approve { Role::Manager } else { Role::Admin };
        require(access, actor, run.tenant, need, "decide on offboardings")?;
    }
    if run.state != RunState::AwaitingApproval {
        return Err(Refusal::NotAwaiting(run.state));
    }
    if now >= run.expires_at {
        return Err(Refusal::Expired(run.expires_at));
    }
    if access.person_of(&actor.key()) == access.person_of(run.requester) {
        return Err(Refusal::SelfApproval);
    }
    Ok(())
}

/// Decide an approval click. `seen` is the plan hash the button carried. Approvers are
/// people, not identities: one person linked on two platforms counts once.
pub fn approve(access: &Access, policy: &TenantPolicy, actor: &Actor, run: &PendingRun<'_>, seen: &PlanHash, now: DateTime<Utc>) -> Result<Verdict, Refusal> {
    check_decider(access, policy, actor, run, now)?;
    if seen != run.plan_hash {
        return Err(Refusal::PlanChanged { seen: seen.short().into(), current: run.plan_hash.short().into() });
    }
    // Only approvals of the current plan count; an approval of an older plan is void.
    let mut approvers: Vec<String> = run.approvals.iter().filter(|a| &a.plan_hash == run.plan_hash).map(|a| access.person_of(&a.approver)).collect();
    let me = access.person_of(&actor.key());
    if approvers.contains(&me) {
        return Err(Refusal::AlreadyApproved);
    }
    approvers.push(me);
    let manager = approvers.iter().any(|p| is_line_manager(access, run, p));
    let it = approvers.iter().filter(|p| !is_line_manager(access, run, p)).count();
    let (released, have, need) = match run.line_manager.map(|m| m.mode) {
        None | Some(ManagerApproves::No) => (it >= run.approvals_needed, it, run.approvals_needed),
        // The manager, and IT as the plan asks.
        Some(ManagerApproves::Also) => (manager && it >= run.approvals_needed, it + usize::from(manager), run.approvals_needed + 1),
        // The manager in place of one IT approver; IT can still decide on its own.
        Some(ManagerApproves::Alone) => {
            ((manager && it + 1 >= run.approvals_needed) || it >= run.approvals_needed, it + usize::from(manager), run.approvals_needed.max(1))
        }
    };
    if released { Ok(Verdict::Released) } else { Ok(Verdict::Recorded { have, need }) }
}

/// Decide a rejection click: any authorised decider but the requester may reject.
pub fn reject(access: &Access, policy: &TenantPolicy, actor: &Actor, run: &PendingRun<'_>, now: DateTime<Utc>) -> Result<(), Refusal> {
    check_decider(access, policy, actor, run, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rich_user;
    use chrono::TimeZone;

    fn tenant() -> TenantId {
        TenantId::parse("contoso.com").unwrap()
    }

    fn actor(id: &str) -> Actor {
        Actor { platform: "slack".into(), id: id.into(), name: id.into(), groups: vec![] }
    }

    fn access() -> Access {
        let user = |id: &str, role| RoleBinding { principal: Principal::User { platform: "slack".into(), id: id.into() }, role, tenants: None };
        Access {
            people: vec![],
            bindings: vec![
                user("UREQ", Role::Manager),
                user("UADM1", Role::Admin),
                user("UADM2", Role::Admin),
                user("UVIEW", Role::Viewer),
                RoleBinding { principal: Principal::Group { platform: "slack".into(), id: "SITOPS".into() }, role: Role::Admin, tenants: None },
                RoleBinding {
                    principal: Principal::User { platform: "slack".into(), id: "UFAB".into() },
                    role: Role::Owner,
                    tenants: Some(vec![TenantId::parse("fabrikam.com").unwrap()]),
                },
            ],
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 10, 0, 0).unwrap()
    }

    fn hash(s: &str) -> PlanHash {
        PlanHash(s.repeat(64 / s.len()))
    }

    struct Fixture {
        tenant: TenantId,
        hash: PlanHash,
        approvals: Vec<Approval>,
        needed: usize,
    }

    impl Fixture {
        fn run(&self) -> PendingRun<'_> {
            PendingRun {
                tenant: &self.tenant,
                state: RunState::AwaitingApproval,
                requester: "slack:UREQ",
                plan_hash: &self.hash,
                expires_at: now() + Duration::hours(24),
                approvals_needed: self.needed,
                approvals: &self.approvals,
                line_manager: None,
                target_id: "00000000-0000-4000-8000-000000000001",
                target_upn: "alice@contoso.com",
            }
        }
    }

    fn fixture(needed: usize) -> Fixture {
        Fixture { tenant: tenant(), hash: hash("ab"), approvals: vec![], needed }
    }

    #[test]
    fn self_approval_is_refused_even_for_an_admin() {
        let mut a = access();
        a.bindings.push(RoleBinding { principal: Principal::User { platform: "slack".into(), id: "UREQ".into() }, role: Role::Owner, tenants: None });
        let f = fixture(1);
        assert_eq!(approve(&a, &TenantPolicy::default(), &actor("UREQ"), &f.run(), &f.hash, now()), Err(Refusal::SelfApproval));
    }

    /// The leaver never decides on their own offboarding: not as an Admin by their Entra
    /// object id in Teams (any case), not through an identity linked to their address.
    #[test]
    fn the_leaver_cannot_decide_on_their_own_offboarding() {
        let f = fixture(1);
        let p = TenantPolicy::default();
        let mut a = access();
        let teams = |id: &str| Actor { platform: "teams".into(), id: id.into(), name: id.into(), groups: vec![] };
        a.bindings.push(RoleBinding {
            principal: Principal::User { platform: "teams".into(), id: "00000000-0000-4000-8000-000000000001".into() },
            role: Role::Owner,
            tenants: None,
        });
        a.bindings.push(RoleBinding { principal: Principal::Group { platform: "teams".into(), id: "g-it".into() }, role: Role::Admin, tenants: None });
        assert_eq!(approve(&a, &p, &teams("00000000-0000-4000-8000-000000000001"), &f.run(), &f.hash, now()), Err(Refusal::OwnOffboarding));
        let mut by_group = teams(&"00000000-0000-4000-8000-000000000001".to_uppercase());
        by_group.groups.push("g-it".into());
        assert_eq!(approve(&a, &p, &by_group, &f.run(), &f.hash, now()), Err(Refusal::OwnOffboarding));
        // UADM1 is an Admin; linked to Alice's address, they are Alice.
        assert!(approve(&a, &p, &actor("UADM1"), &f.run(), &f.hash, now()).is_ok());
        a.people.push(LinkedPerson { identities: vec!["slack:UADM1".into()], upn: Some("ALICE@contoso.com".into()) });
        assert_eq!(approve(&a, &p, &actor("UADM1"), &f.run(), &f.hash, now()), Err(Refusal::OwnOffboarding));
    }

    #[test]
    fn viewer_and_strangers_cannot_request_or_approve() {
        let f = fixture(1);
        let p = TenantPolicy::default();
        assert!(matches!(approve(&access(), &p, &actor("UVIEW"), &f.run(), &f.hash, now()), Err(Refusal::RoleTooLow { .. })));
        assert!(matches!(approve(&access(), &p, &actor("UNOBODY"), &f.run(), &f.hash, now()), Err(Refusal::NoRole(_))));
        assert!(matches!(check_request(&access(), &p, &actor("UVIEW"), &tenant(), &rich_user()), Err(Refusal::RoleTooLow { .. })));
        assert!(check_request(&access(), &p, &actor("UREQ"), &tenant(), &rich_user()).is_ok());
    }

    #[test]
    fn managers_approve_only_when_the_tenant_allows() {
        let mut f = fixture(1);
        f.approvals.clear();
        let mut a = access();
        a.bindings.push(RoleBinding { principal: Principal::User { platform: "slack".into(), id: "UMGR2".into() }, role: Role::Manager, tenants: None });
        let mut p = TenantPolicy::default();
        assert!(approve(&a, &p, &actor("UMGR2"), &f.run(), &f.hash, now()).is_err());
        p.managers_may_approve = true;
        assert_eq!(approve(&a, &p, &actor("UMGR2"), &f.run(), &f.hash, now()), Ok(Verdict::Released));
    }

    #[test]
    fn high_risk_needs_two_distinct_approvers() {
        let mut f = fixture(2);
        let p = TenantPolicy::default();
        assert_eq!(approve(&access(), &p, &actor("UADM1"), &f.run(), &f.hash, now()), Ok(Verdict::Recorded { have: 1, need: 2 }));
        f.approvals.push(Approval { approver: "slack:UADM1".into(), approver_name: "a".into(), plan_hash: f.hash.clone(), at: now() });
        assert_eq!(approve(&access(), &p, &actor("UADM1"), &f.run(), &f.hash, now()), Err(Refusal::AlreadyApproved));
        assert_eq!(approve(&access(), &p, &actor("UADM2"), &f.run(), &f.hash, now()), Ok(Verdict::Released));
    }

    #[test]
    fn expired_and_changed_plans_are_refused() {
        let mut f = fixture(2);
        let p = TenantPolicy::default();
        let later = now() + Duration::hours(24);
        assert_eq!(approve(&access(), &p, &actor("UADM1"), &f.run(), &f.hash, later), Err(Refusal::Expired(later)));
        assert!(matches!(approve(&access(), &p, &actor("UADM1"), &f.run(), &hash("cd"), now()), Err(Refusal::PlanChanged { .. })));
        // An approval of an older plan does not count towards the new one.
        f.approvals.push(Approval { approver: "slack:UADM1".into(), approver_name: "a".into(), plan_hash: hash("cd"), at: now() });
        assert_eq!(approve(&access(), &p, &actor("UADM2"), &f.run(), &f.hash, now()), Ok(Verdict::Recorded { have: 1, need: 2 }));
    }

    #[test]
    fn groups_and_tenant_scoped_bindings() {
        let mut a = actor("USOMEONE");
        a.groups.push("SITOPS".into());
        assert_eq!(access().role_of(&a, &tenant()), Some(Role::Admin));
        assert_eq!(access().role_of(&actor("UFAB"), &tenant()), None);
        assert_eq!(access().role_of(&actor("UFAB"), &TenantId::parse("fabrikam.com").unwrap()), Some(Role::Owner));
        let mut teams = actor("UADM1");
        teams.platform = "teams".into();
        assert_eq!(access().role_of(&teams, &tenant()), None, "ids are per platform");
    }

    #[test]
    fn scope_and_admin_exclusion() {
        let mut p = TenantPolicy { scope: TargetScope::MembersOf("Leavers-Scope".into()), ..TenantPolicy::default() };
        let user = rich_user();
        assert!(matches!(check_request(&access(), &p, &actor("UADM1"), &tenant(), &user), Err(Refusal::OutOfScope(_))));
        p.scope = TargetScope::MembersOf("Marketing".into());
        assert!(check_request(&access(), &p, &actor("UADM1"), &tenant(), &user).is_ok());
        p.admins = AdminTargets::Exclude;
        assert!(matches!(check_request(&access(), &p, &actor("UADM1"), &tenant(), &user), Err(Refusal::AdminExcluded(_))));
    }

    #[test]
    fn decided_runs_cannot_be_decided_again() {
        let f = fixture(1);
        let mut run = f.run();
        run.state = RunState::Rejected;
        assert_eq!(reject(&access(), &TenantPolicy::default(), &actor("UADM1"), &run, now()), Err(Refusal::NotAwaiting(RunState::Rejected)));
    }

    #[test]
    fn operate_needs_admin_unless_requester() {
        assert!(check_operate(&access(), &actor("UREQ"), &tenant(), "slack:UREQ").is_ok());
        assert!(check_operate(&access(), &actor("UREQ"), &tenant(), "slack:UOTHER").is_err());
        assert!(check_operate(&access(), &actor("UADM1"), &tenant(), "slack:UOTHER").is_ok());
        assert!(check_emergency(&access(), &actor("UREQ"), &tenant()).is_err());
        assert!(check_emergency(&access(), &actor("UADM1"), &tenant()).is_ok());
    }
}
