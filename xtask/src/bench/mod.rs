//! `cargo xtask bench`: what cowtrace costs the host and how far it scales, side by side
//! with the bpftrace scripts users would otherwise write (issue 7).
//!
//! Runs setup, builds release, runs five sections and writes `bench/RESULTS.md`:
//!
//! 1. cost per COW fault (`cow.rs`): untraced, cowtrace, bpftrace peer, A/A control;
//! 2. overhead on Redis during a BGSAVE (`redis.rs`);
//! 3. capacity: COW and write storms, rates, drops, exact totals (`capacity.rs`);
//! 4. cowtrace's own cost: CPU per event, RSS, start-up time (from 1 and 3);
//! 5. cost on processes cowtrace does not trace (from the runs of 1);
//! 6. `cowtrace report` (text and `--html`) on large synthetic traces (`postmortem.rs`);
//! 7. a traced Redis outside saves: CPU per SET/GET and their rate (`idle.rs`);
//! 8. start to attached, SIGINT/`q`/Ctrl-C to the summary and to exit with every program
//!    detached, timed from outside (`stop.rs`);
//! 9. bystanders: untraced processes under cowtrace and under empty programs on its hooks
//!    (`cow.rs`'s runs, a subset of its configurations).
//!
//! Sections 6 to 9 are measured on their own and can replace theirs in an existing
//! `bench/RESULTS.md` (`--update-sections`).
//!
//! Every figure is a ratio between runs of the same invocation taken in alternating
//! order, reported as the median with min–max; nothing is asserted (benchmarks are not
//! tests). `--quick` runs tiny sizes for development and writes to
//! `target/bench/RESULTS.md` instead, as does `--only`.

mod capacity;
pub mod cow;
mod idle;
mod postmortem;
pub mod procs;
mod redis;
mod report;
pub mod stats;
mod stop;
pub mod tracers;
mod view;

use crate::util::check_interrupted;
use crate::{setup, util};
use anyhow::{Context as _, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Tiny sizes and few rounds, to check the harness (the figures mean nothing).
    #[arg(long)]
    quick: bool,
    /// Run only these sections (comma-separated: cow, redis, capacity, view, report,
    /// redis-idle, stop, bystanders). Sections 4 and 5 come from the runs of `cow`,
    /// `capacity` and `view`.
    #[arg(long, value_delimiter = ',', value_parser = SECTIONS)]
    only: Vec<String>,
    /// Skip `setup` and the release build (use the binaries already in target/release).
    #[arg(long)]
    no_build: bool,
    /// With `--only` of sections measured on their own (report, redis-idle, stop,
    /// bystanders: sections 6 to 9): replace those sections of bench/RESULTS.md with this
    /// run's, or add them before "Where targets are missed", and keep the rest. Each says
    /// when, on which commit and under what load it was measured.
    #[arg(long, requires = "only", alias = "update-report-section")]
    update_sections: bool,
}

/// The values of `--only`.
const SECTIONS: [&str; 8] = [
    "cow",
    "redis",
    "capacity",
    "view",
    "report",
    "redis-idle",
    "stop",
    "bystanders",
];

/// The sections `--update-sections` can renew alone.
const STANDALONE: [&str; 4] = ["report", "redis-idle", "stop", "bystanders"];

/// Sizes of one invocation.
struct Plan {
    cow: cow::Params,
    redis: redis::Params,
    storms: Vec<capacity::Storm>,
    pairs: usize,
    idle: idle::Params,
    stop: stop::Params,
    bystanders: cow::Params,
    /// Memory the largest section needs (populated regions, their copies, tmpfs files).
    need_bytes: u64,
}

impl Plan {
    fn full() -> Plan {
        use capacity::Storm;
        Plan {
            cow: cow::Params {
                rounds: 7,
                mib: 96,
                reps: 5,
                touch_mib: 128,
                write_mib: 64,
            },
            redis: redis::Params {
                rounds: 6,
                keys: 300_000,
                sets: 300_000,
                save_delay_us: 100,
            },
            storms: vec![
                Storm::cow("cow-1x2GiB", 1, 2048),
                Storm::cow("cow-4x512MiB", 4, 512),
                Storm::write("write-4x512MiB", 4, 512),
                Storm {
                    name: "mixed-2cow+2write",
                    cow_procs: 2,
                    cow_mib: 512,
                    write_procs: 2,
                    write_mib: 512,
                    chunk: 4096,
                    ring_bytes: None,
                },
                Storm {
                    ring_bytes: Some(64 << 10),
                    ..Storm::cow("cow-1x512MiB-ring64KiB", 1, 512)
                },
            ],
            pairs: 5,
            idle: idle::Params {
                rounds: 7,
                keys: 100_000,
                requests: 100_000,
                clients: 50,
            },
            stop: stop::Params {
                record_runs: 9,
                view_runs: 8,
            },
            bystanders: cow::Params {
                rounds: 9,
                mib: 96,
                reps: 5,
                touch_mib: 128,
                write_mib: 64,
            },
            need_bytes: 6 << 30,
        }
    }

    fn quick() -> Plan {
        use capacity::Storm;
        Plan {
            cow: cow::Params {
                rounds: 2,
                mib: 32,
                reps: 2,
                touch_mib: 32,
                write_mib: 8,
            },
            redis: redis::Params {
                rounds: 1,
                keys: 30_000,
                sets: 30_000,
                save_delay_us: 1000,
            },
            storms: vec![
                Storm::cow("cow-1x256MiB", 1, 256),
                Storm::cow("cow-2x64MiB", 2, 64),
                Storm::write("write-2x64MiB", 2, 64),
                Storm {
                    name: "mixed-1cow+1write",
                    cow_procs: 1,
                    cow_mib: 64,
                    write_procs: 1,
                    write_mib: 64,
                    chunk: 4096,
                    ring_bytes: None,
                },
                Storm {
                    ring_bytes: Some(64 << 10),
                    ..Storm::cow("cow-1x64MiB-ring64KiB", 1, 64)
                },
            ],
            pairs: 1,
            idle: idle::Params {
                rounds: 1,
                keys: 10_000,
                requests: 10_000,
                clients: 50,
            },
            stop: stop::Params {
                record_runs: 2,
                view_runs: 2,
            },
            bystanders: cow::Params {
                rounds: 1,
                mib: 16,
                reps: 2,
                touch_mib: 16,
                write_mib: 8,
            },
            need_bytes: 1 << 30,
        }
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let started = Instant::now();
    let root = util::repo_root();
    if !args.no_build {
        setup::run()?;
    }
    preflight()?;
    // Ctrl-C is checked between runs, so that the guards still clean up.
    util::catch_sigint();
    if !args.no_build {
        util::run(util::cargo().args([
            "build",
            "--release",
            "-p",
            "agent",
            "--bin",
            "cowtrace",
            "--example",
            "cowbench",
        ]))?;
    }
    let plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let want = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let avail = procs::parse_status_kb(
        &std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?,
        "MemAvailable",
    )
    .unwrap_or(0)
        * 1024;
    if want("capacity") && avail < plan.need_bytes {
        bail!(
            "the capacity storms need about {} GiB of free memory, only {:.1} GiB is available",
            plan.need_bytes >> 30,
            avail as f64 / (1u64 << 30) as f64
        );
    }

    let tmp = procs::TempDir::new("/tmp/cowtrace-bench.XXXXXX")?;
    let shm = procs::TempDir::new("/dev/shm/cowtrace-bench.XXXXXX")?;
    let tools = tracers::Tools {
        shm: shm.path().to_path_buf(),
        cowtrace: root.join("target/release/cowtrace"),
        cowbench: root.join("target/release/examples/cowbench"),
        bench_dir: root.join("bench"),
        tmp: tmp.path().to_path_buf(),
    };
    for p in [&tools.cowtrace, &tools.cowbench] {
        if !p.is_file() {
            bail!("{} is missing: run without --no-build", p.display());
        }
    }
    let machine = report::Machine::probe(&root);
    println!(
        "[bench] {} CPUs, {}, kernel {}, cowtrace {}",
        machine.nproc, machine.cpu_model, machine.kernel, machine.commit
    );

    let mut results = report::Results {
        machine,
        quick: args.quick,
        cow: None,
        redis: None,
        storms: None,
        view: None,
        postmortem: None,
        idle: None,
        stop: None,
        bystanders: None,
        elapsed_s: 0.0,
    };
    if args.update_sections
        && let Some(o) = args.only.iter().find(|o| !STANDALONE.contains(&o.as_str()))
    {
        bail!(
            "--update-sections renews only sections measured on their own ({}); `{o}` feeds              several sections and the summary: run the whole bench to renew it",
            STANDALONE.join(", ")
        );
    }
    if want("cow") {
        check_interrupted()?;
        let t = Instant::now();
        println!(
            "== bench 1+5: cost per COW fault ({} rounds)",
            plan.cow.rounds
        );
        results.cow = Some(cow::run(
            &tools,
            plan.cow,
            &cow::CONFIGS,
            &check_interrupted,
        )?);
        println!(
            "[bench] section 1+5 took {:.0} s",
            t.elapsed().as_secs_f64()
        );
    }
    if want("redis") {
        check_interrupted()?;
        let t = Instant::now();
        println!(
            "== bench 2: overhead on Redis ({} rounds)",
            plan.redis.rounds
        );
        results.redis = Some(redis::run(&tools, plan.redis, &check_interrupted)?);
        println!("[bench] section 2 took {:.0} s", t.elapsed().as_secs_f64());
    }
    if want("capacity") {
        check_interrupted()?;
        let t = Instant::now();
        println!("== bench 3+4: capacity storms ({} pairs each)", plan.pairs);
        results.storms = Some(capacity::run(
            &tools,
            &plan.storms,
            plan.pairs,
            &check_interrupted,
        )?);
        println!(
            "[bench] section 3+4 took {:.0} s",
            t.elapsed().as_secs_f64()
        );
    }
    if want("view") {
        check_interrupted()?;
        let t = Instant::now();
        let rounds = if args.quick { 1 } else { 3 };
        println!("== bench 4: live view CPU per refresh ({rounds} rounds)");
        results.view = Some(view::run(&tools, rounds)?);
        println!("[bench] live view took {:.0} s", t.elapsed().as_secs_f64());
    }
    if want("report") {
        check_interrupted()?;
        let t = Instant::now();
        println!("== bench 6: report on large traces");
        results.postmortem = Some(postmortem::run(&tools.cowtrace, &tools.tmp, args.quick)?);
        println!("[bench] section 6 took {:.0} s", t.elapsed().as_secs_f64());
    }
    if want("redis-idle") {
        check_interrupted()?;
        let t = Instant::now();
        println!(
            "== bench 7: Redis outside saves ({} rounds)",
            plan.idle.rounds
        );
        results.idle = Some(idle::run(&tools, plan.idle, &check_interrupted)?);
        println!("[bench] section 7 took {:.0} s", t.elapsed().as_secs_f64());
    }
    if want("stop") {
        check_interrupted()?;
        let t = Instant::now();
        println!(
            "== bench 8: start and stop ({} record runs, {} watch runs)",
            plan.stop.record_runs, plan.stop.view_runs
        );
        results.stop = Some(stop::run(&tools, plan.stop, &check_interrupted)?);
        println!("[bench] section 8 took {:.0} s", t.elapsed().as_secs_f64());
    }
    if want("bystanders") {
        check_interrupted()?;
        let t = Instant::now();
        println!(
            "== bench 9: bystanders and the floors of the hooks ({} rounds)",
            plan.bystanders.rounds
        );
        results.bystanders = Some(cow::run(
            &tools,
            plan.bystanders,
            &cow::BYSTANDER_CONFIGS,
            &check_interrupted,
        )?);
        println!("[bench] section 9 took {:.0} s", t.elapsed().as_secs_f64());
    }
    results.elapsed_s = started.elapsed().as_secs_f64();
    results.machine.load_end = report::loadavg();
    results.machine.foreign = procs::foreign_tracers();

    if args.update_sections {
        let how = format!(
            "cargo xtask bench --only {} --update-sections",
            args.only.join(",")
        );
        let path = root.join("bench/RESULTS.md");
        let mut text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let sections = report::standalone_sections(&results, &how);
        for section in &sections {
            text = report::replace_section(&text, section);
            println!("\n{section}");
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "[bench] replaced {} section(s) of {}",
            sections.len(),
            path.display()
        );
        return Ok(());
    }
    let md = report::render(&results);
    let full = !args.quick && args.only.is_empty();
    let out: PathBuf = if full {
        root.join("bench/RESULTS.md")
    } else {
        root.join("target/bench/RESULTS.md")
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    println!("\n{md}");
    println!(
        "[bench] wrote {} ({:.0} s in all)",
        out.display(),
        results.elapsed_s
    );
    Ok(())
}

/// Root, the peer tools and Redis, before anything is started.
fn preflight() -> Result<()> {
    if !util::is_root() {
        bail!("the benchmarks load eBPF programs (cowtrace, bpftrace): run as root");
    }
    for tool in [
        "bpftrace",
        "redis-server",
        "redis-benchmark",
        "redis-cli",
        "sleep",
    ] {
        if !util::on_path(tool) {
            bail!("`{tool}` is not on PATH; `cargo xtask setup` installs it");
        }
    }
    if !std::path::Path::new("/dev/shm").is_dir() {
        bail!("/dev/shm is missing (the write storms write to tmpfs there)");
    }
    // A leftover from a killed run would skew the figures.
    let ps = util::output(Command::new("ps").args(["-eo", "pid,args"])).unwrap_or_default();
    let stray: Vec<&str> = ps
        .lines()
        .filter(|l| report::is_tracer(l) || l.contains("examples/cowbench"))
        .collect();
    if !stray.is_empty() {
        eprintln!(
            "[bench] warning: other tracers or workloads are running; their programs fire on \
             every fault and skew the figures (RESULTS.md lists them):\n{}",
            stray.join("\n")
        );
    }
    Ok(())
}
