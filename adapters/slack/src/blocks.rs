//! Core's neutral views as Block Kit JSON: wizard pages as modals, the plan preview with its
//! buttons, the live status message, and the short texts. Every string is cut to Block Kit's
//! limits (titles 24, option and button text 75, section text 3000, 50 blocks a message).

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use offboard_core::chat::conversation::{Span, Text};
use offboard_core::chat::views::{Fact, Mark, time};
use offboard_core::chat::{Badge, FieldError, FieldKind, Form, Page, PlanPreview, RunView, Value, Values, Who};
use offboard_core::snapshot::Person;

pub const WIZARD: &str = "offboard_wizard";
pub const REJECT: &str = "offboard_reject";
pub const APPROVE_ACTION: &str = "approve";
pub const REJECT_ACTION: &str = "reject";
const SECTION_MAX: usize = 2900;

/// Cuts to `max` characters, marking the cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}…", s.chars().take(max - 1).collect::<String>()) }
}

fn plain(s: &str, max: usize) -> Json {
    json!({ "type": "plain_text", "text": cut(s, max) })
}

fn mrkdwn(s: &str) -> Json {
    json!({ "type": "mrkdwn", "text": cut(s, SECTION_MAX), "verbatim": true })
}

/// Escapes text for mrkdwn (`&`, `<`, `>`), so user data cannot form links or mentions.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// What the modal carries between pages: `page:N`, then `:` and the answers so far.
pub fn page_of(private_metadata: &str) -> Option<usize> {
    private_metadata.strip_prefix("page:")?.split(':').next()?.parse().ok()
}

/// The channel the wizard was opened from, carried by its first page (`page:0:C0123`).
pub fn origin_of(private_metadata: &str) -> Option<&str> {
    private_metadata.strip_prefix("page:")?.split_once(':').map(|(_, o)| o).filter(|o| !o.is_empty())
}

/// One wizard page as a modal view. `prefill` gives initial values (the user from the
/// slash command).
pub fn modal(form: &Form, prefill: &Values) -> Json {
    modal_with_errors(form, prefill, &[])
}

/// A wizard page shown again with what must be corrected: each message under its field
/// (a field of `""`: above the page). Used when the page comes back after the answer to a
/// submission was sent, where Slack's own field errors cannot be used.
pub fn modal_with_errors(form: &Form, prefill: &Values, errors: &[FieldError]) -> Json {
    let warning = |m: &str| json!({ "type": "context", "elements": [inert(&cut(&format!(":warning: {}", value(m)), 2000))] });
    let mut blocks: Vec<Json> = errors.iter().filter(|e| e.field.is_empty()).map(|e| warning(&e.message)).collect();
    let inputs: Vec<(&str, Json)> = form
        .fields
        .iter()
        .map(|f| {
            let initial = prefill.get(f.id);
            let element = match &f.kind {
                FieldKind::Text { multiline, placeholder } => {
                    let mut e = json!({ "type": "plain_text_input", "action_id": f.id, "multiline": multiline });
                    if !placeholder.is_empty() {
                        e["placeholder"] = plain(placeholder, 150);
                    }
                    if let Some(Value::Text(t)) = initial {
                        e["initial_value"] = json!(t);
                    }
                    e
                }
                FieldKind::User => {
                    let mut e =
                        json!({ "type": "external_select", "action_id": f.id, "min_query_length": 2, "placeholder": plain("Type a name or address", 150) });
                    if let Some(Value::Text(t)) = initial {
                        e["initial_option"] = json!({ "text": plain(t, 75), "value": cut(t, 150) });
                    }
                    e
                }
                FieldKind::Select(choices) => {
                    let option = |c: &offboard_core::chat::Choice| json!({ "text": plain(&c.label, 75), "value": c.value });
                    let mut e = json!({
                        "type": "static_select",
                        "action_id": f.id,
                        "placeholder": plain("Choose", 150),
                        "options": choices.iter().map(option).collect::<Vec<_>>(),
                    });
                    let picked = match initial {
                        Some(Value::Chosen(v)) => v.first(),
                        _ => None,
                    };
                    if let Some(c) = picked.and_then(|p| choices.iter().find(|c| &c.value == p)) {
                        e["initial_option"] = option(c);
                    }
                    e
                }
                FieldKind::Checkboxes(choices) => {
                    let option = |c: &offboard_core::chat::Choice| json!({ "text": plain(&c.label, 75), "value": c.value });
                    let mut e = json!({
                        "type": "checkboxes",
                        "action_id": f.id,
                        "options": choices.iter().take(10).map(option).collect::<Vec<_>>(),
                    });
                    if let Some(Value::Chosen(v)) = initial {
                        let on: Vec<Json> = choices.iter().take(10).filter(|c| v.contains(&c.value)).map(option).collect();
                        // Slack refuses an empty initial_options.
                        if !on.is_empty() {
                            e["initial_options"] = json!(on);
                        }
                    }
                    e
                }
            };
            let mut b = json!({ "type": "input", "block_id": f.id, "optional": !f.required, "label": plain(f.label, 2000), "element": element });
            if let Some(h) = f.hint {
                b["hint"] = plain(h, 2000);
            }
            (f.id, b)
        })
        .collect();
    for (id, input) in inputs {
        blocks.push(input);
        blocks.extend(errors.iter().filter(|e| e.field == id).map(|e| warning(&e.message)));
    }
    json!({
        "type": "modal",
        "callback_id": WIZARD,
        "private_metadata": format!("page:{}", form.page),
        "title": plain(&format!("Offboard · {} of {}", form.page + 1, form.pages), 24),
        "submit": plain(form.submit, 24),
        "close": plain("Cancel", 24),
        "blocks": blocks,
    })
}

/// A modal that only informs (no inputs), e.g. "working on it" or an error.
pub fn notice_modal(title: &str, text: &str) -> Json {
    json!({
        "type": "modal",
        "callback_id": WIZARD,
        "title": plain(title, 24),
        "close": plain("Close", 24),
        "blocks": [{ "type": "section", "text": mrkdwn(text) }],
    })
}

/// The modal that asks for a rejection reason.
pub fn reject_modal(run: &str) -> Json {
    json!({
        "type": "modal",
        "callback_id": REJECT,
        "private_metadata": run,
        "title": plain("Reject offboarding", 24),
        "submit": plain("Reject", 24),
        "close": plain("Cancel", 24),
        "blocks": [{
            "type": "input",
            "block_id": "reason",
            "label": plain("Why is it rejected?", 2000),
            "element": { "type": "plain_text_input", "action_id": "reason", "multiline": true, "max_length": 1000 },
        }],
    })
}

/// A modal's `state.values` as core's field values.
pub fn values(state: &Json) -> Values {
    let mut out = Values::new();
    let Some(blocks) = state["values"].as_object() else { return out };
    for actions in blocks.values() {
        for (action, v) in actions.as_object().into_iter().flatten() {
            let value = match v["type"].as_str() {
                Some("plain_text_input") => v["value"].as_str().map(|s| Value::Text(s.to_string())),
                Some("static_select") | Some("external_select") => v["selected_option"]["value"].as_str().map(|s| Value::Chosen(vec![s.to_string()])),
                Some("checkboxes") => Some(Value::Chosen(
                    v["selected_options"].as_array().into_iter().flatten().filter_map(|o| o["value"].as_str().map(str::to_string)).collect(),
                )),
                _ => None,
            };
            if let Some(value) = value {
                out.insert(action.clone(), value);
            }
        }
    }
    out
}

/// Options for the user picker.
pub fn people_options(people: &[Person]) -> Json {
    let options: Vec<Json> = people
        .iter()
        .take(100)
        .map(|p| json!({ "text": plain(&format!("{} ({})", p.display_name, p.upn), 75), "value": cut(&p.upn.to_string(), 150) }))
        .collect();
    json!({ "options": options })
}

/// Groups lines into plain-text sections that fit Slack's section limit. Plain text shows
/// what it says: no mention, link or formatting in a value can act.
fn sections(lines: &[String]) -> Vec<Json> {
    let mut out = Vec::new();
    let mut current = String::new();
    for l in lines {
        if !current.is_empty() && current.len() + l.len() + 1 > SECTION_MAX {
            out.push(json!({ "type": "section", "text": inert(&current) }));
            current.clear();
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&cut(l, SECTION_MAX));
    }
    if !current.is_empty() {
        out.push(json!({ "type": "section", "text": inert(&current) }));
    }
    out
}

/// Text that may carry what people typed or the directory holds: plain, emoji allowed.
fn inert(s: &str) -> Json {
    json!({ "type": "plain_text", "text": cut(s, SECTION_MAX), "emoji": true })
}

/// A value from a person or the directory, on one line, so it cannot add lines of its own.
fn value(s: &str) -> String {
    offboard_core::templates::one_line(s)
}

/// A Slack user id as Slack issues them; anything else is shown by name, never as markup.
fn slack_id(p: &Who) -> Option<&str> {
    p.id_on("slack").filter(|id| !id.is_empty() && id.len() <= 20 && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
}

/// People as Slack shows them: a mention for a Slack user, else the name as inert text.
fn people(list: &[(Who, Option<DateTime<Utc>>)]) -> Json {
    let at = |t: &Option<DateTime<Utc>>| t.map(|t| format!(" at {}", time(t))).unwrap_or_default();
    if list.iter().all(|(p, _)| slack_id(p).is_some()) {
        let text = list.iter().map(|(p, t)| format!("<@{}>{}", slack_id(p).unwrap_or_default(), at(t))).collect::<Vec<_>>().join(", ");
        json!({ "type": "mrkdwn", "text": text, "verbatim": true })
    } else {
        inert(&cut(&list.iter().map(|(p, t)| format!("{}{}", value(&p.name), at(t))).collect::<Vec<_>>().join(", "), 1900))
    }
}

fn mark(m: Mark) -> &'static str {
    match m {
        Mark::Warning => ":warning:",
        Mark::HighRisk => ":rotating_light:",
        Mark::Approved => ":white_check_mark:",
        Mark::Rejected => ":no_entry:",
        Mark::Expired => ":hourglass:",
        Mark::Cancelled => ":heavy_multiplication_x:",
        Mark::Scheduled => ":calendar:",
    }
}

/// Label and value pairs as section fields: the labels ours (mrkdwn), the values plain text
/// or mentions.
fn facts(pairs: &[(&str, Fact)]) -> Vec<Json> {
    pairs
        .chunks(5)
        .map(|chunk| {
            let fields: Vec<Json> = chunk
                .iter()
                .flat_map(|(k, v)| {
                    let value = match v {
                        Fact::Text(t) => inert(&cut(t, 1900)),
                        Fact::People(list) => people(list),
                        Fact::Marked(m, t) => inert(&format!("{} {t}", mark(*m))),
                    };
                    [json!({ "type": "mrkdwn", "text": format!("*{k}*"), "verbatim": true }), value]
                })
                .collect();
            json!({ "type": "section", "fields": fields })
        })
        .collect()
}

/// The approval message, as core lays it out: plain text for everything a person typed or
/// the directory holds, the buttons while the decision is open.
pub fn preview(p: &PlanPreview) -> (String, Vec<Json>) {
    let l = p.layout();
    let mut blocks = vec![json!({ "type": "header", "text": plain(&l.heading, 150) })];
    blocks.extend(facts(&l.facts));
    if !l.notes.is_empty() {
        let notes: Vec<String> = l.notes.iter().map(|n| format!("{} {n}", mark(Mark::Warning))).collect();
        blocks.extend(sections(&notes));
    }
    blocks.push(json!({ "type": "divider" }));
    let lines: Vec<String> = l
        .steps
        .iter()
        .map(|s| {
            let mut line = format!("• {}", s.text);
            if s.high_risk {
                line = format!("{line} {} high risk", mark(Mark::HighRisk));
            }
            for w in &s.warnings {
                line.push_str(&format!("\n      {} {w}", mark(Mark::Warning)));
            }
            line
        })
        .collect();
    blocks.extend(sections(&lines));
    blocks.push(json!({ "type": "context", "elements": [inert(&l.footer)] }));
    match &l.decision {
        None => blocks.push(json!({
            "type": "actions",
            "block_id": "decision",
            "elements": [
                { "type": "button", "action_id": APPROVE_ACTION, "style": "primary", "text": plain("Approve", 75), "value": p.approve.encode() },
                { "type": "button", "action_id": REJECT_ACTION, "style": "danger", "text": plain("Reject…", 75), "value": p.reject.encode() },
            ],
        })),
        Some(decided) => blocks.extend(facts(decided)),
    }
    (esc(&l.summary), blocks)
}

pub fn badge(b: Badge) -> &'static str {
    match b {
        Badge::Pending => ":white_small_square:",
        Badge::Running => ":hourglass_flowing_sand:",
        Badge::Done => ":white_check_mark:",
        Badge::Skipped => ":fast_forward:",
        Badge::Failed => ":x:",
        Badge::Attention => ":warning:",
        Badge::NotRun => ":heavy_minus_sign:",
    }
}

/// The pipeline message in the run's thread.
pub fn status(v: &RunView) -> (String, Vec<Json>) {
    let fallback = esc(&value(&format!("Offboarding {}: {}", v.target_upn, v.state.label())));
    let head = value(&format!("Offboarding {} · {} · run {}", v.target_upn, v.state.label(), v.run_id));
    let lines: Vec<String> = v.lines.iter().map(|l| format!("{} {}", badge(l.badge), l.text())).collect();
    let mut blocks = vec![json!({ "type": "section", "text": inert(&head) })];
    blocks.extend(sections(&lines));
    (fallback, blocks)
}

/// A reply in a run's thread (a failure, the closing message): plain text, with an
/// escaped fallback for notifications.
pub fn reply(text: &str) -> (String, Vec<Json>) {
    let lines: Vec<String> = text.lines().map(String::from).collect();
    (esc(&cut(&value(text), 3000)), sections(&lines))
}

/// A reply's text as Slack mrkdwn: plain parts escaped, code as code.
pub fn text(t: &Text) -> String {
    t.0.iter()
        .map(|s| match s {
            Span::Plain(p) => esc(p),
            Span::Strong(p) => format!("*{}*", esc(p)),
            Span::Code(p) => format!("`{}`", esc(&p.replace('`', "'"))),
            Span::Break => "\n".into(),
        })
        .collect()
}

/// One run's steps, for `/offboard status`.
pub fn status_text(view: &RunView) -> String {
    let lines: Vec<String> = view.lines.iter().map(|l| format!("{} {}", badge(l.badge), l.title)).collect();
    format!("`{}` {}: {}\n{}", view.run_id, esc(&view.target_upn), view.state.label(), lines.join("\n"))
}

/// A wizard page, with what to correct under its fields.
pub fn page(p: &Page) -> Json {
    let mut view = modal_with_errors(&p.form, &p.values, &p.errors);
    if let Some(origin) = &p.origin {
        view["private_metadata"] = json!(format!("page:{}:{}", p.form.page, cut(origin, 64)));
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use offboard_core::chat::{Draft, wizard};
    use offboard_core::domain::{PresetName, TenantId};
    use offboard_core::request::Presets;
    use offboard_core::run::RunState;
    use offboard_core::testing::finished_run;

    #[test]
    fn wizard_pages_render() {
        let tenants = vec![TenantId::parse("contoso.com").unwrap(), TenantId::parse("fabrikam.com").unwrap()];
        let presets: Vec<PresetName> = ["standard-leaver", "hostile-exit"].iter().map(|p| PresetName::parse(p).unwrap()).collect();
        // Each page as the standard-leaver preset fills it.
        let draft =
            Draft { user: "alice@contoso.com".into(), preset: Some(presets[0].clone()), options: Presets::builtin(&presets[0]).unwrap(), ..Draft::default() };
        let pages: Vec<Json> = wizard(&tenants, &presets).iter().map(|f| modal(f, &draft.values(f.page))).collect();
        insta::assert_json_snapshot!("wizard", pages);
        insta::assert_json_snapshot!("notice", notice_modal("Offboard", "Looking up *alice@contoso.com* and building the plan…"));
        insta::assert_json_snapshot!("reject", reject_modal("ob-7k2m9q4x1p"));
        insta::assert_snapshot!("help", text(&offboard_core::chat::Conversation::help(crate::server::COMMAND)));
    }

    #[test]
    fn preview_and_status_render() {
        let (mut run, steps, approvals) = finished_run();
        let (_, done) = preview(&PlanPreview::from_run(&run, &approvals));
        insta::assert_json_snapshot!("preview_decided", done);
        run.state = RunState::AwaitingApproval;
        let (text, open) = preview(&PlanPreview::from_run(&run, &[]));
        assert!(text.contains("Zoë"));
        insta::assert_json_snapshot!("preview_open", open);
        let (_, s) = status(&RunView::from_run(&run, &steps));
        insta::assert_json_snapshot!("status", s);
    }

    #[test]
    fn state_values_become_field_values() {
        let state = json!({ "values": {
            "user": { "user": { "type": "external_select", "selected_option": { "value": "alice@contoso.com" } } },
            "lockout": { "lockout": { "type": "checkboxes", "selected_options": [{ "value": "disable_sign_in" }, { "value": "revoke_sessions" }] } },
            "preset": { "preset": { "type": "plain_text_input", "value": null } },
        }});
        let v = values(&state);
        assert_eq!(v["user"], Value::Chosen(vec!["alice@contoso.com".into()]));
        assert_eq!(v["lockout"], Value::Chosen(vec!["disable_sign_in".into(), "revoke_sessions".into()]));
        assert!(!v.contains_key("preset"));
    }

    /// Every text object of a message, with its type.
    fn texts(v: &Json, out: &mut Vec<(String, String)>) {
        match v {
            Json::Object(o) => {
                if let (Some(Json::String(t)), Some(Json::String(kind))) = (o.get("text"), o.get("type")) {
                    out.push((kind.clone(), t.clone()));
                }
                o.values().for_each(|x| texts(x, out));
            }
            Json::Array(a) => a.iter().for_each(|x| texts(x, out)),
            _ => {}
        }
    }

    #[test]
    fn forged_lines_mentions_and_links_stay_inert() {
        let (mut run, _, _) = finished_run();
        run.state = RunState::AwaitingApproval;
        run.target_name = "<!channel> Eve\n• Disable sign-in: skipped".into();
        run.requester_name = "Mallory\nApproved by Chief Security Officer".into();
        let mut request: serde_json::Value = serde_json::from_str(&run.request).unwrap();
        request["reason"] =
            json!("Left.\n• Reset password: skipped\nApproved by *Chief Security Officer* https://evil.example/login <https://evil.example|Slack login>");
        run.request = request.to_string();
        let (fallback, blocks) = preview(&PlanPreview::from_run(&run, &[]));
        insta::assert_json_snapshot!("preview_forged", blocks);
        let mut all = Vec::new();
        texts(&Json::Array(blocks), &mut all);
        for (kind, t) in &all {
            if kind == "mrkdwn" {
                assert!(!t.contains("<!") && !t.contains("<http") && !t.contains("Chief Security"), "person text in mrkdwn: {t}");
            }
            for line in t.lines() {
                assert!(!line.trim_start().starts_with("• Reset password: skipped") && !line.starts_with("Approved by"), "a forged line: {line:?}");
            }
        }
        assert!(all.iter().any(|(k, t)| k == "plain_text" && t.contains("Approved by *Chief Security Officer* https://evil.example/login")), "shown, inert");
        assert!(!fallback.contains('<') && !fallback.contains('\n'), "{fallback}");
    }

    #[test]
    fn mrkdwn_from_users_cannot_mention_or_link() {
        assert_eq!(esc("<!channel> & <http://x|y>"), "&lt;!channel&gt; &amp; &lt;http://x|y&gt;");
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
