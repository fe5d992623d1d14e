//! What a save cost the server's main thread, in words (issue 15 item 5):
//! `main thread: ~1.2 s of the 20 s save copying pages (6%, estimate) + fork 12 ms`.

use crate::trace::schema::MainThread;

/// A duration in milliseconds, spaced: `850 µs`, `12 ms`, `1.2 s`, `20 s`.
pub fn span(ms: f64) -> String {
    if ms < 0.00995 {
        format!("{:.1} µs", ms * 1000.0)
    } else if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 9.95 {
        format!("{ms:.1} ms")
    } else if ms < 999.5 {
        format!("{ms:.0} ms")
    } else if ms < 9_950.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{:.0} s", ms / 1000.0)
    }
}

fn pct(p: f64) -> String {
    if p < 0.95 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// `~1.2 s of the 20 s save copying pages` (`~` when estimated), shared by both forms.
fn spent(m: &MainThread, duration_ms: u64) -> String {
    format!(
        "{}{} of the {} save copying pages",
        if m.estimate { "~" } else { "" },
        span(m.cow_ms),
        span(duration_ms as f64),
    )
}

/// The short form, for watch's END line and the summary.
pub fn brief(m: &MainThread, duration_ms: u64) -> String {
    let mut s = format!(
        "main thread: {} ({}{})",
        spent(m, duration_ms),
        pct(m.pct_of_save),
        if m.estimate { ", estimate" } else { "" },
    );
    if let Some(us) = m.fork_us {
        s.push_str(&format!(" + fork {}", span(us / 1000.0)));
    }
    s
}

/// The diagnosis's sentence: the figure, how it was estimated, and what to do when the
/// copies or the fork took a noticeable share of the main thread's time.
pub fn diagnosis_line(m: &MainThread, duration_ms: u64) -> String {
    let mut s = format!(
        "Latency: the server's main thread spent {} ({} of the save)",
        spent(m, duration_ms),
        pct(m.pct_of_save),
    );
    if !m.estimate {
        s.push_str(&format!(
            ", measured by the kernel: {} copies, {} each on average",
            m.copies,
            span(m.per_copy_ns as f64 / 1e6),
        ));
    } else {
        s.push_str(&format!(
            ", an estimate: its {} copies × {} per copy ({})",
            m.copies,
            span(m.per_copy_ns as f64 / 1e6),
            m.basis
        ));
        if let Some(u) = m.untraced_per_copy_ns.filter(|&u| u < m.per_copy_ns) {
            s.push_str(&format!(
                "; an untraced copy cost {} at start-up, so roughly {} of the time is cowtrace's own",
                span(u as f64 / 1e6),
                span(m.copies as f64 * (m.per_copy_ns - u) as f64 / 1e6),
            ));
        }
    }
    match m.fork_us {
        Some(us) => s.push_str(&format!(
            "; the fork blocked it {} (Redis's latest_fork_usec).",
            span(us / 1000.0)
        )),
        None => s.push('.'),
    }
    if m.pct_of_save >= 1.0 || m.fork_us.is_some_and(|us| us >= 10_000.0) {
        s.push_str(
            " Clients wait while it copies: keep THP off for the server, write less during saves, or schedule saves off-peak.",
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(cow_ms: f64, pct_of_save: f64, fork_us: Option<f64>) -> MainThread {
        MainThread {
            copies: 600_000,
            per_copy_ns: 2_000,
            untraced_per_copy_ns: Some(1_500),
            cow_ms,
            pct_of_save,
            estimate: true,
            basis: "measured by the agent on this host, untraced".into(),
            fork_us,
        }
    }

    #[test]
    fn brief_reads_like_the_issue() {
        assert_eq!(
            brief(&m(1_200.0, 6.0, Some(12_000.0)), 20_000),
            "main thread: ~1.2 s of the 20 s save copying pages (6%, estimate) + fork 12 ms"
        );
        assert_eq!(
            brief(&m(0.4, 0.02, None), 850),
            "main thread: ~400 µs of the 850 ms save copying pages (0.0%, estimate)"
        );
        let mut exact = m(3.0, 0.5, Some(420.0));
        exact.estimate = false;
        assert_eq!(
            brief(&exact, 600),
            "main thread: 3.0 ms of the 600 ms save copying pages (0.5%) + fork 420 µs"
        );
    }

    #[test]
    fn diagnosis_says_estimate_and_what_to_do_only_when_it_matters() {
        let l = diagnosis_line(&m(1_200.0, 6.0, Some(12_000.0)), 20_000);
        assert!(
            l.starts_with("Latency: the server's main thread spent ~1.2 s of the 20 s save"),
            "{l}"
        );
        assert!(
            l.contains("an estimate: its 600000 copies × 2.0 µs per copy"),
            "{l}"
        );
        assert!(l.contains("the fork blocked it 12 ms"), "{l}");
        // 600,000 copies × (2.0 - 1.5) µs of cowtrace's own.
        assert!(
            l.contains(
                "an untraced copy cost 1.5 µs at start-up, so roughly 300 ms of the time is cowtrace's own"
            ),
            "{l}"
        );
        let mut no_untraced = m(1_200.0, 6.0, None);
        no_untraced.untraced_per_copy_ns = None;
        assert!(!diagnosis_line(&no_untraced, 20_000).contains("untraced copy"));
        assert!(l.contains("THP off"), "{l}");
        let small = diagnosis_line(&m(2.0, 0.1, Some(300.0)), 2_000);
        assert!(!small.contains("THP off"), "{small}");
    }

    #[test]
    fn a_measured_figure_is_not_called_an_estimate() {
        let mut exact = m(1_200.0, 6.0, None);
        exact.estimate = false;
        let l = diagnosis_line(&exact, 20_000);
        assert!(
            l.starts_with("Latency: the server's main thread spent 1.2 s of the 20 s save"),
            "{l}"
        );
        assert!(
            l.contains("measured by the kernel: 600000 copies, 2.0 µs each on average"),
            "{l}"
        );
        assert!(!l.contains("estimate") && !l.contains("untraced"), "{l}");
    }

    #[test]
    fn spans() {
        assert_eq!(span(0.85), "850 µs");
        assert_eq!(span(0.0021), "2.1 µs");
        assert_eq!(span(12.0), "12 ms");
        assert_eq!(span(1_234.0), "1.2 s");
        assert_eq!(span(20_000.0), "20 s");
    }
}
