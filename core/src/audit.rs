//! The audit log: append-only and hash-chained. Each entry's hash covers its sequence
//! number, its content and the previous entry's hash, so any change, deletion, insertion,
//! reordering or (against a checkpoint) truncation breaks the chain at a named entry.
//!
//! With an [`AuditKey`] (kept outside the database) each entry's hash is an HMAC: someone
//! who can write to the database but does not hold the key cannot rewrite an entry and
//! recompute the chain, because they cannot compute the new MACs. Without the key the chain
//! still detects edits that do not recompute it; a consistent rewrite is then caught only
//! by a checkpoint witnessed outside the database.

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry to append; the store gives it a sequence number, a time and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    pub tenant: Option<String>,
    /// The actor key (`slack:U123`, `cli:root`, `system:worker`).
    pub actor: String,
    /// Dotted, e.g. `run.requested`, `approval.refused`, `step.finished`.
    pub action: String,
    pub run_id: Option<String>,
    pub detail: Value,
}

impl NewAudit {
    pub fn new(actor: impl Into<String>, action: impl Into<String>) -> Self {
        Self { tenant: None, actor: actor.into(), action: action.into(), run_id: None, detail: json!({}) }
    }

    pub fn tenant(mut self, tenant: impl ToString) -> Self {
        self.tenant = Some(tenant.to_string());
        self
    }

    pub fn run(mut self, run: impl ToString) -> Self {
        self.run_id = Some(run.to_string());
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// The key that seals the chain: 32 bytes, kept outside the database (derived from the
/// report signing key), never printed.
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl AuditKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key for this purpose only, from other secret bytes (the signing key's seed).
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"offboard audit chain key v1");
        Self(mac.finalize().into_bytes().into())
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(***)")
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    /// Milliseconds since the Unix epoch, UTC.
    pub at_ms: i64,
    pub tenant: Option<String>,
    pub actor: String,
    pub action: String,
    pub run_id: Option<String>,
    /// Canonical JSON text (keys sorted).
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
    /// The hash is an HMAC under the [`AuditKey`].
    #[serde(default)]
    pub keyed: bool,
}

impl AuditEntry {
    pub fn at(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.at_ms).single().unwrap_or_default()
    }
}

/// What an entry's hash covers, in the order it is hashed.
pub struct Hashed<'a> {
    pub prev_hash: &'a str,
    pub seq: i64,
    pub at_ms: i64,
    pub tenant: Option<&'a str>,
    pub actor: &'a str,
    pub action: &'a str,
    pub run_id: Option<&'a str>,
    pub detail: &'a str,
}

impl Hashed<'_> {
    fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&json!([self.seq, self.at_ms, self.tenant, self.actor, self.action, self.run_id, self.detail])).expect("json")
    }

    /// The entry's hash: an HMAC under `key`, else a plain SHA-256.
    pub fn hash(&self, key: Option<&AuditKey>) -> String {
        match key {
            Some(k) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(&k.0).expect("HMAC takes any key length");
                mac.update(b"offboard-audit-v2\n");
                mac.update(self.prev_hash.as_bytes());
                mac.update(b"\n");
                mac.update(&self.body());
                hex::encode(mac.finalize().into_bytes())
            }
            None => {
                let mut h = Sha256::new();
                h.update(b"offboard-audit-v1\n");
                h.update(self.prev_hash.as_bytes());
                h.update(b"\n");
                h.update(self.body());
                hex::encode(h.finalize())
            }
        }
    }
}

impl AuditEntry {
    fn hashed(&self) -> Hashed<'_> {
        Hashed {
            prev_hash: &self.prev_hash,
            seq: self.seq,
            at_ms: self.at_ms,
            tenant: self.tenant.as_deref(),
            actor: &self.actor,
            action: &self.action,
            run_id: self.run_id.as_deref(),
            detail: &self.detail,
        }
    }

    /// The hash this entry should have; `None` for a keyed entry checked without the key.
    pub fn expected_hash(&self, key: Option<&AuditKey>) -> Option<String> {
        match (self.keyed, key) {
            (true, None) => None,
            (true, Some(k)) => Some(self.hashed().hash(Some(k))),
            (false, _) => Some(self.hashed().hash(None)),
        }
    }

    /// Whether a keyed entry is authentic: its MAC holds under `key`. Entries can be
    /// checked one by one, without their neighbours.
    pub fn sealed_by(&self, key: &AuditKey) -> bool {
        self.keyed && self.expected_hash(Some(key)).as_deref() == Some(self.hash.as_str())
    }
}

/// A head of the chain recorded at some time (and sent to witnesses outside the
/// database): entries up to `seq` must still hash to `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at_ms: i64,
}

impl std::str::FromStr for Checkpoint {
    type Err = String;
    /// `SEQ:HASH`, as `offboard audit verify --anchor` takes it.
    fn from_str(s: &str) -> Result<Self, String> {
        let (seq, hash) = s.split_once(':').ok_or("an anchor looks like 42:9f86d0…")?;
        let seq = seq.parse().map_err(|_| format!("\"{seq}\" is not a sequence number"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the anchor's hash must be 64 hex digits".into());
        }
        Ok(Self { seq, hash: hash.to_ascii_lowercase(), at_ms: 0 })
    }
}

/// The first place the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    #[error("entry {seq} is not sealed although entry {first} before it is: it was rewritten without the key")]
    Unsealed { seq: i64, first: i64 },
    #[error("entry {seq} was modified: its content does not match its hash")]
    Modified { seq: i64 },
    #[error("entry {seq} is missing: entry {found} follows entry {prev}")]
    Missing { seq: i64, prev: i64, found: i64 },
    #[error("entry {seq} is out of place: it follows entry {prev}")]
    OutOfOrder { seq: i64, prev: i64 },
    #[error("entry {seq} does not follow entry {prev}: an entry was inserted, removed or rewritten between them")]
    BrokenLink { seq: i64, prev: i64 },
    #[error("the log ends at entry {last} but a checkpoint vouches for entry {expected}: entries after {last} were removed")]
    Truncated { last: i64, expected: i64 },
    #[error("entry {seq} differs from the checkpoint taken at that entry: the log was rewritten")]
    Rewritten { seq: i64 },
}

impl Tamper {
    /// The entry the verifier names.
    pub fn seq(&self) -> i64 {
        match self {
            Self::Modified { seq }
            | Self::Missing { seq, .. }
            | Self::OutOfOrder { seq, .. }
            | Self::BrokenLink { seq, .. }
            | Self::Rewritten { seq }
            | Self::Unsealed { seq, .. } => *seq,
            Self::Truncated { last, .. } => last + 1,
        }
    }
}

/// What a successful verification vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: usize,
    pub head: Option<Checkpoint>,
    /// The first entry sealed with the key (every later one is sealed too).
    pub keyed_from: Option<i64>,
    /// Whether the key was at hand to check the seals.
    pub key_checked: bool,
}

impl Verified {
    /// The guarantee, in words, for `offboard audit verify`.
    pub fn guarantee(&self) -> String {
        match (self.keyed_from, self.key_checked) {
            (Some(1), true) => "every entry is sealed with the audit key: a rewrite by anyone without the key is detected".into(),
            (Some(n), true) => format!(
                "entries from {n} on are sealed with the audit key; entries before {n} are only chained: a consistent rewrite of those is detected only against a checkpoint kept outside the database"
            ),
            (Some(_), false) => "the chain links hold, but the seals were not checked (no audit key here): a consistent rewrite is detected only against a checkpoint kept outside the database".into(),
            (None, _) => "the entries are chained but not sealed: a consistent rewrite is detected only against a checkpoint kept outside the database".into(),
        }
    }
}

/// Checks the whole chain, in stored order, against every given checkpoint; with `key`,
/// every seal too. Once one entry is sealed, every later one must be.
pub fn verify(entries: &[AuditEntry], checkpoints: &[Checkpoint], key: Option<&AuditKey>) -> Result<Verified, Tamper> {
    let mut prev: Option<&AuditEntry> = None;
    let mut keyed_from = None;
    for (i, e) in entries.iter().enumerate() {
        let (prev_seq, prev_hash) = prev.map_or((0, GENESIS), |p| (p.seq, p.hash.as_str()));
        if e.seq < prev_seq + 1 {
            return Err(Tamper::OutOfOrder { seq: e.seq, prev: prev_seq });
        }
        if e.seq > prev_seq + 1 {
            if entries[i + 1..].iter().any(|later| later.seq == prev_seq + 1) {
                return Err(Tamper::OutOfOrder { seq: e.seq, prev: prev_seq });
            }
            return Err(Tamper::Missing { seq: prev_seq + 1, prev: prev_seq, found: e.seq });
        }
        match (keyed_from, e.keyed) {
            (None, true) => keyed_from = Some(e.seq),
            (Some(first), false) => return Err(Tamper::Unsealed { seq: e.seq, first }),
            _ => {}
        }
        if e.expected_hash(key).is_some_and(|h| h != e.hash) {
            return Err(Tamper::Modified { seq: e.seq });
        }
        if e.prev_hash != prev_hash {
            return Err(Tamper::BrokenLink { seq: e.seq, prev: prev_seq });
        }
        prev = Some(e);
    }
    let last = prev.map_or(0, |p| p.seq);
    for c in checkpoints {
        if c.seq > last {
            return Err(Tamper::Truncated { last, expected: c.seq });
        }
        if c.seq >= 1 {
            let at = &entries[(c.seq - 1) as usize];
            if at.hash != c.hash {
                return Err(Tamper::Rewritten { seq: c.seq });
            }
        }
    }
    Ok(Verified {
        entries: entries.len(),
        head: prev.map(|p| Checkpoint { seq: p.seq, hash: p.hash.clone(), at_ms: p.at_ms }),
        keyed_from,
        key_checked: key.is_some(),
    })
}

/// Builds the chain in memory; the stores use the same rule.
pub fn chain(entries: &[NewAudit], start_ms: i64) -> Vec<AuditEntry> {
    chain_with(entries, start_ms, None)
}

pub fn chain_with(entries: &[NewAudit], start_ms: i64, key: Option<&AuditKey>) -> Vec<AuditEntry> {
    let mut out: Vec<AuditEntry> = Vec::new();
    for (i, n) in entries.iter().enumerate() {
        let seq = i as i64 + 1;
        let prev_hash = out.last().map_or(GENESIS.to_string(), |p| p.hash.clone());
        let detail = canonical(&n.detail);
        let at_ms = start_ms + i as i64;
        let hash = Hashed {
            prev_hash: &prev_hash,
            seq,
            at_ms,
            tenant: n.tenant.as_deref(),
            actor: &n.actor,
            action: &n.action,
            run_id: n.run_id.as_deref(),
            detail: &detail,
        }
        .hash(key);
        out.push(AuditEntry {
            seq,
            at_ms,
            tenant: n.tenant.clone(),
            actor: n.actor.clone(),
            action: n.action.clone(),
            run_id: n.run_id.clone(),
            detail,
            prev_hash,
            hash,
            keyed: key.is_some(),
        });
    }
    out
}

/// JSON text with object keys sorted, the form that is hashed and stored.
pub fn canonical(v: &Value) -> String {
    // serde_json's default map is a BTreeMap, so serialising sorts keys at every level.
    serde_json::to_string(v).expect("json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize) -> Vec<AuditEntry> {
        let entries: Vec<NewAudit> = (0..n)
            .map(|i| NewAudit::new("slack:U1", "step.finished").tenant("contoso.com").run("ob-0000000001").detail(json!({ "i": i, "ok": true })))
            .collect();
        chain(&entries, 1_700_000_000_000)
    }

    #[test]
    fn an_untouched_log_verifies() {
        let l = log(20);
        let v = verify(&l, &[Checkpoint { seq: 20, hash: l[19].hash.clone(), at_ms: 0 }], None).unwrap();
        assert_eq!(v.entries, 20);
        assert_eq!(v.head.unwrap().seq, 20);
        assert!(verify(&[], &[], None).is_ok());
    }

    #[test]
    fn every_single_field_modification_is_named() {
        let l = log(12);
        for i in 0..l.len() {
            type Mutation = Box<dyn Fn(&mut AuditEntry)>;
            let mutations: Vec<Mutation> = vec![
                Box::new(|e| e.at_ms += 1),
                Box::new(|e| e.tenant = Some("fabrikam.com".into())),
                Box::new(|e| e.actor.push('x')),
                Box::new(|e| e.action = "run.approved".into()),
                Box::new(|e| e.run_id = None),
                Box::new(|e| e.detail = e.detail.replace("true", "false")),
            ];
            for m in mutations {
                let mut t = l.clone();
                m(&mut t[i]);
                assert_eq!(verify(&t, &[], None), Err(Tamper::Modified { seq: i as i64 + 1 }), "entry {i}");
            }
        }
    }

    #[test]
    fn recomputed_hash_still_breaks_the_next_link() {
        let l = log(6);
        let mut t = l.clone();
        t[2].detail = "{\"i\":99}".into();
        t[2].hash = t[2].expected_hash(None).unwrap();
        assert_eq!(verify(&t, &[], None), Err(Tamper::BrokenLink { seq: 4, prev: 3 }));
    }

    #[test]
    fn deletion_insertion_reordering_truncation() {
        let l = log(8);
        let mut deleted = l.clone();
        deleted.remove(3);
        assert_eq!(verify(&deleted, &[], None).unwrap_err().seq(), 4);

        // A forged entry with a valid hash of its own, renumbering what follows.
        let mut inserted = l[..3].to_vec();
        let forged_hash =
            Hashed { prev_hash: &l[2].hash, seq: 4, at_ms: 1, tenant: None, actor: "cli:mallory", action: "run.approved", run_id: None, detail: "{}" }
                .hash(None);
        inserted.push(AuditEntry {
            seq: 4,
            at_ms: 1,
            tenant: None,
            actor: "cli:mallory".into(),
            action: "run.approved".into(),
            run_id: None,
            detail: "{}".into(),
            prev_hash: l[2].hash.clone(),
            hash: forged_hash,
            keyed: false,
        });
        for e in &l[3..] {
            let mut e = e.clone();
            e.seq += 1;
            inserted.push(e);
        }
        assert_eq!(verify(&inserted, &[], None).unwrap_err().seq(), 5);

        let mut swapped = l.clone();
        swapped.swap(4, 5);
        assert_eq!(verify(&swapped, &[], None), Err(Tamper::OutOfOrder { seq: 6, prev: 4 }));

        let mut renumbered = l.clone();
        renumbered.swap(4, 5);
        renumbered[4].seq = 5;
        renumbered[5].seq = 6;
        assert_eq!(verify(&renumbered, &[], None), Err(Tamper::Modified { seq: 5 }));

        let cp = Checkpoint { seq: 8, hash: l[7].hash.clone(), at_ms: 0 };
        assert_eq!(verify(&l[..6], std::slice::from_ref(&cp), None), Err(Tamper::Truncated { last: 6, expected: 8 }));
        assert_eq!(verify(&l[..6], std::slice::from_ref(&cp), None).unwrap_err().seq(), 7);
    }

    #[test]
    fn a_consistent_rewrite_is_caught_by_a_checkpoint() {
        let l = log(5);
        let cp = Checkpoint { seq: 3, hash: l[2].hash.clone(), at_ms: 0 };
        let mut items: Vec<NewAudit> = l.iter().map(|e| NewAudit::new(e.actor.clone(), e.action.clone())).collect();
        items[1].action = "run.rejected".into();
        let rewritten = chain(&items, 1_700_000_000_000);
        assert!(verify(&rewritten, &[], None).is_ok(), "a full rewrite is self-consistent");
        assert_eq!(verify(&rewritten, &[cp], None), Err(Tamper::Rewritten { seq: 3 }));
    }

    #[test]
    fn a_sealed_chain_cannot_be_rewritten_without_the_key() {
        let key = AuditKey::new([7; 32]);
        let items: Vec<NewAudit> = (0..5).map(|i| NewAudit::new("slack:U1", "run.approved").detail(json!({ "approver": format!("A{i}") }))).collect();
        let sealed = chain_with(&items, 1_700_000_000_000, Some(&key));
        let v = verify(&sealed, &[], Some(&key)).unwrap();
        assert_eq!((v.keyed_from, v.key_checked), (Some(1), true));
        assert!(v.guarantee().starts_with("every entry is sealed"));
        assert!(sealed.iter().all(|e| e.sealed_by(&key)));
        // A consistent rewrite with another key, or as unsealed entries, is caught.
        let mut forged = items.clone();
        forged[1].detail = json!({ "approver": "Chief Security Officer" });
        let rekeyed = chain_with(&forged, 1_700_000_000_000, Some(&AuditKey::new([9; 32])));
        assert_eq!(verify(&rekeyed, &[], Some(&key)), Err(Tamper::Modified { seq: 1 }));
        assert!(!rekeyed[1].sealed_by(&key));
        let mut tail = sealed.clone();
        tail.truncate(3);
        tail.extend(chain(&forged, 1_700_000_000_000).into_iter().skip(3).map(|mut e| {
            e.prev_hash = String::new();
            e
        }));
        assert!(matches!(verify(&tail, &[], Some(&key)), Err(Tamper::Unsealed { seq: 4, first: 1 })));
        // Without the key the links still hold, and the verdict says what that proves.
        let v = verify(&sealed, &[], None).unwrap();
        assert!(v.guarantee().contains("seals were not checked"), "{}", v.guarantee());
    }

    #[test]
    fn anchors_parse() {
        let c: Checkpoint = format!("7:{}", "A".repeat(64)).parse().unwrap();
        assert_eq!(c.seq, 7);
        assert!("7".parse::<Checkpoint>().is_err());
        assert!("x:abc".parse::<Checkpoint>().is_err());
    }
}
