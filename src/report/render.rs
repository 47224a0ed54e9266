//! Renders a [`Summary`] for a terminal (aligned tables, colour only on a TTY), as HTML (for
//! the mail) and as JSON (for scripts). Attacker-controlled text (usernames, hostnames, AS
//! names) is escaped for each medium: control characters shown as escapes on a terminal,
//! entities in HTML.

use super::summary::{Count, Summary, Totals};
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
}

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

/// The report as tables, in reading order.
pub fn tables(s: &Summary) -> Vec<Table> {
    let t = |name: &str, f: fn(&Totals) -> u64| {
        vec![
            name.to_string(),
            f(&s.totals).to_string(),
            f(&s.previous).to_string(),
            change(f(&s.totals), f(&s.previous)),
        ]
    };
    let mut out = vec![Table {
        title: "Overview".into(),
        headers: vec!["", "this period", "previous period", "change"],
        rows: vec![
            t("failed logins", |t| t.attempts),
            t("distinct addresses", |t| t.distinct_ips),
            t("distinct usernames", |t| t.distinct_usernames),
            vec![
                "addresses not seen in the previous period".into(),
                s.new_ips.to_string(),
                String::new(),
                String::new(),
            ],
            vec![
                "auth-backend failures (server side, not attacks)".into(),
                s.backend_failures.to_string(),
                String::new(),
                String::new(),
            ],
            vec![
                "logins after failed logins (alerts)".into(),
                s.logins_after_failures.len().to_string(),
                String::new(),
                String::new(),
            ],
            vec![
                "attempts on existing usernames (Dovecot: wrong password)".into(),
                s.known_user_attempts.to_string(),
                String::new(),
                String::new(),
            ],
            vec![
                "attempts on unknown usernames (Dovecot)".into(),
                s.unknown_user_attempts.to_string(),
                String::new(),
                String::new(),
            ],
        ],
        numeric: vec![false, true, true, true],
    }];
    // First: who got in anyway.
    out.insert(
        0,
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
                        l.time.clone(),
                        l.ip.clone(),
                        shown_username(&l.username),
                        dash(&l.country),
                        dash(&l.asn),
                        l.address_failures.to_string(),
                        l.signals.clone(),
                    ]
                })
                .collect(),
            numeric: vec![false, false, false, false, false, true, false],
        },
    );
    out.push(Table {
        title: "Logins from a country or AS new for the username (not seen in the 30 days before)"
            .into(),
        headers: vec!["time", "username", "address", "country", "AS", "new"],
        rows: s
            .new_origins
            .iter()
            .map(|n| {
                vec![
                    n.time.clone(),
                    shown_username(&n.username),
                    n.ip.clone(),
                    dash(&n.country),
                    dash(&n.asn),
                    n.new.clone(),
                ]
            })
            .collect(),
        numeric: vec![false; 6],
    });
    out.push(Table {
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
                let asn = if i.asn.is_empty() {
                    dash(&i.as_org)
                } else {
                    format!("AS{} {}", i.asn, i.as_org).trim().to_string()
                };
                vec![
                    i.count.to_string(),
                    i.previous.to_string(),
                    change(i.count, i.previous),
                    i.ip.clone(),
                    dash(&i.reverse_dns),
                    dash(&i.country),
                    asn,
                ]
            })
            .collect(),
        numeric: vec![true, true, true, false, false, false, false],
    });
    out.push(Table {
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
                let name = shown_username(&u.username);
                vec![
                    u.count.to_string(),
                    u.previous.to_string(),
                    change(u.count, u.previous),
                    name,
                    u.distinct_ips.to_string(),
                    u.distinct_asns.to_string(),
                ]
            })
            .collect(),
        numeric: vec![true, true, true, false, true, true],
    });
    out.push(Table {
        title: "Distributed brute force: usernames tried from the most addresses".into(),
        headers: vec!["addresses", "ASNs", "attempts", "username"],
        rows: s
            .distributed
            .iter()
            .map(|u| {
                let name = shown_username(&u.username);
                vec![
                    u.distinct_ips.to_string(),
                    u.distinct_asns.to_string(),
                    u.count.to_string(),
                    name,
                ]
            })
            .collect(),
        numeric: vec![true, true, true, false],
    });
    out.push(counts("Top countries", "country", &s.top_countries));
    out.push(counts("Top autonomous systems", "AS", &s.top_asns));
    out.push(counts("Top client hosts", "host", &s.top_hosts));
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
    out.push(Table {
        title: "Attempts per hour".into(),
        headers: vec!["attempts", "hour"],
        rows: s
            .per_hour
            .iter()
            .filter(|c| c.count > 0)
            .map(|c| vec![c.count.to_string(), c.key.clone()])
            .collect(),
        numeric: vec![true, false],
    });
    out
}

/// The terminal rendering. `colour` adds bold headings (use it only on a TTY).
pub fn text(s: &Summary, colour: bool) -> String {
    let (b, r) = if colour {
        ("\x1b[1m", "\x1b[0m")
    } else {
        ("", "")
    };
    let mut out = format!("{b}maillogsentinel report{r}: {} to {}\n", s.from, s.to);
    if let Some(server) = &s.server {
        out.push_str(&format!("server {} only\n", printable(server)));
    }
    out.push_str(&format!(
        "{} record: {} bytes\n",
        record_name(s),
        s.csv_bytes
    ));
    for t in tables(s) {
        out.push('\n');
        out.push_str(&format!("{b}{}{r}\n", t.title));
        if t.rows.is_empty() {
            out.push_str("  (none)\n");
            continue;
        }
        let cells: Vec<Vec<String>> = t
            .rows
            .iter()
            .map(|row| row.iter().map(|c| printable(c)).collect())
            .collect();
        let widths: Vec<usize> = (0..t.headers.len())
            .map(|i| {
                cells
                    .iter()
                    .map(|row| row[i].chars().count())
                    .chain(std::iter::once(t.headers[i].len()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |row: Vec<String>| {
            let mut l = String::from(" ");
            for (i, c) in row.iter().enumerate() {
                let pad = widths[i].saturating_sub(c.chars().count());
                l.push(' ');
                if t.numeric[i] {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(c);
                } else {
                    l.push_str(c);
                    if i + 1 < row.len() {
                        l.push_str(&" ".repeat(pad));
                    }
                }
            }
            l.trim_end().to_string() + "\n"
        };
        out.push_str(&line(t.headers.iter().map(|h| h.to_string()).collect()));
        for row in cells {
            out.push_str(&line(row));
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

/// The HTML rendering, with the chart referenced as `cid:chart` when there is one.
pub fn html(s: &Summary, chart: bool) -> String {
    let mut out = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>maillogsentinel report</title></head>\
         <body style=\"font-family:sans-serif;font-size:14px;color:#222\">",
    );
    out.push_str(&format!(
        "<h1 style=\"font-size:20px\">maillogsentinel report</h1><p>{} to {}<br>{}{} record: {} bytes</p>",
        html_escape(&s.from),
        html_escape(&s.to),
        s.server
            .as_ref()
            .map_or(String::new(), |n| format!("server {} only<br>", html_escape(n))),
        html_escape(record_name(s)),
        s.csv_bytes
    ));
    if chart {
        out.push_str("<h2 style=\"font-size:16px\">Attempts per hour</h2><img src=\"cid:chart\" alt=\"attempts per hour\">");
    }
    for t in tables(s) {
        out.push_str(&format!(
            "<h2 style=\"font-size:16px\">{}</h2>",
            html_escape(&t.title)
        ));
        if t.rows.is_empty() {
            out.push_str("<p>(none)</p>");
            continue;
        }
        out.push_str("<table style=\"border-collapse:collapse\"><tr>");
        for h in &t.headers {
            out.push_str(&format!("<th style=\"text-align:left;border-bottom:1px solid #999;padding:2px 8px\">{}</th>", html_escape(h)));
        }
        out.push_str("</tr>");
        for row in &t.rows {
            out.push_str("<tr>");
            for (i, c) in row.iter().enumerate() {
                let align = if t.numeric[i] { "right" } else { "left" };
                out.push_str(&format!(
                    "<td style=\"text-align:{align};padding:2px 8px\">{}</td>",
                    html_escape(c)
                ));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
    }
    out.push_str("<p style=\"color:#777\">IP geolocation by <a href=\"https://db-ip.com\">DB-IP</a>, where the country and AS columns come from DB-IP Lite.</p></body></html>");
    out
}

/// The JSON rendering.
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
    use crate::report::summary::UserLine;

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

    #[test]
    fn html_escapes_attacker_text() {
        let h = html(&hostile(), false);
        assert!(!h.contains("<script>"), "{h}");
        assert!(
            h.contains("&lt;script&gt;alert(1)&lt;/script&gt;&#xd;&#xa;Bcc: x@example.org"),
            "{h}"
        );
    }

    #[test]
    fn text_shows_control_characters_escaped() {
        let t = text(&hostile(), false);
        assert!(!t.contains('\r'), "{t:?}");
        assert!(
            t.contains("<script>alert(1)</script>\\u{d}\\u{a}Bcc: x@example.org"),
            "{t}"
        );
        assert!(!t.contains('\x1b'));
        assert!(text(&hostile(), true).contains("\x1b[1m"));
    }

    #[test]
    fn change_column() {
        assert_eq!(change(0, 0), "-");
        assert_eq!(change(5, 0), "new");
        assert_eq!(change(150, 100), "+50%");
        assert_eq!(change(50, 100), "-50%");
    }
}
