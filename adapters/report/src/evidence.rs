//! A run's signed report, made once from the store and kept on disk.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

use offboard_core::audit::NewAudit;
use offboard_core::domain::RunId;
use offboard_core::report::{Attested, Report};
use offboard_core::store::{Store, StoreError};

use crate::ReportKey;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the report {path}: {message}")]
    Write { path: String, message: String },
    #[error("the report could not be signed: {0}")]
    Sign(String),
    /// Someone changed the audit log: no report is signed over it.
    #[error("the audit log was changed: entry {0} of this run does not carry the audit key's seal, so no report is signed")]
    Tampered(i64),
}

/// Where reports go and the key that signs them.
#[derive(Debug)]
pub struct Evidence {
    key: ReportKey,
    dir: PathBuf,
}

impl Evidence {
    pub fn new(key: ReportKey, dir: impl Into<PathBuf>) -> Self {
        Self { key, dir: dir.into() }
    }

    pub fn key(&self) -> &ReportKey {
        &self.key
    }

    pub fn path_for(&self, id: &RunId) -> PathBuf {
        self.dir.join(format!("{id}.pdf"))
    }

    /// The report's content as the audit chain attests it (who asked, who approved, how
    /// each step ended), not as the run's rows say. The chain head is recorded as a
    /// checkpoint, so the report names a head that witnesses outside the database also
    /// received.
    pub async fn report(store: &Store, id: &RunId, now: DateTime<Utc>) -> Result<Report, EvidenceError> {
        let run = store.run(id).await?;
        let steps = store.steps(id).await?;
        let entries = store.attested_entries(id).await?.map_err(EvidenceError::Tampered)?;
        let head = store.checkpoint(now).await?;
        Ok(Report::build_attested(&run, &steps, &Attested::from_entries(&entries), head, now))
    }

    /// The signed PDF of a run, made on first request and read from disk after that, so
    /// every recipient gets the same file. Audited as `report.signed`.
    pub async fn pdf(&self, store: &Store, id: &RunId, now: DateTime<Utc>) -> Result<(PathBuf, Vec<u8>), EvidenceError> {
        let path = self.path_for(id);
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok((path, bytes));
        }
        let report = Self::report(store, id, now).await?;
        let bytes = crate::signed_pdf(&report, &self.key).map_err(|v| EvidenceError::Sign(v.to_string()))?;
        write_atomically(&path, &bytes)?;
        let detail = json!({
            "file": path.file_name().map(|n| n.to_string_lossy().to_string()),
            "sha256": hex::encode(Sha256::digest(&bytes)),
            "key": self.key.public().fingerprint(),
            "audit_head": report.audit_head.as_ref().map(|h| format!("{}:{}", h.seq, h.hash)),
        });
        store.audit(NewAudit::new("system:evidence", "report.signed").tenant(&report.tenant).run(id).detail(detail), now).await?;
        Ok((path, bytes))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), EvidenceError> {
    let err = |e: std::io::Error| EvidenceError::Write { path: path.display().to_string(), message: e.to_string() };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("pdf.partial");
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Core's `Reports` port: the relay attaches this to the run's thread.
pub struct RunReports {
    pub evidence: std::sync::Arc<Evidence>,
    pub store: Store,
    /// Signed links beside the file, when the service has a public address.
    pub links: Option<std::sync::Arc<crate::ReportLinks>>,
}

#[async_trait::async_trait]
impl offboard_core::chat::relay::Reports for RunReports {
    async fn report(&self, run: &RunId) -> Result<offboard_core::chat::FileOut, String> {
        let now = chrono::Utc::now();
        let (path, bytes) = self.evidence.pdf(&self.store, run, now).await.map_err(|e| e.to_string())?;
        Ok(offboard_core::chat::FileOut {
            name: path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
            mime: "application/pdf",
            bytes,
            link: self.links.as_ref().map(|l| l.link(run, now)),
        })
    }
}
