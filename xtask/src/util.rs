//! Small helpers shared by the xtask subcommands: running commands, root checks, paths.

use anyhow::{Context as _, Result, bail};
use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// The workspace root (xtask lives in `<root>/xtask`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// `cargo` from PATH (the rustup proxy, so `+nightly` keeps working in nested builds),
/// run from the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(repo_root());
    cmd
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `$CARGO_HOME/bin`, or `~/.cargo/bin`.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(home).join("bin"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo").join("bin"))
}

/// Put the cargo bin directory at the front of PATH when it exists and is missing.
pub fn ensure_cargo_bin_on_path() {
    let Some(dir) = cargo_bin_dir() else { return };
    if !dir.is_dir() {
        return;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == dir) {
        return;
    }
    let mut dirs = vec![dir];
    dirs.extend(std::env::split_paths(&path));
    if let Ok(joined) = std::env::join_paths(dirs) {
        // SAFETY: called at the start of main, before xtask starts any thread.
        unsafe { std::env::set_var("PATH", joined) };
    }
}

/// Whether an executable called `name` is on PATH.
pub fn on_path(name: &str) -> bool {
    find_on_path(name).is_some()
}

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// PATH with `dir` prepended, for one child command.
pub fn path_with(dir: &Path) -> OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    std::env::join_paths(dirs).unwrap_or(path)
}

/// A shell-like rendering of a command, for messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Run a command with inherited stdio; error unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Run a command quietly and return its stdout; error unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = show(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a command starts and exits 0 (all output discarded).
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run a command, copying its stdout line by line to ours as it arrives (so long test
/// runs show progress) while also keeping it; stderr is inherited.
pub fn run_tee(cmd: &mut Command) -> Result<(ExitStatus, String)> {
    let shown = show(cmd);
    println!("$ {shown}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let mut captured = String::new();
    let reader = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut out = std::io::stdout().lock();
    for line in reader.split(b'\n') {
        let line = line.with_context(|| format!("reading output of `{shown}`"))?;
        let line = String::from_utf8_lossy(&line);
        // Best effort: a closed terminal must not abort the run.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        captured.push_str(&line);
        captured.push('\n');
    }
    drop(out);
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{shown}`"))?;
    Ok((status, captured))
}

/// Set by Ctrl-C once [`catch_sigint`] is in place.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Catch SIGINT, for long jobs that must clean up after Ctrl-C: they poll
/// [`check_interrupted`]. A handler, not SIG_IGN: an ignored signal would be inherited
/// by the children (and cowtrace must still stop on SIGINT); a handler is reset to the
/// default on exec.
pub fn catch_sigint() {
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
}

/// An error once Ctrl-C was pressed.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}
