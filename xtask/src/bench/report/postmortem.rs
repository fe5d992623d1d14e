//! Section 6: `cowtrace report` on large traces.
use super::super::postmortem::Results;
use super::fmt::{head, mib, row};

pub(super) fn render(md: &mut String, x: &Results) {
    out!(md, "## 6. `report` on large traces\n");
    out!(
        md,
        "**Method.** Synthetic traces in the format `record` writes (xtask/src/bench/postmortem.rs), \
         each reported once as text and once with `--html`, output to a file. Figures: wall \
         time, the report process's peak RSS (`ru_maxrss`), and the size of the output. The \
         report keeps detail (timelines, histograms) for the {} sessions with the most COW and \
         at most {} rows a timeline, so the page does not grow with the trace. Target \
         (issue 16): seconds, and a page of a few MB at most.\n",
        16,
        200
    );
    head(
        md,
        &[
            "trace",
            "lines",
            "size",
            "output",
            "time",
            "peak RSS",
            "output size",
        ],
    );
    for (c, runs) in &x.cases {
        for r in runs {
            row(
                md,
                &[
                    format!("{}: {}", c.name, c.what),
                    c.lines.to_string(),
                    mib(c.bytes as f64),
                    r.format.to_string(),
                    format!("{:.2} s", r.secs),
                    mib(r.max_rss_bytes as f64),
                    format!("{:.0} KiB", r.out_bytes as f64 / 1024.0),
                ],
            );
        }
    }
    out!(md);
}
