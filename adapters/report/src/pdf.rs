//! Lays the report's blocks out on A4 pages: a summary box coloured by outcome, headings
//! kept with what follows, wrapped text measured with the font's own advance widths, and
//! "page i of n" footers.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use chrono::{Datelike, Timelike};
use printpdf::{
    Color, FontId, Line, LinePoint, Mm, Op, PaintMode, ParsedFont, PdfDocument, PdfFont, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, Rect, Rgb,
    TextItem, TextRenderingMode,
};

use offboard_core::report::{Block, Report};
use offboard_core::run::RunState;

use crate::sign::Seal;

const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const WIDTH: f32 = 595.28;
const HEIGHT: f32 = 841.89;
const LEFT: f32 = 50.0;
const RIGHT: f32 = WIDTH - 50.0;
const TOP: f32 = HEIGHT - 56.0;
const BOTTOM: f32 = 60.0;
const BODY: f32 = 9.5;
const LEADING: f32 = 1.32;
const FIELD_INDENT: f32 = 112.0;
const STEP_INDENT: f32 = 16.0;

fn font() -> &'static ParsedFont {
    static FONT_CELL: OnceLock<ParsedFont> = OnceLock::new();
    FONT_CELL.get_or_init(|| ParsedFont::from_bytes(FONT, 0, &mut Vec::new()).expect("the bundled font parses"))
}

/// The bundled font cut down to the glyphs of `chars` (and .notdef): embedding and
/// compressing the whole 740 KB font made most of a report's size and rendering time.
/// `None` if the font cannot be subset; the caller then embeds it whole.
fn subset(chars: &BTreeSet<char>) -> Option<ParsedFont> {
    use allsorts::binary::read::ReadScope;
    use allsorts::font_data::FontData;
    use allsorts::subset::{CmapTarget, SubsetProfile};
    let full = font();
    let glyphs: BTreeSet<u16> = chars.iter().filter_map(|c| full.lookup_glyph_index(*c as u32)).filter(|g| *g != 0).collect();
    // allsorts wants .notdef first and no duplicates.
    let ids: Vec<u16> = std::iter::once(0).chain(glyphs).collect();
    let data = ReadScope::new(FONT).read::<FontData<'_>>().ok()?;
    let provider = data.table_provider(0).ok()?;
    let bytes = allsorts::subset::subset(&provider, &ids, &SubsetProfile::Pdf, CmapTarget::Unicode).ok()?;
    ParsedFont::from_bytes(&bytes, 0, &mut Vec::new())
}

/// Width of `text` at `size` points, from the font's advance widths.
pub fn text_width(text: &str, size: f32) -> f32 {
    let f = font();
    let fallback = f.lookup_glyph_index('?' as u32).and_then(|g| f.get_glyph_width(g)).unwrap_or(600);
    let units: u32 = text.chars().map(|c| f.lookup_glyph_index(c as u32).and_then(|g| f.get_glyph_width(g)).unwrap_or(fallback) as u32).sum();
    units as f32 * size / f.units_per_em as f32
}

/// Breaks text into lines no wider than `width`; words longer than a line are split.
pub fn wrap(text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split(' ') {
            let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
            if text_width(&candidate, size) <= width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let mut rest = word.to_string();
            while text_width(&rest, size) > width {
                let mut cut = rest.len();
                while cut > 1 && text_width(&rest[..cut], size) > width {
                    cut = rest[..cut - 1].char_indices().last().map_or(1, |(i, c)| i + c.len_utf8());
                }
                lines.push(rest[..cut].to_string());
                rest = rest[cut..].to_string();
            }
            line = rest;
        }
        lines.push(line);
    }
    lines
}

#[derive(Clone, Copy)]
struct Style {
    size: f32,
    bold: bool,
    grey: bool,
}

const BODY_STYLE: Style = Style { size: BODY, bold: false, grey: false };
const BOLD: Style = Style { size: BODY, bold: true, grey: false };
const MUTED: Style = Style { size: 8.5, bold: false, grey: true };

enum Mark {
    Text { x: f32, y: f32, style: Style, text: String },
    Box { y_top: f32, height: f32, fill: (f32, f32, f32) },
    Rule { y: f32 },
}

struct Layout {
    pages: Vec<Vec<Mark>>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Layout { pages: vec![vec![]], y: TOP }
    }

    fn need(&mut self, height: f32) {
        if self.y - height < BOTTOM {
            self.pages.push(vec![]);
            self.y = TOP;
        }
    }

    fn mark(&mut self, m: Mark) {
        self.pages.last_mut().expect("a page").push(m);
    }

    /// Wrapped text starting at `x`; returns the height used.
    fn text(&mut self, x: f32, style: Style, text: &str) {
        let lh = style.size * LEADING;
        for line in wrap(text, style.size, RIGHT - x) {
            self.need(lh);
            self.y -= lh;
            self.mark(Mark::Text { x, y: self.y + lh * 0.24, style, text: line });
        }
    }

    fn gap(&mut self, pt: f32) {
        self.y -= pt;
    }
}

fn fill_for(state: RunState) -> (f32, f32, f32) {
    match state {
        RunState::Completed => (0.90, 0.96, 0.91),
        RunState::CompletedWithWarnings => (1.0, 0.96, 0.88),
        RunState::Failed | RunState::NeedsAttention => (0.99, 0.91, 0.90),
        _ => (0.93, 0.93, 0.95),
    }
}

fn layout(report: &Report, seal: &Seal) -> Layout {
    let mut l = Layout::new();
    let mut blocks = report.blocks();
    blocks.push(Block::Heading("Signature".into()));
    blocks.push(Block::Para(format!(
        "This file is signed with Ed25519. Signing key fingerprint {}; public key {}. Check it offline with: offboard verify <this file>. Any change to the file, however small, makes the check fail.",
        seal.key.fingerprint(),
        seal.key
    )));
    for block in blocks {
        match block {
            Block::Title(t) => {
                l.text(LEFT, Style { size: 18.0, bold: true, grey: false }, &t);
                l.gap(10.0);
            }
            Block::Summary(lines) => {
                let lh = 10.5 * LEADING;
                let wrapped: Vec<(bool, Vec<String>)> = lines.iter().enumerate().map(|(i, s)| (i == 0, wrap(s, 10.5, RIGHT - LEFT - 20.0))).collect();
                let n: usize = wrapped.iter().map(|(_, w)| w.len()).sum();
                let height = n as f32 * lh + 16.0;
                l.need(height);
                l.mark(Mark::Box { y_top: l.y, height, fill: fill_for(report.state) });
                l.gap(8.0);
                for (first, ws) in wrapped {
                    for w in ws {
                        l.y -= lh;
                        l.mark(Mark::Text { x: LEFT + 10.0, y: l.y + lh * 0.24, style: Style { size: 10.5, bold: first, grey: false }, text: w });
                    }
                }
                l.gap(8.0 + 6.0);
            }
            Block::Heading(h) => {
                // Keep a heading with at least two lines of what follows.
                l.need(12.5 * LEADING + 14.0 + 3.0 * BODY * LEADING);
                l.gap(10.0);
                l.text(LEFT, Style { size: 12.5, bold: true, grey: false }, &h);
                l.mark(Mark::Rule { y: l.y - 2.0 });
                l.gap(6.0);
            }
            Block::Field(k, v) => {
                let lines = wrap(&v, BODY, RIGHT - LEFT - FIELD_INDENT);
                let lh = BODY * LEADING;
                l.need(lh * lines.len() as f32);
                let top = l.y;
                l.mark(Mark::Text { x: LEFT, y: top - lh + lh * 0.24, style: BOLD, text: k });
                l.text(LEFT + FIELD_INDENT, BODY_STYLE, &v);
            }
            Block::Step { head, lines } => {
                // A short block stays on one page; a long one starts with at least two lines.
                l.need(BODY * LEADING * (1 + lines.len().min(4)) as f32);
                l.text(LEFT, BOLD, &head);
                for line in lines {
                    l.text(LEFT + STEP_INDENT, if line.starts_with("Microsoft request ids") { MUTED } else { BODY_STYLE }, &line);
                }
                l.gap(3.0);
            }
            Block::Para(p) => {
                l.text(LEFT, BODY_STYLE, &p);
                l.gap(3.0);
            }
        }
    }
    l
}

fn rgb((r, g, b): (f32, f32, f32)) -> Color {
    Color::Rgb(Rgb::new(r, g, b, None))
}

fn pdf_time(t: chrono::DateTime<chrono::Utc>) -> printpdf::date::DateTime {
    use printpdf::date::{Date, DateTime, Offset, Time};
    DateTime::new_in_offset(
        Date { year: t.year(), month: t.month() as u8, day: t.day() as u8 },
        Time { hour: t.hour() as u8, minute: t.minute() as u8, second: t.second() as u8, millisecond: 0 },
        Offset { hours: 0, minutes: 0, seconds: 0, milliseconds: 0 },
    )
}

/// The unsigned PDF: `seal` goes into `/Identifier` with zeroed signature digits.
pub fn render(report: &Report, seal: &Seal) -> Vec<u8> {
    let mut doc = PdfDocument::new(&format!("Offboarding report {} {}", report.run_id, report.upn));
    let font_id = FontId::new();
    let handle = PdfFontHandle::External(font_id.clone());
    let info = &mut doc.metadata.info;
    info.author = "Offboard".into();
    info.creator = "Offboard".into();
    info.producer = "Offboard".into();
    info.subject = format!("Offboarding of {} in {}", report.employee, report.tenant);
    info.identifier = seal.unsigned();
    info.creation_date = pdf_time(report.generated_at);
    info.modification_date = pdf_time(report.generated_at);
    info.metadata_date = pdf_time(report.generated_at);

    let layout = layout(report, seal);
    let total = layout.pages.len();
    let black = rgb((0.0, 0.0, 0.0));
    let grey = rgb((0.35, 0.35, 0.38));
    let pages: Vec<PdfPage> = layout
        .pages
        .into_iter()
        .enumerate()
        .map(|(i, marks)| {
            let mut ops = vec![];
            let footer = format!("Offboarding report {} · {} · page {} of {}", report.run_id, report.upn, i + 1, total);
            let footer_marks = [Mark::Rule { y: BOTTOM - 18.0 }, Mark::Text { x: LEFT, y: BOTTOM - 32.0, style: MUTED, text: footer }];
            for m in marks.iter().chain(footer_marks.iter()) {
                match m {
                    Mark::Text { x, y, style, text } => {
                        let colour = if style.grey { grey.clone() } else { black.clone() };
                        ops.extend([
                            Op::SaveGraphicsState,
                            Op::SetFillColor { col: colour.clone() },
                            Op::SetOutlineColor { col: colour },
                            Op::SetOutlineThickness { pt: Pt(style.size * 0.035) },
                            Op::StartTextSection,
                            Op::SetTextRenderingMode { mode: if style.bold { TextRenderingMode::FillStroke } else { TextRenderingMode::Fill } },
                            Op::SetFont { font: handle.clone(), size: Pt(style.size) },
                            Op::SetTextCursor { pos: Point { x: Pt(*x), y: Pt(*y) } },
                            Op::ShowText { items: vec![TextItem::Text(text.clone())] },
                            Op::EndTextSection,
                            Op::RestoreGraphicsState,
                        ]);
                    }
                    Mark::Box { y_top, height, fill } => ops.extend([
                        Op::SaveGraphicsState,
                        Op::SetFillColor { col: rgb(*fill) },
                        Op::SetOutlineColor { col: rgb((0.55, 0.55, 0.6)) },
                        Op::SetOutlineThickness { pt: Pt(0.6) },
                        Op::DrawRectangle {
                            rectangle: Rect {
                                mode: Some(PaintMode::FillStroke),
                                ..Rect::from_xywh(Pt(LEFT), Pt(y_top - height), Pt(RIGHT - LEFT), Pt(*height))
                            },
                        },
                        Op::RestoreGraphicsState,
                    ]),
                    Mark::Rule { y } => ops.extend([
                        Op::SaveGraphicsState,
                        Op::SetOutlineColor { col: rgb((0.7, 0.7, 0.74)) },
                        Op::SetOutlineThickness { pt: Pt(0.5) },
                        Op::DrawLine {
                            line: Line {
                                points: vec![
                                    LinePoint { p: Point { x: Pt(LEFT), y: Pt(*y) }, bezier: false },
                                    LinePoint { p: Point { x: Pt(RIGHT), y: Pt(*y) }, bezier: false },
                                ],
                                is_closed: false,
                            },
                        },
                        Op::RestoreGraphicsState,
                    ]),
                }
            }
            PdfPage::new(Mm(WIDTH * 25.4 / 72.0), Mm(HEIGHT * 25.4 / 72.0), ops)
        })
        .collect();
    let mut chars = BTreeSet::new();
    for page in &pages {
        for op in &page.ops {
            if let Op::ShowText { items } = op {
                for item in items {
                    if let TextItem::Text(t) = item {
                        chars.extend(t.chars());
                    }
                }
            }
        }
    }
    let embedded = subset(&chars).unwrap_or_else(|| font().clone());
    doc.resources.fonts.map.insert(font_id, PdfFont::new(embedded));
    doc.with_pages(pages);
    doc.save(&PdfSaveOptions::default(), &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_respects_the_width_and_keeps_every_character() {
        let text = "Head of the audit hash chain: entry 42 hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 and Zoë Łukasiewicz-Ørsted";
        let lines = wrap(text, BODY, 200.0);
        assert!(lines.len() > 2);
        for l in &lines {
            assert!(text_width(l, BODY) <= 200.0, "{l}");
        }
        assert_eq!(lines.join("").replace(' ', ""), text.replace(' ', ""));
        assert!(text_width("WWW", BODY) > text_width("iii", BODY), "proportional widths");
    }
}
