//! Transactional email (verification codes): SMTP through lettre, Resend's HTTP API through
//! awc, or, with neither configured, the log (development mode).

use crate::config::{Config, EmailTransport};
use crate::error::{Error, Result};
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    Resend {
        api_key: String,
        base_url: String,
        from: String,
    },
    Log,
}

impl Mailer {
    pub fn from_config(config: &Config) -> Result<Mailer> {
        let from: Mailbox = config
            .email_from
            .parse()
            .map_err(|e| Error::Internal(format!("EMAIL_FROM: {e}")))?;
        Ok(match &config.email {
            EmailTransport::Smtp(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| Error::Internal(format!("SMTP_URL: {e}")))?
                    .timeout(Some(Duration::from_secs(15)))
                    .build();
                Mailer::Smtp { transport, from }
            }
            EmailTransport::Resend { api_key, base_url } => Mailer::Resend {
                api_key: api_key.clone(),
                base_url: base_url.trim_end_matches('/').to_owned(),
                from: config.email_from.clone(),
            },
            EmailTransport::Log => Mailer::Log,
        })
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Mailer::Smtp { .. } => "smtp",
            Mailer::Resend { .. } => "resend",
            Mailer::Log => "log (development mode: verification codes are written to the log)",
        }
    }

    pub async fn send_verification_code(&self, to: &str, code: &str) -> Result<()> {
        let subject = format!("Your ScriptMesh verification code: {code}");
        let body = format!(
            "Welcome to ScriptMesh.\n\nYour verification code is {code}\n\nIt expires in 15 minutes. \
             If you did not sign up, ignore this email.\n"
        );
        self.send(to, "verification code", code, subject, body).await
    }

    /// An invitation into a tenant: the code that `POST /auth/accept-invite` takes.
    pub async fn send_invitation(&self, to: &str, tenant: &str, role: &str, code: &str) -> Result<()> {
        let subject = format!("You are invited to {tenant} on ScriptMesh: code {code}");
        let body = format!(
            "You have been invited to join {tenant} on ScriptMesh as {role}.\n\nYour invitation code is {code}\n\n\
             Accept it with POST /auth/accept-invite (email, code and a password), or on the dashboard's \
             sign-in page. It expires in 7 days. If you did not expect this, ignore this email.\n"
        );
        self.send(to, "invitation code", code, subject, body).await
    }

    pub async fn send_password_reset(&self, to: &str, code: &str) -> Result<()> {
        let subject = format!("Your ScriptMesh password reset code: {code}");
        let body = format!(
            "Someone asked to reset the password of this ScriptMesh account.\n\nYour reset code is {code}\n\n\
             It expires in 15 minutes. If it was not you, ignore this email: the password stays as it is.\n"
        );
        self.send(to, "password reset code", code, subject, body).await
    }

    async fn send(&self, to: &str, what: &str, code: &str, subject: String, body: String) -> Result<()> {
        match self {
            Mailer::Log => {
                tracing::warn!(email = %to, %code, "development mode: no SMTP_URL or RESEND_API_KEY set, so the {what} is logged instead of emailed");
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                let to: Mailbox = to
                    .parse()
                    .map_err(|e| Error::Validation(format!("email address: {e}")))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(body)
                    .map_err(|e| Error::Internal(format!("building email: {e}")))?;
                transport
                    .send(message)
                    .await
                    .map_err(|e| Error::Unavailable(format!("sending email over SMTP failed: {e}")))?;
                Ok(())
            }
            Mailer::Resend {
                api_key,
                base_url,
                from,
            } => {
                let client = awc::Client::builder().timeout(Duration::from_secs(15)).finish();
                let response = client
                    .post(format!("{base_url}/emails"))
                    .bearer_auth(api_key)
                    .send_json(&serde_json::json!({
                        "from": from,
                        "to": [to],
                        "subject": subject,
                        "text": body,
                    }))
                    .await
                    .map_err(|e| Error::Unavailable(format!("sending email through Resend failed: {e}")))?;
                if !response.status().is_success() {
                    return Err(Error::Unavailable(format!("Resend answered {}", response.status())));
                }
                Ok(())
            }
        }
    }
}
