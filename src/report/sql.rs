//! Reports over a database store (SQLite, PostgreSQL): the same [`Summary`] as from the CSV,
//! counted by the database (GROUP BY over the window's rows, found through the time index), so
//! that only the top lines and the totals leave it, not the rows. Written once against [`Db`]
//! (a query runner) and a [`Dialect`] (the few expressions the two databases spell apart).
//!
//! Ties in the top tables are broken as the CSV's aggregator breaks them: addresses in numeric
//! order (SQLite's `ip_key`, PostgreSQL's `inet`), texts in byte order, so every store gives
//! the same report.

use std::collections::HashMap;
use std::path::Path;

use super::summary::{
    self, AsLine, Count, HourCount, IpLine, NewOrigin, PrefixLine, Row, Summary, Totals, UserLine,
};
use super::{ORIGIN_HISTORY_SECS, ReportError, Window};

/// One value of a result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Cell {
    /// The integer (0 for anything else).
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(n) => *n,
            Cell::Text(t) => t.parse().unwrap_or(0),
            _ => 0,
        }
    }

    /// The text ("" for anything else).
    pub fn text(&self) -> &str {
        match self {
            Cell::Text(t) => t,
            _ => "",
        }
    }

    /// The text, taken.
    fn into_text(self) -> String {
        match self {
            Cell::Text(t) => t,
            Cell::Int(n) => n.to_string(),
            _ => String::new(),
        }
    }
}

/// A query parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// An integer.
    Int(i64),
    /// Text.
    Text(&'a str),
}

/// The expressions the databases spell differently. Queries use `$1`, `$2`... for parameters.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// The row's time in seconds since the epoch, as an integer (`{t}` is the table's alias
    /// with its dot, or nothing).
    pub epoch: &'static str,
    /// A time condition: `{t}` as above, `{a}` and `{b}` the parameters of the ends (seconds).
    pub window: &'static str,
    /// The address as text.
    pub ip_text: &'static str,
    /// The address as a value that sorts numerically, inside a `GROUP BY ip`.
    pub ip_order: &'static str,
    /// A text parameter `{p}` as an address, to compare with the `ip` column.
    pub ip_param: &'static str,
    /// The /64 of an IPv6 address (bytes, or the prefix's address as text).
    pub v6_prefix: &'static str,
    /// The row's address is IPv6.
    pub is_v6: &'static str,
    /// The AS number as text ("" when none).
    pub asn_text: &'static str,
    /// Appended to a text in ORDER BY so that it sorts by bytes, as Rust's strings do
    /// (PostgreSQL's default collation follows the locale).
    pub collate: &'static str,
}

impl Dialect {
    /// The condition that `{t}`'s time is within the parameters `$a` and `$b`.
    fn window(&self, t: &str, a: usize, b: usize) -> String {
        self.window
            .replace("{t}", t)
            .replace("{a}", &format!("${a}"))
            .replace("{b}", &format!("${b}"))
    }

    fn epoch(&self) -> String {
        self.epoch.replace("{t}", "")
    }
}

/// A database a report is counted in.
pub trait Db {
    /// The database's name, for errors.
    fn name(&self) -> &Path;
    /// How it spells what differs.
    fn dialect(&self) -> &Dialect;
    /// Calls `on_row` with each row of `sql` run with `params`.
    fn each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        on_row: &mut dyn FnMut(Vec<Cell>),
    ) -> Result<(), String>;

    /// The rows of `sql`.
    fn rows(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Vec<Cell>>, String> {
        let mut out = Vec::new();
        self.each(sql, params, &mut |r| out.push(r))?;
        Ok(out)
    }

    /// Only this server's rows (`report --server`); `None`: every server's.
    fn server(&self) -> Option<&str> {
        None
    }

    /// The first row's first value (`Null` when there is no row).
    fn one(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Cell, String> {
        Ok(self
            .rows(sql, params)?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .unwrap_or(Cell::Null))
    }
}

/// The rows a report reads: `{t}`'s time within the parameters `$a` and `$b`, and its server
/// the one asked for, if any (as a string literal, quotes doubled: standard SQL, and both
/// databases take it so; the name is also checked at the command line).
fn scope(db: &dyn Db, t: &str, a: usize, b: usize) -> String {
    let mut cond = db.dialect().window(t, a, b);
    if let Some(server) = db.server() {
        cond.push_str(&format!(
            " AND {t}server = '{}'",
            server.replace('\'', "''")
        ));
    }
    cond
}

/// An address as this program writes it (the database's text may compress IPv6 zeros
/// differently).
fn canonical_ip(text: String) -> String {
    text.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or(text)
}

fn w2(w: Window) -> [Param<'static>; 2] {
    [Param::Int(w.from), Param::Int(w.to)]
}

/// A (key, count) list.
fn counts(db: &mut dyn Db, sql: &str, w: Window) -> Result<Vec<Count>, String> {
    Ok(db
        .rows(sql, &w2(w))?
        .into_iter()
        .map(|r| {
            let mut r = r.into_iter();
            let key = r.next().map(Cell::into_text).unwrap_or_default();
            Count {
                key,
                count: r.next().map_or(0, |c| c.int() as u64),
                previous: None,
            }
        })
        .collect())
}

/// A top table of `column`'s values in the window (without the empty value when
/// `skip_empty`, as the CSV's aggregator leaves it out of that table): most first, ties by
/// value.
fn top(
    db: &mut dyn Db,
    column: &str,
    skip_empty: bool,
    w: Window,
    n: usize,
) -> Result<Vec<Count>, String> {
    let d = *db.dialect();
    let win = scope(&*db, "", 1, 2);
    let nonempty = if skip_empty {
        format!(" AND {column} != ''")
    } else {
        String::new()
    };
    counts(
        db,
        &format!(
            "SELECT {column} AS k, COUNT(*) AS c FROM events WHERE {win}{nonempty} GROUP BY {column} ORDER BY c DESC, {column}{} LIMIT {n}",
            d.collate
        ),
        w,
    )
}

fn totals(db: &mut dyn Db, w: Window) -> Result<Totals, String> {
    let win = scope(&*db, "", 1, 2);
    let r = db
        .rows(
            &format!(
                "SELECT COUNT(*), COUNT(DISTINCT ip), COUNT(DISTINCT username) FROM events WHERE {win}"
            ),
            &w2(w),
        )?
        .into_iter()
        .next()
        .unwrap_or_default();
    let n = |i: usize| r.get(i).map_or(0, |c| c.int() as u64);
    Ok(Totals {
        attempts: n(0),
        distinct_ips: n(1),
        distinct_usernames: n(2),
    })
}

/// Attempts in `w` for each of `values` of `column` (one query: `column IN (...)`), keyed by
/// the value as text.
fn counts_in(
    db: &mut dyn Db,
    column: &str,
    values: &[Param<'_>],
    w: Window,
) -> Result<HashMap<String, u64>, String> {
    if values.is_empty() {
        return Ok(HashMap::new());
    }
    let d = *db.dialect();
    let list: Vec<String> = (0..values.len())
        .map(|i| {
            let p = format!("${}", i + 3);
            if column == "ip" {
                d.ip_param.replace("{p}", &p)
            } else {
                p
            }
        })
        .collect();
    let key = match column {
        "ip" => d.ip_text.to_string(),
        "asn" => d.asn_text.to_string(),
        c => c.to_string(),
    };
    let win = scope(&*db, "", 1, 2);
    let mut params = vec![Param::Int(w.from), Param::Int(w.to)];
    params.extend_from_slice(values);
    Ok(db
        .rows(
            &format!(
                "SELECT {key}, COUNT(*) FROM events WHERE {column} IN ({}) AND {win} GROUP BY {column}",
                list.join(", ")
            ),
            &params,
        )?
        .into_iter()
        .map(|r| {
            let mut r = r.into_iter();
            let k = r.next().map(Cell::into_text).unwrap_or_default();
            let k = if column == "ip" { canonical_ip(k) } else { k };
            (k, r.next().map_or(0, |c| c.int() as u64))
        })
        .collect())
}

/// Rows by id: `columns` of each (keyed by id), one query.
fn rows_by_id(
    db: &mut dyn Db,
    columns: &str,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<Cell>>, String> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let params: Vec<Param<'_>> = ids.iter().map(|&i| Param::Int(i)).collect();
    Ok(db
        .rows(
            &format!(
                "SELECT id, {columns} FROM events WHERE id IN ({})",
                list.join(", ")
            ),
            &params,
        )?
        .into_iter()
        .map(|r| {
            let mut r = r.into_iter();
            let id = r.next().map_or(0, |c| c.int());
            (id, r.collect())
        })
        .collect())
}

/// Builds the summary of `w` (with the previous window beside it) in the database; `bytes` is
/// the record's size for the summary's line about it.
pub fn summary(db: &mut dyn Db, w: Window, bytes: u64) -> Result<Summary, ReportError> {
    let name = db.name().to_path_buf();
    summary_inner(db, w, bytes).map_err(|message| ReportError::Read {
        path: name,
        message,
    })
}

fn summary_inner(db: &mut dyn Db, w: Window, bytes: u64) -> Result<Summary, String> {
    let d = *db.dialect();
    let win = scope(&*db, "", 1, 2);
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
        schema: summary::SCHEMA,
        from: rfc(w.from),
        to: rfc(w.to),
        from_ts: w.from,
        to_ts: w.to,
        totals: totals(db, w)?,
        previous: totals(db, prev)?,
        record_bytes: bytes,
        ..Summary::default()
    };
    // Autonomous systems: counts, and the first row naming each (its organisation as first
    // seen in the window, as the CSV's aggregator keeps it).
    let asn_rows: Vec<(i64, u64, i64)> = db
        .rows(
            &format!(
                "SELECT asn, COUNT(*), MIN(id) FROM events WHERE {win} AND asn IS NOT NULL GROUP BY asn"
            ),
            &w2(w),
        )?
        .into_iter()
        .map(|r| (r[0].int(), r[1].int() as u64, r[2].int()))
        .collect();
    let first_of_asn: HashMap<i64, i64> = asn_rows.iter().map(|&(n, _, id)| (n, id)).collect();
    // Top addresses, with the first row of each that had a name, a country, an AS.
    let top_ips = db.rows(
        &format!(
            "SELECT {ip} AS k, COUNT(*) AS c, {order} AS o, \
             MIN(CASE WHEN reverse_dns != '' THEN id END), MIN(CASE WHEN country != '' THEN id END), \
             MIN(CASE WHEN asn IS NOT NULL THEN id END), MIN(CASE WHEN dns_status != '' THEN id END) \
             FROM events WHERE {win} GROUP BY ip ORDER BY c DESC, o LIMIT {n}",
            ip = d.ip_text,
            order = d.ip_order,
            n = summary::TOP
        ),
        &w2(w),
    )?;
    let mut ids: Vec<i64> = top_ips
        .iter()
        .flat_map(|r| [&r[3], &r[4], &r[5], &r[6]])
        .filter(|c| **c != Cell::Null)
        .map(Cell::int)
        .collect();
    let by_id = rows_by_id(db, "reverse_dns, country, asn, dns_status", &ids)?;
    let ip_texts: Vec<String> = top_ips.iter().map(|r| r[0].text().to_string()).collect();
    let ip_params: Vec<Param<'_>> = ip_texts.iter().map(|t| Param::Text(t)).collect();
    let previous = counts_in(db, "ip", &ip_params, prev)?;
    // The organisations of the ASes shown (the top addresses' and the top table's).
    let mut asns: Vec<(i64, u64)> = asn_rows.iter().map(|&(n, c, _)| (n, c)).collect();
    asns.sort_by(|(na, ca), (nb, cb)| cb.cmp(ca).then(na.cmp(nb)));
    asns.truncate(summary::TOP);
    let ip_asns: Vec<i64> = top_ips
        .iter()
        .filter_map(|r| match &r[5] {
            Cell::Null => None,
            c => by_id.get(&c.int()).map(|row| row[2].int()),
        })
        .collect();
    ids = asns
        .iter()
        .map(|(n, _)| *n)
        .chain(ip_asns)
        .filter_map(|n| first_of_asn.get(&n).copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let org_rows = rows_by_id(db, "asn, as_org", &ids)?;
    let orgs: HashMap<i64, String> = org_rows
        .into_values()
        .map(|r| (r[0].int(), r[1].text().to_string()))
        .collect();
    let cell = |id: &Cell, i: usize| -> Option<&Cell> {
        match id {
            Cell::Null => None,
            c => by_id.get(&c.int()).map(|row| &row[i]),
        }
    };
    for r in &top_ips {
        let ip = canonical_ip(r[0].text().to_string());
        let asn = cell(&r[5], 2).map(Cell::int);
        // The status of the row that gave the name, else of the first row that had one (as
        // the CSV's aggregator keeps it).
        let dns_status = cell(&r[3], 3)
            .or_else(|| cell(&r[6], 3))
            .map_or("", Cell::text)
            .to_string();
        s.top_ips.push(IpLine {
            previous: previous.get(&ip).copied().unwrap_or(0),
            reverse_dns: cell(&r[3], 0).map_or("", Cell::text).to_string(),
            dns_status,
            country: cell(&r[4], 1).map_or("", Cell::text).to_string(),
            asn: asn.and_then(|n| u32::try_from(n).ok()),
            as_org: asn.and_then(|n| orgs.get(&n)).cloned().unwrap_or_default(),
            count: r[1].int() as u64,
            ip,
        });
    }
    // Usernames: the most tried, and the most widely tried (distributed attacks).
    let mut users = |order: &str, having: &str| -> Result<Vec<UserLine>, String> {
        Ok(db
            .rows(
                &format!(
                    "SELECT username, COUNT(*) AS c, COUNT(DISTINCT ip) AS i, COUNT(DISTINCT asn) AS a FROM events WHERE {win} GROUP BY username {having} ORDER BY {order}, username{} LIMIT {}",
                    d.collate,
                    summary::TOP
                ),
                &w2(w),
            )?
            .into_iter()
            .map(|r| {
                let mut r = r.into_iter();
                UserLine {
                    username: r.next().map(Cell::into_text).unwrap_or_default(),
                    count: r.next().map_or(0, |c| c.int() as u64),
                    previous: 0,
                    distinct_ips: r.next().map_or(0, |c| c.int() as u64),
                    distinct_asns: r.next().map_or(0, |c| c.int() as u64),
                }
            })
            .collect())
    };
    s.top_usernames = users("c DESC", "")?;
    s.distributed = users("i DESC, a DESC", "HAVING COUNT(DISTINCT ip) > 1")?;
    let mut names: Vec<String> = s
        .top_usernames
        .iter()
        .chain(&s.distributed)
        .map(|u| u.username.clone())
        .collect();
    names.sort();
    names.dedup();
    let params: Vec<Param<'_>> = names.iter().map(|n| Param::Text(n)).collect();
    let previous = counts_in(db, "username", &params, prev)?;
    for u in s.top_usernames.iter_mut().chain(&mut s.distributed) {
        u.previous = previous.get(&u.username).copied().unwrap_or(0);
    }
    s.top_countries = top(db, "country", true, w, summary::TOP)?;
    let codes: Vec<String> = s.top_countries.iter().map(|c| c.key.clone()).collect();
    let params: Vec<Param<'_>> = codes.iter().map(|c| Param::Text(c)).collect();
    let previous = counts_in(db, "country", &params, prev)?;
    for c in &mut s.top_countries {
        c.previous = Some(previous.get(&c.key).copied().unwrap_or(0));
    }
    // Autonomous systems: most attempts first, ties by number; named as first seen in the
    // window.
    let params: Vec<Param<'_>> = asns.iter().map(|(n, _)| Param::Int(*n)).collect();
    let previous = counts_in(db, "asn", &params, prev)?;
    for (n, count) in asns {
        s.top_asns.push(AsLine {
            asn: u32::try_from(n).unwrap_or(0),
            org: orgs.get(&n).cloned().unwrap_or_default(),
            count,
            previous: previous.get(&n.to_string()).copied().unwrap_or(0),
        });
    }
    // Host names: confirmed ones only (see `summary::confirmed_host`); the unconfirmed
    // reverse DNS names apart.
    s.top_hosts = top(
        db,
        "CASE WHEN reverse_dns != '' AND dns_status = 'ok' THEN reverse_dns ELSE client_hostname END",
        true,
        w,
        summary::TOP,
    )?;
    s.unconfirmed_names = top(
        db,
        "CASE WHEN dns_status != 'ok' THEN reverse_dns ELSE '' END",
        true,
        w,
        summary::TOP,
    )?;
    s.servers = top(db, "server", false, w, summary::MAX_SERVERS)?;
    s.ipv6_prefixes = ipv6_prefixes(db, w)?;
    // Every hour of the window, also those without attempts.
    let hours: HashMap<i64, u64> = db
        .rows(
            &format!(
                "SELECT ({epoch}) / 3600 * 3600 AS h, COUNT(*) FROM events WHERE {win} GROUP BY h",
                epoch = d.epoch()
            ),
            &w2(w),
        )?
        .into_iter()
        .map(|r| (r[0].int(), r[1].int() as u64))
        .collect();
    let first_hour = w.from.div_euclid(3600) * 3600;
    s.per_hour = (0..)
        .map(|i| first_hour + i * 3600)
        .take_while(|h| *h < w.to)
        .take(24 * 366)
        .map(|h| HourCount {
            start: rfc(h),
            ts: h,
            count: hours.get(&h).copied().unwrap_or(0),
        })
        .collect();
    // Addresses not seen in the previous window (NOT IN: the previous window's addresses are
    // gathered once, where a correlated NOT EXISTS scans that window again for every row when
    // there is no index on the address).
    let new_ips = format!(
        "FROM events e WHERE {} AND e.ip NOT IN (SELECT p.ip FROM events p WHERE {}) GROUP BY e.ip",
        scope(&*db, "e.", 1, 2),
        scope(&*db, "p.", 3, 4)
    );
    let four = [
        Param::Int(w.from),
        Param::Int(w.to),
        Param::Int(prev.from),
        Param::Int(prev.to),
    ];
    s.new_ips = db
        .one(
            &format!("SELECT COUNT(*) FROM (SELECT e.ip {new_ips}) n"),
            &four,
        )?
        .int() as u64;
    let ip_e = d.ip_text.replace("ip", "e.ip");
    s.new_ip_sample = db
        .rows(
            &format!(
                "SELECT {ip_e} AS k, COUNT(*) AS c {new_ips} ORDER BY c DESC, {ip_e}{} LIMIT 20",
                d.collate
            ),
            &four,
        )?
        .into_iter()
        .map(|r| {
            let mut r = r.into_iter();
            Count {
                key: canonical_ip(r.next().map(Cell::into_text).unwrap_or_default()),
                count: r.next().map_or(0, |c| c.int() as u64),
                previous: None,
            }
        })
        .collect();
    s.dns_status = top(
        db,
        "CASE WHEN dns_status = '' THEN '(not enriched)' ELSE dns_status END",
        false,
        w,
        16,
    )?;
    s.mechanisms = top(db, "mechanism", false, w, summary::TOP)?;
    s.services = top(db, "service", false, w, summary::TOP)?;
    Ok(s)
}

/// IPv6 attackers grouped by /64 in the database, sorted here by their text as the CSV's
/// aggregator does.
fn ipv6_prefixes(db: &mut dyn Db, w: Window) -> Result<Vec<PrefixLine>, String> {
    let d = *db.dialect();
    let win = scope(&*db, "", 1, 2);
    let mut out: Vec<PrefixLine> = db
        .rows(
            &format!(
                "SELECT {p} AS p, COUNT(*), COUNT(DISTINCT ip) FROM events WHERE {win} AND {v6} GROUP BY p",
                p = d.v6_prefix,
                v6 = d.is_v6
            ),
            &w2(w),
        )?
        .into_iter()
        .map(|r| {
            let prefix = match &r[0] {
                Cell::Bytes(b) => b.iter().take(8).fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
                Cell::Text(t) => t
                    .parse::<std::net::Ipv6Addr>()
                    .map(|a| (u128::from(a) >> 64) as u64)
                    .unwrap_or(0),
                _ => 0,
            };
            PrefixLine {
                prefix: summary::slash64_text(prefix),
                count: r[1].int() as u64,
                addresses: r[2].int() as u64,
            }
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.prefix.cmp(&b.prefix)));
    out.truncate(summary::TOP);
    Ok(out)
}

/// Calls `on_row` for each row of `table` (`events` or `logins`) in `w`, oldest first.
pub fn for_each_row(
    db: &mut dyn Db,
    table: &str,
    w: Window,
    on_row: &mut dyn FnMut(&Row<'_>),
) -> Result<(), ReportError> {
    let d = *db.dialect();
    let sql = format!(
        "SELECT {epoch}, service, {ip}, username, mechanism, client_hostname, reverse_dns, dns_status, country, {asn}, as_org, server FROM {table} WHERE {win} ORDER BY timestamp, id",
        epoch = d.epoch(),
        ip = d.ip_text,
        asn = d.asn_text,
        win = scope(&*db, "", 1, 2)
    );
    let name = db.name().to_path_buf();
    // Texts as the CSV record holds them (its spreadsheet guard on), so that callers, which
    // undo the guard, see the same values from either store.
    use crate::sink::csv::neutralise;
    db.each(&sql, &w2(w), &mut |r| {
        let ip = canonical_ip(r[2].text().to_string());
        let row = Row {
            ts: r[0].int(),
            service: &neutralise(r[1].text()),
            ip: &ip,
            username: &neutralise(r[3].text()),
            mechanism: &neutralise(r[4].text()),
            client_hostname: &neutralise(r[5].text()),
            reverse_dns: &neutralise(r[6].text()),
            dns_status: r[7].text(),
            country: &neutralise(r[8].text()),
            asn: r[9].text(),
            as_org: &neutralise(r[10].text()),
            server: &neutralise(r[11].text()),
        };
        on_row(&row);
    })
    .map_err(|message| ReportError::Read {
        path: name,
        message,
    })
}

/// The window's intrusion rows as CSV lines (the record's columns and escaping), for the
/// attachment.
pub fn rows_csv(
    db: &mut dyn Db,
    w: Window,
    on_row: &mut dyn FnMut(&[u8]),
) -> Result<(), ReportError> {
    let d = *db.dialect();
    let sql = format!(
        "SELECT logged, server, service, {ip}, username, mechanism, reason, client_hostname, reverse_dns, dns_status, country, {asn}, as_org FROM events WHERE {win} ORDER BY timestamp, id",
        ip = d.ip_text,
        asn = d.asn_text,
        win = scope(&*db, "", 1, 2)
    );
    let name = db.name().to_path_buf();
    let mut fmt = crate::sink::RowFormatter::default();
    db.each(&sql, &w2(w), &mut |r| {
        let ip = canonical_ip(r[3].text().to_string());
        let mut fields: [&str; 13] = [""; 13];
        for (i, f) in fields.iter_mut().enumerate() {
            *f = if i == 3 { &ip } else { r[i].text() };
        }
        fmt.clear();
        fmt.push_fields(&fields);
        on_row(fmt.bytes());
    })
    .map_err(|message| ReportError::Read {
        path: name,
        message,
    })
}

/// Logins in `w` from a country or AS not seen for their username in the 30 days before.
pub fn new_origins(db: &mut dyn Db, w: Window) -> Result<Vec<NewOrigin>, ReportError> {
    let before = Window {
        from: w.from - ORIGIN_HISTORY_SECS,
        to: w.from,
    };
    let db = std::cell::RefCell::new(db);
    super::new_origins_from(
        &mut |on_row| for_each_row(&mut **db.borrow_mut(), "logins", before, on_row),
        &mut |on_row| for_each_row(&mut **db.borrow_mut(), "logins", w, on_row),
    )
}
