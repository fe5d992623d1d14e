//! The machine a run was on: CPUs, memory, kernel, commit, load, other tracers.

use std::path::Path;
use std::process::Command;

pub struct Machine {
    pub date: String,
    pub nproc: usize,
    pub mem_bytes: u64,
    pub cpu_model: String,
    pub kernel: String,
    pub commit: String,
    pub bpftrace: String,
    pub load_start: String,
    pub load_end: String,
    /// Other tracers found running at the start (their programs skew every figure).
    pub others: Vec<String>,
    /// Runs, runs that started while a foreign tracer ran, and those tracers.
    pub foreign: (usize, usize, Vec<String>),
}

impl Machine {
    pub fn probe(root: &Path) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let nproc = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let mem_bytes = super::super::procs::parse_status_kb(&read("/proc/meminfo"), "MemTotal")
            .unwrap_or(0)
            * 1024;
        let out = |cmd: &mut Command| {
            crate::util::output(cmd)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let head =
            out(Command::new("git")
                .arg("-C")
                .arg(root)
                .args(["rev-parse", "--short=12", "HEAD"]));
        let dirty = !out(Command::new("git").arg("-C").arg(root).args([
            "status",
            "--porcelain",
            "--untracked-files=no",
        ]))
        .is_empty();
        let commit = match (head.is_empty(), dirty) {
            (true, _) => "unknown (not a git checkout)".to_string(),
            (false, false) => head,
            (false, true) => format!("{head} plus uncommitted changes"),
        };
        let ps = out(Command::new("ps").args(["-eo", "pid,args"]));
        let others = ps
            .lines()
            .filter(|l| is_tracer(l))
            .map(|l| l.trim().to_string())
            .collect();
        Machine {
            date: out(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
            nproc: nproc.max(1),
            mem_bytes,
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            commit,
            bpftrace: out(Command::new("bpftrace").arg("--version")),
            load_start: loadavg(),
            load_end: String::new(),
            others,
            foreign: (0, 0, Vec::new()),
        }
    }
}

/// Whether a `ps -eo pid,args` line is a running cowtrace or bpftrace (not a shell or
/// tmux that merely mentions one).
pub fn is_tracer(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let (Some(_pid), Some(prog)) = (words.next(), words.next()) else {
        return false;
    };
    let name = prog.rsplit('/').next().unwrap_or(prog);
    (name == "cowtrace" || name == "bpftrace")
        && words
            .next()
            .is_some_and(|a| a != "check" && a != "--help" && a != "--version")
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
