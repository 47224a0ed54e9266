//! A real SMTP server on loopback for the report tests: Python's aiosmtpd with its Maildir
//! handler, run as its own process. `.ci/run` installs aiosmtpd; when it is missing here, it is
//! installed once into a virtualenv under `target/` (PyPI is reachable from these machines).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::wait_until;

/// The Python that has aiosmtpd.
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let has = |py: &Path| {
            Command::new(py)
                .args(["-c", "import aiosmtpd"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let system = PathBuf::from("python3");
        if has(&system) {
            return system;
        }
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
        let py = venv.join("bin/python3");
        if !has(&py) {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new(&py)
                    .args(["-m", "pip", "install", "--quiet", "aiosmtpd"])
                    .status()
                    .is_ok_and(|s| s.success());
            assert!(
                ok && has(&py),
                "the report tests need Python's aiosmtpd: python3 -m pip install aiosmtpd"
            );
        }
        py
    })
}

/// A free port on 127.0.0.1 (released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running aiosmtpd delivering into a Maildir; stopped when dropped.
pub struct SmtpServer {
    /// Its port.
    pub port: u16,
    /// The Maildir.
    pub maildir: PathBuf,
    child: Child,
}

impl SmtpServer {
    /// Starts a server on `port` delivering into `dir/maildir`.
    pub fn start_on(dir: &Path, port: u16) -> SmtpServer {
        let maildir = dir.join("maildir");
        let child = Command::new(python())
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "aiosmtpd did not listen on {port}");
        SmtpServer {
            port,
            maildir,
            child,
        }
    }

    /// The messages delivered so far, raw.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) {
                let mut paths: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                paths.sort();
                out.extend(paths.iter().filter_map(|p| std::fs::read(p).ok()));
            }
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
