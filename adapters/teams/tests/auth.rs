//! Bot Framework tokens against the fake's OpenID metadata and key set over HTTP: a good
//! token verifies, and each forgery is refused for its own reason.

use std::sync::Arc;

use chrono::Duration;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use offboard_core::clock::{Clock, ManualClock};
use offboard_teams::auth::{REFRESH_PAUSE, Refused, Verifier};
use offboard_teams::fake::{FakeBotFramework, SigningKey};
use serde_json::{Value, json};

const APP_ID: &str = "8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const SERVICE_URL: &str = "https://smba.trafficmanager.net/emea/";

struct World {
    fake: FakeBotFramework,
    clock: Arc<ManualClock>,
    verifier: Verifier,
    teams: SigningKey,
    webchat: SigningKey,
}

/// RSA keys take a moment to make: three for the whole file (Teams', another channel's,
/// and one Bot Framework never published).
fn keys() -> &'static (SigningKey, SigningKey, SigningKey) {
    static KEYS: std::sync::OnceLock<(SigningKey, SigningKey, SigningKey)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        (SigningKey::generate("k-teams", &["msteams"]), SigningKey::generate("k-webchat", &["webchat"]), SigningKey::generate("k-stranger", &["msteams"]))
    })
}

fn named(key: &SigningKey, kid: &str) -> SigningKey {
    key.with_kid(kid)
}

async fn world() -> World {
    let (teams, webchat, _) = keys().clone();
    let fake = FakeBotFramework::start(vec![teams.clone(), webchat.clone()]).await;
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 12, 6, 9, 0, 0));
    let verifier = Verifier::new(APP_ID, fake.metadata_url(), clock.clone());
    World { fake, clock, verifier, teams, webchat }
}

impl World {
    fn claims(&self) -> Value {
        FakeBotFramework::claims(APP_ID, SERVICE_URL, self.clock.now())
    }

    async fn check(&self, token: &str) -> Result<(), Refused> {
        self.verifier.verify(Some(&format!("Bearer {token}")), "msteams", SERVICE_URL).await.map(|_| ())
    }
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

#[tokio::test]
async fn a_token_from_bot_framework_verifies() {
    let w = world().await;
    let claims = w.verifier.verify(Some(&format!("Bearer {}", w.teams.sign(&w.claims()))), "msteams", SERVICE_URL).await.unwrap();
    assert_eq!((claims.aud.as_str(), claims.serviceurl.as_deref()), (APP_ID, Some(SERVICE_URL)));
    // Within the five minutes of skew on either side.
    let t = w.clock.now().timestamp();
    assert_eq!(w.check(&w.teams.sign(&with(w.claims(), "exp", json!(t - 240)))).await, Ok(()));
    assert_eq!(w.check(&w.teams.sign(&with(w.claims(), "nbf", json!(t + 240)))).await, Ok(()));
}

#[tokio::test]
async fn no_token_is_refused() {
    let w = world().await;
    assert_eq!(w.verifier.verify(None, "msteams", SERVICE_URL).await.unwrap_err(), Refused::NoToken);
    assert_eq!(w.verifier.verify(Some("Bearer "), "msteams", SERVICE_URL).await.unwrap_err(), Refused::NoToken);
    assert_eq!(w.verifier.verify(Some(&w.teams.sign(&w.claims())), "msteams", SERVICE_URL).await.unwrap_err(), Refused::NoToken, "not a bearer");
    assert_eq!(w.check("not.a.token").await.unwrap_err(), Refused::Malformed);
}

#[tokio::test]
async fn a_token_for_another_bot_is_refused() {
    let w = world().await;
    let r = w.check(&w.teams.sign(&with(w.claims(), "aud", json!("another-app")))).await.unwrap_err();
    assert!(matches!(&r, Refused::Invalid(m) if m.contains("Audience")), "{r:?}");
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let w = world().await;
    let r = w.check(&w.teams.sign(&with(w.claims(), "iss", json!("https://sts.windows.net/evil/")))).await.unwrap_err();
    assert!(matches!(&r, Refused::Invalid(m) if m.contains("Issuer")), "{r:?}");
}

#[tokio::test]
async fn an_expired_token_beyond_the_skew_is_refused() {
    let w = world().await;
    let t = w.clock.now().timestamp();
    assert_eq!(w.check(&w.teams.sign(&with(w.claims(), "exp", json!(t - 301)))).await.unwrap_err(), Refused::Expired);
    assert_eq!(w.check(&w.teams.sign(&with(w.claims(), "nbf", json!(t + 301)))).await.unwrap_err(), Refused::Expired, "not yet valid");
    // The same good token, once the clock has moved past it.
    let good = w.teams.sign(&w.claims());
    w.clock.advance(Duration::hours(1) + Duration::minutes(6));
    assert_eq!(w.check(&good).await.unwrap_err(), Refused::Expired);
}

#[tokio::test]
async fn an_unknown_key_is_refused() {
    let w = world().await;
    let stranger = &keys().2;
    assert_eq!(w.check(&stranger.sign(&w.claims())).await.unwrap_err(), Refused::UnknownKey("k-stranger".into()));
    // A known id on a token signed by another key does not verify either.
    let r = w.check(&named(stranger, "k-teams").sign(&w.claims())).await.unwrap_err();
    assert!(matches!(&r, Refused::Invalid(m) if m.contains("InvalidSignature")), "{r:?}");
}

#[tokio::test]
async fn a_key_not_endorsed_for_teams_is_refused() {
    let w = world().await;
    assert_eq!(w.check(&w.webchat.sign(&w.claims())).await.unwrap_err(), Refused::NotEndorsed("msteams".into()));
    // The Teams key does not make an activity from another channel acceptable.
    let r = w.verifier.verify(Some(&format!("Bearer {}", w.teams.sign(&w.claims()))), "webchat", SERVICE_URL).await;
    assert_eq!(r.unwrap_err(), Refused::NotEndorsed("webchat".into()));
}

#[tokio::test]
async fn a_token_for_another_service_url_is_refused() {
    let w = world().await;
    let token = w.teams.sign(&with(w.claims(), "serviceurl", json!("https://attacker.example/")));
    assert_eq!(w.check(&token).await.unwrap_err(), Refused::ServiceUrl);
    let mut claims = w.claims();
    claims.as_object_mut().unwrap().remove("serviceurl");
    assert_eq!(w.check(&w.teams.sign(&claims)).await.unwrap_err(), Refused::ServiceUrl, "no claim at all");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let w = world().await;
    let b64 = |v: &Value| base64_url(v.to_string().as_bytes());
    let token = format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT", "kid": "k-teams" })), b64(&w.claims()));
    let r = w.check(&token).await.unwrap_err();
    assert!(matches!(r, Refused::Malformed | Refused::Algorithm(_)), "{r:?}");
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let w = world().await;
    let header = Header { kid: Some("k-teams".into()), ..Header::new(Algorithm::HS256) };
    let token = jsonwebtoken::encode(&header, &w.claims(), &EncodingKey::from_secret(&w.teams.public_der)).unwrap();
    assert_eq!(w.check(&token).await.unwrap_err(), Refused::Algorithm("HS256".into()));
}

/// A rotated key is found by one fetch; forged key ids do not make us fetch on every
/// request.
#[tokio::test]
async fn unknown_key_ids_refresh_the_keys_at_most_once_per_pause() {
    let w = world().await;
    w.check(&w.teams.sign(&w.claims())).await.unwrap();
    assert_eq!(w.fake.key_fetches(), 1);
    for i in 0..20 {
        let r = w.check(&named(&keys().2, &format!("k-forged-{i}")).sign(&w.claims())).await;
        assert!(matches!(r, Err(Refused::UnknownKey(_))));
    }
    assert_eq!(w.fake.key_fetches(), 1, "no fetch within the pause");
    let rotated = named(&keys().2, "k-rotated");
    w.fake.publish(rotated.clone());
    w.clock.advance(REFRESH_PAUSE);
    w.check(&rotated.sign(&w.claims())).await.unwrap();
    assert_eq!(w.fake.key_fetches(), 2);
    w.check(&w.teams.sign(&w.claims())).await.unwrap();
    assert_eq!(w.fake.key_fetches(), 2, "known keys come from the cache");
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Bot Framework's own validator (PyPI botframework-connector, `reference_jwt.py`) takes
/// the same tokens from the same key set and agrees on every one: the good one passes both,
/// each forgery fails both.
#[tokio::test(flavor = "multi_thread")]
async fn bot_frameworks_own_validator_agrees() {
    use std::io::Write;
    let (teams, webchat, stranger) = keys().clone();
    let fake = FakeBotFramework::start(vec![teams.clone(), webchat.clone()]).await;
    // The reference reads the real time.
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let verifier = Verifier::new(APP_ID, fake.metadata_url(), clock.clone());
    let claims = FakeBotFramework::claims(APP_ID, SERVICE_URL, clock.now());
    let t = clock.now().timestamp();
    let none = format!("{}.{}.", base64_url(br#"{"alg":"none","typ":"JWT","kid":"k-teams"}"#), base64_url(claims.to_string().as_bytes()));
    let hs256 =
        jsonwebtoken::encode(&Header { kid: Some("k-teams".into()), ..Header::new(Algorithm::HS256) }, &claims, &EncodingKey::from_secret(&teams.public_der))
            .unwrap();
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("good", teams.sign(&claims), "msteams", SERVICE_URL),
        ("wrong aud", teams.sign(&with(claims.clone(), "aud", json!("another-app"))), "msteams", SERVICE_URL),
        ("wrong iss", teams.sign(&with(claims.clone(), "iss", json!("https://sts.windows.net/evil/"))), "msteams", SERVICE_URL),
        ("expired", teams.sign(&with(claims.clone(), "exp", json!(t - 600))), "msteams", SERVICE_URL),
        ("unknown kid", stranger.sign(&claims), "msteams", SERVICE_URL),
        ("known kid, other key", stranger.with_kid("k-teams").sign(&claims), "msteams", SERVICE_URL),
        ("not endorsed", webchat.sign(&claims), "msteams", SERVICE_URL),
        ("other service url", teams.sign(&claims), "msteams", "https://attacker.example/"),
        ("alg none", none, "msteams", SERVICE_URL),
        ("hs256", hs256, "msteams", SERVICE_URL),
    ];
    let python = std::env::var("OFFBOARD_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/reference_jwt.py");
    let mut child = std::process::Command::new(&python)
        .args([script, &fake.metadata_url(), APP_ID])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python with botframework-connector (the README's test command sets it up)");
    let mut stdin = child.stdin.take().unwrap();
    for (_, token, channel, url) in &cases {
        writeln!(stdin, "{}", json!({ "authorization": format!("Bearer {token}"), "channel": channel, "service_url": url })).unwrap();
    }
    drop(stdin);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(out.status.success(), "reference_jwt.py failed");
    let theirs: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    assert_eq!(theirs.len(), cases.len(), "{theirs:?}");
    for ((what, token, channel, url), reference) in cases.iter().zip(&theirs) {
        let ours = verifier.verify(Some(&format!("Bearer {token}")), channel, url).await;
        assert_eq!(ours.is_ok(), reference == "ok", "{what}: ours {ours:?}, Bot Framework's {reference}");
        assert_eq!(ours.is_ok(), *what == "good", "{what}: {ours:?}");
    }
}
