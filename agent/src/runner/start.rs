//! What happens once the programs are attached, and at the very end: the roots are
//! added, the trace's `meta` line or the `watch` banner is written, the live view is
//! set up; and the summary is printed.
use std::{io::Write as _, time::Duration};

use anyhow::{Context as _, Result, bail};

use super::{Output, state::State};
use crate::{
    kernel::{
        loader::{COW_HOOKS, COW_METHOD, DISK_HOOKS, WRITE_HOOKS},
        maps::KernelMaps,
    },
    live::{self, Live, screen::model::Losses, summary},
    procfs::{self, children},
    text::diagnosis::HostFacts,
    trace::schema::{Attach, End, FORMAT_NAME, FORMAT_VERSION, Meta, MidSave, Record},
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

fn meta(roots: &[u32], pid_mode: bool, start_ns: u64, interval: Duration) -> Meta {
    Meta {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        cowtrace_version: env!("CARGO_PKG_VERSION").into(),
        host: procfs::hostname(),
        kernel: procfs::kernel_release(),
        attach: Attach {
            method: COW_METHOD.into(),
            fork: "tp_btf/sched_process_fork".into(),
            exit: "tp_btf/sched_process_exit".into(),
            fork_latency: "tracepoint/syscalls/sys_{enter,exit}_{clone,clone3,fork,vfork}".into(),
            cow: COW_HOOKS.into(),
            writes: WRITE_HOOKS.into(),
            disk: DISK_HOOKS.into(),
            fentry: "not used by this version; `cowtrace check` probes it".into(),
            kprobe: "not used by this version; `cowtrace check` probes it".into(),
        },
        targets: if pid_mode { "pids" } else { "auto" }.into(),
        pids: roots.to_vec(),
        start_unix_ms: Some(procfs::unix_ms()),
        start_ts_ns: Some(start_ns),
        interval_ms: Some(interval.as_millis() as u64),
        page_size: Some(procfs::page_size()),
        thp: procfs::thp_mode(),
        overcommit_memory: procfs::overcommit_memory(),
    }
}

fn pid_list(roots: &[u32]) -> String {
    roots
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Say that cowtrace is attached: the trace's `meta` line, or `watch`'s first line or
/// its screen.
pub fn announce(st: &mut State, roots: &[u32], interval: Duration, attach_ms: u128) -> Result<()> {
    let meta = meta(roots, st.pid_mode, st.start_ns, interval);
    if matches!(st.output, Output::Watch | Output::View) {
        let host = HostFacts {
            thp: meta.thp.clone(),
            overcommit_memory: meta.overcommit_memory,
        };
        let interval_ns = interval.as_nanos().min(u64::MAX as u128) as u64;
        let pids = if st.pid_mode {
            roots.to_vec()
        } else {
            Vec::new()
        };
        st.live = Some(Live::new(pids, st.start_ns, interval_ns, host));
    }
    if let Output::Serve(_) = st.output {
        let names: Vec<String> = roots.iter().map(|&r| st.instance(r)).collect();
        if let Output::Serve(x) = &mut st.output {
            for n in &names {
                x.on_server(n);
            }
        }
    }
    match &mut st.output {
        Output::Trace(w) => {
            w.write(&Record::Meta(Box::new(meta)))?;
            w.flush()?;
        }
        Output::Serve(x) => {
            x.attached(meta);
            eprintln!(
                "cowtrace {}: serving metrics on http://{}/metrics for {} (attached in {attach_ms} ms; Ctrl-C or SIGTERM to stop)",
                env!("CARGO_PKG_VERSION"),
                x.listen,
                if st.pid_mode {
                    format!("pid {}", pid_list(roots))
                } else {
                    "every Redis/Valkey server".to_string()
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
            let who = if st.pid_mode {
                format!("pid {}", pid_list(roots))
            } else if roots.is_empty() {
                "no Redis server running yet; waiting for one to start".to_string()
            } else {
                format!("Redis server(s) {}", pid_list(roots))
            };
            // A closed stdout is noticed at the first line written after this one.
            let _ = writeln!(
                std::io::stdout(),
                "cowtrace {}: watching {who} (attached in {attach_ms} ms; Ctrl-C to stop)",
                env!("CARGO_PKG_VERSION")
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
