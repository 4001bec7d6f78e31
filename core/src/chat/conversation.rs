//! The conversation every chat platform has with its people, in one place: what a command
//! answers, how the wizard goes from page to page (its answers kept in the store, so any
//! process continues it), what a click decides, and the people search. Adapters verify
//! and parse what arrives, call these, and render what comes back; they decide nothing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::command::Command;
use super::views::{ButtonValue, PlanPreview, RunView};
use super::wizard::{DEFAULT_PRESET, Draft, FieldError, Form, Value, Values, placed};
use crate::domain::{Actor, RunId, TenantId};
use crate::service::{Decided, Offboarding, ServiceError};
use crate::snapshot::{Directory, Person};
use crate::store::RunRecord;

/// How long a wizard's answers wait for the next page.
pub const DRAFT_TTL: chrono::Duration = chrono::Duration::hours(2);

/// A piece of a reply's text: platforms render each their way (Slack's `*bold*`, Teams'
/// `**bold**`), and escape the plain parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    Plain(String),
    Strong(String),
    /// A command, a run id: shown as code.
    Code(String),
    Break,
}

/// Words for the person who typed or clicked, and only them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub Vec<Span>);

impl Text {
    fn plain(s: impl Into<String>) -> Self {
        Text(vec![Span::Plain(s.into())])
    }

    fn push(mut self, s: Span) -> Self {
        self.0.push(s);
        self
    }

    /// The text without any markup, for logs, the CLI and tests.
    pub fn to_plain(&self) -> String {
        self.0
            .iter()
            .map(|s| match s {
                Span::Plain(t) | Span::Strong(t) | Span::Code(t) => t.as_str(),
                Span::Break => "\n",
            })
            .collect()
    }
}

/// A wizard page as every renderer draws it: the form, what it shows, what to correct.
/// `key` names the stored answers (an adapter's own: a Slack modal's root view id, a
/// Teams dialog's conversation), so any process can take the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub key: String,
    pub form: Form,
    pub values: Values,
    pub errors: Vec<FieldError>,
    /// The conversation the wizard was opened from (a channel), for the first page to
    /// carry to its submission.
    pub origin: Option<String>,
}

/// What a command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Text(Text),
    /// Open the wizard at this page (the platform's modal or dialog).
    Wizard(Page),
    /// One run's steps, as the status view shows them.
    Status(RunView),
}

/// What submitting a page did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Show this page next.
    Next(Page),
    /// Show the same page again with its field errors.
    Again(Page),
    /// Every page is answered: call [`Conversation::finish`] off the request path. The
    /// user, for "looking up …".
    Ready { user: String },
    /// The answers are gone (expired, or someone else's): start again.
    Gone(Text),
}

/// What the request made of the answers.
#[derive(Debug, Clone)]
pub enum Finished {
    /// Posted for approval.
    Requested(Box<RunRecord>),
    /// Not requested, with why (a run already open): said, not corrected.
    Said(Text),
    /// A page to correct, with the errors on its fields; the answers are kept.
    Again(Page),
}

/// What a click on a preview's button did.
#[derive(Debug, Clone)]
pub enum Clicked {
    /// Counted, or released the run: the refreshed preview.
    Decided(Box<PlanPreview>),
    /// Reject: ask the clicker for a reason (a dialog), then call [`Conversation::reject`].
    AskReason(RunId),
    /// Refused, with why: shown to the clicker only.
    Refused(Text),
}

#[derive(Serialize, Deserialize)]
struct Stored {
    /// Who started the wizard: only they continue it.
    owner: String,
    draft: Draft,
    /// Where it was opened from.
    #[serde(default)]
    origin: Option<String>,
    /// The last answers a page refused, as typed, for a platform that shows the page again
    /// only from a button (Discord: a modal cannot answer a modal).
    #[serde(default)]
    attempt: Option<Attempt>,
}

#[derive(Serialize, Deserialize)]
struct Attempt {
    page: usize,
    values: Values,
    errors: Vec<FieldError>,
}

pub struct Conversation {
    svc: Arc<Offboarding>,
    directory: Arc<dyn Directory>,
}

impl Conversation {
    pub fn new(svc: Arc<Offboarding>, directory: Arc<dyn Directory>) -> Self {
        Conversation { svc, directory }
    }

    /// The directory the wizard searches, for what else reads it in the background.
    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    pub fn service(&self) -> &Arc<Offboarding> {
        &self.svc
    }

    /// The help text; `invocation` is how the platform's people call the bot
    /// (`/offboard`, `@Offboard`).
    pub fn help(invocation: &str) -> Text {
        let line = |cmd: &str, what: &str| {
            vec![Span::Plain("• ".into()), Span::Code(format!("{invocation} {cmd}").trim().to_string()), Span::Plain(format!(": {what}")), Span::Break]
        };
        let mut spans = vec![Span::Strong(invocation.to_string()), Span::Plain(" opens the wizard. Also:".into()), Span::Break];
        spans.extend(line("alice@contoso.com [preset]", "the wizard with the user filled in"));
        spans.extend(line("list", "recent runs"));
        spans.extend(line("status ob-…", "one run's steps"));
        spans.extend(line("cancel ob-…", "cancel a run that has not finished"));
        spans.extend(line("run ob-…", "start a scheduled run now"));
        spans.extend(line("help", "this text"));
        spans.pop();
        Text(spans)
    }

    fn runs(runs: &[RunRecord]) -> Text {
        if runs.is_empty() {
            return Text::plain("No runs yet.");
        }
        let mut spans = vec![Span::Strong("Recent runs".into())];
        for r in runs {
            spans.extend([
                Span::Break,
                Span::Plain("• ".into()),
                Span::Code(r.id.to_string()),
                Span::Plain(format!(" {} · {} · {} · {}", r.target_upn, r.tenant, r.state.label(), r.updated_at.format("%Y-%m-%d %H:%M UTC"))),
            ]);
        }
        Text(spans)
    }

    /// Answers a command; `text` is what followed the invocation. Refusals are audited.
    /// `key` names the wizard's answers if the command opens it (empty when the platform
    /// names them only once the page is shown, as Slack's view ids).
    pub async fn command(&self, actor: &Actor, invocation: &str, text: &str, key: &str, origin: Option<&str>) -> Reply {
        let svc = &self.svc;
        match Command::parse(text) {
            Command::Offboard { .. } if !svc.may_request_somewhere(actor) => {
                let _ = svc.check_may_request_somewhere(actor).await;
                Reply::Text(Text::plain("You have no role that may request offboardings. Ask an owner of Offboard to grant one."))
            }
            Command::Offboard { user, preset } => {
                let mut page = self.start(key.to_string(), user, preset);
                page.origin = origin.map(str::to_string);
                Reply::Wizard(page)
            }
            Command::Help => Reply::Text(Self::help(invocation)),
            Command::List => match svc.list(actor, 15).await {
                Ok(runs) => Reply::Text(Self::runs(&runs)),
                Err(e) => Reply::Text(Text::plain(format!("You cannot list runs: {e}"))),
            },
            Command::Status(id) => match svc.status(actor, &id).await {
                Ok((run, steps, _)) => Reply::Status(RunView::from_run(&run, &steps)),
                Err(e) => Reply::Text(Text::plain(e.to_string())),
            },
            Command::Cancel(id) => match svc.cancel(actor, &id).await {
                Ok(()) => Reply::Text(Text(vec![
                    Span::Plain("Run ".into()),
                    Span::Code(id.to_string()),
                    Span::Plain(" is cancelled; steps already done stay done.".into()),
                ])),
                Err(e) => Reply::Text(Text::plain(format!("Not cancelled: {e}"))),
            },
            Command::RunNow(id) => match svc.run_now(actor, &id).await {
                Ok(()) => Reply::Text(Text(vec![Span::Plain("Run ".into()), Span::Code(id.to_string()), Span::Plain(" starts now.".into())])),
                Err(e) => Reply::Text(Text::plain(format!("Not started: {e}"))),
            },
            Command::Unknown(hint) => Reply::Text(Text::plain(hint).push(Span::Break).push(Span::Break).concat(Self::help(invocation))),
        }
    }

    /// The wizard's first page, with what the command named.
    pub fn start(&self, key: String, user: Option<String>, preset: Option<String>) -> Page {
        let mut values = Draft::default().values(0);
        if let Some(u) = user {
            values.insert("user".into(), Value::Text(u));
        }
        values.insert("preset".into(), Value::Chosen(vec![preset.unwrap_or_else(|| DEFAULT_PRESET.into())]));
        let form = self.svc.wizard().swap_remove(0);
        Page { key, form, values, errors: vec![], origin: None }
    }

    async fn stored(&self, actor: &Actor, key: &str) -> Option<Stored> {
        let text = self.svc.store().draft(key, self.svc.now()).await.ok().flatten()?;
        let stored: Stored = serde_json::from_str(&text).ok()?;
        (stored.owner == actor.key()).then_some(stored)
    }

    async fn load(&self, actor: &Actor, key: &str) -> Option<Draft> {
        self.stored(actor, key).await.map(|s| s.draft)
    }

    async fn keep(&self, actor: &Actor, key: &str, draft: &Draft, origin: Option<String>) -> Result<(), crate::store::StoreError> {
        self.keep_attempt(actor, key, draft, origin, None).await
    }

    async fn keep_attempt(
        &self,
        actor: &Actor,
        key: &str,
        draft: &Draft,
        origin: Option<String>,
        attempt: Option<Attempt>,
    ) -> Result<(), crate::store::StoreError> {
        let text = serde_json::to_string(&Stored { owner: actor.key(), draft: draft.clone(), origin, attempt }).expect("a draft serialises");
        self.svc.store().save_draft(key, &text, self.svc.now() + DRAFT_TTL).await
    }

    fn page(&self, key: &str, page: usize, draft: &Draft, errors: Vec<FieldError>) -> Page {
        let form = self.svc.wizard().swap_remove(page);
        Page { key: key.to_string(), values: draft.values(page), form, errors, origin: None }
    }

    /// Takes one page's answers: checks them, keeps them, and says what to show next.
    /// `origin`: the conversation the first page carried.
    pub async fn submit(&self, actor: &Actor, key: &str, page: usize, values: &Values, origin: Option<&str>) -> Submitted {
        let pages = self.svc.wizard().len();
        let stored = self.stored(actor, key).await;
        let origin = stored.as_ref().and_then(|s| s.origin.clone()).or(origin.map(str::to_string));
        let mut draft = match (page, stored) {
            (_, Some(s)) => s.draft,
            (0, None) => Draft::default(),
            (_, None) => {
                return Submitted::Gone(Text::plain("This wizard's earlier answers are gone (it was left open for more than two hours). Please start again."));
            }
        };
        if page >= pages {
            return Submitted::Gone(Text::plain("This wizard has no such page. Please start again."));
        }
        if let Err(errors) = draft.apply(page, values, &self.svc) {
            let attempt = Attempt { page, values: values.clone(), errors: errors.clone() };
            if let Err(e) = self.keep_attempt(actor, key, &draft, origin, Some(attempt)).await {
                tracing::warn!(error = %e, "could not keep a page's refused answers");
            }
            let mut again = self.page(key, page, &draft, errors);
            // Shown as typed, not as the draft would refill it.
            again.values.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
            return Submitted::Again(again);
        }
        if let Err(e) = self.keep(actor, key, &draft, origin).await {
            tracing::error!(error = %e, "could not keep the wizard's answers");
            let first = self.svc.wizard()[page].fields[0].id.to_string();
            return Submitted::Again(self.page(
                key,
                page,
                &draft,
                vec![FieldError { field: first, message: "the answers could not be kept; submit again".into() }],
            ));
        }
        if page + 1 < pages { Submitted::Next(self.page(key, page + 1, &draft, vec![])) } else { Submitted::Ready { user: draft.user } }
    }

    /// A page of a wizard in progress, shown again with `errors`: for a platform whose
    /// dialog closed before the answer came (Teams), reopened from a button.
    /// The page's last refused answers come back as typed, with their errors unless
    /// `errors` names others.
    pub async fn reopen(&self, actor: &Actor, key: &str, page: usize, errors: Vec<FieldError>) -> Option<Page> {
        let stored = self.stored(actor, key).await?;
        if page >= self.svc.wizard().len() {
            return None;
        }
        let mut shown = self.page(key, page, &stored.draft, errors);
        if let Some(a) = stored.attempt.filter(|a| a.page == page) {
            shown.values.extend(a.values);
            if shown.errors.is_empty() {
                shown.errors = a.errors;
            }
        }
        Some(shown)
    }

    /// Whether the tenant has the user the first page names: one directory read, asked
    /// after the page was answered. The first page again, with the error, if it has not.
    pub async fn check_user(&self, actor: &Actor, key: &str) -> Option<Page> {
        let draft = self.load(actor, key).await?;
        match draft.confirm_user(self.directory.as_ref()).await {
            Ok(()) => None,
            Err(e) => Some(self.page(key, 0, &draft, vec![e])),
        }
    }

    /// Discovers the user and requests the run (slow: call it off the request path). The
    /// answers are kept until the request is made: an error brings back the page to
    /// correct, never a dead end.
    pub async fn finish(&self, actor: &Actor, key: &str) -> Finished {
        let Some(Stored { draft, origin, .. }) = self.stored(actor, key).await else {
            return Finished::Said(Text::plain("This wizard's answers are gone (it was left open for more than two hours). Please start again."));
        };
        let Some(tenant) = draft.tenant.as_deref().and_then(|t| TenantId::parse(t).ok()) else {
            return Finished::Again(self.page(key, 0, &draft, vec![FieldError { field: "user".into(), message: "choose the user (and tenant) again".into() }]));
        };
        let said = match self.svc.request_from(actor, draft.clone().into_request(tenant), origin).await {
            Ok(run) => Finished::Requested(Box::new(run)),
            Err(ServiceError::AlreadyOpen { run, state, upn }) => Finished::Said(Text(vec![
                Span::Strong(upn),
                Span::Plain(" already has an open offboarding: run ".into()),
                Span::Code(run.to_string()),
                Span::Plain(format!(" ({}). It was not requested again; ", state.label())),
                Span::Code(format!("status {run}")),
                Span::Plain(" shows its steps.".into()),
            ])),
            Err(e) => match placed(&e) {
                Some((page, errors)) => return Finished::Again(self.page(key, page, &draft, errors)),
                None => Finished::Said(Text::plain(format!("Not requested: {e}"))),
            },
        };
        let _ = self.svc.store().delete_draft(key).await;
        said
    }

    /// A click on a preview's button; every rule is checked again here, whatever the
    /// platform showed.
    pub async fn click(&self, actor: &Actor, value: &ButtonValue) -> Clicked {
        match value {
            ButtonValue::Reject { run } => Clicked::AskReason(run.clone()),
            ButtonValue::Approve { run, plan } => match self.svc.approve(actor, run, plan).await {
                Ok(Decided::Counted { .. } | Decided::Released(_)) => match self.preview(run).await {
                    Some(p) => Clicked::Decided(Box::new(p)),
                    None => Clicked::Refused(Text::plain("Approved, but the run could not be shown again.")),
                },
                Err(e) => Clicked::Refused(Text::plain(format!("Not approved: {e}"))),
            },
        }
    }

    /// Rejects with the rejecter's reason; `Err` holds what to show on the reason field.
    pub async fn reject(&self, actor: &Actor, run: &RunId, reason: &str) -> Result<(), String> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err("say why, for the requester and the audit log".into());
        }
        self.svc.reject(actor, run, reason).await.map_err(|e| format!("Not rejected: {e}"))
    }

    /// The run's preview as it stands, with who decided.
    pub async fn preview(&self, run: &RunId) -> Option<PlanPreview> {
        PlanPreview::load(self.svc.store(), run).await.ok()
    }

    /// People matching `text` in the tenants the actor may request in.
    pub async fn search(&self, actor: &Actor, text: &str) -> Result<Vec<Person>, ServiceError> {
        self.svc.search_people(actor, self.directory.as_ref(), text).await
    }
}

impl Text {
    fn concat(mut self, other: Text) -> Self {
        self.0.extend(other.0);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_lists_are_said_in_core() {
        insta::assert_snapshot!("help", Conversation::help("/offboard").to_plain());
        let (run, _, _) = crate::testing::finished_run();
        insta::assert_snapshot!("runs", Conversation::runs(&[run]).to_plain());
        assert_eq!(Conversation::runs(&[]).to_plain(), "No runs yet.");
    }
}
