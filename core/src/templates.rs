//! Every text an operator may reword: chat texts, out-of-office defaults, e-mail bodies
//! and webhook payloads, as minijinja templates. Defaults ship in the binary; a template
//! directory overrides them file by file. Loading parses every template and renders it
//! once against a sample notice, so a typo, a syntax error or an unknown variable stops
//! the start with the file and line, instead of failing a delivery later.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::policy::Approval;
use crate::report::Report;
use crate::store::{RunRecord, StepRecord};

pub const OOF_INTERNAL: &str = "{{ user.display_name }} has left {{ company }}. Please contact {{ manager.name }}.";
pub const OOF_EXTERNAL: &str = "{{ user.display_name }} is no longer with {{ company }}. Please contact {{ manager.name }}.";

/// The shipped templates, by the path an override takes in the template directory.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("oof/internal.txt", OOF_INTERNAL),
    ("oof/external.txt", OOF_EXTERNAL),
    (
        "chat/run_finished.txt",
        "{{ run.outcome }}.{% for a in run.actions %}\n- {{ a }}{% endfor %}\n{{ run.employee }} ({{ run.upn }}) in {{ run.tenant }}: {{ run.counts.succeeded }} succeeded, {{ run.counts.skipped }} skipped, {{ run.counts.failed }} failed.",
    ),
    (
        "chat/approval_requested.txt",
        "{{ run.requester }} asks to offboard {{ run.employee }} ({{ run.upn }}) in {{ run.tenant }}: {{ run.steps | length }} step{{ \"s\" if run.steps | length != 1 }}.",
    ),
    ("email/subject.txt", "[Offboard] {{ event.title }}{% if run %}: {{ run.employee }} ({{ run.tenant }}){% endif %}"),
    (
        "email/body.txt",
        "{{ event.title }}.\n{% if not run %}\nHead of the audit chain: entry {{ checkpoint.seq }}, hash {{ checkpoint.hash }}. Keep this message: it lets anyone detect a later rewrite of the log.\n{% else %}\nEmployee: {{ run.employee }} ({{ run.upn }})\nTenant: {{ run.tenant }}\nRun: {{ run.id }}\nState: {{ run.state_label }}\nRequested by: {{ run.requester }}\n{% for a in run.approvals %}Approved by: {{ a.by }} at {{ a.at }}\n{% endfor %}{% if run.finished %}\n{{ run.outcome }}\n{% for a in run.actions %}- {{ a }}\n{% endfor %}\n{% for s in run.steps %}- {{ s.mark }} {{ s.title }}: {{ s.detail }}\n{% endfor %}{% if run.effective_by %}\nEffective by {{ run.effective_by }} (access tokens already issued may live up to 90 minutes).\n{% endif %}{% endif %}{% if report_attached %}\nThe signed compliance report is attached. Check it with: offboard verify {{ run.id }}.pdf\n{% endif %}{% endif %}",
    ),
    (
        "webhook/generic.json",
        r#"{"schema": "offboard.notification.v1", "event": {{ event.name | tojson }}, "title": {{ event.title | tojson }}, "at": {{ event.at | tojson }}, "run": {{ run | tojson }}}"#,
    ),
];

/// How much work one render may do: far above what a real notice needs, far below a loop
/// that would hold a core for seconds.
pub const FUEL: u64 = 500_000;
/// The most a render may produce; a payload larger than this is a broken template.
pub const MAX_OUTPUT: usize = 256 * 1024;
/// How long a render may take off the async runtime before it counts as failed.
pub const RENDER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Fix the named file: it does not parse or does not render.
    #[error("template {file}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Broken { file: String, line: Option<usize>, message: String },
    #[error("{file} is not a template Offboard uses; the names are: {known}")]
    Unknown { file: String, known: String },
    #[error("cannot read the template directory {dir}: {message}")]
    Unreadable { dir: String, message: String },
}

/// What a notification or chat text is about: one event of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub event: EventInfo,
    /// `None` for events about no run (an audit checkpoint).
    pub run: Option<RunInfo>,
    pub report_attached: bool,
    /// The notification target's own values (a Jira project key, …).
    pub target: BTreeMap<String, String>,
    /// For `audit.checkpoint`: `{seq, hash}`.
    pub checkpoint: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventInfo {
    /// `run.requested`, `run.approved`, `run.rejected`, `run.finished`, …
    pub name: String,
    pub title: String,
    pub at: String,
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub id: String,
    pub tenant: String,
    pub employee: String,
    pub upn: String,
    pub state: String,
    pub state_label: String,
    pub finished: bool,
    pub outcome: String,
    /// What a person must do now (a lockout that did not take effect, work left by hand).
    pub actions: Vec<String>,
    pub requester: String,
    pub approvals: Vec<ApprovalInfo>,
    pub counts: BTreeMap<&'static str, usize>,
    pub steps: Vec<StepInfo>,
    pub licences_reclaimed: Vec<String>,
    pub effective_by: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApprovalInfo {
    pub by: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepInfo {
    pub title: String,
    pub state: String,
    pub mark: String,
    pub detail: String,
}

impl Notice {
    pub fn new(mut event: EventInfo, run: &RunRecord, steps: &[StepRecord], approvals: &[Approval]) -> Self {
        let r = Report::build(run, steps, approvals, None, run.updated_at);
        // A lockout that did not take effect is the title, wherever the notice goes.
        if matches!(r.lockout, crate::report::Lockout::NotEffective(_)) && run.state.is_terminal() {
            event.title = format!("{}: {}", event.title, r.outcome());
        }
        let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        let c = r.counts;
        Notice {
            event,
            target: BTreeMap::new(),
            checkpoint: None,
            run: Some(RunInfo {
                id: r.run_id.clone(),
                tenant: r.tenant.clone(),
                employee: one_line(&r.employee),
                upn: one_line(&r.upn),
                state: run.state.as_str().into(),
                state_label: run.state.label().into(),
                finished: run.state.is_terminal() || run.state == crate::run::RunState::NeedsAttention,
                outcome: one_line(&r.outcome()),
                actions: r.actions().iter().map(|a| one_line(a)).collect(),
                requester: one_line(&r.requester),
                approvals: r.approvals.iter().map(|(by, at)| ApprovalInfo { by: one_line(by), at: fmt(*at) }).collect(),
                counts: [("succeeded", c.succeeded), ("skipped", c.skipped), ("failed", c.failed), ("attention", c.attention), ("not_run", c.pending)]
                    .into_iter()
                    .collect(),
                steps: r
                    .steps
                    .iter()
                    .map(|s| StepInfo {
                        title: s.title.into(),
                        state: s.state.as_str().into(),
                        mark: crate::report::state_mark(s.state).into(),
                        detail: one_line(&s.detail),
                    })
                    .collect(),
                licences_reclaimed: r.licences_reclaimed.clone(),
                effective_by: r.effective_by().map(fmt),
                reason: run.reason.as_deref().map(one_line),
            }),
            report_attached: false,
        }
    }

    /// A finished run with every field filled: what templates are checked against.
    pub fn sample() -> Self {
        let (run, steps, approvals) = crate::testing::finished_run();
        let event =
            EventInfo { name: "run.finished".into(), title: "Offboarding completed with warnings".into(), at: "2026-11-20 16:04:05 UTC".into(), seq: 1 };
        let mut n = Notice::new(event, &run, &steps, &approvals);
        n.report_attached = true;
        n
    }

    pub fn sample_checkpoint() -> Self {
        Notice {
            event: EventInfo { name: "audit.checkpoint".into(), title: "Audit checkpoint".into(), at: "2026-11-20 16:04:05 UTC".into(), seq: 2 },
            run: None,
            report_attached: false,
            target: BTreeMap::new(),
            checkpoint: Some(serde_json::json!({ "seq": 42, "hash": "ab".repeat(32) })),
        }
    }
}

/// The loaded templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    /// Where each template came from, for error messages.
    origin: BTreeMap<String, String>,
    /// `oof/*.txt`: hand-over texts with literal placeholders, not templates.
    handover: BTreeMap<String, String>,
}

impl Templates {
    /// The shipped defaults plus `extra` (an adapter's own), overridden by files under `dir`.
    pub fn load(dir: Option<&Path>, extra: &[(&'static str, &'static str)]) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.add_filter("slack_text", slack_text);
        env.add_filter("md_text", md_text);
        let mut origin = BTreeMap::new();
        let mut handover = BTreeMap::new();
        let known: Vec<&str> = DEFAULTS.iter().chain(extra).map(|(n, _)| *n).collect();
        let broken = |file: &str, e: minijinja::Error| TemplateError::Broken { file: file.into(), line: e.line(), message: describe(&e) };
        let mut add = |env: &mut Environment<'static>, name: String, source: String, shown: String| -> Result<(), TemplateError> {
            if name.starts_with("oof/") {
                // Said to customers on the leaver's behalf: placeholders only (see handover).
                crate::handover::check(&source, crate::handover::MAX_REPLY_CHARS).map_err(|message| TemplateError::Broken {
                    file: shown.clone(),
                    line: None,
                    message,
                })?;
                handover.insert(name.clone(), source);
            } else {
                env.add_template_owned(name.clone(), source).map_err(|e| broken(&shown, e))?;
            }
            origin.insert(name, shown);
            Ok(())
        };
        for (name, source) in DEFAULTS.iter().chain(extra) {
            add(&mut env, name.to_string(), source.to_string(), format!("(built-in) {name}"))?;
        }
        if let Some(dir) = dir {
            for path in files_under(dir)? {
                let name = path.strip_prefix(dir).expect("under dir").to_string_lossy().replace('\\', "/");
                let shown = path.display().to_string();
                if !known.contains(&name.as_str()) {
                    return Err(TemplateError::Unknown { file: shown, known: known.join(", ") });
                }
                let source = std::fs::read_to_string(&path).map_err(|e| TemplateError::Unreadable { dir: shown.clone(), message: e.to_string() })?;
                add(&mut env, name, source, shown)?;
            }
        }
        let t = Templates { env, origin, handover };
        let sample = Notice::sample();
        let checkpoint = Notice::sample_checkpoint();
        for name in known {
            if name.starts_with("oof/") {
                continue;
            }
            t.render(name, &sample)?;
            // Notifications also announce audit checkpoints, which concern no run.
            if name.starts_with("email/") || name.starts_with("webhook/") {
                t.render(name, &checkpoint)?;
            }
        }
        Ok(t)
    }

    /// Renders a template within its fuel and output limits; JSON templates must produce
    /// valid JSON. In async code use [`Templates::render_off_runtime`].
    pub fn render(&self, name: &str, ctx: &impl Serialize) -> Result<String, TemplateError> {
        let file = self.origin.get(name).cloned().unwrap_or_else(|| name.to_string());
        let tpl = self.env.get_template(name).map_err(|e| TemplateError::Broken { file: file.clone(), line: None, message: describe(&e) })?;
        let mut out = Capped(Vec::new());
        tpl.render_captured_to(minijinja::value::Serde(ctx), &mut out).map_err(|e| TemplateError::Broken {
            file: file.clone(),
            line: e.line(),
            message: if out.0.len() > MAX_OUTPUT { format!("renders more than {} KiB", MAX_OUTPUT / 1024) } else { describe(&e) },
        })?;
        let out = String::from_utf8(out.0).map_err(|_| TemplateError::Broken { file: file.clone(), line: None, message: "renders invalid UTF-8".into() })?;
        if name.ends_with(".json")
            && let Err(e) = serde_json::from_str::<serde_json::Value>(&out)
        {
            return Err(TemplateError::Broken { file, line: Some(e.line()), message: format!("renders to invalid JSON: {e}") });
        }
        Ok(out)
    }

    /// [`Templates::render`] on a blocking thread with a deadline, so an operator's template
    /// never stalls the tasks that answer chat platforms and health checks.
    pub async fn render_off_runtime<C: Serialize + Send + 'static>(self: &std::sync::Arc<Self>, name: &str, ctx: C) -> Result<String, TemplateError> {
        let (me, owned) = (self.clone(), name.to_string());
        let job = tokio::task::spawn_blocking(move || me.render(&owned, &ctx));
        match tokio::time::timeout(RENDER_TIMEOUT, job).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(TemplateError::Broken { file: name.into(), line: None, message: format!("the render stopped: {e}") }),
            Err(_) => Err(TemplateError::Broken { file: name.into(), line: None, message: format!("took longer than {} s", RENDER_TIMEOUT.as_secs()) }),
        }
    }

    /// The out-of-office defaults the presets offer, filled per user by the planner.
    pub fn out_of_office(&self) -> crate::request::OutOfOffice {
        let source = |n: &str| self.handover.get(n).cloned().unwrap_or_default();
        crate::request::OutOfOffice { internal: source("oof/internal.txt"), external: source("oof/external.txt") }
    }
}

/// A writer that refuses to grow past [`MAX_OUTPUT`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            self.0.resize(MAX_OUTPUT + 1, 0);
            return Err(std::io::Error::other("output limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A value from a person or the directory, inert in Slack mrkdwn: no mentions, links or
/// extra lines.
pub fn slack_text(v: String) -> String {
    one_line(&v).replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The same for Markdown (Teams, Discord): every formatting character escaped.
pub fn md_text(v: String) -> String {
    let mut out = String::with_capacity(v.len());
    for c in one_line(&v).chars() {
        if "\\`*_~[]<>#".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Line breaks and other control characters become spaces, so a value never starts a line.
pub fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>, TemplateError> {
    let unreadable = |e: std::io::Error| TemplateError::Unreadable { dir: dir.display().to_string(), message: e.to_string() };
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(unreadable)? {
            let path = entry.map_err(unreadable)?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_templates_render_the_sample() {
        let t = Templates::load(None, &[]).unwrap();
        let n = Notice::sample();
        insta::assert_snapshot!("email_body", t.render("email/body.txt", &n).unwrap());
        insta::assert_snapshot!("email_subject", t.render("email/subject.txt", &n).unwrap());
        insta::assert_snapshot!("chat_run_finished", t.render("chat/run_finished.txt", &n).unwrap());
        let generic: serde_json::Value = serde_json::from_str(&t.render("webhook/generic.json", &n).unwrap()).unwrap();
        assert_eq!(generic["schema"], "offboard.notification.v1");
        assert_eq!(generic["run"]["employee"], "Zoë Łukasiewicz-Ørsted");
        assert_eq!(generic["run"]["counts"]["succeeded"], 18);
        insta::assert_snapshot!("email_checkpoint", t.render("email/body.txt", &Notice::sample_checkpoint()).unwrap());
    }

    #[test]
    fn an_override_replaces_a_default_and_a_broken_one_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("email")).unwrap();
        std::fs::write(dir.path().join("email/subject.txt"), "Leaver {{ run.employee if run else event.title }}").unwrap();
        let t = Templates::load(Some(dir.path()), &[]).unwrap();
        assert_eq!(t.render("email/subject.txt", &Notice::sample()).unwrap(), "Leaver Zoë Łukasiewicz-Ørsted");

        std::fs::write(dir.path().join("email/body.txt"), "Hello\n\n{% for s in run.steps %}{{ s.title }\n").unwrap();
        let e = Templates::load(Some(dir.path()), &[]).unwrap_err().to_string();
        assert!(e.contains("email/body.txt line 3: syntax error"), "{e}");

        std::fs::write(dir.path().join("email/body.txt"), "Hi\n{{ run.employe }}").unwrap();
        let e = Templates::load(Some(dir.path()), &[]).unwrap_err().to_string();
        assert!(e.contains("email/body.txt line 2: undefined value"), "{e}");

        std::fs::remove_file(dir.path().join("email/body.txt")).unwrap();
        std::fs::write(dir.path().join("email/bodyy.txt"), "x").unwrap();
        let e = Templates::load(Some(dir.path()), &[]).unwrap_err().to_string();
        assert!(e.contains("bodyy.txt is not a template Offboard uses"), "{e}");

        std::fs::remove_file(dir.path().join("email/bodyy.txt")).unwrap();
        std::fs::create_dir_all(dir.path().join("webhook")).unwrap();
        std::fs::write(dir.path().join("webhook/generic.json"), "{\"run\": {{ run.id }}").unwrap();
        let e = Templates::load(Some(dir.path()), &[]).unwrap_err().to_string();
        assert!(e.contains("webhook/generic.json line 1: renders to invalid JSON"), "{e}");
    }

    #[test]
    fn an_endless_template_runs_out_of_fuel_and_a_huge_one_hits_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("email")).unwrap();
        std::fs::write(dir.path().join("email/subject.txt"), "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}").unwrap();
        let started = std::time::Instant::now();
        let e = Templates::load(Some(dir.path()), &[]).unwrap_err().to_string();
        assert!(e.contains("email/subject.txt") && e.contains("out of fuel"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        std::fs::write(dir.path().join("email/subject.txt"), "{{ \"x\" * 100000000 }}").unwrap();
        let e = Templates::load(Some(dir.path()), &[]).unwrap_err().to_string();
        assert!(e.contains("out of fuel") || e.contains("renders more than 256 KiB"), "{e}");
        std::fs::write(dir.path().join("email/subject.txt"), "{% for i in range(60) %}{{ \"x\" * 5000 }}{% endfor %}").unwrap();
        let e = Templates::load(Some(dir.path()), &[]).unwrap_err().to_string();
        assert!(e.contains("renders more than 256 KiB"), "{e}");
    }

    #[test]
    fn one_step_is_one_step() {
        let t = Templates::load(None, &[]).unwrap();
        let (run, steps, approvals) = crate::testing::finished_run();
        let event = EventInfo { name: "run.requested".into(), title: "Offboarding requested".into(), at: "2026-11-20 16:04:05 UTC".into(), seq: 1 };
        let many = t.render("chat/approval_requested.txt", &Notice::new(event.clone(), &run, &steps, &approvals)).unwrap();
        assert!(many.ends_with(&format!(": {} steps.", run.plan.steps.len())), "{many}");
        let mut single = run.clone();
        single.plan.steps.truncate(1);
        let one = t.render("chat/approval_requested.txt", &Notice::new(event, &single, &steps[..1], &approvals)).unwrap();
        assert!(one.ends_with(": 1 step."), "{one}");
    }

    #[test]
    fn values_from_people_are_inert() {
        assert_eq!(slack_text("<!channel> *Approved*\n• fake".into()), "&lt;!channel&gt; *Approved* • fake");
        assert_eq!(md_text("[click](http://x) *bold*\nline".into()), "\\[click\\](http://x) \\*bold\\* line");
    }

    #[test]
    fn out_of_office_overrides_are_placeholder_texts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("oof")).unwrap();
        std::fs::write(dir.path().join("oof/internal.txt"), "{{ user.display_name }} has moved on. Ask {{ manager.name }}.").unwrap();
        let t = Templates::load(Some(dir.path()), &[]).unwrap();
        assert_eq!(t.out_of_office().internal, "{{ user.display_name }} has moved on. Ask {{ manager.name }}.");
        std::fs::write(dir.path().join("oof/internal.txt"), "{% for i in range(100000) %}x{% endfor %}").unwrap();
        let e = Templates::load(Some(dir.path()), &[]).unwrap_err().to_string();
        assert!(e.contains("oof/internal.txt") && e.contains("only placeholders"), "{e}");
    }
}
