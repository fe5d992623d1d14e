//! What the running kernel's version and settings mean for fork COW: the host-wide part
//! of the diagnosis, said once per run. Pure: the facts come from the trace's meta line.
//!
//! Guides written before Linux 5.8 say THP multiplies COW by 512. That was true: a write
//! to a shared anonymous huge page allocated and copied a whole 2 MiB page. Commit
//! 3917c80280c9 ("thp: change CoW semantics for anon-THP", v5.8) made the fault split the
//! huge PMD and copy 4 KiB instead, as file THP already did (mm/huge_memory.c,
//! `do_huge_pmd_wp_page`); the split itself still costs the faulting thread time. Checked
//! on this project's 6.18 host: a THP region written after a fork gave only order-0 copies
//! (`../shared/KERNEL-NOTES.md`).

/// A kernel release's major and minor version, from `uname -r` (`6.18.44-fc-v1147`).
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// The first kernel whose anonymous-THP COW copies 4 KiB, not 2 MiB.
pub const THP_SPLIT_COW: (u32, u32) = (5, 8);

/// Lines about the kernel and its THP and overcommit settings, most important first.
/// `release` is `uname -r`; `thp` the mode in
/// `/sys/kernel/mm/transparent_hugepage/enabled`; `overcommit` `vm.overcommit_memory`.
pub fn kernel_notes(
    release: Option<&str>,
    thp: Option<&str>,
    overcommit: Option<u32>,
) -> Vec<String> {
    let mut out = Vec::new();
    let version = release.and_then(parse_release);
    let name = match (release, version) {
        (_, Some((a, b))) => format!("Linux {a}.{b}"),
        (Some(r), None) => format!("kernel `{r}`"),
        (None, None) => "this kernel (version unknown)".to_string(),
    };
    let splits = version.map(|v| v >= THP_SPLIT_COW);
    match (thp, splits) {
        (Some("always"), Some(true)) => out.push(format!(
            "THP is `always` on {name}: since 5.8 a write to a shared huge page splits it and copies 4 KiB, so THP does not multiply COW by 512 as older guides say; each first write into a huge page still pays the split in fault latency, and RSS moves in jumps. Redis warns about it at start-up: set `madvise` (Redis asks for no huge pages) or `never`, or keep Redis's own `disable-thp yes`."
        )),
        (Some("always"), Some(false)) => out.push(format!(
            "THP is `always` on {name} (before 5.8): a write to a shared huge page copies the whole 2 MiB, so one write can copy 512 pages and COW can reach the whole dataset fast. Set `never` (or `madvise`) before the next save, or keep Redis's own `disable-thp yes`."
        )),
        (Some("always"), None) => out.push(format!(
            "THP is `always` on {name}: before Linux 5.8 a write to a shared huge page copies 2 MiB (512 pages); since 5.8 it copies 4 KiB after a split that still costs latency. Set `madvise` or `never`."
        )),
        (Some("madvise"), Some(false)) => out.push(format!(
            "THP is `madvise` on {name}: only memory that asks for huge pages gets them (Redis does not), so COW copies 4 KiB pages; on this kernel a huge page that is shared would copy 2 MiB."
        )),
        (Some("madvise"), _) => out.push(format!(
            "THP is `madvise` on {name}: only memory that asks for huge pages gets them (Redis does not), and COW copies 4 KiB pages."
        )),
        (Some("never"), _) => out.push(format!(
            "THP is `never` on {name}: COW copies 4 KiB pages."
        )),
        (Some(m), _) => out.push(format!("THP is `{m}` on {name}.")),
        (None, _) => {}
    }
    match overcommit {
        Some(0) => out.push(
            "vm.overcommit_memory = 0 (heuristic): a fork of a server using more than about half of RAM + swap can fail with ENOMEM (Redis logs `Can't save in background: fork: Cannot allocate memory`); Redis recommends 1."
                .into(),
        ),
        Some(2) => out.push(
            "vm.overcommit_memory = 2 (strict): a fork must commit as much memory as the server's private writable memory, so a large server's save fails unless `vm.overcommit_ratio` leaves that much; Redis recommends 1."
                .into(),
        ),
        Some(1) | None => {}
        Some(v) => out.push(format!(
            "vm.overcommit_memory = {v} (unknown value): Redis recommends 1."
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.18.44-fc-v1147"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_release("5.8"), Some((5, 8)));
        assert_eq!(parse_release("4.19.0+"), Some((4, 19)));
        assert_eq!(parse_release(""), None);
        assert_eq!(parse_release("linux"), None);
        assert_eq!(parse_release("6"), None);
        assert_eq!(parse_release("99999999999.1"), None);
    }

    fn one(release: &str, thp: &str) -> String {
        kernel_notes(Some(release), Some(thp), Some(1)).join("\n")
    }

    #[test]
    fn thp_always_by_kernel_version() {
        for r in [
            "5.8.0",
            "5.15.0-91-generic",
            "6.1.0-27-amd64",
            "6.18.44-fc-v1147",
        ] {
            let t = one(r, "always");
            assert!(t.contains("does not multiply COW by 512"), "{r}: {t}");
            assert!(t.contains("fault latency"), "{r}: {t}");
            assert!(!t.contains("copies the whole 2 MiB"), "{r}: {t}");
        }
        for r in [
            "4.19.0-25-amd64",
            "5.4.0-150-generic",
            "5.7.19",
            "3.10.0-1160.el7.x86_64",
        ] {
            let t = one(r, "always");
            assert!(t.contains("copies the whole 2 MiB"), "{r}: {t}");
            assert!(t.contains("(before 5.8)"), "{r}: {t}");
        }
        let t = kernel_notes(Some("weird"), Some("always"), None).join("\n");
        assert!(
            t.contains("kernel `weird`") && t.contains("since 5.8 it copies 4 KiB"),
            "{t}"
        );
        let t = kernel_notes(None, Some("always"), None).join("\n");
        assert!(t.contains("version unknown"), "{t}");
    }

    #[test]
    fn thp_madvise_and_never() {
        assert_eq!(
            one("6.18.44", "never"),
            "THP is `never` on Linux 6.18: COW copies 4 KiB pages."
        );
        let t = one("6.1.0", "madvise");
        assert!(t.contains("Redis does not") && !t.contains("2 MiB"), "{t}");
        let t = one("5.4.0", "madvise");
        assert!(t.contains("would copy 2 MiB"), "{t}");
        assert_eq!(one("6.1", "odd"), "THP is `odd` on Linux 6.1.");
    }

    #[test]
    fn overcommit_modes() {
        let oc = |v| kernel_notes(None, None, Some(v)).join("\n");
        assert_eq!(oc(1), "");
        assert!(oc(0).contains("heuristic") && oc(0).contains("Redis recommends 1"));
        assert!(oc(2).contains("strict") && oc(2).contains("overcommit_ratio"));
        assert!(oc(7).contains("unknown value"));
        assert!(kernel_notes(None, None, None).is_empty());
    }
}
