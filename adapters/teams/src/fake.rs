//! Bot Framework's token side over real HTTP, for tests: the OpenID metadata and the key
//! set (RSA keys with `endorsements`, as Bot Framework serves them), counting fetches, and
//! a channel that mints the tokens Bot Framework would put on activities.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use crate::auth::ISSUER;

/// A signing key the fake publishes (or keeps back, to sign with an unknown id).
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub endorsements: Vec<String>,
    encoding: EncodingKey,
    /// The public key as a JWK's `n` and `e`.
    n: String,
    e: String,
    /// The public key's PKCS#1 DER: what a forger might use as an HMAC secret.
    pub public_der: Vec<u8>,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key.
    pub fn generate(kid: &str, endorsements: &[&str]) -> Self {
        use rsa::pkcs1::EncodeRsaPublicKey;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
        let der = private.to_pkcs1_der().expect("DER");
        let public = private.to_public_key();
        SigningKey {
            kid: kid.into(),
            endorsements: endorsements.iter().map(|e| e.to_string()).collect(),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            public_der: public.to_pkcs1_der().expect("DER").as_bytes().to_vec(),
        }
    }

    /// The same key under another id (a rotation, or a forger's guess).
    pub fn with_kid(&self, kid: &str) -> Self {
        SigningKey { kid: kid.into(), ..self.clone() }
    }

    fn jwk(&self) -> Value {
        json!({ "kty": "RSA", "use": "sig", "kid": self.kid, "n": self.n, "e": self.e, "endorsements": self.endorsements })
    }

    /// `claims` signed RS256 under this key, with its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = Header { kid: Some(self.kid.clone()), ..Header::new(Algorithm::RS256) };
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("a token")
    }
}

#[derive(Default)]
struct Inner {
    keys: Vec<SigningKey>,
    metadata_fetches: usize,
    key_fetches: usize,
}

/// The OpenID metadata and key set on loopback.
#[derive(Clone)]
pub struct FakeBotFramework {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeBotFramework {
    pub async fn start(keys: Vec<SigningKey>) -> Self {
        let inner = Arc::new(Mutex::new(Inner { keys, ..Inner::default() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let fake = FakeBotFramework { addr, inner };
        let router =
            Router::new().route("/v1/.well-known/openidconfiguration", get(metadata)).route("/v1/.well-known/keys", get(key_set)).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        fake
    }

    pub fn metadata_url(&self) -> String {
        format!("http://{}/v1/.well-known/openidconfiguration", self.addr)
    }

    /// Publishes another key (a rotation).
    pub fn publish(&self, key: SigningKey) {
        self.inner.lock().expect("fake lock").keys.push(key);
    }

    /// How many times the key set was read.
    pub fn key_fetches(&self) -> usize {
        self.inner.lock().expect("fake lock").key_fetches
    }

    /// The claims Bot Framework puts on an activity for `app_id` from `service_url`, valid
    /// from now for an hour.
    pub fn claims(app_id: &str, service_url: &str, now: chrono::DateTime<chrono::Utc>) -> Value {
        let t = now.timestamp();
        json!({ "iss": ISSUER, "aud": app_id, "serviceurl": service_url, "nbf": t - 5, "exp": t + 3600, "iat": t - 5 })
    }
}

async fn metadata(State(f): State<FakeBotFramework>) -> Json<Value> {
    f.inner.lock().expect("fake lock").metadata_fetches += 1;
    Json(json!({
        "issuer": ISSUER,
        "authorization_endpoint": "https://invalid.botframework.com",
        "jwks_uri": format!("http://{}/v1/.well-known/keys", f.addr),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    }))
}

async fn key_set(State(f): State<FakeBotFramework>) -> Json<Value> {
    let mut inner = f.inner.lock().expect("fake lock");
    inner.key_fetches += 1;
    Json(json!({ "keys": inner.keys.iter().map(SigningKey::jwk).collect::<Vec<_>>() }))
}
