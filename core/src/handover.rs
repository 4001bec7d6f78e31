//! Texts said on the leaver's behalf: out-of-office replies and the new display name. They
//! come from people (the wizard, a preset, the operator's `oof/*.txt`), so they are never
//! templates: a fixed set of `{{ placeholder }}`s is replaced literally, anything else in
//! braces is refused, and each text has a length limit. Nothing here can loop or grow.

use crate::snapshot::UserSnapshot;

/// The placeholders a hand-over text may use, with what each becomes.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("user.display_name", "the leaver's display name"),
    ("displayName", "the leaver's display name"),
    ("user.upn", "the leaver's sign-in address"),
    ("manager.name", "the manager's display name"),
    ("manager.email", "the manager's address"),
    ("company", "the organisation's name"),
];

/// Exchange keeps automatic replies far longer, but a reply is read by people.
pub const MAX_REPLY_CHARS: usize = 4000;
/// Entra's limit for `displayName`.
pub const MAX_NAME_CHARS: usize = 256;

/// One `{{ … }}` found in a text, by its trimmed name.
fn placeholders(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { return Err("a \"{{\" is never closed with \"}}\"".into()) };
        out.push(after[..close].trim().to_string());
        rest = &after[close + 2..];
    }
    if rest.contains("}}") {
        return Err("a \"}}\" has no \"{{\" before it".into());
    }
    Ok(out)
}

fn known() -> String {
    PLACEHOLDERS.iter().map(|(p, _)| format!("{{{{ {p} }}}}")).collect::<Vec<_>>().join(", ")
}

/// Checks a text before it is accepted: known placeholders only, no template syntax, within
/// `max` characters. The message is for the person who typed it.
pub fn check(text: &str, max: usize) -> Result<(), String> {
    if text.chars().count() > max {
        return Err(format!("at most {max} characters (this is {})", text.chars().count()));
    }
    if text.contains("{%") || text.contains("{#") {
        return Err(format!("only placeholders are filled in, not template code; use {}", known()));
    }
    for p in placeholders(text)? {
        if !PLACEHOLDERS.iter().any(|(k, _)| *k == p) {
            let shown: String = p.chars().take(40).collect();
            return Err(format!("\"{{{{ {shown} }}}}\" is not a placeholder; use {}", known()));
        }
    }
    Ok(())
}

/// Whether the text names the manager.
pub fn names_manager(text: &str) -> bool {
    placeholders(text).is_ok_and(|ps| ps.iter().any(|p| p.starts_with("manager.")))
}

/// The values a text is filled with for one leaver. `manager` is `None` when the leaver has
/// no manager who can take anything over; a text that names them is then not sent (the plan
/// says so), so no stand-in phrase ever reaches a customer.
pub struct Values {
    pub display_name: String,
    pub upn: String,
    pub manager_name: Option<String>,
    pub manager_email: Option<String>,
    pub company: Option<String>,
}

impl Values {
    pub fn of(user: &UserSnapshot, manager_usable: bool) -> Self {
        let m = user.manager.as_ref().filter(|_| manager_usable);
        Values {
            display_name: user.display_name.clone(),
            upn: user.upn.to_string(),
            manager_name: m.map(|m| m.display_name.clone()),
            manager_email: m.map(|m| m.upn.to_string()),
            company: user.company.clone(),
        }
    }
}

/// Fills the placeholders literally. `Err` names the placeholder that has no value here.
pub fn fill(text: &str, v: &Values) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return Ok(out);
        };
        let name = after[..close].trim();
        let value = match name {
            "user.display_name" | "displayName" => Some(v.display_name.as_str()),
            "user.upn" => Some(v.upn.as_str()),
            "manager.name" => v.manager_name.as_deref(),
            "manager.email" => v.manager_email.as_deref(),
            "company" => v.company.as_deref(),
            other => return Err(format!("\"{{{{ {other} }}}}\" is not a placeholder")),
        };
        match value {
            Some(s) => out.push_str(s),
            None => return Err(name.to_string()),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The new display name a rename template gives, idempotently: a name that already has
/// the template's text around `{{ displayName }}` keeps it, so running the step on its own
/// result changes nothing ("ZZ Hal" stays "ZZ Hal", never "ZZ ZZ Hal").
pub fn rename(template: &str, v: &Values) -> Result<String, String> {
    let marker = ["{{ displayName }}", "{{displayName}}", "{{ user.display_name }}", "{{user.display_name}}"].into_iter().find(|m| template.contains(*m));
    if let Some(m) = marker
        && template.matches(m).count() == 1
    {
        let (before, after) = template.split_once(m).expect("contains the marker");
        let bare = Values { display_name: String::new(), ..clone_values(v) };
        let (prefix, suffix) = (fill(before, &bare)?, fill(after, &bare)?);
        let name = &v.display_name;
        if name.len() >= prefix.len() + suffix.len() && name.starts_with(&prefix) && name.ends_with(&suffix) && !(prefix.is_empty() && suffix.is_empty()) {
            return Ok(name.clone());
        }
    }
    fill(template, v)
}

/// The name before an earlier run's rename, if the current name carries the template's text
/// around `{{ displayName }}`: what a re-run's out-of-office texts should say.
pub fn name_before_rename(template: &str, current: &str, v: &Values) -> Option<String> {
    let marker = ["{{ displayName }}", "{{displayName}}", "{{ user.display_name }}", "{{user.display_name}}"].into_iter().find(|m| template.contains(*m))?;
    let (before, after) = template.split_once(marker)?;
    let bare = Values { display_name: String::new(), ..clone_values(v) };
    let (prefix, suffix) = (fill(before, &bare).ok()?, fill(after, &bare).ok()?);
    if prefix.is_empty() && suffix.is_empty() {
        return None;
    }
    let inner = current.strip_prefix(prefix.as_str())?.strip_suffix(suffix.as_str())?;
    (!inner.trim().is_empty()).then(|| inner.to_string())
}

fn clone_values(v: &Values) -> Values {
    Values {
        display_name: v.display_name.clone(),
        upn: v.upn.clone(),
        manager_name: v.manager_name.clone(),
        manager_email: v.manager_email.clone(),
        company: v.company.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values {
            display_name: "Zoë Ørsted".into(),
            upn: "zoe@contoso.com".into(),
            manager_name: Some("Morgan".into()),
            manager_email: Some("morgan@contoso.com".into()),
            company: Some("Contoso".into()),
        }
    }

    #[test]
    fn placeholders_are_replaced_literally() {
        let v = values();
        assert_eq!(fill("{{ user.display_name }} left {{company}}. Ask {{ manager.name }}.", &v).unwrap(), "Zoë Ørsted left Contoso. Ask Morgan.");
        // A value that looks like a placeholder stays as it is: one pass, no re-reading.
        let tricky = Values { display_name: "{{ company }}".into(), ..values() };
        assert_eq!(fill("{{ displayName }}", &tricky).unwrap(), "{{ company }}");
        assert_eq!(fill("50% off {{ ", &v).unwrap(), "50% off {{ ");
    }

    #[test]
    fn template_code_and_unknown_names_are_refused() {
        for bad in
            ["{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "{{ \"x\" * 100000000 }}", "{{ manager.nmae }}", "{# note #}"]
        {
            assert!(check(bad, MAX_REPLY_CHARS).is_err(), "{bad}");
        }
        assert!(check(&"a".repeat(MAX_REPLY_CHARS + 1), MAX_REPLY_CHARS).unwrap_err().contains("at most 4000"));
        assert!(check("{{ manager.name }} and {{ company }}", MAX_REPLY_CHARS).is_ok());
    }

    #[test]
    fn a_missing_manager_is_an_error_not_a_stand_in() {
        let v = Values { manager_name: None, manager_email: None, ..values() };
        assert_eq!(fill("Please contact {{ manager.name }}.", &v), Err("manager.name".to_string()));
        assert!(names_manager("Please contact {{manager.email}}"));
        assert!(!names_manager("Please call reception."));
    }

    #[test]
    fn renaming_twice_changes_nothing() {
        let v = Values { display_name: "Hal Halfdone".into(), ..values() };
        let once = rename("ZZ {{ displayName }}", &v).unwrap();
        assert_eq!(once, "ZZ Hal Halfdone");
        let again = rename("ZZ {{ displayName }}", &Values { display_name: once.clone(), ..values() }).unwrap();
        assert_eq!(again, once);
        assert_eq!(rename("{{ displayName }} (left)", &Values { display_name: "Hal (left)".into(), ..values() }).unwrap(), "Hal (left)");
        assert_eq!(rename("Former employee", &v).unwrap(), "Former employee");
        assert_eq!(name_before_rename("ZZ {{ displayName }}", "ZZ Hal Halfdone", &v).as_deref(), Some("Hal Halfdone"));
        assert_eq!(name_before_rename("ZZ {{ displayName }}", "Hal Halfdone", &v), None);
    }
}
