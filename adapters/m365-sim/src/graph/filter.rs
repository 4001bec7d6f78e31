//! `$filter` and `$search` over users, as Graph accepts them (and refuses what it does
//! not), and `principalId` filters on role assignments.

use super::*;

pub(super) type UserPredicate = Box<dyn Fn(&User) -> bool>;

pub(super) fn filter_users<'t>(t: &'t Tenant, q: &Query, eventual: bool) -> Result<Vec<&'t User>, Reply> {
    let mut users: Vec<&User> = t.users.values().collect();
    users.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(search) = q.get("$search") {
        if !eventual {
            return Err(unsupported_query());
        }
        let terms: Vec<(String, String)> = search
            .split(" OR ")
            .filter_map(|c| {
                let c = c.trim().trim_matches('"');
                c.split_once(':').map(|(p, v)| (p.to_ascii_lowercase(), v.to_ascii_lowercase()))
            })
            .collect();
        if terms.is_empty() {
            return Err(bad_request("Syntax error: expected '\"property:value\"' in $search."));
        }
        users.retain(|u| {
            terms.iter().any(|(p, v)| {
                let field = match p.as_str() {
                    "displayname" => &u.display_name,
                    "userprincipalname" | "mail" => &u.upn,
                    _ => return false,
                };
                field.to_ascii_lowercase().split([' ', '@', '.']).any(|w| w.starts_with(v.as_str())) || field.to_ascii_lowercase().starts_with(v.as_str())
            })
        });
    }
    if let Some(filter) = q.get("$filter") {
        let advanced = filter.contains(" ne ") || filter.to_ascii_lowercase().contains("endswith(") || filter.to_ascii_lowercase().starts_with("not");
        if advanced && !(eventual && q.get("$count").is_some_and(|c| c == "true")) {
            return Err(Reply::error(400, "Request_UnsupportedQuery", "Unsupported Query."));
        }
        let clauses = filter.split(" or ").map(str::trim).collect::<Vec<_>>();
        let mut preds: Vec<UserPredicate> = Vec::new();
        for c in clauses {
            preds.push(parse_user_clause(c)?);
        }
        users.retain(|u| preds.iter().any(|p| p(u)));
    }
    Ok(users)
}

pub(super) fn quoted(s: &str) -> Option<String> {
    let s = s.trim();
    s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).map(|s| s.replace("''", "'"))
}

pub(super) fn user_field(u: &User, p: &str) -> Option<String> {
    Some(match p.to_ascii_lowercase().as_str() {
        "displayname" => u.display_name.clone(),
        "userprincipalname" | "mail" => u.upn.clone(),
        "id" => u.id.clone(),
        "jobtitle" => u.job_title.clone().unwrap_or_default(),
        "department" => u.department.clone().unwrap_or_default(),
        "accountenabled" => u.account_enabled.to_string(),
        "usertype" => if u.guest { "Guest" } else { "Member" }.into(),
        _ => return None,
    })
}

pub(super) fn parse_user_clause(c: &str) -> Result<UserPredicate, Reply> {
    let unsupported =
        || Reply::error(400, "Request_UnsupportedQuery", format!("Unsupported or invalid query filter clause specified for property of type '{USER_TYPE}'."));
    let lower = c.to_ascii_lowercase();
    for (func, ends) in [("startswith(", false), ("endswith(", true)] {
        if let Some(rest) = lower.strip_prefix(func) {
            let inner = &c[func.len()..c.len() - 1];
            let (prop, val) = inner.split_once(',').ok_or_else(unsupported)?;
            let prop = prop.trim().to_string();
            let val = quoted(val).ok_or_else(unsupported)?.to_ascii_lowercase();
            if !rest.ends_with(')') || user_field(&User::placeholder(), &prop).is_none() {
                return Err(unsupported());
            }
            return Ok(Box::new(move |u| {
                let f = user_field(u, &prop).unwrap_or_default().to_ascii_lowercase();
                if ends { f.ends_with(&val) } else { f.starts_with(&val) }
            }));
        }
    }
    for (op, neg) in [(" eq ", false), (" ne ", true)] {
        if let Some((prop, val)) = c.split_once(op) {
            let prop = prop.trim().to_string();
            if user_field(&User::placeholder(), &prop).is_none() {
                return Err(unsupported());
            }
            let val = quoted(val).unwrap_or_else(|| val.trim().to_string()).to_ascii_lowercase();
            return Ok(Box::new(move |u| (user_field(u, &prop).unwrap_or_default().to_ascii_lowercase() == val) != neg));
        }
    }
    Err(unsupported())
}

impl User {
    fn placeholder() -> Self {
        User {
            id: String::new(),
            upn: String::new(),
            display_name: String::new(),
            job_title: None,
            department: None,
            manager: None,
            account_enabled: true,
            synced: false,
            immutable_id: None,
            guest: false,
            usage_location: None,
            direct_licences: vec![],
            auth_methods: vec![],
            sessions_valid_from: String::new(),
            password_changed: None,
            password: None,
            created: String::new(),
        }
    }
}

pub(super) fn principal_filter(q: &Query) -> Result<Option<String>, Reply> {
    match q.get("$filter") {
        None => Ok(None),
        Some(f) => {
            let (p, v) = f.split_once(" eq ").ok_or_else(|| bad_request(format!("Invalid filter clause: {f}")))?;
            if !p.trim().eq_ignore_ascii_case("principalId") {
                return Err(bad_request(format!("Invalid filter clause: {f}")));
            }
            Ok(Some(quoted(v).ok_or_else(|| bad_request(format!("Invalid filter clause: {f}")))?))
        }
    }
}
