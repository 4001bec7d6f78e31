//! The slash commands, defined once: `offboard discord register` sends these definitions and
//! the endpoint reads interactions against the same names, so the two cannot drift.
//!
//! `/offboard user:<address or name> [preset:<choice>]` opens the wizard; the user option is
//! completed from the customer tenant's directory as it is typed. Everything else is under
//! `/offboards` (list, status, cancel, run, help): a Discord command has either options or
//! subcommands, and as subcommands each action shows up in the command picker with its own
//! typed run id, instead of words to remember.

use serde_json::Value;
use serenity::builder::{CreateCommand, CreateCommandOption};
use serenity::model::application::{CommandOptionType, InteractionContext};
use serenity::model::permissions::Permissions;

pub const START: &str = "offboard";
pub const MANAGE: &str = "offboards";
pub const USER: &str = "user";
pub const PRESET: &str = "preset";
pub const RUN: &str = "run";

/// `/offboards` subcommands: (name, description, takes a run id, the words core's command
/// parser reads).
pub const SUBCOMMANDS: &[(&str, &str, bool, &str)] = &[
    ("list", "Recent offboarding runs", false, "list"),
    ("status", "One run's steps", true, "status"),
    ("cancel", "Cancel a run that has not finished", true, "cancel"),
    ("run", "Start a scheduled run now", true, "run"),
    ("help", "What Offboard can do here", false, "help"),
];

/// Both commands, for a bulk overwrite. `presets` become the preset option's choices (at
/// most 25, Discord's limit). Hidden from members without a role Offboard binds until a
/// server admin allows them in Integrations (`default_member_permissions = 0`); Offboard's
/// own role checks apply either way.
pub fn definitions(presets: &[String]) -> Vec<Value> {
    let mut preset = CreateCommandOption::new(CommandOptionType::String, PRESET, "A preset of options (the wizard shows what it sets)");
    for p in presets.iter().take(25) {
        preset = preset.add_string_choice(p, p);
    }
    let start = CreateCommand::new(START)
        .description("Offboard someone from Microsoft 365: opens the wizard")
        .add_option(
            CreateCommandOption::new(CommandOptionType::String, USER, "Their sign-in address or name").required(true).set_autocomplete(true).max_length(256),
        )
        .add_option(preset);
    let mut manage = CreateCommand::new(MANAGE).description("Offboarding runs: list, status, cancel, run now, help");
    for (name, description, takes_run, _) in SUBCOMMANDS {
        let mut sub = CreateCommandOption::new(CommandOptionType::SubCommand, *name, *description);
        if *takes_run {
            sub =
                sub.add_sub_option(CreateCommandOption::new(CommandOptionType::String, RUN, "The run's id, ob-…").required(true).min_length(13).max_length(13));
        }
        manage = manage.add_option(sub);
    }
    [start, manage]
        .into_iter()
        .map(|c| c.contexts(vec![InteractionContext::Guild]).default_member_permissions(Permissions::empty()))
        .map(|c| serde_json::to_value(c).expect("a command definition serialises"))
        .collect()
}

/// What an application command interaction asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invoked {
    Start {
        user: Option<String>,
        preset: Option<String>,
    },
    /// Words for core's command parser (`status ob-…`).
    Manage(String),
    Unknown(String),
}

fn option<'a>(options: &'a Value, name: &str) -> Option<&'a Value> {
    options.as_array()?.iter().find(|o| o["name"] == name)
}

/// Reads an interaction's `data` against [`definitions`].
pub fn parse(data: &Value) -> Invoked {
    let text = |o: Option<&Value>| o.and_then(|o| o["value"].as_str()).map(str::trim).filter(|s| !s.is_empty()).map(String::from);
    match data["name"].as_str() {
        Some(START) => Invoked::Start { user: text(option(&data["options"], USER)), preset: text(option(&data["options"], PRESET)) },
        Some(MANAGE) => {
            let Some(sub) = data["options"].as_array().and_then(|o| o.first()) else { return Invoked::Unknown(MANAGE.into()) };
            let Some((_, _, takes_run, words)) = SUBCOMMANDS.iter().find(|(n, ..)| sub["name"] == *n) else {
                return Invoked::Unknown(sub["name"].as_str().unwrap_or_default().into());
            };
            match (takes_run, text(option(&sub["options"], RUN))) {
                (true, Some(run)) => Invoked::Manage(format!("{words} {run}")),
                (true, None) => Invoked::Manage((*words).to_string()),
                (false, _) => Invoked::Manage((*words).to_string()),
            }
        }
        other => Invoked::Unknown(other.unwrap_or_default().into()),
    }
}

/// The help text, from the definitions themselves.
pub fn help() -> String {
    let mut lines = vec![format!("`/{START} user:<address or name> [preset]` opens the wizard. Also:")];
    for (name, description, takes_run, _) in SUBCOMMANDS {
        let arg = if *takes_run { format!(" {RUN}:ob-…") } else { String::new() };
        lines.push(format!("• `/{MANAGE} {name}{arg}`: {description}"));
    }
    lines.join("\n")
}

/// The user option being typed, from an autocomplete interaction's `data`.
pub fn focused(data: &Value) -> Option<String> {
    data["options"].as_array()?.iter().find(|o| o["focused"] == true && o["name"] == USER).and_then(|o| o["value"].as_str()).map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definitions_and_parsing_agree() {
        let defs = definitions(&["standard-leaver".into(), "none".into()]);
        insta::assert_json_snapshot!("definitions", defs);
        assert_eq!(
            parse(&json!({ "name": "offboard", "options": [{ "name": "user", "value": " alice@contoso.com " }, { "name": "preset", "value": "none" }] })),
            Invoked::Start { user: Some("alice@contoso.com".into()), preset: Some("none".into()) }
        );
        for sub in defs[1]["options"].as_array().unwrap() {
            let name = sub["name"].as_str().unwrap();
            let takes_run = sub["options"].as_array().is_some_and(|o| !o.is_empty());
            let options = if takes_run { json!([{ "name": RUN, "value": "ob-7k2m9q4x1p" }]) } else { json!([]) };
            let parsed = parse(&json!({ "name": MANAGE, "options": [{ "name": name, "type": 1, "options": options }] }));
            let expected = SUBCOMMANDS.iter().find(|s| s.0 == name).unwrap().3;
            let expected = if takes_run { format!("{expected} ob-7k2m9q4x1p") } else { expected.to_string() };
            assert_eq!(parsed, Invoked::Manage(expected.clone()), "{name}");
            assert!(!matches!(offboard_core::chat::Command::parse(&expected), offboard_core::chat::Command::Unknown(_)), "core reads {expected:?}");
        }
        assert!(matches!(parse(&json!({ "name": "nope" })), Invoked::Unknown(_)));
    }
}
