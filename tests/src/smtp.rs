//! A minimal SMTP server that accepts every message and keeps it, so tests can read the
//! verification codes the orchestrator emails. It speaks just enough SMTP for lettre:
//! no STARTTLS, no AUTH. It runs on its own thread and runtime, so it keeps answering
//! whatever the test's runtime is doing.

use base64::Engine;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How long `wait_for_*` waits for mail to arrive.
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(15);

/// One message as received: the envelope recipients and the raw DATA (headers and body,
/// dot-unstuffed, CRLF line ends).
#[derive(Clone, Debug)]
pub struct ReceivedEmail {
    pub recipients: Vec<String>,
    pub data: String,
}

impl ReceivedEmail {
    /// The header block and the body, split at the first empty line.
    fn split(&self) -> (&str, &str) {
        self.data
            .split_once("\r\n\r\n")
            .or_else(|| self.data.split_once("\n\n"))
            .unwrap_or(("", &self.data))
    }

    /// A header's value (the first one of that name; folded lines joined).
    pub fn header(&self, name: &str) -> Option<String> {
        let (headers, _) = self.split();
        let mut value: Option<String> = None;
        for line in headers.lines() {
            if let Some(current) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    current.push(' ');
                    current.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((key, rest)) = line.split_once(':') {
                if key.trim().eq_ignore_ascii_case(name) {
                    value = Some(rest.trim().to_owned());
                }
            }
        }
        value
    }

    /// The body with its Content-Transfer-Encoding (quoted-printable or base64) undone.
    pub fn body(&self) -> String {
        let (_, body) = self.split();
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        match encoding.as_str() {
            "quoted-printable" => decode_quoted_printable(body),
            "base64" => {
                let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .unwrap_or_else(|_| body.to_owned())
            }
            _ => body.to_owned(),
        }
    }

    /// The first run of exactly six digits in the body: the verification code.
    pub fn verification_code(&self) -> Option<String> {
        six_digit_run(&self.body())
    }

    fn is_to(&self, address: &str) -> bool {
        self.recipients.iter().any(|r| r.eq_ignore_ascii_case(address.trim()))
    }
}

/// The running sink. Stops when dropped.
pub struct SmtpSink {
    port: u16,
    messages: Arc<Mutex<Vec<ReceivedEmail>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SmtpSink {
    /// Listens on 127.0.0.1 on a free port.
    pub fn start() -> SmtpSink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the SMTP sink");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("sink address").port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let store = messages.clone();
        std::thread::Builder::new()
            .name(format!("smtp-sink-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the SMTP sink's runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept_loop(listener, store) => {}
                    }
                });
            })
            .expect("start the SMTP sink thread");
        SmtpSink {
            port,
            messages,
            shutdown: Some(shutdown),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the orchestrator gets as SMTP_URL.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedEmail> {
        self.messages.lock().expect("sink lock").clone()
    }

    /// The messages to one address (case-insensitive), oldest first.
    pub fn messages_to(&self, address: &str) -> Vec<ReceivedEmail> {
        self.messages().into_iter().filter(|m| m.is_to(address)).collect()
    }

    /// Waits until at least `count` messages to `address` have arrived; returns them all.
    pub async fn wait_for_messages(&self, address: &str, count: usize) -> Vec<ReceivedEmail> {
        let deadline = Instant::now() + MAIL_TIMEOUT;
        loop {
            let messages = self.messages_to(address);
            if messages.len() >= count {
                return messages;
            }
            if Instant::now() >= deadline {
                let everyone: Vec<Vec<String>> = self.messages().into_iter().map(|m| m.recipients).collect();
                panic!(
                    "expected {count} email(s) to {address} within {MAIL_TIMEOUT:?}, got {}; \
                     recipients of all received mail: {everyone:?}",
                    messages.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The verification code in the latest message to `address`, waiting for one to arrive.
    pub async fn wait_for_code(&self, address: &str) -> String {
        self.wait_for_code_in_message(address, 1).await
    }

    /// The code in the `number`th message (1-based) to `address`, waiting for it: after a
    /// resend, `wait_for_code_in_message(email, 2)` is the new code.
    pub async fn wait_for_code_in_message(&self, address: &str, number: usize) -> String {
        let messages = self.wait_for_messages(address, number).await;
        let latest = messages.last().expect("at least one message");
        latest
            .verification_code()
            .unwrap_or_else(|| panic!("no 6-digit code in the email to {address}:\n{}", latest.data))
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

async fn accept_loop(listener: TcpListener, store: Arc<Mutex<Vec<ReceivedEmail>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let store = store.clone();
        tokio::spawn(async move {
            let _ = serve_connection(stream, store).await;
        });
    }
}

async fn serve_connection(stream: TcpStream, store: Arc<Mutex<Vec<ReceivedEmail>>>) -> std::io::Result<()> {
    let (read_half, mut writer) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    writer.write_all(b"220 scriptmesh-test-sink ESMTP ready\r\n").await?;
    let mut recipients: Vec<String> = Vec::new();
    loop {
        let Some(line) = read_line(&mut reader).await? else {
            return Ok(());
        };
        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-scriptmesh-test-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 scriptmesh-test-sink\r\n",
            "MAIL" | "RSET" => {
                recipients.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                recipients.push(angle_address(&line));
                b"250 OK\r\n"
            }
            "DATA" => {
                writer.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await?;
                let data = read_data(&mut reader).await?;
                store.lock().expect("sink lock").push(ReceivedEmail {
                    recipients: std::mem::take(&mut recipients),
                    data,
                });
                b"250 OK: queued\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                writer.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        writer.write_all(reply).await?;
    }
}

/// One line without its CRLF; `None` at end of stream.
async fn read_line(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> std::io::Result<Option<String>> {
    let mut buffer = Vec::new();
    if reader.read_until(b'\n', &mut buffer).await? == 0 {
        return Ok(None);
    }
    Ok(Some(
        String::from_utf8_lossy(&buffer)
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
    ))
}

/// The message after DATA, up to the line holding a single dot, dot-unstuffed.
async fn read_data(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> std::io::Result<String> {
    let mut data = String::new();
    while let Some(line) = read_line(reader).await? {
        if line == "." {
            return Ok(data);
        }
        // The sender doubled every leading dot (RFC 5321 4.5.2).
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
        data.push_str("\r\n");
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "connection closed during DATA",
    ))
}

/// `RCPT TO:<you@example.com> PARAM=x` -> `you@example.com`.
fn angle_address(line: &str) -> String {
    match (line.find('<'), line.find('>')) {
        (Some(start), Some(end)) if start < end => line[start + 1..end].to_owned(),
        _ => line
            .split_once(':')
            .map(|(_, rest)| rest.trim().to_owned())
            .unwrap_or_default(),
    }
}

/// Undoes quoted-printable: soft line breaks (`=` at the end of a line) and `=XX` escapes.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let hex = |byte: u8| (byte as char).to_digit(16);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first run of digits that is exactly six long.
fn six_digit_run(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(headers: &str, body: &str) -> ReceivedEmail {
        ReceivedEmail {
            recipients: vec!["a@b.test".into()],
            data: format!("{headers}\r\n\r\n{body}"),
        }
    }

    #[test]
    fn finds_the_code_in_a_plain_body() {
        let message = email(
            "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nSubject: code",
            "Welcome.\r\n\r\nYour verification code is 042917\r\n\r\nIt expires in 15 minutes.\r\n",
        );
        assert_eq!(message.verification_code().as_deref(), Some("042917"));
    }

    #[test]
    fn joins_quoted_printable_soft_line_breaks() {
        let message = email(
            "Content-Transfer-Encoding: quoted-printable",
            "Your verification code is 12=\r\n3456 =3D done, expires in 15 minutes.\r\n",
        );
        assert_eq!(
            message.body(),
            "Your verification code is 123456 = done, expires in 15 minutes.\r\n"
        );
        assert_eq!(message.verification_code().as_deref(), Some("123456"));
    }

    #[test]
    fn decodes_base64_bodies() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("code: 987654\n");
        let message = email("Content-Transfer-Encoding: base64", &encoded);
        assert_eq!(message.verification_code().as_deref(), Some("987654"));
    }

    #[test]
    fn ignores_longer_and_shorter_digit_runs() {
        assert_eq!(six_digit_run("2026 1234567 12345 654321"), Some("654321".into()));
        assert_eq!(six_digit_run("no code here"), None);
    }

    #[test]
    fn reads_envelope_addresses() {
        assert_eq!(
            angle_address("RCPT TO:<You@Example.com> NOTIFY=NEVER"),
            "You@Example.com"
        );
        assert_eq!(angle_address("RCPT TO: bare@example.com"), "bare@example.com");
    }
}
