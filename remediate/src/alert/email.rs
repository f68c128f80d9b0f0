//! Email through lettre: SMTP with STARTTLS, implicit TLS or neither (a
//! local relay), AUTH, several recipients, a plain-text and an HTML part.
//! One pooled connection is reused between notifications.
//!
//! Threading: the first notification of a group's thread has the
//! `Message-ID` `<relive-THREAD@domain>`; every later one (updates, the
//! resolved notice) has its own id and `In-Reply-To`/`References` pointing
//! at it, so mail clients show one thread per group. A notification resent
//! after a restart keeps its `Message-ID`.
//!
//! Headers carry only values relive builds: the subject is one line without
//! control characters and lettre encodes it (RFC 2047 for non-ASCII);
//! addresses come from the configuration, never from logs.

use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{Message, SmtpTransport, Transport};

use super::config::{duration, EmailConfig};
use super::dispatch::Notifier;
use super::render;
use super::state::Notification;
use super::{ConfigError, NotifyError};

/// `host:port` → (host, port); port 25 when absent; `[v6]:port` accepted.
pub fn split_host_port(text: &str) -> Result<(String, u16), String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("smtp is empty: give host:port".into());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: missing ]"))?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            _ => (text.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("`{text}`: `{p}` is not a port"))?,
        None => 25,
    };
    if host.is_empty() {
        return Err(format!("`{text}`: no host"));
    }
    Ok((host, port))
}

/// Sends notifications as email.
pub struct Email {
    transport: Transport_,
    from: Mailbox,
    to: Vec<Mailbox>,
    domain: String,
}

/// Where messages go: an SMTP server, or `.eml` files in a folder.
enum Transport_ {
    Smtp(SmtpTransport),
    File(lettre::FileTransport),
}

fn bad(receiver: &str, reason: String) -> ConfigError {
    ConfigError::Receiver {
        receiver: receiver.to_string(),
        reason,
    }
}

impl Email {
    /// Builds the SMTP client (nothing connects until the first send).
    pub fn new(receiver: &str, config: &EmailConfig) -> Result<Email, ConfigError> {
        if let Some(dir) = &config.file_dir {
            std::fs::create_dir_all(dir).map_err(|source| ConfigError::Read {
                path: dir.clone(),
                source,
            })?;
            let (from, to, domain) = Email::addresses(receiver, config)?;
            return Ok(Email {
                transport: Transport_::File(lettre::FileTransport::new(dir)),
                from,
                to,
                domain,
            });
        }
        let (host, port) = split_host_port(&config.smtp).map_err(|r| bad(receiver, r))?;
        let mut builder = SmtpTransport::builder_dangerous(host.as_str()).port(port);
        if config.starttls || config.tls {
            let mut tls = TlsParameters::builder(host.clone());
            if let Some(ca) = &config.ca_file {
                let pem = std::fs::read(ca).map_err(|source| ConfigError::Read {
                    path: ca.clone(),
                    source,
                })?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| bad(receiver, format!("{}: {e}", ca.display())))?;
                tls = tls.add_root_certificate(cert);
            }
            let params = tls
                .build_rustls()
                .map_err(|e| bad(receiver, format!("TLS settings: {e}")))?;
            builder = builder.tls(if config.tls {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            });
        }
        if let Some(user) = &config.username {
            let password = match (&config.password, &config.password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
                (None, None) => {
                    return Err(bad(
                        receiver,
                        "username without password or password_file".into(),
                    ))
                }
            };
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        if let Some(name) = &config.hello_name {
            builder = builder.hello_name(lettre::transport::smtp::extension::ClientId::Domain(
                name.clone(),
            ));
        }
        let timeout = duration("timeout", &config.timeout)?;
        builder = builder.timeout(Some(timeout)).pool_config(
            PoolConfig::new()
                .max_size(1)
                .idle_timeout(Duration::from_secs(60)),
        );
        let (from, to, domain) = Email::addresses(receiver, config)?;
        Ok(Email {
            transport: Transport_::Smtp(builder.build()),
            from,
            to,
            domain,
        })
    }

    /// From, To and the Message-ID domain.
    fn addresses(
        receiver: &str,
        config: &EmailConfig,
    ) -> Result<(Mailbox, Vec<Mailbox>, String), ConfigError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| bad(receiver, format!("from `{}`: {e}", config.from)))?;
        let to = config
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| bad(receiver, format!("to `{t}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let domain = from.email.domain().to_string();
        Ok((from, to, domain))
    }

    /// The message for a notification, exactly as it is sent.
    pub fn message(&self, n: &Notification) -> Result<Message, NotifyError> {
        build_message(n, &self.from, &self.to, &self.domain)
    }
}

/// Builds the email for a notification (also what `relive alerts test` shows).
pub fn build_message(
    n: &Notification,
    from: &Mailbox,
    to: &[Mailbox],
    domain: &str,
) -> Result<Message, NotifyError> {
    let id = |id: &str| format!("<relive-{id}@{domain}>");
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(render::subject(n))
        .message_id(Some(if n.sequence == 0 {
            id(&n.thread)
        } else {
            id(&n.id)
        }))
        .date(n.created_at.into());
    for mailbox in to {
        builder = builder.to(mailbox.clone());
    }
    if n.sequence > 0 {
        builder = builder.in_reply_to(id(&n.thread)).references(id(&n.thread));
    }
    let status = n.status().as_str();
    builder = builder.raw_header(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Relive-Status"),
        status.to_string(),
    ));
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(render::text(n)),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(render::html(n)),
                ),
        )
        .map_err(|e| NotifyError::Permanent(format!("cannot build the message: {e}")))
}

/// The raw message for a notification with example addresses (a dry run:
/// `relive alerts --render`).
pub fn preview(n: &Notification) -> Result<Vec<u8>, NotifyError> {
    let from: Mailbox = "relive@example.com".parse().expect("a valid address");
    let to: Mailbox = "oncall@example.com".parse().expect("a valid address");
    Ok(build_message(n, &from, &[to], "example.com")?.formatted())
}

impl Notifier for Email {
    fn send(&mut self, n: &Notification) -> Result<(), NotifyError> {
        let message = self.message(n)?;
        match &self.transport {
            Transport_::Smtp(smtp) => match smtp.send(&message) {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(NotifyError::Permanent(smtp_error(&e))),
                // 4xx, a refused or cut connection, a timeout, a TLS failure:
                // worth trying again.
                Err(e) => Err(NotifyError::Transient(smtp_error(&e))),
            },
            // A full disk may clear up: tried again.
            Transport_::File(file) => file
                .send(&message)
                .map(|_| ())
                .map_err(|e| NotifyError::Transient(format!("cannot write the message file: {e}"))),
        }
    }
}

fn smtp_error(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    match e.status() {
        Some(code) => format!("SMTP {code}: {text}"),
        None => text,
    }
}

/// A message as delivered (a `.eml` the file transport wrote, or one an
/// SMTP server stored), read back: its subject and its plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The decoded `Subject`.
    pub subject: String,
    /// The decoded `text/plain` part.
    pub text: String,
}

/// Reads a message relive built: headers, the `text/plain` part of a
/// multipart body, and the encodings lettre uses (7bit, quoted-printable,
/// base64; RFC 2047 words in the subject). `None` when it is not such a
/// message.
pub fn read_delivered(raw: &[u8]) -> Option<Delivered> {
    let raw = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n")?;
    let headers = unfold(head);
    if headers.is_empty() {
        return None;
    }
    let subject = header(&headers, "subject")
        .map(|s| decode_words(&s))
        .unwrap_or_default();
    let text = match header(&headers, "content-type").and_then(|t| boundary(&t)) {
        None => decode_body(&headers, body),
        Some(b) => body.split(&format!("--{b}")).find_map(|part| {
            let (h, b) = part.trim_start_matches('\n').split_once("\n\n")?;
            let h = unfold(h);
            header(&h, "content-type")?
                .to_ascii_lowercase()
                .starts_with("text/plain")
                .then(|| decode_body(&h, b))
        })?,
    };
    Some(Delivered { subject, text })
}

fn unfold(head: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_string())
    })
}

fn decode_body(headers: &[(String, String)], body: &str) -> String {
    let body = body.trim_end_matches('\n');
    let encoding = header(headers, "content-transfer-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "base64" => {
            use base64::Engine as _;
            let packed: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(packed)
                .unwrap_or_default()
        }
        "quoted-printable" => quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

fn quoted_printable(text: &str) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::with_capacity(text.len());
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end_matches([' ', '\t']);
        let (line, soft) = match line.strip_suffix('=') {
            Some(l) => (l, true),
            None => (line, false),
        };
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (b'=', Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                (b, _, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        if !soft && lines.peek().is_some() {
            out.push(b'\n');
        }
    }
    out
}

/// RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`); the space
/// between two encoded words is dropped, as the RFC says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut last_encoded = false;
    for (i, token) in value.split(' ').enumerate() {
        let decoded = token
            .strip_prefix("=?")
            .and_then(|t| t.strip_suffix("?="))
            .and_then(|t| {
                let mut parts = t.splitn(3, '?');
                let (_charset, kind, data) = (parts.next()?, parts.next()?, parts.next()?);
                let bytes = match kind.to_ascii_lowercase().as_str() {
                    "b" => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .ok()?
                    }
                    "q" => quoted_printable(&data.replace('_', " ")),
                    _ => return None,
                };
                Some(String::from_utf8_lossy(&bytes).into_owned())
            });
        match decoded {
            Some(text) => {
                if i > 0 && !last_encoded {
                    out.push(' ');
                }
                out.push_str(&text);
                last_encoded = true;
            }
            None => {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(token);
                last_encoded = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{decode_words, quoted_printable, read_delivered, split_host_port};

    #[test]
    fn delivered_messages_read_back() {
        assert_eq!(
            decode_words("=?utf-8?b?QURGUzEg4oCU?= =?utf-8?q?_failed?= now"),
            "ADFS1 \u{2014} failed now"
        );
        assert_eq!(
            quoted_printable("a=3Db =\nc=E2=80=94\nd"),
            "a=b c\u{2014}\nd".as_bytes()
        );
        let raw = "Subject: =?utf-8?b?4pyJIEFERlMx?=\r\nContent-Type: multipart/alternative;\r\n boundary=\"XyZ\"\r\n\r\n--XyZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nline one=\r\n continues\r\nline two\r\n--XyZ\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--XyZ--\r\n";
        let got = read_delivered(raw.as_bytes()).unwrap();
        assert_eq!(got.subject, "\u{2709} ADFS1");
        assert_eq!(got.text, "line one continues\nline two");
        assert!(read_delivered(b"no headers at all").is_none());
    }

    #[test]
    fn smtp_addresses() {
        assert_eq!(
            split_host_port("mail.example.com:587").unwrap(),
            ("mail.example.com".into(), 587)
        );
        assert_eq!(split_host_port("relay").unwrap(), ("relay".into(), 25));
        assert_eq!(split_host_port("[::1]:2525").unwrap(), ("::1".into(), 2525));
        assert!(split_host_port("mail:port").is_err());
        assert!(split_host_port(":25").is_err());
    }
}
