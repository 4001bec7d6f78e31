//! Discord's modal components as serde types of our own: current modals wrap each input in a
//! Label (type 18), which serenity 0.12 can neither build nor read. Submissions are read in
//! both shapes, Label and the older action row. Every limit Discord documents is a constant
//! here, and values are clipped to it when built.

use serde::{Deserialize, Serialize};

pub const MODAL: u8 = 9;
pub const ACTION_ROW: u8 = 1;
pub const BUTTON: u8 = 2;
pub const STRING_SELECT: u8 = 3;
pub const TEXT_INPUT: u8 = 4;
pub const TEXT_DISPLAY: u8 = 10;
pub const LABEL: u8 = 18;

pub const MAX_TITLE: usize = 45;
pub const MAX_LABEL: usize = 45;
pub const MAX_DESCRIPTION: usize = 100;
pub const MAX_CUSTOM_ID: usize = 100;
pub const MAX_PLACEHOLDER: usize = 100;
pub const MAX_OPTIONS: usize = 25;
pub const MAX_OPTION_TEXT: usize = 100;
pub const MAX_TEXT_INPUT: usize = 4000;
pub const MAX_BUTTON_LABEL: usize = 80;
pub const MAX_CONTENT: usize = 2000;
/// Top-level components in one modal, and buttons in one row.
pub const MAX_COMPONENTS: usize = 5;

/// `s` within `max` characters, an ellipsis marking a cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Modal {
    pub custom_id: String,
    pub title: String,
    pub components: Vec<TopLevel>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TopLevel {
    Label(Label),
    Text(TextDisplay),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextDisplay {
    #[serde(rename = "type")]
    pub kind: u8,
    pub content: String,
}

impl TextDisplay {
    pub fn new(content: &str) -> Self {
        TextDisplay { kind: TEXT_DISPLAY, content: clip(content, MAX_CONTENT) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    #[serde(rename = "type")]
    pub kind: u8,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub component: Input,
}

impl Label {
    pub fn new(label: &str, description: Option<&str>, component: Input) -> Self {
        Label { kind: LABEL, label: clip(label, MAX_LABEL), description: description.map(|d| clip(d, MAX_DESCRIPTION)), component }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Input {
    Text(TextInput),
    Select(StringSelect),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextInput {
    #[serde(rename = "type")]
    pub kind: u8,
    pub custom_id: String,
    /// 1 one line, 2 a paragraph.
    pub style: u8,
    pub required: bool,
    pub max_length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl TextInput {
    pub fn new(custom_id: &str, paragraph: bool, required: bool, placeholder: &str, value: &str) -> Self {
        TextInput {
            kind: TEXT_INPUT,
            custom_id: clip(custom_id, MAX_CUSTOM_ID),
            style: if paragraph { 2 } else { 1 },
            required,
            max_length: MAX_TEXT_INPUT,
            placeholder: Some(placeholder).filter(|p| !p.is_empty()).map(|p| clip(p, MAX_PLACEHOLDER)),
            value: Some(value).filter(|v| !v.is_empty()).map(|v| clip(v, MAX_TEXT_INPUT)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StringSelect {
    #[serde(rename = "type")]
    pub kind: u8,
    pub custom_id: String,
    pub options: Vec<SelectOption>,
    pub min_values: usize,
    pub max_values: usize,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectOption {
    pub label: String,
    pub value: String,
    pub default: bool,
}

impl StringSelect {
    /// `(value, label, chosen)` options, at most [`MAX_OPTIONS`]; `many` lets several be chosen.
    pub fn new(custom_id: &str, options: &[(&str, &str, bool)], many: bool, required: bool) -> Self {
        let options: Vec<SelectOption> = options
            .iter()
            .take(MAX_OPTIONS)
            .map(|(value, label, chosen)| SelectOption { label: clip(label, MAX_OPTION_TEXT), value: clip(value, MAX_OPTION_TEXT), default: *chosen })
            .collect();
        let max_values = if many { options.len().max(1) } else { 1 };
        StringSelect { kind: STRING_SELECT, custom_id: clip(custom_id, MAX_CUSTOM_ID), min_values: usize::from(required), max_values, required, options }
    }
}

/// A submitted modal's `data`.
#[derive(Debug, Clone, Deserialize)]
pub struct ModalSubmit {
    pub custom_id: String,
    #[serde(default)]
    pub components: Vec<Submitted>,
}

/// One top-level component of a submission: a Label around one input, or an action row of
/// text inputs (the older shape).
#[derive(Debug, Clone, Deserialize)]
pub struct Submitted {
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(default)]
    pub component: Option<SubmittedInput>,
    #[serde(default)]
    pub components: Vec<SubmittedInput>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubmittedInput {
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(default)]
    pub custom_id: String,
    /// A text input's text.
    #[serde(default)]
    pub value: Option<String>,
    /// A select's chosen values.
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

impl ModalSubmit {
    /// Every input, whichever shape it came in.
    pub fn inputs(&self) -> impl Iterator<Item = &SubmittedInput> {
        self.components.iter().flat_map(|c| c.component.iter().chain(c.components.iter())).filter(|i| !i.custom_id.is_empty())
    }
}
