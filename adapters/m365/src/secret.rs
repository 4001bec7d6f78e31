//! Secrets in memory and at rest. A [`Secret`] never prints; stored tenant credentials are
//! sealed with ChaCha20-Poly1305 under a master key from configuration, bound to the tenant
//! they belong to, so a sealed blob copied to another tenant's row does not open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

pub use offboard_core::secret::Secret;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// Fix the configuration: the master key must be 32 bytes, base64.
    #[error("the master key must be 32 bytes encoded as base64")]
    BadMasterKey,
    /// The blob was not sealed by this key for this tenant, or was altered.
    #[error("the stored credential cannot be opened: wrong master key, another tenant's credential, or tampered")]
    CannotOpen,
    #[error("the stored credential is not in a known format")]
    Malformed,
}

/// Seals and opens stored credentials.
#[derive(Clone)]
pub struct Vault {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(***)")
    }
}

const PREFIX: &str = "v1:";

impl Vault {
    /// The master key as configured: 32 random bytes, base64.
    pub fn from_base64(key: &str) -> Result<Self, VaultError> {
        let bytes = B64.decode(key.trim()).map_err(|_| VaultError::BadMasterKey)?;
        if bytes.len() != 32 {
            return Err(VaultError::BadMasterKey);
        }
        ChaCha20Poly1305::new_from_slice(&bytes).map(|cipher| Self { cipher }).map_err(|_| VaultError::BadMasterKey)
    }

    /// A fresh master key, base64, for `offboard` to print once at setup.
    pub fn generate_key() -> String {
        B64.encode(ChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// `v1:` + base64(nonce ‖ ciphertext ‖ tag); `context` (the tenant id) is authenticated.
    pub fn seal(&self, plaintext: &Secret, context: &str) -> String {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self.cipher.encrypt(&nonce, Payload { msg: plaintext.expose().as_bytes(), aad: context.as_bytes() }).expect("encryption of in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Secret, VaultError> {
        let raw = sealed.strip_prefix(PREFIX).ok_or(VaultError::Malformed)?;
        let bytes = B64.decode(raw).map_err(|_| VaultError::Malformed)?;
        if bytes.len() < 12 + 16 {
            return Err(VaultError::Malformed);
        }
        let (nonce, ct) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| VaultError::Malformed)?;
        let pt = self.cipher.decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: context.as_bytes() }).map_err(|_| VaultError::CannotOpen)?;
        String::from_utf8(pt).map(Secret::new).map_err(|_| VaultError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_the_same_key_and_tenant() {
        let v = Vault::from_base64(&Vault::generate_key()).unwrap();
        let secret = Secret::new("s3cr3t-client-value~");
        let sealed = v.seal(&secret, "tenant-a");
        assert!(!sealed.contains("s3cr3t"), "ciphertext must not hold the plaintext");
        assert_ne!(sealed, v.seal(&secret, "tenant-a"), "a fresh nonce every time");
        assert_eq!(v.open(&sealed, "tenant-a").unwrap(), secret);
        assert_eq!(v.open(&sealed, "tenant-b"), Err(VaultError::CannotOpen));
        let other = Vault::from_base64(&Vault::generate_key()).unwrap();
        assert_eq!(other.open(&sealed, "tenant-a"), Err(VaultError::CannotOpen));
        let mut tampered = sealed.clone().into_bytes();
        let i = tampered.len() - 3;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        assert!(v.open(std::str::from_utf8(&tampered).unwrap(), "tenant-a").is_err());
        assert_eq!(v.open("plain", "tenant-a"), Err(VaultError::Malformed));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert!(!format!("{:?}", Vault::from_base64(&Vault::generate_key()).unwrap()).contains('='));
        assert_eq!(Vault::from_base64("c2hvcnQ=").unwrap_err(), VaultError::BadMasterKey);
    }
}
