//! The PostgreSQL store, for one server or a fleet: the records and each daemon's positions in
//! one database, committed in one transaction (the rows by `COPY ... FROM STDIN (FORMAT
//! binary)`, never one statement per row). Several daemons write one database: rows carry their
//! `server`, positions their `instance`.
//!
//! When the server cannot be reached, a commit fails, the committer retries with backoff and
//! reading waits behind the bounded channel: the positions do not move, so nothing is lost, and
//! the next attempt connects again. The password is never in the configuration: it is read from
//! `password_file`. TLS follows libpq's `sslmode`: `disable`; `prefer` and `require` encrypt
//! without checking the certificate (as libpq does without a root certificate); `verify-ca`
//! and `verify-full` check it against the system's roots and `sslrootcert` (both check the
//! name too: rustls has no "chain but not name" mode, so `verify-ca` is the stricter
//! `verify-full`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, fallible_iterator::FallibleIterator};

use crate::checkpoint::Pos;
use crate::enrich::Enrichment;
use crate::parse::AuthEvent;
use crate::pipeline::JournalPos;
use crate::report::sql::{Cell, Db, Dialect, Param};
use crate::source::fingerprint::Fingerprint;

use super::{CrashPoint, Progress, Recovered, Staged, StagedRow, Store, StoreError};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// How long connecting may take before it counts as a failure (and is retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the database is and how to reach it (`[output] postgres`, `password_file`,
/// `instance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// The connection URL (`postgres://user@host[:port]/db[?sslmode=...&sslrootcert=...]`),
    /// without a password.
    pub url: String,
    /// A file holding the password (its first line), when one is needed.
    pub password_file: Option<PathBuf>,
    /// This daemon's name for its positions in a shared database.
    pub instance: String,
}

impl PgSettings {
    /// The URL with anything after `@` up to the path kept, for messages (it holds no password:
    /// the configuration refuses one).
    pub fn describe(&self) -> String {
        match split_url(&self.url) {
            Ok((c, _, _)) => {
                let host = c
                    .get_hosts()
                    .first()
                    .map(|h| match h {
                        postgres::config::Host::Tcp(name) => name.clone(),
                        postgres::config::Host::Unix(dir) => dir.display().to_string(),
                    })
                    .unwrap_or_default();
                let port = c
                    .get_ports()
                    .first()
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default();
                format!(
                    "postgres://{}@{host}{port}/{}",
                    c.get_user().unwrap_or_default(),
                    c.get_dbname().unwrap_or_default()
                )
            }
            Err(_) => "(an unreadable postgres URL)".into(),
        }
    }

    /// A path-like name for errors and reports.
    pub fn name(&self) -> PathBuf {
        PathBuf::from(self.describe())
    }
}

/// libpq's `sslmode`, as far as this client can honour it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disable,
    /// Encrypt when the server can; no certificate check.
    Prefer,
    /// Encrypt; no certificate check.
    Require,
    /// Encrypt; check the certificate and the name.
    Verify,
}

/// Why the URL cannot be used (a configuration error: `check` reports it).
pub fn check_url(url: &str) -> Result<(), String> {
    split_url(url).map(|_| ())
}

/// The URL without the TLS options tokio-postgres does not know, the mode and the root
/// certificate file.
fn split_url(url: &str) -> Result<(postgres::Config, SslMode, Option<PathBuf>), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("is not a postgres:// URL (write postgres://USER@HOST/DATABASE)".into());
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = SslMode::Prefer;
    let mut root = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => {
                mode = match v {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" | "verify-full" => SslMode::Verify,
                    _ => {
                        return Err(format!(
                            "sslmode={v} is not one of disable, prefer, require, verify-ca, verify-full"
                        ));
                    }
                }
            }
            "sslrootcert" => root = Some(PathBuf::from(v)),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let config: postgres::Config = url.parse().map_err(|e| format!("cannot be read: {e}"))?;
    // (As the client reads it: a password anywhere in the URL, however written.)
    if config.get_password().is_some() {
        return Err(
            "holds a password: put it in a file readable only by maillogsentinel and name that file in password_file".into(),
        );
    }
    // libpq checks the certificate under `require` when given a root certificate.
    if mode == SslMode::Require && root.is_some() {
        mode = SslMode::Verify;
    }
    Ok((config, mode, root))
}

/// A certificate check that accepts any certificate (libpq's `prefer` and `require`): the
/// connection is encrypted against eavesdropping, not against a machine in the middle. The
/// handshake's signatures are still checked.
#[derive(Debug)]
struct NoCertificateCheck(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS settings for `mode` (roots: the system's and `root`, when checked).
fn tls(mode: SslMode, root: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if mode != SslMode::Verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = root {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Connects (the password from `password_file`, TLS as `sslmode` says).
pub fn connect(settings: &PgSettings) -> Result<Client, StoreError> {
    let fail = |message: String| StoreError::Postgres {
        what: format!("{}: cannot connect", settings.describe()),
        message,
        kind: "settings".into(),
    };
    let (mut config, mode, root) = split_url(&settings.url).map_err(&fail)?;
    if let Some(file) = &settings.password_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| fail(format!("password_file {}: {e}", file.display())))?;
        config.password(text.lines().next().unwrap_or_default());
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    // A connection the network silently lost (a server rebooted, a NAT forgot it) is found
    // within about a minute, instead of a write or a LISTEN waiting on it for ever.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    config.application_name("maillogsentinel");
    config.ssl_mode(match mode {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::Verify => postgres::config::SslMode::Require,
    });
    let tls =
        tokio_postgres_rustls::MakeRustlsConnect::new(tls(mode, root.as_deref()).map_err(&fail)?);
    config.connect(tls).map_err(|e| StoreError::Postgres {
        what: format!("{}: cannot connect", settings.describe()),
        message: error_text(&e),
        kind: error_kind(&e),
    })
}

/// `unreachable` for a failure of the connection (none, lost, the server shutting down or
/// refusing it), else the SQLSTATE code: the committer logs a failure once per kind.
fn error_kind(e: &postgres::Error) -> String {
    match e.as_db_error().map(|d| d.code().code()) {
        Some(code) if !(code.starts_with("08") || code.starts_with("57P")) => code.to_string(),
        _ => "unreachable".into(),
    }
}

/// A PostgreSQL error with the server's detail when there is one.
fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s = format!("{s}: {inner}");
                source = inner.source();
            }
            s
        }
    }
}

fn pg_err(settings: &PgSettings, what: &str) -> impl Fn(postgres::Error) -> StoreError + use<> {
    let what = format!("{}: {what}", settings.describe());
    move |e| StoreError::Postgres {
        what: what.clone(),
        message: error_text(&e),
        kind: error_kind(&e),
    }
}

/// The migration versions applied to the database (none for a new one).
fn applied_versions(client: &mut Client, settings: &PgSettings) -> Result<Vec<i64>, StoreError> {
    let err = pg_err(settings, "cannot read the schema history");
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .map_err(&err)?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    Ok(client
        .query(
            "SELECT version::bigint FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .map_err(&err)?
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect())
}

/// The schema migrations this program knows, with whether the database has each.
pub fn migration_states(
    client: &mut Client,
    settings: &PgSettings,
) -> Result<Vec<super::sqlite::MigrationState>, StoreError> {
    let applied = applied_versions(client, settings)?;
    Ok(super::sqlite::states(
        &applied,
        embedded::migrations::runner().get_migrations(),
    ))
}

/// Brings the schema up to date (up to `target`, the newest when `None`), refusing a database
/// a newer program made. Several daemons starting at once are serialised by an advisory lock.
pub fn migrate(
    client: &mut Client,
    settings: &PgSettings,
    target: Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    let err = pg_err(settings, "cannot lock the schema for migrations");
    // One key for this program's migrations, held for the session.
    client
        .execute("SELECT pg_advisory_lock(7242011386)", &[])
        .map_err(&err)?;
    let result = applied_versions(client, settings).and_then(|applied| {
        super::run_migrations(
            embedded::migrations::runner(),
            client,
            &applied,
            &settings.name(),
            target,
        )
    });
    let _ = client.execute("SELECT pg_advisory_unlock(7242011386)", &[]);
    result
}

/// Row counts of the records (for `db status`).
pub fn counts(
    client: &mut Client,
    settings: &PgSettings,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut out = Vec::new();
    for table in ["events", "logins"] {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .map_err(pg_err(settings, "cannot read the schema"))?
            .get(0);
        if exists {
            let n: i64 = client
                .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
                .map_err(pg_err(settings, "cannot count rows"))?
                .get(0);
            out.push((table.to_string(), n));
        }
    }
    Ok(out)
}

/// Text for a `text` column: PostgreSQL refuses NUL, which a client can send (one such row
/// would otherwise block every commit after it).
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The columns COPY writes, in order, and their types.
const COPY_COLUMNS: &str = "timestamp, logged, server, service, ip, username, mechanism, reason, client_hostname, reverse_dns, dns_status, country, asn, as_org";
const COPY_TYPES: [Type; 14] = [
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INET,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
];

/// Copies `rows` into `table` inside the transaction.
fn copy(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    rows: &[StagedRow],
) -> Result<(), postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let sink = tx.copy_in(&format!(
        "COPY {table} ({COPY_COLUMNS}) FROM STDIN (FORMAT binary)"
    ))?;
    let mut w = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    let mut stamp = Vec::new();
    for r in rows {
        let (e, en) = (&r.event, r.enrichment.as_ref());
        let t = e.timestamp.time;
        let at = SystemTime::UNIX_EPOCH
            .checked_add(Duration::new(
                t.timestamp().max(0) as u64,
                t.timestamp_subsec_nanos(),
            ))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        stamp.clear();
        e.timestamp.write_rfc3339(&mut stamp);
        let logged = std::str::from_utf8(&stamp).unwrap_or_default();
        let asn = en.and_then(|en| en.asn).map(i64::from);
        let dns_status = en.and_then(|en| en.dns_status).map_or("", |d| d.as_str());
        let (server, service, username, mechanism, reason, client_hostname) = (
            text(&e.server),
            text(&e.service),
            text(e.username.as_deref().unwrap_or("")),
            text(&e.mechanism),
            text(&e.reason),
            text(e.client_hostname.as_deref().unwrap_or("")),
        );
        let (reverse_dns, country, as_org) = (
            text(en.and_then(|en| en.reverse_dns.as_deref()).unwrap_or("")),
            text(en.and_then(|en| en.country.as_deref()).unwrap_or("")),
            text(en.and_then(|en| en.as_org.as_deref()).unwrap_or("")),
        );
        let values: [&(dyn ToSql + Sync); 14] = [
            &at,
            &logged,
            &&*server,
            &&*service,
            &e.ip,
            &&*username,
            &&*mechanism,
            &&*reason,
            &&*client_hostname,
            &&*reverse_dns,
            &dns_status,
            &&*country,
            &asn,
            &&*as_org,
        ];
        w.write(&values)?;
    }
    w.finish()?;
    Ok(())
}

/// The servers `rows` name that `noted` does not hold yet, each once, in order: two
/// transactions listing the same new servers lock them in the same order (in opposite orders
/// they could deadlock, each waiting for the other's insert).
fn new_servers(rows: &[StagedRow], noted: &std::collections::HashSet<String>) -> Vec<String> {
    let new: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r.event.server.as_str())
        .filter(|s| !noted.contains(*s))
        .collect();
    new.into_iter().map(str::to_string).collect()
}

/// Lists `servers` in the `servers` table (the servers that have rows: see
/// [`Store::has_rows`]), in the transaction that writes their rows.
fn note_servers(
    tx: &mut postgres::Transaction<'_>,
    servers: &[String],
) -> Result<(), postgres::Error> {
    for server in servers {
        tx.execute(
            "INSERT INTO servers (server) VALUES ($1) ON CONFLICT (server) DO NOTHING",
            &[&text(server).into_owned()],
        )?;
    }
    Ok(())
}

/// How long a first start may read the records to tell whether its server has rows (see
/// [`Store::has_rows`]).
const HAS_ROWS_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL store.
pub struct PostgresStore {
    settings: PgSettings,
    state_dir: PathBuf,
    /// The connection (`None` after a failure: the next commit connects again).
    client: Option<Client>,
    logins_kept: bool,
    /// This daemon's `[sources] server` (the host its rows usually name).
    server: String,
    /// Servers known to be in the `servers` table (see [`note_servers`]).
    servers_noted: std::collections::HashSet<String>,
    staged: Staged,
    crash: Option<CrashPoint>,
    /// The token the next commit writes (see `progress.token`).
    next_token: i64,
    /// A commit whose COMMIT got no answer (the connection broke): its token, checked before
    /// anything is written again.
    unsure: Option<i64>,
}

impl PostgresStore {
    /// Connects, brings the schema up to date, and keeps the connection. `server` is this
    /// daemon's `[sources] server` (see [`Store::has_rows`]).
    pub fn open(
        settings: &PgSettings,
        state_dir: &Path,
        logins: bool,
        server: &str,
    ) -> Result<Self, StoreError> {
        let mut client = connect(settings)?;
        let applied = migrate(&mut client, settings, None)?;
        if !applied.is_empty() {
            tracing::info!(database = %settings.describe(), versions = ?applied, "schema migrations applied");
        }
        Ok(PostgresStore {
            settings: settings.clone(),
            state_dir: state_dir.to_path_buf(),
            client: Some(client),
            logins_kept: logins,
            server: server.to_string(),
            servers_noted: Default::default(),
            staged: Staged::default(),
            crash: CrashPoint::from_env(),
            next_token: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as i64),
            unsure: None,
        })
    }

    /// Whether the commit that wrote `token` landed after all (its COMMIT's answer was lost).
    fn landed(&mut self, token: i64) -> Result<bool, StoreError> {
        let settings = self.settings.clone();
        let row = self
            .client()?
            .query_opt(
                "SELECT token FROM progress WHERE instance = $1",
                &[&settings.instance],
            )
            .map_err(pg_err(&settings, "cannot read the last commit"))?;
        Ok(row.is_some_and(|r| r.get::<_, i64>(0) == token))
    }

    /// The connection, made again after a failure.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            self.client = Some(connect(&self.settings)?);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    /// Replaces this instance's positions with `progress`'s "after" positions.
    fn write_positions(
        tx: &mut postgres::Transaction<'_>,
        instance: &str,
        progress: &Progress,
        token: i64,
    ) -> Result<(), postgres::Error> {
        tx.execute(
            "DELETE FROM file_positions WHERE instance = $1",
            &[&instance],
        )?;
        tx.execute(
            "DELETE FROM journal_positions WHERE instance = $1",
            &[&instance],
        )?;
        if !progress.files.is_empty() {
            let stmt = tx.prepare(
                "INSERT INTO file_positions (instance, fingerprint, path, position, unseen_secs, complete) VALUES ($1, $2, $3, $4, $5, $6)",
            )?;
            for f in &progress.files {
                tx.execute(
                    &stmt,
                    &[
                        &instance,
                        &(f.fingerprint.0 as i64),
                        &text(&f.path.to_string_lossy()).into_owned(),
                        &(f.offset as i64),
                        &(f.unseen_secs as i64),
                        &f.complete,
                    ],
                )?;
            }
        }
        for j in &progress.journals {
            tx.execute(
                "INSERT INTO journal_positions (instance, source, cursor, realtime_usec) VALUES ($1, $2, $3, $4)",
                &[
                    &instance,
                    &j.source,
                    &j.after.cursor,
                    &(j.after.realtime_usec as i64),
                ],
            )?;
        }
        tx.execute(
            "INSERT INTO progress (instance, saved_at, token) VALUES ($1, now(), $2) ON CONFLICT (instance) DO UPDATE SET saved_at = excluded.saved_at, token = excluded.token",
            &[&instance, &token],
        )?;
        Ok(())
    }

    /// Runs `f` in a transaction on the connection; a failure drops the connection when it
    /// is broken, so that the next try connects again.
    fn in_transaction(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut postgres::Transaction<'_>, &Self) -> Result<(), postgres::Error>,
    ) -> Result<(), StoreError> {
        let err = pg_err(&self.settings, what);
        let mut client = match self.client.take() {
            Some(c) if !c.is_closed() => c,
            _ => connect(&self.settings)?,
        };
        let result = (|| {
            let mut tx = client.transaction()?;
            f(&mut tx, self)?;
            tx.commit()
        })();
        if result.is_ok() || !client.is_closed() {
            self.client = Some(client);
        }
        result.map_err(err)
    }
}

impl Drop for PostgresStore {
    /// The client runs a runtime of its own, which must not be dropped inside another's
    /// asynchronous context (a start that fails after the store was opened): then it is
    /// dropped on a thread of its own.
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new()
                .name("postgres-close".into())
                .spawn(move || drop(client));
        }
    }
}

impl Store for PostgresStore {
    fn describe(&self) -> String {
        format!(
            "PostgreSQL {} (instance {})",
            self.settings.describe(),
            self.settings.instance
        )
    }

    fn recover(&mut self) -> Result<Option<Recovered>, StoreError> {
        let settings = self.settings.clone();
        let err = pg_err(&settings, "cannot read the positions");
        let instance = settings.instance.as_str();
        let client = self.client()?;
        let saved = client
            .query_opt("SELECT 1 FROM progress WHERE instance = $1", &[&instance])
            .map_err(&err)?;
        if saved.is_none() {
            return Ok(None);
        }
        let mut rec = Recovered {
            note: format!(
                "positions as last committed in {} for instance {instance}",
                settings.describe()
            ),
            ..Recovered::default()
        };
        for r in client
            .query(
                "SELECT fingerprint, path, position, unseen_secs, complete FROM file_positions WHERE instance = $1",
                &[&instance],
            )
            .map_err(&err)?
        {
            let fp = Fingerprint(r.get::<_, i64>(0) as u64);
            rec.positions.insert(
                fp,
                Pos {
                    offset: r.get::<_, i64>(2) as u64,
                    complete: r.get(4),
                },
            );
            rec.paths.insert(fp, PathBuf::from(r.get::<_, String>(1)));
            rec.unseen
                .insert(fp, Duration::from_secs(r.get::<_, i64>(3) as u64));
        }
        let journals: BTreeMap<String, Option<JournalPos>> = client
            .query(
                "SELECT source, cursor, realtime_usec FROM journal_positions WHERE instance = $1",
                &[&instance],
            )
            .map_err(&err)?
            .into_iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    Some(JournalPos {
                        cursor: r.get(1),
                        realtime_usec: r.get::<_, i64>(2) as u64,
                    }),
                )
            })
            .collect();
        rec.journals = journals;
        Ok(Some(rec))
    }

    /// Whether rows of this daemon's server are there (ever committed or imported: the
    /// `servers` table, which deletions leave as it is): a fleet's database holds other
    /// servers' rows, and a new member reads its history (`backfill = "auto"`); a known
    /// server whose instance was renamed does not record its history twice.
    /// (When that cannot be asked, the answer is yes: not back-filling is the side that
    /// records nothing twice, and the warning says how to back-fill.)
    ///
    /// The `servers` table answers at once. A server it does not list is looked for in the
    /// rows themselves, the whole table read: a daemon of a version before schema 4, still
    /// running while a fleet is upgraded, writes rows without listing its server. Found
    /// there, it is listed, and the next first start is answered at once again. The daemon
    /// asks only at a first start (no positions yet), before it tells systemd it is ready:
    /// the read is bounded to [`HAS_ROWS_TIMEOUT`] (systemd waits 90 s for a start), and
    /// beyond it the answer is yes.
    fn has_rows(&mut self) -> bool {
        let server = self.server.clone();
        let Ok(client) = self.client() else {
            return true;
        };
        let ask = |c: &mut Client, sql: &str| -> Option<bool> {
            c.query_one(sql, &[&server]).ok().map(|r| r.get(0))
        };
        match ask(
            client,
            "SELECT EXISTS (SELECT 1 FROM servers WHERE server = $1)",
        ) {
            Some(false) => {}
            listed => return listed.unwrap_or(true),
        }
        let scan = (|| -> Result<bool, postgres::Error> {
            let mut tx = client.transaction()?;
            tx.batch_execute(&format!(
                "SET LOCAL statement_timeout = {}",
                HAS_ROWS_TIMEOUT.as_millis()
            ))?;
            let found = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM events WHERE server = $1)",
                    &[&server],
                )?
                .get(0);
            tx.commit()?;
            Ok(found)
        })();
        match scan {
            Err(e) => {
                tracing::warn!(
                    server = %server,
                    "cannot tell whether this server's rows are in the database ({}; the read stops after {} s): taken as yes",
                    error_text(&e),
                    HAS_ROWS_TIMEOUT.as_secs()
                );
                true
            }
            Ok(true) => {
                tracing::info!(
                    server = %server,
                    "this server's rows are in the database but it was not listed in `servers` (rows written by a version before schema 4 during an upgrade): listed now"
                );
                if let Err(e) = client.execute(
                    "INSERT INTO servers (server) VALUES ($1) ON CONFLICT (server) DO NOTHING",
                    &[&server],
                ) {
                    tracing::warn!("cannot list this server in `servers`: {}", error_text(&e));
                }
                true
            }
            Ok(false) => false,
        }
    }

    fn keeps_logins(&self) -> bool {
        self.logins_kept
    }

    fn stage_failure(&mut self, event: &AuthEvent, enrichment: Option<&Enrichment>) {
        self.staged.push(event, enrichment, false);
    }

    fn stage_login(&mut self, event: &AuthEvent, enrichment: Option<&Enrichment>) {
        if self.logins_kept {
            self.staged.push(event, enrichment, true);
        }
    }

    fn staged_bytes(&self) -> usize {
        self.staged.bytes
    }

    /// One transaction: this instance's positions after the batch, the intrusion rows, the
    /// login rows.
    /// A commit whose answer was lost (the connection broke during COMMIT) is looked for
    /// first, by its token: if it landed, its rows are not written again.
    fn commit(&mut self, progress: &Progress) -> Result<(), StoreError> {
        if let Some(token) = self.unsure {
            if self.landed(token)? {
                tracing::info!("the last commit landed before the connection broke");
                self.unsure = None;
                self.staged.clear();
                return Ok(());
            }
            self.unsure = None;
        }
        let crash = self.crash;
        let instance = self.settings.instance.clone();
        self.next_token = self.next_token.wrapping_add(1);
        let token = self.next_token;
        let servers = new_servers(&self.staged.failures, &self.servers_noted);
        let result = self.in_transaction("cannot commit rows and positions", |tx, store| {
            Self::write_positions(tx, &instance, progress, token)?;
            note_servers(tx, &servers)?;
            CrashPoint::AfterCheckpoint.here(crash);
            if crash == Some(CrashPoint::MidRows) {
                copy(
                    tx,
                    "events",
                    &store.staged.failures[..store.staged.failures.len() / 2],
                )?;
                CrashPoint::MidRows.here(crash);
            }
            copy(tx, "events", &store.staged.failures)?;
            CrashPoint::BetweenRecords.here(crash);
            copy(tx, "logins", &store.staged.logins)
        });
        if let Err(e) = result {
            if e.state() == "postgres:unreachable" {
                self.unsure = Some(token);
            }
            return Err(e);
        }
        self.servers_noted.extend(servers);
        self.staged.clear();
        Ok(())
    }

    fn save_progress(&mut self, progress: &Progress) -> Result<(), StoreError> {
        let instance = self.settings.instance.clone();
        self.next_token = self.next_token.wrapping_add(1);
        let token = self.next_token;
        self.in_transaction("cannot save the positions", |tx, _| {
            Self::write_positions(tx, &instance, progress, token)
        })
    }

    /// (Every daemon of a fleet may run it: the deletes are the same.)
    fn expire(&mut self, before: i64) -> Result<u64, StoreError> {
        let settings = self.settings.clone();
        let client = self.client()?;
        let mut total = 0;
        for table in ["events", "logins"] {
            let n = client
                .execute(
                    &super::batch_delete(table, "timestamp < to_timestamp($1::bigint)"),
                    &[&before],
                )
                .map_err(pg_err(&settings, "cannot delete old rows"))?;
            total += n;
        }
        Ok(total)
    }

    fn purge(&mut self, who: &super::purge::Purge) -> Result<(u64, u64), StoreError> {
        let mut conds = Vec::new();
        let mut params: Vec<Box<dyn postgres::types::ToSql + Sync>> = Vec::new();
        if let Some(ip) = who.ip {
            params.push(Box::new(ip.to_string()));
            conds.push(format!("ip = ${}::text::inet", params.len()));
        }
        if let Some(u) = &who.username {
            // Under the C collation lower() folds ASCII only, as the CSV store compares.
            params.push(Box::new(text(u).into_owned()));
            conds.push(format!(
                "lower(username COLLATE \"C\") = lower(${}::text COLLATE \"C\")",
                params.len()
            ));
        }
        if let Some(before) = who.before {
            params.push(Box::new(before));
            conds.push(format!(
                "timestamp < to_timestamp(${}::bigint)",
                params.len()
            ));
        }
        if conds.is_empty() {
            return Err(StoreError::Unsupported(
                "purge needs an address or a username".into(),
            ));
        }
        let settings = self.settings.clone();
        let client = self.client()?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p.as_ref()).collect();
        let mut counts = [0u64; 2];
        for (n, table) in counts.iter_mut().zip(["events", "logins"]) {
            let sql = super::batch_delete(table, &conds.join(" AND "));
            loop {
                let deleted = client
                    .execute(&sql, &refs)
                    .map_err(pg_err(&settings, "cannot delete the rows to purge"))?;
                *n += deleted;
                if deleted == 0 {
                    break;
                }
            }
        }
        // The fleet's ban decisions name addresses and usernames too (`[response] share`).
        let bans = super::batch_delete(
            "bans",
            &conds.join(" AND ").replace("timestamp <", "time <"),
        );
        let mut in_bans = 0;
        loop {
            let deleted = client.execute(&bans, &refs).map_err(pg_err(
                &settings,
                "cannot delete the ban decisions to purge",
            ))?;
            in_bans += deleted;
            if deleted == 0 {
                break;
            }
        }
        if in_bans > 0 {
            tracing::info!("purge: {in_bans} rows of the fleet's ban decisions deleted");
        }
        Ok((counts[0], counts[1]))
    }

    fn imported(&mut self, fingerprint: Fingerprint) -> Result<Option<u64>, StoreError> {
        let err = pg_err(&self.settings, "cannot read the imports");
        Ok(self
            .client()?
            .query_opt(
                "SELECT position FROM imports WHERE fingerprint = $1",
                &[&(fingerprint.0 as i64)],
            )
            .map_err(err)?
            .map(|r| r.get::<_, i64>(0) as u64))
    }

    fn commit_import(
        &mut self,
        fingerprint: Fingerprint,
        path: &Path,
        offset: u64,
    ) -> Result<(), StoreError> {
        let path = text(&path.to_string_lossy()).into_owned();
        let servers = new_servers(&self.staged.failures, &self.servers_noted);
        self.in_transaction("cannot commit the import", |tx, store| {
            note_servers(tx, &servers)?;
            copy(tx, "events", &store.staged.failures)?;
            tx.execute(
                "INSERT INTO imports (fingerprint, path, position, imported_at) VALUES ($1, $2, $3, now()) \
                 ON CONFLICT (fingerprint) DO UPDATE SET path = excluded.path, position = excluded.position, imported_at = excluded.imported_at",
                &[&(fingerprint.0 as i64), &path, &(offset as i64)],
            )?;
            Ok(())
        })?;
        self.servers_noted.extend(servers);
        self.staged.clear();
        Ok(())
    }

    fn switch_output(&mut self, path: &Path, _progress: &Progress) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(format!(
            "output.csv ({}) is not written with store = \"postgres\"; the records stay in {}",
            path.display(),
            self.settings.describe()
        )))
    }

    fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

/// The PostgreSQL spelling of what the databases spell differently (see [`Dialect`]).
pub const DIALECT: Dialect = Dialect {
    epoch: "floor(extract(epoch FROM {t}timestamp))::bigint",
    window: "{t}timestamp >= to_timestamp({a}::bigint) AND {t}timestamp < to_timestamp({b}::bigint)",
    collate: " COLLATE \"C\"",
    ip_text: "host(ip)",
    ip_order: "ip",
    ip_param: "{p}::text::inet",
    v6_prefix: "host(network(set_masklen(ip, 64)))",
    is_v6: "family(ip) = 6",
    asn_text: "COALESCE(asn::text, '')",
};

/// A connection for reports.
pub struct PgDb {
    name: PathBuf,
    client: Client,
    server: Option<String>,
}

impl PgDb {
    /// Connects for reading.
    pub fn open(settings: &PgSettings) -> Result<PgDb, crate::report::ReportError> {
        let client = connect(settings).map_err(|e| crate::report::ReportError::Read {
            path: settings.name(),
            message: match e {
                StoreError::Postgres { message, .. } => format!("cannot connect: {message}"),
                e => e.to_string(),
            },
        })?;
        Ok(PgDb {
            name: settings.name(),
            client,
            server: None,
        })
    }

    /// Reports read only `server`'s rows (`None`: every server's).
    pub fn only_server(mut self, server: Option<&str>) -> Self {
        self.server = server.map(str::to_string);
        self
    }

    /// The records' size on disk (their tables and indexes), bytes.
    pub fn size(&mut self) -> u64 {
        self.client
            .query_one(
                "SELECT COALESCE(pg_total_relation_size(to_regclass('events')), 0) + COALESCE(pg_total_relation_size(to_regclass('logins')), 0)",
                &[],
            )
            .map(|r| r.get::<_, i64>(0) as u64)
            .unwrap_or(0)
    }
}

impl Db for PgDb {
    fn name(&self) -> &Path {
        &self.name
    }

    fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    fn dialect(&self) -> &Dialect {
        &DIALECT
    }

    fn each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        on_row: &mut dyn FnMut(Vec<Cell>),
    ) -> Result<(), String> {
        let values: Vec<Box<dyn ToSql + Sync>> = params
            .iter()
            .map(|p| -> Box<dyn ToSql + Sync> {
                match p {
                    Param::Int(n) => Box::new(*n),
                    Param::Text(t) => Box::new(t.to_string()),
                }
            })
            .collect();
        let mut rows = self
            .client
            .query_raw(sql, values.iter().map(|v| &**v as &(dyn ToSql + Sync)))
            .map_err(|e| error_text(&e))?;
        while let Some(r) = rows.next().map_err(|e| error_text(&e))? {
            let cells = (0..r.len())
                .map(|i| {
                    let t = r.columns()[i].type_();
                    Ok(if *t == Type::INT8 {
                        r.try_get::<_, Option<i64>>(i)?
                            .map_or(Cell::Null, Cell::Int)
                    } else if *t == Type::INT4 {
                        r.try_get::<_, Option<i32>>(i)?
                            .map_or(Cell::Null, |n| Cell::Int(n.into()))
                    } else if *t == Type::BYTEA {
                        r.try_get::<_, Option<Vec<u8>>>(i)?
                            .map_or(Cell::Null, Cell::Bytes)
                    } else if *t == Type::INET {
                        r.try_get::<_, Option<std::net::IpAddr>>(i)?
                            .map_or(Cell::Null, |ip| Cell::Text(ip.to_string()))
                    } else if *t == Type::FLOAT8 {
                        r.try_get::<_, Option<f64>>(i)?
                            .map_or(Cell::Null, |f| Cell::Int(f as i64))
                    } else if *t == Type::BOOL {
                        r.try_get::<_, Option<bool>>(i)?
                            .map_or(Cell::Null, |b| Cell::Int(b.into()))
                    } else {
                        r.try_get::<_, Option<String>>(i)?
                            .map_or(Cell::Null, Cell::Text)
                    })
                })
                .collect::<Result<Vec<Cell>, postgres::Error>>()
                .map_err(|e| error_text(&e))?;
            on_row(cells);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_a_password_are_refused_however_written() {
        for url in [
            "postgres://u:secret@db/x",
            "postgres://u:pa/ss@db/x",
            "postgres://u@db/x?password=secret",
            "postgres://u@db/x?pass%77ord=secret",
        ] {
            let e = check_url(url).unwrap_err();
            assert!(e.contains("password_file"), "{url}: {e}");
        }
        assert!(check_url("postgres://u@db:5433/x?sslmode=verify-full").is_ok());
        assert!(check_url("mysql://u@db/x").is_err());
        let e = check_url("postgres://u@db/x?sslmode=sometimes").unwrap_err();
        assert!(e.contains("verify-full"), "{e}");
    }

    #[test]
    fn ssl_modes_are_libpq_s() {
        let mode = |url: &str| split_url(url).unwrap().1;
        assert_eq!(mode("postgres://u@db/x"), SslMode::Prefer);
        assert_eq!(mode("postgres://u@db/x?sslmode=disable"), SslMode::Disable);
        assert_eq!(mode("postgres://u@db/x?sslmode=require"), SslMode::Require);
        // libpq checks the certificate under `require` when it has a root certificate.
        assert_eq!(
            mode("postgres://u@db/x?sslmode=require&sslrootcert=/etc/ca.pem"),
            SslMode::Verify
        );
        assert_eq!(mode("postgres://u@db/x?sslmode=verify-ca"), SslMode::Verify);
        let s = PgSettings {
            url:
                "postgres://mls@db.example.org:5433/records?sslmode=verify-full&application_name=x"
                    .into(),
            password_file: None,
            instance: "mx1".into(),
        };
        assert_eq!(s.describe(), "postgres://mls@db.example.org:5433/records");
    }
}

#[cfg(test)]
mod text_tests {
    #[test]
    fn nul_is_replaced_for_postgresql() {
        assert_eq!(super::text("a\0b"), "a\u{fffd}b");
        assert!(matches!(
            super::text("ab"),
            std::borrow::Cow::Borrowed("ab")
        ));
    }
}
