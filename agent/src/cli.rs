//! The command line's definition (clap), shared by the binary (`main.rs`) and the
//! generator of the man pages and shell completions (`agent/examples/gendocs.rs`,
//! run by `cargo xtask dist`), which need `Cli::command()`.
use std::{fmt::Write as _, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{build_info, kernel::features, procfs};

const EXAMPLES: &str = "\
Examples:
  sudo cowtrace                          # live view of every Redis/Valkey server (q quits)
  sudo cowtrace watch -p 1234 -d 60      # watch one server for a minute
  sudo cowtrace watch --plain > w.log    # a line per save and interval, then histograms
  sudo cowtrace record -o save.jsonl     # record sessions to JSON Lines until Ctrl-C
  sudo cowtrace record -f -o save.jsonl  # the same, replacing save.jsonl if it exists
  sudo cowtrace record -o - -d 30 | jq . # stream a 30 s trace to stdout
  sudo cowtrace serve                    # Prometheus metrics on http://127.0.0.1:10690/metrics
  sudo cowtrace check                    # what this host allows
  cowtrace report save.jsonl             # retell a recorded trace (no root needed)";

const LONG_ABOUT: &str = "\
Attribute Redis fork (BGSAVE, AOF rewrite) copy-on-write memory to the fork that caused it.

When Redis or Valkey saves with BGSAVE or rewrites its AOF, it forks; every shared page the \
parent then writes is copied. cowtrace is an eBPF agent that makes each fork of a traced \
server a session (rdb-bgsave, aof-rewrite, rdb-replica or fork) with its exact COW page \
copies (parent and child), its file writes, fsyncs and block I/O. `watch` shows them live, \
`record` writes them to a JSON Lines trace, `serve` exports Prometheus metrics, `report` \
retells a trace offline and `check` says what this host allows.

It needs root (or CAP_BPF + CAP_PERFMON) and a kernel with BTF (/sys/kernel/btf/vmlinux); \
the static binary needs nothing else. `report` needs neither.";

const REPORT_EXAMPLES: &str = "\
Examples:
  cowtrace report save.jsonl                      # header, sessions, diagnosis, histograms, timelines
  cowtrace report --json save.jsonl | jq .totals  # one JSON object: totals, sessions, warnings
  cowtrace report --html save.jsonl > save.html   # one page with charts, for a postmortem
  cowtrace report before.jsonl after.jsonl        # did it help? medians side by side, with the change
  cowtrace report --instance db1:6379 save.jsonl  # one server's sessions (as named in the report)
  cowtrace report --kind aof-rewrite --session 3 save.jsonl
  zcat save.jsonl.gz | cowtrace report -          # read standard input
  ssh db1 cat /var/tmp/save.jsonl | cowtrace report -   # a trace from another host

Exit status: 0 when a report was printed (warnings about a cut or damaged trace are part of
it), 1 when the input is not a cowtrace trace or cannot be read, or when no session
matches --instance/--kind/--session.";

#[derive(Parser)]
#[command(
    name = "cowtrace",
    version,
    about = "Attribute Redis fork (BGSAVE, AOF rewrite) copy-on-write memory to the fork that caused it",
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    // `--version` is ours: it says more than clap's (see `long_version`).
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version, the git commit, the build date, the embedded BPF object's
    /// hash and the kernel features cowtrace can use here, then exit.
    #[arg(short = 'V', long, exclusive = true)]
    pub version: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    /// `watch` options, when no subcommand is given.
    #[command(flatten)]
    pub watch: WatchArgs,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Show what each fork (save) does to memory and disk, live: a full-screen view on a
    /// terminal, lines otherwise (the default command).
    #[command(after_help = EXAMPLES)]
    Watch(WatchArgs),
    /// Record fork sessions to a JSON Lines trace.
    #[command(after_help = EXAMPLES)]
    Record(RecordArgs),
    /// Run as an agent for Prometheus: /metrics and /healthz over HTTP, every ended
    /// session kept as a trace with --trace-dir.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Say what this host allows (privileges, BTF, attach types, THP, Redis) and exit
    /// non-zero when cowtrace cannot run.
    Check,
    /// Retell a recorded trace offline: sessions, files, diagnosis, histograms and
    /// timelines (no root needed).
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
}

#[derive(Args)]
pub struct ReportArgs {
    /// Trace written by `cowtrace record` (`-` for standard input).
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// A second trace to compare with the first (A = FILE, B = this): sessions matched
    /// by server and kind, medians side by side with the change and its sign.
    #[arg(value_name = "B")]
    pub other: Option<PathBuf>,
    /// Print one JSON object (totals, sessions, warnings) instead of text.
    #[arg(long, conflicts_with = "html")]
    pub json: bool,
    /// Print one self-contained HTML page (charts, tables, diagnosis; no script, no
    /// network) instead of text: `cowtrace report --html save.jsonl > save.html`.
    #[arg(long)]
    pub html: bool,
    /// Only the sessions of this server, named as the report names it (`host:port`, a
    /// unix socket path, or `pid N`).
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// Only sessions of this kind.
    #[arg(long, value_name = "KIND", value_parser = ["rdb-bgsave", "aof-rewrite", "rdb-replica", "module-fork", "fork"])]
    pub kind: Option<String>,
    /// Only this session (its number in the trace).
    #[arg(long, value_name = "N")]
    pub session: Option<u64>,
}

#[derive(Args, Clone)]
pub struct Targets {
    /// Trace only this process and its fork children (repeatable). Default: every
    /// redis-server and valkey-server on the host, including ones started later.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Stop after this many seconds.
    #[arg(short = 'd', long, value_name = "SECONDS", value_parser = positive_secs)]
    pub duration: Option<Duration>,
    /// Output interval (samples, flushes, lines and screen refreshes of `watch`), in seconds.
    #[arg(short = 'i', long, value_name = "SECONDS", default_value = "1", value_parser = positive_secs)]
    pub interval: Duration,
    /// Flag a save child that has written nothing (to a file, pipe or socket) for this
    /// many seconds as stalled, with its state from /proc.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = positive_secs)]
    pub stall: Duration,
    /// Flag a fork that blocked its server longer than this many ms per GiB of RSS as
    /// slow (a server under 1 GiB counts as 1 GiB).
    #[arg(long, value_name = "MS", default_value = "10", value_parser = positive_ms)]
    pub slow_fork: f64,
    /// Charge each parent copy of a save to its cause (the command, expiry, eviction,
    /// defrag, rehash, the cron, the event loop, another thread, other) and to the
    /// memory region it hit. Uprobes on the server's exported functions, attached only
    /// while its saves run; they cost the server ~1.3x CPU per command during a save
    /// here, and detaching them takes ~80 ms each (bench/RESULTS.md), so it is off
    /// unless asked for.
    #[arg(long)]
    pub causes: bool,
}

#[derive(Args, Clone)]
pub struct WatchArgs {
    /// Print a line per session and interval instead of the full-screen view (the
    /// default when stdout is not a terminal).
    #[arg(long)]
    pub plain: bool,
    /// Stamp each line with the time of day (HH:MM:SS) instead of seconds since the start.
    #[arg(short = 'T', long)]
    pub timestamp: bool,
    #[command(flatten)]
    pub targets: Targets,
}

const SERVE_EXAMPLES: &str = "\
Examples:
  sudo cowtrace serve                                   # http://127.0.0.1:10690/metrics, every Redis/Valkey server
  sudo cowtrace serve --listen 0.0.0.0:10690            # for a scraper on another host (a DaemonSet)
  sudo cowtrace serve --trace-dir /var/lib/cowtrace --keep 200   # and a trace of every save
  curl -s localhost:10690/metrics | grep cowtrace_save_cow

Metrics (prefix cowtrace_): cow_bytes_total{server,kind,side}, saves_total{server,kind,outcome},
save_parent_cow_by_cause_bytes_total{server,kind,cause} (with --causes),
save_written_bytes_total, save_disk_bytes_total, save_sync_calls_total, fork_duration_seconds,
save_duration_seconds, save_cow_bytes, save_write_latency_seconds, save_sync_latency_seconds,
save_in_progress, save_current_cow_bytes, save_current_cow_rate_bytes_per_second,
last_save_cow_bytes, last_fork_duration_seconds, save_projected_peak_memory_ratios,
save_projected_time_left_seconds, memory_limit_bytes, memory_usage_bytes, last_save_peak_memory_ratios,
lost_events_total, decode_errors_total, trace_dir_errors_total, agent_cpu_seconds_total,
agent_resident_memory_bytes, map_entries{map}. SIGTERM or Ctrl-C stops it (exit 0).";

#[derive(Args)]
pub struct ServeArgs {
    /// Address to serve /metrics and /healthz on (IP:PORT). The default is loopback only.
    #[arg(long, value_name = "ADDR", default_value = crate::serve::http::DEFAULT_LISTEN)]
    pub listen: String,
    /// Also write every ended session as its own trace (mode 0600) in this directory.
    #[arg(long, value_name = "DIR")]
    pub trace_dir: Option<PathBuf>,
    /// With --trace-dir: how many session traces to keep (the newest).
    #[arg(long, value_name = "N", default_value = "100", requires = "trace_dir", value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
    #[command(flatten)]
    pub targets: Targets,
}

#[derive(Args)]
pub struct RecordArgs {
    /// Trace file to write (`-` for stdout). New files are created with mode 0600; an
    /// existing file is refused unless --force is given.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Also write one line per COW copy, write, sync and block request (large; off by
    /// default).
    #[arg(long)]
    pub events: bool,
    #[command(flatten)]
    pub targets: Targets,
}

pub fn positive_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("`{s}` must be a positive number of seconds"));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("`{s}`: {e}"))
}

pub fn positive_ms(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` must be a positive number of milliseconds")),
    }
}

/// What `cowtrace --version` prints: the build, then the kernel features this host
/// offers. Fast (a few ms) and fine without root: what would need a BPF program load
/// says so.
pub fn long_version() -> String {
    let mut s = format!("cowtrace {}\n", build_info::VERSION);
    let mut line = |k: &str, v: &str| {
        let _ = writeln!(s, "{k:<12}{v}");
    };
    line("commit", build_info::COMMIT);
    line("built", &build_info::date());
    line(
        "target",
        &format!(
            "{}{}",
            build_info::TARGET,
            if build_info::STATIC { " (static)" } else { "" }
        ),
    );
    line(
        "bpf object",
        &format!(
            "sha256 {} (embedded)",
            build_info::short(build_info::BPF_OBJECT_SHA256)
        ),
    );
    line(
        "kernel",
        &format!("{} {}", procfs::kernel_release(), std::env::consts::ARCH),
    );
    for f in features::probe_current() {
        line(&format!("  {}", f.name), &f.detail);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_is_a_flag_of_its_own() {
        let cli = Cli::try_parse_from(["cowtrace", "--version"]).unwrap();
        assert!(cli.version && cli.cmd.is_none());
        assert!(Cli::try_parse_from(["cowtrace", "-V"]).unwrap().version);
        // Alone only.
        assert!(Cli::try_parse_from(["cowtrace", "--version", "-p", "1"]).is_err());
        assert!(Cli::try_parse_from(["cowtrace", "report", "--version", "x"]).is_err());
    }

    #[test]
    fn long_version_names_the_build_and_the_kernel_features() {
        let v = long_version();
        for want in [
            "cowtrace ",
            "commit ",
            "built ",
            "target ",
            "bpf object  sha256 ",
            "kernel ",
            "  BTF ",
            "  fentry ",
            "  kprobe ",
            "  uprobe ",
        ] {
            assert!(v.contains(want), "{want:?} missing from\n{v}");
        }
        assert!(v.contains(build_info::short(build_info::BPF_OBJECT_SHA256)));
    }
}
