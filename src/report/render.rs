//! Renders a [`Summary`] for a terminal (aligned tables, colour only on a TTY), as HTML (for
//! the mail and `--format html`) and as JSON (for scripts).
//!
//! Every format opens with the same one-line [`verdict`], so that the subject, the first line
//! of the mail and the first line on the terminal say the same thing. Attacker-controlled
//! text (usernames, host names, AS names) is escaped for each medium: control and
//! bidirectional characters shown as escapes on a terminal, entities in HTML. A reverse DNS
//! name that does not resolve back to its address is marked `(unconfirmed)` wherever it is
//! shown: anyone can publish a PTR record naming `mail.google.com`.
//!
//! Widths on a terminal are display columns (`unicode-width`: a CJK character or an emoji
//! takes two), and long values are cut with an ellipsis, so that a hostile 200-character
//! username cannot push the table off the screen. The HTML is one column, at most 760 px
//! wide, with the least important columns hidden on narrow screens, styles inline (for mail
//! clients that drop `<style>`) and no external resource.

use chrono::{DateTime, Local, TimeZone};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::summary::{BanCounts, Count, IpLine, Summary, Totals};
use crate::enrich::printable;

/// One table of the report, medium-independent.
pub struct Table {
    /// Heading.
    pub title: String,
    /// Column names.
    pub headers: Vec<&'static str>,
    /// Cells.
    pub rows: Vec<Vec<String>>,
    /// Which columns are numbers (right-aligned).
    pub numeric: Vec<bool>,
    /// Which columns a narrow screen may leave out (the HTML hides them under 600 px).
    pub optional: Vec<bool>,
    /// What the table is, for the short terminal report.
    pub kind: Kind,
}

/// The tables, by what they show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Logins after failed logins.
    Compromise,
    /// The totals beside the previous period.
    Overview,
    /// Top addresses.
    Addresses,
    /// Top usernames.
    Usernames,
    /// Failed logins per hour.
    Hours,
    /// Anything else (in `--full` and the mail only).
    Other,
}

/// The change from `prev` to `cur`, as the tables show it.
fn change(cur: u64, prev: u64) -> String {
    match (cur, prev) {
        (0, 0) => "-".into(),
        (_, 0) => "new".into(),
        (c, p) => {
            let pct = (c as f64 - p as f64) / p as f64 * 100.0;
            format!("{pct:+.0}%")
        }
    }
}

/// A window's length in words: `24 h`, `7 days`, `11.8 days`, `90 min`.
pub fn period_words(secs: i64) -> String {
    let secs = secs.max(0);
    let tenths = |unit: i64, name: &str| {
        if secs % unit == 0 {
            format!("{} {name}", secs / unit)
        } else {
            format!("{:.1} {name}", secs as f64 / unit as f64)
        }
    };
    if secs >= 2 * 86_400 {
        tenths(86_400, "days")
    } else if secs >= 3 * 3600 {
        tenths(3600, "h")
    } else if secs >= 60 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// `n thing` or `n things`.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A server name as the verdict shows it: host-name characters only (it goes into the mail's
/// subject), anything else as `?`.
fn server_word(name: &str) -> String {
    if name.is_empty() {
        return "(unnamed server)".into();
    }
    name.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Who the report is about: the one server asked for, the servers in the window (up to three
/// by name), or this host when the window holds nothing.
fn servers_words(s: &Summary, this_host: &str) -> String {
    if let Some(one) = &s.server {
        return server_word(one);
    }
    match s.servers.len() {
        0 => server_word(this_host),
        1..=3 => {
            let names: Vec<String> = s.servers.iter().map(|c| server_word(&c.key)).collect();
            match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => {
                    format!("{} and {last}", rest.join(", "))
                }
                _ => names.join(""),
            }
        }
        n => format!("{n} servers"),
    }
}

/// The report in one line, for the subject and the first line of every format: the
/// server(s), failed logins and their change against the previous period, addresses and new
/// addresses, logins after failures (when logins are watched: "none" is news too), bans
/// (when the responder has run) and auth-backend outages. Counts and host names only:
/// nothing an attacker writes.
pub fn verdict(s: &Summary, this_host: &str) -> String {
    let period = period_words(s.to_ts - s.from_ts);
    let (cur, prev) = (s.totals.attempts, s.previous.attempts);
    let mut out = format!("{}: ", servers_words(s, this_host));
    if s.to_ts <= s.from_ts {
        out.push_str("nothing to report (an empty window)");
    } else if cur == 0 {
        out.push_str(&format!(
            "no failed logins ({prev} in the previous {period})"
        ));
    } else {
        let trend = match prev {
            0 => format!("none in the previous {period}"),
            p if p == cur => format!("as many as in the previous {period}"),
            p => format!("{} on the previous {period}", change(cur, p)),
        };
        out.push_str(&format!(
            "{} ({trend}) from {} ({} new)",
            plural(cur, "failed login", "failed logins"),
            plural(s.totals.distinct_ips, "address", "addresses"),
            s.new_ips
        ));
    }
    let logins = s.logins_after_failures.len() as u64;
    if logins > 0 {
        out.push_str(&format!(
            "; {} after failures: check {}",
            plural(logins, "login", "logins"),
            if logins == 1 { "it" } else { "them" }
        ));
    } else if s.logins_watched {
        out.push_str("; no login after failures");
    }
    if let Some(b) = s.bans {
        out.push_str(&format!("; {}", bans_words(&b)));
    }
    // The backend record is this host's: say so when the report names other servers.
    let only_here = s.server.as_deref().unwrap_or(this_host) == this_host
        && s.servers.iter().all(|c| c.key == this_host);
    let here = if only_here {
        String::new()
    } else {
        format!(" on {}", server_word(this_host))
    };
    if s.backend_failures > 0 {
        out.push_str(&format!(
            "; auth backend failed {}{here}",
            plural(s.backend_failures, "time", "times")
        ));
    } else if s.backend_watched {
        out.push_str(&format!("; no auth-backend outage{here}"));
    }
    out
}

fn bans_words(b: &BanCounts) -> String {
    let mut out = plural(b.applied, "ban", "bans");
    if b.logged > 0 {
        out.push_str(&format!(" ({} in log mode)", b.logged));
    }
    if b.failed > 0 {
        out.push_str(&format!(" ({} FAILED)", b.failed));
    }
    out
}

/// A time of the report as people read it: `2026-11-22 08:00` in the local zone.
fn local(ts: i64) -> Option<DateTime<Local>> {
    Local.timestamp_opt(ts, 0).earliest()
}

/// The window as the report's second line says it: `2026-11-22 00:00 to 2026-11-23 00:00
/// (UTC+01:00)`.
pub fn window_words(s: &Summary) -> String {
    let (Some(a), Some(b)) = (local(s.from_ts), local(s.to_ts)) else {
        return format!("{} to {}", s.from, s.to);
    };
    let (za, zb) = (a.format("%:z").to_string(), b.format("%:z").to_string());
    let zone = if za == zb {
        format!("UTC{zb}")
    } else {
        // Across a change of daylight saving time.
        format!("UTC{za} to UTC{zb}")
    };
    format!(
        "{} to {} ({zone})",
        a.format("%Y-%m-%d %H:%M"),
        b.format("%Y-%m-%d %H:%M")
    )
}

/// An hour of the window as pflogsumm labels it, in the local zone: `08:00-09:00`, with the
/// day in front (`11-22 08:00-09:00`) when the window spans more than a day.
pub fn hour_label(ts: i64, with_day: bool) -> String {
    let (Some(a), Some(b)) = (local(ts), local(ts + 3600)) else {
        return ts.to_string();
    };
    let hours = format!("{}-{}", a.format("%H:%M"), b.format("%H:%M"));
    if with_day {
        format!("{} {hours}", a.format("%m-%d"))
    } else {
        hours
    }
}

/// Whether the window's hours need their day to be told apart.
pub fn hours_need_day(s: &Summary) -> bool {
    s.to_ts - s.from_ts > 86_400
}

/// A reverse DNS name as shown: marked unless it is known to resolve back to the address.
pub fn shown_name(line: &IpLine) -> String {
    if line.reverse_dns.is_empty() {
        "-".into()
    } else if line.name_confirmed() {
        line.reverse_dns.clone()
    } else {
        format!("{}{UNCONFIRMED}", line.reverse_dns)
    }
}

/// `AS64500 Org`, or `-`.
fn as_words(asn: Option<u32>, org: &str) -> String {
    match asn {
        Some(n) => format!("AS{n} {org}").trim_end().to_string(),
        None if org.is_empty() => "-".into(),
        None => org.to_string(),
    }
}

fn counts(title: &str, what: &'static str, v: &[Count]) -> Table {
    // Tables whose rows carry the previous period's count show it, with the change.
    if !v.is_empty() && v.iter().all(|c| c.previous.is_some()) {
        return Table {
            title: title.into(),
            headers: vec!["attempts", "previous", "change", what],
            rows: v
                .iter()
                .map(|c| {
                    let p = c.previous.unwrap_or(0);
                    vec![
                        c.count.to_string(),
                        p.to_string(),
                        change(c.count, p),
                        c.key.clone(),
                    ]
                })
                .collect(),
            numeric: vec![true, true, true, false],
            optional: vec![false, true, false, false],
            kind: Kind::Other,
        };
    }
    Table {
        title: title.into(),
        headers: vec!["attempts", what],
        rows: v
            .iter()
            .map(|c| vec![c.count.to_string(), c.key.clone()])
            .collect(),
        numeric: vec![true, false],
        optional: vec![false, false],
        kind: Kind::Other,
    }
}

/// A username as listed: Postfix before 3.7.8 (and `(unavailable)`) logs none.
fn shown_username(u: &str) -> String {
    if u.is_empty() {
        "(none logged)".into()
    } else {
        u.into()
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

/// An RFC 3339 time as the tables show it: `2026-11-22 08:14:03`.
fn shown_time(rfc: &str) -> String {
    DateTime::parse_from_rfc3339(rfc)
        .map(|t| {
            t.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| rfc.to_string())
}

/// The report as tables, in reading order: who got in first, then the overview, the
/// addresses and usernames, then the rest.
pub fn tables(s: &Summary) -> Vec<Table> {
    let t = |name: &str, f: fn(&Totals) -> u64| {
        vec![
            name.to_string(),
            f(&s.totals).to_string(),
            f(&s.previous).to_string(),
            change(f(&s.totals), f(&s.previous)),
        ]
    };
    let single = |name: &str, n: u64| {
        vec![
            name.to_string(),
            n.to_string(),
            String::new(),
            String::new(),
        ]
    };
    let mut overview = vec![
        t("failed logins", |t| t.attempts),
        t("distinct addresses", |t| t.distinct_ips),
        t("distinct usernames", |t| t.distinct_usernames),
        single("addresses not seen in the previous period", s.new_ips),
    ];
    if s.logins_watched || !s.logins_after_failures.is_empty() {
        overview.push(single(
            "logins after failed logins (alerts)",
            s.logins_after_failures.len() as u64,
        ));
    }
    if let Some(b) = s.bans {
        overview.push(single("bans", b.applied));
        if b.logged > 0 {
            overview.push(single(
                "bans decided in log mode (nothing blocked)",
                b.logged,
            ));
        }
        if b.failed > 0 {
            overview.push(single("bans that could not be carried out", b.failed));
        }
    }
    overview.push(single(
        "auth-backend failures (server side, not attacks)",
        s.backend_failures,
    ));
    if s.known_user_attempts + s.unknown_user_attempts > 0 {
        overview.push(single(
            "attempts on existing usernames (Dovecot: wrong password)",
            s.known_user_attempts,
        ));
        overview.push(single(
            "attempts on unknown usernames (Dovecot)",
            s.unknown_user_attempts,
        ));
    }
    let mut out = vec![
        // First: who got in anyway.
        Table {
            title: "Logins after failures: check these accounts".into(),
            headers: vec![
                "time",
                "address",
                "username",
                "country",
                "AS",
                "failures before",
                "signals",
            ],
            rows: s
                .logins_after_failures
                .iter()
                .map(|l| {
                    vec![
                        shown_time(&l.time),
                        l.ip.clone(),
                        shown_username(&l.username),
                        dash(&l.country),
                        as_words(l.asn, &l.as_org),
                        l.address_failures.to_string(),
                        l.signals.clone(),
                    ]
                })
                .collect(),
            numeric: vec![false, false, false, false, false, true, false],
            optional: vec![false, false, false, true, true, false, true],
            kind: Kind::Compromise,
        },
        Table {
            title: "Overview".into(),
            headers: vec!["", "this period", "previous", "change"],
            rows: overview,
            numeric: vec![false, true, true, true],
            optional: vec![false; 4],
            kind: Kind::Overview,
        },
        Table {
            title: "Top addresses".into(),
            headers: vec![
                "attempts",
                "previous",
                "change",
                "address",
                "reverse DNS",
                "country",
                "AS",
            ],
            rows: s
                .top_ips
                .iter()
                .map(|i| {
                    vec![
                        i.count.to_string(),
                        i.previous.to_string(),
                        change(i.count, i.previous),
                        i.ip.clone(),
                        shown_name(i),
                        dash(&i.country),
                        as_words(i.asn, &i.as_org),
                    ]
                })
                .collect(),
            numeric: vec![true, true, true, false, false, false, false],
            optional: vec![false, true, true, false, false, false, true],
            kind: Kind::Addresses,
        },
        Table {
            title: "Top usernames".into(),
            headers: vec![
                "attempts",
                "previous",
                "change",
                "username",
                "addresses",
                "ASNs",
            ],
            rows: s
                .top_usernames
                .iter()
                .map(|u| {
                    vec![
                        u.count.to_string(),
                        u.previous.to_string(),
                        change(u.count, u.previous),
                        shown_username(&u.username),
                        u.distinct_ips.to_string(),
                        u.distinct_asns.to_string(),
                    ]
                })
                .collect(),
            numeric: vec![true, true, true, false, true, true],
            optional: vec![false, true, false, false, false, true],
            kind: Kind::Usernames,
        },
        Table {
            title:
                "Logins from a country or AS new for the username (not seen in the 30 days before)"
                    .into(),
            headers: vec!["time", "username", "address", "country", "AS", "new"],
            rows: s
                .new_origins
                .iter()
                .map(|n| {
                    vec![
                        shown_time(&n.time),
                        shown_username(&n.username),
                        n.ip.clone(),
                        dash(&n.country),
                        as_words(n.asn, &n.as_org),
                        n.new.clone(),
                    ]
                })
                .collect(),
            numeric: vec![false; 6],
            optional: vec![false, false, false, false, true, false],
            kind: Kind::Other,
        },
        Table {
            title: "Distributed brute force: usernames tried from the most addresses".into(),
            headers: vec![
                "addresses",
                "ASNs",
                "attempts",
                "previous",
                "change",
                "username",
            ],
            rows: s
                .distributed
                .iter()
                .map(|u| {
                    vec![
                        u.distinct_ips.to_string(),
                        u.distinct_asns.to_string(),
                        u.count.to_string(),
                        u.previous.to_string(),
                        change(u.count, u.previous),
                        shown_username(&u.username),
                    ]
                })
                .collect(),
            numeric: vec![true, true, true, true, true, false],
            optional: vec![false, true, false, true, true, false],
            kind: Kind::Other,
        },
    ];
    out.push(counts("Top countries", "country", &s.top_countries));
    out.push(Table {
        title: "Top autonomous systems".into(),
        headers: vec!["attempts", "previous", "change", "AS"],
        rows: s
            .top_asns
            .iter()
            .map(|a| {
                vec![
                    a.count.to_string(),
                    a.previous.to_string(),
                    change(a.count, a.previous),
                    as_words(Some(a.asn), &a.org),
                ]
            })
            .collect(),
        numeric: vec![true, true, true, false],
        optional: vec![false, true, false, false],
        kind: Kind::Other,
    });
    out.push(counts(
        "Top client hosts (names confirmed by a forward lookup)",
        "host",
        &s.top_hosts,
    ));
    out.push(counts(
        "Unconfirmed reverse DNS names (they do not resolve back: claims, possibly spoofed)",
        "name claimed",
        &s.unconfirmed_names,
    ));
    if s.servers.len() > 1 {
        out.push(counts("Servers", "server", &s.servers));
    }
    out.push(Table {
        title: "IPv6 attackers by /64".into(),
        headers: vec!["attempts", "addresses", "prefix"],
        rows: s
            .ipv6_prefixes
            .iter()
            .map(|p| {
                vec![
                    p.count.to_string(),
                    p.addresses.to_string(),
                    p.prefix.clone(),
                ]
            })
            .collect(),
        numeric: vec![true, true, false],
        optional: vec![false; 3],
        kind: Kind::Other,
    });
    out.push(counts(
        "New addresses (not seen in the previous period), busiest first",
        "address",
        &s.new_ip_sample,
    ));
    out.push(counts(
        "Existing usernames attacked (Dovecot said: wrong password; needs auth_verbose = yes)",
        "username",
        &s.known_usernames,
    ));
    out.push(counts("Reverse DNS outcome", "status", &s.dns_status));
    out.push(counts(
        "Auth-backend failures: Dovecot/saslauthd could not check logins, or a relay refused this server's login",
        "reason",
        &s.backend_reasons,
    ));
    out.push(counts("Mechanisms", "mechanism", &s.mechanisms));
    out.push(counts("Services", "service", &s.services));
    let with_day = hours_need_day(s);
    out.push(Table {
        title: "Failed logins per hour".into(),
        headers: vec!["hour", "attempts"],
        rows: s
            .per_hour
            .iter()
            .filter(|h| h.count > 0)
            .map(|h| vec![hour_label(h.ts, with_day), h.count.to_string()])
            .collect(),
        numeric: vec![false, true],
        optional: vec![false; 2],
        kind: Kind::Hours,
    });
    out
}

/// Longest text cell on a terminal, in display columns (longer values end with `…`).
pub const CELL_COLUMNS: usize = 40;

/// The same in the short report, which also leaves out the optional columns: its lines stay
/// within about 100 columns.
pub const SHORT_CELL_COLUMNS: usize = 36;

/// Lines of the short terminal report at most.
pub const SHORT_LINES: usize = 50;

/// The mark of a reverse DNS name that does not resolve back.
const UNCONFIRMED: &str = " (unconfirmed)";

/// Display width of `s` in terminal columns (a CJK character or an emoji is two).
pub fn columns(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `s` cut to at most `max` display columns, the cut marked with `…`.
pub fn fit(s: &str, max: usize) -> String {
    if columns(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > max.saturating_sub(1) {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// Like [`fit`], but an `(unconfirmed)` mark at the end is kept whole: the name is cut, never
/// the warning.
fn fit_cell(s: &str, max: usize) -> String {
    match s.strip_suffix(UNCONFIRMED) {
        Some(name) if columns(s) > max => {
            fit(name, max.saturating_sub(UNCONFIRMED.len())) + UNCONFIRMED
        }
        _ => fit(s, max),
    }
}

/// How a table is shown on a terminal.
#[derive(Clone, Copy)]
struct TextStyle<'a> {
    /// Rows at most (a line says how many more there are).
    limit: usize,
    /// Longest text cell.
    cell: usize,
    /// Whether the optional columns are left out.
    narrow: bool,
    /// Bold on and off (empty without colour).
    bold: (&'a str, &'a str),
}

/// Terminal width the short report is made for (its tables fit; a longer verdict wraps).
const SCREEN_COLUMNS: usize = 100;

/// Lines `text` takes on a [`SCREEN_COLUMNS`]-wide terminal.
fn screen_lines(text: &str) -> usize {
    text.lines()
        .map(|l| columns(l).div_ceil(SCREEN_COLUMNS).max(1))
        .sum()
}

/// Lines a table takes on a terminal with `limit` rows shown.
fn table_lines(t: &Table, limit: usize) -> usize {
    if t.rows.is_empty() {
        return 3;
    }
    3 + t.rows.len().min(limit) + usize::from(t.rows.len() > limit)
}

/// One table as aligned text.
fn text_table(t: &Table, style: TextStyle<'_>, out: &mut String) {
    let (b, r) = style.bold;
    out.push('\n');
    out.push_str(&format!("{b}{}{r}\n", t.title));
    if t.rows.is_empty() {
        out.push_str("  (none)\n");
        return;
    }
    let shown: Vec<usize> = (0..t.headers.len())
        .filter(|i| !(style.narrow && t.optional[*i]))
        .collect();
    let cells: Vec<Vec<String>> = t
        .rows
        .iter()
        .take(style.limit)
        .map(|row| {
            shown
                .iter()
                .map(|&i| {
                    let c = printable(&row[i]);
                    // Numbers and the overview's own labels whole; values cut.
                    if t.numeric[i] || t.kind == Kind::Overview {
                        c
                    } else {
                        fit_cell(&c, style.cell)
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = shown
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            cells
                .iter()
                .map(|row| columns(&row[k]))
                .chain(std::iter::once(t.headers[i].len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String]| {
        let mut l = String::from(" ");
        for (k, c) in row.iter().enumerate() {
            let pad = widths[k].saturating_sub(columns(c));
            l.push(' ');
            if t.numeric[shown[k]] {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                if k + 1 < row.len() {
                    l.push_str(&" ".repeat(pad));
                }
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let headers: Vec<String> = shown.iter().map(|&i| t.headers[i].to_string()).collect();
    out.push_str(&line(&headers));
    for row in &cells {
        out.push_str(&line(row));
    }
    if t.rows.len() > style.limit {
        out.push_str(&format!(
            "  ... {} more (--full)\n",
            t.rows.len() - style.limit
        ));
    }
}

/// The hours (or days) as one line of block characters, with the peak: the chart of the
/// terminal report.
fn sparkline(s: &Summary) -> Option<String> {
    let buckets = super::chart::buckets(s);
    let max = buckets.iter().map(|b| b.count).max().filter(|m| *m > 0)?;
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let line: String = buckets
        .iter()
        .map(|b| match b.count {
            0 => ' ',
            n => BARS[((n * 7).div_ceil(max)) as usize],
        })
        .collect();
    let peak = buckets.iter().find(|b| b.count == max)?;
    Some(format!(
        "  |{}|  peak {max} at {} ({})",
        fit(&line, 72),
        peak.label_long,
        if buckets.first().is_some_and(|b| b.daily) {
            "per day"
        } else {
            "per hour"
        }
    ))
}

/// Rows of the top addresses and usernames in the short report: as many as fit in
/// [`SHORT_LINES`] beside the rest (`used` lines), at most 10 and 5, at least 3 each.
fn short_rows(addresses: &Table, usernames: &Table, used: usize) -> (usize, usize) {
    let (mut a, mut u) = (10, 5);
    while used + table_lines(addresses, a) + table_lines(usernames, u) > SHORT_LINES {
        if a > 5 {
            a -= 1;
        } else if u > 3 {
            u -= 1;
        } else if a > 3 {
            a -= 1;
        } else {
            break;
        }
    }
    (a, u)
}

/// The terminal rendering: the verdict and the overview first. `full`: every table, row and
/// column; otherwise the report fits a 50-line terminal ([`SHORT_LINES`]): the overview, who
/// logged in after failing, the top addresses and usernames (as many as fit), the window as
/// one line, without the optional columns. `colour` adds bold headings (use it only on a
/// TTY).
pub fn text(s: &Summary, colour: bool, full: bool) -> String {
    let bold = if colour {
        ("\x1b[1m", "\x1b[0m")
    } else {
        ("", "")
    };
    let (b, r) = bold;
    let mut out = format!("{b}{}{r}\n", printable(&s.verdict));
    out.push_str(&format!(
        "maillogsentinel report, {}{}; {} record: {} bytes\n",
        window_words(s),
        s.server
            .as_ref()
            .map_or(String::new(), |n| format!(", server {} only", printable(n))),
        record_name(s),
        s.record_bytes
    ));
    let all = tables(s);
    if full {
        for t in &all {
            let style = TextStyle {
                limit: usize::MAX,
                cell: CELL_COLUMNS,
                narrow: false,
                bold,
            };
            text_table(t, style, &mut out);
        }
    } else {
        let short = |limit: usize| TextStyle {
            limit,
            cell: SHORT_CELL_COLUMNS,
            narrow: true,
            bold,
        };
        let find = |k: Kind| all.iter().find(|t| t.kind == k);
        let compromise = find(Kind::Compromise).filter(|t| !t.rows.is_empty());
        let left = all
            .iter()
            .filter(|t| t.kind == Kind::Other && !t.rows.is_empty())
            .count();
        let chart = sparkline(s);
        // Who logged in after failing is news only when someone did.
        if let Some(t) = compromise {
            text_table(t, short(5), &mut out);
        }
        if let Some(t) = find(Kind::Overview) {
            text_table(t, short(usize::MAX), &mut out);
        }
        let tail = chart.as_ref().map_or(0, |_| 3) + if left > 0 { 2 } else { 0 } + 2;
        if let (Some(a), Some(u)) = (find(Kind::Addresses), find(Kind::Usernames)) {
            let (na, nu) = short_rows(a, u, screen_lines(&out) + tail);
            text_table(a, short(na), &mut out);
            text_table(u, short(nu), &mut out);
        }
        if let Some(line) = chart {
            out.push_str(&format!("\n{b}Failed logins over the window{r}\n{line}\n"));
        }
        if left > 0 {
            out.push_str(&format!(
                "\n{left} more tables (countries, AS, hosts, ...): maillogsentinel report --full\n"
            ));
        }
    }
    out.push_str("\nIP geolocation by DB-IP (https://db-ip.com), where the country and AS columns come from DB-IP Lite.\n");
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push_str(&format!("&#x{:x};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Where the HTML finds the chart.
pub enum ChartSrc<'a> {
    /// The mail's inline part `cid:chart`.
    Cid,
    /// The PNG itself, as a `data:` URI (`--format html`: a file that stands alone).
    Png(&'a [u8]),
}

/// The chart as the HTML shows it.
pub struct ChartImage<'a> {
    /// Where it is.
    pub src: ChartSrc<'a>,
    /// Its size in pixels (set in the `<img>` tag, so that the layout does not move when it
    /// loads, and so that a client blocking images keeps the space and shows the alt text).
    pub size: (u32, u32),
    /// What it shows, in words (the alt text).
    pub alt: String,
}

/// The widest the report gets, CSS pixels.
const MAX_WIDTH: u32 = 760;

/// The style sheet: media queries cannot be inline; everything else is also inline on the
/// elements, for mail clients that drop `<style>`.
const STYLE: &str = "body{margin:0;padding:0;background:#fff}\
.w{max-width:760px;margin:0 auto;padding:12px}\
table{border-collapse:collapse;width:100%}\
td,th{padding:3px 6px;vertical-align:top}\
img{max-width:100%;height:auto}\
@media (max-width:600px){.opt{display:none}.w{padding:8px}td,th{padding:2px 4px}}";

/// Columns of free text (attacker text among it): they may break anywhere, so that a
/// 200-character name wraps instead of widening the page. Other columns break only at
/// spaces and inside IPv6 addresses, numbers not at all.
const FREE_TEXT: [&str; 9] = [
    "",
    "reverse DNS",
    "username",
    "AS",
    "host",
    "name claimed",
    "reason",
    "mechanism",
    "service",
];

/// A cell's text for HTML: escaped, with a break opportunity (`<wbr>`) after each `:` and
/// `/` (an IPv6 address or prefix is 39 characters without a space).
fn html_breakable(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        out.push_str(&html_escape(c.encode_utf8(&mut [0; 4])));
        if matches!(c, ':' | '/') {
            out.push_str("<wbr>");
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The HTML rendering, for the mail (chart as `cid:chart`) and for `--format html` (chart
/// inline), so that both are the same report. One column, at most 760 px wide, usable at
/// 390 px (columns marked optional are hidden under 600 px), with images blocked (the alt
/// text says what the chart shows), without any external resource.
pub fn html(s: &Summary, chart: Option<ChartImage<'_>>) -> String {
    let mut out = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light\">",
    );
    out.push_str(&format!(
        "<title>{}</title><style>{STYLE}</style></head>",
        html_escape(&s.verdict)
    ));
    out.push_str(&format!(
        "<body style=\"margin:0;padding:0;font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;font-size:14px;line-height:1.4;color:#222;background:#fff\">\
         <div class=\"w\" style=\"max-width:{MAX_WIDTH}px;margin:0 auto;padding:12px\">"
    ));
    out.push_str(&format!(
        "<p id=\"verdict\" style=\"font-size:17px;font-weight:bold;margin:0 0 6px 0\">{}</p>",
        html_escape(&s.verdict)
    ));
    out.push_str(&format!(
        "<p style=\"color:#555;margin:0 0 12px 0\">maillogsentinel report, {}{}<br>{} record: {} bytes</p>",
        html_escape(&window_words(s)),
        s.server
            .as_ref()
            .map_or(String::new(), |n| format!(", server {} only", html_escape(n))),
        html_escape(record_name(s)),
        s.record_bytes
    ));
    if let Some(c) = chart {
        let src = match c.src {
            ChartSrc::Cid => "cid:chart".to_string(),
            ChartSrc::Png(png) => format!("data:image/png;base64,{}", base64(png)),
        };
        out.push_str(&format!(
            "<img id=\"chart\" src=\"{src}\" width=\"{w}\" height=\"{h}\" alt=\"{alt}\" \
             style=\"display:block;width:100%;max-width:{w}px;height:auto;border:0;margin:0 0 8px 0\">",
            w = c.size.0,
            h = c.size.1,
            alt = html_escape(&c.alt)
        ));
    }
    for t in tables(s) {
        html_table(&t, &mut out);
    }
    out.push_str("<p style=\"color:#777;font-size:12px\">IP geolocation by <a href=\"https://db-ip.com\">DB-IP</a>, where the country and AS columns come from DB-IP Lite.</p></div></body></html>");
    out
}

fn html_table(t: &Table, out: &mut String) {
    out.push_str(&format!(
        "<h2 style=\"font-size:15px;margin:16px 0 4px 0\">{}</h2>",
        html_escape(&t.title)
    ));
    if t.rows.is_empty() {
        out.push_str("<p style=\"margin:0;color:#555\">(none)</p>");
        return;
    }
    let cell = "padding:3px 6px;vertical-align:top";
    let class = |i: usize| if t.optional[i] { " class=\"opt\"" } else { "" };
    let wrap = |i: usize| {
        if t.numeric[i] {
            ";white-space:nowrap"
        } else if FREE_TEXT.contains(&t.headers[i]) {
            ";overflow-wrap:anywhere"
        } else {
            ""
        }
    };
    out.push_str("<table style=\"border-collapse:collapse;width:100%\"><tr>");
    for (i, h) in t.headers.iter().enumerate() {
        let align = if t.numeric[i] { "right" } else { "left" };
        out.push_str(&format!(
            "<th{} style=\"text-align:{align};border-bottom:1px solid #999;{cell};white-space:nowrap\">{}</th>",
            class(i),
            html_escape(h)
        ));
    }
    out.push_str("</tr>");
    for (n, row) in t.rows.iter().enumerate() {
        let shade = if n % 2 == 1 {
            ";background:#f4f6f8"
        } else {
            ""
        };
        out.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let align = if t.numeric[i] { "right" } else { "left" };
            let text = if t.numeric[i] || FREE_TEXT.contains(&t.headers[i]) {
                html_escape(c)
            } else {
                html_breakable(c)
            };
            out.push_str(&format!(
                "<td{} style=\"text-align:{align};{cell}{}{shade}\">{text}</td>",
                class(i),
                wrap(i)
            ));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// The JSON rendering (docs/report-json.md).
pub fn json(s: &Summary) -> String {
    serde_json::to_string_pretty(s).expect("a summary always serialises") + "\n"
}

/// The store's name for the record-size line (`CSV` for summaries that do not say).
fn record_name(s: &Summary) -> &str {
    if s.record.is_empty() {
        "CSV"
    } else {
        &s.record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::{HourCount, UserLine};

    fn hostile() -> Summary {
        Summary {
            top_usernames: vec![UserLine {
                username: "<script>alert(1)</script>\r\nBcc: x@example.org".into(),
                count: 3,
                previous: 1,
                distinct_ips: 2,
                distinct_asns: 1,
            }],
            ..Summary::default()
        }
    }

    /// A day with two addresses claiming big names, one confirmed.
    fn day() -> Summary {
        let from = 1_795_302_000; // 2026-11-22 00:00 +01:00
        Summary {
            from_ts: from,
            to_ts: from + 86_400,
            totals: Totals {
                attempts: 297,
                distinct_ips: 40,
                distinct_usernames: 12,
            },
            previous: Totals {
                attempts: 265,
                distinct_ips: 30,
                distinct_usernames: 10,
            },
            new_ips: 31,
            servers: vec![Count {
                key: "mx1.example.org".into(),
                count: 297,
                previous: None,
            }],
            top_ips: vec![
                IpLine {
                    ip: "192.0.2.7".into(),
                    count: 60,
                    reverse_dns: "smtp.office365.com".into(),
                    dns_status: "mismatch".into(),
                    ..IpLine::default()
                },
                IpLine {
                    ip: "198.51.100.9".into(),
                    count: 50,
                    reverse_dns: "host.example.net".into(),
                    dns_status: "ok".into(),
                    ..IpLine::default()
                },
            ],
            per_hour: (0..24)
                .map(|h| HourCount {
                    start: String::new(),
                    ts: from + h * 3600,
                    count: (h as u64 * 7) % 23,
                })
                .collect(),
            logins_watched: true,
            backend_watched: true,
            ..Summary::default()
        }
    }

    #[test]
    fn html_escapes_attacker_text() {
        let h = html(&hostile(), None);
        assert!(!h.contains("<script>"), "{h}");
        assert!(
            h.contains("&lt;script&gt;alert(1)&lt;/script&gt;&#xd;&#xa;Bcc: x@example.org"),
            "{h}"
        );
    }

    #[test]
    fn text_shows_control_characters_escaped() {
        let t = text(&hostile(), false, true);
        assert!(!t.contains('\r'), "{t:?}");
        // Escaped, then cut to the cell's width.
        assert!(
            t.contains("<script>alert(1)</script>\\u{d}\\u{a}Bcc:…"),
            "{t}"
        );
        assert!(!t.contains('\x1b'));
        assert!(text(&hostile(), true, true).contains("\x1b[1m"));
    }

    #[test]
    fn periods_in_words() {
        assert_eq!(
            [
                86_400,
                7 * 86_400,
                1_021_260,
                3 * 3600,
                4 * 3600 + 1800,
                5400,
                59
            ]
            .map(period_words),
            [
                "24 h",
                "7 days",
                "11.8 days",
                "3 h",
                "4.5 h",
                "90 min",
                "59 s"
            ]
        );
    }

    #[test]
    fn change_column() {
        assert_eq!(change(0, 0), "-");
        assert_eq!(change(5, 0), "new");
        assert_eq!(change(150, 100), "+50%");
        assert_eq!(change(50, 100), "-50%");
    }

    #[test]
    fn the_verdict_names_the_server_and_says_what_changed() {
        let mut s = day();
        assert_eq!(
            verdict(&s, "mx1.example.org"),
            "mx1.example.org: 297 failed logins (+12% on the previous 24 h) from 40 addresses \
             (31 new); no login after failures; no auth-backend outage"
        );
        s.servers.push(Count {
            key: "mx2.example.org\r\nBcc: x".into(),
            ..Count::default()
        });
        s.bans = Some(BanCounts {
            applied: 2,
            logged: 0,
            failed: 1,
        });
        s.backend_failures = 3;
        s.logins_watched = false;
        let v = verdict(&s, "this-host");
        assert!(
            v.starts_with("mx1.example.org and mx2.example.org??Bcc??x: "),
            "a server name is host-name characters only: {v}"
        );
        assert!(
            v.ends_with("; 2 bans (1 FAILED); auth backend failed 3 times on this-host"),
            "{v}"
        );
        assert!(!v.contains("login after"), "logins are not watched: {v}");
        let quiet = Summary {
            from_ts: 0,
            to_ts: 7 * 86_400,
            ..Summary::default()
        };
        assert_eq!(
            verdict(&quiet, "mx9"),
            "mx9: no failed logins (0 in the previous 7 days)",
            "the backend record was not read: no word on it"
        );
    }

    #[test]
    fn unconfirmed_names_are_marked_in_text_and_html() {
        let s = day();
        for out in [text(&s, false, false), html(&s, None)] {
            assert!(out.contains("smtp.office365.com (unconfirmed)"), "{out}");
            assert!(out.contains("host.example.net"));
            assert!(!out.contains("host.example.net (unconfirmed)"));
        }
    }

    #[test]
    fn widths_are_terminal_columns_and_long_values_are_cut() {
        assert_eq!(columns("abc"), 3);
        assert_eq!(columns("管理者"), 6, "CJK takes two columns");
        assert_eq!(columns("🔥x"), 3, "so does an emoji");
        assert_eq!(fit("short", 10), "short");
        let cut = fit(&"管".repeat(30), 11);
        assert_eq!((cut.as_str(), columns(&cut)), ("管管管管管…", 11));
        let mut s = day();
        s.top_usernames = vec![
            UserLine {
                username: "管理者".into(),
                count: 9,
                ..UserLine::default()
            },
            UserLine {
                username: "x".repeat(300),
                count: 8,
                ..UserLine::default()
            },
        ];
        for (full, cut) in [(true, CELL_COLUMNS), (false, SHORT_CELL_COLUMNS)] {
            let t = text(&s, false, full);
            let rows: Vec<&str> = t
                .lines()
                .skip_while(|l| *l != "Top usernames")
                .skip(2)
                .take(2)
                .collect();
            // The columns after the username line up whatever its script.
            assert_eq!(columns(rows[0]), columns(rows[1]), "{t}");
            assert!(
                rows[1].contains(&format!("{}…", "x".repeat(cut - 1))),
                "{t}"
            );
            assert!(t.lines().all(|l| columns(l) < 120), "{t}");
        }
    }

    #[test]
    fn a_long_spoofed_name_is_cut_but_keeps_its_mark() {
        let mut s = day();
        s.top_ips[0].reverse_dns = "mail-eopbgr1300098.outbound.protection.outlook.com".into();
        for full in [false, true] {
            let t = text(&s, false, full);
            let line = t.lines().find(|l| l.contains("192.0.2.7")).unwrap();
            assert!(
                line.contains("mail-eopbgr1300098.") && line.contains("… (unconfirmed)"),
                "{line}"
            );
        }
        assert_eq!(
            fit_cell("short.example (unconfirmed)", 40),
            "short.example (unconfirmed)"
        );
        assert_eq!(fit_cell("a-very-long-name.example.net", 10), "a-very-lo…");
        // A name with no status (an import's) is not taken for confirmed either.
        s.top_ips[0].dns_status = String::new();
        assert!(text(&s, false, false).contains(" (unconfirmed)"));
    }

    #[test]
    fn the_short_report_fits_fifty_lines_in_the_worst_case() {
        use crate::report::summary::LoginAfterFailures;
        let mut s = day();
        s.logins_after_failures = (0..9)
            .map(|i| LoginAfterFailures {
                time: "2026-11-22T08:00:00+01:00".into(),
                ip: format!("2001:db8:4a3f:{i:x}:1c2d:3e4f:5a6b:7c8d"),
                username: format!("user{i}@example.org"),
                signals: "address+username+network".into(),
                address_failures: 4,
                ..LoginAfterFailures::default()
            })
            .collect();
        s.bans = Some(BanCounts {
            applied: 3,
            logged: 2,
            failed: 1,
        });
        s.backend_failures = 2;
        s.known_user_attempts = 5;
        s.unknown_user_attempts = 6;
        s.top_ips = (0..10)
            .map(|i| IpLine {
                ip: format!("2001:db8:4a3f:{i:x}:1c2d:3e4f:5a6b:7c8d"),
                count: 20 - i,
                reverse_dns: "x".repeat(80),
                dns_status: "mismatch".into(),
                country: "DE".into(),
                asn: Some(3320),
                as_org: "y".repeat(80),
                ..IpLine::default()
            })
            .collect();
        s.top_usernames = (0..10)
            .map(|i| UserLine {
                username: format!("{i}{}", "名".repeat(60)),
                count: 10 - i,
                ..UserLine::default()
            })
            .collect();
        s.top_countries = vec![Count::default()];
        s.verdict = verdict(&s, "mx1.example.org");
        let t = text(&s, false, false);
        // On a 100-column terminal (the verdict and the window's line may wrap).
        assert!(
            screen_lines(&t) <= SHORT_LINES,
            "{} lines:\n{t}",
            screen_lines(&t)
        );
        assert!(t.lines().skip(2).all(|l| columns(l) <= 100), "{t}");
        // What did not fit is said, not dropped silently.
        assert!(t.contains("... 4 more (--full)"), "{t}");
        assert!(t.contains("Top addresses") && t.contains("Top usernames"));
    }

    #[test]
    fn the_short_terminal_report_fits_fifty_lines_and_says_what_is_left_out() {
        let mut s = day();
        s.top_ips = (0..10)
            .map(|i| IpLine {
                ip: format!("192.0.2.{i}"),
                count: 10 - i,
                ..IpLine::default()
            })
            .collect();
        s.top_usernames = (0..10)
            .map(|i| UserLine {
                username: format!("user{i}"),
                count: 10 - i,
                ..UserLine::default()
            })
            .collect();
        s.top_countries = vec![Count {
            key: "FR".into(),
            count: 3,
            previous: Some(1),
        }];
        s.bans = Some(BanCounts::default());
        s.known_user_attempts = 4;
        s.verdict = verdict(&s, "mx1");
        let short = text(&s, false, false);
        let lines: Vec<&str> = short.lines().collect();
        assert!(lines.len() <= 50, "{} lines:\n{short}", lines.len());
        assert_eq!(lines[0], s.verdict);
        assert_eq!(lines[3], "Overview", "{short}");
        assert!(short.contains("... 5 more (--full)"), "{short}");
        assert!(short.contains("1 more tables"), "{short}");
        assert!(short.contains("peak 22 at "), "{short}");
        let full = text(&s, false, true);
        assert!(full.lines().count() > lines.len());
        assert!(full.contains("Top countries") && !short.contains("Top countries"));
    }

    #[test]
    fn hours_are_labelled_like_pflogsumm() {
        // Labels are in the local zone: compare with chrono's own reading of the same time.
        let t = 1_795_330_800; // 2026-11-22T07:00:00Z
        let l = Local.timestamp_opt(t, 0).unwrap();
        let want = format!(
            "{}-{}",
            l.format("%H:%M"),
            (l + chrono::Duration::hours(1)).format("%H:%M")
        );
        assert_eq!(hour_label(t, false), want);
        assert_eq!(hour_label(t, true), format!("{} {want}", l.format("%m-%d")));
        assert_eq!(want.len(), "08:00-09:00".len());
    }
}
