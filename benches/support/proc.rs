//! The daemon as a process for the benches: started on a config, stopped with SIGTERM, in a
//! fresh directory under target/bench-data.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts `bin run -c cfg` logging at `level` into `dir/daemon.log`, and waits until its CSV
/// (`dir/out.csv`) exists (it is ready to record).
pub fn start(bin: &str, cfg: &Path, dir: &Path, level: &str) -> Child {
    let child = Command::new(bin)
        .args(["run", "-c", cfg.to_str().unwrap()])
        .env("MAILLOGSENTINEL_LOG", level)
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    while !dir.join("out.csv").exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Stops the daemon with SIGTERM and waits for it.
pub fn stop(mut child: Child) {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
}

/// An empty `target/bench-data/NAME`.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-data")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
