//! Log timestamps: every form a Postfix log line can start with, turned into an instant with
//! its UTC offset.
//!
//! The forms, as they are written by the programs that write mail logs:
//! - traditional syslog `Nov 22 08:01:02`, `Nov  2 08:01:02` (space padded) and `Nov 2 08:01:02`;
//! - Postfix's own `maillog_file` (postlogd) `Nov 02 08:01:02` (zero padded);
//! - RFC 3339 as rsyslog's high-precision format writes it, `2026-11-22T08:01:02.123456+01:00`,
//!   also with `Z`;
//! - `journalctl -o short-iso` / `short-iso-precise`, `2026-11-22T08:01:02+0100` (no colon).
//!
//! Syslog forms carry neither a year nor a zone: they are local time of the machine that wrote
//! them, and the year is inferred from a reference instant (see [`YearContext`]).

use std::cell::Cell;

use chrono::{
    DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike,
};
use chrono::{Duration as ChronoDuration, SecondsFormat};

/// An instant read from a log line, with the offset it is shown in and how many fractional
/// digits the log gave (so that it is written back with the precision it had, no more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// The instant, in the offset the log gave (or the local zone for syslog forms).
    pub time: DateTime<FixedOffset>,
    /// Number of sub-second digits in the log (0 when it had none).
    pub frac_digits: u8,
}

impl Timestamp {
    /// RFC 3339 with offset, with sub-seconds only when the log had them.
    pub fn to_rfc3339(&self) -> String {
        let format = match self.frac_digits {
            0 => SecondsFormat::Secs,
            1..=3 => SecondsFormat::Millis,
            4..=6 => SecondsFormat::Micros,
            _ => SecondsFormat::Nanos,
        };
        self.time.to_rfc3339_opts(format, false)
    }

    /// Appends what [`to_rfc3339`](Self::to_rfc3339) gives, without building a `String`
    /// (a row is formatted for each recorded line).
    pub fn write_rfc3339(&self, out: &mut Vec<u8>) {
        // The wall-clock fields once: each accessor of a DateTime would add the offset again.
        let t = self.time.naive_local();
        let offset = self.time.offset().local_minus_utc();
        if !(0..=9999).contains(&t.year()) || offset % 60 != 0 {
            // Not a log's time, or a zone's historical offset in seconds: chrono knows best.
            out.extend_from_slice(self.to_rfc3339().as_bytes());
            return;
        }
        let two = |out: &mut Vec<u8>, n: u32| {
            out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8])
        };
        let year = t.year() as u32;
        two(out, year / 100);
        two(out, year % 100);
        out.push(b'-');
        two(out, t.month());
        out.push(b'-');
        two(out, t.day());
        out.push(b'T');
        two(out, t.hour());
        out.push(b':');
        two(out, t.minute());
        out.push(b':');
        // A leap second is held as nanoseconds past 1e9: chrono writes it as second 60.
        let (second, nanos) = match t.nanosecond() {
            n if n >= 1_000_000_000 => (60, n - 1_000_000_000),
            n => (t.second(), n),
        };
        two(out, second);
        let digits = match self.frac_digits {
            0 => 0,
            1..=3 => 3,
            4..=6 => 6,
            _ => 9,
        };
        if digits > 0 {
            out.push(b'.');
            let mut frac = [b'0'; 9];
            let mut n = nanos;
            for d in frac.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            out.extend_from_slice(&frac[..digits]);
        }
        out.push(if offset < 0 { b'-' } else { b'+' });
        let minutes = offset.unsigned_abs() / 60;
        two(out, minutes / 60);
        out.push(b':');
        two(out, minutes % 60);
    }
}

/// Where the year of a yearless syslog timestamp comes from.
///
/// A log line cannot be newer than the moment it was read, nor (for a file) newer than the
/// file's last modification. So the year is the reference's year, unless that would put the
/// line more than [`YearContext::FUTURE_SLACK`] after the reference, in which case it is the
/// year before: a January read of a log that still holds December lines gets them right.
/// A log spanning more than a year cannot be placed this way; none that logrotate keeps does.
#[derive(Debug, Clone, Copy)]
pub struct YearContext {
    reference: NaiveDateTime,
}

impl YearContext {
    /// How far past the reference a line may be before it is taken as last year's (clock skew
    /// between the writer and this machine, and lines written after a file's mtime was read).
    pub const FUTURE_SLACK: ChronoDuration = ChronoDuration::days(2);

    /// Infer years relative to an instant (usually a file's mtime, or now).
    pub fn new(reference: DateTime<Local>) -> Self {
        YearContext {
            reference: reference.naive_local(),
        }
    }

    /// Infer years relative to the current time.
    pub fn now() -> Self {
        Self::new(Local::now())
    }

    /// Infer years relative to a local wall-clock time (tests and fixed references).
    pub fn at_naive(reference: NaiveDateTime) -> Self {
        YearContext { reference }
    }

    fn place(&self, month: u32, day: u32, secs: u32, nanos: u32) -> Option<NaiveDateTime> {
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let limit = self.reference + Self::FUTURE_SLACK;
        // Walk back at most eight years: enough to find a leap year for `Feb 29`.
        (0..8).find_map(|back| {
            let year = self.reference.year() - back;
            let date = NaiveDate::from_ymd_opt(year, month, day)?;
            let dt = date.and_hms_nano_opt(h, m, s, nanos)?;
            (dt <= limit).then_some(dt)
        })
    }
}

/// Parses the timestamp at the start of `line`. Returns it and the rest of the line after the
/// single space that ends the timestamp, or `None` when the line does not start with one.
pub fn parse_prefix<'a>(line: &'a [u8], years: &YearContext) -> Option<(Timestamp, &'a [u8])> {
    if line.first()?.is_ascii_digit() {
        parse_rfc3339(line)
    } else {
        parse_syslog(line, years)
    }
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn parse_syslog<'a>(line: &'a [u8], years: &YearContext) -> Option<(Timestamp, &'a [u8])> {
    let month = MONTHS.iter().position(|m| line.get(..3) == Some(&m[..]))? as u32 + 1;
    let mut rest = line.get(3..)?;
    // One or two spaces, then a day of one or two digits (zero or space padded).
    rest = rest.strip_prefix(b" ")?;
    if let Some(r) = rest.strip_prefix(b" ") {
        rest = r;
    }
    let (day, r) = digits(rest, 1, 2)?;
    rest = r.strip_prefix(b" ")?;
    let (secs, r) = hms(rest)?;
    let (nanos, frac_digits, r) = fraction(r)?;
    let rest = r.strip_prefix(b" ")?;
    let naive = years.place(month, day, secs, nanos)?;
    let time = local_to_fixed(naive)?;
    Some((Timestamp { time, frac_digits }, rest))
}

/// An RFC 3339 timestamp (also with a `+0100` offset, as journalctl writes it) followed by a
/// space; returns it and the rest of the line after the space. RFC 5424 headers use it too.
pub(super) fn parse_rfc3339(line: &[u8]) -> Option<(Timestamp, &[u8])> {
    let (year, r) = digits(line, 4, 4)?;
    let r = r.strip_prefix(b"-")?;
    let (month, r) = digits(r, 2, 2)?;
    let r = r.strip_prefix(b"-")?;
    let (day, r) = digits(r, 2, 2)?;
    let r = r.strip_prefix(b"T")?;
    let (secs, r) = hms(r)?;
    let (nanos, frac_digits, r) = fraction(r)?;
    let (offset, r) = utc_offset(r)?;
    let rest = r.strip_prefix(b" ")?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let naive = date.and_hms_nano_opt(secs / 3600, secs / 60 % 60, secs % 60, nanos)?;
    let time = offset.from_local_datetime(&naive).single()?;
    Some((Timestamp { time, frac_digits }, rest))
}

/// `Z`, `+01:00` or `+0100`.
fn utc_offset(s: &[u8]) -> Option<(FixedOffset, &[u8])> {
    if let Some(r) = s.strip_prefix(b"Z").or_else(|| s.strip_prefix(b"z")) {
        return Some((FixedOffset::east_opt(0)?, r));
    }
    let sign = match s.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hh, r) = digits(&s[1..], 2, 2)?;
    let r = r.strip_prefix(b":").unwrap_or(r);
    let (mm, r) = digits(r, 2, 2)?;
    if mm > 59 {
        return None;
    }
    Some((
        FixedOffset::east_opt(sign * (hh * 3600 + mm * 60) as i32)?,
        r,
    ))
}

/// `HH:MM:SS` as seconds of the day.
fn hms(s: &[u8]) -> Option<(u32, &[u8])> {
    let (h, r) = digits(s, 2, 2)?;
    let r = r.strip_prefix(b":")?;
    let (m, r) = digits(r, 2, 2)?;
    let r = r.strip_prefix(b":")?;
    let (sec, r) = digits(r, 2, 2)?;
    // 60 would be a leap second; chrono cannot hold it in this form, so it is refused.
    (h < 24 && m < 60 && sec < 60).then_some((h * 3600 + m * 60 + sec, r))
}

/// An optional `.fraction` (1 to 9 digits) as nanoseconds and its digit count.
fn fraction(s: &[u8]) -> Option<(u32, u8, &[u8])> {
    let Some(r) = s.strip_prefix(b".") else {
        return Some((0, 0, s));
    };
    let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 9 {
        return None;
    }
    let mut nanos = 0u32;
    for &b in &r[..n] {
        nanos = nanos * 10 + u32::from(b - b'0');
    }
    nanos *= 10u32.pow(9 - n as u32);
    Some((nanos, n as u8, &r[n..]))
}

/// Between `min` and `max` ASCII digits as a number.
fn digits(s: &[u8], min: usize, max: usize) -> Option<(u32, &[u8])> {
    let n = s
        .iter()
        .take(max)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if n < min {
        return None;
    }
    let v = s[..n]
        .iter()
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
    Some((v, &s[n..]))
}

/// The machine's local zone applied to a wall-clock time. Ambiguous times (the repeated hour
/// when clocks go back) take the earlier instant; times in the skipped hour when clocks go
/// forward cannot have been logged by a correct clock and are placed as far later as the
/// clocks jumped (02:30 becomes 03:30 of the new offset).
///
/// Asking the zone costs a clock read (chrono checks whether the zone file changed) and a
/// search of its transitions, a tenth of a scan's time when every line asks. A log's lines come
/// in order, so the last hour asked about is kept (per thread) with its offset when the whole
/// hour has one: its first and last instants have that single offset (one change within the
/// hour would give them different ones; no zone changes twice within an hour). A zone file
/// replaced while running is seen from the next hour on.
fn local_to_fixed(naive: NaiveDateTime) -> Option<DateTime<FixedOffset>> {
    let hour = naive.date().and_hms_opt(naive.hour(), 0, 0)?;
    let offset = match LAST_HOUR.get() {
        Some((cached, offset)) if cached == hour => offset,
        _ => {
            let last = hour.checked_add_signed(ChronoDuration::nanoseconds(3_599_999_999_999))?;
            match (local_offset(hour)?, local_offset(last)?) {
                (Wall::One(a), Wall::One(b)) if a == b => {
                    LAST_HOUR.set(Some((hour, a)));
                    a
                }
                _ => match local_offset(naive)? {
                    Wall::One(o) | Wall::Repeated { earlier: o } => o,
                    Wall::Skipped { before } => {
                        let instant =
                            naive - ChronoDuration::seconds(before.local_minus_utc().into());
                        return Some(Local.from_utc_datetime(&instant).fixed_offset());
                    }
                },
            }
        }
    };
    offset.from_local_datetime(&naive).single()
}

/// A wall-clock time of the local zone as an instant: the earlier one of a time that came twice
/// (clocks went back), `None` for one that never came (clocks went forward). Unlike chrono's
/// `Local.from_local_datetime`, right at both edges of a change (see [`local_offset`]).
pub fn earliest_local(naive: NaiveDateTime) -> Option<DateTime<FixedOffset>> {
    match local_offset(naive)? {
        Wall::One(o) | Wall::Repeated { earlier: o } => o.from_local_datetime(&naive).single(),
        Wall::Skipped { .. } => None,
    }
}

thread_local! {
    /// The last local hour [`local_to_fixed`] placed whose instants all have one offset.
    static LAST_HOUR: Cell<Option<(NaiveDateTime, FixedOffset)>> = const { Cell::new(None) };
}

/// What the local zone makes of a wall-clock time.
enum Wall {
    /// One offset.
    One(FixedOffset),
    /// The time came twice (clocks went back); `earlier` gives the first instant.
    Repeated { earlier: FixedOffset },
    /// The time never came (clocks went forward); `before` was the offset until then.
    Skipped { before: FixedOffset },
}

/// Places a wall-clock time in the local zone through the offsets the zone gives UTC instants,
/// which chrono gets right: its local-to-UTC direction takes both edges of a change as inside
/// it and gives the two instants of a repeated time in either order (chrono issue 1625).
fn local_offset(naive: NaiveDateTime) -> Option<Wall> {
    // Checked: a time at the edge of chrono's range (a report's `--from +262142-12-31`) has no
    // day after it, and is no time of this zone.
    let shift = |secs: i64| naive.checked_add_signed(ChronoDuration::seconds(secs));
    let offset_at = |utc: NaiveDateTime| Local.offset_from_utc_datetime(&utc).fix();
    // The offsets in force a day either side: a zone changes at most once in between.
    const DAY: i64 = 86_400;
    let (before, after) = (offset_at(shift(-DAY)?), offset_at(shift(DAY)?));
    let fits = |o: FixedOffset| {
        offset_at(naive - ChronoDuration::seconds(o.local_minus_utc().into())) == o
    };
    Some(match (fits(before), fits(after)) {
        (true, true) if before != after => Wall::Repeated {
            // The larger offset names the earlier instant.
            earlier: if before.local_minus_utc() > after.local_minus_utc() {
                before
            } else {
                after
            },
        },
        (true, _) => Wall::One(before),
        (false, true) => Wall::One(after),
        (false, false) => Wall::Skipped { before },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(s: &str) -> YearContext {
        YearContext::at_naive(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap())
    }

    fn naive_of(line: &str, years: &YearContext) -> (String, u8, String) {
        let (ts, rest) = parse_prefix(line.as_bytes(), years).expect("parses");
        (
            ts.time
                .naive_local()
                .format("%Y-%m-%d %H:%M:%S%.f")
                .to_string(),
            ts.frac_digits,
            String::from_utf8(rest.to_vec()).unwrap(),
        )
    }

    /// The ends of chrono's range are no local time (a report's `--from +262142-12-31`), not a
    /// panic.
    #[test]
    fn times_at_the_ends_of_the_range_are_none() {
        assert_eq!(earliest_local(NaiveDateTime::MAX), None);
        assert_eq!(earliest_local(NaiveDateTime::MIN), None);
        assert_eq!(local_to_fixed(NaiveDateTime::MAX), None);
    }

    /// The byte writer gives exactly chrono's RFC 3339, for every precision and offset sign.
    #[test]
    fn written_rfc3339_is_chrono_s() {
        let offsets = [
            0,
            3600,
            -5 * 3600,
            5 * 3600 + 45 * 60,
            -(9 * 3600 + 30 * 60),
            14 * 3600,
        ];
        let times = [
            "2026-11-22T08:01:02.123456789",
            "2026-01-01T00:00:00",
            "1999-12-31T23:59:59.000000001",
            "0042-02-28T12:30:05.5",
        ];
        for offset in offsets {
            let zone = FixedOffset::east_opt(offset).unwrap();
            for time in times {
                let naive = NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M:%S%.f").unwrap();
                for frac_digits in 0..=9 {
                    let ts = Timestamp {
                        time: zone.from_local_datetime(&naive).unwrap(),
                        frac_digits,
                    };
                    let mut out = Vec::new();
                    ts.write_rfc3339(&mut out);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        ts.to_rfc3339(),
                        "{time} {offset} {frac_digits}"
                    );
                }
            }
        }
    }

    #[test]
    fn syslog_forms() {
        let y = ctx("2026-11-22 12:00:00");
        for (line, want) in [
            ("Nov 22 08:01:02 mx", "2026-11-22 08:01:02"),
            ("Nov  2 08:01:02 mx", "2026-11-02 08:01:02"),
            ("Nov 2 08:01:02 mx", "2026-11-02 08:01:02"),
            ("Nov 02 08:01:02 mx", "2026-11-02 08:01:02"),
        ] {
            let (got, digits, rest) = naive_of(line, &y);
            assert_eq!(
                (got.as_str(), digits, rest.as_str()),
                (want, 0, "mx"),
                "{line}"
            );
        }
    }

    #[test]
    fn year_is_inferred_across_new_year() {
        let jan = ctx("2027-01-03 10:00:00");
        assert_eq!(
            naive_of("Dec 31 23:59:59 mx", &jan).0,
            "2026-12-31 23:59:59"
        );
        assert_eq!(
            naive_of("Jan  1 00:00:01 mx", &jan).0,
            "2027-01-01 00:00:01"
        );
        // Slightly ahead of the reference (clock skew) stays in the same year.
        assert_eq!(
            naive_of("Jan  4 09:00:00 mx", &jan).0,
            "2027-01-04 09:00:00"
        );
        // Far ahead means last year.
        assert_eq!(
            naive_of("Jun  4 09:00:00 mx", &jan).0,
            "2026-06-04 09:00:00"
        );
    }

    #[test]
    fn feb_29_finds_a_leap_year() {
        let y = ctx("2027-03-10 00:00:00");
        assert_eq!(naive_of("Feb 29 01:02:03 mx", &y).0, "2024-02-29 01:02:03");
    }

    #[test]
    fn rfc3339_and_journal_forms() {
        let y = ctx("2026-11-22 12:00:00");
        for (line, want, digits) in [
            (
                "2026-11-22T08:01:02.123456+01:00 mx",
                "2026-11-22T08:01:02.123456+01:00",
                6,
            ),
            (
                "2026-11-22T08:01:02+0100 mx",
                "2026-11-22T08:01:02+01:00",
                0,
            ),
            (
                "2026-11-22T08:01:02.5-0330 mx",
                "2026-11-22T08:01:02.500-03:30",
                1,
            ),
            (
                "2022-04-14T00:36:03.150Z mx",
                "2022-04-14T00:36:03.150+00:00",
                3,
            ),
            (
                "2026-11-22T08:01:02.123456789+00:00 mx",
                "2026-11-22T08:01:02.123456789+00:00",
                9,
            ),
        ] {
            let (ts, rest) = parse_prefix(line.as_bytes(), &y).expect(line);
            assert_eq!(ts.to_rfc3339(), want, "{line}");
            assert_eq!(ts.frac_digits, digits);
            assert_eq!(rest, b"mx");
        }
    }

    #[test]
    fn rejects_non_timestamps() {
        let y = ctx("2026-11-22 12:00:00");
        for line in [
            "",
            "Nov",
            "Foo 22 08:01:02 mx",
            "Nov 22 08:01 mx",
            "Nov 22 25:01:02 mx",
            "Nov 32 08:01:02 mx",
            "Nov   2 08:01:02 mx",
            "Nov 22 08:01:02",
            "2026-11-22 08:01:02 mx",
            "2026-13-22T08:01:02Z mx",
            "2026-11-22T08:01:02 mx",
            "2026-11-22T08:01:02.Z mx",
            "2026-11-22T08:01:02.1234567890Z mx",
            "warning: unknown[1.2.3.4]: SASL LOGIN authentication failed",
        ] {
            assert!(parse_prefix(line.as_bytes(), &y).is_none(), "{line:?}");
        }
    }
}
