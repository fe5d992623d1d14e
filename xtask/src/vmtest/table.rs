//! The matrix a vmtest run prints and writes: kernel × path × test, with the hooks in
//! use and the ratios. Pure: built from what the consoles said.

use super::console::Line;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What one guest said, and how it went.
#[derive(Debug, Default, Clone)]
pub struct KernelRun {
    /// `6.1`
    pub series: String,
    /// `6.1.0-57-amd64`
    pub release: String,
    pub package: String,
    /// Host seconds from starting QEMU to the runner's `boot` line.
    pub boot_s: Option<f64>,
    /// Host seconds the whole guest took.
    pub wall_s: f64,
    /// (name, pass, detail) in the order they came.
    pub results: Vec<(String, bool, String)>,
    /// `VMTEST-LOG` lines by result name.
    pub logs: BTreeMap<String, Vec<String>>,
    /// `VMTEST-INFO` by (mode, key).
    pub info: BTreeMap<(String, String), Value>,
    /// Results the plan expected and the guest never printed.
    pub missing: Vec<String>,
    /// Items the plan does not run on this architecture, with why (`plan::NOT_RUN`).
    pub not_run: Vec<(String, String)>,
    /// Why the guest as a whole failed (timeout, panic, no `VMTEST-END`), with the
    /// console's tail.
    pub problem: Option<String>,
}

impl KernelRun {
    pub fn absorb(&mut self, line: Line) {
        match line {
            Line::Result { name, pass, detail } => self.results.push((name, pass, detail)),
            Line::Log { name, text } => self.logs.entry(name).or_default().push(text),
            Line::Info { mode, key, json } => {
                let v = serde_json::from_str(&json).unwrap_or(Value::String(json));
                self.info.insert((mode, key), v);
            }
            Line::End => {}
        }
    }

    /// Every expected result came back and passed, and the guest had no problem.
    pub fn passed(&self) -> bool {
        self.problem.is_none()
            && self.missing.is_empty()
            && !self.results.is_empty()
            && self.results.iter().all(|(_, p, _)| *p)
    }

    pub fn result(&self, name: &str) -> Option<&(String, bool, String)> {
        self.results.iter().rev().find(|(n, _, _)| n == name)
    }

    /// The hooks a mode used, from `meta.attach`: `method; writes: ...`.
    pub fn hooks(&self, mode: &str) -> String {
        let Some(a) = self.info.get(&(mode.to_string(), "attach".to_string())) else {
            return "?".into();
        };
        let s = |k: &str| a[k].as_str().unwrap_or("?").to_string();
        format!("COW {} ({}); writes {}", s("method"), s("cow"), s("writes"))
    }

    /// `1.31× (1.20–1.42)` of a `ratios` figure.
    pub fn ratio(&self, mode: &str, key: &str) -> String {
        let Some(r) = self.info.get(&(mode.to_string(), "ratios".to_string())) else {
            return "n/a".into();
        };
        let v = &r[key];
        match (v[0].as_f64(), v[1].as_f64(), v[2].as_f64()) {
            (Some(m), Some(lo), Some(hi)) => format!("{m:.2}× ({lo:.2}–{hi:.2})"),
            _ => "n/a".into(),
        }
    }
}

fn cell(run: &KernelRun, name: &str) -> &'static str {
    let item = name.split_once('/').map_or(name, |(_, i)| i);
    match run.result(name) {
        Some((_, true, _)) => "PASS",
        Some((_, false, _)) => "FAIL",
        None if run.missing.iter().any(|m| m == name) => "MISSING",
        None if run.not_run.iter().any(|(i, _)| i == item) => "not run",
        None => "-",
    }
}

/// `not run on arm64: `ratios` (why); ...`, once per distinct item.
fn not_run_notes(runs: &[KernelRun]) -> Vec<String> {
    let mut seen = Vec::new();
    for r in runs {
        for (i, why) in &r.not_run {
            let note = format!("`{i}`: {why}");
            if !seen.contains(&note) {
                seen.push(note);
            }
        }
    }
    seen
}

/// The columns: each (kernel, mode) that was run.
fn columns<'a>(runs: &'a [KernelRun], modes: &'a [String]) -> Vec<(&'a KernelRun, &'a str)> {
    runs.iter()
        .flat_map(|r| modes.iter().map(move |m| (r, m.as_str())))
        .collect()
}

/// The text table for the terminal: tests down, kernel/path across, then the hooks,
/// ratios and every failure's detail.
pub fn render_text(runs: &[KernelRun], modes: &[String], items: &[&str]) -> String {
    let cols = columns(runs, modes);
    let mut s = String::new();
    let heads: Vec<String> = cols
        .iter()
        .map(|(r, m)| format!("{} {m}", r.series))
        .collect();
    let w = items.iter().map(|i| i.len()).max().unwrap_or(4).max(6);
    let _ = write!(s, "{:w$}", "test");
    for h in &heads {
        let _ = write!(s, "  {h:>15}");
    }
    s.push('\n');
    let _ = write!(s, "{:w$}", "boot");
    for (r, _) in &cols {
        let _ = write!(s, "  {:>15}", cell(r, "boot"));
    }
    s.push('\n');
    for i in items {
        let _ = write!(s, "{i:w$}");
        for (r, m) in &cols {
            let _ = write!(s, "  {:>15}", cell(r, &format!("{m}/{i}")));
        }
        s.push('\n');
    }
    s.push('\n');
    for r in runs {
        let boot = r.boot_s.map_or("did not boot".to_string(), |b| {
            format!("booted in {b:.1} s")
        });
        let _ = writeln!(
            s,
            "{} = {} ({}): {boot}, ran {:.0} s",
            r.series, r.release, r.package, r.wall_s
        );
        for m in modes {
            let _ = writeln!(s, "  {m}: hooks {}", r.hooks(m));
            let _ = writeln!(
                s,
                "  {m}: COW copy traced/untraced {}; untraced write() cowtrace on/off {}",
                r.ratio(m, "cow_ratio"),
                r.ratio(m, "write_ratio")
            );
        }
        if let Some(p) = &r.problem {
            let _ = writeln!(s, "  PROBLEM: {p}");
        }
        for (i, why) in &r.not_run {
            let _ = writeln!(s, "  NOT RUN: {i}: {why}");
        }
        for m in &r.missing {
            let _ = writeln!(s, "  MISSING: {m} never reported");
        }
        for (name, pass, detail) in &r.results {
            if !pass {
                let _ = writeln!(s, "  FAIL {name}: {detail}");
                for l in r.logs.get(name).into_iter().flatten() {
                    let _ = writeln!(s, "      {l}");
                }
            }
        }
    }
    s
}

/// The README's "Tested kernels" tables, in Markdown: a row per kernel and path, then
/// the items.
pub fn render_markdown(runs: &[KernelRun], modes: &[String], items: &[&str], when: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| kernel | booted in | path | `meta.attach.fentry` | COW copy, traced ÷ untraced | untraced `write()`, cowtrace on ÷ off | items |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- |");
    for r in runs {
        let boot = r
            .boot_s
            .map_or("did not boot".to_string(), |b| format!("{b:.1} s"));
        for m in modes {
            let prefix = format!("{m}/");
            let mine: Vec<&(String, bool, String)> = r
                .results
                .iter()
                .filter(|(n, _, _)| n.starts_with(&prefix))
                .collect();
            let ok = mine.iter().filter(|(_, p, _)| *p).count();
            let missing = r.missing.iter().filter(|n| n.starts_with(&prefix)).count();
            let mut verdict = if ok == mine.len() && missing == 0 && r.problem.is_none() && ok > 0 {
                format!("{ok} passed")
            } else {
                format!("{ok} passed, {} failed, {missing} missing", mine.len() - ok)
            };
            if !r.not_run.is_empty() {
                let _ = write!(verdict, ", {} not run", r.not_run.len());
            }
            let fentry = r
                .info
                .get(&(m.clone(), "attach".to_string()))
                .and_then(|a| a["fentry"].as_str())
                .unwrap_or("?")
                .to_string();
            let _ = writeln!(
                s,
                "| {} (`{}`) | {boot} | {m} | {fentry} | {} | {} | {verdict} |",
                r.release,
                r.package,
                r.ratio(m, "cow_ratio"),
                r.ratio(m, "write_ratio"),
            );
        }
    }
    s.push('\n');
    let cols = columns(runs, modes);
    let _ = write!(s, "| item |");
    for (r, m) in &cols {
        let _ = write!(s, " {} {m} |", r.series);
    }
    s.push('\n');
    let _ = write!(s, "| --- |");
    for _ in &cols {
        s.push_str(" --- |");
    }
    s.push('\n');
    for i in items {
        let _ = write!(s, "| `{i}` |");
        for (r, m) in &cols {
            let _ = write!(s, " {} |", cell(r, &format!("{m}/{i}")));
        }
        s.push('\n');
    }
    let notes = not_run_notes(runs);
    if !notes.is_empty() {
        let _ = writeln!(s, "\nNot run here: {}.", notes.join("; "));
    }
    let _ = writeln!(s, "\n_Generated by `cargo xtask vmtest` on {when}._");
    s
}

/// The name of the README markers of an architecture's tables: `vmtest-results` (x86-64,
/// as before arm64 existed), `vmtest-results-arm64`.
pub fn marker_tag(arch: &str) -> String {
    if arch == "x86_64" {
        "vmtest-results".into()
    } else {
        format!("vmtest-results-{arch}")
    }
}

/// `readme` with `md` between its `<!-- TAG: begin -->` and `<!-- TAG: end -->` markers
/// (None without them).
pub fn splice(readme: &str, md: &str, tag: &str) -> Option<String> {
    let (begin, end) = (
        format!("<!-- {tag}: begin -->"),
        format!("<!-- {tag}: end -->"),
    );
    let b = readme.find(&begin)? + begin.len();
    let e = readme[b..].find(&end)? + b;
    Some(format!(
        "{}\n{}\n{}",
        &readme[..b],
        md.trim_end(),
        &readme[e..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmtest::console::parse;

    fn run() -> KernelRun {
        let mut r = KernelRun {
            series: "6.1".into(),
            release: "6.1.0-57-amd64".into(),
            package: "linux-image-6.1.0-57-amd64-unsigned".into(),
            boot_s: Some(4.2),
            wall_s: 300.0,
            ..Default::default()
        };
        for l in [
            "VMTEST boot PASS 6.1.0-57-amd64 up 2.0s",
            "VMTEST-INFO auto attach {\"method\":\"tracepoint\",\"cow\":\"tp_btf/page_fault_user\",\"writes\":\"fentry/vfs_write\"}",
            "VMTEST auto/cow-live PASS parent-writes: 10003",
            "VMTEST auto/cow-reuse FAIL 12 reuse faults",
            "VMTEST-LOG auto/cow-reuse thread 'main' panicked",
            "VMTEST-INFO auto ratios {\"cow_ratio\":[1.31,1.2,1.42],\"write_ratio\":[1.05,1.0,1.1]}",
        ] {
            r.absorb(parse(l).unwrap());
        }
        r.missing.push("auto/ratios".into());
        r
    }

    #[test]
    fn the_readme_gets_the_tables_between_its_markers() {
        const BEGIN: &str = "<!-- vmtest-results: begin -->";
        const END: &str = "<!-- vmtest-results: end -->";
        const ARM: &str =
            "<!-- vmtest-results-arm64: begin -->\nold arm\n<!-- vmtest-results-arm64: end -->";
        let r = format!("a\n{BEGIN}\nold\n{END}\nb\n{ARM}\n");
        assert_eq!(
            splice(&r, "| t |\n", &marker_tag("x86_64")).unwrap(),
            format!("a\n{BEGIN}\n| t |\n{END}\nb\n{ARM}\n")
        );
        // Each architecture's tables between its own markers only.
        let arm = splice(&r, "| a |\n", &marker_tag("arm64")).unwrap();
        assert!(arm.contains(&format!("{BEGIN}\nold\n{END}")), "{arm}");
        assert!(
            arm.contains(
                "<!-- vmtest-results-arm64: begin -->\n| a |\n<!-- vmtest-results-arm64: end -->"
            ),
            "{arm}"
        );
        assert_eq!(splice("no markers", "x", "vmtest-results"), None);
    }

    #[test]
    fn cells_hooks_and_ratios() {
        let r = run();
        assert_eq!(cell(&r, "auto/cow-live"), "PASS");
        assert_eq!(cell(&r, "auto/cow-reuse"), "FAIL");
        assert_eq!(cell(&r, "auto/ratios"), "MISSING");
        assert_eq!(cell(&r, "tracepoint/cow-live"), "-");
        assert!(!r.passed());
        assert_eq!(
            r.hooks("auto"),
            "COW tracepoint (tp_btf/page_fault_user); writes fentry/vfs_write"
        );
        assert_eq!(r.ratio("auto", "cow_ratio"), "1.31× (1.20–1.42)");
        assert_eq!(r.ratio("tracepoint", "cow_ratio"), "n/a");
    }

    #[test]
    fn text_and_markdown_tables() {
        let r = [run()];
        let modes = ["auto".to_string()];
        let items = ["cow-live", "cow-reuse", "ratios"];
        let t = render_text(&r, &modes, &items);
        assert!(t.contains("cow-reuse             FAIL\n"), "{t}");
        assert!(
            t.contains("FAIL auto/cow-reuse: 12 reuse faults\n      thread 'main' panicked"),
            "{t}"
        );
        assert!(t.contains("MISSING: auto/ratios never reported"), "{t}");
        assert!(t.contains("booted in 4.2 s"), "{t}");
        let m = render_markdown(&r, &modes, &items, "2025-01-01");
        assert!(
            m.contains(
                "| 6.1.0-57-amd64 (`linux-image-6.1.0-57-amd64-unsigned`) | 4.2 s | auto | ? |"
            ),
            "{m}"
        );
        assert!(m.contains("| `cow-live` | PASS |"), "{m}");
        assert!(m.contains("1 passed, 1 failed, 1 missing"), "{m}");
        assert!(!m.contains("Not run here"), "{m}");

        // An item the plan does not run on an architecture: "not run", with its reason.
        let mut a = run();
        a.not_run
            .push(("ratios".into(), "too slow under TCG".into()));
        a.missing.clear();
        assert_eq!(cell(&a, "auto/ratios"), "not run");
        let m = render_markdown(&[a.clone()], &modes, &items, "2025-01-01");
        assert!(m.contains("| `ratios` | not run |"), "{m}");
        assert!(m.contains(", 1 not run |"), "{m}");
        assert!(
            m.contains("Not run here: `ratios`: too slow under TCG."),
            "{m}"
        );
        let t = render_text(&[a], &modes, &items);
        assert!(t.contains("NOT RUN: ratios: too slow under TCG"), "{t}");
    }
}
