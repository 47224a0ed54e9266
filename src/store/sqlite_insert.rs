//! The SQLite store's batched inserts, with the rows' texts read by SQLite where they are.
//!
//! rusqlite binds every text and blob with `SQLITE_TRANSIENT`: SQLite copies each value into
//! memory of its own (an allocation and a copy, and a free when the parameter is bound
//! again), every non-empty text of every row. In a backfill that was a third of the time
//! spent binding and inserting (docs/benchmarks.md, "SQLite binds the rows in place"). Here
//! the statement is prepared and bound through SQLite's C API with `SQLITE_STATIC`: SQLite
//! reads the values in place. That is sound because [`Insert::run`] clears every binding
//! before it returns (a guard does it even on a panic), while the rows it bound are still
//! borrowed, and because it runs only with its connection borrowed, on the thread that uses
//! that connection.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int};

use rusqlite::ffi;

use crate::enrich::Enrichment;
use crate::parse::AuthEvent;

/// The columns of `events` and `logins` written by the store, in order.
pub(super) const COLUMNS: &str = "timestamp, logged, server, service, ip, ip_key, username, \
     mechanism, reason, client_hostname, reverse_dns, dns_status, country, asn, as_org";

/// Parameters of one row (the columns above).
const PER_ROW: usize = 15;

/// `INSERT INTO table (...) VALUES (...), (...)` for `rows` rows, numbered parameters.
pub(super) fn insert_sql(table: &str, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({COLUMNS}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..PER_ROW {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("?{}", r * PER_ROW + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// A prepared multi-row INSERT of a fixed number of rows, on a connection it must not
/// outlive (see [`Insert::prepare`]).
pub(super) struct Insert {
    db: *mut ffi::sqlite3,
    stmt: *mut ffi::sqlite3_stmt,
    rows: usize,
}

// Safety: rusqlite opens connections with SQLITE_OPEN_NO_MUTEX (multi-thread mode: a
// connection and its statements must be used by one thread at a time). An `Insert` is used
// only through [`Insert::run`], which takes its connection by reference: a `Connection` is
// not `Sync`, so the caller is the one thread using the connection. Dropping it finalizes the
// statement, which touches the connection too: [`Insert::prepare`]'s contract has it dropped
// with its connection, on the thread using it. Moving an `Insert` to another thread (with
// the store that holds it and the connection) is then sound.
unsafe impl Send for Insert {}

/// A value too large for SQLite to bind (over 2 GiB: never a log line's).
fn too_big() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        ffi::Error::new(ffi::SQLITE_TOOBIG),
        Some("a value too large to bind".into()),
    )
}

/// Resets a statement and clears its bindings when dropped: after it, SQLite holds no pointer
/// into what was bound, even when binding panicked half-way.
struct Unbind(*mut ffi::sqlite3_stmt);

impl Drop for Unbind {
    fn drop(&mut self) {
        // Safety: the statement is alive (the `Insert` outlives this guard); reset ends the
        // step, clear_bindings drops every value bound.
        unsafe {
            ffi::sqlite3_reset(self.0);
            ffi::sqlite3_clear_bindings(self.0);
        }
    }
}

/// SQLite's error for `code` on `db`, with its message.
fn error(db: *mut ffi::sqlite3, code: c_int) -> rusqlite::Error {
    // Safety: `db` is an open connection; the message is copied out before anything else
    // runs on it.
    let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
        .to_string_lossy()
        .into_owned();
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(msg))
}

/// The texts and blobs of a row, in column order (the time and the AS number are numbers).
const TEXTS: usize = 13;

/// One staged row: its numbers, and where its texts end in [`Rows::texts`] (each starts
/// where the one before it ends, the first where the row before ends).
struct Row {
    time: i64,
    asn: Option<u32>,
    ends: [usize; TEXTS],
}

/// Rows staged for one record, flat: every text of every row in one buffer, so that staging
/// a row allocates nothing (a copy of the event would allocate for each of its texts, and
/// free each after the commit).
#[derive(Default)]
pub(super) struct Rows {
    texts: Vec<u8>,
    rows: Vec<Row>,
}

impl Rows {
    /// Stages `e` with its enrichment.
    pub fn push(&mut self, e: &AuthEvent, en: Option<&Enrichment>) {
        use std::io::Write;
        let t = &mut self.texts;
        let mut ends = [0; TEXTS];
        let mut end = |t: &Vec<u8>, i: usize| ends[i] = t.len();
        e.timestamp.write_rfc3339(t);
        end(t, 0);
        t.extend_from_slice(e.server.as_bytes());
        end(t, 1);
        t.extend_from_slice(e.service.as_bytes());
        end(t, 2);
        let _ = write!(t, "{}", e.ip);
        end(t, 3);
        let mut key = [0u8; 17];
        let n = super::sqlite::ip_key_into(e.ip, &mut key);
        t.extend_from_slice(&key[..n]);
        end(t, 4);
        t.extend_from_slice(e.username.as_deref().unwrap_or("").as_bytes());
        end(t, 5);
        t.extend_from_slice(e.mechanism.as_bytes());
        end(t, 6);
        t.extend_from_slice(e.reason.as_bytes());
        end(t, 7);
        t.extend_from_slice(e.client_hostname.as_deref().unwrap_or("").as_bytes());
        end(t, 8);
        let en_text = |f: fn(&Enrichment) -> Option<&str>| en.and_then(f).unwrap_or("").as_bytes();
        t.extend_from_slice(en_text(|en| en.reverse_dns.as_deref()));
        end(t, 9);
        t.extend_from_slice(en_text(|en| en.dns_status.map(|d| d.as_str())));
        end(t, 10);
        t.extend_from_slice(en_text(|en| en.country.as_deref()));
        end(t, 11);
        t.extend_from_slice(en_text(|en| en.as_org.as_deref()));
        end(t, 12);
        self.rows.push(Row {
            time: e.timestamp.time.timestamp(),
            asn: en.and_then(|en| en.asn),
            ends,
        });
    }

    /// How many rows are staged.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// About what they weigh, in bytes.
    pub fn bytes(&self) -> usize {
        self.texts.len() + self.rows.len() * std::mem::size_of::<Row>()
    }

    /// Forgets them (committed), keeping the memory for the next.
    pub fn clear(&mut self) {
        self.texts.clear();
        self.rows.clear();
    }

    /// Row `r`'s text `i` (in [`COLUMNS`] order, without the numbers).
    fn text(&self, r: usize, i: usize) -> &[u8] {
        let start = match (i, r) {
            (0, 0) => 0,
            (0, _) => self.rows[r - 1].ends[TEXTS - 1],
            _ => self.rows[r].ends[i - 1],
        };
        &self.texts[start..self.rows[r].ends[i]]
    }
}

impl Insert {
    /// Prepares the INSERT of `rows` rows into `table` on `conn`; `kept` when it will be run
    /// again and again (SQLite then gives it memory of its own, not the connection's small
    /// shared pool).
    ///
    /// # Safety
    /// The `Insert` must be dropped before `conn` is closed: rusqlite's close fails while a
    /// statement is open (ignoring the failure, so the connection, its file and its locks
    /// would leak), and finalizing the statement afterwards would touch a freed connection.
    /// It must be dropped on the thread using `conn` (finalizing changes the connection's
    /// list of statements): in practice, with it.
    pub unsafe fn prepare(
        conn: &rusqlite::Connection,
        table: &str,
        rows: usize,
        kept: bool,
    ) -> rusqlite::Result<Self> {
        let sql = insert_sql(table, rows);
        // Safety: the handle is used only while the connection is open (the caller's promise).
        let db = unsafe { conn.handle() };
        let mut stmt = std::ptr::null_mut();
        let len = c_int::try_from(sql.len()).map_err(|_| too_big())?;
        let flags = if kept {
            ffi::SQLITE_PREPARE_PERSISTENT as std::ffi::c_uint
        } else {
            0
        };
        // Safety: `sql` is valid for `len` bytes; `stmt` receives the statement or null.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr().cast::<c_char>(),
                len,
                flags,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK || stmt.is_null() {
            // (Finalizing null is a no-op.)
            let e = error(db, rc);
            // Safety: `stmt` is null or the statement just prepared.
            unsafe { ffi::sqlite3_finalize(stmt) };
            return Err(e);
        }
        Ok(Insert { db, stmt, rows })
    }

    /// Inserts the staged rows `range` (exactly as many as prepared for) through `conn`,
    /// the connection it was prepared on (borrowed: this thread is the one using it). Every
    /// binding is cleared before returning, whatever happened.
    pub fn run(
        &mut self,
        conn: &rusqlite::Connection,
        rows: &Rows,
        range: std::ops::Range<usize>,
    ) -> rusqlite::Result<()> {
        // Safety: only compared, not used.
        assert_eq!(
            unsafe { conn.handle() },
            self.db,
            "run on the connection it was prepared on"
        );
        assert_eq!(
            range.len(),
            self.rows,
            "an insert of a fixed number of rows"
        );
        let _unbind = Unbind(self.stmt);
        self.bind_and_step(rows, range)
    }

    fn bind_and_step(
        &mut self,
        rows: &Rows,
        range: std::ops::Range<usize>,
    ) -> rusqlite::Result<()> {
        for (n, r) in range.enumerate() {
            let i = (n * PER_ROW) as c_int;
            let row = &rows.rows[r];
            self.int(i + 1, Some(row.time))?;
            // Then the texts, the address's key (the 5th) a blob, the AS number before the last.
            for t in 0..TEXTS {
                let at = i + 2 + t as c_int + c_int::from(t == TEXTS - 1);
                let value = rows.text(r, t);
                if t == 4 {
                    self.blob(at, value)?;
                } else {
                    self.text(at, value)?;
                }
            }
            self.int(i + 14, row.asn.map(i64::from))?;
        }
        // Safety: every parameter is bound to a value that lives until `run` clears it.
        let rc = unsafe { ffi::sqlite3_step(self.stmt) };
        if rc != ffi::SQLITE_DONE {
            return Err(error(self.db, rc));
        }
        Ok(())
    }

    /// What a bind call returned, as a result.
    fn check(&self, rc: c_int) -> rusqlite::Result<()> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(error(self.db, rc))
        }
    }

    /// Binds text `s` (UTF-8) to parameter `i`, read in place.
    fn text(&self, i: c_int, s: &[u8]) -> rusqlite::Result<()> {
        let len = c_int::try_from(s.len()).map_err(|_| too_big())?;
        // (An empty slice's pointer may dangle: a static empty string instead.)
        let ptr = if s.is_empty() {
            c"".as_ptr()
        } else {
            s.as_ptr().cast::<c_char>()
        };
        // Safety: `ptr` is valid for `len` bytes until `run` clears the bindings.
        self.check(unsafe { ffi::sqlite3_bind_text(self.stmt, i, ptr, len, ffi::SQLITE_STATIC()) })
    }

    /// Binds blob `b` (not empty) to parameter `i`, read in place.
    fn blob(&self, i: c_int, b: &[u8]) -> rusqlite::Result<()> {
        let len = c_int::try_from(b.len()).map_err(|_| too_big())?;
        // Safety: as for `text`.
        self.check(unsafe {
            ffi::sqlite3_bind_blob(self.stmt, i, b.as_ptr().cast(), len, ffi::SQLITE_STATIC())
        })
    }

    /// Binds `v` (NULL when `None`) to parameter `i`.
    fn int(&self, i: c_int, v: Option<i64>) -> rusqlite::Result<()> {
        // Safety: the statement is ours and `i` one of its parameters.
        self.check(unsafe {
            match v {
                Some(v) => ffi::sqlite3_bind_int64(self.stmt, i, v),
                None => ffi::sqlite3_bind_null(self.stmt, i),
            }
        })
    }
}

impl Drop for Insert {
    fn drop(&mut self) {
        // Safety: the statement is ours, finalized once, its connection still open (the
        // promise made to `prepare`).
        unsafe { ffi::sqlite3_finalize(self.stmt) };
    }
}
