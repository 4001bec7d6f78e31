//! Every offboarding step (spec §2) against Graph and Exchange: read before write, verify
//! by reading back, skip with a reason where Microsoft cannot do it, and respect the
//! step's class (reliability.md §2): a removal that finds nothing to remove succeeded, a
//! reset password exists only in the one request that sets it, and a wipe, a password reset
//! or a meeting cancel is never sent twice without reading back first.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{SecondsFormat, Timelike};
use offboard_core::engine::{Reconciled, StepContext, StepError, StepExecutor};
use offboard_core::plan::StepKind;
use offboard_core::run::StepOutcome;
use rand::Rng;
use rand::seq::SliceRandom;
use reqwest::Method;
use serde_json::{Value, json};

use crate::M365;
use crate::error::ApiError;
use crate::exchange::{Command, Output};
use crate::graph::{Item, enc};
use crate::pacing::Patience;
use crate::permissions::hint;
use crate::trace::Trace;
use crate::transport::{Cx, Replay};

mod access;
mod lifecycle;
mod mail;

/// How a step ended before the evidence is attached.
enum Done {
    Verified(String),
    Skipped { reason: String, warning: bool },
}

type StepResult = Result<Done, StepError>;

fn ok(s: impl Into<String>) -> StepResult {
    Ok(Done::Verified(s.into()))
}

fn skip_warn(s: impl Into<String>) -> StepResult {
    Ok(Done::Skipped { reason: s.into(), warning: true })
}

/// The effect did not show on read-back: look again later, holding no worker (Microsoft
/// may be catching up). `execute` paces the looks and bounds the wait.
fn not_yet(s: impl Into<String>) -> StepError {
    StepError::NotYet { look_again_in: std::time::Duration::ZERO, waiting_for: format!("the change to show on read-back ({})", s.into()) }
}

/// A wait as people say it ("2 min 5 s"), from a second up.
pub(crate) fn said(d: std::time::Duration) -> Option<String> {
    offboard_core::chat::views::duration(d.as_millis() as i64)
}

fn fail(s: impl Into<String>) -> StepError {
    StepError::Permanent { message: s.into(), request_id: None }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn list(v: &Value) -> Vec<Value> {
    v["value"].as_array().cloned().unwrap_or_default()
}

fn join(names: &[String]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

/// The Graph collection for deleting a method of this `@odata.type`; the password method
/// has none (it cannot be deleted).
fn method_collection(kind: &str) -> Option<&'static str> {
    Some(match kind.trim_start_matches("#microsoft.graph.") {
        "phoneAuthenticationMethod" => "phoneMethods",
        "emailAuthenticationMethod" => "emailMethods",
        "microsoftAuthenticatorAuthenticationMethod" => "microsoftAuthenticatorMethods",
        "fido2AuthenticationMethod" => "fido2Methods",
        "softwareOathAuthenticationMethod" => "softwareOathMethods",
        "windowsHelloForBusinessAuthenticationMethod" => "windowsHelloForBusinessMethods",
        "temporaryAccessPassAuthenticationMethod" => "temporaryAccessPassMethods",
        "platformCredentialAuthenticationMethod" => "platformCredentialMethods",
        "externalAuthenticationMethod" => "externalAuthenticationMethods",
        _ => return None,
    })
}

/// 24 characters from all four classes, from the OS's CSPRNG via `rand`.
fn strong_password() -> String {
    const SETS: [&[u8]; 4] = [b"ABCDEFGHJKLMNPQRSTUVWXYZ", b"abcdefghijkmnopqrstuvwxyz", b"23456789", b"!#$%&*+-=?@^_~"];
    let mut rng = rand::rng();
    let all: Vec<u8> = SETS.concat();
    let mut chars: Vec<u8> = SETS.iter().map(|s| s[rng.random_range(0..s.len())]).collect();
    while chars.len() < 24 {
        chars.push(all[rng.random_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    String::from_utf8(chars).expect("ascii")
}

const SYSTEM_RULES: &[&str] = &["Junk E-Mail Rule"];

fn is_system_rule(name: &str) -> bool {
    SYSTEM_RULES.contains(&name) || name.starts_with("Microsoft.Exchange.OOF")
}

struct Step<'a> {
    m: &'a M365,
    cx: Cx<'a>,
    sc: &'a StepContext,
    kind: StepKind,
    user: &'a str,
}

impl Step<'_> {
    /// How long this step has been waiting, from its first "not yet".
    fn waited(&self) -> std::time::Duration {
        self.sc.waiting_since.map(|since| (self.m.clock.now() - since).to_std().unwrap_or_default()).unwrap_or_default()
    }

    fn e(&self, e: ApiError) -> StepError {
        e.into_step(&hint(self.kind))
    }

    fn p(&self) -> &Value {
        &self.sc.step.params
    }

    /// Exchange routes by the object id as well as by UPN.
    fn anchor(&self) -> String {
        format!("OID:{}@{}", self.user, self.cx.tenant.directory_id)
    }

    fn cmd(&self, cmdlet: &'static str, params: Value) -> Command {
        Command::new(cmdlet, params, Some(&self.anchor()))
    }

    async fn get(&self, path: &str) -> Result<Value, StepError> {
        self.m.graph.get(self.cx, path).await.map_err(|e| self.e(e))
    }

    async fn exo(&self, c: Command) -> Result<Output, StepError> {
        self.m.exchange.run(self.cx, &c, Replay::Safe).await.map_err(|e| self.e(e))
    }

    async fn exo_batch(&self, cs: &[Command]) -> Result<Vec<Result<Output, ApiError>>, StepError> {
        self.m.exchange.batch(self.cx, cs).await.map_err(|e| self.e(e))
    }

    async fn mailbox(&self) -> Result<Value, StepError> {
        let out = self.exo(self.cmd("Get-Mailbox", json!({"Identity": self.user}))).await?;
        out.rows.into_iter().next().ok_or_else(|| fail("Exchange returned no mailbox"))
    }

    /// PATCH the user and read the property back in one batch (`dependsOn` orders them).
    async fn patch_user(&self, body: Value, select: &str) -> Result<Result<Value, ApiError>, StepError> {
        let path = format!("/users/{}", self.user);
        let mut r = self
            .m
            .graph
            .batch(self.cx, vec![Item::patch("write", path.clone(), body), Item::get("read", format!("{path}?$select={select}")).after("write")])
            .await
            .map_err(|e| self.e(e))?;
        match r.remove("write") {
            Some(Err(e)) => Ok(Err(e)),
            _ => Ok(Ok(r.remove("read").unwrap_or_else(|| Err(ApiError::NotSent("read-back".into()))).map_err(|e| self.e(e))?)),
        }
    }

    async fn run(&self) -> StepResult {
        use StepKind::*;
        match self.kind {
            DisableSignIn => self.disable_sign_in().await,
            RevokeSessions => self.revoke_sessions().await,
            ResetPassword => self.reset_password().await,
            RemoveMfaMethods => self.remove_mfa().await,
            RemoveAdminRoles => self.remove_roles().await,
            RemoveGroups => self.remove_groups().await,
            RemoveInboxRules => self.remove_rules().await,
            RemoveMobileDevices => self.remove_mobile_devices().await,
            RemoveMailboxPermissions => self.remove_mailbox_permissions().await,
            RemoveCalendarPermissions => self.remove_calendar_permissions().await,
            DisableForwarding => self.set_forwarding(None, false).await,
            CancelMeetings => self.cancel_meetings().await,
            DeviceAction => self.device_action().await,
            SetOutOfOffice => self.out_of_office().await,
            ForwardMail => {
                let to = self.p()["to"].as_str().map(String::from).ok_or_else(|| fail("no forwarding address in the plan"))?;
                let external = self.p()["external"].as_bool().unwrap_or(false);
                self.set_forwarding(Some((to, external)), self.p()["keep_copy"].as_bool().unwrap_or(false)).await
            }
            GrantMailboxAccess => self.grant_mailbox_access().await,
            GrantOneDriveAccess => self.grant_onedrive_access().await,
            TransferOwnership => self.transfer_ownership().await,
            HideFromGal => self.hide_from_gal().await,
            RenameDisplayName => self.rename().await,
            ConvertToShared => self.convert().await,
            VerifyShared => self.verify_shared().await,
            RemoveLicences => self.remove_licences().await,
            ClearImmutableId => self.clear_immutable_id().await,
            DeleteUser => self.delete_user().await,
        }
    }

    /// Read-back for an at-most-once step whose earlier attempt may have been sent.
    async fn reconcile(&self) -> Result<Reconciled, StepError> {
        Ok(match self.kind {
            StepKind::ResetPassword => match self.password_changed_at().await? {
                Some(at) if Some(&at) != self.changed_before().as_ref() => Reconciled::Applied(StepOutcome::done(
                    format!("password replaced at {at} (confirmed by read-back after an interruption)"),
                    self.cx.trace.request_ids(),
                )),
                _ if self.changed_before().is_some() => Reconciled::NotApplied,
                // Without the time before, a change cannot be told from no change.
                _ => Reconciled::Unknown("the password's last change time was not known before the reset".into()),
            },
            StepKind::CancelMeetings => {
                if self.meetings_left().await?.is_empty() {
                    Reconciled::Applied(StepOutcome::done(
                        "every planned meeting is off the calendar (confirmed by read-back after an interruption)",
                        self.cx.trace.request_ids(),
                    ))
                } else {
                    // The ones still there were provably not cancelled; cancelled ones are gone.
                    Reconciled::NotApplied
                }
            }
            StepKind::DeviceAction => {
                let states = self.device_states().await?;
                if states.iter().all(|(_, _, s)| self.acted_on(s)) {
                    Reconciled::Applied(StepOutcome::done(
                        "Intune shows the action pending on every device (confirmed by read-back after an interruption)",
                        self.cx.trace.request_ids(),
                    ))
                } else {
                    Reconciled::NotApplied
                }
            }
            other => Reconciled::Unknown(format!("{} has no read-back for an interrupted attempt", other.title())),
        })
    }
}

#[async_trait]
impl StepExecutor for M365 {
    async fn execute(&self, sc: &StepContext) -> Result<StepOutcome, StepError> {
        let trace = Trace::new();
        let tenant = self.tenants.get(&sc.tenant).map_err(|e| fail(e.to_string()))?;
        // A lockout waits for no bulk work: it may use the share of a budget that bulk
        // work leaves, and goes back to the queue only when it would wait long, saying for
        // what; an emergency's waits for nothing but other emergencies. A step back from
        // waiting has had its turn: it waits here rather than going to the back again.
        let patience = match (sc.step.kind.is_lockout(), sc.emergency, sc.polls) {
            (true, true, _) => Patience::First,
            (true, false, 0) => Patience::Lockout(self.settings.call.max_lockout_wait),
            (true, false, _) => Patience::Waits,
            (false, _, 0) => Patience::Queue(self.settings.call.max_budget_wait),
            (false, _, _) => Patience::Queue(Duration::MAX),
        };
        let cx = Cx { patience, ..Cx::new(tenant, &trace) };
        let step = Step { m: self, cx, sc, kind: sc.step.kind, user: &sc.target_id };
        let done = match step.run().await {
            // A call that must not repeat went out before a budget sent this one back: the
            // next look reads back first, as after an interruption.
            Err(StepError::Paced { look_again_in, waiting_for }) if trace.once_sent() => return Err(StepError::NotYet { look_again_in, waiting_for }),
            // A read-back that does not show the change yet: paced and bounded here, once
            // for every step.
            Err(StepError::NotYet { look_again_in, waiting_for }) if look_again_in.is_zero() => {
                let policy = self.settings.verify;
                if step.waited() >= policy.propagation {
                    return Err(fail(format!("gave up waiting for {waiting_for} after {}", said(step.waited()).unwrap_or_else(|| "a moment".into()))));
                }
                return Err(StepError::NotYet { look_again_in: policy.look_again_in(sc.polls), waiting_for });
            }
            other => other?,
        };
        Ok(match done {
            Done::Verified(verified) => StepOutcome::done(verified, trace.request_ids()),
            Done::Skipped { reason, warning } => StepOutcome::Skipped { reason, warning },
        })
    }

    async fn reconcile(&self, sc: &StepContext) -> Reconciled {
        let trace = Trace::new();
        let Ok(tenant) = self.tenants.get(&sc.tenant) else { return Reconciled::Unknown(format!("unknown tenant {}", sc.tenant)) };
        let step = Step { m: self, cx: Cx::new(tenant, &trace), sc, kind: sc.step.kind, user: &sc.target_id };
        match step.reconcile().await {
            Ok(r) => r,
            Err(e) => Reconciled::Unknown(format!("read-back failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_strong_and_different() {
        let a = strong_password();
        let b = strong_password();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.chars().any(|c| c.is_ascii_uppercase()) && a.chars().any(|c| c.is_ascii_lowercase()));
        assert!(a.chars().any(|c| c.is_ascii_digit()) && a.chars().any(|c| !c.is_alphanumeric()));
    }

    #[test]
    fn every_deletable_method_type_has_its_collection() {
        assert_eq!(method_collection("#microsoft.graph.phoneAuthenticationMethod"), Some("phoneMethods"));
        assert_eq!(method_collection("fido2AuthenticationMethod"), Some("fido2Methods"));
        assert_eq!(method_collection("#microsoft.graph.passwordAuthenticationMethod"), None);
    }
}
