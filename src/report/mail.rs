//! The report as an email (lettre): a plain-text part and an HTML part with the tables and an
//! inline chart, and the window's rows attached as CSV (gzip over 1 MB). Sent over SMTP (none,
//! STARTTLS or TLS, optional login) or through the local sendmail binary. A report that cannot
//! be sent waits in `state_dir/outbox` and is retried until it goes; one the server refuses
//! for good (a 5xx reply: unknown recipient, policy) is never retried, since the same message
//! would be refused again: it moves to `outbox/failed/`, which `status` and the log name.
//!
//! Every mail carries `Message-ID`, `Date`, `Auto-Submitted: auto-generated` (RFC 3834: no
//! vacation responder answers it) and `X-Auto-Response-Suppress: All` (the same for
//! Exchange). Nothing an attacker controls goes into a header: the subject is the verdict
//! (counts and server names), and lettre encodes every header value itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Attachment as MailAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, Message, SendmailTransport, SmtpTransport, Transport as _};
use serde::{Deserialize, Serialize};

use super::{Report, chart, render};

/// How the mail leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// SMTP to a server.
    Smtp {
        /// Server name or address.
        host: String,
        /// Port.
        port: u16,
        /// `none`, `starttls` or `tls`.
        security: Security,
        /// Login, when the server wants one.
        credentials: Option<(String, String)>,
    },
    /// The local `sendmail` binary.
    Sendmail,
}

/// SMTP connection security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain SMTP (a local relay).
    None,
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Where reports go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// Recipients.
    pub to: Vec<Mailbox>,
    /// Sender.
    pub from: Mailbox,
    /// Start of every subject.
    pub subject_prefix: String,
    /// How it is sent.
    pub transport: Transport,
}

/// Why a report mail could not be built or sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Building the message failed.
    #[error("cannot build the report mail: {0}")]
    Build(String),
    /// Sending failed (it is kept in the outbox when there is one).
    #[error("cannot send the report mail: {0}")]
    Send(String),
    /// The server refused the message for good (a 5xx reply): sending it again would not
    /// help.
    #[error("the mail server refused the report mail for good: {0}")]
    Refused(String),
    /// The outbox could not be written or read.
    #[error("outbox {path}: {message}")]
    Outbox {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// `Auto-Submitted: auto-generated` (RFC 3834): the mail is made by a program, so vacation
/// responders and other automatic replies leave it alone, and filters can tell.
#[derive(Debug, Clone, Copy)]
pub struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// `X-Auto-Response-Suppress: All`: Microsoft Exchange's way of saying the same (no
/// out-of-office, no read receipt, no auto-reply).
#[derive(Debug, Clone, Copy)]
pub struct AutoResponseSuppress;

impl Header for AutoResponseSuppress {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoResponseSuppress)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".into())
    }
}

/// A new `Message-ID` in the sender's domain: `<maillogsentinel.TIME.RANDOM@DOMAIN>`.
pub fn message_id(from: &Mailbox) -> String {
    use ring::rand::SecureRandom as _;
    let mut r = [0u8; 12];
    // Uniqueness, not secrecy: the time and the process id make it unique without the random
    // part too.
    let _ = ring::rand::SystemRandom::new().fill(&mut r);
    let random: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "<maillogsentinel.{}.{}.{random}@{}>",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        std::process::id(),
        from.email.domain()
    )
}

/// A message builder with the headers every mail of ours carries: From, To, Subject,
/// Message-ID, Date, Auto-Submitted, X-Auto-Response-Suppress.
fn builder(settings: &MailSettings, subject: &str) -> lettre::message::MessageBuilder {
    let mut b = Message::builder()
        .from(settings.from.clone())
        .subject(subject)
        .message_id(Some(message_id(&settings.from)))
        .date_now()
        .header(AutoSubmitted)
        .header(AutoResponseSuppress);
    for to in &settings.to {
        b = b.to(to.clone());
    }
    b
}

/// The subject line: the prefix and the verdict (counts and server names only).
pub fn subject(prefix: &str, report: &Report) -> String {
    format!("{prefix} {}", report.summary.verdict)
        .trim()
        .to_string()
}

/// Builds the mail.
pub fn build(settings: &MailSettings, report: &Report) -> Result<Message, MailError> {
    // The whole report: a reader of the plain part cannot run `--full` for the same window.
    let text = render::text(&report.summary, false, true);
    let png = chart::png(&report.summary);
    let html = render::html(
        &report.summary,
        png.as_ref()
            .map(|_| chart::image(&report.summary, render::ChartSrc::Cid)),
    );
    let mut related = MultiPart::related().singlepart(SinglePart::html(html));
    if let Some(png) = png {
        related = related.singlepart(
            MailAttachment::new_inline_with_name("chart".into(), "attempts-per-hour.png".into())
                .body(png, ContentType::parse("image/png").expect("valid")),
        );
    }
    let alternative = MultiPart::alternative()
        .singlepart(SinglePart::plain(text))
        .multipart(related);
    let mut mixed = MultiPart::mixed().multipart(alternative);
    if let Some(a) = &report.rows_csv {
        let ctype = if a.name.ends_with(".gz") {
            "application/gzip"
        } else {
            "text/csv; charset=utf-8"
        };
        mixed = mixed.singlepart(
            MailAttachment::new(a.name.clone())
                .body(a.bytes.clone(), ContentType::parse(ctype).expect("valid")),
        );
    }
    builder(settings, &subject(&settings.subject_prefix, report))
        .multipart(mixed)
        .map_err(|e| MailError::Build(e.to_string()))
}

/// Sends a formatted message to its envelope.
pub fn send_raw(
    settings: &MailSettings,
    envelope: &lettre::address::Envelope,
    raw: &[u8],
) -> Result<(), MailError> {
    let err = |e: &dyn std::fmt::Display| MailError::Send(e.to_string());
    match &settings.transport {
        Transport::Sendmail => SendmailTransport::new()
            .send_raw(envelope, raw)
            .map(|_| ())
            .map_err(|e| err(&e)),
        Transport::Smtp { .. } => smtp_transport(&settings.transport)?
            .send_raw(envelope, raw)
            .map(|_| ())
            .map_err(|e| {
                if refuses_the_message(&e) {
                    MailError::Refused(e.to_string())
                } else {
                    err(&e)
                }
            }),
    }
}

/// Whether an SMTP error refuses this message for good: a permanent reply about the
/// message itself (550 to 554: mailbox unavailable or unknown, policy, storage, transaction
/// failed). Other permanent replies are about the setup (535 wrong password, 530 STARTTLS or
/// login required, 500-504 a command refused) and apply to every message alike: those stay
/// queued and are retried, so that fixing the configuration delivers them.
pub fn refuses_the_message(e: &lettre::transport::smtp::Error) -> bool {
    e.is_permanent()
        && e.status().is_some_and(|code| {
            let n: u16 = code.into();
            (550..=554).contains(&n)
        })
}

/// The SMTP client `transport` describes (an error for sendmail, which has none).
pub fn smtp_transport(transport: &Transport) -> Result<SmtpTransport, MailError> {
    let err = |e: &dyn std::fmt::Display| MailError::Send(e.to_string());
    match transport {
        Transport::Sendmail => Err(MailError::Send("not an SMTP transport".into())),
        Transport::Smtp {
            host,
            port,
            security,
            credentials,
        } => {
            let mut b = match security {
                Security::None => SmtpTransport::builder_dangerous(host.as_str()).tls(Tls::None),
                Security::Starttls => {
                    let tls = TlsParameters::new(host.clone()).map_err(|e| err(&e))?;
                    SmtpTransport::builder_dangerous(host.as_str()).tls(Tls::Required(tls))
                }
                Security::Tls => {
                    let tls = TlsParameters::new(host.clone()).map_err(|e| err(&e))?;
                    SmtpTransport::builder_dangerous(host.as_str()).tls(Tls::Wrapper(tls))
                }
            }
            .port(*port)
            .timeout(Some(Duration::from_secs(30)));
            if let Some((user, pass)) = credentials {
                b = b.credentials(Credentials::new(user.clone(), pass.clone()));
            }
            Ok(b.build())
        }
    }
}

/// A message waiting in the outbox.
#[derive(Debug, Serialize, Deserialize)]
struct Queued {
    from: Option<String>,
    to: Vec<String>,
    /// Attempts so far.
    attempts: u32,
    /// Why the server refused it for good (in `outbox/failed/` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
}

fn outbox_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("outbox")
}

/// Where messages the server refused for good are kept (never retried).
pub fn failed_dir(state_dir: &Path) -> PathBuf {
    outbox_dir(state_dir).join("failed")
}

/// Messages in the outbox: (waiting to be retried, refused for good). A refused message
/// that could not be moved to `failed/` yet counts as refused.
pub fn outbox_counts(state_dir: &Path) -> (usize, usize) {
    let emls = |dir: PathBuf| -> Vec<PathBuf> {
        std::fs::read_dir(dir).map_or(Vec::new(), |d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
    };
    let refused = |eml: &PathBuf| {
        std::fs::read(eml.with_extension("json"))
            .ok()
            .and_then(|m| serde_json::from_slice::<Queued>(&m).ok())
            .is_some_and(|q| q.refused.is_some())
    };
    let (stuck, waiting): (Vec<PathBuf>, Vec<PathBuf>) =
        emls(outbox_dir(state_dir)).into_iter().partition(refused);
    (
        waiting.len(),
        stuck.len() + emls(failed_dir(state_dir)).len(),
    )
}

/// Moves a queued message (`meta` and its `.eml`) into `outbox/failed/` with the reason the
/// server gave; returns where the message is now.
fn mark_failed(meta: &Path, q: &mut Queued, reason: &str) -> std::io::Result<PathBuf> {
    let dir = meta
        .parent()
        .map(|p| p.join("failed"))
        .unwrap_or_else(|| PathBuf::from("failed"));
    std::fs::create_dir_all(&dir)?;
    let eml = meta.with_extension("eml");
    let name = |p: &Path| dir.join(p.file_name().unwrap_or_default());
    if !reason.is_empty() {
        q.refused = Some(reason.to_string());
    }
    crate::checkpoint::replace_file(
        &name(meta),
        &serde_json::to_vec(q).expect("serialisable"),
        false,
    )?;
    std::fs::rename(&eml, name(&eml))?;
    std::fs::remove_file(meta)?;
    Ok(name(&eml))
}

/// Puts a message in the outbox (`NAME.eml` and `NAME.json` with its envelope).
pub fn queue(state_dir: &Path, message: &Message) -> Result<PathBuf, MailError> {
    store(&outbox_dir(state_dir), message, None)
}

/// Writes a message and its envelope into `dir`; `refused` is the server's answer for one
/// refused for good (kept in `outbox/failed/`).
fn store(dir: &Path, message: &Message, refused: Option<&str>) -> Result<PathBuf, MailError> {
    let err = |p: &Path, e: &dyn std::fmt::Display| MailError::Outbox {
        path: p.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, &e))?;
    let name = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"),
        std::process::id()
    );
    let env = message.envelope();
    let q = Queued {
        from: env.from().map(|a| a.to_string()),
        to: env.to().iter().map(|a| a.to_string()).collect(),
        attempts: u32::from(refused.is_some()),
        refused: refused.map(str::to_string),
    };
    let eml = dir.join(format!("{name}.eml"));
    let meta = dir.join(format!("{name}.json"));
    std::fs::write(&eml, message.formatted()).map_err(|e| err(&eml, &e))?;
    // The envelope last: a message counts as queued once both are there.
    crate::checkpoint::replace_file(&meta, &serde_json::to_vec(&q).expect("serialisable"), false)
        .map_err(|e| err(&meta, &e))?;
    Ok(eml)
}

/// Tries to send everything in the outbox; returns (sent, still waiting). Each message is
/// removed once sent, so a report is delivered once.
pub fn flush_outbox(state_dir: &Path, settings: &MailSettings) -> (usize, usize) {
    let dir = outbox_dir(state_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return (0, 0);
    };
    let mut metas: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    metas.sort();
    let (mut sent, mut waiting) = (0, 0);
    for meta in metas {
        let eml = meta.with_extension("eml");
        let (Ok(m), Ok(raw)) = (std::fs::read(&meta), std::fs::read(&eml)) else {
            continue;
        };
        let Ok(mut q) = serde_json::from_slice::<Queued>(&m) else {
            continue;
        };
        if q.refused.is_some() {
            // Refused for good before, and not moved yet: never sent again.
            let _ = mark_failed(&meta, &mut q, "");
            continue;
        }
        let to: Vec<Address> = q.to.iter().filter_map(|a| a.parse().ok()).collect();
        let from = q.from.as_deref().and_then(|a| a.parse().ok());
        let Ok(envelope) = lettre::address::Envelope::new(from, to) else {
            continue;
        };
        match send_raw(settings, &envelope, &raw) {
            Ok(()) => {
                let _ = std::fs::remove_file(&meta);
                let _ = std::fs::remove_file(&eml);
                sent += 1;
            }
            Err(MailError::Refused(why)) => {
                q.attempts += 1;
                // Said in place first: should the move fail, it is still never retried.
                q.refused = Some(why.clone());
                let _ = crate::checkpoint::replace_file(
                    &meta,
                    &serde_json::to_vec(&q).expect("serialisable"),
                    false,
                );
                match mark_failed(&meta, &mut q, &why) {
                    Ok(kept) => tracing::error!(
                        message = %kept.display(),
                        "the mail server refused a queued report for good, so it will not be retried: {why}"
                    ),
                    Err(e) => tracing::error!(
                        message = %eml.display(),
                        "the mail server refused a queued report for good ({why}), and it cannot be moved to outbox/failed: {e}"
                    ),
                }
            }
            Err(e) => {
                q.attempts += 1;
                let _ = crate::checkpoint::replace_file(
                    &meta,
                    &serde_json::to_vec(&q).expect("serialisable"),
                    false,
                );
                tracing::warn!(message = %eml.display(), attempts = q.attempts, "report still not sent: {e}");
                waiting += 1;
            }
        }
    }
    (sent, waiting)
}

/// Sends a plain-text mail now (alerts); on failure it is queued in `state_dir`'s outbox (when
/// given), retried with the reports, and the error says so.
pub fn send_text(
    settings: &MailSettings,
    subject: &str,
    body: &str,
    state_dir: Option<&Path>,
) -> Result<(), MailError> {
    let message = builder(settings, subject)
        .singlepart(SinglePart::plain(body.to_string()))
        .map_err(|e| MailError::Build(e.to_string()))?;
    deliver(settings, &message, state_dir)
}

/// Sends a report now; on failure it is queued in `state_dir`'s outbox (when given) and the
/// error says so.
pub fn send(
    settings: &MailSettings,
    report: &Report,
    state_dir: Option<&Path>,
) -> Result<(), MailError> {
    let message = build(settings, report)?;
    deliver(settings, &message, state_dir)
}

/// Sends `message` now; on failure it is queued in `state_dir`'s outbox (when given) and the
/// error says so.
fn deliver(
    settings: &MailSettings,
    message: &Message,
    state_dir: Option<&Path>,
) -> Result<(), MailError> {
    let raw = message.formatted();
    match send_raw(settings, message.envelope(), &raw) {
        Ok(()) => Ok(()),
        Err(MailError::Refused(why)) => match state_dir {
            // Kept, as failed (never in the outbox, where a retry could pick it up): the
            // postmaster can read what the server said and resend it by hand.
            Some(dir) => {
                let kept = store(&failed_dir(dir), message, Some(&why)).map_err(|e| {
                    MailError::Refused(format!("{why}; and it cannot be kept: {e}"))
                })?;
                Err(MailError::Refused(format!(
                    "{why}; not retried (the same mail would be refused again): kept in {}; fix [report] to/from or the server's policy",
                    kept.display()
                )))
            }
            None => Err(MailError::Refused(why)),
        },
        Err(e) => match state_dir {
            Some(dir) => {
                let path = queue(dir, message)?;
                Err(MailError::Send(format!(
                    "{e}; kept in {} to be retried",
                    path.display()
                )))
            }
            None => Err(e),
        },
    }
}
