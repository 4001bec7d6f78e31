//! Core's conversation as Discord shows it: each wizard page a modal (Labels around text
//! inputs and string selects), replies as messages in Discord's markdown with every value
//! escaped, and the buttons that carry a wizard from one modal to the next (a modal cannot
//! answer a modal).

use offboard_core::chat::conversation::{Span, Text};
use offboard_core::chat::views::{Fact, Mark, time};
use offboard_core::chat::{FieldKind, Form, Page, PlanPreview, RunView, Value as Answer, Values, Who};
use offboard_core::domain::RunId;
use offboard_core::snapshot::Person;
use serde_json::{Value, json};

use crate::wire::{
    self, ACTION_ROW, BUTTON, Input, Label, MAX_BUTTON_LABEL, MAX_CONTENT, MAX_OPTION_TEXT, Modal, ModalSubmit, StringSelect, TextInput, TopLevel, clip,
};

/// Interaction callback types.
pub const PONG: u8 = 1;
pub const MESSAGE: u8 = 4;
pub const UPDATE: u8 = 7;
pub const AUTOCOMPLETE: u8 = 8;
pub const OPEN_MODAL: u8 = 9;
/// Only the person who acted sees the message.
pub const EPHEMERAL: u64 = 64;

/// What a modal's or a button's `custom_id` says: `wizard|KEY|PAGE` and so on.
pub const WIZARD: &str = "wizard";
pub const CONTINUE: &str = "continue";
pub const CORRECT: &str = "correct";

pub fn custom_id(kind: &str, key: &str, page: usize) -> String {
    format!("{kind}|{key}|{page}")
}

/// `(kind, key, page)` from a `custom_id` made by [`custom_id`].
pub fn read_custom_id(id: &str) -> Option<(&str, &str, usize)> {
    let mut parts = id.splitn(3, '|');
    let (kind, key, page) = (parts.next()?, parts.next()?, parts.next()?);
    Some((kind, key, page.parse().ok()?))
}

/// Discord's markdown made inert: a value can neither format nor mention (`<@…>` needs its
/// `<`; `@everyone` pings nobody, as every message allows no mentions).
pub fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut line_start = true;
    for c in s.chars() {
        let special = matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' | '(' | ')' | '<');
        // Lists, headings and quotes only begin a line.
        let leading = line_start && matches!(c, '-' | '#' | '>');
        if special || leading {
            out.push('\\');
        }
        out.push(c);
        line_start = c == '\n' || (line_start && c.is_whitespace());
    }
    out
}

/// Core's words in Discord's markdown.
pub fn said(t: &Text) -> String {
    let text: String =
        t.0.iter()
            .map(|s| match s {
                Span::Plain(p) => inert(p),
                Span::Strong(p) => format!("**{}**", inert(p)),
                Span::Code(p) => format!("`{}`", p.replace('`', "'")),
                Span::Break => "\n".into(),
            })
            .collect();
    clip(&text, MAX_CONTENT)
}

fn text_of(v: Option<&Answer>) -> String {
    match v {
        Some(Answer::Text(t)) => t.clone(),
        Some(Answer::Chosen(c)) => c.join(", "),
        None => String::new(),
    }
}

/// A wizard page as a modal: one Label per field, its error (else its hint) as the Label's
/// description, the answers so far filled in.
pub fn modal(p: &Page) -> Modal {
    let components = p
        .form
        .fields
        .iter()
        .take(wire::MAX_COMPONENTS)
        .map(|f| {
            let current = p.values.get(f.id);
            let input = match &f.kind {
                FieldKind::Text { multiline, placeholder } => Input::Text(TextInput::new(f.id, *multiline, f.required, placeholder, &text_of(current))),
                // A modal cannot search as one types: the address, completed earlier by the
                // command's user option.
                FieldKind::User => Input::Text(TextInput::new(f.id, false, f.required, "name@company.com", &text_of(current))),
                FieldKind::Select(choices) | FieldKind::Checkboxes(choices) => {
                    let chosen: Vec<String> = match current {
                        Some(Answer::Chosen(c)) => c.clone(),
                        Some(Answer::Text(t)) => vec![t.clone()],
                        None => vec![],
                    };
                    let options: Vec<(&str, &str, bool)> = choices.iter().map(|c| (c.value.as_str(), c.label.as_str(), chosen.contains(&c.value))).collect();
                    Input::Select(StringSelect::new(f.id, &options, matches!(f.kind, FieldKind::Checkboxes(_)), f.required))
                }
            };
            let error = p.errors.iter().find(|e| e.field == f.id).map(|e| format!("⚠️ {}", e.message));
            TopLevel::Label(Label::new(f.label, error.as_deref().or(f.hint), input))
        })
        .collect();
    let title = format!("Offboard · {} of {} · {}", p.form.page + 1, p.form.pages, p.form.title);
    Modal { custom_id: custom_id(WIZARD, &p.key, p.form.page), title: clip(&title, wire::MAX_TITLE), components }
}

/// The callback that opens a page's modal.
pub fn open_modal(p: &Page) -> Value {
    json!({ "type": OPEN_MODAL, "data": modal(p) })
}

/// A page's answers from a modal submission: selects as chosen values, inputs as text.
pub fn answers(form: &Form, submit: &ModalSubmit) -> Values {
    let mut out = Values::new();
    for input in submit.inputs() {
        let Some(f) = form.fields.iter().find(|f| f.id == input.custom_id) else { continue };
        let v = match &f.kind {
            FieldKind::Select(_) | FieldKind::Checkboxes(_) => Answer::Chosen(input.values.clone().unwrap_or_default()),
            FieldKind::Text { .. } | FieldKind::User => Answer::Text(input.value.clone().unwrap_or_default()),
        };
        out.insert(f.id.to_string(), v);
    }
    out
}

fn button(label: &str, custom_id: String, style: u8) -> Value {
    json!({ "type": BUTTON, "style": style, "label": clip(label, MAX_BUTTON_LABEL), "custom_id": custom_id })
}

/// A message only the person who acted sees.
pub fn ephemeral(content: &str) -> Value {
    json!({ "type": MESSAGE, "data": { "content": clip(content, MAX_CONTENT), "flags": EPHEMERAL, "allowed_mentions": { "parse": [] } } })
}

/// Between two pages: a modal cannot open a modal, so a button that opens the next.
pub fn next_page(p: &Page) -> Value {
    let content = format!("Page {} of {} is saved. Next: **{}**.", p.form.page, p.form.pages, inert(p.form.title));
    let row =
        json!({ "type": ACTION_ROW, "components": [button(&format!("Continue to page {}", p.form.page + 1), custom_id(CONTINUE, &p.key, p.form.page), 1)] });
    json!({ "type": MESSAGE, "data": { "content": content, "flags": EPHEMERAL, "components": [row], "allowed_mentions": { "parse": [] } } })
}

/// A page to correct: what is wrong, and a button that reopens it with the answers kept.
pub fn correct(p: &Page) -> Value {
    let mut lines = vec![format!("**Page {} of {}** needs correcting:", p.form.page + 1, p.form.pages)];
    lines.extend(p.errors.iter().map(|e| format!("⚠️ {}", inert(&e.message))));
    let row = json!({ "type": ACTION_ROW, "components": [button(&format!("Correct page {}", p.form.page + 1), custom_id(CORRECT, &p.key, p.form.page), 1)] });
    json!({ "type": MESSAGE, "data": { "content": clip(&lines.join("\n"), MAX_CONTENT), "flags": EPHEMERAL, "components": [row], "allowed_mentions": { "parse": [] } } })
}

/// A run's steps as one message.
pub fn status(v: &RunView) -> String {
    let mut lines = vec![format!("**Offboarding {}** · {} · run `{}`", inert(&v.target_upn), v.state.label(), v.run_id)];
    lines.extend(v.lines.iter().map(|l| format!("{} {}", l.badge.emoji(), inert(&l.text()))));
    clip(&lines.join("\n"), MAX_CONTENT)
}

/// Embed limits: description, field name and value, footer, fields per embed.
pub const MAX_EMBED_DESCRIPTION: usize = 4096;
pub const MAX_FIELD_NAME: usize = 256;
pub const MAX_FIELD_VALUE: usize = 1024;
pub const MAX_FOOTER: usize = 2048;
pub const MAX_FIELDS: usize = 25;
/// The buttons' `custom_id`s: core's button values (`approve:RUN:PLAN`, `reject:RUN`).
pub const REJECT_REASON: &str = "reject_reason";

/// A person as Discord shows them: a mention for a Discord identity (nobody is pinged:
/// messages allow no mentions), else their name.
fn who(w: &Who) -> String {
    match w.key.strip_prefix("discord:") {
        Some(id) if id.chars().all(|c| c.is_ascii_digit()) => format!("<@{id}>"),
        _ => inert(&w.name),
    }
}

fn fact(f: &Fact) -> String {
    match f {
        Fact::Text(t) => inert(t),
        Fact::People(list) => {
            list.iter().map(|(w, at)| format!("{}{}", who(w), at.map(|t| format!(" at {}", time(t))).unwrap_or_default())).collect::<Vec<_>>().join(", ")
        }
        Fact::Marked(m, t) => format!("{} {}", m.emoji(), inert(t)),
    }
}

/// The approval message: the plan as an embed (facts as fields, steps as its text), and
/// Approve / Reject while the decision is open, or the decision once made.
pub fn preview(p: &PlanPreview) -> Value {
    let l = p.layout();
    let mut fields: Vec<Value> =
        l.facts.iter().map(|(label, f)| json!({ "name": clip(label, MAX_FIELD_NAME), "value": clip(&fact(f), MAX_FIELD_VALUE), "inline": false })).collect();
    let mut lines: Vec<String> = l.notes.iter().map(|n| format!("{} {}", Mark::Warning.emoji(), inert(n))).collect();
    let steps: Vec<String> = l
        .steps
        .iter()
        .map(|s| {
            let mut line = format!("• {}", inert(&s.text));
            if s.high_risk {
                line.push_str(&format!(" {} high risk", Mark::HighRisk.emoji()));
            }
            for w in &s.warnings {
                line.push_str(&format!("\n  {} {}", Mark::Warning.emoji(), inert(w)));
            }
            line
        })
        .collect();
    // A plan too long for one embed keeps its first steps and says how many are not shown.
    let room = MAX_EMBED_DESCRIPTION - 200;
    let mut used = lines.iter().map(|l| l.chars().count() + 1).sum::<usize>();
    let total = steps.len();
    let mut shown = 0;
    for s in steps {
        used += s.chars().count() + 1;
        if used > room {
            break;
        }
        lines.push(s);
        shown += 1;
    }
    if shown < total {
        lines.push(format!("… and {} more steps: `/offboards status run:{}`", total - shown, p.run_id));
    }
    let components = match &l.decision {
        None => vec![json!({ "type": ACTION_ROW, "components": [
            json!({ "type": BUTTON, "style": 3, "label": "Approve", "custom_id": p.approve.encode() }),
            json!({ "type": BUTTON, "style": 4, "label": "Reject…", "custom_id": p.reject.encode() }),
        ] })],
        Some(decided) => {
            fields.extend(
                decided.iter().map(|(label, f)| json!({ "name": clip(label, MAX_FIELD_NAME), "value": clip(&fact(f), MAX_FIELD_VALUE), "inline": false })),
            );
            vec![]
        }
    };
    fields.truncate(MAX_FIELDS);
    let embed = json!({
        "title": clip(&l.heading, MAX_FIELD_NAME),
        "description": clip(&lines.join("\n"), MAX_EMBED_DESCRIPTION),
        "fields": fields,
        "footer": { "text": clip(&l.footer, MAX_FOOTER) },
    });
    json!({ "content": clip(&l.summary, MAX_CONTENT), "embeds": [embed], "components": components, "allowed_mentions": { "parse": [] } })
}

/// Reject asks for a reason first, in a modal.
pub fn reject_reason(run: &RunId) -> Value {
    let input = TextInput::new("reason", true, true, "Say why in a few words", "");
    let modal = Modal {
        custom_id: format!("{REJECT_REASON}|{run}"),
        title: clip(&format!("Reject run {run}"), wire::MAX_TITLE),
        components: vec![TopLevel::Label(Label::new("Reason (shown to the requester)", None, Input::Text(TextInput { max_length: 1000, ..input })))],
    };
    json!({ "type": OPEN_MODAL, "data": modal })
}

/// A message in the run's thread.
pub fn message(content: &str) -> Value {
    json!({ "content": clip(content, MAX_CONTENT), "allowed_mentions": { "parse": [] } })
}

/// People found as someone types the user option.
pub fn autocomplete(found: &[Person]) -> Value {
    let choices: Vec<Value> = found
        .iter()
        .take(25)
        .map(|p| {
            let blocked = if p.enabled { "" } else { ", sign-in blocked" };
            json!({ "name": clip(&format!("{} ({}){blocked}", p.display_name, p.upn), MAX_OPTION_TEXT), "value": clip(p.upn.as_str(), MAX_OPTION_TEXT) })
        })
        .collect();
    json!({ "type": AUTOCOMPLETE, "data": { "choices": choices } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use offboard_core::chat::FieldError;

    fn page(n: usize) -> Page {
        let form = offboard_core::chat::wizard(&[], &[]).swap_remove(n);
        Page { key: "discord:1200000000000000001".into(), form, values: Values::new(), errors: vec![], origin: Some("1100000000000000001".into()) }
    }

    #[test]
    fn every_page_and_message_as_discord_gets_it() {
        let pages = offboard_core::chat::wizard(&[], &[]).len();
        for n in 0..pages {
            insta::assert_json_snapshot!(format!("modal_{n}"), open_modal(&page(n)));
        }
        let mut first = page(0);
        first.values.insert("user".into(), Answer::Text("alice@contoso.com".into()));
        first.values.insert("preset".into(), Answer::Chosen(vec!["standard-leaver".into()]));
        first.errors = vec![FieldError { field: "user".into(), message: "No user alice@contoso.com in contoso.com".into() }];
        insta::assert_json_snapshot!("modal_with_error", open_modal(&first));
        insta::assert_json_snapshot!("next_page", next_page(&page(1)));
        insta::assert_json_snapshot!("correct", correct(&first));
        insta::assert_json_snapshot!("help", ephemeral(&crate::commands::help()));
        let (mut run, steps, approvals) = offboard_core::testing::finished_run();
        insta::assert_json_snapshot!("preview_decided", preview(&PlanPreview::from_run(&run, &approvals)));
        insta::assert_json_snapshot!("status", message(&status(&RunView::from_run(&run, &steps))));
        run.state = offboard_core::run::RunState::AwaitingApproval;
        insta::assert_json_snapshot!("preview_open", preview(&PlanPreview::from_run(&run, &[])));
        insta::assert_json_snapshot!("reject_reason", reject_reason(&run.id));
    }

    #[test]
    fn values_are_inert() {
        assert_eq!(inert("<@123> **now** [x](https://evil.example)"), "\\<@123> \\*\\*now\\*\\* \\[x\\]\\(https://evil.example\\)");
        assert_eq!(inert("- a list\n# a heading\nob-7k2m9q4x1p sign-in"), "\\- a list\n\\# a heading\nob-7k2m9q4x1p sign-in");
        assert_eq!(read_custom_id(&custom_id(WIZARD, "discord:12", 3)), Some((WIZARD, "discord:12", 3)));
    }
}
