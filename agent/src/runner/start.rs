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
    procfs,
    text::diagnosis::HostFacts,
    trace::schema::{Attach, End, FORMAT_NAME, FORMAT_VERSION, Meta, Record},
};

/// Add the roots to the kernel maps: the `-p` targets, or every Redis server running now
/// (the exec hook, already attached, catches the ones that start later).
pub fn add_roots(maps: &mut KernelMaps, pids: &[u32], pid_mode: bool) -> Result<Vec<u32>> {
    let roots: Vec<u32> = if pid_mode {
        pids.to_vec()
    } else {
        procfs::find_redis(std::path::Path::new("/proc"))
            .iter()
            .map(|p| p.pid)
            .collect()
    };
    for &pid in &roots {
        maps.add_root(pid)?;
    }
    for &pid in pids {
        // A -p target that exited while we were loading must not go unnoticed.
        if procfs::tgid_of(pid).is_none() {
            bail!("process {pid} (-p {pid}) exited before cowtrace attached");
        }
    }
    Ok(roots)
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
        start_unix_ms: Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        ),
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
    if !matches!(st.output, Output::Trace(_)) {
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
    match &mut st.output {
        Output::Trace(w) => {
            w.write(&Record::Meta(Box::new(meta)))?;
            w.flush()?;
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
        (Output::Trace(_), _) => eprint!("{text}"),
        (Output::Watch | Output::View, live) => {
            let more = live
                .as_ref()
                .map_or(String::new(), |l| l.end_text(&st.ends));
            // Nothing is left to tell if stdout has gone away.
            let _ = write!(std::io::stdout(), "{text}{more}");
        }
    }
}
