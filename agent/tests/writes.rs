//! Root ground-truth tests of disk-write attribution.
mod common;
use common::*;

use std::time::Duration;

fn files(e: &serde_json::Value) -> Vec<(String, Option<String>, u64)> {
    e["writes"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["renamed_to"].as_str().map(str::to_string),
                u(&f["bytes"]),
            )
        })
        .collect()
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn child_file_write_bytes_names_fsync_and_disk() {
    require_root();
    let dir = TempDir::new("writes");
    let d = dir.path().to_str().unwrap().to_string();
    const B: u64 = 12 * 1024 * 1024 + 12345; // not a multiple of the chunk or page size
    let w = Workload::spawn(&[
        "--mode",
        "child-file-write",
        "--dir",
        &d,
        "--bytes",
        &B.to_string(),
        "--chunk",
        "65536",
    ]);
    let pid = w.pid.to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    // An untraced writer at the same time, on the same filesystem: never attributed.
    let noise = dir.path().join("untraced.dat");
    let mut dd = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=1M",
            "count=16",
            "conv=fsync",
            "status=none",
        ])
        .arg(format!("of={}", noise.display()))
        .spawn()
        .unwrap();
    let r = w.go();
    assert!(dd.wait().unwrap().success());
    let t = rec.wait(Duration::from_secs(30));
    let e = t.end_of_child(u(&r["children"][0]));
    eprintln!(
        "writes {} fsync {} disk {}",
        e["writes"], e["fsync"], e["disk"]
    );
    assert_eq!(u(&e["writes"]["bytes"]), B, "write bytes exact");
    assert_eq!(
        u(&e["writes"]["calls"]),
        B.div_ceil(65536),
        "one call per chunk"
    );
    let f = files(e);
    assert_eq!(f.len(), 1, "only the child's file: {f:?}");
    assert_eq!(f[0].0, r["temp"].as_str().unwrap());
    assert_eq!(f[0].1.as_deref(), r["final"].as_str());
    assert_eq!(f[0].2, B);
    // The child makes exactly one sync call, an fsync.
    assert_eq!(u(&e["fsync"]["calls"]), 1);
    assert_eq!(u(&e["fsync"]["latency_us"]["count"]), 1);
    assert_eq!(sync_calls(&e["fsync"]), [1, 0, 0], "{}", e["fsync"]);
    assert_eq!(u(&e["fsync"]["by_call"]["fsync"]["latency_us"]["count"]), 1);
    let disk = u(&e["disk"]["bytes"]);
    // The fsync forces every dirty page of the file to the device before the child
    // exits; block requests are whole pages, so disk bytes are B rounded up to 4 KiB:
    // every request of the file is charged, also one that starts inside a large folio.
    assert!(
        disk >= B,
        "disk bytes {disk} < the {B} bytes of the file the child fsynced"
    );
    assert!(
        disk <= B.div_ceil(4096) * 4096,
        "disk bytes {disk} > file pages"
    );
    assert!(u(&e["disk"]["ios"]) > 0);
    assert_eq!(
        u(&e["writes"]["latency_us"]["count"]),
        u(&e["writes"]["calls"]),
        "a latency per call"
    );
    let sampled: u64 = t
        .of_type("sample")
        .iter()
        .map(|s| u(&s["write_bytes"]))
        .sum();
    assert!(sampled <= B, "samples carry interval deltas: {sampled}");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn redis_bgsave_writes_equal_the_rdb_file() {
    bgsave_writes_equal_the_rdb_file(Flavor::Redis);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn valkey_bgsave_writes_equal_the_rdb_file() {
    bgsave_writes_equal_the_rdb_file(Flavor::Valkey);
}

fn bgsave_writes_equal_the_rdb_file(flavor: Flavor) {
    require_root();
    // Log to stdout (not a regular file): the save child also appends its "DB saved"
    // lines to a log file, which are real writes and would count too.
    let redis = Redis::start_flavor(flavor, &["--logfile", ""]);
    redis.fill(100_000, 100);
    let dir = TempDir::new("redis-writes");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    redis.save();
    std::thread::sleep(Duration::from_millis(300));
    let t = rec.stop();
    let e = t
        .ends()
        .into_iter()
        .find(|e| e["kind"] == "rdb-bgsave")
        .expect("an rdb-bgsave session")
        .clone();
    let child = u(&e["child_pid"]);
    let rdb = redis.dir.path().join("dump.rdb");
    let size = std::fs::metadata(&rdb).unwrap().len();
    eprintln!(
        "{} RDB {size} bytes; writes {} disk {}",
        flavor.name(),
        e["writes"],
        e["disk"]
    );
    assert_eq!(
        u(&e["writes"]["bytes"]),
        size,
        "bytes written == dump.rdb size"
    );
    let dir_s = redis.dir.path().to_str().unwrap();
    let f = files(&e);
    assert_eq!(f.len(), 1, "{f:?}");
    let temp = format!("{dir_s}/temp-{child}.rdb");
    let row = f
        .iter()
        .find(|r| r.0 == temp)
        .unwrap_or_else(|| panic!("{temp} not in {f:?}"));
    assert_eq!(row.1.as_deref(), Some(format!("{dir_s}/dump.rdb").as_str()));
    assert!(u(&e["fsync"]["calls"]) >= 1, "Redis fsyncs the RDB");
    // Redis fsyncs the RDB before the child exits: all of it went to the disk.
    let disk = u(&e["disk"]["bytes"]);
    assert!(disk >= size, "disk {disk} < the RDB's {size} bytes");
}

/// `[fsync, fdatasync, sync_file_range]` calls of a `session_end.fsync` object.
fn sync_calls(f: &serde_json::Value) -> [u64; 3] {
    let b = &f["by_call"];
    assert!(b.is_object(), "no by_call in {f}");
    ["fsync", "fdatasync", "sync_file_range"].map(|c| u(&b[c]["calls"]))
}

/// `strace -f` of a running process and its future children, for the sync calls.
struct Strace {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Strace {
    const CALLS: [&str; 3] = ["fsync", "fdatasync", "sync_file_range"];

    /// Attach to `pid` (and, with `-f`, every thread and child it makes from then on);
    /// returns once strace says it has attached.
    fn attach(pid: u32, out: std::path::PathBuf) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new("strace")
            .args(["-f", "-e", "trace=fsync,fdatasync,sync_file_range", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run strace ({e}): it is the ground truth here; run `cargo xtask setup`"
                )
            });
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        assert!(
            line.contains("attached"),
            "strace did not attach to {pid}: {line:?}"
        );
        // Keep reading its stderr (one line per thread attached, then the detach
        // messages), so that strace never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Self { child, out }
    }

    /// Detach, and count the sync calls per pid: `{pid: [fsync, fdatasync,
    /// sync_file_range]}`. A call interrupted by another thread's line is written as
    /// `PID call(... <unfinished ...>` then `PID <... call resumed>`: counted once.
    fn stop(mut self) -> std::collections::HashMap<u64, [u64; 3]> {
        // SAFETY: plain kill(2) on our own child; SIGINT makes strace detach.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = wait_timeout(&mut self.child, Duration::from_secs(30));
        assert!(
            st.success() || st.code() == Some(130) || st.code().is_none(),
            "strace: {st}"
        );
        let text = std::fs::read_to_string(&self.out).unwrap();
        let mut counts = std::collections::HashMap::new();
        for l in text.lines() {
            let Some((pid, rest)) = l.split_once(' ') else {
                continue;
            };
            let Ok(pid) = pid.parse::<u64>() else {
                continue;
            };
            let rest = rest.trim_start();
            if let Some(i) = Self::CALLS
                .iter()
                .position(|c| rest.starts_with(&format!("{c}(")))
            {
                counts.entry(pid).or_insert([0; 3])[i] += 1;
            }
        }
        counts
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn redis_bgsave_sync_calls_equal_strace() {
    require_root();
    // rdb-save-incremental-fsync: the child calls sync_file_range every 4 MB of RDB;
    // then fsync on the RDB and fdatasync on its directory (Redis 7's fsyncFileDir).
    let redis = Redis::start(&["--rdb-save-incremental-fsync", "yes"]);
    redis.fill(250_000, 100);
    let dir = TempDir::new("redis-sync");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid, "--events"], &[]);
    let strace = Strace::attach(redis.pid(), dir.path().join("strace.txt"));
    redis.save();
    std::thread::sleep(Duration::from_millis(300));
    let counts = strace.stop();
    let t = rec.stop();
    let child = redis.save_pid();
    let e = t.end_of_child(child);
    let rdb = std::fs::metadata(redis.dir.path().join("dump.rdb"))
        .unwrap()
        .len();
    let truth = counts
        .get(&child)
        .copied()
        .unwrap_or_else(|| panic!("strace saw no sync call of the save child {child}: {counts:?}"));
    let ours = sync_calls(&e["fsync"]);
    eprintln!(
        "RDB {rdb} bytes; strace child {child} [fsync, fdatasync, sync_file_range] = {truth:?}, cowtrace {ours:?}; written {} disk {}",
        e["writes"]["bytes"], e["disk"]["bytes"]
    );
    // The ground truth must have every kind, or the test proves nothing.
    assert!(
        truth.iter().all(|&n| n > 0),
        "this save made not every kind of sync call: {truth:?} (rdb-save-incremental-fsync, a RDB over 4 MB)"
    );
    assert_eq!(ours, truth, "per-call sync counts of the child");
    assert_eq!(u(&e["fsync"]["calls"]), truth.iter().sum::<u64>());
    assert_eq!(
        u(&t.end()["lost_events"]),
        0,
        "no event lost: the lines are whole"
    );
    // The `fsync` event lines say which call each one was.
    let mut lines = [0u64; 3];
    for l in t.of_type("fsync") {
        if u(&l["pid"]) == child {
            let i = Strace::CALLS
                .iter()
                .position(|c| l["call"] == *c)
                .unwrap_or_else(|| panic!("fsync line without a known call: {l}"));
            lines[i] += 1;
            assert_eq!(l["session"], e["session"], "{l}");
        }
    }
    assert_eq!(lines, truth, "fsync lines of the child per call");
    for (i, c) in Strace::CALLS.iter().enumerate() {
        assert_eq!(
            u(&e["fsync"]["by_call"][c]["latency_us"]["count"]),
            truth[i],
            "a latency per {c} call"
        );
    }
    // The parent (every thread of the server) made the calls its process line says.
    let parent: [u64; 3] = counts
        .iter()
        .filter(|&(&p, _)| p != child)
        .fold([0; 3], |a, (_, c)| std::array::from_fn(|i| a[i] + c[i]));
    let p = &t.process(redis.pid() as u64)["io"];
    let p = ["fsync", "fdatasync", "sync_file_range"].map(|c| u(&p["sync_calls"][c]));
    assert_eq!(p, parent, "the server's own sync calls");
    // Redis fsyncs the RDB before the child exits: all of it went to the disk.
    let disk = u(&e["disk"]["bytes"]);
    assert!(disk >= rdb, "disk {disk} < the RDB's {rdb} bytes");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn redis_bgrewriteaof_writes_equal_the_new_base_file() {
    bgrewriteaof_names_and_fills_the_new_base_file(Flavor::Redis);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn valkey_bgrewriteaof_writes_equal_the_new_base_file() {
    bgrewriteaof_names_and_fills_the_new_base_file(Flavor::Valkey);
}

/// BGREWRITEAOF with `appendonly yes`: the session follows the child's file through the
/// parent's rename into `appendonlydir/`, names the base file and the manifest, and its
/// bytes are that file's size.
fn bgrewriteaof_names_and_fills_the_new_base_file(flavor: Flavor) {
    require_root();
    let redis = Redis::start_flavor(flavor, &["--appendonly", "yes", "--logfile", ""]);
    redis.fill(50_000, 100);
    redis.wait_aof_rewrite();
    let dir = TempDir::new("redis-aof");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    redis.rewrite_aof();
    std::thread::sleep(Duration::from_millis(300));
    let t = rec.stop();
    let e = t
        .ends()
        .into_iter()
        .find(|e| e["kind"] == "aof-rewrite")
        .expect("an aof-rewrite session")
        .clone();
    // Redis 7 and Valkey keep the AOF in appendonlydir/; the manifest names the newest
    // base file.
    let aofdir = redis.dir.path().join("appendonlydir");
    let manifest_path = aofdir.join("appendonly.aof.manifest");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let base = manifest
        .lines()
        .find(|l| l.contains("type b"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no base file in manifest:\n{manifest}"));
    let base_path = aofdir.join(base);
    let size = std::fs::metadata(&base_path).unwrap().len();
    eprintln!(
        "{}: AOF base {base} {size} bytes; writes {}; aof {}",
        flavor.name(),
        e["writes"],
        e["aof"]
    );
    assert_eq!(
        u(&e["writes"]["bytes"]),
        size,
        "bytes written == new base AOF size"
    );
    let child = u(&e["child_pid"]);
    // The child writes temp-rewriteaof-PID.aof and renames it to
    // temp-rewriteaof-bg-PID.aof; the parent then renames that to the base file.
    let f = files(&e);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].0.ends_with(&format!("/temp-rewriteaof-{child}.aof")),
        "{f:?}"
    );
    let base_s = base_path.to_str().unwrap();
    assert_eq!(f[0].1.as_deref(), Some(base_s), "{f:?}");
    assert_eq!(e["aof"]["base"], base_s, "{}", e["aof"]);
    assert_eq!(
        e["aof"]["manifest"],
        manifest_path.to_str().unwrap(),
        "{}",
        e["aof"]
    );
}
