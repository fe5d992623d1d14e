//! The cause probes and region tables of `agent-ebpf/src/attrib.rs` (issue 15): thin.
//! At a session's fork the agent writes the server's memory map into `REGIONS` and,
//! when none of the server's sessions was running, attaches the cause uprobes to that
//! one server; at the session's end it reads and deletes the session's `ATTRIB`
//! counters, and detaches the probes when the server's last session ends, so they
//! cost nothing outside saves. What to attach and what the ids mean is in
//! `events::attrib` (pure).
use std::{
    collections::{BTreeMap, HashMap},
    num::NonZeroU32,
    path::PathBuf,
};

use agent_common::{
    ATTRIB_CAUSE, ATTRIB_REGION, AttribKey, CAUSE_COMMAND, CAUSE_LOOP, RegionTable, ThreadCause,
};
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

use crate::events::attrib::{self, BACKGROUND, COMMANDS, LOOP, Region};
use crate::kernel::links::{Detaching, Links};
use crate::trace::ledger::{Causes, Regions};

/// (program, symbol, cookie) of every probe, in attach order.
type Plan = Vec<(&'static str, String, u32)>;

/// The cause probes and the per-session attribution state.
pub struct CauseProbes {
    ebpf: Ebpf,
    /// Why the cause probes cannot run on this host (a program failed to load).
    disabled: Option<String>,
    servers: HashMap<u32, Server>,
    sessions: HashMap<u32, Session>,
    /// Probes of servers whose last session ended, being detached on threads: each
    /// uprobe's detach waits for the kernel (tens of ms), which must not hold up the
    /// event loop (the session's end, `serve`'s metrics). Dropping joins them.
    detaching: Vec<Detaching>,
}

struct Server {
    live: u32,
    /// The attached probes; dropping them detaches.
    links: Links,
    note: Option<String>,
}

struct Session {
    root: u32,
    regions: Vec<Region>,
}

const PROGRAMS: [&str; 4] = ["cause_command", "cause_loop", "cause_enter", "cause_leave"];

impl CauseProbes {
    /// Load (not attach) the cause programs of `ebpf`. A refusal only disables causes;
    /// `off` says why they are turned off on purpose.
    pub fn new(mut ebpf: Ebpf, off: Option<&str>) -> Self {
        if let Some(why) = off {
            return Self {
                ebpf,
                disabled: Some(why.to_string()),
                servers: HashMap::new(),
                sessions: HashMap::new(),
                detaching: Vec::new(),
            };
        }
        let mut disabled = None;
        for name in PROGRAMS {
            let r = match ebpf.program_mut(name).map(<&mut UProbe>::try_from) {
                Some(Ok(p)) => p.load().map_err(|e| e.to_string()),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("missing from the BPF object".into()),
            };
            if let Err(e) = r {
                log::warn!("cause probes disabled: program `{name}` failed to load: {e}");
                // The verifier's whole log is in the warning; the trace's note keeps its
                // first line and its verdict (the last line before the statistics).
                let first = e.lines().next().unwrap_or_default();
                let verdict = e
                    .lines()
                    .map(str::trim)
                    .take_while(|l| !l.starts_with("verification time"))
                    .filter(|l| !l.is_empty())
                    .last()
                    .filter(|l| *l != first)
                    .map_or(String::new(), |l| format!(": {l}"));
                disabled = Some(format!(
                    "the uprobe program `{name}` failed to load: {first}{verdict}"
                ));
                break;
            }
        }
        Self {
            ebpf,
            disabled,
            servers: HashMap::new(),
            sessions: HashMap::new(),
            detaching: Vec::new(),
        }
    }

    /// A session of `root` began (child `child`): its region table, and the probes.
    pub fn session_start(&mut self, root: u32, child: u32) {
        let exe = std::fs::read_link(format!("/proc/{root}/exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let thp = crate::procfs::thp_mode().unwrap_or_default();
        let regions = match std::fs::read_to_string(format!("/proc/{root}/maps")) {
            Ok(text) => attrib::region_table(&text, &exe, &thp),
            Err(e) => {
                log::info!("no region table for session {child}: /proc/{root}/maps: {e}");
                Vec::new()
            }
        };
        if !regions.is_empty()
            && let Err(e) = self.write_regions(child, &regions)
        {
            log::warn!("region table of session {child} not written: {e}");
        }
        self.sessions.insert(child, Session { root, regions });
        let server = self.servers.entry(root).or_insert(Server {
            live: 0,
            links: Links::default(),
            note: None,
        });
        server.live += 1;
        if server.live == 1 {
            let (links, note) = attach(&mut self.ebpf, self.disabled.as_deref(), root, &exe);
            let server = self.servers.get_mut(&root).expect("inserted above");
            server.links = links;
            server.note = note;
        }
    }

    fn write_regions(&mut self, child: u32, rows: &[Region]) -> Result<(), String> {
        let map = self.ebpf.map_mut("REGIONS").ok_or("map REGIONS missing")?;
        let mut m: BpfHashMap<&mut MapData, u32, RegionTable> =
            BpfHashMap::try_from(map).map_err(|e| e.to_string())?;
        m.insert(child, attrib::kernel_table(rows), 0)
            .map_err(|e| e.to_string())
    }

    /// The session of `child` ended with `copies` parent copies: its split by cause and
    /// region. Detaches the probes when it was its server's last live session.
    pub fn session_end(&mut self, child: u32, copies: u64) -> Option<(Causes, Regions)> {
        let s = self.sessions.remove(&child)?;
        let (mut causes, mut regions) = (Vec::new(), Vec::new());
        if let Some(map) = self.ebpf.map_mut("ATTRIB")
            && let Ok(mut m) = BpfHashMap::<&mut MapData, AttribKey, u64>::try_from(map)
        {
            let keys: Vec<AttribKey> = m.keys().flatten().filter(|k| k.session == child).collect();
            for k in keys {
                if let Ok(n) = m.get(&k, 0) {
                    match k.kind {
                        ATTRIB_CAUSE => causes.push((k.id, n)),
                        ATTRIB_REGION => regions.push((k.id, n)),
                        _ => {}
                    }
                }
                let _ = m.remove(&k);
            }
        }
        if let Some(map) = self.ebpf.map_mut("REGIONS")
            && let Ok(mut m) = BpfHashMap::<&mut MapData, u32, RegionTable>::try_from(map)
        {
            let _ = m.remove(&child);
        }
        let threads = thread_names(s.root);
        let mut note = self.servers.get(&s.root).and_then(|v| v.note.clone());
        let errors = self.errors();
        if errors > 0 {
            let e = format!("{errors} cause counts lost to a full map (charged to other)");
            note = Some(note.map_or(e.clone(), |n| format!("{n}; {e}")));
        }
        let c = attrib::split_causes(&causes, &threads, copies, note);
        let r = attrib::split_regions(&s.regions, &regions, copies);
        self.release(s.root);
        Some((c, r))
    }

    /// Drop the cause and region counters of `child`, a session of the agent's own
    /// helper (`events::hidden`): it has no probes, table or split.
    pub fn discard(&mut self, child: u32) {
        if let Some(map) = self.ebpf.map_mut("ATTRIB")
            && let Ok(mut m) = BpfHashMap::<&mut MapData, AttribKey, u64>::try_from(map)
        {
            let keys: Vec<AttribKey> = m.keys().flatten().filter(|k| k.session == child).collect();
            for k in keys {
                // Gone already is fine: nothing is left to drop.
                let _ = m.remove(&k);
            }
        }
    }

    /// A fork that turned out to be no session (a daemonizing server's child): drop its
    /// table and counters without a split.
    pub fn forget(&mut self, child: u32) {
        if self.sessions.contains_key(&child) {
            let _ = self.session_end(child, 0);
        }
    }

    /// One live session of `root` fewer: detach at the last.
    fn release(&mut self, root: u32) {
        let Some(server) = self.servers.get_mut(&root) else {
            return;
        };
        server.live = server.live.saturating_sub(1);
        if server.live > 0 {
            return;
        }
        let Some(server) = self.servers.remove(&root) else {
            return;
        };
        self.detaching.retain(|d| !d.is_finished());
        self.detaching.push(server.links.detach_in_background());
        if let Some(map) = self.ebpf.map_mut("THREAD_CAUSE")
            && let Ok(mut m) = BpfHashMap::<&mut MapData, u32, ThreadCause>::try_from(map)
        {
            let stale: Vec<u32> = m
                .iter()
                .flatten()
                .filter(|(_, v)| v.tgid == root)
                .map(|(k, _)| k)
                .collect();
            for k in stale {
                let _ = m.remove(&k);
            }
        }
    }

    /// Failed kernel-side inserts so far (all CPUs).
    fn errors(&mut self) -> u64 {
        let Some(map) = self.ebpf.map_mut("ATTRIB_ERRORS") else {
            return 0;
        };
        PerCpuArray::<&mut MapData, u64>::try_from(map)
            .ok()
            .and_then(|a| a.get(&0, 0).ok())
            .map_or(0, |v| v.iter().sum())
    }
}

/// The names of the threads of `pid`, by tid.
fn thread_names(pid: u32) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        if let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
            && let Ok(c) = std::fs::read_to_string(e.path().join("comm"))
        {
            out.insert(tid, c.trim_end().to_string());
        }
    }
    out
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
/// commands cannot be named.
fn attach(ebpf: &mut Ebpf, disabled: Option<&str>, pid: u32, exe: &str) -> (Links, Option<String>) {
    if let Some(why) = disabled {
        return (Links::default(), Some(format!("no causes: {why}")));
    }
    let Some(pid_nz) = NonZeroU32::new(pid) else {
        return (Links::default(), None);
    };
    let t0 = std::time::Instant::now();
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
            // Owned, so that it can be detached on another thread (`release`).
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
