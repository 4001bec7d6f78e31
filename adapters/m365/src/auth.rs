//! App-only tokens from Entra ID through the `oauth2` crate: client credentials with a
//! secret or with a signed certificate assertion (passed as extra parameters, since the
//! crate has no private_key_jwt). Tokens are cached per (tenant, resource) and replaced
//! before they expire; a consent or role change needs [`TokenSource::invalidate`], because
//! a token's roles are fixed when it is issued.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Utc};
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, RequestTokenError, Scope, TokenResponse, TokenUrl};
use offboard_core::clock::Clock;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use serde_json::json;

use crate::config::{Credential, Endpoints, TenantConfig};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Graph,
    Exchange,
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Self::Graph => "Microsoft Graph",
            Self::Exchange => "Exchange Online",
        }
    }
}

/// A bearer token and what it grants, decoded from its claims.
#[derive(Debug)]
pub struct AccessToken {
    pub value: Secret,
    /// Application permissions (`roles`).
    pub roles: Vec<String>,
    /// Entra directory role template ids held by the app (`wids`).
    pub wids: Vec<String>,
    pub expires_at: DateTime<Utc>,
    /// When the cache replaces it: the refresh margin before expiry, or half way through a
    /// token too short-lived for that margin (else every call would fetch a new one).
    pub refresh_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// An admin must fix the app registration, its consent or its credential.
    #[error("Entra ID refused the app's sign-in to tenant {tenant}: {code}: {description}")]
    Refused { tenant: String, code: String, description: String },
    /// Entra ID did not answer usefully: try again later.
    #[error("Entra ID is unavailable: {0}")]
    Unavailable(String),
    /// Fix the configured certificate key.
    #[error("the configured certificate key cannot sign: {0}")]
    BadKey(String),
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<AccessToken>>>>;

pub struct TokenSource {
    http: reqwest::Client,
    endpoints: Endpoints,
    clock: Arc<dyn Clock>,
    /// Replace a token this long before it expires, so no call carries a dying token.
    refresh_margin: Duration,
    slots: Mutex<HashMap<(String, Resource), Slot>>,
    issued: AtomicU64,
}

impl TokenSource {
    pub fn new(endpoints: Endpoints, clock: Arc<dyn Clock>) -> Self {
        // No redirects: a token endpoint that redirects is not one we trust (SSRF).
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(30)).build().expect("HTTP client");
        Self { http, endpoints, clock, refresh_margin: Duration::from_secs(300), slots: Mutex::new(HashMap::new()), issued: AtomicU64::new(0) }
    }

    /// How many tokens Entra issued to this source.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    fn slot(&self, t: &TenantConfig, r: Resource) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry((t.directory_id.to_ascii_lowercase(), r)).or_default().clone()
    }

    /// A valid token, from the cache unless it is within the refresh margin of expiry.
    /// Concurrent callers for the same (tenant, resource) wait for one fetch.
    pub async fn token(&self, t: &TenantConfig, r: Resource) -> Result<Arc<AccessToken>, AuthError> {
        let slot = self.slot(t, r);
        let mut guard = slot.lock().await;
        if let Some(tok) = guard.as_ref()
            && tok.refresh_at > self.clock.now()
        {
            return Ok(tok.clone());
        }
        let fresh = Arc::new(self.fetch(t, r).await?);
        *guard = Some(fresh.clone());
        Ok(fresh)
    }

    /// Drops the cached tokens of a tenant: after a consent or role change, or a 401.
    pub fn invalidate(&self, directory_id: &str) {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for ((d, _), slot) in slots.iter() {
            if d.eq_ignore_ascii_case(directory_id)
                && let Ok(mut g) = slot.try_lock()
            {
                *g = None;
            }
        }
    }

    /// Drops one cached token if it is still the one the caller was refused with.
    pub async fn reject(&self, t: &TenantConfig, r: Resource, refused: &Arc<AccessToken>) {
        let slot = self.slot(t, r);
        let mut g = slot.lock().await;
        if g.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, refused)) {
            *g = None;
        }
    }

    async fn fetch(&self, t: &TenantConfig, r: Resource) -> Result<AccessToken, AuthError> {
        let token_url = self.endpoints.token_url(&t.directory_id);
        let resource = match r {
            Resource::Graph => &self.endpoints.graph_resource,
            Resource::Exchange => &self.endpoints.exchange_resource,
        };
        let mut client = BasicClient::new(ClientId::new(t.client_id.clone()))
            .set_token_uri(TokenUrl::new(token_url.clone()).map_err(|e| AuthError::Unavailable(format!("bad token URL: {e}")))?)
            // Entra wants the client id in the body, not HTTP Basic.
            .set_auth_type(AuthType::RequestBody);
        if let Credential::Secret(s) = &t.credential {
            client = client.set_client_secret(ClientSecret::new(s.expose().to_string()));
        }
        let mut request = client.exchange_client_credentials().add_scope(Scope::new(format!("{resource}/.default")));
        if let Credential::Certificate { private_key_pem, thumbprint_sha256 } = &t.credential {
            let jwt = assertion(private_key_pem, thumbprint_sha256, &t.client_id, &token_url, self.clock.now())?;
            request = request
                .add_extra_param("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                .add_extra_param("client_assertion", jwt);
        }
        let response = request.request_async(&self.http).await.map_err(|e| match e {
            RequestTokenError::ServerResponse(body) => {
                let description = body.error_description().cloned().unwrap_or_default();
                let code = description.split(':').next().filter(|c| c.starts_with("AADSTS")).unwrap_or(body.error().as_ref()).to_string();
                // Keep the first line: Entra appends trace and correlation ids.
                let description = description.lines().next().unwrap_or_default().to_string();
                AuthError::Refused { tenant: t.key.to_string(), code, description }
            }
            RequestTokenError::Request(e) => {
                AuthError::Unavailable(format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()))
            }
            RequestTokenError::Parse(e, _) => AuthError::Unavailable(format!("unreadable token response: {e}")),
            RequestTokenError::Other(e) => AuthError::Unavailable(e),
        })?;
        self.issued.fetch_add(1, Ordering::Relaxed);
        let value = response.access_token().secret().clone();
        let lifetime = response.expires_in().unwrap_or(Duration::from_secs(3599));
        let claims = decode_claims(&value);
        let list = |k: &str| -> Vec<String> {
            claims.get(k).and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
        };
        let now = self.clock.now();
        let margin = self.refresh_margin.min(lifetime / 2);
        Ok(AccessToken {
            roles: list("roles"),
            wids: list("wids"),
            expires_at: now + chrono::Duration::from_std(lifetime).unwrap_or_default(),
            refresh_at: now + chrono::Duration::from_std(lifetime - margin).unwrap_or_default(),
            value: Secret::new(value),
        })
    }
}

/// The claims of a JWT, unverified: we only read what our own token grants.
fn decode_claims(jwt: &str) -> serde_json::Value {
    jwt.split('.').nth(1).and_then(|p| B64URL.decode(p.trim_end_matches('=')).ok()).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// A PS256 client assertion valid for five minutes (certificate-credentials doc).
fn assertion(key_pem: &Secret, thumbprint_hex: &str, client_id: &str, audience: &str, now: DateTime<Utc>) -> Result<String, AuthError> {
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem.expose()).map_err(|e| AuthError::BadKey(e.to_string()))?;
    let thumb = hex::decode(thumbprint_hex.trim()).map_err(|_| AuthError::BadKey("the thumbprint must be hex".into()))?;
    let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": B64URL.encode(thumb)});
    let t = now.timestamp();
    let claims = json!({"aud": audience, "iss": client_id, "sub": client_id, "jti": uuid::Uuid::new_v4().to_string(), "nbf": t - 30, "iat": t, "exp": t + 300});
    let signing = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
    let signer = rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(key);
    let sig = signer.sign_with_rng(&mut rsa::rand_core::OsRng, signing.as_bytes());
    Ok(format!("{signing}.{}", B64URL.encode(sig.to_bytes())))
}
