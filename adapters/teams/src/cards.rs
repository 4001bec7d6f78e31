//! Core's views as Adaptive Cards 1.5 (the version Teams renders): the approval card with
//! its Universal Action buttons, the live status card and the report's card. Every value
//! from a person or the directory is escaped so Teams' markdown cannot turn it into a link,
//! emphasis or a list, and one line stays one line.

use serde_json::{Value, json};

use offboard_core::chat::views::{Badge, Fact, Mark, PlanPreview, RunView, Who, time};

/// The card's content type in an activity's attachments.
pub const CARD: &str = "application/vnd.microsoft.card.adaptive";
/// Teams' budget for one card, with room for the activity around it.
pub const MAX_CARD_BYTES: usize = 28 * 1024;
pub const APPROVE_VERB: &str = "approve";
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

fn mark(m: Mark) -> &'static str {
    match m {
        Mark::Warning => "⚠️",
        Mark::HighRisk => "🚨",
        Mark::Approved => "✅",
        Mark::Rejected => "⛔",
        Mark::Expired => "⌛",
        Mark::Cancelled => "✖️",
        Mark::Scheduled => "📅",
    }
}

pub fn badge(b: Badge) -> &'static str {
    match b {
        Badge::Pending => "▫️",
        Badge::Running => "⏳",
        Badge::Done => "✅",
        Badge::Skipped => "⏭️",
        Badge::Failed => "❌",
        Badge::Attention => "⚠️",
        Badge::NotRun => "➖",
    }
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
                Fact::Marked(m, t) => format!("{} {}", mark(*m), inert(t)),
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
    body.extend(l.notes.iter().map(|n| text(&format!("{} {}", mark(Mark::Warning), inert(n)))));
    let mut steps: Vec<Value> = l
        .steps
        .iter()
        .map(|s| {
            let mut line = format!("• {}", inert(&s.text));
            if s.high_risk {
                line.push_str(&format!(" {} high risk", mark(Mark::HighRisk)));
            }
            for w in &s.warnings {
                line.push_str(&format!("\n\n{} {}", mark(Mark::Warning), inert(w)));
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
        body.push(json!({ "type": "TextBlock", "text": format!("{} {}", mark(Mark::Warning), inert(e)), "color": "Attention", "wrap": true }));
    }
    card(
        body,
        vec![
            json!({ "type": "Action.Execute", "title": "Reject", "verb": crate::server::REJECT_CONFIRM_VERB, "style": "destructive", "data": { "value": run.to_string() } }),
        ],
    )
}

/// The live status card in the run's thread.
pub fn status(v: &RunView) -> Value {
    let head = format!("Offboarding {} · {} · run {}", inert(&v.target_upn), v.state.label(), v.run_id);
    let mut body = vec![json!({ "type": "TextBlock", "text": head, "weight": "Bolder", "wrap": true })];
    body.extend(
        v.lines.iter().map(|l| json!({ "type": "TextBlock", "text": format!("{} {}", badge(l.badge), inert(&l.text())), "wrap": true, "spacing": "None" })),
    );
    card(body, vec![])
}

/// The report in the thread: Teams bots cannot upload into a channel, so a card with the
/// signed, expiring link.
pub fn report(name: &str, link: &str) -> Value {
    card(
        vec![text("The signed compliance report, for a limited time. Check it with: offboard verify"), text(&inert(name))],
        vec![json!({ "type": "Action.OpenUrl", "title": format!("Download {name}"), "url": link })],
    )
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
        insta::assert_json_snapshot!("reject_reason", reject_reason(&run.id, Some("say why in a few words")));
        insta::assert_json_snapshot!("report", report("ob-7k2m9q4x1p.pdf", "https://offboard.example.com/reports/ob-7k2m9q4x1p.pdf?expires=1&sig=ab"));
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
