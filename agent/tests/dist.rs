//! Root tests of the release artifacts: `cargo xtask dist` runs once (a musl release
//! build: about 30 s when only the agent changed, 3 to 4 minutes from nothing; and as
//! much again for the arm64 one), then
//! each artifact is installed or run the way a user would:
//! - the tarball's static binary has no dynamic dependency and, from an empty
//!   directory with an empty environment, runs `check` and records a fork exactly;
//!   without BTF it refuses to run, naming it: BTF is all it needs from the host;
//! - the arm64 tarball has the same files, its binary a static AArch64 executable
//!   (it cannot run here: `cargo xtask vmtest --arch arm64` runs it in arm64 guests);
//! - the .deb installs into a fresh root (`dpkg --root`, so this machine's package
//!   database is never touched), where `man` finds its pages and bash completes, and
//!   `dpkg -r` removes every file it installed;
//! - the container image holds the binary alone and runs `check` under podman.
//!
//! A missing tool (podman, dpkg-deb, man, file) fails the test, never skips it.
mod common;
use common::*;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Dist {
    dir: PathBuf,
    commit: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `cargo xtask dist`, once per test binary.
fn dist() -> &'static Dist {
    static DIST: OnceLock<Dist> = OnceLock::new();
    DIST.get_or_init(|| {
        let root = repo_root();
        let t0 = Instant::now();
        let st = Command::new(env!("CARGO"))
            .args(["xtask", "dist"])
            .current_dir(&root)
            .status()
            .expect("run `cargo xtask dist`");
        assert!(st.success(), "`cargo xtask dist` failed: {st}");
        eprintln!("cargo xtask dist took {:.1}s", t0.elapsed().as_secs_f64());
        let commit = run_ok(
            Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(["rev-parse", "HEAD"]),
        );
        Dist {
            dir: root.join("target").join("dist"),
            commit: commit.trim().to_string(),
        }
    })
}

/// Run, require exit 0, return stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (is it installed? `cargo xtask setup`)")
    })
}

/// The tarball, unpacked in a fresh directory: its `cowtrace-VERSION-x86_64-linux/`.
fn unpacked(tmp: &TempDir) -> PathBuf {
    unpacked_arch(tmp, "x86_64")
}

/// The tarball of `arch` (`uname -m`), unpacked: its `cowtrace-VERSION-ARCH-linux/`.
fn unpacked_arch(tmp: &TempDir, arch: &str) -> PathBuf {
    let d = dist();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(
                d.dir
                    .join(format!("cowtrace-{VERSION}-{arch}-linux.tar.gz")),
            )
            .arg("-C")
            .arg(tmp.path()),
    );
    tmp.path().join(format!("cowtrace-{VERSION}-{arch}-linux"))
}

/// Every file under `top`, as `./path`, sorted.
fn files_in(top: &Path) -> Vec<String> {
    let mut files: Vec<String> = run_ok(
        Command::new("find")
            .arg(".")
            .args(["-type", "f"])
            .current_dir(top),
    )
    .lines()
    .map(str::to_string)
    .collect();
    files.sort();
    files
}

/// `bin ARGS` with an empty environment, in `dir`.
fn bare(bin: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear().current_dir(dir);
    cmd
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn artifacts_and_their_checksums() {
    require_root();
    let d = dist();
    let sums = std::fs::read_to_string(d.dir.join("SHA256SUMS")).unwrap();
    let mut names: Vec<&str> = sums
        .lines()
        .map(|l| l.split_once("  ").expect("`HASH  NAME` lines").1)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            format!("cowtrace-{VERSION}-aarch64-linux.tar.gz"),
            format!("cowtrace-{VERSION}-image.tar"),
            format!("cowtrace-{VERSION}-x86_64-linux.tar.gz"),
            format!("cowtrace_{VERSION}_amd64.deb"),
        ]
    );
    let checked = run_ok(
        Command::new("sha256sum")
            .arg("-c")
            .arg("SHA256SUMS")
            .current_dir(&d.dir),
    );
    assert_eq!(checked.matches(": OK").count(), 4, "{checked}");

    let tmp = TempDir::new("dist-tar");
    let top = unpacked(&tmp);
    let files = files_in(&top);
    let mut want: Vec<&str> = vec![
        "./README.md",
        "./completions/_cowtrace",
        "./completions/cowtrace.bash",
        "./completions/cowtrace.fish",
        "./cowtrace",
        "./man/cowtrace-check.8",
        "./man/cowtrace-record.8",
        "./man/cowtrace-report.8",
        "./man/cowtrace-serve.8",
        "./man/cowtrace-watch.8",
        "./man/cowtrace.8",
    ];
    if repo_root().join("deploy/systemd/cowtrace.service").exists() {
        want.push("./cowtrace.service");
    }
    want.sort_unstable();
    assert_eq!(files, want);
    // The pages render, and the main one leads to the others.
    let page = run_ok(
        Command::new("man")
            .env("MANWIDTH", "100")
            .args(["-P", "cat", "-l"])
            .arg(top.join("man/cowtrace.8")),
    );
    for want in ["SYNOPSIS", "EXAMPLES", "cowtrace-record(8)", "--version"] {
        assert!(page.contains(want), "{want:?} not in the man page:\n{page}");
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn arm64_tarball_has_the_same_files_and_a_static_aarch64_binary() {
    require_root();
    let (x, a) = (TempDir::new("dist-x86"), TempDir::new("dist-arm64"));
    let (x86, arm) = (unpacked_arch(&x, "x86_64"), unpacked_arch(&a, "aarch64"));
    assert_eq!(files_in(&arm), files_in(&x86));
    let file = run_ok(Command::new("file").arg("-b").arg(arm.join("cowtrace")));
    assert!(file.contains("ARM aarch64"), "file says: {file}");
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "file says: {file}"
    );
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn static_binary_has_no_dynamic_dependency() {
    require_root();
    let tmp = TempDir::new("dist-static");
    let bin = unpacked(&tmp).join("cowtrace");
    let file = run_ok(Command::new("file").arg("-b").arg(&bin));
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "file says: {file}"
    );
    // ldd exits 1 for "not a dynamic executable"; both answers mean no shared library.
    let ldd = output(Command::new("ldd").arg(&bin));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "ldd says: {said}"
    );
    assert!(!said.contains(".so"), "ldd lists a library: {said}");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn static_binary_checks_and_records_a_fork_with_an_empty_environment() {
    require_root();
    let d = dist();
    let tmp = TempDir::new("dist-run");
    let bin = unpacked(&tmp).join("cowtrace");
    let empty = TempDir::new("dist-empty");

    // --version: the build, fast, in an empty environment.
    let mut times = Vec::new();
    let mut version = String::new();
    for _ in 0..5 {
        let t = Instant::now();
        version = run_ok(bare(&bin, empty.path()).arg("--version"));
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!("{version}--version: median {:?}", times[2]);
    assert!(
        times[2] < Duration::from_millis(100),
        "--version took {:?}",
        times[2]
    );
    assert!(
        version.starts_with(&format!("cowtrace {VERSION}\n")),
        "{version}"
    );
    let field = |k: &str| -> String {
        version
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k:?} line in\n{version}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("commit"), d.commit);
    assert_eq!(field("target"), "x86_64-unknown-linux-musl (static)");
    let hash12 = field("bpf object")
        .strip_prefix("sha256 ")
        .and_then(|s| s.strip_suffix(" (embedded)"))
        .unwrap()
        .to_string();
    assert_eq!(hash12.len(), 12);
    let built = field("built");
    assert!(version.contains("  BTF       yes"), "{version}");

    // check: every required hook loads and attaches, and uprobes probe the binary itself.
    let check = output(bare(&bin, empty.path()).arg("check"));
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "check failed: {said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(said.contains("cowtrace can run on this host"), "{said}");
    assert!(said.contains("uprobe       ok"), "{said}");

    // BTF is what it needs from the host: without it, it says so and exits 1.
    let no_btf = output(
        bare(&bin, empty.path())
            .env("COWTRACE_BTF", "/nonexistent/vmlinux")
            .arg("check"),
    );
    assert_eq!(no_btf.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&no_btf.stdout).contains("/nonexistent/vmlinux"),
        "{}",
        String::from_utf8_lossy(&no_btf.stdout)
    );

    // record: a fork whose parent writes 2000 pages, counted exactly, into a relative path.
    let w = Workload::spawn(&["--mode", "parent-writes", "--mib", "16", "--pages", "2000"]);
    let mut rec = bare(&bin, empty.path())
        .args(["record", "-o", "trace.jsonl", "-p", &w.pid.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the static cowtrace");
    let trace_path = empty.path().join("trace.jsonl");
    wait_attached(&trace_path, &mut rec);
    let result = w.go();
    let status = wait_timeout(&mut rec, Duration::from_secs(60));
    assert!(status.success(), "record exited with {status}");
    let t = Trace::read(&trace_path);
    let e = t.end_of_child(u(&result["children"][0]));
    let parent = u(&e["cow"]["parent_pages"]);
    assert!(
        (2000..=2048).contains(&parent),
        "parent copies {parent}, want 2000..=2048"
    );
    let build = &t.lines[0]["build"];
    assert_eq!(build["commit"], d.commit.as_str());
    assert_eq!(build["date"], built.as_str());
    let sha = build["bpf_object_sha256"].as_str().unwrap();
    assert!(
        sha.len() == 64 && sha.starts_with(&hash12),
        "{sha} vs {hash12}"
    );
    // It wrote its trace and nothing else.
    let left: Vec<_> = std::fs::read_dir(empty.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["trace.jsonl"]);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn deb_installs_into_a_fresh_root_and_removes_cleanly() {
    require_root();
    let d = dist();
    let deb = d.dir.join(format!("cowtrace_{VERSION}_amd64.deb"));
    let info = run_ok(Command::new("dpkg-deb").arg("--field").arg(&deb));
    for want in [
        "Package: cowtrace",
        &format!("Version: {VERSION}"),
        "Architecture: amd64",
    ] {
        assert!(info.contains(want), "{want:?} not in\n{info}");
    }
    assert!(
        !info.contains("Depends:"),
        "a static binary depends on nothing:\n{info}"
    );

    // A fresh root with an empty package database: this machine's is never touched.
    let tmp = TempDir::new("dist-deb");
    let root = tmp.path();
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = || {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", root.display()));
        c
    };
    run_ok(dpkg().arg("-i").arg(&deb));
    let status = run_ok(
        Command::new("dpkg-query")
            .arg(format!("--root={}", root.display()))
            .args(["-W", "-f=${Status}", "cowtrace"]),
    );
    assert_eq!(status, "install ok installed");

    let installed: Vec<String> = run_ok(Command::new("dpkg-deb").arg("--contents").arg(&deb))
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .unwrap()
                .trim_start_matches("./")
                .to_string()
        })
        .collect();
    for want in [
        "usr/sbin/cowtrace",
        "usr/share/man/man8/cowtrace.8.gz",
        "usr/share/man/man8/cowtrace-record.8.gz",
        "usr/share/bash-completion/completions/cowtrace",
        "usr/share/zsh/vendor-completions/_cowtrace",
        "usr/share/fish/vendor_completions.d/cowtrace.fish",
    ] {
        assert!(
            installed.iter().any(|f| f == want),
            "{want} not in the .deb: {installed:?}"
        );
    }
    if repo_root().join("deploy/systemd/cowtrace.service").exists() {
        assert!(
            installed
                .iter()
                .any(|f| f == "usr/lib/systemd/system/cowtrace.service")
        );
    }
    for f in &installed {
        assert!(root.join(f).is_file(), "{f} not installed");
    }
    // Installed, not enabled: no maintainer script, no symlink in a .wants directory.
    assert!(!root.join("etc/systemd").exists());
    for script in ["postinst", "prerm", "postrm", "preinst"] {
        assert!(
            !root
                .join(format!("var/lib/dpkg/info/cowtrace.{script}"))
                .exists()
        );
    }

    // man finds the pages in section 8.
    let man_dir = root.join("usr/share/man");
    let found = run_ok(
        Command::new("man")
            .arg("-M")
            .arg(&man_dir)
            .args(["-w", "cowtrace"]),
    );
    assert_eq!(
        found.trim(),
        man_dir.join("man8/cowtrace.8.gz").to_string_lossy()
    );
    let page = run_ok(
        Command::new("man")
            .env("MANWIDTH", "100")
            .arg("-M")
            .arg(&man_dir)
            .args(["-P", "cat", "8", "cowtrace-record"]),
    );
    assert!(page.contains("--output"), "{page}");

    // bash completes subcommands and flags with the installed script.
    let script = root.join("usr/share/bash-completion/completions/cowtrace");
    let completed = run_ok(Command::new("bash").arg("-c").arg(format!(
        "source {}; complete -p cowtrace; \
         COMP_WORDS=(cowtrace rec); COMP_CWORD=1; _cowtrace cowtrace rec cowtrace; echo \"[${{COMPREPLY[*]}}]\"; \
         COMP_WORDS=(cowtrace record --ev); COMP_CWORD=2; _cowtrace cowtrace --ev record; echo \"[${{COMPREPLY[*]}}]\"",
        script.display()
    )));
    assert!(completed.contains("-F _cowtrace cowtrace"), "{completed}");
    assert!(
        completed.contains("[record]") && completed.contains("[--events]"),
        "{completed}"
    );
    let zsh =
        std::fs::read_to_string(root.join("usr/share/zsh/vendor-completions/_cowtrace")).unwrap();
    assert!(zsh.starts_with("#compdef cowtrace"), "{zsh}");
    let fish =
        std::fs::read_to_string(root.join("usr/share/fish/vendor_completions.d/cowtrace.fish"))
            .unwrap();
    assert!(fish.contains("complete -c cowtrace"), "{fish}");

    let v = run_ok(Command::new(root.join("usr/sbin/cowtrace")).arg("--version"));
    assert!(v.starts_with(&format!("cowtrace {VERSION}\n")), "{v}");

    // dpkg -r removes every file it installed, and the directories it made.
    run_ok(dpkg().args(["-r", "cowtrace"]));
    for f in &installed {
        assert!(!root.join(f).exists(), "{f} left after dpkg -r");
    }
    assert!(
        !root.join("usr").exists(),
        "dpkg -r left directories under usr/"
    );
    let gone = output(
        Command::new("dpkg-query")
            .arg(format!("--root={}", root.display()))
            .args(["-W", "-f=${Status}", "cowtrace"]),
    );
    let gone = String::from_utf8_lossy(&gone.stdout);
    assert!(gone.is_empty() || gone.contains("not-installed"), "{gone}");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn container_image_is_the_binary_alone_and_runs_check() {
    require_root();
    let d = dist();
    let archive = d.dir.join(format!("cowtrace-{VERSION}-image.tar"));
    let tag = format!("localhost/cowtrace:{VERSION}");

    // Every file in the image's layers (named by the archive's manifest.json): the
    // binary, nothing else.
    let manifest = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(&archive)
            .arg("manifest.json"),
    );
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], tag.as_str(), "{manifest}");
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert!(!layers.is_empty(), "no layer in {manifest}");
    let mut files = Vec::new();
    for layer in layers {
        let listing = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -xOf '{}' '{}' | tar -tvf -",
                archive.display(),
                layer.as_str().unwrap()
            ))
            .output()
            .unwrap();
        assert!(listing.status.success(), "{listing:?}");
        for l in String::from_utf8_lossy(&listing.stdout).lines() {
            if !l.starts_with('d') {
                files.push(l.rsplit(' ').next().unwrap().to_string());
            }
        }
    }
    assert_eq!(files, ["usr/sbin/cowtrace"]);

    // Load the archive itself (not the image `podman build` left behind), then run it as
    // deploy/kubernetes/cowtrace.yaml does: the eBPF capabilities, BTF and tracefs from
    // the host. podman's default seccomp profile allows bpf(2) and perf_event_open(2)
    // only with CAP_SYS_ADMIN, hence `seccomp=unconfined` (Kubernetes' default).
    let podman = || {
        let mut c = Command::new("podman");
        c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
        c
    };
    run_ok(podman().args(["rmi", "--ignore", &tag]));
    let loaded = run_ok(podman().arg("load").arg("-i").arg(&archive));
    assert!(loaded.contains(&tag), "{loaded}");
    let entrypoint = run_ok(podman().args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        &tag,
    ]));
    assert_eq!(entrypoint.trim(), r#"["/usr/sbin/cowtrace"]"#);
    let run = |args: &[&str]| {
        output(
            podman()
                .args(["run", "--rm", "--network", "none"])
                .args([
                    "--ulimit",
                    "nofile=1024:1024",
                    "--ulimit",
                    "nproc=1024:1024",
                ])
                .args(["--security-opt", "seccomp=unconfined"])
                .args([
                    "--cap-add",
                    "BPF,PERFMON,SYS_RESOURCE,SYS_PTRACE,DAC_READ_SEARCH",
                ])
                .args(["-v", "/sys/kernel/btf:/sys/kernel/btf:ro"])
                .args(["-v", "/sys/kernel/tracing:/sys/kernel/tracing:ro"])
                .arg(&tag)
                .args(args),
        )
    };
    let check = run(&["check"]);
    let said = String::from_utf8_lossy(&check.stdout).into_owned();
    let version = run(&["--version"]);
    // Leave podman's storage as it was before dist.
    run_ok(podman().args(["rmi", "--ignore", &tag]));
    assert!(
        check.status.success() && said.contains("cowtrace can run on this host"),
        "check in the container failed ({}): {said}{}",
        check.status,
        String::from_utf8_lossy(&check.stderr)
    );
    // What record, watch and serve attach (uprobes are only probed; with these
    // capabilities and no CAP_SYS_ADMIN the kernel refuses them).
    assert!(
        said.contains("ok   tracepoint") && said.contains("ok   tp_btf "),
        "{said}"
    );
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.contains("x86_64-unknown-linux-musl (static)"),
        "{version}"
    );
    assert!(version.contains(&d.commit), "{version}");
}
