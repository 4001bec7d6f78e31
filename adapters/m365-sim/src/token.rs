//! Entra's v2.0 token endpoint for the simulated tenants: client credentials with a secret
//! or a signed client assertion, and refresh tokens for delegated (partner) access. Access
//! tokens are JWTs whose claims (`aud`, `tid`, `appid`, `roles` or `scp`, `wids`, `exp`) are
//! fixed at issue, so a consent or role change needs a new token, as on a real tenant.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::world::{Tenant, World, role_id};

pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
pub const EXCHANGE_AUDIENCE: &str = "https://outlook.office365.com";
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Graph,
    Exchange,
    SharePoint,
}

/// The claims the simulator's services read back from a bearer token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub tid: String,
    pub appid: String,
    pub oid: String,
    pub sub: String,
    pub idtyp: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(default)]
    pub wids: Vec<String>,
    pub ver: String,
}

impl Claims {
    pub fn delegated(&self) -> bool {
        self.scp.is_some()
    }

    /// Application roles or delegated scopes: what the token may do.
    pub fn grants(&self) -> Vec<String> {
        match &self.scp {
            Some(s) => s.split(' ').filter(|x| !x.is_empty()).map(String::from).collect(),
            None => self.roles.clone(),
        }
    }

    pub fn has_entra_role(&self, names: &[&str]) -> bool {
        names.iter().filter_map(|n| role_id(n)).any(|id| self.wids.iter().any(|w| w.eq_ignore_ascii_case(id)))
    }

    pub fn resource(&self) -> Option<Resource> {
        if self.aud == GRAPH_AUDIENCE || self.aud == "00000003-0000-0000-c000-000000000000" {
            Some(Resource::Graph)
        } else if self.aud == EXCHANGE_AUDIENCE {
            Some(Resource::Exchange)
        } else if self.aud.ends_with(".sharepoint.com") {
            Some(Resource::SharePoint)
        } else {
            None
        }
    }
}

/// A delegated grant behind a refresh token.
#[derive(Debug, Clone)]
pub struct RefreshGrant {
    pub tenant: String,
    pub client_id: String,
    pub user: String,
    pub scopes: Vec<String>,
    pub expires: Duration,
}

pub struct Issuer {
    key: [u8; 32],
    pub lifetime: Duration,
    pub refresh: BTreeMap<String, RefreshGrant>,
}

/// A token-endpoint refusal in Entra's shape: `error`, `error_description` with the AADSTS
/// code first, `error_codes`.
#[derive(Debug, Clone)]
pub struct TokenError {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    pub description: String,
}

impl TokenError {
    fn new(status: u16, error: &'static str, code: u32, description: impl Into<String>) -> Self {
        Self { status, error, code, description: description.into() }
    }

    pub fn body(&self, now: &str) -> Value {
        let trace = uuid::Uuid::new_v4().to_string();
        let corr = uuid::Uuid::new_v4().to_string();
        json!({
            "error": self.error,
            "error_description": format!("AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {now}", self.code, self.description),
            "error_codes": [self.code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": corr,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    pub grant_type: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_assertion_type: Option<String>,
    #[serde(default)]
    pub client_assertion: Option<String>,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

impl Issuer {
    pub fn new(lifetime: Duration) -> Self {
        Self { key: rand::random(), lifetime, refresh: BTreeMap::new() }
    }

    fn sign(&self, msg: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(msg.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    pub fn encode(&self, claims: &Claims) -> String {
        let header = B64.encode(br#"{"typ":"JWT","alg":"HS256","kid":"m365-sim"}"#);
        let payload = B64.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let msg = format!("{header}.{payload}");
        let sig = self.sign(&msg);
        format!("{msg}.{sig}")
    }

    /// Checks signature, lifetime and audience; the error text is Graph's 401 message.
    pub fn verify(&self, token: &str, now_unix: i64, want: Resource) -> Result<Claims, &'static str> {
        let mut parts = token.splitn(3, '.');
        let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("IDX14100: JWT is not well formed, there are no dots (.).");
        };
        if self.sign(&format!("{h}.{p}")) != s {
            return Err("Access token validation failure. Invalid signature.");
        }
        let claims: Claims = B64.decode(p).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or("Access token validation failure.")?;
        if claims.exp <= now_unix {
            return Err("Lifetime validation failed, the token is expired.");
        }
        if claims.resource() != Some(want) {
            return Err("Access token validation failure. Invalid audience.");
        }
        Ok(claims)
    }

    /// Handles one token request against the world. `endpoint` is the URL the client posted
    /// to, which a client assertion's `aud` must name.
    pub fn grant(&mut self, world: &World, tenant_key: &str, form: &TokenForm, endpoint: &str, now: Duration, now_unix: i64) -> Result<Value, TokenError> {
        let Some(ti) = world.tenant(tenant_key) else {
            return Err(TokenError::new(
                400,
                "invalid_request",
                90002,
                format!(
                    "Tenant '{tenant_key}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
                ),
            ));
        };
        let t = &world.tenants[ti];
        match form.grant_type.as_str() {
            "client_credentials" => {
                let app = self.authenticate(t, form, endpoint, now_unix)?;
                let resource = parse_scope(t, &form.scope)?;
                let roles: Vec<String> = match resource {
                    Resource::Graph => app.graph.iter().cloned().collect(),
                    Resource::Exchange => app.exchange.iter().cloned().collect(),
                    Resource::SharePoint => app.sharepoint.iter().cloned().collect(),
                };
                let claims = self.claims(t, resource, &app.client_id, &app.sp_id, roles, None, None, app.entra_roles.iter().cloned().collect(), now_unix);
                Ok(
                    json!({"token_type": "Bearer", "expires_in": self.lifetime.as_secs(), "ext_expires_in": self.lifetime.as_secs(), "access_token": self.encode(&claims)}),
                )
            }
            "refresh_token" => {
                let app = self.authenticate(t, form, endpoint, now_unix)?;
                let presented = form.refresh_token.as_deref().unwrap_or_default();
                let Some(grant) = self.refresh.get(&sha256_hex(presented)).cloned() else {
                    return Err(TokenError::new(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."));
                };
                if grant.expires <= now {
                    return Err(TokenError::new(400, "invalid_grant", 700082, "The refresh token has expired due to inactivity."));
                }
                if !grant.client_id.eq_ignore_ascii_case(&app.client_id) {
                    return Err(TokenError::new(400, "invalid_grant", 70000, "Provided grant is invalid or malformed."));
                }
                let resource = parse_scope(t, &form.scope)?;
                let user = t.users.get(&grant.user).ok_or_else(|| TokenError::new(400, "invalid_grant", 50053, "The account is locked or does not exist."))?;
                if !user.account_enabled {
                    return Err(TokenError::new(400, "invalid_grant", 50057, "The user account is disabled."));
                }
                let prefix = match resource {
                    Resource::Graph => "",
                    Resource::Exchange => "exchange:",
                    Resource::SharePoint => "sharepoint:",
                };
                let scp: Vec<String> = grant
                    .scopes
                    .iter()
                    .filter_map(|s| if prefix.is_empty() { (!s.contains(':')).then(|| s.clone()) } else { s.strip_prefix(prefix).map(String::from) })
                    .collect();
                let wids = t.active_roles(&grant.user);
                let claims = self.claims(t, resource, &app.client_id, &grant.user, vec![], Some(scp.join(" ")), Some(user.upn.clone()), wids, now_unix);
                let next = self.mint_refresh(grant.clone(), now);
                Ok(
                    json!({"token_type": "Bearer", "scope": form.scope, "expires_in": self.lifetime.as_secs(), "ext_expires_in": self.lifetime.as_secs(), "access_token": self.encode(&claims), "refresh_token": next}),
                )
            }
            other => Err(TokenError::new(400, "unsupported_grant_type", 70003, format!("The app requested an unsupported grant type '{other}'."))),
        }
    }

    /// Stores a delegated grant and returns its new refresh token (valid 90 days of sim time).
    pub fn mint_refresh(&mut self, mut grant: RefreshGrant, now: Duration) -> String {
        let token = format!("1.A{}", B64.encode(rand::random::<[u8; 48]>()));
        grant.expires = now + Duration::from_secs(90 * 86_400);
        self.refresh.insert(sha256_hex(&token), grant);
        token
    }

    #[allow(clippy::too_many_arguments)]
    fn claims(
        &self,
        t: &Tenant,
        resource: Resource,
        appid: &str,
        oid: &str,
        roles: Vec<String>,
        scp: Option<String>,
        upn: Option<String>,
        wids: Vec<String>,
        now: i64,
    ) -> Claims {
        let aud = match resource {
            Resource::Graph => GRAPH_AUDIENCE.to_string(),
            Resource::Exchange => EXCHANGE_AUDIENCE.to_string(),
            Resource::SharePoint => format!("https://{}.sharepoint.com", t.name.to_ascii_lowercase().replace(' ', "")),
        };
        Claims {
            aud,
            iss: format!("https://sts.windows.net/{}/", t.id),
            iat: now,
            nbf: now,
            exp: now + self.lifetime.as_secs() as i64,
            tid: t.id.clone(),
            appid: appid.to_string(),
            oid: oid.to_string(),
            sub: oid.to_string(),
            idtyp: if scp.is_some() { "user".into() } else { "app".into() },
            roles,
            scp,
            upn,
            wids,
            ver: "1.0".into(),
        }
    }

    fn authenticate<'t>(&self, t: &'t Tenant, form: &TokenForm, endpoint: &str, now_unix: i64) -> Result<&'t crate::world::App, TokenError> {
        let Some(app) = t.app(&form.client_id) else {
            return Err(TokenError::new(
                400,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                    form.client_id, t.name
                ),
            ));
        };
        if let Some(secret) = &form.client_secret {
            if app.secret_sha256.iter().any(|h| *h == sha256_hex(secret)) {
                return Ok(app);
            }
            return Err(TokenError::new(
                401,
                "invalid_client",
                7000215,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                    app.client_id
                ),
            ));
        }
        let Some(assertion) = &form.client_assertion else {
            return Err(TokenError::new(
                400,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ));
        };
        if form.client_assertion_type.as_deref() != Some(ASSERTION_TYPE) {
            return Err(TokenError::new(400, "invalid_request", 700025, "Client assertion type is not supported."));
        }
        verify_assertion(app, assertion, endpoint, now_unix)?;
        Ok(app)
    }
}

fn parse_scope(t: &Tenant, scope: &str) -> Result<Resource, TokenError> {
    let s = scope.split(' ').find(|s| s.ends_with("/.default")).ok_or_else(|| {
        TokenError::new(
            400,
            "invalid_scope",
            1002012,
            format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
        )
    })?;
    let resource = s.trim_end_matches("/.default");
    let sp = format!("https://{}.sharepoint.com", t.name.to_ascii_lowercase().replace(' ', ""));
    let sp_admin = format!("https://{}-admin.sharepoint.com", t.name.to_ascii_lowercase().replace(' ', ""));
    match resource {
        "https://graph.microsoft.com" | "00000003-0000-0000-c000-000000000000" => Ok(Resource::Graph),
        "https://outlook.office365.com" | "https://outlook.office.com" | "00000002-0000-0ff1-ce00-000000000000" => Ok(Resource::Exchange),
        r if r == sp || r == sp_admin => Ok(Resource::SharePoint),
        r => Err(TokenError::new(
            400,
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {r} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                t.name
            ),
        )),
    }
}

#[derive(Deserialize)]
struct AssertionHeader {
    alg: String,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    aud: String,
    iss: String,
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    jti: Option<String>,
}

/// Verifies a private_key_jwt client assertion (RS256 or PS256) against the certificates
/// registered on the app, as Entra does.
fn verify_assertion(app: &crate::world::App, jwt: &str, endpoint: &str, now: i64) -> Result<(), TokenError> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    let malformed = || TokenError::new(400, "invalid_client", 50027, "JWT token is invalid or malformed.");
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else { return Err(malformed()) };
    let header: AssertionHeader = B64.decode(h).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(malformed)?;
    let claims: AssertionClaims = B64.decode(p).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(malformed)?;
    let sig = B64.decode(s).map_err(|_| malformed())?;
    let not_registered = || {
        TokenError::new(
            401,
            "invalid_client",
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{}']",
                header.x5t_s256.clone().unwrap_or_default()
            ),
        )
    };
    let thumb = header.x5t_s256.clone().ok_or_else(not_registered)?;
    let (_, pem) = app.certificates.iter().find(|(t, _)| *t == thumb).ok_or_else(not_registered)?;
    let key = rsa::RsaPublicKey::from_public_key_pem(pem).map_err(|_| not_registered())?;
    let msg = format!("{h}.{p}");
    let ok = match header.alg.as_str() {
        "RS256" => rsa::pkcs1v15::Signature::try_from(sig.as_slice())
            .map(|sig| rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(key.clone()).verify(msg.as_bytes(), &sig).is_ok())
            .unwrap_or(false),
        "PS256" => rsa::pss::Signature::try_from(sig.as_slice())
            .map(|sig| rsa::pss::VerifyingKey::<rsa::sha2::Sha256>::new(key.clone()).verify(msg.as_bytes(), &sig).is_ok())
            .unwrap_or(false),
        _ => false,
    };
    if !ok {
        return Err(TokenError::new(401, "invalid_client", 700027, "Client assertion failed signature validation."));
    }
    if claims.iss != app.client_id || claims.sub != app.client_id {
        return Err(TokenError::new(401, "invalid_client", 700023, "Client assertion contains an invalid issuer or subject."));
    }
    if claims.aud != endpoint {
        return Err(TokenError::new(
            401,
            "invalid_client",
            700021,
            format!(
                "Client assertion audience claim does not match Realm issuer. Review the documentation at https://aka.ms/certCreds . [Expected: {endpoint}]"
            ),
        ));
    }
    if claims.exp <= now || claims.nbf.is_some_and(|n| n > now + 300) {
        return Err(TokenError::new(401, "invalid_client", 700024, "Client assertion is not within its valid time range."));
    }
    if claims.jti.as_deref().is_none_or(str::is_empty) {
        return Err(malformed());
    }
    Ok(())
}
