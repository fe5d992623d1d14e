//! Attaching and detaching the cause uprobes (`--causes`), on a thread of their own.
//!
//! A perf-based uprobe's detach waits for the kernel under its `event_mutex` (about
//! 80 ms per probe on 6.18: 5.7 s for a server's 72), and an attach waits for that same
//! mutex. Done on the event loop, a save that started while the previous save's probes
//! were being detached blocked the loop for seconds: sessions and SIGINT went unseen
//! (the demo's `watch` had to be killed). So the event loop only says which servers
//! want probes (`want`); this worker attaches and detaches, and keeps a server's probes
//! for `LINGER` after its last session, so that back-to-back saves (BGSAVE, then the
//! AOF rewrite) do not pay a detach and an attach in between. When the worker is busy,
//! a session's probes come late: `status` tells when they were attached, and the
//! session's note says so.
use std::{
    collections::HashMap,
    num::NonZeroU32,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        mpsc::{self, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use agent_common::{CAUSE_COMMAND, CAUSE_LOOP, ThreadCause};
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, Map, MapData},
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

use crate::events::attrib::{self, BACKGROUND, COMMANDS, LOOP};
use crate::kernel::links::Links;

/// How long a server's probes stay attached after its last session ended.
pub const LINGER: Duration = Duration::from_secs(3);

/// (program, symbol, cookie) of every probe, in attach order.
type Plan = Vec<(&'static str, String, u32)>;

/// What the worker has done for one server, as the event loop reads it.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Since when its probes are attached (`None`: not attached).
    pub attached_since: Option<Instant>,
    /// Why commands cannot be named, or what failed to attach.
    pub note: Option<String>,
}

enum Cmd {
    /// Server `pid` (binary `exe`) has a live session (`true`) or none (`false`).
    Want { pid: u32, exe: String, on: bool },
}

/// The handle the event loop keeps; dropping it detaches every probe and waits.
pub struct Attacher {
    tx: Option<mpsc::Sender<Cmd>>,
    status: Arc<Mutex<HashMap<u32, Status>>>,
    worker: Option<JoinHandle<()>>,
}

impl Attacher {
    /// Start the worker with `ebpf`'s loaded (not attached) cause programs.
    pub fn start(ebpf: Ebpf) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(Mutex::new(HashMap::new()));
        let shared = Arc::clone(&status);
        let worker = std::thread::Builder::new()
            .name("cowtrace-causes".into())
            .spawn(move || Worker::new(ebpf, shared).run(&rx))?;
        Ok(Self {
            tx: Some(tx),
            status,
            worker: Some(worker),
        })
    }

    /// Server `pid` has a live session (`on`) or just ended its last one.
    pub fn want(&self, pid: u32, exe: &str, on: bool) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Cmd::Want {
                pid,
                exe: exe.to_string(),
                on,
            });
        }
    }

    /// The worker's latest word on server `pid`.
    pub fn status(&self, pid: u32) -> Status {
        self.status
            .lock()
            .map(|s| s.get(&pid).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Attacher {
    /// Every probe is detached before the agent goes on: none may outlive its run.
    fn drop(&mut self) {
        drop(self.tx.take()); // the worker sees the channel close and detaches
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

struct Server {
    exe: String,
    want: bool,
    /// When `want` last turned off.
    off_since: Instant,
    links: Option<Links>,
}

struct Worker {
    ebpf: Ebpf,
    /// Each thread's current cause, as the probes set it (`None`: missing from the
    /// object, then nothing is cleared).
    thread_cause: Option<Map>,
    status: Arc<Mutex<HashMap<u32, Status>>>,
    servers: HashMap<u32, Server>,
}

impl Worker {
    fn new(mut ebpf: Ebpf, status: Arc<Mutex<HashMap<u32, Status>>>) -> Self {
        Self {
            thread_cause: ebpf.take_map("THREAD_CAUSE"),
            ebpf,
            status,
            servers: HashMap::new(),
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<Cmd>) {
        loop {
            let wait = self.next_detach().map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(Instant::now())
            });
            match rx.recv_timeout(wait) {
                Ok(cmd) => self.apply(cmd),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Everything asked so far first: a session that ended and one that began
            // since the last round cancel out.
            while let Ok(cmd) = rx.try_recv() {
                self.apply(cmd);
            }
            self.reconcile(Instant::now());
        }
        let attached: usize = self
            .servers
            .values()
            .filter_map(|s| s.links.as_ref())
            .map(Links::len)
            .sum();
        if attached > 0 {
            // Seconds on kernels where each uprobe's detach waits for the kernel: say why.
            eprintln!(
                "cowtrace: detaching {attached} cause probes (--causes); the kernel may take \
                 ~80 ms for each"
            );
        }
        for s in self.servers.values_mut() {
            drop(s.links.take());
        }
    }

    fn apply(&mut self, cmd: Cmd) {
        let Cmd::Want { pid, exe, on } = cmd;
        let s = self.servers.entry(pid).or_insert_with(|| Server {
            exe: exe.clone(),
            want: false,
            off_since: Instant::now(),
            links: None,
        });
        if on {
            s.exe = exe;
        } else if s.want {
            s.off_since = Instant::now();
        }
        s.want = on;
    }

    /// When the next lingering server's probes are due to be detached.
    fn next_detach(&self) -> Option<Instant> {
        self.servers
            .values()
            .filter(|s| !s.want && s.links.is_some())
            .map(|s| s.off_since + LINGER)
            .min()
    }

    fn reconcile(&mut self, now: Instant) {
        let pids: Vec<u32> = self.servers.keys().copied().collect();
        for pid in pids {
            let Some(s) = self.servers.get_mut(&pid) else {
                continue;
            };
            match (s.want, s.links.is_some()) {
                (true, false) => {
                    let exe = s.exe.clone();
                    let (links, note) = attach(&mut self.ebpf, pid, &exe);
                    let since = (!links.is_empty()).then(Instant::now);
                    if let Some(s) = self.servers.get_mut(&pid) {
                        s.links = Some(links);
                    }
                    self.publish(pid, since, note);
                }
                (false, true) if now >= s.off_since + LINGER => {
                    if let Ok(mut st) = self.status.lock() {
                        st.remove(&pid);
                    }
                    drop(s.links.take());
                    self.servers.remove(&pid);
                    self.forget_threads(pid);
                }
                // Asked for and let go before the worker came to it: nothing to keep.
                (false, false) => {
                    self.servers.remove(&pid);
                }
                _ => {}
            }
        }
    }

    /// Forget the current cause of `pid`'s threads once its probes are gone, so that a
    /// stale one is never charged for copies made before they are back.
    fn forget_threads(&mut self, pid: u32) {
        let Some(map) = self.thread_cause.as_mut() else {
            return;
        };
        let Ok(mut m) = BpfHashMap::<&mut MapData, u32, ThreadCause>::try_from(map) else {
            return;
        };
        let stale: Vec<u32> = m
            .iter()
            .flatten()
            .filter(|(_, v)| v.tgid == pid)
            .map(|(k, _)| k)
            .collect();
        for k in stale {
            let _ = m.remove(&k);
        }
    }

    fn publish(&self, pid: u32, since: Option<Instant>, note: Option<String>) {
        if let Ok(mut st) = self.status.lock() {
            st.insert(
                pid,
                Status {
                    attached_since: since,
                    note,
                },
            );
        }
    }
}

/// What to attach for each symbol the binary exports.
fn plan() -> Plan {
    let mut p: Plan = COMMANDS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                "cause_command",
                attrib::command_symbol(c),
                CAUSE_COMMAND + i as u32,
            )
        })
        .collect();
    p.push(("cause_loop", LOOP.to_string(), CAUSE_LOOP));
    for (sym, cause) in BACKGROUND {
        p.push(("cause_enter", sym.to_string(), cause));
        p.push(("cause_leave", sym.to_string(), cause));
    }
    p
}

/// The file offsets of the symbols `wanted` in the ELF file `path` (`.symtab` and
/// `.dynsym`).
fn symbol_offsets(path: &str, wanted: &[&str]) -> Result<HashMap<String, u64>, String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
    let file = object::File::parse(&*data).map_err(|e| format!("parsing {path}: {e}"))?;
    let mut out = HashMap::new();
    for sym in file.dynamic_symbols().chain(file.symbols()) {
        let Ok(name) = sym.name() else { continue };
        if !wanted.contains(&name) || out.contains_key(name) {
            continue;
        }
        let Some(section) = sym
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
        else {
            continue;
        };
        let Some((offset, _)) = section.file_range() else {
            continue;
        };
        if let Ok(UProbeAttachLocation::AbsoluteOffset(o)) =
            UProbeAttachLocation::from_virtual_address(sym.address(), section.address(), offset)
        {
            out.insert(name.to_string(), o);
        }
    }
    Ok(out)
}

/// Attach the cause probes to server `pid` (binary `exe`): the links, and a note when
/// commands cannot be named or a probe failed.
fn attach(ebpf: &mut Ebpf, pid: u32, exe: &str) -> (Links, Option<String>) {
    let Some(pid_nz) = NonZeroU32::new(pid) else {
        return (Links::default(), None);
    };
    let t0 = Instant::now();
    let plan = plan();
    let wanted: Vec<&str> = plan.iter().map(|p| p.1.as_str()).collect();
    let offsets = match symbol_offsets(exe, &wanted) {
        Ok(o) => o,
        Err(e) => {
            return (
                Links::default(),
                Some(format!("commands cannot be named: {e}")),
            );
        }
    };
    let commands = plan
        .iter()
        .filter(|p| p.0 == "cause_command" && offsets.contains_key(&p.1))
        .count();
    let mut links = Links::default();
    let mut failed = None;
    for (prog, sym, cookie) in &plan {
        let Some(&off) = offsets.get(sym) else {
            continue;
        };
        let Some(Ok(p)) = ebpf.program_mut(prog).map(<&mut UProbe>::try_from) else {
            continue;
        };
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(off),
            cookie: Some(u64::from(*cookie)),
        };
        match p.attach(point, PathBuf::from(exe), UProbeScope::OneProcess(pid_nz)) {
            // Owned, so that the worker decides when it is detached.
            Ok(id) => match p.take_link(id) {
                Ok(link) => links.push(link),
                Err(e) => {
                    failed.get_or_insert_with(|| format!("keeping {prog} on {sym}: {e}"));
                }
            },
            Err(e) => {
                failed.get_or_insert_with(|| format!("attaching {prog} to {sym} of {exe}: {e}"));
            }
        }
    }
    log::info!(
        "cause probes: {} attached to pid {pid} ({exe}) in {} ms",
        links.len(),
        t0.elapsed().as_millis()
    );
    let note = if commands == 0 {
        Some(format!(
            "commands cannot be named: {exe} exports none of the command functions \
             (stripped of .dynsym, or built without -rdynamic); copies go to other"
        ))
    } else {
        failed
    };
    (links, note)
}

/// The note of a session that began at `started`, from its server's `status` at its
/// end: `None` when the probes were already attached (kept from a save just before).
/// A save's first copies come fast (hundreds of MiB/s right after the fork), so even the
/// attach's own tens of milliseconds show in `other`: the note says how long it took.
pub fn late_note(started: Instant, status: &Status) -> Option<String> {
    match status.attached_since {
        Some(at) if at <= started => None,
        Some(at) => Some(format!(
            "the cause probes were attached {} ms after the fork: copies before that are in other",
            at.duration_since(started).as_millis()
        )),
        None if status.note.is_some() => None,
        None => Some(
            "the cause probes were not attached during this session (the agent was still \
             detaching a previous save's): its copies are in other"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_whose_probes_were_there_has_no_note() {
        let t = Instant::now();
        // Probes already attached (kept from the previous save).
        let s = Status {
            attached_since: Some(t - Duration::from_secs(2)),
            note: None,
        };
        assert_eq!(late_note(t, &s), None);
    }

    #[test]
    fn late_or_missing_probes_are_said() {
        let t = Instant::now();
        let s = Status {
            attached_since: Some(t + Duration::from_millis(1800)),
            note: None,
        };
        let n = late_note(t, &s).unwrap();
        assert!(n.contains("1800 ms after the fork"), "{n}");
        let n = late_note(t, &Status::default()).unwrap();
        assert!(n.contains("not attached during this session"), "{n}");
        // A server without symbols already has its own note.
        let s = Status {
            attached_since: None,
            note: Some("commands cannot be named".into()),
        };
        assert_eq!(late_note(t, &s), None);
    }

    #[test]
    fn the_plan_probes_every_command_and_background_job() {
        let p = plan();
        assert_eq!(
            p.iter().filter(|x| x.0 == "cause_command").count(),
            COMMANDS.len()
        );
        assert_eq!(p.iter().filter(|x| x.0 == "cause_loop").count(), 1);
        assert_eq!(
            p.iter().filter(|x| x.0 == "cause_enter").count(),
            BACKGROUND.len()
        );
    }
}
