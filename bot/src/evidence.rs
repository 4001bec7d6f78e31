//! The evidence commands: signing keys, reports, offline verification, audit export and
//! template checks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use offboard_core::audit::AuditEntry;
use offboard_core::domain::{RunId, TenantId};
use offboard_core::store::Store;
use offboard_report::sign::{self, Verdict};
use offboard_report::{Evidence, PublicKey, ReportKey};

/// `SINCE` as a date (midnight UTC) or an RFC 3339 time.
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| format!("`{s}` is neither a date (2026-11-01) nor a time (2026-11-01T09:00:00Z)"))
}

pub fn keys_show(path: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let (key, created) = ReportKey::load_or_create(path)?;
    if created {
        writeln!(out, "created a new signing key in {} (keep it private; back it up)", path.display())?;
    }
    writeln!(out, "public key   {}", key.public())?;
    writeln!(out, "fingerprint  {}", key.public().fingerprint())?;
    writeln!(out, "Give the public key to auditors: offboard verify REPORT.pdf --trust {}", key.public())?;
    Ok(())
}

pub async fn report(store: &Store, id: &str, key_path: &Path, dir: &Path, out: &mut impl Write) -> anyhow::Result<PathBuf> {
    let id = RunId::parse(id)?;
    let (key, _) = ReportKey::load_or_create(key_path)?;
    let evidence = Evidence::new(key, dir);
    let (path, _) = evidence.pdf(store, &id, offboard_core::clock::Clock::now(&offboard_core::clock::SystemClock)).await?;
    writeln!(out, "{}", path.display())?;
    Ok(path)
}

/// Exit 0 valid, 1 tampered or not matching the store, 3 signed by an unknown key.
pub async fn verify(file: &Path, key_path: &Path, trust: &[PublicKey], store: Option<&Store>, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut trusted = trust.to_vec();
    if key_path.exists() {
        trusted.push(ReportKey::load(key_path)?.public());
    }
    let verdict = sign::verify(&bytes, &trusted);
    writeln!(out, "{verdict}")?;
    match &verdict {
        Verdict::Valid { head: Some((seq, hash)), .. } => {
            let Some(store) = store else {
                writeln!(out, "(the audit chain head was not checked: no database given)")?;
                return Ok(ExitCode::SUCCESS);
            };
            let entry = store.audit_entries(seq - 1, 1).await?.into_iter().next().filter(|e| e.seq == *seq);
            match entry {
                Some(e) if &e.hash == hash => match store.verify_audit(&[]).await? {
                    Ok(_) => {
                        writeln!(out, "audit chain head {seq} matches the store, and the chain verifies")?;
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(t) => {
                        writeln!(out, "the store's audit chain is broken: {t}")?;
                        Ok(ExitCode::from(1))
                    }
                },
                Some(_) => {
                    writeln!(out, "MISMATCH: the store's audit entry {seq} has another hash: the log was rewritten after this report")?;
                    Ok(ExitCode::from(1))
                }
                None => {
                    writeln!(out, "MISMATCH: the store has no audit entry {seq}: wrong database, or entries were removed")?;
                    Ok(ExitCode::from(1))
                }
            }
        }
        Verdict::Valid { .. } => Ok(ExitCode::SUCCESS),
        Verdict::UnknownKey { .. } => Ok(ExitCode::from(3)),
        Verdict::Tampered(_) | Verdict::Unsigned => Ok(ExitCode::from(1)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn entry_time(e: &AuditEntry) -> String {
    e.at().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes every entry (or a tenant's, since a time), in chain order, with its hashes, so an
/// auditor can recompute each one. Returns how many were written.
pub async fn export(
    store: &Store,
    format: ExportFormat,
    tenant: Option<&TenantId>,
    since: Option<DateTime<Utc>>,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    if format == ExportFormat::Csv {
        writeln!(out, "seq,at,tenant,actor,action,run_id,detail,prev_hash,hash")?;
    }
    let mut after = 0;
    let mut written = 0;
    loop {
        let page = store.audit_entries(after, 2000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in page.iter().filter(|e| tenant.is_none_or(|t| e.tenant.as_deref() == Some(t.as_str()))).filter(|e| since.is_none_or(|s| e.at() >= s)) {
            match format {
                ExportFormat::Jsonl => {
                    let mut v = serde_json::to_value(e)?;
                    v["at"] = serde_json::Value::String(entry_time(e));
                    writeln!(out, "{v}")?;
                }
                ExportFormat::Csv => {
                    let fields = [
                        e.seq.to_string(),
                        entry_time(e),
                        e.tenant.clone().unwrap_or_default(),
                        e.actor.clone(),
                        e.action.clone(),
                        e.run_id.clone().unwrap_or_default(),
                        e.detail.clone(),
                        e.prev_hash.clone(),
                        e.hash.clone(),
                    ];
                    writeln!(out, "{}", fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","))?;
                }
            }
            written += 1;
        }
    }
    Ok(written)
}

/// Verifies an exported JSONL file offline: every entry's hash, and the links between
/// consecutive entries (a filtered export has gaps, which are reported as such).
pub fn verify_export(file: &Path, signing_key: &Path, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let key = if signing_key.exists() { Some(ReportKey::load(signing_key)?.audit_key()) } else { None };
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let e: AuditEntry = serde_json::from_str(line).with_context(|| format!("{} line {}: not an exported audit entry", file.display(), i + 1))?;
        entries.push(e);
    }
    match offboard_core::audit::verify(&entries, &[], key.as_ref()) {
        Ok(v) => {
            let head = v.head.as_ref().map(|h| format!("{}:{}", h.seq, h.hash)).unwrap_or_else(|| "empty".into());
            writeln!(out, "export intact: {} entries, head {head}", v.entries)?;
            writeln!(out, "guarantee: {}", v.guarantee())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(t) => {
            writeln!(out, "export TAMPERED or incomplete: {t}")?;
            Ok(ExitCode::from(1))
        }
    }
}

pub fn templates_check(dir: Option<&Path>, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match offboard_core::templates::Templates::load(dir, offboard_notify::webhook::TEMPLATES) {
        Ok(_) => {
            let n = offboard_core::templates::DEFAULTS.len() + offboard_notify::webhook::TEMPLATES.len();
            writeln!(out, "{n} templates parse and render{}", dir.map(|d| format!(" (overrides from {})", d.display())).unwrap_or_default())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            writeln!(out, "{e}")?;
            Ok(ExitCode::from(1))
        }
    }
}
