//! Ed25519 signatures embedded in the PDF.
//!
//! The renderer writes a seal into the document's `/Identifier` string:
//! `offboard-report-signature v1 key=<public key> run=<id> head=<seq:hash> sig=<128 zeros>`.
//! The signature covers the whole file with the `sig` digits as zeros, so the key, the run,
//! the chain head and every byte of content are signed; filling the digits in changes no
//! offset, so the file stays a valid PDF.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use offboard_core::report::Report;

const MARKER: &[u8] = b"offboard-report-signature v1 ";
const SIG_HEX: usize = 128;

/// The key that signs reports: a 32-byte Ed25519 seed, base64 in a file only its owner reads.
pub struct ReportKey(SigningKey);

impl std::fmt::Debug for ReportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReportKey({})", self.public().fingerprint())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot create the signing key {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("the signing key {path} is not a base64 Ed25519 seed of 32 bytes")]
    Malformed { path: String },
}

impl ReportKey {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// The key that seals the audit chain, derived from this one: whoever holds the signing
    /// key (outside the database) holds it.
    pub fn audit_key(&self) -> offboard_core::audit::AuditKey {
        offboard_core::audit::AuditKey::derive(self.0.as_bytes())
    }

    /// The key report links are signed with, derived from this one.
    pub fn link_key(&self) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.0.as_bytes()).expect("HMAC takes any key length");
        mac.update(b"offboard report links v1");
        mac.finalize().into_bytes().into()
    }

    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })?;
        let seed: [u8; 32] =
            STANDARD.decode(text.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| KeyError::Malformed { path: path.display().to_string() })?;
        Ok(Self::from_seed(seed))
    }

    /// Loads the key, creating it (mode 0600) on first use. `true` when it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let key = Self::generate();
        let create = |source| KeyError::Create { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(create)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(path).map_err(create)?;
        writeln!(f, "{}", STANDARD.encode(key.0.to_bytes())).map_err(create)?;
        Ok((key, true))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Fills the seal's signature digits of a rendered PDF.
    pub fn sign(&self, mut pdf: Vec<u8>) -> Result<Vec<u8>, Verdict> {
        let seal = find_seal(&pdf)?;
        let sig = self.0.sign(&pdf);
        pdf[seal.sig_at..seal.sig_at + SIG_HEX].copy_from_slice(hex::encode(sig.to_bytes()).as_bytes());
        Ok(pdf)
    }
}

/// A public key that verifies reports, printed as base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bytes: [u8; 32] =
            STANDARD.decode(s.trim()).ok().and_then(|b| b.try_into().ok()).ok_or("a public key is 32 bytes of base64 (from `offboard keys show`)")?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| "not an Ed25519 public key")?;
        Ok(Self(bytes))
    }

    fn verifying(&self) -> VerifyingKey {
        VerifyingKey::from_bytes(&self.0).expect("checked when parsed")
    }

    /// `SHA256:` and the first 16 bytes of the key's hash, for people to compare.
    pub fn fingerprint(&self) -> String {
        let h = Sha256::digest(self.0);
        let hex = hex::encode(&h[..16]);
        let groups: Vec<&str> = (0..hex.len()).step_by(4).map(|i| &hex[i..i + 4]).collect();
        format!("SHA256:{}", groups.join(":"))
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// What the renderer embeds, before the signature is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub key: PublicKey,
    pub run: String,
    /// The audit chain head the report names, `SEQ:HASH`, or `none`.
    pub head: String,
}

impl Seal {
    pub fn for_report(report: &Report, key: &PublicKey) -> Self {
        Seal { key: *key, run: report.run_id.clone(), head: report.audit_head.as_ref().map_or_else(|| "none".into(), |h| format!("{}:{}", h.seq, h.hash)) }
    }

    /// The `/Identifier` text with the signature digits zeroed.
    pub fn unsigned(&self) -> String {
        format!("{}key={} run={} head={} sig={}", String::from_utf8_lossy(MARKER), self.key, self.run, self.head, "0".repeat(SIG_HEX))
    }
}

struct Found {
    key: String,
    run: String,
    head: String,
    sig_at: usize,
}

fn find_seal(pdf: &[u8]) -> Result<Found, Verdict> {
    let mut hits = pdf.windows(MARKER.len()).enumerate().filter(|(_, w)| *w == MARKER).map(|(i, _)| i);
    let start = hits.next().ok_or(Verdict::Unsigned)?;
    if hits.next().is_some() {
        return Err(Verdict::Tampered("the file holds more than one signature seal".into()));
    }
    let body_at = start + MARKER.len();
    let end = pdf[body_at..].iter().position(|&b| b == b')').map(|n| body_at + n).ok_or(Verdict::Tampered("the signature seal is cut short".into()))?;
    let body = std::str::from_utf8(&pdf[body_at..end]).map_err(|_| Verdict::Tampered("the signature seal is not text".into()))?;
    let field = |name: &str| {
        body.split(' ')
            .find_map(|f| f.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
            .ok_or_else(|| Verdict::Tampered(format!("the signature seal has no {name}")))
    };
    let (key, run, head, sig) = (field("key")?, field("run")?, field("head")?, field("sig")?);
    if sig.len() != SIG_HEX || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Verdict::Tampered("the signature is not 64 bytes of hex".into()));
    }
    let sig_at = body_at + body.rfind("sig=").expect("found above") + 4;
    Ok(Found { key, run, head, sig_at })
}

/// What `offboard verify` says about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by a trusted key and unchanged since.
    Valid { key: PublicKey, run: String, head: Option<(i64, String)> },
    /// Changed after signing, or the seal itself is damaged.
    Tampered(String),
    /// Intact, but signed by a key the verifier does not trust.
    UnknownKey { key: String },
    /// No seal at all: not a report this product signed.
    Unsigned,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Valid { key, run, head } => {
                write!(f, "VALID: report for run {run}, signed by {}", key.fingerprint())?;
                if let Some((seq, hash)) = head {
                    write!(f, ", audit chain head {seq}:{hash}")?;
                }
                Ok(())
            }
            Self::Tampered(why) => write!(f, "TAMPERED: {why}"),
            Self::UnknownKey { key } => {
                write!(f, "UNKNOWN KEY: the signature is intact but was made by {key}, which is not a trusted key (pass it with --trust if you know it)")
            }
            Self::Unsigned => write!(f, "UNSIGNED: the file has no Offboard signature"),
        }
    }
}

/// Checks a file offline against the trusted public keys.
pub fn verify(pdf: &[u8], trusted: &[PublicKey]) -> Verdict {
    let seal = match find_seal(pdf) {
        Ok(s) => s,
        Err(v) => return v,
    };
    let Ok(key) = PublicKey::parse(&seal.key) else {
        return Verdict::Tampered("the signing key in the seal is malformed".into());
    };
    let sig_hex = &pdf[seal.sig_at..seal.sig_at + SIG_HEX];
    let sig: [u8; 64] = match hex::decode(sig_hex).ok().and_then(|b| b.try_into().ok()) {
        Some(s) => s,
        None => return Verdict::Tampered("the signature is not hex".into()),
    };
    let mut signed = pdf.to_vec();
    signed[seal.sig_at..seal.sig_at + SIG_HEX].fill(b'0');
    if key.verifying().verify(&signed, &Signature::from_bytes(&sig)).is_err() {
        return Verdict::Tampered("the signature does not match the content: the file was changed after signing".into());
    }
    if !trusted.contains(&key) {
        return Verdict::UnknownKey { key: format!("{key} ({})", key.fingerprint()) };
    }
    let head = seal.head.split_once(':').and_then(|(s, h)| Some((s.parse().ok()?, h.to_string())));
    Verdict::Valid { key, run: seal.run, head }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_pdf(seal: &Seal) -> Vec<u8> {
        format!("%PDF-1.7\n1 0 obj <</Identifier ({})>> endobj\nBT (Hello) Tj ET\n%%EOF\n", seal.unsigned()).into_bytes()
    }

    #[test]
    fn sign_then_verify_and_every_single_byte_change_is_caught() {
        let key = ReportKey::from_seed([7; 32]);
        let seal = Seal { key: key.public(), run: "ob-7k2m9q4x1p".into(), head: "42:abcd".into() };
        let signed = key.sign(fake_pdf(&seal)).unwrap();
        assert_eq!(verify(&signed, &[key.public()]), Verdict::Valid { key: key.public(), run: "ob-7k2m9q4x1p".into(), head: Some((42, "abcd".into())) });
        for i in 0..signed.len() {
            let mut t = signed.clone();
            t[i] ^= 0x01;
            assert!(!matches!(verify(&t, &[key.public()]), Verdict::Valid { .. }), "byte {i} changed and still valid");
        }
    }

    #[test]
    fn other_keys_and_missing_seals() {
        let key = ReportKey::from_seed([7; 32]);
        let other = ReportKey::from_seed([8; 32]);
        let seal = Seal { key: other.public(), run: "ob-7k2m9q4x1p".into(), head: "none".into() };
        let signed = other.sign(fake_pdf(&seal)).unwrap();
        assert!(matches!(verify(&signed, &[key.public()]), Verdict::UnknownKey { .. }));
        assert_eq!(verify(b"%PDF-1.7\n%%EOF", &[key.public()]), Verdict::Unsigned);
    }

    #[test]
    fn keys_are_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/report.key");
        let (a, created) = ReportKey::load_or_create(&path).unwrap();
        assert!(created);
        let (b, created) = ReportKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.public(), b.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "nonsense").unwrap();
        assert!(matches!(ReportKey::load(&path), Err(KeyError::Malformed { .. })));
        assert_eq!(PublicKey::parse(&a.public().to_string()).unwrap(), a.public());
    }
}
