//! `cargo xtask test`: setup, unit tests, the root integration tests, then the kernel
//! matrix (`cargo xtask vmtest`: the ground-truth tests in QEMU guests of Debian's 6.1
//! and 6.12 kernels), then an arm64 guest (`VmtestArgs::for_ci_arm64`: 6.12, the
//! `auto` path, the plan without its two slowest architecture-independent items).
//!
//! The root tests are `#[ignore = "root: ..."]`, so a plain `cargo test` skips them; here
//! they run with `--ignored`, and a root test that did not run must never pass silently:
//! the step fails if nothing passed or if anything was reported as ignored. Among them,
//! `agent/tests/dist.rs` runs `cargo xtask dist` and installs and runs each artifact.
//! The kernel matrix (`xtask vmtest`) runs after them; it fails if a kernel did not boot,
//! or any result of its plan failed or never came.

use crate::{setup, util, vmtest};
use anyhow::{Result, anyhow, bail};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Passed to the test binaries after `--` (e.g. a name filter: `cargo xtask test -- cow`).
    #[arg(last = true)]
    pub test_args: Vec<String>,
    /// Skip the kernel matrix (`cargo xtask vmtest`, ~5 min, and the arm64 guest, ~6 min
    /// with its cross build). CI never passes this.
    #[arg(long)]
    pub no_vmtest: bool,
}

/// Totals of the `test result:` lines of one cargo test run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// How many `test result:` lines were seen (one per test binary / doc-test run).
    pub results: u64,
}

/// Sum every `test result: ok. N passed; M failed; K ignored; ...` line (also `FAILED.`).
pub fn parse_counts(output: &str) -> Counts {
    let mut c = Counts::default();
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        c.results += 1;
        // rest: "ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
        let rest = rest.split_once(". ").map_or(rest, |(_, r)| r);
        for part in rest.split(';') {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => c.passed += n,
                "failed" => c.failed += n,
                "ignored" => c.ignored += n,
                _ => {}
            }
        }
    }
    c
}

pub fn run(args: TestArgs) -> Result<()> {
    setup::run()?;

    let mut passed = 0;
    let mut failed = 0;
    let mut problems: Vec<String> = Vec::new();

    // 1. Unit tests. agent-ebpf is excluded: it only builds for bpfel-unknown-none (agent's
    //    build.rs builds it), not for the host.
    println!("== xtask test: unit tests");
    let mut cmd = util::cargo();
    cmd.args(["test", "--workspace", "--exclude", "agent-ebpf"]);
    if !args.test_args.is_empty() {
        cmd.arg("--").args(&args.test_args);
    }
    match step(&mut cmd) {
        Ok((c, ok)) => {
            passed += c.passed;
            failed += c.failed;
            if !ok {
                problems.push("unit tests: cargo test failed".into());
                failed += u64::from(c.failed == 0);
            }
        }
        Err(e) => {
            problems.push(format!("unit tests: {e:#}"));
            failed += 1;
        }
    }

    // 2. Root integration tests.
    println!("== xtask test: root integration tests");
    match root_step(&args) {
        Ok(c) => {
            passed += c.passed;
            failed += c.failed;
        }
        Err((c, e)) => {
            passed += c.passed;
            failed += c.failed.max(1);
            problems.push(format!("root tests: {e:#}"));
        }
    }

    // 3. The kernel matrix: other kernels, booted under QEMU.
    if args.no_vmtest {
        println!("== xtask test: kernel matrix SKIPPED (--no-vmtest); CI runs it");
    } else {
        println!("== xtask test: kernel matrix (cargo xtask vmtest)");
        let x86 = vmtest::run(vmtest::VmtestArgs::for_ci());
        println!("== xtask test: arm64 guest (cargo xtask vmtest --arch arm64, a subset)");
        let arm = vmtest::run(vmtest::VmtestArgs::for_ci_arm64());
        for (label, result) in [("kernel matrix", x86), ("arm64 guest", arm)] {
            tally(label, result, &mut passed, &mut failed, &mut problems);
        }
    }

    for p in &problems {
        eprintln!("xtask test: FAILED: {p}");
    }
    println!("xtask test: {passed} passed, {failed} failed");
    if problems.is_empty() && failed == 0 {
        Ok(())
    } else {
        std::process::exit(1);
    }
}

/// Count a vmtest run's results; a guest that failed, a result that never came, or no
/// guest at all is a problem (a missing QEMU or kernel is an error here, never a pass).
fn tally(
    label: &str,
    result: Result<Vec<vmtest::KernelRun>>,
    passed: &mut u64,
    failed: &mut u64,
    problems: &mut Vec<String>,
) {
    match result {
        Ok(runs) => {
            for r in &runs {
                let ok = r.results.iter().filter(|(_, p, _)| *p).count() as u64;
                let bad = (r.results.len() as u64 - ok) + r.missing.len() as u64;
                *passed += ok;
                *failed += bad;
                if !r.passed() {
                    *failed += u64::from(bad == 0);
                    problems.push(format!(
                        "{label}: {} ({}): {}",
                        r.release,
                        r.series,
                        r.problem.as_deref().map_or_else(
                            || format!("{bad} result(s) failed or never came"),
                            |p| p.lines().next().unwrap_or("").to_string()
                        )
                    ));
                }
            }
            if runs.is_empty() {
                problems.push(format!("{label}: no kernel was run"));
                *failed += 1;
            }
        }
        Err(e) => {
            problems.push(format!("{label}: {e:#}"));
            *failed += 1;
        }
    }
}

/// Run one cargo test command, streaming and parsing its output.
fn step(cmd: &mut std::process::Command) -> Result<(Counts, bool)> {
    let (status, out) = util::run_tee(cmd)?;
    Ok((parse_counts(&out), status.success()))
}

fn root_step(args: &TestArgs) -> Result<Counts, (Counts, anyhow::Error)> {
    let none = Counts::default();
    if !util::is_root() {
        return Err((
            none,
            anyhow!(
                "root integration tests need root: run as root (e.g. `sudo -E cargo xtask test`)"
            ),
        ));
    }
    let mut cmd = util::cargo();
    cmd.args([
        "test",
        "-p",
        "agent",
        "--tests",
        "--",
        "--ignored",
        "--test-threads=1",
    ]);
    cmd.args(&args.test_args);
    let (c, ok) = step(&mut cmd).map_err(|e| (none, e))?;
    let check = || -> Result<()> {
        if !ok {
            bail!(
                "`cargo test -p agent --tests -- --ignored` failed ({} failed)",
                c.failed
            );
        }
        if c.passed == 0 {
            bail!("no root integration test passed (a root test that does not run must not pass)");
        }
        if c.ignored > 0 {
            bail!(
                "{} root integration test(s) were reported ignored, i.e. did not run",
                c.ignored
            );
        }
        Ok(())
    };
    check().map(|()| c).map_err(|e| (c, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ok_and_failed_lines() {
        let out = "\
running 2 tests
test a ... ok
test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 4 filtered out; finished in 1.2s
   Doc-tests cowtrace
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
test something_named_test result: ok ... ok
";
        assert_eq!(
            parse_counts(out),
            Counts {
                passed: 5,
                failed: 2,
                ignored: 1,
                results: 3
            }
        );
    }

    #[test]
    fn empty_output_has_no_results() {
        assert_eq!(
            parse_counts("error[E0425]: cannot find value"),
            Counts::default()
        );
    }
}
