//! Clean-up that runs once this process has exited, however it exited.
//!
//! Rust runs no destructors for statics, and a test process may be killed or abort, so the
//! things a process leaves on a server (a throwaway cluster, a template database) are removed
//! by a small detached shell process that polls `kill -0 <pid>` and then runs the clean-up.
//! It is put in a process group of its own, so a Ctrl-C in the terminal (which signals the
//! whole foreground group) stops the tests but not their clean-up.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// How often the watchdog checks whether this process is still alive, in the shell's `sleep`
/// syntax.
const POLL: &str = "0.5";

/// Starts a detached `sh` that runs `cleanup` (shell code) once this process has exited, with
/// `envs` added to its environment (credentials go there, never into a command line that `ps`
/// would show). Failing to start it is logged, not returned: the tests can still run.
///
/// `cleanup` runs under `/bin/sh`, which is `dash` on Debian: its `kill` takes no `--`
/// (`kill -9 -- -<pgid>` fails and kills nothing), so a process group is `kill -9 -<pgid>`.
pub(crate) fn after_exit(what: &str, cleanup: &str, envs: &[(String, String)]) {
    let script = format!(
        "trap '' INT HUP; while kill -0 {pid} 2>/dev/null; do sleep {POLL}; done; {cleanup}",
        pid = std::process::id(),
    );
    let spawned = Command::new("sh")
        .args(["-c", &script])
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    match spawned {
        Ok(_child) => tracing::debug!(what, "armed an exit watchdog"),
        Err(error) => tracing::warn!(
            %error,
            what,
            "could not start the exit watchdog; clean up by hand after the tests"
        ),
    }
}

/// `value` quoted for `sh`: inside single quotes, where only `'` itself needs care.
pub(crate) fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() -> std::io::Result<()> {
        let tricky = "it's a $HOME `dir` \"x\"";
        let out = Command::new("sh")
            .args(["-c", &format!("printf %s {}", sh_quote(tricky))])
            .output()?;
        assert_eq!(String::from_utf8_lossy(&out.stdout), tricky);
        Ok(())
    }
}
