//! `cargo xtask demo`: a throw-away Redis on loopback, a write load, three BGSAVE +
//! BGREWRITEAOF rounds, and `cowtrace watch` on the Redis process so the user sees the
//! copy-on-write it causes next to Redis's own estimate.

use crate::{
    redis::{self, Addr},
    setup, util,
    util::check_interrupted,
};
use anyhow::{Context as _, Result, bail};
use std::ffi::CString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `cowtrace watch` runs (`-d`), and when the demo gives up and sends SIGINT.
const WATCH_SECS: u64 = 25;
const WATCH_KILL_AFTER: Duration = Duration::from_secs(40);
const SAVE_ROUNDS: usize = 3;

/// Everything the demo started; dropping it stops them and removes the temp dir, also on
/// error paths and panics.
struct Guard {
    tmp: PathBuf,
    /// (name, child, signal to stop it gracefully)
    children: Vec<(&'static str, Child, i32)>,
}

impl Guard {
    fn add(&mut self, name: &'static str, child: Child, sig: i32) -> u32 {
        let pid = child.id();
        self.children.push((name, child, sig));
        pid
    }

    fn get(&mut self, name: &str) -> Option<&mut Child> {
        self.children
            .iter_mut()
            .find(|(n, ..)| *n == name)
            .map(|(_, c, _)| c)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Stop in reverse start order: cowtrace, the load, then redis-server.
        while let Some((name, mut child, sig)) = self.children.pop() {
            if matches!(child.try_wait(), Ok(Some(_))) {
                continue;
            }
            // A graceful signal first (SIGTERM lets Redis kill its own save child), then
            // SIGKILL if it does not go within 3 s.
            signal(child.id(), sig);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("[demo] {name} did not stop, killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.tmp) {
            eprintln!("[demo] could not remove {}: {e}", self.tmp.display());
        }
    }
}

/// Sleep, but give up early on Ctrl-C.
fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupted()?;
        std::thread::sleep(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        );
    }
    check_interrupted()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

pub fn run() -> Result<()> {
    setup::run()?;
    if !util::is_root() {
        bail!("the demo runs `cowtrace watch`, which loads eBPF programs: run it as root");
    }
    // The terminal sends Ctrl-C's SIGINT to redis, the load and cowtrace as well; the demo
    // notices it and returns an error, so the guard still removes the temp dir.
    util::catch_sigint();
    let root = util::repo_root();
    util::run(util::cargo().args(["build", "--release"]))?;
    let cowtrace = root.join("target/release/cowtrace");
    if !cowtrace.is_file() {
        bail!("{} was not built", cowtrace.display());
    }

    let mut guard = Guard {
        tmp: mkdtemp("/tmp/cowtrace-demo.XXXXXX")?,
        children: Vec::new(),
    };
    let tmp = guard.tmp.clone();
    let port = free_port()?;
    println!("[demo] temp dir {}, redis port {port}", tmp.display());

    // 1. Redis with persistence off (we trigger the saves ourselves).
    let addr = Addr::Tcp(port);
    let server = redis::server(&addr, &tmp)
        .spawn()
        .context("could not start redis-server (is redis-server installed?)")?;
    let redis_pid = guard.add("redis-server", server, libc::SIGTERM);
    redis::wait_ready(&addr, &tmp, || {
        check_interrupted()?;
        Ok(guard
            .get("redis-server")
            .and_then(|c| c.try_wait().ok().flatten())
            .map(|s| s.to_string()))
    })?;
    println!("[demo] redis-server pid {redis_pid} is up");

    // 2. ~50 MB of data: 400k keys of 100 bytes.
    println!("[demo] loading 400k keys of 100 B ...");
    util::run(&mut redis::sets(&addr, LOAD_KEYS, 400_000, 100))?;

    // 3. The tracer, output straight to the user's terminal. `--plain`: the demo prints
    // its own progress lines in between, which would garble the full-screen view.
    let mut watch = Command::new(&cowtrace);
    // `--causes`: the diagnosis names the commands and jobs that copied.
    watch.args([
        "watch",
        "--plain",
        "--causes",
        "-p",
        &redis_pid.to_string(),
        "-d",
        &WATCH_SECS.to_string(),
    ]);
    println!("$ {}", util::show(&watch));
    let child = watch
        .stdin(Stdio::null())
        .spawn()
        .context("could not start cowtrace")?;
    let watch_started = Instant::now();
    guard.add("cowtrace", child, libc::SIGINT);
    // A second cowtrace records the same saves for the HTML report at the end. The trace
    // and the page stay under target/demo/ (the temp dir is removed).
    let out_dir = root.join("target/demo");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let trace = out_dir.join("demo.jsonl");
    // The previous demo's trace: `record` refuses to overwrite a file.
    let _ = std::fs::remove_file(&trace);
    let mut record = Command::new(&cowtrace);
    record.args(["record", "--causes", "-o"]).arg(&trace).args([
        "-p",
        &redis_pid.to_string(),
        "-d",
        &WATCH_SECS.to_string(),
    ]);
    let child = record
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start cowtrace record")?;
    guard.add("cowtrace record", child, libc::SIGINT);
    // A third serves Prometheus metrics for the same server; the demo scrapes it at the end.
    let metrics_addr = format!("127.0.0.1:{}", free_port()?);
    let child = Command::new(&cowtrace)
        .args([
            "serve",
            "--listen",
            &metrics_addr,
            "-p",
            &redis_pid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start cowtrace serve")?;
    guard.add("cowtrace serve", child, libc::SIGTERM);
    sleep(Duration::from_secs(1))?; // let it attach
    if let Some(status) = guard
        .get("cowtrace")
        .and_then(|c| c.try_wait().ok().flatten())
    {
        if !status.success() {
            bail!("cowtrace watch exited early ({status})");
        }
        println!("[demo] note: cowtrace watch already exited ({status})");
    }

    // 4. A write load during the saves, so that the parent dirties pages its fork child
    //    still shares: that is the copy-on-write cowtrace attributes.
    ensure_load(&mut guard, &addr)?;
    sleep(Duration::from_millis(500))?;

    // 5. Saves: BGSAVE then BGREWRITEAOF, three times, with Redis's own COW numbers.
    for round in 1..=SAVE_ROUNDS {
        ensure_load(&mut guard, &addr)?;
        redis::cli(&addr, &["BGSAVE"])?;
        wait_info(&addr, "persistence", &[("rdb_bgsave_in_progress", "0")])?;
        println!(
            "[demo] round {round}: BGSAVE done: rdb_last_cow_size={} latest_fork_usec={}",
            redis::info_field(&addr, "persistence", "rdb_last_cow_size")?,
            redis::info_field(&addr, "stats", "latest_fork_usec")?,
        );
        sleep(Duration::from_secs(1))?;
        ensure_load(&mut guard, &addr)?;
        redis::cli(&addr, &["BGREWRITEAOF"])?;
        wait_info(
            &addr,
            "persistence",
            &[
                ("aof_rewrite_in_progress", "0"),
                ("aof_rewrite_scheduled", "0"),
            ],
        )?;
        println!(
            "[demo] round {round}: BGREWRITEAOF done: aof_last_cow_size={} latest_fork_usec={}",
            redis::info_field(&addr, "persistence", "aof_last_cow_size")?,
            redis::info_field(&addr, "stats", "latest_fork_usec")?,
        );
        sleep(Duration::from_secs(1))?;
    }

    // 6. Let both cowtraces finish their -d run (SIGINT if they overstay), then report.
    println!("[demo] waiting for cowtrace watch to finish (-d {WATCH_SECS}) ...");
    let status = finish(&mut guard, "cowtrace", watch_started)?;
    let recorded = finish(&mut guard, "cowtrace record", watch_started)?;
    let scraped = scrape(&metrics_addr);
    drop(guard); // stop serve, redis and the load, remove the temp dir
    if !status.success() {
        bail!("cowtrace watch exited with {status}");
    }
    if !recorded.success() {
        bail!("cowtrace record exited with {recorded}");
    }

    // 7. The same saves as a postmortem page.
    let html = out_dir.join("report.html");
    let page = Command::new(&cowtrace)
        .args(["report", "--html"])
        .arg(&trace)
        .output()
        .context("could not run cowtrace report")?;
    if !page.status.success() {
        bail!(
            "cowtrace report --html failed: {}",
            String::from_utf8_lossy(&page.stderr)
        );
    }
    std::fs::write(&html, &page.stdout)
        .with_context(|| format!("cannot write {}", html.display()))?;
    println!();
    println!("[demo] the trace of these saves: {}", trace.display());
    println!(
        "[demo] its HTML report ({} KiB, self-contained): {}",
        page.stdout.len() / 1024,
        html.display()
    );

    match scraped {
        Ok(text) => {
            println!();
            println!(
                "[demo] what Prometheus scrapes from `cowtrace serve` (http://{metrics_addr}/metrics), a few lines:"
            );
            for l in demo_metric_lines(&text) {
                println!("  {l}");
            }
        }
        Err(e) => println!("[demo] note: could not scrape cowtrace serve: {e:#}"),
    }

    println!();
    println!("[demo] done. Try next:");
    println!("  sudo target/release/cowtrace check");
    println!("  sudo target/release/cowtrace record -o trace.jsonl -d 30");
    println!("  target/release/cowtrace report {}", trace.display());
    println!(
        "  sudo target/release/cowtrace serve   # Prometheus metrics on http://127.0.0.1:10690/metrics"
    );
    println!("  target/release/cowtrace --help");
    Ok(())
}

/// GET /metrics from `cowtrace serve` (Prometheus' text format).
fn scrape(addr: &str) -> Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body
        .split_once("\r\n\r\n")
        .map_or(body.clone(), |b| b.1.to_string()))
}

/// The lines of the exposition worth showing: saves, COW by side, last save's COW,
/// fork time, memory.
fn demo_metric_lines(text: &str) -> Vec<&str> {
    const SHOWN: [&str; 6] = [
        "cowtrace_saves_total{",
        "cowtrace_cow_bytes_total{",
        "cowtrace_last_save_cow_bytes{",
        "cowtrace_last_fork_duration_seconds{",
        "cowtrace_memory_limit_bytes{",
        "cowtrace_save_written_bytes_total{",
    ];
    text.lines()
        .filter(|l| SHOWN.iter().any(|p| l.starts_with(p)) && !l.ends_with(" 0"))
        .take(12)
        .collect()
}

/// Wait for the cowtrace child `name` to end its `-d` run; SIGINT when it overstays, and
/// a kill when it ignores that.
fn finish(guard: &mut Guard, name: &str, started: Instant) -> Result<std::process::ExitStatus> {
    loop {
        check_interrupted()?;
        let c = guard
            .get(name)
            .with_context(|| format!("{name} is not among the demo's children"))?;
        if let Some(s) = c
            .try_wait()
            .with_context(|| format!("waiting for {name}"))?
        {
            return Ok(s);
        }
        if started.elapsed() > WATCH_KILL_AFTER {
            eprintln!("[demo] {name} still running after {WATCH_KILL_AFTER:?}, sending SIGINT");
            signal(c.id(), libc::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && c.try_wait()?.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            if c.try_wait()?.is_none() {
                eprintln!("[demo] {name} ignored SIGINT, killing it");
                c.kill()?;
            }
            return c.wait().with_context(|| format!("waiting for {name}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Start the background write load, or restart it when it has already finished (2 M
/// pipelined SETs take only a few seconds here, less than the three save rounds).
fn ensure_load(guard: &mut Guard, addr: &Addr) -> Result<()> {
    if let Some(i) = guard
        .children
        .iter()
        .position(|(n, ..)| *n == "redis-benchmark")
    {
        if guard.children[i].1.try_wait()?.is_none() {
            return Ok(());
        }
        guard.children.remove(i);
    }
    let load = redis::sets(addr, LOAD_KEYS, 2_000_000, 100)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start redis-benchmark")?;
    guard.add("redis-benchmark", load, libc::SIGTERM);
    Ok(())
}

/// The demo's SETs of 100 B values go to 400k random keys.
const LOAD_KEYS: u64 = 400_000;

/// Poll `INFO section` every 200 ms until every `key:value` pair holds (60 s at most).
fn wait_info(addr: &Addr, section: &str, want: &[(&str, &str)]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        check_interrupted()?;
        let mut all = true;
        for (k, v) in want {
            all &= redis::info_field(addr, section, k)? == *v;
        }
        if all {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for INFO {section} to show {want:?}");
        }
        sleep(Duration::from_millis(200))?;
    }
}

/// A port that is free on 127.0.0.1 right now (bind to :0, read it back, release it).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// mkdtemp(3): a fresh private directory from a `...XXXXXX` template.
fn mkdtemp(template: &str) -> Result<PathBuf> {
    let mut buf = CString::new(template)?.into_bytes_with_nul();
    // SAFETY: buf is a writable NUL-terminated template that outlives the call.
    let p = unsafe { libc::mkdtemp(buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(std::io::Error::last_os_error()).context("mkdtemp");
    }
    buf.pop(); // NUL
    Ok(PathBuf::from(String::from_utf8(buf)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_shows_the_saves_and_their_cow_not_zeroes_or_comments() {
        let text = "# HELP cowtrace_saves_total Saves.\n\
                    cowtrace_saves_total{server=\"a\",kind=\"rdb-bgsave\",outcome=\"ok\"} 3\n\
                    cowtrace_saves_total{server=\"a\",kind=\"aof-rewrite\",outcome=\"ok\"} 0\n\
                    cowtrace_cow_bytes_total{server=\"a\",kind=\"rdb-bgsave\",side=\"parent\"} 4096\n\
                    cowtrace_agent_resident_memory_bytes 123\n";
        assert_eq!(
            demo_metric_lines(text),
            [
                "cowtrace_saves_total{server=\"a\",kind=\"rdb-bgsave\",outcome=\"ok\"} 3",
                "cowtrace_cow_bytes_total{server=\"a\",kind=\"rdb-bgsave\",side=\"parent\"} 4096",
            ]
        );
    }
}
