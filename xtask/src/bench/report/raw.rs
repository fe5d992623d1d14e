//! The raw runs behind every median, round by round.

use super::super::{cow, redis};
use super::Results;
use super::fmt::{by_round, mib, rate};

pub(super) fn render(md: &mut String, r: &Results) {
    out!(md, "## Raw runs\n");
    if let Some(c) = &r.cow {
        out!(
            md,
            "Section 1/5, wall / CPU ns per COW copy by round (first-touch wall ns in brackets):\n"
        );
        let labels = cow::CONFIGS.iter().map(|c| c.label());
        by_round(md, c.params.rounds, labels.zip(&c.runs), |x| {
            format!("{:.0} / {:.0} ({:.0})", x.cow_ns, x.cow_cpu_ns, x.touch_ns)
        });
    }
    if let Some(x) = &r.redis {
        out!(md, "Section 2, CPU ms per 1k SETs / SET/s by round:\n");
        let labels = redis::CONFIGS.iter().map(|c| c.label());
        by_round(md, x.params.rounds, labels.zip(&x.runs), |v| {
            format!("{:.2} / {:.0}", v.cpu_ms_per_k, v.ops_per_s)
        });
    }
    if let Some(storms) = &r.storms {
        out!(
            md,
            "Section 3/4, per pair: untraced events/s, traced events/s, cowtrace CPU s, VmHWM, ring pages:\n"
        );
        for s in storms {
            let cells: Vec<String> = s
                .untraced
                .iter()
                .zip(&s.traced)
                .map(|(u, t)| {
                    let tr = t.traced.clone().unwrap_or_default();
                    format!(
                        "{} / {} / {:.3} s / {} / {}",
                        rate(u.rate()),
                        rate(t.rate()),
                        tr.cpu_s,
                        mib(tr.hwm_end as f64),
                        mib(tr.ring_rss as f64)
                    )
                })
                .collect();
            out!(md, "- `{}`: {}", s.storm.name, cells.join("; "));
        }
        out!(md);
    }
}
