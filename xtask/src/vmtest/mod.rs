//! `cargo xtask vmtest [--kernel 6.1|6.12|all]`: cowtrace's ground-truth tests on other
//! kernels, booted under QEMU (TCG: this machine's /dev/kvm cannot run guests).
//!
//! For each kernel: the newest Debian image of its series is fetched with `apt-get
//! download` and unpacked (`kernel.rs`); an initramfs is built with busybox, cowtrace,
//! the workloads, the compiled root-test binaries, `redis-server` and every library
//! they need (`image.rs`); the guest boots with a fresh ext4 disk as /tmp, and its
//! runner (`guest.rs`, this same binary as `xtask vmtest-guest`) runs the plan
//! (`plan.rs`) and prints one `VMTEST name PASS|FAIL detail` line per result on the
//! serial console, then powers off. The host reads the console (`console.rs`) with a
//! time limit: a guest that hangs, panics or stops early fails with the console's tail,
//! and a result the plan expected but never came is a failure too. The matrix
//! (`table.rs`) goes to the terminal and to `target/vmtest/results.md`.
//!
//! Guests run with one vCPU and single-threaded TCG by default; see the README
//! ("Tested kernels") for why multi-threaded TCG is not used.
//!
//! `--arch arm64` does the same with Debian's arm64 kernels under
//! `qemu-system-aarch64 -M virt`: everything in the image is built for arm64 (`arch.rs`
//! says what differs; the binaries are cross-built static, Redis and busybox come
//! from Debian's arm64 packages, `userland.rs`), cached apart in `target/vmtest/arm64/`.

mod arch;
mod console;
mod guest;
mod image;
mod kernel;
mod plan;
mod table;
mod userland;

use crate::{cross, setup, util};
use anyhow::{Context as _, Result, bail};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
pub use table::KernelRun;

#[derive(clap::Args, Clone)]
pub struct VmtestArgs {
    /// The guests' architecture: x86_64 (qemu-system-x86_64, the host's binaries) or
    /// arm64 (qemu-system-aarch64 -M virt, everything cross-built or Debian's arm64).
    #[arg(long, default_value = "x86_64", value_parser = ["x86_64", "arm64"])]
    pub arch: String,
    /// Kernel series to boot: 6.1, 6.12, or all.
    #[arg(long, default_value = "all", value_parser = ["6.1", "6.12", "all"])]
    pub kernel: String,
    /// Hook paths to test (comma-separated): auto (what cowtrace picks by probing the
    /// kernel) and tracepoint (forced with COWTRACE_HOOKS=tracepoint).
    #[arg(long, value_delimiter = ',', default_value = "auto,tracepoint", value_parser = ["auto", "tracepoint"])]
    pub paths: Vec<String>,
    /// Run only these items of the plan (comma-separated names, e.g. cow-live,ratios).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// vCPUs per guest.
    #[arg(long, default_value_t = 1)]
    pub smp: u32,
    /// QEMU's TCG threading: single (one host thread runs every vCPU in turn) or multi
    /// (a host thread per vCPU; see the README on why it is not the default).
    #[arg(long, default_value = "single", value_parser = ["single", "multi"])]
    pub tcg_thread: String,
    /// Guests to run at the same time (each is one busy host thread).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Rounds of the timing runs in each guest (each round runs the three
    /// configurations, in an order rotated from round to round: a multiple of 3 puts
    /// each first equally often).
    #[arg(long, default_value_t = 6)]
    pub ratio_rounds: usize,
    /// Time limit of one guest, in minutes.
    #[arg(long, default_value_t = 45)]
    pub timeout_min: u64,
    /// Skip `setup` (CI's `xtask test` has run it already).
    #[arg(long, hide = true)]
    pub no_setup: bool,
    /// Another cowtrace binary for the runner's own steps (check, attach,
    /// cow-back-to-back, ratios), e.g. an older build, to compare in the same guests.
    /// The root tests always use the one cargo builds.
    #[arg(long, hide = true)]
    pub cowtrace: Option<PathBuf>,
    /// Also put the matrix into README.md's "Tested kernels" (between its
    /// `vmtest-results` markers), when every kernel passed.
    #[arg(long)]
    pub write_readme: bool,
}

impl VmtestArgs {
    /// The defaults, as `cargo xtask test` runs the matrix.
    pub fn for_ci() -> VmtestArgs {
        VmtestArgs {
            arch: "x86_64".into(),
            kernel: "all".into(),
            paths: plan::MODES.iter().map(|m| m.to_string()).collect(),
            only: Vec::new(),
            smp: 1,
            tcg_thread: "single".into(),
            jobs: 2,
            ratio_rounds: 6,
            timeout_min: 45,
            no_setup: true,
            cowtrace: None,
            write_readme: false,
        }
    }
}

/// The arm64 items `cargo xtask test` leaves out, for CI's time: `record-report`
/// (about 100 s in an arm64 guest) checks the trace writer and `report`, userspace
/// code with nothing of its own per architecture, which the x86-64 matrix runs on
/// both kernels and paths; `ratios` (about 60 s) measures timings, not counts.
pub const CI_ARM64_LEFT_OUT: [&str; 2] = ["record-report", "ratios"];

impl VmtestArgs {
    /// The arm64 subset `cargo xtask test` runs after the x86-64 matrix: 6.12 (the
    /// kernel with BPF trampolines on arm64, so the fentry COW method) on the `auto`
    /// path, every item but [`CI_ARM64_LEFT_OUT`]: the COW ground truth, fork
    /// sessions, file writes and real BGSAVE / BGREWRITEAOF exactness. About 2.5 min in
    /// the guest. `cargo xtask vmtest --arch arm64` runs the whole matrix.
    pub fn for_ci_arm64() -> VmtestArgs {
        VmtestArgs {
            arch: "arm64".into(),
            kernel: "6.12".into(),
            paths: vec!["auto".into()],
            only: plan::PLAN
                .iter()
                .map(|i| i.name)
                .filter(|n| !CI_ARM64_LEFT_OUT.contains(n))
                .map(str::to_string)
                .collect(),
            jobs: 1,
            ..VmtestArgs::for_ci()
        }
    }
}

/// `xtask vmtest-guest PLAN`: the runner inside a guest.
pub fn guest(plan: &Path) -> Result<()> {
    guest::run(plan)
}

/// Binaries built for the image.
struct Built {
    cowtrace: PathBuf,
    cowload: PathBuf,
    cowbench: PathBuf,
    tests: Vec<(String, PathBuf)>,
    /// The guest runner: this xtask itself, or xtask cross-built for the guest.
    runner: PathBuf,
}

/// Where the guest's busybox, Redis, strace and their libraries come from.
enum Userspace {
    /// The host's own (x86-64 guests): `/bin/busybox`, the programs on PATH, the
    /// libraries `ldd` names.
    Host,
    /// Debian's packages of the guest's architecture, unpacked.
    Debian(userland::Userland),
}

/// `target/vmtest/<arch>/results.md` (`target/vmtest/results.md` for x86-64).
pub fn results_path(arch: &str) -> Result<PathBuf> {
    Ok(arch::guest(arch)?
        .cache(&util::repo_root().join("target/vmtest"))
        .join("results.md"))
}

pub fn run(args: VmtestArgs) -> Result<Vec<KernelRun>> {
    if !args.no_setup {
        setup::run()?;
    }
    let t0 = Instant::now();
    let g = arch::guest(&args.arch)?;
    let mut tools = vec![g.qemu, "cpio", "mkfs.ext4", "xz", "dpkg-deb", "apt-get"];
    tools.push(if g.is_host() { "ldd" } else { "readelf" });
    for tool in tools {
        if !util::on_path(tool) {
            bail!("{tool} is not installed: run `cargo xtask setup`");
        }
    }
    let cache = g.cache(&util::repo_root().join("target/vmtest"));
    let (built, userspace) = if g.is_host() {
        let busybox = PathBuf::from("/bin/busybox");
        let ldd = Command::new("ldd").arg(&busybox).output();
        if !ldd.is_ok_and(|o| !o.status.success()) {
            bail!(
                "/bin/busybox is missing or dynamically linked: install busybox-static (`cargo xtask setup`)"
            );
        }
        (build()?, Userspace::Host)
    } else {
        let u = userland::fetch(g.deb, g.multiarch, &cache)?;
        (build_cross(g.arch)?, Userspace::Debian(u))
    };
    let series: Vec<&str> = match args.kernel.as_str() {
        "all" => kernel::SERIES.iter().map(|(s, _)| *s).collect(),
        s => vec![s],
    };
    let mut kernels = Vec::new();
    for s in &series {
        kernels.push(kernel::fetch(s, g.deb, &cache)?);
    }
    let mut images = Vec::new();
    for k in &kernels {
        images.push(make_image(k, &built, &userspace, &args, &cache)?);
        println!(
            "[vmtest] image for {}: {}",
            k.release,
            images.last().unwrap().display()
        );
    }
    // Guests run in parallel, `jobs` at a time; each returns its run.
    let jobs = args.jobs.max(1);
    let mut runs: Vec<Option<KernelRun>> = vec![None; kernels.len()];
    for chunk in (0..kernels.len()).collect::<Vec<_>>().chunks(jobs) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let (k, img, a, c) = (&kernels[i], &images[i], &args, &cache);
                    (i, s.spawn(move || boot(g, k, img, a, c)))
                })
                .collect();
            for (i, h) in handles {
                runs[i] = Some(h.join().unwrap_or_else(|_| KernelRun {
                    series: kernels[i].series.clone(),
                    release: kernels[i].release.clone(),
                    problem: Some("the thread running the guest panicked".into()),
                    ..Default::default()
                }));
            }
        });
    }
    let runs: Vec<KernelRun> = runs.into_iter().flatten().collect();
    let items: Vec<&str> = plan::PLAN
        .iter()
        .map(|i| i.name)
        .filter(|n| args.only.is_empty() || args.only.iter().any(|o| o == n))
        .collect();
    println!("\n{}", table::render_text(&runs, &args.paths, &items));
    let when =
        util::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
    let md = table::render_markdown(&runs, &args.paths, &items, when.trim());
    let out = cache.join("results.md");
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "[vmtest] matrix written to {} ({:.0} s in all)",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(runs)
}

/// `cargo xtask vmtest` itself: the matrix, and an error unless every guest passed.
pub fn run_cli(args: VmtestArgs) -> Result<()> {
    let write_readme = args.write_readme;
    let arch = args.arch.clone();
    let runs = run(args)?;
    if write_readme && runs.iter().all(KernelRun::passed) {
        let md = std::fs::read_to_string(results_path(&arch)?)?;
        let path = util::repo_root().join("README.md");
        let readme = std::fs::read_to_string(&path)?;
        let tag = table::marker_tag(&arch);
        let new = table::splice(&readme, &md, &tag).with_context(|| {
            format!("README.md has no `<!-- {tag}: begin -->` ... `end -->` markers")
        })?;
        std::fs::write(&path, new)?;
        println!("[vmtest] README.md's Tested kernels updated");
    }
    let bad: Vec<&str> = runs
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.release.as_str())
        .collect();
    if !bad.is_empty() {
        bail!("vmtest failed on {}", bad.join(", "));
    }
    Ok(())
}

fn build() -> Result<Built> {
    util::run(util::cargo().args([
        "build",
        "--release",
        "-p",
        "agent",
        "--bin",
        "cowtrace",
        "--example",
        "cowload",
        "--example",
        "cowbench",
    ]))?;
    let mut cmd = util::cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "agent",
        "--no-run",
        "--message-format=json",
    ]);
    for b in plan::TEST_BINS {
        cmd.args(["--test", b]);
    }
    println!("$ {}", util::show(&cmd));
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the root test binaries failed ({})", out.status);
    }
    let tests = test_executables(&String::from_utf8_lossy(&out.stdout))?;
    let release = util::repo_root().join("target/release");
    Ok(Built {
        cowtrace: release.join("cowtrace"),
        cowload: release.join("examples/cowload"),
        cowbench: release.join("examples/cowbench"),
        tests,
        runner: std::env::current_exe().context("finding the xtask binary")?,
    })
}

/// Everything built for another architecture (static musl, `cross.rs`): cowtrace, the
/// workloads, the root tests, and xtask itself as the guest runner.
fn build_cross(arch: cross::Arch) -> Result<Built> {
    cross::build(
        arch,
        &[
            "--bin",
            "cowtrace",
            "--example",
            "cowload",
            "--example",
            "cowbench",
        ],
    )?;
    let mut a = vec!["--no-run"];
    for b in plan::TEST_BINS {
        a.extend(["--test", b]);
    }
    let tests = test_executables(&cross::test_build(arch, &a)?)?;
    let runner = cross::build_xtask(arch)?;
    let release = cross::release_dir(arch);
    Ok(Built {
        cowtrace: release.join("cowtrace"),
        cowload: release.join("examples/cowload"),
        cowbench: release.join("examples/cowbench"),
        tests,
        runner,
    })
}

/// The root-test binaries of [`plan::TEST_BINS`] in `cargo test --no-run
/// --message-format=json` output; an error if one is missing.
fn test_executables(json: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut tests = Vec::new();
    for l in json.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str())
        else {
            continue;
        };
        if plan::TEST_BINS.contains(&name) {
            tests.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    for b in plan::TEST_BINS {
        if !tests.iter().any(|(n, _)| n == b) {
            bail!("cargo built no test binary for agent/tests/{b}.rs");
        }
    }
    Ok(tests)
}

/// The initramfs for kernel `k`: `target/vmtest/images/<release>/initrd.cpio`.
fn make_image(
    k: &kernel::Kernel,
    b: &Built,
    user: &Userspace,
    args: &VmtestArgs,
    cache: &Path,
) -> Result<PathBuf> {
    let dir = cache.join("images").join(&k.release);
    std::fs::create_dir_all(&dir)?;
    let mut img = image::Image::default();
    img.generated("/init", image::INIT, 0o755);
    // Ours: at their build paths, where the test binaries look for them. Cross-built
    // ones are static (no libraries); the host's may not be.
    let ours = [&b.cowtrace, &b.cowload, &b.cowbench]
        .into_iter()
        .chain(b.tests.iter().map(|(_, p)| p));
    match user {
        Userspace::Host => {
            for p in ours {
                img.executable(p)?;
            }
            img.executable_at(Path::new("/usr/local/bin/xtask"), &b.runner)?;
        }
        Userspace::Debian(_) => {
            for p in ours {
                img.static_executable(p, p)?;
            }
            img.static_executable(Path::new("/usr/local/bin/xtask"), &b.runner)?;
        }
    }
    // The report tests run cowtrace in the fixtures directory.
    let fixtures = util::repo_root().join("agent/tests/fixtures");
    for e in
        std::fs::read_dir(&fixtures).with_context(|| format!("reading {}", fixtures.display()))?
    {
        let p = e?.path();
        if p.is_file() {
            img.file(p.clone(), p);
        }
    }
    // strace is the ground truth of the sync-call test.
    match user {
        Userspace::Host => {
            img.file("/bin/busybox", "/bin/busybox");
            for tool in ["redis-server", "redis-cli", "redis-benchmark", "strace"] {
                let p = util::find_on_path(tool)
                    .with_context(|| format!("{tool} is not installed: run `cargo xtask setup`"))?;
                img.executable_at(&Path::new("/usr/bin").join(tool), &p)?;
            }
        }
        Userspace::Debian(u) => {
            img.static_executable(Path::new("/bin/busybox"), &u.resolve("/bin/busybox")?)?;
            for program in userland::PROGRAMS {
                for (dest, src) in u.with_libraries(program)? {
                    img.file(dest, src);
                }
            }
        }
    }
    let mut list = String::new();
    for m in &k.modules {
        let name = m
            .file_name()
            .context("module name")?
            .to_string_lossy()
            .to_string();
        let dest = format!("/vmtest/modules.d/{name}");
        img.file(dest.clone(), m.clone());
        list.push_str(&dest);
        list.push('\n');
    }
    img.generated("/vmtest/modules", list, 0o644);
    let runner_cowtrace = match &args.cowtrace {
        Some(p) => {
            let dest = PathBuf::from("/vmtest/cowtrace-other");
            img.executable_at(&dest, p)?;
            dest
        }
        None => b.cowtrace.clone(),
    };
    let g = arch::guest(&args.arch)?;
    let plan = serde_json::json!({
        "kernel": k.release,
        "arch": g.arch.name,
        "time_scale": g.time_scale,
        "modes": args.paths,
        "only": args.only,
        "cowtrace": runner_cowtrace,
        "cowbench": b.cowbench,
        "tests": b.tests.iter().map(|(n, p)| (n.clone(), serde_json::json!(p))).collect::<serde_json::Map<_, _>>(),
        "ratio_rounds": args.ratio_rounds,
    });
    img.generated("/vmtest/plan.json", plan.to_string(), 0o644);
    let out = dir.join("initrd.cpio");
    img.write(&dir.join("root"), &out)?;
    Ok(out)
}

/// Boot kernel `k` with `initrd`, read its console until the runner ends (or the time
/// limit), and say what happened.
fn boot(
    g: arch::Guest,
    k: &kernel::Kernel,
    initrd: &Path,
    args: &VmtestArgs,
    cache: &Path,
) -> KernelRun {
    let mut run = KernelRun {
        series: k.series.clone(),
        release: k.release.clone(),
        package: k.package.clone(),
        not_run: plan::not_run(g.arch.name, &args.only),
        ..Default::default()
    };
    if let Err(e) = boot_into(g, k, initrd, args, cache, &mut run) {
        run.problem = Some(format!("{e:#}"));
    }
    run
}

fn boot_into(
    g: arch::Guest,
    k: &kernel::Kernel,
    initrd: &Path,
    args: &VmtestArgs,
    cache: &Path,
    run: &mut KernelRun,
) -> Result<()> {
    let dir = cache.join("images").join(&k.release);
    let disk = dir.join("disk.img");
    image::disk(&disk, 1024)?;
    let logs = cache.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{}.log", k.release));
    let mut log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(g.qemu);
    cmd.args(g.machine)
        .args(["-accel", &format!("tcg,thread={}", args.tcg_thread)])
        .args(["-smp", &args.smp.to_string(), "-m", "2G"])
        .args([
            "-display", "none", "-serial", "stdio", "-monitor", "none", "-nic", "none",
        ])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(&k.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=raw,cache=unsafe",
            disk.display()
        ))
        // panic=-1 with -no-reboot: a panic (and, with oops=panic, an Oops) ends QEMU at
        // once instead of leaving a dead guest to time out.
        .arg("-append")
        .arg(format!(
            "console={} panic=-1 oops=panic loglevel=5 quiet",
            g.console
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!("[vmtest {}] $ {}", k.series, util::show(&cmd));
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", g.qemu))?;
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().context("stdout")?) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().context("stderr")?),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for row in BufReader::new(stream).split(b'\n') {
                let Ok(row) = row else { break };
                if tx.send(String::from_utf8_lossy(&row).into_owned()).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let limit = Duration::from_secs(args.timeout_min * 60);
    let mut rows: Vec<String> = Vec::new();
    let mut ended = false;
    let mut timed_out = false;
    loop {
        let left = limit.saturating_sub(t0.elapsed());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        match rx.recv_timeout(left) {
            Ok(row) => {
                use std::io::Write as _;
                let _ = writeln!(log, "{row}");
                if let Some(line) = console::parse(&row) {
                    match &line {
                        console::Line::Result { name, pass, detail } => {
                            if name == "boot" && run.boot_s.is_none() {
                                run.boot_s = Some(t0.elapsed().as_secs_f64());
                            }
                            let mark = if *pass { "PASS" } else { "FAIL" };
                            let short: String = detail.chars().take(160).collect();
                            println!("[vmtest {}] {name} {mark} {short}", k.series);
                        }
                        console::Line::End => ended = true,
                        _ => {}
                    }
                    run.absorb(line);
                }
                rows.push(row);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            // Both streams closed: QEMU has exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if timed_out {
        let _ = child.kill();
    }
    let status = child.wait()?;
    run.wall_s = t0.elapsed().as_secs_f64();
    let expected = plan::expected(g.arch.name, &args.paths, &args.only);
    run.missing = expected
        .into_iter()
        .filter(|e| run.result(e).is_none())
        .collect();
    let trouble = console::kernel_trouble(&rows).map(str::to_string);
    let why = if timed_out {
        Some(format!(
            "the guest did not finish within {} min",
            args.timeout_min
        ))
    } else if !ended {
        Some(format!(
            "the guest stopped before its runner ended (QEMU {status})"
        ))
    } else {
        None
    };
    let why = match (why, trouble) {
        (Some(w), Some(t)) => Some(format!("{w}; the kernel said: {t}")),
        (None, Some(t)) => Some(format!("the kernel complained: {t}")),
        (w, None) => w,
    };
    if let Some(w) = why {
        run.problem = Some(format!(
            "{w}\n--- console tail ({}) ---\n{}",
            log_path.display(),
            console::tail(&rows, 40)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_runs_arm64_6_12_auto_with_all_but_the_items_it_names() {
        let a = VmtestArgs::for_ci_arm64();
        assert_eq!((a.arch.as_str(), a.kernel.as_str()), ("arm64", "6.12"));
        assert_eq!(a.paths, ["auto"]);
        // Each item left out is a real item (a renamed one would silently run again).
        for i in CI_ARM64_LEFT_OUT {
            assert!(plan::PLAN.iter().any(|p| p.name == i), "{i}");
            assert!(!a.only.iter().any(|o| o == i), "{i}");
        }
        assert_eq!(a.only.len(), plan::PLAN.len() - CI_ARM64_LEFT_OUT.len());
        // The x86-64 matrix is unchanged: every kernel, path and item.
        let x = VmtestArgs::for_ci();
        assert_eq!((x.arch.as_str(), x.kernel.as_str()), ("x86_64", "all"));
        assert!(x.only.is_empty());
    }
}
