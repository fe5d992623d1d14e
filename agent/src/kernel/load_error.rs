//! What goes wrong when loading and attaching the kernel programs, in words that say
//! what happened and what to do: the kernel's refusal in one line, the verifier's
//! verdict, the hint to run as root.
use aya::programs::ProgramError;
use thiserror::Error;

use crate::{kernel::btf::BtfError, procfs};

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(
        "tracefs is not mounted at /sys/kernel/tracing and mounting it failed ({0}); \
         mount it with `mount -t tracefs nodev /sys/kernel/tracing`"
    )]
    Tracefs(std::io::Error),
    #[error("cannot load the BPF object: {0}{hint}", hint = perm_hint(.0.as_ref()))]
    Load(#[source] Box<aya::EbpfError>),
    #[error("program `{name}` ({hook}) failed to {step} on kernel {kernel}: {}{hint}", shorten_verifier_log(&source.to_string()), hint = perm_hint(source.as_ref()))]
    Program {
        name: String,
        hook: String,
        step: &'static str,
        /// `uname -r`: a verifier's verdict depends on the kernel.
        kernel: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("{0}")]
    Cow(String),
    #[error("map `{0}` missing from the BPF object (build mismatch: rebuild cowtrace)")]
    MissingMap(&'static str),
    #[error("map `{name}`: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
}

pub(crate) fn perm_hint(e: &dyn std::error::Error) -> &'static str {
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if s.contains("Operation not permitted") || s.contains("EPERM") || s.contains("os error 1)")
        {
            return "; run cowtrace as root (or with CAP_BPF + CAP_PERFMON)";
        }
        cur = err.source();
    }
    ""
}

/// A kernel's refusal in one line: the error, and when the verifier rejected the
/// program, the last line of its log (its verdict), which says why.
pub(crate) fn brief(msg: &str) -> String {
    let (head, log) = msg.split_once("Verifier output:").unwrap_or((msg, ""));
    let head = head
        .lines()
        .next()
        .unwrap_or("")
        .trim_end()
        .trim_end_matches('.');
    let verdict = log
        .lines()
        .map(str::trim)
        // The statistics it ends with say nothing about why.
        .rfind(|l| {
            !l.is_empty()
                && !["processed ", "verification time", "stack depth"]
                    .iter()
                    .any(|p| l.starts_with(p))
        });
    match verdict {
        Some(v) => format!("{head}; the verifier said: {v}"),
        None => head.to_string(),
    }
}

/// Keep a verifier log readable in an error message: its first line and its last 12.
pub fn shorten_verifier_log(msg: &str) -> String {
    let lines: Vec<&str> = msg.lines().collect();
    if lines.len() <= 16 {
        return msg.to_string();
    }
    let mut out = lines[0].to_string();
    out.push_str(&format!(
        "\n  ... ({} verifier lines omitted; RUST_LOG=debug shows them all)\n",
        lines.len() - 13
    ));
    out.push_str(&lines[lines.len() - 12..].join("\n"));
    out
}

pub(crate) fn prog_err(
    name: &str,
    hook: &str,
    step: &'static str,
    source: ProgramError,
) -> LoadError {
    if let ProgramError::LoadError { verifier_log, .. } = &source {
        log::debug!("verifier log of {name}:\n{verifier_log}");
    }
    LoadError::Program {
        name: name.to_string(),
        hook: hook.to_string(),
        step,
        kernel: procfs::kernel_release(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_in_one_line_with_the_verifiers_verdict() {
        let eperm = "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1). Verifier output: ";
        assert_eq!(
            brief(eperm),
            "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1)"
        );
        let rejected = "the BPF_PROG_LOAD syscall returned Permission denied (os error 13). Verifier output: 0: R1=ctx() R10=fp0\n\
            ; let ret: i64 = ctx.arg(ret_arg);\n\
            12: (79) r3 = *(u64 *)(r2 +0)\n\
            dereference of modified ctx ptr R2 off=32 disallowed\n\
            processed 12 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 1\n\
            stack depth 16+144+0\n";
        assert_eq!(
            brief(rejected),
            "the BPF_PROG_LOAD syscall returned Permission denied (os error 13); the verifier said: dereference of modified ctx ptr R2 off=32 disallowed"
        );
    }
}
