//! The audit log: append-only and hash-chained. Each entry's hash covers its sequence
//! number, its content and the previous entry's hash, so any change, deletion, insertion,
//! reordering or (against a checkpoint) truncation breaks the chain at a named entry.

use chrono::{DateTime, TimeZone, Utc};
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
}

impl AuditEntry {
    pub fn at(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.at_ms).single().unwrap_or_default()
    }
}

/// The content hash of an entry, chained to `prev_hash`.
pub fn entry_hash(prev_hash: &str, seq: i64, at_ms: i64, tenant: Option<&str>, actor: &str, action: &str, run_id: Option<&str>, detail: &str) -> String {
    let body = json!([seq, at_ms, tenant, actor, action, run_id, detail]);
    let mut h = Sha256::new();
    h.update(b"offboard-audit-v1\n");
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(serde_json::to_vec(&body).expect("json"));
    hex::encode(h.finalize())
}

impl AuditEntry {
    pub fn expected_hash(&self) -> String {
        entry_hash(&self.prev_hash, self.seq, self.at_ms, self.tenant.as_deref(), &self.actor, &self.action, self.run_id.as_deref(), &self.detail)
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
            Self::Modified { seq } | Self::Missing { seq, .. } | Self::OutOfOrder { seq, .. } | Self::BrokenLink { seq, .. } | Self::Rewritten { seq } => *seq,
            Self::Truncated { last, .. } => last + 1,
        }
    }
}

/// What a successful verification vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: usize,
    pub head: Option<Checkpoint>,
}

/// Checks the whole chain, in stored order, against every given checkpoint.
pub fn verify(entries: &[AuditEntry], checkpoints: &[Checkpoint]) -> Result<Verified, Tamper> {
    let mut prev: Option<&AuditEntry> = None;
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
        if e.expected_hash() != e.hash {
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
    Ok(Verified { entries: entries.len(), head: prev.map(|p| Checkpoint { seq: p.seq, hash: p.hash.clone(), at_ms: p.at_ms }) })
}

/// Builds the chain in memory; the stores use the same rule.
pub fn chain(entries: &[NewAudit], start_ms: i64) -> Vec<AuditEntry> {
    let mut out: Vec<AuditEntry> = Vec::new();
    for (i, n) in entries.iter().enumerate() {
        let seq = i as i64 + 1;
        let prev_hash = out.last().map_or(GENESIS.to_string(), |p| p.hash.clone());
        let detail = canonical(&n.detail);
        let at_ms = start_ms + i as i64;
        let hash = entry_hash(&prev_hash, seq, at_ms, n.tenant.as_deref(), &n.actor, &n.action, n.run_id.as_deref(), &detail);
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
        let v = verify(&l, &[Checkpoint { seq: 20, hash: l[19].hash.clone(), at_ms: 0 }]).unwrap();
        assert_eq!(v.entries, 20);
        assert_eq!(v.head.unwrap().seq, 20);
        assert!(verify(&[], &[]).is_ok());
    }

    #[test]
    fn every_single_field_modification_is_named() {
        let l = log(12);
        for i in 0..l.len() {
            let mutations: Vec<Box<dyn Fn(&mut AuditEntry)>> = vec![
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
                assert_eq!(verify(&t, &[]), Err(Tamper::Modified { seq: i as i64 + 1 }), "entry {i}");
            }
        }
    }

    #[test]
    fn recomputed_hash_still_breaks_the_next_link() {
        let l = log(6);
        let mut t = l.clone();
        t[2].detail = "{\"i\":99}".into();
        t[2].hash = t[2].expected_hash();
        assert_eq!(verify(&t, &[]), Err(Tamper::BrokenLink { seq: 4, prev: 3 }));
    }

    #[test]
    fn deletion_insertion_reordering_truncation() {
        let l = log(8);
        let mut deleted = l.clone();
        deleted.remove(3);
        assert_eq!(verify(&deleted, &[]).unwrap_err().seq(), 4);

        // A forged entry with a valid hash of its own, renumbering what follows.
        let mut inserted = l[..3].to_vec();
        let forged_hash = entry_hash(&l[2].hash, 4, 1, None, "cli:mallory", "run.approved", None, "{}");
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
        });
        for e in &l[3..] {
            let mut e = e.clone();
            e.seq += 1;
            inserted.push(e);
        }
        assert_eq!(verify(&inserted, &[]).unwrap_err().seq(), 5);

        let mut swapped = l.clone();
        swapped.swap(4, 5);
        assert_eq!(verify(&swapped, &[]), Err(Tamper::OutOfOrder { seq: 6, prev: 4 }));

        let mut renumbered = l.clone();
        renumbered.swap(4, 5);
        renumbered[4].seq = 5;
        renumbered[5].seq = 6;
        assert_eq!(verify(&renumbered, &[]), Err(Tamper::Modified { seq: 5 }));

        let cp = Checkpoint { seq: 8, hash: l[7].hash.clone(), at_ms: 0 };
        assert_eq!(verify(&l[..6], &[cp.clone()]), Err(Tamper::Truncated { last: 6, expected: 8 }));
        assert_eq!(verify(&l[..6], std::slice::from_ref(&cp)).unwrap_err().seq(), 7);
    }

    #[test]
    fn a_consistent_rewrite_is_caught_by_a_checkpoint() {
        let l = log(5);
        let cp = Checkpoint { seq: 3, hash: l[2].hash.clone(), at_ms: 0 };
        let mut items: Vec<NewAudit> = l.iter().map(|e| NewAudit::new(e.actor.clone(), e.action.clone())).collect();
        items[1].action = "run.rejected".into();
        let rewritten = chain(&items, 1_700_000_000_000);
        assert!(verify(&rewritten, &[]).is_ok(), "a full rewrite is self-consistent");
        assert_eq!(verify(&rewritten, &[cp]), Err(Tamper::Rewritten { seq: 3 }));
    }

    #[test]
    fn anchors_parse() {
        let c: Checkpoint = format!("7:{}", "A".repeat(64)).parse().unwrap();
        assert_eq!(c.seq, 7);
        assert!("7".parse::<Checkpoint>().is_err());
        assert!("x:abc".parse::<Checkpoint>().is_err());
    }
}
