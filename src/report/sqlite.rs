//! Reports over the SQLite store: the same [`Summary`] as from the CSV, counted by the database
//! (GROUP BY over the window's rows, found through the `ts` index), so that only the top lines
//! and the totals leave it, not the rows.
//!
//! Ties in the top tables are broken as the CSV's aggregator breaks them: addresses in numeric
//! order (through `ip_key`), texts in byte order, so both stores give the same report.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};

use super::summary::{self, Count, IpLine, NewOrigin, PrefixLine, Summary, Totals, UserLine};
use super::{ORIGIN_HISTORY_SECS, ReportError, Window};

/// Opens the database for reading (never creating it: a report on a database that does not
/// exist is an error naming it).
pub fn open(path: &Path) -> Result<Connection, ReportError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| read_err(path, &e))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| read_err(path, &e))?;
    Ok(conn)
}

fn read_err(path: &Path, e: &dyn std::fmt::Display) -> ReportError {
    ReportError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The window's condition on `ts`, with `?1` and `?2` its ends.
const IN_WINDOW: &str = "ts >= ?1 AND ts < ?2";

/// Runs a query returning (key, count) pairs for the window `w`.
fn counts(conn: &Connection, sql: &str, w: Window) -> rusqlite::Result<Vec<Count>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![w.from, w.to], |r| {
        Ok(Count {
            key: r.get(0)?,
            count: r.get::<_, i64>(1)? as u64,
            previous: None,
        })
    })?;
    rows.collect()
}

/// A top table of `column`'s values (non-empty ones) in the window: most first, ties by value.
fn top(
    conn: &Connection,
    table: &str,
    column: &str,
    w: Window,
    n: usize,
) -> rusqlite::Result<Vec<Count>> {
    counts(
        conn,
        &format!(
            "SELECT {column} AS k, COUNT(*) AS c FROM {table} WHERE {IN_WINDOW} AND k != '' GROUP BY k ORDER BY c DESC, k LIMIT {n}"
        ),
        w,
    )
}

fn totals(conn: &Connection, w: Window) -> rusqlite::Result<Totals> {
    conn.query_row(
        &format!(
            "SELECT COUNT(*), COUNT(DISTINCT ip), COUNT(DISTINCT username) FROM events WHERE {IN_WINDOW}"
        ),
        params![w.from, w.to],
        |r| {
            Ok(Totals {
                attempts: r.get::<_, i64>(0)? as u64,
                distinct_ips: r.get::<_, i64>(1)? as u64,
                distinct_usernames: r.get::<_, i64>(2)? as u64,
            })
        },
    )
}

/// Builds the summary of `w` (with the previous window beside it) from the database.
pub fn summary(conn: &Connection, path: &Path, w: Window) -> Result<Summary, ReportError> {
    summary_inner(conn, path, w).map_err(|e| read_err(path, &e))
}

fn summary_inner(conn: &Connection, path: &Path, w: Window) -> rusqlite::Result<Summary> {
    let prev = w.previous();
    let rfc = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| {
                d.with_timezone(&chrono::Local)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            })
            .unwrap_or_default()
    };
    let mut s = Summary {
        from: rfc(w.from),
        to: rfc(w.to),
        totals: totals(conn, w)?,
        previous: totals(conn, prev)?,
        csv_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        ..Summary::default()
    };
    // Top addresses, with what the first row that had it said of each.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT ip, COUNT(*) AS c, MIN(ip_key) AS k FROM events WHERE {IN_WINDOW} GROUP BY ip ORDER BY c DESC, k LIMIT {}",
        summary::TOP
    ))?;
    let top_ips: Vec<(String, u64)> = stmt
        .query_map(params![w.from, w.to], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<Result<_, _>>()?;
    let first = |column: &str, ip: &str| -> rusqlite::Result<String> {
        conn.prepare_cached(&format!(
            "SELECT {column} FROM events WHERE ip = ?3 AND {IN_WINDOW} AND {column} != '' ORDER BY id LIMIT 1"
        ))?
        .query_row(params![w.from, w.to, ip], |r| r.get(0))
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(String::new()),
            e => Err(e),
        })
    };
    for (ip, count) in top_ips {
        let (asn, as_org) = conn
            .prepare_cached(&format!(
                "SELECT asn, as_org FROM events WHERE ip = ?3 AND {IN_WINDOW} AND asn IS NOT NULL ORDER BY id LIMIT 1"
            ))?
            .query_row(params![w.from, w.to, ip], |r| {
                Ok((r.get::<_, i64>(0)?.to_string(), r.get::<_, String>(1)?))
            })
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok((String::new(), String::new())),
                e => Err(e),
            })?;
        s.top_ips.push(IpLine {
            previous: count_in(conn, "ip", &ip, prev)?,
            reverse_dns: first("reverse_dns", &ip)?,
            country: first("country", &ip)?,
            asn,
            as_org,
            ip,
            count,
        });
    }
    // Usernames: the most tried, and the most widely tried (distributed attacks).
    let users = |order: &str, having: &str| -> rusqlite::Result<Vec<UserLine>> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT username, COUNT(*) AS c, COUNT(DISTINCT ip) AS i, COUNT(DISTINCT asn) AS a FROM events WHERE {IN_WINDOW} GROUP BY username {having} ORDER BY {order}, username LIMIT {}",
            summary::TOP
        ))?;
        stmt.query_map(params![w.from, w.to], |r| {
            Ok(UserLine {
                username: r.get(0)?,
                count: r.get::<_, i64>(1)? as u64,
                previous: 0,
                distinct_ips: r.get::<_, i64>(2)? as u64,
                distinct_asns: r.get::<_, i64>(3)? as u64,
            })
        })?
        .collect()
    };
    s.top_usernames = users("c DESC", "")?;
    for u in &mut s.top_usernames {
        u.previous = count_in(conn, "username", &u.username, prev)?;
    }
    s.distributed = users("i DESC, a DESC", "HAVING i > 1")?;
    s.top_countries = top(conn, "events", "country", w, summary::TOP)?;
    for c in &mut s.top_countries {
        c.previous = Some(count_in(conn, "country", &c.key, prev)?);
    }
    // Autonomous systems, named as first seen (there are few: sorted here by their label).
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT asn, COUNT(*), (SELECT as_org FROM events e2 WHERE e2.asn = e.asn AND e2.ts >= ?1 AND e2.ts < ?2 ORDER BY e2.id LIMIT 1) FROM events e WHERE {IN_WINDOW} AND asn IS NOT NULL GROUP BY asn"
    ))?;
    let mut asns: Vec<(i64, Count)> = stmt
        .query_map(params![w.from, w.to], |r| {
            let n: i64 = r.get(0)?;
            let org: String = r.get(2)?;
            Ok((
                n,
                Count {
                    key: format!("AS{n} {org}").trim_end().to_string(),
                    count: r.get::<_, i64>(1)? as u64,
                    previous: None,
                },
            ))
        })?
        .collect::<Result<_, _>>()?;
    asns.sort_by(|(_, a), (_, b)| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    asns.truncate(summary::TOP);
    for (n, mut c) in asns {
        c.previous = Some(count_in(conn, "asn", &n.to_string(), prev)?);
        s.top_asns.push(c);
    }
    s.top_hosts = top(
        conn,
        "events",
        "CASE WHEN reverse_dns != '' THEN reverse_dns ELSE client_hostname END",
        w,
        summary::TOP,
    )?;
    s.ipv6_prefixes = ipv6_prefixes(conn, w)?;
    // Every hour of the window, also those without attempts.
    let hours = per_hour_numeric(conn, w)?;
    let first_hour = w.from.div_euclid(3600) * 3600;
    s.per_hour = (0..)
        .map(|i| first_hour + i * 3600)
        .take_while(|h| *h < w.to)
        .take(24 * 366)
        .map(|h| Count {
            key: rfc(h),
            count: hours.get(&h).copied().unwrap_or(0),
            previous: None,
        })
        .collect();
    // Addresses not seen in the previous window.
    let new_ips = format!(
        "FROM events WHERE {IN_WINDOW} AND ip NOT IN (SELECT ip FROM events WHERE ts >= ?3 AND ts < ?4) GROUP BY ip"
    );
    s.new_ips = conn.query_row(
        &format!("SELECT COUNT(*) FROM (SELECT ip {new_ips})"),
        params![w.from, w.to, prev.from, prev.to],
        |r| r.get::<_, i64>(0),
    )? as u64;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT ip, COUNT(*) AS c {new_ips} ORDER BY c DESC, ip LIMIT 20"
    ))?;
    s.new_ip_sample = stmt
        .query_map(params![w.from, w.to, prev.from, prev.to], |r| {
            Ok(Count {
                key: r.get(0)?,
                count: r.get::<_, i64>(1)? as u64,
                previous: None,
            })
        })?
        .collect::<Result<_, _>>()?;
    s.dns_status = top(
        conn,
        "events",
        "CASE WHEN dns_status = '' THEN '(not enriched)' ELSE dns_status END",
        w,
        16,
    )?;
    s.mechanisms = top(conn, "events", "mechanism", w, summary::TOP)?;
    s.services = top(conn, "events", "service", w, summary::TOP)?;
    Ok(s)
}

/// Attempts per hour (the hour's start, seconds) in the window.
fn per_hour_numeric(conn: &Connection, w: Window) -> rusqlite::Result<HashMap<i64, u64>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT ts / 3600 * 3600 AS h, COUNT(*) FROM events WHERE {IN_WINDOW} GROUP BY h"
    ))?;
    stmt.query_map(params![w.from, w.to], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
    })?
    .collect()
}

/// Attempts in `w` where `column` is `value` (through the column's index where it has one).
fn count_in(conn: &Connection, column: &str, value: &str, w: Window) -> rusqlite::Result<u64> {
    conn.prepare_cached(&format!(
        "SELECT COUNT(*) FROM events WHERE {column} = ?3 AND {IN_WINDOW}"
    ))?
    .query_row(params![w.from, w.to, value], |r| r.get::<_, i64>(0))
    .map(|n| n as u64)
}

/// IPv6 attackers grouped by /64 (the first 8 bytes after `ip_key`'s family byte), sorted
/// here by their text as the CSV's aggregator does.
fn ipv6_prefixes(conn: &Connection, w: Window) -> rusqlite::Result<Vec<PrefixLine>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT substr(ip_key, 2, 8) AS p, COUNT(*), COUNT(DISTINCT ip) FROM events WHERE {IN_WINDOW} AND substr(ip_key, 1, 1) = x'06' GROUP BY p"
    ))?;
    let mut out: Vec<PrefixLine> = stmt
        .query_map(params![w.from, w.to], |r| {
            let bytes: Vec<u8> = r.get(0)?;
            let prefix = bytes
                .iter()
                .take(8)
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            Ok(PrefixLine {
                prefix: summary::slash64_text(prefix),
                count: r.get::<_, i64>(1)? as u64,
                addresses: r.get::<_, i64>(2)? as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.prefix.cmp(&b.prefix)));
    out.truncate(summary::TOP);
    Ok(out)
}

/// The columns a report reads, in [`summary::Row`]'s terms, from `table` (`events` or
/// `logins`).
const ROW_COLUMNS: &str = "ts, service, ip, username, mechanism, client_hostname, reverse_dns, \
     dns_status, country, COALESCE(CAST(asn AS TEXT), ''), as_org";

/// Calls `on_row` for each row of `table` in `w`, oldest first.
pub fn for_each_row(
    conn: &Connection,
    path: &Path,
    table: &str,
    w: Window,
    on_row: &mut dyn FnMut(&summary::Row<'_>),
) -> Result<(), ReportError> {
    let mut run = || -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM {table} WHERE {IN_WINDOW} ORDER BY ts, id"
        ))?;
        let mut rows = stmt.query(params![w.from, w.to])?;
        while let Some(r) = rows.next()? {
            let text = |i: usize| -> rusqlite::Result<&str> {
                r.get_ref(i)?.as_str().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        i,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })
            };
            let row = summary::Row {
                ts: r.get(0)?,
                service: text(1)?,
                ip: text(2)?,
                username: text(3)?,
                mechanism: text(4)?,
                client_hostname: text(5)?,
                reverse_dns: text(6)?,
                dns_status: text(7)?,
                country: text(8)?,
                asn: text(9)?,
                as_org: text(10)?,
            };
            on_row(&row);
        }
        Ok(())
    };
    run().map_err(|e| read_err(path, &e))
}

/// The window's rows as CSV lines (the intrusion record's columns and escaping), for the
/// attachment.
pub fn rows_csv(
    conn: &Connection,
    path: &Path,
    w: Window,
    on_row: &mut dyn FnMut(&[u8]),
) -> Result<(), ReportError> {
    let mut run = || -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT timestamp, server, service, ip, username, mechanism, reason, client_hostname, reverse_dns, dns_status, country, COALESCE(CAST(asn AS TEXT), ''), as_org FROM events WHERE {IN_WINDOW} ORDER BY ts, id"
        ))?;
        let mut rows = stmt.query(params![w.from, w.to])?;
        let mut fmt = crate::sink::RowFormatter::default();
        while let Some(r) = rows.next()? {
            let mut fields: [&str; 13] = [""; 13];
            for (i, f) in fields.iter_mut().enumerate() {
                *f = r.get_ref(i)?.as_str().unwrap_or("");
            }
            fmt.clear();
            fmt.push_fields(&fields);
            on_row(fmt.bytes());
        }
        Ok(())
    };
    run().map_err(|e| read_err(path, &e))
}

/// Logins in `w` from a country or AS not seen for their username in the 30 days before.
pub fn new_origins(
    conn: &Connection,
    path: &Path,
    w: Window,
) -> Result<Vec<NewOrigin>, ReportError> {
    let before = Window {
        from: w.from - ORIGIN_HISTORY_SECS,
        to: w.from,
    };
    super::new_origins_from(
        &mut |on_row| for_each_row(conn, path, "logins", before, on_row),
        &mut |on_row| for_each_row(conn, path, "logins", w, on_row),
    )
}
