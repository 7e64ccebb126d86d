//! Email delivery over SMTP with lettre: STARTTLS (`smtp://`), TLS from the
//! first byte (`smtps://`), or plain for a local relay (`tls = "none"`).

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Failure, Notification, format};
use crate::config::EmailConfig;
use crate::config::notify::SmtpTls;
use crate::template::Template;

pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: Template,
    body: Template,
    timeout: std::time::Duration,
}

impl EmailSender {
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    pub fn new(_name: &str, c: &EmailConfig) -> Result<Self, String> {
        let (scheme, rest) = c
            .smtp
            .split_once("://")
            .ok_or("smtp must be smtp://host:port or smtps://host:port")?;
        let (host, port) = match rest.trim_end_matches('/').rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse::<u16>().map_err(|_| format!("bad port in `{}`", c.smtp))?,
            ),
            None => (
                rest.trim_end_matches('/').to_owned(),
                if scheme == "smtps" { 465 } else { 587 },
            ),
        };
        let mode = c.tls.unwrap_or(if scheme == "smtps" {
            SmtpTls::Implicit
        } else {
            SmtpTls::Starttls
        });
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(port)
            .timeout(Some(c.timeout));
        if mode != SmtpTls::None {
            let mut params = TlsParameters::builder(host.clone());
            if let Some(ca) = &c.ca_file {
                let pem = std::fs::read(ca).map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
                params = params.add_root_certificate(cert);
            }
            let params = params.build_rustls().map_err(|e| format!("TLS setup: {e}"))?;
            builder = builder.tls(match mode {
                SmtpTls::Implicit => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        // `${SMTP_USER:-}` unset means "no authentication", not empty AUTH.
        if let (Some(user), Some(pass)) = (
            c.username.as_ref().filter(|u| !u.expose().is_empty()),
            c.password.as_ref().filter(|p| !p.expose().is_empty()),
        ) {
            builder = builder.credentials(Credentials::new(user.expose().to_owned(), pass.expose().to_owned()));
        }
        let mailbox = |s: &str| {
            s.parse::<Mailbox>()
                .map_err(|e| format!("`{s}` is not an email address: {e}"))
        };
        let template = |t: &Option<String>, default: &str| {
            Template::parse(t.as_deref().unwrap_or(default)).map_err(|e| format!("template: {e}"))
        };
        Ok(EmailSender {
            transport: builder.build(),
            from: mailbox(&c.from)?,
            to: c.to.iter().map(|t| mailbox(t)).collect::<Result<_, _>>()?,
            subject: template(&c.subject, format::DEFAULT_SUBJECT)?,
            body: template(&c.body, format::DEFAULT_BODY)?,
            timeout: c.timeout,
        })
    }

    pub async fn deliver(&self, n: &Notification, key: &str) -> Result<(), Failure> {
        let (subject, body) = format::email(n, &self.subject, &self.body);
        let mut message = Message::builder()
            .from(self.from.clone())
            // Lets a mail client thread a resolve under its firing mail.
            .message_id(Some(format!("<{}@redops>", format::header_safe(key).replace(' ', "-"))))
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message.body(body).map_err(|e| Failure {
            error: format!("cannot build the mail: {e}"),
            retry_after: None,
            permanent: true,
        })?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| Failure {
            permanent: e.is_permanent(),
            error: crate::secrets::redact(&e.to_string()),
            retry_after: None,
        })
    }
}
