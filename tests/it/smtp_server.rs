//! A real SMTP server on loopback for the report tests: Python's aiosmtpd with its Maildir
//! handler, run as its own process. `.ci/run` installs aiosmtpd; when it is missing here, it is
//! installed once into a virtualenv under `target/` (PyPI is reachable from these machines).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

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

/// The server: aiosmtpd's `Controller` (which binds before `start()` returns, and raises
/// when the port is taken) with its Maildir handler, or one refusing every recipient for good
/// (a 550, as Postfix says "User unknown"), writing each refused recipient to a file so that
/// the tests can count the attempts. It prints `ready` once it listens.
const SERVER: &str = r#"
import sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
mode, port, maildir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class Refuse:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with open(maildir + ".refused", "a") as f:
            f.write(address + "\n")
        return "550 5.1.1 <%s>: Recipient address rejected: User unknown in virtual mailbox table" % address
handler = Mailbox(maildir) if mode == "deliver" else Refuse()
c = Controller(handler, hostname="127.0.0.1", port=port)
try:
    c.start()
except Exception as e:
    print("error", e, flush=True)
    sys.exit(1)
print("ready", flush=True)
threading.Event().wait()
"#;

/// A running aiosmtpd delivering into a Maildir (or refusing); stopped when dropped.
pub struct SmtpServer {
    /// Its port.
    pub port: u16,
    /// The Maildir.
    pub maildir: PathBuf,
    child: Child,
}

impl SmtpServer {
    /// Starts a server delivering into `dir/maildir` on a free port.
    pub fn start(dir: &Path) -> SmtpServer {
        Self::start_free(dir, "deliver")
    }

    /// Starts a server that refuses every recipient for good (550), on a free port.
    pub fn start_refusing(dir: &Path) -> SmtpServer {
        Self::start_free(dir, "refuse")
    }

    fn start_free(dir: &Path, mode: &str) -> SmtpServer {
        // A port found free may be taken by another test before the server binds it: then
        // another one.
        for _ in 0..10 {
            if let Some(s) = Self::try_start(dir, free_port(), mode) {
                return s;
            }
        }
        panic!("aiosmtpd could not listen on any of 10 free ports");
    }

    /// Starts a server on `port` delivering into `dir/maildir` (the port must be free).
    pub fn start_on(dir: &Path, port: u16) -> SmtpServer {
        Self::try_start(dir, port, "deliver")
            .unwrap_or_else(|| panic!("aiosmtpd did not listen on {port}"))
    }

    /// Starts a server on `port` refusing every recipient for good; `None` when the port
    /// was taken meanwhile.
    pub fn try_refusing_on(dir: &Path, port: u16) -> Option<SmtpServer> {
        Self::try_start(dir, port, "refuse")
    }

    fn try_start(dir: &Path, port: u16, mode: &str) -> Option<SmtpServer> {
        use std::io::BufRead as _;
        let maildir = dir.join("maildir");
        let mut child = Command::new(python())
            .args(["-c", SERVER, mode, &port.to_string()])
            .arg(&maildir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        let mut line = String::new();
        let out = child.stdout.take().expect("piped");
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        Some(SmtpServer {
            port,
            maildir,
            child,
        })
    }

    /// Recipients the refusing server refused so far (one per attempt).
    pub fn refused(&self) -> Vec<String> {
        let mut p = self.maildir.clone().into_os_string();
        p.push(".refused");
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
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
