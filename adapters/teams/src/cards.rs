//! Core's views as Adaptive Cards 1.5 (the version Teams renders): the approval card with
//! its Universal Action buttons, the live status card and the report's card. Every value
//! from a person or the directory is escaped so Teams' markdown cannot turn it into a link,
//! emphasis or a list, and one line stays one line.

use serde_json::{Value, json};

use offboard_core::chat::views::{Fact, Mark, PlanPreview, RunView, Who, time};
use offboard_core::chat::{FieldKind, Page, Value as Answer, Values};

/// The card's content type in an activity's attachments.
pub const CARD: &str = "application/vnd.microsoft.card.adaptive";
/// Teams' budget for one card, with room for the activity around it.
pub const MAX_CARD_BYTES: usize = 28 * 1024;
pub const APPROVE_VERB: &str = "approve";
/// The typeahead's dataset: searches arrive as `application/search` invokes naming it.
pub const PEOPLE: &str = "offboard.people";
pub const REJECT_VERB: &str = "reject";

/// Escapes what Teams' card markdown acts on: emphasis, links, code and angle brackets
/// anywhere, and a list, heading or quote marker at the start. One line stays one line.
pub fn inert(s: &str) -> String {
    let one = offboard_core::templates::one_line(s);
    // "1." or "1)" at the start would begin a numbered list.
    let digits = one.chars().take_while(char::is_ascii_digit).count();
    let mut out = String::with_capacity(one.len() + 8);
    for (i, c) in one.chars().enumerate() {
        let leading = i == 0 && matches!(c, '-' | '+' | '#') || (digits > 0 && i == digits && matches!(c, '.' | ')'));
        if leading || matches!(c, '\\' | '*' | '_' | '[' | ']' | '~' | '`' | '<' | '>') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn text(s: &str) -> Value {
    json!({ "type": "TextBlock", "text": s, "wrap": true })
}

fn people(list: &[(Who, Option<chrono::DateTime<chrono::Utc>>)]) -> String {
    list.iter().map(|(who, at)| format!("{}{}", inert(&who.name), at.map(|t| format!(" at {}", time(t))).unwrap_or_default())).collect::<Vec<_>>().join(", ")
}

fn fact_set(pairs: &[(&str, Fact)]) -> Value {
    let facts: Vec<Value> = pairs
        .iter()
        .map(|(label, f)| {
            let value = match f {
                Fact::Text(t) => inert(t),
                Fact::People(list) => people(list),
                Fact::Marked(m, t) => format!("{} {}", m.emoji(), inert(t)),
            };
            json!({ "title": label, "value": value })
        })
        .collect();
    json!({ "type": "FactSet", "facts": facts })
}

fn card(body: Vec<Value>, actions: Vec<Value>) -> Value {
    let mut c = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": body,
    });
    if !actions.is_empty() {
        c["actions"] = Value::Array(actions);
    }
    c
}

/// The approval card: the preview's content in core's order, then Approve and Reject as
/// Universal Actions (`Action.Execute`) while the decision is open, else the decision.
pub fn preview(p: &PlanPreview) -> Value {
    let l = p.layout();
    let mut body = vec![json!({ "type": "TextBlock", "text": inert(&l.heading), "size": "Large", "weight": "Bolder", "wrap": true })];
    body.push(fact_set(&l.facts));
    body.extend(l.notes.iter().map(|n| text(&format!("{} {}", Mark::Warning.emoji(), inert(n)))));
    let mut steps: Vec<Value> = l
        .steps
        .iter()
        .map(|s| {
            let mut line = format!("• {}", inert(&s.text));
            if s.high_risk {
                line.push_str(&format!(" {} high risk", Mark::HighRisk.emoji()));
            }
            for w in &s.warnings {
                line.push_str(&format!("\n\n{} {}", Mark::Warning.emoji(), inert(w)));
            }
            text(&line)
        })
        .collect();
    // A plan too long for one card keeps its first steps and says how many are not shown.
    let room = MAX_CARD_BYTES - 6 * 1024;
    let mut used = serde_json::to_string(&body).map(|s| s.len()).unwrap_or(0);
    let total = steps.len();
    let mut kept = Vec::new();
    for s in steps.drain(..) {
        used += s.to_string().len();
        if used > room {
            break;
        }
        kept.push(s);
    }
    if kept.len() < total {
        kept.push(text(&format!("… and {} more steps: `offboard runs show {}`", total - kept.len(), p.run_id)));
    }
    body.push(json!({ "type": "Container", "separator": true, "items": kept }));
    body.push(json!({ "type": "TextBlock", "text": inert(&l.footer), "isSubtle": true, "size": "Small", "wrap": true }));
    let actions = match &l.decision {
        None => vec![
            json!({ "type": "Action.Execute", "title": "Approve", "verb": APPROVE_VERB, "style": "positive", "data": { "value": p.approve.encode() } }),
            json!({ "type": "Action.Execute", "title": "Reject…", "verb": REJECT_VERB, "style": "destructive", "data": { "value": p.reject.encode() } }),
        ],
        Some(decided) => {
            body.push(fact_set(decided));
            vec![]
        }
    };
    card(body, actions)
}

/// Reject asks for a reason first: a card with the field, shown to the clicker in place of
/// the approval card, and the same card again with what to correct.
pub fn reject_reason(run: &offboard_core::domain::RunId, error: Option<&str>) -> Value {
    let mut body = vec![
        json!({ "type": "TextBlock", "text": format!("Reject run {run}"), "weight": "Bolder", "wrap": true }),
        json!({ "type": "Input.Text", "id": "reason", "label": "Reason (shown to the requester)", "isMultiline": true, "isRequired": true, "maxLength": 1000, "errorMessage": "Say why" }),
    ];
    if let Some(e) = error {
        body.push(json!({ "type": "TextBlock", "text": format!("{} {}", Mark::Warning.emoji(), inert(e)), "color": "Attention", "wrap": true }));
    }
    card(
        body,
        vec![
            json!({ "type": "Action.Execute", "title": "Reject", "verb": crate::server::REJECT_CONFIRM_VERB, "style": "destructive", "data": { "value": run.to_string() } }),
        ],
    )
}

/// A wizard page as a dialog's card: each field an input with its current value, what to
/// correct under its field, and the submit button carrying which wizard and page it is.
pub fn page(p: &Page) -> Value {
    let warning = |m: &str| json!({ "type": "TextBlock", "text": format!("{} {}", Mark::Warning.emoji(), inert(m)), "color": "Attention", "wrap": true });
    let mut body: Vec<Value> = p.errors.iter().filter(|e| e.field.is_empty()).map(|e| warning(&e.message)).collect();
    for f in &p.form.fields {
        let current = p.values.get(f.id);
        let text_of = |v: Option<&Answer>| match v {
            Some(Answer::Text(t)) => t.clone(),
            Some(Answer::Chosen(c)) => c.join(","),
            None => String::new(),
        };
        let mut input = match &f.kind {
            FieldKind::Text { multiline, placeholder } => {
                json!({ "type": "Input.Text", "isMultiline": multiline, "placeholder": placeholder, "value": text_of(current), "maxLength": 4000 })
            }
            // A typeahead over the customer tenant's directory (Teams' own people picker
            // sees only the bot's tenant): each keystroke is an `application/search` invoke.
            FieldKind::User => {
                let chosen = text_of(current);
                let known: Vec<Value> = Some(&chosen).filter(|c| !c.is_empty()).map(|c| json!({ "title": c, "value": c })).into_iter().collect();
                json!({ "type": "Input.ChoiceSet", "style": "filtered", "placeholder": "Type a name or address", "choices": known, "choices.data": { "type": "Data.Query", "dataset": PEOPLE }, "value": chosen })
            }
            FieldKind::Select(choices) | FieldKind::Checkboxes(choices) => {
                let multi = matches!(f.kind, FieldKind::Checkboxes(_));
                let options: Vec<Value> = choices.iter().map(|c| json!({ "title": c.label, "value": c.value })).collect();
                json!({ "type": "Input.ChoiceSet", "choices": options, "isMultiSelect": multi, "style": if multi { "expanded" } else { "compact" }, "value": text_of(current) })
            }
        };
        input["id"] = json!(f.id);
        input["label"] = json!(f.label);
        input["isRequired"] = json!(f.required);
        if f.required {
            input["errorMessage"] = json!(format!("{} is needed", f.label));
        }
        body.push(input);
        if let Some(h) = f.hint {
            body.push(json!({ "type": "TextBlock", "text": inert(h), "isSubtle": true, "size": "Small", "wrap": true, "spacing": "None" }));
        }
        body.extend(p.errors.iter().filter(|e| e.field == f.id).map(|e| warning(&e.message)));
    }
    let data = json!({ "wizard": p.key, "page": p.form.page, "origin": p.origin });
    card(body, vec![json!({ "type": "Action.Submit", "title": p.form.submit, "data": data })])
}

/// The dialog around a page: Teams' `task/fetch` and `task/submit` "continue" answer.
pub fn dialog(p: &Page) -> Value {
    json!({ "task": { "type": "continue", "value": {
        "title": format!("Offboard · {} of {} · {}", p.form.page + 1, p.form.pages, p.form.title),
        "height": "large",
        "width": "medium",
        "card": { "contentType": CARD, "content": page(p) },
    } } })
}

/// A page's answers from a dialog's submission (`value.data`): multi-selects come as
/// comma-separated values, every other input as its text.
pub fn answers(p: &offboard_core::chat::Form, data: &Value) -> Values {
    let mut out = Values::new();
    for f in &p.fields {
        let Some(raw) = data[f.id].as_str() else { continue };
        let v = match &f.kind {
            FieldKind::Select(_) => Answer::Chosen(vec![raw.to_string()].into_iter().filter(|s| !s.is_empty()).collect()),
            FieldKind::Checkboxes(_) => Answer::Chosen(raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()),
            FieldKind::Text { .. } | FieldKind::User => Answer::Text(raw.to_string()),
        };
        out.insert(f.id.to_string(), v);
    }
    out
}

/// The card a command answers with when it opens the wizard: Teams opens dialogs only
/// from a click, so a button that fetches the first page.
pub fn open_wizard(p: &Page) -> Value {
    let user = match p.values.get("user") {
        Some(Answer::Text(u)) if !u.is_empty() => format!("Offboard {}", inert(u)),
        _ => "Offboard someone".to_string(),
    };
    let data = json!({ "msteams": { "type": "task/fetch" }, "wizard": p.key, "page": 0, "origin": p.origin, "user": p.values.get("user").map(|v| match v { Answer::Text(t) => t.clone(), Answer::Chosen(c) => c.join(",") }), "preset": p.values.get("preset").and_then(|v| match v { Answer::Chosen(c) => c.first().cloned(), Answer::Text(t) => Some(t.clone()) }) });
    card(
        vec![json!({ "type": "TextBlock", "text": user, "weight": "Bolder", "wrap": true }), text("The wizard opens in a dialog.")],
        vec![json!({ "type": "Action.Submit", "title": "Open the wizard", "data": data })],
    )
}

/// A request refused after the dialog closed: what to correct, and a button back to that
/// page with the answers kept.
pub fn correct(p: &Page) -> Value {
    let mut body = vec![text("Not requested yet: this needs correcting.")];
    body.extend(
        p.errors
            .iter()
            .map(|e| json!({ "type": "TextBlock", "text": format!("{} {}", Mark::Warning.emoji(), inert(&e.message)), "color": "Attention", "wrap": true })),
    );
    let errors: Vec<Value> = p.errors.iter().map(|e| json!({ "field": e.field, "message": e.message })).collect();
    let data = json!({ "msteams": { "type": "task/fetch" }, "wizard": p.key, "page": p.form.page, "errors": errors });
    card(body, vec![json!({ "type": "Action.Submit", "title": format!("Correct page {}", p.form.page + 1), "data": data })])
}

/// People found as someone types, as the typeahead's search response.
pub fn search_results(found: &[offboard_core::snapshot::Person]) -> Value {
    let results: Vec<Value> = found
        .iter()
        .map(|p| json!({ "title": format!("{} ({}){}", p.display_name, p.upn, if p.enabled { "" } else { ", sign-in blocked" }), "value": p.upn.to_string() }))
        .collect();
    json!({ "statusCode": 200, "type": "application/vnd.microsoft.search.searchResponse", "value": { "results": results } })
}

/// The live status card in the run's thread.
pub fn status(v: &RunView) -> Value {
    let head = format!("Offboarding {} · {} · run {}", inert(&v.target_upn), v.state.label(), v.run_id);
    let mut body = vec![json!({ "type": "TextBlock", "text": head, "weight": "Bolder", "wrap": true })];
    body.extend(
        v.lines.iter().map(|l| json!({ "type": "TextBlock", "text": format!("{} {}", l.badge.emoji(), inert(&l.text())), "wrap": true, "spacing": "None" })),
    );
    card(body, vec![])
}

/// The report's copy in the channel's Files, beside the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilesCopy<'a> {
    /// Filing is off (not granted, or not a channel).
    None,
    /// Filed; its address in SharePoint.
    Filed(&'a str),
    /// Filing was on and failed: why.
    Failed(&'a str),
}

/// The report in the thread: Teams bots cannot upload into a channel, so a card with the
/// signed, expiring link, and where the channel's Files hold a copy, a link to that.
pub fn report(name: &str, link: &str, copy: FilesCopy) -> Value {
    let mut body = vec![text("The signed compliance report, for a limited time. Check it with: offboard verify"), text(&inert(name))];
    let mut actions = vec![json!({ "type": "Action.OpenUrl", "title": format!("Download {name}"), "url": link })];
    match copy {
        FilesCopy::None => {}
        FilesCopy::Filed(url) => {
            body.push(text("A copy is kept in this channel's Files."));
            actions.push(json!({ "type": "Action.OpenUrl", "title": "Open in Files", "url": url }));
        }
        FilesCopy::Failed(why) => body.push(text(&format!("No copy in this channel's Files: {}", inert(why)))),
    }
    card(body, actions)
}

/// An activity carrying one card, with a plain summary for notifications.
pub fn activity(summary: &str, card: Value) -> Value {
    json!({ "type": "message", "summary": offboard_core::templates::one_line(summary), "attachments": [{ "contentType": CARD, "content": card }] })
}

/// A plain text message (a reply in the thread), its markdown escaped line by line.
pub fn message(text: &str) -> Value {
    let lines: Vec<String> = text.lines().map(inert).collect();
    json!({ "type": "message", "textFormat": "markdown", "text": lines.join("\n\n") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use offboard_core::run::RunState;

    #[test]
    fn every_card_as_teams_gets_it() {
        let (mut run, steps, approvals) = offboard_core::testing::finished_run();
        let decided = preview(&PlanPreview::from_run(&run, &approvals));
        insta::assert_json_snapshot!("preview_decided", decided);
        run.state = RunState::AwaitingApproval;
        let open = preview(&PlanPreview::from_run(&run, &[]));
        insta::assert_json_snapshot!("preview_open", open);
        insta::assert_json_snapshot!("status", status(&RunView::from_run(&run, &steps)));
        let conv_page = offboard_core::chat::Page {
            key: "teams:act-1".into(),
            form: offboard_core::chat::wizard(&[], &[]).swap_remove(1),
            values: Values::new(),
            errors: vec![offboard_core::chat::FieldError { field: "device_action".into(), message: "wipe needs two approvers".into() }],
            origin: Some("19:it@thread.tacv2".into()),
        };
        insta::assert_json_snapshot!("page", dialog(&conv_page));
        insta::assert_json_snapshot!("correct", correct(&conv_page));
        let mut first = conv_page.clone();
        first.form = offboard_core::chat::wizard(&[], &[]).swap_remove(0);
        first.values.insert("user".into(), Answer::Text("alice@contoso.com".into()));
        first.values.insert("preset".into(), Answer::Chosen(vec!["standard-leaver".into()]));
        insta::assert_json_snapshot!("open_wizard", open_wizard(&first));
        insta::assert_json_snapshot!("reject_reason", reject_reason(&run.id, Some("say why in a few words")));
        let link = "https://offboard.example.com/reports/ob-7k2m9q4x1p.pdf?expires=1&sig=ab";
        insta::assert_json_snapshot!("report", report("ob-7k2m9q4x1p.pdf", link, FilesCopy::None));
        let filed = "https://contoso.sharepoint.com/sites/IT/Shared%20Documents/IT%20Approvals/ob-7k2m9q4x1p.pdf";
        insta::assert_json_snapshot!("report_filed", report("ob-7k2m9q4x1p.pdf", link, FilesCopy::Filed(filed)));
        insta::assert_json_snapshot!("report_not_filed", report("ob-7k2m9q4x1p.pdf", link, FilesCopy::Failed("Graph answered 503 *twice*")));
        for c in [&decided, &open] {
            assert!(c.to_string().len() < MAX_CARD_BYTES);
        }
    }

    #[test]
    fn values_are_inert() {
        assert_eq!(inert("[click](https://evil.example) **now**\n- item"), "\\[click\\](https://evil.example) \\*\\*now\\*\\* - item");
        assert_eq!(inert("- a list"), "\\- a list");
        assert_eq!(inert("1. first"), "1\\. first");
        assert_eq!(inert("<at>Everyone</at>"), "\\<at\\>Everyone\\</at\\>");
        assert_eq!(inert("ob-7k2m9q4x1p sign-in"), "ob-7k2m9q4x1p sign-in");
    }
}
