//! The Microsoft Graph v1.0 client: single calls, `$batch` (at most 20 per envelope, with
//! per-item retries of throttled or failed reads), and paging through `@odata.nextLink`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::Resource;
use crate::error::ApiError;
use crate::pacing::Lane;
use crate::transport::{Body, Cx, Replay, Req, Resp, Transport};

pub const BATCH_LIMIT: usize = 20;

/// One request of a batch. `path` is relative to the version, e.g. `/users/{id}`.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub method: &'static str,
    pub path: String,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
    /// Runs only after this item succeeded (Graph answers 424 otherwise).
    pub depends_on: Option<String>,
}

impl Item {
    pub fn get(id: impl Into<String>, path: impl Into<String>) -> Self {
        Self { id: id.into(), method: "GET", path: path.into(), body: None, headers: vec![], depends_on: None }
    }

    pub fn delete(id: impl Into<String>, path: impl Into<String>) -> Self {
        Self { id: id.into(), method: "DELETE", path: path.into(), body: None, headers: vec![], depends_on: None }
    }

    pub fn post(id: impl Into<String>, path: impl Into<String>, body: Value) -> Self {
        Self { id: id.into(), method: "POST", path: path.into(), body: Some(body), headers: vec![], depends_on: None }
    }

    pub fn patch(id: impl Into<String>, path: impl Into<String>, body: Value) -> Self {
        Self { id: id.into(), method: "PATCH", path: path.into(), body: Some(body), headers: vec![], depends_on: None }
    }

    pub fn after(mut self, id: &str) -> Self {
        self.depends_on = Some(id.to_string());
        self
    }

    /// Advanced directory queries need `ConsistencyLevel: eventual`.
    pub fn eventual(mut self) -> Self {
        self.headers.push(("ConsistencyLevel", "eventual".into()));
        self
    }
}

fn graph_error(r: &Resp) -> ApiError {
    let e = &r.body["error"];
    let code = e["code"].as_str().unwrap_or("UnknownError").to_string();
    let message = e["message"].as_str().map(String::from).unwrap_or_else(|| format!("HTTP {}", r.status));
    r.error(code, message)
}

#[derive(Clone)]
pub struct Graph {
    transport: Arc<Transport>,
    /// `{graph}/v1.0`.
    base: String,
}

impl Graph {
    pub fn new(transport: Arc<Transport>, graph_base: &str) -> Self {
        Self { transport, base: format!("{}/v1.0", graph_base.trim_end_matches('/')) }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.base) }
    }

    /// The `@odata.id` a `$ref` write names an object by.
    pub fn object_ref(&self, id: &str) -> String {
        format!("{}/directoryObjects/{id}", self.base)
    }

    fn relative<'p>(&self, url: &'p str) -> &'p str {
        url.strip_prefix(self.base.as_str()).unwrap_or(url)
    }

    /// One call; a non-2xx answer is an [`ApiError`].
    pub async fn call(&self, cx: Cx<'_>, method: Method, path: &str, body: Option<Value>, replay: Replay) -> Result<Value, ApiError> {
        let url = self.url(path);
        let lane = Lane::for_graph(method.as_str(), self.relative(&url));
        let req = Req { method, url, body: body.map_or(Body::None, Body::Json), headers: vec![], resource: Resource::Graph, lane, replay };
        let r = self.transport.send(cx, &req).await?;
        if r.ok() { Ok(r.body) } else { Err(graph_error(&r)) }
    }

    /// Uploads a file in one request (Graph's simple upload, for files up to 250 MB). A
    /// path-addressed upload replaces a file of the same name, so it may repeat.
    pub async fn put_content(&self, cx: Cx<'_>, path: &str, content_type: &'static str, data: Vec<u8>) -> Result<Value, ApiError> {
        let url = self.url(path);
        let lane = Lane::for_graph("PUT", self.relative(&url));
        let req =
            Req { method: Method::PUT, url, body: Body::Bytes { content_type, data }, headers: vec![], resource: Resource::Graph, lane, replay: Replay::Safe };
        let r = self.transport.send(cx, &req).await?;
        if r.ok() { Ok(r.body) } else { Err(graph_error(&r)) }
    }

    pub async fn get(&self, cx: Cx<'_>, path: &str) -> Result<Value, ApiError> {
        self.call(cx, Method::GET, path, None, Replay::Safe).await
    }

    /// Every item of a collection, following `@odata.nextLink` exactly as returned.
    pub async fn all(&self, cx: Cx<'_>, path: &str) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(p) = next.take() {
            let page = self.get(cx, &p).await?;
            out.extend(page["value"].as_array().cloned().unwrap_or_default());
            next = page["@odata.nextLink"].as_str().map(String::from);
        }
        Ok(out)
    }

    /// Runs independent requests in `$batch` envelopes of at most 20. Items that come back
    /// throttled or failing transiently are sent again (after the longest Retry-After), so
    /// only items that may repeat belong here. Results are keyed by item id.
    pub async fn batch(&self, cx: Cx<'_>, items: Vec<Item>) -> Result<HashMap<String, Result<Value, ApiError>>, ApiError> {
        self.batches(cx, items, Replay::Safe).await
    }

    /// Like [`Graph::batch`] for items that must not repeat (a password reset, a device
    /// retire): only a throttled item, which Graph did not run, is sent again; a lost
    /// envelope or a failed item goes back to the caller, who reads back before retrying.
    pub async fn batch_once(&self, cx: Cx<'_>, items: Vec<Item>) -> Result<HashMap<String, Result<Value, ApiError>>, ApiError> {
        self.batches(cx, items, Replay::Once).await
    }

    async fn batches(&self, cx: Cx<'_>, items: Vec<Item>, replay: Replay) -> Result<HashMap<String, Result<Value, ApiError>>, ApiError> {
        let mut results = HashMap::new();
        let futures = items.chunks(BATCH_LIMIT).map(|chunk| self.batch_chunk(cx, chunk.to_vec(), replay));
        for r in futures_util::future::join_all(futures).await {
            results.extend(r?);
        }
        Ok(results)
    }

    async fn batch_chunk(&self, cx: Cx<'_>, mut pending: Vec<Item>, replay: Replay) -> Result<HashMap<String, Result<Value, ApiError>>, ApiError> {
        let mut results = HashMap::new();
        let max_rounds = 4;
        for round in 1..=max_rounds {
            let requests: Vec<Value> = pending
                .iter()
                .map(|i| {
                    let mut r = json!({"id": i.id, "method": i.method, "url": i.path});
                    let mut headers = serde_json::Map::new();
                    for (k, v) in &i.headers {
                        headers.insert((*k).to_string(), json!(v));
                    }
                    if let Some(b) = &i.body {
                        r["body"] = b.clone();
                        headers.insert("Content-Type".into(), json!("application/json"));
                    }
                    if !headers.is_empty() {
                        r["headers"] = Value::Object(headers);
                    }
                    // A dependency retried in an earlier round has already succeeded.
                    if let Some(d) = i.depends_on.as_ref().filter(|d| pending.iter().any(|p| &p.id == *d)) {
                        r["dependsOn"] = json!([d]);
                    }
                    r
                })
                .collect();
            let req = Req {
                method: Method::POST,
                url: format!("{}/$batch", self.base),
                body: Body::Json(json!({"requests": requests})),
                headers: vec![],
                resource: Resource::Graph,
                lane: Lane::Batch(pending.iter().map(|i| Lane::for_graph(i.method, &i.path)).collect()),
                replay,
            };
            let r = self.transport.send(cx, &req).await?;
            if !r.ok() {
                return Err(graph_error(&r));
            }
            let mut answered = Vec::new();
            for resp in r.body["responses"].as_array().cloned().unwrap_or_default() {
                let id = resp["id"].as_str().unwrap_or_default().to_string();
                let status = resp["status"].as_u64().unwrap_or(0) as u16;
                let h = |k: &str| resp["headers"].as_object().and_then(|m| m.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone()));
                let request_id = h("request-id").and_then(|v| v.as_str().map(String::from)).or_else(|| r.request_id.clone());
                let ra = h("retry-after").and_then(|v| v.as_str().and_then(|s| s.parse::<f64>().ok()).or(v.as_f64())).map(Duration::from_secs_f64);
                cx.trace.record(request_id.as_deref().filter(|id| Some(*id) != r.request_id.as_deref()));
                answered.push((id, Resp { status, body: resp["body"].clone(), request_id, retry_after: ra }));
            }
            let transient = |s: u16| s == 429 || (s >= 500 && replay == Replay::Safe);
            let mut retry_ids: Vec<String> =
                if round < max_rounds { answered.iter().filter(|(_, a)| transient(a.status)).map(|(id, _)| id.clone()).collect() } else { vec![] };
            // A 424 is retried only with the dependency that caused it.
            loop {
                let more: Vec<String> = answered
                    .iter()
                    .filter(|(id, a)| a.status == 424 && !retry_ids.contains(id))
                    .filter(|(id, _)| pending.iter().find(|i| &i.id == id).and_then(|i| i.depends_on.as_ref()).is_some_and(|d| retry_ids.contains(d)))
                    .map(|(id, _)| id.clone())
                    .collect();
                if more.is_empty() {
                    break;
                }
                retry_ids.extend(more);
            }
            let wait = answered
                .iter()
                .filter(|(id, _)| retry_ids.contains(id))
                .map(|(_, a)| a.retry_after.unwrap_or(Duration::from_millis(500 * round as u64)))
                .max()
                .unwrap_or_default();
            if wait > self.transport.policy.max_inline_wait {
                // Too long to hold the worker: the runner reschedules the step.
                retry_ids.clear();
            }
            for (id, a) in answered {
                if !retry_ids.contains(&id) {
                    results.insert(id, if a.ok() { Ok(a.body) } else { Err(graph_error(&a)) });
                }
            }
            let retry: Vec<Item> = pending.iter().filter(|i| retry_ids.contains(&i.id)).cloned().collect();
            if retry.is_empty() {
                break;
            }
            tokio::time::sleep(wait).await;
            pending = retry;
        }
        Ok(results)
    }
}

/// Percent-encodes a value for a URL path segment or query (UPNs, filters).
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
