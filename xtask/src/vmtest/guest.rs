//! `xtask vmtest-guest PLAN.json`: the runner inside a vmtest guest, started by `/init`.
//!
//! It runs [`PLAN`] once per mode and prints one `VMTEST <mode>/<item> PASS|FAIL
//! <detail>` line per item on the console (see `console.rs`), with the output behind a
//! failure as `VMTEST-LOG` lines, then `VMTEST-END`. Every step has a time limit, and a
//! step that cannot run is a FAIL, never a silent pass. The host decides nothing from
//! what is missing here: it knows the plan too and fails any result that never came.

use super::plan::{FORCE_ENV, PLAN, Step, result_name, runs_on};
use crate::bench::cow::{self, Config, Metric, Params, Results};
use crate::bench::procs::Workload;
use crate::bench::tracers::{Running, Tools};
use crate::test::parse_counts;
use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A root test's time limit per unit of the time scale: 900 s at x86-64's 5 (TCG runs
/// a guest some 10–50 times slower than the host).
const TEST_LIMIT_PER_SCALE: Duration = Duration::from_secs(180);

/// What the host wrote into the image as `/vmtest/plan.json`.
struct GuestPlan {
    /// `x86_64`, `arm64`: which items of the plan run here.
    arch: String,
    /// How much longer than on the host the harness waits for anything (its
    /// `COWTRACE_TEST_TIME_SCALE`); a root test's limit scales with it.
    time_scale: u32,
    modes: Vec<String>,
    only: Vec<String>,
    cowtrace: PathBuf,
    cowbench: PathBuf,
    tests: Vec<(String, PathBuf)>,
    ratio_rounds: usize,
}

fn read_config(path: &Path) -> Result<GuestPlan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let s = |k: &str| -> Result<PathBuf> {
        Ok(PathBuf::from(
            v[k].as_str().with_context(|| format!("plan: no {k}"))?,
        ))
    };
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    };
    Ok(GuestPlan {
        arch: v["arch"].as_str().unwrap_or("x86_64").to_string(),
        time_scale: v["time_scale"].as_u64().unwrap_or(5) as u32,
        modes: strings("modes"),
        only: strings("only"),
        cowtrace: s("cowtrace")?,
        cowbench: s("cowbench")?,
        tests: v["tests"]
            .as_object()
            .context("plan: no tests")?
            .iter()
            .filter_map(|(k, p)| Some((k.clone(), PathBuf::from(p.as_str()?))))
            .collect(),
        ratio_rounds: v["ratio_rounds"].as_u64().unwrap_or(6) as usize,
    })
}

/// One line on the console, in one write.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

fn result(name: &str, r: Result<String>) {
    match r {
        Ok(detail) => say(&format!("VMTEST {name} PASS {}", one_line(&detail))),
        Err(e) => {
            let msg = format!("{e:#}");
            let mut lines = msg.lines();
            say(&format!(
                "VMTEST {name} FAIL {}",
                one_line(lines.next().unwrap_or(""))
            ));
            for l in lines {
                say(&format!("VMTEST-LOG {name} {l}"));
            }
        }
    }
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 400 {
        format!("{}...", s.chars().take(400).collect::<String>())
    } else {
        s
    }
}

pub fn run(plan: &Path) -> Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let up = uptime.split_whitespace().next().unwrap_or("?");
    let cfg = match read_config(plan) {
        Ok(c) => c,
        Err(e) => {
            result("boot", Err(e));
            say("VMTEST-END");
            return Ok(());
        }
    };
    say(&format!("VMTEST boot PASS {} up {up}s", release.trim()));
    for mode in &cfg.modes {
        // Every process the runner starts (cowtrace, the test binaries and the cowtrace
        // they start) inherits the mode. Single-threaded here: nothing reads the
        // environment concurrently.
        // SAFETY: no other thread runs in this process.
        unsafe {
            if mode == "tracepoint" {
                std::env::set_var(FORCE_ENV.0, FORCE_ENV.1);
            } else {
                std::env::remove_var(FORCE_ENV.0);
            }
        }
        for item in PLAN {
            if !cfg.only.is_empty() && !cfg.only.iter().any(|o| o == item.name) {
                continue;
            }
            // The host expects no result for it and shows it as not run, with why.
            if !runs_on(&cfg.arch, item.name) {
                continue;
            }
            let name = result_name(mode, item.name);
            let t0 = Instant::now();
            let r = match item.step {
                Step::Check => check(&cfg),
                Step::Attach => attach(&cfg, mode),
                Step::RootTest { bin, test } => root_test(&cfg, &name, bin, test),
                Step::BackToBack => back_to_back(&cfg),
                Step::Ratios => ratios(&cfg, mode),
            };
            let took = t0.elapsed().as_secs_f64();
            result(&name, r.map(|d| format!("[{took:.0} s] {d}")));
        }
    }
    say("VMTEST-END");
    Ok(())
}

/// `cowtrace check`: exit 0, and what it says about the optional paths.
fn check(cfg: &GuestPlan) -> Result<String> {
    let out = Command::new(&cfg.cowtrace)
        .arg("check")
        .stdin(Stdio::null())
        .output()
        .context("running cowtrace check")?;
    let text = String::from_utf8_lossy(&out.stdout);
    for l in text.lines() {
        say(&format!("VMTEST-LOG check {l}"));
    }
    if !out.status.success() || !text.contains("cowtrace can run") {
        bail!(
            "cowtrace check exited with {}:\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The lines that differ from kernel to kernel.
    let pick: Vec<String> = text
        .lines()
        .filter(|l| {
            ["fentry", "kprobe", "COW method", "paths"]
                .iter()
                .any(|k| l.contains(k))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    Ok(pick.join("; "))
}

/// `cowtrace record` on a sleeping process: its `meta.attach` (the hooks in use).
fn attach(cfg: &GuestPlan, mode: &str) -> Result<String> {
    let dir = tmp_dir("attach")?;
    let tools = tools(cfg, &dir);
    let mut sleeper =
        crate::bench::procs::Proc::spawn("sleep", Command::new("sleep").arg("600"), libc::SIGKILL)?;
    let tracer = Running::cowtrace(&tools, "attach", &[sleeper.pid()])?;
    let attach_ms = tracer.attach.as_millis();
    let (out, _, _) = tracer.stop()?;
    sleeper.stop(Duration::from_secs(5))?;
    let crate::bench::tracers::Output::Cowtrace(trace) = out else {
        bail!("no trace");
    };
    let a = &trace.lines[0]["attach"];
    if a.is_null() {
        bail!("the meta line has no attach object: {}", trace.lines[0]);
    }
    say(&format!("VMTEST-INFO {mode} attach {a}"));
    Ok(format!(
        "attached in {attach_ms} ms; method {}; writes {}",
        a["method"].as_str().unwrap_or("?"),
        a["writes"].as_str().unwrap_or("?")
    ))
}

fn tmp_dir(tag: &str) -> Result<PathBuf> {
    let d = PathBuf::from(format!("/tmp/vmtest-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

fn tools(cfg: &GuestPlan, dir: &Path) -> Tools {
    Tools {
        cowtrace: cfg.cowtrace.clone(),
        cowbench: cfg.cowbench.clone(),
        bench_dir: PathBuf::from("/nonexistent"),
        tmp: dir.to_path_buf(),
        shm: dir.to_path_buf(),
    }
}

/// One root test from its compiled binary, with the harness told that the workloads
/// are already built. PASS needs exactly one test passed and none ignored.
fn root_test(cfg: &GuestPlan, name: &str, bin: &str, test: &str) -> Result<String> {
    let exe = cfg
        .tests
        .iter()
        .find(|(b, _)| b == bin)
        .map(|(_, p)| p.clone())
        .with_context(|| format!("no test binary {bin} in the image"))?;
    let log = PathBuf::from(format!("/tmp/vmtest-{}.log", name.replace('/', "-")));
    let f = std::fs::File::create(&log)?;
    let mut child = Command::new(&exe)
        .args([
            "--ignored",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            test,
        ])
        .env("COWTRACE_TEST_PREBUILT", "1")
        .env("COWTRACE_TEST_TIME_SCALE", cfg.time_scale.to_string())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let t0 = Instant::now();
    let limit = TEST_LIMIT_PER_SCALE * cfg.time_scale;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let c = parse_counts(&out);
    let ok = status.is_some_and(|s| s.success()) && c.passed == 1 && c.ignored == 0;
    // The test's own eprintln lines (its measurements), without libtest's chatter.
    let own: Vec<&str> = out
        .lines()
        .filter(|l| {
            let l = l.trim();
            !l.is_empty()
                && !l.starts_with("running ")
                && !l.starts_with("test ")
                && !l.starts_with("successes:")
                && !l.starts_with("failures:")
                // The banner and the lost-events line of the recorder the test started
                // (its session lines stay: they say what was counted).
                && !l.starts_with("cowtrace")
                && !l.starts_with("lost events")
        })
        .collect();
    if ok {
        return Ok(own.join(" | "));
    }
    let why = match status {
        None => format!("timed out after {limit:?}"),
        Some(s) if c.passed == 0 && c.failed == 0 => format!("did not run ({s}; {c:?})"),
        Some(s) => format!("failed ({s})"),
    };
    let lines: Vec<&str> = out.lines().collect();
    bail!(
        "{test} {why}\n{}",
        lines[lines.len().saturating_sub(40)..].join("\n")
    )
}

/// Pages a round may copy beyond its region: the parent's stack, libc and Rust data
/// (as in agent/tests/cow.rs).
const SLACK: u64 = cow::SLACK;

/// Eight fork + rewrite rounds of 64 MiB back to back, traced: each round's session must
/// have counted its 16,384 pages. Also compares with the faults the kernel itself
/// counted for the process (`ru_minflt` around each rewrite), so a shortfall says
/// whether the faults happened at all.
fn back_to_back(cfg: &GuestPlan) -> Result<String> {
    let dir = tmp_dir("b2b")?;
    let tools = tools(cfg, &dir);
    let mut w = Workload::spawn(
        "cowbench",
        Command::new(&cfg.cowbench).args(["--mode", "cow", "--mib", "64", "--reps", "8"]),
    )?;
    // With --events: the copy events of each session are counted too, against the
    // exact counters (a late event must keep its session).
    let tracer = Running::cowtrace_with(&tools, "b2b", &[w.pid()], &["--events"], &[])?;
    w.go()?;
    let v = w.result(Duration::from_secs(600))?;
    let (out, _) = tracer.wait(Duration::from_secs(120))?;
    let crate::bench::tracers::Output::Cowtrace(trace) = out else {
        bail!("no trace");
    };
    let pages = v["pages"].as_u64().context("cowbench: no pages")?;
    let faults: Vec<u64> = v["faults"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    let mut counted = Vec::new();
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for (i, child) in v["children"]
        .as_array()
        .context("no children")?
        .iter()
        .enumerate()
    {
        let child = child.as_u64().context("bad child pid")?;
        let e = trace
            .end_of_child(child)
            .with_context(|| format!("no session_end for child {child}"))?;
        let c = &e["cow"];
        let n = c["parent_pages"].as_u64().unwrap_or(0);
        counted.push(n);
        let lines = trace
            .lines
            .iter()
            .filter(|l| l["type"] == "cow" && l["session"] == e["session"] && l["side"] == "parent")
            .count() as u64;
        events.push(lines);
        if !(pages..=pages + SLACK).contains(&n) {
            bad.push(format!(
                "round {}: {n} parent copies, not in [{pages}, {}] (kernel faults {}, wp_faults {}, parent reuses {}, child copies {})",
                i + 1,
                pages + SLACK,
                faults.get(i).map_or("?".into(), u64::to_string),
                c["wp_faults"],
                c["parent_reuse_faults"],
                c["child_pages"]
            ));
        }
    }
    let total: u64 = counted.iter().sum();
    let lost = trace.lost_cow_events();
    let summary = format!(
        "{total} parent copies for {} pages in {} rounds ({counted:?}); their copy events {events:?}; kernel faults {faults:?}; lost events {lost}",
        pages * counted.len() as u64,
        counted.len(),
    );
    if lost == 0 && events != counted {
        bad.push(format!("no event was lost, yet the sessions' copy events {events:?} differ from their counters {counted:?}"));
    }
    if !bad.is_empty() {
        bail!("{summary}\n{}", bad.join("\n"));
    }
    Ok(summary)
}

/// The cost ratios under TCG: a COW copy traced (÷ untraced), and a write() of a
/// process cowtrace does not trace while it traces another (÷ no cowtrace at all).
fn ratios(cfg: &GuestPlan, mode: &str) -> Result<String> {
    let dir = tmp_dir("ratios")?;
    let mut tools = tools(cfg, &dir);
    // The timed writes go to tmpfs, as in `cargo xtask bench`: the cost of the syscall
    // and its hooks, not of ext4 and the emulated disk.
    let shm = PathBuf::from("/dev/shm/vmtest-ratios");
    let _ = std::fs::remove_dir_all(&shm);
    std::fs::create_dir_all(&shm).with_context(|| format!("creating {}", shm.display()))?;
    tools.shm = shm;
    let p = Params {
        rounds: cfg.ratio_rounds,
        mib: 32,
        reps: 3,
        touch_mib: 0,
        write_mib: 8,
    };
    let configs = [
        Config::Untraced,
        Config::Cowtrace,
        Config::CowtraceElsewhere,
    ];
    let mut sleeper = crate::bench::procs::Proc::spawn(
        "sleep",
        Command::new("sleep").arg("3600"),
        libc::SIGKILL,
    )?;
    let mut res = Results {
        params: p,
        runs: vec![vec![None; p.rounds]; cow::CONFIGS.len()],
    };
    let mut inexact = Vec::new();
    for round in 0..p.rounds {
        for k in 0..configs.len() {
            let c = configs[(k + round) % configs.len()];
            let r = cow::one(&tools, p, c, round, sleeper.pid())
                .with_context(|| format!("round {}, {}", round + 1, c.label()))?;
            if r.exact == Some(false) {
                inexact.push(format!(
                    "round {}: counted {:?} of {}",
                    round + 1,
                    r.counted,
                    r.expected
                ));
            }
            let i = cow::CONFIGS
                .iter()
                .position(|x| *x == c)
                .context("config")?;
            res.runs[i][round] = Some(r);
        }
    }
    sleeper.stop(Duration::from_secs(5))?;
    // The faulting (or writing) thread's CPU time: with one vCPU, wall time would also
    // count the agent's own drain of the events, which runs on another CPU on a real
    // host; the in-kernel work of the hooks is in the thread's CPU time.
    let cow_r = res
        .ratio(Config::Cowtrace, Metric::CowCpu)
        .context("no COW ratio")?;
    let write_r = res
        .ratio(Config::CowtraceElsewhere, Metric::WriteCpu)
        .context("no write ratio")?;
    let cow_ns = res
        .ns(Config::Untraced, Metric::CowCpu)
        .context("no COW time")?;
    let write_ns = res
        .ns(Config::Untraced, Metric::WriteCpu)
        .context("no write time")?;
    let info = serde_json::json!({
        "rounds": p.rounds,
        "cow_ratio": [cow_r.median, cow_r.min, cow_r.max],
        "write_ratio": [write_r.median, write_r.min, write_r.max],
        "cow_untraced_ns": cow_ns.median,
        "write_untraced_ns": write_ns.median,
    });
    say(&format!("VMTEST-INFO {mode} ratios {info}"));
    let text = format!(
        "COW copy traced/untraced {}; untraced write() with cowtrace on/off {}; untraced copy {:.1} µs, 4 KiB write {:.1} µs of thread CPU ({} rounds)",
        cow_r.ratio(),
        write_r.ratio(),
        cow_ns.median / 1e3,
        write_ns.median / 1e3,
        p.rounds
    );
    if !inexact.is_empty() {
        bail!(
            "{text}\ntraced runs that did not count exactly:\n{}",
            inexact.join("\n")
        );
    }
    Ok(text)
}
