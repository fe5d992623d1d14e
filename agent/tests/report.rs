//! `cowtrace report`: golden outputs on the fixture traces in tests/fixtures (no root),
//! truncation at every byte, hostile input, and one root round trip (record, then report).
//!
//! Regenerate the golden files after an intended change of the output with
//! `COWTRACE_BLESS=1 cargo test -p agent --test report`, and review the diff.
mod common;
use common::fixtures;

use std::{
    io::Write,
    process::{Command, Stdio},
};

use serde_json::Value;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `cowtrace ARGS` in the fixtures directory (so that file names in the output are
/// the same on every checkout), with `stdin` as standard input.
fn run(args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cowtrace"));
    cmd.args(args)
        .current_dir(fixtures())
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn cowtrace");
    if let Some(data) = stdin {
        let mut w = child.stdin.take().unwrap();
        // The reader may stop early (an error on line 1): a broken pipe is fine.
        let _ = w.write_all(data);
    }
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

/// Compare with `fixtures/NAME`, or write it when COWTRACE_BLESS is set.
fn golden(name: &str, actual: &str) {
    let path = fixtures().join(name);
    if std::env::var_os("COWTRACE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (create it with COWTRACE_BLESS=1)", path.display()));
    if want != actual {
        let diff: Vec<String> = want
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n  want: {a}\n  got:  {b}", i + 1))
            .collect();
        panic!(
            "report output differs from {} ({} vs {} lines):\n{}\n--- full output ---\n{actual}",
            path.display(),
            want.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

/// Fixtures that are traces: the text and JSON reports are golden. `sync` is a BGSAVE with
/// `rdb-save-incremental-fsync yes` recorded after the sync calls were told apart.
const TRACES: &[&str] = &[
    "bgsave",
    "sync",
    "events",
    "lost-events",
    "killed",
    "cut-mid-line",
    "damaged",
];

#[test]
fn text_reports_match_golden_files() {
    for name in TRACES {
        let o = run(&["report", &format!("{name}.jsonl")], None);
        assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{name}: {}", o.stderr);
        golden(&format!("{name}.expected.txt"), &o.stdout);
    }
}

#[test]
fn json_reports_match_golden_files() {
    for name in TRACES {
        let o = run(&["report", "--json", &format!("{name}.jsonl")], None);
        assert_eq!(o.code, 0, "{name}: {}", o.stderr);
        let v: Value = serde_json::from_str(&o.stdout)
            .unwrap_or_else(|e| panic!("{name}: one JSON object: {e}"));
        // Warnings go to stderr too, one line each.
        let warnings: Vec<&str> = v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        let stderr: Vec<String> = warnings
            .iter()
            .map(|w| format!("cowtrace: warning: {w}"))
            .collect();
        assert_eq!(o.stderr.lines().collect::<Vec<_>>(), stderr, "{name}");
        golden(&format!("{name}.json.expected.txt"), &o.stdout);
    }
}

/// Fixtures whose HTML page is golden (the others are checked for a whole page).
const HTML_GOLDEN: &[&str] = &["bgsave", "events", "cut-mid-line"];

#[test]
fn html_reports_are_whole_pages_and_golden() {
    for name in TRACES {
        let o = run(&["report", "--html", &format!("{name}.jsonl")], None);
        assert_eq!(o.code, 0, "{name}: {}", o.stderr);
        let page = &o.stdout;
        assert!(
            page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"),
            "{name}: a whole page"
        );
        assert!(
            page.contains("Content-Security-Policy\" content=\"default-src 'none';"),
            "{name}: every load is forbidden"
        );
        // Nothing to fetch: links are fragments within the page only.
        for attr in ["src=", "href=\"http", "url("] {
            assert!(!page.contains(attr), "{name}: {attr} in the page");
        }
        // A chart for each kept session's COW and rates.
        let kept = page.matches("class=\"session\"").count();
        assert!(kept >= 1, "{name}: a section per session");
        assert_eq!(
            page.matches("data-chart=\"cow\"").count(),
            page.matches("data-chart=\"rates\"").count(),
            "{name}"
        );
        if HTML_GOLDEN.contains(name) {
            golden(&format!("{name}.html.expected"), page);
        }
    }
}

#[test]
fn two_traces_compare_in_text_json_and_html() {
    let o = run(&["report", "bgsave.jsonl", "events.jsonl"], None);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{}", o.stderr);
    golden("compare.expected.txt", &o.stdout);
    let o = run(&["report", "--json", "bgsave.jsonl", "events.jsonl"], None);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: Value = serde_json::from_str(&o.stdout).expect("one JSON object");
    let cow = &v["groups"][0]["figures"][0];
    assert_eq!(cow["name"], "COW per save");
    // bgsave.jsonl copied 31.1 MiB, events.jsonl 1.7 MiB: B is smaller.
    assert!(cow["change"].as_f64().unwrap() < 0.0, "{cow}");
    assert_eq!(
        cow["change"].as_f64().unwrap(),
        cow["b"].as_f64().unwrap() - cow["a"].as_f64().unwrap()
    );
    let o = run(&["report", "--html", "bgsave.jsonl", "events.jsonl"], None);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("B copied 94% less per save than A"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("data-chart=\"cow-per-save\""));
    // A bad second trace fails like a bad first one, naming it.
    let o = run(&["report", "bgsave.jsonl", "not-a-trace.jsonl"], None);
    assert_eq!((o.code, o.stdout.as_str()), (1, ""));
    assert!(o.stderr.contains("not-a-trace.jsonl"), "{}", o.stderr);
    let o = run(&["report", "-", "-"], Some(b""));
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("only one of the two traces"),
        "{}",
        o.stderr
    );
    // A newer major version is refused, named, whichever side it is on.
    let o = run(
        &["report", "--html", "bgsave.jsonl", "version2.jsonl"],
        None,
    );
    assert_eq!((o.code, o.stdout.as_str()), (1, ""));
    assert!(o.stderr.contains("version2.jsonl"), "{}", o.stderr);
}

#[test]
fn a_trace_without_sessions_gives_a_page_that_says_so() {
    let meta = std::fs::read_to_string(fixtures().join("bgsave.jsonl"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let trace = format!(
        "{meta}\n{}\n",
        r#"{"type":"end","sessions":0,"lost_events":0,"ts_ns":1,"duration_ms":5000,"reason":"duration"}"#
    );
    let o = run(&["report", "--html", "-"], Some(trace.as_bytes()));
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{}", o.stderr);
    assert!(
        o.stdout.contains("No fork session in this trace"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.ends_with("</html>\n"));
    // Compared with itself: nothing to compare, said in every format.
    let dir = common::TempDir::new("nosessions");
    let path = dir.path().join("none.jsonl");
    std::fs::write(&path, &trace).unwrap();
    let p = path.to_str().unwrap();
    for format in ["", "--html", "--json"] {
        let args: Vec<&str> = ["report", format, p, p]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let o = run(&args, None);
        assert_eq!(o.code, 0, "{args:?}: {}", o.stderr);
        assert!(o.stdout.contains("nothing"), "{args:?}: {}", o.stdout);
    }
}

/// The fixture's own `session_end` lines, summed independently of the report's code.
fn sums_of(trace: &str) -> Value {
    let mut t = [0u64; 9];
    for l in trace
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if l["type"] == "session_end" {
            let f = [
                "/cow/bytes",
                "/cow/pages",
                "/cow/parent_pages",
                "/cow/child_pages",
                "/writes/bytes",
                "/writes/calls",
                "/fsync/calls",
                "/disk/bytes",
                "/disk/ios",
            ];
            for (i, p) in f.iter().enumerate() {
                t[i] += l.pointer(p).and_then(Value::as_u64).unwrap();
            }
        }
    }
    serde_json::json!({
        "cow_bytes": t[0], "cow_pages": t[1], "parent_pages": t[2], "child_pages": t[3],
        "write_bytes": t[4], "write_calls": t[5], "fsync_calls": t[6], "disk_bytes": t[7], "disk_ios": t[8],
    })
}

fn assert_totals_match(json: &Value, trace: &str, what: &str) {
    let want = sums_of(trace);
    let unfinished = &json["totals"]["unfinished"];
    for (k, v) in want.as_object().unwrap() {
        // Sessions without `session_end` (a cut trace) add their last figures to the
        // sums of COW, written and disk bytes and pages; the flag says so.
        let extra = unfinished[k].as_u64().unwrap_or(0);
        assert_eq!(
            json["totals"][k].as_u64(),
            Some(v.as_u64().unwrap() + extra),
            "{what}: totals.{k}"
        );
    }
    let cut = json["totals"]["sessions_unfinished"].as_u64().unwrap() > 0;
    assert_eq!(
        json["totals"]["includes_unfinished"].as_bool(),
        Some(cut),
        "{what}: totals.includes_unfinished"
    );
    if cut {
        assert!(
            unfinished["cow_bytes"].as_u64().unwrap() > 0,
            "{what}: a cut session's COW is in the totals, not hidden: {unfinished}"
        );
    }
    let end = trace
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["type"] == "end");
    match end {
        Some(e) => {
            for k in [
                "lost_events",
                "lost_cow_events",
                "lost_session_events",
                "decode_errors",
            ] {
                assert_eq!(json["totals"][k], e[k], "{what}: totals.{k}");
            }
        }
        None => assert_eq!(
            json["totals"]["lost_events"],
            Value::Null,
            "{what}: unknown without an end line"
        ),
    }
}

#[test]
fn json_totals_equal_the_traces_session_ends() {
    for name in TRACES {
        let file = format!("{name}.jsonl");
        let o = run(&["report", "--json", &file], None);
        let v: Value = serde_json::from_str(&o.stdout).unwrap();
        assert_totals_match(
            &v,
            &std::fs::read_to_string(fixtures().join(&file)).unwrap(),
            name,
        );
    }
    let v: Value =
        serde_json::from_str(&run(&["report", "--json", "lost-events.jsonl"], None).stdout)
            .unwrap();
    assert_eq!(
        (
            v["totals"]["sessions"].as_u64(),
            v["totals"]["lost_events"].as_u64()
        ),
        (Some(2), Some(9884))
    );
}

#[test]
fn bad_input_fails_with_the_file_and_line() {
    let mut all = String::new();
    for file in [
        "not-a-trace.jsonl",
        "empty.jsonl",
        "version2.jsonl",
        "bgsave.jsonl.gz",
        "headless.jsonl",
        "no-such-file.jsonl",
        ".",
    ] {
        for format in ["", "--json", "--html"] {
            let json = !format.is_empty();
            let mut args = vec!["report"];
            if json {
                args.push(format);
            }
            args.push(file);
            let o = run(&args, None);
            assert_eq!((o.code, o.stdout.as_str()), (1, ""), "{file}: {}", o.stderr);
            assert!(
                o.stderr.starts_with("cowtrace: error: ") && o.stderr.contains(file),
                "{file}: {}",
                o.stderr
            );
            assert_eq!(o.stderr.lines().count(), 1, "one line: {}", o.stderr);
            if !json {
                all.push_str(&format!(
                    "$ cowtrace {}\nexit {}\n{}\n",
                    args.join(" "),
                    o.code,
                    o.stderr
                ));
            }
        }
    }
    golden("errors.expected.txt", &all);
}

#[test]
fn stdin_gives_the_same_report() {
    let data = std::fs::read(fixtures().join("bgsave.jsonl")).unwrap();
    let o = run(&["report", "-"], Some(&data));
    assert_eq!(o.code, 0, "{}", o.stderr);
    let file = std::fs::read_to_string(fixtures().join("bgsave.expected.txt")).unwrap();
    assert_eq!(
        o.stdout,
        file.replacen(
            "cowtrace report: bgsave.jsonl",
            "cowtrace report: <stdin>",
            1
        )
    );
    let o = run(&["report", "-"], Some(b"\x1f\x8b\x08\x00binary"));
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("<stdin>: line 1: not a cowtrace trace: it is gzip-compressed"),
        "{}",
        o.stderr
    );
}

#[test]
fn a_huge_line_is_skipped_in_bounded_memory() {
    let dir = common::TempDir::new("report-long");
    let trace = std::fs::read_to_string(fixtures().join("bgsave.jsonl")).unwrap();
    let mut lines: Vec<String> = trace.lines().map(String::from).collect();
    // 3 MiB of a JSON string: over the 1 MiB line limit.
    let long = format!(
        "{{\"type\":\"sample\",\"session\":1,\"x\":\"{}\"}}",
        "a".repeat(3 << 20)
    );
    let want = format!(
        "warning: line 3: {} bytes long, over the 1 MiB line limit; skipped",
        long.len()
    );
    lines.insert(2, long);
    let path = dir.path().join("long.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let o = run(&["report", path.to_str().unwrap()], None);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains(&want), "{}", o.stdout);
    assert!(o.stdout.contains("Sessions: 1"), "{}", o.stdout);
    // A file that is one huge line (binary, say) is not a trace.
    let path = dir.path().join("blob.bin");
    std::fs::write(&path, vec![0x41u8; 2 << 20]).unwrap();
    let o = run(&["report", path.to_str().unwrap()], None);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains(
            "blob.bin: line 1: not a cowtrace trace: the first line is 2097152 bytes long"
        ),
        "{}",
        o.stderr
    );
}

#[test]
fn report_needs_no_root_and_closes_quietly_on_a_closed_pipe() {
    // `record` and `watch` refuse to run under COWTRACE_AS_UNPRIVILEGED=1; `report` must not
    // even ask.
    let o = Command::new(env!("CARGO_BIN_EXE_cowtrace"))
        .args(["report", "bgsave.jsonl"])
        .current_dir(fixtures())
        .env("COWTRACE_AS_UNPRIVILEGED", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // As root, also run it with every capability dropped: no privilege check, and nothing
    // loaded into the kernel (that would fail without CAP_BPF).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && Command::new("setpriv").arg("--version").output().is_ok()
    {
        let o = Command::new("setpriv")
            .args([
                "--bounding-set=-all",
                "--inh-caps=-all",
                "--no-new-privs",
                env!("CARGO_BIN_EXE_cowtrace"),
                "report",
                "bgsave.jsonl",
            ])
            .current_dir(fixtures())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "without capabilities: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("Sessions: 1"));
    }
    // `| head -1`: stdout closes after the first line; no panic, no error message.
    let mut child = Command::new(env!("CARGO_BIN_EXE_cowtrace"))
        .args(["report", "events.jsonl"])
        .current_dir(fixtures())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every prefix of a real trace (a trace cut at any byte) reads without a panic, and
/// what it shows only grows as the cut moves later.
#[test]
fn truncation_at_every_byte() {
    // Every byte of the smaller traces; a stride through the larger ones (debug builds).
    for (name, step) in [
        ("bgsave.jsonl", 1),
        ("sync.jsonl", 1),
        ("killed.jsonl", 1),
        ("cut-mid-line.jsonl", 1),
        ("lost-events.jsonl", 3),
        ("events.jsonl", 13),
    ] {
        let data = std::fs::read(fixtures().join(name)).unwrap();
        let first_line = data.iter().position(|&b| b == b'\n').unwrap();
        let full = cowtrace::report::read(name, &data[..]).unwrap();
        let full_totals = full.totals();
        let mut last_ended = 0;
        let mut cut = 0;
        while cut <= data.len() {
            let prefix = &data[..cut];
            match cowtrace::report::read(name, prefix) {
                Err(e) => assert!(cut < first_line, "{name} cut at {cut}: {e}"),
                Ok(r) => {
                    assert!(
                        cut >= first_line,
                        "{name} cut at {cut}: a partial meta line is not a trace"
                    );
                    let t = r.totals();
                    assert!(
                        t.sessions_ended >= last_ended,
                        "{name} cut at {cut}: sessions only grow"
                    );
                    last_ended = t.sessions_ended;
                    assert!(
                        t.cow_bytes <= full_totals.cow_bytes
                            && t.write_bytes <= full_totals.write_bytes
                    );
                    // Cut before the last line's end: the missing `end` line is named.
                    if cut < data.len() - 1 {
                        assert!(
                            r.warnings
                                .iter()
                                .any(|w| w.contains("without an `end` line")),
                            "{name} cut at {cut}: {:?}",
                            r.warnings
                        );
                    } else {
                        assert_eq!(t, full_totals);
                    }
                    // Rendering a cut trace never panics either (every 10th cut: it is
                    // the slow part in a debug build).
                    if cut % 10 == 0 {
                        let _ = cowtrace::report::render(&r, cowtrace::report::Format::Text);
                        let _ = cowtrace::report::render(&r, cowtrace::report::Format::Json);
                        let _ = cowtrace::report::render(&r, cowtrace::report::Format::Html);
                    }
                }
            }
            cut += if cut + step > data.len() && cut < data.len() {
                data.len() - cut
            } else {
                step
            };
        }
        assert_eq!(last_ended, full_totals.sessions_ended, "{name}");
    }
}

/// Root: record a real BGSAVE and AOF rewrite, then check that `report` retells the
/// trace's own ledger (the `session_end` and `end` lines) exactly.
#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn record_then_report_gives_the_ledgers_totals() {
    use common::{Recorder, Redis, TempDir, require_root};
    require_root();
    let redis = Redis::start(&["--rdb-key-save-delay", "20"]);
    redis.fill(50_000, 150);
    let dir = TempDir::new("report-roundtrip");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid, "--events", "-i", "0.2"], &[]);
    let path = rec.path.clone();
    let load = redis.write_load(50_000, 150);
    redis.save();
    redis.rewrite_aof();
    drop(load);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let trace = rec.stop();
    let text = std::fs::read_to_string(&path).unwrap();
    let file = path.to_str().unwrap();

    let o = run(&["report", "--json", file], None);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "report --json");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_totals_match(&v, &text, "recorded trace");
    let ends = trace.ends();
    assert_eq!(ends.len(), 2, "a BGSAVE and an AOF rewrite");
    assert_eq!(v["totals"]["sessions"].as_u64(), Some(2));
    assert_eq!(v["totals"]["lost_events"], trace.end()["lost_events"]);
    assert_eq!(v["warnings"], serde_json::json!([]));
    for e in &ends {
        let s = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["session"] == e["session"])
            .unwrap();
        // Every field of the session_end line comes back, except the raw timeline.
        let mut want = (*e).clone();
        want.as_object_mut().unwrap().remove("type");
        want["cow"]
            .as_object_mut()
            .unwrap()
            .remove("timeline_pages");
        assert_eq!(s["end"], want, "session {}", e["session"]);
        // With no event lost, the --events lines are the events behind the ledger's
        // quantiles.
        if trace.end()["lost_events"] == 0 {
            assert_eq!(
                s["events"]["write"], e["writes"]["latency_us"]["count"],
                "write events of session {}",
                e["session"]
            );
            assert_eq!(s["events"]["fsync"], e["fsync"]["latency_us"]["count"]);
            // Same events, same rounding: the same quantiles as the recorder's.
            let h = &s["event_histograms"];
            assert_eq!(
                h["write_latency_us"], e["writes"]["latency_us"],
                "session {}",
                e["session"]
            );
            assert_eq!(
                h["write_size_bytes"], e["writes"]["size_bytes"],
                "session {}",
                e["session"]
            );
            assert_eq!(
                h["fsync_latency_us"], e["fsync"]["latency_us"],
                "session {}",
                e["session"]
            );
            assert_eq!(
                h["disk_latency_us"], e["disk"]["latency_us"],
                "session {}",
                e["session"]
            );
        }
    }

    let o = run(&["report", file], None);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "report");
    assert!(o.stdout.contains("Sessions: 2"), "{}", o.stdout);
    for e in &ends {
        assert!(
            o.stdout.contains(&format!("child {}", e["child_pid"])),
            "{}",
            o.stdout
        );
    }
    for kind in ["rdb-bgsave", "aof-rewrite"] {
        assert!(o.stdout.contains(kind), "{}", o.stdout);
    }
    assert!(
        o.stdout.contains("write latency (count "),
        "event histograms from --events: {}",
        o.stdout
    );
    eprintln!("{}", o.stdout);
}

/// A trace of three servers (two TCP, one unix socket), written here.
fn three_servers() -> String {
    let mut t = String::from(
        r#"{"type":"meta","format":"cowtrace","version":1,"start_ts_ns":1000000000,"start_unix_ms":1764000000000,"interval_ms":1000}"#,
    );
    t.push('\n');
    for (id, inst, kind, parent) in [
        (1, "db1:6379", "rdb-bgsave", 100),
        (2, "db1:6380", "aof-rewrite", 200),
        (3, "/run/redis/r.sock", "rdb-bgsave", 300),
        (4, "db1:6379", "aof-rewrite", 100),
    ] {
        t.push_str(&format!(
            r#"{{"type":"session_start","session":{id},"instance":"{inst}","parent_pid":{parent},"child_pid":{},"kind":"{kind}","ts_ns":1100000000}}"#,
            parent + id
        ));
        t.push('\n');
        t.push_str(&format!(
            r#"{{"type":"session_end","session":{id},"instance":"{inst}","parent_pid":{parent},"child_pid":{},"kind":"{kind}","ts_ns":1600000000,"duration_ms":500,"exit_code":0,"complete":true,"cow":{{"pages":{id},"bytes":{}}}}}"#,
            parent + id,
            id * 4096
        ));
        t.push('\n');
    }
    t.push_str(
        r#"{"type":"end","sessions":4,"lost_events":0,"duration_ms":2000,"reason":"signal"}"#,
    );
    t.push('\n');
    t
}

#[test]
fn every_output_names_the_instance_and_filters_select_it() {
    let trace = three_servers();
    let all = run(&["report", "-"], Some(trace.as_bytes()));
    assert_eq!(all.code, 0, "{}", all.stderr);
    for inst in ["db1:6379", "db1:6380", "/run/redis/r.sock"] {
        assert!(all.stdout.contains(inst), "{inst} missing:\n{}", all.stdout);
    }
    assert!(
        all.stdout
            .contains("Session 3: rdb-bgsave on /run/redis/r.sock")
    );

    let one = run(
        &["report", "--instance", "db1:6379", "-"],
        Some(trace.as_bytes()),
    );
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert!(
        one.stdout
            .contains("Sessions: 2 (selected by --instance db1:6379)")
    );
    assert!(!one.stdout.contains("db1:6380") && !one.stdout.contains("r.sock"));

    let json = run(
        &[
            "report",
            "--json",
            "--instance",
            "db1:6379",
            "--kind",
            "aof-rewrite",
            "-",
        ],
        Some(trace.as_bytes()),
    );
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{}", json.stdout);
    assert_eq!(sessions[0]["session"], 4);
    assert_eq!(sessions[0]["instance"], "db1:6379");
    assert_eq!(v["totals"]["cow_bytes"], 4 * 4096);
    assert!(
        sessions[0]["diagnosis"][0]
            .as_str()
            .unwrap()
            .starts_with("COW copied 16.0 KiB"),
        "{}",
        json.stdout
    );

    let n = run(&["report", "--session", "3", "-"], Some(trace.as_bytes()));
    assert!(
        n.stdout.contains("Sessions: 1 (selected by --session 3)"),
        "{}",
        n.stdout
    );

    let none = run(
        &["report", "--instance", "db2:6379", "-"],
        Some(trace.as_bytes()),
    );
    assert_eq!(none.code, 1);
    assert_eq!(
        none.stderr.trim(),
        "cowtrace: error: no session in <stdin> matches --instance db2:6379; its servers: /run/redis/r.sock, db1:6379, db1:6380"
    );
    let bad = run(&["report", "--kind", "bgsave", "-"], Some(trace.as_bytes()));
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
