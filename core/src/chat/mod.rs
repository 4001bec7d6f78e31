//! What core asks chat platforms to show, and what it accepts from them, without any
//! platform's wire format: the chat wing. Every adapter calls the [`Conversation`] for
//! what people type and click, renders its [`Page`]s, previews and status views, and
//! implements [`ChatSurface`] for what the [`relay`] posts.
//!
//! - [`wizard`]: the wizard's pages and fields, the [`Draft`] they fill, page by page.
//! - [`views`]: the plan preview with its buttons, the run's status view, files.
//! - [`acks`]: how long each platform waited for an answer.
//! - [`command`]: what a slash command or a mention asks for.
//! - [`conversation`]: the calls every adapter makes, and the replies it renders.
//! - [`surface`]: the outgoing port.
//! - [`files`]: a copy of the report in a channel's own files, where bots cannot upload.
//! - [`memberships`]: which groups each chat user is in, read in the background.
//! - [`relay`]: drives each surface from the outbox.
//!
//! The wizard is split into pages of at most five fields, the most any platform's modal
//! holds (Discord); Slack may chain them as views, Teams as `task/submit → continue`
//! dialogs, Discord behind a "Continue" button.

pub mod acks;
pub mod command;
pub mod conversation;
pub mod files;
pub mod memberships;
pub mod relay;
pub mod surface;
pub mod views;
pub mod wizard;

pub use command::Command;
pub use conversation::{Clicked, Conversation, Finished, Page, Reply, Submitted};
pub use surface::{ChatError, ChatSurface, MessageRef};
pub use views::{Badge, ButtonValue, FileOut, PlanPreview, PreviewLine, RunView, StatusLine, Who};
pub use wizard::{
    Choice, DEFAULT_PRESET, Draft, Field, FieldError, FieldKind, Form, MAX_FIELDS_PER_PAGE, NO_PRESET, TENANT_FROM_DOMAIN, Value, Values, page_of, placed,
    wizard,
};
