//! The bearer token Bot Framework puts on every activity it sends us, checked before the
//! activity is read: RS256 only; the key chosen by `kid` from the key set the OpenID
//! metadata names, and endorsed for the activity's channel; issuer Bot Framework's; audience
//! our app id; `nbf` and `exp` with five minutes of skew, against the injected clock; and
//! the `serviceurl` claim equal to the activity's `serviceUrl`, so a token cannot send our
//! replies somewhere else.
//!
//! Keys are cached. An unknown `kid` refreshes them, at most once per [`REFRESH_PAUSE`], so a
//! stream of forged key ids cannot make us fetch on every request; the whole set is read
//! again after [`KEYS_TTL`].

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use offboard_core::clock::Clock;
use serde::Deserialize;
use tokio::sync::Mutex;

/// Who issues the tokens on activities from Bot Framework's channels.
pub const ISSUER: &str = "https://api.botframework.com";
/// The public cloud's OpenID metadata for those tokens.
pub const OPENID_METADATA: &str = "https://login.botframework.com/v1/.well-known/openidconfiguration";
/// Clock skew allowed on `nbf` and `exp`.
pub const SKEW: Duration = Duration::minutes(5);
/// The least time between two key fetches caused by an unknown `kid`.
pub const REFRESH_PAUSE: Duration = Duration::minutes(5);
/// How long a fetched key set is used before it is read again.
pub const KEYS_TTL: Duration = Duration::hours(24);

/// Why an activity was not accepted. Everything but [`Refused::NoToken`] and
/// [`Refused::KeysUnavailable`] is a 403 that says nothing more to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no bearer token")]
    NoToken,
    #[error("the token cannot be read")]
    Malformed,
    #[error("the token is signed with {0}, not RS256")]
    Algorithm(String),
    #[error("no Bot Framework key has id {0}")]
    UnknownKey(String),
    #[error("the signing key is not endorsed for channel {0}")]
    NotEndorsed(String),
    #[error("the token does not verify: {0}")]
    Invalid(String),
    #[error("the token is not valid at this time")]
    Expired,
    #[error("the token was issued for another service URL")]
    ServiceUrl,
    /// Try again later: Bot Framework retries.
    #[error("Bot Framework's signing keys could not be read: {0}")]
    KeysUnavailable(String),
}

impl Refused {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Refused::NoToken => 401,
            Refused::KeysUnavailable(_) => 503,
            _ => 403,
        }
    }
}

/// What a verified token says.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub serviceurl: Option<String>,
}

struct Key {
    decoding: DecodingKey,
    endorsements: Vec<String>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Arc<Key>>,
    fetched: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Metadata {
    jwks_uri: String,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// One key of the set, with Bot Framework's `endorsements` beside the standard members.
#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: String,
    n: Option<String>,
    e: Option<String>,
    #[serde(default)]
    endorsements: Vec<String>,
}

pub struct Verifier {
    app_id: String,
    metadata_url: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    keys: Mutex<Keys>,
}

impl Verifier {
    pub fn new(app_id: impl Into<String>, metadata_url: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().expect("a client with a timeout builds");
        Verifier { app_id: app_id.into(), metadata_url: metadata_url.into(), http, clock, keys: Mutex::new(Keys::default()) }
    }

    /// Checks the `Authorization` header of an activity from `channel_id` that names
    /// `service_url`.
    pub async fn verify(&self, authorization: Option<&str>, channel_id: &str, service_url: &str) -> Result<Claims, Refused> {
        let token = authorization.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty()).ok_or(Refused::NoToken)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(Refused::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(Refused::Malformed)?;
        let key = self.key(&kid).await?;
        if !key.endorsements.iter().any(|e| e == channel_id) {
            return Err(Refused::NotEndorsed(channel_id.to_string()));
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[&self.app_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // Lifetime is checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(|e| Refused::Invalid(e.to_string()))?.claims;
        let now = self.clock.now().timestamp();
        let skew = SKEW.num_seconds();
        if claims.exp + skew < now || claims.nbf.is_some_and(|nbf| nbf - skew > now) {
            return Err(Refused::Expired);
        }
        if claims.serviceurl.as_deref() != Some(service_url) {
            return Err(Refused::ServiceUrl);
        }
        Ok(claims)
    }

    /// Reads Bot Framework's keys now (for `offboard doctor`): how many can verify tokens
    /// for Teams.
    pub async fn keys_for_teams(&self) -> Result<usize, Refused> {
        let keys = self.fetch().await?;
        Ok(keys.values().filter(|k| k.endorsements.iter().any(|e| e == "msteams")).count())
    }

    /// The key with this id: from the cache, or from a fetch when the set is stale, or when
    /// the id is unknown and the last fetch is at least [`REFRESH_PAUSE`] old.
    async fn key(&self, kid: &str) -> Result<Arc<Key>, Refused> {
        let now = self.clock.now();
        let mut keys = self.keys.lock().await;
        let stale = keys.fetched.is_none_or(|at| now - at >= KEYS_TTL);
        let unknown_may_refresh = !keys.by_kid.contains_key(kid) && keys.fetched.is_none_or(|at| now - at >= REFRESH_PAUSE);
        if stale || unknown_may_refresh {
            match self.fetch().await {
                Ok(by_kid) => *keys = Keys { by_kid, fetched: Some(now) },
                // A stale set still verifies until a fetch succeeds.
                Err(e) if keys.by_kid.is_empty() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "could not refresh Bot Framework's keys; using the cached set"),
            }
        }
        keys.by_kid.get(kid).cloned().ok_or_else(|| Refused::UnknownKey(kid.to_string()))
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<Key>>, Refused> {
        let unavailable = |e: reqwest::Error| Refused::KeysUnavailable(e.without_url().to_string());
        let metadata: Metadata =
            self.http.get(&self.metadata_url).send().await.and_then(|r| r.error_for_status()).map_err(unavailable)?.json().await.map_err(unavailable)?;
        let set: JwkSet =
            self.http.get(&metadata.jwks_uri).send().await.and_then(|r| r.error_for_status()).map_err(unavailable)?.json().await.map_err(unavailable)?;
        let mut by_kid = HashMap::new();
        for k in set.keys {
            let (Some(kid), "RSA", Some(n), Some(e)) = (k.kid, k.kty.as_str(), k.n, k.e) else { continue };
            match DecodingKey::from_rsa_components(&n, &e) {
                Ok(decoding) => {
                    by_kid.insert(kid, Arc::new(Key { decoding, endorsements: k.endorsements }));
                }
                Err(e) => tracing::warn!(kid, error = %e, "a Bot Framework key could not be read; skipped"),
            }
        }
        Ok(by_kid)
    }
}
