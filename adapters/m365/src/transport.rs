//! One HTTP call to Microsoft with everything around it: pacing, a bearer token, a fresh
//! token after a 401, waiting out 429s for as long as the server asks, backoff on 5xx for
//! calls that may repeat, and the request id kept as evidence.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::Method;
use serde_json::Value;

use crate::auth::{Resource, TokenSource};
use crate::config::TenantConfig;
use crate::error::{ApiError, Detail};
use crate::pacing::{Answer, Lane, Paced, Pacer, Patience};
use crate::trace::Trace;

/// Whether a request may be sent again after it may have reached Microsoft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Reads and idempotent writes.
    Safe,
    /// Never re-sent after a response was lost or a 5xx came back (wipe, password reset,
    /// meeting cancel): the step reads back instead. A 429 proves it was not applied.
    Once,
}

/// How hard one call tries before handing the failure to the step runner.
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    pub max_tries: u32,
    /// A longer Retry-After goes back to the runner, which frees the worker meanwhile.
    pub max_inline_wait: Duration,
    /// A step's call that would wait longer than this for our own budgets is not sent: the
    /// step goes back to the queue until the budget has room, freeing its worker. Short,
    /// because every step asleep on a budget holds a worker slot: at most this long times
    /// the budget's rate of them.
    pub max_budget_wait: Duration,
    /// A lockout (not an emergency) that would wait longer than this for our budgets goes
    /// back to the queue once, so its thread says what it waits for; it comes back before
    /// bulk work and then waits its turn in a worker.
    pub max_lockout_wait: Duration,
    pub backoff: Duration,
    pub timeout: Duration,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            max_tries: 4,
            max_inline_wait: Duration::from_secs(30),
            max_budget_wait: Duration::from_millis(250),
            max_lockout_wait: Duration::from_secs(2),
            backoff: Duration::from_millis(400),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Who is calling and where the evidence goes.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    pub tenant: &'a TenantConfig,
    pub trace: &'a Trace,
    /// How a call waits for our budgets: sent back unsent ([`ApiError::Paced`]) after a
    /// wait too long, so a step can wait in the queue rather than in a worker; or, when
    /// someone is waiting for the answer now, as long as it takes.
    pub patience: Patience,
}

impl<'a> Cx<'a> {
    /// A caller who waits for the answer, however long the budgets take.
    pub fn new(tenant: &'a TenantConfig, trace: &'a Trace) -> Self {
        Self { tenant, trace, patience: Patience::Waits }
    }
}

/// What a request carries.
pub enum Body {
    None,
    Json(Value),
    /// A file's bytes (a drive upload).
    Bytes {
        content_type: &'static str,
        data: Vec<u8>,
    },
}

pub struct Req {
    pub method: Method,
    pub url: String,
    pub body: Body,
    pub headers: Vec<(&'static str, String)>,
    pub resource: Resource,
    pub lane: Lane,
    pub replay: Replay,
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub request_id: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Resp {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error a failed response means, given what the service put in its body.
    pub fn error(&self, code: String, message: String) -> ApiError {
        let detail = Detail { status: self.status, code, message, request_id: self.request_id.clone() };
        match self.status {
            429 | 503 if self.retry_after.is_some() => ApiError::RetryAfter { wait: self.retry_after.unwrap_or_default(), detail },
            404 | 410 => ApiError::NotFound(detail),
            401 | 403 => ApiError::Forbidden(detail),
            408 | 409 | 429 | 500..=599 => ApiError::Retryable(detail),
            0 => ApiError::Retryable(detail),
            _ => ApiError::Permanent(detail),
        }
    }
}

pub struct Transport {
    http: reqwest::Client,
    pub tokens: Arc<TokenSource>,
    pacer: Pacer,
    pub policy: CallPolicy,
    pub counters: Arc<Counters>,
}

/// Process-wide call counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// HTTP requests sent to Graph and Exchange.
    pub requests: std::sync::atomic::AtomicU64,
    /// Answers that asked us to slow down (429, or 503 with Retry-After).
    pub throttled: std::sync::atomic::AtomicU64,
    /// Other 5xx answers and connection failures.
    pub failed: std::sync::atomic::AtomicU64,
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    // Graph's documented sample is "2.128": seconds as a decimal.
    h.get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

impl Transport {
    pub fn new(tokens: Arc<TokenSource>, pacer: Pacer, policy: CallPolicy) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(policy.timeout).build().expect("HTTP client");
        Self { http, tokens, pacer, policy, counters: Arc::new(Counters::default()) }
    }

    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    fn backoff(&self, tries: u32) -> Duration {
        let d = self.policy.backoff.saturating_mul(1 << (tries.saturating_sub(1)).min(5));
        d / 2 + d.mul_f64(rand::rng().random_range(0.0..0.5))
    }

    /// Sends a request, retrying what is safe to retry. A non-2xx response that is not
    /// retried comes back as `Ok` for the service client to turn into its error.
    pub async fn send(&self, cx: Cx<'_>, req: &Req) -> Result<Resp, ApiError> {
        let mut tries = 0;
        let mut refreshed = false;
        loop {
            tries += 1;
            let _permit = match self.pacer.admit(&cx.tenant.directory_id, &req.lane, cx.patience).await {
                Ok(permits) => permits,
                Err(Paced { wait, budget }) => return Err(ApiError::Paced { wait, budget }),
            };
            let token = self.tokens.token(cx.tenant, req.resource).await?;
            // A 429 may have come in while this call waited for its token.
            self.pacer.hold(&cx.tenant.directory_id, &req.lane).await;
            let sent = std::time::Instant::now();
            let mut b =
                self.http.request(req.method.clone(), &req.url).bearer_auth(token.value.expose()).header("client-request-id", uuid::Uuid::new_v4().to_string());
            for (k, v) in &req.headers {
                b = b.header(*k, v);
            }
            b = match &req.body {
                Body::None => b,
                Body::Json(v) => b.json(v),
                Body::Bytes { content_type, data } => b.header(reqwest::header::CONTENT_TYPE, *content_type).body(data.clone()),
            };
            cx.trace.sent(req.replay);
            self.counters.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = match b.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.counters.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let reached = !(e.is_connect() || e.is_builder());
                    let msg = format!("{} {}: {e}", req.method, path_of(&req.url));
                    if tries < self.policy.max_tries && (!reached || req.replay == Replay::Safe) {
                        tracing::debug!(error = %msg, tries, "Retrying after a transport error");
                        tokio::time::sleep(self.backoff(tries)).await;
                        continue;
                    }
                    return Err(if reached {
                        ApiError::Retryable(Detail { status: 0, code: "ConnectionLost".into(), message: msg, request_id: None })
                    } else {
                        ApiError::NotSent(msg)
                    });
                }
            };
            let status = r.status().as_u16();
            let request_id = r.headers().get("request-id").and_then(|v| v.to_str().ok()).map(String::from);
            let wait = retry_after(r.headers());
            let throttled = status == 429 || (status == 503 && wait.is_some());
            // Before anything else: other callers of the lane must hold from this moment.
            if throttled {
                self.pacer.answered(&cx.tenant.directory_id, &req.lane, sent, Answer::Throttled(wait));
            }
            let bytes = r.bytes().await.unwrap_or_default();
            cx.trace.record(request_id.as_deref());
            let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
            let resp = Resp { status, body, request_id, retry_after: wait };
            if status == 401 && !refreshed {
                // Expired or revoked underneath us: one fresh token, then believe the 401.
                self.tokens.reject(cx.tenant, req.resource, &token).await;
                refreshed = true;
                tries -= 1;
                continue;
            }
            if throttled {
                self.counters.throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else if status >= 500 {
                self.counters.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                self.pacer.answered(&cx.tenant.directory_id, &req.lane, sent, Answer::Clean);
            }
            if throttled && tries < self.policy.max_tries {
                let w = wait.unwrap_or_else(|| self.backoff(tries));
                if w <= self.policy.max_inline_wait && (status == 429 || req.replay == Replay::Safe) {
                    tracing::debug!(wait_ms = w.as_millis() as u64, "Throttled; waiting as asked");
                    tokio::time::sleep(w).await;
                    continue;
                }
            }
            if (status >= 500 || status == 408) && !throttled && req.replay == Replay::Safe && tries < self.policy.max_tries {
                tokio::time::sleep(self.backoff(tries)).await;
                continue;
            }
            return Ok(resp);
        }
    }
}

/// The path of a URL, for messages (no host, no query).
pub fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
    path.split('?').next().unwrap_or(path)
}
