//! Every interaction is checked before its body is read: Discord's Ed25519 signature over
//! `timestamp + body` (serenity's verifier), then the timestamp within five minutes of our
//! clock, so a request captured once cannot be sent again later. A replay inside the window
//! is caught by the store's deliveries (see [`crate::server`]).

use std::sync::Arc;

use offboard_core::clock::Clock;

/// How far an interaction's timestamp may be from our clock.
pub const WINDOW: chrono::Duration = chrono::Duration::minutes(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no X-Signature-Ed25519 or X-Signature-Timestamp")]
    Missing,
    #[error("the signature does not match the body and timestamp")]
    BadSignature,
    #[error("the timestamp is more than five minutes from now")]
    Stale,
}

/// The application's public key, as the Developer Portal shows it (64 hex digits).
#[derive(Clone)]
pub struct PublicKey(serenity::interactions_endpoint::Verifier);

impl PublicKey {
    pub fn parse(hex_key: &str) -> Result<Self, String> {
        let bytes: [u8; 32] =
            hex::decode(hex_key.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| "an application public key is 64 hexadecimal digits".to_string())?;
        serenity::interactions_endpoint::Verifier::try_new(bytes).map(PublicKey).map_err(|e| e.to_string())
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicKey(…)")
    }
}

pub struct Verifier {
    key: PublicKey,
    clock: Arc<dyn Clock>,
}

impl Verifier {
    pub fn new(key: PublicKey, clock: Arc<dyn Clock>) -> Self {
        Verifier { key, clock }
    }

    pub fn verify(&self, signature: Option<&str>, timestamp: Option<&str>, body: &[u8]) -> Result<(), Refused> {
        let (Some(signature), Some(timestamp)) = (signature, timestamp) else { return Err(Refused::Missing) };
        self.key.0.verify(signature, timestamp, body).map_err(|()| Refused::BadSignature)?;
        let at = timestamp.parse::<i64>().ok().and_then(|s| chrono::DateTime::from_timestamp(s, 0)).ok_or(Refused::Stale)?;
        if (self.clock.now() - at).abs() > WINDOW {
            return Err(Refused::Stale);
        }
        Ok(())
    }
}
