//! The rendered report checked with independent tools: qpdf for structure, poppler's
//! pdftotext for what a reader sees, pdftoppm for a picture of the first page.

use std::path::Path;
use std::process::Command;

use offboard_core::audit::Checkpoint;
use offboard_core::report::Report;
use offboard_core::testing::finished_run;
use offboard_report::sign::{self, Verdict};
use offboard_report::{ReportKey, signed_pdf};

fn report() -> Report {
    let (run, steps, approvals) = finished_run();
    let head = Checkpoint { seq: 137, hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(), at_ms: 0 };
    Report::build(&run, &steps, &approvals, Some(head), run.finished_at.unwrap())
}

fn tool(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd} is needed for this test (poppler-utils, qpdf): {e}"))
}

fn text_of(path: &Path) -> String {
    let out = tool("pdftotext", &["-layout", path.to_str().unwrap(), "-"]);
    assert!(out.status.success(), "pdftotext: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_report_is_a_valid_pdf_that_shows_every_required_field() {
    let key = ReportKey::from_seed([3; 32]);
    let report = report();
    let bytes = signed_pdf(&report, &key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, &bytes).unwrap();

    // The font is embedded cut down to the glyphs used, not whole (740 KB).
    assert!(bytes.len() < 100_000, "{} bytes", bytes.len());

    let check = tool("qpdf", &["--check", path.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "qpdf --check: {said}{}", String::from_utf8_lossy(&check.stderr));
    assert!(said.contains("No syntax or stream encoding errors"), "{said}");

    let pages: usize = String::from_utf8(tool("qpdf", &["--show-npages", path.to_str().unwrap()]).stdout).unwrap().trim().parse().unwrap();
    assert!(pages >= 2, "a full plan spans pages, got {pages}");

    let text = text_of(&path);
    let squashed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "Offboarding compliance report",
        "COMPLETED WITH WARNINGS",
        "Zoë Łukasiewicz-Ørsted",
        "zoe.lukasiewicz@contoso.com",
        "Tenant contoso.com",
        "Riley Requester (slack:U0REQUEST) at 2026-11-20 16:00:00 UTC",
        "Ada Admin (slack:U0ADMIN1) at 2026-11-20 16:04:00 UTC",
        "Morgan Manager",
        "Before and after",
        "before: enabled",
        "after: Disable sign-in read back",
        "Step timeline",
        "[OK] Disable sign-in",
        "[OK]",
        "By hand: remove zoe.lukasiewicz@contoso.com from Sales-AD in on-premises AD",
        "Access left in place",
        "Said and set on the leaver's behalf",
        "Microsoft request ids: req-0001",
        "Licences reclaimed",
        "SPE_E5, VISIOCLIENT",
        "Effective by 2026-11-20",
        "90 minutes",
        "entry 137 hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        &key.public().fingerprint(),
        "offboard verify",
        &format!("page 1 of {pages}"),
        &format!("page {pages} of {pages}"),
    ] {
        assert!(squashed.contains(needle), "the PDF text lacks {needle:?}:\n{text}");
    }
    // Every step of the plan is in the timeline.
    for s in &report.steps {
        assert!(squashed.contains(s.title), "{} missing", s.title);
    }

    let png = dir.path().join("page");
    assert!(tool("pdftoppm", &["-png", "-r", "60", "-f", "1", "-l", "1", path.to_str().unwrap(), png.to_str().unwrap()]).status.success());
    let rendered = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).find(|e| e.file_name().to_string_lossy().ends_with(".png")).unwrap();
    assert!(std::fs::metadata(rendered.path()).unwrap().len() > 10_000, "page 1 renders to a picture with content");
    if let Ok(keep) = std::env::var("OFFBOARD_KEEP_REPORT") {
        std::fs::copy(&path, Path::new(&keep).join("report.pdf")).unwrap();
        std::fs::copy(rendered.path(), Path::new(&keep).join("page-1.png")).unwrap();
    }
}

fn content_stream_range(pdf: &[u8]) -> std::ops::Range<usize> {
    let find = |from: usize, what: &[u8]| pdf[from..].windows(what.len()).position(|w| w == what).map(|p| p + from).unwrap();
    let start = find(0, b"stream\n") + 7;
    start..find(start, b"endstream")
}

#[test]
fn verify_accepts_the_original_and_rejects_changes_swaps_and_other_keys() {
    let key = ReportKey::from_seed([3; 32]);
    let trusted = [key.public()];
    let original = signed_pdf(&report(), &key).unwrap();
    assert!(matches!(sign::verify(&original, &trusted), Verdict::Valid { ref run, head: Some((137, _)), .. } if run == "ob-7k2m9q4x1p"));

    // One changed byte anywhere in a content stream, at the start, middle and end.
    let range = content_stream_range(&original);
    for at in [range.start, (range.start + range.end) / 2, range.end - 1] {
        let mut changed = original.clone();
        changed[at] ^= 0x20;
        assert!(matches!(sign::verify(&changed, &trusted), Verdict::Tampered(_)), "byte {at}");
    }
    // A changed visible name in the metadata.
    let mut renamed = original.clone();
    let at = renamed.windows(6).position(|w| w == b"run=ob").unwrap() + 4;
    renamed[at + 3] = b'z';
    assert!(matches!(sign::verify(&renamed, &trusted), Verdict::Tampered(_)));

    // The signature of another report by the same key, swapped in.
    let mut other_report = report();
    other_report.employee = "Someone Else".into();
    let other = signed_pdf(&other_report, &key).unwrap();
    let sig_of = |pdf: &[u8]| {
        let at = pdf.windows(4).rposition(|w| w == b"sig=").unwrap() + 4;
        (at, pdf[at..at + 128].to_vec())
    };
    let (at, _) = sig_of(&original);
    let (_, other_sig) = sig_of(&other);
    let mut swapped = original.clone();
    swapped[at..at + 128].copy_from_slice(&other_sig);
    assert!(matches!(sign::verify(&swapped, &trusted), Verdict::Tampered(_)));

    // Signed by a key the verifier does not trust.
    let stranger = ReportKey::from_seed([4; 32]);
    let foreign = signed_pdf(&report(), &stranger).unwrap();
    assert!(matches!(sign::verify(&foreign, &trusted), Verdict::UnknownKey { .. }));
    assert!(matches!(sign::verify(&foreign, &[stranger.public()]), Verdict::Valid { .. }));
}
