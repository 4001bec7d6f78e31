#![allow(dead_code)]

use offboard_m365_sim::{Scenario, Sim, SimConfig};
use reqwest::Method;
use serde_json::{Value, json};

pub const CONTOSO: &str = "contoso.com";
pub const FABRIKAM: &str = "fabrikam.example";
pub const APP: &str = "9b1f4c3e-2d5a-4f6b-8c7d-1e2f3a4b5c6d";
pub const READER: &str = "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a";
pub const GRAPH: &str = "https://graph.microsoft.com/.default";
pub const EXCHANGE: &str = "https://outlook.office365.com/.default";

pub struct Harness {
    pub sim: Sim,
    pub http: reqwest::Client,
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }
}

impl Harness {
    pub async fn new() -> Self {
        Self::with(SimConfig { manual_clock: true, ..SimConfig::default() }).await
    }

    pub async fn with(cfg: SimConfig) -> Self {
        Self::scenario(&Scenario::contoso(), cfg).await
    }

    pub async fn scenario(s: &Scenario, cfg: SimConfig) -> Self {
        let sim = Sim::start(s, cfg).await.expect("simulator starts");
        Self { sim, http: reqwest::Client::new() }
    }

    pub async fn token_for(&self, tenant: &str, app: &str, scope: &str) -> String {
        let secret = self.sim.add_secret(tenant, app).expect("app exists");
        let r = self
            .http
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.sim.urls().login))
            .form(&[("grant_type", "client_credentials"), ("client_id", app), ("client_secret", &secret), ("scope", scope)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
    }

    pub async fn token(&self) -> String {
        self.token_for(CONTOSO, APP, GRAPH).await
    }

    pub async fn call(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}/v1.0{path}", self.sim.urls().graph) };
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        Resp { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    pub async fn get(&self, token: &str, path: &str) -> Resp {
        self.call(token, Method::GET, path, None).await
    }

    pub async fn user_id(&self, upn: &str) -> String {
        self.sim.tenant(CONTOSO, |t| t.user_id(upn)).flatten().expect("user exists")
    }

    pub async fn group_id(&self, name: &str) -> String {
        self.sim.tenant(CONTOSO, |t| t.group_id(name)).flatten().expect("group exists")
    }

    pub async fn exo(&self, token: &str, tenant: &str, cmdlet: &str, params: Value) -> Resp {
        let r = self
            .http
            .post(format!("{}/adminapi/beta/{tenant}/InvokeCommand", self.sim.urls().exchange))
            .bearer_auth(token)
            .header("X-AnchorMailbox", format!("APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{tenant}"))
            .json(&json!({"CmdletInput": {"CmdletName": cmdlet, "Parameters": params}}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        Resp { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    pub fn kinds(&self, target: &str) -> Vec<String> {
        self.sim.ledger().into_iter().filter(|e| e.target == target).map(|e| e.kind).collect()
    }
}
