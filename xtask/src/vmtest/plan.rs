//! What runs in every guest, in one list: the guest runner runs it, and the host knows
//! from it which results must come back (a result that is missing is a failure).

/// One step of the guest's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `cowtrace check` exits 0 and says it can run.
    Check,
    /// `cowtrace record` attaches; its `meta.attach` says which hook each measurement uses.
    Attach,
    /// A root integration test of `agent/tests/<bin>.rs`, run from its compiled binary:
    /// the same ground truth as on the host.
    RootTest {
        bin: &'static str,
        test: &'static str,
    },
    /// `cowbench`: eight fork + rewrite rounds back to back, traced; each round's session
    /// must count exactly its region's pages.
    BackToBack,
    /// `cowbench` traced and untraced, in alternating order: the ratios (under TCG only
    /// ratios mean anything).
    Ratios,
}

pub struct Item {
    pub name: &'static str,
    pub step: Step,
}

const fn test(name: &'static str, bin: &'static str, test: &'static str) -> Item {
    Item {
        name,
        step: Step::RootTest { bin, test },
    }
}

/// The test binaries the guests run (`cargo test --release -p agent --test X`).
pub const TEST_BINS: [&str; 5] = ["cow", "sessions", "writes", "report", "latency"];

pub const PLAN: &[Item] = &[
    Item {
        name: "check",
        step: Step::Check,
    },
    Item {
        name: "attach",
        step: Step::Attach,
    },
    test(
        "cow-live",
        "cow",
        "parent_writes_with_child_alive_are_copies",
    ),
    test(
        "cow-reuse",
        "cow",
        "child_exits_first_gives_reuses_not_copies",
    ),
    test("cow-child-writes", "cow", "child_writes_are_child_copies"),
    test(
        "cow-shared-mapping",
        "cow",
        "shared_file_mapping_writes_are_not_copies",
    ),
    test(
        "cow-thp",
        "cow",
        "transparent_huge_pages_are_split_and_copied_4k",
    ),
    test(
        "cow-two-children",
        "cow",
        "two_children_alive_count_each_copy_once",
    ),
    Item {
        name: "cow-back-to-back",
        step: Step::BackToBack,
    },
    test(
        "main-thread-time",
        "latency",
        "main_thread_cow_time_matches_the_workloads_own_timing",
    ),
    test(
        "fork-session",
        "sessions",
        "fork_of_traced_pid_is_one_session_that_ends",
    ),
    test(
        "fork-killed-child",
        "sessions",
        "sigkilled_child_ends_with_signal_9",
    ),
    test(
        "file-write",
        "writes",
        "child_file_write_bytes_names_fsync_and_disk",
    ),
    test(
        "redis-bgsave",
        "writes",
        "redis_bgsave_writes_equal_the_rdb_file",
    ),
    test(
        "redis-bgrewriteaof",
        "writes",
        "redis_bgrewriteaof_writes_equal_the_new_base_file",
    ),
    test(
        "redis-sync-calls",
        "writes",
        "redis_bgsave_sync_calls_equal_strace",
    ),
    test(
        "record-report",
        "report",
        "record_then_report_gives_the_ledgers_totals",
    ),
    Item {
        name: "ratios",
        step: Step::Ratios,
    },
];

/// Items that cannot run on an architecture yet, and why: the host expects no result
/// for them, the guest runner skips them, and the table shows them as not run with the
/// reason (never as a pass). Keyed by `cross::Arch::name`.
pub const NOT_RUN: &[(&str, &str, &str)] = &[];

/// The items of [`NOT_RUN`] for `arch` among those selected by `only` (all if empty):
/// (item, reason).
pub fn not_run(arch: &str, only: &[String]) -> Vec<(String, String)> {
    NOT_RUN
        .iter()
        .filter(|(a, i, _)| *a == arch && (only.is_empty() || only.iter().any(|o| o == i)))
        .map(|(_, i, why)| (i.to_string(), why.to_string()))
        .collect()
}

/// Whether `item` runs on `arch`.
pub fn runs_on(arch: &str, item: &str) -> bool {
    !NOT_RUN.iter().any(|(a, i, _)| *a == arch && *i == item)
}

/// How cowtrace picks its hooks in a pass over the plan: `auto` lets it probe the
/// kernel, `tracepoint` forces the tracepoint path with [`FORCE_ENV`].
pub const MODES: [&str; 2] = ["auto", "tracepoint"];

/// The environment that forces the tracepoint path in the `tracepoint` mode.
pub const FORCE_ENV: (&str, &str) = ("COWTRACE_HOOKS", "tracepoint");

/// The result name of `item` in `mode`: `auto/cow-live`.
pub fn result_name(mode: &str, item: &str) -> String {
    format!("{mode}/{item}")
}

/// Every result a guest of `arch` running `modes` must print, `boot` first.
pub fn expected(arch: &str, modes: &[String], only: &[String]) -> Vec<String> {
    let mut v = vec!["boot".to_string()];
    for m in modes {
        for i in PLAN {
            if (only.is_empty() || only.iter().any(|o| o == i.name)) && runs_on(arch, i.name) {
                v.push(result_name(m, i.name));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_tests_name_known_binaries() {
        let mut names: Vec<&str> = PLAN.iter().map(|i| i.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PLAN.len());
        for i in PLAN {
            assert!(!i.name.contains([' ', '/']), "{}", i.name);
            if let Step::RootTest { bin, .. } = i.step {
                assert!(TEST_BINS.contains(&bin), "{bin}");
            }
        }
        let e = expected("x86_64", &["auto".into()], &["check".into()]);
        assert_eq!(e, ["boot", "auto/check"]);
        // Every item not run somewhere is in the plan and says why.
        for (arch, item, why) in NOT_RUN {
            assert!(["x86_64", "arm64"].contains(arch), "{arch}");
            assert!(PLAN.iter().any(|i| i.name == *item), "{item}");
            assert!(!why.is_empty());
            assert!(!expected(arch, &["auto".into()], &[]).contains(&format!("auto/{item}")));
            assert!(not_run(arch, &[]).iter().any(|(i, _)| i == item));
        }
        // x86-64 runs the whole plan.
        assert_eq!(
            expected("x86_64", &["auto".into()], &[]).len(),
            PLAN.len() + 1
        );
    }

    #[test]
    fn every_root_test_exists_in_agent_tests() {
        let dir = crate::util::repo_root().join("agent/tests");
        for i in PLAN {
            let Step::RootTest { bin, test } = i.step else {
                continue;
            };
            let src = std::fs::read_to_string(dir.join(format!("{bin}.rs"))).unwrap();
            let at = src
                .find(&format!("fn {test}()"))
                .unwrap_or_else(|| panic!("agent/tests/{bin}.rs has no fn {test}"));
            // A root test: ignored by a plain `cargo test`, run with --ignored.
            let before = &src[..at];
            let attr = before.rfind("#[ignore").unwrap();
            assert!(!before[attr..].contains("fn "), "{test} is not #[ignore]d");
        }
    }
}
