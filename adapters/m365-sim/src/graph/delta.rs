//! `users/delta`: a first round of pages, then only what changed since its cursor.

use super::*;

const DELTA_PAGE: usize = 200;

/// users/delta: a full enumeration then changes since, with `@removed` for deleted users.
pub(super) fn delta(w: &mut World, ti: usize, ctx: &Ctx, q: &Query) -> Reply {
    let tid = w.tenants[ti].id.clone();
    let token = q.get("$skiptoken").or(q.get("$deltatoken"));
    let cursor = match token {
        Some("latest") if q.get("$deltatoken").is_some() => {
            DeltaCursor { tenant: tid.clone(), seq: w.tenants[ti].change_seq(), issued: ctx.now, offset: None, select: q.get("$select").map(String::from) }
        }
        Some(tok) => match w.deltas.get(tok) {
            Some(c) if c.tenant == tid => {
                if ctx.now.saturating_sub(c.issued) > ctx.delta_expiry {
                    return Reply::error(
                        400,
                        "syncStateNotFound",
                        "The sync state generation is not found. Please start a new sync with an empty delta token.",
                    );
                }
                c.clone()
            }
            _ => return bad_request("Invalid delta or skip token."),
        },
        None => DeltaCursor { tenant: tid.clone(), seq: 0, issued: ctx.now, offset: Some(0), select: q.get("$select").map(String::from) },
    };
    let t = &w.tenants[ti];
    let head = t.change_seq();
    let latest = token == Some("latest");
    // (id, removed) in change order, each user once with its latest state.
    let mut changed: Vec<(String, bool)> = Vec::new();
    if !latest {
        if cursor.seq == 0 {
            changed = t.users.keys().map(|k| (k.clone(), false)).collect();
        } else {
            for (_, id, _) in t.changes.iter().filter(|(s, ..)| *s > cursor.seq) {
                changed.retain(|(x, _)| x != id);
                changed.push((id.clone(), !t.users.contains_key(id)));
            }
        }
    }
    let offset = cursor.offset.unwrap_or(0);
    let end = (offset + DELTA_PAGE).min(changed.len());
    let mut items = Vec::new();
    for (id, removed) in &changed[offset.min(end)..end] {
        if *removed {
            let reason = if t.deleted.contains_key(id) { "changed" } else { "deleted" };
            items.push(json!({"id": id, "@removed": {"reason": reason}}));
        } else {
            match project(&user_json(t, &t.users[id]), cursor.select.as_deref(), USER_DEFAULT, USER_TYPE) {
                Ok(v) => items.push(v),
                Err(e) => return e,
            }
        }
    }
    let mut body = json!({"@odata.context": format!("{}/v1.0/$metadata#users", ctx.base), "value": items});
    let next = format!("sim{}", hex::encode(rand::random::<[u8; 16]>()));
    if end < changed.len() {
        w.deltas.insert(next.clone(), DeltaCursor { offset: Some(end), ..cursor });
        body["@odata.nextLink"] = json!(format!("{}/v1.0/users/delta?$skiptoken={next}", ctx.base));
    } else {
        w.deltas.insert(next.clone(), DeltaCursor { tenant: tid, seq: head.max(1), issued: ctx.now, offset: None, select: cursor.select });
        body["@odata.deltaLink"] = json!(format!("{}/v1.0/users/delta?$deltatoken={next}", ctx.base));
    }
    Reply::ok(body)
}
