//! Root tests of `cowtrace serve` with real components: a real Prometheus (Debian's
//! package, installed by `cargo xtask setup`) scrapes it while a real Redis saves; the
//! counters Prometheus stores equal the totals of the same save's trace in
//! `--trace-dir`; `promtool check metrics` accepts the exposition; every PromQL
//! expression of the Grafana dashboard returns data; the alert rules load. Plus the
//! faults: a port in use, a scrape during start-up, SIGTERM, a restarted server.
mod common;
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A plain HTTP/1.0 GET: (status, body).
fn get(addr: &str, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus instant query: the result vector.
fn query(prom: &str, q: &str) -> Vec<Value> {
    let (status, body) = get(prom, &format!("/api/v1/query?query={}", urlencode(q)), None)
        .expect("query Prometheus");
    assert_eq!(status, 200, "{q}: {body}");
    let v: Value = serde_json::from_str(&body).expect("Prometheus JSON");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The value of a query that returns one series.
fn scalar(prom: &str, q: &str) -> Option<f64> {
    let r = query(prom, q);
    r.first()?["value"][1].as_str()?.parse().ok()
}

/// `cowtrace serve ARGS`, waited for until /healthz says it is attached.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(addr: &str, args: &[&str]) -> Self {
        let child = cowtrace()
            .args(["serve", "--listen", addr])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cowtrace serve");
        let mut s = Serve {
            child,
            addr: addr.to_string(),
        };
        let t0 = Instant::now();
        loop {
            if let Ok((200, _)) = get(addr, "/healthz", None) {
                return s;
            }
            if let Some(st) = s.child.try_wait().unwrap() {
                panic!("cowtrace serve exited before attaching: {st}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "serve did not attach in 30 s"
            );
            sleep(Duration::from_millis(50));
        }
    }

    fn metrics(&self) -> String {
        let (status, body) = get(&self.addr, "/metrics", None).expect("scrape");
        assert_eq!(status, 200);
        body
    }

    /// SIGTERM; returns how long it took to exit and its stderr.
    fn stop(mut self) -> (Duration, String) {
        let t0 = Instant::now();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let st = wait_timeout(&mut self.child, Duration::from_secs(20));
        let took = t0.elapsed();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(st.success(), "serve exited with {st} after SIGTERM: {err}");
        (took, err)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Prometheus {
    child: Child,
    addr: String,
    _dir: TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        assert!(
            Path::new("/usr/bin/prometheus").exists(),
            "prometheus is not installed: run `cargo xtask setup`"
        );
        let dir = TempDir::new("prometheus");
        let rules = repo().join("deploy/prometheus/alerts.yml");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: cowtrace\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let t0 = Instant::now();
        while !matches!(get(&p.addr, "/-/ready", None), Ok((200, _))) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "prometheus not ready in 30 s"
            );
            sleep(Duration::from_millis(100));
        }
        p
    }

    /// Wait until `q` returns `want` (Prometheus scrapes every second).
    fn wait_for(&self, q: &str, want: f64) {
        let t0 = Instant::now();
        loop {
            let v = scalar(&self.addr, q);
            if v == Some(want) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{q} is {v:?} after 30 s, want {want}"
            );
            sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool check metrics` on an exposition: its complaints, if any.
fn promtool_check(text: &str) -> (bool, String) {
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (installed with prometheus by cargo xtask setup)");
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// The trace `--trace-dir DIR` wrote for the one save there was.
fn the_one_trace(dir: &std::path::Path) -> Trace {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one trace for the one save: {files:?}");
    Trace::read(&files[0])
}

/// A Redis with 60k keys and a slow save, and `serve -p REDIS --trace-dir DIR ARGS`
/// on a free port: (redis, trace dir, listen address, serve).
fn serve_a_server(name: &str, args: &[&str]) -> (Redis, TempDir, String, Serve) {
    let redis = Redis::start(&["--rdb-key-save-delay", "20"]);
    redis.fill(60_000, 512);
    let traces = TempDir::new(name);
    let addr = format!("127.0.0.1:{}", free_port());
    let pid = redis.pid().to_string();
    let mut all = vec![
        "-p",
        pid.as_str(),
        "--trace-dir",
        traces.path().to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let serve = Serve::start(&addr, &all);
    (redis, traces, addr, serve)
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_real_prometheus_stores_what_the_trace_says() {
    require_root();
    let (redis, traces, addr, serve) = serve_a_server("tracedir", &["-i", "0.5", "--keep", "5"]);
    let prom = Prometheus::start(&addr);
    // Before any save: a valid exposition that promtool accepts, in both formats.
    let (ok, why) = promtool_check(&serve.metrics());
    assert!(ok, "promtool check metrics: {why}");
    let (status, om) = get(
        &addr,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(om.ends_with("# EOF\n"), "OpenMetrics when asked");

    // Prometheus has seen the server's series at zero before its first save (as it
    // would an agent that runs all the time), so rate() and increase() see the save.
    prom.wait_for("sum(cowtrace_fork_duration_seconds_count)", 0.0);
    sleep(Duration::from_millis(1200));
    let load = redis.write_load(60_000, 512);
    redis.save();
    drop(load);
    sleep(Duration::from_millis(500));
    let trace = the_one_trace(traces.path());
    let ends = trace.ends();
    assert_eq!(ends.len(), 1);
    let e = ends[0];
    let server = e["instance"]
        .as_str()
        .expect("the session names its server")
        .to_string();
    let sel = format!("{{server=\"{server}\",kind=\"rdb-bgsave\"}}");

    prom.wait_for(&format!("sum(cowtrace_saves_total{sel})"), 1.0);
    let p = &prom.addr;
    let want = [
        (
            format!(
                "cowtrace_cow_bytes_total{{server=\"{server}\",kind=\"rdb-bgsave\",side=\"parent\"}}"
            ),
            u(&e["cow"]["parent_bytes"]),
        ),
        (
            format!(
                "cowtrace_cow_bytes_total{{server=\"{server}\",kind=\"rdb-bgsave\",side=\"child\"}}"
            ),
            u(&e["cow"]["child_bytes"]),
        ),
        (
            format!("cowtrace_save_written_bytes_total{sel}"),
            u(&e["writes"]["bytes"]),
        ),
        (
            format!("cowtrace_save_disk_bytes_total{sel}"),
            u(&e["disk"]["bytes"]),
        ),
        (
            format!("cowtrace_save_sync_calls_total{sel}"),
            u(&e["fsync"]["calls"]),
        ),
        (
            format!("cowtrace_last_save_cow_bytes{sel}"),
            u(&e["cow"]["bytes"]),
        ),
        (
            format!(
                "cowtrace_saves_total{{server=\"{server}\",kind=\"rdb-bgsave\",outcome=\"ok\"}}"
            ),
            1,
        ),
        (format!("cowtrace_save_in_progress{sel}"), 0),
    ];
    for (q, v) in &want {
        assert_eq!(scalar(p, q), Some(*v as f64), "{q}");
    }
    assert!(
        u(&e["cow"]["bytes"]) > 1 << 20,
        "the load copied pages: {e}"
    );
    assert_eq!(
        scalar(p, &format!("cowtrace_save_duration_seconds_count{sel}")),
        Some(1.0)
    );
    assert_eq!(
        scalar(p, &format!("cowtrace_save_duration_seconds_sum{sel}")),
        Some(u(&e["duration_ms"]) as f64 / 1000.0)
    );
    // The limit: this machine's test runs in a memory cgroup or on the host's memory.
    let limit = scalar(
        p,
        &format!("cowtrace_memory_limit_bytes{{server=\"{server}\"}}"),
    );
    assert_eq!(limit, Some(u(&e["memory"]["limit_bytes"]) as f64), "{e}");

    // Every expression of the dashboard returns data after a save.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/cowtrace.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let q = t["expr"].as_str().unwrap().replace("$server", ".*");
            assert!(
                !query(p, &q).is_empty(),
                "dashboard panel {:?}: {q} returned no data",
                panel["title"]
            );
            exprs += 1;
        }
    }
    assert!(exprs >= 10, "{exprs} expressions");
    // The alert rules loaded.
    let (_, rules) = get(p, "/api/v1/rules", None).unwrap();
    assert!(
        rules.contains("RedisSaveNearMemoryLimit") && rules.contains("\"health\":\"ok\""),
        "{rules}"
    );

    let (status, text) = get(&addr, "/metrics", None).unwrap();
    assert_eq!(status, 200);
    let (ok, why) = promtool_check(&text);
    assert!(ok, "promtool check metrics after a save: {why}\n{text}");
    assert!(!text.contains("pid="), "no pid label");

    let (took, err) = serve.stop();
    assert!(err.contains("serving metrics on http://"), "{err}");
    eprintln!("serve stopped {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

/// `serve --causes`: the parent's copies by cause are counted as the session's trace
/// (`--trace-dir`) splits them. Its exit is not timed: the cause uprobes' detach takes
/// ~80 ms each on this kernel (README, "What it costs").
#[test]
#[ignore = "root: loads BPF programs and runs redis-server"]
fn serve_counts_the_copies_by_cause_as_the_trace_splits_them() {
    require_root();
    let (redis, traces, _addr, serve) = serve_a_server("tracedir-causes", &["--causes"]);
    let load = redis.write_load(60_000, 512);
    redis.save();
    drop(load);
    sleep(Duration::from_millis(500));
    let trace = the_one_trace(traces.path());
    let e = trace.ends()[0].clone();
    let server = e["instance"].as_str().expect("a server name").to_string();
    let rows = e["causes"]["by_cause"]
        .as_array()
        .expect("--causes gives causes");
    let text = serve.metrics();
    let mut seen = 0;
    for r in rows {
        let series = format!(
            "cowtrace_save_parent_cow_by_cause_bytes_total{{server=\"{server}\",kind=\"rdb-bgsave\",cause=\"{}\"}}",
            r["cause"].as_str().unwrap()
        );
        let got = text
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse::<f64>().ok());
        let copies = u(&r["copies"]);
        if copies == 0 {
            assert_eq!(got, None, "no series for a cause with no copies: {series}");
        } else {
            assert_eq!(got, Some((copies * 4096) as f64), "{series}\n{text}");
            seen += copies;
        }
    }
    assert_eq!(seen, u(&e["causes"]["copies"]), "every copy is in a series");
    assert!(
        seen > 1000,
        "the load made the parent copy: {}",
        e["causes"]
    );
    let (took, _) = serve.stop();
    eprintln!("serve --causes stopped {took:?} after SIGTERM");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_port_in_use_fails_first_and_a_scrape_at_start_up_is_answered() {
    require_root();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let t0 = Instant::now();
    let o = cowtrace()
        .args(["serve", "--listen", &addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&addr) && err.contains("--listen"), "{err}");
    assert!(!err.contains("serving"), "nothing attached: {err}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "fails before loading anything"
    );
    drop(taken);

    // A scrape while the programs load gets an answer at once (bound before loading).
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = cowtrace()
        .args(["serve", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let first = loop {
        if let Ok(r) = get(&addr, "/metrics", None) {
            break r;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "never listening");
        sleep(Duration::from_millis(5));
    };
    assert_eq!(first.0, 200);
    let (ok, why) = promtool_check(&first.1);
    assert!(ok, "a valid exposition at start-up: {why}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_restarted_server_keeps_its_series() {
    require_root();
    let dir = TempDir::new("restart");
    let sock = dir.path().join("fixed.sock");
    let sock_s = sock.to_str().unwrap().to_string();
    let addr = format!("127.0.0.1:{}", free_port());
    // Every server on the host (no -p): the restarted one is found again.
    let serve = Serve::start(&addr, &["-i", "0.5"]);
    for _ in 0..2 {
        let redis = Redis::start_on(Some(&sock), &[]);
        redis.fill(5_000, 100);
        redis.save();
        sleep(Duration::from_millis(800));
        drop(redis);
        sleep(Duration::from_millis(300));
    }
    let text = serve.metrics();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("cowtrace_saves_total{") && l.contains(&sock_s))
        .collect();
    assert_eq!(
        series.len(),
        1,
        "one series for the server across restarts: {series:?}\n{text}"
    );
    assert!(series[0].ends_with(" 2"), "two saves counted: {series:?}");
    serve.stop();
}

#[test]
#[ignore = "needs promtool: run with `cargo xtask test` (set-up installs prometheus)"]
fn the_alert_rules_pass_their_promtool_tests() {
    let dir = repo().join("deploy/prometheus");
    let o = Command::new("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool (installed with prometheus by cargo xtask setup)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let o = Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("SUCCESS"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
