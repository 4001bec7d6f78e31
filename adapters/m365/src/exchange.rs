//! Exchange Online through the admin REST surface the Exchange module itself uses:
//! `InvokeCommand` with a cmdlet and its parameters, and its `$batch` (ten per envelope,
//! continuing past failures). Every call names a mailbox to route by.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::Resource;
use crate::error::ApiError;
use crate::pacing::Lane;
use crate::transport::{Body, Cx, Replay, Req, Resp, Transport};

pub const BATCH_LIMIT: usize = 10;

/// Rows and warnings a cmdlet returned.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub rows: Vec<Value>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Command {
    pub cmdlet: &'static str,
    pub params: Value,
    /// The mailbox the command concerns, as a UPN or `OID:{object id}@{tenant id}` routing
    /// hint; `None` for organisation-wide reads.
    pub anchor: Option<String>,
}

impl Command {
    pub fn new(cmdlet: &'static str, params: Value, anchor: Option<&str>) -> Self {
        Self { cmdlet, params, anchor: anchor.map(String::from) }
    }

    fn body(&self) -> Value {
        json!({"CmdletInput": {"CmdletName": self.cmdlet, "Parameters": self.params}})
    }
}

/// Exchange puts the useful text in `details[].message` as `Ex…|ExceptionType|Message`.
fn exchange_error(r: &Resp) -> ApiError {
    if r.body.is_null() {
        let msg = match r.status {
            401 => "Exchange refused the token: the app needs the Exchange.ManageAsApp permission",
            403 => "Exchange refused the call: the app needs Exchange.ManageAsApp and an Exchange role (Exchange Administrator)",
            _ => "Exchange answered without a readable body",
        };
        return r.error(format!("HTTP{}", r.status), msg.into());
    }
    let e = &r.body["error"];
    let detail = e["details"].as_array().and_then(|d| d.first()).and_then(|d| d["message"].as_str()).unwrap_or_default();
    let mut parts = detail.splitn(3, '|');
    let (_, exception, message) = (parts.next(), parts.next(), parts.next());
    let code =
        exception.map(|x| x.rsplit('.').next().unwrap_or(x).to_string()).or_else(|| e["code"].as_str().map(String::from)).unwrap_or_else(|| "Error".into());
    let message = message
        .map(String::from)
        .or_else(|| e["innererror"]["message"].as_str().map(String::from))
        .or_else(|| e["message"].as_str().map(String::from))
        .unwrap_or_else(|| format!("HTTP {}", r.status));
    r.error(code, message)
}

fn output(body: &Value) -> Output {
    Output {
        rows: body["value"].as_array().cloned().unwrap_or_default(),
        warnings: body["@adminapi.warnings"].as_array().map(|w| w.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default(),
    }
}

#[derive(Clone)]
pub struct Exchange {
    transport: Arc<Transport>,
    base: String,
}

impl Exchange {
    pub fn new(transport: Arc<Transport>, exchange_base: &str) -> Self {
        Self { transport, base: exchange_base.trim_end_matches('/').to_string() }
    }

    fn invoke_url(&self, directory: &str) -> String {
        format!("{}/adminapi/beta/{directory}/InvokeCommand", self.base)
    }

    fn anchor(cx: Cx<'_>, c: &Command) -> String {
        match &c.anchor {
            Some(a) if a.starts_with("OID:") => a.clone(),
            Some(upn) => format!("UPN:{upn}"),
            None => format!("APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{}", cx.tenant.directory_id),
        }
    }

    /// Runs one cmdlet, following `@odata.nextLink` for long results.
    pub async fn run(&self, cx: Cx<'_>, c: &Command, replay: Replay) -> Result<Output, ApiError> {
        let mut out = Output::default();
        let mut url = self.invoke_url(&cx.tenant.directory_id);
        loop {
            let req = Req {
                method: Method::POST,
                url: url.clone(),
                body: Body::Json(c.body()),
                headers: vec![("X-AnchorMailbox", Self::anchor(cx, c)), ("Prefer", "odata.maxpagesize=1000".into())],
                resource: Resource::Exchange,
                lane: Lane::Exchange,
                replay,
            };
            let r = self.transport.send(cx, &req).await?;
            if !r.ok() {
                return Err(exchange_error(&r));
            }
            let page = output(&r.body);
            out.rows.extend(page.rows);
            out.warnings.extend(page.warnings);
            match r.body["@odata.nextLink"].as_str() {
                Some(next) => url = next.to_string(),
                None => return Ok(out),
            }
        }
    }

    /// Runs commands that may repeat in batches of ten; results in input order.
    pub async fn batch(&self, cx: Cx<'_>, commands: &[Command]) -> Result<Vec<Result<Output, ApiError>>, ApiError> {
        let chunks = commands.chunks(BATCH_LIMIT).map(|chunk| self.batch_chunk(cx, chunk));
        let mut out = Vec::with_capacity(commands.len());
        for r in futures_util::future::join_all(chunks).await {
            out.extend(r?);
        }
        Ok(out)
    }

    async fn batch_chunk(&self, cx: Cx<'_>, commands: &[Command]) -> Result<Vec<Result<Output, ApiError>>, ApiError> {
        let mut results: HashMap<usize, Result<Output, ApiError>> = HashMap::new();
        let mut pending: Vec<usize> = (0..commands.len()).collect();
        for round in 1..=3 {
            let requests: Vec<Value> = pending
                .iter()
                .map(|i| {
                    let c = &commands[*i];
                    json!({"id": i.to_string(), "method": "POST", "url": self.invoke_url(&cx.tenant.directory_id), "body": c.body(),
                        "headers": {"X-AnchorMailbox": Self::anchor(cx, c), "Content-Type": "application/json"}})
                })
                .collect();
            let req = Req {
                method: Method::POST,
                url: format!("{}/adminapi/beta/{}/$batch", self.base, cx.tenant.directory_id),
                body: Body::Json(json!({"requests": requests})),
                headers: vec![
                    ("X-AnchorMailbox", format!("APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{}", cx.tenant.directory_id)),
                    ("Prefer", "odata.continue-on-error".into()),
                ],
                resource: Resource::Exchange,
                lane: Lane::Exchange,
                replay: Replay::Safe,
            };
            let r = self.transport.send(cx, &req).await?;
            if !r.ok() {
                return Err(exchange_error(&r));
            }
            let mut retry = Vec::new();
            for resp in r.body["responses"].as_array().cloned().unwrap_or_default() {
                let Some(i) = resp["id"].as_str().and_then(|s| s.parse::<usize>().ok()).filter(|i| *i < commands.len()) else { continue };
                let status = resp["status"].as_u64().unwrap_or(0) as u16;
                let item = Resp { status, body: resp["body"].clone(), request_id: r.request_id.clone(), retry_after: None };
                if (status == 429 || status >= 500) && round < 3 {
                    retry.push(i);
                    continue;
                }
                results.insert(i, if item.ok() { Ok(output(&item.body)) } else { Err(exchange_error(&item)) });
            }
            if retry.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500 * round)).await;
            pending = retry;
        }
        Ok((0..commands.len())
            .map(|i| results.remove(&i).unwrap_or_else(|| Err(ApiError::NotSent(format!("{} was not answered in its batch", commands[i].cmdlet)))))
            .collect())
    }
}
