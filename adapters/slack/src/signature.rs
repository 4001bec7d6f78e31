//! Slack's v0 request signature: HMAC-SHA256 of `v0:{timestamp}:{raw body}` with the
//! signing secret, compared in constant time, within five minutes of now. Checked on the raw
//! bytes before anything is parsed. A signature already seen in the window is a replay: the
//! caller records the [`Signed`] key in the store every process shares.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use offboard_core::secret::Secret;

pub const WINDOW_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the request is not signed")]
    Missing,
    #[error("the request's timestamp is more than five minutes from now")]
    Stale,
    #[error("the signature does not match")]
    Forged,
    #[error("this signed request was already received")]
    Replayed,
}

/// The header value Slack would send for `body` at `timestamp`.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// A verified request: the key its replays share, however the signature was spelt (the
/// decoded bytes, not the hex text Slack sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed(pub String);

/// Verifies requests.
#[derive(Debug)]
pub struct Verifier {
    secret: Secret,
}

impl Verifier {
    pub fn new(secret: Secret) -> Self {
        Verifier { secret }
    }

    pub fn verify(&self, timestamp: Option<&str>, signature: Option<&str>, body: &[u8], now: DateTime<Utc>) -> Result<Signed, Refused> {
        let (Some(ts), Some(sig)) = (timestamp, signature) else { return Err(Refused::Missing) };
        let ts: i64 = ts.trim().parse().map_err(|_| Refused::Missing)?;
        if (now.timestamp() - ts).abs() > WINDOW_SECS {
            return Err(Refused::Stale);
        }
        let given = sig.strip_prefix("v0=").and_then(|h| hex::decode(h).ok()).ok_or(Refused::Forged)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes()).expect("HMAC takes any key length");
        mac.update(format!("v0:{ts}:").as_bytes());
        mac.update(body);
        mac.verify_slice(&given).map_err(|_| Refused::Forged)?;
        Ok(Signed(hex::encode(given)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_forged_stale_and_replayed() {
        let secret = Secret::new("8f742231b10e8888abcd99yyyzzz85a5");
        let v = Verifier::new(secret.clone());
        let now = Utc::now();
        let ts = now.timestamp();
        let body = b"command=%2Foffboard&text=alice%40contoso.com";
        let sig = sign(&secret, ts, body);
        let key = v.verify(Some(&ts.to_string()), Some(&sig), body, now).unwrap();
        // Upper-case hex is the same signature: the replay key is the decoded bytes.
        let shouted = format!("v0={}", sig.trim_start_matches("v0=").to_ascii_uppercase());
        assert_eq!(v.verify(Some(&ts.to_string()), Some(&shouted), body, now), Ok(key));
        let other = sign(&Secret::new("wrong"), ts, body);
        assert_eq!(v.verify(Some(&ts.to_string()), Some(&other), body, now), Err(Refused::Forged));
        let changed = sign(&secret, ts, b"command=%2Foffboard&text=bob%40contoso.com");
        assert_eq!(v.verify(Some(&ts.to_string()), Some(&changed), body, now), Err(Refused::Forged));
        let old = ts - 301;
        assert_eq!(v.verify(Some(&old.to_string()), Some(&sign(&secret, old, body)), body, now), Err(Refused::Stale));
        assert_eq!(v.verify(None, Some(&sig), body, now), Err(Refused::Missing));
        assert_eq!(v.verify(Some(&ts.to_string()), Some("v0=zz"), body, now), Err(Refused::Forged));
    }
}
