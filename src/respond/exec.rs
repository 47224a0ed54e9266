//! The `exec` action: a command of the postmaster's, run for each ban (a cloud firewall, a
//! router, a ticket).
//!
//! The program is run directly, never through a shell: `{ip}`, `{key}`, `{rule}`, `{duration}`
//! and `{username}` are replaced inside the configured arguments, and each argument stays one
//! argument whatever the replacement holds (a username is the attacker's text: `$(...)`, `;`
//! or a newline in it are bytes of one argument, nothing more). The command gets no input and
//! `exec_timeout` to finish; one that runs longer is killed. Its outcome goes to the ban record.

use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

/// The facts of a ban, as the command's arguments may name them.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The address whose failure made the ban.
    pub ip: String,
    /// What is banned (an address or a network, with its prefix length).
    pub key: String,
    /// The rule's name.
    pub rule: &'a str,
    /// The ban's length in seconds.
    pub duration: u64,
    /// The username the address tried ("" when none).
    pub username: &'a str,
}

/// `template`'s arguments with the facts put in.
pub fn arguments(template: &[String], f: &Facts<'_>) -> Vec<String> {
    template
        .iter()
        .map(|a| {
            // One pass, so that a value holding "{rule}" is not replaced again.
            let mut out = String::with_capacity(a.len());
            let mut rest = a.as_str();
            while let Some(i) = rest.find('{') {
                out.push_str(&rest[..i]);
                let tail = &rest[i..];
                let (value, len) = [
                    ("{ip}", f.ip.as_str()),
                    ("{key}", f.key.as_str()),
                    ("{rule}", f.rule),
                    ("{username}", f.username),
                ]
                .into_iter()
                .find(|(name, _)| tail.starts_with(name))
                .map(|(name, v)| (v.to_string(), name.len()))
                .or_else(|| {
                    tail.starts_with("{duration}")
                        .then(|| (f.duration.to_string(), "{duration}".len()))
                })
                .unwrap_or_else(|| ("{".to_string(), 1));
                out.push_str(&value);
                rest = &tail[len..];
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// Runs `template` for a ban; `Ok` with how it ended, or why it could not run.
pub fn run(template: &[String], facts: &Facts<'_>, timeout: Duration) -> Result<(), String> {
    let args = arguments(template, facts);
    let Some((program, rest)) = args.split_first() else {
        return Ok(());
    };
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    match child.wait_timeout(timeout) {
        Ok(Some(status)) if status.success() => Ok(()),
        Ok(Some(status)) => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = (&mut e).take(512).read_to_string(&mut err);
            }
            Err(format!(
                "{program} {status}{}{}",
                if err.trim().is_empty() { "" } else { ": " },
                crate::enrich::printable(err.trim())
            ))
        }
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "{program} did not finish within {}: killed",
                humantime::format_duration(timeout)
            ))
        }
        Err(e) => Err(format!("{program}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(username: &'a str) -> Facts<'a> {
        Facts {
            ip: "203.0.113.5".into(),
            key: "203.0.113.5/32".into(),
            rule: "per-address",
            duration: 3600,
            username,
        }
    }

    #[test]
    fn placeholders_are_replaced_once_and_hostile_text_stays_one_argument() {
        let t: Vec<String> = [
            "/bin/ban",
            "--ip={ip}",
            "{key}",
            "{rule}",
            "{duration}s",
            "{username}",
            "{other}",
        ]
        .map(String::from)
        .to_vec();
        let a = arguments(&t, &facts("$(touch /tmp/x); {rule}\nrm -rf /"));
        assert_eq!(
            a,
            [
                "/bin/ban",
                "--ip=203.0.113.5",
                "203.0.113.5/32",
                "per-address",
                "3600s",
                "$(touch /tmp/x); {rule}\nrm -rf /",
                "{other}"
            ]
        );
    }

    #[test]
    fn a_command_that_fails_or_hangs_is_reported() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(run(&t(&["true"]), &facts(""), Duration::from_secs(5)).is_ok());
        let e = run(
            &t(&["sh", "-c", "echo no >&2; exit 3", "x"]),
            &facts(""),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.contains("3") && e.contains("no"), "{e}");
        let e = run(&t(&["sleep", "5"]), &facts(""), Duration::from_millis(100)).unwrap_err();
        assert!(e.contains("killed"), "{e}");
        let e = run(
            &t(&["/nonexistent/ban"]),
            &facts(""),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
    }
}
