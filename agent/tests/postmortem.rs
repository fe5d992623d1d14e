//! Root test of the postmortem outputs on real traces: two recordings of a real Redis
//! save, one small and one large dataset, compared with `report A B`; the signs of the
//! changes must follow the datasets, and `report --html` of each gives a page with its
//! charts.
mod common;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Record one BGSAVE of `keys` keys of 1 KiB under a write load over every key; the
/// trace is copied to `out`. Returns Redis's own COW figure for the save.
fn record_one_save(keys: u64, out: &Path) -> u64 {
    // 20 us per key stretches the save, so the load's writes copy during it.
    let redis = Redis::start(&["--rdb-key-save-delay", "20"]);
    redis.fill(keys, 1024);
    let dir = TempDir::new("postmortem");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    redis.bgsave();
    redis.run_sets(keys, keys, 1024);
    redis.wait_bgsave();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let trace = rec.stop();
    assert_eq!(trace.ends().len(), 1, "one session in the trace");
    std::fs::copy(dir.path().join("trace.jsonl"), out).unwrap();
    redis
        .info_field("persistence", "rdb_last_cow_size")
        .and_then(|v| v.parse().ok())
        .expect("rdb_last_cow_size")
}

fn report(args: &[&str], dir: &Path) -> String {
    let o = cowtrace()
        .arg("report")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run cowtrace report");
    assert!(
        o.status.success(),
        "report {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("UTF-8")
}

fn figure<'a>(group: &'a Value, name: &str) -> &'a Value {
    group["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no figure {name}: {group}"))
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn two_real_saves_compare_with_the_right_signs() {
    require_root();
    let dir = TempDir::new("compare");
    let (a, b): (PathBuf, PathBuf) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let cow_a = record_one_save(20_000, &a);
    let cow_b = record_one_save(80_000, &b);
    assert!(
        cow_b > cow_a,
        "precondition: the larger dataset copies more (Redis: {cow_a} vs {cow_b})"
    );

    let json: Value = serde_json::from_str(&report(&["--json", "a.jsonl", "b.jsonl"], dir.path()))
        .expect("one JSON object");
    let groups = json["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "one server and kind in each: {json}");
    let g = &groups[0];
    assert_eq!(g["kind"], "rdb-bgsave");
    assert_eq!(
        (g["saves_a"].as_u64(), g["saves_b"].as_u64()),
        (Some(1), Some(1))
    );
    for name in [
        "COW per save",
        "parent RSS at fork",
        "save duration",
        "written per save",
    ] {
        let f = figure(g, name);
        let (fa, fb) = (f["a"].as_f64().unwrap(), f["b"].as_f64().unwrap());
        assert!(fb > fa, "{name}: B ({fb}) > A ({fa})");
        assert!(
            f["change"].as_f64().unwrap() > 0.0,
            "{name}: a positive change: {f}"
        );
    }
    // cowtrace's figures are Redis's (within 10%: Redis samples its child's dirty pages).
    let cow = figure(g, "COW per save");
    for (mine, redis) in [
        (cow["a"].as_f64().unwrap(), cow_a),
        (cow["b"].as_f64().unwrap(), cow_b),
    ] {
        let redis = redis as f64;
        assert!(
            (mine - redis).abs() <= redis * 0.10,
            "COW {mine} vs Redis {redis}"
        );
    }

    let text = report(&["a.jsonl", "b.jsonl"], dir.path());
    assert!(
        text.contains("B copied") && text.contains("more per save than A"),
        "{text}"
    );
    let html = report(&["--html", "a.jsonl", "b.jsonl"], dir.path());
    assert!(html.contains("more per save than A"));
    for t in ["a.jsonl", "b.jsonl"] {
        let page = report(&["--html", t], dir.path());
        for chart in ["cow", "rates"] {
            assert!(
                page.contains(&format!("data-chart=\"{chart}\"")),
                "{t}: chart {chart}"
            );
        }
    }
}
