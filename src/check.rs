//! `maillogsentinel check`'s look at the host: whether what the configuration names is there
//! and usable by the user running it, every problem at once (not the first one). The syntax
//! and the values were checked when the configuration was read; this is the rest: the logs
//! readable, the state directory and the records writable, the GeoIP databases openable, the
//! DNS servers answering, the SMTP server reachable by name (and, with `--smtp`, saying EHLO),
//! the PostgreSQL store connecting, the journal readable.
//!
//! Nothing is written except a probe file created and removed at once in each directory that
//! must be writable (the only test that also holds with ACLs and read-only mounts).

use std::path::{Path, PathBuf};

use crate::config::Config;

/// One thing looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// It is as it should be.
    pub ok: bool,
    /// What was found, and for a problem, what to do.
    pub text: String,
}

impl Finding {
    fn ok(text: String) -> Finding {
        Finding { ok: true, text }
    }

    fn problem(text: String) -> Finding {
        Finding { ok: false, text }
    }
}

/// Looks at the host for `config`; `smtp` also connects to the SMTP server and says EHLO.
/// `runtime` runs the DNS probe.
pub fn host(config: &Config, smtp: bool, runtime: &tokio::runtime::Runtime) -> Vec<Finding> {
    let mut out = Vec::new();
    let choice = config.journal.choose(&config.files);
    if choice.files {
        for f in &config.files {
            out.push(readable_log(f));
        }
    }
    if choice.journal {
        let what = config.journal.describe();
        out.push(
            match crate::source::journal::JournalReader::check_readable(&config.journal) {
                Ok(()) => Finding::ok(format!("{what} is readable by this user")),
                Err(e) => Finding::problem(format!("{what} cannot be read: {e}")),
            },
        );
    }
    out.push(writable_dir(&config.state_dir, "the state directory"));
    match config.store {
        crate::store::StoreKind::Csv => {
            out.push(writable_file(&config.csv, "the intrusion record"));
            if let Some(l) = &config.logins {
                out.push(writable_file(l, "the logins record"));
            }
        }
        crate::store::StoreKind::Sqlite => {
            out.push(writable_file(&config.sqlite, "the SQLite store"));
            // WAL mode writes `-wal` and `-shm` files beside the database.
            if config.sqlite.exists()
                && let Some(dir) = config.sqlite.parent()
            {
                out.push(writable_dir(dir, "the SQLite store's directory"));
            }
        }
        crate::store::StoreKind::Postgres => out.push(postgres(config)),
    }
    for (what, path) in [
        ("country", &config.enrich.country_db),
        ("ASN", &config.enrich.asn_db),
    ] {
        if let Some(p) = path {
            out.push(match crate::enrich::geoip::Database::open(p) {
                Ok(db) => Finding::ok(format!(
                    "the {what} database {} opens: {}",
                    p.display(),
                    db.describe()
                )),
                Err(e) => Finding::problem(format!(
                    "{e}: run `maillogsentinel geoip update` (the {what} columns stay empty meanwhile)"
                )),
            });
        }
    }
    if let Some(dns) = &config.enrich.dns {
        out.push(dns_answers(dns, runtime));
    }
    if let Some(mail) = &config.report_mail {
        out.extend(smtp_server(&mail.transport, smtp));
    }
    out.extend(response(&config.response));
    out
}

/// `[response]`: whether this user can change nftables, and whether the command can run.
fn response(r: &crate::respond::ResponseSettings) -> Vec<Finding> {
    let mut out = Vec::new();
    if !r.enabled || r.mode == crate::respond::Mode::Log {
        return out;
    }
    if r.nftables {
        out.push(match crate::respond::nft::Nft::new(r.ipv6_prefix).probe() {
            Ok(()) => Finding::ok("nftables can be changed by this user ([response])".into()),
            Err(e) => Finding::problem(e.to_string()),
        });
    }
    if let Some(program) = r.exec.first() {
        use std::os::unix::fs::PermissionsExt;
        let p = Path::new(program);
        out.push(match std::fs::metadata(p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Finding::ok(format!(
                "the [response] exec command {} is there",
                p.display()
            )),
            Ok(_) => Finding::problem(format!(
                "the [response] exec command {} is not an executable file (chmod +x it)",
                p.display()
            )),
            Err(e) => Finding::problem(format!("the [response] exec command {}: {e}", p.display())),
        });
    }
    out
}

fn readable_log(path: &Path) -> Finding {
    match std::fs::File::open(path) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => {
            Finding::ok(format!("{} is readable", path.display()))
        }
        Ok(_) => Finding::problem(format!(
            "{} is not a regular file: point sources.files at the log file",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Finding::problem(format!(
            "{} does not exist: check sources.files (or the mail server's logging: rsyslog writes it, or set journal = \"auto\" to read the journal instead)",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Finding::problem(format!(
            "{} cannot be read by this user: {e} (add the user to the log's group, usually adm: `adduser maillogsentinel adm`)",
            path.display()
        )),
        Err(e) => Finding::problem(format!("{} cannot be read: {e}", path.display())),
    }
}

/// The nearest directory of `path` (itself included) that exists.
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.is_dir())
}

/// Whether a file can be created (and removed) in `dir`.
fn probe(dir: &Path) -> std::io::Result<()> {
    let p = dir.join(format!(".maillogsentinel-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)?;
    std::fs::remove_file(&p)
}

fn writable_dir(dir: &Path, what: &str) -> Finding {
    if dir.exists() && !dir.is_dir() {
        return Finding::problem(format!(
            "{what} {} is not a directory: move what is there, or choose another path",
            dir.display()
        ));
    }
    if dir.is_dir() {
        return match probe(dir) {
            Ok(()) => Finding::ok(format!("{what} {} is writable", dir.display())),
            Err(e) => Finding::problem(format!(
                "{what} {} is not writable by this user: {e} (it belongs to the service user: `chown -R maillogsentinel: {}`)",
                dir.display(),
                dir.display()
            )),
        };
    }
    match existing_ancestor(dir) {
        Some(up) => match probe(up) {
            Ok(()) => Finding::ok(format!(
                "{what} {} does not exist yet and can be created",
                dir.display()
            )),
            Err(e) => Finding::problem(format!(
                "{what} {} does not exist and cannot be created in {}: {e} (create it for the service user: `install -d -o maillogsentinel -m 0750 {}`)",
                dir.display(),
                up.display(),
                dir.display()
            )),
        },
        None => Finding::problem(format!("{what} {}: no such place", dir.display())),
    }
}

fn writable_file(path: &Path, what: &str) -> Finding {
    if path.exists() {
        return match std::fs::OpenOptions::new().append(true).open(path) {
            Ok(_) => Finding::ok(format!("{what} {} is writable", path.display())),
            Err(e) => Finding::problem(format!(
                "{what} {} is not writable by this user: {e} (`chown maillogsentinel: {}`)",
                path.display(),
                path.display()
            )),
        };
    }
    let dir = path.parent().map_or(PathBuf::from("."), Path::to_path_buf);
    let f = writable_dir(&dir, &format!("the directory of {what}"));
    Finding {
        ok: f.ok,
        text: if f.ok {
            format!("{what} {} will be created ({})", path.display(), f.text)
        } else {
            f.text
        },
    }
}

fn postgres(config: &Config) -> Finding {
    let Some(settings) = &config.postgres else {
        return Finding::problem("store = \"postgres\" needs [output] postgres".into());
    };
    match crate::store::postgres::PgDb::open(settings) {
        Ok(_) => Finding::ok(format!(
            "the PostgreSQL store {} connects",
            settings.name().display()
        )),
        Err(e) => Finding::problem(format!(
            "{e} (is the server up, the database created, the user allowed in pg_hba.conf?)"
        )),
    }
}

fn dns_answers(
    dns: &crate::enrich::dns::DnsSettings,
    runtime: &tokio::runtime::Runtime,
) -> Finding {
    use crate::enrich::DnsStatus;
    let _guard = runtime.enter();
    let servers = if dns.servers.is_empty() {
        "the system's, from /etc/resolv.conf".to_string()
    } else {
        dns.servers
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let resolver = match crate::enrich::dns::ReverseDns::new(dns.clone()) {
        Ok(r) => r,
        Err(e) => return Finding::problem(format!("reverse DNS cannot be set up: {e}")),
    };
    // Any answer counts (a name, or none): only silence or a failure is a problem. An address
    // of a documentation range, which no hosts file names, so that a server is asked.
    let probe: std::net::IpAddr = [192, 0, 2, 1].into();
    let answer = runtime.block_on(resolver.lookup(probe));
    match answer.status {
        DnsStatus::Ok | DnsStatus::Nxdomain | DnsStatus::Mismatch => {
            Finding::ok(format!("the DNS servers ({servers}) answer"))
        }
        DnsStatus::Timeout => Finding::problem(format!(
            "the DNS servers ({servers}) do not answer within the timeout: check [enrich] dns_servers (or /etc/resolv.conf), or turn reverse_dns off"
        )),
        other => Finding::problem(format!(
            "the DNS servers ({servers}) fail to answer ({}): check [enrich] dns_servers",
            other.as_str()
        )),
    }
}

fn smtp_server(transport: &crate::report::mail::Transport, connect: bool) -> Vec<Finding> {
    use crate::report::mail::Transport;
    let Transport::Smtp { host, port, .. } = transport else {
        return vec![match which_sendmail() {
            Some(p) => Finding::ok(format!("reports go through {}", p.display())),
            None => Finding::problem(
                "[report] transport = \"sendmail\" but no sendmail is installed (install the mail server's, or use transport = \"smtp\")".into(),
            ),
        }];
    };
    use std::net::ToSocketAddrs;
    let resolved = match (host.as_str(), *port)
        .to_socket_addrs()
        .map(|mut a| a.next())
    {
        Ok(Some(_)) => Finding::ok(format!("the SMTP server {host} resolves")),
        Ok(None) => Finding::problem(format!(
            "the SMTP server {host} has no address: check [report.smtp] host"
        )),
        Err(e) => Finding::problem(format!(
            "the SMTP server {host} does not resolve: {e} (check [report.smtp] host)"
        )),
    };
    let mut out = vec![resolved];
    if connect && out[0].ok {
        out.push(
            match crate::report::mail::smtp_transport(transport)
                .map_err(|e| e.to_string())
                .and_then(|t| t.test_connection().map_err(|e| e.to_string()))
            {
                Ok(true) => Finding::ok(format!(
                    "the SMTP server {host}:{port} answers EHLO (nothing was sent)"
                )),
                Ok(false) => Finding::problem(format!(
                    "the SMTP server {host}:{port} did not accept the connection"
                )),
                Err(e) => Finding::problem(format!(
                    "the SMTP server {host}:{port}: {e} (check [report.smtp] host, port, security and the credentials)"
                )),
            },
        );
    }
    out
}

fn which_sendmail() -> Option<PathBuf> {
    ["/usr/sbin/sendmail", "/usr/lib/sendmail"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_where_a_directory_should_be_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state");
        std::fs::write(&file, "").unwrap();
        let f = writable_dir(&file, "the state directory");
        assert!(!f.ok && f.text.contains("is not a directory"), "{f:?}");
    }

    #[test]
    fn a_missing_directory_is_fine_when_it_can_be_created() {
        let dir = tempfile::tempdir().unwrap();
        let f = writable_dir(&dir.path().join("a/b"), "the state directory");
        assert!(f.ok, "{f:?}");
        let f = writable_file(&dir.path().join("out/x.csv"), "the intrusion record");
        assert!(f.ok && f.text.contains("will be created"), "{f:?}");
        let f = readable_log(&dir.path().join("mail.log"));
        assert!(!f.ok && f.text.contains("does not exist"), "{f:?}");
        // Nothing was left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
