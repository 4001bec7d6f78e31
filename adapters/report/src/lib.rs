//! The compliance report as a signed PDF.
//!
//! [`pdf::render`] lays out core's [`offboard_core::report::Report`] on A4 pages in an
//! embedded DejaVu Sans (Latin-extended names render as written). [`sign`] puts an
//! Ed25519 signature over every byte of the file except the signature itself into the
//! document's `/Identifier`, so `offboard verify` needs nothing but the file and a
//! trusted public key.

pub mod evidence;
pub mod links;
pub mod pdf;
pub mod sign;

pub use evidence::{Evidence, EvidenceError, RunReports};
pub use links::ReportLinks;
pub use sign::{KeyError, PublicKey, ReportKey, Verdict};

/// Renders and signs in one go: the bytes to write to `report.pdf`.
pub fn signed_pdf(report: &offboard_core::report::Report, key: &ReportKey) -> Result<Vec<u8>, Verdict> {
    key.sign(pdf::render(report, &sign::Seal::for_report(report, &key.public())))
}
