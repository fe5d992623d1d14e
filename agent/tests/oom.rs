//! Root tests of memory limits and OOM kills with a real memory cgroup (v1's memory
//! controller on this machine; v2 where only v2 is mounted): a Redis server in a cgroup
//! made by the test, saves under a write load, and `cowtrace serve --trace-dir`.
//! - a save that fits: the session's limit is the cgroup's, and its peak usage is within
//!   3% of the cgroup's own high-water mark (reset by the test before the save);
//! - a save whose COW crosses the limit: the kernel kills the child (Redis's
//!   `oom-score-adj-values` make it the victim), then, steered the other way, the server;
//!   each time the session says `oom_kill` with the side, and `cowtrace_saves_total`
//!   counts outcome `oom`;
//! - the same in a podman container with `--memory`: the session names the container (from
//!   podman's state) and its id, reads its limit, and the server is named after it.
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
        text.contains("cowtrace_memory_limit_bytes{server="),
        "{text}"
    );
}

/// A server in a cgroup whose limit its save's COW crosses. `adj`: Redis's
/// `oom-score-adj-values` (server, replica, save child).
fn oom_save(tag: &str, adj: &str) -> (Serve, Vec<Value>, u32, Redis, MemCgroup) {
    let redis = Redis::start(&[
        "--rdb-key-save-delay",
        "100",
        "--oom-score-adj",
        "absolute",
        "--oom-score-adj-values",
        adj,
    ]);
    let cg = MemCgroup::new(tag, 4 << 30);
    cg.add(redis.pid());
    redis.fill(60_000, 1000);
    let serve = Serve::start(redis.pid());
    // The limit: what the server uses now plus a quarter of its RSS, so the save's COW
    // (every page rewritten, over and over while the save runs) crosses it.
    let limit = cg.read("memory.usage_in_bytes") + rss(redis.pid()) / 4;
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
    assert!(k.is_object(), "no OOM kill in the session: {e}");
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
    assert!(k.is_object(), "no OOM kill in the session: {e}");
    assert_eq!(k["side"], "parent", "{e}");
    assert_eq!(u(&k["pid"]) as u32, redis.pid());
}

/// A redis-server in a podman container (runc, cgroupfs: the way podman runs on this
/// machine), from an image the test makes of the host's redis-server and its libraries
/// (no registry is reachable); removed on drop.
struct Container {
    name: String,
    image: String,
    pid: u32,
    id: String,
    sock: PathBuf,
}

fn podman() -> std::process::Command {
    let mut c = std::process::Command::new("podman");
    c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    c
}

fn ok(c: &mut std::process::Command) -> String {
    let o = c
        .output()
        .unwrap_or_else(|e| panic!("{c:?}: {e} (cargo xtask setup installs podman)"));
    assert!(
        o.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl Container {
    fn start(memory: &str, redis_args: &[&str]) -> Self {
        let tag = std::process::id();
        let dir = TempDir::new("rootfs");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::copy("/usr/bin/redis-server", root.join("usr/bin/redis-server"))
            .expect("redis-server (cargo xtask setup installs it)");
        let ldd = ok(std::process::Command::new("ldd").arg("/usr/bin/redis-server"));
        for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
            let to = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(lib, &to).unwrap();
        }
        let tar = dir.path().join("rootfs.tar");
        ok(std::process::Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        let image = format!("localhost/cowtrace-test-redis:{tag}");
        ok(podman().arg("import").arg(&tar).arg(&image));
        let name = format!("cowtrace-test-{tag}");
        let _ = podman().args(["rm", "-f", &name]).output();
        let id = ok(podman()
            .args(["run", "-d", "--name", &name, "--memory", memory])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .arg(&image)
            .args([
                "/usr/bin/redis-server",
                "--port",
                "0",
                "--unixsocket",
                "/tmp/redis.sock",
            ])
            .args(["--save", "", "--dir", "/tmp"])
            .args(redis_args));
        let pid: u32 = ok(podman().args(["inspect", "--format", "{{.State.Pid}}", &name]))
            .parse()
            .unwrap();
        let c = Container {
            name,
            image,
            pid,
            id,
            sock: PathBuf::from(format!("/proc/{pid}/root/tmp/redis.sock")),
        };
        let t0 = Instant::now();
        while c.cli(&["PING"]) != "PONG" {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "redis in the container did not answer"
            );
            sleep(Duration::from_millis(50));
        }
        c
    }

    fn cli(&self, args: &[&str]) -> String {
        let o = std::process::Command::new("redis-cli")
            .arg("-s")
            .arg(&self.sock)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn sets(&self, keys: u64, requests: u64) -> std::process::Command {
        let mut c = std::process::Command::new("redis-benchmark");
        c.arg("-s")
            .arg(&self.sock)
            .args(["-t", "set", "-d", "1000", "-P", "16", "-q"])
            .args(["-r", &keys.to_string(), "-n", &requests.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    fn running(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", &self.name]).output();
        let _ = podman().args(["rmi", "-f", &self.image]).output();
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_server_in_a_podman_container_is_named_limited_and_its_oom_kill_told() {
    require_root();
    let c = Container::start(
        "1g",
        &[
            "--rdb-key-save-delay",
            "100",
            "--oom-score-adj",
            "absolute",
            "--oom-score-adj-values",
            "0 200 800",
        ],
    );
    assert!(c.sets(80_000, 80_000).status().unwrap().success());
    // The container's limit, lowered as `podman update --memory` would: what it uses now
    // plus a quarter of the server's RSS, which the save's COW crosses.
    let cg = PathBuf::from(format!(
        "/sys/fs/cgroup/memory/libpod_parent/libpod-{}",
        c.id
    ));
    let usage: u64 = std::fs::read_to_string(cg.join("memory.usage_in_bytes"))
        .expect("the container's v1 memory cgroup")
        .trim()
        .parse()
        .unwrap();
    let limit = (usage + rss(c.pid) / 4) / 4096 * 4096;
    std::fs::write(cg.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
    let serve = Serve::start(c.pid);
    assert!(c.cli(&["BGSAVE"]).contains("started"));
    let t0 = Instant::now();
    // Rewrite every key while the save runs: its COW crosses the container's 200 MiB.
    while c.running()
        && c.cli(&["INFO", "persistence"])
            .contains("rdb_bgsave_in_progress:1")
    {
        let _ = c.sets(80_000, 20_000).status();
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "nothing was OOM-killed in 60 s"
        );
    }
    let ends = wait_ends(&serve, 1);
    let e = &ends[0];
    let m = &e["memory"];
    assert_eq!(m["source"], "cgroup v1", "{e}");
    assert_eq!(u(&m["limit_bytes"]), limit, "the container's limit: {m}");
    assert_eq!(
        m["container"],
        c.name.as_str(),
        "named from podman's state: {m}"
    );
    assert_eq!(m["container_id"], c.id.as_str());
    assert_eq!(e["instance"], format!("{} /tmp/redis.sock", c.name), "{e}");
    assert!(e["oom_kill"].is_object(), "no OOM kill in the session: {e}");
    assert_eq!(e["oom_kill"]["side"], "child", "{e}");
    let text = metrics(&serve.addr).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("cowtrace_saves_total{")
            && l.contains(&c.name)
            && l.contains("outcome=\"oom\"")
            && l.ends_with(" 1")),
        "{text}"
    );
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_projection_at_30_percent_of_a_steady_save_is_within_25_percent_of_its_peak() {
    require_root();
    let redis = Redis::start(&["--rdb-key-save-delay", "25"]);
    let cg = MemCgroup::new("projection", 2 << 30);
    cg.add(redis.pid());
    redis.fill(200_000, 500);
    let serve = Serve::start(redis.pid());
    // Two saves under the same steady load (one client, no pipelining): the first gives
    // the output size that the second's projection uses for its time left.
    for n in 1..=2 {
        let load = redis.steady_load(200_000, 500);
        redis.save();
        drop(load);
        wait_ends(&serve, n);
    }
    let ends = serve.ends();
    let e = &ends[1];
    let c = &e["projection_check"];
    assert!(c.is_object(), "the second save checks its projection: {e}");
    let err = c["error_pct"].as_f64().unwrap();
    assert!(
        err.abs() <= 25.0,
        "projected at 30% vs the actual peak: {c}"
    );
    let at = u(&c["at_ms"]) as f64 / u(&e["duration_ms"]) as f64;
    assert!(
        (0.15..=0.45).contains(&at),
        "taken near 30% of the save: {c}"
    );
    // The samples carry the projection, based on the last save's output.
    let traces: Vec<Value> = std::fs::read_dir(serve.traces.path())
        .unwrap()
        .flat_map(|f| Trace::read(&f.unwrap().path()).lines)
        .filter(|l| l["type"] == "sample" && l["session"] == e["session"])
        .collect();
    assert!(
        traces
            .iter()
            .any(|s| s["projection"]["basis"] == "last save's output"),
        "{traces:?}"
    );
    drop(cg);
}
