//! Section 8: how fast cowtrace starts and stops, timed from outside (issue 12).
//!
//! `record`: spawn `cowtrace record -o FILE -p SLEEPER`, time until the `meta` line is in
//! FILE (written once every program is attached), wait half a second, read the ids of
//! the BPF programs and links it holds (from /proc/PID/fdinfo), SIGINT, time until it
//! has exited, then ask the kernel (`bpftool prog show`, `bpftool link show`) whether any
//! of those ids is still there, and poll until none is.
//!
//! `watch`, full screen: `cowtrace watch -p SLEEPER` in a 120x40 pseudo-terminal made by
//! util-linux `script`, whose stdin carries the keys and whose stdout carries the screen.
//! Times: spawn → the first screen drawn (`pid SLEEPER` on it; it comes before the
//! programs are attached), then, once it holds its links and half a second later, the key (`q`, or Ctrl-C,
//! which the raw-mode view reads as a key) → the summary line on the terminal
//! (`cowtrace: N session(s) in`), the key → exit, and the same check that nothing stays
//! attached.

use super::procs::Proc;
use super::stats::Spread;
use super::tracers::{Running, Tools};
use anyhow::{Context as _, Result, bail};
use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
pub struct Params {
    /// `record` starts and stops.
    pub record_runs: usize,
    /// Full-screen `watch` runs (alternately stopped with `q` and Ctrl-C).
    pub view_runs: usize,
}

/// One `record` start and stop.
#[derive(Clone, Debug, Default)]
pub struct RecordRun {
    pub attach_ms: f64,
    pub exit_ms: f64,
    /// Programs and links it held while running.
    pub progs: usize,
    pub links: usize,
    /// Of those, still listed by bpftool at the first look after the exit.
    pub left_at_exit: usize,
    /// From the signal until none was listed (None: still listed after the limit).
    pub gone_ms: Option<f64>,
}

/// The key that ends a full-screen run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Q,
    CtrlC,
}

impl Key {
    pub fn name(self) -> &'static str {
        match self {
            Key::Q => "q",
            Key::CtrlC => "Ctrl-C",
        }
    }

    fn bytes(self) -> &'static [u8] {
        match self {
            Key::Q => b"q",
            Key::CtrlC => b"\x03",
        }
    }
}

/// One full-screen `watch` start and stop.
#[derive(Clone, Debug)]
pub struct ViewRun {
    pub key: Key,
    /// Spawn → the first screen drawn (before the programs are attached).
    pub drawn_ms: f64,
    /// Spawn → its first BPF link seen in /proc/PID/fdinfo (polled every 5 ms; an
    /// upper bound of the first attach, not of the last).
    pub linked_ms: f64,
    /// Key → the summary on the terminal.
    pub summary_ms: f64,
    /// Key → exit.
    pub exit_ms: f64,
    pub progs: usize,
    pub links: usize,
    pub left_at_exit: usize,
    pub gone_ms: Option<f64>,
}

pub struct Results {
    pub params: Params,
    pub record: Vec<RecordRun>,
    pub view: Vec<ViewRun>,
}

impl Results {
    pub fn record_spread(&self, f: impl Fn(&RecordRun) -> Option<f64>) -> Option<Spread> {
        Spread::of(&self.record.iter().filter_map(f).collect::<Vec<_>>())
    }

    pub fn view_spread(
        &self,
        key: Option<Key>,
        f: impl Fn(&ViewRun) -> Option<f64>,
    ) -> Option<Spread> {
        Spread::of(
            &self
                .view
                .iter()
                .filter(|v| key.is_none_or(|k| v.key == k))
                .filter_map(f)
                .collect::<Vec<_>>(),
        )
    }
}

/// The BPF object a `/proc/PID/fdinfo/FD` describes: a program (`prog_id:` alone) or a
/// link (`link_id:`, which also names its program). None for anything else.
#[derive(Debug, PartialEq, Eq)]
pub enum BpfFd {
    Prog(u32),
    Link(u32),
}

pub fn parse_fdinfo(text: &str) -> Option<BpfFd> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse::<u32>()
                .ok()
        })
    };
    if let Some(id) = field("link_id") {
        return Some(BpfFd::Link(id));
    }
    field("prog_id").map(BpfFd::Prog)
}

/// The program and link ids `pid` holds open.
fn held_ids(pid: u32) -> (Vec<u32>, Vec<u32>) {
    let (mut progs, mut links) = (Vec::new(), Vec::new());
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return (progs, links);
    };
    for e in dir.flatten() {
        match std::fs::read_to_string(e.path())
            .ok()
            .as_deref()
            .and_then(parse_fdinfo)
        {
            Some(BpfFd::Prog(id)) => progs.push(id),
            Some(BpfFd::Link(id)) => links.push(id),
            None => {}
        }
    }
    progs.sort_unstable();
    progs.dedup();
    links.sort_unstable();
    links.dedup();
    (progs, links)
}

/// The `id` fields of `bpftool -j prog show` / `link show` output.
pub fn parse_bpftool_ids(json: &str) -> Result<Vec<u32>> {
    let v: serde_json::Value = serde_json::from_str(json).context("bpftool printed no JSON")?;
    let items = v.as_array().context("bpftool's JSON is not a list")?;
    Ok(items
        .iter()
        .filter_map(|i| i["id"].as_u64().and_then(|x| u32::try_from(x).ok()))
        .collect())
}

fn listed(kind: &str) -> Result<Vec<u32>> {
    let out = crate::util::output(Command::new("bpftool").args(["-j", kind, "show"]))?;
    parse_bpftool_ids(&out).with_context(|| format!("`bpftool -j {kind} show`"))
}

/// How many of `progs`/`links` the kernel still lists.
fn still_listed(progs: &[u32], links: &[u32]) -> Result<usize> {
    let p = listed("prog")?;
    let l = listed("link")?;
    Ok(progs.iter().filter(|i| p.contains(i)).count()
        + links.iter().filter(|i| l.contains(i)).count())
}

/// Left at the first look, and the time from `since` until none is listed (at most 10 s).
fn detached(progs: &[u32], links: &[u32], since: Instant) -> Result<(usize, Option<f64>)> {
    let first = still_listed(progs, links)?;
    if first == 0 {
        return Ok((0, Some(since.elapsed().as_secs_f64() * 1e3)));
    }
    while since.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
        if still_listed(progs, links)? == 0 {
            return Ok((first, Some(since.elapsed().as_secs_f64() * 1e3)));
        }
    }
    Ok((first, None))
}

fn one_record(t: &Tools, i: usize, sleeper: u32) -> Result<RecordRun> {
    super::procs::note_foreign_tracers();
    let tracer = Running::cowtrace(t, &format!("stop-{i}"), &[sleeper])?;
    let attach_ms = tracer.attach.as_secs_f64() * 1e3;
    std::thread::sleep(Duration::from_millis(500));
    let (progs, links) = held_ids(tracer.proc.pid());
    if progs.is_empty() && links.is_empty() {
        bail!("cowtrace record holds no BPF program or link after attaching");
    }
    let sent = Instant::now();
    let (_, _, took) = tracer.stop()?;
    let (left_at_exit, gone_ms) = detached(&progs, &links, sent)?;
    Ok(RecordRun {
        attach_ms,
        exit_ms: took.as_secs_f64() * 1e3,
        progs: progs.len(),
        links: links.len(),
        left_at_exit,
        gone_ms,
    })
}

/// What the terminal showed, and when each awaited text first appeared.
struct Screen {
    bytes: Vec<u8>,
    seen: Vec<(Vec<u8>, Option<Instant>)>,
    eof: bool,
}

impl Screen {
    fn when(&self, needle: &[u8]) -> Option<Instant> {
        self.seen
            .iter()
            .find(|(n, _)| n == needle)
            .and_then(|(_, t)| *t)
    }
}

fn one_view(t: &Tools, key: Key, sleeper: u32) -> Result<ViewRun> {
    super::procs::note_foreign_tracers();
    let drawn = format!("pid {sleeper}").into_bytes();
    let summary = b"session(s) in".to_vec();
    let inner = format!(
        "stty cols 120 rows 40; exec {} watch -p {sleeper}",
        t.cowtrace.display()
    );
    let spawned = Instant::now();
    let mut script = Proc::spawn(
        "script (cowtrace watch)",
        Command::new("script")
            .args(["-qfec", &inner, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        libc::SIGTERM,
    )?;
    let mut stdin = script.take_stdin().context("script's stdin is piped")?;
    let mut stdout = script.take_stdout().context("script's stdout is piped")?;
    let screen = Arc::new(Mutex::new(Screen {
        bytes: Vec::new(),
        seen: vec![(drawn.clone(), None), (summary.clone(), None)],
        eof: false,
    }));
    let reader = {
        let screen = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                let now = Instant::now();
                let Ok(mut s) = screen.lock() else { return };
                if n == 0 {
                    s.eof = true;
                    return;
                }
                s.bytes.extend_from_slice(&buf[..n]);
                let Screen { bytes, seen, .. } = &mut *s;
                for (needle, at) in seen.iter_mut() {
                    if at.is_none() && bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                        *at = Some(now);
                    }
                }
            }
        })
    };
    let wait_for = |needle: &[u8], what: &str| -> Result<Instant> {
        let t0 = Instant::now();
        loop {
            {
                let s = screen
                    .lock()
                    .map_err(|_| anyhow::anyhow!("the terminal reader panicked"))?;
                if let Some(at) = s.when(needle) {
                    return Ok(at);
                }
                if s.eof || t0.elapsed() > Duration::from_secs(30) {
                    let tail =
                        String::from_utf8_lossy(&s.bytes[s.bytes.len().saturating_sub(600)..])
                            .into_owned();
                    bail!(
                        "cowtrace watch never showed {what} within 30 s; the terminal's last bytes: {tail:?}"
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let drawn_at = wait_for(&drawn, "its view")?;
    let pid =
        super::view::child_cowtrace(script.pid()).context("no cowtrace process under `script`")?;
    // The first screen comes before the programs are attached: wait for its links, then
    // let the start's /proc scans and first refreshes end.
    let t0 = Instant::now();
    while held_ids(pid).1.is_empty() {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("cowtrace watch (pid {pid}) held no BPF link 30 s after its first screen");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let linked_ms = spawned.elapsed().as_secs_f64() * 1e3;
    std::thread::sleep(Duration::from_millis(500));
    let (progs, links) = held_ids(pid);
    let sent = Instant::now();
    stdin
        .write_all(key.bytes())
        .and_then(|()| stdin.flush())
        .context("sending the key to `script`")?;
    let summary_at = wait_for(&summary, "the summary")?;
    // script exits when cowtrace has exited and it has copied the last output.
    script.wait(Duration::from_secs(30))?;
    let exit_ms = sent.elapsed().as_secs_f64() * 1e3;
    let (left_at_exit, gone_ms) = detached(&progs, &links, sent)?;
    drop(stdin);
    let _ = reader.join();
    Ok(ViewRun {
        key,
        drawn_ms: drawn_at.duration_since(spawned).as_secs_f64() * 1e3,
        linked_ms,
        summary_ms: summary_at.duration_since(sent).as_secs_f64() * 1e3,
        exit_ms,
        progs: progs.len(),
        links: links.len(),
        left_at_exit,
        gone_ms,
    })
}

pub fn run(t: &Tools, p: Params, check: &dyn Fn() -> Result<()>) -> Result<Results> {
    if !crate::util::on_path("bpftool") || !crate::util::on_path("script") {
        bail!(
            "the stop/start section needs `bpftool` and util-linux `script` on PATH \
             (apt-get install bpftool util-linux)"
        );
    }
    let mut sleeper = Proc::spawn("sleep", Command::new("sleep").arg("3600"), libc::SIGKILL)?;
    let mut res = Results {
        params: p,
        record: Vec::new(),
        view: Vec::new(),
    };
    // Interleaved, so that a slow stretch of the machine hits both kinds.
    for i in 0..p.record_runs.max(p.view_runs) {
        check()?;
        if i < p.record_runs {
            let r = one_record(t, i, sleeper.pid())
                .with_context(|| format!("record start/stop, run {}", i + 1))?;
            println!(
                "[bench] stop: record {}/{}: attached {:.0} ms, SIGINT to exit {:.0} ms, {} programs + {} links, {} left at exit",
                i + 1,
                p.record_runs,
                r.attach_ms,
                r.exit_ms,
                r.progs,
                r.links,
                r.left_at_exit
            );
            res.record.push(r);
        }
        if i < p.view_runs {
            check()?;
            let key = if i % 2 == 0 { Key::Q } else { Key::CtrlC };
            let v = one_view(t, key, sleeper.pid())
                .with_context(|| format!("watch {} run {}", key.name(), i + 1))?;
            println!(
                "[bench] stop: watch {}/{}: drawn {:.0} ms, {} to summary {:.0} ms, to exit {:.0} ms, {} left at exit",
                i + 1,
                p.view_runs,
                v.drawn_ms,
                key.name(),
                v.summary_ms,
                v.exit_ms,
                v.left_at_exit
            );
            res.view.push(v);
        }
    }
    sleeper.stop(Duration::from_secs(5))?;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_kinds() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t26\n\
                    prog_jited:\t1\nprog_tag:\t8a1b\nmemlock:\t4096\nprog_id:\t812\n";
        assert_eq!(parse_fdinfo(prog), Some(BpfFd::Prog(812)));
        let link = "pos:\t0\nflags:\t02000000\nlink_type:\ttracing\nlink_id:\t77\n\
                    prog_tag:\t8a1b\nprog_id:\t812\nattach_type:\t24\n";
        assert_eq!(parse_fdinfo(link), Some(BpfFd::Link(77)));
        let map = "pos:\t0\nmap_type:\t27\nmap_id:\t90\n";
        assert_eq!(parse_fdinfo(map), None);
    }

    #[test]
    fn bpftool_ids() {
        let json = r#"[{"id":3,"type":"tracing"},{"id":12,"type":"raw_tracepoint"}]"#;
        assert_eq!(parse_bpftool_ids(json).unwrap(), vec![3, 12]);
        assert_eq!(parse_bpftool_ids("[]").unwrap(), Vec::<u32>::new());
        assert!(parse_bpftool_ids("Error: x").is_err());
    }

    #[test]
    fn spreads_by_key() {
        let v = |key, summary_ms| ViewRun {
            key,
            drawn_ms: 100.0,
            linked_ms: 110.0,
            summary_ms,
            exit_ms: 150.0,
            progs: 1,
            links: 1,
            left_at_exit: 0,
            gone_ms: Some(160.0),
        };
        let r = Results {
            params: Params {
                record_runs: 0,
                view_runs: 3,
            },
            record: vec![],
            view: vec![v(Key::Q, 10.0), v(Key::CtrlC, 30.0), v(Key::Q, 20.0)],
        };
        assert_eq!(
            r.view_spread(Some(Key::Q), |v| Some(v.summary_ms))
                .unwrap()
                .median,
            15.0
        );
        assert_eq!(r.view_spread(None, |v| Some(v.summary_ms)).unwrap().n, 3);
        assert!(r.record_spread(|r| Some(r.exit_ms)).is_none());
    }
}
