//! E-mail over SMTP (lettre), with the signed report attached to "run finished" mails.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use offboard_core::secret::Secret;

use crate::Attempt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP: only for a relay on the same host or network.
    None,
    /// STARTTLS on the submission port (587), as Microsoft 365 and most relays want.
    StartTls,
    /// TLS from the first byte (465).
    Tls,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
    pub attach_report: bool,
}

impl Smtp {
    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let builder = match self.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host),
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host).map_err(|e| e.to_string())?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host).map_err(|e| e.to_string())?,
        };
        let mut builder = builder.port(self.port).timeout(Some(Duration::from_secs(30)));
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_string()));
        }
        Ok(builder.build())
    }

    fn message(&self, subject: &str, body: &str, attachment: Option<&(String, Vec<u8>)>, delivery: &str) -> Result<Message, String> {
        let mut b = Message::builder()
            .from(self.from.parse().map_err(|e| format!("the sender address `{}` is invalid: {e}", self.from))?)
            .subject(subject)
            .message_id(Some(format!("<{}@offboard>", delivery.replace('/', "."))));
        for to in &self.to {
            b = b.to(to.parse().map_err(|e| format!("the recipient address `{to}` is invalid: {e}"))?);
        }
        let text = SinglePart::plain(body.to_string());
        let built = match attachment {
            Some((name, bytes)) => {
                let pdf = Attachment::new(name.clone()).body(bytes.clone(), ContentType::parse("application/pdf").expect("static content type"));
                b.multipart(MultiPart::mixed().singlepart(text).singlepart(pdf))
            }
            None => b.singlepart(text),
        };
        built.map_err(|e| format!("the e-mail could not be built: {e}"))
    }

    pub async fn send(&self, subject: &str, body: &str, attachment: Option<&(String, Vec<u8>)>, delivery: &str) -> Attempt {
        let message = match self.message(subject, body, attachment, delivery) {
            Ok(m) => m,
            Err(error) => return Attempt::Refused { error },
        };
        let transport = match self.transport() {
            Ok(t) => t,
            Err(error) => return Attempt::Refused { error: format!("the SMTP settings are invalid: {error}") },
        };
        match transport.send(message).await {
            Ok(resp) => Attempt::Delivered { status: format!("SMTP {}", resp.code()) },
            Err(e) if e.is_permanent() => Attempt::Refused { error: format!("the mail server refused the message: {e}") },
            Err(e) => Attempt::Transient { error: format!("the mail server could not take the message: {e}"), after: None },
        }
    }
}
