//! Section 2: the overhead on a real Redis while a BGSAVE child is alive.
//!
//! A throwaway redis-server on a unix socket is filled once. One run: start the tracer
//! (or not), `CONFIG SET rdb-key-save-delay` so the save lasts far longer than the
//! window, `BGSAVE`, then the measured window: a fixed pipelined SET load over the
//! existing keys (so the parent keeps dirtying pages it shares with the child: COW
//! copies). The Redis parent's CPU time (all its threads, from its CPU-time clock) over
//! the window, per 1,000 SETs, and redis-benchmark's throughput are the figures. Then
//! the child is stopped with SIGUSR1, which Redis treats as a cancelled save (not an
//! error), and the tracer is stopped.

use super::procs::{self, Proc, TempDir};
use super::stats::{Spread, ratios, rotation};
use super::tracers::{Output, Running, Tools};
use crate::redis::{self, Addr};
use anyhow::{Context as _, Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
pub struct Params {
    pub rounds: usize,
    /// Keys loaded before the runs (100-byte values).
    pub keys: u64,
    /// SETs in the measured window of each run.
    pub sets: u64,
    /// `rdb-key-save-delay`, µs per key: keys × delay must outlast the window by far.
    pub save_delay_us: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Config {
    Untraced,
    Cowtrace,
    Bpftrace,
}

pub const CONFIGS: [Config; 3] = [Config::Untraced, Config::Cowtrace, Config::Bpftrace];

impl Config {
    pub fn label(self) -> &'static str {
        match self {
            Config::Untraced => "no tracer",
            Config::Cowtrace => "cowtrace record -p REDIS",
            Config::Bpftrace => "bpftrace bench/redis.bt REDIS",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Redis parent CPU ms per 1,000 SETs.
    pub cpu_ms_per_k: f64,
    /// redis-benchmark's requests per second.
    pub ops_per_s: f64,
    /// Parent COW copies the tracer counted during the save.
    pub parent_copies: Option<u64>,
    /// Bytes the save child wrote, as the tracer counted them.
    pub child_write_bytes: Option<u64>,
    /// The child was still saving when the window ended (it must be).
    pub child_alive: bool,
    pub lost: Option<u64>,
    pub stop_ms: Option<f64>,
}

pub struct Results {
    pub params: Params,
    pub runs: Vec<Vec<Option<Run>>>,
    pub redis_version: String,
    /// Redis's RSS after the fill.
    pub rss_bytes: u64,
}

impl Results {
    fn col(&self, c: Config, f: impl Fn(&Run) -> f64) -> Vec<Option<f64>> {
        let i = CONFIGS.iter().position(|x| *x == c).expect("known config");
        self.runs[i].iter().map(|r| r.as_ref().map(&f)).collect()
    }

    pub fn runs_of(&self, c: Config) -> Vec<&Run> {
        let i = CONFIGS.iter().position(|x| *x == c).expect("known config");
        self.runs[i].iter().flatten().collect()
    }

    pub fn cpu(&self, c: Config) -> Option<Spread> {
        Spread::of(
            &self
                .col(c, |r| r.cpu_ms_per_k)
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        )
    }

    pub fn ops(&self, c: Config) -> Option<Spread> {
        Spread::of(
            &self
                .col(c, |r| r.ops_per_s)
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        )
    }

    pub fn cpu_ratio(&self, c: Config) -> Option<Spread> {
        Spread::of(&ratios(
            &self.col(c, |r| r.cpu_ms_per_k),
            &self.col(Config::Untraced, |r| r.cpu_ms_per_k),
        ))
    }

    pub fn ops_ratio(&self, c: Config) -> Option<Spread> {
        Spread::of(&ratios(
            &self.col(c, |r| r.ops_per_s),
            &self.col(Config::Untraced, |r| r.ops_per_s),
        ))
    }
}

/// The throwaway server.
struct Redis {
    proc: Proc,
    addr: Addr,
}

impl Redis {
    fn start(dir: &Path) -> Result<Redis> {
        let addr = Addr::Unix(dir.join("redis.sock"));
        let mut cmd = redis::server(&addr, dir);
        cmd.args(["--stop-writes-on-bgsave-error", "no"]);
        let mut proc = Proc::spawn("redis-server", &mut cmd, libc::SIGTERM)?;
        redis::wait_ready(&addr, dir, || Ok(proc.poll()?.map(|e| e.describe())))?;
        Ok(Redis { proc, addr })
    }

    fn cli(&self, args: &[&str]) -> Result<String> {
        redis::cli(&self.addr, args)
    }

    fn wait_info(&self, section: &str, field: &str, want: &str, limit: Duration) -> Result<()> {
        let t0 = Instant::now();
        while redis::info_field(&self.addr, section, field)? != want {
            if t0.elapsed() > limit {
                bail!("INFO {field} did not become {want} within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `n` SETs of 100 B over `keyspace` keys, and their requests per second.
    fn bench(&self, n: u64, keyspace: u64) -> Result<f64> {
        let out = crate::util::output(&mut redis::sets(&self.addr, keyspace, n, 100))?;
        parse_rps(&out)
            .with_context(|| format!("no `requests per second` in redis-benchmark output {out:?}"))
    }
}

/// The final figure of `redis-benchmark -q` (progress lines are separated by `\r`).
pub fn parse_rps(out: &str) -> Option<f64> {
    out.split(['\r', '\n'])
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("SET: ")?;
            let (num, tail) = rest.split_once(' ')?;
            tail.starts_with("requests per second")
                .then(|| num.parse().ok())?
        })
        .next_back()
}

pub fn run(t: &Tools, p: Params, check: &dyn Fn() -> Result<()>) -> Result<Results> {
    let dir = TempDir::new(&format!("{}/redis.XXXXXX", t.tmp.display()))?;
    let mut redis = Redis::start(dir.path())?;
    let version = crate::util::output(Command::new("redis-server").arg("--version"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let t0 = Instant::now();
    redis.bench(p.keys, p.keys).context("loading the keys")?;
    let rss = procs::status_bytes(redis.proc.pid(), "VmRSS")?;
    println!(
        "[bench] redis: {} keys loaded in {:.1} s, RSS {:.0} MiB",
        p.keys,
        t0.elapsed().as_secs_f64(),
        rss as f64 / (1 << 20) as f64
    );
    let mut res = Results {
        params: p,
        runs: vec![vec![None; p.rounds]; CONFIGS.len()],
        redis_version: version,
        rss_bytes: rss,
    };
    for round in 0..p.rounds {
        let mut line = Vec::new();
        for ci in rotation(CONFIGS.len(), round) {
            check()?;
            let c = CONFIGS[ci];
            let r = one(t, &redis, p, c, round)
                .with_context(|| format!("Redis benchmark, round {}, {}", round + 1, c.label()))?;
            line.push(format!(
                "{c:?} {:.2} ms/1k {:.0} op/s",
                r.cpu_ms_per_k, r.ops_per_s
            ));
            res.runs[ci][round] = Some(r);
        }
        println!(
            "[bench] redis round {}/{}: {}",
            round + 1,
            p.rounds,
            line.join(", ")
        );
    }
    redis.proc.stop(Duration::from_secs(10))?;
    Ok(res)
}

fn one(t: &Tools, redis: &Redis, p: Params, c: Config, round: usize) -> Result<Run> {
    super::procs::note_foreign_tracers();
    let pid = redis.proc.pid();
    let tag = format!("redis-{round}-{c:?}");
    let tracer = match c {
        Config::Untraced => None,
        Config::Cowtrace => Some(Running::cowtrace(t, &tag, &[pid])?),
        Config::Bpftrace => Some(Running::bpftrace(t, &tag, "redis.bt", &[pid.to_string()])?),
    };
    redis.cli(&[
        "CONFIG",
        "SET",
        "rdb-key-save-delay",
        &p.save_delay_us.to_string(),
    ])?;
    let before: Vec<u32> = procs::children_of(pid);
    let reply = redis.cli(&["BGSAVE"])?;
    if !reply.contains("started") {
        bail!("BGSAVE answered {reply:?}");
    }
    let t0 = Instant::now();
    let child = loop {
        if let Some(c) = procs::children_of(pid)
            .into_iter()
            .find(|c| !before.contains(c))
        {
            break c;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("no BGSAVE child of redis-server {pid} appeared");
        }
        std::thread::sleep(Duration::from_millis(2));
    };

    let cpu0 = procs::cpu_seconds(pid)?;
    let ops = redis.bench(p.sets, p.keys)?;
    let cpu1 = procs::cpu_seconds(pid)?;
    let child_alive = procs::children_of(pid).contains(&child);

    // SIGUSR1: Redis's "cancelled save", not counted as a failed one.
    // SAFETY: kill(2); the child is redis-server's and was alive a moment ago.
    unsafe { libc::kill(child as libc::pid_t, libc::SIGUSR1) };
    redis.wait_info(
        "persistence",
        "rdb_bgsave_in_progress",
        "0",
        Duration::from_secs(30),
    )?;
    redis.cli(&["CONFIG", "SET", "rdb-key-save-delay", "0"])?;

    let mut run = Run {
        cpu_ms_per_k: (cpu1 - cpu0) * 1e3 / (p.sets as f64 / 1e3),
        ops_per_s: ops,
        child_alive,
        ..Run::default()
    };
    if let Some(tracer) = tracer {
        let (out, _, took) = tracer.stop()?;
        run.stop_ms = Some(took.as_secs_f64() * 1e3);
        match out {
            Output::Cowtrace(trace) => {
                let end = trace.end_of_child(child as u64).with_context(|| {
                    format!("cowtrace recorded no session_end for the BGSAVE child {child}")
                })?;
                run.parent_copies = end["cow"]["parent_pages"].as_u64();
                run.child_write_bytes = end["writes"]["bytes"].as_u64();
                run.lost = Some(trace.lost_cow_events());
            }
            Output::Bpftrace(counts) => {
                run.parent_copies = Some(counts.get("parent_copies"));
                run.child_write_bytes = Some(counts.get("child_write_bytes"));
            }
        }
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rps_from_quiet_output() {
        let out = "SET: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                   SET: 158730.16 requests per second, p50=4.103 msec                    \n\n";
        assert_eq!(parse_rps(out), Some(158730.16));
        assert_eq!(parse_rps("nothing"), None);
    }
}
