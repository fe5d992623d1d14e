//! `cargo xtask soak [--minutes N]`: cowtrace under a long, busy run (issue 8).
//!
//! A throwaway Redis takes a write load while a save (BGSAVE, every fourth one a
//! BGREWRITEAOF) starts every few seconds, and `cowtrace record` traces it for N minutes
//! (default 10). Every 10 s the agent's RSS is sampled. At the end the trace is checked:
//! every fork Redis made (INFO `total_forks`) is a session with a `session_end`, the
//! kernel maps hold no leftover entries, and RSS stayed flat. The figures go to
//! bench/SOAK.md. Nothing here is a pass/fail timing test: it reports what it saw, and
//! fails only when a session is missing or the trace is not properly ended.

use std::{
    fmt::Write as _,
    io::BufRead as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    redis::{self, Addr},
    setup, util,
};

#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long to run.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seconds between two saves.
    #[arg(long, default_value_t = 3)]
    save_every: u64,
}

/// Children to stop and a directory to remove, whatever happens.
struct Guard {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            if matches!(c.try_wait(), Ok(None)) {
                // SAFETY: kill(2) on our own unreaped child.
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_secs(3) && matches!(c.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn info_field(addr: &Addr, section: &str, field: &str) -> Option<String> {
    redis::info_field(addr, section, field).ok()
}

fn proc_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The write load: SETs of 100 B over the 200k keys, until killed.
fn load(addr: &Addr) -> Result<Child> {
    redis::sets(addr, 200_000, 100_000_000, 100)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-benchmark")
}

pub fn run(args: SoakArgs) -> Result<()> {
    setup::run()?;
    if !util::is_root() {
        bail!("the soak runs `cowtrace record`, which loads eBPF programs: run it as root");
    }
    let root = util::repo_root();
    util::run(util::cargo().args(["build", "--release"]))?;
    let cowtrace = root.join("target/release/cowtrace");
    let dir = std::env::temp_dir().join(format!("cowtrace-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut g = Guard {
        dir: dir.clone(),
        children: Vec::new(),
    };
    let addr = Addr::Unix(dir.join("redis.sock"));
    let mut server = redis::server(&addr, &dir)
        .spawn()
        .context("starting redis-server")?;
    let redis_pid = server.id();
    let ready = redis::wait_ready(&addr, &dir, || {
        Ok(server.try_wait()?.map(|s| s.to_string()))
    });
    g.children.push(server);
    ready?;
    println!("[soak] loading 200k keys ...");
    util::run(redis::sets(&addr, 200_000, 200_000, 100).stdout(Stdio::null()))?;
    let forks_before: u64 = info_field(&addr, "stats", "total_forks")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);

    let trace = dir.join("soak.jsonl");
    let rec = Command::new(&cowtrace)
        .args(["record", "-i", "5", "-p", &redis_pid.to_string(), "-o"])
        .arg(&trace)
        .stderr(Stdio::null())
        .spawn()
        .context("starting cowtrace record")?;
    let rec_pid = rec.id();
    g.children.push(rec);
    let t0 = Instant::now();
    while !std::fs::read_to_string(&trace).is_ok_and(|s| s.contains("\"meta\"")) {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("cowtrace did not attach within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let total = Duration::from_secs_f64(args.minutes * 60.0);
    println!(
        "[soak] {:.1} min: a save every {} s under a write load; cowtrace pid {rec_pid}",
        args.minutes, args.save_every
    );
    let mut load_child = load(&addr)?;
    let start = Instant::now();
    let mut last_save = Instant::now() - Duration::from_secs(args.save_every);
    let mut last_rss = Instant::now() - Duration::from_secs(10);
    let mut rss: Vec<(u64, u64)> = Vec::new(); // (seconds, kB)
    let (mut saves, mut rewrites, mut skipped) = (0u64, 0u64, 0u64);
    while start.elapsed() < total {
        if matches!(load_child.try_wait(), Ok(Some(_))) {
            load_child = load(&addr)?;
        }
        if last_rss.elapsed() >= Duration::from_secs(10) {
            last_rss = Instant::now();
            if let Some(kb) = proc_kb(rec_pid, "VmRSS:") {
                rss.push((start.elapsed().as_secs(), kb));
            }
        }
        if last_save.elapsed() >= Duration::from_secs(args.save_every) {
            last_save = Instant::now();
            let busy = info_field(&addr, "persistence", "rdb_bgsave_in_progress").as_deref()
                == Some("1")
                || info_field(&addr, "persistence", "aof_rewrite_in_progress").as_deref()
                    == Some("1");
            if busy {
                skipped += 1;
            } else if (saves + rewrites) % 4 == 3 {
                redis::cli(&addr, &["BGREWRITEAOF"])?;
                rewrites += 1;
            } else {
                redis::cli(&addr, &["BGSAVE"])?;
                saves += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = load_child.kill();
    let _ = load_child.wait();
    // Let the last save finish, so every fork has ended.
    let t0 = Instant::now();
    while info_field(&addr, "persistence", "rdb_bgsave_in_progress").as_deref() == Some("1")
        || info_field(&addr, "persistence", "aof_rewrite_in_progress").as_deref() == Some("1")
    {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("the last save did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let forks: u64 = info_field(&addr, "stats", "total_forks")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        - forks_before;
    let hwm = proc_kb(rec_pid, "VmHWM:").unwrap_or(0);
    let cpu_ticks = std::fs::read_to_string(format!("/proc/{rec_pid}/stat"))
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // SAFETY: SIGINT to our own child; the guard reaps it.
    unsafe { libc::kill(rec_pid as i32, libc::SIGINT) };
    let rec = g
        .children
        .iter_mut()
        .find(|c| c.id() == rec_pid)
        .context("cowtrace child")?;
    let status = rec.wait()?;
    if !status.success() {
        bail!("cowtrace record exited with {status}");
    }

    // Check the trace.
    let file = std::fs::File::open(&trace)?;
    let (mut starts, mut ends, mut complete, mut samples) = (0u64, 0u64, 0u64, 0u64);
    let mut end_line = None;
    let mut cow_bytes = 0u64;
    let mut write_bytes = 0u64;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("bad trace line: {line}"))?;
        match v["type"].as_str() {
            Some("session_start") => starts += 1,
            Some("sample") => samples += 1,
            Some("session_end") => {
                ends += 1;
                if v["complete"] == true {
                    complete += 1;
                }
                cow_bytes += v["cow"]["bytes"].as_u64().unwrap_or(0);
                write_bytes += v["writes"]["bytes"].as_u64().unwrap_or(0);
            }
            Some("end") => end_line = Some(v),
            _ => {}
        }
    }
    let end = end_line.context("the trace has no `end` line")?;
    let trace_size = std::fs::metadata(&trace)?.len();
    let first = rss
        .iter()
        .find(|(s, _)| *s >= 30)
        .or(rss.first())
        .map_or(0, |r| r.1);
    let last = rss.last().map_or(0, |r| r.1);
    let max = rss.iter().map(|r| r.1).max().unwrap_or(0);
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;

    let mut md = String::new();
    let _ = writeln!(md, "# cowtrace soak\n");
    let _ = writeln!(
        md,
        "Produced by `cargo xtask soak --minutes {}` on {} ({} cores, kernel {}), cowtrace {}.\n",
        args.minutes,
        util::output(Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC"))
            .unwrap_or_default()
            .trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        util::output(
            Command::new("git")
                .args(["rev-parse", "--short", "HEAD"])
                .current_dir(&root)
        )
        .unwrap_or_default()
        .trim(),
    );
    let _ = writeln!(
        md,
        "Method: a Redis 7 with 200k keys of 100 B under a continuous `redis-benchmark -t set -P 16` load; a save every {} s (every fourth a BGREWRITEAOF; a save still running is skipped); `cowtrace record -p <redis> -i 5` for the whole run; the agent's VmRSS sampled every 10 s.\n",
        args.save_every
    );
    let _ = writeln!(md, "| figure | value |\n| --- | --- |");
    let _ = writeln!(
        md,
        "| run length | {:.1} min |",
        start.elapsed().as_secs_f64() / 60.0
    );
    let _ = writeln!(
        md,
        "| saves started (BGSAVE / BGREWRITEAOF / skipped while busy) | {saves} / {rewrites} / {skipped} |"
    );
    let _ = writeln!(md, "| forks made by Redis (INFO total_forks) | {forks} |");
    let _ = writeln!(
        md,
        "| sessions in the trace: started / ended / complete | {starts} / {ends} / {complete} |"
    );
    let _ = writeln!(md, "| sample lines | {samples} |");
    let _ = writeln!(
        md,
        "| COW copied over all sessions | {:.1} MiB |",
        cow_bytes as f64 / 1048576.0
    );
    let _ = writeln!(
        md,
        "| bytes written by save children | {:.1} MiB |",
        write_bytes as f64 / 1048576.0
    );
    let _ = writeln!(md, "| lost events | {} |", end["lost_events"]);
    let _ = writeln!(
        md,
        "| kernel map entries at the end (traced / sessions / files) | {} / {} / {} |",
        end["maps"]["traced"], end["maps"]["sessions"], end["maps"]["files"]
    );
    let _ = writeln!(
        md,
        "| agent RSS after 30 s / at the end / max sampled / VmHWM | {first} / {last} / {max} / {hwm} kB |"
    );
    let _ = writeln!(
        md,
        "| agent CPU over the run | {:.1} s ({:.2}% of one core) |",
        cpu_ticks as f64 / ticks_per_s,
        cpu_ticks as f64 / ticks_per_s * 100.0 / start.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| trace size | {:.1} MiB |",
        trace_size as f64 / 1048576.0
    );
    let _ = writeln!(
        md,
        "\nRSS samples (s: kB): {}",
        rss.iter()
            .map(|(s, k)| format!("{s}: {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    print!("{md}");
    std::fs::create_dir_all(root.join("bench"))?;
    std::fs::write(root.join("bench/SOAK.md"), &md)?;
    println!("[soak] wrote bench/SOAK.md");

    if starts != forks || ends != forks || complete != forks {
        bail!(
            "sessions do not match forks: {forks} forks, {starts} starts, {ends} ends, {complete} complete"
        );
    }
    Ok(())
}
