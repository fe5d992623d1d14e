//! The summary table: one row per target of issue 7, with its verdict.

use super::super::cow::{Config as C, Metric as M};
use super::super::redis::Config as R;
use super::super::stats::{Spread, num_or_na, ratio_or_na, verdict_max, verdict_min};
use super::fmt::{head, mib_spread, rate_spread, row};
use super::*;

/// `verdict(median)`, or `n/a`.
fn verdict(s: Option<Spread>, f: impl FnOnce(f64) -> String) -> String {
    s.map_or("n/a".into(), |s| f(s.median))
}

pub(super) fn render(md: &mut String, r: &Results) {
    out!(md, "## Summary\n");
    head(
        md,
        &["figure", "target", "result: median (min–max)", "verdict"],
    );
    if let Some(c) = &r.cow {
        for (what, m) in [("wall clock", M::CowWall), ("thread CPU time", M::CowCpu)] {
            let ct = c.ratio(C::Cowtrace, m);
            row(
                md,
                &[
                    format!("1. time per COW copy ({what}), traced by cowtrace ÷ untraced"),
                    format!("≤ {T_COW:.2}×"),
                    ratio_or_na(ct),
                    verdict(ct, |m| verdict_max(m, T_COW)),
                ],
            );
        }
        for (what, target, cfg, note) in [
            (
                "1. the same, traced by the bpftrace peer (counts only)",
                "≈ 1.00×",
                C::Bpftrace,
                "peer",
            ),
            (
                "1. the hooks alone: empty bpftrace programs on both tracepoints",
                "–",
                C::HookFloor,
                "floor of any tracer on these hooks",
            ),
            (
                "1. A/A control: untraced ÷ untraced, same round",
                "1.00×",
                C::Control,
                "noise floor",
            ),
        ] {
            row(
                md,
                &[
                    what.to_string(),
                    target.to_string(),
                    format!(
                        "wall {}; CPU {}",
                        ratio_or_na(c.ratio(cfg, M::CowWall)),
                        ratio_or_na(c.ratio(cfg, M::CowCpu))
                    ),
                    note.to_string(),
                ],
            );
        }
    }
    if let Some(x) = &r.redis {
        for (what, cfg) in [
            (
                "2. Redis parent CPU per 1k SETs during BGSAVE, cowtrace ÷ none",
                R::Cowtrace,
            ),
            ("2. the same, bpftrace peer ÷ none", R::Bpftrace),
        ] {
            row(
                md,
                &[
                    what,
                    "(report only)",
                    &ratio_or_na(x.cpu_ratio(cfg)),
                    "see §2",
                ],
            );
        }
    }
    if let Some(s) = &r.storms {
        if let Some((best, rate_s, clean)) = best_storm(s) {
            row(
                md,
                &[
                    "3. events/s traced, zero drops, exact totals".to_string(),
                    "≥ 2 M/s".to_string(),
                    format!(
                        "{} in storm `{}` ({})",
                        rate_spread(Some(rate_s)),
                        best.storm.name,
                        if clean {
                            "0 drops, exact"
                        } else {
                            "NOT clean: drops or inexact totals"
                        }
                    ),
                    if clean {
                        verdict_min(rate_s.median, T_RATE)
                    } else {
                        "missed (not clean)".into()
                    },
                ],
            );
        }
        let cpu = cpu_pct_all(r);
        row(
            md,
            &[
                "4. cowtrace CPU, % of one core per 100k events/s".to_string(),
                format!("≤ {T_CPU_PCT:.0}%"),
                cpu.map_or("n/a".into(), |s| {
                    format!("{:.2}% ({:.2}–{:.2})", s.median, s.min, s.max)
                }),
                verdict(cpu, |m| verdict_max(m, T_CPU_PCT)),
            ],
        );
        let rss = rss_excl_ring(r);
        row(
            md,
            &[
                "4. cowtrace peak RSS (VmHWM) minus ring-buffer pages".to_string(),
                "≤ 32 MiB".to_string(),
                mib_spread(rss),
                verdict(rss, |m| verdict_max(m, T_RSS)),
            ],
        );
    }
    let att = attach_all(r);
    if att.is_some() {
        row(
            md,
            &[
                "4. start to attached (spawn → `meta` line)".to_string(),
                "≤ 300 ms".to_string(),
                format!(
                    "{} ms{}",
                    num_or_na(att, 0),
                    r.cow
                        .as_ref()
                        .and_then(|c| c.attach_ratio())
                        .map_or(String::new(), |s| format!("; {} of bpftrace's", s.ratio()))
                ),
                verdict(att, |m| verdict_max(m, T_ATTACH_MS)),
            ],
        );
    }
    if let Some(c) = &r.cow {
        for (what, w, cpu) in [
            ("COW copy", M::CowWall, M::CowCpu),
            ("first-touch (zero-fill) fault", M::TouchWall, M::TouchCpu),
            ("4 KiB write() to tmpfs", M::WriteWall, M::WriteCpu),
        ] {
            let e = c.ratio(C::CowtraceElsewhere, w);
            row(
                md,
                &[
                    format!("5. untraced process, cowtrace loaded elsewhere ÷ not loaded: {what}"),
                    format!("≤ {T_ELSEWHERE:.2}×"),
                    format!(
                        "wall {}; CPU {}",
                        ratio_or_na(e),
                        ratio_or_na(c.ratio(C::CowtraceElsewhere, cpu))
                    ),
                    verdict(e, |m| verdict_max(m, T_ELSEWHERE)),
                ],
            );
        }
    }
    out!(md);
    out!(
        md,
        "A verdict compares the median alone. How far to trust it: section 1 says in how many \
         rounds each tracer's ratio was above the A/A control of the same round; where the \
         control moves as much as the distance to the target, one invocation cannot tell a \
         miss from noise.\n"
    );
}
