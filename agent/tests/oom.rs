//! Root tests of memory limits and OOM kills with a real memory cgroup (v1's memory
//! controller on this machine; v2 where only v2 is mounted): a Redis server in a cgroup
//! made by the test, saves under a write load, and `cowtrace serve --trace-dir`.
//! - a save that fits: the session's limit is the cgroup's, and its peak usage is within
//!   3% of the cgroup's own high-water mark (reset by the test before the save);
//! - a save whose COW crosses the limit: the kernel kills the child (Redis's
//!   `oom-score-adj-values` make it the victim), then, steered the other way, the server;
//!   each time the session says `oom_kill` with the side, and `cowtrace_saves_total`
//!   counts outcome `oom`.
mod common;
use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Stdio,
    thread::sleep,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// A v1 memory cgroup made (and removed) by the test.
struct MemCgroup(PathBuf);

impl MemCgroup {
    fn new(tag: &str, limit: u64) -> Self {
        let root = Path::new("/sys/fs/cgroup/memory");
        assert!(
            root.join("memory.limit_in_bytes").exists(),
            "the cgroup v1 memory controller is not mounted at {} (this test needs it)",
            root.display()
        );
        let dir = root.join(format!("cowtrace-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).expect("create a memory cgroup");
        let cg = MemCgroup(dir);
        cg.write("memory.limit_in_bytes", &limit.to_string());
        cg
    }

    fn write(&self, file: &str, v: &str) {
        std::fs::write(self.0.join(file), v)
            .unwrap_or_else(|e| panic!("{}/{file} <- {v}: {e}", self.0.display()));
    }

    fn read(&self, file: &str) -> u64 {
        std::fs::read_to_string(self.0.join(file))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn add(&self, pid: u32) {
        self.write("cgroup.procs", &pid.to_string());
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // Whatever still runs in it (a server outliving the test's guard) is killed.
        if let Ok(procs) = std::fs::read_to_string(self.0.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) of a process the test put in its own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            sleep(Duration::from_millis(100));
        }
    }
}

/// `cowtrace serve -p PID --trace-dir DIR` on a free port.
struct Serve {
    child: std::process::Child,
    addr: String,
    traces: TempDir,
}

impl Serve {
    fn start(pid: u32) -> Self {
        let traces = TempDir::new("oomtraces");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = cowtrace()
            .args([
                "serve",
                "--listen",
                &addr,
                "-i",
                "0.5",
                "-p",
                &pid.to_string(),
            ])
            .arg("--trace-dir")
            .arg(traces.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while !metrics(&addr).is_some_and(|m| m.contains("cowtrace_save_in_progress")) {
            if let Some(st) = child.try_wait().unwrap() {
                let mut e = String::new();
                child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
                panic!("serve exited: {st}: {e}");
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "serve not attached");
            sleep(Duration::from_millis(50));
        }
        Serve {
            child,
            addr,
            traces,
        }
    }

    /// The session ends written to --trace-dir.
    fn ends(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.traces.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                Trace::read(f)
                    .ends()
                    .into_iter()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metrics(addr: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut b = String::new();
    s.read_to_string(&mut b).ok()?;
    Some(b.split_once("\r\n\r\n")?.1.to_string())
}

fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
}

/// Wait until serve's trace directory has `n` sessions.
fn wait_ends(serve: &Serve, n: usize) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let e = serve.ends();
        if e.len() >= n {
            return e;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{} of {n} sessions after 60 s",
            e.len()
        );
        sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_save_in_a_memory_cgroup_reports_its_limit_and_peak() {
    require_root();
    let redis = Redis::start(&["--rdb-key-save-delay", "30"]);
    let cg = MemCgroup::new("peak", 1 << 30);
    cg.add(redis.pid());
    redis.fill(40_000, 1000);
    let serve = Serve::start(redis.pid());
    cg.write("memory.max_usage_in_bytes", "0");
    let load = redis.write_load(40_000, 1000);
    redis.save();
    drop(load);
    let ends = wait_ends(&serve, 1);
    let m = &ends[0]["memory"];
    assert_eq!(m["source"], "cgroup v1", "{m}");
    assert_eq!(u(&m["limit_bytes"]), 1 << 30);
    assert!(
        m["cgroup"]
            .as_str()
            .unwrap()
            .ends_with(cg.0.file_name().unwrap().to_str().unwrap()),
        "{m}"
    );
    let peak = u(&m["peak_bytes"]) as f64;
    let max = cg.read("memory.max_usage_in_bytes") as f64;
    assert!(
        (peak - max).abs() <= max * 0.03,
        "peak {peak} vs the cgroup's max_usage {max}"
    );
    assert!(
        u(&ends[0]["cow"]["bytes"]) > 4 << 20,
        "the load copied: {}",
        ends[0]
    );
    let text = metrics(&serve.addr).unwrap();
    assert!(
        text.contains(&format!("cowtrace_memory_limit_bytes{{server=")),
        "{text}"
    );
}

/// A server in a cgroup whose limit its save's COW crosses. `adj`: Redis's
/// `oom-score-adj-values` (server, replica, save child).
fn oom_save(tag: &str, adj: &str) -> (Serve, Vec<Value>, u32, Redis, MemCgroup) {
    let redis = Redis::start(&[
        "--rdb-key-save-delay",
        "50",
        "--oom-score-adj",
        "absolute",
        "--oom-score-adj-values",
        adj,
    ]);
    let cg = MemCgroup::new(tag, 4 << 30);
    cg.add(redis.pid());
    redis.fill(60_000, 1000);
    let serve = Serve::start(redis.pid());
    // The limit: what the server uses now plus a third of its RSS, so the save's COW
    // (every page rewritten) crosses it.
    let limit = cg.read("memory.usage_in_bytes") + rss(redis.pid()) / 3;
    cg.write("memory.limit_in_bytes", &limit.to_string());
    redis.bgsave();
    let child = redis.save_pid() as u32;
    // Rewrite every key until the kernel kills the server or the save.
    let t0 = Instant::now();
    let mut redis = redis;
    while redis.child.try_wait().unwrap().is_none() && Path::new(&format!("/proc/{child}")).exists()
    {
        // The server may die under it: its status does not matter.
        let _ = redis
            .sets(60_000, 20_000, 1000)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "nothing was OOM-killed in 60 s"
        );
    }
    let ends = wait_ends(&serve, 1);
    (serve, ends, child, redis, cg)
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn an_oom_kill_of_the_save_child_is_the_sessions_outcome() {
    require_root();
    let (serve, ends, child, _redis, _cg) = oom_save("child", "0 200 800");
    let e = &ends[0];
    assert_eq!(u(&e["child_pid"]) as u32, child);
    let k = &e["oom_kill"];
    assert_eq!(k["side"], "child", "{e}");
    assert_eq!(u(&k["pid"]) as u32, child);
    assert_eq!(e["exit_signal"], 9, "{e}");
    let m = &e["memory"];
    assert!(
        u(&m["peak_bytes"]) * 100 >= u(&m["limit_bytes"]) * 95,
        "killed at the limit: {m}"
    );
    let text = metrics(&serve.addr).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("cowtrace_saves_total{")
            && l.contains("outcome=\"oom\"")
            && l.ends_with(" 1")),
        "{text}"
    );
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn an_oom_kill_of_the_server_during_a_save_is_the_sessions_outcome() {
    require_root();
    // The server is the likelier victim: 1000 for it, -1000 for the save child.
    let (_serve, ends, _child, redis, _cg) = oom_save("server", "1000 0 -1000");
    let e = &ends[0];
    let k = &e["oom_kill"];
    assert_eq!(k["side"], "parent", "{e}");
    assert_eq!(u(&k["pid"]) as u32, redis.pid());
}
