//! Root tests of the failure modes an SRE can meet on a production host (issue 8).
mod common;
use common::*;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn save_child_killed_mid_save_keeps_its_totals() {
    require_root();
    // 30k keys at 200 us each: a save of about 6 s, killed after about 1 s.
    let redis = Redis::start(&["--rdb-key-save-delay", "200"]);
    redis.fill(30_000, 100);
    let dir = TempDir::new("kill9");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    redis.bgsave();
    // A write load so the parent copies pages while the child is alive.
    redis.run_sets(30_000, 200_000, 100);
    let child = wait_for("the save child's pid", Duration::from_secs(10), || {
        redis.logged_save_pid()
    });
    unsafe { libc::kill(child as i32, libc::SIGKILL) };
    redis.wait_bgsave();
    std::thread::sleep(Duration::from_millis(300));
    let t = rec.stop();
    let e = t.end_of_child(child);
    eprintln!(
        "killed save: {} cow pages, {} bytes written",
        e["cow"]["pages"], e["writes"]["bytes"]
    );
    assert_eq!(
        (e["exit_code"].as_i64(), e["exit_signal"].as_i64()),
        (None, Some(9))
    );
    assert_eq!(e["complete"], true);
    assert_eq!(e["kind"], "rdb-bgsave");
    assert!(
        u(&e["cow"]["parent_pages"]) > 100,
        "the parent's copies before the kill are kept: {}",
        e["cow"]
    );
    assert!(
        u(&e["writes"]["bytes"]) > 0,
        "the child's writes before the kill are kept: {}",
        e["writes"]
    );
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn redis_killed_and_restarted_is_followed() {
    require_root();
    let dir = TempDir::new("restart");
    let rec = Recorder::start(dir.path(), &[], &[]);
    let mut old = Redis::start(&[]);
    let old_pid = old.pid();
    old.save();
    let _ = old.child.kill();
    let _ = old.child.wait();
    let new = Redis::start(&[]);
    new.save();
    std::thread::sleep(Duration::from_millis(300));
    let t = rec.stop();
    let p = t.process(old_pid as u64);
    assert_eq!(
        p["exited"], true,
        "the killed server's process line says it exited: {p}"
    );
    for (r, pid) in [(&old, old_pid), (&new, new.pid())] {
        let e = t.end_of_child(r.save_pid());
        assert_eq!(
            (e["kind"].as_str(), u(&e["parent_pid"])),
            (Some("rdb-bgsave"), pid as u64)
        );
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn every_stop_signal_ends_the_trace_cleanly() {
    require_root();
    // Programs named like ours before the runs (another cowtrace may be running).
    let before = count_our_programs();
    for (sig, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let dir = TempDir::new("sig");
        let path = dir.path().join("t.jsonl");
        let mut child = cowtrace()
            .args(["record", "-o"])
            .arg(&path)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_attached(&path, &mut child);
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = wait_timeout(&mut child, Duration::from_secs(10));
        assert!(status.success(), "{name}: exit {status}");
        let t = Trace::read(&path);
        assert_eq!(t.end()["reason"], "signal", "{name}");
        // No program stays attached: the kernel frees programs asynchronously after their
        // last fd closes, so allow it a moment to return to the count before the run.
        wait_for(
            &format!("{name}: programs to be freed"),
            Duration::from_secs(5),
            || (count_our_programs() <= before).then_some(()),
        );
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn two_instances_both_count_everything() {
    require_root();
    let a_dir = TempDir::new("two-a");
    let b_dir = TempDir::new("two-b");
    let w = Workload::spawn(&["--mode", "parent-writes", "--mib", "16", "--pages", "3000"]);
    let pid = w.pid.to_string();
    let a = Recorder::start(a_dir.path(), &["-p", &pid], &[]);
    let b = Recorder::start(b_dir.path(), &["-p", &pid], &[]);
    let r = w.go();
    let child = u(&r["children"][0]);
    let (ta, tb) = (
        a.wait(Duration::from_secs(20)),
        b.wait(Duration::from_secs(20)),
    );
    let (ca, cb) = (
        u(&ta.end_of_child(child)["cow"]["parent_pages"]),
        u(&tb.end_of_child(child)["cow"]["parent_pages"]),
    );
    assert!(
        (3000..=3048).contains(&ca) && (3000..=3048).contains(&cb),
        "{ca} {cb}"
    );
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn traces_hold_no_redis_data_and_are_private() {
    require_root();
    let redis = Redis::start(&[]);
    assert_eq!(
        redis
            .cli(&[
                "SET",
                "cowtrace-secret-key-8f3a",
                "cowtrace-secret-value-1c9e"
            ])
            .trim(),
        "OK"
    );
    let dir = TempDir::new("secret");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid, "--events"], &[]);
    redis.save();
    std::thread::sleep(Duration::from_millis(300));
    let path = rec.path.clone();
    let t = rec.stop();
    assert!(!t.ends().is_empty());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("cowtrace-secret"),
        "a key or value leaked into the trace"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn cowtrace_opens_no_network_socket() {
    require_root();
    let dir = TempDir::new("sock");
    let path = dir.path().join("t.jsonl");
    let mut child = cowtrace()
        .args(["record", "-o"])
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_attached(&path, &mut child);
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    // tokio's signal handling uses a unix socketpair; nothing may be an inet socket
    // or a listening unix socket.
    let inet: String = ["tcp", "tcp6", "udp", "udp6", "raw", "raw6"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(format!("/proc/{}/net/{f}", child.id())).unwrap_or_default()
        })
        .collect();
    let unix = std::fs::read_to_string(format!("/proc/{}/net/unix", child.id())).unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(wait_timeout(&mut child, Duration::from_secs(10)).success());
    for f in fds
        .iter()
        .filter_map(|f| f.strip_prefix("socket:["))
        .map(|f| f.trim_end_matches(']'))
    {
        assert!(
            !inet.split_whitespace().any(|w| w == f),
            "socket {f} is an inet socket"
        );
        let line = unix
            .lines()
            .find(|l| l.split_whitespace().nth(6) == Some(f))
            .unwrap_or_else(|| panic!("socket {f} is not a unix socket"));
        // Flags 00010000 = __SO_ACCEPTCON: a listening socket.
        assert_ne!(
            line.split_whitespace().nth(3),
            Some("00010000"),
            "socket {f} listens: {line}"
        );
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn closed_stdout_ends_record_promptly_and_quietly() {
    require_root();
    // `cowtrace record -o - | head -1`
    let mut child = cowtrace()
        .args(["record", "-o", "-", "-i", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    use std::io::{BufRead, Read};
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    assert!(first.contains("\"type\":\"meta\""), "{first}");
    drop(out);
    let t0 = Instant::now();
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    // Quiet: the banner (on stderr, since stdout is the trace) and nothing else.
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.len() == 1
            && lines[0].starts_with("cowtrace ")
            && lines[0].contains(": recording to stdout; ")
            && lines[0].ends_with("ms; Ctrl-C to stop)"),
        "quiet: {err}"
    );
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn record_says_where_it_writes_and_never_overwrites_without_force() {
    require_root();
    let redis = Redis::start(&[]);
    let pid = redis.pid().to_string();
    let name = cowtrace::procfs::sockets::instance_name(redis.pid());
    assert_eq!(name, redis.sock.display().to_string());
    let dir = TempDir::new("keep");
    let path = dir.path().join("incident.jsonl");
    let earlier = b"{\"type\":\"meta\"} an earlier incident's trace\n";
    std::fs::write(&path, earlier).unwrap();

    // Refused before anything is loaded: one message naming the file and --force.
    let before = count_our_programs();
    let t0 = Instant::now();
    let out = cowtrace()
        .args(["record", "-p", &pid, "-d", "5", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "cowtrace: error: trace output {} already exists ({} bytes); cowtrace does not \
             overwrite it: choose another path with -o, or add --force to replace it",
            path.display(),
            earlier.len()
        )
    );
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "it failed at once, not after -d 5: {:?}",
        t0.elapsed()
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        earlier,
        "the file is untouched"
    );
    assert!(count_our_programs() <= before, "nothing is left loaded");

    // --force replaces it, and the banner says where the trace goes once attached.
    let mut child = cowtrace()
        .args(["record", "--force", "-p", &pid, "-o"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut errs = std::io::BufReader::new(child.stderr.take().unwrap());
    std::io::BufRead::read_line(&mut errs, &mut banner).unwrap();
    eprintln!("{banner}");
    let want = format!(
        ": recording pid {pid} at {name} to {} (attached in ",
        path.display()
    );
    assert!(
        banner.starts_with("cowtrace ")
            && banner.contains(&want)
            && banner.trim_end().ends_with(" ms; Ctrl-C to stop)"),
        "{banner}"
    );
    // Said once the programs are attached: the meta line is already in the file.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("{\"type\":\"meta\",\"format\":\"cowtrace\""),
        "{text}"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(wait_timeout(&mut child, Duration::from_secs(10)).success());
    let t = Trace::read(&path);
    assert_eq!(t.end()["reason"], "signal");
}

/// Record `forks` short-lived children forked one after the other by cowload, with
/// `env` for cowtrace; stop `settle` after the storm.
fn fork_storm(tag: &str, forks: u32, settle: Duration, env: &[(&str, &str)]) -> Trace {
    let dir = TempDir::new(tag);
    let n = forks.to_string();
    let w = Workload::spawn(&["--mode", "many-forks", "--children", &n, "--mib", "1"]);
    let pid = w.pid.to_string();
    // A second, long-lived target keeps the run going after the fork storm ends.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let sp = sleeper.id().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid, "-p", &sp], env);
    w.go();
    std::thread::sleep(settle);
    let t = rec.stop();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    t
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn ten_thousand_forks_leave_no_map_entries() {
    require_root();
    let t = fork_storm("forks", 10_000, Duration::from_millis(500), &[]);
    let end = t.end();
    eprintln!("10k forks: end {end}");
    assert_eq!(u(&end["sessions"]), 10_000);
    assert_eq!(t.ends().len(), 10_000, "every session accounted for");
    assert!(t.ends().iter().all(|e| e["complete"] == true));
    // Left: the sleeper (traced) and at most one exited session per root.
    assert!(u(&end["maps"]["traced"]) <= 1, "{end}");
    assert!(u(&end["maps"]["sessions"]) <= 1, "{end}");
    assert_eq!(u(&end["maps"]["files"]), 0, "{end}");
    let rss = u(&end["agent_max_rss_bytes"]);
    assert!(rss < 128 << 20, "agent peak RSS {rss}");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn watch_says_when_no_redis_is_running() {
    require_root();
    let out = cowtrace().args(["watch", "-d", "1"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let running = cowtrace::procfs::find_redis(std::path::Path::new("/proc"));
    if running.is_empty() {
        assert!(
            text.contains(
                ": no Redis server is running yet; waiting for one to start (attached in"
            ),
            "{text}"
        );
    } else {
        // Some other Redis runs on this host: then it is named instead.
        assert!(text.contains(&running[0].pid.to_string()), "{text}");
    }
    assert!(text.contains("0 session(s)"), "{text}");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn full_disk_stops_cleanly_with_a_clear_error() {
    require_root();
    let dir = TempDir::new("full");
    let mnt = dir.path().join("tiny");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Umount(mnt.clone());
    // --events on a 64 MiB rewrite: 16k lines of ~150 bytes cannot fit in 256 KiB.
    let w = Workload::spawn(&["--mode", "parent-writes", "--mib", "64"]);
    let pid = w.pid.to_string();
    let path = mnt.join("t.jsonl");
    let mut child = cowtrace()
        .args(["record", "--events", "-p", &pid, "-o"])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_attached(&path, &mut child);
    w.go();
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("No space left on device") && err.contains("t.jsonl"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // Whatever was written is whole lines, but possibly the last.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[..lines.len().saturating_sub(1)] {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("bad line {l}: {e}"));
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn lost_fork_and_exit_events_still_account_for_every_session() {
    require_root();
    // A 4 KiB session ring holds 12 events: a burst of forks overflows it, and the
    // agent must recover the sessions whose fork or exit event was dropped from the
    // kernel's SESSIONS map.
    let t = fork_storm(
        "lostforks",
        3_000,
        Duration::ZERO,
        &[("COWTRACE_PROC_RING_BYTES", "4096")],
    );
    let end = t.end();
    eprintln!("lost events: {end}");
    assert!(
        u(&end["lost_session_events"]) > 0,
        "a 4 KiB ring must overflow in a fork burst: {end}"
    );
    assert_eq!(u(&end["sessions"]), 3_000, "{end}");
    assert_eq!(t.ends().len(), 3_000, "every session has its end");
    assert!(t.ends().iter().all(|e| e["complete"] == true));
    assert!(u(&end["maps"]["sessions"]) <= 1, "{end}");
}
