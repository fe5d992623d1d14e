//! The throwaway Redis of `demo`, `soak` and `bench`: how it is started, asked, waited
//! for and loaded, in one place (the tests have their own in agent/tests/common).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::util;

/// Where a throwaway redis-server listens.
pub enum Addr {
    /// A unix socket (and no TCP port).
    Unix(PathBuf),
    /// A TCP port on 127.0.0.1.
    Tcp(u16),
}

impl Addr {
    /// How `redis-cli` and `redis-benchmark` reach it.
    fn client_args(&self, cmd: &mut Command) {
        match self {
            Addr::Unix(sock) => cmd.arg("-s").arg(sock),
            Addr::Tcp(port) => cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]),
        };
    }
}

/// `redis-server` listening on `addr`, with its data and `redis.log` in `dir` and
/// persistence off (the saves are started by hand). Later arguments win, so the caller
/// may add or override settings.
pub fn server(addr: &Addr, dir: &Path) -> Command {
    let mut cmd = Command::new("redis-server");
    match addr {
        Addr::Unix(sock) => cmd.args(["--port", "0", "--unixsocket"]).arg(sock),
        Addr::Tcp(port) => cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]),
    };
    cmd.args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// `redis-cli ARGS`, trimmed; an error reply is an error.
pub fn cli(addr: &Addr, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("redis-cli");
    addr.client_args(&mut cmd);
    let out = util::output(cmd.args(args))?;
    let out = out.trim().to_string();
    if out.starts_with("ERR") || out.starts_with("(error)") {
        bail!("redis-cli {}: {out}", args.join(" "));
    }
    Ok(out)
}

/// One `field` of `INFO section`.
pub fn info_field(addr: &Addr, section: &str, field: &str) -> Result<String> {
    let info = cli(addr, &["INFO", section])?;
    info.lines()
        .find_map(|l| {
            l.trim_end()
                .strip_prefix(field)?
                .strip_prefix(':')
                .map(str::to_string)
        })
        .with_context(|| format!("INFO {section} has no {field}"))
}

/// Wait (10 s at most) until the server answers PING. `exited` says whether the server
/// process has ended (then it never will; its error stops the wait too). An error
/// carries the tail of the server's log in `dir`.
pub fn wait_ready(
    addr: &Addr,
    dir: &Path,
    mut exited: impl FnMut() -> Result<Option<String>>,
) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if cli(addr, &["PING"]).is_ok_and(|s| s == "PONG") {
            return Ok(());
        }
        let ended = exited()?;
        if ended.is_some() || t0.elapsed() > Duration::from_secs(10) {
            let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
            let mut tail: Vec<&str> = log.lines().rev().take(10).collect();
            tail.reverse();
            bail!(
                "redis-server did not answer PING within 10 s ({}); log tail:\n{}",
                ended.map_or("still running".to_string(), |s| format!("exited: {s}")),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `redis-benchmark -q`: `requests` SETs pipelined 16 deep over `keys` random keys with
/// `size`-byte values: the load of every Redis run here (a fill when `requests` equals
/// `keys`, a write load during a save otherwise).
pub fn sets(addr: &Addr, keys: u64, requests: u64, size: u64) -> Command {
    let mut cmd = Command::new("redis-benchmark");
    addr.client_args(&mut cmd);
    cmd.args(["-t", "set", "-P", "16", "-q"])
        .args(["-r", &keys.to_string()])
        .args(["-n", &requests.to_string()])
        .args(["-d", &size.to_string()])
        .stdin(Stdio::null());
    cmd
}
