//! Python virtual environments the tests build once per machine (Celery, Temporal's CLI).

use std::path::Path;
use std::process::Command;

/// Builds a venv with `requirements` at `dir`: in a directory of its own first, renamed into
/// place when complete, so a build that fails or races another leaves nothing half made.
/// `ready` says whether `dir` holds a usable venv (another process may finish first).
/// The error is the failing step's output.
pub(crate) fn build(
    dir: &Path,
    requirements: &[&str],
    ready: impl Fn(&Path) -> bool,
) -> Result<(), String> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    let building = parent.join(format!(
        ".{}-building-{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("venv"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&building);
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&building))?;
    run(Command::new(building.join("bin/pip"))
        .args(["install", "--quiet"])
        .args(requirements))?;
    // Scripts' shebangs still name the build path after the rename; the tests use
    // `bin/python` (which works from anywhere) and binaries, never those scripts.
    match std::fs::rename(&building, dir) {
        Ok(()) => Ok(()),
        Err(_) if ready(dir) => {
            let _ = std::fs::remove_dir_all(&building);
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
