//! A throwaway PostgreSQL cluster for a test: Debian's `postgresql` package's `initdb` and
//! `pg_ctl`, a data directory in a temp dir, the server on 127.0.0.1 at a free port (and its
//! socket in the temp dir), stopped and removed when dropped. Run as the `postgres` user when
//! the tests run as root (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A TCP port nobody listens on now (the kernel's choice for port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running cluster.
pub struct PgCluster {
    /// The server's port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
    as_postgres: bool,
}

/// The directory of the newest installed PostgreSQL's programs.
fn bindir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// Whether the tests run as root (from `id -u`: the tests use no libc call for it).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgCluster {
    /// Starts a cluster, or says why it cannot and returns `None` (the caller skips, saying
    /// so).
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = bindir() else {
            eprintln!(
                "skipped: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; apt-get install postgresql)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let ok = Command::new("chown")
                .args([
                    "-R",
                    "postgres:",
                    data.to_str().unwrap(),
                    dir.path().to_str().unwrap(),
                ])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown to postgres");
        }
        let c = PgCluster {
            port: free_port(),
            bin,
            data,
            _dir: dir,
            as_postgres,
        };
        let out = c
            .command("initdb")
            .args([
                "-D",
                c.data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-locale",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        c.start_server();
        Some(c)
    }

    /// A PostgreSQL program, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn socket_dir(&self) -> &Path {
        self.data.parent().unwrap()
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_server(&self) {
        self.start_server_with("");
    }

    /// Restarts the server with TLS only (a certificate for `localhost` signed by a test
    /// authority, both made here with openssl; clients without TLS refused); returns the
    /// authority's certificate (PEM).
    pub fn restart_with_tls_only(&self) -> PathBuf {
        self.stop_server();
        let dir = self.socket_dir();
        let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
        let ca = dir.join("ca.crt");
        let ext = dir.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
        // A certificate authority, and the server's certificate for `localhost` signed by it.
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.crt"),
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("server.ext"),
            "-out",
            &p("server.crt"),
        ]);
        std::fs::write(
            self.data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        if self.as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:", cert.to_str().unwrap(), key.to_str().unwrap()])
                .arg(self.data.join("pg_hba.conf"))
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.start_server_with(&format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert.display(),
            key.display()
        ));
        ca
    }

    fn start_server_with(&self, extra: &str) {
        let log = self.socket_dir().join("server.log");
        let out = self
            .command("pg_ctl")
            .args([
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-o",
                &format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off{extra}",
                    self.port,
                    self.socket_dir().display()
                ),
                "start",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast: sessions are disconnected).
    pub fn stop_server(&self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ])
            .output();
    }

    /// A new empty database; returns its URL.
    pub fn create_db(&self, name: &str) -> String {
        let mut c = self.client("postgres");
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.url(name)
    }

    /// The URL of database `name` (as `postgres`, no TLS).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// The URL of database `name` through the server's Unix socket (reachable from another
    /// network namespace, where 127.0.0.1 is not this one's).
    pub fn socket_url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@localhost/{name}?host={}&port={}&sslmode=disable",
            self.socket_dir().display(),
            self.port
        )
    }

    /// A client to database `name`.
    pub fn client(&self, name: &str) -> postgres::Client {
        postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname={name}",
                self.port
            ),
            postgres::NoTls,
        )
        .unwrap()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop_server();
    }
}
