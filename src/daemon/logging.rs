//! Logging, shaped for where stderr goes.
//!
//! - Stderr is the journal (`JOURNAL_STREAM` names stderr's device:inode, as systemd sets it):
//!   each event is sent to journald as one entry over its native protocol
//!   (`/run/systemd/journal/socket`): `PRIORITY` from the level (so `journalctl -p warning`
//!   works), `MESSAGE` (the message and then its fields as `key=value`, a multi-line message
//!   kept whole), `SYSLOG_IDENTIFIER`, `CODE_FILE`, `CODE_LINE`, and each field as a journal
//!   field of its own (`F_PATH`, `F_OFFSET`, ...). Where that socket cannot be reached, and for
//!   an entry it refuses (too large for a datagram), the event goes to stderr as one line
//!   `<PRIORITY>message key=value` with its newlines escaped, which journald stores as one entry
//!   with that priority. Neither carries a timestamp (the journal has its own) or escape codes.
//! - Elsewhere, one line per event with its level, a time for the daemon, and colours only on
//!   a terminal without `NO_COLOR`.
//!
//! Attacker-controlled text reaches log messages and fields (reasons and addresses from the
//! log, file names), so control characters never reach the output raw: they are written as
//! `\x1b`, `\r`, `\n` and so on, in every mode. Only a message's own newlines are kept, where
//! they cannot split an entry (the native journal, a terminal, a file).

use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write as _};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// journald's socket for the native protocol.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Test hook: another path for [`JOURNAL_SOCKET`] (a socket a test reads, or none at all to
/// force the stream format).
const JOURNAL_SOCKET_ENV: &str = "MAILLOGSENTINEL_TEST_JOURNAL_SOCKET";

/// What [`init`] chose, for [`tell`].
static OUTPUT: OnceLock<Output> = OnceLock::new();

/// Where messages go.
enum Output {
    /// journald's native protocol.
    Journal(Journal),
    /// Stderr, which is the journal: `<PRIORITY>` lines.
    JournalStream,
    /// Stderr, not the journal.
    Stderr,
}

/// Whether stderr is connected to the journal (`JOURNAL_STREAM` names stderr's device:inode).
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    use std::os::fd::AsFd;
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Installs the global subscriber: `MAILLOGSENTINEL_LOG` (or `RUST_LOG`) filters, `info` by
/// default (refinery's own steps only from `warn`: "no migrations to apply" at every start is
/// noise, and what was applied is logged by the store). `timestamps` asks for times on each
/// line (the daemon outside the journal; one-shot commands do without).
pub fn init(timestamps: bool) {
    let filter = std::env::var("MAILLOGSENTINEL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,refinery_core=warn,refinery=warn".into());
    let filter = tracing_subscriber::EnvFilter::new(filter);
    if stderr_is_journal() {
        let socket = std::env::var_os(JOURNAL_SOCKET_ENV)
            .map_or_else(|| PathBuf::from(JOURNAL_SOCKET), PathBuf::from);
        match Journal::connect(&socket) {
            Ok(journal) => {
                let _ = OUTPUT.set(Output::Journal(journal));
                tracing_subscriber::registry()
                    .with(filter)
                    .with(JournalLayer)
                    .init();
            }
            Err(e) => {
                let _ = OUTPUT.set(Output::JournalStream);
                tracing_subscriber::fmt()
                    .with_writer(std::io::stderr)
                    .with_env_filter(filter)
                    .with_ansi(false)
                    .event_format(JournalFormat)
                    .init();
                tracing::debug!(
                    "journal socket {}: {e}; logging to stderr",
                    socket.display()
                );
            }
        }
    } else {
        let _ = OUTPUT.set(Output::Stderr);
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let builder = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .fmt_fields(EscapedFields)
            .with_ansi(std::io::stderr().is_terminal() && !no_color)
            .with_target(false);
        if timestamps {
            builder.init();
        } else {
            builder.without_time().init();
        }
    }
}

/// Tells the person or service manager that ran a command something outside the log's filter:
/// the error that ends the command, what a one-shot command did. On stderr as `maillogsentinel:
/// message`; where stderr is the journal, as one entry with the level's priority (a multi-line
/// error stays one entry, and `-p err` finds it).
pub fn tell(level: Level, message: &str) {
    let text = EventText {
        message: message.to_owned(),
        fields: Vec::new(),
    };
    let priority = priority(&level);
    match OUTPUT.get() {
        Some(Output::Journal(journal)) => {
            if journal.send(&entry(priority, &text, None, None)).is_err() {
                stream_line(priority, &text);
            }
        }
        Some(Output::JournalStream) => stream_line(priority, &text),
        Some(Output::Stderr) | None => {
            let mut line = String::from("maillogsentinel: ");
            escape(&mut line, message, true);
            eprintln!("{line}");
        }
    }
}

/// The syslog priority of a level, as sd-daemon(3) prefixes and the journal's `PRIORITY` use it.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Writes `s` to `out` with control characters escaped (`\n`, `\r`, `\t`, `\x1b`, `\u{9b}`);
/// `keep_newlines` keeps `\n` as it is.
fn escape(out: &mut String, s: &str, keep_newlines: bool) {
    for c in s.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// An event's message and fields, as text not yet escaped.
#[derive(Default)]
struct EventText {
    /// The `message` field.
    message: String,
    /// The other fields: strings quoted, other values as they display.
    fields: Vec<(&'static str, String)>,
}

impl EventText {
    /// Collects the fields of an event or span.
    fn of(fields: impl RecordFields) -> EventText {
        let mut text = EventText::default();
        fields.record(&mut text);
        text
    }

    /// `message key=value ...` with control characters escaped (the message's newlines kept
    /// when `keep_newlines`; field values never keep theirs).
    fn render(&self, keep_newlines: bool) -> String {
        let mut out = String::with_capacity(self.message.len() + 16 * self.fields.len());
        escape(&mut out, &self.message, keep_newlines);
        for (name, value) in &self.fields {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(name);
            out.push('=');
            escape(&mut out, value, false);
        }
        out
    }
}

impl Visit for EventText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_message(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.record_message(&format!("{value:?}")),
            // Metadata of events that came from the `log` crate, shown by the formatter itself.
            name if name.starts_with("log.") => {}
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                self.fields.push((name, format!("{value:?}")));
            }
        }
    }
}

impl EventText {
    fn record_message(&mut self, text: &str) {
        if !self.message.is_empty() {
            self.message.push(' ');
        }
        self.message.push_str(text);
    }
}

/// Field formatter for lines outside the journal: the message, then `key=value` for each
/// field, control characters escaped (the message's newlines kept).
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        writer.write_str(&EventText::of(fields).render(true))
    }
}

/// `<PRIORITY>message key=value ...`: one line, so one journal entry, per event; control
/// characters (newlines included) escaped, no escape codes, no timestamp.
pub struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let priority = priority(event.metadata().level());
        writeln!(writer, "<{priority}>{}", EventText::of(event).render(false))
    }
}

/// Writes one `<PRIORITY>` line to stderr.
fn stream_line(priority: u8, text: &EventText) {
    let line = format!("<{priority}>{}\n", text.render(false));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A datagram socket to journald.
struct Journal {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Journal {
    /// Checks that journald listens at `path` (an empty datagram, which it ignores).
    fn connect(path: &Path) -> std::io::Result<Journal> {
        let socket = UnixDatagram::unbound()?;
        socket.send_to(&[], path)?;
        Ok(Journal {
            socket,
            path: path.to_path_buf(),
        })
    }

    /// Sends one entry.
    fn send(&self, entry: &[u8]) -> std::io::Result<()> {
        self.socket.send_to(entry, &self.path).map(|_| ())
    }
}

/// Sends every event as one journal entry; an entry journald does not take goes to stderr as a
/// `<PRIORITY>` line.
struct JournalLayer;

impl<S: Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(Output::Journal(journal)) = OUTPUT.get() else {
            return;
        };
        let meta = event.metadata();
        let priority = priority(meta.level());
        let text = EventText::of(event);
        if journal
            .send(&entry(priority, &text, meta.file(), meta.line()))
            .is_err()
        {
            stream_line(priority, &text);
        }
    }
}

/// An entry in the native protocol (systemd.io/JOURNAL_NATIVE_PROTOCOL): `NAME=value` lines, or
/// `NAME`, a little-endian 64-bit length and the value, for values that may hold a newline.
fn entry(priority: u8, text: &EventText, file: Option<&str>, line: Option<u32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let _ = writeln!(out, "PRIORITY={priority}");
    out.extend_from_slice(b"SYSLOG_IDENTIFIER=maillogsentinel\n");
    if let Some(file) = file {
        put_field(&mut out, "CODE_FILE", file);
    }
    if let Some(line) = line {
        let _ = writeln!(out, "CODE_LINE={line}");
    }
    put_field(&mut out, "MESSAGE", &text.render(true));
    for (name, value) in &text.fields {
        let mut escaped = String::with_capacity(value.len());
        escape(&mut escaped, value, false);
        put_field(&mut out, &field_name(name), &escaped);
    }
    out
}

/// Appends a field in the length-prefixed form, which takes any value.
fn put_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// A journal field name for an event field: `F_` and the name in capitals, `.` as `_`, other
/// characters journald refuses left out, at most 64 bytes. The prefix keeps our fields apart
/// from journald's own (`MESSAGE`, `PRIORITY`, ...), as tracing-journald does.
fn field_name(name: &str) -> String {
    let mut out = String::from("F_");
    for c in name.chars() {
        match c {
            '.' => out.push('_'),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c.to_ascii_uppercase()),
            _ => {}
        }
    }
    out.truncate(64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str, keep_newlines: bool) -> String {
        let mut out = String::new();
        escape(&mut out, s, keep_newlines);
        out
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escaped("a\x1b[31mb\r\tc\x07\x7f\u{9b}d\u{202e}é", false),
            "a\\x1b[31mb\\r\\tc\\x07\\x7f\\u{9b}d\u{202e}é"
        );
        assert_eq!(escaped("one\ntwo", false), "one\\ntwo");
        assert_eq!(escaped("one\ntwo", true), "one\ntwo");
        assert_eq!(escaped("one\r\ntwo", true), "one\\r\ntwo");
    }

    fn text(message: &str, fields: &[(&'static str, &str)]) -> EventText {
        EventText {
            message: message.into(),
            fields: fields.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        }
    }

    #[test]
    fn a_line_is_the_message_then_the_fields() {
        let t = text(
            "line one\nline two",
            &[("path", "/var/log/evil\n<3>forged"), ("offset", "12")],
        );
        assert_eq!(
            t.render(false),
            "line one\\nline two path=/var/log/evil\\n<3>forged offset=12"
        );
        assert_eq!(
            t.render(true),
            "line one\nline two path=/var/log/evil\\n<3>forged offset=12"
        );
        assert_eq!(text("", &[("a", "1")]).render(false), "a=1");
    }

    /// The fields of a native entry, in order, as (name, value).
    fn parse_entry(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut fields = Vec::new();
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n').unwrap();
            let head = &data[..nl];
            data = &data[nl + 1..];
            if let Some(eq) = head.iter().position(|&b| b == b'=') {
                fields.push((
                    String::from_utf8(head[..eq].to_vec()).unwrap(),
                    head[eq + 1..].to_vec(),
                ));
            } else {
                let len = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
                fields.push((
                    String::from_utf8(head.to_vec()).unwrap(),
                    data[8..8 + len].to_vec(),
                ));
                assert_eq!(data[8 + len], b'\n');
                data = &data[8 + len + 1..];
            }
        }
        fields
    }

    #[test]
    fn a_native_entry_has_priority_message_and_fields() {
        let t = text(
            "configuration not applied:\n  line 3: bad",
            &[("path", "\"/x\x1by\""), ("count", "2")],
        );
        let fields = parse_entry(&entry(3, &t, Some("src/x.rs"), Some(7)));
        let get = |n: &str| {
            fields
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(get("PRIORITY").as_deref(), Some("3"));
        assert_eq!(get("SYSLOG_IDENTIFIER").as_deref(), Some("maillogsentinel"));
        assert_eq!(get("CODE_FILE").as_deref(), Some("src/x.rs"));
        assert_eq!(get("CODE_LINE").as_deref(), Some("7"));
        assert_eq!(
            get("MESSAGE").as_deref(),
            Some("configuration not applied:\n  line 3: bad path=\"/x\\x1by\" count=2")
        );
        assert_eq!(get("F_PATH").as_deref(), Some("\"/x\\x1by\""));
        assert_eq!(get("F_COUNT").as_deref(), Some("2"));
    }

    #[test]
    fn journal_field_names() {
        assert_eq!(field_name("path"), "F_PATH");
        assert_eq!(field_name("log.target"), "F_LOG_TARGET");
        assert_eq!(field_name("a-b"), "F_AB");
        assert_eq!(field_name(&"x".repeat(100)).len(), 64);
    }
}
