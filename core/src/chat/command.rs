//! What a slash command or a mention asks for.

use crate::domain::RunId;

/// A command typed in chat (or the CLI), after the platform's own parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Offboard {
        user: Option<String>,
        preset: Option<String>,
    },
    Help,
    List,
    Status(RunId),
    Cancel(RunId),
    RunNow(RunId),
    /// Anything else, with a hint for the reply.
    Unknown(String),
}

impl Command {
    /// Parses the text after `/offboard` (Slack, Discord) or `@Offboard offboard` (Teams).
    pub fn parse(text: &str) -> Self {
        let words: Vec<&str> = text.split_whitespace().collect();
        let id = |w: Option<&&str>, then: fn(RunId) -> Command, verb: &str| match w.map(|w| RunId::parse(w)) {
            Some(Ok(id)) => then(id),
            Some(Err(e)) => Command::Unknown(e.to_string()),
            None => Command::Unknown(format!("\"{verb}\" needs a run id, e.g. {verb} ob-7k2m9x4q1d")),
        };
        match words.first().map(|w| w.to_ascii_lowercase()).as_deref() {
            None => Command::Offboard { user: None, preset: None },
            Some("help") => Command::Help,
            Some("list") => Command::List,
            Some("status") => id(words.get(1), Command::Status, "status"),
            Some("cancel") => id(words.get(1), Command::Cancel, "cancel"),
            Some("run") => id(words.get(1), Command::RunNow, "run"),
            Some(w) if w.contains('@') || crate::domain::ObjectId::parse(w).is_ok() => {
                Command::Offboard { user: Some(words[0].to_string()), preset: words.get(1).map(|s| s.to_string()) }
            }
            Some(w) => Command::Unknown(format!("\"{w}\" is neither a user nor a command; try \"help\"")),
        }
    }
}
