//! The token endpoint: client secrets, certificate assertions (RS256 and PS256), refresh
//! tokens, and Entra's AADSTS errors.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, rand_core::OsRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

async fn post(h: &Harness, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = h.http.post(format!("{}/{tenant}/oauth2/v2.0/token", h.sim.urls().login)).form(form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn claims(token: &str) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn client_secrets_give_per_resource_tokens_with_roles_tenant_and_expiry() {
    let h = Harness::new().await;
    let secret = h.sim.add_secret(CONTOSO, APP).unwrap();
    let (status, v) = post(&h, CONTOSO, &[("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", &secret), ("scope", GRAPH)]).await;
    assert_eq!(status, 200);
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_u64().unwrap() > 3000);
    let c = claims(v["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], "https://graph.microsoft.com");
    assert_eq!(c["tid"], "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b");
    assert!(c["roles"].as_array().unwrap().iter().any(|r| r == "User.RevokeSessions.All"));
    assert!(c["wids"].as_array().unwrap().iter().any(|r| r == "fe930be7-5e62-47db-91af-98c3a49a38b1"), "User Administrator");
    assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());
    let (_, v) = post(&h, CONTOSO, &[("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", &secret), ("scope", EXCHANGE)]).await;
    let c = claims(v["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], "https://outlook.office365.com");
    assert_eq!(c["roles"], json!(["Exchange.ManageAsApp"]));
    // One multi-tenant app, another customer tenant, other grants.
    let other = h.sim.add_secret(FABRIKAM, APP).unwrap();
    let (_, v) = post(&h, FABRIKAM, &[("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", &other), ("scope", GRAPH)]).await;
    assert_eq!(claims(v["access_token"].as_str().unwrap())["tid"], "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a");
    let (status, v) = post(&h, FABRIKAM, &[("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", &secret), ("scope", GRAPH)]).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")), "a secret belongs to its tenant's registration");
}

#[tokio::test]
async fn refusals_carry_the_aadsts_code_first() {
    let h = Harness::new().await;
    let secret = h.sim.add_secret(CONTOSO, APP).unwrap();
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("nowhere.example", vec![("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", &secret), ("scope", GRAPH)], 400, "AADSTS90002"),
        (
            CONTOSO,
            vec![("grant_type", "client_credentials"), ("client_id", "00000000-1111-2222-3333-444444444444"), ("client_secret", &secret), ("scope", GRAPH)],
            400,
            "AADSTS700016",
        ),
        (CONTOSO, vec![("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", "wrong"), ("scope", GRAPH)], 401, "AADSTS7000215"),
        (CONTOSO, vec![("grant_type", "client_credentials"), ("client_id", APP), ("scope", GRAPH)], 400, "AADSTS7000218"),
        (CONTOSO, vec![("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", &secret), ("scope", "User.Read")], 400, "AADSTS1002012"),
        (
            CONTOSO,
            vec![("grant_type", "client_credentials"), ("client_id", APP), ("client_secret", &secret), ("scope", "https://nothing.example/.default")],
            400,
            "AADSTS500011",
        ),
        (CONTOSO, vec![("grant_type", "password"), ("client_id", APP), ("client_secret", &secret), ("scope", GRAPH)], 400, "AADSTS70003"),
        (
            CONTOSO,
            vec![("grant_type", "refresh_token"), ("client_id", APP), ("client_secret", &secret), ("refresh_token", "made-up"), ("scope", GRAPH)],
            400,
            "AADSTS9002313",
        ),
    ];
    for (tenant, form, status, code) in cases {
        let (s, v) = post(&h, tenant, &form).await;
        assert_eq!(s, status, "{code}");
        let description = v["error_description"].as_str().unwrap();
        assert!(description.starts_with(&format!("{code}:")), "{description}");
        assert!(!description.contains(&secret), "the secret never comes back");
    }
}

fn assertion(key: &RsaPrivateKey, alg: &str, thumb: &str, client: &str, aud: &str, exp_in: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let header = B64.encode(serde_json::to_vec(&json!({"alg": alg, "typ": "JWT", "x5t#S256": thumb})).unwrap());
    let body = B64.encode(
        serde_json::to_vec(
            &json!({"aud": aud, "iss": client, "sub": client, "jti": uuid::Uuid::new_v4().to_string(), "nbf": now - 10, "iat": now - 10, "exp": now + exp_in}),
        )
        .unwrap(),
    );
    let msg = format!("{header}.{body}");
    let sig = match alg {
        "RS256" => rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(key.clone()).sign(msg.as_bytes()).to_vec(),
        _ => rsa::pss::BlindedSigningKey::<rsa::sha2::Sha256>::new(key.clone()).sign_with_rng(&mut OsRng, msg.as_bytes()).to_vec(),
    };
    format!("{msg}.{}", B64.encode(sig))
}

async fn send_assertion(h: &Harness, jwt: String) -> (u16, String) {
    let f = [
        ("grant_type", "client_credentials"),
        ("client_id", APP),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", &jwt),
        ("scope", GRAPH),
    ];
    let r = h.http.post(format!("{}/{CONTOSO}/oauth2/v2.0/token", h.sim.urls().login)).form(&f).send().await.unwrap();
    let s = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    (s, v["error_description"].as_str().unwrap_or_default().split(':').next().unwrap_or_default().to_string())
}

#[tokio::test]
async fn certificate_assertions_are_verified_against_the_registered_key() {
    let h = Harness::new().await;
    let key = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let public = key.to_public_key();
    let thumb = B64.encode(Sha256::digest(public.to_public_key_der().unwrap().as_bytes()));
    h.sim.add_certificate(CONTOSO, APP, &thumb, &public.to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
    let aud = format!("{}/{CONTOSO}/oauth2/v2.0/token", h.sim.urls().login);
    let send = |jwt: String| send_assertion(&h, jwt);
    assert_eq!(send(assertion(&key, "RS256", &thumb, APP, &aud, 300)).await.0, 200);
    assert_eq!(send(assertion(&key, "PS256", &thumb, APP, &aud, 300)).await.0, 200);
    let mut forged = assertion(&key, "RS256", &thumb, APP, &aud, 300);
    forged.replace_range(forged.len() - 5.., "AAAAA");
    assert_eq!(send(forged).await, (401, "AADSTS700027".to_string()));
    let other = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    assert_eq!(send(assertion(&other, "RS256", &thumb, APP, &aud, 300)).await, (401, "AADSTS700027".to_string()), "signed with a key that is not registered");
    assert_eq!(send(assertion(&key, "RS256", "bm90LXJlZ2lzdGVyZWQ", APP, &aud, 300)).await, (401, "AADSTS700027".to_string()));
    assert_eq!(
        send(assertion(&key, "RS256", &thumb, APP, "https://login.microsoftonline.com/other/oauth2/v2.0/token", 300)).await,
        (401, "AADSTS700021".to_string())
    );
    assert_eq!(send(assertion(&key, "RS256", &thumb, APP, &aud, -60)).await, (401, "AADSTS700024".to_string()));
}

#[tokio::test]
async fn admin_consent_redirects_back_with_the_tenant() {
    let h = Harness::new().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = client
        .get(format!("{}/{CONTOSO}/v2.0/adminconsent?client_id={APP}&redirect_uri=https://offboard.example/consent&state=xyz", h.sim.urls().login))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let to = r.headers()["location"].to_str().unwrap();
    assert_eq!(to, "https://offboard.example/consent?admin_consent=True&tenant=6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b&state=xyz");
}
