//! Section 7: what a traced Redis pays outside saves (issue 12, "Redis outside saves").
//!
//! A throwaway redis-server on a unix socket is filled once. One run: start the tracer
//! (or not), then two measured windows with no save running: `redis-benchmark -t set`
//! and `-t get` (50 clients, no pipelining, as applications send them) over the loaded
//! keys. Figures per window: the server's CPU time (all threads, from its CPU-time
//! clock) per operation, and redis-benchmark's operations per second. A round runs every
//! configuration once, in rotated order, and each ratio is taken within a round.
//!
//! The configurations: no agent; `cowtrace record -p REDIS` (how the product is used on a
//! server); `cowtrace record -p OTHER` (Redis untraced, cowtrace tracing an idle
//! process); and empty bpftrace programs on the two syscall tracepoints, the floor of
//! any program on the hooks cowtrace's syscall measurements use.

use super::procs::{Proc, TempDir};
use super::stats::{Spread, ratios, rotation};
use super::tracers::{Output, Running, Tools};
use crate::redis::{self, Addr};
use anyhow::{Context as _, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
pub struct Params {
    pub rounds: usize,
    /// Keys loaded before the runs (100-byte values).
    pub keys: u64,
    /// Requests in each measured window (SET, then GET).
    pub requests: u64,
    /// redis-benchmark's `-c`.
    pub clients: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Config {
    Untraced,
    Cowtrace,
    Elsewhere,
    SyscallFloor,
}

pub const CONFIGS: [Config; 4] = [
    Config::Untraced,
    Config::Cowtrace,
    Config::Elsewhere,
    Config::SyscallFloor,
];

impl Config {
    pub fn label(self) -> &'static str {
        match self {
            Config::Untraced => "no agent",
            Config::Cowtrace => "cowtrace record -p REDIS",
            Config::Elsewhere => "cowtrace record -p OTHER (Redis not traced)",
            Config::SyscallFloor => {
                "bpftrace bench/empty-syscalls.bt (empty programs on sys_enter + sys_exit)"
            }
        }
    }
}

/// The two request types measured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Set,
    Get,
}

pub const OPS: [Op; 2] = [Op::Set, Op::Get];

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Set => "SET",
            Op::Get => "GET",
        }
    }
}

/// One window's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window {
    /// Server CPU ns per request.
    pub cpu_ns_per_op: f64,
    /// redis-benchmark's requests per second.
    pub ops_per_s: f64,
}

#[derive(Clone, Debug, Default)]
pub struct Run {
    pub set: Window,
    pub get: Window,
    /// Events cowtrace lost (its `end.lost_cow_events`), for `cowtrace record -p REDIS`.
    pub lost: Option<u64>,
    /// Sessions cowtrace recorded (there must be none: no save ran).
    pub sessions: Option<usize>,
}

impl Run {
    pub fn window(&self, op: Op) -> &Window {
        match op {
            Op::Set => &self.set,
            Op::Get => &self.get,
        }
    }
}

pub struct Results {
    pub params: Params,
    /// runs[config index][round]
    pub runs: Vec<Vec<Option<Run>>>,
}

impl Results {
    fn col(&self, c: Config, f: impl Fn(&Run) -> f64) -> Vec<Option<f64>> {
        CONFIGS
            .iter()
            .position(|x| *x == c)
            .and_then(|i| self.runs.get(i))
            .map_or_else(Vec::new, |v| v.iter().map(|r| r.as_ref().map(&f)).collect())
    }

    pub fn runs_of(&self, c: Config) -> Vec<&Run> {
        CONFIGS
            .iter()
            .position(|x| *x == c)
            .and_then(|i| self.runs.get(i))
            .map_or_else(Vec::new, |v| v.iter().flatten().collect())
    }

    pub fn cpu(&self, c: Config, op: Op) -> Option<Spread> {
        let v: Vec<f64> = self
            .col(c, |r| r.window(op).cpu_ns_per_op)
            .into_iter()
            .flatten()
            .collect();
        Spread::of(&v)
    }

    pub fn ops(&self, c: Config, op: Op) -> Option<Spread> {
        let v: Vec<f64> = self
            .col(c, |r| r.window(op).ops_per_s)
            .into_iter()
            .flatten()
            .collect();
        Spread::of(&v)
    }

    /// Server CPU per request, `c` ÷ no agent, per round.
    pub fn cpu_ratio(&self, c: Config, op: Op) -> Option<Spread> {
        Spread::of(&ratios(
            &self.col(c, |r| r.window(op).cpu_ns_per_op),
            &self.col(Config::Untraced, |r| r.window(op).cpu_ns_per_op),
        ))
    }

    /// Requests per second, `c` ÷ no agent, per round.
    pub fn ops_ratio(&self, c: Config, op: Op) -> Option<Spread> {
        Spread::of(&ratios(
            &self.col(c, |r| r.window(op).ops_per_s),
            &self.col(Config::Untraced, |r| r.window(op).ops_per_s),
        ))
    }

    /// Extra server CPU ns per request over no agent, per round.
    pub fn extra_cpu_ns(&self, c: Config, op: Op) -> Option<Spread> {
        let a = self.col(c, |r| r.window(op).cpu_ns_per_op);
        let u = self.col(Config::Untraced, |r| r.window(op).cpu_ns_per_op);
        let d: Vec<f64> = a
            .iter()
            .zip(&u)
            .filter_map(|(a, u)| Some((*a)? - (*u)?))
            .collect();
        Spread::of(&d)
    }
}

/// The final `requests per second` figure of `redis-benchmark -q` for test `test` (`SET`,
/// `GET`); progress lines are separated by `\r`.
pub fn parse_rps(out: &str, test: &str) -> Option<f64> {
    let prefix = format!("{test}: ");
    out.split(['\r', '\n'])
        .filter_map(|l| {
            let rest = l.trim().strip_prefix(prefix.as_str())?;
            let (num, tail) = rest.split_once(' ')?;
            tail.starts_with("requests per second")
                .then(|| num.parse().ok())?
        })
        .next_back()
}

struct Redis {
    proc: Proc,
    addr: Addr,
}

impl Redis {
    fn start(dir: &Path) -> Result<Redis> {
        let addr = Addr::Unix(dir.join("redis.sock"));
        let mut proc = Proc::spawn(
            "redis-server",
            &mut redis::server(&addr, dir),
            libc::SIGTERM,
        )?;
        redis::wait_ready(&addr, dir, || Ok(proc.poll()?.map(|e| e.describe())))?;
        Ok(Redis { proc, addr })
    }

    /// One window: `requests` of `op` over `keys` keys; the server's CPU ns per request
    /// and the requests per second.
    fn window(&self, op: Op, p: Params) -> Result<Window> {
        let mut cmd = Command::new("redis-benchmark");
        match &self.addr {
            Addr::Unix(sock) => cmd.arg("-s").arg(sock),
            Addr::Tcp(port) => cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]),
        };
        cmd.args(["-t", &op.name().to_lowercase(), "-q", "-d", "100"])
            .args(["-c", &p.clients.to_string()])
            .args(["-r", &p.keys.to_string()])
            .args(["-n", &p.requests.to_string()])
            .stdin(Stdio::null());
        let pid = self.proc.pid();
        let cpu0 = super::procs::cpu_seconds(pid)?;
        let out = crate::util::output(&mut cmd)?;
        let cpu1 = super::procs::cpu_seconds(pid)?;
        let ops_per_s = parse_rps(&out, op.name())
            .with_context(|| format!("no `{}: ... requests per second` in {out:?}", op.name()))?;
        Ok(Window {
            cpu_ns_per_op: (cpu1 - cpu0) * 1e9 / p.requests as f64,
            ops_per_s,
        })
    }
}

pub fn run(t: &Tools, p: Params, check: &dyn Fn() -> Result<()>) -> Result<Results> {
    let dir = TempDir::new(&format!("{}/redis-idle.XXXXXX", t.tmp.display()))?;
    let redis = Redis::start(dir.path())?;
    crate::util::output(&mut redis::sets(&redis.addr, p.keys, p.keys, 100))
        .context("loading the keys")?;
    let mut sleeper = Proc::spawn("sleep", Command::new("sleep").arg("3600"), libc::SIGKILL)?;
    let mut res = Results {
        params: p,
        runs: vec![vec![None; p.rounds]; CONFIGS.len()],
    };
    for round in 0..p.rounds {
        let mut line = Vec::new();
        for ci in rotation(CONFIGS.len(), round) {
            check()?;
            let c = CONFIGS[ci];
            let r = one(t, &redis, p, c, round, sleeper.pid()).with_context(|| {
                format!("Redis outside saves, round {}, {}", round + 1, c.label())
            })?;
            line.push(format!(
                "{c:?} SET {:.0} ns {:.0}/s GET {:.0} ns {:.0}/s",
                r.set.cpu_ns_per_op, r.set.ops_per_s, r.get.cpu_ns_per_op, r.get.ops_per_s
            ));
            res.runs[ci][round] = Some(r);
        }
        println!(
            "[bench] redis-idle round {}/{}: {}",
            round + 1,
            p.rounds,
            line.join(", ")
        );
    }
    sleeper.stop(Duration::from_secs(5))?;
    let mut redis = redis;
    redis.proc.stop(Duration::from_secs(10))?;
    Ok(res)
}

fn one(t: &Tools, redis: &Redis, p: Params, c: Config, round: usize, other: u32) -> Result<Run> {
    super::procs::note_foreign_tracers();
    let pid = redis.proc.pid();
    let tag = format!("idle-{round}-{c:?}");
    let tracer = match c {
        Config::Untraced => None,
        Config::Cowtrace => Some(Running::cowtrace(t, &tag, &[pid])?),
        Config::Elsewhere => Some(Running::cowtrace(t, &tag, &[other])?),
        Config::SyscallFloor => Some(Running::bpftrace(t, &tag, "empty-syscalls.bt", &[])?),
    };
    // Let the tracer's start-up work (its first /proc scans) end before the window.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let in_progress = redis::info_field(&redis.addr, "persistence", "rdb_bgsave_in_progress")?;
    if in_progress != "0" {
        bail!(
            "a save is running (rdb_bgsave_in_progress:{in_progress}); this section measures outside saves"
        );
    }
    let set = redis.window(Op::Set, p)?;
    let get = redis.window(Op::Get, p)?;
    let mut run = Run {
        set,
        get,
        ..Run::default()
    };
    if let Some(tracer) = tracer {
        let (out, _, _) = tracer.stop()?;
        if let Output::Cowtrace(trace) = out {
            run.lost = Some(trace.lost_cow_events());
            run.sessions = Some(
                trace
                    .lines
                    .iter()
                    .filter(|l| l["type"] == "session_start")
                    .count(),
            );
        }
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rps_of_each_test() {
        let out = "SET: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                   SET: 158730.16 requests per second, p50=4.103 msec                    \n\n\
                   GET: 170000.00 requests per second, p50=0.2 msec\n";
        assert_eq!(parse_rps(out, "SET"), Some(158730.16));
        assert_eq!(parse_rps(out, "GET"), Some(170000.0));
        assert_eq!(parse_rps(out, "INCR"), None);
    }

    fn run(set_ns: f64, get_ns: f64) -> Option<Run> {
        Some(Run {
            set: Window {
                cpu_ns_per_op: set_ns,
                ops_per_s: 1e9 / set_ns,
            },
            get: Window {
                cpu_ns_per_op: get_ns,
                ops_per_s: 1e9 / get_ns,
            },
            ..Run::default()
        })
    }

    #[test]
    fn ratios_within_rounds() {
        let r = Results {
            params: Params {
                rounds: 3,
                keys: 1,
                requests: 1,
                clients: 1,
            },
            runs: vec![
                vec![run(1000.0, 800.0), run(2000.0, 800.0), run(1000.0, 800.0)],
                vec![run(1100.0, 880.0), run(2100.0, 800.0), None],
            ],
        };
        let s = r.cpu_ratio(Config::Cowtrace, Op::Set).unwrap();
        assert_eq!((s.n, s.min, s.max), (2, 1.05, 1.1));
        assert_eq!(
            r.extra_cpu_ns(Config::Cowtrace, Op::Set).unwrap().median,
            100.0
        );
        let g = r.ops_ratio(Config::Cowtrace, Op::Get).unwrap();
        assert!((g.max - 1.0).abs() < 1e-12 && (g.min - 1.0 / 1.1).abs() < 1e-12);
        // Configurations this invocation did not run give nothing, not a panic.
        assert!(r.cpu_ratio(Config::SyscallFloor, Op::Get).is_none());
    }
}
