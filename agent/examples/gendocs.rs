//! gendocs: cowtrace's man pages and shell completions, generated from its clap
//! definition (`cowtrace::cli::Cli`), so they never drift from `--help`.
//!
//! ```text
//! gendocs OUT_DIR [--date YYYY-MM-DD]
//! ```
//!
//! Writes `OUT_DIR/man/cowtrace.8` and a page per subcommand (`cowtrace-record.8`, ...;
//! section 8: it needs root), and `OUT_DIR/completions/` for bash (`cowtrace.bash`),
//! zsh (`_cowtrace`) and fish (`cowtrace.fish`). `cargo xtask dist` runs it and passes
//! the date of the commit, so the pages are reproducible.
use std::{io::Write as _, path::Path, process::ExitCode};

use clap::CommandFactory as _;
use clap_complete::Shell;
use clap_mangen::Man;
use cowtrace::cli::Cli;

const USAGE: &str = "usage: gendocs OUT_DIR [--date YYYY-MM-DD]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (out, date) = match args.as_slice() {
        [out] => (out, ""),
        [out, flag, date] if flag == "--date" => (out, date.as_str()),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match generate(Path::new(out), date) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gendocs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path, date: &str) -> std::io::Result<()> {
    let man_dir = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&completions)?;

    // `cowtrace help` needs no page of its own.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let subcommands: Vec<clap::Command> = cmd.get_subcommands().cloned().collect();
    let see_also: Vec<String> = subcommands
        .iter()
        .map(|s| format!("cowtrace-{}", s.get_name()))
        .collect();
    write_page(&man_dir, "cowtrace", cmd.clone(), date, &see_also)?;
    for sub in subcommands {
        let name = format!("cowtrace-{}", sub.get_name());
        write_page(&man_dir, &name, sub, date, &["cowtrace".to_string()])?;
    }

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "cowtrace", &completions)?;
    }
    Ok(())
}

/// One page: clap_mangen's sections, then the command's `after_help` as EXAMPLES (and
/// EXIT STATUS where it has one), SEE ALSO and VERSION.
fn write_page(
    dir: &Path,
    name: &str,
    cmd: clap::Command,
    date: &str,
    see_also: &[String],
) -> std::io::Result<()> {
    let after_help = cmd.get_after_help().map(|s| s.to_string());
    let man = Man::new(cmd.clone().display_name(name))
        .title(name.to_uppercase())
        .section("8")
        .date(date)
        .source(format!("cowtrace {}", cowtrace::build_info::VERSION))
        .manual("System Administration");
    let mut f = std::fs::File::create(dir.join(format!("{name}.8")))?;
    man.render_title(&mut f)?;
    man.render_name_section(&mut f)?;
    man.render_synopsis_section(&mut f)?;
    man.render_description_section(&mut f)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut f)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut f)?;
    }
    if let Some(text) = after_help {
        f.write_all(after_help_roff(&text).as_bytes())?;
    }
    let refs: Vec<String> = see_also.iter().map(|p| format!("\\fB{p}\\fR(8)")).collect();
    writeln!(
        f,
        ".SH \"SEE ALSO\"\n{}, \\fBbpftool\\fR(8)",
        refs.join(", ")
    )?;
    // clap_mangen's VERSION section needs a version on every subcommand.
    writeln!(f, ".SH VERSION\ncowtrace {}", cowtrace::build_info::VERSION)?;
    Ok(())
}

/// `after_help` as sections: a paragraph whose first line is a heading (`Examples:`,
/// `Exit status:`) starts one; indented lines are shown as typed (`.nf`), other text
/// is filled.
fn after_help_roff(text: &str) -> String {
    let mut out = String::new();
    let mut opened = false;
    for para in text.split("\n\n") {
        let mut lines = para.lines().peekable();
        if let Some(first) = lines.peek()
            && let Some(heading) = first.strip_suffix(':')
            && !heading.starts_with(' ')
        {
            out.push_str(&format!(".SH \"{}\"\n", heading.to_uppercase()));
            opened = true;
            lines.next();
        } else if !opened {
            out.push_str(".SH NOTES\n");
            opened = true;
        } else {
            out.push_str(".PP\n");
        }
        let body: Vec<&str> = lines.collect();
        if body.iter().all(|l| l.starts_with("  ")) {
            out.push_str(".nf\n");
            for l in body {
                out.push_str(&escape(l.trim_start()));
                out.push('\n');
            }
            out.push_str(".fi\n");
        } else {
            for l in body {
                out.push_str(&escape(l.trim()));
                out.push('\n');
            }
        }
    }
    out
}

/// roff text: a backslash is `\e`, a minus is `\-` (so `-p` copies as typed), and a
/// line may not start with a control character.
fn escape(line: &str) -> String {
    let s = line.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}
