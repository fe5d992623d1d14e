//! "Where targets are missed": for each target missed, by how much, with the figures of
//! the same invocation that bound it (floors, the untraced ceiling, the noise). Why
//! cowtrace costs what it does is not generated: see `bench/ANALYSIS.md`.

use super::super::cow::{self, Config as C, Metric as M};
use super::super::stats::{Spread, num_or_na, ratio_or_na, verdict_max, verdict_min};
use super::fmt::{median, mib, mib_spread, rate};
use super::*;

/// What the A/A control says about configuration `cfg`, paired round by round.
fn noise_note(c: &cow::Results, cfg: C, wall: M, cpu: M) -> String {
    let (kw, nw) = c.above_control(cfg, wall);
    let (kc, nc) = c.above_control(cfg, cpu);
    let ctl = c.ratio(C::Control, wall);
    format!(
        "Noise: its ratio was above the same round's A/A control ratio in {kw} of {nw} rounds \
         (wall clock; thread CPU time: {kc} of {nc}); the control itself is {}.",
        ratio_or_na(ctl)
    )
}

pub(super) fn render(md: &mut String, r: &Results) {
    let mut items: Vec<String> = Vec::new();
    if let Some(c) = &r.cow {
        items.extend(cow_cost(c));
        items.extend(untraced_cost(c));
    }
    if let Some(storms) = &r.storms {
        items.extend(capacity(r, storms));
        items.extend(agent_cpu(r));
        items.extend(peak_rss(r));
    }
    items.extend(attach(r));
    out!(md, "## Where targets are missed\n");
    if items.is_empty() {
        out!(
            md,
            "Every target with a figure in this run was met (by the median).\n"
        );
    } else {
        out!(
            md,
            "The figures only: what cowtrace does that costs this, and what to try next, is \
             in {ANALYSIS}.\n"
        );
        for i in items {
            out!(md, "- {i}\n");
        }
    }
}

fn cow_cost(c: &cow::Results) -> Option<String> {
    let ct = c.ratio(C::Cowtrace, M::CowWall)?;
    if ct.median <= T_COW {
        return None;
    }
    let extra = |cfg, m| median(c.extra_ns(cfg, m));
    let base = median(c.ns(C::Untraced, M::CowWall));
    let cpu = median(c.ratio(C::Cowtrace, M::CowCpu));
    let cpu_extra = extra(C::Cowtrace, M::CowCpu);
    // Two floors from the same rounds: cowtrace's own (BTF) hooks when they only filter,
    // i.e. cowtrace tracing another process; and empty bpftrace programs on the classic
    // tracepoints.
    let own = c.ratio(C::CowtraceElsewhere, M::CowCpu);
    let floor = c.ratio(C::HookFloor, M::CowCpu);
    let own_ns = extra(C::CowtraceElsewhere, M::CowCpu);
    let floor_text = match (own, floor) {
        (Some(o), Some(f)) => format!(
            " Two floors were measured in the same rounds: cowtrace's own hooks when they \
             only filter (cowtrace loaded but tracing another process, section 5) cost {} \
             ({own_ns:+.0} ns per copy), and empty bpftrace programs on the classic \
             tracepoints {} ({:+.0} ns). {} cowtrace's work on top of its filter-only cost \
             is about {:+.0} ns per copy.",
            o.ratio(),
            f.ratio(),
            extra(C::HookFloor, M::CowCpu),
            if o.median > T_COW && f.median > T_COW {
                "Both floors are above the target, so on this VM no tracer on these hooks \
                 reaches it."
            } else if o.median > T_COW {
                "cowtrace's filter-only cost alone is above the target."
            } else {
                "The filter-only cost leaves room under the target."
            },
            cpu_extra - own_ns
        ),
        _ => String::new(),
    };
    Some(format!(
        "**COW fault cost** {:.3}× against ≤ {T_COW:.2}× (missed by {:.1}%): cowtrace adds \
         {:+.0} ns to a {base:.0} ns copy, the bpftrace peer {:+.0} ns (medians of \
         per-round differences). In the thread's CPU time, which preemption does not \
         inflate, the ratio is {cpu:.3}× ({cpu_extra:+.0} ns; peer {:+.0} ns).{floor_text} {}",
        ct.median,
        (ct.median / T_COW - 1.0) * 100.0,
        extra(C::Cowtrace, M::CowWall),
        extra(C::Bpftrace, M::CowWall),
        extra(C::Bpftrace, M::CowCpu),
        noise_note(c, C::Cowtrace, M::CowWall, M::CowCpu),
    ))
}

fn untraced_cost(c: &cow::Results) -> Vec<String> {
    [
        ("COW copies", M::CowWall, M::CowCpu),
        ("first-touch faults", M::TouchWall, M::TouchCpu),
        ("write() syscalls", M::WriteWall, M::WriteCpu),
    ]
    .into_iter()
    .filter_map(|(what, w, cpu_m)| {
        let s = c.ratio(C::CowtraceElsewhere, w)?;
        let cpu = c.ratio(C::CowtraceElsewhere, cpu_m);
        if s.median <= T_ELSEWHERE && !cpu.is_some_and(|c| c.median > T_ELSEWHERE) {
            return None;
        }
        Some(format!(
            "**Cost on untraced processes ({what})**: wall {} ({}), thread CPU time {} ({}) \
             against ≤ {T_ELSEWHERE:.2}×. {}",
            s.ratio(),
            verdict_max(s.median, T_ELSEWHERE),
            ratio_or_na(cpu),
            cpu.map_or("n/a".into(), |c| verdict_max(c.median, T_ELSEWHERE)),
            noise_note(c, C::CowtraceElsewhere, w, cpu_m),
        ))
    })
    .collect()
}

fn capacity(r: &Results, storms: &[StormResult]) -> Option<String> {
    let (best, rate_s, clean) = best_storm(storms)?;
    if clean && rate_s.median >= T_RATE {
        return None;
    }
    let untraced = |s: &StormResult| s.untraced_rate().map(|s| s.median);
    let ceiling = storms.iter().filter_map(untraced).fold(0.0, f64::max);
    let per_thread = storms
        .iter()
        .filter(|s| s.storm.is_single_cow())
        .find_map(untraced);
    let why = if ceiling < T_RATE {
        format!(
            "The first limit is the workload on this machine: untraced, the fastest storm \
             made only {} in all{}, so this machine cannot make 2 M faults or write() calls \
             per second whoever watches.",
            rate(ceiling),
            per_thread.map_or(String::new(), |p| format!(
                " (one thread copying as fast as it can: {}, i.e. {:.1} µs per copy)",
                rate(p),
                1e6 / p
            )),
        )
    } else {
        format!(
            "The workload alone reaches {} here, so the limit is cowtrace.",
            rate(ceiling)
        )
    };
    let drops = if clean {
        String::new()
    } else {
        format!(
            " The best storm lost {} events or had inexact totals (see section 3).",
            best.total_lost()
        )
    };
    let writes = storms
        .iter()
        .find(|s| s.storm.cow_procs == 0 && s.storm.write_procs > 0)
        .and_then(|s| Some((s.storm.name, s.speed_ratio()?)));
    let traced_write = r
        .cow
        .as_ref()
        .and_then(|c| c.ratio(C::Cowtrace, M::WriteCpu));
    let write_note = match (writes, traced_write) {
        (Some((name, sp)), Some(tw)) => format!(
            " The write storm `{name}` ran at {} of its untraced speed, and in section 5 a \
             traced process's 4 KiB write() takes {} of an untraced one.",
            sp.ratio(),
            tw.ratio()
        ),
        _ => String::new(),
    };
    Some(format!(
        "**Capacity** {} ({}) against ≥ 2 M events/s: {}. {why} Traced, the storm `{}` ran \
         at {} of its untraced speed (pairs).{write_note}{drops}",
        rate(rate_s.median),
        if clean {
            "zero drops, exact totals"
        } else {
            "with drops or inexact totals"
        },
        verdict_min(rate_s.median, T_RATE),
        best.storm.name,
        ratio_or_na(best.speed_ratio()),
    ))
}

fn agent_cpu(r: &Results) -> Option<String> {
    let cpu = cpu_pct_all(r).filter(|c| c.median > T_CPU_PCT)?;
    Some(format!(
        "**Agent CPU** {:.2}% of one core per 100k events/s against ≤ {T_CPU_PCT:.0}% (missed \
         by {:.0}%): {:.2} µs of cowtrace's CPU time (user and system) per event.",
        cpu.median,
        (cpu.median / T_CPU_PCT - 1.0) * 100.0,
        cpu.median / 10.0
    ))
}

fn peak_rss(r: &Results) -> Option<String> {
    let rss = rss_excl_ring(r).filter(|s| s.median > T_RSS)?;
    let at_attach = traced_spread(r, |t| t.hwm_attach as f64);
    let from_start = at_attach.is_some_and(|a| a.median >= rss.median);
    Some(format!(
        "**Peak RSS** {} without ring pages against ≤ 32 MiB (missed by {:.0}%). VmHWM is \
         already {} right after attach, before any event{}, and RSS at the end of a storm \
         is {}.",
        mib(rss.median),
        (rss.median / T_RSS - 1.0) * 100.0,
        mib_spread(at_attach),
        if from_start {
            " (as high as the peak: the peak is reached during start-up, not by the events)"
        } else {
            ""
        },
        mib_spread(traced_spread(r, |t| t.rss_end as f64)),
    ))
}

fn attach(r: &Results) -> Option<String> {
    let a: Spread = attach_all(r).filter(|a| a.median > T_ATTACH_MS)?;
    let bt = r
        .cow
        .as_ref()
        .and_then(|c| Spread::of(&c.attach_ms(C::Bpftrace)));
    Some(format!(
        "**Start to attached** {:.0} ms against ≤ 300 ms (missed by {:.0}%). bpftrace, which \
         compiles its script with LLVM first, attached in {} ms in the same rounds. cowtrace \
         used {} s of CPU before it attached (section 4).",
        a.median,
        (a.median / T_ATTACH_MS - 1.0) * 100.0,
        num_or_na(bt, 0),
        num_or_na(traced_spread(r, |t| t.startup_cpu_s), 3),
    ))
}
