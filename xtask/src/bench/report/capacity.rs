//! Section 3: capacity: event rate, drops and exact totals in COW and write storms.

use super::super::capacity::StormResult;
use super::super::cow;
use super::super::stats::{ratio_or_na, verdict_min};
use super::fmt::{head, rate_spread, row};
use super::{T_RATE, best_storm};

pub(super) fn render(md: &mut String, storms: &[StormResult]) {
    out!(md, "## 3. Capacity: event rate, drops and exact totals\n");
    let pairs = storms.first().map_or(0, |s| s.traced.len());
    out!(
        md,
        "**Method.** A storm starts its processes together (`cowbench`, populated before the \
         tracer attaches) and times each one's loop with CLOCK_MONOTONIC; the rate is all \
         the events over the span from the first start to the last end. Each storm runs {pairs} \
         pairs, untraced/traced then traced/untraced. Traced means one `cowtrace record -p \
         P1 -p P2 ... -p SLEEPER` (default 8 MiB COW ring, forced wakeup at half full, 100 ms \
         timer drain). The traced rate counts the events cowtrace reports (COW: each \
         session's `cow.parent_pages`; writes: `writes.calls`). Exact means every session's \
         total matched its process (COW: within {} pages of the pages written; writes: \
         `writes.bytes` equal to the bytes written, and as many calls). Drops are the \
         trace's `end.lost_cow_events` (the event ring that carries both COW and write \
         events). Write storms write to tmpfs, so the disk is not what is measured.\n",
        cow::SLACK
    );
    head(
        md,
        &[
            "storm",
            "untraced events/s",
            "traced: events/s cowtrace counted",
            "speed traced ÷ untraced",
            "drops",
            "totals",
        ],
    );
    for s in storms {
        let exact = s.traced_info().iter().filter(|t| t.exact).count();
        row(
            md,
            &[
                format!("`{}`: {}", s.storm.name, s.storm.describe()),
                rate_spread(s.untraced_rate()),
                rate_spread(s.traced_rate()),
                ratio_or_na(s.speed_ratio()),
                s.total_lost().to_string(),
                format!("exact in {exact} of {}", s.traced.len()),
            ],
        );
        for t in s.traced_info() {
            for m in &t.mismatches {
                out!(md, "|   mismatch | {m} | | | | |");
            }
        }
    }
    out!(md);
    if let Some(s) = storms.iter().find(|s| s.storm.ring_bytes.is_some()) {
        out!(
            md,
            "`{}` runs cowtrace with a {} KiB COW ring instead of the default 8 MiB: it lost {} \
             events over {} runs, at {} of the untraced speed. It is left out of the summary \
             and of section 4's totals.\n",
            s.storm.name,
            s.storm.ring_bytes.unwrap_or(0) / 1024,
            s.total_lost(),
            s.traced.len(),
            ratio_or_na(s.speed_ratio()),
        );
    }
    if let Some((best, rate_s, clean)) = best_storm(storms) {
        out!(
            md,
            "Best clean rate: {} (storm `{}`, {}). Target ≥ 2 M COW+write events/s: {}.\n",
            rate_spread(Some(rate_s)),
            best.storm.name,
            if clean {
                "zero drops, exact totals"
            } else {
                "not clean"
            },
            verdict_min(rate_s.median, T_RATE)
        );
    }
}
