//! The cause probes and region tables of `agent-ebpf/src/attrib.rs` (issue 15): thin.
//! At a session's fork the agent writes the server's memory map into `REGIONS` and
//! asks for the cause uprobes on that one server; at the session's end it reads and
//! deletes the session's `ATTRIB` counters, and says the server wants no probes once its
//! last session ended. The attaching and detaching run on their own thread
//! (`cause_attach`), which keeps a server's probes for a few seconds after its last
//! save. What to attach and what the ids mean is in `events::attrib` (pure).
use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use agent_common::{ATTRIB_CAUSE, ATTRIB_REGION, AttribKey, RegionTable};
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray},
    programs::UProbe,
};

use crate::events::attrib::{self, Region};
use crate::kernel::cause_attach::{self, Attacher};
use crate::trace::ledger::{Causes, Regions};

/// The cause probes and the per-session attribution state.
pub struct CauseProbes {
    /// `REGIONS`, `ATTRIB` and `ATTRIB_ERRORS`, taken from the object (the worker has
    /// `THREAD_CAUSE`).
    maps: HashMap<&'static str, Map>,
    /// The worker that attaches the probes; `None` when they cannot run here.
    attacher: Option<Attacher>,
    /// Why the cause probes cannot run on this host (a program failed to load).
    disabled: Option<String>,
    /// Live sessions per server.
    live: HashMap<u32, u32>,
    sessions: HashMap<u32, Session>,
}

struct Session {
    root: u32,
    exe: String,
    started: Instant,
    regions: Vec<Region>,
}

const PROGRAMS: [&str; 4] = ["cause_command", "cause_loop", "cause_enter", "cause_leave"];
const MAPS: [&str; 3] = ["REGIONS", "ATTRIB", "ATTRIB_ERRORS"];

impl CauseProbes {
    /// Load (not attach) the cause programs of `ebpf`, and start the worker that will
    /// attach them. A refusal only disables causes.
    pub fn new(mut ebpf: Ebpf) -> Self {
        let mut maps = HashMap::new();
        for name in MAPS {
            if let Some(m) = ebpf.take_map(name) {
                maps.insert(name, m);
            }
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
        let attacher = match disabled {
            Some(_) => None,
            None => match Attacher::start(ebpf) {
                Ok(a) => Some(a),
                Err(e) => {
                    disabled = Some(format!(
                        "could not start the thread that attaches them: {e}"
                    ));
                    None
                }
            },
        };
        Self {
            maps,
            attacher,
            disabled,
            live: HashMap::new(),
            sessions: HashMap::new(),
        }
    }

    fn map(&mut self, name: &str) -> Option<&mut Map> {
        self.maps.get_mut(name)
    }

    /// A session of `root` began (child `child`): its region table, and the probes.
    pub fn session_start(&mut self, root: u32, child: u32) {
        let started = Instant::now();
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
        let live = self.live.entry(root).or_insert(0);
        *live += 1;
        if *live == 1
            && let Some(a) = &self.attacher
        {
            a.want(root, &exe, true);
        }
        self.sessions.insert(
            child,
            Session {
                root,
                exe,
                started,
                regions,
            },
        );
    }

    fn write_regions(&mut self, child: u32, rows: &[Region]) -> Result<(), String> {
        let map = self.map("REGIONS").ok_or("map REGIONS missing")?;
        let mut m: BpfHashMap<&mut MapData, u32, RegionTable> =
            BpfHashMap::try_from(map).map_err(|e| e.to_string())?;
        m.insert(child, attrib::kernel_table(rows), 0)
            .map_err(|e| e.to_string())
    }

    /// The session of `child` ended with `copies` parent copies: its split by cause and
    /// region. Says the server wants no probes when it was its last live session.
    pub fn session_end(&mut self, child: u32, copies: u64) -> Option<(Causes, Regions)> {
        let s = self.sessions.remove(&child)?;
        let (mut causes, mut regions) = (Vec::new(), Vec::new());
        if let Some(map) = self.map("ATTRIB")
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
        if let Some(map) = self.map("REGIONS")
            && let Ok(mut m) = BpfHashMap::<&mut MapData, u32, RegionTable>::try_from(map)
        {
            let _ = m.remove(&child);
        }
        let threads = thread_names(s.root);
        let mut notes = Vec::new();
        match (&self.disabled, &self.attacher) {
            (Some(why), _) => notes.push(format!("no causes: {why}")),
            (None, Some(a)) => {
                let st = a.status(s.root);
                notes.extend(st.note.clone());
                notes.extend(cause_attach::late_note(s.started, &st));
            }
            (None, None) => {}
        }
        let errors = self.errors();
        if errors > 0 {
            notes.push(format!(
                "{errors} cause counts lost to a full map (charged to other)"
            ));
        }
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        let c = attrib::split_causes(&causes, &threads, copies, note);
        let r = attrib::split_regions(&s.regions, &regions, copies);
        self.release(s.root, &s.exe);
        Some((c, r))
    }

    /// Drop the cause and region counters of `child`, a session of the agent's own
    /// helper (`events::hidden`): it has no probes, table or split.
    pub fn discard(&mut self, child: u32) {
        if let Some(map) = self.map("ATTRIB")
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

    /// One live session of `root` fewer: at the last, the probes may go (after the
    /// worker's linger).
    fn release(&mut self, root: u32, exe: &str) {
        let Some(live) = self.live.get_mut(&root) else {
            return;
        };
        *live = live.saturating_sub(1);
        if *live > 0 {
            return;
        }
        self.live.remove(&root);
        if let Some(a) = &self.attacher {
            a.want(root, exe, false);
        }
    }

    /// Failed kernel-side inserts so far (all CPUs).
    fn errors(&mut self) -> u64 {
        let Some(map) = self.map("ATTRIB_ERRORS") else {
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
