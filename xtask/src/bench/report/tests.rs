//! Rendering fixed results: every section, every missed target, the key lines.
use super::*;
use crate::bench::capacity::{Run as SRun, Storm, Traced};
use crate::bench::cow::{self, Config as C};
use crate::bench::redis;

fn machine() -> Machine {
    Machine {
        date: "2025-01-01 00:00 UTC".into(),
        nproc: 2,
        mem_bytes: 24 << 30,
        cpu_model: "test CPU".into(),
        kernel: "6.18".into(),
        commit: "abc".into(),
        bpftrace: "bpftrace v0.17.0".into(),
        load_start: "1 1 1".into(),
        load_end: "1 1 1".into(),
        others: vec![],
        foreign: (10, 0, vec![]),
    }
}

fn cow_run(ns: f64) -> Option<cow::Run> {
    Some(cow::Run {
        cow_ns: ns,
        cow_cpu_ns: ns,
        touch_ns: ns,
        touch_cpu_ns: ns,
        write_ns: ns,
        write_cpu_ns: ns,
        counted: Some(100),
        expected: 100,
        exact: Some(true),
        lost: Some(0),
        attach_ms: Some(400.0),
        stop_ms: Some(1000.0),
    })
}

#[test]
fn tracer_lines() {
    assert!(is_tracer(
        "24327 /work/main/target/release/cowtrace watch -p 30591"
    ));
    assert!(is_tracer("99 bpftrace -e tracepoint:x {}"));
    assert!(!is_tracer(
        "24324 bash -c /work/main/target/release/cowtrace watch -p 30591"
    ));
    assert!(!is_tracer("4709 tmux -L vt new-session cowtrace watch"));
    assert!(!is_tracer("5 /usr/bin/cowtrace check"));
}

#[test]
fn renders_every_section_and_names_misses() {
    let p = cow::Params {
        rounds: 1,
        mib: 1,
        reps: 1,
        touch_mib: 1,
        write_mib: 1,
    };
    // untraced, control, cowtrace (10% slower), bpftrace, elsewhere, hook floor
    let runs = [1000.0, 1000.0, 1100.0, 1000.0, 1000.0, 1000.0]
        .iter()
        .map(|&ns| vec![cow_run(ns)])
        .collect();
    let traced = Traced {
        counted: 1_000_000,
        exact: true,
        cpu_s: 0.05,
        hwm_attach: 40 << 20,
        hwm_end: 40 << 20,
        rss_end: 20 << 20,
        ring_rss: 16 << 20,
        attach_ms: 400.0,
        ..Traced::default()
    };
    let storm = StormResult {
        storm: Storm::cow("cow-test", 1, 1),
        untraced: vec![SRun {
            events: 1_000_000,
            span_s: 2.0,
            traced: None,
        }],
        traced: vec![SRun {
            events: 1_000_000,
            span_s: 2.5,
            traced: Some(traced),
        }],
    };
    let r = Results {
        machine: machine(),
        quick: false,
        cow: Some(cow::Results { params: p, runs }),
        redis: None,
        storms: Some(vec![storm]),
        view: Some(super::super::view::Results {
            full_ms: vec![1.5, 1.7],
            plain_ms: vec![1.0],
        }),
        postmortem: None,
        idle: None,
        stop: None,
        bystanders: None,
        elapsed_s: 60.0,
    };
    let md = render(&r);
    for h in [
        "## Summary",
        "## 1. Cost per COW fault",
        "## 3. Capacity",
        "## 4. What cowtrace costs itself",
        "## 5. Cost on processes",
        "## Where targets are missed",
        "live view CPU per refresh",
    ] {
        assert!(md.contains(h), "missing {h:?} in:\n{md}");
    }
    // 1.1× against 1.03×, 400 ms against 300 ms, 400k/s against 2 M/s.
    assert!(md.contains("missed by 6.8%"), "{md}");
    assert!(md.contains("**Start to attached** 400 ms"), "{md}");
    assert!(md.contains("**Capacity** 400k/s"), "{md}");
    // 0.05 s per M events = 0.5% of a core per 100k/s: met. 24 MiB without ring: met.
    assert!(!md.contains("**Agent CPU**"), "{md}");
    assert!(!md.contains("**Peak RSS**"), "{md}");
}

/// Every section with figures, and every target missed: three rounds of section 1/5
/// (wall ns per configuration and round), two of Redis, a COW, a write and a
/// small-ring storm.
pub(super) fn fixture() -> Results {
    let p = cow::Params {
        rounds: 3,
        mib: 4,
        reps: 2,
        touch_mib: 8,
        write_mib: 2,
    };
    let run = |cow: f64, touch: f64, write: f64, traced: bool| {
        Some(cow::Run {
            cow_ns: cow,
            cow_cpu_ns: cow - 10.0,
            touch_ns: touch,
            touch_cpu_ns: touch - 5.0,
            write_ns: write,
            write_cpu_ns: write - 1.0,
            counted: traced.then_some(1030),
            expected: 1024,
            exact: traced.then_some(true),
            lost: traced.then_some(2),
            attach_ms: traced.then_some(350.0),
            stop_ms: traced.then_some(900.0),
        })
    };
    // CONFIGS order: untraced, control, cowtrace, bpftrace, elsewhere, hook floor.
    let table: [[(f64, f64, f64); 3]; 6] = [
        [
            (3000.0, 2000.0, 2500.0),
            (3100.0, 2100.0, 2600.0),
            (2900.0, 2050.0, 2550.0),
        ],
        [
            (3050.0, 2010.0, 2490.0),
            (3000.0, 2120.0, 2640.0),
            (2950.0, 2040.0, 2500.0),
        ],
        [
            (3700.0, 2300.0, 4000.0),
            (3800.0, 2400.0, 4100.0),
            (3600.0, 2350.0, 4050.0),
        ],
        [
            (4600.0, 3000.0, 2800.0),
            (4700.0, 3100.0, 2900.0),
            (4500.0, 3050.0, 2850.0),
        ],
        [
            (3150.0, 2200.0, 3100.0),
            (3250.0, 2300.0, 3200.0),
            (3050.0, 2250.0, 3150.0),
        ],
        [
            (3300.0, 2500.0, 2700.0),
            (3400.0, 2600.0, 2800.0),
            (3200.0, 2550.0, 2750.0),
        ],
    ];
    let runs = table
        .iter()
        .enumerate()
        .map(|(i, rounds)| {
            let traced = matches!(
                cow::CONFIGS[i],
                C::Cowtrace | C::Bpftrace | C::CowtraceElsewhere
            );
            rounds
                .iter()
                .map(|&(c, t, w)| run(c, t, w, traced))
                .collect()
        })
        .collect();
    let rrun = |cpu: f64, ops: f64, traced: bool| {
        Some(redis::Run {
            cpu_ms_per_k: cpu,
            ops_per_s: ops,
            parent_copies: traced.then_some(14000),
            child_write_bytes: traced.then_some(400 << 10),
            child_alive: true,
            lost: traced.then_some(0),
            stop_ms: traced.then_some(800.0),
        })
    };
    let redis = redis::Results {
        params: redis::Params {
            rounds: 2,
            keys: 1000,
            sets: 2000,
            save_delay_us: 100,
        },
        runs: vec![
            vec![rrun(2.0, 400_000.0, false), rrun(2.2, 380_000.0, false)],
            vec![rrun(2.1, 390_000.0, true), rrun(2.4, 350_000.0, true)],
            vec![rrun(2.3, 360_000.0, true), None],
        ],
        redis_version: "Redis server v=7.0.15".into(),
        rss_bytes: 50 << 20,
    };
    let traced = |counted: u64, cpu_s: f64, ring: u64| Traced {
        counted,
        exact: true,
        cpu_s,
        hwm_attach: 60 << 20,
        hwm_end: 60 << 20,
        rss_end: 30 << 20,
        ring_rss: ring,
        attach_ms: 420.0,
        startup_cpu_s: 0.3,
        startup_user_s: 0.2,
        startup_sys_s: 0.1,
        stop_ms: 1900.0,
        life_cpu_s: 0.5,
        life_max_rss: 60 << 20,
        ..Traced::default()
    };
    let storm =
        |storm: Storm, events: u64, untraced_s: f64, traced_s: f64, cpu_s: f64, ring: u64| {
            StormResult {
                storm,
                untraced: vec![SRun {
                    events,
                    span_s: untraced_s,
                    traced: None,
                }],
                traced: vec![SRun {
                    events,
                    span_s: traced_s,
                    traced: Some(traced(events, cpu_s, ring)),
                }],
            }
        };
    let mut mism = storm(
        Storm::write("write-2x8MiB", 2, 8),
        4096,
        0.01,
        0.02,
        0.002,
        18 << 20,
    );
    if let Some(t) = mism.traced[0].traced.as_mut() {
        t.mismatches.push("pid 7: 10 calls, 9 counted".into());
    }
    Results {
        machine: machine(),
        quick: false,
        cow: Some(cow::Results { params: p, runs }),
        redis: Some(redis),
        storms: Some(vec![
            storm(
                Storm::cow("cow-1x8MiB", 1, 8),
                2048,
                0.01,
                0.0125,
                0.001,
                18 << 20,
            ),
            mism,
            storm(
                Storm {
                    ring_bytes: Some(64 << 10),
                    ..Storm::cow("cow-1x4MiB-ring64KiB", 1, 4)
                },
                1024,
                0.005,
                0.008,
                0.001,
                2 << 20,
            ),
        ]),
        view: Some(super::super::view::Results {
            full_ms: vec![0.4, 0.5],
            plain_ms: vec![0.3],
        }),
        postmortem: Some(crate::bench::postmortem::Results {
            cases: vec![(
                crate::bench::postmortem::Case {
                    name: "day",
                    what: "1440 saves".into(),
                    lines: 46_081,
                    bytes: 30 << 20,
                },
                vec![crate::bench::postmortem::Run {
                    format: "html",
                    secs: 1.25,
                    max_rss_bytes: 12 << 20,
                    out_bytes: 2 << 20,
                }],
            )],
        }),
        idle: None,
        stop: None,
        bystanders: None,
        elapsed_s: 300.0,
    }
}

/// The figures of the fixture, line by line, as the generator wrote them before it
/// was split into modules (method and tables unchanged), and no claim about the code.
#[test]
fn renders_fixture() {
    let md = render(&fixture());
    let lines: Vec<&str> = md.lines().collect();
    for want in [
        "| | |",
        "| machine | 2 CPUs (test CPU), 24.0 GiB memory |",
        "| figure | target | result: median (min–max) | verdict |",
        "| 1. time per COW copy (wall clock), traced by cowtrace ÷ untraced | ≤ 1.03× | 1.233× (1.226–1.241) | missed by 19.7% |",
        "| 4. cowtrace CPU, % of one core per 100k events/s | ≤ 2% | 4.88% (4.88–4.88) | missed by 144.1% |",
        "| 5. untraced process, cowtrace loaded elsewhere ÷ not loaded: 4 KiB write() to tmpfs | ≤ 1.01× | wall 1.235× (1.231–1.240); CPU 1.235× (1.231–1.240) | missed by 22.3% |",
        "| untraced | 3000 (2900–3100) | 1 (reference) | – | 2990 (2890–3090) | 1 (reference) | – |",
        "| cowtrace record -p PID | 3700 (3600–3800) | 1.233× (1.226–1.241) | 700 (700–700) | 3690 (3590–3790) | 1.234× (1.227–1.242) | 1030 (1030–1030) for 1024 made; exact in 3 of 3 runs; 6 events lost |",
        "| cowtrace record -p REDIS | 2.25 (2.10–2.40) | 1.070× (1.050–1.091) | 370000 (350000–390000) | 0.948× (0.921–0.975) | 14000 (14000–14000) | 0.4 MiB (0.4–0.4 MiB) |",
        "| `write-2x8MiB`: 2 processes whose fork child writes 8 MiB in 4096-byte write() calls to tmpfs | 410k/s (410k/s–410k/s) | 205k/s (205k/s–205k/s) | 0.500× (0.500–0.500) | 0 | exact in 1 of 1 |",
        "|   mismatch | pid 7: 10 calls, 9 counted | | | | |",
        "| VmHWM minus ring-buffer pages | ≤ 32 MiB | 42.0 MiB (42.0–42.0 MiB) |",
        "| start to attached, all 8 starts | ≤ 300 ms | 350 (350–420) ms |",
        "| cowtrace record -p OTHER (not this process) | 1.050× (1.048–1.052) | 1.050× (1.049–1.052) | 2250 (2200–2300) | 1.098× (1.095–1.100) | 1.098× (1.095–1.100) | 3150 (3100–3200) | 1.235× (1.231–1.240) | 1.235× (1.231–1.240) |",
        "| configuration | r1 | r2 | r3 |",
        "|---|---|---|---|",
        "| cowtrace record -p PID | 3700 / 3690 (2300) | 3800 / 3790 (2400) | 3600 / 3590 (2350) |",
        "| bpftrace bench/redis.bt REDIS | 2.30 / 360000 | – |",
        "- `cow-1x4MiB-ring64KiB`: 205k/s / 128k/s / 0.001 s / 60.0 MiB / 2.0 MiB",
        "| day: 1440 saves | 46081 | 30.0 MiB | html | 1.25 s | 12.0 MiB | 2048 KiB |",
    ] {
        assert!(lines.contains(&want), "missing line {want:?} in:\n{md}");
    }
    for want in [
        "`cowbench --mode cow --mib 4 --reps 2 --touch-mib 8`: 4 MiB of private anonymous memory",
        "rewrites one byte of every page (1024 pages: one copy each)",
        "`redis-benchmark -t set -n 2000 -r 1000 -d 100 -P 16 -q`",
        "Each storm runs 1 pairs",
        "it lost 0 events over 1 runs, at 0.625× (0.625–0.625) of the untraced speed",
        "**COW fault cost** 1.233× against ≤ 1.03× (missed by 19.7%): cowtrace adds +700 ns to a 3000 ns copy",
        "cowtrace's work on top of its filter-only cost is about +550 ns per copy.",
        "**Capacity** 205k/s (zero drops, exact totals)",
        "is in [ANALYSIS.md](ANALYSIS.md)",
    ] {
        assert!(md.contains(want), "missing {want:?} in:\n{md}");
    }
    // Why a figure is what it is lives in bench/ANALYSIS.md, not in generated text.
    for claim in [
        "agent-ebpf/",
        "`TRACED`",
        "`PENDING`",
        "lookup",
        "BTF",
        "LRU",
    ] {
        assert!(
            !md.contains(claim),
            "generated claim about the code: {claim:?}"
        );
    }
}

#[test]
fn section_6_is_replaced_or_put_before_the_misses() {
    let old = "# R\n\n## 5. x\n\nfive\n\n## Where targets are missed\n\nm\n";
    let new = replace_section(old, "## 6. `report` on large traces\n\nsix\n");
    assert_eq!(
        new,
        "# R\n\n## 5. x\n\nfive\n\n## 6. `report` on large traces\n\nsix\n\n## Where targets are missed\n\nm\n"
    );
    let again = replace_section(&new, "## 6. `report` on large traces\n\nseven\n");
    assert!(again.contains("seven") && !again.contains("six"), "{again}");
    assert_eq!(again.matches("## 6.").count(), 1);
    assert!(again.ends_with("## Where targets are missed\n\nm\n"));
}

#[test]
fn numbered_sections_are_replaced_by_number() {
    let old = "# R\n\n## 7. Redis outside saves\n\nold seven\n\n## 8. Start and stop\n\nold eight\n\n## Where targets are missed\n\nm\n";
    let new = replace_section(old, "## 8. Start and stop\n\nnew eight\n");
    assert!(new.contains("old seven") && new.contains("new eight") && !new.contains("old eight"));
    assert_eq!(new.matches("## 8.").count(), 1);
    // A section this file lacks goes before the misses, after the ones already there.
    let new = replace_section(&new, "## 9. Bystanders\n\nnine\n");
    let (a, b) = (new.find("## 8.").unwrap(), new.find("## 9.").unwrap());
    assert!(a < b && b < new.find("## Where targets").unwrap(), "{new}");
    // "## 10. " is not section 1.
    let ten = replace_section("## 10. x\n\nten\n", "## 1. y\n\none\n");
    assert!(ten.contains("ten") && ten.contains("one"), "{ten}");
}

#[test]
fn standalone_sections_render_with_their_stamp() {
    use crate::bench::{idle, stop};
    let w = |ns: f64| idle::Window {
        cpu_ns_per_op: ns,
        ops_per_s: 1e9 / ns * 50.0,
    };
    let irun = |set: f64, get: f64| {
        Some(idle::Run {
            set: w(set),
            get: w(get),
            lost: Some(0),
            sessions: Some(0),
        })
    };
    let idle = idle::Results {
        params: idle::Params {
            rounds: 2,
            keys: 10,
            requests: 10,
            clients: 50,
        },
        runs: vec![
            vec![irun(3000.0, 2800.0), irun(3100.0, 2900.0)],
            vec![irun(3600.0, 3100.0), irun(3700.0, 3200.0)],
            vec![irun(3300.0, 3000.0), irun(3400.0, 3100.0)],
            vec![irun(3900.0, 3400.0), irun(4000.0, 3500.0)],
        ],
    };
    let stop = stop::Results {
        params: stop::Params {
            record_runs: 1,
            view_runs: 1,
        },
        record: vec![stop::RecordRun {
            attach_ms: 110.0,
            exit_ms: 60.0,
            progs: 10,
            links: 10,
            left_at_exit: 0,
            gone_ms: Some(64.0),
        }],
        view: vec![stop::ViewRun {
            key: stop::Key::Q,
            drawn_ms: 8.0,
            linked_ms: 90.0,
            summary_ms: 2.0,
            exit_ms: 70.0,
            progs: 10,
            links: 10,
            left_at_exit: 0,
            gone_ms: Some(75.0),
        }],
    };
    let p = cow::Params {
        rounds: 1,
        mib: 1,
        reps: 1,
        touch_mib: 1,
        write_mib: 1,
    };
    // untraced, control, (cowtrace, bpftrace not run), elsewhere, hook floor, syscall floor
    let by = [
        Some(1000.0),
        Some(1000.0),
        None,
        None,
        Some(1100.0),
        Some(1300.0),
        Some(1200.0),
    ];
    let bystanders = cow::Results {
        params: p,
        runs: by.iter().map(|ns| vec![ns.and_then(cow_run)]).collect(),
    };
    let r = Results {
        machine: machine(),
        quick: false,
        cow: None,
        redis: None,
        storms: None,
        view: None,
        postmortem: None,
        idle: Some(idle),
        stop: Some(stop),
        bystanders: Some(bystanders),
        elapsed_s: 1.0,
    };
    let v = standalone_sections(&r, "cargo xtask bench --only stop --update-sections");
    assert_eq!(v.len(), 3);
    for (s, head) in v.iter().zip(["## 7. ", "## 8. ", "## 9. "]) {
        assert!(s.starts_with(head), "{s}");
        assert!(
            s.contains("*Measured on 2025-01-01 00:00 UTC (commit abc, load average 1 1 1 at the start, 1 1 1 at the end) by `cargo xtask bench --only stop --update-sections`"),
            "{s}"
        );
    }
    for want in [
        "| cowtrace record -p REDIS | 3650 (3600–3700) | 1.197× (1.194–1.200) |",
        "SET: 900 of 600 ns (150%)",
        "| `record`: SIGINT → exit | ≤ 500 ms | 60 (60–60) ms (1 runs) | met |",
        "| `watch`: q → summary shown | ≤ 200 ms | 2 (2–2) ms (1 runs) | met |",
        "| `watch`: Ctrl-C → summary shown | ≤ 200 ms | n/a | n/a |",
        "1.100× (1.100–1.100) (missed by 7.8%)",
        "Empty programs on the syscall hooks alone: 1.200× (1.200–1.200) (+200 ns per 4 KiB write() (200% of cowtrace's)); cowtrace loaded elsewhere: +100 ns.",
    ] {
        assert!(
            v.iter().any(|s| s.contains(want)),
            "missing {want:?} in:\n{}",
            v.join("\n")
        );
    }
    // Configurations the bystander run did not run have no row.
    assert!(!v[2].contains("| cowtrace record -p PID |"), "{}", v[2]);
}
