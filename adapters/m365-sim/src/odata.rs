//! OData conventions shared by the simulator's Graph handlers: Graph's error envelope and
//! verbatim messages, `$select` projection, and opaque `$skiptoken` paging.

use serde_json::{Map, Value, json};

use crate::world::{PageCursor, World};

/// One Graph response before it is put on the wire (or into a `$batch` item).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self { status: 200, headers: vec![], body: Some(body) }
    }
    pub fn status(status: u16, body: Value) -> Self {
        Self { status, headers: vec![], body: Some(body) }
    }
    pub fn no_content() -> Self {
        Self { status: 204, headers: vec![], body: None }
    }
    pub fn accepted() -> Self {
        Self { status: 202, headers: vec![], body: None }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    /// A Graph error; `innerError` gets its request id and date when the reply is sent.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::status(status, json!({"error": {"code": code, "message": message.into(), "innerError": {}}}))
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub fn not_found(id: &str) -> Reply {
    Reply::error(404, "Request_ResourceNotFound", format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."))
}

pub fn denied() -> Reply {
    Reply::error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
}

pub fn synced_refusal() -> Reply {
    Reply::error(
        400,
        "Request_BadRequest",
        "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.",
    )
}

pub fn bad_request(message: impl Into<String>) -> Reply {
    Reply::error(400, "Request_BadRequest", message)
}

pub fn mailbox_not_enabled() -> Reply {
    Reply::error(404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise.")
}

pub fn unsupported_query() -> Reply {
    Reply::error(
        400,
        "Request_UnsupportedQuery",
        "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
    )
}

#[derive(Debug, Clone, Default)]
pub struct Query {
    pub pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: &str) -> Self {
        Self { pairs: serde_urlencoded::from_str::<Vec<(String, String)>>(raw).unwrap_or_default() }
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str())
    }
    /// The query without paging tokens, for building the next link.
    pub fn without_tokens(&self) -> Vec<(String, String)> {
        self.pairs.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken") && !k.eq_ignore_ascii_case("$deltatoken")).cloned().collect()
    }
}

/// Applies `$select` to `full`; without it, keeps `default` (plus `id`). An unknown property
/// is Graph's 400.
pub fn project(full: &Value, select: Option<&str>, default: &[&str], type_name: &str) -> Result<Value, Reply> {
    let Some(obj) = full.as_object() else { return Ok(full.clone()) };
    let mut out = Map::new();
    let wanted: Vec<String> = match select {
        Some(s) if !s.trim().is_empty() => s.split(',').map(|p| p.trim().to_string()).collect(),
        _ => {
            if default.is_empty() {
                return Ok(full.clone());
            }
            default.iter().map(|s| s.to_string()).collect()
        }
    };
    for (k, v) in obj.iter().filter(|(k, _)| k.starts_with('@')) {
        out.insert(k.clone(), v.clone());
    }
    out.insert("id".into(), obj.get("id").cloned().unwrap_or(Value::Null));
    for w in wanted {
        match obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(&w)) {
            Some((k, v)) => {
                out.insert(k.clone(), v.clone());
            }
            None if select.is_some() => {
                return Err(bad_request(format!("Could not find a property named '{w}' on type '{type_name}'.")));
            }
            None => {}
        }
    }
    Ok(Value::Object(out))
}

/// Page sizes and the `@odata.context` of a listing.
#[derive(Debug, Clone, Copy)]
pub struct PageSpec<'a> {
    pub default_top: usize,
    pub max_top: usize,
    pub context: &'a str,
}

/// Pages a listing: `$top` (default `default_top`, at most `max_top`), and an opaque
/// `$skiptoken` that stands for the next offset. The next link repeats the caller's query.
pub fn page(world: &mut World, base: &str, path: &str, q: &Query, items: Vec<Value>, spec: PageSpec) -> Result<Value, Reply> {
    let PageSpec { default_top, max_top, context } = spec;
    let top = match q.get("$top") {
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=max_top).contains(&n) => n,
            _ => return Err(bad_request(format!("Invalid page size specified: '{t}'. Must be between 1 and {max_top} inclusive."))),
        },
        None => default_top,
    };
    let offset = match q.get("$skiptoken") {
        Some(tok) => match world.pages.get(tok) {
            Some(c) if c.path.eq_ignore_ascii_case(path) => c.offset,
            _ => return Err(bad_request("Invalid $skiptoken value.")),
        },
        None => 0,
    };
    let total = items.len();
    let mut body = Map::new();
    body.insert("@odata.context".into(), json!(format!("{base}/v1.0/$metadata#{context}")));
    if q.get("$count").is_some_and(|c| c.eq_ignore_ascii_case("true")) {
        body.insert("@odata.count".into(), json!(total));
    }
    let end = (offset + top).min(total);
    let value: Vec<Value> = items.into_iter().skip(offset).take(end.saturating_sub(offset)).collect();
    if end < total {
        let token = format!("RFNwdAIAAQAAA{}", hex::encode(rand::random::<[u8; 16]>()));
        world.pages.insert(token.clone(), PageCursor { path: path.to_string(), offset: end });
        let mut pairs = q.without_tokens();
        pairs.push(("$skiptoken".into(), token));
        let qs = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        body.insert("@odata.nextLink".into(), json!(format!("{base}/v1.0{path}?{qs}")));
    }
    body.insert("value".into(), Value::Array(value));
    Ok(Value::Object(body))
}
