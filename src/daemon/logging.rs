//! Logging to stderr, shaped for where stderr goes. Under systemd (stderr is the journal, as
//! `JOURNAL_STREAM` says), each line starts with its syslog priority (`<3>` ... `<7>`), which
//! journald turns into the entry's priority, so `journalctl -p warning` works, and carries no
//! timestamp (the journal has its own). On a terminal, lines are coloured; elsewhere, plain.

use std::fmt;
use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

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
/// default. `timestamps` asks for times on each line (the daemon outside the journal; one-shot
/// commands do without).
pub fn init(timestamps: bool) {
    let filter = std::env::var("MAILLOGSENTINEL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter));
    if stderr_is_journal() {
        builder.event_format(JournalFormat).init();
    } else {
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let builder = builder.with_ansi(colour).with_target(false);
        if timestamps {
            builder.init();
        } else {
            builder.without_time().init();
        }
    }
}

/// The syslog priority of a level, as sd-daemon(3) prefixes use it.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `<PRIORITY>message key=value ...`: one journal entry per event, no timestamp.
pub struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
