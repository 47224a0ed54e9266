//! Long output through a pager when stdout is a terminal, as git does it: the command in
//! `$MAILLOGSENTINEL_PAGER`, else `$PAGER`, else `less`, run by `sh -c` (a pager setting is a
//! command line, as for git), with `LESS=FRX` unless `LESS` is set: quit at once when the
//! text fits one screen, pass the bold headings through, leave the text on the screen.
//!
//! An empty setting or `cat` means no pager; a pager that cannot be started (or that the
//! shell cannot find: exit 126 or 127) is not an error, the text is printed instead.
//! `LESSSECURE=1` is set: a report run through sudo must not open a shell from `less`.

use std::io::Write;
use std::process::{Command, Stdio};

/// The pager command the environment asks for (`None`: print directly).
pub fn command() -> Option<String> {
    choose(|name| std::env::var(name).ok())
}

/// The pager command, given how to read a variable of the environment.
fn choose(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let cmd = var("MAILLOGSENTINEL_PAGER")
        .or_else(|| var("PAGER"))
        .unwrap_or_else(|| "less".into());
    let cmd = cmd.trim();
    (!cmd.is_empty() && cmd != "cat").then(|| cmd.to_string())
}

/// Shows `text` through the pager, or prints it when there is none.
pub fn show(text: &str) {
    let Some(cmd) = command() else {
        print!("{text}");
        return;
    };
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(&cmd)
        .stdin(Stdio::piped())
        .env("LESSSECURE", "1");
    if std::env::var_os("LESS").is_none() {
        c.env("LESS", "FRX");
    }
    let Ok(mut child) = c.spawn() else {
        print!("{text}");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        // The reader may quit before the end (`q` in less): a broken pipe is no error.
        let _ = stdin.write_all(text.as_bytes());
    }
    // The shell ran, but not the pager (not installed, not executable).
    if child
        .wait()
        .is_ok_and(|s| matches!(s.code(), Some(126 | 127)))
    {
        print!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_chooses_the_pager() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        const BOTH: [(&str, &str); 2] = [("MAILLOGSENTINEL_PAGER", "most"), ("PAGER", "more")];
        assert_eq!(choose(env(&BOTH)).as_deref(), Some("most"));
        assert_eq!(
            choose(env(&[("PAGER", "more -s")])).as_deref(),
            Some("more -s")
        );
        assert_eq!(choose(env(&[("PAGER", "cat")])), None);
        assert_eq!(choose(env(&[("PAGER", " ")])), None);
        assert_eq!(choose(env(&[])).as_deref(), Some("less"));
    }
}
