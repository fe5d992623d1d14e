//! What happens once the programs are attached, and at the very end: the roots are
//! added, the trace's `meta` line or the `watch` banner is written, the live view is
//! set up; and the summary is printed.
use std::{io::Write as _, time::Duration};

use anyhow::{Context as _, Result, bail};

use super::{Output, state::State};
use crate::{
    build_info,
    kernel::{
        cow::{CowChoice, Method},
        hooks::{self, Choice},
        loader::DISK_HOOKS,
        maps::KernelMaps,
    },
    live::{self, Live, screen::model::Losses, summary},
    procfs::{self, children},
    text::diagnosis::HostFacts,
    trace::schema::{Attach, Build, End, FORMAT_NAME, FORMAT_VERSION, Meta, MidSave, Record},
};

/// A fork child of a root that was already running when cowtrace attached.
pub struct Running {
    pub root: u32,
    pub child: u32,
    pub fork_ts_ns: u64,
    pub mid: MidSave,
}

/// Add the roots to the kernel maps: the `-p` targets, or every Redis server running now
/// (the exec hook, already attached, catches the ones that start later). A save already
/// running is traced as a session from now on (`add_running`).
pub fn add_roots(
    maps: &mut KernelMaps,
    pids: &[u32],
    pid_mode: bool,
) -> Result<(Vec<u32>, Vec<Running>)> {
    let roots: Vec<u32> = if pid_mode {
        pids.to_vec()
    } else {
        procfs::find_redis(std::path::Path::new("/proc"))
            .iter()
            .map(|p| p.pid)
            .collect()
    };
    let mut running = Vec::new();
    for &pid in &roots {
        running.extend(add_running(maps, pid)?);
    }
    for &pid in pids {
        // A -p target that exited while we were loading must not go unnoticed.
        if procfs::tgid_of(pid).is_none() {
            bail!("process {pid} (-p {pid}) exited before cowtrace attached");
        }
    }
    Ok((roots, running))
}

/// Add `root` with its running fork children (a save started before cowtrace), oldest
/// first, chained as the fork hook chains them; then read what each had done so far.
/// The estimates are read after the kernel counts: a copy in between is in both, never
/// in neither.
fn add_running(maps: &mut KernelMaps, root: u32) -> Result<Vec<Running>> {
    let now = procfs::monotonic_ns();
    let mut kids: Vec<(u32, u64)> = children::children_of(root)
        .into_iter()
        .filter_map(|c| Some((c, now.saturating_sub(children::age_ns(c)?))))
        .collect();
    kids.sort_by_key(|&(c, ts)| (ts, c));
    let mut prev = 0;
    for &(child, fork_ts_ns) in &kids {
        maps.add_running_child(root, child, prev, fork_ts_ns)?;
        prev = child;
    }
    maps.add_root(root, prev)?;
    Ok(kids
        .into_iter()
        .map(|(child, fork_ts_ns)| {
            let mid = MidSave {
                ran_ms: now.saturating_sub(fork_ts_ns) / 1_000_000,
                cow_bytes_estimate: children::private_dirty_bytes(child),
                cow_source: "Private_Dirty of /proc/PID/smaps_rollup at attach".into(),
                written_bytes_estimate: children::open_written_bytes(child),
            };
            log::info!(
                "pid {root}'s child {child} was already running ({} ms): tracing it from now on",
                mid.ran_ms
            );
            Running {
                root,
                child,
                fork_ts_ns,
                mid,
            }
        })
        .collect())
}

/// The hooks a measurement of `hooks.rs` uses here, in words.
fn path_of(paths: &[Choice], m: &hooks::Measurement) -> String {
    paths
        .iter()
        .find(|c| c.measurement == m.name)
        .map_or_else(|| "not attached".to_string(), Choice::describe)
}

fn meta(
    roots: &[u32],
    pid_mode: bool,
    start_ns: u64,
    interval: Duration,
    paths: &[Choice],
    cow: &CowChoice,
) -> Meta {
    Meta {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        cowtrace_version: env!("CARGO_PKG_VERSION").into(),
        host: procfs::hostname(),
        kernel: procfs::kernel_release(),
        attach: Attach {
            method: cow.method.word().into(),
            fork: "tp_btf/sched_process_fork".into(),
            exit: "tp_btf/sched_process_exit".into(),
            fork_latency: path_of(paths, &hooks::FORK_LATENCY),
            cow: cow.describe(),
            writes: path_of(paths, &hooks::WRITES),
            syncs: path_of(paths, &hooks::SYNCS),
            renames: path_of(paths, &hooks::RENAMES),
            titles: path_of(paths, &hooks::TITLES),
            disk: DISK_HOOKS.into(),
            daemonize: Some(format!(
                "{} + tp_btf/sched_process_exit (the child that setsid()s outlives its parent)",
                path_of(paths, &hooks::DAEMONIZE)
            )),
            fentry: hooks::fentry_summary(paths),
            kprobe: if cow.method == Method::WpKprobe {
                "used for COW copies (kprobe+kretprobe/do_wp_page)".into()
            } else {
                "not used: BTF tracepoints and fentry cover every measurement".into()
            },
        },
        targets: if pid_mode { "pids" } else { "auto" }.into(),
        pids: roots.to_vec(),
        start_unix_ms: Some(procfs::unix_ms()),
        start_ts_ns: Some(start_ns),
        interval_ms: Some(interval.as_millis() as u64),
        page_size: Some(procfs::page_size()),
        thp: procfs::thp_mode(),
        overcommit_memory: procfs::overcommit_memory(),
        build: Some(Build {
            commit: build_info::COMMIT.into(),
            date: build_info::date(),
            bpf_object_sha256: build_info::BPF_OBJECT_SHA256.into(),
        }),
    }
}

/// What the first line says is traced: `pid 23497 at 127.0.0.1:6399` (the `-p`
/// targets, by pid and server name), `Redis servers pid 1 at db1:6379, pid 2 at
/// /run/redis.sock`, or None when no Redis server runs yet.
pub fn targets_text(pid_mode: bool, roots: &[(u32, String)]) -> Option<String> {
    if !pid_mode && roots.is_empty() {
        return None;
    }
    let each: Vec<String> = roots
        .iter()
        .map(|(pid, name)| {
            if *name == format!("pid {pid}") {
                name.clone()
            } else {
                format!("pid {pid} at {name}")
            }
        })
        .collect();
    let each = each.join(", ");
    Some(match (pid_mode, roots.len()) {
        (true, _) => each,
        (false, 1) => format!("Redis server {each}"),
        (false, _) => format!("Redis servers {each}"),
    })
}

/// The first line of `watch` (stdout) and `record` (stderr): what is traced, where it
/// goes, how long attaching took.
pub fn banner(targets: Option<&str>, trace: Option<&std::path::Path>, attach_ms: u128) -> String {
    const WAITING: &str = "no Redis server is running yet; waiting for one to start";
    let file = trace.map(|p| {
        if p == std::path::Path::new("-") {
            "stdout".to_string()
        } else {
            p.display().to_string()
        }
    });
    let what = match (targets, file) {
        (Some(t), None) => format!("watching {t}"),
        (None, None) => WAITING.to_string(),
        (Some(t), Some(f)) => format!("recording {t} to {f}"),
        (None, Some(f)) => format!("recording to {f}; {WAITING}"),
    };
    format!(
        "cowtrace {}: {what} (attached in {attach_ms} ms; Ctrl-C to stop)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Say that cowtrace is attached: the trace's `meta` line, or `watch`'s first line or
/// its screen.
pub fn announce(
    st: &mut State,
    roots: &[u32],
    interval: Duration,
    attach_ms: u128,
    paths: &[Choice],
    cow: &CowChoice,
) -> Result<()> {
    let meta = meta(roots, st.pid_mode, st.start_ns, interval, paths, cow);
    let named: Vec<(u32, String)> = roots.iter().map(|&r| (r, st.instance(r))).collect();
    let targets = targets_text(st.pid_mode, &named);
    if matches!(st.output, Output::Watch | Output::View) {
        let host = HostFacts::from_meta(&meta);
        let interval_ns = interval.as_nanos().min(u64::MAX as u128) as u64;
        let pids = if st.pid_mode {
            roots.to_vec()
        } else {
            Vec::new()
        };
        st.live = Some(Live::new(pids, st.start_ns, interval_ns, host));
    }
    if let Output::Serve(x) = &mut st.output {
        for (_, n) in &named {
            x.on_server(n);
        }
    }
    match &mut st.output {
        Output::Trace(w) => {
            w.write(&Record::Meta(Box::new(meta)))?;
            w.flush()?;
            // On stderr: with `-o -` stdout is the trace.
            eprintln!("{}", banner(targets.as_deref(), Some(w.path()), attach_ms));
        }
        Output::Serve(x) => {
            x.attached(meta);
            eprintln!(
                "cowtrace {}: serving metrics on http://{}/metrics for {} (attached in {attach_ms} ms; Ctrl-C or SIGTERM to stop)",
                env!("CARGO_PKG_VERSION"),
                x.listen,
                match &targets {
                    Some(t) if st.pid_mode => t.clone(),
                    Some(t) => format!("every Redis/Valkey server (now: {t})"),
                    None => "every Redis/Valkey server (none running yet)".to_string(),
                }
            );
        }
        Output::View => {
            let i = live::Inputs {
                tracker: &st.tracker,
                roots,
                losses: Losses::default(),
                now_ns: st.start_ns,
            };
            if let Some(live) = &mut st.live {
                live.open_screen(&i)
                    .context("cannot take over the terminal for the live view (try --plain)")?;
            }
        }
        Output::Watch => {
            // A closed stdout is noticed at the first line written after this one.
            let _ = writeln!(
                std::io::stdout(),
                "{}",
                banner(targets.as_deref(), None, attach_ms)
            );
        }
    }
    log::info!("attached in {attach_ms} ms");
    Ok(())
}

/// The summary that ends every run: on stderr when recording (the trace may be on
/// stdout), else on stdout with `watch`'s histograms and diagnoses.
pub fn print_summary(st: &State, end: &End) {
    let text = summary::summary(&st.ends, end);
    match (&st.output, &st.live) {
        (Output::Trace(_) | Output::Serve(_), _) => eprint!("{text}"),
        (Output::Watch | Output::View, live) => {
            let more = live
                .as_ref()
                .map_or(String::new(), |l| l.end_text(&st.ends));
            // Nothing is left to tell if stdout has gone away.
            let _ = write!(std::io::stdout(), "{text}{more}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn banners_name_the_servers_and_the_file() {
        let v = env!("CARGO_PKG_VERSION");
        let one = [(23497, "127.0.0.1:6399".to_string())];
        let t = targets_text(true, &one);
        assert_eq!(t.as_deref(), Some("pid 23497 at 127.0.0.1:6399"));
        assert_eq!(
            banner(t.as_deref(), Some(Path::new("save.jsonl")), 412),
            format!(
                "cowtrace {v}: recording pid 23497 at 127.0.0.1:6399 to save.jsonl (attached in 412 ms; Ctrl-C to stop)"
            )
        );
        assert_eq!(
            banner(t.as_deref(), None, 70),
            format!(
                "cowtrace {v}: watching pid 23497 at 127.0.0.1:6399 (attached in 70 ms; Ctrl-C to stop)"
            )
        );
        // A -p target that listens on nothing is named by its pid once.
        assert_eq!(
            targets_text(true, &[(1, "pid 1".into())]).as_deref(),
            Some("pid 1")
        );
        let two = [
            (1, "db1:6379".to_string()),
            (2, "/run/redis.sock".to_string()),
        ];
        assert_eq!(
            targets_text(false, &two).as_deref(),
            Some("Redis servers pid 1 at db1:6379, pid 2 at /run/redis.sock")
        );
        assert_eq!(
            targets_text(false, &two[..1]).as_deref(),
            Some("Redis server pid 1 at db1:6379")
        );
    }

    #[test]
    fn with_no_server_the_banner_says_it_waits() {
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(targets_text(false, &[]), None);
        assert_eq!(
            banner(None, None, 70),
            format!(
                "cowtrace {v}: no Redis server is running yet; waiting for one to start (attached in 70 ms; Ctrl-C to stop)"
            )
        );
        assert_eq!(
            banner(None, Some(Path::new("-")), 70),
            format!(
                "cowtrace {v}: recording to stdout; no Redis server is running yet; waiting for one to start (attached in 70 ms; Ctrl-C to stop)"
            )
        );
    }
}
