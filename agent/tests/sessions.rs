//! Root tests: fork sessions of a `-p` process, and the errors a user can hit.
mod common;
use common::*;

use std::time::Duration;

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn fork_of_traced_pid_is_one_session_that_ends() {
    require_root();
    let dir = TempDir::new("fork");
    let w = Workload::spawn(&["--mode", "parent-writes", "--mib", "4", "--pages", "16"]);
    let pid = w.pid.to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    let result = w.go();
    // All -p targets exited: cowtrace stops by itself.
    let trace = rec.wait(Duration::from_secs(20));
    let child = u(&result["children"][0]);
    let starts = trace.of_type("session_start");
    assert_eq!(starts.len(), 1, "{:#?}", trace.lines);
    let s = starts[0];
    assert_eq!(
        (u(&s["parent_pid"]), u(&s["child_pid"])),
        (w_pid(&pid), child)
    );
    assert_eq!(s["kind"], "fork");
    assert!(
        s["fork_us"].as_f64().unwrap() > 0.0,
        "fork latency measured: {s}"
    );
    let e = trace.end_of_child(child);
    assert_eq!(e["session"], s["session"]);
    assert_eq!(
        (e["exit_code"].as_i64(), e["exit_signal"].as_i64()),
        (Some(0), None)
    );
    assert_eq!(e["complete"], true);
    let end = trace.end();
    assert_eq!(
        (u(&end["sessions"]), end["reason"].as_str()),
        (1, Some("targets-exited"))
    );
    let meta = &trace.lines[0];
    assert_eq!(
        (meta["format"].as_str(), u(&meta["version"])),
        (Some("cowtrace"), 1)
    );
    // The COW method: the write-protect handler `do_wp_page` by fentry where the kernel
    // allows trampolines (the writes then use fentry too); without them x86-64's
    // `page_fault_user` tracepoint, or kprobes elsewhere (agent/src/kernel/cow.rs).
    let attach = &meta["attach"];
    let trampolines = attach["writes"]
        .as_str()
        .is_some_and(|w| w.starts_with("fentry"));
    if cfg!(target_arch = "x86_64") {
        let (method, hooks) = if trampolines {
            ("fentry", "fentry+fexit/do_wp_page")
        } else {
            ("tracepoint", "tp_btf/page_fault_user")
        };
        assert_eq!(attach["method"], method, "{attach}");
        assert!(
            attach["cow"].as_str().unwrap_or("").starts_with(hooks),
            "{attach}"
        );
    } else {
        assert!(
            matches!(attach["method"].as_str(), Some("fentry" | "kprobe")),
            "{attach}"
        );
        assert!(
            attach["cow"].as_str().unwrap_or("").contains("/do_wp_page"),
            "{attach}"
        );
    }
}

fn w_pid(s: &str) -> u64 {
    s.parse().unwrap()
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn sigkilled_child_ends_with_signal_9() {
    require_root();
    let dir = TempDir::new("kill");
    // A traced shell whose child sleeps until killed.
    let mut sh = std::process::Command::new("sh")
        .args(["-c", "read x; sleep 30 & echo $! ; wait"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = sh.id().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    use std::io::{BufRead, Write};
    sh.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(sh.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child: i32 = line.trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child, libc::SIGKILL) };
    assert!(wait_timeout(&mut sh, Duration::from_secs(10)).success());
    let trace = rec.wait(Duration::from_secs(20));
    let e = trace.end_of_child(child as u64);
    assert_eq!(
        (e["exit_code"].as_i64(), e["exit_signal"].as_i64()),
        (None, Some(9)),
        "{e}"
    );
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn missing_pid_is_named() {
    require_root();
    // pid_max is at most 2^22: this pid cannot exist.
    let out = cowtrace()
        .args(["record", "-o", "/dev/null", "-p", "4999999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no process with pid 4999999"), "{err}");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn without_privileges_says_what_to_do() {
    require_root();
    let out = cowtrace()
        .args(["watch", "-d", "1"])
        .env("COWTRACE_AS_UNPRIVILEGED", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("run it with sudo") && err.contains("CAP_BPF + CAP_PERFMON"),
        "{err}"
    );
    // A real unprivileged user, when one exists: setpriv drops to nobody.
    if std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok()
    {
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(env!("CARGO_BIN_EXE_cowtrace"))
            .args(["watch", "-d", "1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("CAP_BPF + CAP_PERFMON"));
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn no_btf_is_a_clear_error_and_check_fails() {
    require_root();
    let out = cowtrace()
        .args(["watch", "-d", "1"])
        .env("COWTRACE_BTF", "/nonexistent/vmlinux")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kernel BTF not found at /nonexistent/vmlinux"),
        "{err}"
    );
    let out = cowtrace()
        .arg("check")
        .env("COWTRACE_BTF", "/nonexistent/vmlinux")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot run"));
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn check_reports_this_host() {
    require_root();
    let out = cowtrace().arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "privileges",
        "BTF",
        "tracepoint",
        "tp_btf",
        "fentry",
        "kprobe",
        "uprobe",
        "THP",
        "overcommit",
        "Redis",
        "can run",
    ] {
        assert!(text.contains(want), "check output lacks {want}: {text}");
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn unwritable_output_fails_before_attaching() {
    require_root();
    let out = cowtrace()
        .args(["record", "-o", "/nonexistent-dir/t.jsonl", "-d", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // What happened and what to do, each said once.
    assert_eq!(
        err.trim(),
        "cowtrace: error: cannot open trace output /nonexistent-dir/t.jsonl: directory \
         /nonexistent-dir does not exist; choose a writable path with -o"
    );
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_pid_that_is_not_redis_is_traced_with_a_warning() {
    require_root();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    let out = cowtrace()
        .args(["watch", "--plain", "-d", "0.5", "-p", &pid.to_string()])
        .output()
        .unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "cowtrace: warning: pid {pid} (sleep) is not a redis-server or valkey-server; \
             tracing its forks anyway"
        )
    );
    assert!(
        text.contains(&format!(": watching pid {pid} (attached in ")),
        "{text}"
    );
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn bad_flag_values_are_usage_errors() {
    require_root();
    for args in [
        ["watch", "-d", "-1"],
        ["watch", "-i", "0"],
        ["watch", "-d", "soon"],
    ] {
        let out = cowtrace().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
