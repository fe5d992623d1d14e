//! Section 8: start and stop, timed from outside (issue 12).

use super::super::stats::{Spread, num_or_na, verdict_max};
use super::super::stop::{self, Key};
use super::fmt::{head, row};

/// Issue 12's targets, in ms.
pub const T_ATTACH: f64 = 150.0;
pub const T_EXIT: f64 = 500.0;
pub const T_SUMMARY: f64 = 200.0;

fn cell(s: Option<Spread>) -> String {
    s.map_or("n/a".into(), |s| format!("{} ms ({} runs)", s.num(0), s.n))
}

fn verdict(s: Option<Spread>, target: f64) -> String {
    s.map_or("n/a".into(), |s| verdict_max(s.median, target))
}

pub(super) fn render(md: &mut String, x: &stop::Results) {
    out!(md, "## 8. Start and stop\n");
    out!(
        md,
        "**Method.** Timed from outside the agent, on an idle `sleep` as the target. \
         `record`: spawn `cowtrace record -o FILE -p SLEEPER`, time until the `meta` line is \
         in FILE (written once every program is attached), wait 0.5 s, read the ids of the \
         BPF programs and links it holds from /proc/PID/fdinfo, SIGINT, time until it has \
         exited (wait4), then list programs and links with `bpftool -j prog show` and \
         `bpftool -j link show` and poll every 10 ms until none of those ids is listed. \
         `watch`: `cowtrace watch -p SLEEPER` full screen in a 120x40 pseudo-terminal made by \
         util-linux `script` (stdin carries the keys, stdout the terminal's bytes): spawn → \
         the first screen (`pid SLEEPER` on it, drawn before the programs are attached), then, \
         once it holds its links and 0.5 s later, the key (`q`, or Ctrl-C, which the raw-mode view reads as \
         a key) → the summary line `cowtrace: N session(s) in` on the terminal, the key → \
         exit, and the same bpftool check. Runs interleave `record` and `watch`; {} and {}.\n",
        x.params.record_runs,
        x.params.view_runs
    );
    head(md, &["figure", "target", "median (min–max)", "verdict"]);
    let rec = |f: fn(&stop::RecordRun) -> Option<f64>| x.record_spread(f);
    let attach = rec(|r| Some(r.attach_ms));
    row(
        md,
        &[
            "`record`: spawn → attached (`meta` line)".to_string(),
            format!("≤ {T_ATTACH:.0} ms"),
            cell(attach),
            verdict(attach, T_ATTACH),
        ],
    );
    let exit = rec(|r| Some(r.exit_ms));
    row(
        md,
        &[
            "`record`: SIGINT → exit".to_string(),
            format!("≤ {T_EXIT:.0} ms"),
            cell(exit),
            verdict(exit, T_EXIT),
        ],
    );
    let gone = rec(|r| r.gone_ms);
    row(
        md,
        &[
            "`record`: SIGINT → none of its programs and links listed by bpftool".to_string(),
            format!("≤ {T_EXIT:.0} ms"),
            cell(gone),
            verdict(gone, T_EXIT),
        ],
    );
    let held = |f: fn(&stop::RecordRun) -> usize| {
        Spread::of(&x.record.iter().map(|r| f(r) as f64).collect::<Vec<_>>())
    };
    row(
        md,
        &[
            "`record`: programs / links it held".to_string(),
            "–".into(),
            format!(
                "{} / {}",
                num_or_na(held(|r| r.progs), 0),
                num_or_na(held(|r| r.links), 0)
            ),
            "–".into(),
        ],
    );
    let left: usize = x.record.iter().map(|r| r.left_at_exit).sum();
    let never = x.record.iter().filter(|r| r.gone_ms.is_none()).count();
    row(
        md,
        &[
            "`record`: still listed at the first look after exit (all runs)".to_string(),
            "0".into(),
            format!("{left} (never gone within 10 s: {never} runs)"),
            if never == 0 { "met" } else { "missed" }.into(),
        ],
    );
    let drawn = x.view_spread(None, |v| Some(v.drawn_ms));
    row(
        md,
        &[
            "`watch`: spawn → first screen drawn (before attaching)".to_string(),
            "–".into(),
            cell(drawn),
            "–".into(),
        ],
    );
    let linked = x.view_spread(None, |v| Some(v.linked_ms));
    row(
        md,
        &[
            "`watch`: spawn → its first BPF link in /proc/PID/fdinfo (polled every 5 ms)"
                .to_string(),
            "–".into(),
            cell(linked),
            "–".into(),
        ],
    );
    for key in [Key::Q, Key::CtrlC] {
        let s = x.view_spread(Some(key), |v| Some(v.summary_ms));
        row(
            md,
            &[
                format!("`watch`: {} → summary shown", key.name()),
                format!("≤ {T_SUMMARY:.0} ms"),
                cell(s),
                verdict(s, T_SUMMARY),
            ],
        );
    }
    let vexit = x.view_spread(None, |v| Some(v.exit_ms));
    row(
        md,
        &[
            "`watch`: key → exit".to_string(),
            format!("≤ {T_EXIT:.0} ms"),
            cell(vexit),
            verdict(vexit, T_EXIT),
        ],
    );
    let vgone = x.view_spread(None, |v| v.gone_ms);
    row(
        md,
        &[
            "`watch`: key → none of its programs and links listed".to_string(),
            format!("≤ {T_EXIT:.0} ms"),
            cell(vgone),
            verdict(vgone, T_EXIT),
        ],
    );
    let vleft: usize = x.view.iter().map(|v| v.left_at_exit).sum();
    let vnever = x.view.iter().filter(|v| v.gone_ms.is_none()).count();
    row(
        md,
        &[
            "`watch`: still listed at the first look after exit (all runs)".to_string(),
            "0".into(),
            format!("{vleft} (never gone within 10 s: {vnever} runs)"),
            if vnever == 0 { "met" } else { "missed" }.into(),
        ],
    );
    out!(md);
    out!(md, "Each run, in order:\n");
    for (i, r) in x.record.iter().enumerate() {
        out!(
            md,
            "- record {}: attached {:.0} ms, SIGINT → exit {:.0} ms, → nothing listed {}, {} programs + {} links, {} listed at the first look",
            i + 1,
            r.attach_ms,
            r.exit_ms,
            r.gone_ms
                .map_or("not within 10 s".into(), |g| format!("{g:.0} ms")),
            r.progs,
            r.links,
            r.left_at_exit
        );
    }
    for (i, v) in x.view.iter().enumerate() {
        out!(
            md,
            "- watch {}: drawn {:.0} ms, first link {:.0} ms, {} → summary {:.0} ms, → exit {:.0} ms, → nothing listed {}, {} programs + {} links",
            i + 1,
            v.drawn_ms,
            v.linked_ms,
            v.key.name(),
            v.summary_ms,
            v.exit_ms,
            v.gone_ms
                .map_or("not within 10 s".into(), |g| format!("{g:.0} ms")),
            v.progs,
            v.links
        );
    }
    out!(md);
}
