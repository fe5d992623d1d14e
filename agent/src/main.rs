//! `cowtrace`: the command line. Parses flags (`cli`), checks privileges, runs the loop.
use std::{path::PathBuf, process::ExitCode};

use clap::Parser as _;
use cowtrace::{
    cli::{self, Cli, Cmd, ReportArgs, ServeArgs, Targets},
    kernel::check,
    kernel::privileges,
    runner::{self, Flags, Output, RunConfig},
    text::error,
    trace::writer::TraceWriter,
};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if cli.version {
        print!("{}", cli::long_version());
        return ExitCode::SUCCESS;
    }
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
        flags: Flags {
            stall: args.targets.stall,
            slow_fork_ms_per_gib: args.targets.slow_fork,
        },
        causes: args.targets.causes,
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
        flags: Flags {
            stall: t.stall,
            slow_fork_ms_per_gib: t.slow_fork,
        },
        causes: t.causes,
        output,
        events,
        timestamps,
    };
    run(cfg)
}
