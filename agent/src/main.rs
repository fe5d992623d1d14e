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
  sudo cowtrace check                    # what this host allows
  cowtrace report save.jsonl             # retell a recorded trace (no root needed)";

const REPORT_EXAMPLES: &str = "\
Examples:
  cowtrace report save.jsonl                      # header, sessions, diagnosis, histograms, timelines
  cowtrace report --json save.jsonl | jq .totals  # one JSON object: totals, sessions, warnings
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
    /// Print one JSON object (totals, sessions, warnings) instead of text.
    #[arg(long)]
    json: bool,
    /// Only the sessions of this server, named as the report names it (`host:port`, a
    /// unix socket path, or `pid N`).
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// Only sessions of this kind.
    #[arg(long, value_name = "KIND", value_parser = ["rdb-bgsave", "aof-rewrite", "rdb-replica", "fork"])]
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
    let filter = cowtrace::report::fold::Filter {
        instance: args.instance.clone(),
        kind: args.kind.clone(),
        session: args.session,
    };
    match cowtrace::report::read_path(&args.file) {
        Ok(mut r) => {
            if let Err(msg) = r.retain(&filter) {
                eprintln!(
                    "cowtrace: error: {}",
                    cowtrace::report::render::printable(&msg)
                );
                return ExitCode::FAILURE;
            }
            if args.json {
                // Warnings are in the JSON; repeat them where a person sees them.
                for w in &r.warnings {
                    eprintln!(
                        "cowtrace: warning: {}",
                        cowtrace::report::render::printable(w)
                    );
                }
            }
            // `| head` closes stdout early: not an error.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match cowtrace::report::write(&r, args.json, &mut out) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("cowtrace: error: cannot write the report: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!(
                "cowtrace: error: {}",
                cowtrace::report::render::printable(&error::chain_of(&e))
            );
            ExitCode::FAILURE
        }
    }
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the event loop: {e}"))?;
    rt.block_on(runner::run(cfg))?;
    Ok(())
}
