//! The control socket: how `maillogsentinel status` and `maillogsentinel reload` ask the running
//! daemon, and get an answer (a signal gets none: `systemctl reload` could not fail visibly).
//!
//! A Unix socket, `control.sock` in systemd's `RuntimeDirectory=` (`$RUNTIME_DIRECTORY`,
//! `/run/maillogsentinel`), else in the state directory; mode 0660, so root and the service's
//! group may ask, nobody else. One request per connection: a word and a newline (`status`,
//! `reload`), at most [`MAX_REQUEST`] bytes, within [`REQUEST_TIMEOUT`]; the answer is one line of
//! JSON, written within [`ANSWER_TIMEOUT`], then the connection is closed. At most
//! [`MAX_CLIENTS`] are served at once; more are told so and closed. Whatever a client sends or
//! fails to send, it costs the daemon one small task for a few seconds at most: the pipeline
//! never waits on the socket, and the control loop only builds answers from figures it holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
#[cfg(test)]
use std::os::unix::fs::FileTypeExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The socket's file name.
pub const SOCKET_NAME: &str = "control.sock";
/// Longest request accepted (a request is a word; this leaves room for arguments later).
pub const MAX_REQUEST: usize = 4096;
/// How long a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long writing an answer may take (a client that does not read is dropped).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once.
pub const MAX_CLIENTS: usize = 16;
/// How long a reload may take to answer (its pipeline part waits for the rows in flight).
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A request the control loop answers.
#[derive(Debug)]
pub enum Request {
    /// `status`.
    Status(oneshot::Sender<Status>),
    /// `reload`.
    Reload(oneshot::Sender<ReloadAnswer>),
    /// `/metrics`: the exposition.
    Metrics(oneshot::Sender<String>),
    /// `/health`: whether every actor responds.
    Health(oneshot::Sender<bool>),
    /// `bans`, `ban`, `unban`: for the responder.
    Respond(crate::respond::Command),
}

/// What `status` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The program's version.
    pub version: String,
    /// The daemon's process id.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// The configuration file (`None`: built-in defaults).
    pub config: Option<PathBuf>,
    /// The one-line summary systemd shows (`STATUS=`).
    pub summary: String,
    /// What is wrong now, most serious first (empty: nothing).
    pub problems: Vec<String>,
    /// Where the records are (`CSV /var/lib/...`).
    pub store: String,
    /// Each source.
    pub sources: Vec<SourceStatus>,
    /// Counters since the daemon started.
    pub counters: crate::stats::Snapshot,
    /// Rows committed since start by service, mechanism and outcome.
    pub by_service: Vec<KindCount>,
    /// Reverse DNS cache.
    pub enrichment: EnrichmentStatus,
    /// Reports waiting in the outbox to be sent.
    pub outbox: usize,
    /// Mails the server refused for good (5xx), kept in `outbox/failed/`, not retried.
    #[serde(default)]
    pub outbox_refused: usize,
    /// Where `/metrics` is served (`None`: nowhere).
    pub metrics: Option<String>,
    /// When rows or positions were last committed (RFC 3339; `None`: not since start).
    pub last_commit: Option<String>,
    /// Where the last report's window ended (RFC 3339; `None`: no report yet).
    pub last_report: Option<String>,
    /// When the next scheduled report goes (RFC 3339; `None`: no schedule).
    pub next_report: Option<String>,
    /// The responder (`None`: `[response]` is off).
    #[serde(default)]
    pub response: Option<ResponseStatus>,
}

/// The responder's figures in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseStatus {
    /// `ban` or `log`.
    pub mode: String,
    /// Bans running.
    pub active: u64,
    /// Bans decided since start.
    pub bans: u64,
    /// Bans whose action failed since start.
    pub failed: u64,
    /// Failures of protected addresses (ignored, this host's, not global), never counted.
    pub spared: u64,
    /// Addresses forgiven after a successful login since start.
    pub forgiven: u64,
}

/// One source in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceStatus {
    /// `file` or `journal`.
    pub kind: String,
    /// The path, or the journal.
    pub name: String,
    /// What it is doing (`following`, `waiting for the file`...).
    pub state: String,
    /// Where reading is in the file (files only).
    pub offset: Option<u64>,
    /// The file's size (files only).
    pub size: Option<u64>,
    /// Bytes not read yet (files only).
    pub lag_bytes: Option<u64>,
    /// Seconds reading has been behind: 0 when caught up, else since reading last moved on
    /// (files only).
    pub lag_secs: Option<u64>,
    /// When new lines were last read (RFC 3339; `None`: none since start); for the journal,
    /// the time of the entry committed last.
    pub last_read: Option<String>,
}

/// Rows of one kind in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KindCount {
    /// The program that logged them (`postfix/submission/smtpd`, `dovecot`...).
    pub service: String,
    /// The mechanism tried (`LOGIN`, `PLAIN`...).
    pub mechanism: String,
    /// `failure` or `login`.
    pub outcome: String,
    /// How many.
    pub count: u64,
}

/// The enrichment's figures in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrichmentStatus {
    /// Addresses in the cache.
    pub cache_entries: u64,
    /// Answers from the cache.
    pub cache_hits: u64,
    /// Answers that needed a lookup.
    pub cache_misses: u64,
    /// Lookups that got no answer in time.
    pub dns_timeouts: u64,
    /// The GeoIP databases configured.
    pub geoip: Vec<GeoStatus>,
}

/// A GeoIP database in [`EnrichmentStatus`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeoStatus {
    /// `country` or `ASN`.
    pub what: String,
    /// Where it is configured.
    pub path: PathBuf,
    /// Its type and build date, or `None`: missing or unreadable.
    pub database: Option<String>,
}

/// What `reload` answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// The new configuration is in force.
    pub ok: bool,
    /// What changed (`sources.files: [...] -> [...]`), when it is.
    pub changes: Vec<String>,
    /// Why it is not (file, line, key, what to do); the running configuration is kept.
    pub problems: Vec<String>,
    /// Things said beside (a key that changes only at restart).
    pub notes: Vec<String>,
}

/// One line of answer on the socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// To `status`.
    Status(Box<Status>),
    /// To `reload`.
    Reload(ReloadAnswer),
    /// To `bans`: the bans running, newest first.
    Bans {
        /// The bans.
        bans: Vec<crate::respond::responder::BanView>,
    },
    /// To `ban` and `unban`: what was done.
    Done {
        /// What.
        message: String,
    },
    /// The request could not be served.
    Error {
        /// Why.
        message: String,
    },
}

/// Where the daemon puts its socket: systemd's runtime directory when the unit has one, else
/// the state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    std::env::var_os("RUNTIME_DIRECTORY")
        .and_then(|dirs| {
            // Several directories are separated by colons; the first is ours.
            let first = dirs.to_string_lossy().split(':').next()?.to_string();
            (!first.is_empty()).then(|| PathBuf::from(first))
        })
        .unwrap_or_else(|| state_dir.to_path_buf())
        .join(SOCKET_NAME)
}

/// Where a client finds the socket: `control.sock` in the state directory the configuration
/// names, which is the socket itself or (when the daemon put it in its runtime directory) a
/// symbolic link to it. Never a guess at a fixed path: a test's daemon and the host's own
/// must not be confused.
pub fn client_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// Points `state_dir/control.sock` at the socket bound elsewhere (the runtime directory), so
/// that clients reading the configuration find it.
pub fn link_from_state_dir(state_dir: &Path, socket: &Path) -> std::io::Result<()> {
    let link = client_path(state_dir);
    if link == socket {
        return Ok(());
    }
    match std::fs::symlink_metadata(&link) {
        Ok(m)
            if m.file_type().is_symlink()
                || std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) =>
        {
            std::fs::remove_file(&link)?;
        }
        _ => {}
    }
    std::os::unix::fs::symlink(socket, &link)
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("control socket {path}: {source}")]
pub struct SocketError {
    /// The socket.
    pub path: PathBuf,
    /// What the system said.
    pub source: std::io::Error,
}

/// The bound socket, removed when dropped.
pub struct Listener {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket at `path` (mode 0660). A socket left there by a daemon that died is
/// replaced: the caller holds the state directory's lock, so no other daemon of this state
/// directory is running.
pub fn bind(path: &Path) -> Result<Listener, SocketError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| SocketError {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        // A socket left by a daemon that died, or the link a packaged daemon made to its
        // runtime directory.
        Ok(m)
            if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())
                || m.file_type().is_symlink() =>
        {
            std::fs::remove_file(path).map_err(err)?;
        }
        Ok(_) => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "something that is not a socket is in the way: move it",
            )));
        }
        Err(_) => {}
    }
    // Bound under a temporary name, given its mode, then renamed into place: the socket at
    // `path` is never reachable with the mode the umask gave it.
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(err)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(Listener {
        listener,
        path: path.to_path_buf(),
    })
}

/// Serves the socket until `stop` is cancelled: each connection on a task of its own, passed
/// to the control loop through `requests`.
pub async fn serve(listener: Listener, requests: mpsc::Sender<Request>, stop: CancellationToken) {
    let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => break,
            c = listener.listener.accept() => c,
        };
        let Ok((stream, _)) = conn else {
            // Out of file descriptors, say: the socket stays, try again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = clients.clone().try_acquire_owned() else {
            let busy = Answer::Error {
                message: format!(
                    "busy: {MAX_CLIENTS} clients are being served; try again in a moment"
                ),
            };
            // Told without waiting (a write that would block is not made), then closed: more
            // clients never mean more tasks or descriptors held.
            let mut line = serde_json::to_vec(&busy).expect("answers serialise");
            line.push(b'\n');
            let _ = stream.try_write(&line);
            drop(stream);
            continue;
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_one(stream, requests).await;
        });
    }
}

/// Reads one request from `stream`, asks the control loop, writes the answer.
async fn serve_one(mut stream: UnixStream, requests: mpsc::Sender<Request>) {
    let answer = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Err(_) => Answer::Error {
            message: format!("no request within {REQUEST_TIMEOUT:?}"),
        },
        Ok(Err(message)) => Answer::Error { message },
        Ok(Ok(word)) => ask(&word, &requests).await,
    };
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, write_answer(&mut stream, &answer)).await;
}

/// A request's word, or why there is none.
async fn read_request(stream: &mut UnixStream) -> Result<String, String> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read the request: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.contains(&b'\n') {
            break;
        }
        if buf.len() > MAX_REQUEST {
            return Err(format!("request longer than {MAX_REQUEST} bytes"));
        }
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let word = std::str::from_utf8(line)
        .map_err(|_| "the request is not text".to_string())?
        .trim();
    Ok(word.to_string())
}

/// Asks the control loop to answer `word`.
async fn ask(word: &str, requests: &mpsc::Sender<Request>) -> Answer {
    let gone = || Answer::Error {
        message: "the daemon is stopping".into(),
    };
    match word {
        "status" => {
            let (tx, rx) = oneshot::channel();
            if requests.send(Request::Status(tx)).await.is_err() {
                return gone();
            }
            rx.await
                .map_or_else(|_| gone(), |s| Answer::Status(Box::new(s)))
        }
        "reload" => {
            let (tx, rx) = oneshot::channel();
            if requests.send(Request::Reload(tx)).await.is_err() {
                return gone();
            }
            match tokio::time::timeout(RELOAD_TIMEOUT, rx).await {
                Ok(Ok(a)) => Answer::Reload(a),
                Ok(Err(_)) => gone(),
                Err(_) => Answer::Error {
                    message: format!(
                        "the reload did not finish within {RELOAD_TIMEOUT:?} (rows in flight are still being written); the daemon logs its outcome"
                    ),
                },
            }
        }
        other => match respond_request(other) {
            Ok(Some((command, answer))) => {
                if requests.send(Request::Respond(command)).await.is_err() {
                    return gone();
                }
                match tokio::time::timeout(RESPOND_TIMEOUT, answer).await {
                    Ok(Some(a)) => a,
                    Ok(None) => gone(),
                    Err(_) => Answer::Error {
                        message: format!(
                            "the responder did not answer within {RESPOND_TIMEOUT:?}; the daemon logs what it did"
                        ),
                    },
                }
            }
            Ok(None) => Answer::Error {
                message: format!(
                    "unknown request {:?}: ask `status`, `reload`, `bans`, `ban TARGET [SECONDS]` or `unban TARGET|--all`",
                    other.chars().take(40).collect::<String>()
                ),
            },
            Err(message) => Answer::Error { message },
        },
    }
}

/// How long the responder may take to answer (a ban runs nft).
pub const RESPOND_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer to a responder request, when it comes.
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Answer>> + Send>>;

/// `bans`, `ban TARGET [SECONDS]`, `unban TARGET|--all` as a command for the responder and
/// the answer to wait for; `None` for another word.
fn respond_request(line: &str) -> Result<Option<(crate::respond::Command, Pending)>, String> {
    use crate::respond::Command;
    let words: Vec<&str> = line.split_whitespace().collect();
    let target = |w: Option<&&str>| {
        let w = w.ok_or("say which address or network")?;
        crate::respond::parse_net(w).ok_or_else(|| {
            format!(
                "{:?} is neither an address nor a network",
                w.chars().take(60).collect::<String>()
            )
        })
    };
    let done = |rx: oneshot::Receiver<Result<String, String>>| -> Pending {
        Box::pin(async move {
            rx.await.ok().map(|r| match r {
                Ok(message) => Answer::Done { message },
                Err(message) => Answer::Error { message },
            })
        })
    };
    match words.as_slice() {
        ["bans"] => {
            let (tx, rx) = oneshot::channel();
            let answer: Pending = Box::pin(async move {
                rx.await.ok().map(|r| match r {
                    Ok(bans) => Answer::Bans { bans },
                    Err(message) => Answer::Error { message },
                })
            });
            Ok(Some((Command::List(tx), answer)))
        }
        ["ban", rest @ ..] if rest.len() <= 2 => {
            let t = target(rest.first())?;
            let duration = match rest.get(1) {
                Some(s) => Some(Duration::from_secs(
                    s.parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or("the length is a number of seconds, at least 1")?,
                )),
                None => None,
            };
            let (tx, rx) = oneshot::channel();
            Ok(Some((
                Command::Ban {
                    target: t,
                    duration,
                    reply: tx,
                },
                done(rx),
            )))
        }
        ["unban", "--all"] => {
            let (tx, rx) = oneshot::channel();
            Ok(Some((
                Command::Unban {
                    target: None,
                    reply: tx,
                },
                done(rx),
            )))
        }
        ["unban", t] => {
            let t = target(Some(t))?;
            let (tx, rx) = oneshot::channel();
            Ok(Some((
                Command::Unban {
                    target: Some(t),
                    reply: tx,
                },
                done(rx),
            )))
        }
        _ => Ok(None),
    }
}

async fn write_answer(stream: &mut UnixStream, answer: &Answer) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(answer).expect("answers serialise");
    line.push(b'\n');
    stream.write_all(&line).await?;
    stream.shutdown().await
}

/// Why a client got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon answers on the socket.
    #[error("maillogsentinel is not running (nothing answers at {})", .0.display())]
    NotRunning(PathBuf),
    /// A socket is there but this user may not use it.
    #[error(
        "{0}: permission denied: run as root or as a member of the service's group (the socket is mode 0660)"
    )]
    Denied(PathBuf),
    /// The exchange failed.
    #[error("{path}: {message}")]
    Failed {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Sends `word` to the daemon whose state directory is `state_dir` and returns its answer
/// (blocking; `timeout` for the whole exchange).
pub fn request(state_dir: &Path, word: &str, timeout: Duration) -> Result<Answer, ClientError> {
    use std::io::{Read, Write};
    // Under the unit (ExecReload), the runtime directory is known: its socket is asked first,
    // whatever state_dir the configuration now says (a changed one applies at restart).
    let path = match std::env::var_os("RUNTIME_DIRECTORY") {
        Some(_) if socket_path(state_dir).exists() => socket_path(state_dir),
        _ => client_path(state_dir),
    };
    {
        let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(ClientError::Denied(path));
            }
            // Absent, or a socket left by a daemon that died.
            Err(_) => return Err(ClientError::NotRunning(path)),
        };
        let failed = |message: String| ClientError::Failed {
            path: path.clone(),
            message,
        };
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| failed(e.to_string()))?;
        stream
            .write_all(format!("{word}\n").as_bytes())
            .map_err(|e| failed(format!("cannot send the request: {e}")))?;
        let mut answer = Vec::new();
        stream
            .take(64 * 1024 * 1024)
            .read_to_end(&mut answer)
            .map_err(|e| failed(format!("no answer: {e}")))?;
        serde_json::from_slice(&answer)
            .map_err(|e| failed(format!("an answer this program cannot read ({e})")))
    }
}

/// `status` for a terminal: the one-line summary first, then tables.
pub fn render_status(s: &Status) -> String {
    let mut out = format!(
        "maillogsentinel {} running for {} (pid {}): {}\n",
        s.version,
        humantime::format_duration(Duration::from_secs(s.uptime_secs)),
        s.pid,
        s.summary
    );
    out.push_str(&format!(
        "configuration: {}\nstore: {}\n",
        s.config
            .as_ref()
            .map_or("built-in defaults".into(), |p| p.display().to_string()),
        s.store
    ));
    out.push_str("\nSources\n");
    let mut rows = vec![
        [
            "kind",
            "name",
            "state",
            "offset",
            "size",
            "lag (bytes)",
            "lag (s)",
            "last read",
        ]
        .map(String::from),
    ];
    let num = |n: Option<u64>| n.map_or("-".into(), |n| n.to_string());
    for src in &s.sources {
        rows.push([
            src.kind.clone(),
            src.name.clone(),
            src.state.clone(),
            num(src.offset),
            num(src.size),
            num(src.lag_bytes),
            num(src.lag_secs),
            src.last_read.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    if s.sources.is_empty() {
        out.push_str("  (none)\n");
    } else {
        table(
            &mut out,
            &rows,
            &[false, false, false, true, true, true, true, false],
        );
    }
    out.push_str(&format!(
        "\nStore: last commit {}\n",
        s.last_commit.as_deref().unwrap_or("none since start")
    ));
    let c = &s.counters;
    out.push_str("\nCounters since start\n");
    let counters: Vec<[String; 2]> = [
        ("lines read", c.lines),
        ("failed logins recorded", c.failures),
        ("logins recorded", c.logins),
        ("auth-backend failures", c.backend_failures),
        ("relay login failures", c.relay_auth_failures),
        ("connections without auth attempts", c.no_auth_attempts),
        ("plaintext logins refused", c.plaintext_refused),
        ("unrecognised SASL failure lines", c.unrecognised),
        ("lines too long (skipped)", c.too_long),
        ("journal entries without text", c.unreadable),
        ("rotations", c.rotations),
        ("truncations", c.truncations),
        ("commits", c.checkpoints),
    ]
    .into_iter()
    .map(|(k, v)| [k.to_string(), v.to_string()])
    .collect();
    table(&mut out, &counters, &[false, true]);
    if !s.by_service.is_empty() {
        out.push_str("\nBy service\n");
        let mut rows = vec![["service", "mechanism", "outcome", "rows"].map(String::from)];
        rows.extend(s.by_service.iter().map(|k| {
            [
                k.service.clone(),
                k.mechanism.clone(),
                k.outcome.clone(),
                k.count.to_string(),
            ]
        }));
        table(&mut out, &rows, &[false, false, false, true]);
    }
    let e = &s.enrichment;
    let asked = e.cache_hits + e.cache_misses;
    out.push_str(&format!(
        "\nEnrichment\n  reverse DNS: {} timeouts; cache: {} entries, {} hits, {} misses{}\n",
        e.dns_timeouts,
        e.cache_entries,
        e.cache_hits,
        e.cache_misses,
        if asked > 0 {
            format!(
                " ({:.0} % hits)",
                e.cache_hits as f64 * 100.0 / asked as f64
            )
        } else {
            String::new()
        }
    ));
    for g in &e.geoip {
        out.push_str(&format!(
            "  GeoIP {} database {}: {}\n",
            g.what,
            g.path.display(),
            g.database
                .as_deref()
                .unwrap_or("MISSING (maillogsentinel geoip update)")
        ));
    }
    out.push_str(&format!(
        "\nReports: last window ended {}, next {}, {} waiting in the outbox\n",
        s.last_report.as_deref().unwrap_or("(none yet)"),
        s.next_report.as_deref().unwrap_or("not scheduled"),
        s.outbox
    ));
    if s.outbox_refused > 0 {
        out.push_str(&format!(
            "REFUSED: {} mail(s) refused for good by the mail server (5xx), kept in outbox/failed/ and not retried: see the log and the .json beside each\n",
            s.outbox_refused
        ));
    }
    if let Some(m) = &s.metrics {
        out.push_str(&format!("Metrics: http://{m}/metrics\n"));
    }
    if let Some(r) = &s.response {
        out.push_str(&format!(
            "Response ({}): {} bans running; since start {} bans ({} failed to apply), {} failures of protected addresses not counted, {} addresses forgiven after a login\n",
            if r.mode == "log" { "log only" } else { "ban" },
            r.active,
            r.bans,
            r.failed,
            r.spared,
            r.forgiven
        ));
    }
    out
}

/// Appends `rows` (the first is the header) as aligned columns, numbers right-aligned.
fn table<const N: usize>(out: &mut String, rows: &[[String; N]], numeric: &[bool; N]) {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut line = String::from(" ");
        for i in 0..N {
            let pad = widths[i] - r[i].chars().count();
            line.push(' ');
            if numeric[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(&r[i]);
            } else {
                line.push_str(&r[i]);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_through_json() {
        let a = Answer::Reload(ReloadAnswer {
            ok: false,
            changes: vec![],
            problems: vec!["config.toml line 3: bad".into()],
            notes: vec![],
        });
        let text = serde_json::to_string(&a).unwrap();
        assert!(text.contains("\"answer\":\"reload\""), "{text}");
        match serde_json::from_str::<Answer>(&text).unwrap() {
            Answer::Reload(r) => assert_eq!(r.problems, ["config.toml line 3: bad"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_answer_serialises_and_responder_requests_are_read() {
        let view = crate::respond::responder::BanView {
            target: "203.0.113.5/32".into(),
            rule: "per-address".into(),
            started: 1,
            expires: 2,
            remaining_secs: 1,
            ip: "203.0.113.5".into(),
            username: "x".into(),
            country: "".into(),
            asn: None,
            as_org: "".into(),
            mode: "ban".into(),
            outcome: "ok".into(),
        };
        for a in [
            Answer::Bans { bans: vec![view] },
            Answer::Done {
                message: "banned".into(),
            },
        ] {
            let text = serde_json::to_string(&a).unwrap();
            let back: Answer = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
        assert!(respond_request("bans").unwrap().is_some());
        assert!(respond_request("ban 203.0.113.5 60").unwrap().is_some());
        assert!(respond_request("unban --all").unwrap().is_some());
        assert!(respond_request("ban example.org").is_err());
        assert!(respond_request("ban 203.0.113.5 soon").is_err());
        assert!(respond_request("status2").unwrap().is_none());
    }

    #[test]
    fn a_socket_in_the_runtime_directory_is_found_through_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (state, run) = (dir.path().join("state"), dir.path().join("run"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let socket = run.join(SOCKET_NAME);
        let listener = bind(&socket).unwrap();
        link_from_state_dir(&state, &socket).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&socket).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o660);
        assert!(std::os::unix::net::UnixStream::connect(client_path(&state)).is_ok());
        // A later daemon without a runtime directory replaces the link with its socket.
        drop(listener);
        let again = bind(&client_path(&state)).unwrap();
        assert!(
            std::fs::symlink_metadata(client_path(&state))
                .unwrap()
                .file_type()
                .is_socket()
        );
        drop(again);
        assert!(!client_path(&state).exists());
    }
}
