//! Shared harness of the root integration tests: the cowtrace binary, the `cowload`
//! ground-truth workload, a throwaway redis-server, and trace parsing.
//!
//! Every test here is `#[ignore = "root ..."]`, so a plain `cargo test` (no root) skips
//! them visibly; `cargo xtask test` runs them with `--ignored` as root and fails if any
//! did not run. A missing precondition (root, BTF, redis-server) panics: never a pass.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "root integration test needs root: run `cargo xtask test` as root"
    );
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "root integration test needs kernel BTF at /sys/kernel/btf/vmlinux"
    );
}

/// The fixture traces (and their golden outputs): agent/tests/fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Multiplies every time limit of the harness (default 1). `cargo xtask vmtest` sets it
/// in its guests, where QEMU's TCG runs everything several times slower than the host.
pub const TIME_SCALE_ENV: &str = "COWTRACE_TEST_TIME_SCALE";

/// `d` scaled by [`TIME_SCALE_ENV`].
pub fn limit(d: Duration) -> Duration {
    let scale = std::env::var(TIME_SCALE_ENV)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    d * scale
}

pub fn cowtrace() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cowtrace"))
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("cowtrace-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `cowtrace record` running in the background.
pub struct Recorder {
    child: Option<Child>,
    pub path: PathBuf,
}

impl Recorder {
    /// Start `cowtrace record -o DIR/trace.jsonl ARGS` and wait until it has attached
    /// (the meta line is written after every program is attached).
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let path = dir.join("trace.jsonl");
        let mut cmd = cowtrace();
        cmd.arg("record")
            .arg("-o")
            .arg(&path)
            .args(args)
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn cowtrace");
        let mut r = Self {
            child: Some(child),
            path,
        };
        wait_attached(&r.path, r.child.as_mut().unwrap());
        r
    }

    /// SIGINT, wait for a clean exit, parse the trace.
    pub fn stop(mut self) -> Trace {
        let mut child = self.child.take().unwrap();
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = wait_timeout(&mut child, Duration::from_secs(30));
        assert!(status.success(), "cowtrace record exited with {status}");
        Trace::read(&self.path)
    }

    /// Wait for cowtrace to stop by itself (all -p targets exited, or -d).
    pub fn wait(mut self, limit: Duration) -> Trace {
        let mut child = self.child.take().unwrap();
        let status = wait_timeout(&mut child, limit);
        assert!(status.success(), "cowtrace record exited with {status}");
        Trace::read(&self.path)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait until the `cowtrace record` `child` writing to `path` has attached: the meta
/// line is written after every program is attached.
pub fn wait_attached(path: &Path, child: &mut Child) {
    let t0 = Instant::now();
    loop {
        if std::fs::read_to_string(path).is_ok_and(|s| s.contains("\"type\":\"meta\"")) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("cowtrace record exited before attaching: {status}");
        }
        assert!(
            t0.elapsed() < limit(Duration::from_secs(30)),
            "cowtrace did not attach within {:?}",
            limit(Duration::from_secs(30))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let limit = self::limit(limit);
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A parsed trace.
pub struct Trace {
    pub lines: Vec<Value>,
}

impl Trace {
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad trace line {l:?}: {e}"))
            })
            .collect();
        assert_eq!(
            lines.first().map(|l| l["type"].clone()),
            Some("meta".into()),
            "first line is meta"
        );
        assert_eq!(
            lines.last().map(|l| l["type"].clone()),
            Some("end".into()),
            "last line is end"
        );
        Self { lines }
    }
    pub fn of_type(&self, t: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["type"] == t).collect()
    }
    pub fn ends(&self) -> Vec<&Value> {
        self.of_type("session_end")
    }
    pub fn end_of_child(&self, child: u64) -> &Value {
        let e = self
            .ends()
            .into_iter()
            .filter(|e| e["child_pid"] == child)
            .collect::<Vec<_>>();
        assert_eq!(
            e.len(),
            1,
            "one session_end for child {child}: {:#?}",
            self.lines
        );
        e[0]
    }
    pub fn process(&self, pid: u64) -> &Value {
        self.of_type("process")
            .into_iter()
            .find(|p| p["pid"] == pid)
            .unwrap_or_else(|| panic!("no process record for {pid}"))
    }
    pub fn end(&self) -> &Value {
        self.lines.last().unwrap()
    }
}

/// Set by `cargo xtask vmtest` in its guests: the workload was built beside the test
/// binary before the image was made, and there is no cargo to build it with.
pub const PREBUILT_ENV: &str = "COWTRACE_TEST_PREBUILT";

pub fn cowload_path() -> PathBuf {
    // The tests build the workload themselves (once per test binary), so it is never
    // stale: `cargo test --test X` alone does not rebuild examples.
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        if std::env::var_os(PREBUILT_ENV).is_some() {
            return;
        }
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "agent", "--example", "cowload"]);
        // Beside this test binary: target/release when the tests were built --release.
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let st = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo to build the cowload example");
        assert!(st.success(), "building agent/examples/cowload.rs failed");
    });
    // Integration tests live in target/<profile>/deps; examples in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("cowload");
    assert!(
        p.exists(),
        "{} missing: `cargo test` builds it from agent/examples/cowload.rs",
        p.display()
    );
    p
}

/// The ground-truth workload, stopped at its `ready` line.
pub struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub pid: u32,
}

impl Workload {
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(cowload_path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn cowload");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let pid = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("cowload said {line:?}, expected `ready PID`"));
        Self {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    /// Let it run, wait for it, return its final JSON line.
    pub fn go(mut self) -> Value {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        drop(stdin);
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let status = wait_timeout(&mut self.child, Duration::from_secs(120));
        assert!(status.success(), "cowload failed: {status}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("cowload result {line:?}: {e}"))
    }
}

pub fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

/// Which server a test runs: Debian's Redis 7, or Valkey 8, built from the vendored
/// source by `cargo xtask setup` into `target/valkey-8.0-dev` (never committed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Redis,
    Valkey,
}

/// Where `cargo xtask setup` builds Valkey.
pub fn valkey_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/valkey-8.0-dev")
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Redis => "redis",
            Flavor::Valkey => "valkey",
        }
    }

    /// `redis-server`, `valkey-cli`, ...: `tool` is `server`, `cli` or `benchmark`.
    pub fn tool(self, tool: &str) -> PathBuf {
        match self {
            Flavor::Redis => {
                let name = format!("redis-{tool}");
                assert!(
                    Command::new(&name).arg("--version").output().is_ok(),
                    "{name} not installed: run `cargo xtask setup`"
                );
                PathBuf::from(name)
            }
            Flavor::Valkey => {
                let p = valkey_dir().join("src").join(format!("valkey-{tool}"));
                assert!(
                    p.is_file(),
                    "{} missing: `cargo xtask setup` builds Valkey into target/",
                    p.display()
                );
                p
            }
        }
    }
}

/// Valkey's `fork.so` test module (`fork.create CODE USLEEP` forks through
/// `ValkeyModule_Fork`), built by `cargo xtask setup`.
pub fn valkey_fork_module() -> PathBuf {
    let p = valkey_dir().join("tests/modules/fork.so");
    assert!(
        p.is_file(),
        "{} missing: `cargo xtask setup` builds it",
        p.display()
    );
    p
}

/// The arguments every test server starts with, before the test's own.
fn base_args(dir: &Path, sock: &Path) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = [
        "--port",
        "0",
        "--save",
        "",
        "--daemonize",
        "no",
        "--appendonly",
        "no",
        "--unixsocket",
    ]
    .iter()
    .map(Into::into)
    .collect();
    a.push(sock.into());
    a.push("--dir".into());
    a.push(dir.into());
    a.push("--logfile".into());
    a.push(dir.join("server.log").into());
    a
}

/// A throwaway redis-server (or valkey-server) on a unix socket in its own directory.
pub struct Redis {
    pub child: Child,
    pub dir: TempDir,
    pub sock: PathBuf,
    pub flavor: Flavor,
    /// The server's pid after `--daemonize yes` (`child` is then the parent that exited).
    pub daemon: Option<u32>,
}

/// A server started with `--daemonize yes`, before it has daemonized.
pub struct Daemonizing {
    child: Child,
    dir: TempDir,
    sock: PathBuf,
    flavor: Flavor,
    stdin: Option<ChildStdin>,
}

impl Daemonizing {
    /// The pid that forks and exits (the one a user might pass to `-p`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Let it exec (when held), wait for the parent's exit and the server's answer.
    pub fn go(mut self) -> Redis {
        if let Some(mut i) = self.stdin.take() {
            i.write_all(b"go\n").unwrap();
        }
        let st = wait_timeout(&mut self.child, Duration::from_secs(30));
        assert!(st.success(), "the daemonizing parent exited with {st}");
        let pidfile = self.dir.path().join("server.pid");
        let t0 = Instant::now();
        let pid = loop {
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                break p;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no pid file {}",
                pidfile.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let r = Redis {
            child: self.child,
            dir: self.dir,
            sock: self.sock,
            flavor: self.flavor,
            daemon: Some(pid),
        };
        r.wait_ping();
        r
    }
}

impl Redis {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_on(None, extra)
    }

    /// A server of `flavor`.
    pub fn start_flavor(flavor: Flavor, extra: &[&str]) -> Self {
        Self::launch(flavor, None, extra)
    }

    /// A server on the unix socket `sock` (a server restarted on the same socket keeps
    /// its name), or on one in its own directory.
    pub fn start_on(sock: Option<&Path>, extra: &[&str]) -> Self {
        Self::launch(Flavor::Redis, sock, extra)
    }

    /// A server run from the binary `bin` (a modified copy of redis-server).
    #[allow(dead_code)]
    pub fn start_binary(bin: &Path, extra: &[&str]) -> Self {
        Self::launch_from(Flavor::Redis, bin.to_path_buf(), None, extra)
    }

    fn launch(flavor: Flavor, sock: Option<&Path>, extra: &[&str]) -> Self {
        Self::launch_from(flavor, flavor.tool("server"), sock, extra)
    }

    fn launch_from(flavor: Flavor, bin: PathBuf, sock: Option<&Path>, extra: &[&str]) -> Self {
        let dir = TempDir::new(flavor.name());
        let sock = sock.map_or_else(|| dir.path().join("redis.sock"), Path::to_path_buf);
        let child = Command::new(bin)
            .args(base_args(dir.path(), &sock))
            // Later arguments win: `extra` may override any of the above.
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the server");
        let r = Self {
            child,
            dir,
            sock,
            flavor,
            daemon: None,
        };
        r.wait_ping();
        r
    }

    /// A server started with `--daemonize yes` (and a pid file in its directory). With
    /// `hold`, it is a shell that waits for `Daemonizing::go` before it execs the
    /// server, so that its pid can be given to `-p` before it daemonizes.
    pub fn daemonize(flavor: Flavor, extra: &[&str], hold: bool) -> Daemonizing {
        let dir = TempDir::new(flavor.name());
        let sock = dir.path().join("redis.sock");
        let mut args = base_args(dir.path(), &sock);
        args.extend(["--daemonize".into(), "yes".into(), "--pidfile".into()]);
        args.push(dir.path().join("server.pid").into());
        args.extend(extra.iter().map(Into::into));
        let mut cmd = if hold {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(r#"read x; exec "$0" "$@""#)
                .arg(flavor.tool("server"))
                .stdin(Stdio::piped());
            c
        } else {
            Command::new(flavor.tool("server"))
        };
        let mut child = cmd
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the server");
        let stdin = child.stdin.take();
        Daemonizing {
            child,
            dir,
            sock,
            flavor,
            stdin,
        }
    }

    fn wait_ping(&self) {
        let t0 = Instant::now();
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(
                t0.elapsed() < limit(Duration::from_secs(10)),
                "{} did not answer PING:\n{}",
                self.flavor.name(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.daemon.unwrap_or_else(|| self.child.id())
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(self.flavor.tool("cli"))
            .arg("-s")
            .arg(&self.sock)
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let info = self.cli(&["INFO", section]);
        info.lines().find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
    }

    /// `redis-benchmark` SETs, pipelined 16 deep: `requests` of them over `keys` random
    /// keys, with `size`-byte values.
    pub fn sets(&self, keys: u64, requests: u64, size: u64) -> Command {
        let mut cmd = Command::new(self.flavor.tool("benchmark"));
        cmd.arg("-s")
            .arg(&self.sock)
            .args(["-t", "set", "-P", "16", "-q"])
            .args(["-r", &keys.to_string()])
            .args(["-n", &requests.to_string()])
            .args(["-d", &size.to_string()])
            .stdout(Stdio::null());
        cmd
    }

    /// Load `n` keys of `size` bytes with redis-benchmark.
    pub fn fill(&self, n: u64, size: u64) {
        self.run_sets(n, n, size);
    }

    /// `requests` SETs over `keys` keys of `size` bytes, waited for.
    pub fn run_sets(&self, keys: u64, requests: u64, size: u64) {
        let st = self
            .sets(keys, requests, size)
            .status()
            .expect("redis-benchmark");
        assert!(st.success(), "redis-benchmark failed: {st}");
    }

    /// A write load on `keys` keys of `size` bytes that runs until it is dropped: while
    /// a save runs, the parent's writes are what copy.
    pub fn write_load(&self, keys: u64, size: u64) -> Load {
        Load(
            self.sets(keys, 100_000_000, size)
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-benchmark"),
        )
    }

    /// A steady write load (one client, no pipelining) until it is dropped.
    pub fn steady_load(&self, keys: u64, size: u64) -> Load {
        Load(
            Command::new("redis-benchmark")
                .arg("-s")
                .arg(&self.sock)
                .args(["-t", "set", "-c", "1", "-P", "1", "-q"])
                .args([
                    "-r",
                    &keys.to_string(),
                    "-n",
                    "100000000",
                    "-d",
                    &size.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-benchmark"),
        )
    }

    /// Start a BGSAVE (it runs on when this returns).
    pub fn bgsave(&self) {
        let reply = self.cli(&["BGSAVE"]);
        assert!(
            reply.contains("Background saving started"),
            "BGSAVE: {reply}"
        );
    }

    pub fn wait_bgsave(&self) {
        self.wait_field("persistence", "rdb_bgsave_in_progress", "0");
    }

    /// A whole BGSAVE: started and waited for.
    pub fn save(&self) {
        self.bgsave();
        self.wait_bgsave();
    }

    /// A whole BGREWRITEAOF: started and waited for.
    pub fn rewrite_aof(&self) {
        let reply = self.cli(&["BGREWRITEAOF"]);
        assert!(reply.contains("rewriting"), "BGREWRITEAOF: {reply}");
        self.wait_aof_rewrite();
    }

    pub fn wait_aof_rewrite(&self) {
        self.wait_field("persistence", "aof_rewrite_in_progress", "0");
    }

    /// The pid Redis logged for its last background save ("Background saving started by
    /// pid N"), if it has logged one yet.
    pub fn logged_save_pid(&self) -> Option<u64> {
        self.log()
            .lines()
            .rev()
            .find_map(|l| l.split("Background saving started by pid ").nth(1))
            .and_then(|p| p.trim().parse().ok())
    }

    /// [`Redis::logged_save_pid`], which must be there.
    pub fn save_pid(&self) -> u64 {
        self.logged_save_pid()
            .unwrap_or_else(|| panic!("no BGSAVE pid in the Redis log:\n{}", self.log()))
    }

    pub fn wait_field(&self, section: &str, field: &str, value: &str) {
        let t0 = Instant::now();
        while self.info_field(section, field).as_deref() != Some(value) {
            assert!(
                t0.elapsed() < limit(Duration::from_secs(60)),
                "{field} never became {value}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = self.daemon {
            // Not our child (it was reparented when its parent exited): kill it by its
            // pid and wait until it is gone.
            // SAFETY: plain kill(2) of the server this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let t0 = Instant::now();
            while Path::new(&format!("/proc/{pid}")).exists() && t0.elapsed().as_secs() < 10 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A background `redis-benchmark`, killed on drop.
pub struct Load(Child);

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// BPF programs loaded now whose name is one of cowtrace's hooks.
pub fn count_our_programs() -> usize {
    let progs = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .expect("bpftool");
    let text = String::from_utf8_lossy(&progs.stdout);
    text.lines()
        .filter(|l| {
            // The COW mark (tracepoint or fentry path) and the fork hook: two a run.
            [
                "name page_fault_user",
                "name wp_fault_entry",
                "name sched_process_f",
            ]
            .iter()
            .any(|n| l.contains(n))
        })
        .count()
}
