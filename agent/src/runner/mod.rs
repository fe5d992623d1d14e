//! The event loop: ring buffers through `AsyncFd`, a 100 ms sampling tick, the output
//! interval, keys, signals and the duration timer. `run` is the outline; `state` holds
//! what the loop does with each event, `start` what is said and written once attached,
//! and `options` the settings read from the environment. The rules live in `events`.
mod calibrate;
mod memory;
mod options;
mod start;
mod state;

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

pub use options::{EnvOverrides, OptionError};
use state::{BrokenPipe, State};

use crate::{
    kernel::{
        loader::{self, LoadOptions},
        maps::KernelMaps,
    },
    live::Live,
    procfs,
    trace::{
        TraceWriter,
        schema::{End, StopReason},
    },
};

/// How often the exact counters are sampled (the timeline's resolution).
pub const TICK: Duration = Duration::from_millis(100);

pub enum Output {
    /// Lines for a person on stdout (`watch` when stdout is not a terminal, `--plain`).
    Watch,
    /// The full-screen live view (`watch` on a terminal).
    View,
    /// JSON Lines to a file or stdout.
    Trace(TraceWriter),
    /// Prometheus metrics over HTTP (`serve`), and session traces with `--trace-dir`.
    Serve(Box<crate::serve::Exporter>),
}

pub struct RunConfig {
    /// Empty: every Redis/Valkey server on the host, now and later.
    pub pids: Vec<u32>,
    pub duration: Option<Duration>,
    pub interval: Duration,
    pub output: Output,
    /// Write one line per COW copy, write, sync and block request (`record --events`).
    pub events: bool,
    /// Stamp `watch` lines with the time of day instead of seconds since the start (`-T`).
    pub timestamps: bool,
    /// When a save is flagged as stalled or its fork as slow.
    pub flags: Flags,
    /// Charge parent copies to causes and regions (`--causes`).
    pub causes: bool,
}

/// The thresholds of `--stall` and `--slow-fork`.
#[derive(Debug, Clone, Copy)]
pub struct Flags {
    pub stall: Duration,
    pub slow_fork_ms_per_gib: f64,
}

/// Check every `-p` pid before anything is loaded; returns their tgids.
pub fn resolve_pids(pids: &[u32]) -> Result<Vec<u32>> {
    let me = std::process::id();
    let mut out = Vec::new();
    for &pid in pids {
        let Some(tgid) = procfs::tgid_of(pid) else {
            bail!("no process with pid {pid} (-p {pid}): check the pid with `pgrep redis-server`");
        };
        if tgid == me {
            bail!("-p {pid} is cowtrace itself; cowtrace never traces its own process");
        }
        if !out.contains(&tgid) {
            out.push(tgid);
        }
    }
    Ok(out)
}

/// Register a BPF fd owner (ring buffer, logger) with the event loop.
fn register<T: std::os::fd::AsRawFd>(inner: T) -> Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its fd and keeps it open for as long as the AsyncFd lives.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("cannot poll a BPF ring buffer: {}", e.into_parts().1))
}

/// The stop signals, installed before anything is attached: a signal that arrives while
/// the programs load must still end the run cleanly (probes detached, `end` written).
struct Signals([Signal; 3]);

impl Signals {
    fn install() -> Result<Self> {
        let one = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("installing the {name} handler"))
        };
        Ok(Self([
            one(SignalKind::interrupt(), "SIGINT")?,
            one(SignalKind::terminate(), "SIGTERM")?,
            one(SignalKind::hangup(), "SIGHUP")?,
        ]))
    }

    async fn recv(&mut self) {
        let [a, b, c] = &mut self.0;
        tokio::select! {
            _ = a.recv() => {}
            _ = b.recv() => {}
            _ = c.recv() => {}
        }
    }
}

/// Kernel-side logs (aya-log), shown with RUST_LOG=debug; none if the object has none.
fn kernel_logger(
    ebpf: &mut aya::Ebpf,
) -> Result<Option<AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>> {
    match aya_log::EbpfLogger::init(ebpf) {
        Ok(l) => Ok(Some(register(l)?)),
        Err(e) => {
            log::debug!("kernel logs unavailable: {e}");
            Ok(None)
        }
    }
}

/// A timer that does not try to catch up on ticks missed while the loop was busy.
fn ticker(every: Duration) -> tokio::time::Interval {
    let mut t = interval(every);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// The next key or resize of the full-screen view (never ready without one).
async fn next_key(live: &mut Option<Live>) -> std::io::Result<crossterm::event::Event> {
    match live {
        Some(l) => l.next_event().await,
        None => std::future::pending().await,
    }
}

/// Trace the targets until a stop signal, `-d`, the targets' exit, a closed output or
/// `q`; then end the trace and print the summary. Returns the `end` record.
pub async fn run(cfg: RunConfig) -> Result<End> {
    let mut signals = Signals::install()?;
    // The untraced per-copy cost, off the event loop while the programs load (a few
    // ms); the traced one, which the estimate uses, once they are attached (below).
    calibrate::start_untraced();
    let pid_mode = !cfg.pids.is_empty();
    let pids = resolve_pids(&cfg.pids)?;
    for &pid in &pids {
        if let Some(w) = procfs::comm(pid).and_then(|c| procfs::not_redis_warning(pid, &c)) {
            eprintln!("cowtrace: warning: {w}");
        }
    }
    let causes_on = cfg.causes;
    let t0 = std::time::Instant::now();
    let mut opts = LoadOptions {
        auto_redis: !pid_mode,
        emit_cow: cfg.events,
        attrib: causes_on,
        ..Default::default()
    };
    EnvOverrides::from_env()?.apply(&mut opts);
    let probes = loader::load(&opts)?;
    let (mut ebpf, links, paths, cow) = (probes.ebpf, probes.links, probes.paths, probes.cow);
    let mut logger = kernel_logger(&mut ebpf)?;
    let (mut maps, rings) = KernelMaps::take(&mut ebpf)?;
    let (roots, running) = start::add_roots(&mut maps, &pids, pid_mode)?;
    // A helper traced like a server measures what a traced copy costs; its sessions are
    // the agent's own and never shown (`hide_root`).
    // Not needed where the kernel times the copies itself (the `do_wp_page` methods).
    let timed = cow.method.times_faults();
    calibrate::wait_untraced(Duration::from_secs(1));
    let helper = if timed {
        None
    } else {
        calibrate::start_traced(&mut maps)
    };
    let attach_ms = t0.elapsed().as_millis();
    if helper.is_some() {
        // Before the first event is read: no session ends without the figure.
        calibrate::wait_traced(Duration::from_secs(1));
    }
    let mut st = State::new(
        maps,
        cfg.output,
        cfg.events,
        &roots,
        pid_mode,
        cfg.timestamps,
    );
    // Causes and regions only when asked for (`--causes`): off, no /proc read,
    // map or probe per session. The object stays loaded until the run ends either way.
    let mut idle_ebpf = None;
    if causes_on {
        st.causes = Some(crate::kernel::causes::CauseProbes::new(ebpf));
    } else {
        idle_ebpf = Some(ebpf);
    }
    if let Some(pid) = helper {
        st.hide_root(pid);
    }
    st.set_flags(cfg.flags);
    st.set_timed_faults(timed, cow.method);
    st.adopt_running(running);
    start::announce(&mut st, &roots, cfg.interval, attach_ms, &paths, &cow)?;
    let mut session_fd = register(rings.session)?;
    let mut detail_fd = register(rings.detail)?;
    let mut tick = ticker(TICK);
    let mut out_tick = ticker(cfg.interval);
    out_tick.tick().await; // the first tick is immediate
    let deadline = tokio::time::sleep(cfg.duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);

    let reason = loop {
        let step: Result<Option<StopReason>> = tokio::select! {
            g = session_fd.readable_mut() => {
                let mut g = g?;
                // Events of a session on the detail ring precede its exit: drain both, so
                // the session's histograms are complete when it is closed.
                let r = st.drain(g.get_inner_mut(), detail_fd.get_mut());
                g.clear_ready();
                r.map(|()| None)
            }
            g = detail_fd.readable_mut() => {
                let mut g = g?;
                let r = st.drain(session_fd.get_mut(), g.get_inner_mut());
                g.clear_ready();
                r.map(|()| None)
            }
            g = async { logger.as_mut().unwrap().readable_mut().await }, if logger.is_some() => {
                let mut g = g?;
                g.get_inner_mut().flush();
                g.clear_ready();
                Ok(None)
            }
            // The detail ring is submitted without wakeups: drain it here.
            _ = tick.tick() => st
                .drain(session_fd.get_mut(), detail_fd.get_mut())
                .and_then(|()| st.on_tick()),
            _ = out_tick.tick() => st.on_interval().map(|()| None),
            ev = next_key(&mut st.live) => match ev {
                Ok(ev) => st.on_key(ev),
                Err(e) => Err(anyhow::Error::new(e).context("reading keys from the terminal")),
            },
            _ = signals.recv() => Ok(Some(StopReason::Signal)),
            _ = &mut deadline => Ok(Some(StopReason::Duration)),
        };
        match step {
            Ok(Some(r)) => break r,
            Ok(None) if st.broken_pipe() => break StopReason::OutputClosed,
            Ok(None) => {}
            Err(e) if e.is::<BrokenPipe>() => break StopReason::OutputClosed,
            Err(e) => {
                // Still end the trace properly, then report the error.
                let _ = st.finish(session_fd.get_mut(), detail_fd.get_mut(), StopReason::Error);
                return Err(e);
            }
        }
    };
    // `finish` wrote the `end` line and gave the terminal back: the person sees the
    // summary first, then the programs are detached (the slow part, ~40 ms per classic
    // tracepoint, serialised by the kernel's event_mutex), and the run ends once no
    // program is attached.
    let end = st.finish(session_fd.get_mut(), detail_fd.get_mut(), reason)?;
    if reason != StopReason::OutputClosed {
        start::print_summary(&st, &end);
    }
    drop(links);
    drop(st);
    drop(idle_ebpf);
    Ok(end)
}
