//! `cowtrace`: the command line. Parses flags, checks privileges, runs the loop.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use cowtrace::{
    kernel::check,
    kernel::privileges,
    runner::{self, Output, RunConfig},
    text::error,
    trace::writer::TraceWriter,
};

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
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// `watch` options, when no subcommand is given.
    #[command(flatten)]
    watch: WatchArgs,
}

#[derive(Subcommand)]
enum Cmd {
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
struct ReportArgs {
    /// Trace written by `cowtrace record` (`-` for standard input).
    #[arg(value_name = "FILE|-")]
    file: PathBuf,
    /// A second trace to compare with the first (A = FILE, B = this): sessions matched
    /// by server and kind, medians side by side with the change and its sign.
    #[arg(value_name = "B")]
    other: Option<PathBuf>,
    /// Print one JSON object (totals, sessions, warnings) instead of text.
    #[arg(long, conflicts_with = "html")]
    json: bool,
    /// Print one self-contained HTML page (charts, tables, diagnosis; no script, no
    /// network) instead of text: `cowtrace report --html save.jsonl > save.html`.
    #[arg(long)]
    html: bool,
    /// Only the sessions of this server, named as the report names it (`host:port`, a
    /// unix socket path, or `pid N`).
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// Only sessions of this kind.
    #[arg(long, value_name = "KIND", value_parser = ["rdb-bgsave", "aof-rewrite", "rdb-replica", "module-fork", "fork"])]
    kind: Option<String>,
    /// Only this session (its number in the trace).
    #[arg(long, value_name = "N")]
    session: Option<u64>,
}

#[derive(Args, Clone)]
struct Targets {
    /// Trace only this process and its fork children (repeatable). Default: every
    /// redis-server and valkey-server on the host, including ones started later.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Stop after this many seconds.
    #[arg(short = 'd', long, value_name = "SECONDS", value_parser = positive_secs)]
    duration: Option<Duration>,
    /// Output interval (samples, flushes, lines and screen refreshes of `watch`), in seconds.
    #[arg(short = 'i', long, value_name = "SECONDS", default_value = "1", value_parser = positive_secs)]
    interval: Duration,
}

#[derive(Args, Clone)]
struct WatchArgs {
    /// Print a line per session and interval instead of the full-screen view (the
    /// default when stdout is not a terminal).
    #[arg(long)]
    plain: bool,
    /// Stamp each line with the time of day (HH:MM:SS) instead of seconds since the start.
    #[arg(short = 'T', long)]
    timestamp: bool,
    #[command(flatten)]
    targets: Targets,
}

const SERVE_EXAMPLES: &str = "\
Examples:
  sudo cowtrace serve                                   # http://127.0.0.1:10690/metrics, every Redis/Valkey server
  sudo cowtrace serve --listen 0.0.0.0:10690            # for a scraper on another host (a DaemonSet)
  sudo cowtrace serve --trace-dir /var/lib/cowtrace --keep 200   # and a trace of every save
  curl -s localhost:10690/metrics | grep cowtrace_save_cow

Metrics (prefix cowtrace_): cow_bytes_total{instance,kind,side}, saves_total{instance,kind,outcome},
save_written_bytes_total, save_disk_bytes_total, save_sync_calls_total, fork_duration_seconds,
save_duration_seconds, save_cow_bytes, save_write_latency_seconds, save_sync_latency_seconds,
save_in_progress, save_current_cow_bytes, save_current_cow_rate_bytes_per_second,
last_save_cow_bytes, last_fork_duration_seconds, memory_limit_bytes, memory_usage_bytes, last_save_peak_memory_ratios,
lost_events_total, decode_errors_total, trace_dir_errors_total, agent_cpu_seconds_total,
agent_resident_memory_bytes, map_entries{map}. SIGTERM or Ctrl-C stops it (exit 0).";

#[derive(Args)]
struct ServeArgs {
    /// Address to serve /metrics and /healthz on (IP:PORT). The default is loopback only.
    #[arg(long, value_name = "ADDR", default_value = cowtrace::serve::http::DEFAULT_LISTEN)]
    listen: String,
    /// Also write every ended session as its own trace (mode 0600) in this directory.
    #[arg(long, value_name = "DIR")]
    trace_dir: Option<PathBuf>,
    /// With --trace-dir: how many session traces to keep (the newest).
    #[arg(long, value_name = "N", default_value = "100", requires = "trace_dir", value_parser = clap::value_parser!(u64).range(1..))]
    keep: u64,
    #[command(flatten)]
    targets: Targets,
}

#[derive(Args)]
struct RecordArgs {
    /// Trace file to write (`-` for stdout). New files are created with mode 0600; an
    /// existing file is refused unless --force is given.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(short = 'f', long)]
    force: bool,
    /// Also write one line per COW copy, write, sync and block request (large; off by
    /// default).
    #[arg(long)]
    events: bool,
    #[command(flatten)]
    targets: Targets,
}

fn positive_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("`{s}` must be a positive number of seconds"));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("`{s}`: {e}"))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        // Offline: no privilege check, nothing loaded into the kernel.
        Some(Cmd::Report(r)) => return report(&r),
        Some(Cmd::Check) => {
            let items = check::run();
            print!("{}", check::render(&items));
            return if check::can_run(&items) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Some(Cmd::Serve(s)) => serve(s),
        Some(Cmd::Record(r)) => run_with(
            r.targets,
            Some(Record {
                path: r.output,
                force: r.force,
                events: r.events,
            }),
            false,
            false,
        ),
        Some(Cmd::Watch(w)) => run_with(w.targets, None, w.plain, w.timestamp),
        None => run_with(
            cli.watch.targets,
            None,
            cli.watch.plain,
            cli.watch.timestamp,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cowtrace: error: {}", error::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn report(args: &ReportArgs) -> ExitCode {
    use cowtrace::report::{self, Format, render::printable};
    let filter = report::fold::Filter {
        instance: args.instance.clone(),
        kind: args.kind.clone(),
        session: args.session,
    };
    let format = match (args.json, args.html) {
        (true, _) => Format::Json,
        (_, true) => Format::Html,
        _ => Format::Text,
    };
    if args.other.as_deref() == Some(std::path::Path::new("-")) && args.file.as_os_str() == "-" {
        eprintln!("cowtrace: error: only one of the two traces can be standard input (-)");
        return ExitCode::FAILURE;
    }
    let read = |path: &std::path::Path| -> Result<report::Report, String> {
        let mut r = report::read_path(path).map_err(|e| e.to_string())?;
        r.retain(&filter)?;
        if format != Format::Text {
            // Warnings are in the JSON and the page; repeat them where a person sees them.
            for w in &r.warnings {
                eprintln!("cowtrace: warning: {}", printable(w));
            }
        }
        Ok(r)
    };
    let reports = match (read(&args.file), args.other.as_deref().map(read)) {
        (Ok(a), None) => (a, None),
        (Ok(a), Some(Ok(b))) => (a, Some(b)),
        (Err(e), _) | (_, Some(Err(e))) => {
            eprintln!("cowtrace: error: {}", printable(&e));
            return ExitCode::FAILURE;
        }
    };
    // `| head` closes stdout early: not an error.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match &reports {
        (a, None) => report::write(a, format, &mut out),
        (a, Some(b)) => report::write_comparison(a, b, format, &mut out),
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("cowtrace: error: cannot write the report: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use cowtrace::serve::{Exporter, http, metrics::Metrics, tracedir::TraceDir};
    if let Err(msg) = privileges::require() {
        anyhow::bail!(msg);
    }
    // Everything that can fail on the user's input fails before anything is attached.
    let listener = http::bind(&args.listen)?;
    let trace_dir = match args.trace_dir {
        Some(dir) => {
            if !dir.is_dir() {
                anyhow::bail!(
                    "--trace-dir {}: not a directory; create it first (mkdir -p {0})",
                    dir.display()
                );
            }
            Some(TraceDir::new(
                dir,
                usize::try_from(args.keep).unwrap_or(usize::MAX),
            ))
        }
        None => None,
    };
    let (metrics, registry) = Metrics::new();
    let mut exporter = Exporter::new(metrics, trace_dir);
    exporter.listen = listener
        .local_addr()
        .map_or(args.listen.clone(), |a| a.to_string());
    http::spawn(listener, registry, exporter.ready.clone())?;
    let cfg = RunConfig {
        pids: args.targets.pids,
        duration: args.targets.duration,
        interval: args.targets.interval,
        output: Output::Serve(Box::new(exporter)),
        events: false,
        timestamps: false,
    };
    run(cfg)
}

/// Run the event loop on this thread until the run ends.
fn run(cfg: RunConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the event loop: {e}"))?;
    rt.block_on(runner::run(cfg))?;
    Ok(())
}

/// What `record` was asked for.
struct Record {
    path: PathBuf,
    force: bool,
    events: bool,
}

fn run_with(
    t: Targets,
    record: Option<Record>,
    plain: bool,
    timestamps: bool,
) -> anyhow::Result<()> {
    if let Err(msg) = privileges::require() {
        anyhow::bail!(msg);
    }
    // Open the output before anything is attached, so a bad path fails first.
    let (output, events) = match record {
        Some(r) => (
            Output::Trace(TraceWriter::open(&r.path, r.force)?),
            r.events,
        ),
        // The full-screen view needs a terminal; lines suit pipes, files and `--plain`.
        None if plain || !std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            (Output::Watch, false)
        }
        None => (Output::View, false),
    };
    let cfg = RunConfig {
        pids: t.pids,
        duration: t.duration,
        interval: t.interval,
        output,
        events,
        timestamps,
    };
    run(cfg)
}
